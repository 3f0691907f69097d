//! `POST`/`GET /schedule` and `GET`/`DELETE /schedule/{id}`: schedules in the v2 shape, with
//! v2's five-field cron convention (the server adds the seconds field).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proctor_schema::AppState;
use proctor_schema::auth::Caller;
use proctor_schema::error::ApiError;
use proctor_schema::pagination::PageRequest;
use proctor_schema::schedules::service::{
    ScheduleQuery, ScheduleSpec, ScheduleView, create_schedule, delete_schedule, get_schedule,
    list_schedules, parse_timing,
};
use regex::Regex;
use serde::Deserialize;

use super::wire::{ScheduleJson, arg_values};
use super::{LegacyCaller, LegacyError, decode_object, json_response, parse_path_id};

/// The address check v2 applied to each notification e-mail (badoux/checkmail's format).
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$",
    )
    .expect("the e-mail pattern compiles")
});

/// Zone v2 schedules fire in (v2 used the scheduler host's zone, UTC in its containers).
const LEGACY_ZONE: &str = "UTC";

/// The `POST /schedule` body (`id`, `userEmail` and the timestamps are ignored, as in v2, or
/// taken from the caller).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleBody {
    #[serde(default)]
    job_name: Option<String>,
    #[serde(default)]
    args: Option<BTreeMap<String, String>>,
    #[serde(default)]
    tags: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    notification_emails: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// The six-field cron stored for a v2 crontab: v2 clients send `min hour dom month [dow]`
/// and the server prepends a zero seconds field.
fn with_seconds(cron: &str) -> Option<String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    match fields.len() {
        5 => Some(format!("0 {}", fields.join(" "))),
        // v2's parser let day-of-week default to `*`.
        4 => Some(format!("0 {} *", fields.join(" "))),
        _ => None,
    }
}

/// Checks a v2 schedule in v2's order, with v2's messages (plus what exactly is wrong where
/// v2 did not say); the domain service then checks the rest (proc, rights, arguments).
fn check(body: ScheduleBody) -> Result<ScheduleSpec, LegacyError> {
    let tags: Vec<String> = body
        .tags
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(str::to_owned)
        .collect();
    if tags.is_empty() {
        return Err(LegacyError::bad_request("Schedule tag(s) are missing"));
    }
    let given_cron = body.cron.unwrap_or_default();
    let cron = with_seconds(&given_cron).ok_or_else(|| {
        LegacyError::bad_request(format!(
            "Schedule cron format is invalid: {given_cron:?} is not a 5-field crontab \
             (minute hour day-of-month month day-of-week)"
        ))
    })?;
    if let Err(error) = parse_timing(&cron, LEGACY_ZONE) {
        let detail = match error {
            ApiError::BadUserInput { message, .. } => message,
            other => other.to_string(),
        };
        return Err(LegacyError::bad_request(format!(
            "Schedule cron format is invalid: {detail}"
        )));
    }
    let emails: Vec<String> = body
        .notification_emails
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    if let Some(bad) = emails.iter().find(|email| !EMAIL.is_match(email)) {
        return Err(LegacyError::bad_request(format!(
            "Email is invalid: {bad:?} is not an e-mail address (separate several with commas, \
             no spaces)"
        )));
    }
    let group = body.group.unwrap_or_default();
    if group.trim().is_empty() {
        return Err(LegacyError::bad_request("Schedule group is missing"));
    }
    Ok(ScheduleSpec {
        proc: body.job_name.unwrap_or_default(),
        cron,
        args: Some(arg_values(body.args)),
        timezone: Some(LEGACY_ZONE.to_owned()),
        tags: Some(tags),
        group: Some(group),
        notification_emails: Some(emails),
        // v2 left a schedule disabled when the field was missing: it never ran and was
        // never listed. Omitting it now means enabled.
        enabled: Some(body.enabled.unwrap_or(true)),
        ..ScheduleSpec::default()
    })
}

/// The v2 answer to a domain error about a schedule.
fn schedule_error(error: &ApiError) -> LegacyError {
    match error {
        ApiError::NotFound { kind: "proc", .. } => {
            LegacyError::new(StatusCode::NOT_FOUND, "Metadata not found")
        }
        ApiError::BadUserInput { field, message } => LegacyError::bad_request(format!(
            "{}: {message}",
            field.strip_prefix("input.").unwrap_or(field)
        )),
        other => LegacyError::from_api(other, ""),
    }
}

/// Creates a schedule; 201 with it (its cron with the seconds field).
pub async fn create(
    State(state): State<AppState>,
    LegacyCaller(caller): LegacyCaller,
    body: Bytes,
) -> Response {
    if let Err(refusal) = super::refuse_nul(&body) {
        return refusal.into_response();
    }
    let Some(body) = decode_object::<ScheduleBody>(&body) else {
        return LegacyError::bad_request("Malformed request").into_response();
    };
    let spec = match check(body) {
        Ok(spec) => spec,
        Err(error) => return error.into_response(),
    };
    match create_schedule(&state, &caller, spec).await {
        Ok(view) => json_response(StatusCode::CREATED, &ScheduleJson::from(&view)),
        Err(error) => schedule_error(&error).into_response(),
    }
}

/// Every enabled schedule the caller may see, oldest first; 204 with no body when there are
/// none (the Go CLI says "No scheduled jobs found").
pub async fn list(State(state): State<AppState>, LegacyCaller(caller): LegacyCaller) -> Response {
    match enabled_schedules(&state, &caller).await {
        Ok(views) if views.is_empty() => StatusCode::NO_CONTENT.into_response(),
        Ok(views) => {
            let schedules: Vec<ScheduleJson> = views.iter().rev().map(ScheduleJson::from).collect();
            json_response(StatusCode::OK, &schedules)
        }
        Err(error) => schedule_error(&error).into_response(),
    }
}

/// All pages of the enabled schedules, newest first.
async fn enabled_schedules(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<ScheduleView>, ApiError> {
    let query = ScheduleQuery {
        enabled: Some(true),
        ..ScheduleQuery::default()
    };
    let mut all = Vec::new();
    let mut before_id = None;
    loop {
        let page = PageRequest {
            first: 100,
            before_id,
        };
        let mut views = list_schedules(state, caller, &query, page).await?;
        let more = views.len() as u64 > page.first;
        views.truncate(page.first as usize);
        before_id = views.last().map(|view| view.schedule.id);
        all.extend(views);
        if !more {
            return Ok(all);
        }
    }
}

/// The schedule with path id `raw`: parsed (400) and looked up (404 when it does not exist;
/// v2 answered 500).
async fn find(state: &AppState, caller: &Caller, raw: &str) -> Result<ScheduleView, LegacyError> {
    let id = parse_path_id(raw)?;
    let not_found = || LegacyError::new(StatusCode::NOT_FOUND, format!("schedule {id} not found"));
    let id = i64::try_from(id).map_err(|_| not_found())?;
    match get_schedule(state, caller, id).await {
        Ok(view) => Ok(view),
        Err(ApiError::NotFound { .. }) => Err(not_found()),
        Err(error) => Err(schedule_error(&error)),
    }
}

/// One schedule, enabled or not.
pub async fn get(
    State(state): State<AppState>,
    LegacyCaller(caller): LegacyCaller,
    Path(raw): Path<String>,
) -> Response {
    match find(&state, &caller, &raw).await {
        Ok(view) => json_response(StatusCode::OK, &ScheduleJson::from(&view)),
        Err(error) => error.into_response(),
    }
}

/// Deletes a schedule (its executions stay); every replica's scheduler stops firing it.
pub async fn delete(
    State(state): State<AppState>,
    LegacyCaller(caller): LegacyCaller,
    Path(raw): Path<String>,
) -> Response {
    let view = match find(&state, &caller, &raw).await {
        Ok(view) => view,
        Err(error) => return error.into_response(),
    };
    match delete_schedule(&state, &caller, view.schedule.id).await {
        Ok(()) => "Schedule delete is successful".into_response(),
        Err(ApiError::NotFound { .. }) => LegacyError::new(
            StatusCode::NOT_FOUND,
            format!("schedule {} not found", view.schedule.id),
        )
        .into_response(),
        Err(error) => schedule_error(&error).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_crontabs_get_a_zero_seconds_field() {
        assert_eq!(with_seconds("* * * * *").as_deref(), Some("0 * * * * *"));
        assert_eq!(
            with_seconds(" 0  2 * * 1-5 ").as_deref(),
            Some("0 0 2 * * 1-5")
        );
        assert_eq!(with_seconds("0 2 * *").as_deref(), Some("0 0 2 * * *"));
        for refused in ["", "@daily", "0 0 2 * * *", "* * *"] {
            assert_eq!(with_seconds(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn the_v2_email_format() {
        for good in ["ada@example.com", "a.b+c@sub.example.co", "x@localhost"] {
            assert!(EMAIL.is_match(good), "{good}");
        }
        for bad in ["", "test", " ada@example.com", "a@-x.com", "a@b..c"] {
            assert!(!EMAIL.is_match(bad), "{bad}");
        }
    }
}
