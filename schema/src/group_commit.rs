//! Group commit: small write transactions that arrive together share one database transaction
//! and so one `BEGIN`/`COMMIT` pair and one fsync, each keeping its own outcome.
//!
//! Invariants:
//! - a caller gets `Ok` only after the commit that holds its writes succeeded, so what its job
//!   wrote is durable and visible before the caller acts on it (publishes, hands a run off);
//! - a job's failure never costs another job anything: when any job of a shared transaction
//!   fails, that transaction is rolled back and every job of it runs again in a transaction
//!   of its own, so each gets exactly the outcome it would have had alone. Jobs therefore run
//!   more than once sometimes; only the run whose transaction commits counts, so a job does
//!   nothing but write through the transaction it is given (no other side effects);
//! - there is no timer: a batch is what arrived while the previous one was being written (at
//!   most [`MAX_BATCH`]), so a lone caller waits for nobody and runs exactly the statements
//!   of a transaction of its own;
//! - a job writes only through the transaction it is given (on SQLite another connection
//!   would wait for the write lock this transaction holds), and returns every database error
//!   it meets: Postgres answers `COMMIT` of a transaction an error aborted with a silent
//!   rollback, so a job that swallowed one would let its whole batch hear Ok;
//! - a job that panics fails alone (as an internal error); the writer goes on;
//! - a caller that stops waiting does not stop its job: once queued, it is written (callers
//!   that must act after the commit, like handing a run off, do so in a task of their own).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::error::ApiError;

/// Most jobs one transaction holds.
pub const MAX_BATCH: usize = 64;
/// Jobs waiting for a writer before callers wait to hand theirs over.
const QUEUE: usize = 4_096;

/// One caller's writes, type-erased for the writers.
trait Job: Send {
    /// Runs the writes in `txn` and keeps their result; `true` when they succeeded.
    fn run<'t>(&'t mut self, txn: &'t DatabaseTransaction) -> BoxFuture<'t, bool>;
    /// Answers the caller: the kept result when `committed` is `Ok`, else that error.
    fn answer(self: Box<Self>, committed: Result<(), Arc<ApiError>>);
}

struct Typed<T, F> {
    work: F,
    result: Option<Result<T, ApiError>>,
    reply: oneshot::Sender<Result<T, ApiError>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send + 'static,
    F: for<'t> Fn(&'t DatabaseTransaction) -> BoxFuture<'t, Result<T, ApiError>> + Send + 'static,
{
    fn run<'t>(&'t mut self, txn: &'t DatabaseTransaction) -> BoxFuture<'t, bool> {
        Box::pin(async move {
            // A panicking job fails alone; the writer lives on for the others.
            let result = match AssertUnwindSafe((self.work)(txn)).catch_unwind().await {
                Ok(result) => result,
                Err(_) => Err(ApiError::Internal(anyhow::anyhow!(
                    "a database write panicked (see the log)"
                ))),
            };
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn answer(self: Box<Self>, committed: Result<(), Arc<ApiError>>) {
        let Typed {
            work,
            result,
            reply,
        } = *self;
        // What the job holds goes before the caller wakes (it may want it back, unshared).
        drop(work);
        let outcome = match (result, committed) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(shared)) => Err(ApiError::unshared(shared)),
            (None, Ok(())) => Err(ApiError::Internal(anyhow::anyhow!(
                "a group-committed write was answered without having run"
            ))),
        };
        // The caller may have gone away (a dropped request); what committed stands.
        let _ = reply.send(outcome);
    }
}

type Queue = Arc<Mutex<mpsc::Receiver<Box<dyn Job>>>>;

/// The writers and the queue in front of them.
#[derive(Clone)]
pub struct GroupCommit {
    sender: mpsc::Sender<Box<dyn Job>>,
    commits: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts `writers` tasks writing batches to `db` (one is enough on SQLite, which has one
    /// writer anyway; on Postgres a second one runs a batch's statements while the other waits
    /// for its commit). They stop when every handle is dropped.
    pub fn start(db: DatabaseConnection, writers: usize) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let queue: Queue = Arc::new(Mutex::new(receiver));
        let commits = Arc::new(AtomicU64::new(0));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(db.clone(), Arc::clone(&queue), Arc::clone(&commits)));
        }
        Self { sender, commits }
    }

    /// Transactions committed so far (shared or not).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` in a transaction, shared with other callers' when they arrive together,
    /// and returns its result once that transaction has committed. `work` may run more than
    /// once (see the module docs) and must only write through the transaction it is given.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t DatabaseTransaction) -> BoxFuture<'t, Result<T, ApiError>>
            + Send
            + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Typed {
            work,
            result: None,
            reply,
        });
        self.sender.send(job).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

fn stopped() -> ApiError {
    ApiError::Unavailable("the server is stopping and writes nothing more; try again".to_owned())
}

/// Takes what is queued (at most [`MAX_BATCH`]) and writes it, until the queue closes.
async fn writer(db: DatabaseConnection, queue: Queue, commits: Arc<AtomicU64>) {
    loop {
        let batch = {
            let mut receiver = queue.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        write_batch(&db, batch, &commits).await;
    }
}

/// Writes `batch` in one transaction; when a job of it fails, each job alone.
async fn write_batch(db: &DatabaseConnection, mut batch: Vec<Box<dyn Job>>, commits: &AtomicU64) {
    if batch.len() > 1 {
        match together(db, &mut batch).await {
            Some(committed) => {
                if committed.is_ok() {
                    commits.fetch_add(1, Ordering::Relaxed);
                }
                for job in batch {
                    job.answer(committed.clone());
                }
                return;
            }
            None => tracing::debug!(
                jobs = batch.len(),
                "a job of a shared transaction failed; each runs alone"
            ),
        }
    }
    for mut job in batch {
        let committed = alone(db, job.as_mut(), commits).await;
        job.answer(committed);
    }
}

/// Runs every job in one transaction: the commit's outcome, or `None` (rolled back) when a
/// job failed.
async fn together(
    db: &DatabaseConnection,
    batch: &mut [Box<dyn Job>],
) -> Option<Result<(), Arc<ApiError>>> {
    let txn = match crate::db::begin_write(db).await {
        Ok(txn) => txn,
        Err(error) => return Some(Err(Arc::new(error.into()))),
    };
    for job in batch.iter_mut() {
        if !job.run(&txn).await {
            // Postgres answers COMMIT of a transaction an error aborted with a silent
            // rollback: roll back explicitly, and nobody hears Ok.
            let _ = txn.rollback().await;
            return None;
        }
    }
    Some(txn.commit().await.map_err(|error| Arc::new(error.into())))
}

/// Runs one job in a transaction of its own: the outcome of its commit (a failed job is
/// rolled back and keeps its own error).
async fn alone(
    db: &DatabaseConnection,
    job: &mut dyn Job,
    commits: &AtomicU64,
) -> Result<(), Arc<ApiError>> {
    let txn = crate::db::begin_write(db)
        .await
        .map_err(|error| Arc::new(error.into()))?;
    if job.run(&txn).await {
        txn.commit().await.map_err(|error| Arc::new(error.into()))?;
        commits.fetch_add(1, Ordering::Relaxed);
    } else {
        let _ = txn.rollback().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use super::*;

    async fn database() -> DatabaseConnection {
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("an in-memory SQLite");
        db.execute_unprepared("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .await
            .expect("a table");
        db
    }

    async fn stored(db: &DatabaseConnection) -> Vec<i64> {
        db.query_all_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT n FROM t ORDER BY n",
        ))
        .await
        .expect("rows")
        .iter()
        .map(|row| row.try_get::<i64>("", "n").expect("n"))
        .collect()
    }

    /// Times the jobs of one test ran (a shared transaction that failed runs its jobs again).
    type Runs = Arc<AtomicU64>;

    fn insert(
        writes: &GroupCommit,
        n: i64,
        runs: &Runs,
    ) -> impl Future<Output = Result<i64, ApiError>> + use<> {
        let (writes, runs) = (writes.clone(), Arc::clone(runs));
        async move {
            writes
                .run(move |txn| {
                    runs.fetch_add(1, Ordering::Relaxed);
                    Box::pin(async move {
                        txn.execute_unprepared(&format!("INSERT INTO t (n) VALUES ({n})"))
                            .await?;
                        Ok(n)
                    })
                })
                .await
        }
    }

    /// Occupies the writer until the returned sender is used or dropped, so that what is
    /// submitted meanwhile arrives together.
    async fn hold_the_writer(writes: &GroupCommit) -> oneshot::Sender<()> {
        let (open, gate) = oneshot::channel::<()>();
        let gate = Arc::new(Mutex::new(Some(gate)));
        let writes = writes.clone();
        tokio::spawn(async move {
            writes
                .run(move |_txn| {
                    let gate = Arc::clone(&gate);
                    Box::pin(async move {
                        if let Some(gate) = gate.lock().await.take() {
                            let _ = gate.await;
                        }
                        Ok(())
                    })
                })
                .await
        });
        // The writer has taken the blocking job once the queue is empty again.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        open
    }

    #[tokio::test]
    async fn callers_arriving_together_each_get_their_own_result_and_error() {
        let db = database().await;
        let writes = GroupCommit::start(db.clone(), 1);
        let runs = Runs::default();
        insert(&writes, 1, &runs).await.expect("the first insert");
        assert_eq!(writes.commits(), 1);

        // Four arrive together; the second insert of 1 fails, so the shared transaction is
        // rolled back and each runs alone: three commits, one error.
        let open = hold_the_writer(&writes).await;
        let runs_before = runs.load(Ordering::Relaxed);
        let together = tokio::spawn(futures::future::join_all(
            [2, 1, 3, 4].map(|n| insert(&writes, n, &runs)),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(open);
        let outcomes = together.await.expect("joined");
        assert_eq!(outcomes[0].as_ref().ok(), Some(&2));
        assert!(outcomes[1].is_err(), "a duplicate fails: {:?}", outcomes[1]);
        assert_eq!(outcomes[2].as_ref().ok(), Some(&3));
        assert_eq!(outcomes[3].as_ref().ok(), Some(&4));
        assert_eq!(
            stored(&db).await,
            [1, 2, 3, 4],
            "the others were stored once"
        );
        assert_eq!(writes.commits(), 1 + 1 + 3, "the blocker, then each alone");
        assert_eq!(
            runs.load(Ordering::Relaxed) - runs_before,
            2 + 4,
            "together until the duplicate failed (2 and 1), then each of the four alone"
        );

        // Three that all succeed share one commit.
        let open = hold_the_writer(&writes).await;
        let together = tokio::spawn(futures::future::join_all(
            [5, 6, 7].map(|n| insert(&writes, n, &runs)),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(open);
        assert!(together.await.expect("joined").iter().all(Result::is_ok));
        assert_eq!(stored(&db).await, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            writes.commits(),
            5 + 1 + 1,
            "the blocker, then one shared commit"
        );
    }

    #[tokio::test]
    async fn many_concurrent_callers_share_transactions_and_lose_nothing() {
        let db = database().await;
        let writes = GroupCommit::start(db.clone(), 1);
        let runs = Runs::default();
        let outcomes =
            futures::future::join_all((1..=500).map(|n| insert(&writes, n, &runs))).await;
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(stored(&db).await, (1..=500).collect::<Vec<_>>());
        assert!(
            writes.commits() < 100,
            "500 callers at once shared transactions: {} commits",
            writes.commits()
        );
    }
}
