//! Builds the playground's browser assets (`playground/` → `playground/dist`, which `proctord`
//! serves at `/playground`) so that `cargo run --bin proctord` gives a working playground.
//!
//! Runs `npm ci` when `node_modules` is missing or older than `package-lock.json`, then the
//! esbuild script (about 2 s). Without npm, or with `PROCTOR_SKIP_PLAYGROUND_BUILD` set, nothing
//! is built and `/playground` answers with how to build it; the server itself never depends on
//! the assets.

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
    println!("cargo:rerun-if-env-changed=PROCTOR_SKIP_PLAYGROUND_BUILD");
    if std::env::var_os("PROCTOR_SKIP_PLAYGROUND_BUILD").is_some() {
        return;
    }
    if let Err(problem) = build(&playground) {
        println!(
            "cargo:warning=the playground was not built ({problem}); /playground will say how to \
             build it"
        );
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

fn build(dir: &Path) -> Result<(), String> {
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    let locked = modified(&dir.join("package-lock.json"));
    if installed.is_none() || installed < locked {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir))?;
    }
    run(Command::new("node").arg("build.mjs").current_dir(dir))
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| format!("{shown} could not start: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
