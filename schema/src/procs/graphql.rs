//! Proc queries, mutations and types.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use proctor_entity::json::{ArgValue, NotificationPolicy};

use super::args::validate_args;
use super::definition::{ArgType, ProcDefinition};
use super::service::{self, ProcQuery, ProcView};
use super::versions::{self, VersionView};
use crate::auth::{app_state, request};
use crate::error::{ApiError, ApiResultExt};
use crate::secrets::SecretInfo;

/// A proc as a caller sees it: everything but secret values. Callers only ever see procs they
/// may run (administrators may run all).
pub struct Proc {
    view: ProcView,
}

impl From<ProcView> for Proc {
    fn from(view: ProcView) -> Self {
        Self { view }
    }
}

/// One argument of a proc.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "ArgSpec")]
pub struct ArgSpecView {
    /// Environment variable name.
    pub name: String,
    /// What it means.
    pub description: Option<String>,
    /// Value type.
    #[graphql(name = "type")]
    pub arg_type: ArgType,
    /// Whether a run must supply it (unless it has a default).
    pub required: bool,
    /// Value used when none is supplied.
    pub default: Option<String>,
    /// Regular expression a STRING value must match in full.
    pub pattern: Option<String>,
    /// Allowed values of an ENUM argument.
    pub values: Vec<String>,
}

#[Object]
impl Proc {
    /// Unique name.
    async fn name(&self) -> &str {
        &self.view.model.name
    }
    /// What it does.
    async fn description(&self) -> Option<&str> {
        self.view.model.description.as_deref()
    }
    /// Container image.
    async fn image(&self) -> Option<&str> {
        self.view.model.image.as_deref()
    }
    /// argv the local executor runs.
    async fn command(&self) -> Option<&[String]> {
        self.view
            .model
            .command
            .as_ref()
            .map(|argv| argv.0.as_slice())
    }
    /// Arguments, in declaration order.
    async fn args(&self) -> Vec<ArgSpecView> {
        arg_views(&self.view.model)
    }
    /// Declared secrets: names, descriptions and whether each is set. Never values.
    async fn secrets(&self) -> &[SecretInfo] {
        &self.view.secrets
    }
    /// Groups whose members may run it (all of them are required); empty: any user.
    async fn authorized_groups(&self) -> &[String] {
        &self.view.model.authorized_groups.0
    }
    /// Who wrote it.
    async fn author(&self) -> Option<&str> {
        self.view.model.author.as_deref()
    }
    /// Who else worked on it.
    async fn contributors(&self) -> Option<&str> {
        self.view.model.contributors.as_deref()
    }
    /// Owning organisation.
    async fn organization(&self) -> Option<&str> {
        self.view.model.organization.as_deref()
    }
    /// Run deadline in seconds (the server default applies when null).
    async fn timeout_seconds(&self) -> Option<i32> {
        self.view.model.timeout_seconds
    }
    /// Retries after a failed attempt (the server default applies when null).
    async fn retries(&self) -> Option<i32> {
        self.view.model.retries
    }
    /// CPU and memory of its Kubernetes runs, as requests and limits (null: the cluster's
    /// defaults). Local runs ignore them.
    async fn resources(&self) -> Option<ResourcesView> {
        self.view.model.resources.as_ref().map(ResourcesView::of)
    }
    /// The per-run identity token its runs get (`PROCTOR_ID_TOKEN`); null: none.
    async fn identity(&self) -> Option<IdentityView> {
        self.view.model.identity.as_ref().map(|spec| IdentityView {
            audience: spec.audience.clone(),
        })
    }
    /// Its live log alert rules.
    async fn alerts(&self) -> Vec<AlertView> {
        self.view
            .model
            .alerts
            .iter()
            .flat_map(|rules| rules.0.iter())
            .map(|rule| AlertView {
                pattern: rule.pattern.clone(),
                notify: rule.notify.clone(),
                once: rule.once,
            })
            .collect()
    }
    /// Incremented by every update.
    async fn version(&self) -> i32 {
        self.view.model.version
    }
    /// Creation time.
    async fn created_at(&self) -> DateTime<Utc> {
        self.view.model.created_at
    }
    /// Last update time.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.view.model.updated_at
    }
    /// The proc as a YAML proc file (what `proctor procs export` writes and `applyProcFile`
    /// reads).
    async fn yaml(&self) -> String {
        ProcDefinition::from_model(&self.view.model)
            .redacted()
            .to_yaml()
    }
    /// Who hears about its runs (besides a schedule's own and the server-wide targets); null
    /// when nobody.
    async fn notifications(&self) -> Option<ProcNotifications> {
        self.view.model.notifications.clone().map(ProcNotifications)
    }
    /// Every definition it has had, newest first (at most `first`, default 20, up to 200).
    #[graphql(
        complexity = "crate::pagination::LOOKUP_COST + first.unwrap_or(20).clamp(1, 200) as usize * child_complexity"
    )]
    async fn versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(minimum = 1, maximum = 200))] first: Option<i32>,
    ) -> async_graphql::Result<Vec<ProcVersion>> {
        let state = app_state(ctx).gql()?;
        let limit = u64::try_from(first.unwrap_or(20)).unwrap_or(20);
        let versions = versions::list(state, &self.view.model, limit).await.gql()?;
        Ok(versions.into_iter().map(ProcVersion).collect())
    }
    /// The definition it had at `version` (`version` itself stays the current number); null
    /// when that version was never stored.
    #[graphql(complexity = "crate::pagination::LOOKUP_COST + child_complexity")]
    async fn definition_at(
        &self,
        ctx: &Context<'_>,
        version: i32,
    ) -> async_graphql::Result<Option<ProcVersion>> {
        let state = app_state(ctx).gql()?;
        let found = versions::get(state, &self.view.model, version)
            .await
            .gql()?;
        Ok(found.map(ProcVersion))
    }
}

fn arg_views(model: &proctor_entity::proc::Model) -> Vec<ArgSpecView> {
    model
        .args
        .0
        .iter()
        .map(|arg| ArgSpecView {
            name: arg.name.clone(),
            description: arg.description.clone(),
            arg_type: arg.arg_type.into(),
            required: arg.required,
            default: arg.default.clone(),
            pattern: arg.pattern.clone(),
            values: arg.values.clone(),
        })
        .collect()
}

/// Who hears about a proc's runs. The Slack URL is a credential and never shown.
pub struct ProcNotifications(NotificationPolicy);

#[Object]
impl ProcNotifications {
    /// E-mail recipients.
    async fn emails(&self) -> &[String] {
        &self.0.emails
    }
    /// Whether a Slack webhook is set.
    async fn slack(&self) -> bool {
        self.0.slack_webhook_url.is_some()
    }
    /// The signed webhook's URL (not a credential: the requests are signed).
    async fn webhook_url(&self) -> Option<&str> {
        self.0.webhook_url.as_deref()
    }
    /// The final states that notify.
    async fn on(&self) -> Vec<crate::executions::ExecutionStatus> {
        crate::notifications::final_states()
            .into_iter()
            .filter(|status| crate::notifications::policy_covers(&self.0, *status))
            .map(Into::into)
            .collect()
    }
}

/// One stored definition of a proc: the whole definition, who stored it and when.
pub struct ProcVersion(VersionView);

#[Object]
impl ProcVersion {
    /// The version number.
    async fn number(&self) -> i32 {
        self.0.number
    }
    /// Who stored it (null: Proctor itself, or stored before versions were kept).
    async fn changed_by(&self) -> Option<&str> {
        self.0.changed_by.as_deref()
    }
    /// When it was stored.
    async fn changed_at(&self) -> DateTime<Utc> {
        self.0.changed_at
    }
    /// What the proc did.
    async fn description(&self) -> Option<&str> {
        self.0.snapshot.description.as_deref()
    }
    /// Container image.
    async fn image(&self) -> Option<&str> {
        self.0.snapshot.image.as_deref()
    }
    /// argv the local executor ran.
    async fn command(&self) -> Option<&[String]> {
        self.0
            .snapshot
            .command
            .as_ref()
            .map(|argv| argv.0.as_slice())
    }
    /// Arguments, in declaration order.
    async fn args(&self) -> Vec<ArgSpecView> {
        arg_views(&self.0.snapshot)
    }
    /// Names of the declared secrets.
    async fn secret_names(&self) -> Vec<&str> {
        self.0
            .snapshot
            .secret_specs
            .0
            .iter()
            .map(|spec| spec.name.as_str())
            .collect()
    }
    /// Groups whose members could run it.
    async fn authorized_groups(&self) -> &[String] {
        &self.0.snapshot.authorized_groups.0
    }
    /// Run deadline in seconds.
    async fn timeout_seconds(&self) -> Option<i32> {
        self.0.snapshot.timeout_seconds
    }
    /// Retries after a failed attempt.
    async fn retries(&self) -> Option<i32> {
        self.0.snapshot.retries
    }
    /// CPU and memory of its Kubernetes runs.
    async fn resources(&self) -> Option<ResourcesView> {
        self.0.snapshot.resources.as_ref().map(ResourcesView::of)
    }
    /// The definition as a YAML proc file.
    async fn yaml(&self) -> String {
        ProcDefinition::from_model(&self.0.snapshot)
            .redacted()
            .to_yaml()
    }
}

/// One argument value given for a run.
#[derive(InputObject, Clone, Debug)]
pub struct ArgInput {
    /// Argument name.
    pub name: String,
    /// Value (converted and checked by the argument's type and rules).
    // Masked in printed requests (tracing spans): an argument may carry what its proc's
    // author did not declare a secret.
    #[graphql(secret)]
    pub value: String,
}

/// CPU and memory a proc's Kubernetes runs ask for (Kubernetes quantities, each used as both
/// request and limit).
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "Resources")]
pub struct ResourcesView {
    /// CPU, e.g. `500m`.
    pub cpu: Option<String>,
    /// Memory, e.g. `256Mi`.
    pub memory: Option<String>,
}

/// The identity token a proc's runs get.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "Identity")]
pub struct IdentityView {
    /// The token's `aud` claim.
    pub audience: Vec<String>,
}

/// A live log alert rule.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "Alert")]
pub struct AlertView {
    /// The regular expression searched in each stored line.
    pub pattern: String,
    /// Who hears: e-mail addresses, `slack`, `webhook`.
    pub notify: Vec<String>,
    /// At most once per run.
    pub once: bool,
}

impl ResourcesView {
    fn of(stored: &proctor_entity::json::Resources) -> Self {
        Self {
            cpu: stored.cpu.clone(),
            memory: stored.memory.clone(),
        }
    }
}

/// One argument value of a run, after defaults were applied.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    /// Argument name.
    pub name: String,
    /// Value.
    pub value: String,
}

impl From<ArgValue> for Arg {
    fn from(value: ArgValue) -> Self {
        Self {
            name: value.name,
            value: value.value,
        }
    }
}

/// Converts GraphQL argument inputs to stored argument values.
pub fn arg_values(args: Option<Vec<ArgInput>>) -> Vec<ArgValue> {
    args.unwrap_or_default()
        .into_iter()
        .map(|arg| ArgValue {
            name: arg.name,
            value: arg.value,
        })
        .collect()
}

/// Narrows the `procs` list.
#[derive(InputObject, Clone, Debug, Default)]
pub struct ProcFilter {
    /// Case-insensitive text in the name or description.
    pub search: Option<String>,
    /// Only procs that list this authorized group.
    pub group: Option<String>,
}

/// Proc queries.
#[derive(Default)]
pub struct ProcsQuery;

#[Object]
impl ProcsQuery {
    /// The procs the caller may run (administrators see all), by name.
    async fn procs(
        &self,
        ctx: &Context<'_>,
        filter: Option<ProcFilter>,
    ) -> async_graphql::Result<Vec<Proc>> {
        let (state, caller) = request(ctx).await.gql()?;
        let filter = filter.unwrap_or_default();
        let query = ProcQuery {
            search: filter.search,
            group: filter.group,
        };
        let views = service::list_procs(state, &caller, &query).await.gql()?;
        Ok(views.into_iter().map(Proc::from).collect())
    }

    /// Checks argument values for a run of `proc` without running it, and returns what the
    /// run would get (defaults filled in). `BAD_USER_INPUT` names the argument and the rule.
    async fn validate_args(
        &self,
        ctx: &Context<'_>,
        proc: String,
        #[graphql(secret)] args: Option<Vec<ArgInput>>,
    ) -> async_graphql::Result<Vec<Arg>> {
        let (state, caller) = request(ctx).await.gql()?;
        let view = service::get_proc(state, &caller, &proc).await.gql()?;
        let resolved = validate_args(&view.model, &arg_values(args)).gql()?;
        Ok(resolved.into_iter().map(Arg::from).collect())
    }

    /// One proc by name; null when there is none, `FORBIDDEN` when the caller may not run it.
    #[graphql(complexity = "crate::pagination::LOOKUP_COST + child_complexity")]
    async fn proc(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Option<Proc>> {
        let (state, caller) = request(ctx).await.gql()?;
        match service::get_proc(state, &caller, &name).await {
            Ok(view) => Ok(Some(Proc::from(view))),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other).gql(),
        }
    }
}

/// Proc mutations (administrators only).
#[derive(Default)]
pub struct ProcsMutation;

#[Object]
impl ProcsMutation {
    /// Creates a proc or replaces its definition; an update bumps `version`.
    async fn upsert_proc(
        &self,
        ctx: &Context<'_>,
        input: ProcDefinition,
    ) -> async_graphql::Result<Proc> {
        let (state, caller) = request(ctx).await.gql()?;
        let view = service::upsert_proc(state, &caller, &input, "input.")
            .await
            .gql()?;
        Ok(Proc::from(view))
    }

    /// Creates or replaces a proc from the text of a YAML proc file; errors name the line.
    async fn apply_proc_file(
        &self,
        ctx: &Context<'_>,
        content: String,
    ) -> async_graphql::Result<Proc> {
        let (state, caller) = request(ctx).await.gql()?;
        let definition = ProcDefinition::from_yaml("content", &content).gql()?;
        let view = service::upsert_proc(state, &caller, &definition, "content: ")
            .await
            .gql()?;
        Ok(Proc::from(view))
    }

    /// Stores version `version` of proc `name` again, as its newest version (administrators
    /// only). History only grows: the rollback is a new version, audited as `proc.rollback`.
    async fn rollback_proc(
        &self,
        ctx: &Context<'_>,
        name: String,
        version: i32,
    ) -> async_graphql::Result<Proc> {
        let (state, caller) = request(ctx).await.gql()?;
        let view = versions::rollback(state, &caller, &name, version)
            .await
            .gql()?;
        Ok(Proc::from(view))
    }

    /// Deletes a proc with its secrets and schedules (`CONFLICT` while one of its executions
    /// runs). Its execution history stays.
    async fn delete_proc(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        let (state, caller) = request(ctx).await.gql()?;
        service::delete_proc(state, &caller, &name).await.gql()?;
        Ok(true)
    }
}
