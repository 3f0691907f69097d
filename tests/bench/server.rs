//! The `proctord` processes a scenario measures.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A started `proctord`.
pub struct Server {
    /// The process when this bench started it (an attached server is left running).
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its process id (for memory and CPU).
    pub pid: u32,
    /// Time from spawn to a 200 from `/readyz`.
    pub ready_after: Duration,
    http: reqwest::Client,
    _data_dir: Option<tempfile::TempDir>,
}

/// How a server is configured.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Postgres URL, or SQLite in a fresh data directory.
    pub database_url: Option<String>,
    /// Redis URL, or the in-memory bus.
    pub redis_url: Option<String>,
    /// Runs at once.
    pub max_parallel: u32,
    /// Whether the scheduler loop runs.
    pub scheduler: bool,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `proctord` built next to this binary.
pub fn proctord_path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("proctord");
    if !path.exists() {
        bail!(
            "{} not found: build it with the same profile (cargo build --release --bin proctord)",
            path.display()
        );
    }
    Ok(path)
}

impl Server {
    /// Starts a server and waits until it is ready.
    pub async fn start(setup: &Setup) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut command = Command::new(proctord_path()?);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", data_dir.path())
            .env("PROCTOR_APP_PORT", port.to_string())
            .env("PROCTOR_DATA_DIR", data_dir.path())
            .env("PROCTOR_REGISTER_EXAMPLES", "false")
            .env("PROCTOR_LOG_LEVEL", "warn")
            .env(
                "PROCTOR_MAX_PARALLEL_RUNS",
                setup.max_parallel.max(1).to_string(),
            )
            .env("PROCTOR_SCHEDULER_ENABLED", setup.scheduler.to_string())
            .env("PROCTOR_AUTO_MIGRATE", "true")
            .env("PROCTOR_GRAPHQL_MAX_COMPLEXITY", "100000")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(url) = &setup.database_url {
            command.env("PROCTOR_DATABASE_URL", fresh_database(url).await?);
        }
        if let Some(url) = &setup.redis_url {
            command
                .env("PROCTOR_REDIS_URL", url)
                .env("PROCTOR_REDIS_CHANNEL_PREFIX", format!("bench{port}"));
        }
        let started = Instant::now();
        let child = command.spawn().context("starting proctord")?;
        let pid = child.id().context("proctord's pid")?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        wait_until_ready(&http, &base, Duration::from_secs(60)).await?;
        Ok(Self {
            ready_after: started.elapsed(),
            child: Some(child),
            base,
            pid,
            http,
            _data_dir: Some(data_dir),
        })
    }

    /// A `proctord` that is already running at `base` as process `pid`, once it is ready.
    pub async fn attach(base: &str, pid: u32) -> anyhow::Result<Self> {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process {pid} on this machine (--pid must be the proctord serving {base})");
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        let base = base.trim_end_matches('/').to_owned();
        wait_until_ready(&http, &base, Duration::from_secs(10)).await?;
        Ok(Self {
            child: None,
            base,
            pid,
            ready_after: Duration::ZERO,
            http,
            _data_dir: None,
        })
    }

    /// The HTTP client (connection pool) for this server.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `ws://…/graphql/ws`.
    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.base.replacen("http", "ws", 1))
    }

    /// Runs a GraphQL operation; errors in the answer are errors here.
    pub async fn graphql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response: Value = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?
            .json()
            .await?;
        if let Some(errors) = response.get("errors").filter(|e| !e.is_null()) {
            bail!("GraphQL error: {errors}");
        }
        Ok(response["data"].clone())
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.pid)
    }

    /// CPU seconds used so far (user + system).
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid)
    }

    /// Stops the server if this bench started it.
    pub async fn stop(mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill().await;
        }
    }
}

/// Polls `/readyz` until it answers 200.
async fn wait_until_ready(
    http: &reqwest::Client,
    base: &str,
    patience: Duration,
) -> anyhow::Result<()> {
    let ready = format!("{base}/readyz");
    let started = Instant::now();
    loop {
        if let Ok(response) = http.get(&ready).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > patience {
            bail!("proctord at {base} was not ready within {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A new database on the Postgres server of `url`, so every server starts empty.
async fn fresh_database(url: &str) -> anyhow::Result<String> {
    use sea_orm::ConnectionTrait;
    let name = format!("proctor_bench_{}", std::process::id()) + &format!("_{}", rand_suffix());
    let admin = sea_orm::Database::connect(url).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let mut parsed = url::Url::parse(url)?;
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_000)
        .unwrap_or_default()
}

/// The process listening on TCP `port` (IPv4 or IPv6), from `/proc`: the socket's inode in
/// `/proc/net/tcp*`, then the process holding a descriptor to it.
pub fn listening_pid(port: u16) -> Option<u32> {
    const LISTEN: &str = "0A";
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|row| {
                    let fields: Vec<&str> = row.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit_once(':')?.1;
                    (u16::from_str_radix(local_port, 16).ok()? == port && *fields.get(3)? == LISTEN)
                        .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| {
                    inodes
                        .iter()
                        .any(|inode| target.as_os_str() == inode.as_str())
                })
        })
}

/// Resident memory (`VmRSS`) of `pid` in MiB (0 when unreadable).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// utime + stime of `pid` in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
    let ticks = 100.0;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / ticks)
        })
        .unwrap_or_default()
}
