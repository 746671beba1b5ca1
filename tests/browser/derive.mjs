// A teacher's course image, all in the browser against a real build VM:
// "What does my course need?" with the form's own placeholders (tiny-linux /
// gcc, make) finds the busybox image as a base (busybox an extra, gcc and make
// missing) → derive → the build VM's desktop (Back goes to the library, Seal
// and Abandon offered) → the draft in the tree opens the same console → seal
// → the new template is ready in the tree → a course is created on it. Then,
// in Chinese, a second draft is abandoned from the tree.
// usage: node tests/browser/derive.mjs <base-url> <username> <password> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, artifactDir] = args('derive.mjs <base-url> <username> <password> <artifact-dir>');

await run('derive', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await login(page, base, username, password);
  await page.waitForURL(/#\/teach$/);
  await page.click('a.nav-link[data-route=templates]');
  await page.waitForSelector('.tree li[data-tpl="test-ui-tiny"]');

  // The placeholders themselves: the OS exists, so a base is offered.
  const osPh = await page.getAttribute('#match-os', 'placeholder');
  const swPh = await page.getAttribute('#match-software', 'placeholder');
  await page.fill('#match-os', osPh);
  await page.fill('#match-software', swPh);
  await page.click('.match-card button[type=submit]');
  await page.waitForSelector('.match-result .match-base');
  const result = await page.textContent('.match-result');
  assert(result.includes('test-ui-tiny'), `the busybox image is the base, got "${result}"`);
  assert(!(await page.locator('.match-result .vm-error').count()), `no "no template has this OS", got "${result}"`);
  const extra = await page.locator('.match-extra .chip').allTextContents();
  assert(JSON.stringify(extra) === '["busybox"]', `busybox shown as an extra, got ${JSON.stringify(extra)}`);
  const missing = await page.locator('.match-missing .chip').allTextContents();
  assert(JSON.stringify(missing) === '["gcc","make"]', `gcc and make still to install, got ${JSON.stringify(missing)}`);
  await shot(page, 'derive-match.png');
  step(`match with the placeholders (${osPh} / ${swPh}): base test-ui-tiny, extra busybox, missing gcc, make`);

  // Derive: the page goes to the build VM's desktop.
  await page.fill('#derive-name', 'test-ui-tiny-c');
  await page.click('.derive-form button[type=submit]');
  await page.waitForURL(/#\/desktop\/[\w-]+$/, { timeout: 120000 });
  const buildUrl = page.url();
  await page.waitForSelector('.desktop[data-conn=connected]', { timeout: 60000 });
  await page.waitForSelector('#seal-draft');
  await page.waitForSelector('#abandon-draft');
  const back = await page.getAttribute('.desktop-bar a.btn', 'href');
  assert(back === '#/templates', `Back from a build VM goes to the library, got ${back}`);
  assert((await page.textContent('.draft-chip')).includes('test-ui-tiny-c'), 'the desktop says which draft it builds');
  await shot(page, 'derive-desktop.png');
  step('derived: build VM desktop connected, Seal and Abandon offered, Back → #/templates');

  // The draft in the tree: its actions, and its console opens from there.
  await page.click('.desktop-bar a.btn');
  const draft = page.locator('.tree li[data-tpl="test-ui-tiny-c"][data-state=draft]');
  await draft.waitFor();
  for (const a of ['console', 'seal', 'abandon']) {
    assert(await draft.locator(`.tree-actions [data-action=${a}]`).count() === 1, `the draft offers ${a}`);
  }
  await shot(page, 'derive-tree-draft.png');
  await draft.locator('[data-action=console]').click();
  await page.waitForURL(buildUrl);
  await page.waitForSelector('.desktop[data-conn=connected]', { timeout: 60000 });
  step('the draft in the tree opens its build VM');

  // Seal from the desktop: shut down, read-only, ready in the tree.
  await page.click('#seal-draft');
  await page.click('dialog.dialog button[value=ok]');
  await page.waitForURL(/#\/templates$/, { timeout: 120000 });
  await page.waitForSelector('.tree li[data-tpl="test-ui-tiny-c"][data-state=ready]');
  await page.waitForSelector('.toast-success');
  assert(await page.locator('.tree li[data-tpl="test-ui-tiny-c"] > .tree-actions [data-action=seal]').count() === 0, 'a ready template has no draft actions');
  // Unused yet (no course, no child): it can be deleted; teachers don't flatten.
  assert(await page.locator('.tree li[data-tpl="test-ui-tiny-c"] > .tree-actions [data-action=delete]').count() === 1, 'an unused template offers Delete');
  assert(await page.locator('.tree [data-action=flatten]').count() === 0, 'flattening is for admins');
  const usage = await page.textContent('#tpl-usage');
  assert(/\d+ templates take/.test(usage), `the library's disk use heads the tree, got "${usage}"`);
  await shot(page, 'derive-sealed.png');
  step('sealed: the new template is ready in the tree');

  // A course on it: the exact match now, then "Create a course on it".
  await page.fill('#match-os', 'tiny-linux');
  await page.fill('#match-software', 'busybox, gcc, make');
  await page.click('.match-card button[type=submit]');
  await page.waitForSelector('.match-ok >> text=test-ui-tiny-c');
  await page.click('.match-result a.btn');
  await page.waitForSelector('#spec-tpl-0');
  const chosen = await page.locator('#spec-tpl-0 option:checked').textContent();
  assert(chosen.startsWith('test-ui-tiny-c'), `the sealed template is preselected, got ${chosen}`);
  await page.fill('#course-code', 'test-ui-derived');
  await page.fill('#course-name', 'Compilers');
  await page.fill('#spec-mem-0', '256');
  await page.click('form button[type=submit]');
  await page.waitForURL(/#\/teach\/[\w-]+$/);
  step('a course was created on the sealed template');

  // In Chinese: a second draft, abandoned from the tree.
  await page.click('a.nav-link[data-route=templates]');
  await page.waitForSelector('.tree li[data-tpl="test-ui-tiny-c"]');
  await page.click('.lang-toggle');
  await page.waitForSelector('h1 >> text=模板库');
  await page.fill('#match-os', 'tiny-linux');
  await page.fill('#match-software', 'vim');
  await page.click('.match-card button[type=submit]');
  await page.waitForSelector('.match-result .match-base');
  await page.fill('#derive-name', 'test-ui-tiny-vim');
  await page.click('.derive-form button[type=submit]');
  await page.waitForURL(/#\/desktop\/[\w-]+$/, { timeout: 120000 });
  await page.waitForSelector('#abandon-draft >> text=放弃草稿');
  await page.click('.desktop-bar a.btn');
  const vimDraft = page.locator('.tree li[data-tpl="test-ui-tiny-vim"][data-state=draft]');
  await vimDraft.waitFor();
  await shot(page, 'derive-tree-draft-zh.png');
  await vimDraft.locator('[data-action=abandon]').click();
  await page.waitForSelector('dialog.dialog h2 >> text=放弃“test-ui-tiny-vim”？');
  await page.click('dialog.dialog button[value=ok]');
  await page.waitForSelector('.tree li[data-tpl="test-ui-tiny-vim"]', { state: 'detached', timeout: 60000 });
  step('zh-CN: a second draft abandoned from the tree');

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
