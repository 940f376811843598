//! The one test support module. This file: what a broker pod's Kafka configuration really is
//! once it runs; [`https`]: clients and reviews for the server over real TLS; [`cluster`]: the
//! real control plane's client, namespaces and a stand-in kubelet; [`net`]: loopback ports;
//! [`kafka`]: fake Kafka brokers for `check`.
//!
//! [`effective_config`] plays the parts between the API server and the broker:
//! - the kubelet resolves the downward API and expands `$(VAR)` by its rules (only variables
//!   defined earlier in the list; `$$` escapes a `$`);
//! - the chart's startup script runs, in a real shell, where the container's command is a shell
//!   script (cp-helm-charts, apache/kafka);
//! - the chart's init container renders `server.properties` (Bitnami ≥ 24: the ConfigMap copied
//!   and its address placeholder replaced; Yolean: its real `init.sh`, run by bash with a stand-in
//!   `kubectl`), then kafka-expose's own init container runs the real `kafka-expose
//!   patch-properties` on the file;
//! - for a broker started by the chart's own script on the apache/kafka image (CloudPirates),
//!   the launch adapter's init containers run the real `kafka-expose-launch`, the launcher stands
//!   where the image's `kafka-server-start.sh` is, and the chart's script runs in a real `sh`
//!   ([`launched_config`]);
//! - the image turns its inputs into broker properties (cp/apache: `KAFKA_*`, deriving
//!   `listeners` from `advertised.listeners` when unset; Bitnami: `KAFKA_CFG_*` and aliases, or
//!   the mounted file alone).
//!
//! Nothing here calls into the engine; it reads the pods as the API server would store them.

#![allow(dead_code)]

pub mod checks;
pub mod cluster;
pub mod https;
pub mod kafka;
pub mod net;
pub mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const NODE_IP: &str = "192.0.2.10";
pub const NODE_NAME: &str = "node-a";

/// Reads a chart fixture's documents.
pub fn fixture(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/charts")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    kafka_expose::offline::read_documents(&text).expect("fixture parses")
}

/// The first StatefulSet of a chart fixture.
pub fn statefulset(name: &str) -> Value {
    fixture(name)
        .into_iter()
        .find(|d| d["kind"] == "StatefulSet")
        .unwrap_or_else(|| panic!("{name} has no StatefulSet"))
}

/// The node IP the test scheduler gives pod `i`: brokers land on different nodes.
pub fn node_ip(ordinal: u32) -> String {
    format!("192.0.2.{}", 10 + ordinal)
}

/// Expands `$(VAR)` as the kubelet does (k8s.io/kubernetes third_party/forked/golang/expansion):
/// a defined variable is replaced, an undefined one is left as written, `$$` is a `$`.
pub fn kubelet_expand(input: &str, defined: &BTreeMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + close];
                        match defined.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += 3 + close;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The environment of `container` as the kubelet hands it to the process, in order.
pub fn resolve_env(pod: &Value, container: &Value, ordinal: u32) -> Vec<(String, String)> {
    let mut defined = BTreeMap::new();
    let mut out = Vec::new();
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    for var in container["env"].as_array().into_iter().flatten() {
        let key = var["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = var.get("value").and_then(Value::as_str) {
            kubelet_expand(v, &defined)
        } else if let Some(f) = var
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            match f {
                "metadata.name" => name.clone(),
                "metadata.namespace" => ns.clone(),
                "status.hostIP" => node_ip(ordinal),
                "status.podIP" => format!("10.244.0.{}", 10 + ordinal),
                "spec.nodeName" => format!("{NODE_NAME}-{ordinal}"),
                // `metadata.annotations['key']`: the annotation, or empty when absent.
                other => match other
                    .strip_prefix("metadata.annotations['")
                    .and_then(|k| k.strip_suffix("']"))
                {
                    Some(k) => pod["metadata"]["annotations"][k]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    None => panic!("unexpected downward API field {other}"),
                },
            }
        } else if let Some(k) = var
            .pointer("/valueFrom/secretKeyRef/key")
            .and_then(Value::as_str)
        {
            format!("secret-{k}")
        } else if let Some(k) = var
            .pointer("/valueFrom/configMapKeyRef/key")
            .and_then(Value::as_str)
        {
            format!("configmap-{k}")
        } else {
            String::new()
        };
        defined.insert(key.clone(), value.clone());
        out.push((key, value));
    }
    out
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "kafka-expose-test-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a container's shell command in a real `sh`, with its final `exec` of the image's entry
/// point replaced by a dump of the environment, and returns that environment.
fn run_startup_script(
    script: &str,
    env: &[(String, String)],
    hostname: &str,
) -> Vec<(String, String)> {
    let mut s = script.to_string();
    for entry in ["/etc/confluent/docker/run", "/etc/kafka/docker/run"] {
        s = s.replace(&format!("exec {entry}"), "exec env -0");
    }
    assert!(
        s.contains("exec env -0"),
        "the script's entry point is not known: {script}"
    );
    let out = Command::new("sh")
        .arg("-ec")
        .arg(&s)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HOSTNAME", hostname)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The shell script of a `sh -c`-style command, if the container has one.
fn shell_script(c: &Value) -> Option<String> {
    let cmd: Vec<&str> = c["command"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let args: Vec<&str> = c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let all: Vec<&str> = cmd.iter().chain(args.iter()).copied().collect();
    match all.as_slice() {
        [sh, flag, script, ..]
            if (sh.ends_with("sh")) && flag.starts_with('-') && flag.contains('c') =>
        {
            Some(script.to_string())
        }
        _ => None,
    }
}

/// cp-kafka / apache/kafka: `KAFKA_FOO_BAR` → `foo.bar` (`__` → `_`, `___` → `-`), less the
/// variables the images keep for themselves.
fn apache_props(env: &[(String, String)]) -> BTreeMap<String, String> {
    const NOT_PROPERTIES: [&str; 9] = [
        "KAFKA_HEAP_OPTS",
        "KAFKA_JMX_PORT",
        "KAFKA_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_VERSION",
        "KAFKA_JMX_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
    ];
    let mut props = BTreeMap::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("KAFKA_") else {
            continue;
        };
        if NOT_PROPERTIES.contains(&k.as_str()) {
            continue;
        }
        let key = rest
            .to_ascii_lowercase()
            .replace("___", "-")
            .replace("__", "\u{1}")
            .replace('_', ".")
            .replace('\u{1}', "_");
        props.insert(key, v.clone());
    }
    if !props.contains_key("listeners")
        && let Some(adv) = props.get("advertised.listeners").cloned()
    {
        // The images derive `listeners` from the advertised ones, binding every interface.
        let derived: Vec<String> = adv
            .split(',')
            .map(|l| {
                let (name, rest) = l.split_once("://").unwrap();
                let port = rest.rsplit(':').next().unwrap();
                format!("{name}://0.0.0.0:{port}")
            })
            .collect();
        props.insert("listeners".into(), derived.join(","));
    }
    props
}

/// bitnami/kafka without a mounted server.properties: `KAFKA_CFG_FOO_BAR` → `foo.bar`, and the
/// aliases without `CFG_` for the listener settings.
fn bitnami_props(env: &[(String, String)]) -> BTreeMap<String, String> {
    let mut props = BTreeMap::new();
    for alias in [
        "LISTENERS",
        "ADVERTISED_LISTENERS",
        "LISTENER_SECURITY_PROTOCOL_MAP",
        "INTER_BROKER_LISTENER_NAME",
        "CONTROLLER_LISTENER_NAMES",
    ] {
        if let Some((_, v)) = env
            .iter()
            .rev()
            .find(|(k, _)| *k == format!("KAFKA_{alias}"))
        {
            props.insert(alias.to_ascii_lowercase().replace('_', "."), v.clone());
        }
    }
    for (k, v) in env {
        if let Some(rest) = k.strip_prefix("KAFKA_CFG_") {
            props.insert(rest.to_ascii_lowercase().replace('_', "."), v.clone());
        }
    }
    props
}

/// A minimal reader of `key=value` lines, independent of the project's editor.
pub fn read_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn find_config_map<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

fn volume_config_map(pod: &Value, volume: &str) -> Option<String> {
    pod["spec"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == volume)?
        .pointer("/configMap/name")?
        .as_str()
        .map(str::to_string)
}

/// Runs kafka-expose's injected init container, if the pod has one, on the file the chart left
/// under `root` (the volume's contents, keyed by the init container's mount path).
/// Bitnami's `configure_external_access` (chart 26, `kafka-init`), for a pod whose init container
/// has `EXTERNAL_ACCESS_ENABLED`: the host from `EXTERNAL_ACCESS_HOST` (its `$(VAR)` resolved as
/// the kubelet would), the port `EXTERNAL_ACCESS_PORTS_LIST[POD_ID]`, appended by the script's
/// `sed -E "s|^(advertised\.listeners=\S+)$|\1,EXTERNAL://${host}:${port}|"`.
fn bitnami_external_access(pod: &Value, ordinal: u32, text: &str) -> String {
    let Some(init) = pod["spec"]["initContainers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "kafka-init"))
    else {
        return text.to_string();
    };
    let env: BTreeMap<String, String> = resolve_env(pod, init, ordinal).into_iter().collect();
    if env.get("EXTERNAL_ACCESS_ENABLED").map(String::as_str) != Some("true") {
        return text.to_string();
    }
    let host = &env["EXTERNAL_ACCESS_HOST"];
    let ports: Vec<&str> = env["EXTERNAL_ACCESS_PORTS_LIST"].split(',').collect();
    let port = ports[ordinal as usize];
    text.lines()
        .map(|l| match l.strip_prefix("advertised.listeners=") {
            Some(v) if !v.is_empty() && !v.contains(char::is_whitespace) => {
                format!("{l},EXTERNAL://{host}:{port}")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_patcher(pod: &Value, ordinal: u32, mount_root: &Path) -> Option<String> {
    let init = pod["spec"]["initContainers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "kafka-expose-properties"))?;
    let env = resolve_env(pod, init, ordinal);
    let mount = init["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let mut env: Vec<(String, String)> = env;
    for (k, v) in env.iter_mut() {
        if k == "KAFKA_EXPOSE_PROPERTIES_FILE" {
            let rel = v
                .strip_prefix(mount)
                .expect("the file is in the mounted volume");
            *v = format!("{}{rel}", mount_root.display());
        }
    }
    assert_eq!(init["args"][0], "patch-properties");
    let message = mount_root.join("termination-log");
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-expose"))
        .arg("patch-properties")
        .arg("--termination-message-path")
        .arg(&message)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "patch-properties failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // What the kubelet would keep as the container's termination message.
    std::fs::read_to_string(&message).ok()
}

/// How the chart configures its broker, which decides how its effective configuration is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// apache/kafka or cp-kafka, configured by env and maybe a startup script.
    Apache,
    /// bitnami/kafka with `KAFKA_CFG_*`.
    BitnamiEnv,
    /// bitnami/kafka with a server.properties rendered by an init container.
    BitnamiFile,
    /// Yolean's init.sh writes server.properties.
    Yolean,
    /// apache/kafka started by the chart's own script on the file it writes (CloudPirates).
    Launch,
}

/// A Bitnami chart's pod whose init container renders server.properties: the chart's rendering
/// (copy, address placeholder, its external access), then kafka-expose's step; the properties
/// the broker reads, and the step's termination message, if it wrote one.
pub fn bitnami_file(
    docs: &[Value],
    pod: &Value,
    ordinal: u32,
) -> (BTreeMap<String, String>, Option<String>) {
    let pod_name = pod["metadata"]["name"].as_str().unwrap();
    let scratch = Scratch::new("bitnami");
    let cm = volume_config_map(pod, "kafka-configmaps").expect("the chart's configmap volume");
    let text = find_config_map(docs, &cm)["data"]["server.properties"]
        .as_str()
        .unwrap()
        .to_string();
    // The chart's init container: copy, and replace the address placeholder.
    let role = pod_name.rsplit('-').nth(1).unwrap();
    let ns = pod["metadata"]["namespace"].as_str().unwrap();
    let rendered = text.replace(
        "advertised-address-placeholder",
        &format!("{pod_name}.my-kafka-{role}-headless.{ns}.svc.cluster.local"),
    );
    let rendered = bitnami_external_access(pod, ordinal, &rendered);
    std::fs::write(scratch.0.join("server.properties"), rendered).unwrap();
    let message = run_patcher(pod, ordinal, &scratch.0);
    let props =
        read_properties(&std::fs::read_to_string(scratch.0.join("server.properties")).unwrap());
    (props, message)
}

/// The broker properties pod `pod` (broker `ordinal`, container `container`) runs with.
pub fn effective_config(
    docs: &[Value],
    pod: &Value,
    container: &str,
    ordinal: u32,
    image: Image,
) -> BTreeMap<String, String> {
    let c = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == container)
        .unwrap_or_else(|| panic!("no container {container}"));
    let pod_name = pod["metadata"]["name"].as_str().unwrap();
    let env = resolve_env(pod, c, ordinal);
    match image {
        Image::Apache => {
            let env = match shell_script(c) {
                Some(script) => run_startup_script(&script, &env, pod_name),
                None => env,
            };
            apache_props(&env)
        }
        Image::BitnamiEnv => bitnami_props(&env),
        Image::BitnamiFile => bitnami_file(docs, pod, ordinal).0,
        Image::Launch => launched_config(docs, pod, container, ordinal).0,
        Image::Yolean => {
            let scratch = Scratch::new("yolean");
            let cm = find_config_map(docs, "broker-config");
            let cm_dir = scratch.0.join("configmap");
            let kafka_dir = scratch.0.join("kafka");
            let bin = scratch.0.join("bin");
            for d in [&cm_dir, &kafka_dir, &bin] {
                std::fs::create_dir_all(d).unwrap();
            }
            for (k, v) in cm["data"].as_object().unwrap() {
                std::fs::write(cm_dir.join(k), v.as_str().unwrap()).unwrap();
            }
            // A stand-in kubectl: the node's InternalIP, no zone label, labels and annotations
            // accepted.
            write_executable(
                &bin.join("kubectl"),
                "#!/bin/sh\ncase \"$*\" in *go-template*) echo '<no value>';; *InternalIP*) echo \"$FAKE_NODE_IP\";; esac\nexit 0\n",
            );
            let init = pod["spec"]["initContainers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "init-config")
                .unwrap();
            let script = cm["data"]["init.sh"]
                .as_str()
                .unwrap()
                .replace("/etc/kafka-configmap", &cm_dir.display().to_string())
                .replace("/etc/kafka/", &format!("{}/", kafka_dir.display()))
                .replace("/etc/kafka ", &format!("{} ", kafka_dir.display()));
            let out = Command::new("bash")
                .arg("-c")
                .arg(&script)
                .env_clear()
                .envs(resolve_env(pod, init, ordinal).iter().map(|(k, v)| (k, v)))
                .env("HOSTNAME", pod_name)
                .env("FAKE_NODE_IP", node_ip(ordinal))
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .expect("bash runs");
            assert!(
                out.status.success(),
                "init.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            run_patcher(pod, ordinal, &kafka_dir);
            // The broker reads /etc/kafka/server.properties.$(POD_NAME), a link the script made.
            let file = kafka_dir.join("server.properties");
            read_properties(&std::fs::read_to_string(file).unwrap())
        }
    }
}

/// Listener entries of a list: `(NAME, host, port)`.
pub fn listeners(value: Option<&String>) -> Vec<(String, String, String)> {
    value
        .map(|v| {
            v.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|l| {
                    let (name, rest) = l.trim().split_once("://").unwrap();
                    let (host, port) = rest.rsplit_once(':').unwrap();
                    (name.to_string(), host.to_string(), port.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `NAME:PROTOCOL` pairs of a protocol map.
pub fn protocol_map(props: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    props
        .get("listener.security.protocol.map")
        .map(|m| {
            m.split(',')
                .filter_map(|p| p.split_once(':'))
                .map(|(a, b)| (a.trim().to_ascii_uppercase(), b.trim().to_string()))
                .collect()
        })
        .unwrap_or_else(|| {
            ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
                .into_iter()
                .map(|p| (p.to_string(), p.to_string()))
                .collect()
        })
}

/// Writes a script that a test runs next, from a child process: a file this multi-threaded
/// process held open for writing could still be open in another test's child, forked meanwhile
/// and not yet exec'd, and running it would fail with ETXTBSY ("Text file busy").
pub fn write_executable(path: &Path, text: &str) {
    let status = Command::new("sh")
        .args(["-c", "printf '%s' \"$1\" >\"$2\" && chmod 755 \"$2\"", "sh"])
        .arg(text)
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "writing {}", path.display());
}

/// The launcher binary (crates/kafka), built beside this package's binaries by the workspace's
/// `cargo test`.
pub fn launcher_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_kafka-expose")).with_file_name("kafka-expose-launch");
    assert!(
        path.is_file(),
        "{} is not built: `cargo test` at the workspace root builds it, or `cargo build -p kafka-expose-kafka`",
        path.display()
    );
    path
}

/// What a broker on the apache/kafka image, started by the chart's own script, runs with: the
/// container's volumes laid out under a scratch root (ConfigMaps written, `emptyDir`s made),
/// kafka-expose's two launch init containers run as the pod would (the real launcher, `install`
/// then `save` from the image's files), the launcher put over the image's script (the `subPath`
/// mount), and then the chart's script, in a real `sh`, with the environment the kubelet hands it.
/// Every path the pod names is moved under the root. The image's own scripts are the test images'
/// stand-ins (tests/e2e/images/apache-kafka), with the broker replaced by a copy of the file it
/// is given. Returns the broker's properties, and the termination message if one was written.
pub fn launched_config(
    docs: &[Value],
    pod: &Value,
    container: &str,
    ordinal: u32,
) -> (BTreeMap<String, String>, Option<String>) {
    let c = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == container)
        .unwrap_or_else(|| panic!("no container {container}"));
    let scratch = Scratch::new("launch");
    let image = scratch.0.join("image");
    let root = scratch.0.join("root");
    let out = scratch.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let bin = "/opt/kafka/bin";
    let stand_ins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/images/apache-kafka");
    let broker = format!("#!/bin/sh\ncp \"$1\" '{}/config'\n", out.display());
    for view in [&image, &root] {
        let dir = view.join(bin.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "kafka-server-start.sh",
            "kafka-run-class.sh",
            "kafka-storage.sh",
        ] {
            let text = std::fs::read_to_string(stand_ins.join(name)).unwrap();
            write_executable(&dir.join(name), &text);
        }
        write_executable(&dir.join("kx-test-broker"), &broker);
    }

    // The mounts: every path the container names, longest first, moved under the root, in one
    // pass, so that a moved path is not moved again.
    let mounts: Vec<&Value> = c["volumeMounts"].as_array().into_iter().flatten().collect();
    let mut prefixes: Vec<String> = mounts
        .iter()
        .map(|m| {
            m["mountPath"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_string()
        })
        .chain(["/opt/kafka".to_string()])
        .collect();
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let under_root = |s: &str| -> String {
        let mut out = String::new();
        let mut i = 0;
        // A path starts a word (or follows `=`, `:` or a quote) and ends at a `/` or a word's end.
        let boundary = |c: Option<char>| {
            c.is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
        };
        'scan: while i < s.len() {
            let before = s[..i].chars().next_back();
            let starts = before.is_none_or(|c| c.is_whitespace() || "=:\"'(,;".contains(c));
            for p in prefixes.iter().filter(|_| starts) {
                if s[i..].starts_with(p.as_str()) && boundary(s[i + p.len()..].chars().next()) {
                    out.push_str(&format!("{}{p}", root.display()));
                    i += p.len();
                    continue 'scan;
                }
            }
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
        out
    };
    // A volume the pod does not list is a claim of the StatefulSet's volumeClaimTemplates.
    let volume = |name: &str| -> Value {
        pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"name": name, "persistentVolumeClaim": {}}))
    };
    let mut shadow = None;
    for m in &mounts {
        let at = root.join(m["mountPath"].as_str().unwrap().trim_start_matches('/'));
        let v = volume(m["name"].as_str().unwrap());
        if let Some(cm) = v.pointer("/configMap/name").and_then(Value::as_str) {
            let data = &find_config_map(docs, cm)["data"];
            match m["subPath"].as_str() {
                Some(key) => {
                    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                    std::fs::write(&at, data[key].as_str().unwrap()).unwrap();
                }
                None => {
                    std::fs::create_dir_all(&at).unwrap();
                    for (k, text) in data.as_object().unwrap() {
                        std::fs::write(at.join(k), text.as_str().unwrap()).unwrap();
                    }
                }
            }
        } else if m["name"] == "kafka-expose-launch" && m["subPath"].is_string() {
            // The launcher over the image's script: once the init containers have run.
            shadow = Some((m["name"].clone(), m["subPath"].clone(), at));
        } else {
            std::fs::create_dir_all(&at).unwrap();
        }
    }

    // kafka-expose's init containers, in the pod's order.
    let inits = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten();
    for init in inits.filter(|i| {
        i["name"]
            .as_str()
            .unwrap()
            .starts_with("kafka-expose-launch")
    }) {
        let args: Vec<&str> = init["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let command = init["command"][0].as_str().unwrap();
        let mut run = match args[0] {
            // On kafka-expose's image: its launcher.
            "install" => {
                assert_eq!(command, "/usr/bin/kafka-expose-launch");
                let mut r = Command::new(launcher_binary());
                r.args(["install", &under_root(args[1])]);
                r
            }
            // On the broker's image: the launcher from the volume, the script from the image.
            "save" => {
                let mut r = Command::new(under_root(command));
                r.args([
                    "save",
                    &format!("{}{}", image.display(), args[1]),
                    &under_root(args[2]),
                ]);
                r
            }
            other => panic!("unknown launch step {other}"),
        };
        let o = run.env_clear().output().unwrap();
        assert!(o.status.success(), "{}: {o:?}", init["name"]);
    }
    // Not mutated: the image's own script stays where it is.
    if let Some((_, sub_path, at)) = shadow {
        let launch = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["subPath"].is_null() && m["name"] == "kafka-expose-launch")
            .expect("the launch directory is mounted");
        let from = root
            .join(
                launch["mountPath"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('/'),
            )
            .join(sub_path.as_str().unwrap());
        let _ = std::fs::remove_file(&at);
        std::fs::hard_link(from, &at).unwrap();
    }

    // A command in exec form runs as the same words would from a shell.
    let script = shell_script(c).unwrap_or_else(|| {
        let words: Vec<String> = c["command"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(c["args"].as_array().into_iter().flatten())
            .map(|w| format!("'{}'", w.as_str().unwrap().replace('\'', r"'\''")))
            .collect();
        format!("exec {}", words.join(" "))
    });
    let message = out.join("termination-log");
    let env: Vec<(String, String)> = resolve_env(pod, c, ordinal)
        .into_iter()
        .map(|(k, v)| (k, under_root(&v)))
        .collect();
    let run = Command::new("sh")
        .arg("-ec")
        .arg(under_root(&script))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("KAFKA_EXPOSE_TERMINATION_MESSAGE_PATH", &message)
        .env("HOSTNAME", pod["metadata"]["name"].as_str().unwrap())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(run.status.success(), "the chart's script: {run:?}");
    let config = std::fs::read_to_string(out.join("config"))
        .unwrap_or_else(|e| panic!("the broker was not started ({e}): {run:?}"));
    (
        read_properties(&config),
        std::fs::read_to_string(message).ok(),
    )
}

/// A third-party CRD (tests/data/crds, unmodified upstream files) as a 1.20 API server takes it:
/// 1.20 reads `default: ""` as null ("in body must be of type string"), and a list-map key then
/// needs a default or to be required. So empty-string defaults are left out, and each list-map
/// key that had one is made required instead; nothing the tests' objects use changes.
pub fn crd_for_1_20(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let keys = m.get("x-kubernetes-list-map-keys").cloned();
            if let (Some(Value::Array(keys)), Some(items)) = (keys, m.get_mut("items")) {
                for k in keys {
                    if items["properties"][k.as_str().unwrap_or_default()]["default"] == "" {
                        let required = items
                            .as_object_mut()
                            .unwrap()
                            .entry("required")
                            .or_insert_with(|| Value::Array(vec![]));
                        if !required.as_array().unwrap().contains(&k) {
                            required.as_array_mut().unwrap().push(k);
                        }
                    }
                }
            }
            if m.get("default") == Some(&Value::from("")) {
                m.remove("default");
            }
            m.values_mut().for_each(crd_for_1_20);
        }
        Value::Array(a) => a.iter_mut().for_each(crd_for_1_20),
        _ => {}
    }
}
