//! The Redis event bus: how replicas share execution and schedule events.
//!
//! Each process holds two Redis connections, whatever the number of GraphQL subscribers: one
//! publishes, one is subscribed to the deployment's single channel `<prefix>:events` and feeds
//! the process-local [`LocalFanout`]. One channel (rather than one per execution) means a
//! replica never has to subscribe or unsubscribe as clients come and go, so there is nothing to
//! race and nothing to re-establish after a reconnect but that one subscription.
//!
//! Both connections reconnect forever with capped backoff, so a Redis restart needs no
//! `proctord` restart. Events published while Redis is away are lost; local subscribers are
//! told so with [`Delivery::Missed`](proctor_schema::ports::event_bus::Delivery) and re-read
//! the database, which remains the source of truth.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable as _};
use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, Client, ClientLike, Config, EventInterface, PubsubInterface, ReconnectPolicy,
};
use proctor_schema::ports::event_bus::{
    DEFAULT_FANOUT_CAPACITY, DeliveryStream, Event, EventBus, EventBusError, LocalFanout, Topic,
};
use proctor_schema::system::EventBusKind;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::config::RedisSettings;

/// How long a command (PING, PUBLISH, SUBSCRIBE) may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Backoff between reconnect attempts: 100 ms doubling up to 2 s, forever.
const RECONNECT_MIN_MS: u32 = 100;
const RECONNECT_MAX_MS: u32 = 2_000;
/// How long shutdown waits for Redis to acknowledge QUIT.
const QUIT_TIMEOUT: Duration = Duration::from_millis(250);
/// Messages the subscriber connection buffers before the dispatcher counts as lagging.
const SUBSCRIBER_BUFFER: usize = 8_192;

/// Event bus over Redis pub/sub; see the module docs.
pub struct RedisEventBus {
    publisher: Client,
    subscriber: SubscriberClient,
    channel: String,
    fanout: Arc<LocalFanout>,
    /// Whether the event channel is subscribed on the current subscriber connection.
    subscribed: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RedisEventBus {
    /// Starts both connections. Returns at once even when Redis is down: the connections keep
    /// retrying in the background and `/readyz` reports Redis until they succeed.
    pub fn start(settings: &RedisSettings) -> Result<Self, fred::error::Error> {
        let mut config = Config::from_url(settings.url.as_str())?;
        // Keep retrying the first connection too instead of failing start-up.
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|connection| {
                connection.connection_timeout = COMMAND_TIMEOUT;
                connection.internal_command_timeout = COMMAND_TIMEOUT;
            })
            .with_performance_config(|performance| {
                performance.default_command_timeout = COMMAND_TIMEOUT;
                performance.broadcast_channel_capacity = SUBSCRIBER_BUFFER;
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_MS,
                RECONNECT_MAX_MS,
                2,
            ));
        let publisher = builder.build()?;
        let subscriber = builder.build_subscriber_client()?;
        let channel = format!("{}:events", settings.channel_prefix);
        let fanout = LocalFanout::new(DEFAULT_FANOUT_CAPACITY);

        // Take the receivers before connecting so no message or connection is missed.
        let messages = subscriber.message_rx();
        let connections = subscriber.reconnect_rx();
        let subscribed = Arc::new(AtomicBool::new(false));
        publisher.connect();
        subscriber.connect();
        let tasks = vec![
            tokio::spawn(dispatch(messages, Arc::clone(&fanout))),
            tokio::spawn(keep_subscribed(
                subscriber.clone(),
                channel.clone(),
                Arc::clone(&fanout),
                Arc::clone(&subscribed),
                connections,
            )),
        ];
        Ok(Self {
            publisher,
            subscriber,
            channel,
            fanout,
            subscribed,
            tasks,
        })
    }

    /// Closes both connections and stops the background tasks.
    pub async fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        // QUIT is a courtesy (closing the sockets is what matters), and fred's QUIT waits for
        // a reply until the command timeout, so it gets a short deadline.
        let quit = async { tokio::join!(self.subscriber.quit(), self.publisher.quit()) };
        if tokio::time::timeout(QUIT_TIMEOUT, quit).await.is_err() {
            tracing::debug!("Redis did not acknowledge QUIT in time; closing anyway");
        }
    }
}

/// Feeds messages from the Redis subscription into the local fan-out.
async fn dispatch(
    mut messages: tokio::sync::broadcast::Receiver<fred::types::Message>,
    fanout: Arc<LocalFanout>,
) {
    loop {
        match messages.recv().await {
            Ok(message) => match message
                .value
                .as_str()
                .map(|text| serde_json::from_str(&text))
            {
                Some(Ok(event)) => fanout.dispatch(&event),
                _ => tracing::warn!(
                    redis.channel = %message.channel,
                    "ignoring a message on the event channel that is not a Proctor event"
                ),
            },
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "event dispatcher fell behind the Redis subscription"
                );
                fanout.dispatch_missed(missed);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Subscribes to the event channel on every (re)connection of the subscriber client; fred
/// announces each one, the first included. After a reconnect, events published during the
/// outage are gone, so local subscribers are told once the subscription is back.
async fn keep_subscribed(
    subscriber: SubscriberClient,
    channel: String,
    fanout: Arc<LocalFanout>,
    subscribed: Arc<AtomicBool>,
    mut connections: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
) {
    let mut first_connection = true;
    loop {
        match connections.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
        subscribed.store(false, Ordering::SeqCst);
        subscribe_with_retry(&subscriber, &channel).await;
        subscribed.store(true, Ordering::SeqCst);
        if first_connection {
            first_connection = false;
        } else {
            tracing::info!(redis.channel = %channel, "reconnected to Redis and re-subscribed");
            fanout.dispatch_missed(0);
        }
    }
}

/// Sends SUBSCRIBE until it succeeds (the connection may drop again meanwhile), backing off as
/// the reconnections do.
async fn subscribe_with_retry(subscriber: &SubscriberClient, channel: &str) {
    let backoff = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(u64::from(RECONNECT_MIN_MS)))
        .with_max_delay(Duration::from_millis(u64::from(RECONNECT_MAX_MS)))
        .with_jitter()
        .without_max_times();
    let subscribed = (|| subscriber.subscribe(channel))
        .retry(backoff)
        .notify(|error, _| {
            tracing::debug!(%error, redis.channel = %channel, "SUBSCRIBE failed; retrying");
        })
        .await;
    debug_assert!(subscribed.is_ok(), "retried without limit");
}

#[async_trait]
impl EventBus for RedisEventBus {
    fn kind(&self) -> EventBusKind {
        EventBusKind::Redis
    }

    async fn publish(&self, event: &Event) -> Result<(), EventBusError> {
        let payload = serde_json::to_string(event)
            .map_err(|e| EventBusError::Unavailable(format!("cannot encode event: {e}")))?;
        self.publisher
            .publish::<(), _, _>(self.channel.as_str(), payload)
            .await
            .map_err(|e| EventBusError::Unavailable(e.to_string()))
    }

    fn subscribe(&self, topic: Topic) -> DeliveryStream {
        self.fanout.subscribe(topic)
    }

    async fn check(&self) -> Result<(), EventBusError> {
        if !self.subscriber.is_connected() {
            return Err(EventBusError::Unavailable(
                "the subscriber connection is down".to_owned(),
            ));
        }
        if !self.subscribed.load(Ordering::SeqCst) {
            return Err(EventBusError::Unavailable(format!(
                "not yet subscribed to {}",
                self.channel
            )));
        }
        self.publisher
            .ping::<String>(None)
            .await
            .map(drop)
            .map_err(|e| EventBusError::Unavailable(e.to_string()))
    }
}
