//! Schedules: the GraphQL API, firing by an injected clock (time zones, DST, catch-up, overlap),
//! firing by the real clock (on time, pause, delete, two replicas, a killed replica), and the
//! notifications of finished runs (SMTP, Slack, signed webhook).

use std::time::Duration;

use chrono::{DateTime, Utc};
use proctor_entity::schedule;
use proctor_schema::schedules::firing::fire_due;
use proctor_tests::infra::{postgres_url, redis_url, unique_suffix};
use proctor_tests::sinks::{HttpSink, SmtpSink};
use proctor_tests::{Proctord, Stack, TestApp, TestDatabase, proctord_command};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

const UPSERT: &str = "mutation($i: ProcInput!) { upsertProc(input: $i) { name } }";
const CREATE: &str = "mutation($i: ScheduleInput!) { createSchedule(input: $i) {
    id procName cron timezone enabled nextFireAt overlapPolicy catchUpPolicy } }";
const RUNS: &str =
    "query($id: ID!) { schedule(id: $id) { nextFireAt runs(first: 100) { edges { node {
    slot firedAt outcome detail
    execution { id status trigger scheduleId user }
    notifications { channel delivered error } } } } } }";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

/// A server whose scheduler loop is off: the test moves time by calling `fire_due` itself.
async fn clocked(stack: Stack) -> Option<TestApp> {
    TestApp::builder()
        .stack(stack)
        .with_args(&["--scheduler-enabled=false"])
        .try_spawn()
        .await
}

/// A server with its scheduler loop running on the real clock.
async fn live(stack: Stack) -> Option<TestApp> {
    TestApp::builder().stack(stack).try_spawn().await
}

async fn data(app: &TestApp, query: &str, variables: Value) -> Value {
    let response = app.graphql(query, variables).await;
    assert_eq!(response["errors"], Value::Null, "{response}");
    response["data"].clone()
}

async fn define(app: &TestApp, name: &str, script: &str) {
    data(
        app,
        UPSERT,
        json!({ "i": { "name": name, "command": ["sh", "-c", script],
            "args": [{ "name": "REGION", "required": false, "default": "eu" }] } }),
    )
    .await;
}

async fn create(app: &TestApp, input: Value) -> String {
    let created = data(app, CREATE, json!({ "i": input })).await;
    created["createSchedule"]["id"].as_str().unwrap().to_owned()
}

/// Makes `at` the schedule's first unhandled slot, as if its scheduler last ran just before.
async fn position(app: &TestApp, id: &str, at: DateTime<Utc>) {
    let id: i64 = id.parse().unwrap();
    schedule::Entity::update_many()
        .col_expr(schedule::Column::NextFireAt, Expr::value(at))
        .filter(schedule::Column::Id.eq(id))
        .exec(app.state.db())
        .await
        .expect("position the schedule");
}

async fn tick(app: &TestApp, at: DateTime<Utc>) {
    fire_due(&app.state, at).await.expect("a scheduler tick");
}

/// The schedule's runs, oldest first, and its next fire time.
async fn runs(app: &TestApp, id: &str) -> (Vec<Value>, Value) {
    let found = data(app, RUNS, json!({ "id": id })).await;
    let mut runs: Vec<Value> = found["schedule"]["runs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect();
    runs.reverse();
    (runs, found["schedule"]["nextFireAt"].clone())
}

fn slots(runs: &[Value]) -> Vec<DateTime<Utc>> {
    runs.iter()
        .map(|run| utc(run["slot"].as_str().unwrap()))
        .collect()
}

async fn status(app: &TestApp, execution: &str) -> String {
    let found = data(
        app,
        "query($id: ID!) { execution(id: $id) { status } }",
        json!({ "id": execution }),
    )
    .await;
    found["execution"]["status"].as_str().unwrap().to_owned()
}

async fn wait_for_status(app: &TestApp, execution: &str, wanted: &str) {
    for _ in 0..300 {
        if status(app, execution).await == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "execution {execution} is {} instead of {wanted}",
        status(app, execution).await
    );
}

async fn error_of(app: &TestApp, query: &str, variables: Value) -> (String, Value) {
    let response = app.graphql(query, variables).await;
    let error = &response["errors"][0];
    assert!(!error.is_null(), "an error was expected: {response}");
    (
        error["message"].as_str().unwrap().to_owned(),
        error["extensions"].clone(),
    )
}

// ---------------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------------

async fn schedules_are_validated_field_by_field(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app, "report", "true").await;
    let cases = [
        (json!({ "proc": "report", "cron": "* * *" }), "input.cron"),
        (
            json!({ "proc": "report", "cron": "61 * * * *" }),
            "input.cron",
        ),
        (
            json!({ "proc": "report", "cron": "0 0 30 2 *" }),
            "input.cron",
        ),
        (
            json!({ "proc": "report", "cron": "@daily", "timezone": "Mars/Olympus" }),
            "input.timezone",
        ),
        (
            json!({ "proc": "report", "cron": "@daily", "args": [{ "name": "NOPE", "value": "1" }] }),
            "input.args.NOPE",
        ),
        (
            json!({ "proc": "report", "cron": "@daily", "notificationEmails": ["ops@example.com", "ops"] }),
            "input.notificationEmails[1]",
        ),
        (
            json!({ "proc": "report", "cron": "@daily", "webhookUrl": "file:///etc/passwd" }),
            "input.webhookUrl",
        ),
        (
            json!({ "proc": "report", "cron": "@daily", "tags": [""] }),
            "input.tags[0]",
        ),
    ];
    for (input, field) in cases {
        let (message, extensions) = error_of(&app, CREATE, json!({ "i": input })).await;
        assert_eq!(extensions["code"], "BAD_USER_INPUT", "{input}: {message}");
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{input}: {message}"
        );
    }
    let (message, extensions) = error_of(
        &app,
        CREATE,
        json!({ "i": { "proc": "ghost", "cron": "@daily" } }),
    )
    .await;
    assert_eq!(extensions["code"], "NOT_FOUND", "{message}");
    let count = data(&app, "{ schedules { edges { node { id } } } }", json!({})).await;
    assert_eq!(count["schedules"]["edges"], json!([]), "nothing was stored");
}

async fn schedules_are_created_listed_edited_and_deleted(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app, "report", "true").await;
    let secret_hook = "https://hooks.slack.example/services/T0/B0/very-secret";
    let created = data(
        &app,
        "mutation($i: ScheduleInput!) { createSchedule(input: $i) {
            id procName args { name value } cron timezone tags group notificationEmails enabled
            overlapPolicy catchUpPolicy slackWebhookConfigured nextFireAt createdBy
            nextFireTimes(count: 3) } }",
        json!({ "i": {
            "proc": "report", "cron": "0 30 9 * * 1-5", "timezone": "Europe/Berlin",
            "args": [{ "name": "REGION", "value": "us" }], "tags": ["nightly", "finance"],
            "group": "ops", "notificationEmails": ["Ops@Example.com"],
            "overlapPolicy": "FORBID", "catchUpPolicy": "LAST", "slackWebhookUrl": secret_hook,
        } }),
    )
    .await["createSchedule"]
        .clone();
    assert!(!created.to_string().contains("very-secret"), "{created}");
    assert_eq!(created["procName"], "report");
    assert_eq!(
        created["args"],
        json!([{ "name": "REGION", "value": "us" }])
    );
    assert_eq!(created["notificationEmails"], json!(["ops@example.com"]));
    assert_eq!(created["overlapPolicy"], "FORBID");
    assert_eq!(created["catchUpPolicy"], "LAST");
    assert_eq!(created["slackWebhookConfigured"], true);
    assert_eq!(created["enabled"], true);
    let times: Vec<DateTime<Utc>> = created["nextFireTimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| utc(t.as_str().unwrap()))
        .collect();
    assert_eq!(times.len(), 3);
    assert_eq!(utc(created["nextFireAt"].as_str().unwrap()), times[0]);
    for time in &times {
        let local = time.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(local.format("%H:%M:%S").to_string(), "09:30:00", "{time}");
    }
    let id = created["id"].as_str().unwrap().to_owned();

    // Left-out fields keep their values; given ones replace them.
    let updated = data(
        &app,
        "mutation($id: ID!, $i: ScheduleInput!) { updateSchedule(id: $id, input: $i) {
            cron timezone tags group args { value } overlapPolicy slackWebhookConfigured } }",
        json!({ "id": id, "i": { "proc": "report", "cron": "@hourly", "tags": [] } }),
    )
    .await["updateSchedule"]
        .clone();
    assert_eq!(updated["cron"], "@hourly");
    assert_eq!(updated["timezone"], "Europe/Berlin");
    assert_eq!(updated["tags"], json!([]));
    assert_eq!(updated["group"], "ops");
    assert_eq!(updated["args"], json!([{ "value": "us" }]));
    assert_eq!(updated["overlapPolicy"], "FORBID");
    assert_eq!(updated["slackWebhookConfigured"], true);

    let other = create(
        &app,
        json!({ "proc": "report", "cron": "@daily", "tags": ["nightly"] }),
    )
    .await;
    let paused = data(
        &app,
        "mutation($id: ID!) { setScheduleEnabled(id: $id, enabled: false) { enabled nextFireAt } }",
        json!({ "id": other }),
    )
    .await;
    assert_eq!(
        paused["setScheduleEnabled"],
        json!({ "enabled": false, "nextFireAt": null })
    );
    let listed = |filter: Value| {
        let app = &app;
        async move {
            data(
                app,
                "query($f: ScheduleFilter) { schedules(filter: $f) { edges { node { id } } } }",
                json!({ "f": filter }),
            )
            .await["schedules"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(
        listed(json!({})).await,
        [other.as_str(), id.as_str()],
        "newest first"
    );
    assert_eq!(listed(json!({ "tag": "nightly" })).await, [other.as_str()]);
    assert_eq!(listed(json!({ "enabled": true })).await, [id.as_str()]);
    assert_eq!(listed(json!({ "group": "ops" })).await, [id.as_str()]);
    assert_eq!(
        listed(json!({ "proc": "ghost" })).await,
        Vec::<String>::new()
    );

    let preview = data(
        &app,
        "{ cronPreview(cron: \"*/15 * * * * *\", count: 4) }",
        json!({}),
    )
    .await;
    let preview: Vec<DateTime<Utc>> = preview["cronPreview"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| utc(t.as_str().unwrap()))
        .collect();
    assert_eq!(preview.len(), 4);
    assert!(
        preview
            .windows(2)
            .all(|w| (w[1] - w[0]).num_seconds() == 15)
    );

    let deleted = data(
        &app,
        "mutation($id: ID!) { deleteSchedule(id: $id) }",
        json!({ "id": other }),
    )
    .await;
    assert_eq!(deleted["deleteSchedule"], true);
    let gone = data(
        &app,
        "query($id: ID!) { schedule(id: $id) { id } }",
        json!({ "id": other }),
    )
    .await;
    assert_eq!(gone["schedule"], Value::Null);
    let (_, extensions) = error_of(
        &app,
        "mutation($id: ID!) { deleteSchedule(id: $id) }",
        json!({ "id": other }),
    )
    .await;
    assert_eq!(extensions["code"], "NOT_FOUND");
}

async fn only_those_who_may_run_the_proc_may_schedule_it(stack: Stack) {
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&["--auth-enabled", "--scheduler-enabled=false"])
        .try_spawn()
        .await
    else {
        return;
    };
    let admin = app.issue_token("admin@example.com", &[], true).await;
    let ops = app.issue_token("ops@example.com", &["ops"], false).await;
    let guest = app
        .issue_token("guest@example.com", &["guests"], false)
        .await;
    let upsert = app
        .graphql_as(
            &admin,
            UPSERT,
            json!({ "i": { "name": "payroll", "command": ["true"], "authorizedGroups": ["ops"] } }),
        )
        .await;
    assert_eq!(upsert["errors"], Value::Null, "{upsert}");
    let input = json!({ "i": { "proc": "payroll", "cron": "@daily" } });
    let refused = app.graphql_as(&guest, CREATE, input.clone()).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let made = app.graphql_as(&ops, CREATE, input).await;
    assert_eq!(made["errors"], Value::Null, "{made}");
    let id = made["data"]["createSchedule"]["id"].as_str().unwrap();
    let listed = app
        .graphql_as(&guest, "{ schedules { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(listed["data"]["schedules"]["edges"], json!([]), "{listed}");
    for mutation in [
        "mutation($id: ID!) { setScheduleEnabled(id: $id, enabled: false) { id } }",
        "mutation($id: ID!) { deleteSchedule(id: $id) }",
        "mutation($id: ID!) { triggerSchedule(id: $id) { id } }",
    ] {
        let refused = app.graphql_as(&guest, mutation, json!({ "id": id })).await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{refused}"
        );
    }
    let triggered = app
        .graphql_as(
            &ops,
            "mutation($id: ID!) { triggerSchedule(id: $id) { trigger scheduleId user } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        triggered["data"]["triggerSchedule"],
        json!({ "trigger": "SCHEDULE", "scheduleId": id, "user": "ops@example.com" }),
        "{triggered}"
    );
    let audit = app
        .graphql_as(
            &admin,
            "{ auditEvents(first: 20) { edges { node { actor action } } } }",
            json!({}),
        )
        .await;
    let actions: Vec<String> = audit["data"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            format!(
                "{} {}",
                edge["node"]["actor"].as_str().unwrap_or("-"),
                edge["node"]["action"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        actions.contains(&"ops@example.com schedule.create".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"ops@example.com schedule.trigger".to_owned()),
        "{actions:?}"
    );
}

on_both_stacks!(
    schedules_are_validated_field_by_field,
    schedules_are_created_listed_edited_and_deleted,
    only_those_who_may_run_the_proc_may_schedule_it,
);

// ---------------------------------------------------------------------------------------------
// Firing by an injected clock
// ---------------------------------------------------------------------------------------------

async fn cron_with_seconds_fires_in_its_time_zone(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app, "report", "true").await;
    // 09:15:30 in Kolkata (UTC+05:30) is 03:45:30 UTC.
    let id = create(
        &app,
        json!({ "proc": "report", "cron": "30 15 9 * * *", "timezone": "Asia/Kolkata" }),
    )
    .await;
    position(&app, &id, utc("2026-06-01T03:45:30Z")).await;

    tick(&app, utc("2026-06-01T03:45:29.900Z")).await;
    assert!(runs(&app, &id).await.0.is_empty(), "not before its second");
    tick(&app, utc("2026-06-01T03:45:30.004Z")).await;
    tick(&app, utc("2026-06-01T03:45:30.200Z")).await;
    let (fired, next) = runs(&app, &id).await;
    assert_eq!(slots(&fired), [utc("2026-06-01T03:45:30Z")], "once");
    assert_eq!(fired[0]["outcome"], "STARTED");
    assert_eq!(fired[0]["execution"]["trigger"], "SCHEDULE");
    assert_eq!(fired[0]["execution"]["scheduleId"], id.as_str());
    assert_eq!(
        utc(fired[0]["firedAt"].as_str().unwrap()),
        utc("2026-06-01T03:45:30.004Z")
    );
    assert_eq!(utc(next.as_str().unwrap()), utc("2026-06-02T03:45:30Z"));

    // Every 20 seconds, in a zone with a non-hour offset: seconds are the zone's too.
    let every_20s = create(
        &app,
        json!({ "proc": "report", "cron": "*/20 * * * * *", "timezone": "Asia/Kathmandu" }),
    )
    .await;
    position(&app, &every_20s, utc("2026-06-01T10:00:00Z")).await;
    for at in [
        "2026-06-01T10:00:00Z",
        "2026-06-01T10:00:20Z",
        "2026-06-01T10:00:40Z",
    ] {
        tick(&app, utc(at)).await;
    }
    let (fired, next) = runs(&app, &every_20s).await;
    assert_eq!(
        slots(&fired),
        [
            utc("2026-06-01T10:00:00Z"),
            utc("2026-06-01T10:00:20Z"),
            utc("2026-06-01T10:00:40Z")
        ]
    );
    assert_eq!(utc(next.as_str().unwrap()), utc("2026-06-01T10:01:00Z"));
}

async fn a_local_time_skipped_by_dst_does_not_fire_and_a_repeated_one_fires_once(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app, "report", "true").await;
    let id = create(
        &app,
        json!({ "proc": "report", "cron": "0 30 2 * * *", "timezone": "Europe/Berlin" }),
    )
    .await;
    // Spring, 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist.
    position(&app, &id, utc("2026-03-28T01:30:00Z")).await; // 02:30 CET on the 28th
    for at in [
        "2026-03-28T01:30:00Z",
        "2026-03-29T00:30:00Z", // would be 02:30 CET, a time that day does not have
        "2026-03-29T01:30:00Z", // would be 02:30 CEST, likewise
        "2026-03-30T00:30:00Z", // 02:30 CEST on the 30th
    ] {
        tick(&app, utc(at)).await;
    }
    let (fired, _) = runs(&app, &id).await;
    assert_eq!(
        slots(&fired),
        [utc("2026-03-28T01:30:00Z"), utc("2026-03-30T00:30:00Z")],
        "the 29th is skipped"
    );

    // Autumn, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let autumn = create(
        &app,
        json!({ "proc": "report", "cron": "0 30 2 * * *", "timezone": "Europe/Berlin" }),
    )
    .await;
    position(&app, &autumn, utc("2026-10-24T00:30:00Z")).await; // 02:30 CEST on the 24th
    for at in [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z", // 02:30 CEST, the first 02:30
        "2026-10-25T01:30:00Z", // 02:30 CET, the repeat
        "2026-10-26T01:30:00Z", // 02:30 CET on the 26th
    ] {
        tick(&app, utc(at)).await;
    }
    let (fired, _) = runs(&app, &autumn).await;
    assert_eq!(
        slots(&fired),
        [
            utc("2026-10-24T00:30:00Z"),
            utc("2026-10-25T00:30:00Z"),
            utc("2026-10-26T01:30:00Z")
        ],
        "the repeated 02:30 fires once"
    );
}

async fn catch_up_after_an_hour_of_downtime_follows_the_policy(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app, "report", "true").await;
    let start = utc("2026-06-01T10:00:00Z");
    let mut ids = Vec::new();
    for policy in ["SKIP", "LAST", "ALL"] {
        let id = create(
            &app,
            json!({ "proc": "report", "cron": "0 * * * * *", "catchUpPolicy": policy }),
        )
        .await;
        position(&app, &id, start).await;
        ids.push(id);
    }
    tick(&app, start).await;
    // Down from 10:00:01 to 11:00:45: 10:01 .. 11:00 were missed (11:00 is 45 s late).
    tick(&app, utc("2026-06-01T11:00:45Z")).await;

    let (skip, next) = runs(&app, &ids[0]).await;
    assert_eq!(slots(&skip), [start], "SKIP fires nothing missed");
    assert_eq!(utc(next.as_str().unwrap()), utc("2026-06-01T11:01:00Z"));
    let (last, next) = runs(&app, &ids[1]).await;
    assert_eq!(
        slots(&last),
        [start, utc("2026-06-01T11:00:00Z")],
        "LAST fires the newest"
    );
    assert_eq!(utc(next.as_str().unwrap()), utc("2026-06-01T11:01:00Z"));
    let (all, next) = runs(&app, &ids[2]).await;
    let expected: Vec<DateTime<Utc>> = (0..=60)
        .map(|minute| start + chrono::Duration::minutes(minute))
        .collect();
    assert_eq!(slots(&all), expected, "ALL fires every missed slot once");
    assert!(all.iter().all(|run| run["outcome"] == "STARTED"));
    assert_eq!(utc(next.as_str().unwrap()), utc("2026-06-01T11:01:00Z"));

    // Back to normal: the next slot fires on time for all three.
    tick(&app, utc("2026-06-01T11:01:00Z")).await;
    for id in &ids {
        let (fired, _) = runs(&app, id).await;
        assert_eq!(slots(&fired).last(), Some(&utc("2026-06-01T11:01:00Z")));
    }

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Fired: 3 at 10:00, LAST 1 and ALL 60 after the downtime (all late), 3 at 11:01.
    // SKIP dropped 60 missed slots, LAST 59.
    for expected in [
        r#"proctor_schedule_skips_total{reason="missed"} 119"#,
        "proctor_schedule_catch_ups_total 61",
        "proctor_schedule_fires_total 67",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
}

async fn forbid_skips_while_the_previous_run_is_unfinished(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app, "slow", "sleep 30").await;
    let id = create(
        &app,
        json!({ "proc": "slow", "cron": "0 * * * * *", "overlapPolicy": "FORBID" }),
    )
    .await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    tick(&app, start).await;
    let (fired, _) = runs(&app, &id).await;
    let first = fired[0]["execution"]["id"].as_str().unwrap().to_owned();
    wait_for_status(&app, &first, "RUNNING").await;

    tick(&app, utc("2026-06-01T10:01:00Z")).await;
    let (fired, _) = runs(&app, &id).await;
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[1]["outcome"], "SKIPPED_OVERLAP");
    assert_eq!(fired[1]["execution"], Value::Null);
    let detail = fired[1]["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("execution {first}")), "{detail}");
    assert_eq!(status(&app, &first).await, "RUNNING", "left alone");

    data(
        &app,
        "mutation($id: ID!) { cancelExecution(id: $id) { status } }",
        json!({ "id": first }),
    )
    .await;
    tick(&app, utc("2026-06-01T10:02:00Z")).await;
    let (fired, _) = runs(&app, &id).await;
    let outcomes: Vec<&str> = fired
        .iter()
        .map(|run| run["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["STARTED", "SKIPPED_OVERLAP", "STARTED"]);
    let third = fired[2]["execution"]["id"].as_str().unwrap().to_owned();
    data(
        &app,
        "mutation($id: ID!) { cancelExecution(id: $id) { status } }",
        json!({ "id": third }),
    )
    .await;
}

async fn replace_cancels_the_unfinished_run_and_starts_anew(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app, "slow", "sleep 30").await;
    let id = create(
        &app,
        json!({ "proc": "slow", "cron": "0 * * * * *", "overlapPolicy": "REPLACE" }),
    )
    .await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    tick(&app, start).await;
    let (fired, _) = runs(&app, &id).await;
    let first = fired[0]["execution"]["id"].as_str().unwrap().to_owned();
    wait_for_status(&app, &first, "RUNNING").await;

    tick(&app, utc("2026-06-01T10:01:00Z")).await;
    let (fired, _) = runs(&app, &id).await;
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[1]["outcome"], "STARTED");
    let second = fired[1]["execution"]["id"].as_str().unwrap().to_owned();
    wait_for_status(&app, &first, "CANCELLED").await;
    wait_for_status(&app, &second, "RUNNING").await;
    data(
        &app,
        "mutation($id: ID!) { cancelExecution(id: $id) { status } }",
        json!({ "id": second }),
    )
    .await;
}

async fn a_slot_fires_once_however_often_the_scheduler_looks(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app, "report", "true").await;
    let id = create(&app, json!({ "proc": "report", "cron": "* * * * * *" })).await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    // Many concurrent ticks at the same instants, as from several replicas.
    for second in 0..5 {
        let at = start + chrono::Duration::seconds(second);
        let ticks = (0..4).map(|_| fire_due(&app.state, at));
        for result in futures::future::join_all(ticks).await {
            result.expect("a tick");
        }
    }
    let (fired, _) = runs(&app, &id).await;
    assert_eq!(
        slots(&fired),
        (0..5)
            .map(|second| start + chrono::Duration::seconds(second))
            .collect::<Vec<_>>()
    );
    let executions = data(
        &app,
        "{ executions(first: 100, filter: { trigger: SCHEDULE }) { edges { node { id } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        executions["executions"]["edges"].as_array().unwrap().len(),
        5
    );
}

async fn a_run_that_cannot_start_is_recorded_and_reported(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    data(
        &app,
        UPSERT,
        json!({ "i": { "name": "needs-token", "command": ["true"], "secrets": [{ "name": "TOKEN" }] } }),
    )
    .await;
    let id = create(
        &app,
        json!({ "proc": "needs-token", "cron": "0 * * * * *" }),
    )
    .await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    tick(&app, start).await;
    let (fired, _) = runs(&app, &id).await;
    assert_eq!(fired[0]["outcome"], "NOT_STARTED");
    assert!(
        fired[0]["detail"].as_str().unwrap().contains("TOKEN"),
        "{}",
        fired[0]
    );
    assert_eq!(fired[0]["execution"]["status"], "CREATION_FAILED");
    assert_eq!(fired[0]["execution"]["trigger"], "SCHEDULE");
}

async fn a_schedule_whose_stored_timing_broke_stops_instead_of_failing_every_tick(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app, "report", "true").await;
    let id = create(&app, json!({ "proc": "report", "cron": "0 * * * * *" })).await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    // As if a later zone database no longer knew the zone.
    schedule::Entity::update_many()
        .col_expr(schedule::Column::Timezone, Expr::value("Atlantis/Capital"))
        .filter(schedule::Column::Id.eq(id.parse::<i64>().unwrap()))
        .exec(app.state.db())
        .await
        .unwrap();
    tick(&app, start).await;
    let (fired, next) = runs(&app, &id).await;
    assert!(fired.is_empty());
    assert_eq!(next, Value::Null, "stopped until edited");
    let due = proctor_schema::schedules::firing::next_due(&app.state)
        .await
        .unwrap();
    assert_eq!(due, None, "nothing left due for the loop to spin on");
}

on_both_stacks!(
    a_schedule_whose_stored_timing_broke_stops_instead_of_failing_every_tick,
    cron_with_seconds_fires_in_its_time_zone,
    a_local_time_skipped_by_dst_does_not_fire_and_a_repeated_one_fires_once,
    catch_up_after_an_hour_of_downtime_follows_the_policy,
    forbid_skips_while_the_previous_run_is_unfinished,
    replace_cancels_the_unfinished_run_and_starts_anew,
    a_slot_fires_once_however_often_the_scheduler_looks,
    a_run_that_cannot_start_is_recorded_and_reported,
);

// ---------------------------------------------------------------------------------------------
// Firing by the real clock
// ---------------------------------------------------------------------------------------------

/// Asserts the slots are consecutive seconds (none missed, none twice).
fn assert_consecutive_seconds(slots: &[DateTime<Utc>]) {
    for pair in slots.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            1000,
            "a missed or repeated slot between {} and {}",
            pair[0],
            pair[1]
        );
    }
}

async fn an_every_second_schedule_fires_on_time_and_pausing_stops_it(stack: Stack) {
    let Some(app) = live(stack).await else { return };
    define(&app, "tick", "true").await;
    let id = create(&app, json!({ "proc": "tick", "cron": "* * * * * *" })).await;
    tokio::time::sleep(Duration::from_millis(5_200)).await;

    let paused_at = Utc::now();
    data(
        &app,
        "mutation($id: ID!) { setScheduleEnabled(id: $id, enabled: false) { enabled } }",
        json!({ "id": id }),
    )
    .await;
    let (fired, _) = runs(&app, &id).await;
    assert!(fired.len() >= 5, "{} runs in 5.2 s", fired.len());
    assert_consecutive_seconds(&slots(&fired));
    let lateness: Vec<i64> = fired
        .iter()
        .map(|run| {
            (utc(run["firedAt"].as_str().unwrap()) - utc(run["slot"].as_str().unwrap()))
                .num_milliseconds()
        })
        .collect();
    eprintln!(
        "lateness of {} real-clock slots (ms): {lateness:?}",
        fired.len()
    );
    assert!(
        fired
            .iter()
            .all(|run| run["outcome"] == "STARTED" && run["execution"]["id"].is_string())
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after_pause, _) = runs(&app, &id).await;
    let last = *slots(&after_pause).last().unwrap();
    assert!(
        last <= paused_at + chrono::Duration::seconds(1),
        "slot {last} fired after the pause at {paused_at}"
    );
}

async fn deleting_a_schedule_stops_it(stack: Stack) {
    let Some(app) = live(stack).await else { return };
    define(&app, "tick", "true").await;
    let id = create(&app, json!({ "proc": "tick", "cron": "* * * * * *" })).await;
    let scheduled = || {
        let app = &app;
        async move {
            data(
                app,
                "{ executions(first: 100, filter: { proc: \"tick\", trigger: SCHEDULE }) {
                    edges { node { createdAt } } } }",
                json!({}),
            )
            .await["executions"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|edge| utc(edge["node"]["createdAt"].as_str().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    for _ in 0..100 {
        if scheduled().await.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deleted_at = Utc::now();
    data(
        &app,
        "mutation($id: ID!) { deleteSchedule(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let created = scheduled().await;
    assert!(created.len() >= 2, "it ran before: {created:?}");
    assert!(
        created
            .iter()
            .all(|at| *at <= deleted_at + chrono::Duration::seconds(1)),
        "an execution started after the deletion at {deleted_at}: {created:?}"
    );
}

on_both_stacks!(
    an_every_second_schedule_fires_on_time_and_pausing_stops_it,
    deleting_a_schedule_stops_it,
);

// ---------------------------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------------------------

/// A server whose mail goes to `sink` as `proctor@example.com` (plain SMTP with AUTH).
async fn notifying(stack: Stack, smtp: &SmtpSink, webhook_secret: &str) -> Option<TestApp> {
    TestApp::builder()
        .stack(stack)
        .with_args(&[
            "--scheduler-enabled=false".to_owned(),
            "--mail-server-host=127.0.0.1".to_owned(),
            format!("--mail-server-port={}", smtp.port()),
            "--mail-tls=none".to_owned(),
            "--mail-username=proctor".to_owned(),
            "--mail-password=smtp-password".to_owned(),
            "--mail-from=Proctor <proctor@example.com>".to_owned(),
            format!("--notify-webhook-secret={webhook_secret}"),
        ])
        .try_spawn()
        .await
}

/// Waits until the run of `execution` records its notifications.
async fn recorded_notifications(app: &TestApp, schedule: &str) -> Vec<Value> {
    for _ in 0..200 {
        let (fired, _) = runs(app, schedule).await;
        let records = fired[0]["notifications"].as_array().unwrap().clone();
        if !records.is_empty() {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no notification outcome was recorded");
}

async fn a_finished_scheduled_run_is_mailed_posted_and_signed(stack: Stack) {
    let mut smtp = SmtpSink::start().await;
    let mut hooks = HttpSink::start().await;
    let Some(app) = notifying(stack, &smtp, "hook-secret").await else {
        return;
    };
    define(&app, "nightly", "echo working; exit 3").await;
    let id = create(
        &app,
        json!({
            "proc": "nightly", "cron": "0 * * * * *",
            "args": [{ "name": "REGION", "value": "us" }],
            "notificationEmails": ["ops@example.com", "lead@example.com"],
            "slackWebhookUrl": hooks.url("/slack/T0/B0/slack-secret"),
            "webhookUrl": hooks.url("/proctor-events"),
        }),
    )
    .await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    tick(&app, start).await;
    let (fired, _) = runs(&app, &id).await;
    let execution = fired[0]["execution"]["id"].as_str().unwrap().to_owned();

    let mail = smtp.next_mail(Duration::from_secs(20)).await;
    assert_eq!(mail.from, "proctor@example.com");
    assert_eq!(mail.to, ["ops@example.com", "lead@example.com"]);
    assert_eq!(
        mail.login,
        Some(("proctor".to_owned(), "smtp-password".to_owned()))
    );
    assert!(
        mail.data
            .contains("Subject: nightly | scheduled execution FAILED"),
        "{}",
        mail.data
    );
    for expected in [
        "Status:\tFAILED",
        &format!("ID:\t{execution}"),
        "Args:\tREGION=\"us\"",
        "Exit code:\t3",
        "Duration:\t",
    ] {
        assert!(
            mail.data.contains(expected),
            "missing {expected:?} in\n{}",
            mail.data
        );
    }

    let mut slack = None;
    let mut webhook = None;
    for _ in 0..2 {
        let request = hooks.next_request(Duration::from_secs(20)).await;
        if request.path.starts_with("/slack/") {
            slack = Some(request);
        } else {
            webhook = Some(request);
        }
    }
    let slack = slack.expect("Slack was told");
    assert_eq!(slack.path, "/slack/T0/B0/slack-secret");
    let text = slack.json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("nightly finished FAILED"), "{text}");
    assert!(text.contains(&format!("execution {execution}")), "{text}");

    let webhook = webhook.expect("the webhook was called");
    assert_eq!(webhook.path, "/proctor-events");
    let body = webhook.json();
    assert_eq!(body["event"], "execution.finished");
    assert_eq!(body["execution"]["id"], execution.as_str());
    assert_eq!(body["execution"]["status"], "FAILED");
    assert_eq!(body["execution"]["exitCode"], 3);
    let timestamp = webhook.headers["x-proctor-timestamp"].to_str().unwrap();
    let signature = webhook.headers["x-proctor-signature"].to_str().unwrap();
    assert_eq!(
        signature,
        proctor_server::notifiers::signature(
            "hook-secret",
            timestamp.parse().unwrap(),
            &webhook.body
        )
    );
    assert_ne!(
        signature,
        proctor_server::notifiers::signature(
            "other-secret",
            timestamp.parse().unwrap(),
            &webhook.body
        ),
        "the signature depends on the secret"
    );

    let mut records = recorded_notifications(&app, &id).await;
    records.sort_by_key(|record| record["channel"].as_str().unwrap().to_owned());
    assert_eq!(
        records,
        [
            json!({ "channel": "email", "delivered": true, "error": null }),
            json!({ "channel": "slack", "delivered": true, "error": null }),
            json!({ "channel": "webhook", "delivered": true, "error": null }),
        ]
    );
}

async fn a_failed_notification_is_recorded_and_never_fails_the_run(stack: Stack) {
    let smtp = SmtpSink::start().await;
    let mut hooks = HttpSink::start().await;
    let Some(app) = notifying(stack, &smtp, "hook-secret").await else {
        return;
    };
    define(&app, "nightly", "echo fine").await;
    // Nothing listens on the Slack URL's port; the webhook answers 500.
    let unreachable = format!(
        "http://127.0.0.1:{}/services/T0/B0/slack-secret",
        proctor_tests::free_port()
    );
    let id = create(
        &app,
        json!({ "proc": "nightly", "cron": "0 * * * * *",
            "slackWebhookUrl": unreachable, "webhookUrl": hooks.url("/status/500") }),
    )
    .await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    tick(&app, start).await;
    hooks.next_request(Duration::from_secs(20)).await;
    let mut records = recorded_notifications(&app, &id).await;
    records.sort_by_key(|record| record["channel"].as_str().unwrap().to_owned());
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["channel"], "slack");
    assert_eq!(records[0]["delivered"], false);
    let slack_error = records[0]["error"].as_str().unwrap();
    assert!(
        slack_error.starts_with("cannot reach Slack"),
        "{slack_error}"
    );
    assert!(
        !slack_error.contains("slack-secret"),
        "the URL is a credential: {slack_error}"
    );
    assert_eq!(
        records[1],
        json!({ "channel": "webhook", "delivered": false, "error": "the webhook answered 500 Internal Server Error" })
    );
    let (fired, _) = runs(&app, &id).await;
    assert_eq!(fired[0]["execution"]["status"], "SUCCEEDED");
}

on_both_stacks!(
    a_finished_scheduled_run_is_mailed_posted_and_signed,
    a_failed_notification_is_recorded_and_never_fails_the_run,
);

// ---------------------------------------------------------------------------------------------
// Several replicas (the real binary, one Postgres, one Redis)
// ---------------------------------------------------------------------------------------------

/// Postgres and Redis shared by replicas, or `None` (outside CI) when not configured.
async fn shared_storage() -> Option<(TestDatabase, String, String)> {
    let (Some(admin), Some(redis)) = (postgres_url(), redis_url()) else {
        return None;
    };
    let database = TestDatabase::postgres(&admin).await;
    Some((database, redis, format!("proctor_test_{}", unique_suffix())))
}

async fn start_replica(
    database: &TestDatabase,
    redis: &str,
    prefix: &str,
    id: &str,
    workdir: &std::path::Path,
) -> Proctord {
    let mut command = proctord_command(workdir);
    command
        .env("PROCTOR_APP_PORT", "0")
        .env("PROCTOR_DATABASE_URL", database.url())
        .env("PROCTOR_AUTO_MIGRATE", "true")
        .env("PROCTOR_REDIS_URL", redis)
        .env("PROCTOR_REDIS_CHANNEL_PREFIX", prefix)
        .env("PROCTOR_REPLICA_ID", id)
        .env("PROCTOR_LEASE_SECONDS", "2");
    tokio::task::spawn_blocking(move || Proctord::spawn(command))
        .await
        .unwrap()
}

async fn replica_data(base: &str, query: &str, variables: Value) -> Value {
    let response = proctor_tests::post_graphql(base, query, variables).await;
    assert_eq!(response["errors"], Value::Null, "{response}");
    response["data"].clone()
}

/// Starts an every-second schedule through `base`; returns its id.
async fn every_second(base: &str) -> String {
    replica_data(
        base,
        UPSERT,
        json!({ "i": { "name": "tick", "command": ["true"] } }),
    )
    .await;
    replica_data(
        base,
        CREATE,
        json!({ "i": { "proc": "tick", "cron": "* * * * * *" } }),
    )
    .await["createSchedule"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Pauses the schedule through `base`, lets the last runs settle, and returns its runs (oldest
/// first) and the number of scheduled executions.
async fn pause_and_collect(base: &str, id: &str) -> (Vec<Value>, usize) {
    replica_data(
        base,
        "mutation($id: ID!) { setScheduleEnabled(id: $id, enabled: false) { enabled } }",
        json!({ "id": id }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let found = replica_data(base, RUNS, json!({ "id": id })).await;
    let mut runs: Vec<Value> = found["schedule"]["runs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect();
    runs.reverse();
    let executions = replica_data(
        base,
        "{ executions(first: 100, filter: { proc: \"tick\", trigger: SCHEDULE }) {
            edges { node { id status } } } }",
        json!({}),
    )
    .await;
    let count = executions["executions"]["edges"].as_array().unwrap().len();
    (runs, count)
}

/// Which replica started each scheduled execution (from the lease owner kept on the row).
async fn fires_per_replica(database: &TestDatabase) -> Vec<(Option<String>, i64)> {
    use proctor_entity::execution;
    use sea_orm::{Database, QuerySelect};
    let db = Database::connect(database.url()).await.unwrap();
    execution::Entity::find()
        .select_only()
        .column(execution::Column::Owner)
        .column_as(execution::Column::Id.count(), "fired")
        .filter(execution::Column::ScheduleId.is_not_null())
        .group_by(execution::Column::Owner)
        .into_tuple()
        .all(&db)
        .await
        .unwrap()
}

fn assert_each_slot_fired_once(runs: &[Value], executions: usize) {
    let fired = slots(runs);
    assert_consecutive_seconds(&fired);
    assert!(
        runs.iter()
            .all(|run| run["outcome"] == "STARTED" && run["execution"]["id"].is_string()),
        "every slot started an execution: {runs:?}"
    );
    let mut ids: Vec<&str> = runs
        .iter()
        .map(|run| run["execution"]["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), runs.len(), "one execution per slot");
    assert_eq!(executions, runs.len(), "no execution without its slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(proctor_no_postgres, proctor_no_redis),
    ignore = "needs Postgres and Redis: set PROCTOR_TEST_DATABASE_URL and PROCTOR_TEST_REDIS_URL, or run ./tests/run.sh"
)]
async fn two_replicas_on_one_postgres_fire_each_slot_exactly_once_over_30_seconds() {
    let Some((database, redis, prefix)) = shared_storage().await else {
        return;
    };
    let workdir = tempfile::tempdir().unwrap();
    let a = start_replica(&database, &redis, &prefix, "replica-a", workdir.path()).await;
    let b = start_replica(&database, &redis, &prefix, "replica-b", workdir.path()).await;
    let id = every_second(&a.url("")).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (runs, executions) = pause_and_collect(&b.url(""), &id).await;
    assert!(runs.len() >= 29, "{} slots fired in 30 s", runs.len());
    assert_each_slot_fired_once(&runs, executions);
    eprintln!(
        "{} slots over 30 s; fired per replica: {:?}",
        runs.len(),
        fires_per_replica(&database).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(proctor_no_postgres, proctor_no_redis),
    ignore = "needs Postgres and Redis: set PROCTOR_TEST_DATABASE_URL and PROCTOR_TEST_REDIS_URL, or run ./tests/run.sh"
)]
async fn killing_a_replica_leaves_no_slot_unfired() {
    let Some((database, redis, prefix)) = shared_storage().await else {
        return;
    };
    let workdir = tempfile::tempdir().unwrap();
    let a = start_replica(&database, &redis, &prefix, "replica-a", workdir.path()).await;
    let b = start_replica(&database, &redis, &prefix, "replica-b", workdir.path()).await;
    let id = every_second(&b.url("")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(a); // SIGKILL, whatever it was doing.
    let killed_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (runs, executions) = pause_and_collect(&b.url(""), &id).await;
    let fired = slots(&runs);
    assert!(
        fired
            .first()
            .is_some_and(|first| *first < killed_at - chrono::Duration::seconds(3))
            && fired
                .last()
                .is_some_and(|last| *last > killed_at + chrono::Duration::seconds(4)),
        "slots span the kill at {killed_at}: {fired:?}"
    );
    assert_each_slot_fired_once(&runs, executions);
    // Whatever the killed replica held is taken over once its lease (2 s) runs out.
    for run in &runs {
        let execution = run["execution"]["id"].as_str().unwrap();
        let mut finished = false;
        for _ in 0..100 {
            let state = replica_data(
                &b.url(""),
                "query($id: ID!) { execution(id: $id) { status } }",
                json!({ "id": execution }),
            )
            .await;
            if !["PENDING", "STARTING", "RUNNING"]
                .contains(&state["execution"]["status"].as_str().unwrap())
            {
                finished = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(finished, "execution {execution} never ended");
    }
}
