// The teacher's video wall of a course (#/wall/<course id>): a thumbnail of
// every running VM's screen, refreshed about once a second (the server
// takes at most one screenshot per VM a second however many walls are
// open), raised hands first, filters (only running, only raised hands).
// A tile opens the screen view-only (viewer.js) or takes control (the
// desktop page); the teacher lowers a hand once helped, and shows their own
// VM's screen to the class with one switch.
// Staff and admins reach every course's wall from #/walls (the list below);
// a teacher reaches their course's from the class page.

import { t, bind } from './i18n.js';
import { h, icon, button, replace, toastError, relativeTime } from './ui.js';
import { get, post, del, api } from './api.js';
import { stateBadge, setBadge } from './vmcontrols.js';
import { openViewer } from './viewer.js';

const LIST_MS = 3000;
const THUMB_MS = 1000;

export function mount(container, params, ctx) {
  if (ctx.kind === 'list') return wallList(container);
  return wallView(container, params, ctx);
}

/** #/walls: every course the user may watch, each with a link to its wall. */
function wallList(container) {
  const body = h('tbody', {});
  const empty = h('p', { class: 'muted empty-small', hidden: true, i18n: 'walls.empty' });
  replace(container,
    h('div', { class: 'page-head' }, h('h1', { i18n: 'walls.title' })),
    h('p', { class: 'muted', i18n: 'walls.hint' }),
    h('section', { class: 'card section' },
      h('div', { class: 'table-wrap', tabindex: '0' },
        h('table', { class: 'data', id: 'walls-table' },
          h('thead', {}, h('tr', {},
            h('th', { i18n: 'walls.col.code' }), h('th', { i18n: 'walls.col.name' }),
            h('th', { i18n: 'walls.col.students' }), h('th', { i18n: 'walls.col.open' }))),
          body)),
      empty));
  get('/api/courses').then((list) => {
    const courses = Array.isArray(list) ? list.filter((c) => c.state !== 'archived') : [];
    empty.hidden = courses.length > 0;
    replace(body, ...courses.map((c) => h('tr', { dataset: { course: c.id } },
      h('td', {}, h('span', { class: 'course-code' }, c.code)),
      h('td', {}, c.name),
      h('td', {}, String(c.student_count ?? '')),
      h('td', {}, h('a', { class: 'btn small', href: `#/wall/${encodeURIComponent(c.id)}` },
        icon('monitor'), h('span', { class: 'label', i18n: 'wall.open' }))))));
  }, toastError);
}

function wallView(container, [courseId], { me }) {
  let unmounted = false;
  let listTimer = null;
  let thumbTimer = null;
  let wall = null;
  const tiles = new Map(); // vm id → { el, img, parts, loading }
  const cid = encodeURIComponent(courseId);

  const title = h('h1', { i18n: 'wall.title' });
  const code = h('span', { class: 'course-code' });
  // Staff have no class page: back to the list of walls.
  const back = me.role === 'staff'
    ? h('a', { href: '#/walls', class: 'back-link' }, icon('back'), h('span', { i18n: 'walls.title' }))
    : h('a', { href: `#/teach/${courseId}`, class: 'back-link' }, icon('back'), h('span', { i18n: 'wall.back' }));
  const onlyRunning = h('input', { type: 'checkbox', id: 'wall-running' });
  const onlyHands = h('input', { type: 'checkbox', id: 'wall-hands' });
  const counts = h('span', { class: 'muted small wall-counts', 'aria-live': 'polite' });
  const grid = h('div', { class: 'wall-grid', id: 'wall-grid' });
  const empty = h('p', { class: 'muted empty-small', hidden: true, i18n: 'wall.empty' });
  // Showing the teacher's own screen to the class.
  const presentBtn = button({ label: 'wall.present.start', icon: 'monitor', kind: 'small', attrs: { id: 'wall-present', 'aria-pressed': 'false' } });
  const presentInfo = h('span', { class: 'muted small', id: 'wall-present-info' });
  const makeVm = button({ label: 'wall.present.makeVm', icon: 'plus', kind: 'small', attrs: { id: 'wall-teacher-vm', hidden: true } });
  const presentBar = h('div', { class: 'wall-present', hidden: me.role === 'staff' }, presentBtn, makeVm, presentInfo);

  replace(container,
    h('div', { class: 'page-head' },
      h('div', {}, back, code, title)),
    h('section', { class: 'card section wall-tools' },
      h('div', { class: 'wall-filters', role: 'group', i18nAria: 'wall.filters' },
        h('label', { class: 'check' }, onlyRunning, h('span', { i18n: 'wall.onlyRunning' })),
        h('label', { class: 'check' }, onlyHands, h('span', { i18n: 'wall.onlyHands' })),
        counts),
      presentBar),
    grid,
    empty);

  function name(tile) {
    return tile.owner_display_name && tile.owner_display_name !== tile.owner_username
      ? `${tile.owner_display_name} (${tile.owner_username})` : tile.owner_username;
  }

  function watchVm(tile) {
    openViewer({
      title: ['wall.viewer.title', { name: name(tile) }],
      issue: () => post(`/api/vms/${encodeURIComponent(tile.vm_id)}/console`, { view_only: true }),
      actions: [h('a', { class: 'btn primary', href: `#/desktop/${tile.vm_id}`, dataset: { action: 'control' } }, icon('keyboard'), h('span', { i18n: 'wall.control' }))],
    });
  }

  async function lowerHand(tile) {
    try {
      await del(`/api/vms/${encodeURIComponent(tile.vm_id)}/hand`);
      refresh();
    } catch (err) { toastError(err); }
  }

  function makeTile(tile) {
    const img = h('img', { class: 'wall-thumb', alt: '', width: 320, height: 180, decoding: 'async' });
    const who = h('span', { class: 'wall-name' });
    const vmName = h('span', { class: 'muted small' });
    const badge = stateBadge(tile.state);
    const hand = h('span', { class: 'chip warn wall-hand', hidden: true });
    const watchers = h('span', { class: 'wall-watchers muted small' });
    const screenBox = h('div', { class: 'wall-screen' }, img, h('span', { class: 'wall-off', i18n: 'wall.off' }));
    const watch = button({ label: 'wall.watch', icon: 'monitor', kind: 'small', attrs: { 'data-action': 'watch' } });
    const control = h('a', { class: 'btn small', href: `#/desktop/${tile.vm_id}`, dataset: { action: 'control' } }, icon('keyboard'), h('span', { class: 'label', i18n: 'wall.control' }));
    const lower = button({ label: 'wall.lowerHand', icon: 'check', kind: 'small', attrs: { 'data-action': 'lower', hidden: true } });
    const el = h('article', { class: 'wall-tile card', dataset: { vm: tile.vm_id } },
      screenBox,
      h('div', { class: 'wall-meta' },
        h('div', { class: 'wall-line' }, who, badge),
        h('div', { class: 'wall-line' }, vmName, hand),
        watchers,
        h('div', { class: 'btn-group wall-actions' }, watch, control, lower)));
    const entry = { el, img, who, vmName, badge, hand, watchers, watch, control, lower, tile, loading: false };
    watch.addEventListener('click', () => watchVm(entry.tile));
    lower.addEventListener('click', () => lowerHand(entry.tile));
    return entry;
  }

  function updateTile(entry, tile) {
    entry.tile = tile;
    const running = tile.state === 'running';
    entry.who.textContent = name(tile);
    entry.vmName.textContent = tile.teacher_vm ? `${tile.vm_name} · ${t('wall.teacherVm')}` : tile.vm_name;
    setBadge(entry.badge, tile.state);
    entry.el.dataset.state = tile.state;
    entry.el.classList.toggle('raised', !!tile.hand_raised_at);
    entry.hand.hidden = !tile.hand_raised_at;
    if (tile.hand_raised_at) bind(entry.hand, 'wall.handSince', { when: relativeTime(tile.hand_raised_at) });
    entry.lower.hidden = !tile.hand_raised_at;
    entry.watch.disabled = !running;
    entry.control.hidden = !running;
    entry.img.alt = t('wall.thumbAlt', { name: name(tile) });
    if (!running) entry.img.removeAttribute('src');
    const list = (tile.watchers || []).map((w) => t(w.mode === 'view' ? 'wall.watching' : 'wall.controlling', { name: w.display_name || w.username }));
    entry.watchers.textContent = list.join(' · ');
  }

  function render() {
    const shown = new Set();
    for (const tile of wall.tiles) {
      let entry = tiles.get(tile.vm_id);
      if (!entry) { entry = makeTile(tile); tiles.set(tile.vm_id, entry); }
      updateTile(entry, tile);
      shown.add(tile.vm_id);
      grid.append(entry.el); // in the server's order: raised hands first
    }
    for (const [id, entry] of tiles) {
      if (!shown.has(id)) {
        entry.el.remove();
        tiles.delete(id);
        if (entry.objectUrl) URL.revokeObjectURL(entry.objectUrl);
      }
    }
    empty.hidden = wall.tiles.length > 0;
    bind(counts, 'wall.counts', { shown: wall.tiles.length, total: wall.total, hands: wall.hands });
    renderPresent();
  }

  function renderPresent() {
    const mine = wall.tiles.find((x) => x.teacher_vm) || null;
    const p = wall.presentation;
    presentBtn.setAttribute('aria-pressed', p ? 'true' : 'false');
    bind(presentBtn.querySelector('.label'), p ? 'wall.present.stop' : 'wall.present.start');
    presentBtn.classList.toggle('primary', !!p);
    presentBtn.disabled = !p && !(mine && mine.state === 'running');
    makeVm.hidden = !!mine || me.role === 'staff';
    if (p) bind(presentInfo, 'wall.present.on', { since: relativeTime(p.started_at) });
    else if (!mine) bind(presentInfo, 'wall.present.noVm');
    else if (mine.state !== 'running') bind(presentInfo, 'wall.present.startVm');
    else bind(presentInfo, 'wall.present.off');
  }

  presentBtn.addEventListener('click', async () => {
    presentBtn.disabled = true;
    try {
      if (wall.presentation) await del(`/api/courses/${cid}/presentation`);
      else {
        const mine = wall.tiles.find((x) => x.teacher_vm);
        await api('PUT', `/api/courses/${cid}/presentation`, { vm_id: mine.vm_id });
      }
    } catch (err) { toastError(err); }
    refresh();
  });
  makeVm.addEventListener('click', async () => {
    makeVm.disabled = true;
    try { await post(`/api/courses/${cid}/teacher-vm`); } catch (err) { toastError(err); }
    makeVm.disabled = false;
    refresh();
  });

  function query() {
    const q = [];
    if (onlyRunning.checked) q.push('running=true');
    if (onlyHands.checked) q.push('hands=true');
    return q.length ? `?${q.join('&')}` : '';
  }

  async function refresh() {
    clearTimeout(listTimer);
    try {
      wall = await get(`/api/courses/${cid}/wall${query()}`);
      if (unmounted) return;
      code.textContent = wall.code;
      document.title = `${t('wall.title')} · ${wall.code} · pvce`;
      render();
    } catch (err) {
      if (unmounted) return;
      if (err.status === 404) { replace(grid, h('p', { class: 'vm-error' }, err.message)); return; }
    }
    if (!unmounted) listTimer = setTimeout(refresh, LIST_MS);
  }

  // Each running tile's picture, one request at a time per tile; a picture
  // replaces the old one only once it has arrived (no flicker).
  function refreshThumbs() {
    for (const entry of tiles.values()) {
      const url = entry.tile.thumbnail_url;
      if (!url || entry.loading || document.hidden) continue;
      entry.loading = true;
      fetch(url, { credentials: 'same-origin', cache: 'no-store' })
        .then((r) => (r.ok ? r.blob() : null))
        .then((blob) => {
          if (!blob || unmounted || entry.tile.thumbnail_url !== url) return;
          const old = entry.objectUrl;
          entry.objectUrl = URL.createObjectURL(blob);
          entry.img.src = entry.objectUrl;
          if (old) URL.revokeObjectURL(old);
          entry.el.dataset.frames = String(Number(entry.el.dataset.frames || 0) + 1);
        })
        .catch(() => {})
        .finally(() => { entry.loading = false; });
    }
    if (!unmounted) thumbTimer = setTimeout(refreshThumbs, THUMB_MS);
  }

  onlyRunning.addEventListener('change', refresh);
  onlyHands.addEventListener('change', refresh);
  refresh();
  refreshThumbs();

  return {
    unmount() {
      unmounted = true;
      clearTimeout(listTimer);
      clearTimeout(thumbTimer);
      for (const entry of tiles.values()) if (entry.objectUrl) URL.revokeObjectURL(entry.objectUrl);
    },
  };
}
