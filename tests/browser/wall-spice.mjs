// Watching a SPICE VM from the teacher's video wall (issue 15) in real
// Chromium. The proxy cannot filter SPICE input, so Watch shows the live
// picture instead of a console: the screen at full size, refreshed about
// once a second, with a note saying so; the student's desktop page says the
// teacher is watching, and stops saying so a few seconds after the dialog
// closed (no more pictures are fetched). English, then Chinese.
// usage: node tests/browser/wall-spice.mjs <base-url> <teacher> <student> <password> <course-id> <vm-id> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, teacherName, studentName, password, courseId, vmId, artifactDir] = args('wall-spice.mjs <base-url> <teacher> <student> <password> <course-id> <vm-id> <artifact-dir>');

const signIn = (page, username) => login(page, base, username, password, '.topbar');

await run('wall-spice', artifactDir, async ({ newPage, step, shot, logs }) => {
  // The student is on the desktop page of their running SPICE VM.
  const student = await newPage({ locale: 'en-US' });
  await signIn(student, studentName);
  await student.goto(`${base}#/desktop/${vmId}`);
  await student.waitForSelector('#assist-hand:not([hidden])', { timeout: 20000 });
  assert(await student.locator('#assist-banner').isHidden(), 'nobody watches yet');

  const teacher = await newPage({ locale: 'en-US', viewport: { width: 1366, height: 900 } });
  await signIn(teacher, teacherName);
  await teacher.goto(`${base}#/wall/${courseId}`);
  const tile = teacher.locator(`.wall-tile[data-vm="${vmId}"]`);
  await tile.locator('[data-action=watch]:not([disabled])').waitFor({ timeout: 20000 });

  // Opens the Watch dialog and waits for live pictures; returns the note.
  async function watch() {
    await tile.locator('[data-action=watch]').click();
    await teacher.waitForSelector('dialog.viewer[data-mode=picture][data-conn=connected]', { timeout: 20000 });
    // A live picture: a new one about every second.
    await teacher.waitForFunction(() => Number(document.querySelector('dialog.viewer').dataset.frames || 0) >= 3, null, { timeout: 20000 });
    assert(await teacher.locator('dialog.viewer canvas').count() === 0, 'no console in picture mode');
    const size = await teacher.locator('dialog.viewer img.viewer-picture').evaluate((img) => [img.naturalWidth, img.naturalHeight]);
    assert(size[0] > 320 && size[1] > 200, `the screen at full size, got ${size}`);
    // Scaled to fit the dialog.
    const fits = await teacher.locator('dialog.viewer img.viewer-picture').evaluate((img) => {
      const box = img.getBoundingClientRect();
      const screen = img.parentElement.getBoundingClientRect();
      return box.width <= screen.width + 1 && box.height <= screen.height + 1;
    });
    assert(fits, 'the picture fits the dialog');
    assert(await teacher.locator('#viewer-note').isVisible(), 'the note is shown');
    return (await teacher.textContent('#viewer-note')).trim();
  }

  // Closes the dialog; the student's banner goes once the watch has ended,
  // which it does only when no more pictures are fetched.
  async function closeAndWaitForTheWatchToEnd() {
    await teacher.click('#viewer-close');
    assert(await teacher.locator('dialog.viewer').count() === 0, 'the dialog is gone');
    await student.waitForSelector('#assist-banner[hidden]', { state: 'attached', timeout: 25000 });
  }

  const note = await watch();
  assert(note === 'Live picture, about 1 frame per second (SPICE).', `the note, got "${note}"`);
  await shot(teacher, 'wall-spice-en.png');
  await student.waitForSelector('#assist-banner:not([hidden])', { timeout: 15000 });
  const banner = (await student.textContent('#assist-banner')).trim();
  assert(banner.startsWith('Your teacher is watching your screen'), `the student's banner, got "${banner}"`);
  await shot(student, 'wall-spice-student.png');
  await closeAndWaitForTheWatchToEnd();
  step('teacher watches the SPICE screen as a live picture; the student sees the banner until it closes');

  // Chinese.
  await teacher.click('.lang-toggle');
  await teacher.waitForFunction(() => document.querySelector('.page-head h1').textContent.trim() === '视频墙', null, { timeout: 10000 });
  const zh = await watch();
  assert(zh === '实时画面，约每秒 1 帧（SPICE）。', `the note in Chinese, got "${zh}"`);
  const chip = (await teacher.textContent('dialog.viewer .viewer-mode')).trim();
  assert(chip === '只读', `view only in Chinese, got "${chip}"`);
  await shot(teacher, 'wall-spice-zh.png');
  await student.waitForSelector('#assist-banner:not([hidden])', { timeout: 15000 });
  await closeAndWaitForTheWatchToEnd();
  step('the same in Chinese');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
