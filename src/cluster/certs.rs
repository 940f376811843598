//! The cluster's side of the webhook's certificates: the pair kept in a TLS Secret (made once,
//! reused on every upgrade) and the `caBundle` of the webhook configuration. These are the
//! chart's install hooks (`kafka-expose certs --secret … --patch-webhook …`).

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::certs::{Bundle, CA_CERT, CertError, TLS_CERT, TLS_KEY, generate};
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
        let data = existing.data.unwrap_or_default();
        let field = |k: &str| {
            data.get(k)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .ok_or_else(|| SecretError::IncompleteSecret(name.to_string()))
        };
        return Ok(Bundle {
            ca_pem: field(CA_CERT)?,
            cert_pem: field(TLS_CERT)?,
            key_pem: field(TLS_KEY)?,
        });
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
        data: Some(
            [
                (
                    CA_CERT.to_string(),
                    ByteString(bundle.ca_pem.clone().into_bytes()),
                ),
                (
                    TLS_CERT.to_string(),
                    ByteString(bundle.cert_pem.clone().into_bytes()),
                ),
                (
                    TLS_KEY.to_string(),
                    ByteString(bundle.key_pem.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    api.create(&PostParams::default(), &secret).await?;
    Ok(bundle)
}

/// Sets the `caBundle` of every webhook of a MutatingWebhookConfiguration.
pub async fn patch_ca_bundle(
    client: &kube::Client,
    config: &str,
    ca_bundle: &str,
) -> Result<(), SecretError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let current = api.get(config).await?;
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
    Ok(())
}
