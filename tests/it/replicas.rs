//! Supervision that survives its supervisor: a `proctord` killed mid-run and started again, and
//! two replicas where one dies. The real binary runs against the fake Kubernetes API, whose
//! pods keep running (and printing) while no `proctord` watches them.

use std::process::Command;
use std::time::Duration;

use proctor_tests::api::{Api, Execution, ExecutionStatus, image_proc, sh};
use proctor_tests::fake_kube::{FakeKube, Kind};
use proctor_tests::infra::{postgres_url, redis_url, unique_suffix};
use proctor_tests::{Proctord, TestDatabase, proctord_command};

/// Lines the test proc prints, 50 ms apart.
const LINES: usize = 60;

/// Where a replica keeps its data.
enum Storage {
    /// SQLite in this directory, in-memory bus (a single replica).
    Embedded(std::path::PathBuf),
    /// Postgres and Redis, shared by replicas.
    Production {
        database: String,
        redis: String,
        prefix: String,
    },
}

fn replica(
    storage: &Storage,
    kubeconfig: &std::path::Path,
    id: &str,
    workdir: &std::path::Path,
) -> Command {
    let mut command = proctord_command(workdir);
    command
        .env("PROCTOR_APP_PORT", "0")
        .env("PROCTOR_EXECUTOR", "kubernetes")
        .env("PROCTOR_KUBE_CONFIG", kubeconfig)
        .env("PROCTOR_REGISTER_EXAMPLES", "false")
        .env("PROCTOR_REPLICA_ID", id)
        .env("PROCTOR_LEASE_SECONDS", "2");
    match storage {
        Storage::Embedded(data_dir) => {
            command.env("PROCTOR_DATA_DIR", data_dir);
        }
        Storage::Production {
            database,
            redis,
            prefix,
        } => {
            command
                .env("PROCTOR_DATABASE_URL", database)
                .env("PROCTOR_AUTO_MIGRATE", "true")
                .env("PROCTOR_REDIS_URL", redis)
                .env("PROCTOR_REDIS_CHANNEL_PREFIX", prefix);
        }
    }
    command
}

/// Postgres and Redis for a test, or `None` (outside CI) when not configured.
async fn production_storage() -> Option<(Storage, TestDatabase)> {
    let (Some(admin), Some(redis)) = (postgres_url(), redis_url()) else {
        return None;
    };
    let database = TestDatabase::postgres(&admin).await;
    let storage = Storage::Production {
        database: database.url(),
        redis,
        prefix: format!("proctor_test_{}", unique_suffix()),
    };
    Some((storage, database))
}

async fn start_slow_run(base: &str) -> String {
    let api = Api::at(base);
    let script = format!("for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.05; done");
    api.define_proc(image_proc("slow-count", "busybox", &sh(&script)))
        .await;
    api.execute("slow-count", &[]).await
}

/// The stored lines of `id` as `(seq, line)`.
async fn stored_lines(base: &str, id: &str) -> Vec<(i64, String)> {
    let lines = Api::at(base).stored_lines(id).await;
    lines
        .into_iter()
        .map(|line| (line.seq, line.line))
        .collect()
}

/// Follows the logs of `id` on the server at `base` to the end.
async fn follow_logs(base: String, id: String) -> Vec<(i64, String)> {
    Api::at(&base).numbered_lines(&id, 0).await
}

fn expected() -> Vec<(i64, String)> {
    (1..=LINES)
        .map(|n| (n as i64, format!("line-{n}")))
        .collect()
}

/// The final state of `id` on the server at `base`, waiting for it.
async fn final_status(base: &str, id: &str) -> Execution {
    let api = Api::at(base);
    for _ in 0..400 {
        let execution = api.execution(id).await.expect("the execution");
        if execution.status.is_final() {
            return execution;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {id} did not finish");
}

/// Starts `command` without blocking the runtime the fake API serves from.
async fn spawn(command: Command) -> Proctord {
    tokio::task::spawn_blocking(move || Proctord::spawn(command))
        .await
        .unwrap()
}

async fn a_killed_proctord_resumes_its_run_exactly_once(
    storage: Storage,
    workdir: tempfile::TempDir,
) {
    let fake = FakeKube::start().await;
    let kubeconfig = workdir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);

    let first = spawn(replica(&storage, &kubeconfig, "replica-a", workdir.path())).await;
    let id = start_slow_run(&first.url("")).await;
    Api::at(&first.url("")).wait_for_stored(&id, 15).await;
    drop(first); // SIGKILL, mid-run; the pod keeps printing.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let second = spawn(replica(&storage, &kubeconfig, "replica-a", workdir.path())).await;
    let base = second.url("");
    assert_eq!(
        follow_logs(base.clone(), id.clone()).await,
        expected(),
        "streamed exactly once"
    );
    assert_eq!(
        stored_lines(&base, &id).await,
        expected(),
        "stored exactly once"
    );
    assert_eq!(
        final_status(&base, &id).await.status,
        ExecutionStatus::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proctord_resumes_after_the_kubelet_rotated_the_log_exactly_once() {
    let workdir = tempfile::tempdir().unwrap();
    let storage = Storage::Embedded(workdir.path().join("data"));
    let fake = FakeKube::start().await;
    let kubeconfig = workdir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);

    let first = spawn(replica(&storage, &kubeconfig, "replica-a", workdir.path())).await;
    let id = start_slow_run(&first.url("")).await;
    Api::at(&first.url("")).wait_for_stored(&id, 15).await;
    drop(first); // SIGKILL, mid-run; the pod keeps printing.
    // The kubelet rotates the log: its first ten lines (all stored) are gone, so counting lines
    // from the start of what is left would skip lines that were never stored.
    fake.rotate_logs("default", &format!("proctor-{id}-slow-count"), 10);

    let second = spawn(replica(&storage, &kubeconfig, "replica-a", workdir.path())).await;
    let base = second.url("");
    assert_eq!(
        final_status(&base, &id).await.status,
        ExecutionStatus::Succeeded
    );
    assert_eq!(
        stored_lines(&base, &id).await,
        expected(),
        "no line lost, none repeated"
    );
    let reads: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|request| request.contains("/log"))
        .collect();
    assert!(
        reads.iter().any(|read| read.contains("sinceTime=")),
        "the re-attach reads from a time: {reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_collected_while_no_server_watched_is_lost_saying_why() {
    let workdir = tempfile::tempdir().unwrap();
    let storage = Storage::Embedded(workdir.path().join("data"));
    let fake = FakeKube::start().await;
    let kubeconfig = workdir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let with_short_ttl = || {
        let mut command = replica(&storage, &kubeconfig, "replica-a", workdir.path());
        command.env("PROCTOR_KUBE_JOB_TTL_SECONDS", "1");
        command
    };

    let first = spawn(with_short_ttl()).await;
    let id = start_slow_run(&first.url("")).await;
    Api::at(&first.url("")).wait_for_stored(&id, 5).await;
    drop(first); // SIGKILL; the Job finishes and is collected after its TTL meanwhile.
    for _ in 0..200 {
        if fake.objects(Kind::Job, "default").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        fake.objects(Kind::Job, "default").is_empty(),
        "the Job was collected"
    );
    assert!(
        fake.objects(Kind::Pod, "default").is_empty(),
        "with its pods"
    );

    let second = spawn(with_short_ttl()).await;
    let done = final_status(&second.url(""), &id).await;
    assert_eq!(done.status, ExecutionStatus::Lost, "{done:?}");
    let reason = done.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("its supervisor stopped while it was RUNNING")
            && reason.contains("no longer exists"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_embedded_proctord_resumes_its_run_exactly_once() {
    let workdir = tempfile::tempdir().unwrap();
    let storage = Storage::Embedded(workdir.path().join("data"));
    a_killed_proctord_resumes_its_run_exactly_once(storage, workdir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(proctor_no_postgres, proctor_no_redis),
    ignore = "needs Postgres and Redis: set PROCTOR_TEST_DATABASE_URL and PROCTOR_TEST_REDIS_URL, or run ./tests/run.sh"
)]
async fn a_killed_production_proctord_resumes_its_run_exactly_once() {
    let Some((storage, _database)) = production_storage().await else {
        return;
    };
    a_killed_proctord_resumes_its_run_exactly_once(storage, tempfile::tempdir().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(proctor_no_postgres, proctor_no_redis),
    ignore = "needs Postgres and Redis: set PROCTOR_TEST_DATABASE_URL and PROCTOR_TEST_REDIS_URL, or run ./tests/run.sh"
)]
async fn a_second_replica_streams_and_takes_over_when_the_first_dies() {
    let Some((storage, _database)) = production_storage().await else {
        return;
    };
    let workdir = tempfile::tempdir().unwrap();
    let fake = FakeKube::start().await;
    let kubeconfig = workdir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);

    let a = spawn(replica(&storage, &kubeconfig, "replica-a", workdir.path())).await;
    let b = spawn(replica(&storage, &kubeconfig, "replica-b", workdir.path())).await;
    let id = start_slow_run(&a.url("")).await;
    // Subscribed on B for the whole run: lines arrive through Redis while A supervises, then
    // from B itself once it takes over.
    let watching = tokio::spawn(follow_logs(b.url(""), id.clone()));
    Api::at(&a.url("")).wait_for_stored(&id, 15).await;
    drop(a); // SIGKILL: A dies holding the lease.

    let received = watching.await.unwrap();
    assert_eq!(
        received,
        expected(),
        "every line once, in order, across the takeover"
    );
    assert_eq!(
        stored_lines(&b.url(""), &id).await,
        expected(),
        "stored exactly once"
    );
    let done = final_status(&b.url(""), &id).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
}
