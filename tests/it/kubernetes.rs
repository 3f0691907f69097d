//! The Kubernetes executor end to end against the fake API server: Jobs and Secrets as
//! specified, output streamed from pod logs, and every way a Job ends.

use std::time::Duration;

use proctor_tests::fake_kube::{FakeKube, Kind};
use proctor_tests::graphql_ws::{Protocol, WsClient};
use proctor_tests::{Stack, TestApp};
use serde_json::{Value, json};

const EXECUTE: &str =
    "mutation($p: String!, $a: [ArgInput!]) { execute(proc: $p, args: $a) { id } }";
const LOGS: &str = "subscription($id: ID!) { executionLogs(id: $id) { seq stream line } }";
const STATUS: &str =
    "subscription($id: ID!) { executionStatus(id: $id) { status exitCode reason executorRef } }";

/// A server using the Kubernetes executor against `fake`.
async fn spawn(stack: Stack, fake: &FakeKube, kubeconfig: &tempfile::TempDir) -> Option<TestApp> {
    let path = kubeconfig.path().join("config");
    fake.write_kubeconfig(&path);
    TestApp::builder()
        .stack(stack)
        .with_args(&[
            "--executor=kubernetes".to_owned(),
            format!("--kube-config={}", path.display()),
            "--kube-image-pull-grace-seconds=1".to_owned(),
            r#"--job-pod-annotations={"team":"ops"}"#.to_owned(),
        ])
        .try_spawn()
        .await
}

async fn define(app: &TestApp, input: Value) {
    let created = app
        .graphql(
            "mutation($i: ProcInput!) { upsertProc(input: $i) { name } }",
            json!({ "i": input }),
        )
        .await;
    assert_eq!(created["errors"], Value::Null, "{created}");
}

async fn execute(app: &TestApp, proc: &str, args: Value) -> String {
    let response = app.graphql(EXECUTE, json!({ "p": proc, "a": args })).await;
    response["data"]["execute"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{response}"))
        .to_owned()
}

async fn follow(app: &TestApp, query: &str, id: &str, field: &str) -> Vec<Value> {
    let mut client = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    client
        .run("1", query, json!({ "id": id }))
        .await
        .into_iter()
        .map(|payload| {
            assert_eq!(payload["errors"], Value::Null, "{payload}");
            payload["data"][field].clone()
        })
        .collect()
}

async fn lines(app: &TestApp, id: &str) -> Vec<String> {
    follow(app, LOGS, id, "executionLogs")
        .await
        .iter()
        .map(|line| line["line"].as_str().unwrap().to_owned())
        .collect()
}

async fn final_state(app: &TestApp, id: &str) -> Value {
    follow(app, STATUS, id, "executionStatus")
        .await
        .pop()
        .unwrap()
}

async fn a_run_becomes_a_labelled_job_with_its_secrets_referenced(stack: Stack) {
    const VALUE: &str = "kube-secret-3f9a";
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    fake.define_image("ghcr.io/acme/deploy:1.2", &["sh"]);
    define(&app, json!({
        "name": "deploy",
        "image": "ghcr.io/acme/deploy:1.2",
        "command": ["sh", "-c", "echo \"hello $NAME\"; echo \"token=$TOKEN\"; echo \"job=$EXECUTION_NAME\""],
        "args": [{ "name": "NAME", "required": true }],
        "secrets": [{ "name": "TOKEN" }],
        "timeoutSeconds": 120,
        "retries": 2,
    }))
    .await;
    let set = app
        .graphql(
            "mutation($v: String!) { setSecrets(proc: \"deploy\", secrets: [{ key: \"TOKEN\", value: $v }]) { isSet } }",
            json!({ "v": VALUE }),
        )
        .await;
    assert_eq!(set["errors"], Value::Null);
    let id = execute(&app, "deploy", json!([{ "name": "NAME", "value": "Ada" }])).await;
    let job_name = format!("proctor-{id}-deploy");

    let received = lines(&app, &id).await;
    if received.is_empty() {
        eprintln!("DEBUG final {}", final_state(&app, &id).await);
        eprintln!("DEBUG requests {:#?}", fake.requests());
    }
    assert_eq!(
        received,
        ["hello Ada", "token=***", &format!("job={job_name}")]
    );
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["executorRef"], job_name.as_str());

    let jobs = fake.objects(Kind::Job, "default");
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert!(
        !job.to_string().contains(VALUE),
        "no secret value in the Job: {job}"
    );
    assert_eq!(job["metadata"]["name"], job_name.as_str());
    assert_eq!(
        job["metadata"]["labels"],
        json!({ "app.kubernetes.io/managed-by": "proctor", "proctor.io/execution-id": id, "proctor.io/proc": "deploy" })
    );
    assert_eq!(job["metadata"]["annotations"], json!({ "team": "ops" }));
    assert_eq!(
        job["spec"]["template"]["metadata"]["annotations"],
        json!({ "team": "ops" })
    );
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 120);
    assert_eq!(job["spec"]["backoffLimit"], 2);
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/acme/deploy:1.2");
    let env: Vec<&Value> = container["env"].as_array().unwrap().iter().collect();
    let var = |name: &str| {
        *env.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(var("NAME")["value"], "Ada");
    assert_eq!(var("EXECUTION_ID")["value"], id.as_str());
    assert_eq!(
        var("TOKEN")["valueFrom"],
        json!({ "secretKeyRef": { "name": job_name, "key": "TOKEN" } })
    );

    let secrets = fake.objects(Kind::Secret, "default");
    assert_eq!(secrets.len(), 1);
    let owners = &secrets[0]["metadata"]["ownerReferences"];
    assert_eq!(owners[0]["kind"], "Job");
    assert_eq!(
        owners[0]["uid"], job["metadata"]["uid"],
        "the Job owns the Secret"
    );

    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["kubernetes"], "ok", "{ready}");
}

async fn image_pull_failures_fail_the_run(stack: Stack) {
    let fake = FakeKube::start().await;
    fake.make_unpullable("missing.example");
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    define(
        &app,
        json!({ "name": "ghost", "image": "missing.example/app:1", "command": ["true"] }),
    )
    .await;
    let id = execute(&app, "ghost", json!([])).await;
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    let reason = done["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("image pull failed: ErrImagePull"),
        "{reason}"
    );
    assert!(reason.contains("missing.example/app:1"), "{reason}");
    assert!(
        fake.objects(Kind::Job, "default").is_empty(),
        "the Job was deleted"
    );
}

async fn the_deadline_times_the_run_out(stack: Stack) {
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    define(&app, json!({ "name": "slow", "image": "busybox", "command": ["sleep", "30"], "timeoutSeconds": 1 })).await;
    let id = execute(&app, "slow", json!([])).await;
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "TIMED_OUT", "{done}");
    assert_eq!(done["reason"], "exceeded its timeout of 1 s");
}

async fn cancel_deletes_the_job_and_its_secret(stack: Stack) {
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    define(
        &app,
        json!({
            "name": "sleepy", "image": "busybox",
            "command": ["sh", "-c", "echo started; sleep 300"],
            "secrets": [{ "name": "KEY" }],
        }),
    )
    .await;
    app.graphql("mutation { setSecrets(proc: \"sleepy\", secrets: [{ key: \"KEY\", value: \"v\" }]) { key } }", json!({}))
        .await;
    let id = execute(&app, "sleepy", json!([])).await;
    let mut client = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    client.start("1", LOGS, json!({ "id": id })).await;
    assert_eq!(
        client.next_message().await["payload"]["data"]["executionLogs"]["line"],
        "started"
    );

    let cancelled = app
        .graphql(
            "mutation($id: ID!) { cancelExecution(id: $id) { status reason } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelExecution"]["status"], "CANCELLED",
        "{cancelled}"
    );
    for kind in [Kind::Job, Kind::Pod, Kind::Secret] {
        assert!(
            fake.objects(kind, "default").is_empty(),
            "{kind:?} left behind"
        );
    }
    let deletes: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("DELETE"))
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(
        deletes[0].contains(&format!("/jobs/proctor-{id}-sleepy")),
        "{deletes:?}"
    );
}

async fn retries_are_marked_and_the_last_exit_code_counts(stack: Stack) {
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    define(&app, json!({ "name": "flaky", "image": "busybox", "command": ["sh", "-c", "echo try; exit 4"], "retries": 1 })).await;
    let id = execute(&app, "flaky", json!([])).await;
    let received = follow(&app, LOGS, &id, "executionLogs").await;
    let shown: Vec<(&str, &str)> = received
        .iter()
        .map(|line| {
            (
                line["stream"].as_str().unwrap(),
                line["line"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert_eq!(shown[0], ("STDOUT", "try"));
    assert_eq!(shown[1].0, "SYSTEM");
    assert!(
        shown[1].1.starts_with("[proctor] attempt 2 (pod "),
        "{shown:?}"
    );
    assert_eq!(shown[2], ("STDOUT", "try"));
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["exitCode"], 4);
}

async fn a_proc_without_an_image_cannot_start(stack: Stack) {
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    define(&app, json!({ "name": "local-only", "command": ["true"] })).await;
    let id = execute(&app, "local-only", json!([])).await;
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "CREATION_FAILED");
    assert!(
        done["reason"].as_str().unwrap().contains("has no image"),
        "{done}"
    );
}

// ---------------------------------------------------------------------------------------------
// What real clusters do (the fake's demanding behaviours), on the embedded stack
// ---------------------------------------------------------------------------------------------

/// Lines the slow test proc prints, 50 ms apart.
const SLOW_LINES: usize = 60;

fn slow_proc(name: &str) -> Value {
    json!({
        "name": name,
        "image": "busybox",
        "command": ["sh", "-c", format!("for i in $(seq 1 {SLOW_LINES}); do echo line-$i; sleep 0.05; done")],
    })
}

fn slow_lines() -> Vec<String> {
    (1..=SLOW_LINES).map(|n| format!("line-{n}")).collect()
}

/// A fake cluster and an embedded server using it (the directory holds its kubeconfig).
async fn embedded() -> (FakeKube, tempfile::TempDir, TestApp) {
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let app = spawn(Stack::Embedded, &fake, &directory)
        .await
        .expect("the embedded stack needs nothing external");
    (fake, directory, app)
}

async fn stored(app: &TestApp, id: &str) -> Vec<String> {
    let data = app
        .graphql(
            "query($id: ID!) { execution(id: $id) { logs(first: 10000) { line } } }",
            json!({ "id": id }),
        )
        .await;
    data["data"]["execution"]["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("{data}"))
        .iter()
        .map(|line| line["line"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_for_stored(app: &TestApp, id: &str, at_least: usize) {
    for _ in 0..400 {
        if stored(app, id).await.len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {at_least} lines were stored");
}

#[tokio::test]
async fn image_only_procs_run_their_image_and_an_unknown_image_never_pulls() {
    let (fake, _directory, app) = embedded().await;
    // The v2 shape: an image and its arguments, no command.
    fake.define_image(
        "registry.example/greet:2",
        &["sh", "-c", "echo \"greetings, $NAME\"; echo from the image"],
    );
    define(
        &app,
        json!({ "name": "greet", "image": "registry.example/greet:2",
        "args": [{ "name": "NAME", "required": true }] }),
    )
    .await;
    let id = execute(&app, "greet", json!([{ "name": "NAME", "value": "Ada" }])).await;
    assert_eq!(lines(&app, &id).await, ["greetings, Ada", "from the image"]);
    assert_eq!(final_state(&app, &id).await["status"], "SUCCEEDED");

    define(
        &app,
        json!({ "name": "typo", "image": "registry.example/gret:2" }),
    )
    .await;
    let id = execute(&app, "typo", json!([])).await;
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    let reason = done["reason"].as_str().unwrap();
    assert!(
        reason.contains("image pull failed: ErrImagePull")
            && reason.contains("registry.example/gret:2"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_pod_that_is_never_scheduled_times_out_saying_why() {
    let (fake, _directory, app) = embedded().await;
    fake.make_unschedulable("-huge");
    define(
        &app,
        json!({ "name": "huge", "image": "busybox", "command": ["true"], "timeoutSeconds": 1 }),
    )
    .await;
    let id = execute(&app, "huge", json!([])).await;
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "TIMED_OUT", "{done}");
    assert_eq!(
        done["reason"],
        "exceeded its timeout of 1 s: its pod was never scheduled: 0/3 nodes are available: 3 Insufficient cpu."
    );
    assert!(lines(&app, &id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_watches_are_listed_again_and_no_line_is_lost_or_repeated() {
    let (fake, _directory, app) = embedded().await;
    define(&app, slow_proc("counter")).await;
    let id = execute(&app, "counter", json!([])).await;
    let watching = {
        let app_url = app.ws_url();
        let id = id.clone();
        tokio::spawn(async move {
            let mut client = WsClient::connect(&app_url, Protocol::TransportWs, json!({})).await;
            client.run("1", LOGS, json!({ "id": id })).await
        })
    };
    wait_for_stored(&app, &id, 10).await;
    let before = fake.requests().len();
    // The API server compacts its history: every watch ends, and resuming one from where it
    // was answers 410 Gone.
    fake.expire_watches();
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let streamed: Vec<String> = watching
        .await
        .unwrap()
        .iter()
        .map(|payload| {
            payload["data"]["executionLogs"]["line"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(streamed, slow_lines(), "streamed exactly once");
    assert_eq!(stored(&app, &id).await, slow_lines(), "stored exactly once");
    let after: Vec<String> = fake.requests().split_off(before);
    assert!(
        after.iter().any(
            |request| request.starts_with("GET /api/v1/namespaces/default/pods?")
                && !request.contains("watch=true")
        ),
        "the pods were listed again: {after:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_deleted_while_no_watch_saw_it_is_found_gone_by_the_new_list() {
    let (fake, _directory, app) = embedded().await;
    define(&app, slow_proc("counter")).await;
    let id = execute(&app, "counter", json!([])).await;
    wait_for_stored(&app, &id, 5).await;
    fake.delete_job_unwatched("default", &format!("proctor-{id}-counter"));
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "LOST", "{done}");
    assert_eq!(
        done["reason"],
        format!("its Kubernetes Job proctor-{id}-counter was deleted")
    );
}

#[tokio::test]
async fn bookmarks_are_taken_in_stride() {
    let (fake, _directory, app) = embedded().await;
    define(&app, slow_proc("counter")).await;
    let id = execute(&app, "counter", json!([])).await;
    assert_eq!(lines(&app, &id).await, slow_lines());
    assert_eq!(final_state(&app, &id).await["status"], "SUCCEEDED");
    assert!(
        fake.bookmarks_sent() > 0,
        "the watches asked for bookmarks and got some"
    );
}

#[tokio::test]
async fn finished_jobs_are_collected_after_their_ttl_and_the_run_keeps_its_end() {
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("config");
    fake.write_kubeconfig(&path);
    let app = TestApp::builder()
        .stack(Stack::Embedded)
        .with_args(&[
            "--executor=kubernetes".to_owned(),
            format!("--kube-config={}", path.display()),
            "--kube-job-ttl-seconds=1".to_owned(),
        ])
        .try_spawn()
        .await
        .expect("embedded");
    define(
        &app,
        json!({ "name": "quick", "image": "busybox", "command": ["sh", "-c", "echo done"] }),
    )
    .await;
    let id = execute(&app, "quick", json!([])).await;
    assert_eq!(lines(&app, &id).await, ["done"]);
    assert_eq!(final_state(&app, &id).await["status"], "SUCCEEDED");
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = fake.objects(Kind::Job, "default").len() + fake.objects(Kind::Pod, "default").len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the Job and its pods are gone after the TTL");
    let done = final_state(&app, &id).await;
    assert_eq!(
        done["status"], "SUCCEEDED",
        "its end stays as it was: {done}"
    );
    assert_eq!(stored(&app, &id).await, ["done"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_outage_loses_and_repeats_no_line() {
    let (fake, _directory, app) = embedded().await;
    define(&app, slow_proc("counter")).await;
    let id = execute(&app, "counter", json!([])).await;
    wait_for_stored(&app, &id, 10).await;
    // 503s for two seconds; every open watch and log stream breaks.
    fake.outage(Duration::from_secs(2));
    let done = final_state(&app, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(stored(&app, &id).await, slow_lines(), "stored exactly once");
    assert_eq!(
        lines(&app, &id).await,
        slow_lines(),
        "replayed exactly once"
    );
}

on_both_stacks!(
    a_run_becomes_a_labelled_job_with_its_secrets_referenced,
    image_pull_failures_fail_the_run,
    the_deadline_times_the_run_out,
    cancel_deletes_the_job_and_its_secret,
    retries_are_marked_and_the_last_exit_code_counts,
    a_proc_without_an_image_cannot_start,
);
