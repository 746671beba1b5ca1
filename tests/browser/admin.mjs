// The admin pages: node cards and load charts, node detail with a running
// VM's CPU and memory and its load chart, the cluster VM table, creating a
// user, importing users from CSV, changing a role, disabling, and
// registering and removing a node.
// usage: node tests/browser/admin.mjs <base-url> <username> <password> <artifact-dir> <running-vm-id>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, artifactDir, vmId] = args('admin.mjs <base-url> <username> <password> <artifact-dir> <running-vm-id>');

await run('admin', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await login(page, base, username, password);
  await page.waitForSelector('.node-card[data-node-id]', { timeout: 20000 });
  assert(page.url().endsWith('#/nodes'), `an admin lands on #/nodes, got ${page.url()}`);
  const state = (await page.textContent('.node-card .badge')).trim();
  assert(state === 'Up', `the local node is up, got "${state}"`);
  // The load charts: uPlot canvases with something drawn on them (the server
  // samples every second in this test, so lines appear within a few polls).
  await page.waitForSelector('.chart[data-chart=cpu] canvas', { timeout: 30000 });
  // At least two samples per chart (a line, not a dot) and pixels drawn in the
  // plot area's data colour.
  const points = await page.waitForFunction(() => {
    const charts = [...document.querySelectorAll('.chart[data-points]')];
    const counts = charts.map((c) => Number(c.dataset.points));
    return charts.length === 3 && counts.every((n) => n >= 2) ? counts : false;
  }, null, { timeout: 30000, polling: 250 }).then((r) => r.jsonValue());
  const blue = await page.$eval('.chart[data-chart=cpu] canvas', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let k = 0; k < d.length; k += 4) if (d[k] < 80 && d[k + 1] > 60 && d[k + 1] < 120 && d[k + 2] > 180) n += 1;
    return n;
  });
  assert(blue > 0, `the CPU series is drawn (points ${JSON.stringify(points)}, line pixels ${blue})`);
  const settings = await page.locator('#cluster-settings', { hasText: 'Placement' }).textContent({ timeout: 15000 });
  assert(settings.includes('spread') && settings.includes('shared storage'), `cluster settings line, got "${settings}"`);
  // Which installation this is (its libvirt objects carry the id; issue 17).
  assert(/Installation id: [0-9a-f]{8}-[0-9a-f-]{27}/.test(settings), `installation id on the cluster line, got "${settings}"`);
  await shot(page, 'admin-nodes.png');
  step('cluster overview with charts');

  // Draining the only node: refused up front with the reason, no dialog,
  // nothing changed.
  await page.click('.node-card button[aria-label^="Drain"]');
  const nowhere = await page.locator('.toast-error', { hasText: 'no other node is up' }).textContent({ timeout: 10000 });
  assert(nowhere.includes('Cannot drain local'), `drain refused with the reason, got "${nowhere}"`);
  assert(await page.locator('dialog[open]').count() === 0, 'no confirmation for a drain that cannot happen');
  assert((await page.textContent('.node-card .badge')).trim() === 'Up', 'the node stays up, not in maintenance');
  step('drain refused up front');

  await page.click('.segmented .seg[data-range="1440"]');
  await page.waitForFunction(() => document.querySelector('.seg[data-range="1440"]').getAttribute('aria-pressed') === 'true');
  await page.click('.node-card a.btn');
  await page.waitForSelector('#cluster-vms');
  assert(/#\/nodes\/[\w-]+$/.test(page.url()), `node detail route, got ${page.url()}`);
  await page.waitForSelector('.chart[data-chart=cpu] canvas', { timeout: 30000 });
  await shot(page, 'admin-node.png');
  step('node detail');

  // The running VM's row shows its memory (and CPU once two readings exist);
  // its chart button opens a dialog with CPU and memory lines.
  const row = `#cluster-vms tr[data-vm-id="${vmId}"]`;
  await page.waitForSelector(`${row} td.load-cpu`, { timeout: 30000 });
  const mem = (await page.textContent(`${row} td.load-mem`)).trim();
  assert(/^128 MiB/.test(mem), `the VM's memory cell shows its 128 MiB, got "${mem}"`);
  const cpu = (await page.textContent(`${row} td.load-cpu`)).trim();
  assert(/^\d+%$/.test(cpu), `the VM's CPU cell is a percentage, got "${cpu}"`);
  await page.click(`${row} button.load-chart`);
  await page.waitForSelector('#vm-load[open] .chart[data-chart=vm-cpu] canvas', { timeout: 15000 });
  const vmPoints = await page.waitForFunction(() => {
    const counts = ['vm-cpu', 'vm-mem'].map((k) => Number(document.querySelector(`#vm-load .chart[data-chart=${k}]`)?.dataset.points || 0));
    return counts.every((n) => n >= 2) ? counts : false;
  }, null, { timeout: 30000, polling: 250 }).then((r) => r.jsonValue());
  assert(vmPoints[1] >= 2, `memory chart has points, got ${JSON.stringify(vmPoints)}`);
  await shot(page, 'admin-vm-load.png');
  await page.click('#vm-load .dialog-actions button');
  await page.waitForSelector('#vm-load', { state: 'detached' });
  step('a VM\'s load in the node detail');

  await page.click('a.nav-link[data-route=vms]');
  await page.waitForSelector('#cluster-vms');
  await page.waitForSelector('#cv-state option[value=running]', { state: 'attached' });
  step('cluster VM table');

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
  step('CSV import');

  // Role change and disabling, inline in the table, each asking first
  // (a cancelled role change leaves the role as it was).
  await page.selectOption('tbody tr[data-username="test-ui-made"] select', 'student');
  await page.waitForSelector('dialog[open] h2 >> text=Change the role of test-ui-made?');
  const roleBody = await page.textContent('dialog[open] p');
  assert(roleBody.includes('from Teacher to Student'), `the role dialog names both roles, got "${roleBody}"`);
  await page.click('dialog[open] button[value=cancel]');
  await page.waitForSelector('dialog', { state: 'detached' });
  assert(await page.inputValue('tbody tr[data-username="test-ui-made"] select') === 'teacher', 'cancelled: still a teacher');
  await page.selectOption('tbody tr[data-username="test-ui-made"] select', 'student');
  await page.click('dialog[open] button[value=ok]');
  await page.waitForSelector('.toast');
  await page.click('tbody tr[data-username="test-ui-csv1"] button[aria-label^="Disable"]');
  await page.waitForSelector('dialog[open] h2 >> text=Disable test-ui-csv1?');
  await page.click('dialog[open] button[value=ok]');
  await page.waitForSelector('tbody tr.disabled-row[data-username="test-ui-csv1"]');
  const own = await page.$eval(`tbody tr[data-username="${username}"] select`, (el) => el.disabled);
  assert(own, 'an admin cannot change their own role from the table');
  await shot(page, 'admin-users.png');
  step('role change and disable');

  // Registering a node from the overview: transport, host, port, user — no
  // free URI. A host smuggling URI parts is refused with the server's
  // reason; the transports offered are the ones the server accepts (this
  // test server allows libvirt's test driver, which stands in for a remote
  // host here; the multi-node rig tests real ones). Then removing it from
  // its detail page.
  await page.click('a.nav-link[data-route=nodes]');
  await page.waitForSelector('.node-card[data-node-id]');
  await page.click('#add-node > summary');
  const offered = await page.$$eval('#an-transport option', (os) => os.map((o) => o.value));
  assert(JSON.stringify(offered) === JSON.stringify(['tls', 'ssh', 'test']),
    `the server's transports are offered (no tcp without --allow-tcp-nodes), got ${offered}`);
  await page.fill('#an-name', 'test-ui-node');
  await page.selectOption('#an-transport', 'ssh');
  assert(await page.isVisible('#an-user'), 'ssh asks for a user');
  await page.fill('#an-host', 'lab-07.example.edu/system?command=/tmp/x');
  await page.fill('#an-user', 'root');
  await shot(page.locator('#add-node'), 'admin-node-form.png');
  await page.click('#add-node button[type=submit]');
  const refused = await page.locator('.toast-error', { hasText: 'host' }).first().textContent({ timeout: 15000 });
  assert(/host .* is not a DNS name/.test(refused), `a bad host is refused with the server's reason, got "${refused}"`);
  await page.selectOption('#an-transport', 'test');
  assert(!(await page.isVisible('#an-host')), 'the test driver needs no host');
  await page.fill('#an-console', '127.0.0.1');
  await page.click('#add-node button[type=submit]');
  const card = page.locator('.node-card', { hasText: 'test-ui-node' });
  await card.waitFor({ timeout: 15000 });
  await card.locator('.badge', { hasText: 'Up' }).waitFor({ timeout: 15000 });
  await card.scrollIntoViewIfNeeded();
  await shot(page, 'admin-node-added.png');
  step('node registered');

  await card.locator('a.btn').click();
  await page.waitForSelector('#remove-node');
  await page.click('#remove-node');
  await page.click('dialog[open] button[value=ok]');
  await page.waitForFunction(() => location.hash === '#/nodes');
  await page.waitForSelector('.node-card[data-node-id]');
  await page.locator('.node-card', { hasText: 'test-ui-node' }).waitFor({ state: 'detached', timeout: 15000 });
  step('node removed');

  // A node whose libvirtd cannot be reached: its card says why (libvirt's
  // error), and shows no CPU or memory figures it does not have.
  await page.click('#add-node > summary');
  await page.fill('#an-name', 'test-ui-unreachable');
  await page.selectOption('#an-transport', 'tls');
  await page.fill('#an-host', '127.0.0.1');
  await page.fill('#an-port', '1');
  await page.fill('#an-console', '127.0.0.1');
  await page.click('#add-node button[type=submit]');
  const badCard = page.locator('.node-card', { hasText: 'test-ui-unreachable' });
  await badCard.locator('.node-error').waitFor({ timeout: 30000 });
  const why = (await badCard.locator('.node-error code').textContent()).trim();
  assert(why.length > 5, `the card says why the node is down, got "${why}"`);
  const figures = await badCard.locator('.node-stats dd').allTextContents();
  assert(figures.slice(0, 3).every((f) => f.includes('unknown while down')), `no stale figures on a down node, got ${JSON.stringify(figures)}`);
  const seen = await badCard.locator('.node-card-foot .muted.small').first().textContent();
  assert(seen.includes('never'), `a node never reached was never seen, got "${seen}"`);
  await badCard.scrollIntoViewIfNeeded();
  await shot(page, 'admin-node-unreachable.png');
  await badCard.locator('a.btn').click();
  await page.waitForSelector('#remove-node');
  await page.click('#remove-node');
  await page.click('dialog[open] button[value=ok]');
  await page.waitForFunction(() => location.hash === '#/nodes');
  await page.waitForSelector('.node-card[data-node-id]');
  step(`an unreachable node says why: "${why}"`);

  // The event log on the overview tells it, with who did it.
  const removed = page.locator('#events li[data-kind=node_removed]', { hasText: 'test-ui-node' });
  await removed.waitFor({ timeout: 15000 });
  const text = await removed.textContent();
  assert(text.includes('Node removed') && text.includes('by test-ui-admin'), `event line, got "${text}"`);
  await page.locator('#events li[data-kind=node_added]', { hasText: 'test-ui-node' }).waitFor();
  await removed.scrollIntoViewIfNeeded();
  await shot(page, 'admin-events.png');
  step('event log');

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
