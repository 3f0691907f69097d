//! The Redis event bus against a real Redis: fan-out across replicas, isolation between
//! deployments, recovery after Redis restarts.

use std::time::Duration;

use futures::StreamExt;
use proctor_entity::values::ExecutionStatus;
use proctor_schema::ports::event_bus::{Delivery, DeliveryStream, Event, EventBus, Topic};
use proctor_server::config::RedisSettings;
use proctor_server::redis_bus::RedisEventBus;
use proctor_tests::RedisServer;
use proctor_tests::infra::{redis_url, unique_suffix};

fn bus(url: &str, prefix: &str) -> RedisEventBus {
    RedisEventBus::start(&RedisSettings {
        url: url.parse().unwrap(),
        channel_prefix: prefix.to_owned(),
    })
    .expect("start the Redis bus")
}

async fn wait_ready(bus: &RedisEventBus) {
    for _ in 0..200 {
        if bus.check().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the Redis bus did not become ready: {:?}",
        bus.check().await
    );
}

fn running(execution_id: i64) -> Event {
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    Event::ExecutionStatus {
        execution: Box::new(proctor_entity::execution::Model {
            id: execution_id,
            proc_id: None,
            proc_name: "echo".into(),
            args: proctor_entity::json::ArgValues::default(),
            status: ExecutionStatus::Running,
            trigger: proctor_entity::values::Trigger::Manual,
            schedule_id: None,
            user_email: None,
            image: None,
            executor_ref: Some("42".into()),
            exit_code: None,
            reason: None,
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            updated_at: now,
            owner: None,
            lease_expires_at: None,
            log_source: None,
            log_offset: 0,
            log_since: None,
            log_lines_lost: 0,
            attempts: 1,
            proc_version: Some(1),
            mask_key_id: None,
            mask_sealed: None,
        }),
    }
}

async fn next_event(stream: &mut DeliveryStream) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a delivery within 5 s")
        .expect("the stream is open")
}

#[tokio::test]
#[cfg_attr(
    proctor_no_redis,
    ignore = "needs Redis: set PROCTOR_TEST_REDIS_URL, or run ./tests/run.sh"
)]
async fn events_published_on_one_replica_reach_subscribers_on_every_replica_in_order() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("proctor_test_{}", unique_suffix());
    let (replica_a, replica_b) = (bus(&url, &prefix), bus(&url, &prefix));
    wait_ready(&replica_a).await;
    wait_ready(&replica_b).await;

    let mut on_a = replica_a.subscribe(Topic::Execution(1));
    let mut on_b = replica_b.subscribe(Topic::Execution(1));
    let mut everything_on_b = replica_b.subscribe(Topic::AllExecutions);

    let events: Vec<Event> = (0..50)
        .map(|n| Event::ExecutionLogs {
            execution_id: 1,
            lines: vec![proctor_schema::ports::event_bus::LogRecord {
                seq: n + 1,
                stream: proctor_entity::values::LogStream::Stdout,
                line: format!("line {n}"),
                logged_at: chrono::Utc::now(),
                replaced: false,
            }],
        })
        .collect();
    for event in &events {
        replica_a.publish(event).await.unwrap();
    }
    replica_a.publish(&running(2)).await.unwrap();

    for event in &events {
        assert_eq!(next_event(&mut on_a).await, Delivery::Event(event.clone()));
        assert_eq!(next_event(&mut on_b).await, Delivery::Event(event.clone()));
    }
    // Logs are not status changes: the all-executions topic sees only the status event.
    assert_eq!(
        next_event(&mut everything_on_b).await,
        Delivery::Event(running(2))
    );

    replica_a.shutdown().await;
    replica_b.shutdown().await;
}

#[tokio::test]
#[cfg_attr(
    proctor_no_redis,
    ignore = "needs Redis: set PROCTOR_TEST_REDIS_URL, or run ./tests/run.sh"
)]
async fn deployments_with_different_prefixes_do_not_see_each_other() {
    let Some(url) = redis_url() else { return };
    let ours = bus(&url, &format!("proctor_test_{}", unique_suffix()));
    let theirs = bus(&url, &format!("proctor_test_{}", unique_suffix()));
    wait_ready(&ours).await;
    wait_ready(&theirs).await;

    let mut listening = ours.subscribe(Topic::AllExecutions);
    theirs.publish(&running(7)).await.unwrap();
    ours.publish(&running(8)).await.unwrap();
    // Redis delivers in publish order per connection pair, and ours was published second, so
    // seeing it first proves the foreign event was not delivered.
    assert_eq!(
        next_event(&mut listening).await,
        Delivery::Event(running(8))
    );

    ours.shutdown().await;
    theirs.shutdown().await;
}

#[tokio::test]
#[cfg_attr(
    proctor_no_redis_server,
    ignore = "needs the redis-server program (./tests/run.sh installs it)"
)]
async fn the_bus_recovers_after_redis_restarts_and_reports_the_gap() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let bus = bus(&redis.url(), "proctor_restart");
    wait_ready(&bus).await;
    let mut stream = bus.subscribe(Topic::Execution(3));

    redis.stop();
    let mut saw_down = false;
    for _ in 0..100 {
        if bus.check().await.is_err() {
            saw_down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_down, "the bus must notice Redis is gone");
    assert!(
        bus.publish(&running(3)).await.is_err(),
        "publishing fails while Redis is down"
    );

    redis.resume();
    wait_ready(&bus).await;
    // Events may have been lost while Redis was away: subscribers are told.
    assert_eq!(next_event(&mut stream).await, Delivery::Missed(0));
    bus.publish(&running(3))
        .await
        .expect("publishing works again");
    assert_eq!(next_event(&mut stream).await, Delivery::Event(running(3)));
    bus.shutdown().await;
}
