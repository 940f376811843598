//! The command line: a thin shell over the engine.
//!
//! - `kafka-expose mutate`: the webhook's and reconciler's decisions on manifests, offline;
//! - `kafka-expose patch-properties`: the properties adapter's init-container helper.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{NodePortRange, Settings, default_patcher_image};
use crate::engine::envs;
use crate::engine::listeners::SecurityProtocol;
use crate::mutate;
use crate::properties_file;

/// Makes Kafka brokers deployed by unmodified charts reachable from outside the cluster.
#[derive(Debug, Parser)]
#[command(name = "kafka-expose", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what the webhook and the reconciler would do to manifests, with no cluster.
    Mutate(MutateArgs),
    /// Add the external listener to a server.properties (the properties adapter's init container).
    PatchProperties(PatchPropertiesArgs),
}

/// Settings shared by everything that runs the engine.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// The cluster's NodePort range (kube-apiserver --service-node-port-range).
    #[arg(
        long,
        env = "KAFKA_EXPOSE_NODE_PORT_RANGE",
        default_value = "30000-32767"
    )]
    pub node_port_range: NodePortRange,
    /// Image of the properties adapter's init container.
    #[arg(long, env = "KAFKA_EXPOSE_PATCHER_IMAGE", default_value_t = default_patcher_image())]
    pub patcher_image: String,
}

impl EngineArgs {
    pub fn settings(&self) -> Settings {
        let Self {
            node_port_range,
            patcher_image,
        } = self.clone();
        Settings {
            node_port_range,
            patcher_image,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct MutateArgs {
    /// Manifests to read: multi-document YAML or JSON; `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
    /// Add the annotation kafka-expose.io/KEY=VALUE to every workload (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub output: OutputFormat,
    /// Print a summary for people instead of the objects.
    #[arg(long)]
    pub explain: bool,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    mutate::parse_set(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct PatchPropertiesArgs {
    /// The server.properties to edit in place.
    #[arg(long, env = envs::PROPERTIES_FILE)]
    pub file: PathBuf,
    /// Name of the external listener.
    #[arg(long, env = envs::LISTENER_NAME, default_value = crate::config::DEFAULT_LISTENER_NAME)]
    pub listener_name: String,
    /// Port the broker binds for the listener.
    #[arg(long, env = envs::CONTAINER_PORT)]
    pub container_port: u16,
    /// Host the broker advertises on the listener.
    #[arg(long, env = envs::EXTERNAL_HOST)]
    pub advertised_host: String,
    /// Port the broker advertises on the listener.
    #[arg(long, env = envs::EXTERNAL_PORT)]
    pub advertised_port: u16,
    /// Protocol of the listener; by default the client listener's.
    #[arg(long, env = envs::SECURITY_PROTOCOL, value_parser = parse_protocol)]
    pub security_protocol: Option<SecurityProtocol>,
}

fn parse_protocol(s: &str) -> Result<SecurityProtocol, String> {
    SecurityProtocol::parse(s)
        .ok_or_else(|| format!("{s:?}: allowed: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"))
}

impl Cli {
    pub fn run(self) -> Result<ExitCode> {
        match self.command {
            Command::Mutate(args) => run_mutate(args),
            Command::PatchProperties(args) => run_patch_properties(args),
        }
    }
}

fn run_mutate(args: MutateArgs) -> Result<ExitCode> {
    let MutateArgs {
        file,
        set,
        output,
        explain,
        namespace,
        engine,
    } = args;
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
    };
    let docs = mutate::read_documents(&text)?;
    let opts = mutate::Options {
        set,
        namespace,
        settings: engine.settings(),
    };
    let out = mutate::run(docs, &opts)?;
    let rendered = if explain {
        mutate::explain(&out)
    } else {
        match output {
            OutputFormat::Yaml => mutate::to_yaml(&out.objects).map_err(anyhow::Error::msg)?,
            OutputFormat::Json => mutate::to_json(&out.objects) + "\n",
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(rendered.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn run_patch_properties(args: PatchPropertiesArgs) -> Result<ExitCode> {
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
    let req = properties_file::Request {
        listener_name,
        container_port,
        advertised_host,
        advertised_port,
        security_protocol,
    };
    let edit = properties_file::patch(&text, &req)
        .with_context(|| format!("patching {}", file.display()))?;
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
