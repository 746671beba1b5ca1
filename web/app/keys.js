// "Paste as typing": turns text into key presses on a US keyboard layout.
//
// Each character becomes (keysym, KeyboardEvent.code, needs Shift). noVNC
// sends the code as a QEMU extended key event (a real scancode) when the VNC
// server supports it, so the guest sees exactly what a physical keyboard would
// send; otherwise it sends the keysym.

const XK_SHIFT_L = 0xffe1;
const XK_RETURN = 0xff0d;
const XK_TAB = 0xff09;

const UNSHIFTED = {
  '`': 'Backquote', '-': 'Minus', '=': 'Equal', '[': 'BracketLeft', ']': 'BracketRight',
  '\\': 'Backslash', ';': 'Semicolon', "'": 'Quote', ',': 'Comma', '.': 'Period', '/': 'Slash', ' ': 'Space',
};
const SHIFTED = {
  '~': 'Backquote', '!': 'Digit1', '@': 'Digit2', '#': 'Digit3', '$': 'Digit4', '%': 'Digit5',
  '^': 'Digit6', '&': 'Digit7', '*': 'Digit8', '(': 'Digit9', ')': 'Digit0', '_': 'Minus', '+': 'Equal',
  '{': 'BracketLeft', '}': 'BracketRight', '|': 'Backslash', ':': 'Semicolon', '"': 'Quote',
  '<': 'Comma', '>': 'Period', '?': 'Slash',
};

/** The key stroke for one character, or null when it can't be typed. */
export function strokeFor(ch) {
  if (ch === '\n') return { keysym: XK_RETURN, code: 'Enter', shift: false };
  if (ch === '\t') return { keysym: XK_TAB, code: 'Tab', shift: false };
  const cp = ch.codePointAt(0);
  if (ch >= 'a' && ch <= 'z') return { keysym: cp, code: `Key${ch.toUpperCase()}`, shift: false };
  if (ch >= 'A' && ch <= 'Z') return { keysym: cp, code: `Key${ch}`, shift: true };
  if (ch >= '0' && ch <= '9') return { keysym: cp, code: `Digit${ch}`, shift: false };
  if (UNSHIFTED[ch]) return { keysym: cp, code: UNSHIFTED[ch], shift: false };
  if (SHIFTED[ch]) return { keysym: cp, code: SHIFTED[ch], shift: true };
  if (cp >= 0xa0 && cp <= 0xff) return { keysym: cp, code: null, shift: false }; // Latin-1 keysyms
  if (cp > 0xff) return { keysym: 0x01000000 + cp, code: null, shift: false }; // Unicode keysyms
  return null;
}

/** Splits text into strokes (CRLF → Enter; untypeable characters dropped). */
export function strokes(text) {
  const out = [];
  for (const ch of text.replace(/\r\n?/g, '\n')) {
    const s = strokeFor(ch);
    if (s) out.push(s);
  }
  return out;
}

/**
 * Types `text` into `rfb` key by key. `onProgress(done, total)`; stops early
 * when `signal.aborted` or `isConnected()` turns false. Resolves the number typed.
 */
export async function typeText(rfb, text, { onProgress = () => {}, signal, isConnected = () => true, delayMs = 12 } = {}) {
  const list = strokes(text);
  let done = 0;
  for (const s of list) {
    if ((signal && signal.aborted) || !isConnected()) break;
    if (s.shift) rfb.sendKey(XK_SHIFT_L, 'ShiftLeft', true);
    rfb.sendKey(s.keysym, s.code, true);
    rfb.sendKey(s.keysym, s.code, false);
    if (s.shift) rfb.sendKey(XK_SHIFT_L, 'ShiftLeft', false);
    done++;
    if (done % 8 === 0 || done === list.length) onProgress(done, list.length);
    await new Promise((r) => setTimeout(r, delayMs));
  }
  return done;
}
