//! `GET /api/courses/{id}/collect?path=/root/lab1`: the teacher (or an admin)
//! downloads one tar of that directory from every stopped VM of the course
//! (see [`crate::collect`]); others get 404.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiQuery, CurrentUser, IdPath};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/courses/{id}/collect", get(collect_files))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectQuery {
    path: String,
}

async fn collect_files(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<CollectQuery>,
) -> Result<Response, ApiError> {
    let c = state.collector.start(&me.user, id, &q.path).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    // The file name is ASCII by construction.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", c.file_name)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok((headers, Body::from_stream(c.stream)).into_response())
}
