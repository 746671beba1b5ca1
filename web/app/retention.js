// Retention and erasure, for admins (issue 20): holds that keep a course or
// a student from being erased at the end of a term (add with a reason,
// release), and every erase record (what, whose, when, by which rule).
//
// Names, codes and reasons are rendered with textContent through h().

import { t } from './i18n.js';
import { h, replace, toast, toastError, absoluteTime, confirmDialog } from './ui.js';
import { get, post, del } from './api.js';

export function mount(container) {
  let stopped = false;
  let courses = [];
  let users = [];
  const kind = h('select', { id: 'hold-kind' },
    h('option', { value: 'course', i18n: 'retention.kind.course' }),
    h('option', { value: 'user', i18n: 'retention.kind.user' }));
  const subject = h('select', { id: 'hold-subject', required: true });
  const reason = h('input', { id: 'hold-reason', required: true, maxlength: 500, autocomplete: 'off' });
  const add = h('button', { type: 'submit', class: 'btn primary', id: 'hold-add', i18n: 'retention.add' });
  const form = h('form', { class: 'card pad hold-form', novalidate: true },
    h('h2', { i18n: 'retention.addTitle' }),
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'hold-kind', i18n: 'retention.kind' }), kind),
      h('div', { class: 'field' }, h('label', { for: 'hold-subject', i18n: 'retention.subject' }), subject),
      h('div', { class: 'field' }, h('label', { for: 'hold-reason', i18n: 'retention.reason' }), reason)),
    h('div', { class: 'form-actions' }, add));
  const holds = h('div', { id: 'holds', 'aria-busy': 'true' });
  const records = h('div', { id: 'erasures', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'retention.title' }), h('p', { class: 'muted', i18n: 'retention.subtitle' }))),
    h('section', { class: 'card pad' }, h('h2', { i18n: 'retention.holds' }), holds),
    form,
    h('section', { class: 'card pad' }, h('h2', { i18n: 'retention.records' }), records));

  const userName = (id) => (users.find((u) => u.id === id) || {}).username || id;

  function fillSubjects() {
    const list = kind.value === 'course'
      ? courses.map((c) => [c.id, `${c.code} · ${c.name}`])
      : users.filter((u) => u.role === 'student').map((u) => [u.id, u.display_name ? `${u.display_name} (${u.username})` : u.username]);
    replace(subject, list.map(([value, label]) => h('option', { value }, label)));
  }
  kind.addEventListener('change', fillSubjects);

  async function load() {
    try {
      const [c, u, hs, es] = await Promise.all([get('/api/courses'), get('/api/users'), get('/api/term-holds'), get('/api/erasures')]);
      if (stopped) return;
      courses = c;
      users = u;
      fillSubjects();
      showHolds(hs);
      showRecords(es);
    } catch (err) {
      toastError(err);
    }
  }

  function showHolds(list) {
    holds.removeAttribute('aria-busy');
    if (!list.length) { replace(holds, h('p', { class: 'empty', i18n: 'retention.noHolds' })); return; }
    replace(holds, h('div', { class: 'table-wrap', tabindex: '0' }, h('table', { class: 'data holds-table' },
      h('thead', {}, h('tr', {}, ['retention.subject', 'retention.reason', 'retention.by', 'retention.since', 'retention.actions']
        .map((k) => h('th', { scope: 'col', i18n: k })))),
      h('tbody', {}, list.map((hd) => {
        const release = h('button', { type: 'button', class: 'btn small', dataset: { action: 'release' }, i18n: 'retention.release' });
        release.addEventListener('click', async () => {
          const ok = await confirmDialog({ title: 'retention.release', body: 'retention.release.body', confirm: 'retention.release', danger: true });
          if (!ok) return;
          try { await del(`/api/term-holds/${encodeURIComponent(hd.id)}`); load(); } catch (err) { toastError(err); }
        });
        return h('tr', { dataset: { holdId: hd.id, kind: hd.course_id ? 'course' : 'user' } },
          h('td', {}, hd.course_code ? t('retention.ofCourse', { code: hd.course_code }) : t('retention.ofUser', { name: hd.username || '' })),
          h('td', {}, hd.reason), h('td', {}, hd.created_by), h('td', {}, absoluteTime(hd.created_at)), h('td', {}, release));
      })))));
  }

  function showRecords(list) {
    records.removeAttribute('aria-busy');
    if (!list.length) { replace(records, h('p', { class: 'empty', i18n: 'retention.noRecords' })); return; }
    replace(records, h('div', { class: 'table-wrap', tabindex: '0' }, h('table', { class: 'data erasures-table' },
      h('thead', {}, h('tr', {}, ['mydata.erasedAt', 'retention.whose', 'mydata.erasedCourse', 'mydata.erasedWhat', 'mydata.erasedRule']
        .map((k) => h('th', { scope: 'col', i18n: k })))),
      h('tbody', {}, list.map((e) => h('tr', { dataset: { erasureId: e.id } },
        h('td', {}, absoluteTime(e.at)), h('td', {}, userName(e.user_id)), h('td', {}, e.course_code),
        h('td', { i18n: ['mydata.what.layer', { name: e.vm_name }] }), h('td', { i18n: `mydata.rule.${e.rule}` })))))));
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!subject.value) { subject.focus(); return; }
    if (!reason.value.trim()) { reason.focus(); toast(t('retention.reasonNeeded'), 'error'); return; }
    add.disabled = true;
    try {
      await post('/api/term-holds', { [kind.value === 'course' ? 'course_id' : 'user_id']: subject.value, reason: reason.value.trim() });
      reason.value = '';
      toast(t('retention.added'), 'success');
      await load();
    } catch (err) {
      toastError(err);
    }
    add.disabled = false;
  });

  load();
  return { unmount() { stopped = true; } };
}
