//! The JSON `check -o json` prints for every failure and every diagnosis, held byte for byte
//! against `tests/data/check/diagnoses.json` (recorded before the kinds became enums). Set
//! `KAFKA_EXPOSE_BLESS=1` to write the file anew after a deliberate change.

use std::time::Duration;

use serde_json::{Value, json};

use super::client::Failure;
use super::path::{BrokerPath, ServiceHop, WorkloadPath, diagnose, diagnose_bootstrap, join};
use super::report::{Bootstrap, BrokerReport, Problem, Report, Target, WorkloadRef};

const GOLDEN: &str = "tests/data/check/diagnoses.json";

fn problem(kind: &str, message: &str) -> Problem {
    Problem::new(kind.parse().unwrap(), message)
}

fn hop(
    type_: &str,
    ready: usize,
    not_ready: usize,
    ingress: &[&str],
    external: &str,
) -> ServiceHop {
    ServiceHop {
        name: "kafka-1-external".into(),
        type_: type_.into(),
        port: 9094,
        node_port: Some(31091),
        ingress: ingress.iter().map(|s| s.to_string()).collect(),
        ready_endpoints: ready,
        not_ready_endpoints: not_ready,
        external: vec![external.into()],
        route: None,
    }
}

fn path(pod_ready: Option<bool>, service: Option<ServiceHop>) -> BrokerPath {
    BrokerPath {
        ordinal: 1,
        pod: "kafka-1".into(),
        pod_ready,
        deleting: false,
        node: Some("n1".into()),
        node_addresses: vec!["InternalIP=10.0.0.1".into()],
        service,
        stale: None,
    }
}

fn report(kind: &str, adv: &str, cluster: Option<BrokerPath>) -> BrokerReport {
    BrokerReport {
        node_id: Some(1),
        advertised: Some(adv.into()),
        problem: Some(problem(kind, "as probed")),
        cluster,
        ..BrokerReport::default()
    }
}

fn workload_path(mode: &str, bootstrap_service: Option<ServiceHop>) -> WorkloadPath {
    WorkloadPath {
        workload: WorkloadRef {
            kind: "StatefulSet".into(),
            namespace: "ns".into(),
            name: "kafka".into(),
        },
        mode: mode.parse().unwrap(),
        bootstrap: Some("10.0.0.1:31100".into()),
        bootstrap_service,
        brokers: vec![path(
            Some(true),
            Some(hop("NodePort", 1, 0, &[], "10.0.0.1:31091")),
        )],
    }
}

fn cases() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let failures = [
        Failure::NameNotResolved {
            host: "kafka.example.com".into(),
            detail: "no such host".into(),
        },
        Failure::Refused,
        Failure::ConnectTimeout(Duration::from_secs(3)),
        Failure::Connect("network unreachable".into()),
        Failure::RequestTimeout {
            what: "Metadata",
            after: Duration::from_secs(5),
        },
        Failure::Closed {
            what: "ApiVersions",
        },
        Failure::Io {
            what: "reading",
            detail: "reset".into(),
        },
        Failure::TlsNameMismatch {
            host: "10.0.0.1".into(),
            presented: vec!["kafka-0".into()],
        },
        Failure::TlsUntrusted("unknown issuer".into()),
        Failure::Tls("handshake".into()),
        Failure::SaslRejected {
            mechanism: "PLAIN".into(),
            message: "bad password".into(),
        },
        Failure::SaslMechanism {
            mechanism: "SCRAM-SHA-512".into(),
            offered: vec!["PLAIN".into()],
        },
        Failure::Broker {
            what: "Metadata",
            code: 31,
            name: "CLUSTER_AUTHORIZATION_FAILED".into(),
        },
        Failure::Unsupported { what: "Metadata" },
        Failure::Malformed {
            what: "ApiVersions",
            detail: "HTTP/1.1 400".into(),
        },
    ];
    for f in &failures {
        out.push((format!("failure {f:?}"), json!(Problem::from(f))));
    }

    let nodeport =
        |ready, not_ready| Some(hop("NodePort", ready, not_ready, &[], "10.0.0.1:31091"));
    let broker_cases: Vec<(&str, &str, BrokerReport)> = vec![
        (
            "no cluster path",
            "nodeport",
            report("connection-refused", "10.0.0.9:31091", None),
        ),
        (
            "no pod",
            "nodeport",
            report(
                "connection-refused",
                "10.0.0.1:31091",
                Some(path(None, nodeport(1, 0))),
            ),
        ),
        (
            "hostport without service, not ready",
            "hostport",
            report(
                "connection-refused",
                "10.0.0.1:9094",
                Some(path(Some(false), None)),
            ),
        ),
        (
            "hostport without service, ready",
            "hostport",
            report(
                "connection-refused",
                "10.0.0.1:9094",
                Some(path(Some(true), None)),
            ),
        ),
        (
            "no service",
            "nodeport",
            report(
                "connection-refused",
                "10.0.0.1:31091",
                Some(path(Some(true), None)),
            ),
        ),
        (
            "no ready endpoint, pod not ready",
            "nodeport",
            report(
                "connect-timeout",
                "10.0.0.1:31091",
                Some(path(Some(false), nodeport(0, 1))),
            ),
        ),
        (
            "no ready endpoint, shared",
            "shared-loadbalancer",
            report(
                "connection-refused",
                "203.0.113.7:32401",
                Some(path(
                    Some(true),
                    Some(hop(
                        "LoadBalancer",
                        0,
                        0,
                        &["203.0.113.7"],
                        "203.0.113.7:32401",
                    )),
                )),
            ),
        ),
        (
            "no ready endpoint, not selected",
            "nodeport",
            report(
                "connection-refused",
                "10.0.0.1:31091",
                Some(path(Some(true), nodeport(0, 0))),
            ),
        ),
        (
            "load balancer without address",
            "loadbalancer",
            report(
                "connect-timeout",
                "203.0.113.7:9094",
                Some(path(
                    Some(true),
                    Some(hop("LoadBalancer", 1, 0, &[], "unused:1")),
                )),
            ),
        ),
        (
            "address mismatch",
            "nodeport",
            report(
                "connect-timeout",
                "10.0.0.9:31091",
                Some(path(Some(true), nodeport(1, 0))),
            ),
        ),
        (
            "wrong node",
            "nodeport",
            report(
                "wrong-node",
                "10.0.0.1:31091",
                Some(path(Some(true), nodeport(1, 0))),
            ),
        ),
        (
            "pod being deleted, still Ready",
            "nodeport",
            report(
                "connection-refused",
                "10.0.0.1:31091",
                Some(BrokerPath {
                    deleting: true,
                    ..path(Some(true), nodeport(0, 0))
                }),
            ),
        ),
        (
            "refused",
            "nodeport",
            report(
                "connection-refused",
                "10.0.0.1:31091",
                Some(path(Some(true), nodeport(1, 0))),
            ),
        ),
        (
            "connect timeout",
            "nodeport",
            report(
                "connect-timeout",
                "10.0.0.1:31091",
                Some(path(Some(true), nodeport(1, 0))),
            ),
        ),
        (
            "connect failed",
            "nodeport",
            report(
                "connect-failed",
                "10.0.0.1:31091",
                Some(path(Some(true), nodeport(1, 0))),
            ),
        ),
        (
            "request timeout",
            "nodeport",
            report(
                "request-timeout",
                "10.0.0.1:31091",
                Some(path(Some(true), nodeport(1, 0))),
            ),
        ),
        (
            "closed",
            "nodeport",
            report(
                "connection-closed",
                "10.0.0.1:31091",
                Some(path(Some(true), nodeport(1, 0))),
            ),
        ),
        (
            "tls, complete path",
            "nodeport",
            report(
                "tls-untrusted",
                "10.0.0.1:31091",
                Some(path(Some(true), nodeport(1, 0))),
            ),
        ),
    ];
    for (name, mode, mut r) in broker_cases {
        r.diagnosis = diagnose(&r, mode.parse().unwrap());
        out.push((format!("broker: {name}"), json!(r)));
    }

    let bootstrap_cases: Vec<(&str, &str, &str, Option<ServiceHop>)> = vec![
        ("no bootstrap", "no-bootstrap", "nodeport", None),
        ("bad bootstrap", "bad-bootstrap", "nodeport", nodeport(1, 0)),
        (
            "hostport without service",
            "connection-refused",
            "hostport",
            None,
        ),
        ("no service", "connection-refused", "nodeport", None),
        (
            "no ready endpoint, not ready",
            "connection-refused",
            "nodeport",
            nodeport(0, 2),
        ),
        (
            "no ready endpoint, none selected",
            "connection-refused",
            "nodeport",
            nodeport(0, 0),
        ),
        (
            "unreachable",
            "bootstrap-unreachable",
            "nodeport",
            nodeport(2, 0),
        ),
        ("timeout", "connect-timeout", "nodeport", nodeport(2, 0)),
        ("not kafka", "not-kafka", "nodeport", nodeport(2, 0)),
    ];
    for (name, kind, mode, svc) in bootstrap_cases {
        let p = problem(kind, "as probed");
        let d = diagnose_bootstrap(&p, &workload_path(mode, svc));
        out.push((
            format!("bootstrap: {name}"),
            json!({"problem": p, "diagnosis": d}),
        ));
    }

    // Join: a broker the metadata leaves out, with and without an answering bootstrap.
    for answered in [true, false] {
        let mut wp = workload_path("nodeport", nodeport(1, 0));
        wp.brokers.push(BrokerPath {
            ordinal: 0,
            ..path(
                Some(true),
                Some(hop("NodePort", 1, 0, &[], "10.0.0.1:31090")),
            )
        });
        let mut target = Target {
            workload: Some(wp.workload.clone()),
            bootstrap: Bootstrap {
                servers: vec!["10.0.0.1:31100".into()],
                answered_by: answered.then(|| "10.0.0.1:31100".into()),
                problem: (!answered).then(|| problem("bootstrap-unreachable", "as probed")),
                ..Default::default()
            },
            brokers: if answered {
                vec![BrokerReport {
                    node_id: Some(1),
                    advertised: Some("10.0.0.1:31091".into()),
                    reachable: true,
                    ok: true,
                    ..BrokerReport::default()
                }]
            } else {
                Vec::new()
            },
            ok: answered,
        };
        join(&mut target, &wp);
        out.push((
            format!("join, bootstrap answered: {answered}"),
            json!(Report::new(vec![target])),
        ));
    }
    out
}

#[test]
fn the_json_of_every_failure_and_diagnosis_is_as_recorded() {
    let now: Vec<Value> = cases()
        .into_iter()
        .map(|(case, v)| json!({"case": case, "json": serde_json::to_string(&v).unwrap()}))
        .collect();
    let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("KAFKA_EXPOSE_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        text == recorded,
        "check's JSON changed; compare with {GOLDEN} (KAFKA_EXPOSE_BLESS=1 writes it anew)"
    );
}
