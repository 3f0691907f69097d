//! `proctord import-v2` against a real Redis and Postgres seeded, by this test, the way a
//! Proctor v2.0.8 deployment leaves them (spec §2), quirks included: `null` lists and empty
//! strings in metadata, secrets the metadata never declared, `bnVsbA==` for "no arguments",
//! gzipped output (gzip of nothing for none), runs stuck in `CREATED`, crons stored with a
//! leading seconds field (and one written by hand without it), local timestamps without a zone,
//! snowflake ids, and history of a proc that no longer exists.

use std::io::Write as _;
use std::process::Output;

use base64::Engine as _;
use proctor_tests::TestDatabase;
use proctor_tests::api::{ExecutionById, ExecutionStatus, Trigger, execution_by_id, proc, sh};
use proctor_tests::infra::{RedisServer, postgres_url};
use proctor_tests::legacy_cli::LegacyCli;
use proctor_tests::{Stack, TestApp, proctord_command};
use sea_orm::{ConnectionTrait as _, Database, DbBackend, Statement};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

on_both_stacks!(a_v2_deployment_imports_once_and_completely);

/// The first v2 execution id (a snowflake); the seeded ones follow it.
const BASE: i64 = 1_357_924_680_000_000_000;

/// `SET key value` over RESP, as v2's server wrote its keys.
async fn redis_set(url: &str, key: &str, value: &str) {
    let address = url.trim_start_matches("redis://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut command = b"*3\r\n$3\r\nSET\r\n".to_vec();
    for part in [key, value] {
        command.extend(format!("${}\r\n", part.len()).into_bytes());
        command.extend(part.as_bytes());
        command.extend(b"\r\n");
    }
    stream.write_all(&command).await.unwrap();
    let mut reply = [0_u8; 5];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"+OK\r\n");
}

fn gzip(text: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text).unwrap();
    encoder.finish().unwrap()
}

fn b64(json: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// v2's Redis: three good procs, two bad ones, two secret sets and one of a missing proc.
async fn seed_redis(url: &str) {
    let metadata = [
        (
            "echo-worker-metadata",
            json!({
                "name": "echo-worker", "description": "This procs will echo your name",
                "image_name": "walbertusd/echo-worker",
                "env_vars": {
                    "secrets": [{"name": "SECRET_NAME", "description": "My other secret name"}],
                    "args": [{"name": "NAME", "description": "Name to be echoed"}]
                },
                "authorized_groups": ["my-group"], "author": "Dembo",
                "contributors": "Dembo", "organization": "GoJek"
            })
            .to_string(),
        ),
        (
            "nightly-report-metadata",
            json!({
                "name": "nightly-report", "description": "", "image_name": "reports:1.2",
                "env_vars": {"secrets": null, "args": null}, "authorized_groups": null,
                "author": "", "contributors": "", "organization": ""
            })
            .to_string(),
        ),
        (
            "cleanup-metadata",
            json!({"name": "cleanup", "image_name": "busybox:1.36"}).to_string(),
        ),
        (
            "Bad_Name-metadata",
            json!({"name": "Bad_Name", "image_name": "x"}).to_string(),
        ),
        ("broken-metadata", "{not json".to_owned()),
    ];
    for (key, value) in &metadata {
        redis_set(url, key, value).await;
    }
    redis_set(
        url,
        "echo-worker-secret",
        r#"{"SECRET_NAME":"echo-s3cret-1"}"#,
    )
    .await;
    // Never declared in nightly-report's metadata (v2 injected it anyway).
    redis_set(
        url,
        "nightly-report-secret",
        r#"{"DB_PASSWORD":"pw-s3cret-2"}"#,
    )
    .await;
    redis_set(url, "ghost-secret", r#"{"X":"y-s3cret-3"}"#).await;
}

/// A v2 schedule row: id, job, args, cron, e-mails, group, enabled, tags.
type SeedSchedule = (
    i64,
    &'static str,
    Option<String>,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static str,
);

/// v2's Postgres: its schema (migrations 10-14) and rows.
async fn seed_postgres(url: &str) {
    let db = Database::connect(url).await.unwrap();
    db.execute_unprepared(
        "CREATE TABLE execution_context (id bigint NOT NULL PRIMARY KEY, job_name varchar(255), \
           user_email varchar(255), image_tag text, args text, output bytea, \
           status varchar(255), created_at timestamp DEFAULT now(), \
           updated_at timestamp DEFAULT now(), name varchar(255) DEFAULT NULL);
         CREATE TABLE schedule (id bigint NOT NULL PRIMARY KEY, job_name varchar(255), \
           args text, cron varchar(255), notification_emails varchar(255), \
           user_email varchar(255), \"group\" varchar(255), enabled bool, \
           created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now(), \
           tags varchar(255));
         CREATE TABLE schedule_context (id bigint NOT NULL PRIMARY KEY, schedule_id bigint, \
           execution_context_id bigint UNIQUE, created_at timestamp DEFAULT now(), \
           updated_at timestamp DEFAULT now(), \
           FOREIGN KEY (execution_context_id) REFERENCES execution_context(id) \
             ON DELETE CASCADE ON UPDATE CASCADE, \
           FOREIGN KEY (schedule_id) REFERENCES schedule(id) \
             ON DELETE CASCADE ON UPDATE CASCADE);",
    )
    .await
    .unwrap();
    let schedules: [SeedSchedule; 4] = [
        (
            1111,
            "echo-worker",
            Some(b64(r#"{"NAME":"bob"}"#)),
            "0 */5 * * * *",
            "ops@example.com,lead@example.com",
            "team-a",
            true,
            "nightly,ops",
        ),
        (
            1112,
            "nightly-report",
            Some("bnVsbA==".to_owned()),
            "0 0 2 * * *",
            "ops@example.com",
            "reports",
            false,
            "reports",
        ),
        // Written by hand, without v2's seconds field.
        (
            1113,
            "cleanup",
            None,
            "30 4 * * 1-5",
            "",
            "maintenance",
            true,
            "cleanup",
        ),
        (
            1114,
            "cleanup",
            None,
            "every day",
            "",
            "maintenance",
            true,
            "broken",
        ),
    ];
    for (id, job, args, cron, emails, group, enabled, tags) in schedules {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO schedule (id, job_name, args, cron, notification_emails, user_email, \
             \"group\", enabled, tags, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'ada@example.com', $6, $7, $8, \
             '2024-02-01 09:00:00', '2024-02-01 09:00:00')",
            [
                id.into(),
                job.into(),
                args.into(),
                cron.into(),
                emails.into(),
                group.into(),
                enabled.into(),
                tags.into(),
            ],
        ))
        .await
        .unwrap();
    }
    for n in 1..=51_i64 {
        let jobs = ["echo-worker", "nightly-report", "cleanup"];
        let mut job = jobs[usize::try_from(n).unwrap() % 3].to_owned();
        if n == 5 {
            job = "retired-proc".to_owned(); // deleted in v2 since; its history stays
        }
        let (status, name, args, output): (&str, &str, String, Vec<u8>) = match n % 10 {
            _ if n == 51 => ("FINISHED", "proctor-x", b64("{}"), b"not gzip".to_vec()),
            // v2 never masked output: a run of echo-worker printed its secret.
            _ if n == 6 => (
                "FINISHED",
                "proctor-leaky",
                b64("{}"),
                gzip(b"using echo-s3cret-1\n"),
            ),
            0 => ("REQUIREMENT_NOT_MET", "", "bnVsbA==".to_owned(), gzip(b"")),
            1 => ("CREATED", "proctor-stuck", "bnVsbA==".to_owned(), gzip(b"")),
            2 => ("POD_FAILED", "proctor-failed", b64("{}"), gzip(b"boom\n")),
            3 => ("CREATION_FAILED", "", b64("{}"), gzip(b"")),
            7 => (
                "FINISHED",
                "proctor-odd",
                b64("{}"),
                gzip(b"bad\0byte \xff\nlast line without newline"),
            ),
            _ => (
                "FINISHED",
                "proctor-ok",
                b64(&format!(r#"{{"NAME":"n{n}"}}"#)),
                gzip(format!("hello {n}\nworld\n").as_bytes()),
            ),
        };
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO execution_context (id, job_name, name, user_email, image_tag, args, \
             output, status, created_at, updated_at) VALUES ($1, $2, $3, $4, 'img:1', $5, $6, \
             $7, TIMESTAMP '2024-03-01 10:00:00' + make_interval(mins => $8), \
             TIMESTAMP '2024-03-01 10:00:30' + make_interval(mins => $8))",
            [
                (BASE + n).into(),
                job.into(),
                name.into(),
                if n % 10 == 4 {
                    "worker@proctor"
                } else {
                    "ada@example.com"
                }
                .into(),
                args.into(),
                output.into(),
                status.into(),
                i32::try_from(n).unwrap().into(),
            ],
        ))
        .await
        .unwrap();
    }
    for (n, context) in [(4_i64, 9001_i64), (14, 9002), (24, 9003)] {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO schedule_context (id, schedule_id, execution_context_id) \
             VALUES ($1, 1111, $2)",
            [context.into(), (BASE + n).into()],
        ))
        .await
        .unwrap();
    }
    db.close().await.unwrap();
}

fn import(data_dir: &std::path::Path, database: &str, sources: [&str; 2], dry: bool) -> Output {
    let mut command = proctord_command(data_dir);
    command.args([
        "import-v2",
        &format!("--data-dir={}", data_dir.display()),
        &format!("--database-url={database}"),
        "--auto-migrate",
        &format!("--v2-redis-url={}", sources[0]),
        &format!("--v2-postgres-url={}", sources[1]),
    ]);
    if dry {
        command.arg("--dry-run");
    }
    command.output().expect("run proctord import-v2")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn a_v2_deployment_imports_once_and_completely(stack: Stack) {
    let Some(admin_url) = postgres_url() else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let v2 = TestDatabase::postgres(&admin_url).await;
    seed_redis(&redis.url()).await;
    seed_postgres(&v2.url()).await;
    let sources = [redis.url(), v2.url()];
    let sources = [sources[0].as_str(), sources[1].as_str()];

    let data_dir = tempfile::tempdir().unwrap();
    let target = match stack {
        Stack::Embedded => TestDatabase::sqlite(),
        Stack::Production => TestDatabase::postgres(&admin_url).await,
    };
    let database = target.url();

    let dry = import(data_dir.path(), &database, sources, true);
    let said = text(&dry);
    assert_eq!(
        dry.status.code(),
        Some(1),
        "skipped records fail it: {said}"
    );
    assert!(said.contains("dry run, nothing was written"), "{said}");
    assert!(
        said.contains("proc      echo-worker: would create"),
        "{said}"
    );
    assert!(said.contains("executions: 50 created"), "{said}");

    let first = import(data_dir.path(), &database, sources, false);
    let said = text(&first);
    assert_eq!(first.status.code(), Some(1), "{said}");
    for expected in [
        "procs: 3 created, 0 updated, 0 unchanged, 2 skipped",
        "secrets: 2 created, 0 updated, 0 unchanged, 1 skipped",
        "schedules: 3 created, 0 updated, 0 unchanged, 1 skipped",
        "executions: 50 created, 0 updated, 0 unchanged, 1 skipped",
        "skipped   proc Bad_Name-metadata: name: \"Bad_Name\" is not a valid proc name",
        "skipped   proc broken-metadata: not v2 metadata JSON",
        "skipped   secret ghost-secret: ",
        "skipped   schedule 1114: ",
        &format!("skipped   execution {}: output: is not gzip", BASE + 51),
        "secrets   nightly-report: created (1 value(s), never shown)",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in\n{said}");
    }
    assert!(
        !said.contains("s3cret"),
        "a secret value was printed:\n{said}"
    );

    let again = import(data_dir.path(), &database, sources, false);
    let said = text(&again);
    for expected in [
        "procs: 0 created, 0 updated, 3 unchanged, 2 skipped",
        "secrets: 0 created, 0 updated, 2 unchanged, 1 skipped",
        "schedules: 0 created, 0 updated, 3 unchanged, 1 skipped",
        "executions: 0 created, 0 updated, 50 unchanged, 1 skipped",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in\n{said}");
    }

    // The server on the imported database, with the same key file.
    let app = TestApp::builder()
        .stack(stack)
        .with_args(&[
            format!("--data-dir={}", data_dir.path().display()),
            format!("--database-url={database}"),
        ])
        .spawn()
        .await;
    let api = app.api();
    let procs: Vec<(String, i64)> = api.procs(None).await;
    let names: Vec<&str> = procs.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["cleanup", "echo-worker", "nightly-report"]);

    let execution = |n: i64| {
        let api = api.clone();
        async move {
            api.ok::<ExecutionById>(execution_by_id::Variables {
                id: (BASE + n).to_string(),
            })
            .await
            .execution
            .unwrap_or_else(|| panic!("execution {} was imported", BASE + n))
        }
    };
    let scheduled = execution(4).await;
    assert_eq!(scheduled.status, ExecutionStatus::Succeeded);
    assert_eq!(scheduled.trigger, Trigger::Schedule);
    assert_eq!(scheduled.user.as_deref(), Some("worker@proctor"));
    assert_eq!(scheduled.args[0].value, "n4");
    assert!(scheduled.reason.unwrap().contains("no exit code"));
    assert_eq!(
        scheduled.started_at.map(|at| at.to_rfc3339()).as_deref(),
        Some("2024-03-01T10:04:00+00:00")
    );
    assert_eq!(
        api.stored_text(&(BASE + 4).to_string()).await,
        ["hello 4", "world"]
    );
    assert_eq!(
        api.stored_text(&(BASE + 6).to_string()).await,
        ["using ***"],
        "imported output is masked with the proc's secrets"
    );
    let odd = api.stored_lines(&(BASE + 7).to_string()).await;
    assert_eq!(odd.len(), 2);
    assert_eq!(odd[0].line, "bad\u{FFFD}byte \u{FFFD}");
    assert!(odd[0].replaced && !odd[1].replaced);
    assert_eq!(execution(1).await.status, ExecutionStatus::Lost);
    assert_eq!(execution(2).await.status, ExecutionStatus::Failed);
    assert_eq!(execution(3).await.status, ExecutionStatus::CreationFailed);
    let retired = execution(5).await;
    assert_eq!(retired.proc_name, "retired-proc");
    assert!(retired.proc.is_none());

    let schedules = app
        .graphql(
            "{ schedules { edges { node { procName cron timezone tags group enabled \
               notificationEmails createdBy args { name value } } } } }",
            json!({}),
        )
        .await;
    let mut found: Vec<serde_json::Value> = schedules["data"]["schedules"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect();
    found.sort_by_key(|node| node["procName"].as_str().unwrap().to_owned());
    assert_eq!(
        found,
        [
            json!({"procName": "cleanup", "cron": "0 30 4 * * 1-5", "timezone": "UTC",
                   "tags": ["cleanup"], "group": "maintenance", "enabled": true,
                   "notificationEmails": [], "createdBy": "ada@example.com", "args": []}),
            json!({"procName": "echo-worker", "cron": "0 */5 * * * *", "timezone": "UTC",
                   "tags": ["nightly", "ops"], "group": "team-a", "enabled": true,
                   "notificationEmails": ["ops@example.com", "lead@example.com"],
                   "createdBy": "ada@example.com", "args": [{"name": "NAME", "value": "bob"}]}),
            json!({"procName": "nightly-report", "cron": "0 0 2 * * *", "timezone": "UTC",
                   "tags": ["reports"], "group": "reports", "enabled": false,
                   "notificationEmails": ["ops@example.com"], "createdBy": "ada@example.com",
                   "args": []}),
        ]
    );

    // What the Go CLI v2.0.8 sees.
    let legacy = LegacyCli::new(app.address, "ada@example.com", "token");
    let listed = legacy.list_procs().await.unwrap();
    let report = listed
        .iter()
        .find(|meta| meta["name"] == "nightly-report")
        .expect("listed");
    assert_eq!(report["image_name"], "reports:1.2");
    assert_eq!(report["env_vars"]["secrets"][0]["name"], "DB_PASSWORD");
    let echo = listed
        .iter()
        .find(|meta| meta["name"] == "echo-worker")
        .unwrap();
    assert_eq!(echo["authorized_groups"], json!(["my-group"]));
    assert_eq!(echo["author"], "Dembo");
    for (n, status) in [
        (4, "FINISHED"),
        (3, "CREATION_FAILED"),
        (10, "REQUIREMENT_NOT_MET"),
    ] {
        let body = legacy
            .execution_status(u64::try_from(BASE + n).unwrap())
            .await;
        assert_eq!(body.unwrap()["status"], status, "execution {}", BASE + n);
    }
    let legacy_schedules = legacy.list_schedules().await.unwrap();
    assert_eq!(legacy_schedules.len(), 2, "v2 lists enabled schedules only");
    assert!(
        legacy_schedules
            .iter()
            .any(|s| s["jobName"] == "echo-worker" && s["tags"] == "nightly,ops")
    );

    // An imported proc runs with its imported secret, masked.
    let mut runnable = proc("nightly-report", &sh(r#"echo "password=$DB_PASSWORD""#));
    runnable.image = Some("reports:1.2".to_owned());
    runnable.secrets = Some(vec![proctor_tests::api::secret("DB_PASSWORD")]);
    api.define_proc(runnable).await;
    let (id, last) = api.run_to_end("nightly-report", &[]).await;
    assert_eq!(last.status, ExecutionStatus::Succeeded);
    assert_eq!(api.stored_text(&id).await, ["password=***"]);
    assert!(
        id.parse::<i64>().unwrap() > BASE + 50,
        "new executions are numbered after the imported ones: {id}"
    );
}
