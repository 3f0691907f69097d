//! The Kubernetes manifests in `deploy/` stay valid and in step with the code.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use proctor_tests::{TestApp, workspace_binary};

fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes")
        .join(name)
}

fn parse<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let text = std::fs::read_to_string(manifest(name)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test]
async fn the_manifests_parse_and_match_what_proctord_reads_and_serves() {
    let _: ServiceAccount = parse("serviceaccount.yaml");
    let binding: RoleBinding = parse("rolebinding.yaml");
    assert_eq!(binding.role_ref.name, "proctord");
    let service: Service = parse("service.yaml");
    assert_eq!(
        service.spec.unwrap().ports.unwrap()[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()))
    );

    let deployment: Deployment = parse("deployment.yaml");
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("proctord"));
    let container = &pod.containers[0];

    // Every variable the manifest sets is one proctord documents.
    let help = Command::new(workspace_binary("proctord"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for var in container.env.as_ref().unwrap() {
        assert!(
            help.contains(&format!("[env: {}", var.name)),
            "{} is not a proctord setting",
            var.name
        );
    }

    // The probes ask routes proctord serves.
    let app = TestApp::spawn().await;
    for probe in [&container.readiness_probe, &container.liveness_probe] {
        let path = probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap();
        // Readiness may take a moment after start-up (the Redis subscription).
        let mut status = 0;
        for _ in 0..100 {
            status = app
                .http
                .get(app.url(&path))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(status, 200, "probe {path}");
    }
}

#[test]
fn the_role_grants_exactly_what_the_kubernetes_executor_uses() {
    let role: Role = parse("role.yaml");
    let rules: Vec<(String, String, Vec<String>)> = role
        .rules
        .unwrap()
        .into_iter()
        .map(|rule| {
            (
                rule.api_groups.unwrap().join(","),
                rule.resources.unwrap().join(","),
                rule.verbs,
            )
        })
        .collect();
    let expected = [
        (
            "batch",
            "jobs",
            vec!["create", "get", "list", "watch", "delete"],
        ),
        ("", "pods", vec!["get", "list", "watch"]),
        ("", "pods/log", vec!["get"]),
        ("", "secrets", vec!["create", "patch", "delete"]),
    ];
    assert_eq!(rules.len(), expected.len());
    for ((group, resource, verbs), (want_group, want_resource, want_verbs)) in
        rules.iter().zip(expected)
    {
        assert_eq!(
            (group.as_str(), resource.as_str()),
            (want_group, want_resource)
        );
        assert_eq!(verbs, &want_verbs);
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let listed = std::fs::read_to_string(manifest("kustomization.yaml")).unwrap();
    let files = std::fs::read_dir(manifest("")).unwrap();
    for file in files.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        if name != "kustomization.yaml" {
            assert!(
                listed.contains(&format!("- {name}")),
                "{name} is not in kustomization.yaml"
            );
        }
    }
}

#[test]
fn the_manifests_pass_kubernetes_schema_validation() {
    // ./tests/run.sh installs kubernetes-validate (PyPI, schemas offline) into target/tools.
    let installed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/venv/bin/kubernetes-validate");
    let tool = if installed.exists() {
        installed
    } else if Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok()
    {
        PathBuf::from("kubernetes-validate")
    } else {
        assert!(
            !proctor_tests::infra::is_ci(),
            "CI=true but kubernetes-validate is missing; ./tests/run.sh installs it"
        );
        eprintln!("SKIPPED: kubernetes-validate is not installed (./tests/run.sh installs it)");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest(""))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name != "kustomization.yaml")
        })
        .collect();
    files.sort();
    let output = Command::new(&tool)
        .args(["--strict", "--no-warn"])
        .args(&files)
        .output()
        .expect("kubernetes-validate runs");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(said.contains(&format!("{name} passed")), "{name}: {said}");
    }
}

#[test]
fn the_deployment_is_hardened_and_jobs_run_in_their_own_namespace() {
    let text = std::fs::read_to_string(manifest("deployment.yaml")).unwrap();
    let deployment: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        proctor_tests::pod_security::restricted_violations(pod),
        Vec::<String>::new()
    );
    let container = &pod["containers"][0];
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let jobs_namespace = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|var| var["name"] == "PROCTOR_DEFAULT_NAMESPACE")
        .and_then(|var| var["value"].as_str())
        .expect("the Jobs' namespace is set");
    assert_eq!(jobs_namespace, "proctor-jobs");
    assert_eq!(deployment["metadata"]["namespace"], "proctor");

    // The executor's rights exist only where the Jobs run.
    let role: Role = parse("role.yaml");
    assert_eq!(role.metadata.namespace.as_deref(), Some(jobs_namespace));
    let binding: RoleBinding = parse("rolebinding.yaml");
    assert_eq!(binding.metadata.namespace.as_deref(), Some(jobs_namespace));
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("proctord", Some("proctor"))
    );

    let budget: PodDisruptionBudget = parse("poddisruptionbudget.yaml");
    assert_eq!(
        budget.spec.unwrap().min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let policy: NetworkPolicy = parse("networkpolicy.yaml");
    let spec = policy.spec.unwrap();
    let ingress_ports: Vec<_> = spec.ingress.unwrap()[0]
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .map(|port| port.port)
        .collect();
    assert_eq!(
        ingress_ports,
        [Some(
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(5001)
        )],
        "only the HTTP port takes connections"
    );
    let namespaces = std::fs::read_to_string(manifest("namespace.yaml")).unwrap();
    assert_eq!(
        namespaces
            .matches("pod-security.kubernetes.io/enforce: restricted")
            .count(),
        2,
        "both namespaces enforce restricted"
    );
}
