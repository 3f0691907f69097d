//! The Pod Security Standards' "restricted" profile, checked on a pod spec (as JSON): what a
//! namespace labelled `pod-security.kubernetes.io/enforce: restricted` admits.

use serde_json::Value;

/// Volume types "restricted" allows.
const VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// What in `pod` (a `PodSpec`) the "restricted" profile refuses; empty when it is admitted.
pub fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == Value::Bool(true) {
            found.push(format!("{host} is true"));
        }
    }
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let allowed = volume.as_object().is_some_and(|fields| {
            fields
                .keys()
                .all(|key| key == "name" || VOLUME_TYPES.contains(&key.as_str()))
        });
        if !allowed {
            found.push(format!(
                "volume {} is of a type restricted refuses",
                volume["name"]
            ));
        }
    }
    let pod_context = &pod["securityContext"];
    let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|kind| pod[*kind].as_array().into_iter().flatten())
        .collect();
    if containers.is_empty() {
        found.push("no containers".to_owned());
    }
    for container in containers {
        let name = &container["name"];
        let context = &container["securityContext"];
        if context["privileged"] == Value::Bool(true) {
            found.push(format!("{name}: privileged"));
        }
        if context["allowPrivilegeEscalation"] != Value::Bool(false) {
            found.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let drops_all = context["capabilities"]["drop"]
            .as_array()
            .is_some_and(|drop| drop.iter().any(|cap| cap == "ALL"));
        if !drops_all {
            found.push(format!("{name}: capabilities do not drop ALL"));
        }
        for added in context["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if added != "NET_BIND_SERVICE" {
                found.push(format!("{name}: adds capability {added}"));
            }
        }
        let non_root = context["runAsNonRoot"] == Value::Bool(true)
            || (context["runAsNonRoot"].is_null()
                && pod_context["runAsNonRoot"] == Value::Bool(true));
        if !non_root {
            found.push(format!("{name}: runAsNonRoot is not true"));
        }
        for user in [&context["runAsUser"], &pod_context["runAsUser"]] {
            if user.as_i64() == Some(0) {
                found.push(format!("{name}: runs as uid 0"));
            }
        }
        let seccomp = match context["seccompProfile"]["type"].as_str() {
            Some(kind) => Some(kind),
            None => pod_context["seccompProfile"]["type"].as_str(),
        };
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            found.push(format!(
                "{name}: no RuntimeDefault or Localhost seccomp profile"
            ));
        }
        for port in container["ports"].as_array().into_iter().flatten() {
            if port["hostPort"].as_i64().is_some_and(|port| port != 0) {
                found.push(format!("{name}: uses a host port"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_hardened_pod_passes_and_each_weakness_is_named() {
        let good = json!({
            "securityContext": { "runAsNonRoot": true, "runAsUser": 10, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{ "name": "c", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } } }],
        });
        assert_eq!(restricted_violations(&good), Vec::<String>::new());
        let mut weak = good.clone();
        weak["hostNetwork"] = json!(true);
        weak["securityContext"]["runAsUser"] = json!(0);
        weak["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
        weak["volumes"] = json!([{ "name": "h", "hostPath": { "path": "/" } }]);
        let found = restricted_violations(&weak);
        assert_eq!(found.len(), 4, "{found:?}");
        let mut open = good;
        open["securityContext"] = json!({});
        assert_eq!(
            restricted_violations(&open).len(),
            2,
            "runAsNonRoot and seccomp"
        );
    }
}
