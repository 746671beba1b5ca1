// The rescue serial console of a VM, in a panel of the desktop page: the
// VM's serial port (libvirt's console stream) over a WebSocket, drawn by
// xterm.js (from npm, served under /vendor/xterm/). For guests whose screen
// or network is broken: a console login still works here.
//
// Like the desktop it takes a single-use token (POST /api/vms/{id}/serial),
// opens /ws/serial with it and shows why it closed. It does not reconnect by
// itself: libvirt gives the serial port to one session at a time, and a new
// session takes it over, so two tabs reconnecting would take it from each
// other forever; the Reconnect button does it on purpose.
//
// Bytes go both ways as binary messages: what the guest writes is handed to
// the terminal as it comes (xterm decodes UTF-8), what the user types is sent
// UTF-8 encoded.

import { t, bind } from './i18n.js';
import { h, button, errorText } from './ui.js';
import { post } from './api.js';

const XTERM = '/vendor/xterm/lib/xterm.mjs';
const XTERM_CSS = '/vendor/xterm/css/xterm.css';

/** Makes the API's WebSocket path absolute (ws: or wss: like the page). */
function wsUrl(path) {
  const u = new URL(path, location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

/** Loads xterm.js's stylesheet once per page. */
function loadCss() {
  if (document.querySelector(`link[href="${XTERM_CSS}"]`)) return;
  document.head.append(h('link', { rel: 'stylesheet', href: XTERM_CSS }));
}

/** Why the serial console closed, in the user's language where the code is known. */
export function closeText(code, reason) {
  const key = `serial.close.${code}`;
  const known = t(key);
  if (known !== key) return known;
  const desk = t(`desktop.close.${code}`);
  if (desk !== `desktop.close.${code}`) return desk;
  return reason || (code ? `code ${code}` : '');
}

/**
 * The serial console panel of VM `vmId`. Returns its element and
 * open()/close(); nothing is loaded or connected before open().
 */
export function serialPanel(vmId) {
  let term = null;
  let ws = null;
  let seq = 0;
  const status = h('p', { class: 'serial-status muted small', role: 'status', 'aria-live': 'polite' });
  const reconnect = button({ label: 'desktop.reconnect', icon: 'reboot', kind: 'small', attrs: { id: 'serial-reconnect', hidden: true } });
  const closeBtn = button({ label: 'serial.close', icon: 'close', kind: 'small', attrs: { id: 'serial-close' } });
  const screen = h('div', { class: 'serial-term', id: 'serial-term' });
  const el = h('section', { class: 'serial-panel', id: 'serial-panel', hidden: true, i18nAria: 'serial.title', dataset: { conn: 'closed' } },
    h('div', { class: 'serial-head' },
      h('h2', { class: 'serial-title', i18n: 'serial.title' }),
      status, reconnect, closeBtn),
    h('p', { class: 'muted small serial-hint', i18n: 'serial.hint' }),
    screen);

  function setState(conn, key, args) {
    el.dataset.conn = conn;
    bind(status, key, args);
    reconnect.hidden = conn === 'connected' || conn === 'connecting';
  }

  async function ensureTerm() {
    if (term) return term;
    loadCss();
    const { Terminal } = await import(XTERM);
    term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, convertEol: false });
    term.open(screen);
    const enc = new TextEncoder();
    term.onData((d) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d)); });
    term.onBinary((d) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      ws.send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff));
    });
    return term;
  }

  function disconnect() {
    seq += 1;
    if (ws) { const w = ws; ws = null; try { w.close(1000); } catch { /* closed */ } }
  }

  async function connect() {
    disconnect();
    const mine = seq;
    setState('connecting', 'serial.connecting');
    let ticket;
    try {
      await ensureTerm();
      ticket = await post(`/api/vms/${encodeURIComponent(vmId)}/serial`);
    } catch (err) {
      if (mine !== seq) return;
      setState('failed', 'serial.failed', { reason: errorText(err) });
      return;
    }
    if (mine !== seq) return;
    const sock = new WebSocket(wsUrl(ticket.url));
    sock.binaryType = 'arraybuffer';
    ws = sock;
    sock.addEventListener('open', () => {
      if (sock !== ws) return;
      setState('connected', 'serial.connected');
      term.focus();
    });
    sock.addEventListener('message', (e) => {
      if (sock !== ws) return;
      if (typeof e.data === 'string') term.write(e.data);
      else term.write(new Uint8Array(e.data));
    });
    sock.addEventListener('close', (e) => {
      if (sock !== ws) return;
      ws = null;
      setState('closed', 'serial.closed', { reason: closeText(e.code, e.reason) || t('desktop.status.unclean') });
    });
  }

  reconnect.addEventListener('click', () => connect());

  return {
    el,
    closeBtn,
    get isOpen() { return !el.hidden; },
    open() {
      el.hidden = false;
      if (!ws) connect();
      else if (term) term.focus();
    },
    close() {
      disconnect();
      el.hidden = true;
      setState('closed', 'serial.closedByUser');
    },
    dispose() {
      disconnect();
      if (term) { term.dispose(); term = null; }
    },
  };
}
