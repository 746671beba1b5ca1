// Teacher views: my courses (#/teach), a new course (#/teach/new) and the
// class view of one course (#/teach/<id>): every student's VMs with live
// state, power actions (on all VMs or the selected ones), the console,
// enrolment by pasted usernames, unenrolment, collecting a directory from
// the class, and deleting the course.

import { t, bind, onLangChange } from './i18n.js';
import { h, icon, button, replace, formatBytes, formatMib, relativeTime, absoluteTime, toast, toastError, confirmDialog } from './ui.js';
import { get, post, del } from './api.js';
import { stateBadge, setBadge, actionBar, allowed } from './vmcontrols.js';
import { collectCard } from './collect.js';
import { clipboardForm } from './courseclip.js';
import { sessionsCard, extensionToggle } from './sessions.js';
import { usageCard, quotaCard } from './usage.js';
import { idleCard } from './idle.js';
import { directoryLinkForm } from './courselink.js';
import { termForm } from './courseterm.js';

const POLL_MS = 3000;

export function mount(container, params, ctx) {
  if (ctx.kind === 'new') return newCourse(container, params[0]);
  if (ctx.kind === 'course') return classView(container, params[0], ctx);
  return courseList(container, ctx);
}

// ---------------------------------------------------------------- course list

function courseList(container) {
  let stopped = false;
  const grid = h('div', { class: 'course-grid', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'teach.title' }), h('p', { class: 'muted', i18n: 'teach.subtitle' })),
      h('a', { class: 'btn primary', href: '#/teach/new' }, icon('plus'), h('span', { i18n: 'teach.new' }))),
    grid);
  (async () => {
    try {
      const [courses, templates] = await Promise.all([get('/api/courses'), get('/api/templates').catch(() => [])]);
      if (stopped) return;
      const names = new Map(templates.map((x) => [x.id, x.name]));
      grid.removeAttribute('aria-busy');
      if (!courses.length) {
        replace(grid, h('div', { class: 'empty card' }, icon('course'), h('p', { i18n: 'teach.empty' })));
        return;
      }
      replace(grid, courses.map((c) => h('article', { class: 'card course-tile' },
        h('div', { class: 'course-head-tile' },
          h('span', { class: 'course-code' }, c.code),
          h('h2', {}, c.name)),
        h('p', { class: 'muted small', i18n: ['teach.students', { n: c.student_count }] }),
        h('div', {}, (c.vm_specs || []).map((s) => h('span', { class: 'chip' },
          `${s.name} · ${names.get(s.template_id) || '…'} · ${s.vcpus} vCPU · ${formatMib(s.memory_mib)}${s.graphics === 'spice' ? ' · SPICE' : ''}`)),
          c.lab_network ? h('span', { class: 'chip net', i18n: 'course.labNetwork.chip' }) : null,
          c.clipboard_to_guest === false || c.clipboard_from_guest === false ? h('span', { class: 'chip clip-off', i18n: 'desktop.clip.off' }) : null),
        h('div', { class: 'tile-foot' },
          h('span'),
          h('a', { class: 'btn small', href: `#/teach/${c.id}` }, h('span', { i18n: 'teach.open' }), icon('chevron'))))));
    } catch (err) { if (!stopped) toastError(err); }
  })();
  return { unmount() { stopped = true; } };
}

// ---------------------------------------------------------------- new course

function newCourse(container, preselect) {
  let templates = [];
  const code = h('input', { id: 'course-code', required: true, maxlength: 32, autocomplete: 'off' });
  const name = h('input', { id: 'course-name', required: true, maxlength: 200, autocomplete: 'off' });
  const specs = h('div', { class: 'specs' });
  const labNet = h('input', { id: 'course-labnet', type: 'checkbox' });
  // The desktop page's clipboard (issue 18): teachers of exams turn it off.
  const clipIn = h('input', { id: 'course-clip-in', type: 'checkbox', checked: true });
  const clipOut = h('input', { id: 'course-clip-out', type: 'checkbox', checked: true });
  const clipAgent = h('input', { id: 'course-clip-agent', type: 'checkbox' });
  const addSpec = button({ label: 'course.spec.add', icon: 'plus', kind: 'small' });
  const submit = h('button', { type: 'submit', class: 'btn primary', i18n: 'common.create' });
  const noTpl = h('p', { class: 'form-error', i18n: 'course.noTemplates', hidden: true });
  let n = 0;

  function specRow(first) {
    const i = n++;
    const sel = h('select', { id: `spec-tpl-${i}`, required: true },
      templates.map((x) => h('option', { value: x.id }, `${x.name} (${x.os}${x.software.length ? ` + ${x.software.join(', ')}` : ''})`)));
    if (first && preselect && templates.some((x) => x.id === preselect)) sel.value = preselect;
    const row = h('div', { class: 'spec-row' },
      h('div', { class: 'field' }, h('label', { for: `spec-name-${i}`, i18n: 'course.spec.name' }),
        h('input', { id: `spec-name-${i}`, value: first ? 'linux' : `vm${i + 1}`, required: true, maxlength: 64 })),
      h('div', { class: 'field' }, h('label', { for: `spec-tpl-${i}`, i18n: 'course.spec.template' }), sel),
      h('div', { class: 'field' }, h('label', { for: `spec-cpu-${i}`, i18n: 'course.spec.vcpus' }),
        h('input', { id: `spec-cpu-${i}`, type: 'number', min: 1, max: 64, value: 1, required: true })),
      h('div', { class: 'field' }, h('label', { for: `spec-mem-${i}`, i18n: 'course.spec.memory' }),
        h('input', { id: `spec-mem-${i}`, type: 'number', min: 64, max: 262144, step: 64, value: 1024, required: true })),
      h('div', { class: 'field' }, h('label', { for: `spec-gfx-${i}`, i18n: 'course.spec.graphics' }),
        h('select', { id: `spec-gfx-${i}` },
          h('option', { value: 'vnc', i18n: 'course.spec.graphics.vnc' }),
          h('option', { value: 'spice', i18n: 'course.spec.graphics.spice' }))),
      first ? h('span', { class: 'tree-spacer' }) : h('button', {
        type: 'button', class: 'btn ghost icon-btn', i18nAria: 'course.spec.remove', i18nTitle: 'course.spec.remove',
        onclick: () => row.remove(),
      }, icon('close')));
    return row;
  }

  const form = h('form', { class: 'card section-body', novalidate: true },
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'course-code', i18n: 'course.code' }), code),
      h('div', { class: 'field' }, h('label', { for: 'course-name', i18n: 'course.name' }), name)),
    h('div', { class: 'field check' },
      h('label', { for: 'course-labnet' }, labNet, ' ', h('span', { i18n: 'course.labNetwork' })),
      h('p', { class: 'muted small', i18n: 'course.labNetwork.hint' })),
    h('div', { class: 'field check course-clip' },
      h('label', { for: 'course-clip-in' }, clipIn, ' ', h('span', { i18n: 'course.clipToGuest' })),
      h('label', { for: 'course-clip-out' }, clipOut, ' ', h('span', { i18n: 'course.clipFromGuest' })),
      h('p', { class: 'muted small', i18n: 'course.clip.hint' }),
      h('label', { for: 'course-clip-agent' }, clipAgent, ' ', h('span', { i18n: 'course.clipAgent' })),
      h('p', { class: 'muted small', i18n: 'course.clipAgent.hint' })),
    noTpl, specs,
    h('div', { class: 'form-actions' }, addSpec, h('span', { style: 'flex:1' }),
      h('a', { class: 'btn', href: '#/teach', i18n: 'common.cancel' }), submit));
  addSpec.addEventListener('click', () => specs.append(specRow(false)));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!form.reportValidity()) return;
    const vmSpecs = [...specs.querySelectorAll('.spec-row')].map((r) => {
      const [nm, tpl, cpu, mem, gfx] = r.querySelectorAll('input, select');
      return { name: nm.value.trim(), template_id: tpl.value, vcpus: Number(cpu.value), memory_mib: Number(mem.value), graphics: gfx.value };
    });
    submit.disabled = true;
    try {
      const c = await post('/api/courses', { code: code.value.trim(), name: name.value.trim(), lab_network: labNet.checked,
        clipboard_to_guest: clipIn.checked, clipboard_from_guest: clipOut.checked, clipboard_agent: clipAgent.checked, vm_specs: vmSpecs });
      toast(t('course.created', { code: c.code }), 'success');
      location.hash = `#/teach/${c.id}`;
    } catch (err) {
      toastError(err);
    } finally {
      submit.disabled = false;
    }
  });
  replace(container,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { i18n: 'teach.new' }))),
    form);
  get('/api/templates').then((ts) => {
    templates = ts.filter((x) => x.state === 'ready' && (x.parent_id || x.depth > 0));
    noTpl.hidden = templates.length > 0;
    submit.disabled = templates.length === 0;
    addSpec.disabled = templates.length === 0;
    if (templates.length) specs.append(specRow(true));
    code.focus();
  }).catch(toastError);
  return {};
}

// ---------------------------------------------------------------- class view

function classView(container, courseId, { me }) {
  let stopped = false;
  let timer = null;
  let course = null;
  let lastVms = [];
  const names = new Map(); // user id → username
  const rows = new Map(); // vm id → { tr, update, check }
  const selected = new Set(); // vm ids ticked for a bulk action
  let failures = 0; // polls in a row that could not reach the server

  const title = h('h1', {});
  const code = h('span', { class: 'course-code' });
  const tbody = h('tbody', {});
  const empty = h('p', { class: 'muted empty-small', i18n: 'teach.noStudents', hidden: true });
  const startAll = button({ label: 'teach.startAll', icon: 'play', kind: 'small' });
  const stopAll = button({ label: 'teach.stopAll', icon: 'power', kind: 'small' });
  const selectAll = h('input', { type: 'checkbox', id: 'select-all', i18nAria: 'teach.selectAll' });
  const selInfo = h('span', { class: 'muted small sel-info', 'aria-live': 'polite' });
  const connWarn = h('p', { class: 'conn-warn', role: 'status', hidden: true, i18n: 'conn.lost' });
  const deleteBtn = button({ label: 'teach.delete', kind: 'danger', attrs: { id: 'delete-course' } });
  const usernames = h('textarea', { id: 'enrol-names', rows: 4, spellcheck: 'false', placeholder: 's2024001\ns2024002' });
  const enrolBtn = h('button', { type: 'submit', class: 'btn primary', i18n: 'teach.enrol.submit' });
  const enrolResult = h('div', { class: 'enrol-result', 'aria-live': 'polite' });
  // The desktop clipboard switches (courseclip.js), once the course is loaded.
  const clipSection = h('section', { class: 'card section', id: 'course-clipboard', hidden: true },
    h('div', { class: 'section-head' }, h('h2', { i18n: 'course.clip.title' })));
  // The course's directory group (courselink.js), once the course is loaded.
  const linkSection = h('section', { class: 'card section', id: 'course-link', hidden: true },
    h('div', { class: 'section-head' }, h('h2', { i18n: 'course.link.title' })));
  // The end of the term (courseterm.js), once the course is loaded.
  const termSection = h('section', { class: 'card section', id: 'course-term', hidden: true },
    h('div', { class: 'section-head' }, h('h2', { i18n: 'term.title' })));
  const enrolForm = h('form', { class: 'section-body' },
    h('div', { class: 'field' }, h('label', { for: 'enrol-names', i18n: 'teach.enrol.label' }), usernames),
    h('div', { class: 'form-actions' }, enrolResult, h('span', { style: 'flex:1' }), enrolBtn));

  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('a', { href: '#/teach', class: 'back-link' }, icon('back'), h('span', { i18n: 'nav.teach' })), code, title)),
    connWarn,
    h('section', { class: 'card' },
      h('div', { class: 'section-head' }, h('h2', { i18n: 'teach.class' }), selInfo, h('div', { class: 'btn-group' }, startAll, stopAll,
        h('a', { class: 'btn small', id: 'open-wall', href: `#/wall/${courseId}` }, icon('monitor'), h('span', { class: 'label', i18n: 'wall.open' })))),
      h('div', { class: 'table-wrap', tabindex: '0' },
        h('table', { class: 'data', id: 'class-table' },
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col', class: 'sel-col' }, selectAll),
            ['teach.col.student', 'teach.col.vm', 'teach.col.state', 'teach.col.lastUsed', 'teach.col.disk', 'teach.col.actions']
              .map((k) => h('th', { scope: 'col', i18n: k })))),
          tbody)),
      empty),
    h('section', { class: 'card section' },
      h('div', { class: 'section-head' }, h('h2', { i18n: 'teach.enrol' })),
      enrolForm),
    h('section', { class: 'card section', id: 'sessions' },
      h('div', { class: 'section-head' }, h('h2', { i18n: 'class.title.section' })),
      sessionsCard(courseId).el,
      extensionToggle(courseId).el),
    h('section', { class: 'card section', id: 'usage' },
      h('div', { class: 'section-head' }, h('h2', { i18n: 'usage.title' })),
      usageCard(courseId).el),
    h('section', { class: 'card section', id: 'quota' },
      h('div', { class: 'section-head' }, h('h2', { i18n: 'quota.title' })),
      quotaCard(courseId).el),
    h('section', { class: 'card section', id: 'idle' },
      h('div', { class: 'section-head' }, h('h2', { i18n: 'idle.title' })),
      idleCard(courseId).el),
    h('section', { class: 'card section' },
      h('div', { class: 'section-head' }, h('h2', { i18n: 'collect.title' })),
      collectCard(courseId).el),
    clipSection,
    linkSection,
    termSection,
    h('section', { class: 'card section danger-zone' },
      h('div', { class: 'section-head' }, h('h2', { i18n: 'teach.dangerZone' })),
      h('div', { class: 'section-body' },
        h('p', { class: 'muted', i18n: 'teach.delete.hint' }),
        h('div', { class: 'form-actions' }, deleteBtn))));

  /** "Display Name (username)", or the username when there is no display name. */
  function ownerName(id) {
    return names.get(id) || id.slice(0, 8);
  }
  function label(u) {
    return u.display_name && u.display_name !== u.username ? `${u.display_name} (${u.username})` : u.username;
  }
  // The VM list may carry the owner's username itself (owner_username).
  function learnNames(vms) {
    for (const v of vms) if (v.owner_username && !names.has(v.owner_id)) names.set(v.owner_id, v.owner_username);
  }

  function row(vm) {
    const badge = stateBadge(vm.state);
    const check = h('input', { type: 'checkbox', class: 'row-select' });
    check.addEventListener('change', () => {
      if (check.checked) selected.add(vm.id); else selected.delete(vm.id);
      syncSelection();
    });
    const who = h('td', { class: 'student-cell' });
    const unenrol = button({ label: 'teach.unenrol', kind: 'small ghost danger-text unenrol-btn' });
    unenrol.addEventListener('click', () => removeStudent(rows.get(vm.id).vm));
    const used = h('td', { class: 'num' });
    const disk = h('td', { class: 'num' });
    const actions = actionBar(vm, {
      compact: true,
      onOpen: (v) => { location.hash = `#/desktop/${v.id}`; },
      onChanged: (v) => update(v),
    });
    const tr = h('tr', { dataset: { vmId: vm.id } }, h('td', { class: 'sel-col' }, check), who, h('td', {}, vm.name), h('td', {}, badge), used, disk,
      h('td', {}, h('div', { class: 'row-actions' }, actions.el, unenrol)));
    const r = { tr, update, check, vm };
    function update(v) {
      r.vm = v;
      who.textContent = ownerName(v.owner_id);
      bind(check, 'teach.selectRow', { name: ownerName(v.owner_id), vm: v.name }, 'aria-label');
      bind(unenrol, 'teach.unenrolAria', { name: ownerName(v.owner_id) }, 'aria-label');
      setBadge(badge, v.state);
      used.textContent = relativeTime(v.last_started_at);
      used.title = absoluteTime(v.last_started_at);
      disk.textContent = formatBytes(v.overlay_bytes);
      tr.dataset.state = v.state;
      actions.update(v);
    }
    update(vm);
    return r;
  }

  /** The bulk buttons act on the ticked VMs, or on every VM when none is. */
  function syncSelection() {
    for (const id of [...selected]) if (!rows.has(id)) selected.delete(id);
    const n = selected.size;
    selectAll.checked = n > 0 && n === rows.size;
    selectAll.indeterminate = n > 0 && n < rows.size;
    bind(startAll.querySelector('.label'), n ? 'teach.startSel' : 'teach.startAll', n ? { n } : undefined);
    bind(stopAll.querySelector('.label'), n ? 'teach.stopSel' : 'teach.stopAll', n ? { n } : undefined);
    if (n) bind(selInfo, 'teach.selected', { n }); else { delete selInfo.dataset.i18n; selInfo.textContent = ''; }
  }
  selectAll.addEventListener('change', () => {
    for (const [id, r] of rows) {
      r.check.checked = selectAll.checked;
      if (selectAll.checked) selected.add(id); else selected.delete(id);
    }
    syncSelection();
  });

  async function removeStudent(vm) {
    const name = ownerName(vm.owner_id);
    const theirs = lastVms.filter((v) => v.owner_id === vm.owner_id);
    const ok = await confirmDialog({
      title: ['teach.unenrol.title', { name }],
      body: ['teach.unenrol.body', { name, n: theirs.length }],
      confirm: 'teach.unenrol',
      danger: true,
    });
    if (!ok) return;
    try {
      await del(`/api/courses/${encodeURIComponent(courseId)}/students/${encodeURIComponent(vm.owner_id)}`);
      toast(t('teach.unenrolled', { name }), 'success');
      await refresh();
    } catch (err) {
      toastError(err);
    }
  }

  deleteBtn.addEventListener('click', async () => {
    if (!course) return;
    const students = new Set(lastVms.map((v) => v.owner_id)).size;
    const running = lastVms.filter((v) => v.state !== 'stopped' && v.state !== 'error').length;
    const ok = await confirmDialog({
      title: ['teach.delete.title', { code: course.code }],
      body: [running ? 'teach.delete.bodyRunning' : 'teach.delete.body', { n: students, vms: lastVms.length, running }],
      confirm: 'teach.delete',
      danger: true,
    });
    if (!ok) return;
    deleteBtn.disabled = true;
    try {
      await del(`/api/courses/${encodeURIComponent(courseId)}`);
      toast(t('teach.deleted', { code: course.code }), 'success');
      location.hash = '#/teach';
    } catch (err) {
      toastError(err);
      deleteBtn.disabled = false;
    }
  });

  function render(vms) {
    lastVms = vms;
    learnNames(vms);
    const sorted = [...vms].sort((a, b) => ownerName(a.owner_id).localeCompare(ownerName(b.owner_id)) || a.name.localeCompare(b.name));
    const seen = new Set();
    for (const vm of sorted) {
      seen.add(vm.id);
      let r = rows.get(vm.id);
      if (!r) { r = row(vm); rows.set(vm.id, r); } else r.update(vm);
      tbody.append(r.tr);
    }
    for (const [id, r] of rows) if (!seen.has(id)) { r.tr.remove(); rows.delete(id); }
    empty.hidden = vms.length > 0;
    syncSelection();
  }

  async function loadNames() {
    // Usernames: the course's student list if the server has it, the user list for admins.
    try {
      const list = await get(`/api/courses/${encodeURIComponent(courseId)}/students`);
      if (Array.isArray(list)) for (const u of list) names.set(u.id, label(u));
    } catch { /* not available */ }
    if (me.role === 'admin') {
      try { for (const u of await get('/api/users')) if (!names.has(u.id)) names.set(u.id, label(u)); } catch { /* ignore */ }
    }
  }

  async function refresh() {
    const vms = await get(`/api/vms?course_id=${encodeURIComponent(courseId)}`);
    if (!stopped) render(vms);
  }

  // Polls keep going while the server is unreachable, further apart each
  // time (up to 30 s); the page says so instead of showing stale states.
  async function poll() {
    if (stopped) return;
    if (document.visibilityState === 'visible') {
      try {
        await refresh();
        failures = 0;
      } catch (err) {
        if (err.code === 'network' || err.status >= 502) failures += 1;
        else if (err.status !== 401) toastError(err);
      }
      connWarn.hidden = failures === 0;
    }
    if (!stopped) timer = setTimeout(poll, failures ? Math.min(POLL_MS * 2 ** failures, 30000) : POLL_MS);
  }

  async function bulk(action) {
    const pool = selected.size ? (lastVms || []).filter((v) => selected.has(v.id)) : (lastVms || []);
    const targets = pool.filter((v) => allowed(action, v.state));
    const scope = selected.size ? 'Sel' : '';
    if (!targets.length) { toast(t(`teach.bulk.${action}.none${scope}`), 'info'); return; }
    // Says how many VMs the click touches before it does.
    const ok = await confirmDialog({
      title: [`teach.bulk.${action}.title`, { n: targets.length }],
      body: [`teach.bulk.${action}.body${scope}`, { n: targets.length }],
      confirm: [`teach.bulk.${action}.confirm`, { n: targets.length }],
      danger: action === 'shutdown',
    });
    if (!ok) return;
    const results = await Promise.allSettled(targets.map((v) => post(`/api/vms/${v.id}/${action}`)));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) toastError(failed[0].reason);
    toast(t('teach.bulkDone', { n: targets.length - failed.length, failed: failed.length }), failed.length ? 'error' : 'success');
    refresh().catch(() => {});
  }
  startAll.addEventListener('click', async () => { startAll.classList.add('busy'); await bulk('start'); startAll.classList.remove('busy'); });
  stopAll.addEventListener('click', async () => { stopAll.classList.add('busy'); await bulk('shutdown'); stopAll.classList.remove('busy'); });

  enrolForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const list = usernames.value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
    if (!list.length) { usernames.focus(); return; }
    enrolBtn.disabled = true;
    try {
      const r = await post(`/api/courses/${encodeURIComponent(courseId)}/students`, { usernames: list });
      // `enrolled` is every student of the request; those already in the
      // course are reported apart so "Enrolled 2" never counts them again.
      const already = r.already_enrolled || [];
      const fresh = (r.enrolled || []).filter((n) => !already.includes(n));
      const lines = [h('p', { i18n: ['teach.enrol.done', { enrolled: fresh.length, vms: r.vms_created }] })];
      if (already.length) lines.push(h('p', { class: 'muted', i18n: ['teach.enrol.already', { n: already.length, names: already.join(', ') }] }));
      if (r.unknown && r.unknown.length) lines.push(h('p', { class: 'vm-error', i18n: ['teach.enrol.unknown', { names: r.unknown.join(', ') }] }));
      if (r.not_students && r.not_students.length) lines.push(h('p', { class: 'vm-error', i18n: ['teach.enrol.notStudents', { names: r.not_students.join(', ') }] }));
      replace(enrolResult, lines);
      usernames.value = [...(r.unknown || []), ...(r.not_students || [])].join('\n');
      await loadNames();
      await refresh();
    } catch (err) {
      toastError(err);
    } finally {
      enrolBtn.disabled = false;
    }
  });

  const offLang = onLangChange(() => render(lastVms));

  (async () => {
    try {
      course = await get(`/api/courses/${encodeURIComponent(courseId)}`);
      if (stopped) return;
      title.textContent = course.name;
      code.textContent = course.code;
      document.title = `${course.code} · pvce`;
      clipSection.append(clipboardForm(course));
      clipSection.hidden = false;
      linkSection.append(directoryLinkForm(course));
      linkSection.hidden = false;
      termSection.append(termForm(course));
      termSection.hidden = false;
      await loadNames();
      await refresh();
    } catch (err) {
      if (!stopped) toastError(err);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  })();

  return {
    unmount() {
      stopped = true;
      clearTimeout(timer);
      offLang();
    },
  };
}
