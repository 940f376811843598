//! Restarting the brokers whose external address changed under them (issue 28), on the leader.
//!
//! Kafka cannot change a running broker's `advertised.listeners` (read-only in KRaft since 4.0),
//! so a broker whose node address, LoadBalancer address or certificate changed advertises the old
//! one until it restarts. Every `every`, this loop compares each cached broker pod of a
//! StatefulSet with what it would be given now ([`restart::stale`]); a workload with a stale
//! broker, or a restart on record, is read and its next step taken by the pure
//! [`restart::next`]: one broker at a time, through the Eviction API (so PodDisruptionBudgets
//! hold), the next only once the last is Ready again and has settled. Where it stands is the
//! workload's `kafka-expose.io/restart` ([`Record`]), which the reconciler folds into
//! `kafka-expose.io/status`, and an Event per step.
//!
//! `on-address-change: warn` (the workload's annotation, else its policy's
//! `rollout.onAddressChange`) reports the stale broker and restarts nothing. A workload that
//! rolls to another configuration is left to its roll: its pods of the old one are not judged.
//! Deployments' brokers are not restarted here (one pod, replaced on the Deployment's own terms);
//! their changed node address is the node fallback's Warning Event.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, EvictParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{KafkaExposePolicy, WorkloadState};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::caches::{self, BindingCache, LOADED_SERIAL, TLS_SECRET, statefulset_of};
use super::context::{Context, RestartSettings as Settings};
use super::events::Note;
use super::unix_now;
use crate::certs::CertFacts;
use crate::config::{self, OnAddressChange};
use crate::engine::binding::BindingFacts;
use crate::engine::restart::{self, Broker, Budget, Pace, Record, SecretCert, State, Step};
use crate::names::{FIELD_MANAGER, PREFIX, keys, own};

/// How often a certificate Secret is read again for its serial.
const SECRET_TTL: Duration = Duration::from_secs(60);

/// What the loop remembers between passes: the workloads with a restart on record (read each pass
/// until it is over) and the serials of the Secrets it read lately.
#[derive(Default)]
struct Memory {
    /// (namespace, StatefulSet) → its policy, and whether a broker is in flight (evicted, not
    /// yet settled: it holds a slot of the policy), while it has a record.
    active: HashMap<(String, String), (Option<String>, bool)>,
    /// (namespace, Secret) → what its certificate says of itself, and when it was read.
    serials: HashMap<(String, String), (Option<CertFacts>, Instant)>,
    /// (namespace, Secret) whose certificate, read last, is new and one its broker could not
    /// start with: reported, not restarted for, so that read stands for [`SECRET_TTL`] too.
    unusable: HashSet<(String, String)>,
    /// Whether a first pass read every StatefulSet with exposed brokers: a record a former
    /// leader left is then taken up, or cleared.
    swept: bool,
}

/// Runs until `shutdown`.
pub async fn run(
    ctx: Arc<Context>,
    cache: BindingCache,
    policies: Store<KafkaExposePolicy>,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut shutdown = Box::pin(shutdown);
    let mut memory = Memory::default();
    loop {
        pass(&ctx, &cache, &policies, settings, &mut memory).await;
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(settings.every) => {}
        }
    }
}

async fn pass(
    ctx: &Context,
    cache: &BindingCache,
    policies: &Store<KafkaExposePolicy>,
    settings: Settings,
    memory: &mut Memory,
) {
    let mut groups: BTreeMap<(String, String), Vec<Arc<Pod>>> = BTreeMap::new();
    for p in cache.pods.state() {
        if let (Some(ns), Some(sts)) = (p.namespace(), statefulset_of(&p)) {
            groups.entry((ns, sts)).or_default().push(p);
        }
    }
    // A workload with a record whose pods are all gone still has its record cleared.
    for key in memory.active.keys() {
        groups.entry(key.clone()).or_default();
    }
    for (key, pods) in groups {
        tracing::debug!(namespace = %key.0, statefulset = %key.1, pods = pods.len(), "restart pass");
        let serials = serials_for(ctx, &key.0, &pods, settings.every, memory).await;
        // Pod name → why it must restart, for each stale pod: judged once a pass. A renewed
        // certificate the broker could not start with is a Warning instead.
        let now = unix_now();
        let mut stale = HashMap::new();
        for p in &pods {
            let Some(facts) = facts_of(cache, &ctx.services.store, &serials, &key.1, p, now) else {
                continue;
            };
            if let Some(why) = restart::stale(&facts) {
                stale.insert(p.name_any(), why);
            }
            let held = restart::unusable_renewal(&facts);
            if let Some(secret) = p.annotations().get(TLS_SECRET) {
                let k = (key.0.clone(), secret.clone());
                if held.is_some() {
                    memory.unusable.insert(k);
                } else {
                    memory.unusable.remove(&k);
                }
            }
            if let Some(why) = held {
                unusable_certificate(ctx, &key, p, &why).await;
            }
        }
        if stale.is_empty() && !memory.active.contains_key(&key) && memory.swept {
            continue;
        }
        // The policy's slots hold its other workloads' restarts and, as its last status says,
        // their rolls: one budget for both (the policy controller counts these restarts too).
        let budget_of = |name: &str, policy: Option<&KafkaExposePolicy>| {
            let mut elsewhere: BTreeSet<(String, String)> = memory
                .active
                .iter()
                .filter(|(k, (p, in_flight))| {
                    **k != key && *in_flight && p.as_deref() == Some(name)
                })
                .map(|(k, _)| k.clone())
                .collect();
            if let Some(p) = policy {
                elsewhere.extend(rolling_under(p).filter(|k| *k != key));
            }
            u32::try_from(elsewhere.len()).unwrap_or(u32::MAX)
        };
        match workload(ctx, policies, settings, &stale, &key, &pods, budget_of).await {
            Ok(Some((policy, Some(record)))) => {
                memory
                    .active
                    .insert(key, (policy, record.in_flight().is_some()));
            }
            Ok(_) => {
                memory.active.remove(&key);
            }
            Err(e) => {
                warn!(namespace = %key.0, statefulset = %key.1, error = %e, "restart pass failed; retrying");
            }
        }
    }
    memory.swept = true;
}

/// The StatefulSets policy `p`'s last status has rolling (or stalled mid-roll).
fn rolling_under(p: &KafkaExposePolicy) -> impl Iterator<Item = (String, String)> + '_ {
    p.status
        .iter()
        .flat_map(|s| &s.workloads)
        .filter(|w| {
            w.kind == "StatefulSet"
                && matches!(w.state, WorkloadState::Rolling | WorkloadState::Stalled)
        })
        .map(|w| (w.namespace.clone(), w.name.clone()))
}

/// What the certificates of the Secrets `pods` started from say now, read at most every
/// [`SECRET_TTL`]: (Secret name → the certificate's facts).
async fn serials_for(
    ctx: &Context,
    ns: &str,
    pods: &[Arc<Pod>],
    every: Duration,
    memory: &mut Memory,
) -> HashMap<String, CertFacts> {
    let mut out = HashMap::new();
    for p in pods {
        let a = p.annotations();
        let (Some(loaded), Some(secret)) = (a.get(LOADED_SERIAL), a.get(TLS_SECRET)) else {
            continue;
        };
        let key = (ns.to_string(), secret.clone());
        // A serial read lately stands while it agrees with the broker's, or is one the broker
        // is not restarted for; one that does not is read again unless it was read in this pass
        // (less than a period, `every`, ago): a broker restarted since the last read may have
        // started with a newer certificate, and must not be restarted for it again.
        let held = memory.unusable.contains(&key);
        let fresh = memory
            .serials
            .get(&key)
            .filter(|(s, at)| {
                at.elapsed() < SECRET_TTL
                    && (s.as_ref().map(|c| c.serial.as_str()) == Some(loaded.as_str())
                        || held
                        || at.elapsed() < every)
            })
            .map(|(s, _)| s.clone());
        let serial = match fresh {
            Some(s) => s,
            None => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
                let serial = match api.get_opt(secret).await {
                    Ok(s) => s.and_then(|s| secret_cert(&s)),
                    // Reading Secrets is granted only with external-tls-signing: without it a
                    // renewal is noticed at the broker's next restart, not before.
                    Err(kube::Error::Api(s)) if s.code == 403 => None,
                    Err(e) => {
                        warn!(secret = %secret, namespace = %ns, error = %e, "could not read a broker's certificate Secret");
                        None
                    }
                };
                memory.serials.insert(key, (serial.clone(), Instant::now()));
                serial
            }
        };
        if let Some(s) = serial {
            out.insert(secret.clone(), s);
        }
    }
    memory
        .serials
        .retain(|_, (_, at)| at.elapsed() < SECRET_TTL * 10);
    let Memory {
        serials, unusable, ..
    } = memory;
    unusable.retain(|k| serials.contains_key(k));
    out
}

fn secret_cert(s: &Secret) -> Option<CertFacts> {
    let crt = s.data.as_ref()?.get(crate::certs::TLS_CERT)?;
    let text = std::str::from_utf8(&crt.0).ok()?;
    crate::certs::inspect(text).ok()?.into_iter().next()
}

/// A Warning, once per message, on the workload: `pod`'s Secret holds a certificate it could not
/// start with, so it is not restarted for it.
async fn unusable_certificate(ctx: &Context, (ns, sts): &(String, String), pod: &Pod, why: &str) {
    let subject = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("StatefulSet".into()),
        name: Some(sts.clone()),
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    let note = format!("broker pod {}: {why}", pod.name_any());
    let n = Note {
        type_: EventType::Warning,
        reason: "CertificateUnusable",
        note: &note,
        action: "Restart",
        secondary: Some(pod.object_ref(&())),
    };
    if ctx
        .events
        .publish_once(&format!("{ns}/{sts}"), &subject, n)
        .await
    {
        warn!(namespace = %ns, statefulset = %sts, "{note}");
    }
}

/// What cached pod `p` of StatefulSet `sts` shows and would be given now.
fn facts_of<'p>(
    cache: &BindingCache,
    services: &Store<k8s_openapi::api::core::v1::Service>,
    serials: &HashMap<String, CertFacts>,
    sts: &str,
    p: &'p Pod,
    now: i64,
) -> Option<restart::Facts<'p>> {
    let ns = p.namespace().unwrap_or_default();
    let addresses: Option<Vec<(String, String)>> = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .and_then(|node| cache.node_addresses(node));
    let a = p.annotations();
    let current = a.get(TLS_SECRET).and_then(|s| {
        Some(SecretCert {
            secret: s.clone(),
            facts: serials.get(s)?.clone(),
        })
    });
    restart::pod_facts(
        p,
        sts,
        addresses.as_deref(),
        |service| caches::ingress(&*services.get(&ObjectRef::new(service).within(&ns))?),
        a.get(LOADED_SERIAL).map(String::as_str),
        current,
        now,
    )
}

/// One StatefulSet's step. Returns its policy and the record it keeps (while it is active), or
/// `None` when it is gone.
async fn workload(
    ctx: &Context,
    policies: &Store<KafkaExposePolicy>,
    settings: Settings,
    stale: &HashMap<String, String>,
    (ns, name): &(String, String),
    pods: &[Arc<Pod>],
    budget_of: impl Fn(&str, Option<&KafkaExposePolicy>) -> u32,
) -> kube::Result<Option<(Option<String>, Option<Record>)>> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let Some(sts) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let meta = config::own_annotations(sts.metadata.annotations.as_ref());
    let template = sts
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref());
    let tpl = config::own_annotations(template);
    let policy = tpl.get(own::POLICY).cloned();
    let policy_obj = policy
        .as_ref()
        .and_then(|p| policies.state().into_iter().find(|x| x.name_any() == *p));
    let mode = match meta
        .get(keys::ON_ADDRESS_CHANGE)
        .or(tpl.get(keys::ON_ADDRESS_CHANGE))
    {
        Some(v) => OnAddressChange::parse(v).unwrap_or_default(),
        None => policy_obj
            .as_ref()
            .and_then(|p| p.spec.rollout.on_address_change)
            .map(Into::into)
            .unwrap_or_default(),
    };
    let pace = Pace {
        settle: settings.settle,
        progress_deadline: policy_obj
            .as_ref()
            .map(|p| Duration::from_secs(p.spec.rollout.progress_deadline_seconds.into()))
            .unwrap_or(settings.progress_deadline),
    };
    let budget = policy.as_deref().map(|name| Budget {
        max_concurrent: policy_obj
            .as_ref()
            .map_or(1, |p| p.spec.rollout.max_concurrent.max(1)),
        restarting_elsewhere: budget_of(name, policy_obj.as_deref()),
    });
    let hash = tpl.get(own::CONFIG_HASH);
    let replicas = sts.spec.replicas.unwrap_or(1);
    let start: u32 = tpl
        .get(own::ORDINALS_START)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let by_name: HashMap<String, &Arc<Pod>> = pods.iter().map(|p| (p.name_any(), p)).collect();
    let brokers: Vec<Broker> = (0..u32::try_from(replicas).unwrap_or(0))
        .map(|i| {
            let ordinal = start.saturating_add(i);
            let pod = format!("{name}-{ordinal}");
            let p = by_name.get(&pod);
            let present = p.is_some_and(|p| p.metadata.deletion_timestamp.is_none());
            let stale = p
                // A pod of another configuration is the roll's, not this restart's.
                .filter(|p| {
                    config::own_annotations(p.metadata.annotations.as_ref()).get(own::CONFIG_HASH)
                        == hash
                })
                .and_then(|p| stale.get(&p.name_any()).cloned());
            Broker {
                pod,
                ordinal,
                present,
                ready_since: p.and_then(|p| ready_since(p)),
                stale,
            }
        })
        .collect();
    let current = meta.get(own::RESTART).cloned();
    let recorded = current.as_deref().and_then(Record::parse);
    let now = unix_now();
    let first_stale = brokers
        .iter()
        .filter_map(|b| Some((b, b.stale.as_ref()?)))
        .max_by_key(|(b, _)| b.ordinal);
    let more = brokers
        .iter()
        .filter(|b| b.stale.is_some())
        .count()
        .saturating_sub(1);
    let more = match more {
        0 => String::new(),
        n => format!(" ({n} more stale)"),
    };
    // Each Event is related to the broker pod it is about: an Event series of its own per pod,
    // which the Recorder would otherwise merge by reason.
    let mut event: Option<(EventType, &str, String, String)> = None;
    let record = match mode {
        OnAddressChange::Warn => first_stale.map(|(b, why)| {
            let r = Record {
                state: State::Stale,
                pod: b.pod.clone(),
                since: None,
                why: format!(
                    "{why}{more}; on-address-change is warn: delete the pod when it suits (kubectl delete pod -n {ns} {})",
                    b.pod
                ),
            };
            event = Some((EventType::Warning, "BrokerAddressStale", r.to_string(), b.pod.clone()));
            r
        }),
        OnAddressChange::Restart => {
            let in_flight = recorded.as_ref().and_then(Record::in_flight);
            match restart::next(&brokers, in_flight.as_ref(), pace, budget, now) {
                Step::Idle => None,
                Step::Evict { pod, why } => {
                    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
                    match pods.evict(&pod, &EvictParams::default()).await {
                        Ok(_) => {
                            let r = Record {
                                state: State::Restarting,
                                pod: pod.clone(),
                                since: Some(now),
                                why: why.clone(),
                            };
                            info!(namespace = %ns, pod = %pod, "{why}: evicted");
                            event = Some((
                                EventType::Normal,
                                "BrokerRestarted",
                                format!(
                                    "evicted broker pod {pod}, which comes back with what it is given now: {why}. The next stale broker goes once it is Ready again and has settled {}s",
                                    pace.settle.as_secs()
                                ),
                                pod.clone(),
                            ));
                            Some(r)
                        }
                        Err(e) => {
                            let message = match &e {
                                kube::Error::Api(s) => s.message.clone(),
                                other => other.to_string(),
                            };
                            let r = Record {
                                state: State::Blocked,
                                pod: pod.clone(),
                                since: None,
                                why: format!("{why}; its eviction was refused: {message}"),
                            };
                            event = Some((
                                EventType::Warning,
                                "RestartBlocked",
                                r.to_string(),
                                pod.clone(),
                            ));
                            Some(r)
                        }
                    }
                }
                Step::Wait { why, .. } => match (in_flight, &recorded) {
                    (Some(_), Some(r)) => Some(Record {
                        state: State::Restarting,
                        ..r.clone()
                    }),
                    _ => first_stale.map(|(b, stale)| Record {
                        state: State::Waiting,
                        pod: b.pod.clone(),
                        since: None,
                        why: format!("{stale}{more}; waiting: {why}"),
                    }),
                },
                Step::Stalled { why } => {
                    let r = recorded.clone().map(|r| Record {
                        state: State::Stalled,
                        why: why.clone(),
                        ..r
                    });
                    let pod = r.as_ref().map(|r| r.pod.clone()).unwrap_or_default();
                    event = Some((EventType::Warning, "RestartStalled", why, pod));
                    r
                }
            }
        }
    };
    let text = record.as_ref().map(Record::to_string);
    if text != current {
        info!(namespace = %ns, statefulset = %name, record = ?text, "restart record");
        let patch =
            json!({"metadata": {"annotations": {format!("{PREFIX}{}", own::RESTART): text}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch(name, &params, &Patch::Merge(&patch)).await?;
    }
    if let Some((type_, reason, note, pod)) = event {
        let uid = sts.uid().unwrap_or_default();
        let n = Note {
            type_,
            reason,
            note: &note,
            action: "Restart",
            secondary: Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod),
                namespace: Some(ns.clone()),
                ..Default::default()
            }),
        };
        let said = ctx.events.publish_once(&uid, &sts.object_ref(&()), n).await;
        if said && type_ == EventType::Warning {
            warn!(namespace = %ns, statefulset = %name, reason, "{note}");
        }
    }
    Ok(Some((policy, record)))
}

/// Since when the pod is Ready (its condition's last transition, else its creation), if it is.
fn ready_since(p: &Pod) -> Option<i64> {
    let ready = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    ready
        .last_transition_time
        .as_ref()
        .or(p.metadata.creation_timestamp.as_ref())
        .map(|t| t.0.as_second())
}
