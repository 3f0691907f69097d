//! The book's configuration reference (`docs/src/reference/configuration.md`), generated from
//! `proctord`'s clap definitions so it cannot drift from what the server reads: every setting
//! with its variable, flag, default and description, by section, then every subcommand, then
//! the retired v2 settings (`config::retired`). The
//! test `the_configuration_reference_is_current` fails when the committed page differs.

use std::fmt::Write as _;

use clap::CommandFactory as _;

use crate::cli::Cli;

/// How to regenerate the page (also printed at its top).
pub const REGENERATE: &str =
    "PROCTOR_UPDATE_DOCS=1 cargo nextest run -p proctor-server the_configuration_reference";

use proctor_schema::reference::prose;

/// clap's own `--help` and `--version` (an argument `proctord` declares is documented whatever
/// its name).
fn is_builtin(arg: &clap::Arg) -> bool {
    matches!(
        arg.get_action(),
        clap::ArgAction::Help
            | clap::ArgAction::HelpShort
            | clap::ArgAction::HelpLong
            | clap::ArgAction::Version
    )
}

/// The settings of `command` (visible ones), by help heading, as Markdown tables.
fn settings(command: &clap::Command, out: &mut String) {
    let mut headings: Vec<String> = Vec::new();
    let mut rows: Vec<(String, String)> = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || is_builtin(arg) || arg.get_long().is_none() {
            continue;
        }
        let heading = arg.get_help_heading().unwrap_or("General").to_owned();
        if !headings.contains(&heading) {
            headings.push(heading.clone());
        }
        let env = arg.get_env().map_or("–".to_owned(), |env| {
            format!("`{}`", env.to_string_lossy())
        });
        let flag = format!("`--{}`", arg.get_long().unwrap_or(id));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() || defaults.iter().all(String::is_empty) {
            "–".to_owned()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|help| prose(&help.to_string()))
            .unwrap_or_default();
        rows.push((
            heading,
            format!("| {env} | {flag} | {default} | {help} |\n"),
        ));
    }
    for heading in headings {
        let _ = write!(
            out,
            "\n## {heading}\n\n| Environment variable | Flag | Default | Meaning |\n|---|---|---|---|\n"
        );
        for (_, row) in rows.iter().filter(|(of, _)| *of == heading) {
            out.push_str(row);
        }
    }
}

/// The subcommands of `command` under `prefix`, each with what it does and its own options.
fn commands(command: &clap::Command, prefix: &str, out: &mut String) {
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("{prefix} {}", sub.get_name());
        if sub.has_subcommands() {
            commands(sub, &name, out);
            continue;
        }
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|about| prose(&about.to_string()))
            .unwrap_or_default();
        let _ = write!(out, "\n### `{name}`\n\n{about}\n");
        let own: Vec<String> = sub
            .get_arguments()
            .filter(|arg| !arg.is_global_set() && !arg.is_hide_set())
            .filter(|arg| !is_builtin(arg))
            .map(|arg| {
                let spelled = match arg.get_long() {
                    Some(long) => format!("--{long}"),
                    None => format!("<{}>", arg.get_id().as_str().to_uppercase()),
                };
                let env = arg
                    .get_env()
                    .map(|env| format!(" (`{}`)", env.to_string_lossy()))
                    .unwrap_or_default();
                let help = arg
                    .get_help()
                    .map(|help| prose(&help.to_string()))
                    .unwrap_or_default();
                format!("- `{spelled}`{env}: {help}\n")
            })
            .collect();
        if !own.is_empty() {
            out.push('\n');
            for line in own {
                out.push_str(&line);
            }
        }
    }
}

/// The whole page.
pub fn configuration() -> String {
    // As declared (not `config::prepare`d, which drops variables that are set but blank here).
    let mut command = Cli::command();
    command.build();
    let mut out = format!(
        "# Configuration reference\n\nGenerated from the server's settings \
         (`server/src/config/`) by `{REGENERATE}`; do not edit.\n\nEvery setting is a flag or \
         an environment variable (the flag wins); an empty value counts as unset. Settings \
         apply to every subcommand.\n"
    );
    settings(&command, &mut out);
    out.push_str("\n## Commands\n");
    commands(&command, "proctord", &mut out);
    out.push_str(
        "\n## Retired v2 settings\n\nProctor v2 settings that no longer apply. A server started \
         with one set logs one WARN line for it, naming what replaces it (never its value).\n\n\
         | v2 setting | Instead |\n|---|---|\n",
    );
    for retired in crate::config::retired::RETIRED {
        let _ = writeln!(out, "| `{}` | {} |", retired.name, prose(retired.instead));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_configuration_reference_is_current() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/reference/configuration.md");
        let generated = super::configuration();
        let updating = std::env::var_os("PROCTOR_UPDATE_DOCS").is_some()
            && std::env::var("CI").map_or(true, |ci| ci != "true");
        if updating {
            std::fs::write(&path, &generated).expect("write the configuration reference");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/src/reference/configuration.md is out of date (a setting or command changed); \
             regenerate it with\n  {}\nand commit it",
            super::REGENERATE
        );
    }

    #[test]
    fn a_new_setting_changes_the_page() {
        use clap::CommandFactory as _;
        let mut grown = crate::cli::Cli::command().arg(
            clap::Arg::new("brand_new")
                .long("brand-new")
                .env("PROCTOR_BRAND_NEW")
                .help("A setting nobody documented yet"),
        );
        grown.build();
        let mut page = String::new();
        super::settings(&grown, &mut page);
        assert!(
            page.contains(
                "| `PROCTOR_BRAND_NEW` | `--brand-new` | – | A setting nobody documented yet |"
            ),
            "{page}"
        );
    }

    #[test]
    fn every_setting_is_in_the_reference() {
        let page = super::configuration();
        for expected in [
            "`PROCTOR_APP_PORT` | `--port` | `5001`",
            "`PROCTOR_PUBLIC_URL` | `--public-url`",
            "### `proctord import-v2`",
            "`--v2-redis-url` (`PROCTOR_V2_REDIS_URL`)",
            "### `proctord audit verify`",
        ] {
            assert!(page.contains(expected), "missing {expected:?} in\n{page}");
        }
    }
}
