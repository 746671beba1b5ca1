// Login page and language switch, no VM needed.
// usage: node tests/browser/login.mjs <base-url> <username> <password> <artifact-dir>

import { run, assert, unexpectedErrors, args } from './lib.mjs';

const [base, username, password, artifactDir] = args('login.mjs <base-url> <username> <password> <artifact-dir>');

await run('login', artifactDir, async ({ newPage, step, shot, logs }) => {
  // An English browser gets English.
  let page = await newPage({ locale: 'en-US' });
  const res = await page.goto(base);
  const csp = res.headers()['content-security-policy'] || '';
  assert(csp.includes("default-src 'self'") && csp.includes("script-src 'self'"), `strict CSP header expected, got "${csp}"`);
  await page.waitForSelector('#login-title');
  assert(await page.textContent('#login-title') === 'Sign in', 'English login title');
  assert(await page.getAttribute('html', 'lang') === 'en', 'html lang=en');
  // Every input has a label.
  for (const id of ['login-username', 'login-password']) {
    assert(await page.locator(`label[for=${id}]`).count() === 1, `label for #${id}`);
  }
  await shot(page, 'login-en.png');
  step('English login page');

  // Switch to Chinese: relabelled in place, remembered across reloads.
  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('#login-title').textContent === '登录');
  assert(await page.getAttribute('html', 'lang') === 'zh-CN', 'html lang=zh-CN');
  // Its accessible name is its visible label (no aria-label that says
  // something else); the tooltip explains it.
  assert(await page.getAttribute('.lang-toggle', 'aria-label') === null, 'the language toggle is named by its visible label');
  assert((await page.textContent('.lang-toggle')).trim() === 'English', 'in Chinese the toggle offers English');
  assert(((await page.getAttribute('.lang-toggle', 'title')) || '').length > 0, 'the language toggle has a tooltip');
  await page.reload();
  await page.waitForSelector('#login-title');
  assert(await page.textContent('#login-title') === '登录', 'Chinese remembered after reload');
  await shot(page, 'login-zh.png');
  step('switched to Chinese, remembered');

  // Wrong password: a clear message, not a raw dump.
  await page.fill('#login-username', username);
  await page.fill('#login-password', 'wrong-password');
  await page.click('form.login-form button[type=submit]');
  await page.waitForSelector('.form-error:not([hidden])');
  const err = await page.textContent('.form-error');
  assert(err === '用户名或密码错误。', `wrong-password message, got "${err}"`);
  step('wrong password refused');

  // Sign in: the student home, in Chinese; then back to English.
  await page.fill('#login-password', password);
  await page.click('form.login-form button[type=submit]');
  await page.waitForSelector('.page-head h1');
  assert(await page.textContent('.page-head h1') === '我的课程', 'student home in Chinese');
  // API errors read in Chinese too: a real refusal from the server (a
  // student asking for the node list) through the UI's own error handling.
  const refusal = await page.evaluate(async () => {
    const [{ get }, { errorText }] = await Promise.all([import('/api.js'), import('/ui.js')]);
    try { await get('/api/nodes'); return 'no error'; } catch (e) { return `${e.status} ${errorText(e)}`; }
  });
  assert(refusal === '403 你没有执行此操作的权限。', `Chinese API error, got "${refusal}"`);
  await page.waitForSelector('.course-list .empty');
  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('.page-head h1').textContent === 'My courses');
  assert((await page.textContent('.course-list .empty')).includes('not enrolled'), 'empty state relabelled in English');
  await shot(page, 'student-empty-en.png');
  step('signed in; home relabelled in English');

  // Keyboard: after sign-in the focus is on the page (not the body); the
  // first stop of Tab is a skip link that jumps into the page.
  const firstStop = await page.evaluate(() => document.querySelector('a[href], button, input, select, textarea').className);
  assert(firstStop === 'skip-link', `the first keyboard stop is the skip link, got "${firstStop}"`);
  await page.focus('.skip-link');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement && document.activeElement.closest('#view'));
  assert(page.url().endsWith('#/courses'), `the skip link leaves the route alone, got ${page.url()}`);

  // The server becomes unreachable: the page says so (instead of showing
  // stale states as if current), keeps polling, and recovers by itself.
  assert(await page.isHidden('#conn-banner'), 'no connection warning while the server answers');
  await page.route('**/api/**', (r) => r.abort('connectionrefused'));
  await page.waitForSelector('#conn-banner:not([hidden])', { timeout: 15000 });
  const lost = await page.textContent('#conn-banner');
  assert(lost.includes('cannot be reached'), `the banner says the server cannot be reached, got "${lost}"`);
  await page.unroute('**/api/**');
  await page.waitForSelector('#conn-banner', { state: 'hidden', timeout: 20000 });
  step('connection lost: banner shown; back: banner gone by itself');

  // The session is the HttpOnly cookie: nothing but the language in localStorage.
  const stored = await page.evaluate(() => Object.keys(localStorage));
  assert(JSON.stringify(stored) === '["pvce.lang"]', `localStorage holds only the language, got ${JSON.stringify(stored)}`);
  const cookies = await page.context().cookies();
  assert(cookies.length > 0 && cookies.every((c) => c.httpOnly), 'session cookie is HttpOnly');
  assert(!(await page.evaluate(() => document.cookie)), 'no cookie visible to scripts');

  // A view whose code fails to load (the connection dropped) says so and
  // offers a reload, which brings it back, instead of spinning forever.
  await page.route('**/desktop.js', (r) => r.abort('internetdisconnected'));
  await page.evaluate(() => { location.hash = '#/desktop/7e57a000-0000-4000-8000-000000000000'; });
  await page.waitForSelector('.load-failed[role=alert]');
  await page.unroute('**/desktop.js');
  await page.click('.load-failed button');
  await page.waitForSelector('.load-failed', { state: 'detached' });
  await page.waitForSelector('.view-inner');
  await page.evaluate(() => { location.hash = '#/courses'; });
  await page.waitForSelector('.course-list .empty');
  step('a view that failed to load offers a working reload');

  // Sign out → login page again; a reload stays signed out.
  await page.click('.topbar button[data-i18n-aria=logout]');
  await page.waitForSelector('#login-title');
  await page.reload();
  await page.waitForSelector('#login-title');
  step('signed out');

  // A Chinese browser gets Chinese by default (fresh context, empty storage).
  page = await newPage({ locale: 'zh-CN' });
  await page.goto(`${base}/some/deep/link`);
  await page.waitForSelector('#login-title');
  assert(await page.textContent('#login-title') === '登录', 'zh-CN browser gets Chinese');
  step('zh-CN browser defaults to Chinese; deep links serve the app');

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
