// A teacher's class work in the browser: select one student's VM for a bulk
// action (the dialog counts only it), collect /root/lab1 from the class (one
// student has files, the other nothing; the tar downloads and holds the
// file), then in Chinese remove a student and delete the course.
// usage: node tests/browser/classwork.mjs <base-url> <username> <password> <artifact-dir> <course-id>

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, artifactDir, courseId] = args('classwork.mjs <base-url> <username> <password> <artifact-dir> <course-id>');

await run('classwork', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US', acceptDownloads: true });
  await login(page, base, username, password);
  await page.waitForSelector('.course-tile');
  await page.goto(`${base}/#/teach/${courseId}`);
  await page.waitForFunction(() => document.querySelectorAll('#class-table tbody tr').length === 2, null, { timeout: 20000 });
  step('class view with two students');

  // Select one student's VM: the bulk button names the selection, and its
  // dialog counts one VM, not the class.
  const s1Row = page.locator('#class-table tbody tr', { hasText: 'test-ui-s1' });
  await s1Row.locator('input.row-select').check();
  await page.waitForSelector('.section-head .btn-group button:first-child >> text=Start selected (1)');
  await page.click('.section-head .btn-group button:first-child');
  await page.waitForSelector('dialog[open] h2 >> text=Start 1 VMs?');
  const body = await page.textContent('dialog[open] p');
  assert(body.includes('selected'), `the dialog says it acts on the selection, got "${body}"`);
  await page.click('dialog[open] button[value=cancel]');
  await page.waitForSelector('dialog', { state: 'detached' });
  await s1Row.locator('input.row-select').uncheck();
  await page.waitForSelector('.section-head .btn-group button:first-child >> text=Start all');
  step('selected students for a bulk action');

  // Collect: progress, the report per student, the tar download.
  await page.fill('#collect-path', '/root/lab1');
  await page.click('.collect-form button[type=submit]');
  await page.waitForSelector('#collect-download', { timeout: 120000 });
  const done = await page.textContent('.collect-progress');
  assert(/^Done: 1 files/.test(done), `the progress line ends with the total, got "${done}"`);
  const s1Line = await page.textContent('.collect-line[data-who^="test-ui-s1/"]');
  assert(s1Line.includes('1 files'), `s1 had a file, got "${s1Line}"`);
  const s2Kind = await page.getAttribute('.collect-line[data-who^="test-ui-s2/"]', 'data-kind');
  assert(s2Kind === 'nothing', `s2 had nothing, got ${s2Kind}`);
  const summary = await page.textContent('.collect-result');
  assert(summary.includes('1 with files, 1 with nothing collected'), `summary, got "${summary}"`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#collect-download')]);
  assert(/^test-ui-col-lab1\.tar$/.test(download.suggestedFilename()), `file name, got ${download.suggestedFilename()}`);
  const saved = join(artifactDir, 'test-collected.tar');
  await download.saveAs(saved);
  const tar = readFileSync(saved).toString('latin1');
  assert(tar.includes('test-ui-col/test-ui-s1/linux/lab1/answer.txt') && tar.includes('work-of-s1'),
    'the downloaded tar holds the student\'s file and its content');
  await page.locator('.collect-result').scrollIntoViewIfNeeded();
  await shot(page, 'teacher-collect.png');
  step('collected: report per student, tar downloaded');

  // In Chinese: remove a student (asks first, says what is lost), then
  // delete the course.
  await page.click('.lang-toggle');
  await page.waitForSelector('.section-head h2 >> text=班级视图');
  const s2Row = page.locator('#class-table tbody tr', { hasText: 'test-ui-s2' });
  await s2Row.locator('.unenrol-btn').click();
  await page.waitForSelector('dialog[open] h2 >> text=将 test-ui-s2 移出课程？');
  const warn = await page.textContent('dialog[open] p');
  assert(warn.includes('永久删除'), `the dialog says the files are deleted, got "${warn}"`);
  await shot(page, 'teacher-unenrol-zh.png');
  await page.click('dialog[open] button[value=ok]');
  await page.waitForSelector('.toast-success >> text=已将 test-ui-s2 移出课程。');
  await page.waitForFunction(() => document.querySelectorAll('#class-table tbody tr').length === 1, null, { timeout: 15000 });
  step('student removed (zh)');

  await page.click('#delete-course');
  await page.waitForSelector('dialog[open] h2 >> text=删除课程 test-ui-col？');
  const delBody = await page.textContent('dialog[open] p');
  assert(delBody.includes('1 名学生') && delBody.includes('无法撤销'), `the delete dialog spells out the loss, got "${delBody}"`);
  await page.click('dialog[open] button[value=ok]');
  await page.waitForFunction(() => location.hash === '#/teach');
  await page.waitForSelector('.course-grid .empty');
  step('course deleted (zh)');

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
