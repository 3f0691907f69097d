//! What `/metrics` reads at scrape time: this process's CPU, memory and descriptors (from
//! `/proc/self`, as Prometheus client libraries do), the database pool, whether the event bus
//! answers, and the notification outbox's depth. Anything that cannot be read counts as 0 and
//! is logged at debug level: a scrape never fails for it.

use std::time::Duration;

use proctor_schema::AppState;
use proctor_schema::metrics::Scrape;
use sea_orm::DatabaseBackend;

/// How long the event bus may take to answer before it counts as down.
const BUS_TIMEOUT: Duration = Duration::from_millis(500);
/// How long counting the outbox may take before it counts as 0.
const COUNT_TIMEOUT: Duration = Duration::from_secs(1);
/// A scrape this recent is answered again instead of asking the database and the bus anew.
const REUSE_FOR: Duration = Duration::from_secs(2);

/// The last scrape, shared by every `/metrics` request: one at a time reads (the others wait
/// for it and reuse it), so scrapers that hammer `/metrics` cost one query and one ping every
/// [`REUSE_FOR`], never a share of the pool.
#[derive(Default)]
pub struct Scraper {
    last: tokio::sync::Mutex<Option<(std::time::Instant, Scrape)>>,
}

impl Scraper {
    /// A recent scrape, or a fresh one.
    pub async fn get(&self, state: &AppState) -> Scrape {
        let mut last = self.last.lock().await;
        if let Some((at, scrape)) = *last
            && at.elapsed() < REUSE_FOR
        {
            return scrape;
        }
        let fresh = scrape(state).await;
        *last = Some((std::time::Instant::now(), fresh));
        fresh
    }
}

/// Reads everything [`Scrape`] holds.
pub async fn scrape(state: &AppState) -> Scrape {
    let mut scrape = process().unwrap_or_default();
    let db = state.db();
    let (size, idle) = match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DatabaseBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => (0, 0),
    };
    let idle = i64::try_from(idle).unwrap_or(i64::MAX);
    scrape.pool_idle = idle;
    scrape.pool_in_use = (i64::from(size) - idle).max(0);
    scrape.event_bus_up = match tokio::time::timeout(BUS_TIMEOUT, state.event_bus().check()).await {
        Ok(Ok(())) => 1,
        _ => 0,
    };
    let count = tokio::time::timeout(
        COUNT_TIMEOUT,
        proctor_schema::notifications::outbox::pending(state),
    )
    .await;
    scrape.outbox_pending = match count {
        Ok(Ok(count)) => i64::try_from(count).unwrap_or(i64::MAX),
        Ok(Err(error)) => {
            tracing::debug!(%error, "cannot count the notification outbox for /metrics");
            0
        }
        Err(_) => {
            tracing::debug!("counting the notification outbox for /metrics took too long");
            0
        }
    };
    scrape
}

/// CPU, memory, descriptors and start time of this process.
fn process() -> Option<Scrape> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the
    // last ')'. What follows starts at field 3 (state).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let cpu_seconds = (field(14)? + field(15)?) as f64 / ticks;
    let started_after_boot = field(22)? as f64 / ticks;
    let virtual_bytes = field(23)?;
    let resident_bytes = field(24)? * rustix::param::page_size() as u64;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let boot_time: f64 = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let to_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    Some(Scrape {
        cpu_seconds,
        resident_bytes: to_i64(resident_bytes),
        virtual_bytes: to_i64(virtual_bytes),
        open_fds: i64::try_from(open_fds).unwrap_or(i64::MAX),
        max_fds: to_i64(max_fds),
        start_time_seconds: (boot_time + started_after_boot) as i64,
        ..Scrape::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        let scrape = process().expect("/proc/self is readable");
        assert!(scrape.resident_bytes > 1024 * 1024, "{scrape:?}");
        assert!(scrape.open_fds >= 3, "{scrape:?}");
        assert!(scrape.max_fds >= scrape.open_fds, "{scrape:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (now - 3600..=now + 5).contains(&scrape.start_time_seconds),
            "started within the hour: {scrape:?}"
        );
    }
}
