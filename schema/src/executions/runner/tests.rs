//! The execution core in milliseconds: in-memory SQLite, the in-memory bus and the scripted
//! executor, no server and no processes. Each test names one promise of the core.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use proctor_entity::json::{ArgSpecs, SecretSpecs, StringList};
use proctor_entity::values::{ExecutionStatus, LogStream, Trigger};
use proctor_entity::{execution, execution_log, proc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, NotSet, QueryFilter, QueryOrder,
    Set,
};

use super::transition::{Change, Fence, InvalidMove, apply};
use super::*;
use crate::ports::scripted_executor::{Attempt, Script, ScriptedExecutor};

/// Longest any test waits for the core to react.
const PATIENCE: Duration = Duration::from_secs(3);

struct Core {
    state: AppState,
    executor: Arc<ScriptedExecutor>,
    proc: proc::Model,
}

fn fast() -> RunSettings {
    crate::test_state::run_settings()
}

async fn core(settings: RunSettings) -> Core {
    let db = crate::test_state::database().await;
    let executor = Arc::new(ScriptedExecutor::new());
    let runner = Runner::new(
        Arc::clone(&executor) as Arc<dyn Executor>,
        settings,
        "replica-a".to_owned(),
    );
    let now = chrono::Utc::now();
    let proc = proc::ActiveModel {
        id: NotSet,
        name: Set("scripted".to_owned()),
        description: Set(None),
        image: Set(None),
        command: Set(Some(StringList(vec!["scripted".to_owned()]))),
        args: Set(ArgSpecs(Vec::new())),
        secret_specs: Set(SecretSpecs(Vec::new())),
        authorized_groups: Set(StringList(Vec::new())),
        author: Set(None),
        contributors: Set(None),
        organization: Set(None),
        timeout_seconds: Set(None),
        retries: Set(None),
        notifications: Set(None),
        resources: Set(None),
        identity: Set(None),
        alerts: Set(None),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&db)
    .await
    .expect("a proc");
    let state = crate::test_state::state(db, runner);
    Core {
        state,
        executor,
        proc,
    }
}

impl Core {
    /// Submits a run of the proc (with `retries`, `secrets`) and hands it off.
    async fn run_with(&self, retries: Option<i32>, secrets: &[(&str, &str)]) -> i64 {
        let mut proc = self.proc.clone();
        proc.retries = retries;
        let secrets = secrets
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let prepared = PreparedRun::new(proc, Vec::new(), secrets);
        let txn = crate::db::begin_write(self.state.db())
            .await
            .expect("a transaction");
        let submitted = self
            .state
            .runner()
            .submit(
                &txn,
                &self.state,
                &prepared,
                NewExecution {
                    user_email: None,
                    trigger: Trigger::Manual,
                    schedule_id: None,
                },
            )
            .await
            .expect("submitted");
        let id = submitted.execution().id;
        txn.commit().await.expect("committed");
        self.state.runner().hand_off(&self.state, submitted).await;
        id
    }

    async fn run(&self) -> i64 {
        self.run_with(None, &[]).await
    }

    async fn row(&self, id: i64) -> execution::Model {
        execution::Entity::find_by_id(id)
            .one(self.state.db())
            .await
            .expect("readable")
            .expect("exists")
    }

    async fn wait_for(
        &self,
        id: i64,
        done: impl Fn(&execution::Model) -> bool,
    ) -> execution::Model {
        let until = tokio::time::Instant::now() + PATIENCE;
        loop {
            let row = self.row(id).await;
            if done(&row) {
                return row;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "execution {id} never got there; it is {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn finished(&self, id: i64) -> execution::Model {
        let row = self.wait_for(id, |row| row.status.is_final()).await;
        // The supervisor lets go right after storing the end.
        let until = tokio::time::Instant::now() + PATIENCE;
        while self.state.runner().active().contains_key(&id) && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        row
    }

    async fn lines(&self, id: i64) -> Vec<(i64, LogStream, String)> {
        execution_log::Entity::find()
            .filter(execution_log::Column::ExecutionId.eq(id))
            .order_by_asc(execution_log::Column::Seq)
            .all(self.state.db())
            .await
            .expect("readable")
            .into_iter()
            .map(|line| (line.seq, line.stream, line.line))
            .collect()
    }

    async fn texts(&self, id: i64) -> Vec<String> {
        self.lines(id)
            .await
            .into_iter()
            .map(|(_, _, text)| text)
            .collect()
    }
}

#[tokio::test]
async fn a_run_goes_through_its_states_and_stores_its_output_in_order() {
    let core = core(fast()).await;
    core.executor.script(
        Script::new()
            .started("ref-1")
            .line("one")
            .line("two")
            .exits(0),
    );
    let id = core.run().await;
    let row = core.finished(id).await;
    assert_eq!(row.status, ExecutionStatus::Succeeded);
    assert_eq!(row.exit_code, Some(0));
    assert_eq!(row.executor_ref.as_deref(), Some("ref-1"));
    assert_eq!(row.attempts, 1);
    assert!(
        row.lease_expires_at.is_none(),
        "a finished run holds no lease"
    );
    assert_eq!(core.texts(id).await, ["one", "two"]);
}

#[tokio::test]
async fn a_move_the_life_cycle_does_not_allow_is_refused_with_both_states() {
    let core = core(fast()).await;
    let id = core.run().await;
    core.finished(id).await;
    let refused = apply(
        &core.state,
        id,
        Change::Running {
            executor_ref: "late".to_owned(),
        },
        Fence::Any,
    )
    .await
    .expect_err("a final state never moves");
    match refused {
        InvalidMove::NotAllowed(invalid) => {
            assert_eq!(invalid.from, ExecutionStatus::Succeeded);
            assert_eq!(invalid.to, ExecutionStatus::Running);
        }
        other => panic!("expected NotAllowed, got {other:?}"),
    }
    assert_eq!(core.row(id).await.executor_ref.as_deref(), Some("scripted"));
}

#[tokio::test]
async fn cancel_before_a_slot_never_reaches_the_executor() {
    let core = core(RunSettings {
        max_parallel: 1,
        ..fast()
    })
    .await;
    core.executor
        .script(Script::new().started("busy").until_cancelled());
    let busy = core.run().await;
    core.wait_for(busy, |row| row.status == ExecutionStatus::Running)
        .await;
    let waiting = core.run().await;
    assert!(core.state.runner().cancel_here(waiting, CANCELLED_REASON));
    let row = core.finished(waiting).await;
    assert_eq!(row.status, ExecutionStatus::Cancelled);
    assert_eq!(row.reason.as_deref(), Some("cancelled before it started"));
    assert_eq!(core.executor.starts().len(), 1, "only the busy run started");
    assert!(core.state.runner().cancel_here(busy, CANCELLED_REASON));
    assert_eq!(core.finished(busy).await.status, ExecutionStatus::Cancelled);
}

#[tokio::test]
async fn cancel_while_running_stops_the_run_and_keeps_its_output() {
    let core = core(fast()).await;
    core.executor.script(
        Script::new()
            .started("r")
            .line("working")
            .until_cancelled()
            .line("never printed"),
    );
    let id = core.run().await;
    core.wait_for(id, |row| row.status == ExecutionStatus::Running)
        .await;
    // The line is stored before the run is stopped.
    let until = tokio::time::Instant::now() + PATIENCE;
    while core.texts(id).await.is_empty() {
        assert!(tokio::time::Instant::now() < until, "the line never came");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(core.state.runner().cancel_here(id, CANCELLED_REASON));
    let row = core.finished(id).await;
    assert_eq!(row.status, ExecutionStatus::Cancelled);
    assert_eq!(row.reason.as_deref(), Some("cancelled"));
    assert_eq!(core.texts(id).await, ["working"]);
}

#[tokio::test]
async fn the_deadline_covers_the_run_and_ends_it_timed_out() {
    let core = core(RunSettings {
        default_timeout: Duration::from_millis(80),
        ..fast()
    })
    .await;
    core.executor.script(
        Script::new()
            .started("r")
            .line("slow")
            .pause(10_000)
            .exits(0),
    );
    let id = core.run().await;
    let row = core.finished(id).await;
    assert_eq!(row.status, ExecutionStatus::TimedOut, "{row:?}");
    assert_eq!(row.reason.as_deref(), Some("exceeded its timeout of 80 ms"));
    assert_eq!(core.texts(id).await, ["slow"]);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_with_a_marker_and_the_last_exit_code_counts() {
    let core = core(fast()).await;
    core.executor
        .script(Script::new().started("first").line("try 1").exits(3))
        .script(Script::new().started("second").line("try 2").exits(0));
    let id = core.run_with(Some(2), &[]).await;
    let row = core.finished(id).await;
    assert_eq!(row.status, ExecutionStatus::Succeeded, "{row:?}");
    assert_eq!(row.exit_code, Some(0));
    assert_eq!(row.attempts, 2);
    assert_eq!(row.executor_ref.as_deref(), Some("second"));
    let lines = core.lines(id).await;
    assert_eq!(lines[0].2, "try 1");
    assert_eq!(lines[1].1, LogStream::System);
    assert_eq!(
        lines[1].2,
        "[proctor] attempt 2 (of 3; the previous one exited with code 3)"
    );
    assert_eq!(lines[2].2, "try 2");
    assert_eq!(
        core.executor.starts().len(),
        2,
        "no third attempt after a success"
    );

    // Out of attempts: the last exit code is the run's.
    core.executor
        .script(Script::new().started("a").exits(3))
        .script(Script::new().started("b").exits(4));
    let id = core.run_with(Some(1), &[]).await;
    let row = core.finished(id).await;
    assert_eq!(row.status, ExecutionStatus::Failed);
    assert_eq!(row.exit_code, Some(4));
    assert_eq!(row.attempts, 2);
}

#[tokio::test]
async fn a_cancel_stops_further_attempts() {
    let core = core(fast()).await;
    core.executor
        .script(Script::new().started("first").pause(40).exits(1))
        .script(Script::new().started("second").exits(0));
    let id = core.run_with(Some(3), &[]).await;
    core.wait_for(id, |row| row.status == ExecutionStatus::Running)
        .await;
    assert!(core.state.runner().cancel_here(id, CANCELLED_REASON));
    let row = core.finished(id).await;
    assert_eq!(row.status, ExecutionStatus::Cancelled);
    assert_eq!(row.attempts, 1);
    assert_eq!(core.executor.starts().len(), 1);
}

#[tokio::test]
async fn a_refused_start_is_creation_failed_with_the_reason() {
    let core = core(fast()).await;
    core.executor
        .push(Attempt::Refuse("no such program".to_owned()));
    let id = core.run().await;
    let row = core.finished(id).await;
    assert_eq!(row.status, ExecutionStatus::CreationFailed);
    assert_eq!(
        row.reason.as_deref(),
        Some("could not start the run: no such program")
    );
}

#[tokio::test]
async fn a_supervisor_that_lost_its_lease_writes_nothing_more() {
    let core = core(fast()).await;
    core.executor.script(
        Script::new()
            .started("r")
            .line("mine")
            .pause(60)
            .line("after the takeover")
            .exits(0),
    );
    let id = core.run().await;
    let until = tokio::time::Instant::now() + PATIENCE;
    while core.texts(id).await.is_empty() {
        assert!(tokio::time::Instant::now() < until, "the line never came");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Another replica takes the execution over.
    execution::Entity::update_many()
        .col_expr(execution::Column::Owner, Expr::value("replica-b"))
        .filter(execution::Column::Id.eq(id))
        .exec(core.state.db())
        .await
        .expect("taken over");
    let until = tokio::time::Instant::now() + PATIENCE;
    while core.state.runner().supervised() > 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "the supervisor never stopped"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let row = core.row(id).await;
    assert_eq!(
        row.status,
        ExecutionStatus::Running,
        "the new owner decides"
    );
    assert_eq!(row.owner.as_deref(), Some("replica-b"));
    assert_eq!(core.texts(id).await, ["mine"]);
}

#[tokio::test]
async fn output_past_the_line_limit_ends_with_one_marker() {
    let core = core(RunSettings {
        log_max_lines: 3,
        ..fast()
    })
    .await;
    let mut script = Script::new().started("r");
    for n in 1..=10 {
        script = script.line(&format!("line {n}"));
    }
    core.executor.script(script.exits(0));
    let id = core.run().await;
    assert_eq!(core.finished(id).await.status, ExecutionStatus::Succeeded);
    let lines = core.lines(id).await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[2].2, "line 3");
    assert_eq!(lines[3].1, LogStream::System);
    assert!(
        lines[3].2.starts_with("[proctor] output truncated"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_secret_cut_across_pieces_of_a_line_is_masked_whole() {
    let core = core(fast()).await;
    core.executor.script(
        Script::new()
            .started("r")
            .output(LogStream::Stdout, "token=sk-live-", true)
            .output(LogStream::Stdout, "7f3a", true)
            .output(LogStream::Stdout, "9c done", false)
            .exits(0),
    );
    let id = core.run_with(None, &[("TOKEN", "sk-live-7f3a9c")]).await;
    assert_eq!(core.finished(id).await.status, ExecutionStatus::Succeeded);
    let stored = core.texts(id).await.concat();
    assert!(!stored.contains("7f3a"), "{stored}");
    assert!(!stored.contains("sk-live"), "{stored}");
    assert_eq!(stored, "token=*** done");
}

#[tokio::test]
async fn a_line_the_database_refuses_becomes_a_counted_marker_and_nothing_else_is_lost() {
    let core = core(fast()).await;
    core.state
        .db()
        .execute_unprepared(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON execution_logs \
             WHEN NEW.line LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .await
        .expect("trigger");
    core.executor.script(
        Script::new()
            .started("r")
            .line("before")
            .line("poison pill")
            .line("after")
            .exits(0),
    );
    let id = core.run().await;
    let row = core.finished(id).await;
    assert_eq!(row.status, ExecutionStatus::Succeeded);
    assert_eq!(row.log_lines_lost, 1);
    let lines = core.lines(id).await;
    let seqs: Vec<i64> = lines.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3], "no gap");
    assert_eq!(lines[0].2, "before");
    assert_eq!(lines[1].1, LogStream::System);
    assert_eq!(
        lines[1].2,
        "[proctor] a 11-byte line of stdout could not be stored and was lost"
    );
    assert_eq!(lines[2].2, "after");
}

#[tokio::test]
async fn subscribers_joining_before_during_and_after_get_every_line_once_in_order() {
    let core = core(fast()).await;
    let mut script = Script::new().started("r").pause(20);
    for n in 1..=40 {
        script = script.line(&format!("line {n}"));
        if n == 20 {
            script = script.pause(40);
        }
    }
    core.executor.script(script.exits(0));
    let id = core.run().await;
    let follow = |state: AppState| async move {
        let mut lines = crate::executions::stream::follow_logs(state, id, 0)
            .await
            .expect("a subscription");
        let mut seen = Vec::new();
        while let Some(line) = lines.next().await {
            let line = line.expect("no error");
            seen.push((line.seq, line.line));
        }
        seen
    };
    let before = tokio::spawn(follow(core.state.clone()));
    let until = tokio::time::Instant::now() + PATIENCE;
    while core.lines(id).await.len() < 20 {
        assert!(
            tokio::time::Instant::now() < until,
            "the first half never came"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let during = tokio::spawn(follow(core.state.clone()));
    core.finished(id).await;
    let after = follow(core.state.clone()).await;
    let expected: Vec<(i64, String)> = (1..=40).map(|n| (n, format!("line {n}"))).collect();
    for (when, seen) in [
        ("before", before.await.expect("no panic")),
        ("during", during.await.expect("no panic")),
        ("after", after),
    ] {
        assert_eq!(seen, expected, "subscriber joining {when}");
    }
}

#[tokio::test]
async fn a_shutdown_stops_local_runs_as_cancelled_and_refuses_new_ones() {
    let core = core(fast()).await;
    core.executor
        .script(Script::new().started("r").until_cancelled());
    let id = core.run().await;
    core.wait_for(id, |row| row.status == ExecutionStatus::Running)
        .await;
    core.state
        .runner()
        .shutdown(&core.state, Duration::from_millis(30))
        .await;
    let row = core.row(id).await;
    assert_eq!(row.status, ExecutionStatus::Cancelled);
    assert_eq!(row.reason.as_deref(), Some(SHUTDOWN_REASON));
    let txn = crate::db::begin_write(core.state.db())
        .await
        .expect("a transaction");
    let refused = core
        .state
        .runner()
        .submit(
            &txn,
            &core.state,
            &PreparedRun::new(core.proc.clone(), Vec::new(), Vec::new()),
            NewExecution {
                user_email: None,
                trigger: Trigger::Manual,
                schedule_id: None,
            },
        )
        .await;
    assert!(
        matches!(refused, Err(crate::error::ApiError::Unavailable(_))),
        "no run is accepted while shutting down"
    );
}

#[test]
fn run_names_are_dns_labels_with_the_id() {
    assert_eq!(run_name("deploy", 42), "proctor-42-deploy");
    let long = run_name(&"a".repeat(63), 9_223_372_036_854_775_807);
    assert!(long.len() <= 63, "{long}");
    assert!(long.starts_with("proctor-9223372036854775807-a"));
    assert_eq!(
        run_name("x-y-z", 1234567890123),
        "proctor-1234567890123-x-y-z"
    );
    // A cut that lands on a dash does not leave it dangling.
    let cut = run_name(&format!("{}-tail", "b".repeat(45)), 12345678);
    assert!(!cut.ends_with('-'), "{cut}");
}
