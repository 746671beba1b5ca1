// A draft template's two endings, shared by the template tree and the build
// VM's desktop: seal (POST /api/templates/{id}/seal: the build VM is shut
// down, the layer becomes read-only and the template ready) or abandon
// (DELETE /api/templates/{id} on a draft: build VM, layer and row removed).
// Both ask first and report in a toast; they resolve to true when done.

import { t } from './i18n.js';
import { toast, confirmDialog, busy } from './ui.js';
import { post, del } from './api.js';

export async function sealDraft(tpl, btn) {
  const ok = await confirmDialog({ title: ['tpl.seal.title', { name: tpl.name }], body: 'tpl.seal.body', confirm: 'tpl.seal' });
  if (!ok) return false;
  // The server shuts the build VM down first (ACPI, forced after a timeout):
  // say so, the answer may take a minute.
  toast(t('tpl.sealing', { name: tpl.name }), 'info');
  const done = await busy(btn, async () => {
    await post(`/api/templates/${encodeURIComponent(tpl.id)}/seal`);
    toast(t('tpl.sealed', { name: tpl.name }), 'success');
    return true;
  });
  return done ?? false;
}

export async function abandonDraft(tpl, btn) {
  const ok = await confirmDialog({ title: ['tpl.abandon.title', { name: tpl.name }], body: 'tpl.abandon.body', confirm: 'tpl.abandon', danger: true });
  if (!ok) return false;
  const done = await busy(btn, async () => {
    await del(`/api/templates/${encodeURIComponent(tpl.id)}`);
    toast(t('tpl.abandoned', { name: tpl.name }), 'success');
    return true;
  });
  return done ?? false;
}

