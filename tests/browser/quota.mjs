// Class time, hours and quotas in the browser (issue 15): the teacher reads
// a student's usage in and outside sessions on the class view, sets the
// course's hour budget and grants the student an extra hour; the student's
// course card shows the hours used and left, in English and Chinese; the
// teacher turns idle auto-stop on and allows the 15-minute extension; the
// admin sets the lab's limits per user.
// usage: node tests/browser/quota.mjs <base-url> <teacher> <student> <admin> <password> <artifact-dir> <course-id>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, teacher, student, admin, password, artifactDir, courseId] = args('quota.mjs <base-url> <teacher> <student> <admin> <password> <artifact-dir> <course-id>');

const signIn = (page, username) => login(page, base, username, password);

await run('quota', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await signIn(page, teacher);
  await page.waitForSelector('.course-tile');
  await page.goto(`${base}/#/teach/${courseId}`);

  // Usage of 2026-11-02: 30 min in the session, 60 outside.
  await page.fill('#usage-from', '2026-11-01');
  await page.fill('#usage-to', '2026-11-03');
  await page.click('#usage-show');
  const urow = page.locator('#usage-table tbody tr', { hasText: student });
  await urow.locator('td[data-minutes="60"]').waitFor();
  const cells = await urow.locator('td').allTextContents();
  assert(cells[1] === '0.5 h' && cells[2] === '1 h' && cells[3] === '1', `usage row, got ${JSON.stringify(cells)}`);
  const href = await page.getAttribute('#usage-csv', 'href');
  assert(href.includes('format=csv') && href.includes('from=2026-11-01'), `CSV link, got ${href}`);
  step('the teacher reads the usage');

  // A budget of 2 h outside class (1 h left), one extra hour for the student: 2 h left.
  await page.fill('#quota-hours', '2');
  await page.click('#quota-save');
  const qrow = page.locator('#quota-table tbody tr', { hasText: student });
  await qrow.locator('td.quota-left', { hasText: '1 h' }).waitFor();
  await qrow.locator('input.extra-hours').fill('1');
  await qrow.locator('button[type=submit]').click();
  await qrow.locator('td.quota-left', { hasText: '2 h' }).waitFor();
  await shot(page, 'quota-teacher.png');
  step('budget set, extra hour granted');

  // Idle auto-stop (off by default) and the 15-minute extension (denied by default).
  assert((await page.textContent('#idle-state')).includes('off'), 'idle auto-stop off by default');
  await page.fill('#idle-never', '10');
  await page.click('#idle-save');
  await page.waitForSelector('#idle-state >> text=is on');
  assert(!(await page.isChecked('#class-extension')), 'extension denied by default');
  await page.check('#class-extension');
  await page.waitForSelector('.toast >> text=Students may now ask for 15 more minutes.');
  step('idle rule and extension set');
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors:\n${errors.join('\n')}`);

  // The student's course card: used and left, in English then Chinese.
  const sp = await newPage({ locale: 'en-US' });
  await signIn(sp, student);
  const hours = sp.locator('.course-hours:not([hidden])');
  await hours.waitFor();
  const en = await hours.textContent();
  assert(en.includes('1 h used') && en.includes('2 h left of 3 h'), `student hours, got "${en}"`);
  await sp.click('.lang-toggle');
  await sp.waitForSelector('.course-hours >> text=剩余 2 小时');
  await shot(sp, 'quota-student-zh.png');
  step('the student sees hours used and left');

  // The admin's limits per user.
  const ap = await newPage({ locale: 'en-US' });
  await signIn(ap, admin);
  await ap.goto(`${base}/#/users`);
  await ap.waitForSelector('#limits-form');
  await ap.fill('#limits-max_running_vms', '2');
  await ap.click('#limits-save');
  await ap.waitForSelector('.toast >> text=Quotas saved.');
  step('the admin sets the limits per user');
  const errs = unexpectedErrors(logs);
  assert(errs.length === 0, `no page errors:\n${errs.join('\n')}`);
});
