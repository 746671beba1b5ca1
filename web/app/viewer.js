// A view-only screen in a dialog: the wall's "Watch" and a class watching
// its teacher's screen. The token comes from `issue()` (a view-only console
// token); the server drops every key and pointer event of such a session,
// so `viewOnly` on noVNC only spares the browser from sending them.

import RFB from '/vendor/novnc/core/rfb.js';
import { h, icon, errorText } from './ui.js';
import { bind } from './i18n.js';
import { wsUrl } from './desktop.js';

/**
 * Opens the viewer. `title`: [key, args] of the dialog's heading;
 * `issue`: async () => console ticket; `actions`: extra buttons beside
 * Close. Returns { close() }.
 */
export function openViewer({ title, issue, actions = [] }) {
  const heading = h('h2', { id: 'viewer-title', i18n: title });
  const status = h('p', { class: 'muted small viewer-status', role: 'status', i18n: 'wall.viewer.connecting' });
  const screen = h('div', { class: 'viewer-screen', role: 'img', 'aria-labelledby': 'viewer-title' });
  const closeBtn = h('button', { type: 'button', class: 'btn', id: 'viewer-close', i18n: 'common.close' });
  const dlg = h('dialog', { class: 'dialog wide viewer', 'aria-labelledby': 'viewer-title', dataset: { conn: 'connecting' } },
    h('div', { class: 'dialog-body' },
      h('div', { class: 'dialog-head viewer-head' }, icon('monitor'), heading,
        h('span', { class: 'chip viewer-mode', i18n: 'wall.viewer.viewOnly' })),
      status,
      screen,
      h('div', { class: 'dialog-actions' }, actions, closeBtn)));
  let rfb = null;
  let closed = false;
  function close() {
    if (closed) return;
    closed = true;
    if (rfb) { try { rfb.disconnect(); } catch { /* already gone */ } }
    if (dlg.open) dlg.close();
    dlg.remove();
  }
  closeBtn.addEventListener('click', close);
  dlg.addEventListener('close', close);
  document.body.append(dlg);
  dlg.showModal();
  closeBtn.focus();
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
    const ws = new WebSocket(wsUrl(ticket.url), ['binary']);
    rfb = new RFB(screen, ws, { shared: true });
    rfb.viewOnly = true;
    rfb.scaleViewport = true;
    rfb.background = '#0d1117';
    rfb.addEventListener('connect', () => {
      dlg.dataset.conn = 'connected';
      bind(status, 'wall.viewer.connected');
    });
    rfb.addEventListener('disconnect', () => {
      if (closed) return;
      dlg.dataset.conn = 'closed';
      bind(status, 'wall.viewer.closed');
    });
  })();
  return { close };
}
