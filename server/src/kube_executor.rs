//! The Kubernetes executor: one `batch/v1` Job per execution.
//!
//! - The Job is named after the run (`proctor-<id>-<proc>`), labelled
//!   `app.kubernetes.io/managed-by=proctor`, `proctor.io/execution-id` and `proctor.io/proc`,
//!   carries the configured annotations, `activeDeadlineSeconds`, `backoffLimit`,
//!   `ttlSecondsAfterFinished` and `restartPolicy: Never`, and runs the proc's image (with its
//!   command, when the proc has one).
//! - Job pods meet Pod Security "restricted": they run as `PROCTOR_KUBE_JOB_RUN_AS_USER` (uid
//!   and gid 65534 by default, or the image's own non-root user; `runAsNonRoot` always), with
//!   the runtime's seccomp profile, no privilege escalation and no capabilities, and get no
//!   API token unless `PROCTOR_KUBE_SERVICE_ACCOUNT_NAME` names an account for them.
//! - Secret values travel in a Secret of the same name, owned by the Job (so Kubernetes deletes
//!   it with the Job) and referenced from the container env; the Job spec never holds a value.
//! - The run is followed through watches on the Job and its pods; each attempt's log is read
//!   with `follow=true` and `timestamps=true`, a marker line separating attempts. The log
//!   cursor (pod, timestamp of the last stored line, lines at that timestamp) lets a
//!   re-attached run continue exactly after what was stored, with `sinceTime`, even after the
//!   kubelet rotated the log (see [`crate::kube_logs`]); a log stream that breaks is read on
//!   the same way.
//! - Image pull failures that last past a grace period fail the run; `DeadlineExceeded` is a
//!   timeout; `BackoffLimitExceeded` a failure with the last exit code. Cancel deletes the Job
//!   with background propagation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use proctor_entity::values::LogStream;
use proctor_schema::executions::runner::run_name;
use proctor_schema::ports::executor::{
    EnvValue, Executor, ExecutorError, LogCursor, RunEvent, RunEvents, RunRef, RunSpec,
};
use proctor_schema::system::ExecutorKind;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{JobUser, KubeAccess, KubeSettings};
use crate::kube_logs::{Piece, PodLog, Position};

/// The container's name in every Job.
pub const CONTAINER: &str = "proc";
/// Label holding the execution id.
pub const EXECUTION_LABEL: &str = "proctor.io/execution-id";
/// Label holding the proc name.
pub const PROC_LABEL: &str = "proctor.io/proc";
/// Events buffered between the cluster and the runner.
const EVENT_BUFFER: usize = 1024;
/// How long a log that broke or ended early waits before it is opened again.
const REOPEN_DELAY: Duration = Duration::from_millis(500);
/// Failed opens of a pod's log, once its Job ended, after which its rest is given up.
const MAX_OPEN_FAILURES: u32 = 20;
/// Container waiting reasons that mean the image cannot be pulled.
const PULL_FAILURES: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Why the executor could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KubeSetupError {
    /// The kubeconfig or in-cluster environment is unusable.
    #[error("{0}")]
    Config(String),
}

/// Runs procs as Kubernetes Jobs; see the module docs.
pub struct KubernetesExecutor {
    client: kube::Client,
    settings: KubeSettings,
}

impl KubernetesExecutor {
    /// Connects as `settings.access` says.
    pub async fn connect(settings: KubeSettings) -> Result<Self, KubeSetupError> {
        let options = kube::config::KubeConfigOptions {
            context: settings.context.clone(),
            ..Default::default()
        };
        let config = match &settings.access {
            KubeAccess::InCluster => kube::Config::incluster().map_err(|e| {
                KubeSetupError::Config(format!(
                    "not running inside a cluster ({e}); set PROCTOR_KUBE_CONFIG=out-of-cluster \
                     or a kubeconfig path"
                ))
            })?,
            KubeAccess::OutOfCluster => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| KubeSetupError::Config(format!("the default kubeconfig: {e}")))?,
            KubeAccess::Kubeconfig(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    KubeSetupError::Config(format!("kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| {
                        KubeSetupError::Config(format!("kubeconfig {}: {e}", path.display()))
                    })?
            }
        };
        let client = kube::Client::try_from(config)
            .map_err(|e| KubeSetupError::Config(format!("cannot build the client: {e}")))?;
        Ok(Self::with_client(client, settings))
    }

    /// An executor using an existing client (tests inject mocked ones).
    pub fn with_client(client: kube::Client, settings: KubeSettings) -> Self {
        Self { client, settings }
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    fn labels(spec: &RunSpec) -> Value {
        json!({
            "app.kubernetes.io/managed-by": "proctor",
            EXECUTION_LABEL: spec.execution_id.to_string(),
            PROC_LABEL: spec.proc_name,
        })
    }

    /// The Secret holding the run's secret values (owner reference added once the Job exists).
    pub fn secret_manifest(&self, spec: &RunSpec, name: &str) -> Option<Value> {
        let data: BTreeMap<&str, &str> = spec
            .env
            .iter()
            .filter_map(|(key, value)| match value {
                EnvValue::Secret(secret) => Some((key.as_str(), secret.as_str())),
                EnvValue::Plain(_) => None,
            })
            .collect();
        (!data.is_empty()).then(|| {
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": name, "labels": Self::labels(spec) },
                "type": "Opaque",
                "stringData": data,
            })
        })
    }

    /// The Job for a run; secret values are referenced from the Secret `name`, never inlined.
    pub fn job_manifest(&self, spec: &RunSpec, name: &str, image: &str) -> Value {
        let env: Vec<Value> = spec
            .env
            .iter()
            .map(|(key, value)| match value {
                EnvValue::Plain(plain) => json!({ "name": key, "value": plain }),
                EnvValue::Secret(_) => json!({
                    "name": key,
                    "valueFrom": { "secretKeyRef": { "name": name, "key": key } }
                }),
            })
            .collect();
        let mut container = json!({
            "name": CONTAINER,
            "image": image,
            "env": env,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": { "drop": ["ALL"] },
            },
        });
        if let Some(command) = &spec.command {
            container["command"] = json!(command);
        }
        if let Some(resources) = &spec.resources {
            let mut amounts = serde_json::Map::new();
            if let Some(cpu) = &resources.cpu {
                amounts.insert("cpu".to_owned(), json!(cpu));
            }
            if let Some(memory) = &resources.memory {
                amounts.insert("memory".to_owned(), json!(memory));
            }
            // The same as request and limit: what the proc asked for is what it gets.
            container["resources"] = json!({ "requests": amounts, "limits": amounts });
        }
        // Pod Security "restricted": never root, the runtime's seccomp profile; no API token
        // unless the operator named an account for runs.
        let mut pod_spec = json!({
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {
                "runAsNonRoot": true,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "containers": [container],
        });
        if let JobUser::Id(id) = self.settings.run_as {
            pod_spec["securityContext"]["runAsUser"] = json!(id);
            pod_spec["securityContext"]["runAsGroup"] = json!(id);
        }
        if let Some(account) = &self.settings.service_account {
            pod_spec["serviceAccountName"] = json!(account);
            pod_spec["automountServiceAccountToken"] = json!(true);
        }
        let labels = Self::labels(spec);
        let annotations = json!(self.settings.annotations);
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": name, "labels": labels, "annotations": annotations },
            "spec": {
                "activeDeadlineSeconds": spec.timeout.unwrap_or(self.settings.active_deadline).as_secs(),
                "backoffLimit": spec.retries.unwrap_or(self.settings.retries),
                "ttlSecondsAfterFinished": self.settings.ttl_after_finished.as_secs(),
                "template": {
                    "metadata": { "labels": labels, "annotations": annotations },
                    "spec": pod_spec,
                }
            }
        })
    }

    fn follow(
        &self,
        job: String,
        execution_id: i64,
        cursor: Option<LogCursor>,
        started: bool,
        cancelled: CancellationToken,
    ) -> RunEvents {
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let follower = Follower {
            client: self.client.clone(),
            namespace: self.settings.namespace.clone(),
            job,
            execution_id,
            cursor,
            started,
            image_pull_grace: self.settings.image_pull_grace,
            events,
            cancelled,
        };
        tokio::spawn(follower.run());
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|event| (event, receiver))
        })
        .boxed()
    }
}

fn start_error(what: &str, error: kube::Error) -> ExecutorError {
    match error {
        kube::Error::Api(status) => ExecutorError::Start(format!("{what}: {}", status.message)),
        other => ExecutorError::Unavailable(format!("{what}: {other}")),
    }
}

#[async_trait]
impl Executor for KubernetesExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Kubernetes
    }

    /// A Job's `backoffLimit` starts failed attempts again.
    fn retries_attempts(&self) -> bool {
        true
    }

    /// A Job runs on without its server; another replica re-attaches.
    fn runs_outlive_server(&self) -> bool {
        true
    }

    async fn start(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
    ) -> Result<RunEvents, ExecutorError> {
        let image = spec.image.clone().ok_or_else(|| {
            ExecutorError::Start(
                "the proc has no image, and the Kubernetes executor runs images (set `image`)"
                    .into(),
            )
        })?;
        let name = run_name(&spec.proc_name, spec.execution_id);
        let secret = match self.secret_manifest(&spec, &name) {
            Some(manifest) => {
                let secret: Secret =
                    serde_json::from_value(manifest).expect("a valid Secret manifest");
                Some(
                    self.secrets()
                        .create(&PostParams::default(), &secret)
                        .await
                        .map_err(|e| start_error("creating the Secret", e))?,
                )
            }
            None => None,
        };
        let job: Job = serde_json::from_value(self.job_manifest(&spec, &name, &image))
            .expect("a valid Job manifest");
        let created = match self.jobs().create(&PostParams::default(), &job).await {
            Ok(created) => created,
            Err(error) => {
                if secret.is_some() {
                    let _ = self.secrets().delete(&name, &DeleteParams::default()).await;
                }
                return Err(start_error("creating the Job", error));
            }
        };
        if secret.is_some() {
            let owner = json!({ "metadata": { "ownerReferences": [{
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": created.metadata.uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }] } });
            if let Err(error) = self
                .secrets()
                .patch(&name, &PatchParams::default(), &Patch::Merge(owner))
                .await
            {
                // The run works without it; the Secret then outlives the Job.
                tracing::warn!(job = %name, %error, "cannot make the Job own its Secret");
            }
        }
        Ok(self.follow(name, spec.execution_id, None, false, cancel))
    }

    async fn check(&self) -> Result<(), ExecutorError> {
        self.client
            .apiserver_version()
            .await
            .map(drop)
            .map_err(|e| ExecutorError::Unavailable(format!("the Kubernetes API: {e}")))
    }

    async fn reattach(
        &self,
        run: RunRef,
        cancel: CancellationToken,
    ) -> Result<RunEvents, ExecutorError> {
        let RunRef {
            execution_id,
            executor_ref,
            cursor,
        } = run;
        let executor_ref = executor_ref.as_str();
        let unavailable = |e: kube::Error| ExecutorError::Unavailable(e.to_string());
        let job = if executor_ref.is_empty() {
            // Stopped before the run was seen starting: find its Job by label.
            let params = ListParams::default().labels(&format!("{EXECUTION_LABEL}={execution_id}"));
            self.jobs()
                .list(&params)
                .await
                .map_err(unavailable)?
                .items
                .into_iter()
                .next()
        } else {
            self.jobs()
                .get_opt(executor_ref)
                .await
                .map_err(unavailable)?
        };
        let job = job.ok_or_else(|| {
            ExecutorError::NotFound(format!(
                "its Kubernetes Job {} no longer exists",
                if executor_ref.is_empty() {
                    "(never seen running)"
                } else {
                    executor_ref
                }
            ))
        })?;
        let name = job.metadata.name.unwrap_or_default();
        Ok(self.follow(name, execution_id, cursor, !executor_ref.is_empty(), cancel))
    }
}

async fn delete_job(jobs: &Api<Job>, name: &str) -> Result<(), kube::Error> {
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(other) => Err(other),
    }
}

/// Follows one Job until it ends.
struct Follower {
    client: kube::Client,
    namespace: String,
    job: String,
    execution_id: i64,
    cursor: Option<LogCursor>,
    started: bool,
    image_pull_grace: Duration,
    events: mpsc::Sender<RunEvent>,
    cancelled: CancellationToken,
}

/// What the follower knows about the cluster.
#[derive(Default)]
struct Seen {
    job: Option<Job>,
    job_deleted: bool,
    /// Each watch delivered its initial list: the view is complete enough to decide.
    job_synced: bool,
    pods_synced: bool,
    /// While a watch lists again (its history expired, `410 Gone`): what the list held so
    /// far, so what it no longer holds is known to be gone.
    job_relisted: Option<bool>,
    pods_relisted: Option<HashSet<String>>,
    pods: HashMap<String, Pod>,
    /// The order pods were first delivered in, breaking ties between attempts created in the
    /// same second (`creationTimestamp` has whole seconds; pod names end in random suffixes).
    first_seen: HashMap<String, u64>,
    consumed: HashSet<String>,
    /// Where the consumed output of each pod read so far ends (a read that broke continues
    /// from there).
    positions: HashMap<String, Position>,
    /// A log that ended or broke before its container did is opened again no sooner.
    reopen_after: Option<Instant>,
    /// Failed attempts to open each pod's log in a row.
    open_failures: HashMap<String, u32>,
    /// Pods seen finished or deleted: attempts that ended (the Job counts them).
    ended: HashSet<String>,
    /// Some attempt's container ever started.
    ever_started: bool,
    /// Why the scheduler could not place a pod, as last reported (kept after the pod goes).
    unscheduled: Option<String>,
    pull_failing_since: HashMap<String, Instant>,
}

impl Seen {
    /// Pods in creation order (the attempts). Within one second, the watch's order decides:
    /// the Job controller creates attempt n + 1 only after attempt n failed, so the watch
    /// delivers them in that order.
    fn attempts(&self) -> Vec<&Pod> {
        let mut pods: Vec<&Pod> = self.pods.values().collect();
        pods.sort_by_key(|pod| {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            (
                pod.metadata.creation_timestamp.clone().map(|t| t.0),
                self.first_seen.get(name).copied().unwrap_or(u64::MAX),
            )
        });
        pods
    }

    /// Records a pod's latest state.
    fn put_pod(&mut self, pod: Pod) {
        if let Some(name) = pod.metadata.name.clone() {
            let order = u64::try_from(self.first_seen.len()).unwrap_or(u64::MAX);
            self.first_seen.entry(name.clone()).or_insert(order);
            if finished(&pod) {
                self.ended.insert(name.clone());
            }
            self.ever_started |= has_log(&pod);
            if let Some(why) = unschedulable(&pod) {
                self.unscheduled = Some(why);
            }
            self.pods.insert(name, pod);
        }
    }

    /// A pod that is gone (deleted, or missing from a new list): its attempt ended.
    fn drop_pod(&mut self, name: &str) {
        self.pods.remove(name);
        self.ended.insert(name.to_owned());
    }
}

/// Whether the pod's container has started (running or finished), i.e. has a log to read.
fn has_log(pod: &Pod) -> bool {
    container_state(pod).is_some_and(|state| state.running.is_some() || state.terminated.is_some())
}

fn container_state(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerState> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|status| status.name == CONTAINER)?
        .state
        .as_ref()
}

/// Whether the attempt is over (its container exited, or the pod failed without running).
fn finished(pod: &Pod) -> bool {
    container_state(pod).is_some_and(|state| state.terminated.is_some())
        || pod
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
}

/// Why no attempt ever ran, when the scheduler said so: "its pod was never scheduled: …"
/// (remembered after the pod is gone: at the deadline the Job controller deletes it).
fn never_scheduled(seen: &Seen) -> Option<String> {
    if seen.ever_started {
        return None;
    }
    seen.unscheduled
        .as_ref()
        .map(|why| format!("its pod was never scheduled: {why}"))
}

/// The scheduler's reason for not placing `pod`, when it gave one.
fn unschedulable(pod: &Pod) -> Option<String> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some(
        condition
            .message
            .clone()
            .or_else(|| condition.reason.clone())
            .unwrap_or_else(|| "no reason given".to_owned()),
    )
}

fn exit_code(pod: &Pod) -> Option<i32> {
    container_state(pod)?
        .terminated
        .as_ref()
        .map(|terminated| terminated.exit_code)
}

fn pull_failure(pod: &Pod) -> Option<String> {
    let waiting = container_state(pod)?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    PULL_FAILURES
        .contains(&reason)
        .then(|| match &waiting.message {
            Some(message) => format!("{reason}: {message}"),
            None => reason.to_owned(),
        })
}

/// The Job's final condition: `(type, reason, message)`.
fn job_outcome(job: &Job) -> Option<(String, Option<String>, Option<String>)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| (c.type_.clone(), c.reason.clone(), c.message.clone()))
}

impl Follower {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn emit(&self, event: RunEvent) -> bool {
        self.events.send(event).await.is_ok()
    }

    async fn run(mut self) {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut job_events = watcher(
            jobs.clone(),
            watcher::Config::default().fields(&format!("metadata.name={}", self.job)),
        )
        .default_backoff()
        .boxed();
        let mut pod_events = watcher(
            self.pods(),
            watcher::Config::default().labels(&format!("{EXECUTION_LABEL}={}", self.execution_id)),
        )
        .default_backoff()
        .boxed();
        let mut seen = Seen::default();
        if let Some(cursor) = &self.cursor {
            seen.positions
                .insert(cursor.source.clone(), Position::of(cursor));
        }
        let mut reading: Option<PodLog> = None;
        let cancelled = self.cancelled.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = job_events.try_next() => match event {
                    Ok(Some(event)) => apply_job_event(&mut seen, event),
                    Ok(None) => return,
                    Err(error) => tracing::debug!(job = %self.job, %error, "job watch interrupted; resuming"),
                },
                event = pod_events.try_next() => match event {
                    Ok(Some(event)) => apply_pod_event(&mut seen, event),
                    Ok(None) => return,
                    Err(error) => tracing::debug!(job = %self.job, %error, "pod watch interrupted; resuming"),
                },
                piece = next_piece(&mut reading) => match piece {
                    Some(Ok(piece)) => {
                        let event = RunEvent::Log {
                            stream: LogStream::Stdout,
                            line: piece.text,
                            cursor: piece.cursor,
                            continues: piece.continues,
                            replaced: piece.replaced,
                        };
                        if !self.emit(event).await {
                            return;
                        }
                    }
                    Some(Err(error)) => {
                        // The stream broke (the API server went away): continue from the last
                        // line read once it answers again.
                        if let Some(broken) = reading.take() {
                            tracing::debug!(pod = %broken.pod, %error, "log stream broke; reading on from the last line");
                            seen.positions.insert(broken.pod.clone(), broken.position.clone());
                            seen.reopen_after = Some(Instant::now() + REOPEN_DELAY);
                        }
                    }
                    None => {
                        if let Some(ended) = reading.take() {
                            seen.positions.insert(ended.pod.clone(), ended.position.clone());
                            if ended.final_read {
                                // Opened after the container ended: its log is read to the end.
                                seen.consumed.insert(ended.pod);
                            } else {
                                // The container may still be writing, or the connection was
                                // cut: read on from here (a read opened after it ended decides).
                                let delay = if seen.pods.get(&ended.pod).is_some_and(finished) {
                                    Duration::ZERO
                                } else {
                                    REOPEN_DELAY
                                };
                                seen.reopen_after = Some(Instant::now() + delay);
                            }
                        }
                    }
                },
                () = cancelled.cancelled() => {
                    if let Err(error) = delete_job(&jobs, &self.job).await {
                        tracing::warn!(job = %self.job, %error, "cannot delete the Job");
                    }
                    self.emit(RunEvent::Cancelled).await;
                    return;
                }
                _ = tick.tick() => {}
            }
            if let Some(last) = self.advance(&mut seen, &mut reading, &jobs).await {
                self.emit(last).await;
                return;
            }
        }
    }

    /// Starts reading the next attempt's log, reports the start, and decides whether the run
    /// is over. Returns the final event when it is.
    async fn advance(
        &mut self,
        seen: &mut Seen,
        reading: &mut Option<PodLog>,
        jobs: &Api<Job>,
    ) -> Option<RunEvent> {
        if seen.job_deleted {
            if reading.is_some() {
                return None;
            }
            // Collected after it ended (its TTL): the end it reached stands.
            if let Some(outcome) = seen.job.as_ref().and_then(job_outcome) {
                return Some(self.final_event(seen, outcome));
            }
            return Some(RunEvent::Lost {
                reason: format!("its Kubernetes Job {} was deleted", self.job),
            });
        }
        let attempts: Vec<(String, bool)> = seen
            .attempts()
            .iter()
            .map(|pod| (pod.metadata.name.clone().unwrap_or_default(), has_log(pod)))
            .collect();
        if !self.started && attempts.iter().any(|(_, started)| *started) {
            self.started = true;
            if !self
                .emit(RunEvent::Started {
                    executor_ref: self.job.clone(),
                })
                .await
            {
                return None;
            }
        }
        // Attempts before the cursor's pod were stored completely by an earlier supervisor.
        if let Some(cursor) = &self.cursor
            && let Some(position) = attempts.iter().position(|(pod, _)| *pod == cursor.source)
        {
            for (pod, _) in &attempts[..position] {
                seen.consumed.insert(pod.clone());
            }
        }
        let may_open = seen
            .reopen_after
            .is_none_or(|after| Instant::now() >= after);
        if reading.is_none() && may_open {
            let next = attempts
                .iter()
                .enumerate()
                .find(|(_, (pod, started))| *started && !seen.consumed.contains(pod));
            if let Some((index, (pod, _))) = next {
                let from = match seen.positions.get(pod) {
                    Some(position) => position.clone(),
                    None => {
                        // The first read of this attempt.
                        if index > 0 {
                            self.emit(RunEvent::Attempt {
                                number: u32::try_from(index + 1).unwrap_or(u32::MAX),
                                detail: format!("pod {pod}"),
                            })
                            .await;
                        }
                        seen.positions.insert(pod.clone(), Position::default());
                        Position::default()
                    }
                };
                let final_read = seen.pods.get(pod).is_none_or(finished);
                match PodLog::open(&self.pods(), pod, CONTAINER, from, final_read).await {
                    Ok(log) => {
                        *reading = Some(log);
                        seen.reopen_after = None;
                        seen.open_failures.remove(pod);
                    }
                    Err(error) => {
                        let failures = seen.open_failures.entry(pod.clone()).or_default();
                        *failures += 1;
                        let over = seen.job.as_ref().and_then(job_outcome).is_some();
                        if over && *failures >= MAX_OPEN_FAILURES {
                            // The Job ended and this pod's log stays unreadable (its node is
                            // gone): say so and go on, rather than never finishing.
                            let note = format!(
                                "[proctor] the rest of the log of pod {pod} could not be read \
                                 ({error}); it is lost"
                            );
                            self.emit(RunEvent::Log {
                                stream: LogStream::System,
                                line: note,
                                cursor: None,
                                continues: false,
                                replaced: false,
                            })
                            .await;
                            seen.consumed.insert(pod.clone());
                        } else {
                            tracing::debug!(pod = %pod, %error, "log not readable yet; retrying");
                            seen.reopen_after = Some(Instant::now() + REOPEN_DELAY);
                        }
                    }
                }
            }
        }
        let pulls: Vec<(String, Option<String>)> = seen
            .attempts()
            .iter()
            .map(|pod| {
                (
                    pod.metadata.name.clone().unwrap_or_default(),
                    pull_failure(pod),
                )
            })
            .collect();
        for (name, failure) in pulls {
            match failure {
                Some(failure) => {
                    let since = *seen
                        .pull_failing_since
                        .entry(name)
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= self.image_pull_grace {
                        let _ = delete_job(jobs, &self.job).await;
                        return Some(RunEvent::Failed {
                            reason: format!("image pull failed: {failure}"),
                        });
                    }
                }
                None => {
                    seen.pull_failing_since.remove(&name);
                }
            }
        }
        if !(seen.job_synced && seen.pods_synced) {
            return None;
        }
        let (kind, reason, message) = job_outcome(seen.job.as_ref()?)?;
        let unread = seen.attempts().iter().any(|pod| {
            has_log(pod)
                && !seen
                    .consumed
                    .contains(pod.metadata.name.as_deref().unwrap_or_default())
        });
        if reading.is_some() || unread {
            return None; // Every line first, then the end.
        }
        // The two watches are separate streams: the Job may report its end before the pod
        // watch shows the attempts that led there. Wait until they are accounted for (a
        // deadline is exempt: the cluster may delete those pods).
        let finished_attempts = seen.ended.len();
        let counted = seen
            .job
            .as_ref()
            .and_then(|job| job.status.as_ref())
            .map_or(0, |status| {
                status.succeeded.unwrap_or(0) + status.failed.unwrap_or(0)
            });
        let accounted = usize::try_from(counted).unwrap_or(0) <= finished_attempts;
        if reason.as_deref() != Some("DeadlineExceeded") && !accounted {
            return None;
        }
        Some(self.final_event(seen, (kind, reason, message)))
    }

    /// The event a Job's final condition means.
    fn final_event(
        &self,
        seen: &Seen,
        (kind, reason, message): (String, Option<String>, Option<String>),
    ) -> RunEvent {
        match (kind.as_str(), reason.as_deref()) {
            ("Complete", _) => RunEvent::Exited { code: 0 },
            (_, Some("DeadlineExceeded")) => RunEvent::TimedOut {
                limit: seen
                    .job
                    .as_ref()
                    .and_then(|job| job.spec.as_ref()?.active_deadline_seconds)
                    .and_then(|seconds| u64::try_from(seconds).ok())
                    .map(Duration::from_secs),
                cause: never_scheduled(seen),
            },
            _ => match seen.attempts().last().and_then(|pod| exit_code(pod)) {
                Some(code) if code != 0 => RunEvent::Exited { code },
                _ => RunEvent::Failed {
                    reason: message
                        .or(reason)
                        .unwrap_or_else(|| "the Job failed".to_owned()),
                },
            },
        }
    }
}

async fn next_piece(reading: &mut Option<PodLog>) -> Option<std::io::Result<Piece>> {
    match reading {
        Some(current) => current.next().await,
        None => std::future::pending().await,
    }
}

fn apply_job_event(seen: &mut Seen, event: watcher::Event<Job>) {
    match event {
        watcher::Event::Apply(job) => seen.job = Some(job),
        watcher::Event::InitApply(job) => {
            seen.job = Some(job);
            seen.job_relisted = Some(true);
        }
        watcher::Event::Delete(_) => seen.job_deleted = true,
        watcher::Event::Init => {
            seen.job_synced = false;
            seen.job_relisted = Some(false);
        }
        watcher::Event::InitDone => {
            // A list without the Job (lists are consistent reads): it is gone.
            if seen.job_relisted.take() == Some(false) {
                seen.job_deleted = true;
            }
            seen.job_synced = true;
        }
    }
}

fn apply_pod_event(seen: &mut Seen, event: watcher::Event<Pod>) {
    match event {
        watcher::Event::Apply(pod) => seen.put_pod(pod),
        watcher::Event::InitApply(pod) => {
            if let (Some(listed), Some(name)) = (&mut seen.pods_relisted, &pod.metadata.name) {
                listed.insert(name.clone());
            }
            seen.put_pod(pod);
        }
        // A deleted pod's log is gone; it no longer holds the end back.
        watcher::Event::Delete(pod) => {
            if let Some(name) = pod.metadata.name {
                seen.drop_pod(&name);
            }
        }
        watcher::Event::Init => {
            seen.pods_synced = false;
            seen.pods_relisted = Some(HashSet::new());
        }
        watcher::Event::InitDone => {
            // Pods the new list no longer holds were deleted while nobody watched.
            if let Some(listed) = seen.pods_relisted.take() {
                let gone: Vec<String> = seen
                    .pods
                    .keys()
                    .filter(|name| !listed.contains(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    seen.drop_pod(&name);
                }
            }
            seen.pods_synced = true;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The exact requests `start` makes, pinned with a mocked API (tower-test).

    use std::time::Duration;

    use http::{Method, Request, Response};
    use http_body_util::BodyExt;
    use kube::client::Body;
    use proctor_schema::ports::executor::{EnvValue, Executor, RunSpec};
    use serde_json::{Value, json};

    use super::*;

    fn settings() -> KubeSettings {
        KubeSettings {
            access: KubeAccess::InCluster,
            context: None,
            namespace: "jobs".into(),
            annotations: BTreeMap::from([("team".into(), "ops".into())]),
            service_account: Some("runner".into()),
            active_deadline: Duration::from_secs(600),
            retries: 0,
            ttl_after_finished: Duration::from_secs(3600),
            image_pull_grace: Duration::from_secs(60),
            run_as: JobUser::Id(65534),
        }
    }

    fn spec(secret: bool) -> RunSpec {
        let mut env = vec![
            ("NAME".to_owned(), EnvValue::Plain("Ada".into())),
            ("EXECUTION_ID".to_owned(), EnvValue::Plain("7".into())),
        ];
        if secret {
            env.push(("TOKEN".to_owned(), EnvValue::Secret("s3cr3t".into())));
        }
        RunSpec {
            execution_id: 7,
            proc_name: "deploy".into(),
            image: Some("ghcr.io/acme/deploy:1".into()),
            command: Some(vec!["./deploy.sh".into()]),
            env,
            timeout: None,
            retries: Some(2),
            resources: None,
            identity_audience: None,
            alerts: None,
        }
    }

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    /// Takes the next request, checks method and path, answers `status` with `reply`, and
    /// returns the request's headers and JSON body.
    async fn expect(
        handle: &mut Handle,
        method: Method,
        path: &str,
        status: u16,
        reply: Value,
    ) -> (http::HeaderMap, Value) {
        let (request, respond) = handle.next_request().await.expect("a request");
        assert_eq!(request.method(), method);
        assert_eq!(request.uri().path(), path);
        let headers = request.headers().clone();
        let body = request
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let body = serde_json::from_slice(&body).expect("a JSON body");
        respond.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        (headers, body)
    }

    #[tokio::test]
    async fn start_creates_the_secret_then_the_job_then_lets_the_job_own_the_secret() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let executor =
            KubernetesExecutor::with_client(kube::Client::new(service, "jobs"), settings());
        let started = tokio::spawn(async move {
            executor
                .start(spec(true), CancellationToken::new())
                .await
                .map(drop)
        });
        let labels = json!({
            "app.kubernetes.io/managed-by": "proctor",
            "proctor.io/execution-id": "7",
            "proctor.io/proc": "deploy",
        });

        let (_, secret) = expect(&mut handle, Method::POST, "/api/v1/namespaces/jobs/secrets", 201,
            json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "proctor-7-deploy" } })).await;
        assert_eq!(
            secret,
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": { "name": "proctor-7-deploy", "labels": labels },
                "stringData": { "TOKEN": "s3cr3t" },
            })
        );

        let (_, job) = expect(
            &mut handle,
            Method::POST,
            "/apis/batch/v1/namespaces/jobs/jobs",
            201,
            json!({ "apiVersion": "batch/v1", "kind": "Job",
                    "metadata": { "name": "proctor-7-deploy", "uid": "job-uid-1" } }),
        )
        .await;
        assert_eq!(
            job,
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": { "name": "proctor-7-deploy", "labels": labels, "annotations": { "team": "ops" } },
                "spec": {
                    "activeDeadlineSeconds": 600,
                    "backoffLimit": 2,
                    "ttlSecondsAfterFinished": 3600,
                    "template": {
                        "metadata": { "labels": labels, "annotations": { "team": "ops" } },
                        "spec": {
                            "restartPolicy": "Never",
                            "serviceAccountName": "runner",
                            "automountServiceAccountToken": true,
                            "securityContext": {
                                "runAsNonRoot": true,
                                "runAsUser": 65534,
                                "runAsGroup": 65534,
                                "seccompProfile": { "type": "RuntimeDefault" },
                            },
                            "containers": [{
                                "name": "proc",
                                "image": "ghcr.io/acme/deploy:1",
                                "command": ["./deploy.sh"],
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": { "drop": ["ALL"] },
                                },
                                "env": [
                                    { "name": "NAME", "value": "Ada" },
                                    { "name": "EXECUTION_ID", "value": "7" },
                                    { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "proctor-7-deploy", "key": "TOKEN" } } },
                                ],
                            }],
                        },
                    },
                },
            })
        );
        assert!(
            !job.to_string().contains("s3cr3t"),
            "the Job never holds a secret value"
        );

        let (headers, owner) = expect(&mut handle, Method::PATCH, "/api/v1/namespaces/jobs/secrets/proctor-7-deploy", 200,
            json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "proctor-7-deploy" } })).await;
        assert_eq!(headers["content-type"], "application/merge-patch+json");
        assert_eq!(
            owner,
            json!({ "metadata": { "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": "proctor-7-deploy", "uid": "job-uid-1",
            "controller": true, "blockOwnerDeletion": true,
        }] } })
        );
        started.await.unwrap().expect("start succeeds");
    }

    #[tokio::test]
    async fn without_secrets_only_the_job_is_created() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let executor =
            KubernetesExecutor::with_client(kube::Client::new(service, "jobs"), settings());
        let started = tokio::spawn(async move {
            executor
                .start(spec(false), CancellationToken::new())
                .await
                .map(drop)
        });
        let (_, job) = expect(&mut handle, Method::POST, "/apis/batch/v1/namespaces/jobs/jobs", 201,
            json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "proctor-7-deploy", "uid": "u" } })).await;
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        started.await.unwrap().expect("start succeeds");
    }

    #[tokio::test]
    async fn a_refused_job_removes_its_secret_and_fails_to_start() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let executor =
            KubernetesExecutor::with_client(kube::Client::new(service, "jobs"), settings());
        let started = tokio::spawn(async move {
            executor
                .start(spec(true), CancellationToken::new())
                .await
                .map(drop)
        });
        expect(&mut handle, Method::POST, "/api/v1/namespaces/jobs/secrets", 201,
            json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "proctor-7-deploy" } })).await;
        expect(&mut handle, Method::POST, "/apis/batch/v1/namespaces/jobs/jobs", 403, json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "jobs.batch is forbidden: User cannot create jobs", "reason": "Forbidden", "code": 403,
        })).await;
        let (request, respond) = handle.next_request().await.expect("the clean-up request");
        assert_eq!(request.method(), Method::DELETE);
        assert_eq!(
            request.uri().path(),
            "/api/v1/namespaces/jobs/secrets/proctor-7-deploy"
        );
        respond.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(b"{}".to_vec()))
                .unwrap(),
        );
        let error = started.await.unwrap().expect_err("start fails");
        assert!(
            error
                .to_string()
                .contains("creating the Job: jobs.batch is forbidden"),
            "{error}"
        );
    }

    fn pod_created_at(name: &str, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "creationTimestamp": created },
        }))
        .unwrap()
    }

    #[test]
    fn attempts_created_in_the_same_second_keep_the_order_the_watch_delivered() {
        let mut seen = Seen::default();
        // The second attempt's random suffix sorts before the first's.
        seen.put_pod(pod_created_at("job-zzzz", "2026-11-22T10:00:00Z"));
        seen.put_pod(pod_created_at("job-aaaa", "2026-11-22T10:00:00Z"));
        seen.put_pod(pod_created_at("job-zzzz", "2026-11-22T10:00:00Z"));
        // An earlier second still comes first, whenever it was delivered.
        seen.put_pod(pod_created_at("job-mmmm", "2026-11-22T09:59:59Z"));
        let order: Vec<&str> = seen
            .attempts()
            .iter()
            .map(|pod| pod.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(order, ["job-mmmm", "job-zzzz", "job-aaaa"]);
    }
}
