//! Keeps the webhook configuration kafka-expose registers itself ([`registration::plan`]) in
//! step with the live policies and with the brokers' use of `node:` addresses: created when it
//! first has a webhook to hold, changed when they change, deleted when it has none. Leader only.
//!
//! It copies the chart's workload webhook (server, CA bundle, namespaces), which it reads again
//! every [`BASE_EVERY`], so a CA roll-over reaches the registered webhooks within that time. It
//! never changes an object it did not create: a configuration of that name without its
//! `app.kubernetes.io/managed-by: kafka-expose` label is reported and left alone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use crate::api::KafkaExposePolicy;
use crate::engine::registration::{self, Wanted};
use crate::names::labels;

/// The field manager of the registered configuration.
pub const FIELD_MANAGER: &str = "kafka-expose-registrar";
/// How often the chart's configuration is read again.
pub const BASE_EVERY: Duration = Duration::from_secs(30);
/// How long after a failed attempt the next one waits (a configuration of another owner's, an
/// API server that refuses): one request and one warning per this, not per look.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often the caches are looked at for a change (in memory: no request unless it changed).
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// What `serve` asks of the registrar.
#[derive(Clone, Debug)]
pub struct Options {
    /// The chart's MutatingWebhookConfiguration, whose workload webhook is copied.
    pub base: String,
    /// The configuration kafka-expose registers its webhooks in.
    pub name: String,
    /// Register the bindings webhook while a broker or policy uses `node:` addresses.
    pub bindings: bool,
    pub bindings_timeout_seconds: i32,
}

/// The `kafka-expose.io/*` annotations of each cached broker pod, keys without the prefix.
fn brokers(pods: &Store<Pod>) -> Vec<BTreeMap<String, String>> {
    pods.state()
        .iter()
        .map(|p| {
            p.annotations()
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(crate::names::PREFIX)
                        .map(|k| (k.to_string(), v.clone()))
                })
                .collect()
        })
        .collect()
}

/// Runs until `shutdown`.
pub async fn run(
    client: Client,
    options: Options,
    pods: Store<Pod>,
    policies: Store<KafkaExposePolicy>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut base: Option<(MutatingWebhookConfiguration, Instant)> = None;
    // What was last applied (`None`: deleted, or never there), as JSON.
    let mut last: Option<Option<serde_json::Value>> = None;
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(name = %options.name, base = %options.base, "registrar started");
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut shutdown => return,
        }
        if base
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= BASE_EVERY)
        {
            match api.get_opt(&options.base).await {
                Ok(Some(b)) => {
                    base = Some((b, Instant::now()));
                    // Applied again (a no-op when unchanged): a hand-deleted or hand-edited
                    // configuration is restored within BASE_EVERY.
                    last = None;
                }
                Ok(None) => {
                    warn!(base = %options.base, retry_after = ?RETRY_AFTER, "the chart's webhook configuration is missing; nothing registered");
                    base = None;
                    if !paused(&mut shutdown).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    warn!(base = %options.base, error = %e, retry_after = ?RETRY_AFTER, "reading the chart's webhook configuration failed; retrying");
                    if !paused(&mut shutdown).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some((b, _)) = &base else { continue };
        let live = policies.state();
        let live: Vec<KafkaExposePolicy> = live.iter().map(|p| (**p).clone()).collect();
        let bindings =
            options.bindings && registration::uses_node_addresses(&brokers(&pods), &live);
        let wanted = registration::plan(&Wanted {
            base: b,
            name: &options.name,
            policies: &live,
            bindings,
            bindings_timeout_seconds: options.bindings_timeout_seconds,
        });
        let json = wanted
            .as_ref()
            .map(|w| serde_json::to_value(w).unwrap_or_default());
        if last.as_ref() == Some(&json) {
            continue;
        }
        match apply(&api, &options.name, wanted.as_ref()).await {
            Ok(()) => {
                let hooks: Vec<String> = wanted
                    .iter()
                    .flat_map(|w| w.webhooks.iter().flatten().map(|h| h.name.clone()))
                    .collect();
                info!(name = %options.name, webhooks = ?hooks, "registered webhooks updated");
                last = Some(json);
            }
            Err(e) => {
                warn!(name = %options.name, error = %e, retry_after = ?RETRY_AFTER, "registering webhooks failed; retrying");
                if !paused(&mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Waits [`RETRY_AFTER`]: `false` when `shutdown` comes first.
async fn paused(shutdown: &mut (impl std::future::Future<Output = ()> + Unpin)) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(RETRY_AFTER) => true,
        _ = shutdown => false,
    }
}

/// Applies `wanted`, or deletes the configuration when it is `None`; an object of that name that
/// kafka-expose did not make is left alone, with an error.
async fn apply(
    api: &Api<MutatingWebhookConfiguration>,
    name: &str,
    wanted: Option<&MutatingWebhookConfiguration>,
) -> Result<(), String> {
    let existing = api.get_opt(name).await.map_err(|e| e.to_string())?;
    if let Some(e) = &existing {
        let ours = e.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER);
        if !ours {
            return Err(format!(
                "MutatingWebhookConfiguration {name} exists and was not made by kafka-expose (no {}={} label): left alone",
                labels::MANAGED_BY,
                labels::MANAGER
            ));
        }
    }
    match wanted {
        Some(w) => {
            let mut body = serde_json::to_value(w).map_err(|e| e.to_string())?;
            body["apiVersion"] = "admissionregistration.k8s.io/v1".into();
            body["kind"] = "MutatingWebhookConfiguration".into();
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        None if existing.is_some() => match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.to_string()),
        },
        None => {}
    }
    Ok(())
}
