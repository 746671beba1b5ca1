// A course's directory group and the admin's directory sync (issue 16):
// the teacher links the course to a group on the class page (saved, shown
// after a reload, Chinese too); the admin previews a sync (nothing changes),
// then syncs now: the person the directory marked gone is disabled, and the
// sync is listed under the daily schedule with who started it.
// usage: node tests/browser/dirsync.mjs <base-url> <teacher> <admin> <password> <course-id> <gone-user> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, teacher, admin, password, courseId, gone, artifactDir] = args('dirsync.mjs <base-url> <teacher> <admin> <password> <course-id> <gone-user> <artifact-dir>');

const signIn = (page, user) => login(page, base, user, password, '.topbar-right');

await run('dirsync', artifactDir, async ({ newPage, step, shot, logs }) => {
  let page = await newPage({ locale: 'en-US' });
  await signIn(page, teacher);
  await page.goto(`${base}#/teach/${courseId}`);
  await page.waitForSelector('#course-link:not([hidden])', { timeout: 15000 });
  assert((await page.textContent('#course-link h2')).trim() === 'Directory group', 'section title');
  assert((await page.textContent('#link-state')).trim() === 'Not linked to a directory group.', 'not linked yet');
  await page.fill('#link-value', 'cs101');
  await page.click('#link-save');
  await page.waitForFunction(() => document.querySelector('#link-state').textContent.trim() === 'Linked: groups = cs101');
  await shot(page, 'course-link-en.png');
  step('the teacher links the course to a group');
  await page.reload();
  await page.waitForSelector('#course-link:not([hidden])', { timeout: 15000 });
  assert(await page.inputValue('#link-value') === 'cs101', 'the link after a reload');
  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('#course-link h2').textContent.trim() === '目录组');
  assert((await page.textContent('#link-state')).trim() === '已关联：groups = cs101', 'the link in Chinese');
  step('shown after a reload, in Chinese');
  await page.close();

  page = await newPage({ locale: 'en-US' });
  await signIn(page, admin);
  await page.goto(`${base}#/users`);
  await page.waitForSelector('#dirsync:not([hidden])', { timeout: 15000 });
  await page.waitForSelector('#dirsync-schedule');
  const schedule = await page.textContent('#dirsync-schedule');
  assert(schedule.includes('every day at 03:30 UTC'), `schedule: ${schedule}`);
  assert(await page.locator('#dirsync-runs').count() === 0, 'no sync listed yet');
  await page.click('#dirsync-preview');
  await page.waitForSelector('.dirsync-lines li');
  const preview = await page.textContent('.dirsync-lines');
  assert(preview.includes(`Would disable ${gone}`), `preview: ${preview}`);
  await shot(page, 'dirsync-preview-en.png');
  step('the admin previews a sync');
  await page.click('#dirsync-now');
  await page.waitForFunction((u) => document.querySelector('.dirsync-lines').textContent.includes(`Disabled ${u}`), gone);
  // The real sync is listed (the preview is not): started by an administrator.
  await page.waitForSelector('#dirsync-runs tbody tr');
  assert(await page.locator('#dirsync-runs tbody tr').count() === 1, 'one sync listed');
  const listed = await page.textContent('#dirsync-runs tbody tr');
  assert(listed.includes('An administrator') && listed.includes('accounts checked'), `listed: ${listed}`);
  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('#dirsync h2').textContent.trim() === '目录同步');
  assert((await page.textContent('.dirsync-lines')).includes(`已停用 ${gone}`), 'the result in Chinese');
  assert((await page.textContent('#dirsync-runs tbody tr')).includes('管理员'), 'the listed sync in Chinese');
  await shot(page, 'dirsync-done-zh.png');
  step('sync now: disabled');
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
});
