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
//! Across nodes (the overlay). A libvirt isolated network is a bridge on one
//! node; to let one student's VMs of a course run on several nodes, each
//! node's bridge of that network is joined to one **VXLAN segment**:
//! - pvce allocates one VNI per (course, student) (`lab_vnis`, unique, taken
//!   under `db::begin` from `--lab-vni-range`, freed when the pair's last
//!   network row is gone, so a VNI is never reused while a node may still
//!   have a network with it) and records it on each network row;
//! - pvce has no agent on nodes, so the VXLAN device is made by pvce's
//!   **libvirt network hook** (`contrib/libvirt-hooks/network`, installed as
//!   `/etc/libvirt/hooks/network`): pvce writes the VNI, the segment's
//!   multicast group and the node's VTEP address into its `<pvce:net>` mark
//!   in the network's `<metadata>`; when libvirt has started the network the
//!   hook adds `vxlan<VNI>` on the underlay device and enslaves it to the
//!   bridge, and when the network stops it removes it. The hook touches only
//!   networks carrying pvce's mark with a VNI.
//! - Broadcast/unknown/multicast frames go to an underlay **multicast group**
//!   derived from the VNI ([`group_for`]), not to a list of peers: a node
//!   that starts the student's next VM just joins the group, and nodes that
//!   already run the network need no update (head-end replication would need
//!   every node's FDB rewritten whenever a VM lands on a new node, and pvce
//!   has nobody on the nodes to do it). Unicast is learned from the traffic
//!   (Linux VXLAN learning). The underlay must carry IPv4 multicast between
//!   the nodes (one L2 segment, or multicast routing/IGMP snooping with a
//!   querier).
//! - The network's MTU is 1450 (`<mtu>`, VXLAN's 50 bytes on a 1500-byte
//!   underlay), and so is each VM's NIC on it ([`LabNet::mtu`]): libvirt
//!   tells a virtio guest only an interface's own MTU. With jumbo frames
//!   underneath the guests could keep 1500.
//! - Isolation is unchanged: each student has their own VNI, and a node's
//!   VXLAN device for one VNI sits only on that student's bridge.
//!
//! A node declares the overlay with its VTEP address (`vtep_address`, set
//! on registration or `POST /api/nodes/{id}/overlay` once the hook is
//! installed). The placement decision ([`decide`]): when every node that may
//! take VMs (not in maintenance) has a VTEP address, a lab VM goes wherever
//! placement likes and its network is made with the segment; otherwise —
//! or while the pair still has a network made without one — the old pin
//! stays: a [`Constraint::OnNode`] for the node where the student's other
//! VMs of the course already run, so installations without the hook keep
//! working. A VM on a network with the segment also live-migrates
//! (src/vms/migrate.rs): the network is ensured on the target first and
//! released from the source after. Two installations whose nodes share an
//! underlay must use disjoint `--lab-vni-range`s (the same VNI would be one
//! segment).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::libvirt::{self, DomainState, LibvirtError, MAX_VNI, NetworkSpec, Vxlan};
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
    #[error(
        "every lab-network VXLAN id of this installation is in use; try again when students' VMs have stopped"
    )]
    VnisExhausted,
}

/// The VNIs an installation allocates from (`--lab-vni-range FIRST-LAST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VniRange {
    pub first: u32,
    pub last: u32,
}

impl Default for VniRange {
    /// 4096–1048575: the low VNIs are left to hand-made segments, and the
    /// derived groups stay in 239.0.16.0–239.15.255.255, away from the
    /// well-known 239.255/16 (SSDP and friends).
    fn default() -> Self {
        Self {
            first: 4096,
            last: 0x0F_FFFF,
        }
    }
}

impl VniRange {
    /// Parses `FIRST-LAST` (1 ≤ FIRST ≤ LAST ≤ 2^24 − 1).
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('-')?;
        let (first, last) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (1 <= first && first <= last && last <= MAX_VNI).then_some(Self { first, last })
    }
}

/// The lowest VNI of `range` not in `used` (sorted ascending), if any.
pub fn lowest_free(used: &[u32], range: VniRange) -> Option<u32> {
    let mut next = range.first;
    for &v in used {
        if v < next {
            continue;
        }
        if v > next {
            break;
        }
        next = v.checked_add(1)?;
    }
    (next <= range.last).then_some(next)
}

/// The underlay multicast group of a VNI: 239.x.y.z with x.y.z the VNI's
/// three bytes, so every VNI has its own group (a node receives only the
/// broadcast traffic of the segments it has joined).
pub fn group_for(vni: u32) -> Ipv4Addr {
    let [_, x, y, z] = vni.to_be_bytes();
    Ipv4Addr::new(239, x, y, z)
}

/// A lab network ready on a node, as a VM's NIC needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNet {
    /// The libvirt network's name.
    pub name: String,
    /// Its MTU when below 1500 (it has a VXLAN segment).
    pub mtu: Option<u32>,
}

/// Where a lab VM may start and whether its network spans nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabPlacement {
    pub constraint: Constraint,
    /// Make the network with a VXLAN segment.
    pub overlay: bool,
}

/// The placement decision for a lab VM. `others`: the node of the student's
/// other active VMs of the course; `plain_network`: the pair has a recorded
/// network made without the overlay (it cannot be extended, so the pin
/// stays until it is gone); `overlay_everywhere`: every node that may take
/// VMs has a VTEP address.
pub fn decide(others: Option<Uuid>, plain_network: bool, overlay_everywhere: bool) -> LabPlacement {
    if overlay_everywhere && !plain_network {
        return LabPlacement {
            constraint: Constraint::Anywhere,
            overlay: true,
        };
    }
    LabPlacement {
        constraint: others.map_or(Constraint::Anywhere, Constraint::OnNode),
        overlay: false,
    }
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
    vnis: VniRange,
}

impl LabNets {
    pub fn new(pool: Pool, nodes: Arc<Nodes>, prefix: String) -> Self {
        Self {
            pool,
            nodes,
            prefix,
            installation: String::new(),
            locks: Mutex::new(HashMap::new()),
            vnis: VniRange::default(),
        }
    }

    /// The VNIs this installation allocates (`--lab-vni-range`).
    pub fn set_vni_range(&mut self, range: VniRange) {
        self.vnis = range;
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

    /// For a VM of `course` (if its course has lab networks): its pair,
    /// with the pair's lock held until the guard is dropped. Lock order as
    /// in [`LabNets::lock_for`].
    pub async fn lock_vm(
        &self,
        course: Option<Uuid>,
        owner: Uuid,
    ) -> Result<Option<(Pair, tokio::sync::OwnedMutexGuard<()>)>, sqlx::Error> {
        let Some(course) = course else {
            return Ok(None);
        };
        if !course_has_lab_network(&self.pool, course).await? {
            return Ok(None);
        }
        let pair = (course, owner);
        Ok(Some((pair, self.lock_for(pair).lock_owned().await)))
    }

    pub fn network_name(&self, (course, owner): Pair) -> String {
        network_name(&self.prefix, course, owner)
    }

    /// Where a VM of `pair` may start and whether its network spans nodes
    /// (see [`decide`]). Call with the pair's lock held.
    pub async fn placement(&self, pair: Pair, vm_id: Uuid) -> Result<LabPlacement, LabNetError> {
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
        let plain: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM lab_networks WHERE course_id = $1 AND owner_id = $2 AND vni IS NULL",
        )
        .bind(pair.0.to_string())
        .bind(pair.1.to_string())
        .fetch_one(&self.pool)
        .await?;
        let without: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM nodes WHERE maintenance = 0 AND vtep_address IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        let others = node.as_deref().map(db::parse_uuid).transpose()?;
        Ok(decide(others, plain > 0, without == 0))
    }

    /// Records the pair's network on the node (before anything is created:
    /// see the module docs) and returns the recorded name and VNI. With
    /// `segment`, the pair's VNI is allocated if it has none — the lowest
    /// free one of the range. Allocation and the network row are one write
    /// transaction under the serialised writer lock, so two allocations never
    /// pick the same VNI (the UNIQUE constraint backs it) and a VNI is never
    /// seen without the network row that holds it (the sweep frees VNIs no
    /// row holds).
    async fn record(
        &self,
        pair: Pair,
        node_id: Uuid,
        segment: bool,
    ) -> Result<(String, Option<u32>), LabNetError> {
        let (course, owner) = (pair.0.to_string(), pair.1.to_string());
        let mut tx = db::begin(&self.pool).await?;
        let vni = if segment {
            let have: Option<i64> = sqlx::query_scalar(
                "SELECT vni FROM lab_vnis WHERE course_id = $1 AND owner_id = $2",
            )
            .bind(&course)
            .bind(&owner)
            .fetch_optional(&mut *tx)
            .await?;
            Some(match have {
                Some(v) => v,
                None => {
                    let used: Vec<i64> = sqlx::query_scalar(
                        "SELECT vni FROM lab_vnis WHERE vni >= $1 AND vni <= $2 ORDER BY vni",
                    )
                    .bind(i64::from(self.vnis.first))
                    .bind(i64::from(self.vnis.last))
                    .fetch_all(&mut *tx)
                    .await?;
                    let used: Vec<u32> = used
                        .into_iter()
                        .filter_map(|v| u32::try_from(v).ok())
                        .collect();
                    let vni =
                        i64::from(lowest_free(&used, self.vnis).ok_or(LabNetError::VnisExhausted)?);
                    sqlx::query(
                        "INSERT INTO lab_vnis (course_id, owner_id, vni, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&course)
                    .bind(&owner)
                    .bind(vni)
                    .bind(db::now())
                    .execute(&mut *tx)
                    .await?;
                    vni
                }
            })
        } else {
            None
        };
        sqlx::query(
            "INSERT INTO lab_networks (course_id, owner_id, node_id, name, created_at, vni)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&course)
        .bind(&owner)
        .bind(node_id.to_string())
        .bind(self.network_name(pair))
        .bind(db::now())
        .bind(vni)
        .execute(&mut *tx)
        .await?;
        // The recorded name: a network an older pvce made before installation
        // ids keeps its name while it lives (adopted on upgrade). Likewise the
        // recorded VNI: a live network keeps what it was made with.
        let (name, vni): (String, Option<i64>) = sqlx::query_as(
            "SELECT name, vni FROM lab_networks WHERE course_id = $1 AND owner_id = $2 AND node_id = $3",
        )
        .bind(&course)
        .bind(&owner)
        .bind(node_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((name, vni.and_then(|v| u32::try_from(v).ok())))
    }

    /// Makes sure the pair's network exists on the node and returns it;
    /// with `overlay` (see [`LabNets::placement`]) it joins the pair's VXLAN
    /// segment. Call with the pair's lock held.
    pub async fn ensure(
        &self,
        node_id: Uuid,
        conn: &libvirt::Node,
        pair: Pair,
        overlay: bool,
    ) -> Result<LabNet, LabNetError> {
        let vtep = if overlay {
            let node = self.nodes.get(node_id).await?;
            node.vtep_address
                .as_deref()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
        } else {
            None
        };
        let (name, vni) = self.record(pair, node_id, vtep.is_some()).await?;
        let vxlan = match (vni, vtep) {
            (Some(vni), Some(local)) => Some(Vxlan {
                vni,
                group: group_for(vni),
                local,
            }),
            _ => None,
        };
        let spec = NetworkSpec {
            bridge: bridge_name(&name),
            name: name.clone(),
            installation: self.installation.clone(),
            vxlan,
        };
        let info = conn.ensure_network(&spec).await?;
        tracing::debug!(network = %info.name, bridge = %info.bridge, vni = ?vni, "lab network ready");
        Ok(LabNet {
            name,
            // A network recorded with a VNI was made with the segment's MTU.
            mtu: vni.map(|_| libvirt::VXLAN_MTU),
        })
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
        // The VNI goes with the pair's last network.
        self.free_vnis().await
    }

    /// Frees every VNI no network row holds any more: the pair's last
    /// network is gone (or a crash came between its row's removal and this).
    /// In a write transaction, so it never interleaves with [`Self::record`].
    async fn free_vnis(&self) -> Result<(), LabNetError> {
        let mut tx = db::begin(&self.pool).await?;
        let freed = sqlx::query(
            "DELETE FROM lab_vnis WHERE NOT EXISTS (SELECT 1 FROM lab_networks n
               WHERE n.course_id = lab_vnis.course_id AND n.owner_id = lab_vnis.owner_id)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if freed.rows_affected() > 0 {
            tracing::debug!(n = freed.rows_affected(), "lab network VNIs freed");
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
        self.free_vnis().await
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

    #[test]
    fn vnis_are_the_lowest_free_of_the_range() {
        let r = VniRange {
            first: 10,
            last: 13,
        };
        assert_eq!(lowest_free(&[], r), Some(10));
        assert_eq!(lowest_free(&[10, 11], r), Some(12));
        // A freed VNI is reused; ones outside the range do not count.
        assert_eq!(lowest_free(&[3, 10, 12], r), Some(11));
        assert_eq!(lowest_free(&[11, 12, 13], r), Some(10));
        assert_eq!(lowest_free(&[10, 11, 12, 13], r), None);
        assert_eq!(lowest_free(&[10, 11, 12, 13, 14], r), None);
        let top = VniRange {
            first: MAX_VNI,
            last: MAX_VNI,
        };
        assert_eq!(lowest_free(&[], top), Some(MAX_VNI));
        assert_eq!(lowest_free(&[MAX_VNI], top), None);
    }

    #[test]
    fn vni_ranges_parse_and_groups_are_distinct_multicast() {
        assert_eq!(
            VniRange::parse("4096-8191"),
            Some(VniRange {
                first: 4096,
                last: 8191
            })
        );
        for bad in ["", "5", "0-10", "10-9", "1-16777216", "a-b", "1-2-3"] {
            assert_eq!(VniRange::parse(bad), None, "{bad}");
        }
        let d = VniRange::default();
        assert_eq!(group_for(d.first), Ipv4Addr::new(239, 0, 16, 0));
        assert_eq!(group_for(d.last), Ipv4Addr::new(239, 15, 255, 255));
        assert_eq!(group_for(4242), Ipv4Addr::new(239, 0, 16, 146));
        let mut seen = std::collections::HashSet::new();
        for v in (d.first..=d.last).step_by(997) {
            let g = group_for(v);
            assert!(g.is_multicast() && seen.insert(g), "{v} -> {g}");
        }
    }

    #[test]
    fn placement_pins_unless_every_node_has_the_overlay() {
        let n = Uuid::new_v4();
        let pin = |c| LabPlacement {
            constraint: c,
            overlay: false,
        };
        let free = LabPlacement {
            constraint: Constraint::Anywhere,
            overlay: true,
        };
        // Overlay everywhere: no pin, even with the student's VMs running.
        assert_eq!(decide(Some(n), false, true), free);
        assert_eq!(decide(None, false, true), free);
        // A node without it: the old single-node rule.
        assert_eq!(decide(Some(n), false, false), pin(Constraint::OnNode(n)));
        assert_eq!(decide(None, false, false), pin(Constraint::Anywhere));
        // A live network made without a segment cannot be extended: pinned
        // until it is gone, whatever the nodes have now.
        assert_eq!(decide(Some(n), true, true), pin(Constraint::OnNode(n)));
        assert_eq!(decide(None, true, true), pin(Constraint::Anywhere));
    }
}
