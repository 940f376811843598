//! Which requests reach kafka-expose at all: what the API server can decide before it calls.
//!
//! - **The workload webhook's match condition** ([`keys_condition`], API servers 1.28+): the
//!   chart renders it on `workloads.kafka-expose.io`, so that a StatefulSet or Deployment write
//!   is sent only when the object (or the object it replaces) has a `kafka-expose.io/` annotation
//!   or label key, on itself or on its pod template. A user's annotation, a policy's stamp and
//!   kafka-expose's own bookkeeping are all such keys.
//! - **One webhook per live policy** ([`policy_webhook`]): a policy selects workloads that carry
//!   no key yet. Match conditions are ANDed and CEL in a webhook's conditions cannot see the
//!   namespace, so the controller registers, in a configuration of its own, a webhook per policy
//!   whose native `namespaceSelector` and `objectSelector` are the policy's own selectors, and
//!   whose conditions are the policy's name globs and "no key yet" (a keyed workload already
//!   reaches the chart's webhook). Registered only where the chart's webhook carries the key
//!   condition: without it, that webhook is sent every write already.
//! - **The bindings webhook** ([`bindings_webhook`]) is registered only while a broker or a
//!   live policy uses `node:` addresses ([`uses_node_addresses`]). Without it, every pod
//!   binding in the cluster would call kafka-expose; with none registered, a `node:` broker's
//!   address comes from the reconciler's fallback, after its binding.
//!
//! Pure: `cluster::registrar` applies the configuration [`plan`] gives, under its own field
//! manager, in an object kafka-expose creates (so nothing the chart or a GitOps tool renders is
//! ever changed by it).

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};

use crate::api::{KafkaExposePolicy, PolicyKind};

/// The name of the key condition, on the chart's workload webhook and (negated) on each policy's.
pub const KEYS_CONDITION: &str = "kafka-expose-keys";
/// The chart's workload webhook, whose settings the registered webhooks copy.
pub const WORKLOADS_WEBHOOK: &str = "workloads.kafka-expose.io";
/// The bindings webhook, registered on demand.
pub const BINDINGS_WEBHOOK: &str = "bindings.kafka-expose.io";
/// Each policy's webhook is `<policy>` + this.
pub const POLICY_WEBHOOK_SUFFIX: &str = ".policy-match.kafka-expose.io";

/// CEL: whether the metadata at `m` has an annotation or label key with the prefix.
fn metadata_has_key(m: &str) -> String {
    let prefix = crate::names::PREFIX;
    format!(
        "(has({m}.annotations) && {m}.annotations.exists(k, k.startsWith('{prefix}'))) || \
         (has({m}.labels) && {m}.labels.exists(k, k.startsWith('{prefix}')))"
    )
}

/// CEL: whether object `o` (null, or a StatefulSet or Deployment) has a key on itself or on its
/// pod template. Every step is guarded by `has`: an error in a match condition is not "no", it
/// is the failure policy.
fn object_has_key(o: &str) -> String {
    format!(
        "({o} != null && ((has({o}.metadata) && ({})) || \
         (has({o}.spec) && has({o}.spec.template) && has({o}.spec.template.metadata) && ({}))))",
        metadata_has_key(&format!("{o}.metadata")),
        metadata_has_key(&format!("{o}.spec.template.metadata"))
    )
}

/// The CEL expression of the key condition: the object, or the object it replaces, carries a
/// `kafka-expose.io/` annotation or label key on itself or its pod template.
pub fn keys_expression() -> String {
    format!(
        "{} || {}",
        object_has_key("object"),
        object_has_key("oldObject")
    )
}

/// The key condition, as the chart renders it on the workload webhook.
pub fn keys_condition() -> MatchCondition {
    MatchCondition {
        name: KEYS_CONDITION.into(),
        expression: keys_expression(),
    }
}

/// A CEL single-quoted string literal of `s`.
fn cel_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The RE2 pattern, anchored, that matches what name glob `g` matches (`*` any run, `?` one
/// character, everything else itself), as [`crate::engine::policy::glob`] does.
pub fn glob_regex(g: &str) -> String {
    let mut out = String::from("^");
    for c in g.chars() {
        match c {
            '*' => out.push_str("(?s:.*)"),
            '?' => out.push_str("(?s:.)"),
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => out.push(c),
            c if c.is_ascii() => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('$');
    out
}

/// CEL: the object's name matches one of `globs`.
fn names_expression(globs: &[String]) -> String {
    let name = "(has(object.metadata.name) ? object.metadata.name : '')";
    globs
        .iter()
        .map(|g| format!("{name}.matches({})", cel_string(&glob_regex(g))))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// `a` and `b` at once, as one selector: every requirement of both (`matchLabels` as `In`).
fn both(a: Option<&LabelSelector>, b: Option<&LabelSelector>) -> LabelSelector {
    let mut all = Vec::new();
    for s in [a, b].into_iter().flatten() {
        for (k, v) in s.match_labels.iter().flatten() {
            all.push(LabelSelectorRequirement {
                key: k.clone(),
                operator: "In".into(),
                values: Some(vec![v.clone()]),
            });
        }
        all.extend(s.match_expressions.iter().flatten().cloned());
    }
    LabelSelector {
        match_labels: None,
        match_expressions: Some(all),
    }
}

/// A short stable hash, for a name too long to use whole.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The name of policy `policy`'s webhook: a DNS subdomain of three or more labels.
pub fn policy_webhook_name(policy: &str) -> String {
    let name = format!("{policy}{POLICY_WEBHOOK_SUFFIX}");
    if name.len() <= 253 {
        name
    } else {
        format!("p-{:016x}{POLICY_WEBHOOK_SUFFIX}", fnv(policy))
    }
}

/// The webhook that sends policy `p`'s workloads without a key to kafka-expose: `base` (the
/// chart's workload webhook) narrowed to the policy's kinds, namespaces (its selector and
/// exclusions, within `base`'s), workload labels and names, and to objects without a key.
pub fn policy_webhook(p: &KafkaExposePolicy, base: &MutatingWebhook) -> MutatingWebhook {
    let name = p.metadata.name.clone().unwrap_or_default();
    let spec = &p.spec;
    let mut resources: Vec<String> = spec
        .selection
        .kinds()
        .into_iter()
        .map(|k| match k {
            PolicyKind::StatefulSet => "statefulsets".to_string(),
            PolicyKind::Deployment => "deployments".to_string(),
        })
        .collect();
    resources.sort();
    resources.dedup();
    let mut namespaces = both(
        base.namespace_selector.as_ref(),
        spec.selection.namespace_selector.as_ref(),
    );
    if !spec.exclude.namespaces.is_empty() {
        namespaces
            .match_expressions
            .get_or_insert_with(Vec::new)
            .push(LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "NotIn".into(),
                values: Some(spec.exclude.namespaces.clone()),
            });
    }
    let mut conditions = vec![MatchCondition {
        name: "no-kafka-expose-key".into(),
        expression: format!("!({})", keys_expression()),
    }];
    if !spec.selection.names.is_empty() {
        conditions.push(MatchCondition {
            name: "names".into(),
            expression: names_expression(&spec.selection.names),
        });
    }
    MutatingWebhook {
        name: policy_webhook_name(&name),
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec!["apps".into()]),
            api_versions: Some(vec!["v1".into()]),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            resources: Some(resources),
            scope: Some("Namespaced".into()),
        }]),
        namespace_selector: Some(namespaces),
        object_selector: spec.selection.selector.clone(),
        match_conditions: Some(conditions),
        ..copied(base)
    }
}

/// The bindings webhook: `base`'s server, namespaces and version, on pod bindings, never
/// failing a scheduling (`Ignore`), with `timeout_seconds`.
pub fn bindings_webhook(base: &MutatingWebhook, timeout_seconds: i32) -> MutatingWebhook {
    MutatingWebhook {
        name: BINDINGS_WEBHOOK.into(),
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec![String::new()]),
            api_versions: Some(vec!["v1".into()]),
            operations: Some(vec!["CREATE".into()]),
            resources: Some(vec!["pods/binding".into(), "bindings".into()]),
            scope: Some("Namespaced".into()),
        }]),
        namespace_selector: base.namespace_selector.clone(),
        timeout_seconds: Some(timeout_seconds),
        failure_policy: Some("Ignore".into()),
        reinvocation_policy: Some("Never".into()),
        ..copied(base)
    }
}

/// What a registered webhook takes from the chart's: where and how to call.
fn copied(base: &MutatingWebhook) -> MutatingWebhook {
    MutatingWebhook {
        name: String::new(),
        admission_review_versions: base.admission_review_versions.clone(),
        client_config: base.client_config.clone(),
        side_effects: base.side_effects.clone(),
        timeout_seconds: base.timeout_seconds,
        failure_policy: base.failure_policy.clone(),
        match_policy: base.match_policy.clone(),
        reinvocation_policy: base.reinvocation_policy.clone(),
        match_conditions: None,
        namespace_selector: None,
        object_selector: None,
        rules: None,
    }
}

/// Whether the chart's workload webhook carries the key condition: the API server then sends
/// it keyed workloads only, and policies need webhooks of their own.
pub fn filtered(base: &MutatingWebhook) -> bool {
    base.match_conditions
        .iter()
        .flatten()
        .any(|c| c.name == KEYS_CONDITION)
}

/// Whether any exposed broker (the `kafka-expose.io/*` annotations of each, keys without the
/// prefix) or any live policy asks for a node's address, which the bindings webhook gives.
pub fn uses_node_addresses<'a>(
    brokers: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
    policies: &[KafkaExposePolicy],
) -> bool {
    policies.iter().any(|p| {
        crate::engine::policy::is_live(p)
            && p.spec
                .exposure
                .advertised_host
                .as_deref()
                .is_some_and(|h| h.trim().starts_with("node:"))
    }) || brokers
        .into_iter()
        .any(|own| crate::engine::binding::wanted_types(own).is_some())
}

/// What the registrar is asked to keep.
pub struct Wanted<'a> {
    /// The chart's webhook configuration, as read.
    pub base: &'a MutatingWebhookConfiguration,
    /// The configuration kafka-expose registers its webhooks in.
    pub name: &'a str,
    /// The live policies.
    pub policies: &'a [KafkaExposePolicy],
    /// Whether a broker or policy uses `node:` addresses, and on-demand bindings are enabled.
    pub bindings: bool,
    pub bindings_timeout_seconds: i32,
}

/// The configuration kafka-expose registers, owned by the chart's (so it goes when the chart's
/// does), or `None` when it has no webhook to hold (it is then deleted). `None` too when the
/// chart's configuration has no workload webhook to copy from.
pub fn plan(w: &Wanted<'_>) -> Option<MutatingWebhookConfiguration> {
    let base = w
        .base
        .webhooks
        .iter()
        .flatten()
        .find(|h| h.name == WORKLOADS_WEBHOOK)?;
    let mut hooks = Vec::new();
    if w.bindings {
        hooks.push(bindings_webhook(base, w.bindings_timeout_seconds));
    }
    if filtered(base) {
        let mut live: Vec<&KafkaExposePolicy> = w
            .policies
            .iter()
            .filter(|p| crate::engine::policy::is_live(p))
            .collect();
        live.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        hooks.extend(live.into_iter().map(|p| policy_webhook(p, base)));
    }
    if hooks.is_empty() {
        return None;
    }
    let owner = OwnerReference {
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: "MutatingWebhookConfiguration".into(),
        name: w.base.metadata.name.clone().unwrap_or_default(),
        uid: w.base.metadata.uid.clone().unwrap_or_default(),
        ..Default::default()
    };
    Some(MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(w.name.to_string()),
            labels: Some(BTreeMap::from([(
                crate::names::labels::MANAGED_BY.to_string(),
                crate::names::labels::MANAGER.to_string(),
            )])),
            owner_references: (!owner.uid.is_empty()).then(|| vec![owner]),
            ..Default::default()
        },
        webhooks: Some(hooks),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_patterns_with_every_other_character_literal() {
        assert_eq!(glob_regex("kafka-*"), "^kafka-(?s:.*)$");
        assert_eq!(glob_regex("a.b?"), "^a\\.b(?s:.)$");
        assert_eq!(cel_string("a\\.b'"), "'a\\\\.b\\''");
    }

    fn base(conditions: bool) -> MutatingWebhookConfiguration {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kx", "uid": "u-1"},
            "webhooks": [{
                "name": WORKLOADS_WEBHOOK, "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"service": {"name": "kx", "namespace": "kx", "path": "/mutate"},
                                 "caBundle": "Q0E="},
                "namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]},
                "failurePolicy": "Ignore",
                "matchConditions": if conditions { serde_json::json!([keys_condition()]) } else { serde_json::Value::Null }}]}))
        .unwrap()
    }

    fn policy(name: &str, spec: serde_json::Value) -> KafkaExposePolicy {
        KafkaExposePolicy::new(name, serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn the_plan_registers_policies_only_beside_the_key_condition_and_bindings_only_when_used() {
        let p = policy(
            "prod",
            serde_json::json!({"mode": "Enforce",
                "match": {"namespaceSelector": {"matchLabels": {"env": "prod"}},
                          "selector": {"matchLabels": {"app": "kafka"}}, "names": ["kafka-*"]},
                "exclude": {"namespaces": ["sandbox"]},
                "exposure": {"expose": "nodeport", "portBase": 31000}}),
        );
        let policies = std::slice::from_ref(&p);
        let want = |b: &MutatingWebhookConfiguration, bindings| {
            plan(&Wanted {
                base: b,
                name: "kx-registered",
                policies,
                bindings,
                bindings_timeout_seconds: 2,
            })
        };
        // Without the condition the chart's webhook sees every write: nothing to add.
        assert!(want(&base(false), false).is_none());
        let only_bindings = want(&base(false), true).unwrap();
        let hooks = only_bindings.webhooks.unwrap();
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].name, BINDINGS_WEBHOOK);
        assert_eq!(hooks[0].failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(
            hooks[0].client_config,
            base(false).webhooks.unwrap()[0].client_config
        );

        let with = want(&base(true), false).unwrap();
        assert_eq!(with.metadata.owner_references.unwrap()[0].uid, "u-1");
        assert_eq!(
            with.metadata.labels.unwrap()[crate::names::labels::MANAGED_BY],
            crate::names::labels::MANAGER
        );
        let h = &with.webhooks.unwrap()[0];
        assert_eq!(h.name, "prod.policy-match.kafka-expose.io");
        assert_eq!(h.object_selector, p.spec.selection.selector);
        let ns = serde_json::to_value(&h.namespace_selector).unwrap();
        assert_eq!(
            ns,
            serde_json::json!({"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]},
                {"key": "env", "operator": "In", "values": ["prod"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["sandbox"]}]})
        );
        let conditions = h.match_conditions.clone().unwrap();
        assert_eq!(
            conditions[0].expression,
            format!("!({})", keys_expression())
        );
        assert!(
            conditions[1].expression.contains("'^kafka-(?s:.*)$'"),
            "{conditions:?}"
        );
        assert_eq!(
            h.rules.as_ref().unwrap()[0].resources.as_deref(),
            Some(&["statefulsets".to_string()][..])
        );

        // A policy being deleted, and no node: user: nothing to hold, so nothing registered.
        let mut going = p.clone();
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(
            plan(&Wanted {
                base: &base(true),
                name: "kx-registered",
                policies: &[going],
                bindings: false,
                bindings_timeout_seconds: 2,
            })
            .is_none()
        );
    }

    #[test]
    fn node_addresses_are_used_by_a_node_broker_or_a_live_node_policy() {
        let node = BTreeMap::from([("advertised-host".to_string(), "node:ExternalIP".to_string())]);
        let template = BTreeMap::from([(
            "advertised-host".to_string(),
            "template:kafka-{ordinal}.example.com".to_string(),
        )]);
        assert!(uses_node_addresses([&node], &[]));
        assert!(!uses_node_addresses([&template], &[]));
        let p = policy(
            "n",
            serde_json::json!({"mode": "Enforce",
                "exposure": {"expose": "nodeport", "advertisedHost": "node:ExternalDNS,ExternalIP"}}),
        );
        assert!(uses_node_addresses([&template], std::slice::from_ref(&p)));
    }

    #[test]
    fn a_long_policy_name_gets_a_hashed_webhook_name() {
        assert_eq!(
            policy_webhook_name("prod"),
            "prod.policy-match.kafka-expose.io"
        );
        let long = "a".repeat(253);
        let n = policy_webhook_name(&long);
        assert!(n.len() <= 253 && n.ends_with(POLICY_WEBHOOK_SUFFIX), "{n}");
        assert_eq!(n, policy_webhook_name(&long));
    }
}
