//! Placement: which node a VM starts on.
//!
//! The core ([`choose`]) is a pure function of a snapshot of candidates, so it
//! can be unit- and property-tested and run in simulations. The [`Reservations`]
//! ledger makes concurrent starts safe: memory promised to a start that has not
//! yet shown up in the node's statistics is counted as used, so two starts
//! racing on stale stats cannot over-commit one node.
//!
//! Rules: a candidate must be up, not in maintenance, hold (or be able to
//! receive) the template, be able to run the VM's spec (its graphics type
//! and the accelerator in use: [`Candidate::unsupported`], from the node's
//! capabilities), and have `memory + reserve` free. When the only nodes
//! left are ones that cannot run the spec, the error names each node and
//! what it lacks ([`PlacementError::NoCapableNode`]). Policies:
//! spread (most free memory, default), pack (least free memory that fits),
//! load-aware (lowest recent CPU). Ties break on fewer running VMs, then node
//! name, so decisions are deterministic.
//!
//! Constraint: a start may be *pinned* to one node ([`Constraint::OnNode`]).
//! Lab networks need it where the nodes lack the VXLAN overlay: a student's
//! isolated lab network is then a bridge on one host (see
//! [`crate::labnets`]), so all of that student's running VMs of the course
//! must share a node. A pinned start never falls back to another node: if
//! the pinned node cannot take the VM, placement fails.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

/// Memory kept free on every node for the host itself, unless configured
/// otherwise (`--host-reserve-mib`).
pub const DEFAULT_HOST_RESERVE_MIB: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    #[default]
    Spread,
    Pack,
    LoadAware,
}

impl Policy {
    /// The policy by its configuration / API name (`spread`, `pack`, `load-aware`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "spread" => Some(Self::Spread),
            "pack" => Some(Self::Pack),
            "load-aware" => Some(Self::LoadAware),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spread => "spread",
            Self::Pack => "pack",
            Self::LoadAware => "load-aware",
        }
    }
}

/// A node as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node_id: Uuid,
    pub name: String,
    pub up: bool,
    pub maintenance: bool,
    pub has_template: bool,
    pub mem_total_mib: u64,
    pub mem_used_mib: u64,
    pub cpu_percent: f64,
    pub vms_running: u64,
    /// Why the node cannot run this VM's spec (e.g. "has no SPICE
    /// graphics"); `None` when it can, or its capabilities are unknown.
    pub unsupported: Option<String>,
}

/// Where a VM may go, besides the capacity rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Constraint {
    /// Any usable node.
    #[default]
    Anywhere,
    /// Only this node (e.g. where the VM's lab network already lives).
    OnNode(Uuid),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error(
        "no server can run VMs right now (all are offline or being serviced); try again later, or tell the lab staff"
    )]
    NoNodes,
    #[error(
        "no lab server has {0} MiB of memory free for this VM right now; try again in a few minutes"
    )]
    NoCapacity(u64),
    #[error(
        "this VM must run on the node that runs the student's other VMs on the same lab network, and that node is unavailable or has no {0} MiB free; stop those VMs or try later"
    )]
    PinnedNodeUnavailable(u64),
    /// Nodes were up, but none can run the VM's spec; "node a has no SPICE
    /// graphics; node b has no KVM".
    #[error("no node can run this VM: {0}")]
    NoCapableNode(String),
}

/// Picks a node for a VM needing `need_mib`, keeping `reserve_mib` free on the host.
/// `reserved` is memory already promised to starts in flight, per node.
pub fn choose(
    candidates: &[Candidate],
    need_mib: u64,
    reserve_mib: u64,
    reserved: &HashMap<Uuid, u64>,
    policy: Policy,
    constraint: Constraint,
) -> Result<Uuid, PlacementError> {
    if let Constraint::OnNode(pin) = constraint {
        let only: Vec<Candidate> = candidates
            .iter()
            .filter(|c| c.node_id == pin)
            .cloned()
            .collect();
        return choose(
            &only,
            need_mib,
            reserve_mib,
            reserved,
            policy,
            Constraint::Anywhere,
        )
        .map_err(|e| match e {
            PlacementError::NoCapableNode(_) => e,
            _ => PlacementError::PinnedNodeUnavailable(need_mib),
        });
    }
    let usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.up && !c.maintenance && c.has_template)
        .collect();
    if usable.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    let (usable, unable): (Vec<&Candidate>, Vec<&Candidate>) =
        usable.into_iter().partition(|c| c.unsupported.is_none());
    if usable.is_empty() {
        let why: Vec<String> = unable
            .iter()
            .map(|c| format!("node {} {}", c.name, c.unsupported.as_deref().unwrap_or("")))
            .collect();
        return Err(PlacementError::NoCapableNode(why.join("; ")));
    }
    let free = |c: &Candidate| {
        c.mem_total_mib
            .saturating_sub(c.mem_used_mib)
            .saturating_sub(reserved.get(&c.node_id).copied().unwrap_or(0))
    };
    let fitting = usable
        .into_iter()
        .filter(|c| free(c) >= need_mib.saturating_add(reserve_mib));
    let best = match policy {
        Policy::Spread => fitting.min_by(|a, b| {
            free(b)
                .cmp(&free(a))
                .then(a.vms_running.cmp(&b.vms_running))
                .then(a.name.cmp(&b.name))
        }),
        Policy::Pack => fitting.min_by(|a, b| {
            free(a)
                .cmp(&free(b))
                .then(b.vms_running.cmp(&a.vms_running))
                .then(a.name.cmp(&b.name))
        }),
        Policy::LoadAware => fitting.min_by(|a, b| {
            a.cpu_percent
                .total_cmp(&b.cpu_percent)
                .then(free(b).cmp(&free(a)))
                .then(a.name.cmp(&b.name))
        }),
    };
    best.map(|c| c.node_id)
        .ok_or(PlacementError::NoCapacity(need_mib))
}

/// Memory promised to starts in flight, per node.
#[derive(Debug, Default)]
pub struct Reservations {
    inner: Mutex<HashMap<Uuid, u64>>,
}

/// Releases its reservation when dropped (start finished, either way).
#[derive(Debug)]
pub struct Reservation<'a> {
    ledger: &'a Reservations,
    node_id: Uuid,
    mib: u64,
}

impl Reservations {
    /// Chooses a node and reserves memory on it atomically.
    pub fn place(
        &self,
        candidates: &[Candidate],
        need_mib: u64,
        reserve_mib: u64,
        policy: Policy,
        constraint: Constraint,
    ) -> Result<Reservation<'_>, PlacementError> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let node_id = choose(candidates, need_mib, reserve_mib, &map, policy, constraint)?;
        *map.entry(node_id).or_insert(0) += need_mib;
        Ok(Reservation {
            ledger: self,
            node_id,
            mib: need_mib,
        })
    }
}

impl Reservation<'_> {
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut map = self.ledger.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.get_mut(&self.node_id) {
            *v = v.saturating_sub(self.mib);
            if *v == 0 {
                map.remove(&self.node_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str, total: u64, used: u64) -> Candidate {
        Candidate {
            node_id: Uuid::new_v4(),
            name: name.into(),
            up: true,
            maintenance: false,
            has_template: true,
            mem_total_mib: total,
            mem_used_mib: used,
            cpu_percent: 0.0,
            vms_running: 0,
            unsupported: None,
        }
    }

    #[test]
    fn a_spice_vm_is_not_placed_on_a_node_without_spice() {
        // The roomier node lacks SPICE: the VM goes to the other one.
        let mut roomy = node("a", 65536, 0);
        roomy.unsupported = Some("has no SPICE graphics".into());
        let small = node("b", 4096, 0);
        let none = HashMap::new();
        for policy in [Policy::Spread, Policy::Pack, Policy::LoadAware] {
            assert_eq!(
                choose(
                    &[roomy.clone(), small.clone()],
                    512,
                    256,
                    &none,
                    policy,
                    Constraint::Anywhere
                ),
                Ok(small.node_id)
            );
        }
        // Nothing else: refused, naming the node and what it lacks.
        let got = choose(
            std::slice::from_ref(&roomy),
            512,
            256,
            &none,
            Policy::Spread,
            Constraint::Anywhere,
        );
        assert_eq!(
            got,
            Err(PlacementError::NoCapableNode(
                "node a has no SPICE graphics".into()
            ))
        );
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Err("no node can run this VM: node a has no SPICE graphics".into())
        );
        // Pinned to it: the same reason, not "unavailable".
        assert!(matches!(
            choose(
                &[roomy.clone(), small],
                512,
                0,
                &none,
                Policy::Spread,
                Constraint::OnNode(roomy.node_id)
            ),
            Err(PlacementError::NoCapableNode(_))
        ));
        // A down node is not "incapable": it is not a candidate at all.
        let mut down = roomy;
        down.up = false;
        assert_eq!(
            choose(&[down], 512, 0, &none, Policy::Spread, Constraint::Anywhere),
            Err(PlacementError::NoNodes)
        );
    }

    #[test]
    fn spread_prefers_most_free_pack_least() {
        let a = node("a", 8192, 1000);
        let b = node("b", 8192, 6000);
        let cands = vec![a.clone(), b.clone()];
        let none = HashMap::new();
        assert_eq!(
            choose(
                &cands,
                512,
                256,
                &none,
                Policy::Spread,
                Constraint::Anywhere
            ),
            Ok(a.node_id)
        );
        assert_eq!(
            choose(&cands, 512, 256, &none, Policy::Pack, Constraint::Anywhere),
            Ok(b.node_id)
        );
    }

    #[test]
    fn maintenance_down_and_full_nodes_are_skipped() {
        let mut a = node("a", 8192, 0);
        a.maintenance = true;
        let mut b = node("b", 8192, 0);
        b.up = false;
        let c = node("c", 1024, 900);
        let none = HashMap::new();
        assert_eq!(
            choose(
                &[a.clone(), b.clone()],
                512,
                0,
                &none,
                Policy::Spread,
                Constraint::Anywhere
            ),
            Err(PlacementError::NoNodes)
        );
        assert_eq!(
            choose(
                &[a, b, c],
                512,
                0,
                &none,
                Policy::Spread,
                Constraint::Anywhere
            ),
            Err(PlacementError::NoCapacity(512))
        );
    }

    #[test]
    fn ties_break_by_name() {
        let a = node("a", 4096, 0);
        let b = node("b", 4096, 0);
        let none = HashMap::new();
        assert_eq!(
            choose(
                &[b, a.clone()],
                256,
                0,
                &none,
                Policy::Spread,
                Constraint::Anywhere
            ),
            Ok(a.node_id)
        );
    }

    #[test]
    fn reservations_prevent_overcommit_and_release_on_drop() {
        let a = node("a", 2048, 0);
        let ledger = Reservations::default();
        let r1 = ledger
            .place(
                std::slice::from_ref(&a),
                1024,
                0,
                Policy::Spread,
                Constraint::Anywhere,
            )
            .expect("first fits");
        let r2 = ledger
            .place(
                std::slice::from_ref(&a),
                1024,
                0,
                Policy::Spread,
                Constraint::Anywhere,
            )
            .expect("second fits");
        assert!(
            ledger
                .place(
                    std::slice::from_ref(&a),
                    1024,
                    0,
                    Policy::Spread,
                    Constraint::Anywhere
                )
                .is_err()
        );
        drop(r1);
        drop(r2);
        assert!(
            ledger
                .place(&[a], 1024, 0, Policy::Spread, Constraint::Anywhere)
                .is_ok()
        );
    }

    proptest! {
        #[test]
        fn chosen_node_always_fits(
            nodes in prop::collection::vec((1024u64..65536, 0u64..65536, any::<bool>(), any::<bool>(), prop::bool::weighted(0.8)), 1..30),
            need in 64u64..8192,
            policy in prop_oneof![Just(Policy::Spread), Just(Policy::Pack), Just(Policy::LoadAware)],
        ) {
            let cands: Vec<Candidate> = nodes.iter().enumerate().map(|(i, (t, u, up, m, capable))| {
                let mut c = node(&format!("n{i}"), *t, (*u).min(*t));
                c.up = *up;
                c.maintenance = *m;
                c.unsupported = (!capable).then(|| "has no SPICE graphics".into());
                c
            }).collect();
            let none = HashMap::new();
            match choose(&cands, need, 128, &none, policy, Constraint::Anywhere) {
                Ok(id) => {
                    let c = cands.iter().find(|c| c.node_id == id).expect("chosen is a candidate");
                    prop_assert!(c.up && !c.maintenance && c.unsupported.is_none());
                    prop_assert!(c.mem_total_mib - c.mem_used_mib >= need + 128);
                }
                Err(_) => {
                    prop_assert!(!cands.iter().any(|c| c.up && !c.maintenance && c.unsupported.is_none() && c.mem_total_mib - c.mem_used_mib >= need + 128));
                }
            }
        }
    }

    #[test]
    fn a_pinned_start_goes_to_its_node_or_nowhere() {
        let roomy = node("a", 65536, 0);
        let pinned = node("b", 2048, 0);
        let cands = vec![roomy.clone(), pinned.clone()];
        let none = HashMap::new();
        let pin = Constraint::OnNode(pinned.node_id);
        assert_eq!(
            choose(&cands, 512, 256, &none, Policy::Spread, pin),
            Ok(pinned.node_id)
        );
        // Full: no fallback to the roomy node.
        assert_eq!(
            choose(&cands, 4096, 256, &none, Policy::Spread, pin),
            Err(PlacementError::PinnedNodeUnavailable(4096))
        );
        let mut down = pinned.clone();
        down.up = false;
        assert_eq!(
            choose(&[roomy, down], 512, 0, &none, Policy::Spread, pin),
            Err(PlacementError::PinnedNodeUnavailable(512))
        );
    }

    proptest! {
        #[test]
        fn pinned_placement_never_leaves_the_pinned_node(
            nodes in prop::collection::vec((1024u64..65536, 0u64..65536, any::<bool>()), 1..20),
            pick in any::<prop::sample::Index>(),
            need in 64u64..8192,
            policy in prop_oneof![Just(Policy::Spread), Just(Policy::Pack), Just(Policy::LoadAware)],
        ) {
            let cands: Vec<Candidate> = nodes.iter().enumerate().map(|(i, (t, u, up))| {
                let mut c = node(&format!("n{i}"), *t, (*u).min(*t));
                c.up = *up;
                c
            }).collect();
            let pin = cands[pick.index(cands.len())].clone();
            let none = HashMap::new();
            let fits = pin.up && pin.mem_total_mib - pin.mem_used_mib >= need + 128;
            match choose(&cands, need, 128, &none, policy, Constraint::OnNode(pin.node_id)) {
                Ok(id) => prop_assert!(id == pin.node_id && fits),
                Err(e) => {
                    prop_assert!(!fits);
                    prop_assert_eq!(e, PlacementError::PinnedNodeUnavailable(need));
                }
            }
        }
    }
}
