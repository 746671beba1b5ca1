// The teacher's video wall (issue 15) in real Chromium: the student asks for
// help on the desktop page; the teacher's wall shows that VM first with a
// live thumbnail (refreshed about once a second) and a raised hand, filters
// on raised hands, opens the screen view-only (the student's page then says
// the teacher is watching), and lowers the hand (the student's button says
// "Ask for help" again). English and Chinese. A lab technician (staff), who
// has no class page, finds the course under Video walls and opens its wall.
// usage: node tests/browser/wall.mjs <base-url> <teacher> <student> <staff> <password> <course-id> <vm-id> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, teacherName, studentName, staffName, password, courseId, vmId, artifactDir] = args('wall.mjs <base-url> <teacher> <student> <staff> <password> <course-id> <vm-id> <artifact-dir>');

const signIn = (page, username) => login(page, base, username, password, '.topbar');

await run('wall', artifactDir, async ({ newPage, step, shot, logs }) => {
  // The student, on the desktop of their running VM, asks for help.
  const student = await newPage({ locale: 'en-US' });
  await signIn(student, studentName);
  await student.goto(`${base}#/desktop/${vmId}`);
  await student.waitForSelector('#assist-hand:not([hidden])', { timeout: 20000 });
  assert((await student.textContent('#assist-hand')).trim() === 'Ask for help', 'the student can ask for help');
  await student.click('#assist-hand');
  await student.waitForSelector('#assist-hand[aria-pressed=true]', { timeout: 10000 });
  assert((await student.textContent('#assist-hand')).trim() === 'Lower my hand', 'and lower it again');
  step('student: hand raised');

  // The teacher reaches the wall from the class page.
  const teacher = await newPage({ locale: 'en-US', viewport: { width: 1366, height: 900 } });
  await signIn(teacher, teacherName);
  await teacher.goto(`${base}#/teach/${courseId}`);
  await teacher.click('#open-wall', { timeout: 15000 });
  await teacher.waitForSelector(`.wall-tile[data-vm="${vmId}"]`, { timeout: 15000 });
  const tile = teacher.locator(`.wall-tile[data-vm="${vmId}"]`);
  await tile.locator('.wall-hand:not([hidden])').waitFor({ timeout: 10000 });
  // The raised hand comes first.
  const first = await teacher.getAttribute('.wall-tile:first-child', 'data-vm');
  assert(first === vmId, `the raised hand is the first tile, got ${first}`);
  // A live picture: several frames arrive, each a real image.
  await teacher.waitForFunction((id) => Number(document.querySelector(`.wall-tile[data-vm="${id}"]`).dataset.frames || 0) >= 3, vmId, { timeout: 20000 });
  const size = await tile.locator('img.wall-thumb').evaluate((img) => [img.naturalWidth, img.naturalHeight]);
  assert(size[0] > 100 && size[0] <= 320 && size[1] > 50, `a thumbnail of the screen, got ${size}`);
  const alt = await tile.locator('img.wall-thumb').getAttribute('alt');
  assert(alt.includes(studentName), `the picture says whose screen it is: "${alt}"`);
  // Only raised hands: just this one (the other student's VM is hidden).
  const before = await teacher.locator('.wall-tile').count();
  assert(before === 2, `both students' VMs are on the wall, got ${before}`);
  await teacher.check('#wall-hands');
  await teacher.waitForFunction(() => document.querySelectorAll('.wall-tile').length === 1, null, { timeout: 10000 });
  await shot(teacher, 'wall-en.png');
  step('teacher: wall with a live thumbnail, raised hand first, filter');

  // Watch (view-only): the viewer connects; the student is told.
  await tile.locator('[data-action=watch]').click();
  await teacher.waitForSelector('dialog.viewer[data-conn=connected]', { timeout: 20000 });
  assert(await teacher.locator('dialog.viewer canvas').count() === 1, 'the viewer shows the screen');
  await student.waitForSelector('#assist-banner:not([hidden])', { timeout: 10000 });
  const banner = (await student.textContent('#assist-banner')).trim();
  assert(banner.startsWith('Your teacher is watching your screen'), `the student's banner, got "${banner}"`);
  await shot(student, 'wall-student-watched.png');
  await teacher.click('#viewer-close');
  await student.waitForSelector('#assist-banner[hidden]', { state: 'attached', timeout: 15000 });
  step('teacher watches view-only; the student sees the banner until it closes');

  // The teacher lowers the hand: the student's button says so.
  await tile.locator('[data-action=lower]').click();
  await teacher.waitForFunction(() => document.querySelectorAll('.wall-tile').length === 0, null, { timeout: 10000 });
  await student.waitForSelector('#assist-hand[aria-pressed=false]', { timeout: 10000 });
  step('teacher lowers the hand');

  // Chinese.
  await teacher.uncheck('#wall-hands');
  await teacher.click('.lang-toggle');
  await teacher.waitForFunction(() => document.querySelector('.page-head h1').textContent.trim() === '视频墙', null, { timeout: 10000 });
  const label = (await teacher.textContent('label:has(#wall-running)')).trim();
  assert(label === '只看运行中', `the filter in Chinese, got "${label}"`);
  await shot(teacher, 'wall-zh.png');
  step('wall in Chinese');

  // Staff: Video walls in the navigation, the course's row, its wall.
  const staff = await newPage({ locale: 'en-US', viewport: { width: 1366, height: 900 } });
  await signIn(staff, staffName);
  await staff.click('nav a[data-route=walls]');
  await staff.waitForSelector(`#walls-table tr[data-course="${courseId}"]`, { timeout: 15000 });
  assert((await staff.textContent('.page-head h1')).trim() === 'Video walls', 'the list of walls');
  await shot(staff, 'walls-staff-en.png');
  await staff.click(`#walls-table tr[data-course="${courseId}"] a`);
  await staff.waitForSelector(`.wall-tile[data-vm="${vmId}"]`, { timeout: 20000 });
  assert(await staff.locator('.wall-present').isHidden(), 'staff do not present a screen to the class');
  await staff.click('.back-link');
  await staff.waitForSelector('#walls-table');
  await staff.click('.lang-toggle');
  await staff.waitForFunction(() => document.querySelector('.page-head h1').textContent.trim() === '视频墙', null, { timeout: 10000 });
  step('staff open a course\'s wall from Video walls');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
