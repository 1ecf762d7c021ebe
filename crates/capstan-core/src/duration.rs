//! Durations as operators write them: `500ms`, `10s`, `2m`, `1h30m`.

use std::time::Duration;

/// Why a duration setting could not be read.
#[derive(Debug, thiserror::Error)]
#[error("`{input}` is not a duration: {reason} (write it like `500ms`, `10s` or `2m`)")]
pub struct DurationError {
    input: String,
    reason: String,
}

/// Parses a duration such as `500ms`, `10s`, `2m` or `1h30m`.
///
/// A bare number is refused: `10` could mean seconds or milliseconds, and guessing
/// wrong by a factor of 1000 is how heartbeats end up once a fortnight.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    let error = |reason: &str| DurationError {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    if trimmed.is_empty() {
        return Err(error("it is empty"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(error("a unit is missing"));
    }
    humantime::parse_duration(trimmed).map_err(|e| error(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn refuses_a_number_without_unit() {
        let err = parse_duration("10").unwrap_err().to_string();
        assert!(err.contains("a unit is missing"), "{err}");
    }

    #[test]
    fn refuses_garbage_with_the_input_in_the_message() {
        let err = parse_duration("ten seconds").unwrap_err().to_string();
        assert!(err.contains("`ten seconds`"), "{err}");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
