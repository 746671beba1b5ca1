// Campus sign-in through CAS from the login page: the CAS button (both
// languages), the real CAS server's own login page filled in Chromium,
// back signed in with the role the rules gave from the CAS attributes, and
// signing out through the CAS logout.
// usage: node tests/browser/cas.mjs <base-url> <cas-port> <cas-socket> <user> <password> <artifact-dir>
// The CAS server listens on the host's loopback; like the server, it is
// relayed into this network namespace (a Unix socket the harness bridges).

import { run, assert, unexpectedErrors, args, relayLoopback } from './lib.mjs';

const [base, casPort, casSock, user, password, artifactDir] = args('cas.mjs <base-url> <cas-port> <cas-socket> <user> <password> <artifact-dir>');
const relay = await relayLoopback(casPort, casSock);

await run('cas', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await page.goto(base);
  await page.waitForSelector('.sso-btn');
  assert((await page.textContent('.sso-btn')).trim() === 'Campus CAS', 'English provider label');
  assert(await page.locator('#login-password').count() === 1, 'local form kept');
  await shot(page, 'cas-login-en.png');
  step('CAS button in English');

  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('.sso-btn').textContent.trim() === '统一身份认证（CAS）');
  await shot(page, 'cas-login-zh.png');
  step('CAS button in Chinese');

  // Off to the CAS server's own login page; a wrong password is refused there.
  await page.click('.sso-btn');
  await page.waitForURL((u) => u.port === String(casPort) && u.pathname === '/cas/login');
  await page.fill('#id_username', user);
  await page.fill('#id_password', 'not-the-password');
  await page.click('#login_form button[type=submit]');
  await page.waitForSelector('.alert-danger');
  assert(new URL(page.url()).port === String(casPort), 'still at the CAS after a wrong password');
  step('wrong password refused by the CAS');
  await page.fill('#id_username', user);
  await page.fill('#id_password', password);
  await page.click('#login_form button[type=submit]');
  // Back at pvce with a ticket, signed in; the category code made a student.
  await page.waitForSelector('.topbar-right');
  const me = await page.evaluate(async () => (await (await fetch('/api/me')).json()).user);
  assert(me.username === user && me.role === 'student', `signed in as ${JSON.stringify(me)}`);
  assert(!page.url().includes('ticket='), `the ticket is not left in the address bar: ${page.url()}`);
  await shot(page, 'cas-signed-in.png');
  step('signed in through the CAS');

  // Signing out ends the CAS session too: the browser visits the CAS
  // logout, so the CAS button asks for the password again.
  const toCas = page.waitForRequest((r) => r.url().startsWith(`http://127.0.0.1:${casPort}/cas/logout`));
  await page.click('.topbar-right button[data-i18n-aria=logout]');
  await toCas;
  await page.waitForLoadState();
  await page.goto(base);
  await page.waitForSelector('.sso-btn');
  await page.click('.sso-btn');
  await page.waitForURL((u) => u.port === String(casPort) && u.pathname === '/cas/login');
  await page.waitForSelector('#id_password');
  step('signed out through the CAS');
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
});
relay.close();
