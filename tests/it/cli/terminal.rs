//! `proctor runs start` on a real terminal (a tmux pane): the live status line with its
//! elapsed time, the final line with the console URL, and what Ctrl-C does (once: detach, the
//! run goes on, exit 130; twice: cancel; with `--on-interrupt cancel`, once cancels).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proctor_tests::api::{ExecutionStatus, proc, sh};
use tokio::process::Command;

use super::auth_app;

/// One tmux server (own socket) with one pane running a shell command.
struct Pane {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pane {
    /// Starts `line` in a 160×40 pane with `env` set; the pane stays after the command ends
    /// and then shows `EXIT=<code>`.
    async fn start(line: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a socket directory");
        let socket = dir.path().join("tmux.sock");
        let mut command = Command::new("tmux");
        command
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "40",
            ])
            .arg(format!("{line}; echo EXIT=$?; sleep 600"))
            .env("TERM", "xterm-256color")
            .env("NO_COLOR", "1")
            .env_remove("CI");
        for (name, value) in env {
            command.env(name, value);
        }
        let status = command
            .status()
            .await
            .expect("tmux runs (apt install tmux)");
        assert!(status.success(), "tmux new-session failed");
        Self { socket, _dir: dir }
    }

    async fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .await
            .expect("tmux runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What the pane shows now.
    async fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"]).await
    }

    /// Waits (up to 30 s) until the screen satisfies `test`; returns that screen.
    async fn until(&self, what: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen().await;
            if test(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "never saw {what}:\n{screen}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ctrl_c(&self) {
        self.tmux(&["send-keys", "C-c"]).await;
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

/// The seconds shown after `status` on the status line, if it is there.
fn elapsed_after(screen: &str, status: &str) -> Option<f64> {
    let pattern = regex::Regex::new(&format!(r"{status} (\d+\.\d)s")).expect("a valid pattern");
    pattern
        .captures(screen)
        .and_then(|c| c[1].parse::<f64>().ok())
}

#[tokio::test]
async fn the_status_line_counts_up_and_ctrl_c_detaches_or_cancels() {
    let (app, admin) = auth_app().await;
    app.api_as(&admin)
        .define_proc(proc("quick", &sh("sleep 1.5; echo finished-work")))
        .await;
    app.api_as(&admin)
        .define_proc(proc("long", &sh("echo started; exec sleep 120")))
        .await;
    let binary = proctor_tests::workspace_binary("proctor");
    let host = app.address.to_string();
    let config = tempfile::tempdir().unwrap();
    let config_dir = config.path().to_str().unwrap().to_owned();
    let env = [
        ("PROCTOR_HOST", host.as_str()),
        ("PROCTOR_EMAIL", "admin@example.com"),
        ("PROCTOR_TOKEN", admin.as_str()),
        ("XDG_CONFIG_HOME", config_dir.as_str()),
        ("LOCAL_CONFIG_DIR", config_dir.as_str()),
    ];
    let command = |proc: &str| format!("'{}' runs start {proc}", binary.display());

    // A run that succeeds: the status line counts, then gives way to the final line.
    let pane = Pane::start(&command("quick"), &env).await;
    let first = pane
        .until("RUNNING with its time", |s| {
            elapsed_after(s, "RUNNING").is_some()
        })
        .await;
    let before = elapsed_after(&first, "RUNNING").unwrap();
    let later = pane
        .until("the time go up", |s| {
            elapsed_after(s, "RUNNING").is_some_and(|t| t > before)
        })
        .await;
    assert!(!later.contains("finished-work"), "{later}");
    let end = pane.until("the end", |s| s.contains("EXIT=")).await;
    let console = format!("http://{host}/#/executions/1");
    let summary = regex::Regex::new(&format!(
        r"SUCCEEDED in \d+\.\ds · {}",
        regex::escape(&console)
    ))
    .unwrap();
    assert!(summary.is_match(&end), "{end}");
    assert!(
        end.contains("finished-work") && end.contains("EXIT=0"),
        "{end}"
    );
    assert!(
        elapsed_after(&end, "RUNNING").is_none(),
        "the status line is gone at the end:\n{end}"
    );
    drop(pane);

    // Ctrl-C once: detached, the run goes on, exit 130 after the second-press window.
    let pane = Pane::start(&command("long"), &env).await;
    pane.until("the run start", |s| s.contains("started")).await;
    pane.ctrl_c().await;
    let detached = pane.until("the detach exit", |s| s.contains("EXIT=")).await;
    assert!(
        detached.contains("Detached: run 2 goes on.")
            && detached.contains("proctor runs logs -f 2")
            && detached.contains("proctor runs cancel 2")
            && detached.contains("EXIT=130"),
        "{detached}"
    );
    assert_eq!(
        app.api_as(&admin).status("2").await,
        ExecutionStatus::Running,
        "detaching leaves the run running"
    );
    drop(pane);

    // Ctrl-C twice: the run is cancelled.
    let pane = Pane::start(&command("long"), &env).await;
    pane.until("the run start", |s| s.contains("started")).await;
    pane.ctrl_c().await;
    pane.until("the detach notice", |s| s.contains("Detached: run 3"))
        .await;
    pane.ctrl_c().await;
    let cancelled = pane.until("the cancel exit", |s| s.contains("EXIT=")).await;
    assert!(
        cancelled.contains("Run 3 CANCELLED") && cancelled.contains("EXIT=1"),
        "{cancelled}"
    );
    app.api_as(&admin)
        .wait_for_status("3", ExecutionStatus::Cancelled)
        .await;
    drop(pane);

    // --on-interrupt cancel: the first Ctrl-C cancels.
    let pane = Pane::start(&format!("{} --on-interrupt cancel", command("long")), &env).await;
    pane.until("the run start", |s| s.contains("started")).await;
    pane.ctrl_c().await;
    let cancelled = pane.until("the cancel exit", |s| s.contains("EXIT=")).await;
    assert!(
        !cancelled.contains("Detached")
            && cancelled.contains("Run 4 CANCELLED")
            && cancelled.contains("EXIT=1"),
        "{cancelled}"
    );
    app.api_as(&admin)
        .wait_for_status("4", ExecutionStatus::Cancelled)
        .await;
    assert_eq!(
        app.api_as(&admin).status("2").await,
        ExecutionStatus::Running,
        "only the run that was followed is cancelled"
    );
}
