//! The `proctor` binary's own checks that need no server.

use std::process::Command;

#[test]
fn version_without_a_host_prints_only_the_client_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_proctor"))
        .arg("version")
        .env_remove("PROCTOR_HOST")
        // No configuration file either, whatever the machine's ~/.proctor holds.
        .env(
            "LOCAL_CONFIG_DIR",
            std::env::temp_dir().join(format!("proctor-cli-help-{}", std::process::id())),
        )
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "Proctor: A Developer Friendly Automation Orchestrator v{}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn unknown_commands_are_usage_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_proctor"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
