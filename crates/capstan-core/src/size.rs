//! Byte sizes in settings: `512KiB`, `50MiB`, `10GiB`, `1GB`. As with durations, a bare
//! number is refused: `50` is far more likely a forgotten `MiB` than 50 bytes.

/// Why a size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a size: {reason} (write e.g. 512KiB, 50MiB, 10GiB)")]
pub struct SizeError {
    input: String,
    reason: String,
}

/// Reads a size with a unit: B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (of 1024).
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let error = |reason: &str| SizeError {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = input.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| error("a unit is missing"))?;
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| error("it does not start with a whole number"))?;
    let scale: u64 = match unit.trim() {
        "B" => 1,
        "KB" => 1000,
        "MB" => 1000_u64.pow(2),
        "GB" => 1000_u64.pow(3),
        "TB" => 1000_u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => {
            return Err(error(
                "the unit is not one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB",
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| error("it is too large"))
}

/// A size as people read it: `1.5 GiB`, `300 KiB`, `12 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_families_of_units() {
        assert_eq!(parse_size("50MiB").unwrap(), 50 * 1024 * 1024);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size(" 12 KiB ").unwrap(), 12 * 1024);
        assert_eq!(parse_size("0B").unwrap(), 0);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in ["50", "", "MiB", "5 parsecs", "99999999999999TiB", "1.5GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(
            parse_size("50")
                .unwrap_err()
                .to_string()
                .contains("a unit is missing")
        );
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_size(12), "12 B");
        assert_eq!(format_size(300 * 1024), "300 KiB");
        assert_eq!(format_size(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }
}
