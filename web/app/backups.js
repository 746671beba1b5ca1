// Backups, for admins: the repository and schedule, the last run, the age of
// the last good backup overall and per item (each personal layer, and the
// control plane), and a run-now button. The page refreshes while a run is in
// progress.
//
// Server text (errors, names) is rendered with textContent through h().

import { t, lang } from './i18n.js';
import { h, replace, toast, toastError, formatBytes } from './ui.js';
import { get, post } from './api.js';

const when = (iso) => (iso ? new Date(iso).toLocaleString(lang()) : t('common.none'));

/** Seconds as a short age ("5 h", "3 d"), in the UI's language. */
export function ageText(secs) {
  if (secs === null || secs === undefined) return t('backup.never');
  if (secs < 3600) return t('backup.age.min', { n: Math.floor(secs / 60) });
  if (secs < 2 * 86400) return t('backup.age.h', { n: Math.floor(secs / 3600) });
  return t('backup.age.d', { n: Math.floor(secs / 86400) });
}

export function mount(container) {
  let stopped = false;
  let timer = null;
  const run = h('button', { type: 'button', class: 'btn primary', id: 'bk-run', i18n: 'backup.runNow' });
  const summary = h('div', { id: 'bk-summary', 'aria-busy': 'true' });
  const items = h('div', { id: 'bk-items' });
  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'backup.title' }), h('p', { class: 'muted', i18n: 'backup.subtitle' })),
      h('div', { class: 'page-actions' }, run)),
    summary, h('h2', { i18n: 'backup.items' }), items);

  function show(st) {
    summary.removeAttribute('aria-busy');
    run.disabled = !st.configured || st.running;
    const last = st.last_run;
    const lastText = !last ? t('backup.noRun')
      : !last.finished_at ? t('backup.running')
        : t(last.ok ? 'backup.lastOk' : 'backup.lastFailed', {
          when: when(last.started_at), up: last.backed_up, same: last.unchanged, skipped: last.skipped, failed: last.failed,
        });
    replace(summary, h('section', {
      class: `card pad backup-summary${last && !last.ok && last.finished_at ? ' is-failed' : ''}`,
      dataset: { configured: String(st.configured), running: String(st.running), ok: last ? String(last.ok) : '' },
    },
    st.configured ? null : h('p', { class: 'form-error', id: 'bk-not-configured', i18n: 'backup.notConfigured' }),
    h('dl', { class: 'kv' },
      h('dt', { i18n: 'backup.repository' }), h('dd', { id: 'bk-repo' }, st.repository || t('common.none')),
      h('dt', { i18n: 'backup.schedule' }), h('dd', {}, st.schedule === 'off' ? t('backup.scheduleOff') : t('backup.scheduleAt', { at: st.schedule })),
      h('dt', { i18n: 'backup.keep' }), h('dd', {}, st.keep ? t('backup.keepText', st.keep) : t('common.none')),
      h('dt', { i18n: 'backup.lastRun' }), h('dd', { id: 'bk-last' }, lastText,
        last && last.error ? [h('br'), h('span', { class: 'small muted' }, last.error)] : null),
      h('dt', { i18n: 'backup.lastGood' }), h('dd', { id: 'bk-age', dataset: { age: String(st.age_secs ?? '') } },
        st.last_good_at ? t('backup.ago', { age: ageText(st.age_secs), when: when(st.last_good_at) }) : t('backup.never')),
      h('dt', { i18n: 'backup.lastCheck' }), h('dd', {}, st.last_check_at
        ? t(st.last_check_ok ? 'backup.checkOk' : 'backup.checkFailed', { when: when(st.last_check_at) })
        : t('backup.never')),
      last ? [h('dt', { i18n: 'backup.added' }), h('dd', {}, formatBytes(last.bytes_added))] : null)));
    if (!st.items.length) {
      replace(items, h('div', { class: 'card pad empty', i18n: 'backup.noItems' }));
      return;
    }
    replace(items, h('div', { class: 'card table-wrap' }, h('table', { class: 'data', id: 'bk-table' },
      h('thead', {}, h('tr', {}, ['item', 'owner', 'lastGood', 'age', 'failures', 'note'].map((c) => h('th', { i18n: `backup.col.${c}` })))),
      h('tbody', {}, st.items.map((it) => h('tr', { dataset: { subject: it.subject, failures: String(it.failures) }, class: it.failures ? 'is-failed' : '' },
        h('td', {}, it.subject === 'control' ? h('span', { i18n: 'backup.control' })
          : [it.vm_name || it.subject, it.course ? h('span', { class: 'muted small' }, ` · ${it.course}`) : null]),
        h('td', {}, it.owner || ''),
        h('td', {}, when(it.last_good_at)),
        h('td', {}, ageText(it.age_secs)),
        h('td', {}, String(it.failures)),
        h('td', { class: 'small' }, it.last_error || '')))))));
  }

  async function load() {
    let st;
    try { st = await get('/api/backups'); } catch (err) { if (!stopped) toastError(err); return; }
    if (stopped) return;
    show(st);
    clearTimeout(timer);
    // Follow a run while it lasts; otherwise a slow refresh.
    timer = setTimeout(load, st.running ? 2000 : 30000);
  }
  run.addEventListener('click', async () => {
    run.disabled = true;
    try {
      await post('/api/backups', {});
      toast(t('backup.started'), 'success');
    } catch (err) { toastError(err); }
    load();
  });
  load();
  return { unmount() { stopped = true; clearTimeout(timer); } };
}
