// The audit log in a real browser: an admin (in English) finds the failed
// sign-in under a hostile name shown as text, filters by action, pages
// through the entries, downloads the filtered CSV, and reads the page in
// Chinese.
// usage: node tests/browser/audit.mjs <base-url> <admin> <password> <hostile-name> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, admin, password, hostile, artifactDir] = args('audit.mjs <base-url> <admin> <password> <hostile-name> <artifact-dir>');

await run('audit', artifactDir, async ({ newPage, step, shot, logs }) => {
  const a = await newPage({ locale: 'en-US' });
  await login(a, base, admin, password);
  await a.waitForSelector('.topbar');
  await a.click('nav a[data-route=audit]');
  await a.waitForSelector('table.audit tbody tr');
  assert((await a.textContent('h1')).includes('Audit log'), 'the page is in English');
  // 50 a page, newest first; the older ones on the next page.
  assert(await a.locator('table.audit tbody tr').count() === 50, 'a full first page');
  assert(await a.isDisabled('[data-action=prev]'), 'no newer page on the first');
  await a.click('[data-action=next]');
  await a.waitForFunction(() => document.querySelectorAll('table.audit tbody tr').length < 50);
  const seqs = await a.$$eval('table.audit tbody tr', (rs) => rs.map((r) => Number(r.dataset.seq)));
  assert(seqs.every((s, i) => i === 0 || s < seqs[i - 1]), `newest first: ${seqs}`);
  assert(await a.isDisabled('[data-action=next]'), 'the last page');
  step('paged');
  // Only the failed sign-ins under the hostile name.
  await a.fill('#audit-user', hostile);
  await a.selectOption('#audit-action', 'sign_in');
  await a.click('[data-action=filter]');
  await a.waitForFunction(() => document.querySelectorAll('table.audit tbody tr').length === 1);
  const row = a.locator('table.audit tbody tr');
  assert(await row.getAttribute('data-outcome') === 'failed', 'the failed sign-in');
  assert((await row.textContent()).includes(hostile), 'the name as typed, as text');
  assert((await row.textContent()).includes('Failed'), 'the outcome in words');
  assert(await a.locator('table.audit img').count() === 0, 'no element was made from the name');
  assert(await a.evaluate(() => window.__pwned === undefined), 'nothing in the name ran');
  await shot(a, 'audit-en.png');
  const href = await a.getAttribute('[data-action=csv]', 'href');
  assert(href.includes('action=sign_in'), `the CSV link carries the filters: ${href}`);
  const csv = await a.request.get(new URL(href, base).href);
  const text = await csv.text();
  assert(csv.status() === 200 && text.startsWith('at,user_id,user_name,action'), `the CSV: ${csv.status()}`);
  assert(text.trim().split('\n').length === 2, `one entry in the CSV: ${text}`);
  step('filtered and downloaded');
  await a.click('.lang-toggle');
  await a.waitForFunction(() => document.querySelector('h1').textContent.includes('审计日志'));
  assert((await row.textContent()).includes('失败'), 'the outcome in Chinese');
  assert((await a.textContent('table.audit thead')).includes('地址'), 'the columns in Chinese');
  await shot(a, 'audit-zh.png');
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
});
