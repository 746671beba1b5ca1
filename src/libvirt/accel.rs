//! Which accelerator QEMU guests use: the `auto|kvm|tcg` setting.
//!
//! Why not simply "KVM when /dev/kvm exists": the development and CI machines have a
//! `/dev/kvm` backed by nested PVM. A `type='kvm'` domain starts there and SeaBIOS runs,
//! but a bootloader's 16/32-bit code hits a KVM emulation failure and the domain pauses.
//! PVM exposes no `vmx`/`svm` CPU flag, real hardware virtualisation does, so `auto`
//! requires the flag *and* a usable `/dev/kvm`; anything else gets TCG, which is slow
//! but always correct. `kvm`/`tcg` force the choice.
//!
//! Two ways to resolve `auto`: [`resolve_qemu_hypervisor`] looks at the local machine
//! (a node on the same host as the server); [`resolve_from_capabilities`] uses a node's
//! libvirt capabilities XML, which is what works for remote nodes
//! (`Node::qemu_hypervisor` in `conn.rs` does that).

use std::fmt;
use std::str::FromStr;

use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

use super::xml::Hypervisor;

/// The accelerator setting from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelSetting {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl FromStr for AccelSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" | "qemu" => Ok(Self::Tcg),
            other => Err(format!("unknown accelerator {other:?} (auto, kvm or tcg)")),
        }
    }
}

impl fmt::Display for AccelSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        })
    }
}

/// The decision itself, given the facts.
pub fn decide(setting: AccelSetting, hw_virt_flag: bool, kvm_usable: bool) -> Hypervisor {
    match setting {
        AccelSetting::Kvm => Hypervisor::Kvm,
        AccelSetting::Tcg => Hypervisor::Tcg,
        AccelSetting::Auto if hw_virt_flag && kvm_usable => Hypervisor::Kvm,
        AccelSetting::Auto => Hypervisor::Tcg,
    }
}

/// Whether `/proc/cpuinfo` text shows hardware virtualisation (`vmx` or `svm` flag).
pub fn cpuinfo_has_hw_virt(cpuinfo: &str) -> bool {
    cpuinfo.lines().any(|line| {
        let Some((key, value)) = line.split_once(':') else {
            return false;
        };
        key.trim() == "flags"
            && value
                .split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
    })
}

/// Resolve the setting for QEMU guests on *this* machine.
pub fn resolve_qemu_hypervisor(setting: AccelSetting) -> Hypervisor {
    if setting != AccelSetting::Auto {
        return decide(setting, false, false);
    }
    let hw = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| cpuinfo_has_hw_virt(&s))
        .unwrap_or(false);
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    decide(setting, hw, kvm)
}

/// Resolve the setting for QEMU guests on a node from its `virConnectGetCapabilities`
/// XML: libvirt lists `<domain type='kvm'/>` for x86_64 guests only when it can use
/// `/dev/kvm`, and the host CPU's `<feature name='vmx'/>` (or `svm`) when the CPU has
/// hardware virtualisation. Unparseable XML counts as "no KVM".
pub fn resolve_from_capabilities(setting: AccelSetting, caps_xml: &str) -> Hypervisor {
    if setting != AccelSetting::Auto {
        return decide(setting, false, false);
    }
    let (hw, kvm) = scan_capabilities(caps_xml).unwrap_or((false, false));
    decide(setting, hw, kvm)
}

/// (host CPU has vmx/svm, x86_64 guests may use type kvm)
fn scan_capabilities(xml: &str) -> Option<(bool, bool)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut arch_x86_64 = false;
    let (mut hw, mut kvm) = (false, false);
    loop {
        let ev = reader.read_event().ok()?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.local_name().as_ref().to_vec();
                let attr = |k: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == k)
                        .map(|a| a.value.into_owned())
                };
                let at = |want: &[&[u8]]| {
                    path.len() == want.len()
                        && path.iter().zip(want).all(|(a, b)| a.as_slice() == *b)
                };
                if at(&[b"capabilities", b"host", b"cpu"]) && name == b"feature" {
                    let f = attr(b"name");
                    hw |= matches!(f.as_deref(), Some(b"vmx" | b"svm"));
                } else if at(&[b"capabilities", b"guest"]) && name == b"arch" {
                    arch_x86_64 = attr(b"name").as_deref() == Some(b"x86_64".as_slice());
                } else if at(&[b"capabilities", b"guest", b"arch"])
                    && name == b"domain"
                    && arch_x86_64
                {
                    kvm |= attr(b"type").as_deref() == Some(b"kvm".as_slice());
                }
                if matches!(ev, Event::Start(_)) {
                    path.push(name);
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Eof => return Some((hw, kvm)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PVM_CPUINFO: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\n\
        flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep hypervisor lahf_lm\n\
        bugs\t\t: sysret_ss_attrs\n";
    const VMX_CPUINFO: &str = "processor\t: 0\nflags\t\t: fpu vme vmx ept\n\
        vmx flags\t: vnmi preemption_timer\n";
    const SVM_CPUINFO: &str = "flags\t\t: fpu svm npt\n";

    #[test]
    fn cpuinfo_flags() {
        assert!(!cpuinfo_has_hw_virt(PVM_CPUINFO));
        assert!(cpuinfo_has_hw_virt(VMX_CPUINFO));
        assert!(cpuinfo_has_hw_virt(SVM_CPUINFO));
        // "vmx flags" is not the flags line, and substrings do not count.
        assert!(!cpuinfo_has_hw_virt(
            "vmx flags\t: vmx\nflags\t: svmx vmxe\n"
        ));
        assert!(!cpuinfo_has_hw_virt(""));
    }

    #[test]
    fn decision_table() {
        use Hypervisor::{Kvm, Tcg};
        assert_eq!(decide(AccelSetting::Auto, true, true), Kvm);
        assert_eq!(decide(AccelSetting::Auto, true, false), Tcg);
        assert_eq!(decide(AccelSetting::Auto, false, true), Tcg); // nested PVM
        assert_eq!(decide(AccelSetting::Auto, false, false), Tcg);
        assert_eq!(decide(AccelSetting::Kvm, false, false), Kvm);
        assert_eq!(decide(AccelSetting::Tcg, true, true), Tcg);
    }

    #[test]
    fn setting_parses() {
        assert_eq!("AUTO".parse(), Ok(AccelSetting::Auto));
        assert_eq!("kvm".parse(), Ok(AccelSetting::Kvm));
        assert_eq!("tcg".parse(), Ok(AccelSetting::Tcg));
        assert!("xen".parse::<AccelSetting>().is_err());
        assert_eq!(AccelSetting::Tcg.to_string(), "tcg");
    }

    fn caps(feature: &str, domains: &str) -> String {
        format!(
            "<capabilities><host><cpu><arch>x86_64</arch><model>Skylake</model>\
             <feature name='{feature}'/></cpu></host>\
             <guest><os_type>hvm</os_type><arch name='i686'><domain type='kvm'/></arch></guest>\
             <guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>\
             {domains}</arch></guest></capabilities>"
        )
    }

    #[test]
    fn capabilities() {
        use Hypervisor::{Kvm, Tcg};
        let a = AccelSetting::Auto;
        let both = "<domain type='qemu'/><domain type='kvm'/>";
        assert_eq!(resolve_from_capabilities(a, &caps("vmx", both)), Kvm);
        assert_eq!(resolve_from_capabilities(a, &caps("svm", both)), Kvm);
        // PVM: kvm offered, no vmx/svm.
        assert_eq!(resolve_from_capabilities(a, &caps("avx2", both)), Tcg);
        // vmx but libvirt cannot use /dev/kvm (kvm only for i686 does not count).
        let qemu_only = "<domain type='qemu'/>";
        assert_eq!(resolve_from_capabilities(a, &caps("vmx", qemu_only)), Tcg);
        assert_eq!(resolve_from_capabilities(a, "garbage<"), Tcg);
        assert_eq!(
            resolve_from_capabilities(AccelSetting::Kvm, "garbage<"),
            Kvm
        );
    }

    #[test]
    fn this_machine() {
        // Forced settings never look at the machine.
        assert_eq!(resolve_qemu_hypervisor(AccelSetting::Tcg), Hypervisor::Tcg);
        assert_eq!(resolve_qemu_hypervisor(AccelSetting::Kvm), Hypervisor::Kvm);
        // Auto must agree with the facts of the machine running the test.
        let hw = cpuinfo_has_hw_virt(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
        if !hw {
            assert_eq!(resolve_qemu_hypervisor(AccelSetting::Auto), Hypervisor::Tcg);
        }
    }
}
