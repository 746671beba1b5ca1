// The clipboard switches of an existing course (issue 18), on the teacher's
// class page: whether the desktop page lets students paste into their VMs
// and copy text out of them. Teachers of exams turn them off for the exam
// and on again afterwards; desktop pages read them when they open. The
// guest-agent channel (qemu-vdagent) applies from each VM's next start.

import { bind } from './i18n.js';
import { h, toast, toastError } from './ui.js';
import { api } from './api.js';

/** The switches' form for `course` (as GET /api/courses/{id} returns it). */
export function clipboardForm(course) {
  const toGuest = h('input', { id: 'clip-edit-in', type: 'checkbox', checked: course.clipboard_to_guest !== false });
  const fromGuest = h('input', { id: 'clip-edit-out', type: 'checkbox', checked: course.clipboard_from_guest !== false });
  const agent = h('input', { id: 'clip-edit-agent', type: 'checkbox', checked: course.clipboard_agent === true });
  const save = h('button', { type: 'submit', class: 'btn primary', id: 'clip-edit-save', i18n: 'common.save', disabled: true });
  const saved = h('span', { class: 'muted small', role: 'status', 'aria-live': 'polite' });
  const form = h('form', { class: 'section-body course-clip-edit' },
    h('div', { class: 'field check course-clip' },
      h('label', { for: 'clip-edit-in' }, toGuest, ' ', h('span', { i18n: 'course.clipToGuest' })),
      h('label', { for: 'clip-edit-out' }, fromGuest, ' ', h('span', { i18n: 'course.clipFromGuest' })),
      h('p', { class: 'muted small', i18n: 'course.clip.editHint' }),
      h('label', { for: 'clip-edit-agent' }, agent, ' ', h('span', { i18n: 'course.clipAgent' })),
      h('p', { class: 'muted small', i18n: 'course.clipAgent.editHint' })),
    h('div', { class: 'form-actions' }, saved, h('span', { style: 'flex:1' }), save));
  let current = { to: toGuest.checked, from: fromGuest.checked, agent: agent.checked };
  const dirty = () => toGuest.checked !== current.to || fromGuest.checked !== current.from || agent.checked !== current.agent;
  for (const c of [toGuest, fromGuest, agent]) c.addEventListener('change', () => { save.disabled = !dirty(); });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    save.disabled = true;
    try {
      const c = await api('PUT', `/api/courses/${encodeURIComponent(course.id)}/clipboard`,
        { to_guest: toGuest.checked, from_guest: fromGuest.checked, agent: agent.checked });
      current = { to: c.clipboard_to_guest, from: c.clipboard_from_guest, agent: c.clipboard_agent };
      toGuest.checked = current.to;
      fromGuest.checked = current.from;
      agent.checked = current.agent;
      bind(saved, 'course.clip.saved');
      toast(saved.textContent, 'success');
    } catch (err) {
      toastError(err);
    }
    save.disabled = !dirty();
  });
  return form;
}
