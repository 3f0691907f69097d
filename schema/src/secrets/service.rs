//! Setting, deleting, describing, decrypting and re-encrypting secret values.

use std::collections::HashMap;

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use proctor_entity::{execution, proc, secret};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, NotSet, QueryFilter, QuerySelect, Set,
};
use serde_json::json;

use super::keyring::{Keyring, Sealed};
use crate::auth::{Caller, audit};
use crate::error::ApiError;
use crate::procs::service::find_proc;
use crate::state::AppState;

/// Largest secret value accepted.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// What anyone who can see a proc may know about one of its secrets: never the value.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    /// Environment variable name.
    pub key: String,
    /// What the secret is for.
    pub description: Option<String>,
    /// Whether a value is stored (a run needs every declared secret set).
    pub is_set: bool,
    /// When the value was last set.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The associated data binding a ciphertext to its row.
fn context(proc_id: i64, key: &str) -> String {
    format!("proctor:secret:{proc_id}:{key}")
}

fn sealed(row: &secret::Model) -> Sealed {
    Sealed {
        key_id: row.key_id.clone(),
        ciphertext: row.ciphertext.clone(),
    }
}

fn key_error(error: super::keyring::KeyError) -> ApiError {
    ApiError::Internal(anyhow::Error::new(error).context("secret encryption"))
}

/// The secret descriptions of each proc, from one query that never reads ciphertexts.
pub async fn secret_infos<C: ConnectionTrait>(
    db: &C,
    procs: &[proc::Model],
) -> Result<HashMap<i64, Vec<SecretInfo>>, ApiError> {
    let ids: Vec<i64> = procs.iter().map(|proc| proc.id).collect();
    let stored: Vec<(i64, String, DateTime<Utc>)> = secret::Entity::find()
        .select_only()
        .columns([
            secret::Column::ProcId,
            secret::Column::Key,
            secret::Column::UpdatedAt,
        ])
        .filter(secret::Column::ProcId.is_in(ids))
        .into_tuple()
        .all(db)
        .await?;
    Ok(procs
        .iter()
        .map(|proc| {
            let infos = proc
                .secret_specs
                .0
                .iter()
                .map(|spec| {
                    let updated_at = stored
                        .iter()
                        .find(|(proc_id, key, _)| *proc_id == proc.id && *key == spec.name)
                        .map(|(_, _, updated_at)| *updated_at);
                    SecretInfo {
                        key: spec.name.clone(),
                        description: spec.description.clone(),
                        is_set: updated_at.is_some(),
                        updated_at,
                    }
                })
                .collect();
            (proc.id, infos)
        })
        .collect())
}

/// Stores values for declared secrets of `proc_name` (administrators only) and returns the
/// proc's secret descriptions.
pub async fn set_secrets(
    state: &AppState,
    caller: &Caller,
    proc_name: &str,
    values: &[(String, String)],
) -> Result<Vec<SecretInfo>, ApiError> {
    caller.require_admin(state, "set secrets")?;
    let proc = find_proc(state.db(), proc_name).await?;
    let declared: Vec<&str> = proc
        .secret_specs
        .0
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for (index, (key, value)) in values.iter().enumerate() {
        if !declared.contains(&key.as_str()) {
            let declares = if declared.is_empty() {
                "no secrets".to_owned()
            } else {
                declared.join(", ")
            };
            return Err(ApiError::bad_input(
                format!("secrets[{index}].key"),
                format!("proc {proc_name:?} declares no secret {key:?}; it declares {declares}"),
            ));
        }
        if values[..index].iter().any(|(earlier, _)| earlier == key) {
            return Err(ApiError::bad_input(
                format!("secrets[{index}].key"),
                format!("{key} is given more than once"),
            ));
        }
        check_value(&format!("secrets[{index}].value"), value)?;
    }

    crate::db::retry_on_conflict(|| {
        store_values(state.db(), state.keyring(), caller, &proc, values)
    })
    .await?;
    let mut infos = secret_infos(state.db(), std::slice::from_ref(&proc)).await?;
    Ok(infos.remove(&proc.id).unwrap_or_default())
}

/// A secret value is 1 to [`MAX_SECRET_BYTES`] bytes.
pub(crate) fn check_value(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::bad_input(
            field,
            format!("must be 1 to {MAX_SECRET_BYTES} bytes (use deleteSecret to remove one)"),
        ));
    }
    Ok(())
}

/// Encrypts and stores the values in one transaction (the caller checked them).
pub(crate) async fn store_values(
    db: &DatabaseConnection,
    keyring: &Keyring,
    caller: &Caller,
    proc: &proc::Model,
    values: &[(String, String)],
) -> Result<(), ApiError> {
    let now = Utc::now();
    let txn = crate::db::begin_write(db).await?;
    for (key, value) in values {
        let sealed = keyring
            .seal(&context(proc.id, key), value.as_bytes())
            .map_err(key_error)?;
        let existing = secret::Entity::find()
            .filter(secret::Column::ProcId.eq(proc.id))
            .filter(secret::Column::Key.eq(key.as_str()))
            .one(&txn)
            .await?;
        match existing {
            Some(row) => {
                let mut row = row.into_active_model();
                row.key_id = Set(sealed.key_id);
                row.ciphertext = Set(sealed.ciphertext);
                row.updated_at = Set(now);
                row.update(&txn).await?;
            }
            None => {
                secret::ActiveModel {
                    id: NotSet,
                    proc_id: Set(proc.id),
                    key: Set(key.clone()),
                    key_id: Set(sealed.key_id),
                    ciphertext: Set(sealed.ciphertext),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&txn)
                .await?;
            }
        }
    }
    let keys: Vec<&str> = values.iter().map(|(key, _)| key.as_str()).collect();
    audit::record(
        &txn,
        caller,
        "secret.set",
        "proc",
        &proc.name,
        Some(json!({ "keys": keys })),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Removes the value of `key` (administrators only); `false` when none was set.
pub async fn delete_secret(
    state: &AppState,
    caller: &Caller,
    proc_name: &str,
    key: &str,
) -> Result<bool, ApiError> {
    caller.require_admin(state, "delete secrets")?;
    let proc = find_proc(state.db(), proc_name).await?;
    if !proc.secret_specs.0.iter().any(|spec| spec.name == key) {
        return Err(ApiError::bad_input(
            "key",
            format!("proc {proc_name:?} declares no secret {key:?}"),
        ));
    }
    let txn = crate::db::begin_write(state.db()).await?;
    let deleted = secret::Entity::delete_many()
        .filter(secret::Column::ProcId.eq(proc.id))
        .filter(secret::Column::Key.eq(key))
        .exec(&txn)
        .await?
        .rows_affected;
    if deleted > 0 {
        audit::record(
            &txn,
            caller,
            "secret.delete",
            "proc",
            &proc.name,
            Some(json!({ "key": key })),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(deleted > 0)
}

/// The value of one stored secret. Never log it.
pub fn decrypt(keyring: &Keyring, row: &secret::Model) -> Result<String, ApiError> {
    let plaintext = keyring
        .open(&context(row.proc_id, &row.key), &sealed(row))
        .map_err(key_error)?;
    String::from_utf8(plaintext)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("secret {} is not UTF-8", row.key)))
}

/// The decrypted values of `proc`'s secrets, for the environment of a run. Never log them.
pub async fn secret_values(
    state: &AppState,
    proc: &proc::Model,
) -> Result<Vec<(String, String)>, ApiError> {
    let rows = secret::Entity::find()
        .filter(secret::Column::ProcId.eq(proc.id))
        .all(state.db())
        .await?;
    rows.iter()
        .map(|row| Ok((row.key.clone(), decrypt(state.keyring(), row)?)))
        .collect()
}

/// The sealing context of a run's masking values (bound to its proc).
fn run_mask_context(proc_id: i64) -> String {
    format!("run-mask:{proc_id}")
}

/// Seals the secret values a run starts with, for [`open_run_mask`].
pub fn seal_run_mask(
    keyring: &Keyring,
    proc_id: i64,
    secrets: &[(String, String)],
) -> Result<Sealed, ApiError> {
    let values: Vec<&str> = secrets.iter().map(|(_, value)| value.as_str()).collect();
    let plain = serde_json::to_vec(&values)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("encoding a run's mask")))?;
    keyring
        .seal(&run_mask_context(proc_id), &plain)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("sealing a run's mask")))
}

/// The secret values `execution` started with (none when it started before they were kept).
pub fn open_run_mask(
    keyring: &Keyring,
    proc_id: i64,
    execution: &execution::Model,
) -> Result<Vec<String>, ApiError> {
    let (Some(key_id), Some(ciphertext)) = (&execution.mask_key_id, &execution.mask_sealed) else {
        return Ok(Vec::new());
    };
    let sealed = Sealed {
        key_id: key_id.clone(),
        ciphertext: ciphertext.clone(),
    };
    let plain = keyring
        .open(&run_mask_context(proc_id), &sealed)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("opening a run's mask")))?;
    serde_json::from_slice(&plain)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("decoding a run's mask")))
}

/// Re-encrypts every value not yet under the keyring's current key, in one transaction, and
/// records the rotation. Returns how many rows were rewritten.
pub async fn reencrypt_all(
    db: &DatabaseConnection,
    keyring: &Keyring,
    actor: &Caller,
) -> Result<usize, ApiError> {
    let current = keyring.current_key_id();
    let txn = crate::db::begin_write(db).await?;
    let rows = secret::Entity::find()
        .filter(secret::Column::KeyId.ne(current.as_str()))
        .all(&txn)
        .await?;
    let now = Utc::now();
    for row in &rows {
        let value = decrypt(keyring, row)?;
        let resealed = keyring
            .seal(&context(row.proc_id, &row.key), value.as_bytes())
            .map_err(key_error)?;
        let mut updated = row.clone().into_active_model();
        updated.key_id = Set(resealed.key_id);
        updated.ciphertext = Set(resealed.ciphertext);
        updated.updated_at = Set(now);
        updated.update(&txn).await?;
    }
    audit::record(
        &txn,
        actor,
        "secret.rotate-key",
        "keyring",
        &current,
        Some(json!({ "rows": rows.len() })),
    )
    .await?;
    txn.commit().await?;
    Ok(rows.len())
}
