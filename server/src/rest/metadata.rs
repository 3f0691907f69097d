//! The proc metadata JSON of the Proctor v2 REST routes (`GET`/`POST /metadata`): a wire shape
//! of the shim, turned into a [`ProcDefinition`] here so the domain sees only definitions.

use proctor_entity::proc;
use proctor_schema::procs::ProcDefinition;
use proctor_schema::procs::definition::{ArgDefinition, SecretDefinition};
use serde::{Deserialize, Serialize};

/// The proc metadata JSON of the Proctor v2 REST routes (`GET`/`POST /metadata`), with the
/// keys in the order the Go server wrote them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyMetadata {
    /// Proc name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Image.
    #[serde(default)]
    pub image_name: String,
    /// Declared secrets and args (documentation only in v2).
    #[serde(default)]
    pub env_vars: LegacyEnvVars,
    /// Authorized groups (`null` when none).
    #[serde(default)]
    pub authorized_groups: Option<Vec<String>>,
    /// Author.
    #[serde(default)]
    pub author: String,
    /// Contributors.
    #[serde(default)]
    pub contributors: String,
    /// Organisation.
    #[serde(default)]
    pub organization: String,
}

/// `env_vars` of [`LegacyMetadata`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyEnvVars {
    /// Declared secrets.
    #[serde(default)]
    pub secrets: Option<Vec<LegacyVariable>>,
    /// Declared args.
    #[serde(default)]
    pub args: Option<Vec<LegacyVariable>>,
}

/// A name with a description, as v2 declared args and secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyVariable {
    /// Variable name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

impl LegacyMetadata {
    /// The definition this metadata describes when posted over `existing` (the stored proc of
    /// that name, if any). v2 args were untyped and optional, so new ones become optional
    /// STRING arguments; v2 had no command, timeout or retries. What the v2 shape cannot
    /// express is kept from `existing` (its command, limits, and the type and rules of every
    /// argument that is still declared), so a legacy script re-posting metadata never strips
    /// what was defined over GraphQL (notifications included).
    pub fn to_definition(&self, existing: Option<&proc::Model>) -> ProcDefinition {
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        let kept = existing.map(ProcDefinition::from_model).unwrap_or_default();
        let kept_args = kept.args.unwrap_or_default();
        ProcDefinition {
            name: self.name.clone(),
            description: non_empty(&self.description),
            image: non_empty(&self.image_name),
            command: kept.command,
            args: self.env_vars.args.as_ref().map(|args| {
                args.iter()
                    .map(|arg| {
                        let previous = kept_args.iter().find(|kept| kept.name == arg.name);
                        ArgDefinition {
                            name: arg.name.clone(),
                            description: non_empty(&arg.description),
                            ..previous.cloned().unwrap_or_default()
                        }
                    })
                    .collect()
            }),
            secrets: self.env_vars.secrets.as_ref().map(|secrets| {
                secrets
                    .iter()
                    .map(|secret| SecretDefinition {
                        name: secret.name.clone(),
                        description: non_empty(&secret.description),
                    })
                    .collect()
            }),
            authorized_groups: self.authorized_groups.clone(),
            author: non_empty(&self.author),
            contributors: non_empty(&self.contributors),
            organization: non_empty(&self.organization),
            timeout_seconds: kept.timeout_seconds,
            retries: kept.retries,
            notifications: kept.notifications,
            resources: kept.resources,
            identity: kept.identity,
            alerts: kept.alerts,
        }
    }

    /// The v2 view of a stored proc (types, rules, command and limits have no v2 field).
    pub fn from_model(model: &proc::Model) -> Self {
        let variables = |pairs: Vec<(String, Option<String>)>| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .into_iter()
                    .map(|(name, description)| LegacyVariable {
                        name,
                        description: description.unwrap_or_default(),
                    })
                    .collect()
            })
        };
        Self {
            name: model.name.clone(),
            description: model.description.clone().unwrap_or_default(),
            image_name: model.image.clone().unwrap_or_default(),
            env_vars: LegacyEnvVars {
                secrets: variables(
                    model
                        .secret_specs
                        .0
                        .iter()
                        .map(|s| (s.name.clone(), s.description.clone()))
                        .collect(),
                ),
                args: variables(
                    model
                        .args
                        .0
                        .iter()
                        .map(|a| (a.name.clone(), a.description.clone()))
                        .collect(),
                ),
            },
            authorized_groups: (!model.authorized_groups.0.is_empty())
                .then(|| model.authorized_groups.0.clone()),
            author: model.author.clone().unwrap_or_default(),
            contributors: model.contributors.clone().unwrap_or_default(),
            organization: model.organization.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proctor_entity::json::ArgType as StoredArgType;
    use proctor_schema::procs::definition::{ArgType, ValidProc};

    use super::*;

    fn stored(valid: &ValidProc) -> proc::Model {
        let mut model = proctor_schema::procs::service::model_of(valid);
        model.id = 7;
        model.version = 1;
        model
    }

    const LEGACY: &str = r#"{"name":"echo-worker","description":"This procs will echo your name","image_name":"walbertusd/echo-worker","env_vars":{"secrets":[{"name":"SECRET_NAME","description":"My other secret name"}],"args":[{"name":"NAME","description":"Name to be echoed"}]},"authorized_groups":["my-group"],"author":"Dembo","contributors":"Dembo","organization":"GoJek"}"#;

    #[test]
    fn legacy_metadata_maps_to_the_model_and_back_byte_for_byte() {
        let metadata: LegacyMetadata = serde_json::from_str(LEGACY).unwrap();
        let definition = metadata.to_definition(None);
        assert_eq!(definition.image.as_deref(), Some("walbertusd/echo-worker"));
        let valid = definition.validate("").unwrap();
        assert_eq!(valid.args[0].arg_type, StoredArgType::String);
        assert!(!valid.args[0].required, "v2 args were optional");
        let back = LegacyMetadata::from_model(&stored(&valid));
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            LEGACY,
            "same keys, same order"
        );
    }

    #[test]
    fn legacy_metadata_with_missing_fields_gets_v2_zero_values() {
        let metadata: LegacyMetadata =
            serde_json::from_str(r#"{"name":"x","image_name":"img","extra":1}"#).unwrap();
        let back = LegacyMetadata::from_model(&stored(
            &metadata.to_definition(None).validate("").unwrap(),
        ));
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::json!({
                "name": "x", "description": "", "image_name": "img",
                "env_vars": { "secrets": null, "args": null },
                "authorized_groups": null, "author": "", "contributors": "", "organization": ""
            })
        );
    }

    #[test]
    fn reposting_legacy_metadata_keeps_what_v2_cannot_express() {
        let typed = ProcDefinition {
            name: "echo-worker".into(),
            image: Some("old/image".into()),
            command: Some(vec!["echo".into(), "hi".into()]),
            args: Some(vec![ArgDefinition {
                name: "NAME".into(),
                description: Some("old".into()),
                arg_type: Some(ArgType::Enum),
                required: Some(true),
                values: Some(vec!["a".into(), "b".into()]),
                ..ArgDefinition::default()
            }]),
            timeout_seconds: Some(60),
            retries: Some(2),
            ..ProcDefinition::default()
        };
        let existing = stored(&typed.validate("").unwrap());
        let metadata: LegacyMetadata = serde_json::from_str(LEGACY).unwrap();
        let merged = metadata.to_definition(Some(&existing));
        assert_eq!(merged.image.as_deref(), Some("walbertusd/echo-worker"));
        assert_eq!(merged.command, typed.command, "command kept");
        assert_eq!(
            (merged.timeout_seconds, merged.retries),
            (Some(60), Some(2))
        );
        let name = &merged.args.as_ref().unwrap()[0];
        assert_eq!(name.description.as_deref(), Some("Name to be echoed"));
        assert_eq!(name.arg_type, Some(ArgType::Enum), "type kept");
        assert_eq!(name.required, Some(true));
        assert_eq!(
            name.values.as_deref(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        assert_eq!(
            merged.authorized_groups.as_deref(),
            Some(&["my-group".to_owned()][..])
        );
    }
}
