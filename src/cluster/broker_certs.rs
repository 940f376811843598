//! `external-tls: ca:<Secret>`: kafka-expose signs each broker's certificate for the host it
//! advertises, with the CA key pair the user keeps in a `kubernetes.io/tls` Secret of the
//! workload's namespace, into a Secret `<statefulset>-<ordinal>-external-tls` (the pod's name)
//! that the workload owns. `external-tls: issuer:<kind>/<name>`: kafka-expose writes a
//! cert-manager `Certificate` per broker for that host instead, and cert-manager fills the same
//! Secret (and renews it). The gate in the broker's pod waits for that Secret; see
//! [`crate::cmd::gate`].
//!
//! - A certificate is signed as soon as its host is known: from the configuration for templates
//!   and static hosts, at binding for node addresses (the pod's `external-host`, or its
//!   `status.hostIP`), once the Service has its ingress for LoadBalancers.
//! - With `expose=loadbalancer` it also names the bootstrap LoadBalancer's address, which hands a
//!   connection to any broker, and waits for that address too. With `expose=nodeport` the
//!   bootstrap Service is `externalTrafficPolicy: Local` instead ([`services::plan`]): a
//!   connection to a node's bootstrap port reaches a broker on that node, whose certificate names
//!   that node. The other modes' bootstrap addresses are the brokers' own.
//! - It is signed again when it does not name exactly those hosts, when the CA changed, or within
//!   `external-tls-renew-before` of its end. A running broker keeps the key store it started with
//!   until it restarts.
//! - A Secret of that name that kafka-expose did not make is never touched: it is reported.
//! - Keys go from the CA Secret to the broker's Secret in the same namespace, through memory;
//!   nothing here logs or reports them.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};

use super::caches::ingress;
use super::context::Context;
use super::unix_now;
use crate::certs;
use crate::config::{AdvertisedHost, ExposeMode, ExternalTls};
use crate::engine::exposure::Exposure;
use crate::engine::services;
use crate::engine::workload::Workload;
use crate::names::{FIELD_MANAGER, PREFIX, bootstrap_service_name, labels, own};

/// What one pass did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// A line per Secret that could not be made, or per obstacle (no CA, a Secret not ours).
    pub failures: Vec<String>,
    /// Per certificate signed: its Secret's name, and a line saying for which host and why.
    pub signed: Vec<(String, String)>,
    /// Brokers whose host is not known yet (not bound, no LoadBalancer address).
    pub waiting: usize,
    /// When the first certificate is due to be signed again.
    pub next: Option<Duration>,
}

/// The annotation on a signed Secret that says which host its certificate names.
pub fn host_annotation() -> String {
    format!("{PREFIX}{}", own::EXTERNAL_HOST)
}

/// Signs what is due for every broker of `w`. `applied` are its Services as just applied (their
/// LoadBalancer ingress).
pub async fn ensure(
    ctx: &Context,
    w: &Workload,
    e: &Exposure<'_>,
    ns: &str,
    applied: &[Service],
) -> Outcome {
    let mut out = Outcome::default();
    let cfg = &e.config;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let signer = match &cfg.external_tls {
        ExternalTls::Ca(ca_name) => match read_ca(&secrets, ns, ca_name).await {
            Ok(ca) => Signer::Ca(ca_name, ca),
            Err(why) => {
                out.failures.push(why);
                return out;
            }
        },
        ExternalTls::Issuer { kind, name } => Signer::CertManager { kind, name },
        ExternalTls::Off | ExternalTls::Secret(_) => return out,
    };
    let node_addressed = matches!(cfg.advertised_host, AdvertisedHost::Node(_));
    let host_ips = match cfg.advertised_host {
        AdvertisedHost::HostIp | AdvertisedHost::Node(_) => {
            match ctx.broker_host_ips(w, ns, node_addressed).await {
                Ok(h) => h,
                Err(err) => {
                    out.failures.push(format!("reading the broker pods: {err}"));
                    return out;
                }
            }
        }
        _ => BTreeMap::new(),
    };
    let routes = services::routes(w, e);
    // What every certificate names besides its broker's own host: the bootstrap LoadBalancer's
    // address, which may hand a connection to any broker. Not there (another owner's Service
    // holds the name): nothing. There and without an address yet: every broker waits for it.
    let mut also = Vec::new();
    if cfg.mode == ExposeMode::LoadBalancer
        && let Some(svc) = applied
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(&bootstrap_service_name(&w.name)))
    {
        match ingress(svc) {
            Some(addr) => also.push(addr),
            None => {
                out.waiting += routes.brokers.len();
                return out;
            }
        }
    }
    // Through a Gateway, the bootstrap name reaches any broker.
    if cfg.mode == ExposeMode::Gateway
        && let Some(b) = &cfg.bootstrap_host
    {
        also.push(b.clone());
    }
    let now = unix_now();
    for r in &routes.brokers {
        let host = match &cfg.advertised_host {
            AdvertisedHost::Template(_) | AdvertisedHost::Static(_) => {
                services::configured_host(cfg, r, w)
            }
            AdvertisedHost::HostIp | AdvertisedHost::Node(_) => host_ips.get(&r.pod).cloned(),
            AdvertisedHost::LoadBalancer => applied
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(r.service.as_str()))
                .and_then(ingress),
        };
        let Some(host) = host else {
            out.waiting += 1;
            continue;
        };
        let mut hosts = vec![host];
        for a in &also {
            if !hosts
                .iter()
                .any(|h| certs::same_names(std::slice::from_ref(h), std::slice::from_ref(a)))
            {
                hosts.push(a.clone());
            }
        }
        let name = match crate::engine::tls::secret_name(cfg, &w.name, ns, r.ordinal, Some(&r.pod))
        {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(err) => {
                out.failures.push(err.to_string());
                continue;
            }
        };
        let wanted = Wanted {
            w,
            ns,
            name: &name,
            hosts: &hosts,
            duration: cfg.tls_duration,
            renew_before: cfg.tls_renew_before(),
        };
        let (ca_name, ca) = match &signer {
            Signer::Ca(n, ca) => (*n, ca),
            Signer::CertManager { kind, name: issuer } => {
                request(ctx, &wanted, kind, issuer, &mut out).await;
                continue;
            }
        };
        let existing = match secrets.get_opt(&name).await {
            Ok(s) => s,
            Err(err) => {
                out.failures
                    .push(format!("reading Secret {name}: {}", message(&err)));
                continue;
            }
        };
        if let Some(s) = &existing
            && !is_ours(s)
        {
            out.failures.push(format!(
                "Secret {ns}/{name} exists and kafka-expose did not make it, so it is left alone and broker {} waits; delete it, or use kafka-expose.io/external-tls=secret:<name> to serve your own certificates",
                r.pod
            ));
            continue;
        }
        let field = |k: &str| existing.as_ref().and_then(|s| text(s, k));
        let cert = field(certs::TLS_CERT);
        let its_ca = field(certs::CA_CERT);
        let renew_before = wanted.renew_before;
        let due = certs::resign_reason(
            cert.as_deref(),
            its_ca.as_deref(),
            &ca.0,
            &hosts,
            now,
            renew_before,
            cfg.tls_duration,
        );
        let Some(why) = due else {
            if let Some(left) = cert
                .as_deref()
                .and_then(|c| certs::inspect(c).ok())
                .map(|f| f[0].not_after - now - renew_before.as_secs() as i64)
            {
                let left = Duration::from_secs(left.max(1) as u64);
                out.next = Some(out.next.map_or(left, |n| n.min(left)));
            }
            continue;
        };
        let (leaf, key) = match certs::sign_broker(&ca.0, &ca.1, &hosts, cfg.tls_duration) {
            Ok(pair) => pair,
            Err(err) => {
                out.failures
                    .push(format!("signing {name} with CA Secret {ca_name}: {err}"));
                continue;
            }
        };
        let secret = broker_secret(&wanted, &leaf, &key, &ca.0);
        // Forced only onto a Secret kafka-expose made (checked above); a new one is created.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match secrets.patch(&name, &params, &Patch::Apply(&secret)).await {
            Ok(_) => {
                out.signed.push((
                    name.clone(),
                    format!(
                        "Secret {name}: a certificate for {} ({why})",
                        hosts.join(", ")
                    ),
                ));
                let left = cfg.tls_duration.saturating_sub(renew_before);
                out.next = Some(out.next.map_or(left, |n| n.min(left)));
            }
            Err(err) => out
                .failures
                .push(format!("Secret {name}: {}", message(&err))),
        }
    }
    out
}

/// One broker's certificate, as kafka-expose wants it.
pub struct Wanted<'a> {
    pub w: &'a Workload,
    pub ns: &'a str,
    /// The Secret's name, and the `Certificate`'s.
    pub name: &'a str,
    /// The names it carries: the broker's own host first.
    pub hosts: &'a [String],
    pub duration: Duration,
    pub renew_before: Duration,
}

/// Who signs the brokers' certificates.
enum Signer<'a> {
    /// kafka-expose, with the CA of this Secret: its certificate and key.
    Ca(&'a str, (String, String)),
    /// cert-manager, for a `Certificate` naming this issuer.
    CertManager { kind: &'a str, name: &'a str },
}

/// The CA Secret's certificate and key, or what is wrong, for the status.
async fn read_ca(
    secrets: &Api<Secret>,
    ns: &str,
    ca_name: &str,
) -> Result<(String, String), String> {
    match secrets.get_opt(ca_name).await {
        Ok(Some(s)) => ca_pair(&s).map_err(|why| format!("CA Secret {ns}/{ca_name}: {why}")),
        Ok(None) => Err(format!(
            "CA Secret {ns}/{ca_name} is not there: create a kubernetes.io/tls Secret with the CA's certificate (tls.crt) and key (tls.key) in {ns}"
        )),
        Err(err) => Err(format!(
            "reading CA Secret {ns}/{ca_name}: {}",
            message(&err)
        )),
    }
}

/// cert-manager's `Certificate` (`cert-manager.io/v1`).
fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// The `Certificate` that asks cert-manager for a broker's certificate: exactly its hosts,
/// server and client authentication, a PKCS#8 key (the only kind Kafka's PEM store reads), the
/// workload's duration and renewal, into the Secret the gate mounts.
pub fn certificate(c: &Wanted<'_>, kind: &str, issuer: &str) -> serde_json::Value {
    let (ips, dns): (Vec<&String>, Vec<&String>) = c
        .hosts
        .iter()
        .partition(|h| h.parse::<std::net::IpAddr>().is_ok());
    let mut san = serde_json::Map::new();
    if !ips.is_empty() {
        san.insert("ipAddresses".into(), serde_json::json!(ips));
    }
    if !dns.is_empty() {
        san.insert("dnsNames".into(), serde_json::json!(dns));
    }
    let (w, ns, name) = (c.w, c.ns, c.name);
    let host = c.hosts.first().map(String::as_str).unwrap_or_default();
    let (duration, renew_before) = (c.duration, c.renew_before);
    let mut spec = serde_json::json!({
        "secretName": name,
        "issuerRef": {"group": "cert-manager.io", "kind": kind, "name": issuer},
        "duration": format!("{}s", duration.as_secs()),
        "renewBefore": format!("{}s", renew_before.as_secs()),
        "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
        "privateKey": {"encoding": "PKCS8", "rotationPolicy": "Always"},
    });
    if let Some(spec) = spec.as_object_mut() {
        spec.extend(san);
    }
    serde_json::json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": services::managed_labels(w),
            "annotations": {host_annotation(): host},
            "ownerReferences": services::owner_references(w),
        },
        "spec": spec,
    })
}

/// Asks cert-manager for a broker's certificate: applies its `Certificate` when it is new or
/// differs (other hosts, issuer, duration), and leaves one kafka-expose did not make alone.
async fn request(ctx: &Context, c: &Wanted<'_>, kind: &str, issuer: &str, out: &mut Outcome) {
    let (ns, name) = (c.ns, c.name);
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &certificate_resource());
    let wanted = certificate(c, kind, issuer);
    let not_served = |e: &kube::Error| match e {
        kube::Error::Api(s) if s.code == 404 => format!(
            "{}; cert-manager's Certificate API (cert-manager.io/v1) is not served here: install cert-manager, or use kafka-expose.io/external-tls=ca:<Secret>",
            s.message
        ),
        other => message(other),
    };
    match api.get_opt(name).await {
        Ok(Some(found)) => {
            let ours = found
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::MANAGED_BY))
                .is_some_and(|v| v == labels::MANAGER);
            if !ours {
                out.failures.push(format!(
                    "Certificate {ns}/{name} exists and kafka-expose did not make it, so it is left alone; delete it, or use kafka-expose.io/external-tls=secret:<name>"
                ));
                return;
            }
            if found.data.get("spec") == wanted.get("spec") {
                return;
            }
        }
        Ok(None) => {}
        Err(e) => {
            out.failures
                .push(format!("reading Certificate {name}: {}", not_served(&e)));
            return;
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch(name, &params, &Patch::Apply(&wanted)).await {
        Ok(_) => out.signed.push((
            name.to_string(),
            format!(
                "Certificate {name}: requested for {} from {kind} {issuer}",
                c.hosts.join(", ")
            ),
        )),
        Err(e) => out
            .failures
            .push(format!("Certificate {name}: {}", not_served(&e))),
    }
}

/// The CA's certificate and key, from a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`).
fn ca_pair(s: &Secret) -> Result<(String, String), String> {
    let cert = text(s, certs::TLS_CERT).ok_or("it has no tls.crt")?;
    let key = text(s, certs::TLS_KEY).ok_or("it has no tls.key")?;
    // The first certificate is the CA's own.
    let first = certs::split_pem(&cert)
        .into_iter()
        .next()
        .ok_or("its tls.crt holds no PEM certificate")?;
    Ok((first, key))
}

fn text(s: &Secret, key: &str) -> Option<String> {
    let bytes = s.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn is_ours(s: &Secret) -> bool {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGER)
}

fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => crate::engine::error_chain(other),
    }
}

/// The broker's Secret: `kubernetes.io/tls`, its chain (the leaf, then the CA), its key and the
/// CA, owned by the workload and labelled as kafka-expose's.
fn broker_secret(c: &Wanted<'_>, leaf: &str, key: &str, ca: &str) -> Secret {
    let (w, ns, name) = (c.w, c.ns, c.name);
    let host = c.hosts.first().map(String::as_str).unwrap_or_default();
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let chain = format!("{}\n{}\n", leaf.trim_end(), ca.trim_end());
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            labels: Some(services::managed_labels(w)),
            annotations: Some(BTreeMap::from([(host_annotation(), host.to_string())])),
            owner_references: services::owner_references(w),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (certs::TLS_CERT.to_string(), bytes(&chain)),
            (certs::TLS_KEY.to_string(), bytes(key)),
            (certs::CA_CERT.to_string(), bytes(ca)),
        ])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSet;

    #[test]
    fn a_brokers_certificate_request_names_exactly_its_host_with_a_pkcs8_key() {
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kafka", "namespace": "k", "uid": "u-1"},
            "spec": {"selector": {"matchLabels": {"app": "kafka"}}, "serviceName": "h",
                     "template": {"metadata": {"labels": {"app": "kafka"}}, "spec": {"containers": []}}}
        }))
        .unwrap();
        let w = Workload::from_statefulset(sts);
        let day = Duration::from_secs(86_400);
        let wanted = |name, hosts: &[&str], duration, renew_before| {
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            let c = Wanted {
                w: &w,
                ns: "k",
                name,
                hosts: &hosts,
                duration,
                renew_before,
            };
            (
                certificate(&c, "Issuer", "ca"),
                certificate(&c, "ClusterIssuer", "ca"),
            )
        };
        let (ip, _) = wanted("kafka-0-external-tls", &["203.0.113.7"], 90 * day, 30 * day);
        assert_eq!(
            ip["spec"]["ipAddresses"],
            serde_json::json!(["203.0.113.7"])
        );
        assert!(ip["spec"].get("dnsNames").is_none());
        assert_eq!(ip["spec"]["privateKey"]["encoding"], "PKCS8");
        assert_eq!(ip["spec"]["duration"], "7776000s");
        assert_eq!(ip["spec"]["renewBefore"], "2592000s");
        assert_eq!(ip["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            ip["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kafka-expose"
        );
        let (_, dns) = wanted("kafka-1-external-tls", &["b-1.example.com"], day, day / 3);
        assert_eq!(
            dns["spec"]["dnsNames"],
            serde_json::json!(["b-1.example.com"])
        );
        assert!(dns["spec"].get("ipAddresses").is_none());
        assert_eq!(dns["spec"]["issuerRef"]["kind"], "ClusterIssuer");
        // A LoadBalancer broker's: its own address and the bootstrap's, of both kinds.
        let (both, _) = wanted(
            "kafka-2-external-tls",
            &["lb-2.example.com", "203.0.113.9"],
            day,
            day / 3,
        );
        assert_eq!(
            both["spec"]["dnsNames"],
            serde_json::json!(["lb-2.example.com"])
        );
        assert_eq!(
            both["spec"]["ipAddresses"],
            serde_json::json!(["203.0.113.9"])
        );
        assert_eq!(
            both["metadata"]["annotations"]["kafka-expose.io/external-host"], "lb-2.example.com",
            "the annotation names the broker's own host"
        );
    }
}
