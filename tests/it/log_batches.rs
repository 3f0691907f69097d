//! `executionLogBatches`: the same lines as `executionLogs` (each exactly once, in order,
//! whenever the subscriber joins or resumes), delivered as batches of consecutive lines.

use std::time::Duration;

use graphql_client::GraphQLQuery as _;
use proctor_tests::api::{
    ExecutionStatus::Succeeded, FollowLogBatches, LineBatch, batches_of, numbered, proc, sh,
};
use proctor_tests::graphql_ws::{Event, WsClient};
use proctor_tests::{Stack, TestApp};

/// The lines of `batches`, checking what every batch promises: not empty, at most `max`
/// lines, consecutive `seq`s, and `lastSeq` naming its last line.
fn lines_of(batches: &[LineBatch], max: usize) -> Vec<(i64, String)> {
    let mut lines = Vec::new();
    for batch in batches {
        assert!(
            !batch.lines.is_empty() && batch.lines.len() <= max,
            "a batch of {} lines (at most {max})",
            batch.lines.len()
        );
        for pair in batch.lines.windows(2) {
            assert_eq!(
                pair[1].seq,
                pair[0].seq + 1,
                "lines of a batch are consecutive"
            );
        }
        assert_eq!(
            Some(batch.last_seq),
            batch.lines.last().map(|line| line.seq),
            "lastSeq is the seq of the batch's last line"
        );
        lines.extend(batch.lines.iter().map(|line| (line.seq, line.line.clone())));
    }
    lines
}

async fn late_joiners_and_resumers_get_each_line_once_in_batches(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(proc("flood", &["seq", "1", "10000"])).await;
    let id = api.execute("flood", &[]).await;
    assert_eq!(api.await_final(&id).await.status, Succeeded);

    let mut variables = batches_of(&id, 0);
    variables.max_lines = Some(700);
    let batches = api.follow_batches(variables).await;
    assert_eq!(
        lines_of(&batches, 700),
        numbered(1..=10_000),
        "a late subscriber gets all"
    );
    assert!(
        batches.len() < 100,
        "stored lines come in full batches, not one by one: {} batches",
        batches.len()
    );
    let resumed = api.follow_batches(batches_of(&id, 9_000)).await;
    assert_eq!(
        lines_of(&resumed, 1_000),
        numbered(9_001..=10_000),
        "resume gets the rest"
    );

    // Joining while it runs: backlog, then live, no gap and no duplicate, with and without a
    // gathering delay.
    let id = api.dripping_run().await;
    let mut gathering = batches_of(&id, 100);
    gathering.max_delay_ms = Some(50);
    gathering.max_lines = Some(40);
    let (from_start, resumed) = tokio::join!(
        api.follow_batches(batches_of(&id, 0)),
        api.follow_batches(gathering)
    );
    assert_eq!(lines_of(&from_start, 1_000), numbered(1..=300));
    assert_eq!(lines_of(&resumed, 40), numbered(101..=300));
}

async fn a_cut_connection_resumes_after_the_last_batch_without_loss_or_repeat(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(proc(
        "drip",
        &sh("for i in $(seq 1 400); do echo $i; sleep 0.004; done"),
    ))
    .await;
    let id = api.execute("drip", &[]).await;
    let mut live = api.open::<FollowLogBatches>(batches_of(&id, 0)).await;
    let mut before_cut = Vec::new();
    while lines_of(&before_cut, 1_000).len() < 50 {
        let event = live.next().await.expect("the run is still going");
        before_cut.push(event.expect("a batch").execution_log_batches);
    }
    // The client goes away mid-run (its socket is closed) and comes back after what it saw.
    drop(live);
    let resume_after = before_cut.last().expect("a batch").last_seq;
    let after_cut = api.follow_batches(batches_of(&id, resume_after)).await;
    let mut all = lines_of(&before_cut, 1_000);
    all.extend(lines_of(&after_cut, 1_000));
    assert_eq!(all, numbered(1..=400), "resumed after line {resume_after}");
    assert_eq!(api.await_final(&id).await.status, Succeeded);
}

async fn batch_options_out_of_range_name_the_field(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(proc("one", &["echo", "1"])).await;
    let id = api.execute("one", &[]).await;
    for (max_lines, max_delay_ms, field) in [
        (Some(0), None, "maxLines"),
        (Some(-1), None, "maxLines"),
        (Some(10_001), None, "maxLines"),
        (None, Some(-5), "maxDelayMs"),
        (None, Some(5_001), "maxDelayMs"),
    ] {
        let mut variables = batches_of(&id, 0);
        variables.max_lines = max_lines;
        variables.max_delay_ms = max_delay_ms;
        let events = api.subscribe::<FollowLogBatches>(variables).await;
        let [Err(failure)] = events.as_slice() else {
            panic!("one error for {max_lines:?}/{max_delay_ms:?}: {events:?}");
        };
        assert_eq!(failure.code, "BAD_USER_INPUT", "{failure:?}");
        assert_eq!(failure.field.as_deref(), Some(field), "{failure:?}");
    }
}

async fn a_thousand_batched_subscribers_each_get_every_line_once(stack: Stack) {
    let Some(app) = TestApp::on(stack).await else {
        return;
    };
    let api = app.api();
    api.define_proc(proc(
        "burst",
        &sh("for i in $(seq 0 19); do seq $((i * 100 + 1)) $((i * 100 + 100)); sleep 0.05; done"),
    ))
    .await;
    let id = api.execute("burst", &[]).await;
    // Ten connections with a hundred subscriptions each, joining from the start or later.
    let mut connections = Vec::new();
    for _ in 0..10 {
        connections.push(WsClient::open(&app.ws_url()).await.expect("a websocket"));
    }
    let mut subscribers = Vec::new();
    for n in 0..1_000i64 {
        let after = (n % 4) * 500;
        let mut variables = batches_of(&id, after);
        variables.max_delay_ms = Some(20);
        let request = serde_json::to_value(FollowLogBatches::build_query(variables))
            .expect("requests serialise");
        let (_, events) = connections[(n % 10) as usize]
            .subscribe_request(request)
            .await
            .expect("subscribed");
        subscribers.push((after, events));
    }
    let received = subscribers
        .into_iter()
        .map(|(after, mut events)| async move {
            let mut lines = Vec::new();
            loop {
                // A hang guard, not a speed goal (that lives in the benchmarks): on two cores a
                // debug build serving a thousand subscribers can leave one waiting about a
                // minute for its first batch; nextest still kills the test at three minutes.
                match tokio::time::timeout(Duration::from_secs(150), events.recv()).await {
                    Ok(Some(Event::Next(data))) => {
                        let batch: LineBatch =
                            serde_json::from_value(data["executionLogBatches"].clone())
                                .expect("a batch");
                        lines.extend(lines_of(&[batch], 1_000));
                    }
                    Ok(Some(Event::End(None))) => break,
                    other => panic!("subscriber after {after}: {other:?}"),
                }
            }
            (after, lines)
        });
    for (after, lines) in futures::future::join_all(received).await {
        assert_eq!(lines, numbered(after + 1..=2_000), "from line {after}");
    }
    assert_eq!(api.await_final(&id).await.status, Succeeded);
}

on_both_stacks!(
    late_joiners_and_resumers_get_each_line_once_in_batches,
    a_cut_connection_resumes_after_the_last_batch_without_loss_or_repeat,
    batch_options_out_of_range_name_the_field,
    a_thousand_batched_subscribers_each_get_every_line_once,
);
