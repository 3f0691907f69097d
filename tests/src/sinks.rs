//! Receivers for notifications a test started: an SMTP server that accepts every message and an
//! HTTP server that accepts every POST, both keeping what arrived for the test to read.
//!
//! The SMTP side speaks just enough of RFC 5321 for a real client (lettre): greeting, EHLO with
//! AUTH PLAIN/LOGIN, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One message the SMTP sink accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed.
    pub data: String,
    /// User name and password of `AUTH`, when the client authenticated.
    pub login: Option<(String, String)>,
}

/// An SMTP server on `127.0.0.1:<ephemeral port>` that accepts every message.
pub struct SmtpSink {
    address: SocketAddr,
    received: mpsc::UnboundedReceiver<ReceivedMail>,
    server: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    /// Starts listening.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts listening on `port` (0: any), e.g. one a server was told about before.
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the SMTP sink");
        let address = listener.local_addr().expect("bound address");
        let (sender, received) = mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sender = sender.clone();
                tokio::spawn(async move {
                    if let Err(error) = session(stream, sender).await {
                        tracing::debug!(%error, "SMTP sink session ended");
                    }
                });
            }
        });
        Self {
            address,
            received,
            server,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The next message, waiting up to `timeout`.
    ///
    /// # Panics
    /// When none arrives in time.
    pub async fn next_mail(&mut self, timeout: Duration) -> ReceivedMail {
        tokio::time::timeout(timeout, self.received.recv())
            .await
            .unwrap_or_else(|_| panic!("no e-mail arrived within {timeout:?}"))
            .expect("the SMTP sink is running")
    }

    /// The next message if one arrives within `timeout`.
    pub async fn maybe_next_mail(&mut self, timeout: Duration) -> Option<ReceivedMail> {
        tokio::time::timeout(timeout, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn session(
    stream: TcpStream,
    sender: mpsc::UnboundedSender<ReceivedMail>,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    let mut mail = ReceivedMail::default();
    let mut login = None;
    writer.write_all(b"220 proctor-test-sink ESMTP\r\n").await?;
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-proctor-test-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
        } else if upper.starts_with("HELO") {
            "250 proctor-test-sink\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let encoded = match line.split_whitespace().nth(2) {
                Some(inline) => inline.to_owned(),
                None => {
                    writer.write_all(b"334 \r\n").await?;
                    lines.next_line().await?.unwrap_or_default()
                }
            };
            let decoded = decode(&encoded);
            let mut parts = decoded.split('\0').skip(1);
            login = Some((
                parts.next().unwrap_or_default().to_owned(),
                parts.next().unwrap_or_default().to_owned(),
            ));
            "235 2.7.0 accepted\r\n".into()
        } else if upper.starts_with("AUTH LOGIN") {
            writer.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let user = decode(&lines.next_line().await?.unwrap_or_default());
            writer.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let password = decode(&lines.next_line().await?.unwrap_or_default());
            login = Some((user, password));
            "235 2.7.0 accepted\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            mail = ReceivedMail {
                from: address_of(&line),
                login: login.clone(),
                ..ReceivedMail::default()
            };
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(address_of(&line));
            "250 2.1.5 ok\r\n".into()
        } else if upper == "DATA" {
            writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            while let Some(line) = lines.next_line().await? {
                if line == "." {
                    break;
                }
                // A leading dot was doubled by the client (dot-stuffing).
                let unstuffed = if line.starts_with("..") {
                    &line[1..]
                } else {
                    &line
                };
                data.push_str(unstuffed);
                data.push('\n');
            }
            mail.data = data;
            let _ = sender.send(std::mem::take(&mut mail));
            "250 2.0.0 queued\r\n".into()
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 ok\r\n".into()
        } else if upper == "QUIT" {
            writer.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 not implemented\r\n".into()
        };
        writer.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

fn decode(encoded: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `x@y` of `MAIL FROM:<x@y> ...`.
fn address_of(line: &str) -> String {
    let start = line.find('<').map_or(0, |at| at + 1);
    let end = line.find('>').unwrap_or(line.len());
    line[start..end.max(start)].to_owned()
}

/// One request the HTTP sink accepted.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    /// The request path.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl ReceivedRequest {
    /// The body as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

/// An HTTP server on `127.0.0.1:<ephemeral port>` that answers every POST with 200 (or with
/// the status the path asks for: `/status/<code>`).
pub struct HttpSink {
    address: SocketAddr,
    received: mpsc::UnboundedReceiver<ReceivedRequest>,
    server: tokio::task::JoinHandle<()>,
}

impl HttpSink {
    /// Starts listening.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts listening on `port` (0: any), e.g. one a server was told about before.
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the HTTP sink");
        let address = listener.local_addr().expect("bound address");
        let (sender, received) = mpsc::unbounded_channel();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let sender = sender.clone();
                async move {
                    let path = uri.path().to_owned();
                    let status = path
                        .strip_prefix("/status/")
                        .and_then(|code| code.parse::<u16>().ok())
                        .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                        .unwrap_or(axum::http::StatusCode::OK);
                    let _ = sender.send(ReceivedRequest {
                        path,
                        headers,
                        body,
                    });
                    status
                }
            },
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            received,
            server,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The next request, waiting up to `timeout`.
    ///
    /// # Panics
    /// When none arrives in time.
    pub async fn next_request(&mut self, timeout: Duration) -> ReceivedRequest {
        tokio::time::timeout(timeout, self.received.recv())
            .await
            .unwrap_or_else(|_| panic!("no request arrived within {timeout:?}"))
            .expect("the HTTP sink is running")
    }

    /// The next request if one arrives within `timeout`.
    pub async fn maybe_next_request(&mut self, timeout: Duration) -> Option<ReceivedRequest> {
        tokio::time::timeout(timeout, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}
