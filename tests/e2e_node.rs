//! On a real node (tests/e2e/node.sh: kubelet, containerd, kube-proxy, kube-scheduler), as a user
//! does it: `helm install` of the chart with the image built here, `helm test`, a broker exposed
//! by annotation and reached from the client namespace outside the cluster through kube-proxy's
//! NodePort, and `helm uninstall`, leaving what the install guide says it leaves.
//!
//! `tests/run.sh` starts the node and sets KAFKA_EXPOSE_NODE_DIR, KAFKA_EXPOSE_E2E_ENV and
//! KAFKA_EXPOSE_TOOLS; without them these tests fail.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const IMAGE: &str = concat!(
    "ghcr.io/kafka-expose/kafka-expose:",
    env!("CARGO_PKG_VERSION")
);

fn node_dir() -> PathBuf {
    PathBuf::from(std::env::var("KAFKA_EXPOSE_NODE_DIR").unwrap_or_else(|_| {
        panic!("these tests need a real node: run ./tests/run.sh, or tests/e2e/node.sh start DIR and set KAFKA_EXPOSE_NODE_DIR=DIR, KAFKA_EXPOSE_E2E_ENV=DIR/env")
    }))
}

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var("KAFKA_EXPOSE_TOOLS")
        .expect("helm and kubectl: set KAFKA_EXPOSE_TOOLS to `tests/e2e/control-plane.sh tools`");
    Path::new(&dir).join(name)
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn run(cmd: &mut Command) -> String {
    let (ok, text) = output(cmd);
    assert!(ok, "{cmd:?}:\n{text}");
    text
}

fn kubectl(args: &[&str]) -> Command {
    let mut c = Command::new(tool("kubectl"));
    c.arg("--kubeconfig")
        .arg(node_dir().join("kubeconfig"))
        .args(args);
    c
}

fn helm(args: &[&str]) -> Command {
    let mut c = Command::new(tool("helm"));
    c.arg("--kubeconfig")
        .arg(node_dir().join("kubeconfig"))
        .args(args);
    c
}

fn node_sh(args: &[&str]) -> Command {
    let mut c = Command::new(Path::new(ROOT).join("tests/e2e/node.sh"));
    c.args(args);
    c
}

/// A command run in the client namespace, outside the cluster.
fn from_outside(args: &[&str]) -> Command {
    let dir = node_dir();
    let mut all = vec!["client", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    node_sh(&all)
}

/// kcat in the client namespace, on the librdkafka that `control-plane.sh tools` fetched (Debian's
/// cannot read tansu's ApiVersions reply).
fn kcat_outside(args: &[&str]) -> Command {
    let mut all = vec!["kcat"];
    all.extend_from_slice(args);
    let mut c = from_outside(&all);
    c.env("LD_LIBRARY_PATH", tool("librdkafka"));
    c
}

/// Scales the apache/kafka brokers of namespace `streaming`, as `kubectl scale` does.
fn scale_streaming(replicas: u32) {
    let to = format!("--replicas={replicas}");
    run(&mut kubectl(&[
        "-n",
        "streaming",
        "scale",
        "statefulset",
        "kafka",
        &to,
    ]));
}

/// `kind/name` of each object `kubectl ARGS -o json` lists that is not being deleted.
fn left(args: &[&str]) -> Vec<String> {
    json_of(args)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Waits until the cluster-wide objects of `kinds` named for kafka-expose are exactly
/// `expected`: `kafka-expose-registered`, which the server registered itself, goes through the
/// garbage collector a moment after its owner (the release's webhook configuration).
fn left_settles(kinds: &str, expected: &[&str], what: &str) {
    let mut ours = Vec::new();
    let settled = eventually_or(Duration::from_secs(30), || {
        ours = left(&["get", kinds, "-o", "json"]);
        ours.retain(|n| n.contains("kafka-expose"));
        (ours == expected).then_some(())
    });
    assert!(settled.is_some(), "{what}: {ours:?}");
}

/// `kcat -L` from outside over TLS, trusting `ca_file` and verifying each broker's host name.
/// A kcat listing, run again (up to 30 s) until it shows `brokers` brokers. Metadata is the
/// answering broker's own view: the test broker learns its peers as KRaft brokers do, by their
/// registrations every second, so a broker that has just started may be missing from another's
/// answer for a moment, as in Kafka. The last listing is returned; the caller asserts on it.
fn kcat_listing(brokers: usize, mut kcat: impl FnMut() -> Command) -> String {
    let wanted = format!(" {brokers} brokers:");
    let mut last = String::new();
    eventually_or(Duration::from_secs(30), || {
        let (_, text) = output(&mut kcat());
        let done = text.contains(&wanted);
        last = text;
        done.then_some(())
    });
    last
}

fn kcat_verifying(bootstrap: &str, ca_file: &str) -> Command {
    kcat_outside(&[
        "-b",
        bootstrap,
        "-L",
        "-m",
        "10",
        "-X",
        "security.protocol=ssl",
        "-X",
        &format!("ssl.ca.location={ca_file}"),
        "-X",
        "ssl.endpoint.identification.algorithm=https",
    ])
}

fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&run(&mut kubectl(args))).unwrap()
}

/// `json_of` for an object that may be missing for a while (a pod between its eviction and its
/// controller making it again): `None` when the server says NotFound, a panic on any other error.
fn json_if_found(args: &[&str]) -> Option<Value> {
    let mut cmd = kubectl(args);
    let (ok, text) = output(&mut cmd);
    if ok {
        return Some(serde_json::from_str(&text).unwrap());
    }
    assert!(text.contains("(NotFound)"), "{cmd:?}:\n{text}");
    None
}

/// Polls `check` every half second until it gives `Some`, for at most `limit`.
fn eventually<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    eventually_or(limit, check).unwrap_or_else(|| panic!("timed out: {what}"))
}

fn annotation(obj: &Value, key: &str) -> Option<String> {
    obj["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

/// The node a tansu pod runs on.
fn pod_node(pod: &str) -> String {
    pod_node_in("tansu", pod)
}

/// The node pod `pod` of namespace `ns` runs on.
fn pod_node_in(ns: &str, pod: &str) -> String {
    let p = json_of(&["-n", ns, "get", "pod", pod, "-o", "json"]);
    p["spec"]["nodeName"].as_str().unwrap().to_string()
}

/// `count` hostPath PersistentVolumes `<name>-<i>` of 10Gi under `dir/pv`, for a chart's
/// volumeClaimTemplates (no provisioner runs here).
fn hostpath_volumes(dir: &Path, name: &str, count: u32) {
    let dir_s = dir.to_str().unwrap();
    for i in 0..count {
        let pv = format!(
            r#"{{"apiVersion":"v1","kind":"PersistentVolume","metadata":{{"name":"{name}-{i}"}},
            "spec":{{"capacity":{{"storage":"10Gi"}},"accessModes":["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy":"Retain",
            "hostPath":{{"path":"{dir_s}/pv/{name}-{i}","type":"DirectoryOrCreate"}}}}}}"#
        );
        let file = dir.join(format!("pv-{name}-{i}.json"));
        std::fs::write(&file, pv).unwrap();
        run(&mut kubectl(&["apply", "-f", file.to_str().unwrap()]));
    }
}

/// The YAML documents of `text` without its PodDisruptionBudgets (policy/v1, which a 1.20 API
/// server does not serve), written to `file`; `expected` of them are left out.
fn without_pdbs(text: &str, expected: usize, file: &Path) {
    let (kept, left_out): (Vec<&str>, Vec<&str>) = text
        .split("\n---")
        .partition(|doc| !doc.contains("\nkind: PodDisruptionBudget"));
    assert_eq!(left_out.len(), expected);
    std::fs::write(file, kept.join("\n---")).unwrap();
}

/// Where broker pod `pod` of namespace `ns` is reached from outside with expose=nodeport: its
/// node's ExternalIP and the NodePort of its Service `<pod>-external`.
fn external_of(ns: &str, pod: &str) -> (String, i64) {
    let own = node_address(&pod_node_in(ns, pod), "ExternalIP");
    let svc = json_of(&[
        "-n",
        ns,
        "get",
        "service",
        &format!("{pod}-external"),
        "-o",
        "json",
    ]);
    (own, svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap())
}

/// The node's address of a type, from the API.
fn node_address(node: &str, ty: &str) -> String {
    let n = json_of(&["get", "node", node, "-o", "json"]);
    n["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == ty)
        .and_then(|a| a["address"].as_str())
        .unwrap_or_else(|| panic!("node {node} has no {ty}: {n}"))
        .to_string()
}

#[test]
fn a_user_installs_with_helm_exposes_a_broker_and_reaches_it_from_outside() {
    let dir = node_dir();
    let dir_s = dir.to_str().unwrap();

    // The image built here (tests/run.sh builds it and sets KAFKA_EXPOSE_IMAGE), under the name
    // the chart pulls.
    let archive = std::env::var("KAFKA_EXPOSE_IMAGE").map_or_else(
        |_| Path::new(ROOT).join("target/image/kafka-expose.oci.tar"),
        PathBuf::from,
    );
    assert!(archive.exists(), "{archive:?}: run image/build.sh first");
    run(&mut node_sh(&[
        "import",
        dir_s,
        archive.to_str().unwrap(),
        IMAGE,
    ]));

    // The install guide, for a cluster before 1.21.
    run(&mut kubectl(&[
        "label",
        "namespace",
        "kube-system",
        "kafka-expose.io/webhook=disabled",
        "--overwrite",
    ]));
    let chart = format!("{ROOT}/deploy/helm/kafka-expose");
    run(&mut helm(&[
        "install",
        "kafka-expose",
        &chart,
        "--namespace",
        "kafka-expose",
        "--create-namespace",
        // external-tls: ca: below: kafka-expose signs the brokers' certificates.
        "--set",
        "externalTlsSigning.enabled=true",
        "--wait",
        "--timeout",
        "4m",
    ]));

    // The certificate hooks ran: the Secret exists and the webhook configuration trusts its CA.
    let secret = json_of(&[
        "-n",
        "kafka-expose",
        "get",
        "secret",
        "kafka-expose-tls",
        "-o",
        "json",
    ]);
    let ca = secret["data"]["ca.crt"].as_str().unwrap_or_default();
    assert!(!ca.is_empty(), "{secret}");
    let hooks = json_of(&[
        "get",
        "mutatingwebhookconfiguration",
        "kafka-expose",
        "-o",
        "json",
    ]);
    for w in hooks["webhooks"].as_array().unwrap() {
        assert_eq!(w["clientConfig"]["caBundle"].as_str(), Some(ca), "{w}");
    }
    let deployment = json_of(&[
        "-n",
        "kafka-expose",
        "get",
        "deployment",
        "kafka-expose",
        "-o",
        "json",
    ]);
    assert_eq!(
        deployment["status"]["readyReplicas"], deployment["spec"]["replicas"],
        "{deployment}"
    );
    // The server's pods run the image built here, on the real node.
    let pods = json_of(&["-n", "kafka-expose", "get", "pods", "-o", "json"]);
    for p in pods["items"].as_array().unwrap() {
        assert_eq!(p["spec"]["containers"][0]["image"], IMAGE, "{p}");
        let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
        assert!(node.starts_with("kx-node"), "{p}");
    }
    run(&mut helm(&["test", "kafka-expose", "-n", "kafka-expose"]));

    // The chart's cert-manager mode and its Prometheus Operator objects against the real CRDs:
    // the API server's dry run accepts every object and prunes nothing from it.
    install_third_party_crds(&dir);
    let rendered = dir.join("chart-cert-manager-monitoring.yaml");
    std::fs::write(
        &rendered,
        stdout_of(&mut helm(&[
            "template",
            "kafka-expose",
            &chart,
            "--namespace",
            "kafka-expose",
            "--set",
            "certificates.mode=cert-manager",
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "podMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
            "--show-only",
            "templates/cert-manager.yaml",
            "--show-only",
            "templates/monitoring.yaml",
        ])),
    )
    .unwrap();
    let sent = dry_run(&rendered, "client");
    let mut kinds: Vec<&str> = sent.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Certificate",
            "Certificate",
            "Issuer",
            "Issuer",
            "PodMonitor",
            "PrometheusRule",
            "ServiceMonitor"
        ]
    );
    let kept = dry_run(&rendered, "server");
    assert_eq!(sent.len(), kept.len());
    for (s, k) in sent.iter().zip(&kept) {
        assert_eq!(s["spec"], k["spec"], "pruned or changed by the API server");
    }
    // The comparison bites: a field the CRD does not know is pruned by the same dry run.
    let mut wrong = sent
        .iter()
        .find(|o| o["kind"] == "ServiceMonitor")
        .unwrap()
        .clone();
    wrong["spec"]["endpoints"][0]["notAField"] = "x".into();
    let wrong_file = dir.join("servicemonitor-unknown-field.json");
    std::fs::write(&wrong_file, wrong.to_string()).unwrap();
    let pruned = dry_run(&wrong_file, "server");
    assert!(
        pruned[0]["spec"]["endpoints"][0]["notAField"].is_null(),
        "{}",
        pruned[0]
    );

    // A broker (tansu, by others) exposed by annotation, advertising its node's ExternalIP.
    run(&mut kubectl(&["create", "namespace", "tansu"]));
    run(&mut kubectl(&[
        "apply",
        "-f",
        &format!("{ROOT}/tests/data/node/tansu.yaml"),
    ]));
    expose(&[
        "kafka-expose.io/expose=nodeport",
        "kafka-expose.io/advertised-host=node:ExternalIP",
    ]);
    let bootstrap = converged(|b| b.starts_with("10.79.0."));
    // The scheduler's binding gave the broker its node's ExternalIP.
    let external = node_address(&pod_node("tansu-0"), "ExternalIP");
    assert!(
        bootstrap.starts_with(&format!("{external}:")),
        "{bootstrap}"
    );
    // What the broker process runs with, read inside its pod: its external listener advertises
    // the node's ExternalIP and the broker's own NodePort.
    let svc = json_of(&[
        "-n",
        "tansu",
        "get",
        "service",
        "tansu-0-external",
        "-o",
        "json",
    ]);
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    let cmdlines = run(&mut kubectl(&[
        "-n",
        "tansu",
        "exec",
        "tansu-0",
        "-c",
        "broker",
        "--",
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do tr '\\0' ' ' <$p/cmdline; echo; done",
    ]));
    assert!(
        cmdlines.contains(&format!(
            "--advertised-listener-url tcp://{external}:{node_port}"
        )),
        "{cmdlines}"
    );

    // From outside, through kube-proxy: every broker answers at the address it advertises.
    check_from_outside(&bootstrap, &format!("{external}:{node_port}"));
    // The client reaches the nodes' ExternalIPs and nothing else: not the InternalIP.
    let internal = node_address(&pod_node("tansu-0"), "InternalIP");
    let (reached, text) = check_outside(&["--bootstrap", &format!("{internal}:{node_port}")]);
    assert!(!reached, "{text}");

    // kcat, from outside, produces a message to the broker through its NodePort and consumes it
    // back: tansu stores it, and kcat reaches partition 0's leader at the address it advertises.
    let message = dir.join("kcat-message");
    std::fs::write(&message, "through the NodePort").unwrap();
    let produced = run(&mut kcat_outside(&[
        "-b",
        &bootstrap,
        "-P",
        "-t",
        "outside",
        "-p",
        "0",
        message.to_str().unwrap(),
    ]));
    assert!(!produced.contains("ERROR"), "{produced}");
    let consumed = run(&mut kcat_outside(&[
        "-b",
        &bootstrap,
        "-C",
        "-t",
        "outside",
        "-p",
        "0",
        "-o",
        "beginning",
        "-e",
        "-f",
        "%o %s\\n",
    ]));
    assert!(consumed.contains("0 through the NodePort\n"), "{consumed}");

    // One LoadBalancer per broker: the test is the cloud, giving each an address in the client's
    // LoadBalancer range, and kube-proxy routes it.
    expose(&[
        "kafka-expose.io/expose=loadbalancer",
        "kafka-expose.io/advertised-host-",
    ]);
    let bootstrap = converged(|b| b.starts_with("10.80.0."));
    check_from_outside(&bootstrap, "10.80.0.");
    // One shared LoadBalancer, port base + n for broker n.
    expose(&["kafka-expose.io/expose=shared-loadbalancer"]);
    let bootstrap = converged(|b| b.starts_with("10.80.0."));
    check_from_outside(&bootstrap, "10.80.0.");
    // A hostPort on the broker's node, through the CNI portmap plugin, at its ExternalIP.
    expose(&[
        "kafka-expose.io/expose=hostport",
        "kafka-expose.io/advertised-host=node:ExternalIP",
    ]);
    let bootstrap = converged(|b| b.starts_with("10.79.0."));
    let external = node_address(&pod_node("tansu-0"), "ExternalIP");
    check_from_outside(&bootstrap, &format!("{external}:"));

    // Two brokers, one on each node (the manifest's anti-affinity), with
    // externalTrafficPolicy Local: each broker's NodePort answers at its own node's ExternalIP,
    // and not at the other node's.
    expose(&[
        "kafka-expose.io/expose=nodeport",
        "kafka-expose.io/external-traffic-policy=Local",
    ]);
    run(&mut kubectl(&[
        "-n",
        "tansu",
        "scale",
        "statefulset",
        "tansu",
        "--replicas=2",
    ]));
    let bootstrap = converged(|b| b.split(',').count() == 2);
    let externals: Vec<String> = ["tansu-0", "tansu-1"]
        .iter()
        .map(|p| node_address(&pod_node(p), "ExternalIP"))
        .collect();
    assert_ne!(externals[0], externals[1], "one broker on each node");
    for (i, own) in externals.iter().enumerate() {
        let other = &externals[1 - i];
        let svc = json_of(&[
            "-n",
            "tansu",
            "get",
            "service",
            &format!("tansu-{i}-external"),
            "-o",
            "json",
        ]);
        assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local", "{svc}");
        let port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!(bootstrap.contains(own.as_str()), "{bootstrap}");
        check_from_outside(&format!("{own}:{port}"), &format!("{own}:{port}"));
        let (reached, text) = check_outside(&["--bootstrap", &format!("{other}:{port}")]);
        assert!(
            !reached,
            "broker {i}'s NodePort answered on the other node: {text}"
        );
    }

    // Its NodePorts are the fixture's next, from the same default base: the user takes tansu's
    // exposure off first (a second workload on the same base is refused, as it should be).
    unexpose("tansu", "tansu");

    // The apache-kafka-kraft fixture, unchanged, on a stand-in apache/kafka:3.9.1 (the image's
    // env mapping, then the project's test broker, which learns its peers over the controller
    // listener from the quorum voters), annotated as a user would.
    run(&mut node_sh(&[
        "broker-image",
        dir_s,
        env!("CARGO_BIN_EXE_kx-test-broker"),
    ]));
    hostpath_volumes(&dir, "kafka-data", 3);
    run(&mut kubectl(&["create", "namespace", "streaming"]));
    run(&mut kubectl(&[
        "apply",
        "-f",
        &format!("{ROOT}/tests/data/charts/apache-kafka-kraft.yaml"),
    ]));
    annotate(
        "streaming",
        "kafka",
        &[
            "kafka-expose.io/expose=nodeport",
            "kafka-expose.io/advertised-host=node:ExternalIP",
        ],
    );
    let bootstrap = converged_in("streaming", "kafka", |b| b.starts_with("10.79.0."));
    let mut lines = Vec::new();
    for i in 0..3 {
        let pod = format!("kafka-{i}");
        let (own, port) = external_of("streaming", &pod);
        let props = streaming_properties(&pod);
        let advertised = props
            .lines()
            .find_map(|l| l.strip_prefix("advertised.listeners="))
            .unwrap_or_default();
        assert!(
            advertised.contains(&format!("EXTERNAL://{own}:{port}")),
            "{pod}: {props}"
        );
        assert!(
            advertised.contains(&format!(
                "PLAINTEXT://{pod}.kafka-headless.streaming.svc.cluster.local:9092"
            )),
            "{pod}: {props}"
        );
        assert!(!advertised.contains("CONTROLLER"), "{pod}: {props}");
        lines.push(format!("ok broker {i} {own}:{port}"));
    }
    // Every broker, as itself, from outside through kube-proxy; and kcat lists them all.
    check_brokers_from_outside(&bootstrap, 3, &lines);
    let listed = kcat_listing(3, || kcat_outside(&["-b", &bootstrap, "-L", "-m", "10"]));
    assert!(listed.contains(" 3 brokers:"), "{listed}");
    for l in &lines {
        let (i, at) = l["ok broker ".len()..].split_once(' ').unwrap();
        assert!(listed.contains(&format!("broker {i} at {at}")), "{listed}");
    }
    // `check` with a kubeconfig, from outside (the API server is published to the client, as a
    // cluster's endpoint is): it reads the live Services, endpoints and pods. With broker 1's
    // pod deleted and unable to come back (both nodes cordoned), it names where the path breaks.
    let kubeconfig = dir.join("kubeconfig");
    let kc = kubeconfig.to_str().unwrap();
    let check_live = || check_outside(&["--kubeconfig", kc, "-n", "streaming", "kafka"]);
    let live = eventually_or(Duration::from_secs(30), || {
        let (ok, text) = check_live();
        ok.then_some(text)
    });
    assert!(
        live.is_some(),
        "check with a kubeconfig: {:?}",
        check_live()
    );
    println!("check, live:\n{}", live.unwrap());
    run(&mut kubectl(&["cordon", "kx-node1", "kx-node2"]));
    run(&mut kubectl(&[
        "-n",
        "streaming",
        "delete",
        "pod",
        "kafka-1",
        "--wait=false",
    ]));
    let broken = eventually(Duration::from_secs(60), "check naming the break", || {
        let (ok, text) = check_live();
        (!ok && text.contains("kafka-1")).then_some(text)
    });
    // Named as what it is: a pod on its way out (its Ready condition may still say True), or gone.
    assert!(
        broken.contains("pod kafka-1 is being deleted")
            || broken.contains("pod kafka-1 does not exist"),
        "{broken}"
    );
    println!("check, broker 1's pod deleted:\n{broken}");
    run(&mut kubectl(&["uncordon", "kx-node1", "kx-node2"]));
    eventually(
        POD_REPLACED + Duration::from_secs(30),
        "broker 1 back",
        || {
            let (ok, _) = check_live();
            ok.then_some(())
        },
    );

    external_tls_on_the_node(&dir);
    chart_tls_on_the_node(&dir);
    renewal_restarts_on_the_node(&dir);
    gateway_on_the_node(&dir);

    unexpose("streaming", "kafka");
    run(&mut kubectl(&[
        "delete",
        "namespace",
        "streaming",
        "--wait=false",
    ]));

    bitnami_on_the_node(&dir);
    cloudpirates_on_the_node(&dir);

    // Uninstall as the guide says: the annotations first, then the release.
    run(&mut helm(&[
        "uninstall",
        "kafka-expose",
        "-n",
        "kafka-expose",
        "--wait",
    ]));
    // The server's pods go after the release: the garbage collector marks them for deletion
    // (at once), and the kubelet ends them (within their 30 s grace). Objects already being
    // deleted are not what the uninstall leaves.
    eventually(
        Duration::from_secs(60),
        "the server's pods marked for deletion",
        || {
            json_of(&["-n", "kafka-expose", "get", "pods", "-o", "json"])["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| !p["metadata"]["deletionTimestamp"].is_null())
                .then_some(())
        },
    );
    let mut here = left(&[
        "-n",
        "kafka-expose",
        "get",
        "deployments,services,serviceaccounts,roles,rolebindings,secrets,configmaps,leases,jobs,pods",
        "-o",
        "json",
    ]);
    here.retain(|n| {
        !n.starts_with("ServiceAccount/default")
            && !n.starts_with("Secret/default-token-")
            && n != "ConfigMap/kube-root-ca.crt"
    });
    here.sort();
    assert_eq!(
        here,
        [
            "Lease/kafka-expose-certs",
            "Lease/kafka-expose-reconciler",
            "Secret/kafka-expose-tls"
        ],
        "what helm uninstall leaves in the namespace (docs/src/install.md)"
    );
    left_settles(
        "mutatingwebhookconfigurations,validatingwebhookconfigurations,clusterroles,clusterrolebindings,crds",
        &["CustomResourceDefinition/kafkaexposepolicies.kafka-expose.io"],
        "what helm uninstall leaves cluster-wide (docs/src/install.md)",
    );

    // The same install from deploy/manifests, as the guide gives it, on a cluster without the
    // release's leftovers: `kubectl apply -k`, then `certs` makes the Secret and sets the
    // caBundle, and the server's pods start.
    run(&mut kubectl(&["delete", "namespace", "kafka-expose"]));
    run(&mut kubectl(&[
        "delete",
        "crd",
        "kafkaexposepolicies.kafka-expose.io",
    ]));
    // `kubectl kustomize deploy/manifests`, applied as `apply -k` would, but for its
    // PodDisruptionBudget: policy/v1, which a 1.20 API server does not serve (install.md says
    // the plain manifests need 1.21 for it).
    let rendered = stdout_of(&mut kubectl(&[
        "kustomize",
        &format!("{ROOT}/deploy/manifests"),
    ]));
    let manifests_file = dir.join("manifests-without-pdb.yaml");
    without_pdbs(&rendered, 1, &manifests_file);
    let manifests = manifests_file.to_str().unwrap();
    run(&mut kubectl(&["apply", "-f", manifests]));
    run(Command::new(env!("CARGO_BIN_EXE_kafka-expose"))
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "certs",
            "--service-name",
            "kafka-expose",
            "--service-namespace",
            "kafka-expose",
            "--secret",
            "kafka-expose-tls",
            "--patch-webhook",
            "kafka-expose",
        ]));
    run(&mut kubectl(&[
        "-n",
        "kafka-expose",
        "rollout",
        "status",
        "deployment/kafka-expose",
        "--timeout=180s",
    ]));
    let secret = json_of(&[
        "-n",
        "kafka-expose",
        "get",
        "secret",
        "kafka-expose-tls",
        "-o",
        "json",
    ]);
    let ca = secret["data"]["ca.crt"].as_str().unwrap_or_default();
    assert!(!ca.is_empty(), "{secret}");
    let hooks = json_of(&[
        "get",
        "mutatingwebhookconfiguration",
        "kafka-expose",
        "-o",
        "json",
    ]);
    for w in hooks["webhooks"].as_array().unwrap() {
        assert_eq!(w["clientConfig"]["caBundle"].as_str(), Some(ca), "{w}");
    }
    // It serves: a broker exposed by annotation is reached from outside (tansu is a cluster of
    // one, so one replica).
    run(&mut kubectl(&[
        "-n",
        "tansu",
        "scale",
        "statefulset",
        "tansu",
        "--replicas=1",
    ]));
    expose(&[
        "kafka-expose.io/expose=nodeport",
        "kafka-expose.io/advertised-host=node:ExternalIP",
        "kafka-expose.io/external-traffic-policy-",
    ]);
    let bootstrap = converged(|b| b.starts_with("10.79.0.") && !b.contains(','));
    check_from_outside(&bootstrap, "10.79.0.");
    // Uninstall: the annotation off, then `kubectl delete -k`, which leaves nothing of
    // kafka-expose (docs/src/install.md).
    unexpose("tansu", "tansu");
    run(&mut kubectl(&["delete", "-f", manifests]));
    left_settles(
        "namespaces,mutatingwebhookconfigurations,validatingwebhookconfigurations,clusterroles,clusterrolebindings,crds",
        &[],
        "what kubectl delete -k leaves",
    );
}

/// The Bitnami 32.4.4 fixture (KRaft, three combined nodes, SASL PLAIN on every listener), on a
/// stand-in docker.io/bitnami/kafka:4.0.0-debian-12-r10 (`node.sh broker-image`): the chart's own
/// init script runs in bash with the image's libkafka.sh functions and renders server.properties,
/// kafka-expose's init container edits that file after it, and the test broker starts on the
/// result, learning its peers over the SASL controller listener from
/// `controller.quorum.bootstrap.servers`. Annotated as a user would; reached from outside with the
/// chart's client credentials, and refused without them.
fn bitnami_on_the_node(dir: &Path) {
    hostpath_volumes(dir, "bitnami-data", 3);
    // Unchanged but for its two PodDisruptionBudgets: they are policy/v1, which a 1.20 API
    // server does not serve.
    let fixture =
        std::fs::read_to_string(format!("{ROOT}/tests/data/charts/bitnami-32.4.4.yaml")).unwrap();
    let file = dir.join("bitnami-32.4.4-without-pdbs.yaml");
    without_pdbs(&fixture, 2, &file);
    run(&mut kubectl(&["create", "namespace", "kafka"]));
    run(&mut kubectl(&["apply", "-f", file.to_str().unwrap()]));
    annotate(
        "kafka",
        "my-kafka-controller",
        &[
            "kafka-expose.io/expose=nodeport",
            "kafka-expose.io/advertised-host=node:ExternalIP",
        ],
    );
    // One entry per node the brokers run on (the NodePort answers on each), every one an
    // ExternalIP.
    let bootstrap = converged_in("kafka", "my-kafka-controller", |b| {
        b.split(',').all(|a| a.starts_with("10.79.0."))
    });
    let secret = json_of(&[
        "-n",
        "kafka",
        "get",
        "secret",
        "my-kafka-user-passwords",
        "-o",
        "json",
    ]);
    let password = String::from_utf8(base64_decode(
        secret["data"]["client-passwords"].as_str().unwrap(),
    ))
    .unwrap();
    let mut lines = Vec::new();
    for i in 0..3 {
        let pod = format!("my-kafka-controller-{i}");
        let (own, port) = external_of("kafka", &pod);
        // What the broker process reads, inside its pod: the chart's script wrote it (node.id,
        // passwords in place of the placeholders), and kafka-expose's edit came after.
        let props = run(&mut kubectl(&[
            "-n",
            "kafka",
            "exec",
            &pod,
            "-c",
            "kafka",
            "--",
            "cat",
            "/opt/bitnami/kafka/config/server.properties",
        ]));
        let value = |key: &str| {
            props
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{pod}: no {key}: {props}"))
                .to_string()
        };
        assert_eq!(value("node.id"), i.to_string(), "{pod}: {props}");
        assert!(
            value("advertised.listeners").contains(&format!("EXTERNAL://{own}:{port}")),
            "{pod}: {props}"
        );
        assert!(
            value("listener.security.protocol.map").contains("EXTERNAL:SASL_PLAINTEXT"),
            "{pod}: {props}"
        );
        assert!(
            value("listener.name.external.plain.sasl.jaas.config")
                .contains(&format!("user_user1=\"{password}\"")),
            "{pod}: {props}"
        );
        lines.push(format!("ok broker {i} {own}:{port}"));
    }
    let sasl = [
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-mechanism",
        "PLAIN",
        "--sasl-username",
        "user1",
        "--sasl-password",
        &password,
    ];
    let mut args = vec!["--bootstrap", bootstrap.as_str()];
    args.extend_from_slice(&sasl);
    check_brokers_args_from_outside(&args, 3, &lines);
    // A wrong password is refused at the bootstrap: SASL is really in the way.
    let mut wrong = args.clone();
    *wrong.last_mut().unwrap() = "not-the-password";
    let (ok, text) = check_outside(&wrong);
    assert!(!ok && text.contains("SASL PLAIN was rejected"), "{text}");
    let listed = kcat_listing(3, || {
        kcat_outside(&[
            "-b",
            &bootstrap,
            "-L",
            "-m",
            "10",
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=PLAIN",
            "-X",
            "sasl.username=user1",
            "-X",
            &format!("sasl.password={password}"),
        ])
    });
    assert!(listed.contains(" 3 brokers:"), "{listed}");
    for l in &lines {
        let (i, at) = l["ok broker ".len()..].split_once(' ').unwrap();
        assert!(listed.contains(&format!("broker {i} at {at}")), "{listed}");
    }
    unexpose("kafka", "my-kafka-controller");
    run(&mut kubectl(&[
        "delete",
        "namespace",
        "kafka",
        "--wait=false",
    ]));
}

/// The `server.properties` broker `pod` of namespace `streaming` runs with, read inside its pod:
/// the file the image's script wrote from the environment the kubelet expanded.
fn streaming_properties(pod: &str) -> String {
    run(&mut kubectl(&[
        "-n",
        "streaming",
        "exec",
        pod,
        "-c",
        "broker",
        "--",
        "cat",
        "/opt/kafka/config/server.properties",
    ]))
}

/// `external-tls: ca:` on the apache/kafka brokers of namespace `streaming`, as a user would: a CA
/// in a Secret beside them, one annotation. Each broker rolls through the gate, which waits for
/// the certificate kafka-expose signs for its node's ExternalIP; the test broker serves TLS from
/// the PEM key store the gate wrote; from outside, `check --ca-file` verifies every broker's name
/// and chain, and kcat connects with host-name verification on.
fn external_tls_on_the_node(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    p.distinguished_name
        .push(DnType::CommonName, "node suite Kafka CA");
    let ca = dir.join("kafka-ca.crt");
    let ca_key = dir.join("kafka-ca.key");
    std::fs::write(&ca, p.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(&ca_key, key.serialize_pem()).unwrap();
    run(&mut kubectl(&[
        "-n",
        "streaming",
        "create",
        "secret",
        "tls",
        "kafka-ca",
        "--cert",
        ca.to_str().unwrap(),
        "--key",
        ca_key.to_str().unwrap(),
    ]));
    annotate(
        "streaming",
        "kafka",
        &["kafka-expose.io/external-tls=ca:kafka-ca"],
    );
    let published = converged_in("streaming", "kafka", |b| b.starts_with("10.79.0."));
    let boot = json_of(&[
        "-n",
        "streaming",
        "get",
        "service",
        "kafka-external-bootstrap",
        "-o",
        "json",
    ]);
    assert_eq!(
        boot["spec"]["externalTrafficPolicy"], "Local",
        "a node's bootstrap port reaches only the brokers on it"
    );
    let mut lines = Vec::new();
    for i in 0..3 {
        let pod = format!("kafka-{i}");
        let (own, port) = external_of("streaming", &pod);
        let secret = json_of(&[
            "-n",
            "streaming",
            "get",
            "secret",
            &format!("{pod}-external-tls"),
            "-o",
            "json",
        ]);
        let crt =
            String::from_utf8(base64_decode(secret["data"]["tls.crt"].as_str().unwrap())).unwrap();
        let names = &kafka_expose::certs::inspect(&crt).unwrap()[0].names;
        assert_eq!(
            names,
            std::slice::from_ref(&own),
            "{pod}: its certificate names its node's ExternalIP alone"
        );
        // What the broker runs with, and what it says it serves.
        let props = streaming_properties(&pod);
        for line in [
            "listener.name.external.ssl.keystore.type=PEM",
            "listener.name.external.ssl.keystore.location=/kafka-expose-tls/keystore.pem",
        ] {
            assert!(props.lines().any(|l| l == line), "{pod}: {line} in {props}");
        }
        assert!(props.contains(",EXTERNAL:SSL"), "{pod}: {props}");
        let log = run(&mut kubectl(&[
            "-n",
            "streaming",
            "logs",
            &pod,
            "-c",
            "broker",
        ]));
        assert!(
            log.contains(&format!(
                "EXTERNAL: TLS from /kafka-expose-tls/keystore.pem, names [\"{own}\"]"
            )),
            "{pod}: {log}"
        );
        let gate = run(&mut kubectl(&[
            "-n",
            "streaming",
            "logs",
            &pod,
            "-c",
            "kafka-expose-gate",
        ]));
        assert!(
            gate.contains(&format!("its certificate names {own}")),
            "{pod}: {gate}"
        );
        lines.push(format!("ok broker {i} {own}:{port}"));
    }
    let ca_file = ca.to_str().unwrap();
    // Bootstrap through the address kafka-expose publishes: each node's bootstrap port, which
    // reaches only that node's brokers, whose certificates name that node.
    let bootstrap = published.clone();
    let verified = check_brokers_args_from_outside(
        &[
            "--bootstrap",
            &bootstrap,
            "--security-protocol",
            "SSL",
            "--ca-file",
            ca_file,
        ],
        3,
        &lines,
    );
    assert_eq!(
        verified
            .matches("the certificate names the host; chain verified")
            .count(),
        3,
        "{verified}"
    );
    // Through the whole list, then each node's bootstrap port alone, verifying: every one serves.
    for entry in std::iter::once(bootstrap.as_str()).chain(published.split(',')) {
        let listed = kcat_listing(3, || kcat_verifying(entry, ca_file));
        assert!(listed.contains(" 3 brokers:"), "{entry}: {listed}");
    }
    // Without the CA, the same client refuses them: the verification is real.
    let (trusted, _) = output(&mut kcat_outside(&[
        "-b",
        &bootstrap,
        "-L",
        "-m",
        "5",
        "-X",
        "security.protocol=ssl",
        "-X",
        "ssl.endpoint.identification.algorithm=https",
    ]));
    assert!(!trusted, "kcat trusts no unknown CA");
}

/// A broker whose certificate lacks its address, named (issue 27's last acceptance item). The
/// chart's own TLS, as Bitnami generates it: one broker of the apache/kafka fixture whose client
/// listener is SSL, with a PEM key store whose certificate names only the broker's in-cluster
/// name. Exposed with `external-tls` off, the external listener inherits SSL and the chart's key
/// store, as Kafka falls back to the broker-wide `ssl.*` settings. From the client namespace:
/// - `check --ca-file` with the chart's CA says the certificate does not name the node's
///   ExternalIP the broker advertises, and which name it carries;
/// - without verification, `check` reaches the broker and its row says its certificate does not
///   name the host;
/// - with `external-tls: ca:`, the same broker serves its own certificate on the external listener
///   (the chart's client listener keeps the chart's), and `check --ca-file` verifies it.
fn chart_tls_on_the_node(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let ns = "chart-tls";
    let in_cluster = format!("kafka-0.kafka-headless.{ns}.svc.cluster.local");
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_pem = p.self_signed(&ca_key).unwrap().pem();
    let (crt, key) = kafka_expose::certs::sign_broker(
        &ca_pem,
        &ca_key.serialize_pem(),
        std::slice::from_ref(&in_cluster),
        Duration::from_secs(3600),
    )
    .unwrap();
    let chart_ca = dir.join("chart-ca.crt");
    std::fs::write(&chart_ca, &ca_pem).unwrap();
    let keystore = dir.join("chart-keystore.pem");
    std::fs::write(&keystore, format!("{key}{crt}")).unwrap();
    run(&mut kubectl(&["create", "namespace", ns]));
    run(&mut kubectl(&[
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "kafka-tls",
        &format!("--from-file=keystore.pem={}", keystore.to_str().unwrap()),
    ]));
    // The fixture, with the chart's TLS on its client listener, one broker, and an emptyDir for
    // its data.
    let fixture = format!("{ROOT}/tests/data/charts/apache-kafka-kraft.yaml");
    let mut docs = dry_run(Path::new(&fixture), "client");
    for d in &mut docs {
        d["metadata"]["namespace"] = ns.into();
        if d["kind"] != "StatefulSet" {
            continue;
        }
        let spec = &mut d["spec"];
        spec["replicas"] = 1.into();
        spec.as_object_mut().unwrap().remove("volumeClaimTemplates");
        let pod = &mut spec["template"]["spec"];
        pod["volumes"] = json!([{"name": "data", "emptyDir": {}},
                                {"name": "chart-tls", "secret": {"secretName": "kafka-tls"}}]);
        let broker = &mut pod["containers"][0];
        broker["volumeMounts"].as_array_mut().unwrap().push(
            json!({"name": "chart-tls", "mountPath": "/etc/kafka/secrets", "readOnly": true}),
        );
        let env = broker["env"].as_array_mut().unwrap();
        for e in env.iter_mut() {
            if let Some(v) = e["value"].as_str() {
                let v = v.replace(".streaming.", &format!(".{ns}."));
                e["value"] = if e["name"] == "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP" {
                    v.replace("PLAINTEXT:PLAINTEXT", "PLAINTEXT:SSL")
                } else {
                    v
                }
                .into();
            }
        }
        env.push(json!({"name": "KAFKA_SSL_KEYSTORE_TYPE", "value": "PEM"}));
        env.push(json!({"name": "KAFKA_SSL_KEYSTORE_LOCATION",
                        "value": "/etc/kafka/secrets/keystore.pem"}));
    }
    let manifest = dir.join("chart-tls.json");
    std::fs::write(
        &manifest,
        json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string(),
    )
    .unwrap();
    run(&mut kubectl(&["apply", "-f", manifest.to_str().unwrap()]));
    annotate(
        ns,
        "kafka",
        &[
            "kafka-expose.io/expose=nodeport",
            "kafka-expose.io/advertised-host=node:ExternalIP",
            "kafka-expose.io/port-base=31700",
            "kafka-expose.io/bootstrap-node-port=31710",
        ],
    );
    converged_in(ns, "kafka", |b| b.starts_with("10.79.0."));
    let (own, port) = external_of(ns, "kafka-0");
    let advertised = format!("{own}:{port}");
    let log = run(&mut kubectl(&["-n", ns, "logs", "kafka-0", "-c", "broker"]));
    assert!(
        log.contains(&format!(
            "EXTERNAL: TLS from /etc/kafka/secrets/keystore.pem, names [\"{in_cluster}\"]"
        )),
        "the external listener serves the chart's certificate: {log}"
    );
    let ca_file = chart_ca.to_str().unwrap();
    let lacks = format!("the certificate does not name {own} (it names {in_cluster})");
    // Once kube-proxy has the new NodePort (as the other phases' checks, it is looked at again
    // until the path answers): refused for the name it lacks.
    let mut last = String::new();
    let text = eventually_or(Duration::from_secs(30), || {
        let (ok, text) = check_outside(&[
            "--bootstrap",
            &advertised,
            "--security-protocol",
            "SSL",
            "--ca-file",
            ca_file,
        ]);
        let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
        last = text.clone();
        (!ok && squeezed.contains(&lacks)).then_some(text)
    });
    let text = text.unwrap_or_else(|| panic!("check naming what the certificate lacks:\n{last}"));
    let (_, json) = check_outside(&[
        "--bootstrap",
        &advertised,
        "--security-protocol",
        "SSL",
        "--insecure-skip-tls-verify",
        "-o",
        "json",
    ]);
    // The JSON report, then what check says on stderr (that nothing was verified).
    let report: Value = serde_json::Deserializer::from_str(&json)
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("a JSON report: {json}"));
    let brokers = report["targets"][0]["brokers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let named: Vec<&Value> = brokers
        .iter()
        .filter(|b| b["tls"]["names_host"] == false)
        .collect();
    assert_eq!(named.len(), 1, "{report}");
    assert_eq!(
        named[0]["advertised"], advertised,
        "the broker is named by the address it advertises: {report}"
    );
    assert_eq!(
        named[0]["tls"]["presented"],
        json!([in_cluster]),
        "{report}"
    );
    println!("check, the chart's certificate on the external listener:\n{text}");

    // external-tls: the external listener gets its own certificate; the chart's listener keeps
    // the chart's.
    run(&mut kubectl(&[
        "-n",
        ns,
        "create",
        "secret",
        "tls",
        "kafka-ca",
        "--cert",
        dir.join("kafka-ca.crt").to_str().unwrap(),
        "--key",
        dir.join("kafka-ca.key").to_str().unwrap(),
    ]));
    annotate(ns, "kafka", &["kafka-expose.io/external-tls=ca:kafka-ca"]);
    converged_in(ns, "kafka", |b| b.starts_with("10.79.0."));
    let (own, port) = external_of(ns, "kafka-0");
    let log = run(&mut kubectl(&["-n", ns, "logs", "kafka-0", "-c", "broker"]));
    assert!(
        log.contains(&format!(
            "EXTERNAL: TLS from /kafka-expose-tls/keystore.pem, names [\"{own}\"]"
        )) && log.contains(&format!(
            "PLAINTEXT: TLS from /etc/kafka/secrets/keystore.pem, names [\"{in_cluster}\"]"
        )),
        "{log}"
    );
    check_brokers_args_from_outside(
        &[
            "--bootstrap",
            &format!("{own}:{port}"),
            "--security-protocol",
            "SSL",
            "--ca-file",
            dir.join("kafka-ca.crt").to_str().unwrap(),
        ],
        1,
        &[format!("ok broker 0 {own}:{port}")],
    );
    unexpose(ns, "kafka");
    run(&mut kubectl(&["delete", "namespace", ns, "--wait=false"]));
}

/// `expose: gateway` on the real node, with a real SNI data plane: the Gateway API v1.5.0 CRDs,
/// a Gateway with a TLS passthrough listener, and Debian's haproxy as its data plane on node 1's
/// host network (as a hostNetwork Gateway pod runs), listening on node 1's ExternalIP:443 and
/// configured from the live TLSRoutes as a Gateway controller is: each route's hostname, by SNI,
/// to its backend Service's ClusterIP, through kube-proxy to the broker. The test plays the
/// controller's other part too: it accepts each route kafka-expose makes (the Pod webhook holds
/// each broker until then). From the client namespace, `check` dials every broker's name at the
/// Gateway's address, verifying it; then, with the names in the client's hosts file (the DNS a
/// user would have), kcat lists the brokers through the Gateway with host-name verification on.
fn gateway_on_the_node(dir: &Path) {
    const DOMAIN: &str = "gw.kx.invalid";
    const GATEWAY_NS: &str = "kx-gateway";
    // Node 1's ExternalIP: the client reaches it, and kube-proxy runs beside the data plane.
    const GATEWAY_IP: &str = "10.79.0.11";
    let dir_s = dir.to_str().unwrap();
    let crds = install_crds(
        dir,
        "gateway-api",
        &["tests/data/crds/gateway-api-v1.5.0-standard.yaml"],
    );
    assert!(
        crds.iter()
            .any(|c| c == "crd/tlsroutes.gateway.networking.k8s.io"),
        "{crds:?}"
    );
    run(&mut kubectl(&["create", "namespace", GATEWAY_NS]));
    let gateway = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "kx-node"},
         "spec": {"controllerName": "example.com/kx-node-gateway"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "public", "namespace": GATEWAY_NS},
         "spec": {"gatewayClassName": "kx-node", "listeners": [{
             "name": "kafka", "port": 443, "protocol": "TLS",
             "hostname": format!("*.{DOMAIN}"),
             "tls": {"mode": "Passthrough"},
             "allowedRoutes": {"namespaces": {"from": "All"},
                               "kinds": [{"kind": "TLSRoute"}]}}]}}]});
    let file = dir.join("gateway.json");
    std::fs::write(&file, gateway.to_string()).unwrap();
    run(&mut kubectl(&["apply", "-f", file.to_str().unwrap()]));

    // As a user would: the workload's mode changes; its CA stays. The renewal test's short
    // certificates and `warn` go back to the defaults.
    let boot = format!("kafka.{DOMAIN}");
    annotate(
        "streaming",
        "kafka",
        &[
            "kafka-expose.io/external-tls-duration-",
            "kafka-expose.io/external-tls-renew-before-",
            "kafka-expose.io/on-address-change-",
            "kafka-expose.io/expose=gateway",
            &format!("kafka-expose.io/gateway={GATEWAY_NS}/public/kafka"),
            &format!("kafka-expose.io/advertised-host=template:kafka-{{ordinal}}.{DOMAIN}"),
            &format!("kafka-expose.io/bootstrap-host={boot}"),
        ],
    );
    scale_streaming(3);
    let published = converged_acting(
        "streaming",
        "kafka",
        |b| b == format!("{boot}:443"),
        accept_routes,
    );
    assert_eq!(published, format!("{boot}:443"));

    // The data plane, configured from the routes: hostname -> backend Service's ClusterIP.
    let routes = json_of(&["-n", "streaming", "get", "tlsroutes", "-o", "json"]);
    let routes = routes["items"].as_array().unwrap().clone();
    let mut hosts: Vec<String> = routes
        .iter()
        .map(|r| r["spec"]["hostnames"][0].as_str().unwrap().to_string())
        .collect();
    hosts.sort();
    let mut wanted: Vec<String> = (0..3).map(|i| format!("kafka-{i}.{DOMAIN}")).collect();
    wanted.push(boot.clone());
    wanted.sort();
    assert_eq!(hosts, wanted, "a route per broker and the bootstrap route");
    let mut cfg = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend gateway\n  bind {GATEWAY_IP}:443\n  tcp-request inspect-delay 5s\n  \
         tcp-request content accept if {{ req_ssl_hello_type 1 }}\n"
    );
    let mut backends = String::new();
    for r in &routes {
        let name = r["metadata"]["name"].as_str().unwrap();
        let host = r["spec"]["hostnames"][0].as_str().unwrap();
        let to = &r["spec"]["rules"][0]["backendRefs"][0];
        let svc = json_of(&[
            "-n",
            "streaming",
            "get",
            "service",
            to["name"].as_str().unwrap(),
            "-o",
            "json",
        ]);
        let ip = svc["spec"]["clusterIP"].as_str().unwrap();
        cfg.push_str(&format!(
            "  use_backend {name} if {{ req_ssl_sni -i {host} }}\n"
        ));
        backends.push_str(&format!("backend {name}\n  server s {ip}:{}\n", to["port"]));
    }
    cfg.push_str(&backends);
    let cfg_file = dir.join("gateway-haproxy.cfg");
    std::fs::write(&cfg_file, &cfg).unwrap();
    let log = std::fs::File::create(dir.join("gateway-haproxy.log")).unwrap();
    // nsenter execs haproxy: the child is haproxy itself.
    let mut proxy = node_sh(&[
        "on",
        dir_s,
        "1",
        "/usr/sbin/haproxy",
        "-db",
        "-f",
        cfg_file.to_str().unwrap(),
    ])
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .unwrap_or_else(|e| panic!("haproxy: {e}"));

    // `check` from outside: every name dialled at the Gateway's address, SNI and verification
    // on; each broker answers as itself.
    let ca = dir.join("kafka-ca.crt");
    let ca_file = ca.to_str().unwrap();
    let lines: Vec<String> = (0..3)
        .map(|i| format!("ok broker {i} kafka-{i}.{DOMAIN}:443"))
        .collect();
    let args = [
        "--bootstrap",
        &published,
        "--connect-to",
        GATEWAY_IP,
        "--security-protocol",
        "SSL",
        "--ca-file",
        ca_file,
    ];
    let verified = check_brokers_args_from_outside(&args, 3, &lines);
    assert_eq!(
        verified
            .matches("the certificate names the host; chain verified")
            .count(),
        3,
        "{verified}"
    );
    // With a kubeconfig, each broker's row says what the Gateway said of its route.
    let kubeconfig = dir.join("kubeconfig");
    let (ok, live) = check_outside(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "-n",
        "streaming",
        "kafka",
        "--connect-to",
        GATEWAY_IP,
        "--security-protocol",
        "SSL",
        "--ca-file",
        ca_file,
    ]);
    assert!(ok, "{live}");
    for i in 0..3 {
        assert!(
            live.contains(&format!("TLSRoute kafka-{i}-external: accepted")),
            "{live}"
        );
    }

    // kcat, as a user's client: the names resolve to the Gateway (the client's hosts file here,
    // a DNS zone for a user), and librdkafka verifies each broker's name.
    let names = std::iter::once(boot.clone())
        .chain((0..3).map(|i| format!("kafka-{i}.{DOMAIN}")))
        .collect::<Vec<_>>()
        .join(" ");
    let client_hosts = dir.join("client-hosts");
    std::fs::write(
        &client_hosts,
        format!("127.0.0.1 localhost\n{GATEWAY_IP} {names}\n"),
    )
    .unwrap();
    let listed = output(&mut kcat_verifying(&published, ca_file));
    std::fs::remove_file(&client_hosts).unwrap();
    let _ = proxy.kill();
    let _ = proxy.wait();
    let (ok, listed) = listed;
    assert!(ok, "kcat through the Gateway: {listed}\n{cfg}");
    assert!(listed.contains(" 3 brokers:"), "{listed}");
    for i in 0..3 {
        assert!(
            listed.contains(&format!("broker {i} at kafka-{i}.{DOMAIN}:443")),
            "{listed}"
        );
    }
}

/// Plays a Gateway controller's part for the TLSRoutes of namespace `ns`: each route not yet
/// accepted by the Gateway it names is accepted now.
fn accept_routes(ns: &str) {
    let routes = json_of(&["-n", ns, "get", "tlsroutes", "-o", "json"]);
    for r in routes["items"].as_array().unwrap() {
        let accepted = r["status"]["parents"].as_array().is_some_and(|p| {
            p.iter().any(|p| {
                p["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Accepted" && c["status"] == "True")
                })
            })
        });
        if accepted {
            continue;
        }
        let now = "2026-01-01T00:00:00Z";
        let parent = &r["spec"]["parentRefs"][0];
        let mut parent_ref = serde_json::json!({
            "group": "gateway.networking.k8s.io", "kind": "Gateway",
            "namespace": parent["namespace"], "name": parent["name"]});
        if let Some(section) = parent["sectionName"].as_str() {
            parent_ref["sectionName"] = section.into();
        }
        let status = serde_json::json!({"status": {"parents": [{
            "parentRef": parent_ref,
            "controllerName": "example.com/kx-node-gateway",
            "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted",
                 "message": "accepted by the node suite's Gateway", "lastTransitionTime": now},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs",
                 "message": "all references resolved", "lastTransitionTime": now}]}]}});
        run(&mut kubectl(&[
            "-n",
            ns,
            "patch",
            "tlsroute",
            r["metadata"]["name"].as_str().unwrap(),
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]));
    }
}

/// The serial the gate of broker pod `p` (JSON) started it with, from the termination message
/// the gate wrote and the kubelet reports, and the pod's uid.
fn started_with(p: &Value) -> Option<(String, String)> {
    let gate = p["status"]["initContainerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == kafka_expose::names::GATE_CONTAINER)?;
    let message = gate["state"]["terminated"]["message"].as_str()?;
    let serial = kafka_expose::engine::restart::loaded_serial(message)?;
    Some((
        p["metadata"]["uid"].as_str()?.to_string(),
        serial.to_string(),
    ))
}

/// Issues 27 and 28 on the real node: a short-lived certificate is signed again before its end;
/// the broker, which keeps the key store it started with, is found behind its Secret (the serial
/// its gate wrote in its termination message, as the kubelet reports it) and restarted by the
/// paced restart; the pod that replaces it starts with the new certificate, and serves it. One
/// broker (the StatefulSet scaled down first): one restart to wait for.
fn renewal_restarts_on_the_node(dir: &Path) {
    scale_streaming(1);
    // Three minutes, signed again with two to go: a minute after it is signed, with time left
    // for the restart.
    annotate(
        "streaming",
        "kafka",
        &[
            "kafka-expose.io/external-tls-duration=3m",
            "kafka-expose.io/external-tls-renew-before=2m",
        ],
    );
    converged_in("streaming", "kafka", |b| b.starts_with("10.79.0."));
    let pod = || json_if_found(&["-n", "streaming", "get", "pod", "kafka-0", "-o", "json"]);
    let before = pod().expect("kafka-0 runs before its renewal");
    let (uid, serial) = started_with(&before)
        .unwrap_or_else(|| panic!("the gate's termination message names its serial: {before}"));
    // Renewed a minute on, noticed within another, then evicted and replaced.
    let restarted = eventually(
        Duration::from_secs(120) + POD_REPLACED + Duration::from_secs(30),
        "kafka-0 restarted with its renewed certificate",
        || {
            // Missing between its eviction and the StatefulSet making it again.
            let p = pod()?;
            let ready = p["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let (now_uid, now_serial) = started_with(&p)?;
            (ready && now_uid != uid && now_serial != serial).then_some(now_serial)
        },
    );
    // Nothing more restarts while it is checked: warn only reports (no roll: the key is not part
    // of the brokers' configuration).
    annotate(
        "streaming",
        "kafka",
        &["kafka-expose.io/on-address-change=warn"],
    );
    let events = json_of(&["-n", "streaming", "get", "events", "-o", "json"]);
    let said = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "BrokerRestarted")
        .filter_map(|e| e["message"].as_str())
        .any(|m| {
            m.contains("evicted broker pod kafka-0")
                && m.contains(&format!("started with certificate serial {serial}"))
        });
    assert!(said, "a BrokerRestarted Event says why: {events}");
    let gate = run(&mut kubectl(&[
        "-n",
        "streaming",
        "logs",
        "kafka-0",
        "-c",
        kafka_expose::names::GATE_CONTAINER,
    ]));
    let (own, _) = external_of("streaming", "kafka-0");
    assert!(
        gate.contains(&format!("its certificate names {own}")),
        "{gate}"
    );
    let log = run(&mut kubectl(&[
        "-n",
        "streaming",
        "logs",
        "kafka-0",
        "-c",
        "broker",
    ]));
    assert!(
        log.contains(&format!(
            "EXTERNAL: TLS from /kafka-expose-tls/keystore.pem, names [\"{own}\"]"
        )),
        "{log}"
    );
    // Served: a client outside verifies the broker's name against the CA. (Its status may say
    // stale by now, under warn: the certificate is renewed every minute here.)
    let sts = json_of(&[
        "-n",
        "streaming",
        "get",
        "statefulset",
        "kafka",
        "-o",
        "json",
    ]);
    let published = annotation(&sts, "kafka-expose.io/bootstrap-servers").unwrap();
    let ca_file = dir.join("kafka-ca.crt");
    let listed = run(&mut kcat_verifying(&published, ca_file.to_str().unwrap()));
    assert!(
        listed.contains(" 1 brokers:"),
        "kafka-0 serves the certificate {restarted} it was restarted for: {listed}"
    );
}

/// The CloudPirates chart (the official apache/kafka image, its own script writing the file and
/// running kafka-server-start.sh on it): the launch adapter, on a real kubelet. The image is the
/// node's stand-in under the chart's name, whose kafka-server-start.sh ends in the test broker.
fn cloudpirates_on_the_node(dir: &Path) {
    // The Bitnami chart's namespace has the same name; it must be gone first.
    run(&mut kubectl(&[
        "wait",
        "--for=delete",
        "namespace/kafka",
        "--timeout=180s",
    ]));
    hostpath_volumes(dir, "cloudpirates-data", 3);
    // Unchanged but for: its PodDisruptionBudget (policy/v1, not served by 1.20), and the image
    // pinned by digest with pull policy Always: with no registry here, the node has only a
    // stand-in under the same name, whose digest cannot be the real one.
    let fixture = std::fs::read_to_string(format!(
        "{ROOT}/tests/data/charts/cloudpirates-kafka-0.1.4.yaml"
    ))
    .unwrap();
    let pinned = "docker.io/apache/kafka:4.3.1@sha256:77e3df9054047a88b520d0cc46e16696d3b22022e1d580aeccd2632df6532837";
    assert!(fixture.contains(pinned) && fixture.contains("imagePullPolicy: \"Always\""));
    let fixture = fixture
        .replace(pinned, "docker.io/apache/kafka:4.3.1")
        .replace(
            "imagePullPolicy: \"Always\"",
            "imagePullPolicy: \"IfNotPresent\"",
        );
    let file = dir.join("cloudpirates-kafka-0.1.4-local.yaml");
    without_pdbs(&fixture, 1, &file);
    run(&mut kubectl(&["create", "namespace", "kafka"]));
    run(&mut kubectl(&["apply", "-f", file.to_str().unwrap()]));
    annotate(
        "kafka",
        "my-kafka",
        &[
            "kafka-expose.io/expose=nodeport",
            "kafka-expose.io/advertised-host=node:ExternalIP",
        ],
    );
    let bootstrap = converged_in("kafka", "my-kafka", |b| {
        b.split(',').all(|a| a.starts_with("10.79.0."))
    });
    let secret = json_of(&["-n", "kafka", "get", "secret", "my-kafka", "-o", "json"]);
    let password = String::from_utf8(base64_decode(
        secret["data"]["client-password"].as_str().unwrap(),
    ))
    .unwrap();
    let mut lines = Vec::new();
    for i in 0..3 {
        let pod = format!("my-kafka-{i}");
        let (own, port) = external_of("kafka", &pod);
        // Both launch steps ran and exited 0.
        let status = json_of(&["-n", "kafka", "get", "pod", &pod, "-o", "json"]);
        for step in ["kafka-expose-launch-install", "kafka-expose-launch-save"] {
            let s = status["status"]["initContainerStatuses"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == step)
                .unwrap_or_else(|| panic!("{pod}: no {step}: {status}"));
            assert_eq!(s["state"]["terminated"]["exitCode"], 0, "{pod}: {s}");
        }
        // What the broker process reads: the chart's script wrote it (node.id, the JAAS lines),
        // and the launcher edited a copy at the launch.
        let props = run(&mut kubectl(&[
            "-n",
            "kafka",
            "exec",
            &pod,
            "-c",
            "kafka",
            "--",
            "cat",
            "/kafka-expose-launch/server.properties",
        ]));
        let value = |key: &str| {
            props
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{pod}: no {key}: {props}"))
                .to_string()
        };
        assert_eq!(value("node.id"), i.to_string(), "{pod}: {props}");
        assert!(
            value("advertised.listeners").contains(&format!("EXTERNAL://{own}:{port}")),
            "{pod}: {props}"
        );
        assert!(
            value("listener.security.protocol.map").contains("EXTERNAL:SASL_PLAINTEXT"),
            "{pod}: {props}"
        );
        assert!(
            value("listener.name.external.plain.sasl.jaas.config")
                .contains(&format!("user_user=\"{password}\"")),
            "{pod}: {props}"
        );
        lines.push(format!("ok broker {i} {own}:{port}"));
    }
    let args = [
        "--bootstrap",
        bootstrap.as_str(),
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-mechanism",
        "PLAIN",
        "--sasl-username",
        "user",
        "--sasl-password",
        &password,
    ];
    check_brokers_args_from_outside(&args, 3, &lines);
    unexpose("kafka", "my-kafka");
    run(&mut kubectl(&[
        "delete",
        "namespace",
        "kafka",
        "--wait=false",
    ]));
}

/// Standard base64, as Secrets carry their data.
fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The command's standard output alone (its standard error only when it fails).
fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The objects kubectl prints, one JSON document after another.
fn json_stream(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map(|v| v.unwrap_or_else(|e| panic!("{e}: {text}")))
        .collect()
}

/// `kubectl create --dry-run=<how> -o json -f file`: the objects as they would be sent (client)
/// or as the API server would store them (server). kubectl's own validation is off: it reads the
/// API server's OpenAPI document, which takes in a new CRD's schema some time after the CRD is
/// Established, so it would accept or refuse an unknown field depending on when it runs; what the
/// API server stores (pruning) is what these checks are about.
fn dry_run(file: &Path, how: &str) -> Vec<Value> {
    json_stream(&stdout_of(&mut kubectl(&[
        "create",
        &format!("--dry-run={how}"),
        "--validate=false",
        "-o",
        "json",
        "-f",
        file.to_str().unwrap(),
    ])))
}

/// cert-manager's and the Prometheus Operator's CRDs (tests/data/crds, unmodified upstream
/// files), as a 1.20 API server takes them ([`support::crd_for_1_20`]).
fn install_third_party_crds(dir: &Path) {
    let names = install_crds(
        dir,
        "third-party",
        &[
            "tests/data/crds/cert-manager-v1.x-crds.yaml",
            "tests/data/crds/prometheus-operator-crds.yaml",
        ],
    );
    assert_eq!(names.len(), 7, "{names:?}");
}

/// Installs the CRDs of `files` (under the project), as a 1.20 API server takes them, and waits
/// until each is established; gives their names. `tag` names the file written under `dir`.
fn install_crds(dir: &Path, tag: &str, files: &[&str]) -> Vec<String> {
    let mut crds = Vec::new();
    for f in files {
        let path = format!("{ROOT}/{f}");
        crds.extend(json_stream(&stdout_of(&mut kubectl(&[
            "create",
            "--dry-run=client",
            "--validate=false",
            "-o",
            "json",
            "-f",
            &path,
        ]))));
    }
    crds.iter_mut().for_each(support::crd_for_1_20);
    let names: Vec<String> = crds
        .iter()
        .map(|c| format!("crd/{}", c["metadata"]["name"].as_str().unwrap()))
        .collect();
    let file = dir.join(format!("{tag}-crds.json"));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": crds});
    std::fs::write(&file, list.to_string()).unwrap();
    run(&mut kubectl(&[
        "create",
        "--validate=false",
        "-f",
        file.to_str().unwrap(),
    ]));
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    wait.extend(names.iter().map(String::as_str));
    run(&mut kubectl(&wait));
    names
}

/// The Services kafka-expose made in namespace `ns`.
fn managed_services(ns: &str) -> Vec<Value> {
    let svcs = json_of(&[
        "-n",
        ns,
        "get",
        "services",
        "-l",
        "app.kubernetes.io/managed-by=kafka-expose",
        "-o",
        "json",
    ]);
    svcs["items"].as_array().cloned().unwrap_or_default()
}

/// Takes StatefulSet `name`'s exposure off, and waits until kafka-expose's Services are gone.
/// How long the 1.20 kubelet may take to replace one pod of a StatefulSet. It deletes the pod
/// object only once the pod's sandbox is gone, and a sandbox it did not remove when the containers
/// went (a race in its sandbox deleter) waits for the container GC, which runs every minute
/// (kubernetes#97288); the StatefulSet controller makes the next pod only then. Seen here: a pod
/// stopped in a second, and gone from the API 60 s later.
const POD_REPLACED: Duration = Duration::from_secs(90);

/// A rolling update of the test's StatefulSets, three brokers at most, one pod after another.
const ROLL: Duration = Duration::from_secs(3 * POD_REPLACED.as_secs());

fn unexpose(ns: &str, name: &str) {
    annotate(ns, name, &["kafka-expose.io/expose-"]);
    // The Services stay until every broker has rolled to the configuration without them.
    eventually(ROLL, "the Services removed", || {
        managed_services(ns).is_empty().then_some(())
    });
}

/// Annotates the tansu StatefulSet.
fn expose(annotations: &[&str]) {
    annotate("tansu", "tansu", annotations);
}

/// Sets (`key=value`) or removes (`key-`) annotations of StatefulSet `name` in namespace `ns`.
fn annotate(ns: &str, name: &str, annotations: &[&str]) {
    let mut args = vec!["-n", ns, "annotate", "--overwrite", "statefulset", name];
    args.extend_from_slice(annotations);
    run(&mut kubectl(&args));
}

/// Waits until the tansu StatefulSet has rolled, its status is `ok` and its bootstrap address
/// passes `wanted`, acting meanwhile as the cloud: each LoadBalancer Service kafka-expose made
/// gets an address in 10.80.0.0/24, which the client reaches through node 1.
fn converged(wanted: impl Fn(&str) -> bool) -> String {
    converged_in("tansu", "tansu", wanted)
}

/// [`converged`] for StatefulSet `name` in namespace `ns`.
fn converged_in(ns: &str, name: &str, wanted: impl Fn(&str) -> bool) -> String {
    converged_acting(ns, name, wanted, |_| {})
}

/// [`converged_in`], doing `act` in the namespace on every look as well (a Gateway's part).
fn converged_acting(
    ns: &str,
    name: &str,
    wanted: impl Fn(&str) -> bool,
    act: impl Fn(&str),
) -> String {
    let mut next = 10;
    eventually(ROLL, "the rollout and its bootstrap address", || {
        act(ns);
        for s in managed_services(ns) {
            let pending = s["status"]["loadBalancer"]["ingress"]
                .as_array()
                .is_none_or(|i| i.is_empty());
            if s["spec"]["type"] == "LoadBalancer" && pending {
                let svc = s["metadata"]["name"].as_str().unwrap();
                let patch = format!(
                    r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"10.80.0.{next}"}}]}}}}}}"#
                );
                next += 1;
                run(&mut kubectl(&[
                    "-n",
                    ns,
                    "patch",
                    "service",
                    svc,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch,
                ]));
            }
        }
        let sts = json_of(&["-n", ns, "get", "statefulset", name, "-o", "json"]);
        let rolled = sts["status"]["updatedReplicas"] == sts["spec"]["replicas"]
            && sts["status"]["readyReplicas"] == sts["spec"]["replicas"]
            && sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
            && sts["status"]["observedGeneration"] == sts["metadata"]["generation"];
        let ok = annotation(&sts, "kafka-expose.io/status").as_deref() == Some("ok");
        let b = annotation(&sts, "kafka-expose.io/bootstrap-servers")?;
        (rolled && ok && wanted(&b)).then_some(b)
    })
}

/// `kafka-expose check` from the client namespace: every broker answers at the address it
/// advertises, which starts with `host`. kube-proxy programs a new address a moment after the
/// Service changes, as a cloud's load balancer does, so a client may have to try again.
fn check_from_outside(bootstrap: &str, host: &str) {
    check_brokers_from_outside(bootstrap, 1, &[format!("ok broker 111 {host}")]);
}

/// `kafka-expose check` from the client namespace: `brokers` brokers, every one answering at the
/// address it advertises, and each of `lines` in the report.
fn check_brokers_from_outside(bootstrap: &str, brokers: usize, lines: &[String]) {
    check_brokers_args_from_outside(&["--bootstrap", bootstrap], brokers, lines);
}

/// As [`check_brokers_from_outside`], with `check`'s arguments given; gives the report that
/// passed. (Asserting on that report, not on another run: each run's broker list is the view of
/// whichever broker answers its bootstrap, and a broker just restarted may be missing from
/// another's view for a moment.)
fn check_brokers_args_from_outside(args: &[&str], brokers: usize, lines: &[String]) -> String {
    let mut last = String::new();
    let done = eventually_or(Duration::from_secs(30), || {
        let (ok, text) = check_outside(args);
        // The report pads its columns: compare with runs of spaces as one.
        let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let good =
            ok && squeezed.contains(&format!(
                "OK: every broker answers at the address it advertises ({brokers} brokers)"
            )) && lines.iter().all(|l| squeezed.contains(l.as_str()));
        last = text;
        good.then_some(())
    });
    assert!(done.is_some(), "check {args:?} from outside:\n{last}");
    last
}

/// `kafka-expose check ARGS` in the client namespace: whether it passed, and what it printed.
fn check_outside(args: &[&str]) -> (bool, String) {
    let mut all = vec![env!("CARGO_BIN_EXE_kafka-expose"), "check"];
    all.extend_from_slice(args);
    output(&mut from_outside(&all))
}

/// As [`eventually`], but `None` at the end of `limit` instead of a panic.
fn eventually_or<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
