//! Lab networks: a private, isolated LAN per student per course.
//!
//! A course created with `lab_network: true` gives each enrolled student one
//! libvirt network of their own; every VM of that student in that course gets
//! a virtio NIC on it (MAC derived from the VM id, so it is stable across
//! starts). The network is *isolated*: no `<forward>` (nothing is routed or
//! NATed off it) and no `<ip>` (the host has no address on the bridge, libvirt
//! runs no dnsmasq and disables IPv6 on it), so a student's VMs see each
//! other and nothing else — not the host, not another student, not the
//! outside. Addresses are the students' business (static, or a DHCP server
//! they run themselves): it is a networking lab.
//!
//! Names. The libvirt network is `<domain-prefix>lab-<course>-<owner>` (UUIDs
//! without dashes; the prefix carries the installation id, see
//! src/installation), so it is deterministic, unique per (course, student),
//! and recognisable per installation (tests use `test-pvce-`); it also
//! carries the installation's mark in its metadata, and pvce never reuses or
//! removes a network another installation marked. Once recorded, a
//! network's name is the recorded one (an older pvce's name is kept). The host bridge is
//! `pvl` + the first 12 hex digits of SHA-256 of that name: 15 characters, the
//! Linux limit. Two different names sharing a bridge would need a 48-bit hash
//! collision; should it ever happen, libvirt refuses the second network
//! (bridge in use), so a collision fails a start — it can never join two
//! students' networks.
//!
//! Lifecycle (chosen: the network lives exactly while that student has a VM of
//! that course running on the node):
//! - **Ensured on start**: before a lab VM's domain is created, the network is
//!   created on the chosen node if missing (idempotent). The whole start —
//!   placement, network, domain — runs under a per-(course, student) lock
//!   ([`LabNets::lock_for`]), so concurrent starts of one student's VMs agree
//!   on one node and one network.
//! - **Removed when the last VM stops**: after every stop, and in every
//!   reconcile pass (guest-initiated shutdowns, crashes, pvce restarts), a
//!   network whose student has no pvce domain of that course left on that node
//!   is destroyed. The check reads the node's live domains under the same lock,
//!   so it never races a start. Since unenrolling, deleting a course and
//!   deleting a VM all require stopped VMs, they never leave a network behind
//!   either, and networks are transient (`virNetworkCreateXML`): a node reboot
//!   removes them too, like pvce's domains.
//! - **Ownership** is the `lab_networks` table: a row is written *before* the
//!   network is created, and removed only after the network is gone, so every
//!   network pvce made is recorded (a crash leaves at most a row without a
//!   network, which the next pass drops). The rows deliberately have no foreign
//!   keys: they outlive their course until the network is gone. pvce only ever
//!   removes networks it has a row for; anything else on a node, even with a
//!   matching name, is never touched.
//!
//! Single host: a libvirt isolated network is a bridge on one node, so all
//! running VMs of one student's lab network must share a node. Placement gets
//! a [`Constraint::OnNode`] for the node where the student's other VMs of the
//! course already run. Multi-node L2 (a VXLAN segment per network) is
//! described in the README.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::libvirt::{self, DomainState, LibvirtError, NetworkSpec};
use crate::nodes::{NodeError, Nodes};
use crate::placement::Constraint;

#[derive(Debug, thiserror::Error)]
pub enum LabNetError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("lab network: {0}")]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The (course, student) a lab network belongs to.
pub type Pair = (Uuid, Uuid);

/// The libvirt network name of a student's lab network in a course.
pub fn network_name(prefix: &str, course_id: Uuid, owner_id: Uuid) -> String {
    format!("{prefix}lab-{}-{}", course_id.simple(), owner_id.simple())
}

/// The host bridge of a network: `pvl` + 12 hex digits of SHA-256(name).
pub fn bridge_name(network_name: &str) -> String {
    let digest = Sha256::digest(network_name.as_bytes());
    format!("pvl{}", &hex::encode(digest)[..12])
}

/// True if the course asks for lab networks.
pub async fn course_has_lab_network(pool: &Pool, course_id: Uuid) -> Result<bool, sqlx::Error> {
    let on: Option<i64> = sqlx::query_scalar("SELECT lab_network FROM courses WHERE id = $1")
        .bind(course_id.to_string())
        .fetch_optional(pool)
        .await?;
    Ok(on.unwrap_or(0) != 0)
}

/// Creates and removes students' lab networks on the nodes.
#[derive(Debug)]
pub struct LabNets {
    pool: Pool,
    nodes: Arc<Nodes>,
    prefix: String,
    /// The installation's mark on every network it creates (src/installation).
    installation: String,
    locks: Mutex<HashMap<Pair, Arc<tokio::sync::Mutex<()>>>>,
}

impl LabNets {
    pub fn new(pool: Pool, nodes: Arc<Nodes>, prefix: String) -> Self {
        Self {
            pool,
            nodes,
            prefix,
            installation: String::new(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Marks the networks this installation creates (and removes).
    pub fn set_installation(&mut self, mark: String) {
        self.installation = mark;
    }

    /// The lock of one student's lab network in one course. Lock order: a VM's
    /// lifecycle lock first, then this one; never the other way round.
    pub fn lock_for(&self, pair: Pair) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(pair).or_default().clone()
    }

    pub fn network_name(&self, (course, owner): Pair) -> String {
        network_name(&self.prefix, course, owner)
    }

    /// Where a VM of `pair` may start: on the node of the student's other
    /// active VMs of the course, if any. Call with the pair's lock held.
    pub async fn constraint(&self, pair: Pair, vm_id: Uuid) -> Result<Constraint, LabNetError> {
        let node: Option<String> = sqlx::query_scalar(
            "SELECT node_id FROM vms WHERE course_id = $1 AND owner_id = $2 AND id <> $3
               AND node_id IS NOT NULL AND state IN ('starting', 'running', 'stopping')
             ORDER BY last_started_at LIMIT 1",
        )
        .bind(pair.0.to_string())
        .bind(pair.1.to_string())
        .bind(vm_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match node {
            Some(n) => Constraint::OnNode(db::parse_uuid(&n)?),
            None => Constraint::Anywhere,
        })
    }

    /// Makes sure the pair's network exists on the node and returns its name.
    /// Call with the pair's lock held.
    pub async fn ensure(
        &self,
        node_id: Uuid,
        conn: &libvirt::Node,
        pair: Pair,
    ) -> Result<String, LabNetError> {
        // Record ownership before creating anything (see the module docs).
        sqlx::query(
            "INSERT INTO lab_networks (course_id, owner_id, node_id, name, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(pair.0.to_string())
        .bind(pair.1.to_string())
        .bind(node_id.to_string())
        .bind(self.network_name(pair))
        .bind(db::now())
        .execute(&self.pool)
        .await?;
        // The recorded name: a network an older pvce made before installation
        // ids keeps its name while it lives (adopted on upgrade).
        let name: String = sqlx::query_scalar(
            "SELECT name FROM lab_networks WHERE course_id = $1 AND owner_id = $2 AND node_id = $3",
        )
        .bind(pair.0.to_string())
        .bind(pair.1.to_string())
        .bind(node_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        let spec = NetworkSpec {
            bridge: bridge_name(&name),
            name: name.clone(),
            installation: self.installation.clone(),
        };
        let info = conn.ensure_network(&spec).await?;
        tracing::debug!(network = %info.name, bridge = %info.bridge, "lab network ready");
        Ok(name)
    }

    /// Removes the pair's networks on every node where none of the student's
    /// VMs of the course runs any more. Takes the pair's lock.
    pub async fn release(&self, pair: Pair) -> Result<(), LabNetError> {
        let lock = self.lock_for(pair);
        let _guard = lock.lock().await;
        self.release_locked(pair).await
    }

    /// [`LabNets::release`] for a caller already holding the pair's lock.
    pub async fn release_locked(&self, pair: Pair) -> Result<(), LabNetError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT node_id, name FROM lab_networks WHERE course_id = $1 AND owner_id = $2",
        )
        .bind(pair.0.to_string())
        .bind(pair.1.to_string())
        .fetch_all(&self.pool)
        .await?;
        for (node, name) in rows {
            let node_id = db::parse_uuid(&node)?;
            let (course, owner) = (pair.0.to_string(), pair.1.to_string());
            // An unreachable node keeps its row; a later pass retries. A node
            // removed from the cluster can never be asked again (and was
            // empty of VMs when it was removed): its row goes.
            let conn = match self.nodes.conn(node_id).await {
                Err(NodeError::NotFound) => {
                    tracing::info!(network = %name, "lab network forgotten: its node was removed");
                    self.forget(&course, &owner, &node).await?;
                    continue;
                }
                other => other?,
            };
            let in_use = conn.list_pvce_domains().await?.iter().any(|d| {
                d.state != DomainState::Shutoff
                    && d.metadata.as_ref().is_some_and(|m| {
                        m.owner == owner && m.course.as_deref() == Some(course.as_str())
                    })
            });
            if in_use {
                continue;
            }
            match conn.remove_network(&name, &self.installation).await {
                Ok(true) => {
                    tracing::info!(network = %name, "lab network removed: no VM uses it any more");
                }
                Ok(false) => {}
                // Another installation's network of that name: not ours to
                // remove, and so not ours to remember.
                Err(LibvirtError::NotOurs(_)) => {
                    tracing::warn!(network = %name, "lab network belongs to another installation; left alone");
                }
                Err(e) => return Err(e.into()),
            }
            self.forget(&course, &owner, &node).await?;
        }
        Ok(())
    }

    async fn forget(&self, course: &str, owner: &str, node: &str) -> Result<(), LabNetError> {
        sqlx::query(
            "DELETE FROM lab_networks WHERE course_id = $1 AND owner_id = $2 AND node_id = $3",
        )
        .bind(course)
        .bind(owner)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One pass over every network pvce recorded: removes those no VM uses.
    /// A pair whose lock is busy (a start or stop in flight) is left for the
    /// next pass.
    pub async fn sweep(&self) -> Result<(), LabNetError> {
        let pairs: Vec<(String, String)> =
            sqlx::query_as("SELECT DISTINCT course_id, owner_id FROM lab_networks")
                .fetch_all(&self.pool)
                .await?;
        for (c, o) in pairs {
            let pair = (db::parse_uuid(&c)?, db::parse_uuid(&o)?);
            let lock = self.lock_for(pair);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            if let Err(e) = self.release_locked(pair).await {
                tracing::warn!(course = %pair.0, owner = %pair.1, error = %e, "could not clean up a lab network");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_distinct_and_fit_linux() {
        let (c, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let na = network_name("pvce-", c, a);
        assert_eq!(na, network_name("pvce-", c, a));
        assert_ne!(na, network_name("pvce-", c, b));
        assert_ne!(na, network_name("test-pvce-", c, a));
        assert!(na.starts_with("pvce-lab-"));
        let br = bridge_name(&na);
        assert_eq!(br, bridge_name(&na));
        assert_eq!(br.len(), libvirt::MAX_BRIDGE_NAME);
        assert!(br.starts_with("pvl"));
        assert_ne!(br, bridge_name(&network_name("pvce-", c, b)));
        // The prefix is part of the hash: tests never share a production bridge.
        assert_ne!(br, bridge_name(&network_name("test-pvce-", c, a)));
    }

    #[test]
    fn bridge_names_do_not_collide_across_many_students() {
        let c = Uuid::new_v4();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            assert!(seen.insert(bridge_name(&network_name("pvce-", c, Uuid::new_v4()))));
        }
    }
}
