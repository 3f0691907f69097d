//! The benchmark compiles and every scenario runs (seconds-long `--quick` sizes): a smoke run,
//! not a measurement. Its invariants still hold at any size: no gaps or duplicates in the
//! fan-out, no duplicate schedule slots.

use proctor_tests::api::ExecutionStatus;
use proctor_tests::infra::{postgres_url, redis_url};
use proctor_tests::{Proctord, proctord_command};
use serde_json::Value;
use tokio::process::Command;

#[tokio::test]
async fn every_benchmark_scenario_runs_in_a_quick_smoke() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("latest.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_proctor-bench"));
    command.args(["all", "--quick", "--out"]).arg(&path);
    command
        .env_remove("PROCTOR_BENCH_DATABASE_URL")
        .env_remove("PROCTOR_BENCH_REDIS_URL");
    if let Some(url) = postgres_url() {
        command.env("PROCTOR_BENCH_DATABASE_URL", url);
    }
    if let Some(url) = redis_url() {
        command.env("PROCTOR_BENCH_REDIS_URL", url);
    }
    let output = command.output().await.expect("proctor-bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.starts_with("| Measure | Result | Target | Met |"),
        "{table}"
    );
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in [
        "dispatch_per_s",
        "submit_per_s",
        "fork_exec_per_s",
        "first_log_p50_ms",
        "first_log_p99_ms",
        "gql_req_per_s",
        "rest_req_per_s",
        "sched_p99_lateness_ms",
        "idle_rss_mib",
        "ready_ms",
        "fanout_batched_10_lines_per_s",
        "rss_after_burst_mib",
        "rss_after_burst_share",
    ] {
        assert!(
            results[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} in {results}"
        );
    }
    assert_eq!(results["fanout_gaps"], 0, "{results}");
    assert_eq!(results["fanout_duplicates"], 0, "{results}");
    assert_eq!(results["fanout_stream_errors"], 0, "{results}");
    assert_eq!(results["sched_duplicates"], 0, "{results}");
    assert_eq!(results["sched_missed"], 0, "{results}");
    assert_eq!(results["dispatch_failed"], 0, "{results}");
    if postgres_url().is_some() {
        assert!(
            results["pg_tx_per_s"].as_f64().is_some_and(|v| v > 0.0)
                && results["pg_commit_per_s"].as_f64().is_some_and(|v| v > 0.0),
            "{results}"
        );
        // The database's durability is recorded beside what was measured on it.
        assert!(
            ["on", "off"].contains(&results["pg_fsync"].as_str().unwrap_or_default()),
            "{results}"
        );
    }
    if redis_url().is_some() {
        assert!(
            results["fanout_redis_10_lines_per_s"].as_f64().is_some()
                && results["fanout_redis_batched_10_lines_per_s"]
                    .as_f64()
                    .is_some(),
            "{results}"
        );
    }
    assert!(results["git_rev"].is_string() && results["machine"]["cpus"].as_u64().is_some());
}

#[tokio::test]
async fn the_benchmark_measures_a_running_server_and_leaves_it_clean() {
    let directory = tempfile::tempdir().unwrap();
    let mut command = proctord_command(directory.path());
    command
        .env("PROCTOR_APP_PORT", "0")
        .env("PROCTOR_REGISTER_EXAMPLES", "false")
        .env("PROCTOR_GRAPHQL_MAX_COMPLEXITY", "100000");
    let server = Proctord::spawn(command);
    let out = directory.path().join("latest.json");
    // Without --pid the bench finds the process listening on the URL's port: the server RSS
    // of the fan-out and idle scenarios (run without it) proves it found this one.
    let pid_given_for = ["dispatch", "scheduler"];
    for scenario in ["dispatch", "fanout", "idle", "scheduler"] {
        let mut bench = Command::new(env!("CARGO_BIN_EXE_proctor-bench"));
        bench
            .args([scenario, "--quick", "--url"])
            .arg(server.url(""));
        if pid_given_for.contains(&scenario) {
            bench.arg("--pid").arg(server.pid().to_string());
        }
        let output = bench
            .arg("--out")
            .arg(&out)
            .env_remove("PROCTOR_BENCH_DATABASE_URL")
            .env_remove("PROCTOR_BENCH_REDIS_URL")
            .env_remove("PROCTOR_BENCH_PID")
            .output()
            .await
            .expect("proctor-bench runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{scenario}: {stderr}");
        let results: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        match scenario {
            "dispatch" => assert!(results["dispatch_per_s"].as_f64().is_some_and(|v| v > 0.0)),
            "fanout" => {
                assert_eq!(results["fanout_gaps"], 0, "{results}");
                assert!(
                    results["fanout_memory_10_lines_per_s"].as_f64().is_some()
                        && results["fanout_memory_batched_10_lines_per_s"]
                            .as_f64()
                            .is_some(),
                    "{results}"
                );
                assert!(
                    results["fanout_memory_10_server_rss_mib"]
                        .as_f64()
                        .is_some_and(|v| v > 0.0)
                );
            }
            "idle" => assert!(
                results["idle_subs_rss_mib"]
                    .as_f64()
                    .is_some_and(|v| v > 0.0)
            ),
            _ => assert_eq!(results["sched_missed"], 0, "{results}"),
        }
    }
    // Nothing of the bench keeps running or firing on the server it measured.
    let api = proctor_tests::api::Api::at(&server.url(""));
    let schedules = api
        .ok::<proctor_tests::api::ListSchedules>(proctor_tests::api::list_schedules::Variables {
            filter: None,
        })
        .await
        .schedules;
    assert!(schedules.edges.is_empty(), "{schedules:?}");
    let mut unfinished = proctor_tests::api::no_filter();
    unfinished.status = Some(ExecutionStatus::UNFINISHED.to_vec());
    let running = api.executions(10, None, unfinished).await.unwrap();
    assert!(running.edges.is_empty(), "{running:?}");
    server.terminate();
}
