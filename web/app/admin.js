// Admin views: the cluster overview with load charts and the event log
// (#/nodes), one node with its VMs and events (#/nodes/<id>), every VM of the cluster (#/vms: filter, CPU and
// memory, a VM's load chart, force off, migrate) and user management
// (#/users: search and pages, create, CSV import, role, disable, password
// reset with a forced change at the next sign-in — each change asks first).

import { t, bind, onLangChange } from './i18n.js';
import { h, icon, button, replace, formatBytes, formatMib, formatNumber, relativeTime, absoluteTime, toast, toastError, confirmDialog, errorText } from './ui.js';
import { get, post, api } from './api.js';
import { align, chartRow } from './charts.js';
import { stateBadge, runAction, allowed, STATES } from './vmcontrols.js';
import { limitsCard } from './usage.js';
import { directorySyncCard } from './dirsync.js';

const POLL_MS = 5000;
const RANGES = [['60', 'nodes.range.1h'], ['1440', 'nodes.range.24h'], ['10080', 'nodes.range.7d']];

export function mount(container, params, ctx) {
  if (ctx.kind === 'users') return users(container, ctx.me);
  if (ctx.kind === 'vms') return clusterVms(container, {});
  if (ctx.kind === 'node') return nodeDetail(container, params[0]);
  return nodes(container);
}

// ---------------------------------------------------------------- nodes

function meter(pct, label) {
  const p = Math.max(0, Math.min(100, Number(pct) || 0));
  return h('div', { class: `meter${p >= 85 ? ' hot' : ''}`, role: 'img', 'aria-label': label || `${Math.round(p)}%` }, h('span', { style: `width:${p}%` }));
}

function nodeBadge(state) {
  return h('span', { class: `badge state-${state}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { i18n: `nodes.state.${state}` }));
}

/** A polling loop that pauses while the tab is hidden; returns stop(). */
function poller(fn, ms = POLL_MS) {
  let stopped = false;
  let timer = null;
  async function tick() {
    if (stopped) return;
    if (document.visibilityState === 'visible') {
      try { await fn(); } catch (err) { if (!stopped && err.status !== 401 && err.code !== 'network') toastError(err); }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

/** Three charts (CPU %, memory %, VMs) over a selectable range, one line per node. */
function loadCharts(fetchHistory) {
  let range = localStorage.getItem('pvce.range') || '60';
  if (!RANGES.some(([r]) => r === range)) range = '60';
  const tabs = h('div', { class: 'segmented', role: 'group', i18nAria: 'nodes.range.aria' },
    RANGES.map(([r, key]) => {
      const b = h('button', { type: 'button', class: 'seg', dataset: { range: r }, i18n: key });
      b.setAttribute('aria-pressed', String(r === range));
      b.addEventListener('click', () => {
        range = r;
        localStorage.setItem('pvce.range', r);
        for (const x of tabs.querySelectorAll('.seg')) x.setAttribute('aria-pressed', String(x.dataset.range === r));
        refresh().catch(toastError);
      });
      return b;
    }));
  const boxes = ['cpu', 'mem', 'vms'].map((k) => h('div', { class: 'chart', dataset: { chart: k } }));
  const empty = h('p', { class: 'muted empty-small', i18n: 'nodes.noSamples', hidden: true });
  const el = h('section', { class: 'card section charts-card' },
    h('div', { class: 'section-head' }, h('h2', { i18n: 'nodes.charts' }), tabs),
    empty,
    h('div', { class: 'charts' }, boxes));
  const row = chartRow(boxes);
  let lastNodes = [];

  function draw(list) {
    lastNodes = list;
    const withData = list.filter((n) => n.samples.length > 0);
    empty.hidden = withData.length > 0;
    const names = withData.map((n) => n.name);
    const data = [
      align(withData, (s) => s.cpu_percent),
      align(withData, (s) => (s.mem_total_mib ? (100 * s.mem_used_mib) / s.mem_total_mib : null)),
      align(withData, (s) => s.vms_running),
    ];
    const spanSeconds = () => Number(range) * 60;
    row.draw(`${names.join('|')}#${document.documentElement.lang}`, data, () => (withData.length ? [
      { title: t('nodes.chart.cpu'), unit: '%', max: 100, names, spanSeconds },
      { title: t('nodes.chart.mem'), unit: '%', max: 100, names, spanSeconds },
      { title: t('nodes.chart.vms'), unit: '', names, spanSeconds },
    ] : null));
  }
  async function refresh() {
    draw(await fetchHistory(Number(range)));
  }
  const offLang = onLangChange(() => { row.reset(); draw(lastNodes); });
  return { el, refresh, destroy() { offLang(); row.destroy(); } };
}

function maintenanceToggle(n, after) {
  const inMaint = Boolean(n.maintenance) || n.state === 'maintenance';
  const toggle = button({ label: inMaint ? 'nodes.maintenance.off' : 'nodes.maintenance.on', kind: 'small nowrap', aria: [inMaint ? 'nodes.maintenance.offAria' : 'nodes.maintenance.onAria', { name: n.name }] });
  toggle.setAttribute('aria-pressed', String(inMaint));
  toggle.addEventListener('click', async () => {
    toggle.classList.add('busy');
    try {
      await post(`/api/nodes/${encodeURIComponent(n.id)}/maintenance`, { enabled: !inMaint });
      await after();
    } catch (err) { toastError(err); toggle.classList.remove('busy'); }
  });
  return toggle;
}

// Drain: maintenance plus live-migrating the node's running VMs elsewhere.
// Refused up front, with the reason, when no other node could take them.
function drainButton(n, after, others) {
  const b = button({ label: 'nodes.drain', kind: 'small nowrap', aria: ['nodes.drain.aria', { name: n.name }] });
  b.addEventListener('click', async () => {
    if (others === 0) { toast(t('nodes.drain.nowhere', { name: n.name }), 'error'); return; }
    const ok = await confirmDialog({ title: ['nodes.drain.title', { name: n.name }], body: 'nodes.drain.body', confirm: 'nodes.drain' });
    if (!ok) return;
    b.classList.add('busy');
    try {
      await post(`/api/nodes/${encodeURIComponent(n.id)}/maintenance`, { enabled: true, drain: true });
      toast(t('nodes.drain.started', { name: n.name }), 'success');
      await after();
    } catch (err) { toastError(err); b.classList.remove('busy'); }
  });
  return b;
}

// Fencing: the admin confirms a down node is really powered off, so its VMs
// may start elsewhere (their disks must never be open on two hosts).
function fenceButton(n, after) {
  const b = button({ label: 'nodes.fence', kind: 'small danger-text nowrap', aria: ['nodes.fence.aria', { name: n.name }] });
  b.addEventListener('click', async () => {
    const ok = await confirmDialog({ title: ['nodes.fence.title', { name: n.name }], body: 'nodes.fence.body', confirm: 'nodes.fence', danger: true });
    if (!ok) return;
    b.classList.add('busy');
    try {
      await post(`/api/nodes/${encodeURIComponent(n.id)}/fence`, { confirm_powered_off: true });
      toast(t('nodes.fence.done', { name: n.name }), 'success');
      await after();
    } catch (err) { toastError(err); b.classList.remove('busy'); }
  });
  return b;
}

/**
 * One node's card. A down node shows no figures (they would be its last
 * ones, not its current ones) but why it is down, as libvirt said it.
 * `others`: how many other nodes could take its VMs (for Drain).
 */
function nodeCard(n, after, others = 1) {
  const down = n.state === 'down';
  const memPct = n.mem_total_mib ? (100 * n.mem_used_mib) / n.mem_total_mib : 0;
  const storeTotal = (n.template_store_used_bytes || 0) + (n.template_store_free_bytes || 0);
  const storePct = storeTotal ? (100 * n.template_store_used_bytes) / storeTotal : 0;
  const cpu = Math.round(n.cpu_percent || 0);
  const stat = (key, value, m) => h('div', {}, h('dt', { i18n: key }),
    h('dd', { class: 'num' }, down ? h('span', { class: 'muted', i18n: 'nodes.unknownNow' }) : value, down ? null : m));
  return h('article', { class: `card node-card node-${n.state}`, dataset: { nodeId: n.id } },
    h('div', { class: 'node-card-head' },
      h('div', {},
        h('h2', { class: 'node-name' }, h('a', { href: `#/nodes/${encodeURIComponent(n.id)}` }, n.name)),
        h('div', { class: 'tree-meta' }, h('code', {}, n.uri))),
      nodeBadge(n.state)),
    down && n.last_error ? h('p', { class: 'vm-error node-error' }, h('span', { i18n: 'nodes.downReason' }), ' ', h('code', {}, n.last_error)) : null,
    h('dl', { class: 'node-stats' },
      stat('nodes.col.cpu', `${formatNumber(cpu)}% · ${n.cpus || '?'} vCPU`, meter(n.cpu_percent, `CPU ${cpu}%`)),
      stat('nodes.col.mem', `${formatMib(n.mem_used_mib || 0)} / ${formatMib(n.mem_total_mib || 0)}`, meter(memPct)),
      stat('nodes.col.vms', formatNumber(n.vms_running ?? 0)),
      stat('nodes.col.store', [formatBytes(n.template_store_used_bytes || 0), ' · ', h('span', { i18n: ['nodes.free', { size: formatBytes(n.template_store_free_bytes || 0) }] })],
        meter(storePct))),
    h('div', { class: 'node-card-foot' },
      h('span', { class: 'muted small', title: absoluteTime(n.last_seen) }, h('span', { i18n: 'nodes.col.seen' }), ': ', relativeTime(n.last_seen),
        n.failures_7d > 0 ? h('span', { class: 'chip warn failures', i18n: ['nodes.failures', { n: n.failures_7d }] }) : null),
      h('span', { class: 'row-actions' },
        h('a', { class: 'btn small', href: `#/nodes/${encodeURIComponent(n.id)}`, i18n: 'nodes.details' }),
        n.state === 'down' ? fenceButton(n, after) : null,
        n.state === 'up' && (n.vms_running || 0) > 0 ? drainButton(n, after, others) : null,
        maintenanceToggle(n, after))));
}

// Transports the form offers, in this order; only those the server accepts
// (GET /api/cluster node_transports: tcp and test need start-up flags).
const FORM_TRANSPORTS = ['tls', 'ssh', 'tcp', 'test'];
const DEFAULT_PORTS = { tls: '16514', ssh: '22', tcp: '16509' };

/**
 * Registering a node: how to reach its libvirtd (transport, host, port, and
 * the ssh user) and the management address its consoles listen on. The
 * server builds the libvirt URI from these fields and checks them (no free
 * URI: its parameters could name programs to run); its refusal is shown as
 * it is. The node starts "down" until libvirt answers.
 * Returns the form and `setTransports(list)` for the server's list.
 */
function addNodeForm(after) {
  const name = h('input', { id: 'an-name', required: true, maxlength: 64, pattern: '[A-Za-z0-9._\\-]+', autocomplete: 'off', autocapitalize: 'none' });
  const transport = h('select', { id: 'an-transport' });
  const host = h('input', { id: 'an-host', maxlength: 253, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: 'lab-07.example.edu' });
  const port = h('input', { id: 'an-port', type: 'number', min: 1, max: 65535, step: 1, inputmode: 'numeric' });
  const user = h('input', { id: 'an-user', maxlength: 32, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: 'root' });
  const consoleAddr = h('input', { id: 'an-console', maxlength: 45, autocomplete: 'off', placeholder: '127.0.0.1' });
  const vtep = h('input', { id: 'an-vtep', maxlength: 15, autocomplete: 'off', spellcheck: 'false', placeholder: '10.0.0.7' });
  const help = h('p', { class: 'muted small', id: 'an-help' });
  const hostField = h('div', { class: 'field' }, h('label', { for: 'an-host', i18n: 'nodes.add.host' }), host);
  const portField = h('div', { class: 'field' }, h('label', { for: 'an-port', i18n: 'nodes.add.port' }), port);
  const userField = h('div', { class: 'field' }, h('label', { for: 'an-user', i18n: 'nodes.add.user' }), user);
  const submit = h('button', { type: 'submit', class: 'btn primary', i18n: 'nodes.add.submit' });
  // Only the fields the chosen transport uses are shown and sent.
  function sync() {
    const tr = transport.value;
    const remote = tr !== 'test';
    hostField.hidden = !remote;
    portField.hidden = !remote;
    userField.hidden = tr !== 'ssh';
    host.required = remote;
    port.placeholder = DEFAULT_PORTS[tr] || '';
    bind(help, `nodes.add.help.${tr}`);
  }
  function setTransports(list) {
    const keep = transport.value;
    replace(transport, FORM_TRANSPORTS.filter((x) => list.includes(x))
      .map((x) => h('option', { value: x, i18n: `nodes.add.transport.${x}` })));
    if (list.includes(keep)) transport.value = keep;
    sync();
  }
  transport.addEventListener('change', sync);
  setTransports(['tls', 'ssh']);
  const form = h('form', { class: 'section-body', novalidate: true },
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'an-name', i18n: 'nodes.add.name' }), name),
      h('div', { class: 'field' }, h('label', { for: 'an-console', i18n: 'nodes.add.console' }), consoleAddr,
        h('p', { class: 'muted small', i18n: 'nodes.add.consoleHelp' })),
      h('div', { class: 'field' }, h('label', { for: 'an-vtep', i18n: 'nodes.add.vtep' }), vtep,
        h('p', { class: 'muted small', i18n: 'nodes.add.vtepHelp' }))),
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'an-transport', i18n: 'nodes.add.transport' }), transport),
      hostField, portField, userField),
    help,
    h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!form.reportValidity()) return;
    submit.disabled = true;
    submit.classList.add('busy');
    try {
      const tr = transport.value;
      const body = { name: name.value.trim(), transport: tr };
      if (tr !== 'test') {
        body.host = host.value.trim();
        if (port.value.trim()) body.port = Number(port.value);
        if (tr === 'ssh' && user.value.trim()) body.user = user.value.trim();
      }
      if (consoleAddr.value.trim()) body.console_address = consoleAddr.value.trim();
      if (vtep.value.trim()) body.vtep_address = vtep.value.trim();
      const n = await post('/api/nodes', body);
      toast(t('nodes.added', { name: n.name }), 'success');
      form.reset();
      sync();
      await after();
    } catch (err) { toastError(err); } finally { submit.disabled = false; submit.classList.remove('busy'); }
  });
  const el = h('details', { class: 'card section add-node', id: 'add-node' },
    h('summary', { class: 'section-head' }, h('h2', { i18n: 'nodes.add' })),
    form);
  return { el, setTransports };
}

// Kinds that report a fault, shown in the warning colour.
const FAULTS = new Set(['node_down', 'node_fenced', 'vm_migration_failed', 'vm_start_failed']);

/** The cluster's event log (all nodes, or one), newest first. */
function eventsCard(nodeId = '') {
  const list = h('ol', { class: 'events', id: 'events' });
  const empty = h('p', { class: 'muted empty-small', i18n: 'events.empty', hidden: true });
  const el = h('section', { class: 'card section' },
    h('div', { class: 'section-head' }, h('h2', { i18n: 'events.title' })),
    h('div', { class: 'section-body' }, empty, list));
  let last = [];
  function render(evs) {
    last = evs;
    empty.hidden = evs.length > 0;
    replace(list, evs.map((e) => h('li', { class: 'event', dataset: { kind: e.kind } },
      h('time', { datetime: e.at, title: absoluteTime(e.at) }, relativeTime(e.at)),
      h('span', { class: `chip${FAULTS.has(e.kind) ? ' warn' : ''}`, i18n: `events.kind.${e.kind}` }),
      nodeId || !e.node_name ? null : h('strong', { class: 'event-node' }, e.node_name),
      h('span', { class: 'event-msg' }, e.message),
      e.actor ? h('span', { class: 'tree-meta', i18n: ['events.by', { name: e.actor }] }) : null)));
  }
  async function refresh() {
    const q = nodeId ? `node_id=${encodeURIComponent(nodeId)}&limit=50` : 'limit=50';
    render(await get(`/api/events?${q}`));
  }
  const offLang = onLangChange(() => render(last));
  return { el, refresh, destroy: offLang };
}

function nodes(container) {
  let last = [];
  const summary = h('p', { class: 'muted' });
  // How this server places VMs (start-up settings; fetched once).
  const settings = h('p', { class: 'muted small', id: 'cluster-settings' });
  let cluster = null;
  // Plain text, re-rendered on a language change (its parts are translated too).
  const renderSettings = () => {
    if (!cluster) return;
    settings.textContent = t('cluster.settings', {
      policy: t(`cluster.policy.${cluster.placement_policy}`),
      layers: t(`cluster.layers.${cluster.layer_storage}`),
      reserve: formatMib(cluster.host_reserve_mib),
    });
    // Which pvce this is, when several share the nodes (its libvirt objects
    // carry this id): plain text, no user data.
    if (cluster.installation_id) {
      settings.textContent += ` · ${t('cluster.installation')}: ${cluster.installation_id}`;
    }
  };
  const addForm = addNodeForm(() => refresh());
  get('/api/cluster').then((c) => {
    cluster = c;
    renderSettings();
    if (c.node_transports) addForm.setTransports(c.node_transports);
  }).catch(toastError);
  const grid = h('div', { class: 'node-grid' });
  const empty = h('p', { class: 'muted empty-small', i18n: 'nodes.empty', hidden: true });
  const charts = loadCharts(async (minutes) => (await get(`/api/nodes/metrics?minutes=${minutes}`)).nodes);
  const log = eventsCard();
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'nodes.title' }), summary, settings),
      h('a', { class: 'btn', href: '#/vms' }, icon('monitor'), h('span', { i18n: 'nav.vms' }))),
    grid, empty, charts.el, log.el, addForm.el);

  function render(list) {
    last = list;
    const up = list.filter((n) => n.state !== 'down').length;
    const vms = list.reduce((a, n) => a + (n.vms_running || 0), 0);
    bind(summary, 'nodes.summary', { up, total: list.length, vms });
    empty.hidden = list.length > 0;
    const takers = (n) => list.filter((o) => o.id !== n.id && o.state === 'up').length;
    replace(grid, list.map((n) => nodeCard(n, refresh, takers(n))));
  }
  async function refresh() {
    const list = await get('/api/nodes');
    render(list);
    await Promise.all([charts.refresh(), log.refresh()]);
  }
  const offLang = onLangChange(() => { render(last); renderSettings(); });
  const stop = poller(refresh);
  return { unmount() { stop(); offLang(); charts.destroy(); log.destroy(); } };
}

function nodeDetail(container, id) {
  const head = h('div', { class: 'page-head' });
  const charts = loadCharts(async (minutes) => {
    const r = await get(`/api/nodes/${encodeURIComponent(id)}/metrics?minutes=${minutes}`);
    return [{ name: nodeName, samples: r.samples }];
  });
  let nodeName = '';
  const cardBox = h('div', { class: 'node-grid single' });
  const vmBox = h('div');
  const log = eventsCard(id);
  // The lab-network overlay: built once (the poller must not redraw an
  // input being typed in), filled from the first answer and after a save.
  const vtep = h('input', { id: 'node-vtep', maxlength: 15, autocomplete: 'off', spellcheck: 'false', placeholder: '10.0.0.7' });
  const saveVtep = h('button', { type: 'submit', class: 'btn', i18n: 'node.overlay.save' });
  const overlayForm = h('form', { class: 'card section-body', id: 'node-overlay', novalidate: true },
    h('h2', { i18n: 'node.overlay.title' }),
    h('div', { class: 'field' }, h('label', { for: 'node-vtep', i18n: 'nodes.add.vtep' }), vtep,
      h('p', { class: 'muted small', i18n: 'nodes.add.vtepHelp' })),
    h('div', { class: 'form-actions' }, saveVtep));
  let vtepLoaded = false;
  overlayForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    saveVtep.disabled = true;
    try {
      const n = await post(`/api/nodes/${encodeURIComponent(id)}/overlay`, { vtep_address: vtep.value.trim() || null });
      vtep.value = n.vtep_address || '';
      toast(t('node.overlay.saved', { name: n.name }), 'success');
    } catch (err) { toastError(err); } finally { saveVtep.disabled = false; }
  });
  replace(container,
    h('p', {}, h('a', { href: '#/nodes' }, '← ', h('span', { i18n: 'node.back' }))),
    head, cardBox, overlayForm, charts.el, vmBox, log.el);
  const table = clusterVms(vmBox, { node: id, embedded: true });
  // Removing a node: pvce forgets it (the server refuses while VMs run or
  // keep their disks there, so no student's work is orphaned).
  const remove = button({ label: 'nodes.remove', kind: 'danger-text nowrap', attrs: { id: 'remove-node' } });
  remove.addEventListener('click', async () => {
    const ok = await confirmDialog({ title: ['nodes.remove.title', { name: nodeName }], body: 'nodes.remove.body', confirm: 'nodes.remove', danger: true });
    if (!ok) return;
    remove.disabled = true;
    try {
      await api('DELETE', `/api/nodes/${encodeURIComponent(id)}`);
      toast(t('nodes.removed', { name: nodeName }), 'success');
      location.hash = '#/nodes';
    } catch (err) { toastError(err); remove.disabled = false; }
  });
  async function refresh() {
    const n = await get(`/api/nodes/${encodeURIComponent(id)}`);
    nodeName = n.name;
    bind(remove, 'nodes.remove.aria', { name: n.name }, 'aria-label');
    replace(head, h('div', {}, h('h1', {}, n.name), h('p', { class: 'muted' }, h('code', {}, n.uri))), remove);
    replace(cardBox, nodeCard(n, refresh));
    if (!vtepLoaded) { vtep.value = n.vtep_address || ''; vtepLoaded = true; }
    await Promise.all([charts.refresh(), log.refresh()]);
  }
  const stop = poller(refresh);
  return { unmount() { stop(); charts.destroy(); table.unmount(); log.destroy(); } };
}

// ---------------------------------------------------------------- cluster VMs

/** A running VM's latest CPU and memory cells ("–" while stopped or not sampled yet). */
function loadCells(vm) {
  const sampled = vm.state === 'running' && vm.mem_mib !== null && vm.mem_mib !== undefined;
  const none = () => h('td', { class: 'num muted' }, '–');
  if (!sampled) return [none(), none()];
  const cpu = vm.cpu_percent;
  return [
    cpu === null || cpu === undefined
      ? none()
      : h('td', { class: 'num load-cpu' }, `${Math.round(cpu)}%`, meter(cpu, `CPU ${Math.round(cpu)}%`)),
    h('td', { class: 'num load-mem' }, formatMib(vm.mem_mib),
      vm.rss_mib === null || vm.rss_mib === undefined ? null : h('div', { class: 'tree-meta', i18n: ['cvms.rss', { size: formatMib(vm.rss_mib) }] })),
  ];
}

/**
 * One VM's CPU and memory over the last hour in a modal dialog, refreshed
 * while it is open (a dialog, so the table's own refresh cannot destroy it).
 */
function vmLoadDialog(vm, label) {
  const boxes = ['cpu', 'mem'].map((k) => h('div', { class: 'chart', dataset: { chart: `vm-${k}` } }));
  const empty = h('p', { class: 'muted empty-small', i18n: 'cvms.load.empty', hidden: true });
  const close = h('button', { type: 'button', class: 'btn', i18n: 'common.close' });
  const dlg = h('dialog', { class: 'dialog wide', id: 'vm-load', 'aria-labelledby': 'vm-load-title' },
    h('div', { class: 'dialog-body' },
      h('div', { class: 'dialog-head' }, h('h2', { id: 'vm-load-title', i18n: ['cvms.load.title', { name: label }] })),
      empty,
      h('div', { class: 'charts' }, boxes),
      h('div', { class: 'dialog-actions' }, close)));
  const row = chartRow(boxes);
  let last = [];

  function draw(samples) {
    last = samples;
    empty.hidden = samples.length > 0;
    const times = samples.map((s) => Date.parse(s.at) / 1000);
    const val = (v) => (v === undefined ? null : v);
    const data = [
      [times, samples.map((s) => val(s.cpu_percent))],
      [times, samples.map((s) => val(s.mem_mib)), samples.map((s) => val(s.rss_mib))],
    ];
    const spanSeconds = () => 3600;
    row.draw(`${samples.length > 0}#${document.documentElement.lang}`, data, () => (samples.length ? [
      { title: t('cvms.load.cpu'), unit: '%', max: 100, names: [vm.name], spanSeconds },
      // No unit on the axis: "1024 MiB" does not fit; the title says MiB.
      { title: t('cvms.load.mem'), names: [t('cvms.load.guest'), t('cvms.load.rss')], spanSeconds },
    ] : null));
  }
  const offLang = onLangChange(() => { row.reset(); draw(last); });
  const stop = poller(async () => draw((await get(`/api/vms/${encodeURIComponent(vm.id)}/history?minutes=60`)).samples));
  close.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => { stop(); offLang(); row.destroy(); dlg.remove(); });
  document.body.append(dlg);
  dlg.showModal();
  close.focus();
}

function clusterVms(container, { node = '', embedded = false }) {
  const filters = { course: '', node, state: '', student: '' };
  let data = { vms: [], users: new Map(), courses: new Map(), nodes: [] };
  const selCourse = h('select', { id: 'cv-course' });
  const selNode = h('select', { id: 'cv-node' });
  const selState = h('select', { id: 'cv-state' },
    h('option', { value: '', i18n: 'cvms.all' }), STATES.map((s) => h('option', { value: s, i18n: `state.${s}` })));
  const student = h('input', { id: 'cv-student', type: 'search', i18nPh: 'cvms.filter.studentPh', autocomplete: 'off' });
  const count = h('p', { class: 'muted' });
  const tbody = h('tbody', {});
  const empty = h('p', { class: 'muted empty-small', i18n: 'cvms.empty', hidden: true });
  const filterBar = h('div', { class: 'filters' },
    h('div', { class: 'field' }, h('label', { for: 'cv-course', i18n: 'cvms.filter.course' }), selCourse),
    embedded ? null : h('div', { class: 'field' }, h('label', { for: 'cv-node', i18n: 'cvms.filter.node' }), selNode),
    h('div', { class: 'field' }, h('label', { for: 'cv-state', i18n: 'cvms.filter.state' }), selState),
    h('div', { class: 'field' }, h('label', { for: 'cv-student', i18n: 'cvms.filter.student' }), student));
  replace(container,
    embedded
      ? h('div', { class: 'section-head' }, h('h2', { i18n: 'node.vms' }), count)
      : h('div', { class: 'page-head' }, h('div', {}, h('h1', { i18n: 'cvms.title' }), count)),
    h('section', { class: 'card section' },
      filterBar,
      h('div', { class: 'table-wrap', tabindex: '0' },
        h('table', { class: 'data', id: 'cluster-vms' },
          h('thead', {}, h('tr', {}, ['cvms.col.name', 'cvms.col.student', 'cvms.col.course', 'cvms.col.node', 'cvms.col.state', 'cvms.col.cpu', 'cvms.col.mem', 'cvms.col.size', 'cvms.col.actions']
            .map((k) => h('th', { scope: 'col', i18n: k })))),
          tbody)),
      empty));

  for (const [el, key] of [[selCourse, 'course'], [selNode, 'node'], [selState, 'state']]) {
    el.addEventListener('change', () => { filters[key] = el.value; render(); });
  }
  student.addEventListener('input', () => { filters.student = student.value.trim().toLowerCase(); render(); });

  function options(sel, items, current) {
    replace(sel, h('option', { value: '', i18n: 'cvms.all' }), items.map(([v, label]) => h('option', { value: v }, label)));
    sel.value = items.some(([v]) => v === current) ? current : '';
  }

  // Running VMs on shared storage live-migrate; a node-local layer cannot,
  // so a stopped VM's layer is moved to another node instead.
  function migrateControl(vm) {
    const local = vm.layer_storage === 'node-local';
    const moving = local && vm.state !== 'running';
    const from = moving ? vm.layer_node_id : vm.node_id;
    const targets = data.nodes.filter((n) => n.id !== from && n.state === 'up');
    const sel = h('select', { class: 'small', i18nAria: [moving ? 'cvms.move.aria' : 'cvms.migrate.aria', { name: vm.name }] },
      h('option', { value: '', i18n: moving ? 'cvms.move' : 'cvms.migrate' }), targets.map((n) => h('option', { value: n.id }, n.name)));
    sel.disabled = targets.length === 0 || (moving
      ? !vm.layer_node_id || !['stopped', 'error'].includes(vm.state)
      : local || vm.state !== 'running');
    sel.addEventListener('change', async () => {
      const target = sel.value;
      if (!target) return;
      sel.disabled = true;
      try {
        await post(`/api/vms/${encodeURIComponent(vm.id)}/${moving ? 'move' : 'migrate'}`, { node_id: target });
        toast(t(moving ? 'cvms.moved' : 'cvms.migrated', { name: vm.name, node: data.nodes.find((n) => n.id === target)?.name || '' }), 'success');
        await load();
      } catch (err) { toastError(err); sel.value = ''; sel.disabled = false; }
    });
    return sel;
  }

  function render() {
    const { vms, users: us, courses, nodes: ns } = data;
    options(selCourse, [...courses.values()].map((c) => [c.id, `${c.code} · ${c.name}`]), filters.course);
    options(selNode, ns.map((n) => [n.id, n.name]), filters.node);
    const rows = vms.filter((vm) => (!filters.course || vm.course_id === filters.course)
      && (!filters.node || vm.node_id === filters.node)
      && (!filters.state || vm.state === filters.state)
      && (!filters.student || (us.get(vm.owner_id)?.username || '').toLowerCase().includes(filters.student)
        || (us.get(vm.owner_id)?.display_name || '').toLowerCase().includes(filters.student)));
    bind(count, 'cvms.count', { shown: rows.length, total: vms.length });
    empty.hidden = rows.length > 0;
    replace(tbody, rows.map((vm) => {
      const owner = us.get(vm.owner_id);
      const course = courses.get(vm.course_id);
      const nodeName = ns.find((n) => n.id === vm.node_id)?.name;
      const off = button({ label: 'vm.poweroff', kind: 'small danger-text nowrap' });
      off.disabled = !allowed('poweroff', vm.state);
      off.addEventListener('click', async () => {
        off.disabled = true;
        if (await runAction('poweroff', vm)) await load();
        else off.disabled = false;
      });
      const chart = button({ label: 'cvms.load', kind: 'small nowrap load-chart', aria: ['cvms.load.aria', { name: vm.name }] });
      chart.addEventListener('click', () => vmLoadDialog(vm, owner ? `${vm.name} · ${owner.username}` : vm.name));
      return h('tr', { dataset: { vmId: vm.id } },
        h('td', {}, vm.name),
        h('td', { class: 'student-cell' }, owner ? owner.username : '?', owner && owner.display_name !== owner.username ? h('div', { class: 'tree-meta' }, owner.display_name) : null),
        h('td', {}, course ? course.code : h('span', { class: 'muted', i18n: 'cvms.build' })),
        h('td', {}, nodeName || h('span', { class: 'muted', i18n: 'common.none' }),
          vm.layer_node_id ? h('div', { class: 'tree-meta', i18n: ['cvms.diskOn', { node: ns.find((n) => n.id === vm.layer_node_id)?.name || '?' }] }) : null),
        h('td', {}, stateBadge(vm.state)),
        loadCells(vm),
        h('td', { class: 'num' }, `${vm.vcpus} vCPU · ${formatMib(vm.memory_mib)}`, h('div', { class: 'tree-meta' }, formatBytes(vm.overlay_bytes || 0))),
        h('td', {}, h('span', { class: 'row-actions' }, chart, off, migrateControl(vm))));
    }));
  }

  async function load() {
    const [vms, us, courses, ns] = await Promise.all([get('/api/vms'), get('/api/users'), get('/api/courses'), get('/api/nodes')]);
    data = { vms, users: new Map(us.map((u) => [u.id, u])), courses: new Map(courses.map((c) => [c.id, c])), nodes: ns };
    render();
  }
  const offLang = onLangChange(render);
  const stop = poller(load);
  return { unmount() { stop(); offLang(); } };
}

// ---------------------------------------------------------------- users

const USERS_PAGE = 25;

function users(container, me) {
  let stopped = false;
  let page = 0;
  let query = '';
  let searchTimer = null;
  const tbody = h('tbody', {});
  const search = h('input', { id: 'users-search', type: 'search', autocomplete: 'off', spellcheck: 'false', i18nPh: 'users.search.ph' });
  const prev = button({ label: 'users.prev', kind: 'small', attrs: { id: 'users-prev' } });
  const next = button({ label: 'users.next', kind: 'small', attrs: { id: 'users-next' } });
  const pageInfo = h('span', { class: 'muted small', id: 'users-page', 'aria-live': 'polite' });
  const noMatch = h('p', { class: 'muted empty-small', i18n: 'users.noMatch', hidden: true });
  const uname = h('input', { id: 'nu-username', required: true, maxlength: 64, autocomplete: 'off', autocapitalize: 'none' });
  const dname = h('input', { id: 'nu-display', maxlength: 100, autocomplete: 'off' });
  const role = h('select', { id: 'nu-role' }, ['student', 'teacher', 'staff', 'admin'].map((r) => h('option', { value: r, i18n: `role.${r}` })));
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
    directorySyncCard(() => load()),
    h('section', { class: 'card section' },
      h('div', { class: 'filters' },
        h('div', { class: 'field grow' }, h('label', { for: 'users-search', i18n: 'users.search' }), search)),
      h('div', { class: 'table-wrap', tabindex: '0' },
        h('table', { class: 'data' },
          h('thead', {}, h('tr', {}, ['users.col.username', 'users.col.name', 'users.col.role', 'users.col.state', 'users.col.actions'].map((k) => h('th', { scope: 'col', i18n: k })))),
          tbody)),
      noMatch,
      h('div', { class: 'pager' }, prev, pageInfo, next)),
    h('section', { class: 'card section', id: 'user-limits' },
      h('div', { class: 'section-head' }, h('h2', { i18n: 'limits.title' })),
      limitsCard().el));

  // One account: its role can be changed and it can be disabled (which also
  // ends its sessions) — except the admin's own, which the server refuses.
  function userRow(u) {
    const self = u.id === me.id;
    const roleSel = h('select', { class: 'small', i18nAria: ['users.roleAria', { name: u.username }] },
      ['student', 'teacher', 'staff', 'admin'].map((r) => h('option', { value: r, i18n: `role.${r}` })));
    roleSel.value = u.role;
    roleSel.disabled = self;
    roleSel.addEventListener('change', async () => {
      const ok = await confirmDialog({
        title: ['users.role.title', { name: u.username }],
        body: ['users.role.body', { name: u.username, from: t(`role.${u.role}`), to: t(`role.${roleSel.value}`) }],
        confirm: 'users.role.confirm',
      });
      if (!ok) { roleSel.value = u.role; return; }
      roleSel.disabled = true;
      try {
        await api('PATCH', `/api/users/${encodeURIComponent(u.id)}`, { role: roleSel.value });
        toast(t('users.updated', { name: u.username }), 'success');
        load();
      } catch (err) { toastError(err); roleSel.value = u.role; roleSel.disabled = false; }
    });
    const toggle = button({ label: u.disabled ? 'users.enable' : 'users.disable', kind: `small nowrap${u.disabled ? '' : ' danger-text'}`, aria: [u.disabled ? 'users.enableAria' : 'users.disableAria', { name: u.username }] });
    toggle.disabled = self;
    toggle.addEventListener('click', async () => {
      if (!u.disabled) {
        const ok = await confirmDialog({
          title: ['users.disable.title', { name: u.username }],
          body: 'users.disable.body',
          confirm: 'users.disable',
          danger: true,
        });
        if (!ok) return;
      }
      toggle.disabled = true;
      try {
        await api('PATCH', `/api/users/${encodeURIComponent(u.id)}`, { disabled: !u.disabled });
        toast(t('users.updated', { name: u.username }), 'success');
        load();
      } catch (err) { toastError(err); toggle.disabled = false; }
    });
    const reset = button({ label: 'users.reset', kind: 'small nowrap reset-pw', aria: ['users.resetAria', { name: u.username }] });
    reset.addEventListener('click', () => resetPassword(u));
    return h('tr', { dataset: { username: u.username }, class: u.disabled ? 'disabled-row' : null },
      h('td', { class: 'student-cell' }, u.username),
      h('td', {}, u.display_name || ''),
      h('td', {}, roleSel),
      h('td', {}, h('span', { class: `chip${u.disabled ? ' warn' : ''}`, i18n: u.disabled ? 'users.disabled' : 'users.active' }),
        u.must_change_password ? h('span', { class: 'chip', i18n: 'users.mustChange' }) : null),
      h('td', {}, h('div', { class: 'row-actions' }, toggle, reset)));
  }

  // One page of the search: ask for one more than a page to know whether
  // another page follows.
  async function load() {
    try {
      const qs = new URLSearchParams({ q: query, limit: String(USERS_PAGE + 1), offset: String(page * USERS_PAGE) });
      const list = await get(`/api/users?${qs}`);
      if (stopped) return;
      const more = list.length > USERS_PAGE;
      replace(tbody, list.slice(0, USERS_PAGE).map((u) => userRow(u)));
      noMatch.hidden = list.length > 0;
      prev.disabled = page === 0;
      next.disabled = !more;
      bind(pageInfo, 'users.pageN', { n: page + 1 });
    } catch (err) { if (!stopped) toastError(err); }
  }
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { query = search.value.trim(); page = 0; load(); }, 250);
  });
  prev.addEventListener('click', () => { if (page > 0) { page -= 1; load(); } });
  next.addEventListener('click', () => { page += 1; load(); });

  /**
   * An admin sets a new password for a user who forgot theirs; by default
   * the user must choose their own at the next sign-in. Their sessions end.
   */
  function resetPassword(u) {
    const pw = h('input', { id: 'reset-pw', type: 'text', required: true, minlength: 8, maxlength: 256, autocomplete: 'off', spellcheck: 'false', value: suggestPassword() });
    // An admin's own account cannot be forced (the server refuses: it would
    // lock them out of everything but the change page).
    const self = u.id === me.id;
    const force = h('input', { id: 'reset-force', type: 'checkbox', checked: !self, disabled: self });
    const ok = h('button', { type: 'submit', class: 'btn primary', value: 'ok', i18n: 'users.reset.confirm' });
    const cancel = h('button', { type: 'button', class: 'btn', i18n: 'common.cancel' });
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const form = h('form', { novalidate: true },
      h('div', { class: 'dialog-head' }, h('h2', { id: 'reset-title', i18n: ['users.reset.title', { name: u.username }] })),
      h('p', { i18n: 'users.reset.body' }),
      h('div', { class: 'field' }, h('label', { for: 'reset-pw', i18n: 'users.reset.password' }), pw),
      h('div', { class: 'field check' }, h('label', { for: 'reset-force' }, force, ' ', h('span', { i18n: 'users.reset.force' }))),
      err,
      h('div', { class: 'dialog-actions' }, cancel, ok));
    const dlg = h('dialog', { class: 'dialog', id: 'reset-dialog', 'aria-labelledby': 'reset-title' }, form);
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => dlg.remove());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (pw.value.length < 8) { err.hidden = false; bind(err, 'users.reset.short'); pw.focus(); return; }
      ok.disabled = true;
      try {
        await api('PATCH', `/api/users/${encodeURIComponent(u.id)}`, { password: pw.value, must_change_password: force.checked });
        toast(t(force.checked ? 'users.reset.doneForce' : 'users.reset.done', { name: u.username }), 'success');
        dlg.close();
        load();
      } catch (e2) {
        err.hidden = false;
        delete err.dataset.i18n;
        err.textContent = errorText(e2);
        ok.disabled = false;
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    pw.select();
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
  return { unmount() { stopped = true; clearTimeout(searchTimer); } };
}

/** A readable random password to hand over (no 0/O, 1/l look-alikes). */
function suggestPassword() {
  const alphabet = 'abcdefghjkmnpqrstuvwxyz23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  const chars = [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
  return `${chars.slice(0, 4)}-${chars.slice(4, 8)}-${chars.slice(8)}`;
}
