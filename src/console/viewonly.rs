//! The view-only filter: what a view-only console session (a teacher
//! watching a student's screen from the wall) may send to the node.
//!
//! The browser → node stream of an RFB session after the handshake starts
//! with ClientInit (one byte: "shared") and is then a sequence of client
//! messages, each with a type byte and a length that follows from its header.
//! [`ViewOnly`] parses that stream incrementally (messages may be split over
//! WebSocket frames or several may share one) and passes on only what a
//! viewer needs: pixel format, encodings, update requests, continuous
//! updates and fences. Key and pointer events (plain and QEMU's extended
//! keys), clipboard text, desktop resizing, xvp power requests and QEMU
//! audio are dropped, so input never reaches the guest whatever the browser
//! sends: this is enforced here, on the server, not by noVNC's `viewOnly`.
//!
//! Invariants: ClientInit always goes on with "shared" set (a viewer never
//! disconnects the student's own session); a message type this filter does
//! not know ends the session ([`UnknownMessage`]) — its length is unknown,
//! so nothing after it could be parsed safely; a dropped message is never
//! buffered whole (a huge clipboard text is skipped as it streams by).

/// A client message type the filter does not know (the session must end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown RFB client message type {0}")]
pub struct UnknownMessage(pub u8);

/// Incremental filter of one session's browser → node bytes.
#[derive(Debug, Default)]
pub struct ViewOnly {
    /// ClientInit has been passed on.
    init_done: bool,
    /// Bytes of a message whose end has not arrived yet.
    pending: Vec<u8>,
    /// Bytes of a dropped message still to come (skipped as they arrive).
    skip: usize,
}

/// How long a message is and whether it passes, from its first bytes;
/// `Ok(None)`: the header is not complete yet.
fn classify(buf: &[u8]) -> Result<Option<(usize, bool)>, UnknownMessage> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let u16_at = |i: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *buf.get(i)?,
            *buf.get(i + 1)?,
        ])))
    };
    Ok(match kind {
        // SetPixelFormat
        0 => Some((20, true)),
        // SetEncodings: u16 count at 2, 4 bytes each.
        2 => u16_at(2).map(|n| (4 + 4 * n, true)),
        // FramebufferUpdateRequest
        3 => Some((10, true)),
        // KeyEvent
        4 => Some((8, false)),
        // PointerEvent
        5 => Some((6, false)),
        // ClientCutText: s32 length at 4 (negative: extended clipboard, |len| bytes).
        6 => match buf.get(4..8) {
            Some(b) => {
                let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]).unsigned_abs();
                Some((8 + usize::try_from(len).unwrap_or(usize::MAX / 2), false))
            }
            None => None,
        },
        // EnableContinuousUpdates
        150 => Some((10, true)),
        // ClientFence: u8 payload length at 8.
        248 => buf.get(8).map(|&n| (9 + usize::from(n), true)),
        // xvp (shutdown, reboot, reset requests)
        250 => Some((4, false)),
        // SetDesktopSize: u8 screen count at 6, 16 bytes each.
        251 => buf.get(6).map(|&n| (8 + 16 * usize::from(n), false)),
        // QEMU client message: sub-type at 1.
        255 => match buf.get(1) {
            None => None,
            // Extended key event.
            Some(0) => Some((12, false)),
            // Audio: u16 operation at 2; 2 = set format (6 more bytes).
            Some(1) => u16_at(2).map(|op| (if op == 2 { 10 } else { 4 }, false)),
            Some(_) => return Err(UnknownMessage(kind)),
        },
        other => return Err(UnknownMessage(other)),
    })
}

impl ViewOnly {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes from the browser; appends to `out` what may go to the node.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), UnknownMessage> {
        let mut input = input;
        if self.skip > 0 {
            let n = self.skip.min(input.len());
            self.skip -= n;
            input = &input[n..];
        }
        if !self.init_done {
            let Some((_, rest)) = input.split_first() else {
                return Ok(());
            };
            // ClientInit, always shared: a viewer never pushes the student out.
            out.push(1);
            self.init_done = true;
            input = rest;
        }
        self.pending.extend_from_slice(input);
        let mut pos = 0;
        while pos < self.pending.len() {
            let buf = &self.pending[pos..];
            let Some((len, pass)) = classify(buf)? else {
                break;
            };
            if buf.len() >= len {
                if pass {
                    out.extend_from_slice(&buf[..len]);
                }
                pos += len;
            } else if pass {
                break; // wait for the rest (bounded: at most 256 KiB)
            } else {
                // A dropped message not complete yet: skip the rest as it comes.
                self.skip = len - buf.len();
                pos = self.pending.len();
            }
        }
        self.pending.drain(..pos);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(chunks: &[&[u8]]) -> Result<Vec<u8>, UnknownMessage> {
        let mut f = ViewOnly::new();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut out)?;
        }
        Ok(out)
    }

    const SET_ENCODINGS: &[u8] = &[2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7];
    const UPDATE: &[u8] = &[3, 1, 0, 0, 0, 0, 4, 0, 3, 0];
    const KEY: &[u8] = &[4, 1, 0, 0, 0, 0, 0, 0x61];
    const POINTER: &[u8] = &[5, 1, 0, 10, 0, 20];
    const QEMU_KEY: &[u8] = &[255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e];
    const XVP_REBOOT: &[u8] = &[250, 0, 1, 3];

    fn cut_text(text: &[u8]) -> Vec<u8> {
        let mut v = vec![6, 0, 0, 0];
        v.extend_from_slice(&u32::try_from(text.len()).unwrap_or(0).to_be_bytes());
        v.extend_from_slice(text);
        v
    }

    #[test]
    fn input_is_dropped_and_viewing_passes() {
        let cut = cut_text(b"rm -rf /\n");
        let stream: Vec<&[u8]> = vec![
            &[0],
            SET_ENCODINGS,
            KEY,
            UPDATE,
            POINTER,
            QEMU_KEY,
            &cut,
            XVP_REBOOT,
            UPDATE,
        ];
        let mut want = vec![1];
        want.extend_from_slice(SET_ENCODINGS);
        want.extend_from_slice(UPDATE);
        want.extend_from_slice(UPDATE);
        assert_eq!(run(&stream), Ok(want.clone()));
        // The same bytes in one message, and one byte at a time.
        let all: Vec<u8> = stream.concat();
        assert_eq!(run(&[&all]), Ok(want.clone()));
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(run(&bytes), Ok(want));
    }

    #[test]
    fn client_init_is_always_shared() {
        assert_eq!(run(&[&[0]]), Ok(vec![1]));
        assert_eq!(run(&[&[1]]), Ok(vec![1]));
        assert_eq!(run(&[&[]]), Ok(vec![]));
    }

    #[test]
    fn a_large_clipboard_text_is_skipped_without_buffering_it() {
        let mut f = ViewOnly::new();
        let mut out = Vec::new();
        let mut head = vec![1, 6, 0, 0, 0];
        head.extend_from_slice(&(10_000_000u32).to_be_bytes());
        f.feed(&head, &mut out).expect("header");
        for _ in 0..100 {
            f.feed(&[b'x'; 100_000], &mut out).expect("body");
            assert!(f.pending.is_empty());
        }
        f.feed(UPDATE, &mut out).expect("update");
        let mut want = vec![1];
        want.extend_from_slice(UPDATE);
        assert_eq!(out, want);
    }

    #[test]
    fn unknown_messages_end_the_session() {
        assert_eq!(run(&[&[1, 77, 0, 0]]), Err(UnknownMessage(77)));
        assert_eq!(run(&[&[1, 255, 9]]), Err(UnknownMessage(255)));
    }

    /// Any client message the filter knows, as (bytes, passes).
    fn message() -> impl Strategy<Value = (Vec<u8>, bool)> {
        prop_oneof![
            Just((UPDATE.to_vec(), true)),
            Just((SET_ENCODINGS.to_vec(), true)),
            Just(([0u8; 20].to_vec(), true)),
            Just((vec![150, 1, 0, 0, 0, 0, 4, 0, 3, 0], true)),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(|p| {
                let mut v = vec![248, 0, 0, 0, 0, 0, 0, 0, u8::try_from(p.len()).unwrap_or(0)];
                v.extend(p);
                (v, true)
            }),
            Just((KEY.to_vec(), false)),
            Just((POINTER.to_vec(), false)),
            Just((QEMU_KEY.to_vec(), false)),
            Just((XVP_REBOOT.to_vec(), false)),
            Just((vec![255, 1, 0, 2, 0, 2, 0, 0, 0xac, 0x44], false)),
            Just((
                vec![
                    251, 0, 4, 0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
                ],
                false
            )),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|t| (cut_text(&t), false)),
        ]
    }

    proptest! {
        /// Whatever the mix and however it is split into frames, exactly the
        /// viewing messages come out, in order, and no key or pointer event.
        #[test]
        fn only_viewing_messages_pass_however_split(
            msgs in proptest::collection::vec(message(), 0..30),
            cuts in proptest::collection::vec(1usize..40, 0..200),
        ) {
            let mut stream = vec![0u8];
            let mut want = vec![1u8];
            for (m, pass) in &msgs {
                stream.extend_from_slice(m);
                if *pass {
                    want.extend_from_slice(m);
                }
            }
            let mut f = ViewOnly::new();
            let mut out = Vec::new();
            let mut rest = &stream[..];
            for c in cuts {
                let n = c.min(rest.len());
                f.feed(&rest[..n], &mut out).expect("known messages");
                rest = &rest[n..];
            }
            f.feed(rest, &mut out).expect("known messages");
            prop_assert_eq!(out, want);
        }
    }
}
