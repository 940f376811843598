//! Certificate renewal by the running server, over real TLS, under steady admission load sent
//! through the real API server (`./tests/run.sh` starts it), with the webhook configuration's
//! `caBundle` updated in that API server.
//!
//! The certificates are short-lived here (a test-only validity of 30 s, renewed with 20 s left),
//! so that one run sees several renewals and CA roll-overs. A stand-in kubelet copies the Secret
//! into the files the server reads, as a Secret volume would.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kafka_expose::certs::{self, Validity};
use kube::api::{Api, PostParams};
use serde_json::json;
use std::path::PathBuf;
use support::cluster::{client, env, namespace};
use support::serve::{Extra, Webhook, scratch, tagged_namespace};

const TAG: &str = "renewal";
const NS: &str = "e2e-renewal";
const SYSTEM: &str = "e2e-renewal-system";
const SECRET: &str = "kafka-expose-tls";
const LOAD: Duration = Duration::from_secs(45);

/// Copies the Secret's keys into `dir` whenever they change, as the kubelet refreshes a Secret
/// volume (it does so atomically; so does this, by rename).
fn stand_in_kubelet(c: kube::Client, dir: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Secret> = Api::namespaced(c, SYSTEM);
        loop {
            if let Ok(s) = api.get(SECRET).await {
                for (k, v) in s.data.unwrap_or_default() {
                    let path = dir.join(&k);
                    if std::fs::read(&path).ok().as_deref() != Some(&v.0[..]) {
                        let tmp = dir.join(format!(".{k}.kubelet"));
                        std::fs::write(&tmp, &v.0).unwrap();
                        std::fs::rename(&tmp, &path).unwrap();
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

#[tokio::test]
async fn the_server_renews_its_certificate_and_rolls_its_ca_over_with_no_failed_admission() {
    let c = client().await;
    namespace(&c, SYSTEM).await;
    let dns = certs::dns_names("kafka-expose", SYSTEM);
    let initial = certs::generate_for(
        &dns,
        Validity {
            serving: Duration::from_secs(30),
        },
    )
    .unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET, "namespace": SYSTEM,
                     "labels": {"app.kubernetes.io/managed-by": "kafka-expose"}},
        "type": "kubernetes.io/tls",
        "data": {}
    }))
    .unwrap();
    let secret = Secret {
        data: Some(
            [
                ("ca.crt", &initial.ca_pem),
                ("tls.crt", &initial.cert_pem),
                ("tls.key", &initial.key_pem),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
            .collect(),
        ),
        ..secret
    };
    Api::<Secret>::namespaced(c.clone(), SYSTEM)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mwc = format!("kafka-expose-{TAG}");
    let dir = scratch(TAG);
    let args: Vec<String> = [
        "--service-namespace",
        SYSTEM,
        "--certs-secret",
        SECRET,
        "--certs-webhook",
        &mwc,
        "--certs-check-every",
        "1s",
        "--renew-before",
        "20s",
        "--cert-validity",
        "30s",
        "--ca-overlap",
        "6s",
        "--ca-propagation",
        "3s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let wh = Webhook::start_with(
        TAG,
        PathBuf::from(env()["KUBECONFIG"].clone()),
        dir.clone(),
        Some(NS),
        Extra {
            args,
            bundle: Some(initial.clone()),
            ..Extra::default()
        },
    );
    let kubelet = stand_in_kubelet(c.clone(), dir.clone());
    wh.register(&c, TAG).await;
    tagged_namespace(&c, NS, TAG).await;

    // Steady load: server-side dry runs of an exposed StatefulSet, which the API server sends to
    // the workload webhook over TLS, verified against the configuration's caBundle. An answer
    // without the webhook's mutation is a failed admission (the workload webhook fails open).
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(NS);
    sts["metadata"]["annotations"] = json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "31600", "kafka-expose.io/bootstrap-node-port": "31650"});
    let sts: StatefulSet = serde_json::from_value(sts).unwrap();
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (api, sts) = (Api::<StatefulSet>::namespaced(c.clone(), NS), sts.clone());
            let (ok, failed, failures) = (ok.clone(), failed.clone(), failures.clone());
            tokio::spawn(async move {
                let pp = PostParams {
                    dry_run: true,
                    ..PostParams::default()
                };
                while started.elapsed() < LOAD {
                    let answer = api.create(&pp, &sts).await;
                    let mutated = answer.as_ref().is_ok_and(|s| {
                        s.spec
                            .template
                            .metadata
                            .as_ref()
                            .and_then(|m| m.labels.as_ref())
                            .is_some_and(|l| l.contains_key("kafka-expose.io/exposed"))
                    });
                    if mutated {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let why = match answer {
                            Ok(_) => "answered unmutated".to_string(),
                            Err(e) => e.to_string(),
                        };
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{:?}: {why}", started.elapsed()));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    kubelet.abort();

    let log = wh.log();
    let reissued = log.matches("re-issued the webhook's certificate").count();
    let dropped = log.matches("the CA roll-over is over").count();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "{ok} admissions answered, {failed} failed, {reissued} renewals, {dropped} CA roll-overs finished"
    );
    assert!(
        reissued >= 2 && dropped >= 1,
        "renewals and roll-overs happened under the load ({reissued}, {dropped}):\n{log}"
    );
    assert!(ok > 100, "a steady load: {ok} answered");
    assert_eq!(
        failed,
        0,
        "no admission failed across the renewals: {:?}",
        failures.lock().unwrap()
    );

    // The server serves a certificate other than the first, which the configuration trusts.
    let stored = Api::<Secret>::namespaced(c.clone(), SYSTEM)
        .get(SECRET)
        .await
        .unwrap()
        .data
        .unwrap();
    let cert = String::from_utf8(stored["tls.crt"].0.clone()).unwrap();
    assert_ne!(cert, initial.cert_pem, "re-issued");
    let ca = String::from_utf8(stored["ca.crt"].0.clone()).unwrap();
    let cfg = Api::<MutatingWebhookConfiguration>::all(c.clone())
        .get(&mwc)
        .await
        .unwrap();
    let bundle = cfg.webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    // The CA that signed the served certificate is trusted (a renewal in flight at this moment
    // may have put the next CA beside it already).
    let signer = certs::split_pem(&ca).remove(0);
    assert!(
        String::from_utf8(bundle.0).unwrap().contains(&signer),
        "the caBundle trusts the Secret's current CA"
    );
    // The expiry gauge follows the certificate served.
    let metrics = wh.admin_get("/metrics");
    let expiry: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kafka_expose_certificate_expiry_timestamp_seconds "))
        .unwrap_or_else(|| panic!("the expiry gauge in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    let first_end = certs::inspect(&initial.cert_pem).unwrap()[0].not_after;
    assert!(expiry > first_end, "{expiry} after {first_end}");
}
