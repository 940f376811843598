//! The install, as written: `deploy/manifests` and the Helm chart render, lint, hold every rule
//! the webhook configuration needs, grant exactly the documented permissions, and are accepted by
//! the real API server (`kubectl apply --dry-run=server`).
//!
//! `tests/run.sh` provides helm and kubectl (`KAFKA_EXPOSE_TOOLS`) and the control plane
//! (`KAFKA_EXPOSE_E2E_ENV`); without them these tests fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use kafka_expose::offline::read_documents;
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/kafka-expose");
const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/manifests");

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var("KAFKA_EXPOSE_TOOLS").unwrap_or_else(|_| {
        panic!("these tests need helm and kubectl: run ./tests/run.sh, or set KAFKA_EXPOSE_TOOLS to `tests/e2e/control-plane.sh tools`")
    });
    Path::new(&dir).join(name)
}

fn kubeconfig() -> String {
    let path =
        std::env::var("KAFKA_EXPOSE_E2E_ENV").expect("the control plane: run ./tests/run.sh");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("KUBECONFIG=").map(str::to_string))
        .unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn helm_template(args: &[&str]) -> Vec<Value> {
    let text = run(Command::new(tool("helm"))
        .args(["template", "kx", CHART, "--namespace", "kafka-expose"])
        .args(args));
    read_documents(&text).unwrap()
}

const MODES: [&[&str]; 3] = [
    &[],
    &["--set", "certificates.mode=cert-manager"],
    &[
        "--set",
        "certificates.mode=secret",
        "--set",
        "certificates.caBundle=Y2E=",
    ],
];

/// The permissions the reconciler needs, and no more (README, "Permissions").
fn documented_rules() -> Value {
    json!([
        {"apiGroups": ["apps"], "resources": ["statefulsets", "deployments"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["kafka-expose.io"], "resources": ["kafkaexposepolicies"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["kafka-expose.io"], "resources": ["kafkaexposepolicies/status"], "verbs": ["update", "patch"]},
        {"apiGroups": ["kafka-expose.io"], "resources": ["kafkaexposepolicies/finalizers"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
    ])
}

fn check_webhook_configuration(mwc: &Value, own_namespace: &str) {
    let hooks = mwc["webhooks"].as_array().unwrap();
    assert_eq!(
        hooks.len(),
        4,
        "a workload, a pod, a policy and a binding webhook"
    );
    let bindings = &hooks[3];
    assert_eq!(
        bindings["rules"],
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods/binding", "bindings"], "scope": "Namespaced"}])
    );
    assert_eq!(
        bindings["failurePolicy"], "Ignore",
        "scheduling never waits for kafka-expose"
    );
    assert_eq!(bindings["sideEffects"], "None");
    assert_eq!(bindings["timeoutSeconds"], 2);
    assert_eq!(
        bindings["namespaceSelector"], hooks[0]["namespaceSelector"],
        "the same namespace exclusions"
    );
    let workloads = &hooks[0];
    let pods = &hooks[1];
    let policies = &hooks[2];
    assert_eq!(
        policies["rules"],
        json!([{"apiGroups": ["kafka-expose.io"], "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["kafkaexposepolicies"],
                "scope": "Cluster"}])
    );
    assert_eq!(
        policies["failurePolicy"], "Fail",
        "an invalid policy never gets in"
    );
    assert_eq!(policies["sideEffects"], "None");
    assert_eq!(policies["clientConfig"]["service"]["path"], "/mutate");
    assert_eq!(
        workloads["rules"][0]["resources"],
        json!(["statefulsets", "deployments"])
    );
    assert_eq!(
        workloads["rules"][0]["operations"],
        json!(["CREATE", "UPDATE"])
    );
    assert_eq!(pods["rules"][0]["resources"], json!(["pods"]));
    assert_eq!(pods["rules"][0]["operations"], json!(["CREATE"]));
    assert_eq!(
        pods["objectSelector"]["matchLabels"],
        json!({"kafka-expose.io/exposed": "true"})
    );
    for h in &hooks[..2] {
        let exprs = h["namespaceSelector"]["matchExpressions"]
            .as_array()
            .unwrap();
        let by_name = exprs
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name")
            .unwrap();
        assert_eq!(by_name["operator"], "NotIn");
        let excluded = by_name["values"].as_array().unwrap();
        assert!(
            excluded.contains(&json!("kube-system")) && excluded.contains(&json!(own_namespace)),
            "{excluded:?}"
        );
        assert!(
            exprs
                .iter()
                .any(|e| e["key"] == "kafka-expose.io/webhook" && e["operator"] == "NotIn")
        );
        assert_eq!(h["sideEffects"], "None");
        let timeout = h["timeoutSeconds"].as_u64().unwrap();
        assert!((1..=10).contains(&timeout), "a few seconds: {timeout}");
        assert_eq!(h["reinvocationPolicy"], "IfNeeded");
        assert_eq!(h["admissionReviewVersions"], json!(["v1"]));
        assert_eq!(h["clientConfig"]["service"]["path"], "/mutate");
    }
    assert_eq!(
        workloads["failurePolicy"], "Ignore",
        "the documented choice for workloads"
    );
    assert_eq!(
        pods["failurePolicy"], "Fail",
        "the documented choice for broker pods"
    );
}

#[test]
fn the_chart_lints_and_renders_in_every_certificate_mode() {
    run(Command::new(tool("helm")).args(["lint", "--strict", CHART]));
    let off = helm_template(&["--set", "webhook.bindings.enabled=false"]);
    let mwc = off
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    let names: Vec<&str> = mwc["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"bindings.kafka-expose.io"),
        "the chart turns the binding webhook off: {names:?}"
    );
    for mode in MODES {
        let docs = helm_template(mode);
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        for k in [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "MutatingWebhookConfiguration",
        ] {
            assert!(kinds.contains(&k), "{mode:?}: {k} in {kinds:?}");
        }
        let mwc = docs
            .iter()
            .find(|d| d["kind"] == "MutatingWebhookConfiguration")
            .unwrap();
        check_webhook_configuration(mwc, "kafka-expose");
        let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        assert_eq!(dep["spec"]["replicas"], 2);
        let c = &dep["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(
            dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
            true
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_object());
        match mode.get(1).copied() {
            Some("certificates.mode=cert-manager") => {
                assert!(
                    mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].is_string()
                );
                assert!(kinds.contains(&"Certificate"));
            }
            Some(m) if m.starts_with("certificates.mode=secret") => {
                assert_eq!(mwc["webhooks"][0]["clientConfig"]["caBundle"], "Y2E=");
            }
            _ => {
                let jobs: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Job").collect();
                assert_eq!(
                    jobs.len(),
                    2,
                    "a pre-install job for the Secret, a post-install one for the caBundle"
                );
                let post = jobs
                    .iter()
                    .find(|j| j["metadata"]["name"].as_str().unwrap().ends_with("-post"))
                    .unwrap();
                let args = post["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
                assert!(args.contains("--patch-webhook=kx-kafka-expose"), "{args}");
            }
        }
    }
    // Flags are values.
    let docs = helm_template(&[
        "--set",
        "failureMode=closed",
        "--set",
        "nodePortRange=20000-22767",
        "--set",
        "replicaCount=3",
    ]);
    let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let args = dep["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--failure-mode=closed") && args.contains("--node-port-range=20000-22767"),
        "{args}"
    );
    assert_eq!(dep["spec"]["replicas"], 3);
}

#[test]
fn the_plain_manifests_hold_every_webhook_rule() {
    let docs =
        read_documents(&std::fs::read_to_string(format!("{MANIFESTS}/webhook.yaml")).unwrap())
            .unwrap();
    check_webhook_configuration(&docs[0], "kafka-expose");
}

#[test]
fn rbac_grants_exactly_the_documented_permissions_and_no_wildcard() {
    let plain = read_documents(&std::fs::read_to_string(format!("{MANIFESTS}/rbac.yaml")).unwrap())
        .unwrap();
    let chart = helm_template(&[]);
    let roles = [
        plain
            .iter()
            .find(|d| d["kind"] == "ClusterRole")
            .unwrap()
            .clone(),
        chart
            .iter()
            .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "kx-kafka-expose")
            .unwrap()
            .clone(),
    ];
    for role in roles {
        assert_eq!(role["rules"], documented_rules());
        assert!(!role["rules"].to_string().contains('*'), "no wildcard");
    }
    // Broker pods get nothing: every binding, in the manifests and the chart, binds
    // kafka-expose's own ServiceAccounts (the server's, and the certificate hook's).
    for d in plain.iter().chain(&chart) {
        if !matches!(
            d["kind"].as_str(),
            Some("RoleBinding" | "ClusterRoleBinding")
        ) {
            continue;
        }
        for subject in d["subjects"].as_array().unwrap() {
            assert_eq!(subject["kind"], "ServiceAccount", "{d}");
            let name = subject["name"].as_str().unwrap();
            assert!(
                name == "kafka-expose" || name.starts_with("kx-kafka-expose"),
                "only kafka-expose's own accounts are bound: {d}"
            );
        }
    }
    let lease_rules = json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]);
    let leader_roles = [
        plain.iter().find(|d| d["kind"] == "Role").unwrap().clone(),
        chart
            .iter()
            .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "kx-kafka-expose-leader")
            .unwrap()
            .clone(),
    ];
    for role in leader_roles {
        assert_eq!(
            role["rules"], lease_rules,
            "the leader Lease, in its own namespace only"
        );
        assert_eq!(role["metadata"]["namespace"], "kafka-expose");
    }
}

fn kubectl_dry_run(file: &Path) {
    run(Command::new(tool("kubectl"))
        .env("KUBECONFIG", kubeconfig())
        .args(["apply", "--dry-run=server", "-f"])
        .arg(file));
}

#[test]
fn the_api_server_accepts_the_rendered_chart_and_the_plain_manifests() {
    let dir = std::env::temp_dir().join(format!("kx-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The namespace must exist for a dry run of what goes in it.
    run(Command::new(tool("kubectl"))
        .env("KUBECONFIG", kubeconfig())
        .args(["apply", "-f", &format!("{MANIFESTS}/namespace.yaml")]));
    // cert-manager's kinds are not served without cert-manager: its mode is checked by render.
    for (i, mode) in MODES
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.contains(&"certificates.mode=cert-manager"))
    {
        // Rendered for the test cluster's version, as `helm install` would against it.
        let text = run(Command::new(tool("helm"))
            .args([
                "template",
                "kx",
                CHART,
                "--namespace",
                "kafka-expose",
                "--kube-version",
                "1.20.2",
            ])
            .args(*mode));
        assert!(
            text.contains("apiVersion: policy/v1beta1"),
            "1.20 gets the PDB version it serves"
        );
        let file = dir.join(format!("chart-{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        kubectl_dry_run(&file);
    }
    for entry in std::fs::read_dir(MANIFESTS).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "kustomization.yaml" {
            continue;
        }
        let mut text = std::fs::read_to_string(&path).unwrap();
        // Kubernetes 1.20 serves PodDisruptionBudgets as policy/v1beta1 only.
        if path.file_name().unwrap() == "pdb.yaml" {
            text = text.replace("apiVersion: policy/v1\n", "apiVersion: policy/v1beta1\n");
        }
        let file = dir.join(path.file_name().unwrap());
        std::fs::write(&file, text).unwrap();
        kubectl_dry_run(&file);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_certs_hook_makes_the_secret_once_and_sets_the_ca_bundle() {
    let kc = kubeconfig();
    let ns = "e2e-certs-hook";
    apply_stdin(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).to_string(),
        &kc,
    );
    let mut mwc =
        read_documents(&std::fs::read_to_string(format!("{MANIFESTS}/webhook.yaml")).unwrap())
            .unwrap()
            .remove(0);
    mwc["metadata"]["name"] = json!("certs-hook-e2e");
    let dir = std::env::temp_dir().join(format!("kx-certs-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mwc.yaml");
    std::fs::write(&file, serde_json::to_string(&mwc).unwrap()).unwrap();
    run(Command::new(tool("kubectl"))
        .env("KUBECONFIG", &kc)
        .args(["apply", "-f"])
        .arg(&file));
    let certs = || {
        run(Command::new(env!("CARGO_BIN_EXE_kafka-expose"))
            .env("KUBECONFIG", &kc)
            .args([
                "certs",
                "--service-name",
                "kafka-expose",
                "--service-namespace",
                ns,
            ])
            .args([
                "--secret",
                "kafka-expose-tls",
                "--patch-webhook",
                "certs-hook-e2e",
            ]))
    };
    let first = certs();
    let second = certs();
    assert_eq!(first, second, "the Secret is made once and reused");
    let bundle = run(Command::new(tool("kubectl")).env("KUBECONFIG", &kc).args([
        "get",
        "mutatingwebhookconfiguration",
        "certs-hook-e2e",
        "-o",
        "jsonpath={.webhooks[*].clientConfig.caBundle}",
    ]));
    assert_eq!(
        bundle.split_whitespace().collect::<Vec<_>>(),
        vec![first.trim(); 4],
        "every webhook (workloads, pods, policies, bindings) carries the CA"
    );
    let keys = run(Command::new(tool("kubectl")).env("KUBECONFIG", &kc).args([
        "get",
        "secret",
        "-n",
        ns,
        "kafka-expose-tls",
        "-o",
        "jsonpath={.type} {.data.tls\\.crt}",
    ]));
    assert!(keys.starts_with("kubernetes.io/tls "), "{keys}");
    run(Command::new(tool("kubectl")).env("KUBECONFIG", &kc).args([
        "delete",
        "mutatingwebhookconfiguration",
        "certs-hook-e2e",
    ]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kubectl apply -f -` of `text`.
fn apply_stdin(text: &str, kubeconfig: &str) {
    use std::io::Write;
    let mut child = Command::new(tool("kubectl"))
        .env("KUBECONFIG", kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}
