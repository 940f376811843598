//! kx-test-broker: the node tests' Kafka-protocol broker, which the stand-in broker images start
//! on the `server.properties` their scripts rendered. It is not Kafka (it keeps no log); it does
//! what kafka-expose's promise rests on. It binds every listener of `listeners` and answers
//! ApiVersions, Metadata and DescribeConfigs on each, with the brokers of its cluster as each
//! advertises itself on *that* listener.
//!
//! It learns the other brokers as a KRaft broker makes itself known: it registers
//! (BrokerRegistration, carrying all of its advertised listeners) with every voter of
//! `controller.quorum.voters` and every address of `controller.quorum.bootstrap.servers` (Kafka
//! 4's dynamic quorum), over the controller listener, again every second; a controller keeps what
//! it is sent. In combined mode every broker is a controller, so each knows them all. Nothing
//! comes from the test.
//!
//! A listener whose protocol (`listener.security.protocol.map`) is SASL_PLAINTEXT takes SASL
//! PLAIN (KIP-152: SaslHandshake v1, then SaslAuthenticate) before any other request, against the
//! `user_<name>="<password>"` entries of `listener.name.<listener>.plain.sasl.jaas.config`, as
//! Kafka's PLAIN server does; a wrong password is refused and the connection closed. Only PLAIN:
//! the handshake offers nothing else. The registration authenticates in the same way on a SASL
//! controller listener, with `sasl.mechanism.controller.protocol` PLAIN and the `username` and
//! `password` of that listener's JAAS entry.
//!
//! A listener whose protocol is SSL or SASL_SSL serves TLS from its PEM key store, as KIP-651's
//! Kafka reads it: `listener.name.<listener>.ssl.keystore.type=PEM` and
//! `ssl.keystore.location` (a file with the private key and the certificate chain), the
//! listener's settings over the broker-wide ones. Like Kafka, it refuses to start when a key store
//! password applies to a PEM store, and it asks clients for certificates per `ssl.client.auth`,
//! checked against `ssl.truststore.location` (PEM). Only PEM: JKS and PKCS#12 need a JVM.
//!
//!     kx-test-broker SERVER.PROPERTIES

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, BrokerRegistrationRequest, BrokerRegistrationResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, MetadataResponse, RequestHeader,
    ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A broker's advertised endpoints: listener name → (host, port).
type Endpoints = BTreeMap<String, (String, u16)>;

/// What a listener asks of a client before it answers: nothing, or SASL PLAIN with these users
/// (name → password).
type Users = Option<BTreeMap<String, String>>;

/// Per listener: the TLS it serves, if its protocol is SSL or SASL_SSL.
type Tls = Option<Arc<rustls::ServerConfig>>;

struct Broker {
    id: i32,
    /// Per listener name: its TLS, when its protocol is SSL or SASL_SSL.
    tls: BTreeMap<String, Tls>,
    cluster_id: String,
    /// Per listener name: the SASL PLAIN users, when its protocol is SASL_PLAINTEXT.
    sasl: BTreeMap<String, Users>,
    /// Every broker known, by id, with its advertised endpoints (this one included).
    known: Mutex<BTreeMap<i32, Endpoints>>,
}

/// `NAME://host:port` → (NAME, host, port).
fn endpoint(s: &str) -> Result<(String, String, u16), String> {
    let (name, rest) = s
        .trim()
        .split_once("://")
        .ok_or_else(|| format!("not a listener: {s}"))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("no port: {s}"))?;
    let port = port.parse().map_err(|_| format!("bad port: {s}"))?;
    Ok((name.to_string(), host.to_string(), port))
}

fn list(props: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    props
        .get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The `key="value"` options of a JAAS configuration entry.
fn jaas_options(entry: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = entry;
    while let Some(eq) = rest.find("=\"") {
        let key_start = rest[..eq]
            .rfind(|c: char| c.is_whitespace())
            .map_or(0, |i| i + 1);
        let key = rest[key_start..eq].to_string();
        let value_and_rest = &rest[eq + 2..];
        let Some(end) = value_and_rest.find('"') else {
            break;
        };
        out.insert(key, value_and_rest[..end].to_string());
        rest = &value_and_rest[end + 1..];
    }
    out
}

/// The protocol of listener `name`: from the map, else the name itself (PLAINTEXT://, SSL://…).
fn protocol(props: &BTreeMap<String, String>, name: &str) -> String {
    list(props, "listener.security.protocol.map")
        .iter()
        .filter_map(|e| e.split_once(':'))
        .find(|(l, _)| *l == name)
        .map_or_else(|| name.to_string(), |(_, p)| p.to_string())
}

/// The PLAIN JAAS options of listener `name`.
fn plain_jaas(props: &BTreeMap<String, String>, name: &str) -> BTreeMap<String, String> {
    let key = format!(
        "listener.name.{}.plain.sasl.jaas.config",
        name.to_lowercase()
    );
    props.get(&key).map(|e| jaas_options(e)).unwrap_or_default()
}

fn read_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: kx-test-broker SERVER.PROPERTIES")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let props = read_properties(&text);
    let id: i32 = props
        .get("node.id")
        .or_else(|| props.get("broker.id"))
        .ok_or("no node.id or broker.id")?
        .parse()
        .map_err(|_| "node.id is not a number")?;
    let controller_names = list(&props, "controller.listener.names");
    let listeners = list(&props, "listeners")
        .iter()
        .map(|l| endpoint(l))
        .collect::<Result<Vec<_>, _>>()?;
    let mut advertised = Endpoints::new();
    for a in list(&props, "advertised.listeners") {
        let (name, host, port) = endpoint(&a)?;
        advertised.insert(name, (host, port));
    }
    // As Kafka: a listener that `advertised.listeners` leaves out is advertised as it binds,
    // except a controller listener, which brokers never advertise.
    for (name, host, port) in &listeners {
        if !advertised.contains_key(name) && !controller_names.contains(name) {
            advertised.insert(name.clone(), (host.clone(), *port));
        }
    }
    println!("kx-test-broker: node {id}, listeners {listeners:?}, advertised {advertised:?}");
    let mut sasl = BTreeMap::new();
    let mut tls = BTreeMap::new();
    for (name, _, _) in &listeners {
        let protocol = protocol(&props, name);
        let secured = match protocol.as_str() {
            "SSL" | "SASL_SSL" => Some(tls_config(&props, name)?),
            _ => None,
        };
        tls.insert(name.clone(), secured);
        let users = match protocol.as_str() {
            "PLAINTEXT" | "SSL" => None,
            "SASL_PLAINTEXT" | "SASL_SSL" => Some(
                plain_jaas(&props, name)
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix("user_")?.to_string(), v)))
                    .collect::<BTreeMap<_, _>>(),
            ),
            other => {
                return Err(format!(
                    "listener {name}: protocol {other} is not served here"
                ));
            }
        };
        if let Some(u) = &users {
            println!(
                "kx-test-broker: {name}: SASL PLAIN, users {:?}",
                u.keys().collect::<Vec<_>>()
            );
        }
        sasl.insert(name.clone(), users);
    }
    // The registration's own credentials, when the controller listener asks for SASL.
    let controller_login = match controller_names.first() {
        Some(c) if protocol(&props, c) == "SASL_PLAINTEXT" => {
            let mechanism = props
                .get("sasl.mechanism.controller.protocol")
                .map_or("GSSAPI", String::as_str);
            if mechanism != "PLAIN" {
                return Err(format!(
                    "controller SASL mechanism {mechanism}: only PLAIN here"
                ));
            }
            let o = plain_jaas(&props, c);
            let get = |k: &str| {
                o.get(k)
                    .cloned()
                    .ok_or_else(|| format!("listener {c}: no {k} in its PLAIN JAAS entry"))
            };
            Some((get("username")?, get("password")?))
        }
        _ => None,
    };
    // As a broker stops on SIGTERM. Run as a container's first process, nothing else would end
    // it: PID 1 ignores a signal it has no handler for, and the kubelet would wait out the grace
    // period on every roll.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    tokio::spawn(async move {
        term.recv().await;
        println!("kx-test-broker: SIGTERM: stopping");
        std::process::exit(0);
    });
    let broker = Arc::new(Broker {
        tls,
        sasl,
        id,
        cluster_id: std::env::var("CLUSTER_ID").unwrap_or_else(|_| "kx-test-cluster".into()),
        known: Mutex::new(BTreeMap::from([(id, advertised.clone())])),
    });

    for (name, _, port) in &listeners {
        let socket = TcpListener::bind(("0.0.0.0", *port))
            .await
            .map_err(|e| format!("{name} on :{port}: {e}"))?;
        let (b, name) = (broker.clone(), name.clone());
        let acceptor = broker
            .tls
            .get(&name)
            .cloned()
            .flatten()
            .map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = socket.accept().await {
                let (b, name) = (b.clone(), name.clone());
                match acceptor.clone() {
                    None => {
                        tokio::spawn(serve(tcp, b, name));
                    }
                    Some(a) => {
                        tokio::spawn(async move {
                            match a.accept(tcp).await {
                                Ok(s) => serve(s, b, name).await,
                                Err(e) => println!("kx-test-broker: {name}: TLS handshake: {e}"),
                            }
                        });
                    }
                }
            }
        });
    }

    let mut voters: Vec<String> = list(&props, "controller.quorum.voters")
        .iter()
        .filter_map(|v| v.split_once('@').map(|(_, addr)| addr.to_string()))
        .collect();
    for b in list(&props, "controller.quorum.bootstrap.servers") {
        if !voters.contains(&b) {
            voters.push(b);
        }
    }
    loop {
        for voter in &voters {
            if let Err(e) = register(&broker, &advertised, voter, controller_login.as_ref()).await {
                println!("kx-test-broker: registering with {voter}: {e}");
            }
        }
        let known: Vec<i32> = broker.known.lock().unwrap().keys().copied().collect();
        println!("kx-test-broker: node {id} knows brokers {known:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Writes one request and reads its response on `s`.
async fn call<Req: Request>(
    s: &mut TcpStream,
    version: i16,
    req: &Req,
) -> Result<Req::Response, String> {
    let header = RequestHeader::default()
        .with_request_api_key(Req::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("kx-test-broker")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, Req::header_version(version))
        .map_err(|e| e.to_string())?;
    req.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());
    s.write_all(&buf).await.map_err(|e| e.to_string())?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size).await.map_err(|e| e.to_string())?;
    let mut frame = vec![0u8; i32::from_be_bytes(size).clamp(0, 1 << 20) as usize];
    s.read_exact(&mut frame).await.map_err(|e| e.to_string())?;
    let mut frame = Bytes::from(frame);
    ResponseHeader::decode(&mut frame, Req::Response::header_version(version))
        .and_then(|_| Req::Response::decode(&mut frame, version))
        .map_err(|e| e.to_string())
}

/// Sends this broker's registration to `voter` (`host:port`) and reads the answer, after SASL
/// PLAIN as `login` when the controller listener asks for it.
async fn register(
    b: &Broker,
    advertised: &Endpoints,
    voter: &str,
    login: Option<&(String, String)>,
) -> Result<(), String> {
    let req = BrokerRegistrationRequest::default()
        .with_broker_id(BrokerId(b.id))
        .with_cluster_id(StrBytes::from_string(b.cluster_id.clone()))
        .with_listeners(
            advertised
                .iter()
                .map(|(name, (host, port))| {
                    Listener::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_port(*port)
                })
                .collect(),
        );
    let io = async {
        let mut s = TcpStream::connect(voter).await.map_err(|e| e.to_string())?;
        if let Some((user, password)) = login {
            let hs = call(
                &mut s,
                1,
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
            )
            .await?;
            if hs.error_code != 0 {
                return Err(format!("SaslHandshake: error {}", hs.error_code));
            }
            let token = format!("\0{user}\0{password}");
            let auth = call(
                &mut s,
                1,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
            )
            .await?;
            if auth.error_code != 0 {
                return Err(format!(
                    "SaslAuthenticate as {user}: error {}: {:?}",
                    auth.error_code, auth.error_message
                ));
            }
        }
        call(&mut s, 0, &req).await?;
        Ok::<_, String>(())
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// PLAIN's token, `[authzid] NUL user NUL password`, checked against `users`.
fn plain_login(token: &[u8], users: &BTreeMap<String, String>) -> Result<String, String> {
    let text = std::str::from_utf8(token).map_err(|_| "not UTF-8".to_string())?;
    let mut parts = text.split('\0');
    let (_authzid, user, password) = match (parts.next(), parts.next(), parts.next(), parts.next())
    {
        (Some(a), Some(u), Some(p), None) => (a, u, p),
        _ => return Err("not a PLAIN token".into()),
    };
    match users.get(user) {
        Some(p) if p == password => Ok(user.to_string()),
        _ => Err(format!(
            "Authentication failed: Invalid username or password for {user:?}"
        )),
    }
}

/// Answers one connection on listener `listener`.
/// A listener's setting as Kafka reads it: `listener.name.<listener>.<key>`, else `<key>`.
fn setting<'a>(props: &'a BTreeMap<String, String>, listener: &str, key: &str) -> Option<&'a str> {
    props
        .get(&format!(
            "listener.name.{}.{key}",
            listener.to_ascii_lowercase()
        ))
        .or_else(|| props.get(key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The TLS a listener serves, from its PEM stores; the errors Kafka would stop with.
fn tls_config(
    props: &BTreeMap<String, String>,
    name: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let get = |k: &str| setting(props, name, k);
    let kind = get("ssl.keystore.type").unwrap_or("JKS");
    if kind != "PEM" {
        return Err(format!(
            "listener {name}: key store type {kind}: only PEM here"
        ));
    }
    if get("ssl.keystore.password").is_some() {
        return Err(format!(
            "listener {name}: SSL key store password cannot be specified with PEM format, only key password may be specified"
        ));
    }
    if get("ssl.key.password").is_some() {
        return Err(format!(
            "listener {name}: an encrypted PEM key: not served here"
        ));
    }
    let location =
        get("ssl.keystore.location").ok_or(format!("listener {name}: no ssl.keystore.location"))?;
    let pem = std::fs::read(location).map_err(|e| format!("listener {name}: {location}: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("listener {name}: {location}: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("listener {name}: {location}: no private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let auth = get("ssl.client.auth").unwrap_or("none");
    let builder = match auth {
        "none" => builder.with_no_client_auth(),
        "requested" | "required" => {
            if get("ssl.truststore.password").is_some() && get("ssl.truststore.type") == Some("PEM")
            {
                return Err(format!(
                    "listener {name}: SSL trust store password cannot be specified with PEM format"
                ));
            }
            let trust = get("ssl.truststore.location")
                .ok_or(format!("listener {name}: no ssl.truststore.location"))?;
            let pem = std::fs::read(trust).map_err(|e| format!("listener {name}: {trust}: {e}"))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(c.map_err(|e| format!("{trust}: {e}"))?)
                    .map_err(|e| format!("{trust}: {e}"))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = match auth {
                "requested" => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        other => return Err(format!("listener {name}: ssl.client.auth={other}")),
    };
    let names: Vec<String> = chain
        .first()
        .and_then(|c| kafka_expose::certs::inspect_der(c).ok())
        .map(|f| f.names)
        .unwrap_or_default();
    println!("kx-test-broker: {name}: TLS from {location}, names {names:?}, client auth {auth}");
    let cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("listener {name}: {location}: {e}"))?;
    Ok(Arc::new(cfg))
}

async fn serve<S>(mut s: S, b: Arc<Broker>, listener: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let users = b.sasl.get(&listener).cloned().flatten();
    let mut authenticated = users.is_none();
    loop {
        let mut size = [0u8; 4];
        if s.read_exact(&mut size).await.is_err() {
            return;
        }
        let len = i32::from_be_bytes(size);
        if !(0..=1 << 20).contains(&len) {
            return;
        }
        let mut frame = vec![0u8; len as usize];
        if s.read_exact(&mut frame).await.is_err() {
            return;
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
        // As Kafka: before SASL completes, nothing but the handshake and ApiVersions.
        let before_sasl = matches!(
            key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        );
        if !authenticated && !before_sasl {
            println!("kx-test-broker: {listener}: {key:?} before SASL authentication: closed");
            return;
        }
        let out = match key {
            ApiKey::SaslHandshake if users.is_some() && v == 1 => {
                let Ok(req) = SaslHandshakeRequest::decode(&mut buf, v) else {
                    return;
                };
                let plain = req.mechanism.as_str() == "PLAIN";
                let resp = SaslHandshakeResponse::default()
                    .with_error_code(if plain { 0 } else { 33 })
                    .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
                respond(&header, &resp, v)
            }
            ApiKey::SaslAuthenticate if !authenticated && v <= 2 => {
                let (Ok(req), Some(users)) = (SaslAuthenticateRequest::decode(&mut buf, v), &users)
                else {
                    return;
                };
                match plain_login(&req.auth_bytes, users) {
                    Ok(user) => {
                        println!("kx-test-broker: {listener}: authenticated {user}");
                        authenticated = true;
                        respond(&header, &SaslAuthenticateResponse::default(), v)
                    }
                    Err(e) => {
                        println!("kx-test-broker: {listener}: {e}");
                        let resp = SaslAuthenticateResponse::default()
                            .with_error_code(58)
                            .with_error_message(Some(StrBytes::from_string(e)));
                        let _ = s.write_all(&respond(&header, &resp, v)).await;
                        return;
                    }
                }
            }
            // In the version asked for, up to 3; an unknown one is answered in version 0, as
            // Kafka does, so that the client can retry in one it has.
            ApiKey::ApiVersions if v <= 3 => respond(&header, &api_versions(), v),
            ApiKey::ApiVersions => respond(&header, &api_versions().with_error_code(35), 0),
            ApiKey::Metadata => respond(&header, &metadata(&b, &listener), v),
            ApiKey::DescribeConfigs => {
                let Ok(req) = DescribeConfigsRequest::decode(&mut buf, v) else {
                    return;
                };
                respond(&header, &describe(&b, &req), v)
            }
            ApiKey::BrokerRegistration => {
                let Ok(req) = BrokerRegistrationRequest::decode(&mut buf, v) else {
                    return;
                };
                let endpoints = req
                    .listeners
                    .iter()
                    .map(|l| (l.name.to_string(), (l.host.to_string(), l.port)))
                    .collect();
                b.known.lock().unwrap().insert(req.broker_id.0, endpoints);
                respond(&header, &BrokerRegistrationResponse::default(), v)
            }
            _ => return,
        };
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn respond<R: Encodable + HeaderVersion>(req: &RequestHeader, body: &R, v: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    let encoded = ResponseHeader::default()
        .with_correlation_id(req.correlation_id)
        .encode(&mut buf, R::header_version(v))
        .and_then(|_| body.encode(&mut buf, v));
    if encoded.is_err() {
        return Bytes::new();
    }
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());
    buf.freeze()
}

fn api_versions() -> ApiVersionsResponse {
    let keys = [
        (ApiKey::Metadata, 0, 12),
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::BrokerRegistration, 0, 0),
        (ApiKey::SaslHandshake, 1, 1),
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

/// The brokers as they advertise themselves on `listener`, as Kafka answers Metadata on it.
fn metadata(b: &Broker, listener: &str) -> MetadataResponse {
    let brokers = b
        .known
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(id, endpoints)| {
            let (host, port) = endpoints.get(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(*id))
                    .with_host(StrBytes::from_string(host.clone()))
                    .with_port(i32::from(*port)),
            )
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(b.cluster_id.clone())))
        .with_controller_id(BrokerId(b.id))
}

/// As Kafka's `ConfigHelper.describeConfigs` answers a BROKER resource: its own id only.
fn describe(b: &Broker, req: &DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if r.resource_name.as_str() == b.id.to_string() {
                base.with_configs(vec![
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str("broker.id"))
                        .with_value(Some(StrBytes::from_string(b.id.to_string())))
                        .with_read_only(true),
                ])
            } else {
                base.with_error_code(42)
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Unexpected broker id, expected {} or empty string, but received {}",
                        b.id,
                        r.resource_name.as_str()
                    ))))
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
