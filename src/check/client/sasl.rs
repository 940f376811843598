//! SASL for the client: SaslHandshake v1 names the mechanism, then each step of an `rsasl`
//! session travels in a SaslAuthenticate request (KIP-152). PLAIN takes one step; SCRAM takes
//! two, and the second answer's server signature is verified by `rsasl`.
//!
//! The password lives in [`Secret`], whose `Debug` prints nothing, and is never part of an error.

use std::fmt;
use std::io::Cursor;
use std::str::FromStr;

use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rsasl::prelude::{Mechname, MessageSent, SASLClient, SASLConfig, State};

use super::guard::versions;
use super::{Connection, Failure};

/// A SASL mechanism this client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl FromStr for Mechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err(format!(
                "{s:?}: allowed: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
            )),
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password, kept out of every `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(s)
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// SASL credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: Secret,
}

/// Runs the SASL exchange on a fresh connection.
pub async fn authenticate(conn: &mut Connection, creds: &Credentials) -> Result<(), Failure> {
    let mechanism = creds.mechanism.as_str();
    let rejected = |message: String| Failure::SaslRejected {
        mechanism: mechanism.to_string(),
        message,
    };
    let what = "SaslHandshake";
    let v = conn
        .version(ApiKey::SaslHandshake, versions::SASL_HANDSHAKE)
        .ok_or(Failure::Unsupported { what })?;
    let r = conn
        .send(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
            v,
            what,
        )
        .await?;
    if r.error_code != 0 {
        let offered: Vec<String> = r.mechanisms.iter().map(|m| m.to_string()).collect();
        return Err(if offered.iter().any(|m| m == mechanism) {
            Failure::broker(what, r.error_code)
        } else {
            Failure::SaslMechanism {
                mechanism: mechanism.to_string(),
                offered,
            }
        });
    }

    let what = "SaslAuthenticate";
    let v = conn
        .version(ApiKey::SaslAuthenticate, versions::SASL_AUTHENTICATE)
        .ok_or(Failure::Unsupported { what })?;
    let config = SASLConfig::with_credentials(
        None,
        creds.username.clone(),
        creds.password.expose().to_string(),
    )
    .map_err(|e| rejected(format!("SASL set-up: {e}")))?;
    let name = Mechname::parse(mechanism.as_bytes()).map_err(|e| rejected(e.to_string()))?;
    let mut session = SASLClient::new(config)
        .start_suggested(&[name])
        .map_err(|e| rejected(format!("SASL set-up: {e}")))?;
    let mut input: Option<Vec<u8>> = None;
    loop {
        let mut out = Cursor::new(Vec::new());
        let state = session
            .step(input.as_deref(), &mut out)
            .map_err(|e| rejected(format!("the broker's answer did not verify: {e}")))?;
        let send = match state {
            State::Running | State::Finished(MessageSent::Yes) => true,
            State::Finished(MessageSent::No) => false,
        };
        if send {
            let r = conn
                .send(
                    &SaslAuthenticateRequest::default().with_auth_bytes(out.into_inner().into()),
                    v,
                    what,
                )
                .await?;
            if r.error_code != 0 {
                let message = r
                    .error_message
                    .map(|m| m.to_string())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| format!("error code {}", r.error_code));
                return Err(rejected(message));
            }
            input = Some(r.auth_bytes.to_vec());
        }
        if matches!(state, State::Finished(_)) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            mechanism: Mechanism::ScramSha512,
            username: "alice".into(),
            password: Secret::new("hunter2".into()),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice"));
    }

    #[test]
    fn mechanisms_parse_as_kafka_spells_them() {
        assert_eq!(
            "scram-sha-256".parse::<Mechanism>(),
            Ok(Mechanism::ScramSha256)
        );
        assert!("GSSAPI".parse::<Mechanism>().is_err());
    }
}
