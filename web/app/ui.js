// Small DOM helpers, toasts, a confirmation dialog and formatting.

import { t, bind, lang, has } from './i18n.js';

/**
 * Creates an element. `props`: `class`, `i18n` / `i18nAria` / `i18nTitle` /
 * `i18nPh` (a key or [key, args]), `on<event>` handlers, `dataset`, booleans
 * (`disabled`, `hidden`, …) and any other attribute. Children: nodes, strings,
 * arrays, null (skipped).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'i18n') bindProp(el, v, null);
      else if (k === 'i18nAria') bindProp(el, v, 'aria-label');
      else if (k === 'i18nTitle') bindProp(el, v, 'title');
      else if (k === 'i18nPh') bindProp(el, v, 'placeholder');
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function bindProp(el, v, attr) {
  const [key, args] = Array.isArray(v) ? v : [v, undefined];
  bind(el, key, args, attr);
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An inline SVG icon from the sprite-free set below (decorative: aria-hidden). */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.classList.add('icon');
  for (const d of ICONS[name] || []) {
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  return svg;
}

const ICONS = {
  play: ['M7 4.5v15l12-7.5z'],
  power: ['M12 3v9', 'M6.3 6.3a8 8 0 1 0 11.4 0'],
  plug: ['M9 2v6', 'M15 2v6', 'M6 8h12v3a6 6 0 0 1-12 0z', 'M12 17v5'],
  reboot: ['M20 12a8 8 0 1 1-2.34-5.66', 'M20 4v5h-5'],
  reset: ['M3 12a9 9 0 1 0 3-6.7', 'M3 3v6h6', 'M12 8v4l3 2'],
  monitor: ['M3 4h18v12H3z', 'M8 20h8', 'M12 16v4'],
  back: ['M15 5l-7 7 7 7'],
  fullscreen: ['M4 9V4h5', 'M20 9V4h-5', 'M4 15v5h5', 'M20 15v5h-5'],
  type: ['M4 7V4h16v3', 'M9 20h6', 'M12 4v16'],
  keyboard: ['M2 6h20v12H2z', 'M6 10h.01', 'M10 10h.01', 'M14 10h.01', 'M18 10h.01', 'M7 14h10'],
  paste: ['M9 4h6v3H9z', 'M7 5H5v16h14V5h-2', 'M8 12h8', 'M8 16h5'],
  key: ['M14.5 9.5a4 4 0 1 1-8 0 4 4 0 0 1 8 0z', 'M13.4 12.3L21 20', 'M18 17l2-2', 'M16 15l2-2'],
  logout: ['M15 4h4v16h-4', 'M10 8l-4 4 4 4', 'M6 12h11'],
  globe: ['M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z', 'M3 12h18', 'M12 3c3 3.5 3 14.5 0 18', 'M12 3c-3 3.5-3 14.5 0 18'],
  close: ['M6 6l12 12', 'M18 6L6 18'],
  upload: ['M12 16V4', 'M7 9l5-5 5 5', 'M4 20h16'],
  download: ['M12 4v12', 'M7 11l5 5 5-5', 'M4 20h16'],
  plus: ['M12 5v14', 'M5 12h14'],
  chevron: ['M9 6l6 6-6 6'],
  warn: ['M12 3l10 18H2z', 'M12 10v4', 'M12 17.5h.01'],
  course: ['M4 5h11a3 3 0 0 1 3 3v12H7a3 3 0 0 1-3-3z', 'M18 8h2v12', 'M8 9h6'],
  menu: ['M4 6h16', 'M4 12h16', 'M4 18h16'],
  bell: ['M6 16V11a6 6 0 0 1 12 0v5l2 2H4z', 'M10 20a2 2 0 0 0 4 0'],
  check: ['M5 12l5 5 9-10'],
  terminal: ['M3 4h18v16H3z', 'M7 9l3 3-3 3', 'M12 15h5'],
  gear: ['M12 9a3 3 0 1 0 0 6 3 3 0 0 0 0-6z', 'M12 2v3', 'M12 19v3', 'M2 12h3', 'M19 12h3', 'M4.9 4.9l2.1 2.1', 'M17 17l2.1 2.1', 'M4.9 19.1L7 17', 'M17 7l2.1-2.1'],
};

/** A button with an icon and a (translated) label. */
export function button({ label, args, icon: ic, kind = '', onclick, aria, iconOnly = false, attrs = {} }) {
  const b = h('button', { type: 'button', class: `btn ${kind}`.trim(), onclick, ...attrs });
  if (ic) b.append(icon(ic));
  if (label) {
    const span = h('span', { class: iconOnly ? 'visually-hidden' : 'label', i18n: [label, args] });
    b.append(span);
  }
  if (aria) bind(b, aria[0], aria[1], 'aria-label');
  return b;
}

// ---------------------------------------------------------------- toasts

let toastRoot;
export function toast(message, kind = 'info', { timeout } = {}) {
  if (!toastRoot) toastRoot = document.getElementById('toasts');
  const close = h('button', { type: 'button', class: 'toast-close', i18nAria: 'common.dismiss' }, icon('close'));
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'toast-msg' }, message), close);
  const remove = () => { el.classList.add('leaving'); setTimeout(() => el.remove(), 200); };
  close.addEventListener('click', remove);
  toastRoot.append(el);
  setTimeout(remove, timeout ?? (kind === 'error' ? 9000 : 4500));
  // Keep at most 4 on screen.
  while (toastRoot.children.length > 4) toastRoot.firstElementChild.remove();
  return el;
}

/**
 * The text of an API error for the user. The server's message is English and often names the
 * node or VM; in other languages a translation of the error code is shown
 * where there is one (`apierr.<code>`), so a student never reads English.
 */
export function errorText(err) {
  const key = err && err.code ? `apierr.${err.code}` : null;
  if (key && lang() !== 'en' && has(key)) return t(key);
  return err && err.message ? err.message : String(err);
}

export function toastError(err) {
  toast(errorText(err), 'error');
}

// ---------------------------------------------------------------- dialog

/**
 * Asks for confirmation with a modal <dialog>. Resolves true when confirmed.
 * `danger` styles the confirm button red.
 */
/**
 * Disables `btn` (if given) with the busy spinner while `f` runs; an error is
 * toasted. Resolves to f's result, or null after an error.
 */
export async function busy(btn, f) {
  if (btn) { btn.disabled = true; btn.classList.add('busy'); }
  try {
    return await f();
  } catch (err) {
    toastError(err);
    return null;
  } finally {
    if (btn && btn.isConnected) { btn.disabled = false; btn.classList.remove('busy'); }
  }
}

/** A labelled form field, with an optional hint below the control. */
export function field(id, labelKey, control, hintKey) {
  return h('div', { class: 'field' }, h('label', { for: id, i18n: labelKey }), control,
    hintKey ? h('p', { class: 'muted small', i18n: hintKey }) : null);
}

export function confirmDialog({ title, body, confirm, danger = false }) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'submit', class: `btn ${danger ? 'danger' : 'primary'}`, value: 'ok', i18n: confirm });
    const cancel = h('button', { type: 'button', class: 'btn', value: 'cancel', i18n: 'common.cancel' });
    const titleEl = h('h2', { id: 'dlg-title', i18n: title });
    const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': 'dlg-title', 'aria-describedby': 'dlg-body' },
      h('form', { method: 'dialog' },
        h('div', { class: 'dialog-head' }, danger ? icon('warn') : null, titleEl),
        h('p', { id: 'dlg-body', i18n: body }),
        h('div', { class: 'dialog-actions' }, cancel, ok)));
    cancel.addEventListener('click', () => dlg.close('cancel'));
    dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'ok'); dlg.remove(); });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

// ---------------------------------------------------------------- formatting

/** A number in the page's language (digit grouping, decimal sign). */
export function formatNumber(n, digits = 0, minDigits = digits) {
  return new Intl.NumberFormat(lang(), { maximumFractionDigits: digits, minimumFractionDigits: minDigits }).format(n);
}

export function formatBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return t('common.none');
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${formatNumber(v, v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatMib(mib) {
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

/** "5 minutes ago" in the current language; `never` when there is no time. */
export function relativeTime(iso) {
  if (!iso) return t('common.never');
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return t('common.none');
  const secs = Math.round((then - Date.now()) / 1000);
  if (Math.abs(secs) < 45) return t('time.justNow');
  const rtf = new Intl.RelativeTimeFormat(lang(), { numeric: 'auto' });
  const steps = [['minute', 60], ['hour', 3600], ['day', 86400], ['week', 604800], ['month', 2629800], ['year', 31557600]];
  let unit = 'minute';
  let size = 60;
  for (const [u, s] of steps) {
    if (Math.abs(secs) >= s) { unit = u; size = s; }
  }
  return rtf.format(Math.round(secs / size), unit);
}

export function absoluteTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString(lang());
}

/** The time of day of `iso` ("10:42" / "下午2:05"…), in the page's language. */
export function clockTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString(lang(), { hour: 'numeric', minute: '2-digit' });
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}
