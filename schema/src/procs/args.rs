//! Validation of the argument values of a run: the one function every path that starts a proc
//! (GraphQL `execute`, the REST shim, the scheduler) goes through.

use std::collections::HashSet;

use proctor_entity::json::{ArgSpec, ArgValue};
use proctor_entity::proc;

use super::definition::check_value;
use crate::error::ApiError;

/// Checks `supplied` against the proc's declared arguments and returns the values a run gets:
/// in declaration order, with defaults filled in, optional arguments without a value left out.
///
/// Rejected with `BAD_USER_INPUT` naming the argument (`args.NAME`) and the rule: an unknown
/// name, a name given twice, a missing required argument, a value that is not an INT or BOOL,
/// does not match the pattern, or is not one of the ENUM values.
pub fn validate_args(proc: &proc::Model, supplied: &[ArgValue]) -> Result<Vec<ArgValue>, ApiError> {
    let specs: &[ArgSpec] = &proc.args.0;
    let mut seen = HashSet::new();
    for value in supplied {
        let field = format!("args.{}", value.name);
        if !specs.iter().any(|spec| spec.name == value.name) {
            let known: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
            let takes = if known.is_empty() {
                "no arguments".to_owned()
            } else {
                known.join(", ")
            };
            return Err(ApiError::bad_input(
                field,
                format!("unknown argument: proc {:?} takes {takes}", proc.name),
            ));
        }
        if !seen.insert(value.name.as_str()) {
            return Err(ApiError::bad_input(field, "is given more than once"));
        }
    }

    let mut resolved = Vec::with_capacity(specs.len());
    for spec in specs {
        let field = format!("args.{}", spec.name);
        let given = supplied.iter().find(|value| value.name == spec.name);
        let value = match (given, &spec.default) {
            (Some(given), _) => given.value.clone(),
            (None, Some(default)) => default.clone(),
            (None, None) if spec.required => {
                return Err(ApiError::bad_input(field, "is required"));
            }
            (None, None) => continue,
        };
        check_value(spec, &value)
            .map_err(|rule| ApiError::bad_input(field, format!("{value:?} {rule}")))?;
        resolved.push(ArgValue {
            name: spec.name.clone(),
            value,
        });
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use proctor_entity::json::{ArgSpecs, ArgType, SecretSpecs, StringList};

    use super::*;

    fn proc_with(args: Vec<ArgSpec>) -> proc::Model {
        proc::Model {
            id: 1,
            name: "deploy".into(),
            description: None,
            image: None,
            command: Some(StringList(vec!["true".into()])),
            args: ArgSpecs(args),
            secret_specs: SecretSpecs::default(),
            authorized_groups: StringList::default(),
            author: None,
            contributors: None,
            organization: None,
            timeout_seconds: None,
            retries: None,
            notifications: None,
            resources: None,
            identity: None,
            alerts: None,
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn arg(name: &str, arg_type: ArgType) -> ArgSpec {
        ArgSpec {
            name: name.into(),
            arg_type,
            ..ArgSpec::default()
        }
    }

    fn value(name: &str, value: &str) -> ArgValue {
        ArgValue {
            name: name.into(),
            value: value.into(),
        }
    }

    fn rejection(proc: &proc::Model, supplied: &[ArgValue]) -> (String, String) {
        match validate_args(proc, supplied) {
            Err(ApiError::BadUserInput { field, message }) => (field, message),
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn defaults_fill_in_and_order_follows_the_declaration() {
        let proc = proc_with(vec![
            ArgSpec {
                default: Some("eu".into()),
                ..arg("REGION", ArgType::String)
            },
            arg("COUNT", ArgType::Int),
            arg("DRY_RUN", ArgType::Bool),
        ]);
        let resolved =
            validate_args(&proc, &[value("DRY_RUN", "true"), value("COUNT", "-3")]).unwrap();
        assert_eq!(
            resolved,
            vec![
                value("REGION", "eu"),
                value("COUNT", "-3"),
                value("DRY_RUN", "true")
            ]
        );
        // An optional argument without a default is simply absent.
        assert_eq!(
            validate_args(&proc, &[]).unwrap(),
            vec![value("REGION", "eu")]
        );
    }

    #[test]
    fn every_rule_names_the_argument() {
        let proc = proc_with(vec![
            ArgSpec {
                required: true,
                ..arg("TARGET", ArgType::String)
            },
            arg("COUNT", ArgType::Int),
            arg("FORCE", ArgType::Bool),
            ArgSpec {
                values: vec!["eu".into(), "us".into()],
                ..arg("REGION", ArgType::Enum)
            },
            ArgSpec {
                pattern: Some("v[0-9]+".into()),
                ..arg("VERSION", ArgType::String)
            },
        ]);
        let target = value("TARGET", "x");
        let cases = [
            (vec![], "args.TARGET", "is required"),
            (
                vec![target.clone(), value("NOPE", "1")],
                "args.NOPE",
                "unknown argument",
            ),
            (
                vec![target.clone(), target.clone()],
                "args.TARGET",
                "more than once",
            ),
            (
                vec![target.clone(), value("COUNT", "1.5")],
                "args.COUNT",
                "whole number",
            ),
            (
                vec![target.clone(), value("FORCE", "yes")],
                "args.FORCE",
                "true or false",
            ),
            (
                vec![target.clone(), value("REGION", "asia")],
                "args.REGION",
                "one of eu, us",
            ),
            // The pattern must match the whole value, not a part of it.
            (
                vec![target.clone(), value("VERSION", "v1-beta")],
                "args.VERSION",
                "pattern v[0-9]+",
            ),
        ];
        for (supplied, field, rule) in cases {
            let (got_field, message) = rejection(&proc, &supplied);
            assert_eq!(got_field, field, "{supplied:?}");
            assert!(message.contains(rule), "{supplied:?}: {message}");
        }
        assert!(validate_args(&proc, &[target, value("VERSION", "v12")]).is_ok());
    }

    #[test]
    fn unknown_arguments_list_what_the_proc_takes() {
        let (_, message) = rejection(&proc_with(vec![]), &[value("X", "1")]);
        assert!(message.contains("takes no arguments"), "{message}");
    }
}
