//! The **adopt** adapter: the chart already advertises an external listener of its own.
//!
//! cp-helm-charts exports `KAFKA_ADVERTISED_LISTENERS=...,EXTERNAL://${HOST_IP}:$((31090 +
//! ${KAFKA_BROKER_ID}))` in the container's command; Yolean's init script advertises
//! `OUTSIDE://<node InternalIP>:$((32400 + id))`. kafka-expose adds no second listener there. It
//! takes over the chart's port scheme (read from the script where the command shows it, else from
//! the annotations) and creates the Services that match it, which is all these charts lack.

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::env::{self, Flavor, Prop};
use crate::config::{
    AdvertisedHost, ConfigError, DEFAULT_CONTAINER_PORT, ExposeConfig, ExposeMode,
};
use crate::kafka::listeners::{Listener, parse_listeners};
use crate::names::keys;

/// The port the broker binds for the external listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetPort {
    /// The same container port on every broker.
    Fixed(u16),
    /// The broker with ordinal *n* binds `base + n`: images that derive `listeners` from the
    /// advertised ones, whose port is `base + broker id`.
    PerOrdinal(u16),
}

impl TargetPort {
    /// The container port of the broker with this ordinal.
    pub fn for_ordinal(self, ordinal: u32) -> u32 {
        match self {
            Self::Fixed(p) => p as u32,
            Self::PerOrdinal(base) => base as u32 + ordinal,
        }
    }
}

/// The chart's own external listener, as kafka-expose adopts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptPlan {
    pub listener_name: String,
    /// The advertised port base the chart uses, where the command shows it.
    pub port_base: Option<u16>,
    pub target: TargetPort,
    /// Where the chart gets the host it advertises, for people.
    pub host: String,
    /// Where this was read from, for people.
    pub source: String,
}

/// What a container's command and args assign to the listener settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptListeners {
    /// The value the script gives `advertised.listeners`, if it assigns it.
    pub advertised: Option<String>,
    /// The value the script gives `listeners`, if it assigns it.
    pub listeners: Option<String>,
    /// Whether it does so with `kafka-server-start.sh --override`.
    pub overrides: bool,
    /// The `kafka-server-start` the script starts the broker with, as it names it: the launch
    /// after which nothing the chart wrote changes.
    pub launches: Option<String>,
}

impl ScriptListeners {
    pub fn sets_advertised(&self) -> bool {
        self.advertised.is_some()
    }
}

/// Reads listener assignments from the container's command and args: `export
/// KAFKA_ADVERTISED_LISTENERS=...`, `KAFKA_CFG_...=`, `--override advertised.listeners=...`.
pub fn scan_script(c: &Container) -> ScriptListeners {
    let text: String = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    ScriptListeners {
        advertised: assigned(
            &text,
            &[
                "KAFKA_ADVERTISED_LISTENERS=",
                "KAFKA_CFG_ADVERTISED_LISTENERS=",
                "advertised.listeners=",
            ],
        ),
        listeners: assigned(
            &text,
            &[
                "KAFKA_LISTENERS=",
                "KAFKA_CFG_LISTENERS=",
                "override listeners=",
            ],
        ),
        overrides: text.contains("--override listeners="),
        launches: launched(&text),
    }
}

/// The path of the `kafka-server-start` (`.sh` or not) a script runs, as written.
fn launched(text: &str) -> Option<String> {
    let at = text.find("kafka-server-start")?;
    let start = text[..at]
        .rfind(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ';' | '(' | '&' | '|'))
        .map_or(0, |i| i + 1);
    let word = shell_word(&text[start..]);
    (!word.is_empty()).then_some(word)
}

/// The value assigned after the first of `patterns` in a shell script: a quoted string, or the
/// text up to the next unquoted blank.
fn assigned(text: &str, patterns: &[&str]) -> Option<String> {
    for pat in patterns {
        let Some(at) = text.find(pat) else { continue };
        // `KAFKA_LISTENERS=` must not match inside `KAFKA_ADVERTISED_LISTENERS=`.
        if pat.starts_with("KAFKA_") && at > 0 {
            let before = text[..at].chars().last().unwrap_or(' ');
            if before.is_ascii_alphanumeric() || before == '_' {
                continue;
            }
        }
        return Some(shell_word(&text[at + pat.len()..]));
    }
    None
}

/// The shell word at the start of `rest`: up to the first blank or command separator outside
/// quotes, `$((...))`, `$(...)` and `${...}`, with the quotes removed.
fn shell_word(rest: &str) -> String {
    let mut out = String::new();
    let mut depth = 0u32;
    let mut quote: Option<char> = None;
    for ch in rest.chars() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            } else {
                out.push(ch);
            }
            continue;
        }
        match ch {
            '"' | '\'' => {
                quote = Some(ch);
                continue;
            }
            '(' | '{' => depth += 1,
            ')' | '}' => depth = depth.saturating_sub(1),
            c if depth == 0 && (c.is_whitespace() || matches!(c, ';' | '&' | '|')) => break,
            _ => {}
        }
        out.push(ch);
    }
    out
}

/// A port written as a number, or as shell arithmetic on the broker id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortExpr {
    Fixed(u16),
    PerOrdinal(u16),
    Unknown,
}

/// Reads `9094`, `$((31090 + ${KAFKA_BROKER_ID}))` or `$((${ID} + 31090))`.
fn port_expr(port: &str) -> PortExpr {
    let p = port.trim();
    if let Ok(n) = p.parse() {
        return PortExpr::Fixed(n);
    }
    let Some(inner) = p.strip_prefix("$((").and_then(|s| s.strip_suffix("))")) else {
        return PortExpr::Unknown;
    };
    let terms: Vec<&str> = inner.split('+').map(str::trim).collect();
    if terms.len() != 2 {
        return PortExpr::Unknown;
    }
    let numbers: Vec<u16> = terms.iter().filter_map(|t| t.parse().ok()).collect();
    match numbers.as_slice() {
        [base] => PortExpr::PerOrdinal(*base),
        _ => PortExpr::Unknown,
    }
}

/// Describes where an advertised host comes from, resolving `${VAR}` to its downward-API field.
fn describe_host(c: &Container, host: &str) -> String {
    let var = host
        .trim_start_matches('$')
        .trim_start_matches(['{', '('])
        .trim_end_matches(['}', ')']);
    let field = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == var)
        .and_then(|e| e.value_from.as_ref())
        .and_then(|vf| vf.field_ref.as_ref())
        .map(|f| f.field_path.clone());
    match field {
        Some(f) if f == "status.hostIP" => "<its node's IP>".to_string(),
        Some(f) => format!("{host} = {f}"),
        None => host.to_string(),
    }
}

/// Adopts the external listener that the container's script advertises, when it has one:
/// the listener named by the configuration, else (with the default name) one whose port is
/// per-broker arithmetic.
pub fn from_script(
    c: &Container,
    script: &ScriptListeners,
    cfg: &ExposeConfig,
) -> Option<Result<AdoptPlan, String>> {
    let advertised = parse_listeners(script.advertised.as_deref()?);
    let pick: &Listener = advertised
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(&cfg.listener_name))
        .or_else(|| {
            advertised
                .iter()
                .find(|l| matches!(port_expr(&l.port), PortExpr::PerOrdinal(_)))
        })?;
    Some(plan_for(
        c,
        pick,
        script,
        cfg,
        "the container's startup script",
    ))
}

/// Adopts the listener the env advertises under the configured name.
pub fn from_env(
    c: &Container,
    flavor: Flavor,
    cfg: &ExposeConfig,
) -> Option<Result<AdoptPlan, String>> {
    let advertised = env::value(c, flavor, Prop::Advertised)?;
    if env::is_own_advertised(advertised, &cfg.listener_name) {
        return None;
    }
    let l = parse_listeners(advertised)
        .into_iter()
        .find(|l| l.name.eq_ignore_ascii_case(&cfg.listener_name))?;
    let script = ScriptListeners {
        advertised: Some(advertised.to_string()),
        listeners: env::value(c, flavor, Prop::Listeners).map(str::to_string),
        overrides: false,
        launches: None,
    };
    Some(plan_for(c, &l, &script, cfg, "the container's env"))
}

/// Adopts a listener that the env binds under the configured name but does not advertise, when
/// the container starts through a script file: the script advertises it, from a ConfigMap the
/// webhook does not read. Bitnami's chart up to 23.x with `externalAccess` is the case: its env
/// binds `EXTERNAL://:9094` and `/scripts/setup.sh` exports `KAFKA_CFG_ADVERTISED_LISTENERS` with
/// `EXTERNAL://${EXTERNAL_ACCESS_HOST}:${EXTERNAL_ACCESS_PORT}`. A second listener of that name
/// would clash with the chart's, so there is none; without a script the configuration is refused.
pub fn from_env_bound(
    spec: &PodSpec,
    c: &Container,
    flavor: Flavor,
    cfg: &ExposeConfig,
) -> Option<Result<AdoptPlan, String>> {
    let bound = parse_listeners(env::value(c, flavor, Prop::Listeners)?)
        .into_iter()
        .find(|l| l.name.eq_ignore_ascii_case(&cfg.listener_name))?;
    let advertised = env::value(c, flavor, Prop::Advertised).map(parse_listeners);
    if advertised
        .iter()
        .flatten()
        .any(|l| l.name.eq_ignore_ascii_case(&bound.name))
    {
        return None;
    }
    let Some((script, configmap)) = configmap_script(spec, c) else {
        return Some(Err(format!(
            "the env binds listener {} but advertises it nowhere, and the container runs no script from a ConfigMap that could; name kafka-expose's listener otherwise with {} (e.g. KX_EXTERNAL), or advertise the chart's",
            bound.name,
            crate::names::full_key(keys::LISTENER_NAME)
        )));
    };
    let Some(port) = bound.port_number() else {
        return Some(Err(format!(
            "the env binds listener {} without a port number",
            bound.name
        )));
    };
    Some(Ok(AdoptPlan {
        listener_name: bound.name.clone(),
        port_base: None,
        target: TargetPort::Fixed(port),
        host: format!("<the host {script} sets>"),
        source: format!(
            "the container's env, which binds {} on {port} for {script} (ConfigMap {configmap}) to advertise",
            bound.name
        ),
    }))
}

/// The script the container starts with when it comes from a ConfigMap (a command or argument
/// under the mount of a ConfigMap volume), with that ConfigMap's name.
fn configmap_script<'a>(spec: &PodSpec, c: &'a Container) -> Option<(&'a str, String)> {
    let mounts = c.volume_mounts.iter().flatten();
    let configmaps: Vec<(&str, &str)> = mounts
        .filter_map(|m| {
            let v = spec.volumes.iter().flatten().find(|v| v.name == m.name)?;
            let cm = v.config_map.as_ref()?;
            Some((m.mount_path.as_str(), cm.name.as_str()))
        })
        .collect();
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .take(3)
        .map(|s| s.trim())
        .find_map(|arg| {
            let (_, cm) = configmaps.iter().find(|(path, _)| {
                arg == *path
                    || arg
                        .strip_prefix(path.trim_end_matches('/'))
                        .is_some_and(|rest| rest.starts_with('/'))
            })?;
            Some((arg, cm.to_string()))
        })
}

fn plan_for(
    c: &Container,
    l: &Listener,
    script: &ScriptListeners,
    cfg: &ExposeConfig,
    source: &str,
) -> Result<AdoptPlan, String> {
    let advertised_port = port_expr(&l.port);
    let port_base = match advertised_port {
        PortExpr::PerOrdinal(b) => Some(b),
        PortExpr::Fixed(p) => {
            return Err(format!(
                "{source} advertises {}://{}:{p}, the same port on every broker, which one NodePort per broker cannot serve",
                l.name, l.host
            ));
        }
        PortExpr::Unknown => None,
    };
    let bound = script
        .listeners
        .as_deref()
        .map(parse_listeners)
        .unwrap_or_default()
        .into_iter()
        .find(|b| b.name.eq_ignore_ascii_case(&l.name));
    let target = match (bound.as_ref().and_then(Listener::port_number), port_base) {
        (Some(p), _) => TargetPort::Fixed(p),
        // cp-kafka and apache/kafka derive `listeners` from the advertised ones: the broker binds
        // its advertised port.
        (None, Some(base)) if script.listeners.is_none() && Flavor::of(c) == Flavor::Apache => {
            TargetPort::PerOrdinal(base)
        }
        _ => TargetPort::Fixed(cfg.container_port.unwrap_or(DEFAULT_CONTAINER_PORT)),
    };
    Ok(AdoptPlan {
        listener_name: l.name.clone(),
        port_base,
        target,
        host: describe_host(c, &l.host),
        source: source.to_string(),
    })
}

/// Adopts Bitnami's own `externalAccess`: the chart's init container (named by
/// `writer`) appends `EXTERNAL://<EXTERNAL_ACCESS_HOST>:<this broker's port>` to
/// `advertised.listeners` when `EXTERNAL_ACCESS_ENABLED` is true, the broker binds the container
/// port named `external`, and the chart makes a NodePort Service per broker. kafka-expose adds no
/// second listener there; its ports are read from `EXTERNAL_ACCESS_PORTS_LIST` (one per broker,
/// which must be `base + ordinal`) or `EXTERNAL_ACCESS_PORT` with `…_AUTOINCREMENT`.
pub fn from_external_access(
    spec: &PodSpec,
    broker: &Container,
    writer: &str,
) -> Option<Result<AdoptPlan, String>> {
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == writer)?;
    let var = |name: &str| {
        init.env
            .iter()
            .flatten()
            .find(|e| e.name == name && e.value_from.is_none())
            .and_then(|e| e.value.as_deref())
    };
    let enabled = var("EXTERNAL_ACCESS_ENABLED")
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "yes"));
    if !enabled {
        return None;
    }
    let source = format!("the chart's externalAccess (init container {writer})");
    let port = broker
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("external"))
        .and_then(|p| u16::try_from(p.container_port).ok());
    let Some(port) = port else {
        return Some(Err(format!(
            "{source} is enabled, but the broker declares no container port named external"
        )));
    };
    let port_base = match (
        var("EXTERNAL_ACCESS_PORTS_LIST"),
        var("EXTERNAL_ACCESS_PORT"),
    ) {
        (Some(list), _) => {
            let ports: Vec<u32> = list
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            let per_ordinal = ports
                .iter()
                .enumerate()
                .all(|(i, p)| *p == ports[0] + i as u32);
            match (ports.first(), per_ordinal) {
                (Some(&first), true) => u16::try_from(first).ok(),
                _ => {
                    return Some(Err(format!(
                        "{source} advertises the ports {list}, which are not base + broker ordinal"
                    )));
                }
            }
        }
        (None, Some(p))
            if var("EXTERNAL_ACCESS_PORT_AUTOINCREMENT")
                .is_some_and(|v| matches!(v.trim(), "true" | "yes")) =>
        {
            p.trim().parse().ok()
        }
        _ => {
            return Some(Err(format!(
                "{source} advertises the same port on every broker (or one found at start), which one NodePort per broker cannot serve"
            )));
        }
    };
    let host = var("EXTERNAL_ACCESS_HOST").unwrap_or("as the chart's script finds it");
    let host = describe_host(init, host);
    Some(Ok(AdoptPlan {
        listener_name: "EXTERNAL".into(),
        port_base,
        target: TargetPort::Fixed(port),
        host,
        source,
    }))
}

/// Adopts by annotation alone (`adapter: adopt`), for charts whose script the webhook cannot see,
/// such as Yolean's, which lives in a ConfigMap.
pub fn from_annotations(cfg: &ExposeConfig) -> AdoptPlan {
    AdoptPlan {
        listener_name: cfg.listener_name.clone(),
        port_base: None,
        target: TargetPort::Fixed(cfg.container_port.unwrap_or(DEFAULT_CONTAINER_PORT)),
        host: "<the host the chart's script sets>".into(),
        source: "the annotations".into(),
    }
}

/// The port base in force for an adopted listener: the chart's own where it shows, which an
/// explicit, different `port-base` would contradict.
pub fn port_base(plan: &AdoptPlan, cfg: &ExposeConfig) -> Result<u16, ConfigError> {
    match (plan.port_base, cfg.port_base) {
        (Some(chart), Some(set)) if chart != set => Err(ConfigError::one(
            keys::PORT_BASE,
            &set.to_string(),
            format!(
                "the chart already advertises {} on port {chart} + broker id; remove port-base or set it to {chart}",
                plan.listener_name
            ),
        )),
        (Some(chart), _) => Ok(chart),
        (None, _) => Ok(cfg.port_base_or_default()),
    }
}

/// An adopted listener advertises the node's address and the chart's NodePort scheme, which only
/// `expose=nodeport` with the node's IP can route to.
pub fn check_mode(plan: &AdoptPlan, cfg: &ExposeConfig) -> Result<(), ConfigError> {
    if cfg.mode != ExposeMode::NodePort {
        return Err(ConfigError::one(
            keys::EXPOSE,
            cfg.mode.as_str(),
            format!(
                "the chart advertises its own listener {} ({}), which only expose=nodeport routes to; use nodeport, or adapter=env/properties if the chart can be configured so",
                plan.listener_name, plan.source
            ),
        ));
    }
    if cfg.advertised_host != AdvertisedHost::HostIp {
        return Err(ConfigError::one(
            keys::ADVERTISED_HOST,
            &cfg.advertised_host.to_annotation(),
            format!(
                "the chart advertises its own host for {}; remove advertised-host",
                plan.listener_name
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_arithmetic_on_the_broker_id_is_a_per_broker_scheme() {
        assert_eq!(
            port_expr("$((31090 + ${KAFKA_BROKER_ID}))"),
            PortExpr::PerOrdinal(31090)
        );
        assert_eq!(port_expr("$((${ID} + 32400))"), PortExpr::PerOrdinal(32400));
        assert_eq!(port_expr("9094"), PortExpr::Fixed(9094));
        assert_eq!(port_expr("${PORT}"), PortExpr::Unknown);
    }

    #[test]
    fn assignments_are_read_from_scripts() {
        let s = "export KAFKA_BROKER_ID=${HOSTNAME##*-} && \\\nexport KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://x:9092,EXTERNAL://${HOST_IP}:$((31090 + ${KAFKA_BROKER_ID})) && \\\nexec run";
        assert_eq!(
            assigned(s, &["KAFKA_ADVERTISED_LISTENERS="]).as_deref(),
            Some("PLAINTEXT://x:9092,EXTERNAL://${HOST_IP}:$((31090 + ${KAFKA_BROKER_ID}))")
        );
        assert_eq!(assigned(s, &["KAFKA_LISTENERS="]), None);
        let q = "export KAFKA_ADVERTISED_LISTENERS=\"A://h:1,B://h:2\"";
        assert_eq!(
            assigned(q, &["KAFKA_ADVERTISED_LISTENERS="]).as_deref(),
            Some("A://h:1,B://h:2")
        );
    }
}
