//! `kafka-expose patch-properties`: the properties adapter's init container. Reads the
//! broker's `server.properties`, makes the edit of [`crate::kafka::properties`], and writes the
//! file back only when it changed.
//!
//! It never stops the broker over what the chart's configuration holds: where the chart already
//! has the listener, or its port (a chart that adds its own external listener at start), the
//! file is kept as the chart made it, the step exits 0, and it says why in its log and in its
//! termination message, which the reconciler turns into the workload's status and an Event. Only
//! a file it cannot read or write fails it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::PatchPropertiesArgs;
use crate::kafka::properties;
use crate::kafka::tls::ListenerTls;

pub fn run(args: PatchPropertiesArgs) -> Result<ExitCode> {
    let PatchPropertiesArgs {
        file,
        listener_name,
        container_port,
        advertised_host,
        advertised_port,
        security_protocol,
        tls_dir,
        tls_client_auth,
        termination_message_path,
    } = args;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let req = properties::Request {
        listener_name,
        container_port,
        advertised_host,
        advertised_port,
        security_protocol,
        tls: tls_dir
            .filter(|d| !d.trim().is_empty())
            .map(|dir| ListenerTls {
                dir,
                client_auth: tls_client_auth,
            }),
    };
    let edit = properties::patch_or_keep(&text, &req);
    if edit.changed {
        write_replacing(&file, &edit.text)?;
    }
    for note in &edit.notes {
        println!("kafka-expose patch-properties: {}: {note}", file.display());
    }
    if let Some(why) = &edit.kept {
        termination_message(&termination_message_path, &why.kept_message());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the container's termination message (what `kubectl describe pod` shows, and what the
/// reconciler reads), which starts with [`crate::names::KEPT_MARK`]. Best effort: outside a pod the path may not
/// be writable, and the log has said it already.
fn termination_message(path: &Path, message: &str) {
    if let Err(e) = std::fs::write(path, message) {
        println!(
            "kafka-expose patch-properties: no termination message at {}: {e}",
            path.display()
        );
    }
}

/// Writes `text` to `path` through a temporary file and a rename, keeping the file's mode; where
/// the rename is impossible (the file is itself a mount point), writes in place.
fn write_replacing(path: &Path, text: &str) -> Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "server.properties".into());
    let tmp = dir.join(format!(".{name}.kafka-expose.tmp"));
    let perms = std::fs::metadata(&target).map(|m| m.permissions()).ok();
    let renamed = std::fs::write(&tmp, text)
        .and_then(|()| match &perms {
            Some(p) => std::fs::set_permissions(&tmp, p.clone()),
            None => Ok(()),
        })
        .and_then(|()| std::fs::rename(&tmp, &target));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}
