//! The security model (the book, `docs/src/security.md`): what a page on another origin, a stale
//! credential, a greedy query or a hostile input can no longer do. Each test names the attack
//! it stops and fails on the code before the defence existed.

use std::time::Duration;

use proctor_server::config::DatabaseTarget;
use proctor_tests::api::execution_by_id::ResponseData as ExecutionByIdData;
use proctor_tests::api::schedule_runs::ScheduleRunOutcome as Outcome;
use proctor_tests::api::stored_logs::ResponseData as StoredLogsData;
use proctor_tests::api::upsert_proc::ArgType;
use proctor_tests::api::{
    Api, DeleteProc, ExecutionById, ExecutionStatus, Me, ScheduleRun, StoredLine, StoredLogs,
    TransferSchedule, TriggerSchedule, arg, delete_proc, execution_by_id, me, no_filter, proc,
    schedule as every, secret, sh, stored_logs, transfer_schedule, trigger_schedule,
};
use proctor_tests::api::{
    ApplyProcFile, CronPreview, DeleteSchedule, ScheduleDetail, SetScheduleEnabled, UpdateSchedule,
    apply_proc_file, cron_preview, delete_schedule, schedule_change, schedule_detail,
    set_schedule_enabled, update_schedule,
};
use proctor_tests::graphql_ws::{Protocol, WsClient};
use proctor_tests::{Stack, TestApp};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const UPSERT: &str = "mutation($i: ProcInput!) { upsertProc(input: $i) { name } }";
const PROCS: &str = "{ procs { name } }";

/// What a hostile page would post: a proc that runs a shell command.
fn attack_body() -> String {
    json!({
        "query": UPSERT,
        "variables": { "i": { "name": "pwned", "command": ["sh", "-c", "echo pwned"] } }
    })
    .to_string()
}

async fn proc_names(app: &TestApp) -> Vec<String> {
    let procs = app.api().procs(None).await;
    procs.into_iter().map(|(name, _)| name).collect()
}

#[tokio::test]
async fn cross_site_simple_posts_get_415_and_change_nothing() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=----x"),
        None,
    ] {
        let mut request = app.http.post(app.url("/graphql")).body(attack_body());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{body}"
        );
    }
    assert!(proc_names(&app).await.is_empty(), "nothing was defined");
    // JSON with a charset parameter is JSON.
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(json!({ "query": PROCS }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn foreign_origins_are_refused_on_post_and_both_websocket_protocols() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("Content-Type", "application/json")
            .header("Origin", origin)
            .body(attack_body())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{origin}");
    }
    assert!(proc_names(&app).await.is_empty(), "nothing was defined");

    for (path, protocol) in [
        ("/graphql/ws", Some("graphql-transport-ws")),
        ("/graphql/ws", Some("graphql-ws")),
        ("/execution/logs?context_id=1", None),
    ] {
        let mut request = format!("ws://{}{path}", app.address)
            .into_client_request()
            .unwrap();
        if let Some(protocol) = protocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        }
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_static("https://evil.example"));
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{path} {protocol:?}");
            }
            other => panic!("{path} {protocol:?} was upgraded: {:?}", other.map(|_| ())),
        }
    }

    // The server's own pages keep working, over HTTP and websockets.
    let own = format!("http://{}", app.address);
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("Origin", &own)
        .json(&json!({ "query": PROCS }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    request
        .headers_mut()
        .insert("Origin", HeaderValue::from_str(&own).unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("same-origin websocket upgrade");
}

#[tokio::test]
async fn listed_origins_are_admitted() {
    let app = TestApp::builder()
        .stack(Stack::Embedded)
        .with_args(&["--allowed-origins=https://console.example.com:443"])
        .spawn()
        .await;
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("Origin", "https://console.example.com")
        .json(&json!({ "query": PROCS }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://console.example.com"
    );
    // The browser's preflight for a JSON POST is answered.
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("Origin", "https://console.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://console.example.com"
    );
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    // Same-origin pages need no CORS headers; other origins get none either (they are refused).
    let own = app
        .http
        .post(app.url("/graphql"))
        .header("Origin", format!("http://{}", app.address))
        .json(&json!({ "query": PROCS }))
        .send()
        .await
        .unwrap();
    assert!(own.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn rebinding_hosts_are_refused_while_auth_is_off() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    for host in ["evil.example", "evil.example:5001", "10.1.2.3"] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("Host", host)
            .header("Content-Type", "application/json")
            .body(attack_body())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 421, "{host}");
        let response = app
            .http
            .get(app.url("/metadata"))
            .header("Host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 421, "REST too: {host}");
    }
    assert!(proc_names(&app).await.is_empty());
    for host in ["localhost", "127.0.0.1", "[::1]:80", "127.1.2.3:9"] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("Host", host)
            .json(&json!({ "query": PROCS }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{host}");
    }
}

/// A builtin-auth server with an administrator and a user in group `ops`.
async fn auth_app(stack: Stack, revalidate: Duration) -> Option<(TestApp, String, String)> {
    let app = TestApp::builder()
        .stack(stack)
        .with_args(&[
            "--auth-enabled".to_owned(),
            format!("--ws-revalidate-seconds={}", revalidate.as_secs()),
        ])
        .try_spawn()
        .await?;
    let admin = app.issue_token("root@example.com", &[], true).await;
    let user = app.issue_token("bo@example.com", &["ops"], false).await;
    Some((app, admin, user))
}

const WATCH: &str = "subscription { executionEvents { id status } }";

/// A graphql-transport-ws connection to `app` authenticated with `token`.
async fn socket_as(app: &TestApp, token: &str) -> WsClient {
    WsClient::connect(
        &app.ws_url(),
        Protocol::TransportWs,
        json!({ "Authorization": format!("Bearer {token}") }),
    )
    .await
}

async fn revoked_token_closes_the_socket(stack: Stack) {
    let Some((app, admin, user)) = auth_app(stack, Duration::from_secs(30)).await else {
        return;
    };
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        let user = if protocol == Protocol::TransportWs {
            user.clone()
        } else {
            app.issue_token("bo@example.com", &["ops"], false).await
        };
        let mut socket = WsClient::connect(
            &app.ws_url(),
            protocol,
            json!({ "Authorization": format!("Bearer {user}") }),
        )
        .await;
        socket.start("1", WATCH, json!({})).await;
        assert_eq!(socket.wait_closed(Duration::from_millis(300)).await, None);
        let revoked = app.api_as(&admin).revoke_api_token("bo@example.com").await;
        assert_eq!(revoked, Ok(true));
        let (code, reason) = socket
            .wait_closed(Duration::from_secs(10))
            .await
            .expect("the socket of a revoked token is closed");
        assert_eq!(code, 4403, "{reason}");
    }
}

async fn group_change_closes_the_socket_and_new_operations_fail(stack: Stack) {
    let Some((app, admin, user)) = auth_app(stack, Duration::from_secs(30)).await else {
        return;
    };
    let socket_api = app.api_as(&user);
    let me = socket_api.subscribe::<Me>(me::Variables).await;
    let groups = me[0]
        .as_ref()
        .ok()
        .and_then(|data| data.me.clone())
        .map(|me| me.groups);
    assert_eq!(
        groups,
        Some(vec!["ops".to_owned()]),
        "over the websocket: {me:?}"
    );
    let mut socket = socket_as(&app, &user).await;
    socket.start("1", WATCH, json!({})).await;
    assert_eq!(socket.wait_closed(Duration::from_millis(300)).await, None);
    // The admin moves bo out of ops (a new token with other groups).
    app.api_as(&admin)
        .create_api_token("bo@example.com", Some(&["dev"]), None)
        .await
        .expect("issued");
    let closed = socket.wait_closed(Duration::from_secs(10)).await;
    assert_eq!(closed.map(|(code, _)| code), Some(4403));
}

on_both_stacks!(
    revoked_token_closes_the_socket,
    group_change_closes_the_socket_and_new_operations_fail
);

#[tokio::test]
async fn a_revocation_nobody_announced_is_found_by_the_periodic_check() {
    let (app, _admin, user) = auth_app(Stack::Embedded, Duration::from_secs(1))
        .await
        .expect("the embedded stack needs nothing");
    let mut socket = socket_as(&app, &user).await;
    socket.start("1", WATCH, json!({})).await;
    // Revoked straight in the database (as another tool would): no event on the bus.
    proctor_schema::auth::tokens::revoke_tokens(
        app.state.db(),
        &proctor_schema::auth::Caller::system("test"),
        "bo@example.com",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let closed = socket.wait_closed(Duration::from_secs(10)).await;
    assert_eq!(closed.map(|(code, _)| code), Some(4403));
    assert!(started.elapsed() < Duration::from_secs(5));
}

const EXECUTE: &str =
    "mutation($p: String!, $a: [ArgInput!]) { execute(proc: $p, args: $a) { id } }";

/// Runs `proc` and waits for its final state; returns (id, final status payload).
async fn all_lines(app: &TestApp, id: &str) -> Vec<StoredLine> {
    app.api().stored_lines(id).await
}

async fn nul_in_output_loses_no_line(stack: Stack) {
    let Some(app) = TestApp::builder().stack(stack).try_spawn().await else {
        return;
    };
    let script =
        "echo before; printf 'a\\000b\\n'; printf 'bad \\377 byte\\n'; seq 1 600; echo after";
    app.api().define_proc(proc("nul", &sh(script))).await;
    let (id, last) = app.api().run_to_end("nul", &[]).await;
    assert_eq!(last.status, ExecutionStatus::Succeeded, "{last:?}");
    assert_eq!(last.log_lines_lost, 0, "{last:?}");
    let lines = all_lines(&app, &id).await;
    assert_eq!(lines.len(), 604, "every line is stored");
    assert_eq!(lines[0].line, "before");
    assert_eq!(
        (lines[1].line.as_str(), lines[1].replaced),
        ("a\u{FFFD}b", true)
    );
    assert_eq!(
        (lines[2].line.as_str(), lines[2].replaced),
        ("bad \u{FFFD} byte", true)
    );
    assert!(!lines[3].replaced);
    assert_eq!(lines[603].line, "after");
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line.seq, index as i64 + 1, "no gaps");
    }
}

async fn nul_in_input_is_bad_user_input(stack: Stack) {
    let Some(app) = TestApp::builder().stack(stack).try_spawn().await else {
        return;
    };
    let refused = app
        .graphql(
            UPSERT,
            json!({ "i": { "name": "x", "command": ["true"], "description": "a\u{0}b" } }),
        )
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    assert_eq!(refused["errors"][0]["extensions"]["field"], "i.description");
    let inline = app
        .graphql(
            r#"mutation { upsertProc(input: { name: "x", command: ["true"], description: "a\u0000" }) { name } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        inline["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{inline}"
    );
    let mut echo = proc("echo", &["true"]);
    echo.args = Some(vec![arg("WHO")]);
    app.api().define_proc(echo).await;
    let refused = app
        .graphql(
            EXECUTE,
            json!({ "p": "echo", "a": [{ "name": "WHO", "value": "x\u{0}" }] }),
        )
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["field"], "a[0].value",
        "{refused}"
    );
    let rest = app
        .http
        .post(app.url("/execution"))
        .json(&json!({ "name": "echo", "args": { "WHO": "x\u{0}" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 400);
    assert!(rest.text().await.unwrap().contains("args.WHO"));
    let listed = app.api().executions(20, None, no_filter()).await.unwrap();
    assert!(listed.edges.is_empty(), "nothing ran: {listed:?}");
}

on_both_stacks!(nul_in_output_loses_no_line, nul_in_input_is_bad_user_input);

#[tokio::test]
async fn secrets_across_the_read_chunk_and_encoded_are_masked() {
    const SECRET: &str = "Zq8vX2/never+print me";
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    // 1 MiB minus 5 bytes of x, then the secret: the executor's 1 MiB read cuts it.
    let script = "head -c 1048571 /dev/zero | tr '\\000' x; printf '%s\\n' \"$TOKEN\"; \
                  printf '%s' \"$TOKEN\" | base64; printf '%s' \"$TOKEN\" | base64 | tr '+/' '-_' | tr -d =; \
                  echo \"url=$(printf %s \"$TOKEN\" | sed -e 's#/#%2F#g' -e 's/+/%2B/g' -e 's/ /%20/g')\"";
    let mut leaky = proc("leaky", &sh(script));
    leaky.secrets = Some(vec![secret("TOKEN")]);
    app.api().define_proc(leaky).await;
    app.api()
        .set_secrets("leaky", &[("TOKEN", SECRET)])
        .await
        .expect("set");
    let (id, last) = app.api().run_to_end("leaky", &[]).await;
    assert_eq!(last.status, ExecutionStatus::Succeeded, "{last:?}");
    let text: String = all_lines(&app, &id)
        .await
        .iter()
        .map(|line| line.line.clone())
        .collect::<Vec<_>>()
        .join("\n");
    use base64::Engine as _;
    for leaked in [
        SECRET.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(SECRET),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET),
        "Zq8vX2%2Fnever".to_owned(),
    ] {
        assert!(!text.contains(&leaked), "{leaked} leaked");
    }
    assert!(
        text.contains("xxxxx***"),
        "the cut secret is masked where it was"
    );
    assert!(text.contains("url=***"));
}

#[tokio::test]
async fn reserved_names_are_refused() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    let with_arg = |name: &str| {
        let mut input = proc("x", &["true"]);
        input.args = Some(vec![arg(name)]);
        input
    };
    let mut with_secret = proc("x", &["true"]);
    with_secret.secrets = Some(vec![secret("PROCTOR_SECRET_KEY")]);
    for (field, input) in [
        ("input.args[0].name", with_arg("PATH")),
        ("input.args[0].name", with_arg("LD_PRELOAD")),
        ("input.secrets[0].name", with_secret),
        ("input.args[0].name", with_arg("BASH_ENV")),
    ] {
        let refused = app
            .api()
            .try_define_proc(input)
            .await
            .expect_err("reserved");
        assert_eq!(refused.code, "BAD_USER_INPUT", "{refused:?}");
        assert_eq!(refused.field.as_deref(), Some(field), "{refused:?}");
        assert!(refused.message.contains("reserved"), "{refused:?}");
    }
}

/// Peak resident memory of `pid` since its last reset, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib / 1024
}

/// The review's query: a hundred executions, each with its logs eight times over.
fn reviewer_query() -> String {
    let aliases: String = (0..8)
        .map(|n| {
            format!(
                "l{n}: logs(first: 10000, afterSeq: {}) {{ seq line }} ",
                n * 100
            )
        })
        .collect();
    format!("{{ executions(first: 100) {{ edges {{ node {{ id {aliases} }} }} }} }}")
}

#[tokio::test]
async fn the_reviewers_query_is_refused_by_its_cost_before_anything_is_read() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    let refused = app.graphql(&reviewer_query(), json!({})).await;
    assert_eq!(refused["data"], Value::Null, "{refused}");
    let message = refused["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("too complex") && message.contains("first"),
        "{message}"
    );
    // A lookup by key costs 10: aliasing it a thousand times is refused too.
    let aliases: String = (0..1000)
        .map(|n| format!("e{n}: execution(id: {}) {{ id }} ", n + 1))
        .collect();
    let refused = app.graphql(&format!("{{ {aliases} }}"), json!({})).await;
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too complex"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn big_log_queries_are_refused_and_memory_stays_bounded() {
    use proctor_tests::{Proctord, proctord_command};
    let directory = tempfile::tempdir().unwrap();
    let mut command = proctord_command(directory.path());
    command
        .env("PROCTOR_APP_PORT", "0")
        .env("PROCTOR_REGISTER_EXAMPLES", "false")
        // As a careless operator might: the cost limit out of the way.
        .env("PROCTOR_GRAPHQL_MAX_COMPLEXITY", "1000000000");
    let server = Proctord::spawn(command);
    let base = server.url("");
    let graphql = |query: String, variables: Value| {
        let base = base.clone();
        async move { proctor_tests::infra::post_graphql(&base, &query, variables).await }
    };
    // 12,000 lines of 2,000 bytes: 24 MB of stored output.
    let api = Api::at(&base);
    let script = "line=$(head -c 2000 /dev/zero | tr '\\000' x); i=0; while [ $i -lt 12000 ]; do echo \"$line\"; i=$((i+1)); done";
    api.define_proc(proc("chatty", &sh(script))).await;
    let ids = vec![api.execute("chatty", &[]).await];
    for id in &ids {
        let done = api.poll_final(id, Duration::from_secs(120)).await;
        assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    }

    // The reviewer's query (every execution, each with its logs many times over), on a
    // server whose cost limit was lifted: the per-response budget stops it.
    let _ = std::fs::write(format!("/proc/{}/clear_refs", server.pid()), "5");
    let before = peak_rss_mib(server.pid());
    let refused = graphql(reviewer_query(), json!({})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED",
        "{refused}"
    );
    let query = |aliases: &str| format!("query($id: ID!) {{ execution(id: $id) {{ {aliases} }} }}");
    let lines = graphql(
        query("a: logs(first: 6000) { line } b: logs(first: 6000, afterSeq: 6000) { line }"),
        json!({ "id": ids[0] }),
    )
    .await;
    let codes: Vec<&Value> = lines["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{lines}"))
        .iter()
        .map(|error| &error["extensions"]["code"])
        .collect();
    assert!(
        codes.iter().all(|code| *code == "LIMIT_EXCEEDED"),
        "{lines}"
    );
    // 9,000 lines of 2,000 bytes would pass 16 MiB.
    let bytes = graphql(query("logs(first: 9000) { line }"), json!({ "id": ids[0] })).await;
    let message = bytes["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("MiB"), "{bytes}");
    // A query within the limits still answers in full.
    let fine = graphql(query("logs(first: 5000) { seq }"), json!({ "id": ids[0] })).await;
    assert_eq!(
        fine["data"]["execution"]["logs"].as_array().unwrap().len(),
        5000
    );
    let peak = peak_rss_mib(server.pid());
    eprintln!("proctord peak RSS: {before} MiB before the queries, {peak} MiB after");
    // The debug build holds ~80 MiB after storing 24 MB of output; what the queries may add
    // is bounded by the budget (16 MiB of text, copied a few times on its way out), not by
    // what they ask for (the two refused ones asked for 12,000 and 9,000 lines: 42 MB).
    assert!(
        peak - before < 64,
        "the queries grew the peak RSS by {} MiB",
        peak - before
    );
    drop(server);
}

async fn a_recreated_proc_does_not_expose_earlier_runs(stack: Stack) {
    let Some((app, admin, _)) = auth_app(stack, Duration::from_secs(30)).await else {
        return;
    };
    let eve = app.issue_token("eve@example.com", &[], false).await;
    let (admin_api, eve_api) = (app.api_as(&admin), app.api_as(&eve));
    let mut payroll = proc("payroll", &sh("echo salary=$AMOUNT"));
    payroll.args = Some(vec![arg("AMOUNT")]);
    payroll.authorized_groups = Some(vec!["finance".to_owned()]);
    admin_api.define_proc(payroll).await;
    let id = admin_api.execute("payroll", &[("AMOUNT", "99999")]).await;
    let done = admin_api.await_final(&id).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    admin_api
        .ok::<DeleteProc>(delete_proc::Variables {
            name: "payroll".to_owned(),
        })
        .await;
    let mut again = proc("payroll", &["true"]);
    again.authorized_groups = Some(Vec::new());
    admin_api.define_proc(again).await;

    let mut by_proc = no_filter();
    by_proc.proc = Some("payroll".to_owned());
    let listed = eve_api.executions(20, None, by_proc).await.expect("a page");
    assert!(listed.edges.is_empty(), "{listed:?}");
    let one = eve_api
        .call::<ExecutionById>(execution_by_id::Variables { id: id.clone() })
        .await;
    assert!(
        !matches!(one, Ok(ExecutionByIdData { execution: Some(_) })),
        "{one:?}"
    );
    let logs = eve_api
        .call::<StoredLogs>(stored_logs::Variables {
            id: id.clone(),
            after_seq: None,
            first: None,
        })
        .await;
    assert!(
        !matches!(logs, Ok(StoredLogsData { execution: Some(_) })),
        "{logs:?}"
    );
    let rest = app
        .http
        .get(app.url(&format!("/execution/{id}/status")))
        .header("Access-Token", &eve)
        .header("Email-Id", "eve@example.com")
        .send()
        .await
        .unwrap();
    assert_ne!(rest.status(), 200);
    // The administrator still sees it.
    assert_eq!(admin_api.stored_text(&id).await, ["salary=99999"]);
}

on_both_stacks!(a_recreated_proc_does_not_expose_earlier_runs);

/// Waits until the schedule has a run with `outcome`; returns its detail.
/// Waits until schedule `id` has a run with `outcome`; that run's detail.
async fn wait_for_outcome(api: &Api, id: &str, outcome: Outcome) -> Option<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (runs, _) = api.schedule_runs(id).await;
        if let Some(run) = runs.iter().find(|run| run.outcome == outcome) {
            return run.detail.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {outcome:?} run: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn schedules_fire_with_their_owners_current_rights(stack: Stack) {
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&["--auth-enabled", "--schedule-min-interval-seconds=1"])
        .try_spawn()
        .await
    else {
        return;
    };
    let admin = app.issue_token("root@example.com", &[], true).await;
    let bo = app.issue_token("bo@example.com", &["ops"], false).await;
    app.issue_token("al@example.com", &["ops"], false).await;
    let (admin, bo) = (app.api_as(&admin), app.api_as(&bo));
    let mut tick = proc("tick", &["true"]);
    tick.authorized_groups = Some(vec!["ops".to_owned()]);
    admin.define_proc(tick).await;
    let id = bo.create_schedule(every("tick", "* * * * * *")).await;
    wait_for_outcome(&admin, &id, Outcome::STARTED).await;
    // bo leaves ops: the next slots are skipped, saying why.
    app.issue_token("bo@example.com", &[], false).await;
    let detail = wait_for_outcome(&admin, &id, Outcome::SKIPPED_FORBIDDEN).await;
    assert!(
        detail
            .as_deref()
            .is_some_and(|detail| detail.contains("bo@example.com")),
        "{detail:?}"
    );
    // Every slot is recorded, but only the first of a row reaches the channels (as a run that
    // could not be created); nothing runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (runs, _) = admin.schedule_runs(&id).await;
        let forbidden: Vec<&ScheduleRun> = runs
            .iter()
            .filter(|run| run.outcome == Outcome::SKIPPED_FORBIDDEN)
            .collect();
        if forbidden.len() >= 3 {
            let with_run: Vec<_> = forbidden
                .iter()
                .filter_map(|run| run.execution.as_ref())
                .collect();
            assert_eq!(with_run.len(), 1, "{runs:?}");
            assert_eq!(with_run[0].status, ExecutionStatus::CreationFailed);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{runs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An administrator gives it to al, who may run it: it fires again.
    let transfer = |api: &Api, owner: &str| {
        let variables = transfer_schedule::Variables {
            id: id.clone(),
            owner: owner.to_owned(),
        };
        let api = api.clone();
        async move { api.call::<TransferSchedule>(variables).await }
    };
    let transferred = transfer(&admin, "al@example.com")
        .await
        .expect("transferred");
    assert_eq!(
        transferred.transfer_schedule.created_by.as_deref(),
        Some("al@example.com")
    );
    let started = |runs: &[ScheduleRun]| {
        runs.iter()
            .filter(|run| run.outcome == Outcome::STARTED)
            .count()
    };
    let started_before = started(&admin.schedule_runs(&id).await.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (runs, _) = admin.schedule_runs(&id).await;
        if started(&runs) > started_before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{runs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Only administrators transfer.
    let refused = transfer(&bo, "bo@example.com")
        .await
        .expect_err("not an admin");
    assert_eq!(refused.code, "FORBIDDEN", "{refused:?}");
}

on_both_stacks!(schedules_fire_with_their_owners_current_rights);

#[tokio::test]
async fn schedules_of_non_administrators_have_a_minimum_interval() {
    let (app, admin, bo) = auth_app(Stack::Embedded, Duration::from_secs(30))
        .await
        .expect("the embedded stack needs nothing");
    let (admin, bo) = (app.api_as(&admin), app.api_as(&bo));
    admin.define_proc(proc("tick", &["true"])).await;
    let refused = bo
        .try_create_schedule(every("tick", "*/10 * * * * *"))
        .await
        .expect_err("too often");
    assert_eq!(refused.field.as_deref(), Some("input.cron"), "{refused:?}");
    bo.try_create_schedule(every("tick", "0 * * * * *"))
        .await
        .expect("once a minute is fine");
    admin
        .try_create_schedule(every("tick", "*/10 * * * * *"))
        .await
        .expect("administrators may schedule more often");
}

#[tokio::test]
async fn the_101st_operation_on_a_socket_gets_an_error_and_the_socket_stays_usable() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        let mut socket = WsClient::connect(&app.ws_url(), protocol, json!({})).await;
        for n in 0..100 {
            socket.start(&format!("s{n}"), WATCH, json!({})).await;
        }
        socket.start("s100", WATCH, json!({})).await;
        let refused = socket.next_message().await;
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(refused["id"], "s100");
        assert!(refused.to_string().contains("LIMIT_EXCEEDED"), "{refused}");
        // Completing one makes room; the connection never closed.
        let stop = match protocol {
            Protocol::TransportWs => "complete",
            Protocol::LegacyWs => "stop",
        };
        socket.send_raw(json!({ "type": stop, "id": "s0" })).await;
        // A stopped id is free again at once (graphql-transport-ws), and counts again.
        socket.start("s0", WATCH, json!({})).await;
        let completed = socket.next_message().await;
        assert_eq!(completed["type"], "complete", "{completed}");
        socket.send_raw(json!({ "type": stop, "id": "s1" })).await;
        let completed = socket.next_message().await;
        assert_eq!(completed["id"], "s1", "{completed}");
        let info = socket
            .run("q", "{ serverInfo { version } }", json!({}))
            .await;
        assert!(
            info[0]["data"]["serverInfo"]["version"].is_string(),
            "{info:?}"
        );
    }
}

#[tokio::test]
async fn a_subscription_selects_one_root_field() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    let mut socket = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    let aliased = socket
        .run(
            "1",
            "subscription { a: executionEvents { id } b: executionEvents { id } }",
            json!({}),
        )
        .await;
    let text = format!("{aliased:?}");
    assert!(text.contains("exactly one root field"), "{text}");
    let through_fragment = socket
        .run(
            "2",
            "subscription { ...both } fragment both on Subscription { a: executionEvents { id } b: executionEvents { id } }",
            json!({}),
        )
        .await;
    assert!(format!("{through_fragment:?}").contains("exactly one root field"));
}

#[tokio::test]
async fn the_server_wide_operation_cap_holds_across_connections() {
    let app = TestApp::builder()
        .stack(Stack::Embedded)
        .with_args(&["--max-subscriptions=3"])
        .spawn()
        .await;
    let mut first = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    for n in 0..3 {
        first.start(&format!("s{n}"), WATCH, json!({})).await;
    }
    // A fourth operation is refused on the same connection too (and proves the three are
    // registered before the second connection tries).
    first.start("s3", WATCH, json!({})).await;
    assert_eq!(first.next_message().await["type"], "error");
    let mut second = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    second.start("x", WATCH, json!({})).await;
    let refused = second.next_message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(
        refused.to_string().contains("PROCTOR_MAX_SUBSCRIPTIONS"),
        "{refused}"
    );
    drop(first);
    // The first connection's operations are released when it closes.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        second
            .start("y", "{ serverInfo { version } }", json!({}))
            .await;
        let answer = second.next_message().await;
        if answer["type"] == "next" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_need_the_token_when_auth_is_on_and_one_is_set() {
    let app = TestApp::builder()
        .stack(Stack::Embedded)
        .with_args(&["--auth-enabled", "--metrics-token=scrape-me"])
        .spawn()
        .await;
    let anonymous = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let scraped = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("proctor_"));
}

/// Triggers a disabled schedule of `hooked` with webhook `url` (as `api`'s caller) and returns
/// its webhook result once tried, as `(delivered, error)`.
async fn webhook_result(api: &Api, url: &str) -> (bool, Option<String>) {
    let mut input = every("hooked", "0 0 1 1 *");
    input.enabled = Some(false);
    input.webhook_url = Some(url.to_owned());
    let id = api.create_schedule(input).await;
    api.ok::<TriggerSchedule>(trigger_schedule::Variables { id: id.clone() })
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (runs, _) = api.schedule_runs(&id).await;
        let found = runs
            .iter()
            .flat_map(|run| run.notifications.iter())
            .find(|result| result.channel == "webhook");
        if let Some(result) = found {
            return (result.delivered, result.error.clone());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no webhook result: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn notifications_never_reach_internal_addresses_or_follow_redirects() {
    let app = TestApp::builder()
        .stack(Stack::Embedded)
        .with_args(&["--notify-allowed-hosts="])
        .spawn()
        .await;
    app.api().define_proc(proc("hooked", &["true"])).await;
    let mut sink = proctor_tests::sinks::HttpSink::start().await;
    let port = sink.url("").rsplit(':').next().unwrap().to_owned();
    for url in [
        sink.url("/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let (delivered, error) = webhook_result(&app.api(), &url).await;
        assert!(!delivered, "{url}: {error:?}");
        let error = error.unwrap_or_default();
        assert!(error.contains("was not called"), "{url}: {error}");
    }
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            sink.next_request(Duration::from_secs(1))
        )
        .await
        .is_err(),
        "nothing reached the loopback sink"
    );
    // URLs with credentials are refused when the schedule is saved.
    let mut with_credentials = every("hooked", "0 0 1 1 *");
    with_credentials.webhook_url = Some("https://u:p@hooks.example.com/".to_owned());
    let refused = app
        .api()
        .try_create_schedule(with_credentials)
        .await
        .expect_err("credentials in the URL");
    assert_eq!(
        refused.field.as_deref(),
        Some("input.webhookUrl"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed_and_users_see_no_remote_detail() {
    // The sink is allowed (a relay on the operator's network) but redirects elsewhere.
    let mut target = proctor_tests::sinks::HttpSink::start().await;
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector_port = redirector.local_addr().unwrap().port();
    let location = target.url("/stolen");
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(move || {
            let location = location.clone();
            async move { axum::response::Redirect::temporary(&location) }
        });
        let _ = axum::serve(redirector, app).await;
    });
    let (app, admin, bo) = auth_app(Stack::Embedded, Duration::from_secs(30))
        .await
        .expect("the embedded stack needs nothing");
    app.api_as(&admin)
        .define_proc(proc("hooked", &["true"]))
        .await;
    let url = format!("http://127.0.0.1:{redirector_port}/hook");
    let (delivered, error) = webhook_result(&app.api_as(&admin), &url).await;
    assert!(!delivered, "{error:?}");
    assert!(
        error.as_deref().is_some_and(|error| error.contains("307")),
        "{error:?}"
    );
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            target.next_request(Duration::from_secs(1))
        )
        .await
        .is_err(),
        "the redirect was not followed"
    );
    let (delivered, error) = webhook_result(&app.api_as(&bo), &url).await;
    assert!(!delivered);
    assert_eq!(
        error.as_deref(),
        Some("failed"),
        "no remote detail for users"
    );
}

/// Runs a proc that tries to read every file of the server's data directory.
async fn try_to_read_the_data_dir(app: &TestApp) -> (String, Vec<String>) {
    let data_dir = app.settings.storage.data_dir.canonicalize().unwrap();
    let files: Vec<String> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path().display().to_string())
        .collect();
    assert!(!files.is_empty(), "the data directory holds the key file");
    let script = format!(
        "pwd; for f in {}; do cat \"$f\" && echo LEAKED; done; ls {} && echo LISTED; \
         cat /proc/$PPID/environ && echo ENVIRON; \
         touch /var/tmp/proctor-escape-$$ && echo WROTE_OUTSIDE && rm /var/tmp/proctor-escape-$$; \
         touch \"$TMPDIR/../beside-$$\" && echo WROTE_BESIDE && rm \"$TMPDIR/../beside-$$\"; \
         echo kept > \"$TMPDIR/mine\" && cat \"$TMPDIR/mine\"; \
         echo to-stderr > /dev/stderr; echo shared > /dev/shm/proctor-$$ && echo SHM; \
         echo \"fds: $(ls /proc/self/fd | tr '\\n' ' ')\"; exit 0",
        files.join(" "),
        data_dir.display()
    );
    app.api().define_proc(proc("snoop", &sh(&script))).await;
    let (id, last) = app.api().run_to_end("snoop", &[]).await;
    assert_eq!(last.status, ExecutionStatus::Succeeded, "{last:?}");
    let lines: Vec<String> = all_lines(app, &id)
        .await
        .iter()
        .map(|line| line.line.clone())
        .collect();
    let secrets: Vec<String> = files
        .iter()
        .filter_map(|file| std::fs::read(file).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .filter(|text| text.len() >= 8)
        .collect();
    (lines.join("\n"), secrets)
}

/// `environ_protected`: whether the run must not read the server's `/proc/<pid>/environ`
/// (root, which `self` keeps as root, may).
fn assert_denied(output: &str, secrets: &[String], environ_protected: bool) {
    assert!(
        output.contains("\nkept"),
        "the run writes its own directory:\n{output}"
    );
    assert!(output.contains("to-stderr"), "/dev/stderr works:\n{output}");
    if proctor_server::sandbox::landlock_available() {
        assert!(!output.contains("WROTE_OUTSIDE"), "{output}");
        assert!(
            !output.contains("WROTE_BESIDE"),
            "a run writes its own directory, not those of the server's other runs:\n{output}"
        );
        assert!(
            !output.contains("\nSHM"),
            "/dev/shm is not shared:\n{output}"
        );
    }
    if environ_protected {
        assert!(!output.contains("ENVIRON"), "{output}");
    }
    for marker in ["LEAKED", "LISTED"] {
        assert!(!output.contains(marker), "{marker}:\n{output}");
    }
    for secret in secrets {
        assert!(
            !output.contains(secret.as_str()),
            "a data file's content leaked:\n{output}"
        );
    }
    assert!(output.contains("Permission denied"), "{output}");
}

#[tokio::test]
async fn local_procs_cannot_read_the_data_directory_and_run_in_a_scratch_directory() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    let (output, secrets) = try_to_read_the_data_dir(&app).await;
    if !rustix::process::geteuid().is_root() && !proctor_server::sandbox::landlock_available() {
        eprintln!(
            "SKIPPED: not root and no Landlock here; docs/src/security.md says what protects the data directory then"
        );
        return;
    }
    assert_denied(&output, &secrets, true);
    // Only the standard streams (and the listing's own handle) are open in a run.
    let fds = output
        .lines()
        .find_map(|line| line.strip_prefix("fds: "))
        .unwrap_or_else(|| panic!("{output}"));
    let open: Vec<u32> = fds
        .split_whitespace()
        .filter_map(|fd| fd.parse().ok())
        .collect();
    assert!(
        open.iter().filter(|fd| **fd > 2).count() <= 1,
        "inherited descriptors: {fds}"
    );
    let scratch = output.lines().next().unwrap();
    assert!(
        scratch.contains("/proctor-runs-") && scratch.contains("/run-"),
        "{output}"
    );
    assert!(
        !std::path::Path::new(scratch).exists(),
        "the run's directory is removed when it ends"
    );
}

#[tokio::test]
async fn landlock_keeps_the_data_directory_from_runs_of_the_same_user() {
    if !proctor_server::sandbox::landlock_available() {
        eprintln!(
            "SKIPPED: this kernel has no Landlock; docs/src/security.md says what protects the data directory then"
        );
        return;
    }
    let app = TestApp::builder()
        .stack(Stack::Embedded)
        .with_args(&["--local-run-as=self"])
        .spawn()
        .await;
    let (output, secrets) = try_to_read_the_data_dir(&app).await;
    assert_denied(&output, &secrets, !rustix::process::geteuid().is_root());
}

#[tokio::test]
#[cfg_attr(
    any(proctor_no_postgres, proctor_no_redis),
    ignore = "needs Postgres and Redis: set PROCTOR_TEST_DATABASE_URL and PROCTOR_TEST_REDIS_URL, or run ./tests/run.sh"
)]
async fn a_revocation_on_one_replica_closes_sockets_on_another_at_once() {
    let Some((first, admin, user)) = auth_app(Stack::Production, Duration::from_secs(30)).await
    else {
        return;
    };
    let DatabaseTarget::Postgres { url: database } = &first.settings.storage.database else {
        panic!("the production stack runs on Postgres");
    };
    let redis = first
        .settings
        .redis
        .clone()
        .expect("the production stack has Redis");
    let second = TestApp::builder()
        .stack(Stack::Production)
        .with_args(&[
            "--auth-enabled".to_owned(),
            format!("--database-url={database}"),
            format!("--redis-url={}", redis.url),
            format!("--redis-channel-prefix={}", redis.channel_prefix),
            "--scheduler-enabled=false".to_owned(),
        ])
        .spawn()
        .await;
    let mut socket = socket_as(&second, &user).await;
    socket.start("1", WATCH, json!({})).await;
    assert_eq!(socket.wait_closed(Duration::from_millis(300)).await, None);
    let started = std::time::Instant::now();
    let revoked = first
        .api_as(&admin)
        .revoke_api_token("bo@example.com")
        .await;
    assert_eq!(revoked, Ok(true));
    let closed = socket.wait_closed(Duration::from_secs(10)).await;
    assert_eq!(closed.map(|(code, _)| code), Some(4403));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the bus event, not the 30 s re-check, closed it ({:?})",
        started.elapsed()
    );
    // A new connection with the revoked token is refused at connection_init.
    let again = WsClient::try_connect(
        &second.ws_url(),
        Protocol::TransportWs,
        json!({ "Authorization": format!("Bearer {user}") }),
    )
    .await;
    assert!(again.is_err(), "a revoked token cannot connect again");
}

#[tokio::test]
async fn huge_invalid_inputs_are_not_echoed_back() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    let mut pick = proc("pick", &["true"]);
    let mut color = arg("COLOR");
    color.type_ = Some(ArgType::ENUM);
    color.values = Some(vec!["red".to_owned(), "blue".to_owned()]);
    pick.args = Some(vec![color]);
    app.api().define_proc(pick).await;
    let huge = "x".repeat(900 * 1024);
    let refused = app
        .graphql(
            "mutation($a: [ArgInput!]) { execute(proc: \"pick\", args: $a) { id } }",
            json!({ "a": [{ "name": "COLOR", "value": huge }] }),
        )
        .await;
    let message = refused["errors"][0]["message"].as_str().unwrap();
    assert_eq!(refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(message.len() < 2_000, "{} bytes echoed", message.len());
    // The engine's own errors (an unknown enum value in a query) are capped too.
    let query =
        format!("{{ executions(filter: {{ status: [{huge}] }}) {{ edges {{ cursor }} }} }}");
    let response = app.graphql(&query, json!({})).await;
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.len() < 2_000, "{} bytes echoed", message.len());
}

async fn a_line_the_database_refuses_is_marked_lost_and_holds_nothing_back(stack: Stack) {
    use sea_orm::ConnectionTrait as _;
    let Some(app) = TestApp::builder().stack(stack).try_spawn().await else {
        return;
    };
    // A stand-in for any line the database cannot take: a trigger refusing one text.
    let db = app.state.db();
    let statements: &[&str] = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => &[
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.line LIKE '%POISON%' THEN RAISE EXCEPTION 'refused'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON execution_logs \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ],
        _ => &[
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON execution_logs \
               WHEN NEW.line LIKE '%POISON%' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        ],
    };
    for statement in statements {
        db.execute_unprepared(statement).await.unwrap();
    }
    let script = "echo one; echo POISON; echo three; echo four";
    app.api().define_proc(proc("poisoned", &sh(script))).await;
    let (id, last) = app.api().run_to_end("poisoned", &[]).await;
    assert_eq!(last.status, ExecutionStatus::Succeeded, "{last:?}");
    assert_eq!(last.log_lines_lost, 1, "{last:?}");
    let lines = all_lines(&app, &id).await;
    let texts: Vec<&str> = lines.iter().map(|line| line.line.as_str()).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[0], "one");
    assert!(
        texts[1].contains("could not be stored and was lost"),
        "{texts:?}"
    );
    assert_eq!(lines[1].stream, proctor_tests::api::LogStream::System);
    assert_eq!(
        &texts[2..],
        ["three", "four"],
        "later lines are not held back"
    );
}

on_both_stacks!(a_line_the_database_refuses_is_marked_lost_and_holds_nothing_back);

async fn a_run_taken_over_masks_the_values_it_started_with(stack: Stack) {
    use sea_orm::EntityTrait as _;
    let Some(app) = TestApp::builder().stack(stack).try_spawn().await else {
        return;
    };
    let mut holder = proc("holder", &["sleep", "30"]);
    holder.secrets = Some(vec![secret("TOKEN")]);
    app.api().define_proc(holder).await;
    let api = app.api();
    let set = |value: &'static str| {
        let api = &api;
        async move {
            api.set_secrets("holder", &[("TOKEN", value)])
                .await
                .expect("set");
        }
    };
    set("first-value-7Qx").await;
    let id: i64 = api.execute("holder", &[]).await.parse().unwrap();
    set("second-value-9Zy").await;
    // What a replica taking the run over rebuilds from the database.
    let row = proctor_entity::execution::Entity::find_by_id(id)
        .one(app.state.db())
        .await
        .unwrap()
        .unwrap();
    assert!(row.mask_sealed.is_some(), "the values are kept, sealed");
    assert!(
        !String::from_utf8_lossy(row.mask_sealed.as_ref().unwrap()).contains("first-value"),
        "and encrypted"
    );
    let (_, masker) = proctor_schema::executions::runner::prepare_run(&app.state, &row)
        .await
        .unwrap();
    assert_eq!(
        masker.mask("old first-value-7Qx new second-value-9Zy"),
        "old *** new ***"
    );
    api.cancel(&id.to_string()).await.expect("cancelled");
    // Once it ended, the sealed values are gone from its row.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let row = proctor_entity::execution::Entity::find_by_id(id)
            .one(app.state.db())
            .await
            .unwrap()
            .unwrap();
        if row.status.is_final() {
            assert_eq!(row.mask_sealed, None);
            assert_eq!(row.mask_key_id, None);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{row:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_stacks!(a_run_taken_over_masks_the_values_it_started_with);

#[tokio::test]
async fn a_run_cannot_read_another_runs_environment() {
    if !proctor_server::sandbox::landlock_available() {
        eprintln!(
            "SKIPPED: without Landlock, runs of one account can see each other (docs/src/security.md)"
        );
        return;
    }
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    let mut holder = proc("holder", &["sleep", "30"]);
    holder.secrets = Some(vec![secret("TOKEN")]);
    app.api().define_proc(holder).await;
    let api = app.api();
    api.set_secrets("holder", &[("TOKEN", "neighbour-secret-4242")])
        .await
        .expect("set");
    let id = api.execute("holder", &[]).await;
    let pid = api.running_group(&id).await;
    let script = format!(
        "cat /proc/{pid}/environ | tr '\\000' '\\n' | grep TOKEN; kill -STOP {pid} && echo SIGNALLED; echo done"
    );
    app.api().define_proc(proc("peek", &sh(&script))).await;
    let (peek, last) = app.api().run_to_end("peek", &[]).await;
    assert_eq!(last.status, ExecutionStatus::Succeeded, "{last:?}");
    let text: Vec<String> = all_lines(&app, &peek)
        .await
        .iter()
        .map(|line| line.line.clone())
        .collect();
    assert!(!text.join("\n").contains("neighbour-secret"), "{text:?}");
    assert!(
        !text.join("\n").contains("SIGNALLED"),
        "a run cannot signal another: {text:?}"
    );
    assert!(text.join("\n").contains("Permission denied"), "{text:?}");
    api.cancel(&id).await.expect("cancelled");
}

#[tokio::test]
async fn the_legacy_log_socket_is_cut_when_its_token_is_revoked() {
    use futures::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let (app, admin, user) = auth_app(Stack::Embedded, Duration::from_secs(30))
        .await
        .expect("the embedded stack needs nothing");
    app.api_as(&admin)
        .define_proc(proc("long", &sh("echo started; sleep 30")))
        .await;
    let id = app.api_as(&user).execute("long", &[]).await;
    let mut request = format!("ws://{}/execution/logs?context_id={id}", app.address)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Access-Token", HeaderValue::from_str(&user).unwrap());
    request
        .headers_mut()
        .insert("Email-Id", HeaderValue::from_static("bo@example.com"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, Message::text("started"));
    let revoked = app.api_as(&admin).revoke_api_token("bo@example.com").await;
    assert_eq!(revoked, Ok(true));
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 10 s");
    assert_eq!(closed, Some(4403));
    app.api_as(&admin).cancel(&id).await.expect("cancelled");
}

#[test]
fn proctord_starts_isolated_runs_through_proctor_run() {
    use proctor_tests::{Proctord, proctord_command};
    let directory = tempfile::tempdir().unwrap();
    let mut command = proctord_command(directory.path());
    command
        .env("PROCTOR_APP_PORT", "0")
        .env("PROCTOR_REGISTER_EXAMPLES", "false");
    let server = Proctord::spawn(command);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("local runs") {
        assert!(std::time::Instant::now() < deadline, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.stderr();
    if rustix::process::geteuid().is_root() || proctor_server::sandbox::landlock_available() {
        assert!(
            log.contains("started through") && log.contains("proctor-run"),
            "{log}"
        );
    }
    // The helper never runs anything as root.
    let helper = proctor_tests::workspace_binary("proctor-run");
    let refused = std::process::Command::new(&helper)
        .args(["-", "/tmp", "0:0", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not root"));
}

#[tokio::test]
async fn oversized_operations_and_anonymous_previews_are_refused() {
    let (app, _admin, user) = auth_app(Stack::Embedded, Duration::from_secs(30))
        .await
        .expect("the embedded stack needs nothing");
    let mut socket = socket_as(&app, &user).await;
    socket
        .start(
            "big",
            "subscription($p: String) { executionEvents(proc: $p) { id } }",
            json!({ "p": "x".repeat(100_000) }),
        )
        .await;
    let refused = socket.next_message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(refused.to_string().contains("LIMIT_EXCEEDED"), "{refused}");
    // Anonymous callers cannot spend the server's CPU on cron previews.
    let preview = cron_preview::Variables {
        cron: "* * * * * *".to_owned(),
        count: Some(100),
    };
    let anonymous = app
        .api()
        .call::<CronPreview>(preview)
        .await
        .expect_err("anonymous");
    assert_eq!(anonymous.code, "UNAUTHENTICATED", "{anonymous:?}");
    // And each preview costs what it computes.
    let aliases: String = (0..200)
        .map(|n| format!("p{n}: cronPreview(cron: \"* * * * * *\", count: 100) "))
        .collect();
    let greedy = app
        .graphql_as(&user, &format!("{{ {aliases} }}"), json!({}))
        .await;
    assert!(
        greedy["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too complex"),
        "{greedy}"
    );
}

#[tokio::test]
async fn only_the_owner_or_an_administrator_changes_a_schedule() {
    let (app, admin, user) = auth_app(Stack::Embedded, Duration::from_secs(30))
        .await
        .expect("the embedded stack needs nothing");
    let mut shared = proc("shared", &["true"]);
    shared.authorized_groups = Some(vec!["ops".to_owned()]);
    app.api_as(&admin).define_proc(shared).await;
    let (admin, user) = (app.api_as(&admin), app.api_as(&user));
    let mut input = every("shared", "0 0 1 1 *");
    input.enabled = Some(false);
    let id = admin.create_schedule(input).await;
    let change = schedule_change("shared", "0 0 2 1 *");
    let attempts = [
        user.call::<UpdateSchedule>(update_schedule::Variables {
            id: id.clone(),
            input: change,
        })
        .await
        .map(|_| ()),
        user.call::<SetScheduleEnabled>(set_schedule_enabled::Variables {
            id: id.clone(),
            enabled: true,
        })
        .await
        .map(|_| ()),
        user.call::<DeleteSchedule>(delete_schedule::Variables { id: id.clone() })
            .await
            .map(|_| ()),
    ];
    for refused in attempts {
        let refused = refused.expect_err("not the owner");
        assert_eq!(refused.code, "FORBIDDEN", "{refused:?}");
    }
    let still = admin
        .ok::<ScheduleDetail>(schedule_detail::Variables { id: id.clone() })
        .await
        .schedule
        .expect("still there");
    assert_eq!((still.cron.as_str(), still.enabled), ("0 0 1 1 *", false));
}

#[tokio::test]
async fn nul_characters_in_proc_files_are_refused() {
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    let content = "name: nul\ncommand: [\"true\"]\ndescription: \"a\\0b\"\n".to_owned();
    let refused = app
        .api()
        .call::<ApplyProcFile>(apply_proc_file::Variables { content })
        .await
        .expect_err("a NUL in a proc file");
    assert_eq!(refused.code, "BAD_USER_INPUT", "{refused:?}");
    assert!(refused.message.contains("description"), "{refused:?}");
}

#[tokio::test]
async fn a_websocket_message_over_the_body_limit_ends_the_connection() {
    let app = TestApp::builder()
        .stack(Stack::Embedded)
        .with_args(&["--max-body-bytes=65536"])
        .spawn()
        .await;
    let mut socket = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    socket
        .send_raw(json!({ "type": "ping", "payload": { "pad": "x".repeat(200 * 1024) } }))
        .await;
    assert!(
        socket.wait_closed(Duration::from_secs(5)).await.is_some(),
        "a 200 KiB message on a 64 KiB limit is not taken"
    );
}

#[tokio::test]
async fn a_file_created_next_to_the_data_directory_after_earlier_runs_is_readable() {
    if !proctor_server::sandbox::landlock_available() {
        eprintln!("SKIPPED: no Landlock here");
        return;
    }
    let app = TestApp::builder().stack(Stack::Embedded).spawn().await;
    app.api().define_proc(proc("first", &["true"])).await;
    let (_, last) = app.api().run_to_end("first", &[]).await;
    assert_eq!(last.status, ExecutionStatus::Succeeded);
    // Created after the rules were listed for the first run, next to the data directory.
    let sibling = app
        .settings
        .storage
        .data_dir
        .canonicalize()
        .unwrap()
        .with_extension("fresh");
    std::fs::create_dir(&sibling).unwrap();
    std::fs::set_permissions(
        &sibling,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(sibling.join("note"), "fresh-content").unwrap();
    std::fs::set_permissions(
        sibling.join("note"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let note = sibling.join("note");
    app.api()
        .define_proc(proc("reader", &["cat", note.to_str().unwrap()]))
        .await;
    let (id, last) = app.api().run_to_end("reader", &[]).await;
    assert_eq!(last.status, ExecutionStatus::Succeeded, "{last:?}");
    assert_eq!(all_lines(&app, &id).await[0].line, "fresh-content");
    std::fs::remove_dir_all(&sibling).unwrap();
}
