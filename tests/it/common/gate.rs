//! Which tests run beside which. CI runs this binary on a 2-core machine
//! where every guest runs under TCG: a few ordinary tests side by side are
//! fine ([`slots`]: three, or `PVCE_TEST_SLOTS`), but a few must have the machine
//! to themselves — they boot several guests at once, hold time bounds that
//! a neighbour's guest could break (a node down within 10 s, pings with
//! deadlines, a console password that must outlive steps and then expire),
//! or read the whole access log. When each area was a binary of its own
//! they ran alone because their binary had one test (or a lock of its own);
//! in one binary this gate says so.
//!
//! Every test that starts a server ([`super::TestEnv`], or the binary as a
//! [`super::process::ServerProcess`]) or a guest holds a [`shared`] pass
//! (one slot); a test that must run alone takes [`alone`] first (every
//! slot), which waits until no other pass is out and keeps new ones waiting
//! until it is done (tokio's `Semaphore` is fair: a waiting `acquire_many`
//! queues later requests behind it, so an alone test is not starved). A
//! test that starts neither needs no pass.
//!
//! The gate, not libtest, sets how many tests run at once: scripts/test.sh
//! gives libtest many more threads than slots, so that tests waiting here
//! (for the heavy slot, say, while the next heavy test's turn comes) leave
//! the slots to the ordinary tests queued after them instead of idling.
//!
//! Heavy tests take [`heavy`]: a shared pass and a heavy slot of their
//! kind ([`Heavy`]). They run beside ordinary tests and beside a heavy test
//! of the other kind, never beside one of their own: a Chromium (two at
//! once starve each other's page timeouts on two cores; the one Chromium
//! may drive a guest's console), or the multi-node rig (there is one rig;
//! its libvirtds and guests live in namespaces and cgroups of their own, and
//! the machine is mostly idle while rig tests wait on nodes — measured:
//! 60–95 % idle CPU over the rig tests when they ran alone). A browser test
//! of the rig takes both slots at once.
//!
//! A pass belongs to the test's thread (libtest runs each test on a thread
//! of its own and `#[tokio::test]` drives the test's future on it): asking
//! again on the same thread hands out the pass already held, so a test with
//! two servers, or an alone test that then starts its server, never waits
//! for itself.

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard, Semaphore, SemaphorePermit};

/// The machine's slots: a shared pass takes one, an alone pass all.
fn slots() -> &'static Semaphore {
    static SLOTS: std::sync::OnceLock<Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(capacity() as usize))
}

/// How many ordinary tests run at once: `PVCE_TEST_SLOTS`, default 3. On
/// the 2-core CI machine the suite is mostly waiting (on guests, nodes,
/// timeouts it provokes): with two slots the CPU was 40–60 % idle over the
/// run, and the run was as long as its slot-time allowed.
fn capacity() -> u32 {
    std::env::var("PVCE_TEST_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(3)
}

/// A kind of heavy test: one of each kind runs at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heavy {
    /// The multi-node rig.
    Rig,
    /// Chromium.
    Chromium,
}

impl Heavy {
    /// This kind's slot. Slots are always taken in the order of the enum,
    /// so two tests asking for several never wait for each other in a circle.
    fn slot(self) -> &'static Mutex<()> {
        static RIG: Mutex<()> = Mutex::const_new(());
        static CHROMIUM: Mutex<()> = Mutex::const_new(());
        match self {
            Heavy::Rig => &RIG,
            Heavy::Chromium => &CHROMIUM,
        }
    }
}

/// Held for as long as the test runs beside others (shared or heavy) or alone.
pub struct Pass {
    guard: Guard,
    /// When the pass was granted, and how long the test waited for it.
    since: Instant,
    waited: Duration,
}

/// With `PVCE_TEST_TIMES=<file>` (scripts/test.sh sets it), each test that
/// held a pass appends `seconds held, seconds waited, shared|heavy|alone, name`:
/// the run ends with a list of the slowest tests, so CI time is measured
/// where it goes instead of guessed.
impl Drop for Pass {
    fn drop(&mut self) {
        let Some(path) = std::env::var_os("PVCE_TEST_TIMES") else {
            return;
        };
        let kind = match self.guard {
            Guard::Shared { .. } => "shared",
            Guard::Heavy { .. } => "heavy",
            Guard::Alone { .. } => "alone",
        };
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        let line = format!(
            "{:.1}\t{:.1}\t{kind}\t{name}\n",
            self.since.elapsed().as_secs_f64(),
            self.waited.as_secs_f64()
        );
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

enum Guard {
    Shared {
        _permit: SemaphorePermit<'static>,
    },
    /// Field order is drop order: the shared pass goes before the slot.
    Heavy {
        _permit: SemaphorePermit<'static>,
        kinds: Vec<Heavy>,
        _slots: Vec<MutexGuard<'static, ()>>,
    },
    Alone {
        _permits: SemaphorePermit<'static>,
    },
}

thread_local! {
    static HELD: RefCell<Weak<Pass>> = const { RefCell::new(Weak::new()) };
}

fn held() -> Option<Arc<Pass>> {
    HELD.with(|h| h.borrow().upgrade())
}

fn remember(pass: Pass) -> Arc<Pass> {
    let pass = Arc::new(pass);
    HELD.with(|h| *h.borrow_mut() = Arc::downgrade(&pass));
    pass
}

/// A pass to run beside other ordinary tests (the one this test holds, if any).
pub async fn shared() -> Arc<Pass> {
    if let Some(p) = held() {
        return p;
    }
    let asked = Instant::now();
    let permit = slots().acquire().await.expect("the gate never closes");
    remember(Pass {
        guard: Guard::Shared { _permit: permit },
        since: Instant::now(),
        waited: asked.elapsed(),
    })
}

/// A shared pass that also holds the heavy slots of `kinds` (see the module
/// doc). The slots are taken first, so a heavy test waiting for one holds
/// no shared pass that would keep others waiting. A test that runs alone,
/// or already holds these slots, keeps its pass.
pub async fn heavy(kinds: &[Heavy]) -> Arc<Pass> {
    if let Some(p) = held() {
        match &p.guard {
            Guard::Alone { .. } => {}
            Guard::Heavy { kinds: have, .. } => assert!(
                kinds.iter().all(|k| have.contains(k)),
                "take every heavy slot a test needs in one gate::heavy() call"
            ),
            Guard::Shared { .. } => panic!("take gate::heavy() before starting a server"),
        }
        return p;
    }
    let asked = Instant::now();
    let mut wanted = kinds.to_vec();
    wanted.sort_by_key(|k| *k as u8);
    wanted.dedup();
    let mut slots_held = Vec::new();
    for k in &wanted {
        slots_held.push(k.slot().lock().await);
    }
    let permit = slots().acquire().await.expect("the gate never closes");
    remember(Pass {
        guard: Guard::Heavy {
            _permit: permit,
            kinds: wanted,
            _slots: slots_held,
        },
        since: Instant::now(),
        waited: asked.elapsed(),
    })
}

/// A pass to run with no other test holding one. Take it before starting
/// anything: a test that already holds a shared pass cannot trade it up.
pub async fn alone() -> Arc<Pass> {
    if let Some(p) = held() {
        assert!(
            matches!(p.guard, Guard::Alone { .. }),
            "take gate::alone() before starting a server: this test already runs beside others"
        );
        return p;
    }
    let asked = Instant::now();
    let permits = slots()
        .acquire_many(capacity())
        .await
        .expect("the gate never closes");
    remember(Pass {
        guard: Guard::Alone { _permits: permits },
        since: Instant::now(),
        waited: asked.elapsed(),
    })
}

#[tokio::test]
async fn a_pass_is_the_threads_and_keeps_alone_tests_out() {
    use futures::FutureExt;
    let pass = shared().await;
    assert!(Arc::ptr_eq(&pass, &shared().await), "one pass per test");
    assert!(
        slots().try_acquire_many(capacity()).is_err(),
        "nobody runs alone meanwhile"
    );
    // A test beside others cannot trade its pass up (it would wait for itself).
    let traded = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        std::panic::AssertUnwindSafe(alone()).catch_unwind(),
    )
    .await
    .expect("alone() after a shared pass must refuse, not wait for itself");
    assert!(traded.is_err(), "alone() after a shared pass must refuse");
    drop(pass);
    assert!(held().is_none(), "the pass ends with its last holder");
}

#[tokio::test]
async fn a_heavy_pass_runs_beside_others_but_not_beside_another_of_its_kind() {
    let pass = heavy(&[Heavy::Rig]).await;
    // One slot: ordinary tests run beside it (a queued alone test may make
    // try_acquire fail, so the kind of guard is what is checked).
    assert!(matches!(pass.guard, Guard::Heavy { .. }));
    assert!(
        slots().try_acquire_many(capacity()).is_err(),
        "nobody runs alone meanwhile"
    );
    assert!(
        Heavy::Rig.slot().try_lock().is_err(),
        "no second rig test meanwhile"
    );
    // Its own server (a TestEnv) and the rig reuse the heavy pass.
    assert!(Arc::ptr_eq(&pass, &shared().await));
    assert!(Arc::ptr_eq(&pass, &heavy(&[Heavy::Rig]).await));
    // A slot it did not take up front is refused, not waited for.
    let more = std::panic::AssertUnwindSafe(heavy(&[Heavy::Chromium]));
    use futures::FutureExt;
    assert!(more.catch_unwind().await.is_err());
}

#[tokio::test]
async fn a_browser_test_of_the_rig_holds_both_slots() {
    let pass = heavy(&[Heavy::Chromium, Heavy::Rig]).await;
    assert!(Heavy::Rig.slot().try_lock().is_err());
    assert!(Heavy::Chromium.slot().try_lock().is_err());
    assert!(Arc::ptr_eq(&pass, &heavy(&[Heavy::Rig]).await));
}

#[tokio::test]
async fn an_alone_test_keeps_every_other_pass_out() {
    let pass = alone().await;
    assert!(
        slots().try_acquire().is_err(),
        "no shared pass while one runs alone"
    );
    // Its own server (a TestEnv) reuses the alone pass instead of waiting,
    // and so does the rig it may start (which takes a heavy pass).
    assert!(Arc::ptr_eq(&pass, &shared().await));
    assert!(Arc::ptr_eq(
        &pass,
        &heavy(&[Heavy::Rig, Heavy::Chromium]).await
    ));
}
