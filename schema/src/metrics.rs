//! Prometheus metrics: executions by proc and final status, their durations, how many run and
//! how many wait for a slot, live subscriptions, stored log lines, schedule fires, skips,
//! catch-ups and lateness, notifications and the outbox's depth; the build, the process, HTTP
//! requests, the database pool and the event bus. `proctord` serves them at `/metrics`.
//!
//! Invariants: every family has HELP text; both exposition formats come from the one registry
//! ([`Metrics::render`] gives `OpenMetrics`, [`Metrics::render_classic`] the Prometheus text
//! format 0.0.4, where a counter's HELP and TYPE name its `_total` samples); values read at
//! scrape time (process, pool, bus, outbox) are set by the caller just before rendering
//! ([`Metrics::set_scrape`]).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Bucket bounds of the duration histogram, in seconds: from a quick script to an hour-long job.
const DURATION_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    proc: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcLabels {
    proc: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: String,
}

/// Bucket bounds of the HTTP request duration histogram, in seconds.
const HTTP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

/// What is read at scrape time, set just before rendering.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scrape {
    /// CPU time the process used (user + system), in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: i64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: i64,
    /// Open file descriptors.
    pub open_fds: i64,
    /// The limit on open file descriptors.
    pub max_fds: i64,
    /// When the process started, in seconds since the epoch.
    pub start_time_seconds: i64,
    /// Database connections in use.
    pub pool_in_use: i64,
    /// Database connections open and idle.
    pub pool_idle: i64,
    /// Whether the event bus answered (1) or not (0).
    pub event_bus_up: i64,
    /// Notifications waiting to be delivered.
    pub outbox_pending: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    channel: String,
    result: String,
}

/// Bucket bounds of the schedule lateness histogram, in seconds: on time is a few milliseconds.
const LATENESS_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The registry and the metrics in it.
pub struct Metrics {
    registry: Registry,
    finished: Family<FinishedLabels, Counter>,
    durations: Family<ProcLabels, Histogram, fn() -> Histogram>,
    running: Gauge<i64, std::sync::atomic::AtomicI64>,
    subscriptions: Family<SubscriptionLabels, Gauge>,
    log_lines: Counter<u64, AtomicU64>,
    schedule_fires: Counter<u64, AtomicU64>,
    schedule_skips: Family<ReasonLabels, Counter>,
    schedule_catch_ups: Counter<u64, AtomicU64>,
    schedule_lateness: Histogram,
    notifications: Family<NotificationLabels, Counter>,
    waiting: Gauge<i64, std::sync::atomic::AtomicI64>,
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
    cpu: Counter<f64, AtomicU64>,
    cpu_seen: std::sync::Mutex<f64>,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
    pool: Family<PoolLabels, Gauge>,
    event_bus_up: Gauge,
    outbox_pending: Gauge,
}

impl Metrics {
    /// Registers every metric: the domain's under the `proctor_` prefix, the standard process
    /// metrics under `process_`.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("proctor");
        let finished = Family::<FinishedLabels, Counter>::default();
        registry.register(
            "executions",
            "Executions that reached a final state, by proc and status",
            finished.clone(),
        );
        let durations: Family<ProcLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "execution_duration_seconds",
            "Time from start to final state of executions that ran, by proc",
            durations.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "executions_running",
            "Executions running now",
            running.clone(),
        );
        let subscriptions = Family::<SubscriptionLabels, Gauge>::default();
        registry.register(
            "subscriptions_active",
            "Open GraphQL subscriptions, by kind",
            subscriptions.clone(),
        );
        let log_lines = Counter::default();
        registry.register("log_lines_stored", "Output lines stored", log_lines.clone());
        let schedule_fires = Counter::default();
        registry.register(
            "schedule_fires",
            "Schedule slots that started an execution (on time or caught up)",
            schedule_fires.clone(),
        );
        let schedule_skips = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "schedule_skips",
            "Schedule slots not fired, by reason (overlap, missed)",
            schedule_skips.clone(),
        );
        let schedule_catch_ups = Counter::default();
        registry.register(
            "schedule_catch_ups",
            "Slots fired late, after the scheduler was away, by the catch-up policy",
            schedule_catch_ups.clone(),
        );
        let schedule_lateness = Histogram::new(LATENESS_BUCKETS);
        registry.register(
            "schedule_lateness_seconds",
            "Time from a slot to its firing",
            schedule_lateness.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications about finished scheduled runs, by channel and result",
            notifications.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1, labelled with the version of proctord that runs",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        let waiting = Gauge::default();
        registry.register(
            "executions_waiting",
            "Executions waiting for a free slot (PROCTOR_MAX_PARALLEL_RUNS) on this replica",
            waiting.clone(),
        );
        let http: Family<HttpLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(http_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route, method and status",
            http.clone(),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections, by state (in_use, idle)",
            pool.clone(),
        );
        let event_bus_up = Gauge::default();
        registry.register(
            "event_bus_up",
            "Whether the event bus answered at the last scrape (1) or not (0)",
            event_bus_up.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "notification_outbox_pending",
            "Notifications waiting to be delivered",
            outbox_pending.clone(),
        );
        // The standard process metrics (no prefix), as client libraries name them.
        let process = root.sub_registry_with_prefix("process");
        let cpu = Counter::<f64, AtomicU64>::default();
        process.register(
            "cpu_seconds",
            "Total user and system CPU time spent in seconds",
            cpu.clone(),
        );
        let resident = Gauge::default();
        process.register(
            "resident_memory_bytes",
            "Resident memory size in bytes",
            resident.clone(),
        );
        let virtual_memory = Gauge::default();
        process.register(
            "virtual_memory_bytes",
            "Virtual memory size in bytes",
            virtual_memory.clone(),
        );
        let open_fds = Gauge::default();
        process.register(
            "open_fds",
            "Number of open file descriptors",
            open_fds.clone(),
        );
        let max_fds = Gauge::default();
        process.register(
            "max_fds",
            "Maximum number of open file descriptors",
            max_fds.clone(),
        );
        let start_time = Gauge::default();
        process.register(
            "start_time_seconds",
            "Start time of the process since the epoch in seconds",
            start_time.clone(),
        );
        Self {
            registry: root,
            waiting,
            http,
            cpu,
            cpu_seen: std::sync::Mutex::new(0.0),
            resident,
            virtual_memory,
            open_fds,
            max_fds,
            start_time,
            pool,
            event_bus_up,
            outbox_pending,
            finished,
            durations,
            running,
            subscriptions,
            log_lines,
            schedule_fires,
            schedule_skips,
            schedule_catch_ups,
            schedule_lateness,
            notifications,
        }
    }

    /// Counts an execution that reached `status`, with how long it ran if it ran.
    pub fn execution_finished(&self, proc: &str, status: &str, ran_for: Option<Duration>) {
        self.finished
            .get_or_create(&FinishedLabels {
                proc: proc.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        if let Some(ran_for) = ran_for {
            self.durations
                .get_or_create(&ProcLabels {
                    proc: proc.to_owned(),
                })
                .observe(ran_for.as_secs_f64());
        }
    }

    /// An execution started running.
    pub fn run_started(&self) {
        self.running.inc();
    }

    /// A running execution ended.
    pub fn run_ended(&self) {
        self.running.dec();
    }

    /// Counts stored log lines.
    pub fn log_lines_stored(&self, count: u64) {
        self.log_lines.inc_by(count);
    }

    /// A schedule slot fired `late` after its time; `caught_up` when it was fired late on purpose
    /// (catch-up after the scheduler was away).
    pub fn schedule_fired(&self, late: Duration, caught_up: bool) {
        self.schedule_fires.inc();
        self.schedule_lateness.observe(late.as_secs_f64());
        if caught_up {
            self.schedule_catch_ups.inc();
        }
    }

    /// `count` schedule slots were not fired, because of `reason` (`overlap`, `missed`).
    pub fn schedule_skipped(&self, reason: &str, count: u64) {
        self.schedule_skips
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(count);
    }

    /// A notification on `channel` was delivered or not.
    pub fn notification(&self, channel: &str, delivered: bool) {
        self.notifications
            .get_or_create(&NotificationLabels {
                channel: channel.to_owned(),
                result: if delivered { "delivered" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    /// Counts an open subscription of `kind` until the returned guard is dropped.
    pub fn subscription(&self, kind: &str) -> SubscriptionGuard {
        let gauge = self
            .subscriptions
            .get_or_create(&SubscriptionLabels {
                kind: kind.to_owned(),
            })
            .clone();
        gauge.inc();
        SubscriptionGuard { gauge }
    }

    /// An execution waits for a free slot until the returned guard is dropped.
    pub fn waiting_for_slot(&self) -> WaitingGuard {
        self.waiting.inc();
        WaitingGuard {
            gauge: self.waiting.clone(),
        }
    }

    /// Counts an answered HTTP request (`route` is the matched pattern, never the raw path,
    /// so ids do not multiply the series).
    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                // Any token is a method to HTTP: only the standard ones get a series of their
                // own, or a client could grow the registry without bound.
                method: match method {
                    "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" => method,
                    _ => "other",
                }
                .to_owned(),
                status: status.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Sets what is read at scrape time.
    pub fn set_scrape(&self, scrape: &Scrape) {
        let mut seen = self
            .cpu_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if scrape.cpu_seconds > *seen {
            self.cpu.inc_by(scrape.cpu_seconds - *seen);
            *seen = scrape.cpu_seconds;
        }
        drop(seen);
        self.resident.set(scrape.resident_bytes);
        self.virtual_memory.set(scrape.virtual_bytes);
        self.open_fds.set(scrape.open_fds);
        self.max_fds.set(scrape.max_fds);
        self.start_time.set(scrape.start_time_seconds);
        for (state, value) in [("in_use", scrape.pool_in_use), ("idle", scrape.pool_idle)] {
            self.pool
                .get_or_create(&PoolLabels {
                    state: state.to_owned(),
                })
                .set(value);
        }
        self.event_bus_up.set(scrape.event_bus_up);
        self.outbox_pending.set(scrape.outbox_pending);
    }

    /// The metrics in the `OpenMetrics` text format (`application/openmetrics-text`).
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The metrics in the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`): a
    /// counter's HELP and TYPE name its `_total` samples, and there is no `# EOF` or `# UNIT`.
    pub fn render_classic(&self) -> String {
        classic(&self.render())
    }
}

/// `OpenMetrics` text as the Prometheus text format 0.0.4.
fn classic(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some(help) = help.take() {
                let text = help.split_once(' ').map_or("", |(_, text)| text);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Keeps an execution counted as waiting for a slot while it lives.
pub struct WaitingGuard {
    gauge: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps a subscription counted while it lives.
pub struct SubscriptionGuard {
    gauge: Gauge,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_labels() {
        let metrics = Metrics::new();
        metrics.execution_finished("deploy", "SUCCEEDED", Some(Duration::from_millis(700)));
        metrics.run_started();
        metrics.log_lines_stored(3);
        let guard = metrics.subscription("executionLogs");
        metrics.schedule_fired(Duration::from_millis(3), false);
        metrics.schedule_fired(Duration::from_secs(40), true);
        metrics.schedule_skipped("overlap", 2);
        metrics.notification("email", false);
        let text = metrics.render();
        for expected in [
            r#"proctor_executions_total{proc="deploy",status="SUCCEEDED"} 1"#,
            r#"proctor_execution_duration_seconds_bucket{le="1.0",proc="deploy"} 1"#,
            "proctor_executions_running 1",
            r#"proctor_subscriptions_active{kind="executionLogs"} 1"#,
            "proctor_log_lines_stored_total 3",
            "proctor_schedule_fires_total 2",
            "proctor_schedule_catch_ups_total 1",
            r#"proctor_schedule_skips_total{reason="overlap"} 2"#,
            r#"proctor_schedule_lateness_seconds_bucket{le="0.005"} 1"#,
            r#"proctor_schedule_lateness_seconds_bucket{le="300.0"} 2"#,
            r#"proctor_notifications_total{channel="email",result="failed"} 1"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        drop(guard);
        assert!(
            metrics
                .render()
                .contains(r#"proctor_subscriptions_active{kind="executionLogs"} 0"#)
        );
    }

    #[test]
    fn the_classic_format_names_counters_by_their_samples_and_has_no_eof() {
        let metrics = Metrics::new();
        metrics.log_lines_stored(3);
        metrics.http_request("/graphql", "POST", 200, Duration::from_millis(3));
        metrics.set_scrape(&Scrape {
            cpu_seconds: 1.5,
            resident_bytes: 1024,
            ..Scrape::default()
        });
        let text = metrics.render_classic();
        for expected in [
            "# HELP proctor_log_lines_stored_total Output lines stored",
            "# TYPE proctor_log_lines_stored_total counter",
            "proctor_log_lines_stored_total 3",
            "# TYPE process_cpu_seconds_total counter",
            "process_cpu_seconds_total 1.5",
            "process_resident_memory_bytes 1024",
            r#"proctor_build_info{version=""#,
            r#"proctor_http_request_duration_seconds_count{route="/graphql",method="POST",status="200"} 1"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        metrics.http_request("unmatched", "RANDOM1", 404, Duration::from_millis(1));
        metrics.http_request("unmatched", "RANDOM2", 404, Duration::from_millis(1));
        let text = metrics.render_classic();
        assert!(
            text.contains(r#"method="other",status="404"} 2"#),
            "odd methods share one series:\n{text}"
        );
        assert!(!text.contains("RANDOM"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        let families = text
            .lines()
            .filter(|line| line.starts_with("# TYPE "))
            .count();
        let helps = text
            .lines()
            .filter(|line| line.starts_with("# HELP "))
            .count();
        assert_eq!(families, helps, "every family has HELP:\n{text}");
    }
}
