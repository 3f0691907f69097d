//! Execution queries, mutations, subscriptions and types.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use proctor_entity::values;
use proctor_entity::{execution, execution_log, proc};

use super::service::{self, ExecuteRequest, ExecutionQuery, may_read, parse_id};
use super::stream::{follow_log_batches, follow_logs, follow_status};
use crate::auth::{Caller, app_state, caller, request};
use crate::error::{ApiError, ApiResultExt};
use crate::notifications::Delivery as NotificationRow;
use crate::pagination::{PageRequest, connection};
use crate::ports::event_bus::{Delivery, Event, Topic};
use crate::procs::service::ProcView;
use crate::procs::{Arg, ArgInput, Proc, arg_values};
use crate::state::AppState;

/// Where an execution is in its life cycle.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "values::ExecutionStatus")]
pub enum ExecutionStatus {
    /// Stored; waiting for a free slot or the executor.
    Pending,
    /// The executor is creating the process or Job.
    Starting,
    /// Running.
    Running,
    /// Exited with code 0.
    Succeeded,
    /// Exited non-zero or failed in the executor.
    Failed,
    /// Killed at its deadline.
    TimedOut,
    /// Cancelled.
    Cancelled,
    /// The executor could not start it.
    CreationFailed,
    /// The executor lost track of it.
    Lost,
}

/// Where a notification stands.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::notifications::DeliveryState")]
pub enum NotificationState {
    /// Not delivered yet; retried with backoff.
    Pending,
    /// The channel accepted it.
    Delivered,
    /// Given up.
    Failed,
}

/// One notification about an execution's end.
#[derive(SimpleObject, Clone, Debug)]
pub struct NotificationDelivery {
    /// `email`, `slack` or `webhook`.
    pub channel: String,
    /// The recipients, the URL's host, or `server default`.
    pub target: String,
    /// Where it stands.
    pub state: NotificationState,
    /// Attempts made.
    pub attempts: i32,
    /// Why the last attempt failed (administrators; others see `failed`).
    pub last_error: Option<String>,
    /// When the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Sent along (`Idempotency-Key`, e-mail `Message-ID`) so receivers drop duplicates.
    pub idempotency_key: String,
}

impl NotificationDelivery {
    fn shown(delivery: crate::notifications::Delivery, admin: bool) -> Self {
        Self {
            channel: delivery.channel,
            target: delivery.target,
            state: delivery.state.into(),
            attempts: delivery.attempts,
            last_error: delivery
                .last_error
                .map(|error| if admin { error } else { "failed".to_owned() }),
            next_attempt_at: delivery.next_attempt_at,
            delivered_at: delivery.delivered_at,
            idempotency_key: delivery.idempotency_key,
        }
    }
}

/// What started an execution.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "values::Trigger")]
pub enum Trigger {
    /// A person, through GraphQL or the CLI.
    Manual,
    /// A schedule.
    Schedule,
    /// A legacy REST client or script.
    Api,
}

/// Which stream a line came from.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "values::LogStream")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Lines Proctor adds (truncation notice, retry markers).
    System,
}

/// One output line.
#[derive(SimpleObject, Clone, Debug)]
pub struct LogLine {
    /// Position in the execution's output, from 1 without gaps; resume after it with `afterSeq`.
    pub seq: i64,
    /// Which stream.
    pub stream: LogStream,
    /// The text, secret values masked as `***`.
    pub line: String,
    /// When it was read.
    pub timestamp: DateTime<Utc>,
    /// Bytes of the original output were replaced by U+FFFD to store it (a NUL character, or
    /// bytes that were not UTF-8).
    pub replaced: bool,
}

impl From<execution_log::Model> for LogLine {
    fn from(model: execution_log::Model) -> Self {
        Self {
            seq: model.seq,
            stream: model.stream.into(),
            line: model.line,
            timestamp: model.logged_at,
            replaced: model.replaced,
        }
    }
}

/// A signed run receipt.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Receipt")]
pub struct ReceiptView {
    /// Canonical JSON: proc, version, definition hash, arguments, secret names, trigger,
    /// caller, image, times, status, exit code, output line count and hash.
    pub payload: String,
    /// Signature of the payload's UTF-8 bytes (JWS ES256 form: base64url of r ‖ s).
    pub signature: String,
    /// The signing key's `kid` in `/.well-known/jwks.json`.
    pub key_id: String,
    /// `ES256`.
    pub algorithm: &'static str,
}

/// A stored line that matched a `logMatches` pattern.
#[derive(SimpleObject, Clone, Debug)]
pub struct LogMatch {
    /// The execution that printed it.
    pub execution_id: ID,
    /// Its proc.
    pub proc: String,
    /// The line.
    pub line: LogLine,
}

/// Consecutive output lines delivered together by `executionLogBatches`.
#[derive(SimpleObject, Clone, Debug)]
pub struct LogBatch {
    /// The lines, in order, at least one; each `seq` is one more than the one before.
    pub lines: Vec<LogLine>,
    /// `seq` of the last line: resume after it with `afterSeq`.
    pub last_seq: i64,
}

/// `maxLines` of `executionLogBatches` when omitted.
const DEFAULT_BATCH_LINES: i32 = 1_000;

/// Largest `first` for `Execution.logs`.
const MAX_LOG_PAGE: i32 = 10_000;
/// `first` of `Execution.logs` when omitted.
const DEFAULT_LOG_PAGE: u64 = 1_000;
/// Lines read from the database at a time for `Execution.logs`.
const LOG_READ_PAGE: u64 = 500;

/// One run of a proc, with what its page loaded for every row at once.
pub struct Execution(pub execution::Model, Related);

impl From<execution::Model> for Execution {
    fn from(row: execution::Model) -> Self {
        Self(row, Related::default())
    }
}

/// What a page of executions loads at once for all its rows, when the query selects it: the
/// procs (one batch) and the notifications (one batch), so the page costs the same number of
/// statements whatever its size. A row outside a page loads through [`crate::loaders`].
#[derive(Clone, Default)]
pub struct Related {
    procs: Option<Arc<HashMap<i64, ProcView>>>,
    notifications: Option<Arc<HashMap<i64, Vec<NotificationRow>>>>,
}

impl Related {
    /// Loads what the selection of `ctx` (a connection of executions) asks of `rows`.
    async fn for_page(ctx: &Context<'_>, rows: &[execution::Model]) -> Result<Self, ApiError> {
        let node = ctx.look_ahead().field("edges").field("node");
        let mut related = Self::default();
        if node.field("proc").exists() {
            let mut ids: Vec<i64> = rows.iter().filter_map(|row| row.proc_id).collect();
            ids.sort_unstable();
            ids.dedup();
            related.procs = Some(Arc::new(crate::loaders::procs(ctx, &ids).await?));
        }
        if node.field("notifications").exists() {
            let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
            let loaded = crate::loaders::notifications_of(ctx, &ids).await?;
            related.notifications = Some(Arc::new(loaded));
        }
        Ok(related)
    }
}

#[Object]
impl Execution {
    /// Execution id (a 64-bit number).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The proc it ran.
    async fn proc_name(&self) -> &str {
        &self.0.proc_name
    }
    /// The proc, if it still exists and the caller may see it.
    async fn proc(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Proc>> {
        let caller = caller(ctx).await.gql()?;
        let Some(proc_id) = self.0.proc_id else {
            return Ok(None);
        };
        let view = match &self.1.procs {
            Some(procs) => procs.get(&proc_id).cloned(),
            None => crate::loaders::proc(ctx, proc_id).await.gql()?,
        };
        Ok(view
            .filter(|view| caller.may_run(&view.model))
            .map(Proc::from))
    }
    /// Current state.
    async fn status(&self) -> ExecutionStatus {
        self.0.status.into()
    }
    /// The argument values it ran with (defaults included; never secrets).
    async fn args(&self) -> Vec<Arg> {
        self.0.args.0.iter().cloned().map(Arg::from).collect()
    }
    /// What started it.
    async fn trigger(&self) -> Trigger {
        self.0.trigger.into()
    }
    /// Who started it.
    async fn user(&self) -> Option<&str> {
        self.0.user_email.as_deref()
    }
    /// Exit code, once it exited.
    async fn exit_code(&self) -> Option<i32> {
        self.0.exit_code
    }
    /// Why it failed, timed out, was cancelled or lost.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    /// Output lines that could not be stored and were lost (0 normally); a `SYSTEM` line
    /// marks where, when the database could still store one.
    async fn log_lines_lost(&self) -> i64 {
        self.0.log_lines_lost
    }
    /// Attempts so far: 1, plus one for each time a failed attempt was started again (the
    /// proc's `retries`); a `SYSTEM` line `[proctor] attempt N` opens each one in the output.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// Who was told how it ended, and how that went (empty until it ended, or when nobody
    /// is to be told). Why a delivery failed is shown to administrators only.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<NotificationDelivery>> {
        let admin = caller(ctx).await.is_ok_and(|caller| caller.admin);
        let deliveries = match &self.1.notifications {
            Some(loaded) => loaded.get(&self.0.id).cloned().unwrap_or_default(),
            None => crate::loaders::notifications(ctx, self.0.id).await.gql()?,
        };
        Ok(deliveries
            .into_iter()
            .map(|delivery| NotificationDelivery::shown(delivery, admin))
            .collect())
    }
    /// What it was and did, signed with the server's key (see `/.well-known/jwks.json` and
    /// `proctord receipts verify`); null until it has finished.
    async fn receipt(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ReceiptView>> {
        if !self.0.status.is_final() {
            return Ok(None);
        }
        let state = app_state(ctx).gql()?;
        let receipt = super::receipts::issue(state, self.0.id).await.gql()?;
        Ok(receipt.map(|receipt| ReceiptView {
            payload: receipt.payload,
            signature: receipt.signature,
            key_id: receipt.key_id,
            algorithm: crate::signing::ALGORITHM,
        }))
    }
    /// The version of its proc it ran (see `Proc.definitionAt`); null for runs stored before
    /// versions were kept.
    async fn proc_version(&self) -> Option<i32> {
        self.0.proc_version
    }
    /// The schedule that fired it.
    async fn schedule_id(&self) -> Option<ID> {
        self.0.schedule_id.map(|id| ID(id.to_string()))
    }
    /// The image it ran (Kubernetes).
    async fn image(&self) -> Option<&str> {
        self.0.image.as_deref()
    }
    /// Process id (local) or Job name (Kubernetes).
    async fn executor_ref(&self) -> Option<&str> {
        self.0
            .executor_ref
            .as_deref()
            .map(crate::ports::executor::shown_ref)
    }
    /// When it was submitted.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it started running.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    /// When it ended.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// Stored output after `afterSeq` (default 0), at most `first` lines (default 1000,
    /// at most 10000).
    #[graphql(
        complexity = "crate::pagination::list_cost(first, DEFAULT_LOG_PAGE, MAX_LOG_PAGE as u64, child_complexity) / crate::pagination::LINES_PER_COST"
    )]
    async fn logs(
        &self,
        ctx: &Context<'_>,
        after_seq: Option<i64>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<LogLine>> {
        let state = app_state(ctx).gql()?;
        let first = match first {
            None => DEFAULT_LOG_PAGE,
            Some(n) if (0..=MAX_LOG_PAGE).contains(&n) => n as u64,
            Some(_) => {
                return Err(ApiError::bad_input(
                    "first",
                    format!("must be between 0 and {MAX_LOG_PAGE}"),
                ))
                .gql();
            }
        };
        // Read page by page, charging the response's budget before reading on, so a query
        // that asks for too much stops with an error after at most one page too many.
        let budget = crate::limits::budget(ctx);
        let mut lines = Vec::new();
        let mut after = after_seq.unwrap_or(0);
        while (lines.len() as u64) < first {
            let want = (first - lines.len() as u64).min(LOG_READ_PAGE);
            let page = service::stored_logs(state, self.0.id, after, want)
                .await
                .gql()?;
            if let Some(budget) = budget {
                let bytes = page.iter().map(|line| line.line.len()).sum();
                budget.charge(page.len(), bytes).gql()?;
            }
            let done = (page.len() as u64) < want;
            if let Some(last) = page.last() {
                after = last.seq;
            }
            lines.extend(page.into_iter().map(LogLine::from));
            if done {
                break;
            }
        }
        Ok(lines)
    }
}

/// Narrows the executions list.
#[derive(InputObject, Clone, Debug, Default)]
pub struct ExecutionFilter {
    /// Only this proc.
    pub proc: Option<String>,
    /// Only executions in these states.
    pub status: Option<Vec<ExecutionStatus>>,
    /// Only executions started by this e-mail.
    pub user: Option<String>,
    /// Only this trigger.
    pub trigger: Option<Trigger>,
    /// Created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this time.
    pub created_before: Option<DateTime<Utc>>,
}

/// Execution queries.
#[derive(Default)]
pub struct ExecutionsQuery;

#[Object]
impl ExecutionsQuery {
    /// One execution; null when there is none, `FORBIDDEN` when the caller may not see it.
    #[graphql(complexity = "crate::pagination::LOOKUP_COST + child_complexity")]
    async fn execution(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Execution>> {
        let (state, caller) = request(ctx).await.gql()?;
        let id = parse_id("id", &id).gql()?;
        match service::get_execution(state, &caller, id).await {
            Ok(model) => Ok(Some(Execution::from(model))),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other).gql(),
        }
    }

    /// The executions the caller may see, newest first.
    #[graphql(
        complexity = "crate::pagination::list_cost(first, crate::pagination::DEFAULT_PAGE_SIZE, crate::pagination::MAX_PAGE_SIZE, child_complexity)"
    )]
    async fn executions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ExecutionFilter>,
    ) -> async_graphql::Result<Connection<String, Execution>> {
        let (state, caller) = request(ctx).await.gql()?;
        let page = PageRequest::new(first, after).gql()?;
        let filter = filter.unwrap_or_default();
        let query = ExecutionQuery {
            proc: filter.proc,
            status: filter
                .status
                .map(|statuses| statuses.into_iter().map(Into::into).collect()),
            user: filter.user,
            trigger: filter.trigger.map(Into::into),
            created_after: filter.created_after,
            created_before: filter.created_before,
        };
        let rows = service::list_executions(state, &caller, &query, page)
            .await
            .gql()?;
        let related = Related::for_page(ctx, &rows).await.gql()?;
        Ok(connection(
            page,
            rows.into_iter()
                .map(|row| (row.id, Execution(row, related.clone())))
                .collect(),
        ))
    }
}

/// Execution mutations.
#[derive(Default)]
pub struct ExecutionsMutation;

#[Object]
impl ExecutionsMutation {
    /// Runs a proc: checks the arguments, stores the execution as PENDING and returns at once.
    /// Follow it with the `executionStatus` and `executionLogs` subscriptions.
    async fn execute(
        &self,
        ctx: &Context<'_>,
        proc: String,
        #[graphql(secret)] args: Option<Vec<ArgInput>>,
    ) -> async_graphql::Result<Execution> {
        let (state, caller) = request(ctx).await.gql()?;
        let request = ExecuteRequest {
            proc,
            args: arg_values(args),
            trigger: values::Trigger::Manual,
            schedule_id: None,
        };
        service::execute(state, &caller, request)
            .await
            .map(Execution::from)
            .gql()
    }

    /// Stops an execution in any unfinished state and returns it once it has stopped (or after
    /// a short wait); `CONFLICT` when it already ended.
    async fn cancel_execution(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Execution> {
        let (state, caller) = request(ctx).await.gql()?;
        let id = parse_id("id", &id).gql()?;
        service::cancel_execution(state, &caller, id)
            .await
            .map(Execution::from)
            .gql()
    }
}

/// Live execution updates.
#[derive(Default)]
pub struct ExecutionsSubscription;

#[Subscription]
impl ExecutionsSubscription {
    /// Every output line of execution `id` after `afterSeq` (default 0), exactly once and in
    /// order, whether subscribed before, during or after the run; completes when it has ended.
    async fn execution_logs(
        &self,
        ctx: &Context<'_>,
        id: ID,
        after_seq: Option<i64>,
    ) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<LogLine>>> {
        let (state, caller) = request(ctx).await.gql()?;
        let state = state.clone();
        let id = parse_id("id", &id).gql()?;
        service::get_execution(&state, &caller, id).await.gql()?;
        let lines = follow_logs(state, id, after_seq.unwrap_or(0)).await.gql()?;
        Ok(lines.map(|line| line.map(LogLine::from).gql()).boxed())
    }

    /// The same lines as `executionLogs` (each exactly once, in order, whenever subscribed;
    /// completes when the run has ended), delivered in batches: a batch holds what is ready
    /// when its first line is, up to `maxLines` (default 1000, at most 10000), and waits up to
    /// `maxDelayMs` (default 0, at most 5000) for more. Use it to follow busy runs: a batch
    /// costs one message where `executionLogs` sends one per line.
    async fn execution_log_batches(
        &self,
        ctx: &Context<'_>,
        id: ID,
        after_seq: Option<i64>,
        max_lines: Option<i32>,
        max_delay_ms: Option<i32>,
    ) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<LogBatch>>> {
        let (state, caller) = request(ctx).await.gql()?;
        let state = state.clone();
        let id = parse_id("id", &id).gql()?;
        // Out-of-range values (negative ones included) are refused by the stream, in one place.
        let max_lines = usize::try_from(max_lines.unwrap_or(DEFAULT_BATCH_LINES)).unwrap_or(0);
        let max_delay =
            Duration::from_millis(u64::try_from(max_delay_ms.unwrap_or(0)).unwrap_or(u64::MAX));
        service::get_execution(&state, &caller, id).await.gql()?;
        let batches = follow_log_batches(state, id, after_seq.unwrap_or(0), max_lines, max_delay)
            .await
            .gql()?;
        Ok(batches
            .map(|batch| {
                batch
                    .map(|lines| {
                        let last_seq = lines.last().map_or(0, |line| line.seq);
                        LogBatch {
                            lines: lines.into_iter().map(LogLine::from).collect(),
                            last_seq,
                        }
                    })
                    .gql()
            })
            .boxed())
    }

    /// The state of execution `id` now, then each transition; completes at the final state.
    async fn execution_status(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<Execution>>> {
        let (state, caller) = request(ctx).await.gql()?;
        let state = state.clone();
        let id = parse_id("id", &id).gql()?;
        service::get_execution(&state, &caller, id).await.gql()?;
        let rows = follow_status(state, id).await.gql()?;
        Ok(rows.map(|row| row.map(Execution::from).gql()).boxed())
    }

    /// Every stored output line matching `pattern` (a regular expression, as in proc alerts) of
    /// every run the caller may see (of `proc`, when given), live from now on.
    async fn log_matches(
        &self,
        ctx: &Context<'_>,
        proc: Option<String>,
        pattern: String,
    ) -> async_graphql::Result<BoxStream<'static, LogMatch>> {
        let (state, caller) = request(ctx).await.gql()?;
        let regex = crate::alerts::compile(&pattern)
            .map_err(|message| ApiError::bad_input("pattern", message))
            .gql()?;
        let state = state.clone();
        let deliveries = state.event_bus().subscribe(Topic::AllLogs);
        let counted = state.metrics().subscription("logMatches");
        let watch = MatchWatch {
            visibility: Visibility::new(state, caller),
            proc,
            regex,
            executions: HashMap::new(),
            pending: std::collections::VecDeque::new(),
        };
        Ok(futures::stream::unfold(
            (deliveries, watch, counted),
            |(mut deliveries, mut watch, counted)| async move {
                loop {
                    if let Some(found) = watch.pending.pop_front() {
                        return Some((found, (deliveries, watch, counted)));
                    }
                    let Delivery::Event(Event::ExecutionLogs {
                        execution_id,
                        lines,
                    }) = deliveries.next().await?
                    else {
                        continue;
                    };
                    watch.offer(execution_id, lines).await;
                }
            },
        )
        .boxed())
    }

    /// Every state change of every execution the caller may see (of `proc`, when given).
    async fn execution_events(
        &self,
        ctx: &Context<'_>,
        proc: Option<String>,
    ) -> async_graphql::Result<BoxStream<'static, Execution>> {
        let (state, caller) = request(ctx).await.gql()?;
        let state = state.clone();
        let deliveries = state.event_bus().subscribe(Topic::AllExecutions);
        let counted = state.metrics().subscription("executionEvents");
        let visibility = Visibility::new(state, caller);
        Ok(futures::stream::unfold(
            (deliveries, visibility, proc, counted),
            |(mut deliveries, mut visibility, proc, counted)| async move {
                loop {
                    let Delivery::Event(Event::ExecutionStatus { execution }) =
                        deliveries.next().await?
                    else {
                        continue;
                    };
                    if proc
                        .as_ref()
                        .is_some_and(|proc| *proc != execution.proc_name)
                    {
                        continue;
                    }
                    if visibility.allows(&execution).await {
                        return Some((
                            Execution::from(*execution),
                            (deliveries, visibility, proc, counted),
                        ));
                    }
                }
            },
        )
        .boxed())
    }
}

/// Executions whose visibility a `logMatches` subscriber remembers (cleared when full).
const MATCH_CACHE: usize = 1024;

/// What one `logMatches` subscriber is waiting for.
struct MatchWatch {
    visibility: Visibility,
    proc: Option<String>,
    regex: regex::Regex,
    /// Per execution: its proc's name when the caller may see it, `None` when not.
    executions: HashMap<i64, (Instant, Option<String>)>,
    pending: std::collections::VecDeque<LogMatch>,
}

impl MatchWatch {
    /// Queues the lines of `execution_id` that match, when the caller may see that run.
    async fn offer(&mut self, execution_id: i64, lines: Vec<crate::ports::event_bus::LogRecord>) {
        if !lines.iter().any(|line| self.regex.is_match(&line.line)) {
            return;
        }
        let cached = self
            .executions
            .get(&execution_id)
            .filter(|(read_at, _)| read_at.elapsed() < VISIBILITY_TTL)
            .map(|(_, proc)| proc.clone());
        let proc = match cached {
            Some(proc) => proc,
            None => {
                let execution = service::execution_row(&self.visibility.state, execution_id)
                    .await
                    .ok()
                    .flatten();
                let proc = match execution {
                    Some(execution) if self.visibility.allows(&execution).await => {
                        Some(execution.proc_name)
                    }
                    _ => None,
                };
                if self.executions.len() >= MATCH_CACHE {
                    self.executions.clear();
                }
                self.executions
                    .insert(execution_id, (Instant::now(), proc.clone()));
                proc
            }
        };
        let Some(proc) = proc else {
            return;
        };
        if self.proc.as_ref().is_some_and(|wanted| *wanted != proc) {
            return;
        }
        for line in lines {
            if self.regex.is_match(&line.line) {
                self.pending.push_back(LogMatch {
                    execution_id: ID(execution_id.to_string()),
                    proc: proc.clone(),
                    line: LogLine {
                        seq: line.seq,
                        stream: line.stream.into(),
                        line: line.line,
                        timestamp: line.logged_at,
                        replaced: line.replaced,
                    },
                });
            }
        }
    }
}

/// How long a subscription trusts what it learned about a proc's groups.
const VISIBILITY_TTL: Duration = Duration::from_secs(30);

/// Which executions a subscriber may see, remembering proc access for a while.
struct Visibility {
    state: AppState,
    caller: Caller,
    procs: HashMap<i64, (Instant, Option<proc::Model>)>,
}

impl Visibility {
    fn new(state: AppState, caller: Caller) -> Self {
        Self {
            state,
            caller,
            procs: HashMap::new(),
        }
    }

    async fn allows(&mut self, execution: &execution::Model) -> bool {
        if self.caller.admin {
            return true;
        }
        let proc = match execution.proc_id {
            None => None,
            Some(proc_id) => match self.procs.get(&proc_id) {
                Some((read_at, proc)) if read_at.elapsed() < VISIBILITY_TTL => proc.clone(),
                _ => {
                    let proc = service::proc_of(&self.state, execution)
                        .await
                        .ok()
                        .flatten();
                    self.procs.insert(proc_id, (Instant::now(), proc.clone()));
                    proc
                }
            },
        };
        may_read(&self.caller, execution, proc.as_ref())
    }
}
