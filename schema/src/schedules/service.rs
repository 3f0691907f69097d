//! Creating, editing, pausing, deleting, triggering and reading schedules. Shared by GraphQL and
//! the REST shim. Every change is audited and announced on the bus, so every replica's scheduler
//! re-reads its timetable at once.

use chrono::{DateTime, Utc};
use proctor_entity::json::{ArgValue, ArgValues, StringList};
use proctor_entity::values::{CatchUpPolicy, OverlapPolicy, RunOutcome, Trigger};
use proctor_entity::{proc, schedule, schedule_run};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, NotSet,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::json;

use super::cron::{CronSchedule, ScheduleSpecError};
use crate::auth::tokens::normalize_email;
use crate::auth::{Caller, audit};
use crate::error::ApiError;
use crate::executions::runner::NewExecution;
use crate::executions::runner::publish;
use crate::executions::service::{prepare, submit_with};
use crate::notifications::{check_emails, check_url};
use crate::pagination::PageRequest;
use crate::ports::event_bus::Event;
use crate::procs::service::find_proc;
use crate::procs::validate_args;
use crate::state::AppState;

/// Most tags and notification addresses a schedule holds.
const MAX_LIST: usize = 50;
/// Longest tag.
const MAX_TAG: usize = 64;
/// Longest group label.
const MAX_GROUP: usize = 255;
/// Most times `nextFireTimes` lists.
pub const MAX_PREVIEW: usize = 100;

/// A schedule as asked for. On update, fields left out (`None`) keep their current value; for
/// the list and text fields an empty value clears them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// The proc to run.
    pub proc: String,
    /// Cron expression (5 fields, 6 with seconds, or a descriptor).
    pub cron: String,
    /// Argument values for every run.
    pub args: Option<Vec<ArgValue>>,
    /// IANA time zone (default UTC).
    pub timezone: Option<String>,
    /// Free labels.
    pub tags: Option<Vec<String>>,
    /// Grouping label.
    pub group: Option<String>,
    /// Who is mailed each run's outcome.
    pub notification_emails: Option<Vec<String>>,
    /// Whether it fires (default true).
    pub enabled: Option<bool>,
    /// What to do when the previous run is unfinished (default ALLOW).
    pub overlap_policy: Option<OverlapPolicy>,
    /// What to do with slots missed while no scheduler ran (default SKIP).
    pub catch_up_policy: Option<CatchUpPolicy>,
    /// Slack incoming webhook for this schedule's outcomes.
    pub slack_webhook_url: Option<String>,
    /// URL a signed JSON outcome is posted to.
    pub webhook_url: Option<String>,
}

/// A schedule with its proc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleView {
    /// The schedule row.
    pub schedule: schedule::Model,
    /// Its proc.
    pub proc: proc::Model,
}

/// Narrows the schedules list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleQuery {
    /// Only schedules of this proc.
    pub proc: Option<String>,
    /// Only schedules with this tag.
    pub tag: Option<String>,
    /// Only schedules with this group label.
    pub group: Option<String>,
    /// Only enabled (or only paused) schedules.
    pub enabled: Option<bool>,
}

/// Parses a GraphQL `ID` of a schedule.
pub fn parse_schedule_id(field: &str, id: &str) -> Result<i64, ApiError> {
    id.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_input(field, format!("{id:?} is not a schedule id")))
}

/// Parses `cron` in `timezone`, naming the input field that is wrong, and checks it fires at
/// all.
pub fn parse_timing(cron: &str, timezone: &str) -> Result<CronSchedule, ApiError> {
    let parsed = CronSchedule::parse(cron, timezone).map_err(|error| match error {
        ScheduleSpecError::Cron(message) => ApiError::bad_input("input.cron", message),
        ScheduleSpecError::Zone(message) => ApiError::bad_input("input.timezone", message),
    })?;
    if parsed.next_after(Utc::now()).is_none() {
        return Err(ApiError::bad_input(
            "input.cron",
            format!("{cron:?} never fires (no date matches it)"),
        ));
    }
    Ok(parsed)
}

/// The next `count` (1..=100) slot times of a cron expression from now.
pub fn preview(cron: &str, timezone: &str, count: i32) -> Result<Vec<DateTime<Utc>>, ApiError> {
    let count = usize::try_from(count)
        .ok()
        .filter(|count| (1..=MAX_PREVIEW).contains(count))
        .ok_or_else(|| {
            ApiError::bad_input("count", format!("must be between 1 and {MAX_PREVIEW}"))
        })?;
    let parsed = parse_timing(cron, timezone)?;
    let mut times = Vec::with_capacity(count);
    let mut cursor = Utc::now();
    while times.len() < count {
        let Some(next) = parsed.next_after(cursor) else {
            break;
        };
        times.push(next);
        cursor = next;
    }
    Ok(times)
}

/// Whether `caller` may see and manage `schedule`: administrators, whoever may run its proc,
/// and its creator.
fn may_manage(caller: &Caller, schedule: &schedule::Model, proc: &proc::Model) -> bool {
    caller.may_run(proc) || (caller.email.is_some() && caller.email == schedule.created_by)
}

/// A schedule the caller may see (`NOT_FOUND` otherwise, `FORBIDDEN` when it exists but is
/// not theirs).
pub async fn get_schedule(
    state: &AppState,
    caller: &Caller,
    id: i64,
) -> Result<ScheduleView, ApiError> {
    let (schedule, proc) = schedule::Entity::find_by_id(id)
        .find_also_related(proc::Entity)
        .one(state.db())
        .await?
        .and_then(|(schedule, proc)| proc.map(|proc| (schedule, proc)))
        .ok_or_else(|| ApiError::NotFound {
            kind: "schedule",
            key: id.to_string(),
        })?;
    if !may_manage(caller, &schedule, &proc) {
        caller.require_may_run(&proc)?;
    }
    Ok(ScheduleView { schedule, proc })
}

/// A page of the schedules the caller may see, newest first.
pub async fn list_schedules(
    state: &AppState,
    caller: &Caller,
    query: &ScheduleQuery,
    page: PageRequest,
) -> Result<Vec<ScheduleView>, ApiError> {
    // Tags live in a JSON column; filtering in memory keeps one query for every database.
    const CHUNK: u64 = 200;
    let wanted = page.fetch_limit() as usize;
    let mut found = Vec::new();
    let mut before = page.before_id;
    loop {
        let mut select = schedule::Entity::find()
            .find_also_related(proc::Entity)
            .order_by_desc(schedule::Column::Id)
            .limit(CHUNK);
        if let Some(before) = before {
            select = select.filter(schedule::Column::Id.lt(before));
        }
        if let Some(enabled) = query.enabled {
            select = select.filter(schedule::Column::Enabled.eq(enabled));
        }
        if let Some(group) = &query.group {
            select = select.filter(schedule::Column::GroupName.eq(group.as_str()));
        }
        if let Some(name) = &query.proc {
            select = select.filter(proc::Column::Name.eq(name.as_str()));
        }
        let rows = select.all(state.db()).await?;
        let exhausted = (rows.len() as u64) < CHUNK;
        before = rows.last().map(|(schedule, _)| schedule.id);
        for (schedule, proc) in rows {
            let Some(proc) = proc else { continue };
            let tagged = query
                .tag
                .as_ref()
                .is_none_or(|tag| schedule.tags.0.contains(tag));
            if tagged && may_manage(caller, &schedule, &proc) {
                found.push(ScheduleView { schedule, proc });
                if found.len() == wanted {
                    return Ok(found);
                }
            }
        }
        if exhausted {
            return Ok(found);
        }
    }
}

/// A page of a schedule's runs, newest first.
pub async fn list_runs(
    state: &AppState,
    schedule_id: i64,
    page: PageRequest,
) -> Result<Vec<schedule_run::Model>, ApiError> {
    let mut select = schedule_run::Entity::find()
        .filter(schedule_run::Column::ScheduleId.eq(schedule_id))
        .order_by_desc(schedule_run::Column::Id)
        .limit(page.fetch_limit());
    if let Some(before) = page.before_id {
        select = select.filter(schedule_run::Column::Id.lt(before));
    }
    Ok(select.all(state.db()).await?)
}

/// `BAD_USER_INPUT` on `input.cron` when a non-administrator's schedule would fire more often
/// than `PROCTOR_SCHEDULE_MIN_INTERVAL_SECONDS` (judged on its next slots).
fn check_min_interval(
    state: &AppState,
    caller: &Caller,
    timing: &CronSchedule,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let minimum = state.schedule_min_interval();
    if caller.admin || minimum.is_zero() {
        return Ok(());
    }
    let mut previous = match timing.next_after(now) {
        Some(first) => first,
        None => return Ok(()),
    };
    for _ in 0..20 {
        let Some(next) = timing.next_after(previous) else {
            break;
        };
        let gap = (next - previous).to_std().unwrap_or_default();
        if gap < minimum {
            return Err(ApiError::bad_input(
                "input.cron",
                format!(
                    "fires {} s apart; schedules of non-administrators may fire at most every \
                     {} s (PROCTOR_SCHEDULE_MIN_INTERVAL_SECONDS)",
                    gap.as_secs(),
                    minimum.as_secs()
                ),
            ));
        }
        previous = next;
    }
    Ok(())
}

/// Creates a schedule. The caller must be allowed to run the proc; arguments are checked like
/// `execute`'s.
pub async fn create_schedule(
    state: &AppState,
    caller: &Caller,
    spec: ScheduleSpec,
) -> Result<ScheduleView, ApiError> {
    let proc = find_proc(state.db(), &spec.proc).await?;
    caller.require_may_run(&proc)?;
    let now = Utc::now();
    let fields = Fields::check(&proc, &spec, None)?;
    check_min_interval(state, caller, &fields.timing, now)?;
    let next_fire_at = fields.next_fire_at(now);
    let txn = crate::db::begin_write(state.db()).await?;
    let model = fields
        .into_new_row(proc.id, next_fire_at, caller.email.clone(), now)
        .insert(&txn)
        .await?;
    audit::record(
        &txn,
        caller,
        "schedule.create",
        "schedule",
        &model.id.to_string(),
        Some(json!({ "proc": proc.name, "cron": model.cron, "timezone": model.timezone })),
    )
    .await?;
    txn.commit().await?;
    announce(state, model.id).await;
    Ok(ScheduleView {
        schedule: model,
        proc,
    })
}

/// Changes a schedule; fields left out keep their value. Its timetable restarts from now.
pub async fn update_schedule(
    state: &AppState,
    caller: &Caller,
    id: i64,
    spec: ScheduleSpec,
) -> Result<ScheduleView, ApiError> {
    let current = get_schedule(state, caller, id).await?;
    caller.require_may_run(&current.proc)?;
    require_owner(caller, &current.schedule)?;
    let proc = if spec.proc == current.proc.name {
        current.proc.clone()
    } else {
        let proc = find_proc(state.db(), &spec.proc).await?;
        caller.require_may_run(&proc)?;
        proc
    };
    let fields = Fields::check(&proc, &spec, Some(&current.schedule))?;
    let now = Utc::now();
    check_min_interval(state, caller, &fields.timing, now)?;
    let mut model = current.schedule.clone().into_active_model();
    model.proc_id = Set(proc.id);
    model.next_fire_at = Set(fields.next_fire_at(now));
    model.args = Set(ArgValues(fields.args));
    model.cron = Set(fields.cron);
    model.timezone = Set(fields.timezone);
    model.tags = Set(StringList(fields.tags));
    model.group_name = Set(fields.group);
    model.notification_emails = Set(StringList(fields.emails));
    model.enabled = Set(fields.enabled);
    model.overlap_policy = Set(fields.overlap);
    model.catch_up_policy = Set(fields.catch_up);
    model.slack_webhook_url = Set(fields.slack_webhook_url);
    model.webhook_url = Set(fields.webhook_url);
    model.updated_at = Set(now);
    let txn = crate::db::begin_write(state.db()).await?;
    let model = model.update(&txn).await?;
    audit::record(
        &txn,
        caller,
        "schedule.update",
        "schedule",
        &id.to_string(),
        Some(json!({ "proc": proc.name, "cron": model.cron, "timezone": model.timezone })),
    )
    .await?;
    txn.commit().await?;
    announce(state, id).await;
    Ok(ScheduleView {
        schedule: model,
        proc,
    })
}

/// Pauses or resumes a schedule. A resumed schedule fires from its next slot after now (slots
/// that passed while paused are not caught up).
pub async fn set_schedule_enabled(
    state: &AppState,
    caller: &Caller,
    id: i64,
    enabled: bool,
) -> Result<ScheduleView, ApiError> {
    let current = get_schedule(state, caller, id).await?;
    caller.require_may_run(&current.proc)?;
    require_owner(caller, &current.schedule)?;
    let now = Utc::now();
    let next_fire_at = if enabled {
        parse_timing(&current.schedule.cron, &current.schedule.timezone)?.next_after(now)
    } else {
        None
    };
    let mut model = current.schedule.clone().into_active_model();
    model.enabled = Set(enabled);
    model.next_fire_at = Set(next_fire_at);
    model.updated_at = Set(now);
    let txn = crate::db::begin_write(state.db()).await?;
    let model = model.update(&txn).await?;
    let action = if enabled {
        "schedule.enable"
    } else {
        "schedule.disable"
    };
    audit::record(&txn, caller, action, "schedule", &id.to_string(), None).await?;
    txn.commit().await?;
    announce(state, id).await;
    Ok(ScheduleView {
        schedule: model,
        proc: current.proc,
    })
}

/// `FORBIDDEN` unless `caller` owns `schedule` or is an administrator: a schedule runs with
/// its owner's identity and rights, so nobody else may change what it runs or whom it tells.
fn require_owner(caller: &Caller, schedule: &schedule::Model) -> Result<(), ApiError> {
    let owns = caller.email.is_some() && caller.email == schedule.created_by;
    if caller.admin || owns {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "schedule {} belongs to {}; only its owner or an administrator may change it",
        schedule.id,
        schedule.created_by.as_deref().unwrap_or("Proctor")
    )))
}

/// Gives a schedule to another owner (administrators only): it fires with their rights from
/// then on. The new owner must be a known e-mail address.
pub async fn transfer_schedule(
    state: &AppState,
    caller: &Caller,
    id: i64,
    owner: &str,
) -> Result<ScheduleView, ApiError> {
    caller.require_admin(state, "transfer schedules")?;
    let owner = normalize_email("owner", owner)?;
    if state.authenticator().keeps_users()
        && crate::auth::tokens::standing_of(state.db(), &owner)
            .await?
            .is_none()
    {
        return Err(ApiError::bad_input(
            "owner",
            format!("{owner} is not a user with an active token; issue one first"),
        ));
    }
    let current = get_schedule(state, caller, id).await?;
    let previous = current.schedule.created_by.clone();
    let mut model = current.schedule.clone().into_active_model();
    model.created_by = Set(Some(owner.clone()));
    model.updated_at = Set(Utc::now());
    let txn = crate::db::begin_write(state.db()).await?;
    let model = model.update(&txn).await?;
    audit::record(
        &txn,
        caller,
        "schedule.transfer",
        "schedule",
        &id.to_string(),
        Some(json!({ "from": previous, "to": owner })),
    )
    .await?;
    txn.commit().await?;
    announce(state, id).await;
    Ok(ScheduleView {
        schedule: model,
        proc: current.proc,
    })
}

/// Deletes a schedule and its run history; its executions stay (without the link).
pub async fn delete_schedule(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let current = get_schedule(state, caller, id).await?;
    caller.require_may_run(&current.proc)?;
    require_owner(caller, &current.schedule)?;
    let txn = crate::db::begin_write(state.db()).await?;
    schedule::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        caller,
        "schedule.delete",
        "schedule",
        &id.to_string(),
        Some(json!({ "proc": current.proc.name, "cron": current.schedule.cron })),
    )
    .await?;
    txn.commit().await?;
    announce(state, id).await;
    Ok(())
}

/// Runs a schedule's proc now, as the caller, with the schedule's arguments. The run is a
/// scheduled one (`trigger: SCHEDULE`, notifications apply) and is listed among the schedule's
/// runs; the overlap policy does not apply to a run asked for by hand.
pub async fn trigger_schedule(
    state: &AppState,
    caller: &Caller,
    id: i64,
) -> Result<proctor_entity::execution::Model, ApiError> {
    let view = get_schedule(state, caller, id).await?;
    let prepared = prepare(state, caller, view.proc, &view.schedule.args.0).await?;
    let new = NewExecution {
        user_email: caller.email.clone(),
        trigger: Trigger::Schedule,
        schedule_id: Some(id),
    };
    let auditor = caller.clone();
    submit_with(state, caller, &prepared, new, move |txn, execution| {
        Box::pin(async move {
            record_run(
                txn,
                id,
                execution.created_at,
                execution.created_at,
                RunOutcome::Triggered,
                Some(execution.id),
                None,
            )
            .await?;
            audit::record(
                txn,
                &auditor,
                "schedule.trigger",
                "schedule",
                &id.to_string(),
                Some(json!({ "execution": execution.id })),
            )
            .await?;
            Ok(())
        })
    })
    .await
}

/// Inserts the run of `(schedule_id, slot)` unless that slot already has one; `false` when it
/// had (the slot was claimed before, by this or another replica).
pub(crate) async fn record_run<C: ConnectionTrait>(
    db: &C,
    schedule_id: i64,
    slot: DateTime<Utc>,
    fired_at: DateTime<Utc>,
    outcome: RunOutcome,
    execution_id: Option<i64>,
    detail: Option<String>,
) -> Result<bool, ApiError> {
    let run = schedule_run::ActiveModel {
        id: NotSet,
        schedule_id: Set(schedule_id),
        slot: Set(slot),
        execution_id: Set(execution_id),
        fired_at: Set(fired_at),
        outcome: Set(outcome),
        detail: Set(detail),
        notifications: Set(None),
    };
    let inserted = schedule_run::Entity::insert(run)
        .on_conflict(
            OnConflict::columns([schedule_run::Column::ScheduleId, schedule_run::Column::Slot])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(inserted == 1)
}

/// Tells every replica's scheduler that a schedule changed.
async fn announce(state: &AppState, schedule_id: i64) {
    publish(state, Event::ScheduleChanged { schedule_id }).await;
}

/// The checked, normalized fields of a schedule.
struct Fields {
    args: Vec<ArgValue>,
    cron: String,
    timezone: String,
    timing: CronSchedule,
    tags: Vec<String>,
    group: Option<String>,
    emails: Vec<String>,
    enabled: bool,
    overlap: OverlapPolicy,
    catch_up: CatchUpPolicy,
    slack_webhook_url: Option<String>,
    webhook_url: Option<String>,
}

impl Fields {
    /// Checks `spec` for `proc`, filling left-out fields from `current` (an update) or the
    /// defaults (a creation).
    fn check(
        proc: &proc::Model,
        spec: &ScheduleSpec,
        current: Option<&schedule::Model>,
    ) -> Result<Self, ApiError> {
        let timezone = match (&spec.timezone, current) {
            (Some(zone), _) if !zone.trim().is_empty() => zone.trim().to_owned(),
            (None, Some(current)) => current.timezone.clone(),
            _ => "UTC".to_owned(),
        };
        let cron = spec.cron.trim().to_owned();
        let timing = parse_timing(&cron, &timezone)?;
        let args = match (&spec.args, current) {
            (Some(args), _) => args.clone(),
            (None, Some(current)) => current.args.0.clone(),
            (None, None) => Vec::new(),
        };
        let args = validate_args(proc, &args).map_err(|error| match error {
            ApiError::BadUserInput { field, message } => {
                ApiError::bad_input(format!("input.{field}"), message)
            }
            other => other,
        })?;
        let tags = match (&spec.tags, current) {
            (Some(tags), _) => check_tags(tags)?,
            (None, Some(current)) => current.tags.0.clone(),
            (None, None) => Vec::new(),
        };
        let group = match (&spec.group, current) {
            (Some(group), _) => check_group(group)?,
            (None, Some(current)) => current.group_name.clone(),
            (None, None) => None,
        };
        let emails = match (&spec.notification_emails, current) {
            (Some(emails), _) => check_emails("input.notificationEmails", emails)?,
            (None, Some(current)) => current.notification_emails.0.clone(),
            (None, None) => Vec::new(),
        };
        let slack_webhook_url = match (&spec.slack_webhook_url, current) {
            (Some(url), _) => check_url("input.slackWebhookUrl", url)?,
            (None, Some(current)) => current.slack_webhook_url.clone(),
            (None, None) => None,
        };
        let webhook_url = match (&spec.webhook_url, current) {
            (Some(url), _) => check_url("input.webhookUrl", url)?,
            (None, Some(current)) => current.webhook_url.clone(),
            (None, None) => None,
        };
        Ok(Self {
            args,
            cron,
            timezone,
            timing,
            tags,
            group,
            emails,
            enabled: spec
                .enabled
                .or(current.map(|current| current.enabled))
                .unwrap_or(true),
            overlap: spec
                .overlap_policy
                .or(current.map(|current| current.overlap_policy))
                .unwrap_or(OverlapPolicy::Allow),
            catch_up: spec
                .catch_up_policy
                .or(current.map(|current| current.catch_up_policy))
                .unwrap_or(CatchUpPolicy::Skip),
            slack_webhook_url,
            webhook_url,
        })
    }

    /// The first slot after `now`, when enabled.
    /// The row of a new schedule of these fields.
    fn into_new_row(
        self,
        proc_id: i64,
        next_fire_at: Option<DateTime<Utc>>,
        created_by: Option<String>,
        created_at: DateTime<Utc>,
    ) -> schedule::ActiveModel {
        schedule::ActiveModel {
            id: NotSet,
            proc_id: Set(proc_id),
            args: Set(ArgValues(self.args)),
            cron: Set(self.cron),
            timezone: Set(self.timezone),
            tags: Set(StringList(self.tags)),
            group_name: Set(self.group),
            notification_emails: Set(StringList(self.emails)),
            enabled: Set(self.enabled),
            overlap_policy: Set(self.overlap),
            catch_up_policy: Set(self.catch_up),
            next_fire_at: Set(next_fire_at),
            created_by: Set(created_by),
            slack_webhook_url: Set(self.slack_webhook_url),
            webhook_url: Set(self.webhook_url),
            created_at: Set(created_at),
            updated_at: Set(created_at),
        }
    }

    fn next_fire_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.enabled.then(|| self.timing.next_after(now)).flatten()
    }
}

fn check_tags(tags: &[String]) -> Result<Vec<String>, ApiError> {
    let mut checked: Vec<String> = Vec::new();
    for (index, tag) in tags.iter().enumerate() {
        let tag = tag.trim();
        let field = format!("input.tags[{index}]");
        if tag.is_empty() || tag.chars().count() > MAX_TAG {
            return Err(ApiError::bad_input(
                field,
                format!("a tag is 1 to {MAX_TAG} characters"),
            ));
        }
        if !checked.iter().any(|existing| existing == tag) {
            checked.push(tag.to_owned());
        }
    }
    if checked.len() > MAX_LIST {
        return Err(ApiError::bad_input(
            "input.tags",
            format!("at most {MAX_LIST} tags"),
        ));
    }
    Ok(checked)
}

fn check_group(group: &str) -> Result<Option<String>, ApiError> {
    let group = group.trim();
    if group.chars().count() > MAX_GROUP {
        return Err(ApiError::bad_input(
            "input.group",
            format!("at most {MAX_GROUP} characters"),
        ));
    }
    Ok((!group.is_empty()).then(|| group.to_owned()))
}

/// Stores a schedule taken from another system (`proctord import-v2`) in `txn`, with its audit
/// event: checked like a new one (arguments against the proc, cron, time zone, e-mails),
/// created by `created_by` at `created_at`; returns its id. Checks no rights: the operator
/// running the import acts for the system.
pub async fn import_schedule<C: ConnectionTrait>(
    txn: &C,
    caller: &Caller,
    proc: &proc::Model,
    spec: ScheduleSpec,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
) -> Result<i64, ApiError> {
    let fields = Fields::check(proc, &spec, None)?;
    let next_fire_at = fields.next_fire_at(Utc::now());
    let model = fields
        .into_new_row(proc.id, next_fire_at, created_by, created_at)
        .insert(txn)
        .await?;
    audit::record(
        txn,
        caller,
        "schedule.import",
        "schedule",
        &model.id.to_string(),
        Some(json!({ "proc": proc.name, "cron": model.cron, "timezone": model.timezone })),
    )
    .await?;
    Ok(model.id)
}

/// Checks `spec` for `proc` as [`import_schedule`] would, storing nothing (a dry run).
pub fn check_import(proc: &proc::Model, spec: &ScheduleSpec) -> Result<(), ApiError> {
    Fields::check(proc, spec, None).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_being_repeated() {
        assert_eq!(check_url("f", " ").unwrap(), None);
        assert_eq!(
            check_url("f", "https://hooks.example.com/T1/B2/secret").unwrap(),
            Some("https://hooks.example.com/T1/B2/secret".to_owned())
        );
        for bad in [
            "ftp://example.com/x",
            "hooks.example.com/secret-token",
            "https://",
        ] {
            let error = check_url("input.slackWebhookUrl", bad).unwrap_err();
            let text = error.to_string();
            assert!(text.starts_with("input.slackWebhookUrl: "), "{text}");
            assert!(!text.contains("secret-token"), "{text}");
        }
    }

    #[test]
    fn tags_and_emails_are_normalized_and_named_when_wrong() {
        assert_eq!(
            check_tags(&[" nightly ".into(), "nightly".into(), "db".into()]).unwrap(),
            ["nightly", "db"]
        );
        let error = check_tags(&["ok".into(), "  ".into()]).unwrap_err();
        assert!(error.to_string().starts_with("input.tags[1]: "), "{error}");
        assert_eq!(
            check_emails(
                "input.notificationEmails",
                &["Ops@Example.com".into(), "ops@example.com".into()]
            )
            .unwrap(),
            ["ops@example.com"]
        );
        let error = check_emails(
            "input.notificationEmails",
            &["ops@example.com".into(), "nobody".into()],
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("input.notificationEmails[1]: "),
            "{error}"
        );
        assert_eq!(check_group("  ").unwrap(), None);
    }

    #[test]
    fn timing_errors_name_the_field() {
        let error = parse_timing("* * *", "UTC").unwrap_err();
        assert!(error.to_string().starts_with("input.cron: "), "{error}");
        let error = parse_timing("* * * * *", "Nowhere/Town").unwrap_err();
        assert!(error.to_string().starts_with("input.timezone: "), "{error}");
        let error = parse_timing("0 0 30 2 *", "UTC").unwrap_err();
        assert!(error.to_string().contains("never fires"), "{error}");
        assert_eq!(preview("@daily", "UTC", 3).unwrap().len(), 3);
        assert!(preview("@daily", "UTC", 0).is_err());
        assert!(preview("@daily", "UTC", 101).is_err());
    }
}
