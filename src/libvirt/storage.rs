//! Storage pools and volumes on a node: the per-node template store and
//! node-local personal layers ([`crate::vms::layers`]).
//!
//! A node's template store is a libvirt `dir` pool. Template layers are copied
//! into it with `virStorageVolUpload` (the bytes travel over the libvirt
//! connection, so nodes need nothing but libvirtd) and read back with
//! `virStorageVolDownload` to verify a checksum. Pool and volume XML are built
//! from typed structs like the domain XML. A node-local personal layer is a
//! qcow2 volume libvirt creates on its template's layer (`<backingStore>` with
//! an explicit format) and that pvce downloads/uploads whole for offline work.
//!
//! Transfers are long calls: they run on one of the node's workers with a
//! deadline proportional to the size ([`transfer_deadline`]), not the
//! connection's short call deadline.
//!
//! The same pool also tells a node's time ([`Node::probe_clock`]): libvirt
//! has no call that returns a host's clock, but a file volume's XML carries
//! the file's `<timestamps>`, which the node's kernel stamped when libvirt
//! created it. An empty probe volume (`pvce-clock-probe-*`) is created,
//! read and deleted in one worker call; no domain is touched.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

use super::LibvirtError;
use super::conn::Node;

/// What pvce may do to a pool of the name it asks for (see
/// [`Node::ensure_dir_pool`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolClaim {
    /// The name embeds this installation's id: a pool of that name is ours
    /// wherever it points.
    pub derived: bool,
    /// An older pvce's name for the same pool, adopted when it points at
    /// exactly our directory.
    pub legacy: Option<String>,
}

/// Capacity figures of a pool, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolInfo {
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

#[derive(Serialize)]
#[serde(rename = "pool")]
struct XPool<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    name: &'a str,
    target: XPoolTarget<'a>,
}

#[derive(Serialize)]
struct XPoolTarget<'a> {
    path: &'a str,
}

#[derive(Serialize)]
#[serde(rename = "volume")]
struct XVolume<'a> {
    name: &'a str,
    capacity: XBytes,
    allocation: XBytes,
    target: XVolTarget,
}

#[derive(Serialize)]
struct XBytes {
    #[serde(rename = "@unit")]
    unit: &'static str,
    #[serde(rename = "$value")]
    value: u64,
}

#[derive(Serialize)]
struct XVolTarget {
    format: XFormat,
}

/// A qcow2 volume on a backing file (a personal layer on a template).
#[derive(Serialize)]
#[serde(rename = "volume")]
struct XLayerVolume<'a> {
    name: &'a str,
    capacity: XBytes,
    target: XVolTarget,
    #[serde(rename = "backingStore")]
    backing_store: XBackingStore<'a>,
}

#[derive(Serialize)]
struct XBackingStore<'a> {
    path: &'a str,
    format: XFormat,
}

#[derive(Serialize)]
struct XFormat {
    #[serde(rename = "@type")]
    kind: &'static str,
}

fn check_name(what: &str, name: &str) -> Result<(), LibvirtError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LibvirtError::InvalidSpec(format!(
            "{what} must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'"
        )))
    }
}

fn to_xml(v: &impl Serialize) -> Result<String, LibvirtError> {
    let mut out = String::new();
    v.serialize(quick_xml::se::Serializer::new(&mut out))
        .map_err(|e| LibvirtError::Xml(e.to_string()))?;
    Ok(out)
}

/// `<pool type='dir'>` for a store at `path`.
pub fn pool_xml(name: &str, path: &Path) -> Result<String, LibvirtError> {
    check_name("pool name", name)?;
    let path = path
        .to_str()
        .filter(|p| p.starts_with('/') && !p.chars().any(char::is_control))
        .ok_or_else(|| LibvirtError::InvalidSpec("pool path must be absolute UTF-8".into()))?;
    to_xml(&XPool {
        kind: "dir",
        name,
        target: XPoolTarget { path },
    })
}

/// A sparse volume of exactly `bytes`, to be filled by an upload. Its format
/// is `raw` because libvirt must not create an image of its own in it: the
/// bytes uploaded are the layer file itself (a qcow2 file).
pub fn volume_xml(name: &str, bytes: u64) -> Result<String, LibvirtError> {
    check_name("volume name", name)?;
    to_xml(&XVolume {
        name,
        capacity: XBytes {
            unit: "bytes",
            value: bytes,
        },
        allocation: XBytes {
            unit: "bytes",
            value: 0,
        },
        target: XVolTarget {
            format: XFormat { kind: "raw" },
        },
    })
}

/// A qcow2 volume of virtual size `capacity` whose backing file is the qcow2
/// layer at `backing` (explicit format: nothing probes it). libvirt creates
/// it with `qemu-img create` on the node.
pub fn layer_volume_xml(name: &str, capacity: u64, backing: &Path) -> Result<String, LibvirtError> {
    check_name("volume name", name)?;
    let backing = backing
        .to_str()
        .filter(|p| p.starts_with('/') && !p.chars().any(char::is_control))
        .ok_or_else(|| LibvirtError::InvalidSpec("backing path must be absolute UTF-8".into()))?;
    to_xml(&XLayerVolume {
        name,
        capacity: XBytes {
            unit: "bytes",
            value: capacity,
        },
        target: XVolTarget {
            format: XFormat { kind: "qcow2" },
        },
        backing_store: XBackingStore {
            path: backing,
            format: XFormat { kind: "qcow2" },
        },
    })
}

/// Name prefix of the clock probe volumes ([`Node::probe_clock`]); a volume
/// of the pool named so is always a leftover probe, deleted on sight.
pub const CLOCK_PROBE_PREFIX: &str = "pvce-clock-probe-";

/// A file time as a volume's XML gives it: whole seconds since the epoch
/// and, where the file system keeps finer times, the nanoseconds (libvirt
/// leaves the fraction out when it is zero, e.g. on a file system with
/// one-second times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub secs: i64,
    pub nanos: Option<u32>,
}

/// One reading of a node's clock: this server's wall clock just before and
/// just after the node created a file, and the file's modification time as
/// the node's kernel stamped it in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockProbe {
    pub before: SystemTime,
    pub after: SystemTime,
    pub node: FileStamp,
}

/// How long moving `bytes` over a libvirt connection may take: at least a
/// minute, plus one second per 10 MB (slow links, busy nodes).
pub fn transfer_deadline(bytes: u64) -> Duration {
    Duration::from_secs(60 + bytes / 10_000_000)
}

const CHUNK: usize = 1 << 20;

fn pool_info_of(p: &StoragePool) -> Result<PoolInfo, LibvirtError> {
    let i = p.info()?;
    Ok(PoolInfo {
        capacity: i.capacity,
        allocation: i.allocation,
        available: i.available,
    })
}

fn lookup_pool(c: &Connect, name: &str) -> Result<Option<StoragePool>, LibvirtError> {
    match c.lookup_storage_pool_by_name(name) {
        Ok(p) => Ok(Some(p)),
        Err(e)
            if matches!(
                e.code(),
                virt::enumutil::Enum::Known(virt::error::ErrorNumber::NoStoragePool)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn lookup_vol(p: &StoragePool, name: &str) -> Result<Option<StorageVol>, LibvirtError> {
    match p.lookup_storage_vol_by_name(name) {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if matches!(
                e.code(),
                virt::enumutil::Enum::Known(virt::error::ErrorNumber::NoStorageVolume)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

impl Node {
    /// Makes sure pool `name` exists as a `dir` pool at `path`, is active and
    /// autostarts; returns its capacity figures. Idempotent.
    ///
    /// Ownership (libvirt pools carry no metadata, see src/installation): a
    /// pool of that name at `path` is ours. At another path it is repointed
    /// only when `claim.derived` (the name embeds our installation id, so we
    /// made it: the data dir moved); otherwise it is another installation's
    /// and [`LibvirtError::NotOurs`] — never redefined. Before creating
    /// `name`, a pool called `claim.legacy` (an older pvce's name) at exactly
    /// `path` is adopted: undefined, its files untouched, so `name` can be
    /// defined at the same path (libvirt allows one pool per directory).
    pub async fn ensure_dir_pool(
        &self,
        name: &str,
        path: &Path,
        claim: PoolClaim,
    ) -> Result<PoolInfo, LibvirtError> {
        let xml = pool_xml(name, path)?;
        let (name, path) = (name.to_owned(), path.to_path_buf());
        self.call(move |c| {
            let define = || -> Result<StoragePool, LibvirtError> {
                let p = c.define_storage_pool_xml(&xml, 0)?;
                // Creates the directory if missing (no-op otherwise).
                p.build(0)?;
                p.set_autostart(true)?;
                Ok(p)
            };
            let existing = lookup_pool(c, &name)?;
            if existing.is_none()
                && let Some(legacy) = claim.legacy.as_deref()
                && let Some(old) = lookup_pool(c, legacy)?
                && pool_target_path(&old.xml_desc(0)?).as_deref() == Some(path.as_path())
            {
                tracing::info!(old = %legacy, new = %name, path = %path.display(), "adopting the store pool of an older pvce under this installation's name");
                if old.is_active()? {
                    old.destroy()?;
                }
                old.undefine()?;
            }
            let pool = match existing {
                // Another server (or start) may define it at the same moment.
                None => match define() {
                    Ok(p) => p,
                    Err(e) => lookup_pool(c, &name)?.ok_or(e)?,
                },
                Some(p) => {
                    let actual = pool_target_path(&p.xml_desc(0)?);
                    if actual.as_deref() == Some(path.as_path()) {
                        p
                    } else if claim.derived {
                        // Ours by its name, left pointing elsewhere (the data
                        // dir moved): repoint it. Undefining a dir pool never
                        // touches its files.
                        tracing::warn!(pool = %name, old = ?actual, new = %path.display(), "template store pool moved");
                        if p.is_active()? {
                            p.destroy()?;
                        }
                        p.undefine()?;
                        define()?
                    } else {
                        // Someone else's pool of that name (another
                        // installation given the same explicit name).
                        return Err(LibvirtError::NotOurs(name));
                    }
                }
            };
            // Racing starts may activate it between our check and our call.
            if !pool.is_active()?
                && let Err(e) = pool.create(0)
                && !pool.is_active()?
            {
                return Err(e.into());
            }
            pool.refresh(0)?;
            pool_info_of(&pool)
        })
        .await
    }

    /// The directory pool `name` points at, `None` if the node has no such pool.
    pub async fn pool_target(&self, name: &str) -> Result<Option<PathBuf>, LibvirtError> {
        let name = name.to_owned();
        self.call(move |c| match lookup_pool(c, &name)? {
            Some(p) => Ok(pool_target_path(&p.xml_desc(0)?)),
            None => Ok(None),
        })
        .await
    }

    /// Capacity figures of pool `name`, `None` if the node has no such pool.
    pub async fn pool_info(&self, name: &str) -> Result<Option<PoolInfo>, LibvirtError> {
        let name = name.to_owned();
        self.call(move |c| match lookup_pool(c, &name)? {
            Some(p) if p.is_active()? => Ok(Some(pool_info_of(&p)?)),
            _ => Ok(None),
        })
        .await
    }

    /// The size in bytes of volume `vol` in pool `pool` (after a refresh, so
    /// files placed by other means are seen), `None` if absent.
    pub async fn volume_size(&self, pool: &str, vol: &str) -> Result<Option<u64>, LibvirtError> {
        let (pool, vol) = (pool.to_owned(), vol.to_owned());
        self.call(move |c| {
            let Some(p) = lookup_pool(c, &pool)? else {
                return Ok(None);
            };
            p.refresh(0)?;
            match lookup_vol(&p, &vol)? {
                // The file's length: `capacity` would be a qcow2 file's virtual size.
                Some(v) => Ok(Some(
                    v.info_flags(virt::sys::VIR_STORAGE_VOL_GET_PHYSICAL)?
                        .allocation,
                )),
                None => Ok(None),
            }
        })
        .await
    }

    /// Creates volume `vol` in `pool` and uploads local file `src` into it.
    /// On any failure the partial volume is deleted, so a store never holds a
    /// half-copied layer under its final name.
    pub async fn upload_volume(
        &self,
        pool: &str,
        vol: &str,
        src: &Path,
    ) -> Result<(), LibvirtError> {
        let len = std::fs::metadata(src)
            .map_err(|e| LibvirtError::Xml(format!("cannot read {}: {e}", src.display())))?
            .len();
        let xml = volume_xml(vol, len)?;
        let (pool, src): (String, PathBuf) = (pool.to_owned(), src.to_path_buf());
        self.call_within(transfer_deadline(len), move |c| {
            let p = lookup_pool(c, &pool)?
                .ok_or_else(|| LibvirtError::InvalidSpec(format!("no storage pool {pool}")))?;
            let v = StorageVol::create_xml(&p, &xml, 0)?;
            let result = (|| {
                let stream = Stream::new(c, 0)?;
                v.upload(&stream, 0, len, 0)?;
                let mut f = std::fs::File::open(&src).map_err(|e| {
                    LibvirtError::Xml(format!("cannot read {}: {e}", src.display()))
                })?;
                let mut buf = vec![0_u8; CHUNK];
                loop {
                    let n = f.read(&mut buf).map_err(|e| {
                        LibvirtError::Xml(format!("cannot read {}: {e}", src.display()))
                    })?;
                    if n == 0 {
                        break;
                    }
                    let mut sent = 0;
                    while sent < n {
                        let k = stream.send(&buf[sent..n])?;
                        sent += usize::try_from(k).unwrap_or(0);
                    }
                }
                stream.finish()?;
                Ok(())
            })();
            if result.is_err() {
                let _ = v.delete(0);
            }
            result
        })
        .await
    }

    /// Creates volume `vol` in `pool`: an empty qcow2 layer of virtual size
    /// `capacity` on the backing layer at `backing` (which must exist on the
    /// node). Returns the volume's path on the node. A volume of that name
    /// already there is an error (never overwritten).
    pub async fn create_layer_volume(
        &self,
        pool: &str,
        vol: &str,
        capacity: u64,
        backing: &Path,
    ) -> Result<PathBuf, LibvirtError> {
        let xml = layer_volume_xml(vol, capacity, backing)?;
        let pool = pool.to_owned();
        self.call(move |c| {
            let p = lookup_pool(c, &pool)?
                .ok_or_else(|| LibvirtError::InvalidSpec(format!("no storage pool {pool}")))?;
            let v = StorageVol::create_xml(&p, &xml, 0)?;
            Ok(PathBuf::from(v.path()?))
        })
        .await
    }

    /// Downloads volume `vol` of `pool` into local file `dest` (created or
    /// truncated; fsynced), returning its length and SHA-256. On failure
    /// `dest` is removed.
    pub async fn download_volume(
        &self,
        pool: &str,
        vol: &str,
        dest: &Path,
    ) -> Result<(u64, String), LibvirtError> {
        use std::io::Write;
        let len = self
            .volume_size(pool, vol)
            .await?
            .ok_or(LibvirtError::NotFound)?;
        let (pool, vol, dest) = (pool.to_owned(), vol.to_owned(), dest.to_path_buf());
        self.call_within(transfer_deadline(len), move |c| {
            let io = |e: std::io::Error| {
                LibvirtError::Xml(format!("cannot write {}: {e}", dest.display()))
            };
            let result = (|| {
                let p = lookup_pool(c, &pool)?
                    .ok_or_else(|| LibvirtError::InvalidSpec(format!("no storage pool {pool}")))?;
                let v = lookup_vol(&p, &vol)?.ok_or(LibvirtError::NotFound)?;
                let mut f = std::fs::File::create(&dest).map_err(io)?;
                let stream = Stream::new(c, 0)?;
                v.download(&stream, 0, 0, 0)?;
                let mut h = Sha256::new();
                let mut total = 0_u64;
                let mut buf = vec![0_u8; CHUNK];
                loop {
                    let n = stream.recv(&mut buf)?;
                    if n <= 0 {
                        break;
                    }
                    let chunk = &buf[..usize::try_from(n).unwrap_or(0)];
                    h.update(chunk);
                    f.write_all(chunk).map_err(io)?;
                    total += chunk.len() as u64;
                }
                stream.finish()?;
                f.sync_all().map_err(io)?;
                Ok((total, hex::encode(h.finalize())))
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&dest);
            }
            result
        })
        .await
    }

    /// Names of the volumes in pool `pool`; `None` if the node has no such
    /// active pool.
    pub async fn list_volumes(&self, pool: &str) -> Result<Option<Vec<String>>, LibvirtError> {
        let pool = pool.to_owned();
        self.call(move |c| match lookup_pool(c, &pool)? {
            Some(p) if p.is_active()? => Ok(Some(p.list_volumes()?)),
            _ => Ok(None),
        })
        .await
    }

    /// Deletes volume `vol` of `pool` (absent is fine).
    pub async fn delete_volume(&self, pool: &str, vol: &str) -> Result<(), LibvirtError> {
        let (pool, vol) = (pool.to_owned(), vol.to_owned());
        self.call(move |c| {
            if let Some(p) = lookup_pool(c, &pool)?
                && let Some(v) = lookup_vol(&p, &vol)?
            {
                v.delete(0)?;
            }
            Ok(())
        })
        .await
    }

    /// Reads the node's clock through pool `pool` (see the module doc):
    /// creates an empty raw volume named [`CLOCK_PROBE_PREFIX`]`<random>`,
    /// noting this server's wall clock just before and just after, reads the
    /// volume's modification time and deletes it. The volume is deleted
    /// whatever happens after its creation (the worker finishes the job even
    /// when the caller stopped waiting), and probes a crash left behind are
    /// deleted first, so no probe outlives the call.
    pub async fn probe_clock(&self, pool: &str) -> Result<ClockProbe, LibvirtError> {
        let vol = format!("{CLOCK_PROBE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let xml = volume_xml(&vol, 0)?;
        let pool = pool.to_owned();
        self.call(move |c| {
            let p = lookup_pool(c, &pool)?
                .ok_or_else(|| LibvirtError::InvalidSpec(format!("no storage pool {pool}")))?;
            if !p.is_active()? {
                return Err(LibvirtError::InvalidSpec(format!(
                    "storage pool {pool} is not active"
                )));
            }
            for stale in p.list_volumes()? {
                if stale.starts_with(CLOCK_PROBE_PREFIX)
                    && let Some(v) = lookup_vol(&p, &stale)?
                {
                    tracing::info!(pool = %pool, volume = %stale, "deleting a clock probe left behind");
                    v.delete(0)?;
                }
            }
            // The real wall clock, not a test-controlled one: this is the
            // measurement itself. Read as close to the creation as possible,
            // so the interval holds nothing but the node's round trip.
            let before = SystemTime::now();
            let v = StorageVol::create_xml(&p, &xml, 0)?;
            let after = SystemTime::now();
            // `virStorageVolGetXMLDesc` stats the file afresh.
            let desc = v.xml_desc(0);
            let deleted = v.delete(0);
            let node = volume_mtime(&desc?)?;
            deleted?;
            Ok(ClockProbe {
                before,
                after,
                node,
            })
        })
        .await
    }

    /// Stops and undefines pool `name`, leaving its directory and files alone
    /// (absent is fine). For tests and node removal.
    pub async fn undefine_pool(&self, name: &str) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.call(move |c| {
            if let Some(p) = lookup_pool(c, &name)? {
                if p.is_active()? {
                    p.destroy()?;
                }
                p.undefine()?;
            }
            Ok(())
        })
        .await
    }

    /// SHA-256 (lowercase hex) of volume `vol`'s bytes, read back through libvirt.
    pub async fn volume_sha256(
        &self,
        pool: &str,
        vol: &str,
        len: u64,
    ) -> Result<String, LibvirtError> {
        let (pool, vol) = (pool.to_owned(), vol.to_owned());
        self.call_within(transfer_deadline(len), move |c| {
            let p = lookup_pool(c, &pool)?
                .ok_or_else(|| LibvirtError::InvalidSpec(format!("no storage pool {pool}")))?;
            let v = lookup_vol(&p, &vol)?.ok_or(LibvirtError::NotFound)?;
            let stream = Stream::new(c, 0)?;
            v.download(&stream, 0, 0, 0)?;
            let mut h = Sha256::new();
            let mut buf = vec![0_u8; CHUNK];
            loop {
                let n = stream.recv(&mut buf)?;
                if n <= 0 {
                    break;
                }
                h.update(&buf[..usize::try_from(n).unwrap_or(0)]);
            }
            stream.finish()?;
            Ok(hex::encode(h.finalize()))
        })
        .await
    }
}

/// `<target><path>` of a pool's XML.
fn pool_target_path(xml: &str) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Pool {
        target: Target,
    }
    #[derive(serde::Deserialize)]
    struct Target {
        path: PathBuf,
    }
    quick_xml::de::from_str::<Pool>(xml)
        .ok()
        .map(|p| p.target.path)
}

/// The modification time in a volume's XML
/// (`<target><timestamps><mtime>SECS[.NANOS]</mtime>`).
fn volume_mtime(xml: &str) -> Result<FileStamp, LibvirtError> {
    #[derive(serde::Deserialize)]
    struct Volume {
        target: Target,
    }
    #[derive(serde::Deserialize)]
    struct Target {
        timestamps: Option<Timestamps>,
    }
    #[derive(serde::Deserialize)]
    struct Timestamps {
        mtime: Option<String>,
    }
    let v: Volume =
        quick_xml::de::from_str(xml).map_err(|e| LibvirtError::Xml(format!("volume XML: {e}")))?;
    let mtime = v
        .target
        .timestamps
        .and_then(|t| t.mtime)
        .ok_or_else(|| LibvirtError::Xml("the volume XML has no modification time".into()))?;
    parse_file_stamp(&mtime)
        .ok_or_else(|| LibvirtError::Xml(format!("unreadable volume time {mtime:?}")))
}

/// `SECS` or `SECS.FRACTION` (at most nine digits: nanoseconds).
fn parse_file_stamp(s: &str) -> Option<FileStamp> {
    let s = s.trim();
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) {
        return None;
    }
    let nanos = match frac {
        None => None,
        Some(f) if digits(f) && f.len() <= 9 => Some(format!("{f:0<9}").parse().ok()?),
        Some(_) => return None,
    };
    Some(FileStamp {
        secs: secs.parse().ok()?,
        nanos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_volume_xml_are_typed() {
        let x = pool_xml("pvce-templates", Path::new("/var/lib/pvce/templates")).expect("xml");
        assert_eq!(
            x,
            "<pool type=\"dir\"><name>pvce-templates</name><target><path>/var/lib/pvce/templates</path></target></pool>"
        );
        let v = volume_xml("abc.qcow2", 42).expect("xml");
        assert!(v.contains("<capacity unit=\"bytes\">42</capacity>"), "{v}");
        assert!(v.contains("<format type=\"raw\"/>"), "{v}");
        assert!(volume_xml("../x", 1).is_err());
        assert!(volume_xml("a b", 1).is_err());
        assert!(pool_xml("p", Path::new("relative")).is_err());
        assert!(pool_xml("p<x>", Path::new("/x")).is_err());
    }

    #[test]
    fn layer_volume_names_its_backing_format() {
        let x = layer_volume_xml(
            "v.qcow2",
            1 << 30,
            Path::new("/var/lib/pvce/templates/t.qcow2"),
        )
        .expect("xml");
        assert_eq!(
            x,
            "<volume><name>v.qcow2</name><capacity unit=\"bytes\">1073741824</capacity><target><format type=\"qcow2\"/></target><backingStore><path>/var/lib/pvce/templates/t.qcow2</path><format type=\"qcow2\"/></backingStore></volume>"
        );
        assert!(layer_volume_xml("v", 1, Path::new("rel")).is_err());
        assert!(layer_volume_xml("../v", 1, Path::new("/t")).is_err());
    }

    #[test]
    fn reads_the_target_path() {
        let xml = "<pool type='dir'><name>p</name><source/><target><path>/srv/t</path><permissions/></target></pool>";
        assert_eq!(pool_target_path(xml), Some(PathBuf::from("/srv/t")));
        assert_eq!(pool_target_path("<pool/>"), None);
    }

    #[test]
    fn transfers_get_time_by_size() {
        assert_eq!(transfer_deadline(0), Duration::from_secs(60));
        assert_eq!(transfer_deadline(10_000_000_000), Duration::from_secs(1060));
    }

    #[test]
    fn reads_a_volumes_modification_time() {
        let xml = "<volume type='file'><name>pvce-clock-probe-x</name><capacity unit='bytes'>0</capacity>\
            <target><path>/srv/t/pvce-clock-probe-x</path><format type='raw'/>\
            <timestamps><atime>1796391463.008087057</atime><mtime>1796391463.007157073</mtime>\
            <ctime>1796391463.007157073</ctime><btime>0</btime></timestamps></target></volume>";
        assert_eq!(
            volume_mtime(xml).expect("mtime"),
            FileStamp {
                secs: 1_796_391_463,
                nanos: Some(7_157_073)
            }
        );
        assert!(volume_mtime("<volume><target><path>/x</path></target></volume>").is_err());
        assert!(volume_mtime("<pool/>").is_err());
        assert_eq!(
            parse_file_stamp("12"),
            Some(FileStamp {
                secs: 12,
                nanos: None
            })
        );
        assert_eq!(
            parse_file_stamp("12.5"),
            Some(FileStamp {
                secs: 12,
                nanos: Some(500_000_000)
            })
        );
        for bad in ["", ".5", "12.", "-1", "1.0000000001", "1e3", "12.x"] {
            assert_eq!(parse_file_stamp(bad), None, "{bad:?}");
        }
    }
}
