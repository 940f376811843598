//! The webhook's HTTP side: `POST /mutate` for every kind, over HTTPS, and the admin port.
//!
//! [`router`] turns HTTP into an `AdmissionRequest` and back, and nothing more; the decision lives
//! in [`admission`] ([`admission::decide_pod`], [`admission::decide_workload`]). Every admission outcome is an HTTP 200 with an AdmissionReview. A body
//! that is not an AdmissionReview at all gets a 4xx with a short reason: an empty or malformed
//! body 400, an oversized one 413, refused from its `Content-Length` before it is read.

pub mod admission;
pub mod server;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, ConvertAdmissionReviewError, Operation,
};
use kube::core::{DynamicObject, GroupVersionKind};

use crate::config::Settings;
use crate::engine::binding::BindingFacts;
use crate::engine::pod::{LoadBalancerAddresses, NoAddresses};
use crate::engine::policy::PolicyView;
use crate::engine::services::NamespaceServices;
use crate::engine::workload::Workload;
use crate::metrics::{Metrics, Readiness};
use admission::FailureMode;

/// The largest request body read. The API server stores objects of up to about 3 MiB (etcd's
/// request limit is 1.5 MiB by default, raised to 3 MiB on many clusters); an UPDATE review holds
/// the object twice, plus the envelope.
pub const MAX_BODY_BYTES: usize = 7 * 1024 * 1024;

/// What the webhook needs to answer.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub failure_mode: FailureMode,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// LoadBalancer ingress addresses of Services, where known: the reconciler's Service cache
    /// when `serve` has a cluster.
    pub lb_addresses: Arc<dyn LoadBalancerAddresses>,
    /// The namespace's Services, read when an exposed workload is admitted to warn of conflicts
    /// with Services another owner made; `None` without a cluster.
    pub services: Option<Arc<dyn NamespaceServices>>,
    /// The policies and namespace labels workloads are resolved against; `None` without a
    /// cluster.
    pub policies: Option<Arc<dyn PolicyView>>,
    /// The exposed broker pods and the nodes' addresses, for Bindings; `None` without a cluster.
    pub bindings: Option<Arc<dyn BindingFacts>>,
}

impl AppState {
    /// A state with no LoadBalancer addresses known (no cluster).
    pub fn standalone(settings: Settings, failure_mode: FailureMode) -> Self {
        Self {
            settings: Arc::new(settings),
            failure_mode,
            metrics: Arc::new(Metrics::default()),
            readiness: Arc::new(Readiness::default()),
            lb_addresses: Arc::new(NoAddresses),
            services: None,
            policies: None,
            bindings: None,
        }
    }
}

/// The webhook's routes, testable without sockets.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            close_when_draining,
        ))
        .with_state(state)
}

/// The admin port's routes: `/livez`, `/readyz`, `/metrics`.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ok").into_response()
    } else if s.readiness.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// While draining, tells HTTP/1.1 keep-alive clients to close (HTTP/2 clients get GOAWAY from
/// the server's graceful shutdown).
async fn close_when_draining(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if s.readiness.is_draining() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn reject(s: &AppState, status: StatusCode, reason: &'static str, detail: String) -> Response {
    s.metrics.reject(reason);
    tracing::warn!(%status, reason, detail, "request refused");
    (status, format!("{reason}: {detail}\n")).into_response()
}

async fn mutate(State(s): State<AppState>, req: Request<Body>) -> Response {
    let _timer = s.metrics.timer();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return reject(
            &s,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large",
            format!("more than {MAX_BODY_BYTES} bytes"),
        );
    }
    let body: Bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return reject(
                &s,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large",
                format!("more than {MAX_BODY_BYTES} bytes, or cut short"),
            );
        }
    };
    answer(&s, &body).await
}

/// How long the webhook waits for the namespace's Services when it checks an exposed workload
/// for conflicts; past it, the workload is admitted with a warning that the check did not run.
pub const SERVICE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The answer to a request body that was read whole: a review, or a 4xx with a reason. It
/// never panics, whatever the bytes (the `admission` fuzz target drives it). It awaits nothing
/// but the Service lookup of an exposed workload, and only when `s.services` is set.
pub async fn answer(s: &AppState, body: &[u8]) -> Response {
    if body.is_empty() {
        return reject(
            s,
            StatusCode::BAD_REQUEST,
            "empty body",
            "expected an AdmissionReview".into(),
        );
    }
    let concerns = may_concern(body) || policy_concerns(s, body) || binding_concerns(s, body);
    // A candidate is read once when its kind shows in its bytes; the typed request confirms the
    // guess, and anything else (no guess, a wrong one, a body that does not read) takes the
    // path below, which answers it as before.
    if let Some(kind) = concerns.then(|| guess_kind(body)).flatten()
        && let Ok(decided) = decide_as(s, kind, body).await
    {
        return respond(s, decided);
    }
    let head: Head = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(e) => {
            return reject(
                s,
                StatusCode::BAD_REQUEST,
                "malformed AdmissionReview",
                e.to_string(),
            );
        }
    };
    let Some(h) = head.request else {
        return reject(
            s,
            StatusCode::BAD_REQUEST,
            "malformed AdmissionReview",
            "no request".into(),
        );
    };
    if !concerns {
        return pass_through(s, head.api_version, &h);
    }
    let kind = Kind::of(&h.kind, h.sub_resource.as_deref(), &h.operation);
    match decide_as(s, kind, body).await {
        Ok(decided) => respond(s, decided),
        Err(e) => reject(s, StatusCode::BAD_REQUEST, "malformed AdmissionReview", e),
    }
}

/// The API group of kafka-expose's policies.
const POLICY_GROUP: &str = "kafka-expose.io";

/// The types a review's object is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pod,
    StatefulSet,
    Deployment,
    /// A KafkaExposePolicy: read as a `DynamicObject`, so that a policy that does not even decode
    /// gets a denial that says why rather than a refused review.
    Policy,
    /// A pod's Binding (`pods/binding`, or the legacy `bindings` resource) at CREATE.
    Binding,
    /// Anything else, and any request that passes through: read as a `DynamicObject`.
    Other,
}

impl Kind {
    /// How a request for `gvk` is read: a subresource, `DELETE` or `CONNECT` passes through.
    fn of(gvk: &GroupVersionKind, sub_resource: Option<&str>, operation: &Operation) -> Self {
        if gvk.group.is_empty()
            && gvk.kind == "Binding"
            && matches!(operation, Operation::Create)
            && matches!(sub_resource, None | Some("") | Some("binding"))
        {
            return Kind::Binding;
        }
        if admission::passes_through(sub_resource, operation) {
            return Kind::Other;
        }
        match (gvk.group.as_str(), gvk.kind.as_str()) {
            ("", "Pod") => Kind::Pod,
            ("apps", "StatefulSet") => Kind::StatefulSet,
            ("apps", "Deployment") => Kind::Deployment,
            (POLICY_GROUP, "KafkaExposePolicy") => Kind::Policy,
            _ => Kind::Other,
        }
    }
}

/// The kind a review's bytes suggest, as the API server writes them (compact JSON): the request's
/// `kind` and the object's both read `"kind":"Pod"` for a Pod. Only a guess; [`decide_as`]
/// checks it against the typed request.
fn guess_kind(body: &[u8]) -> Option<Kind> {
    let finds = |needle: &[u8]| memchr::memmem::find(body, needle).is_some();
    if finds(br#""kind":"Pod""#) {
        Some(Kind::Pod)
    } else if finds(br#""kind":"StatefulSet""#) {
        Some(Kind::StatefulSet)
    } else if finds(br#""kind":"Deployment""#) {
        Some(Kind::Deployment)
    } else if finds(br#""kind":"KafkaExposePolicy""#) {
        Some(Kind::Policy)
    } else if finds(br#""kind":"Binding""#) {
        Some(Kind::Binding)
    } else {
        None
    }
}

/// Reads the review as a request for a `kind` and decides it. An error when the body does not
/// read as one (the reader's message), or, read as a guess, is a request that [`Kind::of`] reads
/// otherwise.
async fn decide_as(
    s: &AppState,
    kind: Kind,
    body: &[u8],
) -> Result<(Meta, admission::Decision), String> {
    fn typed<T: kube::core::Resource + serde::de::DeserializeOwned>(
        kind: Kind,
        body: &[u8],
    ) -> Result<AdmissionRequest<T>, String> {
        let r = read::<T>(body)?;
        match Kind::of(&r.kind, r.sub_resource.as_deref(), &r.operation) {
            k if k == kind => Ok(r),
            k => Err(format!("a request read as {kind:?} is one for {k:?}")),
        }
    }
    Ok(match kind {
        Kind::Pod => {
            let r = typed::<Pod>(kind, body)?;
            let d = admission::decide_pod(&r, &s.settings, s.failure_mode, s.lb_addresses.as_ref());
            (Meta::of(&r), d)
        }
        Kind::StatefulSet => {
            let r = typed::<StatefulSet>(kind, body)?;
            let mut d = admission::decide_workload(
                &r,
                Workload::from_statefulset,
                &s.settings,
                s.policies.as_deref(),
            );
            warn_of_conflicts(s, &r, Workload::from_statefulset, &mut d).await;
            (Meta::of(&r), d)
        }
        Kind::Deployment => {
            let r = typed::<Deployment>(kind, body)?;
            let mut d = admission::decide_workload(
                &r,
                Workload::from_deployment,
                &s.settings,
                s.policies.as_deref(),
            );
            warn_of_conflicts(s, &r, Workload::from_deployment, &mut d).await;
            (Meta::of(&r), d)
        }
        Kind::Policy => {
            let r = typed::<DynamicObject>(kind, body)?;
            let d = admission::decide_policy(&r, &s.settings);
            (Meta::of(&r), d)
        }
        Kind::Binding => {
            let r = typed::<k8s_openapi::api::core::v1::Binding>(kind, body)?;
            let d = admission::decide_binding(&r, s.bindings.as_deref());
            (Meta::of(&r), d)
        }
        Kind::Other => {
            let r = read::<DynamicObject>(body)?;
            (Meta::of(&r), admission::allow(&r))
        }
    })
}

/// The answer to a decided request, counted and logged.
fn respond(s: &AppState, (request, decision): (Meta, admission::Decision)) -> Response {
    let warnings = decision.response.warnings.as_ref().map_or(0, Vec::len);
    s.metrics.warnings.inc_by(warnings as u64);
    let operation = operation_name(&request.operation);
    let Some(answer) = review(&decision.response) else {
        return unencodable();
    };
    s.metrics.count(&request.kind, operation, decision.outcome);
    if decision.outcome == "allowed" && warnings == 0 {
        tracing::debug!(uid = %request.uid, kind = %request.kind, name = %request.name, operation, "admission: allowed untouched");
        return answer;
    }
    tracing::info!(
        uid = %request.uid,
        kind = %request.kind,
        namespace = request.namespace.as_deref().unwrap_or(""),
        name = %request.name,
        operation,
        dry_run = request.dry_run,
        adapter = decision.adapter,
        result = decision.outcome,
        warnings,
        "admission"
    );
    answer
}

/// The operation as the API server spells it, for metrics and logs.
fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The review as an HTTP answer; `None`, logged, when it cannot be encoded.
fn review(resp: &AdmissionResponse) -> Option<Response> {
    match wire(resp) {
        Ok(b) => Some(([(header::CONTENT_TYPE, "application/json")], b).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "could not encode the answer");
            None
        }
    }
}

/// The answer to a review that could not be encoded.
fn unencodable() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "could not encode the answer\n",
    )
        .into_response()
}

/// Adds a warning for each Service of the workload's plan that another owner already holds in
/// the namespace: one list call, for exposed workloads only.
async fn warn_of_conflicts<T: kube::core::Resource + Clone>(
    s: &AppState,
    r: &AdmissionRequest<T>,
    read: impl FnOnce(T) -> Workload,
    d: &mut admission::Decision,
) {
    let (Some(services), Some(obj), Some(ns)) = (
        s.services.as_ref(),
        r.object.clone(),
        r.namespace.as_deref(),
    ) else {
        return;
    };
    if !d.response.allowed || !d.exposes() {
        return;
    }
    let mut w = read(obj);
    w.namespace.get_or_insert_with(|| ns.to_string());
    let found = match tokio::time::timeout(SERVICE_LOOKUP_TIMEOUT, services.list(ns)).await {
        Ok(Ok(existing)) => admission::service_conflicts(&w, &s.settings, &existing),
        Ok(Err(e)) => vec![format!(
            "kafka-expose could not list the Services of namespace {ns} to check them for conflicts ({e}); the reconciler reports any in an Event"
        )],
        Err(_) => vec![format!(
            "kafka-expose could not list the Services of namespace {ns} within {}s to check them for conflicts; the reconciler reports any in an Event",
            SERVICE_LOOKUP_TIMEOUT.as_secs()
        )],
    };
    if !found.is_empty() {
        d.response
            .warnings
            .get_or_insert_with(Vec::new)
            .extend(found);
    }
}

/// What every object kafka-expose acts on carries: a `kafka-expose.io/` annotation or label key
/// (the user's, or the bookkeeping kafka-expose left on a workload it exposed).
const MARKER: &[u8] = b"kafka-expose.io/";

/// Whether a review may concern kafka-expose, decided from its raw bytes: only a review whose
/// bytes hold [`MARKER`] anywhere (the object, the old object, or a value that merely mentions
/// it) gets the typed parse and the decision. Policies, when they exist, widen this.
pub fn may_concern(body: &[u8]) -> bool {
    memchr::memmem::find(body, MARKER).is_some()
}

/// How far into a review the binding search looks. The API server writes the request's kind
/// within the first few hundred bytes (`apiVersion`, `kind`, `request.uid`, `request.kind`);
/// a Binding review is small in all. A Binding not found there passes through, and the
/// reconciler's fallback covers its pod.
const BINDING_WINDOW: usize = 1024;

/// Whether a review is a Binding this server can act on: it sees every scheduling in the
/// cluster, and only a byte search of the review's head decides whether to read it, so other
/// reviews pay nearly nothing for it.
fn binding_concerns(s: &AppState, body: &[u8]) -> bool {
    s.bindings.is_some()
        && memchr::memmem::find(
            &body[..body.len().min(BINDING_WINDOW)],
            br#""kind":"Binding""#,
        )
        .is_some()
}

/// Whether a workload review without a kafka-expose key is selected by a policy: decided from
/// its metadata (name, labels) and the namespace's cached labels, the rest of the body skipped
/// unread. Without a policy, it costs nothing.
fn policy_concerns(s: &AppState, body: &[u8]) -> bool {
    let Some(view) = s.policies.as_deref().filter(|v| v.active()) else {
        return false;
    };
    let kind = match guess_kind(body) {
        Some(Kind::StatefulSet) => crate::api::PolicyKind::StatefulSet,
        Some(Kind::Deployment) => crate::api::PolicyKind::Deployment,
        _ => return false,
    };
    #[derive(serde::Deserialize)]
    struct Review {
        request: Option<Request>,
    }
    #[derive(serde::Deserialize)]
    struct Request {
        namespace: Option<String>,
        object: Option<Object>,
    }
    #[derive(serde::Deserialize)]
    struct Object {
        metadata: Option<Metadata>,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        name: Option<String>,
        labels: Option<std::collections::BTreeMap<String, String>>,
    }
    let Ok(Review {
        request: Some(r), ..
    }) = serde_json::from_slice::<Review>(body)
    else {
        // Unreadable here: the full path answers it, with the reason.
        return true;
    };
    let meta = r.object.and_then(|o| o.metadata);
    let name = meta
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_default();
    let labels = meta.and_then(|m| m.labels).unwrap_or_default();
    let resolved = view.resolve(
        kind,
        r.namespace.as_deref().unwrap_or_default(),
        &name,
        &labels,
        &Default::default(),
    );
    !resolved.audits.is_empty() || matches!(resolved.live, crate::engine::policy::Live::Policy(_))
}

/// Allows a review that cannot concern kafka-expose, from its head alone: the same answer the
/// decision gives it (allowed, no patch, no warning), counted, and logged at debug.
fn pass_through(s: &AppState, api_version: Option<String>, h: &HeadRequest) -> Response {
    s.metrics.fast_path.inc();
    let operation = operation_name(&h.operation);
    s.metrics.count(&h.kind.kind, operation, "allowed");
    tracing::debug!(uid = %h.uid, kind = %h.kind.kind, operation, "admission: nothing of kafka-expose's; allowed");
    // Built from `invalid` (the one constructor without a request), then made an allowance.
    let mut response = AdmissionResponse::invalid("");
    response.types = kube::core::TypeMeta {
        api_version: api_version.unwrap_or_default(),
        kind: "AdmissionReview".into(),
    };
    response.uid = h.uid.clone();
    response.allowed = true;
    response.result = Default::default();
    review(&response).unwrap_or_else(unencodable)
}

/// What is read of a review before its object: enough to choose the object's type, or to
/// answer without it. Everything else (the objects) is skipped unparsed.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    api_version: Option<String>,
    request: Option<HeadRequest>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadRequest {
    #[serde(default)]
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    operation: Operation,
}

/// Reads a review whose object is a `T`.
fn read<T>(body: &[u8]) -> Result<AdmissionRequest<T>, String>
where
    T: kube::core::Resource + serde::de::DeserializeOwned,
{
    let review: AdmissionReview<T> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    review
        .try_into()
        .map_err(|e: ConvertAdmissionReviewError| e.to_string())
}

/// The request's facts for logs and metrics.
struct Meta {
    uid: String,
    kind: String,
    namespace: Option<String>,
    name: String,
    operation: Operation,
    dry_run: bool,
}

impl Meta {
    fn of<T: kube::core::Resource>(r: &AdmissionRequest<T>) -> Self {
        Self {
            uid: r.uid.clone(),
            kind: r.kind.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            operation: r.operation.clone(),
            dry_run: r.dry_run,
        }
    }
}

/// The answer as the API server reads it. The response is built with kube-core's builders; only
/// the patch is encoded differently: as a base64 string, the JSON form of Go's `[]byte`, a third
/// the size of the array of numbers kube-core writes.
fn wire(resp: &AdmissionResponse) -> serde_json::Result<Vec<u8>> {
    use base64::Engine as _;
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Review<'a> {
        api_version: &'a str,
        kind: &'a str,
        response: Response<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Response<'a> {
        uid: &'a str,
        allowed: bool,
        status: &'a kube::core::Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
        audit_annotations: &'a std::collections::HashMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a Vec<String>>,
    }
    let api_version = if resp.types.api_version.is_empty() {
        "admission.k8s.io/v1"
    } else {
        resp.types.api_version.as_str()
    };
    serde_json::to_vec(&Review {
        api_version,
        kind: "AdmissionReview",
        response: Response {
            uid: &resp.uid,
            allowed: resp.allowed,
            status: &resp.result,
            patch: resp
                .patch
                .as_ref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            patch_type: resp.patch.as_ref().map(|_| "JSONPatch"),
            audit_annotations: &resp.audit_annotations,
            warnings: resp.warnings.as_ref(),
        },
    })
}
