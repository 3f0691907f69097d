//! Runs: `runs start|list|get|logs|wait|cancel|rerun`, and the v2 spellings `execute`, `logs`,
//! `status`, `executions`, `cancel`.
//!
//! Exit codes follow the run: 0 when it SUCCEEDED, 1 when it ended otherwise (FAILED,
//! `TIMED_OUT`, CANCELLED, LOST, `CREATION_FAILED`), 2 when the command could not do its work, 130
//! when Ctrl-C detached from a run that goes on.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder, Retryable as _};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::api::{
    Api, CancelExecution, Execute, ExecutionLogPage, FollowLogs, FollowStatus, GetExecution,
    ListExecutions, StreamEnd, ValidateArgs, cancel_execution, execute, execution_log_page,
    follow_logs, follow_status, get_execution, list_executions, validate_args,
};
use crate::error::CliError;
use crate::output::{self, LinePrinter, Out, age, col, duration, green, magenta, pair, wide};
use crate::procs::enum_name;
use crate::watch::{OnInterrupt, RunState, SECOND_INTERRUPT_WINDOW, StatusLine};

/// Reconnections of a followed stream that may fail in a row before it gives up (about a
/// minute).
const RECONNECTS: usize = 15;
/// The pause before the first reconnection; it doubles up to [`RECONNECT_LONGEST_PAUSE`].
const RECONNECT_FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between reconnections.
const RECONNECT_LONGEST_PAUSE: Duration = Duration::from_secs(5);
/// Lines per page when printing stored logs.
const LOG_PAGE: i64 = 1000;

/// Which spelling a command was called by: the Go CLI's keeps its output byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// `execute`, `status`, `logs`, … as in Proctor v2.
    V2,
    /// `runs start`, `runs get`, `runs logs`, …
    Noun,
}

/// `proctor runs …`.
#[derive(Subcommand, Debug)]
pub enum RunsAction {
    /// Start a run of a proc and follow it until it ends (v2: `execute`)
    #[command(after_help = "Examples:\n  proctor runs start greet WHO=world\n  proctor runs \
                            start report -f report.yaml --detach -o name\n  proctor runs start \
                            greet WHO=x --dry-run")]
    Start(StartArgs),
    /// List runs, newest first (v2: `executions`)
    List(ListArgs),
    /// Show one run (v2: `status`)
    Get {
        /// Execution id.
        #[arg(add = crate::complete::executions())]
        id: String,
    },
    /// Print a run's output; with -f follow it until the run ends (v2: `logs`)
    Logs(LogsArgs),
    /// Wait until a run ends; the exit code tells how it ended
    Wait(WaitArgs),
    /// Cancel a run (v2: `cancel`)
    Cancel {
        /// Execution id.
        #[arg(add = crate::complete::executions())]
        id: String,
    },
    /// Start a new run with the arguments of an earlier one (KEY=VALUE overrides some)
    Rerun(RerunArgs),
}

/// How a command follows a run it started.
#[derive(Args, Debug)]
pub struct FollowArgs {
    /// Return once the run is created, without following it.
    #[arg(long)]
    detach: bool,
    /// Print log lines exactly as the run wrote them, terminal control sequences included
    /// (they are removed on a terminal otherwise).
    #[arg(long)]
    raw: bool,
    /// Put each log line's time (RFC 3339) in front of it.
    #[arg(long)]
    timestamps: bool,
    /// What Ctrl-C does: detach (a second Ctrl-C within 3 s cancels) or cancel.
    #[arg(long, value_enum, env = "PROCTOR_ON_INTERRUPT", default_value = "detach")]
    on_interrupt: OnInterrupt,
}

/// `proctor runs start` and `proctor execute`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// The proc.
    #[arg(add = crate::complete::procs())]
    proc: String,
    /// Arguments as KEY=VALUE.
    #[arg(value_name = "KEY=VALUE")]
    args: Vec<String>,
    /// A YAML file of arguments (e.g. from `proctor template`); KEY=VALUE wins.
    #[arg(short = 'f', long = "filename")]
    file: Option<PathBuf>,
    /// Check the arguments and show what the run would get, without running it.
    #[arg(long, conflicts_with = "detach")]
    dry_run: bool,
    #[command(flatten)]
    follow: FollowArgs,
}

/// Argument values as the `Execute` operation takes them (start and rerun).
fn execute_args(values: &std::collections::BTreeMap<String, String>) -> Vec<execute::ArgInput> {
    values
        .iter()
        .map(|(name, value)| execute::ArgInput {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// `proctor runs rerun`.
#[derive(Args, Debug)]
pub struct RerunArgs {
    /// The execution whose arguments to reuse.
    #[arg(add = crate::complete::executions())]
    id: String,
    /// Arguments to change, as KEY=VALUE.
    #[arg(value_name = "KEY=VALUE")]
    args: Vec<String>,
    #[command(flatten)]
    follow: FollowArgs,
}

/// `proctor runs logs` and `proctor logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Execution id.
    #[arg(add = crate::complete::executions())]
    id: String,
    /// Keep streaming until the run ends (resuming after dropped connections); the exit code
    /// then tells how it ended.
    #[arg(short, long)]
    follow: bool,
    /// Print lines exactly as the run wrote them, terminal control sequences included
    /// (they are removed on a terminal otherwise).
    #[arg(long)]
    raw: bool,
    /// Put each line's time (RFC 3339) in front of it.
    #[arg(long)]
    timestamps: bool,
}

/// `proctor runs wait`.
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Execution id.
    #[arg(add = crate::complete::executions())]
    id: String,
    /// Give up after this long (e.g. 90s, 10m, 1h; plain numbers are seconds): exit code 2.
    #[arg(long, value_parser = parse_span)]
    timeout: Option<Duration>,
}

/// An execution status, as flags take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "kebab-case")]
pub enum StatusArg {
    /// Waiting for a slot or the executor.
    Pending,
    /// Being created.
    Starting,
    /// Running.
    Running,
    /// Exited with code 0.
    Succeeded,
    /// Exited non-zero or failed in the executor.
    Failed,
    /// Killed at its deadline.
    #[value(alias = "timed_out")]
    TimedOut,
    /// Cancelled.
    Cancelled,
    /// The executor could not start it.
    #[value(alias = "creation_failed")]
    CreationFailed,
    /// The executor lost track of it.
    Lost,
}

/// How a run was started, as flags take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TriggerArg {
    /// By a person.
    Manual,
    /// By a schedule.
    Schedule,
    /// Through the REST shim.
    Api,
}

/// A [`ValueEnum`] value as the GraphQL enum value of the same name.
pub fn graphql_enum<T, V>(value: &V) -> Result<T, CliError>
where
    T: serde::de::DeserializeOwned + std::fmt::Debug,
    V: ValueEnum,
{
    let name = value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    parse_enum(&name)
}

/// `proctor runs list` and `proctor executions`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this proc.
    #[arg(long, add = crate::complete::procs())]
    proc: Option<String>,
    /// Only these states (repeat or separate with commas), e.g. failed,timed-out.
    #[arg(long, value_enum, value_delimiter = ',', ignore_case = true)]
    status: Vec<StatusArg>,
    /// Only runs started by this e-mail.
    #[arg(long)]
    user: Option<String>,
    /// Only runs started this way.
    #[arg(long, value_enum, ignore_case = true)]
    trigger: Option<TriggerArg>,
    /// How many to show (at most 100).
    #[arg(long, default_value_t = 20)]
    limit: i64,
    /// Continue after this cursor (printed when there are more).
    #[arg(long)]
    after: Option<String>,
}

/// Reads `90`, `90s`, `10m`, `2h` as a duration.
fn parse_span(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 10m or 1h"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number.saturating_mul(60),
        "h" => number.saturating_mul(3600),
        _ => return Err(format!("{text:?} is not a duration like 90s, 10m or 1h")),
    };
    Ok(Duration::from_secs(seconds))
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

type Execution = get_execution::GetExecutionExecution;

/// The exit verdict of a finished run, with the Go CLI's message.
fn verdict(execution: &Execution) -> Result<(), CliError> {
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

fn run_state(execution: &Execution) -> RunState {
    RunState {
        status: enum_name(&execution.status),
        attempts: execution.attempts,
        created_at: Some(execution.created_at.clone()),
        started_at: execution.started_at.clone(),
        finished_at: execution.finished_at.clone(),
    }
}

/// `SUCCEEDED in 4.0s · http://…/#/executions/7`, with the exit code and reason of a failure.
fn final_line(api: &Api, execution: &Execution) -> String {
    let state = run_state(execution);
    let mut line = state.status.clone();
    if let Some(elapsed) = state.elapsed() {
        line.push_str(&format!(" in {elapsed}"));
    }
    if state.status != "SUCCEEDED" {
        match (execution.exit_code, &execution.reason) {
            (Some(code), Some(reason)) => line.push_str(&format!(" (exit code {code}: {reason})")),
            (Some(code), None) => line.push_str(&format!(" (exit code {code})")),
            (None, Some(reason)) => line.push_str(&format!(" ({reason})")),
            (None, None) => {}
        }
    }
    line.push_str(&format!(" · {}", api.console_url(&execution.id)));
    output::strip_controls(&line)
}

/// The exit of a noun-verb command: the final line already told how the run ended.
fn outcome(execution: &Execution) -> Result<(), CliError> {
    match verdict(execution) {
        Ok(()) => Ok(()),
        Err(_) => Err(CliError::Reported(1)),
    }
}

/// `proctor runs start` and `proctor execute`.
pub async fn start(
    api: &Api,
    out: &Out,
    args: StartArgs,
    spelling: Spelling,
) -> Result<(), CliError> {
    let values = crate::args::collect(&args.args, args.file.as_deref())?;
    if args.dry_run {
        let checked = api
            .run::<ValidateArgs>(validate_args::Variables {
                proc: args.proc.clone(),
                args: Some(
                    values
                        .iter()
                        .map(|(name, value)| validate_args::ArgInput {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                ),
            })
            .await?
            .validate_args;
        if out.shown(&checked, |_| vec![format!("proc/{}", args.proc)])? {
            return Ok(());
        }
        anstream::println!(
            "{}",
            green(&format!(
                "The arguments are valid; a run of {} would get:",
                args.proc
            ))
        );
        for arg in &checked {
            anstream::println!("{}", pair(&arg.name, &arg.value));
        }
        return Ok(());
    }
    let created = api
        .run::<Execute>(execute::Variables {
            proc: args.proc.clone(),
            args: Some(execute_args(&values)),
        })
        .await?
        .execute;
    // The Go CLI's banner, once the server took the run (never before a refusal).
    if spelling == Spelling::V2 && out.human() {
        anstream::println!("{}", pair("Executing Proc", &args.proc));
        if values.is_empty() {
            anstream::println!("With No Variables");
        } else {
            anstream::println!("{}", magenta("With Variables"));
            for (name, value) in &values {
                anstream::println!("{}", pair(name, value));
            }
        }
    }
    follow_created(
        api,
        out,
        &created.id,
        &created.proc_name,
        args.follow,
        spelling,
    )
    .await
}

/// After a run was created: report it, then follow it unless `--detach`.
pub async fn follow_created(
    api: &Api,
    out: &Out,
    id: &str,
    proc: &str,
    follow: FollowArgs,
    spelling: Spelling,
) -> Result<(), CliError> {
    let name = |_: &&str| format!("execution/{id}");
    if follow.detach {
        let created = fetch(api, id).await?;
        if out.format == output::Format::Name {
            return out.one(&id, name, |_| {});
        }
        if out.structured(&created)? {
            return Ok(());
        }
        match spelling {
            Spelling::V2 => {
                anstream::println!("{}", green("\nExecution Created"));
                anstream::println!("{}", green(&pair("ID", id)));
                anstream::println!(
                    "{}",
                    green(&format!(
                        "\nFollow it with: proctor logs -f {id}\nStatus: proctor status {id}"
                    ))
                );
            }
            Spelling::Noun => {
                anstream::println!(
                    "Run {id} of {} created · {}",
                    output::strip_controls(proc),
                    api.console_url(id)
                );
                anstream::println!("  follow: proctor runs logs -f {id}");
                anstream::println!("  wait:   proctor runs wait {id}");
                anstream::println!("  cancel: proctor runs cancel {id}");
            }
        }
        return Ok(());
    }
    let human = out.human();
    match spelling {
        Spelling::V2 if human => {
            anstream::println!("{}", green("\nExecution Created"));
            anstream::println!("{}", green(&pair("ID", id)));
            anstream::println!("{}", green("\nStreaming logs"));
        }
        Spelling::Noun if human => anstream::eprintln!(
            "Run {id} of {} created · {}",
            output::strip_controls(proc),
            api.console_url(id)
        ),
        _ => {}
    }
    let sink = if human {
        LogSink::Text {
            printer: LinePrinter::for_stdout(follow.raw),
            timestamps: follow.timestamps,
        }
    } else {
        LogSink::Quiet
    };
    let line = StatusLine::new(human);
    let finished = watch(api, id, &sink, &line, follow.on_interrupt).await?;
    line.finish();
    if human && (spelling == Spelling::Noun || line.drawn()) {
        anstream::eprintln!("{}", final_line(api, &finished));
    }
    if out.format == output::Format::Name {
        anstream::println!("execution/{id}");
        return verdict(&finished);
    }
    if out.structured(&finished)? {
        return verdict(&finished);
    }
    match spelling {
        Spelling::V2 => {
            verdict(&finished)?;
            anstream::println!("{}", green("\nExecution completed."));
            Ok(())
        }
        Spelling::Noun if human => outcome(&finished),
        Spelling::Noun => verdict(&finished),
    }
}

/// Follows run `id` (its log through `sink`, its state on `line`) until it ends, then returns
/// it as stored. Ctrl-C detaches or cancels as `on_interrupt` says.
async fn watch(
    api: &Api,
    id: &str,
    sink: &LogSink,
    line: &StatusLine,
    on_interrupt: OnInterrupt,
) -> Result<Execution, CliError> {
    let work = async {
        let logs = follow(api, id, sink, line);
        let states = async {
            if line.drawn() {
                follow_states(api, id, line).await;
            }
            std::future::pending::<()>().await;
        };
        let ticks = async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                line.redraw();
            }
        };
        tokio::select! {
            followed = logs => followed,
            () = states => Ok(()),
            () = ticks => Ok(()),
        }
    };
    tokio::select! {
        followed = work => {
            followed?;
            fetch(api, id).await
        }
        interrupted = tokio::signal::ctrl_c() => {
            line.finish();
            interrupted.map_err(|e| CliError::Io(format!("cannot watch for Ctrl-C: {e}")))?;
            interrupt(api, id, on_interrupt).await
        }
    }
}

/// After Ctrl-C: cancel the run, or detach and cancel only on a second Ctrl-C.
async fn interrupt(api: &Api, id: &str, on_interrupt: OnInterrupt) -> Result<Execution, CliError> {
    if on_interrupt == OnInterrupt::Detach {
        anstream::eprintln!(
            "\nDetached: run {id} goes on.\n  follow: proctor runs logs -f {id}\n  cancel: \
             proctor runs cancel {id}\nPress Ctrl-C again within {}s to cancel it.",
            SECOND_INTERRUPT_WINDOW.as_secs()
        );
        tokio::select! {
            () = tokio::time::sleep(SECOND_INTERRUPT_WINDOW) => {
                return Err(CliError::Reported(130));
            }
            again = tokio::signal::ctrl_c() => {
                again.map_err(|e| CliError::Io(format!("cannot watch for Ctrl-C: {e}")))?;
            }
        }
    }
    anstream::eprintln!("Cancelling run {id}…");
    let cancelled = api
        .run::<CancelExecution>(cancel_execution::Variables { id: id.to_owned() })
        .await?
        .cancel_execution;
    let finished = fetch(api, id).await?;
    anstream::eprintln!(
        "{}",
        output::strip_controls(&format!(
            "Run {id} {}{}",
            enum_name(&cancelled.status),
            cancelled
                .reason
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ))
    );
    Err(CliError::Reported(match verdict(&finished) {
        Ok(()) => 0,
        Err(_) => 1,
    }))
}

/// Follows the run's state onto the status line, reconnecting with backoff; returns when the
/// run ended or the stream could not be had (the log decides the end, not this).
async fn follow_states(api: &Api, id: &str, line: &StatusLine) {
    let mut pauses = backoff().build();
    loop {
        let outcome = api
            .subscribe::<FollowStatus>(follow_status::Variables { id: id.to_owned() }, |event| {
                let run = event.execution_status;
                line.update(RunState {
                    status: enum_name(&run.status),
                    attempts: run.attempts,
                    created_at: Some(run.created_at),
                    started_at: run.started_at,
                    finished_at: run.finished_at,
                });
                Ok(())
            })
            .await;
        match outcome {
            Ok(StreamEnd::Completed) | Err(_) => return,
            Ok(StreamEnd::Dropped(_)) => match pauses.next() {
                Some(pause) => tokio::time::sleep(pause).await,
                None => return,
            },
        }
    }
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(RECONNECT_FIRST_PAUSE)
        .with_max_delay(RECONNECT_LONGEST_PAUSE)
        .with_jitter()
        .with_max_times(RECONNECTS)
}

async fn fetch(api: &Api, id: &str) -> Result<Execution, CliError> {
    api.run::<GetExecution>(get_execution::Variables { id: id.to_owned() })
        .await?
        .execution
        .ok_or_else(|| CliError::Server {
            code: Some("NOT_FOUND".into()),
            message: format!("execution {id} not found"),
            field: None,
        })
}

/// One log line as `logs -o json` prints it (one JSON object per line).
#[derive(Debug, Serialize)]
struct JsonLine<'a> {
    seq: i64,
    stream: String,
    time: &'a str,
    line: &'a str,
}

/// Where followed or stored log lines go.
enum LogSink {
    /// Nowhere (`-o json` of `execute`: only the finished run is printed).
    Quiet,
    /// As text, maybe with times in front.
    Text {
        printer: LinePrinter,
        timestamps: bool,
    },
    /// As JSON lines.
    Json,
}

impl LogSink {
    fn print(&self, line: &StatusLine, seq: i64, stream: &impl Serialize, time: &str, text: &str) {
        match self {
            Self::Quiet => {}
            Self::Text {
                printer,
                timestamps,
            } => line.above(|| {
                if *timestamps {
                    printer.print(&format!("{time} {text}"));
                } else {
                    printer.print(text);
                }
            }),
            Self::Json => {
                let json = JsonLine {
                    seq,
                    stream: enum_name(stream),
                    time,
                    line: text,
                };
                if let Ok(text) = serde_json::to_string(&json) {
                    line.above(|| println!("{text}"));
                }
            }
        }
    }
}

/// Prints the log lines of execution `id` as they come until it ends; after a dropped
/// connection it reconnects and resumes after the last line printed, so no line is lost or
/// repeated. Reconnections back off (with jitter) from [`RECONNECT_FIRST_PAUSE`] up to
/// [`RECONNECT_LONGEST_PAUSE`]; after [`RECONNECTS`] failures in a row it gives up, and a
/// connection that delivered lines starts the count again. The notice of a lost connection is
/// the status line on a terminal, else one stderr line per outage.
async fn follow(api: &Api, id: &str, sink: &LogSink, line: &StatusLine) -> Result<(), CliError> {
    let last_seq: Cell<Option<i64>> = Cell::new(None);
    let progressed = Cell::new(false);
    let connections = Cell::new(0_u32);
    let outage = Cell::new(false);
    let once = || async {
        progressed.set(false);
        connections.set(connections.get() + 1);
        let variables = follow_logs::Variables {
            id: id.to_owned(),
            after_seq: last_seq.get(),
        };
        let outcome = api
            .subscribe::<FollowLogs>(variables, |event| {
                let batch = event.execution_log_batches;
                if outage.replace(false) {
                    line.clear_trouble();
                }
                for log in &batch.lines {
                    sink.print(line, log.seq, &log.stream, &log.timestamp, &log.line);
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
    let notice = |reason: &str| {
        let resume = last_seq
            .get()
            .map_or("the start".to_owned(), |seq| format!("line {seq}"));
        let text = format!("connection lost ({reason}); resuming after {resume}…");
        if line.drawn() {
            line.trouble(output::strip_controls(&text));
        } else if !outage.replace(true) {
            anstream::eprintln!("{}", output::yellow(&output::strip_controls(&text)));
        }
    };
    loop {
        let outcome = once
            .retry(backoff())
            .when(|lost| matches!(lost, Lost::Dropped(_)))
            .notify(|lost, _| {
                if let Lost::Dropped(reason) = lost {
                    notice(reason);
                }
            })
            .await;
        match outcome {
            Ok(()) => return Ok(()),
            // Lines came before the drop: reconnect at once, with the whole budget again.
            Err(Lost::AfterLines(reason)) => notice(&reason),
            Err(Lost::Dropped(reason)) => {
                return Err(CliError::Unreachable(format!(
                    "lost the log stream of execution {id} ({reason}) and could not reconnect; \
                     `proctor runs logs -f {id}` continues"
                )));
            }
            Err(Lost::Fatal(error)) => return Err(error),
        }
    }
}

/// Why one connection of a followed log ended without the log's end.
enum Lost {
    /// It dropped before delivering a line: retried with backoff.
    Dropped(String),
    /// It dropped after delivering lines.
    AfterLines(String),
    /// Not a connection problem (e.g. credentials): reported as is.
    Fatal(CliError),
}

/// `proctor runs logs` and `proctor logs`: stored lines, or with `-f` every line until the run
/// ends, then (with `-f`) an exit code by its outcome.
pub async fn logs(api: &Api, out: &Out, args: LogsArgs) -> Result<(), CliError> {
    let id = execution_id(&args.id)?;
    let sink = match out.format {
        output::Format::Json => LogSink::Json,
        output::Format::Table => LogSink::Text {
            printer: LinePrinter::for_stdout(args.raw),
            timestamps: args.timestamps,
        },
        _ => {
            return Err(CliError::Usage(
                "logs print text (the default) or JSON lines (-o json)".into(),
            ));
        }
    };
    if args.follow {
        let line = StatusLine::new(matches!(sink, LogSink::Text { .. }));
        let finished = watch(api, &id, &sink, &line, OnInterrupt::Detach).await?;
        line.finish();
        if line.drawn() || verdict(&finished).is_err() {
            anstream::eprintln!("{}", final_line(api, &finished));
        }
        return outcome(&finished);
    }
    let quiet = StatusLine::new(false);
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
        for log in &page.logs {
            sink.print(&quiet, log.seq, &log.stream, &log.timestamp, &log.line);
        }
        match page.logs.last() {
            Some(last) if page.logs.len() as i64 == LOG_PAGE => after = Some(last.seq),
            _ => return Ok(()),
        }
    }
}

/// `proctor runs get` and `proctor status`.
pub async fn get(api: &Api, out: &Out, id: &str, spelling: Spelling) -> Result<(), CliError> {
    let id = execution_id(id)?;
    let execution = fetch(api, &id).await?;
    out.one(
        &execution,
        |e| format!("execution/{}", e.id),
        |execution| {
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
            if spelling == Spelling::Noun {
                let state = run_state(execution);
                anstream::println!("{}", pair("Duration", state.elapsed().unwrap_or_default()));
                anstream::println!("{}", pair("Attempts", execution.attempts));
                if let Some(version) = execution.proc_version {
                    anstream::println!("{}", pair("Proc Version", version));
                }
                if let Some(schedule) = &execution.schedule_id {
                    anstream::println!("{}", pair("Schedule", schedule));
                }
                if execution.log_lines_lost > 0 {
                    anstream::println!("{}", pair("Log Lines Lost", execution.log_lines_lost));
                }
                anstream::println!("{}", pair("Console", api.console_url(&execution.id)));
            }
        },
    )
}

/// `proctor runs wait`: until the run ends (or `--timeout`), then its final line; the exit code
/// tells how it ended.
pub async fn wait(api: &Api, out: &Out, args: WaitArgs) -> Result<(), CliError> {
    let id = execution_id(&args.id)?;
    let until_final = async {
        // Between rounds (a subscription refused or dropped at once, e.g. websockets blocked
        // by a proxy) the pause grows, with jitter, up to RECONNECT_LONGEST_PAUSE.
        let mut pauses = backoff().without_max_times().build();
        loop {
            let current = fetch(api, &id).await?;
            if current.finished_at.is_some() {
                return Ok::<_, CliError>(current);
            }
            // The subscription completes at the final state; a dropped one is simply retried
            // after a look at the stored state.
            let quiet = StatusLine::new(false);
            follow_states(api, &id, &quiet).await;
            let current = fetch(api, &id).await?;
            if current.finished_at.is_some() {
                return Ok(current);
            }
            tokio::time::sleep(pauses.next().unwrap_or(RECONNECT_LONGEST_PAUSE)).await;
        }
    };
    let finished = match args.timeout {
        None => until_final.await?,
        Some(limit) => match tokio::time::timeout(limit, until_final).await {
            Ok(finished) => finished?,
            Err(_) => {
                let current = fetch(api, &id).await?;
                return Err(CliError::Usage(format!(
                    "run {id} is still {} after {}",
                    enum_name(&current.status),
                    output::seconds_text(limit.as_secs_f64())
                )));
            }
        },
    };
    out.one(
        &finished,
        |e| format!("execution/{}", e.id),
        |finished| anstream::println!("{}", final_line(api, finished)),
    )?;
    verdict(&finished).map_err(|_| CliError::Reported(1))
}

/// `proctor runs list` and `proctor executions`; the hint for the next page repeats the
/// spelling that was typed.
pub async fn list(
    api: &Api,
    out: &Out,
    args: ListArgs,
    spelling: Spelling,
) -> Result<(), CliError> {
    if !(1..=100).contains(&args.limit) {
        return Err(CliError::Usage("--limit must be between 1 and 100".into()));
    }
    let status = (!args.status.is_empty()).then(|| {
        args.status
            .iter()
            .map(graphql_enum::<list_executions::ExecutionStatus, _>)
            .collect::<Result<Vec<_>, _>>()
    });
    let filter = list_executions::ExecutionFilter {
        proc: args.proc,
        status: status.transpose()?,
        user: args.user,
        trigger: args.trigger.as_ref().map(graphql_enum).transpose()?,
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
    type Row = list_executions::ListExecutionsExecutionsNodes;
    let columns: Vec<output::Column<Row>> = vec![
        col("ID", |e: &Row| e.id.clone()),
        col("PROC", |e: &Row| e.proc_name.clone()),
        col("STATUS", |e: &Row| enum_name(&e.status)),
        col("TRIGGER", |e: &Row| enum_name(&e.trigger)),
        col("USER", |e: &Row| e.user.clone().unwrap_or_default()),
        col("EXIT", |e: &Row| {
            e.exit_code.map(|c| c.to_string()).unwrap_or_default()
        }),
        col("AGE", |e: &Row| age(&e.created_at)),
        col("DURATION", |e: &Row| {
            duration(e.started_at.as_deref(), e.finished_at.as_deref())
        }),
        wide("ATTEMPTS", |e: &Row| e.attempts.to_string()),
        wide("CREATED", |e: &Row| e.created_at.clone()),
    ];
    out.list(
        &page.nodes,
        &columns,
        |e| format!("execution/{}", e.id),
        "No runs found",
    )?;
    if let Some(cursor) = page
        .page_info
        .end_cursor
        .filter(|_| page.page_info.has_next_page && out.human())
    {
        let command = match spelling {
            Spelling::V2 => "executions",
            Spelling::Noun => "runs list",
        };
        anstream::eprintln!(
            "{}",
            output::strip_controls(&format!("more: proctor {command} --after {cursor}"))
        );
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

/// `proctor runs cancel` and `proctor cancel`: stops the run and says how it ended.
pub async fn cancel(api: &Api, out: &Out, id: &str) -> Result<(), CliError> {
    let id = execution_id(id)?;
    let cancelled = api
        .run::<CancelExecution>(cancel_execution::Variables { id: id.clone() })
        .await?
        .cancel_execution;
    out.one(
        &cancelled,
        |c| format!("execution/{}", c.id),
        |cancelled| {
            let mut message = format!(
                "Execution {} {}",
                cancelled.id,
                enum_name(&cancelled.status)
            );
            if let Some(reason) = &cancelled.reason {
                message.push_str(&format!(": {reason}"));
            }
            anstream::println!("{}", green(&output::strip_controls(&message)));
        },
    )
}

/// `proctor runs rerun`: a new run of the same proc with the same arguments (secrets are the
/// proc's current ones), some replaced by KEY=VALUE.
pub async fn rerun(api: &Api, out: &Out, args: RerunArgs) -> Result<(), CliError> {
    let id = execution_id(&args.id)?;
    let earlier = fetch(api, &id).await?;
    let mut values: std::collections::BTreeMap<String, String> = earlier
        .args
        .iter()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect();
    values.extend(crate::args::collect(&args.args, None)?);
    let created = api
        .run::<Execute>(execute::Variables {
            proc: earlier.proc_name.clone(),
            args: Some(execute_args(&values)),
        })
        .await?
        .execute;
    if out.human() {
        anstream::eprintln!("Rerunning {id} as {}", created.id);
    }
    follow_created(
        api,
        out,
        &created.id,
        &created.proc_name,
        args.follow,
        Spelling::Noun,
    )
    .await
}

/// `proctor runs …`.
pub async fn act(api: &Api, out: &Out, action: RunsAction) -> Result<(), CliError> {
    match action {
        RunsAction::Start(args) => start(api, out, args, Spelling::Noun).await,
        RunsAction::List(args) => list(api, out, args, Spelling::Noun).await,
        RunsAction::Get { id } => get(api, out, &id, Spelling::Noun).await,
        RunsAction::Logs(args) => logs(api, out, args).await,
        RunsAction::Wait(args) => wait(api, out, args).await,
        RunsAction::Cancel { id } => cancel(api, out, &id).await,
        RunsAction::Rerun(args) => rerun(api, out, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_seconds_minutes_and_hours() {
        assert_eq!(parse_span("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_span("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_span("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_span("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_span("soon").is_err());
        assert!(parse_span("5d").is_err());
    }

    #[test]
    fn every_status_and_trigger_flag_is_a_graphql_value() {
        for status in StatusArg::value_variants() {
            graphql_enum::<list_executions::ExecutionStatus, _>(status).unwrap();
        }
        for trigger in TriggerArg::value_variants() {
            graphql_enum::<list_executions::Trigger, _>(trigger).unwrap();
        }
    }
}
