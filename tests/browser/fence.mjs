// A dead node in the admin overview: its card is down, the admin confirms it
// is powered off (fencing) through the dialog, and the server accepts it.
// usage: node tests/browser/fence.mjs <base-url> <username> <password> <artifact-dir> <node-name>

import { run, assert, args, login } from './lib.mjs';

const [base, username, password, artifactDir, nodeName] = args('fence.mjs <base-url> <username> <password> <artifact-dir> <node-name>');

await run('fence', artifactDir, async ({ newPage, step, shot }) => {
  const page = await newPage({ locale: 'en-US' });
  await login(page, base, username, password);
  const card = page.locator('.node-card', { has: page.locator('h2.node-name', { hasText: nodeName }) });
  await card.locator('.badge', { hasText: 'Down' }).waitFor({ timeout: 30000 });
  step(`${nodeName} shown down`);
  await card.getByRole('button', { name: /powered off/ }).click();
  const dialog = page.locator('dialog.dialog');
  await dialog.waitFor();
  const text = await dialog.textContent();
  assert(/really powered off/.test(text), `the dialog asks for confirmation, got "${text}"`);
  await shot(page, 'admin-fence.png');
  await dialog.locator('button[value=ok]').click();
  await page.locator('.toast', { hasText: 'fenced' }).waitFor({ timeout: 15000 });
  step('fenced through the dialog');
});
