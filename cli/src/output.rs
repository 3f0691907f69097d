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

/// The Go CLI's two-column line (`%-40s %s`, without its trailing padding). Both sides come
/// from the server (names, argument values, reasons), so terminal control sequences are
/// removed from them.
pub fn pair(left: &str, right: impl std::fmt::Display) -> String {
    let (left, right) = (strip_controls(left), strip_controls(&right.to_string()));
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
        .add_rows(rows.into_iter().map(|row| {
            row.iter()
                .map(|cell| strip_controls(cell))
                .collect::<Vec<_>>()
        }));
    table
        .lines()
        .map(|line| {
            let line = line.as_str();
            line.strip_prefix(' ').unwrap_or(line).trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a log line is printed: as it came (`--raw`, or when stdout is not a terminal), or with
/// every terminal control sequence removed, so a run's output cannot move the cursor, change
/// the title, write to the clipboard (OSC 52), fake a prompt or hide text on the operator's
/// terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinePrinter {
    sanitize: bool,
}

impl LinePrinter {
    /// Sanitizes unless `raw` or stdout is not a terminal.
    pub fn for_stdout(raw: bool) -> Self {
        use std::io::IsTerminal as _;
        Self {
            sanitize: !raw && std::io::stdout().is_terminal(),
        }
    }

    /// Prints one line.
    pub fn print(&self, line: &str) {
        if self.sanitize {
            println!("{}", strip_controls(line));
        } else {
            println!("{line}");
        }
    }
}

/// `text` without terminal control sequences: ESC sequences (CSI `ESC [ … final`, OSC
/// `ESC ] … BEL|ESC \`, DCS/SOS/PM/APC `ESC P|X|^|_ … ESC \`, two-byte escapes), their 8-bit
/// C1 forms, and every other control character but tab.
pub fn strip_controls(text: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Text,
        Escape,
        Csi,
        /// OSC, DCS, SOS, PM, APC: until BEL or ST (`ESC \` or U+009C).
        String,
        StringEscape,
    }
    let mut out = String::with_capacity(text.len());
    let mut state = State::Text;
    for c in text.chars() {
        state = match state {
            State::Text => match c {
                '\u{1b}' => State::Escape,
                '\u{9b}' => State::Csi,
                '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => State::String,
                '\t' => {
                    out.push(c);
                    State::Text
                }
                c if c.is_control() => State::Text,
                c => {
                    out.push(c);
                    State::Text
                }
            },
            State::Escape => match c {
                '[' => State::Csi,
                ']' | 'P' | 'X' | '^' | '_' => State::String,
                // Two-byte escapes (and intermediates): the next byte ends them.
                ' '..='/' => State::Escape,
                _ => State::Text,
            },
            State::Csi => match c {
                '\u{40}'..='\u{7e}' => State::Text,
                _ => State::Csi,
            },
            State::String => match c {
                '\u{7}' | '\u{9c}' => State::Text,
                '\u{1b}' => State::StringEscape,
                _ => State::String,
            },
            State::StringEscape => match c {
                '\\' => State::Text,
                _ => State::String,
            },
        };
    }
    out
}

#[cfg(test)]
mod line_tests {
    use super::strip_controls;

    #[test]
    fn control_sequences_are_removed_and_text_kept() {
        assert_eq!(strip_controls("plain\ttext"), "plain\ttext");
        assert_eq!(strip_controls("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(strip_controls("a\u{1b}[2J\u{1b}[Hb"), "ab");
        assert_eq!(
            strip_controls("x\u{1b}]0;evil title\u{7}y"),
            "xy",
            "OSC ended by BEL"
        );
        assert_eq!(
            strip_controls("x\u{1b}]52;c;cm0gLXJmIH4=\u{1b}\\y"),
            "xy",
            "clipboard write ended by ST"
        );
        assert_eq!(strip_controls("x\u{1b}Pq#0;2;0;0;0\u{1b}\\y"), "xy", "DCS");
        assert_eq!(strip_controls("bell\u{7}!"), "bell!");
        assert_eq!(strip_controls("fake\rprompt$ "), "fakeprompt$ ");
        assert_eq!(strip_controls("\u{9b}31mc1\u{9b}0m"), "c1");
        assert_eq!(strip_controls("back\u{8}\u{8}space"), "backspace");
        assert_eq!(strip_controls("\u{1b}(Bcharset"), "charset");
        assert_eq!(strip_controls("ünïcødé ✓"), "ünïcødé ✓");
    }

    #[test]
    fn pairs_and_tables_carry_no_control_sequences() {
        let line = super::pair("Reason", "exit \u{1b}]52;c;ZXZpbA==\u{7}1");
        assert_eq!(line, format!("{:<40} exit 1", "Reason"));
        let table = super::table(&["ARG"], vec![vec!["a\u{1b}[2Jb".to_owned()]]);
        assert!(table.ends_with("ab"), "{table:?}");
    }
}
