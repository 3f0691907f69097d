//! The CLI facing a hostile or wrong server: credentials never travel to a server they were
//! not stored for (another `--host`, a redirect), and server text cannot drive the terminal.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{User, auth_app, run_command};

/// A one-route HTTP server on a free port that records every request it gets (head and body)
/// and answers each with `response` (a whole HTTP/1.1 response).
struct Recorder {
    address: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start(response: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                let response = response.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 8192];
                    // Read until the head and the body its Content-Length announces are in.
                    loop {
                        let Ok(read) = socket.read(&mut buffer).await else {
                            return;
                        };
                        if read == 0 {
                            break;
                        }
                        request.extend_from_slice(&buffer[..read]);
                        let text = String::from_utf8_lossy(&request).to_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&request).into_owned());
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { address, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn json_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: \
         close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_contexts_token_is_not_sent_to_another_host_nor_through_a_redirect() {
    let (app, admin) = auth_app().await;
    let user = User::new("", "", "");
    let mut login = user.command(&[
        "login",
        "--server",
        &app.address.to_string(),
        "--email",
        "admin@example.com",
    ]);
    login
        .env_remove("PROCTOR_HOST")
        .env_remove("EMAIL_ID")
        .env_remove("ACCESS_TOKEN");
    let logged_in = run_command(login, Some(&admin)).await;
    assert_eq!(logged_in.code, 0, "{logged_in:?}");

    // A v2 file for a third server, with its own token.
    std::fs::write(
        user.config_dir.path().join("proctor.yaml"),
        "PROCTOR_HOST: 127.0.0.1:9\nEMAIL_ID: v2@example.com\nACCESS_TOKEN: v2-token-x\n",
    )
    .unwrap();

    // --host naming another server: neither the context's token nor the v2 file's goes.
    let elsewhere = Recorder::start(json_response(r#"{"data":{"me":null}}"#)).await;
    let mut command = user.command(&["--host", &elsewhere.address, "whoami"]);
    command.env_remove("EMAIL_ID").env_remove("ACCESS_TOKEN");
    let ran = run_command(command, None).await;
    let requests = elsewhere.requests();
    assert_eq!(requests.len(), 1, "{ran:?}");
    for credential in [
        admin.as_str(),
        "admin@example.com",
        "v2-token-x",
        "v2@example.com",
    ] {
        assert!(!requests[0].contains(credential), "{}", requests[0]);
    }
    assert!(
        ran.stderr.contains("its credentials are not sent there"),
        "the user is told: {ran:?}"
    );
    // The same server spelled as a URL is the same server: the token goes.
    let mut command = user.command(&[
        "--host",
        &format!("http://{}/", app.address),
        "whoami",
        "-o",
        "jsonpath={.email}",
    ]);
    command.env_remove("EMAIL_ID").env_remove("ACCESS_TOKEN");
    let same = run_command(command, None).await;
    assert_eq!(same.stdout, "admin@example.com\n", "{same:?}");

    // A redirect is reported, not followed with the token.
    let target = Recorder::start(json_response(r#"{"data":{"me":null}}"#)).await;
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{}/graphql\r\ncontent-length: \
         0\r\nconnection: close\r\n\r\n",
        target.address
    );
    let redirector = Recorder::start(redirect).await;
    let victim = User::new(redirector.address.clone(), "admin@example.com", &admin);
    let ran = victim.run(&["whoami"]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("redirects to"), "{ran:?}");
    assert_eq!(redirector.requests().len(), 1, "the first request was made");
    assert!(
        target.requests().is_empty(),
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn server_text_cannot_drive_the_terminal() {
    let evil = "\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{1b}[2J";
    let body = serde_json::json!({
        "errors": [{ "message": format!("bad{evil}thing"), "extensions": { "code": "BAD_USER_INPUT" } }]
    })
    .to_string();
    let server = Recorder::start(json_response(&body)).await;
    let user = User::new(server.address.clone(), "a@b.c", "t");
    for args in [&["whoami"][..], &["procs", "list"], &["runs", "get", "1"]] {
        let ran = user.run(args).await;
        assert_eq!(ran.code, 2, "{ran:?}");
        assert!(ran.stderr.contains("badthing"), "{ran:?}");
        assert!(
            !ran.stderr.contains('\u{1b}') && !ran.stderr.contains('\u{7}'),
            "{ran:?}"
        );
    }
    let version = user.run(&["version"]).await;
    assert!(!version.stderr.contains('\u{1b}'), "{version:?}");

    // A proc description with a newline and escapes does not break completion candidates.
    let body = serde_json::json!({ "data": { "procs": [
        { "name": "good", "description": format!("line{evil} one\nline two"), "args": [],
          "image": null, "command": ["true"], "authorizedGroups": [],
          "version": 1, "updatedAt": "2026-01-01T00:00:00Z" },
        { "name": "bad name", "description": "x", "args": [],
          "image": null, "command": ["true"], "authorizedGroups": [],
          "version": 1, "updatedAt": "2026-01-01T00:00:00Z" }
    ] } })
    .to_string();
    let server = Recorder::start(json_response(&body)).await;
    let mut command = tokio::process::Command::new(proctor_tests::workspace_binary("proctor"));
    command
        .args(["--", "proctor", "runs", "start", ""])
        .env("COMPLETE", "fish")
        .env("PROCTOR_HOST", &server.address)
        .env("XDG_CONFIG_HOME", user.config_dir.path())
        .env("LOCAL_CONFIG_DIR", user.config_dir.path());
    let ran = run_command(command, None).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        !ran.stdout.contains('\u{1b}') && !ran.stdout.contains("bad name"),
        "{ran:?}"
    );
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("good\tline one line two")),
        "one line per candidate: {ran:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("line")),
        "a newline in a description makes no candidate: {ran:?}"
    );
}
