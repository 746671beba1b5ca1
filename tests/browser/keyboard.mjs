// Any keyboard layout on the desktop (issue 18): noVNC sends QEMU extended
// key events (raw scancodes, which QEMU acknowledges; pvce sets no keymap),
// so the guest's own layout decides what a key means. This script types a
// French (AZERTY) and a German (QWERTZ) string, AltGr combinations included,
// as Chromium reports them on such keyboards: the character in `key`, the
// physical key in `code` (CDP Input.dispatchKeyEvent sets them apart, as a
// real French or German keyboard does). Which keys arrived is read in the
// guest from /dev/input (the AT keyboard's evdev device), through the
// page's own serial console: a recorder started before, a dump after.
// Were keysyms translated through a US keymap instead, "a" would arrive as
// KEY_A (30) where an AZERTY keyboard has it at KEY_Q (16).
// usage: node tests/browser/keyboard.mjs <base-url> <username> <password> <vm-id> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, vmId, artifactDir] = args('keyboard.mjs <base-url> <username> <password> <vm-id> <artifact-dir>');

// [key, code, windowsVirtualKeyCode]: what the browser sees on each layout.
const FRENCH = [
  ['a', 'KeyQ', 65], ['z', 'KeyW', 90], ['e', 'KeyE', 69], ['r', 'KeyR', 82], ['t', 'KeyT', 84], ['y', 'KeyY', 89],
];
const GERMAN = [['z', 'KeyY', 90], ['ß', 'Minus', 219], ['ü', 'BracketLeft', 186]];
// AltGr+à (the 0 key) is @ on a French keyboard; AltGr+Q is @ on a German one.
const ALTGR = [['@', 'Digit0', 48], ['@', 'KeyQ', 81]];

await run('keyboard', artifactDir, async ({ newPage, step, logs }) => {
  const page = await newPage({ locale: 'fr-FR' });
  await login(page, base, username, password);
  await page.waitForSelector('section.course', { timeout: 15000 });
  await page.goto(`${base}#/desktop/${vmId}`);
  await page.waitForSelector('.desktop[data-conn=connected]', { timeout: 30000 });
  // QEMU acknowledges extended key events right after the client's
  // SetEncodings, before any pixels: once the guest's text is drawn, noVNC
  // knows it may send scancodes.
  await page.waitForFunction(() => {
    const c = document.querySelector('.screen canvas');
    if (!c || !c.width) return false;
    const d = c.getContext('2d').getImageData(0, 0, c.width, Math.min(c.height, 200)).data;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 64 || d[i + 1] > 64 || d[i + 2] > 64) return true;
    return false;
  }, null, { timeout: 30000 });
  await page.click('.screen canvas');

  // The serial console (the page's own) starts a recorder of the keyboard's events.
  const rows = () => page.evaluate(() => document.querySelector('#serial-term .xterm-rows')?.textContent || '');
  async function serialRun(line, done) {
    for (let i = 0; i < 3; i++) {
      await page.click('#serial-term');
      await page.keyboard.type(line);
      await page.keyboard.press('Enter');
      try {
        await page.waitForFunction((re) => new RegExp(re).test(document.querySelector('#serial-term .xterm-rows')?.textContent || ''), done, { timeout: 15000 });
        return;
      } catch { /* the shell was not reading yet: again */ }
    }
    throw new Error(`no ${done} on the serial console: ${await rows()}`);
  }
  await page.click('#serial-toggle');
  await page.waitForSelector('#serial-panel[data-conn=connected]', { timeout: 20000 });
  await serialRun('for e in /sys/class/input/event*; do grep -qi keyboard $e/device/name && d=/dev/input/${e##*/}; done; cat $d > /tmp/kb & echo REC-$((1+1))-OK', 'REC-2-OK');
  await page.click('#serial-close');
  await page.waitForSelector('.screen canvas', { state: 'visible' });
  await page.click('.screen canvas');
  step('serial console: keyboard recorder started in the guest');

  const cdp = await page.context().newCDPSession(page);
  const key = async (type, k, code, vk, text) => {
    await cdp.send('Input.dispatchKeyEvent', {
      type, key: k, code, windowsVirtualKeyCode: vk, nativeVirtualKeyCode: vk,
      ...(text ? { text, unmodifiedText: text } : {}),
    });
  };
  const tap = async ([k, code, vk]) => {
    await key('keyDown', k, code, vk, k);
    await key('keyUp', k, code, vk);
  };
  for (const k of FRENCH) await tap(k);
  await key('rawKeyDown', 'AltGraph', 'AltRight', 18);
  await tap(ALTGR[0]);
  await key('keyUp', 'AltGraph', 'AltRight', 18);
  for (const k of GERMAN) await tap(k);
  await key('rawKeyDown', 'AltGraph', 'AltRight', 18);
  await tap(ALTGR[1]);
  await key('keyUp', 'AltGraph', 'AltRight', 18);
  step('desktop: French and German strings typed, AltGr included');

  // What arrived, as Linux key codes of the presses (EV_KEY, value 1), in
  // order. Dumped again until all have arrived (they travel on the desktop's
  // socket, the dump on the serial console's).
  const want = [16, 17, 18, 19, 20, 21, 100, 11, 21, 12, 26, 100, 16];
  await page.click('#serial-toggle');
  await page.waitForSelector('#serial-panel[data-conn=connected]', { timeout: 20000 });
  // The marker is split in the command line so that its echo never matches.
  const dumps = async () => [...(await rows()).matchAll(/KEYS:([0-9,]*):END/g)];
  let got = [];
  for (let i = 0; i < 5 && got.length < want.length; i++) {
    const before = (await dumps()).length;
    await page.click('#serial-term');
    await page.keyboard.type(`od -An -tu2 -w24 -v /tmp/kb | awk 'BEGIN{printf "KEYS" ":"} $9==1&&$11==1{printf "%s,",$10} END{print ":" "END"}'`);
    await page.keyboard.press('Enter');
    await page.waitForFunction((n) => [...(document.querySelector('#serial-term .xterm-rows')?.textContent || '').matchAll(/KEYS:([0-9,]*):END/g)].length > n, before, { timeout: 15000 });
    const all = await dumps();
    got = all[all.length - 1][1].split(',').filter(Boolean).map(Number);
  }
  assert(JSON.stringify(got) === JSON.stringify(want), `the guest got the keys' positions: want ${want}, got ${got}`);
  step(`guest received scancodes for AZERTY/QWERTZ/AltGr: ${got.join(' ')}`);

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
