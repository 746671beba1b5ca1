//! What a node's hypervisor can run: graphics types, machine types and
//! accelerators, read from libvirt's capabilities when a node connects.
//!
//! Why: a QEMU built or installed without its SPICE module refuses a SPICE
//! domain only when it is created ("spice graphics are not supported with
//! this QEMU"), after placement chose the node. Reading the node's
//! capabilities once per connection lets placement skip nodes that cannot
//! run a VM's spec and say which node lacks what.
//!
//! Sources: graphics come from `virConnectGetDomainCapabilities` (the
//! `<devices><graphics>` enum) for the domain type pvce creates on that node;
//! machine types and accelerators (libvirt's domain types) from the x86_64
//! `hvm` guest of `virConnectGetCapabilities`. Both are parsed with typed
//! serde structs; elements pvce does not use are ignored.
//!
//! Accelerators are named as the `--accel` setting names them: `kvm`, `tcg`
//! (libvirt's domain type `qemu`), plus `xen` (and `test` for libvirt's
//! test driver). `kvm` is listed when libvirt offers it, which is not the
//! same as `auto` choosing it (see [`super::accel`]).

use serde::{Deserialize, Serialize};

use super::LibvirtError;
use super::accel::AccelSetting;
use super::xml::GraphicsKind;

/// A node's capabilities as the API shows them (`node.capabilities`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeCapabilities {
    /// Graphics types domains may use (`vnc`, `spice`, `sdl`, …).
    pub graphics: Vec<String>,
    /// Machine types of x86_64 guests (`pc`, `q35`, `pc-i440fx-10.0`, …).
    pub machines: Vec<String>,
    /// Accelerators: `kvm`, `tcg`, `xen` (or `test`).
    pub accelerators: Vec<String>,
}

impl NodeCapabilities {
    /// From the host capabilities XML and the domain capabilities XML of
    /// the domain type pvce uses on the node.
    pub fn parse(caps_xml: &str, domcaps_xml: &str) -> Result<Self, LibvirtError> {
        let (machines, accelerators) = parse_guests(caps_xml)?;
        Ok(Self {
            graphics: parse_graphics_types(domcaps_xml)?,
            machines,
            accelerators,
        })
    }

    /// Why this node cannot run a domain with `graphics` under the
    /// accelerator setting `accel` (e.g. "has no SPICE graphics"), or `None`
    /// when it can.
    pub fn lacks(&self, graphics: GraphicsKind, accel: AccelSetting) -> Option<String> {
        let has = |list: &[String], x: &str| list.iter().any(|v| v == x);
        if !has(&self.graphics, &graphics.to_string()) {
            let name = match graphics {
                GraphicsKind::Vnc => "VNC",
                GraphicsKind::Spice => "SPICE",
            };
            return Some(format!("has no {name} graphics"));
        }
        // Xen nodes always run Xen domains, whatever the QEMU setting says.
        if has(&self.accelerators, "xen") {
            return None;
        }
        match accel {
            AccelSetting::Kvm if !has(&self.accelerators, "kvm") => Some("has no KVM".into()),
            AccelSetting::Tcg if !has(&self.accelerators, "tcg") => {
                Some("has no TCG (QEMU emulation)".into())
            }
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct XDomainCaps {
    #[serde(default)]
    devices: Option<XDevices>,
}

#[derive(Debug, Deserialize)]
struct XDevices {
    #[serde(default)]
    graphics: Option<XDevice>,
}

/// A `<devices>` child: `supported='yes|no'` and its `<enum>`s.
#[derive(Debug, Deserialize)]
struct XDevice {
    #[serde(rename = "@supported", default)]
    supported: Option<String>,
    #[serde(rename = "enum", default)]
    enums: Vec<XEnum>,
}

#[derive(Debug, Deserialize)]
struct XEnum {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "value", default)]
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct XCaps {
    #[serde(rename = "guest", default)]
    guests: Vec<XGuest>,
}

#[derive(Debug, Deserialize)]
struct XGuest {
    os_type: String,
    arch: XArch,
}

#[derive(Debug, Deserialize)]
struct XArch {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "machine", default)]
    machines: Vec<XMachine>,
    #[serde(rename = "domain", default)]
    domains: Vec<XDomainType>,
}

#[derive(Debug, Deserialize)]
struct XMachine {
    #[serde(rename = "$text")]
    name: String,
}

#[derive(Debug, Deserialize)]
struct XDomainType {
    #[serde(rename = "@type")]
    kind: String,
    /// Older libvirt lists per-domain-type machines here.
    #[serde(rename = "machine", default)]
    machines: Vec<XMachine>,
}

/// Graphics types of a domain capabilities document; none when libvirt
/// says graphics are unsupported or does not report them (the test driver).
fn parse_graphics_types(xml: &str) -> Result<Vec<String>, LibvirtError> {
    let caps: XDomainCaps = quick_xml::de::from_str(xml)
        .map_err(|e| LibvirtError::Xml(format!("domain capabilities: {e}")))?;
    let Some(g) = caps.devices.and_then(|d| d.graphics) else {
        return Ok(Vec::new());
    };
    if g.supported.as_deref() != Some("yes") {
        return Ok(Vec::new());
    }
    Ok(g.enums
        .into_iter()
        .find(|e| e.name == "type")
        .map(|e| e.values)
        .unwrap_or_default())
}

/// (machine types, accelerators) of the x86_64 `hvm` guests, or of every
/// `hvm` guest when there is no x86_64 one (libvirt's test driver offers
/// only i686). Sorted, without duplicates.
fn parse_guests(xml: &str) -> Result<(Vec<String>, Vec<String>), LibvirtError> {
    let caps: XCaps = quick_xml::de::from_str(xml)
        .map_err(|e| LibvirtError::Xml(format!("capabilities: {e}")))?;
    let hvm: Vec<&XGuest> = caps.guests.iter().filter(|g| g.os_type == "hvm").collect();
    let x86_64: Vec<&XGuest> = hvm
        .iter()
        .copied()
        .filter(|g| g.arch.name == "x86_64")
        .collect();
    let guests = if x86_64.is_empty() { hvm } else { x86_64 };
    let mut machines = Vec::new();
    let mut accels = Vec::new();
    for g in guests {
        machines.extend(g.arch.machines.iter().map(|m| m.name.trim().to_owned()));
        for d in &g.arch.domains {
            machines.extend(d.machines.iter().map(|m| m.name.trim().to_owned()));
            accels.push(match d.kind.as_str() {
                "qemu" => "tcg".to_owned(),
                other => other.to_owned(),
            });
        }
    }
    machines.retain(|m| !m.is_empty());
    for list in [&mut machines, &mut accels] {
        list.sort();
        list.dedup();
    }
    Ok((machines, accels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `virsh domcapabilities` of QEMU 10.0 with its SPICE module (Debian's
    /// `qemu-system-modules-spice`), libvirt 11.3; the long list of CPU
    /// models is cut.
    const DOMCAPS_QEMU: &str = include_str!("testdata/domcaps-qemu-10.0-kvm.xml");
    /// `virsh capabilities` of the same host.
    const CAPS_QEMU: &str = include_str!("testdata/capabilities-qemu-10.0.xml");
    /// The same for libvirt's `test:///default` driver.
    const DOMCAPS_TEST: &str = include_str!("testdata/domcaps-test.xml");
    const CAPS_TEST: &str = include_str!("testdata/capabilities-test.xml");

    /// What the same QEMU reports without its SPICE module installed: the
    /// `spice` graphics type (and the `spicevmc` channel) are gone.
    fn domcaps_without_spice() -> String {
        DOMCAPS_QEMU
            .replace("<value>spice</value>", "")
            .replace("<value>spicevmc</value>", "")
    }

    #[test]
    fn real_qemu_capabilities_parse() {
        let c = NodeCapabilities::parse(CAPS_QEMU, DOMCAPS_QEMU).expect("parse");
        assert_eq!(c.graphics, ["sdl", "vnc", "spice", "egl-headless", "dbus"]);
        assert_eq!(c.accelerators, ["kvm", "tcg"]);
        for m in ["pc", "q35", "pc-i440fx-10.0", "pc-q35-10.0", "isapc"] {
            assert!(c.machines.iter().any(|x| x == m), "{m}: {:?}", c.machines);
        }
        assert!(c.machines.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        assert_eq!(c.lacks(GraphicsKind::Spice, AccelSetting::Auto), None);
        assert_eq!(c.lacks(GraphicsKind::Vnc, AccelSetting::Kvm), None);
        assert_eq!(c.lacks(GraphicsKind::Vnc, AccelSetting::Tcg), None);
    }

    #[test]
    fn qemu_without_its_spice_module_lacks_spice_only() {
        let c = NodeCapabilities::parse(CAPS_QEMU, &domcaps_without_spice()).expect("parse");
        assert!(!c.graphics.iter().any(|g| g == "spice"), "{:?}", c.graphics);
        assert_eq!(
            c.lacks(GraphicsKind::Spice, AccelSetting::Auto).as_deref(),
            Some("has no SPICE graphics")
        );
        assert_eq!(c.lacks(GraphicsKind::Vnc, AccelSetting::Auto), None);
    }

    #[test]
    fn accelerators_decide_forced_settings() {
        let no_kvm = CAPS_QEMU.replace("<domain type='kvm'/>", "");
        let c = NodeCapabilities::parse(&no_kvm, DOMCAPS_QEMU).expect("parse");
        assert_eq!(c.accelerators, ["tcg"]);
        assert_eq!(
            c.lacks(GraphicsKind::Vnc, AccelSetting::Kvm).as_deref(),
            Some("has no KVM")
        );
        // auto falls back to TCG, so any QEMU node qualifies.
        assert_eq!(c.lacks(GraphicsKind::Vnc, AccelSetting::Auto), None);
        let xen = NodeCapabilities {
            graphics: vec!["vnc".into()],
            machines: vec!["xenfv".into()],
            accelerators: vec!["xen".into()],
        };
        assert_eq!(xen.lacks(GraphicsKind::Vnc, AccelSetting::Kvm), None);
    }

    #[test]
    fn the_test_driver_reports_no_graphics() {
        let c = NodeCapabilities::parse(CAPS_TEST, DOMCAPS_TEST).expect("parse");
        assert!(c.graphics.is_empty(), "{c:?}");
        assert_eq!(c.accelerators, ["test"]);
        assert_eq!(
            c.lacks(GraphicsKind::Vnc, AccelSetting::Auto).as_deref(),
            Some("has no VNC graphics")
        );
    }

    #[test]
    fn unsupported_graphics_and_garbage() {
        let off = DOMCAPS_QEMU.replace("<graphics supported='yes'>", "<graphics supported='no'>");
        assert!(parse_graphics_types(&off).expect("parse").is_empty());
        assert!(NodeCapabilities::parse("<capabilities", DOMCAPS_QEMU).is_err());
        assert!(NodeCapabilities::parse(CAPS_QEMU, "not xml <").is_err());
    }
}
