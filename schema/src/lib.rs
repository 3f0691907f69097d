//! Proctor's domain and GraphQL schema.
//!
//! Layout: one module per domain (`system`, `auth`, `procs`, `secrets`, `executions`,
//! `schedules`), each owning its GraphQL types, resolvers and the service functions that the REST
//! shim and the scheduler share; `ports` holds the traits for everything that crosses a process
//! boundary (executors, the event bus, notifiers, authenticators) with the in-memory
//! implementations that need no infrastructure; `error` holds the one [`ApiError`].
//!
//! This crate never depends on `kube`, `fred` or an HTTP server, so it builds fast and is tested
//! with in-memory parts; `proctor-server` supplies the adapters.
//!
//! Service functions share one signature: `pub async fn verb(state: &AppState, caller: &Caller,
//! input…) -> Result<T, ApiError>`. They check the caller's rights themselves, so a resolver
//! (which starts with [`auth::request`] for the state and the caller) or a REST handler only
//! converts shapes and calls one. Functions that act for the system (the runner, the scheduler,
//! the batch lookups behind [`loaders`]) take no caller and say in their docs that they check no
//! rights; the few that work below the server, before any `AppState` exists (`proctord users
//! add`), take a database connection instead.

pub mod alerts;
pub mod auth;
pub mod db;
pub mod error;
pub mod executions;
pub mod group_commit;
pub mod import_v2;
pub mod limits;
pub mod loaders;
pub mod metrics;
pub mod notifications;
pub mod pagination;
pub mod ports;
pub mod procs;
pub mod reference;
pub mod schedules;
pub mod secrets;
pub mod signing;
pub mod state;
pub mod system;
#[cfg(test)]
mod test_state;

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder};

pub use error::{ApiError, ApiResultExt};
pub use state::{AppParts, AppState, SchemaLimits};

/// The root query type: every domain's queries merged.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    system::SystemQuery,
    auth::AuthQuery,
    procs::ProcsQuery,
    executions::ExecutionsQuery,
    schedules::SchedulesQuery,
);

/// The root mutation type: every domain's mutations merged.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    procs::ProcsMutation,
    secrets::SecretsMutation,
    auth::AuthMutation,
    executions::ExecutionsMutation,
    schedules::SchedulesMutation,
);

/// The root subscription type: every domain's subscriptions merged.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(executions::ExecutionsSubscription);

/// The executable schema type served at `/graphql` and `/graphql/ws`.
pub type ProctorSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema without runtime data; enough to print the SDL.
fn schema_builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
}

/// Builds the schema served by `proctord`, with the configured depth and complexity limits and
/// the application state every resolver reads.
pub fn build_schema(state: AppState) -> ProctorSchema {
    build_schema_traced(state, false)
}

/// [`build_schema`], with a `tracing` span for each operation's parse, validation, execution
/// and each resolver when `traced` (spans are exported over OTLP; off, they cost nothing).
pub fn build_schema_traced(state: AppState, traced: bool) -> ProctorSchema {
    let limits = state.limits();
    let mut builder = schema_builder()
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .extension(limits::ResponseLimits);
    if traced {
        builder = builder.extension(async_graphql::extensions::Tracing);
    }
    loaders::install(builder, &state).data(state).finish()
}

/// The schema definition language text of the API; the committed `schema/schema.graphql` must
/// equal it (a test checks), and the CLI's typed operations are generated from that file.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}
