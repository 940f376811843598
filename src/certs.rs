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

/// How long a certificate made here is valid: the serving certificate one year, from an hour
/// before it is made (clocks drift), and its CA for as long plus a day. The CA's key is not kept:
/// every renewal makes a new CA, and [`crate::cluster::certs`] rolls it over with both CAs
/// trusted for a while, so no admission fails across the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub serving: std::time::Duration,
}

impl Default for Validity {
    fn default() -> Self {
        Self {
            serving: std::time::Duration::from_secs(365 * 86_400),
        }
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Its serial number, in lowercase hex: what tells one issue from the next.
    pub serial: String,
    /// The end of its validity, in seconds since the epoch.
    pub not_after: i64,
    /// Its subject alternative names: DNS names and IP addresses, as text.
    pub names: Vec<String>,
}

/// Reads every certificate of a PEM text (a chain or a CA bundle), in order.
pub fn inspect(pem: &str) -> Result<Vec<CertFacts>, CertError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let out = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|der| inspect_der(&der.map_err(|e| CertError::Parse(e.to_string()))?))
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Err(CertError::Parse("no PEM certificate".into()));
    }
    Ok(out)
}

/// Reads one DER certificate.
pub fn inspect_der(der: &[u8]) -> Result<CertFacts, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    if let Ok(b) = <[u8; 4]>::try_from(*ip) {
                        names.push(std::net::Ipv4Addr::from(b).to_string());
                    } else if let Ok(b) = <[u8; 16]>::try_from(*ip) {
                        names.push(std::net::Ipv6Addr::from(b).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertFacts {
        serial: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        not_after: cert.validity().not_after.timestamp(),
        names,
    })
}

/// Whether a certificate with these subject alternative names is valid for `host`, as a client
/// that verifies host names (Kafka's `ssl.endpoint.identification.algorithm=https`) checks it: an
/// address only against IP names, a DNS name case-insensitively, and a `*.` wildcard for exactly
/// one leftmost label (RFC 6125).
pub fn names_host(names: &[String], host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return names
            .iter()
            .any(|n| n.parse::<std::net::IpAddr>().is_ok_and(|m| m == ip));
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    names.iter().any(|n| {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        match n.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => n == host,
        }
    })
}

/// Why a leaf certificate could not serve `host` at `now` (seconds since the epoch), as the gate
/// judges the one it starts a broker with; `None` where it could. The restarts judge a renewed
/// certificate by the same rule before restarting a broker for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// It does not name the host ([`names_host`]).
    NotNamed,
    /// It has ended.
    Ended,
}

pub fn unfit_for(leaf: &CertFacts, host: &str, now: i64) -> Option<Unfit> {
    if !names_host(&leaf.names, host) {
        Some(Unfit::NotNamed)
    } else if leaf.not_after <= now {
        Some(Unfit::Ended)
    } else {
        None
    }
}

/// A certificate for one broker's external listener, signed with a CA key pair (`ca:`): its
/// subject alternative names are exactly `hosts` (an IP name for an address, a DNS name for a
/// name), the first of them, the broker's own, its common name; for server and client
/// authentication, valid from an hour ago (clocks drift) for `lifetime`.
pub fn sign_broker(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    hosts: &[String],
    lifetime: std::time::Duration,
) -> Result<(String, String), CertError> {
    let Some(host) = hosts.first() else {
        return Err(CertError::Parse("no host to name".into()));
    };
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| {
        CertError::Parse(format!(
            "the CA's key (a PKCS#8 PEM key: RSA, ECDSA P-256/P-384 or Ed25519): {e}"
        ))
    })?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|e| CertError::Parse(format!("the CA's certificate: {e}")))?;
    let san = |host: &String| match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => Ok(SanType::DnsName(host.as_str().try_into().map_err(|e| {
            CertError::Parse(format!("{host:?} as a DNS name: {e}"))
        })?)),
    };
    let now = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(unix_secs());
    let mut params = CertificateParams::default();
    params.subject_alt_names = hosts.iter().map(san).collect::<Result<_, CertError>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host.as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + lifetime;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Why a broker's certificate must be signed again, or `None` while it serves: it is missing, it
/// does not name exactly `hosts`, another CA than `ca_pem` signed it, or less than `renew_before`
/// of it is left at `now` (seconds since the epoch).
pub fn resign_reason(
    cert_pem: Option<&str>,
    its_ca: Option<&str>,
    ca_pem: &str,
    hosts: &[String],
    now: i64,
    renew_before: std::time::Duration,
    duration: std::time::Duration,
) -> Option<String> {
    let Some(pem) = cert_pem else {
        return Some("it has no certificate yet".into());
    };
    let facts = match inspect(pem) {
        Ok(f) => f,
        Err(e) => return Some(format!("its certificate cannot be read ({e})")),
    };
    let leaf = &facts[0];
    if !same_names(&leaf.names, hosts) {
        return Some(format!(
            "its certificate names {}, and the broker needs {}",
            leaf.names.join(", "),
            hosts.join(", ")
        ));
    }
    if its_ca.map(str::trim) != Some(ca_pem.trim()) {
        return Some("the CA changed".into());
    }
    let left = leaf.not_after - now;
    // A shortened `external-tls-duration` applies now, not at the old certificate's renewal
    // (a minute's leeway for the clocks of two replicas).
    let longest = duration.as_secs() as i64 + 60;
    if left > longest {
        return Some(format!(
            "its certificate runs {left}s more, longer than the duration of {}s",
            duration.as_secs()
        ));
    }
    if left <= renew_before.as_secs() as i64 {
        return Some(format!(
            "its certificate ends in {}s, within the renewal time of {}s",
            left.max(0),
            renew_before.as_secs()
        ));
    }
    None
}

/// Whether a certificate's subject alternative names are exactly `hosts`, in any order: addresses
/// compared as addresses, DNS names without case or a final dot.
pub fn same_names(names: &[String], hosts: &[String]) -> bool {
    let norm = |h: &String| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        match h.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => h.trim_end_matches('.').to_ascii_lowercase(),
        }
    };
    let set = |v: &[String]| {
        v.iter()
            .map(norm)
            .collect::<std::collections::BTreeSet<_>>()
    };
    set(names) == set(hosts)
}

/// Splits a PEM bundle into its certificates' PEM texts.
pub fn split_pem(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in pem.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            cur.clear();
        }
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END CERTIFICATE-----") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    // Never the key's text: these errors reach logs and Events.
    #[error("could not read a certificate: {0}")]
    Parse(String),
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

/// Makes a new CA and a serving certificate for `dns` names and 127.0.0.1, valid for a year.
pub fn generate(dns: &[String]) -> Result<Bundle, CertError> {
    generate_for(dns, Validity::default())
}

/// [`generate`], valid for `validity`.
pub fn generate_for(dns: &[String], validity: Validity) -> Result<Bundle, CertError> {
    let now = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(unix_secs());
    let not_before = now - std::time::Duration::from_secs(3600);
    let not_after = now + validity.serving;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kafka-expose CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after + std::time::Duration::from_secs(86_400);
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
    params.not_before = not_before;
    params.not_after = not_after;
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

/// Seconds since the epoch, by this machine's clock.
fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How long before its end a dev certificate is made anew.
const DEV_RENEW_BEFORE: i64 = 30 * 86_400;

/// The dev certificates in `dir`: kept when all three files exist, name `dns` and have more than
/// 30 days left; made otherwise. Returns whether they were made.
pub fn ensure_dev(dir: &Path, dns: &[String]) -> Result<bool, CertError> {
    let now = unix_secs() as i64;
    let usable = [CA_CERT, TLS_CERT, TLS_KEY]
        .iter()
        .all(|f| dir.join(f).is_file())
        && std::fs::read_to_string(dir.join(TLS_CERT))
            .ok()
            .and_then(|pem| inspect(&pem).ok())
            .and_then(|c| c.into_iter().next())
            .is_some_and(|leaf| {
                leaf.not_after - now > DEV_RENEW_BEFORE
                    && dns.iter().all(|n| leaf.names.contains(n))
            });
    if usable {
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

#[cfg(test)]
mod renewal_tests {
    use super::*;

    #[test]
    fn dev_certificates_near_their_end_or_for_other_names_are_made_anew() {
        let dir = std::env::temp_dir().join(format!("kx-dev-certs-{}", std::process::id()));
        let dns = dns_names("kafka-expose", "kafka-expose");
        let short = generate_for(
            &dns,
            Validity {
                serving: std::time::Duration::from_secs(86_400),
            },
        )
        .unwrap();
        write(&dir, &short).unwrap();
        assert!(ensure_dev(&dir, &dns).unwrap(), "a day left: made anew");
        assert!(!ensure_dev(&dir, &dns).unwrap(), "a year left: kept");
        let other = dns_names("renamed", "kafka-expose");
        assert!(ensure_dev(&dir, &other).unwrap(), "other names: made anew");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn inspect_reads_the_end_and_the_names_of_every_certificate() {
        let dns = dns_names("kx", "ns");
        let b = generate(&dns).unwrap();
        let leaf = inspect(&b.cert_pem).unwrap().remove(0);
        assert!(leaf.names.contains(&"kx.ns.svc".to_string()));
        assert!(leaf.names.contains(&"127.0.0.1".to_string()));
        let two = format!("{}{}", b.ca_pem, generate(&dns).unwrap().ca_pem);
        assert_eq!(split_pem(&two).len(), 2);
        assert_eq!(inspect(&two).unwrap().len(), 2);
        assert!(inspect("not a certificate").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ca() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "a user's CA");
        p.distinguished_name = dn;
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn a_broker_certificate_names_exactly_its_host_and_is_renewed_when_it_must_be() {
        let (ca_pem, ca_key) = ca();
        let now = unix_secs() as i64;
        let day = Duration::from_secs(86_400);
        for host in ["203.0.113.7", "kafka-0.example.com", "2001:db8::7"] {
            let (cert, key) = sign_broker(&ca_pem, &ca_key, &[host.into()], 90 * day).unwrap();
            assert!(key.contains("BEGIN PRIVATE KEY"));
            let facts = inspect(&cert).unwrap();
            assert_eq!(facts[0].names, [host], "exactly the advertised host");
            let reason = |h: &str, ca: &str, now: i64| {
                resign_reason(
                    Some(&cert),
                    Some(ca),
                    &ca_pem,
                    &[h.into()],
                    now,
                    30 * day,
                    90 * day,
                )
            };
            assert_eq!(reason(host, &ca_pem, now), None, "{host}: it serves");
            assert!(
                reason("198.51.100.1", &ca_pem, now)
                    .unwrap()
                    .contains("needs 198.51.100.1")
            );
            assert!(
                reason(host, "another CA", now)
                    .unwrap()
                    .contains("CA changed")
            );
            let late = now + 61 * 86_400;
            assert!(
                reason(host, &ca_pem, late)
                    .unwrap()
                    .contains("within the renewal time")
            );
            // The duration shortened to three minutes: signed again now, not in 60 days.
            let shorter = resign_reason(
                Some(&cert),
                Some(&ca_pem),
                &ca_pem,
                &[host.into()],
                now,
                Duration::from_secs(120),
                Duration::from_secs(180),
            )
            .unwrap();
            assert!(
                shorter.contains("longer than the duration of 180s"),
                "{shorter}"
            );
        }
        assert!(
            resign_reason(None, None, &ca_pem, &["h".into()], 0, day, 90 * day)
                .unwrap()
                .contains("no certificate")
        );
    }

    #[test]
    fn a_broker_certificate_may_also_name_the_bootstrap_and_is_signed_again_when_those_change() {
        let (ca_pem, ca_key) = ca();
        let now = unix_secs() as i64;
        let day = Duration::from_secs(86_400);
        let hosts: Vec<String> = vec!["203.0.113.7".into(), "Bootstrap.Example.com.".into()];
        let (cert, _) = sign_broker(&ca_pem, &ca_key, &hosts, 90 * day).unwrap();
        let names = inspect(&cert).unwrap().remove(0).names;
        assert!(names_host(&names, "203.0.113.7") && names_host(&names, "bootstrap.example.com"));
        let reason = |hosts: &[&str]| {
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            resign_reason(
                Some(&cert),
                Some(&ca_pem),
                &ca_pem,
                &hosts,
                now,
                day,
                90 * day,
            )
        };
        assert_eq!(
            reason(&["bootstrap.example.com", "203.0.113.7"]),
            None,
            "any order"
        );
        assert!(
            reason(&["203.0.113.7"])
                .unwrap()
                .contains("needs 203.0.113.7")
        );
        assert!(reason(&["203.0.113.7", "bootstrap.example.com", "198.51.100.2"]).is_some());
        assert!(sign_broker(&ca_pem, &ca_key, &[], day).is_err());
    }

    #[test]
    fn a_bad_ca_is_a_clear_error_without_key_text() {
        let (ca_pem, ca_key) = ca();
        let e = sign_broker(
            &ca_pem,
            "not a key",
            &["h.example.com".into()],
            Duration::from_secs(60),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("the CA's key"), "{e}");
        let e = sign_broker(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &ca_key,
            &["h".into()],
            Duration::from_secs(60),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("the CA's certificate"), "{e}");
        assert!(!e.contains(ca_key.lines().nth(1).unwrap()));
    }
}
