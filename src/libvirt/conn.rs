//! [`Node`]: one libvirt connection, driven from async code without ever blocking it.
//!
//! Threading. libvirt calls block (they are RPCs to a daemon that may be slow or
//! frozen). Each `Node` owns a few worker threads (default 4) that share a job queue
//! and the connection; async callers send a closure and await its reply with a
//! deadline. A hung node therefore ties up only its own threads, never tokio's blocking
//! pool or another node's calls. A job whose caller already gave up is skipped rather
//! than started, so a queue that backed up behind a hang drains without acting on stale
//! requests. A call that was already running when its caller timed out still finishes
//! on the node (libvirt calls cannot be cancelled): e.g. a domain created after its
//! caller saw [`LibvirtError::Timeout`] keeps running, and the reconcile loop finds it
//! by its metadata.
//!
//! Opening. `virConnectOpen` has no timeout, and a frozen node can accept TCP and then
//! never answer. [`Node::open`] runs it on a throwaway thread and gives up after the
//! deadline; the thread is left to finish (or hang) on its own and drops whatever it
//! gets. At most one such abandoned attempt per URI is allowed to exist: while one
//! still hangs, further opens of that URI fail at once, so a reconnect loop against a
//! frozen node cannot pile up threads.
//!
//! Liveness. libvirt's default event loop is registered once per process and run on
//! its own thread, and every connection gets keep-alive (default every 5 s, dead after
//! 3 unanswered). When keep-alive gives up, libvirt closes the connection, which also
//! fails any call blocked on it. Any error on a connection that libvirt then reports
//! as not alive marks the `Node` dead; a dead `Node` fails every call immediately with
//! [`LibvirtError::Unreachable`], and its owner opens a new one ([`Node::reopen`]).
//!
//! Closing. Dropping the last clone of a `Node` stops its workers; the final
//! `virConnectClose` (an RPC that can hang on a frozen node) always happens on a
//! non-async thread.

use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::network::Network;

use super::LibvirtError;
use super::accel::{AccelSetting, resolve_from_capabilities};
use super::address::NodeAddress;
use super::domcaps::NodeCapabilities;
use super::xml::{
    ConsoleAuth, DomainSpec, Graphics, Hypervisor, NetworkSpec, PvceMetadata, domain_xml,
    network_xml,
};
use super::xml::{
    graphics_password_xml, parse_console, parse_graphics, parse_metadata, parse_network_mark,
    with_graphics_listen,
};

/// Tunables of one connection.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Deadline of every call after the connection is open.
    pub call_timeout: Duration,
    /// Keep-alive probe interval in seconds (libvirt's granularity).
    pub keepalive_interval_secs: u32,
    /// Unanswered probes after which the connection is closed as dead.
    pub keepalive_count: u32,
    /// Worker threads for this connection (libvirt connections are thread-safe and the
    /// remote driver multiplexes concurrent calls).
    pub workers: usize,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            keepalive_interval_secs: 5,
            keepalive_count: 3,
            workers: 4,
        }
    }
}

/// What kind of libvirt driver a connection talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Qemu,
    Xen,
    /// libvirt's `test:///` driver (tests only).
    Test,
    Other(String),
}

/// Run state of a domain, simplified to what pvce acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    /// Running (libvirt's "running" and "blocked", i.e. idle).
    Running,
    /// Paused by libvirt, an admin or an error (e.g. a KVM emulation failure).
    Paused,
    /// Shutdown in progress.
    ShuttingDown,
    Shutoff,
    Crashed,
    /// Guest-initiated suspend (pvce disables it, foreign domains may not).
    Suspended,
    /// "No state" or a state this libvirt binding does not know.
    Other,
}

impl DomainState {
    fn from_virt(s: virt::domain::DomainStateEnum) -> Self {
        use virt::domain::DomainState as S;
        use virt::enumutil::Enum;
        match s {
            Enum::Known(S::Running | S::Blocked) => Self::Running,
            Enum::Known(S::Paused) => Self::Paused,
            Enum::Known(S::Shutdown) => Self::ShuttingDown,
            Enum::Known(S::Shutoff) => Self::Shutoff,
            Enum::Known(S::Crashed) => Self::Crashed,
            Enum::Known(S::PMSuspended) => Self::Suspended,
            Enum::Known(S::NoState) | Enum::Unknown(_) => Self::Other,
        }
    }
}

/// A domain as seen on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    pub name: String,
    pub uuid: uuid::Uuid,
    pub state: DomainState,
    /// Console, once the domain runs and has a port.
    pub graphics: Option<Graphics>,
    /// pvce's metadata; `None` for domains pvce did not create.
    pub metadata: Option<PvceMetadata>,
    /// CPU time used so far (ns); two samples give the domain's CPU load.
    pub cpu_time_ns: u64,
}

/// A libvirt network as seen on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    /// The host bridge device (empty if libvirt reports none).
    pub bridge: String,
    pub active: bool,
}

/// A node's size and load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub hostname: String,
    pub cpus: u32,
    pub mem_total_mib: u64,
    pub mem_free_mib: u64,
    /// Active domains (pvce's and any others).
    pub running_domains: u32,
}

type Job = Box<dyn FnOnce(&Connect) + Send + 'static>;

/// One libvirt connection. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    address: NodeAddress,
    /// `address` as a URI, built once.
    uri: String,
    opts: NodeOptions,
    /// Shared with the workers. `Option` only so that `Drop` can hand the last
    /// reference to a plain thread (see the module docs on closing).
    conn: Option<Arc<Connect>>,
    jobs: mpsc::Sender<Job>,
    dead: Arc<AtomicBool>,
    /// The driver kind and capabilities XML, read once per connection: they
    /// do not change while it is open, and a class starting at once would
    /// otherwise ask for them once per VM (the capabilities XML is large).
    caps: tokio::sync::OnceCell<(DriverKind, String)>,
    /// What the node can run (graphics, machines, accelerators), read once
    /// per connection like `caps`.
    node_caps: tokio::sync::OnceCell<NodeCapabilities>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // If the async side holds the last reference, closing would run an RPC on a
            // runtime thread; move it off. (Should spawning fail, the closure and with
            // it the connection are dropped right here, which is the only option left.)
            let _ = std::thread::Builder::new()
                .name("libvirt-close".into())
                .spawn(move || drop(conn));
        }
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("uri", &self.inner.uri)
            .field("alive", &self.is_alive())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Process-wide state.

/// Registers libvirt's default event loop (needed for keep-alive) and runs it on its
/// own thread, once per process, before the first connection is opened.
fn ensure_event_loop() -> Result<(), LibvirtError> {
    static EVENT_LOOP: OnceLock<Result<(), String>> = OnceLock::new();
    EVENT_LOOP
        .get_or_init(|| {
            // libvirt's default error handler prints every error to stderr; errors are
            // returned to callers instead.
            virt::error::clear_error_callback();
            virt::event::event_register_default_impl().map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| {
                    loop {
                        if let Err(e) = virt::event::event_run_default_impl() {
                            tracing::warn!(error = %e, "libvirt event loop iteration failed");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                })
                .map(drop)
                .map_err(|e| format!("cannot start libvirt event thread: {e}"))
        })
        .clone()
        .map_err(LibvirtError::Unreachable)
}

/// URIs with an abandoned open attempt that has not finished yet.
fn hung_opens() -> MutexGuard<'static, HashSet<String>> {
    static HUNG: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    lock(HUNG.get_or_init(Default::default))
}

/// Lock ignoring poisoning: every critical section here leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Attempt {
    finished: bool,
    abandoned: bool,
}

// ---------------------------------------------------------------------------------------

impl Node {
    /// Connect to `address` (only a checked [`NodeAddress`]: see
    /// `libvirt::address` for why never a raw URI), giving up after
    /// `deadline` with [`LibvirtError::Unreachable`].
    pub async fn open(address: &NodeAddress, deadline: Duration) -> Result<Node, LibvirtError> {
        Self::open_with(address, deadline, NodeOptions::default()).await
    }

    /// [`Node::open`] with explicit options.
    pub async fn open_with(
        address: &NodeAddress,
        deadline: Duration,
        opts: NodeOptions,
    ) -> Result<Node, LibvirtError> {
        let uri_string = address.to_uri();
        let uri = uri_string.as_str();
        ensure_event_loop()?;
        if hung_opens().contains(uri) {
            return Err(LibvirtError::Unreachable(format!(
                "an earlier connection attempt to {uri} is still hanging"
            )));
        }
        let attempt = Arc::new(Mutex::new(Attempt::default()));
        let (tx, rx) = oneshot::channel();
        let thread_uri = uri.to_owned();
        let thread_attempt = attempt.clone();
        let (ka_interval, ka_count) = (opts.keepalive_interval_secs, opts.keepalive_count);
        std::thread::Builder::new()
            .name("libvirt-open".into())
            .spawn(move || {
                let result = open_blocking(&thread_uri, ka_interval, ka_count);
                {
                    let mut a = lock(&thread_attempt);
                    a.finished = true;
                    if a.abandoned {
                        hung_opens().remove(&thread_uri);
                    }
                }
                // If the caller is gone, the connection is dropped (closed) right here.
                let _ = tx.send(result);
            })
            .map_err(|e| LibvirtError::Unreachable(format!("cannot start a thread: {e}")))?;

        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(Ok(conn))) => Self::start(address, conn, opts),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(LibvirtError::Unreachable(format!(
                "connecting to {uri} failed: the connecting thread died"
            ))),
            Err(_) => {
                let mut a = lock(&attempt);
                if !a.finished {
                    a.abandoned = true;
                    hung_opens().insert(uri.to_owned());
                }
                Err(LibvirtError::Unreachable(format!(
                    "no answer from {uri} within {deadline:?}"
                )))
            }
        }
    }

    /// Open a fresh connection to the same URI with the same options (after this one
    /// died). The old `Node` stays dead.
    pub async fn reopen(&self, deadline: Duration) -> Result<Node, LibvirtError> {
        Self::open_with(&self.inner.address, deadline, self.inner.opts.clone()).await
    }

    fn start(
        address: &NodeAddress,
        conn: Connect,
        opts: NodeOptions,
    ) -> Result<Node, LibvirtError> {
        let conn = Arc::new(conn);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..opts.workers.max(1) {
            let rx = rx.clone();
            let conn = conn.clone();
            std::thread::Builder::new()
                .name(format!("libvirt-worker-{i}"))
                .spawn(move || worker(&rx, &conn))
                .map_err(|e| LibvirtError::Unreachable(format!("cannot start a thread: {e}")))?;
        }
        Ok(Node {
            inner: Arc::new(Inner {
                address: address.clone(),
                uri: address.to_uri(),
                opts,
                conn: Some(conn),
                jobs: tx,
                dead: Arc::new(AtomicBool::new(false)),
                caps: tokio::sync::OnceCell::new(),
                node_caps: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// The URI this node was opened with.
    pub fn uri(&self) -> &str {
        &self.inner.uri
    }

    /// False once the connection is known dead (keep-alive expired, socket closed, a
    /// call found it dead). Does not block: `virConnectIsAlive` is a local check.
    pub fn is_alive(&self) -> bool {
        if self.inner.dead.load(Ordering::Acquire) {
            return false;
        }
        let Some(conn) = &self.inner.conn else {
            return false;
        };
        if matches!(conn.is_alive(), Ok(false)) {
            self.inner.dead.store(true, Ordering::Release);
            return false;
        }
        true
    }

    /// Run `f` on one of this node's workers, with the node's call deadline.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, LibvirtError>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, LibvirtError> + Send + 'static,
    {
        self.call_within(self.inner.opts.call_timeout, f).await
    }

    /// [`Node::call`] with an explicit deadline (for calls known to be long).
    pub(super) async fn call_within<T, F>(
        &self,
        deadline: Duration,
        f: F,
    ) -> Result<T, LibvirtError>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, LibvirtError> + Send + 'static,
    {
        if !self.is_alive() {
            return Err(self.dead_error());
        }
        let (tx, rx) = oneshot::channel();
        let dead = self.inner.dead.clone();
        let job: Job = Box::new(move |conn: &Connect| {
            if tx.is_closed() {
                return; // the caller timed out while this job was queued
            }
            let result = f(conn).map_err(|e| classify(conn, &dead, e));
            let _ = tx.send(result);
        });
        self.inner
            .jobs
            .send(job)
            .map_err(|_| LibvirtError::Unreachable("libvirt worker threads are gone".into()))?;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LibvirtError::Libvirt {
                code: -1,
                message: "libvirt call panicked".into(),
            }),
            Err(_) => Err(LibvirtError::Timeout),
        }
    }

    fn dead_error(&self) -> LibvirtError {
        LibvirtError::Unreachable(format!("connection to {} is closed", self.inner.uri))
    }

    /// Which libvirt driver this node runs.
    pub async fn hypervisor_kind(&self) -> Result<DriverKind, LibvirtError> {
        let t = self.call(|c| Ok(c.driver_type()?)).await?;
        Ok(match t.to_ascii_lowercase().as_str() {
            "qemu" => DriverKind::Qemu,
            "xen" | "libxl" => DriverKind::Xen,
            "test" => DriverKind::Test,
            _ => DriverKind::Other(t),
        })
    }

    /// The [`Hypervisor`] to put in domain XML for this node: Xen on a Xen node; on a
    /// QEMU node, KVM or TCG per `setting`, resolving `auto` from the node's own
    /// capabilities (see [`super::accel`]).
    pub async fn hypervisor_for(&self, setting: AccelSetting) -> Result<Hypervisor, LibvirtError> {
        let (kind, caps) = self.host_capabilities().await?;
        if *kind == DriverKind::Xen {
            return Ok(Hypervisor::Xen);
        }
        Ok(resolve_from_capabilities(setting, caps))
    }

    /// The driver kind and host capabilities XML (cached per connection).
    async fn host_capabilities(&self) -> Result<&(DriverKind, String), LibvirtError> {
        self.inner
            .caps
            .get_or_try_init(|| async {
                let kind = self.hypervisor_kind().await?;
                let caps = self.call(|c| Ok(c.capabilities()?)).await?;
                Ok::<_, LibvirtError>((kind, caps))
            })
            .await
    }

    /// What this node can run (see [`super::domcaps`]): its domain
    /// capabilities for the domain type pvce creates here under `setting`,
    /// read once per connection.
    pub async fn capabilities(
        &self,
        setting: AccelSetting,
    ) -> Result<NodeCapabilities, LibvirtError> {
        self.inner
            .node_caps
            .get_or_try_init(|| async {
                let (kind, caps) = self.host_capabilities().await?;
                // The test driver knows no `qemu`/`kvm` type and only i686:
                // ask it for its own defaults.
                let (arch, virttype) = match kind {
                    DriverKind::Test | DriverKind::Other(_) => (None, None),
                    _ => {
                        let hv = self.hypervisor_for(setting).await?;
                        (Some("x86_64"), Some(hv.domain_type()))
                    }
                };
                let domcaps = self
                    .call(move |c| Ok(c.domain_capabilities(None, arch, None, virttype, 0)?))
                    .await?;
                NodeCapabilities::parse(caps, &domcaps)
            })
            .await
            .cloned()
    }

    /// Create and start a transient domain (see the module docs of `libvirt` for why
    /// transient). Returns its state and its console port read back from the live XML.
    pub async fn create_domain(&self, spec: &DomainSpec) -> Result<DomainInfo, LibvirtError> {
        let xml = domain_xml(spec)?;
        self.call(move |c| {
            // VALIDATE: libvirt checks the XML against its schema instead of silently
            // ignoring what it does not understand.
            let dom = c.create_domain_xml(&xml, virt::sys::VIR_DOMAIN_START_VALIDATE)?;
            domain_info(&dom)
        })
        .await
    }

    /// The domain called `name`, or `None` if there is none.
    pub async fn domain(&self, name: &str) -> Result<Option<DomainInfo>, LibvirtError> {
        let name = name.to_owned();
        self.call(move |c| {
            let Some(dom) = lookup(c, &name)? else {
                return Ok(None);
            };
            match domain_info(&dom) {
                Ok(info) => Ok(Some(info)),
                Err(LibvirtError::NotFound) => Ok(None), // vanished meanwhile
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// All domains on the node, pvce's or not.
    pub async fn list_domains(&self) -> Result<Vec<DomainInfo>, LibvirtError> {
        self.call(|c| {
            let mut out = Vec::new();
            for dom in c.list_all_domains(0)? {
                match domain_info(&dom) {
                    Ok(info) => out.push(info),
                    Err(LibvirtError::NotFound) => {} // stopped between list and lookup
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    /// Domains carrying pvce's metadata.
    pub async fn list_pvce_domains(&self) -> Result<Vec<DomainInfo>, LibvirtError> {
        let mut all = self.list_domains().await?;
        all.retain(|d| d.metadata.is_some());
        Ok(all)
    }

    /// The running domain's console and the password it currently requires,
    /// from its secure XML (the password is in it: never log the XML).
    /// `None`: no such domain, or it has no console port yet.
    pub async fn console(
        &self,
        name: &str,
    ) -> Result<Option<(Graphics, ConsoleAuth)>, LibvirtError> {
        let name = name.to_owned();
        self.call(move |c| {
            let Some(dom) = lookup(c, &name)? else {
                return Ok(None);
            };
            match dom.xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE) {
                Ok(xml) => Ok(parse_console(&xml)),
                Err(e) => match LibvirtError::from(e) {
                    LibvirtError::NotFound => Ok(None),
                    e => Err(e),
                },
            }
        })
        .await
    }

    /// Sets the live console password of the running domain `name`, valid
    /// until `valid_to` (or for good). Clients already connected stay
    /// connected. Returns the console it was set on; `Ok(None)`: no such
    /// running domain, or it has no console.
    pub async fn set_console_password(
        &self,
        name: &str,
        password: &str,
        valid_to: Option<time::OffsetDateTime>,
    ) -> Result<Option<Graphics>, LibvirtError> {
        let name = name.to_owned();
        let password = password.to_owned();
        self.call(move |c| {
            let Some(dom) = lookup(c, &name)? else {
                return Ok(None);
            };
            let xml = match dom.xml_desc(0) {
                Ok(xml) => xml,
                Err(e) => {
                    return match LibvirtError::from(e) {
                        LibvirtError::NotFound => Ok(None),
                        e => Err(e),
                    };
                }
            };
            let Some(live) = parse_graphics(&xml) else {
                return Ok(None);
            };
            let update = graphics_password_xml(&live, &password, valid_to)?;
            dom.update_device_flags(&update, virt::sys::VIR_DOMAIN_AFFECT_LIVE)?;
            Ok(Some(live))
        })
        .await
    }

    /// Ask the guest to shut down (ACPI). `Ok(false)`: no such running domain.
    pub async fn shutdown(&self, name: &str) -> Result<bool, LibvirtError> {
        self.on_running(name, |d| d.shutdown()).await
    }

    /// Power the domain off at once. `Ok(false)`: no such running domain, i.e. it was
    /// already stopped — for a transient domain, stopping also removes it.
    /// Only a domain installation `mark` created (or an older pvce's, whose
    /// metadata has no installation) is touched: anything else with that name
    /// is [`LibvirtError::NotOurs`].
    pub async fn destroy(&self, name: &str, mark: &str) -> Result<bool, LibvirtError> {
        let (name, mark) = (name.to_owned(), mark.to_owned());
        self.call(move |c| {
            let Some(dom) = lookup_ours(c, &name, &mark)? else {
                return Ok(false);
            };
            match dom.is_active().map_err(LibvirtError::from) {
                Ok(true) => {}
                Ok(false) | Err(LibvirtError::NotFound) => return Ok(false),
                Err(e) => return Err(e),
            }
            match dom.destroy().map_err(LibvirtError::from) {
                Ok(()) => Ok(true),
                Err(LibvirtError::NotFound) => Ok(false),
                Err(e) if e.is_operation_invalid() && !dom.is_active().unwrap_or(true) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Removes the definition of the *inactive* domain `name` if installation
    /// `mark` created it (pvce's domains are transient; a defined one is left
    /// by hand or by a foreign tool copying ours: `pvce fsck --repair`).
    /// `Ok(false)`: no such domain, or it runs (never undefined while running).
    pub async fn undefine_inactive(&self, name: &str, mark: &str) -> Result<bool, LibvirtError> {
        let (name, mark) = (name.to_owned(), mark.to_owned());
        self.call(move |c| {
            let Some(dom) = lookup_ours(c, &name, &mark)? else {
                return Ok(false);
            };
            if dom.is_active()? || !dom.is_persistent()? {
                return Ok(false);
            }
            match dom.undefine().map_err(LibvirtError::from) {
                Ok(()) => Ok(true),
                Err(LibvirtError::NotFound) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Ask the guest to reboot. `Ok(false)`: no such running domain.
    pub async fn reboot(&self, name: &str) -> Result<bool, LibvirtError> {
        self.on_running(name, |d| d.reboot(virt::sys::VIR_DOMAIN_REBOOT_DEFAULT))
            .await
    }

    /// A picture of the running domain `name`'s first screen, as the
    /// hypervisor makes it (`virDomainScreenshot`): its MIME type (QEMU:
    /// `image/x-portable-pixmap`) and bytes. `Ok(None)`: no such running
    /// domain. More than `max_bytes` is refused ([`LibvirtError::TooLarge`])
    /// rather than held in memory.
    pub async fn screenshot(
        &self,
        name: &str,
        max_bytes: usize,
    ) -> Result<Option<(String, Vec<u8>)>, LibvirtError> {
        let name = name.to_owned();
        self.call(move |c| {
            let Some(dom) = lookup(c, &name)? else {
                return Ok(None);
            };
            let stream = virt::stream::Stream::new(c, 0)?;
            let mime = match dom.screenshot(&stream, 0, 0).map_err(LibvirtError::from) {
                Ok(mime) => mime,
                Err(e) => {
                    let _ = stream.abort();
                    return match e {
                        LibvirtError::NotFound => Ok(None),
                        e if e.is_operation_invalid() => Ok(None), // not running
                        e => Err(e),
                    };
                }
            };
            let mut out = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stream.recv(&mut buf) {
                    Ok(n) => usize::try_from(n).unwrap_or(0),
                    Err(e) => {
                        let _ = stream.abort();
                        return Err(e.into());
                    }
                };
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
                if out.len() > max_bytes {
                    let _ = stream.abort();
                    return Err(LibvirtError::TooLarge(max_bytes));
                }
            }
            stream.finish()?;
            Ok(Some((mime, out)))
        })
        .await
    }

    /// Apply `op` to the running domain `name`; `Ok(false)` if it is absent or not
    /// running, before or during the operation.
    async fn on_running<F>(&self, name: &str, op: F) -> Result<bool, LibvirtError>
    where
        F: FnOnce(&Domain) -> Result<(), virt::error::Error> + Send + 'static,
    {
        let name = name.to_owned();
        self.call(move |c| {
            let Some(dom) = lookup(c, &name)? else {
                return Ok(false);
            };
            match dom.is_active().map_err(LibvirtError::from) {
                Ok(true) => {}
                Ok(false) | Err(LibvirtError::NotFound) => return Ok(false),
                Err(e) => return Err(e),
            }
            match op(&dom).map_err(LibvirtError::from) {
                Ok(()) => Ok(true),
                Err(LibvirtError::NotFound) => Ok(false),
                // "domain is not running": it stopped between the check and the call.
                Err(e) if e.is_operation_invalid() && !dom.is_active().unwrap_or(true) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Cumulative host CPU times and current memory (see [`super::stats`]).
    pub async fn host_stats(&self) -> Result<super::HostStats, LibvirtError> {
        self.call(super::stats::host_stats).await
    }

    /// CPU time and memory of every running domain whose name starts with
    /// `prefix` (see [`super::stats`]), in one job on the node's workers.
    pub async fn domain_stats(
        &self,
        prefix: &str,
    ) -> Result<Vec<super::DomainStats>, LibvirtError> {
        let prefix = prefix.to_owned();
        self.call(move |c| super::stats::domain_stats(c, &prefix))
            .await
    }

    /// Create and start a *transient* isolated network (gone when destroyed or
    /// when the node reboots, like pvce's domains). Idempotent: an active
    /// network of that name is returned as it is, so the caller must own the
    /// name; one marked by another installation is [`LibvirtError::NotOurs`]
    /// (an unmarked one is an older pvce's, adopted). libvirt refuses a bridge
    /// name another network already uses.
    pub async fn ensure_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo, LibvirtError> {
        let xml = network_xml(spec)?;
        let name = spec.name.clone();
        let mark = spec.installation.clone();
        self.call(move |c| {
            if let Some(net) = lookup_network(c, &name)? {
                if parse_network_mark(&net.xml_desc(0)?).is_some_and(|m| m != mark) {
                    return Err(LibvirtError::NotOurs(name));
                }
                if net.is_active()? {
                    return network_info(&net);
                }
                // Defined but inactive (someone defined it persistently): start it.
                net.create()?;
                return network_info(&net);
            }
            match c.create_network_xml(&xml) {
                Ok(net) => network_info(&net),
                Err(e) => {
                    // Lost a race with another creator of the same name: fine.
                    if let Some(net) = lookup_network(c, &name)?
                        && net.is_active()?
                    {
                        return network_info(&net);
                    }
                    Err(e.into())
                }
            }
        })
        .await
    }

    /// The network called `name`, or `None`.
    pub async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, LibvirtError> {
        let name = name.to_owned();
        self.call(move |c| match lookup_network(c, &name)? {
            Some(net) => match network_info(&net) {
                Ok(i) => Ok(Some(i)),
                Err(LibvirtError::NotFound) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        })
        .await
    }

    /// Names of every network on the node (active or not).
    pub async fn list_network_names(&self) -> Result<Vec<String>, LibvirtError> {
        self.call(|c| {
            let mut out = Vec::new();
            for net in c.list_all_networks(0)? {
                match net.name() {
                    Ok(n) => out.push(n),
                    Err(e) => match LibvirtError::from(e) {
                        LibvirtError::NotFound => {}
                        other => return Err(other),
                    },
                }
            }
            Ok(out)
        })
        .await
    }

    /// Stops (and, being transient, removes) the network `name`; a persistent
    /// one is also undefined. `Ok(false)`: there was no such network. A
    /// network marked by another installation than `mark` is never removed
    /// ([`LibvirtError::NotOurs`]); an unmarked one is an older pvce's (the
    /// caller removes only names it recorded).
    pub async fn remove_network(&self, name: &str, mark: &str) -> Result<bool, LibvirtError> {
        let (name, mark) = (name.to_owned(), mark.to_owned());
        self.call(move |c| {
            let Some(net) = lookup_network(c, &name)? else {
                return Ok(false);
            };
            if parse_network_mark(&net.xml_desc(0)?).is_some_and(|m| m != mark) {
                return Err(LibvirtError::NotOurs(name));
            }
            let gone = |r: Result<(), virt::error::Error>| match r.map_err(LibvirtError::from) {
                Ok(()) | Err(LibvirtError::NotFound) => Ok(()),
                Err(e) if e.is_operation_invalid() => Ok(()), // not active
                Err(e) => Err(e),
            };
            if net.is_active().unwrap_or(false) {
                gone(net.destroy())?;
            }
            if net.is_persistent().unwrap_or(false) {
                gone(net.undefine())?;
            }
            Ok(true)
        })
        .await
    }

    /// Live-migrates the running domain `name` to `dest`, storage shared (only
    /// memory and device state move), its console listening on
    /// `graphics_listen` there. The client-driven `virDomainMigrate2` is used:
    /// pvce holds both connections, so the nodes need no credentials for each
    /// other; the destination XML is the domain's migratable XML with only the
    /// console address changed. Returns the domain as it runs on `dest`.
    ///
    /// The domain's backup checkpoints are deleted first (see
    /// [`super::backup::drop_all_checkpoints`]).
    ///
    /// Transient stays transient (no `PERSIST_DEST`), and no `UNSAFE` flag:
    /// libvirt refuses a migration it cannot prove safe (e.g. storage it does
    /// not consider shared, or a disk cache other than `none` on it).
    pub async fn migrate_to(
        &self,
        name: &str,
        dest: &Node,
        graphics_listen: std::net::IpAddr,
        deadline: Duration,
    ) -> Result<DomainInfo, LibvirtError> {
        if !dest.is_alive() {
            return Err(dest.dead_error());
        }
        let dconn = dest.inner.conn.clone().ok_or_else(|| dest.dead_error())?;
        let name = name.to_owned();
        self.call_within(deadline, move |c| {
            let dom = lookup(c, &name)?.ok_or(LibvirtError::NotFound)?;
            // SECURE: the console password must move with the domain, or the
            // destination's console would listen without one.
            let xml = dom.xml_desc(
                virt::sys::VIR_DOMAIN_XML_MIGRATABLE | virt::sys::VIR_DOMAIN_XML_SECURE,
            )?;
            let dxml = with_graphics_listen(&xml, graphics_listen)?;
            // A backup's checkpoints would not move, but their bitmaps would
            // (stored in the shared layer, loaded by the destination's QEMU).
            super::backup::drop_all_checkpoints(&dom);
            let moved = dom.migrate2(
                &dconn,
                Some(&dxml),
                virt::sys::VIR_MIGRATE_LIVE,
                None,
                None,
                0,
            )?;
            domain_info(&moved)
        })
        .await
    }

    /// The node's libvirt and hypervisor (QEMU) versions, as `major.minor.micro`.
    pub async fn versions(&self) -> Result<(String, String), LibvirtError> {
        fn dotted(v: u32) -> String {
            format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
        }
        self.call(|c| Ok((dotted(c.lib_version()?), dotted(c.hyp_version()?))))
            .await
    }

    /// The node's size and current memory/domain load.
    pub async fn node_info(&self) -> Result<NodeInfo, LibvirtError> {
        self.call(|c| {
            let ni = c.node_info()?;
            // Total and free from the same source: virNodeGetInfo's memory can
            // differ from the host's MemTotal (seen here: 18 GiB against 24 GiB,
            // on a machine whose memory is not all in NUMA cells), and mixing
            // the two made a busy host look empty to placement.
            let m = super::stats::memory_stats(c)?;
            Ok(NodeInfo {
                hostname: c.hostname()?,
                cpus: ni.cpus,
                mem_total_mib: m.total_kib / 1024,
                // Free + buffers + cache, not MemFree: page cache is memory a guest can get.
                mem_free_mib: m.total_kib.saturating_sub(m.used_kib()) / 1024,
                running_domains: c.num_of_domains()?,
            })
        })
        .await
    }
}

fn open_blocking(uri: &str, ka_interval: u32, ka_count: u32) -> Result<Connect, LibvirtError> {
    let conn = Connect::open(Some(uri)).map_err(|e| {
        LibvirtError::Unreachable(format!("cannot connect to {uri}: {}", e.message()))
    })?;
    // Drivers that run in-process (test://) have no keep-alive; that is fine.
    let interval = i32::try_from(ka_interval).unwrap_or(i32::MAX);
    if let Err(e) = conn.set_keep_alive(interval, ka_count) {
        tracing::debug!(uri, error = %e, "keep-alive not enabled");
    }
    Ok(conn)
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>, conn: &Connect) {
    loop {
        // Hold the lock only while waiting, so other workers run jobs meanwhile.
        let job = match lock(rx).recv() {
            Ok(job) => job,
            Err(_) => return, // every Node clone is gone
        };
        // A panicking job (a bug, or a panic in the virt crate's Drop impls) must not
        // take the worker down with it; the caller sees its reply channel dropped.
        let _ = catch_unwind(AssertUnwindSafe(|| job(conn)));
    }
}

/// Turn an error from a call into what the caller should see, deciding with the
/// connection itself whether it is still alive.
fn classify(conn: &Connect, dead: &AtomicBool, e: LibvirtError) -> LibvirtError {
    match e {
        LibvirtError::Unreachable(_) => {
            dead.store(true, Ordering::Release);
            e
        }
        LibvirtError::Libvirt { message, code } => {
            if matches!(conn.is_alive(), Ok(false)) {
                dead.store(true, Ordering::Release);
                LibvirtError::Unreachable(message)
            } else {
                LibvirtError::Libvirt { code, message }
            }
        }
        other => other,
    }
}

pub(super) fn lookup(c: &Connect, name: &str) -> Result<Option<Domain>, LibvirtError> {
    match c.lookup_domain_by_name(name).map_err(LibvirtError::from) {
        Ok(d) => Ok(Some(d)),
        Err(LibvirtError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

fn lookup_network(c: &Connect, name: &str) -> Result<Option<Network>, LibvirtError> {
    match c.lookup_network_by_name(name).map_err(LibvirtError::from) {
        Ok(n) => Ok(Some(n)),
        Err(LibvirtError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The domain `name` if installation `mark` may act on it: it carries pvce's
/// metadata with that installation, or pvce's metadata without one (an older
/// pvce's). `None`: no such domain; anything else of that name is
/// [`LibvirtError::NotOurs`].
fn lookup_ours(c: &Connect, name: &str, mark: &str) -> Result<Option<Domain>, LibvirtError> {
    let Some(dom) = lookup(c, name)? else {
        return Ok(None);
    };
    let ours = match parse_metadata(&dom.xml_desc(0)?) {
        Some(m) => crate::installation::marked_ours(m.installation.as_deref(), mark, true),
        None => false,
    };
    if !ours {
        return Err(LibvirtError::NotOurs(name.to_owned()));
    }
    Ok(Some(dom))
}

fn network_info(net: &Network) -> Result<NetworkInfo, LibvirtError> {
    Ok(NetworkInfo {
        name: net.name()?,
        bridge: net.bridge_name().unwrap_or_default(),
        active: net.is_active()?,
    })
}

fn domain_info(dom: &Domain) -> Result<DomainInfo, LibvirtError> {
    let info = dom.info()?;
    let xml = dom.xml_desc(0)?;
    Ok(DomainInfo {
        name: dom.name()?,
        uuid: dom.uuid()?,
        state: DomainState::from_virt(info.state),
        graphics: parse_graphics(&xml),
        metadata: parse_metadata(&xml),
        cpu_time_ns: info.cpu_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libvirt::xml::{DiskCache, GraphicsKind};
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    const TEST_URI: &str = "test:///default";
    /// The installation the tests' objects are marked with.
    const MARK: &str = "test-installation-a";

    fn addr(uri: &str) -> NodeAddress {
        NodeAddress::parse(uri, crate::libvirt::AddressPolicy::TESTING).expect("address")
    }

    async fn test_node() -> Node {
        Node::open(&addr(TEST_URI), Duration::from_secs(10))
            .await
            .expect("open test:///default")
    }

    fn spec(tag: &str) -> DomainSpec {
        let uuid = uuid::Uuid::new_v4();
        DomainSpec {
            name: format!("test-{tag}-{uuid}"),
            uuid,
            title: format!("bob / course / {tag}"),
            vcpus: 1,
            memory_mib: 64,
            hypervisor: Hypervisor::Kvm,
            disk_path: "/nonexistent/test.qcow2".into(),
            disk_cache: DiskCache::Writeback,
            graphics: GraphicsKind::Vnc,
            graphics_listen: "127.0.0.1".into(),
            graphics_password: None,
            serial_log: None,
            smbios_serial: tag.into(),
            metadata: PvceMetadata {
                id: uuid.to_string(),
                owner: "bob".into(),
                course: Some("c1".into()),
                template: None,
                installation: Some(MARK.into()),
            },
            network: None,
            network_mtu: None,
            clipboard_agent: false,
        }
    }

    #[tokio::test]
    async fn isolated_networks_are_idempotent_and_removable() {
        let node = test_node().await;
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let spec = NetworkSpec {
            name: format!("test-lab-{tag}"),
            bridge: format!("tpl{tag}"),
            installation: MARK.into(),
            vxlan: None,
        };
        let a = node.ensure_network(&spec).await.expect("create");
        assert!(a.active);
        assert_eq!(a.bridge, spec.bridge);
        // Twice is the same network.
        assert_eq!(node.ensure_network(&spec).await.expect("again"), a);
        assert!(
            node.list_network_names()
                .await
                .expect("list")
                .contains(&spec.name)
        );
        assert_eq!(node.network(&spec.name).await.expect("get"), Some(a));
        // Another installation neither reuses nor removes it.
        let theirs = NetworkSpec {
            installation: "test-installation-b".into(),
            ..spec.clone()
        };
        assert!(matches!(
            node.ensure_network(&theirs).await,
            Err(LibvirtError::NotOurs(_))
        ));
        assert!(matches!(
            node.remove_network(&spec.name, "test-installation-b").await,
            Err(LibvirtError::NotOurs(_))
        ));
        assert!(node.network(&spec.name).await.expect("get").is_some());
        assert!(node.remove_network(&spec.name, MARK).await.expect("remove"));
        assert!(
            !node
                .remove_network(&spec.name, MARK)
                .await
                .expect("remove again")
        );
        assert_eq!(node.network(&spec.name).await.expect("get"), None);
    }

    #[tokio::test]
    async fn node_basics() {
        let node = test_node().await;
        assert_eq!(node.uri(), TEST_URI);
        assert!(node.is_alive());
        assert_eq!(
            node.hypervisor_kind().await.expect("kind"),
            DriverKind::Test
        );
        let ni = node.node_info().await.expect("node info");
        assert!(ni.cpus > 0 && ni.mem_total_mib > 0, "{ni:?}");
        assert!(!ni.hostname.is_empty());
        // The test driver offers no KVM, so auto resolves to TCG; forcing works.
        assert_eq!(
            node.hypervisor_for(AccelSetting::Auto).await.expect("hv"),
            Hypervisor::Tcg
        );
        assert_eq!(
            node.hypervisor_for(AccelSetting::Kvm).await.expect("hv"),
            Hypervisor::Kvm
        );
        assert!(format!("{node:?}").contains("test:///default"));
        // Its capabilities are read (and cached) like a real node's.
        let caps = node.capabilities(AccelSetting::Auto).await.expect("caps");
        assert_eq!(caps.accelerators, ["test"]);
        assert_eq!(
            node.capabilities(AccelSetting::Auto).await.expect("again"),
            caps
        );
    }

    #[tokio::test]
    async fn domain_lifecycle() {
        let node = test_node().await;
        let s = spec("life");
        let info = node.create_domain(&s).await.expect("create");
        assert_eq!(info.name, s.name);
        assert_eq!(info.uuid, s.uuid);
        assert_eq!(info.state, DomainState::Running);
        assert_eq!(info.metadata.as_ref(), Some(&s.metadata));

        let got = node.domain(&s.name).await.expect("lookup").expect("exists");
        assert_eq!(got.uuid, s.uuid);

        // Ours is listed as pvce's; the test driver's built-in "test" domain is not.
        let all = node.list_domains().await.expect("list");
        assert!(all.iter().any(|d| d.name == "test" && d.metadata.is_none()));
        let ours = node.list_pvce_domains().await.expect("list pvce");
        assert!(ours.iter().any(|d| d.name == s.name));
        assert!(ours.iter().all(|d| d.metadata.is_some()));

        // Creating the same name again is refused by libvirt, as a Libvirt error.
        match node.create_domain(&s).await {
            Err(LibvirtError::Libvirt { .. }) => {}
            other => panic!("duplicate create: {other:?}"),
        }

        assert!(node.reboot(&s.name).await.expect("reboot"));
        // Another installation cannot destroy it, nor anyone the driver's
        // own domain (no pvce metadata).
        assert!(matches!(
            node.destroy(&s.name, "test-installation-b").await,
            Err(LibvirtError::NotOurs(_))
        ));
        assert!(matches!(
            node.destroy("test", MARK).await,
            Err(LibvirtError::NotOurs(_))
        ));
        assert!(node.destroy(&s.name, MARK).await.expect("destroy"));
        // Transient: gone once stopped, and stopping again reports "already stopped".
        assert_eq!(node.domain(&s.name).await.expect("lookup"), None);
        assert!(!node.destroy(&s.name, MARK).await.expect("destroy again"));
        assert!(!node.shutdown(&s.name).await.expect("shutdown absent"));
        assert!(!node.reboot(&s.name).await.expect("reboot absent"));
    }

    #[tokio::test]
    async fn domain_stats_cover_running_domains_with_the_prefix() {
        let node = test_node().await;
        let mut s = spec("dstats");
        s.vcpus = 2;
        node.create_domain(&s).await.expect("create");
        // Only our prefix: not the driver's built-in "test" domain, nor other
        // tests' domains on the shared test:///default.
        let got = node.domain_stats("test-dstats-").await.expect("stats");
        assert_eq!(got.len(), 1, "{got:?}");
        let d = got[0];
        assert_eq!(d.uuid, s.uuid);
        assert_eq!(d.vcpus, 2);
        assert_eq!(d.memory_kib, 64 * 1024);
        assert!(d.cpu_time_ns > 0, "{d:?}");
        // A second reading gives a CPU percentage within bounds.
        let later = node.domain_stats("test-dstats-").await.expect("stats");
        if let Some(p) = later[0].cpu_percent(&d) {
            assert!((0.0..=100.0).contains(&p), "{p}");
        }
        // The driver's built-in "test" domain matches "test"; it is the one
        // the driver reports memory statistics for (RSS 1 GiB).
        let all = node.domain_stats("test").await.expect("stats");
        assert!(all.iter().any(|x| x.uuid == s.uuid));
        assert!(
            all.iter().any(|x| x.rss_kib == Some(1024 * 1024)),
            "{all:?}"
        );
        assert!(node.destroy(&s.name, MARK).await.expect("destroy"));
        assert!(
            node.domain_stats("test-dstats-")
                .await
                .expect("stats")
                .is_empty(),
            "a stopped domain has no figures"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_transient_domain() {
        let node = test_node().await;
        let s = spec("shut");
        node.create_domain(&s).await.expect("create");
        assert!(node.shutdown(&s.name).await.expect("shutdown"));
        // The test driver shuts down at once.
        assert_eq!(node.domain(&s.name).await.expect("lookup"), None);
    }

    #[tokio::test]
    async fn bad_spec_fails_before_libvirt() {
        let node = test_node().await;
        let mut s = spec("bad");
        s.disk_path = "relative.qcow2".into();
        assert!(matches!(
            node.create_domain(&s).await,
            Err(LibvirtError::InvalidSpec(_))
        ));
    }

    #[tokio::test]
    async fn slow_call_times_out_and_queued_stale_jobs_are_skipped() {
        let opts = NodeOptions {
            call_timeout: Duration::from_millis(200),
            workers: 1,
            ..NodeOptions::default()
        };
        let node = Node::open_with(&addr(TEST_URI), Duration::from_secs(10), opts)
            .await
            .expect("open");
        let ran = Arc::new(AtomicUsize::new(0));

        // Occupies the only worker until the test lets it go, so both callers
        // below can only get their answer from their own deadline.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (freed, worker_free) = tokio::sync::oneshot::channel::<()>();
        let slow = node.call(move |_| {
            let _ = held.recv();
            let _ = freed.send(());
            Ok(())
        });
        // Queued behind it; its caller gives up too, so it must never run.
        let ran2 = ran.clone();
        let queued = node.call(move |_| {
            ran2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let (a, b) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(slow, queued)
        })
        .await
        .expect("both callers give up at their deadline, not when the worker is free");
        assert!(matches!(a, Err(LibvirtError::Timeout)), "{a:?}");
        assert!(matches!(b, Err(LibvirtError::Timeout)), "{b:?}");

        // Once the worker is free again the node works, and the stale job was skipped.
        release.send(()).expect("the slow job is waiting");
        worker_free.await.expect("the slow job ends");
        node.node_info().await.expect("works again");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        // A timeout is not a dead connection.
        assert!(node.is_alive());
    }

    #[tokio::test]
    async fn panicking_job_does_not_kill_the_node() {
        let opts = NodeOptions {
            workers: 1,
            ..NodeOptions::default()
        };
        let node = Node::open_with(&addr(TEST_URI), Duration::from_secs(10), opts)
            .await
            .expect("open");
        let r: Result<(), _> = node.call(|_| panic!("boom")).await;
        assert!(matches!(r, Err(LibvirtError::Libvirt { code: -1, .. })));
        node.node_info().await.expect("worker survived");
    }

    #[tokio::test]
    async fn open_failure_is_unreachable() {
        // Nothing listens on port 1 of loopback: refused at once.
        let r = Node::open(
            &addr("qemu+tcp://127.0.0.1:1/system"),
            Duration::from_secs(10),
        )
        .await;
        assert!(matches!(r, Err(LibvirtError::Unreachable(_))), "{r:?}");
    }

    #[tokio::test]
    async fn open_gives_up_on_a_node_that_never_answers() {
        // Accepts TCP connections and never says a word, like a frozen node.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let held = Arc::new(Mutex::new(Vec::new()));
        let held2 = held.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                lock(&held2).push(s);
            }
        });
        let uri = format!("qemu+tcp://127.0.0.1:{port}/system");

        let started = Instant::now();
        let r = Node::open(&addr(&uri), Duration::from_secs(2)).await;
        let took = started.elapsed();
        assert!(
            matches!(
                r,
                Err(LibvirtError::Unreachable(_)) | Err(LibvirtError::Timeout)
            ),
            "{r:?}"
        );
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
            "took {took:?}"
        );

        // While that attempt hangs, another one fails at once instead of piling up.
        let started = Instant::now();
        let r = Node::open(&addr(&uri), Duration::from_secs(2)).await;
        assert!(
            matches!(&r, Err(LibvirtError::Unreachable(m)) if m.contains("still hanging")),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));

        // Once the peer hangs up, the abandoned attempt ends and the URI is free again.
        lock(&held).clear();
        let mut freed = false;
        for _ in 0..50 {
            if !hung_opens().contains(&uri) {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(freed, "abandoned attempt never finished");
    }
}
