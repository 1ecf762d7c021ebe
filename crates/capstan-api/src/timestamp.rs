//! Timestamps on the wire: RFC 3339 in UTC with exactly six fractional digits, so
//! scripts can sort them as strings and compare them to the microsecond.

use serde::{Deserialize, Deserializer, Serializer};
use time::{OffsetDateTime, UtcOffset, format_description::FormatItem, macros::format_description};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Formats `at` as `2026-11-23T11:31:55.123456Z`.
pub fn format(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(FORMAT)
        .expect("every UTC date in range formats")
}

pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*at))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
    time::serde::rfc3339::deserialize(deserializer)
}

/// The same, for optional timestamps (`null` when absent).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(
        at: &Option<OffsetDateTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serializer.serialize_str(&format(*at)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        let raw: Option<String> = Option::deserialize(deserializer)?;
        raw.map(|s| {
            OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    #[test]
    fn always_six_fractional_digits_in_utc() {
        assert_eq!(
            super::format(datetime!(2026-11-23 11:31:55 UTC)),
            "2026-11-23T11:31:55.000000Z"
        );
        assert_eq!(
            super::format(datetime!(2026-11-23 12:31:55.1234567 +01:00)),
            "2026-11-23T11:31:55.123456Z"
        );
    }
}
