// Admin views: the nodes of the cluster with their load (#/nodes) and user
// management (#/users: list, create, CSV import).

import { t, bind, onLangChange } from './i18n.js';
import { h, icon, button, replace, formatBytes, formatMib, relativeTime, absoluteTime, toast, toastError } from './ui.js';
import { get, post, api } from './api.js';

const POLL_MS = 5000;

export function mount(container, _params, ctx) {
  return ctx.kind === 'users' ? users(container) : nodes(container);
}

// ---------------------------------------------------------------- nodes

function meter(pct) {
  const p = Math.max(0, Math.min(100, Number(pct) || 0));
  return h('div', { class: `meter${p >= 85 ? ' hot' : ''}`, 'aria-hidden': 'true' }, h('span', { style: `width:${p}%` }));
}

function nodes(container) {
  let stopped = false;
  let timer = null;
  let last = [];
  const summary = h('p', { class: 'muted' });
  const tbody = h('tbody', {});
  const empty = h('p', { class: 'muted empty-small', i18n: 'nodes.empty', hidden: true });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'nodes.title' }), summary)),
    h('section', { class: 'card' },
      h('div', { class: 'table-wrap' },
        h('table', { class: 'data' },
          h('thead', {}, h('tr', {}, ['nodes.col.name', 'nodes.col.state', 'nodes.col.cpu', 'nodes.col.mem', 'nodes.col.vms', 'nodes.col.store', 'nodes.col.seen', 'nodes.col.actions']
            .map((k) => h('th', { scope: 'col', i18n: k })))),
          tbody)),
      empty));

  function render(list) {
    last = list;
    const up = list.filter((n) => n.state === 'up').length;
    const vms = list.reduce((a, n) => a + (n.vms_running || 0), 0);
    bind(summary, 'nodes.summary', { up, total: list.length, vms });
    empty.hidden = list.length > 0;
    replace(tbody, list.map((n) => {
      const memPct = n.mem_total_mib ? (100 * n.mem_used_mib) / n.mem_total_mib : 0;
      const storeTotal = (n.template_store_used_bytes || 0) + (n.template_store_free_bytes || 0);
      const storePct = storeTotal ? (100 * n.template_store_used_bytes) / storeTotal : 0;
      const inMaint = Boolean(n.maintenance) || n.state === 'maintenance';
      const toggle = button({ label: inMaint ? 'nodes.maintenance.off' : 'nodes.maintenance.on', kind: 'small nowrap', aria: ['nodes.maintenance.aria', { name: n.name }] });
      toggle.setAttribute('aria-pressed', String(inMaint));
      toggle.addEventListener('click', async () => {
        toggle.classList.add('busy');
        try {
          await post(`/api/nodes/${encodeURIComponent(n.id)}/maintenance`, { enabled: !inMaint });
          await refresh();
        } catch (err) { toastError(err); toggle.classList.remove('busy'); }
      });
      return h('tr', { dataset: { nodeId: n.id } },
        h('td', {}, h('div', { class: 'tree-name' }, n.name), h('div', { class: 'tree-meta' }, h('code', {}, n.uri))),
        h('td', {}, h('span', { class: `badge state-${n.state}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { i18n: `nodes.state.${n.state}` }))),
        h('td', { class: 'num' }, `${Math.round(n.cpu_percent || 0)}% · ${n.cpus || '?'} CPU`, meter(n.cpu_percent)),
        h('td', { class: 'num' }, `${formatMib(n.mem_used_mib || 0)} / ${formatMib(n.mem_total_mib || 0)}`, meter(memPct)),
        h('td', { class: 'num' }, String(n.vms_running ?? 0)),
        h('td', { class: 'num' }, formatBytes(n.template_store_used_bytes || 0), ' · ',
          h('span', { i18n: ['nodes.free', { size: formatBytes(n.template_store_free_bytes || 0) }] }), meter(storePct)),
        h('td', { class: 'num', title: absoluteTime(n.last_seen) }, relativeTime(n.last_seen)),
        h('td', {}, toggle));
    }));
  }

  async function refresh() {
    const list = await get('/api/nodes');
    if (!stopped) render(list);
  }
  async function poll() {
    if (stopped) return;
    if (document.visibilityState === 'visible') {
      try { await refresh(); } catch (err) { if (err.status !== 401 && err.code !== 'network') toastError(err); }
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  const offLang = onLangChange(() => render(last));
  poll();
  return { unmount() { stopped = true; clearTimeout(timer); offLang(); } };
}

// ---------------------------------------------------------------- users

function users(container) {
  let stopped = false;
  const tbody = h('tbody', {});
  const uname = h('input', { id: 'nu-username', required: true, maxlength: 64, autocomplete: 'off', autocapitalize: 'none' });
  const dname = h('input', { id: 'nu-display', maxlength: 100, autocomplete: 'off' });
  const role = h('select', { id: 'nu-role' }, ['student', 'teacher', 'admin'].map((r) => h('option', { value: r, i18n: `role.${r}` })));
  const pass = h('input', { id: 'nu-password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const createBtn = h('button', { type: 'submit', class: 'btn primary', i18n: 'common.create' });
  const createForm = h('form', { class: 'section-body', novalidate: true },
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'nu-username', i18n: 'users.username' }), uname),
      h('div', { class: 'field' }, h('label', { for: 'nu-display', i18n: 'users.displayName' }), dname)),
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'nu-role', i18n: 'users.role' }), role),
      h('div', { class: 'field' }, h('label', { for: 'nu-password', i18n: 'users.password' }), pass)),
    h('div', { class: 'form-actions' }, createBtn));
  const csv = h('input', { id: 'csv-file', type: 'file', accept: '.csv,text/csv' });
  const importBtn = h('button', { type: 'submit', class: 'btn primary' }, icon('upload'), h('span', { i18n: 'users.import.submit' }));
  const importResult = h('div', { class: 'enrol-result', 'aria-live': 'polite' });
  const importForm = h('form', { class: 'section-body', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'csv-file', i18n: 'users.import.file' }), csv,
      h('p', { class: 'muted small' }, h('code', { i18n: 'users.import.help' }))),
    importResult,
    h('div', { class: 'form-actions' }, importBtn));

  replace(container,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { i18n: 'users.title' }), h('p', { class: 'muted', i18n: 'users.subtitle' }))),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card' }, h('div', { class: 'section-head' }, h('h2', { i18n: 'users.create' })), createForm),
      h('section', { class: 'card' }, h('div', { class: 'section-head' }, h('h2', { i18n: 'users.import' })), importForm)),
    h('section', { class: 'card section' },
      h('div', { class: 'table-wrap' },
        h('table', { class: 'data' },
          h('thead', {}, h('tr', {}, ['users.col.username', 'users.col.name', 'users.col.role'].map((k) => h('th', { scope: 'col', i18n: k })))),
          tbody))));

  async function load() {
    try {
      const list = await get('/api/users');
      if (stopped) return;
      list.sort((a, b) => a.username.localeCompare(b.username));
      replace(tbody, list.map((u) => h('tr', { dataset: { username: u.username } },
        h('td', { class: 'student-cell' }, u.username),
        h('td', {}, u.display_name || ''),
        h('td', {}, h('span', { class: `chip${u.role === 'student' ? '' : ' os'}`, i18n: `role.${u.role}` })))));
    } catch (err) { if (!stopped) toastError(err); }
  }

  createForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!createForm.reportValidity()) return;
    createBtn.disabled = true;
    try {
      const body = { username: uname.value.trim(), password: pass.value, role: role.value };
      if (dname.value.trim()) body.display_name = dname.value.trim();
      const u = await post('/api/users', body);
      toast(t('users.created', { name: u.username }), 'success');
      createForm.reset();
      load();
    } catch (err) { toastError(err); } finally { createBtn.disabled = false; }
  });

  importForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = csv.files[0];
    if (!f) { csv.focus(); return; }
    importBtn.disabled = true;
    try {
      const r = await api('POST', '/api/users/import', await f.text(), { raw: true, contentType: 'text/csv' });
      const count = (x) => (Array.isArray(x) ? x.length : Number(x) || 0);
      const lines = [h('p', { i18n: ['users.import.done', { created: count(r.created), skipped: count(r.skipped) }] })];
      for (const er of (r.errors || []).slice(0, 20)) lines.push(h('p', { class: 'vm-error', i18n: ['users.import.errors', er] }));
      replace(importResult, lines);
      importForm.reset();
      load();
    } catch (err) { toastError(err); } finally { importBtn.disabled = false; }
  });

  load();
  return { unmount() { stopped = true; } };
}
