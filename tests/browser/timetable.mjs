// A course's timetable in the browser (issue 15): the teacher adds a weekly
// session in the form, edits it, imports an .ics file (one event read, one
// skipped with its reason shown), deletes the imported one; the student sees
// the next sessions on their course card, in Chinese too; on the desktop page
// of a VM whose course is in a session ending in ten minutes, the student
// gets the T−15 warning, whose button gives 15 more minutes.
// usage: node tests/browser/timetable.mjs <base-url> <teacher> <student> <password> <artifact-dir> <course-id> <vm-in-session>

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, teacher, student, password, artifactDir, courseId, vmInSession] = args('timetable.mjs <base-url> <teacher> <student> <password> <artifact-dir> <course-id> <vm-in-session>');

const signIn = (page, username) => login(page, base, username, password);

await run('timetable', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await signIn(page, teacher);
  await page.waitForSelector('.course-tile');
  await page.goto(`${base}/#/teach/${courseId}`);
  await page.waitForSelector('#sessions .empty-small:not([hidden])');
  step('class view: the timetable is empty');

  // A weekly session, Mondays 08:00–09:40 from 2 Sep 2030 to 14 Oct, no class on 30 Sep.
  await page.fill('#session-title', 'OS lab');
  await page.fill('#session-date', '2030-09-02');
  await page.fill('#session-start', '08:00');
  await page.fill('#session-end', '09:40');
  await page.check('#session-weekly');
  await page.fill('#session-until', '2030-10-14');
  await page.fill('#session-exceptions', '2030-09-30');
  await page.click('#session-submit');
  const row = page.locator('#sessions-table tbody tr', { hasText: 'OS lab' });
  await row.waitFor();
  const when = await row.locator('td').nth(1).textContent();
  assert(when.includes('Monday') && when.includes('08:00') && when.includes('2030-10-14'), `weekly text, got "${when}"`);
  const next = await row.locator('td').nth(2).textContent();
  assert(next.includes('08:00') && next.includes('09:40'), `next occurrence in lab time, got "${next}"`);
  assert((await page.textContent('#session-zone')).includes('+08:00'), 'the form says which clock');
  step('weekly session added');

  // Edit: the form fills in; a later start is saved.
  await row.locator('button[data-action=edit]').click();
  assert(await page.inputValue('#session-until') === '2030-10-14', 'the form holds the session');
  await page.fill('#session-title', 'OS lab A');
  await page.fill('#session-start', '10:00');
  await page.fill('#session-end', '11:40');
  await page.click('#session-submit');
  const edited = page.locator('#sessions-table tbody tr', { hasText: 'OS lab A' });
  await edited.waitFor();
  assert((await edited.locator('td').nth(1).textContent()).includes('10:00'), 'edited time shown');
  step('session edited');

  // Import an .ics file: the exam is read, the monthly rule is skipped with its reason.
  const ics = join(artifactDir, 'test-timetable.ics');
  writeFileSync(ics, [
    'BEGIN:VCALENDAR', 'VERSION:2.0',
    'BEGIN:VEVENT', 'UID:exam@test', 'SUMMARY:Final exam', 'DTSTART:20301216T010000Z', 'DURATION:PT2H', 'END:VEVENT',
    'BEGIN:VEVENT', 'UID:monthly@test', 'SUMMARY:Monthly seminar', 'DTSTART:20300901T000000Z', 'DTEND:20300901T010000Z',
    'RRULE:FREQ=MONTHLY;COUNT=3', 'END:VEVENT', 'END:VCALENDAR', ''].join('\r\n'));
  await page.setInputFiles('#session-ics', ics);
  await page.waitForSelector('#session-import-result .import-skipped li');
  const result = await page.textContent('#session-import-result');
  assert(result.includes('Imported 1') && result.includes('Monthly seminar') && result.includes('weekly'), `import result, got "${result}"`);
  await page.locator('#sessions-table tbody tr', { hasText: 'Final exam' }).waitFor();
  await shot(page, 'timetable-teacher.png');
  step('calendar imported');

  // Delete the exam (with the confirmation).
  await page.locator('#sessions-table tbody tr', { hasText: 'Final exam' }).locator('button[data-action=delete]').click();
  await page.click('dialog[open] button[value=ok]');
  await page.locator('#sessions-table tbody tr', { hasText: 'Final exam' }).waitFor({ state: 'detached' });
  step('session deleted');
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors:\n${errors.join('\n')}`);

  // The student's course card: the next sessions, in English and in Chinese.
  const sp = await newPage({ locale: 'en-US' });
  await signIn(sp, student);
  const upcoming = `.upcoming[data-course="${courseId}"]`;
  await sp.waitForSelector(`${upcoming}:not([hidden]) li`);
  const items = await sp.locator(`${upcoming} li`).allTextContents();
  assert(items.length === 3 && items[0].includes('10:00') && items[0].includes('OS lab A'), `upcoming, got ${JSON.stringify(items)}`);
  await sp.click('.lang-toggle');
  await sp.waitForSelector(`${upcoming} p >> text=近期课次`);
  const zh = await sp.locator(`${upcoming} li`).first().textContent();
  assert(zh.includes('周一') && zh.includes('10:00'), `the dates in Chinese, got "${zh}"`);
  await shot(sp, 'timetable-student.png');
  step('the student sees the next sessions');

  // The desktop page of a VM whose class ends in ten minutes: the warning,
  // in the page's language (Chinese now).
  await sp.goto(`${base}/#/desktop/${vmInSession}`);
  await sp.waitForSelector('.toast >> text=15 分钟后结束', { timeout: 30000 });
  await shot(sp, 'timetable-warning-zh.png');
  step('the end-of-class warning is shown');
  // Its button asks for 15 more minutes (allowed, no other class): granted.
  await sp.click('.toast button.class-extend');
  await sp.waitForSelector('.toast >> text=已延长');
  step('15 more minutes granted');
  const errs = unexpectedErrors(logs);
  assert(errs.length === 0, `no page errors:\n${errs.join('\n')}`);
});
