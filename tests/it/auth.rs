//! Built-in authentication and authorization: credentials in headers, bearer tokens and
//! websocket payloads; admin rights; proc groups; token issue and revocation; the audit log.

use proctor_schema::ports::authenticator::Credentials;
use proctor_tests::graphql_ws::{Protocol, WsClient};
use proctor_tests::{Stack, TestApp};
use serde_json::{Value, json};

async fn spawn(stack: Stack) -> Option<TestApp> {
    TestApp::builder()
        .stack(stack)
        .with_args(&["--auth-enabled"])
        .try_spawn()
        .await
}

fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {response}"))
}

const UPSERT: &str = "mutation($i: ProcInput!) { upsertProc(input: $i) { name } }";

/// An admin token and three procs: open to all, for ops, for ops and db.
async fn seeded(app: &TestApp) -> String {
    let admin = app.issue_token("root@example.com", &[], true).await;
    for (name, groups) in [
        ("open", json!([])),
        ("ops-only", json!(["ops"])),
        ("ops-db", json!(["ops", "db"])),
    ] {
        let created = app
            .graphql_as(
                &admin,
                UPSERT,
                json!({ "i": { "name": name, "command": ["true"], "authorizedGroups": groups } }),
            )
            .await;
        assert_eq!(created["errors"], Value::Null, "{created}");
    }
    admin
}

async fn credentials_are_required_and_checked(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let token = app.issue_token("ada@example.com", &["ops"], false).await;

    let anonymous = app
        .graphql("{ serverInfo { authEnabled } me { email } }", json!({}))
        .await;
    assert_eq!(
        anonymous["data"],
        json!({ "serverInfo": { "authEnabled": true }, "me": null })
    );
    let procs = app.graphql("{ procs { name } }", json!({})).await;
    assert_eq!(code(&procs), "UNAUTHENTICATED");
    assert!(
        procs["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Access-Token")
    );

    let me = "{ me { email groups admin } }";
    let expected =
        json!({ "me": { "email": "ada@example.com", "groups": ["ops"], "admin": false } });
    assert_eq!(
        app.graphql_as(&token, me, json!({})).await["data"],
        expected
    );
    let legacy = app
        .graphql_with(
            &[("Access-Token", &token), ("Email-Id", "Ada@Example.com")],
            me,
            json!({}),
        )
        .await;
    assert_eq!(
        legacy["data"], expected,
        "legacy headers, e-mail compared case-insensitively"
    );

    let wrong_owner = app
        .graphql_with(
            &[("Access-Token", &token), ("Email-Id", "eve@example.com")],
            me,
            json!({}),
        )
        .await;
    assert_eq!(code(&wrong_owner), "UNAUTHENTICATED");
    let forged = app.graphql_as("prt_forged", me, json!({})).await;
    assert_eq!(code(&forged), "UNAUTHENTICATED");

    // The same rules in-process, without HTTP.
    let in_process = app
        .execute(
            Credentials {
                bearer_token: Some(token.clone()),
                ..Credentials::default()
            },
            me,
            json!({}),
        )
        .await;
    assert_eq!(in_process["data"], expected);
}

async fn only_admins_manage(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let admin = seeded(&app).await;
    let user = app
        .issue_token("ada@example.com", &["ops", "db"], false)
        .await;
    let attempts = [
        (
            UPSERT,
            json!({ "i": { "name": "mine", "command": ["true"] } }),
        ),
        (r#"mutation { deleteProc(name: "open") }"#, json!({})),
        (
            r#"mutation { setSecrets(proc: "open", secrets: []) { key } }"#,
            json!({}),
        ),
        (
            r#"mutation { deleteSecret(proc: "open", key: "X") }"#,
            json!({}),
        ),
        (
            r#"mutation { createApiToken(email: "x@example.com") }"#,
            json!({}),
        ),
        (
            r#"mutation { revokeApiToken(email: "root@example.com") }"#,
            json!({}),
        ),
        ("{ auditEvents { edges { node { action } } } }", json!({})),
    ];
    for (query, variables) in attempts {
        let refused = app.graphql_as(&user, query, variables.clone()).await;
        assert_eq!(code(&refused), "FORBIDDEN", "{query}: {refused}");
        assert!(
            refused["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("proctor.admin")
        );
        let allowed = app
            .graphql_as(
                &admin,
                "{ auditEvents(first: 1) { edges { cursor } } }",
                json!({}),
            )
            .await;
        assert_eq!(allowed["errors"], Value::Null, "{allowed}");
    }
}

async fn proc_groups_gate_what_a_user_sees_and_reads(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let admin = seeded(&app).await;
    let ops = app.issue_token("ops@example.com", &["ops"], false).await;
    let nobody = app.issue_token("new@example.com", &[], false).await;
    let names = |response: Value| -> Vec<String> {
        response["data"]["procs"]
            .as_array()
            .unwrap_or_else(|| panic!("{response}"))
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    const LIST: &str = "{ procs { name } }";
    assert_eq!(
        names(app.graphql_as(&admin, LIST, json!({})).await),
        ["open", "ops-db", "ops-only"]
    );
    assert_eq!(
        names(app.graphql_as(&ops, LIST, json!({})).await),
        ["open", "ops-only"]
    );
    assert_eq!(
        names(app.graphql_as(&nobody, LIST, json!({})).await),
        ["open"]
    );

    let denied = app
        .graphql_as(&ops, r#"{ proc(name: "ops-db") { name } }"#, json!({}))
        .await;
    assert_eq!(code(&denied), "FORBIDDEN");
    let message = denied["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("not in db"),
        "names the missing group: {message}"
    );
    let allowed = app
        .graphql_as(&ops, r#"{ proc(name: "ops-only") { name } }"#, json!({}))
        .await;
    assert_eq!(allowed["data"]["proc"]["name"], "ops-only");
}

async fn tokens_are_issued_changed_and_revoked(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let admin = app.issue_token("root@example.com", &[], true).await;
    const CREATE: &str = "mutation($e: String!, $g: [String!], $a: Boolean) {
        createApiToken(email: $e, groups: $g, admin: $a) }";
    const ME: &str = "{ me { email groups admin } }";

    let issued = app
        .graphql_as(
            &admin,
            CREATE,
            json!({ "e": "Bo@Example.com", "g": ["ops"] }),
        )
        .await;
    let token = issued["data"]["createApiToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{issued}"))
        .to_owned();
    assert!(token.starts_with("prt_"));
    assert_eq!(
        app.graphql_as(&token, ME, json!({})).await["data"]["me"],
        json!({ "email": "bo@example.com", "groups": ["ops"], "admin": false })
    );

    // A second token promotes the user; both tokens now carry the new rights.
    let second = app
        .graphql_as(&admin, CREATE, json!({ "e": "bo@example.com", "a": true }))
        .await;
    let second = second["data"]["createApiToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.graphql_as(&token, ME, json!({})).await["data"]["me"],
        json!({ "email": "bo@example.com", "groups": ["ops", "proctor.admin"], "admin": true })
    );

    let invalid = app
        .graphql_as(&admin, CREATE, json!({ "e": "not-an-email" }))
        .await;
    assert_eq!(code(&invalid), "BAD_USER_INPUT");
    assert_eq!(invalid["errors"][0]["extensions"]["field"], "email");

    const REVOKE: &str = r#"mutation { revokeApiToken(email: "bo@example.com") }"#;
    assert_eq!(
        app.graphql_as(&admin, REVOKE, json!({})).await["data"]["revokeApiToken"],
        true
    );
    for revoked in [&token, &second] {
        assert_eq!(
            code(&app.graphql_as(revoked, ME, json!({})).await),
            "UNAUTHENTICATED"
        );
    }
    assert_eq!(
        app.graphql_as(&admin, REVOKE, json!({})).await["data"]["revokeApiToken"],
        false
    );
    let unknown = app
        .graphql_as(
            &admin,
            r#"mutation { revokeApiToken(email: "who@example.com") }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&unknown), "NOT_FOUND");
}

async fn websockets_authenticate_with_the_connection_init_payload(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let token = app.issue_token("ada@example.com", &["ops"], false).await;
    let mut client = WsClient::connect(
        &app.ws_url(),
        Protocol::TransportWs,
        json!({ "Authorization": format!("Bearer {token}") }),
    )
    .await;
    let payloads = client
        .run("1", "{ me { email } procs { name } }", json!({}))
        .await;
    assert_eq!(
        payloads,
        vec![json!({ "data": { "me": { "email": "ada@example.com" }, "procs": [] } })]
    );

    let mut legacy = WsClient::connect(
        &app.ws_url(),
        Protocol::LegacyWs,
        json!({ "Access-Token": token, "Email-Id": "ada@example.com" }),
    )
    .await;
    let payloads = legacy.run("a", "{ me { email } }", json!({})).await;
    assert_eq!(
        payloads,
        vec![json!({ "data": { "me": { "email": "ada@example.com" } } })]
    );

    let rejected = WsClient::try_connect(
        &app.ws_url(),
        Protocol::TransportWs,
        json!({ "token": "prt_forged" }),
    )
    .await;
    assert!(
        rejected.is_err(),
        "a forged token ends the connection at connection_init"
    );

    let mut anonymous = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    let payloads = anonymous.run("2", "{ procs { name } }", json!({})).await;
    assert_eq!(
        payloads[0]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{payloads:?}"
    );
}

async fn every_mutation_is_audited(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let admin = seeded(&app).await;
    let secret_proc =
        json!({ "i": { "name": "open", "command": ["true"], "secrets": [{ "name": "K" }] } });
    for (query, variables) in [
        (UPSERT, secret_proc),
        (
            r#"mutation { setSecrets(proc: "open", secrets: [{ key: "K", value: "hidden-value" }]) { key } }"#,
            json!({}),
        ),
        (
            r#"mutation { deleteSecret(proc: "open", key: "K") }"#,
            json!({}),
        ),
        (r#"mutation { deleteProc(name: "ops-db") }"#, json!({})),
        (
            r#"mutation { createApiToken(email: "x@example.com") }"#,
            json!({}),
        ),
        (
            r#"mutation { revokeApiToken(email: "x@example.com") }"#,
            json!({}),
        ),
    ] {
        let response = app.graphql_as(&admin, query, variables).await;
        assert_eq!(response["errors"], Value::Null, "{query}: {response}");
    }
    const PAGE: &str = "query($after: String) { auditEvents(first: 4, after: $after) {
        pageInfo { hasNextPage hasPreviousPage }
        edges { cursor node { actor action objectKind objectId detail createdAt } } } }";
    let first = app.graphql_as(&admin, PAGE, json!({})).await;
    let page = &first["data"]["auditEvents"];
    let actions: Vec<&str> = page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "token.revoke",
            "token.create",
            "proc.delete",
            "secret.delete"
        ],
        "newest first"
    );
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let newest = &page["edges"][0]["node"];
    assert_eq!(newest["actor"], "root@example.com");
    assert_eq!(newest["objectKind"], "user");
    assert_eq!(newest["objectId"], "x@example.com");

    let cursor = page["edges"][3]["cursor"].clone();
    let second = app
        .graphql_as(&admin, PAGE, json!({ "after": cursor }))
        .await;
    let rest: Vec<&str> = second["data"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        rest,
        ["secret.set", "proc.update", "proc.create", "proc.create"]
    );
    assert!(
        !second.to_string().contains("hidden-value"),
        "details never hold secret values"
    );
    let bad_cursor = app
        .graphql_as(&admin, PAGE, json!({ "after": "abc" }))
        .await;
    assert_eq!(code(&bad_cursor), "BAD_USER_INPUT");
}

on_both_stacks!(
    credentials_are_required_and_checked,
    only_admins_manage,
    proc_groups_gate_what_a_user_sees_and_reads,
    tokens_are_issued_changed_and_revoked,
    websockets_authenticate_with_the_connection_init_payload,
    every_mutation_is_audited,
);

#[test]
fn users_add_prints_a_working_token_as_its_last_line() {
    use proctor_tests::{Proctord, proctord_command};
    let directory = tempfile::tempdir().unwrap();
    let output = proctord_command(directory.path())
        .args([
            "users",
            "add",
            "--email",
            "root@example.com",
            "--admin",
            "--group",
            "ops",
        ])
        .env("PROCTOR_AUTH_ENABLED", "true")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("groups ops, proctor.admin"), "{stdout}");
    let token = stdout.lines().last().unwrap().to_owned();
    assert!(token.starts_with("prt_"), "{stdout}");

    let mut serve = proctord_command(directory.path());
    serve
        .env("PROCTOR_APP_PORT", "0")
        .env("PROCTOR_AUTH_ENABLED", "true");
    let server = Proctord::spawn(serve);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let me: Value = runtime.block_on(async {
        proctor_tests::http_client()
            .post(server.url("/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": "{ me { email admin } }" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(
        me["data"]["me"],
        json!({ "email": "root@example.com", "admin": true })
    );
    assert!(server.terminate().success());
}
