//! `procs`: the automations users share.

use sea_orm::entity::prelude::*;

use crate::json::{
    AlertRules, ArgSpecs, IdentitySpec, NotificationPolicy, Resources, SecretSpecs, StringList,
};

/// A proc: an image or command with typed arguments, declared secrets and an access policy.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "procs")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique, DNS-label safe name.
    #[sea_orm(unique)]
    pub name: String,
    /// Free text shown to users.
    pub description: Option<String>,
    /// Container image (Kubernetes executor).
    pub image: Option<String>,
    /// argv the local executor runs; container command override on Kubernetes.
    pub command: Option<StringList>,
    /// Declared, typed arguments.
    pub args: ArgSpecs,
    /// Declared secrets (names and descriptions only).
    pub secret_specs: SecretSpecs,
    /// Groups allowed to run it; empty means everyone.
    pub authorized_groups: StringList,
    /// Who wrote it.
    pub author: Option<String>,
    /// Who else worked on it.
    pub contributors: Option<String>,
    /// Owning organisation.
    pub organization: Option<String>,
    /// Per-proc execution deadline; the server default applies when absent.
    pub timeout_seconds: Option<i32>,
    /// Retries after a failed attempt; the server default applies when absent.
    pub retries: Option<i32>,
    /// Bumped on every update.
    pub version: i32,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last update time.
    pub updated_at: DateTimeUtc,
    /// Who hears about its runs (besides a schedule's own and the server-wide targets).
    pub notifications: Option<NotificationPolicy>,
    /// CPU and memory of its Kubernetes runs (requests and limits).
    pub resources: Option<Resources>,
    /// The per-run identity token it asks for.
    pub identity: Option<IdentitySpec>,
    /// Its live log alert rules.
    pub alerts: Option<AlertRules>,
}

/// Tables that point at a proc.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Its secret values.
    #[sea_orm(has_many = "super::secret::Entity")]
    Secret,
    /// Its schedules.
    #[sea_orm(has_many = "super::schedule::Entity")]
    Schedule,
    /// Its executions.
    #[sea_orm(has_many = "super::execution::Entity")]
    Execution,
}

impl Related<super::secret::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Secret.def()
    }
}

impl Related<super::schedule::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Schedule.def()
    }
}

impl Related<super::execution::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Execution.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
