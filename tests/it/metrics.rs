//! `/metrics`: both exposition formats with their content types, a body `promtool check
//! metrics` accepts, and the families operators need (build, process, HTTP, pool, bus, queue).

use std::io::Write as _;
use std::process::{Command, Stdio};

use proctor_tests::TestApp;
use proctor_tests::api::{proc, sh};
use reqwest::header::{ACCEPT, CONTENT_TYPE};

/// `promtool check metrics` on `text`: its complaints, or `None` when it is not installed.
fn promtool(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is missing; ./tests/run.sh installs it (Debian's prometheus package)"
            );
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads the body");
    let output = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success(), said))
}

#[tokio::test]
async fn metrics_come_in_both_formats_lint_clean_with_the_operators_families() {
    let app = TestApp::spawn().await;
    let api = app.api();
    api.define_proc(proc("counted", &sh("echo one; echo two")))
        .await;
    api.run_to_end("counted", &[]).await;

    let classic = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(classic.status(), 200);
    assert_eq!(
        classic.headers()[CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = classic.text().await.unwrap();
    assert!(
        !text.contains("# EOF"),
        "the classic format has no EOF marker"
    );
    for family in [
        "# TYPE proctor_executions_total counter",
        "proctor_build_info{version=\"",
        "# TYPE process_cpu_seconds_total counter",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "proctor_http_request_duration_seconds_count{route=\"/graphql\",method=\"POST\",status=\"200\"} ",
        "proctor_db_pool_connections{state=\"in_use\"} ",
        "proctor_db_pool_connections{state=\"idle\"} ",
        "proctor_event_bus_up 1",
        "proctor_notification_outbox_pending 0",
        "proctor_executions_waiting 0",
    ] {
        assert!(text.contains(family), "missing {family} in\n{text}");
    }
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(types, helps, "every family has HELP");
    match promtool(&text) {
        Some((passed, said)) => {
            assert!(passed && said.trim().is_empty(), "promtool: {said}\n{text}");
        }
        None => eprintln!("SKIPPED: promtool is not installed (run ./tests/run.sh)"),
    }

    let open = app
        .http
        .get(app.url("/metrics"))
        .header(
            ACCEPT,
            "application/openmetrics-text; version=1.0.0, text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        open.headers()[CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = open.text().await.unwrap();
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert!(body.contains("# TYPE proctor_executions counter"), "{body}");
}
