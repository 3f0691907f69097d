//! Prometheus metrics of the domain: executions by proc and final status, their durations,
//! how many run now, live subscriptions, stored log lines, schedule fires, skips, catch-ups and
//! lateness, notifications. `proctord` serves them at `/metrics`.

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
}

impl Metrics {
    /// Registers every metric under the `proctor_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("proctor");
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
        Self {
            registry,
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

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
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
}
