//! `proctord import-v2`: reads a Proctor v2 deployment — the Redis keys `<name>-metadata` and
//! `<name>-secret`, the Postgres tables `schedule`, `schedule_context` and `execution_context`
//! — and hands each record to [`proctor_schema::import_v2::Importer`], which writes it (or, with
//! `--dry-run`, only checks it).
//!
//! A record that cannot be read or imported is reported with its key or id and skipped; the
//! rest goes on. Procs are mapped as the REST shim maps v2 metadata (`rest::metadata`), and
//! every secret a v2 proc had a value for is declared on it (v2 injected every value whether
//! its metadata listed it or not). Secret values are never printed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};
use flate2::read::GzDecoder;
use fred::prelude::{Builder, ClientLike as _, Config, KeysInterface as _};
use futures::StreamExt as _;
use proctor_schema::ApiError;
use proctor_schema::auth::Caller;
use proctor_schema::import_v2::{Importer, Outcome, V2Execution, V2Schedule};
use proctor_schema::procs::definition::SecretDefinition;
use proctor_schema::secrets::keyring::Keyring;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, QueryResult, Statement};

use crate::rest::metadata::LegacyMetadata;

/// Executions read from v2's Postgres per query (each holds its gzipped output).
const PAGE: i64 = 50;
/// Largest v2 output (gunzipped) read per execution; more is refused as a bad record.
const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Where the v2 data is and how to treat it.
#[derive(Clone, Debug)]
pub struct Sources {
    /// v2's Redis (`redis://…`): procs and secrets.
    pub redis_url: Option<String>,
    /// v2's Postgres (`postgres://…`): schedules and execution history.
    pub postgres_url: Option<String>,
    /// The zone v2's server ran in: its timestamps and crons are local times there.
    pub timezone: chrono_tz::Tz,
    /// Check and report only.
    pub dry_run: bool,
    /// Store every schedule disabled (v2 still fires them; enable them once v2's are off).
    pub pause_schedules: bool,
}

/// Counts of one kind of record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Written for the first time.
    pub created: u64,
    /// Written over what was there.
    pub updated: u64,
    /// Already here.
    pub unchanged: u64,
    /// Reported and skipped.
    pub skipped: u64,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Unchanged => self.unchanged += 1,
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created, {} updated, {} unchanged, {} skipped",
            self.created, self.updated, self.unchanged, self.skipped
        )
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Procs.
    pub procs: Counts,
    /// Secret sets (one per proc).
    pub secrets: Counts,
    /// Schedules.
    pub schedules: Counts,
    /// Executions.
    pub executions: Counts,
    /// `(kind, key, reason)` of every skipped record.
    pub skipped: Vec<(String, String, String)>,
}

impl Report {
    fn skip(&mut self, kind: &str, key: &str, reason: impl fmt::Display) {
        let reason = reason.to_string();
        println!("skipped   {kind} {key}: {reason}");
        self.skipped.push((kind.to_owned(), key.to_owned(), reason));
    }

    /// The audit summary.
    fn summary(&self) -> serde_json::Value {
        let counts = |c: &Counts| {
            serde_json::json!({
                "created": c.created, "updated": c.updated,
                "unchanged": c.unchanged, "skipped": c.skipped,
            })
        };
        serde_json::json!({
            "procs": counts(&self.procs),
            "secrets": counts(&self.secrets),
            "schedules": counts(&self.schedules),
            "executions": counts(&self.executions),
        })
    }
}

fn word(outcome: Outcome, dry_run: bool) -> &'static str {
    match (outcome, dry_run) {
        (Outcome::Created, false) => "created",
        (Outcome::Created, true) => "would create",
        (Outcome::Updated, false) => "updated",
        (Outcome::Updated, true) => "would update",
        (Outcome::Unchanged, _) => "unchanged",
    }
}

fn api_error(error: &ApiError) -> String {
    match error {
        ApiError::Internal(cause) => format!("{cause:#}"),
        other => other.to_string(),
    }
}

/// Runs the import into `db`; prints a line per proc, secret set and schedule, the skipped
/// records, progress through the executions, and a summary.
pub async fn run(
    db: &DatabaseConnection,
    keyring: &Keyring,
    sources: &Sources,
) -> anyhow::Result<Report> {
    let importer = Importer::new(
        db,
        keyring,
        Caller::system("proctord import-v2"),
        sources.dry_run,
        sources.pause_schedules,
    );
    let mut report = Report::default();
    if let Some(url) = &sources.redis_url {
        import_redis(&importer, url, sources.dry_run, &mut report).await?;
    }
    if let Some(url) = &sources.postgres_url {
        import_postgres(&importer, url, sources, &mut report).await?;
    }
    importer
        .finish(report.summary())
        .await
        .map_err(|e| anyhow::anyhow!("finishing the import: {}", api_error(&e)))?;
    println!(
        "{}procs: {}\nsecrets: {}\nschedules: {}\nexecutions: {}",
        if sources.dry_run {
            "dry run, nothing was written\n"
        } else {
            ""
        },
        report.procs,
        report.secrets,
        report.schedules,
        report.executions
    );
    Ok(report)
}

/// Every key matching `pattern`, sorted.
async fn keys(client: &fred::clients::Client, pattern: &str) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut scan = client.scan_buffered(pattern, Some(500), None);
    while let Some(key) = scan.next().await {
        let key = key.with_context(|| format!("scanning v2's Redis for {pattern}"))?;
        if let Some(text) = key.as_str() {
            found.push(text.to_owned());
        }
    }
    found.sort();
    Ok(found)
}

async fn import_redis(
    importer: &Importer<'_>,
    url: &str,
    dry_run: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let config = Config::from_url(url).context("--v2-redis-url is not a Redis URL")?;
    let client = Builder::from_config(config)
        .build()
        .context("building the Redis client")?;
    client.init().await.context("connecting to v2's Redis")?;
    let metadata_keys = keys(&client, "*-metadata").await?;
    let secret_keys = keys(&client, "*-secret").await?;
    let mut secrets: BTreeMap<String, Result<BTreeMap<String, String>, String>> = BTreeMap::new();
    for key in &secret_keys {
        let Some(name) = key.strip_suffix("-secret").map(str::to_owned) else {
            continue;
        };
        let value: Option<String> = client
            .get(key.as_str())
            .await
            .context("reading a secret key")?;
        let parsed = match value {
            None => continue,
            Some(text) => serde_json::from_str::<BTreeMap<String, serde_json::Value>>(&text)
                .map_err(|e| format!("not a JSON object: {e}"))
                .and_then(|map| {
                    map.into_iter()
                        .map(|(key, value)| match value {
                            serde_json::Value::String(text) => Ok((key, text)),
                            other => Err(format!(
                                "the value of {key} is {}, not a string",
                                kind_of(&other)
                            )),
                        })
                        .collect()
                }),
        };
        secrets.insert(name, parsed);
    }
    for key in &metadata_keys {
        let value: Option<String> = client
            .get(key.as_str())
            .await
            .context("reading a metadata key")?;
        let Some(text) = value else { continue };
        let metadata: LegacyMetadata = match serde_json::from_str(&text) {
            Ok(metadata) => metadata,
            Err(error) => {
                report.procs.skipped += 1;
                report.skip("proc", key, format!("not v2 metadata JSON: {error}"));
                continue;
            }
        };
        let name = if metadata.name.is_empty() {
            key.strip_suffix("-metadata").unwrap_or(key).to_owned()
        } else {
            metadata.name.clone()
        };
        let existing = match importer.proc_named(&name).await {
            Ok(existing) => existing,
            Err(error) => anyhow::bail!("reading proc {name}: {}", api_error(&error)),
        };
        let mut definition = LegacyMetadata {
            name: name.clone(),
            ..metadata
        }
        .to_definition(existing.as_ref());
        // v2 injected every stored secret, declared or not: declare the ones with a value.
        if let Some(Ok(values)) = secrets.get(&name) {
            let declared = definition.secrets.get_or_insert_with(Vec::new);
            for secret in values.keys() {
                if !declared.iter().any(|known| known.name == *secret) {
                    declared.push(SecretDefinition {
                        name: secret.clone(),
                        description: Some("imported from Proctor v2".to_owned()),
                    });
                }
            }
        }
        match importer.proc(key, &definition).await {
            Ok(outcome) => {
                report.procs.add(outcome);
                println!("proc      {name}: {}", word(outcome, dry_run));
            }
            Err(error) => {
                report.procs.skipped += 1;
                report.skip("proc", key, api_error(&error));
            }
        }
    }
    for (name, values) in &secrets {
        let key = format!("{name}-secret");
        let values = match values {
            Ok(values) => values,
            Err(reason) => {
                report.secrets.skipped += 1;
                report.skip("secret", &key, reason);
                continue;
            }
        };
        match importer.secrets(&key, name, values).await {
            Ok(outcome) => {
                report.secrets.add(outcome);
                println!(
                    "secrets   {name}: {} ({} value(s), never shown)",
                    word(outcome, dry_run),
                    values.len()
                );
            }
            Err(error) => {
                report.secrets.skipped += 1;
                report.skip("secret", &key, api_error(&error));
            }
        }
    }
    client.quit().await.ok();
    Ok(())
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A v2 timestamp (local time in `zone`, no offset) in UTC; a time in a daylight-saving gap
/// (which the clock skipped) is read an hour later.
fn in_zone(zone: chrono_tz::Tz, naive: Option<NaiveDateTime>) -> Option<DateTime<Utc>> {
    naive.and_then(|naive| {
        zone.from_local_datetime(&naive)
            .earliest()
            .or_else(|| {
                zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|local| local.with_timezone(&Utc))
    })
}

fn column<T: sea_orm::TryGetable>(row: &QueryResult, name: &str) -> Result<T, String> {
    row.try_get::<T>("", name)
        .map_err(|e| format!("column {name}: {e}"))
}

async fn import_postgres(
    importer: &Importer<'_>,
    url: &str,
    sources: &Sources,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut options = sea_orm::ConnectOptions::new(url);
    options.sqlx_logging(false);
    let source = sea_orm::Database::connect(options)
        .await
        .context("connecting to v2's Postgres (--v2-postgres-url)")?;
    let zone = sources.timezone;
    let zone_name = zone.name();

    let schedules = source
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id, job_name, args, cron, notification_emails, user_email, \"group\", \
             enabled, tags, created_at FROM schedule ORDER BY id",
        ))
        .await
        .context("reading v2's schedule table")?;
    for row in &schedules {
        let read = || -> Result<V2Schedule, String> {
            Ok(V2Schedule {
                id: column(row, "id")?,
                job_name: column::<Option<String>>(row, "job_name")?.unwrap_or_default(),
                args: column(row, "args")?,
                cron: column::<Option<String>>(row, "cron")?.unwrap_or_default(),
                notification_emails: column(row, "notification_emails")?,
                user_email: column(row, "user_email")?,
                group: column(row, "group")?,
                enabled: column(row, "enabled")?,
                tags: column(row, "tags")?,
                created_at: in_zone(zone, column(row, "created_at")?),
            })
        };
        let id = column::<i64>(row, "id").map_or("?".to_owned(), |id| id.to_string());
        let schedule = match read() {
            Ok(schedule) => schedule,
            Err(reason) => {
                report.schedules.skipped += 1;
                report.skip("schedule", &id, reason);
                continue;
            }
        };
        match importer.schedule(&schedule, zone_name).await {
            Ok(outcome) => {
                report.schedules.add(outcome);
                println!(
                    "schedule  {id} ({} {}): {}",
                    schedule.job_name,
                    schedule.cron,
                    word(outcome, sources.dry_run)
                );
            }
            Err(error) => {
                report.schedules.skipped += 1;
                report.skip("schedule", &id, api_error(&error));
            }
        }
    }

    let fired: HashMap<i64, i64> = source
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT execution_context_id, schedule_id FROM schedule_context \
             WHERE execution_context_id IS NOT NULL AND schedule_id IS NOT NULL",
        ))
        .await
        .context("reading v2's schedule_context table")?
        .iter()
        .filter_map(|row| {
            Some((
                column::<i64>(row, "execution_context_id").ok()?,
                column::<i64>(row, "schedule_id").ok()?,
            ))
        })
        .collect();

    let mut after = i64::MIN;
    let mut seen = 0_u64;
    loop {
        let page = source
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT id, job_name, name, user_email, image_tag, args, output, status, \
                 created_at, updated_at FROM execution_context WHERE id > $1 ORDER BY id LIMIT $2",
                [after.into(), PAGE.into()],
            ))
            .await
            .context("reading v2's execution_context table")?;
        let Some(last) = page.last() else { break };
        after = column::<i64>(last, "id").map_err(anyhow::Error::msg)?;
        for row in &page {
            seen += 1;
            let id: i64 = column(row, "id").map_err(anyhow::Error::msg)?;
            let read = || -> Result<V2Execution, String> {
                let output = column::<Option<Vec<u8>>>(row, "output")?;
                Ok(V2Execution {
                    id,
                    job_name: column::<Option<String>>(row, "job_name")?.unwrap_or_default(),
                    name: column(row, "name")?,
                    user_email: column(row, "user_email")?,
                    image_tag: column(row, "image_tag")?,
                    args: column(row, "args")?,
                    output: gunzip(output.as_deref()),
                    status: column::<Option<String>>(row, "status")?.unwrap_or_default(),
                    created_at: in_zone(zone, column(row, "created_at")?),
                    updated_at: in_zone(zone, column(row, "updated_at")?),
                    schedule_id: fired.get(&id).copied(),
                })
            };
            let outcome = match read() {
                Ok(execution) => importer
                    .execution(&execution)
                    .await
                    .map_err(|e| api_error(&e)),
                Err(reason) => Err(reason),
            };
            match outcome {
                Ok((outcome, _)) => report.executions.add(outcome),
                Err(reason) => {
                    report.executions.skipped += 1;
                    report.skip("execution", &id.to_string(), reason);
                }
            }
        }
        println!("executions: {seen} read");
    }
    source.close().await.ok();
    Ok(())
}

/// v2's gzipped output (empty or absent: no output).
fn gunzip(bytes: Option<&[u8]>) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let Some(bytes) = bytes.filter(|bytes| !bytes.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut text = Vec::new();
    GzDecoder::new(bytes)
        .take(MAX_OUTPUT_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("is not gzip: {e}"))?;
    if text.len() as u64 > MAX_OUTPUT_BYTES {
        return Err(format!(
            "is over {} MiB unzipped",
            MAX_OUTPUT_BYTES / 1024 / 1024
        ));
    }
    Ok(text)
}
