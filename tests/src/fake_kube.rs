//! An in-process fake of the Kubernetes API, enough for the Kubernetes executor to run for
//! real against it: Jobs, Pods and Secrets (create, get, list, watch, patch, delete), pod logs
//! with `follow`, `timestamps` and `sinceTime` (and rotation, [`FakeKube::rotate_logs`]), and
//! a Job controller whose pods run the container's `command` as local
//! processes, so end-to-end tests see real output, exit codes, retries and deadlines.
//!
//! It speaks the wire protocol the `kube` client uses: lists carry `metadata.resourceVersion`,
//! watches honour `resourceVersion` and `timeoutSeconds` and stream newline-delimited events,
//! label selectors (`a=b`, `a!=b`, `a`) and field selectors (`metadata.name=x`) filter.
//! Not simulated: admission, RBAC, pagination, bookmarks, `410 Gone`.
//!
//! An image whose name contains one of the configured "unpullable" markers never pulls: its pod
//! waits in `ErrImagePull`. A pod's env resolves `secretKeyRef`s from the stored Secrets.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

/// The kinds of objects the fake stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `batch/v1` Job.
    Job,
    /// `v1` Pod.
    Pod,
    /// `v1` Secret.
    Secret,
}

impl Kind {
    fn api_version(self) -> &'static str {
        match self {
            Self::Job => "batch/v1",
            Self::Pod | Self::Secret => "v1",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Job => "Job",
            Self::Pod => "Pod",
            Self::Secret => "Secret",
        }
    }
}

type Key = (Kind, String, String);

/// A change, kept for watches that start from an older resourceVersion.
#[derive(Clone)]
struct Change {
    version: u64,
    kind: Kind,
    namespace: String,
    action: &'static str,
    object: Value,
}

/// One container's log as the kubelet keeps it: each line with the time it was written.
/// Rotation drops lines from the front; `dropped` keeps positions absolute.
#[derive(Default)]
struct PodLog {
    lines: Vec<(chrono::DateTime<chrono::Utc>, String)>,
    dropped: usize,
    done: bool,
}

#[derive(Default)]
struct Store {
    version: u64,
    objects: BTreeMap<Key, Value>,
    changes: Vec<Change>,
    logs: HashMap<(String, String), PodLog>,
    unpullable: Vec<String>,
    requests: Vec<String>,
    /// Jobs being deleted: their simulations stop.
    deleted_jobs: Vec<(String, String)>,
}

/// The shared state of the fake.
pub struct Cluster {
    store: Mutex<Store>,
    /// Bumped on every change so watches and log followers wake up.
    changed: watch::Sender<u64>,
}

impl Cluster {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn notify(&self, version: u64) {
        self.changed.send_replace(version);
    }

    /// Stores `object` (new or replaced), records the change and returns the stored object.
    fn put(&self, kind: Kind, namespace: &str, mut object: Value, action: &'static str) -> Value {
        let version = {
            let mut store = self.lock();
            store.version += 1;
            let version = store.version;
            object["apiVersion"] = json!(kind.api_version());
            object["kind"] = json!(kind.name());
            object["metadata"]["namespace"] = json!(namespace);
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            store
                .objects
                .insert((kind, namespace.to_owned(), name), object.clone());
            store.changes.push(Change {
                version,
                kind,
                namespace: namespace.to_owned(),
                action,
                object: object.clone(),
            });
            version
        };
        self.notify(version);
        object
    }

    fn remove(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let (object, version) = {
            let mut store = self.lock();
            let mut object =
                store
                    .objects
                    .remove(&(kind, namespace.to_owned(), name.to_owned()))?;
            store.version += 1;
            let version = store.version;
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            store.changes.push(Change {
                version,
                kind,
                namespace: namespace.to_owned(),
                action: "DELETED",
                object: object.clone(),
            });
            (object, version)
        };
        self.notify(version);
        Some(object)
    }

    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Changes `kind/name` with `edit`, if it still exists.
    fn update(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut object = self.get(kind, namespace, name)?;
        edit(&mut object);
        Some(self.put(kind, namespace, object, "MODIFIED"))
    }

    fn job_deleted(&self, namespace: &str, job: &str) -> bool {
        self.lock()
            .deleted_jobs
            .iter()
            .any(|(ns, name)| ns == namespace && name == job)
    }
}

/// A running fake API server on `127.0.0.1:<port>`.
pub struct FakeKube {
    /// Where it listens.
    pub address: SocketAddr,
    cluster: Arc<Cluster>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeKube {
    /// Starts one.
    pub async fn start() -> Self {
        let (changed, _) = watch::channel(0);
        let cluster = Arc::new(Cluster {
            store: Mutex::new(Store::default()),
            changed,
        });
        let router = Router::new()
            .route("/version", get(version))
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .route(
                "/api/v1/namespaces/{ns}/secrets",
                get(list_secrets).post(create_secret),
            )
            .route(
                "/api/v1/namespaces/{ns}/secrets/{name}",
                get(get_secret).patch(patch_secret).delete(delete_secret),
            )
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs",
                get(list_jobs).post(create_job),
            )
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                get(get_job).delete(delete_job),
            )
            .fallback(|method: Method, uri: axum::http::Uri| async move {
                status(
                    StatusCode::NOT_FOUND,
                    &format!("{method} {uri} is not simulated"),
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&cluster),
                record_request,
            ))
            .with_state(Arc::clone(&cluster));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API");
        let address = listener.local_addr().expect("bound address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            address,
            cluster,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig pointing at the fake, for child processes (`PROCTOR_KUBE_CONFIG=<file>`).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url()
        )
    }

    /// Writes [`FakeKube::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        std::fs::write(path, self.kubeconfig_yaml()).expect("write the kubeconfig");
    }

    /// Images whose name contains `marker` fail to pull from now on.
    pub fn make_unpullable(&self, marker: &str) {
        self.cluster.lock().unpullable.push(marker.to_owned());
    }

    /// Every stored object of `kind` in `namespace`.
    pub fn objects(&self, kind: Kind, namespace: &str) -> Vec<Value> {
        self.cluster
            .lock()
            .objects
            .iter()
            .filter(|((k, ns, _), _)| *k == kind && ns == namespace)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Rotates the logs of the pods of `job`, as the kubelet does with a full log file: the
    /// first `lines` lines written so far are gone, for every reader that comes after.
    pub fn rotate_logs(&self, namespace: &str, job: &str, lines: usize) {
        let mut store = self.cluster.lock();
        let prefix = format!("{job}-");
        for ((ns, pod), log) in &mut store.logs {
            if ns == namespace && pod.starts_with(&prefix) {
                let gone = lines.min(log.lines.len());
                log.lines.drain(..gone);
                log.dropped += gone;
            }
        }
    }

    /// Every request seen, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.cluster.lock().requests.clone()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record_request(
    State(cluster): State<Arc<Cluster>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    cluster
        .lock()
        .requests
        .push(format!("{} {}", request.method(), request.uri()));
    next.run(request).await
}

fn status(code: StatusCode, message: &str) -> Response {
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT => "AlreadyExists",
        _ => "BadRequest",
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()
        })
        .to_string(),
    )
        .into_response()
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64" }),
    )
}

/// Whether `object` matches the `labelSelector` and `fieldSelector` query parameters.
fn selected(object: &Value, query: &HashMap<String, String>) -> bool {
    let labels = &object["metadata"]["labels"];
    let labels_ok = query.get("labelSelector").is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|term| {
            if let Some((key, value)) = term.split_once("!=") {
                labels[key].as_str() != Some(value)
            } else if let Some((key, value)) = term.split_once('=') {
                labels[key.trim_end_matches('=')].as_str() == Some(value)
            } else {
                !labels[term].is_null()
            }
        })
    });
    let fields_ok = query.get("fieldSelector").is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|term| {
            let Some((path, value)) = term.split_once('=') else {
                return false;
            };
            let found = path.split('.').fold(object, |node, part| &node[part]);
            found.as_str() == Some(value)
        })
    });
    labels_ok && fields_ok
}

/// A list, or (with `watch=true`) a stream of change events.
fn list_or_watch(
    cluster: Arc<Cluster>,
    kind: Kind,
    namespace: String,
    query: HashMap<String, String>,
) -> Response {
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_response(cluster, kind, namespace, query);
    }
    let store = cluster.lock();
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|((k, ns, _), object)| *k == kind && *ns == namespace && selected(object, &query))
        .map(|(_, object)| object.clone())
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": kind.api_version(),
            "kind": format!("{}List", kind.name()),
            "metadata": { "resourceVersion": store.version.to_string() },
            "items": items,
        }),
    )
}

fn watch_response(
    cluster: Arc<Cluster>,
    kind: Kind,
    namespace: String,
    query: HashMap<String, String>,
) -> Response {
    let mut since: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| cluster.lock().version);
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(290),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changed = cluster.changed.subscribe();
    let stream = async_stream_lines(move |sender| async move {
        loop {
            let fresh: Vec<Change> = cluster
                .lock()
                .changes
                .iter()
                .filter(|change| {
                    change.version > since && change.kind == kind && change.namespace == namespace
                })
                .cloned()
                .collect();
            for change in fresh {
                since = change.version;
                if selected(&change.object, &query) {
                    let line = format!(
                        "{}\n",
                        json!({ "type": change.action, "object": change.object })
                    );
                    if sender.send(line).await.is_err() {
                        return;
                    }
                }
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A body stream fed by `produce` through a channel (ends when `produce` returns).
fn async_stream_lines<F, Fut>(
    produce: F,
) -> impl futures::Stream<Item = Result<String, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    tokio::spawn(produce(sender));
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (Ok(line), receiver))
    })
}

async fn list_pods(
    State(cluster): State<Arc<Cluster>>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(cluster, Kind::Pod, ns, query)
}

async fn list_jobs(
    State(cluster): State<Arc<Cluster>>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(cluster, Kind::Job, ns, query)
}

async fn list_secrets(
    State(cluster): State<Arc<Cluster>>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(cluster, Kind::Secret, ns, query)
}

fn found(object: Option<Value>, kind: Kind, name: &str) -> Response {
    match object {
        Some(object) => json_response(StatusCode::OK, &object),
        None => status(
            StatusCode::NOT_FOUND,
            &format!("{} \"{name}\" not found", kind.name().to_lowercase()),
        ),
    }
}

async fn get_pod(
    State(cluster): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    found(cluster.get(Kind::Pod, &ns, &name), Kind::Pod, &name)
}

async fn get_job(
    State(cluster): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    found(cluster.get(Kind::Job, &ns, &name), Kind::Job, &name)
}

async fn get_secret(
    State(cluster): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    found(cluster.get(Kind::Secret, &ns, &name), Kind::Secret, &name)
}

fn new_metadata(object: &mut Value) {
    object["metadata"]["uid"] = json!(format!("uid-{}", crate::infra::unique_suffix()));
    object["metadata"]["creationTimestamp"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
}

async fn create_secret(
    State(cluster): State<Arc<Cluster>>,
    Path(ns): Path<String>,
    axum::Json(mut secret): axum::Json<Value>,
) -> Response {
    let name = secret["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if cluster.get(Kind::Secret, &ns, &name).is_some() {
        return status(
            StatusCode::CONFLICT,
            &format!("secrets \"{name}\" already exists"),
        );
    }
    // The API server folds stringData into base64 data.
    if let Some(strings) = secret.get("stringData").and_then(Value::as_object).cloned() {
        use base64::Engine as _;
        for (key, value) in strings {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(value.as_str().unwrap_or_default());
            secret["data"][key] = json!(encoded);
        }
        secret
            .as_object_mut()
            .expect("an object")
            .remove("stringData");
    }
    new_metadata(&mut secret);
    json_response(
        StatusCode::CREATED,
        &cluster.put(Kind::Secret, &ns, secret, "ADDED"),
    )
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

async fn patch_secret(
    State(cluster): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
    body: String,
) -> Response {
    let Ok(patch) = serde_json::from_str::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "the patch is not JSON");
    };
    found(
        cluster.update(Kind::Secret, &ns, &name, |secret| merge(secret, &patch)),
        Kind::Secret,
        &name,
    )
}

async fn delete_secret(
    State(cluster): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    found(
        cluster.remove(Kind::Secret, &ns, &name),
        Kind::Secret,
        &name,
    )
}

async fn create_job(
    State(cluster): State<Arc<Cluster>>,
    Path(ns): Path<String>,
    axum::Json(mut job): axum::Json<Value>,
) -> Response {
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if cluster.get(Kind::Job, &ns, &name).is_some() {
        return status(
            StatusCode::CONFLICT,
            &format!("jobs.batch \"{name}\" already exists"),
        );
    }
    new_metadata(&mut job);
    job["status"] = json!({});
    let stored = cluster.put(Kind::Job, &ns, job, "ADDED");
    tokio::spawn(simulate_job(Arc::clone(&cluster), ns, name));
    json_response(StatusCode::CREATED, &stored)
}

async fn delete_job(
    State(cluster): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let Some(job) = cluster.get(Kind::Job, &ns, &name) else {
        return status(
            StatusCode::NOT_FOUND,
            &format!("jobs.batch \"{name}\" not found"),
        );
    };
    cluster.lock().deleted_jobs.push((ns.clone(), name.clone()));
    // Background propagation: the Job goes, its pods and owned Secrets follow.
    let uid = job["metadata"]["uid"].clone();
    for kind in [Kind::Pod, Kind::Secret] {
        let owned: Vec<String> = cluster
            .lock()
            .objects
            .iter()
            .filter(|((k, n, _), object)| {
                *k == kind
                    && *n == ns
                    && object["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|owners| owners.iter().any(|owner| owner["uid"] == uid))
            })
            .map(|((_, _, object_name), _)| object_name.clone())
            .collect();
        for object in owned {
            cluster.remove(kind, &ns, &object);
        }
    }
    cluster.remove(Kind::Job, &ns, &name);
    json_response(
        StatusCode::OK,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" }),
    )
}

async fn pod_log(
    State(cluster): State<Arc<Cluster>>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !cluster
        .lock()
        .logs
        .contains_key(&(ns.clone(), name.clone()))
    {
        return status(
            StatusCode::BAD_REQUEST,
            &format!("container \"proc\" in pod \"{name}\" is waiting to start"),
        );
    }
    let follow = query.get("follow").is_some_and(|f| f == "true");
    let timestamps = query.get("timestamps").is_some_and(|t| t == "true");
    // Whole seconds, as the API server takes it; a line written at or after it is shown.
    let since = match query.get("sinceTime") {
        Some(raw) => match chrono::DateTime::parse_from_rfc3339(raw) {
            Ok(since) => Some(since.with_timezone(&chrono::Utc)),
            Err(_) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid sinceTime {raw:?}"),
                );
            }
        },
        None => None,
    };
    let key = (ns, name);
    let mut changed = cluster.changed.subscribe();
    let stream = async_stream_lines(move |sender| async move {
        // Absolute position in the log (rotation keeps it meaningful).
        let mut sent = 0;
        loop {
            let (fresh, done) = {
                let store = cluster.lock();
                let log = &store.logs[&key];
                sent = sent.max(log.dropped);
                (log.lines[sent - log.dropped..].to_vec(), log.done)
            };
            for (at, line) in fresh {
                sent += 1;
                if since.is_some_and(|since| at < since) {
                    continue;
                }
                let text = if timestamps {
                    format!(
                        "{} {line}\n",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    )
                } else {
                    format!("{line}\n")
                };
                if sender.send(text).await.is_err() {
                    return;
                }
            }
            if done || !follow || changed.changed().await.is_err() {
                return;
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The Job controller and the kubelet, for one Job: runs attempts until one succeeds, the
/// backoff limit is reached, the deadline passes or the Job is deleted.
async fn simulate_job(cluster: Arc<Cluster>, ns: String, job_name: String) {
    let Some(job) = cluster.get(Kind::Job, &ns, &job_name) else {
        return;
    };
    let spec = job["spec"].clone();
    let backoff_limit = spec["backoffLimit"].as_u64().unwrap_or(6);
    let deadline = spec["activeDeadlineSeconds"]
        .as_u64()
        .map(|seconds| tokio::time::Instant::now() + Duration::from_secs(seconds));
    let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    cluster.update(Kind::Job, &ns, &job_name, |job| {
        job["status"] = json!({ "active": 1, "startTime": now() });
    });
    let mut failures = 0;
    loop {
        let attempt = run_attempt(&cluster, &ns, &job_name, &job, deadline).await;
        let finish = |condition: Value, status_patch: Value| {
            cluster.update(Kind::Job, &ns, &job_name, |job| {
                merge(&mut job["status"], &status_patch);
                job["status"]["active"] = json!(0);
                job["status"]["conditions"] = json!([condition]);
            });
        };
        match attempt {
            Attempt::Deleted => return,
            Attempt::Succeeded => {
                finish(
                    json!({ "type": "Complete", "status": "True", "lastTransitionTime": now() }),
                    json!({ "succeeded": 1, "completionTime": now() }),
                );
                return;
            }
            Attempt::DeadlineExceeded => {
                finish(
                    json!({ "type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                            "message": "Job was active longer than specified deadline", "lastTransitionTime": now() }),
                    json!({ "failed": failures + 1 }),
                );
                return;
            }
            Attempt::Failed => {
                failures += 1;
                cluster.update(Kind::Job, &ns, &job_name, |job| {
                    job["status"]["failed"] = json!(failures);
                });
                if failures > backoff_limit {
                    finish(
                        json!({ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                "message": "Job has reached the specified backoff limit", "lastTransitionTime": now() }),
                        json!({ "failed": failures }),
                    );
                    return;
                }
            }
        }
    }
}

enum Attempt {
    Succeeded,
    Failed,
    DeadlineExceeded,
    Deleted,
}

fn container_status(state: Value) -> Value {
    json!([{ "name": "proc", "ready": false, "restartCount": 0, "image": "", "imageID": "", "state": state }])
}

async fn run_attempt(
    cluster: &Arc<Cluster>,
    ns: &str,
    job_name: &str,
    job: &Value,
    deadline: Option<tokio::time::Instant>,
) -> Attempt {
    let template = &job["spec"]["template"];
    let pod_name = format!(
        "{job_name}-{}",
        &crate::infra::unique_suffix().replace('_', "")[..8]
    );
    let mut labels = template["metadata"]["labels"].clone();
    labels["job-name"] = json!(job_name);
    labels["batch.kubernetes.io/job-name"] = json!(job_name);
    let mut pod = json!({
        "metadata": {
            "name": pod_name,
            "labels": labels,
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                  "uid": job["metadata"]["uid"], "controller": true }],
        },
        "spec": template["spec"],
        "status": { "phase": "Pending",
                    "containerStatuses": container_status(json!({ "waiting": { "reason": "ContainerCreating" } })) },
    });
    new_metadata(&mut pod);
    cluster.put(Kind::Pod, ns, pod, "ADDED");
    let container = template["spec"]["containers"][0].clone();
    let image = container["image"].as_str().unwrap_or_default().to_owned();
    let gone = || cluster.job_deleted(ns, job_name);
    let past_deadline = || deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline);

    if cluster
        .lock()
        .unpullable
        .iter()
        .any(|marker| image.contains(marker.as_str()))
    {
        cluster.update(Kind::Pod, ns, &pod_name, |pod| {
            pod["status"]["containerStatuses"] = container_status(json!({ "waiting": {
                "reason": "ErrImagePull",
                "message": format!("failed to pull image \"{image}\": not found") } }));
        });
        loop {
            if gone() {
                return Attempt::Deleted;
            }
            if past_deadline() {
                return Attempt::DeadlineExceeded;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Resolve the env, waiting for referenced Secrets as the kubelet does.
    let env = loop {
        if gone() {
            return Attempt::Deleted;
        }
        match resolve_env(cluster, ns, &container["env"]) {
            Some(env) => break env,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let argv: Vec<String> = container["command"]
        .as_array()
        .map(|argv| {
            argv.iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_else(|| vec!["true".to_owned()]);
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let key = (ns.to_owned(), pod_name.clone());
    cluster.lock().logs.insert(key.clone(), PodLog::default());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            cluster.lock().logs.get_mut(&key).expect("log exists").done = true;
            cluster.update(Kind::Pod, ns, &pod_name, |pod| {
                pod["status"]["phase"] = json!("Failed");
                pod["status"]["containerStatuses"] = container_status(json!({ "terminated": {
                    "exitCode": 128, "reason": "StartError", "message": error.to_string() } }));
            });
            return Attempt::Failed;
        }
    };
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    cluster.update(Kind::Pod, ns, &pod_name, |pod| {
        pod["status"]["phase"] = json!("Running");
        pod["status"]["containerStatuses"] =
            container_status(json!({ "running": { "startedAt": started } }));
    });
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|out| Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|err| Box::new(err) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    .map(|reader| {
        let cluster = Arc::clone(cluster);
        let key = key.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let version = {
                    let mut store = cluster.lock();
                    store
                        .logs
                        .get_mut(&key)
                        .expect("log exists")
                        .lines
                        .push((chrono::Utc::now(), line));
                    store.version
                };
                cluster.notify(version);
            }
        })
    })
    .collect();
    let pid = child.id().unwrap_or_default();
    let kill_group = || {
        if let Some(group) = i32::try_from(pid).ok().and_then(rustix_pid) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    };
    let outcome = loop {
        tokio::select! {
            status = child.wait() => break status.ok().and_then(|s| s.code()),
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if gone() || past_deadline() {
                    kill_group();
                    let _ = child.wait().await;
                    for reader in readers {
                        let _ = reader.await;
                    }
                    cluster.lock().logs.get_mut(&key).expect("log exists").done = true;
                    let version = cluster.lock().version;
                    cluster.notify(version);
                    if gone() {
                        return Attempt::Deleted;
                    }
                    cluster.update(Kind::Pod, ns, &pod_name, |pod| {
                        pod["status"]["phase"] = json!("Failed");
                        pod["status"]["containerStatuses"] = container_status(json!({ "terminated": {
                            "exitCode": 137, "reason": "DeadlineExceeded" } }));
                    });
                    return Attempt::DeadlineExceeded;
                }
            }
        }
    };
    kill_group();
    for reader in readers {
        let _ = reader.await;
    }
    cluster.lock().logs.get_mut(&key).expect("log exists").done = true;
    let code = outcome.unwrap_or(137);
    cluster.update(Kind::Pod, ns, &pod_name, |pod| {
        pod["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
        pod["status"]["containerStatuses"] = container_status(json!({ "terminated": {
            "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" } } }));
    });
    if code == 0 {
        Attempt::Succeeded
    } else {
        Attempt::Failed
    }
}

fn rustix_pid(raw: i32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(raw)
}

/// The container env with `secretKeyRef`s resolved; `None` while a Secret is missing.
fn resolve_env(cluster: &Cluster, ns: &str, env: &Value) -> Option<Vec<(String, String)>> {
    use base64::Engine as _;
    let mut resolved = Vec::new();
    for var in env.as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default().to_owned();
        let value = match var.get("valueFrom") {
            Some(source) => {
                let reference = &source["secretKeyRef"];
                let secret = cluster.get(
                    Kind::Secret,
                    ns,
                    reference["name"].as_str().unwrap_or_default(),
                )?;
                let encoded = secret["data"][reference["key"].as_str().unwrap_or_default()]
                    .as_str()?
                    .to_owned();
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .ok()?,
                )
                .ok()?
            }
            None => var["value"].as_str().unwrap_or_default().to_owned(),
        };
        resolved.push((name, value));
    }
    Some(resolved)
}
