//! What can be checked of the deployment files without a cluster or an image registry:
//! every Kubernetes manifest is a valid object of its kind with no unknown field, the
//! probes and ports match breakwater's routes and `server.listen`, the ConfigMap's
//! configuration passes `check-config`, the Dockerfile and the manifests agree on user
//! and paths, and the systemd unit passes `systemd-analyze verify` where systemd is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde_norway::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document of a file.
fn documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// Deserializes into a k8s-openapi type, failing on any field the type does not have
/// (the types themselves skip unknown fields silently).
fn typed<T: DeserializeOwned>(document: &Value, file: &str) -> T {
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(document.clone(), |path| {
        unknown.push(path.to_string());
    })
    .unwrap_or_else(|e| panic!("{file}: not a valid object: {e}"));
    assert!(unknown.is_empty(), "{file}: unknown fields {unknown:?}");
    parsed
}

#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    budgets: Vec<PodDisruptionBudget>,
    network_policies: Vec<NetworkPolicy>,
    ingresses: Vec<Ingress>,
}

fn kubernetes_dir() -> PathBuf {
    deploy_dir().join("kubernetes")
}

fn kustomization() -> Value {
    let path = kubernetes_dir().join("kustomization.yaml");
    documents(&path)
        .into_iter()
        .next()
        .expect("a kustomization")
}

fn load_manifests() -> Manifests {
    let mut manifests = Manifests::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(kubernetes_dir())
        .expect("deploy/kubernetes")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .filter(|path| !path.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    for path in files {
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for document in documents(&path) {
            let kind = document["kind"].as_str().unwrap_or_default().to_owned();
            match kind.as_str() {
                "Namespace" => manifests.namespaces.push(typed(&document, &file)),
                "ServiceAccount" => manifests.service_accounts.push(typed(&document, &file)),
                "Role" => manifests.roles.push(typed(&document, &file)),
                "RoleBinding" => manifests.role_bindings.push(typed(&document, &file)),
                "Deployment" => manifests.deployments.push(typed(&document, &file)),
                "Service" => manifests.services.push(typed(&document, &file)),
                "PodDisruptionBudget" => manifests.budgets.push(typed(&document, &file)),
                "NetworkPolicy" => manifests.network_policies.push(typed(&document, &file)),
                "Ingress" => manifests.ingresses.push(typed(&document, &file)),
                other => panic!("{file}: unexpected kind {other:?}"),
            }
        }
    }
    manifests
}

fn deployment(manifests: &Manifests) -> &Deployment {
    assert_eq!(manifests.deployments.len(), 1);
    &manifests.deployments[0]
}

fn pod(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .expect("a pod spec")
}

fn container(deployment: &Deployment) -> &Container {
    let pod = pod(deployment);
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

/// The configuration the ConfigMap is generated from, as TOML.
fn config_map_toml() -> toml::Table {
    read(&kubernetes_dir().join("breakwater.toml"))
        .parse()
        .expect("breakwater.toml is TOML")
}

fn listen_port() -> i32 {
    let config = config_map_toml();
    let listen = config["server"]["listen"].as_str().expect("server.listen");
    let address: std::net::SocketAddr = listen.parse().expect("server.listen is an address");
    assert!(
        address.ip().is_unspecified(),
        "server.listen must take connections from the Service, not only loopback"
    );
    i32::from(address.port())
}

/// `${NAME}` placeholders on the file's lines that are not comments.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            names.insert(rest[start + 2..start + end].to_owned());
            rest = &rest[start + end..];
        }
    }
    names
}

#[test]
fn every_kubernetes_manifest_is_a_valid_object_with_no_unknown_field() {
    let manifests = load_manifests();
    assert_eq!(manifests.namespaces.len(), 1);
    assert_eq!(manifests.service_accounts.len(), 1);
    assert_eq!(manifests.services.len(), 1);
    assert_eq!(manifests.budgets.len(), 1);
    assert_eq!(manifests.network_policies.len(), 1);
    assert!(!manifests.roles.is_empty() && !manifests.role_bindings.is_empty());
    assert_eq!(manifests.ingresses.len(), 1, "the optional Ingress example");
}

#[test]
fn the_kustomization_lists_every_manifest_and_generates_the_config_map() {
    let kustomization = kustomization();
    let resources: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file").to_owned())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(kubernetes_dir())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .filter(|name| name != "kustomization.yaml" && !name.ends_with(".example.yaml"))
        .collect();
    assert_eq!(resources, on_disk);
    assert!(
        kustomization.get("namespace").is_none(),
        "a kustomization namespace would move rbac.yaml's Roles out of the services' namespaces"
    );
    let generator = &kustomization["configMapGenerator"][0];
    assert_eq!(generator["name"], "breakwater-config");
    assert_eq!(generator["files"][0], "breakwater.toml");
    let volumes = pod(deployment(&load_manifests()))
        .volumes
        .clone()
        .unwrap_or_default();
    assert!(
        volumes.iter().any(|v| v
            .config_map
            .as_ref()
            .is_some_and(|c| c.name == "breakwater-config")),
        "the Deployment mounts the generated ConfigMap"
    );
}

#[test]
fn probes_and_ports_match_the_routes_and_server_listen() {
    let manifests = load_manifests();
    let deployment = deployment(&manifests);
    let container = container(deployment);
    let port = listen_port();
    let ports = container.ports.clone().unwrap_or_default();
    let http = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("a port named http");
    assert_eq!(
        http.container_port, port,
        "containerPort = server.listen's port"
    );
    let probe_target = |probe: &Option<k8s_openapi::api::core::v1::Probe>, name: &str| {
        let action = probe
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .unwrap_or_else(|| panic!("{name} probe over HTTP"));
        match &action.port {
            IntOrString::String(named) => assert_eq!(named, "http", "{name} probe port"),
            IntOrString::Int(number) => assert_eq!(*number, port, "{name} probe port"),
        }
        action.path.unwrap_or_default()
    };
    assert_eq!(
        probe_target(&container.readiness_probe, "readiness"),
        "/readyz"
    );
    assert_eq!(
        probe_target(&container.liveness_probe, "liveness"),
        "/healthz"
    );
    assert_eq!(
        probe_target(&container.startup_probe, "startup"),
        "/healthz"
    );

    let service = &manifests.services[0];
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    assert_eq!(
        service_ports[0].target_port,
        Some(IntOrString::String("http".to_owned()))
    );
    let policy = manifests.network_policies[0].spec.as_ref().expect("spec");
    let ingress_ports: Vec<_> = policy
        .ingress
        .clone()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|rule| rule.ports.unwrap_or_default())
        .filter_map(|p| p.port)
        .collect();
    assert_eq!(ingress_ports, [IntOrString::String("http".to_owned())]);
    let egress_ports: BTreeSet<String> = policy
        .egress
        .clone()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|rule| rule.ports.unwrap_or_default())
        .filter_map(|p| p.port)
        .map(|p| match p {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => s,
        })
        .collect();
    for needed in ["53", "443", "5432"] {
        assert!(egress_ports.contains(needed), "egress to port {needed}");
    }
    for ingress in &manifests.ingresses {
        for rule in ingress
            .spec
            .as_ref()
            .and_then(|s| s.rules.clone())
            .unwrap_or_default()
        {
            for path in rule.http.map(|h| h.paths).unwrap_or_default() {
                let backend = path.backend.service.expect("a service backend");
                assert_eq!(backend.name, "breakwater");
                assert_eq!(backend.port.and_then(|p| p.name).as_deref(), Some("http"));
            }
        }
    }
}

#[test]
fn the_deployment_runs_several_hardened_replicas_on_postgres() {
    let manifests = load_manifests();
    let deployment = deployment(&manifests);
    let spec = deployment.spec.as_ref().expect("spec");
    assert!(spec.replicas.unwrap_or(1) >= 2, "two replicas or more");
    let pod = pod(deployment);
    let container = container(deployment);

    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    let uid = pod_security.run_as_user.expect("a numeric user");
    assert!(uid > 0);
    assert_eq!(
        pod_security
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let security = container
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    let resources = container.resources.as_ref().expect("resources");
    assert!(
        resources
            .requests
            .as_ref()
            .is_some_and(|r| r.contains_key("memory"))
    );
    assert!(
        resources
            .limits
            .as_ref()
            .is_some_and(|l| l.contains_key("memory"))
    );

    // The same user as the image, so the data directory's owner matches.
    assert_eq!(dockerfile_user(), uid);

    // SIGTERM comes after preStop; the grace period covers both and shutdown_grace.
    let config = config_map_toml();
    let shutdown_grace = humantime::parse_duration(
        config["server"]["shutdown_grace"]
            .as_str()
            .expect("server.shutdown_grace"),
    )
    .expect("a duration")
    .as_secs();
    let pre_stop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .map_or(0, |s| s.seconds);
    let grace = pod
        .termination_grace_period_seconds
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > i64::try_from(shutdown_grace).expect("secs") + pre_stop,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} + shutdown_grace {shutdown_grace}"
    );

    // Several replicas need PostgreSQL.
    assert_eq!(config["database"]["url"].as_str(), Some("${DATABASE_URL}"));

    // The config is where the image and the README expect it.
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    assert!(mounts.iter().any(|m| m.mount_path == "/etc/breakwater"));
    let env = container.env.clone().unwrap_or_default();
    assert!(env.iter().any(|e| e.name == "BREAKWATER_CONFIG"
        && e.value.as_deref() == Some("/etc/breakwater/breakwater.toml")));

    // The existing RBAC is bound to the ServiceAccount the pods run as.
    let account = &manifests.service_accounts[0].metadata;
    assert_eq!(pod.service_account_name.as_deref(), account.name.as_deref());
    assert_eq!(deployment.metadata.namespace, account.namespace);
    for binding in &manifests.role_bindings {
        let subjects = binding.subjects.clone().unwrap_or_default();
        assert!(subjects.iter().any(|s| s.kind == "ServiceAccount"
            && Some(&s.name) == account.name.as_ref()
            && s.namespace == account.namespace));
    }

    // The budget and the Service select these pods.
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let budget = manifests.budgets[0].spec.as_ref().expect("spec");
    let selected = budget
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    assert!(selected.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let service = manifests.services[0]
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    assert!(!service.is_empty() && service.iter().all(|(k, v)| labels.get(k) == Some(v)));
}

/// `breakwater check-config` on the ConfigMap's file, with every secret it names set.
#[test]
fn the_config_map_passes_check_config() {
    let path = kubernetes_dir().join("breakwater.toml");
    let text = read(&path);
    let mut command = Command::new(env!("CARGO_BIN_EXE_breakwater"));
    command.args(["check-config", "--config"]).arg(&path);
    for name in placeholders(&text) {
        let value = match name.as_str() {
            "DATABASE_URL" => "postgres://breakwater@postgres.db:5432/breakwater".to_owned(),
            "SLACK_BOT_TOKEN" => "xoxb-1-2-3".to_owned(),
            "SLACK_APP_TOKEN" => "xapp-1-2-3".to_owned(),
            _ => format!("{}-0123456789abcdef0123456789abcdef", name.to_lowercase()),
        };
        command.env(name, value);
    }
    let output = command.output().expect("run check-config");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The README's `kubectl create secret` line names every secret the ConfigMap reads.
#[test]
fn the_readme_secret_command_names_every_secret_the_config_reads() {
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    let start = readme
        .find("kubectl -n breakwater create secret generic breakwater")
        .expect("the README shows the secret");
    let command: String = readme[start..]
        .lines()
        .take_while(|line| !line.trim().is_empty() && !line.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    for name in placeholders(&read(&kubernetes_dir().join("breakwater.toml"))) {
        assert!(
            command.contains(&format!("{name}=")),
            "{name} missing from:\n{command}"
        );
    }
}

fn dockerfile() -> String {
    read(&deploy_dir().join("Dockerfile"))
}

/// The runtime stage's `USER`, which must be numeric (Kubernetes' runAsNonRoot can only
/// check a number).
fn dockerfile_user() -> i64 {
    let text = dockerfile();
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER line");
    let uid = user.split(':').next().unwrap_or_default().trim();
    uid.parse()
        .unwrap_or_else(|_| panic!("USER {user} is not numeric"))
}

#[test]
fn the_image_runs_serve_as_a_numeric_non_root_user_with_the_documented_paths() {
    let text = dockerfile();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "a multi-stage build");
    assert!(text.contains("cargo build --release --locked"));
    assert!(dockerfile_user() > 0, "not root");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&r#"ENTRYPOINT ["/usr/local/bin/breakwater"]"#));
    assert!(lines.contains(&r#"CMD ["serve"]"#));
    assert!(lines.contains(&"ENV BREAKWATER_CONFIG=/etc/breakwater/breakwater.toml"));
    assert!(lines.contains(&"WORKDIR /var/lib/breakwater"));
    // The image the manifests run is this one: the binary path and the user.
    let manifests = load_manifests();
    let container = container(deployment(&manifests));
    assert_eq!(container.args.clone().unwrap_or_default(), ["serve"]);
    assert!(
        container.command.is_none(),
        "the image's entrypoint is used"
    );
}

fn unit_path() -> PathBuf {
    deploy_dir().join("systemd").join("breakwater.service")
}

#[test]
fn the_systemd_unit_is_hardened_and_reads_secrets_as_credentials() {
    let unit = read(&unit_path());
    for line in [
        "DynamicUser=yes",
        "StateDirectory=breakwater",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "ExecStart=/usr/local/bin/breakwater serve",
        "Environment=BREAKWATER_CONFIG=/etc/breakwater/breakwater.toml",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    assert!(unit.lines().any(|l| l.starts_with("LoadCredential=")));
    assert!(unit.contains("{ file = \"/run/credentials/breakwater.service/"));
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("skipping: systemd-analyze is not installed");
        return;
    }
    // Verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = read(&unit_path()).replace(
        "ExecStart=/usr/local/bin/breakwater",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_breakwater")),
    );
    let path = dir.path().join("breakwater.service");
    std::fs::write(&path, unit).expect("write");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("breakwater.service"))
        .collect();
    assert!(output.status.success(), "{stderr}");
    assert!(complaints.is_empty(), "{complaints:#?}");
}

#[test]
fn kubectl_renders_the_kustomization_where_kubectl_is_installed() {
    let available = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("skipping: kubectl is not installed");
        return;
    }
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(kubernetes_dir())
        .output()
        .expect("run kubectl kustomize");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8_lossy(&output.stdout);
    assert!(rendered.contains("kind: ConfigMap"));
    assert!(
        rendered.contains("name: breakwater-config-"),
        "hashed ConfigMap name"
    );
}
