//! Schedule queries, mutations and types.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use proctor_entity::schedule_run;
use proctor_entity::values;

use super::service::{self, ScheduleQuery, ScheduleSpec, ScheduleView, parse_schedule_id};
use crate::auth::{app_state, caller, request};
use crate::error::{ApiError, ApiResultExt};
use crate::executions::Execution;
use crate::executions::service::may_read;
use crate::notifications::outbox::NotificationRecord;
use crate::pagination::{PageRequest, connection};
use crate::procs::{Arg, ArgInput, Proc, arg_values};

/// What a schedule does when its previous run is still unfinished at the next slot.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "values::OverlapPolicy")]
pub enum OverlapPolicy {
    /// Start another run anyway.
    Allow,
    /// Skip the slot (the skip is recorded among the schedule's runs).
    Forbid,
    /// Cancel the unfinished run and start a new one.
    Replace,
}

/// What a schedule does with slots missed while no scheduler was running.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "values::CatchUpPolicy")]
pub enum CatchUpPolicy {
    /// Forget them; fire again from the next slot.
    Skip,
    /// Fire once, for the most recent missed slot.
    Last,
    /// Fire every missed slot, at most the 100 most recent.
    All,
}

/// What became of a slot.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "values::RunOutcome")]
pub enum ScheduleRunOutcome {
    /// The slot started an execution.
    Started,
    /// Somebody triggered the schedule by hand.
    Triggered,
    /// Skipped: the previous run was unfinished and the overlap policy is FORBID.
    SkippedOverlap,
    /// The run could not be created; `detail` and the execution's reason say why.
    NotStarted,
    /// Skipped: the schedule's owner may no longer run the proc (token revoked, group lost,
    /// user gone); `detail` says why.
    SkippedForbidden,
}

/// A schedule: a proc run on a cron timetable.
pub struct Schedule(pub ScheduleView);

#[Object]
impl Schedule {
    /// Schedule id (a 64-bit number).
    async fn id(&self) -> ID {
        ID(self.0.schedule.id.to_string())
    }
    /// The proc it runs.
    async fn proc_name(&self) -> &str {
        &self.0.proc.name
    }
    /// The proc it runs, if the caller may see it.
    async fn proc(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Proc>> {
        let caller = caller(ctx).await.gql()?;
        let view = crate::loaders::proc(ctx, self.0.proc.id).await.gql()?;
        Ok(view
            .filter(|view| caller.may_run(&view.model))
            .map(Proc::from))
    }
    /// Argument values of every run.
    async fn args(&self) -> Vec<Arg> {
        self.0
            .schedule
            .args
            .0
            .iter()
            .cloned()
            .map(Arg::from)
            .collect()
    }
    /// The cron expression as given.
    async fn cron(&self) -> &str {
        &self.0.schedule.cron
    }
    /// The IANA time zone the expression is read in.
    async fn timezone(&self) -> &str {
        &self.0.schedule.timezone
    }
    /// Free labels.
    async fn tags(&self) -> &[String] {
        &self.0.schedule.tags.0
    }
    /// Grouping label (not an access group).
    async fn group(&self) -> Option<&str> {
        self.0.schedule.group_name.as_deref()
    }
    /// Who is mailed each run's outcome.
    async fn notification_emails(&self) -> &[String] {
        &self.0.schedule.notification_emails.0
    }
    /// Whether a Slack webhook is set for this schedule (the URL is a credential and is never
    /// shown).
    async fn slack_webhook_configured(&self) -> bool {
        self.0.schedule.slack_webhook_url.is_some()
    }
    /// Where a signed JSON outcome is posted after each run.
    async fn webhook_url(&self) -> Option<&str> {
        self.0.schedule.webhook_url.as_deref()
    }
    /// Whether it fires.
    async fn enabled(&self) -> bool {
        self.0.schedule.enabled
    }
    /// What happens when the previous run is unfinished.
    async fn overlap_policy(&self) -> OverlapPolicy {
        self.0.schedule.overlap_policy.into()
    }
    /// What happens to slots missed while no scheduler ran.
    async fn catch_up_policy(&self) -> CatchUpPolicy {
        self.0.schedule.catch_up_policy.into()
    }
    /// The next slot the scheduler will fire (null when paused).
    async fn next_fire_at(&self) -> Option<DateTime<Utc>> {
        self.0.schedule.next_fire_at
    }
    /// The next `count` (1 to 100) slot times from now, by the timetable (also when paused).
    async fn next_fire_times(&self, count: i32) -> async_graphql::Result<Vec<DateTime<Utc>>> {
        service::preview(&self.0.schedule.cron, &self.0.schedule.timezone, count).gql()
    }
    /// Who created it.
    async fn created_by(&self) -> Option<&str> {
        self.0.schedule.created_by.as_deref()
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.schedule.created_at
    }
    /// When it was last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.schedule.updated_at
    }
    /// The slots it fired or skipped and its manual triggers, newest first.
    #[graphql(
        complexity = "crate::pagination::list_cost(first, crate::pagination::DEFAULT_PAGE_SIZE, crate::pagination::MAX_PAGE_SIZE, child_complexity)"
    )]
    async fn runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ScheduleRun>> {
        let state = app_state(ctx).gql()?;
        let page = PageRequest::new(first, after).gql()?;
        let rows = service::list_runs(state, self.0.schedule.id, page)
            .await
            .gql()?;
        Ok(connection(
            page,
            rows.into_iter()
                .map(|row| (row.id, ScheduleRun(row)))
                .collect(),
        ))
    }
}

/// One fired (or skipped) slot of a schedule.
pub struct ScheduleRun(schedule_run::Model);

#[Object]
impl ScheduleRun {
    /// The slot time the timetable produced (the trigger time for a manual trigger).
    async fn slot(&self) -> DateTime<Utc> {
        self.0.slot
    }
    /// When the scheduler acted on it.
    async fn fired_at(&self) -> DateTime<Utc> {
        self.0.fired_at
    }
    /// What became of it.
    async fn outcome(&self) -> ScheduleRunOutcome {
        self.0.outcome.into()
    }
    /// Why it was skipped or did not start.
    async fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }
    /// The execution it started, if the caller may see it.
    async fn execution(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Execution>> {
        let caller = caller(ctx).await.gql()?;
        let Some(id) = self.0.execution_id else {
            return Ok(None);
        };
        let Some(execution) = crate::loaders::execution(ctx, id).await.gql()? else {
            return Ok(None);
        };
        let proc = match execution.proc_id {
            Some(proc_id) => crate::loaders::proc(ctx, proc_id).await.gql()?,
            None => None,
        };
        let visible = may_read(&caller, &execution, proc.as_ref().map(|view| &view.model));
        Ok(visible.then_some(Execution::from(execution)))
    }
    /// How each notification about the run's end went (empty until it ended). Why a
    /// delivery failed is shown to administrators only: the remote answer could otherwise
    /// tell a user what listens where on the server's network.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<NotificationResult>> {
        let admin = caller(ctx).await.is_ok_and(|caller| caller.admin);
        Ok(self
            .0
            .notifications
            .clone()
            .and_then(|json| serde_json::from_value::<Vec<NotificationRecord>>(json).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|record| NotificationResult {
                channel: record.channel,
                delivered: record.delivered,
                error: match record.error {
                    Some(error) if admin => Some(error),
                    Some(_) => Some("failed".to_owned()),
                    None => None,
                },
                at: record.at,
            })
            .collect())
    }
}

/// How one notification went.
#[derive(SimpleObject, Clone, Debug)]
pub struct NotificationResult {
    /// `email`, `slack` or `webhook`.
    pub channel: String,
    /// Whether the channel accepted it.
    pub delivered: bool,
    /// Why not.
    pub error: Option<String>,
    /// When it was sent.
    pub at: DateTime<Utc>,
}

/// A schedule to create, or the changes to one. In `updateSchedule`, fields left out (null)
/// keep their current value; an empty list or string clears a list or text field.
#[derive(InputObject, Clone, Debug)]
pub struct ScheduleInput {
    /// The proc to run.
    pub proc: String,
    /// Argument values for every run (checked like `execute`'s).
    #[graphql(secret)]
    pub args: Option<Vec<ArgInput>>,
    /// 5 fields (minute hour day month weekday), 6 with seconds first, or a descriptor such
    /// as `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub cron: String,
    /// IANA time zone the expression is read in (default UTC). A local time skipped by a
    /// daylight-saving change does not fire; a repeated one fires once.
    pub timezone: Option<String>,
    /// Free labels.
    pub tags: Option<Vec<String>>,
    /// Grouping label (not an access group).
    pub group: Option<String>,
    /// Who is mailed each run's outcome.
    pub notification_emails: Option<Vec<String>>,
    /// Whether it fires (default true).
    pub enabled: Option<bool>,
    /// Default ALLOW.
    pub overlap_policy: Option<OverlapPolicy>,
    /// Default SKIP.
    pub catch_up_policy: Option<CatchUpPolicy>,
    /// Slack incoming webhook told each run's outcome (write-only).
    pub slack_webhook_url: Option<String>,
    /// URL a JSON outcome signed with the server's webhook secret is posted to.
    pub webhook_url: Option<String>,
}

impl From<ScheduleInput> for ScheduleSpec {
    fn from(input: ScheduleInput) -> Self {
        Self {
            proc: input.proc,
            cron: input.cron,
            args: input.args.map(|args| arg_values(Some(args))),
            timezone: input.timezone,
            tags: input.tags,
            group: input.group,
            notification_emails: input.notification_emails,
            enabled: input.enabled,
            overlap_policy: input.overlap_policy.map(Into::into),
            catch_up_policy: input.catch_up_policy.map(Into::into),
            slack_webhook_url: input.slack_webhook_url,
            webhook_url: input.webhook_url,
        }
    }
}

/// Narrows the schedules list.
#[derive(InputObject, Clone, Debug, Default)]
pub struct ScheduleFilter {
    /// Only schedules of this proc.
    pub proc: Option<String>,
    /// Only schedules with this tag.
    pub tag: Option<String>,
    /// Only schedules with this group label.
    pub group: Option<String>,
    /// Only enabled (true) or paused (false) schedules.
    pub enabled: Option<bool>,
}

/// Schedule queries.
#[derive(Default)]
pub struct SchedulesQuery;

#[Object]
impl SchedulesQuery {
    /// The schedules the caller may see (of procs they may run, or created by them), newest
    /// first.
    #[graphql(
        complexity = "crate::pagination::list_cost(first, crate::pagination::DEFAULT_PAGE_SIZE, crate::pagination::MAX_PAGE_SIZE, child_complexity)"
    )]
    async fn schedules(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ScheduleFilter>,
    ) -> async_graphql::Result<Connection<String, Schedule>> {
        let (state, caller) = request(ctx).await.gql()?;
        let page = PageRequest::new(first, after).gql()?;
        let filter = filter.unwrap_or_default();
        let query = ScheduleQuery {
            proc: filter.proc,
            tag: filter.tag,
            group: filter.group,
            enabled: filter.enabled,
        };
        let rows = service::list_schedules(state, &caller, &query, page)
            .await
            .gql()?;
        Ok(connection(
            page,
            rows.into_iter()
                .map(|view| (view.schedule.id, Schedule(view)))
                .collect(),
        ))
    }

    /// One schedule; null when there is none, `FORBIDDEN` when the caller may not see it.
    #[graphql(complexity = "crate::pagination::LOOKUP_COST + child_complexity")]
    async fn schedule(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Schedule>> {
        let (state, caller) = request(ctx).await.gql()?;
        let id = parse_schedule_id("id", &id).gql()?;
        match service::get_schedule(state, &caller, id).await {
            Ok(view) => Ok(Some(Schedule(view))),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other).gql(),
        }
    }

    /// The next `count` (default 5, at most 100) slot times of a cron expression in a time
    /// zone (default UTC), to check an expression before saving it.
    #[graphql(complexity = "1 + count.map_or(5, |n| n.clamp(1, 100) as usize)")]
    async fn cron_preview(
        &self,
        ctx: &Context<'_>,
        cron: String,
        timezone: Option<String>,
        count: Option<i32>,
    ) -> async_graphql::Result<Vec<DateTime<Utc>>> {
        // Callers only: computing slots costs CPU, which an anonymous caller should not spend.
        caller(ctx).await.gql()?;
        let timezone = timezone.unwrap_or_else(|| "UTC".to_owned());
        service::preview(&cron, &timezone, count.unwrap_or(5)).gql()
    }
}

/// Schedule mutations.
#[derive(Default)]
pub struct SchedulesMutation;

#[Object]
impl SchedulesMutation {
    /// Creates a schedule; the caller must be allowed to run the proc. It fires from its next
    /// slot after now.
    async fn create_schedule(
        &self,
        ctx: &Context<'_>,
        input: ScheduleInput,
    ) -> async_graphql::Result<Schedule> {
        let (state, caller) = request(ctx).await.gql()?;
        service::create_schedule(state, &caller, input.into())
            .await
            .map(Schedule)
            .gql()
    }

    /// Changes a schedule (fields left out keep their value); its timetable restarts from now
    /// and the change takes effect within a second on every replica.
    async fn update_schedule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: ScheduleInput,
    ) -> async_graphql::Result<Schedule> {
        let (state, caller) = request(ctx).await.gql()?;
        let id = parse_schedule_id("id", &id).gql()?;
        service::update_schedule(state, &caller, id, input.into())
            .await
            .map(Schedule)
            .gql()
    }

    /// Pauses (false) or resumes (true) a schedule. A resumed schedule fires from its next slot
    /// after now.
    async fn set_schedule_enabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        enabled: bool,
    ) -> async_graphql::Result<Schedule> {
        let (state, caller) = request(ctx).await.gql()?;
        let id = parse_schedule_id("id", &id).gql()?;
        service::set_schedule_enabled(state, &caller, id, enabled)
            .await
            .map(Schedule)
            .gql()
    }

    /// Gives a schedule to another owner (administrators only); it fires with the new
    /// owner's rights from then on.
    async fn transfer_schedule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        owner: String,
    ) -> async_graphql::Result<Schedule> {
        let (state, caller) = request(ctx).await.gql()?;
        let id = parse_schedule_id("id", &id).gql()?;
        service::transfer_schedule(state, &caller, id, &owner)
            .await
            .map(Schedule)
            .gql()
    }

    /// Deletes a schedule and its run history; the executions it started remain.
    async fn delete_schedule(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let (state, caller) = request(ctx).await.gql()?;
        let id = parse_schedule_id("id", &id).gql()?;
        service::delete_schedule(state, &caller, id).await.gql()?;
        Ok(true)
    }

    /// Runs the schedule's proc now with its arguments, as the caller. The execution counts as
    /// scheduled (notifications apply) and is listed among the schedule's runs.
    async fn trigger_schedule(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Execution> {
        let (state, caller) = request(ctx).await.gql()?;
        let id = parse_schedule_id("id", &id).gql()?;
        service::trigger_schedule(state, &caller, id)
            .await
            .map(Execution::from)
            .gql()
    }
}
