// A dead node in the admin overview: its card is down, the admin confirms it
// is powered off (fencing) through the dialog, and the server accepts it.
// usage: node tests/browser/fence.mjs <base-url> <username> <password> <artifact-dir> <node-name>

import { run, assert } from './lib.mjs';

const [base, username, password, artifactDir, nodeName] = process.argv.slice(2);
if (!nodeName) {
  console.error('usage: fence.mjs <base-url> <username> <password> <artifact-dir> <node-name>');
  process.exit(2);
}

await run('fence', artifactDir, async ({ newPage, step, shot }) => {
  const page = await newPage({ locale: 'en-US' });
  await page.goto(base);
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('form.login-form button[type=submit]');
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
