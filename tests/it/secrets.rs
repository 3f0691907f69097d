//! Secrets: encrypted at rest, write-only through the API, absent from every response and log
//! line, and re-encrypted by key rotation.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use proctor_entity::secret;
use proctor_schema::auth::Caller;
use proctor_schema::ports::authenticator::Credentials;
use proctor_schema::procs::service::find_proc;
use proctor_schema::secrets::keyring::Keyring;
use proctor_schema::secrets::service::{decrypt, reencrypt_all, secret_values};

use proctor_tests::{Proctord, Stack, TestApp, proctord_command};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

/// A value that must never show up anywhere but the run's environment.
const SECRET: &str = "s3cr3t-Zq8vX2-never-print-me";

const SET: &str = "mutation($p: String!, $s: [SecretValueInput!]!) {
    setSecrets(proc: $p, secrets: $s) { key description isSet updatedAt } }";

async fn with_proc(stack: Stack) -> Option<TestApp> {
    // The walk below asks for every field at once, lists included: far past the default cost.
    let app = TestApp::builder()
        .stack(stack)
        .with_args(&["--graphql-max-complexity=10000000"])
        .try_spawn()
        .await?;
    let created = app
        .graphql(
            "mutation($i: ProcInput!) { upsertProc(input: $i) { name } }",
            json!({ "i": {
                "name": "deploy",
                "command": ["true"],
                "args": [{ "name": "SERVICE" }],
                "secrets": [{ "name": "API_TOKEN", "description": "for the deploy API" },
                            { "name": "DB_PASSWORD" }]
            }}),
        )
        .await;
    assert_eq!(created["errors"], Value::Null, "{created}");
    Some(app)
}

async fn values_are_encrypted_at_rest_and_write_only(stack: Stack) {
    let Some(app) = with_proc(stack).await else {
        return;
    };
    let set = app
        .graphql(
            SET,
            json!({ "p": "deploy", "s": [{ "key": "API_TOKEN", "value": SECRET }] }),
        )
        .await;
    assert_eq!(set["errors"], Value::Null, "{set}");
    let infos = &set["data"]["setSecrets"];
    assert_eq!(infos[0]["key"], "API_TOKEN");
    assert_eq!(infos[0]["isSet"], true);
    assert!(infos[0]["updatedAt"].is_string());
    assert_eq!(
        infos[1],
        json!({ "key": "DB_PASSWORD", "description": null, "isSet": false, "updatedAt": null })
    );
    assert!(!set.to_string().contains(SECRET));

    let rows = secret::Entity::find().all(app.state.db()).await.unwrap();
    assert_eq!(rows.len(), 1);
    let stored = &rows[0];
    assert!(
        !stored
            .ciphertext
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes()),
        "the column is not the plaintext"
    );
    assert_eq!(stored.key_id, app.state.keyring().current_key_id());
    let proc = find_proc(app.state.db(), "deploy").await.unwrap();
    assert_eq!(
        secret_values(&app.state, &proc).await.unwrap(),
        vec![("API_TOKEN".to_owned(), SECRET.to_owned())],
        "a run gets the value back"
    );

    for (secrets, field) in [
        (json!([{ "key": "NOPE", "value": "x" }]), "secrets[0].key"),
        (
            json!([{ "key": "API_TOKEN", "value": "" }]),
            "secrets[0].value",
        ),
        (
            json!([{ "key": "DB_PASSWORD", "value": "a" }, { "key": "DB_PASSWORD", "value": "b" }]),
            "secrets[1].key",
        ),
    ] {
        let refused = app
            .graphql(SET, json!({ "p": "deploy", "s": secrets }))
            .await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{refused}"
        );
        assert_eq!(
            refused["errors"][0]["extensions"]["field"], field,
            "{refused}"
        );
    }
    let unknown = app.graphql(SET, json!({ "p": "ghost", "s": [] })).await;
    assert_eq!(unknown["errors"][0]["extensions"]["code"], "NOT_FOUND");

    const DELETE: &str = r#"mutation { deleteSecret(proc: "deploy", key: "API_TOKEN") }"#;
    assert_eq!(
        app.graphql(DELETE, json!({})).await["data"]["deleteSecret"],
        true
    );
    assert_eq!(
        app.graphql(DELETE, json!({})).await["data"]["deleteSecret"],
        false
    );
    let undeclared = app
        .graphql(
            r#"mutation { deleteSecret(proc: "deploy", key: "NOPE") }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        undeclared["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
}

/// A log sink for one test thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The introspected object types: name → fields (name, required argument names, named type).
type Types = BTreeMap<String, Vec<(String, Vec<String>, String)>>;

fn introspected_types(schema: &Value) -> Types {
    fn named(mut ty: &Value) -> String {
        while ty["name"].is_null() {
            ty = &ty["ofType"];
        }
        ty["name"].as_str().unwrap().to_owned()
    }
    schema["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ty| ty["kind"] == "OBJECT")
        .map(|ty| {
            let fields = ty["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|field| {
                    let required = field["args"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|arg| arg["type"]["kind"] == "NON_NULL")
                        .map(|arg| arg["name"].as_str().unwrap().to_owned())
                        .collect();
                    (
                        field["name"].as_str().unwrap().to_owned(),
                        required,
                        named(&field["type"]),
                    )
                })
                .collect();
            (ty["name"].as_str().unwrap().to_owned(), fields)
        })
        .collect()
}

/// A selection of every field reachable from `type_name`, supplying `name: "deploy"` where a
/// name is required and skipping fields with other required arguments.
fn select_everything(types: &Types, type_name: &str, depth: usize) -> String {
    let mut selection = Vec::new();
    for (field, required, field_type) in &types[type_name] {
        let arguments = match required.as_slice() {
            [] => String::new(),
            [only] if only == "name" => r#"(name: "deploy")"#.to_owned(),
            _ => continue,
        };
        if types.contains_key(field_type) {
            if depth == 0 || field_type.starts_with("__") {
                continue;
            }
            let inner = select_everything(types, field_type, depth - 1);
            if !inner.is_empty() {
                selection.push(format!("{field}{arguments} {{ {inner} }}"));
            }
        } else {
            selection.push(format!("{field}{arguments}"));
        }
    }
    selection.join(" ")
}

fn strings(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) => found.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, found)),
        Value::Object(fields) => fields.values().for_each(|field| strings(field, found)),
        _ => {}
    }
}

async fn no_value_is_reachable_from_query_or_in_the_log(stack: Stack) {
    let capture = Capture::default();
    // Process-wide, because the SQLite driver logs from threads of its own. nextest runs each
    // test in its own process, so nothing else has installed a subscriber yet.
    tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .try_init()
        .expect("this test captures the whole process's log: run it with cargo nextest");

    let Some(app) = with_proc(stack).await else {
        return;
    };
    let set = app
        .graphql(
            SET,
            json!({ "p": "deploy", "s": [{ "key": "API_TOKEN", "value": SECRET },
                                                   { "key": "DB_PASSWORD", "value": SECRET }] }),
        )
        .await;
    assert_eq!(set["errors"], Value::Null, "{set}");

    let introspection = app
        .graphql(
            "{ __schema { types { name kind fields { name
                args { name type { kind } }
                type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }",
            json!({}),
        )
        .await;
    let types = introspected_types(&introspection["data"]);
    let query = format!("{{ {} }}", select_everything(&types, "Query", 5));
    for field in [
        "procs",
        "proc(name: \"deploy\")",
        "auditEvents",
        "me",
        "secrets",
        "yaml",
    ] {
        assert!(query.contains(field), "the walk covers {field}: {query}");
    }

    let over_http = app.graphql(&query, json!({})).await;
    assert_eq!(over_http["errors"], Value::Null, "{over_http}");
    let in_process = app.execute(Credentials::default(), &query, json!({})).await;
    for response in [&over_http, &in_process] {
        let mut found = Vec::new();
        strings(response, &mut found);
        assert!(
            found.iter().any(|s| s == "API_TOKEN"),
            "secrets were read: {response}"
        );
        assert!(
            found.iter().any(|s| s == "secret.set"),
            "the audit log was read"
        );
        assert!(
            !found.iter().any(|s| s.contains(SECRET)),
            "a secret value is reachable from Query: {response}"
        );
    }

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("/graphql"),
        "the capture saw the requests:\n{log}"
    );
    assert!(!log.contains(SECRET), "a secret value is in the log");
}

async fn rotation_reencrypts_every_row(stack: Stack) {
    let key = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let old_key = key(1);
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&[format!("--secret-key={old_key}")])
        .try_spawn()
        .await
    else {
        return;
    };
    for name in ["one", "two"] {
        let created = app
            .graphql(
                "mutation($i: ProcInput!) { upsertProc(input: $i) { name } }",
                json!({ "i": { "name": name, "command": ["true"],
                                "secrets": [{ "name": "A" }, { "name": "B" }] } }),
            )
            .await;
        assert_eq!(created["errors"], Value::Null, "{created}");
        let set = app
            .graphql(
                SET,
                json!({ "p": name, "s": [{ "key": "A", "value": format!("{name}-a") },
                                                  { "key": "B", "value": format!("{name}-b") }] }),
            )
            .await;
        assert_eq!(set["errors"], Value::Null, "{set}");
    }
    let before = secret::Entity::find().all(app.state.db()).await.unwrap();
    assert_eq!(before.len(), 4);

    // The operator configures a new key and keeps the old one for decryption.
    let rotated = Keyring::from_config(&key(2), &[old_key]).unwrap();
    let actor = Caller::system("test");
    assert_eq!(
        reencrypt_all(app.state.db(), &rotated, &actor)
            .await
            .unwrap(),
        4
    );
    let after = secret::Entity::find().all(app.state.db()).await.unwrap();
    let new_only = Keyring::from_config(&key(2), &[]).unwrap();
    for row in &after {
        assert_eq!(
            row.key_id,
            rotated.current_key_id(),
            "{} is under the new key",
            row.key
        );
        let old_row = before.iter().find(|b| b.id == row.id).unwrap();
        assert_ne!(row.ciphertext, old_row.ciphertext);
        assert_eq!(
            decrypt(&new_only, row).unwrap(),
            decrypt(&rotated, old_row).unwrap()
        );
    }
    assert_eq!(
        reencrypt_all(app.state.db(), &rotated, &actor)
            .await
            .unwrap(),
        0
    );
}

on_both_stacks!(
    values_are_encrypted_at_rest_and_write_only,
    no_value_is_reachable_from_query_or_in_the_log,
    rotation_reencrypts_every_row,
);

#[test]
fn the_rotate_key_command_rotates_the_key_file_and_every_row() {
    let directory = tempfile::tempdir().unwrap();
    let mut serve = proctord_command(directory.path());
    serve
        .env("PROCTOR_APP_PORT", "0")
        .env("PROCTOR_REGISTER_EXAMPLES", "false");
    let server = Proctord::spawn(serve);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = proctor_tests::http_client();
        for (query, variables) in [
            (
                "mutation($i: ProcInput!) { upsertProc(input: $i) { name } }",
                json!({ "i": { "name": "deploy", "command": ["true"], "secrets": [{ "name": "T" }] } }),
            ),
            (SET, json!({ "p": "deploy", "s": [{ "key": "T", "value": SECRET }] })),
        ] {
            let response: Value = http
                .post(server.url("/graphql"))
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(response["errors"], Value::Null, "{response}");
        }
    });
    assert!(server.terminate().success());

    let key_file = directory.path().join(".proctor/secret.key");
    let before = Keyring::from_file(&key_file).unwrap().current_key_id();
    let rotate = |expect: &str| {
        let output = proctord_command(directory.path())
            .args(["secrets", "rotate-key"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(expect), "{stdout}");
        assert!(!stdout.contains(SECRET));
    };
    rotate("re-encrypted 1 secret value(s)");
    let keyring = Keyring::from_file(&key_file).unwrap();
    assert_ne!(keyring.current_key_id(), before);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = sea_orm::Database::connect(format!(
            "sqlite://{}",
            directory.path().join(".proctor/proctor.db").display()
        ))
        .await
        .unwrap();
        let rows = secret::Entity::find().all(&db).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key_id, keyring.current_key_id());
        assert_eq!(decrypt(&keyring, &rows[0]).unwrap(), SECRET);
    });
    // Every key ever used stays in the file, so older backups remain readable.
    let lines = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(lines.lines().filter(|l| !l.starts_with('#')).count(), 2);
}
