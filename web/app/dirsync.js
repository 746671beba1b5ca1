// The admin's directory sync (issue 16), on the users page: "Preview"
// (a dry run: what a sync would change) and "Sync now" — accounts the LDAP
// directory removed or disabled are disabled (their sessions end), roles and
// course enrolments follow the directory. Shown only when an LDAP provider
// is configured.

import { bind } from './i18n.js';
import { h, replace, toastError } from './ui.js';
import { get, post } from './api.js';

/** The card; `after` runs when a real sync changed accounts (to reload the list). */
export function directorySyncCard(after) {
  const result = h('div', { class: 'dirsync-result', 'aria-live': 'polite' });
  const preview = h('button', { type: 'button', class: 'btn', id: 'dirsync-preview', i18n: 'dirsync.preview' });
  const now = h('button', { type: 'button', class: 'btn primary', id: 'dirsync-now', i18n: 'dirsync.now' });
  const card = h('section', { class: 'card section', id: 'dirsync', hidden: true },
    h('div', { class: 'section-head' }, h('h2', { i18n: 'dirsync.title' })),
    h('div', { class: 'section-body' },
      h('p', { class: 'muted small', i18n: 'dirsync.hint' }),
      result,
      h('div', { class: 'form-actions' }, h('span', { style: 'flex:1' }), preview, now)));
  get('/api/auth/providers', { quiet401: true }).then((list) => {
    card.hidden = !(Array.isArray(list) && list.some((p) => p.kind === 'ldap'));
  }).catch(() => {});

  const line = (key, args) => bind(h('li', {}), key, args);
  const show = (r) => {
    const dry = r.dry_run;
    const items = [];
    for (const p of r.providers) {
      if (p.unavailable) { items.push(line('dirsync.unavailable', { provider: p.provider })); continue; }
      items.push(line('dirsync.checked', { provider: p.provider, n: p.checked }));
      for (const u of p.disabled) items.push(line(dry ? 'dirsync.wouldDisable' : 'dirsync.disabled', { user: u }));
      for (const c of p.role_changes) items.push(line(dry ? 'dirsync.wouldRole' : 'dirsync.role', { user: c.username, from: c.from, to: c.to }));
      for (const c of p.enrolled) items.push(line(dry ? 'dirsync.wouldEnrol' : 'dirsync.enrolled', { user: c.username, course: c.course }));
      for (const c of p.left) items.push(line(dry ? 'dirsync.wouldLeave' : 'dirsync.left', { user: c.username, course: c.course }));
    }
    const changes = r.providers.reduce((n, p) => n + p.disabled.length + p.role_changes.length + p.enrolled.length + p.left.length, 0);
    if (!changes) items.push(line('dirsync.nothing'));
    replace(result, h('ul', { class: 'dirsync-lines' }, items));
    return changes;
  };
  const run = async (dry) => {
    preview.disabled = now.disabled = true;
    try {
      const r = await post(`/api/directory/sync${dry ? '?dry_run=true' : ''}`, null);
      if (show(r) && !dry && after) after();
    } catch (err) {
      toastError(err);
    }
    preview.disabled = now.disabled = false;
  };
  preview.addEventListener('click', () => run(true));
  now.addEventListener('click', () => run(false));
  return card;
}
