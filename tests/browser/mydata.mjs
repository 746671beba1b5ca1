// My data in a real browser: a student opens their own page from the user
// chip in the top bar, downloads everything pvce holds about them (one JSON
// file: their account and tickets, nothing of the other student), sees
// their erase records (`erased` of them, from the end-of-term rules), and
// reads the page in Chinese. With a course code, the bell holds the term
// loop's notice of that course's end: read in English, then in Chinese,
// and opened (the student's courses, where Export is).
// usage: node tests/browser/mydata.mjs <base-url> <student> <password> <other-student> <erased> <artifact-dir> [term-code]

import { readFileSync } from 'node:fs';
import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, student, password, other, erased, artifactDir, termCode] = args('mydata.mjs <base-url> <student> <password> <other-student> <erased> <artifact-dir> [term-code]');

await run('mydata', artifactDir, async ({ newPage, step, shot, logs }) => {
  const s = await newPage({ locale: 'en-US', acceptDownloads: true });
  await login(s, base, student, password);
  await s.waitForSelector('.topbar');
  // The notice of that course (not of another one the loop may also tell of).
  const TERM = `#notice-list li.notice[data-kind=term]:has-text("${termCode}")`;
  if (termCode) {
    await s.waitForSelector('#bell-count:not([hidden])');
    await s.click('#bell');
    await s.waitForSelector(TERM);
    const told = (await s.textContent(`${TERM} .notice-subject`)).trim();
    assert(told.startsWith(`[pvce] Course ${termCode} `) && told.includes('download your work before'), `the notice in English: ${told}`);
    step(`the bell: ${told}`);
  }
  await s.click('#my-data-link');
  await s.waitForSelector('#my-erasures:not([aria-busy])');
  assert((await s.textContent('h1')).includes('My data'), 'the page is in English');
  const [dl] = await Promise.all([s.waitForEvent('download'), s.click('#my-export')]);
  assert(/^pvce-my-data-[0-9a-f-]+-\d{4}-\d{2}-\d{2}\.json$/.test(dl.suggestedFilename()),
    `download name ${dl.suggestedFilename()}`);
  const text = readFileSync(await dl.path()).toString();
  const doc = JSON.parse(text);
  assert(doc.username === student && doc.sections.account.username === student, 'my account');
  assert(doc.sections.tickets.some((tk) => tk.title === `ticket of ${student}`), 'my ticket');
  assert(!text.includes(other), `nothing of ${other} in my download`);
  step(`downloaded my data: ${Object.keys(doc.sections).length} sections, ${text.length} bytes`);
  const rows = await s.locator('#my-erasures tbody tr').count();
  assert(rows === Number(erased), `${erased} erase records shown, got ${rows}`);
  if (rows === 0) assert(await s.locator('#my-erasures .empty').count() === 1, 'says nothing was erased');
  else assert((await s.textContent('#my-erasures tbody tr')).includes('Retention period'), 'the rule in words');
  await shot(s, 'mydata-en.png');
  await s.click('.lang-toggle');
  await s.waitForFunction(() => document.querySelector('h1').textContent.includes('我的数据'));
  assert((await s.textContent('#my-export')).includes('下载我的数据'), 'the button in Chinese');
  await shot(s, 'mydata-zh.png');
  if (termCode) {
    await s.click('#bell');
    await s.waitForSelector('#notice-list li.notice[data-kind=term] >> text=/即将结束.*下载你的作业/');
    const told = (await s.textContent(`${TERM} .notice-subject`)).trim();
    assert(told.includes(`课程 ${termCode}`), `the notice in Chinese: ${told}`);
    await shot(s, 'term-bell-zh.png');
    // Opening it marks it read and shows the student's courses.
    await s.click(`${TERM} .notice-subject`);
    await s.waitForFunction(() => location.hash === '#/courses');
    step(`the bell in Chinese: ${told}`);
  }
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
});
