// The desk's SLA in a real browser, in both languages: staff (Chinese) see
// the queue's countdowns coloured by level (ok / 50 % / 75 % / breached,
// paused while waiting), the escalations in a ticket's timeline, the SLA
// settings read-only; an admin (English) changes targets and the service
// calendar on the settings page (a bad value is refused with the server's
// reason), and the stats page draws its charts.
// usage: node tests/browser/desk-sla.mjs <base-url> <admin> <staff> <password> <ids-json> <artifact-dir>
// ids-json: {"ok": id, "half": id, "three": id, "late": id, "paused": id}

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, admin, staff, password, idsJson, artifactDir] = args('desk-sla.mjs <base-url> <admin> <staff> <password> <ids-json> <artifact-dir>');
const ids = JSON.parse(idsJson);

const signIn = (page, username) => login(page, base, username, password, '.topbar');

await run('desk-sla', artifactDir, async ({ newPage, step, shot, logs }) => {
  // ---- staff, in Chinese: the queue's countdowns
  const w = await newPage({ locale: 'zh-CN' });
  await signIn(w, staff);
  await w.waitForSelector('table.tickets');
  const chip = (id) => w.locator(`tr[data-ticket-id="${id}"] .chip.sla`);
  for (const [key, level] of [['ok', 'ok'], ['half', 'warning50'], ['three', 'warning75'], ['late', 'breached']]) {
    await chip(ids[key]).waitFor();
    const got = await chip(ids[key]).getAttribute('data-level');
    assert(got === level, `${key}: level ${level}, got ${got}`);
    assert(await chip(ids[key]).getAttribute('data-clock') === 'response', `${key}: the response clock runs`);
    const text = await chip(ids[key]).textContent();
    assert(text.startsWith('响应 · '), `${key}: the chip names its clock in Chinese: ${text}`);
  }
  // Coloured: the levels look different.
  const bg = async (id) => chip(id).evaluate((el) => getComputedStyle(el).backgroundColor);
  const colours = new Set([await bg(ids.ok), await bg(ids.half), await bg(ids.three), await bg(ids.late)]);
  assert(colours.size === 4, `four levels, four colours: ${[...colours]}`);
  assert(/前/.test(await chip(ids.late).textContent()), 'the breached one was due in the past');
  assert(/后|内/.test(await chip(ids.ok).textContent()), 'the ok one is due in the future');
  const paused = chip(ids.paused);
  assert(await paused.getAttribute('data-state') === 'paused', 'waiting for the reporter: paused');
  assert(await paused.getAttribute('data-clock') === 'resolution', 'answered: the resolution clock');
  assert((await paused.textContent()).includes('已暂停'), 'says paused in Chinese');
  await shot(w, 'desk-sla-queue.png');
  step('the queue shows coloured SLA countdowns');

  // The late ticket's timeline holds the escalations, in Chinese.
  await w.click(`tr[data-ticket-id="${ids.late}"] .ticket-link`);
  await w.waitForSelector('.ticket-timeline');
  const esc = w.locator('.tl-item[data-kind=escalated]');
  assert(await esc.count() === 3, `three escalation steps, got ${await esc.count()}`);
  const texts = await esc.allTextContents();
  assert(texts[0].includes('50%') && texts[0].includes('服务台'), `50 %: the desk hears of it: ${texts[0]}`);
  assert(texts[2].includes('超出时限') && texts[2].includes('管理员'), `100 %: breach, admins: ${texts[2]}`);
  assert((await w.textContent('.ticket-facts')).includes('响应'), 'the facts show the SLA clock');
  await shot(w, 'desk-sla-timeline-zh.png');
  step('escalations are in the timeline');

  // Staff read the settings, but cannot change them.
  await w.goto(`${base}/#/desk-sla`);
  await w.waitForSelector('.sla-policy');
  assert((await w.textContent('h1')).trim() === 'SLA 设置', 'the settings page is in Chinese');
  assert(await w.locator('#sla-p1-response').isDisabled(), 'staff cannot edit targets');
  assert(!(await w.locator('[data-action=save-policy]').isVisible()), 'staff have no save button');
  assert((await w.textContent('label[for=cal-mon]')).trim() === '星期一', 'weekday labels in Chinese');

  // ---- the admin, in English, changes the settings from the desk nav
  const a = await newPage({ locale: 'en-US' });
  await signIn(a, admin);
  await a.goto(`${base}/#/desk`);
  const lateEn = a.locator(`tr[data-ticket-id="${ids.late}"] .chip.sla`);
  await lateEn.waitFor();
  assert(/^Response · .*ago$/.test(await lateEn.textContent()), `the countdown in English: ${await lateEn.textContent()}`);
  assert((await a.textContent(`tr[data-ticket-id="${ids.paused}"] .chip.sla`)) === 'Resolution · paused', 'paused, in English');
  await a.click('a[data-action=sla]');
  await a.waitForSelector('.sla-policy');
  assert((await a.textContent('h1')).trim() === 'SLA settings', 'the settings page is in English');
  assert(await a.inputValue('#sla-p1-response') === '60', 'the stored target is shown');
  assert(await a.isChecked('#sla-p1-always'), 'the stored 7×24 flag is shown');
  // A response longer than the resolution: refused with the reason.
  await a.fill('#sla-p2-response', '700');
  await a.click('[data-action=save-policy]');
  await a.locator('.toast-error', { hasText: 'P2' }).waitFor({ timeout: 10000 });
  await a.fill('#sla-p2-response', '45');
  await a.fill('#sla-p2-resolution', '180');
  await a.uncheck('#sla-p4-always');
  await a.click('[data-action=save-policy]');
  await a.waitForSelector('.toast-success');
  step('targets saved; a bad one refused');
  // The calendar: overlapping hours refused, then a good one saved and shown normalised.
  await a.fill('#cal-mon', '08:00-12:00, 11:00-13:00');
  await a.click('[data-action=save-calendar]');
  await a.locator('.toast-error', { hasText: 'overlap' }).waitFor({ timeout: 10000 });
  await a.fill('#cal-mon', '13:00-18:00, 09:00-12:00');
  await a.fill('#cal-holidays', '2026-10-02\n2026-10-01');
  await a.click('[data-action=save-calendar]');
  await a.waitForFunction(() => document.querySelector('#cal-mon').value === '09:00-12:00, 13:00-18:00');
  assert(await a.inputValue('#cal-holidays') === '2026-10-01\n2026-10-02', 'holidays shown sorted');
  await shot(a, 'desk-sla-settings.png');
  step('calendar saved');

  // ---- the stats page draws its charts (admin in English, staff in Chinese)
  await a.goto(`${base}/#/desk-stats`);
  await a.waitForSelector('.chart[data-chart=tickets][data-points]');
  await a.waitForSelector('.chart[data-chart=sla][data-points]');
  const points = Number(await a.getAttribute('.chart[data-chart=tickets]', 'data-points'));
  assert(points >= 2, `tickets chart has points: ${points}`);
  const slaPoints = Number(await a.getAttribute('.chart[data-chart=sla]', 'data-points'));
  assert(slaPoints >= 1, `SLA chart has points: ${slaPoints}`);
  assert(await a.locator('.chart[data-chart=tickets] canvas').count() === 1, 'drawn on a canvas');
  assert((await a.textContent('table.stats-sla caption')).includes('SLA compliance'), 'the compliance table, in English');
  await shot(a, 'desk-sla-stats.png');
  await w.goto(`${base}/#/desk-stats`);
  await w.waitForSelector('.chart[data-chart=sla][data-points]');
  assert((await w.textContent('.stats-charts')).includes('SLA 达成率（%）'), 'chart headings in Chinese');
  assert((await w.textContent('table.stats-sla')).includes('超时'), 'the compliance table in Chinese');
  step('stats charts drawn in both languages');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `no page errors: ${errors.join('\n')}`);
});
