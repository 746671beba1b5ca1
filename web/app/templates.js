// The template library as a tree (parent_id links it), and image import
// with an upload progress bar (#/templates, teachers and admins). The
// library's disk use (as stored vs. as flat copies) heads the tree; a ready
// template nobody uses can be deleted, and an admin can flatten one into a
// standalone copy (a deep chain reads faster, at the cost of the space).

import { t, bind } from './i18n.js';
import { h, icon, replace, formatBytes, formatNumber, toast, toastError, confirmDialog, errorText } from './ui.js';
import { get, post, del, upload } from './api.js';
import { sealDraft, abandonDraft } from './drafts.js';

const TPL_STATES = { ready: 'running', draft: 'starting', failed: 'error' };

export function mount(container, _params, { me }) {
  let stopped = false;
  const collapsed = new Set();
  const treeBox = h('div', { class: 'section-body', 'aria-busy': 'true' });
  const usage = h('p', { class: 'muted small tpl-usage', id: 'tpl-usage' });
  const parentSel = h('select', { id: 'up-parent' });
  const uploadCard = uploadForm(parentSel, () => load());

  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { i18n: 'tpl.title' }), h('p', { class: 'muted', i18n: 'tpl.subtitle' }))),
    h('div', { class: 'grid-2 tpl-layout' },
      h('section', { class: 'card' }, h('div', { class: 'section-head' }, usage), treeBox),
      h('div', { class: 'stack' }, matchCard(), uploadCard)));

  /** A draft's actions: open its build VM's console, seal, abandon. */
  function draftActions(x, buildVm) {
    const open = buildVm
      ? h('a', { class: 'btn small', href: `#/desktop/${buildVm.id}`, dataset: { action: 'console' } }, icon('monitor'), h('span', { i18n: 'tpl.draft.console' }))
      : h('span', { class: 'muted small', i18n: 'tpl.draft.noVm' });
    const seal = h('button', { type: 'button', class: 'btn small primary', dataset: { action: 'seal' } }, icon('upload'), h('span', { i18n: 'tpl.seal' }));
    const abandon = h('button', { type: 'button', class: 'btn small danger', dataset: { action: 'abandon' } }, h('span', { i18n: 'tpl.abandon' }));
    seal.addEventListener('click', async () => { if (await sealDraft(x, seal)) load(); });
    abandon.addEventListener('click', async () => { if (await abandonDraft(x, abandon)) load(); });
    return h('div', { class: 'tree-actions' }, open, seal, abandon);
  }

  /** A ready template's actions: delete when nothing uses it; flatten (admins). */
  function readyActions(x, unused) {
    const out = [];
    if (unused) {
      const b = h('button', { type: 'button', class: 'btn small danger-text', dataset: { action: 'delete' } }, h('span', { i18n: 'tpl.delete' }));
      bind(b, 'tpl.deleteAria', { name: x.name }, 'aria-label');
      b.addEventListener('click', async () => {
        const ok = await confirmDialog({ title: ['tpl.delete.title', { name: x.name }], body: 'tpl.delete.body', confirm: 'tpl.delete', danger: true });
        if (!ok) return;
        b.disabled = true;
        try {
          await del(`/api/templates/${encodeURIComponent(x.id)}`);
          toast(t('tpl.deleted', { name: x.name }), 'success');
          load();
        } catch (err) { toastError(err); b.disabled = false; }
      });
      out.push(b);
    }
    if (me.role === 'admin' && x.depth > 1) {
      const b = h('button', { type: 'button', class: 'btn small', dataset: { action: 'flatten' } }, h('span', { i18n: 'tpl.flatten' }));
      bind(b, 'tpl.flattenAria', { name: x.name }, 'aria-label');
      b.addEventListener('click', () => flattenDialog(x));
      out.push(b);
    }
    return out.length ? h('div', { class: 'tree-actions' }, out) : null;
  }

  function flattenDialog(x) {
    const name = h('input', { id: 'flatten-name', required: true, maxlength: 64, autocomplete: 'off', value: `${x.name}-flat`.slice(0, 64) });
    const ok = h('button', { type: 'submit', class: 'btn primary', i18n: 'tpl.flatten' });
    const cancel = h('button', { type: 'button', class: 'btn', i18n: 'common.cancel' });
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const form = h('form', { novalidate: true },
      h('div', { class: 'dialog-head' }, h('h2', { id: 'flatten-title', i18n: ['tpl.flatten.title', { name: x.name }] })),
      h('p', { i18n: ['tpl.flatten.body', { depth: x.depth }] }),
      h('div', { class: 'field' }, h('label', { for: 'flatten-name', i18n: 'tpl.flatten.name' }), name),
      err, h('div', { class: 'dialog-actions' }, cancel, ok));
    const dlg = h('dialog', { class: 'dialog', id: 'flatten-dialog', 'aria-labelledby': 'flatten-title' }, form);
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => dlg.remove());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      ok.disabled = true;
      toast(t('tpl.flattening', { name: x.name }), 'info');
      try {
        const made = await post(`/api/templates/${encodeURIComponent(x.id)}/flatten`, { name: name.value.trim() });
        toast(t('tpl.flattened', { name: made.name }), 'success');
        dlg.close();
        load();
      } catch (e2) {
        err.hidden = false;
        err.textContent = errorText(e2);
        ok.disabled = false;
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    name.select();
  }

  function renderTree(templates, courses, vms) {
    const buildVms = new Map(vms.filter((v) => v.build_template_id).map((v) => [v.build_template_id, v]));
    const usedBy = new Map();
    for (const c of courses) {
      for (const s of c.vm_specs || []) {
        if (!usedBy.has(s.template_id)) usedBy.set(s.template_id, new Set());
        usedBy.get(s.template_id).add(c.code);
      }
    }
    const children = new Map();
    const ids = new Set(templates.map((x) => x.id));
    for (const x of templates) {
      const p = x.parent_id && ids.has(x.parent_id) ? x.parent_id : null;
      if (!children.has(p)) children.set(p, []);
      children.get(p).push(x);
    }
    for (const list of children.values()) list.sort((a, b) => a.name.localeCompare(b.name));

    function node(x) {
      const kids = children.get(x.id) || [];
      const open = !collapsed.has(x.id);
      const sub = kids.length ? h('ul', { role: 'group', hidden: !open }, kids.map(node)) : null;
      let toggle;
      if (kids.length) {
        toggle = h('button', { type: 'button', class: 'tree-toggle', 'aria-expanded': String(open) }, icon('chevron'));
        const label = () => bind(toggle, open2() ? 'tpl.collapse' : 'tpl.expand', { name: x.name }, 'aria-label');
        const open2 = () => toggle.getAttribute('aria-expanded') === 'true';
        label();
        toggle.addEventListener('click', () => {
          const now = !open2();
          toggle.setAttribute('aria-expanded', String(now));
          sub.hidden = !now;
          if (now) collapsed.delete(x.id); else collapsed.add(x.id);
          label();
        });
      } else {
        toggle = h('span', { class: 'tree-spacer' });
      }
      const courses = usedBy.get(x.id);
      const badgeState = TPL_STATES[x.state] || 'stopped';
      return h('li', { role: 'treeitem', 'aria-expanded': kids.length ? String(open) : null, dataset: { tpl: x.name, state: x.state } },
        h('div', { class: 'tree-node' },
          toggle,
          h('div', {},
            h('div', {}, h('span', { class: 'tree-name' }, x.name), ' ',
              x.os ? h('span', { class: 'chip os' }, x.os) : null,
              (x.software || []).map((s) => h('span', { class: 'chip' }, s))),
            h('div', { class: 'tree-meta' },
              h('span', { i18n: ['tpl.size', { size: formatBytes(x.size_bytes) }] }),
              courses ? ` · ${[...courses].join(', ')}` : '')),
          h('span', { class: `badge state-${badgeState} tpl-state` }, h('span', { class: 'dot', 'aria-hidden': 'true' }),
            h('span', { i18n: `tpl.state.${x.state}` }))),
        x.state === 'draft' ? draftActions(x, buildVms.get(x.id)) : null,
        x.state === 'ready' ? readyActions(x, !kids.length && !courses) : null,
        sub);
    }
    treeBox.removeAttribute('aria-busy');
    const roots = children.get(null) || [];
    if (!roots.length) replace(treeBox, h('p', { class: 'muted', i18n: 'tpl.empty' }));
    else replace(treeBox, h('ul', { class: 'tree', role: 'tree', i18nAria: 'tpl.title' }, roots.map(node)));

    const current = parentSel.value;
    replace(parentSel, h('option', { value: '', i18n: 'tpl.upload.noParent' }),
      templates.filter((x) => x.state === 'ready').map((x) => h('option', { value: x.id }, x.name)));
    parentSel.value = current;
  }

  async function load() {
    try {
      const [templates, courses, vms, use] = await Promise.all([
        get('/api/templates'), get('/api/courses').catch(() => []), get('/api/vms').catch(() => []),
        get('/api/templates/usage').catch(() => null)]);
      if (stopped) return;
      renderTree(templates, courses, vms);
      if (use) {
        bind(usage, 'tpl.usage', {
          n: formatNumber(use.templates), stored: formatBytes(use.stored_bytes), flat: formatBytes(use.flat_copies_bytes),
        });
      }
    } catch (err) {
      if (!stopped) toastError(err);
    }
  }
  load();
  return { unmount() { stopped = true; } };
}

function softwareList(text) {
  return text.split(',').map((s) => s.trim()).filter(Boolean);
}

/**
 * "What does my course need?": finds the exact template or the best base
 * (POST /api/templates/match), then offers to use it or to derive from it.
 */
function matchCard() {
  const os = h('input', { id: 'match-os', required: true, maxlength: 64, placeholder: 'tiny-linux' });
  const sw = h('input', { id: 'match-software', maxlength: 500, placeholder: 'gcc, make' });
  const result = h('div', { class: 'match-result', 'aria-live': 'polite' });
  const find = h('button', { type: 'submit', class: 'btn primary', i18n: 'tpl.match.find' });
  const form = h('form', { class: 'section-body', novalidate: true },
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'match-os', i18n: 'tpl.upload.os' }), os),
      h('div', { class: 'field' }, h('label', { for: 'match-software', i18n: 'tpl.upload.software' }), sw)),
    result,
    h('div', { class: 'form-actions' }, find));

  function deriveForm(base, missing) {
    const name = h('input', { id: 'derive-name', required: true, maxlength: 100, value: `${base.name}+${missing.join('+')}`.slice(0, 100) });
    const go = h('button', { type: 'submit', class: 'btn primary', i18n: 'tpl.derive.go' });
    const f = h('form', { class: 'derive-form' },
      h('div', { class: 'field' }, h('label', { for: 'derive-name', i18n: 'tpl.derive.name' }), name),
      h('div', { class: 'form-actions' }, go));
    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!f.reportValidity()) return;
      go.disabled = true;
      try {
        const r = await post(`/api/templates/${encodeURIComponent(base.id)}/derive`, { name: name.value.trim(), software: missing });
        toast(t('tpl.derive.started', { name: r.template.name }), 'success');
        location.hash = `#/desktop/${r.vm.id}`;
      } catch (err) { toastError(err); } finally { go.disabled = false; }
    });
    return f;
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!form.reportValidity()) return;
    find.disabled = true;
    try {
      const r = await post('/api/templates/match', { os: os.value.trim(), software: softwareList(sw.value) });
      if (r.exact) {
        replace(result, h('p', { class: 'match-ok', i18n: ['tpl.match.exact', { name: r.exact.name }] }),
          h('a', { class: 'btn small', href: `#/teach/new/${r.exact.id}`, i18n: 'tpl.match.use' }));
      } else if (r.base) {
        const missing = r.missing || [];
        const extra = r.extra || [];
        const chips = (list) => list.map((m) => h('span', { class: 'chip' }, m));
        const lines = [h('p', { class: 'match-base', i18n: ['tpl.match.base', { name: r.base.name }] })];
        if (extra.length) lines.push(h('p', { class: 'match-extra' }, h('span', { class: 'muted', i18n: 'tpl.match.extra' }), ' ', chips(extra)));
        if (missing.length) {
          lines.push(h('p', { class: 'match-missing' }, h('span', { class: 'muted', i18n: 'tpl.match.missing' }), ' ', chips(missing)),
            deriveForm(r.base, missing));
        } else {
          // Everything asked for is there (with more besides): use it as it is.
          lines.push(h('p', { class: 'match-ok', i18n: 'tpl.match.allThere' }),
            h('a', { class: 'btn small', href: `#/teach/new/${r.base.id}`, i18n: 'tpl.match.use' }));
        }
        replace(result, ...lines);
      } else {
        replace(result, h('p', { class: 'vm-error', i18n: 'tpl.match.none' }));
      }
    } catch (err) {
      toastError(err);
    } finally {
      find.disabled = false;
    }
  });

  return h('section', { class: 'card match-card' },
    h('div', { class: 'section-head' }, h('h2', { i18n: 'tpl.match' })),
    form);
}

function guessFormat(filename) {
  const ext = filename.toLowerCase().split('.').pop();
  if (ext === 'qcow2' || ext === 'qcow') return 'qcow2';
  if (ext === 'vmdk') return 'vmdk';
  return 'raw';
}

function uploadForm(parentSel, onDone) {
  const file = h('input', { id: 'up-file', type: 'file', accept: '.qcow2,.qcow,.img,.raw,.vmdk,.iso' });
  const name = h('input', { id: 'up-name', required: true, maxlength: 100, autocomplete: 'off' });
  const format = h('select', { id: 'up-format' }, ['qcow2', 'raw', 'vmdk'].map((f) => h('option', { value: f }, f.toUpperCase())));
  const os = h('input', { id: 'up-os', required: true, maxlength: 64, placeholder: 'debian-12' });
  const software = h('input', { id: 'up-software', maxlength: 500, placeholder: 'gcc, make, python3' });
  const bar = h('span', {});
  const progress = h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0' }, bar);
  const progressText = h('p', { class: 'muted small', 'aria-live': 'polite' });
  const progressBox = h('div', { hidden: true }, progress, progressText);
  const submit = h('button', { type: 'submit', class: 'btn primary' }, icon('upload'), h('span', { i18n: 'tpl.upload.submit' }));
  const form = h('form', { class: 'section-body', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'up-file', i18n: 'tpl.upload.file' }), file),
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'up-name', i18n: 'tpl.upload.name' }), name),
      h('div', { class: 'field' }, h('label', { for: 'up-format', i18n: 'tpl.upload.format' }), format)),
    h('div', { class: 'form-grid' },
      h('div', { class: 'field' }, h('label', { for: 'up-os', i18n: 'tpl.upload.os' }), os),
      h('div', { class: 'field' }, h('label', { for: 'up-software', i18n: 'tpl.upload.software' }), software)),
    h('div', { class: 'field' }, h('label', { for: 'up-parent', i18n: 'tpl.upload.parent' }), parentSel),
    progressBox,
    h('div', { class: 'form-actions' }, submit));

  file.addEventListener('change', () => {
    const f = file.files[0];
    if (!f) return;
    format.value = guessFormat(f.name);
    if (!name.value) name.value = f.name.replace(/\.[^.]+$/, '');
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = file.files[0];
    if (!f) { toast(t('tpl.upload.chooseFile'), 'error'); file.focus(); return; }
    if (!form.reportValidity()) return;
    const q = new URLSearchParams({ name: name.value.trim(), format: format.value, os: os.value.trim(), software: software.value.split(',').map((s) => s.trim()).filter(Boolean).join(',') });
    if (parentSel.value) q.set('parent_id', parentSel.value);
    submit.disabled = true;
    progressBox.hidden = false;
    const show = (done, total, finished) => {
      const pct = total ? Math.floor((done / total) * 100) : 0;
      bar.style.width = `${pct}%`;
      progress.setAttribute('aria-valuenow', String(pct));
      if (finished) bind(progressText, 'tpl.upload.processing');
      else bind(progressText, 'tpl.upload.progress', { pct, done: formatBytes(done), total: formatBytes(total) });
    };
    show(0, f.size);
    try {
      const tpl = await upload(`/api/templates/import?${q}`, f, show);
      toast(t('tpl.upload.done', { name: tpl.name }), 'success');
      form.reset();
      progressBox.hidden = true;
      onDone();
    } catch (err) {
      toastError(err);
      progressBox.hidden = true;
    } finally {
      submit.disabled = false;
    }
  });

  return h('section', { class: 'card upload-card' },
    h('div', { class: 'section-head' }, h('h2', { i18n: 'tpl.upload' })),
    form);
}
