// A course with the clipboard off (an exam, issue 18): the student's desktop
// page reads the course's switches and says "Clipboard off in this course"
// (en, zh-CN), with no "paste as typing" panel to open.
// usage: node tests/browser/clipboard.mjs <base-url> <username> <password> <vm-id> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, vmId, artifactDir] = args('clipboard.mjs <base-url> <username> <password> <vm-id> <artifact-dir>');

await run('clipboard', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US', permissions: ['clipboard-read', 'clipboard-write'] });
  await login(page, base, username, password);
  await page.waitForSelector('section.course', { timeout: 15000 });
  await page.goto(`${base}#/desktop/${vmId}`);
  await page.waitForSelector('.desktop[data-clip-to-guest=false][data-clip-from-guest=false]', { timeout: 15000 });
  await page.waitForSelector('.desktop-clip-off', { state: 'visible' });
  const chip = (await page.textContent('.desktop-clip-off')).trim();
  assert(chip === 'Clipboard off in this course', `the page says the clipboard is off, got "${chip}"`);
  const why = await page.getAttribute('.desktop-clip-off', 'title');
  assert(why.includes('teacher'), `and why, got "${why}"`);
  assert(!(await page.isVisible('button[aria-controls=paste-panel]')), 'no "paste as typing" panel to open');
  assert(await page.locator('#kbd-hint .paste-hint[hidden]').count() === 1, 'the keyboard hint does not offer Ctrl+V');
  await shot(page, 'clipboard-off-en.png');
  step('desktop: clipboard off, no paste panel (en)');

  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('.desktop-clip-off').textContent.trim() === '本课程已关闭剪贴板');
  const whyZh = await page.getAttribute('.desktop-clip-off', 'title');
  assert(whyZh.includes('老师'), `the reason in Chinese, got "${whyZh}"`);
  assert(!(await page.isVisible('button[aria-controls=paste-panel]')), 'still no paste panel');
  await shot(page, 'clipboard-off-zh.png');
  step('desktop: clipboard off (zh-CN)');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
