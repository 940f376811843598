//! `kafka-expose serve`: the webhook over HTTPS and its admin port, and, with cluster
//! credentials, the reconciler (under the leader Lease when asked), sharing its Service cache
//! with the webhook. SIGTERM drains both.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::cluster_client;
use crate::certs;
use crate::cli::ServeArgs;
use crate::cluster::caches::LiveServices;
use crate::cluster::certs::{LEASE as CERTS_LEASE, Renewer};
use crate::cluster::{leader, own_image, reconciler};
use crate::config::{Settings, default_patcher_image};
use crate::names::LEASE;
use crate::telemetry;
use crate::webhook::server::{self, ServeConfig};
use crate::webhook::{AppState, tls};

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let ServeArgs {
        listen,
        tls_cert,
        tls_key,
        dev_certs,
        cert_dir,
        service,
        admin_listen,
        log_format,
        failure_mode,
        watch_namespace,
        leader_elect,
        lb_pending_warning,
        shutdown_grace,
        certs_secret,
        certs_webhook,
        certs_check_every,
        renew,
        engine,
    } = args;
    telemetry::init(log_format);
    let (cert_file, key_file) = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => (c, k),
        _ if dev_certs => {
            let dns = certs::dns_names(&service.service_name, &service.service_namespace);
            if certs::ensure_dev(&cert_dir, &dns)? {
                tracing::info!(dir = %cert_dir.display(), "created dev certificates");
            }
            (
                cert_dir.join(certs::TLS_CERT),
                cert_dir.join(certs::TLS_KEY),
            )
        }
        _ => anyhow::bail!("give --tls-cert and --tls-key, or --dev-certs"),
    };
    let mut state = AppState::standalone(engine.settings(), failure_mode);
    let cfg = ServeConfig {
        listen,
        admin_listen,
        cert_file,
        key_file,
        shutdown_grace,
        reload_interval: tls::RELOAD_INTERVAL,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            server::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let reconciler = match cluster_client().await {
            Ok(client) => {
                let election =
                    leader_election(leader_elect, &service.service_namespace, watch_namespace.as_deref());
                match &election {
                    Some(e) => tracing::info!(lease = %e.name, namespace = %e.namespace, "cluster credentials found: reconciling while holding the leader Lease"),
                    None => tracing::info!("cluster credentials found: running the reconciler"),
                }
                if engine.patcher_image.is_none() {
                    state.settings = Arc::new(Settings {
                        patcher_image: injected_image(&client).await,
                        ..(*state.settings).clone()
                    });
                }
                if let (Some(secret), Some(webhook)) = (certs_secret.clone(), certs_webhook.clone()) {
                    let renewer = Renewer {
                        client: client.clone(),
                        namespace: service.service_namespace.clone(),
                        secret,
                        webhook,
                        dns: certs::dns_names(&service.service_name, &service.service_namespace),
                        policy: renew.policy(),
                        every: certs_check_every,
                    };
                    let election = leader_election(leader_elect, &service.service_namespace, None)
                        .map(|e| leader::Election::new(&e.namespace, CERTS_LEASE, &e.identity));
                    tokio::spawn(renewer.run(election, stopped(stop_rx.clone())));
                }
                state.services = Some(Arc::new(LiveServices(client.clone())));
                let spawned = reconciler::spawn(
                    client,
                    state.settings.clone(),
                    state.metrics.clone(),
                    state.readiness.clone(),
                    reconciler::Options {
                        namespace: watch_namespace.clone(),
                        lb_pending_warning,
                    },
                    election,
                    stopped(stop_rx.clone()),
                );
                state.lb_addresses = Arc::new(spawned.caches.services);
                state.policies = Some(Arc::new(spawned.caches.policies));
                state.bindings = Some(Arc::new(spawned.caches.bindings));
                Some(spawned.task)
            }
            Err(why) => {
                tracing::info!(%why, "no cluster credentials: serving the webhook alone, without the reconciler");
                None
            }
        };
        server::serve(cfg, state, stopped(stop_rx), |_| {}).await?;
        if let Some(r) = reconciler {
            let _ = r.await;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The image of this server's own pod, for the init containers it injects; the build's default
/// image, with the reason logged, when the pod cannot be read.
async fn injected_image(client: &kube::Client) -> String {
    let (Ok(ns), Ok(name)) = (std::env::var("POD_NAMESPACE"), std::env::var("POD_NAME")) else {
        let image = default_patcher_image();
        tracing::info!(%image, "not in a pod (no POD_NAME, POD_NAMESPACE): injecting the default image");
        return image;
    };
    match own_image::read(client, &ns, &name).await {
        Ok(image) => {
            tracing::info!(%image, pod = %name, "injecting the image this server runs as");
            image
        }
        Err(why) => {
            let image = default_patcher_image();
            tracing::warn!(%why, %image, "cannot read this server's own image: injecting the default; set --patcher-image to choose");
            image
        }
    }
}

/// The leader Lease, when asked for: in the pod's namespace (`POD_NAMESPACE`, else the webhook
/// Service's), named for what the reconciler watches, held under the pod's name.
fn leader_election(
    enabled: bool,
    service_namespace: &str,
    watch: Option<&str>,
) -> Option<leader::Election> {
    if !enabled {
        return None;
    }
    let namespace =
        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| service_namespace.to_string());
    let name = match watch {
        Some(ns) => format!("{LEASE}-{ns}"),
        None => LEASE.to_string(),
    };
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    Some(leader::Election::new(&namespace, &name, &identity))
}
