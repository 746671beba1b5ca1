// Class time on the desktop page (GET /api/vms/{id}/class): while the VM's
// course is in a session, a toast in the page's language 15 and 5 minutes
// before it ends (each once: the VM is shut down at the end); while the VM
// waits in the start queue, its place and an estimate ("3rd, ~20 s") in the
// status line the caller gives. Where the course's teacher allows it, the
// warning carries a button asking for 15 more minutes (granted when no
// other class needs the lab's nodes).

import { t } from './i18n.js';
import { h, toast, toastError, clockTime } from './ui.js';
import { get, post } from './api.js';

const POLL_MS = 20000;
const QUEUE_POLL_MS = 3000;

/**
 * Watches `vmId`; `queueLine` is an element that shows the queue place
 * (hidden when the VM is not queued). Returns a stop function.
 */
export function watchClass(vmId, queueLine) {
  let stopped = false;
  let timer = null;
  const warned = new Set(); // "<session end>/<minutes>" already shown
  async function poll() {
    let queued = false;
    try {
      const s = await get(`/api/vms/${encodeURIComponent(vmId)}/class`);
      if (stopped) return;
      if (s.session && s.warning_minutes) {
        const key = `${s.session.ends_at}/${s.warning_minutes}`;
        if (!warned.has(key)) {
          warned.add(key);
          const el = toast(t('class.warn', { n: s.warning_minutes }), s.warning_minutes <= 5 ? 'error' : 'info', { timeout: 30000 });
          if (s.can_extend) el.insertBefore(extendButton(el), el.lastElementChild);
        }
      }
      queued = !!s.queue;
      if (queueLine) {
        queueLine.hidden = !queued;
        if (queued) queueLine.textContent = t('class.queue', { place: s.queue.place, secs: s.queue.estimate_secs });
      }
    } catch { /* the desktop works without class time */ }
    if (!stopped) timer = setTimeout(poll, queued ? QUEUE_POLL_MS : POLL_MS);
  }
  /** The toast's "15 more minutes" button. */
  function extendButton(toastEl) {
    const b = h('button', { type: 'button', class: 'btn small class-extend', i18n: 'class.extend' });
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        const s = await post(`/api/vms/${encodeURIComponent(vmId)}/class/extend`);
        toastEl.remove();
        toast(t('class.extended', { time: clockTime(s.extended_until) }), 'success', { timeout: 15000 });
      } catch (err) {
        b.disabled = false;
        toastError(err);
      }
    });
    return b;
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}
