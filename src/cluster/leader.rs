//! Leader election for the reconciler, on a `coordination.k8s.io/v1` Lease.
//!
//! Every replica serves the webhook; one at a time reconciles, so that the install's replicas
//! neither race to create the same Service nor publish the same Events twice. The holder renews
//! the Lease every [`Election::renew_every`]; another replica takes it over once it has not been
//! renewed for [`Election::duration`]. Updates carry the Lease's resourceVersion, so two replicas
//! can never both win. On shutdown the holder releases the Lease and a standby takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

/// Where and how to hold the Lease.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// This replica, as the Lease names its holder (the pod name).
    pub identity: String,
    /// How long a Lease not renewed stays held.
    pub duration: Duration,
    /// How often the holder renews it, and a standby tries it.
    pub renew_every: Duration,
}

impl Election {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(4),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// What a replica may do with the Lease as it finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No Lease yet: create it, held by this replica.
    Create,
    /// Write it as held by this replica: renewing its own, or taking one that is free or expired.
    Hold {
        transitions: i32,
        /// Kept on a renewal; a new term starts now.
        acquire_time: Option<MicroTime>,
    },
    /// Another replica holds it, and it has not expired.
    Wait,
}

/// Whether to claim or renew the Lease: the decision of [`try_hold`], at `now` (seconds).
pub fn claim(current: Option<&LeaseSpec>, identity: &str, now: i64) -> Claim {
    let Some(spec) = current else {
        return Claim::Create;
    };
    let mine = spec.holder_identity.as_deref() == Some(identity);
    let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(MicroTime(t)), Some(d)) => now > t.as_second() + i64::from(d),
        _ => true,
    };
    if !(mine || free || expired) {
        return Claim::Wait;
    }
    Claim::Hold {
        transitions: spec.lease_transitions.unwrap_or(0) + i32::from(!mine),
        acquire_time: if mine {
            spec.acquire_time.clone()
        } else {
            None
        },
    }
}

/// Takes or renews the Lease for this replica. `Ok(true)` when it holds it afterwards.
pub async fn try_hold(api: &Api<Lease>, e: &Election) -> Result<bool, kube::Error> {
    let current = api.get_opt(&e.name).await?;
    let fresh = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(e.identity.clone()),
        lease_duration_seconds: Some(e.duration.as_secs() as i32),
        acquire_time: acquired.or_else(|| Some(now())),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
    let result = match claim(spec.as_ref(), &e.identity, Timestamp::now().as_second()) {
        Claim::Wait => return Ok(false),
        Claim::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(e.name.clone()),
                    namespace: Some(e.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(fresh(0, None)),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Claim::Hold {
            transitions,
            acquire_time,
        } => {
            // Replacing the Lease as read carries its resourceVersion: of two replicas that
            // both try, one gets a conflict.
            let mut lease = current.unwrap_or_default();
            lease.spec = Some(fresh(transitions, acquire_time));
            api.replace(&e.name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Gives the Lease up, if this replica holds it.
pub async fn release(api: &Api<Lease>, e: &Election) {
    let Ok(Some(mut lease)) = api.get_opt(&e.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(e.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(err) = api.replace(&e.name, &PostParams::default(), &lease).await {
        warn!(error = %err, "could not release the leader Lease");
    }
}

/// A future that resolves when the work it is given to must stop.
pub type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs `lead()` whenever this replica holds the Lease, until `shutdown` resolves. Each term of
/// leadership gets a [`Stop`] that resolves when the term ends (the Lease lost, or shutdown),
/// which `lead` must stop on.
pub async fn run<F, Fut>(
    client: Client,
    e: Election,
    shutdown: impl std::future::Future<Output = ()>,
    mut lead: F,
) where
    F: FnMut(Stop) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, &e.namespace);
    tokio::pin!(shutdown);
    loop {
        // Stand by until the Lease is ours.
        loop {
            match try_hold(&api, &e).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => warn!(error = %err, "leader Lease not reachable; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(e.renew_every) => {}
                _ = &mut shutdown => return,
            }
        }
        info!(lease = %e.name, identity = %e.identity, "leading");
        let (end_tx, end_rx) = tokio::sync::oneshot::channel();
        let mut term = tokio::spawn(lead(Box::pin(async move {
            let _ = end_rx.await;
        })));
        let (stopping, ended) = loop {
            tokio::select! {
                _ = tokio::time::sleep(e.renew_every) => {}
                _ = &mut shutdown => break (true, false),
                _ = &mut term => break (false, true),
            }
            match try_hold(&api, &e).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(lease = %e.name, "leader Lease lost: standing by");
                    break (false, false);
                }
                // The API server may be away: keep leading; nobody else can take the Lease then.
                Err(err) => warn!(error = %err, "leader Lease not renewed"),
            }
        };
        let _ = end_tx.send(());
        if !ended {
            let _ = tokio::time::timeout(Duration::from_secs(20), &mut term).await;
        }
        if stopping {
            release(&api, &e).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            acquire_time: Some(MicroTime(Timestamp::from_second(renewed - 100).unwrap())),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(2),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(claim(None, "a", 1000), Claim::Create);
    }

    #[test]
    fn a_live_lease_of_another_replica_is_waited_for() {
        assert_eq!(
            claim(Some(&lease(Some("b"), 1000, 15)), "a", 1010),
            Claim::Wait
        );
    }

    #[test]
    fn an_expired_or_released_lease_is_taken_as_a_new_term() {
        let taken = Claim::Hold {
            transitions: 3,
            acquire_time: None,
        };
        assert_eq!(claim(Some(&lease(Some("b"), 1000, 15)), "a", 1016), taken);
        assert_eq!(claim(Some(&lease(None, 1000, 15)), "a", 1001), taken);
        assert_eq!(claim(Some(&lease(Some(""), 1000, 15)), "a", 1001), taken);
    }

    #[test]
    fn renewing_keeps_the_term() {
        let own = lease(Some("a"), 1000, 15);
        assert_eq!(
            claim(Some(&own), "a", 1020),
            Claim::Hold {
                transitions: 2,
                acquire_time: own.acquire_time.clone(),
            }
        );
    }
}
