//! Sizes as operators write them: `512KiB`, `50MiB`, `1GiB`.

/// Why a size setting could not be read.
#[derive(Debug, thiserror::Error)]
#[error("`{input}` is not a size: {reason} (write it like `512KiB`, `50MiB` or `1GiB`)")]
pub struct SizeError {
    input: String,
    reason: String,
}

const UNITS: [(&str, u64); 7] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
];

/// Parses a size in bytes such as `512KiB`, `50MiB`, `1GiB` or `4096B`.
///
/// A bare number is refused for the same reason as a bare duration: `50` could be
/// bytes or megabytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let error = |reason: &str| SizeError {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(error("it is empty"));
    }
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| error("a unit is missing"))?;
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(error("it does not start with a number"));
    }
    let unit = unit.trim();
    let multiplier = UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|(_, m)| *m)
        .ok_or_else(|| error(&format!("`{unit}` is not a unit; use B, KiB, MiB or GiB")))?;
    let number: u64 = number
        .parse()
        .map_err(|_| error("the number is too large"))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| error("it is too large"))
}

/// A size for people: `50 MiB`, `1.5 KiB`, `300 B`.
pub fn format_size(bytes: u64) -> String {
    let (unit, size) = match bytes {
        b if b >= 1 << 30 => ("GiB", 1u64 << 30),
        b if b >= 1 << 20 => ("MiB", 1 << 20),
        b if b >= 1 << 10 => ("KiB", 1 << 10),
        _ => return format!("{bytes} B"),
    };
    if bytes % size == 0 {
        format!("{} {unit}", bytes / size)
    } else {
        format!("{:.1} {unit}", bytes as f64 / size as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_binary_and_decimal_units() {
        assert_eq!(parse_size("50MiB").unwrap(), 50 * 1024 * 1024);
        assert_eq!(parse_size("512 KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("1gib").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096B").unwrap(), 4096);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
    }

    #[test]
    fn refuses_a_number_without_unit_and_unknown_units() {
        let err = parse_size("50").unwrap_err().to_string();
        assert!(err.contains("a unit is missing"), "{err}");
        let err = parse_size("50 furlongs").unwrap_err().to_string();
        assert!(err.contains("`furlongs` is not a unit"), "{err}");
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_size(50 * 1024 * 1024), "50 MiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(300), "300 B");
    }
}
