// Class time: hours (/api/courses/{id}/usage, /api/me/usage). The teacher's
// card on the class view shows each student's minutes in and outside the
// course's sessions for a period (lab dates) and downloads them as CSV; a
// student's course card shows the hours they used outside sessions and,
// with a budget, what is left.

import { t, bind, onLangChange } from './i18n.js';
import { h, replace, toast, toastError } from './ui.js';
import { get, api } from './api.js';

const usagePath = (courseId) => `/api/courses/${encodeURIComponent(courseId)}/usage`;

/** Minutes as hours with one decimal ("1.5"). */
export function hours(minutes) {
  return (Math.round((minutes / 60) * 10) / 10).toLocaleString(undefined, { maximumFractionDigits: 1 });
}

/** The student's line of hours on a course card. Returns { el, update(u) }. */
export function hoursLine() {
  const el = h('p', { class: 'muted small course-hours', hidden: true });
  function update(u) {
    el.hidden = !u;
    if (!u) return;
    el.dataset.left = u.left_minutes ?? '';
    if (u.budget_minutes === null) {
      bind(el, 'usage.mine.used', { used: hours(u.outside_minutes) });
    } else {
      bind(el, 'usage.mine.left', { used: hours(u.outside_minutes), left: hours(u.left_minutes), budget: hours(u.budget_minutes) });
    }
    el.classList.toggle('warn', u.left_minutes !== null && u.left_minutes <= 60);
  }
  return { el, update };
}

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

/** The teacher's usage card of a course. Returns { el }. */
export function usageCard(courseId) {
  const today = new Date();
  const from = h('input', { id: 'usage-from', type: 'date', value: isoDay(new Date(today.getTime() - 29 * 86400000)) });
  const to = h('input', { id: 'usage-to', type: 'date', value: isoDay(today) });
  const show = h('button', { type: 'submit', class: 'btn', id: 'usage-show', i18n: 'usage.show' });
  const csv = h('a', { class: 'btn', id: 'usage-csv', i18n: 'usage.csv', download: '' });
  const tbody = h('tbody', {});
  const empty = h('p', { class: 'muted empty-small', i18n: 'usage.none', hidden: true });
  const table = h('div', { class: 'table-wrap', tabindex: '0' },
    h('table', { class: 'data', id: 'usage-table' },
      h('thead', {}, h('tr', {}, ['usage.col.student', 'usage.col.in', 'usage.col.out', 'usage.col.days']
        .map((k) => h('th', { scope: 'col', i18n: k })))),
      tbody));
  const form = h('form', { class: 'section-body usage-form' },
    h('p', { class: 'muted small', i18n: 'usage.hint' }),
    h('div', { class: 'spec-row' },
      h('div', { class: 'field' }, h('label', { for: 'usage-from', i18n: 'usage.from' }), from),
      h('div', { class: 'field' }, h('label', { for: 'usage-to', i18n: 'usage.to' }), to)),
    h('div', { class: 'form-actions' }, show, csv),
    table, empty);

  let last = null;
  function query() {
    const q = new URLSearchParams();
    if (from.value) q.set('from', from.value);
    if (to.value) q.set('to', to.value);
    return q;
  }
  function render(r) {
    last = r;
    empty.hidden = r.students.length > 0;
    replace(tbody, r.students.map((s) => h('tr', { dataset: { userId: s.user_id } },
      h('td', {}, s.display_name && s.display_name !== s.username ? `${s.display_name} (${s.username})` : s.username),
      h('td', { class: 'num', dataset: { minutes: s.in_session_minutes } }, t('usage.h', { h: hours(s.in_session_minutes) })),
      h('td', { class: 'num', dataset: { minutes: s.outside_minutes } }, t('usage.h', { h: hours(s.outside_minutes) })),
      h('td', { class: 'num' }, String(new Set(s.days.map((d) => d.date)).size)))));
  }
  async function load() {
    const q = query();
    const csvQ = new URLSearchParams(q);
    csvQ.set('format', 'csv');
    csv.href = `${usagePath(courseId)}?${csvQ}`;
    try {
      render(await get(`${usagePath(courseId)}?${q}`));
    } catch (err) {
      toastError(err);
    }
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  onLangChange(() => { if (last) render(last); });
  load();
  return { el: form };
}

/** A number input's value as an integer, or null when empty. */
function intOrNull(input) {
  const v = input.value.trim();
  return v === '' ? null : Number(v);
}

/** The teacher's quota card of a course: budget, VMs at once, extra hours. Returns { el }. */
export function quotaCard(courseId) {
  const qpath = `/api/courses/${encodeURIComponent(courseId)}/quota`;
  const budget = h('input', { id: 'quota-hours', type: 'number', min: 0, max: 10000, step: 1, inputmode: 'numeric' });
  const maxVms = h('input', { id: 'quota-max-vms', type: 'number', min: 1, max: 10000, step: 1, inputmode: 'numeric' });
  const save = h('button', { type: 'submit', class: 'btn primary', id: 'quota-save', i18n: 'common.save' });
  const tbody = h('tbody', {});
  const form = h('form', { class: 'section-body quota-form', id: 'quota-form' },
    h('p', { class: 'muted small', i18n: 'quota.hint' }),
    h('div', { class: 'spec-row' },
      h('div', { class: 'field' }, h('label', { for: 'quota-hours', i18n: 'quota.hours' }), budget),
      h('div', { class: 'field' }, h('label', { for: 'quota-max-vms', i18n: 'quota.maxVms' }), maxVms)),
    h('div', { class: 'form-actions' }, save));
  const table = h('div', { class: 'table-wrap', tabindex: '0' },
    h('table', { class: 'data', id: 'quota-table' },
      h('thead', {}, h('tr', {}, ['usage.col.student', 'quota.col.used', 'quota.col.left', 'quota.col.extra']
        .map((k) => h('th', { scope: 'col', i18n: k })))),
      tbody));
  const el = h('div', {}, form, table);

  let last = null;
  function render(q) {
    last = q;
    if (document.activeElement !== budget) budget.value = q.hours_outside ?? '';
    if (document.activeElement !== maxVms) maxVms.value = q.max_concurrent_vms ?? '';
    replace(tbody, q.students.map((s) => {
      const name = s.display_name && s.display_name !== s.username ? `${s.display_name} (${s.username})` : s.username;
      const extra = h('input', { type: 'number', class: 'small extra-hours', min: 0, max: 10000, step: 1, value: String(s.extra_hours), i18nAria: ['quota.extraAria', { name }] });
      const grant = h('button', { type: 'submit', class: 'btn small', i18n: 'quota.grant' });
      const f = h('form', { class: 'inline-form' }, extra, grant);
      f.addEventListener('submit', async (e) => {
        e.preventDefault();
        try {
          render(await api('PUT', `${qpath}/students/${encodeURIComponent(s.user_id)}`, { extra_hours: Number(extra.value || 0) }));
          toast(t('quota.granted', { name }), 'success');
        } catch (err) {
          toastError(err);
        }
      });
      return h('tr', { dataset: { userId: s.user_id } },
        h('td', {}, name),
        h('td', { class: 'num' }, t('usage.h', { h: hours(s.outside_minutes) })),
        h('td', { class: 'num quota-left' }, s.left_minutes === null ? t('quota.noBudget') : t('usage.h', { h: hours(s.left_minutes) })),
        h('td', {}, f));
    }));
  }
  async function load() {
    try {
      render(await get(qpath));
    } catch (err) {
      toastError(err);
    }
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      render(await api('PUT', qpath, { hours_outside: intOrNull(budget), max_concurrent_vms: intOrNull(maxVms) }));
      toast(t('quota.saved'), 'success');
    } catch (err) {
      toastError(err);
    }
  });
  onLangChange(() => { if (last) render(last); });
  load();
  return { el };
}

/** The admin's card of the lab's limits per user. Returns { el }. */
export function limitsCard() {
  const fields = [
    ['max_running_vms', 'limits.vms', 1, 1000],
    ['max_vcpus', 'limits.vcpus', 1, 100000],
    ['max_memory_mib', 'limits.memory', 1, 100000000],
  ].map(([key, label, min, max]) => ({
    key,
    label,
    input: h('input', { id: `limits-${key}`, type: 'number', min, max, step: 1, inputmode: 'numeric' }),
  }));
  const save = h('button', { type: 'submit', class: 'btn primary', id: 'limits-save', i18n: 'common.save' });
  const form = h('form', { class: 'section-body', id: 'limits-form' },
    h('p', { class: 'muted small', i18n: 'limits.hint' }),
    h('div', { class: 'spec-row' }, fields.map((f) =>
      h('div', { class: 'field' }, h('label', { for: f.input.id, i18n: f.label }), f.input))),
    h('div', { class: 'form-actions' }, save));
  function render(l) {
    for (const f of fields) f.input.value = l[f.key] ?? '';
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {};
    for (const f of fields) body[f.key] = intOrNull(f.input);
    try {
      render(await api('PUT', '/api/quota/limits', body));
      toast(t('quota.saved'), 'success');
    } catch (err) {
      toastError(err);
    }
  });
  get('/api/quota/limits').then(render, toastError);
  return { el: form };
}
