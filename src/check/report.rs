//! What `check` found, as data: one [`Target`] per bootstrap checked (per workload, with cluster
//! credentials), one [`BrokerReport`] per broker. The JSON form is these types serialized; the
//! text form is [`render_text`], one line per broker and a second where something breaks.

use std::fmt::Write as _;

use serde::Serialize;

use crate::check::client::Failure;
pub use crate::check::kind::ProblemKind;

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True only when every broker of every target is right.
    pub ok: bool,
    pub targets: Vec<Target>,
}

impl Report {
    pub fn new(targets: Vec<Target>) -> Self {
        Self {
            ok: !targets.is_empty() && targets.iter().all(|t| t.ok),
            targets,
        }
    }
}

/// One bootstrap address list and the brokers it leads to.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The workload whose published bootstrap this is, with cluster credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    pub bootstrap: Bootstrap,
    pub brokers: Vec<BrokerReport>,
    /// The bootstrap answered, it advertised at least one broker, and every broker is right.
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// The first contact: Metadata through one of the bootstrap addresses.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bootstrap {
    /// The addresses tried, in order.
    pub servers: Vec<String>,
    /// The one that answered Metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller_id: Option<i32>,
    /// Why each address tried before the one that answered (or all of them) failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<AddressProblem>,
    /// Why there is no broker list, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// With cluster credentials: the bootstrap Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<crate::check::path::ServiceHop>,
    /// With cluster credentials: where the path to the bootstrap breaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AddressProblem {
    pub address: String,
    pub problem: Problem,
}

/// Something wrong, named for scripts (`kind`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

impl Problem {
    pub fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<&Failure> for Problem {
    fn from(f: &Failure) -> Self {
        Self::new(f.kind(), f.to_string())
    }
}

/// Whether the broker at an address said it is the node advertised there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Identity {
    Confirmed,
    WrongNode,
    #[default]
    Unverified,
}

/// One broker, as the cluster advertises it and as it answered at that address.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BrokerReport {
    /// The node id the cluster advertises (absent for a broker only the cluster view knows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i32>,
    /// The address it advertises, `host:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised: Option<String>,
    /// With cluster credentials, when the bootstrap gave no broker list: the address its Service
    /// publishes, dialled instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// A connection, and a Metadata request on it, succeeded at the advertised address.
    pub reachable: bool,
    /// Round trip of the Metadata request on that connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// The node id that answered there, when the broker said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_node_id: Option<i32>,
    /// `unverified` comes with `identity_note` saying why.
    pub identity: Identity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// The cluster's side of the path, with cluster credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::check::path::BrokerPath>,
    /// Where the path breaks, when it does and the cluster view tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsReport {
    /// The certificate carries the advertised host.
    pub names_host: bool,
    /// The chain was verified (false with --insecure-skip-tls-verify).
    pub verified: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub presented: Vec<String>,
}

/// The report for people: a heading per target, a line per broker, the reason under each broken
/// one, and a last line that counts.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    for t in &r.targets {
        render_target(&mut out, t);
    }
    let brokers: usize = r.targets.iter().map(|t| t.brokers.len()).sum();
    let failing: usize = r
        .targets
        .iter()
        .map(|t| t.brokers.iter().filter(|b| !b.ok).count())
        .sum();
    let _ = if r.targets.is_empty() {
        writeln!(out, "FAIL: nothing to check")
    } else if r.ok {
        writeln!(
            out,
            "OK: every broker answers at the address it advertises ({brokers} brokers)"
        )
    } else if failing == 0 {
        writeln!(out, "FAIL: no broker list (see above)")
    } else {
        writeln!(out, "FAIL: {failing} of {brokers} brokers are not right")
    };
    out
}

fn render_target(out: &mut String, t: &Target) {
    let b = &t.bootstrap;
    let what = match &t.workload {
        Some(w) => format!("{} {}/{}: ", w.kind, w.namespace, w.name),
        None => String::new(),
    };
    let servers = if b.servers.is_empty() {
        "(none published)".to_string()
    } else {
        b.servers.join(",")
    };
    let _ = match (&b.answered_by, &b.problem) {
        (Some(by), _) => writeln!(
            out,
            "{what}bootstrap {servers}: {by} answered in {}, cluster {}, {} brokers",
            ms(b.rtt_ms),
            b.cluster_id.as_deref().unwrap_or("(no id)"),
            t.brokers.iter().filter(|x| x.node_id.is_some()).count()
        ),
        (None, Some(p)) => writeln!(out, "{what}bootstrap {servers}: FAIL {}", p.message),
        (None, None) => writeln!(out, "{what}bootstrap {servers}"),
    };
    for f in &b.failures {
        let _ = writeln!(out, "    {} failed first: {}", f.address, f.problem.message);
    }
    if b.answered_by.is_none() {
        if let Some(s) = &b.service {
            let _ = writeln!(out, "         cluster: {}", s.summary());
        }
        if let Some(d) = &b.diagnosis {
            let _ = writeln!(out, "         breaks: {}", d.message);
        }
    }
    for br in &t.brokers {
        render_broker(out, br);
    }
}

fn render_broker(out: &mut String, b: &BrokerReport) {
    let id = match (b.node_id, &b.cluster) {
        (Some(i), _) => format!("broker {i}"),
        (None, Some(p)) => format!("ordinal {}", p.ordinal),
        (None, None) => "broker ?".to_string(),
    };
    let addr = match (&b.advertised, &b.probed_at) {
        (Some(a), _) => a.clone(),
        (None, Some(p)) => format!("{p} (its Service)"),
        (None, None) => "(not advertised)".to_string(),
    };
    let status = if b.ok { "ok  " } else { "FAIL" };
    let detail = if let Some(p) = &b.problem {
        p.message.clone()
    } else {
        let mut d = format!("answered in {}", ms(b.rtt_ms));
        match b.identity {
            Identity::Confirmed => d.push_str(", as itself"),
            _ => {
                if let Some(n) = &b.identity_note {
                    let _ = write!(d, ", node id not verified: {n}");
                }
            }
        }
        d
    };
    let _ = writeln!(out, "  {status} {id:<9} {addr:<28} {detail}");
    if let Some(t) = &b.tls {
        let names = if t.names_host {
            "the certificate names the host".to_string()
        } else if t.presented.is_empty() {
            "the certificate does NOT name the host".to_string()
        } else {
            format!(
                "the certificate does NOT name the host (it names {})",
                t.presented.join(", ")
            )
        };
        let verified = if t.verified {
            "chain verified"
        } else {
            "chain and name NOT verified (--insecure-skip-tls-verify)"
        };
        let _ = writeln!(out, "         tls: {names}; {verified}");
    }
    if let Some(c) = &b.cluster {
        let _ = writeln!(out, "         cluster: {}", c.summary());
    }
    if let Some(d) = &b.diagnosis {
        let _ = writeln!(out, "         breaks: {}", d.message);
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(
        || "-".into(),
        |v| {
            if v < 10.0 {
                format!("{v:.2} ms")
            } else {
                format!("{v:.1} ms")
            }
        },
    )
}
