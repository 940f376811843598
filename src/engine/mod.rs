//! The decision engine: pure functions from an object and its configuration to a plan.
//!
//! Nothing here takes a client, a clock or a socket.
//! - [`exposure`]: the one pipeline (parse → detect → check → skip) everything starts from;
//! - [`workload`] and [`pod`]: the two admission decisions, RFC 6902 operations against the
//!   object exactly as received ([`patch`]), plus warnings for the user;
//! - [`services`]: the Service plan, the complete Services an exposed workload needs;
//! - [`detect`]: which container is the broker and which adapter fits it;
//! - [`adapters`]: `env`, `properties` and `adopt`, one file each.

pub mod adapters;
pub mod binding;
pub mod detect;
pub mod exposure;
pub mod gateway;
pub mod patch;
pub mod pod;
pub mod policy;
pub mod registration;
pub mod restart;
pub mod rollout;
pub mod services;
pub mod tls;
pub mod workload;

use json_patch::PatchOperation;

use crate::config::ConfigError;

/// An admission decision on one object: the patch against the object as received, the warnings
/// for the user (a changed object's one-line summary first), and what happened.
#[derive(Debug, Clone)]
pub struct Decided<O> {
    pub patch: Vec<PatchOperation>,
    pub warnings: Vec<String>,
    pub outcome: O,
}

/// Whether an outcome's warnings open with a one-line summary of the change.
pub trait Summarized {
    fn has_summary(&self) -> bool;
}

impl<O: Summarized> Decided<O> {
    /// An outcome that changes nothing.
    pub fn without_patch(outcome: O, warnings: Vec<String>) -> Self {
        Self {
            patch: Vec::new(),
            warnings,
            outcome,
        }
    }

    /// The warnings beyond the one-line summary of a changed object.
    pub fn notes(&self) -> &[String] {
        if self.outcome.has_summary() {
            self.warnings.get(1..).unwrap_or_default()
        } else {
            &self.warnings
        }
    }
}

/// Why the engine could not decide.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is invalid: the object is refused with this message.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The object is not a valid object of its kind.
    #[error("the {kind} cannot be read")]
    Malformed {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl EngineError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Config(_) => "invalid_config",
            Self::Malformed { .. } => "malformed",
        }
    }
}

/// An error and its causes, joined by `: `.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
