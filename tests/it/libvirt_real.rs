//! The libvirt module against the real libvirtd of this machine (`qemu:///system`).
//!
//! These tests need a running libvirtd (where there is no systemd: `virtlogd -d;
//! libvirtd -d`) and fail, rather than skip, without one. Guests run under TCG here
//! (see DESIGN.md: this machine's /dev/kvm is nested PVM). Every domain they create is
//! named `test-*` and destroyed even when an assertion fails.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pvce::libvirt::accel::cpuinfo_has_hw_virt;
use pvce::libvirt::{
    AccelSetting, AddressPolicy, DiskCache, DomainSpec, DomainState, GraphicsKind, Hypervisor,
    LibvirtError, Node, NodeAddress, NodeOptions, PoolClaim, PvceMetadata,
};

const URI: &str = "qemu:///system";
const LIBVIRT_SOCK: &str = "/run/libvirt/libvirt-sock";

fn address(uri: &str) -> NodeAddress {
    NodeAddress::parse(uri, AddressPolicy::TESTING).expect("a valid address")
}

async fn open_system() -> Node {
    match Node::open(&address(URI), Duration::from_secs(10)).await {
        Ok(node) => node,
        Err(e) => panic!(
            "cannot reach libvirtd at {URI}: {e}. These tests need a running libvirtd; \
             without systemd start it with `virtlogd -d; libvirtd -d` (as root)"
        ),
    }
}

/// Destroys the domain when dropped, whatever happened in the test. Uses virsh so it
/// does not depend on the code under test.
struct DomainGuard(String);

impl Drop for DomainGuard {
    fn drop(&mut self) {
        let _ = Command::new("virsh")
            .args(["-c", URI, "destroy", &self.0])
            .output();
    }
}

/// A directory libvirt's QEMU user can reach: tempdirs are 0700, QEMU runs as
/// libvirt-qemu, so open it up (libvirt chowns the disk image itself).
fn reachable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pvce-libvirt-test-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod tempdir");
    dir
}

fn blank_qcow2(path: &Path) {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg("64M")
        .output()
        .expect("run qemu-img (install qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spec(dir: &Path, hypervisor: Hypervisor, graphics: GraphicsKind) -> DomainSpec {
    let uuid = uuid::Uuid::new_v4();
    let disk = dir.join("disk.qcow2");
    blank_qcow2(&disk);
    DomainSpec {
        name: format!("test-{uuid}"),
        uuid,
        title: "libvirt_real / tcg <&>".into(),
        vcpus: 1,
        memory_mib: 128,
        hypervisor,
        disk_path: disk,
        // Tempdirs may be on tmpfs, which has no O_DIRECT.
        disk_cache: DiskCache::Writeback,
        graphics,
        graphics_listen: "127.0.0.1".into(),
        graphics_password: Some(match graphics {
            GraphicsKind::Vnc => "s3cret".into(),
            GraphicsKind::Spice => "a longer SPICE password".into(),
        }),
        serial_log: Some(dir.join("serial.log")),
        smbios_serial: "test-host".into(),
        metadata: PvceMetadata {
            id: uuid.to_string(),
            owner: "test-owner".into(),
            course: Some("test-course".into()),
            template: None,
            installation: None,
        },
        network: None,
        network_mtu: None,
        clipboard_agent: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nodes_capabilities_name_what_the_spice_and_vnc_tests_use() {
    let node = open_system().await;
    let caps = node
        .capabilities(AccelSetting::Tcg)
        .await
        .expect("capabilities");
    // scripts/setup.sh installs QEMU's SPICE module, which the SPICE test needs.
    for g in ["vnc", "spice"] {
        assert!(caps.graphics.iter().any(|x| x == g), "{g}: {caps:?}");
    }
    assert!(caps.accelerators.iter().any(|a| a == "tcg"), "{caps:?}");
    assert!(caps.machines.iter().any(|m| m == "pc"), "{caps:?}");
    assert_eq!(caps.lacks(GraphicsKind::Spice, AccelSetting::Tcg), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_tcg_domain_runs_with_vnc_and_is_destroyed() {
    domain_round_trip(GraphicsKind::Vnc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_tcg_domain_runs_with_spice_and_is_destroyed() {
    domain_round_trip(GraphicsKind::Spice).await;
}

async fn domain_round_trip(kind: GraphicsKind) {
    // A guest of its own: beside ordinary tests, never beside one that runs alone.
    let _pass = crate::common::gate::shared().await;
    let node = open_system().await;
    let hv = node
        .hypervisor_for(AccelSetting::Auto)
        .await
        .expect("hypervisor");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !cpuinfo_has_hw_virt(&cpuinfo) {
        assert_eq!(hv, Hypervisor::Tcg, "auto must pick TCG without vmx/svm");
    }

    let dir = reachable_tempdir();
    let s = spec(dir.path(), hv, kind);
    let _guard = DomainGuard(s.name.clone());

    let info = node.create_domain(&s).await.expect("create domain");
    assert_eq!(info.name, s.name);
    assert_eq!(info.uuid, s.uuid);
    assert_eq!(info.state, DomainState::Running);
    assert_eq!(info.metadata.as_ref(), Some(&s.metadata));
    let g = info
        .graphics
        .clone()
        .expect("graphics read back from live XML");
    assert_eq!(g.kind, kind);
    assert_eq!(g.listen, "127.0.0.1");
    assert!(g.port >= 5900, "port {}", g.port);

    // QEMU really serves the console there.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", g.port)).expect("connect console");
    if kind == GraphicsKind::Vnc {
        // An RFB server speaks first, with its version.
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut banner = [0u8; 12];
        sock.read_exact(&mut banner).expect("RFB banner");
        assert!(banner.starts_with(b"RFB "), "{banner:?}");
    }
    drop(sock);

    // Lookup and listing see it, as pvce's.
    let got = node.domain(&s.name).await.expect("lookup").expect("exists");
    assert_eq!(got.state, DomainState::Running);
    assert_eq!(got.graphics, Some(g));
    let ours = node.list_pvce_domains().await.expect("list");
    assert!(ours.iter().any(|d| d.name == s.name));

    // Nothing stays defined: destroyed means gone.
    assert!(
        node.destroy(&s.name, "test-installation")
            .await
            .expect("destroy")
    );
    assert_eq!(node.domain(&s.name).await.expect("lookup"), None);
    assert!(
        !node
            .destroy(&s.name, "test-installation")
            .await
            .expect("destroy again")
    );

    let ni = node.node_info().await.expect("node info");
    assert!(
        ni.cpus > 0 && ni.mem_total_mib > 0 && ni.mem_free_mib > 0,
        "{ni:?}"
    );
}

/// A TCP front for the local libvirtd socket that can be frozen: it then keeps both
/// connections open but forwards nothing, exactly like a hung node. Frozen
/// for the connections open at that moment only ([`Self::freeze_open`]), it
/// is a node that missed one answer on one connection and serves new ones.
struct FreezableProxy {
    port: u16,
    frozen: Arc<AtomicBool>,
    /// Each connection's own switch (its two directions share it).
    open: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>>,
}

impl FreezableProxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let open: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let (f, o) = (frozen.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let unix = tokio::net::UnixStream::connect(LIBVIRT_SOCK)
                    .await
                    .expect("connect libvirt socket");
                let this = Arc::new(AtomicBool::new(false));
                o.lock().unwrap().push(this.clone());
                let (tr, tw) = tcp.into_split();
                let (ur, uw) = unix.into_split();
                tokio::spawn(pump(tr, uw, f.clone(), this.clone()));
                tokio::spawn(pump(ur, tw, f.clone(), this));
            }
        });
        Self { port, frozen, open }
    }

    fn uri(&self) -> String {
        format!("qemu+tcp://127.0.0.1:{}/system", self.port)
    }

    /// Freezes the connections open now; later ones pass.
    fn freeze_open(&self) {
        for c in self.open.lock().unwrap().iter() {
            c.store(true, Ordering::SeqCst);
        }
    }
}

async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    frozen: Arc<AtomicBool>,
    this: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) || this.load(Ordering::SeqCst) {
            // Hold both sockets, answer nothing, forever.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A node that misses one answer is not marked down: the probe tries again
/// at once on a fresh connection (`Nodes::probe`). One that answers neither
/// attempt is down, with one `node_down` event.
#[tokio::test(flavor = "multi_thread")]
async fn one_missed_answer_does_not_mark_a_node_down() {
    use pvce::nodes::{NewNode, NodeState, Nodes, PROBE_DEADLINE};
    drop(open_system().await);
    let proxy = FreezableProxy::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pvce::db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
        .await
        .expect("db");
    let nodes = Nodes::new(pool.clone(), Duration::from_secs(10), AccelSetting::Tcg)
        .with_address_policy(AddressPolicy::TESTING);
    let node = nodes
        .register(
            NewNode {
                name: "test-blip".into(),
                uri: Some(proxy.uri()),
                console_address: Some("127.0.0.1".into()),
                ..NewNode::default()
            },
            None,
        )
        .await
        .expect("register");
    assert_eq!(node.state, NodeState::Up, "{node:?}");
    let downs = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE kind = 'node_down' AND node_id = $1",
        )
        .bind(node.id.to_string())
        .fetch_one(&pool)
        .await
        .expect("events")
    };

    // The open connection goes silent; a new one is answered.
    proxy.freeze_open();
    let t = Instant::now();
    nodes
        .probe(node.id)
        .await
        .expect("the second attempt is answered");
    assert!(
        t.elapsed() >= PROBE_DEADLINE,
        "the first attempt was not left unanswered ({:?})",
        t.elapsed()
    );
    let now = nodes.get(node.id).await.expect("node");
    assert_eq!(now.state, NodeState::Up, "{now:?}");
    assert_eq!(downs().await, 0);

    // Silent on every connection: down.
    proxy.frozen.store(true, Ordering::SeqCst);
    assert!(nodes.probe(node.id).await.is_err());
    let now = nodes.get(node.id).await.expect("node");
    assert_eq!(now.state, NodeState::Down, "{now:?}");
    assert_eq!(downs().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn keepalive_marks_a_frozen_node_dead() {
    // Fail clearly when libvirtd is not running at all.
    drop(open_system().await);

    let proxy = FreezableProxy::start().await;
    let opts = NodeOptions {
        call_timeout: Duration::from_secs(30),
        keepalive_interval_secs: 1,
        keepalive_count: 2,
        ..NodeOptions::default()
    };
    let node = Node::open_with(&address(&proxy.uri()), Duration::from_secs(10), opts)
        .await
        .expect("open through proxy");
    node.node_info().await.expect("works before freezing");
    assert!(node.is_alive());

    proxy.frozen.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let r = node.node_info().await;
    let took = started.elapsed();
    // Keep-alive (1 s × 2) closes the connection long before the 30 s call deadline.
    assert!(matches!(r, Err(LibvirtError::Unreachable(_))), "{r:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    eprintln!("frozen node noticed after {took:?}: {r:?}");
    assert!(!node.is_alive());

    // A dead node fails fast from then on…
    let started = Instant::now();
    let r = node.node_info().await;
    assert!(matches!(r, Err(LibvirtError::Unreachable(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_millis(100));

    // …and a new connection works once the node answers again.
    proxy.frozen.store(false, Ordering::SeqCst);
    let again = node
        .reopen(Duration::from_secs(10))
        .await
        .expect("reopen after thaw");
    again.node_info().await.expect("works after reopen");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_request_does_not_kill_the_connection() {
    let node = open_system().await;
    let dir = reachable_tempdir();
    let mut s = spec(dir.path(), Hypervisor::Tcg, GraphicsKind::Vnc);
    s.disk_path = dir.path().join("missing.qcow2");
    let _guard = DomainGuard(s.name.clone());
    let r = node.create_domain(&s).await;
    assert!(matches!(r, Err(LibvirtError::Libvirt { .. })), "{r:?}");
    assert!(node.is_alive());
    node.node_info().await.expect("still usable");
}

/// Undefines a test storage pool when dropped (its directory is a tempdir).
struct PoolGuard(String);

/// Where pool `name` on the system libvirtd points.
fn pool_path(name: &str) -> std::path::PathBuf {
    let out = Command::new("virsh")
        .args(["-q", "-c", URI, "pool-dumpxml", name])
        .output()
        .unwrap();
    let xml = String::from_utf8_lossy(&out.stdout);
    let start = xml.find("<path>").unwrap() + "<path>".len();
    let end = xml[start..].find("</path>").unwrap() + start;
    xml[start..end].into()
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        for cmd in ["pool-destroy", "pool-undefine"] {
            let _ = Command::new("virsh")
                .args(["-q", "-c", URI, cmd, &self.0])
                .output();
        }
    }
}

/// The per-node template store mechanism: a `dir` pool defined idempotently,
/// a layer uploaded through libvirt (`virStorageVolUpload`), read back for its
/// SHA-256, and a second definition at another path refused.
#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn template_store_pool_upload_and_checksum() {
    let node = open_system().await;
    let dir = tempfile::Builder::new()
        .prefix("test-pvce-store-")
        .tempdir()
        .unwrap();
    let name = format!(
        "test-pvce-store-{}",
        dir.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .rsplit('-')
            .next()
            .unwrap()
    );
    let _guard = PoolGuard(name.clone());
    let store = dir.path().join("templates");

    // The name is "derived" here: ours wherever it points (src/installation).
    let ours = PoolClaim {
        derived: true,
        legacy: None,
    };
    let info = node
        .ensure_dir_pool(&name, &store, ours.clone())
        .await
        .unwrap();
    assert!(info.capacity > 0, "{info:?}");
    assert!(store.is_dir(), "libvirt built the pool's directory");
    node.ensure_dir_pool(&name, &store, ours.clone())
        .await
        .unwrap(); // idempotent
    // A pool of ours left at another path (the data dir moved) is repointed;
    // the files at the old path stay.
    std::fs::write(store.join("keep.txt"), b"keep").unwrap();
    let moved = dir.path().join("elsewhere");
    node.ensure_dir_pool(&name, &moved, ours.clone())
        .await
        .unwrap();
    assert!(moved.is_dir());
    assert!(
        store.join("keep.txt").exists(),
        "repointing never deletes files"
    );
    // A name not derived from our installation, pointing elsewhere, is
    // someone else's: never repointed (the benchmark-beside-server bug).
    match node
        .ensure_dir_pool(&name, &store, PoolClaim::default())
        .await
    {
        Err(LibvirtError::NotOurs(_)) => {}
        other => panic!("a foreign pool was accepted: {other:?}"),
    }
    assert_eq!(pool_path(&name), moved);
    node.ensure_dir_pool(&name, &store, ours).await.unwrap();

    // A 3 MiB + 17 bytes file with varied content (not a multiple of the chunk).
    let src = dir.path().join("layer.qcow2");
    let data: Vec<u8> = (0..(3 << 20) + 17)
        .map(|i: u32| (i * 31 % 251) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let expected = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&data))
    };
    assert_eq!(node.volume_size(&name, "abc.qcow2").await.unwrap(), None);
    node.upload_volume(&name, "abc.qcow2", &src).await.unwrap();
    assert_eq!(
        node.volume_size(&name, "abc.qcow2").await.unwrap(),
        Some(data.len() as u64)
    );
    assert_eq!(
        std::fs::read(store.join("abc.qcow2")).unwrap(),
        data,
        "bytes landed intact"
    );
    let sum = node
        .volume_sha256(&name, "abc.qcow2", data.len() as u64)
        .await
        .unwrap();
    assert_eq!(sum, expected);
    // Creating the same volume again fails and leaves the existing one alone.
    assert!(node.upload_volume(&name, "abc.qcow2", &src).await.is_err());
    assert_eq!(std::fs::read(store.join("abc.qcow2")).unwrap(), data);
    node.delete_volume(&name, "abc.qcow2").await.unwrap();
    assert!(!store.join("abc.qcow2").exists());
    node.undefine_pool(&name).await.unwrap();
    assert!(node.pool_info(&name).await.unwrap().is_none());
}

/// `/proc/meminfo` field in MiB.
fn meminfo_mib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/meminfo"))
        / 1024
}

/// The node's memory as placement sees it matches the host's own figures:
/// the host's total, and in use what is neither free nor page cache.
#[tokio::test(flavor = "multi_thread")]
async fn node_memory_matches_the_hosts_meminfo() {
    let node = open_system().await;
    let ni = node.node_info().await.expect("node info");
    let total = meminfo_mib("MemTotal");
    assert!(
        ni.mem_total_mib.abs_diff(total) <= 1,
        "node total {} MiB, MemTotal {total} MiB",
        ni.mem_total_mib
    );
    let used = ni.mem_total_mib - ni.mem_free_mib;
    let host_used = total - meminfo_mib("MemFree") - meminfo_mib("Buffers") - meminfo_mib("Cached");
    assert!(used > 0, "a running host uses some memory: {ni:?}");
    // Other work on the machine moves these between the two readings.
    assert!(
        used.abs_diff(host_used) <= 1024,
        "node used {used} MiB, host {host_used} MiB"
    );
}
