//! Every real chart, exposed unchanged: each broker's effective configuration binds and
//! advertises its external listener, and a planned Service routes to it alone.

mod support;

use std::collections::BTreeMap;

use kafka_expose::config::Settings;
use kafka_expose::engine::pod::{PodContext, mutate_pod};
use kafka_expose::engine::workload::{Workload, WorkloadKind, mutate_workload};
use kafka_expose::offline::{self, Options, controller_pods};
use serde_json::Value;
use support::{Image, effective_config, listeners, node_ip, protocol_map};

/// One exposed workload of a fixture.
#[derive(Clone, Copy)]
struct Case {
    fixture: &'static str,
    workload: &'static str,
    container: &'static str,
    image: Image,
    /// Annotations the fixture README gives for the chart, beyond `expose`.
    extra: &'static [(&'static str, &'static str)],
    /// The external listener's name.
    listener: &'static str,
    /// Whether the chart advertises the listener itself.
    adopted: bool,
    /// The advertised port of the broker with ordinal 0 under expose=nodeport.
    base: u32,
    /// Whether the chart makes the per-broker Services itself.
    chart_services: bool,
}

const CASES: [Case; 11] = [
    Case {
        fixture: "apache-kafka-kraft.yaml",
        workload: "kafka",
        container: "broker",
        image: Image::Apache,
        extra: &[],
        listener: "EXTERNAL",
        base: 32400,
        chart_services: false,
        adopted: false,
    },
    Case {
        fixture: "bitnami-23.0.7.yaml",
        workload: "my-kafka",
        container: "kafka",
        image: Image::BitnamiEnv,
        extra: &[],
        listener: "EXTERNAL",
        base: 32400,
        chart_services: false,
        adopted: false,
    },
    Case {
        fixture: "bitnami-26.11.4.yaml",
        workload: "my-kafka-controller",
        container: "kafka",
        image: Image::BitnamiFile,
        extra: &[],
        listener: "EXTERNAL",
        base: 32400,
        chart_services: false,
        adopted: false,
    },
    Case {
        fixture: "bitnami-32.4.4.yaml",
        workload: "my-kafka-controller",
        container: "kafka",
        image: Image::BitnamiFile,
        extra: &[],
        listener: "EXTERNAL",
        base: 32400,
        chart_services: false,
        adopted: false,
    },
    Case {
        fixture: "bitnami-32.4.4-split.yaml",
        workload: "my-kafka-broker",
        container: "kafka",
        image: Image::BitnamiFile,
        extra: &[],
        listener: "EXTERNAL",
        base: 32400,
        chart_services: false,
        adopted: false,
    },
    Case {
        fixture: "cp-helm-charts-cp-kafka.yaml",
        workload: "my-cp-cp-kafka",
        container: "cp-kafka-broker",
        image: Image::Apache,
        extra: &[],
        listener: "EXTERNAL",
        base: 31090,
        chart_services: false,
        adopted: true,
    },
    Case {
        fixture: "yolean-kubernetes-kafka.yaml",
        workload: "kafka",
        container: "broker",
        image: Image::Yolean,
        extra: &[
            ("adapter", "adopt"),
            ("listener-name", "OUTSIDE"),
            ("port-base", "32400"),
            ("container-port", "9094"),
        ],
        listener: "OUTSIDE",
        base: 32400,
        chart_services: false,
        adopted: true,
    },
    Case {
        fixture: "bitnami-32.4.4-ssl.yaml",
        workload: "my-kafka-controller",
        container: "kafka",
        image: Image::BitnamiFile,
        extra: &[],
        listener: "EXTERNAL",
        base: 32400,
        chart_services: false,
        adopted: false,
    },
    Case {
        fixture: "bitnami-26.11.4-externalaccess.yaml",
        workload: "my-kafka-controller",
        container: "kafka",
        image: Image::BitnamiFile,
        extra: &[],
        listener: "EXTERNAL",
        base: 31190,
        chart_services: true,
        adopted: true,
    },
    Case {
        fixture: "cp-helm-charts-cp-kafka-nodeport.yaml",
        workload: "my-cp-cp-kafka",
        container: "cp-kafka-broker",
        image: Image::Apache,
        extra: &[],
        listener: "EXTERNAL",
        base: 31090,
        chart_services: true,
        adopted: true,
    },
    // The chart's own script writes the whole server.properties and runs kafka-server-start.sh
    // on it: the launch adapter.
    Case {
        fixture: "cloudpirates-kafka-0.1.4.yaml",
        workload: "my-kafka",
        container: "kafka",
        image: Image::Launch,
        extra: &[],
        listener: "EXTERNAL",
        base: 32400,
        chart_services: false,
        adopted: false,
    },
];

/// What broker `i` must advertise.
struct Expect {
    mode: &'static str,
    host: fn(u32) -> String,
    port: fn(u32, u32) -> u32,
}

/// `expose: gateway` on every fixture whose listener kafka-expose adds: each broker would run
/// advertising its own name on the Gateway's port, over TLS on its own certificate; its routes
/// and ClusterIP backends are planned, one per broker and one for the bootstrap name.
#[test]
fn every_fixture_behind_a_gateway_advertises_its_own_name_on_443_over_tls() {
    let set = [
        ("expose", "gateway"),
        ("gateway", "infra/public/kafka"),
        (
            "advertised-host",
            "template:{statefulset}-{ordinal}.gw.example.com",
        ),
        ("bootstrap-host", "kafka.gw.example.com"),
        ("external-tls", "ca:kafka-ca"),
    ];
    let mut exposed = 0;
    for case in &CASES {
        if case.adopted || case.image == Image::BitnamiEnv {
            continue;
        }
        let out = run_ok(case, &set);
        let docs = support::fixture(case.fixture);
        let pods = owned_pods(&out, case.workload);
        let routes = objects_of(&out, "TLSRoute");
        assert_eq!(routes.len(), pods.len() + 1, "{}", case.fixture);
        for s in services_of(&out, case.workload) {
            assert_eq!(s["spec"]["type"], "ClusterIP", "{}: {s}", case.fixture);
        }
        for (i, pod) in pods.iter().enumerate() {
            let ctx = format!("{} broker {i}", case.fixture);
            let after = effective_config(&docs, pod, case.container, i as u32, case.image);
            let host = format!("{}-{i}.gw.example.com", case.workload);
            let ext = case.listener.to_ascii_uppercase();
            let advertised = listeners(after.get("advertised.listeners"));
            assert!(
                advertised
                    .iter()
                    .any(|(n, h, p)| *n == ext && *h == host && p == "443"),
                "{ctx}: {advertised:?}"
            );
            let protocol = protocol_map(&after).get(&ext).cloned().unwrap_or_default();
            assert!(protocol.ends_with("SSL"), "{ctx}: {protocol}");
            let route = routes
                .iter()
                .find(|r| r["spec"]["hostnames"][0] == host.as_str())
                .unwrap_or_else(|| panic!("{ctx}: a route for {host}"));
            assert_eq!(
                route["spec"]["rules"][0]["backendRefs"][0]["name"], route["metadata"]["name"],
                "{ctx}"
            );
            exposed += 1;
        }
    }
    assert_eq!(exposed, 18, "every broker of the six fixtures");
}

fn node_port_scheme(i: u32, base: u32) -> u32 {
    base + i
}

fn run(case: &Case, set: &[(&str, &str)]) -> Result<offline::Output, offline::MutateError> {
    let mut all: Vec<(String, String)> = vec![];
    for (k, v) in case.extra.iter().chain(set) {
        all.push((k.to_string(), v.to_string()));
    }
    let opts = Options {
        set: all,
        namespace: None,
        settings: Settings::default(),
    };
    offline::run(support::fixture(case.fixture), &opts)
}

/// [`run`], which must succeed.
fn run_ok(case: &Case, set: &[(&str, &str)]) -> offline::Output {
    run(case, set).unwrap_or_else(|e| {
        panic!(
            "{}: {}",
            case.fixture,
            kafka_expose::engine::error_chain(&e)
        )
    })
}

fn objects_of<'a>(out: &'a offline::Output, kind: &str) -> Vec<&'a Value> {
    out.objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn owned_pods<'a>(out: &'a offline::Output, workload: &str) -> Vec<&'a Value> {
    objects_of(out, "Pod")
        .into_iter()
        .filter(|p| p.pointer("/metadata/ownerReferences/0/name") == Some(&Value::from(workload)))
        .collect()
}

fn services_of<'a>(out: &'a offline::Output, workload: &str) -> Vec<&'a Value> {
    objects_of(out, "Service")
        .into_iter()
        .filter(|s| {
            s.pointer("/metadata/labels/kafka-expose.io~1workload") == Some(&Value::from(workload))
        })
        .collect()
}

fn original_pods(case: &Case) -> Vec<Value> {
    let docs = support::fixture(case.fixture);
    let doc = docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == case.workload)
        .unwrap()
        .clone();
    let w = Workload::from_value(WorkloadKind::StatefulSet, &doc).unwrap();
    controller_pods(&w, &doc)
}

/// The client listener of an unmutated broker and its protocol: not a controller listener, and
/// not the inter-broker one where another exists.
fn client_protocol(props: &BTreeMap<String, String>, external: &str) -> String {
    let controllers: Vec<String> = props
        .get("controller.listener.names")
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_ascii_uppercase())
                .collect()
        })
        .unwrap_or_default();
    let inter = props
        .get("inter.broker.listener.name")
        .map(|s| s.to_ascii_uppercase());
    let names: Vec<String> =
        listeners(props.get("advertised.listeners").or(props.get("listeners")))
            .into_iter()
            .map(|(n, _, _)| n.to_ascii_uppercase())
            .filter(|n| !controllers.contains(n) && n != &external.to_ascii_uppercase())
            .collect();
    let client = names
        .iter()
        .find(|n| *n == "CLIENT")
        .or_else(|| names.iter().find(|n| Some(*n) != inter.as_ref()))
        .or(names.first())
        .expect("a client listener")
        .clone();
    protocol_map(props)[&client].clone()
}

fn without(list: Vec<(String, String, String)>, name: &str) -> Vec<(String, String, String)> {
    list.into_iter()
        .filter(|(n, _, _)| !n.eq_ignore_ascii_case(name))
        .collect()
}

/// Resolves a Service's targetPort on a pod: a number, or the pod's container port of that name.
fn target_port(svc: &Value, pod: &Value) -> u32 {
    let t = &svc["spec"]["ports"][0]["targetPort"];
    if let Some(n) = t.as_u64() {
        return n as u32;
    }
    let name = t.as_str().unwrap();
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {name}")) as u32
}

fn check_case(case: &Case, set: &[(&str, &str)], expect: &Expect) {
    let out = run(case, set).unwrap_or_else(|e| panic!("{}: {e}", case.fixture));
    let docs = support::fixture(case.fixture);
    let pods = owned_pods(&out, case.workload);
    let originals = original_pods(case);
    assert_eq!(
        pods.len(),
        originals.len(),
        "{}: one pod per replica",
        case.fixture
    );
    assert!(!pods.is_empty());
    let services = services_of(&out, case.workload);
    let others: Vec<&Value> = objects_of(&out, "Service")
        .into_iter()
        .filter(|s| {
            s.pointer("/metadata/labels/app.kubernetes.io~1managed-by")
                != Some(&Value::from("kafka-expose"))
        })
        .collect();
    let want = if case.chart_services {
        1
    } else {
        pods.len() + 1
    };
    assert_eq!(
        services.len(),
        want,
        "{}: a Service per broker the chart does not route to, and a bootstrap Service",
        case.fixture
    );
    for mine in &services {
        let ports: Vec<&Value> = mine["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.get("nodePort"))
            .collect();
        for theirs in &others {
            assert_ne!(
                mine["metadata"]["name"], theirs["metadata"]["name"],
                "{}: a twin of the chart's Service",
                case.fixture
            );
            for p in theirs["spec"]["ports"].as_array().unwrap() {
                if let Some(np) = p.get("nodePort") {
                    assert!(
                        !ports.contains(&np),
                        "{}: NodePort {np} twice",
                        case.fixture
                    );
                }
            }
        }
    }
    let mut bound_ports: Vec<u32> = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let i = i as u32;
        let pod_name = pod["metadata"]["name"].as_str().unwrap();
        let ctx = format!("{} broker {i} ({})", case.fixture, expect.mode);
        let before = effective_config(&docs, &originals[i as usize], case.container, i, case.image);
        // A broker held by the gate is bound first: the API server copies the Binding's
        // annotation (its node's address) onto the pod.
        let mut bound_pod = (*pod).clone();
        let gated = pod["spec"]["initContainers"]
            .as_array()
            .is_some_and(|c| c.first().is_some_and(|c| c["name"] == "kafka-expose-gate"));
        if gated {
            bound_pod["metadata"]["annotations"]["kafka-expose.io/external-host"] =
                Value::from((expect.host)(i));
        }
        let pod = &bound_pod;
        let after = effective_config(&docs, pod, case.container, i, case.image);
        let ext = case.listener;

        let bound = listeners(after.get("listeners"));
        let (_, bind_host, bind_port) = bound
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(ext))
            .unwrap_or_else(|| panic!("{ctx}: {ext} is not bound: {after:?}"))
            .clone();
        assert!(
            bind_host.is_empty() || bind_host == "0.0.0.0",
            "{ctx}: {ext} binds every interface, not {bind_host}"
        );
        let bind_port: u32 = bind_port.parse().unwrap();

        let advertised = listeners(after.get("advertised.listeners"));
        let (_, host, port) = advertised
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(ext))
            .unwrap_or_else(|| panic!("{ctx}: {ext} is not advertised: {after:?}"))
            .clone();
        assert_eq!(host, (expect.host)(i), "{ctx}: advertised host");
        let base = case.base;
        assert_eq!(
            port,
            (expect.port)(i, base).to_string(),
            "{ctx}: advertised port"
        );

        let want_protocol = client_protocol(&before, ext);
        assert_eq!(
            protocol_map(&after).get(&ext.to_ascii_uppercase()),
            Some(&want_protocol),
            "{ctx}: the protocol map has {ext} with the client listener's protocol"
        );
        for (k, v) in protocol_map(&before) {
            if before.contains_key("listener.security.protocol.map") {
                assert_eq!(
                    protocol_map(&after).get(&k),
                    Some(&v),
                    "{ctx}: map entry {k} kept"
                );
            }
        }

        if !case.adopted {
            assert!(
                !listeners(before.get("advertised.listeners"))
                    .iter()
                    .any(|(n, _, _)| n.eq_ignore_ascii_case(ext)),
                "{ctx}: the chart had no {ext} before"
            );
        }
        let internal_before = listeners(before.get("listeners"));
        assert_eq!(
            without(internal_before, ext),
            without(bound.clone(), ext),
            "{ctx}: the internal listeners are unchanged"
        );
        assert_eq!(
            without(listeners(before.get("advertised.listeners")), ext),
            without(advertised.clone(), ext),
            "{ctx}: the internal advertised listeners are unchanged"
        );
        for c in after
            .get("controller.listener.names")
            .map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            assert!(
                !advertised
                    .iter()
                    .any(|(n, _, _)| n.eq_ignore_ascii_case(&c)),
                "{ctx}: controller listener {c} is not advertised"
            );
        }
        // Settings scoped to the client listener are the external listener's too.
        for (k, v) in &before {
            if let Some(rest) = k.strip_prefix("listener.name.client.") {
                let copy = format!("listener.name.{}.{rest}", ext.to_ascii_lowercase());
                assert_eq!(
                    after.get(&copy),
                    Some(v),
                    "{ctx}: {copy} copied from the client listener"
                );
            }
        }

        // The planned Service (or the chart's own) routes the advertised port to this pod
        // alone, on the bound port.
        let svc_name = format!("{}-{i}-external", case.workload);
        let svc = services
            .iter()
            .find(|s| s["metadata"]["name"] == svc_name)
            .or_else(|| {
                others.iter().find(|s| {
                    s["spec"]["type"] == "NodePort"
                        && s["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == pod_name
                })
            })
            .unwrap_or_else(|| panic!("{ctx}: no Service routes to {pod_name}"));
        let selector = svc["spec"]["selector"].as_object().unwrap();
        if !case.chart_services {
            assert_eq!(selector.len(), 1, "{ctx}: the selector names one pod");
        }
        assert_eq!(selector["statefulset.kubernetes.io/pod-name"], pod_name);
        assert_eq!(
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            pod_name
        );
        let port0 = &svc["spec"]["ports"][0];
        if !case.chart_services {
            // kafka-expose's own: the protocol explicit, for server-side apply.
            assert_eq!(port0["protocol"], "TCP");
        }
        match expect.mode {
            "nodeport" => {
                assert_eq!(svc["spec"]["type"], "NodePort");
                assert_eq!(
                    port0["nodePort"].as_u64(),
                    Some((expect.port)(i, base) as u64),
                    "{ctx}"
                );
            }
            _ => {
                assert_eq!(svc["spec"]["type"], "LoadBalancer");
                assert_eq!(
                    port0["port"].as_u64(),
                    Some((expect.port)(i, base) as u64),
                    "{ctx}"
                );
            }
        }
        assert_eq!(
            target_port(svc, pod),
            bind_port,
            "{ctx}: the Service targets the bound port"
        );
        bound_ports.push(bind_port);
    }
    let bootstrap = services
        .iter()
        .find(|s| s["metadata"]["name"] == format!("{}-external-bootstrap", case.workload))
        .expect("a bootstrap Service");
    for (pod, bound) in pods.iter().zip(&bound_ports) {
        let labels = pod["metadata"]["labels"].as_object().unwrap();
        for (k, v) in bootstrap["spec"]["selector"].as_object().unwrap() {
            assert_eq!(
                labels.get(k),
                Some(v),
                "the bootstrap Service selects every broker"
            );
        }
        assert_eq!(
            target_port(bootstrap, pod),
            *bound,
            "the bootstrap Service reaches each broker's listener"
        );
    }
}

#[test]
fn every_fixture_broker_advertises_its_node_ip_and_its_node_port() {
    let expect = Expect {
        mode: "nodeport",
        host: node_ip,
        port: node_port_scheme,
    };
    for case in &CASES {
        check_case(case, &[("expose", "nodeport")], &expect);
    }
}

#[test]
fn every_configurable_fixture_advertises_a_templated_name_behind_its_loadbalancer() {
    let expect = Expect {
        mode: "loadbalancer",
        host: |i| format!("kafka-{i}.example.com"),
        port: |_, _| 9094,
    };
    for case in CASES.iter().filter(|c| !c.adopted) {
        check_case(
            case,
            &[
                ("expose", "loadbalancer"),
                ("advertised-host", "template:kafka-{ordinal}.example.com"),
            ],
            &expect,
        );
    }
}

#[test]
fn every_configurable_fixture_advertises_static_hosts_on_node_ports() {
    let expect = Expect {
        mode: "nodeport",
        host: |i| format!("broker-{i}.kafka.example.net"),
        port: node_port_scheme,
    };
    for case in CASES.iter().filter(|c| !c.adopted) {
        check_case(
            case,
            &[
                ("expose", "nodeport"),
                (
                    "advertised-host",
                    "static:broker-0.kafka.example.net,broker-1.kafka.example.net,broker-2.kafka.example.net",
                ),
            ],
            &expect,
        );
    }
}

/// `node:`: each broker advertises the address its node has (here an ExternalDNS name), which
/// the binding puts on the pod; the gate holds the broker until it is there.
#[test]
fn every_configurable_fixture_advertises_its_nodes_external_address() {
    let expect = Expect {
        mode: "nodeport",
        host: |i| format!("node-{i}.public.example.net"),
        port: node_port_scheme,
    };
    for case in CASES.iter().filter(|c| !c.adopted) {
        check_case(
            case,
            &[
                ("expose", "nodeport"),
                ("advertised-host", "node:ExternalDNS,ExternalIP"),
            ],
            &expect,
        );
        let out = run(
            case,
            &[
                ("expose", "nodeport"),
                ("advertised-host", "node:ExternalIP"),
            ],
        )
        .unwrap();
        for pod in owned_pods(&out, case.workload) {
            let inits = pod["spec"]["initContainers"].as_array().unwrap();
            assert_eq!(
                inits[0]["name"], "kafka-expose-gate",
                "{}: the gate runs first",
                case.fixture
            );
            assert_eq!(
                inits[0]["volumeMounts"][0]["mountPath"], "/etc/kafka-expose",
                "{}",
                case.fixture
            );
            assert!(
                pod["spec"]["serviceAccountName"]
                    == original_pods(case)[0]["spec"]["serviceAccountName"],
                "{}: no service account of kafka-expose's: broker pods need no permission",
                case.fixture
            );
        }
    }
}

/// `node:` needs a node: a LoadBalancer has an address of its own; an unknown type is named.
#[test]
fn node_addresses_are_validated_naming_the_allowed_types() {
    let case = &CASES[0];
    let e = refusal(
        case,
        &[("expose", "nodeport"), ("advertised-host", "node:PublicIP")],
    );
    assert!(
        e.contains(
            "\"PublicIP\" is not one of ExternalDNS, ExternalIP, InternalDNS, InternalIP, Hostname"
        ),
        "{e}"
    );
    let e = refusal(
        case,
        &[
            ("expose", "loadbalancer"),
            ("advertised-host", "node:ExternalIP"),
        ],
    );
    assert!(
        e.contains("a LoadBalancer has an address of its own"),
        "{e}"
    );
}

fn refusal(case: &Case, set: &[(&str, &str)]) -> String {
    kafka_expose::engine::error_chain(&run(case, set).unwrap_err())
}

#[test]
fn adopted_charts_refuse_loadbalancer_with_a_reason() {
    for case in CASES.iter().filter(|c| c.adopted) {
        let err = refusal(case, &[("expose", "loadbalancer")]);
        assert!(err.contains("loadbalancer"), "{err}");
        assert!(
            err.contains(&format!("StatefulSet {}", case.workload)),
            "{err}"
        );
    }
    let cp = &CASES[5];
    let err = refusal(cp, &[("expose", "loadbalancer")]);
    assert!(
        err.contains("kafka-expose.io/expose=\"loadbalancer\""),
        "{err}"
    );
    assert!(err.contains("only expose=nodeport routes to"), "{err}");
    let err = refusal(
        cp,
        &[
            ("expose", "nodeport"),
            ("advertised-host", "template:k-{ordinal}.x"),
        ],
    );
    assert!(err.contains("the chart advertises its own host"), "{err}");
}

#[test]
fn bitnami_split_exposes_the_brokers_and_only_warns_about_the_controllers() {
    let out = run(&CASES[4], &[("expose", "nodeport")]).unwrap();
    let controller = out
        .workloads
        .iter()
        .find(|w| w.name == "my-kafka-controller")
        .unwrap();
    assert!(
        controller.outcome.contains("KRaft controllers only"),
        "{}",
        controller.outcome
    );
    assert!(
        controller
            .warnings
            .iter()
            .any(|w| w.contains("controllers get no external listener"))
    );
    assert!(owned_pods(&out, "my-kafka-controller").is_empty());
    assert!(services_of(&out, "my-kafka-controller").is_empty());
    let original = support::fixture(CASES[4].fixture)
        .into_iter()
        .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "my-kafka-controller")
        .unwrap();
    let printed = out
        .objects
        .iter()
        .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "my-kafka-controller")
        .unwrap();
    let mut expected = original.clone();
    expected["metadata"]["annotations"] = serde_json::json!({"kafka-expose.io/expose": "nodeport"});
    assert_eq!(
        printed, &expected,
        "the controller StatefulSet is left as it was, but for --set"
    );
    assert_eq!(owned_pods(&out, "my-kafka-broker").len(), 3);
}

#[test]
fn the_zookeeper_statefulset_of_a_release_is_reported_and_left_alone() {
    let out = run(&CASES[5], &[("expose", "nodeport")]).unwrap();
    let zk = out
        .workloads
        .iter()
        .find(|w| w.name == "my-cp-cp-zookeeper")
        .unwrap();
    assert!(
        zk.outcome.contains("no Kafka broker container"),
        "{}",
        zk.outcome
    );
    assert!(owned_pods(&out, "my-cp-cp-zookeeper").is_empty());
}

#[test]
fn every_fixture_pod_mutation_applied_to_its_own_output_adds_nothing() {
    let settings = Settings::default();
    let no_lb = |_: &str| None;
    let ctx = PodContext {
        settings: &settings,
        namespace: Some("kafka"),
        lb_address: &no_lb,
        route: &|_| Some("accepted".into()),
    };
    for case in &CASES {
        let mut sets = vec![vec![("expose", "nodeport")]];
        if !case.adopted {
            sets.push(vec![
                ("expose", "nodeport"),
                ("advertised-host", "template:{pod}.{namespace}.example.com"),
            ]);
            sets.push(vec![("expose", "hostport")]);
        }
        for set in sets {
            let out = run(case, &set).unwrap();
            for pod in owned_pods(&out, case.workload) {
                let again = mutate_pod(pod, &ctx).unwrap();
                assert!(
                    again.patch.is_empty(),
                    "{}: {:?}",
                    case.fixture,
                    again.patch
                );
            }
            let wl = out
                .objects
                .iter()
                .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == case.workload)
                .unwrap();
            let again = mutate_workload(wl, WorkloadKind::StatefulSet, &settings).unwrap();
            assert!(
                again.patch.is_empty(),
                "{}: {:?}",
                case.fixture,
                again.patch
            );
        }
    }
}

#[test]
fn every_fixture_passes_its_other_objects_through_unchanged() {
    for case in &CASES {
        let docs = support::fixture(case.fixture);
        let out = run(case, &[("expose", "nodeport")]).unwrap();
        for d in docs
            .iter()
            .filter(|d| d["kind"] != "StatefulSet" && d["kind"] != "Deployment")
        {
            assert!(
                out.objects.contains(d),
                "{}: {} passes through",
                case.fixture,
                d["kind"]
            );
        }
    }
}

/// A chart kafka-expose cannot adapt: its workload is left exactly as the chart made it (so its
/// brokers' effective configuration is the chart's), no Service is planned for it, and the
/// user reads why in `--explain` and in the warning of any pod that reaches the webhook.
fn assert_left_as_the_chart_made_it(fixture: &str, reason: &str) {
    assert_workload_left_as_the_chart_made_it(support::fixture(fixture), "kafka", reason);
}

fn assert_workload_left_as_the_chart_made_it(docs: Vec<Value>, workload: &str, reason: &str) {
    let opts = Options {
        set: vec![("expose".into(), "nodeport".into())],
        ..Options::default()
    };
    let out = offline::run(docs.clone(), &opts).unwrap();
    let report = offline::explain(&out);
    assert!(
        report.contains(&format!(
            "StatefulSet kafka/{workload}: unsupported, nothing created"
        )) || report.contains(&format!(
            "StatefulSet {workload}: unsupported, nothing created"
        )),
        "{report}"
    );
    assert!(report.contains(reason), "{report}");
    assert!(services_of(&out, workload).is_empty());
    let original = docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
    let sts = objects_of(&out, "StatefulSet")[0];
    assert_eq!(sts["spec"]["template"], original["spec"]["template"]);
    let w = Workload::from_value(WorkloadKind::StatefulSet, original).unwrap();
    let mut pod = controller_pods(&w, original).remove(0);
    pod["metadata"]["annotations"] = serde_json::json!({"kafka-expose.io/expose": "nodeport"});
    let settings = Settings::default();
    let no_lb = |_: &str| None;
    let ctx = PodContext {
        settings: &settings,
        namespace: Some("kafka"),
        lb_address: &no_lb,
        route: &|_| Some("accepted".into()),
    };
    let d = mutate_pod(&pod, &ctx).unwrap();
    assert!(d.patch.is_empty(), "{:?}", d.patch);
    assert!(d.warnings[0].contains(reason), "{:?}", d.warnings);
}

/// The CloudPirates fixture with its broker container changed by `edit`.
fn cloudpirates_with(edit: impl Fn(&mut Value)) -> Vec<Value> {
    let mut docs = support::fixture("cloudpirates-kafka-0.1.4.yaml");
    for d in docs.iter_mut().filter(|d| d["kind"] == "StatefulSet") {
        edit(&mut d["spec"]["template"]["spec"]["containers"][0]);
    }
    docs
}

/// The charts on the official apache/kafka image (CloudPirates 0.1.4): the broker's own script
/// writes the whole file, advertised.listeners included, and runs kafka-server-start.sh on it.
/// The launch adapter stands in for that script (the oracle over every mode is `CASES`); what a
/// person reads names the adapter, the script it stands in for, and the launch with its file.
#[test]
fn a_chart_whose_script_writes_the_file_and_starts_the_broker_gets_the_launch_adapter() {
    let out = run(&CASES[10], &[("expose", "nodeport")]).unwrap();
    let report = offline::explain(&out);
    for want in [
        "container kafka: launch adapter",
        "exec /opt/kafka/bin/kafka-server-start.sh \"$RUNTIME_CONFIG\"",
        "starts the broker with the image's /opt/kafka/bin/kafka-server-start.sh",
    ] {
        assert!(report.contains(want), "{want} not in:\n{report}");
    }
    for pod in owned_pods(&out, "my-kafka") {
        let inits: Vec<&str> = pod["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            inits,
            ["kafka-expose-launch-install", "kafka-expose-launch-save"]
        );
        let save = &pod["spec"]["initContainers"][1];
        assert_eq!(
            save["image"], pod["spec"]["containers"][0]["image"],
            "the image's own script is saved from the broker's image"
        );
        let shadow = pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/opt/kafka/bin/kafka-server-start.sh")
            .expect("the launcher stands over the image's script");
        assert_eq!(shadow["subPath"], "kafka-expose-launch");
    }
}

#[test]
fn a_script_that_never_starts_kafka_server_start_is_refused_with_the_reason() {
    let docs = cloudpirates_with(|c| {
        let script = c["args"][0].as_str().unwrap().replace(
            "exec /opt/kafka/bin/kafka-server-start.sh",
            "exec /opt/kafka/bin/my-own-launcher",
        );
        c["args"][0] = Value::from(script);
    });
    assert_workload_left_as_the_chart_made_it(
        docs,
        "my-kafka",
        "the container's startup script sets advertised.listeners itself, so an added listener would be overwritten",
    );
}

#[test]
fn an_image_of_an_unknown_family_is_refused_naming_the_image_and_the_script() {
    let docs = cloudpirates_with(|c| {
        c["image"] = Value::from("registry.example/streaming/broker:4.3.1");
    });
    assert_workload_left_as_the_chart_made_it(
        docs,
        "my-kafka",
        "kafka-expose would stand in for /opt/kafka/bin/kafka-server-start.sh at that launch, but image registry.example/streaming/broker:4.3.1 is not of a family whose start script it knows",
    );
}

/// A start script the image does not use: the chart's script runs another path than the family's.
#[test]
fn a_launch_of_another_path_than_the_images_script_is_refused() {
    let docs = cloudpirates_with(|c| {
        let script = c["args"][0].as_str().unwrap().replace(
            "exec /opt/kafka/bin/kafka-server-start.sh",
            "exec /usr/local/kafka/bin/kafka-server-start.sh",
        );
        c["args"][0] = Value::from(script);
    });
    assert_workload_left_as_the_chart_made_it(
        docs,
        "my-kafka",
        "which runs /usr/local/kafka/bin/kafka-server-start.sh, but image docker.io/apache/kafka:4.3.1",
    );
}

#[test]
fn a_command_that_overrides_listeners_is_left_as_the_chart_made_it_with_the_reason() {
    // kafka-server-start.sh --override wins over the env and the file: an added listener would
    // be lost, so nothing is added, and the user is told why and what to do.
    assert_left_as_the_chart_made_it(
        "kubernetes-contrib-kafka-override.yaml",
        "kafka-server-start.sh --override",
    );
}

/// apache/kafka started straight on a `server.properties` mounted read-only from a ConfigMap: no
/// adapter can edit the file before the start, so the launch adapter edits a copy at the start.
/// The broker runs with the listener; the ConfigMap is passed through unchanged.
#[test]
fn a_server_properties_mounted_from_a_config_map_is_edited_at_launch_in_a_copy() {
    let docs = support::fixture("configmap-server-properties.yaml");
    let opts = Options {
        set: vec![("expose".into(), "nodeport".into())],
        ..Options::default()
    };
    let out = offline::run(docs.clone(), &opts).unwrap();
    let report = offline::explain(&out);
    assert!(report.contains("launch adapter"), "{report}");
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert!(
        out.objects.contains(cm),
        "the ConfigMap passes through unchanged"
    );
    for (i, pod) in owned_pods(&out, "kafka").into_iter().enumerate() {
        let i = i as u32;
        let (props, kept) = support::launched_config(&docs, pod, "kafka", i);
        assert_eq!(kept, None);
        let advertised = listeners(props.get("advertised.listeners"));
        assert!(
            advertised.contains(&("EXTERNAL".into(), node_ip(i), (32400 + i).to_string())),
            "broker {i}: {props:?}"
        );
    }
}

#[test]
fn an_external_listener_that_speaks_tls_is_warned_about_host_names() {
    let out = run(&CASES[7], &[("expose", "nodeport")]).unwrap();
    let report = offline::explain(&out);
    assert!(
        report.contains("set up for TLS")
            && report.contains("ssl.endpoint.identification.algorithm="),
        "{report}"
    );
    let plain = run(&CASES[3], &[("expose", "nodeport")]).unwrap();
    assert!(!offline::explain(&plain).contains("TLS"));
    let explicit = run(
        &CASES[0],
        &[("expose", "nodeport"), ("security-protocol", "SSL")],
    )
    .unwrap();
    let report = offline::explain(&explicit);
    assert!(
        report.contains("the external listener uses SSL")
            && report.contains("their nodes' IP addresses"),
        "{report}"
    );
}

/// Bitnami's chart up to 23.x with `externalAccess`: the env binds `EXTERNAL://:9094` and the
/// chart's `/scripts/setup.sh` (a ConfigMap the webhook does not read) advertises it; the chart
/// makes `my-kafka-<i>-external` NodePort Services. Built from the 23.0.7 fixture with the
/// changes `externalAccess.enabled=true` makes to the StatefulSet and its Services.
fn bitnami_23_external_access() -> Vec<Value> {
    let mut docs = support::fixture("bitnami-23.0.7.yaml");
    let sts = docs
        .iter_mut()
        .find(|d| d["kind"] == "StatefulSet")
        .expect("a StatefulSet");
    sts["spec"]["replicas"] = 3.into();
    let kafka = &mut sts["spec"]["template"]["spec"]["containers"][0];
    for e in kafka["env"].as_array_mut().unwrap() {
        let append = match e["name"].as_str() {
            Some("KAFKA_CFG_LISTENERS") => ",EXTERNAL://:9094",
            Some("KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP") => ",EXTERNAL:PLAINTEXT",
            _ => continue,
        };
        let v = format!("{}{append}", e["value"].as_str().unwrap());
        e["value"] = v.into();
    }
    kafka["ports"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "kafka-external", "containerPort": 9094}));
    for i in 0..3 {
        docs.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("my-kafka-{i}-external"), "namespace": "kafka",
                         "labels": {"app.kubernetes.io/managed-by": "Helm"}},
            "spec": {"type": "NodePort",
                     "selector": {"statefulset.kubernetes.io/pod-name": format!("my-kafka-{i}")},
                     "ports": [{"name": "tcp-kafka", "port": 9094, "protocol": "TCP",
                                "targetPort": "kafka-external", "nodePort": 31190 + i}]}
        }));
    }
    docs
}

#[test]
fn bitnami_23_external_access_is_adopted_from_the_env_without_a_second_listener() {
    let docs = bitnami_23_external_access();
    let opts = |set: &[(&str, &str)]| Options {
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        namespace: None,
        settings: Settings::default(),
    };
    let out = offline::run(
        docs.clone(),
        &opts(&[("expose", "nodeport"), ("port-base", "31190")]),
    )
    .expect("mutates");
    let report = &out.workloads[0];
    let adapter = report.adapter.as_deref().unwrap_or_default();
    assert!(adapter.contains("adopt adapter"), "{adapter}");
    assert!(adapter.contains("/scripts/setup.sh"), "{adapter}");
    // No second listener: the broker's listener variables are the chart's.
    let before = &docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["env"];
    let pods = owned_pods(&out, "my-kafka");
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        for var in ["KAFKA_CFG_LISTENERS", "KAFKA_CFG_ADVERTISED_LISTENERS"] {
            let value = |env: &Value| {
                env.as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"] == var)
                    .map(|e| e["value"].clone())
            };
            assert_eq!(
                value(&pod["spec"]["containers"][0]["env"]),
                value(before),
                "{var}"
            );
        }
    }
    // Only the bootstrap is kafka-expose's; it targets a port every broker declares.
    let mine = services_of(&out, "my-kafka");
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert!(
        mine[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .ends_with("bootstrap")
    );
    for pod in &pods {
        target_port(mine[0], pod);
    }

    // Without port-base the chart's ports are not known: a note says so, and the chart's
    // Services are reported, never twinned.
    let out = offline::run(docs, &opts(&[("expose", "nodeport")])).expect("mutates");
    let warnings = out.workloads[0].warnings.join("\n");
    assert!(
        warnings.contains("set kafka-expose.io/port-base"),
        "{warnings}"
    );
    assert!(warnings.contains("does not take it over"), "{warnings}");
    let names: Vec<&Value> = services_of(&out, "my-kafka")
        .iter()
        .map(|s| &s["metadata"]["name"])
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.as_str().unwrap().ends_with("-external")),
        "{names:?}"
    );
}

#[test]
fn a_listener_bound_in_the_env_but_advertised_nowhere_is_refused_not_doubled() {
    let mut docs = bitnami_23_external_access();
    let sts = docs
        .iter_mut()
        .find(|d| d["kind"] == "StatefulSet")
        .unwrap();
    sts["spec"]["template"]["spec"]["containers"][0]["command"] = serde_json::json!([
        "/opt/bitnami/scripts/kafka/entrypoint.sh",
        "/opt/bitnami/scripts/kafka/run.sh"
    ]);
    let opts = Options {
        set: vec![("expose".into(), "nodeport".into())],
        namespace: None,
        settings: Settings::default(),
    };
    let out = offline::run(docs, &opts).expect("reports");
    let report = &out.workloads[0];
    assert!(report.outcome.contains("unsupported"), "{}", report.outcome);
    let warnings = report.warnings.join("\n");
    assert!(warnings.contains("advertises it nowhere"), "{warnings}");
    assert!(services_of(&out, "my-kafka").is_empty());
}

/// Run-time adoption. Bitnami 26's own external access adds its listener at start (`kafka-init`
/// appends it), so the manifest shows none. With detection forced off (`adapter: properties`),
/// kafka-expose's step finds the chart's listener in the final file: it keeps the file as the
/// chart made it, exits 0 (the oracle's patcher run asserts that), and says why with the fix in
/// its termination message, which the reconciler carries to the workload's status.
#[test]
fn a_listener_the_chart_adds_at_start_is_kept_at_run_time_and_the_step_says_so() {
    let case = CASES
        .iter()
        .find(|c| c.fixture == "bitnami-26.11.4-externalaccess.yaml")
        .unwrap();
    let out = run(case, &[("expose", "nodeport"), ("adapter", "properties")])
        .expect("forced, the properties adapter is taken");
    let docs = support::fixture(case.fixture);
    let pods = owned_pods(&out, case.workload);
    assert_eq!(pods.len(), 3);
    for (i, pod) in pods.iter().enumerate() {
        let (props, message) = support::bitnami_file(&docs, pod, i as u32);
        let listeners = &props["listeners"];
        assert_eq!(
            listeners.matches("EXTERNAL://").count(),
            1,
            "the chart's listener, not a second: {listeners}"
        );
        assert!(listeners.contains("EXTERNAL://:9095"), "{listeners}");
        let advertised = &props["advertised.listeners"];
        assert_eq!(advertised.matches("EXTERNAL://").count(), 1, "{advertised}");
        assert!(
            advertised.contains(&format!(":{}", 31190 + i)),
            "the chart's own NodePort: {advertised}"
        );
        let message = message.expect("a termination message");
        assert!(
            message.starts_with(kafka_expose::names::KEPT_MARK)
                && message.contains("listener EXTERNAL is already in it (EXTERNAL://:9095)")
                && message.contains("kafka-expose.io/adapter=adopt"),
            "{message}"
        );
    }
}

/// `external-tls`: on every fixture whose listener kafka-expose adds, the external listener the
/// broker would run with is SSL (or SASL_SSL where the client listener has SASL) on the PEM key
/// store the gate writes, and every other setting is the chart's, unchanged. The gate holds each
/// broker on its own Secret; adopted listeners and Bitnami's `KAFKA_CFG_*` env are refused with
/// the reason.
#[test]
fn every_fixture_gets_its_own_pem_identity_on_the_external_listener_and_nothing_else_changes() {
    let set = [
        ("expose", "nodeport"),
        ("external-tls", "secret:{pod}-external-tls"),
    ];
    let mut exposed = 0;
    for case in &CASES {
        if case.adopted || case.image == Image::BitnamiEnv {
            let why = refusal(case, &set);
            let want = if case.adopted { "adopted" } else { "Bitnami" };
            assert!(
                why.contains(want) && why.contains("external-tls"),
                "{}: {why}",
                case.fixture
            );
            continue;
        }
        let out = run_ok(case, &set);
        let explained = kafka_expose::offline::report::explain(&out);
        let docs = support::fixture(case.fixture);
        let originals = original_pods(case);
        let pods = owned_pods(&out, case.workload);
        assert_eq!(pods.len(), originals.len(), "{}", case.fixture);
        for (i, pod) in pods.iter().enumerate() {
            let i = i as u32;
            let name = pod["metadata"]["name"].as_str().unwrap();
            let ctx = format!("{} broker {i}", case.fixture);
            let gate = &pod["spec"]["initContainers"][0];
            assert_eq!(
                gate["name"], "kafka-expose-gate",
                "{ctx}: the gate comes first"
            );
            let args: Vec<&str> = gate["args"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            assert!(
                args.windows(2)
                    .any(|w| w == ["--host", "$(KAFKA_EXPOSE_EXTERNAL_HOST)"]),
                "{ctx}: {args:?}"
            );
            assert!(
                args.windows(2)
                    .any(|w| w == ["--tls-dir", "/kafka-expose-tls"]),
                "{ctx}: {args:?}"
            );
            let secret = pod["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "kafka-expose-tls-secret")
                .unwrap_or_else(|| panic!("{ctx}: the Secret volume"));
            assert_eq!(
                secret["secret"]["secretName"],
                format!("{name}-external-tls"),
                "{ctx}"
            );
            assert_eq!(
                secret["secret"]["optional"], true,
                "{ctx}: the pod starts before the Secret exists; the gate waits"
            );

            assert!(
                explained.contains(&format!(
                    "certificate: Secret {name}-external-tls (kubernetes.io/tls, made by you), whose certificate must name its node's IP (an IP SAN)"
                )),
                "{ctx}: --explain shows the certificate plan: {explained}"
            );
            let before =
                effective_config(&docs, &originals[i as usize], case.container, i, case.image);
            let after = effective_config(&docs, pod, case.container, i, case.image);
            let ext = case.listener.to_ascii_lowercase();
            let scoped = format!("listener.name.{ext}.");
            let want = match client_protocol(&before, case.listener).as_str() {
                "SASL_PLAINTEXT" | "SASL_SSL" => "SASL_SSL",
                _ => "SSL",
            };
            assert_eq!(
                protocol_map(&after)
                    .get(&case.listener.to_ascii_uppercase())
                    .map(String::as_str),
                Some(want),
                "{ctx}"
            );
            for (k, v) in [
                ("ssl.keystore.type", "PEM"),
                ("ssl.keystore.location", "/kafka-expose-tls/keystore.pem"),
                ("ssl.client.auth", "none"),
            ] {
                // The launch oracle runs the broker under a scratch root, so the path ends in it.
                let got = after
                    .get(&format!("{scoped}{k}"))
                    .map(String::as_str)
                    .unwrap_or_default();
                assert!(
                    got == v || (k.ends_with("location") && got.ends_with(v)),
                    "{ctx}: {scoped}{k}={got:?}, want {v}"
                );
            }
            for k in after
                .keys()
                .filter(|k| k.starts_with(&format!("{scoped}ssl.")))
            {
                assert!(
                    [
                        "ssl.keystore.type",
                        "ssl.keystore.location",
                        "ssl.client.auth"
                    ]
                    .contains(&&k[scoped.len()..]),
                    "{ctx}: {k}: the client listener's own TLS is not copied to the external one"
                );
            }
            exposed += 1;
            for blocked in ["ssl.keystore.password", "ssl.key.password"] {
                assert!(
                    !after.contains_key(blocked),
                    "{ctx}: a broker-wide {blocked} would fail the PEM store"
                );
            }
            for (k, v) in &before {
                if [
                    "listeners",
                    "advertised.listeners",
                    "listener.security.protocol.map",
                ]
                .contains(&k.as_str())
                {
                    continue;
                }
                assert_eq!(after.get(k), Some(v), "{ctx}: {k} is the chart's");
            }
            // The apache image turns every KAFKA_* variable into a property, kafka-expose's own
            // KAFKA_EXPOSE_* among them (expose.external.host…), which Kafka ignores.
            for k in after
                .keys()
                .filter(|k| !before.contains_key(*k) && !k.starts_with("expose."))
            {
                assert!(
                    k.starts_with(&scoped)
                        || [
                            "listeners",
                            "advertised.listeners",
                            "listener.security.protocol.map"
                        ]
                        .contains(&k.as_str()),
                    "{ctx}: only the external listener's settings are new, not {k}"
                );
            }
        }
    }
    assert_eq!(
        exposed, 18,
        "every broker of the six fixtures whose listener kafka-expose adds"
    );
}
