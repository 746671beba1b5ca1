// The notification bell (issue 13): a student whose ticket got a reply and
// was resolved sees the unread count on the bell, opens the list, opens one
// (it is marked read, the ticket page shows), switches to Chinese and sees
// the list in Chinese, marks all read, and saves their settings.
// usage: node tests/browser/notices.mjs <base-url> <student> <password> <ticket-id> <artifact-dir>

import { run, assert, unexpectedErrors } from './lib.mjs';

const [base, student, password, ticketId, artifactDir] = process.argv.slice(2);
if (!artifactDir) {
  console.error('usage: notices.mjs <base-url> <student> <password> <ticket-id> <artifact-dir>');
  process.exit(2);
}

await run('notices', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await page.goto(base);
  await page.fill('#login-username', student);
  await page.fill('#login-password', password);
  await page.click('form.login-form button[type=submit]');

  // The bell counts two unread notifications.
  await page.waitForSelector('#bell-count:not([hidden]) >> text=2');
  assert(await page.getAttribute('#bell', 'aria-label') === 'Notifications: 2 unread', 'the bell says how many are unread');
  step('bell shows 2');

  await page.click('#bell');
  await page.waitForSelector('#notice-list li.notice');
  const items = await page.locator('#notice-list li.notice').count();
  assert(items === 2, `two notifications listed, got ${items}`);
  assert(await page.locator('#notice-list li.notice.unread').count() === 2, 'both unread');
  const first = (await page.textContent('#notice-list li.notice >> nth=0 >> .notice-subject')).trim();
  assert(/^\[pvce\] Your ticket #\d+ was resolved: /.test(first), `newest first, in English: ${first}`);
  await shot(page, 'notices-list-en.png');

  // Opening one marks it read and shows its ticket.
  await page.click('#notice-list li.notice >> nth=0 >> .notice-subject');
  await page.waitForFunction((id) => location.hash === `#/tickets/${id}`, ticketId);
  await page.waitForSelector('#bell-count:not([hidden]) >> text=1');
  step('opened one: ticket shown, one unread');

  // In Chinese.
  await page.click('.lang-toggle');
  await page.click('#bell');
  await page.waitForSelector('#notice-list li.notice');
  await page.waitForFunction(() => /已解决/.test(document.querySelector('#notice-list .notice-subject').textContent));
  assert((await page.textContent('h1')).trim() === '通知', 'the page title is in Chinese');
  assert(await page.locator('#notice-list li.notice.unread').count() === 1, 'one left unread');
  assert(await page.getAttribute('#bell', 'aria-label') === '通知：1 条未读', 'the bell speaks Chinese');
  await shot(page, 'notices-list-zh.png');
  await page.click('#notices-read-all');
  await page.waitForSelector('.toast-success >> text=已将 1 条标为已读。');
  await page.waitForSelector('#bell-count', { state: 'hidden' });
  assert(await page.locator('#notice-list li.notice.unread').count() === 0, 'none unread');
  step('marked all read in Chinese');

  // Settings: a bad webhook is refused in Chinese, then e-mail saved.
  await page.click('#notices-settings');
  await page.waitForSelector('#notice-settings:not([aria-busy])');
  await page.waitForSelector('#ns-save');
  await page.fill('#ns-webhook', 'http://169.254.169.254/latest');
  await page.click('#ns-save');
  await page.waitForSelector('#notice-settings .form-error >> text=服务器不允许这个 Webhook 地址');
  await page.fill('#ns-webhook', '');
  await page.fill('#ns-email', 'student@lab.example');
  await page.uncheck('#ns-commented-email');
  await page.selectOption('#ns-lang', 'en');
  await page.click('#ns-save');
  await page.waitForSelector('.toast-success >> text=通知设置已保存。');
  await shot(page, 'notices-settings-zh.png');
  step('settings saved');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
