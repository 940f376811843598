//! `kafka-expose certs`: a CA and serving certificate for the webhook Service, into a directory
//! or kept in a TLS Secret, and the webhook configuration's `caBundle` set from it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::cluster_client;
use crate::certs;
use crate::cli::CertsArgs;
use crate::cluster;

pub fn run(args: CertsArgs) -> Result<ExitCode> {
    let CertsArgs {
        service,
        out,
        secret,
        patch_webhook,
        renew,
    } = args;
    let dns = certs::dns_names(&service.service_name, &service.service_namespace);
    let bundle = if secret.is_none() && patch_webhook.is_none() {
        let out = out.unwrap_or_else(|| PathBuf::from("certs"));
        let bundle = certs::generate(&dns)?;
        certs::write(&out, &bundle)?;
        eprintln!(
            "wrote {}, {} and {} to {} for {}",
            certs::CA_CERT,
            certs::TLS_CERT,
            certs::TLS_KEY,
            out.display(),
            dns.join(", ")
        );
        bundle
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let ns = service.service_namespace.clone();
        let bundle = runtime.block_on(async {
            let client = cluster_client().await.map_err(anyhow::Error::msg)?;
            let bundle = match &secret {
                Some(name) => {
                    let made = cluster::certs::ensure_secret(&client, &ns, name, &dns).await?;
                    let policy = renew.policy();
                    let (done, held) = cluster::certs::renew(
                        &client,
                        &ns,
                        name,
                        patch_webhook.as_deref(),
                        false,
                        &dns,
                        &policy,
                    )
                    .await?;
                    match done {
                        cluster::certs::Renewal::Keep => {}
                        cluster::certs::Renewal::Reissue(why) => {
                            eprintln!("re-issued the certificate in Secret {name}: {why}")
                        }
                        cluster::certs::Renewal::DropOldCa => {
                            eprintln!("dropped the previous CA from Secret {name}")
                        }
                    }
                    held.unwrap_or(made)
                }
                None => certs::generate(&dns)?,
            };
            if let Some(cfg) = &patch_webhook {
                if cluster::certs::patch_ca_bundle(&client, cfg, &bundle.ca_bundle()).await? {
                    eprintln!("set the caBundle of MutatingWebhookConfiguration {cfg}");
                } else {
                    eprintln!(
                        "MutatingWebhookConfiguration {cfg} does not exist yet: its caBundle is set after install"
                    );
                }
            }
            anyhow::Ok(bundle)
        })?;
        if let Some(out) = out {
            certs::write(&out, &bundle)?;
        }
        bundle
    };
    println!("{}", bundle.ca_bundle());
    Ok(ExitCode::SUCCESS)
}
