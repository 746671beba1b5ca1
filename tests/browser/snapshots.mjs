// A student's own disk, in the browser against a real personal layer (the VM
// stays stopped: snapshots, export and import need it so): take snapshots and
// see the quota, delete one, download the archive and the standalone qcow2,
// import the archive back (the old disk becomes a backup snapshot), see a
// bad file refused with the server's verdict in Chinese, revert to the backup.
// usage: node tests/browser/snapshots.mjs <base-url> <username> <password> <artifact-dir> <quota>

import { writeFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, artifactDir, quota] = args('snapshots.mjs <base-url> <username> <password> <artifact-dir> <quota>');

await run('snapshots', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US', acceptDownloads: true });
  await login(page, base, username, password);
  const vm = page.locator('li.vm[data-state=stopped]').first();
  await vm.waitFor({ timeout: 15000 });
  await vm.locator('.vm-panel > summary').click();
  const panel = vm.locator('.vm-panel');
  await panel.locator(`.snap-quota >> text=0 of ${quota} snapshots`).waitFor();
  assert(await panel.locator('.stop-hint').isHidden(), 'no "shut the VM down" hint while it is stopped');
  step(`panel open: 0 of ${quota} snapshots`);

  // Take two, delete one.
  for (const name of ['test-clean', 'test-extra']) {
    await panel.locator('.snap-name').fill(name);
    await panel.locator('.snap-take').click();
    await panel.locator(`.snap[data-snap="${name}"]`).waitFor();
  }
  await panel.locator(`.snap-quota >> text=2 of ${quota} snapshots`).waitFor();
  await panel.locator('.snap[data-snap="test-extra"] [data-action=delete]').click();
  await page.click('dialog.dialog button[value=ok]');
  await panel.locator('.snap[data-snap="test-extra"]').waitFor({ state: 'detached' });
  await panel.locator(`.snap-quota >> text=1 of ${quota} snapshots`).waitFor();
  await shot(page, 'student-snapshots.png');
  step('snapshots taken, listed, one deleted; quota follows');

  // Export: the archive and the standalone disk.
  const [tarDl] = await Promise.all([page.waitForEvent('download'), panel.locator('a.export-tar').click()]);
  const tarPath = join(artifactDir, 'test-export.tar');
  await tarDl.saveAs(tarPath);
  assert(tarDl.suggestedFilename().endsWith('.tar'), `archive name ${tarDl.suggestedFilename()}`);
  const tar = readFileSync(tarPath);
  assert(tar.subarray(0, 13).toString() === 'manifest.json', 'the archive starts with manifest.json');
  const [qDl] = await Promise.all([page.waitForEvent('download'), panel.locator('a.export-qcow2').click()]);
  const qPath = join(artifactDir, 'test-export.qcow2');
  await qDl.saveAs(qPath);
  assert(qDl.suggestedFilename().endsWith('.qcow2'), `standalone name ${qDl.suggestedFilename()}`);
  assert(readFileSync(qPath).subarray(0, 4).equals(Buffer.from([0x51, 0x46, 0x49, 0xfb])), 'the standalone disk is a qcow2');
  assert((await panel.locator('.run-cmd').textContent()).includes('qemu'), 'the run command is shown');
  step(`exported: ${statSync(tarPath).size} B archive, ${statSync(qPath).size} B standalone qcow2`);

  // Import the archive back: the old disk becomes a backup snapshot.
  await panel.locator('.import-file').setInputFiles(tarPath);
  await panel.locator('.import-go').click();
  await page.click('dialog.dialog button[value=ok]');
  await panel.locator('.import-ok').waitFor({ timeout: 60000 });
  await panel.locator('.snap[data-kind=backup]').waitFor();
  await shot(page, 'student-imported.png');
  step(`imported: "${await panel.locator('.import-ok').textContent()}"`);

  // A file that is no export archive: refused, the verdict shown in Chinese.
  await page.click('.lang-toggle');
  await panel.locator('summary >> text=快照、导出与导入').waitFor();
  const junk = join(artifactDir, 'test-not-an-archive.tar');
  writeFileSync(junk, Buffer.alloc(4096, 7));
  await panel.locator('.import-file').setInputFiles(junk);
  await panel.locator('.import-go').click();
  await page.click('dialog.dialog button[value=ok]');
  const refused = panel.locator('.import-error');
  await refused.waitFor({ timeout: 30000 });
  const code = await refused.getAttribute('data-code');
  const text = await refused.textContent();
  assert(code === 'bad_archive', `a junk file is a bad_archive, got ${code}: ${text}`);
  assert(/[\u4e00-\u9fff]/.test(text), `the verdict is in Chinese, got "${text}"`);
  await shot(page, 'student-import-refused-zh.png');
  step(`junk refused: ${code} "${text}"`);

  // Undo the import: revert to the backup snapshot.
  const backup = panel.locator('.snap[data-kind=backup]');
  const backupName = await backup.getAttribute('data-snap');
  await backup.locator('[data-action=revert]').click();
  await page.click('dialog.dialog button[value=ok]');
  await page.waitForSelector(`.toast-success >> text=已恢复到 ${backupName}`);
  step(`reverted to the backup ${backupName}`);

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
