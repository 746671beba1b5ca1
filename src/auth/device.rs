//! Device cookies (OWASP "Slow brute force / device cookies"): a browser that
//! signed in as a user gets a cookie proving it, and its later sign-ins as
//! that user are throttled on their own (`throttle::Subject::Device`), not
//! with everyone else behind the same address. They authenticate nothing:
//! the password is still checked on every sign-in.
//!
//! Invariants:
//! - The value is `nonce.issued.mac`: a random 128-bit nonce, the issue time
//!   (Unix seconds) and HMAC-SHA-256 over the username, nonce and time with
//!   a key only the server holds; the username itself is not in the cookie.
//! - A cookie is valid only for the username it was issued to and for
//!   [`DEVICE_COOKIE_DAYS`] days; anything malformed is simply not a device.
//! - The key lives in `<data dir>/device-cookie.key` (mode 0600), created on
//!   first start, so device cookies survive restarts.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// How long a device cookie counts (and its `Max-Age`).
pub const DEVICE_COOKIE_DAYS: i64 = 90;
const KEY_LEN: usize = 32;

/// The server's device-cookie key.
#[derive(Clone)]
pub struct DeviceKey([u8; KEY_LEN]);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey(..)")
    }
}

impl DeviceKey {
    pub fn random() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Reads the key file, or creates it (0600) if there is none yet.
    pub fn load_or_create(path: &Path) -> io::Result<Self> {
        match fs::File::open(path) {
            Ok(mut f) => {
                let mut k = [0u8; KEY_LEN];
                f.read_exact(&mut k)?;
                Ok(Self(k))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = Self::random();
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                f.write_all(&key.0)?;
                f.sync_all()?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, username: &str, nonce: &str, issued: i64) -> Hmac<Sha256> {
        // Keyed with a fixed-size key: new_from_slice cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in ["pvce-device", username, nonce, &issued.to_string()] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    /// A new device cookie value for `username`, issued at `now` (Unix seconds).
    pub fn issue(&self, username: &str, now: i64) -> String {
        let mut n = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut n);
        let nonce = URL_SAFE_NO_PAD.encode(n);
        let tag = self.mac(username, &nonce, now).finalize().into_bytes();
        format!("{nonce}.{now}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The device's nonce if `cookie` was issued by us to `username` and is
    /// still valid at `now` (Unix seconds).
    pub fn verify(&self, cookie: &str, username: &str, now: i64) -> Option<String> {
        let mut parts = cookie.split('.');
        let (nonce, issued, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || nonce.len() != 22 {
            return None;
        }
        let issued: i64 = issued.parse().ok()?;
        let age = now.checked_sub(issued)?;
        if !(0..=DEVICE_COOKIE_DAYS * 86_400).contains(&age) {
            return None;
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(username, nonce, issued)
            .verify_slice(&tag)
            .ok()
            .map(|()| nonce.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn a_cookie_proves_one_username_for_a_while() {
        let k = DeviceKey::random();
        let c = k.issue("alice", NOW);
        let nonce = k.verify(&c, "alice", NOW + 60).expect("valid");
        assert_eq!(nonce.len(), 22);
        assert!(c.starts_with(&nonce));
        assert_eq!(k.verify(&c, "bob", NOW), None);
        assert_eq!(
            k.verify(&c, "alice", NOW + DEVICE_COOKIE_DAYS * 86_400 + 1),
            None
        );
        assert_eq!(k.verify(&c, "alice", NOW - 1), None);
        assert_eq!(DeviceKey::random().verify(&c, "alice", NOW), None);
        assert_ne!(k.issue("alice", NOW), c);
    }

    #[test]
    fn tampered_or_malformed_cookies_are_no_device() {
        let k = DeviceKey::random();
        let c = k.issue("alice", NOW);
        let (nonce, rest) = c.split_once('.').expect("dot");
        let (_, tag) = rest.split_once('.').expect("dot");
        // A later issue time (to stretch the lifetime) breaks the MAC.
        assert_eq!(
            k.verify(&format!("{nonce}.{}.{tag}", NOW + 5), "alice", NOW + 10),
            None
        );
        for bad in ["", "x", "a.b.c", "..", &format!("{c}.x"), &c[..c.len() - 1]] {
            assert_eq!(k.verify(bad, "alice", NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device-cookie.key");
        let k1 = DeviceKey::load_or_create(&path).expect("create");
        let k2 = DeviceKey::load_or_create(&path).expect("load");
        assert_eq!(k1.0, k2.0);
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
