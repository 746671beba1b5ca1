//! Host load figures: libvirt's node CPU and memory statistics
//! (`virNodeGetCPUStats`, `virNodeGetMemoryStats`).
//!
//! The `virt` crate (0.5) wraps neither call, so this file is the crate's only
//! `unsafe` code: two FFI calls through `virt::sys` with buffers sized by
//! libvirt's own "how many fields?" first call. Everything unsafe stays in the
//! two private `*_raw` functions; their callers see plain Rust values.
//!
//! Why libvirt and not `/proc` on the server: nodes are remote hosts running a
//! stock libvirtd and no agent of ours, so libvirt is the only window onto them.
//!
//! CPU figures are cumulative counters (nanoseconds since boot, summed over all
//! CPUs); a load percentage needs two samples — see [`CpuTimes::busy_percent`].
//! Memory "used" counts what the host cannot give a new guest without
//! swapping: total − (free + buffers + cached), so a host with a large page
//! cache is not mistaken for a full one (`virNodeGetFreeMemory` reports only
//! MemFree).

use virt::connect::Connect;

use super::LibvirtError;

/// Cumulative host CPU time, nanoseconds summed over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub kernel: u64,
    pub user: u64,
    pub idle: u64,
    pub iowait: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.kernel
            .saturating_add(self.user)
            .saturating_add(self.idle)
            .saturating_add(self.iowait)
    }

    /// Percentage of the interval since `earlier` the host's CPUs were busy
    /// (kernel + user; idle and I/O wait are not busy). `None` when the
    /// counters did not advance or went backwards (the host rebooted).
    pub fn busy_percent(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total().checked_sub(earlier.total())?;
        if total == 0 || self.idle < earlier.idle || self.iowait < earlier.iowait {
            return None;
        }
        let idle = (self.idle - earlier.idle) + (self.iowait - earlier.iowait);
        let busy = total.saturating_sub(idle);
        #[allow(clippy::cast_precision_loss)] // percentages, not accounting
        Some((busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0))
    }
}

/// Host memory, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub total_kib: u64,
    pub free_kib: u64,
    pub buffers_kib: u64,
    pub cached_kib: u64,
}

impl MemoryStats {
    /// Memory a new guest could not get without pushing something out.
    pub fn used_kib(&self) -> u64 {
        self.total_kib.saturating_sub(
            self.free_kib
                .saturating_add(self.buffers_kib)
                .saturating_add(self.cached_kib),
        )
    }
}

/// One sample of a host's load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    pub cpu: CpuTimes,
    pub memory: MemoryStats,
}

/// Reads both figures on the calling (worker) thread.
pub(super) fn host_stats(conn: &Connect) -> Result<HostStats, LibvirtError> {
    let mut cpu = CpuTimes::default();
    for (field, value) in cpu_raw(conn)? {
        match field.as_str() {
            "kernel" => cpu.kernel = value,
            "user" => cpu.user = value,
            "idle" => cpu.idle = value,
            "iowait" => cpu.iowait = value,
            _ => {} // "utilization" on some platforms; derived from the others anyway
        }
    }
    let memory = memory_stats(conn)?;
    Ok(HostStats { cpu, memory })
}

/// Host memory only (cheaper when CPU times are not needed).
///
/// Drivers without `virNodeGetMemoryStats` (libvirt's `test:///` driver used
/// for simulations) fall back to total and MemFree from `virNodeGetInfo` /
/// `virNodeGetFreeMemory`.
pub(super) fn memory_stats(conn: &Connect) -> Result<MemoryStats, LibvirtError> {
    let raw = match memory_raw(conn) {
        Ok(raw) => raw,
        Err(LibvirtError::Libvirt { code, .. }) if code == virt::sys::VIR_ERR_NO_SUPPORT as i32 => {
            return Ok(MemoryStats {
                total_kib: conn.node_info()?.memory,
                free_kib: conn.free_memory()? / 1024,
                ..MemoryStats::default()
            });
        }
        Err(e) => return Err(e),
    };
    let mut memory = MemoryStats::default();
    for (field, value) in raw {
        match field.as_str() {
            "total" => memory.total_kib = value,
            "free" => memory.free_kib = value,
            "buffers" => memory.buffers_kib = value,
            "cached" => memory.cached_kib = value,
            _ => {}
        }
    }
    Ok(memory)
}

/// The fields libvirt reports for all CPUs together.
#[allow(unsafe_code)]
fn cpu_raw(conn: &Connect) -> Result<Vec<(String, u64)>, LibvirtError> {
    use virt::sys;
    let mut n: std::os::raw::c_int = 0;
    // SAFETY: `conn.as_ptr()` is a live connection for the duration of the
    // call (we hold `conn`); a null `params` with `nparams = 0` asks libvirt
    // only for the number of fields and writes just `n`.
    let rc = unsafe {
        sys::virNodeGetCPUStats(
            conn.as_ptr(),
            sys::VIR_NODE_CPU_STATS_ALL_CPUS,
            std::ptr::null_mut(),
            &raw mut n,
            0,
        )
    };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    let len = usize::try_from(n).unwrap_or(0);
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut params = vec![
        sys::virNodeCPUStats {
            field: [0; 80],
            value: 0,
        };
        len
    ];
    // SAFETY: `params` holds `n` initialised elements and libvirt writes at
    // most `n` (it updates `n` to the number written); the connection is
    // live as above.
    let rc = unsafe {
        sys::virNodeGetCPUStats(
            conn.as_ptr(),
            sys::VIR_NODE_CPU_STATS_ALL_CPUS,
            params.as_mut_ptr(),
            &raw mut n,
            0,
        )
    };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    params.truncate(usize::try_from(n).unwrap_or(0));
    Ok(params
        .iter()
        .map(|p| (field_name(&p.field), p.value))
        .collect())
}

/// The fields libvirt reports for all NUMA cells together (KiB).
#[allow(unsafe_code)]
fn memory_raw(conn: &Connect) -> Result<Vec<(String, u64)>, LibvirtError> {
    use virt::sys;
    let mut n: std::os::raw::c_int = 0;
    // SAFETY: as in `cpu_raw`: a size query that writes only `n`.
    let rc = unsafe {
        sys::virNodeGetMemoryStats(
            conn.as_ptr(),
            sys::VIR_NODE_MEMORY_STATS_ALL_CELLS,
            std::ptr::null_mut(),
            &raw mut n,
            0,
        )
    };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    let len = usize::try_from(n).unwrap_or(0);
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut params = vec![
        sys::virNodeMemoryStats {
            field: [0; 80],
            value: 0,
        };
        len
    ];
    // SAFETY: as in `cpu_raw`: `n` initialised elements, at most `n` written.
    let rc = unsafe {
        sys::virNodeGetMemoryStats(
            conn.as_ptr(),
            sys::VIR_NODE_MEMORY_STATS_ALL_CELLS,
            params.as_mut_ptr(),
            &raw mut n,
            0,
        )
    };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    params.truncate(usize::try_from(n).unwrap_or(0));
    Ok(params
        .iter()
        .map(|p| (field_name(&p.field), p.value))
        .collect())
}

/// libvirt's fixed-size, NUL-terminated field name (never trusted to hold the NUL).
fn field_name(raw: &[std::os::raw::c_char; 80]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_percent_from_two_samples() {
        let a = CpuTimes {
            kernel: 100,
            user: 300,
            idle: 600,
            iowait: 0,
        };
        let b = CpuTimes {
            kernel: 200,
            user: 600,
            idle: 1000,
            iowait: 200,
        };
        // 1000 ns elapsed, 600 idle/iowait → 40 % busy.
        let p = b.busy_percent(&a).unwrap_or(f64::NAN);
        assert!((p - 40.0).abs() < 1e-9, "{p}");
        assert_eq!(a.busy_percent(&a), None, "no time passed");
        assert_eq!(a.busy_percent(&b), None, "counters went backwards");
    }

    #[test]
    fn used_memory_excludes_cache() {
        let m = MemoryStats {
            total_kib: 1000,
            free_kib: 100,
            buffers_kib: 50,
            cached_kib: 350,
        };
        assert_eq!(m.used_kib(), 500);
    }

    #[test]
    fn field_names_stop_at_nul_or_end() {
        let mut raw = [0 as std::os::raw::c_char; 80];
        for (i, b) in b"kernel".iter().enumerate() {
            raw[i] = std::os::raw::c_char::from_ne_bytes([*b]);
        }
        assert_eq!(field_name(&raw), "kernel");
        let full = [std::os::raw::c_char::from_ne_bytes([b'x']); 80];
        assert_eq!(field_name(&full).len(), 80);
    }

    #[test]
    fn reads_the_test_driver() {
        // test:/// implements the CPU call with fixed figures (memory takes the
        // fallback); this proves the FFI plumbing (sizes, field names) against the
        // real libvirt library. tests/monitor.rs covers a real libvirtd.
        let conn = Connect::open(Some("test:///default")).expect("test driver");
        let s = host_stats(&conn).expect("stats");
        assert!(s.memory.total_kib > 0, "{s:?}");
        assert!(s.cpu.total() > 0, "{s:?}");
    }
}
