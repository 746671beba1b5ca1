//! The HTTP API: one file per resource, each handler only extracts,
//! authorises, calls the domain function and maps the result; errors become
//! responses in [`error`] only.
//!
//! Access logs record method, path and status — never the query string, which
//! may carry a console token (`/ws/console?token=…`), and never bodies.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod classtime;
pub mod collect;
pub mod console;
pub mod courses;
pub mod desk;
pub mod directory;
pub mod error;
pub mod events;
pub mod extract;
pub mod idle;
pub mod limits;
pub mod metrics;
pub mod mydata;
pub mod nodes;
pub mod notices;
pub mod origin;
pub mod portable;
pub mod reports;
pub mod respond;
pub mod serve;
pub mod slo;
pub mod snapshots;
pub mod templates;
pub mod term;
pub mod usage;
pub mod users;
pub mod vms;
pub mod wall;
pub mod web;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use error::ApiError;

/// The OpenAPI document of this API (kept by hand; a test checks every route is in it).
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    // With a separate metrics address, the main listener has no /metrics.
    if state.config.metrics_listen.is_none() {
        router = router.route("/metrics", get(metrics::handler));
    }
    finish(
        router
            .merge(auth::router())
            .merge(directory::router())
            .merge(audit::router())
            .merge(notices::router())
            .merge(mydata::router())
            .merge(users::router())
            .merge(nodes::router())
            .merge(slo::router())
            .merge(events::router())
            .merge(alerts::router())
            .merge(templates::router())
            .merge(reports::router())
            .merge(courses::router())
            .merge(classtime::router())
            .merge(usage::router())
            .merge(idle::router())
            .merge(vms::router())
            .merge(snapshots::router())
            .merge(backups::router())
            .merge(term::router())
            .merge(portable::router())
            .merge(collect::router())
            .merge(console::router())
            .merge(desk::router())
            .merge(wall::router())
            .merge(web::router())
            .route("/healthz", get(healthz))
            .route("/api/openapi.json", get(openapi)),
        state,
    )
}

/// The router of the separate metrics address (`--metrics-listen`).
pub fn metrics_router(state: AppState) -> Router {
    finish(
        Router::new().route("/metrics", get(metrics::handler)),
        state,
    )
}

/// Fallbacks and the layers every listener's router has.
fn finish(router: Router<AppState>, state: AppState) -> Router {
    router
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            note_storage_full,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_if_outdated,
        ))
        // The client address every audit entry of the request records.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::scope,
        ))
        // Innermost first: the Origin rule, the head limits, then any
        // framework error made JSON, all inside the access log.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::check,
        ))
        .layer(axum::middleware::from_fn(limits::check))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // Path only: the query string may hold a console token.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state)
}

/// `{status: "ok"|"degraded", reasons, loops}`: 200 while the server
/// answers, so a load balancer's check and an operator both see why — but
/// 503 with status `outdated` once a newer pvce migrated the database, so
/// the balancer takes this server out of rotation (src/upgrade.rs).
async fn healthz(State(state): State<AppState>) -> axum::response::Response {
    // The storage check is one statvfs: current on every call (bounded, so a
    // hung network file system cannot hang the health check too).
    let (space, health) = (state.space.clone(), state.health.clone());
    let check = tokio::task::spawn_blocking(move || space.refresh(&health));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), check).await;
    let mut report = state.health.report();
    if state.upgrade.outdated().is_some() {
        report.status = "outdated";
        return (StatusCode::SERVICE_UNAVAILABLE, Json(report)).into_response();
    }
    Json(report).into_response()
}

/// API and console requests reaching a server a newer pvce has superseded
/// get 503 `server_outdated` (src/upgrade.rs); `/healthz` and `/metrics`
/// still answer, for the balancer and the operator.
async fn refuse_if_outdated(
    State(state): State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    if state.upgrade.outdated().is_some() && (path.starts_with("/api/") || path.starts_with("/ws/"))
    {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_outdated",
            "this server is older than the database (a newer pvce runs); try again",
        )
        .with_retry_after(1)
        .into_response();
    }
    next.run(req).await
}

/// A request that failed for lack of space updates the `storage` health
/// check at once (see [`crate::space`]).
async fn note_storage_full(
    State(state): State<AppState>,
    response: axum::response::Response,
) -> axum::response::Response {
    if let Some(&crate::space::StorageFull(store)) = response.extensions().get() {
        let (space, health) = (state.space.clone(), state.health.clone());
        // Off the async threads (statvfs); done before the answer leaves so
        // a `/healthz` right after it already says so.
        let _ = tokio::task::spawn_blocking(move || space.record_failure(store, &health)).await;
    }
    response
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn fallback() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
    )
}
