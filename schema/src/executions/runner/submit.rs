//! Submission: the one place a runnable execution is created and handed to supervision.
//!
//! Callers (GraphQL and REST through `executions::service`, the scheduler) validate,
//! authorise and audit, then call [`Runner::submit`] inside their own write transaction and
//! [`Runner::hand_off`] after its commit. Nothing runs before the commit, and a replica that
//! dies in between leaves a leased `PENDING` row that another replica takes over.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proctor_entity::json::{ArgValue, ArgValues};
use proctor_entity::values::{ExecutionStatus, Trigger};
use proctor_entity::{execution, proc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait as _, ConnectionTrait, EntityTrait, NotSet, QueryFilter as _, Set,
};

use super::transition::announce;
use super::{Runner, run_name};
use crate::error::ApiError;
use crate::executions::identity;
use crate::executions::shaping::Masker;
use crate::ports::executor::{EnvValue, RunSpec};
use crate::secrets::service::{open_run_mask, seal_run_mask, secret_values};
use crate::state::AppState;

/// A run that passed every check: the proc, its validated arguments and its secret values.
/// (No `Debug`: it holds secret values.)
#[derive(Clone)]
pub struct PreparedRun {
    proc: proc::Model,
    args: Vec<ArgValue>,
    secrets: Vec<(String, String)>,
}

impl PreparedRun {
    /// Bundles what the checks produced (see `executions::service::prepare`).
    pub(crate) fn new(
        proc: proc::Model,
        args: Vec<ArgValue>,
        secrets: Vec<(String, String)>,
    ) -> Self {
        Self {
            proc,
            args,
            secrets,
        }
    }
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

/// A run stored as `PENDING` in a transaction not yet committed; hand it off after the commit.
/// (No `Debug`: its spec holds secret values.)
#[must_use = "a submitted run does nothing until it is handed off after the commit"]
pub struct Submitted {
    execution: execution::Model,
    spec: RunSpec,
    masker: Masker,
}

impl Submitted {
    /// The stored row.
    pub fn execution(&self) -> &execution::Model {
        &self.execution
    }
}

impl Runner {
    /// Stores `run` as `PENDING`, leased by this replica, inside `txn`; the secret values it
    /// starts with are sealed on the row so whoever supervises it masks exactly those.
    /// `UNAVAILABLE` once this server is shutting down.
    pub async fn submit<C: ConnectionTrait>(
        &self,
        txn: &C,
        state: &AppState,
        run: &PreparedRun,
        new: NewExecution,
    ) -> Result<Submitted, ApiError> {
        if !self.accepting() {
            return Err(ApiError::Unavailable(
                "this server is shutting down and accepts no new runs; try again (another \
                 replica, or this one once it is back)"
                    .to_owned(),
            ));
        }
        let now = Utc::now();
        let lease = chrono::Duration::from_std(self.settings.lease)
            .unwrap_or(chrono::Duration::seconds(15));
        let mut row = new_row(&run.proc, ArgValues(run.args.clone()), new, now);
        if !run.secrets.is_empty() {
            let sealed = seal_run_mask(state.keyring(), run.proc.id, &run.secrets)?;
            row.mask_key_id = Set(Some(sealed.key_id));
            row.mask_sealed = Set(Some(sealed.ciphertext));
        }
        row.owner = Set(Some(self.replica.clone()));
        row.lease_expires_at = Set(Some(now + lease));
        let execution = row.insert(txn).await?;
        let (spec, masker) = run_spec(&run.proc, &execution, run.secrets.clone());
        Ok(Submitted {
            execution,
            spec,
            masker,
        })
    }

    /// Announces a committed submission and supervises it in the background.
    pub async fn hand_off(self: &Arc<Self>, state: &AppState, submitted: Submitted) {
        announce(state, &submitted.execution).await;
        self.supervise_in_background(
            state.clone(),
            submitted.execution,
            Some(submitted.spec),
            submitted.masker,
        );
    }
}

/// A new execution row in its first state.
pub(super) fn new_row(
    proc: &proc::Model,
    args: ArgValues,
    new: NewExecution,
    now: DateTime<Utc>,
) -> execution::ActiveModel {
    execution::ActiveModel {
        id: NotSet,
        proc_id: Set(Some(proc.id)),
        proc_name: Set(proc.name.clone()),
        args: Set(args),
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
        log_since: Set(None),
        log_lines_lost: Set(0),
        mask_key_id: Set(None),
        mask_sealed: Set(None),
        attempts: Set(1),
        proc_version: Set(Some(proc.version)),
    }
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
    let started_with = open_run_mask(state.keyring(), proc.id, execution)?;
    let (spec, _) = run_spec(&proc, execution, secrets.clone());
    let masker = Masker::new(
        secrets
            .iter()
            .map(|(_, value)| value.as_str())
            .chain(started_with.iter().map(String::as_str)),
    );
    Ok((spec, masker))
}

/// Adds `value` (the run's identity token) to the sealed mask of execution `id`, so whoever
/// supervises the run later masks it too.
pub(super) async fn add_to_run_mask(
    state: &AppState,
    id: i64,
    value: &str,
) -> Result<(), ApiError> {
    let Some(execution) = execution::Entity::find_by_id(id).one(state.db()).await? else {
        return Ok(());
    };
    let Some(proc_id) = execution.proc_id else {
        return Ok(());
    };
    let mut values: Vec<(String, String)> = open_run_mask(state.keyring(), proc_id, &execution)?
        .into_iter()
        .map(|value| (String::new(), value))
        .collect();
    values.push((identity::TOKEN_VARIABLE.to_owned(), value.to_owned()));
    let sealed = seal_run_mask(state.keyring(), proc_id, &values)?;
    execution::Entity::update_many()
        .filter(execution::Column::Id.eq(id))
        .col_expr(execution::Column::MaskKeyId, sealed.key_id.into())
        .col_expr(execution::Column::MaskSealed, sealed.ciphertext.into())
        .exec(state.db())
        .await?;
    Ok(())
}

/// Seals the current secret values of `spec` as the mask of `execution`, a `PENDING` run about
/// to start under a new supervisor (its identity token is added when it starts).
pub(super) async fn reseal_run_mask(
    state: &AppState,
    execution: &execution::Model,
    spec: &RunSpec,
) -> Result<(), ApiError> {
    let Some(proc_id) = execution.proc_id else {
        return Ok(());
    };
    let values: Vec<(String, String)> = spec
        .env
        .iter()
        .filter_map(|(name, value)| match value {
            EnvValue::Secret(secret) => Some((name.clone(), secret.clone())),
            EnvValue::Plain(_) => None,
        })
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let sealed = seal_run_mask(state.keyring(), proc_id, &values)?;
    execution::Entity::update_many()
        .filter(execution::Column::Id.eq(execution.id))
        .col_expr(execution::Column::MaskKeyId, sealed.key_id.into())
        .col_expr(execution::Column::MaskSealed, sealed.ciphertext.into())
        .exec(state.db())
        .await?;
    Ok(())
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
        resources: proc.resources.clone(),
        identity_audience: proc.identity.as_ref().map(|spec| spec.audience.clone()),
        alerts: proc.alerts.clone(),
    };
    (spec, masker)
}
