// Campus sign-in through the login page: the provider's button (both
// languages), the real OpenID Connect provider's own page, back signed in
// with the role the rules gave, and signing out through the provider.
// usage: node tests/browser/sso.mjs <base-url> <provider-port> <provider-socket> <artifact-dir>
// The provider listens on the host's loopback; like the server, it is
// relayed into this network namespace (a Unix socket the harness bridges).

import { run, assert, unexpectedErrors, args, relayLoopback } from './lib.mjs';

const [base, providerPort, providerSock, artifactDir] = args('sso.mjs <base-url> <provider-port> <provider-socket> <artifact-dir>');
const relay = await relayLoopback(providerPort, providerSock);

await run('sso', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await page.goto(base);
  await page.waitForSelector('.sso-btn');
  assert((await page.textContent('.sso-btn')).trim() === 'Campus account', 'English provider label');
  assert((await page.textContent('.sso-or')).includes('campus account'), 'English lead-in');
  // The local form stays beside it (break-glass accounts).
  assert(await page.locator('#login-password').count() === 1, 'local form kept');
  await shot(page, 'sso-login-en.png');
  step('provider button in English');

  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('.sso-btn').textContent.trim() === '统一身份认证');
  assert((await page.textContent('.sso-or')).includes('校园统一身份'), 'Chinese lead-in');
  await shot(page, 'sso-login-zh.png');
  step('provider button in Chinese');

  // Off to the provider's own page, approve as the directory's Alice.
  await page.click('.sso-btn');
  await page.waitForURL((u) => u.port === String(providerPort) && u.pathname === '/oauth2/authorize');
  await page.fill('input[name=sub]', 'u-web-alice');
  await page.click('form button[type=submit]:not([name])');
  // Back at pvce, signed in; the rules made her a teacher.
  await page.waitForSelector('.topbar-right');
  const me = await page.evaluate(async () => (await (await fetch('/api/me')).json()).user);
  assert(me.username === 'test-web-alice' && me.role === 'teacher', `signed in as ${JSON.stringify(me)}`);
  await shot(page, 'sso-signed-in.png');
  step('signed in through the provider');

  // Signing out ends the provider's session too (its confirmation page).
  await page.click('.topbar-right button[data-i18n-aria=logout]');
  await page.waitForURL((u) => u.port === String(providerPort) && u.pathname.startsWith('/oauth2/end_session'));
  step('signed out through the provider');
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
});
relay.close();
