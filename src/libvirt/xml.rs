//! Typed libvirt domain XML.
//!
//! [`domain_xml`] turns a [`DomainSpec`] into the XML for `virDomainCreateXML`. The XML is
//! produced by serialising private typed structs with quick-xml's serde support, so every
//! value is escaped by the serialiser; no value is ever spliced into an XML string by
//! hand. Before serialising, [`DomainSpec`] is checked for values libvirt would reject
//! late or misinterpret (relative paths, newlines in a title, characters XML cannot
//! carry), so those fail early with [`LibvirtError::InvalidSpec`].
//!
//! The readers ([`parse_graphics`], [`parse_metadata`]) go the other way on the *live*
//! XML libvirt returns: the console port is only known once the domain runs
//! (`autoport`), and the metadata element is how pvce recognises its own domains.
//!
//! Choices worth knowing:
//! - Disk cache mode is a field ([`DiskCache`]). `writeback` (the default) works on
//!   every filesystem, including tmpfs which has no `O_DIRECT`; guest flushes are still
//!   honoured, so it is crash-safe for the guest. `none` avoids double caching in the
//!   host page cache and is what libvirt wants for *live* migration on shared storage
//!   (it refuses other modes there unless told the migration is unsafe), so production
//!   nodes with NFS/Gluster/Ceph student layers should use `none`.
//! - The backing chain is not spelled out with `<backingStore>`: libvirt reads it from
//!   the qcow2 headers, which pvce always writes with explicit backing formats (`-F`),
//!   so nothing is ever format-probed.
//! - TCG guests get `<cpu mode='maximum'/>` (QEMU's `-cpu max`) rather than the default
//!   `qemu64`: current distributions need x86-64-v2 (SSE4.2, POPCNT), which `qemu64`
//!   lacks, and `max` is the same on every node running the same QEMU. KVM guests get
//!   `host-model`, which is fast and still migratable between similar hosts.
//! - NICs get a MAC derived from the VM's UUID, so a transient domain gets the same MAC
//!   (and DHCP lease, and interface name in the guest) every time it starts.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::events::attributes::Attributes;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use serde::{Deserialize, Serialize};

use super::LibvirtError;

/// XML namespace of pvce's domain metadata element.
pub const PVCE_XMLNS: &str = "https://pvce.org/xmlns/domain/1";

/// hvmloader path for Xen HVM guests (the path Debian's and upstream Xen use).
const XEN_HVMLOADER: &str = "/usr/lib/xen/boot/hvmloader";

/// Which hypervisor / accelerator a domain is created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// QEMU with KVM (`<domain type='kvm'>`).
    Kvm,
    /// QEMU with its TCG emulator (`<domain type='qemu'>`).
    Tcg,
    /// Xen HVM through libxl (`<domain type='xen'>`).
    Xen,
}

impl Hypervisor {
    /// The `<domain type=…>` value.
    pub fn domain_type(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "qemu",
            Self::Xen => "xen",
        }
    }
}

impl fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
            Self::Xen => "xen",
        })
    }
}

/// Remote console protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphicsKind {
    Vnc,
    Spice,
}

impl GraphicsKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Vnc => "vnc",
            Self::Spice => "spice",
        }
    }
}

impl fmt::Display for GraphicsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Host cache mode of the VM's disk; see the module docs for when to use which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskCache {
    /// Host page cache in writeback mode; works everywhere (tmpfs included).
    #[default]
    Writeback,
    /// `O_DIRECT`, no host page cache; needed for safe live migration on shared
    /// storage. Fails to start on filesystems without `O_DIRECT` (tmpfs).
    None,
}

impl DiskCache {
    fn as_str(self) -> &'static str {
        match self {
            Self::Writeback => "writeback",
            Self::None => "none",
        }
    }
}

/// pvce's own record inside a domain (`<pvce:vm …/>` in `<metadata>`): lets the
/// reconcile loop recognise the domains pvce created and map them back to VMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvceMetadata {
    /// The VM's id in the database.
    pub id: String,
    /// The owning user's id.
    pub owner: String,
    /// The course the VM belongs to (a student's personal VM).
    pub course: Option<String>,
    /// The template being built (a teacher's template build VM).
    pub template: Option<String>,
    /// The id of the pvce installation that created the domain
    /// (src/installation); `None` on domains an older pvce created.
    pub installation: Option<String>,
}

/// Everything needed to create one VM's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// libvirt name, e.g. `pvce-<uuid>`; only `[A-Za-z0-9._-]` (it also names log files).
    pub name: String,
    pub uuid: uuid::Uuid,
    /// Human title shown by virsh/virt-manager, e.g. "alice / OS course / linux".
    pub title: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub hypervisor: Hypervisor,
    /// The VM's qcow2 overlay (absolute). Its backing chain and backing formats are
    /// recorded in the qcow2 headers.
    pub disk_path: PathBuf,
    pub disk_cache: DiskCache,
    pub graphics: GraphicsKind,
    /// IP address the console listens on: the node's console/management address.
    pub graphics_listen: String,
    /// Console password. VNC only uses 8 characters, so longer VNC passwords are refused.
    /// The resulting XML then contains the password: do not log it.
    pub graphics_password: Option<String>,
    /// File the first serial port is logged to (QEMU only; ignored for Xen, whose
    /// libxl driver has no serial log).
    pub serial_log: Option<PathBuf>,
    /// SMBIOS system serial; the guest reads `/sys/class/dmi/id/product_serial`.
    pub smbios_serial: String,
    pub metadata: PvceMetadata,
    /// libvirt network for one NIC; `None` = no NIC.
    pub network: Option<String>,
    /// The NIC's MTU, when the network's is below 1500 (a lab network with
    /// a VXLAN segment: [`VXLAN_MTU`]). libvirt gives the tap the network's
    /// MTU by itself, but tells a virtio guest (`host_mtu`) only an MTU set
    /// on the interface; without it the guest would send 1500-byte frames
    /// the segment drops.
    pub network_mtu: Option<u32>,
    /// A qemu-vdagent channel with clipboard copy/paste (QEMU only): the
    /// clipboard through QEMU's VNC server and a guest's spice-vdagent.
    pub clipboard_agent: bool,
}

/// A domain's console as read back from its live XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graphics {
    pub kind: GraphicsKind,
    /// The address the console listens on (on the node).
    pub listen: String,
    pub port: u16,
    /// SPICE TLS port, when the node has SPICE TLS configured.
    pub tls_port: Option<u16>,
}

/// The password a live console currently requires, read from the domain's
/// *secure* XML (`VIR_DOMAIN_XML_SECURE`). `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ConsoleAuth {
    /// `None`: the console has no password.
    pub password: Option<String>,
    /// When the password stops working (`passwdValidTo`, UTC); `None` = never.
    pub valid_to: Option<time::OffsetDateTime>,
}

impl fmt::Debug for ConsoleAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleAuth")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("valid_to", &self.valid_to)
            .finish()
    }
}

/// A fresh per-boot console password: 8 characters for VNC (all its DES
/// authentication uses), 32 for SPICE; alphanumeric, from the OS RNG.
pub fn new_console_password(kind: GraphicsKind) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let len = match kind {
        GraphicsKind::Vnc => 8,
        GraphicsKind::Spice => 32,
    };
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// `passwdValidTo`'s format: UTC, seconds, no zone (libvirt parses it with
/// `%Y-%m-%dT%H:%M:%S` and `timegm`).
const VALID_TO_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

// ---------------------------------------------------------------------------------------
// Serialisation structs. Field order is element order; `@name` fields are attributes and
// `$text` is element text (quick-xml's serde conventions).

#[derive(Serialize)]
#[serde(rename = "domain")]
struct XDomain<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    name: &'a str,
    uuid: String,
    title: &'a str,
    metadata: XMetadata<'a>,
    memory: XMemory,
    vcpu: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    sysinfo: Option<XSysinfo<'a>>,
    os: XOs,
    features: XFeatures,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<XCpu>,
    clock: XClock,
    on_poweroff: &'static str,
    on_reboot: &'static str,
    on_crash: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pm: Option<XPm>,
    devices: XDevices<'a>,
}

// We write the prefix `pvce`; the reader resolves the namespace and accepts any prefix.
#[derive(Serialize)]
struct XMetadata<'a> {
    #[serde(rename = "pvce:vm")]
    vm: XPvceVm<'a>,
}

#[derive(Serialize)]
struct XPvceVm<'a> {
    #[serde(rename = "@xmlns:pvce")]
    xmlns: &'static str,
    #[serde(rename = "@id")]
    id: &'a str,
    #[serde(rename = "@owner")]
    owner: &'a str,
    #[serde(rename = "@course", skip_serializing_if = "Option::is_none")]
    course: Option<&'a str>,
    #[serde(rename = "@template", skip_serializing_if = "Option::is_none")]
    template: Option<&'a str>,
    #[serde(rename = "@installation", skip_serializing_if = "Option::is_none")]
    installation: Option<&'a str>,
}

#[derive(Serialize)]
struct XMemory {
    #[serde(rename = "@unit")]
    unit: &'static str,
    #[serde(rename = "$text")]
    value: u64,
}

#[derive(Serialize)]
struct XSysinfo<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    system: XSysinfoSystem<'a>,
}

#[derive(Serialize)]
struct XSysinfoSystem<'a> {
    entry: Vec<XSysinfoEntry<'a>>,
}

#[derive(Serialize)]
struct XSysinfoEntry<'a> {
    #[serde(rename = "@name")]
    name: &'static str,
    #[serde(rename = "$text")]
    value: &'a str,
}

#[derive(Serialize)]
struct XOs {
    #[serde(rename = "type")]
    os_type: XOsType,
    #[serde(skip_serializing_if = "Option::is_none")]
    loader: Option<&'static str>,
    boot: XBoot,
    #[serde(skip_serializing_if = "Option::is_none")]
    smbios: Option<XSmbios>,
}

#[derive(Serialize)]
struct XOsType {
    #[serde(rename = "@arch")]
    arch: &'static str,
    #[serde(rename = "@machine")]
    machine: &'static str,
    #[serde(rename = "$text")]
    value: &'static str,
}

#[derive(Serialize)]
struct XBoot {
    #[serde(rename = "@dev")]
    dev: &'static str,
}

#[derive(Serialize)]
struct XSmbios {
    #[serde(rename = "@mode")]
    mode: &'static str,
}

#[derive(Serialize)]
struct XFeatures {
    acpi: (),
    apic: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    pae: Option<()>,
}

#[derive(Serialize)]
struct XCpu {
    #[serde(rename = "@mode")]
    mode: &'static str,
    #[serde(rename = "@migratable", skip_serializing_if = "Option::is_none")]
    migratable: Option<&'static str>,
}

#[derive(Serialize)]
struct XClock {
    #[serde(rename = "@offset")]
    offset: &'static str,
}

#[derive(Serialize)]
struct XPm {
    #[serde(rename = "suspend-to-mem")]
    suspend_to_mem: XEnabled,
    #[serde(rename = "suspend-to-disk")]
    suspend_to_disk: XEnabled,
}

#[derive(Serialize)]
struct XEnabled {
    #[serde(rename = "@enabled")]
    enabled: &'static str,
}

#[derive(Serialize)]
struct XDevices<'a> {
    disk: XDisk<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<XInterface<'a>>,
    serial: XSerial<'a>,
    console: XConsole,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<XChannel>,
    input: XInput,
    graphics: XGraphics<'a>,
    video: XVideo,
}

#[derive(Serialize)]
struct XDisk<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@device")]
    device: &'static str,
    driver: XDiskDriver,
    source: XDiskSource<'a>,
    target: XDiskTarget,
}

#[derive(Serialize)]
struct XDiskDriver {
    #[serde(rename = "@name")]
    name: &'static str,
    #[serde(rename = "@type")]
    format: &'static str,
    #[serde(rename = "@cache", skip_serializing_if = "Option::is_none")]
    cache: Option<&'static str>,
    #[serde(rename = "@discard", skip_serializing_if = "Option::is_none")]
    discard: Option<&'static str>,
}

#[derive(Serialize)]
struct XDiskSource<'a> {
    #[serde(rename = "@file")]
    file: &'a str,
}

#[derive(Serialize)]
struct XDiskTarget {
    #[serde(rename = "@dev")]
    dev: &'static str,
    #[serde(rename = "@bus")]
    bus: &'static str,
}

#[derive(Serialize)]
struct XInterface<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    mac: XMac,
    source: XNetSource<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<XModelType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<XMtu>,
}

#[derive(Serialize)]
struct XMac {
    #[serde(rename = "@address")]
    address: String,
}

#[derive(Serialize)]
struct XNetSource<'a> {
    #[serde(rename = "@network")]
    network: &'a str,
}

#[derive(Serialize)]
struct XModelType {
    #[serde(rename = "@type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct XSerial<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<XLog<'a>>,
    target: XPort,
}

#[derive(Serialize)]
struct XLog<'a> {
    #[serde(rename = "@file")]
    file: &'a str,
    #[serde(rename = "@append")]
    append: &'static str,
}

#[derive(Serialize)]
struct XPort {
    #[serde(rename = "@port")]
    port: u32,
}

#[derive(Serialize)]
struct XConsole {
    #[serde(rename = "@type")]
    kind: &'static str,
    target: XConsoleTarget,
}

#[derive(Serialize)]
struct XConsoleTarget {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@port")]
    port: u32,
}

/// `<channel type='qemu-vdagent'>`: QEMU's own vdagent end, which connects
/// QEMU's clipboard (and so the VNC server's extended clipboard) to a
/// spice-vdagent in the guest over the usual virtio-serial port.
#[derive(Serialize)]
struct XChannel {
    #[serde(rename = "@type")]
    kind: &'static str,
    source: XVdagentSource,
    target: XChannelTarget,
}

#[derive(Serialize)]
struct XVdagentSource {
    clipboard: XClipboard,
}

#[derive(Serialize)]
struct XClipboard {
    #[serde(rename = "@copypaste")]
    copypaste: &'static str,
}

#[derive(Serialize)]
struct XChannelTarget {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@name")]
    name: &'static str,
}

#[derive(Serialize)]
struct XInput {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@bus")]
    bus: &'static str,
}

#[derive(Serialize)]
#[serde(rename = "graphics")]
struct XGraphics<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@port", skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(rename = "@tlsPort", skip_serializing_if = "Option::is_none")]
    tls_port: Option<u16>,
    #[serde(rename = "@autoport")]
    autoport: &'static str,
    #[serde(rename = "@passwd", skip_serializing_if = "Option::is_none")]
    passwd: Option<&'a str>,
    #[serde(rename = "@passwdValidTo", skip_serializing_if = "Option::is_none")]
    passwd_valid_to: Option<String>,
    listen: XListen<'a>,
}

#[derive(Serialize)]
struct XListen<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@address")]
    address: &'a str,
}

#[derive(Serialize)]
struct XVideo {
    model: XModelType,
}

// ---------------------------------------------------------------------------------------

/// Build the domain XML for `spec`. Fails with [`LibvirtError::InvalidSpec`] for values
/// libvirt would reject or that cannot be represented, never producing partial XML.
pub fn domain_xml(spec: &DomainSpec) -> Result<String, LibvirtError> {
    validate(spec)?;
    let disk_path = path_str("disk_path", &spec.disk_path)?;
    let serial_log = match (&spec.serial_log, spec.hypervisor) {
        // libxl has no serial log file support; see DomainSpec::serial_log.
        (Some(_), Hypervisor::Xen) | (None, _) => None,
        (Some(p), _) => Some(path_str("serial_log", p)?),
    };
    let qemu = spec.hypervisor != Hypervisor::Xen;
    let m = &spec.metadata;

    let dom = XDomain {
        kind: spec.hypervisor.domain_type(),
        name: &spec.name,
        uuid: spec.uuid.hyphenated().to_string(),
        title: &spec.title,
        metadata: XMetadata {
            vm: XPvceVm {
                xmlns: PVCE_XMLNS,
                id: &m.id,
                owner: &m.owner,
                course: m.course.as_deref(),
                template: m.template.as_deref(),
                installation: m.installation.as_deref(),
            },
        },
        memory: XMemory {
            unit: "MiB",
            value: spec.memory_mib,
        },
        vcpu: spec.vcpus,
        sysinfo: Some(XSysinfo {
            kind: "smbios",
            system: XSysinfoSystem {
                entry: vec![XSysinfoEntry {
                    name: "serial",
                    value: &spec.smbios_serial,
                }],
            },
        }),
        os: XOs {
            os_type: XOsType {
                arch: "x86_64",
                machine: if qemu { "pc" } else { "xenfv" },
                value: "hvm",
            },
            loader: (!qemu).then_some(XEN_HVMLOADER),
            boot: XBoot { dev: "hd" },
            smbios: Some(XSmbios { mode: "sysinfo" }),
        },
        features: XFeatures {
            acpi: (),
            apic: (),
            // Xen HVM guests want PAE advertised; QEMU turns it on by itself.
            pae: (!qemu).then_some(()),
        },
        cpu: match spec.hypervisor {
            Hypervisor::Tcg => Some(XCpu {
                mode: "maximum",
                migratable: Some("on"),
            }),
            Hypervisor::Kvm => Some(XCpu {
                mode: "host-model",
                migratable: None,
            }),
            Hypervisor::Xen => None,
        },
        clock: XClock { offset: "utc" },
        // A transient domain that powers off or crashes simply disappears; pvce notices
        // and records the VM as stopped. Reboot stays inside the domain.
        on_poweroff: "destroy",
        on_reboot: "restart",
        on_crash: "destroy",
        // A guest that suspends itself would look "running" but never answer; keep
        // guest power management to on/off.
        pm: qemu.then_some(XPm {
            suspend_to_mem: XEnabled { enabled: "no" },
            suspend_to_disk: XEnabled { enabled: "no" },
        }),
        devices: XDevices {
            disk: XDisk {
                kind: "file",
                device: "disk",
                driver: XDiskDriver {
                    name: "qemu",
                    format: "qcow2",
                    // libxl decides caching itself and ignores these.
                    cache: qemu.then_some(spec.disk_cache.as_str()),
                    // Guest TRIM frees space in the student's overlay.
                    discard: qemu.then_some("unmap"),
                },
                source: XDiskSource { file: disk_path },
                target: if qemu {
                    // virtio: IDE is far slower, especially under TCG.
                    XDiskTarget {
                        dev: "vda",
                        bus: "virtio",
                    }
                } else {
                    XDiskTarget {
                        dev: "xvda",
                        bus: "xen",
                    }
                },
            },
            interface: spec.network.as_deref().map(|net| XInterface {
                kind: "network",
                mac: XMac {
                    address: mac_for(spec.uuid, spec.hypervisor),
                },
                source: XNetSource { network: net },
                // Xen HVM: libxl's default gives an emulated NIC plus PV netfront.
                model: qemu.then_some(XModelType { kind: "virtio" }),
                mtu: spec.network_mtu.map(|size| XMtu { size }),
            }),
            serial: XSerial {
                kind: "pty",
                log: serial_log.map(|file| XLog {
                    file,
                    append: "off",
                }),
                target: XPort { port: 0 },
            },
            console: XConsole {
                kind: "pty",
                target: XConsoleTarget {
                    kind: "serial",
                    port: 0,
                },
            },
            // QEMU only: Xen's libxl has no qemu-vdagent.
            channel: (qemu && spec.clipboard_agent).then_some(XChannel {
                kind: "qemu-vdagent",
                source: XVdagentSource {
                    clipboard: XClipboard { copypaste: "yes" },
                },
                target: XChannelTarget {
                    kind: "virtio",
                    name: "com.redhat.spice.0",
                },
            }),
            // Absolute pointer: the browser's mouse position maps 1:1 onto the guest's.
            input: XInput {
                kind: "tablet",
                bus: "usb",
            },
            graphics: XGraphics {
                kind: spec.graphics.as_str(),
                port: None,
                tls_port: None,
                autoport: "yes",
                passwd: spec.graphics_password.as_deref(),
                passwd_valid_to: None,
                listen: XListen {
                    kind: "address",
                    address: &spec.graphics_listen,
                },
            },
            // Standard VGA: every guest and firmware drives it, under KVM, TCG and Xen.
            video: XVideo {
                model: XModelType { kind: "vga" },
            },
        },
    };

    let mut out = String::new();
    let mut ser = quick_xml::se::Serializer::new(&mut out);
    ser.indent(' ', 2);
    dom.serialize(ser)
        .map_err(|e| LibvirtError::Xml(e.to_string()))?;
    Ok(out)
}

/// Locally administered unicast MAC from the VM's UUID, with the conventional prefix of
/// the hypervisor (QEMU 52:54:00, Xen 00:16:3e) so it is recognisable on the wire.
fn mac_for(uuid: uuid::Uuid, hv: Hypervisor) -> String {
    let b = uuid.as_bytes();
    let prefix = match hv {
        Hypervisor::Xen => "00:16:3e",
        Hypervisor::Kvm | Hypervisor::Tcg => "52:54:00",
    };
    // The Xen OUI requires the top bit of the fourth byte to be clear.
    let b13 = if hv == Hypervisor::Xen {
        b[13] & 0x7f
    } else {
        b[13]
    };
    format!("{prefix}:{b13:02x}:{:02x}:{:02x}", b[14], b[15])
}

/// The `<graphics>` device XML for `virDomainUpdateDeviceFlags` that sets a
/// live console's password, optionally expiring at `valid_to` (UTC, whole
/// seconds). Port, TLS port, autoport and listen address repeat the live
/// device's (`live`): libvirt refuses an update that would change them. pvce
/// only creates `autoport='yes'` consoles.
pub fn graphics_password_xml(
    live: &Graphics,
    password: &str,
    valid_to: Option<time::OffsetDateTime>,
) -> Result<String, LibvirtError> {
    check_text("password", password, false)?;
    if password.is_empty() {
        return Err(invalid("a console password must not be empty"));
    }
    if live.kind == GraphicsKind::Vnc && password.len() > 8 {
        return Err(invalid("a VNC password is at most 8 bytes"));
    }
    if live.listen.parse::<IpAddr>().is_err() {
        return Err(invalid("the console's listen address is not an IP address"));
    }
    let valid_to = valid_to
        .map(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(VALID_TO_FORMAT)
                .map_err(|e| LibvirtError::Xml(e.to_string()))
        })
        .transpose()?;
    let g = XGraphics {
        kind: live.kind.as_str(),
        port: Some(live.port),
        tls_port: live.tls_port,
        autoport: "yes",
        passwd: Some(password),
        passwd_valid_to: valid_to,
        listen: XListen {
            kind: "address",
            address: &live.listen,
        },
    };
    let mut out = String::new();
    g.serialize(quick_xml::se::Serializer::new(&mut out))
        .map_err(|e| LibvirtError::Xml(e.to_string()))?;
    Ok(out)
}

fn invalid(msg: impl Into<String>) -> LibvirtError {
    LibvirtError::InvalidSpec(msg.into())
}

/// Characters XML 1.0 can carry (Rust `char`s already exclude surrogates).
fn xml_char_ok(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

fn check_text(field: &str, value: &str, allow_newlines: bool) -> Result<(), LibvirtError> {
    if let Some(c) = value
        .chars()
        .find(|&c| !xml_char_ok(c) || (!allow_newlines && (c == '\n' || c == '\r')))
    {
        return Err(invalid(format!(
            "{field} contains a character not allowed here ({:?})",
            c
        )));
    }
    Ok(())
}

/// Names libvirt also uses in file names (logs, sockets): keep them boring.
fn check_name(field: &str, value: &str) -> Result<(), LibvirtError> {
    let ok = !value.is_empty()
        && value.len() <= 200
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} must be 1-200 characters of [A-Za-z0-9._-], not starting with '.'"
        )))
    }
}

fn path_str<'p>(field: &str, p: &'p Path) -> Result<&'p str, LibvirtError> {
    if !p.is_absolute() {
        return Err(invalid(format!("{field} must be an absolute path")));
    }
    let s = p
        .to_str()
        .ok_or_else(|| invalid(format!("{field} is not valid UTF-8")))?;
    check_text(field, s, false)?;
    Ok(s)
}

fn validate(spec: &DomainSpec) -> Result<(), LibvirtError> {
    check_name("name", &spec.name)?;
    // libvirt refuses titles with newlines.
    check_text("title", &spec.title, false)?;
    if spec.vcpus == 0 {
        return Err(invalid("vcpus must be at least 1"));
    }
    if spec.memory_mib == 0 {
        return Err(invalid("memory_mib must be at least 1"));
    }
    if spec.graphics_listen.parse::<IpAddr>().is_err() {
        return Err(invalid("graphics_listen must be an IP address"));
    }
    if let Some(pw) = &spec.graphics_password {
        check_text("graphics_password", pw, false)?;
        if pw.is_empty() {
            return Err(invalid("graphics_password must not be empty (use None)"));
        }
        // VNC authentication (DES) uses only the first 8 bytes; refuse rather than
        // silently weaken the password the caller thinks it set.
        if spec.graphics == GraphicsKind::Vnc && pw.len() > 8 {
            return Err(invalid("a VNC password is at most 8 bytes"));
        }
    }
    check_text("smbios_serial", &spec.smbios_serial, false)?;
    let m = &spec.metadata;
    check_text("metadata.id", &m.id, false)?;
    check_text("metadata.owner", &m.owner, false)?;
    if let Some(c) = &m.course {
        check_text("metadata.course", c, false)?;
    }
    if let Some(t) = &m.template {
        check_text("metadata.template", t, false)?;
    }
    if let Some(i) = &m.installation {
        check_text("metadata.installation", i, false)?;
    }
    if let Some(net) = &spec.network {
        check_name("network", net)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Isolated networks (students' lab networks).

/// Longest Linux interface name (`IFNAMSIZ` − 1).
pub const MAX_BRIDGE_NAME: usize = 15;

/// An isolated libvirt network: a host bridge with no `<forward>` (nothing leaves
/// it) and no `<ip>` (the host has no address on it, so libvirt starts no dnsmasq
/// and guests cannot reach the host). Guests on it only see each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// libvirt network name; only `[A-Za-z0-9._-]`.
    pub name: String,
    /// Host bridge device, at most [`MAX_BRIDGE_NAME`] characters of `[a-z0-9-]`.
    pub bridge: String,
    /// The id of the pvce installation creating it (`<pvce:net installation=…/>`
    /// in `<metadata>`): only that installation ever removes the network.
    pub installation: String,
    /// The network's VXLAN segment, when it spans nodes: written into pvce's
    /// metadata mark for the node's libvirt network hook
    /// (`contrib/libvirt-hooks/network`), which makes the VXLAN device and
    /// enslaves it to the bridge; the network's MTU leaves room for the
    /// encapsulation ([`VXLAN_MTU`]).
    pub vxlan: Option<Vxlan>,
}

/// What the network hook needs to join a network to its VXLAN segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    /// The segment's VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The underlay multicast group that carries the segment's broadcast,
    /// unknown-unicast and multicast frames.
    pub group: std::net::Ipv4Addr,
    /// This node's address on the underlay (its VTEP); the hook finds the
    /// underlay device by it.
    pub local: std::net::Ipv4Addr,
}

/// The MTU of a network with a VXLAN segment: VXLAN over IPv4 adds 50 bytes
/// (outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8) to every frame, so guests
/// get 1450 on a 1500-byte underlay.
pub const VXLAN_MTU: u32 = 1450;

/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// XML namespace of pvce's network metadata element.
pub const PVCE_NET_XMLNS: &str = "https://pvce.org/xmlns/network/1";

#[derive(Serialize)]
#[serde(rename = "network")]
struct XNetwork<'a> {
    name: &'a str,
    metadata: XNetMetadata<'a>,
    bridge: XBridge<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<XMtu>,
}

#[derive(Serialize)]
struct XMtu {
    #[serde(rename = "@size")]
    size: u32,
}

#[derive(Serialize)]
struct XNetMetadata<'a> {
    #[serde(rename = "pvce:net")]
    net: XPvceNet<'a>,
}

#[derive(Serialize)]
struct XPvceNet<'a> {
    #[serde(rename = "@xmlns:pvce")]
    xmlns: &'static str,
    #[serde(rename = "@installation")]
    installation: &'a str,
    #[serde(rename = "@vni", skip_serializing_if = "Option::is_none")]
    vni: Option<u32>,
    #[serde(rename = "@group", skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(rename = "@local", skip_serializing_if = "Option::is_none")]
    local: Option<String>,
}

#[derive(Serialize)]
struct XBridge<'a> {
    #[serde(rename = "@name")]
    name: &'a str,
    // No spanning tree on a leaf bridge: it would delay each new port by the
    // forwarding delay before guests can talk.
    #[serde(rename = "@stp")]
    stp: &'static str,
    #[serde(rename = "@delay")]
    delay: u32,
}

/// The XML for `virNetworkCreateXML` of an isolated network. Deliberately has no
/// `<forward>`, `<ip>`, `<dns>` or `<domain>` element (see [`NetworkSpec`]).
pub fn network_xml(spec: &NetworkSpec) -> Result<String, LibvirtError> {
    check_name("network name", &spec.name)?;
    let b = &spec.bridge;
    let bridge_ok = !b.is_empty()
        && b.len() <= MAX_BRIDGE_NAME
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !b.starts_with('-');
    if !bridge_ok {
        return Err(invalid(format!(
            "bridge must be 1-{MAX_BRIDGE_NAME} characters of [a-z0-9-]"
        )));
    }
    check_text("installation", &spec.installation, false)?;
    if let Some(v) = &spec.vxlan {
        if v.vni == 0 || v.vni > MAX_VNI {
            return Err(invalid(format!("vni must be 1-{MAX_VNI}")));
        }
        if !v.group.is_multicast() {
            return Err(invalid(format!("{} is not a multicast group", v.group)));
        }
        if v.local.is_unspecified() || v.local.is_multicast() || v.local.is_broadcast() {
            return Err(invalid(format!("{} is not a VTEP address", v.local)));
        }
    }
    let vx = spec.vxlan.as_ref();
    let net = XNetwork {
        name: &spec.name,
        metadata: XNetMetadata {
            net: XPvceNet {
                xmlns: PVCE_NET_XMLNS,
                installation: &spec.installation,
                vni: vx.map(|v| v.vni),
                group: vx.map(|v| v.group.to_string()),
                local: vx.map(|v| v.local.to_string()),
            },
        },
        bridge: XBridge {
            name: b,
            stp: "off",
            delay: 0,
        },
        mtu: vx.map(|_| XMtu { size: VXLAN_MTU }),
    };
    let mut out = String::new();
    let mut ser = quick_xml::se::Serializer::new(&mut out);
    ser.indent(' ', 2);
    net.serialize(ser)
        .map_err(|e| LibvirtError::Xml(e.to_string()))?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Readers for live XML.

fn attr_value(attrs: Attributes<'_>, name: &[u8]) -> Option<String> {
    attrs
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| a.unescape_value().ok())
        .map(|v| v.into_owned())
}

/// The first VNC/SPICE console of a live domain, if it has one with a port assigned
/// (a domain that is not running has `port='-1'` with autoport, so `None`).
pub fn parse_graphics(xml: &str) -> Option<Graphics> {
    parse_console(xml).map(|(g, _)| g)
}

/// [`parse_graphics`] plus the console's password and its expiry, which
/// libvirt only includes in the *secure* XML. An unparsable `passwdValidTo`
/// reads as already expired, so the caller replaces the password.
pub fn parse_console(xml: &str) -> Option<(Graphics, ConsoleAuth)> {
    let mut reader = NsReader::from_str(xml);
    // Path of element local names from the root, to only look at domain/devices/graphics.
    let mut path: Vec<Vec<u8>> = Vec::new();
    // The graphics element being read.
    let mut current: Option<PartialGraphics> = None;
    loop {
        let ev = reader.read_event().ok()?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.local_name().as_ref().to_vec();
                let is_empty = matches!(ev, Event::Empty(_));
                if path_is(&path, &[b"domain", b"devices"]) && name == b"graphics" {
                    let kind = match attr_value(e.attributes(), b"type").as_deref() {
                        Some("vnc") => Some(GraphicsKind::Vnc),
                        Some("spice") => Some(GraphicsKind::Spice),
                        _ => None,
                    };
                    let port = attr_value(e.attributes(), b"port").and_then(|p| p.parse().ok());
                    let tls = attr_value(e.attributes(), b"tlsPort").and_then(|p| p.parse().ok());
                    let listen = attr_value(e.attributes(), b"listen");
                    let password = attr_value(e.attributes(), b"passwd");
                    let valid_to = attr_value(e.attributes(), b"passwdValidTo").map(|v| {
                        time::PrimitiveDateTime::parse(&v, VALID_TO_FORMAT)
                            .map(time::PrimitiveDateTime::assume_utc)
                            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
                    });
                    current = kind.map(|kind| PartialGraphics {
                        kind,
                        port,
                        tls_port: tls,
                        listen,
                        auth: ConsoleAuth { password, valid_to },
                    });
                    if is_empty && let Some(g) = current.take().and_then(PartialGraphics::finish) {
                        return Some(g);
                    }
                } else if path_is(&path, &[b"domain", b"devices", b"graphics"])
                    && name == b"listen"
                    && let Some(cur) = current.as_mut()
                    && cur.listen.is_none()
                {
                    cur.listen = attr_value(e.attributes(), b"address");
                }
                if !is_empty {
                    path.push(name);
                }
            }
            Event::End(_) => {
                let closed = path.pop();
                if closed.as_deref() == Some(b"graphics".as_slice())
                    && let Some(g) = current.take().and_then(PartialGraphics::finish)
                {
                    return Some(g);
                }
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

fn path_is(path: &[Vec<u8>], want: &[&[u8]]) -> bool {
    path.len() == want.len() && path.iter().zip(want).all(|(a, b)| a.as_slice() == *b)
}

struct PartialGraphics {
    kind: GraphicsKind,
    port: Option<u16>,
    tls_port: Option<u16>,
    listen: Option<String>,
    auth: ConsoleAuth,
}

impl PartialGraphics {
    fn finish(self) -> Option<(Graphics, ConsoleAuth)> {
        let g = Graphics {
            kind: self.kind,
            listen: self.listen?,
            // port='-1' (not yet allocated) fails the u16 parse, and 0 is never real.
            port: self.port.filter(|&p| p != 0)?,
            tls_port: self.tls_port.filter(|&p| p != 0),
        };
        Some((g, self.auth))
    }
}

/// A live domain's XML with its consoles listening on `listen` instead: the
/// destination XML of a live migration, whose console must listen on the new
/// node's address. Only the `listen` attribute of `domain/devices/graphics` and
/// the `address` of its `<listen type='address'>` children change; every other
/// event passes through untouched, so libvirt's ABI check sees the same domain.
pub fn with_graphics_listen(xml: &str, listen: IpAddr) -> Result<String, LibvirtError> {
    use quick_xml::events::BytesStart;
    fn replace_attr(
        e: &BytesStart<'_>,
        key: &str,
        value: &str,
    ) -> Result<BytesStart<'static>, LibvirtError> {
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        let mut out = BytesStart::new(name);
        for a in e.attributes() {
            let a = a.map_err(|err| LibvirtError::Xml(err.to_string()))?;
            if a.key.as_ref() == key.as_bytes() {
                // (&str, &str) escapes the value.
                out.push_attribute((key, value));
            } else {
                out.push_attribute(a);
            }
        }
        Ok(out.into_owned())
    }
    let listen = listen.to_string();
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut writer = quick_xml::Writer::new(Vec::new());
    let mut path: Vec<Vec<u8>> = Vec::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| LibvirtError::Xml(e.to_string()))?;
        let ev = match ev {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.name().as_ref().to_vec();
                let is_empty = matches!(ev, Event::Empty(_));
                let graphics = path_is(&path, &[b"domain", b"devices"]) && name == b"graphics";
                let listen_child = path_is(&path, &[b"domain", b"devices", b"graphics"])
                    && name == b"listen"
                    && attr_value(e.attributes(), b"type").as_deref() == Some("address");
                let rewritten = if graphics && attr_value(e.attributes(), b"listen").is_some() {
                    Some(replace_attr(e, "listen", &listen)?)
                } else if listen_child {
                    Some(replace_attr(e, "address", &listen)?)
                } else {
                    None
                };
                if !is_empty {
                    path.push(name);
                }
                match (rewritten, is_empty) {
                    (Some(e), true) => Event::Empty(e),
                    (Some(e), false) => Event::Start(e),
                    (None, _) => ev,
                }
            }
            Event::End(_) => {
                path.pop();
                ev
            }
            other => other,
        };
        writer
            .write_event(ev)
            .map_err(|e| LibvirtError::Xml(e.to_string()))?;
    }
    String::from_utf8(writer.into_inner()).map_err(|e| LibvirtError::Xml(e.to_string()))
}

/// The installation id in pvce's metadata of a libvirt network's XML; `None`
/// when the network carries no pvce mark (another program's, or an older
/// pvce's). Matched by namespace, like [`parse_metadata`].
pub fn parse_network_mark(xml: &str) -> Option<String> {
    let mut reader = NsReader::from_str(xml);
    loop {
        let (ns, ev) = reader.read_resolved_event().ok()?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let ours = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == PVCE_NET_XMLNS.as_bytes());
                if ours && e.local_name().as_ref() == b"net" {
                    return attr_value(e.attributes(), b"installation");
                }
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// pvce's metadata from a domain's XML, if present. Matches the element by namespace,
/// not by prefix, so XML that rebinds the prefix is read correctly.
pub fn parse_metadata(xml: &str) -> Option<PvceMetadata> {
    let mut reader = NsReader::from_str(xml);
    loop {
        let (ns, ev) = reader.read_resolved_event().ok()?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let ours =
                    matches!(ns, ResolveResult::Bound(n) if n.as_ref() == PVCE_XMLNS.as_bytes());
                if ours && e.local_name().as_ref() == b"vm" {
                    return Some(PvceMetadata {
                        id: attr_value(e.attributes(), b"id")?,
                        owner: attr_value(e.attributes(), b"owner")?,
                        course: attr_value(e.attributes(), b"course"),
                        template: attr_value(e.attributes(), b"template"),
                        installation: attr_value(e.attributes(), b"installation"),
                    });
                }
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_xml_moves_only_the_console_listen_address() {
        let xml = r#"<domain type='qemu'><name>x</name><description>listen='10.77.1.2' &amp; more</description><devices><disk type='file'/><graphics type='vnc' port='5900' autoport='yes' listen='10.77.1.2'><listen type='address' address='10.77.1.2'/></graphics><graphics type='spice' autoport='yes'><listen type='network' network='n'/></graphics></devices></domain>"#;
        let out = with_graphics_listen(xml, "10.77.2.2".parse().expect("ip")).expect("rewrite");
        assert!(
            out.contains("listen='10.77.2.2'") || out.contains("listen=\"10.77.2.2\""),
            "{out}"
        );
        assert!(out.contains("address=\"10.77.2.2\""), "{out}");
        // Text, other elements and a listen of another type are untouched.
        assert!(
            out.contains("<description>listen='10.77.1.2' &amp; more</description>"),
            "{out}"
        );
        assert!(
            out.contains("<listen type='network' network='n'/>"),
            "{out}"
        );
        assert_eq!(out.matches("10.77.1.2").count(), 1, "{out}");
        let g = parse_graphics(&out).expect("graphics");
        assert_eq!(g.listen, "10.77.2.2");
        assert_eq!(g.port, 5900);
    }

    fn spec(hv: Hypervisor) -> DomainSpec {
        DomainSpec {
            name: "pvce-1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
            uuid: uuid::Uuid::parse_str("1b4e28ba-2fa1-11d2-883f-0016d3cca427").expect("uuid"),
            title: "alice / OS course / linux <&\"'>".into(),
            vcpus: 2,
            memory_mib: 512,
            hypervisor: hv,
            disk_path: "/var/lib/pvce/overlays/u1/c1/vm1.qcow2".into(),
            disk_cache: DiskCache::Writeback,
            graphics: GraphicsKind::Vnc,
            graphics_listen: "127.0.0.1".into(),
            graphics_password: Some("p<&\"'>w".into()),
            serial_log: Some("/var/log/pvce/vm1.serial.log".into()),
            smbios_serial: "vm-alice-linux".into(),
            metadata: PvceMetadata {
                id: "vm1".into(),
                owner: "u1".into(),
                course: Some("c1".into()),
                template: None,
                installation: Some("inst-1".into()),
            },
            network: Some("default".into()),
            network_mtu: None,
            clipboard_agent: false,
        }
    }

    /// A tiny DOM for assertions: (element path, attributes, text) of every element.
    #[derive(Debug)]
    struct El {
        path: String,
        attrs: Vec<(String, String)>,
        text: String,
    }

    fn flatten(xml: &str) -> Vec<El> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<usize> = Vec::new();
        let mut out: Vec<El> = Vec::new();
        loop {
            let ev = reader.read_event().expect("well-formed XML");
            match ev {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf8");
                    let parent = stack.last().map(|&i| out[i].path.clone());
                    let path = match parent {
                        Some(p) => format!("{p}/{name}"),
                        None => name,
                    };
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.expect("attribute");
                            (
                                String::from_utf8(a.key.as_ref().to_vec()).expect("utf8"),
                                a.unescape_value().expect("escape").into_owned(),
                            )
                        })
                        .collect();
                    out.push(El {
                        path,
                        attrs,
                        text: String::new(),
                    });
                    if matches!(ev, Event::Start(_)) {
                        stack.push(out.len() - 1);
                    }
                }
                Event::Text(t) => {
                    if let Some(&i) = stack.last() {
                        out[i].text.push_str(&t.unescape().expect("text"));
                    }
                }
                Event::End(_) => {
                    stack.pop();
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    fn find<'a>(els: &'a [El], path: &str) -> &'a El {
        els.iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no element {path}"))
    }

    fn has(els: &[El], path: &str) -> bool {
        els.iter().any(|e| e.path == path)
    }

    fn attr<'a>(el: &'a El, name: &str) -> &'a str {
        el.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no attribute {name} on {}", el.path))
    }

    fn has_attr(el: &El, name: &str) -> bool {
        el.attrs.iter().any(|(k, _)| k == name)
    }

    /// Validate against libvirt's RelaxNG schema when `virt-xml-validate` is installed.
    fn schema_validate(xml: &str) {
        let ok = std::process::Command::new("virt-xml-validate")
            .arg("--version")
            .output()
            .is_ok();
        if !ok {
            eprintln!("virt-xml-validate not installed; schema check skipped");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("domain.xml");
        std::fs::write(&file, xml).expect("write xml");
        let out = std::process::Command::new("virt-xml-validate")
            .arg(&file)
            .arg("domain")
            .output()
            .expect("run virt-xml-validate");
        assert!(
            out.status.success(),
            "virt-xml-validate rejected the XML:\n{}\n{}\n{xml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Assertions shared by every hypervisor.
    fn common(els: &[El], s: &DomainSpec) {
        assert_eq!(find(els, "domain/name").text, s.name);
        assert_eq!(find(els, "domain/uuid").text, s.uuid.to_string());
        // Escaped on the way out, intact on the way back.
        assert_eq!(find(els, "domain/title").text, s.title);
        let mem = find(els, "domain/memory");
        assert_eq!(attr(mem, "unit"), "MiB");
        assert_eq!(mem.text, "512");
        assert_eq!(find(els, "domain/vcpu").text, "2");
        let md = find(els, "domain/metadata/pvce:vm");
        assert_eq!(attr(md, "xmlns:pvce"), PVCE_XMLNS);
        assert_eq!(attr(md, "id"), "vm1");
        assert_eq!(attr(md, "owner"), "u1");
        assert_eq!(attr(md, "course"), "c1");
        assert!(!has_attr(md, "template"));
        let sys = find(els, "domain/sysinfo");
        assert_eq!(attr(sys, "type"), "smbios");
        let entry = find(els, "domain/sysinfo/system/entry");
        assert_eq!(attr(entry, "name"), "serial");
        assert_eq!(entry.text, "vm-alice-linux");
        assert_eq!(attr(find(els, "domain/os/smbios"), "mode"), "sysinfo");
        assert_eq!(attr(find(els, "domain/os/type"), "arch"), "x86_64");
        assert_eq!(find(els, "domain/os/type").text, "hvm");
        assert_eq!(attr(find(els, "domain/os/boot"), "dev"), "hd");
        assert!(has(els, "domain/features/acpi"));
        assert!(has(els, "domain/features/apic"));
        assert_eq!(find(els, "domain/on_poweroff").text, "destroy");
        assert_eq!(find(els, "domain/on_reboot").text, "restart");
        assert_eq!(find(els, "domain/on_crash").text, "destroy");
        let disk = find(els, "domain/devices/disk");
        assert_eq!(attr(disk, "type"), "file");
        assert_eq!(attr(disk, "device"), "disk");
        let drv = find(els, "domain/devices/disk/driver");
        assert_eq!(attr(drv, "name"), "qemu");
        assert_eq!(attr(drv, "type"), "qcow2");
        assert_eq!(
            attr(find(els, "domain/devices/disk/source"), "file"),
            "/var/lib/pvce/overlays/u1/c1/vm1.qcow2"
        );
        assert_eq!(attr(find(els, "domain/devices/serial"), "type"), "pty");
        assert_eq!(attr(find(els, "domain/devices/console"), "type"), "pty");
        let input = find(els, "domain/devices/input");
        assert_eq!(attr(input, "type"), "tablet");
        assert_eq!(attr(input, "bus"), "usb");
        let g = find(els, "domain/devices/graphics");
        assert_eq!(attr(g, "type"), "vnc");
        assert_eq!(attr(g, "autoport"), "yes");
        assert_eq!(attr(g, "passwd"), "p<&\"'>w");
        let l = find(els, "domain/devices/graphics/listen");
        assert_eq!(attr(l, "type"), "address");
        assert_eq!(attr(l, "address"), "127.0.0.1");
        assert_eq!(attr(find(els, "domain/devices/video/model"), "type"), "vga");
        assert_eq!(
            attr(find(els, "domain/devices/interface/source"), "network"),
            "default"
        );
        assert!(!has(els, "domain/devices/emulator"));
    }

    #[test]
    fn kvm_xml() {
        let s = spec(Hypervisor::Kvm);
        let xml = domain_xml(&s).expect("xml");
        let els = flatten(&xml);
        common(&els, &s);
        assert_eq!(attr(find(&els, "domain"), "type"), "kvm");
        assert_eq!(attr(find(&els, "domain/os/type"), "machine"), "pc");
        assert!(!has(&els, "domain/os/loader"));
        assert_eq!(attr(find(&els, "domain/cpu"), "mode"), "host-model");
        let drv = find(&els, "domain/devices/disk/driver");
        assert_eq!(attr(drv, "cache"), "writeback");
        assert_eq!(attr(drv, "discard"), "unmap");
        let tgt = find(&els, "domain/devices/disk/target");
        assert_eq!(attr(tgt, "dev"), "vda");
        assert_eq!(attr(tgt, "bus"), "virtio");
        let log = find(&els, "domain/devices/serial/log");
        assert_eq!(attr(log, "file"), "/var/log/pvce/vm1.serial.log");
        assert_eq!(attr(log, "append"), "off");
        assert_eq!(
            attr(find(&els, "domain/devices/interface/model"), "type"),
            "virtio"
        );
        assert_eq!(
            attr(find(&els, "domain/devices/interface/mac"), "address"),
            "52:54:00:cc:a4:27"
        );
        // The rescue serial console opens the first console: a pty serial port.
        assert_eq!(attr(find(&els, "domain/devices/serial"), "type"), "pty");
        assert_eq!(
            attr(find(&els, "domain/devices/console/target"), "type"),
            "serial"
        );
        // No server-side keymap (QEMU's `-k`): the browser sends raw
        // scancodes (QEMU extended key events) and the guest's own layout
        // maps them; a keymap would mistranslate non-US layouts and AltGr.
        assert!(!xml.contains("keymap"), "{xml}");
        assert!(
            !has(&els, "domain/devices/channel"),
            "no agent channel unless asked"
        );
        assert_eq!(
            attr(find(&els, "domain/pm/suspend-to-mem"), "enabled"),
            "no"
        );
        schema_validate(&xml);
    }

    #[test]
    fn a_nic_on_a_vxlan_network_tells_the_guest_its_mtu() {
        let mut s = spec(Hypervisor::Tcg);
        let xml = domain_xml(&s).expect("xml");
        assert!(
            !has(&flatten(&xml), "domain/devices/interface/mtu"),
            "{xml}"
        );
        s.network_mtu = Some(VXLAN_MTU);
        let xml = domain_xml(&s).expect("xml");
        let els = flatten(&xml);
        assert_eq!(
            attr(find(&els, "domain/devices/interface/mtu"), "size"),
            "1450"
        );
        schema_validate(&xml);
    }

    #[test]
    fn a_clipboard_agent_channel_on_request() {
        let mut s = spec(Hypervisor::Tcg);
        s.clipboard_agent = true;
        let xml = domain_xml(&s).expect("xml");
        let els = flatten(&xml);
        let ch = find(&els, "domain/devices/channel");
        assert_eq!(attr(ch, "type"), "qemu-vdagent");
        assert_eq!(
            attr(
                find(&els, "domain/devices/channel/source/clipboard"),
                "copypaste"
            ),
            "yes"
        );
        let tgt = find(&els, "domain/devices/channel/target");
        assert_eq!(attr(tgt, "type"), "virtio");
        assert_eq!(attr(tgt, "name"), "com.redhat.spice.0");
        schema_validate(&xml);
        // Xen has no qemu-vdagent: asked or not, no channel.
        let mut x = spec(Hypervisor::Xen);
        x.clipboard_agent = true;
        let xml = domain_xml(&x).expect("xml");
        assert!(!has(&flatten(&xml), "domain/devices/channel"), "{xml}");
    }

    #[test]
    fn tcg_xml() {
        let mut s = spec(Hypervisor::Tcg);
        s.disk_cache = DiskCache::None;
        let xml = domain_xml(&s).expect("xml");
        let els = flatten(&xml);
        common(&els, &s);
        assert_eq!(attr(find(&els, "domain"), "type"), "qemu");
        assert_eq!(attr(find(&els, "domain/os/type"), "machine"), "pc");
        let cpu = find(&els, "domain/cpu");
        assert_eq!(attr(cpu, "mode"), "maximum");
        assert_eq!(attr(cpu, "migratable"), "on");
        assert_eq!(
            attr(find(&els, "domain/devices/disk/driver"), "cache"),
            "none"
        );
        assert_eq!(
            attr(find(&els, "domain/devices/disk/target"), "bus"),
            "virtio"
        );
        schema_validate(&xml);
    }

    #[test]
    fn xen_xml() {
        let mut s = spec(Hypervisor::Xen);
        s.graphics = GraphicsKind::Spice;
        s.graphics_password = Some("a longer spice password".into());
        let xml = domain_xml(&s).expect("xml");
        let els = flatten(&xml);
        assert_eq!(attr(find(&els, "domain"), "type"), "xen");
        assert_eq!(attr(find(&els, "domain/os/type"), "machine"), "xenfv");
        assert_eq!(find(&els, "domain/os/type").text, "hvm");
        assert_eq!(find(&els, "domain/os/loader").text, XEN_HVMLOADER);
        assert!(has(&els, "domain/features/pae"));
        assert!(!has(&els, "domain/cpu"));
        assert!(!has(&els, "domain/pm"));
        assert!(!has(&els, "domain/devices/emulator"));
        let drv = find(&els, "domain/devices/disk/driver");
        assert_eq!(attr(drv, "name"), "qemu");
        assert_eq!(attr(drv, "type"), "qcow2");
        assert!(!has_attr(drv, "cache"));
        let tgt = find(&els, "domain/devices/disk/target");
        assert_eq!(attr(tgt, "dev"), "xvda");
        assert_eq!(attr(tgt, "bus"), "xen");
        assert!(!has(&els, "domain/devices/serial/log"));
        assert!(!has(&els, "domain/devices/interface/model"));
        assert!(
            attr(find(&els, "domain/devices/interface/mac"), "address").starts_with("00:16:3e:")
        );
        let g = find(&els, "domain/devices/graphics");
        assert_eq!(attr(g, "type"), "spice");
        assert_eq!(attr(g, "passwd"), "a longer spice password");
        schema_validate(&xml);
    }

    #[test]
    fn optional_parts_are_omitted() {
        let mut s = spec(Hypervisor::Tcg);
        s.network = None;
        s.serial_log = None;
        s.graphics_password = None;
        s.metadata.course = None;
        s.metadata.template = Some("t1".into());
        let xml = domain_xml(&s).expect("xml");
        let els = flatten(&xml);
        assert!(!has(&els, "domain/devices/interface"));
        assert!(!has(&els, "domain/devices/serial/log"));
        assert!(has(&els, "domain/devices/serial/target"));
        assert!(!has_attr(find(&els, "domain/devices/graphics"), "passwd"));
        let md = find(&els, "domain/metadata/pvce:vm");
        assert!(!has_attr(md, "course"));
        assert_eq!(attr(md, "template"), "t1");
        schema_validate(&xml);
    }

    #[test]
    fn bad_specs_are_refused() {
        type Mutate = Box<dyn Fn(&mut DomainSpec)>;
        let cases: Vec<(&str, Mutate)> = vec![
            ("name", Box::new(|s| s.name = "a/b".into())),
            ("name", Box::new(|s| s.name = String::new())),
            ("name", Box::new(|s| s.name = "..".into())),
            ("title", Box::new(|s| s.title = "two\nlines".into())),
            ("title", Box::new(|s| s.title = "bell\u{7}".into())),
            ("vcpus", Box::new(|s| s.vcpus = 0)),
            ("memory", Box::new(|s| s.memory_mib = 0)),
            (
                "absolute",
                Box::new(|s| s.disk_path = "rel/disk.qcow2".into()),
            ),
            ("absolute", Box::new(|s| s.serial_log = Some("log".into()))),
            (
                "IP",
                Box::new(|s| s.graphics_listen = "0.0.0.0' x='".into()),
            ),
            (
                "8 bytes",
                Box::new(|s| s.graphics_password = Some("123456789".into())),
            ),
            (
                "empty",
                Box::new(|s| s.graphics_password = Some(String::new())),
            ),
            (
                "metadata.owner",
                Box::new(|s| s.metadata.owner = "\u{0}".into()),
            ),
            ("network", Box::new(|s| s.network = Some("net work".into()))),
        ];
        for (needle, mutate) in cases {
            let mut s = spec(Hypervisor::Tcg);
            mutate(&mut s);
            match domain_xml(&s) {
                Err(LibvirtError::InvalidSpec(msg)) => {
                    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}")
                }
                other => panic!("expected InvalidSpec for {needle}, got {other:?}"),
            }
        }
    }

    #[test]
    fn metadata_round_trips_and_ignores_foreign_namespaces() {
        let s = spec(Hypervisor::Tcg);
        let xml = domain_xml(&s).expect("xml");
        assert_eq!(parse_metadata(&xml), Some(s.metadata.clone()));

        // Another prefix bound to our namespace still counts…
        let other_prefix = r#"<domain><metadata><x:vm xmlns:x="https://pvce.org/xmlns/domain/1" id="a" owner="b"/></metadata></domain>"#;
        assert_eq!(
            parse_metadata(other_prefix),
            Some(PvceMetadata {
                id: "a".into(),
                owner: "b".into(),
                course: None,
                template: None,
                installation: None,
            })
        );
        // …our prefix bound to someone else's namespace does not, nor does no metadata,
        // nor an element missing required attributes, nor garbage.
        let foreign = r#"<domain><metadata><pvce:vm xmlns:pvce="https://example.org/ns" id="a" owner="b"/></metadata></domain>"#;
        assert_eq!(parse_metadata(foreign), None);
        assert_eq!(parse_metadata("<domain><name>x</name></domain>"), None);
        let partial = r#"<domain><metadata><pvce:vm xmlns:pvce="https://pvce.org/xmlns/domain/1" id="a"/></metadata></domain>"#;
        assert_eq!(parse_metadata(partial), None);
        assert_eq!(parse_metadata("<domain><metadata"), None);
    }

    #[test]
    fn graphics_from_live_xml() {
        // Shape of libvirt 11's live XML for a running VNC domain.
        let live = r#"<domain type='qemu' id='1'>
  <name>t</name>
  <metadata><pvce:vm xmlns:pvce="https://pvce.org/xmlns/domain/1" id="a" owner="b"/></metadata>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video><model type='vga' vram='16384' heads='1' primary='yes'/></video>
  </devices>
</domain>"#;
        assert_eq!(
            parse_graphics(live),
            Some(Graphics {
                kind: GraphicsKind::Vnc,
                listen: "127.0.0.1".into(),
                port: 5901,
                tls_port: None
            })
        );

        // Address only in the <listen> child; SPICE with a TLS port.
        let spice = r#"<domain><devices><graphics type='spice' port='5902' tlsPort='5903' autoport='yes'><listen type='address' address='10.0.0.5'/></graphics></devices></domain>"#;
        assert_eq!(
            parse_graphics(spice),
            Some(Graphics {
                kind: GraphicsKind::Spice,
                listen: "10.0.0.5".into(),
                port: 5902,
                tls_port: Some(5903)
            })
        );

        // Not running: autoport not yet resolved.
        let inactive = r#"<domain><devices><graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/></devices></domain>"#;
        assert_eq!(parse_graphics(inactive), None);

        // Other graphics types are skipped in favour of a later VNC one.
        let mixed = r#"<domain><devices><graphics type='egl-headless'/><graphics type='vnc' port='5900' listen='::1'/></devices></domain>"#;
        assert_eq!(parse_graphics(mixed).map(|g| g.listen), Some("::1".into()));

        // Our own (pre-start) XML has no port.
        let ours = domain_xml(&spec(Hypervisor::Tcg)).expect("xml");
        assert_eq!(parse_graphics(&ours), None);
        assert_eq!(parse_graphics("not xml <"), None);
    }

    #[test]
    fn console_password_from_secure_xml() {
        let secure = r#"<domain><devices><graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1' passwd='s3cr&amp;t' passwdValidTo='2026-11-23T17:30:05'><listen type='address' address='127.0.0.1'/></graphics></devices></domain>"#;
        let (g, auth) = parse_console(secure).expect("console");
        assert_eq!(g.port, 5901);
        assert_eq!(auth.password.as_deref(), Some("s3cr&t"));
        assert_eq!(
            auth.valid_to,
            Some(time::macros::datetime!(2026-11-23 17:30:05 UTC))
        );
        assert!(
            !format!("{auth:?}").contains("s3cr"),
            "Debug shows the password"
        );
        // Without the secure flag libvirt leaves passwd out.
        let plain = r#"<domain><devices><graphics type='vnc' port='5901' listen='127.0.0.1'/></devices></domain>"#;
        assert_eq!(
            parse_console(plain).expect("console").1,
            ConsoleAuth::default()
        );
        // An expiry we cannot read counts as expired.
        let odd = r#"<domain><devices><graphics type='vnc' port='5901' listen='127.0.0.1' passwd='x' passwdValidTo='soon'/></devices></domain>"#;
        assert_eq!(
            parse_console(odd).expect("console").1.valid_to,
            Some(time::OffsetDateTime::UNIX_EPOCH)
        );
    }

    #[test]
    fn graphics_password_update_xml() {
        let live = Graphics {
            kind: GraphicsKind::Spice,
            listen: "10.0.0.5".into(),
            port: 5902,
            tls_port: Some(5903),
        };
        let at = time::macros::datetime!(2026-11-23 19:30:05 +02:00);
        let xml = graphics_password_xml(&live, "a'b<c", Some(at)).expect("xml");
        let doc = flatten(&xml);
        let g = find(&doc, "graphics");
        assert_eq!(attr(g, "type"), "spice");
        assert_eq!(attr(g, "port"), "5902");
        assert_eq!(attr(g, "tlsPort"), "5903");
        assert_eq!(attr(g, "autoport"), "yes");
        assert_eq!(attr(g, "passwd"), "a'b<c");
        assert_eq!(attr(g, "passwdValidTo"), "2026-11-23T17:30:05");
        assert_eq!(attr(find(&doc, "graphics/listen"), "address"), "10.0.0.5");
        // The live XML reads back what was set.
        let (_, auth) =
            parse_console(&format!("<domain><devices>{xml}</devices></domain>")).expect("console");
        assert_eq!(auth.password.as_deref(), Some("a'b<c"));
        assert_eq!(auth.valid_to, Some(at));

        let vnc = Graphics {
            kind: GraphicsKind::Vnc,
            ..live
        };
        let xml = graphics_password_xml(&vnc, "12345678", None).expect("xml");
        assert!(!has_attr(find(&flatten(&xml), "graphics"), "passwdValidTo"));
        assert!(graphics_password_xml(&vnc, "123456789", None).is_err());
        assert!(graphics_password_xml(&vnc, "", None).is_err());
        assert!(graphics_password_xml(&vnc, "a\nb", None).is_err());
    }

    #[test]
    fn isolated_network_has_no_forward_and_no_ip() {
        let spec = NetworkSpec {
            name: "pvce-lab-abc".into(),
            bridge: "pvl0123456789ab".into(),
            installation: "inst-1".into(),
            vxlan: None,
        };
        let xml = network_xml(&spec).expect("xml");
        let els = flatten(&xml);
        assert_eq!(find(&els, "network/name").text, "pvce-lab-abc");
        // The installation's mark, read back by namespace.
        let mark = find(&els, "network/metadata/pvce:net");
        assert_eq!(attr(mark, "xmlns:pvce"), PVCE_NET_XMLNS);
        assert_eq!(parse_network_mark(&xml).as_deref(), Some("inst-1"));
        assert_eq!(
            parse_network_mark("<network><name>x</name></network>"),
            None
        );
        let foreign_ns = r#"<network><metadata><pvce:net xmlns:pvce="https://example.org" installation="inst-1"/></metadata></network>"#;
        assert_eq!(parse_network_mark(foreign_ns), None);
        assert_eq!(
            attr(find(&els, "network/bridge"), "name"),
            "pvl0123456789ab"
        );
        assert_eq!(attr(find(&els, "network/bridge"), "stp"), "off");
        for absent in [
            "network/forward",
            "network/ip",
            "network/dns",
            "network/domain",
            "network/mtu",
        ] {
            assert!(!has(&els, absent), "{absent} in {xml}");
        }
        // A single-node network tells the hook nothing to do.
        for a in ["vni", "group", "local"] {
            assert!(!has_attr(mark, a), "{a} in {xml}");
        }
        for bad_bridge in ["", "pvl0123456789abc", "Pvl1", "pv l", "-pvl", "pvl<x>"] {
            let s = NetworkSpec {
                bridge: bad_bridge.into(),
                ..spec.clone()
            };
            assert!(network_xml(&s).is_err(), "{bad_bridge:?}");
        }
        let s = NetworkSpec {
            name: "a/b".into(),
            ..spec
        };
        assert!(network_xml(&s).is_err());
    }

    #[test]
    fn a_network_spanning_nodes_carries_its_vxlan_for_the_hook() {
        let vx = Vxlan {
            vni: 4242,
            group: std::net::Ipv4Addr::new(239, 0, 16, 146),
            local: std::net::Ipv4Addr::new(10, 77, 1, 2),
        };
        let spec = NetworkSpec {
            name: "pvce-lab-abc".into(),
            bridge: "pvl0123456789ab".into(),
            installation: "inst-1".into(),
            vxlan: Some(vx.clone()),
        };
        let xml = network_xml(&spec).expect("xml");
        let els = flatten(&xml);
        let mark = find(&els, "network/metadata/pvce:net");
        assert_eq!(attr(mark, "installation"), "inst-1");
        assert_eq!(attr(mark, "vni"), "4242");
        assert_eq!(attr(mark, "group"), "239.0.16.146");
        assert_eq!(attr(mark, "local"), "10.77.1.2");
        assert_eq!(parse_network_mark(&xml).as_deref(), Some("inst-1"));
        // Room for the 50 bytes of encapsulation on a 1500-byte underlay.
        assert_eq!(attr(find(&els, "network/mtu"), "size"), "1450");
        // Still isolated: the segment is the only way off the bridge.
        for absent in ["network/forward", "network/ip"] {
            assert!(!has(&els, absent), "{absent} in {xml}");
        }
        for bad in [
            Vxlan {
                vni: 0,
                ..vx.clone()
            },
            Vxlan {
                vni: MAX_VNI + 1,
                ..vx.clone()
            },
            Vxlan {
                group: std::net::Ipv4Addr::new(10, 0, 0, 1),
                ..vx.clone()
            },
            Vxlan {
                local: std::net::Ipv4Addr::UNSPECIFIED,
                ..vx.clone()
            },
            Vxlan {
                local: std::net::Ipv4Addr::new(239, 1, 1, 1),
                ..vx.clone()
            },
        ] {
            let s = NetworkSpec {
                vxlan: Some(bad.clone()),
                ..spec.clone()
            };
            assert!(network_xml(&s).is_err(), "{bad:?}");
        }
    }
}
