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
//! Not wired yet: the detection (what each pod advertises against what it should) and the
//! Eviction calls are the rest of the issue.

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
