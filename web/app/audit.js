// The audit log (admins): who did what to what, when and from where —
// filters (user, action, kind of target, date range), pages of 50 newest
// first, and a CSV download of the filtered entries (GET /api/audit.csv).
//
// Everything users typed (names, labels, details) is rendered with
// textContent through h(): never as HTML.

import { h, replace, absoluteTime, toastError, field } from './ui.js';
import { get } from './api.js';

// The action names of the API (src/audit/action.rs), in the same order.
const ACTIONS = ['sign_in', 'sign_out', 'user_role_changed', 'user_disabled', 'user_enabled',
  'user_password_reset', 'vm_start', 'vm_shutdown', 'vm_poweroff', 'vm_reboot', 'vm_reset',
  'console_open', 'layer_export', 'layer_import', 'collection', 'template_seal', 'template_delete',
  'settings_sla', 'settings_calendar', 'settings_alert_rules', 'settings_notifications',
  'settings_service_levels'];
const KINDS = ['user', 'vm', 'template', 'course', 'settings'];
const PAGE = 50;


/** A date input's day as the RFC 3339 instant of its local midnight (+`days`). */
function dayStart(value, days = 0) {
  const d = new Date(`${value}T00:00:00`);
  d.setDate(d.getDate() + days);
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function mount(container) {
  let stopped = false;
  let offset = 0;
  const user = h('input', { id: 'audit-user', name: 'user', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: 64 });
  const action = h('select', { id: 'audit-action', name: 'action' },
    h('option', { value: '', i18n: 'audit.any' }),
    ACTIONS.map((a) => h('option', { value: a, i18n: `audit.action.${a}` })));
  const kind = h('select', { id: 'audit-kind', name: 'target_kind' },
    h('option', { value: '', i18n: 'audit.any' }),
    KINDS.map((k) => h('option', { value: k, i18n: `audit.kind.${k}` })));
  const from = h('input', { id: 'audit-from', type: 'date' });
  const to = h('input', { id: 'audit-to', type: 'date' });
  const csv = h('a', { class: 'btn', href: '/api/audit.csv', download: '', dataset: { action: 'csv' }, i18n: 'audit.csv' });
  const apply = h('button', { type: 'submit', class: 'btn primary', dataset: { action: 'filter' }, i18n: 'audit.filter' });
  const form = h('form', { class: 'card pad audit-filters', novalidate: true, role: 'search', i18nAria: 'audit.filters' },
    h('div', { class: 'form-grid' },
      field('audit-user', 'audit.user', user), field('audit-action', 'audit.actionLabel', action),
      field('audit-kind', 'audit.kindLabel', kind), field('audit-from', 'audit.from', from),
      field('audit-to', 'audit.to', to)),
    h('div', { class: 'form-actions' }, apply, csv));
  const list = h('div', { class: 'audit-list', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', class: 'btn', dataset: { action: 'prev' }, i18n: 'audit.prev' });
  const next = h('button', { type: 'button', class: 'btn', dataset: { action: 'next' }, i18n: 'audit.next' });
  const pager = h('div', { class: 'form-actions audit-pager' }, prev, next);

  /** The filters as query parameters. */
  function query() {
    const q = new URLSearchParams();
    if (user.value.trim()) q.set('user', user.value.trim());
    if (action.value) q.set('action', action.value);
    if (kind.value) q.set('target_kind', kind.value);
    if (from.value) q.set('from', dayStart(from.value));
    // The whole last day: `to` is exclusive.
    if (to.value) q.set('to', dayStart(to.value, 1));
    return q;
  }

  function row(e) {
    const detail = e.detail && Object.keys(e.detail).length ? JSON.stringify(e.detail) : '';
    return h('tr', { dataset: { action: e.action, outcome: e.outcome, seq: String(e.seq) } },
      h('td', { class: 'num' }, absoluteTime(e.at)),
      h('td', {}, e.user_name),
      h('td', { i18n: `audit.action.${e.action}` }),
      h('td', {}, h('span', { class: 'muted', i18n: `audit.kind.${e.target.kind}` }), ' ', e.target.label),
      h('td', { class: 'num' }, e.ip || '—'),
      h('td', {}, h('span', { class: `badge audit-${e.outcome}`, i18n: `audit.outcome.${e.outcome}` })),
      h('td', { class: 'audit-detail small' }, detail));
  }

  async function load() {
    const q = query();
    csv.href = `/api/audit.csv?${q}`;
    q.set('limit', String(PAGE + 1));
    q.set('offset', String(offset));
    list.setAttribute('aria-busy', 'true');
    let rows;
    try { rows = await get(`/api/audit?${q}`); } catch (err) { if (!stopped) toastError(err); list.removeAttribute('aria-busy'); return; }
    if (stopped) return;
    list.removeAttribute('aria-busy');
    const more = rows.length > PAGE;
    rows = rows.slice(0, PAGE);
    prev.disabled = offset === 0;
    next.disabled = !more;
    if (!rows.length) { replace(list, h('div', { class: 'empty card' }, h('p', { i18n: 'audit.empty' }))); return; }
    replace(list, h('section', { class: 'card table-wrap' }, h('table', { class: 'data audit' },
      h('caption', { class: 'visually-hidden', i18n: 'audit.title' }),
      h('thead', {}, h('tr', {}, ['audit.col.at', 'audit.col.user', 'audit.col.action', 'audit.col.target',
        'audit.col.ip', 'audit.col.outcome', 'audit.col.detail'].map((k) => h('th', { scope: 'col', i18n: k })))),
      h('tbody', {}, rows.map(row)))));
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); offset = 0; load(); });
  prev.addEventListener('click', () => { offset = Math.max(0, offset - PAGE); load(); });
  next.addEventListener('click', () => { offset += PAGE; load(); });

  replace(container,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { i18n: 'audit.title' }),
      h('p', { class: 'muted', i18n: 'audit.subtitle' }))),
    form, list, pager);
  load();
  return { unmount() { stopped = true; } };
}
