//! Cron expressions evaluated in a time zone, with one rule for daylight-saving changes: a
//! local time that does not exist (the clock jumps over it) is skipped, and a local time that
//! happens twice (the clock falls back) fires once, at its first occurrence.
//!
//! croner matches the pattern against wall-clock time; each match is then placed in the zone
//! here, which is where the DST rule lives.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Wall-clock matches examined before giving up on finding a slot (an impossible date such as
/// 30 February is a parse-time success but never matches).
const SEARCH_LIMIT: usize = 10_000;

/// A parsed cron expression and its time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// Parses 5 fields, 6 with seconds first, or a descriptor (`@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`), evaluated in the IANA zone `zone`. Errors say what is wrong.
    pub fn parse(expression: &str, zone: &str) -> Result<Self, ScheduleSpecError> {
        let fields = expression.split_whitespace().count();
        if !expression.trim().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(ScheduleSpecError::Cron(format!(
                "{expression:?} has {fields} fields; use 5 (minute hour day month weekday), 6 \
                 (with seconds first) or a descriptor such as @daily"
            )));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expression).map_err(|e| {
            ScheduleSpecError::Cron(format!(
                "{expression:?} is not a valid cron expression: {e}"
            ))
        })?;
        let zone: Tz = zone.parse().map_err(|_| {
            ScheduleSpecError::Zone(format!(
                "{zone:?} is not an IANA time zone (such as UTC or Europe/Berlin)"
            ))
        })?;
        Ok(Self { cron, zone })
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Wall-clock time of `after`, written as UTC so croner matches the local fields.
        let wall = |local: NaiveDateTime| Utc.from_utc_datetime(&local);
        let mut candidate = wall(after.with_timezone(&self.zone).naive_local());
        for _ in 0..SEARCH_LIMIT {
            candidate = self.cron.find_next_occurrence(&candidate, false).ok()?;
            // A gap yields no instant (skipped); a fold yields two, of which the first fires.
            if let Some(instant) = self
                .zone
                .from_local_datetime(&candidate.naive_utc())
                .earliest()
            {
                let instant = instant.with_timezone(&Utc);
                if instant > after {
                    return Some(instant);
                }
            }
        }
        None
    }

    /// Up to `limit` slots in `(after, until]`, oldest first, and whether there were more.
    pub fn slots_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> (Vec<DateTime<Utc>>, bool) {
        let mut slots = Vec::new();
        let mut cursor = after;
        while let Some(next) = self.next_after(cursor) {
            if next > until {
                return (slots, false);
            }
            if slots.len() == limit {
                return (slots, true);
            }
            slots.push(next);
            cursor = next;
        }
        (slots, false)
    }
}

/// What is wrong with a schedule's timing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleSpecError {
    /// The cron expression.
    #[error("{0}")]
    Cron(String),
    /// The time zone.
    #[error("{0}")]
    Zone(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(zone: &str, local: &str) -> DateTime<Utc> {
        let zone: Tz = zone.parse().unwrap();
        let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").unwrap();
        zone.from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn five_six_fields_and_descriptors() {
        let start = utc("2026-01-01T00:00:00Z");
        let five = CronSchedule::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(five.next_after(start), Some(utc("2026-01-01T00:15:00Z")));
        let six = CronSchedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(six.next_after(start), Some(utc("2026-01-01T00:00:10Z")));
        let daily = CronSchedule::parse("@daily", "UTC").unwrap();
        assert_eq!(daily.next_after(start), Some(utc("2026-01-02T00:00:00Z")));
        let hourly = CronSchedule::parse("@hourly", "UTC").unwrap();
        assert_eq!(hourly.next_after(start), Some(utc("2026-01-01T01:00:00Z")));
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let error = CronSchedule::parse("* * *", "UTC").unwrap_err();
        assert!(error.to_string().contains("has 3 fields"), "{error}");
        let error = CronSchedule::parse("61 * * * *", "UTC").unwrap_err();
        assert!(matches!(error, ScheduleSpecError::Cron(_)), "{error}");
        let error = CronSchedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(matches!(error, ScheduleSpecError::Zone(_)), "{error}");
        // Seven fields (a year) are not accepted.
        assert!(CronSchedule::parse("0 0 0 1 1 * 2030", "UTC").is_err());
    }

    #[test]
    fn slots_are_evaluated_in_the_time_zone() {
        let nine_berlin = CronSchedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            nine_berlin.next_after(utc("2026-01-10T00:00:00Z")),
            Some(utc("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            nine_berlin.next_after(utc("2026-07-10T00:00:00Z")),
            Some(utc("2026-07-10T07:00:00Z"))
        );
    }

    #[test]
    fn a_local_time_in_the_spring_gap_is_skipped() {
        // Berlin, 2026-03-29: 02:00 jumps to 03:00; 02:30 does not exist that day.
        let half_past_two = CronSchedule::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let next = half_past_two
            .next_after(at("Europe/Berlin", "2026-03-28 12:00:00"))
            .unwrap();
        assert_eq!(
            next,
            at("Europe/Berlin", "2026-03-30 02:30:00"),
            "the 29th is skipped"
        );

        let every_quarter = CronSchedule::parse("0 */15 * * * *", "Europe/Berlin").unwrap();
        let (slots, _) = every_quarter.slots_between(
            at("Europe/Berlin", "2026-03-29 01:40:00"),
            at("Europe/Berlin", "2026-03-29 03:20:00"),
            100,
        );
        let local: Vec<String> = slots
            .iter()
            .map(|s| {
                s.with_timezone(&chrono_tz::Europe::Berlin)
                    .format("%H:%M %Z")
                    .to_string()
            })
            .collect();
        assert_eq!(local, ["01:45 CET", "03:00 CEST", "03:15 CEST"]);
    }

    #[test]
    fn a_repeated_local_time_fires_once() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:00-02:59 happen twice.
        let half_past_two = CronSchedule::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let first = half_past_two
            .next_after(at("Europe/Berlin", "2026-10-25 00:00:00"))
            .unwrap();
        assert_eq!(
            first,
            utc("2026-10-25T00:30:00Z"),
            "02:30 CEST, the first of the two"
        );
        let second = half_past_two.next_after(first).unwrap();
        assert_eq!(
            second,
            at("Europe/Berlin", "2026-10-26 02:30:00"),
            "not again at 02:30 CET"
        );

        let every_half_hour = CronSchedule::parse("0 */30 * * * *", "Europe/Berlin").unwrap();
        let (slots, _) = every_half_hour.slots_between(
            utc("2026-10-24T23:45:00Z"),
            utc("2026-10-25T02:15:00Z"),
            100,
        );
        let local: Vec<String> = slots
            .iter()
            .map(|s| {
                s.with_timezone(&chrono_tz::Europe::Berlin)
                    .format("%H:%M %Z")
                    .to_string()
            })
            .collect();
        assert_eq!(
            local,
            ["02:00 CEST", "02:30 CEST", "03:00 CET"],
            "the repeated hour once"
        );
    }

    #[test]
    fn slot_listing_is_bounded() {
        let every_second = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        let (slots, more) = every_second.slots_between(
            utc("2026-01-01T00:00:00Z"),
            utc("2026-01-01T01:00:00Z"),
            100,
        );
        assert_eq!(slots.len(), 100);
        assert!(more);
    }
}
