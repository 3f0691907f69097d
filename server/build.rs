//! Builds the playground's browser assets (`playground/` → `playground/dist`, which `proctord`
//! serves at `/playground`) so that `cargo run --bin proctord` gives a working playground.
//!
//! Runs `npm ci` when `node_modules` is missing or older than `package-lock.json`, then the
//! esbuild script (about 2 s), which first checks the UI's GraphQL operations against the
//! committed SDL. Without npm, or with `PROCTOR_SKIP_PLAYGROUND_BUILD` set, nothing is built and
//! `/playground` answers with how to build it; but a UI whose build runs and fails (an
//! operation that no longer fits the schema) fails this build.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

fn main() {
    let playground = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playground");
    for input in [
        "package.json",
        "package-lock.json",
        "build.mjs",
        "src",
        "static",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            playground.join(input).display()
        );
    }
    // The UI's operations are typed from the SDL: a schema change rebuilds (and re-checks) them.
    println!(
        "cargo:rerun-if-changed={}",
        playground.join("../schema/schema.graphql").display()
    );
    println!("cargo:rerun-if-env-changed=PROCTOR_SKIP_PLAYGROUND_BUILD");
    if std::env::var_os("PROCTOR_SKIP_PLAYGROUND_BUILD").is_some() {
        return;
    }
    match build(&playground) {
        Ok(()) => {}
        // No npm or node here, or no network for `npm ci`: the server builds without its UI.
        Err(Problem::Unavailable(problem)) => println!(
            "cargo:warning=the playground was not built ({problem}); /playground will say how to \
             build it"
        ),
        // The UI itself is wrong (e.g. an operation no longer fits the schema): fail the build.
        Err(Problem::Broken(problem)) => panic!("the playground does not build: {problem}"),
    }
}

/// Why the playground was not built.
enum Problem {
    /// The tools are missing or could not install: build the server without the UI.
    Unavailable(String),
    /// The build ran and failed: the UI's sources are wrong.
    Broken(String),
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

fn build(dir: &Path) -> Result<(), Problem> {
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    let locked = modified(&dir.join("package-lock.json"));
    if installed.is_none() || installed < locked {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir))
        .map_err(|problem| Problem::Unavailable(problem.message()))?;
    }
    run(Command::new("node").arg("build.mjs").current_dir(dir)).map_err(|problem| match problem {
        Failure::CannotStart(message) => Problem::Unavailable(message),
        Failure::Failed(message) => Problem::Broken(message),
    })
}

/// How a command went wrong.
enum Failure {
    /// It could not be started (not installed).
    CannotStart(String),
    /// It ran and failed.
    Failed(String),
}

impl Failure {
    fn message(self) -> String {
        match self {
            Self::CannotStart(message) | Self::Failed(message) => message,
        }
    }
}

fn run(command: &mut Command) -> Result<(), Failure> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| Failure::CannotStart(format!("{shown} could not start: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "{shown} failed: {}{}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
