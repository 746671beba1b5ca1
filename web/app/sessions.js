// Class time: a course's timetable (/api/courses/{id}/sessions). The
// teacher's card on the class view lists the sessions (one-off or weekly,
// in the lab's wall clock), adds and edits them in a form, deletes them and
// imports an iCalendar (.ics) file, showing what was skipped and why. A
// student's course card shows the next sessions.
//
// Times are shown in the lab's wall clock (the server's `utc_offset`), not
// the browser's zone: a class at 08:00 is at 08:00 on every student's page.

import { t, onLangChange, lang } from './i18n.js';
import { h, button, replace, toast, toastError, confirmDialog, errorText } from './ui.js';
import { get, post, del, api } from './api.js';

const path = (courseId) => `/api/courses/${encodeURIComponent(courseId)}/sessions`;

/** Minutes east of UTC of an offset like "+08:00". */
function offsetMinutes(off) {
  const m = /^([+-])(\d\d):(\d\d)$/.exec(off || '');
  if (!m) return 0;
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

/** An instant as the lab's wall clock: a Date whose UTC fields are the lab's. */
function labClock(iso, off) {
  return new Date(Date.parse(iso) + offsetMinutes(off) * 60000);
}

function labDay(iso, off) {
  return labClock(iso, off).toLocaleDateString(lang(), { timeZone: 'UTC', weekday: 'short', month: 'short', day: 'numeric' });
}

function labTime(iso, off) {
  return labClock(iso, off).toLocaleTimeString(lang(), { timeZone: 'UTC', hour: '2-digit', minute: '2-digit', hour12: false });
}

/** "Mon, Sep 2, 08:00–09:40" of one occurrence. */
export function occurrenceText(o, off) {
  return `${labDay(o.starts_at, off)}, ${labTime(o.starts_at, off)}–${labTime(o.ends_at, off)}`;
}

function whenText(s) {
  const off = s.local.utc_offset;
  if (!s.weekly_until) return occurrenceText(s, off);
  const day = labClock(s.starts_at, off).toLocaleDateString(lang(), { timeZone: 'UTC', weekday: 'long' });
  return t('class.weekly', { day, start: s.local.start, end: s.local.end, from: s.local.date, until: s.weekly_until });
}

/** The teacher's timetable card of a course. Returns { el }. */
export function sessionsCard(courseId) {
  let sessions = [];
  let editing = null; // the session being edited, or null to add
  const tbody = h('tbody', {});
  const empty = h('p', { class: 'muted empty-small', i18n: 'class.none' });
  const table = h('div', { class: 'table-wrap', tabindex: '0', hidden: true },
    h('table', { class: 'data', id: 'sessions-table' },
      h('thead', {}, h('tr', {}, ['class.col.title', 'class.col.when', 'class.col.next', 'class.col.actions']
        .map((k) => h('th', { scope: 'col', i18n: k })))),
      tbody));

  const title = h('input', { id: 'session-title', maxlength: 200, autocomplete: 'off' });
  const date = h('input', { id: 'session-date', type: 'date', required: true });
  const start = h('input', { id: 'session-start', type: 'time', required: true, value: '08:00' });
  const end = h('input', { id: 'session-end', type: 'time', required: true, value: '09:40' });
  const weekly = h('input', { id: 'session-weekly', type: 'checkbox' });
  const until = h('input', { id: 'session-until', type: 'date' });
  const exceptions = h('input', { id: 'session-exceptions', autocomplete: 'off', placeholder: '2026-10-01, 2026-10-08', spellcheck: 'false' });
  const untilField = h('div', { class: 'field', hidden: true }, h('label', { for: 'session-until', i18n: 'class.until' }), until);
  const excField = h('div', { class: 'field', hidden: true }, h('label', { for: 'session-exceptions', i18n: 'class.exceptions' }), exceptions);
  const zone = h('p', { class: 'muted small', id: 'session-zone' });
  const submit = h('button', { type: 'submit', class: 'btn primary', id: 'session-submit', i18n: 'class.add' });
  const cancelEdit = button({ label: 'common.cancel', attrs: { id: 'session-cancel', hidden: true } });
  const form = h('form', { class: 'section-body session-form', id: 'session-form' },
    h('div', { class: 'spec-row' },
      h('div', { class: 'field' }, h('label', { for: 'session-title', i18n: 'class.title' }), title),
      h('div', { class: 'field' }, h('label', { for: 'session-date', i18n: 'class.date' }), date),
      h('div', { class: 'field' }, h('label', { for: 'session-start', i18n: 'class.start' }), start),
      h('div', { class: 'field' }, h('label', { for: 'session-end', i18n: 'class.end' }), end)),
    h('div', { class: 'field check' }, h('label', {}, weekly, h('span', { i18n: 'class.repeat' }))),
    untilField, excField,
    zone,
    h('div', { class: 'form-actions' }, cancelEdit, submit));

  const file = h('input', { id: 'session-ics', type: 'file', accept: '.ics,text/calendar' });
  const importResult = h('div', { class: 'import-result', id: 'session-import-result', 'aria-live': 'polite' });
  const importBox = h('div', { class: 'section-body' },
    h('div', { class: 'field' }, h('label', { for: 'session-ics', i18n: 'class.import' }), file),
    h('p', { class: 'muted small', i18n: 'class.import.help' }),
    importResult);

  const el = h('div', {}, h('div', { class: 'section-body' }, table, empty), form, importBox);

  weekly.addEventListener('change', () => {
    untilField.hidden = !weekly.checked;
    excField.hidden = !weekly.checked;
    until.required = weekly.checked;
  });

  function resetForm() {
    editing = null;
    form.reset();
    start.value = '08:00';
    end.value = '09:40';
    weekly.dispatchEvent(new Event('change'));
    submit.dataset.i18n = 'class.add';
    submit.textContent = t('class.add');
    cancelEdit.hidden = true;
  }
  cancelEdit.addEventListener('click', resetForm);

  function edit(s) {
    editing = s;
    title.value = s.title;
    date.value = s.local.date;
    start.value = s.local.start;
    end.value = s.local.end;
    weekly.checked = !!s.weekly_until;
    until.value = s.weekly_until || '';
    exceptions.value = (s.exceptions || []).join(', ');
    weekly.dispatchEvent(new Event('change'));
    submit.dataset.i18n = 'common.save';
    submit.textContent = t('common.save');
    cancelEdit.hidden = false;
    title.focus();
  }

  function render() {
    tbody.replaceChildren();
    for (const s of sessions) {
      const off = s.local.utc_offset;
      const editBtn = button({ label: 'class.edit', kind: 'small', attrs: { 'data-action': 'edit' } });
      const delBtn = button({ label: 'class.delete', kind: 'small danger', attrs: { 'data-action': 'delete' } });
      editBtn.addEventListener('click', () => edit(s));
      delBtn.addEventListener('click', () => remove(s));
      tbody.append(h('tr', { dataset: { id: s.id } },
        h('td', {}, s.title || t('class.untitled')),
        h('td', {}, whenText(s)),
        h('td', {}, s.next.length ? occurrenceText(s.next[0], off) : h('span', { class: 'muted', i18n: 'class.over' })),
        h('td', {}, h('div', { class: 'btn-group' }, editBtn, delBtn))));
    }
    table.hidden = sessions.length === 0;
    empty.hidden = sessions.length > 0;
    const off = sessions[0] ? sessions[0].local.utc_offset : null;
    zone.textContent = off ? t('class.zone', { offset: off }) : t('class.zoneLab');
  }

  async function load() {
    sessions = await get(path(courseId));
    render();
  }

  async function remove(s) {
    const ok = await confirmDialog({
      title: 'class.delete.title',
      body: ['class.delete.body', { title: s.title || t('class.untitled') }],
      confirm: 'class.delete',
      danger: true,
    });
    if (!ok) return;
    try {
      await del(`${path(courseId)}/${encodeURIComponent(s.id)}`);
      if (editing && editing.id === s.id) resetForm();
      await load();
    } catch (err) { toastError(err); }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { title: title.value.trim(), date: date.value, start: start.value, end: end.value };
    if (weekly.checked) {
      body.weekly_until = until.value;
      body.exceptions = exceptions.value.split(/[\s,;]+/).map((x) => x.trim()).filter(Boolean);
    }
    submit.disabled = true;
    try {
      if (editing) await api('PUT', `${path(courseId)}/${encodeURIComponent(editing.id)}`, body);
      else await post(path(courseId), body);
      toast(t(editing ? 'class.saved' : 'class.added'), 'success');
      resetForm();
      await load();
    } catch (err) {
      toastError(err);
    } finally {
      submit.disabled = false;
    }
  });

  file.addEventListener('change', async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    replace(importResult);
    try {
      const text = await f.text();
      const r = await api('POST', path(courseId), text, { raw: true, contentType: 'text/calendar' });
      const lines = [h('p', { i18n: ['class.import.done', { n: r.imported.length, skipped: r.skipped.length }] })];
      if (r.skipped.length) {
        lines.push(h('ul', { class: 'import-skipped' }, r.skipped.map((s) =>
          h('li', {}, h('strong', {}, s.summary || s.uid || '?'), ': ', s.reason))));
      }
      replace(importResult, lines);
      await load();
    } catch (err) {
      replace(importResult, h('p', { class: 'vm-error' }, errorText(err)));
    } finally {
      file.value = '';
    }
  });

  const offLang = onLangChange(render);
  load().catch(toastError);
  return { el, unmount: offLang };
}

/**
 * A student's "next sessions" line of a course card: the next three
 * occurrences of all its sessions. Returns { el }; hidden when there are none.
 */
export function upcomingSessions(courseId) {
  const list = h('ul', { class: 'upcoming-sessions' });
  const el = h('div', { class: 'upcoming', hidden: true, dataset: { course: courseId } },
    h('p', { class: 'muted small', i18n: 'class.upcoming' }), list);
  let items = [];
  let loaded = false;
  function render() {
    replace(list, items.map(({ o, s }) =>
      h('li', { class: 'small' }, occurrenceText(o, s.local.utc_offset), s.title ? ` · ${s.title}` : '')));
    el.hidden = items.length === 0;
  }
  get(path(courseId)).then((sessions) => {
    items = sessions.flatMap((s) => s.next.map((o) => ({ o, s })))
      .sort((a, b) => Date.parse(a.o.starts_at) - Date.parse(b.o.starts_at))
      .slice(0, 3);
    loaded = true;
    render();
  }).catch(() => { /* the course card works without its timetable */ });
  // The card has no unmount of its own: the listener goes once the card
  // has left the page.
  const off = onLangChange(() => {
    if (loaded && !el.isConnected) off();
    else render();
  });
  return { el };
}

/** The teacher's switch for the 15-minute extension of a course. Returns { el }. */
export function extensionToggle(courseId) {
  const rpath = `/api/courses/${encodeURIComponent(courseId)}/extension`;
  const box = h('input', { id: 'class-extension', type: 'checkbox' });
  const el = h('div', { class: 'section-body' },
    h('div', { class: 'field check' }, h('label', {}, box, h('span', { i18n: 'class.extension.allow' }))),
    h('p', { class: 'muted small', i18n: 'class.extension.hint' }));
  box.addEventListener('change', async () => {
    try {
      const r = await api('PUT', rpath, { allowed: box.checked });
      box.checked = r.allowed;
      toast(t(r.allowed ? 'class.extension.on' : 'class.extension.off'), 'success');
    } catch (err) {
      box.checked = !box.checked;
      toastError(err);
    }
  });
  get(rpath).then((r) => { box.checked = r.allowed; }, toastError);
  return { el };
}
