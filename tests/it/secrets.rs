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

use proctor_tests::api::{DeleteSecret, delete_secret, proc, secret};
use proctor_tests::{Proctord, Stack, TestApp, proctord_command};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

/// A value that must never show up anywhere but the run's environment.
const SECRET: &str = "s3cr3t-Zq8vX2-never-print-me";

async fn with_proc(stack: Stack) -> Option<TestApp> {
    // The walk below asks for every field at once, lists included: far past the default cost.
    let app = TestApp::builder()
        .stack(stack)
        .with_args(&["--graphql-max-complexity=10000000"])
        .try_spawn()
        .await?;
    let mut deploy = proc("deploy", &["true"]);
    deploy.args = Some(vec![proctor_tests::api::arg("SERVICE")]);
    let mut token = secret("API_TOKEN");
    token.description = Some("for the deploy API".to_owned());
    deploy.secrets = Some(vec![token, secret("DB_PASSWORD")]);
    app.api().define_proc(deploy).await;
    Some(app)
}

async fn values_are_encrypted_at_rest_and_write_only(stack: Stack) {
    let Some(app) = with_proc(stack).await else {
        return;
    };
    let api = app.api();
    let infos = api
        .set_secrets("deploy", &[("API_TOKEN", SECRET)])
        .await
        .expect("set");
    assert_eq!(
        (infos[0].key.as_str(), infos[0].is_set),
        ("API_TOKEN", true)
    );
    assert!(infos[0].updated_at.is_some());
    let unset = &infos[1];
    assert_eq!(
        (
            unset.key.as_str(),
            unset.description.as_deref(),
            unset.is_set,
            unset.updated_at
        ),
        ("DB_PASSWORD", None, false, None)
    );
    assert!(!format!("{infos:?}").contains(SECRET));

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

    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("NOPE", "x")], "secrets[0].key"),
        (&[("API_TOKEN", "")], "secrets[0].value"),
        (
            &[("DB_PASSWORD", "a"), ("DB_PASSWORD", "b")],
            "secrets[1].key",
        ),
    ];
    for (values, field) in cases {
        let refused = api
            .set_secrets("deploy", values)
            .await
            .expect_err("refused");
        assert_eq!(refused.code, "BAD_USER_INPUT", "{refused:?}");
        assert_eq!(refused.field.as_deref(), Some(field), "{refused:?}");
    }
    let unknown = api
        .set_secrets("ghost", &[])
        .await
        .expect_err("no such proc");
    assert_eq!(unknown.code, "NOT_FOUND");

    let delete = |key: &str| {
        let variables = delete_secret::Variables {
            proc: "deploy".to_owned(),
            key: key.to_owned(),
        };
        api.call::<DeleteSecret>(variables)
    };
    assert!(delete("API_TOKEN").await.expect("deleted").delete_secret);
    assert!(
        !delete("API_TOKEN")
            .await
            .expect("nothing left")
            .delete_secret
    );
    let undeclared = delete("NOPE").await.expect_err("not declared");
    assert_eq!(undeclared.code, "BAD_USER_INPUT");
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
    app.api()
        .set_secrets("deploy", &[("API_TOKEN", SECRET), ("DB_PASSWORD", SECRET)])
        .await
        .expect("set");

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
    let api = app.api();
    for name in ["one", "two"] {
        let mut input = proc(name, &["true"]);
        input.secrets = Some(vec![secret("A"), secret("B")]);
        api.define_proc(input).await;
        let (a, b) = (format!("{name}-a"), format!("{name}-b"));
        api.set_secrets(name, &[("A", &a), ("B", &b)])
            .await
            .expect("set");
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
        let api = proctor_tests::api::Api::at(&server.url(""));
        let mut deploy = proc("deploy", &["true"]);
        deploy.secrets = Some(vec![secret("T")]);
        api.define_proc(deploy).await;
        api.set_secrets("deploy", &[("T", SECRET)])
            .await
            .expect("set");
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
