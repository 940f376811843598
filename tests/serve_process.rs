//! `kafka-expose serve` as a process: the one-command start, the admin port, and SIGTERM under
//! load.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::https::{KeepAlive, review, trusting};
use support::net::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-expose");

struct Server {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
    admin: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `serve --dev-certs` on a machine with no cluster: no KUBECONFIG, an empty HOME.
fn start(tag: &str, grace: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("kx-serve-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, admin) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--dev-certs", "--cert-dir"])
        .arg(dir.join("certs"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--shutdown-grace", grace, "--log-format", "json"])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", &dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let s = Server {
        child,
        dir,
        port,
        admin,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(s.admin, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// A plain HTTP GET on the admin port: status and body.
fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn review_body() -> Vec<u8> {
    let pod = support::https::exposed_broker_pod();
    serde_json::to_vec(&review("readme", "", "Pod", "CREATE", &pod)).unwrap()
}

#[test]
fn serve_dev_certs_without_a_cluster_answers_curl_with_the_generated_ca() {
    let srv = start("curl", "1s");
    let review_file = srv.dir.join("review.json");
    std::fs::write(&review_file, review_body()).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(srv.dir.join("certs/ca.crt"))
        .args(["-H", "Content-Type: application/json", "--data"])
        .arg(format!("@{}", review_file.display()))
        .arg(format!("https://localhost:{}/mutate", srv.port))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (resp, patch) = support::https::response_of(&out.stdout);
    assert_eq!(resp["uid"], "readme");
    assert_eq!(resp["allowed"], true);
    assert!(patch.unwrap().as_array().unwrap().len() > 3);

    let empty = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(srv.dir.join("certs/ca.crt"))
        .args(["-X", "POST", "--data", ""])
        .arg(format!("https://localhost:{}/mutate", srv.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&empty.stdout), "400");

    let (status, metrics) = get(srv.admin, "/metrics");
    assert_eq!(status, 200);
    for series in [
        "kafka_expose_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",outcome=\"patched\"} 1",
        "kafka_expose_admission_duration_seconds_bucket{le=\"0.0001\"}",
        "kafka_expose_admission_warnings_total 1",
        "kafka_expose_certificate_reloads_total 0",
        "kafka_expose_http_rejected_requests_total{reason=\"empty body\"} 1",
    ] {
        assert!(metrics.contains(series), "missing {series} in:\n{metrics}");
    }
    assert_eq!(get(srv.admin, "/livez"), (200, "ok".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_request_flips_readiness_and_exits_zero() {
    let mut srv = start("term", "3s");
    support::https::install_provider();
    let ca = std::fs::read_to_string(srv.dir.join("certs/ca.crt")).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", srv.port).parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut loaders = Vec::new();
    for _ in 0..4 {
        let (stop, ca) = (stop.clone(), ca.clone());
        loaders.push(tokio::spawn(async move {
            let mut client = KeepAlive::new(trusting(&ca), addr);
            let body = review_body();
            let (mut ok, mut failed) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match client.post("/mutate", &body).await {
                    Ok(a) if a.status == 200 => ok += 1,
                    Ok(a) => failed.push(format!("status {}", a.status)),
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed, client.reconnects)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kill = Command::new("kill")
        .args(["-TERM", &srv.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The endpoints controller stops sending once readiness fails; the test does the same.
    let admin = srv.admin;
    let flipped = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if get(admin, "/readyz").0 == 503 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed, mut reconnects) = (0, Vec::new(), 0);
    for l in loaders {
        let (o, f, r) = l.await.unwrap();
        ok += o;
        failed.extend(f);
        reconnects += r;
    }
    assert!(flipped, "readiness turned false after SIGTERM");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 20, "load ran: {ok}");
    assert!(reconnects > 4, "draining told keep-alive clients to close");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(srv.dir.join("serve.log")).unwrap();
    assert!(log.contains("no cluster credentials"), "{log}");
    assert!(
        log.contains("\"uid\":\"readme\""),
        "admissions are logged with their uid: {log}"
    );
}
