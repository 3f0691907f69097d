//! Which server and credentials the CLI uses: `proctor login`, contexts in the XDG file, the
//! v2 file, and `PROCTOR_*` environment names over the v2 ones.

use std::os::unix::fs::PermissionsExt;

use super::{User, auth_app};

/// A user whose environment names no server and no credentials: only the files decide.
fn unconfigured() -> User {
    User::new("", "", "")
}

async fn run_bare(user: &User, args: &[&str], input: Option<&str>) -> super::Ran {
    // `User::command` sets PROCTOR_HOST, EMAIL_ID and ACCESS_TOKEN; empty values would still
    // count, so they are removed.
    let mut command = user.command(args);
    command
        .env_remove("PROCTOR_HOST")
        .env_remove("EMAIL_ID")
        .env_remove("ACCESS_TOKEN");
    super::run_command(command, input).await
}

#[tokio::test]
async fn login_stores_a_private_context_and_contexts_switch_servers() {
    let (app, admin) = auth_app().await;
    let user = unconfigured();
    let server = app.address.to_string();

    let refused = run_bare(
        &user,
        &["login", "--server", &server, "--email", "admin@example.com"],
        Some("not-a-token\n"),
    )
    .await;
    assert_eq!(refused.code, 2, "the token is checked first: {refused:?}");
    let file = user.config_dir.path().join("proctor/config.yaml");
    assert!(!file.exists(), "a refused login stores nothing");

    let login = run_bare(
        &user,
        &["login", "--server", &server, "--email", "admin@example.com"],
        Some(&format!("{admin}\n")),
    )
    .await;
    assert_eq!(login.code, 0, "{login:?}");
    assert!(login.stdout.contains("Logged in to"), "{login:?}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the file holds a token");
    for output in [&login.stdout, &login.stderr] {
        assert!(!output.contains(&admin), "the token is never printed");
    }
    let me = run_bare(&user, &["whoami", "-o", "jsonpath={.email}"], None).await;
    assert_eq!(me.stdout, "admin@example.com\n", "{me:?}");

    // A second context on a server that is not there; --context and `context use` pick it.
    let nowhere = format!("127.0.0.1:{}", proctor_tests::free_port());
    let added = run_bare(
        &user,
        &["context", "add", "elsewhere", "--server", &nowhere],
        None,
    )
    .await;
    assert_eq!(added.code, 0, "{added:?}");
    let listed = run_bare(&user, &["context", "list"], None).await;
    let rows: Vec<Vec<&str>> = listed
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["CURRENT", "NAME", "SERVER", "EMAIL", "TOKEN"]);
    assert_eq!(
        rows[1],
        [
            "*",
            "default",
            server.as_str(),
            "admin@example.com",
            "stored"
        ]
    );
    assert_eq!(
        rows[2],
        ["elsewhere", nowhere.as_str(), "none"],
        "{listed:?}"
    );
    assert!(!listed.stdout.contains(&admin));
    let there = run_bare(&user, &["--context", "elsewhere", "whoami"], None).await;
    assert_eq!(there.code, 2);
    assert!(there.stderr.contains(&nowhere), "{there:?}");
    let used = run_bare(&user, &["context", "use", "elsewhere"], None).await;
    assert_eq!(used.code, 0, "{used:?}");
    let there = run_bare(&user, &["whoami"], None).await;
    assert!(there.stderr.contains(&nowhere), "{there:?}");
    let unknown = run_bare(&user, &["context", "use", "nope"], None).await;
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("elsewhere"),
        "the known ones are listed: {unknown:?}"
    );
    run_bare(&user, &["context", "use", "default"], None).await;
    let back = run_bare(&user, &["whoami", "-o", "jsonpath={.email}"], None).await;
    assert_eq!(back.stdout, "admin@example.com\n", "{back:?}");
    let deleted = run_bare(
        &user,
        &["context", "delete", "elsewhere", "-o", "name"],
        None,
    )
    .await;
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert_eq!(deleted.stdout, "context/elsewhere\n");
    let dir = std::fs::metadata(user.config_dir.path().join("proctor")).unwrap();
    assert_eq!(
        dir.permissions().mode() & 0o777,
        0o700,
        "a private directory"
    );
    let strays: Vec<_> = std::fs::read_dir(user.config_dir.path().join("proctor"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        strays,
        ["config.yaml"],
        "atomic writes leave no temporary files"
    );
    let names = run_bare(&user, &["context", "list", "-o", "name"], None).await;
    assert_eq!(names.stdout, "context/default\n");

    // PROCTOR_TOKEN and PROCTOR_EMAIL win over the file; PROCTOR_HOST over the context.
    let ada = app.issue_token("ada@example.com", &[], false).await;
    let mut command = user.command(&["whoami", "-o", "jsonpath={.email}"]);
    command
        .env_remove("EMAIL_ID")
        .env_remove("ACCESS_TOKEN")
        .env("PROCTOR_HOST", &server)
        .env("PROCTOR_TOKEN", &ada)
        .env("PROCTOR_EMAIL", "ada@example.com");
    let env = super::run_command(command, None).await;
    assert_eq!(env.stdout, "ada@example.com\n", "{env:?}");
    let mut command = user.command(&["whoami"]);
    command
        .env_remove("EMAIL_ID")
        .env_remove("ACCESS_TOKEN")
        .env("PROCTOR_HOST", &nowhere);
    let env = super::run_command(command, None).await;
    assert!(env.stderr.contains(&nowhere), "{env:?}");
    // ...but a --context typed on the line beats a PROCTOR_HOST left in the environment.
    let mut command = user.command(&["--context", "default", "whoami", "-o", "jsonpath={.email}"]);
    command
        .env_remove("EMAIL_ID")
        .env_remove("ACCESS_TOKEN")
        .env("PROCTOR_HOST", &nowhere);
    let typed = super::run_command(command, None).await;
    assert_eq!(typed.stdout, "admin@example.com\n", "{typed:?}");
}

#[tokio::test]
async fn the_v2_file_still_works_when_no_context_exists() {
    let (app, admin) = auth_app().await;
    let user = unconfigured();
    let set = run_bare(
        &user,
        &[
            "config",
            &format!("PROCTOR_HOST={}", app.address),
            "EMAIL_ID=admin@example.com",
            &format!("ACCESS_TOKEN={admin}"),
        ],
        None,
    )
    .await;
    assert_eq!(set.code, 0, "{set:?}");
    let me = run_bare(&user, &["whoami", "-o", "jsonpath={.email}"], None).await;
    assert_eq!(me.stdout, "admin@example.com\n", "{me:?}");
}
