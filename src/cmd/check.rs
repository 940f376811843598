//! `kafka-expose check`: reads the flags into the client's security and timeouts, runs the
//! check (on a bootstrap list, or on the namespace's exposed workloads), prints the report, and
//! exits 0 only when every broker is right, 1 when one is not, 2 when the check could not run.

use std::process::ExitCode;

use anyhow::Result;

use crate::check;
use crate::check::client::sasl::{Credentials, Secret};
use crate::check::client::tls::{Tls, Trust};
use crate::check::client::{Address, Security, Timeouts};
use crate::check::report::{Report, render_text};
use crate::cli::{CheckArgs, CheckOutput};
use crate::kafka::SecurityProtocol;

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match runtime.block_on(check(&args)) {
        Ok(report) => {
            match args.output {
                CheckOutput::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                CheckOutput::Text => print!("{}", render_text(&report)),
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(why) => {
            eprintln!("kafka-expose check: {why}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn check(args: &CheckArgs) -> Result<Report, String> {
    let security = security(args)?;
    let timeouts = Timeouts {
        connect: args.connect_timeout,
        request: args.request_timeout,
    };
    if !args.bootstrap.is_empty() {
        if args.workload.is_some() {
            return Err("give --bootstrap or a workload, not both".into());
        }
        let servers = args
            .bootstrap
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| Address::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(check::bootstrap(&servers, &security, timeouts).await);
    }
    let config = kube_config(args).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    check::cluster(
        &client,
        &namespace,
        args.workload.as_deref(),
        &security,
        timeouts,
    )
    .await
}

async fn kube_config(args: &CheckArgs) -> Result<kube::Config, String> {
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options).await,
        None => {
            return kube::Config::infer().await.map_err(|e| {
                format!("no --bootstrap, and no cluster to read the published one from: {e}")
            });
        }
    };
    config.map_err(|e| e.to_string())
}

/// The client's TLS and SASL from the flags; the password from the flag, the environment or
/// the file, never echoed.
fn security(args: &CheckArgs) -> Result<Security, String> {
    let protocol = args.security_protocol;
    let sasl = match protocol {
        SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => {
            let username = args
                .sasl_username
                .clone()
                .ok_or("SASL needs --sasl-username (or KAFKA_EXPOSE_SASL_USERNAME)")?;
            let password = match (&args.sasl_password, &args.sasl_password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| format!("--sasl-password-file {}: {e}", f.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                (None, None) => {
                    return Err("SASL needs a password: KAFKA_EXPOSE_SASL_PASSWORD, --sasl-password-file or --sasl-password".into());
                }
            };
            Some(Credentials {
                mechanism: args.sasl_mechanism,
                username,
                password: Secret::new(password),
            })
        }
        _ => None,
    };
    let tls = match protocol {
        SecurityProtocol::Ssl | SecurityProtocol::SaslSsl => {
            let trust = if args.insecure_skip_tls_verify {
                eprintln!(
                    "kafka-expose check: --insecure-skip-tls-verify: broker certificates are not verified (neither chain nor names); the report still says whether each names its host"
                );
                Trust::SkipVerify
            } else if let Some(ca) = &args.ca_file {
                Trust::CaFile(ca.clone())
            } else {
                Trust::System
            };
            Some(Tls::new(&trust)?)
        }
        _ => {
            if args.ca_file.is_some() || args.insecure_skip_tls_verify {
                return Err(format!(
                    "--ca-file and --insecure-skip-tls-verify apply to SSL and SASL_SSL, not {protocol}"
                ));
            }
            None
        }
    };
    let connect_to = args
        .connect_to
        .as_deref()
        .map(Address::parse_port_optional)
        .transpose()?;
    Ok(Security {
        tls,
        sasl,
        connect_to,
    })
}
