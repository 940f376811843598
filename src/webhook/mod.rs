//! The webhook's HTTP side: `POST /mutate` for every kind, over HTTPS, and the admin port.
//!
//! [`router`] turns HTTP into an `AdmissionRequest` and back, and nothing more; the decision lives
//! in [`admission::decide`]. Every admission outcome is an HTTP 200 with an AdmissionReview. A body
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
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};

use crate::config::Settings;
use crate::metrics::{Metrics, Readiness};
use admission::{AddressLookup, FailureMode};

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
    /// LoadBalancer ingress addresses of Services, where known.
    pub lb_addresses: Arc<AddressLookup>,
}

impl AppState {
    /// A state with no LoadBalancer addresses known (no cluster).
    pub fn standalone(settings: Settings, failure_mode: FailureMode) -> Self {
        Self {
            settings: Arc::new(settings),
            failure_mode,
            metrics: Arc::new(Metrics::default()),
            readiness: Arc::new(Readiness::default()),
            lb_addresses: Arc::new(|_: &str, _: &str| None),
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
    if body.is_empty() {
        return reject(
            &s,
            StatusCode::BAD_REQUEST,
            "empty body",
            "expected an AdmissionReview".into(),
        );
    }
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reject(
                &s,
                StatusCode::BAD_REQUEST,
                "malformed AdmissionReview",
                e.to_string(),
            );
        }
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return reject(
                &s,
                StatusCode::BAD_REQUEST,
                "malformed AdmissionReview",
                format!("{e}"),
            );
        }
    };
    let decision = admission::decide(
        &request,
        &s.settings,
        s.failure_mode,
        s.lb_addresses.as_ref(),
    );
    let warnings = decision.response.warnings.as_ref().map_or(0, Vec::len);
    s.metrics.warnings.inc_by(warnings as u64);
    let operation = format!("{:?}", request.operation).to_uppercase();
    s.metrics
        .count(&request.kind.kind, &operation, decision.outcome);
    tracing::info!(
        uid = %request.uid,
        kind = %request.kind.kind,
        namespace = request.namespace.as_deref().unwrap_or(""),
        name = %request.name,
        operation = %operation,
        dry_run = request.dry_run,
        adapter = decision.adapter,
        result = decision.outcome,
        warnings,
        "admission"
    );
    axum::Json(decision.response.into_review()).into_response()
}
