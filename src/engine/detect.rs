//! Which container is the Kafka broker, and which adapter fits it, and why.
//!
//! The choice is made from what the pod actually contains, in this order:
//! 1. the broker's command assigns `advertised.listeners` itself: **adopt** its external listener
//!    when it has one with a per-broker port, else **unsupported**;
//! 2. the env already advertises a listener of the configured name, or binds one that the
//!    container's startup script advertises: **adopt**;
//! 3. the broker reads a `server.properties` that an init container writes: **properties**;
//! 4. the env configures listeners: **env**;
//! 5. otherwise **unsupported**.
//!
//! Where 1 to 5 refuse and the container's script runs the image's `kafka-server-start.sh` (or
//! the command runs a script from a ConfigMap) on an image whose start script kafka-expose knows,
//! the **launch** adapter acts at that launch instead. It replaces only refusals: a broker that
//! another adapter serves keeps it, because those act before the broker's container starts and
//! need no run of the broker's image in an init container.
//!
//! `kafka-expose.io/adapter` forces a choice instead.

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::adapters::Adapter;
use super::adapters::adopt::{self, TargetPort};
use super::adapters::env::{self, Flavor};
use super::adapters::{launch, properties};
use super::exposure::{Decision, Exposure, Skip};
use crate::config::{
    AdapterChoice, AdvertisedHost, ConfigError, DEFAULT_CONTAINER_PORT, ExposeConfig,
};
use crate::kafka::external::{choose_protocol, tls_warning};
use crate::names::{full_key, is_own_port_name, keys};

/// The container that runs the broker.
#[derive(Debug, Clone)]
pub struct Broker<'a> {
    /// The pod spec it is in.
    pub spec: &'a PodSpec,
    pub index: usize,
    pub container: &'a Container,
    pub why: String,
}

/// Finds the broker container: the one named by `kafka-expose.io/container`, else the
/// best-scoring container by its env, image, name, command and ports.
pub fn find_broker<'a>(
    spec: &'a PodSpec,
    named: Option<&str>,
) -> Result<Option<Broker<'a>>, ConfigError> {
    if let Some(name) = named {
        return match spec.containers.iter().position(|c| c.name == name) {
            Some(index) => Ok(Some(Broker {
                spec,
                index,
                container: &spec.containers[index],
                why: format!("named by {}", full_key(keys::CONTAINER)),
            })),
            None => {
                let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
                Err(ConfigError::one(
                    keys::CONTAINER,
                    name,
                    format!(
                        "no container of that name; containers: {}",
                        names.join(", ")
                    ),
                ))
            }
        };
    }
    let best = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (i, score(c)))
        .filter(|(_, (s, _))| *s >= 2)
        .max_by_key(|(i, (s, _))| (*s, std::cmp::Reverse(*i)));
    Ok(best.map(|(index, (_, why))| Broker {
        spec,
        index,
        container: &spec.containers[index],
        why,
    }))
}

fn score(c: &Container) -> (u32, String) {
    let image = c.image.as_deref().unwrap_or_default().to_ascii_lowercase();
    let repo = image.split(['@']).next().unwrap_or_default();
    let repo = repo
        .rsplit_once(':')
        .map_or(repo, |(r, tag)| if tag.contains('/') { repo } else { r });
    let name = c.name.to_ascii_lowercase();
    for other in [
        "zookeeper",
        "exporter",
        "schema-registry",
        "connect",
        "ksql",
        "rest-proxy",
    ] {
        if repo.contains(other) || name.contains(other) {
            return (0, String::new());
        }
    }
    let mut s = 0;
    let mut why = Vec::new();
    let listener_env = [Flavor::Bitnami, Flavor::Apache]
        .iter()
        .any(|f| env::configures_listeners(c, *f))
        || env::process_roles(c).is_some();
    if listener_env {
        s += 4;
        why.push("Kafka listener variables");
    }
    let kafka_image = repo.contains("kafka") || repo.ends_with("cp-server");
    if kafka_image {
        s += 2;
        why.push("a Kafka image");
    }
    let script: String = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .cloned()
        .collect();
    if [
        "kafka-server-start",
        "/etc/confluent/docker/run",
        "/etc/kafka/docker/run",
        "advertised",
    ]
    .iter()
    .any(|p| script.contains(p))
    {
        s += 2;
        why.push("a Kafka start command");
    }
    if name.contains("kafka") || name.contains("broker") {
        s += 1;
        why.push("its name");
    }
    if c.ports.iter().flatten().any(|p| p.container_port == 9092) {
        s += 1;
        why.push("port 9092");
    }
    (s, why.join(", "))
}

/// Chooses the adapter for the broker of `spec` under `cfg`: the exposure, or why there is none.
pub fn detect(spec: &PodSpec, cfg: ExposeConfig) -> Result<Decision<'_>, ConfigError> {
    let Some(broker) = find_broker(spec, cfg.container.as_deref())? else {
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        return Ok(Decision::Skip(Skip::NoBroker(format!(
            "no Kafka broker container among {}; set {} if one is",
            names.join(", "),
            full_key(keys::CONTAINER)
        ))));
    };
    let c = broker.container;
    if env::is_controller_only(c) {
        return Ok(Decision::Skip(Skip::ControllerOnly {
            container: c.name.clone(),
        }));
    }
    let flavor = Flavor::of(c);
    let script = adopt::scan_script(c);
    let mut notes = Vec::new();

    let chosen = match cfg.adapter {
        AdapterChoice::Adopt => adopt::from_script(c, &script, &cfg)
            .or_else(|| adopt::from_env(c, flavor, &cfg))
            .or_else(|| adopt::from_env_bound(spec, c, flavor, &cfg))
            .unwrap_or_else(|| Ok(adopt::from_annotations(&cfg)))
            .map(|p| {
                let why = format!(
                    "forced by annotation; listener {} from {}",
                    p.listener_name, p.source
                );
                (Adapter::Adopt(p), why)
            }),
        AdapterChoice::Properties => match properties::find_target(spec, c) {
            properties::Found::Target(t) => {
                let why = format!(
                    "forced by annotation; {} is written by init container {}",
                    t.file, t.writer
                );
                Ok((Adapter::Properties(t), why))
            }
            properties::Found::Unusable(why) => {
                return Err(ConfigError::one(keys::ADAPTER, "properties", why));
            }
            properties::Found::Nothing => {
                return Err(ConfigError::one(
                    keys::ADAPTER,
                    "properties",
                    "the broker mounts no server.properties that an init container writes; try adapter=env",
                ));
            }
        },
        AdapterChoice::Launch => match launch::find(spec, c, script.launches.as_deref()) {
            launch::Found::Target(t) => {
                let why = format!(
                    "forced by annotation; {} runs the image's {}, which kafka-expose stands in for",
                    t.start, t.script
                );
                Ok((Adapter::Launch(t), why))
            }
            launch::Found::Unusable(why) => {
                return Err(ConfigError::one(keys::ADAPTER, "launch", why));
            }
            launch::Found::Nothing => {
                match launch::family_of(c.image.as_deref().unwrap_or_default()) {
                    // Forced: the script is not visible (an image's own entrypoint that ends in it).
                    Some((family, script)) => Ok((
                        Adapter::Launch(launch::Target {
                            script: script.to_string(),
                            family,
                            start: "the image's own entrypoint".into(),
                        }),
                        format!(
                            "forced by annotation; kafka-expose stands in for the image's {script}"
                        ),
                    )),
                    None => {
                        return Err(ConfigError::one(
                            keys::ADAPTER,
                            "launch",
                            format!(
                                "image {} is not of a family whose start script kafka-expose knows",
                                c.image.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                }
            }
        },
        AdapterChoice::Env => match env::unsupported_reason(c, flavor) {
            None => Ok((
                Adapter::Env(flavor),
                format!("forced by annotation; {}", flavor.describe()),
            )),
            Some(why) => return Err(ConfigError::one(keys::ADAPTER, "env", why)),
        },
        AdapterChoice::Auto => auto(spec, c, flavor, &script, &cfg)
            .or_else(|refused| at_launch(spec, c, &script, refused)),
    };
    let (adapter, reason) = match chosen {
        Ok(chosen) => chosen,
        Err(why) => return Ok(Decision::Skip(Skip::Unsupported(why))),
    };

    if let Adapter::Properties(_) = adapter
        && let Some(p) = c.ports.iter().flatten().find(|p| {
            p.name.as_deref().is_some_and(|n| {
                let n = n.to_ascii_lowercase();
                n.contains("outside") || n.contains("external")
            })
        })
    {
        notes.push(format!(
            "the broker declares port {:?}; if the chart already advertises an external listener, set kafka-expose.io/adapter=adopt",
            p.name.as_deref().unwrap_or_default()
        ));
    }

    if let Adapter::Adopt(plan) = &adapter {
        adopt::check_mode(plan, &cfg)?;
        if plan.port_base.is_none() && cfg.port_base.is_none() {
            notes.push(format!(
                "the ports {} advertises are not visible to kafka-expose, which assumes {} + broker ordinal; set {} to the chart's first NodePort if it differs",
                plan.listener_name,
                cfg.port_base_or_default(),
                full_key(keys::PORT_BASE)
            ));
        }
    }
    let (listener_name, target, port_base) = match &adapter {
        Adapter::Adopt(plan) => (
            plan.listener_name.clone(),
            plan.target,
            adopt::port_base(plan, &cfg)?,
        ),
        _ => {
            let port = container_port(c, &adapter, &cfg, &mut notes)?;
            (
                cfg.listener_name.clone(),
                TargetPort::Fixed(port),
                cfg.port_base_or_default(),
            )
        }
    };

    if let Some(t) = cfg.external_tls.secret_template() {
        tls_fits(c, &adapter, &cfg)?;
        let from = match &cfg.external_tls {
            crate::config::ExternalTls::Ca(ca) => format!(
                "signed by kafka-expose with the CA of Secret {ca} into the Secret {} of each broker",
                t.as_str()
            ),
            _ => format!(
                "from the kubernetes.io/tls Secret {} of each broker",
                t.as_str()
            ),
        };
        notes.push(format!(
            "the external listener serves its own certificate, {from}; the broker starts only once that certificate names the host it advertises"
        ));
    }

    // The webhook knows the env adapter's protocol; the properties adapter learns it from the
    // file at start, through the same choice.
    let (client, protocol) = match &adapter {
        Adapter::Env(f) => {
            let client = env::listener_set(c, *f).client_listener();
            let choice = choose_protocol(cfg.security_protocol, client.as_ref());
            notes.extend(choice.warning());
            let protocol = match cfg.external_tls.is_on() {
                true => crate::kafka::tls::with_tls(choice.protocol),
                false => choice.protocol,
            };
            (client, Some(protocol))
        }
        _ => (None, cfg.security_protocol),
    };
    let tls_warning = match (protocol, &adapter) {
        _ if cfg.external_tls.is_on() => None,
        (Some(p), _) if p.is_tls() => Some(tls_warning(protocol, &advertised_hosts(&cfg))),
        (None, Adapter::Properties(t)) if shows_tls(spec, c, &t.writer) => {
            Some(tls_warning(None, &advertised_hosts(&cfg)))
        }
        (None, Adapter::Launch(_)) if shows_tls(spec, c, "") => {
            Some(tls_warning(None, &advertised_hosts(&cfg)))
        }
        _ => None,
    };
    notes.extend(tls_warning.clone());

    Ok(Decision::Expose(Box::new(Exposure {
        config: cfg,
        broker,
        adapter,
        reason,
        notes,
        listener_name,
        target,
        port_base,
        protocol,
        client,
        tls_warning,
    })))
}

/// Whether the external listener can have a certificate of its own with this adapter and image
/// (`external-tls`); the error says why not.
fn tls_fits(c: &Container, adapter: &Adapter, cfg: &ExposeConfig) -> Result<(), ConfigError> {
    if !cfg.external_tls.is_on() {
        return Ok(());
    }
    let value = cfg.external_tls.to_annotation();
    let refuse = |why: String| Err(ConfigError::one(keys::EXTERNAL_TLS, &value, why));
    let image = c.image.as_deref().unwrap_or_default();
    if let Some(version) = kafka_before_2_7(image) {
        return refuse(format!(
            "image {image} runs Kafka {version}, and a listener's own PEM certificate needs Kafka 2.7 or later (KIP-651)"
        ));
    }
    match adapter {
        Adapter::Adopt(plan) => refuse(format!(
            "the chart's own external listener {} is adopted, and keeps the chart's TLS; kafka-expose gives a certificate only to the listener it adds",
            plan.listener_name
        )),
        Adapter::Env(Flavor::Bitnami) => refuse(
            "the Bitnami image's setup refuses an SSL listener in its KAFKA_CFG_* variables unless the chart mounts its own keystore in /opt/bitnami/kafka/config/certs, and then sets broker-wide key store passwords that a PEM key store cannot have".into(),
        ),
        Adapter::Env(flavor @ Flavor::Apache) => {
            if cfg.listener_name.to_ascii_uppercase().ends_with("SSL") {
                return refuse(format!(
                    "the image's setup reads a listener named like {}:// as the chart's own SSL and asks for the chart's key store; set kafka-expose.io/listener-name to a name that does not end in SSL",
                    cfg.listener_name
                ));
            }
            let tls = crate::kafka::tls::ListenerTls {
                dir: String::new(),
                client_auth: cfg.tls_client_auth,
            };
            let present = |key: &str| {
                let suffix = key.to_ascii_uppercase().replace('.', "_");
                let credentials = suffix.replace("_PASSWORD", "_CREDENTIALS");
                env::find(c, &[format!("{}{suffix}", flavor.prefix()), format!("KAFKA_{credentials}")]).is_some()
            };
            let blocked = crate::kafka::tls::conflicts(&tls, present);
            match blocked.is_empty() {
                true => Ok(()),
                false => refuse(crate::kafka::tls::conflict_message(&blocked)),
            }
        }
        Adapter::Properties(_) | Adapter::Launch(_) => Ok(()),
    }
}

/// The Kafka version of an image known to run one before 2.7: Bitnami's tags are Kafka's version,
/// Confluent's cp-kafka and cp-server 6.1 ship Kafka 2.7. `None` when it is 2.7 or later, or not
/// known from the tag.
fn kafka_before_2_7(image: &str) -> Option<String> {
    let name = image.split('@').next().unwrap_or(image);
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => return None,
    };
    let mut parts = tag.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().flatten()?, parts.next().flatten()?);
    let repo = repo.rsplit('/').take(2).collect::<Vec<_>>();
    let last = repo.first().copied().unwrap_or_default();
    if last == "kafka" && repo.get(1).is_some_and(|o| o.starts_with("bitnami")) {
        return ((major, minor) < (2, 7)).then(|| format!("{major}.{minor}"));
    }
    if matches!(last, "cp-kafka" | "cp-server") && (major, minor) < (6, 1) {
        return Some(format!("before 2.7 (Confluent Platform {major}.{minor})"));
    }
    None
}

/// What the brokers advertise, for people.
fn advertised_hosts(cfg: &ExposeConfig) -> String {
    match &cfg.advertised_host {
        AdvertisedHost::HostIp => "their nodes' IP addresses".into(),
        AdvertisedHost::Template(t) => format!("names like {}", t.as_str()),
        AdvertisedHost::Static(hosts) => hosts.join(", "),
        AdvertisedHost::LoadBalancer
            if cfg.mode == crate::config::ExposeMode::SharedLoadBalancer =>
        {
            "the address of their one shared LoadBalancer, each on its own port".into()
        }
        AdvertisedHost::LoadBalancer => "their LoadBalancers' addresses".into(),
        AdvertisedHost::Node(types) => format!(
            "their nodes' {} addresses (put on each pod when it is bound to its node, by kafka-expose's binding webhook or else its reconciler)",
            super::pod::type_list(types)
        ),
    }
}

/// Whether the broker or the init container that writes its configuration carries TLS material:
/// a variable about TLS, SSL or a keystore, or a Secret volume named for TLS.
fn shows_tls(spec: &PodSpec, broker: &Container, writer: &str) -> bool {
    let tlsish = |s: &str| {
        let s = s.to_ascii_uppercase();
        s.contains("TLS") || s.contains("SSL") || s.contains("KEYSTORE")
    };
    let writer = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == writer);
    let vars = std::iter::once(broker)
        .chain(writer)
        .flat_map(|c| c.env.iter().flatten())
        .any(|e| tlsish(&e.name));
    let secrets = spec.volumes.iter().flatten().any(|v| {
        v.secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref())
            .is_some_and(tlsish)
    });
    vars || secrets
}

/// Where every other adapter refused: the launch adapter, if the broker is started by a script
/// that runs the image's `kafka-server-start.sh`; else the refusal, with the launch's own reason
/// when there is one.
fn at_launch(
    spec: &PodSpec,
    c: &Container,
    script: &adopt::ScriptListeners,
    refused: String,
) -> Result<(Adapter, String), String> {
    if script.sets_advertised() && script.launches.is_none() {
        return Err(refused);
    }
    match launch::find(spec, c, script.launches.as_deref()) {
        launch::Found::Target(t) => {
            let why = format!(
                "{} starts the broker with the image's {} on the configuration it is given, which no edit before the start would reach; kafka-expose stands in for that script and adds its listener to a copy of that file",
                t.start, t.script
            );
            Ok((Adapter::Launch(t), why))
        }
        launch::Found::Unusable(why) => Err(format!(
            "{refused}; and the launch adapter cannot stand in either: {why}"
        )),
        launch::Found::Nothing => Err(refused),
    }
}

/// The adapter the pod's contents call for, and why; `Err` says why none fits.
fn auto(
    spec: &PodSpec,
    c: &Container,
    flavor: Flavor,
    script: &adopt::ScriptListeners,
    cfg: &ExposeConfig,
) -> Result<(Adapter, String), String> {
    if script.sets_advertised() {
        return match adopt::from_script(c, script, cfg) {
            Some(plan) => plan.map(|p| {
                let why = format!(
                    "{} already advertises {} at {} on a per-broker port; adopted",
                    p.source, p.listener_name, p.host
                );
                (Adapter::Adopt(p), why)
            }),
            // The charts on the official apache/kafka image (the script writes the whole file,
            // then starts the broker on it) go on to the launch adapter.
            None => Err("the container's startup script sets advertised.listeners itself, so an added listener would be overwritten; set kafka-expose.io/adapter if the script reads one".to_string()),
        };
    }
    if script.listeners.is_some() {
        return Err(if script.overrides {
            "the broker's command sets listeners with kafka-server-start.sh --override, which wins over the env and the properties file, so an added listener would be lost; move the listener settings to KAFKA_* variables (or server.properties) so kafka-expose can add to them".to_string()
        } else {
            "the container's startup script sets listeners itself, so a listener added in the env would be overwritten; set the listeners in the env instead, or kafka-expose.io/adapter if the script reads them".to_string()
        });
    }
    if let Some(plan) = adopt::from_env(c, flavor, cfg) {
        return plan.map(|p| {
            let why = format!("the env already advertises {}; adopted", p.listener_name);
            (Adapter::Adopt(p), why)
        });
    }
    if let Some(plan) = adopt::from_env_bound(spec, c, flavor, cfg) {
        return plan.map(|p| {
            let why = format!("{}; adopted", p.source);
            (Adapter::Adopt(p), why)
        });
    }
    match properties::find_target(spec, c) {
        properties::Found::Target(t) => {
            if let Some(plan) = adopt::from_external_access(spec, c, &t.writer) {
                return plan.map(|p| {
                    let why = format!(
                        "{} already advertises {} at {} on a per-broker port; adopted",
                        p.source, p.listener_name, p.host
                    );
                    (Adapter::Adopt(p), why)
                });
            }
            let why = format!(
                "the broker reads {} written at start by init container {}",
                t.file, t.writer
            );
            return Ok((Adapter::Properties(t), why));
        }
        properties::Found::Unusable(why) => return Err(why),
        properties::Found::Nothing => {}
    }
    if env::configures_listeners(c, flavor) {
        return match env::unsupported_reason(c, flavor) {
            None => Ok((
                Adapter::Env(flavor),
                format!("the broker is configured by {}", flavor.describe()),
            )),
            Some(why) => Err(why),
        };
    }
    Err("no listener configuration found in the env, the command or a server.properties written at start".to_string())
}

/// The container port of the external listener: as set, else the default moved to the first free
/// port above it. Ports the broker already uses (its declared ports and, in the env, its bound
/// listeners) are never taken; kafka-expose's own port and listener do not count, so that a
/// mutated pod resolves to the same port again.
fn container_port(
    c: &Container,
    adapter: &Adapter,
    cfg: &ExposeConfig,
    notes: &mut Vec<String>,
) -> Result<u16, ConfigError> {
    let mut used: Vec<(u16, String)> = c
        .ports
        .iter()
        .flatten()
        .filter(|p| !p.name.as_deref().is_some_and(is_own_port_name))
        .filter_map(|p| {
            let port = u16::try_from(p.container_port).ok()?;
            Some((
                port,
                format!("port {}", p.name.as_deref().unwrap_or("(unnamed)")),
            ))
        })
        .collect();
    if let Adapter::Env(flavor) = adapter {
        for l in env::listener_set(c, *flavor).bound() {
            if l.name.eq_ignore_ascii_case(&cfg.listener_name) {
                continue;
            }
            if let Some(p) = l.port_number() {
                used.push((p, format!("listener {}", l.name)));
            }
        }
    }
    let taken = |p: u16| {
        used.iter()
            .find(|(u, _)| *u == p)
            .map(|(_, what)| what.clone())
    };
    if let Some(p) = cfg.container_port {
        if let Some(what) = taken(p) {
            let free = (p.saturating_add(1)..=u16::MAX).find(|q| taken(*q).is_none());
            return Err(ConfigError::one(
                keys::CONTAINER_PORT,
                &p.to_string(),
                format!(
                    "the broker already uses {p} ({what}); choose a free port{}",
                    free.map(|f| format!(", e.g. {f}")).unwrap_or_default()
                ),
            ));
        }
        return Ok(p);
    }
    let mut port = DEFAULT_CONTAINER_PORT;
    if let Some(what) = taken(port) {
        port = (port..=u16::MAX)
            .find(|q| taken(*q).is_none())
            .unwrap_or(DEFAULT_CONTAINER_PORT);
        notes.push(format!(
            "container port {DEFAULT_CONTAINER_PORT} is taken by {what}; the external listener binds {port}"
        ));
    }
    Ok(port)
}
