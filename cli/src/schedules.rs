//! `schedule PROC …` and `schedule list|describe|remove|pause|resume|update|runs`.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::api::{
    Api, CreateSchedule, DeleteSchedule, GetSchedule, ListSchedules, ScheduleRuns,
    SetScheduleEnabled, UpdateSchedule, create_schedule, delete_schedule, get_schedule,
    list_schedules, schedule_runs, set_schedule_enabled, update_schedule,
};
use crate::error::CliError;
use crate::output::{self, Format, green, magenta, pair, red};
use crate::runs::parse_enum;

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
#[derive(Args, Debug)]
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
    /// When the previous run is unfinished: allow, forbid or replace.
    #[arg(long)]
    overlap: Option<String>,
    /// Slots missed while no scheduler ran: skip, last or all.
    #[arg(long = "catch-up")]
    catch_up: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ScheduleAction {
    /// List scheduled jobs
    List {
        /// Only schedules of this proc.
        #[arg(long)]
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
    },
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
pub async fn run(api: &Api, format: Format, args: ScheduleArgs) -> Result<(), CliError> {
    match args.action {
        None => {
            create(
                api,
                format,
                args.proc.unwrap_or_default(),
                &args.args,
                args.fields,
            )
            .await
        }
        Some(ScheduleAction::List {
            proc,
            tag,
            group,
            limit,
            after,
        }) => {
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
            if output::structured(format, &page)? {
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
            anstream::println!(
                "{}",
                output::table(
                    &[
                        "ID",
                        "PROC NAME",
                        "GROUP NAME",
                        "TAGS",
                        "CRON",
                        "TIMEZONE",
                        "ENABLED",
                        "NEXT RUN"
                    ],
                    rows
                )
            );
            if let Some(cursor) = page
                .page_info
                .end_cursor
                .filter(|_| page.page_info.has_next_page)
            {
                anstream::eprintln!("more: proctor schedule list --after {cursor}");
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
            if output::structured(format, &schedule)? {
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
            anstream::println!(
                "{}",
                green(&format!("Successfully removed the scheduled job ID: {id}"))
            );
            Ok(())
        }
        Some(ScheduleAction::Pause { id }) => set_enabled(api, format, &id, false).await,
        Some(ScheduleAction::Resume { id }) => set_enabled(api, format, &id, true).await,
        Some(ScheduleAction::Update { id, args, fields }) => {
            update(api, format, &id, &args, fields).await
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
            if output::structured(format, &schedule.runs)? {
                return Ok(());
            }
            let runs = serde_json::to_value(&schedule.runs.nodes).unwrap_or_default();
            let rows = runs
                .as_array()
                .into_iter()
                .flatten()
                .map(|run| {
                    vec![
                        text(&run["slot"]),
                        text(&run["firedAt"]),
                        text(&run["outcome"]),
                        text(&run["execution"]["id"]),
                        text(&run["execution"]["status"]),
                        text(&run["detail"]),
                    ]
                })
                .collect();
            anstream::println!(
                "{}",
                output::table(
                    &[
                        "SLOT",
                        "FIRED AT",
                        "OUTCOME",
                        "EXECUTION",
                        "STATUS",
                        "DETAIL"
                    ],
                    rows
                )
            );
            Ok(())
        }
    }
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
        anstream::println!("{}", red("With No Variables"));
    } else {
        anstream::println!("{}", magenta("With Variables"));
        for (name, value) in args {
            anstream::println!("{}", pair(name, value));
        }
    }
}

async fn create(
    api: &Api,
    format: Format,
    proc: String,
    pairs: &[String],
    fields: ScheduleFields,
) -> Result<(), CliError> {
    let args = crate::args::collect(pairs, None)?;
    let cron = fields.cron.clone().ok_or_else(|| {
        CliError::Usage("--cron (-c) is required, e.g. -c '0 2 * * *' (02:00 every day)".into())
    })?;
    let quiet = format != Format::Table;
    if !quiet {
        anstream::println!("{}", pair("Creating Scheduled Job", &proc));
        print_args(&args);
    }
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
        overlap_policy: fields.overlap.as_deref().map(parse_enum).transpose()?,
        catch_up_policy: fields.catch_up.as_deref().map(parse_enum).transpose()?,
        slack_webhook_url: None,
        webhook_url: None,
    };
    let created = api
        .run::<CreateSchedule>(create_schedule::Variables { input })
        .await?
        .create_schedule;
    if output::structured(format, &created)? {
        return Ok(());
    }
    let created = serde_json::to_value(&created).unwrap_or_default();
    anstream::println!(
        "{}",
        green(&format!("Scheduled Job ID : {}", text(&created["id"])))
    );
    anstream::println!("{}", pair("Next Run", text(&created["nextFireAt"])));
    Ok(())
}

async fn set_enabled(api: &Api, format: Format, id: &str, enabled: bool) -> Result<(), CliError> {
    let id = schedule_id(id)?;
    let schedule = api
        .run::<SetScheduleEnabled>(set_schedule_enabled::Variables {
            id: id.clone(),
            enabled,
        })
        .await?
        .set_schedule_enabled;
    if output::structured(format, &schedule)? {
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
    format: Format,
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
        overlap_policy: fields.overlap.as_deref().map(parse_enum).transpose()?,
        catch_up_policy: fields.catch_up.as_deref().map(parse_enum).transpose()?,
        slack_webhook_url: None,
        webhook_url: None,
    };
    let updated = api
        .run::<UpdateSchedule>(update_schedule::Variables {
            id: id.clone(),
            input,
        })
        .await?
        .update_schedule;
    if output::structured(format, &updated)? {
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
    anstream::println!("{}", pair("Next Run", text(&schedule["nextFireAt"])));
    anstream::println!("{}", magenta("\nArgs"));
    for arg in schedule["args"].as_array().into_iter().flatten() {
        anstream::println!("{}", pair(&text(&arg["name"]), text(&arg["value"])));
    }
}
