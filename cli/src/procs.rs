//! `list`, `describe`, `template`, `procs apply` and `procs export`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;

use crate::api::{
    Api, ApplyProcFile, DescribeProc, ExportProc, ListProcs, apply_proc_file, describe_proc,
    export_proc, list_procs,
};
use crate::error::CliError;
use crate::output::{self, Format, green, magenta, pair};

/// `proctor procs …`.
#[derive(Subcommand, Debug)]
pub enum ProcsAction {
    /// Create or update procs from YAML proc files (administrators)
    Apply {
        /// Proc files (repeat for several).
        #[arg(short, long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a proc as a YAML proc file
    Export {
        /// The proc.
        proc: String,
    },
}

/// The GraphQL name of an enum value.
pub fn enum_name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn not_supported(proc: &str) -> CliError {
    CliError::Usage(format!(
        "Proctor doesn't support Proc `{proc}`\nRun `proctor list` to view supported Procs"
    ))
}

/// `proctor list`.
pub async fn list(api: &Api, format: Format) -> Result<(), CliError> {
    let procs = api.run::<ListProcs>(list_procs::Variables {}).await?.procs;
    if output::structured(format, &procs)? {
        return Ok(());
    }
    anstream::println!("{}", green("List of Procs:\n"));
    for proc in &procs {
        anstream::println!(
            "{}",
            pair(&proc.name, proc.description.as_deref().unwrap_or(""))
        );
    }
    anstream::println!(
        "{}",
        green("\nFor detailed information of any proc, run:\nproctor describe <proc_name>")
    );
    Ok(())
}

async fn find(api: &Api, proc: &str) -> Result<describe_proc::DescribeProcProc, CliError> {
    api.run::<DescribeProc>(describe_proc::Variables {
        name: proc.to_owned(),
    })
    .await?
    .proc
    .ok_or_else(|| not_supported(proc))
}

/// `proctor describe PROC`.
pub async fn describe(api: &Api, format: Format, proc: &str) -> Result<(), CliError> {
    let found = find(api, proc).await?;
    if output::structured(format, &found)? {
        return Ok(());
    }
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    anstream::println!("{}", pair("Description", text(&found.description)));
    anstream::println!("{}", pair("Contributors", text(&found.contributors)));
    anstream::println!("{}", pair("Organization", text(&found.organization)));
    anstream::println!(
        "{:<40} [{}]",
        "Authorized Groups",
        found.authorized_groups.join(", ")
    );
    if let Some(image) = &found.image {
        anstream::println!("{}", pair("Image", image));
    }
    if let Some(command) = &found.command {
        anstream::println!("{}", pair("Command", command.join(" ")));
    }
    if let Some(timeout) = found.timeout_seconds {
        anstream::println!("{}", pair("Timeout", format!("{timeout}s")));
    }
    anstream::println!("{}", magenta("\nArgs"));
    for arg in &found.args {
        let mut rules = vec![enum_name(&arg.type_).to_lowercase()];
        if arg.required {
            rules.push("required".into());
        }
        if let Some(default) = &arg.default {
            rules.push(format!("default {default}"));
        }
        if !arg.values.is_empty() {
            rules.push(format!("one of {}", arg.values.join("|")));
        }
        if let Some(pattern) = &arg.pattern {
            rules.push(format!("matching {pattern}"));
        }
        anstream::println!(
            "{}",
            pair(
                &arg.name,
                format!("{} ({})", text(&arg.description), rules.join(", "))
            )
        );
    }
    if !found.secrets.is_empty() {
        anstream::println!("{}", magenta("\nSecrets"));
        for secret in &found.secrets {
            let state = if secret.is_set { "set" } else { "NOT SET" };
            anstream::println!(
                "{}",
                pair(
                    &secret.key,
                    format!("{} ({state})", text(&secret.description))
                )
            );
        }
    }
    anstream::println!(
        "{}",
        green(&format!(
            "\nTo {proc}, run:\nproctor execute {proc} ARG_ONE=foo ARG_TWO=bar"
        ))
    );
    Ok(())
}

/// `proctor template PROC FILE`: a YAML file with one commented line per argument, for
/// `proctor execute PROC -f FILE`.
pub async fn template(api: &Api, proc: &str, file: &Path) -> Result<(), CliError> {
    let found = find(api, proc).await?;
    anstream::println!("{}", magenta("\nArgs"));
    let mut content = String::new();
    for arg in &found.args {
        let description = arg.description.clone().unwrap_or_default();
        anstream::println!("{}", pair(&arg.name, &description));
        content.push_str(&format!("# {description}\n{}:", arg.name));
        if let Some(default) = &arg.default {
            let quoted = serde_yaml_ng::to_string(default).unwrap_or_default();
            content.push(' ');
            content.push_str(quoted.trim());
        }
        content.push('\n');
    }
    std::fs::write(file, content)
        .map_err(|e| CliError::Io(format!("Error writing template file: {e}")))?;
    anstream::println!(
        "{}",
        green(&format!(
            "\nTo {proc}, run:\nproctor execute {proc} -f {} ARG_ONE=foo ARG_TWO=bar",
            file.display()
        ))
    );
    Ok(())
}

/// `proctor procs …`.
pub async fn act(api: &Api, action: ProcsAction) -> Result<(), CliError> {
    match action {
        ProcsAction::Apply { files } => {
            for file in files {
                let content = std::fs::read_to_string(&file)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
                let applied = api
                    .run::<ApplyProcFile>(apply_proc_file::Variables { content })
                    .await
                    .map_err(|error| match error {
                        CliError::Server {
                            code,
                            message,
                            field,
                        } => CliError::Server {
                            code,
                            message: format!("{}: {message}", file.display()),
                            field,
                        },
                        other => other,
                    })?
                    .apply_proc_file;
                anstream::println!(
                    "{}",
                    green(&format!(
                        "Applied proc {} (version {}) from {}",
                        applied.name,
                        applied.version,
                        file.display()
                    ))
                );
            }
            Ok(())
        }
        ProcsAction::Export { proc } => {
            let found = api
                .run::<ExportProc>(export_proc::Variables { name: proc.clone() })
                .await?
                .proc
                .ok_or_else(|| not_supported(&proc))?;
            print!("{}", found.yaml);
            Ok(())
        }
    }
}
