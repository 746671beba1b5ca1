//! `GET /api/me/export`: the caller's own data as one JSON download (see
//! [`crate::mydata`]). Any signed-in user, for themselves only.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::error::ApiError;
use super::extract::CurrentUser;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/me/export", get(export))
}

async fn export(State(state): State<AppState>, me: CurrentUser) -> Result<Response, ApiError> {
    let doc = state.mydata.export(&me.user).await?;
    let name = doc.file_name();
    let mut res = Json(doc).into_response();
    // The name is ASCII built from the id and a date ([`crate::mydata::Export::file_name`]).
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    // Personal data: never kept by a shared cache.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
