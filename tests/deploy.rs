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

fn helm_template_text(args: &[&str]) -> String {
    run(Command::new(tool("helm"))
        .args(["template", "kx", CHART, "--namespace", "kafka-expose"])
        .args(args))
}

fn helm_template(args: &[&str]) -> Vec<Value> {
    read_documents(&helm_template_text(args)).unwrap()
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

/// The permissions the reconciler needs, and no more (docs/src/permissions.md).
fn documented_rules() -> Value {
    json!([
        {"apiGroups": ["apps"], "resources": ["statefulsets", "deployments"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["tlsroutes"], "verbs": ["get", "list", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["kafka-expose.io"], "resources": ["kafkaexposepolicies"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["kafka-expose.io"], "resources": ["kafkaexposepolicies/status"], "verbs": ["update", "patch"]},
        {"apiGroups": ["kafka-expose.io"], "resources": ["kafkaexposepolicies/finalizers"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
    ])
}

/// The server container's arguments in a rendered chart.
fn server_args(docs: &[Value]) -> Vec<String> {
    let d = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The key condition on a rendered workload webhook, if any.
fn keys_condition_of(docs: &[Value]) -> Option<String> {
    let mwc = docs
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    let w = &mwc["webhooks"][0];
    assert_eq!(w["name"], "workloads.kafka-expose.io");
    let conditions = w["matchConditions"].as_array()?;
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    assert_eq!(conditions[0]["name"], "kafka-expose-keys");
    Some(conditions[0]["expression"].as_str().unwrap().to_string())
}

/// The chart renders the key condition for API servers that evaluate it, 1.28 and later, the
/// very expression the server's registration plans with; not for 1.20 or 1.27, whose workload
/// webhook keeps today's path. The manifests offer it as a kustomize component.
#[test]
fn match_conditions_are_rendered_for_1_28_and_later_only() {
    let want = kafka_expose::engine::registration::keys_expression();
    for (version, expected) in [
        ("1.20.2", false),
        ("1.27.9", false),
        ("1.28.0", true),
        ("1.30.4", true),
    ] {
        let docs = helm_template(&["--kube-version", version]);
        let got = keys_condition_of(&docs);
        assert_eq!(got.is_some(), expected, "{version}");
        if let Some(e) = got {
            assert_eq!(e, want, "{version}: the chart's expression is the server's");
        }
        // The registrar is there either way: the bindings webhook is on demand everywhere.
        assert!(server_args(&docs).iter().any(|a| a == "--bindings-webhook"));
    }
    // Forced either way, whatever the version.
    let forced = helm_template(&[
        "--kube-version",
        "1.20.2",
        "--set",
        "webhook.matchConditions=true",
    ]);
    assert_eq!(keys_condition_of(&forced).as_deref(), Some(want.as_str()));
    let off = helm_template(&[
        "--kube-version",
        "1.30.4",
        "--set",
        "webhook.matchConditions=false",
    ]);
    assert_eq!(keys_condition_of(&off), None);

    // The manifests: without the component, none; with it, the same condition.
    let dir = std::env::temp_dir().join(format!("kx-kustomize-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = Command::new("cp")
        .args(["-r", MANIFESTS])
        .arg(dir.join("manifests"))
        .status()
        .unwrap();
    assert!(copy.success());
    let build = |components: &str| {
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!("resources: [manifests]\ncomponents: [{components}]\n"),
        )
        .unwrap();
        read_documents(&run(Command::new(tool("kubectl"))
            .args(["kustomize"])
            .arg(&dir)))
        .unwrap()
    };
    assert_eq!(keys_condition_of(&build("")), None);
    assert_eq!(
        keys_condition_of(&build("manifests/components/match-conditions")).as_deref(),
        Some(want.as_str())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_webhook_configuration(mwc: &Value, own_namespace: &str) {
    let hooks = mwc["webhooks"].as_array().unwrap();
    let names: Vec<&str> = hooks.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "workloads.kafka-expose.io",
            "pods.kafka-expose.io",
            "policies.kafka-expose.io"
        ],
        "no bindings webhook: the server registers it while it is used"
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
    // The bindings webhook is the server's to register, when enabled: the chart gives it the
    // flags and the permissions, and nothing more.
    for (enabled, conditions) in [(true, "false"), (false, "false"), (false, "true")] {
        let docs = helm_template(&[
            "--set",
            &format!("webhook.bindings.enabled={enabled}"),
            "--set",
            &format!("webhook.matchConditions={conditions}"),
        ]);
        let args = server_args(&docs);
        assert_eq!(
            args.iter().any(|a| a == "--bindings-webhook"),
            enabled,
            "{args:?}"
        );
        let registrar = enabled || conditions == "true";
        assert_eq!(
            args.iter()
                .any(|a| a == "--webhook-configuration=kx-kafka-expose"),
            registrar,
            "{args:?}"
        );
        assert_eq!(
            docs.iter().any(|d| d["kind"] == "ClusterRole"
                && d["metadata"]["name"] == "kx-kafka-expose-registrar"),
            registrar
        );
    }
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
            .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "kafka-expose")
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
        plain
            .iter()
            .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "kafka-expose-leader")
            .unwrap()
            .clone(),
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
    // The certificate renewal: its Secret and its webhook configuration, by name only.
    for (docs, secret, mwc) in [
        (&plain, "kafka-expose-tls", "kafka-expose"),
        (&chart, "kx-kafka-expose-tls", "kx-kafka-expose"),
    ] {
        let named = |kind: &str| {
            docs.iter()
                .find(|d| {
                    d["kind"] == kind
                        && d["metadata"]["name"]
                            .as_str()
                            .is_some_and(|n| n.ends_with("-renewal"))
                })
                .unwrap_or_else(|| panic!("a {kind} for the renewal"))
        };
        assert_eq!(
            named("Role")["rules"],
            json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret], "verbs": ["get", "update"]}])
        );
        assert_eq!(
            named("ClusterRole")["rules"],
            json!([{"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"], "resourceNames": [mwc], "verbs": ["get", "patch"]}])
        );
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
        // components/: kustomize components, patches rather than objects.
        if path.file_name().unwrap() == "kustomization.yaml" || path.is_dir() {
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
    apply_namespace(ns, &kc);
    apply_stdin(&manifests_webhook("certs-hook-e2e").to_string(), &kc);
    let certs = || run(&mut certs_hook(&kc, ns, Some("certs-hook-e2e")));
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
        vec![first.trim(); 3],
        "every webhook (workloads, pods, policies) carries the CA (the server copies it into what it registers)"
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
}

/// What the chart's certificate hook runs, for `ns`: with `mwc`, on the Secret
/// `kafka-expose-tls` and the caBundle of `mwc`; without, the Secret is for the caller to add.
fn certs_hook(kubeconfig: &str, ns: &str, mwc: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-expose"));
    cmd.env("KUBECONFIG", kubeconfig).args([
        "certs",
        "--service-name",
        "kafka-expose",
        "--service-namespace",
        ns,
    ]);
    if let Some(mwc) = mwc {
        cmd.args(["--secret", "kafka-expose-tls", "--patch-webhook", mwc]);
    }
    cmd
}

/// The manifests' webhook configuration, named `name`.
fn manifests_webhook(name: &str) -> Value {
    let mut mwc =
        read_documents(&std::fs::read_to_string(format!("{MANIFESTS}/webhook.yaml")).unwrap())
            .unwrap()
            .remove(0);
    mwc["metadata"]["name"] = json!(name);
    mwc
}

/// Namespace `ns`, applied.
fn apply_namespace(ns: &str, kubeconfig: &str) {
    apply_stdin(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).to_string(),
        kubeconfig,
    );
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

/// `helm template` with these values, failing: its stderr.
fn helm_template_error(args: &[&str]) -> String {
    let out = Command::new(tool("helm"))
        .args(["template", "kx", CHART, "--namespace", "kafka-expose"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} renders, and must not");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn mistyped_values_fail_to_render_naming_the_value() {
    for (set, named) in [
        ("certificates.mode=certmanager", "/certificates/mode"),
        (
            "webhook.podsFailurePolicy=fail",
            "/webhook/podsFailurePolicy",
        ),
        ("replicaCount=one", "/replicaCount"),
        ("failureMode=Open", "/failureMode"),
        ("replicaCont=2", "replicaCont"),
        ("webhook.prot=10250", "prot"),
        ("image.digest=latest", "/image/digest"),
    ] {
        let err = helm_template_error(&["--set", set]);
        assert!(err.contains(named), "{set}: {err}");
    }
    // Combinations that cannot work say which values to change.
    let err = helm_template_error(&["--set", "webhook.port=8080"]);
    assert!(
        err.contains("webhook.port and adminPort are both 8080"),
        "{err}"
    );
    let err = helm_template_error(&["--set", "hostNetwork=true", "--set", "webhook.port=443"]);
    assert!(err.contains("webhook.port=443 with hostNetwork"), "{err}");
    let err = helm_template_error(&["--set", "certificates.mode=secret"]);
    assert!(err.contains("certificates.caBundle is required"), "{err}");
}

#[test]
fn the_disruption_budget_follows_the_replica_count() {
    let one = helm_template(&["--set", "replicaCount=1"]);
    assert!(
        !one.iter().any(|d| d["kind"] == "PodDisruptionBudget"),
        "one replica: no PDB, so drains are never blocked"
    );
    for n in ["2", "3"] {
        let docs = helm_template(&["--set", &format!("replicaCount={n}")]);
        let pdb = find(&docs, "PodDisruptionBudget");
        assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{pdb}");
        assert!(pdb["spec"].get("minAvailable").is_none());
    }
}

/// The image digest the placement values pin.
const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";

/// Every placement and supply value, as the render tests set them.
fn placement_values() -> Vec<String> {
    [
        "--set",
        "image.digest=sha256:abababababababababababababababababababababababababababababababab",
        "--set",
        "imagePullSecrets[0].name=regcred",
        "--set",
        "priorityClassName=system-cluster-critical",
        "--set",
        "nodeSelector.pool=system",
        "--set",
        "tolerations[0].key=dedicated,tolerations[0].operator=Exists",
        "--set",
        "topologySpreadConstraints[0].maxSkew=1,topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone,topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "--set",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
        "--set",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
        "--set",
        "podAnnotations.team=platform",
        "--set",
        "podLabels.cost-center=k8s",
        "--set",
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/kx",
        "--set",
        "extraArgs[0]=--lb-pending-warning=1m",
        "--set",
        "extraEnv[0].name=HTTPS_PROXY,extraEnv[0].value=http://proxy:3128",
        "--set",
        "patcherImage=mirror.example/kx:1",
        "--set",
        "loadBalancerMaxPorts=50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The network values, as the render tests set them.
const NETWORK_VALUES: &[&str] = &[
    "--set",
    "webhook.port=10250",
    "--set",
    "adminPort=10251",
    "--set",
    "hostNetwork=true",
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "networkPolicy.adminFrom[0].namespaceSelector.matchLabels.name=monitoring",
];

#[test]
fn every_placement_and_supply_value_lands_on_the_server_and_the_hook_jobs() {
    let values = placement_values();
    let docs = helm_template(&values.iter().map(String::as_str).collect::<Vec<_>>());
    let image = format!("ghcr.io/kafka-expose/kafka-expose@{DIGEST}");
    let dep = find(&docs, "Deployment");
    let jobs: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Job").collect();
    assert_eq!(jobs.len(), 2);
    for pod in std::iter::once(dep).chain(jobs.iter().copied()) {
        let spec = &pod["spec"]["template"]["spec"];
        let name = &pod["metadata"]["name"];
        assert_eq!(spec["containers"][0]["image"], image.as_str(), "{name}");
        assert_eq!(
            spec["imagePullSecrets"],
            json!([{"name": "regcred"}]),
            "{name}"
        );
        assert_eq!(
            spec["priorityClassName"], "system-cluster-critical",
            "{name}"
        );
        assert_eq!(spec["nodeSelector"], json!({"pool": "system"}), "{name}");
        assert_eq!(spec["tolerations"][0]["key"], "dedicated", "{name}");
        assert_eq!(spec["topologySpreadConstraints"][0]["maxSkew"], 1, "{name}");
        assert!(spec["affinity"]["nodeAffinity"].is_object(), "{name}");
        let meta = &pod["spec"]["template"]["metadata"];
        assert_eq!(meta["annotations"]["team"], "platform", "{name}");
        assert_eq!(meta["labels"]["cost-center"], "k8s", "{name}");
    }
    // The user's affinity replaces the default anti-affinity.
    assert!(dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_null());
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--lb-pending-warning=1m"), "{args:?}");
    assert!(
        args.contains(&"--patcher-image=mirror.example/kx:1"),
        "{args:?}"
    );
    assert!(args.contains(&"--load-balancer-max-ports=50"), "{args:?}");
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HTTPS_PROXY"),
        "{}",
        c["env"]
    );
    let sa = docs
        .iter()
        .find(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == "kx-kafka-expose")
        .unwrap();
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::1:role/kx"
    );
    assert_eq!(sa["imagePullSecrets"], json!([{"name": "regcred"}]));
    // Without patcherImage the server injects the image its own pod runs: no flag pins a copy.
    let plain = helm_template(&[]);
    let args =
        find(&plain, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(!args.contains("--patcher-image"), "{args}");
    assert!(!args.contains("--load-balancer-max-ports"), "{args}");
}

#[test]
fn the_webhook_port_host_network_and_network_policy_land_where_they_must() {
    let docs = helm_template(NETWORK_VALUES);
    let dep = find(&docs, "Deployment");
    let spec = &dep["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    let c = &spec["containers"][0];
    let args = c["args"].to_string();
    assert!(args.contains("--listen=0.0.0.0:10250"), "{args}");
    assert!(args.contains("--admin-listen=0.0.0.0:10251"), "{args}");
    assert_eq!(c["ports"][0]["containerPort"], 10250);
    assert_eq!(c["ports"][1]["containerPort"], 10251);
    let svc = find(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 10250);
    assert_eq!(svc["spec"]["ports"][1]["targetPort"], 10251);
    let np = find(&docs, "NetworkPolicy");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "kx"
    );
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 10250);
    assert!(
        np["spec"]["ingress"][0].get("from").is_none(),
        "the API server is not a pod"
    );
    assert_eq!(np["spec"]["ingress"][1]["ports"][0]["port"], 10251);
    assert_eq!(
        np["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["name"],
        "monitoring"
    );
    assert!(
        !helm_template(&[])
            .iter()
            .any(|d| d["kind"] == "NetworkPolicy"),
        "off by default"
    );
    // An opt-in namespace selector replaces the exclusions on every namespaced webhook.
    let docs = helm_template(&[
        "--set",
        "webhook.namespaceSelector.matchLabels.kafka-expose\\.io/webhook=enabled",
    ]);
    let mwc = find(&docs, "MutatingWebhookConfiguration");
    for h in mwc["webhooks"].as_array().unwrap() {
        if h["name"] == "policies.kafka-expose.io" {
            continue;
        }
        assert_eq!(
            h["namespaceSelector"],
            json!({"matchLabels": {"kafka-expose.io/webhook": "enabled"}}),
            "{}",
            h["name"]
        );
    }
}

#[test]
fn monitoring_uninstall_and_labels_follow_what_platform_teams_expect() {
    let docs = helm_template(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "serviceMonitor.labels.release=prom",
        "--set",
        "podMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
    ]);
    let sm = find(&docs, "ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        find(&docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"],
        "admin"
    );
    let rules = find(&docs, "PrometheusRule")["spec"]["groups"][0]["rules"].to_string();
    for metric in [
        "kafka_expose_admission_requests_total",
        "outcome=\\\"error\\\"",
        "outcome=\\\"denied\\\"",
        "kafka_expose_certificate_reload_errors_total",
        "kafka_expose_certificate_expiry_timestamp_seconds",
    ] {
        assert!(rules.contains(metric), "{metric} in {rules}");
    }
    // Every object carries the recommended labels; hook objects delete themselves.
    for d in &docs {
        let labels = &d["metadata"]["labels"];
        let name = &d["metadata"]["name"];
        if d["metadata"]["annotations"]["helm.sh/hook"].is_string() {
            let policy = d["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
                .as_str()
                .unwrap_or("");
            assert!(
                policy.contains("before-hook-creation") && policy.contains("hook-succeeded"),
                "{name}: {policy:?}"
            );
            continue;
        }
        if d["kind"] == "CustomResourceDefinition" {
            continue;
        }
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{name}");
        assert_eq!(labels["app.kubernetes.io/component"], "webhook", "{name}");
    }
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(format!("{CHART}/Chart.yaml")).unwrap())
            .unwrap();
    for field in ["kubeVersion", "home", "sources"] {
        assert!(!chart[field].is_null(), "Chart.yaml sets {field}");
    }
}

/// `helm install --dry-run`: the notes a user reads after installing.
///
/// The policy suites apply the CRD without Helm, and `helm install` refuses to take over an
/// object another manager made, as it would for a user who applied it by hand. Whatever ran
/// before (cargo runs the suites one after another, in any order a caller chooses), the CRD is
/// removed first, as that user would remove it; nothing else uses it while this binary runs.
fn notes(args: &[&str]) -> String {
    let kubectl = |args: &[&str]| {
        run(Command::new(tool("kubectl"))
            .env("KUBECONFIG", kubeconfig())
            .args(args))
    };
    // A policy left by a suite that failed keeps its `kafka-expose.io/revert` finalizer with no
    // controller to lift it, and the CRD's deletion would wait for it forever.
    let served = kubectl(&["get", "customresourcedefinitions", "-o", "name"]);
    if served.contains("kafkaexposepolicies.kafka-expose.io") {
        for p in kubectl(&["get", "kafkaexposepolicies", "-o", "name"]).lines() {
            kubectl(&[
                "patch",
                p,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
    }
    kubectl(&[
        "delete",
        "customresourcedefinition",
        "kafkaexposepolicies.kafka-expose.io",
        "--ignore-not-found",
        "--wait=true",
        "--timeout=60s",
    ]);
    let out = run(Command::new(tool("helm"))
        .env("KUBECONFIG", kubeconfig())
        .args(["install", "kx", CHART, "--namespace", "kafka-expose"])
        .args(args));
    out.split_once("NOTES:")
        .map(|(_, n)| n.to_string())
        .unwrap_or_default()
}

#[test]
fn the_notes_say_how_to_expose_where_the_bootstrap_appears_and_warn_where_they_must() {
    // Against the real 1.20 API server, as `helm install` would render them there.
    let text = notes(&["--dry-run=server", "--set", "replicaCount=1"]);
    for want in [
        "kafka-expose.io/expose=nodeport",
        "kafka-expose\\.io/bootstrap-servers",
        "rollout status statefulset/<kafka>",
        "helm test kx",
        "kafka-expose check",
        "WARNING: replicaCount=1",
        "does not label namespaces with\nkubernetes.io/metadata.name",
        "kubectl label namespace kube-system kafka-expose.io/webhook=disabled",
        "kubectl label namespace kafka-expose kafka-expose.io/webhook=disabled",
    ] {
        assert!(text.contains(want), "{want:?} in the notes:\n{text}");
    }
    // Two replicas on a current cluster: no warnings.
    let text = notes(&["--dry-run=client"]);
    assert!(text.contains("kafka-expose.io/expose=nodeport"), "{text}");
    assert!(!text.contains("WARNING"), "{text}");
    // The helm test probes /readyz through the Service.
    let docs = helm_template(&["--set", "adminPort=9090"]);
    let test = docs
        .iter()
        .find(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .unwrap();
    let cmd = test["spec"]["containers"][0]["command"].to_string();
    assert!(
        cmd.contains("http://kx-kafka-expose.kafka-expose.svc:9090/readyz"),
        "{cmd}"
    );
}

#[test]
fn every_new_value_rendered_together_is_accepted_by_the_api_server() {
    let dir = std::env::temp_dir().join(format!("kx-deploy-values-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    run(Command::new(tool("kubectl"))
        .env("KUBECONFIG", kubeconfig())
        .args(["apply", "-f", &format!("{MANIFESTS}/namespace.yaml")]));
    let mut values: Vec<String> = ["--kube-version", "1.20.2"]
        .iter()
        .chain(NETWORK_VALUES)
        .map(|v| v.to_string())
        .collect();
    values.extend(placement_values());
    values.extend([
        "--set".into(),
        "webhook.namespaceSelector.matchLabels.team=kafka".into(),
    ]);
    let text = helm_template_text(&values.iter().map(String::as_str).collect::<Vec<_>>());
    // The Prometheus Operator's kinds are not served without it: checked by render above.
    let file = dir.join("all-values.yaml");
    std::fs::write(&file, &text).unwrap();
    kubectl_dry_run(&file);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_kustomize_retag_of_the_plain_manifests_leaves_no_copy_of_the_old_image() {
    // What `kustomize edit set image` writes, in an overlay over a copy of the manifests.
    let dir = std::env::temp_dir().join(format!("kx-overlay-{}", std::process::id()));
    let base = dir.join("base");
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir_all(&overlay).unwrap();
    for entry in std::fs::read_dir(MANIFESTS).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, base.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../base]\nimages:\n  - name: ghcr.io/kafka-expose/kafka-expose\n    newName: registry.example/mirror/kafka-expose\n    newTag: v9\n",
    )
    .unwrap();
    let text = run(Command::new(tool("kubectl")).arg("kustomize").arg(&overlay));
    assert!(
        text.contains("image: registry.example/mirror/kafka-expose:v9"),
        "{text}"
    );
    assert!(
        !text.contains("ghcr.io/kafka-expose/kafka-expose:"),
        "the server injects the image its own pod runs, so no other copy of the name is left to go stale:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_certs_hook_renews_a_secret_near_its_end_with_both_cas_trusted() {
    let kc = kubeconfig();
    let ns = "e2e-certs-renew";
    apply_namespace(ns, &kc);
    let dns = kafka_expose::certs::dns_names("kafka-expose", ns);
    // A pair with a day left, as an install made a year ago holds.
    let old = kafka_expose::certs::generate_for(
        &dns,
        kafka_expose::certs::Validity {
            serving: std::time::Duration::from_secs(86_400),
        },
    )
    .unwrap();
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    apply_stdin(
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "kafka-expose-tls", "namespace": ns,
                             "labels": {"app.kubernetes.io/managed-by": "kafka-expose"}},
                "data": {"ca.crt": b64(&old.ca_pem), "tls.crt": b64(&old.cert_pem), "tls.key": b64(&old.key_pem)}})
        .to_string(),
        &kc,
    );
    let mut mwc = manifests_webhook("certs-renew-e2e");
    for w in mwc["webhooks"].as_array_mut().unwrap() {
        w["clientConfig"]["caBundle"] = json!(old.ca_bundle());
    }
    apply_stdin(&mwc.to_string(), &kc);
    let out = certs_hook(&kc, ns, Some("certs-renew-e2e"))
        .args(["--ca-propagation", "0s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("re-issued the certificate in Secret kafka-expose-tls"),
        "{stderr}"
    );
    let get = |jsonpath: &str| {
        run(Command::new(tool("kubectl")).env("KUBECONFIG", &kc).args([
            "get",
            "secret",
            "-n",
            ns,
            "kafka-expose-tls",
            "-o",
            &format!("jsonpath={jsonpath}"),
        ]))
    };
    let decode = |s: String| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .unwrap(),
        )
        .unwrap()
    };
    let cert = decode(get("{.data.tls\\.crt}"));
    let facts = kafka_expose::certs::inspect(&cert).unwrap().remove(0);
    let year = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 300 * 86_400;
    assert!(facts.not_after > year, "valid for a year again");
    let cas = decode(get("{.data.ca\\.crt}"));
    assert_eq!(
        kafka_expose::certs::split_pem(&cas).len(),
        2,
        "the new CA, and the old one beside it"
    );
    assert!(cas.contains(&old.ca_pem), "the old CA is still trusted");
    let bundle = run(Command::new(tool("kubectl")).env("KUBECONFIG", &kc).args([
        "get",
        "mutatingwebhookconfiguration",
        "certs-renew-e2e",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ]));
    assert_eq!(decode(bundle), cas, "the configuration trusts both");
    // A Secret kafka-expose did not make is never renewed, even with a day left.
    apply_stdin(
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "theirs-tls", "namespace": ns},
                "data": {"ca.crt": b64(&old.ca_pem), "tls.crt": b64(&old.cert_pem), "tls.key": b64(&old.key_pem)}})
        .to_string(),
        &kc,
    );
    let out = certs_hook(&kc, ns, None)
        .args(["--secret", "theirs-tls"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let theirs = run(Command::new(tool("kubectl")).env("KUBECONFIG", &kc).args([
        "get",
        "secret",
        "-n",
        ns,
        "theirs-tls",
        "-o",
        "jsonpath={.data.tls\\.crt}",
    ]));
    assert_eq!(decode(theirs), old.cert_pem, "left as its owner made it");
    run(Command::new(tool("kubectl")).env("KUBECONFIG", &kc).args([
        "delete",
        "mutatingwebhookconfiguration",
        "certs-renew-e2e",
    ]));
}

#[test]
fn installed_as_kubectl_kafka_expose_kubectl_runs_it_as_a_plugin() {
    let dir = std::env::temp_dir().join(format!("kx-plugin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_kafka-expose"),
        dir.join(kafka_expose::names::KUBECTL_PLUGIN),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = |args: &[&str]| {
        Command::new(tool("kubectl"))
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", kubeconfig())
            .output()
            .unwrap()
    };
    let list = kubectl(&["plugin", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("kubectl-kafka_expose"), "{listed}");
    let v = kubectl(&["kafka-expose", "--version"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(
        String::from_utf8_lossy(&v.stdout)
            .starts_with(&format!("kafka-expose {}", env!("CARGO_PKG_VERSION")))
    );
    // Help names the command as the user typed it.
    let help = kubectl(&["kafka-expose", "--help"]);
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl kafka-expose <COMMAND>")
    );
    // And it works: mutate a fixture through kubectl.
    let m = kubectl(&[
        "kafka-expose",
        "mutate",
        "--explain",
        "-f",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/charts/apache-kafka-kraft.yaml"
        ),
        "--set",
        "expose=nodeport",
    ]);
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    assert!(String::from_utf8_lossy(&m.stdout).contains("advertises"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `external-tls: ca:` needs Secrets, and `issuer:` cert-manager Certificates: the chart grants
/// them only when asked, the plain manifests in a file of their own outside the kustomization,
/// and both grant exactly get, create, patch.
#[test]
fn reading_secrets_for_signed_certificates_is_granted_only_on_request() {
    let rules = json!([
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]},
        {"apiGroups": ["cert-manager.io"], "resources": ["certificates"], "verbs": ["get", "create", "patch"]}
    ]);
    let by_default = helm_template(&[]);
    assert!(
        !by_default
            .iter()
            .any(|d| d["metadata"]["name"] == "kx-kafka-expose-signing"),
        "off by default"
    );
    let on = helm_template(&["--set", "externalTlsSigning.enabled=true"]);
    let role = on
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "kx-kafka-expose-signing")
        .expect("the signing ClusterRole");
    assert_eq!(role["rules"], rules);
    let binding = on
        .iter()
        .find(|d| {
            d["kind"] == "ClusterRoleBinding" && d["metadata"]["name"] == "kx-kafka-expose-signing"
        })
        .unwrap();
    assert_eq!(binding["subjects"][0]["name"], "kx-kafka-expose");
    let plain = read_documents(
        &std::fs::read_to_string(format!("{MANIFESTS}/external-tls-signing.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(plain[0]["rules"], rules);
    let kustomization = std::fs::read_to_string(format!("{MANIFESTS}/kustomization.yaml")).unwrap();
    assert!(
        !kustomization.contains("external-tls-signing"),
        "applied on purpose only"
    );
}
