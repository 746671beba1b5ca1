// The admin's directory sync (issue 16), on the users page: "Preview"
// (a dry run: what a sync would change) and "Sync now" — accounts the LDAP
// directory removed or disabled are disabled (their sessions end), roles and
// course enrolments follow the directory. Shown only when an LDAP provider
// is configured. Below: the daily schedule and the recent syncs (scheduled,
// the admin's, the command line's) with what each changed.

import { bind } from './i18n.js';
import { h, replace, toastError, absoluteTime } from './ui.js';
import { get, post } from './api.js';

/** The card; `after` runs when a real sync changed accounts (to reload the list). */
export function directorySyncCard(after) {
  const history = h('div', { id: 'dirsync-history' });
  const result = h('div', { class: 'dirsync-result', 'aria-live': 'polite' });
  const preview = h('button', { type: 'button', class: 'btn', id: 'dirsync-preview', i18n: 'dirsync.preview' });
  const now = h('button', { type: 'button', class: 'btn primary', id: 'dirsync-now', i18n: 'dirsync.now' });
  const card = h('section', { class: 'card section', id: 'dirsync', hidden: true },
    h('div', { class: 'section-head' }, h('h2', { i18n: 'dirsync.title' })),
    h('div', { class: 'section-body' },
      h('p', { class: 'muted small', i18n: 'dirsync.hint' }),
      result,
      h('div', { class: 'form-actions' }, h('span', { style: 'flex:1' }), preview, now),
      h('h3', { class: 'small', i18n: 'dirsync.recent' }),
      history));
  get('/api/auth/providers', { quiet401: true }).then((list) => {
    card.hidden = !(Array.isArray(list) && list.some((p) => p.kind === 'ldap'));
    if (!card.hidden) loadHistory();
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
    const changes = changesOf(r);
    if (!changes) items.push(line('dirsync.nothing'));
    replace(result, h('ul', { class: 'dirsync-lines' }, items));
    return changes;
  };
  const changesOf = (r) => (r && Array.isArray(r.providers)
    ? r.providers.reduce((n, p) => n + p.disabled.length + p.role_changes.length + p.enrolled.length + p.left.length, 0)
    : 0);
  const summary = (r) => {
    const down = (r && Array.isArray(r.providers) ? r.providers : []).filter((p) => p.unavailable).map((p) => p.provider);
    if (down.length) return bind(h('span', { class: 'chip warn' }), 'dirsync.runUnavailable', { providers: down.join(', ') });
    const checked = r.providers.reduce((n, p) => n + p.checked, 0);
    return bind(h('span', {}), 'dirsync.runSummary', { checked, changes: changesOf(r) });
  };
  async function loadHistory() {
    try {
      const hist = await get('/api/directory/syncs?limit=5');
      const schedule = hist.schedule === 'off'
        ? bind(h('p', { class: 'muted small', id: 'dirsync-schedule' }), 'dirsync.scheduleOff')
        : bind(h('p', { class: 'muted small', id: 'dirsync-schedule' }), 'dirsync.schedule', { at: hist.schedule });
      const rows = hist.runs.map((run) => h('tr', {},
        h('td', {}, absoluteTime(new Date(run.at * 1000).toISOString())),
        h('td', { i18n: `dirsync.trigger.${run.trigger}` }),
        h('td', {}, summary(run.report))));
      replace(history, schedule, rows.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'dirsync-runs' },
          h('thead', {}, h('tr', {},
            h('th', { i18n: 'dirsync.col.at' }), h('th', { i18n: 'dirsync.col.trigger' }), h('th', { i18n: 'dirsync.col.result' }))),
          h('tbody', {}, rows)))
        : h('p', { class: 'muted small', i18n: 'dirsync.noRuns' }));
    } catch (err) {
      toastError(err);
    }
  }
  const run = async (dry) => {
    preview.disabled = now.disabled = true;
    try {
      const r = await post(`/api/directory/sync${dry ? '?dry_run=true' : ''}`, null);
      if (show(r) && !dry && after) after();
      if (!dry) loadHistory();
    } catch (err) {
      toastError(err);
    }
    preview.disabled = now.disabled = false;
  };
  preview.addEventListener('click', () => run(true));
  now.addEventListener('click', () => run(false));
  return card;
}
