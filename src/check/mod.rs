//! `kafka-expose check`: proves from outside that every broker answers, as itself, at the
//! address it advertises, and with cluster credentials says where a broken path breaks.
//!
//! - [`client`]: the Kafka-protocol client (the `kafka` layer stays pure, so it lives here);
//! - [`probe`]: the outside view, over the client;
//! - [`view`]: the cluster's side of each path, read from the API server;
//! - [`path`]: the two joined, and the diagnosis (pure);
//! - [`report`]: the report, as JSON and for people.

pub mod client;
pub mod path;
pub mod probe;
pub mod report;
pub mod view;

use kube::Client;

use crate::check::client::{Address, Security, Timeouts};
use report::{Bootstrap, Problem, Report, Target};

/// Checks one bootstrap list.
pub async fn bootstrap(servers: &[Address], security: &Security, timeouts: Timeouts) -> Report {
    Report::new(vec![probe::probe(servers, security, timeouts).await])
}

/// Checks every exposed workload of `namespace` (or the one named) through its published
/// bootstrap, and joins each with its cluster view.
pub async fn cluster(
    client: &Client,
    namespace: &str,
    name: Option<&str>,
    security: &Security,
    timeouts: Timeouts,
) -> Result<Report, String> {
    let workloads = view::workloads(client, namespace, name).await?;
    if workloads.is_empty() {
        return Err(format!(
            "no workload in {namespace} is exposed by kafka-expose"
        ));
    }
    let mut targets = Vec::new();
    for wp in &workloads {
        let servers: Result<Vec<Address>, String> = wp
            .bootstrap
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Address::parse)
            .collect();
        let mut target = match servers {
            Ok(servers) if !servers.is_empty() => probe::probe(&servers, security, timeouts).await,
            Ok(_) => unprobed(Problem::new(
                "no-bootstrap",
                "no bootstrap address is published yet (kafka-expose.io/bootstrap-servers): the reconciler writes it once the brokers' Services have addresses and the brokers run on nodes",
            )),
            Err(e) => unprobed(Problem::new(
                "bad-bootstrap",
                format!("the published bootstrap is not host:port,...: {e}"),
            )),
        };
        target.workload = Some(wp.workload.clone());
        path::join(&mut target, wp);
        targets.push(target);
    }
    Ok(Report::new(targets))
}

fn unprobed(problem: Problem) -> Target {
    Target {
        workload: None,
        bootstrap: Bootstrap {
            problem: Some(problem),
            ..Bootstrap::default()
        },
        brokers: Vec::new(),
        ok: false,
    }
}
