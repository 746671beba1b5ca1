// Backups in a real browser against a real restic repository: an admin
// (English) opens the Backups page from the navigation, runs a backup now and
// watches it finish with every item listed (the student's VM runs meanwhile:
// its disk is copied while it runs); the page in Chinese; then the student
// opens their VM's panel, sees the backup point marked as taken while
// running, stops the VM, downloads one file of the point, and restores it
// (the former disk appears as a backup snapshot).
// usage: node tests/browser/backups.mjs <base-url> <admin> <student> <password> <artifact-dir>

import { readFileSync } from 'node:fs';
import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, admin, student, password, artifactDir] = args('backups.mjs <base-url> <admin> <student> <password> <artifact-dir>');

const signIn = (page, username) => login(page, base, username, password, '.topbar');

await run('backups', artifactDir, async ({ newPage, step, shot, logs }) => {
  // ---- admin, English: run a backup now, see it finish
  const a = await newPage({ locale: 'en-US' });
  await signIn(a, admin);
  await a.click('nav a[data-route=backups]');
  await a.waitForSelector('#bk-summary section[data-configured=true]');
  assert(await a.locator('#bk-not-configured').count() === 0, 'configured: no warning');
  assert((await a.textContent('#bk-last')).includes('No backup has run yet'), 'no run yet');
  await a.click('#bk-run');
  await a.waitForSelector('#bk-summary section[data-running=false][data-ok=true]', { timeout: 120000 });
  await a.waitForSelector('#bk-table tr[data-subject=control]');
  const rows = await a.locator('#bk-table tbody tr').count();
  assert(rows === 2, `the control plane and the student's layer, got ${rows} rows`);
  assert((await a.textContent('#bk-last')).includes('succeeded'), 'the last run succeeded');
  await shot(a, 'backups-en.png');
  step('admin ran a backup from the page; it finished with 2 items');

  // ---- admin, Chinese
  const z = await newPage({ locale: 'zh-CN' });
  await signIn(z, admin);
  await z.goto(`${base}/#/backups`);
  await z.waitForSelector('#bk-summary section[data-ok=true]');
  assert((await z.textContent('h1')).includes('备份'), 'the title in Chinese');
  assert((await z.textContent('#bk-last')).includes('成功'), 'the last run in Chinese');
  await shot(z, 'backups-zh.png');
  step('the page in Chinese');

  // ---- student: the point was taken while the VM ran (it still runs)
  const s = await newPage({ locale: 'en-US', acceptDownloads: true });
  await signIn(s, student);
  const running = s.locator('li.vm[data-state=running]').first();
  await running.waitFor({ timeout: 15000 });
  await running.locator('.vm-panel > summary').click();
  const note = running.locator('.backup-point .backup-source[data-source=running_whole]');
  await note.waitFor();
  assert((await note.textContent()) === 'taken while running', `the point's source, got "${await note.textContent()}"`);
  step('the point says it was taken while the VM ran');
  // Stopped from the desktop's power controls, to restore.
  await running.locator('[data-action=open]').click();
  await s.click('.desktop-power [data-action=poweroff]');
  await s.click('dialog[open] button[value=ok]');
  await s.waitForSelector('.desktop[data-conn=stopped]', { timeout: 60000 });
  await s.click('.desktop-bar a.btn');

  // ---- student: restore the backup point from the VM's panel
  const vm = s.locator('li.vm[data-state=stopped]').first();
  await vm.waitFor({ timeout: 60000 });
  await vm.locator('.vm-panel > summary').click();
  const panel = vm.locator('.vm-panel');
  const point = panel.locator('.backup-point').first();
  await point.waitFor();
  assert(await panel.locator('.backup-point').count() === 1, 'one backup point');
  assert(await panel.locator('.snap[data-kind=backup]').count() === 0, 'no backup snapshot before');
  // One file of the backup, without restoring: open the folder, download it.
  await point.locator('[data-action=files]').click();
  await point.locator('.backup-files li[data-kind=dir][data-name=etc] button').click();
  const hostname = point.locator('.backup-files li[data-kind=file][data-name=hostname] a');
  await hostname.waitFor({ timeout: 60000 });
  const [dl] = await Promise.all([s.waitForEvent('download'), hostname.click()]);
  assert(dl.suggestedFilename() === 'hostname', `download name ${dl.suggestedFilename()}`);
  const bytes = readFileSync(await dl.path()).toString();
  assert(bytes.length > 0, 'the file has its bytes');
  await shot(s, 'student-backup-files.png');
  step(`downloaded /etc/hostname from the backup point: ${JSON.stringify(bytes.trim())}`);

  await point.locator('[data-action=restore]').click();
  await s.click('dialog.dialog button[value=ok]');
  await panel.locator('.snap[data-kind=backup]').waitFor({ timeout: 60000 });
  await shot(s, 'student-restored.png');
  step('the student restored the backup; the former disk is kept as a backup snapshot');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no console errors: ${errors.join(' | ')}`);
});
