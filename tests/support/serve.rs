//! `kafka-expose serve` as a process registered with the real API server, and the install's
//! manifests applied as a user would: shared by the suites that need the webhook in the loop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kafka_expose::certs;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::cluster::{env, eventually, namespace};
use super::net::free_port;

pub const BIN: &str = env!("CARGO_BIN_EXE_kafka-expose");
/// Label the test webhook configurations select namespaces by.
pub const TAG: &str = "kafka-expose-e2e";

pub fn deploy_docs(file: &str) -> Vec<Value> {
    let path = format!("{}/deploy/manifests/{file}", env!("CARGO_MANIFEST_DIR"));
    kafka_expose::offline::read_documents(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub async fn apply_value(c: &Client, doc: &Value) {
    let api_version = doc["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, doc["kind"].as_str().unwrap());
    let ar = ApiResource::from_gvk(&gvk);
    let api: Api<DynamicObject> = match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => Api::namespaced_with(c.clone(), ns, &ar),
        None => Api::all_with(c.clone(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    // As `kubectl apply` does on the client side: create, or merge into what exists.
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(doc))
                .await
                .unwrap_or_else(|e| panic!("updating {} {}: {e}", doc["kind"], obj.name_any()));
        }
        Err(e) => panic!("applying {} {}: {e}", doc["kind"], obj.name_any()),
    }
}

/// The install's namespace, ServiceAccount and RBAC, and a kubeconfig with the ServiceAccount's
/// token, so that the server runs with exactly the install's permissions.
pub async fn install_rbac(c: &Client, dir: &std::path::Path) -> PathBuf {
    for f in ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"] {
        for d in deploy_docs(f) {
            apply_value(c, &d).await;
        }
    }
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "kafka-expose");
    let token = eventually(
        Duration::from_secs(60),
        "the ServiceAccount's token",
        || async {
            let list = secrets
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|s| {
                    s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                        && s.annotations()
                            .get("kubernetes.io/service-account.name")
                            .map(String::as_str)
                            == Some("kafka-expose")
                })
                .and_then(|s| s.data?.get("token").cloned())
                .map(|t| String::from_utf8(t.0).unwrap())
                .ok_or_else(|| "no token yet".to_string())
        },
    )
    .await;
    let server = env()["KAFKA_EXPOSE_E2E_SERVER"].clone();
    let path = dir.join("sa-kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: sa, namespace: kafka-expose}}\ncurrent-context: e2e\n"
        ),
    )
    .unwrap();
    path
}

/// `kafka-expose serve` on loopback.
pub struct Webhook {
    pub child: Option<Child>,
    /// The one namespace its reconciler watches; all when `None`.
    pub watch: Option<String>,
    pub port: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub ca_bundle: String,
    /// Environment set over the defaults below (POD_NAME, POD_NAMESPACE, ...).
    pub env: Vec<(String, String)>,
    /// Flags after the defaults.
    pub args: Vec<String>,
}

/// What [`Webhook::start_with`] adds to a default start.
#[derive(Default)]
pub struct Extra {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// The pair to serve; a new one by default.
    pub bundle: Option<certs::Bundle>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Webhook {
    /// Starts the server. Each test's reconciler watches only its own namespace where it has
    /// one, so that two instances never race to create the same Service: on 1.20 a losing
    /// create can hold its NodePort for minutes.
    pub fn start(tag: &str, kubeconfig: PathBuf, dir: PathBuf, watch: Option<&str>) -> Self {
        Self::start_with(tag, kubeconfig, dir, watch, Extra::default())
    }

    /// [`Webhook::start`], with more environment, more flags, and the pair to serve.
    pub fn start_with(
        tag: &str,
        kubeconfig: PathBuf,
        dir: PathBuf,
        watch: Option<&str>,
        extra: Extra,
    ) -> Self {
        let Extra { env, args, bundle } = extra;
        let bundle = bundle.unwrap_or_else(|| {
            certs::generate(&certs::dns_names("kafka-expose", "kafka-expose")).unwrap()
        });
        certs::write(&dir, &bundle).unwrap();
        let mut w = Self {
            child: None,
            watch: watch.map(str::to_string),
            port: free_port(),
            admin: free_port(),
            dir,
            kubeconfig,
            ca_bundle: bundle.ca_bundle(),
            env,
            args,
        };
        let _ = tag;
        w.spawn();
        w
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--log-format", "json", "--shutdown-grace", "1s"])
            .arg("--tls-cert")
            .arg(self.dir.join(certs::TLS_CERT))
            .arg("--tls-key")
            .arg(self.dir.join(certs::TLS_KEY))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin)])
            .args(
                self.watch
                    .iter()
                    .flat_map(|ns| ["--watch-namespace", ns.as_str()]),
            )
            // Watching every namespace, as the install does: with the install's leader Lease.
            .args(self.watch.is_none().then_some("--leader-elect"))
            .args(&self.args)
            .env("POD_NAMESPACE", "kafka-expose")
            .env("POD_NAME", format!("e2e-{}", self.port))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.ready() {
            assert!(
                Instant::now() < deadline,
                "the webhook did not become ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn ready(&self) -> bool {
        self.admin_get("/readyz").starts_with("HTTP/1.1 200")
    }

    /// The admin port's answer to `GET path`, status line and all; empty when unreachable.
    /// The value of counter `name` (with its `_total`) on the server's `/metrics`, 0 until it
    /// is there.
    pub fn counter(&self, name: &str) -> u64 {
        self.admin_get("/metrics")
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn admin_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.admin)) else {
            return String::new();
        };
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// Registers the install's webhook configuration, pointed at this server and limited to
    /// namespaces labelled `TAG=tag`.
    pub async fn register(&self, c: &Client, tag: &str) {
        self.register_with(c, tag, false).await;
    }

    /// [`Self::register`], with the cluster-scoped policy webhook when `policies` (each test's
    /// configuration would otherwise send every policy write to its own server).
    pub async fn register_with(&self, c: &Client, tag: &str, policies: bool) {
        let drop: &[&str] = if policies {
            &[]
        } else {
            &["policies.kafka-expose.io"]
        };
        self.register_without(c, tag, drop).await;
    }

    /// Registers the install's webhook configuration less the webhooks named in `drop`.
    pub async fn register_without(&self, c: &Client, tag: &str, drop: &[&str]) {
        self.register_named(c, tag, &format!("kafka-expose-{tag}"), drop)
            .await;
    }

    /// [`Self::register_without`], under configuration name `name`. The bindings webhook, which
    /// the server registers itself while it is used, is registered here up front as the server
    /// would (`registration::bindings_webhook`), unless dropped: each test then knows its pods'
    /// bindings reach its server, whenever it binds them.
    pub async fn register_named(&self, c: &Client, tag: &str, name: &str, drop: &[&str]) {
        let mut cfg = deploy_docs("webhook.yaml").remove(0);
        cfg["metadata"]["name"] = json!(name);
        let base: k8s_openapi::api::admissionregistration::v1::MutatingWebhook =
            serde_json::from_value(cfg["webhooks"][0].clone()).unwrap();
        let bindings = kafka_expose::engine::registration::bindings_webhook(&base, 2);
        cfg["webhooks"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::to_value(bindings).unwrap());
        cfg["webhooks"]
            .as_array_mut()
            .unwrap()
            .retain(|w| !drop.iter().any(|d| w["name"] == *d));
        for w in cfg["webhooks"].as_array_mut().unwrap() {
            w["clientConfig"] = json!({
                "url": format!("https://127.0.0.1:{}/mutate", self.port),
                "caBundle": self.ca_bundle,
            });
            w["namespaceSelector"]["matchLabels"] = json!({TAG: tag});
        }
        let mwc: MutatingWebhookConfiguration = serde_json::from_value(cfg).unwrap();
        let api: Api<MutatingWebhookConfiguration> = Api::all(c.clone());
        api.patch(
            &mwc.name_any(),
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&mwc),
        )
        .await
        .unwrap();
        // The API server picks the configuration up from its informer.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub async fn tagged_namespace(c: &Client, name: &str, tag: &str) {
    namespace(c, name).await;
    let api: Api<Namespace> = Api::all(c.clone());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {TAG: tag}}})),
    )
    .await
    .unwrap();
}

pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kx-e2e-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Applies the shipped CRD, and returns the policies' API once the API server serves it.
pub async fn apply_crd(c: &Client) -> Api<kafka_expose::api::KafkaExposePolicy> {
    apply_value(c, &deploy_docs("crd.yaml").remove(0)).await;
    let api: Api<kafka_expose::api::KafkaExposePolicy> = Api::all(c.clone());
    eventually(Duration::from_secs(30), "the CRD is served", || {
        let api = api.clone();
        async move {
            api.list(&ListParams::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
    api
}

/// Removes policy `name` whatever state an earlier run left it in: its finalizer (removed by a
/// running controller only) first, then the object, waiting until it is gone.
pub async fn remove_policy(api: &Api<kafka_expose::api::KafkaExposePolicy>, name: &str) {
    let _ = api
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await;
    let _ = api.delete(name, &kube::api::DeleteParams::default()).await;
    eventually(Duration::from_secs(30), "the policy gone", || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Applies what a user would apply of a fixture, as the 1.20 API server serves it.
pub async fn apply_fixture(c: &Client, ns: &str, file: &str, annotations: &Value) -> Vec<Value> {
    let docs = super::fixture(file);
    for d in &docs {
        let kind = d["kind"].as_str().unwrap();
        // policy/v1 PodDisruptionBudgets are not served by 1.20; NetworkPolicies and the chart's
        // test Pod are beside the point.
        if ![
            "ServiceAccount",
            "ConfigMap",
            "Secret",
            "Service",
            "StatefulSet",
        ]
        .contains(&kind)
        {
            continue;
        }
        let mut d = d.clone();
        d["metadata"]["namespace"] = json!(ns);
        if kind == "StatefulSet" {
            let ann = d["metadata"]
                .as_object_mut()
                .unwrap()
                .entry("annotations")
                .or_insert(json!({}));
            if ann.is_null() {
                *ann = json!({});
            }
            for (k, v) in annotations.as_object().unwrap() {
                ann[k] = v.clone();
            }
        }
        apply_value(c, &d).await;
    }
    docs
}

pub async fn pods_of(c: &Client, ns: &str, sts: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(c.clone(), ns);
    let mut pods: Vec<Pod> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.owner_references().iter().any(|o| o.name == sts)
                && p.metadata.deletion_timestamp.is_none()
        })
        .collect();
    pods.sort_by_key(|p| p.name_any());
    pods
}

/// Grants the install's service account the opt-in signing role (`external-tls-signing.yaml`)
/// in namespace `ns` alone.
pub async fn grant_signing(c: &Client, ns: &str) {
    let role = deploy_docs("external-tls-signing.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole")
        .unwrap();
    apply_value(c, &role).await;
    apply_value(
        c,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "kafka-expose-signing", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kafka-expose-signing"},
                "subjects": [{"kind": "ServiceAccount", "name": "kafka-expose", "namespace": "kafka-expose"}]}),
    )
    .await;
}

/// A server for one test under the install's own RBAC, with `args` added to `serve`: its
/// reconciler watches `ns`, its webhook configuration selects namespaces tagged `tag`, and `ns`
/// is made and tagged.
pub async fn installed_webhook(c: &kube::Client, tag: &str, ns: &str, args: &[&str]) -> Webhook {
    installed_webhook_as(
        c,
        tag,
        ns,
        args,
        &format!("kafka-expose-{tag}"),
        &["policies.kafka-expose.io"],
    )
    .await
}

/// [`installed_webhook`], its configuration registered as `name` less the webhooks in `drop`.
pub async fn installed_webhook_as(
    c: &kube::Client,
    tag: &str,
    ns: &str,
    args: &[&str],
    name: &str,
    drop: &[&str],
) -> Webhook {
    let dir = scratch(tag);
    let kubeconfig = install_rbac(c, &dir).await;
    let wh = Webhook::start_with(
        tag,
        kubeconfig,
        dir,
        Some(ns),
        Extra {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Extra::default()
        },
    );
    wh.register_named(c, tag, name, drop).await;
    tagged_namespace(c, ns, tag).await;
    wh
}

/// Waits until `api` lists: a CRD just applied is served.
pub async fn wait_served(api: &Api<DynamicObject>, what: &str) {
    super::cluster::eventually(
        Duration::from_secs(60),
        &format!("{what} served"),
        || async {
            api.list(&ListParams::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
}
