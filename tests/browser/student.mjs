// A student's day, end to end in a real browser against a real VM:
// sign in → see the course → Start → running → Open desktop → the noVNC
// canvas shows the guest → type `echo hello` + Enter → the screen changes.
// usage: node tests/browser/student.mjs <base-url> <username> <password> <artifact-dir>

import { run, assert, unexpectedErrors } from './lib.mjs';

const [base, username, password, artifactDir] = process.argv.slice(2);
if (!artifactDir) {
  console.error('usage: student.mjs <base-url> <username> <password> <artifact-dir>');
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Non-black pixel count and a hash of the noVNC canvas (null if none yet). */
function canvasStats(page) {
  return page.evaluate(() => {
    const c = document.querySelector('.screen canvas');
    if (!c || !c.width || !c.height) return null;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    let hash = 2166136261;
    for (let i = 0; i < d.length; i += 4) {
      const v = d[i] + d[i + 1] + d[i + 2];
      if (v > 60) lit++;
      hash = Math.imul(hash ^ (d[i] | (d[i + 1] << 8) | (d[i + 2] << 16)), 16777619);
    }
    return { w: c.width, h: c.height, lit, hash: hash >>> 0 };
  });
}

async function waitFor(what, timeoutMs, f) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await sleep(250);
  }
}

await run('student', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await page.goto(base);
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('form.login-form button[type=submit]');
  await page.waitForSelector('section.course', { timeout: 15000 });
  step('signed in, course visible');

  const vm = page.locator('li.vm').first();
  await vm.waitFor();
  assert(await vm.getAttribute('data-state') === 'stopped', 'the VM starts out stopped');
  assert(await vm.locator('[data-action=open]').isDisabled(), '"Open desktop" is disabled while stopped');
  await vm.locator('[data-action=start]').click();
  step('clicked Start');
  await page.waitForSelector('li.vm[data-state=running]', { timeout: 120000 });
  await page.waitForSelector('li.vm[data-state=running] [data-action=open]:not([disabled])');
  await shot(page, 'student-courses.png');
  step('VM running');

  await vm.locator('[data-action=open]').click();
  await page.waitForSelector('.desktop[data-conn=connected]', { timeout: 30000 });
  step('console connected');

  const first = await waitFor('the guest on the noVNC canvas (non-black pixels)', 60000, async () => {
    const s = await canvasStats(page);
    return s && s.lit > 200 ? s : null;
  });
  step(`canvas ${first.w}x${first.h} shows ${first.lit} lit pixels`);

  // Let the boot messages settle: the screen is stable for 3 s (bounded).
  let prev = first.hash;
  let stableSince = Date.now();
  const settleEnd = Date.now() + 60000;
  while (Date.now() - stableSince < 3000 && Date.now() < settleEnd) {
    await sleep(300);
    const s = await canvasStats(page);
    if (s && s.hash !== prev) { prev = s.hash; stableSince = Date.now(); }
  }
  step('screen settled');

  // Type through the page: focus the canvas like a user would, then keys.
  const before = (await canvasStats(page)).hash;
  await page.click('.screen canvas');
  await page.keyboard.type('echo hello', { delay: 40 });
  await page.keyboard.press('Enter');
  await waitFor('the framebuffer to change after typing', 20000, async () => {
    const s = await canvasStats(page);
    return s && s.hash !== before;
  });
  await sleep(1500); // let the echo land on screen for the screenshot
  await shot(page, 'student-desktop.png');
  step('typed `echo hello`; the screen changed; screenshot saved');

  // The toolbar's tools are there and labelled.
  for (const sel of ['.desktop-tools button']) {
    for (const b of await page.locator(sel).all()) {
      const name = (await b.getAttribute('aria-label')) || (await b.textContent());
      assert(name && name.trim(), 'every desktop tool has an accessible name');
    }
  }
  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
