//! `/api/vms`: personal VMs (owner, the course's teacher, admins).

use std::collections::HashMap;

use axum::extract::State;
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser, IdPath};
use super::nodes::RangeQuery;
use crate::auth::Role;
use crate::monitor::{self, VmHistory, VmLoad};
use crate::state::AppState;
use crate::vms::{Power, Vm};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/vms", get(list))
        .route("/api/vms/{id}", get(show))
        .route("/api/vms/{id}/history", get(history))
        .route("/api/vms/{id}/start", power(Power::Start))
        .route("/api/vms/{id}/shutdown", power(Power::Shutdown))
        .route("/api/vms/{id}/poweroff", power(Power::Poweroff))
        .route("/api/vms/{id}/reboot", power(Power::Reboot))
        .route("/api/vms/{id}/reset", power(Power::Reset))
        .route("/api/vms/{id}/migrate", post(migrate))
        .route("/api/vms/{id}/move", post(move_layer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    course_id: Option<Uuid>,
}

/// A VM as listed or shown: with its latest load figures while it runs
/// (`null` otherwise, and until the sampler has read it).
#[derive(Debug, Serialize)]
struct VmView {
    #[serde(flatten)]
    vm: Vm,
    /// Share of its vCPUs busy, percent.
    cpu_percent: Option<f64>,
    /// Memory the guest has (balloon size).
    mem_mib: Option<u64>,
    /// Host memory its process occupies.
    rss_mib: Option<u64>,
}

impl VmView {
    fn new(vm: Vm, loads: &HashMap<Uuid, VmLoad>) -> Self {
        let load = loads.get(&vm.id);
        Self {
            cpu_percent: load.and_then(|l| l.cpu_percent),
            mem_mib: load.map(|l| l.mem_mib),
            rss_mib: load.and_then(|l| l.rss_mib),
            vm,
        }
    }
}

async fn loads(state: &AppState) -> Result<HashMap<Uuid, VmLoad>, ApiError> {
    let latest = monitor::latest_vm_loads(&state.pool, state.config.sample_interval_secs).await?;
    Ok(latest.into_iter().map(|l| (l.vm_id, l)).collect())
}

async fn list(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<VmView>>, ApiError> {
    let vms = state.vms.list(&me.user, q.course_id).await?;
    let loads = loads(&state).await?;
    Ok(Json(
        vms.into_iter().map(|vm| VmView::new(vm, &loads)).collect(),
    ))
}

async fn show(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<VmView>, ApiError> {
    state.vms.get_for(&me.user, id).await?;
    let vm = state.vms.refresh(id).await?;
    Ok(Json(VmView::new(vm, &loads(&state).await?)))
}

/// The VM's CPU and memory over the last `minutes` (who may see the VM may
/// see its history).
async fn history(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<VmHistory>, ApiError> {
    state.vms.get_for(&me.user, id).await?;
    Ok(Json(
        monitor::vm_history(&state.pool, id, q.minutes.unwrap_or(60)).await?,
    ))
}

/// The route of one power action.
fn power(action: Power) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>, me: CurrentUser, IdPath(id): IdPath| async move {
            let vm = state.vms.power(&me.user, id, action).await?;
            Ok::<_, ApiError>(Json(vm))
        },
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    node_id: Uuid,
}

async fn migrate(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<MigrateBody>,
) -> Result<Json<Vm>, ApiError> {
    me.require(&[Role::Admin])?;
    let vm = state.vms.get_for(&me.user, id).await?;
    Ok(Json(
        state
            .vms
            .migrate(&vm, body.node_id, Some(&me.user.username))
            .await?,
    ))
}

/// Moves a stopped VM's node-local layer to another node (admin).
async fn move_layer(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<MigrateBody>,
) -> Result<Json<Vm>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(
        state.vms.move_layer(&me.user, id, body.node_id).await?,
    ))
}
