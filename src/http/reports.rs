//! `/api/reports`: the periodic service report ([`crate::reports`]). Who may
//! do what is decided by the report service; handlers map the answers.
//! `GET /api/reports/{id}.pdf` and `{id}.csv` (API.md's form) are the same
//! as `/pdf` and `/csv`.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser, IdPath};
use super::respond::Created;
use crate::reports::pdf::Lang;
use crate::reports::{NewReport, Report, ReportPatch};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/reports", get(list).post(create))
        .route("/api/reports/{id}", get(show).patch(edit).put(edit))
        .route("/api/reports/{id}/regenerate", post(regenerate))
        .route("/api/reports/{id}/review", post(review))
        .route("/api/reports/{id}/publish", post(publish))
        .route("/api/reports/{id}/pdf", get(pdf))
        .route("/api/reports/{id}/csv", get(csv))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PdfQuery {
    /// `en` or `zh-CN` (English when omitted).
    lang: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<Vec<Report>>, ApiError> {
    Ok(Json(state.reports.list(&me.user).await?))
}

async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<NewReport>,
) -> Result<Created<Report>, ApiError> {
    Ok(Created(state.reports.create(&me.user, body).await?))
}

/// `{id}`, `{id}.pdf` or `{id}.csv`.
async fn show(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(raw): Path<String>,
    ApiQuery(q): ApiQuery<PdfQuery>,
) -> Result<Response, ApiError> {
    let (stem, ext) = match raw.rsplit_once('.') {
        Some((stem, ext)) => (stem, Some(ext)),
        None => (raw.as_str(), None),
    };
    let id = Uuid::parse_str(stem).map_err(|_| ApiError::not_found())?;
    match ext {
        None => Ok(Json(state.reports.get(&me.user, id).await?).into_response()),
        Some("pdf") => pdf(State(state), me, IdPath(id), ApiQuery(q)).await,
        Some("csv") => csv(State(state), me, IdPath(id)).await,
        Some(_) => Err(ApiError::not_found()),
    }
}

async fn edit(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ReportPatch>,
) -> Result<Json<Report>, ApiError> {
    Ok(Json(state.reports.edit(&me.user, id, body).await?))
}

async fn regenerate(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Report>, ApiError> {
    Ok(Json(state.reports.regenerate(&me.user, id).await?))
}

async fn review(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Report>, ApiError> {
    Ok(Json(state.reports.review(&me.user, id).await?))
}

async fn publish(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Report>, ApiError> {
    Ok(Json(state.reports.publish(&me.user, id).await?))
}

fn download(r: &Report, mime: &'static str, ext: &str, bytes: Vec<u8>) -> Response {
    let day = r.from.get(..10).unwrap_or("report");
    (
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"pvce-report-{day}.{ext}\""),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        bytes,
    )
        .into_response()
}

async fn pdf(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<PdfQuery>,
) -> Result<Response, ApiError> {
    let (r, bytes) = state
        .reports
        .pdf(&me.user, id, Lang::parse(q.lang.as_deref()))
        .await?;
    Ok(download(&r, "application/pdf", "pdf", bytes))
}

async fn csv(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let (r, bytes) = state.reports.csv(&me.user, id).await?;
    Ok(download(&r, "text/csv; charset=utf-8", "csv", bytes))
}
