//! Procs: `procs list|describe|template|apply|export|delete|history|rollback`, and the v2
//! spellings `list`, `describe` and `template`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;

use crate::api::{
    Api, ApplyProcFile, DeleteProc, DescribeProc, ExportProc, ListProcs, ProcHistory, RollbackProc,
    apply_proc_file, delete_proc, describe_proc, export_proc, list_procs, proc_history,
    rollback_proc,
};
use crate::error::CliError;
use crate::output::{Out, age, col, green, magenta, pair, wide};

/// `proctor procs …`.
#[derive(Subcommand, Debug)]
pub enum ProcsAction {
    /// List the procs you may run (v2: `list`)
    List,
    /// Show a proc: arguments, secrets, groups (v2: `describe`)
    Describe {
        /// The proc.
        #[arg(add = crate::complete::procs())]
        proc: String,
    },
    /// Write a YAML file of a proc's arguments, for `runs start -f` (v2: `template`)
    Template {
        /// The proc.
        #[arg(add = crate::complete::procs())]
        proc: String,
        /// The YAML file to write.
        file: PathBuf,
    },
    /// Create or update procs from YAML proc files (administrators)
    Apply {
        /// Proc files (repeat for several).
        #[arg(short, long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a proc as a YAML proc file
    Export {
        /// The proc.
        #[arg(add = crate::complete::procs())]
        proc: String,
    },
    /// Delete a proc (administrators); its runs stay
    Delete {
        /// The proc.
        #[arg(add = crate::complete::procs())]
        proc: String,
    },
    /// A proc's versions, newest first
    History {
        /// The proc.
        #[arg(add = crate::complete::procs())]
        proc: String,
        /// How many versions to show (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Make an earlier version current again, as a new version (administrators)
    Rollback {
        /// The proc.
        #[arg(add = crate::complete::procs())]
        proc: String,
        /// The version to restore (see `procs history`).
        version: i64,
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

/// `proctor procs list`: a table with versions and ages.
async fn list_modern(api: &Api, out: &Out) -> Result<(), CliError> {
    let procs = api.run::<ListProcs>(list_procs::Variables {}).await?.procs;
    type Row = list_procs::ListProcsProcs;
    let columns: Vec<crate::output::Column<Row>> = vec![
        col("NAME", |p: &Row| p.name.clone()),
        col("VERSION", |p: &Row| p.version.to_string()),
        col("ARGS", |p: &Row| {
            p.args
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        }),
        col("AGE", |p: &Row| age(&p.updated_at)),
        col("DESCRIPTION", |p: &Row| {
            p.description.clone().unwrap_or_default()
        }),
        wide("GROUPS", |p: &Row| p.authorized_groups.join(",")),
        wide("IMAGE/COMMAND", |p: &Row| match (&p.image, &p.command) {
            (Some(image), _) => image.clone(),
            (None, Some(command)) => command.join(" "),
            (None, None) => String::new(),
        }),
    ];
    out.list(
        &procs,
        &columns,
        |p| format!("proc/{}", p.name),
        "No procs found",
    )
}

/// `proctor list`.
pub async fn list(api: &Api, out: &Out) -> Result<(), CliError> {
    let procs = api.run::<ListProcs>(list_procs::Variables {}).await?.procs;
    if out.shown(&procs, |ps| {
        ps.iter().map(|p| format!("proc/{}", p.name)).collect()
    })? {
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
pub async fn describe(api: &Api, out: &Out, proc: &str) -> Result<(), CliError> {
    let found = find(api, proc).await?;
    if out.format == crate::output::Format::Name {
        anstream::println!("proc/{}", found.name);
        return Ok(());
    }
    if out.structured(&found)? {
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
    let mut example = format!("proctor execute {proc}");
    for arg in &found.args {
        let kind = enum_name(&arg.type_).to_lowercase();
        if arg.required {
            example.push_str(&format!(" {}=<{kind}>", arg.name));
        } else {
            example.push_str(&format!(" [{}=<{kind}>]", arg.name));
        }
    }
    // Names come from the server: their control characters are dropped, the layout's
    // newlines stay.
    let example = crate::output::strip_controls(&example);
    let proc = crate::output::strip_controls(proc);
    anstream::println!("{}", green(&format!("\nTo {proc}, run:\n{example}")));
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
            "\nTo {proc}, run:\nproctor execute {proc} -f {}",
            file.display()
        ))
    );
    Ok(())
}

/// `proctor procs …`.
pub async fn act(api: &Api, out: &Out, action: ProcsAction) -> Result<(), CliError> {
    match action {
        ProcsAction::List => list_modern(api, out).await,
        ProcsAction::Describe { proc } => describe(api, out, &proc).await,
        ProcsAction::Template { proc, file } => template(api, &proc, &file).await,
        ProcsAction::Delete { proc } => {
            let deleted = api
                .run::<DeleteProc>(delete_proc::Variables { name: proc.clone() })
                .await?
                .delete_proc;
            if !deleted {
                return Err(not_supported(&proc));
            }
            out.one(
                &serde_json::json!({ "name": proc, "deleted": true }),
                |_| format!("proc/{proc}"),
                |_| anstream::println!("{}", green(&format!("Deleted proc {proc}"))),
            )
        }
        ProcsAction::History { proc, limit } => {
            if !(1..=100).contains(&limit) {
                return Err(CliError::Usage("--limit must be between 1 and 100".into()));
            }
            let found = api
                .run::<ProcHistory>(proc_history::Variables {
                    name: proc.clone(),
                    first: Some(limit),
                })
                .await?
                .proc
                .ok_or_else(|| not_supported(&proc))?;
            type Row = proc_history::ProcHistoryProcVersions;
            let current = found.version;
            let columns: Vec<crate::output::Column<Row>> = vec![
                col("VERSION", move |v: &Row| {
                    if v.number == current {
                        format!("{} (current)", v.number)
                    } else {
                        v.number.to_string()
                    }
                }),
                col("CHANGED BY", |v: &Row| {
                    v.changed_by.clone().unwrap_or_default()
                }),
                col("AGE", |v: &Row| age(&v.changed_at)),
                col("IMAGE/COMMAND", |v: &Row| match (&v.image, &v.command) {
                    (Some(image), _) => image.clone(),
                    (None, Some(command)) => command.join(" "),
                    (None, None) => String::new(),
                }),
                wide("CHANGED AT", |v: &Row| v.changed_at.clone()),
            ];
            let name = found.name.clone();
            out.list(
                &found.versions,
                &columns,
                |v| format!("proc/{name}@{}", v.number),
                "No versions found",
            )
        }
        ProcsAction::Rollback { proc, version } => {
            let restored = api
                .run::<RollbackProc>(rollback_proc::Variables {
                    name: proc.clone(),
                    version,
                })
                .await?
                .rollback_proc;
            out.one(
                &restored,
                |p| format!("proc/{}", p.name),
                |p| {
                    anstream::println!(
                        "{}",
                        green(&format!(
                            "Rolled {} back to version {version}: it is now version {}",
                            p.name, p.version
                        ))
                    );
                },
            )
        }
        ProcsAction::Apply { files } => {
            // JSON, YAML and jsonpath get one document: an array of what was applied.
            use crate::output::Format;
            let per_file = matches!(out.format, Format::Table | Format::Wide | Format::Name);
            let mut applied_all = Vec::new();
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
                if !per_file {
                    applied_all.push(applied);
                    continue;
                }
                out.one(
                    &applied,
                    |p| format!("proc/{}", p.name),
                    |p| {
                        anstream::println!(
                            "{}",
                            green(&crate::output::strip_controls(&format!(
                                "Applied proc {} (version {}) from {}",
                                p.name,
                                p.version,
                                file.display()
                            )))
                        );
                    },
                )?;
            }
            if !per_file {
                out.structured(&applied_all)?;
            }
            Ok(())
        }
        ProcsAction::Export { proc } => {
            if out.format != crate::output::Format::Table {
                return Err(CliError::Usage(
                    "procs export prints a YAML proc file; -o does not apply (use `procs \
                     describe -o json|yaml` for the proc as data)"
                        .into(),
                ));
            }
            let found = api
                .run::<ExportProc>(export_proc::Variables { name: proc.clone() })
                .await?
                .proc
                .ok_or_else(|| not_supported(&proc))?;
            // serde_yaml escapes control characters inside strings; what is left is layout.
            print!("{}", crate::output::strip_controls_keep_lines(&found.yaml));
            Ok(())
        }
    }
}
