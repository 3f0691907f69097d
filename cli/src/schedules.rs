//! Schedules: `schedules create|list|get|update|delete|pause|resume|runs|trigger|preview`,
//! and the v2 spellings `schedule PROC …` and `schedule list|describe|remove|…`.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::api::{
    Api, CreateSchedule, CronPreview, DeleteSchedule, GetSchedule, ListSchedules, ScheduleRuns,
    SetScheduleEnabled, TriggerSchedule, UpdateSchedule, create_schedule, cron_preview,
    delete_schedule, get_schedule, list_schedules, schedule_runs, set_schedule_enabled,
    trigger_schedule, update_schedule,
};
use crate::error::CliError;
use crate::output::{self, Format, Out, age, col, green, magenta, pair, wide};
use crate::procs::enum_name;
use crate::runs::{FollowArgs, Spelling, graphql_enum};

/// `proctor schedules …`.
#[derive(Subcommand, Debug)]
pub enum SchedulesAction {
    /// Create a schedule (v2: `schedule PROC`)
    #[command(after_help = "Example: proctor schedules create report REGION=eu -c '0 2 * * *' \
                            --timezone Europe/Berlin --overlap forbid")]
    Create {
        /// The proc to schedule.
        #[arg(add = crate::complete::procs())]
        proc: String,
        /// Arguments for every run, as KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        args: Vec<String>,
        #[command(flatten)]
        fields: ScheduleFields,
    },
    /// List schedules
    List(ListFilter),
    /// Show one schedule (v2: `schedule describe`)
    Get {
        /// Schedule id.
        #[arg(add = crate::complete::schedules())]
        id: String,
    },
    /// Change a schedule; what is not given is kept (KEY=VALUE arguments replace all of them)
    Update {
        /// Schedule id.
        #[arg(add = crate::complete::schedules())]
        id: String,
        /// New arguments, as KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        args: Vec<String>,
        #[command(flatten)]
        fields: ScheduleFields,
    },
    /// Delete a schedule and its run history (its executions stay) (v2: `schedule remove`)
    Delete {
        /// Schedule id.
        #[arg(add = crate::complete::schedules())]
        id: String,
    },
    /// Stop a schedule from firing (it is kept)
    Pause {
        /// Schedule id.
        #[arg(add = crate::complete::schedules())]
        id: String,
    },
    /// Let a paused schedule fire again, from its next slot
    Resume {
        /// Schedule id.
        #[arg(add = crate::complete::schedules())]
        id: String,
    },
    /// The runs of a schedule, newest first
    Runs {
        /// Schedule id.
        #[arg(add = crate::complete::schedules())]
        id: String,
        /// How many to show (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Run a schedule's proc now with its arguments (counted among its runs) and follow it
    Trigger {
        /// Schedule id.
        #[arg(add = crate::complete::schedules())]
        id: String,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// The next times a cron expression fires, to check it before saving it
    Preview {
        /// 5 fields (minute hour day month weekday), 6 with seconds first, or @daily, ….
        cron: String,
        /// IANA time zone the cron is read in (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// How many times to show (at most 100).
        #[arg(long, default_value_t = 5)]
        count: i64,
    },
}

/// The filters of a schedule list.
#[derive(Args, Debug)]
pub struct ListFilter {
    /// Only schedules of this proc.
    #[arg(long, add = crate::complete::procs())]
    proc: Option<String>,
    /// Only schedules with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Only schedules with this group label.
    #[arg(long)]
    group: Option<String>,
    /// How many to show (at most 100).
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Continue after this cursor.
    #[arg(long)]
    after: Option<String>,
}

/// When the previous run of a schedule is unfinished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OverlapArg {
    /// Start the next run anyway.
    Allow,
    /// Skip the slot.
    Forbid,
    /// Cancel the unfinished run, then start.
    Replace,
}

/// Slots missed while no scheduler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CatchUpArg {
    /// Skip them.
    Skip,
    /// Run the latest one.
    Last,
    /// Run each of them.
    All,
}

/// `proctor schedule`: create one, or manage them with a subcommand.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Example: proctor schedule run-sample -g my-group -c '0 2 * * *' -n \
                  'username@mail.com' -T 'sample,proctor' ARG_ONE1=foobar"
)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    action: Option<ScheduleAction>,
    /// The proc to schedule.
    #[arg(required = true)]
    proc: Option<String>,
    /// Arguments for every run, as KEY=VALUE.
    #[arg(value_name = "KEY=VALUE")]
    args: Vec<String>,
    #[command(flatten)]
    fields: ScheduleFields,
}

/// The settings of a schedule (all optional on `update`).
#[derive(Args, Debug, Default)]
pub struct ScheduleFields {
    /// Schedule cron: 5 fields (minute hour day month weekday), 6 with seconds first, or
    /// @hourly, @daily, …
    #[arg(short = 'c', long)]
    cron: Option<String>,
    /// Group Name (a label)
    #[arg(short = 'g', long)]
    group: Option<String>,
    /// Notifier Email ID's, comma-separated
    #[arg(short = 'n', long)]
    notify: Option<String>,
    /// Tags, comma-separated
    #[arg(short = 'T', long)]
    tags: Option<String>,
    /// IANA time zone the cron is read in (default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// When the previous run is unfinished.
    #[arg(long, value_enum, ignore_case = true)]
    overlap: Option<OverlapArg>,
    /// Slots missed while no scheduler ran.
    #[arg(long = "catch-up", value_enum, ignore_case = true)]
    catch_up: Option<CatchUpArg>,
    /// Slack incoming-webhook URL told of each run's end (write-only; "" removes it; "-" reads
    /// it from stdin or a hidden prompt, keeping it out of `ps` and shell history)
    #[arg(long, value_name = "URL")]
    slack_webhook_url: Option<String>,
    /// URL that receives a JSON POST at each run's end ("" removes it).
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ScheduleAction {
    /// List scheduled jobs
    List(ListFilter),
    /// Describe scheduled job
    Describe {
        /// Schedule id.
        id: String,
    },
    /// Remove scheduled job
    Remove {
        /// Schedule id.
        id: String,
    },
    /// Stop a schedule from firing (it is kept)
    Pause {
        /// Schedule id.
        id: String,
    },
    /// Let a paused schedule fire again, from its next slot
    Resume {
        /// Schedule id.
        id: String,
    },
    /// Change a schedule; what is not given is kept (KEY=VALUE arguments replace all of them)
    Update {
        /// Schedule id.
        id: String,
        /// New arguments, as KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        args: Vec<String>,
        #[command(flatten)]
        fields: ScheduleFields,
    },
    /// The runs of a schedule, newest first
    Runs {
        /// Schedule id.
        id: String,
        /// How many to show (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

fn schedule_id(id: &str) -> Result<String, CliError> {
    id.trim()
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .map(|id| id.to_string())
        .ok_or_else(|| CliError::Usage(format!("{id:?} is not a schedule id")))
}

fn list(text: &Option<String>) -> Option<Vec<String>> {
    text.as_ref().map(|text| {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

fn check_limit(limit: i64) -> Result<(), CliError> {
    if (1..=100).contains(&limit) {
        Ok(())
    } else {
        Err(CliError::Usage("--limit must be between 1 and 100".into()))
    }
}

/// `proctor schedule …`.
pub async fn run(api: &Api, out: &Out, args: ScheduleArgs) -> Result<(), CliError> {
    match args.action {
        None => {
            create(
                api,
                out,
                args.proc.unwrap_or_default(),
                &args.args,
                args.fields,
            )
            .await
        }
        Some(ScheduleAction::List(ListFilter {
            proc,
            tag,
            group,
            limit,
            after,
        })) => {
            check_limit(limit)?;
            let page = api
                .run::<ListSchedules>(list_schedules::Variables {
                    first: Some(limit),
                    after,
                    filter: Some(list_schedules::ScheduleFilter {
                        proc,
                        tag,
                        group,
                        enabled: None,
                    }),
                })
                .await?
                .schedules;
            // Programs get a plain array (or `schedule/ID` lines); people the Go CLI's table.
            if out.shown(&page.nodes, |nodes| {
                nodes.iter().map(|s| format!("schedule/{}", s.id)).collect()
            })? {
                return Ok(());
            }
            let nodes = serde_json::to_value(&page.nodes).unwrap_or_default();
            if nodes.as_array().is_none_or(Vec::is_empty) {
                anstream::println!("No scheduled jobs found");
                return Ok(());
            }
            let rows = nodes
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    vec![
                        text(&s["id"]),
                        text(&s["procName"]),
                        text(&s["group"]),
                        joined(&s["tags"]),
                        text(&s["cron"]),
                        text(&s["timezone"]),
                        if s["enabled"] == true {
                            "yes"
                        } else {
                            "paused"
                        }
                        .to_owned(),
                        text(&s["nextFireAt"]),
                    ]
                })
                .collect();
            let table = output::table(
                &[
                    "ID",
                    "PROC NAME",
                    "GROUP NAME",
                    "TAGS",
                    "CRON",
                    "TIMEZONE",
                    "ENABLED",
                    "NEXT RUN",
                ],
                rows,
            );
            let table = if out.no_headers {
                table.split_once('\n').map_or("", |(_, rest)| rest)
            } else {
                table.as_str()
            };
            anstream::println!("{table}");
            if let Some(cursor) = page
                .page_info
                .end_cursor
                .filter(|_| page.page_info.has_next_page)
            {
                anstream::eprintln!(
                    "{}",
                    output::strip_controls(&format!(
                        "more: proctor schedule list --after {cursor}"
                    ))
                );
            }
            Ok(())
        }
        Some(ScheduleAction::Describe { id }) => {
            let id = schedule_id(&id)?;
            let schedule = api
                .run::<GetSchedule>(get_schedule::Variables { id: id.clone() })
                .await?
                .schedule
                .ok_or_else(|| not_found(&id))?;
            if out.shown(&schedule, |s| vec![format!("schedule/{}", s.id)])? {
                return Ok(());
            }
            describe(&serde_json::to_value(&schedule).unwrap_or_default());
            Ok(())
        }
        Some(ScheduleAction::Remove { id }) => {
            let id = schedule_id(&id)?;
            let removed = api
                .run::<DeleteSchedule>(delete_schedule::Variables { id: id.clone() })
                .await?
                .delete_schedule;
            if !removed {
                return Err(not_found(&id));
            }
            out.one(
                &serde_json::json!({ "id": id, "deleted": true }),
                |_| format!("schedule/{id}"),
                |_| {
                    anstream::println!(
                        "{}",
                        green(&format!("Successfully removed the scheduled job ID: {id}"))
                    );
                },
            )?;
            Ok(())
        }
        Some(ScheduleAction::Pause { id }) => set_enabled(api, out, &id, false).await,
        Some(ScheduleAction::Resume { id }) => set_enabled(api, out, &id, true).await,
        Some(ScheduleAction::Update { id, args, fields }) => {
            update(api, out, &id, &args, fields).await
        }
        Some(ScheduleAction::Runs { id, limit }) => {
            check_limit(limit)?;
            let id = schedule_id(&id)?;
            let schedule = api
                .run::<ScheduleRuns>(schedule_runs::Variables {
                    id: id.clone(),
                    first: Some(limit),
                    after: None,
                })
                .await?
                .schedule
                .ok_or_else(|| not_found(&id))?;
            type Row = schedule_runs::ScheduleRunsScheduleRunsNodes;
            let execution = |r: &Row| r.execution.as_ref().map(|e| e.id.clone());
            let columns = vec![
                col("SLOT", |r: &Row| r.slot.clone()),
                col("FIRED AT", |r: &Row| r.fired_at.clone()),
                col("OUTCOME", |r: &Row| enum_name(&r.outcome)),
                col("EXECUTION", move |r: &Row| execution(r).unwrap_or_default()),
                col("STATUS", |r: &Row| {
                    r.execution
                        .as_ref()
                        .map(|e| enum_name(&e.status))
                        .unwrap_or_default()
                }),
                col("DETAIL", |r: &Row| r.detail.clone().unwrap_or_default()),
            ];
            out.list(
                &schedule.runs.nodes,
                &columns,
                |r| format!("execution/{}", execution(r).unwrap_or_default()),
                "No runs of this schedule yet",
            )?;
            Ok(())
        }
    }
}

/// `--slack-webhook-url`, read from stdin (or a hidden prompt) when given as `-`: the URL is
/// a credential.
fn slack_url(given: Option<String>) -> Result<Option<String>, CliError> {
    use std::io::{IsTerminal as _, Read as _};
    if given.as_deref() != Some("-") {
        return Ok(given);
    }
    let url = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Slack webhook URL (input hidden): ")
            .map_err(|e| CliError::Io(format!("cannot read the Slack webhook URL: {e}")))?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| CliError::Io(format!("cannot read the Slack webhook URL: {e}")))?;
        text
    };
    Ok(Some(url.trim().to_owned()))
}

fn not_found(id: &str) -> CliError {
    CliError::Server {
        code: Some("NOT_FOUND".into()),
        message: format!("Job not found: no schedule {id}"),
        field: None,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn joined(value: &Value) -> String {
    value
        .as_array()
        .map(|items| items.iter().map(text).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn print_args(args: &std::collections::BTreeMap<String, String>) {
    if args.is_empty() {
        anstream::println!("With No Variables");
    } else {
        anstream::println!("{}", magenta("With Variables"));
        for (name, value) in args {
            anstream::println!("{}", pair(name, value));
        }
    }
}

async fn create(
    api: &Api,
    out: &Out,
    proc: String,
    pairs: &[String],
    fields: ScheduleFields,
) -> Result<(), CliError> {
    let args = crate::args::collect(pairs, None)?;
    let cron = fields.cron.clone().ok_or_else(|| {
        CliError::Usage("--cron (-c) is required, e.g. -c '0 2 * * *' (02:00 every day)".into())
    })?;
    let shown_args = args.clone();
    let shown_proc = proc.clone();
    let input = create_schedule::ScheduleInput {
        proc,
        args: Some(
            args.into_iter()
                .map(|(name, value)| create_schedule::ArgInput { name, value })
                .collect(),
        ),
        cron,
        timezone: fields.timezone,
        tags: list(&fields.tags),
        group: fields.group,
        notification_emails: list(&fields.notify),
        enabled: None,
        overlap_policy: fields.overlap.as_ref().map(graphql_enum).transpose()?,
        catch_up_policy: fields.catch_up.as_ref().map(graphql_enum).transpose()?,
        slack_webhook_url: slack_url(fields.slack_webhook_url)?,
        webhook_url: fields.webhook_url,
    };
    let created = api
        .run::<CreateSchedule>(create_schedule::Variables { input })
        .await?
        .create_schedule;
    if out.format == Format::Name {
        anstream::println!("schedule/{}", created.id);
        return Ok(());
    }
    if out.structured(&created)? {
        return Ok(());
    }
    // The Go CLI's banner, once the server took the schedule (never before a refusal).
    anstream::println!("{}", pair("Creating Scheduled Job", &shown_proc));
    print_args(&shown_args);
    let created = serde_json::to_value(&created).unwrap_or_default();
    anstream::println!(
        "{}",
        green(&format!("Scheduled Job ID : {}", text(&created["id"])))
    );
    anstream::println!("{}", pair("Next Run", text(&created["nextFireAt"])));
    Ok(())
}

async fn set_enabled(api: &Api, out: &Out, id: &str, enabled: bool) -> Result<(), CliError> {
    let id = schedule_id(id)?;
    let schedule = api
        .run::<SetScheduleEnabled>(set_schedule_enabled::Variables {
            id: id.clone(),
            enabled,
        })
        .await?
        .set_schedule_enabled;
    if out.shown(&schedule, |s| vec![format!("schedule/{}", s.id)])? {
        return Ok(());
    }
    let schedule = serde_json::to_value(&schedule).unwrap_or_default();
    if enabled {
        anstream::println!(
            "{}",
            green(&format!(
                "Resumed schedule {id}; next run {}",
                text(&schedule["nextFireAt"])
            ))
        );
    } else {
        anstream::println!("{}", green(&format!("Paused schedule {id}")));
    }
    Ok(())
}

async fn update(
    api: &Api,
    out: &Out,
    id: &str,
    pairs: &[String],
    fields: ScheduleFields,
) -> Result<(), CliError> {
    let id = schedule_id(id)?;
    let current = api
        .run::<GetSchedule>(get_schedule::Variables { id: id.clone() })
        .await?
        .schedule
        .ok_or_else(|| not_found(&id))?;
    let current = serde_json::to_value(&current).unwrap_or_default();
    let args = crate::args::collect(pairs, None)?;
    let input = update_schedule::ScheduleInput {
        proc: text(&current["procName"]),
        args: (!args.is_empty()).then(|| {
            args.into_iter()
                .map(|(name, value)| update_schedule::ArgInput { name, value })
                .collect()
        }),
        cron: fields.cron.unwrap_or_else(|| text(&current["cron"])),
        timezone: fields.timezone,
        tags: list(&fields.tags),
        group: fields.group,
        notification_emails: list(&fields.notify),
        enabled: None,
        overlap_policy: fields.overlap.as_ref().map(graphql_enum).transpose()?,
        catch_up_policy: fields.catch_up.as_ref().map(graphql_enum).transpose()?,
        slack_webhook_url: slack_url(fields.slack_webhook_url)?,
        webhook_url: fields.webhook_url,
    };
    let updated = api
        .run::<UpdateSchedule>(update_schedule::Variables {
            id: id.clone(),
            input,
        })
        .await?
        .update_schedule;
    if out.shown(&updated, |s| vec![format!("schedule/{}", s.id)])? {
        return Ok(());
    }
    anstream::println!("{}", green(&format!("Updated schedule {id}")));
    describe(&serde_json::to_value(&updated).unwrap_or_default());
    Ok(())
}

/// The Go CLI's `schedule describe` layout, with what schedules can do now.
fn describe(schedule: &Value) {
    anstream::println!("{}", pair("ID", text(&schedule["id"])));
    anstream::println!("{}", pair("PROC NAME", text(&schedule["procName"])));
    anstream::println!("{}", pair("GROUP NAME", text(&schedule["group"])));
    anstream::println!("{}", pair("TAGS", joined(&schedule["tags"])));
    anstream::println!("{}", pair("Cron", text(&schedule["cron"])));
    anstream::println!("{}", pair("Timezone", text(&schedule["timezone"])));
    anstream::println!(
        "{}",
        pair("Notifier", joined(&schedule["notificationEmails"]))
    );
    let enabled = if schedule["enabled"] == true {
        "yes"
    } else {
        "paused"
    };
    anstream::println!("{}", pair("Enabled", enabled));
    anstream::println!("{}", pair("Overlap", text(&schedule["overlapPolicy"])));
    anstream::println!("{}", pair("Catch-up", text(&schedule["catchUpPolicy"])));
    // Shown only when set, so a schedule without them prints what the Go CLI printed.
    if schedule["slackWebhookConfigured"] == true {
        anstream::println!("{}", pair("Slack", "set (the URL is never shown)"));
    }
    if let Some(url) = schedule["webhookUrl"].as_str() {
        anstream::println!("{}", pair("Webhook", url));
    }
    anstream::println!("{}", pair("Next Run", text(&schedule["nextFireAt"])));
    anstream::println!("{}", magenta("\nArgs"));
    for arg in schedule["args"].as_array().into_iter().flatten() {
        anstream::println!("{}", pair(&text(&arg["name"]), text(&arg["value"])));
    }
}

/// `proctor schedules list`: a table with ages and next runs.
async fn list_modern(api: &Api, out: &Out, filter: ListFilter) -> Result<(), CliError> {
    check_limit(filter.limit)?;
    let page = api
        .run::<ListSchedules>(list_schedules::Variables {
            first: Some(filter.limit),
            after: filter.after,
            filter: Some(list_schedules::ScheduleFilter {
                proc: filter.proc,
                tag: filter.tag,
                group: filter.group,
                enabled: None,
            }),
        })
        .await?
        .schedules;
    let rows: Vec<Value> = page
        .nodes
        .iter()
        .map(|s| serde_json::to_value(s).unwrap_or_default())
        .collect();
    let columns: Vec<output::Column<Value>> = vec![
        col("ID", |s: &Value| text(&s["id"])),
        col("PROC", |s: &Value| text(&s["procName"])),
        col("CRON", |s: &Value| text(&s["cron"])),
        col("TIMEZONE", |s: &Value| text(&s["timezone"])),
        col("ENABLED", |s: &Value| {
            if s["enabled"] == true {
                "yes"
            } else {
                "paused"
            }
            .to_owned()
        }),
        col("NEXT RUN", |s: &Value| text(&s["nextFireAt"])),
        col("AGE", |s: &Value| age(&text(&s["createdAt"]))),
        wide("GROUP", |s: &Value| text(&s["group"])),
        wide("TAGS", |s: &Value| joined(&s["tags"])),
        wide("OVERLAP", |s: &Value| text(&s["overlapPolicy"])),
        wide("OWNER", |s: &Value| text(&s["createdBy"])),
    ];
    out.list(
        &rows,
        &columns,
        |s| format!("schedule/{}", text(&s["id"])),
        "No schedules found",
    )?;
    if let Some(cursor) = page
        .page_info
        .end_cursor
        .filter(|_| page.page_info.has_next_page && out.human())
    {
        anstream::eprintln!(
            "{}",
            output::strip_controls(&format!("more: proctor schedules list --after {cursor}"))
        );
    }
    Ok(())
}

/// `proctor schedules …`: the same work as the v2 spellings, with kubectl-like lists.
pub async fn act(api: &Api, out: &Out, action: SchedulesAction) -> Result<(), CliError> {
    let v2 = |action| ScheduleArgs {
        action: Some(action),
        proc: None,
        args: Vec::new(),
        fields: ScheduleFields::default(),
    };
    match action {
        SchedulesAction::Create { proc, args, fields } => {
            create(api, out, proc, &args, fields).await
        }
        SchedulesAction::List(filter) => list_modern(api, out, filter).await,
        SchedulesAction::Get { id } => run(api, out, v2(ScheduleAction::Describe { id })).await,
        SchedulesAction::Update { id, args, fields } => update(api, out, &id, &args, fields).await,
        SchedulesAction::Delete { id } => run(api, out, v2(ScheduleAction::Remove { id })).await,
        SchedulesAction::Pause { id } => set_enabled(api, out, &id, false).await,
        SchedulesAction::Resume { id } => set_enabled(api, out, &id, true).await,
        SchedulesAction::Runs { id, limit } => {
            run(api, out, v2(ScheduleAction::Runs { id, limit })).await
        }
        SchedulesAction::Trigger { id, follow } => {
            let id = schedule_id(&id)?;
            let started = api
                .run::<TriggerSchedule>(trigger_schedule::Variables { id })
                .await?
                .trigger_schedule;
            crate::runs::follow_created(
                api,
                out,
                &started.id,
                &started.proc_name,
                follow,
                Spelling::Noun,
            )
            .await
        }
        SchedulesAction::Preview {
            cron,
            timezone,
            count,
        } => {
            if !(1..=100).contains(&count) {
                return Err(CliError::Usage("--count must be between 1 and 100".into()));
            }
            let times = api
                .run::<CronPreview>(cron_preview::Variables {
                    cron,
                    timezone,
                    count: Some(count),
                })
                .await?
                .cron_preview;
            if out.structured(&times)? {
                return Ok(());
            }
            for time in &times {
                anstream::println!("{time}");
            }
            Ok(())
        }
    }
}
