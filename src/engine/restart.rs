//! Restarting the brokers whose external address changed under them (issue 28), as a pure
//! function of what the cluster shows: which brokers are stale, which are Ready and since when,
//! and which one is being restarted. The caller reads those facts and carries out the step; it
//! keeps the broker in flight on the workload, so a new leader resumes where the old one stopped.
//!
//! The rules, each held by the property test below:
//! - one broker of a workload at a time: nothing is evicted while any broker of the workload is
//!   missing, being deleted or not Ready, so at most the evicted one is down;
//! - the next broker only after the previous one is Ready again and the settle time has passed;
//! - never beyond a policy's `maxConcurrent` workloads restarting at once;
//! - a broker in flight past the progress deadline stalls the workload: nothing more is evicted
//!   until it is back, or the user acts.
//!
//! What is stale is [`stale`]: what a pod recorded at admission (`kafka-expose.io/advertised`),
//! its node address given at binding, and the certificate its gate let it start with, against
//! what it would be given now. Where the restart stands is a [`Record`] on the workload.
//! `cluster::restarts` reads the cluster and carries the steps out.

use std::time::Duration;

/// One broker of a workload, as its pod shows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub pod: String,
    pub ordinal: u32,
    /// The pod exists and is not being deleted.
    pub present: bool,
    /// Its Ready condition is True, and since when (unix seconds).
    pub ready_since: Option<i64>,
    /// Why it must restart (what it advertises, and what it should), if it must.
    pub stale: Option<String>,
}

/// The broker being restarted, and when its eviction was made (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub pod: String,
    pub since: i64,
}

/// The pace of restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// How long a restarted broker is Ready before the next one goes.
    pub settle: Duration,
    /// How long a restarted broker may take to be Ready again.
    pub progress_deadline: Duration,
}

/// A policy's budget: how many of its workloads may restart at once, and how many other
/// workloads of it are restarting now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_concurrent: u32,
    pub restarting_elsewhere: u32,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No broker is stale, and none is in flight.
    Idle,
    /// Evict this broker's pod: it is stale and every other broker is Ready.
    Evict { pod: String, why: String },
    /// Nothing yet; look again after `recheck` (or on the next event).
    Wait { why: String, recheck: Duration },
    /// The broker in flight is past the progress deadline.
    Stalled { why: String },
}

/// The next step for one workload's brokers at `now` (unix seconds).
pub fn next(
    brokers: &[Broker],
    in_flight: Option<&InFlight>,
    pace: Pace,
    budget: Option<Budget>,
    now: i64,
) -> Step {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    // A broker in flight that is no longer one of the workload's (scaled away) is done.
    let in_flight = in_flight.filter(|f| brokers.iter().any(|b| b.pod == f.pod));
    if let Some(f) = in_flight {
        let back = brokers
            .iter()
            .find(|b| b.pod == f.pod && b.present)
            .and_then(|b| b.ready_since)
            // Ready since before its eviction is the old pod's Ready, not the new one's.
            .filter(|&t| t >= f.since);
        match back {
            None if now.saturating_sub(f.since) > secs(pace.progress_deadline) => {
                return Step::Stalled {
                    why: format!(
                        "broker {} was restarted {}s ago and is not Ready again (progress deadline {}s): no other broker restarts until it is",
                        f.pod,
                        now.saturating_sub(f.since),
                        pace.progress_deadline.as_secs()
                    ),
                };
            }
            None => {
                return Step::Wait {
                    why: format!("broker {} is restarting", f.pod),
                    recheck: Duration::from_secs(5),
                };
            }
            Some(t) if now.saturating_sub(t) < secs(pace.settle) => {
                let left = secs(pace.settle) - now.saturating_sub(t);
                return Step::Wait {
                    why: format!("broker {} is Ready again; settling for {left}s", f.pod),
                    recheck: Duration::from_secs(u64::try_from(left).unwrap_or(1).max(1)),
                };
            }
            Some(_) => {}
        }
    }
    // The highest ordinal first, as a StatefulSet rolls.
    let Some(target) = brokers
        .iter()
        .filter(|b| b.stale.is_some())
        .max_by_key(|b| b.ordinal)
    else {
        return Step::Idle;
    };
    if let Some(down) = brokers
        .iter()
        .find(|b| !b.present || b.ready_since.is_none())
    {
        return Step::Wait {
            why: format!(
                "broker {} is not Ready: no broker restarts while another is down",
                down.pod
            ),
            recheck: Duration::from_secs(5),
        };
    }
    if let Some(b) = budget
        && b.restarting_elsewhere >= b.max_concurrent
    {
        return Step::Wait {
            why: format!(
                "the policy's rollout.maxConcurrent ({}) workloads are restarting or rolling",
                b.max_concurrent
            ),
            recheck: Duration::from_secs(10),
        };
    }
    Step::Evict {
        pod: target.pod.clone(),
        why: target.stale.clone().unwrap_or_default(),
    }
}

/// What one broker pod shows of what it advertises, and what it would be given now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts<'a> {
    /// `kafka-expose.io/advertised`, as admission recorded it: `<host>:<port>`, the host a
    /// literal or a `$(VAR)` reference.
    pub advertised: Option<&'a str>,
    /// `kafka-expose.io/external-host`: the node's address, given at binding.
    pub given_host: Option<&'a str>,
    /// The host it would be given now, and where that comes from (`its node's ExternalIP`).
    pub wanted_host: Option<(String, String)>,
    /// The serial of the certificate its gate let it start with.
    pub loaded_serial: Option<&'a str>,
    /// The certificate its Secret holds now.
    pub current_cert: Option<SecretCert>,
    /// Now, in seconds since the epoch: a certificate past its end is not one to restart for.
    pub now: i64,
}

/// The certificate a broker's Secret holds now: the Secret's name, and what the certificate says
/// of itself (its serial, its end, its names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretCert {
    pub secret: String,
    pub facts: crate::certs::CertFacts,
}

/// The host and port a broker advertises, as it recorded them at admission: a literal, or the
/// node address it was given at binding. `None` where that is not known, or is another `$(VAR)`
/// (the pod's name, its host IP), which cannot change while the pod lives.
fn advertised_address(f: &Facts<'_>) -> Option<(String, String)> {
    let given = format!(
        "{}:",
        crate::names::envs::reference(crate::names::envs::EXTERNAL_HOST)
    );
    let a = f.advertised?.trim();
    let (host, port) = match a.strip_prefix(given.as_str()) {
        Some(port) => (f.given_host?.trim(), port),
        None => a.rsplit_once(':')?,
    };
    (!host.is_empty() && !host.contains("$(")).then(|| (host.to_string(), port.to_string()))
}

/// Why the certificate the broker's Secret holds now could not serve it, where the broker's
/// address is unchanged and the certificate is a new one: by the gate's own rule
/// ([`crate::certs::unfit_for`]), it does not name the host the broker advertises, or it has
/// ended. The gate would hold the restarted broker until the Secret is put right, so such a
/// certificate is reported (a Warning) and not restarted for.
pub fn unusable_renewal(f: &Facts<'_>) -> Option<String> {
    use crate::certs::{Unfit, unfit_for};
    let (loaded, cert) = (f.loaded_serial?, f.current_cert.as_ref()?);
    if loaded.eq_ignore_ascii_case(&cert.facts.serial) {
        return None;
    }
    let (host, _) = advertised_address(f)?;
    if f.wanted_host
        .as_ref()
        .is_some_and(|(w, _)| !w.eq_ignore_ascii_case(&host))
    {
        // Its address changed too: it restarts for that, and the gate waits for a
        // certificate naming the new one.
        return None;
    }
    let facts = &cert.facts;
    let what = match unfit_for(facts, &host, f.now)? {
        Unfit::NotNamed => format!(
            "does not name {host} (it names {})",
            if facts.names.is_empty() {
                "nothing".to_string()
            } else {
                facts.names.join(", ")
            }
        ),
        Unfit::Ended => format!("ended at {} (unix seconds)", facts.not_after),
    };
    Some(format!(
        "Secret {} now holds certificate serial {}, which {what}; the broker keeps serial {loaded}, and is restarted for its Secret's certificate once one names {host}",
        cert.secret, facts.serial
    ))
}

/// Why the broker must restart to advertise what it should, if it must: e.g. `advertises
/// 198.51.100.21:32401; its node's ExternalIP is now 198.51.100.77`. A host that is another
/// `$(VAR)` (the pod's name, its host IP) cannot change while the pod lives; what is not known
/// (a pod from before this record, a node not cached) is never taken as stale.
pub fn stale(f: &Facts<'_>) -> Option<String> {
    let mut why = Vec::new();
    if let (Some((host, port)), Some((wanted, source))) = (advertised_address(f), &f.wanted_host)
        && !host.eq_ignore_ascii_case(wanted)
    {
        why.push(format!(
            "advertises {host}:{port}; {source} is now {wanted}"
        ));
    }
    if let (Some(loaded), Some(cert)) = (f.loaded_serial, &f.current_cert)
        && !loaded.eq_ignore_ascii_case(&cert.facts.serial)
        && unusable_renewal(f).is_none()
    {
        why.push(format!(
            "started with certificate serial {loaded}; Secret {} now holds serial {}",
            cert.secret, cert.facts.serial
        ));
    }
    (!why.is_empty()).then(|| why.join("; and "))
}

/// The gate's termination message once the broker's stores are written: which certificate it
/// starts with, so that the reconciler can tell when the Secret holds a newer one (issue 28's
/// restart). Read back by [`loaded_serial`].
pub fn loaded_message(serial: &str) -> String {
    format!("{}{serial}", crate::names::LOADED_CERT_MARK)
}

/// The serial of a gate's termination message, if it is one.
pub fn loaded_serial(message: &str) -> Option<&str> {
    let s = message
        .trim()
        .strip_prefix(crate::names::LOADED_CERT_MARK)?;
    (!s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit())).then_some(s)
}

/// What broker pod `p` of StatefulSet `workload` shows and would be given now, for [`stale`] and
/// [`unusable_renewal`]: what the pod recorded, against its node's `addresses` (type, address),
/// the ingress of a LoadBalancer Service by name (`ingress`), and the certificate its Secret
/// holds now (`current_cert`). `None` for a pod being deleted, or not exposed. The restarts loop
/// and `check` share it.
pub fn pod_facts<'p>(
    p: &'p k8s_openapi::api::core::v1::Pod,
    workload: &str,
    addresses: Option<&[(String, String)]>,
    ingress: impl Fn(&str) -> Option<String>,
    loaded_serial: Option<&'p str>,
    current_cert: Option<SecretCert>,
    now: i64,
) -> Option<Facts<'p>> {
    use crate::config::{self, AdvertisedHost, Requested};
    use crate::names::{PREFIX, own};
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let a = p.metadata.annotations.as_ref();
    let get = |k: &str| a?.get(&format!("{PREFIX}{k}")).map(String::as_str);
    let Ok(Requested::Expose(cfg)) = config::parse(&config::user_annotations(a)) else {
        return None;
    };
    let name = p.metadata.name.as_deref().unwrap_or_default();
    let wanted_host = match &cfg.advertised_host {
        AdvertisedHost::Node(types) => addresses
            .and_then(|addresses| super::binding::choose_typed(addresses, types))
            .map(|(t, a)| (a, format!("its node's {}", t.as_str()))),
        AdvertisedHost::LoadBalancer => name
            .strip_prefix(workload)
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|n| n.parse().ok())
            .and_then(|ordinal| {
                let service = cfg.broker_service(workload, ordinal);
                ingress(&service).map(|a| {
                    (
                        a,
                        format!("the ingress of its LoadBalancer Service {service}"),
                    )
                })
            }),
        _ => None,
    };
    Some(Facts {
        advertised: get(own::ADVERTISED),
        given_host: get(own::EXTERNAL_HOST),
        wanted_host,
        loaded_serial,
        current_cert,
        now,
    })
}

/// Why broker pod `p` must restart, if it must: [`stale`] on its [`pod_facts`].
pub fn pod_stale(
    p: &k8s_openapi::api::core::v1::Pod,
    workload: &str,
    addresses: Option<&[(String, String)]>,
    ingress: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    stale(&pod_facts(p, workload, addresses, ingress, None, None, 0)?)
}

/// Where a workload's restart stands: `kafka-expose.io/restart` on the workload, e.g.
/// `restarting kafka-2 since 1764962000: advertises 198.51.100.21:32402; its node's ExternalIP
/// is now 198.51.100.77`. The broker in flight is read back from it by a new leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub state: State,
    pub pod: String,
    /// When its eviction was made (unix seconds), for `restarting` and `stalled`.
    pub since: Option<i64>,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Evicted; not Ready again yet, or settling.
    Restarting,
    /// Evicted, and not Ready again within the progress deadline.
    Stalled,
    /// Stale, and its eviction was refused (a PodDisruptionBudget).
    Blocked,
    /// Stale, and waiting its turn (another broker is down, the policy's budget is spent).
    Waiting,
    /// Stale, and `on-address-change: warn`: reported only.
    Stale,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restarting => "restarting",
            Self::Stalled => "stalled",
            Self::Blocked => "blocked",
            Self::Waiting => "waiting",
            Self::Stale => "stale",
        }
    }

    const ALL: [Self; 5] = [
        Self::Restarting,
        Self::Stalled,
        Self::Blocked,
        Self::Waiting,
        Self::Stale,
    ];
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.state.as_str(), self.pod)?;
        if let Some(t) = self.since {
            write!(f, " since {t}")?;
        }
        write!(f, ": {}", self.why)
    }
}

impl Record {
    /// Reads a record back; `None` for anything else (edited by hand, from another version).
    pub fn parse(text: &str) -> Option<Self> {
        let (head, why) = text.split_once(": ")?;
        let mut words = head.split_whitespace();
        let state = words.next()?;
        let state = State::ALL.into_iter().find(|s| s.as_str() == state)?;
        let pod = words.next()?.to_string();
        let since = match (words.next(), words.next()) {
            (Some("since"), Some(t)) => Some(t.parse().ok()?),
            (None, _) => None,
            _ => return None,
        };
        if words.next().is_some() {
            return None;
        }
        Some(Self {
            state,
            pod,
            since,
            why: why.to_string(),
        })
    }

    /// The broker in flight it names, if its eviction was made.
    pub fn in_flight(&self) -> Option<InFlight> {
        match self.state {
            State::Restarting | State::Stalled => Some(InFlight {
                pod: self.pod.clone(),
                since: self.since?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_broker_is_stale_when_its_address_or_certificate_is_not_what_it_would_be_given() {
        let node = |now: &str| Some((now.to_string(), "its node's ExternalIP".to_string()));
        let f = Facts {
            advertised: Some("$(KAFKA_EXPOSE_EXTERNAL_HOST):32401"),
            given_host: Some("198.51.100.21"),
            wanted_host: node("198.51.100.77"),
            ..Facts::default()
        };
        assert_eq!(
            stale(&f).as_deref(),
            Some("advertises 198.51.100.21:32401; its node's ExternalIP is now 198.51.100.77")
        );
        assert_eq!(
            stale(&Facts {
                wanted_host: node("198.51.100.21"),
                ..f.clone()
            }),
            None
        );
        // Not given yet, not recorded, another variable: nothing to compare.
        for (advertised, given) in [
            (Some("$(KAFKA_EXPOSE_EXTERNAL_HOST):32401"), None),
            (None, Some("198.51.100.21")),
            (Some("$(KAFKA_EXPOSE_HOST_IP):32401"), None),
            (Some("garbage"), None),
        ] {
            let f = Facts {
                advertised,
                given_host: given,
                ..f.clone()
            };
            assert_eq!(stale(&f), None, "{f:?}");
        }
        // A LoadBalancer's literal address.
        let lb = Facts {
            advertised: Some("203.0.113.10:9094"),
            wanted_host: Some((
                "203.0.113.99".into(),
                "its LoadBalancer Service kafka-0-external's ingress".into(),
            )),
            loaded_serial: Some("0a"),
            current_cert: cert("0b", &["203.0.113.99"], 2_000),
            now: 1_000,
            ..Facts::default()
        };
        assert_eq!(
            stale(&lb).as_deref(),
            Some(
                "advertises 203.0.113.10:9094; its LoadBalancer Service kafka-0-external's ingress is now 203.0.113.99; and started with certificate serial 0a; Secret kafka-0-external-tls now holds serial 0b"
            )
        );
        assert_eq!(unusable_renewal(&lb), None, "it restarts for its address");
    }

    fn cert(serial: &str, names: &[&str], not_after: i64) -> Option<SecretCert> {
        Some(SecretCert {
            secret: "kafka-0-external-tls".into(),
            facts: crate::certs::CertFacts {
                serial: serial.into(),
                not_after,
                names: names.iter().map(|n| n.to_string()).collect(),
            },
        })
    }

    /// A renewed certificate restarts its broker only where the broker could start with it: it
    /// names the host the broker advertises, and has not ended. Otherwise the restarted broker's
    /// gate would hold it; the renewal is reported instead, and the broker keeps running.
    #[test]
    fn a_renewal_the_broker_could_not_start_with_is_reported_and_not_restarted_for() {
        let f = Facts {
            advertised: Some("kafka-0.kafka.example.com:443"),
            loaded_serial: Some("0a"),
            current_cert: cert("0b", &["*.kafka.example.com"], 2_000),
            now: 1_000,
            ..Facts::default()
        };
        assert_eq!(
            stale(&f).as_deref(),
            Some(
                "started with certificate serial 0a; Secret kafka-0-external-tls now holds serial 0b"
            )
        );
        assert_eq!(unusable_renewal(&f), None);
        let wrong = Facts {
            current_cert: cert("0b", &["kafka-0.other.example.com"], 2_000),
            ..f.clone()
        };
        assert_eq!(stale(&wrong), None);
        assert_eq!(
            unusable_renewal(&wrong).as_deref(),
            Some(
                "Secret kafka-0-external-tls now holds certificate serial 0b, which does not name kafka-0.kafka.example.com (it names kafka-0.other.example.com); the broker keeps serial 0a, and is restarted for its Secret's certificate once one names kafka-0.kafka.example.com"
            )
        );
        let ended = Facts {
            current_cert: cert("0b", &["kafka-0.kafka.example.com"], 1_000),
            ..f.clone()
        };
        assert_eq!(stale(&ended), None);
        assert!(
            unusable_renewal(&ended).is_some_and(|w| w.contains("which ended at 1000")),
            "{ended:?}"
        );
        // The same serial: nothing new, whatever it names.
        let same = Facts {
            current_cert: cert("0A", &[], 0),
            ..f.clone()
        };
        assert_eq!((stale(&same), unusable_renewal(&same)), (None, None));
        // A node address given at binding is the host it must name.
        let node = Facts {
            advertised: Some("$(KAFKA_EXPOSE_EXTERNAL_HOST):32401"),
            given_host: Some("198.51.100.21"),
            wanted_host: Some(("198.51.100.21".into(), "its node's ExternalIP".into())),
            current_cert: cert("0b", &["198.51.100.22"], 2_000),
            ..f.clone()
        };
        assert_eq!(stale(&node), None);
        assert!(unusable_renewal(&node).is_some());
        // Where its address changed too, it restarts for that (its gate waits for a certificate
        // naming the new address).
        let moved = Facts {
            wanted_host: Some(("198.51.100.22".into(), "its node's ExternalIP".into())),
            ..node.clone()
        };
        assert!(stale(&moved).is_some_and(|w| w.contains("is now 198.51.100.22")));
        assert_eq!(unusable_renewal(&moved), None);
    }

    #[test]
    fn a_record_reads_back_and_names_the_broker_in_flight() {
        let r = Record {
            state: State::Restarting,
            pod: "kafka-2".into(),
            since: Some(1_764_962_000),
            why: "advertises a:1; its node's ExternalIP is now b".into(),
        };
        let text = r.to_string();
        assert_eq!(
            text,
            "restarting kafka-2 since 1764962000: advertises a:1; its node's ExternalIP is now b"
        );
        assert_eq!(Record::parse(&text), Some(r.clone()));
        assert_eq!(
            r.in_flight(),
            Some(InFlight {
                pod: "kafka-2".into(),
                since: 1_764_962_000
            })
        );
        let blocked = Record {
            state: State::Blocked,
            since: None,
            ..r
        };
        assert_eq!(Record::parse(&blocked.to_string()), Some(blocked.clone()));
        assert_eq!(blocked.in_flight(), None);
        for bad in [
            "",
            "restarting",
            "restarting kafka-2 since x: y",
            "gone kafka-2: y",
            "restarting a b c: y",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_text_reads_as_a_record_or_nothing(text in ".{0,80}") {
            if let Some(r) = Record::parse(&text) {
                prop_assert_eq!(Record::parse(&r.to_string()), Some(r));
            }
        }
    }

    const PACE: Pace = Pace {
        settle: Duration::from_secs(30),
        progress_deadline: Duration::from_secs(600),
    };

    fn broker(i: u32, ready_since: Option<i64>, stale: bool) -> Broker {
        Broker {
            pod: format!("kafka-{i}"),
            ordinal: i,
            present: true,
            ready_since,
            stale: stale.then(|| format!("advertises 198.51.100.2{i}:3240{i}")),
        }
    }

    #[test]
    fn one_stale_broker_at_a_time_each_after_the_last_has_settled() {
        let all = vec![
            broker(0, Some(0), true),
            broker(1, Some(0), false),
            broker(2, Some(0), true),
        ];
        let Step::Evict { pod, why } = next(&all, None, PACE, None, 100) else {
            panic!("the highest stale ordinal goes first");
        };
        assert_eq!(pod, "kafka-2");
        assert!(why.contains("advertises"), "{why}");
        let f = InFlight {
            pod: "kafka-2".into(),
            since: 100,
        };
        // Gone, then back but still within the settle time.
        let mut gone = all.clone();
        gone[2].present = false;
        assert!(matches!(
            next(&gone, Some(&f), PACE, None, 110),
            Step::Wait { .. }
        ));
        let mut back = all.clone();
        back[2] = broker(2, Some(120), false);
        assert!(matches!(
            next(&back, Some(&f), PACE, None, 130),
            Step::Wait { .. }
        ));
        let Step::Evict { pod, .. } = next(&back, Some(&f), PACE, None, 151) else {
            panic!("after the settle time, the next");
        };
        assert_eq!(pod, "kafka-0");
        // The old pod's Ready, from before the eviction, is not the new one's.
        assert!(matches!(
            next(&all, Some(&f), PACE, None, 200),
            Step::Wait { .. }
        ));
        let Step::Stalled { why } = next(&gone, Some(&f), PACE, None, 701) else {
            panic!("past the deadline");
        };
        assert!(why.contains("kafka-2") && why.contains("600s"), "{why}");
        let fresh = vec![broker(0, Some(0), false)];
        assert_eq!(next(&fresh, None, PACE, None, 100), Step::Idle);
    }

    #[test]
    fn a_policys_budget_and_an_unready_broker_hold_the_restart() {
        let all = vec![broker(0, Some(0), true), broker(1, None, false)];
        let Step::Wait { why, .. } = next(&all, None, PACE, None, 100) else {
            panic!("broker 1 is not Ready");
        };
        assert!(why.contains("kafka-1"), "{why}");
        let ready = vec![broker(0, Some(0), true), broker(1, Some(0), false)];
        let full = Budget {
            max_concurrent: 2,
            restarting_elsewhere: 2,
        };
        let Step::Wait { why, .. } = next(&ready, None, PACE, Some(full), 100) else {
            panic!("the policy's budget is spent");
        };
        assert!(why.contains("maxConcurrent (2)"), "{why}");
    }

    fn brokers() -> impl Strategy<Value = Vec<Broker>> {
        proptest::collection::vec(
            (
                any::<bool>(),
                proptest::option::of(0i64..1_000),
                any::<bool>(),
            ),
            0..6,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (present, ready_since, stale))| Broker {
                    present,
                    ..broker(i as u32, ready_since, stale)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn never_two_brokers_down_never_early_never_over_budget(
            brokers in brokers(),
            flight in proptest::option::of((0u32..6, 0i64..1_000)),
            budget in proptest::option::of((1u32..4, 0u32..5)),
            now in 0i64..2_000,
        ) {
            let in_flight = flight.map(|(i, since)| InFlight { pod: format!("kafka-{i}"), since });
            let budget = budget.map(|(max_concurrent, restarting_elsewhere)| Budget {
                max_concurrent,
                restarting_elsewhere,
            });
            let step = next(&brokers, in_flight.as_ref(), PACE, budget, now);
            if let Step::Evict { pod, .. } = &step {
                // Every broker is present and Ready: after this eviction one is down, at most.
                prop_assert!(brokers.iter().all(|b| b.present && b.ready_since.is_some()));
                let target = brokers.iter().find(|b| &b.pod == pod).unwrap();
                prop_assert!(target.stale.is_some(), "only a stale broker is evicted");
                if let Some(b) = budget {
                    prop_assert!(b.restarting_elsewhere < b.max_concurrent);
                }
                // The one in flight (if still the workload's) is back since its eviction, for
                // the settle time.
                if let Some(f) = &in_flight
                    && let Some(back) = brokers.iter().find(|b| b.pod == f.pod)
                {
                    let since = back.ready_since.unwrap();
                    prop_assert!(since >= f.since && now - since >= 30);
                }
            }
            if let Step::Stalled { .. } = step {
                let f = in_flight.as_ref().unwrap();
                prop_assert!(now - f.since > 600);
            }
        }
    }
}
