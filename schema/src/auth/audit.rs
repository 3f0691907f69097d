//! The audit log: every mutation records who did what to which object, and when. Details
//! never include secret values.

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
