//! Load on the real webhook over TLS, against a null HTTPS server built with the same stack
//! (tokio, rustls with the same certificate store, hyper-util, TCP_NODELAY) that reads each body
//! and answers a fixed `allowed` review without parsing. Both run as separate processes on this
//! machine, measured in the same run; the ratios are the result.
//!
//! Two requests, each sent to both servers:
//! - the UPDATE of an unrelated three-container Deployment with its `oldObject` (what every
//!   workload change in the cluster costs);
//! - an exposed apache/kafka broker pod's CREATE, which the real server answers with a patch.
//!
//! For each: keep-alive throughput over 16 connections and its p99; one connection sending one
//! request at a time, its median. Then, for the pod: a new connection per request (median and
//! p99, handshake included); the peak RSS of each server process (VmHWM); and the 1,500-env pod's
//! median on one connection.
//!
//! Run: `cargo bench --bench load`. The report is printed and written to
//! `target/bench-load.md`.

#[path = "../tests/support/net.rs"]
mod net;
#[path = "support/reviews.rs"]
// The Binding reviews need the cluster's caches, which a server without a cluster has not:
// they are measured in-process by the engine benchmark.
#[allow(dead_code)]
mod reviews;

use net::free_port;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const CONNECTIONS: usize = 16;
const KEEPALIVE_FOR: Duration = Duration::from_secs(4);
const NEW_CONNECTIONS: usize = 300;

/// The null server, run when this binary is started with `KX_NULL_SERVER=port`.
fn null_server(port: u16, cert: &str, key: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let store = kafka_expose::webhook::tls::CertStore::load(cert.as_ref(), key.as_ref()).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(kafka_expose::webhook::tls::server_config(store).unwrap());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let answer = Bytes::from_static(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true,"status":{}}}"#,
        );
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let acceptor = acceptor.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(answer))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
}

struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

fn pod(extra_env: usize) -> Value {
    let mut env = vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092,CONTROLLER://:9093"}),
        json!({"name": "KAFKA_ADVERTISED_LISTENERS", "value": "PLAINTEXT://$(POD_NAME).kafka-headless:9092"}),
        json!({"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "value": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"}),
        json!({"name": "KAFKA_CONTROLLER_LISTENER_NAMES", "value": "CONTROLLER"}),
    ];
    for i in 0..extra_env {
        env.push(json!({"name": format!("APP_SETTING_{i}"), "value": format!("value-{i}")}));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kafka-0", "namespace": "kafka",
                     "annotations": {"kafka-expose.io/expose": "nodeport"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "kafka", "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "broker", "image": "apache/kafka:3.9.1", "env": env}]}
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(cfg: Arc<ClientConfig>, addr: SocketAddr) -> Sender {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn post(sender: &mut Sender, body: &Bytes) {
    sender.ready().await.unwrap();
    let req = hyper::Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Figures {
    rps: f64,
    p99: Duration,
    /// One connection, one request at a time.
    single_median: Duration,
}

async fn keep_alive(cfg: Arc<ClientConfig>, addr: SocketAddr, body: Bytes) -> (f64, Duration) {
    // Warm up.
    let mut s = connect(cfg.clone(), addr).await;
    for _ in 0..200 {
        post(&mut s, &body).await;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (cfg, body) = (cfg.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(cfg, addr).await;
            let mut lat = Vec::new();
            while start.elapsed() < KEEPALIVE_FOR {
                let t = Instant::now();
                post(&mut s, &body).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / elapsed, percentile(&all, 0.99))
}

async fn new_connections(
    cfg: Arc<ClientConfig>,
    addr: SocketAddr,
    body: Bytes,
) -> (Duration, Duration) {
    let mut lat = Vec::new();
    for _ in 0..NEW_CONNECTIONS {
        let t = Instant::now();
        let mut s = connect(cfg.clone(), addr).await;
        post(&mut s, &body).await;
        lat.push(t.elapsed());
    }
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

/// The median of `n` requests sent one at a time on one connection.
async fn single(cfg: Arc<ClientConfig>, addr: SocketAddr, body: &Bytes, n: usize) -> Duration {
    let mut s = connect(cfg, addr).await;
    let mut lat = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        post(&mut s, body).await;
        lat.push(t.elapsed());
    }
    lat.sort();
    percentile(&lat, 0.5)
}

async fn figures(cfg: Arc<ClientConfig>, addr: SocketAddr, body: Bytes) -> Figures {
    let (rps, p99) = keep_alive(cfg.clone(), addr, body.clone()).await;
    let single_median = single(cfg, addr, &body, 1000).await;
    Figures {
        rps,
        p99,
        single_median,
    }
}

fn wait_tls(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if let Ok(spec) = std::env::var("KX_NULL_SERVER") {
        let mut parts = spec.splitn(3, ',');
        let port = parts.next().unwrap().parse().unwrap();
        null_server(port, parts.next().unwrap(), parts.next().unwrap());
        return;
    }
    // `cargo test --all-targets` runs benchmark binaries without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("kx-bench-{}", std::process::id()));
    let bundle = kafka_expose::certs::generate(&kafka_expose::certs::dns_names(
        "kafka-expose",
        "kafka-expose",
    ))
    .unwrap();
    kafka_expose::certs::write(&dir, &bundle).unwrap();
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");

    let (real_port, admin_port, null_port) = (free_port(), free_port(), free_port());
    let real = Proc {
        child: Command::new(env!("CARGO_BIN_EXE_kafka-expose"))
            .args(["serve", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .args(["--listen", &format!("127.0.0.1:{real_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--log-format", "json"])
            .env_remove("KUBECONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        addr: format!("127.0.0.1:{real_port}").parse().unwrap(),
    };
    let null = Proc {
        child: Command::new(std::env::current_exe().unwrap())
            .env(
                "KX_NULL_SERVER",
                format!("{null_port},{},{}", cert.display(), key.display()),
            )
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        addr: format!("127.0.0.1:{null_port}").parse().unwrap(),
    };
    wait_tls(real.addr);
    wait_tls(null.addr);

    let mut roots = RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(bundle.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let small = Bytes::from(reviews::pod_create(&pod(0)));
    let big = Bytes::from(reviews::pod_create(&pod(1500)));
    let unrelated = Bytes::from(reviews::deployment_update());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let m = rt.block_on(async {
        // Null and real alternate, so that drift on a shared machine hits both alike.
        let null_dep = figures(cfg.clone(), null.addr, unrelated.clone()).await;
        let real_dep = figures(cfg.clone(), real.addr, unrelated.clone()).await;
        let null_pod = figures(cfg.clone(), null.addr, small.clone()).await;
        let real_pod = figures(cfg.clone(), real.addr, small.clone()).await;
        let null_new = new_connections(cfg.clone(), null.addr, small.clone()).await;
        let real_new = new_connections(cfg.clone(), real.addr, small.clone()).await;
        let big_median = single(cfg.clone(), real.addr, &big, 300).await;
        (
            null_dep, real_dep, null_pod, real_pod, null_new, real_new, big_median,
        )
    });
    let (null_dep, real_dep, null_pod, real_pod, null_new, real_new, big_median) = m;
    let (rss_real, rss_null) = (real.peak_rss_kib(), null.peak_rss_kib());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();

    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {cpus} cores ({model}); client and both servers share it.\n\n"
    ));
    out.push_str(
        "| measure | null server | kafka-expose | ratio | goal |\n|---|---:|---:|---:|---|\n",
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    for (what, n, r, goal_rps, goal_p50) in [
        (
            "unrelated Deployment UPDATE",
            &null_dep,
            &real_dep,
            "≥ 0.80",
            "≤ 1.3",
        ),
        (
            "exposed broker pod CREATE",
            &null_pod,
            &real_pod,
            "≥ 0.50",
            "",
        ),
    ] {
        out.push_str(&format!(
            "| {what}: keep-alive throughput, {CONNECTIONS} connections | {:.0} req/s | {:.0} req/s | {:.2} | {goal_rps} |\n",
            n.rps, r.rps, r.rps / n.rps
        ));
        out.push_str(&format!(
            "| {what}: keep-alive p99 | {} | {} | {:.2} | |\n",
            ms(n.p99),
            ms(r.p99),
            ratio(r.p99, n.p99)
        ));
        out.push_str(&format!(
            "| {what}: one connection, median | {} | {} | {:.2} | {goal_p50} |\n",
            ms(n.single_median),
            ms(r.single_median),
            ratio(r.single_median, n.single_median)
        ));
    }
    out.push_str(&format!(
        "| exposed broker pod: new connection per request, median | {} | {} | {:.2} | |\n",
        ms(null_new.0),
        ms(real_new.0),
        ratio(real_new.0, null_new.0)
    ));
    out.push_str(&format!(
        "| exposed broker pod: new connection per request, p99 | {} | {} | {:.2} | |\n",
        ms(null_new.1),
        ms(real_new.1),
        ratio(real_new.1, null_new.1)
    ));
    out.push_str(&format!(
        "| peak RSS | {:.1} MB | {:.1} MB | {:.2} | |\n",
        rss_null as f64 / 1024.0,
        rss_real as f64 / 1024.0,
        rss_real as f64 / rss_null.max(1) as f64
    ));
    out.push_str(&format!(
        "| 1,500-env pod: one connection, median | | {} | | ≤ 1 ms |\n",
        ms(big_median)
    ));
    println!("{out}");
    let _ = std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-load.md"),
        &out,
    );
    drop(real);
    drop(null);
    let _ = std::fs::remove_dir_all(&dir);
}
