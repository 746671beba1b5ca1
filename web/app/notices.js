// Notifications: the list behind the bell in the top bar (newest first,
// unread marked; opening one marks it read and goes to its ticket) and the
// settings page (per event: in the app, by e-mail, by webhook; the address,
// the webhook URL and its format, the language of e-mails and webhooks).
//
// Subjects and texts come from the server rendered in the page's language;
// everything user-written in them is set with textContent through h().

import { t, lang, onLangChange } from './i18n.js';
import { h, icon, replace, relativeTime, absoluteTime, toast, toastError, errorText } from './ui.js';
import { api, get, post } from './api.js';

const KINDS = ['assigned', 'commented', 'escalated', 'resolved', 'callback'];
// Alerts of the lab's monitoring reach only the desk (staff and admins).
const DESK_KINDS = ['alert'];
// The end of a course's term reaches only its students.
const STUDENT_KINDS = ['term'];
const CHANNELS = [['in_app', 'notices.set.inApp'], ['email', 'notices.set.emailCol'], ['webhook', 'notices.set.webhookCol']];
const FORMATS = ['json', 'text', 'markdown', 'chat'];
const enc = encodeURIComponent;

/** Tells the bell in the top bar to count again. */
export function changed() {
  window.dispatchEvent(new Event('pvce:notifications'));
}

export function mount(container, params, ctx) {
  return ctx.kind === 'settings' ? settingsView(container, ctx.me) : listView(container);
}

function listView(container) {
  let stopped = false;
  let page = null;
  const body = h('div', { class: 'notices-body', 'aria-busy': 'true' });
  const readAll = h('button', { type: 'button', class: 'btn', id: 'notices-read-all' }, icon('check'), h('span', { i18n: 'notices.readAll' }));
  readAll.addEventListener('click', async () => {
    readAll.disabled = true;
    try {
      const r = await post('/api/me/notifications/read-all');
      toast(t('notices.markedAll', { n: r.marked }), 'success');
      changed();
      await load();
    } catch (err) { toastError(err); } finally { readAll.disabled = false; }
  });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'notices.title' }), h('p', { class: 'muted', i18n: 'notices.subtitle' })),
      h('div', { class: 'actions' }, readAll,
        h('a', { class: 'btn ghost', href: '#/notification-settings', id: 'notices-settings' }, icon('gear'), h('span', { i18n: 'notices.settings' })))),
    body);

  async function load() {
    try {
      page = await get(`/api/me/notifications?limit=100&lang=${enc(lang())}`);
      if (!stopped) render();
    } catch (err) { if (!stopped) toastError(err); }
  }

  async function open(n) {
    try {
      if (!n.read) await post(`/api/me/notifications/${enc(n.id)}/read`);
    } catch (err) { toastError(err); }
    changed();
    location.hash = target(n);
  }

  /**
   * A ticket's notification opens the ticket; a term's end the student's
   * courses (their VMs' cards, with Export); an alert's the alerts page.
   */
  function target(n) {
    if (n.ticket_id) return `#/tickets/${enc(n.ticket_id)}`;
    return n.kind === 'term' ? '#/courses' : '#/alerts';
  }

  function render() {
    body.removeAttribute('aria-busy');
    readAll.hidden = !page.unread;
    if (!page.items.length) {
      replace(body, h('div', { class: 'empty card' }, icon('bell'), h('p', { i18n: 'notices.empty' })));
      return;
    }
    replace(body, h('ul', { class: 'card notice-list', id: 'notice-list' }, page.items.map((n) => {
      const link = h('a', { href: target(n), class: 'notice-subject' }, n.subject);
      link.addEventListener('click', (e) => { e.preventDefault(); open(n); });
      return h('li', { class: `notice${n.read ? '' : ' unread'}`, dataset: { id: n.id, kind: n.kind, read: String(n.read) } },
        n.read ? null : h('span', { class: 'notice-dot', role: 'img', i18nAria: 'notices.unread' }),
        h('div', { class: 'notice-main' }, link,
          h('p', { class: 'muted small notice-text' }, n.text.split('\n').find((l) => l.trim()) || '')),
        h('time', { class: 'muted small', datetime: n.created_at, title: absoluteTime(n.created_at) }, relativeTime(n.created_at)));
    })));
  }

  const off = onLangChange(() => load());
  load();
  return { unmount() { stopped = true; off(); } };
}

function settingsView(container, me) {
  const role = me && me.role;
  const kinds = ['staff', 'admin'].includes(role) ? [...KINDS, ...DESK_KINDS]
    : role === 'student' ? [...KINDS, ...STUDENT_KINDS] : KINDS;
  let stopped = false;
  const form = h('form', { class: 'card pad notice-settings', id: 'notice-settings', novalidate: true, 'aria-busy': 'true' });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'notices.set.title' }), h('p', { class: 'muted', i18n: 'notices.set.subtitle' })),
      h('a', { class: 'btn ghost', href: '#/notifications' }, icon('back'), h('span', { i18n: 'notices.title' }))),
    form);

  function fill(s) {
    const langSel = h('select', { id: 'ns-lang' },
      h('option', { value: 'zh-CN' }, '中文'), h('option', { value: 'en' }, 'English'));
    langSel.value = s.lang;
    const email = h('input', { id: 'ns-email', type: 'email', autocomplete: 'email', maxlength: 254, value: s.email || '' });
    const hook = h('input', { id: 'ns-webhook', type: 'url', maxlength: 2048, value: s.webhook_url || '', spellcheck: 'false' });
    const format = h('select', { id: 'ns-format' }, FORMATS.map((f) => h('option', { value: f, i18n: `notices.format.${f}` })));
    format.value = s.webhook_format || 'json';
    const boxes = {};
    const rows = kinds.map((k) => h('tr', { dataset: { kind: k } },
      h('th', { scope: 'row', i18n: `notices.kind.${k}` }),
      CHANNELS.map(([c, label]) => {
        const box = h('input', { type: 'checkbox', id: `ns-${k}-${c}`, checked: Boolean(s.events[k] && s.events[k][c]) });
        box.setAttribute('data-i18n-aria', label);
        box.setAttribute('aria-label', t(label));
        boxes[`${k}.${c}`] = box;
        return h('td', { class: 'center' }, box);
      })));
    const hookHint = s.webhook_any_url ? null
      : h('p', { class: 'muted small', id: 'ns-webhook-hint' },
        s.webhook_allowed.length ? t('notices.set.webhookAllowed', { list: s.webhook_allowed.join(', ') }) : t('notices.set.webhookNone'));
    const save = h('button', { type: 'submit', class: 'btn primary', id: 'ns-save', i18n: 'common.save' });
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
    replace(form,
      h('div', { class: 'form-grid' },
        h('div', { class: 'field' }, h('label', { for: 'ns-lang', i18n: 'notices.set.lang' }), langSel),
        h('div', { class: 'field' }, h('label', { for: 'ns-email', i18n: 'notices.set.email' }), email,
          s.email_available ? null : h('p', { class: 'muted small', id: 'ns-email-off', i18n: 'notices.set.emailOff' })),
        h('div', { class: 'field' }, h('label', { for: 'ns-webhook', i18n: 'notices.set.webhook' }), hook, hookHint),
        h('div', { class: 'field' }, h('label', { for: 'ns-format', i18n: 'notices.set.webhookFormat' }), format)),
      h('div', { class: 'table-wrap' }, h('table', { class: 'data notice-prefs' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col', i18n: 'notices.set.event' }),
          CHANNELS.map(([, label]) => h('th', { scope: 'col', class: 'center', i18n: label })))),
        h('tbody', {}, rows))),
      error,
      h('div', { class: 'actions' }, save));
    form.onsubmit = async (e) => {
      e.preventDefault();
      error.hidden = true;
      const events = {};
      for (const k of kinds) {
        events[k] = {};
        for (const [c] of CHANNELS) events[k][c] = boxes[`${k}.${c}`].checked;
      }
      save.disabled = true;
      try {
        const next = await api('PUT', '/api/me/notification-settings', {
          lang: langSel.value,
          email: email.value.trim() || null,
          webhook_url: hook.value.trim() || null,
          webhook_format: format.value,
          events,
        });
        toast(t('notices.set.saved'), 'success');
        if (!stopped) fill(next);
      } catch (err) {
        error.hidden = false;
        error.textContent = errorText(err);
      } finally {
        save.disabled = false;
      }
    };
    form.removeAttribute('aria-busy');
  }

  (async () => {
    try {
      const s = await get('/api/me/notification-settings');
      if (!stopped) fill(s);
    } catch (err) { if (!stopped) toastError(err); }
  })();
  return { unmount() { stopped = true; } };
}
