// The rescue serial console on the desktop page (issue 18): the student
// opens "Serial console", the VM's serial port appears in a terminal
// (xterm.js), a command typed there runs in the guest and its output shows;
// the panel speaks both languages; "Back to the screen" shows the desktop
// again, still connected.
// usage: node tests/browser/serial.mjs <base-url> <username> <password> <vm-id> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, vmId, artifactDir] = args('serial.mjs <base-url> <username> <password> <vm-id> <artifact-dir>');

await run('serial', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await login(page, base, username, password);
  await page.waitForSelector('section.course', { timeout: 15000 });
  await page.goto(`${base}#/desktop/${vmId}`);
  await page.waitForSelector('.desktop[data-conn=connected]', { timeout: 30000 });

  const toggle = page.locator('#serial-toggle');
  assert((await toggle.textContent()).trim() === 'Serial console', 'the button says "Serial console"');
  assert(await toggle.isEnabled(), 'offered while the VM runs');
  await toggle.click();
  await page.waitForSelector('#serial-panel[data-conn=connected]', { timeout: 20000 });
  assert(await toggle.getAttribute('aria-expanded') === 'true', 'the button says the panel is open');
  assert(!(await page.isVisible('.screen-wrap')), 'the terminal takes the screen\'s place');
  const status = (await page.textContent('#serial-panel .serial-status')).trim();
  assert(status === 'Connected to the serial console.', `status, got "${status}"`);
  step('desktop: serial console opened, connected');

  // Type into the terminal like a user; the shell computes what it prints,
  // so the output can't be the echo of what was typed. Typed again if the
  // shell was not reading yet.
  const rows = () => page.evaluate(() => document.querySelector('#serial-term .xterm-rows')?.textContent || '');
  let ran = false;
  for (let i = 0; i < 3 && !ran; i++) {
    await page.click('#serial-term');
    await page.keyboard.type('echo WEB-$((6*7))-SERIAL');
    await page.keyboard.press('Enter');
    try {
      await page.waitForFunction(() => (document.querySelector('#serial-term .xterm-rows')?.textContent || '').includes('WEB-42-SERIAL'), null, { timeout: 15000 });
      ran = true;
    } catch { /* not yet read by the shell: again */ }
  }
  assert(ran, `the command ran in the guest; the terminal shows: ${await rows()}`);
  await shot(page, 'desktop-serial-en.png');
  step('serial console: a typed command ran in the guest, its output shown');

  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('#serial-panel .serial-title').textContent.trim() === '串口控制台');
  const zhStatus = (await page.textContent('#serial-panel .serial-status')).trim();
  assert(zhStatus === '已连接串口控制台。', `status in Chinese, got "${zhStatus}"`);
  assert((await page.textContent('#serial-close')).trim() === '返回屏幕', 'the way back, in Chinese');
  await shot(page, 'desktop-serial-zh.png');
  await page.click('.lang-toggle');
  step('serial console in Chinese');

  // Back to the screen: the panel closes its session, the desktop is still there.
  await page.click('#serial-close');
  await page.waitForSelector('#serial-panel', { state: 'hidden' });
  assert(await page.isVisible('.screen-wrap'), 'the screen is back');
  assert(await page.getAttribute('.desktop', 'data-conn') === 'connected', 'the desktop stayed connected');
  assert(await toggle.getAttribute('aria-expanded') === 'false', 'the button says the panel is closed');
  step('back to the screen');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
