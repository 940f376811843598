//! A CA and a serving certificate for the webhook, made with rcgen: the dev certificates of
//! `serve --dev-certs` and the output of `kafka-expose certs`.
//!
//! The serving certificate names `localhost`, `127.0.0.1` and the webhook Service's DNS names
//! (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local`), which is what the
//! API server dials for a `clientConfig.service`. Keeping them in a Secret and setting a
//! webhook's `caBundle` is the cluster's side: [`crate::cluster::certs`].

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// File names in a certificate directory, as a Kubernetes TLS Secret names its keys.
pub const CA_CERT: &str = "ca.crt";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// Validity of the CA, in years.
pub const CA_YEARS: i32 = 10;
/// Validity of the serving certificate, in years; cert-manager rotates real installs sooner.
pub const SERVING_YEARS: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("could not make a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("could not write {path}")]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

/// A CA, and a serving certificate and key it signed, in PEM.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Bundle {
    /// The CA, base64-encoded, as a webhook configuration's `caBundle` takes it.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes())
    }
}

/// The DNS names of the webhook, for its Service `name` in `namespace`.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        "localhost".into(),
        service.into(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn this_year() -> i32 {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    1970 + (days as f64 / 365.2425) as i32
}

/// Makes a new CA and a serving certificate for `dns` names and 127.0.0.1.
pub fn generate(dns: &[String]) -> Result<Bundle, CertError> {
    let year = this_year();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kafka-expose CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    ca.not_after = rcgen::date_time_ymd(year + CA_YEARS, 1, 1);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns.to_vec())?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        dns.get(1).cloned().unwrap_or_else(|| "kafka-expose".into()),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + SERVING_YEARS, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Bundle {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a bundle as `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`.
pub fn write(dir: &Path, b: &Bundle) -> Result<(), CertError> {
    let werr = |path: PathBuf| move |error| CertError::Write { path, error };
    std::fs::create_dir_all(dir).map_err(werr(dir.to_path_buf()))?;
    for (name, pem, private) in [
        (CA_CERT, &b.ca_pem, false),
        (TLS_CERT, &b.cert_pem, false),
        (TLS_KEY, &b.key_pem, true),
    ] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, pem).map_err(werr(tmp.clone()))?;
        if private {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                .map_err(werr(tmp.clone()))?;
        }
        std::fs::rename(&tmp, &path).map_err(werr(path.clone()))?;
    }
    Ok(())
}

/// The dev certificates in `dir`: kept when all three files exist, made otherwise. Returns
/// whether they were made.
pub fn ensure_dev(dir: &Path, dns: &[String]) -> Result<bool, CertError> {
    if [CA_CERT, TLS_CERT, TLS_KEY]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        return Ok(false);
    }
    write(dir, &generate(dns)?)?;
    Ok(true)
}

/// The rustls crypto provider kafka-expose uses everywhere: the webhook's server and `check`'s
/// client.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
