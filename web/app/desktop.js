// The VM desktop in the page: noVNC (the real client, from npm) over the
// console WebSocket. Gets a short-lived single-use token from
// POST /api/vms/{id}/console, connects, scales the screen to the window, and
// reconnects with a fresh token (with backoff) when the connection drops while
// the VM is still running — after a few quick tries, every 30 s for as long
// as the page is open, so it recovers by itself; the login session is the
// page's, so no new login and no click. Close codes that mean "stop" (4004
// server shutting down, 4005 credentials refused) are not resumed. Shows why
// when it can't.
//
// Scaling: fit (default) or 1:1, remembered per user in localStorage; the
// guest is asked to follow the window (resizeSession), and whole-number
// device-pixel scales are drawn nearest-neighbour (HiDPI-sharp).
//
// Clipboard: Ctrl+V on the screen pastes (typed: QEMU's VNC clipboard needs
// a guest agent the VMs don't have), text the guest copies goes to the
// browser's clipboard; the course's switches turn either way off.
//
// Keyboard: while the screen has the focus every key goes to the guest (Tab
// and Esc too); Ctrl+] gives the keyboard back to the page, as the hint under
// the screen says. On a phone the key bar opens the phone's keyboard (a text
// field whose input is typed into the guest) and offers Esc, Tab, Ctrl, Alt
// and the arrows; "Actual size" turns off scaling so the screen can be
// panned by dragging.
//
// Serial console: the rescue console (serial.js) opens in place of the
// screen, for a guest whose graphics or network are broken; it needs only a
// running VM, not a working desktop connection.

import RFB from '/vendor/novnc/core/rfb.js';
import { t, bind, onLangChange } from './i18n.js';
import { h, icon, button, replace, toast, toastError, errorText, clockTime, absoluteTime } from './ui.js';
import { get, post } from './api.js';
import { stateBadge, setBadge, allowed, runAction } from './vmcontrols.js';
import { watchClass } from './classwatch.js';
import { watchIdle } from './idle.js';
import { termBanner } from './courseterm.js';
import { assistBar } from './assist.js';
import { typeText, plan, press, SPECIAL } from './keys.js';
import { sealDraft, abandonDraft } from './drafts.js';
import { serialPanel } from './serial.js';

const MAX_ATTEMPTS = 6;
/** After MAX_ATTEMPTS quick tries, the pace of further ones. */
const SLOW_RETRY_MS = 30000;
const VM_POLL_MS = 4000;

/** Makes the API's console path (e.g. "/ws/console?token=…") an absolute ws:// or wss:// URL. */
export function wsUrl(path) {
  const u = new URL(path, location.href);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.href;
}

/**
 * Close codes with which the server means "stop here": resuming would not
 * help (4004 the server is shutting down, 4005 the node refused pvce's
 * credentials). 4001 "VM stopped" is decided by the VM's state instead (a
 * reboot ends the console too, and the page should come back after it).
 * Anything else — a network drop (1006), a ping timeout — is resumed.
 */
const FINAL_CODES = new Set([4004, 4005]);
export function resumes(code) {
  return !FINAL_CODES.has(code);
}

/** Where a user's fit / 1:1 choice is remembered (per user: a shared computer has several). */
export function scaleKey(userId) {
  return `pvce.desktop.scale.${userId}`;
}
function loadScale(userId) {
  try { return localStorage.getItem(scaleKey(userId)) === '1:1' ? '1:1' : 'fit'; } catch { return 'fit'; }
}
function saveScale(userId, mode) {
  try { localStorage.setItem(scaleKey(userId), mode); } catch { /* storage disabled: not remembered */ }
}

/**
 * Whether the canvas, drawn `cssScale` times its framebuffer size on a screen
 * of `dpr` device pixels per CSS pixel, maps each guest pixel onto a whole
 * number of device pixels — then nearest-neighbour keeps text sharp (1:1 on
 * a HiDPI screen is exactly 2×); at any other ratio smoothing looks better.
 */
export function sharpAt(cssScale, dpr) {
  const k = cssScale * dpr;
  return k >= 1 && Math.abs(k - Math.round(k)) < 0.01;
}

/**
 * Longest text a paste types into the guest (key by key, ~12 ms a key: 2000
 * characters take about half a minute); the rest is left out, and said so.
 */
export const PASTE_LIMIT = 2000;

/** Ctrl+V, Cmd+V or Shift+Insert: the user pastes. */
export function isPasteKey(e) {
  if (e.altKey) return false;
  if ((e.ctrlKey || e.metaKey) && !e.shiftKey && (e.code === 'KeyV' || e.key === 'v' || e.key === 'V')) return true;
  return e.shiftKey && !e.ctrlKey && !e.metaKey && e.key === 'Insert';
}

function backoff(attempt) {
  return Math.min(500 * 2 ** (attempt - 1), 8000);
}

export function mount(container, [vmId], { me }) {
  let vm = null;
  let rfb = null;
  let lastClose = null; // { code, reason } of the last WebSocket close
  let attempts = 0;
  let retryTimer = null;
  let pollTimer = null;
  let unmounted = false;
  let stopClass = () => {};
  let stopIdle = () => {};
  let stopAssist = () => {};
  let connected = false;
  let typingAbort = null;
  let connectSeq = 0;
  let socket = null; // the current console WebSocket
  let connects = 0;

  // ---- layout
  const back = h('a', { class: 'btn ghost icon-btn', href: { student: '#/courses', staff: '#/desk' }[me.role] || '#/teach', i18nAria: 'desktop.back', i18nTitle: 'desktop.back' }, icon('back'));
  const title = h('h1', { class: 'desktop-title' });
  // A teacher (or admin) looking at a student's VM: whose it is.
  const owner = h('span', { class: 'chip desktop-owner', hidden: true });
  const badge = stateBadge('stopped');
  // The course turned the clipboard off (one direction or both).
  const clipChip = h('span', { class: 'chip desktop-clip-off', hidden: true, i18n: 'desktop.clip.off', i18nTitle: 'desktop.clip.offHint' });
  // While a shutdown the server asked for runs: when the VM is forced off.
  const forced = h('span', { class: 'muted small desktop-forced', hidden: true });
  const status = h('p', { class: 'desktop-status', role: 'status', 'aria-live': 'polite' });
  // The VM's place in the class start queue, while it waits (class time).
  const queueLine = h('p', { class: 'desktop-status class-queue', role: 'status', hidden: true });
  // The end of the course's term: until when the work can be downloaded (courseterm.js).
  const termLine = h('p', { class: 'term-banner', id: 'term-banner', role: 'status', hidden: true });
  const pasteBtn = button({ label: 'desktop.paste', icon: 'paste', kind: 'small', attrs: { 'aria-expanded': 'false', 'aria-controls': 'paste-panel' } });
  const cadBtn = button({ label: 'desktop.cad', icon: 'keyboard', kind: 'small', aria: ['desktop.cad.aria'] });
  const fsBtn = button({ label: 'desktop.fullscreen', icon: 'fullscreen', kind: 'small' });
  const kbdBtn = button({ label: 'desktop.keys', icon: 'type', kind: 'small', attrs: { id: 'kbd-toggle', 'aria-expanded': 'false', 'aria-controls': 'keybar' } });
  const serialBtn = button({ label: 'desktop.serial', icon: 'terminal', kind: 'small', attrs: { id: 'serial-toggle', 'aria-expanded': 'false', 'aria-controls': 'serial-panel' } });
  const serial = serialPanel(vmId);
  const zoomBtn = button({ label: 'desktop.zoom', icon: 'monitor', kind: 'small', attrs: { id: 'zoom-toggle', 'aria-pressed': 'false' } });
  const kbdInput = h('input', {
    id: 'kbd-input', type: 'text', autocomplete: 'off', autocapitalize: 'off', autocorrect: 'off', spellcheck: 'false',
    enterkeyhint: 'send', i18nPh: 'desktop.keys.ph', i18nAria: 'desktop.keys.input',
  });
  const held = new Set(); // sticky modifiers of the key bar: 'ctrl', 'alt'
  const modBtn = (m, label) => {
    const b = h('button', { type: 'button', class: 'btn small key', 'aria-pressed': 'false', dataset: { mod: m } }, label);
    b.addEventListener('click', () => {
      if (held.has(m)) held.delete(m); else held.add(m);
      b.setAttribute('aria-pressed', held.has(m) ? 'true' : 'false');
      kbdInput.focus();
    });
    return b;
  };
  const keyBtn = (name, label, aria) => {
    const b = h('button', { type: 'button', class: 'btn small key', dataset: { key: name }, i18nAria: aria }, label);
    b.addEventListener('click', () => { sendSpecial(name); kbdInput.focus(); });
    return b;
  };
  const keybar = h('div', { id: 'keybar', class: 'keybar', hidden: true, role: 'group', i18nAria: 'desktop.keys' },
    kbdInput,
    h('div', { class: 'keybar-keys' },
      keyBtn('Escape', 'Esc', 'desktop.key.esc'), keyBtn('Tab', 'Tab', 'desktop.key.tab'),
      modBtn('ctrl', 'Ctrl'), modBtn('alt', 'Alt'),
      keyBtn('ArrowLeft', '←', 'desktop.key.left'), keyBtn('ArrowUp', '↑', 'desktop.key.up'),
      keyBtn('ArrowDown', '↓', 'desktop.key.down'), keyBtn('ArrowRight', '→', 'desktop.key.right'),
      keyBtn('Enter', '⏎', 'desktop.key.enter')));
  // Ctrl+V pastes (unless the course turned it off): said where the keys are.
  const pasteHint = h('span', { class: 'paste-hint', i18n: ['desktop.kbdHint.paste', { max: PASTE_LIMIT }] });
  const kbdHint = h('p', { class: 'kbd-hint', id: 'kbd-hint' }, h('span', { i18n: 'desktop.kbdHint' }), ' ', pasteHint);
  // The service desk: report a problem with this VM (its context and screen go with it).
  const reportBtn = h('a', { class: 'btn small', href: `#/report/${vmId}`, dataset: { action: 'report' } }, icon('warn'), h('span', { class: 'label', i18n: 'desk.report' }));
  // Power controls of the VM itself (the same actions as on the course list).
  const power = [['shutdown', 'vm.shutdown', 'power', ''], ['reboot', 'vm.reboot', 'reboot', ''], ['poweroff', 'vm.poweroff', 'plug', 'danger-text']]
    .map(([action, label, ic, kind]) => {
      const b = button({ label, icon: ic, kind: `small ${kind}`, aria: [label], attrs: { 'data-action': action } });
      b.addEventListener('click', async () => {
        const updated = await runAction(action, vm, { onConfirmed: () => { b.disabled = true; b.classList.add('busy'); } });
        b.classList.remove('busy');
        if (updated) updateVm(updated); else syncTools();
      });
      return [action, b];
    });
  const powerGroup = h('div', { class: 'btn-group desktop-power', role: 'group', i18nAria: 'desktop.power' }, power.map(([, b]) => b));
  const pasteText = h('textarea', { id: 'paste-text', rows: 3, spellcheck: 'false', autocomplete: 'off' });
  const pasteSend = button({ label: 'desktop.paste.send', kind: 'primary small' });
  const pasteProgress = h('span', { class: 'muted paste-progress', 'aria-live': 'polite' });
  const pastePanel = h('div', { id: 'paste-panel', class: 'paste-panel', hidden: true },
    h('label', { for: 'paste-text', i18n: 'desktop.paste.label' }),
    pasteText,
    h('div', { class: 'paste-row' },
      h('p', { class: 'muted small', i18n: 'desktop.paste.help' }),
      pasteProgress, pasteSend));
  const screen = h('div', { class: 'screen', role: 'application', i18nAria: 'desktop.screen', 'aria-describedby': 'kbd-hint' });
  const overlayMsg = h('p', { class: 'overlay-msg' });
  const overlayDetail = h('p', { class: 'overlay-detail muted' });
  const overlayActions = h('div', { class: 'overlay-actions' });
  const overlay = h('div', { class: 'screen-overlay', hidden: true },
    h('div', { class: 'overlay-card' }, icon('monitor'), overlayMsg, overlayDetail, overlayActions));
  const spinner = h('div', { class: 'screen-spinner', hidden: true }, h('span', { class: 'spinner large', 'aria-hidden': 'true' }));
  const desk = h('div', { class: 'desktop', dataset: { conn: 'init' } },
    h('div', { class: 'desktop-bar' },
      back,
      h('div', { class: 'desktop-heading' }, h('div', { class: 'desktop-title-row' }, title, badge, owner, clipChip), forced, status, queueLine, termLine),
      h('div', { class: 'desktop-tools' }, powerGroup, pasteBtn, cadBtn, serialBtn, kbdBtn, zoomBtn, fsBtn, reportBtn)),
    pastePanel,
    keybar,
    serial.el,
    h('div', { class: 'screen-wrap' }, screen, spinner, overlay),
    kbdHint);
  replace(container, desk);
  container.classList.add('desktop-container');

  // ---- status helpers
  /** Tools that need a live console (or a VM in the right state) are disabled otherwise. */
  function syncTools() {
    const live = desk.dataset.conn === 'connected';
    pasteBtn.disabled = !live;
    cadBtn.disabled = !live;
    fsBtn.disabled = !live && !isFullscreen();
    pasteSend.disabled = !live && !typingAbort;
    kbdBtn.disabled = !live;
    zoomBtn.disabled = !live;
    if (!live && !pastePanel.hidden) { pastePanel.hidden = true; pasteBtn.setAttribute('aria-expanded', 'false'); }
    if (!live && !keybar.hidden) { keybar.hidden = true; kbdBtn.setAttribute('aria-expanded', 'false'); }
    // The serial console needs only a running VM (it is for broken desktops).
    serialBtn.disabled = !vm || vm.state !== 'running';
    for (const [action, b] of power) {
      if (!b.classList.contains('busy')) b.disabled = !vm || !allowed(action, vm.state);
    }
  }

  function setStatus(conn, key, args) {
    desk.dataset.conn = conn;
    bind(status, key, args);
    spinner.hidden = !(conn === 'connecting' || conn === 'reconnecting');
    syncTools();
  }

  function showOverlay(msgKey, msgArgs, detail, actions) {
    bind(overlayMsg, msgKey, msgArgs);
    overlayDetail.textContent = detail || '';
    overlayDetail.hidden = !detail;
    replace(overlayActions, ...actions);
    overlay.hidden = false;
    spinner.hidden = true;
  }

  function hideOverlay() { overlay.hidden = true; }

  /** Why the last connection closed, in the user's language where the code is known. */
  function closeReason() {
    if (!lastClose) return '';
    const key = `desktop.close.${lastClose.code}`;
    const known = t(key);
    if (known !== key && (lastClose.code >= 4000 || !lastClose.reason)) return known;
    if (lastClose.reason) return lastClose.reason;
    return lastClose.code ? `code ${lastClose.code}` : '';
  }

  function startButton() {
    const b = button({ label: 'desktop.startVm', icon: 'play', kind: 'primary' });
    b.addEventListener('click', async () => {
      b.disabled = true;
      b.classList.add('busy');
      try {
        vm = await post(`/api/vms/${encodeURIComponent(vmId)}/start`);
        updateVm(vm);
        attempts = 0;
        connect();
      } catch (err) {
        toastError(err);
        b.disabled = false;
        b.classList.remove('busy');
      }
    });
    return b;
  }

  function reconnectButton() {
    return button({ label: 'desktop.reconnect', icon: 'reboot', kind: 'primary', onclick: () => { attempts = 0; connect(); } });
  }

  function notRunning(reason) {
    setStatus('stopped', 'desktop.status.stopped');
    showOverlay('desktop.notRunning', { name: vm ? vm.name : '' }, reason ? t('desktop.reasonLine', { reason }) : '', [startButton()]);
  }

  /** "Forced off at 10:42": the time is formatted in the page's language. */
  function showForced(v) {
    const deadline = v.state === 'stopping' && v.stop_deadline;
    forced.hidden = !deadline;
    if (deadline) {
      bind(forced, 'vm.forcedAt', { time: clockTime(v.stop_deadline) });
      forced.title = absoluteTime(v.stop_deadline);
    }
  }

  function updateVm(v) {
    vm = v;
    bind(title, 'desktop.title', { name: v.name });
    setBadge(badge, v.state);
    showForced(v);
    document.title = `${v.name} · pvce`;
    syncTools();
  }

  // ---- connection
  async function connect() {
    const seq = ++connectSeq;
    clearTimeout(retryTimer);
    teardown();
    hideOverlay();
    setStatus(attempts > 0 ? 'reconnecting' : 'connecting',
      attempts > 0 ? 'desktop.status.reconnecting' : 'desktop.status.connecting',
      { n: attempts, max: MAX_ATTEMPTS });
    let ticket;
    try {
      ticket = await post(`/api/vms/${encodeURIComponent(vmId)}/console`);
    } catch (err) {
      if (unmounted || seq !== connectSeq) return;
      if (err.code === 'vm_not_running' || err.status === 409) {
        refreshVm();
        notRunning(closeReason()); // why the previous connection ended, if there was one
        return;
      }
      if (err.status === 401 || err.status === 403 || err.status === 404) {
        setStatus('failed', 'desktop.status.disconnected');
        showOverlay('desktop.status.reason', { reason: errorText(err) }, '', []);
        return;
      }
      lastClose = { code: 0, reason: errorText(err) };
      retryOrGiveUp();
      return;
    }
    if (unmounted || seq !== connectSeq) return;
    if ((ticket.protocol || 'vnc') !== 'vnc') {
      // SPICE: no in-browser client yet; a native viewer opens the .vv file
      // (one-time password, valid for a short while after the download).
      setStatus('failed', 'desktop.status.disconnected');
      const vv = h('a', {
        class: 'btn primary', id: 'download-vv', download: '',
        href: `/api/vms/${encodeURIComponent(vmId)}/console.vv`,
      }, icon('download'), h('span', { i18n: 'desktop.spice.download' }));
      showOverlay('desktop.spice.noBrowser', {}, t('desktop.spice.howto'), [vv]);
      return;
    }
    lastClose = null;
    // We open the socket ourselves (noVNC accepts a WebSocket) so that the
    // server's close code and reason ("VM stopped", "token expired") are ours to show.
    let ws;
    try {
      ws = new WebSocket(wsUrl(ticket.url), ['binary']);
    } catch (err) {
      lastClose = { code: 0, reason: errorText(err) };
      retryOrGiveUp();
      return;
    }
    ws.addEventListener('close', (e) => { lastClose = { code: e.code, reason: e.reason, clean: e.wasClean }; });
    socket = ws;
    const r = new RFB(screen, ws, { shared: true });
    rfb = r;
    applyScale(r);
    r.focusOnClick = true;
    r.background = '#0d1117';
    r.addEventListener('connect', () => {
      if (r !== rfb) return;
      connected = true;
      attempts = 0;
      desk.dataset.connects = String(++connects);
      hideOverlay();
      const canvas = screen.querySelector('canvas');
      if (canvas && canvas.width > 0) setStatus('connected', 'desktop.status.connectedSize', { w: canvas.width, h: canvas.height });
      else setStatus('connected', 'desktop.status.connected');
      r.focus({ preventScroll: true });
      syncSharp();
    });
    r.addEventListener('disconnect', (e) => {
      if (r !== rfb) return;
      connected = false;
      rfb = null;
      if (unmounted) return;
      onDropped(e.detail && e.detail.clean);
    });
    // Guest → host: text the guest put on its clipboard (QEMU sends it when
    // the guest has a clipboard agent) goes to the browser's clipboard.
    r.addEventListener('clipboard', (e) => {
      if (r !== rfb || !clip.fromGuest) return;
      const text = (e.detail && e.detail.text) || '';
      if (text) copyFromGuest(text);
    });
    r.addEventListener('securityfailure', (e) => {
      const d = e.detail || {};
      lastClose = { code: 0, reason: t('desktop.status.security', { reason: d.reason || `status ${d.status}` }) };
    });
    r.addEventListener('credentialsrequired', () => {
      lastClose = { code: 0, reason: t('desktop.status.credentials') };
      attempts = MAX_ATTEMPTS; // retrying won't help
      r.disconnect();
    });
    r.addEventListener('desktopname', () => {
      const canvas = screen.querySelector('canvas');
      if (connected && canvas) setStatus('connected', 'desktop.status.connectedSize', { w: canvas.width, h: canvas.height });
    });
  }

  async function onDropped(clean) {
    const reason = closeReason() || (clean ? '' : t('desktop.status.unclean'));
    // Is the VM still running? Then the drop is the network's: reconnect.
    let v = null;
    try { v = await get(`/api/vms/${encodeURIComponent(vmId)}`); } catch { /* treat as unknown */ }
    if (unmounted) return;
    if (v) updateVm(v);
    if (v && v.state !== 'running' && v.state !== 'starting') {
      notRunning(reason);
      return;
    }
    // The VM moved to another node: reconnect at once, it's not a failure.
    if (lastClose && lastClose.code === 4002) { connect(); return; }
    if (lastClose && !resumes(lastClose.code)) {
      setStatus('failed', 'desktop.status.disconnected');
      showOverlay('desktop.status.reason', { reason }, '', [reconnectButton()]);
      return;
    }
    retryOrGiveUp(reason);
  }

  function retryOrGiveUp(reason = closeReason()) {
    if (attempts >= MAX_ATTEMPTS) {
      // Never give up for good: the server or the network may come back
      // (a restart, a Wi-Fi change). Say so, offer "now", retry slowly.
      attempts += 1;
      setStatus('failed', 'desktop.status.waiting', { n: attempts - 1, secs: SLOW_RETRY_MS / 1000 });
      showOverlay('desktop.status.waiting', { n: attempts - 1, secs: SLOW_RETRY_MS / 1000 }, reason ? t('desktop.status.reason', { reason }) : '', [reconnectButton()]);
      retryTimer = setTimeout(connect, SLOW_RETRY_MS);
      return;
    }
    attempts += 1;
    setStatus('reconnecting', 'desktop.status.reconnecting', { n: attempts, max: MAX_ATTEMPTS });
    if (reason) status.title = reason;
    retryTimer = setTimeout(connect, backoff(attempts));
  }

  function teardown() {
    connected = false;
    if (rfb) {
      const r = rfb;
      rfb = null; // its disconnect event is ignored from now on
      try { r.disconnect(); } catch { /* already closed */ }
    }
    for (const c of screen.children) c.remove();
  }

  async function refreshVm() {
    try {
      const v = await get(`/api/vms/${encodeURIComponent(vmId)}`);
      if (unmounted) return;
      updateVm(v);
      // Started elsewhere (another tab, the teacher) while we showed "not running".
      if (v.state === 'running' && desk.dataset.conn === 'stopped') { attempts = 0; connect(); }
    } catch { /* shown elsewhere */ }
  }

  function pollVm() {
    pollTimer = setTimeout(async () => {
      if (document.visibilityState === 'visible') await refreshVm();
      if (!unmounted) pollVm();
    }, VM_POLL_MS);
  }

  // ---- tools
  function showSerial(on) {
    if (on) serial.open(); else serial.close();
    desk.classList.toggle('serial-open', on);
    serialBtn.setAttribute('aria-expanded', on ? 'true' : 'false');
    if (!on) { if (rfb) rfb.focus({ preventScroll: true }); else serialBtn.focus(); }
  }
  serialBtn.addEventListener('click', () => showSerial(!serial.isOpen));
  serial.closeBtn.addEventListener('click', () => showSerial(false));

  cadBtn.addEventListener('click', () => {
    if (rfb && connected) { rfb.sendCtrlAltDel(); rfb.focus({ preventScroll: true }); }
  });

  function isFullscreen() { return document.fullscreenElement === desk; }
  function syncFs() {
    const on = isFullscreen();
    bind(fsBtn.querySelector('.label'), on ? 'desktop.exitFullscreen' : 'desktop.fullscreen');
    fsBtn.setAttribute('aria-pressed', on ? 'true' : 'false');
    desk.classList.toggle('is-fullscreen', on);
  }
  fsBtn.addEventListener('click', async () => {
    try {
      if (isFullscreen()) await document.exitFullscreen();
      else await desk.requestFullscreen({ navigationUI: 'hide' });
    } catch (err) { toastError(err); }
    if (rfb) rfb.focus({ preventScroll: true });
  });
  document.addEventListener('fullscreenchange', syncFs);
  syncFs();

  pasteBtn.addEventListener('click', () => {
    pastePanel.hidden = !pastePanel.hidden;
    pasteBtn.setAttribute('aria-expanded', pastePanel.hidden ? 'false' : 'true');
    if (!pastePanel.hidden) pasteText.focus();
  });
  pasteSend.addEventListener('click', async () => {
    if (typingAbort) { typingAbort.abort(); return; }
    if (!rfb || !connected) { toast(t('desktop.paste.notConnected'), 'error'); return; }
    const text = pasteText.value;
    if (!text) return;
    const { untypeable } = plan(text);
    typingAbort = new AbortController();
    bind(pasteSend.querySelector('.label'), 'desktop.paste.stop');
    const target = rfb;
    const n = await typeText(target, text, {
      signal: typingAbort.signal,
      isConnected: () => connected && rfb === target,
      onProgress: (done, total) => bind(pasteProgress, 'desktop.paste.typing', { done, total }),
    });
    typingAbort = null;
    bind(pasteSend.querySelector('.label'), 'desktop.paste.send');
    // Characters with no key on the guest's keyboard are named, not dropped silently.
    if (untypeable.length) bind(pasteProgress, 'desktop.paste.doneSkipped', { n, m: untypeable.length, chars: untypeable.map((c) => `“${c}”`).join(' ') });
    else bind(pasteProgress, 'desktop.paste.done', { n });
    if (rfb) rfb.focus({ preventScroll: true });
  });

  // ---- clipboard without the panel
  // Host → guest: Ctrl+V (Shift+Insert) while the screen has the keyboard is
  // kept from noVNC, so the browser's own paste follows and brings the text
  // in a paste event; where a browser fires none, the async Clipboard API is
  // asked instead. The tiny guests have no clipboard agent (QEMU's VNC
  // clipboard needs one), so the text is typed — up to PASTE_LIMIT
  // characters, with a note of what could not be typed. The course may turn
  // either direction off (an exam); the panel stays as the fallback.
  const clip = { toGuest: true, fromGuest: true };
  let pasteWait = null; // the Clipboard API fallback, cancelled by a paste event
  screen.addEventListener('keydown', (e) => {
    if (!isPasteKey(e) || !clip.toGuest || !rfb || !connected) return;
    e.stopPropagation(); // not to noVNC: no preventDefault, the browser pastes
    // The guest saw Ctrl (or Shift) go down: release it before typing.
    rfb.sendKey(0xffe3, 'ControlLeft', false);
    rfb.sendKey(0xffe1, 'ShiftLeft', false);
    rfb.sendKey(0xffeb, 'MetaLeft', false);
    clearTimeout(pasteWait);
    pasteWait = setTimeout(async () => {
      pasteWait = null;
      let text = '';
      try { text = await navigator.clipboard.readText(); } catch { /* refused: the panel is the way */ }
      if (text) pasteToGuest(text);
      else toast(t('desktop.clip.refused'), 'error');
    }, 300);
  }, true);
  screen.addEventListener('paste', (e) => {
    if (!clip.toGuest) return;
    e.preventDefault();
    clearTimeout(pasteWait);
    pasteWait = null;
    const text = e.clipboardData ? e.clipboardData.getData('text/plain') : '';
    if (text) pasteToGuest(text);
  }, true);

  async function pasteToGuest(all) {
    if (!rfb || !connected || typingAbort) return;
    const text = [...all].slice(0, PASTE_LIMIT).join('');
    const cut = [...all].length - [...text].length;
    const { untypeable } = plan(text);
    typingAbort = new AbortController();
    const target = rfb;
    desk.dataset.pasting = 'true';
    bind(status, 'desktop.clip.typing', { n: [...text].length });
    const n = await typeText(target, text, {
      signal: typingAbort.signal,
      isConnected: () => connected && rfb === target,
    });
    typingAbort = null;
    delete desk.dataset.pasting;
    const notes = [t('desktop.clip.typed', { n })];
    if (untypeable.length) notes.push(t('desktop.clip.untypeable', { m: untypeable.length, chars: untypeable.map((c) => `“${c}”`).join(' ') }));
    if (cut > 0) notes.push(t('desktop.clip.cut', { max: PASTE_LIMIT, m: cut }));
    const note = notes.join(' ');
    desk.dataset.pasted = String(n);
    status.title = note;
    toast(note, untypeable.length || cut > 0 ? 'error' : 'success');
  }

  async function copyFromGuest(text) {
    try {
      await navigator.clipboard.writeText(text);
      toast(t('desktop.clip.copied'), 'success');
    } catch {
      // Not allowed here (no focus, no permission): the panel holds it.
      pasteText.value = text;
      toast(t('desktop.clip.copiedPanel'));
    }
  }

  /** The course's clipboard switches: off hides the way in (or out). */
  function applyClip() {
    pasteBtn.hidden = !clip.toGuest;
    pasteHint.hidden = !clip.toGuest;
    desk.dataset.clipToGuest = String(clip.toGuest);
    desk.dataset.clipFromGuest = String(clip.fromGuest);
    clipChip.hidden = clip.toGuest && clip.fromGuest;
    if (!clip.toGuest && !pastePanel.hidden) { pastePanel.hidden = true; pasteBtn.setAttribute('aria-expanded', 'false'); }
  }
  async function loadClip() {
    let c;
    try { c = await get(`/api/courses/${encodeURIComponent(vm.course_id)}`); } catch { return; }
    if (unmounted) return;
    clip.toGuest = c.clipboard_to_guest !== false;
    clip.fromGuest = c.clipboard_from_guest !== false;
    applyClip();
  }

  // ---- keyboard: the way out, the phone's key bar, actual size
  // Ctrl+] (BracketRight) is caught before noVNC's own key handler (which
  // sits on the canvas inside `screen`) and gives the keyboard back.
  screen.addEventListener('keydown', (e) => {
    if (e.ctrlKey && !e.altKey && (e.code === 'BracketRight' || e.key === ']')) {
      e.preventDefault();
      e.stopPropagation();
      if (rfb) rfb.blur();
      (kbdBtn.disabled ? back : kbdBtn).focus();
      bind(status, 'desktop.kbdReleased');
    }
  }, true);
  screen.addEventListener('focusin', () => desk.classList.add('kbd-captured'));
  screen.addEventListener('focusout', () => desk.classList.remove('kbd-captured'));

  function sendSpecial(name) {
    if (!rfb || !connected) return;
    press(rfb, SPECIAL[name], [...held]);
    releaseMods();
  }
  function releaseMods() {
    held.clear();
    for (const b of keybar.querySelectorAll('[data-mod]')) b.setAttribute('aria-pressed', 'false');
  }
  /** Types what the phone's keyboard put in the field (after an IME has finished composing). */
  async function flushInput() {
    const text = kbdInput.value;
    kbdInput.value = '';
    if (!text || !rfb || !connected) return;
    const { strokes: list, untypeable } = plan(text);
    if (untypeable.length) toast(t('desktop.keys.untypeable', { chars: untypeable.map((c) => `“${c}”`).join(' ') }), 'error');
    const mods = [...held];
    releaseMods();
    for (const s of list) press(rfb, s, mods);
  }
  let composing = false;
  kbdInput.addEventListener('compositionstart', () => { composing = true; });
  kbdInput.addEventListener('compositionend', () => { composing = false; flushInput(); });
  kbdInput.addEventListener('input', () => { if (!composing) flushInput(); });
  kbdInput.addEventListener('keydown', (e) => {
    // Keys that put nothing in a text field go to the guest as keys.
    if (e.isComposing) return;
    const name = e.key === 'Enter' ? 'Enter' : e.key === 'Backspace' && !kbdInput.value ? 'Backspace'
      // Tab keeps moving the focus (the key bar has a Tab key of its own).
      : e.key in SPECIAL && e.key !== 'Backspace' && e.key !== 'Tab' ? e.key : null;
    if (!name) return;
    e.preventDefault();
    sendSpecial(name);
  });
  kbdBtn.addEventListener('click', () => {
    keybar.hidden = !keybar.hidden;
    kbdBtn.setAttribute('aria-expanded', keybar.hidden ? 'false' : 'true');
    if (!keybar.hidden) kbdInput.focus();
  });

  // ---- scaling: fit (the default) or 1:1, remembered per user. Either way
  // the page asks the guest to take the window's size (resizeSession: QEMU
  // does where the guest's display supports ExtendedDesktopSize); where it
  // can't, fit scales locally. noVNC follows window resizes itself.
  let scaleMode = loadScale(me.id);
  function applyScale(r) {
    const actual = scaleMode === '1:1';
    zoomBtn.setAttribute('aria-pressed', actual ? 'true' : 'false');
    desk.classList.toggle('actual-size', actual);
    desk.dataset.scale = scaleMode;
    if (!r) return;
    r.scaleViewport = !actual;
    r.clipViewport = actual;
    r.dragViewport = actual;
    r.resizeSession = true;
  }
  /** Marks the canvas for nearest-neighbour drawing when that is sharp ({@link sharpAt}). */
  function syncSharp() {
    const c = screen.querySelector('canvas');
    if (!c || !c.width) return;
    const sharp = sharpAt(c.clientWidth / c.width, window.devicePixelRatio || 1);
    c.classList.toggle('sharp', sharp);
    desk.dataset.sharp = sharp ? 'true' : 'false';
  }
  // The canvas changes size with the window, the guest's resolution and the mode.
  const sizeWatch = new ResizeObserver(() => syncSharp());
  const canvasWatch = new MutationObserver(() => {
    const c = screen.querySelector('canvas');
    if (c) { sizeWatch.disconnect(); sizeWatch.observe(c); syncSharp(); }
  });
  canvasWatch.observe(screen, { childList: true, subtree: true, attributes: true, attributeFilter: ['width', 'height', 'style'] });
  applyScale(null);
  zoomBtn.addEventListener('click', () => {
    scaleMode = scaleMode === '1:1' ? 'fit' : '1:1';
    saveScale(me.id, scaleMode);
    applyScale(rfb);
    syncSharp();
  });

  /**
   * A build VM of a draft template (derive online): offer to seal or abandon
   * the draft. The draft is `build_template_id`; `template_id` is its parent.
   */
  async function offerSeal() {
    let tpl;
    try { tpl = await get(`/api/templates/${encodeURIComponent(vm.build_template_id)}`); } catch { return; }
    if (unmounted || tpl.state !== 'draft') return;
    const draft = h('p', { class: 'draft-chip' }, h('strong', { i18n: ['tpl.draft.of', { name: tpl.name }] }), ' ',
      h('span', { class: 'muted', i18n: 'tpl.draft.hint' }));
    const seal = button({ label: 'tpl.seal', icon: 'upload', kind: 'small primary', attrs: { id: 'seal-draft' } });
    const abandon = button({ label: 'tpl.abandon', kind: 'small danger', attrs: { id: 'abandon-draft' } });
    seal.addEventListener('click', async () => {
      if (await sealDraft(tpl, seal)) location.hash = '#/templates';
    });
    abandon.addEventListener('click', async () => {
      if (await abandonDraft(tpl, abandon)) location.hash = '#/templates';
    });
    // A strip of its own under the toolbar: the VM's tools keep their room.
    desk.querySelector('.desktop-bar').after(h('div', { class: 'draft-bar' }, draft, h('div', { class: 'draft-actions' }, seal, abandon)));
  }

  async function showOwner() {
    let students;
    try { students = await get(`/api/courses/${encodeURIComponent(vm.course_id)}/students`); } catch { return; }
    const u = (students || []).find((x) => x.id === vm.owner_id);
    if (!u || unmounted) return;
    const name = u.display_name && u.display_name !== u.username ? `${u.display_name} (${u.username})` : u.username;
    bind(owner, 'desktop.owner', { name });
    owner.hidden = false;
  }

  // Simulates a network drop (used by the browser test of automatic reconnection).
  desk.addEventListener('pvce:drop', () => { if (socket) socket.close(); });

  const offLang = onLangChange(() => { if (vm) { document.title = `${vm.name} · pvce`; showForced(vm); } });

  // ---- start
  (async () => {
    setStatus('connecting', 'desktop.status.connecting');
    try {
      updateVm(await get(`/api/vms/${encodeURIComponent(vmId)}`));
    } catch (err) {
      setStatus('failed', 'desktop.status.disconnected');
      showOverlay('desktop.status.reason', { reason: errorText(err) }, '', []);
      return;
    }
    if (unmounted) return;
    // A build VM has no course: its way back is the template library.
    if (me.role === 'student') back.href = '#/courses';
    else if (vm.course_id) back.href = `#/teach/${vm.course_id}`;
    else {
      back.href = '#/templates';
      bind(back, 'desktop.backTemplates', null, 'aria-label');
      bind(back, 'desktop.backTemplates', null, 'title');
    }
    if (vm.build_template_id && me.role !== 'student') offerSeal();
    if (vm.course_id && vm.owner_id !== me.id) showOwner();
    if (vm.course_id) await loadClip();
    if (vm.course_id && !unmounted) termBanner(vm.course_id, termLine);
    if (vm.course_id && !unmounted) stopClass = watchClass(vmId, queueLine);
    if (vm.course_id && !unmounted) stopIdle = watchIdle(vmId);
    if (vm.course_id && !unmounted) {
      // Ask for help, who is watching, the teacher's screen (assist.js).
      const assist = assistBar(vmId, me, vm.owner_id);
      desk.querySelector('.desktop-tools').prepend(...assist.tools);
      desk.querySelector('.screen-wrap').before(assist.banner);
      stopAssist = assist.stop;
    }
    pollVm();
    if (vm.state === 'running') connect(); else notRunning('');
  })();

  return {
    unmount() {
      unmounted = true;
      stopClass();
      stopIdle();
      stopAssist();
      clearTimeout(retryTimer);
      clearTimeout(pollTimer);
      clearTimeout(pasteWait);
      if (typingAbort) typingAbort.abort();
      teardown();
      serial.dispose();
      sizeWatch.disconnect();
      canvasWatch.disconnect();
      offLang();
      document.removeEventListener('fullscreenchange', syncFs);
      if (isFullscreen()) document.exitFullscreen().catch(() => {});
      container.classList.remove('desktop-container');
    },
  };
}
