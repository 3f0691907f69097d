//! Collecting figures, comparing them with the targets, writing `latest.json` and the table.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A target: the figure's key, how it is compared, the bound.
struct Target {
    key: &'static str,
    label: &'static str,
    at_least: bool,
    bound: f64,
}

const TARGETS: &[Target] = &[
    Target {
        key: "dispatch_per_s",
        label: "dispatch, executions/s",
        at_least: true,
        bound: 1000.0,
    },
    Target {
        key: "dispatch_share_of_fork_exec",
        label: "dispatch ÷ fork+exec limit",
        at_least: true,
        bound: 0.5,
    },
    Target {
        key: "submit_per_s",
        label: "execute mutation, submissions/s (concurrency 8)",
        at_least: true,
        bound: 2000.0,
    },
    Target {
        key: "first_log_p50_ms",
        label: "first log line p50, ms (concurrency 1)",
        at_least: false,
        bound: 5.0,
    },
    Target {
        key: "first_log_p99_ms",
        label: "first log line p99, ms (concurrency 1)",
        at_least: false,
        bound: 25.0,
    },
    Target {
        key: "fanout_batched_1000_lines_per_s",
        label: "fan-out to 1,000 batched subscribers, lines/s delivered",
        at_least: true,
        bound: 1_000_000.0,
    },
    Target {
        key: "fanout_batched_1000_p99_lag_ms",
        label: "fan-out to 1,000 batched, p99 emit→receive lag, ms",
        at_least: false,
        bound: 100.0,
    },
    Target {
        key: "fanout_100_p99_lag_ms",
        label: "fan-out to 100 per-line, p99 emit→receive lag, ms",
        at_least: false,
        bound: 100.0,
    },
    Target {
        key: "fanout_gaps",
        label: "fan-out gaps (all runs)",
        at_least: false,
        bound: 0.0,
    },
    Target {
        key: "fanout_duplicates",
        label: "fan-out duplicates (all runs)",
        at_least: false,
        bound: 0.0,
    },
    Target {
        key: "idle_10k_subs_rss_mib",
        label: "10,000 idle subscriptions, server RSS MiB",
        at_least: false,
        bound: 150.0,
    },
    Target {
        key: "rss_after_burst_share",
        label: "RSS 60 s after the fan-out ÷ RSS before it",
        at_least: false,
        bound: 1.2,
    },
    Target {
        key: "gql_share_of_rest",
        label: "GraphQL ÷ REST shim throughput (same reads)",
        at_least: true,
        bound: 1.0,
    },
    Target {
        key: "sched_p99_lateness_ms",
        label: "scheduler p99 lateness, ms",
        at_least: false,
        bound: 50.0,
    },
    Target {
        key: "sched_missed",
        label: "scheduler missed slots",
        at_least: false,
        bound: 0.0,
    },
    Target {
        key: "sched_duplicates",
        label: "scheduler duplicate slots",
        at_least: false,
        bound: 0.0,
    },
    Target {
        key: "idle_rss_mib",
        label: "idle RSS, MiB (embedded default)",
        at_least: false,
        bound: 30.0,
    },
    Target {
        key: "ready_ms",
        label: "start → /readyz, ms",
        at_least: false,
        bound: 200.0,
    },
];

/// Every figure of a run.
pub struct Results {
    figures: BTreeMap<String, Value>,
}

/// A histogram of milliseconds with microsecond resolution.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A quantile of a microsecond histogram, in milliseconds.
pub fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return f64::NAN;
    }
    round(histogram.value_at_quantile(quantile) as f64 / 1000.0)
}

/// Two decimals.
pub fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl Results {
    /// No figures yet.
    pub fn new() -> Self {
        Self {
            figures: BTreeMap::new(),
        }
    }

    /// Records a figure (and prints it, so a long run shows progress).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        eprintln!("  {key} = {value}");
        self.figures.insert(key.to_owned(), value);
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.figures.get(key).and_then(Value::as_f64)
    }

    /// Adds the derived ratios, prints the table and writes the JSON.
    pub fn finish(mut self, out: &Path, quick: bool) -> anyhow::Result<()> {
        if let (Some(dispatch), Some(fork)) = (
            self.number("dispatch_per_s"),
            self.number("fork_exec_per_s"),
        ) {
            self.set("dispatch_share_of_fork_exec", round(dispatch / fork));
        }
        if let (Some(gql), Some(rest)) =
            (self.number("gql_req_per_s"), self.number("rest_req_per_s"))
        {
            self.set("gql_share_of_rest", round(gql / rest));
        }
        println!("| Measure | Result | Target | Met |\n|---|---|---|---|");
        for target in TARGETS {
            let Some(value) = self.number(target.key) else {
                continue;
            };
            let met = if target.at_least {
                value >= target.bound
            } else {
                value <= target.bound
            };
            let relation = if target.at_least { "≥" } else { "≤" };
            println!(
                "| {} | {} | {relation} {} | {} |",
                target.label,
                value,
                target.bound,
                if met { "yes" } else { "**no**" }
            );
        }
        let mut object = serde_json::Map::new();
        for (key, value) in &self.figures {
            object.insert(key.clone(), value.clone());
        }
        object.insert("machine".into(), machine());
        object.insert("git_rev".into(), json!(git_rev()));
        object.insert("quick".into(), json!(quick));
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(
            out,
            serde_json::to_string_pretty(&Value::Object(object))? + "\n",
        )?;
        eprintln!("wrote {}", out.display());
        Ok(())
    }
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_default();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| round(kib / 1024.0 / 1024.0));
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": model,
        "memory_gib": memory_gib,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
