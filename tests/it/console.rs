//! The console at `/`, walked in Debian's Chromium (playwright-core) against the real `proctord`
//! binary on its embedded default with authentication on: `playground/test/console.mjs` drives
//! the journeys and reports what it saw; this test sets the servers up, stops and restarts one
//! when the script asks, and checks the report against what the servers stored. The restart
//! journey's server runs on the fake Kubernetes API, where a run goes on while the server is
//! away (local runs stop with their server).

use std::path::{Path, PathBuf};
use std::time::Duration;

use proctor_tests::fake_kube::FakeKube;
use proctor_tests::infra::{free_port, http_client, unique_suffix};
use proctor_tests::{Proctord, proctord_command};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::playground::{browser_ready, browser_script, playground_dir};

const ADMIN: &str = "admin@example.com";

/// A `proctord serve` on `port` with its data in `data`, authentication on; with `cluster`
/// (a kubeconfig), on the Kubernetes executor.
fn start(data: &Path, port: u16, cluster: Option<&Path>) -> Proctord {
    let mut command = proctord_command(data);
    configure(&mut command, data, port, cluster);
    Proctord::spawn(command)
}

fn configure(command: &mut std::process::Command, data: &Path, port: u16, cluster: Option<&Path>) {
    command
        .env("PROCTOR_DATA_DIR", data.join("state"))
        .env("PROCTOR_APP_PORT", port.to_string())
        .env("PROCTOR_AUTH_ENABLED", "true")
        .env("PROCTOR_SHUTDOWN_GRACE_SECONDS", "1")
        .env("PROCTOR_LOG_MAX_LINES", "250000");
    if let Some(kubeconfig) = cluster {
        // Kubernetes runs outlive the server: a restarted one re-attaches to them.
        command
            .env("PROCTOR_EXECUTOR", "kubernetes")
            .env("PROCTOR_KUBE_CONFIG", kubeconfig)
            .env("PROCTOR_REPLICA_ID", "console-a")
            .env("PROCTOR_LEASE_SECONDS", "2")
            .env("PROCTOR_REGISTER_EXAMPLES", "false");
    }
}

/// `proctord users add --admin`, as the sign-in page tells an operator to do; its token.
fn admin_token(data: &Path, port: u16, cluster: Option<&Path>) -> String {
    let mut command = proctord_command(data);
    configure(&mut command, data, port, cluster);
    let output = command
        .args(["users", "add", "--email", ADMIN, "--admin"])
        .output()
        .expect("proctord users add runs");
    assert!(
        output.status.success(),
        "users add failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .last()
        .expect("the token is the last line")
        .trim()
        .to_owned()
}

async fn graphql(base: &str, token: &str, query: &str, variables: Value) -> Value {
    let response: Value = http_client()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON answer");
    assert!(response.get("errors").is_none(), "{query}: {response}");
    response["data"].clone()
}

const UPSERT: &str = "mutation($input: ProcInput!) { upsertProc(input: $input) { version } }";

/// The procs the journeys need besides the examples.
async fn add_procs(base: &str, token: &str) {
    let sh = |script: &str| json!(["sh", "-c", script]);
    for input in [
        json!({ "name": "flaky", "description": "Always fails.", "command": sh("echo trying; exit 3"),
                "authorizedGroups": ["ops"] }),
        json!({ "name": "flood", "description": "Prints 200,000 lines at once.",
                "command": sh("seq 1 200000 | sed 's/^/line /'") }),
        json!({ "name": "greeter", "description": "Greets politely.", "command": sh("echo hello") }),
        json!({ "name": "greeter", "description": "Greets loudly.", "command": sh("echo HELLO") }),
    ] {
        graphql(base, token, UPSERT, json!({ "input": input })).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_walks_every_main_journey_in_chromium_accessibly_and_same_origin() {
    if !browser_ready() {
        return;
    }
    assert!(
        playground_dir().join("dist/console.js").is_file(),
        "the console is built"
    );
    let data = tempfile::tempdir().expect("a data directory");
    let port = free_port();
    // Started first: the example procs are registered in an empty database.
    let server = start(data.path(), port, None);
    let token = admin_token(data.path(), port, None);
    let base = format!("http://127.0.0.1:{port}");
    add_procs(&base, &token).await;

    // The restart journey's server runs its procs on a (fake) cluster, where they go on while
    // it is away.
    let fake = FakeKube::start().await;
    let cluster_data = tempfile::tempdir().expect("a data directory");
    let kubeconfig = cluster_data.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let cluster_port = free_port();
    let mut cluster = Some(start(cluster_data.path(), cluster_port, Some(&kubeconfig)));
    let cluster_token = admin_token(cluster_data.path(), cluster_port, Some(&kubeconfig));
    let cluster_base = format!("http://127.0.0.1:{cluster_port}");
    graphql(
        &cluster_base,
        &cluster_token,
        UPSERT,
        json!({ "input": {
            "name": "drip", "description": "Prints 100 numbered lines, 10 a second.", "image": "busybox",
            "command": ["sh", "-c", "i=1; while [ $i -le 100 ]; do echo \"drip $i\"; sleep 0.1; i=$((i+1)); done"],
        } }),
    )
    .await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");

    let mut node = browser_script(
        "console.mjs",
        &base,
        &shots,
        &[
            ("PROCTOR_TEST_TOKEN", &token),
            ("PROCTOR_TEST_CLUSTER", &cluster_base),
            ("PROCTOR_TEST_CLUSTER_TOKEN", &cluster_token),
        ],
    );
    let mut stdin = node.stdin.take().expect("piped stdin");
    let mut lines = BufReader::new(node.stdout.take().expect("piped stdout")).lines();
    let mut report = None;
    let mut output = Vec::new();
    let mut stopped_at = None;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
        .await
        .expect("the browser run makes progress")
        .expect("read the browser run")
    {
        match line.as_str() {
            "STOP_SERVER" => {
                let running = cluster.take().expect("the server runs");
                stopped_at = Some(std::time::Instant::now());
                tokio::task::spawn_blocking(move || running.terminate())
                    .await
                    .expect("stop the server");
            }
            "BANNER_SEEN" => {
                // Away long enough for the run to print lines nobody stored yet.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let restarted = tokio::task::spawn_blocking({
                    let dir = cluster_data.path().to_owned();
                    let kubeconfig = kubeconfig.clone();
                    move || start(&dir, cluster_port, Some(&kubeconfig))
                })
                .await
                .expect("restart the server");
                cluster = Some(restarted);
                stdin
                    .write_all(b"RESTARTED\n")
                    .await
                    .expect("tell the browser run");
            }
            _ if line.starts_with('{') => report = Some(line),
            _ => output.push(line),
        }
    }
    let status = node.wait().await.expect("node exits");
    if let Some(report) = &report {
        // Kept next to the screenshots for whoever reads a failure.
        let _ = std::fs::write(shots.join("report.json"), report);
    }
    let seen: Value = serde_json::from_str(report.as_deref().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report from the browser run ({e}): {output:?}"));
    assert_eq!(seen["outside"], json!([]), "requests left the origin");
    assert!(
        seen["failure"].is_null() && status.success(),
        "the browser run failed after {:?}: {}\n(screenshot: target/console-screenshots/console-failure.png)",
        seen["steps"],
        seen["failure"]
    );
    assert!(stopped_at.is_some(), "the restart journey ran");
    let requests: Vec<&str> = seen["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        requests
            .iter()
            .any(|url| url.starts_with(&format!("ws://127.0.0.1:{cluster_port}/graphql/ws"))),
        "live views use the websocket"
    );

    // Sign-in: the way to a token is on the page; a wrong token is refused readably.
    assert_eq!(seen["signInHint"], true);
    assert!(
        seen["wrongToken"]
            .as_str()
            .is_some_and(|m| !m.contains('<') && !m.is_empty()),
        "{}",
        seen["wrongToken"]
    );
    assert_eq!(seen["who"], ADMIN);

    // Finding procs: search and group filter, answered by the server.
    assert_eq!(
        seen["allProcs"],
        json!([
            "countdown",
            "flaky",
            "flood",
            "greeter",
            "say-hello",
            "secret-demo"
        ])
    );
    assert_eq!(seen["searchCount"], json!(["countdown"]));
    assert_eq!(seen["groupOps"], json!(["flaky"]));

    // The run form: the server's message next to the field, a dry run, then the run, whose
    // lines were on the page while it was unfinished.
    assert_eq!(
        seen["validation"], "\"abc\" must be a whole number (INT)",
        "{seen}"
    );
    assert!(
        seen["validationUrl"]
            .as_str()
            .unwrap_or_default()
            .ends_with("#/procs/countdown"),
        "a refused run stays on the form"
    );
    assert!(
        seen["dryRun"]
            .as_str()
            .unwrap_or_default()
            .contains("SECONDS=3"),
        "{}",
        seen["dryRun"]
    );
    assert!(
        ["PENDING", "STARTING", "RUNNING"]
            .contains(&seen["statusAtFirstLine"].as_str().unwrap_or_default()),
        "lines arrive live: {}",
        seen["statusAtFirstLine"]
    );
    assert_eq!(
        seen["countdown"]["lines"],
        json!(["3", "2", "1", "liftoff"])
    );
    assert_eq!(seen["countdown"]["args"], "SECONDS=3");

    // Rerun: a new execution with the same arguments; no cancel once it ended.
    assert_ne!(seen["rerun"]["id"], seen["countdown"]["id"]);
    assert_eq!(seen["rerun"]["args"], "SECONDS=3");
    assert_eq!(seen["rerun"]["cancelButtons"], 0);
    let rerun = graphql(
        &base,
        &token,
        "query($id: ID!) { execution(id: $id) { procName status args { name value } } }",
        json!({ "id": seen["rerun"]["id"] }),
    )
    .await;
    assert_eq!(
        rerun["execution"],
        json!({ "procName": "countdown", "status": "SUCCEEDED", "args": [{ "name": "SECONDS", "value": "3" }] })
    );

    // Cancel: the long run stopped, and the button went with it.
    assert_eq!(seen["cancel"]["cancelButtons"], 0);
    let cancelled = graphql(
        &base,
        &token,
        "query($id: ID!) { execution(id: $id) { status } }",
        json!({ "id": seen["cancel"]["id"] }),
    )
    .await;
    assert_eq!(cancelled["execution"]["status"], "CANCELLED");

    // The FAILED filter: only failed runs, the flaky one among them.
    let rows = seen["failed"]["rows"].as_array().expect("rows");
    assert!(rows.iter().all(|row| row[1] == "FAILED"), "{rows:?}");
    assert!(
        rows.iter().any(|row| row[0] == seen["failed"]["id"]),
        "{rows:?}"
    );

    // The schedule: a refused expression explained, five slots two seconds apart, a first run.
    assert!(
        seen["badCron"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        seen["badCron"]
    );
    let slots: Vec<chrono::DateTime<chrono::Utc>> = seen["preview"]
        .as_array()
        .expect("preview")
        .iter()
        .map(|t| t.as_str().unwrap().parse().expect("an RFC 3339 time"))
        .collect();
    assert_eq!(slots.len(), 5);
    assert!(
        slots.windows(2).all(|w| (w[1] - w[0]).num_seconds() == 2),
        "{slots:?}"
    );
    let fired = graphql(
        &base,
        &token,
        "query($id: ID!) { execution(id: $id) { procName trigger scheduleId } }",
        json!({ "id": seen["schedule"]["firstRun"] }),
    )
    .await;
    assert_eq!(fired["execution"]["procName"], "say-hello");
    assert_eq!(fired["execution"]["trigger"], "SCHEDULE");
    assert_eq!(fired["execution"]["scheduleId"], seen["schedule"]["id"]);

    // The secret set in the console is masked in the run and never on the page.
    assert_eq!(
        seen["secret"]["lines"][0],
        "Calling the demo API with token ***"
    );
    assert_eq!(seen["secret"]["valueOnPage"], false);
    // Output holding markup is text.
    assert_eq!(
        seen["markup"]["lines"],
        json!(["Hello, <img src=x onerror=\"document.title=1\">!"])
    );
    assert_eq!(seen["markup"]["images"], 0);
    // GraphiQL used the console's token.
    assert_eq!(
        seen["graphiql"]["data"]["me"],
        json!({ "email": ADMIN, "admin": true })
    );

    // Rollback: the diff showed the change; version 3 holds version 1's definition.
    assert!(
        seen["diff"]["removed"]
            .to_string()
            .contains("Greets politely"),
        "{}",
        seen["diff"]
    );
    assert!(seen["diff"]["added"].to_string().contains("Greets loudly"));
    let greeter = graphql(
        &base,
        &token,
        "{ proc(name: \"greeter\") { version description } }",
        json!({}),
    )
    .await;
    assert_eq!(
        greeter["proc"],
        json!({ "version": 3, "description": "Greets politely." })
    );
    assert!(
        seen["auditActions"]
            .as_array()
            .expect("audit")
            .iter()
            .any(|a| a == "proc.rollback"),
        "{}",
        seen["auditActions"]
    );
    assert!(seen["issuedToken"].as_u64().unwrap_or(0) > 20);
    assert_eq!(
        seen["users"],
        json!([
            ["new.user@example.com", "ops", "no", "1"],
            [ADMIN, "proctor.admin", "yes", "1"]
        ]),
        "the users list, newest first"
    );
    assert_eq!(seen["notFound"], "No execution 999999");

    // The 200,000-line log: all counted, few rows in the page, the middle reachable, search.
    assert_eq!(seen["flood"]["count"], "200000 lines", "{}", seen["flood"]);
    let rows_in_page = seen["flood"]["rowsInPage"].as_u64().unwrap_or(u64::MAX);
    assert!(
        rows_in_page < 200,
        "the log is virtualised: {rows_in_page} rows in the page"
    );
    let middle: u64 = seen["flood"]["middle"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    assert!(
        (90_000..110_000).contains(&middle),
        "scrolled to the middle: {middle}"
    );
    assert_eq!(seen["flood"]["searchLines"], json!(["line 123456"]));

    // Layout: nothing wider than the screen at 390 and 360 px; the theme follows the system
    // and the toggle.
    for (view, overflow) in seen["overflow"].as_object().expect("overflow") {
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{view} is wider than the screen by {overflow} px"
        );
    }
    assert_eq!(seen["theme"]["attribute"], "dark");
    assert_ne!(seen["theme"]["light"], seen["theme"]["dark"]);
    for width in [1400, 390] {
        for scheme in ["light", "dark"] {
            for name in ["catalogue", "run", "executions"] {
                let shot = shots.join(format!("console-{name}-{width}-{scheme}.png"));
                let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
                assert!(size > 5_000, "{} was saved", shot.display());
            }
        }
    }

    // Accessibility: no serious or critical violation on any page scanned.
    let scanned = seen["axe"].as_object().expect("axe results");
    assert!(scanned.len() >= 14, "{scanned:?}");
    for (page, violations) in scanned {
        assert_eq!(violations, &json!([]), "axe on {page}");
    }
    assert_eq!(
        seen["consoleErrorsWhileUp"],
        json!([]),
        "the browser logged errors while the server was up"
    );

    // The restart: the banner while the server was away, then the log resumed: exactly the
    // stored lines, none lost, none twice, including those stored while the page was cut off.
    assert!(
        seen["restart"]["banner"]
            .as_str()
            .is_some_and(|b| b.contains("reconnect") || b.contains("cannot be reached")),
        "{}",
        seen["restart"]
    );
    let stored = graphql(
        &cluster_base,
        &cluster_token,
        "query($id: ID!) { execution(id: $id) { status logs(first: 10000) { seq line } } }",
        json!({ "id": seen["restart"]["id"] }),
    )
    .await;
    let stored_lines: Vec<&str> = stored["execution"]["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["line"].as_str())
        .collect();
    let shown: Vec<&str> = seen["restart"]["log"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .collect();
    assert_eq!(shown, stored_lines, "the page shows exactly the stored log");
    assert_eq!(
        seen["restart"]["count"].as_u64(),
        Some(stored_lines.len() as u64)
    );
    let at_banner = seen["restart"]["linesAtBanner"].as_u64().unwrap_or(0);
    assert!(at_banner >= 10, "{}", seen["restart"]);
    assert!(
        (stored_lines.len() as u64) > at_banner,
        "lines printed while the server was away reached the page after it came back: {}",
        seen["restart"]
    );
    assert_eq!(
        stored_lines.len(),
        100,
        "the run went on while the server was away"
    );
    assert_eq!(seen["restart"]["status"], "SUCCEEDED");
    assert_eq!(stored["execution"]["status"], "SUCCEEDED");
    if let Some(cluster) = cluster.take() {
        cluster.terminate();
    }
    server.terminate();
}

/// The console's operations are typed from the committed SDL: with a field they use renamed in
/// the schema, the UI build fails and names it; with the real schema it passes.
#[tokio::test]
async fn a_schema_change_that_breaks_an_operation_fails_the_console_build() {
    if !browser_ready() {
        return;
    }
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let real = playground_dir().join("../schema/schema.graphql");
    let sdl = std::fs::read_to_string(&real).expect("the committed SDL");
    let broken = scratch.path().join("schema.graphql");
    // `Execution.exitCode` renamed (as a careless schema change would).
    let without = sdl.replace("\texitCode: Int\n", "\texitStatus: Int\n");
    assert_ne!(without, sdl, "the field was renamed");
    std::fs::write(&broken, without).expect("write the changed SDL");
    let check = |schema: PathBuf| {
        let out = scratch.path().join(format!("types-{}/", unique_suffix()));
        tokio::process::Command::new("node")
            .args(["build.mjs", "--types-only"])
            .env("PROCTOR_UI_SCHEMA", schema)
            .env("PROCTOR_UI_TYPES_OUT", out)
            .current_dir(playground_dir())
            .output()
    };
    let refused = check(broken).await.expect("node runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "the build passed: {said}");
    assert!(
        said.contains("exitCode"),
        "the failure names the field: {said}"
    );
    let accepted = check(real).await.expect("node runs");
    assert!(
        accepted.status.success(),
        "{}{}",
        String::from_utf8_lossy(&accepted.stdout),
        String::from_utf8_lossy(&accepted.stderr)
    );
}
