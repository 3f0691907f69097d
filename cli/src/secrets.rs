//! `secrets set PROC KEY`, `secrets list PROC` and `secrets delete PROC KEY`. A value is read from standard input (when
//! it is not a terminal) or from a prompt that does not echo; it is never printed.

use std::io::{IsTerminal, Read};

use clap::Subcommand;

use crate::api::{
    Api, DeleteSecret, ListSecrets, SetSecret, delete_secret, list_secrets, set_secret,
};
use crate::error::CliError;
use crate::output::{Out, age, col, green, wide};

/// `proctor secrets …`.
#[derive(Subcommand, Debug)]
pub enum SecretsAction {
    /// Set a secret value (administrators); the value comes from stdin or a hidden prompt
    #[command(after_help = "Examples:\n  proctor secrets set deploy API_TOKEN        (prompts, \
                            input hidden)\n  vault read -field=token … | proctor secrets set \
                            deploy API_TOKEN")]
    Set {
        /// The proc.
        #[arg(add = crate::complete::procs())]
        proc: String,
        /// The secret's name (as the proc declares it).
        key: String,
    },
    /// List a proc's secrets: names, whether each is set, when (never values)
    List {
        /// The proc.
        #[arg(add = crate::complete::procs())]
        proc: String,
    },
    /// Remove a secret's value (administrators); runs of the proc fail until it is set again
    Delete {
        /// The proc.
        #[arg(add = crate::complete::procs())]
        proc: String,
        /// The secret's name.
        key: String,
    },
}

/// Reads the value: all of stdin (one trailing newline removed) or a hidden prompt.
fn read_value(key: &str) -> Result<String, CliError> {
    let mut value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value for {key} (input hidden): "))
            .map_err(|e| CliError::Io(format!("cannot read the value: {e}")))?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Io(format!("cannot read the value from stdin: {e}")))?;
        text
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(CliError::Usage(format!(
            "no value given for {key} (pipe it in or type it at the prompt)"
        )));
    }
    Ok(value)
}

/// `proctor secrets …`.
pub async fn act(api: &Api, out: &Out, action: SecretsAction) -> Result<(), CliError> {
    match action {
        SecretsAction::Set { proc, key } => {
            let value = read_value(&key)?;
            let infos = api
                .run::<SetSecret>(set_secret::Variables {
                    proc: proc.clone(),
                    secrets: vec![set_secret::SecretValueInput {
                        key: key.clone(),
                        value,
                    }],
                })
                .await?
                .set_secrets;
            out.one(
                &infos,
                |_| format!("secret/{proc}/{key}"),
                |_| anstream::println!("{}", green(&format!("Secret {key} of {proc} set."))),
            )
        }
        SecretsAction::List { proc } => {
            let found = api
                .run::<ListSecrets>(list_secrets::Variables { proc: proc.clone() })
                .await?
                .proc
                .ok_or_else(|| CliError::Server {
                    code: Some("NOT_FOUND".into()),
                    message: format!("proc {proc:?} not found"),
                    field: None,
                })?;
            type Row = list_secrets::ListSecretsProcSecrets;
            let columns: Vec<crate::output::Column<Row>> = vec![
                col("KEY", |s: &Row| s.key.clone()),
                col("SET", |s: &Row| {
                    if s.is_set { "yes" } else { "NO" }.to_owned()
                }),
                col("UPDATED", |s: &Row| {
                    s.updated_at.clone().unwrap_or_default()
                }),
                col("DESCRIPTION", |s: &Row| {
                    s.description.clone().unwrap_or_default()
                }),
                wide("AGE", |s: &Row| {
                    s.updated_at.as_deref().map(age).unwrap_or_default()
                }),
            ];
            out.list(
                &found.secrets,
                &columns,
                |s| format!("secret/{proc}/{}", s.key),
                "The proc declares no secrets",
            )
        }
        SecretsAction::Delete { proc, key } => {
            let removed = api
                .run::<DeleteSecret>(delete_secret::Variables {
                    proc: proc.clone(),
                    key: key.clone(),
                })
                .await?
                .delete_secret;
            let message = if removed {
                format!("Secret {key} of {proc} deleted.")
            } else {
                format!("Secret {key} of {proc} had no value; nothing to delete.")
            };
            out.one(
                &serde_json::json!({ "proc": proc, "key": key, "deleted": removed }),
                |_| format!("secret/{proc}/{key}"),
                |_| anstream::println!("{}", green(&message)),
            )
        }
    }
}
