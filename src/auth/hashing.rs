//! Password checks off the async runtime: argon2 takes tens of milliseconds
//! of CPU by design, and run on the runtime's threads 200 sign-ins at once
//! held up every other request (GET /api/vms p50 35 → 285 ms, /healthz 1 s).
//!
//! Invariants:
//! - At most `workers` checks run at once, each on tokio's blocking pool, so
//!   argon2's memory (19 MiB per check) and CPU are bounded too.
//! - At most `queue` more wait for a turn, in arrival order (tokio's
//!   semaphore is fair); one more is refused at once with
//!   [`HashError::Busy`] and an estimate of when to retry, instead of
//!   growing everyone's wait without bound.
//! - A caller that goes away while waiting gives its place up; a check that
//!   started runs to the end and frees its slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Why a password check did not run.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the server is busy checking other sign-ins")]
    Busy { retry_after: Duration },
    #[error("the password check did not finish")]
    Failed,
}

#[derive(Debug)]
pub struct HashPool {
    permits: Arc<Semaphore>,
    workers: usize,
    queue: usize,
    waiting: AtomicUsize,
    /// Running average duration of one check, for Retry-After.
    avg_micros: AtomicU64,
    /// Benchmarks only: run checks on the caller's thread (the old way).
    inline: bool,
}

/// Gives a queue place back however the wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashPool {
    /// `workers` 0 means one per CPU core.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            workers
        };
        Self {
            permits: Arc::new(Semaphore::new(workers)),
            workers,
            queue,
            waiting: AtomicUsize::new(0),
            avg_micros: AtomicU64::new(50_000),
            inline: false,
        }
    }

    /// Checks on the caller's thread, unbounded (for the before/after benchmark).
    pub fn inline(mut self, inline: bool) -> Self {
        self.inline = inline;
        self
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `check` on the blocking pool when a worker is free, waiting in
    /// the bounded queue meanwhile.
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        if self.inline {
            return Ok(check());
        }
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
                let _place = Waiting(&self.waiting);
                if ahead >= self.queue {
                    return Err(HashError::Busy {
                        retry_after: self.estimate(ahead + 1),
                    });
                }
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| HashError::Failed)?
            }
        };
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check()
        })
        .await
        .map_err(|_| HashError::Failed)?;
        self.record(started.elapsed());
        Ok(out)
    }

    /// How long `n` queued checks take to drain through the workers.
    fn estimate(&self, n: usize) -> Duration {
        let per = Duration::from_micros(self.avg_micros.load(Ordering::Relaxed));
        let rounds = u32::try_from(n.div_ceil(self.workers)).unwrap_or(u32::MAX);
        per.saturating_mul(rounds)
    }

    fn record(&self, took: Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // An exponential average over about eight checks; races only blur it.
        let old = self.avg_micros.load(Ordering::Relaxed);
        self.avg_micros
            .store(old - old / 8 + took / 8, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check that blocks until released, so the test decides when workers are busy.
    fn gate() -> (
        std::sync::mpsc::Sender<()>,
        impl FnOnce() -> u32 + Send + 'static,
    ) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        (tx, move || {
            let _ = rx.recv();
            7
        })
    }

    #[tokio::test]
    async fn overflow_beyond_workers_and_queue_is_refused_at_once() {
        let pool = Arc::new(HashPool::new(1, 1));
        let (release_a, a) = gate();
        let (release_b, b) = gate();
        let p = pool.clone();
        let running = tokio::spawn(async move { p.run(a).await });
        // Wait (without sleeping) until the first check holds the only worker.
        while pool.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let p = pool.clone();
        let queued = tokio::spawn(async move { p.run(b).await });
        while pool.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // Worker busy, queue full: the third is refused without waiting.
        let third = pool.run(|| 0u32).await;
        assert!(
            matches!(third, Err(HashError::Busy { retry_after }) if retry_after > Duration::ZERO),
            "{third:?}"
        );
        assert_eq!(
            pool.waiting.load(Ordering::Acquire),
            1,
            "refusal left the queue as it was"
        );
        release_a.send(()).expect("release a");
        release_b.send(()).expect("release b");
        assert_eq!(running.await.expect("join").expect("ran"), 7);
        assert_eq!(queued.await.expect("join").expect("ran"), 7);
        // Everything drained: checks run again.
        assert_eq!(pool.run(|| 1u32).await.expect("ran"), 1);
        assert_eq!(pool.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_frees_its_queue_place() {
        let pool = Arc::new(HashPool::new(1, 1));
        let (release, a) = gate();
        let p = pool.clone();
        let running = tokio::spawn(async move { p.run(a).await });
        while pool.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let p = pool.clone();
        let waiter = tokio::spawn(async move { p.run(|| 2u32).await });
        while pool.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(pool.waiting.load(Ordering::Acquire), 0);
        release.send(()).expect("release");
        assert_eq!(running.await.expect("join").expect("ran"), 7);
    }

    #[test]
    fn zero_workers_means_one_per_core() {
        assert!(HashPool::new(0, 4).workers() >= 1);
        assert_eq!(HashPool::new(3, 4).workers(), 3);
    }

    #[test]
    fn retry_after_grows_with_the_queue() {
        let pool = HashPool::new(2, 10);
        assert_eq!(pool.estimate(1), Duration::from_millis(50));
        assert_eq!(pool.estimate(4), Duration::from_millis(100));
        assert_eq!(pool.estimate(5), Duration::from_millis(150));
    }
}
