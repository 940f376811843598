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

use crate::cli::GateArgs;
use crate::names::{PREFIX, own};

pub fn run(args: GateArgs) -> Result<ExitCode> {
    match wait_for(&args.file, args.timeout, args.interval) {
        Ok(host) => {
            println!("kafka-expose gate: this broker advertises {host}");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("{why}");
            Ok(ExitCode::FAILURE)
        }
    }
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
