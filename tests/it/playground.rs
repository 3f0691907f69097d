//! The playground: served from its built assets with a same-origin policy, and GraphiQL driven in
//! Debian's Chromium (through playwright-core). The console's journeys are in `console.rs`.

use std::path::{Path, PathBuf};

use proctor_schema::procs::examples::register_examples;
use proctor_tests::TestApp;
use proctor_tests::infra::is_ci;
use serde_json::Value;
use tokio::process::Command;

pub(crate) fn playground_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../playground")
}

/// `node test/<script> <base> <shots>` in `playground/`, started with stdin and stdout piped
/// (the script's conversation with its test) and stderr shown; killed when dropped.
pub(crate) fn browser_script(
    script: &str,
    base: &str,
    shots: &Path,
    env: &[(&str, &str)],
) -> tokio::process::Child {
    Command::new("node")
        .arg(format!("test/{script}"))
        .arg(base)
        .arg(shots)
        .envs(env.iter().copied())
        .current_dir(playground_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs")
}

/// The browser, the driver and the built assets, or why they are missing (a failure under
/// `CI=true`, a skip with a notice otherwise).
pub(crate) fn browser_ready() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing: Vec<String> = [
        (
            PathBuf::from(&chromium),
            "Chromium (Debian package chromium)",
        ),
        (
            playground_dir().join("node_modules/playwright-core/package.json"),
            "playwright-core (npm --prefix playground ci)",
        ),
        (
            playground_dir().join("dist/console.js"),
            "the built playground (npm --prefix playground run build)",
        ),
    ]
    .into_iter()
    .filter(|(path, _)| !path.exists())
    .map(|(path, what)| format!("{what} at {}", path.display()))
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !is_ci(),
        "CI=true but the browser test cannot run: missing {}. ./tests/run.sh installs them.",
        missing.join("; ")
    );
    eprintln!(
        "notice: browser test skipped: missing {}",
        missing.join("; ")
    );
    false
}

#[tokio::test]
async fn graphiql_works_in_chromium_without_leaving_the_origin() {
    if !browser_ready() {
        return;
    }
    let app = TestApp::spawn().await;
    register_examples(&app.state)
        .await
        .expect("the example procs");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/playground-screenshots");
    let output = Command::new("node")
        .arg("test/browser.mjs")
        .arg(format!("http://{}", app.address))
        .arg(&shots)
        .current_dir(playground_dir())
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let seen: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report from the browser run ({e}): {stdout}\n{stderr}"));
    assert_eq!(
        seen["outside"],
        serde_json::json!([]),
        "requests left 127.0.0.1: {seen}"
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let requests: Vec<&str> = seen["requests"]
        .as_array()
        .expect("recorded requests")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        requests
            .iter()
            .any(|url| url.ends_with("/playground/graphiql.js")),
        "the recording saw the page load: {requests:?}"
    );

    // GraphiQL ran the query and showed the server's answer.
    assert_eq!(
        seen["graphiql"]["data"]["serverInfo"]["executor"], "LOCAL",
        "{seen}"
    );
    let procs: Vec<&str> = seen["graphiql"]["data"]["procs"]
        .as_array()
        .expect("procs")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(procs, ["countdown", "say-hello", "secret-demo"]);
    assert_eq!(seen["consoleErrors"], serde_json::json!([]), "{seen}");
    let shot = shots.join("playground-graphiql.png");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "{} was saved ({size} bytes)", shot.display());
}

#[tokio::test]
async fn the_playground_is_served_same_origin_only_and_explains_a_missing_build() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_owned();
    // What a checkout without a build serves: a configured directory must hold one, so the
    // empty directory stands in for the default.
    let app = TestApp::builder()
        .with_settings(move |settings| settings.http.playground_dir = Some(dir))
        .spawn()
        .await;
    let page = app.http.get(app.url("/playground")).send().await.unwrap();
    assert_eq!(page.status(), 503);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("default-src 'self'") && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    let body = page.text().await.unwrap();
    assert!(body.contains("npm --prefix playground run build"), "{body}");
    let asset = app
        .http
        .get(app.url("/playground/console.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(asset.status(), 503);
    app.stop().await.unwrap();

    if !playground_dir().join("dist/index.html").is_file() {
        assert!(!is_ci(), "CI=true but the playground is not built");
        return;
    }
    let app = TestApp::spawn().await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/playground", "text/html"),
        ("/playground/console.js", "text/javascript"),
        ("/playground/console.css", "text/css"),
        ("/playground/graphiql.css", "text/css"),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert!(
            response.headers().contains_key("content-security-policy"),
            "{path}"
        );
    }
    assert_eq!(
        app.http
            .get(app.url("/playground/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
