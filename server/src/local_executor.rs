//! The local-process executor: runs a proc's `command` on this machine.
//!
//! - The process gets a clean environment: the run's variables plus `PATH`, `LANG`, `LC_ALL`
//!   and `TZ` from `proctord`, and `HOME` and `TMPDIR` pointing at the run's scratch
//!   directory; never `proctord`'s own settings (database URLs, keys).
//! - It runs in its own process group, so a timeout or a cancel reaches everything it started:
//!   SIGTERM to the group, SIGKILL after the grace period. When the main process ends, anything
//!   left in its group is killed too, as a container's end would.
//! - stdout and stderr are read line by line; a line without a newline for 1 MiB is emitted in
//!   pieces (on a character boundary) so memory stays bounded.
//! - The runner owns the run: cancelling its token stops the process group. Retries are the
//!   runner's (one `start` per attempt). A run is recorded as `<pid>:<start time>`
//!   ([`ProcessRef`]); a local run cannot be followed again by another server process, so
//!   `reattach` stops whatever is left of it (see [`crate::orphans`]) and reports it gone.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use proctor_entity::values::LogStream;
use proctor_schema::ports::executor::{
    Executor, ExecutorError, RunEvent, RunEvents, RunRef, RunSpec,
};
use proctor_schema::system::ExecutorKind;
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::orphans::{self, ProcessRef, Stopped};
use crate::sandbox::Isolation;

/// Longest piece of a line read at once.
const MAX_CHUNK: usize = 1024 * 1024;
/// Events buffered between the process and the runner; a slow runner slows the process down
/// (its pipe fills) rather than growing memory.
const EVENT_BUFFER: usize = 1024;
/// After the process group ended, how long a pipe may stay silent before its reader stops
/// (a process that left the group can hold it open). Output already written is always
/// delivered in full, however long a busy runner takes to accept it.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Variables passed through from `proctord`'s own environment (`HOME` and `TMPDIR` are the
/// run's scratch directory instead).
const INHERITED: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];
/// `PATH` when `proctord` has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Runs procs as local processes; see the module docs.
pub struct LocalExecutor {
    grace: Duration,
    default_timeout: Duration,
    isolation: Isolation,
}

impl LocalExecutor {
    /// An executor giving cancelled and timed-out runs `grace` between SIGTERM and SIGKILL,
    /// and runs of procs without a timeout `default_timeout`.
    pub fn new(grace: Duration, default_timeout: Duration, isolation: Isolation) -> Self {
        Self {
            grace,
            default_timeout,
            isolation,
        }
    }
}

/// The program `name` as a path, searched in the child's `PATH` like `execvp` would.
///
/// Why not let the standard library search: with a `PATH` of our own and a bare name it falls
/// back from `posix_spawn` to `fork`, which copies this server's page tables for every run;
/// with a path it uses `posix_spawn` (a `vfork`-style clone), which made starting runs several
/// times cheaper. A name with a slash, or one not found, is returned as given (the spawn then
/// reports the error).
fn resolve_program(name: &str, search_path: &OsStr) -> PathBuf {
    if name.contains('/') {
        return PathBuf::from(name);
    }
    std::env::split_paths(search_path)
        .filter(|directory| !directory.as_os_str().is_empty())
        .map(|directory| directory.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Removes a run's scratch directory (the process group is gone by then).
fn remove_scratch(scratch: &std::path::Path) {
    if let Err(error) = std::fs::remove_dir_all(scratch) {
        tracing::warn!(path = %scratch.display(), %error, "cannot remove a run's directory");
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Local
    }

    async fn start(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
    ) -> Result<RunEvents, ExecutorError> {
        let argv = spec
            .command
            .as_deref()
            .filter(|argv| !argv.is_empty())
            .ok_or_else(|| {
                ExecutorError::Start(
                    "the proc has no command, and the local executor runs commands (set \
                     `command`, or use the Kubernetes executor for image-only procs)"
                        .to_owned(),
                )
            })?;
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        for name in INHERITED {
            if let Some(value) = std::env::var_os(name) {
                env.push((name.into(), value));
            } else if *name == "PATH" {
                env.push((name.into(), DEFAULT_PATH.into()));
            }
        }
        for (name, value) in &spec.env {
            env.push((name.into(), value.expose().into()));
        }
        let scratch = self
            .isolation
            .scratch_dir(spec.execution_id)
            .map_err(|e| ExecutorError::Start(format!("cannot create the run's directory: {e}")))?;
        env.push(("HOME".into(), scratch.clone().into_os_string()));
        env.push(("TMPDIR".into(), scratch.clone().into_os_string()));
        let search_path = env
            .iter()
            .rev()
            .find(|(name, _)| name == "PATH")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let program = resolve_program(&argv[0], &search_path);
        // `_layer` keeps the descriptor the helper's command line names open until the spawn.
        let (mut command, _layer) = match self.isolation.launcher(&program, &argv[1..], &scratch) {
            Ok(Some(launcher)) => (launcher.command, launcher.layer),
            Ok(None) => {
                let mut direct = Command::new(&program);
                direct.args(&argv[1..]);
                (direct, None)
            }
            Err(error) => {
                remove_scratch(&scratch);
                return Err(ExecutorError::Start(format!(
                    "cannot start {:?}: {error}",
                    argv[0]
                )));
            }
        };
        command
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let spawned = self
            .isolation
            .apply(&mut command, &scratch)
            .and_then(|()| command.spawn());
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                remove_scratch(&scratch);
                return Err(ExecutorError::Start(format!(
                    "cannot start {:?}: {error}",
                    argv[0]
                )));
            }
        };
        let pid = child
            .id()
            .ok_or_else(|| ExecutorError::Start("the process ended before it started".into()))?;

        // Identified by pid and start time, so a server started after a crash can tell this
        // process from a later one that got the same pid.
        let executor_ref =
            ProcessRef::of(pid).map_or_else(|| pid.to_string(), |run| run.to_string());
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        // The channel has room: the runner sees Started before any output.
        let _ = events.try_send(RunEvent::Started { executor_ref });
        let grace = self.grace;
        let timeout = spec.timeout.unwrap_or(self.default_timeout);
        tokio::spawn(async move {
            supervise(child, pid, timeout, grace, cancel, events).await;
            remove_scratch(&scratch);
        });
        Ok(
            futures::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|event| (event, receiver))
            })
            .boxed(),
        )
    }

    async fn reattach(
        &self,
        run: RunRef,
        _cancel: CancellationToken,
    ) -> Result<RunEvents, ExecutorError> {
        let Some(process) = ProcessRef::parse(&run.executor_ref) else {
            return Err(ExecutorError::NotFound(
                "local runs cannot be followed again once their server stopped, and this one \
                 has no process recorded to stop"
                    .to_owned(),
            ));
        };
        let what = match orphans::stop(&process, run.execution_id, self.grace).await {
            Stopped::Killed => format!(
                "its local process group (pid {}) was still running and was stopped",
                process.pid
            ),
            Stopped::AlreadyGone => {
                format!("its local process (pid {}) had already ended", process.pid)
            }
            Stopped::Survived => format!(
                "its local process group (pid {}) survived SIGKILL; check the machine",
                process.pid
            ),
        };
        tracing::warn!(execution.id = run.execution_id, "{what}");
        Err(ExecutorError::NotFound(format!(
            "local runs cannot be followed again once their server stopped; {what}"
        )))
    }
}

/// Why a run is ending.
enum Ending {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    Cancelled,
}

async fn supervise(
    mut child: Child,
    pid: u32,
    timeout: Duration,
    grace: Duration,
    cancel: CancellationToken,
    events: mpsc::Sender<RunEvent>,
) {
    let (group_ended, ended) = watch::channel(false);
    let readers = [
        child.stdout.take().map(|out| {
            tokio::spawn(read_lines(
                out,
                LogStream::Stdout,
                events.clone(),
                ended.clone(),
            ))
        }),
        child.stderr.take().map(|err| {
            tokio::spawn(read_lines(
                err,
                LogStream::Stderr,
                events.clone(),
                ended.clone(),
            ))
        }),
    ];
    let ending = tokio::select! {
        status = child.wait() => Ending::Exited(status),
        () = tokio::time::sleep(timeout) => Ending::TimedOut,
        () = cancel.cancelled() => Ending::Cancelled,
    };
    if !matches!(ending, Ending::Exited(_)) {
        signal_group(pid, Signal::TERM);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            signal_group(pid, Signal::KILL);
            let _ = child.wait().await;
        }
    }
    // Whatever the main process left behind in its group ends with it.
    signal_group(pid, Signal::KILL);
    let _ = group_ended.send(true);
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
    let last = match ending {
        Ending::TimedOut => RunEvent::TimedOut {
            limit: Some(timeout),
            cause: None,
        },
        Ending::Cancelled => RunEvent::Cancelled,
        Ending::Exited(Ok(status)) => match status.code() {
            Some(code) => RunEvent::Exited { code },
            None => {
                use std::os::unix::process::ExitStatusExt;
                RunEvent::Failed {
                    reason: format!("killed by signal {}", status.signal().unwrap_or_default()),
                }
            }
        },
        Ending::Exited(Err(error)) => RunEvent::Lost {
            reason: format!("cannot wait for the process: {error}"),
        },
    };
    let _ = events.send(last).await;
}

/// Sends `signal` to the process group `pid` leads; a group that is already gone is fine.
fn signal_group(pid: u32, signal: Signal) {
    if let Some(group) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(group, signal);
    }
}

/// Completes [`DRAIN_LIMIT`] after the process group ended (never before).
async fn silent_too_long_after_the_end(ended: &mut watch::Receiver<bool>) {
    if ended.wait_for(|ended| *ended).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(DRAIN_LIMIT).await;
}

/// Sends every line of `source` as a log event, until EOF or until the pipe stays silent for
/// [`DRAIN_LIMIT`] after the process group ended. Waiting for the runner to accept a line
/// never counts against that limit: nothing written is dropped because the server is busy.
async fn read_lines(
    source: impl AsyncRead + Unpin,
    stream: LogStream,
    events: mpsc::Sender<RunEvent>,
    mut ended: watch::Receiver<bool>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, source);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let filled = tokio::select! {
            biased;
            filled = reader.fill_buf() => filled,
            () = silent_too_long_after_the_end(&mut ended) => break,
        };
        // A read error ends the stream like EOF: the process's exit decides the outcome.
        let Ok(available) = filled else { break };
        if available.is_empty() {
            break;
        }
        let (taken, complete) = match available.iter().position(|byte| *byte == b'\n') {
            Some(newline) => {
                line.extend_from_slice(&available[..newline]);
                (newline + 1, true)
            }
            None => {
                line.extend_from_slice(available);
                (available.len(), false)
            }
        };
        reader.consume(taken);
        if complete {
            if !send(&events, stream, std::mem::take(&mut line), false).await {
                return;
            }
        } else if line.len() >= MAX_CHUNK {
            let cut = char_boundary(&line, MAX_CHUNK);
            let rest = line.split_off(cut);
            if !send(&events, stream, std::mem::replace(&mut line, rest), true).await {
                return;
            }
        }
    }
    if !line.is_empty() {
        send(&events, stream, line, false).await;
    }
}

/// A cut at or before `limit` that does not split a UTF-8 sequence, judged from the bytes
/// before the cut (the bytes after it may not have been read yet).
fn char_boundary(bytes: &[u8], limit: usize) -> usize {
    let cut = limit.min(bytes.len());
    for back in 1..=cut.min(3) {
        let start = cut - back;
        let byte = bytes[start];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // A continuation byte: the character starts further back.
        }
        let length = match byte {
            0x00..=0x7f => 1,
            _ if byte & 0b1110_0000 == 0b1100_0000 => 2,
            _ if byte & 0b1111_0000 == 0b1110_0000 => 3,
            _ if byte & 0b1111_1000 == 0b1111_0000 => 4,
            _ => 1, // Not UTF-8 at all: nothing to keep together.
        };
        // A character that goes on past the cut moves to the next piece (unless it is all
        // there is, which only bytes that are not UTF-8 can make happen).
        return if start + length > cut && start > 0 {
            start
        } else {
            cut
        };
    }
    cut
}

async fn send(
    events: &mpsc::Sender<RunEvent>,
    stream: LogStream,
    mut bytes: Vec<u8>,
    continues: bool,
) -> bool {
    if !continues && bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    let (line, replaced) = match String::from_utf8(bytes) {
        Ok(line) => (line, false),
        Err(invalid) => (
            String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
            true,
        ),
    };
    events
        .send(RunEvent::Log {
            stream,
            line,
            cursor: None,
            continues,
            replaced,
        })
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_in_the_childs_path_like_execvp() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let write = |dir: &tempfile::TempDir, name: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        write(&first, "tool", 0o644); // not executable: skipped
        let tool = write(&second, "tool", 0o755);
        let only_first = write(&first, "other", 0o755);
        let _later = write(&second, "other", 0o755);
        let path = std::env::join_paths([first.path(), second.path()]).unwrap();
        assert_eq!(resolve_program("tool", &path), tool);
        assert_eq!(
            resolve_program("other", &path),
            only_first,
            "the first hit wins"
        );
        assert_eq!(resolve_program("missing", &path), PathBuf::from("missing"));
        assert_eq!(
            resolve_program("./tool", &path),
            PathBuf::from("./tool"),
            "a name with a slash is a path already"
        );
    }

    #[test]
    fn cuts_never_split_a_character() {
        let text = "aé€".as_bytes(); // 1 + 2 + 3 bytes
        assert_eq!(char_boundary(text, 2), 1, "inside é");
        assert_eq!(char_boundary(text, 4), 3, "inside €");
        assert_eq!(char_boundary(text, 3), 3, "on a boundary");
        assert_eq!(char_boundary(text, 10), 6);
        assert_eq!(
            char_boundary(&text[..2], 2),
            1,
            "é cut at the end of what was read"
        );
        assert_eq!(
            char_boundary(&text[..4], 4),
            3,
            "€ cut at the end of what was read"
        );
        assert_eq!(
            char_boundary(&text[..5], 5),
            3,
            "€ cut at the end of what was read"
        );
    }

    #[tokio::test]
    async fn a_cut_inside_a_character_keeps_the_text_whole() {
        for offset in 1..=8 {
            let text = format!("{}Xä€-geheim-Wert-987\n", "C".repeat(MAX_CHUNK - offset));
            let (events, mut received) = mpsc::channel(16);
            let (_group_ended, ended) = watch::channel(false);
            read_lines(text.as_bytes(), LogStream::Stdout, events, ended).await;
            let mut joined = String::new();
            while let Ok(RunEvent::Log { line, replaced, .. }) = received.try_recv() {
                assert!(!replaced, "offset {offset}");
                joined.push_str(&line);
            }
            assert_eq!(joined, text.trim_end(), "offset {offset}");
        }
    }

    #[tokio::test]
    async fn long_lines_arrive_in_bounded_pieces_and_nothing_is_lost() {
        let text = format!("{}\nshort\r\ntail", "x".repeat(MAX_CHUNK * 2 + 10));
        let (events, mut received) = mpsc::channel(16);
        let (_group_ended, ended) = watch::channel(false);
        read_lines(text.as_bytes(), LogStream::Stdout, events, ended).await;
        let mut lines = Vec::new();
        while let Ok(RunEvent::Log { line, .. }) = received.try_recv() {
            lines.push(line);
        }
        assert_eq!(lines.len(), 5, "two full pieces, the rest, then two lines");
        assert!(lines.iter().all(|line| line.len() <= MAX_CHUNK));
        assert_eq!(lines[..3].concat().len(), MAX_CHUNK * 2 + 10);
        assert_eq!(&lines[3..], ["short", "tail"]);
    }

    #[tokio::test]
    async fn output_written_before_the_exit_is_delivered_however_slow_the_runner() {
        // More output than the event channel holds (but less than the pipe takes, so the
        // process exits at once): the rest waits in the pipe and the reader while the runner
        // takes longer than the drain limit to accept anything.
        let executor = LocalExecutor::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Isolation::none(std::env::temp_dir()),
        );
        let mut events = executor
            .start(
                RunSpec {
                    execution_id: 1,
                    proc_name: "flood".into(),
                    image: None,
                    command: Some(vec!["seq".into(), "1".into(), "5000".into()]),
                    env: Vec::new(),
                    timeout: None,
                    retries: None,
                    resources: None,
                    identity_audience: None,
                    alerts: None,
                },
                CancellationToken::new(),
            )
            .await
            .expect("seq starts");
        tokio::time::sleep(DRAIN_LIMIT + Duration::from_secs(1)).await;
        let mut lines = Vec::new();
        let mut last = None;
        while let Some(event) = events.next().await {
            match event {
                RunEvent::Log { line, .. } => lines.push(line),
                RunEvent::Started { .. } => {}
                other => last = Some(other),
            }
        }
        assert_eq!(lines.len(), 5_000);
        assert_eq!(lines.last().map(String::as_str), Some("5000"));
        assert_eq!(last, Some(RunEvent::Exited { code: 0 }));
    }
}
