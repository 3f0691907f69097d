//! Procs over GraphQL: create, update, list, read, delete, YAML files, validation, through the
//! typed API.

use chrono::Utc;
use proctor_entity::execution;
use proctor_entity::json::ArgValues;
use proctor_entity::values::{ExecutionStatus, Trigger};
use proctor_tests::api::upsert_proc::{ArgType, NotificationsInput};
use proctor_tests::api::{
    ApplyProcFile, DeleteProc, ExecutionById, Me, ProcByName, ProcHistory, ProcInput, RollbackProc,
    SetSecrets, ValidateArgs, apply_proc_file, arg, delete_proc, execution_by_id, list_procs, me,
    proc, proc_by_name, proc_history, required_arg, rollback_proc, secret, set_secrets, sh,
    validate_args,
};
use proctor_tests::{Stack, TestApp};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, NotSet, Set};

fn deploy() -> ProcInput {
    let mut input = proc("deploy", &sh("echo deploying $SERVICE to $REGION"));
    input.description = Some("Deploys a service".to_owned());
    let mut service = required_arg("SERVICE");
    service.pattern = Some("[a-z-]+".to_owned());
    service.description = Some("what".to_owned());
    let mut region = arg("REGION");
    region.type_ = Some(ArgType::ENUM);
    region.values = Some(vec!["eu".to_owned(), "us".to_owned()]);
    region.default = Some("eu".to_owned());
    let mut replicas = arg("REPLICAS");
    replicas.type_ = Some(ArgType::INT);
    replicas.default = Some("2".to_owned());
    let mut dry_run = arg("DRY_RUN");
    dry_run.type_ = Some(ArgType::BOOL);
    input.args = Some(vec![service, region, replicas, dry_run]);
    let mut token = secret("API_TOKEN");
    token.description = Some("deploy API".to_owned());
    input.secrets = Some(vec![token]);
    input.authorized_groups = Some(vec!["ops".to_owned()]);
    input.timeout_seconds = Some(600);
    input.retries = Some(1);
    input
}

fn names(procs: &[(String, i64)]) -> Vec<&str> {
    procs.iter().map(|(name, _)| name.as_str()).collect()
}

fn filter(search: Option<&str>, group: Option<&str>) -> Option<list_procs::ProcFilter> {
    Some(list_procs::ProcFilter {
        search: search.map(str::to_owned),
        group: group.map(str::to_owned),
    })
}

async fn creates_updates_lists_and_reads_procs(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    let created = api.define_proc(deploy()).await;
    assert_eq!(created.version, 1);
    let region = &created.args[1];
    assert_eq!(
        (region.name.as_str(), &region.type_, region.required),
        ("REGION", &ArgType::ENUM, false)
    );
    assert_eq!(region.default.as_deref(), Some("eu"));
    assert_eq!(
        (region.pattern.clone(), region.description.clone()),
        (None, None)
    );
    assert_eq!(region.values, ["eu", "us"]);
    assert_eq!(
        created.args[0].type_,
        ArgType::STRING,
        "STRING is the default type"
    );
    let secrets: Vec<_> = created
        .secrets
        .iter()
        .map(|s| {
            (
                s.key.as_str(),
                s.description.as_deref(),
                s.is_set,
                s.updated_at,
            )
        })
        .collect();
    assert_eq!(secrets, [("API_TOKEN", Some("deploy API"), false, None)]);
    assert_eq!(created.authorized_groups, ["ops"]);

    let mut changed = deploy();
    changed.description = Some("Deploys a service, carefully".to_owned());
    let updated = api.define_proc(changed).await;
    assert_eq!(updated.version, 2, "an update bumps the version");
    assert_eq!(
        updated.created_at, created.created_at,
        "creation time is kept"
    );
    assert_eq!(
        updated.description.as_deref(),
        Some("Deploys a service, carefully")
    );

    let mut backup = proc("backup", &[]);
    backup.image = Some("ghcr.io/x/backup:1".to_owned());
    api.define_proc(backup).await;
    assert_eq!(
        api.procs(None).await,
        [("backup".to_owned(), 1), ("deploy".to_owned(), 2)],
        "listed by name"
    );
    assert_eq!(
        names(&api.procs(filter(Some("CAREFULLY"), None)).await),
        ["deploy"]
    );
    assert_eq!(
        names(&api.procs(filter(None, Some("ops"))).await),
        ["deploy"]
    );

    let one = api
        .ok::<ProcByName>(proc_by_name::Variables {
            name: "deploy".to_owned(),
        })
        .await
        .proc
        .expect("deploy");
    assert_eq!(
        (one.name.as_str(), one.timeout_seconds, one.retries),
        ("deploy", Some(600), Some(1))
    );
    let none = api
        .ok::<ProcByName>(proc_by_name::Variables {
            name: "nope".to_owned(),
        })
        .await;
    assert!(none.proc.is_none());
}

async fn invalid_definitions_are_refused_naming_the_field(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    let with = |change: &dyn Fn(&mut ProcInput)| {
        let mut input = proc("ok", &["true"]);
        change(&mut input);
        input
    };
    let args = |specs: Vec<proctor_tests::api::ArgSpec>| {
        move |input: &mut ProcInput| {
            input.args = Some(specs.clone());
        }
    };
    let typed = |name: &str, kind: ArgType| {
        let mut spec = arg(name);
        spec.type_ = Some(kind);
        spec
    };
    let mut int_with_pattern = typed("N", ArgType::INT);
    int_with_pattern.pattern = Some("1".to_owned());
    let mut bad_pattern = arg("P");
    bad_pattern.pattern = Some("(".to_owned());
    let mut bad_default = typed("N", ArgType::INT);
    bad_default.default = Some("two".to_owned());
    let cases = [
        (with(&|p| p.name = "Not_A_Label".to_owned()), "input.name"),
        (with(&|p| p.name = "x".repeat(64)), "input.name"),
        (proc("nothing-to-run", &[]), "input.command"),
        (
            with(&|p| p.command = Some(vec![String::new()])),
            "input.command[0]",
        ),
        (with(&args(vec![arg("1BAD")])), "input.args[0].name"),
        (with(&args(vec![arg("A"), arg("A")])), "input.args[1].name"),
        (with(&args(vec![arg("EXECUTION_ID")])), "input.args[0].name"),
        (
            with(&args(vec![typed("E", ArgType::ENUM)])),
            "input.args[0].values",
        ),
        (with(&args(vec![int_with_pattern])), "input.args[0].pattern"),
        (with(&args(vec![bad_pattern])), "input.args[0].pattern"),
        (with(&args(vec![bad_default])), "input.args[0].default"),
        (
            with(&|p| {
                p.args = Some(vec![arg("S")]);
                p.secrets = Some(vec![secret("S")]);
            }),
            "input.args[0].name",
        ),
        (
            with(&|p| p.authorized_groups = Some(vec!["has space".to_owned()])),
            "input.authorizedGroups[0]",
        ),
        (
            with(&|p| p.timeout_seconds = Some(0)),
            "input.timeoutSeconds",
        ),
        (with(&|p| p.retries = Some(11)), "input.retries"),
    ];
    for (input, field) in cases {
        let shown = format!("{input:?}");
        let refused = api.try_define_proc(input).await.expect_err(&shown);
        assert_eq!(refused.code, "BAD_USER_INPUT", "{shown}: {refused:?}");
        assert_eq!(
            refused.field.as_deref(),
            Some(field),
            "{shown}: {refused:?}"
        );
    }
    assert!(
        api.procs(None).await.is_empty(),
        "nothing invalid was stored"
    );
}

async fn delete_is_refused_while_an_execution_runs(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(deploy()).await;
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

    let delete = || {
        api.call::<DeleteProc>(delete_proc::Variables {
            name: "deploy".to_owned(),
        })
    };
    let refused = delete().await.expect_err("it runs");
    assert_eq!(refused.code, "CONFLICT", "{refused:?}");
    assert!(refused.message.contains("1 execution"), "{refused:?}");

    let mut finished = running.clone().into_active_model();
    finished.status = Set(ExecutionStatus::Succeeded);
    finished.update(app.state.db()).await.unwrap();
    assert!(delete().await.expect("deleted").delete_proc);
    let gone = api
        .ok::<ProcByName>(proc_by_name::Variables {
            name: "deploy".to_owned(),
        })
        .await;
    assert!(gone.proc.is_none());
    let history = execution::Entity::find_by_id(running.id)
        .one(app.state.db())
        .await
        .unwrap()
        .expect("the execution history stays");
    assert_eq!(history.proc_id, None);

    let unknown = delete().await.expect_err("gone");
    assert_eq!(unknown.code, "NOT_FOUND", "{unknown:?}");
}

async fn yaml_files_round_trip_and_errors_name_the_line(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
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
    let apply = |content: &str| {
        let variables = apply_proc_file::Variables {
            content: content.to_owned(),
        };
        api.call::<ApplyProcFile>(variables)
    };
    let applied = apply(yaml).await.expect("applied").apply_proc_file;
    let shown_args: Vec<_> = applied
        .args
        .iter()
        .map(|a| (a.name.as_str(), &a.type_))
        .collect();
    assert_eq!(shown_args, [("DAY", &apply_proc_file::ArgType::ENUM)]);
    // The exported file applies again to the same definition (one more version).
    let again = apply(&applied.yaml).await.expect("applied").apply_proc_file;
    assert_eq!(again.version, 2);
    assert_eq!(again.yaml, applied.yaml);

    let typo = apply("name: x\ncommand: [true]\nauthorised_groups: [a]\n")
        .await
        .expect_err("a typo");
    assert_eq!(typo.code, "BAD_USER_INPUT");
    let field = typo.field.clone().unwrap_or_default();
    assert!(
        field.starts_with("content:3:"),
        "the line is named: {typo:?}"
    );
    assert!(typo.message.contains("authorised_groups"), "{typo:?}");

    let invalid = apply("name: Bad\ncommand: [true]\n")
        .await
        .expect_err("invalid");
    assert_eq!(
        invalid.field.as_deref(),
        Some("content: name"),
        "{invalid:?}"
    );
}

async fn dropping_a_secret_declaration_deletes_its_value(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(deploy()).await;
    let set = api
        .ok::<SetSecrets>(set_secrets::Variables {
            proc: "deploy".to_owned(),
            secrets: vec![set_secrets::SecretValueInput {
                key: "API_TOKEN".to_owned(),
                value: "v".to_owned(),
            }],
        })
        .await;
    let shown: Vec<_> = set
        .set_secrets
        .iter()
        .map(|s| (s.key.as_str(), s.is_set))
        .collect();
    assert_eq!(shown, [("API_TOKEN", true)]);
    let mut without = deploy();
    without.secrets = Some(Vec::new());
    assert!(api.define_proc(without).await.secrets.is_empty());
    let mut back = deploy();
    back.secrets = Some(vec![secret("API_TOKEN")]);
    let redeclared = api.define_proc(back).await;
    assert!(
        !redeclared.secrets[0].is_set,
        "the old value did not survive"
    );
}

async fn arguments_are_checked_by_type_and_rule(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(deploy()).await;
    let validate = |args: &[(&str, &str)]| {
        let args = args
            .iter()
            .map(|(name, value)| validate_args::ArgInput {
                name: (*name).to_owned(),
                value: (*value).to_owned(),
            })
            .collect();
        let variables = validate_args::Variables {
            proc: "deploy".to_owned(),
            args: Some(args),
        };
        api.call::<ValidateArgs>(variables)
    };
    let resolved = validate(&[("SERVICE", "api"), ("DRY_RUN", "true")])
        .await
        .expect("valid")
        .validate_args;
    let resolved: Vec<(&str, &str)> = resolved
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(
        resolved,
        [
            ("SERVICE", "api"),
            ("REGION", "eu"),
            ("REPLICAS", "2"),
            ("DRY_RUN", "true")
        ],
        "defaults filled in, declaration order"
    );
    let service = ("SERVICE", "api");
    // Arguments given, the field named and a word of the rule broken.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 6] = [
        (&[], "args.SERVICE", "is required"),
        (&[("SERVICE", "API!")], "args.SERVICE", "pattern"),
        (
            &[service, ("REGION", "asia")],
            "args.REGION",
            "one of eu, us",
        ),
        (
            &[service, ("REPLICAS", "many")],
            "args.REPLICAS",
            "whole number",
        ),
        (
            &[service, ("DRY_RUN", "yes")],
            "args.DRY_RUN",
            "true or false",
        ),
        (
            &[service, ("COLOR", "red")],
            "args.COLOR",
            "unknown argument",
        ),
    ];
    for (args, field, rule) in cases {
        let refused = validate(args).await.expect_err("refused");
        assert_eq!(refused.code, "BAD_USER_INPUT", "{refused:?}");
        assert_eq!(refused.field.as_deref(), Some(field), "{refused:?}");
        assert!(refused.message.contains(rule), "{refused:?}");
    }
}

async fn with_auth_off_everyone_is_an_administrator(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let me = app
        .api_with(&[("Email-Id", "ada@example.com")])
        .ok::<Me>(me::Variables)
        .await
        .me
        .expect("a caller");
    assert_eq!(me.email.as_deref(), Some("ada@example.com"));
    assert!(me.admin);
    assert!(me.groups.is_empty());
}

async fn concurrent_writers_never_see_a_locked_database(stack: Stack) {
    let Some(app) = TestApp::builder().stack(stack).try_spawn().await else {
        return;
    };
    let api = app.api();
    // Read-then-write transactions racing each other: on SQLite a deferred transaction would
    // fail at once with "database is locked" instead of waiting its turn.
    let writes = (0..40).map(|n| {
        let api = &api;
        async move {
            let name = format!("p{}", n % 8);
            let mut input = proc(&name, &["true"]);
            input.secrets = Some(vec![secret("K")]);
            let upserted = api.try_define_proc(input).await.map(|_| ());
            let secret = api.set_secrets(&name, &[("K", "v")]).await;
            (upserted, secret)
        }
    });
    for (upserted, secret) in futures::future::join_all(writes).await {
        upserted.expect("upserted");
        secret.expect("secret set");
    }
    // Five upserts of each proc: no update was lost.
    let versions: Vec<i64> = api.procs(None).await.into_iter().map(|(_, v)| v).collect();
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
    let admin = app.api_as(&admin);
    let echo = |word: &str| proc("echo", &["echo", word]);
    assert_eq!(admin.define_proc(echo("one")).await.version, 1);
    let run_one = admin.execute_with_version("echo").await;
    assert_eq!(run_one.1, Some(1));
    assert_eq!(admin.define_proc(echo("two")).await.version, 2);
    assert_eq!(admin.execute_with_version("echo").await.1, Some(2));

    let history = |at: i64| {
        let variables = proc_history::Variables {
            name: "echo".to_owned(),
            at,
            missing: 9,
        };
        admin.ok::<ProcHistory>(variables)
    };
    let proc = history(1).await.proc.expect("echo");
    assert_eq!(proc.version, 2);
    assert_eq!(proc.versions.len(), 2, "{proc:?}");
    assert_eq!(proc.versions[0].number, 2, "newest first");
    let words = |command: &Option<Vec<String>>| command.clone().unwrap_or_default();
    assert_eq!(words(&proc.versions[0].command), ["echo", "two"]);
    assert_eq!(proc.versions[1].number, 1);
    assert_eq!(words(&proc.versions[1].command), ["echo", "one"]);
    assert_eq!(
        proc.versions[1].changed_by.as_deref(),
        Some("root@example.com")
    );
    assert!(proc.versions[1].yaml.contains("- one"), "{proc:?}");
    let at_one = proc.definition_at.expect("version 1");
    assert_eq!(
        (at_one.number, words(&at_one.command)),
        (1, vec!["echo".into(), "one".into()])
    );
    assert!(proc.missing.is_none());

    // A rollback is a new version equal to the old one; a version never stored is NOT_FOUND.
    let rolled = rollback(&admin, 1)
        .await
        .expect("rolled back")
        .rollback_proc;
    assert_eq!(
        (rolled.version, words(&rolled.command)),
        (3, vec!["echo".into(), "one".into()])
    );
    let unknown = rollback(&admin, 7).await.expect_err("never stored");
    assert_eq!(unknown.code, "NOT_FOUND", "{unknown:?}");
    // Only administrators roll back.
    let user = app.issue_token("ann@example.com", &[], false).await;
    let refused = rollback(&app.api_as(&user), 1)
        .await
        .expect_err("not an admin");
    assert_eq!(refused.code, "FORBIDDEN", "{refused:?}");
    let recorded = admin
        .ok::<ExecutionById>(execution_by_id::Variables { id: run_one.0 })
        .await
        .execution
        .expect("the run");
    assert_eq!(recorded.proc_version, Some(1));
}

/// Rolls the proc `echo` back to `version`.
async fn rollback(
    api: &proctor_tests::api::Api,
    version: i64,
) -> Result<rollback_proc::ResponseData, proctor_tests::api::Failure> {
    let variables = rollback_proc::Variables {
        name: "echo".to_owned(),
        version,
    };
    api.call::<RollbackProc>(variables).await
}

async fn a_procs_slack_url_is_never_shown_and_stars_keep_it(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    const SECRET_URL: &str = "https://hooks.slack.example/services/T0/B0/s3cr3t-path";
    let notifications = |slack: &str| NotificationsInput {
        emails: Some(vec!["a@example.com".to_owned()]),
        slack_webhook_url: Some(slack.to_owned()),
        webhook_url: None,
        on: Some(vec!["failed".to_owned()]),
    };
    let mut noisy = proc("noisy", &["true"]);
    noisy.notifications = Some(notifications(SECRET_URL));
    let created = api.define_proc(noisy).await;
    let shown = created.notifications.clone().expect("notifications");
    assert!(shown.slack);
    assert_eq!(shown.emails, ["a@example.com"]);
    assert_eq!(shown.on, [ExecutionStatus::Failed]);
    let yaml = created.yaml.clone();
    assert!(
        yaml.contains("slackWebhookUrl: '***'") || yaml.contains("slackWebhookUrl: \"***\""),
        "{yaml}"
    );
    // Applied again as shown, the stored URL stays; nothing shows it.
    let reapplied = api
        .ok::<ApplyProcFile>(apply_proc_file::Variables { content: yaml })
        .await
        .apply_proc_file;
    assert_eq!(reapplied.version, 2);
    assert!(reapplied.notifications.expect("notifications").slack);
    let everything = api
        .ok::<ProcHistory>(proc_history::Variables {
            name: "noisy".to_owned(),
            at: 1,
            missing: 9,
        })
        .await
        .proc
        .expect("noisy");
    assert!(
        !format!("{everything:?}").contains("s3cr3t"),
        "{everything:?}"
    );
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
    let mut fresh = proc("fresh", &["true"]);
    fresh.notifications = Some(notifications("***"));
    let refused = api
        .try_define_proc(fresh)
        .await
        .expect_err("nothing to keep");
    assert_eq!(refused.code, "BAD_USER_INPUT", "{refused:?}");
    assert!(
        refused
            .field
            .as_deref()
            .is_some_and(|field| field.contains("notifications.slackWebhookUrl")),
        "{refused:?}"
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
