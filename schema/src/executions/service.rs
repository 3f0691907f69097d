//! Starting, cancelling, reading and listing executions. Shared by GraphQL, the REST shim and
//! the scheduler.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use proctor_entity::json::ArgValue;
use proctor_entity::values::{ExecutionStatus, Trigger};
use proctor_entity::{execution, execution_log, proc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;

use super::runner::{CANCELLED_REASON, NewExecution, PreparedRun, cancel_unheld, publish};
use crate::auth::{Caller, audit};
use crate::error::ApiError;
use crate::pagination::PageRequest;
use crate::ports::event_bus::{Delivery, Event, Topic};
use crate::procs::service::find_proc;
use crate::procs::validate_args;
use crate::secrets::service::secret_values;
use crate::state::AppState;

/// How long `cancelExecution` waits for the run to stop before it answers.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

/// How a run was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecuteRequest {
    /// Which proc.
    pub proc: String,
    /// Argument values as given.
    pub args: Vec<ArgValue>,
    /// What started it.
    pub trigger: Trigger,
    /// The schedule that fired it.
    pub schedule_id: Option<i64>,
}

/// Validates and stores a run as `PENDING` and hands it to the runner; returns at once.
///
/// Refused when the caller may not run the proc (`FORBIDDEN`), when an argument is wrong
/// (`BAD_USER_INPUT`, naming it) or when a declared secret has no value (`CONFLICT`).
pub async fn execute(
    state: &AppState,
    caller: &Caller,
    request: ExecuteRequest,
) -> Result<execution::Model, ApiError> {
    let proc = find_proc(state.db(), &request.proc).await?;
    let prepared = prepare(state, caller, proc, &request.args).await?;
    let new = NewExecution {
        user_email: caller.email.clone(),
        trigger: request.trigger,
        schedule_id: request.schedule_id,
    };
    submit(state, caller, &prepared, new).await
}

/// Stores a prepared run (audited as `execution.create` for `caller`) and hands it to the
/// runner after the commit; the one sequence every API's "run it now" goes through.
///
/// The row and its audit record are written through the group commit ([`AppState::writes`]):
/// submissions that arrive together share one transaction and one commit, each with its own
/// id and its own error.
pub async fn submit(
    state: &AppState,
    caller: &Caller,
    prepared: &PreparedRun,
    new: NewExecution,
) -> Result<execution::Model, ApiError> {
    // In a task of its own: a caller that goes away (a dropped request) must not leave a
    // stored run nobody hands off.
    // The task carries the caller's span: the run's trace continues the request's.
    let task = tokio::spawn(tracing::Instrument::in_current_span(store_and_hand_off(
        state.clone(),
        caller.clone(),
        prepared.clone(),
        new,
    )));
    task.await.map_err(|error| {
        ApiError::Internal(anyhow::anyhow!("storing the execution failed: {error}"))
    })?
}

async fn store_and_hand_off(
    state: AppState,
    caller: Caller,
    prepared: PreparedRun,
    new: NewExecution,
) -> Result<execution::Model, ApiError> {
    let (job_state, job_caller, job_run) = (state.clone(), caller, prepared);
    let submitted = state
        .writes()
        .run(move |txn| {
            let (state, caller) = (job_state.clone(), job_caller.clone());
            let (run, new) = (job_run.clone(), new.clone());
            Box::pin(async move {
                let submitted = state.runner().submit(txn, &state, &run, new).await?;
                record_creation(txn, &caller, submitted.execution()).await?;
                Ok(submitted)
            })
        })
        .await?;
    let execution = submitted.execution().clone();
    state.runner().hand_off(&state, submitted).await;
    Ok(execution)
}

/// [`submit`], also doing `also` in the same transaction (e.g. recording a schedule's run).
pub async fn submit_with<F>(
    state: &AppState,
    caller: &Caller,
    prepared: &PreparedRun,
    new: NewExecution,
    also: F,
) -> Result<execution::Model, ApiError>
where
    F: for<'t> FnOnce(
        &'t DatabaseTransaction,
        &'t execution::Model,
    ) -> BoxFuture<'t, Result<(), ApiError>>,
{
    let txn = crate::db::begin_write(state.db()).await?;
    let submitted = state.runner().submit(&txn, state, prepared, new).await?;
    let execution = submitted.execution().clone();
    record_creation(&txn, caller, &execution).await?;
    also(&txn, &execution).await?;
    txn.commit().await?;
    state.runner().hand_off(state, submitted).await;
    Ok(execution)
}

/// The audit record of a new execution (`execution.create`), in the transaction storing it.
async fn record_creation(
    txn: &DatabaseTransaction,
    caller: &Caller,
    execution: &execution::Model,
) -> Result<(), ApiError> {
    let mut detail = json!({ "proc": execution.proc_name, "trigger": execution.trigger });
    if let Some(schedule_id) = execution.schedule_id {
        detail["schedule"] = json!(schedule_id);
    }
    audit::record(
        txn,
        caller,
        "execution.create",
        "execution",
        &execution.id.to_string(),
        Some(detail),
    )
    .await
}

/// Checks that `caller` may run `proc` with `args` and that it can run now (every declared
/// secret has a value); nothing is stored.
pub async fn prepare(
    state: &AppState,
    caller: &Caller,
    proc: proc::Model,
    args: &[ArgValue],
) -> Result<PreparedRun, ApiError> {
    caller.require_may_run(&proc)?;
    // A proc stored before a name was reserved must not run with it either.
    let declared = proc
        .args
        .0
        .iter()
        .map(|arg| arg.name.as_str())
        .chain(proc.secret_specs.0.iter().map(|spec| spec.name.as_str()));
    for name in declared {
        if let Some(rule) = crate::procs::definition::reserved_name(name) {
            return Err(ApiError::Conflict(format!(
                "proc {:?} cannot run: it declares {name}, which is reserved ({rule}); \
                 redefine the proc without it",
                proc.name
            )));
        }
    }
    let args = validate_args(&proc, args)?;
    let secrets = secret_values(state, &proc).await?;
    let missing: Vec<&str> = proc
        .secret_specs
        .0
        .iter()
        .map(|spec| spec.name.as_str())
        .filter(|name| !secrets.iter().any(|(key, _)| key == name))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::Conflict(format!(
            "proc {:?} cannot run: secret(s) {} not set; an administrator sets them with setSecrets",
            proc.name,
            missing.join(", ")
        )));
    }
    Ok(PreparedRun::new(proc, args, secrets))
}

/// Whether `caller` may see `execution`: administrators, whoever started it, and whoever may
/// run its proc.
pub fn may_read(caller: &Caller, execution: &execution::Model, proc: Option<&proc::Model>) -> bool {
    caller.admin
        || (caller.email.is_some() && caller.email == execution.user_email)
        || proc.is_some_and(|proc| caller.may_run(proc))
}

/// Parses a GraphQL `ID` of an execution.
pub fn parse_id(field: &str, id: &str) -> Result<i64, ApiError> {
    id.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_input(field, format!("{id:?} is not an execution id")))
}

/// The executions with these ids, in one query (the batch behind `ScheduleRun.execution`). No
/// access check: the caller of this checks [`may_read`] on each.
pub async fn executions_by_id(
    state: &AppState,
    ids: &[i64],
) -> Result<Vec<execution::Model>, ApiError> {
    Ok(execution::Entity::find()
        .filter(execution::Column::Id.is_in(ids.iter().copied()))
        .all(state.db())
        .await?)
}

/// The proc an execution ran, if it still exists (`None` for runs of deleted procs).
pub async fn proc_of(
    state: &AppState,
    execution: &execution::Model,
) -> Result<Option<proc::Model>, ApiError> {
    match execution.proc_id {
        Some(id) => Ok(proc::Entity::find_by_id(id).one(state.db()).await?),
        None => Ok(None),
    }
}

/// Execution `id` if the caller may see it (`NOT_FOUND` or `FORBIDDEN` otherwise).
pub async fn get_execution(
    state: &AppState,
    caller: &Caller,
    id: i64,
) -> Result<execution::Model, ApiError> {
    let execution = execution::Entity::find_by_id(id)
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "execution",
            key: id.to_string(),
        })?;
    let proc = proc_of(state, &execution).await?;
    if !may_read(caller, &execution, proc.as_ref()) {
        return Err(match &proc {
            Some(proc) => caller
                .require_may_run(proc)
                .err()
                .unwrap_or_else(|| ApiError::Forbidden("you may not see this execution".into())),
            None => ApiError::Forbidden("you may not see this execution".into()),
        });
    }
    Ok(execution)
}

/// Asks the run to stop and waits (briefly) until it has; works in every unfinished state.
/// `CONFLICT` when the execution already ended.
pub async fn cancel_execution(
    state: &AppState,
    caller: &Caller,
    id: i64,
) -> Result<execution::Model, ApiError> {
    let execution = get_execution(state, caller, id).await?;
    if execution.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "execution {id} already ended ({})",
            execution.status.name()
        )));
    }
    let mut updates = state.event_bus().subscribe(Topic::Execution(id));
    let txn = crate::db::begin_write(state.db()).await?;
    audit::record(
        &txn,
        caller,
        "execution.cancel",
        "execution",
        &id.to_string(),
        None,
    )
    .await?;
    txn.commit().await?;
    if !state.runner().cancel_here(id, CANCELLED_REASON) {
        let request = Event::CancelRequested {
            execution_id: id,
            reason: None,
        };
        publish(state, request).await;
    }
    let ended = tokio::time::timeout(CANCEL_WAIT, async {
        while let Some(delivery) = updates.next().await {
            match delivery {
                Delivery::Event(Event::ExecutionStatus { execution })
                    if execution.status.is_final() =>
                {
                    return;
                }
                Delivery::Missed(_) => return,
                _ => {}
            }
        }
    })
    .await;
    if ended.is_err() {
        // Nobody acted: a run that never reached a supervisor just ends here.
        cancel_unheld(state, id, "cancelled; no server was holding it").await;
    }
    get_execution(state, caller, id).await
}

/// Narrows the executions list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionQuery {
    /// Only this proc.
    pub proc: Option<String>,
    /// Only these states.
    pub status: Option<Vec<ExecutionStatus>>,
    /// Only executions started by this e-mail.
    pub user: Option<String>,
    /// Only this trigger.
    pub trigger: Option<Trigger>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
}

/// A page of the executions the caller may see, newest first.
pub async fn list_executions(
    state: &AppState,
    caller: &Caller,
    query: &ExecutionQuery,
    page: PageRequest,
) -> Result<Vec<execution::Model>, ApiError> {
    let mut select = execution::Entity::find().order_by_desc(execution::Column::Id);
    if !caller.admin {
        // By the proc's id, never its name: a proc deleted and created again under the same
        // name is another proc, and its predecessor's runs (args, logs) stay with the rules
        // they ran under (administrators and whoever started them).
        let visible: Vec<i64> = proc::Entity::find()
            .all(state.db())
            .await?
            .into_iter()
            .filter(|proc| caller.may_run(proc))
            .map(|proc| proc.id)
            .collect();
        let mut allowed = Condition::any().add(execution::Column::ProcId.is_in(visible));
        if let Some(email) = &caller.email {
            allowed = allowed.add(execution::Column::UserEmail.eq(email.as_str()));
        }
        select = select.filter(allowed);
    }
    if let Some(proc) = &query.proc {
        select = select.filter(execution::Column::ProcName.eq(proc.as_str()));
    }
    if let Some(statuses) = &query.status {
        select = select.filter(execution::Column::Status.is_in(statuses.iter().copied()));
    }
    if let Some(user) = &query.user {
        select = select.filter(execution::Column::UserEmail.eq(user.trim().to_lowercase()));
    }
    if let Some(trigger) = query.trigger {
        select = select.filter(execution::Column::Trigger.eq(trigger));
    }
    if let Some(after) = query.created_after {
        select = select.filter(execution::Column::CreatedAt.gte(after));
    }
    if let Some(before) = query.created_before {
        select = select.filter(execution::Column::CreatedAt.lt(before));
    }
    if let Some(before_id) = page.before_id {
        select = select.filter(execution::Column::Id.lt(before_id));
    }
    Ok(select.limit(page.fetch_limit()).all(state.db()).await?)
}

/// Stored log lines of an execution after `after_seq`, at most `limit`.
pub async fn stored_logs(
    state: &AppState,
    id: i64,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<execution_log::Model>, ApiError> {
    Ok(execution_log::Entity::find()
        .filter(execution_log::Column::ExecutionId.eq(id))
        .filter(execution_log::Column::Seq.gt(after_seq))
        .order_by_asc(execution_log::Column::Seq)
        .limit(limit)
        .all(state.db())
        .await?)
}

/// The stored row of execution `id`, if any. Checks no rights: the caller decides what to show
/// (e.g. `logMatches` asks [`may_read`] next).
pub async fn execution_row(
    state: &AppState,
    id: i64,
) -> Result<Option<execution::Model>, ApiError> {
    Ok(execution::Entity::find_by_id(id).one(state.db()).await?)
}
