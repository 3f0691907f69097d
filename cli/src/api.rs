//! The server calls: one `graphql_client` operation per `cli/graphql/*.graphql` operation,
//! compiled against the committed `schema/schema.graphql`, sent over HTTP; subscriptions over
//! graphql-transport-ws.

use futures::{SinkExt, StreamExt};
use graphql_client::{GraphQLQuery, QueryBody};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::config::Config;
use crate::error::CliError;

/// The `DateTime` scalar, as the server writes it (RFC 3339).
pub type DateTime = String;

/// The `ServerInfo` operation of `cli/graphql/server_info.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/server_info.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct ServerInfo;

/// The `Whoami` operation of `cli/graphql/auth.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/auth.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct Whoami;

/// The `ListProcs` operation of `cli/graphql/procs.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/procs.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct ListProcs;

/// The `DescribeProc` operation of `cli/graphql/procs.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/procs.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct DescribeProc;

/// The `ExportProc` operation of `cli/graphql/procs.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/procs.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct ExportProc;

/// The `ApplyProcFile` operation of `cli/graphql/procs.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/procs.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct ApplyProcFile;

/// The `Execute` operation of `cli/graphql/executions.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/executions.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct Execute;

/// The `GetExecution` operation of `cli/graphql/executions.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/executions.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct GetExecution;

/// The `ExecutionLogPage` operation of `cli/graphql/executions.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/executions.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct ExecutionLogPage;

/// The `ListExecutions` operation of `cli/graphql/executions.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/executions.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct ListExecutions;

/// The `CancelExecution` operation of `cli/graphql/executions.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/executions.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct CancelExecution;

/// The `FollowLogs` operation of `cli/graphql/executions.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/executions.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct FollowLogs;

/// The `CreateSchedule` operation of `cli/graphql/schedules.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/schedules.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct CreateSchedule;

/// The `UpdateSchedule` operation of `cli/graphql/schedules.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/schedules.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct UpdateSchedule;

/// The `SetScheduleEnabled` operation of `cli/graphql/schedules.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/schedules.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct SetScheduleEnabled;

/// The `DeleteSchedule` operation of `cli/graphql/schedules.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/schedules.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct DeleteSchedule;

/// The `ListSchedules` operation of `cli/graphql/schedules.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/schedules.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct ListSchedules;

/// The `GetSchedule` operation of `cli/graphql/schedules.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/schedules.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct GetSchedule;

/// The `ScheduleRuns` operation of `cli/graphql/schedules.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/schedules.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct ScheduleRuns;

/// The `SetSecret` operation of `cli/graphql/secrets.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/secrets.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct SetSecret;

/// The `ListSecrets` operation of `cli/graphql/secrets.graphql`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema/schema.graphql",
    query_path = "graphql/secrets.graphql",
    response_derives = "Debug, Clone, Serialize",
    variables_derives = "Debug"
)]
pub struct ListSecrets;

/// How a subscription ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// The server completed it.
    Completed,
    /// The connection dropped; the reason.
    Dropped(String),
}

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
            .build()
            .map_err(|e| CliError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, config })
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
    /// or the connection drops. A first connection that fails is `Unreachable`.
    pub async fn subscribe<Q: GraphQLQuery>(
        &self,
        variables: Q::Variables,
        mut on_event: impl FnMut(Q::ResponseData) -> Result<(), CliError>,
    ) -> Result<StreamEnd, CliError>
    where
        Q::Variables: Serialize,
        Q::ResponseData: DeserializeOwned,
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
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| CliError::Unreachable(format!("cannot open {url}: {e}")))?;
        let mut payload = serde_json::Map::new();
        if let Some(email) = &self.config.email {
            payload.insert("Email-Id".into(), json!(email));
        }
        if let Some(token) = &self.config.access_token {
            payload.insert("Access-Token".into(), json!(token));
        }
        let body: QueryBody<Q::Variables> = Q::build_query(variables);
        let messages = [
            json!({ "type": "connection_init", "payload": payload }),
            json!({ "id": "1", "type": "subscribe", "payload": body }),
        ];
        for message in messages {
            if let Err(error) = socket.send(Message::Text(message.to_string().into())).await {
                return Ok(StreamEnd::Dropped(error.to_string()));
            }
        }
        while let Some(message) = socket.next().await {
            let text = match message {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(frame)) => {
                    let reason = frame
                        .map(|f| format!("{} {}", f.code, f.reason))
                        .unwrap_or_default();
                    // Closes with 44xx are the server refusing the connection (credentials).
                    if reason.starts_with("44") {
                        return Err(server_error(
                            reason,
                            Some(json!({ "code": "UNAUTHENTICATED" })),
                        ));
                    }
                    return Ok(StreamEnd::Dropped(format!("closed {reason}")));
                }
                Ok(_) => continue,
                Err(error) => return Ok(StreamEnd::Dropped(error.to_string())),
            };
            let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            match message["type"].as_str() {
                Some("ping") => {
                    let _ = socket
                        .send(Message::Text(json!({ "type": "pong" }).to_string().into()))
                        .await;
                }
                Some("next") => {
                    let response: graphql_client::Response<Q::ResponseData> =
                        serde_json::from_value(message["payload"].clone()).map_err(|e| {
                            CliError::Server {
                                code: None,
                                message: format!("unreadable event: {e}"),
                                field: None,
                            }
                        })?;
                    if let Some(error) =
                        response.errors.and_then(|errors| errors.into_iter().next())
                    {
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
                Some("error") => {
                    let first = &message["payload"][0];
                    return Err(server_error(
                        first["message"]
                            .as_str()
                            .unwrap_or("subscription refused")
                            .to_owned(),
                        Some(first["extensions"].clone()),
                    ));
                }
                Some("complete") => {
                    let _ = socket.close(None).await;
                    return Ok(StreamEnd::Completed);
                }
                _ => {}
            }
        }
        Ok(StreamEnd::Dropped("the connection ended".into()))
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
