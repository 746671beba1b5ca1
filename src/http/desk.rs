//! `/api/tickets` and `/api/desk/…`: the service desk ([`crate::desk`]).
//! Any signed-in user reports and follows their tickets; who may do what
//! with a ticket is decided by the desk service, not here.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser, IdPath};
use super::respond::Created;
use crate::desk::priority::Priority;
use crate::desk::problems::{NewProblem, Problem};
use crate::desk::tickets::{Filter, State as TicketState, Ticket};
use crate::desk::{DeskMember, NewCallback, NewComment, NewTicket, Shot, TicketView, kb};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tickets", get(list).post(create))
        .route("/api/tickets/{id}", get(show))
        .route("/api/tickets/{id}/assign", post(assign))
        .route("/api/tickets/{id}/state", post(set_state))
        .route("/api/tickets/{id}/priority", post(set_priority))
        .route("/api/tickets/{id}/comments", post(comment))
        .route("/api/tickets/{id}/resolve", post(resolve))
        .route("/api/tickets/{id}/confirm", post(confirm))
        .route("/api/tickets/{id}/reopen", post(reopen))
        .route("/api/tickets/{id}/callbacks", post(callback))
        .route("/api/tickets/{id}/reply", post(reply))
        .route("/api/tickets/{id}/template", post(link_template))
        .route("/api/tickets/{id}/screenshot", get(ticket_screenshot))
        .route("/api/desk/screenshots", post(take_screenshot))
        .route(
            "/api/desk/screenshots/{id}",
            get(screenshot).delete(drop_screenshot),
        )
        .route("/api/desk/members", get(members))
        .route("/api/desk/stats", get(stats))
        .route("/api/desk/sla", get(sla_policy).put(set_sla_policy))
        .route("/api/desk/calendar", get(calendar).put(set_calendar))
        .route("/api/problems", get(problems).post(create_problem))
        .route("/api/problems/{id}", get(problem))
        .route("/api/problems/{id}/tickets", post(link_problem))
        .route("/api/problems/{id}/resolve", post(resolve_problem))
        .route("/api/kb", get(kb_search).post(kb_create))
        .route(
            "/api/kb/{id}",
            get(kb_article).put(kb_update).delete(kb_retire),
        )
        .route("/api/kb/{id}/revisions", get(kb_revisions))
        .route("/api/kb/{id}/helped", post(kb_helped))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    text: String,
}

async fn reply(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ReplyBody>,
) -> Result<Json<TicketView>, ApiError> {
    Ok(Json(state.desk.reply(&me.user, id, &body.text).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateLinkBody {
    template_id: Uuid,
}

async fn link_template(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<TemplateLinkBody>,
) -> Result<Json<TicketView>, ApiError> {
    Ok(Json(
        state
            .desk
            .link_template(&me.user, id, body.template_id)
            .await?,
    ))
}

fn png(bytes: Vec<u8>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<Filter>,
) -> Result<Json<Vec<Ticket>>, ApiError> {
    Ok(Json(state.desk.list(&me.user, &q).await?))
}

async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<NewTicket>,
) -> Result<Created<TicketView>, ApiError> {
    Ok(Created(state.desk.create(&me.user, body).await?))
}

async fn show(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<TicketView>, ApiError> {
    Ok(Json(state.desk.view(&me.user, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    assignee_id: Uuid,
}

async fn assign(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Json<TicketView>, ApiError> {
    Ok(Json(
        state.desk.assign(&me.user, id, body.assignee_id).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: TicketState,
    text: Option<String>,
}

async fn set_state(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<StateBody>,
) -> Result<Json<TicketView>, ApiError> {
    Ok(Json(
        state
            .desk
            .set_state(&me.user, id, body.state, body.text.as_deref())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorityBody {
    priority: Priority,
    reason: String,
}

async fn set_priority(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<PriorityBody>,
) -> Result<Json<TicketView>, ApiError> {
    Ok(Json(
        state
            .desk
            .set_priority(&me.user, id, body.priority, &body.reason)
            .await?,
    ))
}

async fn comment(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<NewComment>,
) -> Result<Created<TicketView>, ApiError> {
    Ok(Created(state.desk.comment(&me.user, id, body).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    resolution: String,
}

async fn resolve(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<TicketView>, ApiError> {
    Ok(Json(
        state.desk.resolve(&me.user, id, &body.resolution).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    rating: u8,
    comment: Option<String>,
}

async fn confirm(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<Json<TicketView>, ApiError> {
    Ok(Json(
        state
            .desk
            .confirm(&me.user, id, body.rating, body.comment.as_deref())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReopenBody {
    reason: String,
}

async fn reopen(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ReopenBody>,
) -> Result<Json<TicketView>, ApiError> {
    Ok(Json(state.desk.reopen(&me.user, id, &body.reason).await?))
}

async fn callback(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<NewCallback>,
) -> Result<Created<TicketView>, ApiError> {
    Ok(Created(state.desk.callback(&me.user, id, body).await?))
}

async fn ticket_screenshot(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    Ok(png(state.desk.ticket_screenshot(&me.user, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShotBody {
    vm_id: Uuid,
}

async fn take_screenshot(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<ShotBody>,
) -> Result<Created<Shot>, ApiError> {
    Ok(Created(
        state.desk.take_screenshot(&me.user, body.vm_id).await?,
    ))
}

async fn screenshot(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    Ok(png(state.desk.screenshot(&me.user, id).await?))
}

async fn drop_screenshot(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.desk.drop_screenshot(&me.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<Vec<DeskMember>>, ApiError> {
    Ok(Json(state.desk.members(&me.user).await?))
}

async fn kb_search(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<kb::Search>,
) -> Result<Json<Vec<kb::Article>>, ApiError> {
    Ok(Json(state.desk.kb_search(&me.user, &q).await?))
}

async fn kb_article(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<kb::Article>, ApiError> {
    Ok(Json(state.desk.kb_article(&me.user, id).await?))
}

async fn kb_update(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<kb::ArticleEdit>,
) -> Result<Json<kb::Article>, ApiError> {
    Ok(Json(state.desk.kb_update(&me.user, id, body).await?))
}

async fn kb_retire(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<kb::Article>, ApiError> {
    Ok(Json(state.desk.kb_retire(&me.user, id).await?))
}

async fn kb_revisions(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Vec<kb::Revision>>, ApiError> {
    Ok(Json(state.desk.kb_revisions(&me.user, id).await?))
}

async fn kb_create(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<kb::NewArticle>,
) -> Result<Created<kb::Article>, ApiError> {
    Ok(Created(state.desk.kb_create(&me.user, body).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HelpedBody {
    vm_id: Option<Uuid>,
}

async fn kb_helped(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<HelpedBody>,
) -> Result<Json<kb::Article>, ApiError> {
    Ok(Json(state.desk.kb_helped(&me.user, id, body.vm_id).await?))
}

async fn problems(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<Vec<Problem>>, ApiError> {
    Ok(Json(state.desk.problems(&me.user).await?))
}

async fn create_problem(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<NewProblem>,
) -> Result<Created<Problem>, ApiError> {
    Ok(Created(state.desk.create_problem(&me.user, body).await?))
}

async fn problem(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Problem>, ApiError> {
    Ok(Json(state.desk.problem(&me.user, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    ticket_id: Uuid,
}

async fn link_problem(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<Json<Problem>, ApiError> {
    Ok(Json(
        state
            .desk
            .link_problem(&me.user, id, body.ticket_id)
            .await?,
    ))
}

async fn resolve_problem(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Problem>, ApiError> {
    Ok(Json(
        state
            .desk
            .resolve_problem(&me.user, id, &body.resolution)
            .await?,
    ))
}

async fn stats(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<crate::desk::stats::StatsQuery>,
) -> Result<Json<crate::desk::stats::Stats>, ApiError> {
    Ok(Json(state.desk.stats(&me.user, &q).await?))
}

async fn sla_policy(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<crate::desk::sla::Policy>, ApiError> {
    Ok(Json(state.desk.sla_policy(&me.user).await?))
}

async fn set_sla_policy(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<crate::desk::settings::PolicyForm>,
) -> Result<Json<crate::desk::sla::Policy>, ApiError> {
    Ok(Json(state.desk.set_sla_policy(&me.user, body).await?))
}

async fn calendar(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<crate::desk::calendar::CalendarSpec>, ApiError> {
    Ok(Json(state.desk.calendar(&me.user).await?))
}

async fn set_calendar(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<crate::desk::calendar::CalendarSpec>,
) -> Result<Json<crate::desk::calendar::CalendarSpec>, ApiError> {
    Ok(Json(state.desk.set_calendar(&me.user, body).await?))
}
