//! Lookups that fields make once per row, batched across one response with async-graphql's
//! `DataLoader`: a page of 100 executions asks for their procs, the procs' secrets and their
//! notifications in one query each, whatever the page size (a test counts the statements).
//!
//! Invariants: loaders return rows as stored and check no rights; every resolver that uses one
//! checks the request's caller on what it got. They keep no cache, so nothing outlives the
//! moment it was read; they only gather the keys that the fields of one response ask for at
//! the same time.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::Context;
use async_graphql::dataloader::{DataLoader, Loader};
use proctor_entity::execution;

use crate::error::ApiError;
use crate::notifications::Delivery;
use crate::procs::service::ProcView;
use crate::state::AppState;

/// Procs (with their secrets' state) by id.
pub struct ProcsById(AppState);

impl Loader<i64> for ProcsById {
    type Value = ProcView;
    type Error = Arc<ApiError>;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, ProcView>, Self::Error> {
        let procs = crate::procs::service::procs_by_id(&self.0, ids).await?;
        Ok(procs
            .into_iter()
            .map(|view| (view.model.id, view))
            .collect())
    }
}

/// The notifications of executions, by execution id.
pub struct NotificationsByExecution(AppState);

impl Loader<i64> for NotificationsByExecution {
    type Value = Vec<Delivery>;
    type Error = Arc<ApiError>;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<Delivery>>, Self::Error> {
        Ok(crate::notifications::deliveries_of(&self.0, ids).await?)
    }
}

/// Executions by id.
pub struct ExecutionsById(AppState);

impl Loader<i64> for ExecutionsById {
    type Value = execution::Model;
    type Error = Arc<ApiError>;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, execution::Model>, Self::Error> {
        let executions = crate::executions::service::executions_by_id(&self.0, ids).await?;
        Ok(executions.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// The loaders of a schema serving `state`.
pub(crate) fn install<Q, M, S>(
    builder: async_graphql::SchemaBuilder<Q, M, S>,
    state: &AppState,
) -> async_graphql::SchemaBuilder<Q, M, S> {
    builder
        .data(DataLoader::new(ProcsById(state.clone()), tokio::spawn))
        .data(DataLoader::new(
            NotificationsByExecution(state.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(ExecutionsById(state.clone()), tokio::spawn))
}

/// The procs with these ids that exist, in one batch.
pub async fn procs(ctx: &Context<'_>, ids: &[i64]) -> Result<HashMap<i64, ProcView>, ApiError> {
    load_many::<ProcsById>(ctx, ids).await
}

/// The notifications of these executions, in one batch.
pub async fn notifications_of(
    ctx: &Context<'_>,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<Delivery>>, ApiError> {
    load_many::<NotificationsByExecution>(ctx, ids).await
}

/// The proc with id `id`, if it exists.
pub async fn proc(ctx: &Context<'_>, id: i64) -> Result<Option<ProcView>, ApiError> {
    load::<ProcsById>(ctx, id).await
}

/// The notifications of execution `id`.
pub async fn notifications(ctx: &Context<'_>, id: i64) -> Result<Vec<Delivery>, ApiError> {
    Ok(load::<NotificationsByExecution>(ctx, id)
        .await?
        .unwrap_or_default())
}

/// Execution `id`, if it exists.
pub async fn execution(ctx: &Context<'_>, id: i64) -> Result<Option<execution::Model>, ApiError> {
    load::<ExecutionsById>(ctx, id).await
}

async fn load<L>(ctx: &Context<'_>, id: i64) -> Result<Option<L::Value>, ApiError>
where
    L: Loader<i64, Error = Arc<ApiError>>,
{
    Ok(load_many::<L>(ctx, &[id]).await?.remove(&id))
}

/// One batch: the keys are registered together, so they are asked for in one query (at most
/// 1,000 per query: the loader's batch size, ten times the largest page).
async fn load_many<L>(ctx: &Context<'_>, ids: &[i64]) -> Result<HashMap<i64, L::Value>, ApiError>
where
    L: Loader<i64, Error = Arc<ApiError>>,
{
    let loader = ctx.data::<DataLoader<L>>().map_err(|_| {
        ApiError::Internal(anyhow::anyhow!("the schema was built without its loaders"))
    })?;
    loader
        .load_many(ids.iter().copied())
        .await
        .map_err(ApiError::unshared)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::Utc;
    use proctor_entity::json::{ArgSpecs, ArgValues, SecretSpec, SecretSpecs, StringList};
    use proctor_entity::values::{ExecutionStatus, Trigger};
    use proctor_entity::{notification, proc};
    use sea_orm::{ActiveModelTrait, NotSet, Set};

    use crate::auth::RequestAuth;
    use crate::ports::authenticator::Credentials;

    /// Statements a page of `size` executions costs, each with its proc (and the proc's
    /// secrets) and its notifications.
    async fn statements_for_a_page_of(size: usize) -> usize {
        let mut db = crate::test_state::database().await;
        let now = Utc::now();
        let proc = proc::ActiveModel {
            id: NotSet,
            name: Set("report".to_owned()),
            args: Set(ArgSpecs(Vec::new())),
            secret_specs: Set(SecretSpecs(vec![SecretSpec {
                name: "TOKEN".to_owned(),
                description: None,
            }])),
            authorized_groups: Set(StringList(Vec::new())),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&db)
        .await
        .expect("a proc");
        for n in 0..size {
            let run = proctor_entity::execution::ActiveModel {
                proc_id: Set(Some(proc.id)),
                proc_name: Set(proc.name.clone()),
                args: Set(ArgValues(Vec::new())),
                status: Set(ExecutionStatus::Failed),
                trigger: Set(Trigger::Manual),
                created_at: Set(now),
                updated_at: Set(now),
                log_offset: Set(0),
                log_lines_lost: Set(0),
                attempts: Set(1),
                ..Default::default()
            }
            .insert(&db)
            .await
            .expect("an execution");
            notification::ActiveModel {
                execution_id: Set(run.id),
                channel: Set("email".to_owned()),
                idempotency_key: Set(format!("key-{n}")),
                state: Set("DELIVERED".to_owned()),
                attempts: Set(1),
                next_attempt_at: Set(now),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(&db)
            .await
            .expect("a notification");
        }
        let statements = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&statements);
        db.set_metric_callback(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let schema = crate::build_schema(crate::test_state::state(
            db,
            crate::test_state::idle_runner(),
        ));
        let query = format!(
            "{{ executions(first: {size}) {{ edges {{ node {{ id proc {{ name secrets {{ key isSet }} }} \
             notifications {{ channel state }} }} }} }} }}"
        );
        let request =
            async_graphql::Request::new(query).data(RequestAuth::new(Credentials::default()));
        let response = schema.execute(request).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let data = response.data.into_json().expect("JSON data");
        let edges = data["executions"]["edges"]
            .as_array()
            .expect("edges")
            .clone();
        assert_eq!(edges.len(), size);
        for edge in &edges {
            assert_eq!(edge["node"]["proc"]["secrets"][0]["key"], "TOKEN");
            assert_eq!(edge["node"]["notifications"][0]["channel"], "email");
        }
        statements.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_page_of_100_executions_costs_as_many_statements_as_a_page_of_10() {
        let small = statements_for_a_page_of(10).await;
        let large = statements_for_a_page_of(100).await;
        assert_eq!(small, large, "per-row lookups are batched");
        // The page, the procs, their secrets, the notifications.
        assert!(large <= 4, "{large} statements for a page of 100");
    }
}
