//! The sign-in throttle: every decision is a pure function of the `now` the
//! caller passes, so the tests drive the clock and never sleep.
//!
//! Policy (README "Security notes"):
//! - **Per source address** (IPv6: its /64, which one host can fill): a token
//!   bucket of failed sign-ins — `ip_burst` of them, earned back at
//!   `ip_per_minute`. An attempt takes a token when it is admitted and gets it
//!   back when its password was right, so parallel attempts cannot overrun the
//!   budget and the students behind one campus NAT who type their password
//!   right never spend it. An empty bucket answers 429 before any password is
//!   hashed (spraying usernames costs the sprayer, not the server's CPU).
//!   The same loan bounds one source's sign-ins in flight to `ip_burst`, so
//!   no single address fills the whole password-check queue; a refusal that
//!   only waits for loans to come back says "retry in 1 s".
//! - **Per (username, source)** — or per (username, device) for a browser
//!   with a valid device cookie for that username (`device.rs`): the first
//!   [`FREE_FAILURES`] attempts start at once; after that each attempt may
//!   start only [`FIRST_DELAY`]·2ⁿ (capped at [`MAX_DELAY`]) after the
//!   previous one started. Admitted attempts count as failures until they
//!   succeed, so concurrent attempts queue behind each other instead of
//!   bypassing the delay. An attempt that would wait longer than [`MAX_WAIT`]
//!   gets 429 with the time after which it would not. There is no hard lock:
//!   the right password still gets in after the wait, and a success forgets
//!   the key.
//! - Attempts with a device cookie skip the source bucket: whoever shares a
//!   student's NAT can spend its budget and queue up the student's
//!   (username, source) key, but not lock out a browser the student signed in
//!   from before.
//! - State is forgotten after [`FORGET_AFTER`] without attempts; memory is
//!   bounded by pruning forgotten entries once the maps grow large.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts per key that start without a delay.
pub const FREE_FAILURES: u32 = 5;
/// The delay after the free attempts; it doubles per further attempt.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The largest delay between two attempts of one key.
pub const MAX_DELAY: Duration = Duration::from_secs(16);
/// The longest an attempt is held before it is refused with 429 instead.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// A key (or a full bucket) without attempts for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Map size above which forgotten entries are pruned on the next attempt.
const PRUNE_ABOVE: usize = 10_000;

/// The limits that are settings (`--login-ip-burst`, `--login-ip-per-minute`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub ip_burst: u32,
    pub ip_per_minute: u32,
}

/// Where attempts come from, as the limits count it: an IPv4 address, or the
/// /64 of an IPv6 one (IPv4-mapped IPv6 addresses count as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let mask = !0u128 << 64;
                    Source(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)))
                }
            },
        }
    }
}

/// Whose attempts queue behind each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A browser without a device cookie for this username.
    Source { username: String, source: Source },
    /// A browser that signed in as this username before (its cookie's nonce).
    Device { username: String, device: String },
}

/// An admitted attempt: start checking the password after `wait`, then
/// report the outcome with [`Throttle::finish`].
#[derive(Debug)]
#[must_use = "an admitted attempt must be finished"]
pub struct Admission {
    pub wait: Duration,
    pub ticket: Ticket,
}

/// What [`Throttle::finish`] needs to settle an attempt.
#[derive(Debug)]
pub struct Ticket {
    subject: Subject,
    /// The source whose bucket lent a token, if any.
    lent_by: Option<Source>,
}

/// How an admitted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The right password: the key is forgotten and the token given back.
    Success,
    /// A wrong password or unknown user: it stays counted.
    Failure,
    /// The password was never checked (the server was busy): as if the
    /// attempt had not been made, except that the delay already scheduled stays.
    NotTried,
}

/// A refused attempt: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left, the ones lent to attempts in flight already taken out.
    tokens: f64,
    at: Instant,
    /// Attempts in flight holding a token.
    lent: u32,
}

#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// Attempts counted (admitted and not successful).
    attempts: u32,
    /// When the latest admitted attempt starts (may be in the future).
    last_start: Instant,
}

#[derive(Debug, Default)]
struct State {
    buckets: HashMap<Source, Bucket>,
    schedules: HashMap<Subject, Schedule>,
}

#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    state: Mutex<State>,
}

/// The spacing attempt number `k` (0-based) keeps from the one before it.
pub fn delay(k: u32) -> Duration {
    if k < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (k - FREE_FAILURES).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn rate_per_sec(&self) -> f64 {
        f64::from(self.limits.ip_per_minute.max(1)) / 60.0
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let earned = now.saturating_duration_since(b.at).as_secs_f64() * self.rate_per_sec();
        (b.tokens + earned).min(f64::from(self.limits.ip_burst))
    }

    /// Admits an attempt of `subject` coming from `source` at `now`, or
    /// refuses it. Device subjects do not use the source's bucket.
    pub fn admit(
        &self,
        subject: Subject,
        source: Source,
        now: Instant,
    ) -> Result<Admission, Refusal> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.prune(&mut st, now);
        let uses_bucket = matches!(subject, Subject::Source { .. });
        let tokens = if uses_bucket {
            let full = f64::from(self.limits.ip_burst);
            let (tokens, lent) = st
                .buckets
                .get(&source)
                .map_or((full, 0), |b| (self.refilled(*b, now), b.lent));
            if tokens < 1.0 {
                // Out of tokens only because sign-ins from this source are in
                // flight (a class behind one NAT at once): they come back as
                // soon as those passwords prove right, so retry soon.
                let secs = if tokens + f64::from(lent) >= 1.0 {
                    1.0
                } else {
                    (1.0 - tokens) / self.rate_per_sec()
                };
                return Err(Refusal {
                    retry_after: Duration::from_secs_f64(secs),
                });
            }
            Some((tokens, lent))
        } else {
            None
        };
        let schedule = st
            .schedules
            .get(&subject)
            .copied()
            .filter(|s| now < s.last_start + FORGET_AFTER);
        let start = match schedule {
            None => now,
            Some(s) => now.max(s.last_start + delay(s.attempts)),
        };
        let wait = start - now;
        if wait > MAX_WAIT {
            return Err(Refusal {
                retry_after: wait - MAX_WAIT,
            });
        }
        if let Some((tokens, lent)) = tokens {
            st.buckets.insert(
                source,
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                    lent: lent + 1,
                },
            );
        }
        st.schedules.insert(
            subject.clone(),
            Schedule {
                attempts: schedule.map_or(0, |s| s.attempts) + 1,
                last_start: start,
            },
        );
        Ok(Admission {
            wait,
            ticket: Ticket {
                subject,
                lent_by: uses_bucket.then_some(source),
            },
        })
    }

    /// Settles an admitted attempt.
    pub fn finish(&self, ticket: Ticket, outcome: Outcome, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(source) = ticket.lent_by
            && let Some(b) = st.buckets.get(&source).copied()
        {
            // A failure keeps its token spent; the others give it back.
            let back = if outcome == Outcome::Failure {
                0.0
            } else {
                1.0
            };
            let tokens = (self.refilled(b, now) + back).min(f64::from(self.limits.ip_burst));
            st.buckets.insert(
                source,
                Bucket {
                    tokens,
                    at: now,
                    lent: b.lent.saturating_sub(1),
                },
            );
        }
        match outcome {
            Outcome::Success => {
                st.schedules.remove(&ticket.subject);
            }
            Outcome::NotTried => {
                if let Some(s) = st.schedules.get_mut(&ticket.subject) {
                    s.attempts = s.attempts.saturating_sub(1);
                }
            }
            Outcome::Failure => {}
        }
    }

    fn prune(&self, st: &mut State, now: Instant) {
        if st.schedules.len() > PRUNE_ABOVE {
            st.schedules
                .retain(|_, s| now < s.last_start + FORGET_AFTER);
        }
        if st.buckets.len() > PRUNE_ABOVE {
            let full = f64::from(self.limits.ip_burst);
            st.buckets
                .retain(|_, b| b.lent > 0 || self.refilled(*b, now) < full);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        ip_burst: 40,
        ip_per_minute: 20,
    };

    fn ip(s: &str) -> Source {
        Source::of(s.parse().expect("ip"))
    }

    fn user(name: &str, source: &str) -> Subject {
        Subject::Source {
            username: name.into(),
            source: ip(source),
        }
    }

    fn device(name: &str, nonce: &str) -> Subject {
        Subject::Device {
            username: name.into(),
            device: nonce.into(),
        }
    }

    /// Admits an attempt of `name` from `source` (no device cookie).
    fn admit(t: &Throttle, name: &str, source: &str, now: Instant) -> Result<Admission, Refusal> {
        t.admit(user(name, source), ip(source), now)
    }

    /// Admits and finishes one attempt of `name` from `source` (no device
    /// cookie); returns its wait.
    fn attempt(
        t: &Throttle,
        name: &str,
        source: &str,
        outcome: Outcome,
        now: Instant,
    ) -> Result<Duration, Refusal> {
        let a = admit(t, name, source, now)?;
        t.finish(a.ticket, outcome, now + a.wait);
        Ok(a.wait)
    }

    #[test]
    fn delays_grow_after_the_free_attempts_and_are_capped() {
        let got: Vec<u64> = (0..12).map(|k| delay(k).as_secs()).collect();
        assert_eq!(got, [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn the_right_password_gets_in_after_five_failures_without_a_lock() {
        let t = Throttle::new(LIMITS);
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            let w = attempt(&t, "alice", "10.0.0.1", Outcome::Failure, now);
            assert_eq!(w, Ok(Duration::ZERO));
        }
        // The sixth waits one second after the fifth started, then succeeds…
        let w = attempt(&t, "alice", "10.0.0.1", Outcome::Success, now);
        assert_eq!(w, Ok(FIRST_DELAY));
        // …and the success forgets the failures.
        let later = now + FIRST_DELAY;
        let w = attempt(&t, "alice", "10.0.0.1", Outcome::Failure, later);
        assert_eq!(w, Ok(Duration::ZERO));
    }

    #[test]
    fn attempts_spaced_out_in_time_do_not_wait() {
        let t = Throttle::new(LIMITS);
        let mut now = Instant::now();
        for k in 0..10 {
            let w = attempt(&t, "bob", "10.0.0.1", Outcome::Failure, now);
            assert_eq!(w, Ok(Duration::ZERO), "attempt {k}");
            now += MAX_DELAY;
        }
    }

    #[test]
    fn concurrent_attempts_queue_behind_each_other_then_get_429() {
        let t = Throttle::new(LIMITS);
        let now = Instant::now();
        // All admitted at the same instant, none finished yet.
        let mut waits = Vec::new();
        let refused = loop {
            match admit(&t, "carol", "10.0.0.1", now) {
                Ok(a) => waits.push(a.wait.as_secs()),
                Err(r) => break r,
            }
        };
        // 5 free, then 1, 1+2, 1+2+4, 1+2+4+8 seconds; 31 s would exceed MAX_WAIT.
        assert_eq!(waits, [0, 0, 0, 0, 0, 1, 3, 7, 15]);
        assert_eq!(refused.retry_after, Duration::from_secs(31) - MAX_WAIT);
        // Another user from the same address is not held up.
        let w = attempt(&t, "dave", "10.0.0.1", Outcome::Success, now);
        assert_eq!(w, Ok(Duration::ZERO));
        // Once the queue has moved on, the refused attempt is admitted.
        let a = admit(&t, "carol", "10.0.0.1", now + refused.retry_after)
            .expect("admitted after Retry-After");
        assert_eq!(a.wait, MAX_WAIT);
    }

    #[test]
    fn keys_are_per_username_source_and_device() {
        let t = Throttle::new(LIMITS);
        let now = Instant::now();
        for _ in 0..8 {
            let _ = admit(&t, "erin", "10.0.0.1", now);
        }
        for other in [
            user("erin", "10.0.0.2"),
            user("frank", "10.0.0.1"),
            device("erin", "n1"),
        ] {
            let a = t
                .admit(other.clone(), ip("10.0.0.1"), now)
                .expect("admitted");
            assert_eq!(a.wait, Duration::ZERO, "{other:?}");
        }
    }

    #[test]
    fn a_source_that_keeps_failing_gets_429_before_any_hash() {
        let t = Throttle::new(Limits {
            ip_burst: 3,
            ip_per_minute: 6,
        });
        let now = Instant::now();
        for name in ["u1", "u2", "u3"] {
            assert!(attempt(&t, name, "10.0.0.9", Outcome::Failure, now).is_ok());
        }
        let r = admit(&t, "u4", "10.0.0.9", now).expect_err("bucket empty");
        assert_eq!(r.retry_after, Duration::from_secs(10));
        // Even the right password of a new browser waits for a token…
        assert!(admit(&t, "student", "10.0.0.9", now).is_err());
        // …but a browser with a device cookie is not counted against the source.
        assert!(t.admit(device("student", "n"), ip("10.0.0.9"), now).is_ok());
        // Other sources are unaffected; the bucket refills with time.
        assert!(admit(&t, "u4", "10.0.0.10", now).is_ok());
        assert!(admit(&t, "u4", "10.0.0.9", now + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn successes_and_untried_attempts_give_their_token_back() {
        let t = Throttle::new(Limits {
            ip_burst: 2,
            ip_per_minute: 1,
        });
        let now = Instant::now();
        // A hundred students behind one NAT signing in right never spend the budget.
        for i in 0..100 {
            let name = format!("s{i}");
            assert!(attempt(&t, &name, "10.1.1.1", Outcome::Success, now).is_ok());
        }
        // Concurrent attempts hold their tokens until they finish; a refusal
        // that only waits for them says to come back soon, not in a minute.
        let a = admit(&t, "x", "10.1.1.1", now).expect("1st");
        let b = admit(&t, "y", "10.1.1.1", now).expect("2nd");
        let r = admit(&t, "z", "10.1.1.1", now).expect_err("both tokens lent");
        assert_eq!(r.retry_after, Duration::from_secs(1));
        // A busy server never checked one of them: its token and count come back.
        t.finish(a.ticket, Outcome::NotTried, now);
        t.finish(b.ticket, Outcome::Failure, now);
        let c = admit(&t, "z", "10.1.1.1", now).expect("3rd");
        t.finish(c.ticket, Outcome::Failure, now);
        // Two failures, nothing in flight: a real wait for a token.
        let r = admit(&t, "w", "10.1.1.1", now).expect_err("spent");
        assert_eq!(r.retry_after, Duration::from_secs(60));
    }

    #[test]
    fn not_tried_attempts_do_not_count_towards_the_delay() {
        let t = Throttle::new(LIMITS);
        let now = Instant::now();
        for _ in 0..20 {
            let w = attempt(&t, "gina", "10.0.0.1", Outcome::NotTried, now);
            assert_eq!(w, Ok(Duration::ZERO));
        }
    }

    #[test]
    fn quiet_keys_are_forgotten() {
        let t = Throttle::new(LIMITS);
        let now = Instant::now();
        for _ in 0..9 {
            let _ = admit(&t, "hal", "10.0.0.1", now);
        }
        let w = admit(&t, "hal", "10.0.0.1", now).map(|a| a.wait);
        assert!(w.is_err_and(|r| r.retry_after > Duration::ZERO));
        // 15 s of scheduled waits, then FORGET_AFTER of silence.
        let later = now + Duration::from_secs(15) + FORGET_AFTER;
        let a = admit(&t, "hal", "10.0.0.1", later).expect("admitted");
        assert_eq!(a.wait, Duration::ZERO);
    }

    #[test]
    fn ipv6_sources_count_by_their_slash_64() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
        assert_ne!(ip("10.0.0.1"), ip("10.0.0.2"));
    }

    #[test]
    fn memory_stays_bounded_under_a_spray() {
        let t = Throttle::new(LIMITS);
        let now = Instant::now();
        for i in 0..(PRUNE_ABOVE as u32 + 10) {
            let source = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
            let _ = attempt(&t, "x", &source, Outcome::Failure, now);
        }
        let later = now + FORGET_AFTER + Duration::from_secs(3600);
        let _ = admit(&t, "y", "10.200.0.1", later);
        let st = t.state.lock().expect("lock");
        assert!(st.schedules.len() <= 2, "{}", st.schedules.len());
        assert!(st.buckets.len() <= 2, "{}", st.buckets.len());
    }
}
