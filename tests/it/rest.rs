//! The REST shim: the Proctor v2 routes answer what the Go CLI v2.0.8 expects (status, headers,
//! body, websocket frames and close codes), a replayed CLI session works end to end, and both
//! APIs see the same data.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proctor_schema::schedules::firing::fire_due;
use proctor_tests::api::upsert_proc::ArgType;
use proctor_tests::api::{
    ExecutionStatus, ProcCatalogue, ProcDetail, ScheduleDetail, Trigger, arg, image_proc, proc,
    proc_catalogue, proc_detail, required_arg, schedule_detail, secret, sh,
};
use proctor_tests::legacy_cli::{
    LegacyCli, describe_output, line, list_output, schedule_describe_output, schedule_list_row,
    template_file,
};
use proctor_tests::{Stack, TestApp};
use regex::Regex;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const ADMIN: &str = "admin@example.com";
const USER: &str = "ada@example.com";

/// A server with built-in auth (the v2 headers carry real tokens); the scheduler loop is off so
/// schedules only fire when a test says so.
async fn start(stack: Stack) -> Option<TestApp> {
    TestApp::builder()
        .stack(stack)
        .with_args(&["--auth-enabled", "--scheduler-enabled=false"])
        .try_spawn()
        .await
}

/// One HTTP answer, whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("the server answers");
    Answer {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: response.text().await.expect("a body"),
    }
}

/// A request with the v2 CLI's headers for `email`/`token`.
fn legacy(app: &TestApp, method: Method, path: &str, email: &str, token: &str) -> RequestBuilder {
    app.http
        .request(method, app.url(path))
        .header("Email-Id", email)
        .header("Access-Token", token)
        .header("Client-Version", "v2.0.8")
}

fn post_json(
    app: &TestApp,
    path: &str,
    (email, token): (&str, &str),
    body: impl Into<String>,
) -> RequestBuilder {
    legacy(app, Method::POST, path, email, token)
        .header("Content-Type", "application/json")
        .body(body.into())
}

/// The keys of the JSON object `text` in the order they appear at its top level.
fn key_order(text: &str) -> Vec<String> {
    let object: serde_json::Map<String, Value> =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut keys: Vec<(usize, String)> = object
        .keys()
        .map(|key| {
            let quoted = format!("\"{key}\":");
            // Top-level keys are the first occurrence after the previous one; nested values in
            // these shapes never repeat a top-level key before it.
            (text.find(&quoted).expect("key present"), key.clone())
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, key)| key).collect()
}

/// Polls the v2 status route until it says `FINISHED` (or another final v2 status).
async fn wait_final(app: &TestApp, id: u64, (email, token): (&str, &str)) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = send(legacy(
            app,
            Method::GET,
            &format!("/execution/{id}/status"),
            email,
            token,
        ))
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let result = answer.json();
        if result["status"] != "CREATED" {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} did not end: {result}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Client version and credentials

#[tokio::test]
async fn the_client_version_check_answers_like_v2_and_only_when_configured() {
    let app = TestApp::builder()
        .with_args(&["--auth-enabled", "--min-client-version=v2.0.8"])
        .spawn()
        .await;
    let ping = |version: Option<&str>, method: Method, path: &str| {
        let mut request = app.http.request(method, app.url(path));
        if let Some(version) = version {
            request = request.header("Client-Version", version);
        }
        send(request)
    };
    let answer = ping(None, Method::GET, "/ping").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "pong"));
    let answer = ping(Some("v2.0.8"), Method::POST, "/ping").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "pong"),
        "equal passes, any method"
    );
    let answer = ping(Some("v2.1"), Method::GET, "/ping").await;
    assert_eq!(answer.status, 200, "newer passes");

    let outdated = ping(Some("v2.0.7"), Method::GET, "/ping").await;
    assert_eq!(outdated.status, 400);
    assert_eq!(outdated.content_type, "text/plain; charset=utf-8");
    assert_eq!(
        outdated.body,
        "Your Proctor client is using an outdated version: 2.0.7. To continue using proctor, \
         please upgrade to latest version."
    );
    let padded = ping(Some("0.1"), Method::GET, "/metadata").await;
    assert_eq!(padded.status, 400, "checked before credentials: {padded:?}");
    assert!(
        padded.body.contains("outdated version: 0.1.0. To continue"),
        "{padded:?}"
    );
    let unreadable = ping(Some("two"), Method::GET, "/schedule").await;
    assert_eq!(unreadable.status, 400);
    assert!(
        unreadable.body.starts_with(
            "Your Proctor client config is Invalid. Please contact your Proctor Administrator. \
             Error: Client-Version \"two\" is not a version"
        ),
        "{unreadable:?}"
    );
    let unmatched = ping(Some("0.1"), Method::GET, "/no-such-route").await;
    assert_eq!(unmatched.status, 404, "unmatched paths are not checked");
    let wrong_method = ping(Some("v2.0.8"), Method::PUT, "/metadata").await;
    assert_eq!(wrong_method.status, 405);
    let graphql = ping(Some("0.1"), Method::GET, "/healthz").await;
    assert_eq!(graphql.status, 200, "only the v2 routes are checked");
    app.stop().await.expect("clean stop");

    let unconfigured = TestApp::spawn().await;
    let answer = send(
        unconfigured
            .http
            .get(unconfigured.url("/ping"))
            .header("Client-Version", "0.0.1"),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "pong"),
        "v2 answered 500 to every client when no minimum was configured"
    );
}

async fn credentials_and_rights_are_checked_per_route(stack: Stack) {
    let Some(app) = start(stack).await else {
        return;
    };
    let admin = app.issue_token(ADMIN, &[], true).await;
    let user = app.issue_token(USER, &["team-a"], false).await;
    for (name, groups) in [("restricted", vec!["ops"]), ("open", vec![])] {
        let mut input = proc(name, &["echo", name]);
        input.authorized_groups = Some(groups.into_iter().map(str::to_owned).collect());
        app.api_as(&admin).define_proc(input).await;
    }
    let schedule_body = |proc: &str| {
        json!({ "jobName": proc, "tags": "t", "cron": "0 2 * * *",
            "notificationEmails": "a@b.co", "group": "g", "enabled": true })
        .to_string()
    };
    let routes: Vec<(Method, String, String)> = vec![
        (Method::GET, "/metadata".into(), String::new()),
        (Method::POST, "/metadata".into(), "[]".into()),
        (
            Method::POST,
            "/secret".into(),
            r#"{"job_name":"open","secrets":{}}"#.into(),
        ),
        (
            Method::POST,
            "/execution".into(),
            r#"{"name":"open","args":{}}"#.into(),
        ),
        (Method::GET, "/execution/1/status".into(), String::new()),
        (Method::POST, "/schedule".into(), schedule_body("open")),
        (Method::GET, "/schedule".into(), String::new()),
        (Method::GET, "/schedule/1".into(), String::new()),
        (Method::DELETE, "/schedule/1".into(), String::new()),
    ];
    for (method, path, body) in &routes {
        for (email, token) in [
            ("", ""),
            (USER, ""),
            ("", user.as_str()),
            (USER, "wrong-token"),
        ] {
            let answer =
                send(legacy(&app, method.clone(), path, email, token).body(body.clone())).await;
            assert_eq!(
                answer.status, 401,
                "{method} {path} as {email:?}/{token:?}: {answer:?}"
            );
        }
    }
    let anonymous = LegacyCli::new(app.address, "", "");
    assert_eq!(
        anonymous.stream_logs(1).await.unwrap_err(),
        "Unauthorized Access!!!\nEMAIL_ID or ACCESS_TOKEN is not present in proctor config file.",
        "the websocket checks credentials before the upgrade"
    );
    let wrong = LegacyCli::new(app.address, USER, "wrong-token");
    assert_eq!(
        wrong.stream_logs(1).await.unwrap_err(),
        "Unauthorized Access!!!\nPlease check the EMAIL_ID and ACCESS_TOKEN validity in proctor config file."
    );
    let ping = send(app.http.get(app.url("/ping"))).await;
    assert_eq!(ping.status, 200, "ping needs no credentials");

    let as_user = (USER, user.as_str());
    let as_admin = (ADMIN, admin.as_str());
    for (path, body) in [
        ("/metadata", "[]".to_owned()),
        ("/secret", r#"{"job_name":"open","secrets":{}}"#.to_owned()),
        (
            "/execution",
            r#"{"name":"restricted","args":{}}"#.to_owned(),
        ),
        ("/schedule", schedule_body("restricted")),
    ] {
        let answer = send(post_json(&app, path, as_user, body)).await;
        assert_eq!(answer.status, 403, "POST {path}: {answer:?}");
        assert!(!answer.body.is_empty(), "403s say why: {answer:?}");
    }

    let visible = |answer: Answer| -> Vec<String> {
        answer
            .json()
            .as_array()
            .expect("an array")
            .iter()
            .map(|proc| proc["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let users_view = send(legacy(&app, Method::GET, "/metadata", USER, &user)).await;
    assert_eq!(
        visible(users_view),
        ["open"],
        "only procs the caller may run"
    );
    let admins_view = send(legacy(&app, Method::GET, "/metadata", ADMIN, &admin)).await;
    assert_eq!(visible(admins_view), ["open", "restricted"]);

    let started = send(post_json(
        &app,
        "/execution",
        as_admin,
        r#"{"name":"restricted"}"#,
    ))
    .await;
    assert_eq!(started.status, 201, "{started:?}");
    let id = started.json()["id"].as_u64().expect("a numeric id");
    let status = send(legacy(
        &app,
        Method::GET,
        &format!("/execution/{id}/status"),
        USER,
        &user,
    ))
    .await;
    assert_eq!(status.status, 403, "another team's execution: {status:?}");
    let refused = LegacyCli::new(app.address, USER, &user)
        .stream_logs(id)
        .await;
    assert_eq!(
        refused.unwrap_err(),
        "websocket: bad handshake (403 Forbidden)"
    );
}

// ---------------------------------------------------------------------------------------------
// /metadata and /secret

const ECHO_WORKER: &str = r#"{"name":"echo-worker","description":"This procs will echo your name","image_name":"walbertusd/echo-worker","env_vars":{"secrets":[{"name":"SECRET_NAME","description":"My other secret name"}],"args":[{"name":"NAME","description":"Name to be echoed"}]},"authorized_groups":["my-group"],"author":"Dembo","contributors":"Dembo","organization":"GoJek"}"#;

async fn metadata_and_secrets_follow_the_v2_contract(stack: Stack) {
    let Some(app) = start(stack).await else {
        return;
    };
    let admin = app.issue_token(ADMIN, &[], true).await;
    let as_admin = (ADMIN, admin.as_str());
    let get = || send(legacy(&app, Method::GET, "/metadata", ADMIN, &admin));

    let empty = get().await;
    assert_eq!(
        (empty.status, empty.body.as_str()),
        (200, "[]"),
        "v2 answered 500 here"
    );
    assert_eq!(empty.content_type, "application/json");

    for malformed in ["test", r#"{"name":"x"}"#, ""] {
        let answer = send(post_json(&app, "/metadata", as_admin, malformed)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (400, "malformed request")
        );
    }
    let one_bad = format!(r#"[{ECHO_WORKER},{{"name":"Bad Name","image_name":"x"}}]"#);
    let answer = send(post_json(&app, "/metadata", as_admin, one_bad)).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .body
            .starts_with(r#"[1].name: "Bad Name" is not a valid proc name"#),
        "{answer:?}"
    );
    assert_eq!(get().await.body, "[]", "one bad element stores nothing");

    let answer = send(post_json(&app, "/metadata", as_admin, "[]")).await;
    assert_eq!((answer.status, answer.body.as_str()), (201, ""));
    let minimal = r#"{"name":"minimal","image_name":"busybox","ignored":true}"#;
    let answer = send(post_json(
        &app,
        "/metadata",
        as_admin,
        format!("[{minimal},{ECHO_WORKER}]"),
    ))
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (201, ""),
        "{answer:?}"
    );
    // The v2 shape, key order and zero values, by name.
    let listed = get().await;
    assert!(
        listed.body.starts_with(&format!("[{ECHO_WORKER},")),
        "{listed:?}"
    );
    insta::assert_snapshot!("metadata_listed", listed.body);

    // The same procs over GraphQL.
    let procs = app
        .api_as(&admin)
        .ok::<ProcCatalogue>(proc_catalogue::Variables)
        .await
        .procs;
    let echo = &procs[0];
    assert_eq!(echo.name, "echo-worker");
    assert_eq!(echo.image.as_deref(), Some("walbertusd/echo-worker"));
    assert_eq!(echo.authorized_groups, ["my-group"]);
    let args: Vec<_> = echo
        .args
        .iter()
        .map(|a| (a.name.as_str(), &a.type_, a.required))
        .collect();
    assert_eq!(args, [("NAME", &proc_catalogue::ArgType::STRING, false)]);
    let secrets: Vec<_> = echo
        .secrets
        .iter()
        .map(|s| (s.key.as_str(), s.is_set))
        .collect();
    assert_eq!(secrets, [("SECRET_NAME", false)]);

    // Re-posting v2 metadata keeps what only GraphQL can say (command, types, limits).
    let mut typed = proc("typed", &["echo", "hi"]);
    typed.timeout_seconds = Some(30);
    let mut count = required_arg("COUNT");
    count.type_ = Some(ArgType::INT);
    typed.args = Some(vec![count]);
    app.api_as(&admin).define_proc(typed).await;
    let repost = r#"[{"name":"typed","description":"now described","image_name":"img","env_vars":{"args":[{"name":"COUNT","description":"how many"}]}}]"#;
    assert_eq!(
        send(post_json(&app, "/metadata", as_admin, repost))
            .await
            .status,
        201
    );
    let detail = |name: &str| {
        let variables = proc_detail::Variables {
            name: name.to_owned(),
        };
        let api = app.api_as(&admin);
        async move {
            api.ok::<ProcDetail>(variables)
                .await
                .proc
                .expect("the proc")
        }
    };
    let typed = detail("typed").await;
    assert_eq!(typed.description.as_deref(), Some("now described"));
    assert_eq!(typed.image.as_deref(), Some("img"));
    assert_eq!(
        typed.command,
        Some(vec!["echo".to_owned(), "hi".to_owned()])
    );
    assert_eq!(typed.timeout_seconds, Some(30));
    let args: Vec<_> = typed
        .args
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.description.as_deref(),
                &a.type_,
                a.required,
            )
        })
        .collect();
    assert_eq!(
        args,
        [("COUNT", Some("how many"), &proc_detail::ArgType::INT, true)]
    );

    // POST /secret
    for malformed in [
        "test",
        "[]",
        r#"{"job_name":"echo-worker","secrets":{"A":1}}"#,
    ] {
        let answer = send(post_json(&app, "/secret", as_admin, malformed)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (400, "malformed request"),
            "{malformed}"
        );
    }
    let answer = send(post_json(
        &app,
        "/secret",
        as_admin,
        r#"{"job_name":"nope","secrets":{"A":"s3cr3t-value"}}"#,
    ))
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (404, r#"proc "nope" not found"#)
    );
    let answer = send(post_json(
        &app,
        "/secret",
        as_admin,
        r#"{"job_name":"echo-worker","secrets":{"OTHER":"s3cr3t-value"}}"#,
    ))
    .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains(r#"declares no secret "OTHER""#),
        "{answer:?}"
    );
    assert!(
        !answer.body.contains("s3cr3t-value"),
        "values are never echoed"
    );
    let answer = send(post_json(
        &app,
        "/secret",
        as_admin,
        r#"{"job_name":"echo-worker","secrets":{"SECRET_NAME":"s3cr3t-value"}}"#,
    ))
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (201, ""));
    let worker = detail("echo-worker").await;
    let secrets: Vec<_> = worker
        .secrets
        .iter()
        .map(|s| (s.key.as_str(), s.is_set))
        .collect();
    assert_eq!(secrets, [("SECRET_NAME", true)]);
    assert!(!get().await.body.contains("s3cr3t-value"));
}

// ---------------------------------------------------------------------------------------------
// /execution

async fn execution_routes_follow_the_v2_contract(stack: Stack) {
    let Some(app) = start(stack).await else {
        return;
    };
    let admin = app.issue_token(ADMIN, &[], true).await;
    let as_admin = (ADMIN, admin.as_str());
    let mut greet = image_proc(
        "greet",
        "registry.example/greet:1",
        &sh("echo \"hello $WHO\"; echo second line"),
    );
    let mut who = arg("WHO");
    who.default = Some("world".to_owned());
    let mut times = arg("TIMES");
    times.type_ = Some(ArgType::INT);
    greet.args = Some(vec![who, times]);
    app.api_as(&admin).define_proc(greet).await;
    app.api_as(&admin)
        .define_proc(proc("broken", &sh("echo trying; exit 3")))
        .await;
    let mut needs_secret = proc("needs-secret", &["true"]);
    needs_secret.secrets = Some(vec![secret("TOKEN")]);
    app.api_as(&admin).define_proc(needs_secret).await;
    app.api_as(&admin)
        .define_proc(image_proc("image-only", "busybox", &[]))
        .await;

    let post = |body: &str| send(post_json(&app, "/execution", as_admin, body.to_owned()));
    let answer = post("test").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "Failed to parse request body from CLI")
    );
    let answer = post(r#"{"name":"greet","args":{"WHO":1}}"#).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "Failed to parse request body from CLI")
    );
    let answer = post(r#"{"args":{}}"#).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            400,
            "Failed to execute Job, Errors Detail name: the proc name is missing"
        )
    );
    let answer = post(r#"{"name":"nope"}"#).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            404,
            r#"Failed to execute Job, Errors Detail proc "nope" not found"#
        )
    );
    let answer = post(r#"{"name":"greet","args":{"TIMES":"many"}}"#).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .body
            .starts_with("Failed to execute Job, Errors Detail args"),
        "{answer:?}"
    );
    assert!(
        answer.body.contains("TIMES"),
        "names the argument: {answer:?}"
    );
    let answer = post(r#"{"name":"needs-secret"}"#).await;
    assert_eq!(
        answer.status, 500,
        "v2's status for unmet requirements: {answer:?}"
    );
    assert!(
        answer.body.starts_with(
            r#"Failed to execute Job, Errors Detail proc "needs-secret" cannot run: secret(s) TOKEN not set"#
        ),
        "{answer:?}"
    );

    let created = post(r#"{"name":"greet","args":{"WHO":"ada"},"callback_url":"ignored"}"#).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.content_type, "application/json");
    assert_eq!(
        key_order(&created.body),
        [
            "id",
            "job_name",
            "name",
            "image_tag",
            "created_at",
            "updated_at",
            "status"
        ]
    );
    let result = created.json();
    let id = result["id"].as_u64().expect("the id is a JSON number");
    let go_time = Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? \+0000 UTC$").unwrap();
    assert_eq!(result["name"], format!("proctor-{id}-greet"));
    for time in ["created_at", "updated_at"] {
        let shown = result[time].as_str().unwrap_or_default();
        assert!(go_time.is_match(shown), "{time}: {result}");
    }
    // Ids and times vary; everything else is the v2 contract.
    insta::assert_json_snapshot!("execution_created", result, {
        ".id" => "[id]", ".name" => "[proctor-id-proc]",
        ".created_at" => "[time]", ".updated_at" => "[time]"
    });

    let finished = wait_final(&app, id, as_admin).await;
    assert_eq!(finished["name"], result["name"]);
    insta::assert_json_snapshot!("execution_finished", finished, {
        ".id" => "[id]", ".name" => "[proctor-id-proc]",
        ".created_at" => "[time]", ".updated_at" => "[time]"
    });
    let status = send(legacy(
        &app,
        Method::GET,
        &format!("/execution/{id}/status"),
        ADMIN,
        &admin,
    ))
    .await;
    assert_eq!(
        key_order(&status.body),
        [
            "id",
            "job_name",
            "name",
            "image_tag",
            "created_at",
            "updated_at",
            "status"
        ]
    );

    let failed = post(r#"{"name":"broken"}"#).await.json();
    let failed = wait_final(&app, failed["id"].as_u64().unwrap(), as_admin).await;
    assert_eq!(failed["status"], "FINISHED", "v2 had no failure status");
    let not_created = post(r#"{"name":"image-only"}"#).await;
    assert_eq!(not_created.status, 201);
    let not_created = wait_final(&app, not_created.json()["id"].as_u64().unwrap(), as_admin).await;
    assert_eq!(
        not_created["status"], "CREATION_FAILED",
        "no command for the local executor"
    );

    for (path, status, body) in [
        (
            "/execution/abc/status",
            400,
            "Failed to translate path parameter to uint64",
        ),
        (
            "/execution/-1/status",
            400,
            "Failed to translate path parameter to uint64",
        ),
        (
            "/execution/987654321/status",
            404,
            "Execution context not Found",
        ),
        (
            "/execution/18446744073709551615/status",
            404,
            "Execution context not Found",
        ),
    ] {
        let answer = send(legacy(&app, Method::GET, path, ADMIN, &admin)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (status, body),
            "{path}"
        );
    }

    // A scheduled run whose secret is missing never reaches a supervisor: REQUIREMENT_NOT_MET.
    let schedule = send(post_json(
        &app,
        "/schedule",
        as_admin,
        json!({ "jobName": "needs-secret", "tags": "t", "cron": "* * * * *",
            "notificationEmails": "ops@example.com", "group": "g" })
        .to_string(),
    ))
    .await;
    assert_eq!(schedule.status, 201, "{schedule:?}");
    let schedule_id = schedule.json()["id"].to_string();
    let api = app.api_as(&admin);
    let (_, next) = api.schedule_runs(&schedule_id).await;
    let slot = next.expect("a due slot");
    fire_due(&app.state, slot)
        .await
        .expect("the due slot fires");
    let (runs, _) = api.schedule_runs(&schedule_id).await;
    let execution_id: u64 = runs[0]
        .execution
        .as_ref()
        .and_then(|execution| execution.id.parse().ok())
        .unwrap_or_else(|| panic!("a run with an execution: {runs:?}"));
    let unmet = wait_final(&app, execution_id, as_admin).await;
    assert_eq!(unmet["status"], "REQUIREMENT_NOT_MET");
}

// ---------------------------------------------------------------------------------------------
// The log websocket

async fn the_log_websocket_sends_one_frame_per_line_then_closes_normally(stack: Stack) {
    let Some(app) = start(stack).await else {
        return;
    };
    let admin = app.issue_token(ADMIN, &[], true).await;
    let as_admin = (ADMIN, admin.as_str());
    let cli = LegacyCli::new(app.address, ADMIN, &admin);

    for (query, reason) in [
        (
            "",
            "No valid execution context id provided when fetching logs",
        ),
        (
            "?context_id=abc",
            "No valid execution context id provided when fetching logs",
        ),
        (
            "?context_id=987654321",
            "No execution context found with id 987654321",
        ),
    ] {
        let stream = cli
            .stream_logs_at(&format!("/execution/logs{query}"))
            .await
            .expect("upgraded");
        assert!(stream.messages.is_empty(), "{query}: {stream:?}");
        let close = stream.close.expect("a close frame");
        assert_eq!(
            (close.code, close.reason.as_str()),
            (CloseCode::Normal, reason),
            "{query}"
        );
    }
    let plain = send(legacy(
        &app,
        Method::GET,
        "/execution/logs?context_id=1",
        ADMIN,
        &admin,
    ))
    .await;
    assert_eq!(
        (plain.status, plain.body.as_str()),
        (400, "Bad Request\nWebSocket Initializer Error"),
        "not a websocket request"
    );

    let mut times_out = proc("times-out", &sh("echo started; exec sleep 30"));
    times_out.timeout_seconds = Some(1);
    let definitions = [
        proc("succeeds", &sh("echo one; echo two; echo three")),
        proc("fails", &sh("echo before the failure; exit 1")),
        times_out,
        proc("cancelled", &sh("echo waiting; exec sleep 30")),
        image_proc("not-created", "busybox", &[]),
    ];
    for definition in definitions {
        app.api_as(&admin).define_proc(definition).await;
    }
    let run = |name: &str| {
        let body = format!(r#"{{"name":"{name}"}}"#);
        async {
            let answer = send(post_json(&app, "/execution", as_admin, body)).await;
            assert_eq!(answer.status, 201, "{answer:?}");
            answer.json()["id"].as_u64().expect("an id")
        }
    };

    // Live: connected while it runs, each line arrives as it is written.
    let script = "echo one; sleep 1; echo two; sleep 1; echo three";
    app.api_as(&admin)
        .define_proc(proc("slow", &sh(script)))
        .await;
    let slow = run("slow").await;
    let live = cli.stream_logs(slow).await.expect("a stream");
    assert_eq!(live.messages, ["one", "two", "three"]);
    let close = live.close.expect("a close frame");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (CloseCode::Normal, "Finished Streaming log from pod")
    );

    // Every final state: the stored lines, then a normal close.
    let cancelled = run("cancelled").await;
    let ids: Vec<(&str, u64)> = vec![
        ("succeeds", run("succeeds").await),
        ("fails", run("fails").await),
        ("times-out", run("times-out").await),
        ("not-created", run("not-created").await),
    ];
    // Cancel once its line is stored.
    let deadline = Instant::now() + Duration::from_secs(20);
    let api = app.api_as(&admin);
    loop {
        let status = api.status(&cancelled.to_string()).await;
        if status == ExecutionStatus::Running {
            break;
        }
        assert!(Instant::now() < deadline, "never running: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.cancel(&cancelled.to_string()).await.expect("cancelled");
    let mut all = ids.clone();
    all.push(("cancelled", cancelled));
    let expected_status = |name: &str| match name {
        "succeeds" => ExecutionStatus::Succeeded,
        "fails" => ExecutionStatus::Failed,
        "times-out" => ExecutionStatus::TimedOut,
        "cancelled" => ExecutionStatus::Cancelled,
        _ => ExecutionStatus::CreationFailed,
    };
    for (name, id) in all {
        wait_final(&app, id, as_admin).await;
        assert_eq!(
            api.status(&id.to_string()).await,
            expected_status(name),
            "{name}"
        );
        let stream = cli.stream_logs(id).await.expect("a stream");
        let expected: &[&str] = match name {
            "succeeds" => &["one", "two", "three"],
            "fails" => &["before the failure"],
            "times-out" => &["started"],
            "cancelled" => &["waiting"],
            _ => &[],
        };
        assert_eq!(stream.messages, expected, "{name}");
        let close = stream.close.expect("a close frame");
        assert_eq!(
            (close.code, close.reason.as_str()),
            (CloseCode::Normal, "Finished Streaming log from repository"),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// /schedule

async fn schedule_routes_follow_the_v2_contract(stack: Stack) {
    let Some(app) = start(stack).await else {
        return;
    };
    let admin = app.issue_token(ADMIN, &[], true).await;
    let as_admin = (ADMIN, admin.as_str());
    let mut report = proc("report", &["true"]);
    report.args = Some(vec![arg("REGION")]);
    app.api_as(&admin).define_proc(report).await;
    let valid = json!({ "id": 0, "jobName": "report", "args": { "REGION": "eu" }, "tags": "nightly,finance",
        "cron": "0 2 * * *", "notificationEmails": "ops@example.com,lead@example.com",
        "group": "reports", "enabled": true });
    let with = |changes: Value| {
        let mut body = valid.clone();
        for (key, value) in changes.as_object().expect("an object") {
            body[key] = value.clone();
        }
        body.to_string()
    };
    let post = |body: String| send(post_json(&app, "/schedule", as_admin, body));

    let answer = post("test".into()).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "Malformed request")
    );
    // v2's order: tags, cron, e-mails, group, proc.
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "tags": "", "cron": "bad", "notificationEmails": "bad", "group": "" }),
            400,
            "Schedule tag(s) are missing",
        ),
        (
            json!({ "cron": "bad", "notificationEmails": "bad", "group": "" }),
            400,
            "Schedule cron format is invalid",
        ),
        (
            json!({ "cron": "0 0 2 * * *" }),
            400,
            "Schedule cron format is invalid",
        ),
        (
            json!({ "cron": "@daily" }),
            400,
            "Schedule cron format is invalid",
        ),
        (
            json!({ "cron": "61 2 * * *" }),
            400,
            "Schedule cron format is invalid",
        ),
        (
            json!({ "cron": "" }),
            400,
            "Schedule cron format is invalid",
        ),
        (
            json!({ "notificationEmails": "bad", "group": "" }),
            400,
            "Email is invalid",
        ),
        (
            json!({ "notificationEmails": "a@example.com, b@example.com" }),
            400,
            "Email is invalid",
        ),
        (json!({ "notificationEmails": "" }), 400, "Email is invalid"),
        (
            json!({ "group": "", "jobName": "nope" }),
            400,
            "Schedule group is missing",
        ),
        (json!({ "jobName": "nope" }), 404, "Metadata not found"),
        (json!({ "args": { "UNKNOWN": "1" } }), 400, "args"),
    ];
    for (changes, status, start) in cases {
        let answer = post(with(changes.clone())).await;
        assert_eq!(answer.status, status, "{changes}: {answer:?}");
        assert!(answer.body.starts_with(start), "{changes}: {answer:?}");
    }

    let created = post(valid.to_string()).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(
        key_order(&created.body),
        [
            "id",
            "jobName",
            "args",
            "tags",
            "cron",
            "notificationEmails",
            "userEmail",
            "group",
            "enabled",
            "createdAt",
            "updatedAt"
        ]
    );
    let schedule = created.json();
    let id = schedule["id"].as_u64().expect("a numeric id");
    let rfc3339 = Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$").unwrap();
    assert!(
        rfc3339.is_match(schedule["createdAt"].as_str().unwrap()),
        "{schedule}"
    );
    assert!(
        rfc3339.is_match(schedule["updatedAt"].as_str().unwrap()),
        "{schedule}"
    );
    insta::assert_json_snapshot!("schedule_created", schedule, {
        ".id" => "[id]", ".createdAt" => "[time]", ".updatedAt" => "[time]"
    });

    let four_fields = post(with(json!({ "cron": "30 4 1 *", "enabled": null })))
        .await
        .json();
    assert_eq!(
        four_fields["cron"], "0 30 4 1 * *",
        "day-of-week defaults to *"
    );
    assert_eq!(
        four_fields["enabled"], true,
        "v2 left omitted `enabled` false"
    );
    let paused = post(with(json!({ "enabled": false }))).await.json();
    let paused_id = paused["id"].as_u64().unwrap();

    // The same schedule over GraphQL.
    let detail = |id: String| {
        let api = app.api_as(&admin);
        async move {
            let variables = schedule_detail::Variables { id };
            api.ok::<ScheduleDetail>(variables).await.schedule
        }
    };
    let over_graphql = detail(id.to_string()).await.expect("the schedule");
    assert_eq!(
        (
            over_graphql.proc_name.as_str(),
            over_graphql.cron.as_str(),
            over_graphql.timezone.as_str()
        ),
        ("report", "0 0 2 * * *", "UTC")
    );
    assert_eq!(over_graphql.tags, ["nightly", "finance"]);
    assert_eq!(over_graphql.group.as_deref(), Some("reports"));
    assert_eq!(
        over_graphql.notification_emails,
        ["ops@example.com", "lead@example.com"]
    );
    assert!(over_graphql.enabled);
    let args: Vec<_> = over_graphql
        .args
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(args, [("REGION", "eu")]);

    let get = |path: String| send(legacy(&app, Method::GET, &path, ADMIN, &admin));
    let listed = get("/schedule".into()).await;
    assert_eq!(listed.status, 200);
    let ids: Vec<u64> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [id, four_fields["id"].as_u64().unwrap()],
        "enabled ones, oldest first"
    );
    let one = get(format!("/schedule/{id}")).await;
    assert_eq!((one.status, one.json()), (200, schedule.clone()));
    assert_eq!(
        get(format!("/schedule/{paused_id}")).await.json()["enabled"],
        false,
        "paused ones by id"
    );
    for (path, status, body) in [
        (
            "/schedule/abc".to_owned(),
            400,
            "Failed to translate path parameter to uint64".to_owned(),
        ),
        (
            "/schedule/987654321".to_owned(),
            404,
            "schedule 987654321 not found".to_owned(),
        ),
    ] {
        let answer = get(path.clone()).await;
        assert_eq!(
            (answer.status, answer.body),
            (status, body.clone()),
            "GET {path}"
        );
        let answer = send(legacy(&app, Method::DELETE, &path, ADMIN, &admin)).await;
        assert_eq!(
            (answer.status, answer.body),
            (status, body),
            "DELETE {path}"
        );
    }

    for remove in [id, four_fields["id"].as_u64().unwrap()] {
        let answer = send(legacy(
            &app,
            Method::DELETE,
            &format!("/schedule/{remove}"),
            ADMIN,
            &admin,
        ))
        .await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "Schedule delete is successful")
        );
    }
    assert_eq!(
        get(format!("/schedule/{id}")).await.status,
        404,
        "v2 answered 500"
    );
    assert!(
        detail(id.to_string()).await.is_none(),
        "the schedule is gone"
    );
    let empty = get("/schedule".into()).await;
    assert_eq!(
        (empty.status, empty.body.as_str()),
        (204, ""),
        "only a paused one is left"
    );
}

// ---------------------------------------------------------------------------------------------
// A replayed v2.0.8 CLI session

const SAY_HELLO: &str = "echo 'Hello World!'; echo \"I received secrets: $SAMPLE_SECRET_ONE and $SAMPLE_SECRET_TWO\"; echo \"I received arguments: $SAMPLE_ARG_ONE and $SAMPLE_ARG_TWO\"";

async fn a_replayed_v2_cli_session_works_end_to_end(stack: Stack) {
    let Some(app) = start(stack).await else {
        return;
    };
    let admin = app.issue_token(ADMIN, &[], true).await;
    let as_admin = (ADMIN, admin.as_str());
    let user = app.issue_token(USER, &["proctor-users"], false).await;
    // The local executor runs commands; v2 metadata has none, so the proc's command is set over
    // GraphQL and the v2 seeding scripts (test/procs/*/metadata.json, curl POST /secret) follow.
    app.api_as(&admin)
        .define_proc(proc("say-hello-world", &sh(SAY_HELLO)))
        .await;
    let metadata = json!([{ "name": "say-hello-world", "description": "Prints hello world",
        "image_name": "proctorscripts/test-say-hello-world:latest",
        "env_vars": {
            "secrets": [{ "name": "SAMPLE_SECRET_ONE", "description": "first secret" },
                        { "name": "SAMPLE_SECRET_TWO", "description": "second secret" }],
            "args": [{ "name": "SAMPLE_ARG_ONE", "description": "arg one description" },
                     { "name": "SAMPLE_ARG_TWO", "description": "arg two description" }] },
        "authorized_groups": ["proctor-users"], "author": "Proctor", "contributors": "Proctor team",
        "organization": "Proctor" }]);
    let seeded = send(post_json(&app, "/metadata", as_admin, metadata.to_string())).await;
    assert_eq!(seeded.status, 201, "{seeded:?}");
    let secrets = r#"{"job_name":"say-hello-world","secrets":{"SAMPLE_SECRET_ONE":"first-s3cret","SAMPLE_SECRET_TWO":"second-s3cret"}}"#;
    assert_eq!(
        send(post_json(&app, "/secret", as_admin, secrets))
            .await
            .status,
        201
    );

    let cli = LegacyCli::new(app.address, USER, &user);
    // proctor list
    let procs = cli.list_procs().await.expect("list");
    assert_eq!(
        list_output(&procs),
        [
            "List of Procs:\n".to_owned(),
            line("say-hello-world", "Prints hello world"),
            "\nFor detailed information of any proc, run:\nproctor describe <proc_name>".to_owned(),
        ]
    );
    // proctor describe say-hello-world
    assert_eq!(
        describe_output(&procs, "say-hello-world"),
        [
            line("Description", "Prints hello world"),
            line("Contributors", "Proctor team"),
            line("Organization", "Proctor"),
            format!("{:<40} [proctor-users]", "Authorized Groups"),
            "\nArgs".to_owned(),
            line("SAMPLE_ARG_ONE", "arg one description"),
            line("SAMPLE_ARG_TWO", "arg two description"),
            "\nTo say-hello-world, run:\nproctor execute say-hello-world ARG_ONE=foo ARG_TWO=bar"
                .to_owned(),
        ]
    );
    // proctor template say-hello-world say-hello-world.yaml
    assert_eq!(
        template_file(&procs[0]),
        "# arg one description\nSAMPLE_ARG_ONE:\n# arg two description\nSAMPLE_ARG_TWO:\n"
    );

    // proctor execute say-hello-world SAMPLE_ARG_ONE=foo SAMPLE_ARG_TWO=bar
    let args: BTreeMap<String, String> = [("SAMPLE_ARG_ONE", "foo"), ("SAMPLE_ARG_TWO", "bar")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let execution = cli
        .execute_proc("say-hello-world", &args)
        .await
        .expect("execute");
    let id = execution["id"].as_u64().expect("ID");
    assert_eq!(execution["name"], format!("proctor-{id}-say-hello-world"));
    let streamed = cli.stream_logs(id).await.expect("Streaming logs");
    let expected_output = [
        "Hello World!",
        "I received secrets: *** and ***",
        "I received arguments: foo and bar",
    ];
    assert_eq!(
        streamed.messages, expected_output,
        "secret values are masked"
    );
    assert_eq!(streamed.close.expect("closed").code, CloseCode::Normal);

    // proctor status <id>
    let status = cli.execution_status(id).await.expect("status");
    assert_eq!(status["job_name"], "say-hello-world");
    assert_eq!(status["status"], "FINISHED");
    assert!(
        status["updated_at"]
            .as_str()
            .is_some_and(|t| t.ends_with(" +0000 UTC"))
    );
    // proctor logs <id>: the stored lines, after the end.
    let replayed = cli.stream_logs(id).await.expect("logs");
    assert_eq!(replayed.messages, expected_output);
    // Without variables (the CLI sends a null map).
    let bare = cli
        .execute_proc("say-hello-world", &BTreeMap::new())
        .await
        .expect("no variables");
    let bare_logs = cli
        .stream_logs(bare["id"].as_u64().unwrap())
        .await
        .expect("logs");
    assert_eq!(bare_logs.messages[2], "I received arguments:  and ");

    // proctor schedule say-hello-world -g my-group -c '0 2 * * *' -n ... -T 'sample,proctor' ARG=...
    let schedule_id = cli
        .schedule(
            "say-hello-world",
            "sample,proctor",
            "0 2 * * *",
            "username@mail.com",
            "my-group",
            &args,
        )
        .await
        .expect("Scheduled Job UUID");
    // proctor schedule list
    let schedules = cli.list_schedules().await.expect("schedule list");
    assert_eq!(schedules.len(), 1);
    assert_eq!(
        schedule_list_row(&schedules[0]),
        format!(
            "{schedule_id:<40} {:<30} {:<20} sample,proctor",
            "say-hello-world", "my-group"
        )
    );
    // proctor schedule describe <id>
    let described = cli.describe_schedule(schedule_id).await.expect("describe");
    assert_eq!(
        schedule_describe_output(&described),
        [
            format!("{:<40} {schedule_id:<100}", "ID"),
            line("PROC NAME", "say-hello-world"),
            line("GROUP NAME", "my-group"),
            line("TAGS", "sample,proctor"),
            line("Cron", "0 0 2 * * *"),
            line("Notifier", "username@mail.com"),
            "\nArgs".to_owned(),
            line("SAMPLE_ARG_ONE", "foo"),
            line("SAMPLE_ARG_TWO", "bar"),
        ]
    );
    // proctor schedule remove <id>
    cli.remove_schedule(&schedule_id.to_string())
        .await
        .expect("removed");
    assert_eq!(
        cli.describe_schedule(schedule_id).await.unwrap_err(),
        "Job not found"
    );
    assert_eq!(
        cli.list_schedules().await.unwrap_err(),
        "No scheduled jobs found"
    );
    assert_eq!(
        cli.remove_schedule("abc").await.unwrap_err(),
        "Failed to translate path parameter to uint64"
    );
    // An outsider's CLI is refused with the CLI's own words.
    let outsider = app.issue_token("eve@example.com", &[], false).await;
    let outsider = LegacyCli::new(app.address, "eve@example.com", &outsider);
    assert_eq!(
        outsider
            .execute_proc("say-hello-world", &args)
            .await
            .unwrap_err(),
        "Access Denied : You are Not Authorized to Perform this action."
    );
    assert!(outsider.list_procs().await.expect("list").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Both APIs, one store

async fn executions_started_on_either_api_read_back_on_the_other(stack: Stack) {
    let Some(app) = start(stack).await else {
        return;
    };
    let admin = app.issue_token(ADMIN, &[], true).await;
    let as_admin = (ADMIN, admin.as_str());
    let mut hello = proc("hello", &["echo", "hi"]);
    hello.args = Some(vec![arg("WHO")]);
    app.api_as(&admin).define_proc(hello).await;

    let api = app.api_as(&admin);
    let from_graphql: u64 = api
        .execute("hello", &[("WHO", "graphql")])
        .await
        .parse()
        .unwrap();
    let read = wait_final(&app, from_graphql, as_admin).await;
    assert_eq!(
        (read["job_name"].as_str(), read["status"].as_str()),
        (Some("hello"), Some("FINISHED"))
    );
    assert_eq!(read["id"].as_u64(), Some(from_graphql));

    let posted = send(post_json(
        &app,
        "/execution",
        as_admin,
        r#"{"name":"hello","args":{"WHO":"rest"}}"#,
    ))
    .await;
    assert_eq!(posted.status, 201);
    let from_rest = posted.json()["id"].as_u64().unwrap();
    wait_final(&app, from_rest, as_admin).await;
    let seen = api
        .execution(&from_rest.to_string())
        .await
        .expect("the run");
    assert_eq!(seen.proc_name, "hello");
    assert_eq!(seen.status, ExecutionStatus::Succeeded);
    assert_eq!(seen.trigger, Trigger::Api);
    assert_eq!(seen.user.as_deref(), Some(ADMIN));
    let args: Vec<_> = seen
        .args
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(args, [("WHO", "rest")]);
    let logs = LegacyCli::new(app.address, ADMIN, &admin)
        .stream_logs(from_graphql)
        .await
        .unwrap();
    assert_eq!(logs.messages, ["hi"]);
}

#[tokio::test]
async fn with_auth_off_the_v2_routes_need_no_token_and_keep_the_email_header() {
    let app = TestApp::spawn().await;
    define_open(&app).await;
    let listed = send(app.http.get(app.url("/metadata"))).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let started = send(
        app.http
            .post(app.url("/execution"))
            .header("Email-Id", "ada@example.com")
            .body(r#"{"name":"hello"}"#),
    )
    .await;
    assert_eq!(started.status, 201, "{started:?}");
    let id = started.json()["id"].as_u64().unwrap();
    let seen = app.api().execution(&id.to_string()).await.expect("the run");
    assert_eq!(seen.user.as_deref(), Some("ada@example.com"));
    assert_eq!(seen.trigger, Trigger::Api);
    let logs = LegacyCli::new(app.address, "", "")
        .stream_logs(id)
        .await
        .unwrap();
    assert_eq!(logs.messages, ["hi"]);
}

async fn define_open(app: &TestApp) {
    app.api().define_proc(proc("hello", &["echo", "hi"])).await;
}

on_both_stacks!(
    credentials_and_rights_are_checked_per_route,
    metadata_and_secrets_follow_the_v2_contract,
    execution_routes_follow_the_v2_contract,
    the_log_websocket_sends_one_frame_per_line_then_closes_normally,
    schedule_routes_follow_the_v2_contract,
    a_replayed_v2_cli_session_works_end_to_end,
    executions_started_on_either_api_read_back_on_the_other,
);
