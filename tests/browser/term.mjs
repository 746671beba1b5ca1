// The end of a term in a real browser: a teacher sets a course's end date
// (three days away) and retention on the class page and archives it; the
// student's desktop page shows the banner in Chinese (until when to download
// their work) before and after the archive; an admin holds the other
// student against erasure (a hostile reason shown as text) and reads the
// erase records.
// usage: node tests/browser/term.mjs <base-url> <password> <artifact-dir> <json: {teacher, student, otherId, admin, courseId, code, vmId, erasedCode}>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, password, artifactDir, json] = args('term.mjs <base-url> <password> <artifact-dir> <json>');
const ids = JSON.parse(json);

const signIn = (page, user) => login(page, base, user, password, '.topbar');

await run('term', artifactDir, async ({ newPage, step, shot, logs }) => {
  // The teacher: the end in three days, kept a week.
  const t = await newPage({ locale: 'en-US' });
  await signIn(t, ids.teacher);
  await t.goto(`${base}/#/teach/${ids.courseId}`);
  await t.waitForSelector('#course-term:not([hidden]) #term-ends');
  assert((await t.textContent('#term-state')).includes('no end date'), 'no end yet');
  const end = new Date(Date.now() + 3 * 86400e3);
  const pad = (n) => String(n).padStart(2, '0');
  const local = `${end.getFullYear()}-${pad(end.getMonth() + 1)}-${pad(end.getDate())}T${pad(end.getHours())}:${pad(end.getMinutes())}`;
  await t.fill('#term-ends', local);
  await t.fill('#term-retention', '7');
  await t.click('#term-save');
  await t.waitForFunction(() => document.querySelector('#term-state').textContent.includes('ends at'));
  await shot(t, 'term-teacher.png');
  step('the teacher set the end of the term');

  // The student is told, in Chinese, on the desktop page.
  const s = await newPage({ locale: 'zh-CN' });
  await signIn(s, ids.student);
  await s.goto(`${base}/#/desktop/${ids.vmId}`);
  await s.waitForSelector('#term-banner:not([hidden])');
  let banner = await s.textContent('#term-banner');
  assert(banner.includes(ids.code) && banner.includes('下载'), `the banner: ${banner}`);
  assert(await s.getAttribute('#term-banner', 'data-state') === 'active', 'before the end');
  await shot(s, 'term-banner-zh.png');
  step(`the student is told: ${banner}`);

  // The teacher archives now.
  await t.click('#term-archive');
  await t.click('dialog.dialog button[value=ok]');
  await t.waitForSelector('.course-term[data-state=archived]');
  assert(await t.isDisabled('#term-ends'), 'the end of an archived course is fixed');
  step('the teacher archived the course');
  await s.reload();
  await s.waitForSelector('#term-banner[data-state=archived]:not([hidden])');
  banner = await s.textContent('#term-banner');
  assert(banner.includes('归档'), `the archived banner: ${banner}`);
  await shot(s, 'term-archived-zh.png');

  // The admin: a hold on the other student, and the erase records.
  const a = await newPage({ locale: 'en-US' });
  await signIn(a, ids.admin);
  await a.click('nav a[data-route=retention]');
  await a.waitForSelector('#erasures:not([aria-busy])');
  assert(await a.locator('#erasures tbody tr').count() === 1, 'one erase record');
  const record = await a.textContent('#erasures tbody tr');
  assert(record.includes(ids.erasedCode) && record.includes(ids.student), `the record: ${record}`);
  await a.selectOption('#hold-kind', 'user');
  await a.selectOption('#hold-subject', ids.otherId);
  const hostile = '<img src=x onerror=window.__pwned=1> appeal';
  await a.fill('#hold-reason', hostile);
  await a.click('#hold-add');
  await a.waitForSelector('#holds tbody tr[data-kind=user]');
  assert((await a.textContent('#holds tbody tr')).includes(hostile), 'the reason as typed');
  assert(await a.locator('#holds img').count() === 0 && await a.evaluate(() => window.__pwned === undefined), 'nothing ran');
  await shot(a, 'term-holds.png');
  await a.click('.lang-toggle');
  await a.waitForFunction(() => document.querySelector('h1').textContent.includes('保留与清除'));
  step('the admin held the other student and read the erase records');
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
});
