// The notification bell (issue 13): a student whose complaint got the lab's
// written reply and whose incident got a comment and was resolved sees the
// unread count on the bell, opens the list, opens one (it is marked read,
// the ticket page shows), switches to Chinese and sees the list in Chinese,
// marks all read, reads the reply on the complaint, and saves their settings.
// A teacher then links their software request to a (sealed) template, in
// Chinese: the timeline says so and the server's work-log line follows.
// usage: node tests/browser/notices.mjs <base-url> <student> <password> <ticket-id> <complaint-id> <teacher> <request-id> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, student, password, ticketId, complaintId, teacher, requestId, artifactDir] = args('notices.mjs <base-url> <student> <password> <ticket-id> <complaint-id> <teacher> <request-id> <artifact-dir>');

await run('notices', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await login(page, base, student, password);

  // The bell counts three unread notifications.
  await page.waitForSelector('#bell-count:not([hidden]) >> text=3');
  assert(await page.getAttribute('#bell', 'aria-label') === 'Notifications: 3 unread', 'the bell says how many are unread');
  step('bell shows 3');

  await page.click('#bell');
  await page.waitForSelector('#notice-list li.notice');
  const items = await page.locator('#notice-list li.notice').count();
  assert(items === 3, `three notifications listed, got ${items}`);
  assert(await page.locator('#notice-list li.notice.unread').count() === 3, 'all unread');
  const first = (await page.textContent('#notice-list li.notice >> nth=0 >> .notice-subject')).trim();
  assert(/^\[pvce\] Your ticket #\d+ was resolved: /.test(first), `newest first, in English: ${first}`);
  await shot(page, 'notices-list-en.png');

  // Opening one marks it read and shows its ticket.
  await page.click('#notice-list li.notice >> nth=0 >> .notice-subject');
  await page.waitForFunction((id) => location.hash === `#/tickets/${id}`, ticketId);
  await page.waitForSelector('#bell-count:not([hidden]) >> text=2');
  step('opened one: ticket shown, two unread');

  // In Chinese.
  await page.click('.lang-toggle');
  await page.click('#bell');
  await page.waitForSelector('#notice-list li.notice');
  await page.waitForFunction(() => /已解决/.test(document.querySelector('#notice-list .notice-subject').textContent));
  assert((await page.textContent('h1')).trim() === '通知', 'the page title is in Chinese');
  assert(await page.locator('#notice-list li.notice.unread').count() === 2, 'two left unread');
  assert(await page.getAttribute('#bell', 'aria-label') === '通知：2 条未读', 'the bell speaks Chinese');
  await shot(page, 'notices-list-zh.png');
  await page.click('#notices-read-all');
  await page.waitForSelector('.toast-success >> text=已将 2 条标为已读。');
  await page.waitForSelector('#bell-count', { state: 'hidden' });
  // The list is drawn again after the bell (its own request): wait for it,
  // then check nothing is left unread and every notice is still listed.
  await page.waitForFunction(() => document.querySelectorAll('#notice-list li.notice.unread').length === 0, null, { timeout: 10000 })
    .catch(() => {});
  assert(await page.locator('#notice-list li.notice.unread').count() === 0, 'none unread');
  assert(await page.locator('#notice-list li.notice').count() === 3, 'all three still listed');
  step('marked all read in Chinese');

  // The complaint shows the lab's written reply.
  await page.evaluate((id) => { location.hash = `#/tickets/${id}`; }, complaintId);
  await page.waitForSelector('#ticket-reply');
  assert((await page.textContent('#ticket-reply h3')).trim() === '实验中心的答复', 'the reply is headed in Chinese');
  assert((await page.textContent('#ticket-reply')).includes('Sorry: the doors now open at 8:00.'), 'the reply text is shown');
  assert(await page.locator('[data-kind=reply]').count() === 1, 'the reply is in the timeline');
  await shot(page, 'notices-reply-zh.png');
  step('complaint reply shown');

  // Settings: a bad webhook is refused in Chinese, then e-mail saved.
  await page.click('#bell');
  await page.waitForSelector('#notices-settings');
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

  // A teacher links their request to a template (Chinese browser).
  const tp = await newPage({ locale: 'zh-CN' });
  await login(tp, base, teacher, password);
  await tp.waitForSelector('#bell');
  await tp.evaluate((id) => { location.hash = `#/tickets/${id}`; }, requestId);
  await tp.waitForSelector('.template-box [data-action=link-template]:not([disabled])');
  assert((await tp.textContent('.template-box h2')).trim() === '此申请对应的模板', 'the template box speaks Chinese');
  await tp.click('[data-action=link-template]:not([disabled])');
  await tp.waitForSelector('[data-kind=template_linked] >> text=关联了模板');
  await tp.waitForSelector('[data-kind=worklog] >> text=已封装，可以使用');
  await shot(tp, 'notices-template-zh.png');
  step('teacher linked a template');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
