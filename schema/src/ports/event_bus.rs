//! Publish/subscribe of execution and schedule events across subscribers and replicas.
//!
//! Every process keeps one [`LocalFanout`]: a broadcast channel per [`Topic`] that exists only
//! while somebody listens. The in-memory bus feeds it directly; the Redis bus publishes to one
//! Redis channel and feeds the fan-out from a single subscriber connection, so a replica holds
//! one Redis subscription however many GraphQL subscribers it serves.
//!
//! The bus is a notification path, not storage: the database stays the source of truth. When a
//! subscriber falls behind it receives [`Delivery::Missed`] and must re-read from the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use proctor_entity::execution;
use proctor_entity::values::LogStream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::system::EventBusKind;

/// One output line as it travels on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Position in the execution's output, from 1 without gaps.
    pub seq: i64,
    /// Which stream it came from.
    pub stream: LogStream,
    /// The line, secrets already masked.
    pub line: String,
    /// When it was read.
    pub logged_at: DateTime<Utc>,
    /// Bytes were replaced (NUL or invalid UTF-8 by U+FFFD) so it could be stored.
    #[serde(default)]
    pub replaced: bool,
}

/// Something subscribers may want to know about; published after the database commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An execution changed state; the row as committed, so subscribers need no query.
    ExecutionStatus {
        /// The execution after the transition.
        execution: Box<execution::Model>,
    },
    /// An execution produced output lines (a batch, in order).
    ExecutionLogs {
        /// The execution.
        execution_id: i64,
        /// The lines, in sequence order.
        lines: Vec<LogRecord>,
    },
    /// A schedule was created, edited, paused, resumed or deleted.
    ScheduleChanged {
        /// The schedule.
        schedule_id: i64,
    },
    /// Somebody asked to cancel an execution; whichever replica runs it acts.
    CancelRequested {
        /// The execution.
        execution_id: i64,
        /// Why, as the run's end will say (plain "cancelled" when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A user's tokens were revoked or their groups changed: open websockets of that user
    /// (every user, when `None`) check their credentials again at once.
    CredentialsChanged {
        /// The user, in lower case.
        email: Option<String>,
    },
}

/// What a subscriber listens to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Status and logs of one execution.
    Execution(i64),
    /// Output lines of every execution (`logMatches`).
    AllLogs,
    /// Status changes of every execution.
    AllExecutions,
    /// Changes to any schedule (the scheduler loop listens here).
    Schedules,
    /// Requests between replicas (cancellation).
    Control,
    /// Revocations and group changes (open websockets listen here).
    Credentials,
}

impl Event {
    /// The topics this event is delivered on.
    pub fn topics(&self) -> Vec<Topic> {
        match self {
            Self::ExecutionStatus { execution } => {
                vec![Topic::Execution(execution.id), Topic::AllExecutions]
            }
            Self::ExecutionLogs { execution_id, .. } => {
                vec![Topic::Execution(*execution_id), Topic::AllLogs]
            }
            Self::ScheduleChanged { .. } => vec![Topic::Schedules],
            Self::CancelRequested { .. } => vec![Topic::Control],
            Self::CredentialsChanged { .. } => vec![Topic::Credentials],
        }
    }
}

/// What a subscription yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The next event on the topic.
    Event(Event),
    /// Events were lost: this many when the subscriber was too slow, `0` when the number is
    /// unknown (the bus lost its connection for a while). The subscriber must re-read the
    /// current state from the database.
    Missed(u64),
}

/// A live subscription; it ends when the bus shuts down.
pub type DeliveryStream = BoxStream<'static, Delivery>;

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EventBusError {
    /// The backing service (Redis) is unreachable or refused the command.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// Publish/subscribe port. Implementations: [`InMemoryEventBus`] (single replica) and the
/// Redis bus in `proctor-server` (many replicas).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Which implementation this is (reported by `serverInfo`).
    fn kind(&self) -> EventBusKind;

    /// Delivers `event` to every current subscriber of its topics, on every replica.
    async fn publish(&self, event: &Event) -> Result<(), EventBusError>;

    /// Starts listening to `topic`; events published afterwards are delivered in order.
    fn subscribe(&self, topic: Topic) -> DeliveryStream;

    /// Whether the bus can deliver right now (used by `/readyz`).
    async fn check(&self) -> Result<(), EventBusError>;
}

/// The per-process fan-out from published events to local subscribers.
pub struct LocalFanout {
    topics: Mutex<HashMap<Topic, broadcast::Sender<Delivery>>>,
    capacity: usize,
}

impl LocalFanout {
    /// A fan-out whose subscribers may fall `capacity` deliveries behind before they are told
    /// they missed some.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            topics: Mutex::new(HashMap::new()),
            capacity,
        })
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<Topic, broadcast::Sender<Delivery>>> {
        // A panic while holding this lock cannot leave the map inconsistent (every operation
        // is a single insert, lookup or remove), so a poisoned lock is safe to keep using.
        self.topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes to `topic`. The channel is created on first use and dropped with its last
    /// subscriber, so idle topics cost nothing.
    pub fn subscribe(self: &Arc<Self>, topic: Topic) -> DeliveryStream {
        let receiver = self
            .topics()
            .entry(topic)
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        let guard = TopicGuard {
            fanout: Arc::clone(self),
            topic,
        };
        // The tuple drops the receiver before the guard, so the guard sees the true count.
        stream::unfold((receiver, guard), |(mut receiver, guard)| async move {
            let delivery = match receiver.recv().await {
                Ok(delivery) => delivery,
                Err(broadcast::error::RecvError::Lagged(missed)) => Delivery::Missed(missed),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((delivery, (receiver, guard)))
        })
        .boxed()
    }

    /// Hands `event` to the local subscribers of each of its topics.
    pub fn dispatch(&self, event: &Event) {
        let mut topics = self.topics();
        for topic in event.topics() {
            if let Some(sender) = topics.get(&topic)
                && sender.send(Delivery::Event(event.clone())).is_err()
            {
                topics.remove(&topic);
            }
        }
    }

    /// Tells every local subscriber that `count` events may have been lost upstream.
    pub fn dispatch_missed(&self, count: u64) {
        for sender in self.topics().values() {
            // An error only means the last subscriber just left; its guard removes the entry.
            let _ = sender.send(Delivery::Missed(count));
        }
    }

    /// How many topics currently have local subscribers.
    pub fn active_topics(&self) -> usize {
        self.topics().len()
    }
}

/// Removes a topic's channel when its last subscriber goes away.
struct TopicGuard {
    fanout: Arc<LocalFanout>,
    topic: Topic,
}

impl Drop for TopicGuard {
    fn drop(&mut self) {
        let mut topics = self.fanout.topics();
        if topics
            .get(&self.topic)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            topics.remove(&self.topic);
        }
    }
}

/// Deliveries a local subscriber may lag behind before it is told it missed some.
pub const DEFAULT_FANOUT_CAPACITY: usize = 4_096;

/// The event bus of a single `proctord`: events never leave the process.
pub struct InMemoryEventBus {
    fanout: Arc<LocalFanout>,
}

impl InMemoryEventBus {
    /// A bus with the default per-subscriber buffer.
    pub fn new() -> Self {
        Self {
            fanout: LocalFanout::new(DEFAULT_FANOUT_CAPACITY),
        }
    }
}

impl Default for InMemoryEventBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventBus for InMemoryEventBus {
    fn kind(&self) -> EventBusKind {
        EventBusKind::Memory
    }

    async fn publish(&self, event: &Event) -> Result<(), EventBusError> {
        self.fanout.dispatch(event);
        Ok(())
    }

    fn subscribe(&self, topic: Topic) -> DeliveryStream {
        self.fanout.subscribe(topic)
    }

    async fn check(&self) -> Result<(), EventBusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proctor_entity::json::ArgValues;
    use proctor_entity::values::{ExecutionStatus, Trigger};

    /// A status event for `execution_id` in `status`.
    pub(crate) fn status(execution_id: i64, status: ExecutionStatus) -> Event {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Event::ExecutionStatus {
            execution: Box::new(execution::Model {
                id: execution_id,
                proc_id: Some(1),
                proc_name: "echo".into(),
                args: ArgValues::default(),
                status,
                trigger: Trigger::Manual,
                schedule_id: None,
                user_email: None,
                image: None,
                executor_ref: None,
                exit_code: None,
                reason: None,
                created_at: now,
                started_at: None,
                finished_at: None,
                updated_at: now,
                owner: None,
                lease_expires_at: None,
                log_source: None,
                log_offset: 0,
                log_since: None,
                log_lines_lost: 0,
                attempts: 1,
                proc_version: None,
                mask_key_id: None,
                mask_sealed: None,
            }),
        }
    }

    #[tokio::test]
    async fn subscribers_get_only_their_topics_in_publish_order() {
        let bus = InMemoryEventBus::new();
        let mut one = bus.subscribe(Topic::Execution(1));
        let mut all = bus.subscribe(Topic::AllExecutions);

        bus.publish(&status(2, ExecutionStatus::Running))
            .await
            .unwrap();
        bus.publish(&status(1, ExecutionStatus::Running))
            .await
            .unwrap();
        bus.publish(&status(1, ExecutionStatus::Succeeded))
            .await
            .unwrap();

        assert_eq!(
            one.next().await,
            Some(Delivery::Event(status(1, ExecutionStatus::Running)))
        );
        assert_eq!(
            one.next().await,
            Some(Delivery::Event(status(1, ExecutionStatus::Succeeded)))
        );
        for expected in [
            status(2, ExecutionStatus::Running),
            status(1, ExecutionStatus::Running),
            status(1, ExecutionStatus::Succeeded),
        ] {
            assert_eq!(all.next().await, Some(Delivery::Event(expected)));
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_many_events_it_missed() {
        let fanout = LocalFanout::new(2);
        let mut slow = fanout.subscribe(Topic::Execution(7));
        for _ in 0..5 {
            fanout.dispatch(&status(7, ExecutionStatus::Running));
        }
        assert_eq!(slow.next().await, Some(Delivery::Missed(3)));
        assert!(matches!(slow.next().await, Some(Delivery::Event(_))));
    }

    #[tokio::test]
    async fn a_topic_is_dropped_with_its_last_subscriber() {
        let fanout = LocalFanout::new(8);
        let first = fanout.subscribe(Topic::Execution(1));
        let second = fanout.subscribe(Topic::Execution(1));
        assert_eq!(fanout.active_topics(), 1);
        drop(first);
        assert_eq!(fanout.active_topics(), 1);
        drop(second);
        assert_eq!(fanout.active_topics(), 0);
    }

    #[test]
    fn events_round_trip_through_json() {
        let event = Event::ExecutionLogs {
            execution_id: 9,
            lines: vec![LogRecord {
                seq: 1,
                stream: LogStream::Stderr,
                line: "boom".into(),
                logged_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                replaced: false,
            }],
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""kind":"execution_logs""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }
}
