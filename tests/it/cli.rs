//! The `proctor` CLI binary against a running server.

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
