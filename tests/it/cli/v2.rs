//! The Go CLI's spellings (`list`, `describe`, `template`, `execute`, `logs`, `status`,
//! `schedule …`, `config …`, and the early Rust additions `executions`, `cancel`, `whoami`)
//! print exactly what they printed before the noun-verb commands arrived: one transcript of
//! every spelling, compared byte for byte with `snapshots/…__v2_spellings.snap`.
//!
//! The transcript runs on the embedded stack, where ids are deterministic (1, 2, …); only times,
//! ages, durations, the configuration directory and the version number are redacted. Output is
//! not a terminal, so it holds no colour.
//!
//! The snapshot was first recorded before the noun-verb commands (commit d92ce95). Its later
//! changes are the bugs issue 20 names, fixed on purpose and visible in the snapshot's history:
//! `describe` and `template` print the proc's real arguments instead of `ARG_ONE=foo
//! ARG_TWO=bar`; `execute` and `schedule` validate before printing their banner, so a refused
//! call prints only its error; the run table shows AGE and DURATION instead of CREATED.

use proctor_tests::api::upsert_proc::ArgType;
use proctor_tests::api::{arg, proc, required_arg, sh};
use proctor_tests::{Stack, TestApp};
use std::time::{Duration, Instant};

use super::{Ran, User};

/// One command's part of the transcript.
fn entry(args: &[&str], ran: &Ran) -> String {
    let mut text = format!("$ proctor {}\n[exit {}]\n", args.join(" "), ran.code);
    if !ran.stdout.is_empty() {
        text.push_str(&format!("--- stdout\n{}", ran.stdout));
        if !ran.stdout.ends_with('\n') {
            text.push_str("\n[no newline at end]\n");
        }
    }
    if !ran.stderr.is_empty() {
        text.push_str(&format!("--- stderr\n{}", ran.stderr));
        if !ran.stderr.ends_with('\n') {
            text.push_str("\n[no newline at end]\n");
        }
    }
    text.push('\n');
    text
}

#[tokio::test]
async fn the_v2_spellings_print_byte_for_byte_what_they_printed_before() {
    let app = TestApp::builder()
        .stack(Stack::Embedded)
        .with_args(&["--auth-enabled", "--scheduler-enabled=false"])
        .spawn()
        .await;
    let admin = app.issue_token("admin@example.com", &[], true).await;
    let mut greet = proc("greet", &sh("echo \"hello $WHO\"; echo done"));
    greet.description = Some("Says hello".to_owned());
    greet.authorized_groups = Some(vec!["team".to_owned()]);
    let mut who = required_arg("WHO");
    who.description = Some("who to greet".to_owned());
    let mut times = arg("TIMES");
    times.type_ = Some(ArgType::INT);
    times.default = Some("1".to_owned());
    greet.args = Some(vec![who, times]);
    app.api_as(&admin).define_proc(greet).await;
    let mut bare = proc("bare", &sh("echo bare"));
    bare.description = Some("No arguments".to_owned());
    app.api_as(&admin).define_proc(bare).await;
    app.api_as(&admin)
        .define_proc(proc("broken", &sh("echo trying; exit 3")))
        .await;
    app.api_as(&admin)
        .define_proc(proc("sleeper", &sh("echo waiting; exec sleep 60")))
        .await;

    let user = User::new("unused:1", "", "");
    let config_dir = user.config_dir.path().display().to_string();
    let template = user.config_dir.path().join("greet.yaml");
    let template = template.to_str().expect("a UTF-8 path").to_owned();
    let host = format!("PROCTOR_HOST={}", app.address);
    let token = format!("ACCESS_TOKEN={admin}");
    let mut transcript = String::new();
    // The configuration comes from the file `config` writes, as a v2 user has it.
    let mut step = async |args: &[&str]| {
        let mut command = user.command(args);
        command
            .env_remove("PROCTOR_HOST")
            .env_remove("EMAIL_ID")
            .env_remove("ACCESS_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .unwrap_or_else(|_| panic!("proctor {args:?} did not finish"))
            .expect("proctor runs");
        let ran = Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        transcript.push_str(&entry(args, &ran));
        ran
    };
    step(&["config", "show"]).await;
    step(&["config", &host, "EMAIL_ID=admin@example.com", &token]).await;
    step(&["config", "CONNECTION_TIMEOUT_SECS=20"]).await;
    step(&["config", "COLOUR=red"]).await;
    step(&["config", "show"]).await;
    step(&["list"]).await;
    step(&["describe", "greet"]).await;
    step(&["describe", "bare"]).await;
    step(&["describe", "nope"]).await;
    step(&["template", "greet", &template]).await;
    step(&["execute", "greet", "WHO=snapshot"]).await;
    step(&["execute", "greet", "-f", &template, "WHO=file"]).await;
    step(&["execute", "bare"]).await;
    step(&["execute", "broken"]).await;
    step(&["execute", "greet"]).await;
    step(&["execute", "greet", "WHO"]).await;
    step(&["execute", "nope"]).await;
    let detached = step(&["execute", "sleeper", "--detach"]).await;
    assert!(
        detached
            .stdout
            .contains("ID                                       5\n"),
        "the fifth run (refused ones create none): {detached:?}"
    );
    step(&["logs", "1"]).await;
    step(&["logs", "abc"]).await;
    step(&["status", "1"]).await;
    step(&["status", "4"]).await;
    step(&["status", "99"]).await;
    // The detached run printed its line before it is cancelled, so the transcript is stable.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = User::new(app.address.to_string(), "admin@example.com", &admin)
            .run(&["logs", "5"])
            .await;
        if logs.stdout.contains("waiting") {
            break;
        }
        assert!(Instant::now() < deadline, "the detached run never printed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    step(&["cancel", "5"]).await;
    step(&["executions", "--proc", "greet"]).await;
    step(&[
        "schedule",
        "greet",
        "WHO=nightly",
        "-c",
        "0 2 * * *",
        "-g",
        "team",
    ])
    .await;
    step(&[
        "schedule",
        "bare",
        "-c",
        "30 6 * * 1-5",
        "-g",
        "ops",
        "-n",
        "ops@example.com",
        "-T",
        "a,b",
    ])
    .await;
    step(&["schedule", "greet", "WHO=x"]).await;
    step(&["schedule", "greet", "WHO=x", "-c", "61 * * * *"]).await;
    step(&["schedule", "list"]).await;
    step(&["schedule", "describe", "1"]).await;
    step(&["schedule", "remove", "2"]).await;
    step(&["schedule", "describe", "2"]).await;
    step(&["whoami"]).await;
    step(&["version"]).await;

    let times = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
        .expect("a valid pattern");
    let transcript = times.replace_all(&transcript, "<TIME>");
    // The AGE and DURATION columns of run tables (under 100 s here, so widths stay put).
    let ages = regex::Regex::new(r"(?m) \d+s( +)\d+\.\ds$").expect("a valid pattern");
    let transcript = ages.replace_all(&transcript, " <AGE>${1}<DURATION>");
    let transcript = transcript
        .replace(&config_dir, "<CONFIG_DIR>")
        .replace(&app.address.to_string(), "<HOST>")
        .replace(&admin, "<TOKEN>")
        .replace(&format!("v{}", env!("CARGO_PKG_VERSION")), "v<VERSION>");
    insta::assert_snapshot!("v2_spellings", transcript);
}
