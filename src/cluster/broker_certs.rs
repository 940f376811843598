//! `external-tls: ca:<Secret>`: kafka-expose signs each broker's certificate for the host it
//! advertises, with the CA key pair the user keeps in a `kubernetes.io/tls` Secret of the
//! workload's namespace, into a Secret `<statefulset>-<ordinal>-external-tls` (the pod's name)
//! that the workload owns. The gate in the broker's pod waits for that Secret; see
//! [`crate::cmd::gate`].
//!
//! - A certificate is signed as soon as its host is known: from the configuration for templates
//!   and static hosts, at binding for node addresses (the pod's `external-host`, or its
//!   `status.hostIP`), once the Service has its ingress for LoadBalancers.
//! - It is signed again when it does not name exactly that host, when the CA changed, or within
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
use kube::api::{Api, Patch, PatchParams};

use super::caches::ingress;
use super::context::Context;
use super::unix_now;
use crate::certs;
use crate::config::{AdvertisedHost, ExternalTls};
use crate::engine::exposure::Exposure;
use crate::engine::services;
use crate::engine::workload::Workload;
use crate::names::{FIELD_MANAGER, PREFIX, labels, own};

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
    let ExternalTls::Ca(ca_name) = &cfg.external_tls else {
        return out;
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let ca = match secrets.get_opt(ca_name).await {
        Ok(Some(s)) => match ca_pair(&s) {
            Ok(pair) => pair,
            Err(why) => {
                out.failures
                    .push(format!("CA Secret {ns}/{ca_name}: {why}"));
                return out;
            }
        },
        Ok(None) => {
            out.failures.push(format!(
                "CA Secret {ns}/{ca_name} is not there: create a kubernetes.io/tls Secret with the CA's certificate (tls.crt) and key (tls.key) in {ns}"
            ));
            return out;
        }
        Err(err) => {
            out.failures.push(format!(
                "reading CA Secret {ns}/{ca_name}: {}",
                message(&err)
            ));
            return out;
        }
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
    let now = unix_now();
    for r in &services::routes(w, e).brokers {
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
        let name = match crate::engine::tls::secret_name(cfg, &w.name, ns, r.ordinal, Some(&r.pod))
        {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(err) => {
                out.failures.push(err.to_string());
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
        let renew_before = cfg.tls_renew_before();
        let due = certs::resign_reason(
            cert.as_deref(),
            its_ca.as_deref(),
            &ca.0,
            &host,
            now,
            renew_before,
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
        let (leaf, key) = match certs::sign_broker(&ca.0, &ca.1, &host, cfg.tls_duration) {
            Ok(pair) => pair,
            Err(err) => {
                out.failures
                    .push(format!("signing {name} with CA Secret {ca_name}: {err}"));
                continue;
            }
        };
        let secret = broker_secret(w, ns, &name, &host, &leaf, &key, &ca.0);
        // Forced only onto a Secret kafka-expose made (checked above); a new one is created.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match secrets.patch(&name, &params, &Patch::Apply(&secret)).await {
            Ok(_) => {
                out.signed.push((
                    name.clone(),
                    format!("Secret {name}: a certificate for {host} ({why})"),
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
fn broker_secret(
    w: &Workload,
    ns: &str,
    name: &str,
    host: &str,
    leaf: &str,
    key: &str,
    ca: &str,
) -> Secret {
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
