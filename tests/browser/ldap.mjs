// Campus sign-in with an LDAP directory through the login page: the
// directory's button turns the form into its form (both languages), a wrong
// password is refused in place, the right one signs the person in with the
// role the rules gave; the way back to the local form stays.
// usage: node tests/browser/ldap.mjs <base-url> <username> <password> <artifact-dir>
// The browser talks only to pvce; pvce talks to the directory.

import { run, assert, unexpectedErrors, args } from './lib.mjs';

const [base, username, password, artifactDir] = args('ldap.mjs <base-url> <username> <password> <artifact-dir>');

await run('ldap', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await page.goto(base);
  const button = '.sso-btn[data-provider=ldap]';
  await page.waitForSelector(button);
  assert((await page.textContent(button)).trim() === 'Campus directory', 'English provider label');
  assert(await page.locator('.login-realm:not([hidden])').count() === 0, 'the local form first');

  await page.click(button);
  await page.waitForSelector('.login-realm:not([hidden])');
  assert((await page.textContent('.login-realm')).includes('Campus directory'), 'the form names the directory');
  await shot(page, 'ldap-login-en.png');
  step('the directory form in English');

  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('.login-realm').textContent.includes('校园目录'));
  assert((await page.textContent('.login-local')).trim() === '改用本地账号登录', 'Chinese way back');
  await shot(page, 'ldap-login-zh.png');
  step('the directory form in Chinese');

  // A wrong password: refused in place, in Chinese, the same words as the local form.
  await page.fill('#login-username', username);
  await page.fill('#login-password', 'not-the-password');
  await page.click('form.login-form button[type=submit]');
  await page.waitForSelector('.form-error:not([hidden])');
  const err = await page.textContent('.form-error');
  assert(err === '用户名或密码错误。', `wrong-password message, got "${err}"`);
  step('wrong password refused');

  await page.fill('#login-password', password);
  await page.click('form.login-form button[type=submit]');
  await page.waitForSelector('.topbar-right');
  const me = await page.evaluate(async () => (await (await fetch('/api/me')).json()).user);
  assert(me.username === username && me.role === 'teacher', `signed in as ${JSON.stringify(me)}`);
  await shot(page, 'ldap-signed-in.png');
  step('signed in through the directory');
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
});
