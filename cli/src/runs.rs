//! `execute`, `logs`, `status`, `executions` and `cancel`.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::api::{
    Api, CancelExecution, Execute, ExecutionLogPage, FollowLogs, GetExecution, ListExecutions,
    StreamEnd, cancel_execution, execute, execution_log_page, follow_logs, get_execution,
    list_executions,
};
use crate::error::CliError;
use crate::output::{self, Format, LinePrinter, green, magenta, pair, red};
use crate::procs::enum_name;

/// Reconnections of `--follow` that may fail in a row before it gives up (about a minute).
const RECONNECTS: usize = 15;
/// The pause before the first reconnection; it doubles up to [`RECONNECT_LONGEST_PAUSE`].
const RECONNECT_FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between reconnections.
const RECONNECT_LONGEST_PAUSE: Duration = Duration::from_secs(5);
/// Lines per page when printing stored logs.
const LOG_PAGE: i64 = 1000;

/// `proctor execute`.
#[derive(Args, Debug)]
pub struct ExecuteArgs {
    /// The proc.
    proc: String,
    /// Arguments as KEY=VALUE.
    #[arg(value_name = "KEY=VALUE")]
    args: Vec<String>,
    /// A YAML file of arguments (e.g. from `proctor template`); KEY=VALUE wins.
    #[arg(short = 'f', long = "filename")]
    file: Option<PathBuf>,
    /// Return once the run is created, without streaming its logs.
    #[arg(long)]
    detach: bool,
    /// Print log lines exactly as the run wrote them, terminal control sequences included
    /// (they are removed on a terminal otherwise).
    #[arg(long)]
    raw: bool,
}

/// `proctor executions`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this proc.
    #[arg(long)]
    proc: Option<String>,
    #[arg(
        long,
        value_delimiter = ',',
        help = "Only these states (repeat or separate with commas), e.g. failed,timed-out"
    )]
    status: Vec<String>,
    /// Only runs started by this e-mail.
    #[arg(long)]
    user: Option<String>,
    /// Only runs started this way: MANUAL, SCHEDULE or API.
    #[arg(long)]
    trigger: Option<String>,
    /// How many to show (at most 100).
    #[arg(long, default_value_t = 20)]
    limit: i64,
    /// Continue after this cursor (printed when there are more).
    #[arg(long)]
    after: Option<String>,
}

/// Checks an execution id the way people type it.
fn execution_id(id: &str) -> Result<String, CliError> {
    id.trim()
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .map(|id| id.to_string())
        .ok_or_else(|| CliError::Usage("No valid execution context id provided as argument".into()))
}

/// The exit verdict of a finished run.
fn verdict(execution: &get_execution::GetExecutionExecution) -> Result<(), CliError> {
    let status = enum_name(&execution.status);
    if status == "SUCCEEDED" {
        return Ok(());
    }
    let mut message = format!("Execution {} {status}", execution.id);
    if let Some(code) = execution.exit_code {
        message.push_str(&format!(" (exit code {code})"));
    }
    if let Some(reason) = &execution.reason {
        message.push_str(&format!(": {reason}"));
    }
    Err(CliError::RunFailed(message))
}

/// `proctor execute`: starts a run, streams its logs until it ends, and exits by its outcome.
pub async fn execute(api: &Api, format: Format, args: ExecuteArgs) -> Result<(), CliError> {
    let values = crate::args::collect(&args.args, args.file.as_deref())?;
    let quiet = format != Format::Table;
    if !quiet {
        anstream::println!("{}", pair("Executing Proc", &args.proc));
        if values.is_empty() {
            anstream::println!("{}", red("With No Variables"));
        } else {
            anstream::println!("{}", magenta("With Variables"));
            for (name, value) in &values {
                anstream::println!("{}", pair(name, value));
            }
        }
    }
    let created = api
        .run::<Execute>(execute::Variables {
            proc: args.proc.clone(),
            args: Some(
                values
                    .into_iter()
                    .map(|(name, value)| execute::ArgInput { name, value })
                    .collect(),
            ),
        })
        .await?
        .execute;
    if args.detach {
        if !output::structured(format, &created)? {
            anstream::println!("{}", green("\nExecution Created"));
            anstream::println!("{}", green(&pair("ID", &created.id)));
            anstream::println!(
                "{}",
                green(&format!(
                    "\nFollow it with: proctor logs -f {}\nStatus: proctor status {}",
                    created.id, created.id
                ))
            );
        }
        return Ok(());
    }
    if !quiet {
        anstream::println!("{}", green("\nExecution Created"));
        anstream::println!("{}", green(&pair("ID", &created.id)));
        anstream::println!("{}", green("\nStreaming logs"));
    }
    follow(api, &created.id, quiet, LinePrinter::for_stdout(args.raw)).await?;
    let finished = fetch(api, &created.id).await?;
    if output::structured(format, &finished)? {
        return verdict(&finished);
    }
    match verdict(&finished) {
        Ok(()) => {
            anstream::println!("{}", green("\nExecution completed."));
            Ok(())
        }
        Err(failed) => Err(failed),
    }
}

async fn fetch(api: &Api, id: &str) -> Result<get_execution::GetExecutionExecution, CliError> {
    api.run::<GetExecution>(get_execution::Variables { id: id.to_owned() })
        .await?
        .execution
        .ok_or_else(|| CliError::Server {
            code: Some("NOT_FOUND".into()),
            message: format!("execution {id} not found"),
            field: None,
        })
}

/// Prints the log lines of execution `id` as they come until it ends; after a dropped
/// connection it reconnects and resumes after the last line printed, so no line is lost or
/// repeated. Reconnections back off (with jitter) from [`RECONNECT_FIRST_PAUSE`] up to
/// [`RECONNECT_LONGEST_PAUSE`]; after [`RECONNECTS`] failures in a row it gives up, and a
/// connection that delivered lines starts the count again. A spinner runs on a terminal until
/// the first line.
async fn follow(api: &Api, id: &str, quiet: bool, printer: LinePrinter) -> Result<(), CliError> {
    let spinner = (!quiet).then(|| {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(ProgressStyle::default_spinner());
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner
    });
    let clear = || {
        if let Some(spinner) = &spinner {
            spinner.finish_and_clear();
        }
    };
    let last_seq: Cell<Option<i64>> = Cell::new(None);
    let progressed = Cell::new(false);
    let connections = Cell::new(0_u32);
    let once = || async {
        progressed.set(false);
        connections.set(connections.get() + 1);
        let variables = follow_logs::Variables {
            id: id.to_owned(),
            after_seq: last_seq.get(),
        };
        let outcome = api
            .subscribe::<FollowLogs>(variables, |event| {
                clear();
                let batch = event.execution_log_batches;
                if !quiet {
                    for line in &batch.lines {
                        printer.print(&line.line);
                    }
                }
                last_seq.set(Some(batch.last_seq));
                progressed.set(true);
                Ok(())
            })
            .await;
        let reason = match outcome {
            Ok(StreamEnd::Completed) => return Ok(()),
            Ok(StreamEnd::Dropped(reason)) => reason,
            // The first connection must work: a wrong host is not worth a minute of retries.
            // Later ones may fail while the server restarts.
            Err(CliError::Unreachable(reason)) if connections.get() > 1 => reason,
            Err(other) => return Err(Lost::Fatal(other)),
        };
        Err(if progressed.get() {
            Lost::AfterLines(reason)
        } else {
            Lost::Dropped(reason)
        })
    };
    let backoff = ExponentialBuilder::new()
        .with_min_delay(RECONNECT_FIRST_PAUSE)
        .with_max_delay(RECONNECT_LONGEST_PAUSE)
        .with_jitter()
        .with_max_times(RECONNECTS);
    let notice = |reason: &str| {
        let resume = last_seq
            .get()
            .map_or("the start".to_owned(), |seq| format!("line {seq}"));
        let text = format!("connection lost ({reason}); resuming after {resume}…");
        anstream::eprintln!("{}", output::yellow(&text));
    };
    loop {
        let outcome = once
            .retry(backoff)
            .when(|lost| matches!(lost, Lost::Dropped(_)))
            .notify(|lost, _| {
                if let Lost::Dropped(reason) = lost {
                    notice(reason);
                }
            })
            .await;
        match outcome {
            Ok(()) => break,
            // Lines came before the drop: reconnect at once, with the whole budget again.
            Err(Lost::AfterLines(reason)) => notice(&reason),
            Err(Lost::Dropped(reason)) => {
                clear();
                return Err(CliError::Unreachable(format!(
                    "lost the log stream of execution {id} ({reason}) and could not reconnect; \
                     `proctor logs -f {id}` continues"
                )));
            }
            Err(Lost::Fatal(error)) => {
                clear();
                return Err(error);
            }
        }
    }
    clear();
    Ok(())
}

/// Why one connection of `--follow` ended without the log's end.
enum Lost {
    /// It dropped before delivering a line: retried with backoff.
    Dropped(String),
    /// It dropped after delivering lines.
    AfterLines(String),
    /// Not a connection problem (e.g. credentials): reported as is.
    Fatal(CliError),
}

/// `proctor logs ID [-f]`.
pub async fn logs(
    api: &Api,
    id: &str,
    follow_live: bool,
    printer: LinePrinter,
) -> Result<(), CliError> {
    let id = execution_id(id)?;
    if follow_live {
        return follow(api, &id, false, printer).await;
    }
    let mut after: Option<i64> = None;
    loop {
        let page = api
            .run::<ExecutionLogPage>(execution_log_page::Variables {
                id: id.clone(),
                after_seq: after,
                first: Some(LOG_PAGE),
            })
            .await?
            .execution
            .ok_or_else(|| CliError::Server {
                code: Some("NOT_FOUND".into()),
                message: format!("execution {id} not found"),
                field: None,
            })?;
        for line in &page.logs {
            printer.print(&line.line);
        }
        match page.logs.last() {
            Some(last) if page.logs.len() as i64 == LOG_PAGE => after = Some(last.seq),
            _ => return Ok(()),
        }
    }
}

/// `proctor status ID`.
pub async fn status(api: &Api, format: Format, id: &str) -> Result<(), CliError> {
    let id = execution_id(id)?;
    let execution = fetch(api, &id).await?;
    if output::structured(format, &execution)? {
        return Ok(());
    }
    let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    anstream::println!("{}", green(&pair("ID", &execution.id)));
    anstream::println!("{}", green(&pair("Job Name", &execution.proc_name)));
    anstream::println!("{}", green(&pair("Status", enum_name(&execution.status))));
    if let Some(code) = execution.exit_code {
        anstream::println!("{}", pair("Exit Code", code));
    }
    if let Some(reason) = &execution.reason {
        anstream::println!("{}", pair("Reason", reason));
    }
    anstream::println!("{}", pair("Trigger", enum_name(&execution.trigger)));
    anstream::println!("{}", pair("User", text(&execution.user)));
    anstream::println!("{}", pair("Created At", &execution.created_at));
    anstream::println!("{}", pair("Started At", text(&execution.started_at)));
    anstream::println!("{}", pair("Finished At", text(&execution.finished_at)));
    for arg in &execution.args {
        anstream::println!("{}", pair(&format!("Arg {}", arg.name), &arg.value));
    }
    Ok(())
}

/// `proctor executions`.
pub async fn list(api: &Api, format: Format, args: ListArgs) -> Result<(), CliError> {
    if !(1..=100).contains(&args.limit) {
        return Err(CliError::Usage("--limit must be between 1 and 100".into()));
    }
    let status = (!args.status.is_empty()).then(|| {
        args.status
            .iter()
            .map(|s| parse_enum::<list_executions::ExecutionStatus>(s))
            .collect::<Result<Vec<_>, _>>()
    });
    let filter = list_executions::ExecutionFilter {
        proc: args.proc,
        status: status.transpose()?,
        user: args.user,
        trigger: args
            .trigger
            .as_deref()
            .map(parse_enum::<list_executions::Trigger>)
            .transpose()?,
        created_after: None,
        created_before: None,
    };
    let page = api
        .run::<ListExecutions>(list_executions::Variables {
            first: Some(args.limit),
            after: args.after,
            filter: Some(filter),
        })
        .await?
        .executions;
    if output::structured(format, &page)? {
        return Ok(());
    }
    let rows = page
        .nodes
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.proc_name.clone(),
                enum_name(&e.status),
                enum_name(&e.trigger),
                e.user.clone().unwrap_or_default(),
                e.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                e.created_at.clone(),
            ]
        })
        .collect();
    anstream::println!(
        "{}",
        output::table(
            &["ID", "PROC", "STATUS", "TRIGGER", "USER", "EXIT", "CREATED"],
            rows
        )
    );
    if let Some(cursor) = page
        .page_info
        .end_cursor
        .filter(|_| page.page_info.has_next_page)
    {
        anstream::eprintln!("more: proctor executions --after {cursor}");
    }
    Ok(())
}

/// Reads a GraphQL enum value given on the command line (any case, `-` for `_`).
pub fn parse_enum<T>(text: &str) -> Result<T, CliError>
where
    T: serde::de::DeserializeOwned + std::fmt::Debug,
{
    let wanted = text.trim().to_uppercase().replace('-', "_");
    let parsed: T = serde_json::from_value(serde_json::Value::String(wanted))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    // graphql_client keeps values it does not know as `Other(..)`; refuse those here.
    if format!("{parsed:?}").starts_with("Other(") {
        return Err(CliError::Usage(format!("{text:?} is not a known value")));
    }
    Ok(parsed)
}

/// `proctor cancel ID`: stops the run and says how it ended.
pub async fn cancel(api: &Api, format: Format, id: &str) -> Result<(), CliError> {
    let id = execution_id(id)?;
    let cancelled = api
        .run::<CancelExecution>(cancel_execution::Variables { id: id.clone() })
        .await?
        .cancel_execution;
    if output::structured(format, &cancelled)? {
        return Ok(());
    }
    let mut message = format!(
        "Execution {} {}",
        cancelled.id,
        enum_name(&cancelled.status)
    );
    if let Some(reason) = &cancelled.reason {
        message.push_str(&format!(": {reason}"));
    }
    anstream::println!("{}", green(&message));
    Ok(())
}
