//! `/api/nodes`: admins; staff read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CurrentUser, IdPath};
use super::respond::Created;
use crate::auth::Role;
use crate::monitor::{self, History, NodeHistory};
use crate::nodes::{NewNode, Node};
use crate::state::AppState;

/// Who may read nodes and their load: admins, and the desk's staff (who
/// need to see where a ticket's VM runs); only admins change them.
const READERS: &[Role] = &[Role::Admin, Role::Staff];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/nodes", get(list).post(create))
        .route("/api/nodes/{id}", get(show).delete(remove))
        .route("/api/nodes/{id}/maintenance", post(maintenance))
        .route("/api/nodes/{id}/overlay", post(overlay))
        .route("/api/nodes/{id}/metrics", get(metrics))
        .route("/api/nodes/metrics", get(cluster_metrics))
        .route("/api/nodes/{id}/fence", post(fence))
        .route("/api/cluster", get(cluster))
}

/// How the server places and keeps VMs (its start-up settings), for the
/// admin overview: read-only, the flags / `PVCE_*` variables decide.
#[derive(Debug, Serialize)]
struct ClusterSettings {
    placement_policy: &'static str,
    host_reserve_mib: u64,
    layer_storage: &'static str,
    disk_cache: crate::libvirt::DiskCache,
    sample_interval_seconds: u64,
    /// The node transports `POST /api/nodes` accepts here (`tcp` and `test`
    /// only when the server was started to allow them).
    node_transports: Vec<crate::libvirt::Transport>,
    /// This installation's id (src/installation) and its store pool's name.
    installation_id: uuid::Uuid,
    template_pool: String,
}

async fn cluster(
    State(state): State<AppState>,
    me: CurrentUser,
) -> Result<Json<ClusterSettings>, ApiError> {
    me.require(&[Role::Admin])?;
    let c = &state.config;
    Ok(Json(ClusterSettings {
        placement_policy: c.placement_policy.as_str(),
        host_reserve_mib: c.host_reserve_mib,
        layer_storage: c.layer_storage.as_str(),
        disk_cache: c.disk_cache,
        sample_interval_seconds: c.sample_interval_secs,
        node_transports: state.nodes.address_policy().transports(),
        installation_id: state.installation.id,
        template_pool: state.names.template_pool.clone(),
    }))
}

async fn list(State(state): State<AppState>, me: CurrentUser) -> Result<Json<Vec<Node>>, ApiError> {
    me.require(READERS)?;
    Ok(Json(state.nodes.list().await?))
}

async fn show(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<Json<Node>, ApiError> {
    me.require(READERS)?;
    Ok(Json(state.nodes.get(id).await?))
}

async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(body): ApiJson<NewNode>,
) -> Result<Created<Node>, ApiError> {
    me.require(&[Role::Admin])?;
    let node = state.nodes.register(body, Some(&me.user.username)).await?;
    Ok(Created(node))
}

async fn remove(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    me.require(&[Role::Admin])?;
    state.vms.remove_node(id, Some(&me.user.username)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    enabled: bool,
    /// Also live-migrate the node's running VMs to other nodes (in the background).
    #[serde(default)]
    drain: bool,
}

async fn maintenance(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<MaintenanceBody>,
) -> Result<Json<Node>, ApiError> {
    me.require(&[Role::Admin])?;
    let node = state
        .nodes
        .set_maintenance(id, body.enabled, Some(&me.user.username))
        .await?;
    if body.enabled && body.drain {
        state.vms.spawn_drain(id, Some(me.user.username.clone()));
    }
    Ok(Json(node))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverlayBody {
    /// The node's IPv4 address on the lab-network underlay; `null` withdraws it.
    /// Required (a missing field is not a withdrawal): deserialised as an
    /// explicit `Option`, which serde does not default when absent.
    #[serde(deserialize_with = "Option::deserialize")]
    vtep_address: Option<String>,
}

/// Declares whether the node has pvce's lab-network overlay (its network
/// hook installed) and its VTEP address.
async fn overlay(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<OverlayBody>,
) -> Result<Json<Node>, ApiError> {
    me.require(&[Role::Admin])?;
    Ok(Json(state.nodes.set_vtep(id, body.vtep_address).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FenceBody {
    /// The admin's statement that the node is powered off (or its QEMUs are
    /// otherwise gone); must be `true`.
    confirm_powered_off: bool,
}

#[derive(Debug, Serialize)]
struct Fenced {
    node: Node,
    vms_released: u64,
}

async fn fence(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<FenceBody>,
) -> Result<Json<Fenced>, ApiError> {
    me.require(&[Role::Admin])?;
    if !body.confirm_powered_off {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "confirmation_required",
            "fencing needs confirm_powered_off: true",
        ));
    }
    let vms_released = state.vms.fence_node(id, Some(&me.user.username)).await?;
    Ok(Json(Fenced {
        node: state.nodes.get(id).await?,
        vms_released,
    }))
}

/// `?minutes=N` of a history route (nodes and VMs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RangeQuery {
    /// Minutes of history, 1..=10080 (7 days); 60 when omitted.
    pub(super) minutes: Option<u32>,
}

async fn metrics(
    State(state): State<AppState>,
    me: CurrentUser,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<History>, ApiError> {
    me.require(READERS)?;
    Ok(Json(
        monitor::history(&state.pool, id, q.minutes.unwrap_or(60)).await?,
    ))
}

#[derive(Debug, serde::Serialize)]
struct ClusterHistory {
    nodes: Vec<NodeHistory>,
}

async fn cluster_metrics(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<ClusterHistory>, ApiError> {
    me.require(READERS)?;
    Ok(Json(ClusterHistory {
        nodes: monitor::cluster_history(&state.pool, q.minutes.unwrap_or(60)).await?,
    }))
}
