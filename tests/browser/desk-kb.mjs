// Knowledge-base editing in a real browser, in both languages: staff
// (Chinese) open an article from the list, edit it in the prefilled editor
// and save a new revision, whose history lists both versions; an admin
// (English) retires it after a confirmation (cancelled once); it leaves the
// list and the search, and shows again under "Show retired articles".
// A system incident's title is worded in each reader's language.
// usage: node tests/browser/desk-kb.mjs <base-url> <admin> <staff> <password> <article-id> <artifact-dir> <system-ticket-id>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, admin, staff, password, articleId, artifactDir, systemId] = args('desk-kb.mjs <base-url> <admin> <staff> <password> <article-id> <artifact-dir> <system-ticket-id>');

const signIn = (page, username) => login(page, base, username, password, '.topbar');

await run('desk-kb', artifactDir, async ({ newPage, step, shot, logs }) => {
  const card = (p) => p.locator(`details.kb-article[data-article-id="${articleId}"]`);

  // ---- staff, in Chinese: edit from the list
  const w = await newPage({ locale: 'zh-CN' });
  await signIn(w, staff);
  await w.goto(`${base}/#/kb`);
  await card(w).waitFor();
  await card(w).locator('summary').click();
  assert((await card(w).locator('.kb-meta').textContent()).startsWith('第 1 版'), 'the revision is shown in Chinese');
  await card(w).locator('a[data-action=edit-article]').click();
  await w.waitForFunction(() => document.querySelector('#kb-title')?.value === '虚拟机黑屏');
  assert((await w.textContent('h1')).trim() === '编辑文章', 'the editor is in Chinese');
  assert(await w.inputValue('#kb-fix') === '重启虚拟机。', 'the editor is prefilled with the fix');
  assert(await w.inputValue('#kb-lang') === 'zh-CN', 'and the language');
  await w.waitForSelector('.kb-revision[data-revision="1"]');
  await w.fill('#kb-fix', '先关机，再开机；仍黑屏就报修。');
  await w.fill('#kb-cause', '显示驱动卡住。');
  await w.click('form.kb-form button[type=submit]');
  await w.locator('.toast-success', { hasText: '第 2 版' }).waitFor({ timeout: 10000 });
  await w.waitForFunction(() => location.hash === '#/kb');
  await card(w).waitFor();
  await card(w).locator('summary').click();
  assert((await card(w).textContent()).includes('先关机，再开机'), 'the list shows the new text');
  step('staff saved revision 2 in Chinese');

  // The history holds both versions; the earlier text is not lost.
  await card(w).locator('a[data-action=edit-article]').click();
  await w.waitForSelector('.kb-revision[data-revision="2"]');
  assert(await w.locator('.kb-revision').count() === 2, 'two revisions listed');
  const first = w.locator('.kb-revision[data-revision="1"]');
  await first.locator('summary').click();
  assert((await first.textContent()).includes('重启虚拟机。'), 'revision 1 keeps the old fix');
  assert((await w.textContent('.kb-revision[data-revision="2"] summary')).includes('当前'), 'revision 2 is marked current');
  await shot(w, 'desk-kb-history-zh.png');
  step('the history lists both revisions');

  // ---- the admin, in English: retire with a confirmation
  const a = await newPage({ locale: 'en-US' });
  await signIn(a, admin);
  await a.goto(`${base}/#/kb/edit/${articleId}`);
  await a.waitForSelector('.kb-revision[data-revision="2"]');
  assert((await a.textContent('h1')).trim() === 'Edit article', 'the editor is in English');
  await a.click('[data-action=retire-article]');
  await a.waitForSelector('dialog[open]');
  assert((await a.textContent('dialog[open] h2')).includes('Retire this article?'), 'the confirmation, in English');
  await a.click('dialog[open] button[value=cancel]');
  await a.waitForSelector('dialog[open]', { state: 'detached' });
  assert(a.url().endsWith(`#/kb/edit/${articleId}`), 'cancelled: still on the editor');
  await a.click('[data-action=retire-article]');
  await a.waitForSelector('dialog[open]');
  await shot(a, 'desk-kb-retire-en.png');
  await a.click('dialog[open] button[value=ok]');
  await a.locator('.toast-success', { hasText: 'Article retired' }).waitFor({ timeout: 10000 });
  await a.waitForFunction(() => location.hash === '#/kb');
  await a.waitForSelector('.kb-list:not([aria-busy])');
  assert(await card(a).count() === 0, 'a retired article leaves the list');
  await a.fill('#kb-q', 'black screen 黑屏');
  await a.waitForSelector('.kb-list .empty');
  step('retired after a confirmation; gone from search');
  await a.fill('#kb-q', '');
  await a.check('#kb-archived');
  await card(a).waitFor();
  assert((await card(a).locator('.kb-retired').textContent()).trim() === 'retired', 'marked retired, in English');
  assert(await card(a).locator('a[data-action=edit-article]').count() === 0, 'a retired article has no Edit link');
  step('still readable under "Show retired articles"');

  // The staff page in Chinese marks it too.
  await w.goto(`${base}/#/kb`);
  await w.check('#kb-archived');
  await card(w).waitFor();
  assert((await card(w).locator('.kb-retired').textContent()).trim() === '已停用', 'marked retired, in Chinese');

  // A system incident's title, in each reader's language.
  const sysLink = (p) => p.locator(`tr[data-ticket-id="${systemId}"] .ticket-link`);
  await w.goto(`${base}/#/desk`);
  await sysLink(w).waitFor();
  assert((await sysLink(w).textContent()) === '节点 test-node-7 已宕机（影响 3 位用户）', `system title in Chinese: ${await sysLink(w).textContent()}`);
  await a.goto(`${base}/#/desk`);
  await sysLink(a).waitFor();
  assert((await sysLink(a).textContent()) === 'Node test-node-7 is down (3 users affected)', 'system title in English');
  await sysLink(w).click();
  await w.waitForSelector('.ticket-title-text');
  assert((await w.textContent('.ticket-title-text')).includes('已宕机'), 'the ticket page words it in Chinese too');
  step('system incidents are titled in the reader\'s language');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
