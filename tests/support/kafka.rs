//! Fake Kafka brokers for `check`'s tests, built on the `kafka-protocol` crate's broker side:
//! they decode real request frames and encode real responses for ApiVersions, Metadata,
//! DescribeConfigs, SaslHandshake and SaslAuthenticate, as a Kafka broker answers them.
//!
//! Each can be told what to advertise (so that one advertises an address where nothing listens,
//! or another broker's address), to answer DescribeConfigs for its own id only (as Kafka's
//! `ConfigHelper` does), to demand SASL PLAIN with one user, to speak TLS with a given
//! certificate, or to accept connections and never answer.

use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeConfigsRequest, DescribeConfigsResponse,
    MetadataResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// One advertised broker: node id, host, port.
pub type Advertised = (i32, String, u16);

/// How a fake broker behaves.
#[derive(Clone)]
pub struct Behaviour {
    pub node_id: i32,
    pub cluster_id: String,
    /// What Metadata lists; shared, so brokers started later can be added.
    pub advertised: Arc<Mutex<Vec<Advertised>>>,
    /// Accept connections and read, but never answer.
    pub silent: bool,
    /// Demand SASL PLAIN with this user and password.
    pub plain: Option<(String, String)>,
    /// Demand SASL SCRAM (`SCRAM-SHA-256` or `-512`, the mechanism) with this user and password,
    /// verified by an `rsasl` server session from a salted, stored key as a broker keeps it.
    pub scram: Option<(&'static str, String, String)>,
    /// Speak TLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Behaviour {
    pub fn new(node_id: i32, advertised: Arc<Mutex<Vec<Advertised>>>) -> Self {
        Self {
            node_id,
            cluster_id: "fake-cluster".into(),
            advertised,
            silent: false,
            plain: None,
            scram: None,
            tls: None,
        }
    }
}

/// A fake broker listening on loopback.
pub struct FakeBroker {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a broker on a free loopback port.
pub async fn start(b: Behaviour) -> FakeBroker {
    start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), b)
}

/// Starts a broker on `listener`.
pub fn start_on(listener: TcpListener, b: Behaviour) -> FakeBroker {
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let b = b.clone();
            tokio::spawn(async move {
                match b.tls.clone() {
                    Some(cfg) => {
                        if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                            serve(s, &b).await;
                        }
                    }
                    None => serve(tcp, &b).await,
                }
            });
        }
    });
    FakeBroker { port, task }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, b: &Behaviour) {
    let mut authenticated = b.plain.is_none() && b.scram.is_none();
    let mut scram: Option<rsasl::prelude::Session> = None;
    loop {
        let mut size = [0u8; 4];
        if s.read_exact(&mut size).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        if s.read_exact(&mut frame).await.is_err() {
            return;
        }
        if b.silent {
            continue;
        }
        let mut buf = Bytes::from(frame);
        let Ok(header) = kafka_protocol::protocol::decode_request_header_from_buffer(&mut buf)
        else {
            return;
        };
        let v = header.request_api_version;
        let Ok(key) = ApiKey::try_from(header.request_api_key) else {
            return;
        };
        if !authenticated
            && !matches!(
                key,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            )
        {
            // Kafka closes a connection that skips authentication.
            return;
        }
        let out = match key {
            ApiKey::ApiVersions => respond(&header, &api_versions(), 0),
            ApiKey::Metadata => respond(&header, &metadata(b), v),
            ApiKey::DescribeConfigs => {
                let Ok(req) = DescribeConfigsRequest::decode(&mut buf, v) else {
                    return;
                };
                respond(&header, &describe(b, &req), v)
            }
            ApiKey::SaslHandshake => {
                let Ok(req) = SaslHandshakeRequest::decode(&mut buf, v) else {
                    return;
                };
                let mut offered = Vec::new();
                if b.plain.is_some() {
                    offered.push("PLAIN");
                }
                if let Some((m, user, pw)) = &b.scram {
                    offered.push(m);
                    if req.mechanism.as_str() == *m {
                        scram = Some(scram_server(m, user, pw));
                    }
                }
                let code = if offered.contains(&req.mechanism.as_str()) {
                    0
                } else {
                    33
                };
                let r = SaslHandshakeResponse::default()
                    .with_error_code(code)
                    .with_mechanisms(
                        offered
                            .iter()
                            .map(|m| StrBytes::from_string(m.to_string()))
                            .collect(),
                    );
                respond(&header, &r, v)
            }
            ApiKey::SaslAuthenticate => {
                let Ok(req) = SaslAuthenticateRequest::decode(&mut buf, v) else {
                    return;
                };
                let failed = |m: &'static str| {
                    SaslAuthenticateResponse::default()
                        .with_error_code(58)
                        .with_error_message(Some(StrBytes::from_static_str(m)))
                };
                let r = if let Some(session) = scram.as_mut() {
                    let mut out = std::io::Cursor::new(Vec::new());
                    match session.step(Some(&req.auth_bytes), &mut out) {
                        Ok(state) => {
                            if matches!(state, rsasl::prelude::State::Finished(_)) {
                                authenticated = true;
                            }
                            SaslAuthenticateResponse::default()
                                .with_auth_bytes(out.into_inner().into())
                        }
                        Err(_) => failed(
                            "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM",
                        ),
                    }
                } else if b.plain.as_ref().is_some_and(|(u, p)| {
                    req.auth_bytes.as_ref() == format!("\0{u}\0{p}").as_bytes()
                }) {
                    authenticated = true;
                    SaslAuthenticateResponse::default()
                } else {
                    failed("Authentication failed: Invalid username or password")
                };
                let rejected = r.error_code != 0;
                let out = respond(&header, &r, v);
                if s.write_all(&out).await.is_err() || rejected {
                    return;
                }
                continue;
            }
            _ => return,
        };
        if s.write_all(&out).await.is_err() || s.flush().await.is_err() {
            return;
        }
    }
}

/// A server session for `mechanism`, holding `user`'s key as a broker stores it (salted, 4096
/// iterations; Kafka's `kafka-configs --add-config SCRAM-SHA-256=[iterations=4096,password=…]`).
fn scram_server(mechanism: &str, user: &str, password: &str) -> rsasl::prelude::Session {
    use rsasl::callback::{Context, Request, SessionCallback, SessionData};
    use rsasl::mechanisms::scram::properties::ScramStoredPassword;
    use rsasl::mechanisms::scram::tools;
    use rsasl::prelude::{Mechname, SASLConfig, SASLServer, SessionError};
    use rsasl::property::AuthId;
    use sha2::digest::{Digest, FixedOutputReset, core_api::BlockSizeUser};

    fn keys<D: Digest + BlockSizeUser + FixedOutputReset + Clone + Sync>(
        password: &str,
        salt: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let mut salted = sha2::digest::Output::<D>::default();
        tools::hash_password::<D>(password.as_bytes(), 4096, salt, &mut salted);
        let (client_key, server_key) = tools::derive_keys::<D>(salted.as_slice());
        (D::digest(client_key).to_vec(), server_key.to_vec())
    }
    struct Stored {
        user: String,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    }
    impl SessionCallback for Stored {
        fn callback(
            &self,
            _: &SessionData,
            context: &Context,
            request: &mut Request,
        ) -> Result<(), SessionError> {
            if context.get_ref::<AuthId>() == Some(self.user.as_str()) {
                request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                    4096,
                    &self.salt,
                    &self.stored_key,
                    &self.server_key,
                ))?;
            }
            Ok(())
        }
    }
    let salt = b"kafka-expose-test".to_vec();
    let (stored_key, server_key) = if mechanism == "SCRAM-SHA-512" {
        keys::<sha2::Sha512>(password, &salt)
    } else {
        keys::<sha2::Sha256>(password, &salt)
    };
    let config = SASLConfig::builder()
        .with_defaults()
        .with_callback(Stored {
            user: user.to_string(),
            salt,
            stored_key,
            server_key,
        })
        .unwrap();
    SASLServer::<rsasl::validate::NoValidation>::new(config)
        .start_suggested(Mechname::parse(mechanism.as_bytes()).unwrap())
        .unwrap()
}

fn respond<R: Encodable + HeaderVersion>(req: &RequestHeader, body: &R, v: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(req.correlation_id)
        .encode(&mut buf, R::header_version(v))
        .unwrap();
    body.encode(&mut buf, v).unwrap();
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());
    buf.freeze()
}

fn api_versions() -> ApiVersionsResponse {
    let keys = [
        (ApiKey::Metadata, 0, 12),
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::SaslHandshake, 0, 1),
        (ApiKey::SaslAuthenticate, 0, 2),
    ];
    ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

fn metadata(b: &Behaviour) -> MetadataResponse {
    let brokers = b
        .advertised
        .lock()
        .unwrap()
        .iter()
        .map(|(id, host, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(*id))
                .with_host(StrBytes::from_string(host.clone()))
                .with_port(i32::from(*port))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(b.cluster_id.clone())))
        .with_controller_id(BrokerId(0))
}

/// As Kafka's `ConfigHelper.describeConfigs` answers a BROKER resource.
fn describe(b: &Behaviour, req: &DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let name = r.resource_name.as_str();
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if name == b.node_id.to_string() {
                base.with_configs(vec![
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str("broker.id"))
                        .with_value(Some(StrBytes::from_string(b.node_id.to_string())))
                        .with_read_only(true),
                ])
            } else {
                base.with_error_code(42)
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Unexpected broker id, expected {} or empty string, but received {name}",
                        b.node_id
                    ))))
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A TLS server configuration for the fake brokers, from PEM.
pub fn server_tls(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    )
}
