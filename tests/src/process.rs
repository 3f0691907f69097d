//! The built `proctord` binary as a child process, for end-to-end tests of the real executable.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::infra::workspace_binary;

/// A running `proctord serve` whose stderr the test can read.
pub struct Proctord {
    child: Child,
    /// Where it said it listens.
    pub address: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// A `proctord` command with no inherited `PROCTOR_*` or `RUST_LOG` settings, so a test sees
/// exactly the configuration it sets.
pub fn proctord_command(working_dir: &Path) -> Command {
    let mut command = Command::new(workspace_binary("proctord"));
    command.current_dir(working_dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PROCTOR_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

impl Proctord {
    /// Spawns `command` (built with [`proctord_command`]) and waits until it logs the
    /// address it listens on.
    ///
    /// # Panics
    /// When it exits or says nothing useful within 60 s; its stderr is in the message.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn proctord");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (listening_tx, listening_rx) = mpsc::channel();
        let reader = BufReader::new(child.stderr.take().expect("piped stderr"));
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                let address = listening_address(&line);
                // Kept before the address is announced, so `stderr()` holds the line that
                // `spawn` returned on.
                lines.lock().expect("stderr lock").push(line);
                if let Some(address) = address {
                    let _ = listening_tx.send(address);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(address) = listening_rx.recv_timeout(Duration::from_millis(100)) {
                return Self {
                    child,
                    address,
                    stderr,
                };
            }
            let exited = child.try_wait().expect("poll proctord");
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "proctord did not start ({exited:?}); stderr:\n{}",
                    stderr.lock().expect("stderr lock").join("\n")
                );
            }
        }
    }

    /// `http://<address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").join("\n")
    }

    /// Sends SIGTERM and waits (up to 30 s) for it to exit.
    ///
    /// # Panics
    /// When it does not exit in time.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll proctord") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "proctord ignored SIGTERM for 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proctord {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds `http://ADDR` in proctord's "listening on" log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on http://")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Processes of process group `group` that are still alive (zombies waiting for PID 1 to reap
/// them are already dead).
pub fn live_members(group: i32) -> Vec<i32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .flatten()
    {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp …"; comm may hold spaces, so split after the last ')'.
        let fields: Vec<&str> = stat[stat
            .rfind(')')
            .expect("a stat line has its comm in parentheses")
            + 1..]
            .split_whitespace()
            .collect();
        if fields[2].parse::<i32>() == Ok(group) && fields[0] != "Z" {
            members.push(pid);
        }
    }
    members
}
