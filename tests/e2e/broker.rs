//! kx-test-broker: the node tests' Kafka-protocol broker, which the stand-in broker images start
//! on the `server.properties` their scripts rendered. It is not Kafka (it keeps no log); it does
//! what kafka-expose's promise rests on. It binds every listener of `listeners` and answers
//! ApiVersions, Metadata and DescribeConfigs on each, with the brokers of its cluster as each
//! advertises itself on *that* listener.
//!
//! It learns the other brokers as a KRaft broker makes itself known: it registers
//! (BrokerRegistration, carrying all of its advertised listeners) with every voter of
//! `controller.quorum.voters`, over the controller listener, again every second; a voter keeps
//! what it is sent. In combined mode every broker is a voter, so each knows them all. Nothing
//! comes from the test.
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
    ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A broker's advertised endpoints: listener name → (host, port).
type Endpoints = BTreeMap<String, (String, u16)>;

struct Broker {
    id: i32,
    cluster_id: String,
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
    let broker = Arc::new(Broker {
        id,
        cluster_id: std::env::var("CLUSTER_ID").unwrap_or_else(|_| "kx-test-cluster".into()),
        known: Mutex::new(BTreeMap::from([(id, advertised.clone())])),
    });

    for (name, _, port) in &listeners {
        let socket = TcpListener::bind(("0.0.0.0", *port))
            .await
            .map_err(|e| format!("{name} on :{port}: {e}"))?;
        let (b, name) = (broker.clone(), name.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = socket.accept().await {
                tokio::spawn(serve(tcp, b.clone(), name.clone()));
            }
        });
    }

    let voters: Vec<String> = list(&props, "controller.quorum.voters")
        .iter()
        .filter_map(|v| v.split_once('@').map(|(_, addr)| addr.to_string()))
        .collect();
    loop {
        for voter in &voters {
            if let Err(e) = register(&broker, &advertised, voter).await {
                println!("kx-test-broker: registering with {voter}: {e}");
            }
        }
        let known: Vec<i32> = broker.known.lock().unwrap().keys().copied().collect();
        println!("kx-test-broker: node {id} knows brokers {known:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sends this broker's registration to `voter` (`host:port`) and reads the answer.
async fn register(b: &Broker, advertised: &Endpoints, voter: &str) -> Result<(), String> {
    let version = 0;
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
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::BrokerRegistration as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("kx-test-broker")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, BrokerRegistrationRequest::header_version(version))
        .map_err(|e| e.to_string())?;
    req.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());

    let io = async {
        let mut s = TcpStream::connect(voter).await.map_err(|e| e.to_string())?;
        s.write_all(&buf).await.map_err(|e| e.to_string())?;
        let mut size = [0u8; 4];
        s.read_exact(&mut size).await.map_err(|e| e.to_string())?;
        let mut frame = vec![0u8; i32::from_be_bytes(size).clamp(0, 1 << 20) as usize];
        s.read_exact(&mut frame).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Answers one connection on listener `listener`.
async fn serve(mut s: TcpStream, b: Arc<Broker>, listener: String) {
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
        let out = match key {
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
