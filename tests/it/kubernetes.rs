//! The Kubernetes executor end to end against the fake API server: Jobs and Secrets as
//! specified, output streamed from pod logs, and every way a Job ends.

use std::time::Duration;

use proctor_tests::api::{
    ExecutionStatus::*, LogStream, image_proc, proc, required_arg, secret, sh,
};
use proctor_tests::fake_kube::{FakeKube, Kind};
use proctor_tests::{Stack, TestApp};
use serde_json::{Value, json};

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

async fn a_run_becomes_a_labelled_job_with_its_secrets_referenced(stack: Stack) {
    const VALUE: &str = "kube-secret-3f9a";
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    fake.define_image("ghcr.io/acme/deploy:1.2", &["sh"]);
    let mut deploy = image_proc(
        "deploy",
        "ghcr.io/acme/deploy:1.2",
        &sh(
            "echo \"hello $NAME\"; echo \"token=$TOKEN\"; echo \"job=$EXECUTION_NAME\"; \
             echo \"id=$PROCTOR_ID_TOKEN\"",
        ),
    );
    deploy.args = Some(vec![required_arg("NAME")]);
    deploy.identity = Some(proctor_tests::api::upsert_proc::IdentityInput {
        audience: vec!["sts.amazonaws.com".to_owned()],
    });
    deploy.secrets = Some(vec![secret("TOKEN")]);
    deploy.timeout_seconds = Some(120);
    deploy.retries = Some(2);
    deploy.resources = Some(proctor_tests::api::upsert_proc::ResourcesInput {
        cpu: Some("250m".to_owned()),
        memory: Some("128Mi".to_owned()),
    });
    app.api().define_proc(deploy).await;
    app.api()
        .set_secrets("deploy", &[("TOKEN", VALUE)])
        .await
        .expect("set");
    let id = app.api().execute("deploy", &[("NAME", "Ada")]).await;
    let job_name = format!("proctor-{id}-deploy");

    let received = app.api().log_lines(&id).await;
    assert_eq!(
        received,
        [
            "hello Ada",
            "token=***",
            &format!("job={job_name}"),
            "id=***"
        ]
    );
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, Succeeded, "{done:?}");
    assert_eq!(done.executor_ref.as_deref(), Some(job_name.as_str()));

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
    assert_eq!(
        proctor_tests::pod_security::restricted_violations(&job["spec"]["template"]["spec"]),
        Vec::<String>::new(),
        "a Job's pod meets Pod Security \"restricted\""
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["automountServiceAccountToken"], false,
        "no API token unless an account is named"
    );
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/acme/deploy:1.2");
    assert_eq!(
        container["resources"],
        json!({ "requests": { "cpu": "250m", "memory": "128Mi" },
                "limits": { "cpu": "250m", "memory": "128Mi" } }),
        "the proc's resources are the container's requests and limits"
    );
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
    assert_eq!(
        var("PROCTOR_ID_TOKEN")["valueFrom"],
        json!({ "secretKeyRef": { "name": job_name, "key": "PROCTOR_ID_TOKEN" } }),
        "the identity token is kept in the run's Secret"
    );

    let secrets = fake.objects(Kind::Secret, "default");
    assert_eq!(secrets.len(), 1);
    let owners = &secrets[0]["metadata"]["ownerReferences"];
    assert_eq!(owners[0]["kind"], "Job");
    assert_eq!(
        owners[0]["uid"], job["metadata"]["uid"],
        "the Job owns the Secret"
    );

    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["checks"]["kubernetes"], "ok", "{ready}");
}

async fn image_pull_failures_fail_the_run(stack: Stack) {
    let fake = FakeKube::start().await;
    fake.make_unpullable("missing.example");
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    app.api()
        .define_proc(image_proc("ghost", "missing.example/app:1", &["true"]))
        .await;
    let id = app.api().execute("ghost", &[]).await;
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, Failed, "{done:?}");
    let reason = done.reason.as_deref().unwrap_or_default();
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
    let mut slow = image_proc("slow", "busybox", &["sleep", "30"]);
    slow.timeout_seconds = Some(1);
    app.api().define_proc(slow).await;
    let id = app.api().execute("slow", &[]).await;
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, TimedOut, "{done:?}");
    assert_eq!(done.reason.as_deref(), Some("exceeded its timeout of 1 s"));
}

async fn cancel_deletes_the_job_and_its_secret(stack: Stack) {
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    let mut sleepy = image_proc("sleepy", "busybox", &sh("echo started; sleep 300"));
    sleepy.secrets = Some(vec![secret("KEY")]);
    app.api().define_proc(sleepy).await;
    app.api()
        .set_secrets("sleepy", &[("KEY", "v")])
        .await
        .expect("set");
    let id = app.api().execute("sleepy", &[]).await;
    assert_eq!(app.api().first_line(&id).await, "started");

    let cancelled = app.api().cancel(&id).await.expect("cancelled");
    assert_eq!(cancelled.status, Cancelled, "{cancelled:?}");
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
    let mut flaky = image_proc("flaky", "busybox", &sh("echo try; exit 4"));
    flaky.retries = Some(1);
    app.api().define_proc(flaky).await;
    let id = app.api().execute("flaky", &[]).await;
    let api = app.api();
    let shown: Vec<(LogStream, String)> = api
        .follow_lines(&id, 0)
        .await
        .into_iter()
        .map(|line| (line.stream, line.line))
        .collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert_eq!(shown[0], (LogStream::Stdout, "try".to_owned()));
    assert_eq!(shown[1].0, LogStream::System);
    assert!(
        shown[1].1.starts_with("[proctor] attempt 2 (pod "),
        "{shown:?}"
    );
    assert_eq!(shown[2], (LogStream::Stdout, "try".to_owned()));
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, Failed, "{done:?}");
    assert_eq!(done.exit_code, Some(4));
}

async fn a_proc_without_an_image_cannot_start(stack: Stack) {
    let fake = FakeKube::start().await;
    let directory = tempfile::tempdir().unwrap();
    let Some(app) = spawn(stack, &fake, &directory).await else {
        return;
    };
    app.api().define_proc(proc("local-only", &["true"])).await;
    let id = app.api().execute("local-only", &[]).await;
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, CreationFailed);
    assert!(
        done.reason
            .as_deref()
            .unwrap_or_default()
            .contains("has no image"),
        "{done:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// What real clusters do (the fake's demanding behaviours), on the embedded stack
// ---------------------------------------------------------------------------------------------

/// Lines the slow test proc prints, 50 ms apart.
const SLOW_LINES: usize = 60;

fn slow_proc(name: &str) -> proctor_tests::api::ProcInput {
    let script = format!("for i in $(seq 1 {SLOW_LINES}); do echo line-$i; sleep 0.05; done");
    image_proc(name, "busybox", &sh(&script))
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

#[tokio::test]
async fn image_only_procs_run_their_image_and_an_unknown_image_never_pulls() {
    let (fake, _directory, app) = embedded().await;
    // The v2 shape: an image and its arguments, no command.
    fake.define_image(
        "registry.example/greet:2",
        &["sh", "-c", "echo \"greetings, $NAME\"; echo from the image"],
    );
    let mut greet = image_proc("greet", "registry.example/greet:2", &[]);
    greet.args = Some(vec![required_arg("NAME")]);
    app.api().define_proc(greet).await;
    let id = app.api().execute("greet", &[("NAME", "Ada")]).await;
    assert_eq!(
        app.api().log_lines(&id).await,
        ["greetings, Ada", "from the image"]
    );
    assert_eq!(app.api().await_final(&id).await.status, Succeeded);

    app.api()
        .define_proc(image_proc("typo", "registry.example/gret:2", &[]))
        .await;
    let id = app.api().execute("typo", &[]).await;
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, Failed, "{done:?}");
    let reason = done.reason.as_deref().unwrap_or_default();
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
    let mut huge = image_proc("huge", "busybox", &["true"]);
    huge.timeout_seconds = Some(1);
    app.api().define_proc(huge).await;
    let id = app.api().execute("huge", &[]).await;
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, TimedOut, "{done:?}");
    assert_eq!(
        done.reason.as_deref(),
        Some(
            "exceeded its timeout of 1 s: its pod was never scheduled: 0/3 nodes are available: 3 Insufficient cpu."
        )
    );
    assert!(app.api().log_lines(&id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_watches_are_listed_again_and_no_line_is_lost_or_repeated() {
    let (fake, _directory, app) = embedded().await;
    app.api().define_proc(slow_proc("counter")).await;
    let id = app.api().execute("counter", &[]).await;
    let api = app.api();
    let (streamed, before) = tokio::join!(api.log_lines(&id), async {
        api.wait_for_stored(&id, 10).await;
        let before = fake.requests().len();
        // The API server compacts its history: every watch ends, and resuming one from where
        // it was answers 410 Gone.
        fake.expire_watches();
        let done = api.await_final(&id).await;
        assert_eq!(done.status, Succeeded, "{done:?}");
        before
    });
    assert_eq!(streamed, slow_lines(), "streamed exactly once");
    assert_eq!(
        api.stored_text(&id).await,
        slow_lines(),
        "stored exactly once"
    );
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
    app.api().define_proc(slow_proc("counter")).await;
    let id = app.api().execute("counter", &[]).await;
    app.api().wait_for_stored(&id, 5).await;
    fake.delete_job_unwatched("default", &format!("proctor-{id}-counter"));
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, Lost, "{done:?}");
    assert_eq!(
        done.reason,
        Some(format!(
            "its Kubernetes Job proctor-{id}-counter was deleted"
        ))
    );
}

#[tokio::test]
async fn bookmarks_are_taken_in_stride() {
    let (fake, _directory, app) = embedded().await;
    app.api().define_proc(slow_proc("counter")).await;
    let id = app.api().execute("counter", &[]).await;
    assert_eq!(app.api().log_lines(&id).await, slow_lines());
    assert_eq!(app.api().await_final(&id).await.status, Succeeded);
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
    app.api()
        .define_proc(image_proc("quick", "busybox", &sh("echo done")))
        .await;
    let id = app.api().execute("quick", &[]).await;
    assert_eq!(app.api().log_lines(&id).await, ["done"]);
    assert_eq!(app.api().await_final(&id).await.status, Succeeded);
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = fake.objects(Kind::Job, "default").len() + fake.objects(Kind::Pod, "default").len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the Job and its pods are gone after the TTL");
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, Succeeded, "its end stays as it was: {done:?}");
    assert_eq!(app.api().stored_text(&id).await, ["done"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_outage_loses_and_repeats_no_line() {
    let (fake, _directory, app) = embedded().await;
    app.api().define_proc(slow_proc("counter")).await;
    let id = app.api().execute("counter", &[]).await;
    app.api().wait_for_stored(&id, 10).await;
    // 503s for two seconds; every open watch and log stream breaks.
    fake.outage(Duration::from_secs(2));
    let done = app.api().await_final(&id).await;
    assert_eq!(done.status, Succeeded, "{done:?}");
    assert_eq!(
        app.api().stored_text(&id).await,
        slow_lines(),
        "stored exactly once"
    );
    assert_eq!(
        app.api().log_lines(&id).await,
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
