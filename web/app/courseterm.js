// The end of a term on the teacher's class page (issue 20): the course's
// end date and how many days its students' work is kept after it, and the
// archive button. Students are told from two weeks before the end until
// when they can download their work; at the end the course is archived (its
// VMs stop and no longer start, their disks are read-only) and after the
// retention its students' disks are erased, with a record each student sees.

import { bind, t } from './i18n.js';
import { h, replace, toast, toastError, confirmDialog, absoluteTime } from './ui.js';
import { api, get, post } from './api.js';

/** A `datetime-local` value (local time) for an RFC 3339 instant. */
function localValue(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The form for `course` (as GET /api/courses/{id} returns it). */
export function termForm(initial) {
  let course = initial;
  const ends = h('input', { id: 'term-ends', type: 'datetime-local', value: localValue(course.ends_at) });
  const days = h('input', { id: 'term-retention', type: 'number', min: 0, max: 3650, step: 1, required: true, value: String(course.retention_days ?? 180) });
  const save = h('button', { type: 'submit', class: 'btn primary', id: 'term-save', i18n: 'common.save' });
  const archive = h('button', { type: 'button', class: 'btn danger', id: 'term-archive', i18n: 'term.archive' });
  const state = h('p', { class: 'term-state', id: 'term-state', role: 'status' });
  const form = h('form', { class: 'section-body course-term', novalidate: true },
    state,
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'term-ends', i18n: 'term.endsAt' }), ends,
        h('p', { class: 'muted small', i18n: 'term.endsAt.hint' })),
      h('div', { class: 'field' }, h('label', { for: 'term-retention', i18n: 'term.retention' }), days,
        h('p', { class: 'muted small', i18n: 'term.retention.hint' }))),
    h('div', { class: 'form-actions' }, archive, h('span', { style: 'flex:1' }), save));

  function show() {
    const archived = course.state === 'archived';
    form.dataset.state = course.state;
    ends.disabled = archived;
    archive.hidden = archived;
    if (archived) bind(state, 'term.state.archived', { at: absoluteTime(course.archived_at) });
    else if (course.ends_at) bind(state, 'term.state.ends', { at: absoluteTime(course.ends_at) });
    else bind(state, 'term.state.noEnd');
  }
  show();

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const n = Number(days.value);
    if (!Number.isInteger(n) || n < 0 || n > 3650) { days.focus(); toast(days.validationMessage || '0–3650', 'error'); return; }
    const body = { retention_days: n };
    if (course.state !== 'archived') body.ends_at = ends.value ? new Date(ends.value).toISOString() : null;
    save.disabled = true;
    try {
      course = await api('PATCH', `/api/courses/${encodeURIComponent(course.id)}`, body);
      show();
      toast(t('term.saved'), 'success');
    } catch (err) {
      toastError(err);
    }
    save.disabled = false;
  });
  archive.addEventListener('click', async () => {
    const ok = await confirmDialog({ title: 'term.archive.title', body: 'term.archive.body', confirm: 'term.archive', danger: true });
    if (!ok) return;
    archive.disabled = true;
    try {
      course = await post(`/api/courses/${encodeURIComponent(course.id)}/archive`);
      show();
    } catch (err) {
      toastError(err);
    }
    archive.disabled = false;
  });
  return form;
}

/**
 * The banner of the desktop page: whether the VM's course ends or ended,
 * and until when the student can download their work. `el` is shown or
 * hidden; the text follows the page's language.
 */
export async function termBanner(courseId, el) {
  let list;
  try { list = await get('/api/me/term'); } catch { return; }
  const n = list.find((c) => c.course_id === courseId);
  el.hidden = !n;
  if (!n) return;
  el.dataset.state = n.state;
  const args = { code: n.code, end: absoluteTime(n.ends_at), until: absoluteTime(n.download_until) };
  const key = n.held ? `term.banner.${n.state}.held` : `term.banner.${n.state}`;
  replace(el, h('span', { i18n: [key, args] }), ' ', h('a', { href: '#/me', i18n: 'term.banner.more' }));
}
