//! The policy controller's decisions on workloads as the cluster holds them: every workload
//! state, every condition, the pool allocation, and the preview against the published bootstrap.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::decide::decide_layers;
use super::found::Found;
use super::item::{Blocked, Item};
use super::status::{self, Entry, Tally, conditions, state, status_of};
use crate::api::{KafkaExposePolicy, KafkaExposePolicySpec, WorkloadState};
use crate::config::Settings;
use crate::engine::exposure::Decision;
use crate::engine::policy;
use crate::engine::rollout::{Steps, WorkloadKey};
use crate::engine::services;
use crate::engine::workload::{self, PolicyLayer, Stamp};

const ENFORCE: &str = "mode: Enforce\nmatch: {selector: {matchLabels: {app: kafka}}}\nexposure: {expose: nodeport, portBase: 31000, bootstrapNodePort: 31090}\n";

fn policy(name: &str, yaml: &str) -> KafkaExposePolicy {
    let spec: KafkaExposePolicySpec = serde_saphyr::from_str(yaml).unwrap();
    let mut p = KafkaExposePolicy::new(name, spec);
    p.metadata.generation = Some(3);
    p
}

/// The apache/kafka fixture's StatefulSet, in namespace `ns`, with a status of `replicas` ready
/// on the current revision.
fn apache() -> Value {
    let text = include_str!("../../../tests/data/charts/apache-kafka-kraft.yaml");
    let mut sts = text
        .split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .find(|d| d["kind"] == "StatefulSet")
        .unwrap();
    sts["metadata"]["namespace"] = json!("ns");
    sts["metadata"]["uid"] = json!("uid-kafka");
    sts["metadata"]["resourceVersion"] = json!("7");
    sts["metadata"]["generation"] = json!(1);
    sts["status"] = json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
        "updatedReplicas": 3, "currentRevision": "r1", "updateRevision": "r1"});
    sts
}

fn found(v: &Value) -> Found {
    match v["kind"].as_str() {
        Some("Deployment") => Found::Dep(Box::new(serde_json::from_value(v.clone()).unwrap())),
        _ => Found::Sts(Box::new(serde_json::from_value(v.clone()).unwrap())),
    }
}

/// `v` as policy `name` leaves it once its settings `values` are stamped (the controller's
/// patch, applied).
fn stamped(v: &Value, name: &str, values: &[(&str, &str)]) -> Value {
    let mut w = found(v).workload();
    w.policy = PolicyLayer::Set(Stamp {
        policy: name.into(),
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    });
    let decision = w.exposure(&Settings::default()).unwrap();
    let planned = workload::plan(&w, &decision);
    let mut out = v.clone();
    json_patch::patch(&mut out, &planned.patch).unwrap();
    out
}

const ENFORCED_VALUES: [(&str, &str); 3] = [
    ("expose", "nodeport"),
    ("port-base", "31000"),
    ("bootstrap-node-port", "31090"),
];

fn items(
    all: &[KafkaExposePolicy],
    workloads: &[Value],
    namespace_labels: &[(&str, &str)],
    node_ports: &[u16],
) -> Vec<Item> {
    let live: Vec<KafkaExposePolicy> = all.iter().filter(|p| policy::is_live(p)).cloned().collect();
    let ns: BTreeMap<String, String> = namespace_labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut items: Vec<Item> = workloads
        .iter()
        .map(|w| Item::new(found(w), &live, &ns))
        .collect();
    decide_layers(
        &Settings::default(),
        all,
        &mut items,
        &node_ports.iter().copied().collect(),
    );
    items
}

fn key(item: &Item) -> WorkloadKey {
    item.found.key()
}

/// Where the one workload stands with policy `name`.
fn state_of(all: &[KafkaExposePolicy], item: &Item, name: &str, steps: &Steps) -> Option<Entry> {
    let p = all.iter().find(|p| p.name_any() == name).unwrap();
    state(p, item, steps)
}

/// Each workload state, and the scenario that produces it.
fn scenarios() -> Vec<(WorkloadState, Option<Entry>)> {
    let none = Steps::default();
    let mut out = Vec::new();

    // An Audit policy previews.
    let all = [policy("audit", &ENFORCE.replace("Enforce", "Audit"))];
    let i = items(&all, &[apache()], &[], &[]);
    out.push((
        WorkloadState::Matched,
        state_of(&all, &i[0], "audit", &none),
    ));

    // Enforce, not stamped yet: pending until paced, then rolling.
    let all = [policy("prod", ENFORCE)];
    let i = items(&all, &[apache()], &[], &[]);
    assert!(i[0].change_pending());
    out.push((WorkloadState::Pending, state_of(&all, &i[0], "prod", &none)));
    let started = Steps {
        start: vec![key(&i[0])],
        ..Steps::default()
    };
    out.push((
        WorkloadState::Rolling,
        state_of(&all, &i[0], "prod", &started),
    ));
    let stalled = Steps {
        stalled: vec![(key(&i[0]), 1300)],
        ..Steps::default()
    };
    out.push((
        WorkloadState::Stalled,
        state_of(&all, &i[0], "prod", &stalled),
    ));

    // OnDelete: the template changes, the brokers wait for a restart.
    let mut on_delete = apache();
    on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    let i = items(&all, &[on_delete], &[], &[]);
    out.push((
        WorkloadState::WaitingForRestart,
        state_of(&all, &i[0], "prod", &started_for(&i[0])),
    ));

    // Stamped with what the policy gives, and rolled: up to date.
    let done = stamped(&apache(), "prod", &ENFORCED_VALUES);
    let i = items(&all, std::slice::from_ref(&done), &[], &[]);
    assert!(
        !i[0].change_pending(),
        "{:?} {:?}",
        i[0].current,
        i[0].wanted
    );
    out.push((
        WorkloadState::UpToDate,
        state_of(&all, &i[0], "prod", &none),
    ));

    // A paused Deployment with a change to make is skipped.
    let deployments = [policy(
        "prod",
        &ENFORCE.replace("match: {", "match: {kinds: [Deployment], "),
    )];
    let i = items(&deployments, &[paused_deployment()], &[], &[]);
    out.push((
        WorkloadState::Skipped,
        state_of(&deployments, &i[0], "prod", &none),
    ));

    // The pool's one block holds a NodePort in use.
    let pool = [policy(
        "pool",
        "mode: Enforce\nmatch: {selector: {matchLabels: {app: kafka}}}\nexposure: {expose: nodeport, portPool: {from: 31000, to: 31009, blockSize: 10}}\n",
    )];
    let i = items(&pool, &[apache()], &[], &[31005]);
    assert!(matches!(i[0].blocked, Some(Blocked::PoolExhausted(_))));
    out.push((
        WorkloadState::PoolExhausted,
        state_of(&pool, &i[0], "pool", &none),
    ));

    // Three brokers from 32766 run past the NodePort range.
    let invalid = [policy(
        "edge",
        "mode: Enforce\nmatch: {selector: {matchLabels: {app: kafka}}}\nexposure: {expose: nodeport, portBase: 32766}\n",
    )];
    let i = items(&invalid, &[apache()], &[], &[]);
    assert!(
        matches!(i[0].blocked, Some(Blocked::Invalid(_))),
        "{:?}",
        i[0].blocked
    );
    out.push((
        WorkloadState::Invalid,
        state_of(&invalid, &i[0], "edge", &none),
    ));

    // Enforced, then switched to Audit: its brokers keep the settings.
    let kept = [policy("prod", &ENFORCE.replace("Enforce", "Audit"))];
    let i = items(&kept, std::slice::from_ref(&done), &[], &[]);
    assert_eq!(i[0].layer, PolicyLayer::Keep);
    out.push((WorkloadState::Kept, state_of(&kept, &i[0], "prod", &none)));

    // Stamped by an Enforce policy that no longer selects it: reverted.
    let narrowed = [policy("prod", &ENFORCE.replace("app: kafka", "app: other"))];
    let i = items(&narrowed, &[done], &[], &[]);
    assert_eq!(i[0].layer, PolicyLayer::Clear);
    out.push((
        WorkloadState::Reverting,
        state_of(&narrowed, &i[0], "prod", &none),
    ));

    // A policy of a higher priority applies.
    let two = [
        policy("high", &format!("priority: 10\n{ENFORCE}")),
        policy("low", ENFORCE),
    ];
    let i = items(&two, &[apache()], &[], &[]);
    out.push((
        WorkloadState::Superseded,
        state_of(&two, &i[0], "low", &none),
    ));

    // The namespace turns kafka-expose off.
    let i = items(
        &all,
        &[apache()],
        &[("kafka-expose.io/webhook", "disabled")],
        &[],
    );
    out.push((
        WorkloadState::Excluded,
        state_of(&all, &i[0], "prod", &none),
    ));
    out
}

fn started_for(item: &Item) -> Steps {
    Steps {
        start: vec![key(item)],
        ..Steps::default()
    }
}

/// The apache/kafka broker as a paused Deployment of one, its ordinal annotated.
fn paused_deployment() -> Value {
    let sts = apache();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kafka-single", "namespace": "ns", "uid": "uid-dep",
                     "labels": {"app": "kafka"},
                     "annotations": {"kafka-expose.io/ordinal": "0"}},
        "spec": {"paused": true, "replicas": 1, "selector": sts["spec"]["selector"],
                 "template": sts["spec"]["template"]}
    })
}

#[test]
fn every_workload_state_comes_from_its_own_scenario_and_no_state_is_left_out() {
    let mut produced = BTreeSet::new();
    for (want, got) in scenarios() {
        let got = got.unwrap_or_else(|| panic!("{want}: the policy does not concern it"));
        assert_eq!(got.state, want, "{got:?}");
        assert!(!got.reason.is_empty(), "{want} says why");
        produced.insert(want);
    }
    let all: BTreeSet<WorkloadState> = WorkloadState::ALL.into();
    assert_eq!(produced, all, "a scenario for every state, and no other");
}

#[test]
fn a_policy_switched_to_audit_keeps_what_it_stamped_even_once_it_no_longer_selects_it() {
    let done = stamped(&apache(), "prod", &ENFORCED_VALUES);
    let kept = [policy(
        "prod",
        &ENFORCE
            .replace("Enforce", "Audit")
            .replace("app: kafka", "app: other"),
    )];
    let i = items(&kept, &[done], &[], &[]);
    assert_eq!(i[0].layer, PolicyLayer::Keep);
    let e = state_of(&kept, &i[0], "prod", &Steps::default()).unwrap();
    assert_eq!(e.state, WorkloadState::Kept);
}

#[test]
fn a_policy_that_neither_selects_nor_stamped_a_workload_says_nothing_of_it() {
    let all = [
        policy("prod", ENFORCE),
        policy("other", &ENFORCE.replace("app: kafka", "app: web")),
    ];
    let i = items(&all, &[apache()], &[], &[]);
    assert_eq!(state_of(&all, &i[0], "other", &Steps::default()), None);
}

#[test]
fn a_tie_between_enforce_policies_is_a_conflict_on_both_and_the_smaller_name_applies() {
    let all = [policy("a-first", ENFORCE), policy("b-second", ENFORCE)];
    let i = items(&all, &[apache()], &[], &[]);
    let none = Steps::default();
    let first = state_of(&all, &i[0], "a-first", &none).unwrap();
    let second = state_of(&all, &i[0], "b-second", &none).unwrap();
    assert_eq!(first.state, WorkloadState::Pending);
    assert_eq!(second.state, WorkloadState::Superseded);
    assert!(
        first.conflicts[0].contains("tied with b-second"),
        "{first:?}"
    );
    assert!(
        second.conflicts[0].contains("tied with a-first"),
        "{second:?}"
    );
    let told = status::told(&Settings::default(), &i[0]);
    assert!(
        told.iter()
            .any(|(_, r, n)| *r == "PolicyConflict" && n.contains("a-first applies")),
        "{told:?}"
    );
}

#[test]
fn a_partition_is_named_in_the_reason() {
    let all = [policy("prod", ENFORCE)];
    let mut sts = apache();
    sts["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
    let i = items(&all, &[sts], &[], &[]);
    let e = state_of(&all, &i[0], "prod", &Steps::default()).unwrap();
    assert_eq!(e.state, WorkloadState::Pending);
    assert!(
        e.reason
            .contains("partition 2: brokers below ordinal 2 keep their configuration"),
        "{e:?}"
    );
}

#[test]
fn an_on_delete_workload_waits_for_restarts_until_every_broker_runs_the_template() {
    let all = [policy("prod", ENFORCE)];
    let mut sts = stamped(&apache(), "prod", &ENFORCED_VALUES);
    sts["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    sts["status"]["updatedReplicas"] = json!(1);
    sts["status"]["updateRevision"] = json!("r2");
    let i = items(&all, &[sts.clone()], &[], &[]);
    let none = Steps::default();
    assert_eq!(
        state_of(&all, &i[0], "prod", &none).unwrap().state,
        WorkloadState::WaitingForRestart
    );
    sts["status"]["updatedReplicas"] = json!(3);
    sts["status"]["currentRevision"] = json!("r2");
    let i = items(&all, &[sts], &[], &[]);
    assert_eq!(
        state_of(&all, &i[0], "prod", &none).unwrap().state,
        WorkloadState::UpToDate
    );
}

#[test]
fn pool_blocks_go_around_node_ports_in_use_and_blocks_stamped_elsewhere_and_stay_put() {
    let pool = [policy(
        "pool",
        "mode: Enforce\nmatch: {selector: {matchLabels: {app: kafka}}}\nexposure: {expose: nodeport, portPool: {from: 31000, to: 31039, blockSize: 10}}\n",
    )];
    let mut other = apache();
    other["metadata"]["name"] = json!("a-other");
    let other = stamped(
        &other,
        "pool",
        &[("expose", "nodeport"), ("port-base", "31010")],
    );
    // 31000-31009 holds a NodePort; 31010 is stamped on another workload: 31020 is next.
    let i = items(&pool, &[apache(), other], &[], &[31003]);
    let base = |item: &Item| match &item.layer {
        PolicyLayer::Set(s) => s.values.get("port-base").cloned(),
        _ => None,
    };
    let kafka = i.iter().find(|i| i.found.key().name == "kafka").unwrap();
    let a_other = i.iter().find(|i| i.found.key().name == "a-other").unwrap();
    assert_eq!(
        base(a_other).as_deref(),
        Some("31010"),
        "a recorded block stays"
    );
    assert_eq!(base(kafka).as_deref(), Some("31020"));
    // Its bootstrap NodePort is the block's last port, which three brokers leave free.
    let PolicyLayer::Set(s) = &kafka.layer else {
        panic!()
    };
    assert_eq!(
        s.values.get("bootstrap-node-port").map(String::as_str),
        Some("31029")
    );
}

#[test]
fn an_audit_preview_never_takes_the_block_an_enforced_workload_gets() {
    let all = [
        policy(
            "pool",
            "mode: Enforce\nmatch: {names: [kafka]}\nexposure: {expose: nodeport, portPool: {from: 31000, to: 31019, blockSize: 10}}\n",
        ),
        policy(
            "preview",
            "mode: Audit\nmatch: {names: [a-*]}\nexposure: {expose: nodeport, portPool: {from: 31000, to: 31019, blockSize: 10}}\n",
        ),
    ];
    let mut audited = apache();
    audited["metadata"]["name"] = json!("a-audited");
    // Sorted by key, the audited workload comes first; the enforced one still gets 31000.
    let i = items(&all, &[audited, apache()], &[], &[]);
    let enforced = i.iter().find(|i| i.found.key().name == "kafka").unwrap();
    let PolicyLayer::Set(s) = &enforced.layer else {
        panic!("{:?}", enforced.layer)
    };
    assert_eq!(s.values.get("port-base").map(String::as_str), Some("31000"));
    let preview = &i
        .iter()
        .find(|i| i.found.key().name == "a-audited")
        .unwrap();
    assert_eq!(
        preview.audit_values["preview"]
            .get("port-base")
            .map(String::as_str),
        Some("31010")
    );
}

#[test]
fn the_preview_of_a_bootstrap_is_the_address_the_reconciler_publishes() {
    let all = [policy(
        "audit",
        &ENFORCE.replace("Enforce", "Audit").replace(
            "expose: nodeport",
            "expose: nodeport, advertisedHost: host-ip",
        ),
    )];
    let mut i = items(&all, &[apache()], &[], &[]);
    let ips: BTreeMap<String, String> = [
        ("kafka-0", "192.0.2.10"),
        ("kafka-1", "192.0.2.11"),
        ("kafka-2", "192.0.2.10"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert!(status::item_needs_host_ips(
        &Settings::default(),
        &all,
        &i[0]
    ));
    i[0].host_ips = ips.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let s = status_of(&Settings::default(), &all[0], &i, &Steps::default(), &now);
    let previewed = s.workloads[0].bootstrap.clone();

    // What the reconciler publishes once the policy is enforced: the planned bootstrap
    // Service's NodePort on each broker's node.
    let mut w = i[0].found.workload();
    w.policy = PolicyLayer::Set(Stamp {
        policy: "audit".into(),
        values: i[0].audit_values["audit"].clone(),
    });
    let Ok(Decision::Expose(e)) = w.exposure(&Settings::default()) else {
        panic!()
    };
    let bootstrap_svc = services::plan(&w, &e)
        .into_iter()
        .find(|s| s.metadata.name.as_deref() == Some("kafka-external-bootstrap"))
        .unwrap();
    let port = bootstrap_svc.spec.unwrap().ports.unwrap()[0].node_port;
    let published = services::bootstrap_list(
        &w,
        &e,
        services::BootstrapFacts {
            host_ips: &ips,
            lb_address: None,
            bootstrap_node_port: port,
        },
    );
    assert_eq!(
        previewed.as_deref(),
        Some("192.0.2.10:31090,192.0.2.11:31090")
    );
    assert_eq!(previewed, published);
    assert_eq!(
        s.workloads[0].brokers,
        [
            "EXTERNAL://192.0.2.10:31000",
            "EXTERNAL://192.0.2.11:31001",
            "EXTERNAL://192.0.2.10:31002"
        ]
    );
}

fn cond<'a>(cs: &'a [Condition], t: &str) -> &'a Condition {
    cs.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn every_condition_turns_true_and_false_with_its_reason() {
    let enforce = policy("prod", ENFORCE);
    let audit = policy("audit", &ENFORCE.replace("Enforce", "Audit"));
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let k = WorkloadKey {
        kind: "StatefulSet",
        namespace: "ns".into(),
        name: "kafka".into(),
    };
    let quiet = Steps::default();
    let up = Tally::of(&[WorkloadState::UpToDate, WorkloadState::Kept]);
    let cs = conditions(&enforce, &[], &up, &quiet, &[], &[], &now);
    let types: Vec<&str> = cs.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        types,
        [
            "Ready",
            "Conflict",
            "RolloutProgressing",
            "RolloutStalled",
            "RestartStalled"
        ]
    );
    let rs = cond(&cs, "RestartStalled");
    assert_eq!(
        (rs.status.as_str(), rs.reason.as_str()),
        ("False", "InTime")
    );
    // A broker restart for a new address past its deadline: not Ready, and named.
    let record = "StatefulSet ns/kafka: stalled kafka-2 since 5: not Ready again".to_string();
    let cs = conditions(&enforce, &[], &up, &quiet, &[], &[record], &now);
    let r = cond(&cs, "Ready");
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("False", "RestartStalled")
    );
    let rs = cond(&cs, "RestartStalled");
    assert_eq!(
        (rs.status.as_str(), rs.reason.as_str()),
        ("True", "ProgressDeadlineExceeded")
    );
    assert!(
        rs.message
            .ends_with("StatefulSet ns/kafka: stalled kafka-2 since 5: not Ready again"),
        "{}",
        rs.message
    );
    let cs = conditions(&enforce, &[], &up, &quiet, &[], &[], &now);
    let r = cond(&cs, "Ready");
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("True", "UpToDate"));
    assert_eq!(r.message, "1 of 2 workloads up to date");
    assert_eq!(r.observed_generation, Some(3));
    let c = cond(&cs, "Conflict");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "NoConflict")
    );
    let p = cond(&cs, "RolloutProgressing");
    assert_eq!((p.status.as_str(), p.reason.as_str()), ("False", "Pacing"));
    let st = cond(&cs, "RolloutStalled");
    assert_eq!(
        (st.status.as_str(), st.reason.as_str()),
        ("False", "InTime")
    );

    let rolling = Steps {
        rolling: vec![k.clone()],
        waiting: vec![k.clone()],
        stalled: vec![(k.clone(), 1300)],
        ..Steps::default()
    };
    let moving = Tally::of(&[WorkloadState::Rolling, WorkloadState::Pending]);
    let conflicts = ["StatefulSet ns/kafka: tied with other at priority 0".to_string()];
    let cs = conditions(&enforce, &[], &moving, &rolling, &conflicts, &[], &now);
    let r = cond(&cs, "Ready");
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("False", "RollingOut")
    );
    assert_eq!(r.message, "0 of 2 workloads up to date");
    let c = cond(&cs, "Conflict");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "EqualPriority")
    );
    assert_eq!(c.message, conflicts[0]);
    let p = cond(&cs, "RolloutProgressing");
    assert_eq!(p.status, "True");
    assert_eq!(p.message, "1 rolling, 1 waiting (maxConcurrent 1)");
    let st = cond(&cs, "RolloutStalled");
    assert_eq!(
        (st.status.as_str(), st.reason.as_str()),
        ("True", "ProgressDeadlineExceeded")
    );
    assert!(
        st.message.contains("StatefulSet ns/kafka for 1300s"),
        "{st:?}"
    );

    // Audit: ready whatever the tally, nothing changed.
    let cs = conditions(
        &audit,
        &[],
        &Tally::of(&[WorkloadState::Matched]),
        &quiet,
        &[],
        &[],
        &now,
    );
    let r = cond(&cs, "Ready");
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("True", "Audit"));
    assert_eq!(r.message, "Audit: 1 workloads matched; nothing is changed");
}

#[test]
fn a_condition_keeps_its_transition_time_while_its_status_stays() {
    let p = policy("prod", ENFORCE);
    let then = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let now = Time("2026-12-03T10:00:00Z".parse().unwrap());
    let first = conditions(
        &p,
        &[],
        &Tally::default(),
        &Steps::default(),
        &[],
        &[],
        &then,
    );
    let again = conditions(
        &p,
        &first,
        &Tally::default(),
        &Steps::default(),
        &[],
        &[],
        &now,
    );
    assert!(again.iter().all(|c| c.last_transition_time == then));
    let pending = Tally::of(&[WorkloadState::Pending]);
    let changed = conditions(&p, &first, &pending, &Steps::default(), &[], &[], &now);
    assert_eq!(cond(&changed, "Ready").last_transition_time, now);
    assert_eq!(cond(&changed, "Conflict").last_transition_time, then);
}

#[test]
fn the_counts_follow_the_states() {
    let t = Tally::of(&WorkloadState::ALL);
    assert_eq!(t.matched, 12, "all but Reverting");
    assert_eq!(t.up_to_date, 2, "UpToDate and Kept");
    assert_eq!(t.pending, 4, "Pending, Rolling, Stalled, WaitingForRestart");
}

#[test]
fn the_crd_lists_exactly_the_states_that_are_produced() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(KafkaExposePolicy::crd()).unwrap();
    let state = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        ["workloads"]["items"]["properties"]["state"];
    let names: Vec<&str> = WorkloadState::ALL.iter().map(|s| s.as_str()).collect();
    let listed: Vec<&str> = state["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{state}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed, names, "the schema's enum");
    let description = state["description"].as_str().unwrap();
    let quoted: Vec<&str> = description.split('`').skip(1).step_by(2).collect();
    let quoted_states: BTreeSet<&str> = quoted
        .iter()
        .copied()
        .filter(|q| q.chars().next().is_some_and(char::is_uppercase))
        .collect();
    assert_eq!(
        quoted_states,
        names.iter().copied().collect(),
        "the description names every state once, and no other: {description}"
    );
    for s in WorkloadState::ALL {
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json, json!(s.as_str()));
        assert_eq!(serde_json::from_value::<WorkloadState>(json).unwrap(), s);
    }
}
