//! Finding and stopping local runs left behind by a previous `proctord` (killed, crashed).
//!
//! A local run is recorded as `<pid>:<start>` (its process-group leader's pid and start time,
//! in clock ticks since boot, from `/proc/<pid>/stat`). A pid alone is not an identity: after
//! a crash the pid may belong to an unrelated process by now. The rules:
//!
//! - the leader is alive and started at the recorded time: it is ours; its whole group is
//!   stopped (SIGTERM, then SIGKILL after the grace period);
//! - the pid is alive but started at another time: it was reused, which Linux only does once
//!   no process of our group is left (a pid in use as a process-group id is never handed out
//!   again), so there is nothing of ours to stop;
//! - the pid is gone: members of its group started no earlier than the leader are ours (the
//!   group id cannot have been reused while they exist); they are stopped the same way.

use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// How a local run is identified across a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessRef {
    /// The process-group leader (the run's main process).
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start: u64,
}

impl ProcessRef {
    /// The reference of a process that is running now.
    pub fn of(pid: u32) -> Option<Self> {
        stat(pid).map(|stat| Self {
            pid,
            start: stat.start,
        })
    }

    /// Parses `<pid>:<start>` (a bare pid, as stored by older versions, has no identity and
    /// gives `None`).
    pub fn parse(text: &str) -> Option<Self> {
        let (pid, start) = text.split_once(':')?;
        Some(Self {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }
}

impl std::fmt::Display for ProcessRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.pid, self.start)
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

/// Processes of the group led (once) by `run`, by the rules in the module docs.
fn members(run: ProcessRef) -> usize {
    match stat(run.pid) {
        Some(leader) if leader.start == run.start => 1 + others(run),
        Some(_) => 0,
        None => others(run),
    }
}

fn others(run: ProcessRef) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != run.pid)
        .filter_map(stat)
        .filter(|stat| stat.group == run.pid && stat.start >= run.start)
        .count()
}

/// What became of a left-behind run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Processes of it were still running and are gone now.
    Killed,
    /// Nothing of it was running.
    AlreadyGone,
    /// Processes of it survived even SIGKILL (they are stuck in the kernel).
    Survived,
}

/// Stops what is left of `run` (see the module docs): SIGTERM to its group, SIGKILL after
/// `grace`.
pub async fn stop(run: ProcessRef, grace: Duration) -> Stopped {
    if members(run) == 0 {
        return Stopped::AlreadyGone;
    }
    let Some(group) = i32::try_from(run.pid).ok().and_then(Pid::from_raw) else {
        return Stopped::AlreadyGone;
    };
    let _ = kill_process_group(group, Signal::TERM);
    let until = Instant::now() + grace;
    while Instant::now() < until && members(run) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if members(run) > 0 {
        let _ = kill_process_group(group, Signal::KILL);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && members(run) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if members(run) > 0 {
        Stopped::Survived
    } else {
        Stopped::Killed
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
        };
        assert_eq!(ProcessRef::parse(&run.to_string()), Some(run));
        assert_eq!(ProcessRef::parse("4242"), None);
        assert_eq!(ProcessRef::parse("x:1"), None);
    }

    #[test]
    fn this_process_has_a_start_time_and_its_group() {
        let me = ProcessRef::of(std::process::id()).expect("this process is in /proc");
        assert!(me.start > 0);
        let own = stat(std::process::id()).expect("readable");
        assert_eq!(own.start, me.start);
    }

    #[tokio::test]
    async fn a_reused_pid_is_never_signalled() {
        // A process alive under the pid but started at another time is somebody else's.
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("sleep starts");
        let pid = child.id().expect("running");
        let real = ProcessRef::of(pid).expect("in /proc");
        let stale = ProcessRef {
            pid,
            start: real.start.saturating_sub(1),
        };
        assert_eq!(
            stop(stale, Duration::from_millis(100)).await,
            Stopped::AlreadyGone
        );
        assert!(
            child.try_wait().expect("waitable").is_none(),
            "still running"
        );
        assert_eq!(stop(real, Duration::from_secs(2)).await, Stopped::Killed);
        let status = child.wait().await.expect("reaped");
        assert!(!status.success());
    }
}
