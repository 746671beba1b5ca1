//! Load figures: libvirt's host CPU and memory statistics
//! (`virNodeGetCPUStats`, `virNodeGetMemoryStats`) and the CPU time and
//! memory of each running pvce domain.
//!
//! The `virt` crate (0.5) wraps neither host call, so this file holds (with
//! the backup calls of `backup.rs`) the crate's only `unsafe` code: two FFI calls through `virt::sys` with buffers sized by
//! libvirt's own "how many fields?" first call, both through the one private
//! `node_stats` helper; callers see plain Rust values.
//!
//! Per-domain figures use only wrapped calls: listing the running domains, then
//! `virDomainGetInfo` and `virDomainMemoryStats` for each. The one-RPC
//! `virConnectGetAllDomainStats` is wrapped by `virt` 0.5 only as raw record
//! pointers with no accessors and no free (its records would leak on every
//! sample), so it would mean more `unsafe` here, not less.
//!
//! Why libvirt and not `/proc` on the server: nodes are remote hosts running a
//! stock libvirtd and no agent of ours, so libvirt is the only window onto them.
//!
//! CPU figures are cumulative counters (nanoseconds since boot, summed over all
//! CPUs; for a domain, since its QEMU started); a load percentage needs two
//! samples — see [`CpuTimes::busy_percent`] and [`DomainStats::cpu_percent`].
//! Memory "used" counts what the host cannot give a new guest without
//! swapping: total − (free + buffers + cached), so a host with a large page
//! cache is not mistaken for a full one (`virNodeGetFreeMemory` reports only
//! MemFree).

use std::time::Instant;

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

/// One running domain's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainStats {
    /// The domain's UUID (a pvce VM's id).
    pub uuid: uuid::Uuid,
    /// CPU time used since the domain's QEMU started, ns (vCPUs and QEMU's
    /// own threads).
    pub cpu_time_ns: u64,
    pub vcpus: u32,
    /// Memory the guest currently has (its balloon size), KiB.
    pub memory_kib: u64,
    /// Host memory the domain's process really occupies, KiB; `None` where
    /// the driver does not report it.
    pub rss_kib: Option<u64>,
    /// When the figures were read (the CPU percentage's time base).
    pub read_at: Instant,
}

impl DomainStats {
    /// Share of its vCPUs' capacity the domain used since `earlier`: 100 %
    /// means every vCPU busy for the whole interval (QEMU's own threads can
    /// push the raw figure past that; it is capped). `None` for a different
    /// domain, when no time passed, or when the counter went backwards (the
    /// domain was restarted between the readings).
    pub fn cpu_percent(&self, earlier: &DomainStats) -> Option<f64> {
        if self.uuid != earlier.uuid || self.vcpus == 0 {
            return None;
        }
        let used = self.cpu_time_ns.checked_sub(earlier.cpu_time_ns)?;
        let wall = self.read_at.checked_duration_since(earlier.read_at)?;
        let capacity = wall.as_secs_f64() * 1e9 * f64::from(self.vcpus);
        if capacity <= 0.0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)] // percentages, not accounting
        Some((used as f64 * 100.0 / capacity).clamp(0.0, 100.0))
    }
}

/// The figures of every running domain whose name starts with `prefix`,
/// read on the calling (worker) thread. A domain that stops while it is
/// being read is left out.
pub(super) fn domain_stats(conn: &Connect, prefix: &str) -> Result<Vec<DomainStats>, LibvirtError> {
    let mut out = Vec::new();
    for dom in conn.list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_RUNNING)? {
        // The name and UUID come with the listing (no further RPC).
        if !dom.name()?.starts_with(prefix) {
            continue;
        }
        let uuid = dom.uuid()?;
        let info = match dom.info().map_err(LibvirtError::from) {
            Ok(info) => info,
            Err(LibvirtError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let read_at = Instant::now();
        // RSS is a nicety: a driver that cannot report it still gives the rest.
        let rss_kib = match dom.memory_stats(0).map_err(LibvirtError::from) {
            Ok(stats) => stats
                .iter()
                .find(|s| s.tag == virt::sys::VIR_DOMAIN_MEMORY_STAT_RSS)
                .map(|s| s.val),
            Err(LibvirtError::NotFound) => continue,
            Err(_) => None,
        };
        out.push(DomainStats {
            uuid,
            cpu_time_ns: info.cpu_time,
            vcpus: info.nr_virt_cpu,
            memory_kib: info.memory,
            rss_kib,
            read_at,
        });
    }
    Ok(out)
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
    // SAFETY: `virNodeGetCPUStats` is one of the two getters `node_stats`
    // is written for (contract in its `# Safety`), with its own record type.
    unsafe {
        node_stats::<sys::virNodeCPUStats>(
            conn,
            sys::VIR_NODE_CPU_STATS_ALL_CPUS,
            sys::virNodeGetCPUStats,
        )
    }
}

/// The fields libvirt reports for all NUMA cells together (KiB).
#[allow(unsafe_code)]
fn memory_raw(conn: &Connect) -> Result<Vec<(String, u64)>, LibvirtError> {
    use virt::sys;
    // SAFETY: as in `cpu_raw`, for the memory getter and its record type.
    unsafe {
        node_stats::<sys::virNodeMemoryStats>(
            conn,
            sys::VIR_NODE_MEMORY_STATS_ALL_CELLS,
            sys::virNodeGetMemoryStats,
        )
    }
}

/// A record of libvirt's node statistics: a fixed-size field name and a value.
trait NodeStatsRecord: Clone {
    const EMPTY: Self;
    fn name_value(&self) -> (String, u64);
}

impl NodeStatsRecord for virt::sys::virNodeCPUStats {
    const EMPTY: Self = Self {
        field: [0; 80],
        value: 0,
    };
    fn name_value(&self) -> (String, u64) {
        (field_name(&self.field), self.value)
    }
}

impl NodeStatsRecord for virt::sys::virNodeMemoryStats {
    const EMPTY: Self = Self {
        field: [0; 80],
        value: 0,
    };
    fn name_value(&self) -> (String, u64) {
        (field_name(&self.field), self.value)
    }
}

/// The signature `virNodeGetCPUStats` and `virNodeGetMemoryStats` share:
/// (connection, CPU or cell number, records, record count in/out, flags).
type NodeStatsFn<T> = unsafe extern "C" fn(
    virt::sys::virConnectPtr,
    std::os::raw::c_int,
    *mut T,
    *mut std::os::raw::c_int,
    std::os::raw::c_uint,
) -> std::os::raw::c_int;

/// libvirt's two-call pattern: ask how many records there are, then fill a
/// buffer of exactly that many.
///
/// # Safety
///
/// `get` must be `virNodeGetCPUStats` or `virNodeGetMemoryStats` with `T` its
/// own record type: with a null buffer and a count of 0 it writes only the
/// count; with a buffer of `n` records it writes at most `n` and sets the count
/// to the number written.
#[allow(unsafe_code)]
unsafe fn node_stats<T: NodeStatsRecord>(
    conn: &Connect,
    which: std::os::raw::c_int,
    get: NodeStatsFn<T>,
) -> Result<Vec<(String, u64)>, LibvirtError> {
    let mut n: std::os::raw::c_int = 0;
    // SAFETY: `conn.as_ptr()` is a live connection for the duration of the
    // call (we hold `conn`); a null buffer with a count of 0 asks libvirt
    // only for the number of records and writes just `n` (caller's contract).
    let rc = unsafe { get(conn.as_ptr(), which, std::ptr::null_mut(), &raw mut n, 0) };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    let len = usize::try_from(n).unwrap_or(0);
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut params = vec![T::EMPTY; len];
    // SAFETY: `params` holds `n` initialised records of the getter's own type
    // and libvirt writes at most `n` (updating `n` to the number written);
    // the connection is live as above.
    let rc = unsafe { get(conn.as_ptr(), which, params.as_mut_ptr(), &raw mut n, 0) };
    if rc < 0 {
        return Err(virt::error::Error::last_error().into());
    }
    params.truncate(usize::try_from(n).unwrap_or(0));
    Ok(params.iter().map(NodeStatsRecord::name_value).collect())
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

    fn reading(cpu_time_ns: u64, vcpus: u32, read_at: Instant) -> DomainStats {
        DomainStats {
            uuid: uuid::Uuid::nil(),
            cpu_time_ns,
            vcpus,
            memory_kib: 1024,
            rss_kib: None,
            read_at,
        }
    }

    #[test]
    fn domain_cpu_percent_is_per_vcpu_capacity() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_secs(2);
        let a = reading(1_000_000_000, 2, t0);
        // 1 s of CPU over 2 s on 2 vCPUs → a quarter of the capacity.
        let b = reading(2_000_000_000, 2, t1);
        let p = b.cpu_percent(&a).unwrap_or(f64::NAN);
        assert!((p - 25.0).abs() < 1e-9, "{p}");
        // The same on 1 vCPU is half.
        let p = reading(2_000_000_000, 1, t1)
            .cpu_percent(&reading(1_000_000_000, 1, t0))
            .unwrap_or(f64::NAN);
        assert!((p - 50.0).abs() < 1e-9, "{p}");
        // QEMU's own threads can exceed the vCPUs: capped.
        let busy = reading(9_000_000_000, 2, t1);
        assert_eq!(busy.cpu_percent(&a), Some(100.0));
        assert_eq!(a.cpu_percent(&a), None, "no time passed");
        assert_eq!(a.cpu_percent(&b), None, "earlier reading is later");
        assert_eq!(
            reading(10, 2, t1).cpu_percent(&a),
            None,
            "restarted: counter went backwards"
        );
        let other = DomainStats {
            uuid: uuid::Uuid::from_u128(1),
            ..b
        };
        assert_eq!(other.cpu_percent(&a), None, "another domain");
        assert_eq!(reading(2, 0, t1).cpu_percent(&reading(1, 0, t0)), None);
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
