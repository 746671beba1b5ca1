//! The only door to libvirt: every hypervisor call in pvce goes through this module,
//! and it is the only module that imports the `virt` crate.
//!
//! Pieces:
//! - [`xml`]: typed domain XML (and the isolated networks of lab courses). A domain
//!   definition is built from typed structs and
//!   serialised with serde + quick-xml, never by formatting strings, so no value a user
//!   influenced (a VM title, a password) can inject XML. Also the readers for what we
//!   need back from a live domain's XML (graphics port, console password, our
//!   metadata), and the `<graphics>` update that sets a console password.
//! - [`accel`]: which accelerator a QEMU node should use (`auto|kvm|tcg`).
//! - [`address`]: [`NodeAddress`], the typed address of a node; a connection is only
//!   ever opened from one, never from a raw URI (a URI can name programs to run).
//! - [`domcaps`]: what a node can run (graphics types, machines, accelerators).
//! - [`conn`]: [`Node`], one libvirt connection with its own worker threads,
//!   timeouts and keep-alive.
//! - [`storage`]: storage pools and volumes (the per-node template store: upload,
//!   read back for a checksum; a probe volume's file time tells the node's clock).
//! - [`serial`]: a running domain's serial console as a byte stream
//!   (`virDomainOpenConsole`), pumped by its own thread, for the rescue console.
//! - [`backup`]: a consistent copy of a running domain's disk through libvirt's
//!   backup API (`virDomainBackupBegin`, push mode), whole or only what changed
//!   since a checkpoint (a QEMU dirty bitmap), for nightly backups.
//! - [`stats`]: host CPU and memory statistics (with [`backup`] the crate's only
//!   `unsafe`: FFI calls `virt` does not wrap) and each running pvce domain's CPU time and memory.
//!
//! Invariants the rest of the server can rely on:
//! - No call blocks the async runtime: libvirt calls run on the node's own worker
//!   threads and every call has a deadline ([`LibvirtError::Timeout`]); opening a
//!   connection has a deadline too, because `virConnectOpen` has none.
//! - A node that stops answering is noticed (libvirt keep-alive) and its [`Node`] is
//!   marked dead; from then on every call fails fast with
//!   [`LibvirtError::Unreachable`] until the owner opens a new connection.
//! - pvce only creates *transient* domains (`virDomainCreateXML`). The database is the
//!   source of intent and the VM's disk is its state, so nothing needs to stay defined
//!   on a node: when a VM stops, or a node reboots or dies, no stale definition is left
//!   behind that could be started twice on two nodes or drift from the database. A VM
//!   can then start on any node that reaches its disk. Domains pvce created carry a
//!   `<pvce:vm>` metadata element, so the reconcile loop can tell them apart from
//!   anything else running on a node.

pub mod accel;
pub mod address;
pub mod backup;
pub mod conn;
pub mod domcaps;
pub mod serial;
pub mod stats;
pub mod storage;
pub mod xml;

pub use accel::{AccelSetting, resolve_qemu_hypervisor};
pub use address::{AddressError, AddressPolicy, NodeAddress, Transport};
pub use conn::{DomainInfo, DomainState, DriverKind, NetworkInfo, Node, NodeInfo, NodeOptions};
pub use domcaps::NodeCapabilities;
pub use serial::SerialConsole;
pub use stats::{CpuTimes, DomainStats, HostStats, MemoryStats};
pub use storage::{CLOCK_PROBE_PREFIX, ClockProbe, FileStamp, PoolClaim, PoolInfo};
pub use xml::{
    ConsoleAuth, DiskCache, DomainSpec, Graphics, GraphicsKind, Hypervisor, MAX_BRIDGE_NAME,
    MAX_VNI, NetworkSpec, PVCE_NET_XMLNS, PVCE_XMLNS, PvceMetadata, VXLAN_MTU, Vxlan, domain_xml,
    network_xml, new_console_password, parse_console, parse_graphics, parse_metadata,
    parse_network_mark, with_graphics_listen,
};

/// Everything that can go wrong talking to libvirt, sorted by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    /// Connecting failed or timed out, or the connection died (keep-alive expired,
    /// socket closed). The node is unavailable: HTTP 503, and reconnect later.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// A call did not finish within its deadline. The node may be overloaded or hung;
    /// the call may still complete on the node later (HTTP 503).
    #[error("libvirt call timed out")]
    Timeout,
    /// No such domain (or, for network calls, no such network).
    #[error("no such domain or network")]
    NotFound,
    /// Any other libvirt error; `code` is libvirt's `virErrorNumber`.
    #[error("libvirt error {code}: {message}")]
    Libvirt { code: i32, message: String },
    /// Domain XML could not be built or read back.
    #[error("domain XML: {0}")]
    Xml(String),
    /// A [`DomainSpec`] field is not acceptable (e.g. a relative disk path, a title with
    /// a newline). This is a bug in the caller, never something a user typed directly.
    #[error("invalid domain spec: {0}")]
    InvalidSpec(String),
    /// The object of that name was not created by this installation (another
    /// pvce's, or not pvce's at all): pvce never changes it (src/installation).
    #[error("libvirt object {0} belongs to another installation; pvce leaves it alone")]
    NotOurs(String),
    /// A long-running hypervisor job (a backup's disk copy) failed, was
    /// aborted, or its domain stopped under it.
    #[error("hypervisor job failed: {0}")]
    JobFailed(String),
    /// What the node sent back (a screenshot) is larger than the caller's limit.
    #[error("the node's answer is larger than {0} bytes")]
    TooLarge(usize),
}

impl LibvirtError {
    /// True when the failure is about the node rather than the request (→ HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Timeout)
    }

    /// The hypervisor or driver cannot do this at all (e.g. a backup job on
    /// Xen): `VIR_ERR_NO_SUPPORT` or `VIR_ERR_OPERATION_UNSUPPORTED`.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::Libvirt { code, .. }
            if *code == virt::sys::VIR_ERR_NO_SUPPORT as i32
                || *code == virt::sys::VIR_ERR_OPERATION_UNSUPPORTED as i32)
    }

    /// libvirt's `VIR_ERR_CHECKPOINT_INCONSISTENT`: a checkpoint's bitmap is
    /// missing from (or broken in) the disk image.
    pub fn is_checkpoint_inconsistent(&self) -> bool {
        matches!(self, Self::Libvirt { code, .. } if *code == virt::sys::VIR_ERR_CHECKPOINT_INCONSISTENT as i32)
    }

    /// libvirt's `VIR_ERR_OPERATION_INVALID`: the domain is not in a state that allows
    /// the operation (e.g. shutting down a paused domain) → HTTP 409.
    pub fn is_operation_invalid(&self) -> bool {
        matches!(self, Self::Libvirt { code, .. } if *code == virt::sys::VIR_ERR_OPERATION_INVALID as i32)
    }
}

impl From<virt::error::Error> for LibvirtError {
    fn from(e: virt::error::Error) -> Self {
        use virt::enumutil::Enum;
        use virt::error::ErrorNumber;
        if matches!(
            e.code(),
            Enum::Known(ErrorNumber::NoDomain | ErrorNumber::NoNetwork)
        ) {
            return Self::NotFound;
        }
        // Whether any other error means "the connection died" is decided by the caller
        // holding the connection (conn.rs asks `virConnectIsAlive`), which is more
        // reliable than guessing from codes: a dead socket surfaces as many codes.
        if matches!(
            e.code(),
            Enum::Known(ErrorNumber::NoConnect | ErrorNumber::InvalidConn)
        ) {
            return Self::Unreachable(e.message().to_owned());
        }
        Self::Libvirt {
            code: e.code().to_raw() as i32,
            message: e.message().to_owned(),
        }
    }
}
