//! The management commands against a running server: `procs` (apply, export, history,
//! rollback, delete), `secrets delete`, `tokens`, `audit` and `schedules` (trigger, preview,
//! Slack and webhook settings, pause and resume).

use proctor_tests::api::{proc, required_arg, sh};

use super::{User, auth_app};

#[tokio::test]
async fn procs_change_through_versions_and_can_be_rolled_back_and_deleted() {
    let (app, admin_token) = auth_app().await;
    let admin = User::new(app.address.to_string(), "admin@example.com", &admin_token);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.yaml");
    std::fs::write(&file, "name: hello\ncommand: [sh, -c, 'echo one']\n").unwrap();
    let file = file.to_str().unwrap();
    let applied = admin.run(&["procs", "apply", "-f", file]).await;
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(applied.stdout.contains("version 1"), "{applied:?}");
    let exported = admin.run(&["procs", "export", "hello"]).await;
    assert!(exported.stdout.contains("echo one"), "{exported:?}");
    std::fs::write(
        file,
        exported.stdout.replace("echo one", "echo two").as_bytes(),
    )
    .unwrap();
    let applied = admin.run(&["procs", "apply", "-f", file]).await;
    assert!(applied.stdout.contains("version 2"), "{applied:?}");

    let history = admin.run(&["procs", "history", "hello"]).await;
    assert_eq!(history.code, 0, "{history:?}");
    let rows: Vec<&str> = history.stdout.lines().collect();
    assert!(rows[0].starts_with("VERSION"), "{history:?}");
    assert!(
        rows[1].starts_with("2 (current)") && rows[1].contains("admin@example.com"),
        "{history:?}"
    );
    assert!(
        rows[1].ends_with("echo two") && rows[2].ends_with("echo one"),
        "{history:?}"
    );
    let rolled = admin.run(&["procs", "rollback", "hello", "1"]).await;
    assert_eq!(rolled.code, 0, "{rolled:?}");
    assert!(rolled.stdout.contains("version 3"), "{rolled:?}");
    let versions = admin
        .run(&["procs", "history", "hello", "-o", "jsonpath={[*].number}"])
        .await;
    assert_eq!(versions.stdout, "3\n2\n1\n");
    let ran = admin.run(&["runs", "start", "hello"]).await;
    assert_eq!(ran.stdout, "one\n", "the rollback is what runs: {ran:?}");
    let missing = admin.run(&["procs", "rollback", "hello", "9"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");

    // Ordinary users may read but not change procs.
    let token = app.issue_token("ada@example.com", &[], false).await;
    let ada = User::new(app.address.to_string(), "ada@example.com", &token);
    let refused = ada.run(&["procs", "delete", "hello"]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("access denied"), "{refused:?}");

    let deleted = admin.run(&["procs", "delete", "hello"]).await;
    assert_eq!(deleted.code, 0, "{deleted:?}");
    let gone = admin.run(&["procs", "describe", "hello"]).await;
    assert_eq!(gone.code, 2, "{gone:?}");
    let runs = admin.run(&["runs", "list", "-o", "name"]).await;
    assert_eq!(runs.stdout, "execution/1\n", "its runs stay");
}

#[tokio::test]
async fn secrets_tokens_and_the_audit_log_are_managed_from_the_cli() {
    let (app, admin_token) = auth_app().await;
    let admin = User::new(app.address.to_string(), "admin@example.com", &admin_token);
    let mut uses = proc("uses", &sh("test -n \"$KEY\" && echo has-key"));
    uses.secrets = Some(vec![proctor_tests::api::secret("KEY")]);
    app.api_as(&admin_token).define_proc(uses).await;
    let value = "s3cret-value-9";
    let set = admin
        .run_with_input(&["secrets", "set", "uses", "KEY"], Some(value))
        .await;
    assert_eq!(set.code, 0, "{set:?}");
    let ran = admin.run(&["runs", "start", "uses"]).await;
    assert_eq!(ran.stdout, "has-key\n", "{ran:?}");
    let deleted = admin.run(&["secrets", "delete", "uses", "KEY"]).await;
    assert_eq!(deleted.code, 0, "{deleted:?}");
    let listed = admin.run(&["secrets", "list", "uses", "-o", "json"]).await;
    assert_eq!(listed.json()[0]["isSet"], false, "{listed:?}");
    let again = admin.run(&["secrets", "delete", "uses", "NOPE"]).await;
    assert_eq!(again.code, 2, "{again:?}");

    // tokens: create prints the token once, on stdout; it works; revoke ends it. `-o name`
    // would hide it, so it is refused before any token exists.
    let refused = admin
        .run(&["tokens", "create", "carl@example.com", "-o", "name"])
        .await;
    assert_eq!(refused.code, 2, "{refused:?}");
    let users = admin.run(&["tokens", "list", "-o", "name"]).await;
    assert!(
        !users.stdout.contains("carl@"),
        "no token was made: {users:?}"
    );
    let created = admin
        .run(&[
            "tokens",
            "create",
            "bob@example.com",
            "--group",
            "ops,dev",
            "-o",
            "jsonpath={.token}",
        ])
        .await;
    assert_eq!(created.code, 0, "{created:?}");
    let token = created.stdout.trim().to_owned();
    assert!(token.len() > 20, "{created:?}");
    let bob = User::new(app.address.to_string(), "bob@example.com", &token);
    let me = bob.run(&["whoami", "-o", "json"]).await.json();
    assert_eq!(me["email"], "bob@example.com");
    assert_eq!(me["groups"], serde_json::json!(["dev", "ops"]));
    let users = admin.run(&["tokens", "list"]).await;
    let row = users
        .stdout
        .lines()
        .find(|l| l.starts_with("bob@example.com"))
        .unwrap_or_else(|| panic!("{users:?}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..3],
        ["bob@example.com", "dev,ops", "1"],
        "{users:?}"
    );
    let refused = bob.run(&["tokens", "list"]).await;
    assert_eq!(refused.code, 2, "administrators only: {refused:?}");
    let revoked = admin.run(&["tokens", "revoke", "bob@example.com"]).await;
    assert_eq!(revoked.code, 0, "{revoked:?}");
    let locked_out = bob.run(&["whoami"]).await;
    assert_eq!(locked_out.code, 2, "{locked_out:?}");
    assert!(
        locked_out.stderr.contains("not authenticated"),
        "{locked_out:?}"
    );

    // audit: newest first, with who did what to which object.
    let audit = admin.run(&["audit", "--limit", "3", "-o", "json"]).await;
    assert_eq!(audit.code, 0, "{audit:?}");
    let events = audit.json();
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "token.revoke", "{events}");
    assert_eq!(actions[1], "token.create", "{events}");
    let table = admin.run(&["audit", "--limit", "1"]).await;
    assert!(table.stdout.starts_with("AGE"), "{table:?}");
    assert!(
        table.stdout.contains("token.revoke") && table.stdout.contains("user/bob@example.com"),
        "{table:?}"
    );
    assert!(
        table.stderr.contains("more: proctor audit --after "),
        "{table:?}"
    );

    for output in [&set, &ran, &deleted, &listed, &audit, &table] {
        assert!(
            !output.stdout.contains(value) && !output.stderr.contains(value),
            "{output:?}"
        );
    }
}

#[tokio::test]
async fn schedules_preview_trigger_and_carry_slack_and_webhook_settings() {
    let (app, admin_token) = auth_app().await;
    let admin = User::new(app.address.to_string(), "admin@example.com", &admin_token);
    let mut hello = proc("hello", &sh("echo \"hi $WHO\""));
    hello.args = Some(vec![required_arg("WHO")]);
    app.api_as(&admin_token).define_proc(hello).await;

    let preview = admin
        .run(&[
            "schedules",
            "preview",
            "0 2 * * *",
            "--timezone",
            "Europe/Berlin",
            "--count",
            "3",
        ])
        .await;
    assert_eq!(preview.code, 0, "{preview:?}");
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = preview
        .stdout
        .lines()
        .map(|l| chrono::DateTime::parse_from_rfc3339(l).expect("RFC 3339"))
        .collect();
    assert_eq!(times.len(), 3, "{preview:?}");
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::days(1), "{preview:?}");
    }
    let bad = admin.run(&["schedules", "preview", "61 * * * *"]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("cron"), "{bad:?}");

    let slack = "https://hooks.slack.com/services/T0/B0/very-secret";
    let created = admin
        .run(&[
            "schedules",
            "create",
            "hello",
            "WHO=sched",
            "-c",
            "@daily",
            "--slack-webhook-url",
            slack,
            "--webhook-url",
            "https://example.com/hook",
            "-o",
            "jsonpath={.id}",
        ])
        .await;
    assert_eq!(created.code, 0, "{created:?}");
    let id = created.stdout.trim().to_owned();
    let shown = admin.run(&["schedules", "get", &id]).await;
    assert!(
        shown.stdout.contains(&format!("{:<40} set", "Slack"))
            && shown
                .stdout
                .contains(&format!("{:<40} https://example.com/hook", "Webhook")),
        "{shown:?}"
    );
    let json = admin.run(&["schedules", "get", &id, "-o", "json"]).await;
    assert_eq!(json.json()["slackWebhookConfigured"], true);
    for output in [&created, &shown, &json] {
        assert!(!output.stdout.contains("very-secret"), "{output:?}");
    }
    let updated = admin
        .run(&["schedules", "update", &id, "--webhook-url", ""])
        .await;
    assert_eq!(updated.code, 0, "{updated:?}");
    let json = admin
        .run(&["schedules", "get", &id, "-o", "json"])
        .await
        .json();
    assert_eq!(
        json["webhookUrl"],
        serde_json::Value::Null,
        "\"\" removes it"
    );
    assert_eq!(
        json["slackWebhookConfigured"], true,
        "what is not given is kept"
    );

    // trigger runs it now and follows it; the run counts among the schedule's.
    let triggered = admin.run(&["schedules", "trigger", &id]).await;
    assert_eq!(triggered.code, 0, "{triggered:?}");
    assert_eq!(triggered.stdout, "hi sched\n");
    let runs = admin
        .run(&["schedules", "runs", &id, "-o", "json"])
        .await
        .json();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let run = admin.run(&["runs", "list", "-o", "json"]).await.json();
    assert_eq!(run[0]["trigger"], "SCHEDULE", "{run}");

    let paused = admin.run(&["schedules", "pause", &id]).await;
    assert_eq!(paused.code, 0, "{paused:?}");
    let listed = admin
        .run(&["schedules", "list", "-o", "jsonpath={[*].enabled}"])
        .await;
    assert_eq!(listed.stdout, "false\n");
    let resumed = admin.run(&["schedules", "resume", &id]).await;
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let listed = admin.run(&["schedules", "list", "--no-headers"]).await;
    assert!(
        listed.stdout.starts_with(&format!("{id} ")) && listed.stdout.contains(" yes "),
        "no header, the schedule enabled again: {listed:?}"
    );
    let v2 = admin.run(&["schedule", "list", "-o", "json"]).await.json();
    assert_eq!(
        v2[0]["id"],
        id.as_str(),
        "a plain array in v2 spelling too: {v2}"
    );
    let v2 = admin.run(&["schedule", "list", "--no-headers"]).await;
    assert!(v2.stdout.starts_with(&format!("{id} ")), "{v2:?}");
    let deleted = admin.run(&["schedules", "delete", &id, "-o", "name"]).await;
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert_eq!(deleted.stdout, format!("schedule/{id}\n"));
    let gone = admin.run(&["schedules", "get", &id]).await;
    assert_eq!(gone.code, 2, "{gone:?}");
}
