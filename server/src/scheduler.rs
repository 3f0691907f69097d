//! The scheduler loop: every replica runs one. It sleeps until the earliest slot of any enabled
//! schedule, fires what is due (each slot once across replicas, see
//! `proctor_schema::schedules::firing`), and wakes early when a schedule changes anywhere (a
//! `ScheduleChanged` event on the bus), so created, edited, paused and deleted schedules take
//! effect at once (within a second even when an event is lost) instead of at the next polling
//! interval of minutes.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use proctor_schema::AppState;
use proctor_schema::ports::event_bus::Topic;
use proctor_schema::schedules::firing::{fire_due, next_due};

/// Longest sleep without looking at the schedules. Change events wake the loop at once; this
/// bounds the delay when one is lost (Redis reconnecting, a replica starting up before its
/// subscription is in place), so a change always takes effect within a second. It costs two
/// indexed queries per second per replica.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);
/// Sleep while a slot is due but unhandled, so a slot another replica is still committing or a
/// failing schedule does not make the loop spin.
const SHORTEST_SLEEP: Duration = Duration::from_millis(50);
/// Pause after the database failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Fires schedules on time, forever.
pub async fn run(state: AppState) {
    let mut changes = state.event_bus().subscribe(Topic::Schedules);
    tracing::info!("scheduler started");
    loop {
        match fire_due(&state, Utc::now()).await {
            Ok(report) if report.fired + report.skipped > 0 => {
                tracing::debug!(
                    fired = report.fired,
                    skipped = report.skipped,
                    "scheduler tick"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "scheduler tick failed; retrying"),
        }
        let wait = match next_due(&state).await {
            Ok(Some(next)) => match (next - Utc::now()).to_std() {
                Ok(until_next) if !until_next.is_zero() => until_next.min(LONGEST_SLEEP),
                // Due but not handled yet (another replica is committing it, or it failed).
                _ => SHORTEST_SLEEP,
            },
            Ok(None) => LONGEST_SLEEP,
            Err(error) => {
                tracing::warn!(%error, "cannot read the next schedule slot; retrying");
                RETRY_AFTER
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            change = changes.next() => {
                if change.is_none() {
                    // The bus closed (shutting down): keep the timetable by the clock alone.
                    changes = futures::stream::pending().boxed();
                }
            }
        }
    }
}
