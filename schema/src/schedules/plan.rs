//! Which slots fire now: a pure decision from the schedule's first unhandled slot, the time and
//! the catch-up policy, so it is tested without a database or a clock.
//!
//! A slot is *on time* while it is at most [`LATE_TOLERANCE`] old: a scheduler that was busy or
//! briefly cut off from the database still fires it. Older slots were *missed* (no scheduler
//! ran) and the catch-up policy decides: `SKIP` forgets them, `LAST` fires only the newest due
//! slot, `ALL` fires them all, at most [`CATCH_UP_LIMIT`] (the newest ones).

use chrono::{DateTime, Duration, Utc};
use proctor_entity::values::CatchUpPolicy;

use super::cron::CronSchedule;

/// How old a slot may be and still count as on time.
pub const LATE_TOLERANCE: Duration = Duration::seconds(30);

/// Most missed slots `ALL` fires at once; older ones are skipped (and counted).
pub const CATCH_UP_LIMIT: usize = 100;

/// The first window searched backwards from now for due slots; it grows fourfold until it
/// holds enough slots or reaches the first unhandled one, so a long downtime of a frequent
/// schedule is not walked slot by slot.
const FIRST_WINDOW: Duration = Duration::minutes(2);

/// A slot to fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueSlot {
    /// The slot time.
    pub at: DateTime<Utc>,
    /// Fired late on purpose, by the catch-up policy.
    pub caught_up: bool,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Slots to fire, oldest first.
    pub fire: Vec<DueSlot>,
    /// Due slots not fired (missed ones the policy drops). A lower bound when the backlog was
    /// longer than the search window (see [`FIRST_WINDOW`]).
    pub skipped: u64,
    /// The first slot after now: the next thing to wait for.
    pub next: Option<DateTime<Utc>>,
}

/// Decides which due slots fire at `now`, given the first slot not handled yet.
pub fn plan(
    cron: &CronSchedule,
    first_unhandled: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: CatchUpPolicy,
) -> Plan {
    if first_unhandled > now {
        return Plan {
            fire: Vec::new(),
            skipped: 0,
            next: Some(first_unhandled),
        };
    }
    let (due, total) = newest_due(cron, first_unhandled, now, CATCH_UP_LIMIT);
    let on_time = |slot: &DateTime<Utc>| now - *slot <= LATE_TOLERANCE;
    let chosen: Vec<DateTime<Utc>> = match policy {
        CatchUpPolicy::Skip => due.iter().copied().filter(on_time).collect(),
        CatchUpPolicy::Last => due.last().copied().into_iter().collect(),
        CatchUpPolicy::All => due,
    };
    let fire: Vec<DueSlot> = chosen
        .into_iter()
        .map(|at| DueSlot {
            at,
            caught_up: !on_time(&at),
        })
        .collect();
    Plan {
        skipped: total.saturating_sub(fire.len() as u64),
        fire,
        next: cron.next_after(now),
    }
}

/// The newest `keep` slots in `[first, now]`, oldest first, and how many slots were seen (all
/// of them, or a lower bound when the search stopped before reaching `first`).
fn newest_due(
    cron: &CronSchedule,
    first: DateTime<Utc>,
    now: DateTime<Utc>,
    keep: usize,
) -> (Vec<DateTime<Utc>>, u64) {
    let mut window = FIRST_WINDOW;
    loop {
        let start = now - window;
        let reaches_first = start <= first;
        let mut newest = std::collections::VecDeque::with_capacity(keep + 1);
        let mut seen = 0_u64;
        let mut remember = |slot: DateTime<Utc>| {
            seen += 1;
            newest.push_back(slot);
            if newest.len() > keep {
                newest.pop_front();
            }
        };
        let mut cursor = if reaches_first {
            remember(first);
            first
        } else {
            start
        };
        while let Some(slot) = cron.next_after(cursor) {
            if slot > now {
                break;
            }
            remember(slot);
            cursor = slot;
        }
        if reaches_first || seen >= keep as u64 {
            return (newest.into(), seen);
        }
        window = window * 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn every_minute() -> CronSchedule {
        CronSchedule::parse("* * * * *", "UTC").unwrap()
    }

    #[test]
    fn nothing_is_due_before_the_first_slot() {
        let plan = plan(
            &every_minute(),
            utc("2026-01-01T10:01:00Z"),
            utc("2026-01-01T10:00:59Z"),
            CatchUpPolicy::All,
        );
        assert!(plan.fire.is_empty());
        assert_eq!(plan.next, Some(utc("2026-01-01T10:01:00Z")));
    }

    #[test]
    fn an_on_time_slot_fires_under_every_policy() {
        for policy in [CatchUpPolicy::Skip, CatchUpPolicy::Last, CatchUpPolicy::All] {
            let plan = plan(
                &every_minute(),
                utc("2026-01-01T10:01:00Z"),
                utc("2026-01-01T10:01:00.004Z"),
                policy,
            );
            assert_eq!(
                plan.fire,
                [DueSlot {
                    at: utc("2026-01-01T10:01:00Z"),
                    caught_up: false
                }],
                "{policy:?}"
            );
            assert_eq!(plan.skipped, 0);
            assert_eq!(plan.next, Some(utc("2026-01-01T10:02:00Z")));
        }
    }

    #[test]
    fn an_hour_of_downtime_under_each_policy() {
        let first = utc("2026-01-01T10:01:00Z");
        let now = utc("2026-01-01T11:00:10Z");
        // 10:01 .. 11:00 are due: 60 slots; only 11:00 is on time.
        let skip = plan(&every_minute(), first, now, CatchUpPolicy::Skip);
        assert_eq!(
            skip.fire,
            [DueSlot {
                at: utc("2026-01-01T11:00:00Z"),
                caught_up: false
            }]
        );
        assert_eq!(skip.skipped, 59);

        let last = plan(
            &every_minute(),
            first,
            utc("2026-01-01T11:00:50Z"),
            CatchUpPolicy::Last,
        );
        assert_eq!(
            last.fire,
            [DueSlot {
                at: utc("2026-01-01T11:00:00Z"),
                caught_up: true
            }]
        );
        assert_eq!(last.skipped, 59);

        let all = plan(&every_minute(), first, now, CatchUpPolicy::All);
        assert_eq!(all.fire.len(), 60);
        assert_eq!(all.fire[0].at, first);
        assert!(all.fire[0].caught_up);
        assert!(!all.fire[59].caught_up);
        assert_eq!(all.skipped, 0);
        assert_eq!(all.next, Some(utc("2026-01-01T11:01:00Z")));
    }

    #[test]
    fn catching_up_everything_is_bounded_to_the_newest_slots() {
        let every_second = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        let first = utc("2026-01-01T00:00:00Z");
        let now = utc("2026-01-01T01:00:00Z");
        let all = plan(&every_second, first, now, CatchUpPolicy::All);
        assert_eq!(all.fire.len(), CATCH_UP_LIMIT);
        assert_eq!(all.fire.last().unwrap().at, now);
        assert_eq!(all.fire[0].at, now - Duration::seconds(99));
        // Only the search window was counted (a lower bound of the 3501 really skipped).
        assert!((20..=3501).contains(&all.skipped), "{}", all.skipped);
    }

    #[test]
    fn a_long_downtime_of_a_rare_schedule_is_found() {
        let yearly = CronSchedule::parse("@yearly", "UTC").unwrap();
        let last = plan(
            &yearly,
            utc("2020-01-01T00:00:00Z"),
            utc("2026-06-01T00:00:00Z"),
            CatchUpPolicy::Last,
        );
        assert_eq!(last.fire[0].at, utc("2026-01-01T00:00:00Z"));
        assert_eq!(last.skipped, 6, "2020..2026 are 7 slots, one fires");
        assert_eq!(last.next, Some(utc("2027-01-01T00:00:00Z")));
    }
}
