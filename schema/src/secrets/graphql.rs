//! Secret mutations: write-only by design.

use std::fmt;

use async_graphql::{Context, InputObject, Object};

use super::service::{self, SecretInfo};
use crate::auth::request;
use crate::error::ApiResultExt;

/// A secret value to store.
#[derive(InputObject, Clone)]
pub struct SecretValueInput {
    /// The declared secret's name.
    pub key: String,
    /// The value; stored encrypted and never returned.
    // `secret`: masked wherever async-graphql prints a request (its tracing spans, exported
    // over OTLP), like the value itself in every log.
    #[graphql(secret)]
    pub value: String,
}

impl fmt::Debug for SecretValueInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValueInput")
            .field("key", &self.key)
            .field("value", &"***")
            .finish()
    }
}

/// Mutations on secrets (administrators only).
#[derive(Default)]
pub struct SecretsMutation;

#[Object]
impl SecretsMutation {
    /// Stores values for declared secrets of a proc; returns what is set now (never values).
    async fn set_secrets(
        &self,
        ctx: &Context<'_>,
        proc: String,
        // Masked whole in printed requests: async-graphql masks secret fields of objects, not
        // of objects inside a list.
        #[graphql(secret)] secrets: Vec<SecretValueInput>,
    ) -> async_graphql::Result<Vec<SecretInfo>> {
        let (state, caller) = request(ctx).await.gql()?;
        let values: Vec<(String, String)> = secrets
            .into_iter()
            .map(|secret| (secret.key, secret.value))
            .collect();
        service::set_secrets(state, &caller, &proc, &values)
            .await
            .gql()
    }

    /// Removes a secret's value; `false` when none was set.
    async fn delete_secret(
        &self,
        ctx: &Context<'_>,
        proc: String,
        key: String,
    ) -> async_graphql::Result<bool> {
        let (state, caller) = request(ctx).await.gql()?;
        service::delete_secret(state, &caller, &proc, &key)
            .await
            .gql()
    }
}
