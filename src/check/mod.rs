//! `kafka-expose check`: proves from outside that every broker answers, as itself, at the
//! address it advertises, and with cluster credentials says where a broken path breaks.
//!
//! - [`client`]: the Kafka-protocol client (the `kafka` layer stays pure, so it lives here);
//! - [`probe`]: the outside view, over the client;
//! - [`view`]: the cluster's side of each path, read from the API server;
//! - [`path`]: the two joined, and the diagnosis (pure);
//! - [`report`]: the report, as JSON and for people.

pub mod client;
#[cfg(test)]
mod golden;
pub mod kind;
pub mod path;
pub mod probe;
pub mod report;
pub mod view;

use crate::check::kind::ProblemKind;
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
    // Every workload at once: each is bounded by the timeouts, so the run takes about as long
    // as the slowest one.
    let targets =
        futures::future::join_all(workloads.iter().map(|wp| workload(wp, security, timeouts)))
            .await;
    Ok(Report::new(targets))
}

/// One workload: its published bootstrap probed, joined with its cluster view.
async fn workload(wp: &path::WorkloadPath, security: &Security, timeouts: Timeouts) -> Target {
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
            ProblemKind::NoBootstrap,
            "no bootstrap address is published yet (kafka-expose.io/bootstrap-servers): the reconciler writes it once the brokers' Services have addresses and the brokers run on nodes",
        )),
        Err(e) => unprobed(Problem::new(
            ProblemKind::BadBootstrap,
            format!("the published bootstrap is not host:port,...: {e}"),
        )),
    };
    target.workload = Some(wp.workload.clone());
    let answered = target.bootstrap.answered_by.is_some();
    path::join(&mut target, wp);
    if !answered {
        dial_services(&mut target, wp, security, timeouts).await;
    }
    target
}

/// Without a broker list, each broker is dialled at the address its Service publishes, all at
/// once, and diagnosed again with what answered.
async fn dial_services(
    target: &mut Target,
    wp: &path::WorkloadPath,
    security: &Security,
    timeouts: Timeouts,
) {
    let dials = target.brokers.iter_mut().filter_map(|r| {
        let addr = r
            .cluster
            .as_ref()?
            .service
            .as_ref()?
            .external
            .first()?
            .clone();
        Some(async move {
            probe::at_service(r, &addr, security, timeouts).await;
            if r.cluster.as_ref().is_some_and(|c| c.stale.is_some()) {
                r.ok = false;
            }
            r.diagnosis = path::diagnose(r, wp.mode);
        })
    });
    futures::future::join_all(dials).await;
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
