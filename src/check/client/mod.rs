//! A Kafka-protocol client just large enough for `kafka-expose check`: connect (TCP, TLS), learn
//! the broker's API versions, authenticate (SASL PLAIN, SCRAM-SHA-256/512), ask for the cluster's
//! brokers, and ask a broker who it is. Messages are encoded and decoded by the `kafka-protocol`
//! crate; this module frames them (a big-endian `int32` size before every request and response,
//! <https://kafka.apache.org/protocol#protocol_common>) and bounds everything it waits for.
//!
//! - [`guard`]: the walk every response body passes before the crate decodes it;
//! - [`tls`]: rustls set-up and what a handshake says about the certificate;
//! - [`sasl`]: SaslHandshake and SaslAuthenticate around an `rsasl` session.

pub mod guard;
pub mod sasl;
pub mod tls;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeConfigsRequest, MetadataRequest, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use guard::versions;

use crate::check::kind::ProblemKind;

/// The largest response frame accepted. The answers `check` asks for (brokers without topics,
/// one configuration entry) are a few kilobytes; 1 MiB holds the broker list of a cluster of
/// thousands, and refuses a peer that is not speaking Kafka (an HTTP server's first bytes read as
/// a size of about 1.2 GB).
pub const MAX_FRAME: usize = 1 << 20;

/// The client id brokers see in their request logs.
pub const CLIENT_ID: &str = "kafka-expose-check";

/// Kafka's `ConfigResource.Type.BROKER`.
const RESOURCE_BROKER: i8 = 4;
/// `INVALID_REQUEST`: what a broker answers a DescribeConfigs for another broker's id.
const INVALID_REQUEST: i16 = 42;
/// `CLUSTER_AUTHORIZATION_FAILED` and `TOPIC_AUTHORIZATION_FAILED`-style refusals.
const AUTHORIZATION_FAILED: [i16; 2] = [29, 31];

/// A host and port, as a broker advertises it or a user types it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not host:port"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?}: the port must be 1 to 65535"))?;
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    /// Parses `host`, `[v6]`, a bare IPv6 address, `host:port` or `[v6]:port`. Without a port,
    /// the port is 0: each connection keeps the port it is for (`--connect-to`).
    pub fn parse_port_optional(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let has_port = !s.ends_with(']') && (s.starts_with('[') || s.matches(':').count() == 1);
        if has_port {
            return Self::parse(s);
        }
        let host = s.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        Ok(Self {
            host: host.to_string(),
            port: 0,
        })
    }

    /// A broker's advertised host and port, as Metadata carries them.
    pub fn advertised(host: &str, port: i32) -> Result<Self, String> {
        match u16::try_from(port) {
            Ok(p) if p != 0 && !host.is_empty() => Ok(Self {
                host: host.to_string(),
                port: p,
            }),
            _ => Err(format!(
                "advertises {host}:{port}, which no client can dial"
            )),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&host_port(&self.host, self.port))
    }
}

pub use crate::kafka::host_port;

/// Connect and request timeouts. Every wait of the client is under one of them.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Name resolution and the TCP connection.
    pub connect: Duration,
    /// Each request and its answer, the TLS handshake, and each SASL step.
    pub request: Duration,
}

/// What a connection speaks above TCP.
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub tls: Option<tls::Tls>,
    pub sasl: Option<sasl::Credentials>,
    /// `--connect-to`: every connection dials this address (and port, where given) instead of
    /// resolving the host it is for, which still goes in the TLS SNI and is what the certificate
    /// must name. A Gateway routes by that name: every broker's name is dialled at its address.
    /// Port 0: the port of each address dialled.
    pub connect_to: Option<Address>,
}

/// Why talking to a broker failed, in the terms a person fixes it in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("the name {host} does not resolve ({detail})")]
    NameNotResolved { host: String, detail: String },
    #[error("connection refused: nothing listens there, or a firewall rejects it")]
    Refused,
    #[error("no connection within {0:?}: a firewall drops the packets, or the host is down")]
    ConnectTimeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error(
        "no answer to {what} within {after:?}: something accepted the connection and went silent"
    )]
    RequestTimeout { what: &'static str, after: Duration },
    #[error("the connection closed during {what}")]
    Closed { what: &'static str },
    #[error("{what}: {detail}")]
    Io { what: &'static str, detail: String },
    #[error("the certificate does not name {host}{}", presented_names(.presented))]
    TlsNameMismatch {
        host: String,
        presented: Vec<String>,
    },
    #[error("the certificate is not trusted: {0}")]
    TlsUntrusted(String),
    #[error("the TLS handshake failed: {0}")]
    Tls(String),
    #[error("SASL {mechanism} was rejected: {message}")]
    SaslRejected { mechanism: String, message: String },
    #[error("the broker does not offer SASL {mechanism} (it offers {})", offered.join(", "))]
    SaslMechanism {
        mechanism: String,
        offered: Vec<String>,
    },
    #[error("the broker answered {what} with error {code} ({name})")]
    Broker {
        what: &'static str,
        code: i16,
        name: String,
    },
    #[error("the broker supports no version of {what} that this client speaks")]
    Unsupported { what: &'static str },
    #[error("the answer to {what} is not Kafka: {detail}")]
    Malformed { what: &'static str, detail: String },
}

fn presented_names(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (it names {})", names.join(", "))
    }
}

impl Failure {
    /// A short, stable name for scripts: the `kind` of the JSON report.
    pub fn kind(&self) -> ProblemKind {
        match self {
            Self::NameNotResolved { .. } => ProblemKind::NameNotResolved,
            Self::Refused => ProblemKind::ConnectionRefused,
            Self::ConnectTimeout(_) => ProblemKind::ConnectTimeout,
            Self::Connect(_) => ProblemKind::ConnectFailed,
            Self::RequestTimeout { .. } => ProblemKind::RequestTimeout,
            Self::Closed { .. } => ProblemKind::ConnectionClosed,
            Self::Io { .. } => ProblemKind::IoError,
            Self::TlsNameMismatch { .. } => ProblemKind::TlsNameMismatch,
            Self::TlsUntrusted(_) => ProblemKind::TlsUntrusted,
            Self::Tls(_) => ProblemKind::TlsFailed,
            Self::SaslRejected { .. } => ProblemKind::SaslRejected,
            Self::SaslMechanism { .. } => ProblemKind::SaslMechanism,
            Self::Broker { .. } => ProblemKind::BrokerError,
            Self::Unsupported { .. } => ProblemKind::Unsupported,
            Self::Malformed { .. } => ProblemKind::NotKafka,
        }
    }

    fn broker(what: &'static str, code: i16) -> Self {
        Self::Broker {
            what,
            code,
            name: error_name(code),
        }
    }
}

/// The brokers a cluster advertises on the listener a connection came in on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<AdvertisedBroker>,
}

/// One entry of Metadata's broker list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdvertisedBroker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Who answered on a connection, as far as the broker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// It is the node asked about.
    Confirmed,
    /// It is another node: its id.
    Other(i32),
    /// The broker did not say: why.
    Unknown(String),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One open, authenticated connection to a broker.
pub struct Connection {
    io: Box<dyn Io>,
    next_id: i32,
    /// API key to the broker's (min, max) version.
    versions: HashMap<i16, (i16, i16)>,
    request_timeout: Duration,
    /// The socket address the connection reached.
    pub peer: SocketAddr,
    /// What the TLS handshake showed, on TLS connections.
    pub tls: Option<tls::TlsFacts>,
}

impl Connection {
    /// Resolves, connects, and runs TLS, ApiVersions and SASL as `security` asks.
    pub async fn open(
        to: &Address,
        security: &Security,
        timeouts: Timeouts,
    ) -> Result<Self, Failure> {
        let dial = match &security.connect_to {
            Some(via) => Address {
                host: via.host.clone(),
                port: if via.port == 0 { to.port } else { via.port },
            },
            None => to.clone(),
        };
        let tcp = connect(&dial, timeouts.connect).await?;
        let peer = tcp
            .peer_addr()
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (io, tls): (Box<dyn Io>, _) = match &security.tls {
            None => (Box::new(tcp), None),
            Some(t) => {
                let (stream, facts) = handshake(t, to, tcp, timeouts.request).await?;
                (Box::new(stream), Some(facts))
            }
        };
        let mut conn = Self {
            io,
            next_id: 1,
            versions: HashMap::new(),
            request_timeout: timeouts.request,
            peer,
            tls,
        };
        conn.api_versions().await?;
        if let Some(creds) = &security.sasl {
            sasl::authenticate(&mut conn, creds).await?;
        }
        Ok(conn)
    }

    /// The highest version of `key` that both sides speak, within `ours`.
    pub fn version(&self, key: ApiKey, ours: RangeInclusive<i16>) -> Option<i16> {
        let (min, max) = *self.versions.get(&(key as i16))?;
        let v = max.min(*ours.end());
        (v >= min.max(*ours.start())).then_some(v)
    }

    async fn api_versions(&mut self) -> Result<(), Failure> {
        let what = "ApiVersions";
        let r = self
            .send(&ApiVersionsRequest::default(), versions::API_VERSIONS, what)
            .await?;
        if r.error_code != 0 {
            return Err(Failure::broker(what, r.error_code));
        }
        self.versions = r
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// Metadata for no topics: the brokers of the listener this connection came in on, the
    /// cluster id and the controller.
    pub async fn metadata(&mut self) -> Result<(ClusterMetadata, Duration), Failure> {
        let what = "Metadata";
        let v = self
            .version(ApiKey::Metadata, versions::METADATA)
            .ok_or(Failure::Unsupported { what })?;
        // No topics: only the broker list. `allow_auto_topic_creation` exists from v4 on, and
        // asks for nothing to be created where it exists.
        let req = MetadataRequest::default()
            .with_topics(Some(Vec::new()))
            .with_allow_auto_topic_creation(v < 4);
        let started = Instant::now();
        let r = self.send(&req, v, what).await?;
        let rtt = started.elapsed();
        let brokers = r
            .brokers
            .into_iter()
            .map(|b| AdvertisedBroker {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
            })
            .collect();
        Ok((
            ClusterMetadata {
                cluster_id: r.cluster_id.map(|c| c.to_string()),
                controller_id: r.controller_id.0,
                brokers,
            },
            rtt,
        ))
    }

    /// Asks the broker for its own configuration under `node_id`. A broker serves that only for
    /// its own id and otherwise answers INVALID_REQUEST "Unexpected broker id, expected <its id>
    /// ..." (Kafka's `ConfigHelper.describeConfigs`), so the answer tells who is on the line.
    pub async fn identify(&mut self, node_id: i32) -> Result<Identity, Failure> {
        let what = "DescribeConfigs";
        let Some(v) = self.version(ApiKey::DescribeConfigs, versions::DESCRIBE_CONFIGS) else {
            return Ok(Identity::Unknown(
                "the broker does not serve DescribeConfigs, which tells its id".into(),
            ));
        };
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(StrBytes::from_string(node_id.to_string()))
                .with_configuration_keys(Some(vec![StrBytes::from_static_str("broker.id")])),
        ]);
        let r = self.send(&req, v, what).await?;
        let Some(result) = r.results.first() else {
            return Err(Failure::Malformed {
                what,
                detail: "no result for the one resource asked about".into(),
            });
        };
        let message = result
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        Ok(identity(result.error_code, &message))
    }

    /// Sends one request and reads its answer, within the request timeout.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        what: &'static str,
    ) -> Result<R::Response, Failure> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| Failure::Unsupported { what })?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let frame = encode(req, key, version, id).map_err(|detail| Failure::Io {
            what,
            detail: format!("encoding v{version}: {detail}"),
        })?;
        let after = self.request_timeout;
        let body = tokio::time::timeout(after, async {
            self.io
                .write_all(&frame)
                .await
                .map_err(|e| io_failure(what, e))?;
            self.io.flush().await.map_err(|e| io_failure(what, e))?;
            read_frame(&mut self.io, what).await
        })
        .await
        .map_err(|_| Failure::RequestTimeout { what, after })??;
        decode::<R>(key, version, id, body, what)
    }
}

/// Reads a broker's answer to DescribeConfigs for a broker resource.
pub fn identity(code: i16, message: &str) -> Identity {
    if code == 0 {
        return Identity::Confirmed;
    }
    if code == INVALID_REQUEST
        && let Some(id) = expected_id(message)
    {
        return Identity::Other(id);
    }
    if AUTHORIZATION_FAILED.contains(&code) {
        return Identity::Unknown(
            "not authorized to describe the broker's configuration (DescribeConfigs on the cluster)"
                .into(),
        );
    }
    Identity::Unknown(format!(
        "DescribeConfigs answered {}: {message}",
        error_name(code)
    ))
}

/// A Kafka error code's name, as the protocol's error table gives it.
fn error_name(code: i16) -> String {
    code.err()
        .map_or_else(|| format!("error code {code}"), |e| e.to_string())
}

/// The id in "Unexpected broker id, expected 3 or empty string, but received 1" (and the older
/// "expected 3, but received 1").
fn expected_id(message: &str) -> Option<i32> {
    // The last "expected ": "Unexpected" holds one too.
    let rest = &message[message.rfind("expected ")? + "expected ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit() && c != '-')
        .map_or(rest, |end| &rest[..end]);
    digits.parse().ok()
}

fn encode<R: Request>(req: &R, key: ApiKey, version: i16, id: i32) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(|e| e.to_string())?;
    req.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| "request too large".to_string())?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a response frame (its size prefix already read): the correlation id, the guard,
/// then the crate's decoder.
pub fn decode<R: Request>(
    key: ApiKey,
    version: i16,
    id: i32,
    frame: Bytes,
    what: &'static str,
) -> Result<R::Response, Failure> {
    let malformed = |detail: String| Failure::Malformed { what, detail };
    if <R::Response as HeaderVersion>::header_version(version) != 0 {
        return Err(malformed(format!(
            "v{version} has a flexible header, which this client does not ask for"
        )));
    }
    let Some(head) = frame.get(..4) else {
        return Err(malformed("a frame shorter than its header".into()));
    };
    let got = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if got != id {
        return Err(malformed(format!(
            "the answer is for request {got}, not {id}"
        )));
    }
    let mut body = frame.slice(4..);
    guard::check(key, version, &body).map_err(|e| malformed(e.0))?;
    R::Response::decode(&mut body, version).map_err(|e| malformed(e.to_string()))
}

async fn read_frame(io: &mut Box<dyn Io>, what: &'static str) -> Result<Bytes, Failure> {
    let mut size = [0u8; 4];
    io.read_exact(&mut size)
        .await
        .map_err(|e| io_failure(what, e))?;
    let n = i32::from_be_bytes(size);
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_FRAME)
        .ok_or_else(|| Failure::Malformed {
            what,
            detail: format!("a frame of {n} bytes (at most {MAX_FRAME} are accepted)"),
        })?;
    let mut buf = vec![0u8; n];
    io.read_exact(&mut buf)
        .await
        .map_err(|e| io_failure(what, e))?;
    Ok(Bytes::from(buf))
}

fn io_failure(what: &'static str, e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => Failure::Closed { what },
        _ => Failure::Io {
            what,
            detail: e.to_string(),
        },
    }
}

async fn connect(to: &Address, within: Duration) -> Result<TcpStream, Failure> {
    let attempt = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((to.host.as_str(), to.port))
            .await
            .map_err(|e| Failure::NameNotResolved {
                host: to.host.clone(),
                detail: e.to_string(),
            })?
            .collect();
        let mut last = Failure::NameNotResolved {
            host: to.host.clone(),
            detail: "no addresses".into(),
        };
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Failure::Refused;
                }
                Err(e) => last = Failure::Connect(e.to_string()),
            }
        }
        Err(last)
    };
    tokio::time::timeout(within, attempt)
        .await
        .map_err(|_| Failure::ConnectTimeout(within))?
}

async fn handshake(
    t: &tls::Tls,
    to: &Address,
    tcp: TcpStream,
    within: Duration,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, tls::TlsFacts), Failure> {
    let name = ServerName::try_from(to.host.clone()).map_err(|e| Failure::Tls(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(t.config());
    let stream = tokio::time::timeout(within, connector.connect(name.clone(), tcp))
        .await
        .map_err(|_| Failure::RequestTimeout {
            what: "the TLS handshake",
            after: within,
        })?
        .map_err(|e| match tls::classify(&e) {
            tls::HandshakeRefusal::NameMismatch(presented) => Failure::TlsNameMismatch {
                host: to.host.clone(),
                presented,
            },
            tls::HandshakeRefusal::Untrusted(d) => Failure::TlsUntrusted(d),
            tls::HandshakeRefusal::Other(d) => Failure::Tls(d),
        })?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first());
    let facts = t.facts(leaf, &name);
    Ok((stream, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_and_without_brackets() {
        assert_eq!(
            Address::parse("broker-0.example:31090")
                .unwrap()
                .to_string(),
            "broker-0.example:31090"
        );
        let v6 = Address::parse("[fd00::1]:9094").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("fd00::1", 9094));
        assert_eq!(v6.to_string(), "[fd00::1]:9094");
        assert!(Address::parse("nohost").is_err());
        assert!(Address::parse(":9092").is_err());
        assert!(Address::parse("h:0").is_err());
        assert!(Address::parse("h:70000").is_err());
    }

    #[test]
    fn a_connect_to_address_may_leave_the_port_to_each_connection() {
        let cases = [
            ("203.0.113.10", ("203.0.113.10", 0)),
            ("gw.example:8443", ("gw.example", 8443)),
            ("fd00::1", ("fd00::1", 0)),
            ("[fd00::1]", ("fd00::1", 0)),
            ("[fd00::1]:443", ("fd00::1", 443)),
        ];
        for (given, (host, port)) in cases {
            let a = Address::parse_port_optional(given).unwrap();
            assert_eq!((a.host.as_str(), a.port), (host, port), "{given}");
        }
        assert!(Address::parse_port_optional("").is_err());
        assert!(Address::parse_port_optional("gw.example:x").is_err());
    }

    #[test]
    fn the_answering_broker_is_read_from_each_kafka_version_of_the_refusal() {
        for m in [
            "Unexpected broker id, expected 3 or empty string, but received 1",
            "Unexpected broker id, expected 3, but received 1",
            "Unexpected broker id, expected 3 but received 1",
        ] {
            assert_eq!(identity(INVALID_REQUEST, m), Identity::Other(3), "{m}");
        }
        assert_eq!(identity(0, ""), Identity::Confirmed);
        assert!(matches!(identity(31, ""), Identity::Unknown(_)));
        assert!(matches!(
            identity(INVALID_REQUEST, "Broker id must be an integer"),
            Identity::Unknown(_)
        ));
    }
}
