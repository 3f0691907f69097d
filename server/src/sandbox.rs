//! What a local run may touch: never the server's data directory (its key file and database),
//! never the server's environment, only its own scratch directory.
//!
//! Every run starts in a directory of its own (`<tmp>/proctor-run-<id>-<random>`, mode 0700,
//! `HOME` and `TMPDIR` point there), removed when the run ends. Then, by how proctord runs:
//! - **as root**: the run runs as `PROCTOR_LOCAL_RUN_AS` (default `nobody`), without
//!   supplementary groups. The data directory is 0700 and owned by root, so it cannot be read;
//!   the server's `/proc/<pid>/environ` belongs to root too.
//! - **as any other user** (or `PROCTOR_LOCAL_RUN_AS=self` as root): a Landlock ruleset, where
//!   the kernel has Landlock (Linux 5.13+, enabled), allows the whole file system except the
//!   data directory. Landlock allows by path, so the rules list the siblings of the data
//!   directory and of each of its ancestors: entries created later next to them are not
//!   covered (they are denied), which is why runs get their own `TMPDIR`. Landlock also keeps
//!   the run from inspecting the server process (`/proc/<pid>/environ`, ptrace). Without
//!   Landlock the run is only as separated as the user account allows; proctord says so at
//!   start-up.

use std::io;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr,
};

/// The account a run switches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// How local runs are kept from the server's secrets.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The directory runs must not read.
    pub data_dir: PathBuf,
    /// Switch to this account (proctord runs as root).
    pub run_as: Option<RunAs>,
    /// Restrict runs with Landlock (proctord runs as another user and the kernel has it).
    pub landlock: bool,
}

/// The Landlock ABI whose rights runs are restricted with (best effort below it).
const LANDLOCK_ABI: ABI = ABI::V5;

impl Isolation {
    /// Chooses the isolation for a server whose data directory is `data_dir`; `run_as` is
    /// `PROCTOR_LOCAL_RUN_AS` (`self` means: do not switch users).
    pub fn choose(data_dir: &Path, run_as: &str) -> Result<Self, String> {
        let data_dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let root = rustix::process::geteuid().is_root();
        let run_as = if root && run_as != "self" {
            Some(lookup_user(run_as)?)
        } else {
            None
        };
        if run_as.is_some() {
            close_to_others(&data_dir)?;
        }
        let landlock = run_as.is_none() && landlock_available();
        Ok(Self {
            data_dir,
            run_as,
            landlock,
        })
    }

    /// No isolation beyond the scratch directory (unit tests of the executor).
    pub fn none(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            run_as: None,
            landlock: false,
        }
    }

    /// Whether runs are kept from the data directory.
    pub fn protects_data_dir(&self) -> bool {
        self.run_as.is_some() || self.landlock
    }

    /// One line for the start-up log: what protects the data directory.
    pub fn describe(&self) -> String {
        match (self.run_as, self.landlock) {
            (Some(RunAs { uid, gid }), _) => format!(
                "local runs run as uid {uid} gid {gid} and cannot read {}",
                self.data_dir.display()
            ),
            (None, true) => format!(
                "local runs are restricted by Landlock and cannot read {}",
                self.data_dir.display()
            ),
            (None, false) => format!(
                "local runs run as this server's user and CAN read {} (no Landlock in this \
                 kernel; run proctord as root to run procs as PROCTOR_LOCAL_RUN_AS)",
                self.data_dir.display()
            ),
        }
    }

    /// Creates the scratch directory of a run (owned by the run's account).
    pub fn scratch_dir(&self, execution_id: i64) -> io::Result<PathBuf> {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let dir = std::env::temp_dir().join(format!(
            "proctor-run-{execution_id}-{}",
            hex::encode(random)
        ));
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        if let Some(RunAs { uid, gid }) = self.run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        Ok(dir)
    }

    /// Applies the isolation to `command`, which will run in `scratch`.
    pub fn apply(&self, command: &mut tokio::process::Command, scratch: &Path) -> io::Result<()> {
        command.current_dir(scratch);
        if let Some(RunAs { uid, gid }) = self.run_as {
            // As root, std also drops the supplementary groups before switching.
            command.uid(uid).gid(gid);
        }
        if self.landlock {
            let mut ruleset = Some(self.ruleset(scratch)?);
            // SAFETY: the closure runs in the forked child before exec; it only moves an
            // already-built ruleset and makes two system calls (prctl, landlock_restrict_self),
            // allocating nothing.
            #[allow(
                unsafe_code,
                reason = "Landlock must be installed in the child between fork and exec, which \
                          only pre_exec (an unsafe API) allows"
            )]
            unsafe {
                command.pre_exec(move || match ruleset.take() {
                    Some(ruleset) => ruleset.restrict_self().map(drop).map_err(io::Error::other),
                    None => Err(io::Error::other("the Landlock ruleset was used already")),
                });
            }
        }
        Ok(())
    }

    /// Everything but the data directory (and the way to it), for files and directories.
    fn ruleset(&self, scratch: &Path) -> io::Result<RulesetCreated> {
        let all = AccessFs::from_all(LANDLOCK_ABI);
        let mut ruleset = Ruleset::default()
            .handle_access(all)
            .and_then(Ruleset::create)
            .map_err(io::Error::other)?;
        for path in allowed_paths(&self.data_dir)
            .into_iter()
            .chain([scratch.to_path_buf()])
        {
            let Ok(fd) = PathFd::new(&path) else {
                continue; // Gone since it was listed.
            };
            let access = if path.is_dir() {
                all
            } else {
                all & AccessFs::from_file(LANDLOCK_ABI)
            };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .map_err(io::Error::other)?;
        }
        Ok(ruleset)
    }
}

/// Makes `data_dir` 0700 when others may enter it (the account runs switch to is "others").
fn close_to_others(data_dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(data_dir) else {
        return Ok(()); // Created later, with 0700.
    };
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private (0700): {e}", data_dir.display()))?;
        tracing::info!(
            path = %data_dir.display(),
            "made the data directory private (0700) so local runs cannot read it"
        );
    }
    Ok(())
}

/// The siblings of `denied` and of each of its ancestors: together, everything but `denied`.
pub fn allowed_paths(denied: &Path) -> Vec<PathBuf> {
    let mut allowed = Vec::new();
    let mut parent = PathBuf::from("/");
    for component in denied.components().skip(1) {
        let next = parent.join(component);
        if let Ok(entries) = std::fs::read_dir(&parent) {
            allowed.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| *path != next),
            );
        }
        parent = next;
    }
    allowed
}

/// Whether the running kernel enforces Landlock.
pub fn landlock_available() -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(Ruleset::create)
        .is_ok()
}

/// The uid and gid of `name` (a user name from `/etc/passwd`, or `uid` / `uid:gid`).
pub fn lookup_user(name: &str) -> Result<RunAs, String> {
    let name = name.trim();
    if let Some((uid, gid)) = name.split_once(':')
        && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
    {
        return Ok(RunAs { uid, gid });
    }
    if let Ok(uid) = name.parse::<u32>() {
        return Ok(RunAs { uid, gid: uid });
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd to find {name:?}: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == name)
        .and_then(|fields| {
            Some(RunAs {
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
        .filter(|run_as| run_as.uid != 0)
        .ok_or_else(|| {
            format!(
                "no user {name:?} other than root in /etc/passwd (name an unprivileged user, \
                 uid:gid, or self to keep proctord's user)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_paths_cover_everything_but_the_denied_directory() {
        let root = tempfile::tempdir().unwrap();
        let denied = root.path().join("data");
        std::fs::create_dir(&denied).unwrap();
        std::fs::create_dir(root.path().join("other")).unwrap();
        std::fs::write(root.path().join("file"), b"x").unwrap();
        let allowed = allowed_paths(&denied);
        assert!(allowed.contains(&root.path().join("other")));
        assert!(allowed.contains(&root.path().join("file")));
        assert!(
            !allowed.iter().any(|path| denied.starts_with(path)),
            "{allowed:?}"
        );
        assert!(allowed.contains(&PathBuf::from("/usr")));
    }

    #[test]
    fn users_are_found_by_name_or_number() {
        assert_eq!(lookup_user("nobody").unwrap().uid, 65534);
        assert_eq!(
            lookup_user("1234:55").unwrap(),
            RunAs { uid: 1234, gid: 55 }
        );
        assert!(lookup_user("root").is_err(), "never root");
        assert!(lookup_user("no-such-user-here").is_err());
    }
}
