//! The admission queue of class starts: the boot storm when sixty students
//! sit down at 08:00 goes through here so that no node is swamped. A pure
//! function of (limits, the nodes and how many starts each has in flight,
//! the queue in order) — no clock, no I/O — so property tests can hold it to
//! its promise.
//!
//! Invariants of [`admit`]:
//! - after admission no node has more than `per_node` starts in flight and
//!   the cluster no more than `cluster` (starts already over a limit — a
//!   limit lowered at run time — are never added to);
//! - only nodes that are up and not in maintenance are given starts;
//! - the queue is served in order (first come, first served): an entry is
//!   admitted only if every entry before it was, or waits for a node the
//!   earlier ones could not get — a VM pinned to a node (its layer lives
//!   there) waits for that node without holding up the others;
//! - unpinned starts are spread: each goes to the node with the fewest
//!   starts in flight (ties: the order the nodes were given in, which the
//!   caller makes the placement policy's).

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

/// Concurrent starts allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_node: u32,
    pub cluster: u32,
}

/// A node as admission sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSlots {
    pub id: Uuid,
    /// Up and not in maintenance.
    pub usable: bool,
    /// Starts in flight on the node now.
    pub starting: u32,
}

/// A VM waiting to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub vm: Uuid,
    /// The node it must start on (a node-local layer), if any.
    pub pinned: Option<Uuid>,
}

/// The outcome: who starts now, where, and the place of those still waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub admitted: Vec<(Uuid, Uuid)>,
    /// Each VM still waiting with its place in the queue (1 = next).
    pub waiting: Vec<(Uuid, usize)>,
}

/// Decides which queued starts begin now (see the module's invariants).
pub fn admit(limits: Limits, nodes: &[NodeSlots], queue: &[Waiting]) -> Decision {
    let mut load: Vec<(Uuid, u32)> = nodes
        .iter()
        .filter(|n| n.usable)
        .map(|n| (n.id, n.starting))
        .collect();
    let mut total: u32 = nodes.iter().map(|n| n.starting).sum();
    let mut decision = Decision::default();
    for w in queue {
        let room_in_cluster = total < limits.cluster;
        let slot = if !room_in_cluster {
            None
        } else {
            match w.pinned {
                Some(node) => load
                    .iter()
                    .position(|(id, n)| *id == node && *n < limits.per_node),
                // Fewest in flight; the first such node on ties.
                None => load
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, n))| *n < limits.per_node)
                    .min_by_key(|(i, (_, n))| (*n, *i))
                    .map(|(i, _)| i),
            }
        };
        match slot {
            Some(i) => {
                load[i].1 += 1;
                total += 1;
                decision.admitted.push((w.vm, load[i].0));
            }
            None => {
                let place = decision.waiting.len() + 1;
                decision.waiting.push((w.vm, place));
            }
        }
    }
    decision
}

/// How long the VM at `place` (1 = next) will likely wait before its start
/// begins, in seconds: the queue drains `capacity` starts per `start_secs`,
/// where `capacity` is what the limits let the usable nodes run at once.
pub fn estimate_secs(place: usize, limits: Limits, usable_nodes: usize, start_secs: u32) -> u64 {
    let capacity = (limits.per_node as usize)
        .saturating_mul(usable_nodes)
        .min(limits.cluster as usize)
        .max(1);
    let rounds = place.div_ceil(capacity) as u64;
    rounds * u64::from(start_secs)
}

/// Starts in flight per node from (vm, node) pairs.
pub fn count_by_node(starting: impl IntoIterator<Item = Uuid>) -> HashMap<Uuid, u32> {
    let mut out = HashMap::new();
    for node in starting {
        *out.entry(node).or_insert(0) += 1;
    }
    out
}

/// The place and estimate shown to a student.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueuePlace {
    pub place: usize,
    pub estimate_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_class_is_spread_and_the_rest_waits_in_order() {
        let nodes = [
            NodeSlots {
                id: id(1),
                usable: true,
                starting: 0,
            },
            NodeSlots {
                id: id(2),
                usable: true,
                starting: 1,
            },
            NodeSlots {
                id: id(3),
                usable: false,
                starting: 0,
            },
        ];
        let queue: Vec<Waiting> = (10..16)
            .map(|v| Waiting {
                vm: id(v),
                pinned: None,
            })
            .collect();
        let d = admit(
            Limits {
                per_node: 2,
                cluster: 10,
            },
            &nodes,
            &queue,
        );
        assert_eq!(
            d.admitted,
            vec![(id(10), id(1)), (id(11), id(1)), (id(12), id(2))],
            "the emptier node first, never the unusable one"
        );
        assert_eq!(d.waiting, vec![(id(13), 1), (id(14), 2), (id(15), 3)]);
        // The cluster limit binds before the nodes'.
        let d = admit(
            Limits {
                per_node: 5,
                cluster: 2,
            },
            &nodes,
            &queue,
        );
        assert_eq!(d.admitted.len(), 1);
        // A pinned VM waits for its node without holding up the others.
        let queue = [
            Waiting {
                vm: id(20),
                pinned: Some(id(2)),
            },
            Waiting {
                vm: id(21),
                pinned: None,
            },
        ];
        let d = admit(
            Limits {
                per_node: 1,
                cluster: 10,
            },
            &nodes,
            &queue,
        );
        assert_eq!(d.admitted, vec![(id(21), id(1))]);
        assert_eq!(d.waiting, vec![(id(20), 1)]);
    }

    #[test]
    fn estimates_grow_with_the_place() {
        let l = Limits {
            per_node: 4,
            cluster: 30,
        };
        assert_eq!(estimate_secs(1, l, 3, 20), 20);
        assert_eq!(estimate_secs(12, l, 3, 20), 20);
        assert_eq!(estimate_secs(13, l, 3, 20), 40);
        assert_eq!(
            estimate_secs(5, l, 0, 20),
            100,
            "no usable node: one at a time"
        );
    }

    fn arb_case() -> impl Strategy<Value = (Limits, Vec<NodeSlots>, Vec<Waiting>)> {
        (
            (0u32..6, 0u32..20),
            proptest::collection::vec((any::<bool>(), 0u32..8), 0..6),
            proptest::collection::vec(proptest::option::of(0u128..7), 0..80),
        )
            .prop_map(|((per_node, cluster), nodes, queue)| {
                let nodes = nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, (usable, starting))| NodeSlots {
                        id: id(i as u128),
                        usable,
                        starting,
                    })
                    .collect();
                let queue = queue
                    .into_iter()
                    .enumerate()
                    .map(|(i, pin)| Waiting {
                        vm: id(1000 + i as u128),
                        pinned: pin.map(id),
                    })
                    .collect();
                (Limits { per_node, cluster }, nodes, queue)
            })
    }

    proptest! {
        #[test]
        fn admission_never_goes_over_a_limit((limits, nodes, queue) in arb_case()) {
            let d = admit(limits, &nodes, &queue);
            // Everyone is either admitted or waiting, once.
            prop_assert_eq!(d.admitted.len() + d.waiting.len(), queue.len());
            let before: u32 = nodes.iter().map(|n| n.starting).sum();
            let added = d.admitted.len() as u32;
            // The cluster limit: never added to beyond it.
            prop_assert!(added == 0 || before + added <= limits.cluster);
            for n in &nodes {
                let here = d.admitted.iter().filter(|(_, node)| *node == n.id).count() as u32;
                // Only usable nodes get starts, and never over their limit.
                prop_assert!(here == 0 || (n.usable && n.starting + here <= limits.per_node));
            }
            // Pinned VMs start on their node, admitted in queue order.
            let order: Vec<Uuid> = queue.iter().map(|w| w.vm).collect();
            let mut last = None;
            for (vm, node) in &d.admitted {
                let w = queue.iter().find(|w| w.vm == *vm).expect("from the queue");
                if let Some(p) = w.pinned {
                    prop_assert_eq!(p, *node);
                }
                let pos = order.iter().position(|v| v == vm);
                prop_assert!(pos > last);
                last = pos;
            }
            // Work-conserving: an unpinned VM waits only if nothing was free
            // for it — the cluster is full or every usable node is.
            let after = |node: Uuid| {
                nodes.iter().find(|n| n.id == node).map_or(0, |n| n.starting)
                    + d.admitted.iter().filter(|(_, x)| *x == node).count() as u32
            };
            let first_unpinned_waiting = d.waiting.iter().find(|(vm, _)| {
                queue.iter().any(|w| w.vm == *vm && w.pinned.is_none())
            });
            if first_unpinned_waiting.is_some() {
                let full = before + added >= limits.cluster
                    || nodes.iter().filter(|n| n.usable).all(|n| after(n.id) >= limits.per_node);
                prop_assert!(full);
            }
            // Places are 1, 2, 3, …
            for (i, (_, place)) in d.waiting.iter().enumerate() {
                prop_assert_eq!(*place, i + 1);
            }
        }
    }
}
