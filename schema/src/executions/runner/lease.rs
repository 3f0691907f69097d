//! Replica leases: each replica renews its claim on the executions it supervises every third
//! of the lease, lets go of those another replica took over, and takes over executions nobody
//! holds (a `PENDING` one is queued again, a started one re-attached through the executor).
//!
//! Invariant: an execution is claimed by a conditional update that only succeeds if nobody
//! claimed or renewed it since it was read, so two replicas never both supervise it.

use std::sync::Arc;

use chrono::Utc;
use proctor_entity::execution;
use proctor_entity::values::ExecutionStatus;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};

use tokio_util::sync::CancellationToken;

use super::submit::{prepare_run, reseal_run_mask};
use super::transition::{Fence, Outcome, finish};
use super::{LET_GO_REASON, Runner};
use crate::error::ApiError;
use crate::ports::executor::RunRef;
use crate::state::AppState;

impl Runner {
    /// Keeps the leases of the runs this replica supervises and takes over executions nobody
    /// holds; once shutdown began, it only renews (the runs being stopped stay ours until
    /// their end is stored).
    ///
    /// `take_everything_now`: at start-up with the in-memory bus there can be no other
    /// replica, so every unfinished execution is taken over at once instead of after its
    /// lease runs out.
    pub async fn maintain_leases(self: Arc<Self>, state: AppState, take_everything_now: bool) {
        let mut everything = take_everything_now;
        let mut tick = tokio::time::interval(self.settings.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.renew_and_take_over(&state, everything).await {
                tracing::warn!(%error, "cannot maintain execution leases; retrying");
                continue;
            }
            everything = false;
        }
    }

    async fn renew_and_take_over(
        self: &Arc<Self>,
        state: &AppState,
        everything: bool,
    ) -> Result<(), ApiError> {
        let now = Utc::now();
        let until = now + self.lease_length();
        // Only what is supervised here: a row this replica owns but nobody follows any more
        // (its end could not be stored) lets its lease run out, so it is taken over.
        let supervised: Vec<i64> = self.active().keys().copied().collect();
        if !supervised.is_empty() {
            execution::Entity::update_many()
                .col_expr(execution::Column::LeaseExpiresAt, Expr::value(until))
                .filter(execution::Column::Id.is_in(supervised.clone()))
                .filter(execution::Column::Owner.eq(self.replica.as_str()))
                .filter(execution::Column::Status.is_in(ExecutionStatus::UNFINISHED))
                .exec(state.db())
                .await?;
        }

        // Runs this replica supervises but no longer owns were taken over elsewhere: stop
        // supervising them (and, for runs that die with their server, the run itself: it
        // cannot be followed from anywhere else).
        if !supervised.is_empty() {
            let lost: Vec<i64> = execution::Entity::find()
                .select_only()
                .column(execution::Column::Id)
                .filter(execution::Column::Id.is_in(supervised))
                .filter(
                    Condition::any()
                        .add(execution::Column::Owner.ne(self.replica.as_str()))
                        .add(execution::Column::Owner.is_null()),
                )
                .into_tuple()
                .all(state.db())
                .await?;
            for id in lost {
                if let Some(run) = self.active().remove(&id) {
                    tracing::warn!(
                        execution.id = id,
                        "another replica took this execution over; letting go"
                    );
                    if !self.executor.runs_outlive_server() {
                        run.stop.request(LET_GO_REASON);
                    }
                    run.task.abort();
                }
            }
        }
        if !self.accepting() {
            return Ok(());
        }

        // Nobody's, expired, or left by a previous process with this replica's (fixed) id:
        // created before this process started, so nobody can be supervising it. Executions
        // this process created are excluded: they are being launched right now.
        let orphaned = || {
            Condition::any()
                .add(execution::Column::Owner.is_null())
                .add(execution::Column::LeaseExpiresAt.lt(now))
                .add(
                    Condition::all()
                        .add(execution::Column::Owner.eq(self.replica.as_str()))
                        .add(execution::Column::CreatedAt.lt(self.started_at)),
                )
        };
        // At start-up with no other replica possible, every older unfinished run is ours.
        let condition = || {
            if everything {
                Condition::all().add(execution::Column::CreatedAt.lt(self.started_at))
            } else {
                orphaned()
            }
        };
        let claimable = execution::Entity::find()
            .filter(execution::Column::Status.is_in(ExecutionStatus::UNFINISHED))
            .filter(condition())
            .limit(100)
            .all(state.db())
            .await?;
        for candidate in claimable {
            if self.active().contains_key(&candidate.id) {
                continue;
            }
            let claim = execution::Entity::update_many()
                .col_expr(execution::Column::Owner, Expr::value(self.replica.as_str()))
                .col_expr(execution::Column::LeaseExpiresAt, Expr::value(until))
                .filter(execution::Column::Id.eq(candidate.id))
                .filter(execution::Column::Status.is_in(ExecutionStatus::UNFINISHED))
                // Only if nobody claimed or renewed it since it was read.
                .filter(condition());
            if claim.exec(state.db()).await?.rows_affected == 1 {
                tracing::info!(
                    execution.id = candidate.id,
                    previous_owner = candidate.owner.as_deref().unwrap_or("none"),
                    "taking over an execution"
                );
                self.resume(state, candidate).await;
            }
        }
        Ok(())
    }

    /// Supervises an execution this replica just claimed: a `PENDING` one is queued again, a
    /// started one re-attached through the executor.
    async fn resume(self: &Arc<Self>, state: &AppState, execution: execution::Model) {
        let id = execution.id;
        let prepared = prepare_run(state, &execution).await;
        match (execution.status, prepared) {
            (ExecutionStatus::Pending, Ok((spec, masker))) => {
                // What it starts with now (current secrets, a new identity token) is what a
                // later supervisor must mask.
                if let Err(error) = reseal_run_mask(state, &execution, &spec).await {
                    let outcome =
                        Outcome::creation_failed(format!("cannot be started again: {error}"));
                    finish(state, id, outcome, Fence::Owner(&self.replica)).await;
                    return;
                }
                // It runs the proc as it is now: that is the version it records.
                let execution = record_current_version(state, execution).await;
                self.supervise_in_background(state.clone(), execution, Some(spec), masker);
            }
            (ExecutionStatus::Pending, Err(error)) => {
                let outcome = Outcome::creation_failed(format!("cannot be started again: {error}"));
                finish(state, id, outcome, Fence::Owner(&self.replica)).await;
            }
            (_, Ok((_, masker))) => {
                self.supervise_in_background(state.clone(), execution, None, masker);
            }
            // Without the secret values its output cannot be masked: following it would
            // publish them, so it is given up. A run that dies with its server is stopped
            // first (re-attaching a local run stops it); a Kubernetes Job goes on unseen.
            (_, Err(error)) => {
                if !self.executor.runs_outlive_server() {
                    let run = RunRef {
                        execution_id: id,
                        executor_ref: execution.executor_ref.clone().unwrap_or_default(),
                        cursor: None,
                    };
                    // Stopping takes up to the grace period: not inside the lease loop.
                    let executor = Arc::clone(&self.executor);
                    tokio::spawn(async move {
                        let _ = executor.reattach(run, CancellationToken::new()).await;
                    });
                }
                let outcome = Outcome::lost(format!(
                    "cannot be resumed: its secrets cannot be read to mask its output ({error})"
                ));
                finish(state, id, outcome, Fence::Owner(&self.replica)).await;
            }
        }
    }

    fn lease_length(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::seconds(15))
    }
}

/// Stores the proc's current version on a `PENDING` execution about to run it again.
async fn record_current_version(
    state: &AppState,
    mut execution: execution::Model,
) -> execution::Model {
    let Some(proc_id) = execution.proc_id else {
        return execution;
    };
    let version: Option<i32> = match proctor_entity::proc::Entity::find_by_id(proc_id)
        .select_only()
        .column(proctor_entity::proc::Column::Version)
        .into_tuple()
        .one(state.db())
        .await
    {
        Ok(version) => version,
        Err(error) => {
            tracing::warn!(execution.id = execution.id, %error, "cannot read the proc's version");
            return execution;
        }
    };
    if let Some(version) = version.filter(|version| Some(*version) != execution.proc_version) {
        let updated = execution::Entity::update_many()
            .col_expr(execution::Column::ProcVersion, Expr::value(version))
            .filter(execution::Column::Id.eq(execution.id))
            .exec(state.db())
            .await;
        match updated {
            Ok(_) => execution.proc_version = Some(version),
            Err(error) => {
                tracing::warn!(execution.id = execution.id, %error, "cannot record the proc version");
            }
        }
    }
    execution
}

/// Gives up this replica's claim on `ids` (a shutdown that leaves the runs running), so any
/// replica takes them over at its next lease check.
pub(super) async fn release(state: &AppState, replica: &str, ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    let released = execution::Entity::update_many()
        .col_expr(
            execution::Column::Owner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            execution::Column::LeaseExpiresAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .filter(execution::Column::Id.is_in(ids.iter().copied()))
        .filter(execution::Column::Owner.eq(replica))
        .filter(execution::Column::Status.is_in(ExecutionStatus::UNFINISHED))
        .exec(state.db())
        .await;
    match released {
        Ok(done) => tracing::info!(
            runs = done.rows_affected,
            "released the runs this replica followed; another replica re-attaches them"
        ),
        Err(error) => tracing::warn!(
            %error,
            "cannot release the runs this replica followed; they are taken over when the lease runs out"
        ),
    }
}
