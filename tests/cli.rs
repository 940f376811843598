//! The binary, run as a user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-expose");

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/data/charts/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn helm_template_output_piped_through_mutate_gives_a_json_list() {
    let out = run_with_stdin(
        &[
            "mutate",
            "-f",
            "-",
            "--set",
            "expose=nodeport",
            "-o",
            "json",
        ],
        &fixture_text("bitnami-32.4.4.yaml"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(count("StatefulSet"), 1);
    assert_eq!(count("Pod"), 3);
    assert_eq!(
        count("Service"),
        2 + 4,
        "the chart's two Services, then 3 brokers and a bootstrap"
    );
    let sts = kinds.iter().position(|k| *k == "StatefulSet").unwrap();
    assert_eq!(
        kinds[sts + 1..sts + 4],
        ["Pod", "Pod", "Pod"],
        "pods follow their workload"
    );
    let pod = &items[sts + 1];
    assert_eq!(pod["metadata"]["name"], "my-kafka-controller-0");
    let inits: Vec<&str> = pod["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        inits,
        ["prepare-config", "kafka-expose-properties"],
        "appended after the chart's own"
    );
    let svc = items
        .iter()
        .find(|i| i["metadata"]["name"] == "my-kafka-controller-1-external")
        .unwrap();
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 32401);
}

#[test]
fn yaml_output_round_trips_and_keeps_the_other_documents() {
    let out = run_with_stdin(
        &[
            "mutate",
            "-f",
            "-",
            "--set",
            "expose=nodeport",
            "--set",
            "kafka-expose.io/port-base=31000",
        ],
        &fixture_text("apache-kafka-kraft.yaml"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = kafka_expose::offline::read_documents(&text).unwrap();
    assert_eq!(
        docs[0]["metadata"]["name"], "kafka-headless",
        "the headless Service passes first"
    );
    let svc = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "kafka-2-external")
        .unwrap();
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 31002);
}

#[test]
fn explain_names_the_adapter_the_addresses_and_the_services() {
    let path = format!(
        "{}/tests/data/charts/cp-helm-charts-cp-kafka.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(BIN)
        .args([
            "mutate",
            "-f",
            &path,
            "--set",
            "expose=nodeport",
            "--explain",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("container cp-kafka-broker: adopt adapter"),
        "{text}"
    );
    assert!(
        text.contains("broker my-cp-cp-kafka-2: advertises EXTERNAL://<its node's IP>:31092"),
        "{text}"
    );
    assert!(text.contains("via Service my-cp-cp-kafka-2-external NodePort 31092 -> pod my-cp-cp-kafka-2 port 31092"), "{text}");
    assert!(
        text.contains("StatefulSet my-cp-cp-zookeeper: left alone"),
        "{text}"
    );
}

#[test]
fn explain_shows_a_node_address_and_what_supplies_it() {
    let path = format!(
        "{}/tests/data/charts/apache-kafka-kraft.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(BIN)
        .args([
            "mutate",
            "-f",
            &path,
            "--set",
            "expose=nodeport",
            "--set",
            "advertised-host=node:ExternalIP",
            "--explain",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "broker kafka-1: advertises EXTERNAL://<ExternalIP of the node it lands on>:32401"
        ),
        "{text}"
    );
    assert!(
        text.contains("by kafka-expose's binding webhook, else its reconciler"),
        "{text}"
    );
}

#[test]
fn explain_shows_the_one_shared_service_and_which_port_routes_to_which_broker() {
    let out = run_with_stdin(
        &[
            "mutate",
            "-f",
            "-",
            "--set",
            "expose=shared-loadbalancer",
            "--set",
            "port-base=9100",
            "--explain",
        ],
        &fixture_text("apache-kafka-kraft.yaml"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for i in 0..3 {
        let want = format!(
            "via Service kafka-external LoadBalancer port {} (broker-{i}) -> pod kafka-{i} port kx-b{i}",
            9100 + i
        );
        assert!(text.contains(&want), "{want}\n{text}");
    }
    assert!(
        text.contains("one LoadBalancer Service kafka-external for 3 broker(s), ports 9100-9102"),
        "{text}"
    );
    assert!(
        text.contains("bootstrap: <address>:9100,<address>:9101,<address>:9102"),
        "{text}"
    );

    // The Services it would create: that one, and no other.
    let out = run_with_stdin(
        &[
            "mutate",
            "-f",
            "-",
            "--set",
            "expose=shared-loadbalancer",
            "-o",
            "json",
        ],
        &fixture_text("apache-kafka-kraft.yaml"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["kind"] == "Service"
                && i["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kafka-expose"
        })
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0]["spec"]["ports"].as_array().unwrap().len(), 3);

    // A TLS listener's warning names the one address the certificates must carry.
    let out = run_with_stdin(
        &[
            "mutate",
            "-f",
            "-",
            "--set",
            "expose=shared-loadbalancer",
            "--explain",
        ],
        &fixture_text("bitnami-32.4.4-ssl.yaml"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("The brokers advertise the address of their one shared LoadBalancer"),
        "{text}"
    );

    // Local traffic is refused with its reason.
    let out = run_with_stdin(
        &[
            "mutate",
            "-f",
            "-",
            "--set",
            "expose=shared-loadbalancer",
            "--set",
            "external-traffic-policy=Local",
        ],
        &fixture_text("apache-kafka-kraft.yaml"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("health check is per Service, not per port"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn malformed_yaml_is_a_clear_error_and_no_panic() {
    for input in [
        "kind: [unclosed\n",
        "- just\n- a list\n",
        "\u{0}\u{1}binary",
        "kind: StatefulSet\nspec: {replicas: x}\n",
    ] {
        let out = run_with_stdin(&["mutate", "-f", "-", "--set", "expose=nodeport"], input);
        assert!(!out.status.success(), "{input:?} should fail");
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn an_invalid_configuration_exits_non_zero_naming_the_annotation() {
    let out = run_with_stdin(
        &[
            "mutate",
            "-f",
            "-",
            "--set",
            "expose=nodeport",
            "--set",
            "port-base=40000",
        ],
        &fixture_text("apache-kafka-kraft.yaml"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing half-printed");
    assert!(
        stderr(&out).contains("kafka-expose.io/port-base=\"40000\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unknown_set_key_is_refused_by_the_command_line() {
    let out = run_with_stdin(&["mutate", "-f", "-", "--set", "exposed=nodeport"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected KEY=VALUE with KEY one of"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["mutate", "-f", "/nonexistent/kafka.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("reading /nonexistent/kafka.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn patch_properties_from_the_environment_is_idempotent_and_lossless() {
    let dir = std::env::temp_dir().join(format!("kx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("server.properties");
    let original = "# broker\r\nlisteners=CLIENT://:9092,INTERNAL://:9094\r\nadvertised.listeners=CLIENT://b:9092,INTERNAL://b:9094\r\nlistener.security.protocol.map=CLIENT:SSL,INTERNAL:PLAINTEXT\r\ninter.broker.listener.name=INTERNAL\r\nlistener.name.client.ssl.keystore.location=/k\r\nunrelated=1\r\n";
    std::fs::write(&file, original).unwrap();
    let run = || {
        Command::new(BIN)
            .arg("patch-properties")
            .env("KAFKA_EXPOSE_PROPERTIES_FILE", &file)
            .env("KAFKA_EXPOSE_LISTENER_NAME", "EXTERNAL")
            .env("KAFKA_EXPOSE_CONTAINER_PORT", "9095")
            .env("KAFKA_EXPOSE_EXTERNAL_HOST", "198.51.100.4")
            .env("KAFKA_EXPOSE_EXTERNAL_PORT", "32400")
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", stderr(&first));
    let once = std::fs::read_to_string(&file).unwrap();
    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("already present; file unchanged"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), once);
    assert!(
        once.starts_with(
            "# broker\r\nlisteners=CLIENT://:9092,INTERNAL://:9094,EXTERNAL://:9095\r\n"
        ),
        "{once}"
    );
    assert!(once.contains("unrelated=1\r\n"));
    assert!(once.contains(",EXTERNAL:SSL\r\n"));
    assert!(
        once.ends_with("listener.name.external.ssl.keystore.location=/k\r\n"),
        "{once}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn patch_properties_keeps_a_chart_that_has_the_listener_or_its_port_and_exits_0() {
    let dir = std::env::temp_dir().join(format!("kx-cli-taken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("server.properties");
    let message = dir.join("termination-log");
    for (text, says) in [
        (
            "listeners=PLAINTEXT://:9092\n",
            "port 9092 is already bound by its listener PLAINTEXT",
        ),
        (
            "listeners=PLAINTEXT://:9093,EXTERNAL://:9095\nadvertised.listeners=PLAINTEXT://k:9093,EXTERNAL://203.0.113.9:31190\n",
            "listener EXTERNAL is already in it (EXTERNAL://:9095)",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let _ = std::fs::remove_file(&message);
        let out = Command::new(BIN)
            .args(["patch-properties", "--file"])
            .arg(&file)
            .args([
                "--container-port",
                "9092",
                "--advertised-host",
                "h",
                "--advertised-port",
                "1",
                "--termination-message-path",
            ])
            .arg(&message)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
        let said = std::fs::read_to_string(&message).unwrap();
        assert!(
            said.starts_with(kafka_expose::names::KEPT_MARK) && said.contains(says),
            "{said}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(says),
            "the log says it too"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The real step on every form in which a chart can already hold the listener, on both the port
/// kafka-expose chose and another: it exits 0 every time.
#[test]
fn patch_properties_exits_0_on_every_chart_that_already_has_the_listener() {
    let dir = std::env::temp_dir().join(format!("kx-cli-forms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("server.properties");
    for text in support::checks::charts_with_the_listener_present() {
        for port in ["9095", "9096"] {
            std::fs::write(&file, &text).unwrap();
            let out = Command::new(BIN)
                .args(["patch-properties", "--file"])
                .arg(&file)
                .args([
                    "--container-port",
                    port,
                    "--advertised-host",
                    "10.0.0.5",
                    "--advertised-port",
                    "32401",
                    "--termination-message-path",
                ])
                .arg(dir.join("termination-log"))
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "port {port} on:\n{text}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn certs_writes_a_ca_and_a_serving_pair_for_the_service_and_prints_the_ca_bundle() {
    use base64::Engine as _;
    let dir = std::env::temp_dir().join(format!("kx-certs-{}", std::process::id()));
    let out = Command::new(BIN)
        .args([
            "certs",
            "--service-name",
            "kx",
            "--service-namespace",
            "ops",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    let bundle = String::from_utf8(out.stdout).unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .unwrap();
    assert_eq!(decoded, ca.as_bytes(), "the printed caBundle is the CA");
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("ca.crt"))
        .arg(dir.join("tls.crt"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(dir.join("tls.crt"))
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&text.stdout);
    for name in [
        "DNS:kx.ops.svc",
        "DNS:kx.ops.svc.cluster.local",
        "DNS:localhost",
        "IP Address:127.0.0.1",
    ] {
        assert!(sans.contains(name), "{name} in {sans}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the key is private");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CRD the manifests and the chart ship is the one the types generate, byte for byte; a
/// change to `src/api` without `kafka-expose crd > deploy/manifests/crd.yaml` and
/// `kafka-expose crd --chart > deploy/helm/kafka-expose/templates/crd.yaml` fails here.
#[test]
fn the_shipped_crd_is_the_generated_one() {
    let root = env!("CARGO_MANIFEST_DIR");
    for (args, file) in [
        (&["crd"][..], "deploy/manifests/crd.yaml"),
        (
            &["crd", "--chart"][..],
            "deploy/helm/kafka-expose/templates/crd.yaml",
        ),
    ] {
        let out = run_with_stdin(args, "");
        assert!(out.status.success(), "{}", stderr(&out));
        let shipped = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            shipped,
            "{file} is not what `kafka-expose {}` prints; regenerate it",
            args.join(" ")
        );
    }
}
