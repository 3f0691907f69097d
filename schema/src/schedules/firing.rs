//! Firing due slots: the work of one scheduler tick, driven by a time the caller passes in (the
//! real clock in `proctord`, a chosen one in tests).
//!
//! Exactly once across replicas and restarts: each schedule's `next_fire_at` is its first
//! unhandled slot. A tick handles a schedule inside one write transaction that first moves
//! `next_fire_at` on with a compare-and-set (only the replica that read the current value can),
//! then claims each slot by inserting `(schedule, slot)` into `schedule_runs` under its unique
//! key, and stores the executions in the same transaction. Nothing runs before the commit; a
//! replica that dies after it leaves `PENDING` executions that another replica takes over
//! (their lease runs out), so no claimed slot is lost either.

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use proctor_entity::values::{ExecutionStatus, OverlapPolicy, RunOutcome, Trigger};
use proctor_entity::{execution, proc, schedule, schedule_run};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::cron::CronSchedule;
use super::plan::plan;
use super::service::record_run;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::executions::runner::{
    NewExecution, Submitted, announce_final, publish, record_not_started,
};
use crate::executions::service::prepare;
use crate::ports::event_bus::Event;
use crate::state::AppState;

/// Why a run is cancelled by the overlap policy `REPLACE`.
const REPLACED: &str = "replaced by the schedule's next run";

/// Schedules handled per query; a tick continues until none is due.
const BATCH: u64 = 100;

/// Schedules fired at the same time on Postgres, at most: each holds a pooled connection while
/// its transaction is open, so never more than a quarter of the pool (5 of the default 20).
const FIRING_TOGETHER: usize = 8;

/// What one tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Slots that started (or tried to start) an execution.
    pub fired: u64,
    /// Slots skipped (overlap, or missed and dropped by the catch-up policy).
    pub skipped: u64,
}

/// Fires every slot due at `now` of every enabled schedule.
pub async fn fire_due(state: &AppState, now: DateTime<Utc>) -> Result<TickReport, ApiError> {
    let mut report = TickReport::default();
    let mut after_id = 0;
    loop {
        let due = schedule::Entity::find()
            .filter(schedule::Column::Enabled.eq(true))
            .filter(schedule::Column::NextFireAt.lte(now))
            .filter(schedule::Column::Id.gt(after_id))
            .order_by_asc(schedule::Column::Id)
            .limit(BATCH)
            .all(state.db())
            .await?;
        let Some(last) = due.last() else {
            return Ok(report);
        };
        after_id = last.id;
        // Each schedule's slots commit in a transaction of their own, so schedules fire side
        // by side: one after another, a tick of 1,000 every-second schedules took longer than
        // the second it had (each waits for its commit). SQLite has one writer anyway.
        let side_by_side = if crate::db::locks_rows(state.db()) {
            FIRING_TOGETHER.min(state.pool_quarter())
        } else {
            1
        };
        let outcomes: Vec<(i64, Result<TickReport, ApiError>)> = futures::stream::iter(due)
            .map(|schedule| async move {
                let id = schedule.id;
                (id, fire_schedule(state, schedule, now).await)
            })
            .buffer_unordered(side_by_side)
            .collect()
            .await;
        for (id, outcome) in outcomes {
            match outcome {
                Ok(done) => {
                    report.fired += done.fired;
                    report.skipped += done.skipped;
                }
                // One broken schedule does not hold the others up.
                Err(error) => {
                    tracing::error!(schedule.id = id, %error, "cannot fire a schedule");
                }
            }
        }
    }
}

/// When the next slot of any enabled schedule is due.
pub async fn next_due(state: &AppState) -> Result<Option<DateTime<Utc>>, ApiError> {
    let next: Option<Option<DateTime<Utc>>> = schedule::Entity::find()
        .select_only()
        .column_as(schedule::Column::NextFireAt.min(), "next")
        .filter(schedule::Column::Enabled.eq(true))
        .into_tuple()
        .one(state.db())
        .await?;
    Ok(next.flatten())
}

/// What to do after the commit for one slot that produced an execution.
enum Started {
    /// Hand it to the runner (boxed: a submission is large beside a stored row).
    Run(Box<Submitted>),
    /// Stored as `CREATION_FAILED`: announce it.
    NotStarted(Box<execution::Model>),
}

/// Why the owner of `schedule` may no longer have it run `proc`, if so. Checked at every
/// fire where Proctor keeps users (built-in authentication): the owner must still exist,
/// hold an active token and be allowed to run the proc. With auth off everybody may; with
/// webhook authentication the identity service is asked only while somebody calls, so the
/// owner cannot be checked then (the book's security model, `docs/src/security.md`).
async fn owner_refusal(
    state: &AppState,
    schedule: &schedule::Model,
    proc: &proc::Model,
) -> Result<Option<String>, ApiError> {
    if !state.auth_enabled() || !state.authenticator().keeps_users() {
        return Ok(None);
    }
    let Some(owner) = &schedule.created_by else {
        return Ok(None); // Created by Proctor itself (an administrator's tool).
    };
    let standing = match crate::auth::tokens::standing_of(state.db(), owner).await {
        Ok(standing) => standing,
        // Not an address (e.g. created before authentication was on): nobody to act for.
        Err(ApiError::BadUserInput { .. }) => None,
        Err(other) => return Err(other),
    };
    let Some(groups) = standing else {
        return Ok(Some(format!(
            "the schedule's owner {owner} no longer exists or holds no active token; an \
             administrator may transfer the schedule to somebody else"
        )));
    };
    let caller = Caller::from_principal(
        crate::ports::authenticator::Principal {
            email: Some(owner.clone()),
            name: None,
            groups,
        },
        state,
    );
    Ok(caller
        .require_may_run(proc)
        .err()
        .map(|error| format!("the schedule's owner {owner} may no longer run it: {error}")))
}

/// Records which execution slot `slot` of `schedule_id` produced.
async fn link_run<C: sea_orm::ConnectionTrait>(
    txn: &C,
    schedule_id: i64,
    slot: DateTime<Utc>,
    execution_id: i64,
) -> Result<(), ApiError> {
    schedule_run::Entity::update_many()
        .col_expr(schedule_run::Column::ExecutionId, Expr::value(execution_id))
        .filter(schedule_run::Column::ScheduleId.eq(schedule_id))
        .filter(schedule_run::Column::Slot.eq(slot))
        .exec(txn)
        .await?;
    Ok(())
}

async fn fire_schedule(
    state: &AppState,
    schedule: schedule::Model,
    now: DateTime<Utc>,
) -> Result<TickReport, ApiError> {
    let Some(first_unhandled) = schedule.next_fire_at else {
        return Ok(TickReport::default());
    };
    let timing = match CronSchedule::parse(&schedule.cron, &schedule.timezone) {
        Ok(timing) => timing,
        Err(error) => {
            // Only possible after an upgrade changed the zone database or the cron dialect:
            // stop the schedule (it stays listed) instead of failing every tick.
            tracing::error!(
                schedule.id = schedule.id,
                %error,
                "the stored cron expression or time zone is no longer valid; the schedule \
                 stops until it is edited"
            );
            schedule::Entity::update_many()
                .col_expr(
                    schedule::Column::NextFireAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(schedule::Column::Id.eq(schedule.id))
                .filter(schedule::Column::NextFireAt.eq(first_unhandled))
                .exec(state.db())
                .await?;
            return Ok(TickReport::default());
        }
    };
    let mut plan = plan(&timing, first_unhandled, now, schedule.catch_up_policy);
    if schedule.overlap_policy == OverlapPolicy::Replace && plan.fire.len() > 1 {
        // Each run would replace the one before at once: only the newest slot is worth firing.
        let older = plan.fire.len() - 1;
        plan.fire.drain(..older);
        plan.skipped += older as u64;
    }
    let proc = proc::Entity::find_by_id(schedule.proc_id)
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "proc",
            key: schedule.proc_id.to_string(),
        })?;
    // Checked once per tick: arguments may no longer fit an edited proc, a secret may be gone.
    let scheduler = Caller::system("scheduler");
    // The schedule acts for its owner: their rights now, not when they created it.
    let forbidden = owner_refusal(state, &schedule, &proc).await?;
    let prepared = match &forbidden {
        Some(reason) => Err(ApiError::Forbidden(reason.clone())),
        None => prepare(state, &scheduler, proc.clone(), &schedule.args.0).await,
    };

    let txn = crate::db::begin_write(state.db()).await?;
    let moved = schedule::Entity::update_many()
        .col_expr(schedule::Column::NextFireAt, Expr::value(plan.next))
        .filter(schedule::Column::Id.eq(schedule.id))
        .filter(schedule::Column::Enabled.eq(true))
        .filter(schedule::Column::NextFireAt.eq(first_unhandled))
        .exec(&txn)
        .await?;
    if moved.rows_affected == 0 {
        // Another replica handled these slots, or the schedule changed since it was read.
        return Ok(TickReport::default());
    }
    let mut report = TickReport {
        fired: 0,
        skipped: plan.skipped,
    };
    let mut started: Vec<Started> = Vec::new();
    let mut to_cancel: Vec<i64> = Vec::new();
    // People hear once that a schedule stopped running for its owner, not at every slot.
    let mut told_forbidden = match &forbidden {
        Some(_) => schedule_run::Entity::find()
            .filter(schedule_run::Column::ScheduleId.eq(schedule.id))
            .order_by_desc(schedule_run::Column::Slot)
            .one(&txn)
            .await?
            .is_some_and(|last| last.outcome == RunOutcome::SkippedForbidden),
        None => false,
    };
    for slot in &plan.fire {
        if let Some(reason) = &forbidden {
            // Nothing runs and nothing is replaced: the slot is recorded with why, and the
            // first such slot in a row also reaches the notification channels (as a run that
            // could not be created).
            let detail = format!("skipped: {reason}");
            if !record_run(
                &txn,
                schedule.id,
                slot.at,
                now,
                RunOutcome::SkippedForbidden,
                None,
                Some(detail.clone()),
            )
            .await?
            {
                continue;
            }
            report.skipped += 1;
            state.metrics().schedule_skipped("forbidden", 1);
            if !told_forbidden {
                told_forbidden = true;
                let new = NewExecution {
                    user_email: schedule.created_by.clone(),
                    trigger: Trigger::Schedule,
                    schedule_id: Some(schedule.id),
                };
                let execution =
                    record_not_started(&txn, state, &proc, schedule.args.clone(), new, detail)
                        .await?;
                link_run(&txn, schedule.id, slot.at, execution.id).await?;
                started.push(Started::NotStarted(Box::new(execution)));
            }
            continue;
        }
        let unfinished: Vec<i64> = execution::Entity::find()
            .select_only()
            .column(execution::Column::Id)
            .filter(execution::Column::ScheduleId.eq(schedule.id))
            .filter(execution::Column::Status.is_in(ExecutionStatus::UNFINISHED))
            .into_tuple()
            .all(&txn)
            .await?;
        if schedule.overlap_policy == OverlapPolicy::Forbid && !unfinished.is_empty() {
            let detail = format!(
                "execution {} was still running (overlap policy FORBID)",
                unfinished[0]
            );
            if record_run(
                &txn,
                schedule.id,
                slot.at,
                now,
                RunOutcome::SkippedOverlap,
                None,
                Some(detail),
            )
            .await?
            {
                report.skipped += 1;
                state.metrics().schedule_skipped("overlap", 1);
            }
            continue;
        }
        if schedule.overlap_policy == OverlapPolicy::Replace {
            to_cancel = unfinished;
        }
        let (outcome, failure) = match &prepared {
            Ok(_) => (RunOutcome::Started, None),
            Err(error) => (
                RunOutcome::NotStarted,
                Some(format!("the schedule could not start its run: {error}")),
            ),
        };
        if !record_run(
            &txn,
            schedule.id,
            slot.at,
            now,
            outcome,
            None,
            failure.clone(),
        )
        .await?
        {
            continue; // Fired before (a clock difference between replicas).
        }
        let new = NewExecution {
            user_email: schedule.created_by.clone(),
            trigger: Trigger::Schedule,
            schedule_id: Some(schedule.id),
        };
        let outcome = match (&prepared, failure) {
            (Ok(prepared), _) => Started::Run(Box::new(
                state.runner().submit(&txn, state, prepared, new).await?,
            )),
            (Err(_), reason) => {
                let reason = reason.unwrap_or_default();
                Started::NotStarted(Box::new(
                    record_not_started(&txn, state, &proc, schedule.args.clone(), new, reason)
                        .await?,
                ))
            }
        };
        let execution_id = match &outcome {
            Started::Run(submitted) => submitted.execution().id,
            Started::NotStarted(execution) => execution.id,
        };
        link_run(&txn, schedule.id, slot.at, execution_id).await?;
        report.fired += 1;
        let late = (now - slot.at).to_std().unwrap_or_default();
        state.metrics().schedule_fired(late, slot.caught_up);
        started.push(outcome);
    }
    txn.commit().await?;

    if plan.skipped > 0 {
        state.metrics().schedule_skipped("missed", plan.skipped);
        tracing::info!(
            schedule.id = schedule.id,
            skipped = plan.skipped,
            policy = ?schedule.catch_up_policy,
            "missed slots not fired (catch-up policy)"
        );
    }
    for id in to_cancel {
        tracing::info!(
            schedule.id = schedule.id,
            execution.id = id,
            "replacing the unfinished run (overlap policy REPLACE)"
        );
        if !state.runner().cancel_here(id, REPLACED) {
            let reason = Some(REPLACED.to_owned());
            publish(
                state,
                Event::CancelRequested {
                    execution_id: id,
                    reason,
                },
            )
            .await;
        }
    }
    for outcome in started {
        match outcome {
            Started::Run(submitted) => state.runner().hand_off(state, *submitted).await,
            Started::NotStarted(execution) => announce_final(state, &execution).await,
        }
    }
    Ok(report)
}
