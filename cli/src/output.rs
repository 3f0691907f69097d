//! How results are printed: `--output table` (the default; the Go CLI's layout where people
//! read it), `json` or `yaml`; colour only on a terminal (and never with `NO_COLOR`).

use anstyle::{AnsiColor, Style};
use clap::ValueEnum;
use serde::Serialize;

use crate::error::CliError;

/// The `--output` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable columns.
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// Prints `value` as JSON or YAML and returns `true`, or returns `false` for `table`.
pub fn structured(format: Format, value: &impl Serialize) -> Result<bool, CliError> {
    let text = match format {
        Format::Table => return Ok(false),
        Format::Json => {
            serde_json::to_string_pretty(value).map_err(|e| CliError::Io(e.to_string()))?
        }
        Format::Yaml => serde_yaml_ng::to_string(value).map_err(|e| CliError::Io(e.to_string()))?,
    };
    anstream::println!("{}", text.trim_end());
    Ok(true)
}

/// The Go CLI's two-column line (`%-40s %s`, without its trailing padding).
pub fn pair(left: &str, right: impl std::fmt::Display) -> String {
    format!("{left:<40} {right}").trim_end().to_owned()
}

fn paint(color: AnsiColor, text: &str) -> String {
    let style = Style::new().fg_color(Some(color.into()));
    format!("{style}{text}{style:#}")
}

/// Green text (successes, headings the Go CLI printed green).
pub fn green(text: &str) -> String {
    paint(AnsiColor::Green, text)
}

/// Red text (failures).
pub fn red(text: &str) -> String {
    paint(AnsiColor::Red, text)
}

/// Magenta text (section headings).
pub fn magenta(text: &str) -> String {
    paint(AnsiColor::Magenta, text)
}

/// Yellow text (warnings).
pub fn yellow(text: &str) -> String {
    paint(AnsiColor::Yellow, text)
}

/// Aligned columns under a header, without borders (easy to read and to `grep`).
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(header.to_vec())
        .add_rows(rows);
    table
        .lines()
        .map(|line| {
            let line = line.as_str();
            line.strip_prefix(' ').unwrap_or(line).trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
