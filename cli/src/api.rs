//! The server calls: one `graphql_client` operation per `cli/graphql/*.graphql` operation,
//! compiled against the committed `schema/schema.graphql`, sent over HTTP; subscriptions over
//! graphql-transport-ws with graphql-ws-client (which speaks the protocol: init and ack, ids,
//! pings, complete) on a tokio-tungstenite socket.

use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use graphql_client::GraphQLQuery;
use graphql_ws_client::graphql::StreamingOperation;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::Config;
use crate::error::CliError;

/// The `DateTime` scalar, as the server writes it (RFC 3339).
pub type DateTime = String;

/// The `JSON` scalar (audit details).
#[allow(
    clippy::upper_case_acronyms,
    reason = "graphql_client looks the scalar's Rust type up by the scalar's SDL name, JSON"
)]
pub type JSON = Value;

/// Declares one operation type per `(Name, "graphql/file.graphql")`: `graphql_client` generates
/// its variables and response types (and a module named after it in snake case) from the
/// operation of that name in the file, checked against the committed SDL.
macro_rules! operations {
    ($($name:ident => $path:tt),* $(,)?) => {$(
        #[doc = concat!("The `", stringify!($name), "` operation of `cli/", $path, "`.")]
        #[derive(GraphQLQuery)]
        #[graphql(
            schema_path = "../schema/schema.graphql",
            query_path = $path,
            response_derives = "Debug, Clone, Serialize",
            variables_derives = "Debug"
        )]
        pub struct $name;
    )*};
}

operations! {
    ServerInfo => "graphql/server_info.graphql",
    Whoami => "graphql/auth.graphql",
    CreateToken => "graphql/auth.graphql",
    RevokeToken => "graphql/auth.graphql",
    ListUsers => "graphql/auth.graphql",
    AuditEvents => "graphql/audit.graphql",
    ListProcs => "graphql/procs.graphql",
    DescribeProc => "graphql/procs.graphql",
    ExportProc => "graphql/procs.graphql",
    ApplyProcFile => "graphql/procs.graphql",
    DeleteProc => "graphql/procs.graphql",
    ProcHistory => "graphql/procs.graphql",
    RollbackProc => "graphql/procs.graphql",
    Execute => "graphql/executions.graphql",
    GetExecution => "graphql/executions.graphql",
    ExecutionLogPage => "graphql/executions.graphql",
    ListExecutions => "graphql/executions.graphql",
    CancelExecution => "graphql/executions.graphql",
    FollowLogs => "graphql/executions.graphql",
    ValidateArgs => "graphql/executions.graphql",
    FollowStatus => "graphql/executions.graphql",
    CreateSchedule => "graphql/schedules.graphql",
    UpdateSchedule => "graphql/schedules.graphql",
    SetScheduleEnabled => "graphql/schedules.graphql",
    DeleteSchedule => "graphql/schedules.graphql",
    ListSchedules => "graphql/schedules.graphql",
    GetSchedule => "graphql/schedules.graphql",
    ScheduleRuns => "graphql/schedules.graphql",
    TriggerSchedule => "graphql/schedules.graphql",
    CronPreview => "graphql/schedules.graphql",
    SetSecret => "graphql/secrets.graphql",
    ListSecrets => "graphql/secrets.graphql",
    DeleteSecret => "graphql/secrets.graphql",
}

/// How a subscription ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// The server completed it.
    Completed,
    /// The connection dropped; the reason.
    Dropped(String),
}

/// How often a quiet subscription pings the server.
const KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);
/// Unanswered pings after which the connection counts as dropped (and is resumed).
const KEEP_ALIVE_RETRIES: usize = 2;

/// A connection to proctord.
pub struct Api {
    http: reqwest::Client,
    config: Config,
}

impl Api {
    /// A client for `config`.
    pub fn new(config: Config) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("proctor/", env!("CARGO_PKG_VERSION")))
            // Credentials travel in custom headers, which reqwest keeps on a redirect to
            // another host: redirects are not followed (a 3xx is reported below).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, config })
    }

    /// The console's page of execution `id`.
    pub fn console_url(&self, id: &str) -> String {
        format!("{}/#/executions/{id}", self.config.base_url)
    }

    fn endpoint(&self) -> String {
        format!("{}/graphql", self.config.base_url)
    }

    /// Runs a query or mutation.
    pub async fn run<Q: GraphQLQuery>(
        &self,
        variables: Q::Variables,
    ) -> Result<Q::ResponseData, CliError>
    where
        Q::Variables: Serialize,
        Q::ResponseData: DeserializeOwned,
    {
        let endpoint = self.endpoint();
        let mut request = self.http.post(&endpoint).json(&Q::build_query(variables));
        if let Some(email) = &self.config.email {
            request = request.header("Email-Id", email);
        }
        if let Some(token) = &self.config.access_token {
            request = request.header("Access-Token", token);
        }
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                CliError::Unreachable(format!(
                    "proctord at {endpoint} did not answer within {:?} (CONNECTION_TIMEOUT_SECS)",
                    self.config.timeout
                ))
            } else {
                CliError::Unreachable(format!(
                    "cannot reach proctord at {endpoint}: {}",
                    cause(&error)
                ))
            }
        })?;
        let status = response.status();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("elsewhere");
            return Err(CliError::Server {
                code: None,
                message: format!(
                    "{endpoint} redirects to {to}; the CLI does not follow redirects (they \
                     could carry the token to another host): use the final address as the \
                     server"
                ),
                field: None,
            });
        }
        let text = response.text().await.map_err(|e| {
            CliError::Unreachable(format!("proctord at {endpoint} broke off its answer: {e}"))
        })?;
        let body: graphql_client::Response<Q::ResponseData> =
            serde_json::from_str(&text).map_err(|_| CliError::Server {
                code: None,
                message: format!(
                    "{endpoint} answered HTTP {status} without GraphQL; is PROCTOR_HOST a proctord?"
                ),
                field: None,
            })?;
        if let Some(error) = body.errors.and_then(|errors| errors.into_iter().next()) {
            return Err(server_error(
                error.message,
                error
                    .extensions
                    .map(|e| Value::Object(e.into_iter().collect())),
            ));
        }
        body.data.ok_or_else(|| CliError::Server {
            code: None,
            message: "the server answered without data".into(),
            field: None,
        })
    }

    /// Runs subscription `Q`, handing each event to `on_event`, until the server completes it
    /// or the connection drops. A first connection that fails is `Unreachable`; a connection the
    /// server closes with a 44xx code (credentials refused or revoked) is `UNAUTHENTICATED`.
    pub async fn subscribe<Q>(
        &self,
        variables: Q::Variables,
        mut on_event: impl FnMut(Q::ResponseData) -> Result<(), CliError>,
    ) -> Result<StreamEnd, CliError>
    where
        Q: GraphQLQuery + Send + Unpin + 'static,
        Q::Variables: Serialize + Send + Unpin,
        Q::ResponseData: DeserializeOwned + Send + Unpin,
    {
        let url = self.config.base_url.replacen("http", "ws", 1) + "/graphql/ws";
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| CliError::Config(format!("{url} is not a websocket URL: {e}")))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (socket, _) = tokio::time::timeout(
            self.config.timeout,
            tokio_tungstenite::connect_async(request),
        )
        .await
        .map_err(|_| {
            CliError::Unreachable(format!(
                "{url} did not answer within {:?}",
                self.config.timeout
            ))
        })?
        .map_err(|e| CliError::Unreachable(format!("cannot open {url}: {e}")))?;
        let mut payload = serde_json::Map::new();
        if let Some(email) = &self.config.email {
            payload.insert("Email-Id".into(), json!(email));
        }
        if let Some(token) = &self.config.access_token {
            payload.insert("Access-Token".into(), json!(token));
        }
        let ending = Arc::new(Mutex::new(None));
        let connection = Socket {
            inner: socket,
            ending: Arc::clone(&ending),
        };
        // Pings find a half-open connection (a vanished host) instead of waiting forever.
        let builder = graphql_ws_client::Client::build(connection)
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_retries(KEEP_ALIVE_RETRIES)
            .payload(payload)
            .map_err(|e| CliError::Config(format!("cannot send the credentials: {e}")))?;
        let mut events = match builder
            .subscribe(StreamingOperation::<Q>::new(variables))
            .await
        {
            Ok(events) => events,
            Err(graphql_ws_client::Error::Close(code, reason)) => {
                return closed_by_server(code, &reason);
            }
            Err(error) => return Ok(StreamEnd::Dropped(error.to_string())),
        };
        while let Some(event) = events.next().await {
            let response = match event {
                Ok(response) => response,
                Err(error) => return Ok(StreamEnd::Dropped(error.to_string())),
            };
            if let Some(error) = response.errors.and_then(|errors| errors.into_iter().next()) {
                return Err(server_error(
                    error.message,
                    error
                        .extensions
                        .map(|e| Value::Object(e.into_iter().collect())),
                ));
            }
            if let Some(data) = response.data {
                on_event(data)?;
            }
        }
        let ended = ending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match ended {
            Some(Ending::Completed) => Ok(StreamEnd::Completed),
            Some(Ending::Closed(code, reason)) => closed_by_server(code, &reason),
            Some(Ending::Broken(reason)) => Ok(StreamEnd::Dropped(reason)),
            // The client library stopped on its own (e.g. an event it could not read).
            None => Ok(StreamEnd::Dropped(
                "the subscription ended without completing".to_owned(),
            )),
        }
    }
}

/// How the connection under a subscription ended, as its socket saw it.
enum Ending {
    /// The server sent `complete`: the subscription is over.
    Completed,
    /// The server sent a close frame.
    Closed(u16, String),
    /// The connection broke or ended without one.
    Broken(String),
}

/// A close by the server: 44xx codes refuse the credentials, anything else dropped the stream.
fn closed_by_server(code: u16, reason: &str) -> Result<StreamEnd, CliError> {
    if (4400..4500).contains(&code) {
        return Err(server_error(
            format!("{code} {reason}"),
            Some(json!({ "code": "UNAUTHENTICATED" })),
        ));
    }
    Ok(StreamEnd::Dropped(format!("closed {code} {reason}")))
}

/// tokio-tungstenite's socket as graphql-ws-client's transport (the crate's own adapters stop
/// at an older tungstenite), noting how the connection ended.
struct Socket {
    inner: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    ending: Arc<Mutex<Option<Ending>>>,
}

impl Socket {
    fn end(&self, ending: Ending) {
        let mut slot = self
            .ending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(ending);
    }
}

impl graphql_ws_client::Connection for Socket {
    async fn receive(&mut self) -> Option<graphql_ws_client::Message> {
        use graphql_ws_client::Message as Ws;
        loop {
            let frame = match self.inner.next().await {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => {
                    self.end(Ending::Broken(error.to_string()));
                    return None;
                }
                None => {
                    self.end(Ending::Broken("the connection ended".to_owned()));
                    return None;
                }
            };
            return Some(match frame {
                Message::Text(text) => {
                    let kind = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|message| message["type"].as_str().map(str::to_owned));
                    if kind.as_deref() == Some("complete") {
                        self.end(Ending::Completed);
                    }
                    Ws::Text(text.to_string())
                }
                Message::Close(frame) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |frame| {
                        (u16::from(frame.code), frame.reason.to_string())
                    });
                    self.end(Ending::Closed(code, reason.clone()));
                    Ws::Close {
                        code: Some(code),
                        reason: Some(reason),
                    }
                }
                Message::Ping(_) => Ws::Ping,
                Message::Pong(_) => Ws::Pong,
                Message::Binary(_) | Message::Frame(_) => continue,
            });
        }
    }

    async fn send(
        &mut self,
        message: graphql_ws_client::Message,
    ) -> Result<(), graphql_ws_client::Error> {
        use graphql_ws_client::Message as Ws;
        let frame = match message {
            Ws::Text(text) => Message::Text(text.into()),
            Ws::Close { code, reason } => Message::Close(Some(CloseFrame {
                code: code.unwrap_or(1000).into(),
                reason: reason.unwrap_or_default().into(),
            })),
            Ws::Ping => Message::Ping(Vec::new().into()),
            Ws::Pong => Message::Pong(Vec::new().into()),
        };
        let sent = self.inner.send(frame).await;
        sent.map_err(|error| {
            self.end(Ending::Broken(error.to_string()));
            graphql_ws_client::Error::Send(error.to_string())
        })
    }
}

/// A GraphQL error as a [`CliError`].
fn server_error(message: String, extensions: Option<Value>) -> CliError {
    let extensions = extensions.unwrap_or(Value::Null);
    CliError::Server {
        code: extensions["code"].as_str().map(str::to_owned),
        message,
        field: extensions["field"].as_str().map(str::to_owned),
    }
}

/// The innermost cause of a transport error (reqwest's own text is generic).
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
