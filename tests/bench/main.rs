//! `proctor-bench`: measures a real `proctord` through its public APIs (GraphQL over HTTP and
//! graphql-transport-ws, the REST shim, `/readyz`) next to the machine's own limits, and writes
//! `tests/bench/results/latest.json` plus a markdown table.
//!
//! It starts the servers it measures (the `proctord` built next to it) because scenarios need
//! different configurations (in-memory bus and Redis, a fresh embedded start) and the server's
//! process id for memory and CPU; `--database-url` and `--redis-url` point them at Postgres and
//! Redis (`tests/bench/run.sh` provides both). `--quick` shrinks every scenario to seconds (the
//! test suite runs that so the bench cannot rot).

mod report;
mod scenarios;
mod server;
mod ws;

use std::path::PathBuf;

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

async fn run(args: Args) -> anyhow::Result<()> {
    let plan = scenarios::Plan::new(
        args.quick,
        args.database_url.clone(),
        args.redis_url.clone(),
        args.fanout_seconds,
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
