// Service levels: the SLO page (admins and staff; teachers for their
// courses: each objective's target,
// actual, error budget and burn rate, the indicators behind them; admins
// set the targets) and the service status page (everyone: each service
// green / amber / red and the open system incidents, titles only).
//
// Incident titles are rendered with textContent through h(): never as HTML.

import { t, onLangChange } from './i18n.js';
import { h, replace, toast, toastError, absoluteTime } from './ui.js';
import { api, get } from './api.js';

const none = () => t('common.none');
// A burn rate as a multiple of the rate that spends the budget in one period.
const burnText = (b) => (b === null ? none() : `${b.toFixed(2)}×`);
// Class provisioning: a session's pre-start to its last VM usable.
function provisioningSection(rep, emptyRow) {
  const p = rep.provisioning;
  const tiles = [
    ['slo.fig.provSessions', String(p.sessions)],
    ['slo.fig.provReady', `${p.ready_by_start} / ${p.sessions}`],
    ['slo.fig.provTime', `${secs(p.p50_seconds)} · ${secs(p.p95_seconds)}`],
  ];
  const verdict = (s) => {
    if (s.ready_by_start) return ['level-green slo-prov-ontime', 'slo.prov.onTime'];
    if (s.seconds !== null) return ['level-amber slo-prov-late', 'slo.prov.late'];
    return ['level-red slo-prov-incomplete', 'slo.prov.incomplete'];
  };
  return h('section', { class: 'card pad', id: 'slo-provisioning' },
    h('h2', { i18n: 'slo.provisioning' }),
    h('p', { class: 'muted small', i18n: 'slo.provisioning.help' }),
    h('div', { class: 'stat-tiles' }, tiles.map(([k, v]) => h('div', { class: 'card stat-tile' }, h('span', { class: 'muted small', i18n: k }), h('strong', {}, v)))),
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', i18nAria: 'slo.provisioning' }, h('table', { class: 'data', id: 'slo-prov' },
      h('thead', {}, h('tr', {}, ['slo.col.course', 'slo.col.sessionStart', 'slo.col.vmsReady', 'slo.col.provTime', 'slo.col.onTime'].map((c) => h('th', { scope: 'col', i18n: c })))),
      h('tbody', {}, p.per_session.length === 0 ? emptyRow(5) : p.per_session.map((s) => {
        const [cls, key] = verdict(s);
        return h('tr', { dataset: { course: s.course_id } },
          h('td', {}, rep.courses[s.course_id] || s.course_id),
          h('td', {}, absoluteTime(s.session_start)),
          h('td', { class: 'num slo-prov-vms', i18n: ['slo.prov.vms', { ready: s.ready, vms: s.vms }] }),
          h('td', { class: 'num slo-prov-time' }, secs(s.seconds)),
          h('td', {}, h('span', { class: `badge ${cls}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { i18n: key }))));
      })))));
}
const pct = (v, digits = 2) => (v === null || v === undefined ? none() : `${(v * 100).toFixed(digits)}%`);
const secs = (v) => (v === null || v === undefined ? none() : t('slo.seconds', { n: v.toFixed(1) }));

export function mount(container, params, ctx) {
  if (ctx.kind === 'status') return statusView(container);
  return sloView(container, ctx);
}

function levelBadge(level) {
  return h('span', { class: `badge level-${level}`, dataset: { level } },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { i18n: `status.level.${level}` }));
}

// ---------------------------------------------------------------- status

function statusView(container) {
  let stopped = false;
  let timer = null;
  const body = h('div', { class: 'status-body', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' }, h('div', {},
      h('h1', { i18n: 'status.title' }), h('p', { class: 'muted', i18n: 'status.subtitle' }))),
    body);
  async function load() {
    let st;
    try { st = await get('/api/status'); } catch (err) { if (!stopped) toastError(err); return; }
    if (stopped) return;
    body.removeAttribute('aria-busy');
    replace(body,
      h('section', { class: `card pad status-overall level-${st.level}`, id: 'status-overall' },
        h('strong', { i18n: `status.overall.${st.level}` }),
        h('p', { class: 'muted small', i18n: ['status.updated', { when: absoluteTime(st.at) }] })),
      h('section', { class: 'card pad' }, h('h2', { i18n: 'status.services' }),
        h('ul', { class: 'status-services' }, st.services.map((s) => h('li', { dataset: { service: s.service } },
          h('span', { class: 'status-service', i18n: `status.service.${s.service}` }), levelBadge(s.level))))),
      h('section', { class: 'card pad' }, h('h2', { i18n: 'status.incidents' }),
        st.incidents.length === 0
          ? h('p', { class: 'muted', id: 'status-no-incidents', i18n: 'status.noIncidents' })
          : h('ul', { class: 'status-incidents' }, st.incidents.map((i) => h('li', {},
            h('span', { class: 'badge' }, i.priority), ' ', h('span', { class: 'incident-title' }, i.title), ' ',
            h('span', { class: 'muted small', i18n: ['status.since', { when: absoluteTime(i.opened_at) }] }))))));
  }
  load();
  timer = setInterval(load, 30000);
  return { unmount() { stopped = true; clearInterval(timer); } };
}

// ---------------------------------------------------------------- SLO page

function budgetBar(left) {
  if (left === null || left === undefined) return h('span', { class: 'muted' }, none());
  const w = Math.max(0, Math.min(1, left));
  const kind = left <= 0 ? 'over' : left < 0.25 ? 'low' : 'ok';
  return h('span', { class: 'budget' },
    h('span', { class: `budget-bar budget-${kind}`, role: 'img', i18nAria: ['slo.budgetAria', { pct: pct(left, 0) }] },
      h('span', { class: 'budget-fill', style: `width:${Math.round(w * 100)}%` })),
    left < 0 ? h('span', { class: 'small slo-overspent', i18n: ['slo.overspent', { times: (1 - left).toFixed(1) }] })
      : h('span', { class: 'num small' }, pct(left, 0)));
}

function sloView(container, ctx) {
  let stopped = false;
  const body = h('div', { class: 'slo-body', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' }, h('div', {},
      h('h1', { i18n: 'slo.title' }), h('p', { class: 'muted', i18n: 'slo.subtitle' }))),
    body);
  const fmt = (o, v) => (o.unit === 'seconds' ? secs(v) : pct(v));
  const targetText = (o) => (o.unit === 'seconds' ? `≤ ${secs(o.target)}` : `≥ ${pct(o.target)}`);

  function targetsForm(rep) {
    const inputs = rep.objectives.map((o) => {
      const input = h('input', {
        id: `slo-t-${o.indicator}`, type: 'number', step: o.unit === 'seconds' ? '1' : '0.01',
        min: o.unit === 'seconds' ? '1' : '50', max: o.unit === 'seconds' ? '3600' : '99.999',
        value: o.unit === 'seconds' ? String(o.target) : String(+(o.target * 100).toFixed(3)),
      });
      return [o, input];
    });
    const period = h('input', { id: 'slo-period', type: 'number', min: '1', max: '366', step: '1', value: String(rep.period_days) });
    const form = h('form', { class: 'card pad', id: 'slo-targets' },
      h('h2', { i18n: 'slo.targets' }),
      h('div', { class: 'form-grid' },
        inputs.map(([o, input]) => h('div', { class: 'field' },
          h('label', { for: input.id, i18n: o.unit === 'seconds' ? ['slo.targetSeconds', { name: t(`slo.ind.${o.indicator}`) }] : ['slo.targetPct', { name: t(`slo.ind.${o.indicator}`) }] }), input)),
        h('div', { class: 'field' }, h('label', { for: 'slo-period', i18n: 'slo.periodDays' }), period)),
      h('button', { type: 'submit', class: 'btn primary', id: 'slo-save', i18n: 'common.save' }));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const targets = {};
      for (const [o, input] of inputs) targets[o.indicator] = o.unit === 'seconds' ? Number(input.value) : Number(input.value) / 100;
      try {
        await api('PUT', '/api/slo/targets', { period_days: Number(period.value), targets });
        toast(t('slo.saved'), 'success');
        load();
      } catch (err) { toastError(err); }
    });
    return form;
  }

  async function load() {
    let rep;
    try { rep = await get('/api/slo'); } catch (err) { if (!stopped) toastError(err); return; }
    if (stopped) return;
    body.removeAttribute('aria-busy');
    const f = rep.figures;
    const nodeName = Object.fromEntries(f.nodes.map((n) => [n.node_id, n.name]));
    const tiles = [
      ['slo.fig.starts', String(f.starts.attempts)],
      ['slo.fig.startSuccess', pct(f.starts.success_rate)],
      ['slo.fig.running', `${secs(f.starts.running_p50_seconds)} · ${secs(f.starts.running_p95_seconds)}`],
      ['slo.fig.firstFrame', `${secs(f.starts.first_frame_p50_seconds)} · ${secs(f.starts.first_frame_p95_seconds)}`],
      ['slo.fig.consoles', String(f.consoles.attempts)],
      ['slo.fig.consoleErrors', String(f.consoles.errors)],
      ['slo.fig.sessionMinutes', f.consoles.session_minutes.toFixed(1)],
      ['slo.fig.peakConsoles', String(f.consoles.peak_concurrent)],
      ['slo.fig.peakVms', String(f.peak_concurrent_vms)],
      ['slo.fig.availability', pct(f.availability.overall.ratio)],
    ];
    const emptyRow = (cols) => h('tr', {}, h('td', { colspan: String(cols), class: 'muted', i18n: 'slo.noData' }));
    const availRows = (map, nameOf) => (Object.keys(map).length === 0 ? emptyRow(4) : Object.entries(map).map(([id, a]) => h('tr', {},
      h('td', {}, nameOf(id)), h('td', { class: 'num' }, a.wanted_minutes.toFixed(1)),
      h('td', { class: 'num' }, a.unusable_minutes.toFixed(1)), h('td', { class: 'num' }, pct(a.ratio)))));
    const section = (titleKey, table) => h('section', { class: 'card pad' }, h('h2', { i18n: titleKey }), h('div', { class: 'table-wrap', tabindex: '0', role: 'region', i18nAria: titleKey }, table));
    const availHead = (k) => h('thead', {}, h('tr', {}, [k, 'slo.col.wanted', 'slo.col.unusable', 'slo.col.availability'].map((c) => h('th', { scope: 'col', i18n: c }))));
    replace(body,
      h('p', { class: 'muted small', id: 'slo-range', i18n: ['slo.range', { from: absoluteTime(rep.from), to: absoluteTime(rep.to), days: rep.period_days }] }),
      h('section', { class: 'card table-wrap slo-objectives-card', tabindex: '0', i18nAria: 'slo.objectives' }, h('table', { class: 'data slo-objectives', id: 'slo-objectives' },
        h('thead', {}, h('tr', {}, ['slo.col.indicator', 'slo.col.target', 'slo.col.actual', 'slo.col.budget', 'slo.col.burn', 'slo.col.burn6h', 'slo.col.met'].map((k) => h('th', { scope: 'col', i18n: k })))),
        h('tbody', {}, rep.objectives.map((o) => h('tr', { dataset: { indicator: o.indicator } },
          h('td', { i18n: `slo.ind.${o.indicator}` }),
          h('td', { class: 'num' }, targetText(o)),
          h('td', { class: 'num slo-actual' }, fmt(o, o.actual)),
          h('td', {}, budgetBar(o.budget_left)),
          h('td', { class: 'num slo-burn-1h' }, burnText(o.burn_rate_1h)),
          h('td', { class: 'num slo-burn-6h' }, burnText(o.burn_rate_6h)),
          h('td', {}, o.met === null ? h('span', { class: 'muted', i18n: 'slo.noData' })
            : h('span', { class: `badge ${o.met ? 'level-green slo-met' : 'level-red slo-missed'}` },
              h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { i18n: o.met ? 'slo.met' : 'slo.missed' })))))))),
      h('div', { class: 'stat-tiles' }, tiles.map(([k, v]) => h('div', { class: 'card stat-tile' }, h('span', { class: 'muted small', i18n: k }), h('strong', {}, v)))),
      h('div', { class: 'grid-2' },
        section('slo.byCourse', h('table', { class: 'data', id: 'slo-by-course' },
          availHead('slo.col.course'), h('tbody', {}, availRows(f.availability.per_course, (id) => rep.courses[id] || id)))),
        section('slo.byNode', h('table', { class: 'data', id: 'slo-by-node' },
          availHead('slo.col.node'), h('tbody', {}, availRows(f.availability.per_node, (id) => nodeName[id] || id))))),
      section('slo.nodes', h('table', { class: 'data', id: 'slo-nodes' },
        h('thead', {}, h('tr', {}, ['slo.col.node', 'slo.col.down', 'slo.col.availability'].map((c) => h('th', { scope: 'col', i18n: c })))),
        h('tbody', {}, f.nodes.length === 0 ? emptyRow(3) : f.nodes.map((n) => h('tr', {}, h('td', {}, n.name), h('td', { class: 'num' }, n.down_minutes.toFixed(1)), h('td', { class: 'num' }, pct(n.availability))))))),
      provisioningSection(rep, emptyRow),
      rep.capacity.length === 0 ? null : section('slo.capacity', h('table', { class: 'data', id: 'slo-capacity' },
        h('thead', {}, h('tr', {}, ['slo.col.store', 'slo.col.used', 'slo.col.daysFull'].map((c) => h('th', { scope: 'col', i18n: c })))),
        h('tbody', {}, rep.capacity.map((c) => h('tr', { dataset: { kind: c.kind } },
          h('td', { i18n: c.kind === 'layer_storage' ? 'slo.layerStorage' : ['slo.storeOf', { node: c.name }] }),
          h('td', { class: 'num' }, c.used_percent === null ? none() : `${c.used_percent.toFixed(1)} %`),
          h('td', { class: 'num slo-days-full' }, c.days_until_full === null ? h('span', { class: 'muted', i18n: 'slo.noTrend' })
            : t('slo.days', { days: c.days_until_full.toFixed(1) }))))))),
      ctx.me.role === 'admin' ? targetsForm(rep) : null,
      h('p', { class: 'muted small', i18n: ['slo.definitions', { minutes: rep.wanted_window_minutes }] }));
  }
  load();
  // Numbers with units (targets, seconds) are formatted per language.
  const off = onLangChange(() => load());
  return { unmount() { stopped = true; off(); } };
}
