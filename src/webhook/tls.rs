//! TLS for the webhook: rustls with TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 offered by ALPN,
//! and a serving certificate that is swapped in place when its files change.
//!
//! A mounted Secret changes by an atomic swap of a symlinked directory, and cert-manager rewrites
//! files, so a single inotify event is not to be relied on. The files are read again on a short
//! interval and the certificate is replaced when their bytes change and form a matching pair;
//! handshakes in progress keep the certificate they started with, open connections are not
//! touched, and a half-written pair (a new certificate with the old key) is skipped until both
//! files agree.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How often the certificate files are read again: rotation is picked up well within 10 s.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("the certificate and key do not form a usable pair")]
    Pair(#[source] rustls::Error),
    #[error("TLS configuration failed")]
    Config(#[source] rustls::Error),
}

pub use crate::certs::provider;

/// Parses a PEM certificate chain and key into a checked pair.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey {
        path: key_path.to_path_buf(),
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Pair)
}

/// The serving certificate, read from files and swapped when they change.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    loaded: std::sync::Mutex<(Vec<u8>, Vec<u8>)>,
}

impl CertStore {
    /// Loads the pair; an error here stops the server from starting.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let (cert, key) = read_pair(cert_path, key_path)?;
        let ck = certified_key(&cert, &key, cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from_pointee(ck),
            loaded: std::sync::Mutex::new((cert, key)),
        }))
    }

    /// Reads the files again; swaps the certificate when they changed and form a pair.
    /// `Ok(true)` when a new certificate was installed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert, key) = read_pair(&self.cert_path, &self.key_path)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.0 == cert && loaded.1 == key {
            return Ok(false);
        }
        let ck = certified_key(&cert, &key, &self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(ck));
        *loaded = (cert, key);
        Ok(true)
    }

    /// The certificate chain now served.
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().cert.clone()
    }

    /// When the served certificate ends, in seconds since the epoch.
    pub fn not_after(&self) -> Option<i64> {
        let chain = self.current.load();
        crate::certs::inspect_der(chain.cert.first()?)
            .ok()
            .map(|c| c.not_after)
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|error| TlsError::Read {
            path: p.to_path_buf(),
            error,
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server configuration: TLS 1.2 and 1.3, h2 and http/1.1 by ALPN.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Reads the certificate files every `interval` until `stop` turns true.
pub async fn watch_files(
    store: Arc<CertStore>,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(t) = store.not_after() {
        metrics.cert_expiry.set(t);
    }
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match store.reload() {
            Ok(true) => {
                metrics.cert_reloads.inc();
                if let Some(t) = store.not_after() {
                    metrics.cert_expiry.set(t);
                }
                tracing::info!(cert = %store.cert_path.display(), "serving certificate reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                metrics.cert_reload_errors.inc();
                tracing::warn!(error = %crate::engine::error_chain(&e), "serving certificate not reloaded; keeping the current one");
            }
        }
    }
}
