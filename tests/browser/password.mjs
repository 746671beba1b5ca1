// An admin finds a user (search, pages), resets their password with a
// forced change; the user signs in with it in Chinese, is asked for a
// password of their own (a mismatch is caught), and then reaches their page.
// usage: node tests/browser/password.mjs <base-url> <admin> <password> <artifact-dir> <user>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, admin, password, artifactDir, user] = args('password.mjs <base-url> <admin> <password> <artifact-dir> <user>');
const RESET = 'given-by-admin-1';
const MINE = 'my-own-secret-9';
const MINE2 = 'my-newer-secret-8';

await run('password', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await login(page, base, admin, password);
  await page.waitForSelector('.node-card');
  await page.click('a.nav-link[data-route=users]');
  await page.waitForSelector('tbody tr[data-username]');

  // Pages: 32 users, 25 a page.
  assert(await page.locator('tbody tr[data-username]').count() === 25, 'a page holds 25 users');
  assert(await page.isDisabled('#users-prev'), 'no previous page on the first');
  await page.click('#users-next');
  await page.waitForSelector('#users-page >> text=Page 2');
  const rest = await page.locator('tbody tr[data-username]').count();
  assert(rest === 7, `the second page holds the other 7, got ${rest}`);
  assert(await page.isDisabled('#users-next'), 'no page after the last');
  step('users in pages');

  // Search narrows to the one user (and goes back to the first page).
  await page.fill('#users-search', 'FORGET');
  await page.waitForFunction((u) => {
    const rows = [...document.querySelectorAll('tbody tr[data-username]')];
    return rows.length === 1 && rows[0].dataset.username === u;
  }, user, { timeout: 10000 });
  await page.waitForSelector('#users-page >> text=Page 1');
  await page.fill('#users-search', 'no-such-person');
  await page.waitForSelector('text=No user matches.');
  await page.fill('#users-search', user);
  await page.waitForSelector(`tbody tr[data-username="${user}"]`);
  step('search');

  // Reset with a forced change.
  await page.click(`tbody tr[data-username="${user}"] .reset-pw`);
  await page.waitForSelector('#reset-dialog[open]');
  assert((await page.inputValue('#reset-pw')).length >= 8, 'a password is suggested');
  assert(await page.isChecked('#reset-force'), 'a forced change is the default');
  await page.fill('#reset-pw', 'short');
  await page.click('#reset-dialog button[type=submit]');
  await page.waitForSelector('#reset-dialog .form-error >> text=at least 8 characters');
  await page.fill('#reset-pw', RESET);
  await page.click('#reset-dialog button[type=submit]');
  await page.waitForSelector(`.toast-success >> text=The password of ${user} was changed; they choose their own`);
  await page.waitForSelector(`tbody tr[data-username="${user}"] >> text=Must change password`);
  await shot(page, 'admin-reset.png');
  step('password reset with a forced change');

  // The user, in Chinese: the old password no longer works, the reset one does,
  // and the first thing is choosing a password of their own.
  const u = await newPage({ locale: 'zh-CN' });
  await login(u, base, user, password);
  await u.waitForSelector('.form-error >> text=用户名或密码错误。');
  await u.fill('#login-password', RESET);
  await u.click('form.login-form button[type=submit]');
  await u.waitForSelector('#pw-form h1 >> text=设置新密码');
  assert(await u.evaluate(() => document.activeElement && document.activeElement.id === 'pw-new'), 'the focus is on the new password');
  // The server refuses everything else meanwhile.
  const blocked = await u.evaluate(() => fetch('/api/vms').then((r) => r.json()));
  assert(blocked.error === 'password_change_required', `other requests are refused, got ${JSON.stringify(blocked)}`);
  await u.fill('#pw-new', MINE);
  await u.fill('#pw-again', `${MINE}x`);
  await u.click('#pw-form button[type=submit]');
  await u.waitForSelector('#pw-form .form-error >> text=两次输入的新密码不一致。');
  await shot(u, 'password-change-zh.png');
  await u.fill('#pw-again', MINE);
  await u.click('#pw-form button[type=submit]');
  await u.waitForSelector('.toast-success >> text=新密码已保存。');
  await u.waitForSelector('.page-head h1');
  assert(u.url().endsWith('#/courses'), `the student lands on their courses, got ${u.url()}`);
  step('the user chose their own password (zh)');

  // Later, of their own accord (the key button): the current password is
  // checked by the server, then the page goes back where it was.
  await u.click('#change-pw');
  await u.waitForSelector('#pw-form h1 >> text=修改你的密码');
  assert(await u.evaluate(() => document.activeElement.id === 'pw-current'), 'the focus is on the current password');
  await u.fill('#pw-current', 'not-my-password');
  await u.fill('#pw-new', MINE2);
  await u.fill('#pw-again', MINE2);
  await u.click('#pw-form button[type=submit]');
  await u.waitForSelector('#pw-form .form-error >> text=当前密码不正确。');
  await u.fill('#pw-current', MINE);
  await u.click('#pw-form button[type=submit]');
  await u.waitForSelector('.toast-success >> text=新密码已保存。');
  await u.waitForSelector('.page-head h1');
  assert(u.url().endsWith('#/courses'), `back where they were, got ${u.url()}`);
  step('the user changed their password again, of their own accord (zh)');

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
