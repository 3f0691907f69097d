//! Finding and stopping local runs left behind by a previous `proctord` (killed, crashed).
//!
//! A local run is recorded as `<pid>:<start>:<boot>`: its process-group leader's pid, its
//! start time (clock ticks since boot, from `/proc/<pid>/stat`) and the machine's boot id
//! (`/proc/sys/kernel/random/boot_id`). A pid alone is not an identity: after a crash it may
//! belong to an unrelated process, and start ticks only compare within one boot of one
//! machine. The rules:
//!
//! - another boot id (another machine took the run over, or this one rebooted): nothing of
//!   the run can be running here; nothing is signalled;
//! - the leader is alive and started at the recorded time: it is ours; its whole group is
//!   stopped (SIGTERM, then SIGKILL after the grace period);
//! - the pid is alive but started at another time: it was reused, which Linux only does once
//!   no process of our group is left (a pid in use as a process-group id is never handed out
//!   again), so there is nothing of ours to stop;
//! - the pid is gone: processes of its group that carry the run's `EXECUTION_ID` in their
//!   environment are ours and are stopped one by one (a group id can outlive its leader and,
//!   in a long-running machine, be reused later; the environment tells them apart).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

/// How a local run is identified across a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRef {
    /// The process-group leader (the run's main process).
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start: u64,
    /// The boot it started in.
    pub boot: String,
}

/// This machine's current boot id (read once: it does not change while the server runs).
fn boot_id() -> Option<String> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty() && !id.contains(':'))
    })
    .clone()
}

impl ProcessRef {
    /// The reference of a process that is running now.
    pub fn of(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            start: stat(pid)?.start,
            boot: boot_id()?,
        })
    }

    /// Parses `<pid>:<start>:<boot>` (a bare pid, as stored by older versions, has no
    /// identity and gives `None`).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        Some(Self {
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
            boot: parts.next().filter(|boot| !boot.is_empty())?.to_owned(),
        })
    }
}

impl std::fmt::Display for ProcessRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.pid, self.start, self.boot)
    }
}

/// The fields of `/proc/<pid>/stat` this module reads.
struct Stat {
    group: u32,
    start: u64,
}

/// The process `pid`, unless there is none or it has ended.
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`: comm may hold spaces and parentheses, so the fields are
    // counted from the last `)`. After it: state is field 3, pgrp field 5, starttime field 22.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // A zombie (ended, not yet reaped) or dead process runs nothing any more.
    if matches!(fields.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    Some(Stat {
        group: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Whether process `pid` runs with `EXECUTION_ID=<execution_id>` in its environment.
fn belongs_to(pid: u32, execution_id: i64) -> bool {
    let wanted = format!("EXECUTION_ID={execution_id}");
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
        environ
            .split(|byte| *byte == 0)
            .any(|entry| entry == wanted.as_bytes())
    })
}

/// What is left of `run` here, by the rules in the module docs.
enum Left {
    /// Nothing.
    Nothing,
    /// The group, led by its live leader.
    Group,
    /// These members of a group whose leader is gone.
    Members(Vec<u32>),
}

fn left(run: &ProcessRef, execution_id: i64) -> Left {
    if boot_id().as_deref() != Some(run.boot.as_str()) {
        return Left::Nothing;
    }
    match stat(run.pid) {
        Some(leader) if leader.start == run.start => Left::Group,
        Some(_) => Left::Nothing,
        None => {
            let Ok(entries) = std::fs::read_dir("/proc") else {
                return Left::Nothing;
            };
            let members: Vec<u32> = entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    stat(*pid).is_some_and(|stat| stat.group == run.pid && stat.start >= run.start)
                })
                .filter(|pid| belongs_to(*pid, execution_id))
                .collect();
            if members.is_empty() {
                Left::Nothing
            } else {
                Left::Members(members)
            }
        }
    }
}

fn signal(run: &ProcessRef, left: &Left, signal: Signal) {
    let to_pid = |pid: u32| i32::try_from(pid).ok().and_then(Pid::from_raw);
    match left {
        Left::Nothing => {}
        Left::Group => {
            if let Some(group) = to_pid(run.pid) {
                let _ = kill_process_group(group, signal);
            }
        }
        Left::Members(members) => {
            for pid in members.iter().copied().filter_map(to_pid) {
                let _ = kill_process(pid, signal);
            }
        }
    }
}

/// What became of a left-behind run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Processes of it were still running and are gone now.
    Killed,
    /// Nothing of it was running here.
    AlreadyGone,
    /// Processes of it survived even SIGKILL (they are stuck in the kernel).
    Survived,
}

async fn gone_within(run: &ProcessRef, execution_id: i64, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    loop {
        if matches!(left(run, execution_id), Left::Nothing) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops what is left of run `execution_id` recorded as `run` (see the module docs): SIGTERM,
/// then SIGKILL after `grace`.
pub async fn stop(run: &ProcessRef, execution_id: i64, grace: Duration) -> Stopped {
    let found = left(run, execution_id);
    if matches!(found, Left::Nothing) {
        return Stopped::AlreadyGone;
    }
    signal(run, &found, Signal::TERM);
    if gone_within(run, execution_id, grace).await {
        return Stopped::Killed;
    }
    signal(run, &left(run, execution_id), Signal::KILL);
    if gone_within(run, execution_id, Duration::from_secs(5)).await {
        Stopped::Killed
    } else {
        Stopped::Survived
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_a_bare_pid_is_no_identity() {
        let run = ProcessRef {
            pid: 4242,
            start: 987_654,
            boot: "cf52a8ca-50e3-44b1-8610-6261dfda8083".into(),
        };
        assert_eq!(ProcessRef::parse(&run.to_string()), Some(run));
        assert_eq!(ProcessRef::parse("4242"), None);
        assert_eq!(ProcessRef::parse("4242:12"), None, "no boot id");
        assert_eq!(ProcessRef::parse("x:1:b"), None);
    }

    #[test]
    fn this_process_has_a_start_time_and_a_boot() {
        let me = ProcessRef::of(std::process::id()).expect("this process is in /proc");
        assert!(me.start > 0);
        assert_eq!(Some(me.boot), boot_id());
    }

    fn sleeper(execution_id: &str) -> tokio::process::Child {
        tokio::process::Command::new("sleep")
            .arg("30")
            .env("EXECUTION_ID", execution_id)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("sleep starts")
    }

    #[tokio::test]
    async fn a_reused_pid_or_another_boot_is_never_signalled() {
        let mut child = sleeper("7");
        let pid = child.id().expect("running");
        let real = ProcessRef::of(pid).expect("in /proc");
        // Alive under the pid but started at another time: somebody else's.
        let reused = ProcessRef {
            start: real.start.saturating_sub(1),
            ..real.clone()
        };
        assert_eq!(
            stop(&reused, 7, Duration::from_millis(100)).await,
            Stopped::AlreadyGone
        );
        // Recorded in another boot (another machine, or before a reboot).
        let elsewhere = ProcessRef {
            boot: "00000000-0000-0000-0000-000000000000".into(),
            ..real.clone()
        };
        assert_eq!(
            stop(&elsewhere, 7, Duration::from_millis(100)).await,
            Stopped::AlreadyGone
        );
        assert!(
            child.try_wait().expect("waitable").is_none(),
            "still running"
        );
        assert_eq!(
            stop(&real, 7, Duration::from_secs(2)).await,
            Stopped::Killed
        );
        assert!(!child.wait().await.expect("reaped").success());
    }

    #[tokio::test]
    async fn membership_is_told_by_the_runs_execution_id() {
        let mut ours = sleeper("8");
        let mut theirs = sleeper("81");
        assert!(belongs_to(ours.id().expect("running"), 8));
        assert!(
            !belongs_to(theirs.id().expect("running"), 8),
            "not a prefix match"
        );
        let _ = ours.kill().await;
        let _ = theirs.kill().await;
    }
}
