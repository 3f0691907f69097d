//! How results are printed: `-o table` (the default; the Go CLI's layout where people read
//! it), `wide` (more columns), `json` and `yaml` (a list is a plain array of its items), `name`
//! (`kind/id` per line, for `xargs`) or `jsonpath=EXPR` (RFC 9535 `JSONPath`, or `kubectl`'s
//! `{.field}` form; one match per line); `--no-headers` drops table headers. Colour only on a
//! terminal (and never with `NO_COLOR`).

use std::str::FromStr;

use anstyle::{AnsiColor, Style};
use chrono::{DateTime, Utc};
use jsonpath_rust::JsonPath as _;
use serde::Serialize;
use serde_json::Value;

use crate::error::CliError;

/// The `--output` choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable columns.
    Table,
    /// Human-readable columns, more of them.
    Wide,
    /// One JSON document (a list is an array of its items).
    Json,
    /// One YAML document.
    Yaml,
    /// `kind/id` per item.
    Name,
    /// The matches of a `JSONPath` expression, one per line.
    JsonPath(String),
}

/// The values `--output` takes, for completion.
pub const FORMATS: &[&str] = &["table", "wide", "json", "yaml", "name", "jsonpath="];

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "table" => Ok(Self::Table),
            "wide" => Ok(Self::Wide),
            "json" => Ok(Self::Json),
            "yaml" => Ok(Self::Yaml),
            "name" => Ok(Self::Name),
            other => match other.strip_prefix("jsonpath=") {
                Some(expression) => {
                    let path = jsonpath(expression);
                    // Checked now, so a typo fails before any server call.
                    Value::Null
                        .query(&path)
                        .map_err(|e| format!("{expression:?} is not a JSONPath expression: {e}"))?;
                    Ok(Self::JsonPath(path))
                }
                None => Err(format!(
                    "{other:?} is not an output format; use one of table, wide, json, yaml, \
                     name, jsonpath=EXPR"
                )),
            },
        }
    }
}

/// kubectl's `{.a.b}` and `{[0].id}` as RFC 9535 `$.a.b` and `$[0].id`; `$…` stays.
fn jsonpath(expression: &str) -> String {
    let trimmed = expression.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|e| e.strip_suffix('}'))
        .unwrap_or(trimmed);
    if inner.starts_with('$') {
        inner.to_owned()
    } else if inner.starts_with('.') || inner.starts_with('[') {
        format!("${inner}")
    } else {
        format!("$.{inner}")
    }
}

/// `--output` and `--no-headers` together.
#[derive(Clone, Debug)]
pub struct Out {
    /// The format.
    pub format: Format,
    /// Leave table headers out.
    pub no_headers: bool,
}

impl Out {
    /// Whether the output is for people (table or wide) rather than for programs.
    pub fn human(&self) -> bool {
        matches!(self.format, Format::Table | Format::Wide)
    }

    /// Prints `value` as JSON, YAML or the `JSONPath`'s matches and returns `true`; returns
    /// `false` for table, wide and name, which the caller prints.
    pub fn structured(&self, value: &impl Serialize) -> Result<bool, CliError> {
        let text = match &self.format {
            Format::Table | Format::Wide | Format::Name => return Ok(false),
            Format::Json => {
                serde_json::to_string_pretty(value).map_err(|e| CliError::Io(e.to_string()))?
            }
            Format::Yaml => {
                serde_yaml_ng::to_string(value).map_err(|e| CliError::Io(e.to_string()))?
            }
            Format::JsonPath(path) => {
                let value = serde_json::to_value(value).map_err(|e| CliError::Io(e.to_string()))?;
                let found = value
                    .query(path)
                    .map_err(|e| CliError::Usage(format!("jsonpath {path}: {e}")))?;
                found
                    .into_iter()
                    .map(|v| match v {
                        Value::String(text) => strip_controls(text),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        if !text.is_empty() {
            anstream::println!("{}", text.trim_end());
        }
        Ok(true)
    }

    /// For output meant for programs: `name(value)` lines for `-o name` (one per item when
    /// `value` is a list the caller names item by item), else as [`Out::structured`]; returns
    /// `false` when the caller prints for people.
    pub fn shown<T: Serialize>(
        &self,
        value: &T,
        names: impl FnOnce(&T) -> Vec<String>,
    ) -> Result<bool, CliError> {
        if self.format == Format::Name {
            for name in names(value) {
                anstream::println!("{}", strip_controls(&name));
            }
            return Ok(true);
        }
        self.structured(value)
    }

    /// Prints one object: structured as [`Out::structured`], `name(value)` for `-o name`,
    /// else through `human`.
    pub fn one<T: Serialize>(
        &self,
        value: &T,
        name: impl Fn(&T) -> String,
        human: impl FnOnce(&T),
    ) -> Result<(), CliError> {
        if self.format == Format::Name {
            anstream::println!("{}", strip_controls(&name(value)));
        } else if !self.structured(value)? {
            human(value);
        }
        Ok(())
    }

    /// Prints a list: an array for JSON, YAML and `JSONPath`, `name(item)` lines for `-o name`,
    /// else a table of `columns` (the wide ones only with `-o wide`), or `empty` on stderr
    /// when there are none.
    pub fn list<T: Serialize>(
        &self,
        items: &[T],
        columns: &[Column<T>],
        name: impl Fn(&T) -> String,
        empty: &str,
    ) -> Result<(), CliError> {
        if self.format == Format::Name {
            for item in items {
                anstream::println!("{}", strip_controls(&name(item)));
            }
            return Ok(());
        }
        if self.structured(&items)? {
            return Ok(());
        }
        if items.is_empty() {
            anstream::eprintln!("{empty}");
            return Ok(());
        }
        let wide = self.format == Format::Wide;
        let shown: Vec<&Column<T>> = columns.iter().filter(|c| wide || !c.wide).collect();
        let header: Vec<&str> = shown.iter().map(|c| c.header).collect();
        let rows = items
            .iter()
            .map(|item| shown.iter().map(|c| (c.cell)(item)).collect())
            .collect();
        let text = table(&header, rows);
        let text = if self.no_headers {
            text.split_once('\n').map_or("", |(_, rest)| rest)
        } else {
            &text
        };
        anstream::println!("{text}");
        Ok(())
    }
}

/// What one table cell shows for an item.
type Cell<T> = Box<dyn Fn(&T) -> String>;

/// A table column: its header, whether only `-o wide` shows it, and its cell.
pub struct Column<T> {
    header: &'static str,
    wide: bool,
    cell: Cell<T>,
}

/// A column shown in both `table` and `wide`.
pub fn col<T>(header: &'static str, cell: impl Fn(&T) -> String + 'static) -> Column<T> {
    Column {
        header,
        wide: false,
        cell: Box::new(cell),
    }
}

/// A column shown only with `-o wide`.
pub fn wide<T>(header: &'static str, cell: impl Fn(&T) -> String + 'static) -> Column<T> {
    Column {
        header,
        wide: true,
        cell: Box::new(cell),
    }
}

/// Parses a server time (RFC 3339).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// kubectl's AGE: how long ago `time` was, in its largest one or two units (`45s`, `3m12s`,
/// `5h`, `12d`); empty when `time` is not a time.
pub fn age(time: &str) -> String {
    parse_time(time).map_or_else(String::new, |t| {
        short_span((Utc::now() - t).num_seconds().max(0))
    })
}

fn short_span(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A run's DURATION: from `started` to `finished`, or to now while it runs; empty before it
/// started.
pub fn duration(started: Option<&str>, finished: Option<&str>) -> String {
    let Some(started) = started.and_then(parse_time) else {
        return String::new();
    };
    let end = finished.and_then(parse_time).unwrap_or_else(Utc::now);
    seconds_text((end - started).num_milliseconds().max(0) as f64 / 1000.0)
}

/// `0.4s`, `12.0s`, `3m04s`, `2h05m`.
pub fn seconds_text(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        // Whole seconds: the fraction is not worth showing past a minute.
        let whole = seconds as u64;
        if whole < 3600 {
            format!("{}m{:02}s", whole / 60, whole % 60)
        } else {
            format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
        }
    }
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

/// [`strip_controls`] line by line: the newlines of a multi-line text (an error with its
/// hint, an exported YAML file) stay.
pub fn strip_controls_keep_lines(text: &str) -> String {
    text.split('\n')
        .map(strip_controls)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod line_tests {
    use super::{strip_controls, strip_controls_keep_lines};

    #[test]
    fn multi_line_text_keeps_its_lines_and_loses_its_escapes() {
        assert_eq!(
            strip_controls_keep_lines("Error: \u{1b}[2Jbad\nhint\u{7}\n"),
            "Error: bad\nhint\n"
        );
    }

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

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn output_formats_parse_and_name_the_valid_ones() {
        assert_eq!("wide".parse::<Format>().unwrap(), Format::Wide);
        assert_eq!(
            "jsonpath={.items[0].id}".parse::<Format>().unwrap(),
            Format::JsonPath("$.items[0].id".into())
        );
        assert_eq!(
            "jsonpath=$[*].name".parse::<Format>().unwrap(),
            Format::JsonPath("$[*].name".into())
        );
        assert_eq!(
            "jsonpath=id".parse::<Format>().unwrap(),
            Format::JsonPath("$.id".into())
        );
        let error = "xml".parse::<Format>().unwrap_err();
        assert!(
            error.contains("table, wide, json, yaml, name, jsonpath=EXPR"),
            "{error}"
        );
        assert!("jsonpath=$[".parse::<Format>().is_err());
    }

    #[test]
    fn ages_and_durations_read_like_kubectl() {
        assert_eq!(short_span(5), "5s");
        assert_eq!(short_span(185), "3m5s");
        assert_eq!(short_span(3600), "60m");
        assert_eq!(short_span(5 * 3600 + 120), "5h2m");
        assert_eq!(short_span(20 * 3600), "20h");
        assert_eq!(short_span(3 * 86_400), "3d");
        assert_eq!(seconds_text(0.42), "0.4s");
        assert_eq!(seconds_text(184.0), "3m04s");
        assert_eq!(
            duration(
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-01T00:00:04.05Z")
            ),
            "4.0s"
        );
        assert_eq!(duration(None, None), "");
        assert_eq!(age("not a time"), "");
    }
}
