//! `/api/templates` (teachers and admins).

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser, IdPath};
use super::respond::Created;
use crate::auth::Role;
use crate::builds::DeriveRequest;
use crate::images::ImageFormat;
use crate::state::AppState;
use crate::templates::matching::MatchResult;
use crate::templates::{self, ImportParams, Template};

const STAFF: &[Role] = &[Role::Teacher, Role::Admin];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/templates", get(list))
        .route("/api/templates/import", post(import))
        .route("/api/templates/match", post(match_templates))
        .route("/api/templates/{id}/derive", post(derive))
        .route("/api/templates/{id}/seal", post(seal))
        .route("/api/templates/{id}/flatten", post(flatten))
        .route("/api/templates/usage", get(usage))
        .route("/api/templates/{id}", get(show).delete(remove))
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<Vec<Template>>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(state.templates.list().await?))
}

async fn show(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Template>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(state.templates.get(id).await?))
}

async fn remove(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    me.require(STAFF)?;
    state.builds.remove(&me.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    name: String,
    format: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    software: String,
    parent_id: Option<Uuid>,
}

async fn import(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Created<Template>, ApiError> {
    me.require(STAFF)?;
    let declared_len = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let format: ImageFormat = q
        .format
        .parse()
        .map_err(|_| ApiError::bad_request("format must be raw, qcow2 or vmdk"))?;
    let software: Vec<String> = q
        .software
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let params = ImportParams {
        name: q.name,
        format,
        os: q.os,
        software,
        parent_id: q.parent_id,
    };
    let t = state
        .templates
        .import(me.user.id, declared_len, params, body.into_data_stream())
        .await?;
    Ok(Created(t))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchBody {
    os: String,
    software: Vec<String>,
}

async fn match_templates(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<MatchBody>,
) -> Result<Json<MatchResult>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(
        state.templates.matching(&body.os, &body.software).await?,
    ))
}

async fn derive(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<DeriveRequest>,
) -> Result<Created<serde_json::Value>, ApiError> {
    me.require(STAFF)?;
    let (template, vm) = state.builds.derive(&me.user, id, body).await?;
    Ok(Created(
        serde_json::json!({ "template": template, "vm": vm }),
    ))
}

async fn seal(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Template>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(state.builds.seal(&me.user, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlattenBody {
    name: String,
}

async fn flatten(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<FlattenBody>,
) -> Result<Created<Template>, ApiError> {
    me.require(&[Role::Admin])?;
    let t = state.templates.flatten(id, &body.name, me.user.id).await?;
    Ok(Created(t))
}

async fn usage(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<templates::LibraryUsage>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(state.templates.usage().await?))
}
