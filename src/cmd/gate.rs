//! `kafka-expose gate`: the first init container of a broker that advertises its node's address
//! (`advertised-host: node:…`). It waits until the pod's annotation `kafka-expose.io/external-host`
//! is present and not empty, read through a downward-API volume, so that the broker never starts
//! advertising an empty host. It needs no API access and no service-account token.
//!
//! The annotation is normally on the pod before the kubelet sees it: kafka-expose's binding
//! webhook adds it to the Binding, and the API server copies a Binding's annotations onto the pod
//! in the same update that sets `spec.nodeName`. Otherwise the reconciler patches it in, and the
//! kubelet refreshes the volume within its sync period. On timeout the gate fails with the
//! reason, and the kubelet runs it again.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::certs;
use crate::cli::GateArgs;
use crate::engine::restart;
use crate::kafka::tls::{self, ClientAuth};
use crate::names::{PREFIX, own};

pub fn run(args: GateArgs) -> Result<ExitCode> {
    let start = Instant::now();
    let host = match args.host.as_deref().map(str::trim) {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => match wait_for(&args.file, args.timeout, args.interval) {
            Ok(host) => host,
            Err(why) => {
                eprintln!("{why}");
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    println!("kafka-expose gate: this broker advertises {host}");
    if let (Some(secret), Some(out)) = (&args.tls_secret_dir, &args.tls_dir) {
        let left = args.timeout.saturating_sub(start.elapsed());
        let wanted = Wanted {
            secret,
            client_ca: args.tls_client_ca_dir.as_deref(),
            host: &host,
            client_auth: args.tls_client_auth,
        };
        match wait_for_certificate(&wanted, out, left, args.interval) {
            Ok(loaded) => {
                println!("kafka-expose gate: {}", loaded.note);
                // Best effort: without it, only a renewal is not noticed until the next restart.
                let _ = std::fs::write(
                    "/dev/termination-log",
                    restart::loaded_message(&loaded.serial),
                );
            }
            Err(why) => {
                eprintln!("kafka-expose gate: {why}");
                let _ = std::fs::write("/dev/termination-log", &why);
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the gate waits for: the broker's certificate Secret, mounted, naming `host`; with client
/// authentication, a trust store from that Secret's `ca.crt` or from `client_ca`'s.
pub struct Wanted<'a> {
    pub secret: &'a Path,
    pub client_ca: Option<&'a Path>,
    pub host: &'a str,
    pub client_auth: ClientAuth,
}

/// What is wrong with the mounted certificate, or the PEM texts to write: the key store (the key,
/// then the chain) and, when clients are authenticated, the trust store.
pub fn certificate_for(
    w: &Wanted<'_>,
) -> Result<(String, Option<String>, certs::CertFacts), String> {
    let read = |dir: &Path, what: &str, name: &str| -> Result<String, String> {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| format!("{what} has no readable {name} at {}: {e}", dir.display()))
    };
    let chain = read(w.secret, "the Secret", certs::TLS_CERT)?;
    let key = read(w.secret, "the Secret", certs::TLS_KEY)?;
    let ca = match (w.client_auth, w.client_ca) {
        (ClientAuth::None, _) => None,
        (_, Some(dir)) => Some(read(
            dir,
            "the client CA Secret (external-tls-client-ca)",
            certs::CA_CERT,
        )?),
        (_, None) => Some(read(w.secret, "the Secret", certs::CA_CERT)?),
    };
    stores_for(&chain, &key, ca.as_deref(), w.host, w.client_auth)
}

/// [`certificate_for`] on the Secret's texts: the checks, and the stores to write. Nothing of the
/// key is ever in the error.
pub fn stores_for(
    chain: &str,
    key: &str,
    ca: Option<&str>,
    host: &str,
    client_auth: ClientAuth,
) -> Result<(String, Option<String>, certs::CertFacts), String> {
    let facts = certs::inspect(chain).map_err(|e| format!("its {}: {e}", certs::TLS_CERT))?;
    let leaf = &facts[0];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    match certs::unfit_for(leaf, host, now) {
        Some(certs::Unfit::NotNamed) => {
            return Err(format!(
                "its certificate names {}, and not {host}, the host this broker advertises: a client that verifies host names (Kafka's default) would refuse it",
                if leaf.names.is_empty() {
                    "no host".to_string()
                } else {
                    leaf.names.join(", ")
                }
            ));
        }
        Some(certs::Unfit::Ended) => {
            return Err(format!("its certificate for {host} has expired"));
        }
        None => {}
    }
    // Kafka's PEM store reads PKCS#8 alone ("-----BEGIN PRIVATE KEY-----"): not PKCS#1
    // ("RSA PRIVATE KEY", cert-manager's default encoding) nor SEC1 ("EC PRIVATE KEY").
    if !key.contains("-----BEGIN PRIVATE KEY-----") {
        return Err(format!(
            "its {} is not an unencrypted PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----), the only kind Kafka's PEM key store reads; with cert-manager, set the Certificate's privateKey.encoding: PKCS8",
            certs::TLS_KEY
        ));
    }
    let trust = match (client_auth, ca) {
        (ClientAuth::None, _) => None,
        (_, None) => {
            return Err(format!(
                "it has no {} to check client certificates against",
                certs::CA_CERT
            ));
        }
        (_, Some(ca)) => {
            certs::inspect(ca).map_err(|e| format!("its {}: {e}", certs::CA_CERT))?;
            Some(ca.to_string())
        }
    };
    let mut store = key.trim_end().to_string();
    store.push('\n');
    store.push_str(chain.trim_end());
    store.push('\n');
    Ok((store, trust, leaf.clone()))
}

/// The certificate the broker starts with.
#[derive(Debug)]
pub struct Loaded {
    pub serial: String,
    pub note: String,
}

/// Waits until the Secret mounted at `secret` holds a certificate for `host`, then writes the
/// broker's PEM stores into `out`. The kubelet refreshes a Secret volume in place, so a Secret made
/// or fixed after the pod started is seen here within its sync period. The error says what the
/// certificate lacks; no key text is ever in it.
pub fn wait_for_certificate(
    w: &Wanted<'_>,
    out: &Path,
    timeout: Duration,
    interval: Duration,
) -> Result<Loaded, String> {
    let host = w.host;
    let start = Instant::now();
    loop {
        let why = match certificate_for(w) {
            Ok((store, trust, leaf)) => {
                write_shared(&out.join(tls::KEYSTORE_FILE), &store)?;
                if let Some(t) = trust {
                    write_shared(&out.join(tls::TRUSTSTORE_FILE), &t)?;
                }
                return Ok(Loaded {
                    serial: leaf.serial,
                    note: format!(
                        "its certificate names {}; the external listener's key store is {}",
                        leaf.names.join(", "),
                        out.join(tls::KEYSTORE_FILE).display()
                    ),
                });
            }
            Err(why) => why,
        };
        if start.elapsed() >= timeout {
            return Err(format!(
                "waited {}s for this broker's certificate, and {why}. Put a kubernetes.io/tls Secret whose certificate names {host} where kafka-expose.io/external-tls says; the kubelet retries this container.",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(
            interval
                .min(timeout.saturating_sub(start.elapsed()))
                .max(Duration::from_millis(10)),
        );
    }
}

/// Writes a file the broker reads: readable by the pod's other users as the kubelet mounts a
/// Secret's keys (mode 0644: the broker may run as another user than this container), in a volume
/// of this pod only.
fn write_shared(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("could not write {}: {e}", path.display()))
}

/// Reads `file` every `interval` until it holds a non-empty value, or fails after `timeout`
/// with a message saying what it waited for and why it may be missing.
pub fn wait_for(file: &Path, timeout: Duration, interval: Duration) -> Result<String, String> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let host = text.trim();
            if !host.is_empty() {
                return Ok(host.to_string());
            }
        }
        if start.elapsed() >= timeout {
            return Err(format!(
                "kafka-expose gate: waited {}s for the pod annotation {PREFIX}{} (read through the downward API at {}), and it is {}. kafka-expose sets it to the node's address when the pod is bound: through its binding webhook, or its reconciler within seconds. It may be missing because kafka-expose is not running, or because the node has no address of the types advertised-host names (the workload's Events name the node and the types). The kubelet retries this container.",
                timeout.as_secs(),
                own::EXTERNAL_HOST,
                file.display(),
                if file.exists() { "empty" } else { "absent" },
            ));
        }
        std::thread::sleep(
            interval
                .min(timeout.saturating_sub(start.elapsed()))
                .max(Duration::from_millis(10)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted<'a>(secret: &'a Path, host: &'a str, client_auth: ClientAuth) -> Wanted<'a> {
        Wanted {
            secret,
            client_ca: None,
            host,
            client_auth,
        }
    }

    /// A mounted Secret (as the kubelet lays it out) whose certificate names `names`.
    fn secret(
        tag: &str,
        names: &[&str],
    ) -> (std::path::PathBuf, std::path::PathBuf, certs::Bundle) {
        let root = std::env::temp_dir().join(format!("kx-gate-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let b = certs::generate_for(&names, certs::Validity::default()).unwrap();
        certs::write(&root.join("secret"), &b).unwrap();
        std::fs::create_dir_all(root.join("out")).unwrap();
        (root.join("secret"), root.join("out"), b)
    }

    #[test]
    fn a_certificate_naming_the_host_becomes_the_brokers_pem_key_store() {
        let (s, out, b) = secret("ok", &["203.0.113.7", "*.kafka.example.com"]);
        for host in [
            "203.0.113.7",
            "b-0.kafka.example.com",
            "B-1.Kafka.Example.COM",
        ] {
            let loaded = wait_for_certificate(
                &wanted(&s, host, ClientAuth::None),
                &out,
                Duration::ZERO,
                Duration::ZERO,
            )
            .unwrap();
            assert!(loaded.note.contains("keystore.pem"), "{loaded:?}");
            // The termination message names the certificate it starts with, and reads back.
            let serial = crate::certs::inspect(&b.cert_pem).unwrap()[0]
                .serial
                .clone();
            assert_eq!(loaded.serial, serial);
            let message = restart::loaded_message(&loaded.serial);
            assert_eq!(
                crate::engine::restart::loaded_serial(&message),
                Some(serial.as_str())
            );
        }
        assert_eq!(
            crate::engine::restart::loaded_serial("kafka-expose gate: something else"),
            None
        );
        assert_eq!(
            crate::engine::restart::loaded_serial(&crate::engine::restart::loaded_message("")),
            None
        );
        let store = std::fs::read_to_string(out.join(tls::KEYSTORE_FILE)).unwrap();
        assert!(store.starts_with(b.key_pem.trim_end()), "the key first");
        assert!(
            store.ends_with(&format!("{}\n", b.cert_pem.trim_end())),
            "then the chain"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join(tls::KEYSTORE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert!(
            !out.join(tls::TRUSTSTORE_FILE).exists(),
            "no trust store without client auth"
        );
        wait_for_certificate(
            &wanted(&s, "203.0.113.7", ClientAuth::Required),
            &out,
            Duration::ZERO,
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join(tls::TRUSTSTORE_FILE)).unwrap(),
            b.ca_pem
        );
    }

    #[test]
    fn client_certificates_are_checked_against_the_client_ca_secret_when_one_is_named() {
        let (s, out, _) = secret("client-ca", &["203.0.113.7"]);
        let (clients, _, other) = secret("client-ca-other", &["clients"]);
        let w = Wanted {
            client_ca: Some(&clients),
            ..wanted(&s, "203.0.113.7", ClientAuth::Required)
        };
        wait_for_certificate(&w, &out, Duration::ZERO, Duration::ZERO).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join(tls::TRUSTSTORE_FILE)).unwrap(),
            other.ca_pem,
            "the named Secret's ca.crt, not the certificate's own CA"
        );
        std::fs::remove_file(clients.join(certs::CA_CERT)).unwrap();
        let e = wait_for_certificate(&w, &out, Duration::ZERO, Duration::ZERO).unwrap_err();
        assert!(
            e.contains("external-tls-client-ca") && e.contains("ca.crt"),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_for_other_names_holds_the_broker_and_says_what_it_names() {
        let (s, out, b) = secret("wrong", &["10.0.0.9", "kafka.example.com"]);
        for host in [
            "203.0.113.7",
            "b-0.kafka.example.com",
            "a.b.kafka.example.com",
        ] {
            let e = wait_for_certificate(
                &wanted(&s, host, ClientAuth::None),
                &out,
                Duration::from_millis(30),
                Duration::from_millis(10),
            )
            .unwrap_err();
            assert!(e.contains(&format!("not {host}")), "{e}");
            assert!(e.contains("10.0.0.9, kafka.example.com"), "{e}");
            assert!(
                !e.contains("PRIVATE KEY") && !e.contains(b.key_pem.lines().nth(1).unwrap()),
                "no key text: {e}"
            );
        }
        assert!(!out.join(tls::KEYSTORE_FILE).exists(), "nothing written");
        let wild = certs::names_host(&["*.example.com".into()], "example.com");
        assert!(!wild, "a wildcard names one label, not its parent");
    }

    #[test]
    fn a_missing_secret_is_waited_for_and_named() {
        let root = std::env::temp_dir().join(format!("kx-gate-tls-none-{}", std::process::id()));
        let e = wait_for_certificate(
            &wanted(&root.join("secret"), "h.example.com", ClientAuth::None),
            &root,
            Duration::from_millis(20),
            Duration::from_millis(5),
        )
        .unwrap_err();
        assert!(e.contains("no readable tls.crt"), "{e}");
        assert!(e.contains("kafka-expose.io/external-tls"), "{e}");
        let (s, out, _) = secret("noca", &["h.example.com"]);
        std::fs::remove_file(s.join(certs::CA_CERT)).unwrap();
        let e = wait_for_certificate(
            &wanted(&s, "h.example.com", ClientAuth::Requested),
            &out,
            Duration::ZERO,
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(
            e.contains("ca.crt"),
            "client certificates need the Secret's CA: {e}"
        );
        let (s, out, b) = secret("pkcs1", &["h.example.com"]);
        let pkcs1 = b
            .key_pem
            .replace("BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY");
        std::fs::write(s.join(certs::TLS_KEY), pkcs1).unwrap();
        let e = wait_for_certificate(
            &wanted(&s, "h.example.com", ClientAuth::None),
            &out,
            Duration::ZERO,
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(
            e.contains("PKCS#8") && e.contains("privateKey.encoding"),
            "{e}"
        );
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kx-gate-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("external-host")
    }

    #[test]
    fn a_file_that_appears_late_lets_the_broker_go() {
        let file = scratch("late");
        std::fs::write(&file, "").unwrap();
        let writer = {
            let file = file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::write(&file, "kafka-0.example.com\n").unwrap();
            })
        };
        let got = wait_for(&file, Duration::from_secs(10), Duration::from_millis(50));
        writer.join().unwrap();
        assert_eq!(got, Ok("kafka-0.example.com".to_string()));
    }

    #[test]
    fn an_empty_file_times_out_naming_the_annotation() {
        let file = scratch("empty");
        std::fs::write(&file, "  \n").unwrap();
        let t = Instant::now();
        let err =
            wait_for(&file, Duration::from_millis(300), Duration::from_millis(50)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "bounded");
        assert!(err.contains("kafka-expose.io/external-host"), "{err}");
        assert!(err.contains("it is empty"), "{err}");
        assert!(err.contains("binding webhook"), "{err}");
        let gone = scratch("absent");
        let err =
            wait_for(&gone, Duration::from_millis(100), Duration::from_millis(50)).unwrap_err();
        assert!(err.contains("it is absent"), "{err}");
    }
}
