// A personal VM's storage panel (a <details> under the VM's row): snapshots
// (take, list, revert, delete, the quota), export (the re-importable tar and
// a standalone qcow2) and import of an export archive with what its checks
// said; the layer's backup points, each of which can be restored (the
// current layer is then kept as the backup snapshot). Snapshots, restore,
// export and import all need the VM stopped (the server
// answers 409 vm_running otherwise): the controls say so and are disabled
// while it runs. Data is loaded when the panel is opened, and again after
// every change.

import { t, bind } from './i18n.js';
import { h, icon, replace, formatBytes, relativeTime, absoluteTime, toast, toastError, errorText, confirmDialog } from './ui.js';
import { get, post, del, upload } from './api.js';

export function vmPanel(vm) {
  let current = vm;
  let loaded = false;
  let snaps = [];
  let quota = null;
  let busy = false;
  const base = `/api/vms/${encodeURIComponent(vm.id)}`;

  // ---- snapshots
  const quotaText = h('span', { class: 'muted small snap-quota' });
  const stoppedHint = h('p', { class: 'muted small stop-hint', i18n: 'panel.stopFirst' });
  const snapList = h('ul', { class: 'snap-list' });
  const snapName = h('input', { class: 'snap-name', maxlength: 64, autocomplete: 'off', required: true, i18nAria: 'panel.snap.name', i18nPh: 'panel.snap.name' });
  const snapTake = h('button', { type: 'submit', class: 'btn small primary snap-take' }, icon('plus'), h('span', { i18n: 'panel.snap.take' }));
  const snapForm = h('form', { class: 'snap-form', novalidate: true }, snapName, snapTake);

  // ---- export
  const exportTar = h('a', { class: 'btn small export-tar', download: '' }, icon('download'), h('span', { i18n: 'panel.export.tar' }));
  const exportQcow = h('a', { class: 'btn small export-qcow2', download: '' }, icon('download'), h('span', { i18n: 'panel.export.qcow2' }));
  const runCmd = h('code', { class: 'run-cmd' });
  const runLine = h('p', { class: 'muted small', hidden: true }, h('span', { i18n: 'panel.export.run' }), ' ', runCmd);

  // ---- import
  const importFile = h('input', { type: 'file', class: 'import-file', accept: '.tar', i18nAria: 'panel.import.file' });
  const importBtn = h('button', { type: 'submit', class: 'btn small import-go' }, icon('upload'), h('span', { i18n: 'panel.import.go' }));
  const importProgress = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const importResult = h('div', { class: 'import-result', 'aria-live': 'polite' });
  const importForm = h('form', { class: 'import-form', novalidate: true }, importFile, importBtn, importProgress);

  const diskLine = h('p', { class: 'muted small disk-line' });

  // ---- carry-over: the disk of this student's VM in an earlier course
  // (the server says why when the templates do not build on each other).
  const carryFrom = h('select', { class: 'carry-from', i18nAria: 'panel.carry.from' });
  const carryBtn = h('button', { type: 'submit', class: 'btn small carry-go' }, h('span', { i18n: 'panel.carry.go' }));
  const carryForm = h('form', { class: 'carry-form panel-row', novalidate: true }, carryFrom, carryBtn);
  const carrySection = h('section', { class: 'panel-carry', hidden: true },
    h('h4', { i18n: 'panel.carry.title' }),
    h('p', { class: 'muted small', i18n: 'panel.carry.help' }),
    carryForm);

  // ---- backups (nightly backup points of the layer; restore one)
  const backupList = h('ul', { class: 'backup-list' });
  let points = [];

  const el = h('details', { class: 'vm-panel' },
    h('summary', { i18n: 'panel.summary' }),
    h('div', { class: 'vm-panel-body' },
      stoppedHint,
      h('section', { class: 'panel-snaps' },
        h('div', { class: 'panel-head' }, h('h4', { i18n: 'panel.snap.title' }), quotaText),
        snapList, snapForm),
      h('section', { class: 'panel-backups' },
        h('h4', { i18n: 'panel.backup.title' }),
        h('p', { class: 'muted small', i18n: 'panel.backup.help' }),
        backupList),
      h('section', { class: 'panel-export' },
        h('h4', { i18n: 'panel.export.title' }),
        h('p', { class: 'muted small', i18n: 'panel.export.help' }),
        h('div', { class: 'panel-row' }, exportTar, exportQcow), runLine),
      h('section', { class: 'panel-import' },
        h('h4', { i18n: 'panel.import.title' }),
        h('p', { class: 'muted small', i18n: 'panel.import.help' }),
        importForm, importResult),
      carrySection,
      diskLine));

  const stopped = () => current.state === 'stopped' || current.state === 'error';

  function renderSnaps() {
    if (quota !== null) bind(quotaText, 'panel.snap.quota', { n: snaps.length, max: quota });
    if (!snaps.length) { replace(snapList, h('li', { class: 'muted small', i18n: 'panel.snap.none' })); return; }
    replace(snapList, snaps.map((s) => {
      const revert = h('button', { type: 'button', class: 'btn small', dataset: { action: 'revert' } }, icon('reset'), h('span', { i18n: 'panel.snap.revert' }));
      const remove = h('button', { type: 'button', class: 'btn small danger-text', dataset: { action: 'delete' } }, h('span', { i18n: 'panel.snap.delete' }));
      revert.disabled = remove.disabled = !stopped() || busy;
      revert.addEventListener('click', () => act(revert, {
        title: ['panel.snap.revert.title', { name: s.name }], body: 'panel.snap.revert.body', confirm: 'panel.snap.revert', danger: true,
      }, async () => {
        await post(`${base}/snapshots/${encodeURIComponent(s.id)}/revert`);
        toast(t('panel.snap.reverted', { name: s.name }), 'success');
      }));
      remove.addEventListener('click', () => act(remove, {
        title: ['panel.snap.delete.title', { name: s.name }], body: 'panel.snap.delete.body', confirm: 'panel.snap.delete', danger: true,
      }, async () => {
        await del(`${base}/snapshots/${encodeURIComponent(s.id)}`);
        toast(t('panel.snap.deleted', { name: s.name }), 'success');
      }));
      const when = h('span', { class: 'muted small', title: absoluteTime(s.created_at) }, relativeTime(s.created_at));
      return h('li', { class: 'snap', dataset: { snap: s.name, kind: s.kind } },
        h('span', { class: 'snap-label' }, h('strong', {}, s.name), ' ',
          s.kind === 'backup' ? h('span', { class: 'chip', i18n: 'panel.snap.backup' }) : null, ' ', when,
          s.size_bytes != null ? h('span', { class: 'muted small' }, ` · ${formatBytes(s.size_bytes)}`) : null),
        h('span', { class: 'snap-actions' }, revert, remove));
    }));
  }

  function renderBackups() {
    if (!points.length) { replace(backupList, h('li', { class: 'muted small', i18n: 'panel.backup.none' })); return; }
    replace(backupList, points.map((p) => {
      const restore = h('button', { type: 'button', class: 'btn small', dataset: { action: 'restore' } }, icon('reset'), h('span', { i18n: 'panel.backup.restore' }));
      restore.disabled = !stopped() || busy;
      const at = absoluteTime(p.at);
      restore.addEventListener('click', () => act(restore, {
        title: ['panel.backup.restore.title', { when: at }], body: 'panel.backup.restore.body', confirm: 'panel.backup.restore', danger: true,
      }, async () => {
        await post(`${base}/restore`, { backup_id: p.id });
        toast(t('panel.backup.restored', { when: at }), 'success');
      }));
      const filesBtn = h('button', { type: 'button', class: 'btn small', dataset: { action: 'files' }, 'aria-expanded': 'false' }, h('span', { i18n: 'panel.backup.files' }));
      const files = h('div', { class: 'backup-files', hidden: true });
      filesBtn.addEventListener('click', () => {
        const open = files.hidden;
        files.hidden = !open;
        filesBtn.setAttribute('aria-expanded', String(open));
        if (open) browse(p, files, '/');
      });
      return h('li', { class: 'backup-point', dataset: { id: p.id, kind: p.kind } },
        h('span', { class: 'snap-label' }, h('strong', {}, at), ' ',
          h('span', { class: 'muted small', title: at }, relativeTime(p.at)),
          h('span', { class: 'muted small' }, ` · ${formatBytes(p.layer_bytes)}`),
          sourceNote(p)),
        h('span', { class: 'snap-actions' }, filesBtn, restore),
        files);
    }));
  }

  /** How a point read the disk, when the VM was running: the whole disk, or only what changed (and how much). */
  function sourceNote(p) {
    if (p.source !== 'running_whole' && p.source !== 'running_changes') return null;
    const note = h('span', { class: 'muted small backup-source', dataset: { source: p.source } });
    if (p.source === 'running_whole') return [' · ', bind(note, 'panel.backup.source.whole')];
    return [' · ', bind(note, 'panel.backup.source.changes', { read: formatBytes(p.disk_read_bytes ?? 0) })];
  }

  /** Lists `path` of a backup point's disk in `box`: folders open in place, files download. */
  async function browse(p, box, path) {
    const url = (q) => `${base}/backups/${encodeURIComponent(p.id)}/files?path=${encodeURIComponent(q)}`;
    replace(box, h('p', { class: 'muted small', i18n: 'panel.backup.reading' }));
    let dir;
    try { dir = await get(url(path)); } catch (err) { replace(box, h('p', { class: 'vm-error' }, errorText(err))); return; }
    const join = (name) => (dir.path === '/' ? `/${name}` : `${dir.path}/${name}`);
    const up = dir.path === '/' ? null : dir.path.slice(0, dir.path.lastIndexOf('/')) || '/';
    replace(box,
      h('p', { class: 'small backup-path' }, h('code', {}, dir.path)),
      h('ul', { class: 'backup-entries' },
        up ? h('li', {}, h('button', { type: 'button', class: 'btn small ghost', onclick: () => browse(p, box, up) }, '..')) : null,
        dir.entries.length ? null : h('li', { class: 'muted small', i18n: 'panel.backup.empty' }),
        dir.entries.map((e) => h('li', { dataset: { name: e.name, kind: e.kind } },
          e.kind === 'dir'
            ? h('button', { type: 'button', class: 'btn small ghost', onclick: () => browse(p, box, join(e.name)) }, `${e.name}/`)
            : e.kind === 'file'
              ? [h('a', { href: url(join(e.name)), download: e.name }, e.name), h('span', { class: 'muted small' }, ` ${formatBytes(e.size)}`)]
              : h('span', { class: 'muted' }, e.name)))));
  }

  /** Asks, runs `f`, reloads; the button shows progress meanwhile. */
  async function act(btn, dialog, f) {
    if (dialog && !(await confirmDialog(dialog))) return;
    busy = true;
    btn.classList.add('busy');
    sync();
    try { await f(); } catch (err) { toastError(err); }
    busy = false;
    btn.classList.remove('busy');
    await load();
  }

  async function load() {
    try {
      const [list, disk] = await Promise.all([get(`${base}/snapshots`), get(`${base}/disk`).catch(() => null)]);
      snaps = list;
      if (disk) {
        quota = disk.snapshot_quota ?? quota;
        bind(diskLine, 'panel.disk', { used: formatBytes(disk.overlay_bytes), backup: formatBytes(disk.backup_bytes), size: formatBytes(disk.virtual_size_bytes) });
      }
      loaded = true;
      renderSnaps();
      sync();
    } catch (err) { toastError(err); }
    try {
      points = await get(`${base}/backups`);
      renderBackups();
      sync();
    } catch (err) { toastError(err); }
    try {
      // The student's other course VMs, named by course (archived ones too).
      const [vms, courses] = await Promise.all([get('/api/vms'), get('/api/courses')]);
      const code = new Map(courses.map((c) => [c.id, c.code]));
      const others = vms.filter((v) => v.id !== current.id && v.course_id && v.owner_id === current.owner_id);
      replace(carryFrom, others.map((v) => h('option', { value: v.id }, `${code.get(v.course_id) || ''} · ${v.name}`)));
      carrySection.hidden = !others.length;
      sync();
    } catch { /* no carry-over offered */ }
    try {
      const m = await get(`${base}/export/manifest`);
      runCmd.textContent = m.standalone_command || '';
      runLine.hidden = !m.standalone_command;
    } catch { /* the links still work */ }
  }

  function setLink(a, href, on) {
    if (on) { a.href = href; a.removeAttribute('aria-disabled'); a.classList.remove('disabled'); }
    else { a.removeAttribute('href'); a.setAttribute('aria-disabled', 'true'); a.classList.add('disabled'); }
  }

  function sync() {
    const ok = stopped() && !busy;
    stoppedHint.hidden = stopped();
    snapName.disabled = snapTake.disabled = !ok || (quota !== null && snaps.length >= quota);
    importFile.disabled = importBtn.disabled = !ok;
    carryFrom.disabled = carryBtn.disabled = !ok;
    setLink(exportTar, `${base}/export`, ok);
    setLink(exportQcow, `${base}/export?standalone=true`, ok);
    for (const b of snapList.querySelectorAll('button')) b.disabled = !ok;
    for (const b of backupList.querySelectorAll('[data-action=restore]')) b.disabled = !ok;
  }

  snapForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = snapName.value.trim();
    if (!name) { snapName.focus(); return; }
    act(snapTake, null, async () => {
      await post(`${base}/snapshots`, { name });
      snapName.value = '';
      toast(t('panel.snap.taken', { name }), 'success');
    });
  });

  importForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = importFile.files[0];
    if (!f) { toast(t('panel.import.choose'), 'error'); importFile.focus(); return; }
    const ok = await confirmDialog({ title: ['panel.import.title.confirm', { name: current.name }], body: 'panel.import.body', confirm: 'panel.import.go', danger: true });
    if (!ok) return;
    replace(importResult);
    await act(importBtn, null, async () => {
      try {
        const r = await upload(`${base}/import`, f, (done, total, finished) => {
          if (finished) bind(importProgress, 'panel.import.checking');
          else bind(importProgress, 'tpl.upload.progress', { pct: total ? Math.floor((done / total) * 100) : 0, done: formatBytes(done), total: formatBytes(total) });
        });
        replace(importResult, h('p', { class: 'match-ok import-ok', i18n: ['panel.import.done', { backup: r.backup.name }] }));
        importFile.value = '';
      } catch (err) {
        // The checks' verdict (bad_archive, template_mismatch, corrupt_export, …) stays on screen.
        replace(importResult, h('p', { class: 'vm-error import-error', dataset: { code: err.code || '' } }, errorText(err)));
      } finally {
        replace(importProgress);
      }
    });
  });

  carryForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!carryFrom.value) return;
    const from = carryFrom.selectedOptions[0].textContent;
    await act(carryBtn, { title: ['panel.carry.confirm', { from }], body: 'panel.carry.body', confirm: 'panel.carry.go' }, async () => {
      await post(`${base}/carry-over`, { from_vm_id: carryFrom.value });
      toast(t('panel.carry.done', { from }), 'success');
    });
  });

  el.addEventListener('toggle', () => { if (el.open && !loaded) load(); });

  return {
    el,
    update(v) {
      const was = stopped();
      current = v;
      if (loaded) { sync(); if (was !== stopped()) load(); }
    },
  };
}
