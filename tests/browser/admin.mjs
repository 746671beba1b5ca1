// The admin pages: the nodes table, creating a user, importing users from CSV.
// usage: node tests/browser/admin.mjs <base-url> <username> <password> <artifact-dir>

import { run, assert, unexpectedErrors } from './lib.mjs';

const [base, username, password, artifactDir] = process.argv.slice(2);
if (!artifactDir) {
  console.error('usage: admin.mjs <base-url> <username> <password> <artifact-dir>');
  process.exit(2);
}

await run('admin', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await page.goto(base);
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('form.login-form button[type=submit]');
  await page.waitForSelector('table.data tbody tr[data-node-id]', { timeout: 20000 });
  assert(page.url().endsWith('#/nodes'), `an admin lands on #/nodes, got ${page.url()}`);
  const state = await page.textContent('table.data tbody tr .badge');
  assert(state === 'Up', `the local node is up, got "${state}"`);
  await shot(page, 'admin-nodes.png');
  step('nodes table');

  await page.click('a.nav-link[data-route=users]');
  await page.waitForSelector(`tbody tr[data-username="${username}"]`);
  await page.fill('#nu-username', 'test-ui-made');
  await page.fill('#nu-display', 'Made In Browser');
  await page.selectOption('#nu-role', 'teacher');
  await page.fill('#nu-password', 'a-long-password-1');
  await page.click('form:has(#nu-username) button[type=submit]');
  await page.waitForSelector('tbody tr[data-username="test-ui-made"]');
  step('user created');

  await page.setInputFiles('#csv-file', {
    name: 'class.csv',
    mimeType: 'text/csv',
    buffer: Buffer.from('username,display_name,role,password\ntest-ui-csv1,Li Lei,student,pass-word-123\ntest-ui-csv2,Han Meimei,student,pass-word-456\n'),
  });
  await page.click('form:has(#csv-file) button[type=submit]');
  await page.waitForSelector('tbody tr[data-username="test-ui-csv2"]');
  const result = await page.textContent('.enrol-result');
  assert(result.includes('Created 2'), `import result, got "${result}"`);
  await shot(page, 'admin-users.png');
  step('CSV import');

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
