//! `proctor runs …` and the output modes, against a running server: every verb, the exit code
//! each outcome gives, and `-o table|wide|json|yaml|name|jsonpath=…` with `--no-headers`.

use proctor_tests::api::upsert_proc::ArgType;
use proctor_tests::api::{ExecutionStatus, arg, proc, required_arg, sh};
use serde_json::Value;

use super::{User, auth_app};

/// A server with `greet` (WHO required, TIMES an int), `broken` (exits 3) and `sleeper`
/// (sleeps a minute); an ordinary user, `ada`, who may run them.
async fn setup() -> (proctor_tests::TestApp, String, User) {
    let (app, admin) = auth_app().await;
    let mut greet = proc("greet", &sh("echo \"hello $WHO\"; echo done"));
    let mut times = arg("TIMES");
    times.type_ = Some(ArgType::INT);
    times.default = Some("1".to_owned());
    greet.args = Some(vec![required_arg("WHO"), times]);
    app.api_as(&admin).define_proc(greet).await;
    app.api_as(&admin)
        .define_proc(proc("broken", &sh("echo trying >&2; exit 3")))
        .await;
    app.api_as(&admin)
        .define_proc(proc("sleeper", &sh("echo waiting; exec sleep 60")))
        .await;
    let token = app.issue_token("ada@example.com", &[], false).await;
    let ada = User::new(app.address.to_string(), "ada@example.com", &token);
    (app, admin, ada)
}

#[tokio::test]
async fn runs_start_wait_logs_rerun_and_cancel_exit_by_outcome() {
    let (app, admin, ada) = setup().await;

    // --dry-run checks the arguments and starts nothing.
    let dry = ada
        .run(&["runs", "start", "greet", "WHO=ada", "--dry-run"])
        .await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("would get"), "{dry:?}");
    assert!(
        dry.stdout.contains(&format!("{:<40} 1", "TIMES")),
        "defaults are shown: {dry:?}"
    );
    for (args, field) in [
        (&["TIMES=2"][..], "WHO"),
        (&["WHO=x", "TIMES=many"], "TIMES"),
    ] {
        let mut line = vec!["runs", "start", "greet", "--dry-run"];
        line.extend_from_slice(args);
        let bad = ada.run(&line).await;
        assert_eq!(bad.code, 2, "{bad:?}");
        assert!(
            bad.stderr.contains(&format!("args.{field}")),
            "the bad field is named: {bad:?}"
        );
    }
    let none = ada.run(&["runs", "list", "-o", "json"]).await.json();
    assert_eq!(none, Value::Array(vec![]), "a dry run starts nothing");

    // Following a run: its output on stdout, the summary on stderr, exit 0 on success.
    let ran = ada.run(&["runs", "start", "greet", "WHO=ada"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.stdout, "hello ada\ndone\n");
    let console = format!("http://{}/#/executions/1", app.address);
    assert!(
        ran.stderr.contains("Run 1 of greet created")
            && ran.stderr.contains("SUCCEEDED in ")
            && ran.stderr.contains(&console),
        "{ran:?}"
    );
    let failed = ada.run(&["runs", "start", "broken"]).await;
    assert_eq!(failed.code, 1, "a failed run exits 1: {failed:?}");
    assert!(failed.stderr.contains("FAILED"), "{failed:?}");

    // wait: 0 for success, 1 otherwise, 2 when --timeout passes first.
    let waited = ada.run(&["runs", "wait", "1"]).await;
    assert_eq!(waited.code, 0, "{waited:?}");
    assert!(waited.stdout.starts_with("SUCCEEDED in "), "{waited:?}");
    assert_eq!(ada.run(&["runs", "wait", "2"]).await.code, 1);
    let detached = ada
        .run(&["runs", "start", "sleeper", "--detach", "-o", "name"])
        .await;
    assert_eq!(detached.code, 0, "{detached:?}");
    assert_eq!(detached.stdout, "execution/3\n");
    let gave_up = ada.run(&["runs", "wait", "3", "--timeout", "1s"]).await;
    assert_eq!(gave_up.code, 2, "{gave_up:?}");
    assert!(
        gave_up.stderr.contains("run 3 is still RUNNING after 1"),
        "{gave_up:?}"
    );
    assert_eq!(
        app.api_as(&admin).status("3").await,
        ExecutionStatus::Running,
        "waiting does not touch the run"
    );
    let cancelled = ada.run(&["runs", "cancel", "3"]).await;
    assert_eq!(cancelled.code, 0, "{cancelled:?}");
    let waited = ada.run(&["runs", "wait", "3"]).await;
    assert_eq!(waited.code, 1, "{waited:?}");
    assert!(waited.stdout.contains("CANCELLED"), "{waited:?}");
    let again = ada.run(&["runs", "cancel", "3"]).await;
    assert_eq!(again.code, 2, "an ended run cannot be cancelled: {again:?}");

    // logs: plain, with timestamps, as JSON lines; -f exits by outcome.
    let logs = ada.run(&["runs", "logs", "1"]).await;
    assert_eq!(logs.stdout, "hello ada\ndone\n");
    let stamped = ada.run(&["runs", "logs", "1", "--timestamps"]).await;
    let stamp = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) ")
        .expect("a valid pattern");
    let lines: Vec<&str> = stamped.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped:?}");
    for (line, text) in lines.iter().zip(["hello ada", "done"]) {
        let found = stamp
            .find(line)
            .unwrap_or_else(|| panic!("no time: {line}"));
        assert_eq!(&line[found.end()..], text);
    }
    let json = ada.run(&["runs", "logs", "2", "-o", "json"]).await;
    assert_eq!(json.code, 0, "{json:?}");
    let records: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(records.len(), 1, "{json:?}");
    assert_eq!(records[0]["seq"], 1);
    assert_eq!(records[0]["stream"], "STDERR");
    assert_eq!(records[0]["line"], "trying");
    assert!(records[0]["time"].is_string(), "{json:?}");
    assert_eq!(ada.run(&["runs", "logs", "-f", "1"]).await.code, 0);
    assert_eq!(ada.run(&["runs", "logs", "-f", "2"]).await.code, 1);
    assert_eq!(ada.run(&["runs", "logs", "-f", "3"]).await.code, 1);

    // rerun: the arguments of an earlier run, some overridden.
    let rerun = ada.run(&["runs", "rerun", "1", "WHO=bob"]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(rerun.stdout, "hello bob\ndone\n");
    assert!(rerun.stderr.contains("Rerunning 1 as 4"), "{rerun:?}");
    let fourth = ada.run(&["runs", "get", "4", "-o", "json"]).await.json();
    assert_eq!(fourth["args"][0]["name"], "WHO");
    assert_eq!(fourth["args"][0]["value"], "bob");
    assert_eq!(fourth["status"], "SUCCEEDED");
    let same = ada
        .run(&["runs", "rerun", "4", "--detach", "-o", "jsonpath={.id}"])
        .await;
    assert_eq!(same.code, 0, "{same:?}");
    assert_eq!(same.stdout, "5\n");
    let got = ada
        .run(&["runs", "get", "5", "-o", "jsonpath=$.args[0].value"])
        .await;
    assert_eq!(got.stdout, "bob\n", "{got:?}");

    // get: the v2 layout plus what runs have now.
    let got = ada.run(&["runs", "get", "1"]).await;
    assert!(
        got.stdout
            .contains(&format!("{:<40} SUCCEEDED\n", "Status"))
            && got
                .stdout
                .contains(&format!("{:<40} {console}\n", "Console")),
        "{got:?}"
    );
    let missing = ada.run(&["runs", "get", "99"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
}

#[tokio::test]
async fn list_output_modes_suit_people_and_scripts() {
    let (app, admin, ada) = setup().await;
    app.api_as(&admin)
        .run_to_end("greet", &[("WHO", "a")])
        .await;
    app.api_as(&admin).run_to_end("broken", &[]).await;

    let table = ada.run(&["runs", "list"]).await;
    assert_eq!(table.code, 0, "{table:?}");
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "PROC", "STATUS", "TRIGGER", "USER", "EXIT", "AGE", "DURATION"
        ]
    );
    let newest: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&newest[..3], ["2", "broken", "FAILED"]);
    let age = regex::Regex::new(r"^\d+[smhd]$").expect("a valid pattern");
    let duration = regex::Regex::new(r"^\d+\.\ds$").expect("a valid pattern");
    assert!(
        age.is_match(newest[newest.len() - 2]) && duration.is_match(newest[newest.len() - 1]),
        "AGE and DURATION read like kubectl's: {table:?}"
    );

    let wide = ada.run(&["runs", "list", "-o", "wide"]).await;
    assert!(
        wide.stdout
            .lines()
            .next()
            .unwrap()
            .ends_with("ATTEMPTS  CREATED"),
        "{wide:?}"
    );
    let bare = ada.run(&["runs", "list", "--no-headers"]).await;
    assert_eq!(bare.stdout.lines().count(), 2, "{bare:?}");
    assert!(bare.stdout.starts_with("2 "), "{bare:?}");

    let json = ada.run(&["runs", "list", "-o", "json"]).await.json();
    let ids: Vec<&str> = json
        .as_array()
        .expect("a plain array")
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["2", "1"]);
    let yaml = ada.run(&["runs", "list", "-o", "yaml"]).await;
    let parsed: Value = serde_yaml_ng::from_str(&yaml.stdout).expect("YAML");
    assert_eq!(parsed, json, "YAML holds what JSON holds");
    let names = ada.run(&["runs", "list", "-o", "name"]).await;
    assert_eq!(names.stdout, "execution/2\nexecution/1\n");
    let kubectl = ada
        .run(&["runs", "list", "-o", "jsonpath={[*].procName}"])
        .await;
    assert_eq!(kubectl.stdout, "broken\ngreet\n", "{kubectl:?}");
    let rfc = ada
        .run(&[
            "runs",
            "list",
            "-o",
            "jsonpath=$[?@.status == 'FAILED'].exitCode",
        ])
        .await;
    assert_eq!(rfc.stdout, "3\n", "{rfc:?}");

    let procs = ada.run(&["procs", "list", "-o", "name"]).await;
    assert_eq!(procs.stdout, "proc/broken\nproc/greet\nproc/sleeper\n");
    let procs = ada.run(&["procs", "list", "--no-headers"]).await;
    assert!(procs.stdout.starts_with("broken "), "{procs:?}");

    // Wrong values say which ones are right, before any call.
    let bad = ada.run(&["runs", "list", "-o", "xml"]).await;
    assert_eq!(bad.code, 2);
    assert!(
        ["table", "wide", "json", "yaml", "name", "jsonpath="]
            .iter()
            .all(|f| bad.stderr.contains(f)),
        "{bad:?}"
    );
    let bad = ada.run(&["runs", "list", "--status", "failure"]).await;
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("failed") && bad.stderr.contains("timed-out"),
        "the valid values are listed: {bad:?}"
    );
    let bad = ada.run(&["runs", "list", "-o", "jsonpath=$[?"]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("jsonpath"), "{bad:?}");
}
