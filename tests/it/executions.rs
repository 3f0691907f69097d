//! Running procs and following them live, over real HTTP and graphql-transport-ws, on both
//! stacks (SQLite + in-memory bus, Postgres + Redis), through the typed API.

use std::time::Duration;

use proctor_tests::api::{
    ExecutionById, ExecutionStatus::*, LogStream, StoredLogs, WatchEvents, arg, execution_by_id,
    no_filter, numbered, proc, sh, stored_logs, watch_events,
};
use proctor_tests::{Stack, TestApp, live_members};

async fn every_line_arrives_in_order_then_success(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(proc(
        "greet",
        &sh("for i in $(seq 1 50); do echo \"line $i\"; done; echo warn >&2"),
    ))
    .await;

    // Subscribed before the run exists: every transition of it, in order. executionEvents has
    // no backlog, so first make sure the subscription is live: wait for a warm-up run's events.
    let watch = watch_events::Variables {
        proc: Some("greet".to_owned()),
    };
    let mut events = api.open::<WatchEvents>(watch).await;
    loop {
        let warm_up = api.execute("greet", &[]).await;
        let arrived = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
        api.await_final(&warm_up).await;
        if arrived.is_ok() {
            break;
        }
    }
    let id = api.execute("greet", &[]).await;

    let received = api.numbered_lines(&id, 0).await;
    let mut expected: Vec<(i64, String)> = (1..=50).map(|n| (n, format!("line {n}"))).collect();
    expected.push((51, "warn".to_owned()));
    assert_eq!(received, expected);

    let done = api.await_final(&id).await;
    assert_eq!(done.status, Succeeded, "{done:?}");
    assert_eq!(done.exit_code, Some(0));
    assert!(done.started_at.is_some() && done.finished_at.is_some());

    let mut seen = Vec::new();
    while seen.last() != Some(&Succeeded) {
        let event = events
            .next()
            .await
            .expect("events go on")
            .expect("an event");
        if event.execution_events.id == id {
            seen.push(event.execution_events.status);
        }
    }
    assert_eq!(seen, [Pending, Starting, Running, Succeeded]);

    let stored = api
        .ok::<StoredLogs>(stored_logs::Variables {
            id: id.clone(),
            after_seq: Some(49),
            first: None,
        })
        .await;
    let tail: Vec<(i64, LogStream, String)> = stored
        .execution
        .expect("the execution")
        .logs
        .into_iter()
        .map(|line| (line.seq, line.stream, line.line))
        .collect();
    assert_eq!(
        tail,
        [
            (50, LogStream::Stdout, "line 50".to_owned()),
            (51, LogStream::Stderr, "warn".to_owned())
        ]
    );
}

async fn late_joiners_and_resumers_get_each_line_once(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(proc("flood", &["seq", "1", "10000"])).await;
    let id = api.execute("flood", &[]).await;
    assert_eq!(api.await_final(&id).await.status, Succeeded);
    assert_eq!(
        api.numbered_lines(&id, 0).await,
        numbered(1..=10_000),
        "a late subscriber gets all"
    );
    assert_eq!(
        api.numbered_lines(&id, 9_000).await,
        numbered(9_001..=10_000),
        "resume gets the rest"
    );

    // Joining while it runs: backlog, then live, no gap and no duplicate.
    let id = api.dripping_run().await;
    let (from_start, resumed) =
        tokio::join!(api.numbered_lines(&id, 0), api.numbered_lines(&id, 100));
    assert_eq!(from_start, numbered(1..=300));
    assert_eq!(resumed, numbered(101..=300));
}

async fn forty_subscribers_on_a_small_pool_each_get_every_line_once(stack: Stack) {
    // Three pooled connections (Postgres; SQLite has four) shared by the runner storing output
    // and forty subscribers catching up from the database at different points.
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&["--postgres-max-connections=3"])
        .try_spawn()
        .await
    else {
        return;
    };
    let api = app.api();
    api.define_proc(proc(
        "burst",
        &sh("for i in $(seq 0 19); do seq $((i * 100 + 1)) $((i * 100 + 100)); sleep 0.05; done"),
    ))
    .await;
    let id = api.execute("burst", &[]).await;
    let subscribers = (0..40i64).map(|n| {
        let (api, id) = (&api, &id);
        async move {
            // Joining over the first second, from the start or from a later line.
            tokio::time::sleep(Duration::from_millis(25 * n as u64)).await;
            let after = (n % 4) * 250;
            (after, api.numbered_lines(id, after).await)
        }
    });
    for (after, received) in futures::future::join_all(subscribers).await {
        assert_eq!(received, numbered(after + 1..=2_000), "from line {after}");
    }
    assert_eq!(api.await_final(&id).await.status, Succeeded);
}

async fn cancel_stops_the_whole_process_group(stack: Stack) {
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&["--cancel-grace-seconds=2", "--max-parallel-runs=1"])
        .try_spawn()
        .await
    else {
        return;
    };
    let api = app.api();
    api.define_proc(proc("sleepy", &sh("sleep 300 & echo started; sleep 300")))
        .await;
    let running = api.execute("sleepy", &[]).await;
    assert_eq!(api.first_line(&running).await, "started");
    // With one slot, the next run waits as PENDING and can be cancelled there.
    let waiting = api.execute("sleepy", &[]).await;

    let pending = api.cancel(&waiting).await.expect("cancelled");
    assert_eq!(pending.status, Cancelled, "{pending:?}");
    assert_eq!(
        pending.reason.as_deref(),
        Some("cancelled before it started")
    );

    let cancelled = api.cancel(&running).await.expect("cancelled");
    assert_eq!(cancelled.status, Cancelled, "{cancelled:?}");
    let group: i32 = cancelled
        .executor_ref
        .expect("the process group")
        .parse()
        .unwrap();
    assert_eq!(
        live_members(group),
        Vec::<i32>::new(),
        "no process of group {group} is left"
    );

    let again = api.cancel(&running).await.expect_err("it ended already");
    assert_eq!(again.code, "CONFLICT", "{again:?}");
}

async fn every_ending_gets_its_state_and_reason(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    let mut slow = proc("slow", &["sleep", "30"]);
    slow.timeout_seconds = Some(1);
    api.define_proc(slow).await;
    api.define_proc(proc("broken", &sh("echo bye; exit 3")))
        .await;
    api.define_proc(proc("ghost", &["/nonexistent/proctor-test-binary"]))
        .await;
    let mut image_only = proc("image-only", &[]);
    image_only.command = None;
    image_only.image = Some("alpine:3".to_owned());
    api.define_proc(image_only).await;

    let cases = [
        ("slow", TimedOut, None, "exceeded its timeout of 1 s"),
        ("broken", Failed, Some(3), "exited with code 3"),
        ("ghost", CreationFailed, None, "cannot start"),
        ("image-only", CreationFailed, None, "has no command"),
    ];
    for (name, status, code, reason) in cases {
        let id = api.execute(name, &[]).await;
        let done = api.await_final(&id).await;
        assert_eq!(done.status, status, "{name}: {done:?}");
        assert_eq!(done.exit_code, code, "{name}: {done:?}");
        let shown = done.reason.as_deref().unwrap_or_default();
        assert!(shown.contains(reason), "{name}: {done:?}");
    }
}

async fn secrets_are_masked_in_stored_and_streamed_logs(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    const VALUE: &str = "tok-9f8e7d-do-not-print";
    let mut leaky = proc(
        "leaky",
        &sh("echo \"token=$TOKEN\"; echo \"twice $TOKEN $TOKEN\" >&2"),
    );
    leaky.secrets = Some(vec![proctor_tests::api::upsert_proc::SecretSpecInput {
        name: "TOKEN".to_owned(),
        description: None,
    }]);
    api.define_proc(leaky).await;
    let refused = api.try_execute("leaky", &[]).await.expect_err("refused");
    assert_eq!(refused.code, "CONFLICT", "an unset secret blocks the run");
    api.set_secrets("leaky", &[("TOKEN", VALUE)])
        .await
        .expect("set");
    let id = api.execute("leaky", &[]).await;
    let streamed = api.numbered_lines(&id, 0).await;
    assert_eq!(
        streamed,
        vec![(1, "token=***".to_owned()), (2, "twice *** ***".to_owned())]
    );
    let stored: Vec<String> = api
        .stored_lines(&id)
        .await
        .into_iter()
        .map(|line| line.line)
        .collect();
    assert_eq!(stored, ["token=***", "twice *** ***"]);
    assert!(!stored.concat().contains(VALUE));
}

async fn fifty_concurrent_executions_finish_with_all_lines(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(proc("count", &["seq", "1", "100"])).await;
    let ids = futures::future::join_all((0..50).map(|_| api.execute("count", &[]))).await;
    let outcomes = futures::future::join_all(
        ids.iter()
            .map(|id| async { (api.await_final(id).await, api.numbered_lines(id, 0).await) }),
    )
    .await;
    for (state, received) in outcomes {
        assert_eq!(state.status, Succeeded, "{state:?}");
        assert_eq!(received, numbered(1..=100));
    }
}

async fn arguments_are_validated_and_passed_with_context(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    let mut env = proc(
        "env",
        &sh(
            "echo \"$GREETING|$TIMES|$JOB_NAME|$EXECUTION_ID|$EXECUTION_NAME|${PROCTOR_DATA_DIR:-clean}\"",
        ),
    );
    let mut greeting = arg("GREETING");
    greeting.required = Some(true);
    let mut times = arg("TIMES");
    times.type_ = Some(proctor_tests::api::upsert_proc::ArgType::INT);
    times.default = Some("2".to_owned());
    env.args = Some(vec![greeting, times]);
    api.define_proc(env).await;
    let bad = api
        .try_execute("env", &[("TIMES", "x")])
        .await
        .expect_err("refused");
    assert_eq!(bad.code, "BAD_USER_INPUT");
    assert_eq!(bad.field.as_deref(), Some("args.GREETING"));
    let id = api.execute("env", &[("GREETING", "hi")]).await;
    let received = api.numbered_lines(&id, 0).await;
    assert_eq!(
        received,
        vec![(1, format!("hi|2|env|{id}|proctor-{id}-env|clean"))]
    );
    let execution = api.execution(&id).await.expect("the execution");
    let args: Vec<(String, String)> = execution
        .args
        .into_iter()
        .map(|arg| (arg.name, arg.value))
        .collect();
    assert_eq!(
        args,
        [
            ("GREETING".to_owned(), "hi".to_owned()),
            ("TIMES".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(execution.proc.map(|proc| proc.name).as_deref(), Some("env"));
}

async fn outsiders_can_neither_run_nor_watch(stack: Stack) {
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&["--auth-enabled"])
        .try_spawn()
        .await
    else {
        return;
    };
    let admin = app.issue_token("root@example.com", &[], true).await;
    let insider = app.issue_token("ops@example.com", &["ops"], false).await;
    let outsider = app.issue_token("dev@example.com", &["dev"], false).await;
    let (admin, insider, outsider) = (
        app.api_as(&admin),
        app.api_as(&insider),
        app.api_as(&outsider),
    );
    let mut task = proc("ops-task", &["echo", "ok"]);
    task.authorized_groups = Some(vec!["ops".to_owned()]);
    admin.define_proc(task).await;

    let refused = outsider
        .try_execute("ops-task", &[])
        .await
        .expect_err("refused");
    assert_eq!(refused.code, "FORBIDDEN", "{refused:?}");
    let id = insider.execute("ops-task", &[]).await;

    let watched = outsider
        .subscribe::<proctor_tests::api::FollowLogs>(proctor_tests::api::follow_logs::Variables {
            id: id.clone(),
            after_seq: None,
        })
        .await;
    assert!(
        matches!(&watched[..], [Err(failure)] if failure.code == "FORBIDDEN"),
        "{watched:?}"
    );
    let batched = outsider
        .subscribe::<proctor_tests::api::FollowLogBatches>(proctor_tests::api::batches_of(&id, 0))
        .await;
    assert!(
        matches!(&batched[..], [Err(failure)] if failure.code == "FORBIDDEN"),
        "{batched:?}"
    );
    let followed = outsider
        .subscribe::<proctor_tests::api::WatchStatus>(proctor_tests::api::watch_status::Variables {
            id: id.clone(),
        })
        .await;
    assert!(
        matches!(&followed[..], [Err(failure)] if failure.code == "FORBIDDEN"),
        "{followed:?}"
    );
    assert_eq!(insider.log_lines(&id).await, ["ok"]);

    let hidden = outsider
        .call::<ExecutionById>(execution_by_id::Variables { id: id.clone() })
        .await
        .expect_err("hidden");
    assert_eq!(hidden.code, "FORBIDDEN");
    let listed = outsider.executions(20, None, no_filter()).await.unwrap();
    assert!(listed.edges.is_empty(), "{listed:?}");
    let own = insider.executions(20, None, no_filter()).await.unwrap();
    let first = &own.edges[0].node;
    assert_eq!(
        (first.id.as_str(), first.user.as_deref()),
        (id.as_str(), Some("ops@example.com"))
    );
}

async fn output_is_capped_and_long_lines_are_split(stack: Stack) {
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&["--log-max-lines=100"])
        .try_spawn()
        .await
    else {
        return;
    };
    let api = app.api();
    api.define_proc(proc("chatty", &["seq", "1", "150"])).await;
    let id = api.execute("chatty", &[]).await;
    let received = api.numbered_lines(&id, 0).await;
    assert_eq!(received.len(), 101);
    assert_eq!(&received[..100], numbered(1..=100).as_slice());
    assert!(
        received[100].1.starts_with("[proctor] output truncated"),
        "{:?}",
        received[100]
    );
    assert_eq!(api.await_final(&id).await.status, Succeeded);

    api.define_proc(proc(
        "wide",
        &sh("head -c 40000 /dev/zero | tr '\\0' x; echo; echo after"),
    ))
    .await;
    let id = api.execute("wide", &[]).await;
    let pieces = api.log_lines(&id).await;
    assert_eq!(
        pieces.len(),
        4,
        "40000 bytes become three pieces, then the next line"
    );
    assert!(
        pieces[..3]
            .iter()
            .all(|piece| piece.len() <= 16 * 1024 && piece.bytes().all(|b| b == b'x'))
    );
    assert_eq!(pieces[..3].concat().len(), 40_000);
    assert_eq!(pieces[3], "after");
}

async fn executions_are_listed_newest_first_with_filters(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(proc("ok", &["true"])).await;
    api.define_proc(proc("bad", &["false"])).await;
    let mut ids = Vec::new();
    for name in ["ok", "bad", "ok", "ok"] {
        let id = api.execute(name, &[]).await;
        api.await_final(&id).await;
        ids.push(id);
    }
    let ids_of = |page: &proctor_tests::api::ExecutionPage| -> Vec<String> {
        page.edges.iter().map(|edge| edge.node.id.clone()).collect()
    };
    let page = api.executions(2, None, no_filter()).await.unwrap();
    assert_eq!(
        ids_of(&page),
        [ids[3].clone(), ids[2].clone()],
        "newest first"
    );
    assert!(page.page_info.has_next_page);
    let cursor = page.edges[1].cursor.clone();
    let next = api.executions(2, Some(cursor), no_filter()).await.unwrap();
    assert_eq!(ids_of(&next), [ids[1].clone(), ids[0].clone()]);

    let mut failed = no_filter();
    failed.status = Some(vec![Failed]);
    let failed = api.executions(2, None, failed).await.unwrap();
    assert_eq!(failed.edges[0].node.proc_name, "bad");
    let mut by_proc = no_filter();
    by_proc.proc = Some("bad".to_owned());
    by_proc.trigger = Some(proctor_tests::api::Trigger::Manual);
    assert_eq!(
        api.executions(2, None, by_proc).await.unwrap().edges.len(),
        1
    );
    let mut future = no_filter();
    future.created_after = Some("2999-01-01T00:00:00Z".parse().unwrap());
    assert!(
        api.executions(2, None, future)
            .await
            .unwrap()
            .edges
            .is_empty()
    );
    let bad_id = api
        .call::<ExecutionById>(execution_by_id::Variables {
            id: "abc".to_owned(),
        })
        .await
        .expect_err("not an id");
    assert_eq!(bad_id.code, "BAD_USER_INPUT");
    assert!(api.execution("999999").await.is_none());
}

async fn metrics_count_executions_lines_and_subscriptions(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(proc("metered", &["seq", "1", "3"])).await;
    let id = api.execute("metered", &[]).await;
    api.await_final(&id).await;
    let text = app.get_text("/metrics").await;
    for expected in [
        r#"proctor_executions_total{proc="metered",status="SUCCEEDED"} 1"#,
        r#"proctor_execution_duration_seconds_count{proc="metered"} 1"#,
        "proctor_executions_running 0",
        "proctor_log_lines_stored_total 3",
        r#"proctor_subscriptions_active{kind="executionStatus"} 0"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

async fn a_local_run_is_retried_and_succeeds_on_its_second_attempt(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    // A directory every account may read (runs may use another account than the tests).
    let flags = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        flags.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let ok = flags.path().join("ok");
    let go = flags.path().join("go");
    // Attempt 1 (no `ok` yet) says so, waits for `go`, and exits 3; attempt 2 sees `ok`.
    let script = format!(
        "if [ -e {ok} ]; then echo second; exit 0; fi; echo first; \
         while [ ! -e {go} ]; do sleep 0.05; done; exit 3",
        ok = ok.display(),
        go = go.display()
    );
    let mut flaky = proc("flaky", &sh(&script));
    flaky.retries = Some(2);
    api.define_proc(flaky).await;
    let id = api.execute("flaky", &[]).await;
    assert_eq!(api.first_line(&id).await, "first");
    std::fs::write(&ok, "").unwrap();
    std::fs::write(&go, "").unwrap();
    let done = api.await_final(&id).await;
    assert_eq!(done.status, Succeeded, "{done:?}");
    assert_eq!(done.exit_code, Some(0), "{done:?}");
    assert_eq!(
        api.log_lines(&id).await,
        [
            "first",
            "[proctor] attempt 2 (of 3; the previous one exited with code 3)",
            "second"
        ]
    );
    assert_eq!(api.execution(&id).await.expect("the execution").attempts, 2);
}

on_both_stacks!(
    every_line_arrives_in_order_then_success,
    late_joiners_and_resumers_get_each_line_once,
    forty_subscribers_on_a_small_pool_each_get_every_line_once,
    cancel_stops_the_whole_process_group,
    every_ending_gets_its_state_and_reason,
    secrets_are_masked_in_stored_and_streamed_logs,
    fifty_concurrent_executions_finish_with_all_lines,
    arguments_are_validated_and_passed_with_context,
    outsiders_can_neither_run_nor_watch,
    output_is_capped_and_long_lines_are_split,
    executions_are_listed_newest_first_with_filters,
    metrics_count_executions_lines_and_subscriptions,
    a_local_run_is_retried_and_succeeds_on_its_second_attempt,
);
