//! Running procs and following them live, over real HTTP and graphql-transport-ws, on both
//! stacks (SQLite + in-memory bus, Postgres + Redis).

use std::time::Duration;

use proctor_tests::graphql_ws::{Protocol, WsClient};
use proctor_tests::{Stack, TestApp, live_members};
use serde_json::{Value, json};

const UPSERT: &str = "mutation($i: ProcInput!) { upsertProc(input: $i) { name } }";
const EXECUTE: &str =
    "mutation($p: String!, $a: [ArgInput!]) { execute(proc: $p, args: $a) { id status trigger } }";
const STATUS: &str = "subscription($id: ID!) { executionStatus(id: $id) {
    id status exitCode reason executorRef startedAt finishedAt } }";
const LOGS: &str = "subscription($id: ID!, $after: Int) {
    executionLogs(id: $id, afterSeq: $after) { seq stream line } }";

async fn spawn(stack: Stack) -> Option<TestApp> {
    TestApp::builder().stack(stack).try_spawn().await
}

async fn define(app: &TestApp, name: &str, command: &[&str], extra: Value) {
    let mut input = json!({ "name": name, "command": command });
    for (key, value) in extra.as_object().unwrap() {
        input[key] = value.clone();
    }
    let created = app.graphql(UPSERT, json!({ "i": input })).await;
    assert_eq!(created["errors"], Value::Null, "{created}");
}

fn sh(script: &str) -> [&str; 3] {
    ["sh", "-c", script]
}

async fn execute(app: &TestApp, proc: &str, args: Value) -> String {
    let response = app.graphql(EXECUTE, json!({ "p": proc, "a": args })).await;
    assert_eq!(response["errors"], Value::Null, "{response}");
    assert_eq!(response["data"]["execute"]["status"], "PENDING");
    assert_eq!(response["data"]["execute"]["trigger"], "MANUAL");
    response["data"]["execute"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn subscribe(app: &TestApp, query: &str, variables: Value) -> Vec<Value> {
    let mut client = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    client.run("1", query, variables).await
}

/// Follows the state until it is final; returns every state seen.
async fn states(app: &TestApp, id: &str) -> Vec<Value> {
    subscribe(app, STATUS, json!({ "id": id }))
        .await
        .into_iter()
        .map(|payload| {
            assert_eq!(payload["errors"], Value::Null, "{payload}");
            payload["data"]["executionStatus"].clone()
        })
        .collect()
}

async fn final_state(app: &TestApp, id: &str) -> Value {
    states(app, id)
        .await
        .pop()
        .expect("at least the current state")
}

/// Every log line (seq, line), following until the end.
async fn lines(app: &TestApp, id: &str, after: i64) -> Vec<(i64, String)> {
    subscribe(app, LOGS, json!({ "id": id, "after": after }))
        .await
        .into_iter()
        .map(|payload| {
            assert_eq!(payload["errors"], Value::Null, "{payload}");
            let line = &payload["data"]["executionLogs"];
            (
                line["seq"].as_i64().unwrap(),
                line["line"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn numbered(range: std::ops::RangeInclusive<i64>) -> Vec<(i64, String)> {
    range.map(|n| (n, n.to_string())).collect()
}

async fn every_line_arrives_in_order_then_success(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    define(
        &app,
        "greet",
        &sh("for i in $(seq 1 50); do echo \"line $i\"; done; echo warn >&2"),
        json!({}),
    )
    .await;

    // Subscribed before the run exists: every transition of it, in order. executionEvents has
    // no backlog, so first make sure the subscription is live: wait for a warm-up run's events.
    let mut events = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    events
        .start(
            "events",
            "subscription { executionEvents(proc: \"greet\") { id status } }",
            json!({}),
        )
        .await;
    loop {
        let warm_up = execute(&app, "greet", json!([])).await;
        let arrived = tokio::time::timeout(Duration::from_millis(500), events.next_message()).await;
        final_state(&app, &warm_up).await;
        if arrived.is_ok() {
            break;
        }
    }
    let id = execute(&app, "greet", json!([])).await;

    let received = lines(&app, &id, 0).await;
    let mut expected: Vec<(i64, String)> = (1..=50).map(|n| (n, format!("line {n}"))).collect();
    expected.push((51, "warn".to_owned()));
    assert_eq!(received, expected);

    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["exitCode"], 0);
    assert!(done["startedAt"].is_string() && done["finishedAt"].is_string());

    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("SUCCEEDED") {
        let message = events.next_message().await;
        let event = &message["payload"]["data"]["executionEvents"];
        if event["id"] == id.as_str() {
            seen.push(event["status"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["PENDING", "STARTING", "RUNNING", "SUCCEEDED"]);

    let stored = app
        .graphql(
            "query($id: ID!) { execution(id: $id) { status logs(afterSeq: 49) { seq stream line } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        stored["data"]["execution"]["logs"],
        json!([
            { "seq": 50, "stream": "STDOUT", "line": "line 50" },
            { "seq": 51, "stream": "STDERR", "line": "warn" }
        ])
    );
}

async fn late_joiners_and_resumers_get_each_line_once(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    define(&app, "flood", &["seq", "1", "10000"], json!({})).await;
    let id = execute(&app, "flood", json!([])).await;
    assert_eq!(final_state(&app, &id).await["status"], "SUCCEEDED");
    assert_eq!(
        lines(&app, &id, 0).await,
        numbered(1..=10_000),
        "a late subscriber gets all"
    );
    assert_eq!(
        lines(&app, &id, 9_000).await,
        numbered(9_001..=10_000),
        "resume gets the rest"
    );

    // Joining while it runs: backlog, then live, no gap and no duplicate.
    define(
        &app,
        "drip",
        &sh("for i in $(seq 1 300); do echo $i; sleep 0.005; done"),
        json!({}),
    )
    .await;
    let id = execute(&app, "drip", json!([])).await;
    loop {
        let stored = app
            .graphql(
                "query($id: ID!) { execution(id: $id) { logs { seq } } }",
                json!({ "id": id }),
            )
            .await;
        if stored["data"]["execution"]["logs"]
            .as_array()
            .unwrap()
            .len()
            >= 30
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (from_start, resumed) = tokio::join!(lines(&app, &id, 0), lines(&app, &id, 100));
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
    define(
        &app,
        "burst",
        &sh("for i in $(seq 0 19); do seq $((i * 100 + 1)) $((i * 100 + 100)); sleep 0.05; done"),
        json!({}),
    )
    .await;
    let id = execute(&app, "burst", json!([])).await;
    let subscribers = (0..40i64).map(|n| {
        let (app, id) = (&app, &id);
        async move {
            // Joining over the first second, from the start or from a later line.
            tokio::time::sleep(Duration::from_millis(25 * n as u64)).await;
            let after = (n % 4) * 250;
            (after, lines(app, id, after).await)
        }
    });
    for (after, received) in futures::future::join_all(subscribers).await {
        assert_eq!(received, numbered(after + 1..=2_000), "from line {after}");
    }
    assert_eq!(final_state(&app, &id).await["status"], "SUCCEEDED");
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
    define(
        &app,
        "sleepy",
        &sh("sleep 300 & echo started; sleep 300"),
        json!({}),
    )
    .await;
    let running = execute(&app, "sleepy", json!([])).await;
    let first_line = subscribe_first_line(&app, &running).await;
    assert_eq!(first_line, "started");
    // With one slot, the next run waits as PENDING and can be cancelled there.
    let waiting = execute(&app, "sleepy", json!([])).await;

    const CANCEL: &str =
        "mutation($id: ID!) { cancelExecution(id: $id) { status reason executorRef } }";
    let pending = app.graphql(CANCEL, json!({ "id": waiting })).await;
    assert_eq!(
        pending["data"]["cancelExecution"]["status"], "CANCELLED",
        "{pending}"
    );
    assert_eq!(
        pending["data"]["cancelExecution"]["reason"],
        "cancelled before it started"
    );

    let cancelled = app.graphql(CANCEL, json!({ "id": running })).await;
    let cancelled = &cancelled["data"]["cancelExecution"];
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
    let group: i32 = cancelled["executorRef"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        live_members(group),
        Vec::<i32>::new(),
        "no process of group {group} is left"
    );

    let again = app.graphql(CANCEL, json!({ "id": running })).await;
    assert_eq!(
        again["errors"][0]["extensions"]["code"], "CONFLICT",
        "{again}"
    );
}

async fn subscribe_first_line(app: &TestApp, id: &str) -> String {
    let mut client = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    client
        .start("1", LOGS, json!({ "id": id, "after": 0 }))
        .await;
    let message = client.next_message().await;
    message["payload"]["data"]["executionLogs"]["line"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn every_ending_gets_its_state_and_reason(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    define(
        &app,
        "slow",
        &["sleep", "30"],
        json!({ "timeoutSeconds": 1 }),
    )
    .await;
    define(&app, "broken", &sh("echo bye; exit 3"), json!({})).await;
    define(
        &app,
        "ghost",
        &["/nonexistent/proctor-test-binary"],
        json!({}),
    )
    .await;
    let image_only = json!({ "i": { "name": "image-only", "image": "alpine:3" } });
    assert_eq!(app.graphql(UPSERT, image_only).await["errors"], Value::Null);

    let cases = [
        (
            "slow",
            "TIMED_OUT",
            Value::Null,
            "exceeded its timeout of 1 s",
        ),
        ("broken", "FAILED", json!(3), "exited with code 3"),
        ("ghost", "CREATION_FAILED", Value::Null, "cannot start"),
        (
            "image-only",
            "CREATION_FAILED",
            Value::Null,
            "has no command",
        ),
    ];
    for (proc, status, code, reason) in cases {
        let id = execute(&app, proc, json!([])).await;
        let done = final_state(&app, &id).await;
        assert_eq!(done["status"], status, "{proc}: {done}");
        assert_eq!(done["exitCode"], code, "{proc}: {done}");
        assert!(
            done["reason"].as_str().unwrap().contains(reason),
            "{proc}: {done}"
        );
    }
}

async fn secrets_are_masked_in_stored_and_streamed_logs(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    const VALUE: &str = "tok-9f8e7d-do-not-print";
    define(
        &app,
        "leaky",
        &sh("echo \"token=$TOKEN\"; echo \"twice $TOKEN $TOKEN\" >&2"),
        json!({ "secrets": [{ "name": "TOKEN" }] }),
    )
    .await;
    let refused = app.graphql(EXECUTE, json!({ "p": "leaky" })).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "CONFLICT",
        "an unset secret blocks the run"
    );
    let set = app
        .graphql(
            "mutation($v: String!) { setSecrets(proc: \"leaky\", secrets: [{ key: \"TOKEN\", value: $v }]) { isSet } }",
            json!({ "v": VALUE }),
        )
        .await;
    assert_eq!(set["errors"], Value::Null);
    let id = execute(&app, "leaky", json!([])).await;
    let streamed = lines(&app, &id, 0).await;
    assert_eq!(
        streamed,
        vec![(1, "token=***".to_owned()), (2, "twice *** ***".to_owned())]
    );
    let stored = app
        .graphql(
            "query($id: ID!) { execution(id: $id) { logs { line } } }",
            json!({ "id": id }),
        )
        .await;
    assert!(!stored.to_string().contains(VALUE), "{stored}");
    assert!(stored.to_string().contains("token=***"));
}

async fn fifty_concurrent_executions_finish_with_all_lines(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    define(&app, "count", &["seq", "1", "100"], json!({})).await;
    let ids = futures::future::join_all((0..50).map(|_| execute(&app, "count", json!([])))).await;
    let outcomes = futures::future::join_all(
        ids.iter()
            .map(|id| async { (final_state(&app, id).await, lines(&app, id, 0).await) }),
    )
    .await;
    for (state, received) in outcomes {
        assert_eq!(state["status"], "SUCCEEDED", "{state}");
        assert_eq!(received, numbered(1..=100));
    }
}

async fn arguments_are_validated_and_passed_with_context(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    define(
        &app,
        "env",
        &sh("echo \"$GREETING|$TIMES|$JOB_NAME|$EXECUTION_ID|$EXECUTION_NAME|${PROCTOR_DATA_DIR:-clean}\""),
        json!({ "args": [
            { "name": "GREETING", "required": true },
            { "name": "TIMES", "type": "INT", "default": "2" }
        ] }),
    )
    .await;
    let bad = app
        .graphql(
            EXECUTE,
            json!({ "p": "env", "a": [{ "name": "TIMES", "value": "x" }] }),
        )
        .await;
    assert_eq!(bad["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(bad["errors"][0]["extensions"]["field"], "args.GREETING");
    let id = execute(&app, "env", json!([{ "name": "GREETING", "value": "hi" }])).await;
    let received = lines(&app, &id, 0).await;
    assert_eq!(
        received,
        vec![(1, format!("hi|2|env|{id}|proctor-{id}-env|clean"))]
    );
    let execution = app
        .graphql(
            "query($id: ID!) { execution(id: $id) { args { name value } proc { name } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        execution["data"]["execution"],
        json!({ "args": [{ "name": "GREETING", "value": "hi" }, { "name": "TIMES", "value": "2" }],
                "proc": { "name": "env" } })
    );
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
    let created = app
        .graphql_as(&admin, UPSERT, json!({ "i": { "name": "ops-task", "command": ["echo", "ok"], "authorizedGroups": ["ops"] } }))
        .await;
    assert_eq!(created["errors"], Value::Null);

    let refused = app
        .graphql_as(&outsider, EXECUTE, json!({ "p": "ops-task" }))
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let ran = app
        .graphql_as(&insider, EXECUTE, json!({ "p": "ops-task" }))
        .await;
    let id = ran["data"]["execute"]["id"].as_str().unwrap().to_owned();

    for (query, variables) in [
        (LOGS, json!({ "id": id, "after": 0 })),
        (STATUS, json!({ "id": id })),
    ] {
        let mut client = WsClient::connect(
            &app.ws_url(),
            Protocol::TransportWs,
            json!({ "Authorization": format!("Bearer {outsider}") }),
        )
        .await;
        let payloads = client.run("1", query, variables).await;
        assert_eq!(payloads.len(), 1, "{payloads:?}");
        assert_eq!(
            payloads[0]["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{payloads:?}"
        );
    }
    let mut client = WsClient::connect(
        &app.ws_url(),
        Protocol::TransportWs,
        json!({ "Authorization": format!("Bearer {insider}") }),
    )
    .await;
    let payloads = client.run("1", LOGS, json!({ "id": id, "after": 0 })).await;
    assert_eq!(payloads[0]["data"]["executionLogs"]["line"], "ok");

    let hidden = app
        .graphql_as(
            &outsider,
            "query($id: ID!) { execution(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(hidden["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let listed = app
        .graphql_as(
            &outsider,
            "{ executions { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["data"]["executions"]["edges"], json!([]));
    let own = app
        .graphql_as(
            &insider,
            "{ executions { edges { node { id user } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        own["data"]["executions"]["edges"][0]["node"],
        json!({ "id": id, "user": "ops@example.com" })
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
    define(&app, "chatty", &["seq", "1", "150"], json!({})).await;
    let id = execute(&app, "chatty", json!([])).await;
    let received = lines(&app, &id, 0).await;
    assert_eq!(received.len(), 101);
    assert_eq!(&received[..100], numbered(1..=100).as_slice());
    assert!(
        received[100].1.starts_with("[proctor] output truncated"),
        "{:?}",
        received[100]
    );
    assert_eq!(final_state(&app, &id).await["status"], "SUCCEEDED");

    define(
        &app,
        "wide",
        &sh("head -c 40000 /dev/zero | tr '\\0' x; echo; echo after"),
        json!({}),
    )
    .await;
    let id = execute(&app, "wide", json!([])).await;
    let received = lines(&app, &id, 0).await;
    let pieces: Vec<&str> = received.iter().map(|(_, line)| line.as_str()).collect();
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
    let Some(app) = spawn(stack).await else {
        return;
    };
    define(&app, "ok", &["true"], json!({})).await;
    define(&app, "bad", &["false"], json!({})).await;
    let mut ids = Vec::new();
    for proc in ["ok", "bad", "ok", "ok"] {
        let id = execute(&app, proc, json!([])).await;
        final_state(&app, &id).await;
        ids.push(id);
    }
    const LIST: &str = "query($f: ExecutionFilter, $after: String) {
        executions(first: 2, after: $after, filter: $f) {
            pageInfo { hasNextPage } edges { cursor node { id procName status } } } }";
    let page = app.graphql(LIST, json!({})).await;
    let edges = page["data"]["executions"]["edges"].as_array().unwrap();
    assert_eq!(edges[0]["node"]["id"], ids[3].as_str(), "newest first");
    assert_eq!(edges[1]["node"]["id"], ids[2].as_str());
    assert_eq!(page["data"]["executions"]["pageInfo"]["hasNextPage"], true);
    let next = app
        .graphql(LIST, json!({ "after": edges[1]["cursor"] }))
        .await;
    let rest: Vec<&str> = next["data"]["executions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(rest, [ids[1].as_str(), ids[0].as_str()]);

    let failed = app
        .graphql(LIST, json!({ "f": { "status": ["FAILED"] } }))
        .await;
    assert_eq!(
        failed["data"]["executions"]["edges"][0]["node"]["procName"],
        "bad"
    );
    let by_proc = app
        .graphql(LIST, json!({ "f": { "proc": "bad", "trigger": "MANUAL" } }))
        .await;
    assert_eq!(
        by_proc["data"]["executions"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let future = app
        .graphql(
            LIST,
            json!({ "f": { "createdAfter": "2999-01-01T00:00:00Z" } }),
        )
        .await;
    assert_eq!(future["data"]["executions"]["edges"], json!([]));
    let bad_id = app
        .graphql("{ execution(id: \"abc\") { id } }", json!({}))
        .await;
    assert_eq!(bad_id["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(
        app.graphql("{ execution(id: \"999999\") { id } }", json!({}))
            .await["data"]["execution"],
        Value::Null
    );
}

async fn metrics_count_executions_lines_and_subscriptions(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    define(&app, "metered", &["seq", "1", "3"], json!({})).await;
    let id = execute(&app, "metered", json!([])).await;
    final_state(&app, &id).await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let Some(app) = spawn(stack).await else {
        return;
    };
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
    define(&app, "flaky", &sh(&script), json!({ "retries": 2 })).await;
    let id = execute(&app, "flaky", json!([])).await;
    assert_eq!(subscribe_first_line(&app, &id).await, "first");
    std::fs::write(&ok, "").unwrap();
    std::fs::write(&go, "").unwrap();
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["exitCode"], 0, "{done}");
    let shown: Vec<String> = lines(&app, &id, 0)
        .await
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    assert_eq!(
        shown,
        [
            "first",
            "[proctor] attempt 2 (of 3; the previous one exited with code 3)",
            "second"
        ]
    );
    let attempts = app
        .graphql(
            "query($id: ID!) { execution(id: $id) { attempts } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(attempts["data"]["execution"]["attempts"], 2, "{attempts}");
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
