//! `external-tls`: which Secret holds each broker's certificate, and what the certificate must
//! name. The pod decision mounts that Secret for the gate; `mutate --explain` shows the plan.

use crate::config::{AdvertisedHost, ConfigError, ExposeConfig, ExposeMode, Placeholder};
use crate::names::keys;

/// The name of broker `ordinal`'s certificate Secret, or `None` when the external listener has no
/// TLS of its own. `pod` is the pod's name where it is known (a StatefulSet pod at admission).
pub fn secret_name(
    cfg: &ExposeConfig,
    workload: &str,
    namespace: &str,
    ordinal: u32,
    pod: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    let Some(t) = cfg.external_tls.secret_template() else {
        return Ok(None);
    };
    let pod = pod.filter(|n| !n.is_empty());
    if t.uses(Placeholder::Pod) && pod.is_none() {
        return Err(ConfigError::one(
            keys::EXTERNAL_TLS,
            &cfg.external_tls.to_annotation(),
            "uses {pod}, and this pod has no name yet (a Deployment's pods are named by the API server after admission); use {statefulset} and {ordinal}",
        ));
    }
    Ok(Some(t.render(|p| match p {
        Placeholder::Ordinal => ordinal.to_string(),
        Placeholder::Pod => pod.unwrap_or_default().to_string(),
        Placeholder::Namespace => namespace.to_string(),
        Placeholder::StatefulSet => workload.to_string(),
    })))
}

/// What broker `index`'s certificate must name, for people: the host it advertises and the kind
/// of subject alternative name that carries it.
pub fn must_name(cfg: &ExposeConfig, host: Option<&str>) -> String {
    let san = |h: &str| match h.parse::<std::net::IpAddr>() {
        Ok(_) => format!("{h} (an IP SAN)"),
        Err(_) => format!("{h} (a DNS SAN, or a wildcard one level above it)"),
    };
    let own = match (&cfg.advertised_host, host) {
        (AdvertisedHost::Template(_) | AdvertisedHost::Static(_), Some(h)) => san(h),
        (AdvertisedHost::HostIp, _) => "its node's IP (an IP SAN), known once it is scheduled".into(),
        (AdvertisedHost::Node(types), _) => format!(
            "its node's {} address, known once it is bound (an IP SAN for an IP, a DNS SAN for a name)",
            super::pod::type_list(types)
        ),
        (AdvertisedHost::LoadBalancer, _) => "its LoadBalancer's address, known once the cloud gives it (an IP SAN for an IP ingress, a DNS SAN for a hostname)".into(),
        (_, None) => "the host it advertises".into(),
    };
    match cfg.mode {
        // The bootstrap LoadBalancer hands a connection to any broker.
        ExposeMode::LoadBalancer => format!(
            "{own}, and the bootstrap LoadBalancer's address for clients that bootstrap through it"
        ),
        ExposeMode::Gateway => match &cfg.bootstrap_host {
            Some(b) => format!(
                "{own}, and the bootstrap name {b} (a DNS SAN), which the Gateway routes to any broker"
            ),
            None => own,
        },
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::exposure_of as config;

    #[test]
    fn behind_a_bootstrap_load_balancer_the_certificate_must_name_its_address_too() {
        let lb = config(&[("expose", "loadbalancer"), ("external-tls", "ca:ca")]);
        let said = must_name(&lb, None);
        assert!(said.starts_with("its LoadBalancer's address"), "{said}");
        assert!(
            said.contains("the bootstrap LoadBalancer's address"),
            "{said}"
        );
        let np = config(&[("expose", "nodeport"), ("external-tls", "ca:ca")]);
        assert_eq!(
            must_name(&np, None),
            "its node's IP (an IP SAN), known once it is scheduled"
        );
    }
}
