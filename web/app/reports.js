// The periodic service report: the list (admins generate a draft for a
// week, month, quarter or any range), and the report page — every section's
// figures with charts, the admin's analysis per section and the improvement
// plan (editable while a draft), review, publish, PDF and CSV downloads.
// Teachers and staff see published reports only.
//
// Everything users typed (analysis texts, ticket titles, names) is rendered
// with textContent through h(): never as HTML.

import { t, lang, onLangChange } from './i18n.js';
import { h, button, replace, absoluteTime, toast, toastError, formatBytes, confirmDialog, busy, field } from './ui.js';
import { api, get, post } from './api.js';
import { barChart } from './charts.js';

const PERIODS = ['week', 'month', 'quarter', 'custom'];
const SECTIONS = ['summary', 'sla', 'incidents', 'workload', 'satisfaction', 'resources', 'service_levels'];
const enc = encodeURIComponent;

export function mount(container, params, ctx) {
  if (params[0]) return reportView(container, params[0], ctx);
  return listView(container, ctx);
}



const none = () => t('common.none');
const pct = (v) => (v === null || v === undefined ? none() : `${(v * 100).toFixed(1)}%`);
const num = (v, d = 1) => (v === null || v === undefined ? none() : Number(v).toFixed(d));
const day = (iso) => (iso || '').slice(0, 10);
/** The last day of a range whose `to` is exclusive. */
const lastDay = (iso) => new Date(Date.parse(iso) - 86400000).toISOString().slice(0, 10);

/** A capacity forecast (`{kind, days?}`) in words. */
function forecast(f) {
  if (!f || f.kind === 'unknown') return none();
  if (f.kind === 'in_days') return t('reports.res.inDays', { n: Math.round(f.days) });
  return t(`reports.res.${f.kind === 'full' ? 'full' : 'notGrowing'}`);
}

function stateBadge(state) {
  return h('span', { class: `badge report-state rs-${state}`, dataset: { state }, i18n: `reports.state.${state}` });
}

// ---------------------------------------------------------------- list

function listView(container, { me }) {
  let stopped = false;
  const list = h('div', { class: 'report-list', 'aria-busy': 'true' });
  let form = null;
  if (me.role === 'admin') {
    const period = h('select', { id: 'rpt-period' }, PERIODS.map((p) => h('option', { value: p, i18n: `reports.period.${p}` })));
    const from = h('input', { id: 'rpt-from', type: 'date' });
    const to = h('input', { id: 'rpt-to', type: 'date' });
    const toField = field('rpt-to', 'reports.to', to);
    const sync = () => { toField.hidden = period.value !== 'custom'; };
    period.addEventListener('change', sync);
    sync();
    const go = h('button', { type: 'submit', class: 'btn primary', i18n: 'reports.generate', dataset: { action: 'generate' } });
    form = h('form', { class: 'card pad report-form', novalidate: true },
      h('h2', { i18n: 'reports.new' }),
      h('p', { class: 'muted small', i18n: 'reports.newHint' }),
      h('div', { class: 'form-grid' }, field('rpt-period', 'reports.period', period), field('rpt-from', 'reports.from', from), toField),
      h('div', { class: 'form-actions' }, go));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = { period: period.value };
      if (from.value) body.from = from.value;
      if (period.value === 'custom') {
        if (!from.value || !to.value) { toast(t('reports.rangeRequired'), 'error'); return; }
        body.to = to.value;
      }
      const r = await busy(go, () => post('/api/reports', body));
      if (r) location.hash = `#/reports/${r.id}`;
    });
  }
  replace(container,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { i18n: 'reports.title' }),
      h('p', { class: 'muted', i18n: me.role === 'admin' ? 'reports.subtitle' : 'reports.subtitleReader' }))),
    form, list);
  (async () => {
    let rows;
    try { rows = await get('/api/reports'); } catch (err) { if (!stopped) toastError(err); return; }
    if (stopped) return;
    list.removeAttribute('aria-busy');
    if (!rows.length) { replace(list, h('div', { class: 'empty card' }, h('p', { i18n: 'reports.empty' }))); return; }
    replace(list, h('section', { class: 'card table-wrap' }, h('table', { class: 'data reports' },
      h('thead', {}, h('tr', {}, ['reports.col.period', 'reports.col.range', 'reports.col.state', 'reports.col.generated']
        .map((k) => h('th', { scope: 'col', i18n: k })))),
      h('tbody', {}, rows.map((r) => h('tr', { dataset: { reportId: r.id, state: r.state } },
        h('td', {}, h('a', { href: `#/reports/${r.id}`, i18n: `reports.period.${r.period}` })),
        h('td', {}, `${day(r.from)} — ${lastDay(r.to)}`),
        h('td', {}, stateBadge(r.state)),
        h('td', {}, absoluteTime(r.generated_at))))))));
  })();
  return { unmount() { stopped = true; } };
}

// ---------------------------------------------------------------- report

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.map(([k, v]) => [h('dt', { i18n: k }), h('dd', { class: 'num' }, v)]));
}

function table(cls, head, rows) {
  return h('div', { class: 'table-wrap' }, h('table', { class: `data ${cls}` },
    h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col', i18n: k })))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: head.length, class: 'muted', i18n: 'reports.none' })))));
}

function chart(titleKey, items, opts = {}) {
  const box = h('div', { class: 'report-chart', dataset: { chart: titleKey } });
  barChart(box, { title: t(titleKey), items, ...opts });
  return h('div', {}, h('h3', { i18n: titleKey }), box);
}

/** The figures of one section. */
function figures(key, f) {
  const s = f.summary;
  switch (key) {
    case 'summary': return kv([
      ['reports.f.tickets', String(s.tickets)], ['reports.f.incidents', String(s.incidents)],
      ['reports.f.complaints', String(s.complaints)],
      ['reports.f.responseCompliance', pct(s.response_compliance)], ['reports.f.resolutionCompliance', pct(s.resolution_compliance)],
      ['reports.f.satisfaction', s.satisfaction_average === null ? none() : `${num(s.satisfaction_average)} / 5`],
      ['reports.f.nodeAvailability', pct(s.node_availability)], ['reports.f.vmHours', num(s.vm_hours)],
      ['reports.f.peakVms', String(s.peak_concurrent_vms)], ['reports.f.courses', String(s.inventory.courses)],
      ['reports.f.students', String(s.inventory.students)], ['reports.f.nodes', String(s.inventory.nodes)],
      ['reports.f.templates', String(s.inventory.templates)], ['reports.f.store', formatBytes(s.inventory.template_store_bytes)],
    ]);
    case 'sla': return [
      table('report-sla', ['reports.sla.priority', 'reports.sla.targetResponse', 'reports.sla.targetResolution', 'reports.f.tickets', 'reports.sla.response', 'reports.sla.resolution'],
        f.sla.per_priority.map((p) => [p.priority, t('reports.minutes', { n: p.response_target_minutes }), t('reports.minutes', { n: p.resolution_target_minutes }),
          String(p.tickets), t('reports.sla.metBreached', { met: p.response_met, breached: p.response_breached }),
          t('reports.sla.metBreached', { met: p.resolution_met, breached: p.resolution_breached })])),
      kv([['reports.f.responseCompliance', pct(f.sla.response_compliance)], ['reports.f.resolutionCompliance', pct(f.sla.resolution_compliance)]]),
      h('h3', { i18n: 'reports.sla.breaches' }),
      table('report-breaches', ['reports.col.ticket', 'reports.col.title', 'reports.sla.priority', 'reports.sla.clock', 'reports.sla.over'],
        f.sla.breaches.map((b) => [`#${b.number}`, b.title, b.priority, t(`reports.sla.${b.clock}`), t('reports.minutes', { n: b.over_minutes })])),
    ];
    case 'incidents': {
      const n = f.incidents;
      return [
        h('div', { class: 'grid-2' },
          chart('reports.inc.byKind', Object.entries(n.by_kind).map(([k, v]) => [t(`ticket.kind.${k}`), v])),
          chart('reports.inc.byPriority', Object.entries(n.by_priority)),
          chart('reports.inc.byChannel', Object.entries(n.by_channel).map(([k, v]) => [t(`ticket.channel.${k}`), v])),
          chart('reports.inc.series', n.series.map((p) => [p.period, p.created]))),
        table('report-times', ['reports.col.what', 'reports.f.tickets', 'reports.inc.p50', 'reports.inc.p90'], [
          [t('reports.sla.response'), String(n.response.count), num(n.response.p50_minutes), num(n.response.p90_minutes)],
          [t('reports.sla.resolution'), String(n.resolution.count), num(n.resolution.p50_minutes), num(n.resolution.p90_minutes)]]),
        kv([['reports.inc.ftf', pct(n.first_time_fix_rate)], ['reports.inc.reopen', pct(n.reopen_rate)]]),
        h('h3', { i18n: 'reports.inc.major' }),
        table('report-major', ['reports.col.ticket', 'reports.col.title', 'reports.col.opened', 'reports.col.resolution'],
          n.major.map((m) => [`#${m.number}`, m.title, absoluteTime(m.created_at), m.resolution || none()])),
      ];
    }
    case 'workload': return [
      chart('reports.work.chart', f.workload.map((w) => [w.name, w.assigned])),
      table('report-workload', ['reports.work.engineer', 'reports.work.assigned', 'reports.work.resolved', 'reports.work.handling'],
        f.workload.map((w) => [w.name, String(w.assigned), String(w.resolved), pct(w.handling_rate)])),
    ];
    case 'satisfaction': {
      const st = f.satisfaction;
      return [
        h('div', { class: 'grid-2' },
          chart('reports.sat.distribution', Object.entries(st.distribution).reverse().map(([k, v]) => ['★'.repeat(Number(k)), v])),
          chart('reports.sat.trend', st.trend.map((p) => [p.period, p.average ?? 0]), { decimals: 1 })),
        kv([['reports.f.satisfaction', num(st.average)], ['reports.sat.rated', String(st.rated)], ['reports.sat.unrated', String(st.unrated)]]),
        h('h3', { i18n: 'reports.sat.complaints' }),
        table('report-complaints', ['reports.col.ticket', 'reports.col.title', 'reports.col.state', 'reports.col.resolution'],
          st.complaints.map((c) => [`#${c.number}`, c.title, t(`ticket.state.${c.state}`), c.resolution || none()])),
      ];
    }
    case 'resources': {
      const r = f.resources;
      const p = (v) => (v === null || v === undefined ? none() : `${num(v)}%`);
      return [
        table('report-nodes', ['reports.res.node', 'reports.res.cpuAvg', 'reports.res.cpuPeak', 'reports.res.memAvg', 'reports.res.memPeak', 'reports.res.vmsPeak', 'reports.res.memFull'],
          r.nodes.map((n) => [n.node, p(n.cpu_average), p(n.cpu_peak), p(n.mem_average_percent), p(n.mem_peak_percent), String(n.vms_peak), forecast(n.memory_forecast)])),
        kv([['reports.f.peakVms', String(r.peak_concurrent_vms)], ['reports.f.vmHours', num(r.vm_hours)], ['reports.f.store', formatBytes(r.template_store_bytes)]]),
        h('div', { class: 'grid-2' },
          chart('reports.res.courseHours', r.hours_per_course.map((c) => [c.course, c.hours]), { decimals: 1, unit: ' h' }),
          chart('reports.res.peakTrend', r.peak_trend.map((x) => [x.period, x.peak_vms]))),
      ];
    }
    case 'service_levels': {
      const sl = f.service_levels;
      return [
        table('report-availability', ['reports.res.node', 'reports.sl.down', 'reports.sl.downtime', 'reports.sl.availability', 'reports.sl.startFailures'],
          sl.nodes.map((n) => [n.node, String(n.down_events), t('reports.minutes', { n: num(n.downtime_minutes) }), pct(n.availability), String(n.start_failures)])),
        kv([['reports.f.nodeAvailability', pct(sl.node_availability)], ['reports.sl.startFailures', String(sl.vm_start_failures)]]),
        provisioningKv(sl.class_provisioning),
        h('p', { class: 'muted small', i18n: 'reports.sl.note' }),
      ];
    }
    default: return null;
  }
}

// Class provisioning (src/slo/provisioning.rs); reports made before it was
// recorded have none.
function provisioningKv(cp) {
  if (!cp) return null;
  const secs = (v) => (v === null ? t('common.none') : t('slo.seconds', { n: v.toFixed(0) }));
  return h('div', { id: 'report-provisioning' }, kv([
    ['reports.sl.provSessions', String(cp.sessions)],
    ['reports.sl.provReady', `${cp.ready_by_start} / ${cp.sessions}`],
    ['reports.sl.provTime', `${secs(cp.p50_seconds)} · ${secs(cp.p95_seconds)} · ${secs(cp.max_seconds)}`],
  ]));
}

function reportView(container, id, { me }) {
  let stopped = false;
  const admin = me.role === 'admin';
  let report = null;
  const inputs = {};

  async function load() {
    try { report = await get(`/api/reports/${enc(id)}`); } catch (err) { if (!stopped) toastError(err); return; }
    if (!stopped) render();
  }

  function texts() {
    const out = {};
    for (const [k, el] of Object.entries(inputs)) out[k] = el.value;
    return out;
  }

  async function act(btn, f, doneKey) {
    const r = await busy(btn, f);
    if (r && !stopped) { report = r; render(); toast(t(doneKey), 'success'); }
  }

  function analysis(key) {
    const text = report.texts[key] || '';
    if (admin && report.state === 'draft') {
      const el = h('textarea', { id: `rpt-text-${key}`, rows: 4, maxlength: 20000, i18nPh: 'reports.analysisPh', dataset: { text: key } });
      el.value = text;
      inputs[key] = el;
      return field(`rpt-text-${key}`, key === 'plan' ? 'reports.planLabel' : 'reports.analysis', el);
    }
    if (!text) return key === 'plan' ? h('p', { class: 'muted', i18n: 'reports.noPlan' }) : null;
    return h('div', {}, key === 'plan' ? null : h('h3', { i18n: 'reports.analysis' }), h('p', { class: 'report-text', dataset: { text: key } }, text));
  }

  function render() {
    for (const k of Object.keys(inputs)) delete inputs[k];
    const r = report;
    const actions = [];
    const l = lang();
    actions.push(h('a', { class: 'btn', href: `/api/reports/${enc(r.id)}/pdf?lang=${enc(l)}`, download: '', dataset: { action: 'pdf' }, i18n: 'reports.pdf' }));
    actions.push(h('a', { class: 'btn', href: `/api/reports/${enc(r.id)}/csv`, download: '', dataset: { action: 'csv' }, i18n: 'reports.csv' }));
    if (admin && r.state === 'draft') {
      const save = button({ label: 'reports.save', kind: 'primary', attrs: { 'data-action': 'save' } });
      save.addEventListener('click', () => act(save, () => api('PATCH', `/api/reports/${enc(r.id)}`, { texts: texts() }), 'reports.saved'));
      const regen = button({ label: 'reports.regenerate', attrs: { 'data-action': 'regenerate' } });
      regen.addEventListener('click', () => act(regen, () => post(`/api/reports/${enc(r.id)}/regenerate`), 'reports.regenerated'));
      const review = button({ label: 'reports.review', attrs: { 'data-action': 'review' } });
      review.addEventListener('click', () => act(review, async () => {
        // Unsaved texts go in first: a reviewed report can no longer change.
        await api('PATCH', `/api/reports/${enc(r.id)}`, { texts: texts() });
        return post(`/api/reports/${enc(r.id)}/review`);
      }, 'reports.reviewedDone'));
      actions.push(save, regen, review);
    }
    if (admin && r.state === 'reviewed') {
      const pub = button({ label: 'reports.publish', kind: 'primary', attrs: { 'data-action': 'publish' } });
      pub.addEventListener('click', async () => {
        const ok = await confirmDialog({ title: 'reports.publishTitle', body: 'reports.publishBody', confirm: 'reports.publish' });
        if (ok) act(pub, () => post(`/api/reports/${enc(r.id)}/publish`), 'reports.publishedDone');
      });
      actions.push(pub);
    }
    const f = r.sections;
    replace(container,
      h('div', { class: 'page-head' }, h('div', {},
        h('p', { class: 'muted small' }, h('a', { href: '#/reports', i18n: 'reports.back' })),
        h('h1', {}, h('span', { i18n: `reports.period.${r.period}` }), ' · ', `${day(r.from)} — ${lastDay(r.to)}`),
        h('p', { class: 'muted' }, stateBadge(r.state), ' ', h('span', { i18n: ['reports.generatedAt', { at: absoluteTime(r.generated_at) }] })))),
      h('div', { class: 'card pad report-actions' }, actions),
      SECTIONS.map((k) => h('section', { class: 'card pad report-section', dataset: { section: k } },
        h('h2', { i18n: `reports.sec.${k}` }), figures(k, f), analysis(k))),
      h('section', { class: 'card pad report-section', dataset: { section: 'plan' } },
        h('h2', { i18n: 'reports.sec.plan' }), analysis('plan')));
  }

  // Charts and links carry the language: draw again, keeping unsaved texts.
  const off = onLangChange(() => {
    if (!report || stopped) return;
    report = { ...report, texts: { ...report.texts, ...texts() } };
    render();
  });
  replace(container, h('p', { class: 'muted', i18n: 'common.loading' }));
  load();
  return { unmount() { stopped = true; off(); } };
}
