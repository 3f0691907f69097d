//! Starting, cancelling, reading and listing executions. Shared by GraphQL, the REST shim and
//! the scheduler.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use proctor_entity::json::{ArgValue, ArgValues};
use proctor_entity::values::{ExecutionStatus, Trigger};
use proctor_entity::{execution, execution_log, proc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, NotSet, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::json;

use super::graphql::status_name;
use super::runner::{cancel_unheld, publish, run_name};
use super::shaping::Masker;
use crate::auth::{Caller, audit};
use crate::error::ApiError;
use crate::pagination::PageRequest;
use crate::ports::event_bus::{Delivery, Event, Topic};
use crate::ports::executor::{EnvValue, RunSpec};
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
    let txn = crate::db::begin_write(state.db()).await?;
    let execution = insert_pending(
        &txn,
        state,
        &prepared,
        NewExecution {
            user_email: caller.email.clone(),
            trigger: request.trigger,
            schedule_id: request.schedule_id,
        },
    )
    .await?;
    audit::record(
        &txn,
        caller,
        "execution.create",
        "execution",
        &execution.id.to_string(),
        Some(json!({ "proc": execution.proc_name, "trigger": request.trigger })),
    )
    .await?;
    txn.commit().await?;
    start(state, &execution, prepared).await;
    Ok(execution)
}

/// A run that passed every check: the proc, its validated arguments and its secret values.
/// (No `Debug`: it holds secret values.)
#[derive(Clone)]
pub struct PreparedRun {
    proc: proc::Model,
    args: Vec<ArgValue>,
    secrets: Vec<(String, String)>,
}

/// Who and what a new execution row records besides the proc and arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewExecution {
    /// Shown as the execution's user (the caller, or a schedule's creator).
    pub user_email: Option<String>,
    /// What started it.
    pub trigger: Trigger,
    /// The schedule it belongs to.
    pub schedule_id: Option<i64>,
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
    Ok(PreparedRun {
        proc,
        args,
        secrets,
    })
}

/// Stores a prepared run as `PENDING`, owned (leased) by this replica, inside `txn`; nothing
/// runs until [`start`] after the commit.
pub async fn insert_pending<C: ConnectionTrait>(
    txn: &C,
    state: &AppState,
    prepared: &PreparedRun,
    new: NewExecution,
) -> Result<execution::Model, ApiError> {
    let now = Utc::now();
    let lease = chrono::Duration::from_std(state.runner().settings().lease)
        .unwrap_or(chrono::Duration::seconds(15));
    let mut row = new_row(&prepared.proc, prepared.args.clone(), new, now);
    if !prepared.secrets.is_empty() {
        let sealed = crate::secrets::service::seal_run_mask(
            state.keyring(),
            prepared.proc.id,
            &prepared.secrets,
        )?;
        row.mask_key_id = Set(Some(sealed.key_id));
        row.mask_sealed = Set(Some(sealed.ciphertext));
    }
    row.owner = Set(Some(state.runner().replica().to_owned()));
    row.lease_expires_at = Set(Some(now + lease));
    Ok(row.insert(txn).await?)
}

/// Stores a run that could not even be created (its schedule's arguments no longer fit the
/// proc, a secret is missing) as `CREATION_FAILED` with why, inside `txn`, so it is listed and
/// reported like any other run. Announce it with [`announce`] after the commit.
pub async fn insert_not_started<C: ConnectionTrait>(
    txn: &C,
    proc: &proc::Model,
    args: Vec<ArgValue>,
    new: NewExecution,
    reason: String,
) -> Result<execution::Model, ApiError> {
    let now = Utc::now();
    let mut row = new_row(proc, args, new, now);
    row.status = Set(ExecutionStatus::CreationFailed);
    row.reason = Set(Some(reason));
    row.finished_at = Set(Some(now));
    Ok(row.insert(txn).await?)
}

fn new_row(
    proc: &proc::Model,
    args: Vec<ArgValue>,
    new: NewExecution,
    now: DateTime<Utc>,
) -> execution::ActiveModel {
    execution::ActiveModel {
        id: NotSet,
        proc_id: Set(Some(proc.id)),
        proc_name: Set(proc.name.clone()),
        args: Set(ArgValues(args)),
        status: Set(ExecutionStatus::Pending),
        trigger: Set(new.trigger),
        schedule_id: Set(new.schedule_id),
        user_email: Set(new.user_email),
        image: Set(proc.image.clone()),
        executor_ref: Set(None),
        exit_code: Set(None),
        reason: Set(None),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        updated_at: Set(now),
        owner: Set(None),
        lease_expires_at: Set(None),
        log_source: Set(None),
        log_offset: Set(0),
        log_lines_lost: Set(0),
        mask_key_id: Set(None),
        mask_sealed: Set(None),
    }
}

/// Publishes a committed new execution (subscribers of all executions see it appear).
pub async fn announce(state: &AppState, execution: &execution::Model) {
    publish(
        state,
        Event::ExecutionStatus {
            execution: Box::new(execution.clone()),
        },
    )
    .await;
}

/// Announces a committed `PENDING` execution and hands it to this replica's runner.
pub async fn start(state: &AppState, execution: &execution::Model, prepared: PreparedRun) {
    announce(state, execution).await;
    let (spec, masker) = run_spec(&prepared.proc, execution, prepared.secrets);
    state
        .runner()
        .launch(state.clone(), execution.clone(), spec, masker);
}

/// What a supervisor needs to run (or resume) `execution`, rebuilt from the database: the
/// proc as it is now, the stored argument values and the current secret values.
pub async fn prepare_run(
    state: &AppState,
    execution: &execution::Model,
) -> Result<(RunSpec, Masker), ApiError> {
    let proc = match execution.proc_id {
        Some(proc_id) => proc::Entity::find_by_id(proc_id).one(state.db()).await?,
        None => None,
    }
    .ok_or_else(|| ApiError::NotFound {
        kind: "proc",
        key: execution.proc_name.clone(),
    })?;
    let secrets = secret_values(state, &proc).await?;
    // Mask what the run started with too: a value changed since is still in its output.
    let started_with = crate::secrets::service::open_run_mask(state.keyring(), proc.id, execution)?;
    let (spec, _) = run_spec(&proc, execution, secrets.clone());
    let masker = Masker::new(
        secrets
            .iter()
            .map(|(_, value)| value.as_str())
            .chain(started_with.iter().map(String::as_str)),
    );
    Ok((spec, masker))
}

/// The environment is `args ⊕ secrets ⊕ context`: secrets override arguments of the same
/// name, and Proctor's context variables override both (as in Proctor v2). The masker hides
/// the secret values in the run's output.
fn run_spec(
    proc: &proc::Model,
    execution: &execution::Model,
    secrets: Vec<(String, String)>,
) -> (RunSpec, Masker) {
    let masker = Masker::new(secrets.iter().map(|(_, value)| value.as_str()));
    let args: &[ArgValue] = &execution.args.0;
    let name = run_name(&proc.name, execution.id);
    let mut env: Vec<(String, EnvValue)> = Vec::new();
    let mut set = |key: String, value: EnvValue| {
        env.retain(|(existing, _)| *existing != key);
        env.push((key, value));
    };
    for arg in args {
        set(arg.name.clone(), EnvValue::Plain(arg.value.clone()));
    }
    for (key, value) in secrets {
        set(key, EnvValue::Secret(value));
    }
    for (key, value) in [
        ("EXECUTION_ID", execution.id.to_string()),
        ("JOB_NAME", proc.name.clone()),
        ("EXECUTION_NAME", name),
        (
            "USER_EMAIL",
            execution.user_email.clone().unwrap_or_default(),
        ),
        ("IMAGE_TAG", proc.image.clone().unwrap_or_default()),
    ] {
        set(key.to_owned(), EnvValue::Plain(value));
    }
    let spec = RunSpec {
        execution_id: execution.id,
        proc_name: proc.name.clone(),
        image: proc.image.clone(),
        command: proc.command.as_ref().map(|argv| argv.0.clone()),
        env,
        timeout: proc
            .timeout_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map(Duration::from_secs),
        retries: proc.retries.and_then(|retries| u32::try_from(retries).ok()),
    };
    (spec, masker)
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
    let proc = match execution.proc_id {
        Some(proc_id) => proc::Entity::find_by_id(proc_id).one(state.db()).await?,
        None => None,
    };
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
            status_name(execution.status)
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
    if !state.runner().cancel_here(id) {
        publish(state, Event::CancelRequested { execution_id: id }).await;
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
