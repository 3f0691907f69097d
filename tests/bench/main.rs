//! `proctor-bench`: measures a real `proctord` through its public APIs (GraphQL over HTTP and
//! graphql-transport-ws, the REST shim, `/readyz`) next to the machine's own limits, and writes
//! `tests/bench/results/latest.json` plus a markdown table.
//!
//! `--url` and `--pid` point it at a running `proctord` (auth off, on this machine). Without
//! them it starts the servers it measures (the `proctord` built next to it), one configured per
//! scenario, so the fan-out compares the in-memory bus with Redis; `--database-url` and
//! `--redis-url` point those at Postgres and Redis (`./tests/run.sh --bench` provides both, and
//! starts one proctord on them for `--url`). The footprint always starts a fresh embedded
//! server: it measures start-up. `--quick` shrinks every scenario to seconds (the test suite
//! runs that so the bench cannot rot).

mod report;
mod scenarios;
mod server;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

/// Which scenarios to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Dispatch,
    Latency,
    Fanout,
    Idle,
    Queries,
    Scheduler,
    Footprint,
}

/// Benchmarks Proctor against the limits of the machine it runs on.
#[derive(Parser, Debug)]
#[command(name = "proctor-bench")]
struct Args {
    /// Scenario to run (all by default).
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Seconds-long versions of every scenario (a smoke run, not a measurement).
    #[arg(long)]
    quick: bool,
    /// Postgres for the servers and the raw transaction limit (SQLite when unset).
    #[arg(long, env = "PROCTOR_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Redis for the fan-out comparison (the in-memory bus only when unset).
    #[arg(long, env = "PROCTOR_BENCH_REDIS_URL")]
    redis_url: Option<String>,
    /// Length of each fan-out run in seconds (60 by default, 2 with --quick).
    #[arg(long)]
    fanout_seconds: Option<u64>,
    /// A running proctord to measure (e.g. `http://127.0.0.1:5001`), instead of servers the
    /// bench starts. It must run on this machine with auth off. The footprint scenario still
    /// starts a fresh embedded server (it measures start-up), and the fan-out measures the
    /// running server's own bus.
    #[arg(long, env = "PROCTOR_BENCH_URL")]
    url: Option<String>,
    /// Process id of the proctord at `--url` (for memory and CPU); found from its listening
    /// port when not given.
    #[arg(long, env = "PROCTOR_BENCH_PID", requires = "url")]
    pid: Option<u32>,
    /// Where the JSON results go.
    #[arg(long, default_value = "tests/bench/results/latest.json")]
    out: PathBuf,
    /// Internal: print timestamped lines at a fixed rate (the fan-out proc runs this).
    #[arg(long, hide = true, num_args = 2, value_names = ["RATE", "SECONDS"])]
    emit: Option<Vec<u64>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(emit) = &args.emit {
        return scenarios::emit(emit[0], emit[1]);
    }
    proctor_server::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// The running server to measure: its URL and process id.
fn target(url: Option<&str>, pid: Option<u32>) -> anyhow::Result<Option<(String, u32)>> {
    let Some(url) = url else {
        return Ok(None);
    };
    let pid = match pid {
        Some(pid) => pid,
        None => {
            let parsed = url::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
            let port = parsed
                .port_or_known_default()
                .with_context(|| format!("--url {url:?} has no port"))?;
            server::listening_pid(port).with_context(|| {
                format!("no process on this machine listens on port {port}; pass --pid")
            })?
        }
    };
    Ok(Some((url.to_owned(), pid)))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let plan = scenarios::Plan::new(
        args.quick,
        args.database_url.clone(),
        args.redis_url.clone(),
        args.fanout_seconds,
        target(args.url.as_deref(), args.pid)?,
    );
    let mut results = report::Results::new();
    let wants = |s: Scenario| args.scenario == Scenario::All || args.scenario == s;
    if wants(Scenario::Footprint) {
        scenarios::footprint(&plan, &mut results).await?;
    }
    if wants(Scenario::Dispatch) || wants(Scenario::Latency) {
        scenarios::dispatch_and_latency(
            &plan,
            &mut results,
            wants(Scenario::Dispatch),
            wants(Scenario::Latency),
        )
        .await?;
    }
    if wants(Scenario::Fanout) {
        scenarios::fanout(&plan, &mut results).await?;
    }
    if wants(Scenario::Idle) {
        scenarios::idle_subscriptions(&plan, &mut results).await?;
    }
    if wants(Scenario::Queries) {
        scenarios::queries(&plan, &mut results).await?;
    }
    if wants(Scenario::Scheduler) {
        scenarios::scheduler(&plan, &mut results).await?;
    }
    results.finish(&args.out, args.quick)?;
    Ok(())
}
