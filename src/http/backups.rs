//! `/api/backups` (admins: status, run now) and `/api/vms/{id}/backups`
//! (the backup points of a VM's personal layer, for whoever may see the VM)
//! and `/api/vms/{id}/restore` (one of them back, the current layer kept),
//! `/api/vms/{id}/backups/{bid}/files?path=` (one file or directory of a point).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser, IdPath, IdPath2};
use crate::auth::Role;
use crate::backup::{GuestFiles, Point, Restored, Status};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/backups", get(status).post(run_now))
        .route("/api/vms/{id}/backups", get(points))
        .route("/api/vms/{id}/restore", post(restore))
        .route("/api/vms/{id}/backups/{bid}/files", get(files))
}

async fn status(State(state): State<AppState>, me: CurrentUser) -> Result<Json<Status>, ApiError> {
    me.require(&[Role::Admin])?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(Json(state.backups.status(now).await?))
}

async fn run_now(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    me.require(&[Role::Admin])?;
    state.backups.start_now(&me.user.username).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"started": true}))))
}

async fn points(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vec<Point>>, ApiError> {
    Ok(Json(state.backups.points(&me.user, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    backup_id: Uuid,
}

async fn restore(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<RestoreBody>,
) -> Result<Json<Restored>, ApiError> {
    Ok(Json(
        state.backups.restore(&me.user, id, body.backup_id).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesQuery {
    #[serde(default = "slash")]
    path: String,
}

fn slash() -> String {
    "/".into()
}

/// A directory listing as JSON, or one file as a download.
async fn files(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath2(id, bid): IdPath2,
    ApiQuery(q): ApiQuery<FilesQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::{HeaderMap, HeaderValue, header};
    use axum::response::IntoResponse;
    match state.backups.files(&me.user, id, bid, &q.path).await? {
        GuestFiles::Dir { path, entries } => {
            Ok(Json(json!({"path": path, "entries": entries})).into_response())
        }
        GuestFiles::File { file, size, name } => {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            // The validated path allows only [A-Za-z0-9._+-] in a name.
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            let stream = tokio_util::io::ReaderStream::new(file);
            Ok((headers, axum::body::Body::from_stream(stream)).into_response())
        }
    }
}
