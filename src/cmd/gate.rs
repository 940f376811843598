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
        match wait_for_certificate(
            secret,
            out,
            &host,
            args.tls_client_auth,
            left,
            args.interval,
        ) {
            Ok(note) => println!("kafka-expose gate: {note}"),
            Err(why) => {
                eprintln!("kafka-expose gate: {why}");
                let _ = std::fs::write("/dev/termination-log", &why);
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What is wrong with the mounted certificate for `host`, or the PEM texts to write: the key
/// store (the key, then the chain) and, when clients are authenticated, the trust store.
pub fn certificate_for(
    secret: &Path,
    host: &str,
    client_auth: ClientAuth,
) -> Result<(String, Option<String>, String), String> {
    let read = |name: &str| -> Result<String, String> {
        std::fs::read_to_string(secret.join(name)).map_err(|e| {
            format!(
                "the Secret has no readable {name} at {}: {e}",
                secret.display()
            )
        })
    };
    let chain = read(certs::TLS_CERT)?;
    let key = read(certs::TLS_KEY)?;
    let facts = certs::inspect(&chain).map_err(|e| format!("its {}: {e}", certs::TLS_CERT))?;
    let leaf = &facts[0];
    if !certs::names_host(&leaf.names, host) {
        return Err(format!(
            "its certificate names {}, and not {host}, the host this broker advertises: a client that verifies host names (Kafka's default) would refuse it",
            if leaf.names.is_empty() {
                "no host".to_string()
            } else {
                leaf.names.join(", ")
            }
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    if leaf.not_after <= now {
        return Err(format!("its certificate for {host} has expired"));
    }
    if !key.contains("PRIVATE KEY-----") || key.contains("ENCRYPTED PRIVATE KEY") {
        return Err(format!(
            "its {} is not an unencrypted PEM private key",
            certs::TLS_KEY
        ));
    }
    let trust = match client_auth {
        ClientAuth::None => None,
        _ => {
            let ca = read(certs::CA_CERT)?;
            certs::inspect(&ca).map_err(|e| format!("its {}: {e}", certs::CA_CERT))?;
            Some(ca)
        }
    };
    let mut store = key.trim_end().to_string();
    store.push('\n');
    store.push_str(chain.trim_end());
    store.push('\n');
    Ok((store, trust, leaf.names.join(", ")))
}

/// Waits until the Secret mounted at `secret` holds a certificate for `host`, then writes the
/// broker's PEM stores into `out`. The kubelet refreshes a Secret volume in place, so a Secret made
/// or fixed after the pod started is seen here within its sync period. The error says what the
/// certificate lacks; no key text is ever in it.
pub fn wait_for_certificate(
    secret: &Path,
    out: &Path,
    host: &str,
    client_auth: ClientAuth,
    timeout: Duration,
    interval: Duration,
) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let why = match certificate_for(secret, host, client_auth) {
            Ok((store, trust, names)) => {
                write_shared(&out.join(tls::KEYSTORE_FILE), &store)?;
                if let Some(t) = trust {
                    write_shared(&out.join(tls::TRUSTSTORE_FILE), &t)?;
                }
                return Ok(format!(
                    "its certificate names {names}; the external listener's key store is {}",
                    out.join(tls::KEYSTORE_FILE).display()
                ));
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
