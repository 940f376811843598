//! Real TLS handshakes against the webhook server.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_expose::certs;
use kafka_expose::config::Settings;
use kafka_expose::webhook::AppState;
use kafka_expose::webhook::admission::FailureMode;
use kafka_expose::webhook::server::{Bound, ServeConfig, serve};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use support::https::{KeepAlive, Recorder, connect, recording, review, trusting};

struct Running {
    bound: Bound,
    metrics: Arc<kafka_expose::metrics::Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    dir: std::path::PathBuf,
    bundle: certs::Bundle,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.task.await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(tag: &str) -> Running {
    support::https::install_provider();
    let dir = std::env::temp_dir().join(format!("kx-tls-{tag}-{}", std::process::id()));
    let bundle = certs::generate(&certs::dns_names("kafka-expose", "kafka-expose")).unwrap();
    certs::write(&dir, &bundle).unwrap();
    let cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        cert_file: dir.join(certs::TLS_CERT),
        key_file: dir.join(certs::TLS_KEY),
        shutdown_grace: Duration::from_millis(200),
        reload_interval: kafka_expose::webhook::tls::RELOAD_INTERVAL,
    };
    let state = AppState::standalone(Settings::default(), FailureMode::Open);
    let metrics = state.metrics.clone();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (bound_tx, bound_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        serve(
            cfg,
            state,
            async move {
                let _ = stop_rx.await;
            },
            move |b| {
                let _ = bound_tx.send(b);
            },
        )
        .await
        .expect("the server runs");
    });
    let bound = bound_rx.await.expect("the server binds");
    Running {
        bound,
        metrics,
        stop: Some(stop_tx),
        task,
        dir,
        bundle,
    }
}

fn pod_review() -> Vec<u8> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kafka-0", "namespace": "kafka",
                     "annotations": {"kafka-expose.io/expose": "nodeport"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "kafka", "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "broker", "image": "apache/kafka:3.9.1",
                  "env": [{"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092"},
                          {"name": "KAFKA_ADVERTISED_LISTENERS", "value": "PLAINTEXT://kafka-0.h:9092"}]}]}
    });
    serde_json::to_vec(&review("tls", "", "Pod", "CREATE", &pod)).unwrap()
}

/// A TLS 1.1 ClientHello with two RSA suites and no extensions.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend([0x00, 0x04, 0x00, 0x2f, 0x00, 0x35]);
    body.extend([0x01, 0x00]);
    let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01, 0x00, hs.len() as u8];
    rec.extend(hs);
    rec
}

#[tokio::test]
async fn a_client_trusting_the_generated_ca_is_answered_and_tls_1_1_is_refused() {
    let srv = start("trust").await;
    let mut conn = connect(trusting(&srv.bundle.ca_pem), srv.bound.webhook)
        .await
        .unwrap();
    let answer = conn.post("/mutate", &pod_review()).await.unwrap();
    assert_eq!(answer.status, 200);
    let (resp, patch) = support::https::response_of(&answer.body);
    assert_eq!(resp["uid"], "tls");
    assert!(patch.is_some());

    let other_ca = certs::generate(&["localhost".into()]).unwrap();
    assert!(
        connect(trusting(&other_ca.ca_pem), srv.bound.webhook)
            .await
            .is_err(),
        "an untrusted CA fails"
    );

    let mut tcp = tokio::net::TcpStream::connect(srv.bound.webhook)
        .await
        .unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut buf = [0u8; 7];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "TLS 1.1 gets an alert or a close, not a ServerHello: {:?}",
        &buf[..n]
    );
    if n >= 7 {
        assert!(
            [40, 70].contains(&buf[6]),
            "the alert is handshake_failure or protocol_version: {}",
            buf[6]
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_rotated_certificate_is_served_within_ten_seconds_and_no_request_fails() {
    let srv = start("rotate").await;
    let old_cert = srv.bundle.cert_pem.clone();
    let addr = srv.bound.webhook;
    let ca = srv.bundle.ca_pem.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut client = KeepAlive::new(trusting(&ca), addr);
            let body = pod_review();
            let (mut ok, mut failed) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match client.post("/mutate", &body).await {
                    Ok(a) if a.status == 200 => ok += 1,
                    Ok(a) => failed.push(format!("status {}", a.status)),
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed, client.reconnects)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new pair, as cert-manager writes it: the certificate first, then the key.
    let new = certs::generate(&certs::dns_names("kafka-expose", "kafka-expose")).unwrap();
    let rotated_at = Instant::now();
    std::fs::write(srv.dir.join(certs::TLS_CERT), &new.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(srv.dir.join(certs::TLS_KEY), &new.key_pem).unwrap();

    let new_der: Vec<u8> =
        rustls_pki_types::pem::PemObject::from_pem_slice(new.cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .unwrap();
    let old_der: Vec<u8> = rustls_pki_types::pem::PemObject::from_pem_slice(old_cert.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    let mut served_new = None;
    while rotated_at.elapsed() < Duration::from_secs(10) {
        let rec = Arc::new(Recorder::default());
        let _ = connect(recording(rec.clone()), addr).await.unwrap();
        let seen = rec.last.lock().unwrap().clone().unwrap();
        if seen == new_der {
            served_new = Some(rotated_at.elapsed());
            break;
        }
        assert_eq!(seen, old_der, "until then the old certificate is served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed, reconnects) = load.await.unwrap();
    assert!(
        served_new.is_some(),
        "the new certificate is served within 10 s"
    );
    assert!(
        failed.is_empty(),
        "{} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 10, "the client kept sending: {ok}");
    assert_eq!(reconnects, 1, "the keep-alive connection was never dropped");
    srv.stop().await;
}

#[tokio::test]
async fn a_new_connection_per_request_is_not_slowed_by_nagle() {
    let srv = start("nagle").await;
    let cfg = trusting(&srv.bundle.ca_pem);
    let body = pod_review();
    let mut times = Vec::new();
    for _ in 0..25 {
        let t = Instant::now();
        let mut c = connect(cfg.clone(), srv.bound.webhook).await.unwrap();
        let a = c.post("/mutate", &body).await.unwrap();
        assert_eq!(a.status, 200);
        times.push(t.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    // Nagle's algorithm with delayed ACKs costs about 40 ms per new connection.
    assert!(median < Duration::from_millis(25), "median {median:?}");
    srv.stop().await;
}

/// A Deployment that has nothing to do with Kafka, as `kubectl apply` leaves it: three
/// containers with env, and the given annotations.
fn web_deployment(annotations: serde_json::Value) -> serde_json::Value {
    let env: Vec<serde_json::Value> = (0..30)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}")}))
        .collect();
    let containers: Vec<serde_json::Value> = ["web", "sidecar", "metrics"]
        .iter()
        .map(|n| json!({"name": n, "image": format!("example/{n}:1.0"), "env": env, "ports": [{"containerPort": 8080}]}))
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "d1", "annotations": annotations,
                     "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}
    })
}

fn update_review(uid: &str, object: &serde_json::Value) -> Vec<u8> {
    let mut r = review(uid, "apps", "Deployment", "UPDATE", object);
    r["request"]["oldObject"] = object.clone();
    serde_json::to_vec(&r).unwrap()
}

#[tokio::test]
async fn reviews_that_cannot_concern_kafka_expose_get_the_same_answer_from_their_bytes() {
    let srv = start("fast").await;
    let mut conn = connect(trusting(&srv.bundle.ca_pem), srv.bound.webhook)
        .await
        .unwrap();
    let fast = || srv.metrics.fast_path.get();

    // An unrelated Deployment UPDATE: answered from the bytes.
    let plain = web_deployment(json!({"team": "web"}));
    let a = conn
        .post("/mutate", &update_review("u1", &plain))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let (mut quick, patch) = support::https::response_of(&a.body);
    assert_eq!(quick["uid"], "u1");
    assert_eq!(quick["allowed"], true);
    assert!(
        patch.is_none() && quick.get("warnings").is_none(),
        "{quick}"
    );
    let envelope: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(envelope["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(envelope["kind"], "AdmissionReview");
    assert_eq!(fast(), 1);

    // The same workload whose only mention of kafka-expose.io/ is in a value: the full decision
    // runs, and its answer is the fast path's, uid aside.
    let mention = web_deployment(json!({"team": "web", "note": "see kafka-expose.io/expose"}));
    let a = conn
        .post("/mutate", &update_review("u2", &mention))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let (mut full, patch) = support::https::response_of(&a.body);
    assert!(patch.is_none());
    assert_eq!(fast(), 1, "a mention in a value takes the full path");
    quick["uid"] = json!("");
    full["uid"] = json!("");
    assert_eq!(quick, full, "the same answer");

    // Malformed bodies are refused as before, whatever they mention.
    for body in [
        &b"{not json"[..],
        &update_review("u3", &plain)[..40],
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    ] {
        let a = conn.post("/mutate", body).await.unwrap();
        assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
        assert!(String::from_utf8_lossy(&a.body).contains("malformed AdmissionReview"));
    }
    assert_eq!(fast(), 1);

    // An exposed workload still gets its full decision.
    let mut sts: serde_json::Value = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["annotations"] = json!({"kafka-expose.io/expose": "nodeport"});
    let body = serde_json::to_vec(&review("u4", "apps", "StatefulSet", "CREATE", &sts)).unwrap();
    let a = conn.post("/mutate", &body).await.unwrap();
    let (resp, patch) = support::https::response_of(&a.body);
    assert_eq!(resp["uid"], "u4");
    assert!(patch.is_some(), "{resp}");
    assert_eq!(fast(), 1);
    srv.stop().await;
}
