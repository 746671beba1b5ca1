// pvce web UI: the shell (login, header, navigation) and a hash router that
// mounts one view at a time. Views live in their own modules and are loaded
// on demand; each exports mount(container, params, ctx) → { unmount() }.

import { t, toggleLang, bind, onLangChange } from './i18n.js';
import { h, icon, toast, toastError, errorText, replace } from './ui.js';
import { get, post, setUnauthorizedHandler, onConnectionChange, setPasswordChangeHandler } from './api.js';

const root = document.getElementById('app');

/** The signed-in user, or null. */
let me = null;
let currentView = null;
let routeSeq = 0;

const ROUTES = [
  // [pattern, module, roles allowed]
  [/^courses$/, './student.js', ['student', 'teacher', 'admin']],
  [/^desktop\/([\w-]+)$/, './desktop.js', ['student', 'teacher', 'admin', 'staff']],
  [/^teach$/, './teacher.js', ['teacher', 'admin']],
  [/^teach\/new(?:\/([\w-]+))?$/, './teacher.js', ['teacher', 'admin'], 'new'],
  [/^teach\/([\w-]+)$/, './teacher.js', ['teacher', 'admin'], 'course'],
  [/^templates$/, './templates.js', ['teacher', 'admin']],
  [/^nodes$/, './admin.js', ['admin'], 'nodes'],
  [/^nodes\/([\w-]+)$/, './admin.js', ['admin'], 'node'],
  [/^vms$/, './admin.js', ['admin'], 'vms'],
  [/^users$/, './admin.js', ['admin'], 'users'],
  // The service desk (desk.js).
  [/^desk$/, './desk.js', ['staff', 'admin'], 'queue'],
  [/^tickets$/, './desk.js', ['student', 'teacher', 'staff', 'admin'], 'mine'],
  [/^tickets\/([\w-]+)$/, './desk.js', ['student', 'teacher', 'staff', 'admin'], 'ticket'],
  [/^report(?:\/([\w-]+))?$/, './desk.js', ['student', 'teacher', 'staff', 'admin'], 'report'],
  [/^problems(?:\/([\w-]+))?$/, './desk.js', ['staff', 'admin'], 'problems'],
  [/^desk-stats$/, './desk.js', ['staff', 'admin'], 'stats'],
  [/^desk-sla$/, './desk.js', ['staff', 'admin'], 'sla'],
  [/^kb$/, './desk.js', ['student', 'teacher', 'staff', 'admin'], 'kb'],
  [/^kb\/new(?:\/([\w-]+))?$/, './desk.js', ['staff', 'admin'], 'kbnew'],
  [/^kb\/edit\/([\w-]+)$/, './desk.js', ['staff', 'admin'], 'kbedit'],
  // Notifications (notices.js): the bell's list and the settings.
  [/^notifications$/, './notices.js', ['student', 'teacher', 'staff', 'admin'], 'list'],
  [/^notification-settings$/, './notices.js', ['student', 'teacher', 'staff', 'admin'], 'settings'],
  // Service levels (slo.js).
  [/^slo$/, './slo.js', ['teacher', 'staff', 'admin'], 'slo'],
  [/^status$/, './slo.js', ['student', 'teacher', 'staff', 'admin'], 'status'],
  // Alerts and the daily inspection (alerts.js).
  [/^alerts$/, './alerts.js', ['staff', 'admin'], 'alerts'],
  [/^alert-rules$/, './alerts.js', ['staff', 'admin'], 'rules'],
  [/^inspections(?:\/([\w-]+))?$/, './alerts.js', ['staff', 'admin'], 'inspections'],
  // Backups (backups.js).
  [/^backups$/, './backups.js', ['admin']],
  // The periodic service reports (reports.js).
  [/^reports(?:\/([\w-]+))?$/, './reports.js', ['teacher', 'staff', 'admin']],
  // The audit log (audit.js).
  [/^audit$/, './audit.js', ['admin']],
  // My data (mydata.js): the export of one's own data, erase records.
  [/^me$/, './mydata.js', ['student', 'teacher', 'staff', 'admin']],
  // Retention holds and erase records (retention.js).
  [/^retention$/, './retention.js', ['admin']],
  // The teacher's video wall of a course (wall.js).
  [/^wall\/([\w-]+)$/, './wall.js', ['teacher', 'staff', 'admin']],
  [/^walls$/, './wall.js', ['staff', 'admin'], 'list'],
];

function homeFor(user) {
  if (user.role === 'admin') return 'nodes';
  if (user.role === 'teacher') return 'teach';
  if (user.role === 'staff') return 'desk';
  return 'courses';
}

// The navigation, grouped by what the pages are about. An entry is shown to
// the roles listed here *and* only if the router lets that role open it, so a
// page that is not routed (yet) is never a dead link.
const NAV = [
  ['lab', 'nav.group.lab', [
    ['courses', 'nav.courses', ['student']],
    ['teach', 'nav.teach', ['teacher', 'admin']],
    ['templates', 'nav.templates', ['teacher', 'admin']],
    ['nodes', 'nav.nodes', ['admin']],
    ['vms', 'nav.vms', ['admin']],
    ['users', 'nav.users', ['admin']],
    ['walls', 'nav.walls', ['staff', 'admin']],
  ]],
  ['service', 'nav.group.service', [
    ['desk', 'nav.desk', ['staff', 'admin']],
    ['tickets', 'nav.tickets', ['student', 'teacher']],
    ['tickets', 'nav.myWork', ['staff']],
    ['problems', 'nav.problems', ['staff', 'admin']],
    ['kb', 'nav.kb', ['staff', 'admin']],
    ['alerts', 'nav.alerts', ['staff', 'admin']],
    ['inspections', 'nav.inspections', ['staff', 'admin']],
    ['backups', 'nav.backups', ['admin']],
    ['retention', 'nav.retention', ['admin']],
  ]],
  ['quality', 'nav.group.quality', [
    ['slo', 'nav.slo', ['teacher', 'staff', 'admin']],
    ['reports', 'nav.reports', ['teacher', 'staff', 'admin']],
    ['status', 'nav.status', ['student', 'teacher', 'admin']],
    ['audit', 'nav.audit', ['admin']],
  ]],
];

function routable(route, role) {
  return ROUTES.some(([re, , roles]) => re.test(route) && roles.includes(role));
}

/** The user's navigation: [group, title key, [[route, key]]], empty groups left out. */
function navFor(user) {
  return NAV.map(([group, title, entries]) => [group, title,
    entries.filter(([route, , roles]) => roles.includes(user.role) && routable(route, user.role))])
    .filter(([, , entries]) => entries.length);
}

function langButton() {
  // The accessible name is the visible label ("中文" / "English", in its own
  // language); the longer explanation is the tooltip.
  return h('button', { type: 'button', class: 'btn ghost lang-toggle', i18nTitle: 'lang.switch.aria', onclick: toggleLang },
    icon('globe'), h('span', { i18n: 'lang.switch' }));
}

// ---------------------------------------------------------------- login

function showLogin() {
  unmountView();
  me = null;
  const user = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn primary block', i18n: 'login.submit' });
  // The form signs in a local account, or (a directory's button below was
  // pressed) a person of that LDAP directory: same fields, same answers.
  let realm = null;
  const realmNote = h('p', { class: 'login-realm', hidden: true });
  const toLocal = h('button', { type: 'button', class: 'btn ghost block login-local', hidden: true, i18n: 'sso.ldap.local' });
  const drawRealm = () => {
    realmNote.hidden = toLocal.hidden = !realm;
    if (realm) {
      const zh = document.documentElement.lang === 'zh-CN';
      bind(realmNote, 'sso.ldap.with', { name: (zh && realm.label_zh) || realm.label });
    }
  };
  const useRealm = (p) => { realm = p; error.hidden = true; drawRealm(); user.focus(); };
  toLocal.addEventListener('click', () => useRealm(null));
  const offRealm = onLangChange(() => (form.isConnected ? drawRealm() : offRealm()));
  const form = h('form', { class: 'login-form', novalidate: true, 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title', i18n: 'login.title' }),
    h('p', { class: 'muted', i18n: 'login.subtitle' }),
    realmNote,
    h('div', { class: 'field' }, h('label', { for: 'login-username', i18n: 'login.username' }), user),
    h('div', { class: 'field' }, h('label', { for: 'login-password', i18n: 'login.password' }), pass),
    error,
    submit,
    toLocal);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!user.value.trim() || !pass.value) {
      (user.value.trim() ? pass : user).focus();
      return;
    }
    submit.disabled = true;
    bind(submit, 'login.busy');
    error.hidden = true;
    try {
      const url = realm ? `/api/auth/ldap/${encodeURIComponent(realm.id)}/login` : '/api/auth/login';
      const res = await post(url, { username: user.value.trim(), password: pass.value }, { quiet401: true });
      const typed = pass.value;
      pass.value = '';
      me = res.user;
      if (me.must_change_password) showPasswordChange(typed); else showApp();
    } catch (err) {
      error.hidden = false;
      if (err.status === 401) bind(error, 'login.failed');
      else if (err.status === 429) bind(error, 'login.throttled');
      else if (err.status === 503 && err.code === 'busy') bind(error, 'login.serverBusy');
      else { delete error.dataset.i18n; error.textContent = errorText(err); }
      pass.select();
    } finally {
      submit.disabled = false;
      bind(submit, 'login.submit');
    }
  });
  replace(root,
    h('div', { class: 'login-page' },
      // A landmark of its own (axe: all content inside landmarks).
      h('aside', { class: 'login-hero', i18nAria: 'app.tagline' },
        h('div', { class: 'brand brand-light' }, logo(), h('span', { class: 'brand-name' }, 'pvce')),
        h('div', { class: 'hero-copy' },
          h('h2', { i18n: 'login.hero.title' }),
          h('p', { i18n: 'login.hero.body' })),
        heroArt()),
      h('main', { class: 'login-main', 'aria-labelledby': 'login-title' },
        h('div', { class: 'login-top' }, langButton()),
        h('div', { class: 'card login-card' }, form, providerButtons(useRealm)))));
  user.focus();
}

/**
 * One button per campus sign-in provider (GET /api/auth/providers), below
 * the local form, which stays for accounts the lab centre made. A button is
 * a plain link: the server sends the browser on to the provider; an LDAP
 * directory's button instead turns the form above into its form
 * (`useRealm`), since the password is typed here.
 */
function providerButtons(useRealm) {
  const box = h('nav', { class: 'sso-list', hidden: true, i18nAria: 'sso.aria' });
  get('/api/auth/providers', { quiet401: true }).then((list) => {
    if (!Array.isArray(list) || !list.length) return;
    const draw = () => {
      const zh = document.documentElement.lang === 'zh-CN';
      replace(box,
        h('p', { class: 'sso-or muted', i18n: 'sso.or' }),
        ...list.map((p) => (p.kind === 'ldap'
          ? h('button', {
            type: 'button',
            class: 'btn block sso-btn',
            'data-provider': p.id,
            onclick: () => useRealm(p),
          }, icon('key'), h('span', {}, (zh && p.label_zh) || p.label))
          : h('a', {
          class: 'btn block sso-btn',
          href: `/api/auth/${encodeURIComponent(p.kind)}/${encodeURIComponent(p.id)}/start?next=${encodeURIComponent('/' + location.hash)}`,
          'data-provider': p.id,
        }, icon('key'), h('span', {}, (zh && p.label_zh) || p.label)))));
      box.hidden = false;
    };
    draw();
    const off = onLangChange(() => (box.isConnected ? draw() : off()));
  }).catch(() => { /* no providers shown: the local form still works */ });
  return box;
}

// ---------------------------------------------------------------- forced password change

/**
 * After an admin's reset with "must change": the user chooses their own
 * password before anything else (the server refuses every other request
 * until then). `current` is the password just typed at sign-in, if known.
 * `voluntary`: the user asked (the key button in the top bar); they may
 * cancel back to where they were.
 */
function showPasswordChange(current = '', { voluntary = false } = {}) {
  const back = location.hash;
  unmountView();
  shell = null;
  const cur = h('input', { id: 'pw-current', type: 'password', autocomplete: 'current-password', required: true, value: current });
  const pw1 = h('input', { id: 'pw-new', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const pw2 = h('input', { id: 'pw-again', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn primary block', i18n: 'pw.submit' });
  const out = voluntary
    ? h('button', { type: 'button', class: 'btn ghost block', id: 'pw-cancel', i18n: 'common.cancel', onclick: () => { showApp(); location.hash = back; } })
    : h('button', { type: 'button', class: 'btn ghost block', i18n: 'logout', onclick: doLogout });
  const form = h('form', { class: 'login-form', id: 'pw-form', novalidate: true, 'aria-labelledby': 'pw-title' },
    h('h1', { id: 'pw-title', i18n: voluntary ? 'pw.titleOwn' : 'pw.title' }),
    voluntary ? null : h('p', { class: 'muted', i18n: ['pw.subtitle', { name: me.display_name || me.username }] }),
    h('div', { class: 'field', hidden: Boolean(current) }, h('label', { for: 'pw-current', i18n: 'pw.current' }), cur),
    h('div', { class: 'field' }, h('label', { for: 'pw-new', i18n: 'pw.new' }), pw1),
    h('div', { class: 'field' }, h('label', { for: 'pw-again', i18n: 'pw.again' }), pw2),
    error, submit, out);
  const fail = (key, args) => { error.hidden = false; bind(error, key, args); };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    if (pw1.value.length < 8) { fail('pw.short'); pw1.focus(); return; }
    if (pw1.value !== pw2.value) { fail('pw.mismatch'); pw2.focus(); return; }
    if (pw1.value === cur.value) { fail('pw.same'); pw1.focus(); return; }
    submit.disabled = true;
    try {
      const res = await post('/api/me/password', { current_password: cur.value, new_password: pw1.value });
      me = res.user;
      toast(t('pw.done'), 'success');
      showApp();
      if (voluntary) location.hash = back;
    } catch (err) {
      error.hidden = false;
      delete error.dataset.i18n;
      error.textContent = errorText(err);
      if (err.code === 'wrong_password') { cur.closest('.field').hidden = false; cur.select(); }
    } finally {
      submit.disabled = false;
    }
  });
  replace(root,
    h('div', { class: 'login-page pw-page' },
      h('main', { class: 'login-main', 'aria-labelledby': 'pw-title' },
        h('div', { class: 'login-top' }, langButton()),
        h('div', { class: 'card login-card' }, form))));
  (current ? pw1 : cur).focus();
}

function logo() {
  const img = h('img', { src: '/favicon.svg', alt: '', width: 32, height: 32, class: 'logo' });
  return img;
}

function heroArt() {
  // A stylised desktop window, pure CSS.
  return h('div', { class: 'hero-art', 'aria-hidden': 'true' },
    h('div', { class: 'hero-window' },
      h('div', { class: 'hero-bar' }, h('i'), h('i'), h('i')),
      h('div', { class: 'hero-screen' },
        h('code', {}, '$ gcc hello.c -o hello'), h('code', {}, '$ ./hello'), h('code', {}, 'Hello, lab!'), h('code', { class: 'cursor' }, '$ '))));
}

// ---------------------------------------------------------------- shell

let shell = null;

function showApp() {
  statusAt = 0;
  const { nav, toggle } = navigation(navFor(me));
  // The chip opens the user's own page (My data: the export, erase records).
  const userChip = h('a', { class: 'user-chip', id: 'my-data-link', href: '#/me', i18nTitle: 'nav.myData' },
    h('span', { class: 'avatar', 'aria-hidden': 'true' }, (me.display_name || me.username).slice(0, 1).toUpperCase()),
    h('span', { class: 'user-text' },
      h('span', { class: 'user-name' }, me.display_name || me.username),
      h('span', { class: 'user-role', i18n: `role.${me.role}` })));
  const changePw = h('button', { type: 'button', class: 'btn ghost', id: 'change-pw', i18nTitle: 'pw.titleOwn', onclick: () => showPasswordChange('', { voluntary: true }) },
    icon('key'), h('span', { class: 'visually-hidden', i18n: 'pw.titleOwn' }));
  const logout = h('button', { type: 'button', class: 'btn ghost', i18nAria: 'logout', i18nTitle: 'logout', onclick: doLogout },
    icon('logout'), h('span', { class: 'hide-narrow', i18n: 'logout' }));
  const view = h('main', { id: 'view', class: 'view', tabindex: '-1' });
  // The hash is the router's: the skip link moves the focus itself.
  const skip = h('a', { class: 'skip-link', href: '#view', i18n: 'app.skip' });
  skip.addEventListener('click', (e) => { e.preventDefault(); focusView(); });
  const conn = h('p', { class: 'conn-banner', id: 'conn-banner', role: 'status', hidden: true, i18n: 'conn.lost' });
  // The service status at a glance (slo.js has the page).
  const statusDot = h('a', { href: '#/status', class: 'status-dot', id: 'status-dot', i18nAria: 'status.dot', i18nTitle: 'status.dot' },
    h('span', { class: 'dot', 'aria-hidden': 'true' }));
  const body = h('div', { class: 'shell' }, nav, view);
  shell = { nav, toggle, body, view, conn, statusDot };
  replace(root,
    skip,
    h('header', { class: 'topbar' },
      toggle,
      h('a', { class: 'brand', href: `#/${homeFor(me)}` }, logo(), h('span', { class: 'brand-name' }, 'pvce'),
        h('span', { class: 'brand-tag hide-narrow', i18n: 'app.tagline' })),
      h('div', { class: 'topbar-right' }, statusDot, langButton(), bellButton(), userChip, changePw, logout)),
    conn,
    body);
  focusOnMount = true;
  route();
}

// ---------------------------------------------------------------- navigation

/**
 * The side bar: one labelled list per group. On wide screens it is always
 * shown beside the page; below 1024 px (style.css) it is a menu the top bar's
 * button opens. The keyboard works the same in both: the arrows, Home and End
 * move between the entries; in the menu Escape closes it and the focus goes
 * back to the button, and choosing a page closes it.
 */
let navListeners = null;
function navigation(groups) {
  // The document-wide listeners of the previous sign-in's menu go with it.
  if (navListeners) navListeners.abort();
  navListeners = new AbortController();
  const { signal } = navListeners;
  const nav = h('nav', { class: 'nav', id: 'nav', i18nAria: 'nav.main' },
    groups.map(([group, title, entries]) => h('div', { class: 'nav-group', dataset: { group } },
      h('p', { class: 'nav-group-title', id: `nav-group-${group}`, i18n: title }),
      h('ul', { class: 'nav-list', 'aria-labelledby': `nav-group-${group}` },
        entries.map(([route, key]) => h('li', {},
          h('a', { href: `#/${route}`, class: 'nav-link', dataset: { route }, i18n: key })))))));
  const toggle = h('button', { type: 'button', class: 'btn ghost nav-toggle', id: 'nav-toggle', 'aria-expanded': 'false', 'aria-controls': 'nav' },
    icon('menu'), h('span', { class: 'nav-toggle-label', i18n: 'nav.menu' }));
  const links = () => [...nav.querySelectorAll('.nav-link')];
  const isOpen = () => toggle.getAttribute('aria-expanded') === 'true';
  function setOpen(open, { focus } = {}) {
    toggle.setAttribute('aria-expanded', String(open));
    nav.classList.toggle('open', open);
    if (open && focus) {
      const all = links();
      (all.find((a) => a.getAttribute('aria-current') === 'page') || all[0])?.focus();
    }
  }
  toggle.addEventListener('click', (e) => {
    // A click from the keyboard (Enter/Space) has no pointer position: then the focus goes into the menu.
    setOpen(!isOpen(), { focus: e.detail === 0 });
  });
  toggle.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && isOpen()) { e.preventDefault(); setOpen(false); return; }
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      setOpen(true);
      const all = links();
      all[e.key === 'ArrowDown' ? 0 : all.length - 1]?.focus();
    }
  });
  nav.addEventListener('keydown', (e) => {
    const all = links();
    const i = all.indexOf(document.activeElement);
    let next = null;
    if (e.key === 'ArrowDown') next = all[(i + 1) % all.length];
    else if (e.key === 'ArrowUp') next = all[(i - 1 + all.length) % all.length];
    else if (e.key === 'Home') next = all[0];
    else if (e.key === 'End') next = all[all.length - 1];
    else if (e.key === 'Escape' && isOpen()) { e.preventDefault(); setOpen(false); toggle.focus(); return; }
    if (next) { e.preventDefault(); next.focus(); }
  });
  // Choosing a page, or clicking anywhere else, closes the menu.
  nav.addEventListener('click', (e) => { if (e.target.closest('.nav-link')) setOpen(false); });
  document.addEventListener('click', (e) => {
    if (isOpen() && !nav.contains(e.target) && !toggle.contains(e.target)) setOpen(false);
  }, { signal });
  window.addEventListener('hashchange', () => { if (isOpen()) setOpen(false); }, { signal });
  return { nav, toggle };
}

// ---------------------------------------------------------------- the bell

let bellTimer = null;

/**
 * The notification bell: the unread count, kept fresh by a slow poll, on
 * every route change and when the notifications page says it changed.
 */
function bellButton() {
  const count = h('span', { class: 'bell-count', id: 'bell-count', hidden: true });
  const bell = h('a', { class: 'btn ghost bell', id: 'bell', href: '#/notifications' },
    icon('bell'), count);
  const label = (n) => bind(bell, n ? 'notices.bell.count' : 'notices.bell', { n }, 'aria-label');
  label(0);
  bind(bell, 'notices.bell', null, 'title');
  async function refresh() {
    if (!me || !bell.isConnected) return;
    try {
      const page = await get('/api/me/notifications?unread=true&limit=1');
      count.hidden = !page.unread;
      count.textContent = page.unread > 99 ? '99+' : String(page.unread);
      bell.dataset.unread = String(page.unread);
      label(page.unread);
    } catch { /* the connection banner says it */ }
  }
  bell.addEventListener('refresh', refresh);
  clearInterval(bellTimer);
  bellTimer = setInterval(refresh, 20000);
  refresh();
  return bell;
}

function refreshBell() {
  const bell = document.getElementById('bell');
  if (bell) bell.dispatchEvent(new Event('refresh'));
}
window.addEventListener('pvce:notifications', refreshBell);
window.addEventListener('hashchange', refreshBell);

/** Moves the keyboard focus to the page's heading (or the view itself). */
function focusView() {
  if (!shell) return;
  const target = shell.view.querySelector('h1') || shell.view;
  if (target !== shell.view && !target.hasAttribute('tabindex')) target.setAttribute('tabindex', '-1');
  target.focus({ preventScroll: false });
}
let focusOnMount = false;

async function doLogout() {
  let res = null;
  try { res = await post('/api/auth/logout'); } catch { /* the session may already be gone */ }
  // Signed in through a campus provider: end that session too (it comes back here).
  if (res && typeof res.redirect === 'string' && /^https?:\/\//.test(res.redirect)) {
    location.assign(res.redirect);
    return;
  }
  location.hash = '';
  showLogin();
}

function unmountView() {
  if (currentView && currentView.unmount) {
    try { currentView.unmount(); } catch (e) { console.error(e); }
  }
  currentView = null;
}

let statusAt = 0;
/** Colours the top bar's status dot (at most every 30 s, on navigation). */
async function refreshStatusDot() {
  if (!shell || Date.now() - statusAt < 30000) return;
  statusAt = Date.now();
  const dot = shell.statusDot;
  try {
    const st = await get('/api/status');
    dot.className = `status-dot level-${st.level}`;
    bind(dot, `status.dot.${st.level}`, undefined, 'aria-label');
    bind(dot, `status.dot.${st.level}`, undefined, 'title');
  } catch { /* the dot stays grey; the page itself says why */ }
}

async function route() {
  if (!me || !shell) return;
  refreshStatusDot();
  const seq = ++routeSeq;
  const path = location.hash.replace(/^#\/?/, '');
  if (!path) { location.replace(`#/${homeFor(me)}`); return; }
  let match = null;
  for (const [re, mod, roles, kind] of ROUTES) {
    const m = path.match(re);
    if (m && roles.includes(me.role)) { match = { mod, params: m.slice(1), kind }; break; }
  }
  if (!match) { location.replace(`#/${homeFor(me)}`); return; }
  for (const a of shell.nav.querySelectorAll('.nav-link')) {
    const active = path === a.dataset.route || path.startsWith(`${a.dataset.route}/`);
    a.classList.toggle('active', active);
    if (active) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.body.dataset.route = path.split('/')[0];
  unmountView();
  replace(shell.view, h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { i18n: 'common.loading' })));
  let mod;
  try {
    mod = await import(match.mod);
  } catch (err) {
    // A module that failed to load stays failed for this document (the
    // module map caches the failure), so only a reload can bring the page:
    // say so instead of leaving the spinner up.
    if (seq !== routeSeq) return;
    const reload = h('button', { type: 'button', class: 'btn primary', i18n: 'error.reload' });
    reload.addEventListener('click', () => location.reload());
    replace(shell.view, h('div', { class: 'empty load-failed', role: 'alert' },
      h('p', { i18n: 'error.viewLoad' }), reload));
    toastError(err);
    return;
  }
  if (seq !== routeSeq) return;
  const container = h('div', { class: 'view-inner' });
  replace(shell.view, container);
  currentView = mod.mount(container, match.params, { me, kind: match.kind }) || null;
  // After sign-in the focus goes to the page, not the body; after a route
  // change too, unless something in the new view took it already.
  if (focusOnMount || document.activeElement === document.body || !document.activeElement) {
    focusOnMount = false;
    requestAnimationFrame(() => { if (document.activeElement === document.body || !document.activeElement) focusView(); });
  }
}

window.addEventListener('hashchange', route);
onLangChange(() => { document.title = `pvce · ${t('app.tagline')}`; });

// Any request that cannot reach the server (or gets a gateway error) marks
// the connection lost until one succeeds again: the banner says so while
// the views keep polling with backoff.
onConnectionChange((online) => {
  if (shell && shell.conn) shell.conn.hidden = online;
});

setPasswordChangeHandler(() => {
  if (me && shell) { me.must_change_password = true; showPasswordChange(); }
});

setUnauthorizedHandler(() => {
  if (me) {
    toast(t('error.session'), 'error');
    showLogin();
  }
});

async function boot() {
  document.title = `pvce · ${t('app.tagline')}`;
  try {
    const res = await get('/api/me', { quiet401: true });
    me = res.user;
    if (me.must_change_password) showPasswordChange(); else showApp();
  } catch (err) {
    if (err.status !== 401) toastError(err);
    showLogin();
  }
}

boot();
