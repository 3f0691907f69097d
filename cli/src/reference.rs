//! The book's CLI reference (`docs/src/reference/cli.md`), generated from the clap definitions
//! so it cannot drift: every command with what it does, its arguments and options, and the
//! global options. The test `the_cli_reference_is_current` fails when the committed page
//! differs from what this gives now.

use std::fmt::Write as _;

/// How to regenerate the page (also printed at its top).
pub const REGENERATE: &str =
    "PROCTOR_UPDATE_DOCS=1 cargo nextest run -p proctor-cli the_cli_reference";

/// `text` fit for one Markdown line: one line, and a `<` outside code spans written `&lt;` so
/// that `<name>` stays text rather than an unclosed HTML tag.
fn line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 {
                part.replace('<', "&lt;")
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// clap's own `--help` and `--version` (an argument the CLI declares, such as `procs rollback`'s
/// `<VERSION>`, is documented whatever its name).
fn is_builtin(arg: &clap::Arg) -> bool {
    matches!(
        arg.get_action(),
        clap::ArgAction::Help
            | clap::ArgAction::HelpShort
            | clap::ArgAction::HelpLong
            | clap::ArgAction::Version
    )
}

fn options<'a>(args: impl Iterator<Item = &'a clap::Arg>, out: &mut String) {
    let mut any = false;
    for arg in args {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || is_builtin(arg) {
            continue;
        }
        any = true;
        let spelled = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => format!("-{short}, --{long}"),
            (None, Some(long)) => format!("--{long}"),
            (Some(short), None) => format!("-{short}"),
            (None, None) => format!("<{}>", id.to_uppercase()),
        };
        let env = arg
            .get_env()
            .map(|env| format!(" (`{}`)", env.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .filter(|value| !value.is_empty())
            .collect();
        // A switch's default (off) says nothing.
        let default = if defaults.is_empty() || !arg.get_action().takes_values() {
            String::new()
        } else {
            format!(" (default: `{}`)", defaults.join(","))
        };
        let help = arg
            .get_help()
            .map(|help| line(&help.to_string()))
            .unwrap_or_default();
        let _ = writeln!(out, "- `{spelled}`{env}: {help}{default}");
    }
    if any {
        out.push('\n');
    }
}

fn commands(command: &clap::Command, path: &str, out: &mut String) {
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("{path} {}", sub.get_name());
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|about| line(&about.to_string()))
            .unwrap_or_default();
        let aliases: Vec<&str> = sub.get_visible_aliases().collect();
        let _ = write!(out, "### `{name}`\n\n{about}\n\n");
        if !aliases.is_empty() {
            let _ = write!(out, "Also: `{}`.\n\n", aliases.join("`, `"));
        }
        options(sub.get_arguments().filter(|arg| !arg.is_global_set()), out);
        commands(sub, &name, out);
    }
}

/// The whole page for `command` (the CLI's, built).
pub fn cli(command: &clap::Command) -> String {
    let mut out = format!(
        "# CLI reference\n\nGenerated from the CLI's commands (`cli/src/`) by `{REGENERATE}`; \
         do not edit. `proctor <command> --help` says the same.\n\n## Global options\n\n"
    );
    options(command.get_arguments(), &mut out);
    out.push_str("## Commands\n\n");
    commands(command, "proctor", &mut out);
    out
}
