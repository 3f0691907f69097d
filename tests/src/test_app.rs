//! The real server, started in-process for one test.

use std::net::SocketAddr;

use proctor_schema::auth::tokens::{self, TokenRequest};
use proctor_schema::auth::{Caller, RequestAuth};
use proctor_schema::ports::authenticator::Credentials;
use proctor_schema::{AppState, ProctorSchema};
use proctor_server::{Server, Settings};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::infra::{init_tracing, postgres_url, redis_url, unique_suffix};
use crate::test_database::TestDatabase;

/// Which database a [`TestApp`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Postgres when `PROCTOR_TEST_DATABASE_URL` is set, SQLite otherwise (a failure under CI).
    Default,
    /// A SQLite file, whatever the environment says.
    Sqlite,
    /// Postgres; the test is skipped outside CI when none is configured.
    Postgres,
}

/// Which event bus a [`TestApp`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    /// Redis when `PROCTOR_TEST_REDIS_URL` is set, in-memory otherwise (a failure under CI).
    Default,
    /// The in-memory bus.
    Memory,
    /// Redis; the test is skipped outside CI when none is configured.
    Redis,
}

/// A whole storage-and-events stack, as the issues ask behaviour to hold on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// SQLite and the in-memory event bus (the embedded default).
    Embedded,
    /// Postgres and Redis (production); skipped outside CI when either is not configured.
    Production,
}

/// Chooses how a [`TestApp`] is assembled.
pub struct TestAppBuilder {
    backend: Backend,
    bus: Bus,
    args: Vec<String>,
    adjust: Option<SettingsChange>,
}

/// A change to checked settings that no flag can express (e.g. an unbuilt default playground).
type SettingsChange = Box<dyn FnOnce(&mut Settings) + Send>;

impl TestAppBuilder {
    /// Use this database backend.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Use this storage-and-events stack.
    pub fn stack(self, stack: Stack) -> Self {
        match stack {
            Stack::Embedded => self.backend(Backend::Sqlite).bus(Bus::Memory),
            Stack::Production => self.backend(Backend::Postgres).bus(Bus::Redis),
        }
    }

    /// Use this event bus.
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = bus;
        self
    }

    /// Configure the server as an operator would, with `--flag=value` arguments (parsed by
    /// the same code as `proctord`'s; a flag given here replaces the harness's own).
    pub fn with_args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args
            .extend(args.iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Changes the checked settings before the server starts, for what no flag can express;
    /// prefer [`TestAppBuilder::with_args`].
    pub fn with_settings(mut self, adjust: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        self.adjust = Some(Box::new(adjust));
        self
    }

    /// Starts the server, or returns `None` when the test must be skipped (only outside CI,
    /// when an explicitly requested Postgres or Redis is not configured).
    pub async fn try_spawn(self) -> Option<TestApp> {
        init_tracing();
        let database = match self.backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Default => match postgres_url() {
                Some(url) => TestDatabase::postgres(&url).await,
                None => TestDatabase::sqlite(),
            },
            Backend::Postgres => TestDatabase::postgres(&postgres_url()?).await,
        };
        let redis = match self.bus {
            Bus::Memory => None,
            Bus::Default => redis_url(),
            Bus::Redis => Some(redis_url()?),
        };
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let mut args = vec![
            format!("--data-dir={}", data_dir.path().display()),
            "--port=0".to_owned(),
            format!("--database-url={}", database.url()),
            "--auto-migrate".to_owned(),
            // Tests start from an empty catalogue; the examples have a test of their own.
            "--register-examples=false".to_owned(),
            // The tests' notification sinks listen on loopback, which notifications may reach
            // only when allowed (the SSRF tests take this away again).
            "--notify-allowed-hosts=127.0.0.1".to_owned(),
        ];
        if let Some(url) = redis {
            args.push(format!("--redis-url={url}"));
            // Tests share one Redis; a prefix per app keeps their events apart.
            args.push(format!(
                "--redis-channel-prefix=proctor_test_{}",
                unique_suffix()
            ));
        }
        let flag = |arg: &str| arg.split('=').next().unwrap_or_default().to_owned();
        let overridden: Vec<String> = self.args.iter().map(|arg| flag(arg)).collect();
        args.retain(|arg| !overridden.contains(&flag(arg)));
        args.extend(self.args);
        let mut settings = Settings::from_args(&args)
            .unwrap_or_else(|e| panic!("test settings {args:?} are refused: {e}"));
        if let Some(adjust) = self.adjust {
            adjust(&mut settings);
        }

        let server = Server::build(settings.clone())
            .await
            .unwrap_or_else(|e| panic!("test server failed to start: {e}"));
        let address = server.local_addr();
        let state = server.state().clone();
        // Redis pub/sub drops what is published before the subscription is in place: a test
        // starts once the bus can deliver (as a load balancer would wait for /readyz).
        let ready_by = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state.event_bus().check().await.is_err() && std::time::Instant::now() < ready_by {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let schema = server.schema().clone();
        let (shutdown, shutdown_received) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            // A dropped sender (the TestApp went away) also means stop.
            let _ = shutdown_received.await;
        }));
        Some(TestApp {
            address,
            settings,
            state,
            schema,
            http: crate::infra::http_client(),
            shutdown: Some(shutdown),
            task: Some(task),
            _data_dir: data_dir,
            _database: database,
        })
    }

    /// Starts the server; see [`TestAppBuilder::try_spawn`].
    ///
    /// # Panics
    /// When the requested infrastructure is missing (use `try_spawn` to skip instead).
    pub async fn spawn(self) -> TestApp {
        self.try_spawn()
            .await
            .expect("the infrastructure this test needs is not configured")
    }
}

/// A running in-process server on `127.0.0.1:<ephemeral port>` with its own database.
pub struct TestApp {
    /// Where it listens.
    pub address: SocketAddr,
    /// The settings it was started with.
    pub settings: Settings,
    /// The application state (database, keyring, …) for direct checks.
    pub state: AppState,
    /// The schema, for in-process execution without HTTP.
    pub schema: ProctorSchema,
    /// A plain HTTP client.
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _data_dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl TestApp {
    /// A builder with the default backend and bus (see [`Backend::Default`], [`Bus::Default`]).
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            backend: Backend::Default,
            bus: Bus::Default,
            args: Vec::new(),
            adjust: None,
        }
    }

    /// Starts a server on `stack`, or `None` when the test must be skipped (see
    /// [`TestAppBuilder::try_spawn`]).
    pub async fn on(stack: Stack) -> Option<Self> {
        Self::builder().stack(stack).try_spawn().await
    }

    /// Starts a server with the default backend and bus.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `ws://127.0.0.1:<port>/graphql/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql/ws", self.address)
    }

    /// Posts a GraphQL operation and returns the whole JSON response (`data` and `errors`).
    ///
    /// # Panics
    /// When the server does not answer with JSON.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        crate::infra::post_graphql(&self.url(""), query, variables).await
    }

    /// Posts a GraphQL operation with `Authorization: Bearer <token>`.
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        self.graphql_with(
            &[("Authorization", &format!("Bearer {token}"))],
            query,
            variables,
        )
        .await
    }

    /// Posts a GraphQL operation with the given extra headers.
    pub async fn graphql_with(
        &self,
        headers: &[(&str, &str)],
        query: &str,
        variables: Value,
    ) -> Value {
        crate::infra::post_graphql_with(&self.url(""), headers, query, variables).await
    }

    /// The body of `GET path` as text (e.g. `/metrics`).
    ///
    /// # Panics
    /// When the request fails.
    pub async fn get_text(&self, path: &str) -> String {
        let response = self.http.get(self.url(path)).send().await;
        let response = response.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        response.text().await.expect("a text body")
    }

    /// The body of `GET path` as JSON (e.g. `/readyz`).
    ///
    /// # Panics
    /// When the request fails or the body is not JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_text(path).await).expect("a JSON body")
    }

    /// Runs a GraphQL operation in-process (no HTTP) with `credentials` and returns the
    /// response as JSON.
    pub async fn execute(&self, credentials: Credentials, query: &str, variables: Value) -> Value {
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables))
            .data(RequestAuth::new(credentials));
        serde_json::to_value(self.schema.execute(request).await).expect("responses serialise")
    }

    /// Issues an API token directly through the domain service (as `proctord users add`
    /// would), for tests that need users.
    pub async fn issue_token(&self, email: &str, groups: &[&str], admin: bool) -> String {
        tokens::issue_token(
            self.state.db(),
            &Caller::system("test"),
            self.state.admin_groups(),
            TokenRequest {
                email: email.to_owned(),
                groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
                admin: Some(admin),
            },
        )
        .await
        .expect("issue a token")
    }

    /// Stops the server gracefully and returns how serving ended.
    ///
    /// # Panics
    /// When the server task panicked.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let task = self
            .task
            .take()
            .expect("the server task is present until stopped");
        task.await.expect("the server task does not panic")
    }
}
