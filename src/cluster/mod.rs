//! Everything that talks to the API server, each part with its decisions pulled out as pure
//! functions beside it. [`runtime`] starts them all; [`context`] is what the leader's
//! controllers share, and [`events`] the one Event announcer. No module here imports
//! [`runtime`] or another controller (`tests/layers.rs` holds that):
//! - [`reconciler`]: kube-runtime Controllers applying the Service plan; [`status`] decides the
//!   status, Events and requeue from what a reconciliation found;
//! - [`leader`]: the reconciler's leader Lease; [`leader::claim`] decides whether to claim or
//!   renew it;
//! - [`caches`]: the reflector stores the webhook and the reconciler share;
//! - [`certs`]: the webhook certificates' Secret and the webhook configuration's `caBundle`;
//! - [`own_image`]: the image the server runs as, for the init containers it injects.
//!
//! - [`nodes`]: the node-address fallback for `advertised-host: node:…`, [`nodes::step`]
//!   deciding per broker pod;
//! - [`policies`]: the policy controller, applying `KafkaExposePolicy` objects paced;
//!   [`crate::engine::rollout::pace`] decides what starts.

pub mod broker_certs;
pub mod caches;
pub mod certs;
pub mod context;
pub mod events;
pub mod leader;
pub mod nodes;
pub mod own_image;
pub mod policies;
pub mod reconciler;
pub mod registrar;
pub mod requests;
pub mod restarts;
pub mod routes;
pub mod runtime;
pub mod status;

/// Seconds since the epoch, as Kubernetes timestamps count them.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
