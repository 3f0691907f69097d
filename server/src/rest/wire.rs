//! The JSON shapes and text formats of the Proctor v2 REST routes, built from our models.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use proctor_entity::execution;
use proctor_entity::json::ArgValue;
use proctor_entity::values::ExecutionStatus;
use proctor_schema::executions::runner::run_name;
use proctor_schema::schedules::service::ScheduleView;
use serde::Serialize;

/// `ExecutionResult` of `POST /execution` and `GET /execution/{id}/status`; the field order is
/// the v2 server's.
#[derive(Debug, Serialize)]
pub struct ExecutionResult {
    id: i64,
    job_name: String,
    name: String,
    image_tag: String,
    created_at: String,
    updated_at: String,
    status: &'static str,
}

impl From<&execution::Model> for ExecutionResult {
    fn from(execution: &execution::Model) -> Self {
        Self {
            id: execution.id,
            job_name: execution.proc_name.clone(),
            name: run_name(&execution.proc_name, execution.id),
            image_tag: execution.image.clone().unwrap_or_default(),
            created_at: go_time(execution.created_at),
            updated_at: go_time(execution.updated_at),
            status: legacy_status(execution),
        }
    }
}

/// The v2 status string of an execution: `CREATED` until it ends, `FINISHED` once it has (v2
/// had no success or failure state; GraphQL tells them apart), `CREATION_FAILED` when the
/// executor could not start it, and `REQUIREMENT_NOT_MET` for a scheduled run that was never
/// handed to a supervisor (a secret or argument it needs was missing; such rows are the only
/// ones without an owner).
pub fn legacy_status(execution: &execution::Model) -> &'static str {
    match execution.status {
        ExecutionStatus::Pending | ExecutionStatus::Starting | ExecutionStatus::Running => {
            "CREATED"
        }
        ExecutionStatus::CreationFailed if execution.owner.is_none() => "REQUIREMENT_NOT_MET",
        ExecutionStatus::CreationFailed => "CREATION_FAILED",
        ExecutionStatus::Succeeded
        | ExecutionStatus::Failed
        | ExecutionStatus::TimedOut
        | ExecutionStatus::Cancelled
        | ExecutionStatus::Lost => "FINISHED",
    }
}

/// The schedule JSON of the v2 `/schedule` routes; the field order is the v2 server's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleJson {
    id: i64,
    job_name: String,
    args: BTreeMap<String, String>,
    tags: String,
    cron: String,
    notification_emails: String,
    user_email: String,
    group: String,
    enabled: bool,
    created_at: String,
    updated_at: String,
}

impl From<&ScheduleView> for ScheduleJson {
    fn from(view: &ScheduleView) -> Self {
        let schedule = &view.schedule;
        Self {
            id: schedule.id,
            job_name: view.proc.name.clone(),
            args: args_map(&schedule.args.0),
            tags: schedule.tags.0.join(","),
            cron: schedule.cron.clone(),
            notification_emails: schedule.notification_emails.0.join(","),
            user_email: schedule.created_by.clone().unwrap_or_default(),
            group: schedule.group_name.clone().unwrap_or_default(),
            enabled: schedule.enabled,
            created_at: go_json_time(schedule.created_at),
            updated_at: go_json_time(schedule.updated_at),
        }
    }
}

/// Argument values as the v2 `{name: value}` object (Go wrote map keys sorted).
pub fn args_map(args: &[ArgValue]) -> BTreeMap<String, String> {
    args.iter()
        .map(|arg| (arg.name.clone(), arg.value.clone()))
        .collect()
}

/// A v2 `{name: value}` object as argument values, in name order.
pub fn arg_values(args: Option<BTreeMap<String, String>>) -> Vec<ArgValue> {
    args.unwrap_or_default()
        .into_iter()
        .map(|(name, value)| ArgValue { name, value })
        .collect()
}

/// Fractional seconds as Go prints them: no trailing zeros, nothing at all when zero.
fn fraction(time: DateTime<Utc>) -> String {
    let nanos = time.timestamp_subsec_nanos() % 1_000_000_000;
    if nanos == 0 {
        return String::new();
    }
    format!(".{nanos:09}").trim_end_matches('0').to_owned()
}

/// Go's `time.Time.String()` of a UTC time (the execution timestamps), e.g.
/// `2019-10-03 04:00:58.083798 +0000 UTC`.
pub fn go_time(time: DateTime<Utc>) -> String {
    format!(
        "{}{} +0000 UTC",
        time.format("%Y-%m-%d %H:%M:%S"),
        fraction(time)
    )
}

/// Go's JSON form of a UTC time (RFC 3339 with trimmed nanoseconds; the schedule timestamps),
/// e.g. `2019-10-03T04:00:58.083798Z`.
pub fn go_json_time(time: DateTime<Utc>) -> String {
    format!("{}{}Z", time.format("%Y-%m-%dT%H:%M:%S"), fraction(time))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_print_like_go() {
        let whole = Utc.with_ymd_and_hms(2019, 10, 3, 4, 0, 58).unwrap();
        assert_eq!(go_time(whole), "2019-10-03 04:00:58 +0000 UTC");
        assert_eq!(go_json_time(whole), "2019-10-03T04:00:58Z");
        let micros = whole + chrono::Duration::microseconds(83_798);
        assert_eq!(go_time(micros), "2019-10-03 04:00:58.083798 +0000 UTC");
        assert_eq!(go_json_time(micros), "2019-10-03T04:00:58.083798Z");
        let tenths = whole + chrono::Duration::milliseconds(500);
        assert_eq!(go_json_time(tenths), "2019-10-03T04:00:58.5Z");
    }

    #[test]
    fn argument_objects_are_sorted_both_ways() {
        let mut given = BTreeMap::new();
        given.insert("B".to_owned(), "2".to_owned());
        given.insert("A".to_owned(), "x=1".to_owned());
        let values = arg_values(Some(given.clone()));
        assert_eq!(values[0].name, "A");
        assert_eq!(args_map(&values), given);
        assert!(arg_values(None).is_empty());
    }
}
