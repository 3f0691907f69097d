//! An in-process fake of the Kubernetes API, enough for the Kubernetes executor to run for
//! real against it: Jobs, Pods and Secrets (create, get, list, watch, patch, delete), pod logs
//! with `follow`, `timestamps` and `sinceTime` (and rotation, [`FakeKube::rotate_logs`]), and
//! a Job controller whose pods run the container's `command` as local
//! processes, so end-to-end tests see real output, exit codes, retries and deadlines.
//!
//! It speaks the wire protocol the `kube` client uses: lists carry `metadata.resourceVersion`,
//! watches honour `resourceVersion` and `timeoutSeconds` and stream newline-delimited events,
//! label selectors (`a=b`, `a!=b`, `a`) and field selectors (`metadata.name=x`) filter.
//!
//! It behaves like a real cluster where the executor must cope:
//! - images mean something: a pod runs its container's `command` (plus `args`), or else its
//!   image's entrypoint ([`FakeKube::define_image`]; `busybox` and `alpine` are known); an
//!   unknown image (or one marked with [`FakeKube::make_unpullable`]) never pulls: the pod
//!   waits in `ErrImagePull`;
//! - pods of Jobs marked with [`FakeKube::make_unschedulable`] stay `Pending` (`Unschedulable`)
//!   until the Job's deadline;
//! - watches get `BOOKMARK` events when they ask for them, and [`FakeKube::expire_watches`]
//!   compacts the history and ends every watch, so the next one from an old
//!   `resourceVersion` gets `410 Gone` (`Expired`) and must list again;
//! - a finished Job with `ttlSecondsAfterFinished` is deleted with its pods, Secrets and logs
//!   after that many seconds;
//! - [`FakeKube::outage`] makes the API server answer `503` for a while and cuts every open
//!   watch and log stream (the client sees the connection break).
//!
//! Not simulated: admission, RBAC, pagination. A pod's env resolves `secretKeyRef`s from the
//! stored Secrets.

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

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_millis(300);

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
    unschedulable: Vec<String>,
    /// Image → the argv its entrypoint runs.
    images: HashMap<String, Vec<String>>,
    /// Changes up to this version are compacted away: a watch from before gets `410 Gone`.
    compacted: u64,
    /// Bumped to end every open watch and log stream; `cut_abruptly` says how.
    generation: u64,
    cut_abruptly: bool,
    /// While set, every watch is refused with `410 Gone` (history being compacted).
    quiet: bool,
    /// Requests are answered `503` until then.
    unavailable_until: Option<tokio::time::Instant>,
    bookmarks_sent: u64,
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
        let mut store = Store::default();
        for (image, entrypoint) in [("busybox", ["sh"]), ("alpine", ["/bin/sh"])] {
            store.images.insert(
                normalize_image(image),
                entrypoint.iter().map(|part| (*part).to_owned()).collect(),
            );
        }
        let cluster = Arc::new(Cluster {
            store: Mutex::new(store),
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

    /// Makes `image` pullable; its pods run `entrypoint` (then the container's `args`) unless
    /// the container sets a `command`.
    pub fn define_image(&self, image: &str, entrypoint: &[&str]) {
        self.cluster.lock().images.insert(
            normalize_image(image),
            entrypoint.iter().map(|part| (*part).to_owned()).collect(),
        );
    }

    /// Pods of Jobs whose name contains `marker` are never scheduled from now on.
    pub fn make_unschedulable(&self, marker: &str) {
        self.cluster.lock().unschedulable.push(marker.to_owned());
    }

    /// Compacts the history and ends every open watch: the next watch from an older
    /// `resourceVersion` gets `410 Gone` and the client must list again.
    pub fn expire_watches(&self) {
        let version = {
            let mut store = self.cluster.lock();
            // Other objects changed meanwhile (the history moved on), then it was compacted:
            // every watcher's last resourceVersion is now too old.
            store.version += 1;
            store.compacted = store.version;
            store.changes.clear();
            store.generation += 1;
            store.cut_abruptly = false;
            store.version
        };
        self.cluster.notify(version);
    }

    /// Deletes a Job (with its pods, Secrets and logs) while no watch can see it happen: the
    /// history is compacted right after, so watchers only learn it from a new list.
    pub fn delete_job_unwatched(&self, namespace: &str, job: &str) {
        {
            // End every watch and refuse new ones until the deletion is compacted away.
            let mut store = self.cluster.lock();
            store.quiet = true;
            store.generation += 1;
            store.cut_abruptly = false;
        }
        delete_job_cascade(&self.cluster, namespace, job);
        self.expire_watches();
        self.cluster.lock().quiet = false;
    }

    /// The API server is away for `length`: every request is answered `503`, and every open
    /// watch and log stream breaks.
    pub fn outage(&self, length: Duration) {
        let version = {
            let mut store = self.cluster.lock();
            store.unavailable_until = Some(tokio::time::Instant::now() + length);
            store.generation += 1;
            store.cut_abruptly = true;
            store.version
        };
        self.cluster.notify(version);
    }

    /// How many `BOOKMARK` events watches got.
    pub fn bookmarks_sent(&self) -> u64 {
        self.cluster.lock().bookmarks_sent
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
    let unavailable = {
        let mut store = cluster.lock();
        store
            .requests
            .push(format!("{} {}", request.method(), request.uri()));
        store
            .unavailable_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
    };
    if unavailable {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the API server is unavailable (simulated outage)",
        );
    }
    next.run(request).await
}

fn status(code: StatusCode, message: &str) -> Response {
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT => "AlreadyExists",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
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
    let (current, compacted, generation, quiet) = {
        let store = cluster.lock();
        (
            store.version,
            store.compacted,
            store.generation,
            store.quiet,
        )
    };
    let mut since: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(current);
    if since < compacted || quiet {
        // What a real API server answers for a resourceVersion older than its history.
        let gone = json!({ "type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {since} ({compacted})"),
            "reason": "Expired", "code": 410 } });
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{gone}\n"),
        )
            .into_response();
    }
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(290),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changed = cluster.changed.subscribe();
    let stream = async_stream_lines(move |sender| async move {
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        bookmark.tick().await;
        loop {
            if cut(&cluster, generation, &sender).await {
                return;
            }
            // What this stream has seen up to: a bookmark may claim no more than that.
            let (fresh, scanned): (Vec<Change>, u64) = {
                let store = cluster.lock();
                let fresh = store
                    .changes
                    .iter()
                    .filter(|change| {
                        change.version > since
                            && change.kind == kind
                            && change.namespace == namespace
                    })
                    .cloned()
                    .collect();
                (fresh, store.version)
            };
            for change in fresh {
                since = change.version;
                if selected(&change.object, &query) {
                    let line = format!(
                        "{}\n",
                        json!({ "type": change.action, "object": change.object })
                    );
                    if sender.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                woke = tokio::time::timeout_at(deadline, changed.changed()) => {
                    if woke.is_err() {
                        return;
                    }
                }
                _ = bookmark.tick(), if bookmarks => {
                    cluster.lock().bookmarks_sent += 1;
                    let version = scanned;
                    let line = format!(
                        "{}\n",
                        json!({ "type": "BOOKMARK", "object": {
                            "kind": kind.name(), "apiVersion": kind.api_version(),
                            "metadata": { "resourceVersion": version.to_string() } } })
                    );
                    if sender.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
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
    F: FnOnce(tokio::sync::mpsc::Sender<Result<String, std::io::Error>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    tokio::spawn(produce(sender));
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (line, receiver))
    })
}

/// Whether the stream started at `generation` was cut since; sends the break (an error, so
/// the connection closes abruptly) when the cut was an outage.
async fn cut(
    cluster: &Cluster,
    generation: u64,
    sender: &tokio::sync::mpsc::Sender<Result<String, std::io::Error>>,
) -> bool {
    let (now, abrupt) = {
        let store = cluster.lock();
        (store.generation, store.cut_abruptly)
    };
    if now == generation {
        return false;
    }
    if abrupt {
        let _ = sender
            .send(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the API server went away",
            )))
            .await;
    }
    true
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
    if delete_job_cascade(&cluster, &ns, &name).is_none() {
        return status(
            StatusCode::NOT_FOUND,
            &format!("jobs.batch \"{name}\" not found"),
        );
    }
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
    let generation = cluster.lock().generation;
    let stream = async_stream_lines(move |sender| async move {
        // Absolute position in the log (rotation keeps it meaningful).
        let mut sent = 0;
        loop {
            if cut(&cluster, generation, &sender).await {
                return;
            }
            let Some(log_exists) = cluster.lock().logs.get(&key).map(|_| ()) else {
                return; // Garbage-collected with its pod.
            };
            let () = log_exists;
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
                if sender.send(Ok(text)).await.is_err() {
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

/// `image` with the `:latest` tag it means when it has none.
fn normalize_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// Deletes a Job with background propagation: its pods (and their logs) and the Secrets it
/// owns follow it.
fn delete_job_cascade(cluster: &Cluster, ns: &str, name: &str) -> Option<Value> {
    let job = cluster.get(Kind::Job, ns, name)?;
    cluster
        .lock()
        .deleted_jobs
        .push((ns.to_owned(), name.to_owned()));
    let uid = job["metadata"]["uid"].clone();
    for kind in [Kind::Pod, Kind::Secret] {
        let owned: Vec<String> = cluster
            .lock()
            .objects
            .iter()
            .filter(|((k, n, _), object)| {
                *k == kind
                    && n == ns
                    && object["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|owners| owners.iter().any(|owner| owner["uid"] == uid))
            })
            .map(|((_, _, object_name), _)| object_name.clone())
            .collect();
        for object in owned {
            cluster.remove(kind, ns, &object);
            if kind == Kind::Pod {
                cluster.lock().logs.remove(&(ns.to_owned(), object));
            }
        }
    }
    cluster.remove(Kind::Job, ns, name)
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
                break;
            }
            Attempt::DeadlineExceeded => {
                finish(
                    json!({ "type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                            "message": "Job was active longer than specified deadline", "lastTransitionTime": now() }),
                    json!({ "failed": failures + 1 }),
                );
                break;
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
                    break;
                }
            }
        }
    }
    // The TTL controller: a finished Job goes, with its pods and their logs, after its TTL.
    if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_u64() {
        tokio::time::sleep(Duration::from_secs(ttl)).await;
        delete_job_cascade(&cluster, &ns, &job_name);
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

/// A new pod's name for `job_name`, as the Job controller's `generateName` gives it: a random
/// five-character suffix (so a later attempt may sort before an earlier one), never the name of
/// a pod that exists (the API server retries a taken name). The suffix used to be a prefix of
/// the process id and clock, which two attempts of one Job could share: the second pod then
/// replaced the first, and the run looked like a single attempt.
fn pod_name(cluster: &Cluster, ns: &str, job_name: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write(crate::infra::unique_suffix().as_bytes());
        let mut bits = hasher.finish();
        let suffix: String = (0..5)
            .map(|_| {
                let pick = usize::try_from(bits % 27).expect("below 27");
                bits /= 27;
                char::from(ALPHABET[pick])
            })
            .collect();
        let name = format!("{job_name}-{suffix}");
        if cluster.get(Kind::Pod, ns, &name).is_none() {
            return name;
        }
    }
}

async fn run_attempt(
    cluster: &Arc<Cluster>,
    ns: &str,
    job_name: &str,
    job: &Value,
    deadline: Option<tokio::time::Instant>,
) -> Attempt {
    let template = &job["spec"]["template"];
    let pod_name = pod_name(cluster, ns, job_name);
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

    let unschedulable = cluster
        .lock()
        .unschedulable
        .iter()
        .any(|marker| job_name.contains(marker.as_str()));
    if unschedulable {
        cluster.update(Kind::Pod, ns, &pod_name, |pod| {
            pod["status"] = json!({ "phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu." }] });
        });
        loop {
            if gone() {
                return Attempt::Deleted;
            }
            if past_deadline() {
                // The Job controller deletes the active pods before it marks the Job failed.
                cluster.remove(Kind::Pod, ns, &pod_name);
                return Attempt::DeadlineExceeded;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let entrypoint = {
        let store = cluster.lock();
        let marked = store
            .unpullable
            .iter()
            .any(|marker| image.contains(marker.as_str()));
        store
            .images
            .get(&normalize_image(&image))
            .filter(|_| !marked)
            .cloned()
    };
    let Some(entrypoint) = entrypoint else {
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
    };

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
    // `command` replaces the image's entrypoint; `args` follow either.
    let strings = |value: &Value| -> Option<Vec<String>> {
        value.as_array().map(|parts| {
            parts
                .iter()
                .filter_map(|part| part.as_str().map(str::to_owned))
                .collect()
        })
    };
    let mut argv = strings(&container["command"]).unwrap_or(entrypoint);
    argv.extend(strings(&container["args"]).unwrap_or_default());
    if argv.is_empty() {
        argv.push("true".to_owned());
    }
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
            finish_log(cluster, &key);
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
                    // Gone with its pod (deleted, collected): the output goes nowhere.
                    if let Some(log) = store.logs.get_mut(&key) {
                        log.lines.push((chrono::Utc::now(), line));
                    }
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
                    finish_log(cluster, &key);
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
    finish_log(cluster, &key);
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

/// Marks a pod's log complete (if the pod still has one).
fn finish_log(cluster: &Cluster, key: &(String, String)) {
    if let Some(log) = cluster.lock().logs.get_mut(key) {
        log.done = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_pods_never_share_a_name() {
        let cluster = Cluster {
            store: Mutex::new(Store::default()),
            changed: watch::channel(0).0,
        };
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let name = pod_name(&cluster, "default", "proctor-1-flaky");
            let suffix = name
                .strip_prefix("proctor-1-flaky-")
                .expect("the Job's name first");
            assert_eq!(suffix.len(), 5, "{name}");
            cluster.put(
                Kind::Pod,
                "default",
                json!({ "metadata": { "name": name } }),
                "ADDED",
            );
            assert!(names.insert(name), "a name was given twice");
        }
    }
}
