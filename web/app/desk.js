// The service desk: "Report a problem" (with the VM's context and a
// screenshot the reporter previews and may remove), "My tickets", the
// staff/admin queue with filters, and the ticket page (timeline, work log,
// take / dispatch / start / wait / resolve, priority override, the VM's live
// state and console, confirm + rating / reopen for the reporter).
//
// Everything users typed (titles, descriptions, comments) is rendered with
// textContent through h(): never as HTML.

import { t, bind, onLangChange } from './i18n.js';
import { h, icon, button, replace, relativeTime, absoluteTime, toast, toastError, formatBytes, confirmDialog, busy, field } from './ui.js';
import { api, get, post } from './api.js';
import { stateBadge, actionBar } from './vmcontrols.js';
import { lineChart } from './charts.js';

const STATES = ['new', 'assigned', 'in_progress', 'waiting', 'resolved', 'closed'];
const PRIORITIES = ['P1', 'P2', 'P3', 'P4'];
const KINDS = ['incident', 'request', 'complaint'];
const URGENCIES = ['blocked', 'in_session', 'not_blocking'];
const CHANNELS = ['web', 'phone', 'email', 'walk_in'];
const onDesk = (me) => me.role === 'staff' || me.role === 'admin';
const enc = encodeURIComponent;

export function mount(container, params, ctx) {
  switch (ctx.kind) {
    case 'report': return reportView(container, params[0], ctx);
    case 'queue': return queueView(container, ctx);
    case 'ticket': return ticketView(container, params[0], ctx);
    case 'kb': return kbView(container, ctx);
    case 'kbnew': return kbEditorView(container, { ticketId: params[0] }, ctx);
    case 'kbedit': return kbEditorView(container, { articleId: params[0] }, ctx);
    case 'problems': return problemsView(container, params[0], ctx);
    case 'stats': return statsView(container, ctx);
    case 'sla': return slaView(container, ctx);
    default: return mineView(container, ctx);
  }
}

// ---------------------------------------------------------------- pieces

/**
 * A ticket's title: a system incident's is worded in the reader's language
 * from its kind and parameters (context.system); the stored English title
 * is the fallback (and what people typed is shown as typed).
 */
const SYSTEM_TITLES = { node_down: 'desk.system.nodeDown', start_failed: 'desk.system.startFailed' };
function ticketTitle(tk) {
  const sys = tk.channel === 'system' && tk.context && tk.context.system;
  const key = sys && SYSTEM_TITLES[sys.kind];
  return key ? t(key, sys) : tk.title;
}

function ticketBadge(state) {
  return h('span', { class: `badge ticket-state ts-${state}`, dataset: { state }, i18n: `ticket.state.${state}` });
}

function priorityChip(p) {
  return h('span', { class: `chip prio prio-${p}`, dataset: { priority: p } }, p);
}

function option(value, key) {
  return h('option', { value, i18n: key });
}

function select(id, values, keyOf, extra = []) {
  return h('select', { id }, extra, values.map((v) => option(v, keyOf(v))));
}



// ---------------------------------------------------------------- report

function reportView(container, vmId, { me }) {
  let shot = null; // { id } while a screenshot is kept
  let stopped = false;
  const ctxBox = h('div', { class: 'report-context' });
  const shotBox = h('div', { class: 'report-shot' });
  const kind = select('rp-kind', KINDS, (k) => `ticket.kind.${k}`);
  const urgency = select('rp-urgency', URGENCIES, (u) => `ticket.urgency.${u}`);
  const title = h('input', { id: 'rp-title', maxlength: 200, required: true, autocomplete: 'off' });
  const desc = h('textarea', { id: 'rp-desc', rows: 5, maxlength: 10000 });
  const channel = select('rp-channel', CHANNELS, (c) => `ticket.channel.${c}`);
  const behalf = h('input', { id: 'rp-behalf', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn primary', i18n: 'desk.report.send' });
  // Articles that may already answer it (from the text and the VM's last error).
  const suggest = h('section', { class: 'kb-suggestions', hidden: true, 'aria-live': 'polite' });
  let lastError = '';
  let suggestTimer = null;
  let suggestSeq = 0;
  async function suggestNow() {
    const q = `${title.value} ${desc.value} ${lastError}`.trim();
    const seq = ++suggestSeq;
    if (q.length < 3) { suggest.hidden = true; return; }
    let found = [];
    try { found = await get(`/api/kb?limit=5&q=${enc(q.slice(0, 2000))}`); } catch { found = []; }
    if (stopped || seq !== suggestSeq) return;
    suggest.hidden = !found.length;
    replace(suggest, h('h2', { i18n: 'desk.kb.suggested' }), h('p', { class: 'muted small', i18n: 'desk.kb.suggestedHint' }),
      found.map((a) => articleCard(a, {
        helped: async (btn) => {
          const r = await busy(btn, () => post(`/api/kb/${enc(a.id)}/helped`, vmId ? { vm_id: vmId } : {}));
          if (!r) return;
          if (shot) { try { await api('DELETE', `/api/desk/screenshots/${enc(shot.id)}`); } catch { /* swept later */ } }
          toast(t('desk.kb.gladItHelped'), 'success');
          location.hash = me.role === 'student' ? '#/courses' : '#/tickets';
        },
      })));
  }
  const scheduleSuggest = () => { clearTimeout(suggestTimer); suggestTimer = setTimeout(suggestNow, 350); };
  title.addEventListener('input', scheduleSuggest);
  desc.addEventListener('input', scheduleSuggest);
  const form = h('form', { class: 'card pad report-form', novalidate: true },
    vmId ? h('section', { class: 'report-vm' }, h('h2', { i18n: 'desk.report.context' }), ctxBox, shotBox) : null,
    h('div', { class: 'form-grid' },
      field('rp-kind', 'ticket.kind', kind),
      field('rp-urgency', 'ticket.urgency', urgency, 'desk.report.urgencyHint')),
    onDesk(me) ? h('div', { class: 'form-grid' },
      field('rp-channel', 'ticket.channel', channel),
      field('rp-behalf', 'desk.report.onBehalf', behalf, 'desk.report.onBehalfHint')) : null,
    field('rp-title', 'desk.report.title', title),
    field('rp-desc', 'desk.report.description', desc, 'desk.report.descriptionHint'),
    suggest,
    error,
    h('div', { class: 'form-actions' },
      h('a', { class: 'btn ghost', href: '#/tickets', i18n: 'common.cancel' }), submit));
  replace(container,
    h('div', { class: 'page-head' }, h('div', {},
      h('h1', { i18n: 'desk.report.heading' }),
      h('p', { class: 'muted', i18n: 'desk.report.subtitle' }))),
    form);

  async function loadVm() {
    try {
      const vm = await get(`/api/vms/${enc(vmId)}`);
      if (stopped) return;
      const rows = [
        ['desk.ctx.vm', vm.name],
        ['desk.ctx.state', stateBadge(vm.state)],
        ['desk.ctx.disk', formatBytes(vm.overlay_bytes)],
      ];
      if (vm.last_error) { rows.push(['desk.ctx.lastError', vm.last_error]); lastError = vm.last_error; scheduleSuggest(); }
      replace(ctxBox, h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', { i18n: k }), h('dd', {}, v)])),
        h('p', { class: 'muted small', i18n: 'desk.report.contextHint' }));
      if (vm.state === 'running') await takeShot();
      else replace(shotBox, h('p', { class: 'muted small', i18n: 'desk.report.noShot' }));
    } catch (err) {
      if (!stopped) { toastError(err); replace(ctxBox, h('p', { class: 'muted', i18n: 'desk.report.vmUnknown' })); }
    }
  }

  async function takeShot() {
    replace(shotBox, h('p', { class: 'muted small', i18n: 'desk.report.shotTaking' }));
    try {
      shot = await post('/api/desk/screenshots', { vm_id: vmId });
    } catch (err) {
      shot = null;
      replace(shotBox, h('p', { class: 'muted small', i18n: 'desk.report.shotFailed' }));
      return;
    }
    if (stopped) return;
    const img = h('img', { class: 'shot-preview', src: `/api/desk/screenshots/${enc(shot.id)}`, i18nAria: 'desk.report.shotAlt', alt: '' });
    bind(img, 'desk.report.shotAlt', undefined, 'alt');
    const remove = button({ label: 'desk.report.shotRemove', icon: 'close', kind: 'small', attrs: { 'data-action': 'remove-shot' } });
    remove.addEventListener('click', async () => {
      const id = shot && shot.id;
      shot = null;
      replace(shotBox, h('p', { class: 'muted small shot-removed', i18n: 'desk.report.shotRemoved' }));
      if (id) { try { await api('DELETE', `/api/desk/screenshots/${enc(id)}`); } catch (err) { toastError(err); } }
    });
    replace(shotBox, h('figure', { class: 'shot' }, img,
      h('figcaption', {}, h('span', { class: 'muted small', i18n: 'desk.report.shotHint' }), remove)));
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    if (!title.value.trim()) { title.focus(); error.hidden = false; bind(error, 'desk.report.titleRequired'); return; }
    const body = { kind: kind.value, urgency: urgency.value, title: title.value.trim(), description: desc.value };
    if (vmId) {
      body.vm_id = vmId;
      if (shot) body.screenshot_id = shot.id; else body.screenshot = false;
    }
    if (onDesk(me) && channel.value !== 'web') {
      body.channel = channel.value;
      body.on_behalf_of = behalf.value.trim();
    }
    const created = await busy(submit, () => post('/api/tickets', body));
    if (created) {
      toast(t('desk.report.sent', { number: created.number }), 'info');
      location.hash = `#/tickets/${created.id}`;
    }
  });

  if (vmId) loadVm();
  title.focus();
  return { unmount() { stopped = true; clearTimeout(suggestTimer); } };
}

// ---------------------------------------------------------------- knowledge base

/** One article, folded: the title opens symptom, cause and fix; staff get an Edit link. */
function articleCard(a, { helped, me } = {}) {
  const parts = [['desk.kb.symptom', a.symptom], ['desk.kb.cause', a.cause], ['desk.kb.fix', a.fix]]
    .filter(([, v]) => v)
    .map(([k, v]) => h('div', { class: 'kb-part' }, h('h4', { i18n: k }), h('p', {}, v)));
  let btn = null;
  if (helped) {
    btn = button({ label: 'desk.kb.helped', kind: 'small primary', attrs: { 'data-action': 'helped' } });
    btn.addEventListener('click', () => helped(btn));
  }
  const staff = me && onDesk(me);
  const meta = staff ? h('p', { class: 'muted small kb-meta' },
    t('desk.kb.revisionMeta', { n: a.revision || 1, who: a.editor_name || a.author_name, at: absoluteTime(a.updated_at) })) : null;
  const edit = staff && !a.archived_at
    ? h('a', { class: 'btn small', href: `#/kb/edit/${enc(a.id)}`, dataset: { action: 'edit-article' } }, h('span', { i18n: 'desk.kb.edit' }))
    : null;
  return h('details', { class: 'card kb-article', dataset: { articleId: a.id, archived: a.archived_at ? 'true' : 'false' } },
    h('summary', {}, h('span', { class: 'kb-title' }, a.title), ' ', h('span', { class: 'chip' }, a.lang),
      a.archived_at ? h('span', { class: 'chip kb-retired', i18n: 'desk.kb.retired' }) : null,
      a.helped ? h('span', { class: 'muted small' }, ' ', t('desk.kb.helpedCount', { n: a.helped })) : null),
    parts, meta, btn, edit);
}

function kbView(container, { me }) {
  let stopped = false;
  let timer = null;
  const q = h('input', { id: 'kb-q', type: 'search', autocomplete: 'off', i18nPh: 'desk.kb.searchPh' });
  const retired = onDesk(me) ? h('input', { id: 'kb-archived', type: 'checkbox' }) : null;
  const list = h('div', { class: 'kb-list', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'desk.kb.title' }), h('p', { class: 'muted', i18n: 'desk.kb.subtitle' })),
      onDesk(me) ? h('a', { class: 'btn primary', href: '#/kb/new', dataset: { action: 'new-article' } }, icon('plus'), h('span', { i18n: 'desk.kb.new' })) : null),
    h('div', { class: 'card pad' }, field('kb-q', 'desk.kb.search', q),
      retired ? h('div', { class: 'checks' }, h('label', {}, retired, ' ', h('span', { i18n: 'desk.kb.showRetired' }))) : null),
    list);
  let last = null;
  async function load() {
    try {
      const params = [`limit=50`];
      if (q.value.trim()) params.push(`q=${enc(q.value.trim())}`);
      if (retired?.checked) params.push('archived=true');
      last = await get(`/api/kb?${params.join('&')}`);
      if (!stopped) render();
    } catch (err) { if (!stopped) toastError(err); }
  }
  function render() {
    list.removeAttribute('aria-busy');
    if (!last.length) replace(list, h('div', { class: 'empty card' }, h('p', { i18n: 'desk.kb.empty' })));
    else replace(list, last.map((a) => articleCard(a, { me })));
  }
  q.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(load, 300); });
  retired?.addEventListener('change', load);
  load();
  return { unmount() { stopped = true; clearTimeout(timer); } };
}

/** One earlier (or the current) version of an article, folded. */
function revisionCard(r, current) {
  const parts = [['desk.kb.symptom', r.symptom], ['desk.kb.cause', r.cause], ['desk.kb.fix', r.fix]]
    .filter(([, v]) => v)
    .map(([k, v]) => h('div', { class: 'kb-part' }, h('h4', { i18n: k }), h('p', {}, v)));
  return h('details', { class: 'kb-revision', dataset: { revision: String(r.number) } },
    h('summary', {}, h('strong', {}, t('desk.kb.revisionN', { n: r.number })), ' ',
      current ? h('span', { class: 'chip', i18n: 'desk.kb.current' }) : null, ' ',
      h('span', { class: 'muted small' }, t('desk.kb.revisionBy', { who: r.editor_name, at: absoluteTime(r.at) }))),
    h('p', { class: 'kb-title' }, r.title), parts);
}

/** The article editor: a new article (maybe from a ticket) or a new revision of one. */
function kbEditorView(container, { ticketId, articleId }, { me }) {
  let stopped = false;
  let revision = null;
  const title = h('input', { id: 'kb-title', maxlength: 200, autocomplete: 'off' });
  const lang = h('select', { id: 'kb-lang' }, h('option', { value: 'zh-CN' }, '中文'), h('option', { value: 'en' }, 'English'));
  const symptom = h('textarea', { id: 'kb-symptom', rows: 3, maxlength: 10000 });
  const cause = h('textarea', { id: 'kb-cause', rows: 2, maxlength: 10000 });
  const fix = h('textarea', { id: 'kb-fix', rows: 4, maxlength: 10000 });
  const submit = h('button', { type: 'submit', class: 'btn primary', i18n: articleId ? 'desk.kb.saveRevision' : 'desk.kb.publish' });
  const retire = articleId ? button({ label: 'desk.kb.retire', kind: 'danger', attrs: { 'data-action': 'retire-article', type: 'button' } }) : null;
  const history = articleId ? h('section', { class: 'card pad kb-history' }, h('h2', { i18n: 'desk.kb.history' }), h('div', { class: 'kb-revisions', 'aria-busy': 'true' })) : null;
  const form = h('form', { class: 'card pad kb-form', novalidate: true },
    ticketId ? h('p', { class: 'muted small', i18n: 'desk.kb.fromTicket' }) : null,
    h('div', { class: 'form-grid' }, field('kb-title', 'desk.kb.articleTitle', title), field('kb-lang', 'desk.kb.lang', lang)),
    field('kb-symptom', 'desk.kb.symptom', symptom),
    field('kb-cause', 'desk.kb.cause', cause),
    field('kb-fix', 'desk.kb.fix', fix),
    h('div', { class: 'form-actions' }, retire, h('a', { class: 'btn ghost', href: '#/kb', i18n: 'common.cancel' }), submit));
  replace(container, h('div', { class: 'page-head' }, h('h1', { i18n: articleId ? 'desk.kb.editTitle' : 'desk.kb.new' })), form, history);
  if (document.documentElement.lang === 'en') lang.value = 'en';
  if (ticketId) {
    get(`/api/tickets/${enc(ticketId)}`).then((tk) => {
      if (!title.value) title.value = tk.title;
      if (!symptom.value) symptom.value = tk.description || tk.title;
      if (!fix.value) fix.value = tk.resolution || '';
    }).catch(toastError);
  }
  async function loadArticle() {
    try {
      const [a, revs] = await Promise.all([get(`/api/kb/${enc(articleId)}`), get(`/api/kb/${enc(articleId)}/revisions`)]);
      if (stopped) return;
      revision = a.revision;
      title.value = a.title; lang.value = a.lang; symptom.value = a.symptom; cause.value = a.cause; fix.value = a.fix;
      const box = history.querySelector('.kb-revisions');
      box.removeAttribute('aria-busy');
      replace(box, revs.map((r) => revisionCard(r, r.number === a.revision)));
    } catch (err) { if (!stopped) toastError(err); }
  }
  if (articleId) loadArticle();
  retire?.addEventListener('click', async () => {
    const ok = await confirmDialog({ title: 'desk.kb.retireTitle', body: 'desk.kb.retireBody', confirm: 'desk.kb.retire', danger: true });
    if (!ok) return;
    const a = await busy(retire, () => api('DELETE', `/api/kb/${enc(articleId)}`));
    if (a) { toast(t('desk.kb.retiredDone'), 'success'); location.hash = '#/kb'; }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const el of [title, symptom, fix]) if (!el.value.trim()) { el.focus(); toast(t('desk.kb.required'), 'error'); return; }
    const body = { title: title.value.trim(), lang: lang.value, symptom: symptom.value, cause: cause.value, fix: fix.value };
    if (articleId) {
      body.revision = revision;
      const a = await busy(submit, () => api('PUT', `/api/kb/${enc(articleId)}`, body));
      if (a) { toast(t('desk.kb.saved', { n: a.revision }), 'success'); location.hash = '#/kb'; }
      return;
    }
    if (ticketId) body.ticket_id = ticketId;
    const a = await busy(submit, () => post('/api/kb', body));
    if (a) { toast(t('desk.kb.published'), 'success'); location.hash = '#/kb'; }
  });
  title.focus();
  return { unmount() { stopped = true; } };
}

// ---------------------------------------------------------------- figures

/**
 * The start of a stats period as Unix seconds (UTC): `2026-03-05` (day),
 * `2026-W09` (week: SQLite's %W, weeks starting on Monday, week 00 being
 * the days before the year's first Monday) or `2026-03` (month).
 */
export function periodStart(p) {
  const w = /^(\d{4})-W(\d{2})$/.exec(p);
  if (w) {
    const jan1 = Date.UTC(Number(w[1]), 0, 1);
    const firstMonday = jan1 + ((8 - new Date(jan1).getUTCDay()) % 7) * 86400000;
    const n = Number(w[2]);
    return (n === 0 ? jan1 : firstMonday + (n - 1) * 7 * 86400000) / 1000;
  }
  const t0 = Date.parse(/^\d{4}-\d{2}$/.test(p) ? `${p}-01T00:00:00Z` : `${p}T00:00:00Z`);
  return Number.isNaN(t0) ? null : t0 / 1000;
}

/**
 * Every period label from `from` to before `to` (RFC 3339), as the server
 * groups them — `day` (2026-03-05), `week` (SQLite's %W: 2026-W09) or
 * `month` (2026-03) — in order, so periods without tickets are drawn as
 * such. `null` for a range too long to walk day by day.
 */
export function periodsBetween(from, to, group) {
  const start = Date.parse(from);
  const end = Date.parse(to);
  if (Number.isNaN(start) || Number.isNaN(end) || end - start > 3700 * 86400000) return null;
  const out = [];
  // Day steps from the start, and the range's last instant: its day may
  // begin less than a day after the last step.
  const instants = [];
  for (let ms = start; ms < end; ms += 86400000) instants.push(ms);
  if (end > start) instants.push(end - 1);
  for (const ms of instants) {
    const d = new Date(ms);
    const y = d.getUTCFullYear();
    const m = String(d.getUTCMonth() + 1).padStart(2, '0');
    let label;
    if (group === 'month') label = `${y}-${m}`;
    else if (group === 'week') {
      const yday = Math.round((Date.UTC(y, d.getUTCMonth(), d.getUTCDate()) - Date.UTC(y, 0, 1)) / 86400000);
      const week = Math.floor((yday + 7 - ((d.getUTCDay() + 6) % 7)) / 7);
      label = `${y}-W${String(week).padStart(2, '0')}`;
    } else label = `${y}-${m}-${String(d.getUTCDate()).padStart(2, '0')}`;
    if (out[out.length - 1] !== label) out.push(label);
  }
  return out;
}

function statsView(container) {
  let stopped = false;
  let charts = [];
  const dropCharts = () => { for (const c of charts) c.destroy(); charts = []; };
  const group = h('select', { id: 'st-group' }, ['day', 'week', 'month'].map((g) => option(g, `desk.stats.by.${g}`)));
  const from = h('input', { id: 'st-from', type: 'date' });
  const to = h('input', { id: 'st-to', type: 'date' });
  const body = h('div', { class: 'stats-body', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' }, h('div', {},
      h('p', { class: 'muted small' }, h('a', { href: '#/desk', i18n: 'desk.back.queue' })),
      h('h1', { i18n: 'desk.stats.title' }), h('p', { class: 'muted', i18n: 'desk.stats.subtitle' }))),
    h('div', { class: 'card pad' }, h('div', { class: 'form-grid' },
      field('st-from', 'desk.stats.from', from), field('st-to', 'desk.stats.to', to), field('st-group', 'desk.stats.group', group))),
    body);
  const pct = (v) => (v === null || v === undefined ? t('common.none') : `${Math.round(v * 100)}%`);
  const dur = (s) => {
    if (s === null || s === undefined) return t('common.none');
    if (s < 90) return t('desk.stats.seconds', { n: Math.round(s) });
    if (s < 5400) return t('desk.stats.minutes', { n: Math.round(s / 60) });
    return t('desk.stats.hours', { n: (s / 3600).toFixed(1) });
  };
  const counts = (titleKey, map, keyOf) => h('section', { class: 'card pad' }, h('h2', { i18n: titleKey }),
    h('dl', { class: 'kv' }, Object.entries(map).map(([k, n]) => [h('dt', {}, keyOf(k)), h('dd', { class: 'num' }, String(n))])));
  async function load() {
    const q = new URLSearchParams({ group_by: group.value });
    if (from.value) q.set('from', from.value);
    if (to.value) q.set('to', to.value);
    let st;
    try { st = await get(`/api/desk/stats?${q}`); } catch (err) { if (!stopped) toastError(err); return; }
    if (stopped) return;
    body.removeAttribute('aria-busy');
    const tiles = [
      ['desk.stats.total', String(st.total)],
      ['desk.stats.complaints', String(st.complaints)],
      ['desk.stats.complaintsReplied', String(st.complaints_replied ?? 0)],
      ['desk.stats.ftf', pct(st.first_time_fix_rate)],
      ['desk.stats.reopen', pct(st.reopen_rate)],
      ['desk.stats.satisfaction', st.satisfaction_average === null ? t('common.none') : `${st.satisfaction_average.toFixed(1)} / 5`],
      ['desk.stats.response', `${dur(st.response.p50_seconds)} · ${dur(st.response.p90_seconds)}`],
      ['desk.stats.resolution', `${dur(st.resolution.p50_seconds)} · ${dur(st.resolution.p90_seconds)}`],
      ['desk.stats.sla', pct(st.sla_compliance)],
    ];
    // Every period of the range, the empty ones too (no tickets: 0 opened,
    // no compliance figure).
    const byPeriod = new Map(st.series.map((p) => [p.period, p]));
    const labels = periodsBetween(st.from, st.to, group.value) || st.series.map((p) => p.period);
    const series = labels.filter((l) => periodStart(l) !== null).map((l) => byPeriod.get(l) || {
      period: l, created: 0, resolved: 0, response_compliance: null, resolution_compliance: null,
    });
    const times = series.map((p) => periodStart(p.period));
    const pctOf = (v) => (v === null || v === undefined ? null : Math.round(v * 1000) / 10);
    const ticketsChart = h('div', { class: 'chart', dataset: { chart: 'tickets' } });
    const slaChart = h('div', { class: 'chart', dataset: { chart: 'sla' } });
    const slaRow = (labelEl, r) => h('tr', {}, h('th', { scope: 'row' }, labelEl),
      [r.response, r.resolution].map((c) => [
        h('td', { class: 'num' }, String(c.met)), h('td', { class: 'num' }, String(c.breached)), h('td', { class: 'num' }, pct(c.compliance))]));
    const slaTable = h('section', { class: 'card table-wrap' }, h('table', { class: 'data stats-sla' },
      h('caption', { i18n: 'desk.stats.slaTable' }),
      h('thead', {},
        h('tr', {}, h('td', {}), h('th', { scope: 'colgroup', colspan: 3, i18n: 'desk.sla.col.response' }), h('th', { scope: 'colgroup', colspan: 3, i18n: 'desk.sla.col.resolution' })),
        h('tr', {}, h('th', { scope: 'col', i18n: 'desk.col.priority' }),
          ['met', 'breached', 'compliance', 'met', 'breached', 'compliance'].map((k) => h('th', { scope: 'col', i18n: `desk.stats.${k}` })))),
      h('tbody', {},
        PRIORITIES.filter((p) => st.sla.by_priority[p]).map((p) => slaRow(priorityChip(p), st.sla.by_priority[p])),
        slaRow(h('span', { i18n: 'desk.stats.overall' }), st.sla))));
    dropCharts();
    replace(body,
      h('div', { class: 'stat-tiles' }, tiles.map(([k, v]) => h('div', { class: 'card stat-tile' }, h('span', { class: 'muted small', i18n: k }), h('strong', {}, v)))),
      h('div', { class: 'grid-2 stats-charts' },
        h('section', { class: 'card pad' }, h('h2', { i18n: 'desk.stats.chartTickets' }), ticketsChart),
        h('section', { class: 'card pad' }, h('h2', { i18n: 'desk.stats.chartSla' }), slaChart)),
      slaTable,
      h('div', { class: 'grid-2' },
        counts('desk.col.kind', st.by_kind, (k) => t(`ticket.kind.${k}`)),
        counts('desk.col.priority', st.by_priority, (k) => k),
        counts('desk.col.state', st.by_state, (k) => t(`ticket.state.${k}`)),
        counts('ticket.channel', st.by_channel, (k) => t(`ticket.channel.${k}`)),
        counts('desk.stats.ratings', st.satisfaction, (k) => '★'.repeat(Number(k)))),
      h('section', { class: 'card table-wrap' }, h('table', { class: 'data stats-staff' },
        h('thead', {}, h('tr', {}, ['desk.col.assignee', 'desk.stats.assigned', 'desk.stats.resolved', 'desk.stats.handling'].map((k) => h('th', { scope: 'col', i18n: k })))),
        h('tbody', {}, st.per_staff.map((s) => h('tr', {}, h('td', {}, s.name), h('td', { class: 'num' }, String(s.assigned)),
          h('td', { class: 'num' }, String(s.resolved)), h('td', { class: 'num' }, pct(s.handling_rate))))))));
    // Drawn once their boxes are in the page (they take its width).
    charts.push(lineChart(ticketsChart, {
      names: [t('desk.stats.created'), t('desk.stats.resolved')],
      data: [times, series.map((p) => p.created), series.map((p) => p.resolved)],
    }));
    charts.push(lineChart(slaChart, {
      names: [t('desk.sla.col.response'), t('desk.sla.col.resolution')],
      data: [times, series.map((p) => pctOf(p.response_compliance)), series.map((p) => pctOf(p.resolution_compliance))],
      unit: '%', max: 100, decimals: 1,
    }));
  }
  for (const el of [group, from, to]) el.addEventListener('change', load);
  // The charts' legends are drawn text: rebuilt in the new language.
  const off = onLangChange(() => { if (!stopped) load(); });
  load();
  return { unmount() { stopped = true; off(); dropCharts(); } };
}

// ---------------------------------------------------------------- SLA settings

const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
/** Settings text → list: entries split on commas, semicolons, spaces or lines. */
const listOf = (v) => v.split(/[\s,;，；]+/).map((x) => x.trim()).filter(Boolean);

/** The SLA policy (targets per priority, 7×24) and the service calendar: admins edit, staff read. */
function slaView(container, { me }) {
  let stopped = false;
  const admin = me.role === 'admin';
  const body = h('div', { class: 'sla-body', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' }, h('div', {},
      h('p', { class: 'muted small' }, h('a', { href: '#/desk', i18n: 'desk.back.queue' })),
      h('h1', { i18n: 'desk.sla.title' }), h('p', { class: 'muted', i18n: admin ? 'desk.sla.subtitle' : 'desk.sla.readOnly' }))),
    body);

  function policyForm(policy) {
    const inputs = {};
    const num = (id, value, aria) => h('input', {
      id, type: 'number', min: 1, max: 527040, step: 1, value: String(value), disabled: !admin, class: 'num-input', i18nAria: aria,
    });
    const rows = PRIORITIES.map((p) => {
      const k = p.toLowerCase();
      const tg = policy[k];
      inputs[k] = {
        response: num(`sla-${k}-response`, tg.response_minutes, 'desk.sla.col.response'),
        resolution: num(`sla-${k}-resolution`, tg.resolution_minutes, 'desk.sla.col.resolution'),
        always: h('input', { id: `sla-${k}-always`, type: 'checkbox', checked: Boolean(tg.around_the_clock), disabled: !admin, i18nAria: 'desk.sla.col.always' }),
      };
      return h('tr', { dataset: { priority: p } }, h('th', { scope: 'row' }, priorityChip(p)),
        h('td', {}, inputs[k].response), h('td', {}, inputs[k].resolution), h('td', {}, inputs[k].always));
    });
    const save = button({ label: 'desk.sla.savePolicy', kind: 'primary', attrs: { 'data-action': 'save-policy' } });
    save.hidden = !admin;
    save.addEventListener('click', async () => {
      const next = {};
      for (const [k, i] of Object.entries(inputs)) {
        next[k] = { response_minutes: Number(i.response.value), resolution_minutes: Number(i.resolution.value), around_the_clock: i.always.checked };
      }
      const r = await busy(save, () => api('PUT', '/api/desk/sla', next));
      if (r) { last.policy = r; toast(t('desk.sla.saved'), 'success'); }
    });
    return h('section', { class: 'card pad sla-policy' }, h('h2', { i18n: 'desk.sla.policy' }),
      h('p', { class: 'muted small', i18n: 'desk.sla.minutesHint' }),
      h('div', { class: 'table-wrap' }, h('table', { class: 'data sla-targets' },
        h('thead', {}, h('tr', {}, ['desk.col.priority', 'desk.sla.col.response', 'desk.sla.col.resolution', 'desk.sla.col.always'].map((k) => h('th', { scope: 'col', i18n: k })))),
        h('tbody', {}, rows))),
      h('div', { class: 'form-actions' }, save));
  }

  function calendarForm(cal) {
    const offset = h('input', { id: 'cal-offset', type: 'text', value: cal.utc_offset, maxlength: 16, disabled: !admin, class: 'short' });
    const days = Object.fromEntries(WEEKDAYS.map((d) => [d, h('input', {
      id: `cal-${d}`, type: 'text', value: (cal.week[d] || []).join(', '), disabled: !admin, i18nPh: 'desk.sla.closed',
    })]));
    const holidays = h('textarea', { id: 'cal-holidays', rows: 4, disabled: !admin }, (cal.holidays || []).join('\n'));
    const extra = h('textarea', { id: 'cal-extra', rows: 3, disabled: !admin }, (cal.extra_working_days || []).join('\n'));
    const save = button({ label: 'desk.sla.saveCalendar', kind: 'primary', attrs: { 'data-action': 'save-calendar' } });
    save.hidden = !admin;
    save.addEventListener('click', async () => {
      const next = {
        utc_offset: offset.value.trim(),
        week: Object.fromEntries(WEEKDAYS.map((d) => [d, listOf(days[d].value)])),
        holidays: listOf(holidays.value),
        extra_working_days: listOf(extra.value),
      };
      if (cal.extra_day_hours) next.extra_day_hours = cal.extra_day_hours;
      const r = await busy(save, () => api('PUT', '/api/desk/calendar', next));
      if (r && !stopped) { render(null, r); toast(t('desk.sla.saved'), 'success'); }
    });
    return h('section', { class: 'card pad sla-calendar' }, h('h2', { i18n: 'desk.sla.calendar' }),
      h('p', { class: 'muted small', i18n: 'desk.sla.hoursHint' }),
      h('div', { class: 'form-grid' },
        field('cal-offset', 'desk.sla.offset', offset, 'desk.sla.offsetHint'),
        WEEKDAYS.map((d) => field(`cal-${d}`, `desk.sla.day.${d}`, days[d])),
        field('cal-holidays', 'desk.sla.holidays', holidays, 'desk.sla.datesHint'),
        field('cal-extra', 'desk.sla.extraDays', extra, 'desk.sla.datesHint')),
      h('div', { class: 'form-actions' }, save));
  }

  const last = { policy: null, cal: null };
  function render(policy, cal) {
    if (policy) last.policy = policy;
    if (cal) last.cal = cal;
    body.removeAttribute('aria-busy');
    replace(body, policyForm(last.policy), calendarForm(last.cal));
  }
  (async () => {
    try {
      const [policy, cal] = await Promise.all([get('/api/desk/sla'), get('/api/desk/calendar')]);
      if (!stopped) render(policy, cal);
    } catch (err) { if (!stopped) toastError(err); }
  })();
  return { unmount() { stopped = true; } };
}

// ---------------------------------------------------------------- problems

function problemCard(p, { onChange, open: isOpen }) {
  const tickets = h('ul', { class: 'problem-tickets' }, p.tickets.map((lt) => h('li', {},
    h('a', { href: `#/tickets/${lt.id}` }, `#${lt.number} `, lt.title), ' ', ticketBadge(lt.state))));
  const parts = [['desk.problem.rootCause', p.root_cause], ['desk.problem.workaround', p.workaround], ['desk.ticket.resolution', p.resolution]]
    .filter(([, v]) => v)
    .map(([k, v]) => h('div', { class: 'kb-part' }, h('h4', { i18n: k }), h('p', {}, v)));
  let resolveForm = null;
  if (p.state !== 'resolved') {
    const text = h('textarea', { id: `pr-res-${p.id}`, rows: 2, maxlength: 10000 });
    const b = button({ label: 'desk.problem.resolve', kind: 'small primary', attrs: { 'data-action': 'resolve-problem' } });
    b.addEventListener('click', async () => {
      if (!text.value.trim()) { text.focus(); toast(t('desk.act.resolutionRequired'), 'error'); return; }
      const r = await busy(b, () => post(`/api/problems/${enc(p.id)}/resolve`, { resolution: text.value }));
      if (r) onChange(r);
    });
    resolveForm = h('div', { class: 'problem-resolve' }, field(`pr-res-${p.id}`, 'desk.problem.resolution', text), b);
  }
  return h('details', { class: 'card kb-article problem', open: isOpen, dataset: { problemId: p.id, state: p.state } },
    h('summary', {}, h('span', { class: 'muted' }, `#${p.number} `), h('span', { class: 'kb-title' }, p.title), ' ',
      h('span', { class: 'chip', i18n: `desk.problem.state.${p.state}` })),
    parts, h('h4', { i18n: 'desk.problem.tickets' }), tickets, resolveForm);
}

function problemsView(container, focusId, { me }) {
  let stopped = false;
  const list = h('div', { class: 'problem-list', 'aria-busy': 'true' });
  const title = h('input', { id: 'pr-title', maxlength: 200, autocomplete: 'off' });
  const cause = h('textarea', { id: 'pr-cause', rows: 2, maxlength: 10000 });
  const workaround = h('textarea', { id: 'pr-workaround', rows: 2, maxlength: 10000 });
  const create = h('button', { type: 'submit', class: 'btn primary', i18n: 'desk.problem.create' });
  const form = h('form', { class: 'card pad problem-form', novalidate: true },
    h('h2', { i18n: 'desk.problem.new' }),
    field('pr-title', 'desk.problem.name', title),
    h('div', { class: 'form-grid' }, field('pr-cause', 'desk.problem.rootCause', cause), field('pr-workaround', 'desk.problem.workaround', workaround)),
    h('div', { class: 'form-actions' }, create));
  replace(container,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { i18n: 'desk.problem.title' }), h('p', { class: 'muted', i18n: 'desk.problem.subtitle' }))),
    list, form);
  let last = null;
  async function load() {
    try { last = await get('/api/problems'); if (!stopped) render(); } catch (err) { if (!stopped) toastError(err); }
  }
  function render() {
    list.removeAttribute('aria-busy');
    if (!last.length) replace(list, h('div', { class: 'empty card' }, h('p', { i18n: 'desk.problem.empty' })));
    else replace(list, last.map((p) => problemCard(p, { open: p.id === focusId, onChange: () => load() })));
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!title.value.trim()) { title.focus(); return; }
    const p = await busy(create, () => post('/api/problems', { title: title.value.trim(), root_cause: cause.value, workaround: workaround.value }));
    if (p) { title.value = ''; cause.value = ''; workaround.value = ''; focusId = p.id; load(); }
  });
  load();
  return { unmount() { stopped = true; } };
}

// ---------------------------------------------------------------- lists

/**
 * The SLA clock that matters now — the response clock until the desk
 * answered, then the resolution clock — counting down to its due instant,
 * coloured by its level (ok, 50 %, 75 %, breached); "paused" while the
 * ticket waits for its reporter.
 */
function slaChip(tk) {
  const s = tk.sla_breached;
  if (!s || !['new', 'assigned', 'in_progress', 'waiting'].includes(tk.state)) return t('common.none');
  const live = (st) => st === 'running' || st === 'paused';
  const clock = live(s.response_state) ? 'response' : 'resolution';
  const state = s[`${clock}_state`];
  const level = s[`${clock}_level`] || 'ok';
  const due = clock === 'response' ? tk.response_due : tk.resolution_due;
  const when = state === 'paused' ? t('desk.sla.paused') : relativeTime(due);
  const title = state === 'paused' ? t('desk.sla.pausedLong')
    : t('desk.sla.dueAt', { at: absoluteTime(due), percent: s[`${clock}_percent`] });
  return h('span', { class: `chip sla sla-${level}`, dataset: { level, clock, state }, title },
    `${t(`desk.sla.clock.${clock}`)} · ${when}`);
}

function ticketTable(list, { showReporter }) {
  const rows = list.map((tk) => h('tr', { dataset: { ticketId: tk.id, state: tk.state, priority: tk.priority } },
    h('td', { class: 'num' }, `#${tk.number}`),
    h('td', {}, priorityChip(tk.priority)),
    h('td', {}, h('a', { class: 'ticket-link', href: `#/tickets/${tk.id}` }, ticketTitle(tk))),
    h('td', { i18n: `ticket.kind.${tk.kind}` }),
    h('td', {}, ticketBadge(tk.state)),
    showReporter ? h('td', {}, tk.reporter_name) : null,
    h('td', {}, tk.assignee_name || t('desk.unassigned')),
    h('td', { class: 'num' }, slaChip(tk)),
    h('td', { class: 'num', title: absoluteTime(tk.updated_at) }, relativeTime(tk.updated_at))));
  const head = ['desk.col.number', 'desk.col.priority', 'desk.col.title', 'desk.col.kind', 'desk.col.state',
    showReporter ? 'desk.col.reporter' : null, 'desk.col.assignee', 'desk.col.sla', 'desk.col.updated'].filter(Boolean);
  return h('div', { class: 'card table-wrap' }, h('table', { class: 'data tickets' },
    h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col', i18n: k })))),
    h('tbody', {}, rows)));
}

function mineView(container, { me }) {
  let stopped = false;
  const body = h('div', { class: 'tickets-body', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'desk.mine.title' }), h('p', { class: 'muted', i18n: onDesk(me) ? 'desk.mine.subtitleStaff' : 'desk.mine.subtitle' })),
      h('a', { class: 'btn primary', href: '#/report' }, icon('plus'), h('span', { i18n: 'desk.report' }))),
    body);
  let last = null;
  async function load() {
    try {
      const q = onDesk(me) ? `?assignee_id=${enc(me.id)}` : '';
      last = await get(`/api/tickets${q}`);
      if (!stopped) render();
    } catch (err) { if (!stopped) toastError(err); }
  }
  function render() {
    body.removeAttribute('aria-busy');
    if (!last.length) replace(body, h('div', { class: 'empty card' }, icon('warn'), h('p', { i18n: 'desk.mine.empty' })));
    else replace(body, ticketTable(last, { showReporter: me.role !== 'student' }));
  }
  const off = onLangChange(() => { if (last) render(); });
  load();
  return { unmount() { stopped = true; off(); } };
}

function queueView(container, { me }) {
  let stopped = false;
  let timer = null;
  const state = select('q-state', STATES, (s) => `ticket.state.${s}`, [option('open', 'desk.filter.open'), option('', 'desk.filter.all')]);
  const prio = select('q-priority', PRIORITIES, (p) => `ticket.priority.${p}`, [option('', 'desk.filter.any')]);
  const assignee = h('select', { id: 'q-assignee' }, option('', 'desk.filter.anyone'), option('me', 'desk.filter.mine'), option('none', 'desk.filter.unassigned'));
  const node = h('select', { id: 'q-node' }, option('', 'desk.filter.anyNode'));
  const course = h('select', { id: 'q-course' }, option('', 'desk.filter.anyCourse'));
  const refresh = button({ label: 'common.refresh', icon: 'reboot', kind: 'small' });
  const body = h('div', { class: 'queue-body', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'desk.queue.title' }), h('p', { class: 'muted', i18n: 'desk.queue.subtitle' })),
      h('div', { class: 'form-actions' },
        h('a', { class: 'btn', href: '#/desk-stats', dataset: { action: 'stats' } }, h('span', { i18n: 'desk.stats.title' })),
        h('a', { class: 'btn', href: '#/desk-sla', dataset: { action: 'sla' } }, h('span', { i18n: 'desk.sla.title' })),
        h('a', { class: 'btn', href: '#/report' }, icon('plus'), h('span', { i18n: 'desk.queue.enter' })))),
    h('div', { class: 'card pad queue-filters' }, h('div', { class: 'form-grid' },
      field('q-state', 'desk.filter.state', state),
      field('q-priority', 'desk.filter.priority', prio),
      field('q-assignee', 'desk.filter.assignee', assignee),
      field('q-node', 'desk.filter.node', node),
      field('q-course', 'desk.filter.course', course)), refresh),
    body);
  let last = null;
  async function load() {
    clearTimeout(timer);
    const q = new URLSearchParams();
    if (state.value === 'open') q.set('open', 'true'); else if (state.value) q.set('state', state.value);
    if (prio.value) q.set('priority', prio.value);
    if (assignee.value === 'me') q.set('assignee_id', me.id); else if (assignee.value) q.set('assignee_id', assignee.value);
    if (node.value) q.set('node_id', node.value);
    if (course.value) q.set('course_id', course.value);
    try {
      last = await get(`/api/tickets?${q}`);
      if (!stopped) render();
    } catch (err) { if (!stopped) toastError(err); }
    if (!stopped) timer = setTimeout(load, 10000);
  }
  function render() {
    body.removeAttribute('aria-busy');
    if (!last.length) replace(body, h('div', { class: 'empty card' }, icon('warn'), h('p', { i18n: 'desk.queue.empty' })));
    else replace(body, ticketTable(last, { showReporter: true }));
  }
  for (const s of [state, prio, assignee, node, course]) s.addEventListener('change', load);
  refresh.addEventListener('click', load);
  get('/api/nodes').then((ns) => { for (const n of ns) node.append(h('option', { value: n.id }, n.name)); }).catch(() => {});
  get('/api/courses').then((cs) => { for (const c of cs) course.append(h('option', { value: c.id }, `${c.code} · ${c.name}`)); }).catch(() => {});
  const off = onLangChange(() => { if (last) render(); });
  load();
  return { unmount() { stopped = true; clearTimeout(timer); off(); } };
}

// ---------------------------------------------------------------- ticket

function ticketView(container, id, { me }) {
  let stopped = false;
  let tk = null;
  let members = null;
  const root = h('div', { class: 'ticket-page', 'aria-busy': 'true' });
  replace(container, root);

  async function load() {
    try {
      tk = await get(`/api/tickets/${enc(id)}`);
      if (onDesk(me) && me.role === 'admin' && !members) members = await get('/api/desk/members');
      if (!stopped) render();
    } catch (err) {
      if (!stopped) { toastError(err); replace(root, h('div', { class: 'empty card' }, h('p', { i18n: 'desk.ticket.missing' }))); }
    }
  }

  async function act(btn, method, path, bodyObj) {
    const updated = await busy(btn, () => api(method, `/api/tickets/${enc(id)}${path}`, bodyObj));
    if (updated && !stopped) { tk = updated; render(); }
  }

  function header() {
    return h('div', { class: 'page-head ticket-head' },
      h('div', {},
        h('p', { class: 'muted small' }, h('a', { href: onDesk(me) ? '#/desk' : '#/tickets', i18n: onDesk(me) ? 'desk.back.queue' : 'desk.back.mine' })),
        h('h1', { class: 'ticket-title' }, h('span', { class: 'muted' }, `#${tk.number} `), h('span', { class: 'ticket-title-text' }, ticketTitle(tk))),
        h('div', { class: 'ticket-chips' }, ticketBadge(tk.state), priorityChip(tk.priority),
          h('span', { class: 'chip', i18n: `ticket.kind.${tk.kind}` }), h('span', { class: 'chip', i18n: `ticket.channel.${tk.channel}` }))));
  }

  function facts() {
    const rows = [
      ['desk.ticket.reporter', tk.reporter_name],
      ['desk.ticket.assignee', tk.assignee_name || t('desk.unassigned')],
      ['desk.ticket.created', absoluteTime(tk.created_at)],
      ['desk.ticket.impact', t(`ticket.impact.${tk.impact}`)],
      ['desk.ticket.urgency', t(`ticket.urgency.${tk.urgency}`)],
    ];
    if (tk.state !== 'closed') rows.push(['desk.col.sla', slaChip(tk)]);
    if (tk.rating) rows.push(['desk.ticket.rating', `${'★'.repeat(tk.rating)}${'☆'.repeat(5 - tk.rating)}`]);
    return h('dl', { class: 'kv ticket-facts' }, rows.map(([k, v]) => [h('dt', { i18n: k }), h('dd', {}, v)]));
  }

  function contextPanel() {
    const c = tk.context || {};
    if (!c.vm) return null;
    const rows = [['desk.ctx.vm', c.vm.name], ['desk.ctx.state', stateBadge(c.vm.state)]];
    if (c.node) rows.push(['desk.ctx.node', c.node.name]);
    if (c.template) rows.push(['desk.ctx.template', c.template.name]);
    if (c.course) rows.push(['desk.ctx.course', `${c.course.code} · ${c.course.name}`]);
    if (c.vm.last_error) rows.push(['desk.ctx.lastError', c.vm.last_error]);
    rows.push(['desk.ctx.users', String(c.users_affected ?? 1)]);
    const events = (c.events || []).map((e) => h('li', {}, h('span', { class: 'muted small' }, absoluteTime(e.at)), ' ',
      h('span', { i18n: `events.kind.${e.kind}` }), e.node_name ? ` · ${e.node_name}` : '', e.message ? ` — ${e.message}` : ''));
    const live = h('div', { class: 'ticket-live' });
    // Staff reach the VM while the ticket is open (admins always).
    const reach = me.role === 'admin' || (me.role === 'staff' && !['resolved', 'closed'].includes(tk.state));
    if (reach && tk.vm_id) loadLive(live);
    return h('section', { class: 'card pad ticket-context' },
      h('h2', { i18n: 'desk.ticket.context' }),
      h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', { i18n: k }), h('dd', {}, v)])),
      events.length ? [h('h3', { i18n: 'desk.ctx.events' }), h('ul', { class: 'ctx-events' }, events)] : null,
      tk.has_screenshot ? h('figure', { class: 'shot' },
        h('img', { class: 'shot-ticket', src: `/api/tickets/${enc(tk.id)}/screenshot`, alt: t('desk.report.shotAlt') })) : null,
      live);
  }

  async function loadLive(box) {
    try {
      const vm = await get(`/api/vms/${enc(tk.vm_id)}`);
      if (stopped) return;
      const bar = actionBar(vm, { onOpen: (v) => { location.hash = `#/desktop/${v.id}`; }, onChanged: () => {} });
      for (const b of bar.el.querySelectorAll('[data-action=reset]')) b.remove();
      replace(box, h('h3', { i18n: 'desk.ticket.live' }), h('div', { class: 'ticket-live-row' }, stateBadge(vm.state), bar.el));
    } catch (err) {
      replace(box, h('p', { class: 'muted small', i18n: 'desk.ticket.liveGone' }));
    }
  }

  function actions() {
    const can = tk.can || {};
    const out = [];
    if (can.take) {
      const b = button({ label: 'desk.act.take', kind: 'primary', attrs: { 'data-action': 'take' } });
      b.addEventListener('click', () => act(b, 'POST', '/assign', { assignee_id: me.id }));
      out.push(b);
    }
    if (can.dispatch && members) {
      const sel = h('select', { id: 'tk-dispatch', class: 'small' }, members.map((m) => h('option', { value: m.id }, m.display_name || m.username)));
      const b = button({ label: 'desk.act.dispatch', kind: 'small', attrs: { 'data-action': 'dispatch' } });
      b.addEventListener('click', () => act(b, 'POST', '/assign', { assignee_id: sel.value }));
      out.push(h('span', { class: 'inline-form' }, h('label', { for: 'tk-dispatch', class: 'visually-hidden', i18n: 'desk.act.dispatch' }), sel, b));
    }
    if (can.start) {
      const b = button({ label: 'desk.act.start', kind: '', attrs: { 'data-action': 'start' } });
      b.addEventListener('click', () => act(b, 'POST', '/state', { state: 'in_progress' }));
      out.push(b);
    }
    if (can.wait) {
      const b = button({ label: 'desk.act.wait', kind: '', attrs: { 'data-action': 'wait' } });
      b.addEventListener('click', () => act(b, 'POST', '/state', { state: 'waiting' }));
      out.push(b);
    }
    const forms = [];
    if (can.resolve) {
      const text = h('textarea', { id: 'tk-resolution', rows: 3, maxlength: 10000 });
      const b = button({ label: 'desk.act.resolve', kind: 'primary', attrs: { 'data-action': 'resolve' } });
      b.addEventListener('click', () => {
        if (!text.value.trim()) { text.focus(); toast(t('desk.act.resolutionRequired'), 'error'); return; }
        act(b, 'POST', '/resolve', { resolution: text.value });
      });
      forms.push(h('div', { class: 'card pad act-form' }, field('tk-resolution', 'desk.act.resolution', text), b));
    }
    if (can.confirm) {
      const stars = h('div', { class: 'rating', role: 'radiogroup', i18nAria: 'desk.act.rating' },
        [1, 2, 3, 4, 5].map((n) => h('label', { class: 'star' },
          h('input', { type: 'radio', name: 'tk-rating', value: n, checked: n === 5 }), h('span', {}, String(n)))));
      const comment = h('textarea', { id: 'tk-rate-comment', rows: 2, maxlength: 10000 });
      const b = button({ label: 'desk.act.confirm', kind: 'primary', attrs: { 'data-action': 'confirm' } });
      b.addEventListener('click', () => {
        const r = Number(stars.querySelector('input:checked')?.value || 5);
        act(b, 'POST', '/confirm', { rating: r, comment: comment.value });
      });
      forms.push(h('div', { class: 'card pad act-form confirm-form' },
        h('h2', { i18n: 'desk.act.confirmTitle' }), h('p', { class: 'muted', i18n: 'desk.act.confirmHint' }),
        h('p', { class: 'lbl', i18n: 'desk.act.rating' }), stars,
        field('tk-rate-comment', 'desk.act.rateComment', comment), b));
    }
    if (can.reopen) {
      const reason = h('textarea', { id: 'tk-reopen', rows: 2, maxlength: 10000 });
      const b = button({ label: 'desk.act.reopen', kind: 'danger-text', attrs: { 'data-action': 'reopen' } });
      b.addEventListener('click', () => {
        if (!reason.value.trim()) { reason.focus(); toast(t('desk.act.reasonRequired'), 'error'); return; }
        act(b, 'POST', '/reopen', { reason: reason.value });
      });
      forms.push(h('div', { class: 'card pad act-form' }, field('tk-reopen', 'desk.act.reopenReason', reason), b));
    }
    if (can.priority) {
      const sel = h('select', { id: 'tk-priority' }, PRIORITIES.map((p) => option(p, `ticket.priority.${p}`)));
      sel.value = tk.priority;
      const reason = h('input', { id: 'tk-priority-reason', maxlength: 10000, autocomplete: 'off' });
      const b = button({ label: 'desk.act.priority', kind: 'small', attrs: { 'data-action': 'priority' } });
      b.addEventListener('click', () => {
        if (!reason.value.trim()) { reason.focus(); toast(t('desk.act.reasonRequired'), 'error'); return; }
        act(b, 'POST', '/priority', { priority: sel.value, reason: reason.value });
      });
      forms.push(h('details', { class: 'card pad act-form' }, h('summary', { i18n: 'desk.act.priorityTitle' }),
        h('div', { class: 'form-grid' }, field('tk-priority', 'desk.filter.priority', sel), field('tk-priority-reason', 'desk.act.reason', reason)), b));
    }
    if (onDesk(me)) forms.push(problemBox());
    if (onDesk(me) && (tk.state === 'resolved' || tk.state === 'closed')) {
      out.push(h('a', { class: 'btn small', href: `#/kb/new/${tk.id}`, dataset: { action: 'write-article' } }, h('span', { i18n: 'desk.kb.writeFromTicket' })));
    }
    if (can.reply) {
      const text = h('textarea', { id: 'tk-reply', rows: 4, maxlength: 10000 });
      const b = button({ label: 'desk.reply.send', kind: 'primary', attrs: { 'data-action': 'reply' } });
      b.addEventListener('click', () => {
        if (!text.value.trim()) { text.focus(); toast(t('desk.reply.required'), 'error'); return; }
        act(b, 'POST', '/reply', { text: text.value });
      });
      forms.push(h('section', { class: 'card pad act-form reply-form' }, h('h2', { i18n: 'desk.reply.title' }),
        h('p', { class: 'muted small', i18n: 'desk.reply.hint' }), field('tk-reply', 'desk.reply.label', text), b));
    }
    if (can.link_template) forms.push(templateBox());
    if (can.callback) {
      const outcome = h('select', { id: 'tk-cb-outcome' }, option('reached', 'desk.callback.reached'), option('no_answer', 'desk.callback.no_answer'));
      const rating = h('select', { id: 'tk-cb-rating' }, option('', 'desk.callback.noRating'), [5, 4, 3, 2, 1].map((n) => h('option', { value: n }, '★'.repeat(n))));
      // A rating on the phone closes a resolved ticket; a closed one keeps its own.
      const ratingField = tk.state === 'resolved' ? field('tk-cb-rating', 'desk.callback.rating', rating) : null;
      const note = h('input', { id: 'tk-cb-note', maxlength: 10000, autocomplete: 'off' });
      const b = button({ label: 'desk.callback.save', kind: 'small', attrs: { 'data-action': 'callback' } });
      b.addEventListener('click', () => {
        const body = { outcome: outcome.value, text: note.value };
        if (ratingField && rating.value && outcome.value === 'reached') body.rating = Number(rating.value);
        act(b, 'POST', '/callbacks', body);
      });
      forms.push(h('section', { class: 'card pad act-form callback-form' }, h('h2', { i18n: 'desk.callback.title' }),
        h('div', { class: 'form-grid' }, field('tk-cb-outcome', 'desk.callback.outcome', outcome), ratingField, field('tk-cb-note', 'desk.callback.note', note)), b));
    }
    return [out.length ? h('div', { class: 'ticket-actions' }, out) : null, forms];
  }

  /** A request leads to a template: pick it (teachers and admins list them). */
  function templateBox() {
    const box = h('section', { class: 'card pad template-box' }, h('h2', { i18n: 'desk.template.title' }),
      h('p', { class: 'muted small', i18n: 'desk.template.hint' }));
    const sel = h('select', { id: 'tk-template', class: 'small' });
    const b = button({ label: 'desk.template.link', kind: 'small', attrs: { 'data-action': 'link-template', disabled: true } });
    get('/api/templates').then((ts) => {
      for (const x of ts) sel.append(h('option', { value: x.id }, x.name));
      b.disabled = !sel.options.length;
    }).catch(() => { box.hidden = true; });
    b.addEventListener('click', () => act(b, 'POST', '/template', { template_id: sel.value }));
    box.append(h('div', { class: 'inline-form' }, h('label', { for: 'tk-template', class: 'visually-hidden', i18n: 'desk.template.link' }), sel, b));
    return box;
  }

  /** The admin's written reply to a complaint, shown above everything to the reporter. */
  function replyPanel() {
    const r = [...tk.events].reverse().find((e) => e.kind === 'reply');
    if (!r) return null;
    return h('div', { class: 'ticket-reply', id: 'ticket-reply' }, h('h3', { i18n: 'desk.reply.shown' }),
      h('p', {}, r.text || ''), h('p', { class: 'muted small' }, `${r.actor_name || ''} · ${absoluteTime(r.at)}`));
  }

  function problemBox() {
    const box = h('section', { class: 'card pad problem-box' }, h('h2', { i18n: 'desk.problem.linked' }));
    if (tk.problem_id) {
      box.append(h('a', { href: `#/problems/${tk.problem_id}`, dataset: { action: 'open-problem' } }, t('desk.problem.linked')));
      get(`/api/problems/${enc(tk.problem_id)}`).then((p) => {
        const a = box.querySelector('[data-action=open-problem]');
        if (a) a.textContent = `#${p.number} ${p.title}`;
      }).catch(() => {});
      return box;
    }
    const sel = h('select', { id: 'tk-problem', class: 'small' });
    const link = button({ label: 'desk.problem.link', kind: 'small', attrs: { 'data-action': 'link-problem', disabled: true } });
    const fresh = button({ label: 'desk.problem.fromTicket', kind: 'small', attrs: { 'data-action': 'new-problem' } });
    get('/api/problems').then((ps) => {
      for (const p of ps.filter((x) => x.state !== 'resolved')) sel.append(h('option', { value: p.id }, `#${p.number} ${p.title}`));
      link.disabled = !sel.options.length;
    }).catch(() => {});
    link.addEventListener('click', async () => {
      const r = await busy(link, () => post(`/api/problems/${enc(sel.value)}/tickets`, { ticket_id: tk.id }));
      if (r) load();
    });
    fresh.addEventListener('click', async () => {
      const p = await busy(fresh, () => post('/api/problems', { title: tk.title, ticket_id: tk.id }));
      if (p) location.hash = `#/problems/${p.id}`;
    });
    box.append(h('div', { class: 'inline-form' }, h('label', { for: 'tk-problem', class: 'visually-hidden', i18n: 'desk.problem.link' }), sel, link), ' ', fresh);
    return box;
  }

  function timeline() {
    const items = tk.events.map((e) => {
      const who = e.actor_name || t('desk.ev.system');
      let what = t(`desk.ev.${e.kind}`);
      if (e.kind === 'callback' && e.data) {
        what = t('desk.ev.callback', { outcome: t(`desk.callback.${e.data.outcome}`) });
        if (e.data.rating) what = `${what} · ${t('desk.ev.rated', { rating: e.data.rating })}`;
        if (e.data.at) what = `${what} (${absoluteTime(e.data.at)})`;
      } else if (e.kind === 'auto_closed' && e.data) what = t('desk.ev.autoClosed', { days: e.data.days });
      else if (e.kind === 'escalated' && e.data) {
        what = t(e.data.breach ? 'desk.ev.slaBreached' : 'desk.ev.escalated', {
          clock: t(`desk.sla.clock.${e.data.clock}`), percent: e.data.percent, who: t(`desk.sla.notify.${e.data.notify}`),
        });
      } else if (e.kind === 'problem' && e.data) what = `${t('desk.ev.problem')} #${e.data.problem_number}`;
      else if (e.kind === 'assigned' && e.data) what = t('desk.ev.assignedTo', { name: e.data.assignee_name || '' });
      else if (e.data && e.data.to && e.data.from && e.kind !== 'priority') what = `${what} · ${t(`ticket.state.${e.data.to}`)}`;
      else if (e.kind === 'priority' && e.data) what = t('desk.ev.priorityChange', { from: e.data.from, to: e.data.to });
      else if (e.kind === 'confirmed' && e.data) what = t('desk.ev.rated', { rating: e.data.rating });
      // The server's own work-log lines (system incidents) say what happened in the reader's language.
      else if (e.kind === 'worklog' && !e.actor_id && e.data && e.data.node_up !== undefined) what = t(e.data.node_up ? 'desk.ev.nodeUp' : 'desk.ev.nodeDownAgain');
      else if (e.kind === 'worklog' && !e.actor_id && e.data && e.data.failures) what = t('desk.ev.startFailedAgain', { n: e.data.failures });
      else if (e.kind === 'worklog' && !e.actor_id && e.data && e.data.template_sealed) what = t('desk.ev.templateSealed', { name: e.data.template_name });
      else if (e.kind === 'template_linked' && e.data) what = t('desk.ev.templateLinked', { name: e.data.template_name });
      return h('li', { class: `tl-item tl-${e.kind}${e.internal ? ' internal' : ''}`, dataset: { kind: e.kind } },
        h('div', { class: 'tl-head' },
          h('strong', {}, who), ' ', h('span', {}, what),
          e.internal ? h('span', { class: 'chip internal-chip', i18n: 'desk.ev.internal' }) : null,
          h('span', { class: 'muted small tl-at', title: absoluteTime(e.at) }, relativeTime(e.at))),
        e.text ? h('p', { class: 'tl-text' }, e.text) : null);
    });
    return h('section', { class: 'card pad ticket-timeline' }, h('h2', { i18n: 'desk.ticket.timeline' }), h('ol', { class: 'timeline' }, items));
  }

  function commentForm() {
    if (!(tk.can && tk.can.comment)) return null;
    const text = h('textarea', { id: 'tk-comment', rows: 3, maxlength: 10000 });
    const internal = h('input', { type: 'checkbox', id: 'tk-internal' });
    const worklog = h('input', { type: 'checkbox', id: 'tk-worklog' });
    const b = button({ label: 'desk.comment.send', kind: 'primary small', attrs: { 'data-action': 'comment' } });
    b.addEventListener('click', () => {
      if (!text.value.trim()) { text.focus(); return; }
      act(b, 'POST', '/comments', { text: text.value, internal: internal.checked, worklog: worklog.checked });
    });
    return h('section', { class: 'card pad comment-form' },
      field('tk-comment', tk.can.internal ? 'desk.comment.labelStaff' : 'desk.comment.label', text),
      tk.can.internal ? h('div', { class: 'checks' },
        h('label', {}, internal, ' ', h('span', { i18n: 'desk.comment.internal' })),
        h('label', {}, worklog, ' ', h('span', { i18n: 'desk.comment.worklog' }))) : null,
      b);
  }

  function render() {
    root.removeAttribute('aria-busy');
    root.dataset.state = tk.state;
    replace(root, header(),
      h('div', { class: 'ticket-grid' },
        h('div', { class: 'ticket-main' },
          h('section', { class: 'card pad' }, facts(),
            tk.description ? h('p', { class: 'ticket-description' }, tk.description) : null,
            tk.resolution ? h('div', { class: 'ticket-resolution' }, h('h3', { i18n: 'desk.ticket.resolution' }), h('p', {}, tk.resolution)) : null,
            replyPanel()),
          actions(), timeline(), commentForm()),
        h('div', { class: 'ticket-side' }, contextPanel())));
  }

  const off = onLangChange(() => { if (tk) render(); });
  load();
  return { unmount() { stopped = true; off(); } };
}
