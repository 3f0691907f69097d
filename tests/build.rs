//! Marks the integration tests that need infrastructure this machine does not offer as
//! ignored, so `cargo nextest run` reports them as skipped instead of passing them vacuously.
//! Under `CI=true` nothing is ignored: a missing service fails the test (see `infra`).
//!
//! - `proctor_no_postgres`: `PROCTOR_TEST_DATABASE_URL` is not set;
//! - `proctor_no_redis`: `PROCTOR_TEST_REDIS_URL` is not set;
//! - `proctor_no_redis_server`: no `redis-server` program on `PATH` (tests that stop and start
//!   their own Redis).

fn main() {
    for name in [
        "proctor_no_postgres",
        "proctor_no_redis",
        "proctor_no_redis_server",
    ] {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    for var in [
        "CI",
        "PROCTOR_TEST_DATABASE_URL",
        "PROCTOR_TEST_REDIS_URL",
        "PATH",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let ci = std::env::var("CI").is_ok_and(|value| value == "true" || value == "1");
    if ci {
        return;
    }
    let set = |var: &str| std::env::var(var).is_ok_and(|value| !value.trim().is_empty());
    if !set("PROCTOR_TEST_DATABASE_URL") {
        println!("cargo::rustc-cfg=proctor_no_postgres");
    }
    if !set("PROCTOR_TEST_REDIS_URL") {
        println!("cargo::rustc-cfg=proctor_no_redis");
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join("redis-server").is_file())
    });
    if !on_path {
        println!("cargo::rustc-cfg=proctor_no_redis_server");
    }
}
