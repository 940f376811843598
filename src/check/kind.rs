//! The kinds of problem `check` reports, named for scripts: the `kind` of its JSON, in
//! kebab-case. The wire client's failures ([`super::client::Failure::kind`]) and the cluster
//! path's diagnoses ([`super::path`]) both name theirs here.

use serde::Serialize;

/// What is wrong, for scripts: the `kind` of the JSON report, in kebab-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The broker's name does not resolve.
    NameNotResolved,
    /// Nothing listens at the address, or a firewall rejects the connection.
    ConnectionRefused,
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// The connection failed otherwise.
    ConnectFailed,
    /// No answer within the request timeout.
    RequestTimeout,
    /// The connection closed during a request.
    ConnectionClosed,
    /// Reading or writing failed.
    IoError,
    /// The certificate does not name the address.
    TlsNameMismatch,
    /// The certificate is not trusted.
    TlsUntrusted,
    /// The TLS handshake failed otherwise.
    TlsFailed,
    /// The broker rejected the SASL credentials.
    SaslRejected,
    /// The broker does not offer the SASL mechanism.
    SaslMechanism,
    /// The broker answered with an error code.
    BrokerError,
    /// The broker speaks no version of a request this client speaks.
    Unsupported,
    /// What answered is not Kafka.
    NotKafka,
    /// No bootstrap address to try.
    NoBootstrap,
    /// A bootstrap address does not parse.
    BadBootstrap,
    /// No bootstrap address answered.
    BootstrapUnreachable,
    /// Not probed: the bootstrap gave no broker list.
    BootstrapUnanswered,
    /// The bootstrap answered with no broker.
    NoBrokers,
    /// A broker of another cluster answered.
    OtherCluster,
    /// Another broker answered at the advertised address.
    WrongNode,
    /// The advertised address cannot be dialled.
    NotDialable,
    /// The cluster's metadata does not list a broker the workload runs.
    NotAdvertised,
    /// No Service routes to the broker (or no bootstrap Service).
    NoService,
    /// The broker's pod does not exist.
    NoPod,
    /// The broker's pod is not Ready.
    PodNotReady,
    /// The broker's pod is being deleted.
    PodDeleting,
    /// The Service has no ready endpoint.
    NoReadyEndpoint,
    /// The LoadBalancer Service has no address yet.
    NoLoadBalancerAddress,
    /// The broker advertises an address its Service does not publish.
    AddressMismatch,
    /// The path in the cluster is right, yet another broker answers there.
    WrongRoute,
    /// The path in the cluster is complete: the network outside stops it.
    BlockedOutsideTheCluster,
    /// The broker advertises an address (or runs a certificate) it would no longer be given.
    StaleAddress,
}

impl ProblemKind {
    /// Every kind.
    pub const ALL: [Self; 34] = [
        Self::NameNotResolved,
        Self::ConnectionRefused,
        Self::ConnectTimeout,
        Self::ConnectFailed,
        Self::RequestTimeout,
        Self::ConnectionClosed,
        Self::IoError,
        Self::TlsNameMismatch,
        Self::TlsUntrusted,
        Self::TlsFailed,
        Self::SaslRejected,
        Self::SaslMechanism,
        Self::BrokerError,
        Self::Unsupported,
        Self::NotKafka,
        Self::NoBootstrap,
        Self::BadBootstrap,
        Self::BootstrapUnreachable,
        Self::BootstrapUnanswered,
        Self::NoBrokers,
        Self::OtherCluster,
        Self::WrongNode,
        Self::NotDialable,
        Self::NotAdvertised,
        Self::NoService,
        Self::NoPod,
        Self::PodNotReady,
        Self::PodDeleting,
        Self::NoReadyEndpoint,
        Self::NoLoadBalancerAddress,
        Self::AddressMismatch,
        Self::WrongRoute,
        Self::BlockedOutsideTheCluster,
        Self::StaleAddress,
    ];

    /// The name scripts read, as the JSON carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NameNotResolved => "name-not-resolved",
            Self::ConnectionRefused => "connection-refused",
            Self::ConnectTimeout => "connect-timeout",
            Self::ConnectFailed => "connect-failed",
            Self::RequestTimeout => "request-timeout",
            Self::ConnectionClosed => "connection-closed",
            Self::IoError => "io-error",
            Self::TlsNameMismatch => "tls-name-mismatch",
            Self::TlsUntrusted => "tls-untrusted",
            Self::TlsFailed => "tls-failed",
            Self::SaslRejected => "sasl-rejected",
            Self::SaslMechanism => "sasl-mechanism",
            Self::BrokerError => "broker-error",
            Self::Unsupported => "unsupported",
            Self::NotKafka => "not-kafka",
            Self::NoBootstrap => "no-bootstrap",
            Self::BadBootstrap => "bad-bootstrap",
            Self::BootstrapUnreachable => "bootstrap-unreachable",
            Self::BootstrapUnanswered => "bootstrap-unanswered",
            Self::NoBrokers => "no-brokers",
            Self::OtherCluster => "other-cluster",
            Self::WrongNode => "wrong-node",
            Self::NotDialable => "not-dialable",
            Self::NotAdvertised => "not-advertised",
            Self::NoService => "no-service",
            Self::NoPod => "no-pod",
            Self::PodNotReady => "pod-not-ready",
            Self::PodDeleting => "pod-deleting",
            Self::NoReadyEndpoint => "no-ready-endpoint",
            Self::NoLoadBalancerAddress => "no-load-balancer-address",
            Self::AddressMismatch => "address-mismatch",
            Self::WrongRoute => "wrong-route",
            Self::BlockedOutsideTheCluster => "blocked-outside-the-cluster",
            Self::StaleAddress => "stale-address",
        }
    }

    /// Whether the connection itself failed (refused, timed out, closed): what a network
    /// outside the cluster does when everything inside is in place.
    pub fn is_connection(self) -> bool {
        matches!(
            self,
            Self::ConnectionRefused
                | Self::ConnectTimeout
                | Self::ConnectFailed
                | Self::RequestTimeout
                | Self::ConnectionClosed
        )
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProblemKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("no problem kind {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_in_kebab_case_as_its_json_says() {
        for k in ProblemKind::ALL {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.as_str())
            );
            assert_eq!(k.as_str().parse::<ProblemKind>(), Ok(k));
        }
        let names: std::collections::BTreeSet<&str> =
            ProblemKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ProblemKind::ALL.len(), "no name twice");
    }
}
