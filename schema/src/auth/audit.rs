//! The audit log: every mutation records who did what to which object, and when. Details
//! never include secret values.
//!
//! The log is tamper-evident: a hash chain. Rows are written unchained (in the transaction of
//! the change they describe, so audited writes never wait for one another); the sealer
//! ([`seal_pending`], run by every replica, one at a time under a lock) then gives each
//! committed row the next `chain_seq`, the previous row's hash and its own hash: SHA-256 over
//! a canonical encoding ([`canonical`]) of every column and `prev_hash`. [`verify`] walks the
//! chain and names the first row whose hash no longer matches (edited), whose `prev_hash`
//! does not match its predecessor, or that follows a gap (deleted). Deleting the newest rows
//! leaves a shorter valid chain: `proctord audit verify` prints the head (seq and hash) so an
//! auditor can record it elsewhere and compare later.

use async_graphql::connection::Connection;
use async_graphql::{Json, SimpleObject};
use chrono::{DateTime, Utc};
use proctor_entity::audit_event;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, NotSet, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::Caller;
use crate::error::ApiError;
use crate::pagination::{PageRequest, connection};
use crate::state::AppState;

/// Records one action. Call it in the same transaction as the change it describes.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    caller: &Caller,
    action: &str,
    object_kind: &str,
    object_id: &str,
    detail: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    audit_event::ActiveModel {
        id: NotSet,
        actor: Set(caller.actor()),
        action: Set(action.to_owned()),
        object_kind: Set(object_kind.to_owned()),
        object_id: Set(object_id.to_owned()),
        detail: Set(detail),
        created_at: Set(Utc::now()),
        chain_seq: Set(None),
        prev_hash: Set(None),
        hash: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// One audited action.
#[derive(SimpleObject, Clone, Debug)]
pub struct AuditEvent {
    /// Who acted (e-mail, or the Proctor component).
    pub actor: Option<String>,
    /// What was done, e.g. `proc.update`.
    pub action: String,
    /// Kind of object, e.g. `proc`.
    pub object_kind: String,
    /// The object, e.g. the proc name.
    pub object_id: String,
    /// Extra facts (versions, keys touched), never secret values.
    pub detail: Option<Json<serde_json::Value>>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl From<audit_event::Model> for AuditEvent {
    fn from(model: audit_event::Model) -> Self {
        Self {
            actor: model.actor,
            action: model.action,
            object_kind: model.object_kind,
            object_id: model.object_id,
            detail: model.detail.map(Json),
            created_at: model.created_at,
        }
    }
}

/// A page of the audit log, newest first (administrators only).
pub async fn list(
    state: &AppState,
    caller: &Caller,
    page: PageRequest,
) -> Result<Connection<String, AuditEvent>, ApiError> {
    caller.require_admin(state, "read the audit log")?;
    let db = state.db();
    let mut query = audit_event::Entity::find().order_by_desc(audit_event::Column::Id);
    if let Some(before) = page.before_id {
        query = query.filter(audit_event::Column::Id.lt(before));
    }
    let rows = query.limit(page.fetch_limit()).all(db).await?;
    Ok(connection(
        page,
        rows.into_iter()
            .map(|model| (model.id, AuditEvent::from(model)))
            .collect(),
    ))
}

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Rows chained per transaction of the sealer.
const SEAL_BATCH: u64 = 500;
/// Rows read per page while verifying.
const VERIFY_PAGE: u64 = 1000;
/// Key of the Postgres advisory lock that makes one sealer at a time chain rows.
const SEAL_LOCK_KEY: i64 = 0x7072_6f63_6175_6474; // "procaudt"

/// The canonical encoding of an event at `chain_seq` after `prev_hash`: a versioned JSON array
/// of every column (the detail with sorted keys, the time in microseconds since the epoch).
pub fn canonical(event: &audit_event::Model, chain_seq: i64, prev_hash: &str) -> String {
    serde_json::json!([
        "proctor-audit-v1",
        chain_seq,
        prev_hash,
        event.id,
        event.actor,
        event.action,
        event.object_kind,
        event.object_id,
        event.detail.as_ref().map(crate::signing::sorted),
        event.created_at.timestamp_micros(),
    ])
    .to_string()
}

/// The hash of an event at `chain_seq` after `prev_hash` (hex SHA-256 of [`canonical`]).
pub fn event_hash(event: &audit_event::Model, chain_seq: i64, prev_hash: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(
        canonical(event, chain_seq, prev_hash).as_bytes(),
    ))
}

/// Chains committed rows that are not chained yet (oldest id first), at most [`SEAL_BATCH`];
/// returns how many. One sealer at a time: a Postgres advisory lock (SQLite's write lock).
pub async fn seal_pending(db: &sea_orm::DatabaseConnection) -> Result<usize, ApiError> {
    // A plain read first: an idle server takes no write lock (SQLite's is the only one).
    let waiting = audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::Id)
        .filter(audit_event::Column::ChainSeq.is_null())
        .limit(1)
        .into_tuple::<i64>()
        .one(db)
        .await?;
    if waiting.is_none() {
        return Ok(0);
    }
    let txn = crate::db::begin_write(db).await?;
    if crate::db::locks_rows(db) {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({SEAL_LOCK_KEY})"))
            .await?;
    }
    let pending = audit_event::Entity::find()
        .filter(audit_event::Column::ChainSeq.is_null())
        .order_by_asc(audit_event::Column::Id)
        .limit(SEAL_BATCH)
        .all(&txn)
        .await?;
    if pending.is_empty() {
        // Another replica chained them meanwhile.
        txn.rollback().await?;
        return Ok(0);
    }
    let head = audit_event::Entity::find()
        .filter(audit_event::Column::ChainSeq.is_not_null())
        .order_by_desc(audit_event::Column::ChainSeq)
        .one(&txn)
        .await?;
    let (mut seq, mut prev) = match head {
        Some(head) => (
            head.chain_seq.unwrap_or(0),
            head.hash.unwrap_or_else(|| GENESIS.to_owned()),
        ),
        None => (0, GENESIS.to_owned()),
    };
    let mut links = Vec::with_capacity(pending.len());
    for event in &pending {
        seq += 1;
        let hash = event_hash(event, seq, &prev);
        links.push((
            event.id,
            seq,
            std::mem::replace(&mut prev, hash.clone()),
            hash,
        ));
    }
    // One statement per hundred rows: the sealer keeps up with thousands of events a second.
    for chunk in links.chunks(100) {
        txn.execute_unprepared(&chain_update(chunk)).await?;
    }
    txn.commit().await?;
    Ok(pending.len())
}

/// One event's place in the chain: `(id, chain_seq, prev_hash, hash)`.
type Link = (i64, i64, String, String);

/// `UPDATE audit_events SET chain_seq = CASE id …, prev_hash = …, hash = … WHERE id IN (…)`
/// for `(id, chain_seq, prev_hash, hash)` links. Every value is a number or a hex digest this
/// module computed, so writing them into the statement is safe.
fn chain_update(links: &[Link]) -> String {
    let case = |value: &dyn Fn(&Link) -> String| {
        let arms: String = links
            .iter()
            .map(|link| format!(" WHEN {} THEN {}", link.0, value(link)))
            .collect();
        format!("CASE id{arms} END")
    };
    let ids: Vec<String> = links.iter().map(|link| link.0.to_string()).collect();
    format!(
        "UPDATE audit_events SET chain_seq = {}, prev_hash = {}, hash = {} WHERE id IN ({})",
        case(&|link| link.1.to_string()),
        case(&|link| format!("'{}'", link.2)),
        case(&|link| format!("'{}'", link.3)),
        ids.join(", ")
    )
}

/// Chains new audit rows forever: every `interval`, and at once after a full batch.
pub async fn seal_forever(state: AppState, interval: std::time::Duration) {
    loop {
        match seal_pending(state.db()).await {
            Ok(count) if count as u64 == SEAL_BATCH => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot chain new audit events yet"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Where the chain first breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// The chain position of the first event that does not verify.
    pub chain_seq: i64,
    /// That row's id (absent when the row itself is missing).
    pub id: Option<i64>,
    /// What is wrong.
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Events whose link verified.
    pub verified: u64,
    /// Events not chained yet (written in the last moments).
    pub unsealed: u64,
    /// The last verified event: its chain position and hash.
    pub head: Option<(i64, String)>,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
}

/// Walks the chain from the first event and reports the first broken link. `expected`: a head
/// recorded earlier (`seq`, `hash`): the chain must still hold that event with that hash, which
/// catches events deleted from the end.
pub async fn verify<C: ConnectionTrait>(
    db: &C,
    expected: Option<(i64, String)>,
) -> Result<ChainReport, ApiError> {
    let unsealed = {
        use sea_orm::PaginatorTrait as _;
        audit_event::Entity::find()
            .filter(audit_event::Column::ChainSeq.is_null())
            .count(db)
            .await?
    };
    let mut report = ChainReport {
        verified: 0,
        unsealed,
        head: None,
        broken: None,
    };
    let (mut expected_seq, mut prev) = (1_i64, GENESIS.to_owned());
    loop {
        let page = audit_event::Entity::find()
            .filter(audit_event::Column::ChainSeq.gte(expected_seq))
            .order_by_asc(audit_event::Column::ChainSeq)
            .limit(VERIFY_PAGE)
            .all(db)
            .await?;
        if page.is_empty() {
            if let Some((seq, _)) = &expected
                && *seq >= expected_seq
            {
                report.broken = Some(BrokenLink {
                    chain_seq: expected_seq,
                    id: None,
                    reason: format!(
                        "the chain ends at event #{} but event #{seq} was recorded as its head \
                         (events were deleted from the end)",
                        expected_seq - 1
                    ),
                });
            }
            return Ok(report);
        }
        for event in &page {
            let seq = event.chain_seq.unwrap_or_default();
            let broken = |reason: String, id: Option<i64>, at: i64| BrokenLink {
                chain_seq: at,
                id,
                reason,
            };
            if seq != expected_seq {
                report.broken = Some(broken(
                    format!(
                        "event #{expected_seq} is missing (deleted): the chain goes on at #{seq}"
                    ),
                    None,
                    expected_seq,
                ));
                return Ok(report);
            }
            if event.prev_hash.as_deref() != Some(prev.as_str()) {
                report.broken = Some(broken(
                    format!(
                        "event #{seq} (id {}) does not follow event #{}: its previous hash \
                         differs (an event before it was replaced)",
                        event.id,
                        seq - 1
                    ),
                    Some(event.id),
                    seq,
                ));
                return Ok(report);
            }
            let hash = event_hash(event, seq, &prev);
            if event.hash.as_deref() != Some(hash.as_str()) {
                report.broken = Some(broken(
                    format!(
                        "event #{seq} (id {}, {} {} {}) was altered after it was recorded",
                        event.id, event.action, event.object_kind, event.object_id
                    ),
                    Some(event.id),
                    seq,
                ));
                return Ok(report);
            }
            if let Some((at, recorded)) = &expected
                && *at == seq
                && *recorded != hash
            {
                report.broken = Some(broken(
                    format!(
                        "event #{seq} (id {}) hashes to {hash}, not to the recorded head \
                         {recorded} (the chain was rebuilt up to here)",
                        event.id
                    ),
                    Some(event.id),
                    seq,
                ));
                return Ok(report);
            }
            report.verified += 1;
            report.head = Some((seq, hash.clone()));
            prev = hash;
            expected_seq += 1;
        }
    }
}
