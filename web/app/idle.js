// Idle auto-stop (/api/courses/{id}/idle, /api/vms/{id}/idle). The teacher's
// card on the class view sets the course's rule (every rule off by
// default); the desktop page warns whoever is connected, in their language,
// that an idle VM is about to be shut down.

import { t, onLangChange } from './i18n.js';
import { h, toast, toastError, clockTime } from './ui.js';
import { get, api } from './api.js';

const WATCH_MS = 30000;

/** The teacher's idle auto-stop card of a course. Returns { el }. */
export function idleCard(courseId) {
  const ipath = `/api/courses/${encodeURIComponent(courseId)}/idle`;
  const num = (id, min, max, step = 1) => h('input', { id, type: 'number', min, max, step, inputmode: 'numeric' });
  const disc = num('idle-disconnected', 1, 10080);
  const never = num('idle-never', 1, 10080);
  const cpu = num('idle-cpu', 0.1, 100, 0.1);
  const cpuMin = num('idle-cpu-minutes', 1, 10080);
  const save = h('button', { type: 'submit', class: 'btn primary', id: 'idle-save', i18n: 'common.save' });
  const state = h('p', { class: 'muted small', id: 'idle-state', 'aria-live': 'polite' });
  const field = (input, key) => h('div', { class: 'field' }, h('label', { for: input.id, i18n: key }), input);
  const form = h('form', { class: 'section-body', id: 'idle-form' },
    h('p', { class: 'muted small', i18n: 'idle.hint' }),
    h('div', { class: 'spec-row' }, field(disc, 'idle.disconnected'), field(never, 'idle.never')),
    h('div', { class: 'spec-row' }, field(cpu, 'idle.cpu'), field(cpuMin, 'idle.cpuMinutes')),
    state,
    h('div', { class: 'form-actions' }, save));
  let last = null;
  const val = (input) => (input.value.trim() === '' ? null : Number(input.value));
  function render(s) {
    last = s;
    disc.value = s.disconnected_minutes ?? '';
    never.value = s.never_connected_minutes ?? '';
    cpu.value = s.cpu_below_percent ?? '';
    cpuMin.value = s.cpu_minutes ?? '';
    const off = s.disconnected_minutes === null && s.never_connected_minutes === null && s.cpu_minutes === null;
    state.textContent = t(off ? 'idle.off' : 'idle.on');
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      render(await api('PUT', ipath, {
        disconnected_minutes: val(disc),
        never_connected_minutes: val(never),
        cpu_below_percent: val(cpu),
        cpu_minutes: val(cpuMin),
      }));
      toast(t('idle.saved'), 'success');
    } catch (err) {
      toastError(err);
    }
  });
  onLangChange(() => { if (last) render(last); });
  get(ipath).then(render, toastError);
  return { el: form };
}

/**
 * Warns on the desktop page before the VM is stopped — for idleness, or
 * because the student's hours outside class are spent. Returns a stop function.
 */
export function watchIdle(vmId) {
  let stopped = false;
  let timer = null;
  let shown = null; // the stop time already announced
  async function poll() {
    try {
      const w = await get(`/api/vms/${encodeURIComponent(vmId)}/idle`);
      if (stopped) return;
      if (w.stop_at && w.stop_at !== shown) {
        shown = w.stop_at;
        const key = w.reason === 'hours' ? 'idle.warnHours' : 'idle.warn';
        toast(t(key, { time: clockTime(w.stop_at) }), 'error', { timeout: 60000 });
      }
      if (!w.stop_at) shown = null;
    } catch { /* the desktop works without it */ }
    if (!stopped) timer = setTimeout(poll, WATCH_MS);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}
