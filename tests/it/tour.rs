//! The README's five-minute tour, as a newcomer follows it: `proctord` on its embedded default
//! (only the port differs, so the test can run beside anything), the console half in Chromium
//! (`playground/test/tour.mjs`), and every `proctor` command of the README's tour exactly as
//! written, run by `sh` with the built CLI first on `PATH` and nothing configured but
//! `PROCTOR_HOST`. The ids the README prints (`execution/3`, schedule 1) must be the ones a fresh
//! server gives, and the getting-started chapter must list the same commands.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use proctor_tests::infra::free_port;
use proctor_tests::{Proctord, proctord_command, workspace_binary};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

use crate::playground::{browser_ready, browser_script};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `proctor` command lines in the ` ```sh ` blocks of `file`'s section headed `heading`
/// (up to the next heading of the same level), without their comments.
fn tour_commands(file: &str, heading: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repository().join(file)).expect("read the file");
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("{file} has a section {heading:?}"));
    let level = heading.split(' ').next().expect("a heading has a level");
    let section = &text[start + heading.len() + 2..];
    let section = section
        .find(&format!("\n{level} "))
        .map_or(section, |end| &section[..end]);
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            command if in_sh && command.starts_with("proctor ") => {
                let without_comment = command.split(" # ").next().unwrap_or(command);
                commands.push(without_comment.trim().to_owned());
            }
            _ => {}
        }
    }
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

async fn run(line: &str, home: &Path, host: &str) -> String {
    let output = tokio::time::timeout(Duration::from_secs(60), cli(line, home, host).output())
        .await
        .unwrap_or_else(|_| panic!("`{line}` ends within a minute"))
        .expect("sh runs");
    // What the terminal shows: the log on stdout, the final state on stderr.
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "`{line}` failed ({}):\n{shown}",
        output.status
    );
    shown
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
    let readme = tour_commands("README.md", "## A five-minute tour");
    let chapter = tour_commands("docs/src/getting-started.md", "## A five-minute tour");
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

    // `cargo run --release --bin proctord` in a fresh checkout: nothing configured but the port.
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
    for line in &commands {
        let expected = EXPECTED
            .iter()
            .find(|(command, _)| command == line)
            .map(|(_, fragments)| *fragments)
            .unwrap_or_else(|| panic!("`{line}` is not in EXPECTED"));
        let stdout = if line.starts_with("proctor runs logs -f ") {
            // The run started just before; the console opens it while the CLI follows it.
            let id = line.rsplit(' ').next().expect("an id");
            to_browser
                .write_all(format!("WATCH {id}\n").as_bytes())
                .await
                .expect("tell the browser");
            let (stdout, arrivals) = follow(line, home.path(), &host).await;
            watched = Some((report(&mut from_browser, "WATCHED").await, arrivals));
            stdout
        } else {
            run(line, home.path(), &host).await
        };
        // What a newcomer saw, shown when the test fails.
        println!("$ {line}\n{stdout}");
        for fragment in expected {
            assert!(
                stdout.contains(fragment),
                "`{line}` printed no {fragment:?}:\n{stdout}"
            );
        }
    }

    // The CLI's log was live: the first line came seconds before the last.
    let (console, arrivals) = watched.expect("the tour follows a log");
    let spread = arrivals.last().expect("lines").duration_since(arrivals[0]);
    assert!(
        spread >= Duration::from_secs(5),
        "the countdown's lines arrived within {spread:?}: not live"
    );
    // And so was the console's: its first line was on the page before the run ended.
    assert!(
        ["PENDING", "STARTING", "RUNNING"]
            .contains(&console["statusAtFirstLine"].as_str().unwrap_or_default()),
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

/// Runs `proctor runs logs -f`, noting when each line arrived.
async fn follow(line: &str, home: &Path, host: &str) -> (String, Vec<Instant>) {
    let mut child = cli(line, home, host)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut stdout = String::new();
    let mut arrivals = Vec::new();
    while let Some(text) = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("`{line}` makes progress"))
        .expect("read the CLI's output")
    {
        arrivals.push(Instant::now());
        stdout.push_str(&text);
        stdout.push('\n');
    }
    let output = child.wait_with_output().await.expect("the CLI exits");
    stdout.push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "`{line}` failed ({}):\n{stdout}",
        output.status
    );
    (stdout, arrivals)
}
