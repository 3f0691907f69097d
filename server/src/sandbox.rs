//! What a local run may touch: never the server's data directory (its key file and database),
//! never the server's environment, and for writing only its own scratch directory.
//!
//! Every run starts in a directory of its own
//! (`<tmp>/proctor-runs-<uid>/<pid>/run-<id>-<random>`, mode 0700, `HOME` and `TMPDIR` point
//! there), removed when the run ends. The root is one per account, whatever the data
//! directory, and is used only when that account owns it and it is no symbolic link (`/tmp` is
//! everyone's); what servers of the account that no longer run left there is removed at
//! start-up, so killed servers leave nothing that grows. Then:
//! - **proctord as root**: the run runs as `PROCTOR_LOCAL_RUN_AS` (default `nobody`), without
//!   supplementary groups; the data directory is made 0700, so that account cannot enter it.
//! - **Landlock** (Linux 5.13+, enabled), whatever the user: the run may read and execute the
//!   whole file system except the denied directories (the data directory, and the directory
//!   of a SQLite file kept elsewhere), write only its scratch directory and `/dev`, and cannot
//!   inspect processes outside its own Landlock domain: not the server (`/proc/<pid>/environ`,
//!   ptrace) and not other runs, even of the same account. Landlock allows by path, so the
//!   rules list the siblings of each denied directory and of its ancestors; a sibling that is
//!   a symbolic link to a denied directory or one of its ancestors is left out.
//!
//!   The restriction comes in two Landlock layers, and a run gets what both allow. The
//!   **shared layer** (read and execute the allowed paths, write the directory holding this
//!   server's run directories and a few devices) is built once and made again only when one
//!   of the directories on the way to a denied one changed, so what a run is given is current;
//!   its rule count grows with those directories (a crowded `/tmp` holding the data directory
//!   means thousands), and building it per run cost more than the run. Runs restrict
//!   themselves with its descriptor, which the server hands down. The **own layer** of a run
//!   (handling only writing: its own scratch directory and the devices; scoped to its own
//!   processes) has a handful of rules and is built per run.
//! - **neither** (not root, no Landlock): the run has the server user's rights and can read
//!   the data directory; proctord says so at start-up.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
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
    /// Other directories runs must not read (e.g. that of a SQLite file kept elsewhere).
    pub also_denied: Vec<PathBuf>,
    /// Where this process makes its runs' scratch directories:
    /// `<tmp>/proctor-runs-<uid>/<pid>`.
    pub scratch_root: PathBuf,
    /// Switch to this account (proctord runs as root).
    pub run_as: Option<RunAs>,
    /// Restrict runs with Landlock (the kernel has it).
    pub landlock: bool,
    /// The shared Landlock layer, with the directory stamps it was built at.
    shared: Arc<Mutex<CachedLayer>>,
    /// Whether the log said the shared layer has many rules (once, when it is first built:
    /// at the first local run).
    warned_crowded: Arc<std::sync::atomic::AtomicBool>,
    /// `proctor-run`, when it was found: runs start through it (see [`Isolation::launcher`]).
    pub helper: Option<PathBuf>,
}

/// The Landlock ABI whose rights runs are restricted with (best effort below it).
const LANDLOCK_ABI: ABI = ABI::V6;

impl Isolation {
    /// Chooses the isolation for a server whose data directory is `data_dir`; `run_as` is
    /// `PROCTOR_LOCAL_RUN_AS` (`self` means: do not switch users).
    pub fn choose(data_dir: &Path, also_denied: &[PathBuf], run_as: &str) -> Result<Self, String> {
        let canonical = |path: &Path| path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let data_dir = canonical(data_dir);
        let also_denied: Vec<PathBuf> = also_denied
            .iter()
            .map(|path| canonical(path))
            .filter(|path| !path.starts_with(&data_dir) && path != Path::new("/"))
            .collect();
        let root = rustix::process::geteuid().is_root();
        let run_as = if root && run_as != "self" {
            Some(lookup_user(run_as)?)
        } else {
            None
        };
        if run_as.is_some() {
            close_to_others(&data_dir)?;
        }
        let landlock = landlock_available();
        let scratch_root = scratch_root();
        // Only a root this account owns is swept (another account's could lead anywhere).
        if owned_directory(&scratch_root).is_ok() {
            sweep_scratch(&scratch_root);
        }
        sweep_old_roots(&std::env::temp_dir());
        Ok(Self {
            data_dir,
            also_denied,
            scratch_root,
            run_as,
            landlock,
            shared: Arc::default(),
            warned_crowded: Arc::default(),
            helper: find_helper(),
        })
    }

    /// No isolation beyond the scratch directory (unit tests of the executor).
    pub fn none(data_dir: PathBuf) -> Self {
        Self {
            scratch_root: scratch_root(),
            data_dir,
            also_denied: Vec::new(),
            run_as: None,
            landlock: false,
            shared: Arc::default(),
            warned_crowded: Arc::default(),
            helper: None,
        }
    }

    /// Whether runs are kept from the data directory.
    pub fn protects_data_dir(&self) -> bool {
        self.run_as.is_some() || self.landlock
    }

    /// One line for the start-up log: what protects the data directory.
    pub fn describe(&self) -> String {
        let how = match (&self.helper, self.run_as.is_some() || self.landlock) {
            (Some(helper), true) => format!(" (started through {})", helper.display()),
            (None, true) => " (proctor-run was not found next to this program: runs start \
                              through fork, which is slower)"
                .to_owned(),
            (_, false) => String::new(),
        };
        format!("{}{how}", self.protection())
    }

    fn protection(&self) -> String {
        let dir = self.data_dir.display();
        match (self.run_as, self.landlock) {
            (Some(RunAs { uid, gid }), true) => format!(
                "local runs run as uid {uid} gid {gid} under Landlock: they cannot read {dir} \
                 nor see other processes, and write only their own directory"
            ),
            (Some(RunAs { uid, gid }), false) => format!(
                "local runs run as uid {uid} gid {gid} and cannot read {dir} (no Landlock in \
                 this kernel: runs of the same account can see each other's processes)"
            ),
            (None, true) => format!(
                "local runs run under Landlock: they cannot read {dir} nor see other \
                 processes, and write only their own directory"
            ),
            (None, false) => format!(
                "local runs run as this server's user and CAN read {dir} (no Landlock in this \
                 kernel; run proctord as root to run procs as PROCTOR_LOCAL_RUN_AS)"
            ),
        }
    }

    /// Creates the scratch directory of a run (owned by the run's account).
    pub fn scratch_dir(&self, execution_id: i64) -> io::Result<PathBuf> {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        // Others may pass through the parents (a run's account reaches its own directory)
        // but not list them.
        for parent in [
            self.scratch_root.clone(),
            self.scratch_root.join(std::process::id().to_string()),
        ] {
            match std::fs::create_dir(&parent) {
                Ok(()) => std::fs::set_permissions(
                    &parent,
                    std::os::unix::fs::PermissionsExt::from_mode(0o711),
                )?,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    owned_directory(&parent)?;
                }
                Err(error) => return Err(error),
            }
        }
        let dir = self
            .scratch_root
            .join(std::process::id().to_string())
            .join(format!("run-{execution_id}-{}", hex::encode(random)));
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        if let Some(RunAs { uid, gid }) = self.run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        Ok(dir)
    }

    /// The command that starts `program args…` through `proctor-run`, when runs are isolated
    /// and the helper is there; `None` to start the program itself (then [`Isolation::apply`]
    /// isolates it between fork and exec).
    ///
    /// Why a helper: switching user and installing Landlock must happen between fork and exec,
    /// and `fork` of a large server copies its page tables for every run. Started through
    /// `proctor-run`, a run is a `posix_spawn` of a small program that switches user, restricts
    /// itself with the shared layer (whose descriptor it inherits) and its own, and execs the
    /// program: the same isolation at a fraction of the cost.
    pub fn launcher(
        &self,
        program: &Path,
        args: &[String],
        scratch: &Path,
    ) -> io::Result<Option<Launcher>> {
        let Some(helper) = &self.helper else {
            return Ok(None);
        };
        if self.run_as.is_none() && !self.landlock {
            return Ok(None);
        }
        // A missing program is the server's error to report (CREATION_FAILED), as without
        // the helper, not an exit code of the helper.
        std::fs::metadata(program)?;
        let layer = if self.landlock {
            Some(self.shared_layer()?)
        } else {
            None
        };
        let account = match self.run_as {
            Some(RunAs { uid, gid }) => format!("{uid}:{gid}"),
            None => "-".to_owned(),
        };
        let mut command = tokio::process::Command::new(helper);
        command
            .arg(
                layer
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |fd| fd.as_raw_fd().to_string()),
            )
            .arg(scratch)
            .arg(account)
            .arg("--")
            .arg(program)
            .args(args)
            .current_dir(scratch);
        Ok(Some(Launcher { command, layer }))
    }

    /// Applies the isolation to `command`, which will run in `scratch`, unless it starts
    /// through [`Isolation::launcher`] (which isolates it itself).
    pub fn apply(&self, command: &mut tokio::process::Command, scratch: &Path) -> io::Result<()> {
        command.current_dir(scratch);
        if self.helper.is_some() && (self.run_as.is_some() || self.landlock) {
            return Ok(());
        }
        if let Some(RunAs { uid, gid }) = self.run_as {
            // As root, std also drops the supplementary groups before switching.
            command.uid(uid).gid(gid);
        }
        if self.landlock {
            let shared = self.shared_layer()?;
            let mut own = Some(own_layer(scratch)?);
            // SAFETY: the closure runs in the forked child before exec; it only moves an
            // already-built ruleset and makes system calls (prctl, landlock_restrict_self),
            // allocating nothing.
            #[allow(
                unsafe_code,
                reason = "Landlock must be installed in the child between fork and exec, which \
                          only pre_exec (an unsafe API) allows"
            )]
            unsafe {
                command.pre_exec(move || {
                    restrict_with(shared.as_fd())?;
                    match own.take() {
                        Some(own) => own.restrict_self().map(drop).map_err(io::Error::other),
                        None => Err(io::Error::other("the Landlock ruleset was used already")),
                    }
                });
            }
        }
        Ok(())
    }

    /// The shared layer: read and execute everything but the denied directories, write the
    /// directory of this server's run directories and a few devices. Built again only when a
    /// directory on the way to a denied one changed (its modification time moves when an entry
    /// is added or removed): listing the file system and adding its rules for every run would
    /// cost more than the run, and a stale list would deny what was created since.
    ///
    /// With the helper, the descriptor is inheritable: `proctor-run` gets it by number and
    /// marks it close-on-exec before the run's program starts, so no run keeps it.
    fn shared_layer(&self) -> io::Result<Arc<OwnedFd>> {
        let mut cached = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut denied = vec![self.data_dir.clone()];
        denied.extend(self.also_denied.iter().cloned());
        let stamps = ancestor_stamps(&denied);
        if let Some((built_at, layer)) = cached.as_ref()
            && *built_at == stamps
        {
            return Ok(Arc::clone(layer));
        }
        let read = AccessFs::from_read(LANDLOCK_ABI);
        let all = AccessFs::from_all(LANDLOCK_ABI);
        let mut ruleset = Ruleset::default()
            .handle_access(all)
            .and_then(Ruleset::create)
            .map_err(io::Error::other)?;
        let mut count = 0usize;
        for path in allowed_paths(&denied) {
            let access = if path.is_dir() {
                read
            } else {
                read & AccessFs::from_file(LANDLOCK_ABI)
            };
            // A path gone since it was listed is simply not allowed.
            if let Ok(fd) = PathFd::new(&path) {
                ruleset = ruleset
                    .add_rule(PathBeneath::new(fd, access))
                    .map_err(io::Error::other)?;
                count += 1;
            }
        }
        let runs = self.scratch_root.join(std::process::id().to_string());
        ruleset = ruleset
            .add_rule(PathBeneath::new(
                PathFd::new(&runs).map_err(io::Error::other)?,
                all,
            ))
            .map_err(io::Error::other)?;
        ruleset = device_rules(ruleset, all)?;
        let fd: OwnedFd = Option::from(ruleset)
            .ok_or_else(|| io::Error::other("this kernel does not enforce Landlock"))?;
        // Never a standard stream's number (a server started with one closed): the helper's
        // streams are set up over 0-2 before it reads the layer.
        let fd = if fd.as_raw_fd() <= 2 {
            rustix::io::fcntl_dupfd_cloexec(&fd, 3)?
        } else {
            fd
        };
        if self.helper.is_some() {
            rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty())?;
        }
        if count > CROWDED
            && !self
                .warned_crowded
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                rules = count,
                data_dir = %self.data_dir.display(),
                "the directories on the way to the data directory hold {count} entries, and \
                 each is a Landlock rule the kernel copies for every run: starting runs costs \
                 more (measured: 3,000 entries cut dispatch by a third); keep the data \
                 directory somewhere quieter than a shared /tmp"
            );
        }
        tracing::debug!(
            rules = count,
            "built the shared Landlock layer of local runs"
        );
        let layer = Arc::new(fd);
        *cached = Some((stamps, Arc::clone(&layer)));
        Ok(layer)
    }
}

/// What starts a run through `proctor-run`.
pub struct Launcher {
    /// The helper's command line.
    pub command: tokio::process::Command,
    /// The shared layer whose descriptor number the command line names: keep it until the
    /// command was spawned, or the number may name another file by then.
    pub layer: Option<Arc<OwnedFd>>,
}

/// The modification times of the directories [`allowed_paths`] lists (the ancestors of the
/// denied directories): when one moves, an entry appeared or went and the list is redone.
fn ancestor_stamps(denied: &[PathBuf]) -> Vec<Option<std::time::SystemTime>> {
    let mut directories: Vec<&Path> = denied
        .iter()
        .flat_map(|path| path.ancestors().skip(1))
        .collect();
    directories.sort();
    directories.dedup();
    directories
        .into_iter()
        .map(|dir| std::fs::metadata(dir).and_then(|meta| meta.modified()).ok())
        .collect()
}

/// More read rules than this in the shared layer gets a warning: the kernel copies them into
/// every run's domain.
const CROWDED: usize = 1_000;

/// The shared layer with the directory stamps it was built at.
type CachedLayer = Option<(Vec<Option<std::time::SystemTime>>, Arc<OwnedFd>)>;

/// Device files a run may write (the rest of `/dev`, `/dev/shm` included, is read-only: runs
/// share nothing through it).
const WRITABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// A run's own layer: it handles only writing (reading is the shared layer's business) and
/// allows it in the run's scratch directory and a few devices. Scoped: a run cannot signal
/// processes outside its own Landlock domain (other runs, the server) nor connect to their
/// abstract Unix sockets, where the kernel has those scopes (Linux 6.12+).
fn own_layer(scratch: &Path) -> io::Result<RulesetCreated> {
    let write = AccessFs::from_all(LANDLOCK_ABI) & !AccessFs::from_read(LANDLOCK_ABI);
    let scratch = PathFd::new(scratch).map_err(io::Error::other)?;
    let ruleset = Ruleset::default()
        .handle_access(write)
        .and_then(|ruleset| ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket))
        .and_then(Ruleset::create)
        .and_then(|ruleset| ruleset.add_rule(PathBeneath::new(scratch, write)))
        .map_err(io::Error::other)?;
    device_rules(ruleset, write)
}

/// Allows `access` (as far as it applies to files) on the writable devices and `/proc`:
/// `/dev/stdout`, `/dev/stderr` and `/dev/fd/N` reopen the run's own streams through
/// `/proc/self/fd`. Whose files there may be written is decided by ownership and, for other
/// processes, by Landlock's ptrace scope.
fn device_rules(
    mut ruleset: RulesetCreated,
    access: BitFlags<AccessFs>,
) -> io::Result<RulesetCreated> {
    for file in WRITABLE_DEVICES.iter().chain(&["/proc"]) {
        if let Ok(fd) = PathFd::new(file) {
            ruleset = ruleset
                .add_rule(PathBeneath::new(
                    fd,
                    access & AccessFs::from_file(LANDLOCK_ABI),
                ))
                .map_err(io::Error::other)?;
        }
    }
    Ok(ruleset)
}

/// Restricts the calling thread (and what it executes) with the Landlock ruleset `layer`,
/// after forbidding new privileges as Landlock requires of unprivileged callers. Allocates
/// nothing: it runs between fork and exec.
fn restrict_with(layer: BorrowedFd<'_>) -> io::Result<()> {
    rustix::thread::set_no_new_privs(true)?;
    // SAFETY: landlock_restrict_self(2) takes a descriptor number and flags and reads no
    // memory of this process; a number that is not a ruleset makes it fail with EBADFD.
    #[allow(
        unsafe_code,
        reason = "the landlock crate restricts only with rulesets it built in this process; a \
                  ruleset handed down by descriptor needs the system call itself"
    )]
    let result = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, layer.as_raw_fd(), 0) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `proctor-run` next to this program (or one directory up: test binaries live in `deps/`).
fn find_helper() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(HELPER), dir.parent()?.join(HELPER)]
        .into_iter()
        .find(|candidate| candidate.is_file())
}

/// The helper's file name.
const HELPER: &str = "proctor-run";

/// `proctor-run LAYER SCRATCH UID:GID -- PROGRAM ARGS…`: builds its own Landlock layer for
/// SCRATCH, switches to the account (or `-`), restricts itself with the shared layer (the
/// inherited descriptor LAYER, or `-` for no Landlock) and its own, and execs the program with
/// no descriptor but the standard streams. Its environment, working directory, process group
/// and standard streams are the run's (the server set them). Never returns: on failure it says
/// why on stderr and exits 126.
pub fn helper_main() -> ! {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let error = match run_helper(&args) {
        Ok(never) => match never {},
        Err(error) => error,
    };
    eprintln!("proctor-run: {error}");
    std::process::exit(126);
}

fn run_helper(args: &[std::ffi::OsString]) -> io::Result<std::convert::Infallible> {
    use std::os::unix::process::CommandExt as _;
    let usage = || io::Error::other("usage: proctor-run LAYER SCRATCH UID:GID -- PROGRAM [ARG…]");
    let [layer, scratch, account, separator, program, rest @ ..] = args else {
        return Err(usage());
    };
    if separator != "--" {
        return Err(usage());
    }
    // Open the scratch directory and devices while this account's rights still apply.
    let layers = if layer == "-" {
        None
    } else {
        let number: i32 = layer
            .to_str()
            .and_then(|text| text.parse().ok())
            .filter(|number| *number > 2)
            .ok_or_else(|| io::Error::other("LAYER must be a descriptor number or -"))?;
        Some((number, own_layer(Path::new(scratch))?))
    };
    if account != "-" {
        let run_as = account
            .to_str()
            .and_then(|text| text.split_once(':'))
            .and_then(|(uid, gid)| Some((uid.parse::<u32>().ok()?, gid.parse::<u32>().ok()?)))
            .filter(|(uid, gid)| *uid != 0 && *gid != 0)
            .ok_or_else(|| io::Error::other("the account must be UID:GID, not root"))?;
        let gid = rustix::process::Gid::from_raw(run_as.1);
        let uid = rustix::process::Uid::from_raw(run_as.0);
        // The run's output pipes were made by the server's account: hand them to the run's,
        // so `/dev/stdout` and `/dev/stderr` (which reopen them) work for it too.
        for stream in [
            io::stdout().as_fd().try_clone_to_owned(),
            io::stderr().as_fd().try_clone_to_owned(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = rustix::fs::fchown(&stream, Some(uid), Some(gid));
        }
        rustix::thread::set_thread_groups(&[])?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    }
    if let Some((number, own)) = layers {
        // SAFETY: the server passed this descriptor open and inheritable for this helper
        // (checked above to be no standard stream), and nothing else in this process owns it.
        #[allow(
            unsafe_code,
            reason = "a descriptor inherited from the server has no owner in this process; \
                      taking it by number is the only way to use and close it"
        )]
        let shared = unsafe { OwnedFd::from_raw_fd(number) };
        restrict_with(shared.as_fd())
            .map_err(|e| io::Error::other(format!("cannot restrict with Landlock: {e}")))?;
        // Closed at once, whatever follows: a ruleset takes rules through any descriptor to
        // it, and the run must never be able to widen the layer later runs get.
        drop(shared);
        own.restrict_self().map_err(io::Error::other)?;
    }
    close_inherited_descriptors()?;
    Err(std::process::Command::new(program).args(rest).exec())
}

/// Marks every descriptor but the standard streams close-on-exec, so the run gets none of
/// what the server held open without the flag (inherited pipes, a socket-activation listener)
/// and none of another run's that was being set up at the same moment. Fails when they cannot
/// be listed: a run must not start with descriptors nobody checked.
fn close_inherited_descriptors() -> io::Result<()> {
    let entries = std::fs::read_dir("/proc/self/fd").map_err(|e| {
        io::Error::other(format!(
            "cannot list /proc/self/fd to keep inherited descriptors from the run: {e}"
        ))
    })?;
    let numbers: Vec<i32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for number in numbers {
        // SAFETY: this single-threaded helper closes nothing between listing and flagging, so
        // a listed descriptor is open while it is borrowed (the directory's own, gone by now,
        // makes fcntl fail harmlessly); only the close-on-exec flag changes.
        #[allow(
            unsafe_code,
            reason = "descriptors inherited from the server have no owner in this process; \
                      borrowing them by number is the only way to flag them"
        )]
        let fd = unsafe { BorrowedFd::borrow_raw(number) };
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    Ok(())
}

/// The parent of the scratch directories of this account's servers.
fn scratch_root() -> PathBuf {
    let uid = rustix::process::geteuid().as_raw();
    std::env::temp_dir().join(format!("proctor-runs-{uid}"))
}

/// Refuses a directory that is a symbolic link or that another account owns: in a shared
/// `/tmp`, anyone may have made it first, and its owner could then swap what runs write.
fn owned_directory(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(dir)?;
    let uid = rustix::process::geteuid().as_raw();
    if meta.is_dir() && meta.uid() == uid {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} is not a directory of this account (uid {uid}): refusing to put runs there",
            dir.display()
        )))
    }
}

/// Removes the roots earlier versions made per data directory
/// (`proctor-runs-<12 hex digits>`), once no server that used them runs: each killed server
/// with a data directory of its own left one behind, and every entry there became a Landlock
/// rule of every run.
fn sweep_old_roots(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let is_old_root = name
            .to_str()
            .and_then(|name| name.strip_prefix("proctor-runs-"))
            .is_some_and(|hash| hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_old_root && owned_directory(&entry.path()).is_ok() {
            sweep_scratch(&entry.path());
            // Still holding a live server's directory: not empty, kept.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Removes the scratch directories that processes no longer running left behind (a server
/// that crashed or was killed), keeping those of live ones (another replica started from the
/// same data directory).
fn sweep_scratch(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            // Routine (every killed server of the account leaves some): nothing to act on.
            Ok(()) => tracing::debug!(
                path = %entry.path().display(),
                "removed the run directories a stopped server left behind"
            ),
            Err(error) => tracing::warn!(
                path = %entry.path().display(),
                %error,
                "cannot remove run directories a stopped server left behind"
            ),
        }
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

/// The siblings of each `denied` directory and of its ancestors: together, everything but
/// them. A symbolic link among them that leads to a denied directory, into one, or to one of
/// their ancestors is left out (a rule follows the link).
pub fn allowed_paths(denied: &[PathBuf]) -> Vec<PathBuf> {
    let mut allowed = Vec::new();
    walk(Path::new("/"), denied, &mut allowed);
    allowed
}

fn walk(dir: &Path, denied: &[PathBuf], allowed: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if denied.contains(&path) {
            continue;
        }
        let is_link = entry.file_type().is_ok_and(|kind| kind.is_symlink());
        if is_link {
            let Ok(target) = path.canonicalize() else {
                continue;
            };
            let reaches_denied = denied
                .iter()
                .any(|denied| denied.starts_with(&target) || target.starts_with(denied));
            if !reaches_denied {
                allowed.push(path);
            }
        } else if denied.iter().any(|denied| denied.starts_with(&path)) {
            walk(&path, denied, allowed);
        } else {
            allowed.push(path);
        }
    }
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
    let never_root = |run_as: RunAs| {
        if run_as.uid == 0 || run_as.gid == 0 {
            Err(format!(
                "{name:?} is root; runs need an unprivileged user (or self to keep proctord's \
                 user)"
            ))
        } else {
            Ok(run_as)
        }
    };
    if let Some((uid, gid)) = name.split_once(':')
        && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
    {
        return never_root(RunAs { uid, gid });
    }
    if let Ok(uid) = name.parse::<u32>() {
        return never_root(RunAs { uid, gid: uid });
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
    fn allowed_paths_cover_everything_but_the_denied_directories() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().canonicalize().unwrap();
        let denied = base.join("data");
        std::fs::create_dir_all(denied.join("inner")).unwrap();
        std::fs::create_dir(base.join("other")).unwrap();
        std::fs::create_dir(base.join("db")).unwrap();
        std::fs::write(base.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink(&base, base.join("up")).unwrap();
        std::os::unix::fs::symlink(denied.join("inner"), base.join("into")).unwrap();
        std::os::unix::fs::symlink(base.join("other"), base.join("sideways")).unwrap();
        let allowed = allowed_paths(&[denied.clone(), base.join("db")]);
        assert!(allowed.contains(&base.join("other")));
        assert!(allowed.contains(&base.join("file")));
        assert!(
            allowed.contains(&base.join("sideways")),
            "a harmless link stays"
        );
        for left_out in ["up", "into", "db", "data"] {
            assert!(
                !allowed.contains(&base.join(left_out)),
                "{left_out}: {allowed:?}"
            );
        }
        assert!(
            !allowed.iter().any(|path| denied.starts_with(path)),
            "{allowed:?}"
        );
        assert!(allowed.contains(&PathBuf::from("/usr")));
    }

    #[test]
    fn the_roots_of_earlier_versions_go_once_their_servers_are_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join("proctor-runs-0123456789ab");
        let live = tmp.path().join("proctor-runs-ba9876543210");
        let unrelated = tmp.path().join("proctor-runs-notahash");
        std::fs::create_dir_all(dead.join("999999999").join("run-1-ab")).unwrap();
        std::fs::create_dir_all(live.join(std::process::id().to_string())).unwrap();
        std::fs::create_dir_all(&unrelated).unwrap();
        sweep_old_roots(tmp.path());
        assert!(!dead.exists(), "a root whose servers are gone is removed");
        assert!(live.exists(), "a live server's root is kept");
        assert!(unrelated.exists(), "only what a server made is touched");
    }

    #[test]
    fn a_scratch_root_of_another_account_or_a_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        owned_directory(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let error = owned_directory(&link).unwrap_err().to_string();
        assert!(error.contains("refusing"), "{error}");
        if rustix::process::geteuid().is_root() {
            let foreign = tmp.path().join("foreign");
            std::fs::create_dir(&foreign).unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
            assert!(
                owned_directory(&foreign).is_err(),
                "another account's directory"
            );
        }
    }

    #[test]
    fn leftovers_of_stopped_servers_are_swept_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let dead = root.path().join("999999999");
        let live = root.path().join(std::process::id().to_string());
        let other = root.path().join("not-a-pid");
        for dir in [&dead, &live, &other] {
            std::fs::create_dir_all(dir.join("run-1-ab")).unwrap();
        }
        sweep_scratch(root.path());
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists(), "only what a server made is touched");
    }

    #[test]
    fn users_are_found_by_name_or_number() {
        assert_eq!(lookup_user("nobody").unwrap().uid, 65534);
        assert_eq!(
            lookup_user("1234:55").unwrap(),
            RunAs { uid: 1234, gid: 55 }
        );
        assert!(lookup_user("root").is_err(), "never root");
        assert!(lookup_user("0").is_err(), "never root");
        assert!(lookup_user("0:0").is_err(), "never root");
        assert!(lookup_user("1000:0").is_err(), "never root's group");
        assert!(lookup_user("no-such-user-here").is_err());
    }
}
