//! `kafka-expose serve`: the webhook over HTTPS and its admin port, and, with cluster
//! credentials, the cluster runtime ([`crate::cluster::runtime`]: the caches the webhook reads,
//! and the leader's controllers). This file only wires flags to them. SIGTERM drains both.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::counted_cluster_client;
use crate::certs;
use crate::cli::ServeArgs;
use crate::cluster::caches::LiveServices;
use crate::cluster::runtime;
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
        restart_settle,
        restart_progress_deadline,
        shutdown_grace,
        certs_secret,
        certs_webhook,
        certs_check_every,
        registrar,
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
        let reconciler = match counted_cluster_client(&state.metrics).await {
            Ok(client) => {
                let runtime_cfg = runtime::Config {
                    options: runtime::Options {
                        namespace: watch_namespace.clone(),
                        lb_pending_warning,
                        periods: runtime::Periods {
                            restarts: runtime::RestartSettings {
                                settle: restart_settle,
                                progress_deadline: restart_progress_deadline,
                                ..runtime::RestartSettings::default()
                            },
                            ..runtime::Periods::default()
                        },
                        policy_client: None,
                        registrar: registrar.options(),
                    },
                    leader_elect,
                    service_name: service.service_name.clone(),
                    service_namespace: service.service_namespace.clone(),
                    certs: certs_secret.clone().zip(certs_webhook.clone()),
                    renew: renew.policy(),
                    certs_check_every,
                    patcher_image_set: engine.patcher_image.is_some(),
                };
                state.services = Some(Arc::new(LiveServices(client.clone())));
                let started = runtime::start(
                    client,
                    runtime_cfg,
                    state.settings.clone(),
                    state.metrics.clone(),
                    state.readiness.clone(),
                    stopped(stop_rx.clone()),
                )
                .await;
                state.settings = started.settings;
                state.lb_addresses = Arc::new(started.caches.services);
                state.policies = Some(Arc::new(started.caches.policies));
                state.bindings = Some(Arc::new(started.caches.bindings));
                Some(started.task)
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
