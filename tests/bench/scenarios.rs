//! The scenarios. Each starts the server(s) it needs, drives them through the public APIs and
//! records its figures.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::report::{Results, histogram, ms, round};
use crate::server::{Server, Setup};
use proctor_tests::graphql_ws::{Event, WsClient};

/// Sizes and infrastructure of a run.
pub struct Plan {
    quick: bool,
    database_url: Option<String>,
    redis_url: Option<String>,
    fanout_seconds: Option<u64>,
    /// A running `proctord` (URL, process id) to measure instead of starting servers.
    target: Option<(String, u32)>,
}

impl Plan {
    /// A full run, or a seconds-long smoke run with `quick`.
    pub fn new(
        quick: bool,
        database_url: Option<String>,
        redis_url: Option<String>,
        fanout_seconds: Option<u64>,
        target: Option<(String, u32)>,
    ) -> Self {
        Self {
            quick,
            database_url,
            redis_url,
            fanout_seconds,
            target,
        }
    }

    /// The running server when one was given, else a new one configured by `setup`.
    async fn server(&self, setup: &Setup) -> anyhow::Result<Server> {
        match &self.target {
            Some((url, pid)) => Server::attach(url, *pid).await,
            None => Server::start(setup).await,
        }
    }

    fn setup(&self, redis: bool, max_parallel: u32, scheduler: bool) -> Setup {
        Setup {
            database_url: self.database_url.clone(),
            redis_url: if redis { self.redis_url.clone() } else { None },
            max_parallel,
            scheduler,
        }
    }

    fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

const UPSERT: &str = "mutation($i: ProcInput!) { upsertProc(input: $i) { name } }";
const EXECUTE: &str = "mutation($p: String!) { execute(proc: $p) { id } }";
const LOGS: &str =
    "subscription($id: ID!, $after: Int) { executionLogs(id: $id, afterSeq: $after) { seq line } }";
const LOG_BATCHES: &str = "subscription($id: ID!, $after: Int) { \
    executionLogBatches(id: $id, afterSeq: $after) { lastSeq lines { seq line } } }";

async fn define(server: &Server, name: &str, command: Vec<String>) -> anyhow::Result<()> {
    server
        .graphql(UPSERT, json!({ "i": { "name": name, "command": command } }))
        .await
        .map(|_| ())
}

async fn execute(server: &Server, proc: &str) -> anyhow::Result<String> {
    let data = server.graphql(EXECUTE, json!({ "p": proc })).await?;
    Ok(data["execute"]["id"]
        .as_str()
        .context("an execution id")?
        .to_owned())
}

/// Waits until `server` has no unfinished execution (at most `patience`).
async fn wait_until_idle(server: &Server, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let data = server
            .graphql(
                "{ executions(first: 1, filter: { status: [PENDING, STARTING, RUNNING] }) { edges { cursor } } }",
                json!({}),
            )
            .await?;
        let unfinished = data["executions"]["edges"]
            .as_array()
            .is_some_and(|edges| !edges.is_empty());
        if !unfinished {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("executions still unfinished after {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The fan-out proc: `RATE` lines per second for `SECONDS`, each `<unix nanos> <n>`.
pub fn emit(rate: u64, seconds: u64) -> anyhow::Result<()> {
    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for n in 1..=total {
        let due = start + period * (n as u32 - 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        writeln!(out, "{} {n}", unix_nanos())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Start-up time and idle memory of the embedded default.
pub async fn footprint(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    eprintln!("footprint: embedded default, fresh data directory");
    let server = Server::start(&Setup {
        max_parallel: 16,
        scheduler: true,
        ..Setup::default()
    })
    .await?;
    results.set("ready_ms", round(server.ready_after.as_secs_f64() * 1000.0));
    tokio::time::sleep(plan.pick(Duration::from_secs(3), Duration::from_millis(200))).await;
    results.set("idle_rss_mib", round(server.rss_mib()));
    server.stop().await;
    Ok(())
}

/// How many `true` processes two threads can fork, exec and reap per second.
fn fork_exec_limit(window: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2))
        .map(|_| {
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < window {
                    if std::process::Command::new("true").status().is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    count.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

/// Single-row commits per second on one connection: the database's fsync rate, the cost every
/// transaction of a run pays at least once (each one waits for its commit to be durable).
async fn postgres_commit_limit(url: &str, window: Duration) -> anyhow::Result<f64> {
    use sea_orm::ConnectionTrait;
    let mut options = sea_orm::ConnectOptions::new(url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    let db = sea_orm::Database::connect(options).await?;
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS proctor_bench_commit (id bigserial PRIMARY KEY, n int)",
    )
    .await?;
    let stop = Instant::now() + window;
    let mut count = 0u64;
    while Instant::now() < stop {
        db.execute_unprepared("INSERT INTO proctor_bench_commit (n) VALUES (1)")
            .await?;
        count += 1;
    }
    db.execute_unprepared("DROP TABLE proctor_bench_commit")
        .await?;
    Ok(count as f64 / window.as_secs_f64())
}

/// The durability settings of the Postgres at `url` (`fsync`, `synchronous_commit`,
/// `full_page_writes`), recorded beside the figures measured on it.
async fn postgres_durability(url: &str) -> anyhow::Result<Vec<(String, String)>> {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(url.to_owned()).await?;
    let mut settings = Vec::new();
    for name in ["fsync", "synchronous_commit", "full_page_writes"] {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!("SELECT current_setting('{name}') AS value"),
            ))
            .await?
            .context("a setting")?;
        settings.push((name.to_owned(), row.try_get::<String>("", "value")?));
    }
    Ok(settings)
}

/// Single-row insert + update transactions per second on the Postgres the servers use.
async fn postgres_limit(url: &str, window: Duration) -> anyhow::Result<f64> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let mut options = sea_orm::ConnectOptions::new(url.to_owned());
    options.max_connections(16).sqlx_logging(false);
    let db = sea_orm::Database::connect(options).await?;
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS proctor_bench_tx (id bigserial PRIMARY KEY, state text, n int)",
    )
    .await?;
    let count = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + window;
    let workers = (0..8).map(|_| {
        let db = db.clone();
        let count = Arc::clone(&count);
        async move {
            while Instant::now() < stop {
                let txn = db.begin().await?;
                let row = txn
                    .query_one_raw(sea_orm::Statement::from_string(
                        sea_orm::DatabaseBackend::Postgres,
                        "INSERT INTO proctor_bench_tx (state, n) VALUES ('PENDING', 0) RETURNING id",
                    ))
                    .await?
                    .context("a row")?;
                let id: i64 = row.try_get("", "id")?;
                txn.execute_unprepared(&format!("UPDATE proctor_bench_tx SET state = 'SUCCEEDED', n = 1 WHERE id = {id}"))
                    .await?;
                txn.commit().await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }
    });
    for outcome in futures::future::join_all(workers).await {
        outcome?;
    }
    db.execute_unprepared("DROP TABLE proctor_bench_tx").await?;
    Ok(count.load(Ordering::Relaxed) as f64 / window.as_secs_f64())
}

/// Submit → first log line on a subscription, for one execution of `echo-one`.
async fn first_line(server: &Server, connection: &WsClient) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let id = execute(server, "bench-echo-one").await?;
    let (sub, mut events) = connection
        .subscribe(LOGS, json!({ "id": id, "after": 0 }))
        .await?;
    let event = tokio::time::timeout(Duration::from_secs(30), events.recv()).await?;
    let elapsed = started.elapsed();
    connection.complete(&sub).await;
    match event {
        Some(Event::Next(_)) => Ok(elapsed),
        other => bail!("no log line for execution {id}: {other:?}"),
    }
}

/// Dispatch throughput (with the machine's limits) and first-log latency.
pub async fn dispatch_and_latency(
    plan: &Plan,
    results: &mut Results,
    dispatch: bool,
    latency: bool,
) -> anyhow::Result<()> {
    let window = plan.pick(Duration::from_secs(3), Duration::from_millis(300));
    let mut rate = 10.0;
    let server = plan.server(&plan.setup(true, 64, false)).await?;
    define(&server, "bench-noop", vec!["true".into()]).await?;
    define(
        &server,
        "bench-echo-one",
        vec!["echo".into(), "ready".into()],
    )
    .await?;
    if dispatch {
        eprintln!("dispatch: limits first");
        results.set("fork_exec_per_s", round(fork_exec_limit(window)));
        if let Some(url) = &plan.database_url {
            for (name, value) in postgres_durability(url).await? {
                results.set(&format!("pg_{name}"), value);
            }
            results.set(
                "pg_commit_per_s",
                round(postgres_commit_limit(url, window).await?),
            );
            results.set("pg_tx_per_s", round(postgres_limit(url, window).await?));
        }
        let submissions: usize = plan.pick(3_000, 30);
        eprintln!("dispatch: {submissions} execute calls, 8 at a time");
        let started = Instant::now();
        let submitted: Vec<String> = futures::stream::iter(0..submissions)
            .map(|_| execute(&server, "bench-noop"))
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        results.set(
            "submit_per_s",
            round(submitted.len() as f64 / started.elapsed().as_secs_f64()),
        );
        // Let those runs finish before the dispatch measurement starts.
        wait_until_idle(&server, Duration::from_secs(300)).await?;
        let total: usize = plan.pick(10_000, 50);
        eprintln!("dispatch: {total} executions of `true`");
        let connection = WsClient::open(&server.ws_url()).await?;
        let (_, mut events) = connection
            .subscribe("subscription { executionEvents { id status } }", json!({}))
            .await?;
        let finished: Arc<std::sync::Mutex<HashMap<String, String>>> = Arc::default();
        let last_final = Arc::new(std::sync::Mutex::new(Instant::now()));
        let collector = {
            let finished = Arc::clone(&finished);
            let last_final = Arc::clone(&last_final);
            tokio::spawn(async move {
                while let Some(Event::Next(data)) = events.recv().await {
                    let status = data["executionEvents"]["status"]
                        .as_str()
                        .unwrap_or_default();
                    if matches!(
                        status,
                        "SUCCEEDED"
                            | "FAILED"
                            | "TIMED_OUT"
                            | "CANCELLED"
                            | "CREATION_FAILED"
                            | "LOST"
                    ) {
                        let id = data["executionEvents"]["id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        finished
                            .lock()
                            .expect("not poisoned")
                            .insert(id, status.to_owned());
                        *last_final.lock().expect("not poisoned") = Instant::now();
                    }
                }
            })
        };
        let started = Instant::now();
        let ids: Vec<String> = futures::stream::iter(0..total)
            .map(|_| execute(&server, "bench-noop"))
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        let submitted = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let done = {
                let finished = finished.lock().expect("not poisoned");
                ids.iter().filter(|id| finished.contains_key(*id)).count()
            };
            if done == ids.len() {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {done} of {} executions finished", ids.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = last_final
            .lock()
            .expect("not poisoned")
            .duration_since(started);
        collector.abort();
        let failed = {
            let finished = finished.lock().expect("not poisoned");
            ids.iter()
                .filter(|id| finished.get(*id).is_some_and(|s| s != "SUCCEEDED"))
                .count()
        };
        rate = total as f64 / elapsed.as_secs_f64();
        results.set("dispatch_per_s", round(rate));
        results.set(
            "dispatch_submit_per_s",
            round(total as f64 / submitted.as_secs_f64()),
        );
        results.set("dispatch_failed", failed as u64);
    }
    if latency {
        let connection = WsClient::open(&server.ws_url()).await?;
        let samples: usize = plan.pick(300, 10);
        eprintln!("latency: {samples} runs one after another");
        let mut single = histogram();
        for _ in 0..samples {
            single.record(first_line(&server, &connection).await?.as_micros() as u64)?;
        }
        results.set("first_log_p50_ms", ms(&single, 0.5));
        results.set("first_log_p95_ms", ms(&single, 0.95));
        results.set("first_log_p99_ms", ms(&single, 0.99));
        let half = (rate / 2.0).max(1.0);
        let duration = plan.pick(Duration::from_secs(10), Duration::from_secs(1));
        eprintln!("latency: open-loop arrivals at {half:.0}/s for {duration:?}");
        let loaded = Arc::new(std::sync::Mutex::new(histogram()));
        let server = Arc::new(server);
        let connection = Arc::new(connection);
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / half));
        let end = Instant::now() + duration;
        let mut tasks = Vec::new();
        while Instant::now() < end {
            ticker.tick().await;
            let (server, connection, loaded) = (
                Arc::clone(&server),
                Arc::clone(&connection),
                Arc::clone(&loaded),
            );
            tasks.push(tokio::spawn(async move {
                if let Ok(elapsed) = first_line(&server, &connection).await {
                    let _ = loaded
                        .lock()
                        .expect("not poisoned")
                        .record(elapsed.as_micros() as u64);
                }
            }));
        }
        futures::future::join_all(tasks).await;
        let loaded = loaded.lock().expect("not poisoned").clone();
        results.set("first_log_half_rate_per_s", round(half));
        results.set("first_log_half_rate_p50_ms", ms(&loaded, 0.5));
        results.set("first_log_half_rate_p99_ms", ms(&loaded, 0.99));
        if let Ok(server) = Arc::try_unwrap(server) {
            server.stop().await;
        }
        return Ok(());
    }
    server.stop().await;
    Ok(())
}

/// What one subscriber of the fan-out saw.
struct Seen {
    received: u64,
    gaps: u64,
    duplicates: u64,
    /// `next` messages carrying an error instead of a line.
    errors: u64,
    lag: Histogram<u64>,
}

/// Follows execution `id` to its end on a connection of its own, with `executionLogs` or, when
/// `batched`, `executionLogBatches`.
async fn subscriber(
    url: String,
    id: String,
    measure_after: Arc<AtomicU64>,
    total: u64,
    batched: bool,
) -> anyhow::Result<Seen> {
    let connection = WsClient::open(&url).await?;
    let query = if batched { LOG_BATCHES } else { LOGS };
    let (_, mut events) = connection
        .subscribe(query, json!({ "id": id, "after": 0 }))
        .await?;
    let mut seen = Seen {
        received: 0,
        gaps: 0,
        duplicates: 0,
        errors: 0,
        lag: histogram(),
    };
    let mut last = 0u64;
    while let Some(event) = events.recv().await {
        match event {
            Event::Next(data) => {
                let now = unix_nanos();
                let entries = if batched {
                    data["executionLogBatches"]["lines"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                } else {
                    vec![data["executionLogs"].clone()]
                };
                if entries.is_empty() || entries[0].is_null() {
                    seen.errors += 1;
                    continue;
                }
                for entry in &entries {
                    let seq = entry["seq"].as_u64().unwrap_or_default();
                    if seq <= last {
                        seen.duplicates += 1;
                        continue;
                    }
                    seen.gaps += seq - last - 1;
                    last = seq;
                    seen.received += 1;
                    let emitted: u128 = entry["line"]
                        .as_str()
                        .and_then(|line| line.split_whitespace().next())
                        .and_then(|ts| ts.parse().ok())
                        .unwrap_or_default();
                    if emitted as u64 >= measure_after.load(Ordering::Relaxed) && now > emitted {
                        seen.lag.record(((now - emitted) / 1000) as u64)?;
                    }
                }
            }
            Event::End(None) => break,
            Event::End(Some(error)) => bail!("subscription failed: {error}"),
        }
    }
    if last < total {
        eprintln!(
            "  a subscriber ended after seq {last} of {total} ({} received)",
            seen.received
        );
    }
    seen.gaps += total.saturating_sub(last);
    Ok(seen)
}

/// A copy of this program in a fresh directory every account may enter (0755), for procs that
/// run it; the directory goes away with the returned guard.
fn runnable_copy_of_self() -> anyhow::Result<(tempfile::TempDir, String)> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("proctor-bench-emitter-")
        .tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let copy = dir.path().join("proctor-bench");
    std::fs::copy(std::env::current_exe()?, &copy)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
    let path = copy.to_string_lossy().into_owned();
    Ok((dir, path))
}

/// One execution printing `rate` lines/s to `n` subscribers, on each bus.
pub async fn fanout(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    let (rate, seconds) = plan.pick((1000u64, 60u64), (200, 2));
    let seconds = plan.fanout_seconds.unwrap_or(seconds).max(1);
    results.set("fanout_seconds", seconds);
    // (subscribers, batched): per-line subscriptions, then the batched form at full size.
    let cases: Vec<(usize, bool)> = plan.pick(
        vec![(1, false), (100, false), (1000, false), (1000, true)],
        vec![(1, false), (10, false), (10, true)],
    );
    // The emitter is this program, run as a proc: under the server's account for runs
    // (`nobody` when proctord is root), which may not enter the directory it was built in.
    let (_emitter_dir, exe) = runnable_copy_of_self()?;
    // Both buses on servers of our own; the running server's bus when one was given.
    let mut buses = vec![false];
    if plan.redis_url.is_some() && plan.target.is_none() {
        buses.push(true);
    }
    let buses_len = buses.len();
    let (mut gaps, mut duplicates, mut errors) = (0u64, 0u64, 0u64);
    for wants_redis in buses {
        let server = plan.server(&plan.setup(wants_redis, 8, false)).await?;
        let info = server
            .graphql("{ serverInfo { eventBus } }", json!({}))
            .await?;
        let redis = info["serverInfo"]["eventBus"] == "REDIS";
        let bus = if redis { "redis" } else { "memory" };
        define(
            &server,
            "bench-emitter",
            vec![
                exe.clone(),
                "--emit".into(),
                rate.to_string(),
                seconds.to_string(),
            ],
        )
        .await?;
        let rss_before = server.rss_mib();
        for &(n, batched) in &cases {
            let form = if batched { "batched" } else { "per-line" };
            eprintln!("fan-out: {bus} bus, {n} {form} subscribers, {rate} lines/s for {seconds} s");
            let id = execute(&server, "bench-emitter").await?;
            let emission_started = Instant::now();
            let measure_after = Arc::new(AtomicU64::new(u64::MAX));
            let total = rate * seconds;
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    tokio::spawn(subscriber(
                        server.ws_url(),
                        id.clone(),
                        Arc::clone(&measure_after),
                        total,
                        batched,
                    ))
                })
                .collect();
            // Lag counts from when every subscriber is connected (earlier lines are replayed).
            tokio::time::sleep(plan.pick(Duration::from_secs(3), Duration::from_millis(300))).await;
            measure_after.store(unix_nanos() as u64, Ordering::Relaxed);
            let sampling = Arc::new(AtomicBool::new(true));
            let (cpu_before, started) = (server.cpu_seconds(), Instant::now());
            let pid = server.pid;
            let peak = {
                let sampling = Arc::clone(&sampling);
                tokio::spawn(async move {
                    let mut peak: f64 = 0.0;
                    while sampling.load(Ordering::Relaxed) {
                        peak = peak.max(crate::server::rss_mib(pid));
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    peak
                })
            };
            let mut lag = histogram();
            let mut received = 0u64;
            for task in tasks {
                let seen = task.await??;
                received += seen.received;
                gaps += seen.gaps;
                duplicates += seen.duplicates;
                errors += seen.errors;
                lag.add(&seen.lag)?;
            }
            sampling.store(false, Ordering::Relaxed);
            let cpu = (server.cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
            let key = if batched {
                format!("fanout_{bus}_batched_{n}")
            } else {
                format!("fanout_{bus}_{n}")
            };
            // Delivered lines per second: over the emission, or over the delivery when it took
            // longer (the subscribers fell behind).
            let delivering = emission_started.elapsed().as_secs_f64().max(seconds as f64);
            let delivered_per_s = received as f64 / delivering;
            results.set(&format!("{key}_lines_per_s"), round(delivered_per_s));
            results.set(&format!("{key}_delivery_s"), round(delivering));
            results.set(&format!("{key}_p99_lag_ms"), ms(&lag, 0.99));
            results.set(&format!("{key}_max_lag_ms"), ms(&lag, 1.0));
            results.set(&format!("{key}_server_rss_mib"), round(peak.await?));
            results.set(&format!("{key}_server_cpu_pct"), round(cpu));
            // The headline figures: each case on Redis when it was measured.
            if redis || buses_len == 1 {
                let headline = if batched {
                    format!("fanout_batched_{n}")
                } else {
                    format!("fanout_{n}")
                };
                results.set(&format!("{headline}_lines_per_s"), round(delivered_per_s));
                results.set(&format!("{headline}_p99_lag_ms"), ms(&lag, 0.99));
            }
        }
        if redis || buses_len == 1 {
            // Memory given back: the server's RSS a while after the last burst, beside its RSS
            // before the first.
            let settle = plan.pick(Duration::from_secs(60), Duration::from_secs(1));
            eprintln!("fan-out: RSS {settle:?} after the burst");
            tokio::time::sleep(settle).await;
            let rss_after = server.rss_mib();
            results.set("rss_before_burst_mib", round(rss_before));
            results.set("rss_after_burst_mib", round(rss_after));
            results.set(
                "rss_after_burst_share",
                round(rss_after / rss_before.max(1.0)),
            );
        }
        server.stop().await;
    }
    results.set("fanout_gaps", gaps);
    results.set("fanout_duplicates", duplicates);
    results.set("fanout_stream_errors", errors);
    Ok(())
}

/// Server memory with many open log subscriptions on a running execution.
pub async fn idle_subscriptions(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    let (connections, per_connection): (usize, usize) = plan.pick((100, 100), (5, 10));
    let server = plan.server(&plan.setup(false, 8, false)).await?;
    define(&server, "bench-sleeper", vec!["sleep".into(), "600".into()]).await?;
    let id = execute(&server, "bench-sleeper").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_mib();
    eprintln!(
        "idle: {} subscriptions on {connections} connections",
        connections * per_connection
    );
    let mut open = Vec::new();
    for _ in 0..connections {
        let connection = WsClient::open(&server.ws_url()).await?;
        let mut receivers = Vec::new();
        for _ in 0..per_connection {
            receivers.push(
                connection
                    .subscribe(LOGS, json!({ "id": id, "after": 0 }))
                    .await?
                    .1,
            );
        }
        open.push((connection, receivers));
    }
    tokio::time::sleep(plan.pick(Duration::from_secs(5), Duration::from_millis(500))).await;
    let rss = server.rss_mib();
    let active = server
        .graphql("{ serverInfo { version } }", json!({}))
        .await
        .is_ok();
    let key = if plan.quick {
        "idle_subs_rss_mib".to_owned()
    } else {
        "idle_10k_subs_rss_mib".to_owned()
    };
    results.set(&key, round(rss));
    results.set("idle_subs_rss_growth_mib", round(rss - before));
    results.set("idle_subs_server_answers", active);
    drop(open);
    // A running server must not keep the sleeper for ten minutes.
    server
        .graphql(
            "mutation($id: ID!) { cancelExecution(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await?;
    server.stop().await;
    Ok(())
}

/// The same reads over GraphQL and over the REST shim, 64 at a time.
pub async fn queries(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    let server = Arc::new(plan.server(&plan.setup(true, 8, false)).await?);
    for n in 0..20 {
        server
            .graphql(
                UPSERT,
                json!({ "i": { "name": format!("bench-proc-{n}"), "description": "a proc",
                "command": ["true"], "image": "busybox",
                "args": [{ "name": "A", "description": "an argument" }],
                "secrets": [{ "name": "S", "description": "a secret" }] } }),
            )
            .await?;
    }
    define(&server, "bench-noop", vec!["true".into()]).await?;
    let id = execute(&server, "bench-noop").await?;
    let window = plan.pick(Duration::from_secs(10), Duration::from_millis(500));
    for api in ["gql", "rest"] {
        eprintln!("queries: {api}, concurrency 64, {window:?}");
        let stop = Instant::now() + window;
        let latencies = Arc::new(std::sync::Mutex::new(histogram()));
        let workers: Vec<_> = (0..64)
            .map(|worker| {
                let (server, latencies, id) =
                    (Arc::clone(&server), Arc::clone(&latencies), id.clone());
                tokio::spawn(async move {
                    let mut turn = worker;
                    while Instant::now() < stop {
                        let started = Instant::now();
                        let ok = read(&server, api, &id, turn % 2 == 0).await;
                        if ok {
                            let _ = latencies
                                .lock()
                                .expect("not poisoned")
                                .record(started.elapsed().as_micros() as u64);
                        }
                        turn += 1;
                    }
                })
            })
            .collect();
        futures::future::join_all(workers).await;
        let latencies = latencies.lock().expect("not poisoned").clone();
        results.set(
            &format!("{api}_req_per_s"),
            round(latencies.len() as f64 / window.as_secs_f64()),
        );
        results.set(&format!("{api}_p99_ms"), ms(&latencies, 0.99));
    }
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    Ok(())
}

/// One read: an execution's status or the proc list, over `api`.
async fn read(server: &Server, api: &str, id: &str, execution: bool) -> bool {
    let http = server.http();
    let response = match (api, execution) {
        ("gql", true) => http.post(format!("{}/graphql", server.base)).json(&json!({
            "query": "query($id: ID!) { execution(id: $id) { id procName executorRef image createdAt finishedAt status } }",
            "variables": { "id": id } })).send().await,
        ("gql", false) => http.post(format!("{}/graphql", server.base)).json(&json!({
            "query": "{ procs { name description image args { name description } secrets { key description } authorizedGroups author contributors organization } }" }))
            .send().await,
        (_, true) => http.get(format!("{}/execution/{id}/status", server.base)).send().await,
        (_, false) => http.get(format!("{}/metadata", server.base)).send().await,
    };
    match response {
        Ok(response) if response.status().is_success() => response.bytes().await.is_ok(),
        _ => false,
    }
}

/// Many schedules firing every second: lateness, missed and duplicate slots.
pub async fn scheduler(plan: &Plan, results: &mut Results) -> anyhow::Result<()> {
    let (count, seconds): (usize, u64) = plan.pick((1000, 60), (20, 3));
    let server = plan.server(&plan.setup(true, 64, true)).await?;
    define(&server, "bench-noop", vec!["true".into()]).await?;
    eprintln!("scheduler: {count} schedules every second for {seconds} s");
    let created: Vec<(String, DateTime<Utc>)> = futures::stream::iter(0..count)
        .map(|_| async {
            let data = server
                .graphql(
                    "mutation { createSchedule(input: { proc: \"bench-noop\", cron: \"* * * * * *\" }) { id createdAt } }",
                    json!({}),
                )
                .await?;
            let id = data["createSchedule"]["id"].as_str().context("id")?.to_owned();
            let at: DateTime<Utc> = data["createSchedule"]["createdAt"].as_str().context("createdAt")?.parse()?;
            anyhow::Ok((id, at))
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let window_start = created
        .iter()
        .map(|(_, at)| *at)
        .max()
        .context("schedules")?
        + chrono::Duration::seconds(2);
    tokio::time::sleep(Duration::from_secs(seconds + 2)).await;
    let window_end = Utc::now() - chrono::Duration::seconds(2);
    for (id, _) in &created {
        server
            .graphql(
                "mutation($id: ID!) { setScheduleEnabled(id: $id, enabled: false) { id } }",
                json!({ "id": id }),
            )
            .await?;
    }
    let mut lateness = histogram();
    let (mut missed, mut duplicates) = (0i64, 0i64);
    let first = window_start.timestamp();
    let last = window_end.timestamp();
    let expected_each = (last - first + 1).max(0);
    for (id, _) in &created {
        let data = server
            .graphql(
                "query($id: ID!) { schedule(id: $id) { runs(first: 100) { nodes { slot firedAt } } } }",
                json!({ "id": id }),
            )
            .await?;
        let mut slots = HashSet::new();
        for run in data["schedule"]["runs"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let slot: DateTime<Utc> = run["slot"].as_str().context("slot")?.parse()?;
            let fired: DateTime<Utc> = run["firedAt"].as_str().context("firedAt")?.parse()?;
            if slot.timestamp() < first || slot.timestamp() > last {
                continue;
            }
            if !slots.insert(slot) {
                duplicates += 1;
            }
            let late = (fired - slot).num_microseconds().unwrap_or_default().max(1) as u64;
            lateness.record(late)?;
        }
        missed += (expected_each - slots.len() as i64).max(0);
    }
    results.set("sched_schedules", count as u64);
    results.set("sched_slots_checked", lateness.len());
    results.set("sched_p50_lateness_ms", ms(&lateness, 0.5));
    results.set("sched_p99_lateness_ms", ms(&lateness, 0.99));
    results.set("sched_max_lateness_ms", ms(&lateness, 1.0));
    results.set("sched_missed", missed);
    results.set("sched_duplicates", duplicates);
    // A running server keeps nothing of the bench's schedules.
    for (id, _) in &created {
        server
            .graphql(
                "mutation($id: ID!) { deleteSchedule(id: $id) }",
                json!({ "id": id }),
            )
            .await?;
    }
    server.stop().await;
    Ok(())
}
