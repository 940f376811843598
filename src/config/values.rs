//! One small parser per configuration key: the text of a value in, the typed value or what is
//! wrong with it out. They know nothing of where the value came from (an annotation today, a
//! policy's field next); [`super::parse`] reads each key through them and names the source.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::template::Template;
use super::{AdapterChoice, AdvertisedHost, ExposeMode, ExternalTls, TrafficPolicy};
use crate::kafka::SecurityProtocol;
use crate::kafka::tls::ClientAuth;

/// `expose`: a mode, or `None` for `off`.
pub fn expose(v: &str) -> Result<Option<ExposeMode>, String> {
    match v.to_ascii_lowercase().as_str() {
        "off" => Ok(None),
        "nodeport" => Ok(Some(ExposeMode::NodePort)),
        "loadbalancer" => Ok(Some(ExposeMode::LoadBalancer)),
        "hostport" => Ok(Some(ExposeMode::HostPort)),
        "shared-loadbalancer" => Ok(Some(ExposeMode::SharedLoadBalancer)),
        "gateway" => Ok(Some(ExposeMode::Gateway)),
        _ => Err(
            "allowed: nodeport, loadbalancer, shared-loadbalancer, hostport, gateway, off".into(),
        ),
    }
}

/// Any port key.
pub fn port(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("must be a port number from 1 to 65535".into()),
    }
}

/// `advertised-host`, under the exposure `mode`.
pub fn advertised_host(v: &str, mode: ExposeMode) -> Result<AdvertisedHost, String> {
    let shared = mode == ExposeMode::SharedLoadBalancer;
    if v == "host-ip" {
        if shared {
            return Err(SHARED_HOSTS.into());
        }
        return Ok(AdvertisedHost::HostIp);
    }
    if v == "loadbalancer" {
        if !mode.is_load_balancer() {
            return Err("needs kafka-expose.io/expose=loadbalancer (a LoadBalancer Service per broker) or shared-loadbalancer (one for all)".into());
        }
        return Ok(AdvertisedHost::LoadBalancer);
    }
    if let Some(t) = v.strip_prefix("template:") {
        let tpl = Template::parse(t)?;
        let text = tpl.literal_text();
        if t.trim().is_empty() || !text.chars().all(is_host_char) {
            return Err("the template must render to a DNS name or IP, e.g. template:kafka-{ordinal}.example.com".into());
        }
        // Behind one shared load balancer every broker may advertise the same name: the port
        // tells them apart.
        if !shared && !t.contains("{ordinal}") && !t.contains("{pod}") {
            return Err("the template must differ per broker: use {ordinal} or {pod}, e.g. template:kafka-{ordinal}.example.com".into());
        }
        return Ok(AdvertisedHost::Template(tpl));
    }
    if let Some(list) = v.strip_prefix("node:") {
        let allowed = || {
            super::NodeAddressType::ALL
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut types = Vec::new();
        for t in list.split(',').map(str::trim) {
            match super::NodeAddressType::parse(t) {
                Some(t) if !types.contains(&t) => types.push(t),
                Some(_) => return Err(format!("node: names {t} twice")),
                None => {
                    return Err(format!(
                        "node: takes Node address types in order of preference, e.g. node:ExternalDNS,ExternalIP; {t:?} is not one of {}",
                        allowed()
                    ));
                }
            }
        }
        if mode.is_load_balancer() {
            return Err("node: advertises the broker's node, which expose=nodeport or hostport reaches; a LoadBalancer has an address of its own".into());
        }
        return Ok(AdvertisedHost::Node(types));
    }
    if let Some(list) = v.strip_prefix("static:") {
        let hosts: Vec<String> = list.split(',').map(|h| h.trim().to_string()).collect();
        let bad: Vec<&String> = hosts.iter().filter(|h| !is_host(h)).collect();
        if !bad.is_empty() {
            return Err(format!(
                "static: needs one DNS name or IP per broker, separated by commas; not hosts: {bad:?}"
            ));
        }
        return Ok(AdvertisedHost::Static(hosts));
    }
    Err("allowed: host-ip, node:<types, e.g. ExternalDNS,ExternalIP>, template:<name with {ordinal} {pod} {statefulset} {namespace}>, static:<host0>,<host1>,..., loadbalancer".into())
}

/// `gateway`: `<namespace>/<name>` or `<namespace>/<name>/<listener sectionName>`, each part a
/// DNS label (a Gateway's and a namespace's name; a listener's name is a DNS-1123 subdomain
/// upstream, but a label in practice).
pub fn gateway(v: &str) -> Result<super::GatewayRef, String> {
    const FORM: &str = "must be <namespace>/<name> or <namespace>/<name>/<listener sectionName>, e.g. infra/public or infra/public/kafka-tls";
    let parts: Vec<&str> = v.split('/').map(str::trim).collect();
    let (namespace, name, section) = match parts.as_slice() {
        [ns, name] => (*ns, *name, None),
        [ns, name, section] => (*ns, *name, Some(*section)),
        _ => return Err(FORM.into()),
    };
    for part in [Some(namespace), Some(name), section].into_iter().flatten() {
        if !is_dns_label(part) {
            return Err(format!(
                "{FORM}; {part:?} is not a name (lower-case letters, digits and '-', at most 63)"
            ));
        }
    }
    Ok(super::GatewayRef {
        namespace: namespace.into(),
        name: name.into(),
        section: section.map(str::to_string),
    })
}

/// `bootstrap-host`: a DNS name (a Gateway routes by name; an IP cannot be an SNI name).
pub fn bootstrap_host(v: &str) -> Result<String, String> {
    if v.parse::<IpAddr>().is_err() && is_dns_name(v) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err("must be a DNS name, e.g. kafka.example.com: the Gateway routes the bootstrap by the name the client dials (SNI), which cannot be an IP".into())
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Why `host-ip` and `node:` do not go with a shared load balancer.
const SHARED_HOSTS: &str = "with expose=shared-loadbalancer the brokers are reached at the load balancer's address: use loadbalancer (the default), or template:/static: with a DNS name for it";

/// `load-balancer-max-ports`: how many ports (listeners) the shared load balancer takes.
pub fn max_ports(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a whole number from 1, the most listeners the cloud's load balancer takes (AWS NLB: 50)".into()),
    }
}

/// `listener-name`: a Kafka listener name that is not a protocol name.
pub fn listener_name(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && SecurityProtocol::parse(v).is_none();
    if ok {
        Ok(v.to_string())
    } else {
        Err(
            "must be letters, digits and underscores, and not a protocol name such as PLAINTEXT"
                .into(),
        )
    }
}

/// `external-tls`: `off`, `ca:<Secret>`, `issuer:<Issuer|ClusterIssuer>/<name>` or
/// `secret:<name template>`.
pub fn external_tls(v: &str) -> Result<ExternalTls, String> {
    const ALLOWED: &str =
        "allowed: off, secret:<Secret name, may use {ordinal} {pod} {statefulset} {namespace}>";
    if v == "off" {
        return Ok(ExternalTls::Off);
    }
    if let Some(name) = v.strip_prefix("secret:") {
        let tpl = Template::parse(name)?;
        let text = tpl.literal_text();
        let ok = !name.trim().is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok {
            return Err(format!(
                "{name:?} is not a Secret name (lower-case letters, digits, '-' and '.'), e.g. secret:{{pod}}-external-tls"
            ));
        }
        return Ok(ExternalTls::Secret(tpl));
    }
    if let Some(secret) = v.strip_prefix("ca:") {
        let ok = !secret.is_empty()
            && secret.len() <= 253
            && secret
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok {
            return Err(format!(
                "{secret:?} is not a Secret name (lower-case letters, digits, '-' and '.'): ca:<the kubernetes.io/tls Secret holding the CA's certificate and key, in the workload's namespace>"
            ));
        }
        return Ok(ExternalTls::Ca(secret.to_string()));
    }
    if let Some(rest) = v.strip_prefix("issuer:") {
        let hint =
            "issuer:Issuer/<name> (in the workload's namespace) or issuer:ClusterIssuer/<name>";
        let (kind, name) = rest.split_once('/').ok_or(format!("{rest:?}: {hint}"))?;
        if !matches!(kind, "Issuer" | "ClusterIssuer") {
            return Err(format!(
                "{kind:?} is not a cert-manager issuer kind: {hint}"
            ));
        }
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok {
            return Err(format!("{name:?} is not an issuer name: {hint}"));
        }
        return Ok(ExternalTls::Issuer {
            kind: kind.to_string(),
            name: name.to_string(),
        });
    }
    Err(ALLOWED.into())
}

/// `external-tls-duration`: a whole number of seconds, minutes, hours or days (`60s`, `90m`,
/// `2160h`, `90d`), from a minute to ten years.
pub fn lifetime(v: &str) -> Result<std::time::Duration, String> {
    span(v, 60)
}

/// `external-tls-renew-before`: as [`lifetime`], from a second.
pub fn renew_before(v: &str) -> Result<std::time::Duration, String> {
    span(v, 1)
}

fn span(v: &str, min_secs: u64) -> Result<std::time::Duration, String> {
    const HINT: &str = "must be a whole number with a unit s, m, h or d, e.g. 2160h";
    let at = v.find(|c: char| !c.is_ascii_digit()).ok_or(HINT)?;
    let n: u64 = v[..at].parse().map_err(|_| HINT)?;
    let unit = match &v[at..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(HINT.into()),
    };
    let secs = n.checked_mul(unit).ok_or(HINT)?;
    if !(min_secs..=10 * 365 * 86_400).contains(&secs) {
        return Err(format!("must be from {min_secs}s to 3650d"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// `external-tls-client-ca`: a Secret's name.
pub fn secret_name(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !ok {
        return Err(format!(
            "{v:?} is not a Secret name (lower-case letters, digits, '-' and '.'): the Secret in the workload's namespace whose ca.crt client certificates are checked against"
        ));
    }
    Ok(v.to_string())
}

/// `external-tls-client-auth`: Kafka's `ssl.client.auth`.
pub fn client_auth(v: &str) -> Result<ClientAuth, String> {
    ClientAuth::parse(v).ok_or_else(|| "allowed: none, requested, required".into())
}

/// `on-address-change`.
pub fn on_address_change(v: &str) -> Result<super::OnAddressChange, String> {
    super::OnAddressChange::parse(v).ok_or_else(|| "allowed: restart, warn".into())
}

/// `security-protocol`.
pub fn security_protocol(v: &str) -> Result<SecurityProtocol, String> {
    SecurityProtocol::parse(v)
        .ok_or_else(|| "allowed: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL".into())
}

/// `external-traffic-policy`.
pub fn traffic_policy(v: &str) -> Result<TrafficPolicy, String> {
    choice(
        v,
        &[
            ("Cluster", TrafficPolicy::Cluster),
            ("Local", TrafficPolicy::Local),
        ],
    )
}

/// `adapter`.
pub fn adapter(v: &str) -> Result<AdapterChoice, String> {
    choice(
        v,
        &[
            ("auto", AdapterChoice::Auto),
            ("env", AdapterChoice::Env),
            ("properties", AdapterChoice::Properties),
            ("launch", AdapterChoice::Launch),
            ("adopt", AdapterChoice::Adopt),
        ],
    )
}

/// `ordinal`.
pub fn ordinal(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| "must be a whole number from 0".into())
}

/// `load-balancer-source-ranges`: comma-separated CIDRs.
pub fn source_ranges(v: &str) -> Result<Vec<String>, String> {
    let ranges: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let bad: Vec<&String> = ranges.iter().filter(|c| !is_cidr(c)).collect();
    if !bad.is_empty() || ranges.is_empty() {
        return Err(format!(
            "must be comma-separated CIDRs such as 203.0.113.0/24,2001:db8::/32; not CIDRs: {bad:?}"
        ));
    }
    Ok(ranges)
}

/// `load-balancer-class`.
pub fn lb_class(v: &str) -> Result<String, String> {
    if is_qualified_name(v) {
        Ok(v.to_string())
    } else {
        Err("must be a label-style name such as example.com/internal-vip".into())
    }
}

/// `service-annotations`: a JSON object of annotation keys to templates. Every bad entry is
/// named.
pub fn service_annotations(v: &str) -> Result<BTreeMap<String, Template>, String> {
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(v).map_err(|e| {
        format!(
            "must be a JSON object of strings, e.g. {{\"external-dns.alpha.kubernetes.io/hostname\":\"kafka-{{ordinal}}.example.com\"}}: {e}"
        )
    })?;
    let mut out = BTreeMap::new();
    let mut bad = Vec::new();
    for (k, val) in map {
        let Some(s) = val.as_str() else {
            bad.push(format!("the value of {k:?} must be a string"));
            continue;
        };
        if !is_qualified_name(&k) {
            bad.push(format!("{k:?} is not a valid annotation key"));
            continue;
        }
        match Template::parse(s) {
            Ok(t) => {
                out.insert(k, t);
            }
            Err(e) => bad.push(format!("in {k:?}: {e}")),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad.join("; "))
    }
}

/// One of `options`, case-insensitive.
fn choice<T: Copy>(v: &str, options: &[(&str, T)]) -> Result<T, String> {
    options
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(v))
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let allowed: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            format!("allowed: {}", allowed.join(", "))
        })
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
}

/// A DNS name or an IP address.
pub fn is_host(h: &str) -> bool {
    h.parse::<IpAddr>().is_ok() || is_dns_name(h)
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// A Kubernetes qualified name: an optional DNS prefix and `/`, then a name of up to 63
/// characters.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    name_ok && prefix.is_none_or(|p| is_host(p) && p.parse::<IpAddr>().is_err())
}
