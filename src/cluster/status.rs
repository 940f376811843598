//! The reconciler's decisions, as pure functions: from what a reconciliation found, the
//! workload's `kafka-expose.io/status` and bootstrap address, the Events to publish, and when to
//! look again.

use std::time::Duration;

/// How soon a failed reconciliation is retried.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How soon a workload whose addresses are not all known yet is looked at again.
pub const PENDING_RECHECK: Duration = Duration::from_secs(5);
/// How often a settled workload is reconciled anyway, to catch what no watch event shows.
pub const RESYNC: Duration = Duration::from_secs(300);

/// What a reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The configuration is invalid: nothing was applied.
    Invalid,
    /// Nothing is exposed; the workload's Services were removed.
    NotExposed,
    Exposed {
        /// The external bootstrap address, once known.
        bootstrap: Option<String>,
        /// How long the bootstrap LoadBalancer has waited for an address, while it has none.
        lb_pending: Option<Duration>,
    },
}

/// When to reconcile the workload again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    After(Duration),
    /// Only when the workload changes.
    OnChange,
}

/// What follows from a reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `kafka-expose.io/status`; `None` removes it.
    pub status: Option<String>,
    /// `kafka-expose.io/bootstrap-servers`; `None` removes it.
    pub bootstrap: Option<String>,
    /// A Normal Event announcing a new bootstrap address.
    pub announce: Option<String>,
    /// A Warning Event: the LoadBalancer has waited this long for an address.
    pub lb_pending_too_long: Option<Duration>,
    /// Every Service applied; otherwise the error path retries after [`RETRY_AFTER`].
    pub next: Next,
}

/// Decides the status, Events and next look from what was `found`, the Service failures, the
/// brokers that kept the chart's configuration (`kept`: their steps found the listener already
/// there), and the bootstrap address the workload carries now.
pub fn verdict(
    found: &Found,
    failures: &[String],
    kept: &[String],
    previous_bootstrap: Option<&str>,
    lb_pending_warning: Duration,
) -> Verdict {
    let mut v = Verdict {
        status: None,
        bootstrap: None,
        announce: None,
        lb_pending_too_long: None,
        next: Next::After(RESYNC),
    };
    match found {
        Found::Invalid => {
            v.status = Some("invalid-configuration".into());
            v.next = Next::OnChange;
        }
        Found::NotExposed => {}
        Found::Exposed {
            bootstrap,
            lb_pending,
        } => {
            v.bootstrap = bootstrap.clone();
            if let Some(since) = lb_pending {
                v.next = Next::After(PENDING_RECHECK);
                v.lb_pending_too_long = (*since >= lb_pending_warning).then_some(*since);
            }
            v.status = Some(match (failures.first().or(kept.first()), lb_pending) {
                (Some(f), _) => format!("error: {f}"),
                (None, Some(_)) => "pending: loadbalancer address".into(),
                (None, None) if bootstrap.is_none() => "pending: broker addresses".into(),
                (None, None) => "ok".into(),
            });
            if bootstrap.is_none() && lb_pending.is_none() {
                v.next = Next::After(PENDING_RECHECK);
            }
            if let Some(b) = bootstrap
                && previous_bootstrap != Some(b.as_str())
            {
                v.announce = Some(format!("external bootstrap servers: {b}"));
            }
        }
    }
    v
}

/// The status with the workload's restart record (`kafka-expose.io/restart`) in place of `ok`:
/// a workload whose brokers advertise an old address is not ok, whatever its Services. A failure
/// or a pending address says more, and stays.
pub fn with_restart(mut v: Verdict, record: Option<&str>) -> Verdict {
    if let Some(r) = record.map(str::trim).filter(|r| !r.is_empty())
        && v.status.as_deref() == Some("ok")
    {
        v.status = Some(format!("restart: {r}"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_on_record_is_the_status_of_an_otherwise_settled_workload() {
        let ok = verdict(
            &exposed(Some("192.0.2.10:31000"), None),
            &[],
            &[],
            None,
            WARN,
        );
        let r = "restarting kafka-2 since 1: advertises a:1; its node's ExternalIP is now b";
        assert_eq!(
            with_restart(ok.clone(), Some(r)).status.as_deref(),
            Some(
                "restart: restarting kafka-2 since 1: advertises a:1; its node's ExternalIP is now b"
            )
        );
        assert_eq!(with_restart(ok.clone(), None), ok);
        let failed = verdict(&exposed(None, None), &["x".into()], &[], None, WARN);
        assert_eq!(with_restart(failed.clone(), Some(r)), failed);
    }

    const WARN: Duration = Duration::from_secs(300);

    fn exposed(bootstrap: Option<&str>, lb_pending: Option<u64>) -> Found {
        Found::Exposed {
            bootstrap: bootstrap.map(str::to_string),
            lb_pending: lb_pending.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_settled_workload_is_ok_and_resynced_rarely() {
        let v = verdict(
            &exposed(Some("192.0.2.10:31000"), None),
            &[],
            &[],
            None,
            WARN,
        );
        assert_eq!(v.status.as_deref(), Some("ok"));
        assert_eq!(v.next, Next::After(RESYNC));
        assert_eq!(
            v.announce.as_deref(),
            Some("external bootstrap servers: 192.0.2.10:31000")
        );
        let again = verdict(
            &exposed(Some("192.0.2.10:31000"), None),
            &[],
            &[],
            Some("192.0.2.10:31000"),
            WARN,
        );
        assert_eq!(again.announce, None);
    }

    #[test]
    fn a_failed_service_is_the_status() {
        let v = verdict(
            &exposed(Some("a:1"), None),
            &["Service k-0-external (NodePort 32400): taken".into()],
            &[],
            None,
            WARN,
        );
        assert_eq!(
            v.status.as_deref(),
            Some("error: Service k-0-external (NodePort 32400): taken")
        );
    }

    #[test]
    fn a_broker_that_kept_the_charts_listener_is_the_status_after_service_failures() {
        let kept = ["pod k-0: kafka-expose kept the chart's configuration: listener EXTERNAL is already in it (EXTERNAL://:9095), ...; set kafka-expose.io/adapter=adopt".to_string()];
        let v = verdict(&exposed(Some("a:1"), None), &[], &kept, None, WARN);
        assert_eq!(v.status, Some(format!("error: {}", kept[0])));
        assert_eq!(
            v.bootstrap.as_deref(),
            Some("a:1"),
            "the others are still published"
        );
        let failed = verdict(
            &exposed(Some("a:1"), None),
            &["Service k-0-external: taken".into()],
            &kept,
            None,
            WARN,
        );
        assert_eq!(
            failed.status.as_deref(),
            Some("error: Service k-0-external: taken")
        );
    }

    #[test]
    fn unknown_addresses_are_pending_and_looked_at_soon() {
        let v = verdict(&exposed(None, None), &[], &[], None, WARN);
        assert_eq!(v.status.as_deref(), Some("pending: broker addresses"));
        assert_eq!(v.next, Next::After(PENDING_RECHECK));
        let lb = verdict(&exposed(None, Some(10)), &[], &[], None, WARN);
        assert_eq!(lb.status.as_deref(), Some("pending: loadbalancer address"));
        assert_eq!(lb.lb_pending_too_long, None);
        let late = verdict(&exposed(None, Some(400)), &[], &[], None, WARN);
        assert_eq!(late.lb_pending_too_long, Some(Duration::from_secs(400)));
    }

    #[test]
    fn an_invalid_configuration_waits_for_a_change() {
        let v = verdict(&Found::Invalid, &[], &[], Some("a:1"), WARN);
        assert_eq!(v.status.as_deref(), Some("invalid-configuration"));
        assert_eq!(v.bootstrap, None);
        assert_eq!(v.next, Next::OnChange);
    }

    #[test]
    fn nothing_exposed_clears_the_annotations() {
        let v = verdict(&Found::NotExposed, &[], &[], Some("a:1"), WARN);
        assert_eq!((v.status, v.bootstrap), (None, None));
    }
}
