//! The README's five-minute tour, as a newcomer follows it: `proctord` on its embedded default
//! (only the port differs, so the test can run beside anything), the console half in Chromium
//! (`playground/test/tour.mjs`), and every `proctor` command of the README's tour exactly as
//! written, run by `sh` with the built CLI first on `PATH` and nothing configured but
//! `PROCTOR_HOST`. The ids the README prints (`execution/3`, schedule 1) must be the ones a fresh
//! server gives, and the getting-started chapter must list the same commands.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Timelike as _;
use proctor_tests::infra::free_port;
use proctor_tests::{Proctord, proctord_command, workspace_binary};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

use crate::docs::repository;
use crate::playground::{browser_ready, browser_script};

/// The one line of the tour's `sh` blocks that is not a `proctor` command: the test puts the
/// built CLI on `PATH` itself.
const PATH_SETUP: &str = "export PATH=\"$PWD/target/release:$PATH\"";

/// A `proctor` command of the tour: the line as typed (what `sh` runs) and without its comment
/// (what [`EXPECTED`] lists).
#[derive(Debug)]
struct TourCommand {
    typed: String,
    command: String,
}

/// The `proctor` commands in the ` ```sh ` blocks of `file`'s section headed `heading`, up to
/// the next heading of the same or a higher level outside a code block.
///
/// # Panics
/// On anything in the section the test would otherwise skip silently: a code block that is
/// neither `sh` nor `text`, or a line of an `sh` block that is not a `proctor` command (or the
/// `PATH` set-up), including a continued line.
fn tour_commands(file: &str, heading: &str) -> Vec<TourCommand> {
    let text = std::fs::read_to_string(repository().join(file)).expect("read the file");
    let level = heading
        .split(' ')
        .next()
        .expect("a heading has a level")
        .len();
    let mut lines = text.lines().skip_while(|line| *line != heading);
    assert!(lines.next().is_some(), "{file} has a section {heading:?}");
    let mut commands = Vec::new();
    let mut fence: Option<&str> = None;
    for line in lines {
        let trimmed = line.trim();
        match fence {
            None if trimmed.starts_with("```") || trimmed.starts_with("~~~") => {
                let info = &trimmed[3..];
                assert!(
                    matches!(info, "sh" | "text"),
                    "{file}: the tour has a {trimmed:?} block; use sh (run by the test) or text"
                );
                fence = Some(info);
            }
            None => {
                let hashes = line.len() - line.trim_start_matches('#').len();
                if (1..=level).contains(&hashes) && line[hashes..].starts_with(' ') {
                    break;
                }
            }
            Some(_) if trimmed.starts_with("```") || trimmed.starts_with("~~~") => fence = None,
            Some("sh") if trimmed.is_empty() || trimmed == PATH_SETUP => {}
            Some("sh") => {
                assert!(
                    trimmed.starts_with("proctor ") && !trimmed.ends_with('\\'),
                    "{file}: the tour's line {trimmed:?} is not one `proctor` command the test can run"
                );
                let command = trimmed.split(" # ").next().unwrap_or(trimmed).trim();
                commands.push(TourCommand {
                    typed: trimmed.to_owned(),
                    command: command.to_owned(),
                });
            }
            Some(_) => {}
        }
    }
    assert!(
        fence.is_none(),
        "{file}: a code block of the tour is not closed"
    );
    commands
}

/// What each command of the tour must show (its stdout and stderr hold every fragment) on a fresh
/// server after the console's run. A command the README gains or loses fails the test until it
/// is listed here.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "proctor procs list",
        &["NAME", "say-hello", "countdown", "secret-demo"],
    ),
    ("proctor procs describe say-hello", &["NAME", "required"]),
    (
        "proctor runs start say-hello NAME=ada --dry-run",
        &["The arguments are valid", "ada"],
    ),
    (
        "proctor runs start say-hello NAME=ada",
        &["Hello, ada!", "SUCCEEDED in", "#/executions/2"],
    ),
    (
        "proctor runs start countdown SECONDS=10 --detach -o name",
        &["execution/3"],
    ),
    (
        "proctor runs logs -f 3",
        &["10\n9\n8\n7\n6\n5\n4\n3\n2\n1\nliftoff\n"],
    ),
    // And five_minute_slots checks the times.
    ("proctor schedules preview '*/5 * * * *'", &[":00+00:00\n"]),
    (
        "proctor schedules create say-hello NAME=team -c '*/5 * * * *'",
        &["Scheduled Job ID : 1", "Next Run"],
    ),
    (
        "proctor schedules list",
        &["1   say-hello  */5 * * * *  UTC       yes"],
    ),
    (
        "proctor schedules trigger 1",
        &["Hello, team!", "SUCCEEDED in"],
    ),
    ("proctor schedules runs 1", &["TRIGGERED", "SUCCEEDED"]),
    (
        "proctor schedules delete 1",
        &["removed the scheduled job ID: 1"],
    ),
];

/// One tour command through `sh`, as typed: the built CLI first on `PATH`, a fresh home, and
/// only `PROCTOR_HOST` set (the README's server listens on the CLI's default address; this one
/// on a free port).
fn cli(line: &str, home: &Path, host: &str) -> Command {
    let bin = workspace_binary("proctor");
    let path = format!(
        "{}:{}",
        bin.parent()
            .expect("the binary is in a directory")
            .display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(line)
        .env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("PROCTOR_HOST", host)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The browser script's next line that starts with `prefix`, as JSON.
async fn report(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> Value {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser reports {prefix} within 90 s"))
            .expect("read the browser's output")
            .unwrap_or_else(|| panic!("the browser ended before {prefix}"));
        if let Some(failure) = line.strip_prefix("FAILED ") {
            panic!(
                "the console tour failed: {failure} (screenshot: target/tour-screenshots/tour-failure.png)"
            );
        }
        if let Some(json) = line.strip_prefix(prefix) {
            return serde_json::from_str(json.trim()).expect("the report is JSON");
        }
    }
}

#[test]
fn the_getting_started_chapter_lists_the_readme_tour() {
    let names = |commands: Vec<TourCommand>| -> Vec<String> {
        commands.into_iter().map(|c| c.command).collect()
    };
    let readme = names(tour_commands("README.md", "## A five-minute tour"));
    let chapter = names(tour_commands(
        "docs/src/getting-started.md",
        "## A five-minute tour",
    ));
    assert_eq!(chapter, readme);
    let listed: Vec<&str> = EXPECTED.iter().map(|(command, _)| *command).collect();
    assert_eq!(
        readme, listed,
        "the README's tour changed: list each command and what it prints in EXPECTED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_works_as_written() {
    if !browser_ready() {
        return;
    }
    let commands = tour_commands("README.md", "## A five-minute tour");
    assert!(commands.len() >= 6, "the tour has commands: {commands:?}");

    // The README's `./target/release/proctord` in a fresh checkout: nothing configured but the
    // port.
    let checkout = tempfile::tempdir().expect("a working directory");
    let port = free_port();
    let mut command = proctord_command(checkout.path());
    command.env("PROCTOR_APP_PORT", port.to_string());
    let server = Proctord::spawn(command);
    let base = server.url("");
    let host = format!("127.0.0.1:{port}");
    let home = tempfile::tempdir().expect("a home directory");

    let shots = repository().join("target/tour-screenshots");
    let mut browser = browser_script("tour.mjs", &base, &shots, &[]);
    let mut to_browser = browser.stdin.take().expect("piped stdin");
    let mut from_browser = BufReader::new(browser.stdout.take().expect("piped stdout")).lines();

    // 1. The console: say-hello run from its page, its log on the execution's page.
    let console_run = report(&mut from_browser, "CONSOLE_RUN").await;
    assert_eq!(console_run["id"], "1", "{console_run}");
    assert_eq!(console_run["status"], "SUCCEEDED");
    assert_eq!(console_run["lines"], serde_json::json!(["Hello, grace!"]));

    // 2–4. The CLI, command by command.
    let mut watched = None;
    for TourCommand { typed, command } in &commands {
        let expected = EXPECTED
            .iter()
            .find(|(listed, _)| listed == command)
            .map(|(_, fragments)| *fragments)
            .unwrap_or_else(|| panic!("`{command}` is not in EXPECTED"));
        let shown = if command.starts_with("proctor runs logs -f ") {
            // The run started just before; the console opens it while the CLI follows it.
            let id = command.rsplit(' ').next().expect("an id");
            to_browser
                .write_all(format!("WATCH {id}\n").as_bytes())
                .await
                .expect("tell the browser");
            let (shown, arrivals) = run(typed, home.path(), &host).await;
            watched = Some((report(&mut from_browser, "WATCHED").await, arrivals));
            shown
        } else {
            run(typed, home.path(), &host).await.0
        };
        // What a newcomer saw, shown when the test fails.
        println!("$ {typed}\n{shown}");
        for fragment in expected {
            assert!(
                shown.contains(fragment),
                "`{typed}` printed no {fragment:?}:\n{shown}"
            );
        }
        if command.starts_with("proctor schedules preview '*/5 * * * *'") {
            five_minute_slots(&shown);
        }
    }

    // The CLI's log was live: the first line came seconds before the last.
    let (console, arrivals) = watched.expect("the tour follows a log");
    let spread = arrivals.last().expect("lines").duration_since(arrivals[0]);
    assert!(
        spread >= Duration::from_secs(5),
        "the countdown's lines arrived within {spread:?}: not live"
    );
    // And so was the console's: its first line was on the page before the run ended, with
    // the others still to come.
    assert!(
        ["PENDING", "STARTING", "RUNNING"]
            .contains(&console["statusAtFirstLine"].as_str().unwrap_or_default()),
        "{console}"
    );
    assert!(
        console["linesAtFirstLine"].as_u64().is_some_and(|n| n < 11),
        "{console}"
    );
    let countdown: Vec<String> = (1..=10)
        .rev()
        .map(|n| n.to_string())
        .chain(["liftoff".to_owned()])
        .collect();
    assert_eq!(console["lines"], serde_json::json!(countdown));
    assert_eq!(
        console["outside"],
        serde_json::json!([]),
        "requests left the origin"
    );

    let status = tokio::time::timeout(Duration::from_secs(30), browser.wait())
        .await
        .expect("the browser ends")
        .expect("node exits");
    assert!(status.success(), "{status}");
    drop(to_browser);
    server.terminate();
}

/// Runs one tour command (within a minute) and returns what the terminal showed: the log on
/// stdout, then the final state on stderr; and when each stdout line arrived.
async fn run(line: &str, home: &Path, host: &str) -> (String, Vec<Instant>) {
    let mut child = cli(line, home, host)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut shown = String::new();
    let mut arrivals = Vec::new();
    let output = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(text) = lines.next_line().await.expect("read the CLI's output") {
            arrivals.push(Instant::now());
            shown.push_str(&text);
            shown.push('\n');
        }
        child.wait_with_output().await.expect("the CLI exits")
    })
    .await
    .unwrap_or_else(|_| panic!("`{line}` ends within a minute"));
    shown.push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "`{line}` failed ({}):\n{shown}",
        output.status
    );
    (shown, arrivals)
}

/// The preview of `*/5 * * * *`: five RFC 3339 times, increasing, each on a minute divisible by
/// five with no seconds, the first within five minutes from now.
fn five_minute_slots(shown: &str) {
    let slots: Vec<chrono::DateTime<chrono::FixedOffset>> = shown
        .lines()
        .map(|line| {
            chrono::DateTime::parse_from_rfc3339(line.trim())
                .unwrap_or_else(|e| panic!("{line:?} is not an RFC 3339 time ({e}):\n{shown}"))
        })
        .collect();
    assert_eq!(slots.len(), 5, "{shown}");
    assert!(
        slots.windows(2).all(|w| (w[1] - w[0]).num_minutes() == 5),
        "{shown}"
    );
    assert!(
        slots
            .iter()
            .all(|slot| slot.minute() % 5 == 0 && slot.second() == 0),
        "{shown}"
    );
    let wait = slots[0].with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        wait > chrono::TimeDelta::zero() && wait <= chrono::TimeDelta::minutes(5),
        "{shown}"
    );
}
