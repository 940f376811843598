//! Which settings apply to a workload: the one pure function the webhook and the reconciler
//! share (the policy issue's precedence), and the NodePort block a pool gives a workload.
//!
//! 1. Exclusions first: the namespace label `kafka-expose.io/webhook=disabled`, a policy's
//!    `exclude`, and the workload's own `kafka-expose.io/expose=off`.
//! 2. Then the workload's own `kafka-expose.io/*` annotations, key by key.
//! 3. Then exactly one Enforce policy: the highest priority, ties to the smallest name (and a
//!    conflict reported). Settings are never merged across policies.
//! 4. Then the server's defaults (applied later, by the parser).
//!
//! Audit policies are resolved the same way, each on its own, and never feed the live settings.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::{Selector, SelectorExt};

use super::workload::{PolicyLayer, Stamp};
use crate::api::{KafkaExposePolicy, PolicyKind, PolicyMode, PortPool};
use crate::names::keys;

/// The namespace label that turns kafka-expose off for a namespace.
pub const NAMESPACE_DISABLED: (&str, &str) = ("kafka-expose.io/webhook", "disabled");

/// What a policy is matched against: a workload's metadata and its namespace's labels, no spec.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub kind: PolicyKind,
    pub namespace: &'a str,
    pub namespace_labels: &'a BTreeMap<String, String>,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The workload's own `kafka-expose.io/*` annotations, keys without the prefix.
    pub own: &'a BTreeMap<String, String>,
}

/// The settings of one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub live: Live,
    /// What each matching Audit policy would apply, by policy name.
    pub audits: Vec<Applied>,
}

/// The settings that apply now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// No policy: the workload's own annotations stand (or nothing, without them).
    Own,
    /// Policies cannot apply, and why.
    Excluded(String),
    /// An Enforce policy's settings beneath the workload's own.
    Policy(Applied),
}

/// A policy's settings for one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub policy: String,
    /// Annotation values (keys without the prefix): the policy's, overlaid by the workload's own.
    pub values: BTreeMap<String, String>,
    /// The policy keys whose value the workload's own annotation replaced.
    pub overridden: Vec<String>,
    /// The pool the workload's `port-base` is to be allocated from, when neither the workload
    /// nor the policy fixes one.
    pub pool: Option<PortPool>,
    /// Other Enforce policies of the same, highest priority that also match: a conflict.
    pub tied_with: Vec<String>,
    /// Why the policy matched, for status and Events.
    pub reason: String,
}

/// Why policy `p` selects the candidate, or `None` when it does not.
pub fn matches(p: &KafkaExposePolicy, c: &Candidate<'_>) -> Option<String> {
    let spec = &p.spec;
    if spec.exclude.namespaces.iter().any(|n| n == c.namespace) {
        return None;
    }
    if !spec.selection.kinds().contains(&c.kind) {
        return None;
    }
    let mut why = Vec::new();
    if let Some(sel) = &spec.selection.namespace_selector {
        let s = Selector::try_from(sel.clone()).ok()?;
        if !s.matches(c.namespace_labels) {
            return None;
        }
        why.push(format!("namespaceSelector {}", describe(&s)));
    }
    if let Some(sel) = &spec.selection.selector {
        let s = Selector::try_from(sel.clone()).ok()?;
        if !s.matches(c.labels) {
            return None;
        }
        why.push(format!("selector {}", describe(&s)));
    }
    if !spec.selection.names.is_empty() {
        let g = spec.selection.names.iter().find(|g| glob(g, c.name))?;
        why.push(format!("name {g}"));
    }
    Some(if why.is_empty() {
        "every workload of its kinds".into()
    } else {
        why.join(", ")
    })
}

fn describe(s: &Selector) -> String {
    let text = s.to_string();
    if text.is_empty() {
        "(everything)".into()
    } else {
        text
    }
}

/// Resolves the settings of a candidate under every policy, by the precedence above.
pub fn resolve(policies: &[KafkaExposePolicy], c: &Candidate<'_>) -> Resolution {
    if c.namespace_labels
        .get(NAMESPACE_DISABLED.0)
        .map(String::as_str)
        == Some(NAMESPACE_DISABLED.1)
    {
        return Resolution {
            live: Live::Excluded(format!(
                "namespace {} is labelled {}={}",
                c.namespace, NAMESPACE_DISABLED.0, NAMESPACE_DISABLED.1
            )),
            audits: Vec::new(),
        };
    }
    let off = c
        .own
        .get(keys::EXPOSE)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("off"));
    let matched: Vec<(&KafkaExposePolicy, String)> = policies
        .iter()
        .filter_map(|p| Some((p, matches(p, c)?)))
        .collect();
    let apply = |p: &KafkaExposePolicy, reason: &str, tied_with: Vec<String>| {
        let from_policy = p.spec.exposure.to_annotations();
        let mut values = from_policy.clone();
        let mut overridden = Vec::new();
        for (k, v) in c.own {
            if from_policy.get(k).is_some_and(|pv| pv != v) {
                overridden.push(k.clone());
            }
            values.insert(k.clone(), v.clone());
        }
        let pool = p
            .spec
            .exposure
            .port_pool
            .filter(|_| !values.contains_key(keys::PORT_BASE));
        Applied {
            policy: name_of(p).to_string(),
            values,
            overridden,
            pool,
            tied_with,
            reason: reason.to_string(),
        }
    };
    let audits = matched
        .iter()
        .filter(|(p, _)| p.spec.mode == PolicyMode::Audit)
        .map(|(p, why)| apply(p, why, Vec::new()))
        .collect();
    let live = if off {
        Live::Excluded(format!(
            "the workload's own {}{}=off",
            crate::names::PREFIX,
            keys::EXPOSE
        ))
    } else {
        let mut enforce: Vec<&(&KafkaExposePolicy, String)> = matched
            .iter()
            .filter(|(p, _)| p.spec.mode == PolicyMode::Enforce)
            .collect();
        // Highest priority first, then the smallest name.
        enforce.sort_by(|(a, _), (b, _)| {
            b.spec
                .priority
                .cmp(&a.spec.priority)
                .then_with(|| name_of(a).cmp(name_of(b)))
        });
        match enforce.first() {
            None => Live::Own,
            Some((winner, why)) => {
                let tied = enforce[1..]
                    .iter()
                    .filter(|(p, _)| p.spec.priority == winner.spec.priority)
                    .map(|(p, _)| name_of(p).to_string())
                    .collect();
                Live::Policy(apply(winner, why, tied))
            }
        }
    };
    Resolution { live, audits }
}

/// A policy's name, borrowed (policies are cluster-scoped and always named).
fn name_of(p: &KafkaExposePolicy) -> &str {
    p.metadata.name.as_deref().unwrap_or_default()
}

/// `*` matches any run of characters, `?` one; everything else itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative match with one backtrack point for the last `*`: linear in practice.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// Whether `base` starts a whole block of `pool`.
pub fn is_block(pool: PortPool, base: u16) -> bool {
    let block = pool.block_size.max(1);
    base >= pool.from
        && (base - pool.from).is_multiple_of(block)
        && u32::from(base) + u32::from(block) - 1 <= u32::from(pool.to)
}

/// Gives `values` a block of `pool` (kept if `recorded` is one, else the lowest free one):
/// `port-base`, and the block's last port as the bootstrap NodePort when the brokers leave it
/// free and nothing else sets it. The block's ports are then `in_use`.
pub fn give_block(
    values: &mut BTreeMap<String, String>,
    pool: PortPool,
    brokers: u32,
    recorded: Option<u16>,
    in_use: &mut BTreeSet<u16>,
) -> Result<u16, PoolError> {
    let base = allocate(pool, brokers, recorded, in_use)?;
    values.insert(keys::PORT_BASE.into(), base.to_string());
    let last = (u32::from(base) + u32::from(pool.block_size.max(1)) - 1).min(65535) as u16;
    if brokers < u32::from(pool.block_size) && !values.contains_key(keys::BOOTSTRAP_NODE_PORT) {
        values.insert(keys::BOOTSTRAP_NODE_PORT.into(), last.to_string());
    }
    in_use.extend(base..=last);
    Ok(base)
}

/// The policies and namespace labels the workload webhook resolves against: the watches'
/// caches in `serve`.
pub trait PolicyView: Send + Sync {
    /// Whether there is any policy to resolve against; without one, nothing changes. Asked of
    /// every workload review, so cheap.
    fn active(&self) -> bool;
    /// The policies not being deleted.
    fn live(&self) -> Vec<KafkaExposePolicy>;
    /// The cached labels of `namespace` (none when unknown).
    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String>;

    /// [`resolve`] under the live policies, with the namespace's cached labels.
    fn resolve(
        &self,
        kind: PolicyKind,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        own: &BTreeMap<String, String>,
    ) -> Resolution {
        resolve(
            &self.live(),
            &Candidate {
                kind,
                namespace,
                namespace_labels: &self.namespace_labels(namespace),
                name,
                labels,
                own,
            },
        )
    }
}

/// Whether a policy is live: not being deleted (its finalizer's revert is under way).
pub fn is_live(p: &KafkaExposePolicy) -> bool {
    p.metadata.deletion_timestamp.is_none()
}

/// What the workload webhook does with a policy's settings for a workload being written, and
/// the warnings to say so.
///
/// `fresh` writes (a CREATE, or an UPDATE that changes the pod template, which rolls the brokers
/// anyway) get the Enforce policy's settings as if annotated. Other writes keep what the
/// template carries: the policy controller paces the change. A pool's block is allocated only
/// by the policy controller (one leader, no race); a fresh write keeps a block already
/// recorded, and otherwise waits for the controller, which says so.
pub fn admission_layer(
    r: &Resolution,
    current: Option<&Stamp>,
    brokers: u32,
    fresh: bool,
) -> (PolicyLayer, Vec<String>) {
    let mut warnings: Vec<String> = r
        .audits
        .iter()
        .map(|a| {
            let mode = a.values.get(keys::EXPOSE).map_or("", String::as_str);
            format!(
                "kafka-expose: policy {} (Audit) matches this workload ({}); enforced, it would expose it by {mode}",
                a.policy, a.reason
            )
        })
        .collect();
    let Live::Policy(a) = &r.live else {
        return (PolicyLayer::Keep, warnings);
    };
    if !a.tied_with.is_empty() {
        warnings.push(format!(
            "kafka-expose: Enforce policies {} and {} match with the same priority; {} applies (the smallest name)",
            a.policy,
            a.tied_with.join(", "),
            a.policy
        ));
    }
    if !fresh {
        return (PolicyLayer::Keep, warnings);
    }
    let mut values = a.values.clone();
    if let Some(pool) = a.pool {
        let recorded = current
            .and_then(|s| s.values.get(keys::PORT_BASE)?.parse::<u16>().ok())
            .filter(|b| is_block(pool, *b));
        let Some(base) = recorded else {
            warnings.push(format!(
                "kafka-expose: policy {} exposes this workload once the policy controller gives it a block of NodePorts from its pool; its brokers then restart once",
                a.policy
            ));
            return (PolicyLayer::Keep, warnings);
        };
        if give_block(&mut values, pool, brokers, Some(base), &mut BTreeSet::new()).is_err() {
            return (PolicyLayer::Keep, warnings);
        }
    }
    (
        PolicyLayer::Set(Stamp {
            policy: a.policy.clone(),
            values,
        }),
        warnings,
    )
}

/// Why a pool has no block for a workload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error(
        "the pool {from}-{to} has no free block of {block} NodePorts left; widen it or free a block"
    )]
    Exhausted { from: u16, to: u16, block: u16 },
    #[error("{brokers} brokers need more NodePorts than a block of {block} holds")]
    TooManyBrokers { brokers: u32, block: u16 },
}

/// The first port of the block a workload gets from `pool`.
///
/// - `recorded`, the base already recorded on the workload, is kept whenever it is a block of
///   this pool: an allocation never moves while the workload exists;
/// - otherwise the lowest block none of whose ports is `in_use` (every Service's NodePort in
///   the cluster, and the blocks recorded on other workloads), so the answer depends only on
///   the cluster's state, never on the order of calls.
pub fn allocate(
    pool: PortPool,
    brokers: u32,
    recorded: Option<u16>,
    in_use: &BTreeSet<u16>,
) -> Result<u16, PoolError> {
    let block = pool.block_size.max(1);
    if brokers > u32::from(block) {
        return Err(PoolError::TooManyBrokers { brokers, block });
    }
    if let Some(b) = recorded.filter(|b| is_block(pool, *b)) {
        return Ok(b);
    }
    let mut start = u32::from(pool.from);
    while start + u32::from(block) - 1 <= u32::from(pool.to) {
        let end = start + u32::from(block) - 1;
        let free = in_use.range(start as u16..=end as u16).next().is_none();
        if free {
            return Ok(start as u16);
        }
        start += u32::from(block);
    }
    Err(PoolError::Exhausted {
        from: pool.from,
        to: pool.to,
        block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::KafkaExposePolicySpec;

    fn policy(name: &str, yaml: &str) -> KafkaExposePolicy {
        let spec: KafkaExposePolicySpec = serde_saphyr::from_str(yaml).unwrap();
        KafkaExposePolicy::new(name, spec)
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    struct Fixture {
        ns_labels: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
        own: BTreeMap<String, String>,
    }

    impl Fixture {
        fn prod() -> Self {
            Self {
                ns_labels: map(&[("env", "prod")]),
                labels: map(&[("app.kubernetes.io/name", "kafka")]),
                own: BTreeMap::new(),
            }
        }
        fn candidate<'a>(&'a self, name: &'a str) -> Candidate<'a> {
            Candidate {
                kind: PolicyKind::StatefulSet,
                namespace: "team-a",
                namespace_labels: &self.ns_labels,
                name,
                labels: &self.labels,
                own: &self.own,
            }
        }
    }

    const PROD: &str = "mode: Enforce\nmatch: {namespaceSelector: {matchLabels: {env: prod}}, selector: {matchLabels: {app.kubernetes.io/name: kafka}}, names: ['kafka*', '*-broker']}\nexposure: {expose: nodeport, advertisedHost: host-ip, portPool: {from: 31000, to: 31999, blockSize: 10}}\n";

    #[test]
    fn the_webhook_applies_a_policy_only_on_fresh_writes_and_keeps_a_recorded_block() {
        let f = Fixture::prod();
        let r = resolve(&[policy("prod", PROD)], &f.candidate("kafka"));
        let (layer, warnings) = admission_layer(&r, None, 3, false);
        assert_eq!(
            layer,
            PolicyLayer::Keep,
            "not fresh: paced by the controller"
        );
        assert!(warnings.is_empty());
        let (layer, warnings) = admission_layer(&r, None, 3, true);
        assert_eq!(
            layer,
            PolicyLayer::Keep,
            "no block yet: the controller allocates"
        );
        assert!(warnings[0].contains("block of NodePorts"), "{warnings:?}");
        let recorded = Stamp {
            policy: "prod".into(),
            values: map(&[("expose", "nodeport"), ("port-base", "31020")]),
        };
        let (layer, _) = admission_layer(&r, Some(&recorded), 3, true);
        let PolicyLayer::Set(s) = layer else {
            panic!("{layer:?}")
        };
        assert_eq!(s.values["port-base"], "31020");
        assert_eq!(s.values["bootstrap-node-port"], "31029");
        let outside = Stamp {
            values: map(&[("port-base", "31025")]),
            ..recorded
        };
        let (layer, _) = admission_layer(&r, Some(&outside), 3, true);
        assert_eq!(
            layer,
            PolicyLayer::Keep,
            "31025 starts no block of the pool"
        );
    }

    #[test]
    fn a_matching_enforce_policy_applies_with_its_pool_and_reason() {
        let f = Fixture::prod();
        let r = resolve(&[policy("prod", PROD)], &f.candidate("kafka"));
        let Live::Policy(a) = r.live else {
            panic!("{r:?}")
        };
        assert_eq!(a.policy, "prod");
        assert_eq!(a.values.get("expose").map(String::as_str), Some("nodeport"));
        assert_eq!(a.pool.map(|p| p.block_size), Some(10));
        assert!(
            a.reason.contains("namespaceSelector env=prod"),
            "{}",
            a.reason
        );
        assert!(a.reason.contains("name kafka*"), "{}", a.reason);
        assert!(a.tied_with.is_empty());
        assert!(r.audits.is_empty());
    }

    #[test]
    fn names_namespaces_kinds_and_exclusions_select() {
        let f = Fixture::prod();
        let p = [policy("prod", PROD)];
        assert!(matches!(
            resolve(&p, &f.candidate("zookeeper")).live,
            Live::Own
        ));
        assert!(matches!(
            resolve(&p, &f.candidate("orders-broker")).live,
            Live::Policy(_)
        ));
        let dev = Fixture {
            ns_labels: map(&[("env", "dev")]),
            ..Fixture::prod()
        };
        assert_eq!(resolve(&p, &dev.candidate("kafka")).live, Live::Own);
        let mut c = f.candidate("kafka");
        c.kind = PolicyKind::Deployment;
        assert_eq!(
            resolve(&p, &c).live,
            Live::Own,
            "StatefulSets only by default"
        );
        let excluded = policy(
            "x",
            &PROD.replace("exposure:", "exclude: {namespaces: [team-a]}\nexposure:"),
        );
        assert_eq!(resolve(&[excluded], &f.candidate("kafka")).live, Live::Own);
        let disabled = Fixture {
            ns_labels: map(&[("env", "prod"), ("kafka-expose.io/webhook", "disabled")]),
            ..Fixture::prod()
        };
        assert!(matches!(
            resolve(&p, &disabled.candidate("kafka")).live,
            Live::Excluded(_)
        ));
        let off = Fixture {
            own: map(&[("expose", "off")]),
            ..Fixture::prod()
        };
        assert!(matches!(
            resolve(&p, &off.candidate("kafka")).live,
            Live::Excluded(_)
        ));
    }

    #[test]
    fn the_workloads_own_annotations_win_key_by_key() {
        let f = Fixture {
            own: map(&[
                ("advertised-host", "kafka-{ordinal}.example.com"),
                ("port-base", "32000"),
            ]),
            ..Fixture::prod()
        };
        let Live::Policy(a) = resolve(&[policy("prod", PROD)], &f.candidate("kafka")).live else {
            panic!()
        };
        assert_eq!(
            a.values.get("advertised-host").map(String::as_str),
            Some("kafka-{ordinal}.example.com")
        );
        assert_eq!(a.values.get("expose").map(String::as_str), Some("nodeport"));
        assert_eq!(a.overridden, vec!["advertised-host".to_string()]);
        assert_eq!(a.pool, None, "the workload fixes its own port-base");
    }

    #[test]
    fn the_highest_priority_wins_and_equal_priorities_conflict_never_merged() {
        let f = Fixture::prod();
        let low = policy(
            "a-low",
            "mode: Enforce\nexposure: {expose: nodeport, listenerName: LOW}\n",
        );
        let high = policy(
            "z-high",
            "mode: Enforce\npriority: 10\nexposure: {expose: loadbalancer}\n",
        );
        let Live::Policy(a) = resolve(&[low.clone(), high], &f.candidate("kafka")).live else {
            panic!()
        };
        assert_eq!(a.policy, "z-high");
        assert_eq!(a.values.get("listener-name"), None, "never merged");
        assert!(a.tied_with.is_empty());
        let twin = policy("b-twin", "mode: Enforce\nexposure: {expose: hostport}\n");
        let Live::Policy(a) = resolve(&[twin, low], &f.candidate("kafka")).live else {
            panic!()
        };
        assert_eq!(
            (a.policy.as_str(), a.tied_with),
            ("a-low", vec!["b-twin".to_string()])
        );
    }

    #[test]
    fn audit_policies_are_reported_and_never_live() {
        let f = Fixture::prod();
        let audit = policy("look", &PROD.replace("Enforce", "Audit"));
        let r = resolve(&[audit], &f.candidate("kafka"));
        assert_eq!(r.live, Live::Own);
        assert_eq!(r.audits.len(), 1);
        assert_eq!(r.audits[0].policy, "look");
    }

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("kafka*", "kafka", true),
            ("kafka*", "kafka-0", true),
            ("*-broker", "orders-broker", true),
            ("*-broker", "broker", false),
            ("k?fka", "kafka", true),
            ("*a*b*", "xaxxbx", true),
            ("*a*b", "xaxxbx", false),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(glob(p, n), want, "{p} {n}");
        }
    }

    #[test]
    fn blocks_are_deterministic_collision_free_and_stable() {
        let pool = PortPool {
            from: 31000,
            to: 31029,
            block_size: 10,
        };
        let none = BTreeSet::new();
        assert_eq!(allocate(pool, 3, None, &none), Ok(31000));
        let used: BTreeSet<u16> = [31004].into();
        assert_eq!(
            allocate(pool, 3, None, &used),
            Ok(31010),
            "a used port skips its block"
        );
        assert_eq!(
            allocate(pool, 3, Some(31020), &used),
            Ok(31020),
            "a recorded block is kept"
        );
        assert_eq!(
            allocate(pool, 3, Some(31005), &used),
            Ok(31010),
            "a recorded base that is no block of this pool is not"
        );
        let full: BTreeSet<u16> = [31000, 31010, 31020].into();
        assert!(matches!(
            allocate(pool, 3, None, &full),
            Err(PoolError::Exhausted { .. })
        ));
        assert!(matches!(
            allocate(pool, 11, None, &none),
            Err(PoolError::TooManyBrokers { .. })
        ));
        let edge = PortPool {
            from: 32760,
            to: 32767,
            block_size: 4,
        };
        assert_eq!(allocate(edge, 4, None, &[32760].into()), Ok(32764));
    }

    proptest::proptest! {
        /// Whatever the pool and the ports in use: the block given is in the pool, holds no
        /// port in use, and is the lowest such block; none is given only when none is free.
        #[test]
        fn a_block_is_the_lowest_free_one(
            from in 30000u16..32767,
            len in 1u16..200,
            block_size in 1u16..20,
            brokers in 0u32..20,
            used in proptest::collection::btree_set(30000u16..32767, 0..60),
            recorded in proptest::option::of(30000u16..32767),
        ) {
            let to = from.saturating_add(len - 1).min(32767);
            let pool = PortPool { from, to, block_size };
            let blocks: Vec<u16> = (0..)
                .map(|k: u32| u32::from(from) + k * u32::from(block_size))
                .take_while(|b| b + u32::from(block_size) - 1 <= u32::from(to))
                .map(|b| b as u16)
                .collect();
            let free = |b: u16| used.range(b..=b + (block_size - 1)).next().is_none();
            match allocate(pool, brokers, recorded, &used) {
                Ok(b) if recorded == Some(b) => proptest::prop_assert!(blocks.contains(&b)),
                Ok(b) => {
                    proptest::prop_assert!(blocks.contains(&b) && free(b));
                    proptest::prop_assert!(blocks.iter().take_while(|x| **x < b).all(|x| !free(*x)));
                }
                Err(PoolError::TooManyBrokers { .. }) => {
                    proptest::prop_assert!(brokers > u32::from(block_size))
                }
                Err(PoolError::Exhausted { .. }) => {
                    proptest::prop_assert!(brokers <= u32::from(block_size));
                    proptest::prop_assert!(blocks.iter().all(|b| !free(*b)));
                    proptest::prop_assert!(!recorded.is_some_and(|r| blocks.contains(&r)));
                }
            }
        }

        /// A glob without wildcards matches only itself, and `*` matches every name.
        #[test]
        fn literal_and_star_globs(name in "[a-z0-9-]{0,20}", other in "[a-z0-9-]{0,20}") {
            proptest::prop_assert!(glob(&name, &name));
            proptest::prop_assert!(glob("*", &name));
            proptest::prop_assert_eq!(glob(&name, &other), name == other);
            let prefix = format!("{}*", &name[..name.len() / 2]);
            proptest::prop_assert!(glob(&prefix, &name));
        }
    }
}
