//! Just enough of the tar format for export bundles: writing ustar headers
//! (GNU base-256 sizes above 8 GiB) and reading the entries of an archive a
//! user may have re-packed with GNU tar, bsdtar or busybox (ustar, GNU and pax
//! headers; `L` long names and pax `path`/`size` records are honoured, other
//! metadata is ignored). Pure functions on 512-byte blocks; the streaming is
//! in the parent module.

pub const BLOCK: usize = 512;
/// The end-of-archive marker: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// Bytes of zero padding after `size` bytes of entry data.
pub fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// Total bytes an entry of `size` bytes takes (header, data, padding).
pub fn entry_len(size: u64) -> u64 {
    BLOCK as u64 + size + padding(size) as u64
}

fn put_octal(field: &mut [u8], value: u64) {
    // width-1 digits then NUL, as GNU tar writes them.
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

/// A ustar header for a regular file (mode 0644, owner 0/0 "pvce").
pub fn header(name: &str, size: u64, mtime: u64) -> [u8; BLOCK] {
    typed_header(name, size, mtime, b'0')
}

/// The headers of a regular file whose name may not fit ustar (longer than
/// 100 bytes, or not ASCII): a pax extended header carrying `path`, then the
/// ustar header with a truncated name. Short ASCII names get the ustar header only.
pub fn file_headers(name: &str, size: u64, mtime: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * BLOCK);
    if name.len() > 100 || !name.is_ascii() {
        // "<len> path=<name>\n", where <len> counts its own digits.
        let body = format!(" path={name}\n");
        let mut len = body.len() + 1;
        while len.to_string().len() + body.len() != len {
            len = len.to_string().len() + body.len();
        }
        let record = format!("{len}{body}");
        out.extend_from_slice(&typed_header("PaxHeader", record.len() as u64, mtime, b'x'));
        out.extend_from_slice(record.as_bytes());
        out.resize(out.len() + padding(record.len() as u64), 0);
    }
    let mut cut = name.len().min(100);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    out.extend_from_slice(&header(&name[..cut], size, mtime));
    out
}

/// A ustar header of any type (`b'0'` file, `b'5'` directory, …).
pub fn typed_header(name: &str, size: u64, mtime: u64, typeflag: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.as_bytes();
    let n = &n[..n.len().min(100)];
    h[..n.len()].copy_from_slice(n);
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    if size < 8u64.pow(11) {
        put_octal(&mut h[124..136], size);
    } else {
        // GNU base-256: high bit set, big-endian value in the rest.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    put_octal(&mut h[136..148], mtime.min(8u64.pow(11) - 1));
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"pvce");
    h[297..301].copy_from_slice(b"pvce");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum::<u32>() + 8 * u32::from(b' ');
    let s = format!("{sum:06o}");
    h[148..154].copy_from_slice(s.as_bytes());
    h[154] = 0;
    h[155] = b' ';
    h
}

/// Kinds of entries the reader distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    /// pax extended header for the next entry.
    PaxNext,
    /// pax global header (ignored).
    PaxGlobal,
    /// GNU long name for the next entry.
    LongName,
    /// Symbolic or hard link, or a GNU long link name (which only links use).
    Link,
    /// Character or block device.
    Device,
    Fifo,
    /// Anything else (GNU sparse, multi-volume, vendor types…), with its type flag.
    Other(u8),
}

impl Kind {
    /// What the entry is, for messages.
    pub fn describe(self) -> String {
        match self {
            Kind::File => "a file".into(),
            Kind::Directory => "a directory".into(),
            Kind::PaxNext | Kind::PaxGlobal => "a pax header".into(),
            Kind::LongName => "a long name".into(),
            Kind::Link => "a link".into(),
            Kind::Device => "a device".into(),
            Kind::Fifo => "a FIFO".into(),
            Kind::Other(t) => format!("an entry of type {:?}", t as char),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub kind: Kind,
}

/// Why a header or a pax record is not one this reader takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    #[error("size out of range")]
    SizeOutOfRange,
    #[error("bad number {0:?}")]
    BadNumber(String),
    #[error("header checksum mismatch (not a tar archive?)")]
    Checksum,
    #[error("not a ustar/GNU tar header")]
    NotTar,
    #[error("bad pax record")]
    BadPaxRecord,
    #[error("bad pax record length")]
    BadPaxLength,
    #[error("bad pax size")]
    BadPaxSize,
}

/// Why a member name is refused (see [`member_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeName {
    #[error("is an absolute path")]
    Absolute,
    #[error("has a '..' component")]
    ParentDir,
}

fn parse_number(field: &[u8]) -> Result<u64, TarError> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // base-256; only positive values that fit u64.
        let rest = &field[1..];
        let (high, low) = rest.split_at(rest.len().saturating_sub(8));
        if field[0] != 0x80 || high.iter().any(|&b| b != 0) {
            return Err(TarError::SizeOutOfRange);
        }
        let mut v = [0u8; 8];
        v[8 - low.len()..].copy_from_slice(low);
        return Ok(u64::from_be_bytes(v));
    }
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| TarError::BadNumber(s.to_owned()))
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Parses one header block. `Ok(None)` is a zero block (end of archive).
pub fn parse_header(h: &[u8; BLOCK]) -> Result<Option<Entry>, TarError> {
    if h.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let stored = parse_number(&h[148..156])?;
    let unsigned: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
        .sum();
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            i64::from(if (148..156).contains(&i) {
                b' ' as i8
            } else {
                b as i8
            })
        })
        .sum();
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err(TarError::Checksum);
    }
    let posix = &h[257..263] == b"ustar\0";
    let gnu = &h[257..265] == b"ustar  \0";
    if !posix && !gnu {
        return Err(TarError::NotTar);
    }
    let mut name = cstr(&h[..100]);
    if posix {
        let prefix = cstr(&h[345..500]);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    let kind = match h[156] {
        b'0' | 0 | b'7' => Kind::File,
        b'5' => Kind::Directory,
        b'1' | b'2' | b'K' => Kind::Link,
        b'3' | b'4' => Kind::Device,
        b'6' => Kind::Fifo,
        b'x' => Kind::PaxNext,
        b'g' => Kind::PaxGlobal,
        b'L' => Kind::LongName,
        t => Kind::Other(t),
    };
    Ok(Some(Entry {
        name,
        size: parse_number(&h[124..136])?,
        kind,
    }))
}

/// The `path` and `size` records of a pax extended header.
pub fn parse_pax(data: &[u8]) -> Result<(Option<String>, Option<u64>), TarError> {
    let (mut path, mut size) = (None, None);
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or(TarError::BadPaxRecord)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l > sp + 1 && l <= rest.len())
            .ok_or(TarError::BadPaxLength)?;
        let record = &rest[sp + 1..len - 1];
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            let (k, v) = (&record[..eq], &record[eq + 1..]);
            match k {
                b"path" => path = Some(String::from_utf8_lossy(v).into_owned()),
                b"size" => {
                    size = Some(
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or(TarError::BadPaxSize)?,
                    )
                }
                _ => {}
            }
        }
        rest = &rest[len..];
    }
    Ok((path, size))
}

/// The last component of an entry name (`./x/layer.qcow2` → `layer.qcow2`).
pub fn base_name(name: &str) -> &str {
    name.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// A member name made safe to compare: relative, without `.` components or
/// empty ones (`./x//layer.qcow2` → `["x", "layer.qcow2"]`). Refuses what
/// would point outside the directory an archive is unpacked in — absolute
/// names and `..` components — so no name the importer accepts is one a tar
/// tool would write somewhere unexpected.
pub fn member_path(name: &str) -> Result<Vec<&str>, UnsafeName> {
    if name.starts_with('/') {
        return Err(UnsafeName::Absolute);
    }
    let parts: Vec<&str> = name
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(UnsafeName::ParentDir);
    }
    // Empty for `./` (the archive's own top directory).
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::run_ok;
    use std::path::Path;
    use std::process::Command;

    /// Runs GNU tar with `args` in `dir` and returns what it printed; a
    /// failure fails the test with tar's own message.
    fn gnu_tar(dir: &Path, args: &[&str]) -> String {
        let out = run_ok(Command::new("tar").args(args).current_dir(dir));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path_str(p: &Path) -> &str {
        p.to_str().expect("utf-8 temp path")
    }

    #[test]
    fn headers_round_trip_and_gnu_tar_reads_them() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut archive = Vec::new();
        for (name, data) in [
            ("manifest.json", b"{\"a\":1}".to_vec()),
            ("layer.qcow2", vec![7u8; 1500]),
        ] {
            let h = header(name, data.len() as u64, 1_700_000_000);
            let e = parse_header(&h).expect("valid").expect("entry");
            assert_eq!(
                (e.name.as_str(), e.size, e.kind),
                (name, data.len() as u64, Kind::File)
            );
            archive.extend_from_slice(&h);
            archive.extend_from_slice(&data);
            archive.extend(std::iter::repeat_n(0u8, padding(data.len() as u64)));
        }
        archive.extend_from_slice(&END);
        assert_eq!(archive.len() as u64, entry_len(7) + entry_len(1500) + 1024);
        let tar = d.path().join("x.tar");
        std::fs::write(&tar, &archive).expect("write");
        let listing = gnu_tar(d.path(), &["-tvf", path_str(&tar)]);
        assert!(
            listing.contains("manifest.json") && listing.contains("1500"),
            "{listing}"
        );
        gnu_tar(d.path(), &["-xf", path_str(&tar), "-C", path_str(d.path())]);
        assert_eq!(
            std::fs::read(d.path().join("layer.qcow2")).expect("read"),
            vec![7u8; 1500]
        );
    }

    #[test]
    fn long_and_unicode_names_use_pax_and_gnu_tar_reads_them() {
        let d = tempfile::tempdir().expect("tempdir");
        let long = format!("course/王小明/linux/{}/作业.txt", "d".repeat(120));
        let mut archive = Vec::new();
        for (name, data) in [(long.as_str(), b"one".as_slice()), ("short.txt", b"two")] {
            archive.extend_from_slice(&file_headers(name, data.len() as u64, 0));
            archive.extend_from_slice(data);
            archive.resize(archive.len() + padding(data.len() as u64), 0);
        }
        archive.extend_from_slice(&END);
        assert_eq!(file_headers("short.txt", 3, 0).len(), BLOCK);
        let tar = d.path().join("x.tar");
        std::fs::write(&tar, &archive).expect("write");
        gnu_tar(d.path(), &["-xf", path_str(&tar), "-C", path_str(d.path())]);
        assert_eq!(
            std::fs::read(d.path().join(&long)).expect("long name"),
            b"one"
        );
        assert_eq!(
            std::fs::read(d.path().join("short.txt")).expect("short"),
            b"two"
        );
        // Our own reader sees the pax path.
        let h: [u8; BLOCK] = archive[..BLOCK].try_into().expect("block");
        let e = parse_header(&h).expect("ok").expect("entry");
        assert_eq!(e.kind, Kind::PaxNext);
        let (p, _) = parse_pax(&archive[BLOCK..BLOCK + e.size as usize]).expect("pax");
        assert_eq!(p.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn big_sizes_use_base_256() {
        let size = 10u64 << 30;
        let h = header("layer.qcow2", size, 0);
        assert_eq!(h[124], 0x80);
        assert_eq!(parse_header(&h).expect("ok").expect("entry").size, size);
        let h = header("small", 8u64.pow(11) - 1, 0);
        assert_eq!(
            parse_header(&h).expect("ok").expect("entry").size,
            8u64.pow(11) - 1
        );
    }

    #[test]
    fn reads_what_gnu_tar_and_pax_write() {
        let d = tempfile::tempdir().expect("tempdir");
        // 111 characters: a long name for GNU and pax, a prefix split for ustar.
        let dir = "d".repeat(20);
        let long = "n".repeat(90);
        std::fs::create_dir(d.path().join(&dir)).expect("mkdir");
        std::fs::write(d.path().join(&dir).join(&long), b"hello").expect("write");
        for format in ["gnu", "pax", "ustar"] {
            let tar = d.path().join(format!("{format}.tar"));
            gnu_tar(
                d.path(),
                &[
                    &format!("--format={format}"),
                    "-cf",
                    path_str(&tar),
                    "-C",
                    path_str(d.path()),
                    &format!("{dir}/{long}"),
                ],
            );
            let bytes = std::fs::read(&tar).expect("read");
            // Walk the archive the way the importer does.
            let (mut off, mut next_name, mut next_size) = (0usize, None, None);
            let mut found = None;
            while off + BLOCK <= bytes.len() {
                let h: [u8; BLOCK] = bytes[off..off + BLOCK].try_into().expect("block");
                let Some(e) = parse_header(&h).expect(format) else {
                    break;
                };
                let data = &bytes[off + BLOCK..off + BLOCK + e.size as usize];
                match e.kind {
                    Kind::PaxNext => {
                        let (p, s) = parse_pax(data).expect("pax");
                        next_name = p.or(next_name);
                        next_size = s.or(next_size);
                    }
                    Kind::LongName => next_name = Some(cstr(data)),
                    Kind::File => {
                        let name = next_name.take().unwrap_or(e.name.clone());
                        found = Some((name, next_size.take().unwrap_or(e.size)));
                    }
                    _ => {}
                }
                off += entry_len(e.size) as usize;
            }
            let (name, size) = found.expect(format);
            assert_eq!(name, format!("{dir}/{long}"), "{format}");
            assert_eq!(base_name(&name), long);
            assert_eq!(size, 5);
        }
    }

    /// (name, kind) of every member of an archive, pax and GNU names applied.
    fn members(bytes: &[u8]) -> Vec<(String, Kind)> {
        let (mut off, mut next_name, mut out) = (0usize, None, Vec::new());
        while off + BLOCK <= bytes.len() {
            let h: [u8; BLOCK] = bytes[off..off + BLOCK].try_into().expect("block");
            let Some(e) = parse_header(&h).expect("header") else {
                break;
            };
            let data = &bytes[off + BLOCK..off + BLOCK + e.size as usize];
            match e.kind {
                Kind::PaxNext => next_name = parse_pax(data).expect("pax").0.or(next_name),
                Kind::LongName => next_name = Some(cstr(data)),
                // A GNU long link name belongs to the link that follows.
                Kind::PaxGlobal => {}
                Kind::Link if h[156] == b'K' => {}
                kind => out.push((next_name.take().unwrap_or(e.name.clone()), kind)),
            }
            off += entry_len(e.size) as usize;
        }
        out
    }

    #[test]
    fn hostile_archives_from_gnu_tar_show_their_links_devices_and_escapes() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("src");
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::write(src.join("manifest.json"), b"{}").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", src.join("layer.qcow2")).expect("symlink");
        std::fs::hard_link(src.join("manifest.json"), src.join("hard")).expect("link");
        let fifo = Command::new("mkfifo")
            .arg(src.join("fifo"))
            .status()
            .expect("mkfifo");
        assert!(fifo.success());
        let long_target = format!("/{}", "t".repeat(150));
        std::os::unix::fs::symlink(&long_target, src.join("long")).expect("symlink");
        let tar = d.path().join("hostile.tar");
        let make = |args: &[&str]| gnu_tar(&src, args);
        let t = path_str(&tar);
        make(&[
            "--format=gnu",
            "-cf",
            t,
            "manifest.json",
            "layer.qcow2",
            "hard",
            "fifo",
            "long",
        ]);
        // `-P` keeps absolute and `..` names as written.
        make(&["--format=pax", "-rPf", t, "../src/manifest.json"]);
        make(&[
            "--format=pax",
            "-rPf",
            t,
            &format!("{}/manifest.json", src.display()),
        ]);
        let got = members(&std::fs::read(&tar).expect("read"));
        let kinds: Vec<Kind> = got.iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds,
            [
                Kind::File,
                Kind::Link,
                Kind::Link,
                Kind::Fifo,
                Kind::Link,
                Kind::File,
                Kind::File
            ],
            "{got:?}"
        );
        assert_eq!(got[1].0, "layer.qcow2");
        assert_eq!(got[4].0, "long");
        assert_eq!(
            member_path(&got[5].0).map_err(|e| e.to_string()),
            Err("has a '..' component".to_string())
        );
        assert_eq!(
            member_path(&got[6].0).map_err(|e| e.to_string()),
            Err("is an absolute path".to_string())
        );
        // Devices are typed too (a header of our own: mknod needs privileges
        // some test machines lack).
        let h = typed_header("dev/sda", 0, 0, b'4');
        assert_eq!(
            parse_header(&h).expect("ok").expect("entry").kind,
            Kind::Device
        );
        assert_eq!(Kind::Device.describe(), "a device");
    }

    #[test]
    fn member_paths_are_relative_and_stay_inside() {
        assert_eq!(
            member_path("./x//layer.qcow2"),
            Ok(vec!["x", "layer.qcow2"])
        );
        assert_eq!(member_path("manifest.json"), Ok(vec!["manifest.json"]));
        assert_eq!(member_path("./"), Ok(vec![]));
        for bad in ["/etc/passwd", "../x", "x/../../y", "./..", "//x"] {
            assert!(member_path(bad).is_err(), "{bad}");
        }
        // `..` inside a name is just a name.
        assert_eq!(member_path("a..b"), Ok(vec!["a..b"]));
    }

    #[test]
    fn garbage_is_refused() {
        let mut h = header("a", 1, 0);
        h[0] = b'b';
        assert!(parse_header(&h).is_err(), "checksum");
        assert!(parse_header(&[0x41; BLOCK]).is_err());
        assert_eq!(parse_header(&[0; BLOCK]), Ok(None));
        assert!(parse_pax(b"99 path=x\n").is_err());
        assert!(parse_pax(b"xx").is_err());
        assert_eq!(
            parse_pax(b"11 path=ab\n").expect("ok"),
            (Some("ab".into()), None)
        );
        assert_eq!(base_name("./x/layer.qcow2"), "layer.qcow2");
        assert_eq!(base_name("layer.qcow2"), "layer.qcow2");
    }
}
