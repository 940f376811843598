//! `kafka-expose check` run as a user runs it, against librdkafka's mock Kafka cluster (from
//! Debian's kcat, a peer nobody here wrote) and against fake brokers built on the
//! `kafka-protocol` crate, one for each way exposure fails. Every case reads the exit status,
//! the JSON report and the text report.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::kafka::{self, Advertised, Behaviour, FakeBroker};
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_kafka-expose");
const LOCAL: &str = "127.0.0.1";

struct Run {
    code: i32,
    json: Value,
    text: String,
    stderr: String,
    took: Duration,
}

/// Runs `check` twice, for JSON and for text, with these arguments.
async fn check(args: &[&str]) -> Run {
    let started = Instant::now();
    let json = tokio::process::Command::new(BIN)
        .arg("check")
        .args(args)
        .args(["-o", "json"])
        .env_remove("KAFKA_EXPOSE_SASL_PASSWORD")
        .output()
        .await
        .unwrap();
    let took = started.elapsed();
    let text = tokio::process::Command::new(BIN)
        .arg("check")
        .args(args)
        .env_remove("KAFKA_EXPOSE_SASL_PASSWORD")
        .output()
        .await
        .unwrap();
    assert_eq!(json.status.code(), text.status.code(), "both forms agree");
    let stdout = String::from_utf8_lossy(&json.stdout).to_string();
    Run {
        code: json.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")),
        text: String::from_utf8_lossy(&text.stdout).to_string(),
        stderr: String::from_utf8_lossy(&json.stderr).to_string(),
        took,
    }
}

fn bootstrap(r: &Run) -> &Value {
    &r.json["targets"][0]["bootstrap"]
}

fn brokers(r: &Run) -> &Vec<Value> {
    r.json["targets"][0]["brokers"].as_array().unwrap()
}

fn broker(r: &Run, id: i64) -> &Value {
    brokers(r)
        .iter()
        .find(|b| b["node_id"] == id)
        .unwrap_or_else(|| panic!("broker {id} in {}", r.json))
}

fn shared(list: Vec<Advertised>) -> Arc<Mutex<Vec<Advertised>>> {
    Arc::new(Mutex::new(list))
}

/// Two fake brokers, each advertising itself.
async fn two_brokers(configure: impl Fn(&mut Behaviour)) -> (FakeBroker, FakeBroker) {
    let adv = shared(Vec::new());
    let mut b0 = Behaviour::new(0, adv.clone());
    configure(&mut b0);
    let mut b1 = Behaviour::new(1, adv.clone());
    configure(&mut b1);
    let (f0, f1) = (kafka::start(b0).await, kafka::start(b1).await);
    *adv.lock().unwrap() = vec![(0, LOCAL.into(), f0.port), (1, LOCAL.into(), f1.port)];
    (f0, f1)
}

fn port_nobody_listens_on() -> u16 {
    support::net::free_port()
}

#[tokio::test]
#[cfg_attr(
    not(feature = "e2e"),
    ignore = "needs kcat, which ./tests/run.sh installs (the e2e feature)"
)]
async fn librdkafkas_mock_cluster_has_three_reachable_brokers_and_exits_zero() {
    let tools = std::env::var("KAFKA_EXPOSE_TOOLS")
        .expect("KAFKA_EXPOSE_TOOLS: run ./tests/run.sh, which installs kcat");
    let mut kcat = tokio::process::Command::new(format!("{tools}/kcat"))
        .args([
            "-X",
            "test.mock.num.brokers=3",
            "-b",
            "localhost:1",
            "-C",
            "-t",
            "probe",
            "-d",
            "broker",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kcat");
    // Its log names the mock bootstrap: "Mock cluster enabled: ... replaced with h:p,h:p,h:p".
    let mut lines = BufReader::new(kcat.stderr.take().unwrap()).lines();
    let bootstrap = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.find("replaced with ") {
                return line[i + "replaced with ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string();
            }
        }
        panic!("kcat ended without naming the mock bootstrap")
    })
    .await
    .expect("kcat names its mock bootstrap");
    // Keep draining its log so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let r = check(&["--bootstrap", &bootstrap]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.text, r.stderr);
    assert_eq!(r.json["ok"], true);
    assert_eq!(brokers(&r).len(), 3, "{}", r.json);
    for b in brokers(&r) {
        assert_eq!(b["reachable"], true, "{b}");
        assert_eq!(b["ok"], true, "{b}");
        assert!(b["rtt_ms"].as_f64().is_some(), "{b}");
        assert!(
            bootstrap.contains(b["advertised"].as_str().unwrap()),
            "the mock advertises its own loopback listeners: {b}"
        );
    }
    assert!(r.text.contains("OK: every broker answers"), "{}", r.text);
    assert_eq!(
        r.text
            .lines()
            .filter(|l| l.contains("  ok   broker"))
            .count(),
        3,
        "{}",
        r.text
    );
    kcat.kill().await.ok();
}

#[tokio::test]
async fn every_broker_answering_as_itself_exits_zero_with_each_identity_confirmed() {
    let (f0, _f1) = two_brokers(|_| {}).await;
    let r = check(&["--bootstrap", &format!("{LOCAL}:{}", f0.port)]).await;
    assert_eq!(r.code, 0, "{}", r.text);
    for id in [0, 1] {
        let b = broker(&r, id);
        assert_eq!(b["identity"], "confirmed", "{b}");
        assert_eq!(b["answered_node_id"], id, "{b}");
    }
    assert_eq!(bootstrap(&r)["cluster_id"], "fake-cluster");
    assert!(r.text.contains("as itself"), "{}", r.text);
}

#[tokio::test]
async fn a_broker_advertising_an_address_where_nothing_listens_is_refused_there() {
    let adv = shared(Vec::new());
    let f0 = kafka::start(Behaviour::new(0, adv.clone())).await;
    let dead = port_nobody_listens_on();
    *adv.lock().unwrap() = vec![(0, LOCAL.into(), f0.port), (1, LOCAL.into(), dead)];
    let r = check(&["--bootstrap", &format!("{LOCAL}:{}", f0.port)]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.json["ok"], false);
    assert_eq!(broker(&r, 0)["ok"], true);
    let b1 = broker(&r, 1);
    assert_eq!(b1["reachable"], false);
    assert_eq!(b1["problem"]["kind"], "connection-refused", "{b1}");
    let line = r.text.lines().find(|l| l.contains("broker 1")).unwrap();
    assert!(
        line.contains("FAIL")
            && line.contains(&format!(":{dead}"))
            && line.contains("connection refused"),
        "{line}"
    );
    assert!(r.text.contains("FAIL: 1 of 2 brokers"), "{}", r.text);
}

#[tokio::test]
async fn a_broker_advertising_another_brokers_address_is_answered_by_the_wrong_node() {
    let adv = shared(Vec::new());
    let f0 = kafka::start(Behaviour::new(0, adv.clone())).await;
    let _f1 = kafka::start(Behaviour::new(1, adv.clone())).await;
    // Node 1 advertises node 0's port: a copy-paste slip in a per-broker override.
    *adv.lock().unwrap() = vec![(0, LOCAL.into(), f0.port), (1, LOCAL.into(), f0.port)];
    let r = check(&["--bootstrap", &format!("{LOCAL}:{}", f0.port)]).await;
    assert_eq!(r.code, 1);
    let b1 = broker(&r, 1);
    assert_eq!(b1["reachable"], true, "{b1}");
    assert_eq!(b1["identity"], "wrong-node");
    assert_eq!(b1["answered_node_id"], 0);
    assert_eq!(b1["problem"]["kind"], "wrong-node");
    assert_eq!(broker(&r, 0)["ok"], true);
    let line = r.text.lines().find(|l| l.contains("broker 1")).unwrap();
    assert!(
        line.contains("FAIL") && line.contains("node 0 answers"),
        "{line}"
    );
}

#[tokio::test]
async fn a_bootstrap_that_refuses_connections_fails_with_no_broker_list() {
    let dead = port_nobody_listens_on();
    let r = check(&["--bootstrap", &format!("{LOCAL}:{dead}")]).await;
    assert_eq!(r.code, 1);
    let boot = bootstrap(&r);
    assert_eq!(boot["problem"]["kind"], "connection-refused", "{boot}");
    assert!(brokers(&r).is_empty());
    assert!(
        r.text.contains("bootstrap") && r.text.contains("connection refused"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn the_next_bootstrap_address_is_tried_when_the_first_refuses() {
    let (f0, _f1) = two_brokers(|_| {}).await;
    let dead = port_nobody_listens_on();
    let r = check(&[
        "--bootstrap",
        &format!("{LOCAL}:{dead},{LOCAL}:{}", f0.port),
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.text);
    let boot = bootstrap(&r);
    assert_eq!(boot["answered_by"], format!("{LOCAL}:{}", f0.port));
    assert_eq!(boot["failures"][0]["problem"]["kind"], "connection-refused");
}

#[tokio::test]
async fn a_broker_that_accepts_and_never_answers_ends_within_the_timeout() {
    let adv = shared(Vec::new());
    let f0 = kafka::start(Behaviour::new(0, adv.clone())).await;
    let mut silent = Behaviour::new(1, adv.clone());
    silent.silent = true;
    let f1 = kafka::start(silent).await;
    *adv.lock().unwrap() = vec![(0, LOCAL.into(), f0.port), (1, LOCAL.into(), f1.port)];
    let r = check(&[
        "--bootstrap",
        &format!("{LOCAL}:{}", f0.port),
        "--request-timeout",
        "1s",
    ])
    .await;
    assert_eq!(r.code, 1);
    assert!(r.took < Duration::from_secs(8), "bounded: {:?}", r.took);
    let b1 = broker(&r, 1);
    assert_eq!(b1["problem"]["kind"], "request-timeout", "{b1}");
    assert!(r.text.contains("went silent"), "{}", r.text);

    // A silent bootstrap ends too.
    let r = check(&[
        "--bootstrap",
        &format!("{LOCAL}:{}", f1.port),
        "--request-timeout",
        "500ms",
    ])
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(bootstrap(&r)["problem"]["kind"], "request-timeout");
}

#[tokio::test]
async fn sasl_plain_rejected_at_one_broker_is_that_brokers_verdict_and_no_password_is_shown() {
    let adv = shared(Vec::new());
    let mut b0 = Behaviour::new(0, adv.clone());
    b0.plain = Some(("alice".into(), "s3cret-Pw".into()));
    let mut b1 = Behaviour::new(1, adv.clone());
    b1.plain = Some(("alice".into(), "another-pw".into()));
    let (f0, f1) = (kafka::start(b0).await, kafka::start(b1).await);
    *adv.lock().unwrap() = vec![(0, LOCAL.into(), f0.port), (1, LOCAL.into(), f1.port)];
    let dir = support::serve::scratch("check-sasl");
    let pw = dir.join("password");
    std::fs::write(&pw, "s3cret-Pw\n").unwrap();
    let r = check(&[
        "--bootstrap",
        &format!("{LOCAL}:{}", f0.port),
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-mechanism",
        "PLAIN",
        "--sasl-username",
        "alice",
        "--sasl-password-file",
        pw.to_str().unwrap(),
    ])
    .await;
    assert_eq!(r.code, 1, "{}", r.text);
    assert_eq!(broker(&r, 0)["ok"], true, "{}", r.json);
    let b1 = broker(&r, 1);
    assert_eq!(b1["problem"]["kind"], "sasl-rejected", "{b1}");
    assert!(
        b1["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid username or password"),
        "{b1}"
    );
    for out in [&r.text, &r.stderr, &r.json.to_string()] {
        assert!(
            !out.contains("s3cret-Pw"),
            "the password is never printed: {out}"
        );
    }

    // A wrong password at the bootstrap: no broker list, and the reason.
    let r = tokio::process::Command::new(BIN)
        .args([
            "check",
            "--bootstrap",
            &format!("{LOCAL}:{}", f0.port),
            "-o",
            "json",
        ])
        .args([
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-username",
            "alice",
        ])
        .env("KAFKA_EXPOSE_SASL_PASSWORD", "wrong")
        .output()
        .await
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(
        json["targets"][0]["bootstrap"]["problem"]["kind"],
        "sasl-rejected"
    );
}

#[tokio::test]
async fn tls_with_a_certificate_for_another_name_fails_that_broker_and_says_which_names_it_carries()
{
    let good = kafka_expose::certs::generate(&["localhost".to_string()]).unwrap();
    // A second certificate, from its own CA, for another name; trusted through the same file.
    let other = kafka_expose::certs::generate(&["other.example".to_string()]).unwrap();
    let dir = support::serve::scratch("check-tls");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, format!("{}{}", good.ca_pem, other.ca_pem)).unwrap();

    let adv = shared(Vec::new());
    let mut b0 = Behaviour::new(0, adv.clone());
    b0.tls = Some(kafka::server_tls(&good.cert_pem, &good.key_pem));
    let mut b1 = Behaviour::new(1, adv.clone());
    b1.tls = Some(kafka::server_tls(&other.cert_pem, &other.key_pem));
    let (f0, f1) = (kafka::start(b0).await, kafka::start(b1).await);
    *adv.lock().unwrap() = vec![
        (0, "localhost".into(), f0.port),
        (1, "localhost".into(), f1.port),
    ];
    let boot = format!("localhost:{}", f0.port);

    let r = check(&[
        "--bootstrap",
        &boot,
        "--security-protocol",
        "SSL",
        "--ca-file",
        ca.to_str().unwrap(),
    ])
    .await;
    assert_eq!(r.code, 1, "{}", r.text);
    let b0 = broker(&r, 0);
    assert_eq!(b0["ok"], true, "{b0}");
    assert_eq!(b0["tls"]["names_host"], true);
    assert_eq!(b0["tls"]["verified"], true);
    let b1 = broker(&r, 1);
    assert_eq!(b1["problem"]["kind"], "tls-name-mismatch", "{b1}");
    let msg = b1["problem"]["message"].as_str().unwrap();
    assert_eq!(
        msg, "the certificate does not name localhost (it names other.example, 127.0.0.1)",
        "the names as a person writes them"
    );

    // Skipping verification connects, says so, and still reports the name.
    let r = check(&[
        "--bootstrap",
        &boot,
        "--security-protocol",
        "SSL",
        "--insecure-skip-tls-verify",
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.text);
    let b1 = broker(&r, 1);
    assert_eq!(b1["tls"]["names_host"], false, "{b1}");
    assert_eq!(
        b1["tls"]["presented"],
        serde_json::json!(["other.example", "127.0.0.1"]),
        "{b1}"
    );
    assert_eq!(b1["tls"]["verified"], false);
    assert!(r.stderr.contains("not verified"), "{}", r.stderr);
    assert!(r.text.contains("does NOT name the host"), "{}", r.text);

    // Untrusted: the CA file does not hold the issuer.
    let only_other = dir.join("other-ca.pem");
    std::fs::write(&only_other, &other.ca_pem).unwrap();
    let r = check(&[
        "--bootstrap",
        &boot,
        "--security-protocol",
        "SSL",
        "--ca-file",
        only_other.to_str().unwrap(),
    ])
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(bootstrap(&r)["problem"]["kind"], "tls-untrusted");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_named() {
    let adv = shared(Vec::new());
    let f0 = kafka::start(Behaviour::new(0, adv.clone())).await;
    *adv.lock().unwrap() = vec![
        (0, LOCAL.into(), f0.port),
        (1, "kafka-1.invalid".into(), 9094),
    ];
    let r = check(&["--bootstrap", &format!("{LOCAL}:{}", f0.port)]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        broker(&r, 1)["problem"]["kind"],
        "name-not-resolved",
        "{}",
        r.json
    );
}

#[tokio::test]
async fn bad_flags_exit_two_with_the_reason() {
    let out = tokio::process::Command::new(BIN)
        .args(["check", "--bootstrap", "no-port-here"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("host:port"));
    let out = tokio::process::Command::new(BIN)
        .args([
            "check",
            "--bootstrap",
            "h:1",
            "--security-protocol",
            "SASL_SSL",
        ])
        .env_remove("KAFKA_EXPOSE_SASL_USERNAME")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sasl-username"));
}

#[tokio::test]
async fn scram_sha_256_and_512_authenticate_and_a_wrong_password_is_rejected() {
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let (f0, _f1) = two_brokers(|b| {
            b.scram = Some((mechanism, "svc-user".into(), "Scram-Pw-1".into()));
        })
        .await;
        let boot = format!("{LOCAL}:{}", f0.port);
        let args = |pw: &'static str| {
            let boot = boot.clone();
            async move {
                tokio::process::Command::new(BIN)
                    .args(["check", "--bootstrap", &boot, "-o", "json"])
                    .args([
                        "--security-protocol",
                        "SASL_PLAINTEXT",
                        "--sasl-mechanism",
                        mechanism,
                    ])
                    .args(["--sasl-username", "svc-user"])
                    .env("KAFKA_EXPOSE_SASL_PASSWORD", pw)
                    .output()
                    .await
                    .unwrap()
            }
        };
        let ok = args("Scram-Pw-1").await;
        let json: Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(ok.status.code(), Some(0), "{mechanism}: {json}");
        assert_eq!(json["targets"][0]["brokers"].as_array().unwrap().len(), 2);

        let bad = args("wrong").await;
        assert_eq!(bad.status.code(), Some(1), "{mechanism}");
        let json: Value = serde_json::from_slice(&bad.stdout).unwrap();
        assert_eq!(
            json["targets"][0]["bootstrap"]["problem"]["kind"], "sasl-rejected",
            "{mechanism}: {json}"
        );
    }

    // A mechanism the broker does not offer is named, with the ones it does.
    let (f0, _f1) = two_brokers(|b| {
        b.scram = Some(("SCRAM-SHA-512", "u".into(), "p".into()));
    })
    .await;
    let out = tokio::process::Command::new(BIN)
        .args(["check", "--bootstrap", &format!("{LOCAL}:{}", f0.port)])
        .args([
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-mechanism",
            "SCRAM-SHA-256",
        ])
        .args(["--sasl-username", "u"])
        .env("KAFKA_EXPOSE_SASL_PASSWORD", "p")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("does not offer SASL SCRAM-SHA-256 (it offers SCRAM-SHA-512)"),
        "{text}"
    );
}

#[tokio::test]
async fn sasl_ssl_authenticates_inside_tls() {
    let pair = kafka_expose::certs::generate(&["localhost".to_string()]).unwrap();
    let dir = support::serve::scratch("check-sasl-ssl");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pair.ca_pem).unwrap();
    let adv = shared(Vec::new());
    let mut b = Behaviour::new(0, adv.clone());
    b.tls = Some(kafka::server_tls(&pair.cert_pem, &pair.key_pem));
    b.plain = Some(("alice".into(), "pw".into()));
    let f0 = kafka::start(b).await;
    *adv.lock().unwrap() = vec![(0, "localhost".into(), f0.port)];
    let out = tokio::process::Command::new(BIN)
        .args([
            "check",
            "--bootstrap",
            &format!("localhost:{}", f0.port),
            "-o",
            "json",
        ])
        .args([
            "--security-protocol",
            "SASL_SSL",
            "--ca-file",
            ca.to_str().unwrap(),
        ])
        .args(["--sasl-username", "alice"])
        .env("KAFKA_EXPOSE_SASL_PASSWORD", "pw")
        .output()
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{json}");
    let b0 = &json["targets"][0]["brokers"][0];
    assert_eq!(b0["tls"]["names_host"], true, "{b0}");
    assert_eq!(b0["identity"], "confirmed");
}

/// Brokers behind a Gateway (`expose: gateway`) advertise names that need not resolve where the
/// check runs: `--connect-to` dials every one of them at the Gateway's address, keeping each
/// name for SNI and for the certificate check, which stays on.
#[tokio::test]
async fn connect_to_dials_every_name_at_one_address_and_verifies_each_name() {
    let names = ["kafka-0.gw.example.invalid", "kafka-1.gw.example.invalid"];
    let pairs: Vec<_> = names
        .iter()
        .map(|n| kafka_expose::certs::generate(&[n.to_string()]).unwrap())
        .collect();
    let dir = support::serve::scratch("check-connect-to");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, format!("{}{}", pairs[0].ca_pem, pairs[1].ca_pem)).unwrap();
    let adv = shared(Vec::new());
    let mut b0 = Behaviour::new(0, adv.clone());
    b0.tls = Some(kafka::server_tls(&pairs[0].cert_pem, &pairs[0].key_pem));
    let mut b1 = Behaviour::new(1, adv.clone());
    b1.tls = Some(kafka::server_tls(&pairs[1].cert_pem, &pairs[1].key_pem));
    let (f0, f1) = (kafka::start(b0).await, kafka::start(b1).await);
    *adv.lock().unwrap() = vec![(0, names[0].into(), f0.port), (1, names[1].into(), f1.port)];
    let boot = format!("{}:{}", names[0], f0.port);
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "--bootstrap".to_string(),
            boot.clone(),
            "--security-protocol".into(),
            "SSL".into(),
            "--ca-file".into(),
            ca.to_str().unwrap().into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // Without it, the names do not resolve.
    let plain = args(&[]);
    let r = check(&plain.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(r.code, 1, "{}", r.text);
    assert_eq!(
        bootstrap(&r)["problem"]["kind"],
        "name-not-resolved",
        "{}",
        r.text
    );
    let via = args(&["--connect-to", "127.0.0.1"]);
    let r = check(&via.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(r.code, 0, "{}", r.text);
    for id in [0, 1] {
        let b = broker(&r, id);
        assert_eq!(b["ok"], true, "{b}");
        assert_eq!(b["tls"]["names_host"], true, "{b}");
        assert_eq!(b["tls"]["verified"], true, "{b}");
    }
}
