//! The Kubernetes manifests in `deploy/` stay valid and in step with the code.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
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
