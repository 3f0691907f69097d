//! Signed run receipts: what a finished execution was and did — proc name and version, the
//! hash of the definition it ran, its argument values (secrets by name only), trigger and
//! caller, image, start and end, exit code, and the hash of its stored output — as canonical
//! JSON signed with the server's ES256 key ([`crate::signing`]).
//!
//! Invariants: a receipt is made once per execution, right after its final state is stored
//! (every output line is stored by then), and never changes; one missing after a crash is made
//! when it is first asked for, but only within [`GRACE`] of the run's end, so the server never
//! signs output that sat in the database for long (an altered history, imported v2 runs).
//! [`verify`] checks the signature against the published key, that the receipt is the
//! execution's, and recomputes the output hash from the stored lines, so an altered, added or
//! removed line fails it. `imageDigest` is null: no executor reports the pulled image's digest.

use std::collections::HashMap;

use chrono::Utc;
use proctor_entity::{execution, execution_log, execution_receipt, proc, proc_version};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::error::ApiError;
use crate::procs::ProcDefinition;
use crate::signing::{PublicKey, sorted};
use crate::state::AppState;

/// Lines hashed per database read.
const PAGE: u64 = 5000;
/// How long after a run's end its receipt may still be made (a crash between the end and the
/// signature).
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A stored receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The execution it is about.
    pub execution_id: i64,
    /// The signed canonical JSON.
    pub payload: String,
    /// ES256 signature of the payload's UTF-8 bytes (base64url r ‖ s).
    pub signature: String,
    /// The key that signed it (`kid` in `/.well-known/jwks.json`).
    pub key_id: String,
}

impl From<execution_receipt::Model> for Receipt {
    fn from(row: execution_receipt::Model) -> Self {
        Self {
            execution_id: row.execution_id,
            payload: row.payload,
            signature: row.signature,
            key_id: row.kid,
        }
    }
}

/// `(lines, hex SHA-256)` of an execution's stored output: each line as the JSON array
/// `[seq, stream, text]` followed by a newline, in `seq` order.
pub async fn output_digest<C: ConnectionTrait>(
    db: &C,
    execution_id: i64,
) -> Result<(u64, String), ApiError> {
    let mut digest = sha2::Sha256::new();
    let (mut count, mut after) = (0_u64, 0_i64);
    loop {
        let page = execution_log::Entity::find()
            .filter(execution_log::Column::ExecutionId.eq(execution_id))
            .filter(execution_log::Column::Seq.gt(after))
            .order_by_asc(execution_log::Column::Seq)
            .limit(PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else {
            return Ok((count, hex::encode(digest.finalize())));
        };
        after = last.seq;
        for line in &page {
            digest.update(
                json!([line.seq, line.stream, line.line])
                    .to_string()
                    .as_bytes(),
            );
            digest.update(b"\n");
            count += 1;
        }
    }
}

/// What a proc version's definition contributes to a receipt: its digest and secret names.
type DefinitionFacts = (Option<String>, Vec<String>);

/// Most proc versions [`DefinitionCache`] remembers before it starts over.
const CACHED_DEFINITIONS: usize = 1024;

/// The facts of the proc versions runs ran lately, by proc id, name and version (a stored
/// version never changes), so a receipt of a busy proc reads no definition.
#[derive(Default)]
pub struct DefinitionCache(std::sync::Mutex<HashMap<(i64, String, i32), DefinitionFacts>>);

impl DefinitionCache {
    fn get(&self, key: &(i64, String, i32)) -> Option<DefinitionFacts> {
        // A poisoned lock holds a whole map (single inserts): safe to reuse.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn put(&self, key: (i64, String, i32), facts: DefinitionFacts) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CACHED_DEFINITIONS {
            map.clear();
        }
        map.insert(key, facts);
    }
}

/// The definition `execution` ran, when it is known: the hex SHA-256 of its canonical JSON,
/// and the names of the secrets it declared.
async fn cached_definition(
    state: &AppState,
    execution: &execution::Model,
) -> Result<DefinitionFacts, ApiError> {
    let (Some(proc_id), Some(version)) = (execution.proc_id, execution.proc_version) else {
        return Ok((None, Vec::new()));
    };
    let key = (proc_id, execution.proc_name.clone(), version);
    if let Some(facts) = state.receipt_definitions().get(&key) {
        return Ok(facts);
    }
    let facts = definition(state.db(), execution).await?;
    if facts.0.is_some() {
        state.receipt_definitions().put(key, facts.clone());
    }
    Ok(facts)
}

async fn definition<C: ConnectionTrait>(
    db: &C,
    execution: &execution::Model,
) -> Result<(Option<String>, Vec<String>), ApiError> {
    let (Some(proc_id), Some(version)) = (execution.proc_id, execution.proc_version) else {
        return Ok((None, Vec::new()));
    };
    let stored = proc_version::Entity::find()
        .filter(proc_version::Column::ProcId.eq(proc_id))
        .filter(proc_version::Column::Version.eq(version))
        .one(db)
        .await?;
    let definition = match stored {
        Some(row) => row.definition,
        None => match proc::Entity::find_by_id(proc_id).one(db).await? {
            Some(proc) if proc.version == version => {
                serde_json::to_value(ProcDefinition::from_model(&proc)).unwrap_or(Value::Null)
            }
            _ => return Ok((None, Vec::new())),
        },
    };
    let secrets = definition["secrets"]
        .as_array()
        .map(|secrets| {
            secrets
                .iter()
                .filter_map(|secret| secret["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let digest = hex::encode(sha2::Sha256::digest(
        sorted(&definition).to_string().as_bytes(),
    ));
    Ok((Some(digest), secrets))
}

/// The receipt payload of a finished execution.
async fn payload(state: &AppState, execution: &execution::Model) -> Result<Value, ApiError> {
    let issuer = &state.server_info().public_url;
    let (lines, output) = output_digest(state.db(), execution.id).await?;
    let (definition_digest, secrets) = cached_definition(state, execution).await?;
    let args: serde_json::Map<String, Value> = execution
        .args
        .0
        .iter()
        .map(|arg| (arg.name.clone(), json!(arg.value)))
        .collect();
    Ok(sorted(&json!({
        "receiptVersion": 1,
        "issuer": issuer,
        "execution": execution.id.to_string(),
        "proc": execution.proc_name,
        "procVersion": execution.proc_version,
        "definitionSha256": definition_digest,
        "args": args,
        "secrets": secrets,
        "trigger": execution.trigger,
        "triggeredBy": execution.user_email,
        "scheduleId": execution.schedule_id.map(|id| id.to_string()),
        "image": execution.image,
        "imageDigest": Value::Null,
        "status": execution.status.name(),
        "exitCode": execution.exit_code,
        "reason": execution.reason,
        "createdAt": execution.created_at.to_rfc3339(),
        "startedAt": execution.started_at.map(|at| at.to_rfc3339()),
        "finishedAt": execution.finished_at.map(|at| at.to_rfc3339()),
        "output": { "lines": lines, "sha256": output },
    })))
}

/// Makes and stores the receipt of `execution`, which has just reached its final state (the
/// stored row); the row is written through the group commit, with other runs' writes.
pub async fn issue_for(state: &AppState, execution: &execution::Model) -> Result<(), ApiError> {
    let payload = payload(state, execution).await?.to_string();
    let keys = state.signing_keys().await?;
    let (signature, kid) = keys.sign(payload.as_bytes())?;
    let row = execution_receipt::ActiveModel {
        execution_id: Set(execution.id),
        payload: Set(payload),
        signature: Set(signature),
        kid: Set(kid),
        created_at: Set(Utc::now()),
    };
    state
        .writes()
        .run(move |txn| {
            let row = row.clone();
            Box::pin(async move {
                execution_receipt::Entity::insert(row)
                    .on_conflict(
                        OnConflict::column(execution_receipt::Column::ExecutionId)
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec_without_returning(txn)
                    .await?;
                Ok(())
            })
        })
        .await
}

/// The receipt of `execution_id`; one that is missing (lost to a crash) is made now when the
/// run ended less than [`GRACE`] ago.
pub async fn issue(state: &AppState, execution_id: i64) -> Result<Option<Receipt>, ApiError> {
    let db = state.db();
    if let Some(row) = execution_receipt::Entity::find_by_id(execution_id)
        .one(db)
        .await?
    {
        return Ok(Some(row.into()));
    }
    let Some(execution) = execution::Entity::find_by_id(execution_id).one(db).await? else {
        return Ok(None);
    };
    let grace = chrono::Duration::from_std(GRACE).unwrap_or(chrono::Duration::minutes(15));
    let recent = execution
        .finished_at
        .is_some_and(|finished| Utc::now() - finished <= grace);
    if !execution.status.is_final() || !recent {
        return Ok(None);
    }
    issue_for(state, &execution).await?;
    Ok(execution_receipt::Entity::find_by_id(execution_id)
        .one(db)
        .await?
        .map(Receipt::from))
}

/// Why a receipt does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// No published key has that id.
    #[error("signed with key {0:?}, which is not one of this server's keys")]
    UnknownKey(String),
    /// The signature does not match the payload.
    #[error("the signature does not match the payload (the receipt was altered)")]
    BadSignature,
    /// The receipt names another execution.
    #[error("the receipt is execution {0}'s, not this one's")]
    OtherExecution(String),
    /// The payload is not a receipt.
    #[error("the payload is not a receipt: {0}")]
    Malformed(String),
    /// The stored output differs from what was signed.
    #[error("the stored output differs from the signed one ({0})")]
    OutputChanged(String),
}

/// Checks a receipt's signature with `keys`, then (when `db` is given) that the stored output
/// of its execution still hashes to what it signed.
pub async fn verify<C: ConnectionTrait>(
    keys: &[PublicKey],
    receipt: &Receipt,
    db: Option<&C>,
) -> Result<(), ReceiptError> {
    let key = crate::signing::find(keys, &receipt.key_id)
        .ok_or_else(|| ReceiptError::UnknownKey(receipt.key_id.clone()))?;
    if !key.verifies(receipt.payload.as_bytes(), &receipt.signature) {
        return Err(ReceiptError::BadSignature);
    }
    let payload: Value = serde_json::from_str(&receipt.payload)
        .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let named = payload["execution"].as_str().unwrap_or_default();
    if named != receipt.execution_id.to_string() {
        return Err(ReceiptError::OtherExecution(named.to_owned()));
    }
    let Some(db) = db else {
        return Ok(());
    };
    let execution_id = receipt.execution_id;
    let (lines, digest) = output_digest(db, execution_id)
        .await
        .map_err(|e| ReceiptError::Malformed(format!("cannot read the output: {e}")))?;
    let signed_lines = payload["output"]["lines"].as_u64();
    let signed_digest = payload["output"]["sha256"].as_str();
    if signed_lines != Some(lines) || signed_digest != Some(digest.as_str()) {
        return Err(ReceiptError::OutputChanged(format!(
            "signed {} lines hashing to {}, stored {lines} hashing to {digest}",
            signed_lines.map_or("?".to_owned(), |n| n.to_string()),
            signed_digest.unwrap_or("?"),
        )));
    }
    Ok(())
}
