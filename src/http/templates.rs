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
use crate::auth::Role;
use crate::builds::{self, DeriveRequest};
use crate::images::ImageFormat;
use crate::state::AppState;
use crate::templates::matching::{self, MatchResult};
use crate::templates::{self, ImportLimits, ImportParams, Template};

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
    Ok(Json(templates::list(&state.pool).await?))
}

async fn show(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Template>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(templates::get(&state.pool, id).await?))
}

async fn remove(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    me.require(STAFF)?;
    let t = templates::get(&state.pool, id).await?;
    if t.state != templates::TemplateState::Ready {
        builds::abandon(&state.pool, &state.storage, &state.vms, id, &me.user).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    // Teachers may delete their own templates; admins any.
    if me.user.role != Role::Admin && t.created_by != Some(me.user.id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the template's creator or an admin may delete it",
        ));
    }
    templates::delete(&state.pool, &state.storage, id).await?;
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
) -> Result<(StatusCode, Json<Template>), ApiError> {
    me.require(STAFF)?;
    // A declared length over the limit is refused before reading anything.
    let declared_len = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > state.config.max_upload_bytes) {
        return Err(templates::TemplateError::UploadTooLarge(state.config.max_upload_bytes).into());
    }
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
    let limits = ImportLimits {
        max_upload_bytes: state.config.max_upload_bytes,
        max_virtual_size: state.config.max_virtual_size,
    };
    let t = templates::import(
        &state.pool,
        &state.storage,
        limits,
        params,
        me.user.id,
        body.into_data_stream(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(t)))
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
    if body.os.len() > 64 || body.software.len() > 200 || body.software.iter().any(|s| s.len() > 64)
    {
        return Err(ApiError::bad_request(
            "os and software items are at most 64 characters, at most 200 items",
        ));
    }
    let all = templates::list(&state.pool).await?;
    Ok(Json(matching::find(&all, &body.os, &body.software)))
}

async fn derive(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<DeriveRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    me.require(STAFF)?;
    let (template, vm) =
        builds::derive(&state.pool, &state.storage, &state.vms, id, &me.user, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "template": template, "vm": vm })),
    ))
}

async fn seal(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Template>, ApiError> {
    me.require(STAFF)?;
    let timeout = state.config.shutdown_timeout();
    Ok(Json(
        builds::seal(
            &state.pool,
            &state.storage,
            &state.vms,
            id,
            &me.user,
            timeout,
        )
        .await?,
    ))
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
) -> Result<(StatusCode, Json<Template>), ApiError> {
    me.require(&[Role::Admin])?;
    let t = templates::flatten(&state.pool, &state.storage, id, &body.name, me.user.id).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

async fn usage(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<templates::LibraryUsage>, ApiError> {
    me.require(STAFF)?;
    Ok(Json(templates::usage(&state.pool).await?))
}
