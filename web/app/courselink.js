// A course's directory group (issue 16), on the teacher's class page: the
// attribute a campus provider reports and the value its members hold (an
// LDAP group → attribute `groups`). Members are enrolled at their next
// campus sign-in and at each directory sync; students the link enrolled who
// leave the group are unenrolled and keep their VMs and work.

import { bind } from './i18n.js';
import { h, toast, toastError } from './ui.js';
import { api } from './api.js';

/** The link's form for `course` (as GET /api/courses/{id} returns it). */
export function directoryLinkForm(course) {
  const link = course.directory_link || null;
  const attr = h('input', { id: 'link-attribute', maxlength: 64, spellcheck: 'false', autocapitalize: 'none', value: link ? link.attribute : 'groups' });
  const value = h('input', { id: 'link-value', maxlength: 256, spellcheck: 'false', autocapitalize: 'none', value: link ? link.value : '', placeholder: 'cs101-2026' });
  const save = h('button', { type: 'submit', class: 'btn primary', id: 'link-save', i18n: 'common.save' });
  const unlink = h('button', { type: 'button', class: 'btn', id: 'link-remove', i18n: 'course.link.remove', hidden: !link });
  const state = h('p', { class: 'muted small', id: 'link-state', role: 'status', 'aria-live': 'polite' });
  const show = (l) => {
    unlink.hidden = !l;
    if (l) bind(state, 'course.link.now', { attribute: l.attribute, value: l.value });
    else bind(state, 'course.link.none');
  };
  show(link);
  const put = async (body) => {
    save.disabled = true;
    try {
      const c = await api('PUT', `/api/courses/${encodeURIComponent(course.id)}/directory-link`, body);
      show(c.directory_link);
      if (!c.directory_link) value.value = '';
      toast(state.textContent, 'success');
    } catch (err) {
      toastError(err);
    }
    save.disabled = false;
  };
  const form = h('form', { class: 'section-body course-link-edit', novalidate: true },
    h('p', { class: 'muted small', i18n: 'course.link.hint' }),
    h('div', { class: 'field' }, h('label', { for: 'link-attribute', i18n: 'course.link.attribute' }), attr),
    h('div', { class: 'field' }, h('label', { for: 'link-value', i18n: 'course.link.value' }), value),
    h('div', { class: 'form-actions' }, state, h('span', { style: 'flex:1' }), unlink, save));
  unlink.addEventListener('click', () => put({ link: null }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!attr.value.trim()) { attr.focus(); return; }
    if (!value.value.trim()) { value.focus(); return; }
    put({ link: { attribute: attr.value.trim(), value: value.value.trim() } });
  });
  return form;
}
