//! The Kubernetes executor: cluster access and what every Job gets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{ConfigError, seconds, text};

/// The Kubernetes executor, as given.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Kubernetes")]
pub struct Kube {
    /// Kubernetes access: empty for in-cluster, `out-of-cluster` for the default kubeconfig,
    /// or the path of a kubeconfig file.
    #[arg(long, env = "PROCTOR_KUBE_CONFIG", value_parser = access)]
    pub kube_config: Option<KubeAccess>,
    /// Kubeconfig context (the current one when unset).
    #[arg(long, env = "PROCTOR_KUBE_CONTEXT", value_parser = text)]
    pub kube_context: Option<String>,
    /// Namespace of the Jobs.
    #[arg(long, env = "PROCTOR_DEFAULT_NAMESPACE", default_value = "default")]
    #[arg(value_parser = dns_label)]
    pub kube_namespace: String,
    /// Annotations for Jobs and their pods, as a JSON object of strings.
    #[arg(long, env = "PROCTOR_JOB_POD_ANNOTATIONS", value_parser = annotations)]
    pub job_pod_annotations: Option<BTreeMap<String, String>>,
    /// Service account the pods run as.
    #[arg(long, env = "PROCTOR_KUBE_SERVICE_ACCOUNT_NAME", value_parser = text)]
    pub kube_service_account: Option<String>,
    /// activeDeadlineSeconds of Jobs whose proc sets no timeout (default: the default timeout).
    #[arg(long = "kube-active-deadline-seconds", value_parser = seconds)]
    #[arg(env = "PROCTOR_KUBE_JOB_ACTIVE_DEADLINE_SECONDS")]
    pub kube_active_deadline: Option<Duration>,
    /// backoffLimit of Jobs whose proc sets no retries.
    #[arg(long, env = "PROCTOR_KUBE_JOB_RETRIES", default_value = "0", value_parser = retries)]
    pub kube_job_retries: u32,
    /// ttlSecondsAfterFinished of Jobs: how long finished Jobs stay in the cluster.
    #[arg(long = "kube-job-ttl-seconds", env = "PROCTOR_KUBE_JOB_TTL_SECONDS")]
    #[arg(default_value = "86400", value_parser = seconds)]
    pub kube_job_ttl: Duration,
    /// Seconds an image may fail to pull before the run fails.
    #[arg(long = "kube-image-pull-grace-seconds", env = "PROCTOR_KUBE_IMAGE_PULL_GRACE_SECONDS")]
    #[arg(default_value = "120", value_parser = seconds)]
    pub kube_image_pull_grace: Duration,
    /// User (and group) id Job pods run as, never 0; `image` keeps each image's own non-root
    /// `USER` (Pod Security "restricted" refuses images that run as root either way).
    #[arg(long = "kube-job-run-as-user", env = "PROCTOR_KUBE_JOB_RUN_AS_USER")]
    #[arg(default_value = "65534", value_parser = run_as_user)]
    pub kube_job_run_as: JobUser,
}

/// Whom Job pods run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobUser {
    /// This uid, and the same gid.
    Id(u32),
    /// The image's own `USER` (which must not be root).
    Image,
}

fn run_as_user(raw: &str) -> Result<JobUser, String> {
    match raw.trim() {
        "image" => Ok(JobUser::Image),
        number => match number.parse::<u32>() {
            Ok(0) => Err("0 is root; Job pods run as an unprivileged user".to_owned()),
            Ok(id) => Ok(JobUser::Id(id)),
            Err(_) => Err(format!("{raw:?} is neither a user id nor `image`")),
        },
    }
}

/// How `proctord` reaches the Kubernetes API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeAccess {
    /// The service account of the pod it runs in.
    InCluster,
    /// The default kubeconfig (`$KUBECONFIG` or `~/.kube/config`).
    OutOfCluster,
    /// This kubeconfig file.
    Kubeconfig(PathBuf),
}

/// The Kubernetes executor's settings, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeSettings {
    /// Cluster access.
    pub access: KubeAccess,
    /// Kubeconfig context.
    pub context: Option<String>,
    /// Namespace of the Jobs.
    pub namespace: String,
    /// Annotations on Jobs and pods.
    pub annotations: BTreeMap<String, String>,
    /// Service account of the pods.
    pub service_account: Option<String>,
    /// Deadline of Jobs whose proc sets no timeout.
    pub active_deadline: Duration,
    /// backoffLimit of Jobs whose proc sets no retries.
    pub retries: u32,
    /// How long finished Jobs stay.
    pub ttl_after_finished: Duration,
    /// How long an image may fail to pull before the run fails.
    pub image_pull_grace: Duration,
    /// Whom Job pods run as.
    pub run_as: JobUser,
}

impl Kube {
    /// Fills in what v2 left implicit: in-cluster access, the current context for `default`,
    /// the default timeout as the Jobs' deadline.
    pub fn validate(&self, default_timeout: Duration) -> Result<KubeSettings, ConfigError> {
        Ok(KubeSettings {
            access: self.kube_config.clone().unwrap_or(KubeAccess::InCluster),
            // Proctor v2 meant "the current context" by `default`.
            context: self
                .kube_context
                .clone()
                .filter(|context| context != "default"),
            namespace: self.kube_namespace.clone(),
            annotations: self.job_pod_annotations.clone().unwrap_or_default(),
            service_account: self.kube_service_account.clone(),
            active_deadline: self.kube_active_deadline.unwrap_or(default_timeout),
            retries: self.kube_job_retries,
            ttl_after_finished: self.kube_job_ttl,
            image_pull_grace: self.kube_image_pull_grace,
            run_as: self.kube_job_run_as,
        })
    }
}

fn access(raw: &str) -> Result<KubeAccess, String> {
    match raw.trim() {
        "" => Ok(KubeAccess::InCluster),
        "out-of-cluster" => Ok(KubeAccess::OutOfCluster),
        path => Ok(KubeAccess::Kubeconfig(PathBuf::from(path))),
    }
}

/// A DNS label, as namespaces are.
fn dns_label(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!("{name:?} is not a valid namespace name"))
    }
}

fn annotations(raw: &str) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str(raw.trim())
        .map_err(|e| format!("must be a JSON object of strings, e.g. {{\"team\":\"ops\"}} ({e})"))
}

fn retries(raw: &str) -> Result<u32, String> {
    raw.trim()
        .parse()
        .map_err(|_| "must be a whole number, 0 or more".to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, settings};
    use super::*;

    #[test]
    fn each_bad_value_names_its_setting() {
        assert_refused(
            "--kube-namespace=Prod                   PROCTOR_DEFAULT_NAMESPACE
             --job-pod-annotations=[1]               PROCTOR_JOB_POD_ANNOTATIONS
             --kube-job-retries=many                 PROCTOR_KUBE_JOB_RETRIES
             --kube-job-ttl-seconds=0                PROCTOR_KUBE_JOB_TTL_SECONDS",
        );
    }

    #[test]
    fn kubernetes_settings_keep_the_legacy_meanings() {
        let kube = settings(&[
            "--kube-config=out-of-cluster",
            "--kube-context=default",
            r#"--job-pod-annotations={"team":"ops"}"#,
            "--default-timeout-seconds=90",
        ])
        .unwrap()
        .kube;
        assert_eq!(kube.access, KubeAccess::OutOfCluster);
        assert_eq!(kube.context, None, "`default` means the current context");
        assert_eq!(kube.annotations["team"], "ops");
        assert_eq!(kube.active_deadline, Duration::from_secs(90));
        let path = settings(&["--kube-config=/etc/kube.yaml"]).unwrap().kube;
        assert_eq!(path.access, KubeAccess::Kubeconfig("/etc/kube.yaml".into()));
        assert_eq!(settings(&[]).unwrap().kube.access, KubeAccess::InCluster);
    }

    #[test]
    fn job_users_are_ids_or_the_images_own_never_root() {
        assert_eq!(run_as_user("1000"), Ok(JobUser::Id(1000)));
        assert_eq!(run_as_user(" image "), Ok(JobUser::Image));
        assert!(run_as_user("0").is_err(), "never root");
        assert!(run_as_user("root").is_err());
    }
}
