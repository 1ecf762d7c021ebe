//! Freeze windows: spans of time when deployments to some projects and environments
//! must not start. A window is either fixed (a start and an end) or recurring (a cron
//! expression read on the wall clock of an IANA time zone, each firing opening the
//! window for a fixed duration). Everything here is pure: the zone database is the
//! one built into the binary, so evaluation never reads `/usr/share/zoneinfo`.
//!
//! Windows are half-open: a window from 18:00 for 2h holds 18:00 and lets 20:00 go.

use std::{str::FromStr, sync::LazyLock, time::Duration};

use croner::{
    Cron,
    parser::{CronParser, Seconds},
};
use jiff::{SignedDuration, Timestamp, Zoned, tz::TimeZone, tz::TimeZoneDatabase};

/// A window's name has at most this many characters.
pub const MAX_NAME: usize = 100;
/// A recurring window's duration is at most this long: a longer one is a fixed window.
pub const MAX_DURATION: Duration = Duration::from_secs(31 * 24 * 3600);
/// A cron expression has at most this many bytes.
pub const MAX_CRON: usize = 200;
/// How far past the instant asked about the end of a chain of back-to-back windows
/// is looked for: a window chained for longer is reported as ending here, and is
/// asked about again then.
pub const HORIZON: SignedDuration = SignedDuration::from_hours(24 * 400);
/// How many back-to-back occurrences are followed at most: a cron firing every minute
/// with a longer duration chains forever, and the chain is then reported as ending
/// after this many (and asked about again then) rather than searched to the horizon.
pub const MAX_CHAIN: usize = 1000;

/// The zone database compiled into the binary.
static ZONES: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// When a window is open.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Once, from `start` up to `end`.
    Fixed { start: Timestamp, end: Timestamp },
    /// Each time `cron` fires on the wall clock of `zone`, for `duration`.
    Recurring(Box<Recurring>),
}

/// A recurring schedule, checked: its cron fires, its zone is known.
#[derive(Debug, Clone)]
pub struct Recurring {
    cron: Cron,
    expression: String,
    zone: TimeZone,
    zone_name: String,
    duration: SignedDuration,
}

impl Recurring {
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    pub fn duration(&self) -> Duration {
        self.duration.unsigned_abs()
    }
}

/// A problem with a window's input, naming the field as the API spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: &'static str,
    pub detail: String,
}

fn problem(field: &'static str, detail: impl Into<String>) -> Problem {
    Problem {
        field,
        detail: detail.into(),
    }
}

/// Checks a window's name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a freeze window needs a name".to_owned());
    }
    if name.trim() != name {
        return Err(format!(
            "freeze window name `{name}` starts or ends with spaces"
        ));
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!(
            "a freeze window's name has at most {MAX_NAME} characters"
        ));
    }
    crate::names::normalize(name)
        .map(|_| ())
        .map_err(|e| format!("a freeze window's name {e}"))
}

/// Looks a zone up by its IANA name in the built-in database.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() {
        return Err("a recurring window needs a time zone, such as `Europe/Berlin`".to_owned());
    }
    ZONES.get(name).map_err(|_| {
        format!("`{name}` is not a time zone; use an IANA name such as `Europe/Berlin` or `UTC`")
    })
}

impl Schedule {
    /// A fixed window; its end must come after its start.
    pub fn fixed(start: Timestamp, end: Timestamp) -> Result<Self, Vec<Problem>> {
        if end <= start {
            return Err(vec![problem(
                "end",
                format!("the window must end after it starts ({start}), not at {end}"),
            )]);
        }
        Ok(Self::Fixed { start, end })
    }

    /// A recurring window: `cron` has five fields (minute, hour, day of month, month,
    /// day of week) and must fire at least once after `now`; `duration` is written
    /// like `62h` or `1h30m`. Every problem at once.
    pub fn recurring(
        cron: &str,
        duration: &str,
        zone_name: &str,
        now: Timestamp,
    ) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let parsed = if cron.len() > MAX_CRON {
            problems.push(problem(
                "cron",
                format!("a cron expression has at most {MAX_CRON} bytes"),
            ));
            None
        } else {
            match CronParser::builder()
                .seconds(Seconds::Disallowed)
                .build()
                .parse(cron)
            {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    problems.push(problem(
                        "cron",
                        format!(
                            "`{cron}` is not a cron expression of five fields (minute hour day-of-month month day-of-week): {e}"
                        ),
                    ));
                    None
                }
            }
        };
        let found_zone = match zone(zone_name) {
            Ok(found) => Some(found),
            Err(detail) => {
                problems.push(problem("time_zone", detail));
                None
            }
        };
        let duration = match crate::duration::parse_duration(duration) {
            Ok(d) if d.is_zero() => {
                problems.push(problem("duration", "a window lasts longer than nothing"));
                None
            }
            Ok(d) if d > MAX_DURATION => {
                problems.push(problem(
                    "duration",
                    "a recurring window lasts at most 31 days; use a fixed window for longer",
                ));
                None
            }
            Ok(d) => SignedDuration::try_from(d).ok(),
            Err(e) => {
                problems.push(problem("duration", e.to_string()));
                None
            }
        };
        let (Some(cron_parsed), Some(zone), Some(duration)) = (parsed, found_zone, duration) else {
            return Err(problems);
        };
        let recurring = Recurring {
            cron: cron_parsed,
            expression: cron.to_owned(),
            zone,
            zone_name: zone_name.to_owned(),
            duration,
        };
        if recurring.next_start(now).is_none() {
            return Err(vec![problem(
                "cron",
                format!("`{cron}` never fires (no date matches it)"),
            )]);
        }
        Ok(Self::Recurring(Box::new(recurring)))
    }

    /// The occurrence of the window that holds `t`: its start and end. Of two
    /// occurrences of one recurring window that both hold `t`, the later-ending one.
    pub fn occurrence_at(&self, t: Timestamp) -> Option<(Timestamp, Timestamp)> {
        match self {
            Self::Fixed { start, end } => (*start <= t && t < *end).then_some((*start, *end)),
            Self::Recurring(r) => {
                // The latest firing at or before `t` ends last: all last as long.
                let start = r.last_start(t)?;
                let end = start.checked_add(r.duration).ok()?;
                (t < end).then_some((start, end))
            }
        }
    }

    /// The first time the window opens strictly after `t`.
    pub fn next_start(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Fixed { start, .. } => (*start > t).then_some(*start),
            Self::Recurring(r) => r.next_start(t),
        }
    }
}

impl Recurring {
    fn next_start(&self, t: Timestamp) -> Option<Timestamp> {
        let from = Zoned::new(t, self.zone.clone());
        self.cron
            .find_next_occurrence(&from, false)
            .ok()
            .map(|z| z.timestamp())
    }

    fn last_start(&self, t: Timestamp) -> Option<Timestamp> {
        let from = Zoned::new(t, self.zone.clone());
        self.cron
            .find_previous_occurrence(&from, true)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// Why deployments wait at an instant: the window that closes last of those that
/// hold it, back to back, and when the last of them ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frozen {
    /// Index into the windows asked about.
    pub window: usize,
    pub until: Timestamp,
}

/// Whether `t` is inside any of `windows`, and if so until when: overlapping and
/// back-to-back windows (and occurrences) are followed to the end of the last one,
/// as far as [`HORIZON`] or [`MAX_CHAIN`] links.
pub fn frozen_at(windows: &[&Schedule], t: Timestamp) -> Option<Frozen> {
    let horizon = t.checked_add(HORIZON).unwrap_or(Timestamp::MAX);
    let mut found: Option<Frozen> = None;
    let mut at = t;
    for _ in 0..MAX_CHAIN {
        let latest = windows
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.occurrence_at(at).map(|(_, end)| (i, end)))
            .max_by_key(|(_, end)| *end);
        let Some((window, end)) = latest else {
            return found;
        };
        if end >= horizon {
            return Some(Frozen {
                window,
                until: horizon,
            });
        }
        found = Some(Frozen { window, until: end });
        at = end;
    }
    found
}

/// Reads an RFC 3339 instant, such as `2026-12-24T00:00:00+01:00`.
pub fn parse_instant(text: &str) -> Result<Timestamp, String> {
    Timestamp::from_str(text).map_err(|_| {
        format!("`{text}` is not an RFC 3339 instant such as `2026-12-24T00:00:00+01:00`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn every(cron: &str, duration: &str, zone: &str) -> Schedule {
        Schedule::recurring(cron, duration, zone, at("2026-01-01T00:00:00Z")).unwrap()
    }

    fn fields(result: Result<Schedule, Vec<Problem>>) -> Vec<&'static str> {
        result.unwrap_err().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_weekend_freeze_holds_from_friday_evening_to_monday_morning_in_berlin() {
        let weekend = every("0 18 * * FRI", "62h", "Europe/Berlin");
        // Friday 2026-12-04 18:00 in Berlin is 17:00 UTC (winter time).
        assert_eq!(weekend.occurrence_at(at("2026-12-04T16:59:59Z")), None);
        assert_eq!(
            weekend.occurrence_at(at("2026-12-04T17:00:00Z")),
            Some((at("2026-12-04T17:00:00Z"), at("2026-12-07T07:00:00Z")))
        );
        assert!(weekend.occurrence_at(at("2026-12-06T12:00:00Z")).is_some());
        assert_eq!(weekend.occurrence_at(at("2026-12-07T07:00:00Z")), None);
        assert_eq!(
            weekend.next_start(at("2026-12-07T07:00:00Z")),
            Some(at("2026-12-11T17:00:00Z"))
        );
    }

    #[test]
    fn the_wall_clock_is_kept_across_daylight_saving_changes() {
        let weekend = every("0 18 * * FRI", "62h", "Europe/Berlin");
        // Summer time: 18:00 in Berlin is 16:00 UTC.
        assert_eq!(
            weekend.next_start(at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-03T16:00:00Z"))
        );
        // The window opened on Friday 2026-10-23 (summer time) lasts 62 real hours,
        // across the change back to winter time on the Sunday.
        assert_eq!(
            weekend.occurrence_at(at("2026-10-25T12:00:00Z")),
            Some((at("2026-10-23T16:00:00Z"), at("2026-10-26T06:00:00Z")))
        );
    }

    #[test]
    fn a_firing_in_the_hour_skipped_in_spring_still_opens_the_window() {
        // 02:30 does not exist in Berlin on 2026-03-29: the clock goes from 02:00 to 03:00.
        let nightly = every("30 2 * * *", "1h", "Europe/Berlin");
        let start = nightly.next_start(at("2026-03-28T12:00:00Z")).unwrap();
        assert!(
            start >= at("2026-03-29T00:00:00Z") && start <= at("2026-03-29T02:00:00Z"),
            "{start}"
        );
        assert!(nightly.occurrence_at(start).is_some());
    }

    #[test]
    fn a_firing_in_the_hour_repeated_in_autumn_opens_the_window_and_ends_it_once() {
        // 02:30 happens twice in Berlin on 2026-10-25 (00:30 and 01:30 UTC).
        let nightly = every("30 2 * * *", "20m", "Europe/Berlin");
        let first = nightly.next_start(at("2026-10-24T12:00:00Z")).unwrap();
        assert!(
            first == at("2026-10-25T00:30:00Z") || first == at("2026-10-25T01:30:00Z"),
            "{first}"
        );
        assert_eq!(
            nightly.occurrence_at(at("2026-10-25T00:40:00Z")).is_some(),
            first == at("2026-10-25T00:30:00Z")
        );
        assert_eq!(nightly.occurrence_at(at("2026-10-25T00:55:00Z")), None);
    }

    #[test]
    fn a_window_may_span_midnight() {
        let night = every("0 22 * * *", "4h", "America/New_York");
        // 22:00 in New York (EST) is 03:00 UTC the next day.
        assert_eq!(
            night.occurrence_at(at("2026-12-02T05:30:00Z")),
            Some((at("2026-12-02T03:00:00Z"), at("2026-12-02T07:00:00Z")))
        );
        assert_eq!(night.occurrence_at(at("2026-12-02T07:00:00Z")), None);
    }

    #[test]
    fn a_fixed_window_is_half_open() {
        let holidays =
            Schedule::fixed(at("2026-12-24T00:00:00Z"), at("2027-01-02T00:00:00Z")).unwrap();
        assert_eq!(holidays.occurrence_at(at("2026-12-23T23:59:59Z")), None);
        assert!(holidays.occurrence_at(at("2026-12-24T00:00:00Z")).is_some());
        assert_eq!(holidays.occurrence_at(at("2027-01-02T00:00:00Z")), None);
        assert_eq!(
            holidays.next_start(at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-24T00:00:00Z"))
        );
        assert_eq!(holidays.next_start(at("2026-12-25T00:00:00Z")), None);
    }

    #[test]
    fn overlapping_windows_hold_until_the_last_of_them_ends() {
        let a = Schedule::fixed(at("2026-12-01T10:00:00Z"), at("2026-12-01T12:00:00Z")).unwrap();
        let b = Schedule::fixed(at("2026-12-01T11:00:00Z"), at("2026-12-01T14:00:00Z")).unwrap();
        // Starts exactly where `b` ends.
        let c = Schedule::fixed(at("2026-12-01T14:00:00Z"), at("2026-12-01T15:00:00Z")).unwrap();
        let later =
            Schedule::fixed(at("2026-12-01T16:00:00Z"), at("2026-12-01T17:00:00Z")).unwrap();
        let windows = [&a, &b, &c, &later];
        assert_eq!(
            frozen_at(&windows, at("2026-12-01T10:30:00Z")),
            Some(Frozen {
                window: 2,
                until: at("2026-12-01T15:00:00Z")
            })
        );
        assert_eq!(frozen_at(&windows, at("2026-12-01T15:00:00Z")), None);
        assert_eq!(frozen_at(&windows, at("2026-12-01T09:00:00Z")), None);
    }

    #[test]
    fn occurrences_longer_than_their_interval_chain_for_a_bounded_number_of_links() {
        let always = every("* * * * *", "2m", "UTC");
        let t = at("2026-12-01T10:00:30Z");
        // Each link opens where the last ended and lasts two minutes: a thousand links.
        assert_eq!(
            frozen_at(&[&always], t).map(|f| f.until),
            Some(at("2026-12-01T10:00:00Z") + SignedDuration::from_mins(2000))
        );
        let long = every("0 0 * * *", "30d", "UTC");
        let t = at("2026-12-01T10:00:30Z");
        assert_eq!(
            frozen_at(&[&long], t).map(|f| f.until),
            Some(t.checked_add(HORIZON).unwrap())
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(
            fields(Schedule::recurring("0 0 30 2 *", "1h", "UTC", now)),
            ["cron"]
        );
        assert_eq!(
            fields(Schedule::recurring("0 18 * *", "1h", "UTC", now)),
            ["cron"]
        );
        assert_eq!(
            fields(Schedule::recurring(
                "0 18 * * FRI",
                "1h",
                "Mars/Olympus",
                now
            )),
            ["time_zone"]
        );
        assert_eq!(
            fields(Schedule::recurring("0 18 * * FRI", "0s", "UTC", now)),
            ["duration"]
        );
        assert_eq!(
            fields(Schedule::recurring("0 18 * * FRI", "40d", "UTC", now)),
            ["duration"]
        );
        assert_eq!(
            fields(Schedule::recurring("nope", "soon", "", now)),
            ["cron", "time_zone", "duration"]
        );
        assert_eq!(fields(Schedule::fixed(now, now)), ["end"]);
        assert!(check_name(&"x".repeat(MAX_NAME + 1)).is_err());
        assert!(check_name("Weekend").is_ok());
        assert!(parse_instant("2026-12-24").is_err());
    }

    #[test]
    fn the_zone_database_is_built_in() {
        // Independent of the machine's /usr/share/zoneinfo.
        assert!(zone("Europe/Berlin").is_ok());
        assert!(zone("Asia/Kolkata").is_ok());
        assert!(zone("UTC").is_ok());
    }
}
