//! The Kubernetes executor end to end against the fake API server: Jobs and Secrets as
//! specified, output streamed from pod logs, and every way a Job ends.

use std::time::Duration;

use proctor_schema::system::ExecutorKind;
use proctor_server::config::KubeAccess;
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
        .with_settings(move |settings| {
            settings.executor = ExecutorKind::Kubernetes;
            settings.kube.access = KubeAccess::Kubeconfig(path);
            settings.kube.image_pull_grace = Duration::from_secs(1);
            settings
                .kube
                .annotations
                .insert("team".into(), "ops".into());
        })
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

on_both_stacks!(
    a_run_becomes_a_labelled_job_with_its_secrets_referenced,
    image_pull_failures_fail_the_run,
    the_deadline_times_the_run_out,
    cancel_deletes_the_job_and_its_secret,
    retries_are_marked_and_the_last_exit_code_counts,
    a_proc_without_an_image_cannot_start,
);
