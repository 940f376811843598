//! The outside view: Metadata through the bootstrap, then a connection to every broker at the
//! address it advertises on that listener, each asked who it is.
//!
//! Metadata from the bootstrap succeeding proves little: the bootstrap can be reachable while no
//! broker is reachable at the address it advertises, which is how exposure usually fails. So
//! every advertised broker is dialled, concurrently, each within the connect and request
//! timeouts, and must answer Metadata for the same cluster and say that it is the node the
//! cluster advertises there.

use crate::check::kind::ProblemKind;
use std::time::Duration;

use futures::future::join_all;

use super::report::{
    AddressProblem, Bootstrap, BrokerReport, Identity, Problem, Target, TlsReport,
};
use crate::check::client::{
    Address, AdvertisedBroker, ClusterMetadata, Connection, Identity as ClientIdentity, Security,
    Timeouts, host_port,
};

/// The outcome of the bootstrap and of each advertised broker, before any cluster view.
pub async fn probe(servers: &[Address], security: &Security, timeouts: Timeouts) -> Target {
    let mut bootstrap = Bootstrap {
        servers: servers.iter().map(|a| a.to_string()).collect(),
        ..Bootstrap::default()
    };
    let mut found: Option<ClusterMetadata> = None;
    for addr in servers {
        let answer = async {
            let mut conn = Connection::open(addr, security, timeouts).await?;
            conn.metadata().await
        }
        .await;
        match answer {
            Ok((meta, rtt)) => {
                bootstrap.answered_by = Some(addr.to_string());
                bootstrap.rtt_ms = Some(millis(rtt));
                bootstrap.cluster_id = meta.cluster_id.clone();
                bootstrap.controller_id = Some(meta.controller_id);
                found = Some(meta);
                break;
            }
            Err(f) => bootstrap.failures.push(AddressProblem {
                address: addr.to_string(),
                problem: Problem::from(&f),
            }),
        }
    }
    let Some(meta) = found else {
        bootstrap.problem = Some(match bootstrap.failures.as_slice() {
            [] => Problem::new(ProblemKind::NoBootstrap, "no bootstrap address to try"),
            [one] => one.problem.clone(),
            _ => Problem::new(
                ProblemKind::BootstrapUnreachable,
                "no bootstrap address answered (each one's reason is listed)",
            ),
        });
        if bootstrap.failures.len() == 1 {
            bootstrap.failures.clear();
        }
        return Target {
            workload: None,
            bootstrap,
            brokers: Vec::new(),
            ok: false,
        };
    };
    if meta.brokers.is_empty() {
        bootstrap.problem = Some(Problem::new(
            ProblemKind::NoBrokers,
            "the cluster advertises no broker on this listener",
        ));
    }
    let cluster_id = meta.cluster_id.clone();
    let mut brokers = meta.brokers;
    brokers.sort_by_key(|b| b.node_id);
    let reports = join_all(
        brokers
            .iter()
            .map(|b| broker(b, cluster_id.as_deref(), security, timeouts)),
    )
    .await;
    let ok = !reports.is_empty() && reports.iter().all(|r| r.ok);
    Target {
        workload: None,
        bootstrap,
        brokers: reports,
        ok,
    }
}

/// Dials one advertised broker and asks it Metadata and who it is.
async fn broker(
    b: &AdvertisedBroker,
    cluster_id: Option<&str>,
    security: &Security,
    timeouts: Timeouts,
) -> BrokerReport {
    let mut report = BrokerReport {
        node_id: Some(b.node_id),
        advertised: Some(host_port(&b.host, b.port)),
        rack: b.rack.clone(),
        ..BrokerReport::default()
    };
    let addr = match Address::advertised(&b.host, b.port) {
        Ok(a) => a,
        Err(e) => {
            report.problem = Some(Problem::new(ProblemKind::NotDialable, e));
            return report;
        }
    };
    let Some((mut conn, meta)) = dial(&addr, security, timeouts, &mut report).await else {
        return report;
    };
    if cluster_id.is_some() && meta.cluster_id.as_deref() != cluster_id {
        report.problem = Some(Problem::new(
            ProblemKind::OtherCluster,
            format!(
                "a broker of another cluster ({}) answers here: the address is routed to the wrong place",
                meta.cluster_id.as_deref().unwrap_or("no id")
            ),
        ));
        return report;
    }
    match conn.identify(b.node_id).await {
        Ok(ClientIdentity::Confirmed) => {
            report.identity = Identity::Confirmed;
            report.answered_node_id = Some(b.node_id);
        }
        Ok(ClientIdentity::Other(n)) => {
            report.identity = Identity::WrongNode;
            report.answered_node_id = Some(n);
            report.problem = Some(Problem::new(
                ProblemKind::WrongNode,
                format!(
                    "node {n} answers at the address node {} advertises: its Service or port routes to the wrong broker, or two brokers advertise the same address",
                    b.node_id
                ),
            ));
            return report;
        }
        Ok(ClientIdentity::Unknown(why)) => report.identity_note = Some(why),
        Err(f) => report.identity_note = Some(f.to_string()),
    }
    report.ok = true;
    report
}

/// With cluster credentials, when the bootstrap gave no broker list: dials the address a
/// broker's Service publishes, to tell a blocked bootstrap from blocked brokers. The row stays
/// failed (nothing advertised it), but says whether something answers there.
pub async fn at_service(
    report: &mut BrokerReport,
    addr: &str,
    security: &Security,
    timeouts: Timeouts,
) {
    report.probed_at = Some(addr.to_string());
    let addr = match Address::parse(addr) {
        Ok(a) => a,
        Err(e) => {
            report.problem = Some(Problem::new(ProblemKind::NotDialable, e));
            return;
        }
    };
    if let Some((_, meta)) = dial(&addr, security, timeouts, report).await {
        report.problem = Some(Problem::new(
            ProblemKind::BootstrapUnanswered,
            format!(
                "a broker of cluster {} answers at its Service's address, but the bootstrap gave no broker list",
                meta.cluster_id.as_deref().unwrap_or("(no id)")
            ),
        ));
    }
}

/// Connects and asks Metadata, filling in reachability, the round trip and the TLS facts, or
/// the failure.
async fn dial(
    addr: &Address,
    security: &Security,
    timeouts: Timeouts,
    report: &mut BrokerReport,
) -> Option<(Connection, ClusterMetadata)> {
    let mut conn = match Connection::open(addr, security, timeouts).await {
        Ok(c) => c,
        Err(f) => {
            report.problem = Some(Problem::from(&f));
            return None;
        }
    };
    report.tls = conn.tls.as_ref().map(|t| TlsReport {
        names_host: t.names_host,
        verified: t.verified,
        presented: t.presented.clone(),
    });
    match conn.metadata().await {
        Ok((meta, rtt)) => {
            report.reachable = true;
            report.rtt_ms = Some(millis(rtt));
            Some((conn, meta))
        }
        Err(f) => {
            report.problem = Some(Problem::from(&f));
            None
        }
    }
}

/// Milliseconds, to the hundredth: a loopback or same-zone round trip is well under one.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}
