//! Nodes: the libvirt hosts VMs run on, and the server's connections to them.
//!
//! A node is a stock libvirtd reached by URI; pvce runs no agent on it. The
//! [`Nodes`] registry keeps one open [`libvirt::Node`] connection per node,
//! reopening it (with a deadline) when it dies, and a monitor task refreshes
//! each node's state and memory figures every few seconds. A node that cannot
//! be reached is `down`; callers get 503 `node_unavailable` for it.
//!
//! Health: every probe attempt has a deadline ([`PROBE_DEADLINE`]) for
//! connecting and for the answer, so a frozen node (TCP accepted, libvirt
//! silent) is marked `down` within seconds and never holds up the probes of
//! other nodes; its half-dead connection is dropped so the next attempt
//! reconnects (see `libvirt::conn` for why a hanging connect cannot pile up
//! threads). One missed answer is not enough: a probe marks a node `down`
//! only when a second attempt, at once on a fresh connection, fails too.
//!
//! Trust: a node is registered as a [`libvirt::NodeAddress`] (from a URI or
//! from `transport`/`host`/`port`/`user`), never as a free-form URI, and the
//! connection opens only from the address parsed again out of the stored URI
//! under the server's [`AddressPolicy`]: a row that does not parse (or a
//! `tcp`/`test` node the server no longer allows) stays `down`, and the
//! `node_down` event says why.
//!
//! Capabilities (graphics types, machines, accelerators) are read when a
//! probe finds the node up (once per connection, see `libvirt::domcaps`) and
//! kept in memory: placement uses them, `node.capabilities` shows them
//! (`null` until the node was reached since the server started).
//!
//! Invariant: names and URIs are unique (`nodes_name_key`, `nodes_uri_key`);
//! the stored `uri` is the canonical form of its address.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::events::{self, EventKind, NewEvent};
use crate::libvirt::{
    self, AccelSetting, AddressError, AddressPolicy, LibvirtError, NodeAddress, NodeCapabilities,
};

pub const LOCAL_NODE_NAME: &str = "local";
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(3);
/// Longest a probe's first attempt may wait for a connection, and then for
/// the node's answer.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(3);
/// The same for the second attempt, at once on a fresh connection
/// ([`Nodes::probe`]): it rides out a moment's stall, not a slow node — a
/// node that answers within [`PROBE_DEADLINE`] never needs it. A node that
/// freezes is marked `down` within `MONITOR_INTERVAL + PROBE_DEADLINE +
/// RETRY_DEADLINE` = 7.5 s (its open connection's call times out, then the
/// fresh connection's handshake), one whose connection breaks sooner (both
/// connects refused at once) — inside 10 s.
pub const RETRY_DEADLINE: Duration = Duration::from_millis(1500);

/// A node's state as the API shows it: `up` or `down` as its probes last
/// found it (the `nodes.state` column), `maintenance` for an up node that
/// takes no new VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Up,
    Maintenance,
    Down,
}

impl NodeState {
    /// True while the node answers (in maintenance or not).
    pub fn is_up(self) -> bool {
        self != Self::Down
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: Uuid,
    pub name: String,
    pub uri: String,
    pub console_address: String,
    /// The node's IPv4 address on the lab-network underlay (its VXLAN
    /// tunnel endpoint), set once pvce's libvirt network hook is installed
    /// there; `None`: no overlay, lab networks stay on one node (see
    /// src/labnets.rs).
    pub vtep_address: Option<String>,
    pub state: NodeState,
    pub maintenance: bool,
    pub cpus: u32,
    pub mem_total_mib: u64,
    pub mem_used_mib: u64,
    pub cpu_percent: f64,
    pub vms_running: u64,
    pub template_store_used_bytes: u64,
    pub template_store_free_bytes: u64,
    /// Free bytes of the template store, `None` until it has been sampled.
    #[serde(skip)]
    pub store_free: Option<u64>,
    pub last_seen: Option<String>,
    /// Why the last probe failed while the node is down (libvirt's words).
    pub last_error: Option<String>,
    /// Times the node went down in the last 7 days (from the event log).
    pub failures_7d: u64,
    /// What the node can run; `None` until it has been reached.
    pub capabilities: Option<NodeCapabilities>,
}

impl Node {
    /// This node as placement sees it for a VM whose template chain
    /// `holders` hold entirely and is `chain_bytes` big (a node without it
    /// qualifies while its store has room, or has not been sampled: the
    /// copy itself will tell), with `committed_mib` promised to the VMs
    /// placed here on top of what the node reports, and why it cannot run
    /// the VM's spec (`unsupported`).
    pub fn candidate(
        self,
        holders: &std::collections::HashSet<Uuid>,
        chain_bytes: u64,
        committed_mib: u64,
        unsupported: Option<String>,
    ) -> crate::placement::Candidate {
        crate::placement::Candidate {
            node_id: self.id,
            up: self.state.is_up(),
            maintenance: self.maintenance,
            has_template: holders.contains(&self.id)
                || self.store_free.is_none_or(|free| free >= chain_bytes),
            mem_total_mib: self.mem_total_mib,
            mem_used_mib: self.mem_used_mib.saturating_add(committed_mib),
            cpu_percent: self.cpu_percent,
            vms_running: self.vms_running,
            unsupported,
            name: self.name,
        }
    }
}

/// A node to register: its address either as `uri` or as the structured
/// `transport`, `host`, `port`, `user` (exactly one of the two forms).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    pub name: String,
    #[serde(default)]
    pub uri: Option<String>,
    /// `tls`, `ssh`, `tcp` (test rigs), `local` or `xen`.
    #[serde(default)]
    pub transport: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// A number; checked for 1–65535 here, so a bad one is a 422 naming it.
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
    pub console_address: Option<String>,
    /// The node's lab-network overlay address ([`Node::vtep_address`]).
    #[serde(default)]
    pub vtep_address: Option<String>,
}

/// A VTEP address must be a plain unicast IPv4 address: VXLAN's multicast
/// groups are IPv4 here, and the network hook finds the underlay device by it.
pub fn check_vtep(addr: &str) -> Result<std::net::Ipv4Addr, NodeError> {
    match addr.parse::<std::net::Ipv4Addr>() {
        Ok(a)
            if !(a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback()) =>
        {
            Ok(a)
        }
        _ => Err(NodeError::Invalid(
            "vtep_address must be the node's unicast IPv4 address on the lab-network underlay"
                .into(),
        )),
    }
}

impl NewNode {
    /// The node's address, from whichever form was given.
    pub fn address(&self, policy: AddressPolicy) -> Result<NodeAddress, NodeError> {
        let parts = self.host.is_some() || self.port.is_some() || self.user.is_some();
        match (&self.uri, &self.transport) {
            (Some(uri), None) if !parts => Ok(NodeAddress::parse(uri, policy)?),
            (Some(_), _) => Err(NodeError::BadForm(
                "give either uri or transport/host/port/user, not both",
            )),
            (None, Some(t)) => Ok(NodeAddress::from_parts(
                t,
                self.host.as_deref(),
                self.port,
                self.user.as_deref(),
                policy,
            )?),
            (None, None) => Err(NodeError::BadForm(
                "a node needs uri, or transport with host (and port, user for ssh)",
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Invalid(String),
    /// The node's address is refused (→ 422 `bad_node_uri`).
    #[error("bad node address: {0}")]
    BadUri(#[from] AddressError),
    /// Neither or both address forms were given (→ 422 `bad_node_uri`).
    #[error("{0}")]
    BadForm(&'static str),
    #[error("no such node")]
    NotFound,
    #[error("a node with this {0} already exists")]
    Duplicate(&'static str),
    #[error(
        "{0} VM(s) run on this node, or ran there when it went down (fence it first: POST /api/nodes/{{id}}/fence)"
    )]
    Busy(u64),
    #[error(
        "{0} VM(s) keep their disks (node-local layers) on this node; move them to another node first"
    )]
    HoldsLayers(u64),
    #[error("node {0} is unavailable")]
    Unavailable(String),
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A node that could not be connected to, and why (libvirt's words or
/// the address check's).
#[derive(Debug)]
struct Unreachable {
    name: String,
    why: String,
}

/// What a probe found.
#[derive(Debug, Clone, Copy)]
enum Mark<'a> {
    Up(&'a libvirt::NodeInfo),
    /// Unreachable or not answering, and why.
    Down(&'a str),
}

/// The registry of node connections.
#[derive(Debug)]
pub struct Nodes {
    pool: Pool,
    conns: RwLock<HashMap<Uuid, libvirt::Node>>,
    connect_timeout: Duration,
    accel: AccelSetting,
    policy: AddressPolicy,
    /// Last capabilities read from each node (see the module docs).
    caps: std::sync::RwLock<HashMap<Uuid, NodeCapabilities>>,
    /// Up/down changes as they are recorded, for whoever acts on them (the
    /// service desk opens system incidents from these).
    changes: tokio::sync::broadcast::Sender<NodeChange>,
}

/// A node's state changed (sent after the event-log entry is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeChange {
    pub node: Uuid,
    pub up: bool,
}

/// The columns of [`from_row`]; `failures_7d` counts the node's failures
/// since `week_ago` (RFC 3339 text this module formats, so it is safe to
/// splice: the two databases share no date arithmetic).
fn columns(week_ago: &str) -> String {
    format!("n.id, n.name, n.uri, n.console_address, n.vtep_address, n.maintenance, n.state, n.cpus, n.mem_total_mib, n.mem_used_mib, n.last_seen, n.last_error, n.store_used_bytes, n.store_free_bytes,
    (SELECT COUNT(*) FROM vms v WHERE v.node_id = n.id AND v.state IN ('starting', 'running', 'stopping')) AS vms_running,
    (SELECT s.cpu_percent FROM node_samples s WHERE s.node_id = n.id AND s.cpu_percent IS NOT NULL ORDER BY s.at DESC LIMIT 1) AS cpu_percent,
    (SELECT COUNT(*) FROM events e WHERE e.node_id = n.id AND e.kind = 'node_down'
     AND e.at >= '{week_ago}') AS failures_7d")
}

fn week_ago() -> String {
    db::format_time(time::OffsetDateTime::now_utc() - time::Duration::days(7))
}

fn from_row(row: &crate::db::Row) -> Result<Node, sqlx::Error> {
    let state: String = row.try_get("state")?;
    let maintenance = row.try_get::<i64, _>("maintenance")? != 0;
    let store_free = row
        .try_get::<Option<i64>, _>("store_free_bytes")?
        .map(|v| u64::try_from(v).unwrap_or(0));
    Ok(Node {
        id: db::uuid(row, "id")?,
        name: row.try_get("name")?,
        uri: row.try_get("uri")?,
        console_address: row.try_get("console_address")?,
        vtep_address: row.try_get("vtep_address")?,
        state: match (state.as_str(), maintenance) {
            ("up", true) => NodeState::Maintenance,
            ("up", false) => NodeState::Up,
            _ => NodeState::Down,
        },
        maintenance,
        cpus: u32::try_from(row.try_get::<i64, _>("cpus")?).unwrap_or(0),
        mem_total_mib: u64::try_from(row.try_get::<i64, _>("mem_total_mib")?).unwrap_or(0),
        mem_used_mib: u64::try_from(row.try_get::<i64, _>("mem_used_mib")?).unwrap_or(0),
        // The sampler's latest figure (src/monitor.rs); 0 until it has two readings.
        cpu_percent: row.try_get::<Option<f64>, _>("cpu_percent")?.unwrap_or(0.0),
        vms_running: u64::try_from(row.try_get::<i64, _>("vms_running")?).unwrap_or(0),
        template_store_used_bytes: row
            .try_get::<Option<i64>, _>("store_used_bytes")?
            .map_or(0, |v| u64::try_from(v).unwrap_or(0)),
        template_store_free_bytes: store_free.unwrap_or(0),
        store_free,
        last_seen: row.try_get("last_seen")?,
        last_error: row.try_get("last_error")?,
        failures_7d: u64::try_from(row.try_get::<i64, _>("failures_7d")?).unwrap_or(0),
        capabilities: None,
    })
}

impl Nodes {
    pub fn new(pool: Pool, connect_timeout: Duration, accel: AccelSetting) -> Self {
        Self {
            pool,
            conns: RwLock::new(HashMap::new()),
            connect_timeout,
            accel,
            policy: AddressPolicy::default(),
            caps: std::sync::RwLock::new(HashMap::new()),
            changes: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// Up/down changes from now on (see [`NodeChange`]).
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<NodeChange> {
        self.changes.subscribe()
    }

    /// Which transports beyond tls/ssh/local nodes may use (default: none).
    pub fn with_address_policy(mut self, policy: AddressPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn address_policy(&self) -> AddressPolicy {
        self.policy
    }

    /// The capabilities last read from node `id`, if it has been reached.
    pub fn capabilities(&self, id: Uuid) -> Option<NodeCapabilities> {
        self.caps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    fn with_caps(&self, mut node: Node) -> Node {
        node.capabilities = self.capabilities(node.id);
        node
    }

    pub async fn list(&self) -> Result<Vec<Node>, NodeError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM nodes n ORDER BY n.name",
            columns(&week_ago())
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(self.with_caps(from_row(r)?)))
            .collect()
    }

    pub async fn get(&self, id: Uuid) -> Result<Node, NodeError> {
        let sql = format!(
            "SELECT {} FROM nodes n WHERE n.id = $1",
            columns(&week_ago())
        );
        db::fetch_row(&self.pool, &sql, &[&id.to_string()], from_row)
            .await?
            .map(|n| self.with_caps(n))
            .ok_or(NodeError::NotFound)
    }

    /// Registers a node. The node need not be reachable yet: it starts `down`
    /// and the monitor brings it `up` once libvirt answers.
    /// `actor`: the admin who registers it (`None` for the server's own `local`).
    pub async fn register(&self, new: NewNode, actor: Option<&str>) -> Result<Node, NodeError> {
        crate::names::NODE_NAME
            .check(&new.name)
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let uri = new.address(self.policy)?.to_uri();
        let console = new.console_address.unwrap_or_else(|| "127.0.0.1".into());
        if console.parse::<std::net::IpAddr>().is_err() {
            return Err(NodeError::Invalid(
                "console_address must be an IP address".into(),
            ));
        }
        if let Some(v) = &new.vtep_address {
            check_vtep(v)?;
        }
        let id = Uuid::new_v4();
        let res = sqlx::query(
            "INSERT INTO nodes (id, name, uri, console_address, vtep_address, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(&new.name)
        .bind(&uri)
        .bind(&console)
        .bind(new.vtep_address.clone())
        .bind(db::now())
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => {}
            Err(e) => {
                return Err(match db::unique_violation(&e).as_deref() {
                    Some("nodes.name") => NodeError::Duplicate("name"),
                    Some("nodes.uri") => NodeError::Duplicate("uri"),
                    _ => e.into(),
                });
            }
        }
        events::record(
            &self.pool,
            NewEvent::node(EventKind::NodeAdded, id, &new.name, uri).by(actor),
        )
        .await;
        // Best effort: a reachable node is `up` right away.
        let _ = self.probe(id).await;
        self.get(id).await
    }

    /// Registers the local libvirt as node `local` if no node exists yet.
    /// `uri` (`--node-uri`) must be an address the policy allows even when
    /// nodes exist already, so a bad setting fails start-up, not later.
    pub async fn ensure_local(&self, uri: &str, console_address: &str) -> Result<(), NodeError> {
        NodeAddress::parse(uri, self.policy)?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes")
            .fetch_one(&self.pool)
            .await?;
        if n == 0 {
            match self
                .register(
                    NewNode {
                        name: LOCAL_NODE_NAME.into(),
                        uri: Some(uri.into()),
                        console_address: Some(console_address.into()),
                        ..NewNode::default()
                    },
                    None,
                )
                .await
            {
                Ok(_) | Err(NodeError::Duplicate(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Starts removing a node from the cluster: the node's row is read in a
    /// transaction that [`Removal::finish`] commits. In between, the VMs'
    /// side of the removal ([`crate::vms::VmManager::remove_node`]) checks and
    /// updates its rows in the same transaction, so a start placed on the
    /// node meanwhile cannot slip in between.
    pub async fn begin_removal(&self, id: Uuid) -> Result<Removal<'_>, NodeError> {
        let mut tx = db::begin(&self.pool).await?;
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM nodes WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(name) = name else {
            return Err(NodeError::NotFound);
        };
        Ok(Removal {
            nodes: self,
            tx,
            id,
            name,
        })
    }

    /// Puts a node in maintenance or takes it out (idempotent; only a change
    /// is logged as an event).
    pub async fn set_maintenance(
        &self,
        id: Uuid,
        enabled: bool,
        actor: Option<&str>,
    ) -> Result<Node, NodeError> {
        // Only a change returns a row, so concurrent toggles log it once.
        let changed: Option<String> = sqlx::query_scalar(
            "UPDATE nodes SET maintenance = $1 WHERE id = $2 AND maintenance <> $3 RETURNING name",
        )
        .bind(i64::from(enabled))
        .bind(id.to_string())
        .bind(i64::from(enabled))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(name) = changed {
            let (kind, what) = if enabled {
                (
                    EventKind::MaintenanceOn,
                    "no new VMs are placed on the node",
                )
            } else {
                (EventKind::MaintenanceOff, "the node takes new VMs again")
            };
            events::record(&self.pool, NewEvent::node(kind, id, &name, what).by(actor)).await;
        }
        self.get(id).await
    }

    /// Declares (or, with `None`, withdraws) the node's lab-network overlay
    /// address. It only affects lab networks created from now on: live ones
    /// keep what they were made with (src/labnets.rs).
    pub async fn set_vtep(&self, id: Uuid, vtep: Option<String>) -> Result<Node, NodeError> {
        if let Some(v) = &vtep {
            check_vtep(v)?;
        }
        let done = sqlx::query("UPDATE nodes SET vtep_address = $1 WHERE id = $2")
            .bind(vtep)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(NodeError::NotFound);
        }
        self.get(id).await
    }

    /// The open connection to a node, (re)connecting with a deadline if needed.
    pub async fn conn(&self, id: Uuid) -> Result<libvirt::Node, NodeError> {
        self.conn_within(id, self.connect_timeout).await
    }

    async fn conn_within(
        &self,
        id: Uuid,
        connect_timeout: Duration,
    ) -> Result<libvirt::Node, NodeError> {
        match self.open(id, connect_timeout).await? {
            Ok(c) => Ok(c),
            Err(unreachable) => {
                self.mark(id, Mark::Down(&unreachable.why)).await?;
                Err(NodeError::Unavailable(unreachable.name))
            }
        }
    }

    /// Node `id`'s connection: the open one if libvirt still holds it
    /// alive, else a new one within `connect_timeout`. An unreachable node
    /// is the inner error (nothing is marked: the caller decides).
    async fn open(
        &self,
        id: Uuid,
        connect_timeout: Duration,
    ) -> Result<Result<libvirt::Node, Unreachable>, NodeError> {
        if let Some(c) = self.conns.read().await.get(&id)
            && c.is_alive()
        {
            return Ok(Ok(c.clone()));
        }
        let node = self.get(id).await?;
        // Parsed again on every connect: what is in the database is only
        // trusted as far as today's parser and policy accept it.
        let address = match NodeAddress::parse(&node.uri, self.policy) {
            Ok(a) => a,
            Err(e) => {
                let why = format!("refusing to connect to {}: {e}", node.uri);
                tracing::warn!(node = %node.name, "{why}");
                self.conns.write().await.remove(&id);
                return Ok(Err(Unreachable {
                    name: node.name,
                    why,
                }));
            }
        };
        // A class starting together (the paper's boot storm) issues many
        // domain creations at once; enough workers keep them from queueing
        // behind each other into the call timeout. libvirtd bounds its own
        // concurrency (max_workers) anyway.
        let options = libvirt::NodeOptions {
            workers: 16,
            ..libvirt::NodeOptions::default()
        };
        match libvirt::Node::open_with(&address, connect_timeout, options).await {
            Ok(c) => {
                self.conns.write().await.insert(id, c.clone());
                Ok(Ok(c))
            }
            Err(e) => {
                tracing::warn!(node = %node.name, error = %e, "node unreachable");
                self.conns.write().await.remove(&id);
                Ok(Err(Unreachable {
                    name: node.name,
                    why: e.to_string(),
                }))
            }
        }
    }

    /// The accelerator setting domains are created with.
    pub fn accel(&self) -> AccelSetting {
        self.accel
    }

    /// Records a probe's result; a change of state (up → down, down → up)
    /// is also written to the event log, once, by whichever probe saw it.
    async fn mark(&self, id: Uuid, mark: Mark<'_>) -> Result<(), NodeError> {
        let (up, info) = match mark {
            Mark::Up(info) => (true, Some(info)),
            Mark::Down(_) => (false, None),
        };
        let state = if up { "up" } else { "down" };
        // Only a change of state returns a row (with the name the event needs).
        let changed: Option<String> = sqlx::query_scalar(
            "UPDATE nodes SET state = $1 WHERE id = $2 AND state <> $3 RETURNING name",
        )
        .bind(state)
        .bind(id.to_string())
        .bind(state)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(name) = changed {
            let event = match mark {
                Mark::Up(_) => NewEvent::node(EventKind::NodeUp, id, &name, "libvirt answers"),
                Mark::Down(reason) => NewEvent::node(EventKind::NodeDown, id, &name, reason),
            };
            events::record(&self.pool, event).await;
            // Nobody listening is fine: the event log has it.
            let _ = self.changes.send(NodeChange {
                node: id,
                up: matches!(mark, Mark::Up(_)),
            });
        }
        let (cpus, total, used) = info.map_or((None, None, None), |i| {
            (
                Some(i64::from(i.cpus)),
                Some(i64::try_from(i.mem_total_mib).unwrap_or(0)),
                Some(i64::try_from(i.mem_total_mib.saturating_sub(i.mem_free_mib)).unwrap_or(0)),
            )
        });
        let error = match mark {
            Mark::Down(reason) => Some(reason),
            Mark::Up(_) => None,
        };
        sqlx::query(
            "UPDATE nodes SET cpus = COALESCE($1, cpus), mem_total_mib = COALESCE($2, mem_total_mib),
             mem_used_mib = COALESCE($3, mem_used_mib), last_seen = CASE WHEN $4 THEN $5 ELSE last_seen END,
             last_error = $6 WHERE id = $7",
        )
        .bind(cpus)
        .bind(total)
        .bind(used)
        .bind(up)
        .bind(db::now())
        .bind(error)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reads node `id`'s capabilities over `conn` into the cache, within
    /// [`PROBE_DEADLINE`]. Failing, placement does not filter this node
    /// (the start itself tells); debug only, as it repeats every probe.
    async fn read_capabilities(&self, id: Uuid, conn: &libvirt::Node) {
        match tokio::time::timeout(PROBE_DEADLINE, conn.capabilities(self.accel)).await {
            Ok(Ok(caps)) => {
                self.caps
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, caps);
            }
            Ok(Err(e)) => tracing::debug!(node = %id, error = %e, "capabilities unreadable"),
            Err(_) => tracing::debug!(node = %id, "capabilities: no answer in time"),
        }
    }

    /// Checks one node now and records the result. A failed attempt is
    /// tried once more at once on a fresh connection, and only a second
    /// failure marks the node down: a libvirtd that missed one answer while
    /// busy (a boot storm's domain creations) is not a dead node, and a
    /// `down` costs a system incident, VMs shown `node_down` and starts
    /// refused. The attempts are bounded by [`PROBE_DEADLINE`] and
    /// [`RETRY_DEADLINE`], each for the connection and again for the answer.
    pub async fn probe(&self, id: Uuid) -> Result<(), NodeError> {
        let first = match self.attempt(id, PROBE_DEADLINE).await? {
            Ok(info) => return self.mark(id, Mark::Up(&info)).await,
            Err(why) => why,
        };
        // Debug: a node that stays down would say this every interval, beside
        // the connection's own warnings.
        tracing::debug!(node = %id, error = %first, "probe failed; trying again on a fresh connection");
        match self.attempt(id, RETRY_DEADLINE).await? {
            Ok(info) => self.mark(id, Mark::Up(&info)).await,
            Err(why) => {
                self.mark(id, Mark::Down(&why)).await?;
                Err(NodeError::Unavailable(self.get(id).await?.name))
            }
        }
    }

    /// One probe attempt: the node's info within `deadline` for the
    /// connection and again for the answer, or why not. A failed connection
    /// is forgotten (calls still using it finish on their own deadlines), so
    /// the next attempt connects anew.
    async fn attempt(
        &self,
        id: Uuid,
        deadline: Duration,
    ) -> Result<Result<libvirt::NodeInfo, String>, NodeError> {
        let conn = match self.open(id, self.connect_timeout.min(deadline)).await? {
            Ok(c) => c,
            Err(unreachable) => return Ok(Err(unreachable.why)),
        };
        let answer = tokio::time::timeout(deadline, conn.node_info())
            .await
            .unwrap_or(Err(LibvirtError::Timeout));
        match answer {
            Ok(info) => {
                // Before the node counts as up, so placement knows what it
                // can run from its first start on (cached per connection).
                self.read_capabilities(id, &conn).await;
                Ok(Ok(info))
            }
            Err(e) => {
                self.conns.write().await.remove(&id);
                Ok(Err(e.to_string()))
            }
        }
    }

    /// Probes every node concurrently, forever, while this server holds
    /// the `node_monitor` lease (one server of a cluster probes).
    pub fn spawn_monitor(
        self: Arc<Self>,
        health: &Arc<crate::health::Health>,
        leases: &Arc<crate::lease::Leases>,
    ) -> tokio::task::JoinHandle<()> {
        crate::lease::spawn_leased(
            health,
            leases,
            "node_monitor",
            MONITOR_INTERVAL,
            move || {
                let this = self.clone();
                async move { this.probe_all().await }
            },
        )
    }

    /// Reads the capabilities of every up node this server has none of, on
    /// every server (`node_capabilities` in `/healthz`): the node monitor,
    /// which reads them as it probes, runs on one server of a cluster (its
    /// lease), but each server's placement needs them, and they are kept in
    /// this server's memory.
    pub fn spawn_capabilities(
        self: Arc<Self>,
        health: &Arc<crate::health::Health>,
    ) -> tokio::task::JoinHandle<()> {
        crate::health::spawn_periodic(health, "node_capabilities", MONITOR_INTERVAL, move || {
            let this = self.clone();
            async move {
                let nodes = this.list().await?;
                let reads = nodes
                    .iter()
                    .filter(|n| n.state.is_up() && n.capabilities.is_none())
                    .map(|n| {
                        let this = this.clone();
                        let id = n.id;
                        async move {
                            let timeout = this.connect_timeout.min(PROBE_DEADLINE);
                            if let Ok(conn) = this.conn_within(id, timeout).await {
                                this.read_capabilities(id, &conn).await;
                            }
                        }
                    });
                futures::future::join_all(reads).await;
                Ok::<(), NodeError>(())
            }
        })
    }

    /// Probes every node concurrently; a node that fails its probe is marked
    /// down by the probe itself, so only the registry read can fail the pass.
    async fn probe_all(self: &Arc<Self>) -> Result<(), NodeError> {
        let nodes = self.list().await?;
        let probes = nodes.iter().map(|n| {
            let this = self.clone();
            let id = n.id;
            async move {
                let _ = this.probe(id).await;
            }
        });
        futures::future::join_all(probes).await;
        Ok(())
    }
}

/// A node removal in progress (see [`Nodes::begin_removal`]).
#[derive(Debug)]
pub struct Removal<'a> {
    nodes: &'a Nodes,
    tx: crate::db::Tx,
    id: Uuid,
    name: String,
}

impl Removal<'_> {
    /// The removal's transaction, for the checks of what runs on the node.
    pub fn conn(&mut self) -> &mut crate::db::Conn {
        &mut self.tx
    }

    /// Deletes the node's row, commits, forgets its connection and logs the
    /// event.
    pub async fn finish(mut self, actor: Option<&str>) -> Result<(), NodeError> {
        let id = self.id;
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        self.nodes.conns.write().await.remove(&id);
        self.nodes
            .caps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        events::record(
            &self.nodes.pool,
            NewEvent::node(
                EventKind::NodeRemoved,
                id,
                &self.name,
                "removed from the cluster",
            )
            .by(actor),
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vtep_is_a_unicast_ipv4_address() {
        assert_eq!(
            check_vtep("10.77.1.2").ok(),
            Some(std::net::Ipv4Addr::new(10, 77, 1, 2))
        );
        for bad in [
            "",
            "10.77.1",
            "::1",
            "fe80::1",
            "0.0.0.0",
            "127.0.0.1",
            "239.1.2.3",
            "255.255.255.255",
            "10.0.0.1/24",
            " 10.0.0.1",
        ] {
            assert!(
                matches!(check_vtep(bad), Err(NodeError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
