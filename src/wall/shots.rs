//! The wall's screenshot cache: at most one screenshot per VM per
//! [`MAX_AGE`], however many teachers watch the wall, and at most
//! `per_node` screenshots in flight on one node at a time.
//!
//! Each VM has a slot behind an async lock: the first viewer whose copy is
//! too old takes the screenshot while the others wait on the lock and then
//! get that same picture ([`reusable`], pure, decides). A picture belongs to
//! one boot of the VM; after a restart the old one is never shown. The
//! full-size picture (a live watch, [`super::lease`]) comes from the same
//! screenshot as the thumbnail: a caller that needs it asks for it, and a
//! cached shot without it is then taken again. Slots of
//! VMs nobody asked about for a minute are dropped, so the cache stays as
//! large as the walls being watched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use uuid::Uuid;

use super::thumb::Pictures;

/// How long one screenshot serves every viewer (the wall refreshes ~1/s).
pub const MAX_AGE: Duration = Duration::from_millis(900);
/// Slots unused this long are dropped.
const IDLE: Duration = Duration::from_secs(60);

/// A thumbnail (and the full-size picture, if it was asked for) and when
/// (and of which boot) it was taken.
#[derive(Debug, Clone)]
pub struct Shot {
    pub png: bytes::Bytes,
    pub full: Option<bytes::Bytes>,
    pub at: Instant,
    pub boot: String,
}

/// True if `shot` may be served at `now` for the VM's boot `boot`, to a
/// caller that needs the full-size picture if `full`.
pub fn reusable(shot: &Shot, boot: &str, now: Instant, max_age: Duration, full: bool) -> bool {
    shot.boot == boot
        && now.saturating_duration_since(shot.at) < max_age
        && (!full || shot.full.is_some())
}

type Slot = Arc<tokio::sync::Mutex<Option<Shot>>>;

#[derive(Debug)]
pub struct Shots {
    slots: Mutex<HashMap<Uuid, (Slot, Instant)>>,
    nodes: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    per_node: usize,
    max_age: Duration,
    /// Screenshots taken (cache misses), for `/metrics` and the tests.
    pub taken: AtomicU64,
}

impl Shots {
    pub fn new(per_node: usize, max_age: Duration) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            nodes: Mutex::new(HashMap::new()),
            per_node: per_node.max(1),
            max_age,
            taken: AtomicU64::new(0),
        }
    }

    fn slot(&self, vm: Uuid, now: Instant) -> Slot {
        let mut map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 64 {
            map.retain(|_, (slot, used)| {
                Arc::strong_count(slot) > 1 || now.saturating_duration_since(*used) < IDLE
            });
        }
        let entry = map.entry(vm).or_insert_with(|| (Slot::default(), now));
        entry.1 = entry.1.max(now);
        entry.0.clone()
    }

    fn node_limit(&self, node: Uuid) -> Arc<Semaphore> {
        let mut map = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(node)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_node)))
            .clone()
    }

    /// The cached picture of `vm` if one is fresh at `now` (with the full
    /// size if `full`), without waiting on a screenshot in flight.
    pub fn peek(&self, vm: Uuid, boot: &str, now: Instant, full: bool) -> Option<Shot> {
        let slot = self.slot(vm, now);
        let guard = slot.try_lock().ok()?;
        guard
            .as_ref()
            .filter(|s| reusable(s, boot, now, self.max_age, full))
            .cloned()
    }

    /// The picture of `vm` (running on `node` in boot `boot`) at `now`, with
    /// the full size if `full`: the cached one if [`reusable`], else the
    /// ones `take` makes (told whether to make the full size too), under
    /// the node's limit. A failed take leaves the old picture in place.
    pub async fn get<F, Fut, E>(
        &self,
        vm: Uuid,
        node: Uuid,
        boot: &str,
        now: Instant,
        full: bool,
        take: F,
    ) -> Result<Shot, E>
    where
        F: FnOnce(bool) -> Fut,
        Fut: Future<Output = Result<Pictures, E>>,
    {
        let slot = self.slot(vm, now);
        let mut guard = slot.lock().await;
        if let Some(s) = guard
            .as_ref()
            .filter(|s| reusable(s, boot, now, self.max_age, full))
        {
            return Ok(s.clone());
        }
        let limit = self.node_limit(node);
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = limit.acquire_owned().await.ok();
        let pictures = take(full).await?;
        self.taken.fetch_add(1, Ordering::Relaxed);
        let shot = Shot {
            png: pictures.thumbnail.into(),
            full: pictures.full.map(Into::into),
            at: now,
            boot: boot.to_owned(),
        };
        *guard = Some(shot.clone());
        Ok(shot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn shot(at: Instant, boot: &str) -> Shot {
        Shot {
            png: bytes::Bytes::new(),
            full: None,
            at,
            boot: boot.into(),
        }
    }

    fn thumb(png: Vec<u8>) -> Pictures {
        Pictures {
            thumbnail: png,
            full: None,
        }
    }

    #[test]
    fn a_picture_serves_its_boot_for_max_age() {
        let t = Instant::now();
        let age = Duration::from_secs(1);
        assert!(reusable(&shot(t, "b1"), "b1", t, age, false));
        assert!(reusable(
            &shot(t, "b1"),
            "b1",
            t + Duration::from_millis(999),
            age,
            false
        ));
        assert!(!reusable(&shot(t, "b1"), "b1", t + age, age, false));
        assert!(
            !reusable(&shot(t, "b1"), "b2", t, age, false),
            "another boot"
        );
        // A viewer that asked before the picture was taken gets it too.
        assert!(reusable(&shot(t + age, "b1"), "b1", t, age, false));
        // A live watch needs the full size: a thumbnail alone will not do.
        assert!(!reusable(&shot(t, "b1"), "b1", t, age, true));
        let both = Shot {
            full: Some(bytes::Bytes::from_static(b"full")),
            ..shot(t, "b1")
        };
        assert!(reusable(&both, "b1", t, age, true) && reusable(&both, "b1", t, age, false));
        assert!(!reusable(&both, "b1", t + age, age, true));
    }

    #[tokio::test]
    async fn many_viewers_cost_one_screenshot_per_vm_and_age() {
        let shots = Arc::new(Shots::new(4, Duration::from_secs(1)));
        let (vm, node) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        let calls = Arc::new(AtomicUsize::new(0));
        // The first take waits for a go, so all viewers pile up behind it.
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let wait = Arc::new(tokio::sync::Mutex::new(Some(wait)));
        let mut viewers = Vec::new();
        for _ in 0..20 {
            let (shots, calls, wait) = (shots.clone(), calls.clone(), wait.clone());
            viewers.push(tokio::spawn(async move {
                shots
                    .get(vm, node, "b", t0, false, |_| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        if let Some(w) = wait.lock().await.take() {
                            let _ = w.await;
                        }
                        Ok::<_, ()>(thumb(vec![7]))
                    })
                    .await
            }));
        }
        let _ = go.send(());
        for v in viewers {
            assert_eq!(v.await.expect("join").expect("shot").png.as_ref(), &[7]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(shots.peek(vm, "b", t0, false).is_some());
        // A second later, one more.
        let later = t0 + Duration::from_secs(1);
        assert!(shots.peek(vm, "b", later, false).is_none());
        let s = shots
            .get(vm, node, "b", later, false, |_| async {
                Ok::<_, ()>(thumb(vec![8]))
            })
            .await
            .expect("shot");
        assert_eq!(s.png.as_ref(), &[8]);
        assert_eq!(shots.taken.load(Ordering::Relaxed), 2);
        // A failed take keeps the last picture and reports the error.
        let err = shots
            .get(
                vm,
                node,
                "b",
                later + Duration::from_secs(5),
                false,
                |_| async { Err::<Pictures, _>("node gone") },
            )
            .await;
        assert_eq!(err.err(), Some("node gone"));
        assert!(shots.peek(vm, "b", later, false).is_some());
    }

    #[tokio::test]
    async fn a_live_watch_and_the_wall_share_one_screenshot() {
        let shots = Shots::new(4, Duration::from_secs(1));
        let (vm, node) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        let take = |full: bool| async move {
            Ok::<_, ()>(Pictures {
                thumbnail: vec![1],
                full: full.then(|| vec![1, 1]),
            })
        };
        // The wall's thumbnail alone: no full-size picture made.
        let s = shots
            .get(vm, node, "b", t0, false, take)
            .await
            .expect("shot");
        assert!(s.full.is_none());
        // A watcher needs the full size: that shot will not do, so one more
        // is taken, with both sizes.
        assert!(shots.peek(vm, "b", t0, true).is_none());
        let s = shots
            .get(vm, node, "b", t0, true, take)
            .await
            .expect("shot");
        assert_eq!(s.full.as_deref(), Some(&[1, 1][..]));
        assert_eq!(shots.taken.load(Ordering::Relaxed), 2);
        // Within the second, the wall and the watcher get that one.
        let thumb_again = shots
            .get(vm, node, "b", t0, false, take)
            .await
            .expect("thumb");
        assert_eq!(
            thumb_again.full, s.full,
            "the wall's thumbnail is of that shot"
        );
        let full_again = shots.peek(vm, "b", t0, true).expect("full");
        assert_eq!(full_again.full, s.full);
        assert_eq!(shots.taken.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn at_most_per_node_screenshots_run_on_a_node_at_once() {
        let shots = Arc::new(Shots::new(3, Duration::from_secs(1)));
        let node = Uuid::new_v4();
        let other = Uuid::new_v4();
        let (inflight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (release, _) = tokio::sync::broadcast::channel::<()>(1);
        let started = Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (shots, inflight, peak, started) = (
                shots.clone(),
                inflight.clone(),
                peak.clone(),
                started.clone(),
            );
            let mut rx = release.subscribe();
            // Two VMs on another node run beside the first node's three.
            let n = if i < 8 { node } else { other };
            tasks.push(tokio::spawn(async move {
                shots
                    .get(
                        Uuid::new_v4(),
                        n,
                        "b",
                        Instant::now(),
                        i % 2 == 0,
                        |_| async move {
                            let now = inflight.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            started.add_permits(1);
                            let _ = rx.recv().await;
                            inflight.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, ()>(thumb(vec![]))
                        },
                    )
                    .await
            }));
        }
        // Three on the node and two on the other are taking pictures; the
        // rest of the node's wait.
        let five = started.acquire_many(5).await.expect("five started");
        five.forget();
        assert_eq!(inflight.load(Ordering::SeqCst), 5);
        while inflight.load(Ordering::SeqCst) > 0 || tasks.iter().any(|t| !t.is_finished()) {
            let _ = release.send(());
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.expect("join").expect("shot");
        }
        assert_eq!(peak.load(Ordering::SeqCst), 5);
    }
}
