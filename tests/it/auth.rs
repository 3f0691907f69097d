//! Built-in authentication and authorization: credentials in headers, bearer tokens and
//! websocket payloads; admin rights; proc groups; token issue and revocation; the audit log.

use proctor_schema::ports::authenticator::Credentials;
use proctor_tests::api::{
    DeleteProc, DeleteSecret, ProcByName, delete_proc, delete_secret, me, proc, proc_by_name,
    secret,
};
use proctor_tests::graphql_ws::{Protocol, WsClient};
use proctor_tests::{Stack, TestApp};
use serde_json::json;

async fn spawn(stack: Stack) -> Option<TestApp> {
    TestApp::builder()
        .stack(stack)
        .with_args(&["--auth-enabled"])
        .try_spawn()
        .await
}

/// An admin token and three procs: open to all, for ops, for ops and db.
async fn seeded(app: &TestApp) -> String {
    let admin = app.issue_token("root@example.com", &[], true).await;
    for (name, groups) in [
        ("open", vec![]),
        ("ops-only", vec!["ops"]),
        ("ops-db", vec!["ops", "db"]),
    ] {
        let mut input = proc(name, &["true"]);
        input.authorized_groups = Some(groups.into_iter().map(str::to_owned).collect());
        app.api_as(&admin).define_proc(input).await;
    }
    admin
}

/// `me` as `(email, groups, admin)`.
fn identity(me: &me::MeMe) -> (Option<&str>, Vec<&str>, bool) {
    let groups = me.groups.iter().map(String::as_str).collect();
    (me.email.as_deref(), groups, me.admin)
}

async fn credentials_are_required_and_checked(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let token = app.issue_token("ada@example.com", &["ops"], false).await;

    let anonymous = app.api();
    assert!(
        anonymous
            .me()
            .await
            .expect("no error without credentials")
            .is_none()
    );
    // What the server is may be read without credentials, and says that auth is on.
    assert!(anonymous.server_info().await.auth_enabled);
    let procs = anonymous.try_procs(None).await.expect_err("refused");
    assert_eq!(procs.code, "UNAUTHENTICATED");
    assert!(procs.message.contains("Access-Token"), "{procs:?}");

    let expected = (Some("ada@example.com"), vec!["ops"], false);
    let me = app.api_as(&token).me().await.unwrap().expect("ada");
    assert_eq!(identity(&me), expected);
    let legacy = app
        .api_with(&[("Access-Token", &token), ("Email-Id", "Ada@Example.com")])
        .me()
        .await
        .unwrap()
        .expect("ada");
    assert_eq!(
        identity(&legacy),
        expected,
        "legacy headers, e-mail compared case-insensitively"
    );

    let wrong_owner = app
        .api_with(&[("Access-Token", &token), ("Email-Id", "eve@example.com")])
        .me()
        .await
        .expect_err("not hers");
    assert_eq!(wrong_owner.code, "UNAUTHENTICATED");
    let forged = app.api_as("prt_forged").me().await.expect_err("forged");
    assert_eq!(forged.code, "UNAUTHENTICATED");

    // The same rules in-process, without HTTP.
    let in_process = app
        .execute(
            Credentials {
                bearer_token: Some(token.clone()),
                ..Credentials::default()
            },
            "{ me { email name groups admin } }",
            json!({}),
        )
        .await;
    let in_process: graphql_client::Response<me::ResponseData> =
        serde_json::from_value(in_process).expect("a response of Me");
    let me = in_process.data.and_then(|data| data.me).expect("ada");
    assert_eq!(identity(&me), expected);
}

async fn only_admins_manage(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let admin = seeded(&app).await;
    let user = app
        .issue_token("ada@example.com", &["ops", "db"], false)
        .await;
    let user = app.api_as(&user);
    let delete_secret = delete_secret::Variables {
        proc: "open".to_owned(),
        key: "X".to_owned(),
    };
    let attempts = [
        (
            "upsertProc",
            user.try_define_proc(proc("mine", &["true"]))
                .await
                .map(|_| ()),
        ),
        (
            "deleteProc",
            user.call::<DeleteProc>(delete_proc::Variables {
                name: "open".to_owned(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "setSecrets",
            user.set_secrets("open", &[]).await.map(|_| ()),
        ),
        (
            "deleteSecret",
            user.call::<DeleteSecret>(delete_secret).await.map(|_| ()),
        ),
        (
            "createApiToken",
            user.create_api_token("x@example.com", None, None)
                .await
                .map(|_| ()),
        ),
        (
            "revokeApiToken",
            user.revoke_api_token("root@example.com").await.map(|_| ()),
        ),
        ("auditEvents", user.audit_events(20, None).await.map(|_| ())),
    ];
    for (operation, outcome) in attempts {
        let refused = outcome.expect_err(operation);
        assert_eq!(refused.code, "FORBIDDEN", "{operation}: {refused:?}");
        assert!(
            refused.message.contains("proctor.admin"),
            "{operation}: {refused:?}"
        );
    }
    app.api_as(&admin)
        .audit_events(1, None)
        .await
        .expect("administrators read the audit log");
}

async fn proc_groups_gate_what_a_user_sees_and_reads(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let admin = seeded(&app).await;
    let ops = app.issue_token("ops@example.com", &["ops"], false).await;
    let nobody = app.issue_token("new@example.com", &[], false).await;
    let names = |procs: Vec<(String, i64)>| -> Vec<String> {
        procs.into_iter().map(|(name, _)| name).collect()
    };
    assert_eq!(
        names(app.api_as(&admin).procs(None).await),
        ["open", "ops-db", "ops-only"]
    );
    assert_eq!(
        names(app.api_as(&ops).procs(None).await),
        ["open", "ops-only"]
    );
    assert_eq!(names(app.api_as(&nobody).procs(None).await), ["open"]);

    let as_ops = app.api_as(&ops);
    let read = |name: &str| {
        let variables = proc_by_name::Variables {
            name: name.to_owned(),
        };
        as_ops.call::<ProcByName>(variables)
    };
    let denied = read("ops-db").await.expect_err("not in db");
    assert_eq!(denied.code, "FORBIDDEN");
    assert!(
        denied.message.contains("not in db"),
        "names the missing group: {denied:?}"
    );
    let allowed = read("ops-only")
        .await
        .expect("in ops")
        .proc
        .expect("ops-only");
    assert_eq!(allowed.name, "ops-only");
}

async fn tokens_are_issued_changed_and_revoked(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let admin = app.issue_token("root@example.com", &[], true).await;
    let admin = app.api_as(&admin);

    let token = admin
        .create_api_token("Bo@Example.com", Some(&["ops"]), None)
        .await
        .expect("issued");
    assert!(token.starts_with("prt_"));
    let me = |token: &str| {
        let api = app.api_as(token);
        async move { api.me().await }
    };
    let bo = me(&token).await.unwrap().expect("bo");
    assert_eq!(identity(&bo), (Some("bo@example.com"), vec!["ops"], false));

    // A second token promotes the user; both tokens now carry the new rights.
    let second = admin
        .create_api_token("bo@example.com", None, Some(true))
        .await
        .expect("issued");
    let bo = me(&token).await.unwrap().expect("bo");
    assert_eq!(
        identity(&bo),
        (Some("bo@example.com"), vec!["ops", "proctor.admin"], true)
    );

    let invalid = admin
        .create_api_token("not-an-email", None, None)
        .await
        .expect_err("not an address");
    assert_eq!(invalid.code, "BAD_USER_INPUT");
    assert_eq!(invalid.field.as_deref(), Some("email"));

    assert!(admin.revoke_api_token("bo@example.com").await.unwrap());
    for revoked in [&token, &second] {
        let refused = me(revoked).await.expect_err("revoked");
        assert_eq!(refused.code, "UNAUTHENTICATED");
    }
    assert!(!admin.revoke_api_token("bo@example.com").await.unwrap());
    let unknown = admin
        .revoke_api_token("who@example.com")
        .await
        .expect_err("no such user");
    assert_eq!(unknown.code, "NOT_FOUND");
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
    let admin = app.api_as(&admin);
    let mut secret_proc = proc("open", &["true"]);
    secret_proc.secrets = Some(vec![secret("K")]);
    admin.define_proc(secret_proc).await;
    admin
        .set_secrets("open", &[("K", "hidden-value")])
        .await
        .expect("set");
    let delete_k = delete_secret::Variables {
        proc: "open".to_owned(),
        key: "K".to_owned(),
    };
    admin.ok::<DeleteSecret>(delete_k).await;
    admin
        .ok::<DeleteProc>(delete_proc::Variables {
            name: "ops-db".to_owned(),
        })
        .await;
    admin
        .create_api_token("x@example.com", None, None)
        .await
        .expect("issued");
    admin
        .revoke_api_token("x@example.com")
        .await
        .expect("revoked");

    let page = admin.audit_events(4, None).await.expect("a page");
    let actions: Vec<&str> = page.edges.iter().map(|e| e.node.action.as_str()).collect();
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
    assert!(page.page_info.has_next_page);
    let newest = &page.edges[0].node;
    assert_eq!(newest.actor.as_deref(), Some("root@example.com"));
    assert_eq!(newest.object_kind, "user");
    assert_eq!(newest.object_id, "x@example.com");

    let cursor = page.edges[3].cursor.clone();
    let second = admin.audit_events(4, Some(cursor)).await.expect("a page");
    let rest: Vec<&str> = second
        .edges
        .iter()
        .map(|e| e.node.action.as_str())
        .collect();
    assert_eq!(
        rest,
        ["secret.set", "proc.update", "proc.create", "proc.create"]
    );
    assert!(
        !format!("{second:?}").contains("hidden-value"),
        "details never hold secret values"
    );
    let bad_cursor = admin
        .audit_events(4, Some("abc".to_owned()))
        .await
        .expect_err("not a cursor");
    assert_eq!(bad_cursor.code, "BAD_USER_INPUT");
}

async fn administrators_list_users_with_groups_and_active_tokens(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let root = app.issue_token("root@example.com", &[], true).await;
    let ada = app
        .issue_token("ada@example.com", &["ops", "db"], false)
        .await;
    app.issue_token("ada@example.com", &["ops", "db"], false)
        .await;
    app.issue_token("gone@example.com", &["ops"], false).await;
    app.api_as(&root)
        .revoke_api_token("gone@example.com")
        .await
        .expect("revoked");
    // Ada's first token has been used once.
    app.api_as(&ada).me().await.expect("ada");
    const USERS: &str = "query($first: Int, $after: String) { users(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor } nodes { email groups admin activeTokens lastUsedAt } } }";

    let page = app.graphql_as(&root, USERS, json!({ "first": 2 })).await;
    let users = &page["data"]["users"];
    assert_eq!(users["pageInfo"]["hasNextPage"], true, "{page}");
    let nodes = users["nodes"].as_array().expect("nodes");
    // Newest first: the revoked user, then ada (two tokens, one used).
    assert_eq!(nodes[0]["email"], "gone@example.com");
    assert_eq!(nodes[0]["activeTokens"], 0);
    assert_eq!(nodes[1]["email"], "ada@example.com");
    assert_eq!(nodes[1]["groups"], json!(["db", "ops"]));
    assert_eq!(nodes[1]["admin"], false);
    assert_eq!(nodes[1]["activeTokens"], 2);
    assert!(nodes[1]["lastUsedAt"].is_string(), "{page}");
    let rest = app
        .graphql_as(
            &root,
            USERS,
            json!({ "first": 2, "after": users["pageInfo"]["endCursor"] }),
        )
        .await;
    let rest = &rest["data"]["users"]["nodes"];
    assert_eq!(rest[0]["email"], "root@example.com");
    assert_eq!(rest[0]["admin"], true);
    assert_eq!(rest[0]["activeTokens"], 1);

    let refused = app.graphql_as(&ada, USERS, json!({})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let too_many = app.graphql_as(&root, USERS, json!({ "first": 101 })).await;
    assert_eq!(too_many["errors"][0]["extensions"]["field"], "first");
}

on_both_stacks!(
    administrators_list_users_with_groups_and_active_tokens,
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
    let api = proctor_tests::api::Api::at(&server.url("")).as_holder_of(&token);
    let me = runtime
        .block_on(api.me())
        .expect("the token works")
        .expect("root");
    assert_eq!(me.email.as_deref(), Some("root@example.com"));
    assert!(me.admin);
    assert!(server.terminate().success());
}
