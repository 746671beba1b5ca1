// Assist on the desktop page (GET /api/vms/{id}/assist, polled): the
// student's "Ask for help" button (a raised hand the teacher sees on the
// wall, lowered by the student or the teacher), the banner that says who is
// watching or controlling this screen right now, and — while the teacher
// shows their screen to the class — a button to watch it (view-only).

import { bind } from './i18n.js';
import { h, icon, button, toastError } from './ui.js';
import { get, post, del } from './api.js';
import { openViewer } from './viewer.js';

const POLL_MS = 3000;

/**
 * The assist controls of VM `vmId` for user `me`: `{ tools, banner, stop }`
 * — `tools` goes in the tool bar, `banner` above the screen.
 */
export function assistBar(vmId, me, ownerId) {
  const id = encodeURIComponent(vmId);
  const own = me.id === ownerId;
  const hand = button({ label: 'assist.raise', icon: 'bell', kind: 'small', attrs: { id: 'assist-hand', 'aria-pressed': 'false', hidden: !own } });
  const watchTeacher = button({ label: 'assist.watchTeacher', icon: 'monitor', kind: 'small primary', attrs: { id: 'assist-present', hidden: true } });
  const text = h('span', { class: 'assist-text' });
  const banner = h('div', { class: 'assist-banner', id: 'assist-banner', role: 'status', 'aria-live': 'polite', hidden: true }, icon('monitor'), text);
  let state = null;
  let stopped = false;
  let timer = null;

  function render() {
    const raised = !!state.hand_raised_at;
    hand.setAttribute('aria-pressed', raised ? 'true' : 'false');
    hand.classList.toggle('primary', raised);
    bind(hand.querySelector('.label'), raised ? 'assist.lower' : 'assist.raise');
    // Everyone else with this screen open (not the viewer of this page).
    const others = (state.watchers || []).filter((w) => w.user_id !== me.id);
    const control = others.filter((w) => w.mode === 'control');
    const names = (list) => list.map((w) => w.display_name || w.username).join(', ');
    banner.hidden = others.length === 0;
    banner.dataset.mode = control.length ? 'control' : 'view';
    if (control.length) bind(text, own ? 'assist.controlling' : 'assist.controllingOther', { names: names(control) });
    else if (others.length) bind(text, own ? 'assist.watching' : 'assist.watchingOther', { names: names(others) });
    watchTeacher.hidden = !state.presentation;
    if (state.presentation) {
      bind(watchTeacher.querySelector('.label'), 'assist.watchTeacher', { name: state.presentation.display_name || state.presentation.username });
    }
  }

  async function poll() {
    clearTimeout(timer);
    try {
      state = await get(`/api/vms/${id}/assist`);
      if (stopped) return;
      render();
    } catch { /* the desktop works without it */ }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  hand.addEventListener('click', async () => {
    hand.disabled = true;
    try {
      if (state && state.hand_raised_at) await del(`/api/vms/${id}/hand`);
      else await post(`/api/vms/${id}/hand`);
    } catch (err) { toastError(err); }
    hand.disabled = false;
    poll();
  });

  watchTeacher.addEventListener('click', () => {
    const p = state && state.presentation;
    if (!p) return;
    openViewer({
      title: ['assist.teacherScreen', { name: p.display_name || p.username }],
      issue: () => post(`/api/courses/${encodeURIComponent(p.course_id)}/presentation/console`),
    });
  });

  poll();
  return {
    tools: [hand, watchTeacher],
    banner,
    stop() { stopped = true; clearTimeout(timer); },
  };
}
