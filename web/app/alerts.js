// Alerts at levels and the daily inspection (巡检), for staff and admins:
// the alert list (level colours, acknowledge, history), the rules editor
// (admins edit, staff read) and the inspection checklist with its history
// and a run-now button.
//
// Server text (subjects, details) is rendered with textContent through h().

import { t, has, lang } from './i18n.js';
import { h, replace, toast, toastError, formatNumber } from './ui.js';
import { api, get, post } from './api.js';

export function mount(container, params, ctx) {
  switch (ctx.kind) {
    case 'rules': return rulesView(container, ctx);
    case 'inspections': return inspectionsView(container, params[0], ctx);
    default: return alertsView(container, ctx);
  }
}

const when = (iso) => (iso ? new Date(iso).toLocaleString(lang()) : '');
/** The rule's name in the UI's language; an admin's own rule by its id. */
const ruleName = (id) => (has(`alerts.rule.${id}`) ? t(`alerts.rule.${id}`) : id);

/** Fixed subjects the server names in English, in the UI's language. */
const SUBJECTS = {
  site: 'alerts.subject.site',
  templates: 'insp.subject.templates',
  database: 'insp.subject.database',
  'data dir': 'insp.subject.dataDir',
  'personal layers': 'insp.subject.layers',
  'desk screenshots': 'insp.subject.screenshots',
  nodes: 'insp.subject.nodes',
};
function subjectText(subject) {
  if (SUBJECTS[subject]) return h('span', { i18n: SUBJECTS[subject] });
  // The SLO burn rule's subject is the objective's indicator.
  if (has(`slo.ind.${subject}`)) return h('span', { i18n: `slo.ind.${subject}` });
  const store = /^store of (.+)$/.exec(subject);
  if (store) return h('span', { i18n: ['insp.subject.store', { node: store[1] }] });
  return subject;
}

// A measured clock skew in the reader's language (the English detail,
// which the server words from the same figures, stays as the tooltip).
function clockText(it) {
  const { skew_ms: skew, uncertainty_ms: unc } = it.clock;
  const secs = (ms) => formatNumber(Math.abs(ms) / 1000, 3);
  const key = skew > 0 ? 'insp.clock.ahead' : skew < 0 ? 'insp.clock.behind' : 'insp.clock.same';
  const verdict = it.status === 'ok' ? null : h('span', { i18n: `insp.clock.${it.status}` });
  return h('span', { class: 'insp-clock', title: it.detail },
    h('span', { i18n: [key, { s: secs(skew), u: secs(unc) }] }), verdict ? ['; ', verdict] : null);
}

function levelBadge(level) {
  return h('span', { class: `badge alert-level level-${level}`, dataset: { level }, i18n: `alerts.level.${level}` });
}

function statusBadge(status) {
  return h('span', { class: `badge alert-status as-${status}`, dataset: { status }, i18n: `alerts.status.${status}` });
}

function head(titleKey, subtitleKey, ...actions) {
  return h('div', { class: 'page-head' },
    h('div', {}, h('h1', { i18n: titleKey }), h('p', { class: 'muted', i18n: subtitleKey })),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null);
}

// ---------------------------------------------------------------- alerts

function alertsView(container, ctx) {
  let stopped = false;
  const state = h('select', { id: 'al-status' },
    ['', 'open', 'resolved', 'all'].map((s) => h('option', { value: s, i18n: `alerts.filter.${s || 'default'}` })));
  const body = h('div', { class: 'alerts-body', 'aria-busy': 'true' });
  replace(container,
    head('alerts.title', 'alerts.subtitle',
      h('a', { class: 'btn ghost', href: '#/alert-rules', id: 'al-rules', i18n: 'alerts.rules.link' }),
      h('a', { class: 'btn ghost', href: '#/inspections', id: 'al-inspections', i18n: 'nav.inspections' })),
    h('div', { class: 'card pad' }, h('div', { class: 'field' }, h('label', { for: 'al-status', i18n: 'alerts.filter.label' }), state)),
    body);
  async function ack(a, btn) {
    btn.disabled = true;
    try {
      await post(`/api/alerts/${a.id}/ack`);
      toast(t('alerts.acked'), 'success');
      await load();
    } catch (err) { toastError(err); btn.disabled = false; }
  }
  function row(a) {
    const history = h('details', { class: 'alert-history' }, h('summary', { i18n: 'alerts.history' }),
      h('ol', {}, a.transitions.map((x) => h('li', { dataset: { kind: x.kind } },
        h('span', { class: 'muted' }, when(x.at)), ' ',
        h('span', { i18n: `alerts.tr.${x.kind}` }),
        x.level ? [' ', levelBadge(x.level)] : null,
        x.detail ? [' ', h('span', {}, x.detail)] : null))));
    const ackBtn = a.state === 'firing'
      ? h('button', { type: 'button', class: 'btn small primary ack', i18n: 'alerts.ack' })
      : null;
    if (ackBtn) ackBtn.addEventListener('click', () => ack(a, ackBtn));
    return h('tr', { class: `alert-row level-${a.level}`, dataset: { id: a.id, rule: a.rule, status: a.state } },
      h('td', {}, levelBadge(a.level)),
      h('td', {}, h('strong', {}, ruleName(a.rule)), h('div', { class: 'muted small' }, subjectText(a.subject_name)),
        a.cause ? h('div', { class: 'muted small', i18n: `alerts.cause.${a.cause}` }) : null, history),
      h('td', { class: 'num' }, a.value === null ? '' : formatNumber(a.value, 1)),
      h('td', {}, statusBadge(a.state), a.flapping ? h('div', { class: 'muted small', i18n: 'alerts.flapping' }) : null,
        a.acknowledged_by ? h('div', { class: 'muted small' }, t('alerts.ackedBy', { who: a.acknowledged_by })) : null),
      h('td', {}, when(a.started_at)),
      h('td', {}, a.ticket_id ? h('a', { href: `#/tickets/${a.ticket_id}`, i18n: 'alerts.ticket' }) : null),
      h('td', {}, ackBtn));
  }
  async function load() {
    const q = state.value ? `?state=${state.value}` : '';
    let list;
    try { list = await get(`/api/alerts${q}`); } catch (err) { if (!stopped) toastError(err); return; }
    if (stopped) return;
    body.removeAttribute('aria-busy');
    if (!list.length) { replace(body, h('div', { class: 'card pad empty', id: 'alerts-empty', i18n: 'alerts.none' })); return; }
    replace(body, h('div', { class: 'card table-wrap' }, h('table', { class: 'data', id: 'alerts-table' },
      h('thead', {}, h('tr', {}, ['level', 'rule', 'value', 'status', 'fired', 'ticket', 'actions']
        .map((c) => h('th', { i18n: `alerts.col.${c}` })))),
      h('tbody', {}, list.map(row)))));
  }
  state.addEventListener('change', load);
  load();
  const timer = setInterval(load, 30000);
  return { unmount() { stopped = true; clearInterval(timer); } };
}

// ---------------------------------------------------------------- rules

const NUM = (id, value, disabled, step = 'any') =>
  h('input', { id, type: 'number', step, value: value ?? '', disabled, class: 'num-input' });

function rulesView(container, ctx) {
  const admin = ctx.me.role === 'admin';
  const body = h('div', { 'aria-busy': 'true' });
  replace(container, head('alerts.rules.title', admin ? 'alerts.rules.subtitle' : 'alerts.rules.readonly',
    h('a', { class: 'btn ghost', href: '#/alerts', i18n: 'alerts.back' })), body);
  let set;
  const num = (v) => (v === '' ? undefined : Number(v));
  function ruleCard(r, i) {
    const p = `r${i}`;
    const f = (key, input) => h('div', { class: 'field' }, h('label', { for: input.id, i18n: `alerts.rules.${key}` }), input);
    const parts = [];
    const enabled = h('input', { id: `${p}-enabled`, type: 'checkbox', disabled: !admin });
    enabled.checked = r.enabled !== false;
    parts.push(h('label', { class: 'check' }, enabled, h('span', { i18n: 'alerts.rules.enabled' })));
    const th = r.threshold;
    if (th) {
      parts.push(h('div', { class: 'form-grid' },
        f('info', NUM(`${p}-info`, th.info, !admin)), f('warning', NUM(`${p}-warning`, th.warning, !admin)),
        f('critical', NUM(`${p}-critical`, th.critical, !admin)), f('hysteresis', NUM(`${p}-hyst`, th.hysteresis, !admin))));
    }
    if (r.deviation) {
      parts.push(h('div', { class: 'form-grid' },
        f('kWarning', NUM(`${p}-kw`, r.deviation.k_warning, !admin)), f('kCritical', NUM(`${p}-kc`, r.deviation.k_critical, !admin)),
        f('weeks', NUM(`${p}-weeks`, r.deviation.spec?.weeks, !admin, 1))));
    }
    if (r.forecast) {
      parts.push(h('div', { class: 'form-grid' },
        f('forecastWarning', NUM(`${p}-fw`, r.forecast.warning_days, !admin)),
        f('forecastCritical', NUM(`${p}-fc`, r.forecast.critical_days, !admin))));
    }
    parts.push(h('div', { class: 'form-grid' },
      f('hold', NUM(`${p}-hold`, r.policy?.hold_secs, !admin, 1)), f('clear', NUM(`${p}-clear`, r.policy?.clear_secs, !admin, 1))));
    return h('section', { class: 'card pad alert-rule', dataset: { rule: r.id } },
      h('h2', {}, ruleName(r.id), ' ', h('span', { class: 'muted small' }, r.id)), parts);
  }
  function collect() {
    const v = (id) => container.querySelector(`#${id}`)?.value ?? '';
    return {
      rules: set.rules.map((r, i) => {
        const p = `r${i}`;
        const out = structuredClone(r);
        out.enabled = container.querySelector(`#${p}-enabled`).checked;
        if (out.threshold) {
          for (const [k, id] of [['info', 'info'], ['warning', 'warning'], ['critical', 'critical']]) {
            const x = num(v(`${p}-${id}`));
            if (x === undefined) delete out.threshold[k]; else out.threshold[k] = x;
          }
          out.threshold.hysteresis = num(v(`${p}-hyst`)) ?? 0;
        }
        if (out.deviation) {
          out.deviation.k_warning = num(v(`${p}-kw`));
          out.deviation.k_critical = num(v(`${p}-kc`));
          const weeks = num(v(`${p}-weeks`));
          out.deviation.spec = { ...out.deviation.spec, weeks, min_weeks: Math.min(out.deviation.spec?.min_weeks ?? 1, weeks) };
        }
        if (out.forecast) {
          out.forecast.warning_days = num(v(`${p}-fw`));
          out.forecast.critical_days = num(v(`${p}-fc`));
        }
        out.policy = { ...out.policy, hold_secs: num(v(`${p}-hold`)), clear_secs: num(v(`${p}-clear`)) };
        return out;
      }),
    };
  }
  async function load() {
    try { set = await get('/api/alerts/rules'); } catch (err) { toastError(err); return; }
    body.removeAttribute('aria-busy');
    const save = admin ? h('button', { type: 'button', class: 'btn primary', id: 'rules-save', i18n: 'alerts.rules.save' }) : null;
    if (save) {
      save.addEventListener('click', async () => {
        save.disabled = true;
        try {
          set = await api('PUT', '/api/alerts/rules', collect());
          toast(t('alerts.rules.saved'), 'success');
        } catch (err) { toastError(err); } finally { save.disabled = false; }
      });
    }
    replace(body, set.rules.map(ruleCard), save ? h('div', { class: 'form-actions' }, save) : null);
  }
  load();
  return { unmount() {} };
}

// ---------------------------------------------------------------- inspections

function inspectionsView(container, id) {
  let stopped = false;
  const run = h('button', { type: 'button', class: 'btn primary', id: 'insp-run', i18n: 'insp.run' });
  const current = h('div', { id: 'insp-current' });
  const history = h('div', { id: 'insp-history', 'aria-busy': 'true' });
  replace(container, head('insp.title', 'insp.subtitle', h('a', { class: 'btn ghost', href: '#/alerts', i18n: 'alerts.back' }), run), current,
    h('h2', { i18n: 'insp.history' }), history);
  function show(insp) {
    replace(current, h('section', { class: 'card pad inspection', dataset: { id: insp.id, failed: String(insp.failed) } },
      h('p', {}, t(insp.failed ? 'insp.summaryFailed' : 'insp.summaryOk', { n: insp.failed, when: when(insp.at) }),
        ' · ', h('span', { i18n: `insp.trigger.${insp.trigger}` }), insp.full ? [' · ', h('span', { i18n: 'insp.full' })] : null),
      h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'insp-items' },
        h('thead', {}, h('tr', {}, ['check', 'subject', 'status', 'detail', 'ticket'].map((c) => h('th', { i18n: `insp.col.${c}` })))),
        h('tbody', {}, insp.checks.map((it) => h('tr', { class: `insp-item is-${it.status}`, dataset: { check: it.name, status: it.status } },
          h('td', { i18n: `insp.check.${it.name}` }),
          h('td', {}, subjectText(it.subject)),
          h('td', {}, h('span', { class: `badge insp-status is-${it.status}`, i18n: `insp.status.${it.status}` })),
          h('td', { class: 'small' }, it.clock ? clockText(it) : it.detail),
          h('td', {}, it.ticket_id ? h('a', { href: `#/tickets/${it.ticket_id}`, i18n: 'alerts.ticket' }) : null))))))));
  }
  async function open(iid) {
    try { const insp = await get(`/api/inspections/${iid}`); if (!stopped) show(insp); } catch (err) { toastError(err); }
  }
  async function loadHistory(openFirst) {
    let list;
    try { list = await get('/api/inspections'); } catch (err) { if (!stopped) toastError(err); return; }
    if (stopped) return;
    history.removeAttribute('aria-busy');
    if (!list.length) {
      replace(history, h('div', { class: 'card pad empty', i18n: 'insp.none' }));
      replace(current, null);
      return;
    }
    replace(history, h('div', { class: 'card table-wrap' }, h('table', { class: 'data', id: 'insp-list' },
      h('tbody', {}, list.map((s) => {
        const link = h('a', { href: `#/inspections/${s.id}` }, when(s.at));
        return h('tr', { dataset: { id: s.id } }, h('td', {}, link),
          h('td', { i18n: `insp.trigger.${s.trigger}` }),
          h('td', {}, s.requested_by || ''),
          h('td', {}, t(s.failed ? 'insp.failedCount' : 'insp.allOk', { n: s.failed, total: s.check_count })));
      })))));
    if (openFirst) open(list[0].id);
  }
  run.addEventListener('click', async () => {
    run.disabled = true;
    try {
      const insp = await post('/api/inspections', { full: true });
      show(insp);
      toast(t('insp.done'), insp.failed ? 'error' : 'success');
      await loadHistory(false);
    } catch (err) { toastError(err); } finally { run.disabled = false; }
  });
  if (id) open(id);
  loadHistory(!id);
  return { unmount() { stopped = true; } };
}
