//! Proctor v2 settings that no longer apply, each with what replaces it. A server started with
//! one set says so in one WARN line per setting (never silently ignores it); the book's
//! configuration reference lists them (generated from this list).

/// A v2 setting (an exact name, or a prefix ending in `_*`) and what replaces it.
pub struct Retired {
    /// The variable, or the prefix of a family of them (`PROCTOR_NEW_RELIC_*`).
    pub name: &'static str,
    /// What to use instead, in words an operator acts on.
    pub instead: &'static str,
}

/// Every retired v2 setting.
pub const RETIRED: &[Retired] = &[
    Retired {
        name: "PROCTOR_SENTRY_DSN",
        instead: "export traces with PROCTOR_OTLP_ENDPOINT (OpenTelemetry); errors go to the \
                  log (PROCTOR_LOG_FORMAT=json) and the counters on /metrics",
    },
    Retired {
        name: "PROCTOR_NEW_RELIC_*",
        instead: "export traces with PROCTOR_OTLP_ENDPOINT (OpenTelemetry) and scrape /metrics \
                  (Prometheus)",
    },
    Retired {
        name: "PROCTOR_LOGS_STREAM_READ_BUFFER_SIZE",
        instead: "live logs stream over GraphQL subscriptions; PROCTOR_MAX_BODY_BYTES bounds a \
                  message",
    },
    Retired {
        name: "PROCTOR_LOGS_STREAM_WRITE_BUFFER_SIZE",
        instead: "live logs stream over GraphQL subscriptions; PROCTOR_MAX_BODY_BYTES bounds a \
                  message",
    },
    Retired {
        name: "PROCTOR_KUBE_CLUSTER_HOST_NAME",
        instead: "the cluster comes from the in-cluster service account, or from \
                  PROCTOR_KUBE_CONFIG and PROCTOR_KUBE_CONTEXT",
    },
    Retired {
        name: "PROCTOR_KUBE_CA_CERT_ENCODED",
        instead: "the cluster's CA comes from the in-cluster service account, or from the \
                  kubeconfig PROCTOR_KUBE_CONFIG names",
    },
    Retired {
        name: "PROCTOR_KUBE_BASIC_AUTH_ENCODED",
        instead: "credentials come from the in-cluster service account, or from the kubeconfig \
                  PROCTOR_KUBE_CONFIG names",
    },
    Retired {
        name: "PROCTOR_KUBE_POD_LIST_WAIT_TIME",
        instead: "runs are followed with watches, not polled; \
                  PROCTOR_KUBE_IMAGE_PULL_GRACE_SECONDS bounds a pod that cannot start",
    },
    Retired {
        name: "PROCTOR_KUBE_WAIT_FOR_RESOURCE_POLL_COUNT",
        instead: "runs are followed with watches, not polled; \
                  PROCTOR_KUBE_IMAGE_PULL_GRACE_SECONDS bounds a pod that cannot start",
    },
    Retired {
        name: "PROCTOR_KUBE_LOG_PROCESS_WAIT_TIME",
        instead: "logs are followed with watches, not polled",
    },
    Retired {
        name: "PROCTOR_AUTH_PLUGIN_*",
        instead: "PROCTOR_AUTH_WEBHOOK_URL (an identity service asked over HTTP)",
    },
    Retired {
        name: "GATE_PLUGIN_*",
        instead: "PROCTOR_AUTH_WEBHOOK_URL (an identity service asked over HTTP)",
    },
    Retired {
        name: "PROCTOR_NOTIFICATION_PLUGIN_*",
        instead: "PROCTOR_SLACK_WEBHOOK_URL, PROCTOR_NOTIFY_WEBHOOK_URL and the PROCTOR_MAIL_* \
                  settings",
    },
    Retired {
        name: "PROCTOR_SCHEDULED_JOBS_FETCH_INTERVAL_IN_MINS",
        instead: "the scheduler fires at each slot's time and sees changes at once",
    },
    Retired {
        name: "PROCTOR_REDIS_MAX_ACTIVE_CONNECTIONS",
        instead: "each replica uses two Redis connections",
    },
    Retired {
        name: "PROCTOR_DOCS_PATH",
        instead: "the API documents itself: GraphQL introspection and /playground",
    },
];

impl Retired {
    /// Whether the variable `name` is this setting (or one of its family).
    pub fn matches(&self, name: &str) -> bool {
        match self.name.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == self.name,
        }
    }
}

/// The retired settings among `variables` (set and not blank), with the variable's name.
pub fn retired_in<I, K, V>(variables: I) -> Vec<(String, &'static Retired)>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut found: Vec<(String, &'static Retired)> = variables
        .into_iter()
        .filter(|(_, value)| !value.as_ref().trim().is_empty())
        .filter_map(|(name, _)| {
            let name = name.as_ref();
            RETIRED
                .iter()
                .find(|retired| retired.matches(name))
                .map(|retired| (name.to_owned(), retired))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Says, in one WARN line each, which retired settings this process's environment sets.
pub fn warn_about_retired_settings() {
    let variables = std::env::vars_os().filter_map(|(name, value)| {
        Some((
            name.into_string().ok()?,
            value.to_string_lossy().into_owned(),
        ))
    });
    for (name, retired) in retired_in(variables) {
        tracing::warn!(
            setting = %name,
            "{name} is a Proctor v2 setting that no longer applies and is ignored: {}",
            retired.instead
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_settings_are_found_by_name_or_family_and_blank_ones_skipped() {
        let found = retired_in([
            ("PROCTOR_NEW_RELIC_APP_NAME", "proctor"),
            ("PROCTOR_SENTRY_DSN", "https://x@sentry.example/1"),
            ("PROCTOR_KUBE_CA_CERT_ENCODED", "  "),
            ("PROCTOR_APP_PORT", "5001"),
            ("PROCTOR_AUTH_PLUGIN_BINARY", "/plugin.so"),
        ]);
        let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "PROCTOR_AUTH_PLUGIN_BINARY",
                "PROCTOR_NEW_RELIC_APP_NAME",
                "PROCTOR_SENTRY_DSN"
            ]
        );
        assert!(found[0].1.instead.contains("PROCTOR_AUTH_WEBHOOK_URL"));
    }

    #[test]
    fn no_retired_setting_is_one_proctord_reads() {
        let command = super::super::settings_command();
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env().and_then(|env| env.to_str()) {
                assert!(
                    !RETIRED.iter().any(|retired| retired.matches(env)),
                    "{env} is read and retired at once"
                );
            }
        }
    }
}
