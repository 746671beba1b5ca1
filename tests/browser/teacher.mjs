// A teacher prepares a course in the browser: import an image (with the
// upload progress bar), see it in the template tree, create a course on it,
// enrol students by pasting usernames, and watch the class table.
// usage: node tests/browser/teacher.mjs <base-url> <username> <password> <image> <students,comma,separated> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, image, studentList, artifactDir] = args('teacher.mjs <base-url> <username> <password> <image> <students> <artifact-dir>');
const students = studentList.split(',');

await run('teacher', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await login(page, base, username, password);
  await page.waitForSelector('.course-grid .empty');
  assert(page.url().endsWith('#/teach'), `a teacher lands on #/teach, got ${page.url()}`);
  step('signed in: no courses yet');

  // Import the image through the page.
  await page.click('a.nav-link[data-route=templates]');
  await page.waitForSelector('.tree');
  await page.setInputFiles('#up-file', image);
  assert(await page.inputValue('#up-format') === 'qcow2', 'format guessed from the file name');
  await page.fill('#up-name', 'test-ui-tiny');
  await page.fill('#up-os', 'tiny-linux');
  await page.fill('#up-software', 'busybox');
  await page.click('.upload-card button[type=submit]');
  await page.waitForSelector('.tree-name >> text=test-ui-tiny', { timeout: 60000 });
  await page.waitForSelector('.toast-success');
  await shot(page, 'teacher-templates.png');
  step('image imported; it is in the tree');

  // "What does my course need?" finds it (once the match API exists), and
  // "Create a course on it" opens the course form with it preselected.
  const matchStatus = await page.evaluate(() => fetch('/api/templates/match', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ os: 'tiny-linux', software: ['busybox'] }),
  }).then((r) => r.status));
  if (matchStatus === 200) {
    await page.fill('#match-os', 'tiny-linux');
    await page.fill('#match-software', 'busybox');
    await page.click('.match-card button[type=submit]');
    await page.waitForSelector('.match-ok >> text=test-ui-tiny');
    await shot(page, 'teacher-match.png');
    await page.click('.match-result a.btn');
    step('match found the exact template');
  } else {
    step(`POST /api/templates/match answers ${matchStatus}: the match form is not exercised`);
    await page.click('a.nav-link[data-route=teach]');
    await page.click('a[href="#/teach/new"]');
  }

  // Create a course on it.
  await page.waitForSelector('#spec-tpl-0');
  await page.fill('#course-code', 'test-ui-db');
  await page.fill('#course-name', 'Databases Lab');
  await page.check('#course-labnet');
  // An exam-style course: no pasting into the VMs (copying out stays on).
  assert(await page.isChecked('#course-clip-in') && await page.isChecked('#course-clip-out'), 'the clipboard is on by default');
  assert((await page.textContent('label[for=course-clip-in]')).includes('Students may paste into their VMs'), 'the paste switch is labelled');
  await page.uncheck('#course-clip-in');
  const options = await page.locator('#spec-tpl-0 option').allTextContents();
  const opt = options.find((o) => o.startsWith('test-ui-tiny'));
  assert(opt, `the imported template is offered, got ${JSON.stringify(options)}`);
  await page.selectOption('#spec-tpl-0', { label: opt });
  await page.fill('#spec-mem-0', '256');
  await page.selectOption('#spec-gfx-0', 'spice');
  await page.click('form button[type=submit]');
  await page.waitForURL(/#\/teach\/[\w-]+$/);
  await page.waitForSelector('.page-head h1 >> text=Databases Lab');
  step('course created');

  // Enrol by pasting usernames (and one that doesn't exist).
  await page.fill('#enrol-names', `${students.join('\n')}\nnobody-such`);
  await page.click('.section-body button[type=submit]');
  await page.waitForFunction((n) => document.querySelectorAll('#class-table tbody tr').length === n, students.length, { timeout: 20000 });
  const result = await page.textContent('.enrol-result');
  assert(result.includes('nobody-such'), `unknown usernames reported, got "${result}"`);
  assert(result.includes(`Newly enrolled: ${students.length}; VMs created: ${students.length}.`), `new enrolments counted, got "${result}"`);
  // Enrolling the same students again: nobody new, they are "already enrolled".
  await page.fill('#enrol-names', students.join(', '));
  await page.click('.section-body button[type=submit]');
  await page.waitForSelector(`.enrol-result >> text=Already enrolled (${students.length})`);
  const again = await page.textContent('.enrol-result');
  assert(again.includes('Newly enrolled: 0; VMs created: 0.'), `re-enrolment counts nobody new, got "${again}"`);
  assert(students.every((s) => again.includes(s)), `the already enrolled are named, got "${again}"`);
  step('re-enrolment: reported as already enrolled, nothing created');

  // The class view names students by display name (and username); a
  // student's desktop opened by the teacher says whose it is.
  const s1Row = page.locator('#class-table tbody tr', { hasText: `Student One (${students[0]})` });
  await s1Row.waitFor();
  const s1Vm = await s1Row.getAttribute('data-vm-id');
  const classUrl = page.url();
  await page.goto(`${base}/#/desktop/${s1Vm}`);
  await page.waitForSelector(`.desktop-owner >> text=Student: Student One (${students[0]})`);
  await page.waitForSelector('.desktop[data-conn=stopped]');
  const back = await page.getAttribute('.desktop-bar a.btn', 'href');
  assert(classUrl.endsWith(back), `Back from a student's desktop goes to the class (${back})`);
  await page.click('.desktop-bar a.btn');
  await page.waitForSelector('#class-table tbody tr');
  step('display names in the class view; the student desktop says whose it is');

  // "Start all" says how many VMs it touches before it does (cancelled here).
  await page.click('.section-head .btn-group button:first-child');
  await page.waitForSelector(`dialog[open] h2 >> text=Start ${students.length} VMs?`);
  await page.click('dialog[open] button[value=cancel]');
  await page.waitForSelector('dialog', { state: 'detached' });
  for (const s of await page.locator('tbody tr .badge').allTextContents()) assert(s === 'Stopped', `cancelled: still ${s}`);
  step('bulk start asks first with the number of VMs');
  const rows = await page.locator('#class-table tbody tr').count();
  assert(rows === students.length, `one VM row per student, got ${rows}`);
  for (const s of await page.locator('tbody tr .badge').allTextContents()) assert(s === 'Stopped', `state ${s}`);
  await shot(page, 'teacher-class.png');
  await page.click('.lang-toggle');
  await page.waitForSelector('.section-head h2 >> text=班级视图');
  await shot(page, 'teacher-class-zh.png');
  step(`enrolled ${rows} students; class table shown (en, zh)`);

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
