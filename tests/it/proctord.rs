//! The built `proctord` binary, end to end: the embedded default from an empty directory, and
//! Postgres + Redis with readiness following Redis down and back up.

use std::time::Duration;

use proctor_tests::api::upsert_proc::NotificationsInput;
use proctor_tests::api::{
    Api, ExecutionNotifications, ExecutionStatus, execution_notifications, proc, server_info, sh,
};
use proctor_tests::infra::{postgres_url, wait_until};
use proctor_tests::{Proctord, RedisServer, TestDatabase, proctord_command};
use serde_json::{Value, json};

fn get(url: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = proctor_tests::http_client()
            .get(url)
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    })
}

/// What the server at `base` says about itself, from a synchronous test.
fn server_info(base: &str) -> server_info::ServerInfoServerInfo {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(Api::at(base).server_info())
}

#[test]
fn the_embedded_default_serves_from_an_empty_directory_and_stops_on_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let mut command = proctord_command(directory.path());
    command.env("PROCTOR_APP_PORT", "0");
    let server = Proctord::spawn(command);

    assert_eq!(get(&server.url("/ping")), (200, "pong".to_owned()));
    let info = server_info(&server.url(""));
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.storage, server_info::StorageBackend::SQLITE);
    assert_eq!(info.event_bus, server_info::EventBusKind::MEMORY);
    assert_eq!(info.executor, server_info::ExecutorKind::LOCAL);
    assert!(!info.auth_enabled);
    let (status, _) = get(&server.url("/readyz"));
    assert_eq!(status, 200);
    let database = directory.path().join(".proctor").join("proctor.db");
    assert!(database.exists(), "the SQLite file is in ./.proctor");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(directory.path().join(".proctor"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the data directory is private");
        let key_file = directory.path().join(".proctor").join("secret.key");
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the generated secret key file is private"
        );
    }

    let stderr_before_stop = server.stderr();
    assert!(
        stderr_before_stop.contains("listening on http://127.0.0.1:"),
        "{stderr_before_stop}"
    );
    let status = server.terminate();
    assert!(status.success(), "a graceful stop exits 0, got {status:?}");
}

#[test]
#[cfg_attr(
    any(proctor_no_postgres, proctor_no_redis_server),
    ignore = "needs Postgres and the redis-server program: set PROCTOR_TEST_DATABASE_URL, or run ./tests/run.sh"
)]
fn with_postgres_and_redis_readiness_follows_redis_without_a_restart() {
    let Some(admin_url) = postgres_url() else {
        return;
    };
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime.block_on(TestDatabase::postgres(&admin_url));
    let directory = tempfile::tempdir().unwrap();

    let configure = |command: &mut std::process::Command| {
        command
            .env("PROCTOR_DATABASE_URL", database.url())
            .env("PROCTOR_REDIS_URL", redis.url())
            .env("PROCTOR_APP_PORT", "0");
    };

    // Without migrations the server refuses to start and says how to fix it.
    let mut unmigrated = proctord_command(directory.path());
    configure(&mut unmigrated);
    let refused = unmigrated.output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("PROCTOR_DATABASE_URL"), "{stderr}");
    assert!(stderr.contains("proctord migrate up"), "{stderr}");

    let mut migrate = proctord_command(directory.path());
    configure(&mut migrate);
    let migrated = migrate.args(["migrate", "up"]).output().unwrap();
    assert!(
        migrated.status.success(),
        "migrate up failed: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let mut serve = proctord_command(directory.path());
    configure(&mut serve);
    let server = Proctord::spawn(serve);
    let readyz = server.url("/readyz");
    assert!(
        wait_until(Duration::from_secs(10), || get(&readyz).0 == 200),
        "ready with Postgres and Redis up: {:?}",
        get(&readyz)
    );
    let info = server_info(&server.url(""));
    assert_eq!(
        (info.storage, info.event_bus),
        (
            server_info::StorageBackend::POSTGRES,
            server_info::EventBusKind::REDIS
        )
    );

    redis.stop();
    assert!(
        wait_until(Duration::from_secs(10), || get(&readyz).0 == 503),
        "not ready once Redis is gone"
    );
    let (_, body) = get(&readyz);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["down"], json!(["redis"]), "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(
        get(&server.url("/ping")),
        (200, "pong".to_owned()),
        "still serving"
    );

    redis.resume();
    assert!(
        wait_until(Duration::from_secs(15), || get(&readyz).0 == 200),
        "ready again once Redis is back, without a restart: {:?}\n{}",
        get(&readyz),
        server.stderr()
    );
    assert!(server.terminate().success());
}

#[test]
fn migrate_status_down_and_up_report_what_they_did() {
    let directory = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = proctord_command(directory.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "proctord {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };

    let total =
        <proctor_migration::Migrator as proctor_migration::MigratorTrait>::migrations().len();
    let status = run(&["migrate", "status"]);
    assert_eq!(status.lines().count(), total, "{status}");
    assert!(
        status.lines().all(|line| line.starts_with("pending")),
        "{status}"
    );

    let up = run(&["migrate", "up"]);
    assert!(
        up.contains(&format!("applied {total} migration(s)")),
        "{up}"
    );
    assert!(run(&["migrate", "up"]).contains("applied 0 migration(s)"));
    assert!(
        run(&["migrate", "status"])
            .lines()
            .all(|line| line.starts_with("applied"))
    );

    assert!(run(&["migrate", "down", "--steps", "2"]).contains("rolled back 2 migration(s)"));
    let status = run(&["migrate", "status"]);
    assert_eq!(
        status.lines().filter(|l| l.starts_with("pending")).count(),
        2,
        "{status}"
    );

    assert!(run(&["migrate", "down", "--all"]).contains("0 remain applied"));
}

#[test]
fn schema_prints_the_committed_sdl() {
    let directory = tempfile::tempdir().unwrap();
    let output = proctord_command(directory.path())
        .arg("schema")
        .output()
        .unwrap();
    assert!(output.status.success());
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/schema.graphql"),
    )
    .unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), committed);
}

/// Runs `proc` on a `proctord` child and returns its final execution and its log lines.
/// Runs `proc` with `args` on the server at `base`; its final state and its lines.
async fn run_to_end(
    base: &str,
    proc: &str,
    args: &[(&str, &str)],
) -> (proctor_tests::api::RunState, Vec<String>) {
    let api = Api::at(base);
    let id = api.execute(proc, args).await;
    // Followed live, while it runs.
    let (lines, last) = tokio::join!(api.log_lines(&id), api.await_final(&id));
    (last, lines)
}

#[test]
fn the_examples_run_and_a_crash_leaves_unfinished_runs_lost_and_their_processes_killed() {
    let directory = tempfile::tempdir().unwrap();
    let start = || {
        let mut command = proctord_command(directory.path());
        command.env("PROCTOR_APP_PORT", "0");
        Proctord::spawn(command)
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = start();
    let base = server.url("");
    let (id, group) = runtime.block_on(async {
        let (hello, lines) = run_to_end(&base, "say-hello", &[("NAME", "Ada")]).await;
        assert_eq!(hello.status, ExecutionStatus::Succeeded);
        assert_eq!(lines, ["Hello, Ada!"]);
        let (_, lines) = run_to_end(&base, "countdown", &[("SECONDS", "2")]).await;
        assert_eq!(lines, ["2", "1", "liftoff"]);
        let (_, lines) = run_to_end(&base, "secret-demo", &[]).await;
        assert_eq!(lines[0], "Calling the demo API with token ***");

        // A proc that survives its output pipe breaking: only being killed ends it.
        let api = Api::at(&base);
        let script = "trap '' PIPE; while :; do echo tick; sleep 0.2; done";
        api.define_proc(proc("stubborn", &sh(script))).await;
        let id = api.execute("stubborn", &[]).await;
        let group = api.running_group(&id).await;
        (id, group)
    });
    drop(server); // SIGKILL: a crash, not a shutdown.
    // The run outlived its server, ignoring the broken pipe.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !proctor_tests::live_members(group).is_empty(),
        "the orphaned run is still alive before the restart"
    );

    let restarted = start();
    let state = runtime.block_on(async {
        let api = Api::at(&restarted.url(""));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let state = api.execution(&id).await.expect("the run");
            if state.status != ExecutionStatus::Running || std::time::Instant::now() > deadline {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let survivors = proctor_tests::live_members(group);
    if !survivors.is_empty() {
        // Clean up before failing.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status();
    }
    assert_eq!(state.status, ExecutionStatus::Lost, "{state:?}");
    let reason = state.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("its supervisor stopped while it was RUNNING"),
        "{state:?}"
    );
    assert!(
        reason.contains("was still running and was stopped"),
        "{state:?}"
    );
    assert_eq!(
        survivors,
        Vec::<i32>::new(),
        "no process of the run survives the restart"
    );
    assert!(restarted.terminate().success());
}

#[test]
fn sigterm_stops_local_runs_records_them_cancelled_and_leaves_no_process() {
    let directory = tempfile::tempdir().unwrap();
    let start = || {
        let mut command = proctord_command(directory.path());
        command
            .env("PROCTOR_APP_PORT", "0")
            .env("PROCTOR_SHUTDOWN_GRACE_SECONDS", "1")
            .env("PROCTOR_CANCEL_GRACE_SECONDS", "1");
        Proctord::spawn(command)
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = start();
    let base = server.url("");
    // It ignores SIGTERM: only SIGKILL, after the grace periods, ends it.
    let (id, group) = runtime.block_on(async {
        let api = Api::at(&base);
        let script = "trap '' TERM; sleep 300 & while :; do echo tick; sleep 0.2; done";
        api.define_proc(proc("deaf", &sh(script))).await;
        let id = api.execute("deaf", &[]).await;
        let group = api.running_group(&id).await;
        (id, group)
    });
    assert!(server.terminate().success(), "a clean exit after SIGTERM");
    let survivors = proctor_tests::live_members(group);
    if !survivors.is_empty() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status();
    }
    assert_eq!(
        survivors,
        Vec::<i32>::new(),
        "no process of the run outlives its server"
    );

    let restarted = start();
    let restarted_api = Api::at(&restarted.url(""));
    let state = runtime
        .block_on(restarted_api.execution(&id))
        .expect("the run");
    assert_eq!(state.status, ExecutionStatus::Cancelled, "{state:?}");
    assert_eq!(
        state.reason.as_deref(),
        Some("server shut down"),
        "{state:?}"
    );
    assert!(restarted.terminate().success());
}

#[test]
fn a_manual_runs_failure_is_notified_once_per_channel_even_across_a_kill_9() {
    let directory = tempfile::tempdir().unwrap();
    // The receivers are down at first: the notifications wait in the outbox.
    let (smtp_port, http_port) = (proctor_tests::free_port(), proctor_tests::free_port());
    let start = || {
        let mut command = proctord_command(directory.path());
        command
            .env("PROCTOR_APP_PORT", "0")
            .env("PROCTOR_MAIL_SERVER_HOST", "127.0.0.1")
            .env("PROCTOR_MAIL_SERVER_PORT", smtp_port.to_string())
            .env("PROCTOR_MAIL_TLS", "none")
            .env("PROCTOR_MAIL_FROM", "proctor@example.com")
            .env("PROCTOR_NOTIFY_ALLOWED_HOSTS", "127.0.0.1");
        Proctord::spawn(command)
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = start();
    let base = server.url("");
    let hook = |path: &str| format!("http://127.0.0.1:{http_port}{path}");
    let id = runtime.block_on(async {
        let api = Api::at(&base);
        let mut breaks = proc("breaks", &sh("exit 4"));
        breaks.notifications = Some(NotificationsInput {
            emails: Some(vec!["dev@example.com".to_owned()]),
            slack_webhook_url: Some(hook("/slack/T0/B0/secret")),
            webhook_url: Some(hook("/events")),
            on: Some(vec!["FAILED".to_owned(), "TIMED_OUT".to_owned()]),
        });
        let shown = api
            .define_proc(breaks)
            .await
            .notifications
            .expect("notifications");
        assert_eq!(shown.emails, ["dev@example.com"]);
        assert!(shown.slack);
        assert_eq!(shown.webhook_url, Some(hook("/events")));
        assert_eq!(
            shown.on,
            [ExecutionStatus::Failed, ExecutionStatus::TimedOut]
        );
        let id = api.execute("breaks", &[]).await;
        // Killed as soon as the final state shows, with every notification still pending.
        loop {
            let variables = execution_notifications::Variables { id: id.clone() };
            let state = api
                .ok::<ExecutionNotifications>(variables)
                .await
                .execution
                .expect("the run");
            if state.status == ExecutionStatus::Failed {
                assert_eq!(state.notifications.len(), 3, "{state:?}");
                let pending = execution_notifications::NotificationState::PENDING;
                assert!(
                    state.notifications.iter().all(|n| n.state == pending),
                    "{state:?}"
                );
                return id;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    drop(server); // SIGKILL

    let (mut smtp, mut hooks) = runtime.block_on(async {
        (
            proctor_tests::sinks::SmtpSink::start_on(smtp_port).await,
            proctor_tests::sinks::HttpSink::start_on(http_port).await,
        )
    });
    let restarted = start();
    runtime.block_on(async {
        let mail = smtp.next_mail(Duration::from_secs(30)).await;
        assert_eq!(mail.to, ["dev@example.com"]);
        assert!(
            mail.data.contains("Subject: breaks | execution FAILED"),
            "{}",
            mail.data
        );
        let mut paths = Vec::new();
        let mut keys = Vec::new();
        for _ in 0..2 {
            let request = hooks.next_request(Duration::from_secs(30)).await;
            keys.push(
                request.headers["idempotency-key"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
            paths.push(request.path);
        }
        paths.sort();
        assert_eq!(paths, ["/events", "/slack/T0/B0/secret"]);
        // Once each: nothing more arrives.
        assert!(
            smtp.maybe_next_mail(Duration::from_secs(3)).await.is_none(),
            "a second e-mail"
        );
        assert!(
            hooks
                .maybe_next_request(Duration::from_millis(500))
                .await
                .is_none(),
            "a second call"
        );

        let variables = execution_notifications::Variables { id: id.clone() };
        let shown = Api::at(&restarted.url(""))
            .ok::<ExecutionNotifications>(variables)
            .await
            .execution
            .expect("the run");
        let notifications = &shown.notifications;
        assert_eq!(notifications.len(), 3, "{shown:?}");
        for notification in notifications {
            let delivered = execution_notifications::NotificationState::DELIVERED;
            assert_eq!(notification.state, delivered, "{shown:?}");
            assert!(notification.delivered_at.is_some(), "{shown:?}");
            assert!(
                !notification.target.contains("secret"),
                "a Slack URL is a credential: {shown:?}"
            );
        }
        for key in keys {
            assert!(
                notifications.iter().any(|n| n.idempotency_key == key),
                "the receiver got the key GraphQL shows: {key} in {shown:?}"
            );
        }
        assert!(mail.data.contains("Message-ID: <proctor-"), "{}", mail.data);
    });
    assert!(restarted.terminate().success());
}

#[test]
fn a_bad_variable_stops_start_up_naming_it_and_an_empty_one_counts_as_unset() {
    let directory = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut command = proctord_command(directory.path());
        command.envs(env.iter().copied()).args(args);
        let output = command.output().expect("proctord runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    let (code, stderr) = run(&[("PROCTOR_APP_PORT", "http")], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "proctord: configuration error: PROCTOR_APP_PORT (--port): \"http\" is not a port number \
         (0-65535)"
    );
    // A key that is not one: named, never repeated.
    let (code, stderr) = run(&[("PROCTOR_SECRET_KEY", "aHVudGVyMi1ub3QtYS1rZXk=")], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("PROCTOR_SECRET_KEY (--secret-key): "),
        "{stderr}"
    );
    assert!(!stderr.contains("aHVudGVyMi1ub3QtYS1rZXk="), "{stderr}");
    // Empty variables, as templated deployments leave them, are the defaults.
    let empty = [
        ("PROCTOR_APP_PORT", ""),
        ("PROCTOR_DATABASE_URL", " "),
        ("PROCTOR_EXECUTOR", ""),
        ("PROCTOR_REGISTER_EXAMPLES", ""),
    ];
    let (code, stderr) = run(&empty, &["migrate", "status"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
#[cfg_attr(
    proctor_no_postgres,
    ignore = "needs Postgres: set PROCTOR_TEST_DATABASE_URL, or run ./tests/run.sh"
)]
fn a_kill_9_under_load_loses_no_returned_execution_and_no_line_a_subscriber_saw() {
    use std::sync::{Arc, Mutex};

    use graphql_client::GraphQLQuery as _;
    use proctor_tests::api::{FollowLogBatches, LineBatch, batches_of};
    use proctor_tests::graphql_ws::{Event, WsClient};

    let Some(admin_url) = postgres_url() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime.block_on(TestDatabase::postgres(&admin_url));
    let directory = tempfile::tempdir().unwrap();
    let start = || {
        let mut command = proctord_command(directory.path());
        command
            .env("PROCTOR_DATABASE_URL", database.url())
            .env("PROCTOR_AUTO_MIGRATE", "true")
            .env("PROCTOR_APP_PORT", "0");
        Proctord::spawn(command)
    };
    let server = start();
    let base = server.url("");
    let returned: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen: Arc<Mutex<Vec<(String, i64, String)>>> = Arc::default();
    let followed = runtime.block_on(async {
        let api = Api::at(&base);
        api.define_proc(proc("noop", &["true"])).await;
        api.define_proc(proc(
            "chatty",
            &sh("for i in $(seq 1 400); do echo line $i; sleep 0.005; done"),
        ))
        .await;
        // Four chatty runs, each followed in batches; what a subscriber receives is recorded.
        let ws = format!("{}/graphql/ws", base.replacen("http://", "ws://", 1));
        let mut followed = Vec::new();
        for _ in 0..4 {
            let id = api.execute("chatty", &[]).await;
            let client = WsClient::open(&ws).await.expect("a websocket");
            let request = serde_json::to_value(FollowLogBatches::build_query(batches_of(&id, 0)))
                .expect("requests serialise");
            let (_, mut events) = client.subscribe_request(request).await.expect("subscribed");
            let seen = Arc::clone(&seen);
            let run = id.clone();
            tokio::spawn(async move {
                let _client = client;
                while let Some(Event::Next(data)) = events.recv().await {
                    let Ok(batch) =
                        serde_json::from_value::<LineBatch>(data["executionLogBatches"].clone())
                    else {
                        break;
                    };
                    let mut seen = seen.lock().unwrap();
                    for line in batch.lines {
                        seen.push((run.clone(), line.seq, line.line));
                    }
                }
            });
            followed.push(id);
        }
        // Eight callers submit runs as fast as they can; an id counts once it was returned.
        // A call cut by the kill ends its caller (the test API treats a transport error as a
        // failure of that task, which is expected here).
        for _ in 0..8 {
            let (api, returned) = (Api::at(&base), Arc::clone(&returned));
            tokio::spawn(async move {
                loop {
                    let Ok(id) = api.try_execute("noop", &[]).await else {
                        return;
                    };
                    returned.lock().unwrap().push(id);
                }
            });
        }
        // Let dispatch and output go on for a while, then the crash.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while returned.lock().unwrap().len() < 100 || seen.lock().unwrap().len() < 100 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no load after a minute"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        followed
    });
    drop(server); // SIGKILL in the middle of submissions, state moves and output.
    let returned = returned.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    assert!(returned.len() >= 100 && seen.len() >= 100);

    let restarted = start();
    runtime.block_on(async {
        let api = Api::at(&restarted.url(""));
        for id in &returned {
            assert!(
                api.execution(id).await.is_some(),
                "execution {id} was returned to its caller, then lost"
            );
        }
        for id in &followed {
            let stored: Vec<(i64, String)> = api
                .stored_lines(id)
                .await
                .into_iter()
                .map(|line| (line.seq, line.line))
                .collect();
            for (run, seq, line) in seen.iter().filter(|(run, ..)| run == id) {
                assert!(
                    stored.contains(&(*seq, line.clone())),
                    "line {seq} of execution {run} ({line:?}) reached a subscriber, then was lost"
                );
            }
        }
    });
    assert!(restarted.terminate().success());
}

#[test]
fn v2_spellings_start_the_server_and_read_the_admin_group() {
    for spelling in ["s", "start"] {
        let directory = tempfile::tempdir().unwrap();
        let mut command = proctord_command(directory.path());
        command
            .arg(spelling)
            .env("PROCTOR_APP_PORT", "0")
            .env("PROCTOR_LOG_LEVEL", "info")
            .env("PROCTOR_REQUIRED_ADMIN_GROUP", "v2.admins");
        let server = Proctord::spawn(command);
        assert_eq!(
            get(&server.url("/readyz")).0,
            200,
            "proctord {spelling} serves"
        );
        assert!(
            server.stderr().contains("v2.admins"),
            "the v2 spelling of the admin group is read: {}",
            server.stderr()
        );
        server.terminate();
    }
    // The current name wins over the v2 spelling.
    let directory = tempfile::tempdir().unwrap();
    let output = proctord_command(directory.path())
        .env("PROCTOR_AUTH_REQUIRED_ADMIN_GROUP", "current.admins")
        .env("PROCTOR_REQUIRED_ADMIN_GROUP", " , ")
        .args(["migrate", "status"])
        .output()
        .expect("proctord runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "the v2 spelling is not read: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Alone, a bad v2 value is named as itself.
    let directory = tempfile::tempdir().unwrap();
    let mut command = proctord_command(directory.path());
    command
        .env("PROCTOR_REQUIRED_ADMIN_GROUP", " , ")
        .args(["migrate", "status"]);
    let output = command.output().expect("proctord runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PROCTOR_REQUIRED_ADMIN_GROUP"), "{stderr}");
}

#[test]
fn each_retired_v2_setting_is_named_in_one_warn_line_with_what_replaces_it() {
    use proctor_server::config::retired::RETIRED;
    let directory = tempfile::tempdir().unwrap();
    let mut command = proctord_command(directory.path());
    // A family (`PROCTOR_NEW_RELIC_*`) is tried with one member of it.
    let names: Vec<String> = RETIRED
        .iter()
        .map(|retired| retired.name.replace('*', "APP_NAME"))
        .collect();
    for name in &names {
        command.env(name, "set-by-a-v2-deployment");
    }
    let output = command
        .args(["migrate", "status"])
        .output()
        .expect("proctord runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for (name, retired) in names.iter().zip(RETIRED) {
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| line.contains(&format!("{name} is a Proctor v2 setting")))
            .collect();
        assert_eq!(lines.len(), 1, "{name}: {stderr}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        assert!(lines[0].contains(retired.instead), "{}", lines[0]);
        assert!(
            !lines[0].contains("set-by-a-v2-deployment"),
            "values are never printed: {}",
            lines[0]
        );
    }
}

#[test]
fn a_binary_copied_to_an_empty_directory_serves_its_ui_and_schema() {
    let elsewhere = tempfile::tempdir().unwrap();
    let binary = elsewhere.path().join("proctord");
    std::fs::copy(proctor_tests::infra::workspace_binary("proctord"), &binary).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(&binary);
    command.current_dir(data.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PROCTOR_") {
            command.env_remove(name);
        }
    }
    command.env("PROCTOR_APP_PORT", "0");
    let server = Proctord::spawn(command);
    assert!(
        server.stderr().contains("UI at http://"),
        "the start-up line says where the UI is: {}",
        server.stderr()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        proctor_server::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // The console's old address leads to it.
        let old = client
            .get(server.url("/playground/live"))
            .send()
            .await
            .unwrap();
        assert!(old.status().is_redirection(), "{}", old.status());
        assert_eq!(old.headers()["location"], "/");

        for (path, kind) in [
            ("/", "text/html"),
            ("/playground", "text/html"),
            ("/playground/console.js", "text/javascript"),
        ] {
            let plain = client
                .get(server.url(path))
                .header("accept-encoding", "identity")
                .send()
                .await
                .unwrap();
            assert_eq!(plain.status(), 200, "{path}");
            let content_type = plain.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(content_type.starts_with(kind), "{path}: {content_type}");
            assert!(plain.headers().get("content-encoding").is_none(), "{path}");
            let etag = plain.headers()["etag"].clone();
            let body = plain.bytes().await.unwrap();
            assert!(!body.is_empty(), "{path}");

            let again = client
                .get(server.url(path))
                .header("accept-encoding", "identity")
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap();
            assert_eq!(again.status(), 304, "{path}: unchanged, not sent again");

            let compressed = client
                .get(server.url(path))
                .header("accept-encoding", "gzip")
                .send()
                .await
                .unwrap();
            assert_eq!(compressed.headers()["content-encoding"], "gzip", "{path}");
            let packed = compressed.bytes().await.unwrap();
            let file = elsewhere.path().join("asset.gz");
            std::fs::write(&file, &packed).unwrap();
            let unpacked = std::process::Command::new("gzip")
                .arg("-dc")
                .arg(&file)
                .output()
                .expect("gzip runs");
            assert!(unpacked.status.success(), "{path}: a gzip stream");
            assert_eq!(
                unpacked.stdout, body,
                "{path}: the gzip copy is the same file"
            );
        }

        let sdl = client
            .get(server.url("/graphql/schema.graphql"))
            .send()
            .await
            .unwrap();
        assert_eq!(sdl.status(), 200);
        assert_eq!(sdl.text().await.unwrap(), proctor_schema::sdl());
    });
    server.terminate();
}

/// One exported span: name, ids, attributes as text.
#[derive(Clone, Debug)]
struct ExportedSpan {
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    attributes: std::collections::HashMap<String, String>,
}

/// A tiny OTLP/HTTP receiver: every span of every `POST /v1/traces` (protobuf).
async fn otlp_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<ExportedSpan>>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message as _;
    let spans: std::sync::Arc<std::sync::Mutex<Vec<ExportedSpan>>> = Default::default();
    let store = std::sync::Arc::clone(&spans);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = std::sync::Arc::clone(&store);
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut store = store.lock().unwrap();
                for span in request
                    .resource_spans
                    .into_iter()
                    .flat_map(|resource| resource.scope_spans)
                    .flat_map(|scope| scope.spans)
                {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|kv| {
                            let value = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                                Some(Any::StringValue(text)) => text,
                                Some(Any::IntValue(number)) => number.to_string(),
                                Some(other) => format!("{other:?}"),
                                None => String::new(),
                            };
                            (kv.key.clone(), value)
                        })
                        .collect();
                    store.push(ExportedSpan {
                        name: span.name,
                        trace: span.trace_id,
                        id: span.span_id,
                        parent: span.parent_span_id,
                        attributes,
                    });
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_is_exported_over_otlp_as_one_trace_under_its_request() {
    let (collector, spans) = otlp_receiver().await;
    let directory = tempfile::tempdir().unwrap();
    let mut command = proctord_command(directory.path());
    command
        .env("PROCTOR_APP_PORT", "0")
        .env("PROCTOR_OTLP_ENDPOINT", &collector)
        // The SDK's standard knob: export every 200 ms instead of 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        // JSON lines, with the request events that carry the request span's fields.
        .env("PROCTOR_LOG_FORMAT", "json")
        .env("PROCTOR_LOG_LEVEL", "info,tower_http=debug");
    let server = tokio::task::spawn_blocking(move || Proctord::spawn(command))
        .await
        .unwrap();
    let api = Api::at(&server.url(""));
    let mut traced = proc("traced", &sh("echo traced"));
    traced.secrets = Some(vec![proctor_tests::api::secret("TOKEN")]);
    api.define_proc(traced).await;
    const VALUE: &str = "otlp-never-sees-this-7f3a";
    api.set_secrets("traced", &[("TOKEN", VALUE)])
        .await
        .unwrap();
    let id = api.execute("traced", &[]).await;
    assert_eq!(
        api.await_final(&id).await.status,
        ExecutionStatus::Succeeded
    );

    let run = wait_until_async(Duration::from_secs(20), || {
        spans
            .lock()
            .unwrap()
            .iter()
            .find(|span| span.name == "run" && span.attributes.get("execution.id") == Some(&id))
            .cloned()
    })
    .await
    .unwrap_or_else(|| panic!("no run span for {id}: {:?}", spans.lock().unwrap()));
    // Up the parent links, inside the run's trace, to the HTTP request that submitted it.
    let mut chain = vec![run.name.clone()];
    let mut current = run.clone();
    let root = loop {
        if current.parent.is_empty() {
            break current;
        }
        let parent = wait_until_async(Duration::from_secs(10), || {
            spans
                .lock()
                .unwrap()
                .iter()
                .find(|span| span.id == current.parent)
                .cloned()
        })
        .await
        .unwrap_or_else(|| panic!("the parent of {chain:?} was never exported"));
        assert_eq!(
            parent.trace, run.trace,
            "one trace from the request to the run"
        );
        chain.push(parent.name.clone());
        current = parent;
    };
    assert!(chain.len() >= 3, "request → GraphQL → run: {chain:?}");
    assert_eq!(
        root.attributes.get("method").map(String::as_str),
        Some("POST"),
        "the root is the HTTP request: {root:?} ({chain:?})"
    );
    // The log lines of that request name its trace.
    let trace_hex: String = run.trace.iter().map(|byte| format!("{byte:02x}")).collect();
    assert!(
        server
            .stderr()
            .lines()
            .any(|line| line.contains(&format!("\"trace_id\":\"{trace_hex}\""))),
        "no log line names trace {trace_hex}: {}",
        server.stderr()
    );
    // The setSecrets request was traced too (parse spans print the request), never its value.
    let exported = spans.lock().unwrap().clone();
    assert!(
        exported.iter().any(|span| span
            .attributes
            .values()
            .any(|value| value.contains("setSecrets"))),
        "the secret's request was exported"
    );
    for span in &exported {
        for value in span.attributes.values() {
            assert!(
                !value.contains(VALUE),
                "a secret value in span {}: {value}",
                span.name
            );
        }
    }
    server.terminate();
}

/// Polls `probe` every 50 ms until it gives something or `within` passed.
async fn wait_until_async<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
