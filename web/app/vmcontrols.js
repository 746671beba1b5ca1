// VM state badges and power actions, shared by the student and teacher views.

import { t, bind } from './i18n.js';
import { h, button, confirmDialog, toast, toastError } from './ui.js';
import { post } from './api.js';

export const STATES = ['stopped', 'starting', 'running', 'stopping', 'error', 'node_down'];

/** A coloured badge: dot + translated state. Update it with setBadge. */
export function stateBadge(state) {
  const el = h('span', { class: 'badge' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { class: 'badge-text' }));
  setBadge(el, state);
  return el;
}

export function setBadge(el, state) {
  const s = STATES.includes(state) ? state : 'error';
  el.className = `badge state-${s}`;
  bind(el.querySelector('.badge-text'), `state.${s}`);
}

/** Which actions make sense in which state. */
export function allowed(action, state) {
  switch (action) {
    case 'start': return state === 'stopped' || state === 'error';
    case 'shutdown': return state === 'running';
    case 'reboot': return state === 'running';
    case 'poweroff': return state === 'running' || state === 'starting' || state === 'stopping' || state === 'error';
    case 'reset': return state === 'stopped' || state === 'error';
    case 'open': return state === 'running';
    default: return false;
  }
}

const DONE = {
  start: 'vm.started',
  shutdown: 'vm.shutdownSent',
  poweroff: 'vm.poweredOff',
  reboot: 'vm.rebooted',
  reset: 'vm.resetDone',
};

/**
 * Runs a power action on `vm` (asking first for reset and force off).
 * Resolves the updated vm, or null when cancelled or failed (error toasted).
 */
export async function runAction(action, vm, { onConfirmed = () => {} } = {}) {
  if (action === 'reset') {
    const ok = await confirmDialog({
      title: ['reset.title', { name: vm.name }],
      body: 'reset.body',
      confirm: 'reset.confirm',
      danger: true,
    });
    if (!ok) return null;
  } else if (action === 'poweroff') {
    const ok = await confirmDialog({
      title: ['poweroff.title', { name: vm.name }],
      body: 'poweroff.body',
      confirm: 'poweroff.confirm',
      danger: true,
    });
    if (!ok) return null;
  }
  onConfirmed();
  try {
    const updated = await post(`/api/vms/${encodeURIComponent(vm.id)}/${action}`);
    toast(t(DONE[action], { name: vm.name }), 'success');
    return updated || vm;
  } catch (err) {
    toastError(err);
    return null;
  }
}

/**
 * The row of action buttons for one VM. Returns { el, update(vm), busy(action|null) }.
 * `onOpen(vm)` opens the desktop; `onChanged(vm)` gets the VM an action returned.
 */
export function actionBar(vm, { onOpen, onChanged, compact = false }) {
  let current = vm;
  let busyAction = null;
  const defs = [
    ['start', 'vm.start', 'play', ''],
    ['shutdown', 'vm.shutdown', 'power', ''],
    ['reboot', 'vm.reboot', 'reboot', ''],
    ['poweroff', 'vm.poweroff', 'plug', 'danger-text'],
    ['reset', 'vm.reset', 'reset', 'danger-text'],
  ];
  const buttons = new Map();
  const open = button({ label: compact ? 'teach.console' : 'vm.open', icon: 'monitor', kind: 'primary open-btn', onclick: () => onOpen(current) });
  open.dataset.action = 'open';
  buttons.set('open', open);
  const group = h('div', { class: 'btn-group', role: 'group' });
  bind(group, 'vm.actions', { name: vm.name }, 'aria-label');
  for (const [action, label, ic, kind] of defs) {
    const b = button({
      label, icon: ic, kind: `small ${kind}`, iconOnly: compact,
      onclick: async () => {
        const updated = await runAction(action, current, { onConfirmed: () => setBusy(action) });
        setBusy(null);
        if (updated) { update(updated); onChanged && onChanged(updated); }
        keepFocus(b);
      },
    });
    if (compact) { bind(b, label, undefined, 'aria-label'); bind(b, label, undefined, 'title'); }
    b.dataset.action = action;
    buttons.set(action, b);
    group.append(b);
  }
  const el = h('div', { class: `vm-actions${compact ? ' compact' : ''}` }, open, group);

  function setBusy(action) {
    busyAction = action;
    for (const [a, b] of buttons) b.classList.toggle('busy', a === action);
    update(current);
  }

  function update(v) {
    current = v;
    for (const [a, b] of buttons) {
      const ok = allowed(a, v.state) && !busyAction;
      b.disabled = !ok;
    }
  }

  /**
   * A button that disabled itself (Start → starting) would drop the focus
   * to the page body: move it to what comes next (Open once running, else
   * the bar itself, from where Tab reaches the buttons).
   */
  function keepFocus(clicked) {
    const lost = document.activeElement === document.body || document.activeElement === clicked;
    if (!lost || !clicked.disabled) return;
    if (!open.disabled) { open.focus(); return; }
    el.tabIndex = -1;
    el.focus();
  }

  update(vm);
  return { el, update, setBusy };
}
