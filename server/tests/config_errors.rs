//! Configuration mistakes make `proctord` exit with status 2 and one line naming the setting.

use std::net::TcpListener;
use std::process::Command;

fn proctord(envs: &[(&str, &str)]) -> (Option<i32>, String) {
    proctord_in(&tempfile::tempdir().unwrap(), envs)
}

fn proctord_in(directory: &tempfile::TempDir, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_proctord"));
    command.current_dir(directory.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PROCTOR_") {
            command.env_remove(name);
        }
    }
    let output = command.envs(envs.iter().copied()).output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn assert_config_error(envs: &[(&str, &str)], setting: &str) {
    let (code, stderr) = proctord(envs);
    assert_eq!(code, Some(2), "{envs:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{envs:?} must print one line: {stderr}");
    assert!(lines[0].contains(setting), "{envs:?}: {stderr}");
}

#[test]
fn bad_values_exit_2_naming_the_setting() {
    assert_config_error(&[("PROCTOR_APP_PORT", "web")], "PROCTOR_APP_PORT");
    assert_config_error(&[("PROCTOR_EXECUTOR", "docker")], "PROCTOR_EXECUTOR");
    assert_config_error(
        &[("PROCTOR_DATABASE_URL", "mysql://db/p")],
        "PROCTOR_DATABASE_URL",
    );
    assert_config_error(
        &[("PROCTOR_REDIS_URL", "http://cache")],
        "PROCTOR_REDIS_URL",
    );
    assert_config_error(&[("PROCTOR_LOG_FORMAT", "xml")], "PROCTOR_LOG_FORMAT");
    assert_config_error(
        &[("PROCTOR_AUTH_ENABLED", "perhaps")],
        "PROCTOR_AUTH_ENABLED",
    );
    assert_config_error(
        &[("PROCTOR_BIND_ADDRESS", "0.0.0.0")],
        "PROCTOR_BIND_ADDRESS",
    );
}

#[test]
fn an_unusable_data_dir_exits_2() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    assert_config_error(&[("PROCTOR_DATA_DIR", &path)], "PROCTOR_DATA_DIR");
}

#[test]
fn a_port_in_use_exits_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let directory = tempfile::tempdir().unwrap();
    let (code, stderr) = proctord_in(&directory, &[("PROCTOR_APP_PORT", &port)]);
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("PROCTOR_APP_PORT"), "{stderr}");
    assert!(lines[0].contains(&port), "{stderr}");
    assert!(
        !directory.path().join(".proctor/proctor.db").exists(),
        "the database is not touched when the port is taken"
    );
}

#[test]
fn secrets_in_urls_never_reach_the_output() {
    let (code, stderr) = proctord(&[
        (
            "PROCTOR_DATABASE_URL",
            "postgres://user:hunter2@127.0.0.1:1/db",
        ),
        ("PROCTOR_EXECUTOR", "nope"),
    ]);
    assert_eq!(code, Some(2));
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let (_, help) = {
        let output = Command::new(env!("CARGO_BIN_EXE_proctord"))
            .arg("--help")
            .env("PROCTOR_DATABASE_URL", "postgres://user:hunter2@db/p")
            .env("PROCTOR_POSTGRES_PASSWORD", "hunter3")
            .output()
            .unwrap();
        (output.status, String::from_utf8(output.stdout).unwrap())
    };
    assert!(
        !help.contains("hunter2") && !help.contains("hunter3"),
        "{help}"
    );
}

#[test]
fn an_unreachable_postgres_fails_with_a_redacted_one_line_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stderr) = proctord(&[(
        "PROCTOR_DATABASE_URL",
        &format!("postgres://proctor:hunter2@127.0.0.1:{port}/proctor"),
    )]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("PROCTOR_DATABASE_URL"), "{stderr}");
    assert!(
        stderr.contains("postgres://proctor:***@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
