//! Schedules: the GraphQL API, firing by an injected clock (time zones, DST, catch-up, overlap),
//! firing by the real clock (on time, pause, delete, two replicas, a killed replica), and the
//! notifications of finished runs (SMTP, Slack, signed webhook), through the typed API.

use std::time::Duration;

use chrono::{DateTime, Utc};
use proctor_entity::schedule;
use proctor_schema::schedules::firing::fire_due;
use proctor_tests::api::create_schedule::{ArgInput, CatchUpPolicy, OverlapPolicy};
use proctor_tests::api::schedule_runs::ScheduleRunOutcome as Outcome;
use proctor_tests::api::{
    Api, CronPreview, DeleteSchedule, ExecutionStatus, ListSchedules, ScheduleInput, ScheduleRun,
    Trigger, TriggerSchedule, UpdateSchedule, arg, cron_preview, delete_schedule, list_schedules,
    no_filter, proc, schedule as every, schedule_change, secret, sh, trigger_schedule,
    update_schedule,
};
use proctor_tests::infra::{postgres_url, redis_url, unique_suffix};
use proctor_tests::sinks::{HttpSink, SmtpSink};
use proctor_tests::{Proctord, Stack, TestApp, TestDatabase, proctord_command};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

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

/// A proc running `script` with an optional `REGION` (default `eu`).
async fn define(api: &Api, name: &str, script: &str) {
    let mut input = proc(name, &sh(script));
    let mut region = arg("REGION");
    region.default = Some("eu".to_owned());
    input.args = Some(vec![region]);
    api.define_proc(input).await;
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

fn slots(runs: &[ScheduleRun]) -> Vec<DateTime<Utc>> {
    runs.iter().map(|run| run.slot).collect()
}

/// The execution a run started.
fn started(run: &ScheduleRun) -> String {
    run.execution.as_ref().expect("an execution").id.clone()
}

/// The ids of the schedules `filter` lets through, newest first.
async fn listed(api: &Api, filter: list_schedules::ScheduleFilter) -> Vec<String> {
    let variables = list_schedules::Variables {
        filter: Some(filter),
    };
    let found = api.ok::<ListSchedules>(variables).await.schedules;
    found.edges.into_iter().map(|edge| edge.node.id).collect()
}

/// A schedule in `timezone`.
fn zoned(proc: &str, cron: &str, timezone: &str) -> ScheduleInput {
    let mut input = every(proc, cron);
    input.timezone = Some(timezone.to_owned());
    input
}

/// A schedule with `policy` for an unfinished previous run.
fn overlapping(proc: &str, cron: &str, policy: OverlapPolicy) -> ScheduleInput {
    let mut input = every(proc, cron);
    input.overlap_policy = Some(policy);
    input
}

fn any_schedule() -> list_schedules::ScheduleFilter {
    list_schedules::ScheduleFilter {
        proc: None,
        tag: None,
        group: None,
        enabled: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------------

async fn schedules_are_validated_field_by_field(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    let api = app.api();
    define(&api, "report", "true").await;
    let daily = |change: &dyn Fn(&mut ScheduleInput)| {
        let mut input = every("report", "@daily");
        change(&mut input);
        input
    };
    let cases = [
        (every("report", "* * *"), "input.cron"),
        (every("report", "61 * * * *"), "input.cron"),
        (every("report", "0 0 30 2 *"), "input.cron"),
        (
            daily(&|s| s.timezone = Some("Mars/Olympus".to_owned())),
            "input.timezone",
        ),
        (
            daily(&|s| {
                s.args = Some(vec![ArgInput {
                    name: "NOPE".to_owned(),
                    value: "1".to_owned(),
                }]);
            }),
            "input.args.NOPE",
        ),
        (
            daily(&|s| {
                s.notification_emails = Some(vec!["ops@example.com".to_owned(), "ops".to_owned()]);
            }),
            "input.notificationEmails[1]",
        ),
        (
            daily(&|s| s.webhook_url = Some("file:///etc/passwd".to_owned())),
            "input.webhookUrl",
        ),
        (
            daily(&|s| s.tags = Some(vec![String::new()])),
            "input.tags[0]",
        ),
    ];
    for (input, field) in cases {
        let shown = format!("{input:?}");
        let refused = api.try_create_schedule(input).await.expect_err(&shown);
        assert_eq!(refused.code, "BAD_USER_INPUT", "{shown}: {refused:?}");
        assert!(
            refused.message.starts_with(&format!("{field}: ")),
            "{shown}: {refused:?}"
        );
    }
    let ghost = api
        .try_create_schedule(every("ghost", "@daily"))
        .await
        .expect_err("no such proc");
    assert_eq!(ghost.code, "NOT_FOUND", "{ghost:?}");
    assert!(
        listed(&api, any_schedule()).await.is_empty(),
        "nothing was stored"
    );
}

async fn schedules_are_created_listed_edited_and_deleted(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    let api = app.api();
    define(&api, "report", "true").await;
    let secret_hook = "https://hooks.slack.example/services/T0/B0/very-secret";
    let mut input = every("report", "0 30 9 * * 1-5");
    input.timezone = Some("Europe/Berlin".to_owned());
    input.args = Some(vec![ArgInput {
        name: "REGION".to_owned(),
        value: "us".to_owned(),
    }]);
    input.tags = Some(vec!["nightly".to_owned(), "finance".to_owned()]);
    input.group = Some("ops".to_owned());
    input.notification_emails = Some(vec!["Ops@Example.com".to_owned()]);
    input.overlap_policy = Some(OverlapPolicy::FORBID);
    input.catch_up_policy = Some(CatchUpPolicy::LAST);
    input.slack_webhook_url = Some(secret_hook.to_owned());
    let created = api.try_create_schedule(input).await.expect("created");
    assert!(
        !format!("{created:?}").contains("very-secret"),
        "{created:?}"
    );
    assert_eq!(created.proc_name, "report");
    let args: Vec<(&str, &str)> = created
        .args
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(args, [("REGION", "us")]);
    assert_eq!(created.notification_emails, ["ops@example.com"]);
    assert_eq!(created.overlap_policy, OverlapPolicy::FORBID);
    assert_eq!(created.catch_up_policy, CatchUpPolicy::LAST);
    assert!(created.slack_webhook_configured);
    assert!(created.enabled);
    let times = &created.next_fire_times;
    assert_eq!(times.len(), 3);
    assert_eq!(created.next_fire_at, Some(times[0]));
    for time in times {
        let local = time.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(local.format("%H:%M:%S").to_string(), "09:30:00", "{time}");
    }
    let id = created.id.clone();

    // Left-out fields keep their values; given ones replace them.
    let mut change = schedule_change("report", "@hourly");
    change.tags = Some(Vec::new());
    let updated = api
        .ok::<UpdateSchedule>(update_schedule::Variables {
            id: id.clone(),
            input: change,
        })
        .await
        .update_schedule;
    assert_eq!(updated.cron, "@hourly");
    assert_eq!(updated.timezone, "Europe/Berlin");
    assert!(updated.tags.is_empty());
    assert_eq!(updated.group.as_deref(), Some("ops"));
    let values: Vec<&str> = updated.args.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(values, ["us"]);
    assert_eq!(
        updated.overlap_policy,
        update_schedule::OverlapPolicy::FORBID
    );
    assert!(updated.slack_webhook_configured);

    let mut nightly = every("report", "@daily");
    nightly.tags = Some(vec!["nightly".to_owned()]);
    let other = api.create_schedule(nightly).await;
    let paused = api
        .ok::<proctor_tests::api::SetScheduleEnabled>(
            proctor_tests::api::set_schedule_enabled::Variables {
                id: other.clone(),
                enabled: false,
            },
        )
        .await
        .set_schedule_enabled;
    assert_eq!((paused.enabled, paused.next_fire_at), (false, None));
    let filter = |change: &dyn Fn(&mut list_schedules::ScheduleFilter)| {
        let mut filter = any_schedule();
        change(&mut filter);
        filter
    };
    assert_eq!(
        listed(&api, any_schedule()).await,
        [other.clone(), id.clone()],
        "newest first"
    );
    let nightly_only = filter(&|f| f.tag = Some("nightly".to_owned()));
    assert_eq!(listed(&api, nightly_only).await, [other.as_str()]);
    assert_eq!(
        listed(&api, filter(&|f| f.enabled = Some(true))).await,
        [id.as_str()]
    );
    let ops = filter(&|f| f.group = Some("ops".to_owned()));
    assert_eq!(listed(&api, ops).await, [id.as_str()]);
    let ghost = filter(&|f| f.proc = Some("ghost".to_owned()));
    assert!(listed(&api, ghost).await.is_empty());

    let preview = api
        .ok::<CronPreview>(cron_preview::Variables {
            cron: "*/15 * * * * *".to_owned(),
            count: Some(4),
        })
        .await
        .cron_preview;
    assert_eq!(preview.len(), 4);
    assert!(
        preview
            .windows(2)
            .all(|w| (w[1] - w[0]).num_seconds() == 15)
    );

    let delete = |id: &str| {
        let variables = delete_schedule::Variables { id: id.to_owned() };
        api.call::<DeleteSchedule>(variables)
    };
    assert!(delete(&other).await.expect("deleted").delete_schedule);
    let gone = api
        .ok::<proctor_tests::api::ScheduleRuns>(proctor_tests::api::schedule_runs::Variables {
            id: other.clone(),
        })
        .await;
    assert!(gone.schedule.is_none());
    let again = delete(&other).await.expect_err("gone");
    assert_eq!(again.code, "NOT_FOUND");
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
    let (admin, ops, guest) = (app.api_as(&admin), app.api_as(&ops), app.api_as(&guest));
    let mut payroll = proc("payroll", &["true"]);
    payroll.authorized_groups = Some(vec!["ops".to_owned()]);
    admin.define_proc(payroll).await;
    let refused = guest
        .try_create_schedule(every("payroll", "@daily"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code, "FORBIDDEN", "{refused:?}");
    let id = ops.create_schedule(every("payroll", "@daily")).await;
    assert!(listed(&guest, any_schedule()).await.is_empty());
    let pause = proctor_tests::api::set_schedule_enabled::Variables {
        id: id.clone(),
        enabled: false,
    };
    let refusals = [
        guest
            .call::<proctor_tests::api::SetScheduleEnabled>(pause)
            .await
            .map(|_| ()),
        guest
            .call::<DeleteSchedule>(delete_schedule::Variables { id: id.clone() })
            .await
            .map(|_| ()),
        guest
            .call::<TriggerSchedule>(trigger_schedule::Variables { id: id.clone() })
            .await
            .map(|_| ()),
    ];
    for refused in refusals {
        let refused = refused.expect_err("refused");
        assert_eq!(refused.code, "FORBIDDEN", "{refused:?}");
    }
    let triggered = ops
        .ok::<TriggerSchedule>(trigger_schedule::Variables { id: id.clone() })
        .await
        .trigger_schedule;
    assert_eq!(triggered.trigger, Trigger::Schedule);
    assert_eq!(triggered.schedule_id.as_deref(), Some(id.as_str()));
    assert_eq!(triggered.user.as_deref(), Some("ops@example.com"));
    let audit = admin.audit_events(20, None).await.expect("the audit log");
    let actions: Vec<String> = audit
        .edges
        .iter()
        .map(|edge| {
            let actor = edge.node.actor.as_deref().unwrap_or("-");
            format!("{actor} {}", edge.node.action)
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
    define(&app.api(), "report", "true").await;
    // 09:15:30 in Kolkata (UTC+05:30) is 03:45:30 UTC.
    let id = app
        .api()
        .create_schedule(zoned("report", "30 15 9 * * *", "Asia/Kolkata"))
        .await;
    position(&app, &id, utc("2026-06-01T03:45:30Z")).await;

    tick(&app, utc("2026-06-01T03:45:29.900Z")).await;
    assert!(
        app.api().schedule_runs(&id).await.0.is_empty(),
        "not before its second"
    );
    tick(&app, utc("2026-06-01T03:45:30.004Z")).await;
    tick(&app, utc("2026-06-01T03:45:30.200Z")).await;
    let (fired, next) = app.api().schedule_runs(&id).await;
    assert_eq!(slots(&fired), [utc("2026-06-01T03:45:30Z")], "once");
    assert_eq!(fired[0].outcome, Outcome::STARTED);
    assert_eq!(
        fired[0].execution.as_ref().unwrap().trigger,
        Trigger::Schedule
    );
    assert_eq!(
        fired[0].execution.as_ref().unwrap().schedule_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(fired[0].fired_at, utc("2026-06-01T03:45:30.004Z"));
    assert_eq!(next.unwrap(), utc("2026-06-02T03:45:30Z"));

    // Every 20 seconds, in a zone with a non-hour offset: seconds are the zone's too.
    let every_20s = app
        .api()
        .create_schedule(zoned("report", "*/20 * * * * *", "Asia/Kathmandu"))
        .await;
    position(&app, &every_20s, utc("2026-06-01T10:00:00Z")).await;
    for at in [
        "2026-06-01T10:00:00Z",
        "2026-06-01T10:00:20Z",
        "2026-06-01T10:00:40Z",
    ] {
        tick(&app, utc(at)).await;
    }
    let (fired, next) = app.api().schedule_runs(&every_20s).await;
    assert_eq!(
        slots(&fired),
        [
            utc("2026-06-01T10:00:00Z"),
            utc("2026-06-01T10:00:20Z"),
            utc("2026-06-01T10:00:40Z")
        ]
    );
    assert_eq!(next.unwrap(), utc("2026-06-01T10:01:00Z"));
}

async fn a_local_time_skipped_by_dst_does_not_fire_and_a_repeated_one_fires_once(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app.api(), "report", "true").await;
    let id = app
        .api()
        .create_schedule(zoned("report", "0 30 2 * * *", "Europe/Berlin"))
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
    let (fired, _) = app.api().schedule_runs(&id).await;
    assert_eq!(
        slots(&fired),
        [utc("2026-03-28T01:30:00Z"), utc("2026-03-30T00:30:00Z")],
        "the 29th is skipped"
    );

    // Autumn, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let autumn = app
        .api()
        .create_schedule(zoned("report", "0 30 2 * * *", "Europe/Berlin"))
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
    let (fired, _) = app.api().schedule_runs(&autumn).await;
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
    define(&app.api(), "report", "true").await;
    let start = utc("2026-06-01T10:00:00Z");
    let mut ids = Vec::new();
    for policy in [CatchUpPolicy::SKIP, CatchUpPolicy::LAST, CatchUpPolicy::ALL] {
        let mut input = every("report", "0 * * * * *");
        input.catch_up_policy = Some(policy);
        let id = app.api().create_schedule(input).await;
        position(&app, &id, start).await;
        ids.push(id);
    }
    tick(&app, start).await;
    // Down from 10:00:01 to 11:00:45: 10:01 .. 11:00 were missed (11:00 is 45 s late).
    tick(&app, utc("2026-06-01T11:00:45Z")).await;

    let (skip, next) = app.api().schedule_runs(&ids[0]).await;
    assert_eq!(slots(&skip), [start], "SKIP fires nothing missed");
    assert_eq!(next.unwrap(), utc("2026-06-01T11:01:00Z"));
    let (last, next) = app.api().schedule_runs(&ids[1]).await;
    assert_eq!(
        slots(&last),
        [start, utc("2026-06-01T11:00:00Z")],
        "LAST fires the newest"
    );
    assert_eq!(next.unwrap(), utc("2026-06-01T11:01:00Z"));
    let (all, next) = app.api().schedule_runs(&ids[2]).await;
    let expected: Vec<DateTime<Utc>> = (0..=60)
        .map(|minute| start + chrono::Duration::minutes(minute))
        .collect();
    assert_eq!(slots(&all), expected, "ALL fires every missed slot once");
    assert!(all.iter().all(|run| run.outcome == Outcome::STARTED));
    assert_eq!(next.unwrap(), utc("2026-06-01T11:01:00Z"));

    // Back to normal: the next slot fires on time for all three.
    tick(&app, utc("2026-06-01T11:01:00Z")).await;
    for id in &ids {
        let (fired, _) = app.api().schedule_runs(id).await;
        assert_eq!(slots(&fired).last(), Some(&utc("2026-06-01T11:01:00Z")));
    }

    let metrics = app.get_text("/metrics").await;
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

/// A minutely schedule of a 30 s proc with `policy`: its first run is started and running when
/// the next slot (10:01) fires. The schedule's id and the first run's.
async fn a_run_still_running_at_the_next_slot(
    app: &TestApp,
    policy: OverlapPolicy,
) -> (String, String) {
    let api = app.api();
    define(&api, "slow", "sleep 30").await;
    let id = api
        .create_schedule(overlapping("slow", "0 * * * * *", policy))
        .await;
    let start = utc("2026-06-01T10:00:00Z");
    position(app, &id, start).await;
    tick(app, start).await;
    let (fired, _) = api.schedule_runs(&id).await;
    let first = started(&fired[0]);
    api.wait_for_status(&first, ExecutionStatus::Running).await;
    tick(app, utc("2026-06-01T10:01:00Z")).await;
    (id, first)
}

async fn forbid_skips_while_the_previous_run_is_unfinished(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    let (id, first) = a_run_still_running_at_the_next_slot(&app, OverlapPolicy::FORBID).await;
    let (fired, _) = app.api().schedule_runs(&id).await;
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[1].outcome, Outcome::SKIPPED_OVERLAP);
    assert!(fired[1].execution.is_none());
    let detail = fired[1].detail.as_deref().unwrap_or_default();
    assert!(detail.contains(&format!("execution {first}")), "{detail}");
    assert_eq!(
        app.api().status(&first).await,
        ExecutionStatus::Running,
        "left alone"
    );

    app.api().cancel(&first).await.expect("cancelled");
    tick(&app, utc("2026-06-01T10:02:00Z")).await;
    let (fired, _) = app.api().schedule_runs(&id).await;
    let outcomes: Vec<Outcome> = fired.iter().map(|run| run.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [Outcome::STARTED, Outcome::SKIPPED_OVERLAP, Outcome::STARTED]
    );
    let third = started(&fired[2]);
    app.api().cancel(&third).await.expect("cancelled");
}

async fn replace_cancels_the_unfinished_run_and_starts_anew(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    let (id, first) = a_run_still_running_at_the_next_slot(&app, OverlapPolicy::REPLACE).await;
    let (fired, _) = app.api().schedule_runs(&id).await;
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[1].outcome, Outcome::STARTED);
    let second = started(&fired[1]);
    app.api()
        .wait_for_status(&first, ExecutionStatus::Cancelled)
        .await;
    app.api()
        .wait_for_status(&second, ExecutionStatus::Running)
        .await;
    app.api().cancel(&second).await.expect("cancelled");
}

async fn a_slot_fires_once_however_often_the_scheduler_looks(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app.api(), "report", "true").await;
    let id = app
        .api()
        .create_schedule(every("report", "* * * * * *"))
        .await;
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
    let (fired, _) = app.api().schedule_runs(&id).await;
    assert_eq!(
        slots(&fired),
        (0..5)
            .map(|second| start + chrono::Duration::seconds(second))
            .collect::<Vec<_>>()
    );
    let mut scheduled = no_filter();
    scheduled.trigger = Some(Trigger::Schedule);
    let executions = app.api().executions(100, None, scheduled).await.unwrap();
    assert_eq!(executions.edges.len(), 5);
}

/// More schedules than a tick reads at once (100), due at the same slot, fired side by side
/// (on Postgres) while other ticks look too: each slot once, each with its execution.
async fn a_crowded_tick_fires_every_schedule_once(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app.api(), "report", "true").await;
    let start = utc("2026-06-01T10:00:00Z");
    let mut ids = Vec::new();
    for _ in 0..130 {
        let id = app
            .api()
            .create_schedule(every("report", "* * * * * *"))
            .await;
        position(&app, &id, start).await;
        ids.push(id);
    }
    let ticks = (0..3).map(|_| fire_due(&app.state, start));
    let fired: u64 = futures::future::join_all(ticks)
        .await
        .into_iter()
        .map(|report| report.expect("a tick").fired)
        .sum();
    assert_eq!(fired, 130, "each schedule's slot fired by exactly one tick");
    for id in &ids {
        let (runs, _) = app.api().schedule_runs(id).await;
        assert_eq!(slots(&runs), vec![start], "schedule {id}");
        started(&runs[0]);
    }
    let mut scheduled = no_filter();
    scheduled.trigger = Some(Trigger::Schedule);
    let first = app
        .api()
        .executions(100, None, scheduled.clone())
        .await
        .unwrap();
    let cursor = first.edges.last().map(|edge| edge.cursor.clone());
    let rest = app.api().executions(100, cursor, scheduled).await.unwrap();
    assert_eq!(first.edges.len() + rest.edges.len(), 130);
}

async fn a_run_that_cannot_start_is_recorded_and_reported(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    let mut needs_token = proc("needs-token", &["true"]);
    needs_token.secrets = Some(vec![secret("TOKEN")]);
    app.api().define_proc(needs_token).await;
    let id = app
        .api()
        .create_schedule(every("needs-token", "0 * * * * *"))
        .await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    tick(&app, start).await;
    let (fired, _) = app.api().schedule_runs(&id).await;
    assert_eq!(fired[0].outcome, Outcome::NOT_STARTED);
    assert!(
        fired[0]
            .detail
            .as_deref()
            .is_some_and(|detail| detail.contains("TOKEN")),
        "{:?}",
        fired[0]
    );
    assert_eq!(
        fired[0].execution.as_ref().unwrap().status,
        ExecutionStatus::CreationFailed
    );
    assert_eq!(
        fired[0].execution.as_ref().unwrap().trigger,
        Trigger::Schedule
    );
}

async fn a_schedule_whose_stored_timing_broke_stops_instead_of_failing_every_tick(stack: Stack) {
    let Some(app) = clocked(stack).await else {
        return;
    };
    define(&app.api(), "report", "true").await;
    let id = app
        .api()
        .create_schedule(every("report", "0 * * * * *"))
        .await;
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
    let (fired, next) = app.api().schedule_runs(&id).await;
    assert!(fired.is_empty());
    assert_eq!(next, None, "stopped until edited");
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
    a_crowded_tick_fires_every_schedule_once,
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
    define(&app.api(), "tick", "true").await;
    let id = app
        .api()
        .create_schedule(every("tick", "* * * * * *"))
        .await;
    tokio::time::sleep(Duration::from_millis(5_200)).await;

    let paused_at = Utc::now();
    app.api().set_schedule_enabled(&id, false).await;
    let (fired, _) = app.api().schedule_runs(&id).await;
    assert!(fired.len() >= 5, "{} runs in 5.2 s", fired.len());
    assert_consecutive_seconds(&slots(&fired));
    let lateness: Vec<i64> = fired
        .iter()
        .map(|run| (run.fired_at - run.slot).num_milliseconds())
        .collect();
    eprintln!(
        "lateness of {} real-clock slots (ms): {lateness:?}",
        fired.len()
    );
    assert!(
        fired
            .iter()
            .all(|run| run.outcome == Outcome::STARTED && run.execution.is_some())
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after_pause, _) = app.api().schedule_runs(&id).await;
    let last = *slots(&after_pause).last().unwrap();
    assert!(
        last <= paused_at + chrono::Duration::seconds(1),
        "slot {last} fired after the pause at {paused_at}"
    );
}

async fn deleting_a_schedule_stops_it(stack: Stack) {
    let Some(app) = live(stack).await else { return };
    define(&app.api(), "tick", "true").await;
    let id = app
        .api()
        .create_schedule(every("tick", "* * * * * *"))
        .await;
    let api = app.api();
    let scheduled = || {
        let api = &api;
        async move {
            let mut filter = no_filter();
            filter.proc = Some("tick".to_owned());
            filter.trigger = Some(Trigger::Schedule);
            let page = api.executions(100, None, filter).await.unwrap();
            page.edges
                .into_iter()
                .map(|edge| edge.node.created_at)
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
    let variables = delete_schedule::Variables { id: id.clone() };
    api.ok::<DeleteSchedule>(variables).await;
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
/// As `(channel, delivered, error)`, by channel.
async fn recorded_notifications(
    app: &TestApp,
    schedule: &str,
) -> Vec<(String, bool, Option<String>)> {
    for _ in 0..200 {
        let (fired, _) = app.api().schedule_runs(schedule).await;
        let mut records: Vec<(String, bool, Option<String>)> = fired[0]
            .notifications
            .iter()
            .map(|record| {
                (
                    record.channel.clone(),
                    record.delivered,
                    record.error.clone(),
                )
            })
            .collect();
        if !records.is_empty() {
            records.sort();
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
    define(&app.api(), "nightly", "echo working; exit 3").await;
    let mut input = every("nightly", "0 * * * * *");
    input.args = Some(vec![ArgInput {
        name: "REGION".to_owned(),
        value: "us".to_owned(),
    }]);
    input.notification_emails = Some(vec![
        "ops@example.com".to_owned(),
        "lead@example.com".to_owned(),
    ]);
    input.slack_webhook_url = Some(hooks.url("/slack/T0/B0/slack-secret"));
    input.webhook_url = Some(hooks.url("/proctor-events"));
    let id = app.api().create_schedule(input).await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    tick(&app, start).await;
    let (fired, _) = app.api().schedule_runs(&id).await;
    let execution = started(&fired[0]);

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

    let records = recorded_notifications(&app, &id).await;
    let delivered = |channel: &str| (channel.to_owned(), true, None);
    assert_eq!(
        records,
        [delivered("email"), delivered("slack"), delivered("webhook")]
    );
}

async fn a_failed_notification_is_recorded_and_never_fails_the_run(stack: Stack) {
    let smtp = SmtpSink::start().await;
    let mut hooks = HttpSink::start().await;
    let Some(app) = notifying(stack, &smtp, "hook-secret").await else {
        return;
    };
    define(&app.api(), "nightly", "echo fine").await;
    // Nothing listens on the Slack URL's port; the webhook answers 500.
    let unreachable = format!(
        "http://127.0.0.1:{}/services/T0/B0/slack-secret",
        proctor_tests::free_port()
    );
    let mut input = every("nightly", "0 * * * * *");
    input.slack_webhook_url = Some(unreachable);
    input.webhook_url = Some(hooks.url("/status/500"));
    let id = app.api().create_schedule(input).await;
    let start = utc("2026-06-01T10:00:00Z");
    position(&app, &id, start).await;
    tick(&app, start).await;
    hooks.next_request(Duration::from_secs(20)).await;
    let records = recorded_notifications(&app, &id).await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!((records[0].0.as_str(), records[0].1), ("slack", false));
    let slack_error = records[0].2.as_deref().unwrap_or_default();
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
        (
            "webhook".to_owned(),
            false,
            Some("the webhook answered 500 Internal Server Error".to_owned())
        )
    );
    let (fired, _) = app.api().schedule_runs(&id).await;
    assert_eq!(
        fired[0].execution.as_ref().unwrap().status,
        ExecutionStatus::Succeeded
    );
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

/// Starts an every-second schedule through `base`; returns its id.
async fn every_second(base: &str) -> String {
    let api = Api::at(base);
    api.define_proc(proc("tick", &["true"])).await;
    api.create_schedule(every("tick", "* * * * * *")).await
}

/// Pauses the schedule through `base`, lets the last runs settle, and returns its runs (oldest
/// first) and the number of scheduled executions.
async fn pause_and_collect(base: &str, id: &str) -> (Vec<ScheduleRun>, usize) {
    let api = Api::at(base);
    api.set_schedule_enabled(id, false).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (runs, _) = api.schedule_runs(id).await;
    let mut filter = no_filter();
    filter.proc = Some("tick".to_owned());
    filter.trigger = Some(Trigger::Schedule);
    let executions = api.executions(100, None, filter).await.unwrap();
    (runs, executions.edges.len())
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

fn assert_each_slot_fired_once(runs: &[ScheduleRun], executions: usize) {
    let fired = slots(runs);
    assert_consecutive_seconds(&fired);
    assert!(
        runs.iter()
            .all(|run| run.outcome == Outcome::STARTED && run.execution.is_some()),
        "every slot started an execution: {runs:?}"
    );
    let mut ids: Vec<&str> = runs
        .iter()
        .map(|run| run.execution.as_ref().expect("an execution").id.as_str())
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
        let execution = started(run);
        let mut finished = false;
        let api = Api::at(&b.url(""));
        for _ in 0..100 {
            if api.status(&execution).await.is_final() {
                finished = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(finished, "execution {execution} never ended");
    }
}
