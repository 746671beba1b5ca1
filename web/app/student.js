// "My courses": each course the student is enrolled in, with the student's
// personal VMs, their live state and power actions. The list is polled every
// few seconds and updated in place (no re-render, no layout jumps).

import { bind, onLangChange } from './i18n.js';
import { h, icon, replace, formatBytes, formatMib, relativeTime, absoluteTime, clockTime, toastError } from './ui.js';
import { get } from './api.js';
import { stateBadge, setBadge, actionBar } from './vmcontrols.js';
import { vmPanel } from './vmpanel.js';
import { upcomingSessions } from './sessions.js';
import { hoursLine } from './usage.js';

const POLL_MS = 2500;
// Hours change by the minute: their own, slower poll.
const HOURS_MS = 30000;

export function mount(container) {
  let stopped = false;
  let timer = null;
  let failures = 0; // polls in a row that could not reach the server
  const courseCards = new Map(); // course id → { card, list, empty }
  const vmRows = new Map(); // vm id → { el, update(vm) }

  const list = h('div', { class: 'course-list', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {},
        h('h1', { i18n: 'student.title' }),
        h('p', { class: 'muted', i18n: 'student.subtitle' }))),
    list);

  function vmRow(vm) {
    const badge = stateBadge(vm.state);
    const meta = h('div', { class: 'vm-meta' });
    const specs = h('span', {});
    const used = h('span', {});
    const disk = h('span', {});
    const tpl = h('span', { class: 'vm-template', hidden: true });
    const node = h('span', { class: 'vm-node', hidden: true });
    // A shutdown the server asked for: when the VM will be forced off.
    const forced = h('p', { class: 'muted small vm-forced', hidden: true });
    // The VM's NIC is on the student's private lab network of this course.
    const net = h('span', { class: 'chip net', i18n: 'vm.labNetwork', i18nTitle: 'vm.labNetwork.hint', hidden: true });
    meta.append(specs, used, disk, tpl, node, net);
    const err = h('p', { class: 'vm-error', hidden: true });
    // The service desk: a report about this VM carries its context.
    const report = h('a', { class: 'report-link small', href: `#/report/${vm.id}`, dataset: { action: 'report' } }, icon('warn'), h('span', { i18n: 'desk.report' }));
    const actions = actionBar(vm, {
      onOpen: (v) => { location.hash = `#/desktop/${v.id}`; },
      onChanged: (v) => update(v),
    });
    const el = h('li', { class: 'vm', dataset: { vmId: vm.id } },
      h('div', { class: 'vm-main' },
        h('div', { class: 'vm-icon', 'aria-hidden': 'true' }, icon('monitor')),
        h('div', { class: 'vm-text' },
          h('div', { class: 'vm-title' }, h('h3', { class: 'vm-name' }, vm.name), badge),
          meta, forced, err, report)),
      actions.el);
    // Snapshots, export and import of the student's own layer.
    const panel = vmPanel(vm);
    el.append(panel.el);

    function update(v) {
      setBadge(badge, v.state);
      bind(specs, 'vm.specs', { vcpus: v.vcpus, mem: formatMib(v.memory_mib) });
      bind(used, 'vm.lastUsed', { when: relativeTime(v.last_started_at) });
      used.title = absoluteTime(v.last_started_at);
      bind(disk, 'vm.disk', { size: formatBytes(v.overlay_bytes) });
      tpl.hidden = !v.template_name;
      if (v.template_name) bind(tpl, 'vm.template', { name: v.template_name });
      node.hidden = !v.node_name;
      if (v.node_name) bind(node, 'vm.node', { name: v.node_name });
      const deadline = v.state === 'stopping' && v.stop_deadline;
      forced.hidden = !deadline;
      if (deadline) {
        bind(forced, 'vm.forcedAt', { time: clockTime(v.stop_deadline) });
        forced.title = absoluteTime(v.stop_deadline);
      }
      const showErr = v.state === 'error' && v.last_error;
      // A VM whose node stopped answering: say what happened and what to expect.
      const nodeDown = v.state === 'node_down';
      err.hidden = !showErr && !nodeDown;
      if (nodeDown) bind(err, 'vm.nodeDown');
      else if (showErr) bind(err, 'vm.error', { msg: v.last_error });
      el.dataset.state = v.state;
      actions.update(v);
      panel.update(v);
    }
    update(vm);
    return { el, update, setLab(on) { net.hidden = !on; } };
  }

  function courseCard(course) {
    const vmList = h('ul', { class: 'vm-list' });
    const empty = h('p', { class: 'muted empty-small', i18n: 'course.novms', hidden: true });
    const hours = hoursLine();
    const card = h('section', { class: 'card course', 'aria-labelledby': `course-${course.id}` },
      h('header', { class: 'course-head' },
        h('div', { class: 'course-icon', 'aria-hidden': 'true' }, icon('course')),
        h('div', {},
          h('span', { class: 'course-code' }, course.code),
          h('h2', { id: `course-${course.id}` }, course.name),
          course.lab_network ? h('p', { class: 'muted small lab-net', i18n: 'course.labNetwork.student' }) : null,
          upcomingSessions(course.id).el,
          hours.el)),
      vmList, empty);
    return { card, list: vmList, empty, hours };
  }

  let lastVms = null;
  function render(courses, vms) {
    lastVms = vms;
    list.removeAttribute('aria-busy');
    if (!courses.length) {
      if (!list.querySelector('.empty')) {
        replace(list, h('div', { class: 'empty card' }, icon('course'), h('p', { i18n: 'student.empty' })));
      }
      courseCards.clear();
      vmRows.clear();
      return;
    }
    const empty = list.querySelector('.empty');
    if (empty) empty.remove();
    const seenCourses = new Set();
    for (const c of courses) {
      seenCourses.add(c.id);
      let cc = courseCards.get(c.id);
      if (!cc) { cc = courseCard(c); courseCards.set(c.id, cc); cc.hours.update(usage.find((u) => u.course_id === c.id)); }
      list.append(cc.card); // keeps server order; moving an element in place is a no-op
    }
    for (const [id, cc] of courseCards) {
      if (!seenCourses.has(id)) { cc.card.remove(); courseCards.delete(id); }
    }
    const labCourses = new Set(courses.filter((c) => c.lab_network).map((c) => c.id));
    const seenVms = new Set();
    const sorted = [...vms].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    for (const vm of sorted) {
      const cc = courseCards.get(vm.course_id);
      if (!cc) continue;
      seenVms.add(vm.id);
      let row = vmRows.get(vm.id);
      if (!row) { row = vmRow(vm); vmRows.set(vm.id, row); }
      else row.update(vm);
      row.setLab(labCourses.has(vm.course_id));
      if (row.el.parentElement !== cc.list) cc.list.append(row.el);
    }
    for (const [id, row] of vmRows) {
      if (!seenVms.has(id)) { row.el.remove(); vmRows.delete(id); }
    }
    for (const cc of courseCards.values()) cc.empty.hidden = cc.list.children.length > 0;
  }

  // The student's hours per course (used outside sessions, left of the budget).
  let usage = [];
  let hoursTimer = null;
  function renderHours() {
    for (const [id, cc] of courseCards) cc.hours.update(usage.find((u) => u.course_id === id));
  }
  async function loadHours() {
    try {
      usage = await get('/api/me/usage');
      if (stopped) return;
      renderHours();
    } catch (err) {
      // Shown by the VM poll when the server is unreachable.
      if (err.code !== 'network' && err.status < 502 && err.status !== 401) toastError(err);
    }
    if (!stopped) hoursTimer = setTimeout(loadHours, HOURS_MS);
  }

  let courses = [];
  async function load() {
    try {
      const [cs, vms] = await Promise.all([get('/api/courses'), get('/api/vms')]);
      if (stopped) return;
      courses = cs;
      render(courses, vms);
      loadHours();
    } catch (err) {
      if (!stopped) toastError(err);
    }
    schedule();
  }

  async function poll() {
    if (stopped) return;
    if (document.visibilityState === 'visible') {
      try {
        const vms = await get('/api/vms');
        if (stopped) return;
        // A VM of a course we don't know yet: the student was just enrolled.
        if (vms.some((v) => !courseCards.has(v.course_id))) {
          courses = await get('/api/courses');
          if (stopped) return;
        }
        render(courses, vms);
        failures = 0;
      } catch (err) {
        // Unreachable: the shell's banner says so; states are marked stale
        // and the poll backs off (up to 30 s) until the server answers.
        if (err.code === 'network' || err.status >= 502) failures += 1;
        else if (err.status !== 401) toastError(err);
      }
      list.classList.toggle('stale', failures > 0);
    }
    schedule();
  }

  function schedule() {
    if (!stopped) timer = setTimeout(poll, failures ? Math.min(POLL_MS * 2 ** failures, 30000) : POLL_MS);
  }

  // Relative times are computed strings: recompute them in the new language.
  const offLang = onLangChange(() => { if (lastVms) render(courses, lastVms); renderHours(); });

  load();
  return {
    unmount() {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(hoursTimer);
      offLang();
    },
  };
}
