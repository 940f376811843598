//! `kafka-expose patch-properties`: the properties adapter's init container. Reads the
//! broker's `server.properties`, makes the edit of [`crate::kafka::properties`], and writes the
//! file back only when it changed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::PatchPropertiesArgs;
use crate::kafka::properties;

pub fn run(args: PatchPropertiesArgs) -> Result<ExitCode> {
    let PatchPropertiesArgs {
        file,
        listener_name,
        container_port,
        advertised_host,
        advertised_port,
        security_protocol,
    } = args;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let req = properties::Request {
        listener_name,
        container_port,
        advertised_host,
        advertised_port,
        security_protocol,
    };
    let edit =
        properties::patch(&text, &req).with_context(|| format!("patching {}", file.display()))?;
    if edit.changed {
        write_replacing(&file, &edit.text)?;
    }
    for note in &edit.notes {
        println!("kafka-expose patch-properties: {}: {note}", file.display());
    }
    Ok(ExitCode::SUCCESS)
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
