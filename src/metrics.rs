//! Prometheus metrics, served on the admin port at `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets from 50 µs to about 1.6 s, doubling: admission answers usually take well
/// under a millisecond, and the API server gives up after 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_4, 0.000_8, 0.001_6, 0.003_2, 0.006_4, 0.012_8, 0.025_6,
    0.051_2, 0.102_4, 0.204_8, 0.409_6, 0.819_2, 1.638_4,
];

/// Labels of an admission request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub kind: String,
    pub operation: String,
    /// `allowed`, `patched`, `denied` or `error`.
    pub outcome: String,
}

/// Labels of a rejected HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: String,
}

/// Labels of a full read of a workload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FullReadLabels {
    /// `true` when the metadata carried a kafka-expose key; `false` for a read only to remove
    /// Services left from an earlier exposure.
    pub candidate: String,
}

/// Labels of a reconciler error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

/// Labels of a request to the API server, as its audit log names them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// Which client made it: `serve`, or a part given a client of its own (`policies`).
    pub component: String,
    /// `list`, `watch`, `get`, `create`, `update`, `patch`, `delete`, …
    pub verb: String,
    /// The resource, with its subresource (`kafkaexposepolicies/status`).
    pub resource: String,
}

/// Every metric kafka-expose exposes.
pub struct Metrics {
    registry: Registry,
    pub reconciliations: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub managed_services: Gauge,
    /// Workloads the reconciler holds (as stripped metadata): those with a kafka-expose key or
    /// managed Services.
    pub workloads_held: Gauge,
    /// Workload kinds whose first list has been read (2 once both are).
    pub workload_lists_synced: Gauge,
    /// Full reads of workloads, by whether the metadata carried a kafka-expose key.
    pub full_reads: Family<FullReadLabels, Counter>,
    /// Admission requests answered from the raw bytes, without a full parse (also counted in
    /// `requests`).
    pub fast_path: Counter,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Histogram,
    pub warnings: Counter,
    pub rejected: Family<RejectLabels, Counter>,
    pub cert_reloads: Counter,
    pub cert_reload_errors: Counter,
    /// When the served certificate ends, in seconds since the epoch.
    pub cert_expiry: Gauge,
    /// Requests made to the API server, by verb and resource.
    pub api_requests: Family<ApiRequestLabels, Counter>,
    /// Passes of the policy controller.
    pub policy_passes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kafka_expose");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Histogram::new(LATENCY_BUCKETS);
        let warnings = Counter::default();
        let rejected = Family::<RejectLabels, Counter>::default();
        let cert_reloads = Counter::default();
        let cert_reload_errors = Counter::default();
        let cert_expiry = Gauge::default();
        registry.register(
            "admission_requests",
            "Admission requests by kind, operation and outcome",
            requests.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission request",
            latency.clone(),
        );
        registry.register(
            "admission_warnings",
            "Warnings returned to API clients",
            warnings.clone(),
        );
        registry.register(
            "http_rejected_requests",
            "Requests refused before admission: malformed, empty or oversized bodies",
            rejected.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads",
            cert_reloads.clone(),
        );
        registry.register(
            "certificate_reload_errors",
            "Serving certificate files that could not be loaded",
            cert_reload_errors.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the served certificate ends, in seconds since the epoch",
            cert_expiry.clone(),
        );
        let reconciliations = Counter::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let managed_services = Gauge::default();
        let workloads_held = Gauge::default();
        let workload_lists_synced = Gauge::default();
        let full_reads = Family::<FullReadLabels, Counter>::default();
        let fast_path = Counter::default();
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        let policy_passes = Counter::default();
        registry.register(
            "api_requests",
            "Requests made to the Kubernetes API server, by verb and resource",
            api_requests.clone(),
        );
        registry.register(
            "policy_passes",
            "Passes of the policy controller over every policy",
            policy_passes.clone(),
        );
        registry.register(
            "workloads_held",
            "Workloads the reconciler holds, as metadata stripped to kafka-expose's keys: those with a kafka-expose key or managed Services",
            workloads_held.clone(),
        );
        registry.register(
            "workload_lists_synced",
            "Workload kinds (StatefulSets, Deployments) whose first list the reconciler has read",
            workload_lists_synced.clone(),
        );
        registry.register(
            "workload_full_reads",
            "Workloads read in full by the reconciler, by whether their metadata carried a kafka-expose key",
            full_reads.clone(),
        );
        registry.register(
            "admission_fast_path",
            "Admission requests answered from the raw bytes: nothing in them concerns kafka-expose",
            fast_path.clone(),
        );
        registry.register(
            "reconciliations",
            "Workload reconciliations",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "managed_services",
            "Services kafka-expose manages",
            managed_services.clone(),
        );
        Self {
            registry,
            reconciliations,
            reconcile_errors,
            managed_services,
            workloads_held,
            workload_lists_synced,
            full_reads,
            fast_path,
            requests,
            latency,
            warnings,
            rejected,
            cert_reloads,
            cert_reload_errors,
            cert_expiry,
            api_requests,
            policy_passes,
        }
    }
}

impl Metrics {
    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Starts a timer that records into the latency histogram when dropped.
    pub fn timer(&self) -> Timer<'_> {
        Timer {
            histogram: &self.latency,
            start: Instant::now(),
        }
    }

    pub fn count(&self, kind: &str, operation: &str, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                kind: kind.to_string(),
                operation: operation.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn full_read(&self, candidate: bool) {
        self.full_reads
            .get_or_create(&FullReadLabels {
                candidate: candidate.to_string(),
            })
            .inc();
    }

    /// The API requests made so far, by `(component, verb, resource)`.
    pub fn api_requests_so_far(&self) -> std::collections::BTreeMap<(String, String, String), u64> {
        let mut out = std::collections::BTreeMap::new();
        let text = self.render();
        // The family keeps no list of its labels: read them back from the rendered metric.
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("kafka_expose_api_requests_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let field = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
            };
            if let (Some(component), Some(verb), Some(resource), Ok(n)) = (
                field("component"),
                field("verb"),
                field("resource"),
                value.trim().parse::<u64>(),
            ) {
                out.insert((component, verb, resource), n);
            }
        }
        out
    }

    /// Full reads so far: `(of candidates, of others)`.
    pub fn full_reads_so_far(&self) -> (u64, u64) {
        let get = |c: bool| {
            self.full_reads
                .get_or_create(&FullReadLabels {
                    candidate: c.to_string(),
                })
                .get()
        };
        (get(true), get(false))
    }

    pub fn reconcile_error(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}

/// Records the time since its creation when dropped.
pub struct Timer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Whether the server is ready: the TLS listener is bound, the reconciler's caches (when it runs)
/// are synced, and shutdown has not begun.
#[derive(Debug, Default)]
pub struct Readiness {
    listening: AtomicBool,
    /// Caches required and not yet synced.
    unsynced: std::sync::atomic::AtomicUsize,
    draining: AtomicBool,
}

impl Readiness {
    /// Readiness also waits for one more [`Readiness::set_synced`] (one per cache).
    pub fn require_sync(&self) {
        self.unsynced.fetch_add(1, Ordering::SeqCst);
    }

    /// One required cache has synced.
    pub fn set_synced(&self) {
        let _ = self
            .unsynced
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
            && self.unsynced.load(Ordering::SeqCst) == 0
            && !self.is_draining()
    }
}
