//! A small HTTPS client for the server tests and reviews built from the fixtures.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client trusting the CA in `ca_pem`.
pub fn trusting(ca_pem: &str) -> Arc<ClientConfig> {
    install_provider();
    let mut roots = RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Accepts any certificate and remembers the last end-entity certificate presented.
#[derive(Debug, Default)]
pub struct Recorder {
    pub last: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.last.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub fn recording(rec: Arc<Recorder>) -> Arc<ClientConfig> {
    install_provider();
    Arc::new(
        ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(rec)
            .with_no_client_auth(),
    )
}

/// One HTTP/1.1 connection over TLS.
pub struct Conn {
    pub sender: SendRequest<Full<Bytes>>,
}

pub async fn connect(cfg: Arc<ClientConfig>, addr: SocketAddr) -> Result<Conn, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    let tls = TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender })
}

/// The answer to a POST.
pub struct Answer {
    pub status: u16,
    pub close: bool,
    pub body: Vec<u8>,
}

impl Conn {
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<Answer, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let req = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let close = resp
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Answer {
            status,
            close,
            body,
        })
    }
}

/// A client that keeps one connection alive, and opens a new one when told to close.
pub struct KeepAlive {
    cfg: Arc<ClientConfig>,
    addr: SocketAddr,
    conn: Option<Conn>,
    pub reconnects: usize,
}

impl KeepAlive {
    pub fn new(cfg: Arc<ClientConfig>, addr: SocketAddr) -> Self {
        Self {
            cfg,
            addr,
            conn: None,
            reconnects: 0,
        }
    }

    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<Answer, String> {
        if self.conn.is_none() {
            self.conn = Some(connect(self.cfg.clone(), self.addr).await?);
            self.reconnects += 1;
        }
        let answer = self.conn.as_mut().unwrap().post(path, body).await;
        match &answer {
            Ok(a) if !a.close => {}
            _ => self.conn = None,
        }
        answer
    }
}

/// A broker pod of an exposed StatefulSet (apache/kafka, env adapter): what a review of a
/// running server is asked about in the process and image tests.
pub fn exposed_broker_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kafka-1", "namespace": "kafka",
                     "annotations": {"kafka-expose.io/expose": "nodeport"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "kafka", "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "broker", "image": "apache/kafka:3.9.1",
                  "env": [{"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092"},
                          {"name": "KAFKA_ADVERTISED_LISTENERS", "value": "PLAINTEXT://kafka-1.h:9092"}]}]}
    })
}

/// An AdmissionReview for `object`.
pub fn review(uid: &str, group: &str, kind: &str, operation: &str, object: &Value) -> Value {
    let resource = format!("{}s", kind.to_ascii_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "namespace": object.pointer("/metadata/namespace").cloned().unwrap_or(json!("kafka")),
            "name": object.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            "operation": operation,
            "userInfo": {"username": "tester"},
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    })
}

/// The response part of an AdmissionReview answer, and its decoded patch.
pub fn response_of(body: &[u8]) -> (Value, Option<Value>) {
    let v: Value = serde_json::from_slice(body).expect("an AdmissionReview");
    let resp = v["response"].clone();
    let patch = resp.get("patch").map(|p| {
        let bytes: Vec<u8> = match p {
            Value::Array(a) => a.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
            Value::String(s) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(s).unwrap()
            }
            other => panic!("unexpected patch encoding {other}"),
        };
        serde_json::from_slice(&bytes).unwrap()
    });
    (resp, patch)
}

/// Waits until `f` is true, up to `limit`.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}
