//! A replay of the Go `proctor` CLI v2.0.8 (gopaytech/proctor `internal/app/cli`), for the REST
//! shim's tests: the same requests (method, path, the `Email-Id`, `Access-Token` and
//! `Client-Version` headers, `Content-Type` on POSTs, bodies with the Go structs' field order,
//! the log websocket), the same mapping of answers to error messages (`buildHTTPError`) and the
//! lines its commands print (`proctor-v2-spec.md` §6), without colours (stdout is not a TTY).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The version the v2.0.8 CLI announces.
pub const CLIENT_VERSION: &str = "v2.0.8";

/// How long a test waits for a log stream to end.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// `fmt.Sprintf("%-40s %-100s", left, right)`, the CLI's two-column line.
pub fn line(left: &str, right: &str) -> String {
    format!("{left:<40} {right:<100}")
}

/// What a log websocket delivered.
#[derive(Debug)]
pub struct LogStream {
    /// The text messages, in order.
    pub messages: Vec<String>,
    /// The close frame (code and reason), if the server sent one.
    pub close: Option<CloseFrame>,
}

/// The v2.0.8 CLI's client, configured like `~/.proctor/proctor.yaml`.
pub struct LegacyCli {
    host: String,
    email: String,
    token: String,
    http: reqwest::Client,
}

impl LegacyCli {
    /// A client for the server at `address` with `EMAIL_ID` and `ACCESS_TOKEN`.
    pub fn new(address: SocketAddr, email: &str, token: &str) -> Self {
        Self {
            host: address.to_string(),
            email: email.to_owned(),
            token: token.to_owned(),
            http: crate::http_client(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("http://{}{path}", self.host))
            .header("User-Agent", "Go-http-client/1.1")
            .header("Email-Id", &self.email)
            .header("Access-Token", &self.token)
            .header("Client-Version", CLIENT_VERSION)
    }

    fn post(&self, path: &str, body: String) -> RequestBuilder {
        self.request(Method::POST, path)
            .header("Content-Type", "application/json")
            .body(body)
    }

    /// `buildHTTPError`: the message the CLI shows for an unexpected status.
    fn http_error(&self, status: StatusCode, body: String) -> String {
        match status.as_u16() {
            401 if self.email.is_empty() || self.token.is_empty() => {
                "Unauthorized Access!!!\nEMAIL_ID or ACCESS_TOKEN is not present in proctor config file.".to_owned()
            }
            401 => "Unauthorized Access!!!\nPlease check the EMAIL_ID and ACCESS_TOKEN validity in proctor config file.".to_owned(),
            400 | 500 => body,
            204 => "No scheduled jobs found".to_owned(),
            404 => "Job not found".to_owned(),
            403 => "Access Denied : You are Not Authorized to Perform this action.".to_owned(),
            code => format!(
                "Server Error!!!\nStatus Code: {code}, {}",
                status.canonical_reason().unwrap_or("")
            ),
        }
    }

    /// Sends `request` and expects `wanted`; the body.
    async fn send(&self, request: RequestBuilder, wanted: StatusCode) -> Result<String, String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("Network Error!!!\n{e}"))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        if status != wanted {
            return Err(self.http_error(status, body));
        }
        Ok(body)
    }

    /// Sends `request`, expects `wanted`, and decodes the JSON body.
    async fn call(&self, request: RequestBuilder, wanted: StatusCode) -> Result<Value, String> {
        let body = self.send(request, wanted).await?;
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// `ListProcs`: `GET /metadata`.
    pub async fn list_procs(&self) -> Result<Vec<Value>, String> {
        let procs = self
            .call(self.request(Method::GET, "/metadata"), StatusCode::OK)
            .await?;
        Ok(procs.as_array().cloned().unwrap_or_default())
    }

    /// `ExecuteProc`: `POST /execution` with `{"name","args"}`.
    pub async fn execute_proc(
        &self,
        name: &str,
        args: &BTreeMap<String, String>,
    ) -> Result<Value, String> {
        let body = format!(
            r#"{{"name":{},"args":{}}}"#,
            Value::from(name),
            go_map(args)
        );
        self.call(self.post("/execution", body), StatusCode::CREATED)
            .await
    }

    /// `GetExecutionContextStatus`: `GET /execution/<id>/status`.
    pub async fn execution_status(&self, id: u64) -> Result<Value, String> {
        self.call(
            self.request(Method::GET, &format!("/execution/{id}/status")),
            StatusCode::OK,
        )
        .await
    }

    /// `StreamProcLogs`: the websocket `ws://H/execution/logs?context_id=<id>` with the three
    /// headers; every message until the server closes.
    pub async fn stream_logs(&self, id: u64) -> Result<LogStream, String> {
        self.stream_logs_at(&format!("/execution/logs?context_id={id}"))
            .await
    }

    /// The log websocket at `path_and_query` (tests use it for malformed ids).
    pub async fn stream_logs_at(&self, path_and_query: &str) -> Result<LogStream, String> {
        let mut request = format!("ws://{}{path_and_query}", self.host)
            .into_client_request()
            .map_err(|e| e.to_string())?;
        for (name, value) in [
            ("Access-Token", &self.token),
            ("Email-Id", &self.email),
            ("Client-Version", &CLIENT_VERSION.to_owned()),
        ] {
            request.headers_mut().insert(
                name,
                HeaderValue::from_str(value).map_err(|e| e.to_string())?,
            );
        }
        let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
            Ok(connected) => connected,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status =
                    StatusCode::from_u16(response.status().as_u16()).map_err(|e| e.to_string())?;
                if status == StatusCode::UNAUTHORIZED {
                    return Err(self.http_error(status, String::new()));
                }
                return Err(format!("websocket: bad handshake ({status})"));
            }
            Err(other) => return Err(other.to_string()),
        };
        let mut messages = Vec::new();
        let close = tokio::time::timeout(STREAM_TIMEOUT, async {
            while let Some(message) = socket.next().await {
                match message {
                    Ok(Message::Text(text)) => messages.push(text.to_string()),
                    Ok(Message::Close(frame)) => return frame,
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            None
        })
        .await
        .map_err(|_| format!("the log stream did not end within {STREAM_TIMEOUT:?}"))?;
        Ok(LogStream { messages, close })
    }

    /// `ScheduleJob`: `POST /schedule`; the new schedule's id.
    pub async fn schedule(
        &self,
        name: &str,
        tags: &str,
        cron: &str,
        notification_emails: &str,
        group: &str,
        args: &BTreeMap<String, String>,
    ) -> Result<u64, String> {
        let body = format!(
            r#"{{"id":0,"jobName":{},"args":{},"notificationEmails":{},"cron":{},"tags":{},"group":{},"enabled":true}}"#,
            Value::from(name),
            go_map(args),
            Value::from(notification_emails),
            Value::from(cron),
            Value::from(tags),
            Value::from(group),
        );
        let created = self
            .call(self.post("/schedule", body), StatusCode::CREATED)
            .await?;
        created["id"]
            .as_u64()
            .ok_or_else(|| format!("no numeric id in {created}"))
    }

    /// `ListScheduledProcs`: `GET /schedule`.
    pub async fn list_schedules(&self) -> Result<Vec<Value>, String> {
        let list = self
            .call(self.request(Method::GET, "/schedule"), StatusCode::OK)
            .await?;
        Ok(list.as_array().cloned().unwrap_or_default())
    }

    /// `DescribeScheduledProc`: `GET /schedule/<id>`.
    pub async fn describe_schedule(&self, id: u64) -> Result<Value, String> {
        self.call(
            self.request(Method::GET, &format!("/schedule/{id}")),
            StatusCode::OK,
        )
        .await
    }

    /// `RemoveScheduledProc`: `DELETE /schedule/<id as typed>`.
    pub async fn remove_schedule(&self, id: &str) -> Result<(), String> {
        self.send(
            self.request(Method::DELETE, &format!("/schedule/{id}")),
            StatusCode::OK,
        )
        .await
        .map(|_| ())
    }
}

/// A `map[string]string` as Go's `json.Marshal` writes it: keys sorted, `null` when empty
/// (the CLI's map is nil without variables).
fn go_map(args: &BTreeMap<String, String>) -> String {
    if args.is_empty() {
        "null".to_owned()
    } else {
        serde_json::to_string(args).expect("a string map serialises")
    }
}

/// What `proctor list` prints for `procs`.
pub fn list_output(procs: &[Value]) -> Vec<String> {
    let mut sorted: Vec<&Value> = procs.iter().collect();
    sorted.sort_by_key(|proc| proc["name"].as_str().unwrap_or_default().to_owned());
    let mut out = vec!["List of Procs:\n".to_owned()];
    for proc in sorted {
        out.push(line(text(&proc["name"]), text(&proc["description"])));
    }
    out.push("\nFor detailed information of any proc, run:\nproctor describe <proc_name>".into());
    out
}

/// What `proctor describe <name>` prints, or its not-supported message.
pub fn describe_output(procs: &[Value], name: &str) -> Vec<String> {
    let Some(proc) = procs.iter().rev().find(|proc| proc["name"] == name) else {
        return vec![format!(
            "Proctor doesn't support Proc `{name}`\nRun `proctor list` to view supported Procs"
        )];
    };
    let groups: Vec<&str> = proc["authorized_groups"]
        .as_array()
        .map(|groups| groups.iter().map(text).collect())
        .unwrap_or_default();
    let mut out = vec![
        line("Description", text(&proc["description"])),
        line("Contributors", text(&proc["contributors"])),
        line("Organization", text(&proc["organization"])),
        format!("{:<40} [{}]", "Authorized Groups", groups.join(", ")),
        "\nArgs".to_owned(),
    ];
    for arg in proc["env_vars"]["args"].as_array().into_iter().flatten() {
        out.push(line(text(&arg["name"]), text(&arg["description"])));
    }
    out.push(format!(
        "\nTo {name}, run:\nproctor execute {name} ARG_ONE=foo ARG_TWO=bar"
    ));
    out
}

/// The file `proctor template <name> <file>` writes.
pub fn template_file(proc: &Value) -> String {
    proc["env_vars"]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|arg| format!("# {}\n{}:\n", text(&arg["description"]), text(&arg["name"])))
        .collect()
}

/// What `proctor schedule describe <id>` prints.
pub fn schedule_describe_output(schedule: &Value) -> Vec<String> {
    let mut out = vec![
        format!(
            "{:<40} {:<100}",
            "ID",
            schedule["id"].as_u64().unwrap_or_default()
        ),
        line("PROC NAME", text(&schedule["jobName"])),
        line("GROUP NAME", text(&schedule["group"])),
        line("TAGS", text(&schedule["tags"])),
        line("Cron", text(&schedule["cron"])),
        line("Notifier", text(&schedule["notificationEmails"])),
        "\nArgs".to_owned(),
    ];
    if let Some(args) = schedule["args"].as_object() {
        for (name, value) in args {
            out.push(line(name, text(value)));
        }
    }
    out
}

/// One row of `proctor schedule list`.
pub fn schedule_list_row(schedule: &Value) -> String {
    format!(
        "{:<40} {:<30} {:<20} {}",
        schedule["id"].as_u64().unwrap_or_default(),
        text(&schedule["jobName"]),
        text(&schedule["group"]),
        text(&schedule["tags"])
    )
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}
