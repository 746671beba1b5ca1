// A student's day, end to end in a real browser against a real VM:
// sign in → see the course → Start → running → Open desktop → the noVNC
// canvas shows the guest → type `echo hello` + Enter → the screen changes →
// paste as typing (and what it could not type) → Ctrl+] gives the keyboard
// back → on a 390 px phone in Chinese: no sideways scrolling, the key bar's
// text field types into the guest, actual size → force off from the
// desktop's own power controls.
// usage: node tests/browser/student.mjs <base-url> <username> <password> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, artifactDir] = args('student.mjs <base-url> <username> <password> <artifact-dir>');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Pixels of the noVNC canvas that differ from the snapshot taken by
 * `snapshot(page)` (the blinking text cursor accounts for a few dozen).
 */
function snapshot(page) {
  return page.evaluate(() => {
    const c = document.querySelector('.screen canvas');
    window.__pvceSnap = c.getContext('2d').getImageData(0, 0, c.width, c.height).data.slice();
  });
}
function changedSinceSnapshot(page) {
  return page.evaluate(() => {
    const c = document.querySelector('.screen canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const s = window.__pvceSnap;
    if (!s || s.length !== d.length) return d.length / 4;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] !== s[i] || d[i + 1] !== s[i + 1] || d[i + 2] !== s[i + 2]) n++;
    }
    return n;
  });
}

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

await run('student', artifactDir, async ({ newPage, step, shot, logs, cutNetwork }) => {
  // The page may use the clipboard (as a user who allowed it would).
  const page = await newPage({ locale: 'en-US', permissions: ['clipboard-read', 'clipboard-write'] });
  await login(page, base, username, password);
  await page.waitForSelector('section.course', { timeout: 15000 });
  step('signed in, course visible');
  // The course has a lab network: the course and its VM say so.
  await page.waitForSelector('section.course .lab-net');
  await page.waitForSelector('li.vm .chip.net:not([hidden])');
  step('lab network shown on the course and the VM');

  const vm = page.locator('li.vm').first();
  await vm.waitFor();
  assert(await vm.getAttribute('data-state') === 'stopped', 'the VM starts out stopped');
  assert(await vm.locator('[data-action=open]').isDisabled(), '"Open desktop" is disabled while stopped');
  await vm.locator('[data-action=start]').click();
  step('clicked Start');
  // The focus does not fall to the page body when Start disables itself.
  await page.waitForFunction(() => document.activeElement && document.activeElement !== document.body
    && document.activeElement.closest('li.vm'), null, { timeout: 15000 });
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

  // Let the boot messages settle: the amount of text on screen stays the
  // same for 3 s (the blinking cursor changes a few pixels only; bounded).
  const settled = async () => {
    let prev = (await canvasStats(page)).lit;
    let stableSince = Date.now();
    const end = Date.now() + 60000;
    while (Date.now() - stableSince < 3000 && Date.now() < end) {
      await sleep(300);
      const s = await canvasStats(page);
      if (Math.abs(s.lit - prev) > 60) { prev = s.lit; stableSince = Date.now(); }
    }
    return prev;
  };
  /** Waits until the screen differs clearly (not just the cursor) from the snapshot. */
  const changed = (what) => waitFor(what, 20000, async () => (await changedSinceSnapshot(page)) > 400);
  const lit = await settled();
  step(`screen settled (${lit} lit pixels)`);

  // Type through the page: focus the canvas like a user would, then keys.
  await snapshot(page);
  await page.click('.screen canvas');
  await page.keyboard.type('echo hello', { delay: 40 });
  await page.keyboard.press('Enter');
  await changed('the command and its output on screen after typing');
  await settled();
  await shot(page, 'student-desktop.png');
  step('typed `echo hello`; the screen changed; screenshot saved');

  // Paste as typing: the text box types into the guest key by key.
  await page.click('.desktop-tools button[aria-controls=paste-panel]');
  await page.fill('#paste-text', 'echo Typed-By-Paste!\n');
  await snapshot(page);
  await page.click('#paste-panel .btn.primary');
  await page.waitForFunction(() => document.querySelector('.paste-progress').textContent.startsWith('Typed'), null, { timeout: 20000 });
  await changed('the pasted command on screen');
  await settled();
  await shot(page, 'student-desktop-paste.png');
  step('paste as typing put text on screen');

  // Characters the guest's keyboard cannot type are named, not dropped silently.
  await page.fill('#paste-text', '# 中文 ok\n');
  await page.click('#paste-panel .btn.primary');
  await page.waitForSelector('.paste-progress >> text=Typed 6 characters. 2 could not be typed');
  const skipped = await page.textContent('.paste-progress');
  assert(skipped.includes('“中” “文”'), `the untypeable characters are named, got "${skipped}"`);
  step('paste names what it could not type');

  // Clipboard without the panel: the text on the computer's clipboard,
  // pasted with Ctrl+V while the screen has the keyboard, is typed into the
  // guest (the tiny guest has no clipboard agent); what could not be typed
  // (Chinese, on the guest's US keyboard) is named in the note.
  await page.evaluate(() => navigator.clipboard.writeText('echo clip-到-guest\n'));
  await settled();
  await snapshot(page);
  await page.click('.screen canvas');
  await page.keyboard.press('Control+V');
  await page.waitForSelector('.desktop[data-pasted]', { timeout: 20000 });
  await changed('the pasted command on screen after Ctrl+V');
  const pasted = await page.getAttribute('.desktop', 'data-pasted');
  assert(pasted === '17', `Ctrl+V typed 17 characters, got ${pasted}`);
  const note = await page.textContent('.toast-msg >> text=Pasted by typing');
  assert(note.includes('Pasted by typing 17 characters') && note.includes('“到”'), `the note says what happened, got "${note}"`);
  step('Ctrl+V on the screen pasted by typing (without the panel)');

  // Keyboard trap: inside the screen every key goes to the guest; Ctrl+]
  // gives the keyboard back to the page (the hint says so).
  await page.click('.screen canvas');
  await page.waitForSelector('.desktop.kbd-captured #kbd-hint', { state: 'visible' });
  const hint = await page.textContent('#kbd-hint');
  assert(hint.includes('Ctrl+]'), `the hint names the key, got "${hint}"`);
  assert(hint.includes('Ctrl+V types your clipboard into the VM (up to 2000 characters)'), `the hint offers Ctrl+V, got "${hint}"`);
  await page.keyboard.press('Control+BracketRight');
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'kbd-toggle');
  assert(!(await page.locator('.desktop.kbd-captured').count()), 'the screen no longer has the keyboard');
  step('Ctrl+] releases the keyboard');

  // The toolbar's tools are there and labelled.
  for (const sel of ['.desktop-tools button']) {
    for (const b of await page.locator(sel).all()) {
      const name = (await b.getAttribute('aria-label')) || (await b.textContent());
      assert(name && name.trim(), 'every desktop tool has an accessible name');
    }
  }
  // The connection drops while the VM runs: the page gets a fresh token and reconnects.
  await page.dispatchEvent('.desktop', 'pvce:drop');
  await page.waitForSelector('.desktop[data-connects="2"][data-conn=connected]', { timeout: 30000 });
  step('reconnected by itself after a dropped connection');

  // A real network drop: every TCP connection of the browser is reset at
  // once (no close frame). The page says it is reconnecting and is back on
  // the same VM, showing the guest, within 5 s — no login, no click.
  const vmUrl = page.url();
  const cutAt = Date.now();
  const cut = cutNetwork();
  assert(cut > 0, 'the browser had open connections to cut');
  await page.waitForSelector('.desktop[data-conn=reconnecting]', { timeout: 5000 });
  const resuming = await page.textContent('.desktop-status');
  assert(resuming.startsWith('Connection lost — reconnecting'), `the page says it reconnects, got "${resuming}"`);
  await page.waitForSelector('.desktop[data-connects="3"][data-conn=connected]', { timeout: 5000 });
  await waitFor('the guest on screen again after the drop', Math.max(100, 5000 - (Date.now() - cutAt)), async () => {
    const st = await canvasStats(page);
    return st && st.lit > 200;
  });
  const resumedIn = Date.now() - cutAt;
  assert(resumedIn < 5000, `back on the guest screen within 5 s, took ${resumedIn} ms`);
  assert(page.url() === vmUrl, 'the same desktop page, on the same VM');
  assert(!(await page.locator('#login-username').count()), 'no new login');
  step(`network drop: back on the guest screen in ${resumedIn} ms`);

  // The page's pure rules: which close codes are resumed, when a scale is sharp.
  const rules = await page.evaluate(async () => {
    const d = await import('/desktop.js');
    return {
      resumes: [1006, 1000, 4001, 4003, 4004, 4005].map((c) => d.resumes(c)),
      sharp: [[1, 1], [1, 2], [0.5, 2], [1.5, 1], [0.8, 2], [0.5, 1]].map(([k, r]) => d.sharpAt(k, r)),
    };
  });
  assert(JSON.stringify(rules.resumes) === '[true,true,true,true,false,false]', `resumed close codes: ${JSON.stringify(rules.resumes)}`);
  assert(JSON.stringify(rules.sharp) === '[true,true,true,false,false,false]', `sharp scales: ${JSON.stringify(rules.sharp)}`);

  // Scaling: fit by default, following the window; 1:1 remembered (per user)
  // across a reload; back to fit.
  const cssScale = () => page.$eval('.screen canvas', (c) => c.clientWidth / c.width);
  const canvasCss = () => page.$eval('.screen canvas', (c) => c.clientWidth);
  assert(await page.getAttribute('.desktop', 'data-scale') === 'fit', 'fit is the default');
  const wideCss = await canvasCss();
  await page.setViewportSize({ width: 900, height: 700 });
  await waitFor('the screen to follow the smaller window', 5000, async () => (await canvasCss()) < wideCss - 50);
  await page.setViewportSize({ width: 1280, height: 860 });
  await waitFor('the screen to follow the larger window', 5000, async () => Math.abs((await canvasCss()) - wideCss) < 2);
  await page.click('#zoom-toggle');
  await waitFor('1:1', 5000, async () => Math.abs((await cssScale()) - 1) < 0.01);
  assert(await page.getAttribute('#zoom-toggle', 'aria-pressed') === 'true', 'the 1:1 button is pressed');
  assert(await page.locator('.screen canvas.sharp').count() === 1, '1:1 on a 1× screen draws pixels sharp');
  await page.reload();
  await page.waitForSelector('.desktop[data-conn=connected]', { timeout: 30000 });
  await waitFor('1:1 after a reload', 10000, async () => Math.abs((await cssScale()) - 1) < 0.01);
  assert(await page.getAttribute('.desktop', 'data-scale') === '1:1', 'the choice is remembered');
  assert(await page.getAttribute('#zoom-toggle', 'aria-pressed') === 'true', 'and shown');
  await page.click('#zoom-toggle');
  await waitFor('fit again', 5000, async () => Math.abs((await canvasCss()) - wideCss) < 2);
  assert(await page.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith('pvce.desktop.scale.') && localStorage.getItem(k) === 'fit')), 'fit remembered');
  step('scaling: fit follows the window, 1:1 is remembered across a reload');

  // On a phone (390 px, Chinese): the course list does not scroll sideways,
  // the desktop's key bar opens a text field whose input is typed into the
  // guest, and "actual size" shows the guest unscaled (panned by dragging).
  const phone = await newPage({ locale: 'zh-CN', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await login(phone, base, username, password);
  await phone.waitForSelector('li.vm[data-state=running] [data-action=open]:not([disabled])', { timeout: 15000 });
  const sideways = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(sideways <= 1, `the phone's course list does not scroll sideways (${sideways}px)`);
  await shot(phone, 'student-phone-courses-zh.png');
  await phone.tap('li.vm [data-action=open]');
  await phone.waitForSelector('.desktop[data-conn=connected]', { timeout: 30000 });
  await waitFor('the guest on the phone\'s canvas', 30000, async () => {
    const st = await canvasStats(phone);
    return st && st.lit > 200;
  });
  const scaled = await phone.$eval('.screen canvas', (c) => c.clientWidth / c.width);
  assert(scaled < 1, `the phone shows the guest scaled to fit (${scaled})`);
  await phone.tap('#kbd-toggle');
  await phone.waitForSelector('#keybar:not([hidden])');
  assert(await phone.evaluate(() => document.activeElement.id === 'kbd-input'), 'the text field has the focus (the phone keyboard opens)');
  await snapshot(phone);
  await phone.fill('#kbd-input', 'echo phone-typed');
  await phone.tap('#keybar [data-key=Enter]');
  await waitFor('the phone\'s typing on the guest screen', 20000, async () => (await changedSinceSnapshot(phone)) > 400);
  assert(await phone.inputValue('#kbd-input') === '', 'the field empties once typed');
  await shot(phone, 'student-phone-desktop-zh.png');
  await phone.tap('#zoom-toggle');
  await phone.waitForFunction(() => {
    const c = document.querySelector('.screen canvas');
    return c && Math.abs(c.clientWidth / c.width - 1) < 0.01;
  }, null, { timeout: 10000 });
  assert(await phone.locator('.screen canvas.sharp').count() === 1, '1:1 on a 2× screen is drawn sharp (nearest neighbour)');
  await shot(phone, 'student-phone-actual-size-zh.png');
  await phone.context().close();
  step('phone: no sideways scroll, key bar typed into the guest, actual size');

  // The server's console cannot be reached for minutes: after its quick
  // retries the page says it keeps trying every 30 s (with a button for now),
  // keeps doing so, and reconnects by itself once it can. Time is the test's:
  // Playwright's clock, fast-forwarded.
  const desktopUrl = page.url();
  const slow = await newPage({ locale: 'en-US' });
  await slow.clock.install();
  await login(slow, base, username, password);
  await slow.waitForSelector('li.vm');
  await slow.goto(desktopUrl);
  await slow.waitForSelector('.desktop[data-conn=connected]', { timeout: 30000 });
  await slow.route('**/api/vms/*/console', (r) => r.abort('connectionrefused'));
  await slow.dispatchEvent('.desktop', 'pvce:drop');
  const statusText = () => slow.textContent('.desktop-status');
  for (let i = 0; i < 30 && !(await statusText()).startsWith('Still no connection'); i++) await slow.clock.fastForward(5000);
  const waiting = await statusText();
  assert(/^Still no connection after 6 attempts\. Trying again every 30 seconds\.$/.test(waiting), `the page says it keeps trying, got "${waiting}"`);
  assert(await slow.isVisible('.screen-overlay .btn.primary'), 'a "reconnect now" button is offered');
  await slow.clock.fastForward(31000);
  await slow.waitForSelector('.desktop-status >> text=after 7 attempts');
  await slow.unroute('**/api/vms/*/console');
  await slow.clock.fastForward(31000);
  await slow.waitForSelector('.desktop[data-conn=connected]', { timeout: 30000 });
  await slow.context().close();
  step('console unreachable: keeps retrying every 30 s, reconnects by itself');

  // The desktop's own power controls: force off asks first, then the page
  // says the VM stopped, offers to start it, and disables what needs a console.
  for (const a of ['shutdown', 'reboot', 'poweroff']) {
    assert(await page.locator(`.desktop-power [data-action=${a}]`).isEnabled(), `${a} is offered while the VM runs`);
  }
  await page.click('.desktop-power [data-action=poweroff]');
  await page.click('dialog[open] button[value=ok]');
  await page.waitForSelector('.desktop[data-conn=stopped] .screen-overlay:not([hidden])', { timeout: 30000 });
  assert(await page.locator('.screen-overlay .btn.primary').count() === 1, 'a Start button is offered');
  for (const sel of ['button[aria-controls=paste-panel]', '.desktop-power [data-action=poweroff]', '.desktop-power [data-action=shutdown]']) {
    assert(await page.locator(`.desktop-tools ${sel}`).isDisabled(), `${sel} is disabled while the VM is stopped`);
  }
  await shot(page, 'student-desktop-stopped.png');
  step(`VM stopped: the page shows "${(await page.textContent('.overlay-msg')).trim()}" / "${(await page.textContent('.overlay-detail')).trim()}"`);

  // Back to the course list: reset asks first (all data lost), then resets.
  await page.click('.desktop-bar a.btn');
  await page.waitForSelector('li.vm[data-state=stopped] [data-action=reset]:not([disabled])');
  await page.click('li.vm [data-action=reset]');
  await page.waitForSelector('dialog[open]');
  const warning = await page.textContent('dialog[open] p');
  assert(warning.includes('All data in this virtual machine will be lost'), `reset warning, got "${warning}"`);
  await shot(page, 'student-reset-confirm.png');
  await page.click('dialog[open] button[value=cancel]');
  await page.waitForSelector('dialog', { state: 'detached' });
  await page.click('li.vm [data-action=reset]');
  await page.click('dialog[open] button[value=ok]');
  await page.waitForSelector('.toast-success >> text=was reset', { timeout: 30000 });
  step('reset: confirmation dialog, then reset');

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
