//! The two RFB (VNC) handshakes the proxy performs itself, so the browser is
//! never asked for the node's console password:
//!
//! - [`authenticate_node`]: pvce is the client of the VM's VNC server. It
//!   speaks RFB 3.8 (3.3 to older servers), picks VNC authentication when the
//!   console has a password and the server offers it, else None, and answers
//!   the DES challenge. Afterwards the server waits for ClientInit.
//! - [`greet_browser`]: pvce is the server for the browser. It offers RFB 3.8
//!   with the single security type None (3.3 and 3.7 clients are served too)
//!   and reports success. Afterwards the browser sends ClientInit.
//!
//! From then on the two streams are exactly in step (ClientInit goes to the
//! node, ServerInit comes back) and the relay copies raw bytes. Every read is
//! exact, so no byte of either stream is consumed beyond the handshake except
//! what the browser pipelined after it, which [`greet_browser`] hands back.
//!
//! VNC authentication is DES-ECB of the server's 16-byte challenge with the
//! password (first 8 bytes, zero-padded) as key — with each key byte's bits
//! reversed, a quirk of the original VNC code every server shares.

use bytes::{Bytes, BytesMut};
use des::Des;
use des::cipher::{BlockEncrypt, KeyInit};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ws::{Incoming, Reader, Writer, WsError};

const SEC_NONE: u8 = 1;
const SEC_VNC_AUTH: u8 = 2;
/// Longest failure reason read from a server (a bad one must not make us allocate GBs).
const MAX_REASON: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RfbError {
    #[error("console connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the console does not speak RFB")]
    NotRfb,
    #[error("the console refused the connection: {0}")]
    Refused(String),
    #[error("the console rejected pvce's password: {0}")]
    AuthFailed(String),
    #[error("the console offers no security type pvce can use ({0:?})")]
    NoUsableSecurity(Vec<u8>),
    #[error("the browser broke the RFB handshake: {0}")]
    Browser(&'static str),
}

/// An RFB version as (major, minor).
fn parse_version(b: &[u8; 12]) -> Option<(u32, u32)> {
    let s = std::str::from_utf8(b).ok()?;
    let rest = s.strip_prefix("RFB ")?.strip_suffix('\n')?;
    let (maj, min) = rest.split_once('.')?;
    if maj.len() != 3 || min.len() != 3 {
        return None;
    }
    Some((maj.parse().ok()?, min.parse().ok()?))
}

/// The 16-byte response to a VNC authentication challenge.
pub fn vnc_auth_response(challenge: &[u8; 16], password: &str) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password.as_bytes()) {
        *k = p.reverse_bits();
    }
    let cipher = Des::new(&key.into());
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(block.into());
    }
    out
}

async fn read_reason<S: AsyncRead + Unpin>(s: &mut S) -> Result<String, RfbError> {
    let len = s.read_u32().await?.min(MAX_REASON);
    let mut b = vec![0u8; len as usize];
    s.read_exact(&mut b).await?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// Runs the client side of the RFB handshake up to (not including)
/// ClientInit, authenticating with `password` if the server asks for it.
pub async fn authenticate_node<S>(s: &mut S, password: Option<&str>) -> Result<(), RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut v = [0u8; 12];
    s.read_exact(&mut v).await?;
    let (major, minor) = parse_version(&v).ok_or(RfbError::NotRfb)?;
    if major != 3 || minor < 3 {
        return Err(RfbError::NotRfb);
    }
    // 3.7 is answered with 3.3: both are older than what noVNC speaks anyway,
    // and 3.3 differs from 3.8 only in how the security type is chosen.
    let modern = minor >= 8;
    s.write_all(if modern {
        b"RFB 003.008\n"
    } else {
        b"RFB 003.003\n"
    })
    .await?;
    let chosen = if modern {
        let n = s.read_u8().await?;
        if n == 0 {
            return Err(RfbError::Refused(read_reason(s).await?));
        }
        let mut types = vec![0u8; usize::from(n)];
        s.read_exact(&mut types).await?;
        let pick = match password {
            Some(_) if types.contains(&SEC_VNC_AUTH) => SEC_VNC_AUTH,
            _ if types.contains(&SEC_NONE) => SEC_NONE,
            _ => return Err(RfbError::NoUsableSecurity(types)),
        };
        s.write_u8(pick).await?;
        pick
    } else {
        // 3.3: the server decides.
        match s.read_u32().await? {
            0 => return Err(RfbError::Refused(read_reason(s).await?)),
            t if t == u32::from(SEC_NONE) => SEC_NONE,
            t if t == u32::from(SEC_VNC_AUTH) && password.is_some() => SEC_VNC_AUTH,
            t => return Err(RfbError::NoUsableSecurity(vec![t.min(255) as u8])),
        }
    };
    if chosen == SEC_VNC_AUTH {
        let mut challenge = [0u8; 16];
        s.read_exact(&mut challenge).await?;
        let response = vnc_auth_response(&challenge, password.unwrap_or_default());
        s.write_all(&response).await?;
    }
    // 3.8 sends a SecurityResult for every type; 3.3 only after VNC auth.
    if (modern || chosen == SEC_VNC_AUTH) && s.read_u32().await? != 0 {
        let reason = if modern {
            read_reason(s).await?
        } else {
            String::new()
        };
        return Err(if chosen == SEC_VNC_AUTH {
            RfbError::AuthFailed(reason)
        } else {
            RfbError::Refused(reason)
        });
    }
    Ok(())
}

/// Reads exactly `n` bytes from the browser's binary messages; bytes of a
/// message beyond `n` stay in `pending`. Pings are answered on the way.
async fn ws_read(
    rd: &mut Reader<'_>,
    wr: &mut Writer<'_>,
    pending: &mut BytesMut,
    n: usize,
) -> Result<Bytes, RfbError> {
    while pending.len() < n {
        match rd.next().await {
            Ok(Incoming::Data(b)) => pending.extend_from_slice(&b),
            Ok(Incoming::Ping(p)) => {
                wr.pong(&p)
                    .await
                    .map_err(|_| RfbError::Browser("WebSocket error"))?;
            }
            Ok(Incoming::Close(_)) | Err(WsError::Closed) => {
                return Err(RfbError::Browser("closed during the handshake"));
            }
            Err(_) => return Err(RfbError::Browser("WebSocket error")),
        }
    }
    Ok(pending.split_to(n).freeze())
}

async fn ws_send(wr: &mut Writer<'_>, b: &'static [u8]) -> Result<(), RfbError> {
    wr.binary(b)
        .await
        .map_err(|_| RfbError::Browser("WebSocket error"))
}

/// Runs the server side of the RFB handshake with the browser, offering
/// security type None, up to (not including) ClientInit. Returns whatever the
/// browser already sent after the handshake (ClientInit, if it pipelined).
pub async fn greet_browser(rd: &mut Reader<'_>, ws: &mut Writer<'_>) -> Result<Bytes, RfbError> {
    let mut pending = BytesMut::new();
    ws_send(ws, b"RFB 003.008\n").await?;
    let v = ws_read(rd, ws, &mut pending, 12).await?;
    let v: [u8; 12] = v[..].try_into().map_err(|_| RfbError::NotRfb)?;
    let minor = match parse_version(&v) {
        Some((3, minor)) if minor >= 3 => minor,
        _ => return Err(RfbError::Browser("not an RFB 3.x client")),
    };
    if minor >= 7 {
        ws_send(ws, &[1, SEC_NONE]).await?;
        let pick = ws_read(rd, ws, &mut pending, 1).await?;
        if pick[0] != SEC_NONE {
            return Err(RfbError::Browser(
                "chose a security type it was not offered",
            ));
        }
        if minor >= 8 {
            ws_send(ws, &[0, 0, 0, 0]).await?;
        }
    } else {
        ws_send(ws, &[0, 0, 0, SEC_NONE]).await?;
    }
    Ok(pending.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    /// A scripted VNC server on the other end of a duplex pipe: version
    /// `version`, security types `types` (3.8) and password `password`.
    async fn server(
        mut s: tokio::io::DuplexStream,
        version: &'static [u8; 12],
        types: &'static [u8],
        password: &'static str,
    ) -> Result<(), RfbError> {
        s.write_all(version).await?;
        let mut v = [0u8; 12];
        s.read_exact(&mut v).await?;
        let modern = &v == b"RFB 003.008\n";
        let chosen = if modern {
            s.write_u8(types.len() as u8).await?;
            s.write_all(types).await?;
            s.read_u8().await?
        } else {
            s.write_u32(u32::from(types[0])).await?;
            types[0]
        };
        let ok = if chosen == SEC_VNC_AUTH {
            let challenge = *b"0123456789abcdef";
            s.write_all(&challenge).await?;
            let mut resp = [0u8; 16];
            s.read_exact(&mut resp).await?;
            resp == vnc_auth_response(&challenge, password)
        } else {
            true
        };
        if modern || chosen == SEC_VNC_AUTH {
            s.write_u32(u32::from(!ok)).await?;
            if !ok && modern {
                let reason = b"Authentication failed";
                s.write_u32(reason.len() as u32).await?;
                s.write_all(reason).await?;
            }
        }
        // ClientInit must follow.
        if ok {
            assert_eq!(s.read_u8().await?, 1);
        }
        Ok(())
    }

    async fn run(
        version: &'static [u8; 12],
        types: &'static [u8],
        server_pw: &'static str,
        ours: Option<&str>,
    ) -> Result<(), RfbError> {
        let (mut a, b) = duplex(1024);
        let srv = tokio::spawn(server(b, version, types, server_pw));
        let r = authenticate_node(&mut a, ours).await;
        if r.is_ok() {
            a.write_u8(1).await?;
        }
        drop(a);
        let _ = srv.await;
        r
    }

    #[test]
    fn des_key_bits_are_reversed() {
        // Known answer from an independent DES (OpenSSL):
        // `head -c16 /dev/zero | openssl enc -des-ecb -K 0e86ceceeef64e26 -nopad`
        // — the key being "password" with each byte's bits reversed.
        let ch = [0u8; 16];
        let r = vnc_auth_response(&ch, "password");
        assert_eq!(hex::encode(r), "ff97502e9422f089ff97502e9422f089");
        let mut key = [0u8; 8];
        for (k, p) in key.iter_mut().zip(b"password") {
            *k = p.reverse_bits();
        }
        assert_eq!(key, [0x0e, 0x86, 0xce, 0xce, 0xee, 0xf6, 0x4e, 0x26]);
        // Both halves of an all-zero challenge encrypt alike (ECB), and the
        // password is cut at 8 bytes.
        assert_eq!(r[..8], r[8..]);
        assert_eq!(r, vnc_auth_response(&ch, "password-and-more"));
        assert_ne!(r, vnc_auth_response(&ch, "passwore"));
    }

    #[tokio::test]
    async fn node_handshakes() {
        let v38 = b"RFB 003.008\n";
        // VNC auth offered (in either order) and the right password.
        run(v38, &[SEC_VNC_AUTH], "pw123456", Some("pw123456"))
            .await
            .expect("vnc auth");
        run(v38, &[SEC_NONE, SEC_VNC_AUTH], "pw", Some("pw"))
            .await
            .expect("vnc auth preferred");
        // A node that offers None works with or without a password of ours.
        run(v38, &[SEC_NONE], "", None).await.expect("none");
        run(v38, &[SEC_NONE], "", Some("unused"))
            .await
            .expect("none");
        // RFB 3.3 servers choose themselves.
        run(b"RFB 003.003\n", &[SEC_VNC_AUTH], "pw", Some("pw"))
            .await
            .expect("3.3 auth");
        run(b"RFB 003.007\n", &[SEC_NONE], "", None)
            .await
            .expect("3.7 as 3.3");
        // Wrong password: a clear error with the server's reason.
        match run(v38, &[SEC_VNC_AUTH], "right", Some("wrong")).await {
            Err(RfbError::AuthFailed(r)) => assert_eq!(r, "Authentication failed"),
            other => panic!("{other:?}"),
        }
        // Auth required but we have no password.
        assert!(matches!(
            run(v38, &[SEC_VNC_AUTH], "pw", None).await,
            Err(RfbError::NoUsableSecurity(_))
        ));
        // Something that is not RFB.
        let (mut a, mut b) = duplex(64);
        b.write_all(b"SSH-2.0-x\r\n\0").await.expect("write");
        assert!(matches!(
            authenticate_node(&mut a, None).await,
            Err(RfbError::NotRfb)
        ));
        // A server that refuses with a reason (0 security types).
        let (mut a, mut b) = duplex(256);
        tokio::spawn(async move {
            b.write_all(v38).await?;
            let mut v = [0u8; 12];
            b.read_exact(&mut v).await?;
            b.write_all(&[0, 0, 0, 0, 4]).await?;
            b.write_all(b"busy").await?;
            b.flush().await?;
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            Ok::<_, std::io::Error>(())
        });
        match authenticate_node(&mut a, None).await {
            Err(RfbError::Refused(r)) => assert_eq!(r, "busy"),
            other => panic!("{other:?}"),
        }
    }
}
