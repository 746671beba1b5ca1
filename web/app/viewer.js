// A view-only screen in a dialog: the wall's "Watch" and a class watching
// its teacher's screen. `issue()` asks the server how to watch:
// - a view-only console token (`mode: "console"`, VNC): the server drops
//   every key and pointer event of such a session, so `viewOnly` on noVNC
//   only spares the browser from sending them;
// - the live picture (`mode: "picture"`, a SPICE console, whose input the
//   server cannot filter): the screen's full-size picture (`picture_url`)
//   fetched about once a second, each request only after the last picture
//   arrived, until the dialog closes. No console connection exists, so no
//   input can reach the guest; each fetch keeps the watch on record (the
//   student's banner).

import RFB from '/vendor/novnc/core/rfb.js';
import { h, icon, errorText } from './ui.js';
import { bind } from './i18n.js';
import { wsUrl } from './desktop.js';

/** How often the live picture is asked for (the server's cache: ~1 s). */
const PICTURE_MS = 1000;

/**
 * Opens the viewer. `title`: [key, args] of the dialog's heading;
 * `issue`: async () => console ticket or picture grant; `actions`: extra
 * buttons beside Close. Returns { close() }.
 */
export function openViewer({ title, issue, actions = [] }) {
  const heading = h('h2', { id: 'viewer-title', i18n: title });
  const status = h('p', { class: 'muted small viewer-status', role: 'status', i18n: 'wall.viewer.connecting' });
  const note = h('p', { class: 'muted small viewer-note', id: 'viewer-note', hidden: true, i18n: 'wall.viewer.pictureNote' });
  const screen = h('div', { class: 'viewer-screen', role: 'img', 'aria-labelledby': 'viewer-title' });
  const closeBtn = h('button', { type: 'button', class: 'btn', id: 'viewer-close', i18n: 'common.close' });
  const dlg = h('dialog', { class: 'dialog wide viewer', 'aria-labelledby': 'viewer-title', dataset: { conn: 'connecting' } },
    h('div', { class: 'dialog-body' },
      h('div', { class: 'dialog-head viewer-head' }, icon('monitor'), heading,
        h('span', { class: 'chip viewer-mode', i18n: 'wall.viewer.viewOnly' })),
      status,
      note,
      screen,
      h('div', { class: 'dialog-actions' }, actions, closeBtn)));
  let rfb = null;
  let timer = null;
  let objectUrl = null;
  let closed = false;
  function close() {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    if (rfb) { try { rfb.disconnect(); } catch { /* already gone */ } }
    if (dlg.open) dlg.close();
    dlg.remove();
  }
  closeBtn.addEventListener('click', close);
  dlg.addEventListener('close', close);
  document.body.append(dlg);
  dlg.showModal();
  closeBtn.focus();

  function connected() {
    if (dlg.dataset.conn === 'connected') return;
    dlg.dataset.conn = 'connected';
    bind(status, 'wall.viewer.connected');
  }
  function ended() {
    if (closed) return;
    dlg.dataset.conn = 'closed';
    bind(status, 'wall.viewer.closed');
  }

  function showConsole(ticket) {
    const ws = new WebSocket(wsUrl(ticket.url), ['binary']);
    rfb = new RFB(screen, ws, { shared: true });
    rfb.viewOnly = true;
    rfb.scaleViewport = true;
    rfb.background = '#0d1117';
    rfb.addEventListener('connect', connected);
    rfb.addEventListener('disconnect', ended);
  }

  function showPicture(url) {
    dlg.dataset.mode = 'picture';
    note.hidden = false;
    const img = h('img', { class: 'viewer-picture', alt: '', decoding: 'async' });
    screen.append(img);
    let frames = 0;
    async function next() {
      const started = performance.now();
      try {
        const res = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
        if (closed) return;
        // The VM stopped (409), or the screen is no longer shown (404).
        if (!res.ok) { ended(); return; }
        const blob = await res.blob();
        if (closed) return;
        // The new picture replaces the old one once it is here: no flicker.
        const old = objectUrl;
        objectUrl = URL.createObjectURL(blob);
        img.src = objectUrl;
        if (old) URL.revokeObjectURL(old);
        frames += 1;
        dlg.dataset.frames = String(frames);
        connected();
      } catch {
        if (closed) return; // a network hiccup: the next try follows
      }
      timer = setTimeout(next, Math.max(0, PICTURE_MS - (performance.now() - started)));
    }
    next();
  }

  (async () => {
    let ticket;
    try {
      ticket = await issue();
    } catch (err) {
      dlg.dataset.conn = 'failed';
      delete status.dataset.i18n;
      status.textContent = errorText(err);
      return;
    }
    if (closed) return;
    if (ticket.mode === 'picture') showPicture(ticket.picture_url);
    else showConsole(ticket);
  })();
  return { close };
}
