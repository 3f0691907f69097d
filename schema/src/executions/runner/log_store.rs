//! Storing output: each batch in one transaction with the executor's log cursor, fenced by
//! the lease owner, and a line-by-line fallback that is idempotent (a retried batch never
//! stores or counts a line twice) and replaces a line the database refuses by a marker.

use std::sync::Arc;

use proctor_entity::values::LogStream;
use proctor_entity::{execution, execution_log};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::log_pipeline::{BATCH_LINES, LogPipeline};
use crate::error::ApiError;
use crate::ports::event_bus::LogRecord;
use crate::ports::executor::LogCursor;

impl LogPipeline {
    /// Stores the buffered lines with the cursor in one transaction, shared through the group
    /// commit with what other runs write at the same moment; `false` when another replica
    /// holds the execution (nothing is stored then).
    pub(super) async fn store(&mut self) -> Result<bool, ApiError> {
        let lines = Arc::new(std::mem::take(&mut self.buffer));
        let (id, owner, cursor) = (self.execution_id, self.owner.clone(), self.cursor.clone());
        let job_lines = Arc::clone(&lines);
        let stored = self
            .state
            .writes()
            .run(move |txn| {
                let (owner, cursor) = (owner.clone(), cursor.clone());
                let lines = Arc::clone(&job_lines);
                Box::pin(async move {
                    let mut claim = execution::Entity::update_many()
                        .filter(execution::Column::Id.eq(id))
                        .filter(execution::Column::Owner.eq(owner.as_str()));
                    claim = match &cursor {
                        Some(cursor) => with_cursor(claim, cursor),
                        None => claim.col_expr(
                            execution::Column::LogOffset,
                            Expr::col(execution::Column::LogOffset),
                        ),
                    };
                    if claim.exec(txn).await?.rows_affected == 0 {
                        return Ok(false);
                    }
                    for chunk in lines.chunks(BATCH_LINES) {
                        insert_lines(txn, id, chunk).await?;
                    }
                    Ok(true)
                })
            })
            .await;
        // The job is done with its copy: the lines go back to the buffer (kept on failure).
        self.buffer = Arc::try_unwrap(lines).unwrap_or_else(|shared| shared.as_ref().clone());
        stored
    }

    /// The fallback after repeated failures: each line in its own statement; a line the
    /// database refuses is replaced (same seq, so no gap) by a marker saying it was lost, and
    /// the execution counts it. Fenced like [`LogPipeline::store`] (nothing is written once
    /// another replica owns the run) and idempotent (a line stored by an earlier, interrupted
    /// attempt is not stored or counted again). Fails only when even a marker cannot be stored
    /// (the database is away), so nothing is dropped while a retry can still store it; the
    /// cursor moves only once every line is stored.
    pub(super) async fn store_line_by_line(&mut self) -> Result<bool, sea_orm::DbErr> {
        let db = self.state.db();
        let owned = execution::Entity::update_many()
            .filter(execution::Column::Id.eq(self.execution_id))
            .filter(execution::Column::Owner.eq(self.owner.as_str()))
            .col_expr(
                execution::Column::LogOffset,
                Expr::col(execution::Column::LogOffset),
            )
            .exec(db)
            .await?;
        if owned.rows_affected == 0 {
            return Ok(false);
        }
        let mut lost = 0;
        for index in 0..self.buffer.len() {
            let record = self.buffer[index].clone();
            if insert_line_once(db, self.execution_id, &record)
                .await
                .is_ok()
            {
                continue;
            }
            let marker = LogRecord {
                stream: LogStream::System,
                line: format!(
                    "[proctor] a {}-byte line of {} could not be stored and was lost",
                    record.line.len(),
                    match record.stream {
                        LogStream::Stdout => "stdout",
                        LogStream::Stderr => "stderr",
                        LogStream::System => "proctor",
                    }
                ),
                replaced: false,
                ..record
            };
            if insert_line_once(db, self.execution_id, &marker).await? {
                lost += 1;
            }
            self.buffer[index] = marker;
        }
        let mut done = execution::Entity::update_many()
            .filter(execution::Column::Id.eq(self.execution_id))
            .filter(execution::Column::Owner.eq(self.owner.as_str()))
            .col_expr(
                execution::Column::LogLinesLost,
                Expr::col(execution::Column::LogLinesLost).add(Expr::val(lost)),
            );
        if let Some(cursor) = &self.cursor {
            done = with_cursor(done, cursor);
        }
        Ok(done.exec(db).await?.rows_affected > 0)
    }
}

/// `update` also recording that stored output reached `cursor`.
fn with_cursor(
    update: sea_orm::UpdateMany<execution::Entity>,
    cursor: &LogCursor,
) -> sea_orm::UpdateMany<execution::Entity> {
    update
        .col_expr(
            execution::Column::LogSource,
            Expr::value(cursor.source.as_str()),
        )
        .col_expr(
            execution::Column::LogOffset,
            Expr::value(i64::try_from(cursor.offset).unwrap_or(i64::MAX)),
        )
        .col_expr(execution::Column::LogSince, Expr::value(cursor.since))
}

/// Stores one line unless its seq is stored already; `true` when this call stored it.
async fn insert_line_once<C: ConnectionTrait>(
    db: &C,
    execution_id: i64,
    record: &LogRecord,
) -> Result<bool, sea_orm::DbErr> {
    let row = execution_log::ActiveModel {
        execution_id: Set(execution_id),
        seq: Set(record.seq),
        stream: Set(record.stream),
        line: Set(record.line.clone()),
        logged_at: Set(record.logged_at),
        replaced: Set(record.replaced),
    };
    let stored = execution_log::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                execution_log::Column::ExecutionId,
                execution_log::Column::Seq,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(stored == 1)
}

async fn insert_lines<C: ConnectionTrait>(
    db: &C,
    execution_id: i64,
    lines: &[LogRecord],
) -> Result<(), sea_orm::DbErr> {
    let rows = lines.iter().map(|record| execution_log::ActiveModel {
        execution_id: Set(execution_id),
        seq: Set(record.seq),
        stream: Set(record.stream),
        line: Set(record.line.clone()),
        logged_at: Set(record.logged_at),
        replaced: Set(record.replaced),
    });
    execution_log::Entity::insert_many(rows)
        .exec(db)
        .await
        .map(drop)
}
