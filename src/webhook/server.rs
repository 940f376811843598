//! The HTTPS server: accept, `TCP_NODELAY`, TLS handshake, HTTP/1.1 or HTTP/2, and a graceful
//! shutdown.
//!
//! `TCP_NODELAY` is set on every accepted socket: with Nagle's algorithm on, the small TLS records
//! of a response wait for the client's delayed ACK, about 40 ms on each new connection.
//!
//! Shutdown, on SIGTERM or SIGINT: readiness turns false at once; for the drain period the server
//! keeps accepting and answering, and tells HTTP/1.1 keep-alive clients `Connection: close`, while
//! endpoints stop sending it traffic; then it stops accepting, lets requests in flight finish
//! (HTTP/2 clients get GOAWAY), and returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::tls::{self, CertStore};
use super::{AppState, admin_router, router};

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may take to finish once the drain period is over.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    /// How long to keep serving, with `Connection: close`, after shutdown begins.
    pub shutdown_grace: Duration,
    pub reload_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("could not listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        error: std::io::Error,
    },
}

/// The addresses actually bound (useful with port 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
}

/// Binds both ports and serves until `shutdown` resolves, then drains and returns.
/// `on_bound` is called once both listeners are bound.
pub async fn serve(
    cfg: ServeConfig,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()>,
    on_bound: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    let store: Arc<CertStore> = CertStore::load(&cfg.cert_file, &cfg.key_file)?;
    let acceptor = TlsAcceptor::from(tls::server_config(store.clone())?);

    let admin = TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|error| ServeError::Bind {
            addr: cfg.admin_listen,
            error,
        })?;
    let admin_addr = admin.local_addr().unwrap_or(cfg.admin_listen);
    let (stop_tx, stop_rx) = watch::channel(false);
    let admin_app = admin_router(state.clone());
    let mut admin_stop = stop_rx.clone();
    let admin_task = tokio::spawn(async move {
        let _ = axum::serve(admin, admin_app)
            .with_graceful_shutdown(async move {
                let _ = admin_stop.wait_for(|s| *s).await;
            })
            .await;
    });

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|error| ServeError::Bind {
            addr: cfg.listen,
            error,
        })?;
    let addr = listener.local_addr().unwrap_or(cfg.listen);
    state.readiness.set_listening();
    tracing::info!(%addr, admin = %admin_addr, "webhook serving HTTPS");
    on_bound(Bound {
        webhook: addr,
        admin: admin_addr,
    });

    let watcher = tokio::spawn(tls::watch_files(
        store,
        state.metrics.clone(),
        cfg.reload_interval,
        stop_rx.clone(),
    ));

    let app = router(state.clone());
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    let mut drain_deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown, if drain_deadline.is_none() => {
                state.readiness.set_draining();
                tracing::info!(grace = ?cfg.shutdown_grace, "shutting down: not ready, draining");
                drain_deadline = Some(Box::pin(tokio::time::sleep(cfg.shutdown_grace)));
                continue;
            }
            _ = async { drain_deadline.as_mut().expect("set").await }, if drain_deadline.is_some() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        prepare_socket(&stream);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("no longer accepting; finishing requests in flight");
    if tokio::time::timeout(FINISH_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {FINISH_TIMEOUT:?}; closing");
    }
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// Sets `TCP_NODELAY` on an accepted socket.
pub fn prepare_socket(stream: &tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nagle_off() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr);
        let ((server, _), _client) = tokio::join!(async { l.accept().await.unwrap() }, client);
        assert!(!server.nodelay().unwrap());
        prepare_socket(&server);
        assert!(server.nodelay().unwrap());
    }
}
