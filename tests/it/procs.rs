//! Procs over GraphQL: create, update, list, read, delete, YAML files, validation.

use chrono::Utc;
use proctor_entity::execution;
use proctor_entity::json::ArgValues;
use proctor_entity::values::{ExecutionStatus, Trigger};
use proctor_tests::{Stack, TestApp};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, NotSet, Set};
use serde_json::{Value, json};

const UPSERT: &str = "mutation($input: ProcInput!) { upsertProc(input: $input) {
    name version description command image authorizedGroups timeoutSeconds retries createdAt updatedAt
    args { name type required default pattern values description }
    secrets { key description isSet updatedAt } } }";

fn deploy() -> Value {
    json!({
        "name": "deploy",
        "description": "Deploys a service",
        "command": ["sh", "-c", "echo deploying $SERVICE to $REGION"],
        "args": [
            { "name": "SERVICE", "required": true, "pattern": "[a-z-]+", "description": "what" },
            { "name": "REGION", "type": "ENUM", "values": ["eu", "us"], "default": "eu" },
            { "name": "REPLICAS", "type": "INT", "default": "2" },
            { "name": "DRY_RUN", "type": "BOOL" }
        ],
        "secrets": [{ "name": "API_TOKEN", "description": "deploy API" }],
        "authorizedGroups": ["ops"],
        "timeoutSeconds": 600,
        "retries": 1
    })
}

async fn spawn(stack: Stack) -> Option<TestApp> {
    TestApp::builder().stack(stack).try_spawn().await
}

fn data(response: &Value) -> &Value {
    assert_eq!(response["errors"], Value::Null, "{response}");
    &response["data"]
}

fn error_code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {response}"))
}

async fn creates_updates_lists_and_reads_procs(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let created = app.graphql(UPSERT, json!({ "input": deploy() })).await;
    let proc = &data(&created)["upsertProc"];
    assert_eq!(proc["version"], 1);
    assert_eq!(
        proc["args"][1],
        json!({
            "name": "REGION", "type": "ENUM", "required": false, "default": "eu",
            "pattern": null, "values": ["eu", "us"], "description": null
        })
    );
    assert_eq!(
        proc["args"][0]["type"], "STRING",
        "STRING is the default type"
    );
    assert_eq!(
        proc["secrets"],
        json!([{ "key": "API_TOKEN", "description": "deploy API", "isSet": false, "updatedAt": null }])
    );
    assert_eq!(proc["authorizedGroups"], json!(["ops"]));

    let mut changed = deploy();
    changed["description"] = json!("Deploys a service, carefully");
    let updated = app.graphql(UPSERT, json!({ "input": changed })).await;
    let updated = &data(&updated)["upsertProc"];
    assert_eq!(updated["version"], 2, "an update bumps the version");
    assert_eq!(
        updated["createdAt"], proc["createdAt"],
        "creation time is kept"
    );
    assert_eq!(updated["description"], "Deploys a service, carefully");

    app.graphql(
        UPSERT,
        json!({ "input": { "name": "backup", "image": "ghcr.io/x/backup:1" } }),
    )
    .await;
    let listed = app.graphql("{ procs { name version } }", json!({})).await;
    assert_eq!(
        data(&listed)["procs"],
        json!([{ "name": "backup", "version": 1 }, { "name": "deploy", "version": 2 }]),
        "listed by name"
    );
    let searched = app
        .graphql(
            "query($f: ProcFilter) { procs(filter: $f) { name } }",
            json!({ "f": { "search": "CAREFULLY" } }),
        )
        .await;
    assert_eq!(data(&searched)["procs"], json!([{ "name": "deploy" }]));
    let by_group = app
        .graphql(
            "query($f: ProcFilter) { procs(filter: $f) { name } }",
            json!({ "f": { "group": "ops" } }),
        )
        .await;
    assert_eq!(data(&by_group)["procs"], json!([{ "name": "deploy" }]));

    let one = app
        .graphql(
            r#"{ proc(name: "deploy") { name timeoutSeconds retries } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data(&one)["proc"],
        json!({ "name": "deploy", "timeoutSeconds": 600, "retries": 1 })
    );
    let none = app
        .graphql(r#"{ proc(name: "nope") { name } }"#, json!({}))
        .await;
    assert_eq!(data(&none)["proc"], Value::Null);
}

async fn invalid_definitions_are_refused_naming_the_field(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let base = json!({ "name": "ok", "command": ["true"] });
    let with = |patch: Value| {
        let mut input = base.clone();
        for (key, value) in patch.as_object().unwrap() {
            input[key] = value.clone();
        }
        input
    };
    let cases = [
        (with(json!({ "name": "Not_A_Label" })), "input.name"),
        (with(json!({ "name": "x".repeat(64) })), "input.name"),
        (json!({ "name": "nothing-to-run" }), "input.command"),
        (with(json!({ "command": [""] })), "input.command[0]"),
        (
            with(json!({ "args": [{ "name": "1BAD" }] })),
            "input.args[0].name",
        ),
        (
            with(json!({ "args": [{ "name": "A" }, { "name": "A" }] })),
            "input.args[1].name",
        ),
        (
            with(json!({ "args": [{ "name": "EXECUTION_ID" }] })),
            "input.args[0].name",
        ),
        (
            with(json!({ "args": [{ "name": "E", "type": "ENUM" }] })),
            "input.args[0].values",
        ),
        (
            with(json!({ "args": [{ "name": "N", "type": "INT", "pattern": "1" }] })),
            "input.args[0].pattern",
        ),
        (
            with(json!({ "args": [{ "name": "P", "pattern": "(" }] })),
            "input.args[0].pattern",
        ),
        (
            with(json!({ "args": [{ "name": "N", "type": "INT", "default": "two" }] })),
            "input.args[0].default",
        ),
        (
            with(json!({ "args": [{ "name": "S" }], "secrets": [{ "name": "S" }] })),
            "input.args[0].name",
        ),
        (
            with(json!({ "authorizedGroups": ["has space"] })),
            "input.authorizedGroups[0]",
        ),
        (with(json!({ "timeoutSeconds": 0 })), "input.timeoutSeconds"),
        (with(json!({ "retries": 11 })), "input.retries"),
    ];
    for (input, field) in cases {
        let response = app.graphql(UPSERT, json!({ "input": input })).await;
        assert_eq!(
            error_code(&response),
            "BAD_USER_INPUT",
            "{input}: {response}"
        );
        assert_eq!(
            response["errors"][0]["extensions"]["field"], field,
            "{input}: {response}"
        );
    }
    let listed = app.graphql("{ procs { name } }", json!({})).await;
    assert_eq!(
        data(&listed)["procs"],
        json!([]),
        "nothing invalid was stored"
    );
}

async fn delete_is_refused_while_an_execution_runs(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let created = app.graphql(UPSERT, json!({ "input": deploy() })).await;
    assert_eq!(created["errors"], Value::Null, "{created}");
    let proc = proctor_schema::procs::service::find_proc(app.state.db(), "deploy")
        .await
        .unwrap();
    let now = Utc::now();
    let running = execution::ActiveModel {
        id: NotSet,
        proc_id: Set(Some(proc.id)),
        proc_name: Set("deploy".into()),
        args: Set(ArgValues::default()),
        status: Set(ExecutionStatus::Running),
        trigger: Set(Trigger::Manual),
        schedule_id: Set(None),
        user_email: Set(None),
        image: Set(None),
        executor_ref: Set(None),
        exit_code: Set(None),
        reason: Set(None),
        created_at: Set(now),
        started_at: Set(Some(now)),
        finished_at: Set(None),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(app.state.db())
    .await
    .unwrap();

    const DELETE: &str = r#"mutation { deleteProc(name: "deploy") }"#;
    let refused = app.graphql(DELETE, json!({})).await;
    assert_eq!(error_code(&refused), "CONFLICT", "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1 execution")
    );

    let mut finished = running.clone().into_active_model();
    finished.status = Set(ExecutionStatus::Succeeded);
    finished.update(app.state.db()).await.unwrap();
    let deleted = app.graphql(DELETE, json!({})).await;
    assert_eq!(data(&deleted)["deleteProc"], true);
    let gone = app
        .graphql(r#"{ proc(name: "deploy") { name } }"#, json!({}))
        .await;
    assert_eq!(data(&gone)["proc"], Value::Null);
    let history = execution::Entity::find_by_id(running.id)
        .one(app.state.db())
        .await
        .unwrap()
        .expect("the execution history stays");
    assert_eq!(history.proc_id, None);

    let unknown = app.graphql(DELETE, json!({})).await;
    assert_eq!(error_code(&unknown), "NOT_FOUND", "{unknown}");
}

async fn yaml_files_round_trip_and_errors_name_the_line(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let yaml = "\
name: nightly-report
description: Mails the report
command: [python3, report.py]
args:
  - name: DAY
    type: enum
    values: [mon, tue]
    required: true
secrets:
  - name: SMTP_PASSWORD
authorizedGroups: [reporting]
timeoutSeconds: 120
";
    const APPLY: &str = "mutation($c: String!) { applyProcFile(content: $c) { name version yaml args { name type } } }";
    let applied = app.graphql(APPLY, json!({ "c": yaml })).await;
    let proc = &data(&applied)["applyProcFile"];
    assert_eq!(proc["args"], json!([{ "name": "DAY", "type": "ENUM" }]));
    // The exported file applies again to the same definition (one more version).
    let exported = proc["yaml"].as_str().unwrap().to_owned();
    let again = app.graphql(APPLY, json!({ "c": exported })).await;
    assert_eq!(data(&again)["applyProcFile"]["version"], 2);
    assert_eq!(data(&again)["applyProcFile"]["yaml"], proc["yaml"]);

    let typo = app
        .graphql(
            APPLY,
            json!({ "c": "name: x\ncommand: [true]\nauthorised_groups: [a]\n" }),
        )
        .await;
    assert_eq!(error_code(&typo), "BAD_USER_INPUT");
    let field = typo["errors"][0]["extensions"]["field"].as_str().unwrap();
    assert!(field.starts_with("content:3:"), "the line is named: {typo}");
    assert!(
        typo["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("authorised_groups")
    );

    let invalid = app
        .graphql(APPLY, json!({ "c": "name: Bad\ncommand: [true]\n" }))
        .await;
    assert_eq!(
        invalid["errors"][0]["extensions"]["field"], "content: name",
        "{invalid}"
    );
}

async fn dropping_a_secret_declaration_deletes_its_value(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    app.graphql(UPSERT, json!({ "input": deploy() })).await;
    let set = app
        .graphql(
            r#"mutation { setSecrets(proc: "deploy", secrets: [{ key: "API_TOKEN", value: "v" }]) { key isSet } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data(&set)["setSecrets"],
        json!([{ "key": "API_TOKEN", "isSet": true }])
    );
    let mut without = deploy();
    without["secrets"] = json!([]);
    let updated = app.graphql(UPSERT, json!({ "input": without })).await;
    assert_eq!(data(&updated)["upsertProc"]["secrets"], json!([]));
    let mut back = deploy();
    back["secrets"] = json!([{ "name": "API_TOKEN" }]);
    let redeclared = app.graphql(UPSERT, json!({ "input": back })).await;
    assert_eq!(
        data(&redeclared)["upsertProc"]["secrets"][0]["isSet"],
        false,
        "the old value did not survive"
    );
}

async fn arguments_are_checked_by_type_and_rule(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    app.graphql(UPSERT, json!({ "input": deploy() })).await;
    const VALIDATE: &str =
        "query($a: [ArgInput!]) { validateArgs(proc: \"deploy\", args: $a) { name value } }";
    let resolved = app
        .graphql(VALIDATE, json!({ "a": [{ "name": "SERVICE", "value": "api" }, { "name": "DRY_RUN", "value": "true" }] }))
        .await;
    assert_eq!(
        data(&resolved)["validateArgs"],
        json!([
            { "name": "SERVICE", "value": "api" },
            { "name": "REGION", "value": "eu" },
            { "name": "REPLICAS", "value": "2" },
            { "name": "DRY_RUN", "value": "true" }
        ]),
        "defaults filled in, declaration order"
    );
    let service = json!({ "name": "SERVICE", "value": "api" });
    for (args, field, rule) in [
        (json!([]), "args.SERVICE", "is required"),
        (
            json!([{ "name": "SERVICE", "value": "API!" }]),
            "args.SERVICE",
            "pattern",
        ),
        (
            json!([service, { "name": "REGION", "value": "asia" }]),
            "args.REGION",
            "one of eu, us",
        ),
        (
            json!([service, { "name": "REPLICAS", "value": "many" }]),
            "args.REPLICAS",
            "whole number",
        ),
        (
            json!([service, { "name": "DRY_RUN", "value": "yes" }]),
            "args.DRY_RUN",
            "true or false",
        ),
        (
            json!([service, { "name": "COLOR", "value": "red" }]),
            "args.COLOR",
            "unknown argument",
        ),
    ] {
        let refused = app.graphql(VALIDATE, json!({ "a": args })).await;
        assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{refused}");
        assert_eq!(
            refused["errors"][0]["extensions"]["field"], field,
            "{refused}"
        );
        let message = refused["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{message}");
    }
}

async fn with_auth_off_everyone_is_an_administrator(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    let me = app
        .graphql_with(
            &[("Email-Id", "ada@example.com")],
            "{ me { email admin groups } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&me)["me"],
        json!({ "email": "ada@example.com", "admin": true, "groups": [] })
    );
}

async fn concurrent_writers_never_see_a_locked_database(stack: Stack) {
    let Some(app) = TestApp::builder().stack(stack).try_spawn().await else {
        return;
    };
    // Read-then-write transactions racing each other: on SQLite a deferred transaction would
    // fail at once with "database is locked" instead of waiting its turn.
    let writes = (0..40).map(|n| {
        let app = &app;
        async move {
            let name = format!("p{}", n % 8);
            let input = json!({ "name": name, "command": ["true"], "secrets": [{ "name": "K" }] });
            let upserted = app.graphql(UPSERT, json!({ "input": input })).await;
            let secret = app
                .graphql(
                    "mutation($p: String!) { setSecrets(proc: $p, secrets: [{ key: \"K\", value: \"v\" }]) { key } }",
                    json!({ "p": name }),
                )
                .await;
            (upserted, secret)
        }
    });
    for (upserted, secret) in futures::future::join_all(writes).await {
        assert_eq!(upserted["errors"], Value::Null, "{upserted}");
        assert_eq!(secret["errors"], Value::Null, "{secret}");
    }
    // Five upserts of each proc: no update was lost.
    let listed = app.graphql("{ procs { version } }", json!({})).await;
    let versions: Vec<i64> = data(&listed)["procs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![5; 8]);
}

async fn every_version_is_kept_and_runs_record_theirs(stack: Stack) {
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&["--auth-enabled"])
        .try_spawn()
        .await
    else {
        return;
    };
    let admin = app.issue_token("root@example.com", &[], true).await;
    let as_admin = |query: &'static str, variables: Value| {
        let app = &app;
        let admin = admin.clone();
        async move { app.graphql_as(&admin, query, variables).await }
    };
    const UPSERT_ECHO: &str = "mutation($c: [String!]) { upsertProc(input: { name: \"echo\", command: $c }) { version } }";
    const RUN: &str = "mutation { execute(proc: \"echo\") { id procVersion } }";
    let first = as_admin(UPSERT_ECHO, json!({ "c": ["echo", "one"] })).await;
    assert_eq!(data(&first)["upsertProc"]["version"], 1);
    let run_one = as_admin(RUN, json!({})).await;
    assert_eq!(data(&run_one)["execute"]["procVersion"], 1);
    let second = as_admin(UPSERT_ECHO, json!({ "c": ["echo", "two"] })).await;
    assert_eq!(data(&second)["upsertProc"]["version"], 2);
    let run_two = as_admin(RUN, json!({})).await;
    assert_eq!(data(&run_two)["execute"]["procVersion"], 2);

    const VERSIONS: &str = "{ proc(name: \"echo\") { version
        versions { number changedBy command yaml changedAt }
        definitionAt(version: 1) { number command }
        missing: definitionAt(version: 9) { number } } }";
    let listed = as_admin(VERSIONS, json!({})).await;
    let proc = &data(&listed)["proc"];
    assert_eq!(proc["version"], 2);
    let versions = proc["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{proc}");
    assert_eq!(versions[0]["number"], 2, "newest first");
    assert_eq!(versions[0]["command"], json!(["echo", "two"]));
    assert_eq!(versions[1]["number"], 1);
    assert_eq!(versions[1]["command"], json!(["echo", "one"]));
    assert_eq!(versions[1]["changedBy"], "root@example.com");
    assert!(
        versions[1]["yaml"].as_str().unwrap().contains("- one"),
        "{proc}"
    );
    assert_eq!(
        proc["definitionAt"],
        json!({ "number": 1, "command": ["echo", "one"] })
    );
    assert_eq!(proc["missing"], Value::Null);

    // A rollback is a new version equal to the old one; a version never stored is NOT_FOUND.
    let rolled = as_admin(
        "mutation { rollbackProc(name: \"echo\", version: 1) { version command } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&rolled)["rollbackProc"],
        json!({ "version": 3, "command": ["echo", "one"] })
    );
    let unknown = as_admin(
        "mutation { rollbackProc(name: \"echo\", version: 7) { version } }",
        json!({}),
    )
    .await;
    assert_eq!(error_code(&unknown), "NOT_FOUND", "{unknown}");
    // Only administrators roll back.
    let user = app.issue_token("ann@example.com", &[], false).await;
    let refused = app
        .graphql_as(
            &user,
            "mutation { rollbackProc(name: \"echo\", version: 1) { version } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&refused), "FORBIDDEN", "{refused}");
    let run_id = data(&run_one)["execute"]["id"].clone();
    let recorded = as_admin(
        "query($id: ID!) { execution(id: $id) { procVersion } }",
        json!({ "id": run_id }),
    )
    .await;
    assert_eq!(data(&recorded)["execution"]["procVersion"], 1);
}

async fn a_procs_slack_url_is_never_shown_and_stars_keep_it(stack: Stack) {
    let Some(app) = spawn(stack).await else {
        return;
    };
    const SECRET_URL: &str = "https://hooks.slack.example/services/T0/B0/s3cr3t-path";
    let created = app
        .graphql(
            "mutation($n: NotificationsInput) { upsertProc(input: { name: \"noisy\", command: [\"true\"], notifications: $n }) { yaml notifications { slack emails on } } }",
            json!({ "n": { "slackWebhookUrl": SECRET_URL, "emails": ["a@example.com"], "on": ["failed"] } }),
        )
        .await;
    let proc = &data(&created)["upsertProc"];
    assert_eq!(
        proc["notifications"],
        json!({ "slack": true, "emails": ["a@example.com"], "on": ["FAILED"] })
    );
    let yaml = proc["yaml"].as_str().unwrap().to_owned();
    assert!(
        yaml.contains("slackWebhookUrl: '***'") || yaml.contains("slackWebhookUrl: \"***\""),
        "{yaml}"
    );
    // Applied again as shown, the stored URL stays; nothing shows it.
    let reapplied = app
        .graphql(
            "mutation($c: String!) { applyProcFile(content: $c) { version notifications { slack } } }",
            json!({ "c": yaml }),
        )
        .await;
    assert_eq!(
        data(&reapplied)["applyProcFile"],
        json!({ "version": 2, "notifications": { "slack": true } })
    );
    let everything = app
        .graphql(
            "{ proc(name: \"noisy\") { yaml versions { yaml } definitionAt(version: 1) { yaml } } }",
            json!({}),
        )
        .await;
    assert!(!everything.to_string().contains("s3cr3t"), "{everything}");
    let stored = proctor_schema::procs::service::find_proc(app.state.db(), "noisy")
        .await
        .unwrap();
    assert_eq!(
        stored
            .notifications
            .and_then(|policy| policy.slack_webhook_url)
            .as_deref(),
        Some(SECRET_URL),
        "*** kept the stored URL"
    );
    // *** without a stored URL is an error naming the field, not a URL of three stars.
    let refused = app
        .graphql(
            "mutation { upsertProc(input: { name: \"fresh\", command: [\"true\"], notifications: { slackWebhookUrl: \"***\" } }) { name } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{refused}");
    assert!(
        refused
            .to_string()
            .contains("notifications.slackWebhookUrl"),
        "{refused}"
    );
}

on_both_stacks!(
    concurrent_writers_never_see_a_locked_database,
    arguments_are_checked_by_type_and_rule,
    with_auth_off_everyone_is_an_administrator,
    creates_updates_lists_and_reads_procs,
    invalid_definitions_are_refused_naming_the_field,
    delete_is_refused_while_an_execution_runs,
    yaml_files_round_trip_and_errors_name_the_line,
    dropping_a_secret_declaration_deletes_its_value,
    every_version_is_kept_and_runs_record_theirs,
    a_procs_slack_url_is_never_shown_and_stars_keep_it,
);
