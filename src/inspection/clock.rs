//! Clock skew between this server and a node, from one [`ClockProbe`]: the
//! server's wall clock read just before and just after the node stamped a
//! file (see `Node::probe_clock`), and that stamp.
//!
//! The node read its clock at some instant t within [before, after] of the
//! server's clock; its reading is the stamp plus the file time's own
//! granularity. So the skew (node minus server) lies in
//! [stamp_lo − after, stamp_hi − before]: its middle is the figure, its
//! half-width the uncertainty.
//!
//! Thresholds, and why:
//! - [`FAIL_MS`] 30 s: a live console's one-time password expires by the
//!   *node's* clock (libvirt's `passwdValidTo`, written from the server's
//!   clock with a 90 s ticket by default), so a node 30 s ahead already eats
//!   a third of every console ticket; TLS certificates (libvirt's TLS
//!   transport) are checked against each host's own clock, and Kerberos
//!   (SASL/GSSAPI transports) refuses tickets beyond 5 minutes.
//! - [`WARN_MS`] 2 s: NTP keeps healthy hosts within milliseconds, so more
//!   than 2 s means a node's time sync is broken; and incidents are
//!   investigated by lining up the server's events and audit log with the
//!   node's libvirt/QEMU logs by time, which seconds of skew mislead.
//!
//! Invariant: a skew is flagged only when it exceeds the threshold by more
//! than the measurement's uncertainty (never on noise), and a measurement
//! too coarse to tell the warning threshold apart says so instead of
//! passing.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::libvirt::{ClockProbe, FileStamp};

/// More skew than this (beyond the uncertainty) is a warning.
pub const WARN_MS: i64 = 2_000;
/// More skew than this (beyond the uncertainty) fails the check.
pub const FAIL_MS: i64 = 30_000;

const MS_NS: i128 = 1_000_000;
const SECOND_NS: i128 = 1_000_000_000;
/// Linux stamps files from its coarse clock, at most one tick behind the
/// real one: 10 ms at HZ=100, the slowest tick in common use.
const COARSE_TICK_NS: i128 = 10 * MS_NS;

/// A measured skew, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skew {
    /// The node's clock minus the server's (positive: the node is ahead).
    pub skew_ms: i64,
    /// The true skew is within `skew_ms ± uncertainty_ms`.
    pub uncertainty_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// The uncertainty is larger than the warning threshold.
    Inconclusive,
}

/// Nanoseconds since the epoch (negative before it).
fn nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

/// The node's reading as an interval of nanoseconds: a stamp with a
/// fraction came from the coarse clock (up to a tick behind); one without
/// is a whole second (a file system with one-second times truncates).
fn node_interval(s: FileStamp) -> (i128, i128) {
    let base = i128::from(s.secs) * SECOND_NS;
    match s.nanos {
        Some(n) => {
            let at = base + i128::from(n);
            (at, at + COARSE_TICK_NS)
        }
        None => (base, base + SECOND_NS),
    }
}

/// The skew one probe shows, with its uncertainty.
pub fn measure(probe: &ClockProbe) -> Skew {
    let (a, b) = (nanos(probe.before), nanos(probe.after));
    // A server clock stepped back during the call still bounds the instant.
    let (before, after) = (a.min(b), a.max(b));
    let (lo, hi) = node_interval(probe.node);
    let (min, max) = (lo - after, hi - before);
    let mid = min + (max - min) / 2;
    let half = (max - min) - (max - min) / 2;
    // Round the figure to the nearest millisecond, the uncertainty up.
    let round = |ns: i128| {
        let ms = if ns >= 0 {
            (ns + MS_NS / 2) / MS_NS
        } else {
            (ns - MS_NS / 2) / MS_NS
        };
        i64::try_from(ms).unwrap_or(if ns >= 0 { i64::MAX } else { i64::MIN })
    };
    Skew {
        skew_ms: round(mid),
        uncertainty_ms: i64::try_from((half + MS_NS - 1) / MS_NS).unwrap_or(i64::MAX),
    }
}

/// What the check says of a skew (see the module doc).
pub fn verdict(s: Skew) -> Verdict {
    // The smallest skew the measurement allows.
    let least = s.skew_ms.saturating_abs().saturating_sub(s.uncertainty_ms);
    if least > FAIL_MS {
        Verdict::Fail
    } else if least > WARN_MS {
        Verdict::Warn
    } else if s.uncertainty_ms > WARN_MS {
        Verdict::Inconclusive
    } else {
        Verdict::Ok
    }
}

/// The item's detail, in English.
pub fn describe(s: Skew, v: Verdict) -> String {
    let secs = |ms: i64| {
        let ms = ms.unsigned_abs();
        format!("{}.{:03} s", ms / 1000, ms % 1000)
    };
    let reading = if s.skew_ms == 0 {
        format!(
            "node clock matches the server's (±{})",
            secs(s.uncertainty_ms)
        )
    } else {
        format!(
            "node clock {} {} the server's (±{})",
            secs(s.skew_ms),
            if s.skew_ms > 0 { "ahead of" } else { "behind" },
            secs(s.uncertainty_ms)
        )
    };
    match v {
        Verdict::Ok => reading,
        Verdict::Warn => format!(
            "{reading}: over {} s, the node's time sync (NTP) is not working",
            WARN_MS / 1000
        ),
        Verdict::Fail => format!(
            "{reading}: over {} s, console passwords, TLS and Kerberos checks on the node go wrong; fix its time sync (NTP)",
            FAIL_MS / 1000
        ),
        Verdict::Inconclusive => format!(
            "{reading}: the node answered too slowly to tell a skew over {} s",
            WARN_MS / 1000
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(ns)
    }

    fn probe(before: u64, after: u64, secs: i64, nanos: Option<u32>) -> ClockProbe {
        ClockProbe {
            before: at(before),
            after: at(after),
            node: FileStamp { secs, nanos },
        }
    }

    const T: u64 = 1_800_000_000 * 1_000_000_000;

    #[test]
    fn the_skew_is_the_middle_of_what_the_probe_allows() {
        // Server 100.000–100.020 s; node stamped 100.010 (+ up to a 10 ms
        // tick): skew in [-10, +20] ms → +5 ± 15 ms.
        let s = measure(&probe(
            T + 100_000_000_000,
            T + 100_020_000_000,
            1_800_000_100,
            Some(10_000_000),
        ));
        assert_eq!(
            s,
            Skew {
                skew_ms: 5,
                uncertainty_ms: 15
            }
        );
        // A node 42 s behind.
        let s = measure(&probe(
            T + 100_000_000_000,
            T + 100_004_000_000,
            1_800_000_058,
            Some(2_000_000),
        ));
        assert_eq!(
            s,
            Skew {
                skew_ms: -41_995,
                uncertainty_ms: 7
            }
        );
        // Whole-second file times: half a second more uncertainty.
        let s = measure(&probe(T, T + 2_000_000, 1_800_000_003, None));
        assert_eq!(
            s,
            Skew {
                skew_ms: 3_499,
                uncertainty_ms: 501
            }
        );
        // A server clock stepped back mid-call still gives an interval.
        let s = measure(&probe(T + 4_000_000, T, 1_800_000_000, Some(0)));
        assert_eq!(
            s,
            Skew {
                skew_ms: 3,
                uncertainty_ms: 7
            }
        );
    }

    #[test]
    fn only_a_skew_beyond_its_uncertainty_is_flagged() {
        let v = |skew_ms, uncertainty_ms| {
            verdict(Skew {
                skew_ms,
                uncertainty_ms,
            })
        };
        assert_eq!(v(0, 5), Verdict::Ok);
        assert_eq!(v(-2_000, 0), Verdict::Ok);
        assert_eq!(v(2_001, 0), Verdict::Warn);
        assert_eq!(v(-2_001, 0), Verdict::Warn);
        // 2.5 s ± 0.6 s might be under 2 s: not flagged.
        assert_eq!(v(2_500, 600), Verdict::Ok);
        assert_eq!(v(2_500, 400), Verdict::Warn);
        assert_eq!(v(30_000, 0), Verdict::Warn);
        assert_eq!(v(-30_001, 0), Verdict::Fail);
        assert_eq!(v(31_000, 1_500), Verdict::Warn);
        assert_eq!(v(40_000, 1_500), Verdict::Fail);
        // Too slow an answer to tell: neither passed nor flagged...
        assert_eq!(v(0, 2_001), Verdict::Inconclusive);
        assert_eq!(v(5_000, 4_000), Verdict::Inconclusive);
        // ...unless even the least skew it allows is over a threshold.
        assert_eq!(v(60_000, 5_000), Verdict::Fail);
        assert_eq!(v(i64::MIN, 0), Verdict::Fail);
    }

    #[test]
    fn the_detail_reads_the_figure() {
        let s = Skew {
            skew_ms: -41_997,
            uncertainty_ms: 7,
        };
        assert_eq!(
            describe(s, verdict(s)),
            "node clock 41.997 s behind the server's (±0.007 s): over 30 s, console passwords, TLS and Kerberos checks on the node go wrong; fix its time sync (NTP)"
        );
        let s = Skew {
            skew_ms: 5,
            uncertainty_ms: 15,
        };
        assert_eq!(
            describe(s, Verdict::Ok),
            "node clock 0.005 s ahead of the server's (±0.015 s)"
        );
        let s = Skew {
            skew_ms: 0,
            uncertainty_ms: 2_500,
        };
        assert_eq!(
            describe(s, verdict(s)),
            "node clock matches the server's (±2.500 s): the node answered too slowly to tell a skew over 2 s"
        );
    }
}
