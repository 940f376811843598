//! The cluster's side of the webhook's certificates: the pair kept in a TLS Secret, the
//! `caBundle` of the webhook configuration, and their renewal. The chart's hooks (`kafka-expose
//! certs --secret … --patch-webhook …`) make the Secret and renew it on every upgrade; `serve`
//! renews it while it runs ([`keep_renewed`]), and hot-reloads the files the kubelet delivers.
//!
//! A renewal makes a new CA as well (the CA's key is not kept), and rolls it over: the new CA
//! joins the current one in the `caBundle` first, the new pair is stored only after the API
//! server has had time to pick that up, and the old CA is dropped once every replica has had
//! time to load the new pair. No admission fails across the change.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};

use std::time::Duration;

use crate::certs::{Bundle, CA_CERT, CertError, TLS_CERT, TLS_KEY, Validity, generate};
use crate::names::labels;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Kubernetes API call failed")]
    Kube(#[from] kube::Error),
    #[error("Secret {0} exists but lacks ca.crt, tls.crt or tls.key")]
    IncompleteSecret(String),
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// The pair in TLS Secret `name` of `namespace`: read when it exists, made and stored when not.
pub async fn ensure_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    dns: &[String],
) -> Result<Bundle, SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(existing) = api.get_opt(name).await? {
        return bundle_of(&existing, name);
    }
    let bundle = generate(dns)?;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some([(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string())].into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(secret_data(&bundle)),
        ..Default::default()
    };
    api.create(&PostParams::default(), &secret).await?;
    Ok(bundle)
}

/// Sets the `caBundle` of every webhook of a MutatingWebhookConfiguration. False when the
/// configuration does not exist (yet: a pre-install hook runs before it is made).
pub async fn patch_ca_bundle(
    client: &kube::Client,
    config: &str,
    ca_bundle: &str,
) -> Result<bool, SecretError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(current) = api.get_opt(config).await? else {
        return Ok(false);
    };
    let ops: Vec<serde_json::Value> = (0..current.webhooks.map_or(0, |w| w.len()))
        .map(|i| {
            serde_json::json!({
                "op": "add",
                "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                "value": ca_bundle,
            })
        })
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| SecretError::Kube(kube::Error::SerdeError(e)))?;
    api.patch(config, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    Ok(true)
}

/// The annotation on the Secret that records when its CA was last rolled over (Unix seconds).
pub const ROTATED_AT: &str = "kafka-expose.io/rotated-at";

/// When and how a kept pair is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewPolicy {
    /// Re-issue when less than this is left of the serving certificate.
    pub renew_before: Duration,
    /// How long the old CA stays in the bundle after a roll-over: long enough for the kubelet to
    /// deliver the new pair to every replica (its sync period is about a minute) and for each to
    /// load it.
    pub overlap: Duration,
    /// How long to wait after the webhook's `caBundle` trusts the new CA before the Secret
    /// serves a certificate from it, for the API server to pick the bundle up.
    pub propagation: Duration,
    pub validity: Validity,
}

impl Default for RenewPolicy {
    fn default() -> Self {
        Self {
            renew_before: Duration::from_secs(30 * 86_400),
            overlap: Duration::from_secs(600),
            propagation: Duration::from_secs(10),
            validity: Validity::default(),
        }
    }
}

/// What a renewal pass does with the kept pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    Keep,
    /// A new CA and serving certificate, for this reason.
    Reissue(String),
    /// The roll-over's overlap is over: trust the current CA alone.
    DropOldCa,
}

/// Decides a renewal pass from the Secret's pair, pure.
pub fn plan(
    stored: &Bundle,
    rotated_at: Option<i64>,
    now: i64,
    wanted: &[String],
    p: &RenewPolicy,
) -> Renewal {
    let leaf = match crate::certs::inspect(&stored.cert_pem) {
        Ok(l) => l.into_iter().next(),
        Err(e) => return Renewal::Reissue(format!("the serving certificate is unreadable: {e}")),
    };
    let Some(leaf) = leaf else {
        return Renewal::Reissue("no serving certificate".into());
    };
    let left = leaf.not_after - now;
    if left < p.renew_before.as_secs() as i64 {
        return Renewal::Reissue(if left <= 0 {
            "the serving certificate has expired".into()
        } else {
            format!("the serving certificate expires in {left} s")
        });
    }
    let missing: Vec<&String> = wanted.iter().filter(|n| !leaf.names.contains(n)).collect();
    if !missing.is_empty() {
        return Renewal::Reissue(format!(
            "the serving certificate does not name {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let cas = crate::certs::split_pem(&stored.ca_pem).len();
    if cas > 1 && rotated_at.is_none_or(|t| now - t >= p.overlap.as_secs() as i64) {
        return Renewal::DropOldCa;
    }
    Renewal::Keep
}

/// One renewal pass on Secret `name`: decides with [`plan`] and carries it out, and returns what
/// it decided and the pair the Secret holds afterwards (none when there is no Secret). A
/// re-issue puts the new CA beside the current one in the webhook's `caBundle` first (when
/// `webhook` is given and exists), waits for the API server to pick it up, and only then stores
/// the new pair in the Secret, so that whichever certificate a replica serves meanwhile is
/// trusted. With `require_webhook` (a running server) nothing is re-issued while the
/// configuration is absent; without (the pre-install hook, before the configuration is made) the
/// pair is re-issued alone. A missing Secret is never made here: the hook makes it
/// ([`ensure_secret`]), and a pair a running server made would come from a CA nobody trusts.
pub async fn renew(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    webhook: Option<&str>,
    require_webhook: bool,
    dns: &[String],
    p: &RenewPolicy,
) -> Result<(Renewal, Option<Bundle>), SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = api.get_opt(name).await? else {
        tracing::warn!(secret = %name, "not renewing: the Secret does not exist");
        return Ok((Renewal::Keep, None));
    };
    let made_here = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGER);
    if !made_here {
        // kafka-expose never takes over an object it did not make: a Secret someone else
        // provides is theirs to renew.
        tracing::warn!(secret = %name, "not renewing: the Secret was not made by kafka-expose (no app.kubernetes.io/managed-by=kafka-expose)");
        return Ok((Renewal::Keep, bundle_of(&secret, name).ok()));
    }
    let stored = bundle_of(&secret, name)?;
    let rotated_at = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATED_AT))
        .and_then(|v| v.parse().ok());
    let now = crate::cluster::unix_now();
    let decision = plan(&stored, rotated_at, now, dns, p);
    // The CA that signed the certificate served now: the first of the Secret's bundle.
    let current_ca = crate::certs::split_pem(&stored.ca_pem)
        .into_iter()
        .next()
        .unwrap_or_default();
    let held = match &decision {
        Renewal::Keep => stored,
        Renewal::Reissue(why) => {
            let fresh = crate::certs::generate_for(dns, p.validity)?;
            let next = Bundle {
                ca_pem: format!("{}{current_ca}", fresh.ca_pem),
                ..fresh
            };
            if let Some(cfg) = webhook {
                if patch_ca_bundle(client, cfg, &next.ca_bundle()).await? {
                    tokio::time::sleep(p.propagation).await;
                } else if require_webhook {
                    // Serving from a CA the configuration cannot be told to trust would fail
                    // every admission: wait for it to exist.
                    tracing::warn!(secret = %name, webhook = %cfg, reason = %why, "not renewing yet: the webhook configuration does not exist");
                    return Ok((Renewal::Keep, Some(stored)));
                }
            }
            store(&api, secret, &next, Some(now)).await?;
            tracing::info!(secret = %name, reason = %why, "re-issued the webhook's certificate, with a new CA trusted beside the old one");
            next
        }
        Renewal::DropOldCa => {
            let next = Bundle {
                ca_pem: current_ca,
                ..stored
            };
            store(&api, secret, &next, rotated_at).await?;
            if let Some(cfg) = webhook {
                patch_ca_bundle(client, cfg, &next.ca_bundle()).await?;
            }
            tracing::info!(secret = %name, "the CA roll-over is over: the old CA is no longer trusted");
            next
        }
    };
    Ok((decision, Some(held)))
}

fn bundle_of(secret: &Secret, name: &str) -> Result<Bundle, SecretError> {
    let data = secret.data.clone().unwrap_or_default();
    let field = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| SecretError::IncompleteSecret(name.to_string()))
    };
    Ok(Bundle {
        ca_pem: field(CA_CERT)?,
        cert_pem: field(TLS_CERT)?,
        key_pem: field(TLS_KEY)?,
    })
}

/// Replaces the Secret's pair, guarded by its resourceVersion (a concurrent writer makes this
/// fail, and the next pass decides again).
async fn store(
    api: &Api<Secret>,
    mut secret: Secret,
    b: &Bundle,
    rotated_at: Option<i64>,
) -> Result<(), SecretError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    secret.data = Some(secret_data(b));
    if let Some(t) = rotated_at {
        secret
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ROTATED_AT.into(), t.to_string());
    }
    api.replace(&name, &PostParams::default(), &secret).await?;
    Ok(())
}

fn secret_data(b: &Bundle) -> std::collections::BTreeMap<String, ByteString> {
    [
        (
            CA_CERT.to_string(),
            ByteString(b.ca_pem.clone().into_bytes()),
        ),
        (
            TLS_CERT.to_string(),
            ByteString(b.cert_pem.clone().into_bytes()),
        ),
        (
            TLS_KEY.to_string(),
            ByteString(b.key_pem.clone().into_bytes()),
        ),
    ]
    .into()
}

/// What `serve` needs to keep its certificates' Secret renewed.
pub struct Renewer {
    pub client: kube::Client,
    pub namespace: String,
    pub secret: String,
    /// The MutatingWebhookConfiguration whose caBundle the roll-over updates.
    pub webhook: String,
    pub dns: Vec<String>,
    pub policy: RenewPolicy,
    pub every: Duration,
}

/// The Lease under which one replica renews the certificates' Secret.
pub const LEASE: &str = "kafka-expose-certs";

impl Renewer {
    /// Renews on one replica: the holder of `election` when given, else this one. Runs
    /// [`renew`] every `every`, logging what it does and what fails, until `shutdown`.
    pub async fn run(
        self,
        election: Option<crate::cluster::leader::Election>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        tracing::info!(secret = %self.secret, renew_before = ?self.policy.renew_before, "keeping the serving certificate renewed");
        let client = self.client.clone();
        let this = std::sync::Arc::new(self);
        let lead = move |stop: crate::cluster::leader::Stop| {
            let this = this.clone();
            async move { this.passes(stop).await }
        };
        match election {
            Some(e) => crate::cluster::leader::run(client, e, shutdown, lead).await,
            None => lead(Box::pin(shutdown)).await,
        }
    }

    async fn passes(&self, stop: crate::cluster::leader::Stop) {
        tokio::pin!(stop);
        loop {
            let pass = renew(
                &self.client,
                &self.namespace,
                &self.secret,
                Some(&self.webhook),
                true,
                &self.dns,
                &self.policy,
            );
            if let Err(e) = pass.await {
                tracing::warn!(secret = %self.secret, error = %e, error.source = ?std::error::Error::source(&e), "certificate renewal pass failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = &mut stop => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{dns_names, generate_for};

    fn policy() -> RenewPolicy {
        RenewPolicy {
            propagation: Duration::ZERO,
            ..RenewPolicy::default()
        }
    }

    fn now() -> i64 {
        crate::cluster::unix_now()
    }

    #[test]
    fn a_fresh_pair_for_the_right_names_is_kept() {
        let dns = dns_names("kx", "ns");
        let b = generate_for(&dns, Validity::default()).unwrap();
        assert_eq!(plan(&b, None, now(), &dns, &policy()), Renewal::Keep);
    }

    #[test]
    fn a_pair_inside_the_renewal_window_is_reissued() {
        let dns = dns_names("kx", "ns");
        let b = generate_for(
            &dns,
            Validity {
                serving: Duration::from_secs(20 * 86_400),
            },
        )
        .unwrap();
        assert!(matches!(
            plan(&b, None, now(), &dns, &policy()),
            Renewal::Reissue(why) if why.contains("expires in")
        ));
    }

    #[test]
    fn a_pair_for_other_names_is_reissued_naming_what_it_lacks() {
        let b = generate_for(&dns_names("old", "ns"), Validity::default()).unwrap();
        let Renewal::Reissue(why) = plan(&b, None, now(), &dns_names("kx", "ns"), &policy()) else {
            panic!("reissued")
        };
        assert!(why.contains("kx.ns.svc"), "{why}");
    }

    #[test]
    fn the_old_ca_is_dropped_only_after_the_overlap() {
        let dns = dns_names("kx", "ns");
        let old = generate_for(&dns, Validity::default()).unwrap();
        let new = generate_for(&dns, Validity::default()).unwrap();
        let both = Bundle {
            ca_pem: format!("{}{}", new.ca_pem, old.ca_pem),
            ..new
        };
        let t = now();
        assert_eq!(plan(&both, Some(t - 60), t, &dns, &policy()), Renewal::Keep);
        assert_eq!(
            plan(&both, Some(t - 601), t, &dns, &policy()),
            Renewal::DropOldCa
        );
    }
}
