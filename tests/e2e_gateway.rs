//! `expose=gateway` on the real control plane, under Gateway API's real CRDs (tests/data/crds):
//! a ClusterIP Service and a TLSRoute per broker, one for the bootstrap name, each broker held
//! until the Gateway accepts its route and told the Gateway's reason meanwhile, and a certificate
//! per broker naming its host and the bootstrap name.
//!
//! The test plays the Gateway controller's part: it writes each route's `status.parents`, as a
//! controller would. It runs twice in one test, one after the other, since both CRD sets define
//! the same `tlsroutes.gateway.networking.k8s.io`: under v1.5.0's standard channel (TLSRoute
//! `v1`), then under v1.4.1's experimental TLSRoute alone (`v1alpha2` and `v1alpha3`, no `v1`).
//! The suite runs alone in its binary: it replaces a cluster-wide CRD.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::cluster::{ca_secret, client, eventually, fake_kubelet_on, wait_signed, wait_status};
use support::serve::{apply_fixture, apply_value, grant_signing, installed_webhook, pods_of};

const GATEWAY_NS: &str = "e2e-gw-infra";
const TLSROUTES_CRD: &str = "tlsroutes.gateway.networking.k8s.io";

fn crds(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/crds/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    kafka_expose::offline::read_documents(&text)
        .unwrap()
        .into_iter()
        .map(|mut d| {
            support::crd_for_1_20(&mut d);
            d
        })
        .collect()
}

fn routes_api(c: &Client, ns: &str, version: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", version, "TLSRoute"),
        "tlsroutes",
    );
    Api::namespaced_with(c.clone(), ns, &ar)
}

/// Installs the Gateway API CRDs of `file` (their TLSRoute replacing any other), waits until
/// TLSRoute `version` is served, and makes the GatewayClass and Gateway the routes attach to.
async fn install(c: &Client, file: &str, version: &str, first: bool) {
    let crd_api: Api<CustomResourceDefinition> = Api::all(c.clone());
    {
        // Another channel's TLSRoute (or an earlier run's): the one CRD name, so it goes first.
        let _ = crd_api
            .delete(TLSROUTES_CRD, &kube::api::DeleteParams::default())
            .await;
        eventually(
            Duration::from_secs(60),
            "the earlier TLSRoute CRD gone",
            || async {
                match crd_api.get_opt(TLSROUTES_CRD).await {
                    Ok(None) => Ok(()),
                    other => Err(format!("{:?}", other.map(|o| o.map(|c| c.name_any())))),
                }
            },
        )
        .await;
    }
    for d in crds(file) {
        if first
            || d["metadata"]["name"] == TLSROUTES_CRD
            || !matches!(d["kind"].as_str(), Some("CustomResourceDefinition"))
        {
            apply_value(c, &d).await;
        }
    }
    let api = routes_api(c, "default", version);
    support::serve::wait_served(&api, &format!("TLSRoute {version}")).await;
    support::cluster::namespace(c, GATEWAY_NS).await;
    apply_value(
        c,
        &json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": "kx-e2e"},
                "spec": {"controllerName": "example.com/kx-e2e-gateway"}}),
    )
    .await;
    apply_value(
        c,
        &json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "public", "namespace": GATEWAY_NS},
                "spec": {"gatewayClassName": "kx-e2e", "listeners": [{
                    "name": "kafka", "port": 443, "protocol": "TLS",
                    "hostname": "*.gw.example.com",
                    "tls": {"mode": "Passthrough"},
                    "allowedRoutes": {"namespaces": {"from": "All"},
                                      "kinds": [{"kind": "TLSRoute"}]}}]}}),
    )
    .await;
}

/// Writes the Gateway controller's word on route `name`: `Accepted` as given.
async fn gateway_says(
    api: &Api<DynamicObject>,
    name: &str,
    accepted: bool,
    reason: &str,
    message: &str,
) {
    let now = "2026-01-01T00:00:00Z";
    let status = json!({"status": {"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                      "namespace": GATEWAY_NS, "name": "public", "sectionName": "kafka"},
        "controllerName": "example.com/kx-e2e-gateway",
        "conditions": [
            {"type": "Accepted", "status": if accepted { "True" } else { "False" },
             "reason": reason, "message": message, "lastTransitionTime": now},
            // Not empty: a 1.20 API server reads an empty string in a patch as null.
            {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs",
             "message": "all references resolved", "lastTransitionTime": now}]}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("the Gateway's word on {name}: {e}"));
}

/// Scales as `kubectl scale` does, through the scale subresource.
async fn scale(c: &Client, ns: &str, replicas: i32) {
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .patch_scale(
            "kafka",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

fn host(i: u32) -> String {
    format!("kafka-{i}.gw.example.com")
}

const BOOTSTRAP: &str = "kafka.gw.example.com";

/// The whole story under one CRD set, in namespace `ns`, routes served as `version`.
async fn behind_the_gateway(c: &Client, ns: &str, tag: &str, version: &str) {
    let wh = installed_webhook(c, tag, ns, &[]).await;
    let ca = ca_secret(c, ns).await;
    grant_signing(c, ns).await;
    let k = fake_kubelet_on(c.clone(), ns, &format!("{ns}-node"), |_| "10.1.0.20".into());
    let routes = routes_api(c, ns, version);
    // A route another owner holds, on broker 3's name: reported, never taken over.
    apply_value(
        c,
        &json!({"apiVersion": format!("gateway.networking.k8s.io/{version}"), "kind": "TLSRoute",
                "metadata": {"name": "kafka-3-external", "namespace": ns,
                             "labels": {"app.kubernetes.io/managed-by": "someone-else"}},
                "spec": {"hostnames": ["other.gw.example.com"],
                         "rules": [{"backendRefs": [{"name": "other", "port": 443}]}]}}),
    )
    .await;
    apply_fixture(
        c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "gateway",
                "kafka-expose.io/gateway": format!("{GATEWAY_NS}/public/kafka"),
                "kafka-expose.io/advertised-host": "template:kafka-{ordinal}.gw.example.com",
                "kafka-expose.io/bootstrap-host": BOOTSTRAP,
                "kafka-expose.io/external-tls": "ca:kafka-ca"}),
    )
    .await;

    // The routes, exactly: one per broker for its own name to its own Service, one for the
    // bootstrap name, all on the Gateway's listener, owned by the StatefulSet.
    let sts = Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get("kafka")
        .await
        .unwrap();
    let uid = sts.metadata.uid.clone().unwrap();
    let names = |n: u32| {
        let mut v: Vec<String> = (0..n).map(|i| format!("kafka-{i}-external")).collect();
        v.push("kafka-external-bootstrap".into());
        v.sort();
        v
    };
    let listed = eventually(Duration::from_secs(60), "four TLSRoutes", || async {
        let list = routes
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=kafka-expose"))
            .await
            .map_err(|e| e.to_string())?
            .items;
        let mut got: Vec<String> = list.iter().map(|r| r.name_any()).collect();
        got.sort();
        (got == names(3)).then_some(list).ok_or(format!("{got:?}"))
    })
    .await;
    for r in &listed {
        let name = r.name_any();
        let (hostname, ordinal_label) = match name.as_str() {
            "kafka-external-bootstrap" => (BOOTSTRAP.to_string(), None),
            n => {
                let i: u32 = n.split('-').nth(1).unwrap().parse().unwrap();
                (host(i), Some(i.to_string()))
            }
        };
        assert_eq!(
            r.data["spec"],
            json!({
                "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                "namespace": GATEWAY_NS, "name": "public", "sectionName": "kafka"}],
                "hostnames": [hostname],
                "rules": [{"backendRefs": [{"kind": "Service", "name": name, "port": 443,
                                            // The API server's default.
                                            "weight": 1}]}]
            }),
            "{name}"
        );
        let owner = &r.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", uid.as_str())
        );
        assert_eq!(
            r.labels().get("kafka-expose.io/ordinal").cloned(),
            ordinal_label,
            "{name}"
        );
    }
    let foreign = routes.get("kafka-3-external").await.unwrap();
    assert_eq!(
        foreign.data["spec"]["hostnames"],
        json!(["other.gw.example.com"])
    );

    // The backends: ClusterIP, each selecting its broker alone, on the Gateway's port.
    let svcs: Api<Service> = Api::namespaced(c.clone(), ns);
    for i in 0..3 {
        let s = svcs.get(&format!("kafka-{i}-external")).await.unwrap();
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(
            spec.selector.unwrap()["statefulset.kubernetes.io/pod-name"],
            format!("kafka-{i}")
        );
        assert_eq!(spec.ports.unwrap()[0].port, 443);
    }

    // Held: no broker pod while the Gateway has not accepted its route.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        pods_of(c, ns, "kafka").await.is_empty(),
        "no broker before its route is accepted"
    );

    // Refused, with the Gateway's own reason and message where the user looks.
    gateway_says(
        &routes,
        "kafka-0-external",
        false,
        "NotAllowedByListeners",
        "no listener allows routes from this namespace",
    )
    .await;
    let said = wait_status(c, ns, "kafka", Duration::from_secs(60), |s| {
        s.contains("NotAllowedByListeners")
    })
    .await;
    assert!(
        said.contains("TLSRoute kafka-0-external is not accepted by Gateway e2e-gw-infra/public: NotAllowedByListeners: no listener allows routes from this namespace"),
        "{said}"
    );
    assert!(pods_of(c, ns, "kafka").await.is_empty(), "still held");

    // Accepted: released, one after the other as the StatefulSet makes them.
    for i in 0..3 {
        gateway_says(
            &routes,
            &format!("kafka-{i}-external"),
            true,
            "Accepted",
            "route accepted",
        )
        .await;
    }
    gateway_says(
        &routes,
        "kafka-external-bootstrap",
        true,
        "Accepted",
        "route accepted",
    )
    .await;
    let pods = eventually(Duration::from_secs(120), "three brokers", || async {
        let pods = pods_of(c, ns, "kafka").await;
        (pods.len() == 3)
            .then_some(pods)
            .ok_or("not yet".to_string())
    })
    .await;
    for p in &pods {
        let i: u32 = p.name_any().rsplit('-').next().unwrap().parse().unwrap();
        let env = p.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
        let value = |n: &str| {
            env.iter()
                .find(|e| e.name == n)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(value("KAFKA_EXPOSE_EXTERNAL_HOST"), Some(host(i)));
        assert_eq!(value("KAFKA_EXPOSE_EXTERNAL_PORT").as_deref(), Some("443"));
        // Its own name, and the bootstrap name the Gateway may hand to any broker.
        wait_signed(c, ns, i, &[&host(i), BOOTSTRAP], &ca).await;
    }
    wait_status(c, ns, "kafka", Duration::from_secs(60), |s| {
        s.contains("kafka-3-external") || s.starts_with("ok")
    })
    .await;
    let bootstrap = eventually(Duration::from_secs(60), "the bootstrap address", || async {
        Api::<StatefulSet>::namespaced(c.clone(), ns)
            .get("kafka")
            .await
            .map_err(|e| e.to_string())?
            .annotations()
            .get("kafka-expose.io/bootstrap-servers")
            .cloned()
            .ok_or("not yet".to_string())
    })
    .await;
    assert_eq!(bootstrap, format!("{BOOTSTRAP}:443"));

    // Scaled up into the name another owner holds: reported, that route untouched.
    scale(c, ns, 4).await;
    let said = wait_status(c, ns, "kafka", Duration::from_secs(60), |s| {
        s.contains("TLSRoute kafka-3-external")
    })
    .await;
    assert!(
        said.contains("it exists, made by someone-else; kafka-expose does not take it over"),
        "{said}"
    );
    let foreign = routes.get("kafka-3-external").await.unwrap();
    assert_eq!(
        foreign.data["spec"]["hostnames"],
        json!(["other.gw.example.com"])
    );
    assert_eq!(
        foreign.labels()["app.kubernetes.io/managed-by"],
        "someone-else"
    );

    // Scaled down: the route of a broker that is gone goes.
    scale(c, ns, 2).await;
    eventually(Duration::from_secs(60), "broker 2's route gone", || async {
        let mut got: Vec<String> = routes
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=kafka-expose"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|r| r.name_any())
            .collect();
        got.sort();
        (got == names(2)).then_some(()).ok_or(format!("{got:?}"))
    })
    .await;

    // Exposure off: every route kafka-expose made goes; the other owner's stays.
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .patch(
            "kafka",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kafka-expose.io/expose": "off"}}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "the routes removed", || async {
        let got: Vec<String> = routes
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|r| r.name_any())
            .collect();
        (got == ["kafka-3-external"])
            .then_some(())
            .ok_or(format!("{got:?}"))
    })
    .await;
    k.abort();
    drop(wh);
}

#[tokio::test]
async fn brokers_behind_a_gateway_are_routed_by_name_and_held_until_the_gateway_accepts() {
    let c = client().await;
    install(&c, "gateway-api-v1.5.0-standard.yaml", "v1", true).await;
    behind_the_gateway(&c, "e2e-gw-v1", "gwv1", "v1").await;
    // A Gateway API install from before v1.5: the experimental TLSRoute alone, no v1.
    install(
        &c,
        "gateway-api-v1.4.x-experimental-tlsroute.yaml",
        "v1alpha3",
        false,
    )
    .await;
    assert!(
        routes_api(&c, "default", "v1")
            .list(&ListParams::default())
            .await
            .is_err(),
        "v1 is not served"
    );
    behind_the_gateway(&c, "e2e-gw-v1alpha3", "gwv1a3", "v1alpha3").await;
}

/// The haproxy binary Debian ships (`control-plane.sh tools` installs it).
fn haproxy() -> String {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("haproxy")
        .to_string()
}

/// A real SNI data plane, as a Gateway's TLS passthrough listener is: Debian's haproxy, configured
/// from the TLSRoutes kafka-expose plans (each route's hostname to its backend), in front of
/// three TLS brokers on loopback, each with its own certificate. `kafka-expose check` dials every
/// broker's name and the bootstrap name at the one address, with SNI and host-name verification,
/// and reaches each broker as itself. (On loopback: the real node's version, through kube-proxy
/// to the ClusterIP backends, with kcat, is `gateway_on_the_node` in tests/e2e_node.rs.)
#[tokio::test]
async fn an_sni_proxy_configured_from_the_routes_reaches_every_broker_by_its_name() {
    use support::kafka::{self, Behaviour};
    const DOMAIN: &str = "gw.example.invalid";
    let boot = format!("kafka.{DOMAIN}");
    // The routes as kafka-expose plans them for the apache chart.
    let out = kafka_expose::offline::run(
        support::fixture("apache-kafka-kraft.yaml"),
        &kafka_expose::offline::Options {
            set: [
                ("expose", "gateway".to_string()),
                ("gateway", "infra/public/kafka".into()),
                (
                    "advertised-host",
                    format!("template:kafka-{{ordinal}}.{DOMAIN}"),
                ),
                ("bootstrap-host", boot.clone()),
                ("external-tls", "ca:kafka-ca".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            namespace: None,
            settings: kafka_expose::config::Settings::default(),
        },
    )
    .unwrap();
    let routes: Vec<&Value> = out
        .objects
        .iter()
        .filter(|o| o["kind"] == "TLSRoute")
        .collect();
    assert_eq!(routes.len(), 4);

    // Three brokers, each with a certificate for its name and the bootstrap name.
    let dir = support::serve::scratch("gateway-sni");
    let adv = Arc::new(Mutex::new(Vec::new()));
    let (mut brokers, mut cas) = (Vec::new(), String::new());
    for i in 0..3 {
        let pair =
            kafka_expose::certs::generate(&[format!("kafka-{i}.{DOMAIN}"), boot.clone()]).unwrap();
        cas.push_str(&pair.ca_pem);
        let mut b = Behaviour::new(i, adv.clone());
        b.tls = Some(kafka::server_tls(&pair.cert_pem, &pair.key_pem));
        brokers.push(kafka::start(b).await);
    }
    *adv.lock().unwrap() = (0..3)
        .map(|i| (i, format!("kafka-{i}.{DOMAIN}"), 443))
        .collect();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, cas).unwrap();

    // The Gateway: one frontend, a backend per route, chosen by the ClientHello's SNI.
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listen.local_addr().unwrap().port();
    drop(listen);
    let mut cfg = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend gateway\n  bind 127.0.0.1:{port}\n  tcp-request inspect-delay 5s\n  \
         tcp-request content accept if {{ req_ssl_hello_type 1 }}\n"
    );
    let mut backends = String::new();
    for r in &routes {
        let name = r["metadata"]["name"].as_str().unwrap();
        let host = r["spec"]["hostnames"][0].as_str().unwrap();
        let service = r["spec"]["rules"][0]["backendRefs"][0]["name"]
            .as_str()
            .unwrap();
        cfg.push_str(&format!(
            "  use_backend {name} if {{ req_ssl_sni -i {host} }}\n"
        ));
        // The Service's endpoints: its broker, or every broker for the bootstrap.
        backends.push_str(&format!("backend {name}\n"));
        for (i, b) in brokers.iter().enumerate() {
            if service == "kafka-external-bootstrap" || service == format!("kafka-{i}-external") {
                backends.push_str(&format!("  server b{i} 127.0.0.1:{}\n", b.port));
            }
        }
    }
    cfg.push_str(&backends);
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, &cfg).unwrap();
    let mut proxy = std::process::Command::new(haproxy())
        .arg("-db")
        .arg("-f")
        .arg(&file)
        .spawn()
        .unwrap_or_else(|e| panic!("haproxy: {e}"));
    eventually(Duration::from_secs(10), "haproxy listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;

    // Awaited, not blocking: the brokers answer on this test's runtime.
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-expose"))
        .args(["check", "--bootstrap", &format!("{boot}:443")])
        .args(["--connect-to", &format!("127.0.0.1:{port}")])
        .args([
            "--security-protocol",
            "SSL",
            "--ca-file",
            ca.to_str().unwrap(),
        ])
        .args(["-o", "json"])
        .output()
        .await
        .unwrap();
    let _ = proxy.kill();
    let _ = proxy.wait();
    let text = String::from_utf8_lossy(&run.stdout).to_string();
    assert_eq!(run.status.code(), Some(0), "{text}\n{cfg}");
    let report: Value = serde_json::from_str(&text).unwrap();
    let listed = report["targets"][0]["brokers"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{text}");
    for b in listed {
        assert_eq!(b["ok"], true, "{b}");
        assert_eq!(b["tls"]["verified"], true, "{b}");
        assert_eq!(b["tls"]["names_host"], true, "{b}");
    }
}
