// My data (every user, for themselves): one download of everything pvce
// holds about them (GET /api/me/export), and — from the end-of-term rules —
// the records of what of theirs was erased, when and by which rule.
//
// Server text (course codes, rules) is rendered with textContent through h().

import { h, replace, toastError, absoluteTime } from './ui.js';
import { get } from './api.js';
// The course code and dates in the banners are arguments, never markup.

export function mount(container) {
  let stopped = false;
  // A plain link: the browser downloads with the session cookie and names
  // the file from the server's Content-Disposition.
  const download = h('a', { class: 'btn primary', id: 'my-export', href: '/api/me/export', download: '' },
    h('span', { i18n: 'mydata.download' }));
  const erasures = h('div', { id: 'my-erasures', 'aria-busy': 'true' });
  const ending = h('div', { id: 'my-term', 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'mydata.title' }), h('p', { class: 'muted', i18n: 'mydata.subtitle' }))),
    h('section', { class: 'card pad my-export' },
      h('h2', { i18n: 'mydata.exportTitle' }),
      h('p', { i18n: 'mydata.exportText' }),
      h('div', { class: 'form-actions' }, download)),
    h('section', { class: 'card pad my-term' },
      h('h2', { i18n: 'mydata.termTitle' }),
      ending),
    h('section', { class: 'card pad my-erasures' },
      h('h2', { i18n: 'mydata.erasedTitle' }),
      h('p', { class: 'muted', i18n: 'mydata.erasedText' }),
      erasures));

  async function loadTerm() {
    let list;
    try { list = await get('/api/me/term'); } catch (err) { toastError(err); return; }
    if (stopped) return;
    ending.removeAttribute('aria-busy');
    if (!list.length) { replace(ending, h('p', { class: 'empty', i18n: 'mydata.termNone' })); return; }
    replace(ending, h('ul', { class: 'term-list' }, list.map((n) => h('li', { class: 'term-banner', dataset: { courseId: n.course_id, state: n.state } },
      h('span', { i18n: [n.held ? `term.banner.${n.state}.held` : `term.banner.${n.state}`,
        { code: n.code, end: absoluteTime(n.ends_at), until: absoluteTime(n.download_until) }] })))));
  }

  async function load() {
    let list;
    try {
      list = await get('/api/erasures');
    } catch (err) {
      // Before the end-of-term rules exist on the server, there is nothing to show.
      if (err.status === 404) list = [];
      else { toastError(err); return; }
    }
    if (stopped) return;
    erasures.removeAttribute('aria-busy');
    if (!list.length) {
      replace(erasures, h('p', { class: 'empty', i18n: 'mydata.erasedNone' }));
      return;
    }
    replace(erasures, h('table', { class: 'data my-erasures-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', i18n: 'mydata.erasedAt' }), h('th', { scope: 'col', i18n: 'mydata.erasedCourse' }),
        h('th', { scope: 'col', i18n: 'mydata.erasedWhat' }), h('th', { scope: 'col', i18n: 'mydata.erasedRule' }))),
      h('tbody', {}, list.map((e) => h('tr', { dataset: { erasureId: e.id } },
        h('td', {}, absoluteTime(e.at)), h('td', {}, e.course_code || e.course_id || ''),
        h('td', { i18n: ['mydata.what.layer', { name: e.vm_name }] }), h('td', { i18n: `mydata.rule.${e.rule}` }))))));
  }
  loadTerm();
  load();
  return { unmount() { stopped = true; } };
}
