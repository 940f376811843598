//! TLS for the client: rustls, with the trust roots of `--ca-file` or of the system, and an
//! opt-in mode that skips verification while still reporting what it skipped.
//!
//! Whether the certificate names the host is reported on its own, verified or not: an advertised
//! address that the broker's certificate does not carry is the most common TLS exposure failure
//! (a client that verifies, which is every Java client by default since Kafka 2.0's
//! `ssl.endpoint.identification.algorithm=https`, refuses it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::certs::provider;

/// How the client trusts brokers.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The PEM certificates of this file (the `ssl.truststore` a client would use).
    CaFile(PathBuf),
    /// The system's trust store.
    System,
    /// Accept any certificate: the chain and the name are not verified, and the report says so.
    SkipVerify,
}

/// A TLS client set up once and used for every connection of a run.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    /// False when verification is skipped.
    pub verifies: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("verifies", &self.verifies)
            .finish()
    }
}

/// What was learnt about a broker's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// The certificate carries the host the client connected to (DNS name or IP address).
    pub names_host: bool,
    /// The chain was verified against the trust roots (false under `SkipVerify`).
    pub verified: bool,
    /// The names the certificate presents, when they are known.
    pub presented: Vec<String>,
}

impl Tls {
    pub fn new(trust: &Trust) -> Result<Self, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        let (config, verifies) = match trust {
            Trust::SkipVerify => (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(SkipVerify(provider.clone())))
                    .with_no_client_auth(),
                false,
            ),
            Trust::CaFile(path) => (
                builder
                    .with_root_certificates(roots_from_file(path)?)
                    .with_no_client_auth(),
                true,
            ),
            Trust::System => {
                let mut roots = RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err("the system has no trust roots: give --ca-file".into());
                }
                (
                    builder.with_root_certificates(roots).with_no_client_auth(),
                    true,
                )
            }
        };
        Ok(Self {
            config: Arc::new(config),
            verifies,
        })
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Reads the facts off a finished handshake's leaf certificate.
    pub fn facts(&self, leaf: Option<&CertificateDer<'_>>, host: &ServerName<'_>) -> TlsFacts {
        let Some(leaf) = leaf else {
            return TlsFacts {
                names_host: false,
                verified: self.verifies,
                presented: Vec::new(),
            };
        };
        let (names_host, presented) = match ParsedCertificate::try_from(leaf) {
            Ok(parsed) => match rustls::client::verify_server_name(&parsed, host) {
                Ok(()) => (true, Vec::new()),
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext { presented, .. },
                )) => (false, plain_names(&presented)),
                Err(_) => (false, Vec::new()),
            },
            Err(_) => (false, Vec::new()),
        };
        TlsFacts {
            names_host,
            verified: self.verifies,
            presented,
        }
    }
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "--ca-file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// Accepts every certificate chain and name, and still checks the handshake's signatures, so the
/// session is with whoever holds the presented certificate's key.
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a refused handshake reads to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// The certificate does not carry the host; the names it carries.
    NameMismatch(Vec<String>),
    /// The chain does not lead to a trusted root, or is expired or otherwise invalid.
    Untrusted(String),
    /// Anything else: a protocol alert, no common cipher suite, not TLS at all.
    Other(String),
}

/// A name the certificate carries, as a person writes it. rustls gives the names of a
/// certificate that does not name the host in webpki's debug form (`DnsName("kafka-0.example")`,
/// `IpAddress(10.0.0.1)`); other kinds (a URI, a directory name) keep that form.
fn plain_names(presented: &[String]) -> Vec<String> {
    presented
        .iter()
        .map(|n| plain_name(n).to_string())
        .collect()
}

/// One name of [`plain_names`].
fn plain_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

/// Classifies a handshake error from rustls (found as the source of an I/O error).
pub fn classify(error: &std::io::Error) -> HandshakeRefusal {
    let tls = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)) => {
            HandshakeRefusal::NameMismatch(Vec::new())
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        })) => HandshakeRefusal::NameMismatch(plain_names(presented)),
        Some(rustls::Error::InvalidCertificate(e)) => HandshakeRefusal::Untrusted(e.to_string()),
        Some(e) => HandshakeRefusal::Other(e.to_string()),
        None => HandshakeRefusal::Other(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_a_certificate_carries_read_as_a_person_writes_them() {
        assert_eq!(
            plain_name("DnsName(\"kafka-0.example\")"),
            "kafka-0.example"
        );
        assert_eq!(
            plain_name("DnsName(\"*.kafka.example\")"),
            "*.kafka.example"
        );
        assert_eq!(plain_name("IpAddress(10.79.0.12)"), "10.79.0.12");
        assert_eq!(plain_name("IpAddress(2001:db8::1)"), "2001:db8::1");
        for other in [
            "UniformResourceIdentifier(\"spiffe://x\")",
            "DirectoryName",
            "DnsName(\"",
            "",
        ] {
            assert_eq!(plain_name(other), other);
        }
    }
}
