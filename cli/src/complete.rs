//! Dynamic shell completion: proc names, execution ids, schedule ids and context names come
//! from the server (or the contexts file) when Tab is pressed; enum flags complete from their
//! `ValueEnum` values without help from here.
//!
//! `clap_complete`'s dynamic engine calls the candidate functions below when the shell asks
//! (`COMPLETE=bash proctor -- proctor runs logs ''`, which the script from `proctor
//! completions bash` runs). The server is the one the environment and the contexts file
//! select (`PROCTOR_HOST`, `PROCTOR_CONTEXT`, the current context, the v2 file); flags on the
//! half-typed line are not read. A completion must never hang or print errors into the
//! shell: each lookup is bounded by [`LOOKUP_LIMIT`] and yields nothing when it fails.

use std::future::Future;
use std::time::Duration;

use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

use crate::api::{
    Api, ListExecutions, ListProcs, ListSchedules, list_executions, list_procs, list_schedules,
};
use crate::config::{self, Contexts, Selection};
use crate::error::CliError;
use crate::output::age;
use crate::procs::enum_name;

/// The longest a completion waits for the server.
const LOOKUP_LIMIT: Duration = Duration::from_secs(2);
/// How many of the newest runs and schedules are offered.
const NEWEST: i64 = 50;

/// Runs a server lookup for a completion, on a runtime of its own (completion happens before
/// the command's runtime exists); any failure or a slow server gives no candidates.
fn lookup<F, Fut>(fetch: F) -> Vec<CompletionCandidate>
where
    F: FnOnce(Api) -> Fut,
    Fut: Future<Output = Result<Vec<CompletionCandidate>, CliError>>,
{
    let selection = Selection {
        host: std::env::var("PROCTOR_HOST").ok().filter(|h| !h.is_empty()),
        context: std::env::var("PROCTOR_CONTEXT")
            .ok()
            .filter(|c| !c.is_empty()),
    };
    let Ok(mut config) = config::load(&selection) else {
        return Vec::new();
    };
    config.timeout = config.timeout.min(LOOKUP_LIMIT);
    let Ok(api) = Api::new(config) else {
        return Vec::new();
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let found = runtime
        .block_on(async { tokio::time::timeout(LOOKUP_LIMIT, fetch(api)).await })
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    // Dropping a runtime waits for its blocking tasks (a slow DNS lookup); the shell must not.
    runtime.shutdown_background();
    found
}

/// One candidate; `None` for a value a shell could not take as one word (whitespace or
/// control characters would split it or reach the terminal). The help loses its control
/// characters (a newline in a description would make a bogus zsh or fish entry).
fn candidate(value: String, help: String) -> Option<CompletionCandidate> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let help = crate::output::strip_controls(&help.replace(['\n', '\r', '\t'], " "));
    Some(CompletionCandidate::new(value).help(Some(help.into())))
}

/// Proc names, with their descriptions.
pub fn procs() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        lookup(|api| async move {
            let procs = api.run::<ListProcs>(list_procs::Variables {}).await?.procs;
            Ok(procs
                .into_iter()
                .filter_map(|p| candidate(p.name, p.description.unwrap_or_default()))
                .collect())
        })
    })
}

/// The newest execution ids, with their proc, status and age.
pub fn executions() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        lookup(|api| async move {
            let runs = api
                .run::<ListExecutions>(list_executions::Variables {
                    first: Some(NEWEST),
                    after: None,
                    filter: None,
                })
                .await?
                .executions
                .nodes;
            Ok(runs
                .into_iter()
                .filter_map(|run| {
                    let help = format!(
                        "{} {} {}",
                        run.proc_name,
                        enum_name(&run.status),
                        age(&run.created_at)
                    );
                    candidate(run.id, help)
                })
                .collect())
        })
    })
}

/// Schedule ids, with their proc and cron.
pub fn schedules() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        lookup(|api| async move {
            let schedules = api
                .run::<ListSchedules>(list_schedules::Variables {
                    first: Some(NEWEST),
                    after: None,
                    filter: None,
                })
                .await?
                .schedules
                .nodes;
            Ok(schedules
                .into_iter()
                .filter_map(|s| candidate(s.id, format!("{} {}", s.proc_name, s.cron)))
                .collect())
        })
    })
}

/// Context names from the contexts file, with their server.
pub fn contexts() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        Contexts::load()
            .map(|contexts| {
                contexts
                    .contexts
                    .into_iter()
                    .filter_map(|(name, context)| candidate(name, context.host))
                    .collect()
            })
            .unwrap_or_default()
    })
}
