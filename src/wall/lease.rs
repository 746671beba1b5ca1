//! Watches in picture mode: who is looking at a VM's live picture
//! (`GET /api/vms/{id}/screen`, the view-only watch of a SPICE console).
//!
//! A picture watch has no connection whose open and close mark it, so each
//! picture fetch renews a lease of the (VM, user) that runs out [`LEASE`]
//! after the last fetch. A watch is one unbroken run of leases: only the
//! fetch that finds none live starts one ([`Renewal::Started`]), and that is
//! the one the caller records (`console_watched`, `console_open`), so a
//! watch is on record once however many pictures it fetches.
//!
//! Pure and clock-free: every call takes `now` from its caller (handlers
//! pass `Instant::now()`, tests their own instants).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// How long a picture watch lasts after its last fetch. The viewer asks
/// for a picture about once a second, each after the last arrived, so a few
/// seconds cover a slow screenshot; the student's banner goes this long
/// after the dialog closes.
pub const LEASE: Duration = Duration::from_secs(6);

/// What a fetch did to its watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// No watch was live: this fetch starts one (record it).
    Started,
    /// The watch goes on.
    Renewed,
}

/// True if a lease that runs out at `until` is live at `now`.
pub fn live(until: Instant, now: Instant) -> bool {
    now < until
}

/// The live picture watches: (VM, user) → when the lease runs out.
#[derive(Debug, Default)]
pub struct Leases {
    until: HashMap<(Uuid, Uuid), Instant>,
    ttl: Duration,
}

impl Leases {
    pub fn new(ttl: Duration) -> Self {
        Self {
            until: HashMap::new(),
            ttl,
        }
    }

    /// `user` fetched a picture of `vm` at `now`: the lease runs until
    /// `now` + the lease time (never shortened by a late-arriving older
    /// fetch). Leases that ran out are dropped, so the map holds only
    /// watches going on.
    pub fn renew(&mut self, vm: Uuid, user: Uuid, now: Instant) -> Renewal {
        self.until.retain(|_, until| live(*until, now));
        let until = now + self.ttl;
        match self.until.get_mut(&(vm, user)) {
            Some(t) => {
                *t = (*t).max(until);
                Renewal::Renewed
            }
            None => {
                self.until.insert((vm, user), until);
                Renewal::Started
            }
        }
    }

    /// Who watches `vm`'s picture at `now` (any order).
    pub fn watchers(&self, vm: Uuid, now: Instant) -> Vec<Uuid> {
        self.until
            .iter()
            .filter(|((v, _), until)| *v == vm && live(**until, now))
            .map(|((_, user), _)| *user)
            .collect()
    }

    /// True if anyone watches `vm`'s picture at `now`.
    pub fn watched(&self, vm: Uuid, now: Instant) -> bool {
        self.until
            .iter()
            .any(|((v, _), until)| *v == vm && live(*until, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(6);

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_watch_starts_once_and_lasts_while_pictures_come() {
        let mut leases = Leases::new(TTL);
        let (vm, teacher) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        assert!(!leases.watched(vm, t0));
        assert_eq!(leases.renew(vm, teacher, t0), Renewal::Started);
        // A picture a second for a minute: one watch.
        for i in 1..=60 {
            assert_eq!(leases.renew(vm, teacher, t0 + s(i)), Renewal::Renewed);
        }
        assert_eq!(leases.watchers(vm, t0 + s(60)), vec![teacher]);
        // Gaps shorter than the lease (a slow screenshot) keep it.
        assert_eq!(leases.renew(vm, teacher, t0 + s(65)), Renewal::Renewed);
        // It ends the lease time after the last picture.
        assert!(leases.watched(vm, t0 + s(70)));
        assert!(!leases.watched(vm, t0 + s(71)));
        assert!(leases.watchers(vm, t0 + s(71)).is_empty());
        // Watching again later is a new watch.
        assert_eq!(leases.renew(vm, teacher, t0 + s(80)), Renewal::Started);
    }

    #[test]
    fn watches_are_per_vm_and_user() {
        let mut leases = Leases::new(TTL);
        let (vm, other_vm) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        assert_eq!(leases.renew(vm, a, t0), Renewal::Started);
        assert_eq!(leases.renew(vm, b, t0 + s(1)), Renewal::Started);
        assert_eq!(leases.renew(other_vm, a, t0 + s(2)), Renewal::Started);
        let mut on_vm = leases.watchers(vm, t0 + s(3));
        on_vm.sort();
        let mut both = vec![a, b];
        both.sort();
        assert_eq!(on_vm, both);
        assert_eq!(leases.watchers(other_vm, t0 + s(3)), vec![a]);
        // a's lease on vm runs out first.
        assert_eq!(leases.watchers(vm, t0 + s(6)), vec![b]);
    }

    #[test]
    fn an_older_fetch_never_shortens_a_lease_and_ended_ones_are_dropped() {
        let mut leases = Leases::new(TTL);
        let (vm, user) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        leases.renew(vm, user, t0 + s(10));
        // A request that started earlier is handled after it.
        assert_eq!(leases.renew(vm, user, t0 + s(5)), Renewal::Renewed);
        assert!(leases.watched(vm, t0 + s(15)));
        // Another user's fetch long after drops the ended lease.
        leases.renew(Uuid::new_v4(), Uuid::new_v4(), t0 + s(100));
        assert_eq!(leases.until.len(), 1);
        assert!(live(t0 + s(1), t0) && !live(t0, t0));
    }
}
