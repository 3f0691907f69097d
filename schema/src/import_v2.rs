//! Writing what `proctord import-v2` read from a Proctor v2 deployment: procs, secrets,
//! schedules and execution history (the reading, from v2's Redis and Postgres, is the server's).
//!
//! Invariants:
//! - idempotent: every imported record is written once and recorded in `v2_imports` by its v2
//!   key (Redis key or table id); a second run finds it there, or finds the proc or secret
//!   unchanged, and writes nothing;
//! - one record, one transaction: a bad record fails alone (the caller reports it with its key)
//!   and leaves nothing half-written;
//! - execution ids are kept when free; an id already used here gets a new one, and the mapping
//!   is in `v2_imports`; afterwards new executions are numbered after the highest id;
//! - a dry run reads and checks everything and writes nothing;
//! - secret values are only sealed with the keyring, never returned or logged.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use proctor_entity::json::{ArgValue, ArgValues};
use proctor_entity::values::{ExecutionStatus, LogStream, Trigger};
use proctor_entity::{execution, execution_log, proc, secret, v2_import};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    NotSet, QueryFilter, Set, Statement,
};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::executions::shaping::{Masker, split_long};
use crate::procs::ProcDefinition;
use crate::procs::service::model_of;
use crate::schedules::service::ScheduleSpec;
use crate::secrets::keyring::Keyring;

/// `v2_imports.kind` of a proc (key: `<name>-metadata`).
pub const PROC: &str = "proc";
/// `v2_imports.kind` of a proc's secrets (key: `<name>-secret`).
pub const SECRET: &str = "secret";
/// `v2_imports.kind` of a schedule (key: its v2 id).
pub const SCHEDULE: &str = "schedule";
/// `v2_imports.kind` of an execution (key: its v2 id).
pub const EXECUTION: &str = "execution";
/// Most output lines imported per execution; a marker says how many more there were.
pub const MAX_IMPORTED_LINES: usize = 200_000;
/// Who owns imported executions (v2 had no leases; `REQUIREMENT_NOT_MET` ones have none).
const IMPORT_OWNER: &str = "import-v2";

/// What importing one record did (or, in a dry run, would do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written for the first time.
    Created,
    /// Written over an older import or a proc of the same name.
    Updated,
    /// Already here as it is: nothing written.
    Unchanged,
}

/// A row of v2's `schedule` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V2Schedule {
    /// Snowflake id.
    pub id: i64,
    /// Proc name.
    pub job_name: String,
    /// base64 of the JSON argument map.
    pub args: Option<String>,
    /// The cron, stored with a leading seconds field (`0 `).
    pub cron: String,
    /// Comma-separated addresses.
    pub notification_emails: Option<String>,
    /// Who made it.
    pub user_email: Option<String>,
    /// A label.
    pub group: Option<String>,
    /// Whether it fires.
    pub enabled: Option<bool>,
    /// Comma-separated tags.
    pub tags: Option<String>,
    /// When it was made.
    pub created_at: Option<DateTime<Utc>>,
}

/// A row of v2's `execution_context` table, its output already gunzipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Execution {
    /// Snowflake id.
    pub id: i64,
    /// Proc name.
    pub job_name: String,
    /// Kubernetes Job name (empty when creation failed).
    pub name: Option<String>,
    /// Who ran it (`worker@proctor` for scheduled runs).
    pub user_email: Option<String>,
    /// The image.
    pub image_tag: Option<String>,
    /// base64 of the JSON argument map (`bnVsbA==` for none).
    pub args: Option<String>,
    /// The output, or why it could not be read.
    pub output: Result<Vec<u8>, String>,
    /// v2 status.
    pub status: String,
    /// When it was made.
    pub created_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: Option<DateTime<Utc>>,
    /// The v2 schedule that fired it (`schedule_context`).
    pub schedule_id: Option<i64>,
}

/// Argument values from v2's `base64(JSON map)`; `None`, empty and `null` are no arguments.
/// Values that are not strings are kept as their JSON text.
pub fn decode_args(text: Option<&str>) -> Result<Vec<ArgValue>, String> {
    let text = text.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|e| format!("args are not base64: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("args are not JSON: {e}"))?;
    match value {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Object(map) => Ok(map
            .into_iter()
            .map(|(name, value)| ArgValue {
                name,
                value: match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                },
            })
            .collect()),
        other => Err(format!("args are not a JSON object but {other}")),
    }
}

/// The seconds-form cron of a v2 cron: v2 stored `0 ` before the user's five fields, so six
/// fields are kept as they are and five (written by hand) get the `0 ` v2 would have added.
pub fn seconds_cron(cron: &str) -> Result<String, String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    match fields.len() {
        6 => Ok(fields.join(" ")),
        5 => Ok(format!("0 {}", fields.join(" "))),
        n => Err(format!(
            "cron {cron:?} has {n} fields; v2 stored 6 (seconds first)"
        )),
    }
}

/// Our state for a v2 status, and the reason recorded with it. v2 persisted only these five;
/// `FINISHED` did not mean success (v2 never read exit codes) and `CREATED` rows are runs whose
/// end v2 never saved.
pub fn map_status(status: &str) -> Result<(ExecutionStatus, String), String> {
    let (state, why) = match status.trim() {
        "FINISHED" => (
            ExecutionStatus::Succeeded,
            "v2 recorded FINISHED (it recorded no exit code)",
        ),
        "POD_FAILED" => (ExecutionStatus::Failed, "v2 recorded POD_FAILED"),
        "CREATION_FAILED" | "JOB_CREATION_FAILED" | "POD_CREATION_FAILED" => (
            ExecutionStatus::CreationFailed,
            "v2 could not create its Kubernetes Job",
        ),
        "REQUIREMENT_NOT_MET" => (
            ExecutionStatus::CreationFailed,
            "v2 recorded REQUIREMENT_NOT_MET (its metadata or secrets were missing)",
        ),
        "CREATED" | "RECEIVED" | "JOB_READY" | "POD_READY" | "FETCH_POD_LOG_FAILED" => (
            ExecutionStatus::Lost,
            "v2 never recorded how it ended (it stayed CREATED)",
        ),
        other => return Err(format!("unknown v2 status {other:?}")),
    };
    Ok((state, format!("imported from Proctor v2: {why}")))
}

/// Output lines from v2's log text: split at `\n` (the trailing one ends the last line), bytes
/// that are not UTF-8 and NUL characters replaced by U+FFFD (such lines are marked), over-long
/// lines split as live output is.
fn output_lines(output: &[u8], masker: &Masker) -> Vec<(String, bool)> {
    let mut lines = Vec::new();
    let text = output.strip_suffix(b"\n").unwrap_or(output);
    if text.is_empty() {
        return lines;
    }
    for raw in text.split(|byte| *byte == b'\n') {
        let decoded = String::from_utf8_lossy(raw);
        let mut replaced = matches!(decoded, std::borrow::Cow::Owned(_));
        let mut line = decoded.into_owned();
        if line.contains('\0') {
            line = line.replace('\0', "\u{FFFD}");
            replaced = true;
        }
        let line = line.strip_suffix('\r').map(str::to_owned).unwrap_or(line);
        let line = masker.mask(&line);
        lines.extend(split_long(line).into_iter().map(|part| (part, replaced)));
    }
    lines
}

/// Writes imported records; see the module docs.
pub struct Importer<'a> {
    db: &'a DatabaseConnection,
    keyring: &'a Keyring,
    caller: Caller,
    dry_run: bool,
    pause_schedules: bool,
    /// The v2 secret values seen per proc name (the imported output is masked with them).
    seen_secrets: std::sync::Mutex<BTreeMap<String, Vec<String>>>,
    /// Per proc name, the masker of its runs' imported output.
    maskers: std::sync::Mutex<BTreeMap<String, std::sync::Arc<Masker>>>,
}

impl<'a> Importer<'a> {
    /// An importer acting as `caller` (recorded in the audit log). `pause_schedules`: store
    /// every schedule disabled (v2 still fires them).
    pub fn new(
        db: &'a DatabaseConnection,
        keyring: &'a Keyring,
        caller: Caller,
        dry_run: bool,
        pause_schedules: bool,
    ) -> Self {
        Self {
            db,
            keyring,
            caller,
            dry_run,
            pause_schedules,
            seen_secrets: std::sync::Mutex::default(),
            maskers: std::sync::Mutex::default(),
        }
    }

    fn remember(&self, proc_name: &str, values: impl Iterator<Item = String>) {
        // A poisoned lock holds a whole map (single inserts): safe to reuse.
        self.seen_secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(proc_name.to_owned())
            .or_default()
            .extend(values);
    }

    /// The masker of imported output of runs of `proc_name`: every v2 value seen for that
    /// name and every value stored here for the proc.
    async fn masker(&self, proc_name: &str) -> Result<std::sync::Arc<Masker>, ApiError> {
        if let Some(masker) = self
            .maskers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(proc_name)
        {
            return Ok(std::sync::Arc::clone(masker));
        }
        let mut values = self
            .seen_secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(proc_name)
            .cloned()
            .unwrap_or_default();
        if let Some(proc) = self.proc_named(proc_name).await? {
            for row in secret::Entity::find()
                .filter(secret::Column::ProcId.eq(proc.id))
                .all(self.db)
                .await?
            {
                values.push(crate::secrets::service::decrypt(self.keyring, &row)?);
            }
        }
        let masker = std::sync::Arc::new(Masker::new(values.iter().map(String::as_str)));
        self.maskers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(proc_name.to_owned(), std::sync::Arc::clone(&masker));
        Ok(masker)
    }

    /// What `key` of `kind` became here, when it was imported before.
    pub async fn recorded(&self, kind: &str, key: &str) -> Result<Option<String>, ApiError> {
        Ok(v2_import::Entity::find()
            .filter(v2_import::Column::Kind.eq(kind))
            .filter(v2_import::Column::SourceKey.eq(key))
            .one(self.db)
            .await?
            .map(|row| row.target_id))
    }

    async fn record<C: ConnectionTrait>(
        db: &C,
        kind: &str,
        key: &str,
        target: &str,
    ) -> Result<(), ApiError> {
        v2_import::Entity::insert(v2_import::ActiveModel {
            kind: Set(kind.to_owned()),
            source_key: Set(key.to_owned()),
            target_id: Set(target.to_owned()),
            created_at: Set(Utc::now()),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                v2_import::Column::Kind,
                v2_import::Column::SourceKey,
            ])
            .update_column(v2_import::Column::TargetId)
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
        Ok(())
    }

    /// The stored proc called `name`.
    pub async fn proc_named(&self, name: &str) -> Result<Option<proc::Model>, ApiError> {
        Ok(proc::Entity::find()
            .filter(proc::Column::Name.eq(name))
            .one(self.db)
            .await?)
    }

    /// Imports a proc definition (from the v2 metadata under `key`).
    pub async fn proc(&self, key: &str, definition: &ProcDefinition) -> Result<Outcome, ApiError> {
        let valid = definition.validate("")?;
        let existing = self.proc_named(&valid.name).await?;
        let outcome = match &existing {
            None => Outcome::Created,
            Some(current) => {
                let mut wanted = model_of(&valid);
                wanted.id = current.id;
                wanted.version = current.version;
                wanted.created_at = current.created_at;
                wanted.updated_at = current.updated_at;
                if wanted == *current {
                    if !self.dry_run && self.recorded(PROC, key).await?.is_none() {
                        Self::record(self.db, PROC, key, &valid.name).await?;
                    }
                    return Ok(Outcome::Unchanged);
                }
                Outcome::Updated
            }
        };
        if self.dry_run {
            return Ok(outcome);
        }
        let stored = crate::db::retry_on_conflict(|| {
            crate::procs::service::store_proc(self.db, &self.caller, &valid, None)
        })
        .await?;
        Self::record(self.db, PROC, key, &stored.name).await?;
        Ok(outcome)
    }

    /// Imports the secret values of `proc_name` (from the v2 JSON map under `key`). A value
    /// that equals the stored one is not written again.
    pub async fn secrets(
        &self,
        key: &str,
        proc_name: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<Outcome, ApiError> {
        // Masked in the imported output of runs of this name, whatever becomes of them here.
        self.remember(proc_name, values.values().cloned());
        for (name, value) in values {
            crate::secrets::service::check_value(name, value)?;
        }
        let Some(proc) = self.proc_named(proc_name).await? else {
            if self.dry_run {
                return Ok(Outcome::Created);
            }
            return Err(ApiError::NotFound {
                kind: "proc",
                key: proc_name.to_owned(),
            });
        };
        let declared: Vec<&str> = proc
            .secret_specs
            .0
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        // In a dry run the proc import that would declare it has not happened.
        if let Some(undeclared) = values
            .keys()
            .find(|name| !declared.contains(&name.as_str()))
            && !self.dry_run
        {
            return Err(ApiError::bad_input(
                undeclared.clone(),
                format!("proc {proc_name:?} does not declare this secret"),
            ));
        }
        let stored = secret::Entity::find()
            .filter(secret::Column::ProcId.eq(proc.id))
            .all(self.db)
            .await?;
        let mut changed = Vec::new();
        let mut any_new = false;
        for (name, value) in values {
            match stored.iter().find(|row| row.key == *name) {
                Some(row) => {
                    let current = crate::secrets::service::decrypt(self.keyring, row)?;
                    if current != *value {
                        changed.push((name.clone(), value.clone()));
                    }
                }
                None => {
                    any_new = true;
                    changed.push((name.clone(), value.clone()));
                }
            }
        }
        if changed.is_empty() {
            if !self.dry_run && self.recorded(SECRET, key).await?.is_none() {
                Self::record(self.db, SECRET, key, proc_name).await?;
            }
            return Ok(Outcome::Unchanged);
        }
        let outcome = if any_new && changed.len() == values.len() {
            Outcome::Created
        } else {
            Outcome::Updated
        };
        if self.dry_run {
            return Ok(outcome);
        }
        crate::secrets::service::store_values(self.db, self.keyring, &self.caller, &proc, &changed)
            .await?;
        Self::record(self.db, SECRET, key, proc_name).await?;
        Ok(outcome)
    }

    /// Imports a schedule. Its times are read in `timezone` (v2 evaluated crons in the
    /// scheduler host's zone).
    pub async fn schedule(&self, row: &V2Schedule, timezone: &str) -> Result<Outcome, ApiError> {
        let key = row.id.to_string();
        if self.recorded(SCHEDULE, &key).await?.is_some() {
            return Ok(Outcome::Unchanged);
        }
        let proc = self.proc_named(&row.job_name).await?.ok_or_else(|| {
            ApiError::bad_input(
                "job_name",
                format!(
                    "no proc named {:?} (its metadata was not imported)",
                    row.job_name
                ),
            )
        })?;
        let args = decode_args(row.args.as_deref()).map_err(|e| ApiError::bad_input("args", e))?;
        let list = |text: &Option<String>| -> Vec<String> {
            text.as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let spec = ScheduleSpec {
            proc: proc.name.clone(),
            cron: seconds_cron(&row.cron).map_err(|e| ApiError::bad_input("cron", e))?,
            args: Some(args),
            timezone: Some(timezone.to_owned()),
            tags: Some(list(&row.tags)),
            group: row.group.clone().filter(|group| !group.trim().is_empty()),
            notification_emails: Some(list(&row.notification_emails)),
            enabled: Some(row.enabled.unwrap_or(false) && !self.pause_schedules),
            overlap_policy: None,
            catch_up_policy: None,
            slack_webhook_url: None,
            webhook_url: None,
        };
        if self.dry_run {
            crate::schedules::service::check_import(&proc, &spec)?;
            return Ok(Outcome::Created);
        }
        let txn = crate::db::begin_write(self.db).await?;
        let id = crate::schedules::service::import_schedule(
            &txn,
            &self.caller,
            &proc,
            spec,
            row.user_email.clone().filter(|email| !email.is_empty()),
            row.created_at.unwrap_or_else(Utc::now),
        )
        .await?;
        Self::record(&txn, SCHEDULE, &key, &id.to_string()).await?;
        txn.commit().await?;
        Ok(Outcome::Created)
    }

    /// Imports one execution with its output; returns the outcome and its id here.
    pub async fn execution(&self, row: &V2Execution) -> Result<(Outcome, Option<i64>), ApiError> {
        let key = row.id.to_string();
        if let Some(target) = self.recorded(EXECUTION, &key).await? {
            return Ok((Outcome::Unchanged, target.parse().ok()));
        }
        if row.job_name.trim().is_empty() {
            return Err(ApiError::bad_input("job_name", "is empty"));
        }
        let (status, reason) =
            map_status(&row.status).map_err(|e| ApiError::bad_input("status", e))?;
        let args = decode_args(row.args.as_deref()).map_err(|e| ApiError::bad_input("args", e))?;
        let output = row
            .output
            .as_ref()
            .map_err(|e| ApiError::bad_input("output", e.clone()))?;
        let proc = self.proc_named(&row.job_name).await?;
        let schedule_id = match row.schedule_id {
            Some(v2) => self
                .recorded(SCHEDULE, &v2.to_string())
                .await?
                .and_then(|id| id.parse::<i64>().ok()),
            None => None,
        };
        if self.dry_run {
            return Ok((Outcome::Created, None));
        }
        let created_at = row.created_at.unwrap_or_else(Utc::now);
        let updated_at = row.updated_at.unwrap_or(created_at).max(created_at);
        let ran = matches!(
            status,
            ExecutionStatus::Succeeded | ExecutionStatus::Failed | ExecutionStatus::Lost
        );
        let masker = self.masker(&row.job_name).await?;
        let requirement_not_met = row.status.trim() == "REQUIREMENT_NOT_MET";
        let txn = crate::db::begin_write(self.db).await?;
        if row.id > 0 && crate::db::locks_rows(self.db) {
            // New runs are numbered after the imported ones from now on, even while a server
            // runs beside the import (SQLite numbers after the highest id by itself).
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT setval(pg_get_serial_sequence('executions', 'id'), \
                 GREATEST(nextval(pg_get_serial_sequence('executions', 'id')), $1))",
                [row.id.into()],
            ))
            .await?;
        }
        let id_free = row.id > 0
            && execution::Entity::find_by_id(row.id)
                .one(&txn)
                .await?
                .is_none();
        let stored = execution::ActiveModel {
            id: if id_free { Set(row.id) } else { NotSet },
            proc_id: Set(proc.as_ref().map(|proc| proc.id)),
            proc_name: Set(row.job_name.clone()),
            args: Set(ArgValues(args)),
            status: Set(status),
            trigger: Set(if row.schedule_id.is_some() {
                Trigger::Schedule
            } else {
                Trigger::Api
            }),
            schedule_id: Set(schedule_id),
            user_email: Set(row.user_email.clone().filter(|email| !email.is_empty())),
            image: Set(row.image_tag.clone().filter(|image| !image.is_empty())),
            executor_ref: Set(row.name.clone().filter(|name| !name.is_empty())),
            exit_code: Set(None),
            reason: Set(Some(reason)),
            created_at: Set(created_at),
            started_at: Set(ran.then_some(created_at)),
            finished_at: Set(Some(updated_at)),
            updated_at: Set(updated_at),
            owner: Set((!requirement_not_met).then(|| IMPORT_OWNER.to_owned())),
            lease_expires_at: Set(None),
            log_source: Set(None),
            log_offset: Set(0),
            log_since: Set(None),
            log_lines_lost: Set(0),
            mask_key_id: Set(None),
            mask_sealed: Set(None),
            attempts: Set(1),
            proc_version: Set(None),
        }
        .insert(&txn)
        .await?;
        let mut lines = output_lines(output, &masker);
        if lines.len() > MAX_IMPORTED_LINES {
            let more = lines.len() - MAX_IMPORTED_LINES;
            lines.truncate(MAX_IMPORTED_LINES);
            lines.push((
                format!("[proctor] {more} more lines of the v2 output were not imported"),
                false,
            ));
        }
        let marker_at = (lines.len() > MAX_IMPORTED_LINES).then_some(lines.len());
        let records: Vec<execution_log::ActiveModel> = lines
            .into_iter()
            .enumerate()
            .map(|(index, (line, replaced))| execution_log::ActiveModel {
                execution_id: Set(stored.id),
                seq: Set(i64::try_from(index).unwrap_or(i64::MAX) + 1),
                stream: Set(if Some(index + 1) == marker_at {
                    LogStream::System
                } else {
                    LogStream::Stdout
                }),
                line: Set(line),
                logged_at: Set(updated_at),
                replaced: Set(replaced),
            })
            .collect();
        for chunk in records.chunks(500) {
            execution_log::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await?;
        }
        Self::record(&txn, EXECUTION, &key, &stored.id.to_string()).await?;
        txn.commit().await?;
        Ok((Outcome::Created, Some(stored.id)))
    }

    /// One audit event sums the import up.
    pub async fn finish(&self, summary: serde_json::Value) -> Result<(), ApiError> {
        if self.dry_run {
            return Ok(());
        }
        crate::auth::audit::record(
            self.db,
            &self.caller,
            "import.v2",
            "import",
            "v2",
            Some(summary),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_arguments_decode_including_its_null() {
        assert_eq!(decode_args(Some("bnVsbA==")).unwrap(), []);
        assert_eq!(decode_args(None).unwrap(), []);
        let encoded = base64::engine::general_purpose::STANDARD.encode(r#"{"NAME":"x","N":3}"#);
        let args = decode_args(Some(&encoded)).unwrap();
        assert_eq!(
            args,
            [
                ArgValue {
                    name: "N".into(),
                    value: "3".into()
                },
                ArgValue {
                    name: "NAME".into(),
                    value: "x".into()
                }
            ]
        );
        assert!(decode_args(Some("%%%")).unwrap_err().contains("base64"));
        let list = base64::engine::general_purpose::STANDARD.encode("[1]");
        assert!(decode_args(Some(&list)).unwrap_err().contains("object"));
    }

    #[test]
    fn crons_get_their_seconds_field_once() {
        assert_eq!(seconds_cron("0 */5 * * * *").unwrap(), "0 */5 * * * *");
        assert_eq!(seconds_cron("*/5 * * * *").unwrap(), "0 */5 * * * *");
        assert!(seconds_cron("* *").is_err());
    }

    #[test]
    fn statuses_map_and_finished_is_not_called_a_checked_success() {
        assert_eq!(
            map_status("FINISHED").unwrap().0,
            ExecutionStatus::Succeeded
        );
        assert!(map_status("FINISHED").unwrap().1.contains("no exit code"));
        assert_eq!(map_status("CREATED").unwrap().0, ExecutionStatus::Lost);
        assert_eq!(map_status("POD_FAILED").unwrap().0, ExecutionStatus::Failed);
        assert!(map_status("WAT").is_err());
    }

    #[test]
    fn output_keeps_lines_and_marks_replaced_bytes() {
        let lines = output_lines(b"one\ntw\0o\n\xff\n", &Masker::new([]));
        assert_eq!(
            lines,
            [
                ("one".to_owned(), false),
                ("tw\u{FFFD}o".to_owned(), true),
                ("\u{FFFD}".to_owned(), true)
            ]
        );
        assert!(output_lines(b"", &Masker::new([])).is_empty());
        assert_eq!(
            output_lines(b"token=s3cret\n", &Masker::new(["s3cret"])),
            [("token=***".to_owned(), false)],
            "v2 never masked output; the import does"
        );
    }
}
