// A teacher changes the clipboard switches of an existing course (issue 18)
// on the class page: pasting into the VMs off, copying out stays on; saved,
// and shown again after a reload; in both languages.
// usage: node tests/browser/clipedit.mjs <base-url> <username> <password> <course-id> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, courseId, artifactDir] = args('clipedit.mjs <base-url> <username> <password> <course-id> <artifact-dir>');

await run('clipedit', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await login(page, base, username, password);
  await page.waitForSelector('.course-tile', { timeout: 15000 });
  await page.goto(`${base}#/teach/${courseId}`);
  await page.waitForSelector('#course-clipboard:not([hidden])', { timeout: 15000 });
  const head = (await page.textContent('#course-clipboard h2')).trim();
  assert(head === 'Clipboard on the desktop', `section title, got "${head}"`);
  assert(await page.isChecked('#clip-edit-in') && await page.isChecked('#clip-edit-out'), 'both on, as the course was created');
  assert(await page.isDisabled('#clip-edit-save'), 'nothing to save yet');
  assert(!(await page.isChecked('#clip-edit-agent')), 'no guest-agent channel unless asked');
  const agentLabel = (await page.textContent('label[for=clip-edit-agent]')).trim();
  assert(agentLabel === 'Clipboard through a guest agent (spice-vdagent)', `the agent switch, got "${agentLabel}"`);
  await page.click('label[for=clip-edit-in]');
  assert(await page.isEnabled('#clip-edit-save'), 'a change can be saved');
  await page.click('#clip-edit-save');
  await page.waitForSelector('#course-clipboard [role=status]:has-text("Clipboard settings saved.")');
  assert(await page.isDisabled('#clip-edit-save'), 'saved: nothing left to save');
  await shot(page, 'course-clipboard-edit-en.png');
  step('class page: pasting into the VMs turned off and saved');

  await page.reload();
  await page.waitForSelector('#course-clipboard:not([hidden])', { timeout: 15000 });
  assert(!(await page.isChecked('#clip-edit-in')), 'pasting stays off after a reload');
  assert(await page.isChecked('#clip-edit-out'), 'copying out stays on');
  await page.click('.lang-toggle');
  await page.waitForFunction(() => document.querySelector('#course-clipboard h2').textContent.trim() === '桌面剪贴板');
  const label = (await page.textContent('label[for=clip-edit-in]')).trim();
  assert(label === '允许学生向虚拟机粘贴', `the switch in Chinese, got "${label}"`);
  step('reloaded: the switches as saved; Chinese');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
