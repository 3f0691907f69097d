//! Creating, updating, listing, reading and deleting procs. Shared by the GraphQL resolvers and
//! the REST shim.

use chrono::Utc;
use proctor_entity::json::{ArgSpecs, SecretSpecs, StringList};
use proctor_entity::values::ExecutionStatus;
use proctor_entity::{execution, proc, secret};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, NotSet,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::json;

use super::definition::{KEPT_SECRET, ProcDefinition, ValidProc};
use crate::auth::{Caller, audit};
use crate::error::ApiError;
use crate::secrets::service::{SecretInfo, secret_infos};
use crate::state::AppState;

/// A proc with the descriptions of its secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcView {
    /// The stored proc.
    pub model: proc::Model,
    /// Its declared secrets and whether each is set.
    pub secrets: Vec<SecretInfo>,
}

/// Narrows `procs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcQuery {
    /// Case-insensitive text found in the name or description.
    pub search: Option<String>,
    /// Only procs that list this group.
    pub group: Option<String>,
}

/// The proc named `name`, or `NOT_FOUND`.
pub async fn find_proc<C: ConnectionTrait>(db: &C, name: &str) -> Result<proc::Model, ApiError> {
    proc::Entity::find()
        .filter(proc::Column::Name.eq(name))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "proc",
            key: name.to_owned(),
        })
}

async fn with_secrets<C: ConnectionTrait>(
    db: &C,
    procs: Vec<proc::Model>,
) -> Result<Vec<ProcView>, ApiError> {
    let mut infos = secret_infos(db, &procs).await?;
    Ok(procs
        .into_iter()
        .map(|model| ProcView {
            secrets: infos.remove(&model.id).unwrap_or_default(),
            model,
        })
        .collect())
}

/// The procs with these ids, with their secrets' state, in two queries whatever their number
/// (the batch behind `Execution.proc` and `Schedule.proc`). No access check: the caller of this
/// checks [`Caller::may_run`] on each.
pub async fn procs_by_id(state: &AppState, ids: &[i64]) -> Result<Vec<ProcView>, ApiError> {
    let procs = proc::Entity::find()
        .filter(proc::Column::Id.is_in(ids.iter().copied()))
        .all(state.db())
        .await?;
    with_secrets(state.db(), procs).await
}

/// The proc `name` if the caller may run it; `NOT_FOUND` or `FORBIDDEN` otherwise.
pub async fn get_proc(state: &AppState, caller: &Caller, name: &str) -> Result<ProcView, ApiError> {
    let proc = find_proc(state.db(), name).await?;
    caller.require_may_run(&proc)?;
    Ok(with_secrets(state.db(), vec![proc]).await?.remove(0))
}

/// The procs the caller may run (administrators: all), by name. Filtering happens here rather
/// than in SQL because groups are a JSON list, stored differently by Postgres and SQLite, and
/// proc catalogues are small.
pub async fn list_procs(
    state: &AppState,
    caller: &Caller,
    query: &ProcQuery,
) -> Result<Vec<ProcView>, ApiError> {
    let search = query.search.as_deref().map(str::to_lowercase);
    let procs: Vec<proc::Model> = proc::Entity::find()
        .order_by_asc(proc::Column::Name)
        .all(state.db())
        .await?
        .into_iter()
        .filter(|proc| caller.may_run(proc))
        .filter(|proc| {
            query
                .group
                .as_ref()
                .is_none_or(|group| proc.authorized_groups.0.contains(group))
        })
        .filter(|proc| {
            search.as_ref().is_none_or(|needle| {
                proc.name.contains(needle.as_str())
                    || proc
                        .description
                        .as_deref()
                        .is_some_and(|d| d.to_lowercase().contains(needle.as_str()))
            })
        })
        .collect();
    with_secrets(state.db(), procs).await
}

/// Creates the proc or replaces its definition (administrators only). An update bumps the
/// version; values of secrets the new definition no longer declares are deleted.
/// `field_prefix` names where the definition came from in errors (`input.`, a file name).
pub async fn upsert_proc(
    state: &AppState,
    caller: &Caller,
    definition: &ProcDefinition,
    field_prefix: &str,
) -> Result<ProcView, ApiError> {
    caller.require_admin(state, "create or change procs")?;
    let valid = definition.validate(field_prefix)?;
    let model =
        crate::db::retry_on_conflict(|| store_proc(state.db(), caller, &valid, None)).await?;
    Ok(with_secrets(state.db(), vec![model]).await?.remove(0))
}

/// Creates or replaces the procs named `names` at once (administrators only). `define(index,
/// stored)` gives the definition of the `index`th from the stored proc of that name, if any, so
/// a caller whose shape says less than a definition (the REST shim's v2 metadata) keeps the
/// rest. Every definition is checked before any is stored, so one bad element stores nothing;
/// errors name it as `[index].field`.
pub async fn upsert_procs(
    state: &AppState,
    caller: &Caller,
    names: &[&str],
    define: impl Fn(usize, Option<&proc::Model>) -> ProcDefinition,
) -> Result<Vec<ProcView>, ApiError> {
    caller.require_admin(state, "create or change procs")?;
    let mut checked = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let existing = proc::Entity::find()
            .filter(proc::Column::Name.eq(*name))
            .one(state.db())
            .await?;
        checked.push(define(index, existing.as_ref()).validate(&format!("[{index}]."))?);
    }
    let mut stored = Vec::with_capacity(checked.len());
    for valid in &checked {
        stored.push(
            crate::db::retry_on_conflict(|| store_proc(state.db(), caller, valid, None)).await?,
        );
    }
    with_secrets(state.db(), stored).await
}

/// Inserts or updates the proc in one transaction, recording the new version; the row is
/// locked while it is read, so concurrent updates bump the version one after another.
/// `rolled_back_to`: the version whose definition this is again (audited).
pub(crate) async fn store_proc(
    db: &sea_orm::DatabaseConnection,
    caller: &Caller,
    valid: &ValidProc,
    rolled_back_to: Option<i32>,
) -> Result<proc::Model, ApiError> {
    let now = Utc::now();
    let txn = crate::db::begin_write(db).await?;
    let mut lookup = proc::Entity::find().filter(proc::Column::Name.eq(valid.name.as_str()));
    if crate::db::locks_rows(db) {
        lookup = lookup.lock_exclusive();
    }
    let existing = lookup.one(&txn).await?;
    let kept = keep_stored_credentials(valid, existing.as_ref())?;
    let valid = &kept;
    let (model, action, removed_secrets) = match existing {
        None => {
            let mut model = active_model(valid);
            model.id = NotSet;
            model.version = Set(1);
            model.created_at = Set(now);
            model.updated_at = Set(now);
            let model = model.insert(&txn).await?;
            super::versions::record(&txn, None, &model, caller.email.as_deref()).await?;
            (model, "proc.create", Vec::new())
        }
        Some(current) => {
            let declared: Vec<&str> = valid.secrets.iter().map(|s| s.name.as_str()).collect();
            let removed: Vec<String> = current
                .secret_specs
                .0
                .iter()
                .map(|spec| spec.name.clone())
                .filter(|name| !declared.contains(&name.as_str()))
                .collect();
            if !removed.is_empty() {
                secret::Entity::delete_many()
                    .filter(secret::Column::ProcId.eq(current.id))
                    .filter(secret::Column::Key.is_in(removed.clone()))
                    .exec(&txn)
                    .await?;
            }
            let mut model = active_model(valid);
            model.id = Set(current.id);
            model.version = Set(current.version + 1);
            model.created_at = Set(current.created_at);
            model.updated_at = Set(now);
            let model = model.update(&txn).await?;
            super::versions::record(&txn, Some(&current), &model, caller.email.as_deref()).await?;
            let action = if rolled_back_to.is_some() {
                "proc.rollback"
            } else {
                "proc.update"
            };
            (model, action, removed)
        }
    };
    audit::record(
        &txn,
        caller,
        action,
        "proc",
        &model.name,
        Some(json!({
            "version": model.version,
            "removedSecrets": removed_secrets,
            "rolledBackTo": rolled_back_to,
        })),
    )
    .await?;
    txn.commit().await?;
    Ok(model)
}

/// `valid` with a Slack URL given as [`KEPT_SECRET`] replaced by the stored one.
fn keep_stored_credentials(
    valid: &ValidProc,
    existing: Option<&proc::Model>,
) -> Result<ValidProc, ApiError> {
    let mut valid = valid.clone();
    if let Some(policy) = &mut valid.notifications
        && policy.slack_webhook_url.as_deref() == Some(KEPT_SECRET)
    {
        let stored = existing
            .and_then(|proc| proc.notifications.as_ref())
            .and_then(|policy| policy.slack_webhook_url.clone());
        match stored {
            Some(url) => policy.slack_webhook_url = Some(url),
            None => {
                return Err(ApiError::bad_input(
                    "notifications.slackWebhookUrl",
                    format!(
                        "{KEPT_SECRET:?} keeps the stored URL, and this proc has none; give the URL"
                    ),
                ));
            }
        }
    }
    Ok(valid)
}

/// The stored shape of a valid definition (id, version and times left at zero).
pub fn model_of(valid: &ValidProc) -> proc::Model {
    let epoch = chrono::DateTime::<Utc>::UNIX_EPOCH;
    proc::Model {
        id: 0,
        name: valid.name.clone(),
        description: valid.description.clone(),
        image: valid.image.clone(),
        command: valid.command.clone().map(StringList),
        args: ArgSpecs(valid.args.clone()),
        secret_specs: SecretSpecs(valid.secrets.clone()),
        authorized_groups: StringList(valid.authorized_groups.clone()),
        author: valid.author.clone(),
        contributors: valid.contributors.clone(),
        organization: valid.organization.clone(),
        timeout_seconds: valid.timeout_seconds,
        retries: valid.retries,
        notifications: valid.notifications.clone(),
        resources: valid.resources.clone(),
        identity: valid.identity.clone(),
        alerts: valid.alerts.clone(),
        version: 0,
        created_at: epoch,
        updated_at: epoch,
    }
}

fn active_model(valid: &ValidProc) -> proc::ActiveModel {
    let mut model = model_of(valid).into_active_model().reset_all();
    model.id = NotSet;
    model.version = NotSet;
    model.created_at = NotSet;
    model.updated_at = NotSet;
    model
}

/// Deletes the proc, its secrets and schedules (administrators only). Refused with `CONFLICT`
/// while one of its executions has not finished; finished executions keep their history.
pub async fn delete_proc(state: &AppState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    caller.require_admin(state, "delete procs")?;
    let txn = crate::db::begin_write(state.db()).await?;
    let proc = find_proc(&txn, name).await?;
    let unfinished = execution::Entity::find()
        .filter(execution::Column::ProcId.eq(proc.id))
        .filter(execution::Column::Status.is_in(ExecutionStatus::UNFINISHED))
        .count(&txn)
        .await?;
    if unfinished > 0 {
        return Err(ApiError::Conflict(format!(
            "proc {name:?} has {unfinished} execution(s) that have not finished; cancel them or \
             wait, then delete it"
        )));
    }
    let version = proc.version;
    proc.into_active_model().delete(&txn).await?;
    audit::record(
        &txn,
        caller,
        "proc.delete",
        "proc",
        name,
        Some(json!({ "version": version })),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
