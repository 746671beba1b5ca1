// Alerts and the daily inspection in a real browser: staff (English) see a
// critical alert in its colour and acknowledge it, then (in Chinese) read the
// rules without being able to change them; an admin (Chinese) edits a rule,
// gets a bad one refused in Chinese, and (English) runs an inspection and
// reads its checklist and history.
// usage: node tests/browser/alerts.mjs <base-url> <staff> <admin> <password> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, staff, admin, password, artifactDir] = args('alerts.mjs <base-url> <staff> <admin> <password> <artifact-dir>');

const signIn = (page, username) => login(page, base, username, password, '.topbar');

await run('alerts', artifactDir, async ({ newPage, step, shot, logs }) => {
  // ---- staff, English: the alert list, acknowledge
  const s = await newPage({ locale: 'en-US' });
  await signIn(s, staff);
  await s.click('nav a[data-route=alerts]');
  const row = 'tr.alert-row[data-rule=node_memory]';
  await s.waitForSelector(`${row}[data-status=firing]`);
  assert((await s.textContent(`${row} .alert-level`)).trim() === 'Critical', 'the level is named');
  const colour = await s.$eval(`${row} .alert-level`, (el) => getComputedStyle(el).backgroundColor);
  assert(colour === 'rgb(198, 40, 40)', `a critical alert is red, got ${colour}`);
  assert(await s.locator(`${row} a[href^="#/tickets/"]`).count() === 1, 'it links its desk incident');
  await shot(s, 'alerts-en.png');
  await s.click(`${row} button.ack`);
  await s.waitForSelector(`${row}[data-status=acknowledged]`);
  await s.click(`${row} details.alert-history summary`);
  await s.waitForSelector(`${row} details.alert-history li[data-kind=acknowledged]`);
  step('staff acknowledged the critical alert');

  // ---- staff, Chinese: the rules, read only
  const z = await newPage({ locale: 'zh-CN' });
  await signIn(z, staff);
  await z.goto(`${base}/#/alerts`);
  await z.waitForSelector(`${row}[data-status=acknowledged]`);
  assert((await z.textContent(`${row} .alert-level`)).trim() === '严重', 'the level in Chinese');
  assert((await z.textContent(`${row} .alert-status`)).trim() === '已确认', 'the status in Chinese');
  await z.click('#al-rules');
  await z.waitForSelector('section.alert-rule[data-rule=node_memory]');
  assert(await z.locator('#rules-save').count() === 0, 'staff cannot save rules');
  assert(await z.locator('section.alert-rule input:not([disabled])').count() === 0, 'staff inputs are read only');
  step('staff read the rules in Chinese');

  // ---- admin, Chinese: edit a rule; a bad one is refused in Chinese
  const a = await newPage({ locale: 'zh-CN' });
  await signIn(a, admin);
  await a.click('nav a[data-route=alerts]');
  await a.waitForSelector(row);
  await a.goto(`${base}/#/alert-rules`);
  const mem = 'section.alert-rule[data-rule=node_memory]';
  await a.waitForSelector(mem);
  await a.fill(`${mem} input[id$=-critical]`, '96');
  await a.click('#rules-save');
  await a.waitForSelector('.toast-success');
  await shot(a, 'alert-rules-zh.png');
  await a.fill(`${mem} input[id$=-warning]`, '99');
  await a.click('#rules-save');
  await a.waitForSelector('.toast-error');
  const err = await a.textContent('.toast-error .toast-msg');
  assert(err.includes('告警规则无效'), `the refusal is in Chinese: ${err}`);
  step('admin saved a rule; a bad one was refused in Chinese');

  // ---- admin, English: run an inspection, read the checklist and history
  const e = await newPage({ locale: 'en-US' });
  await signIn(e, admin);
  await e.click('nav a[data-route=alerts]');
  await e.click('#al-inspections');
  await e.waitForSelector('#insp-run');
  await e.click('#insp-run');
  await e.waitForSelector('#insp-items tr.insp-item[data-check=database][data-status=ok]');
  assert((await e.textContent('#insp-items tr[data-check=database] td:first-child')).trim() === 'Database integrity', 'items are named');
  assert(await e.locator('#insp-items tr[data-check=backup][data-status=not_checked]').count() === 1, 'the backup is not checked');
  assert(/^Node clock .* \(±[\d.]+ s\)$/.test((await e.textContent('#insp-items tr[data-check=clock_skew][data-status=ok] .insp-clock')).trim()), 'the clock skew is measured');
  await e.waitForSelector('#insp-list tr');
  await shot(e, 'inspections-en.png');
  await a.goto(`${base}/#/inspections`);
  await a.waitForSelector('#insp-items tr[data-check=database]');
  assert((await a.textContent('#insp-items tr[data-check=database] td:first-child')).trim() === '数据库完整性', 'items in Chinese');
  assert((await a.textContent('#insp-items tr[data-check=clock_skew] .insp-clock')).trim().startsWith('节点时钟'), 'the clock skew in Chinese');
  await shot(a, 'inspections-zh.png');
  step('admin ran an inspection and read it in both languages');

  const bad = unexpectedErrors(logs).filter((l) => !l.includes('422'));
  assert(bad.length === 0, `no page errors: ${bad.join('\n')}`);
});
