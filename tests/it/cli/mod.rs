//! The `proctor` CLI binary against a running server.

mod completion;
mod hostile;
mod identity;
mod manage;
mod runs;
mod terminal;
mod v2;

use tokio::process::Command;

use proctor_tests::{TestApp, workspace_binary};

#[tokio::test]
async fn version_prints_client_and_server_versions() {
    let app = TestApp::spawn().await;
    let output = Command::new(workspace_binary("proctor"))
        .arg("version")
        .env("PROCTOR_HOST", app.address.to_string())
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("Proctor: A Developer Friendly Automation Orchestrator v{version}").as_str())
    );
    let server_line = lines.next().unwrap_or_default();
    assert!(
        server_line.starts_with(&format!("Server: proctord v{version} (")),
        "{stdout}"
    );
    assert!(server_line.contains("executor local"), "{stdout}");
}

#[tokio::test]
async fn version_says_when_the_server_is_unreachable() {
    let port = proctor_tests::free_port();
    let output = Command::new(workspace_binary("proctor"))
        .arg("version")
        .env("PROCTOR_HOST", format!("127.0.0.1:{port}"))
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the client version is still printed"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot reach proctord"), "{stderr}");
    assert!(stderr.contains("PROCTOR_HOST"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Every command against a running server, as a user would type it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proctor_tests::api::upsert_proc::ArgType;
use proctor_tests::api::{TriggerSchedule, arg, proc, required_arg, sh, trigger_schedule};
use proctor_tests::proxy::DroppingProxy;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What one `proctor` run printed and how it exited.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// The `proctor` binary with its own configuration directory and credentials.
pub(crate) struct User {
    pub(crate) config_dir: tempfile::TempDir,
    host: String,
    email: String,
    token: String,
}

impl User {
    pub(crate) fn new(host: impl Into<String>, email: &str, token: &str) -> Self {
        Self {
            config_dir: tempfile::tempdir().expect("a config directory"),
            host: host.into(),
            email: email.to_owned(),
            token: token.to_owned(),
        }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(workspace_binary("proctor"));
        command
            .args(args)
            .env("LOCAL_CONFIG_DIR", self.config_dir.path())
            .env("XDG_CONFIG_HOME", self.config_dir.path())
            .env_remove("PROCTOR_CONTEXT")
            .env_remove("PROCTOR_TOKEN")
            .env_remove("PROCTOR_EMAIL")
            .env_remove("PROCTOR_ON_INTERRUPT")
            .env("PROCTOR_HOST", &self.host)
            .env("EMAIL_ID", &self.email)
            .env("ACCESS_TOKEN", &self.token)
            .env_remove("CONNECTION_TIMEOUT_SECS")
            .env_remove("ENVIRONMENT")
            .stdin(Stdio::null());
        command
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Ran {
        self.run_with_input(args, None).await
    }

    pub(crate) async fn run_with_input(&self, args: &[&str], input: Option<&str>) -> Ran {
        run_command(self.command(args), input).await
    }
}

/// Runs a prepared `proctor` command, feeding it `input` on stdin when given.
pub(crate) async fn run_command(mut command: Command, input: Option<&str>) -> Ran {
    if input.is_some() {
        command.stdin(Stdio::piped());
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("proctor starts");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("write stdin");
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("proctor {command:?} did not finish"))
        .expect("proctor runs");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub(crate) async fn auth_app() -> (TestApp, String) {
    let app = TestApp::builder()
        .with_args(&["--auth-enabled", "--scheduler-enabled=false"])
        .spawn()
        .await;
    let admin = app.issue_token("admin@example.com", &[], true).await;
    (app, admin)
}

#[tokio::test]
async fn config_writes_a_private_file_merges_keys_and_hides_the_token() {
    let user = User::new("unused:1", "", "");
    let ran = user
        .run(&[
            "config",
            "PROCTOR_HOST=localhost:5001",
            "ACCESS_TOKEN=t0ps3cret",
            "EMAIL_ID=ada@example.com",
        ])
        .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let file = user.config_dir.path().join("proctor.yaml");
    let mode = std::fs::metadata(&file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "it holds a token"
    );
    let ran = user.run(&["config", "CONNECTION_TIMEOUT_SECS=30"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        written,
        "PROCTOR_HOST: localhost:5001\nEMAIL_ID: ada@example.com\nACCESS_TOKEN: t0ps3cret\nCONNECTION_TIMEOUT_SECS: '30'\n",
        "keys merge; nothing else is lost"
    );
    for bad in [
        &["config", "COLOUR=red"][..],
        &["config", "CONNECTION_TIMEOUT_SECS=soon"],
        &["config", "novalue"],
    ] {
        let ran = user.run(bad).await;
        assert_eq!(ran.code, 2, "{bad:?}: {ran:?}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            written,
            "a bad pair writes nothing"
        );
    }
    let shown = user.run(&["config", "show"]).await;
    assert!(shown.stdout.contains("ACCESS_TOKEN: ******"), "{shown:?}");
    assert!(!shown.stdout.contains("t0ps3cret"), "{shown:?}");
}

#[tokio::test]
async fn the_familiar_commands_work_and_exit_codes_tell_how_runs_ended() {
    let (app, admin) = auth_app().await;
    let mut greet = proc("greet", &sh("echo \"hello $WHO\"; echo done"));
    greet.description = Some("Says hello".to_owned());
    let mut who = required_arg("WHO");
    who.description = Some("who to greet".to_owned());
    let mut times = arg("TIMES");
    times.type_ = Some(ArgType::INT);
    times.default = Some("1".to_owned());
    greet.args = Some(vec![who, times]);
    app.api_as(&admin).define_proc(greet).await;
    app.api_as(&admin)
        .define_proc(proc("broken", &sh("echo trying; exit 3")))
        .await;
    let mut slow = proc("slow", &sh("echo started; exec sleep 30"));
    slow.timeout_seconds = Some(1);
    app.api_as(&admin).define_proc(slow).await;
    let sleeper = proc("sleeper", &sh("echo waiting; exec sleep 60"));
    app.api_as(&admin).define_proc(sleeper).await;
    let token = app.issue_token("ada@example.com", &[], false).await;
    let ada = User::new(app.address.to_string(), "ada@example.com", &token);

    let list = ada.run(&["list"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    assert!(list.stdout.starts_with("List of Procs:\n"), "{list:?}");
    assert!(
        list.stdout
            .contains(&format!("{:<40} Says hello\n", "greet")),
        "{list:?}"
    );
    let listed = ada.run(&["list", "-o", "json"]).await.json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["broken", "greet", "sleeper", "slow"]);

    let described = ada.run(&["describe", "greet"]).await;
    assert!(
        described
            .stdout
            .contains(&format!("{:<40} who to greet (string, required)", "WHO")),
        "{described:?}"
    );
    assert!(
        described
            .stdout
            .contains(&format!("{:<40}  (int, default 1)", "TIMES")),
        "{described:?}"
    );
    let missing = ada.run(&["describe", "nope"]).await;
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("Proctor doesn't support Proc `nope`"),
        "{missing:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("greet.yaml");
    let ran = ada
        .run(&["template", "greet", template.to_str().unwrap()])
        .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        std::fs::read_to_string(&template).unwrap(),
        "# who to greet\nWHO:\n# \nTIMES: '1'\n"
    );
    std::fs::write(&template, "WHO: from-file\nTIMES: 2\n").unwrap();

    let ran = ada
        .run(&["execute", "greet", "-f", template.to_str().unwrap()])
        .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stdout
            .contains("\nStreaming logs\nhello from-file\ndone\n"),
        "{ran:?}"
    );
    assert!(ran.stdout.ends_with("Execution completed.\n"), "{ran:?}");
    let ran = ada
        .run(&[
            "execute",
            "greet",
            "WHO=cli",
            "-f",
            template.to_str().unwrap(),
        ])
        .await;
    assert!(
        ran.stdout.contains("hello cli\n"),
        "KEY=VALUE wins over the file: {ran:?}"
    );

    let failed = ada.run(&["execute", "broken"]).await;
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stdout.contains("trying\n"), "{failed:?}");
    assert!(failed.stderr.contains("FAILED (exit code 3)"), "{failed:?}");
    let timed_out = ada.run(&["execute", "slow"]).await;
    assert_eq!(timed_out.code, 1, "{timed_out:?}");
    assert!(timed_out.stderr.contains("TIMED_OUT"), "{timed_out:?}");
    let invalid = ada.run(&["execute", "greet", "WHO=x", "TIMES=many"]).await;
    assert_eq!(invalid.code, 2, "{invalid:?}");
    assert!(
        invalid.stderr.contains("TIMES"),
        "names the argument: {invalid:?}"
    );
    let usage = ada.run(&["execute", "greet", "WHO"]).await;
    assert_eq!(usage.code, 2);
    assert!(
        usage.stderr.contains("Incorrect variable format"),
        "{usage:?}"
    );

    let detached = ada
        .run(&["execute", "sleeper", "--detach", "-o", "json"])
        .await;
    assert_eq!(detached.code, 0, "{detached:?}");
    let sleeper = detached.json()["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ada
        .run(&["logs", &sleeper])
        .await
        .stdout
        .contains("waiting")
    {
        assert!(Instant::now() < deadline, "the detached run never printed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cancelled = ada.run(&["cancel", &sleeper]).await;
    assert_eq!(cancelled.code, 0, "{cancelled:?}");
    assert!(
        cancelled
            .stdout
            .contains(&format!("Execution {sleeper} CANCELLED")),
        "{cancelled:?}"
    );

    let runs = ada
        .run(&["executions", "-o", "json", "--limit", "100"])
        .await
        .json();
    // The JSON of a list is a plain array of its items.
    assert_eq!(runs.as_array().unwrap().len(), 5, "{runs}");
    let failures = ada
        .run(&["executions", "--status", "failed,timed-out", "-o", "json"])
        .await
        .json();
    let statuses: Vec<&str> = failures
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["TIMED_OUT", "FAILED"]);
    let table = ada.run(&["executions", "--proc", "greet"]).await;
    assert!(table.stdout.starts_with("ID"), "{table:?}");
    assert_eq!(
        table.stdout.lines().count(),
        3,
        "header and two runs: {table:?}"
    );
    let paged = ada.run(&["executions", "--limit", "2"]).await;
    assert!(
        paged.stderr.contains("more: proctor executions --after "),
        "{paged:?}"
    );

    let status = ada.run(&["status", &sleeper, "-o", "json"]).await.json();
    assert_eq!(status["status"], "CANCELLED");
    let status = ada.run(&["status", &sleeper]).await;
    assert!(
        status
            .stdout
            .contains(&format!("{:<40} CANCELLED\n", "Status")),
        "{status:?}"
    );
    let logs = ada.run(&["logs", &sleeper]).await;
    assert_eq!(logs.stdout, "waiting\n");
    let bad = ada.run(&["status", "abc"]).await;
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("No valid execution context id provided as argument"),
        "{bad:?}"
    );

    let me = ada.run(&["whoami", "-o", "json"]).await.json();
    assert_eq!(
        me,
        json!({ "email": "ada@example.com", "name": null, "groups": [], "admin": false })
    );
    let completions = ada.run(&["completions", "bash"]).await;
    assert_eq!(completions.code, 0);
    assert!(completions.stdout.contains("proctor"), "{completions:?}");
}

#[tokio::test]
async fn schedules_are_managed_from_the_cli() {
    let (app, admin) = auth_app().await;
    let mut report = proc("report", &["echo", "report"]);
    report.args = Some(vec![arg("REGION")]);
    app.api_as(&admin).define_proc(report).await;
    let ada = User::new(app.address.to_string(), "admin@example.com", &admin);
    let created = ada
        .run(&[
            "schedule",
            "report",
            "REGION=eu",
            "-c",
            "0 2 * * *",
            "-g",
            "finance",
            "-n",
            "ops@example.com",
            "-T",
            "nightly,eu",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(created.code, 0, "{created:?}");
    let schedule = created.json();
    let id = schedule["id"].as_str().unwrap().to_owned();
    assert_eq!(schedule["cron"], "0 2 * * *");
    assert_eq!(schedule["tags"], json!(["nightly", "eu"]));
    let missing_cron = ada.run(&["schedule", "report"]).await;
    assert_eq!(missing_cron.code, 2);
    assert!(missing_cron.stderr.contains("--cron"), "{missing_cron:?}");
    let bad_cron = ada.run(&["schedule", "report", "-c", "61 * * * *"]).await;
    assert_eq!(bad_cron.code, 2);
    assert!(bad_cron.stderr.contains("cron"), "{bad_cron:?}");

    let listed = ada.run(&["schedule", "list"]).await;
    assert!(
        listed
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("{id} ")),
        "{listed:?}"
    );
    let described = ada.run(&["schedule", "describe", &id]).await;
    assert!(
        described
            .stdout
            .contains(&format!("{:<40} 0 2 * * *\n", "Cron")),
        "{described:?}"
    );
    assert!(
        described.stdout.contains(&format!("{:<40} eu\n", "REGION")),
        "{described:?}"
    );

    let paused = ada
        .run(&["schedule", "pause", &id, "-o", "json"])
        .await
        .json();
    assert_eq!(
        (paused["enabled"].as_bool(), &paused["nextFireAt"]),
        (Some(false), &Value::Null)
    );
    let resumed = ada
        .run(&["schedule", "resume", &id, "-o", "json"])
        .await
        .json();
    assert_eq!(resumed["enabled"], true);
    let updated = ada
        .run(&[
            "schedule",
            "update",
            &id,
            "-c",
            "30 6 * * 1-5",
            "--timezone",
            "Europe/Berlin",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(
        (updated["cron"].as_str(), updated["timezone"].as_str()),
        (Some("30 6 * * 1-5"), Some("Europe/Berlin"))
    );
    assert_eq!(
        updated["tags"],
        json!(["nightly", "eu"]),
        "what is not given is kept"
    );
    assert_eq!(
        updated["args"],
        json!([{ "name": "REGION", "value": "eu" }])
    );

    let variables = trigger_schedule::Variables { id: id.clone() };
    app.api_as(&admin).ok::<TriggerSchedule>(variables).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let runs = ada
            .run(&["schedule", "runs", &id, "-o", "json"])
            .await
            .json();
        if runs[0]["execution"]["status"] == "SUCCEEDED" {
            assert_eq!(runs[0]["outcome"], "TRIGGERED");
            break;
        }
        assert!(Instant::now() < deadline, "{runs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let removed = ada.run(&["schedule", "remove", &id]).await;
    assert_eq!(removed.code, 0, "{removed:?}");
    assert!(
        removed
            .stdout
            .contains(&format!("Successfully removed the scheduled job ID: {id}"))
    );
    let again = ada.run(&["schedule", "describe", &id]).await;
    assert_eq!(again.code, 2, "{again:?}");
    let empty = ada.run(&["schedule", "list"]).await;
    assert_eq!(empty.stdout, "No scheduled jobs found\n");
}

#[tokio::test]
async fn procs_files_and_secrets_never_show_a_value() {
    let (app, admin) = auth_app().await;
    let root = User::new(app.address.to_string(), "admin@example.com", &admin);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deploy.yaml");
    std::fs::write(
        &file,
        "name: deploy\ndescription: Deploys\ncommand: [sh, -c, 'echo \"token is $API_TOKEN\"']\nsecrets:\n- name: API_TOKEN\n  description: the deploy token\n",
    )
    .unwrap();
    let applied = root
        .run(&["procs", "apply", "-f", file.to_str().unwrap()])
        .await;
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(
        applied.stdout.contains("Applied proc deploy (version 1)"),
        "{applied:?}"
    );
    let exported = root.run(&["procs", "export", "deploy"]).await;
    assert!(
        exported.stdout.starts_with("name: deploy\n"),
        "{exported:?}"
    );
    std::fs::write(&file, exported.stdout.replace("Deploys", "Deploys it")).unwrap();
    let reapplied = root
        .run(&["procs", "apply", "-f", file.to_str().unwrap()])
        .await;
    assert!(reapplied.stdout.contains("(version 2)"), "{reapplied:?}");
    std::fs::write(&file, "name: Bad Name\ncommand: [true]\n").unwrap();
    let invalid = root
        .run(&["procs", "apply", "-f", file.to_str().unwrap()])
        .await;
    assert_eq!(invalid.code, 2);
    assert!(
        invalid.stderr.contains("deploy.yaml") && invalid.stderr.contains("name"),
        "{invalid:?}"
    );

    let unset = root
        .run(&["secrets", "list", "deploy", "-o", "json"])
        .await
        .json();
    assert_eq!(unset[0]["isSet"], false);
    let secret = "s3cr3t-from-stdin";
    let set = root
        .run_with_input(
            &["secrets", "set", "deploy", "API_TOKEN"],
            Some(&format!("{secret}\n")),
        )
        .await;
    assert_eq!(set.code, 0, "{set:?}");
    assert!(
        set.stdout.contains("Secret API_TOKEN of deploy set."),
        "{set:?}"
    );
    let listed = root.run(&["secrets", "list", "deploy"]).await;
    assert!(
        listed.stdout.contains("API_TOKEN") && listed.stdout.contains("yes"),
        "{listed:?}"
    );
    let ran = root.run(&["execute", "deploy"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("token is ***\n"), "{ran:?}");
    let empty = root
        .run_with_input(&["secrets", "set", "deploy", "API_TOKEN"], Some(""))
        .await;
    assert_eq!(empty.code, 2, "{empty:?}");
    let outsider_token = app.issue_token("eve@example.com", &[], false).await;
    let outsider = User::new(app.address.to_string(), "eve@example.com", &outsider_token);
    let refused = outsider
        .run_with_input(
            &["secrets", "set", "deploy", "API_TOKEN"],
            Some("other-s3cret"),
        )
        .await;
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("access denied"), "{refused:?}");
    for output in [&set, &listed, &ran, &refused] {
        assert!(
            !output.stdout.contains(secret) && !output.stderr.contains(secret),
            "{output:?}"
        );
        assert!(!output.stderr.contains("other-s3cret"), "{output:?}");
    }
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let (app, admin) = auth_app().await;
    let mut ops_only = proc("ops-only", &["true"]);
    ops_only.authorized_groups = Some(vec!["ops".to_owned()]);
    app.api_as(&admin).define_proc(ops_only).await;
    let port = proctor_tests::free_port();
    let nowhere = User::new(format!("127.0.0.1:{port}"), "a@b.c", "t");
    let ran = nowhere.run(&["list"]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr.contains("cannot reach proctord") && ran.stderr.contains("PROCTOR_HOST"),
        "{ran:?}"
    );

    let unconfigured = User::new("", "", "");
    let mut command = unconfigured.command(&["list"]);
    command.env_remove("PROCTOR_HOST");
    let output = command.output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Nothing configured: the CLI tries the server's own default address and says so.
    assert!(
        stderr.contains("http://127.0.0.1:5001/graphql") && stderr.contains("proctor context"),
        "{stderr}"
    );

    let wrong = User::new(app.address.to_string(), "admin@example.com", "not-a-token");
    let ran = wrong.run(&["list"]).await;
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains("not authenticated") && ran.stderr.contains("proctor login"),
        "{ran:?}"
    );

    let token = app.issue_token("ada@example.com", &["dev"], false).await;
    let ada = User::new(app.address.to_string(), "ada@example.com", &token);
    let ran = ada.run(&["execute", "ops-only"]).await;
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains("access denied") && ran.stderr.contains("ops"),
        "{ran:?}"
    );
    let ran = ada.run(&["frobnicate"]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
}

#[tokio::test]
async fn logs_follow_resumes_after_the_server_drops_the_socket() {
    let app = TestApp::spawn().await;
    let script = "for i in $(seq 1 12); do echo line-$i; sleep 0.25; done";
    app.api().define_proc(proc("ticker", &sh(script))).await;
    let id = app.api().execute("ticker", &[]).await;
    let proxy = DroppingProxy::start(app.address).await;
    let user = User::new(proxy.address.to_string(), "", "");
    let mut child = user
        .command(&["logs", "-f", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        let stdout = child.stdout.take().unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                seen.lock().unwrap().push(line);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "no lines arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.cut();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    reader.await.unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let expected: Vec<String> = (1..=12).map(|i| format!("line-{i}")).collect();
    assert_eq!(*seen.lock().unwrap(), expected, "every line once, in order");
    assert!(
        stderr.contains("connection lost") && stderr.contains("resuming after line"),
        "{stderr}"
    );
}

#[tokio::test]
async fn every_cli_operation_validates_against_the_server_schema() {
    let app = TestApp::spawn().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/graphql");
    let variables = |name: &str| match name {
        "DescribeProc" | "ExportProc" => json!({ "name": "x" }),
        "ApplyProcFile" => json!({ "content": "name: x\ncommand: [true]\n" }),
        "Execute" | "ValidateArgs" => {
            json!({ "proc": "x", "args": [{ "name": "A", "value": "1" }] })
        }
        "GetExecution" | "CancelExecution" | "DeleteSchedule" | "GetSchedule" | "FollowStatus"
        | "TriggerSchedule" => json!({ "id": "1" }),
        "CreateToken" | "RevokeToken" => json!({ "email": "x@example.com" }),
        "DeleteProc" | "ProcHistory" => json!({ "name": "x" }),
        "RollbackProc" => json!({ "name": "x", "version": 1 }),
        "CronPreview" => json!({ "cron": "0 0 * * * *", "count": 3 }),
        "DeleteSecret" => json!({ "proc": "x", "key": "K" }),
        "ExecutionLogPage" | "FollowLogs" => json!({ "id": "1", "afterSeq": 0, "first": 10 }),
        "ListExecutions" => {
            json!({ "first": 5, "filter": { "status": ["FAILED"], "trigger": "API" } })
        }
        "CreateSchedule" => {
            json!({ "input": { "proc": "x", "cron": "* * * * *", "overlapPolicy": "FORBID" } })
        }
        "UpdateSchedule" => json!({ "id": "1", "input": { "proc": "x", "cron": "* * * * *" } }),
        "SetScheduleEnabled" => json!({ "id": "1", "enabled": true }),
        "ListSchedules" => json!({ "first": 5, "filter": { "tag": "t" } }),
        "ScheduleRuns" => json!({ "id": "1", "first": 5 }),
        "SetSecret" => json!({ "proc": "x", "secrets": [{ "key": "K", "value": "v" }] }),
        "ListSecrets" => json!({ "proc": "x" }),
        _ => json!({}),
    };
    let mut checked = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let document = async_graphql::parser::parse_query(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (name, _) in document.operations.iter() {
            let name = name.expect("every CLI operation is named").to_string();
            let request = async_graphql::Request::new(text.clone())
                .operation_name(name.as_str())
                .variables(async_graphql::Variables::from_json(variables(&name)));
            let response = if name == "FollowLogs" || name == "FollowStatus" {
                use futures::StreamExt;
                app.schema
                    .execute_stream(request)
                    .next()
                    .await
                    .expect("an answer")
            } else {
                app.schema.execute(request).await
            };
            for error in &response.errors {
                // Domain errors (NOT_FOUND, …) carry a code; validation errors do not.
                assert!(
                    error
                        .extensions
                        .as_ref()
                        .is_some_and(|e| e.get("code").is_some()),
                    "{} {name} does not validate against the schema: {}",
                    file.display(),
                    error.message
                );
            }
            checked.push(name);
        }
    }
    assert!(
        checked.len() >= 32,
        "every operation file was read: {checked:?}"
    );
    // The check can fail: an operation that does not validate has an error without a code.
    let broken = app.schema.execute("query Broken { procs { nope } }").await;
    assert!(
        broken.errors.iter().any(|e| e
            .extensions
            .as_ref()
            .is_none_or(|x| x.get("code").is_none())),
        "{:?}",
        broken.errors
    );
}

/// Runs `proctor args…` on a pseudo-terminal (util-linux `script`) and returns what it printed.
async fn run_on_a_terminal(user: &User, args: &[&str]) -> String {
    let std_command = user.command(args);
    let program = std_command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let line: Vec<String> = std::iter::once(program)
        .chain(args.iter().map(|arg| (*arg).to_owned()))
        .map(|word| format!("'{}'", word.replace('\'', "'\\''")))
        .collect();
    let mut command = Command::new("script");
    command
        .args(["-qec", &line.join(" "), "/dev/null"])
        .env("LOCAL_CONFIG_DIR", user.config_dir.path())
        .env("XDG_CONFIG_HOME", user.config_dir.path())
        .env("PROCTOR_HOST", &user.host)
        .env("EMAIL_ID", &user.email)
        .env("ACCESS_TOKEN", &user.token)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("script finishes")
        .expect("script runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn log_lines_lose_their_terminal_control_sequences_on_a_terminal_unless_raw() {
    let (app, admin) = auth_app().await;
    let script = "printf 'a\\033]0;owned\\007b \\033[31mred\\033[0m \\033]52;c;ZWNobyBoaQ==\\033\\\\done\\n'";
    app.api_as(&admin)
        .define_proc(proc("tricky", &sh(script)))
        .await;
    let ada = User::new(app.address.to_string(), "admin@example.com", &admin);
    let ran = ada.run(&["execute", "tricky"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let id = ran
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("ID"))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("{ran:?}"));
    // Piped: exactly what the run wrote (scripts may want it).
    let piped = ada.run(&["logs", &id]).await;
    assert!(piped.stdout.contains("\u{1b}]0;owned\u{7}"), "{piped:?}");
    // On a terminal: text only.
    let shown = run_on_a_terminal(&ada, &["logs", &id]).await;
    assert!(shown.contains("ab red done"), "{shown:?}");
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    // --raw on a terminal: as written.
    let raw = run_on_a_terminal(&ada, &["logs", "--raw", &id]).await;
    assert!(raw.contains("\u{1b}[31mred"), "{raw:?}");
}
