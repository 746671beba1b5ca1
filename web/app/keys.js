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
  // Anything else (é, 中文, emoji) has no key on the guest's US layout: the
  // guest would drop it silently, so the caller is told instead.
  return null;
}

/**
 * Splits text into strokes (CRLF → Enter) and the characters that cannot be
 * typed (each once, in order of appearance).
 */
export function plan(text) {
  const out = [];
  const untypeable = [];
  for (const ch of text.replace(/\r\n?/g, '\n')) {
    const s = strokeFor(ch);
    if (s) out.push(s);
    else if (!untypeable.includes(ch)) untypeable.push(ch);
  }
  return { strokes: out, untypeable };
}

/** The key strokes of `text` (untypeable characters left out). */
export function strokes(text) {
  return plan(text).strokes;
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

/** Keys a phone keyboard lacks, for the desktop's key bar. */
export const SPECIAL = {
  Escape: { keysym: 0xff1b, code: 'Escape' },
  Tab: { keysym: 0xff09, code: 'Tab' },
  Enter: { keysym: 0xff0d, code: 'Enter' },
  Backspace: { keysym: 0xff08, code: 'Backspace' },
  ArrowLeft: { keysym: 0xff51, code: 'ArrowLeft' },
  ArrowUp: { keysym: 0xff52, code: 'ArrowUp' },
  ArrowRight: { keysym: 0xff53, code: 'ArrowRight' },
  ArrowDown: { keysym: 0xff54, code: 'ArrowDown' },
};
const MODIFIERS = {
  ctrl: { keysym: 0xffe3, code: 'ControlLeft' },
  alt: { keysym: 0xffe9, code: 'AltLeft' },
};

/** One key press (with Shift when the stroke needs it) while `mods` ('ctrl', 'alt') are held. */
export function press(rfb, stroke, mods = []) {
  for (const m of mods) rfb.sendKey(MODIFIERS[m].keysym, MODIFIERS[m].code, true);
  if (stroke.shift) rfb.sendKey(XK_SHIFT_L, 'ShiftLeft', true);
  rfb.sendKey(stroke.keysym, stroke.code, true);
  rfb.sendKey(stroke.keysym, stroke.code, false);
  if (stroke.shift) rfb.sendKey(XK_SHIFT_L, 'ShiftLeft', false);
  for (const m of [...mods].reverse()) rfb.sendKey(MODIFIERS[m].keysym, MODIFIERS[m].code, false);
}
