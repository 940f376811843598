//! The external listener's own TLS identity: a PEM key and chain for that listener alone
//! (KIP-651, Kafka 2.7 and later), so that the chart's listeners keep exactly the TLS (or none)
//! they had.
//!
//! Kafka reads the settings scoped to a listener (`listener.name.<name>.ssl.*`) over the
//! broker-wide ones, key by key. So a broker-wide setting that the external listener does not
//! override still applies to it, and three of them make a PEM store fail at start:
//! `ssl.keystore.password` ("SSL key store password cannot be specified with PEM format"),
//! `ssl.key.password` (an unencrypted key would be read as an encrypted one) and, when clients are
//! authenticated, `ssl.truststore.password`. An empty scoped value does not clear them (Kafka
//! reads it as a password too), so [`conflicts`] names them and the adapters refuse, or keep the
//! chart's start, rather than start a broker that would exit.

use super::listeners::SecurityProtocol;

/// The file in the TLS directory with the listener's private key followed by its certificate
/// chain, as Kafka's PEM `ssl.keystore.location` reads it.
pub const KEYSTORE_FILE: &str = "keystore.pem";
/// The file in the TLS directory with the certificates that client certificates are checked
/// against, when clients are authenticated.
pub const TRUSTSTORE_FILE: &str = "truststore.pem";

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub const ALL: [Self; 3] = [Self::None, Self::Requested, Self::Required];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Requested => "requested",
            Self::Required => "required",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The external listener's TLS: where its PEM files are, and whether it asks clients for
/// certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The directory holding [`KEYSTORE_FILE`] (and [`TRUSTSTORE_FILE`]) in the broker container.
    pub dir: String,
    pub client_auth: ClientAuth,
}

impl ListenerTls {
    /// The settings, without the listener's prefix, in the order they are written.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let dir = self.dir.trim_end_matches('/');
        let mut out = vec![
            ("ssl.keystore.type", "PEM".to_string()),
            ("ssl.keystore.location", format!("{dir}/{KEYSTORE_FILE}")),
            ("ssl.client.auth", self.client_auth.as_str().to_string()),
        ];
        if self.client_auth != ClientAuth::None {
            out.push(("ssl.truststore.type", "PEM".to_string()));
            out.push((
                "ssl.truststore.location",
                format!("{dir}/{TRUSTSTORE_FILE}"),
            ));
        }
        out
    }

    /// The broker-wide settings that would apply to this listener's PEM stores and make the
    /// broker fail at start (see the module's text).
    pub fn blocking_keys(&self) -> &'static [&'static str] {
        match self.client_auth {
            ClientAuth::None => &["ssl.keystore.password", "ssl.key.password"],
            _ => &[
                "ssl.keystore.password",
                "ssl.key.password",
                "ssl.truststore.password",
            ],
        }
    }
}

/// The listener's TLS as the injected steps read it from their environment ([`crate::envs`]):
/// `None` when [`crate::envs::TLS_DIR`] is unset or empty.
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<ListenerTls>, String> {
    let Some(dir) = var(crate::envs::TLS_DIR).filter(|d| !d.trim().is_empty()) else {
        return Ok(None);
    };
    let client_auth = match var(crate::envs::TLS_CLIENT_AUTH).filter(|v| !v.is_empty()) {
        None => ClientAuth::None,
        Some(v) => ClientAuth::parse(&v).ok_or_else(|| {
            format!(
                "{}={v:?}: allowed: none, requested, required",
                crate::envs::TLS_CLIENT_AUTH
            )
        })?,
    };
    Ok(Some(ListenerTls { dir, client_auth }))
}

/// The external listener's protocol once it speaks TLS: SSL, or SASL_SSL when the protocol it
/// would have had authenticates with SASL.
pub fn with_tls(protocol: SecurityProtocol) -> SecurityProtocol {
    match protocol {
        SecurityProtocol::Plaintext | SecurityProtocol::Ssl => SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => SecurityProtocol::SaslSsl,
    }
}

/// Whether a setting scoped to the client listener may be copied to a TLS external listener:
/// its `ssl.*` settings are the client listener's own identity, and the external listener has its
/// own.
pub fn copies_to_tls_listener(setting: &str) -> bool {
    !setting.starts_with("ssl.")
}

/// The broker-wide keys among `present` (property names) that leave no room for the listener's
/// PEM stores, in the order of [`ListenerTls::blocking_keys`].
pub fn conflicts<'a>(tls: &ListenerTls, present: impl Fn(&str) -> bool) -> Vec<&'a str>
where
    'static: 'a,
{
    tls.blocking_keys()
        .iter()
        .copied()
        .filter(|k| present(k))
        .collect()
}

/// What a user is told when broker-wide passwords leave no room for the listener's PEM stores.
pub fn conflict_message(keys: &[&str]) -> String {
    format!(
        "the broker's configuration sets {} for every listener, and Kafka refuses a password on a PEM key store (\"SSL key store password cannot be specified with PEM format\"), so the external listener cannot have its own certificate; a chart that sets these only under its own listeners' names (listener.name.<name>.ssl.*) leaves room for it",
        keys.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_keeps_sasl_and_adds_encryption() {
        use SecurityProtocol::*;
        assert_eq!(with_tls(Plaintext), Ssl);
        assert_eq!(with_tls(Ssl), Ssl);
        assert_eq!(with_tls(SaslPlaintext), SaslSsl);
        assert_eq!(with_tls(SaslSsl), SaslSsl);
    }

    #[test]
    fn a_truststore_only_when_clients_are_asked_for_certificates() {
        let mut tls = ListenerTls {
            dir: "/kafka-expose-tls/".into(),
            client_auth: ClientAuth::None,
        };
        let keys: Vec<_> = tls.settings().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "ssl.keystore.type",
                "ssl.keystore.location",
                "ssl.client.auth"
            ]
        );
        assert_eq!(
            tls.settings()[1].1,
            "/kafka-expose-tls/keystore.pem",
            "one slash"
        );
        tls.client_auth = ClientAuth::Required;
        let s = tls.settings();
        assert_eq!(s[2], ("ssl.client.auth", "required".into()));
        assert_eq!(
            s[4],
            (
                "ssl.truststore.location",
                "/kafka-expose-tls/truststore.pem".into()
            )
        );
        assert!(
            conflicts(&tls, |k| k == "ssl.truststore.password")
                .contains(&"ssl.truststore.password")
        );
        tls.client_auth = ClientAuth::None;
        assert!(conflicts(&tls, |k| k == "ssl.truststore.password").is_empty());
    }

    #[test]
    fn the_client_listeners_own_tls_is_not_copied() {
        assert!(!copies_to_tls_listener("ssl.keystore.location"));
        assert!(copies_to_tls_listener("plain.sasl.jaas.config"));
        assert!(copies_to_tls_listener("sasl.enabled.mechanisms"));
    }
}
