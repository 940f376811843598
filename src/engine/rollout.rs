//! How an Enforce policy rolls the workloads it changes: the pacing, as a pure function of what
//! the cluster shows. The policy controller ([`crate::cluster::policies`]) reads the facts and
//! carries out the steps; nothing is remembered between passes, so a new leader resumes where
//! the old one stopped.
//!
//! - A workload whose template is to change (stamped with a policy's settings, or reverted) is
//!   *pending* until its policy has a free slot (`rollout.maxConcurrent`, cluster-wide).
//! - Starting marks it on the workload (`kafka-expose.io/rollout: <policy>/<unix seconds>`); it
//!   is then *rolling* until the workload reports every replica updated and Ready for its
//!   current generation, when the mark is removed.
//! - A rolling workload past `rollout.progressDeadlineSeconds` stalls the policy: nothing more
//!   starts until it completes or the user acts. There is no automatic rollback.
//! - `OnDelete` workloads are stamped at once and take no slot: nothing restarts until someone
//!   deletes pods, so they are reported as waiting for restarts. Paused Deployments are skipped.

use std::collections::BTreeMap;

/// A workload, by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadKey {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// How far a workload's own controller has rolled its current template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every replica (above the partition, if any) runs the current template, and every
    /// replica is Ready.
    Complete,
    /// Still rolling, or not Ready.
    Updating,
}

/// What a workload's update strategy does with a template change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The controller rolls pods itself (StatefulSet `RollingUpdate`, possibly with a
    /// partition, or a Deployment).
    Rolling { partition: u32 },
    /// StatefulSet `OnDelete`: pods change only when deleted.
    OnDelete,
    /// A paused Deployment: nothing rolls.
    Paused,
}

/// One workload a policy changes, or has changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub key: WorkloadKey,
    /// The policy that paces this workload's pending change: the one whose settings are to be
    /// stamped, or, for a revert, the one whose stamp is to be removed.
    pub owner: Option<String>,
    /// Whether the template differs from what it is to carry.
    pub change_pending: bool,
    pub strategy: Strategy,
    pub progress: Progress,
    /// The rollout mark: which policy started a roll of this workload, and when.
    pub rolling: Option<(String, i64)>,
    /// The policy whose settings it runs, while one of its brokers restarts for a new address
    /// (its `kafka-expose.io/restart` record is in flight): that restart holds one of the
    /// policy's slots, as a roll does.
    pub restarting: Option<String>,
}

/// A policy's pacing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub max_concurrent: u32,
    pub deadline_secs: u32,
}

/// What one policy does in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steps {
    /// Change these templates now (and mark the `Rolling` ones).
    pub start: Vec<WorkloadKey>,
    /// Their roll is complete: remove the mark.
    pub finish: Vec<WorkloadKey>,
    /// Rolling past the deadline, with the seconds since they started.
    pub stalled: Vec<(WorkloadKey, i64)>,
    /// Rolling within the deadline.
    pub rolling: Vec<WorkloadKey>,
    /// Waiting for a slot.
    pub waiting: Vec<WorkloadKey>,
}

/// Decides one policy's steps from the workloads it tracks (those of other policies are
/// ignored), at `now` (unix seconds).
pub fn pace(policy: &str, pace: Pace, tracked: &[Tracked], now: i64) -> Steps {
    let mut steps = Steps::default();
    let mut busy = 0u32;
    // Marked by this policy, and to change again (the policy was edited or deleted mid-roll):
    // started again at once, in the slot it holds, as a Deployment rolls over to its newest
    // template. This is also how editing or deleting a stalled policy unblocks it.
    let mut again = Vec::new();
    for t in tracked {
        let Some((owner, since)) = &t.rolling else {
            continue;
        };
        if owner != policy {
            continue;
        }
        if t.change_pending && t.strategy != Strategy::Paused {
            again.push(t.key.clone());
            busy += 1;
        } else if t.progress == Progress::Complete {
            steps.finish.push(t.key.clone());
        } else if now.saturating_sub(*since) > i64::from(pace.deadline_secs) {
            steps
                .stalled
                .push((t.key.clone(), now.saturating_sub(*since)));
            busy += 1;
        } else {
            steps.rolling.push(t.key.clone());
            busy += 1;
        }
    }
    // A broker restart under this policy holds a slot, unless the workload's own roll holds it.
    busy += tracked
        .iter()
        .filter(|t| {
            t.restarting.as_deref() == Some(policy)
                && t.rolling.as_ref().is_none_or(|(o, _)| o != policy)
        })
        .count() as u32;
    let mut pending: Vec<&Tracked> = tracked
        .iter()
        .filter(|t| {
            t.owner.as_deref() == Some(policy)
                && t.change_pending
                && t.strategy != Strategy::Paused
                && t.rolling.as_ref().is_none_or(|(o, _)| o != policy)
        })
        .collect();
    pending.sort_by(|a, b| a.key.cmp(&b.key));
    steps.start.extend(again);
    let mut free = if steps.stalled.is_empty() {
        pace.max_concurrent.max(1).saturating_sub(busy)
    } else {
        0
    };
    for t in pending {
        if t.strategy == Strategy::OnDelete {
            // Nothing restarts: stamped at once, without a slot.
            steps.start.push(t.key.clone());
        } else if free > 0 {
            free -= 1;
            steps.start.push(t.key.clone());
        } else {
            steps.waiting.push(t.key.clone());
        }
    }
    steps
}

/// The rollout mark's value.
pub fn mark(policy: &str, now: i64) -> String {
    format!("{policy}/{now}")
}

/// Reads a rollout mark.
pub fn read_mark(value: &str) -> Option<(String, i64)> {
    let (policy, since) = value.rsplit_once('/')?;
    Some((policy.to_string(), since.trim().parse().ok()?))
}

/// Counts a policy's workloads by state name, for its status.
pub fn tally<'a>(states: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, u32> {
    let mut m = BTreeMap::new();
    for s in states {
        *m.entry(s).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> WorkloadKey {
        WorkloadKey {
            kind: "StatefulSet",
            namespace: format!("ns-{name}"),
            name: name.into(),
        }
    }

    fn pending(name: &str) -> Tracked {
        Tracked {
            key: key(name),
            owner: Some("prod".into()),
            change_pending: true,
            strategy: Strategy::Rolling { partition: 0 },
            progress: Progress::Complete,
            rolling: None,
            restarting: None,
        }
    }

    const ONE: Pace = Pace {
        max_concurrent: 1,
        deadline_secs: 600,
    };

    #[test]
    fn one_at_a_time_in_name_order() {
        let t = vec![pending("c"), pending("a"), pending("b")];
        let s = pace("prod", ONE, &t, 1000);
        assert_eq!(s.start, vec![key("a")]);
        assert_eq!(s.waiting, vec![key("b"), key("c")]);
    }

    #[test]
    fn a_rolling_workload_holds_the_slot_until_complete_then_frees_it() {
        let mut a = pending("a");
        a.change_pending = false;
        a.progress = Progress::Updating;
        a.rolling = Some(("prod".into(), 900));
        let t = vec![a.clone(), pending("b")];
        let s = pace("prod", ONE, &t, 1000);
        assert_eq!(s.rolling, vec![key("a")]);
        assert!(s.start.is_empty());
        assert_eq!(s.waiting, vec![key("b")]);

        a.progress = Progress::Complete;
        let s = pace("prod", ONE, &[a, pending("b")], 1000);
        assert_eq!(s.finish, vec![key("a")]);
        assert_eq!(s.start, vec![key("b")], "the slot is free in the same pass");
    }

    #[test]
    fn a_policy_edited_mid_roll_restarts_that_workload_in_its_own_slot() {
        let mut a = pending("a");
        a.progress = Progress::Updating;
        a.rolling = Some(("prod".into(), 0));
        // Even past the deadline: the edit (or deletion) is how a user unblocks a stall.
        let s = pace("prod", ONE, &[a, pending("b")], 1000);
        assert_eq!(s.start, vec![key("a")]);
        assert_eq!(s.waiting, vec![key("b")], "no second slot");
        assert!(s.stalled.is_empty());
    }

    #[test]
    fn past_the_deadline_the_policy_stalls_and_starts_nothing() {
        let mut a = pending("a");
        a.change_pending = false;
        a.progress = Progress::Updating;
        a.rolling = Some(("prod".into(), 0));
        let s = pace(
            "prod",
            Pace {
                max_concurrent: 5,
                deadline_secs: 600,
            },
            &[a, pending("b")],
            601,
        );
        assert_eq!(s.stalled, vec![(key("a"), 601)]);
        assert!(s.start.is_empty());
        assert_eq!(s.waiting, vec![key("b")]);
    }

    #[test]
    fn on_delete_takes_no_slot_and_paused_never_starts() {
        let mut od = pending("a");
        od.strategy = Strategy::OnDelete;
        let mut paused = pending("b");
        paused.strategy = Strategy::Paused;
        let s = pace("prod", ONE, &[od, paused, pending("c")], 0);
        assert_eq!(s.start, vec![key("a"), key("c")]);
        assert!(s.waiting.is_empty());
    }

    #[test]
    fn other_policies_workloads_are_not_counted() {
        let mut other = pending("a");
        other.owner = Some("dev".into());
        other.rolling = Some(("dev".into(), 0));
        other.progress = Progress::Updating;
        let s = pace("prod", ONE, &[other, pending("b")], 10);
        assert_eq!(s.start, vec![key("b")]);
        assert!(s.rolling.is_empty());
    }

    #[test]
    fn a_broker_restart_under_the_policy_holds_a_slot_and_another_policys_does_not() {
        let mut a = pending("a");
        a.change_pending = false;
        a.restarting = Some("prod".into());
        let s = pace("prod", ONE, &[a.clone(), pending("b")], 10);
        assert!(s.start.is_empty());
        assert_eq!(s.waiting, vec![key("b")]);

        a.restarting = Some("dev".into());
        let s = pace("prod", ONE, &[a.clone(), pending("b")], 10);
        assert_eq!(s.start, vec![key("b")]);

        // Its own roll holds the slot already: one slot, not two.
        a.restarting = Some("prod".into());
        a.rolling = Some(("prod".into(), 5));
        a.progress = Progress::Updating;
        let two = Pace {
            max_concurrent: 2,
            ..ONE
        };
        let s = pace("prod", two, &[a, pending("b")], 10);
        assert_eq!(s.start, vec![key("b")]);
    }

    #[test]
    fn marks_read_back() {
        assert_eq!(read_mark(&mark("prod", 42)), Some(("prod".into(), 42)));
        assert_eq!(read_mark("garbage"), None);
        assert_eq!(read_mark("a/b"), None);
    }

    mod properties {
        use super::super::{
            Pace, Progress, Strategy as Update, Tracked, WorkloadKey, pace, read_mark,
        };
        use proptest::prelude::*;

        fn tracked() -> impl Strategy<Value = Tracked> {
            (
                0u8..6,
                prop::option::of(prop::sample::select(vec!["p", "q"])),
                any::<bool>(),
                prop::sample::select(vec![
                    Update::Rolling { partition: 0 },
                    Update::Rolling { partition: 1 },
                    Update::OnDelete,
                    Update::Paused,
                ]),
                any::<bool>(),
                prop::option::of((prop::sample::select(vec!["p", "q"]), 0i64..2000)),
                prop::option::of(prop::sample::select(vec!["p", "q"])),
            )
                .prop_map(|(n, owner, change, strategy, done, rolling, restarting)| {
                    Tracked {
                        key: WorkloadKey {
                            kind: "StatefulSet",
                            namespace: format!("ns{n}"),
                            name: "kafka".into(),
                        },
                        owner: owner.map(str::to_string),
                        change_pending: change,
                        strategy,
                        progress: if done {
                            Progress::Complete
                        } else {
                            Progress::Updating
                        },
                        rolling: rolling.map(|(o, t)| (o.to_string(), t)),
                        restarting: restarting.map(str::to_string),
                    }
                })
        }

        proptest! {
            /// Whatever the cluster shows, a pass never adds a restart beyond the policy's
            /// slots (its rolls and its workloads' broker restarts together), never starts one while the policy is stalled (but for a marked workload
            /// whose settings changed, in its own slot), never starts a paused workload or
            /// another policy's, and never starts one twice.
            #[test]
            fn a_pass_respects_the_slots(
                mut ts in prop::collection::vec(tracked(), 0..8),
                max in 0u32..4,
                now in 0i64..4000,
            ) {
                ts.sort_by(|a, b| a.key.cmp(&b.key));
                ts.dedup_by(|a, b| a.key == b.key);
                let pace_ = Pace { max_concurrent: max, deadline_secs: 1000 };
                let s = pace("p", pace_, &ts, now);
                let by_key = |k: &WorkloadKey| ts.iter().find(|t| &t.key == k).unwrap();
                let mine = |t: &Tracked| t.rolling.as_ref().is_some_and(|(o, _)| o == "p");
                let mut seen = std::collections::BTreeSet::new();
                for k in &s.start {
                    prop_assert!(seen.insert(k.clone()), "started twice");
                    let t = by_key(k);
                    prop_assert!(t.strategy != Update::Paused);
                    prop_assert!(t.owner.as_deref() == Some("p") || mine(t));
                    prop_assert!(t.change_pending);
                }
                // Held: its roll, or a broker restart under the policy (issue 28).
                let held = ts
                    .iter()
                    .filter(|t| {
                        (mine(t) && !s.finish.contains(&t.key))
                            || (!mine(t) && t.restarting.as_deref() == Some("p"))
                    })
                    .count();
                let fresh = s
                    .start
                    .iter()
                    .filter(|k| !mine(by_key(k)) && by_key(k).strategy != Update::OnDelete)
                    .count();
                prop_assert!(fresh + held <= (max.max(1) as usize).max(held));
                if !s.stalled.is_empty() {
                    prop_assert_eq!(fresh, 0);
                }
            }

            #[test]
            fn any_mark_reads_without_panic(v in ".*") {
                let _ = read_mark(&v);
            }
        }
    }
}
