//! The migrations on Postgres and SQLite: up → down → up, and the data model they create
//! (every entity round-trips, unique keys hold, foreign keys cascade or clear as designed).

use chrono::{DateTime, SubsecRound, Utc};
use proctor_entity::json::{
    ArgSpec, ArgSpecs, ArgType, ArgValue, ArgValues, NotificationPolicy, SecretSpec, SecretSpecs,
    StringList,
};
use proctor_entity::values::{
    CatchUpPolicy, ExecutionStatus, LogStream, OverlapPolicy, RunOutcome, Trigger,
};
use proctor_entity::{
    api_token, audit_event, execution, execution_log, group_membership, proc, proc_version,
    schedule, schedule_run, secret, user,
};
use proctor_migration::{Migrator, MigratorTrait, SchemaManager, TABLES};
use proctor_server::Settings;
use proctor_server::database::{self, migrate_down, migrate_up, migration_states};
use proctor_tests::TestDatabase;
use proctor_tests::infra::postgres_url;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, ModelTrait, NotSet, Set};

async fn connect(database: &TestDatabase) -> DatabaseConnection {
    let pool = Settings::from_args(&["--database-url", &database.url()])
        .expect("the test database's URL is accepted")
        .storage
        .pool;
    database::connect(database.target(), &pool)
        .await
        .expect("connect to the test database")
}

async fn existing_tables(db: &DatabaseConnection) -> Vec<&'static str> {
    let manager = SchemaManager::new(db);
    let mut present = Vec::new();
    for table in TABLES {
        if manager.has_table(*table).await.expect("inspect the schema") {
            present.push(*table);
        }
    }
    present
}

async fn up_down_up(db: &DatabaseConnection) {
    let total = Migrator::migrations().len();
    let states = migration_states(db).await.unwrap();
    assert_eq!(states.len(), total);
    assert!(
        states.iter().all(|m| !m.applied),
        "fresh database: nothing applied"
    );

    let applied = migrate_up(db).await.expect("first up");
    assert_eq!(applied.len(), total, "{applied:?}");
    assert_eq!(existing_tables(db).await, TABLES);
    assert!(
        migration_states(db)
            .await
            .unwrap()
            .iter()
            .all(|m| m.applied)
    );

    // Step down past every later migration to the table creations, one migration at a time,
    // until the tenth (the last table creation, `audit_events`) is undone too.
    for step in 1..=(total - 9) {
        migrate_down(db, Some(1)).await.expect("one step down");
        let states = migration_states(db).await.unwrap();
        assert_eq!(states.iter().filter(|m| m.applied).count(), total - step);
    }
    assert!(!existing_tables(db).await.contains(&"audit_events"));

    migrate_down(db, None).await.expect("all the way down");
    assert!(existing_tables(db).await.is_empty());
    assert!(
        migration_states(db)
            .await
            .unwrap()
            .iter()
            .all(|m| !m.applied)
    );

    migrate_up(db).await.expect("second up");
    assert_eq!(existing_tables(db).await, TABLES);
    // Running up again with nothing pending is a no-op, not an error.
    assert!(migrate_up(db).await.expect("idempotent up").is_empty());
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again_on_sqlite() {
    let database = TestDatabase::sqlite();
    up_down_up(&connect(&database).await).await;
}

#[tokio::test]
#[cfg_attr(
    proctor_no_postgres,
    ignore = "needs Postgres: set PROCTOR_TEST_DATABASE_URL, or run ./tests/run.sh"
)]
async fn migrations_go_up_down_and_up_again_on_postgres() {
    let Some(url) = postgres_url() else { return };
    let database = TestDatabase::postgres(&url).await;
    up_down_up(&connect(&database).await).await;
}

#[tokio::test]
#[cfg_attr(
    proctor_no_postgres,
    ignore = "needs Postgres: set PROCTOR_TEST_DATABASE_URL, or run ./tests/run.sh"
)]
async fn replicas_migrating_at_once_on_postgres_do_not_collide() {
    let Some(url) = postgres_url() else { return };
    let database = TestDatabase::postgres(&url).await;
    let (a, b) = (connect(&database).await, connect(&database).await);
    let (first, second) = tokio::join!(migrate_up(&a), migrate_up(&b));
    let (first, second) = (
        first.expect("replica A migrates"),
        second.expect("replica B migrates"),
    );
    // Serialised by the lock: one replica applies everything, the other finds nothing to do.
    let mut counts = [first.len(), second.len()];
    counts.sort_unstable();
    assert_eq!(
        counts,
        [0, Migrator::migrations().len()],
        "{first:?} / {second:?}"
    );
    assert_eq!(existing_tables(&a).await, TABLES);
}

/// Timestamps as both backends store them (Postgres keeps microseconds).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Inserts one row into every table, reads each back, and checks the constraints.
async fn data_model_holds(db: &DatabaseConnection) {
    migrate_up(db).await.unwrap();
    let t = now();

    let echo = proc::ActiveModel {
        id: NotSet,
        name: Set("echo".into()),
        description: Set(Some("Echoes its NAME".into())),
        image: Set(Some("ghcr.io/proctor/echo:1".into())),
        command: Set(Some(StringList(vec![
            "sh".into(),
            "-c".into(),
            "echo $NAME".into(),
        ]))),
        args: Set(ArgSpecs(vec![ArgSpec {
            name: "NAME".into(),
            description: Some("who to greet".into()),
            arg_type: ArgType::Enum,
            required: true,
            default: Some("world".into()),
            pattern: None,
            values: vec!["world".into(), "moon".into()],
        }])),
        secret_specs: Set(SecretSpecs(vec![SecretSpec {
            name: "TOKEN".into(),
            description: None,
        }])),
        authorized_groups: Set(StringList(vec!["ops".into()])),
        author: Set(Some("Ada".into())),
        contributors: Set(None),
        organization: Set(Some("Proctor".into())),
        timeout_seconds: Set(Some(300)),
        retries: Set(Some(2)),
        notifications: Set(Some(NotificationPolicy {
            emails: vec!["dev@example.com".into()],
            on: vec!["FAILED".into()],
            ..NotificationPolicy::default()
        })),
        resources: Set(Some(proctor_entity::json::Resources {
            cpu: Some("500m".into()),
            memory: Some("256Mi".into()),
        })),
        identity: Set(Some(proctor_entity::json::IdentitySpec {
            audience: vec!["sts.amazonaws.com".into()],
        })),
        alerts: Set(Some(proctor_entity::json::AlertRules(vec![
            proctor_entity::json::AlertRule {
                pattern: "^ERROR".into(),
                notify: vec!["webhook".into()],
                once: true,
            },
        ]))),
        version: Set(1),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(db)
    .await
    .expect("insert a proc");
    assert_eq!(
        proc::Entity::find_by_id(echo.id).one(db).await.unwrap(),
        Some(echo.clone())
    );

    let token = secret::ActiveModel {
        id: NotSet,
        proc_id: Set(echo.id),
        key: Set("TOKEN".into()),
        key_id: Set("0011223344556677".into()),
        ciphertext: Set(vec![0, 1, 2, 255]),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(db)
    .await
    .expect("insert a secret");
    assert_eq!(
        secret::Entity::find_by_id(token.id).one(db).await.unwrap(),
        Some(token.clone())
    );

    let ada = user::ActiveModel {
        id: NotSet,
        email: Set("ada@example.com".into()),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(db)
    .await
    .expect("insert a user");
    let membership = group_membership::ActiveModel {
        user_id: Set(ada.id),
        group_name: Set("ops".into()),
        created_at: Set(t),
    }
    .insert(db)
    .await
    .expect("insert a membership");
    assert_eq!(
        group_membership::Entity::find_by_id((ada.id, "ops".to_owned()))
            .one(db)
            .await
            .unwrap(),
        Some(membership)
    );
    let api_token = api_token::ActiveModel {
        id: NotSet,
        user_id: Set(ada.id),
        token_hash: Set("sha256:abc".into()),
        created_at: Set(t),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await
    .expect("insert a token");
    assert_eq!(
        api_token::Entity::find_by_id(api_token.id)
            .one(db)
            .await
            .unwrap(),
        Some(api_token)
    );

    let nightly = schedule::ActiveModel {
        id: NotSet,
        proc_id: Set(echo.id),
        args: Set(ArgValues(vec![ArgValue {
            name: "NAME".into(),
            value: "moon".into(),
        }])),
        cron: Set("0 0 3 * * *".into()),
        timezone: Set("Europe/Berlin".into()),
        tags: Set(StringList(vec!["nightly".into()])),
        group_name: Set(Some("ops".into())),
        notification_emails: Set(StringList(vec!["ops@example.com".into()])),
        enabled: Set(true),
        overlap_policy: Set(OverlapPolicy::Forbid),
        catch_up_policy: Set(CatchUpPolicy::Last),
        next_fire_at: Set(Some(t)),
        created_by: Set(Some("ada@example.com".into())),
        slack_webhook_url: Set(Some("https://hooks.slack.example/T/B/x".into())),
        webhook_url: Set(None),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(db)
    .await
    .expect("insert a schedule");
    assert_eq!(
        schedule::Entity::find_by_id(nightly.id)
            .one(db)
            .await
            .unwrap(),
        Some(nightly.clone())
    );

    // Legacy clients parse ids as 64-bit numbers; a sonyflake-sized id must fit.
    let big_id = 269_349_349_056_612_582_i64;
    let run = execution::ActiveModel {
        id: Set(big_id),
        proc_id: Set(Some(echo.id)),
        proc_name: Set("echo".into()),
        args: Set(ArgValues(vec![ArgValue {
            name: "NAME".into(),
            value: "moon".into(),
        }])),
        status: Set(ExecutionStatus::Succeeded),
        trigger: Set(Trigger::Schedule),
        schedule_id: Set(Some(nightly.id)),
        user_email: Set(Some("worker@proctor".into())),
        image: Set(Some("ghcr.io/proctor/echo:1".into())),
        executor_ref: Set(Some("proctor-echo-1".into())),
        exit_code: Set(Some(0)),
        reason: Set(None),
        created_at: Set(t),
        started_at: Set(Some(t)),
        finished_at: Set(Some(t)),
        updated_at: Set(t),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert an execution");
    assert_eq!(run.id, big_id);
    assert_eq!(
        execution::Entity::find_by_id(big_id).one(db).await.unwrap(),
        Some(run.clone())
    );

    for (seq, stream, line) in [
        (1, LogStream::Stdout, "hello moon"),
        (2, LogStream::Stderr, "done"),
    ] {
        let logged = execution_log::ActiveModel {
            execution_id: Set(run.id),
            seq: Set(seq),
            stream: Set(stream),
            line: Set(line.into()),
            logged_at: Set(t),
            replaced: Set(false),
        }
        .insert(db)
        .await
        .expect("insert a log line");
        assert_eq!(
            execution_log::Entity::find_by_id((run.id, seq))
                .one(db)
                .await
                .unwrap(),
            Some(logged)
        );
    }

    let slot = schedule_run::ActiveModel {
        id: NotSet,
        schedule_id: Set(nightly.id),
        slot: Set(t),
        execution_id: Set(Some(run.id)),
        fired_at: Set(t),
        outcome: Set(RunOutcome::Started),
        detail: Set(None),
        notifications: Set(Some(
            serde_json::json!([{ "channel": "email", "delivered": true }]),
        )),
    }
    .insert(db)
    .await
    .expect("insert a schedule run");
    assert_eq!(
        schedule_run::Entity::find_by_id(slot.id)
            .one(db)
            .await
            .unwrap(),
        Some(slot)
    );

    let audit = audit_event::ActiveModel {
        id: NotSet,
        actor: Set(Some("ada@example.com".into())),
        action: Set("proc.upsert".into()),
        object_kind: Set("proc".into()),
        object_id: Set("echo".into()),
        detail: Set(Some(serde_json::json!({ "version": 1 }))),
        created_at: Set(t),
        chain_seq: Set(Some(1)),
        prev_hash: Set(Some("0".repeat(64))),
        hash: Set(Some("ab".repeat(32))),
    }
    .insert(db)
    .await
    .expect("insert an audit event");
    assert_eq!(
        audit_event::Entity::find_by_id(audit.id)
            .one(db)
            .await
            .unwrap(),
        Some(audit)
    );

    let key = proctor_entity::signing_key::ActiveModel {
        kid: Set("k1".into()),
        key_id: Set("0011223344556677".into()),
        sealed: Set(vec![1, 2, 3]),
        public_jwk: Set("{}".into()),
        created_at: Set(t),
    }
    .insert(db)
    .await
    .expect("insert a signing key");
    assert_eq!(
        proctor_entity::signing_key::Entity::find_by_id("k1".to_owned())
            .one(db)
            .await
            .unwrap(),
        Some(key)
    );
    let receipt = proctor_entity::execution_receipt::ActiveModel {
        execution_id: Set(run.id),
        payload: Set("{}".into()),
        signature: Set("sig".into()),
        kid: Set("k1".into()),
        created_at: Set(t),
    }
    .insert(db)
    .await
    .expect("insert a receipt");
    assert_eq!(
        proctor_entity::execution_receipt::Entity::find_by_id(run.id)
            .one(db)
            .await
            .unwrap(),
        Some(receipt)
    );
    let imported = proctor_entity::v2_import::ActiveModel {
        kind: Set("execution".into()),
        source_key: Set("1357924680000000001".into()),
        target_id: Set(run.id.to_string()),
        created_at: Set(t),
    }
    .insert(db)
    .await
    .expect("insert an import record");
    assert_eq!(
        proctor_entity::v2_import::Entity::find_by_id((
            "execution".to_owned(),
            "1357924680000000001".to_owned()
        ))
        .one(db)
        .await
        .unwrap(),
        Some(imported)
    );

    let first_version = proc_version::ActiveModel {
        id: NotSet,
        proc_id: Set(echo.id),
        version: Set(1),
        definition: Set(serde_json::json!({ "name": "echo", "command": ["echo"] })),
        changed_by: Set(Some("ada@example.com".into())),
        changed_at: Set(t),
    }
    .insert(db)
    .await
    .expect("insert a proc version");
    assert_eq!(
        proc_version::Entity::find_by_id(first_version.id)
            .one(db)
            .await
            .unwrap(),
        Some(first_version.clone())
    );
    let mut same_version: proc_version::ActiveModel = first_version.into();
    same_version.id = NotSet;
    assert!(
        same_version.insert(db).await.is_err(),
        "(proc, version) is unique"
    );

    // Unique keys.
    let mut same_name: proc::ActiveModel = echo.clone().into();
    same_name.id = NotSet;
    assert!(same_name.insert(db).await.is_err(), "proc names are unique");
    let mut same_key: secret::ActiveModel = token.clone().into();
    same_key.id = NotSet;
    assert!(same_key.insert(db).await.is_err(), "(proc, key) is unique");
    let same_seq = execution_log::ActiveModel {
        execution_id: Set(run.id),
        seq: Set(1),
        stream: Set(LogStream::Stdout),
        line: Set("again".into()),
        logged_at: Set(t),
        replaced: Set(false),
    };
    assert!(
        same_seq.insert(db).await.is_err(),
        "(execution, seq) is unique"
    );
    let same_slot = schedule_run::ActiveModel {
        id: NotSet,
        schedule_id: Set(nightly.id),
        slot: Set(t),
        execution_id: Set(None),
        fired_at: Set(now()),
        outcome: Set(RunOutcome::SkippedOverlap),
        detail: Set(Some("execution 1 was still running".into())),
        notifications: Set(None),
    };
    assert!(
        same_slot.insert(db).await.is_err(),
        "(schedule, slot) is unique: a slot fires once"
    );

    // Foreign keys.
    let orphan = secret::ActiveModel {
        id: NotSet,
        proc_id: Set(echo.id + 1_000),
        key: Set("X".into()),
        key_id: Set("0011223344556677".into()),
        ciphertext: Set(vec![1]),
        created_at: Set(t),
        updated_at: Set(t),
    };
    assert!(orphan.insert(db).await.is_err(), "a secret needs its proc");

    echo.delete(db).await.expect("delete the proc");
    assert!(
        secret::Entity::find().all(db).await.unwrap().is_empty(),
        "secrets cascade"
    );
    assert!(
        schedule::Entity::find().all(db).await.unwrap().is_empty(),
        "schedules cascade"
    );
    assert!(
        proc_version::Entity::find()
            .all(db)
            .await
            .unwrap()
            .is_empty(),
        "versions cascade"
    );
    assert!(
        schedule_run::Entity::find()
            .all(db)
            .await
            .unwrap()
            .is_empty(),
        "runs cascade"
    );
    let kept = execution::Entity::find_by_id(big_id)
        .one(db)
        .await
        .unwrap()
        .expect("history stays");
    assert_eq!(
        (kept.proc_id, kept.schedule_id),
        (None, None),
        "history loses its links only"
    );
    assert_eq!(
        execution_log::Entity::find().all(db).await.unwrap().len(),
        2,
        "logs stay"
    );

    ada.delete(db).await.expect("delete the user");
    assert!(
        api_token::Entity::find().all(db).await.unwrap().is_empty(),
        "tokens cascade"
    );
    assert!(
        group_membership::Entity::find()
            .all(db)
            .await
            .unwrap()
            .is_empty(),
        "memberships cascade"
    );
}

#[tokio::test]
async fn the_data_model_holds_on_sqlite() {
    let database = TestDatabase::sqlite();
    data_model_holds(&connect(&database).await).await;
}

#[tokio::test]
#[cfg_attr(
    proctor_no_postgres,
    ignore = "needs Postgres: set PROCTOR_TEST_DATABASE_URL, or run ./tests/run.sh"
)]
async fn the_data_model_holds_on_postgres() {
    let Some(url) = postgres_url() else { return };
    let database = TestDatabase::postgres(&url).await;
    data_model_holds(&connect(&database).await).await;
}
