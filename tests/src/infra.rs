//! Real infrastructure for tests: where Postgres and Redis are, and how to get more of them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Names the environment variable that points the tests at a Postgres server (a URL whose
/// user may create databases, e.g. `postgres://postgres@127.0.0.1:55432/postgres`).
pub const DATABASE_URL_VAR: &str = "PROCTOR_TEST_DATABASE_URL";
/// Names the environment variable that points the tests at a Redis server.
pub const REDIS_URL_VAR: &str = "PROCTOR_TEST_REDIS_URL";

/// Whether this is a CI run, where missing infrastructure is an error, never a skip.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// The value of `var`, or `None` with a notice when it is unset outside CI.
///
/// # Panics
/// Under `CI=true` when `var` is unset: CI must not pass by skipping.
pub fn required_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if is_ci() => panic!(
            "CI=true but {var} is not set: this test needs a real {what}. \
             Run the suite with ./tests/run.sh, which starts one."
        ),
        _ => {
            eprintln!("notice: {var} is not set, so the {what} part of this test is skipped");
            None
        }
    }
}

/// The Postgres server for tests, if configured (see [`required_env`]).
pub fn postgres_url() -> Option<String> {
    required_env(DATABASE_URL_VAR, "Postgres")
}

/// The Redis server for tests, if configured (see [`required_env`]).
pub fn redis_url() -> Option<String> {
    required_env(REDIS_URL_VAR, "Redis")
}

/// Routes server logs into the test output once per test binary; `RUST_LOG` picks the level
/// (default `warn`).
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// An HTTP client for tests. reqwest needs rustls' process-wide provider installed first (see
/// `proctor_server::install_crypto_provider`), so tests build clients only through this.
pub fn http_client() -> reqwest::Client {
    proctor_server::install_crypto_provider();
    reqwest::Client::new()
}

/// Posts a GraphQL operation to the server at `base` (`http://host:port`) and returns the whole
/// JSON response.
///
/// # Panics
/// When the server does not answer with JSON.
pub async fn post_graphql(
    base: &str,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    post_graphql_with(base, &[], query, variables).await
}

/// [`post_graphql`] with extra request headers.
///
/// # Panics
/// When the server does not answer with JSON.
pub async fn post_graphql_with(
    base: &str,
    headers: &[(&str, &str)],
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    let mut request = http_client()
        .post(format!("{base}/graphql"))
        .json(&serde_json::json!({ "query": query, "variables": variables }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("POST /graphql")
        .json()
        .await
        .expect("GraphQL answers JSON")
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A unique suffix for names shared across concurrently running tests (databases, Redis
/// channel prefixes): process id, time and a counter.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Path of a binary built from this workspace (`proctord`, `proctor`), next to the test
/// executable's directory. `cargo nextest run --workspace` builds both, because their
/// packages have integration tests of their own.
///
/// # Panics
/// When the binary has not been built.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} does not exist; build it with `cargo build --bin {name}` \
         (a workspace-wide `cargo nextest run --workspace` does this)",
        path.display()
    );
    path
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `redis-server` child process of the test, on its own port, that the test can stop and
/// start again on the same port (to see clients lose and regain it).
pub struct RedisServer {
    port: u16,
    directory: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, or returns `None` (outside CI) when `redis-server` is not installed.
    ///
    /// # Panics
    /// Under `CI=true` when `redis-server` is missing, or when it does not come up.
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                !is_ci(),
                "CI=true but redis-server is not installed; ./tests/run.sh installs it"
            );
            eprintln!("notice: redis-server is not installed, so this test is skipped");
            return None;
        }
        let mut server = Self {
            port: free_port(),
            directory: tempfile::tempdir().expect("temporary directory for redis"),
            child: None,
        };
        server.resume();
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(
            wait_until(Duration::from_secs(5), || TcpStream::connect(address)
                .is_err()),
            "redis on port {} did not go away",
            self.port
        );
    }

    /// Starts the server again on the same port.
    ///
    /// # Panics
    /// When it does not accept connections within 10 s.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.directory.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(address)
                .is_ok()),
            "redis-server did not start on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
