//! Schedules: procs run on a cron timetable, fired once per slot by whichever replica gets
//! there first, with notifications when each run ends.
//!
//! - [`cron`]: cron expressions in a time zone, with the daylight-saving rule;
//! - [`plan`]: which due slots fire now (catch-up policies), a pure decision;
//! - [`firing`]: one scheduler tick against the database, exactly once across replicas;
//! - [`service`]: create, edit, pause, delete, trigger and read schedules (every API);
//!
//! The loop that calls [`firing::fire_due`] on time lives in `proctor-server`.

pub mod cron;
pub mod firing;
mod graphql;
pub mod plan;
pub mod service;

pub use graphql::{Schedule, SchedulesMutation, SchedulesQuery};
