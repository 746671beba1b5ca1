// The service desk, end to end in a real browser against a real running VM:
// a student reports a problem from the desktop page (the VM's screenshot is
// previewed and sent; the title is a <script> that must stay text), staff
// (in Chinese) take it from the queue, log work, add an internal note and
// resolve it; the student sees the timeline without the note, confirms and
// rates it.
// usage: node tests/browser/desk.mjs <base-url> <student> <staff> <password> <vm-id> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, student, staff, password, vmId, artifactDir] = args('desk.mjs <base-url> <student> <staff> <password> <vm-id> <artifact-dir>');

const TITLE = '<script>window.__pwned = 1</script> desktop froze';

const signIn = (page, username) => login(page, base, username, password, '.topbar');

await run('desk', artifactDir, async ({ newPage, step, shot, logs }) => {
  // ---- the student reports from the desktop page
  const s = await newPage({ locale: 'en-US' });
  await signIn(s, student);
  await s.waitForSelector('nav a[data-route=tickets]');
  await s.goto(`${base}/#/desktop/${vmId}`);
  await s.waitForSelector('.desktop-tools a[data-action=report]');
  await s.click('.desktop-tools a[data-action=report]');
  await s.waitForSelector('.report-form');
  step('report form opened from the desktop page');
  // The VM's context and a screenshot preview, really loaded.
  await s.waitForSelector('.report-context .badge.state-running');
  await s.waitForSelector('img.shot-preview');
  await s.waitForFunction(() => {
    const img = document.querySelector('img.shot-preview');
    return img && img.complete && img.naturalWidth > 100;
  }, null, { timeout: 20000 });
  assert(await s.locator('[data-action=remove-shot]').isVisible(), 'the screenshot can be removed');
  await s.selectOption('#rp-urgency', 'in_session');
  await s.fill('#rp-title', TITLE);
  await s.fill('#rp-desc', 'The screen stopped updating.\nTyping does nothing.');
  await shot(s, 'desk-report.png');
  await s.click('.report-form button[type=submit]');
  await s.waitForSelector('.ticket-page[data-state=new]');
  const ticketId = s.url().split('#/tickets/')[1];
  assert(ticketId, `on the ticket page, at ${s.url()}`);
  // The title is shown as typed, and nothing in it ran.
  assert(await s.textContent('.ticket-title-text') === TITLE, 'the title is rendered as text');
  assert(await s.evaluate(() => window.__pwned === undefined), 'the <script> in the title did not run');
  assert(await s.locator('.ticket-page script').count() === 0, 'no script element was made');
  await s.waitForFunction(() => {
    const img = document.querySelector('img.shot-ticket');
    return img && img.complete && img.naturalWidth > 100;
  }, null, { timeout: 20000 });
  const prio = await s.textContent('.ticket-chips .prio');
  assert(prio === 'P2', `one user, a class in session: P2, got ${prio}`);
  step(`reported: ticket ${ticketId}, ${prio}, screenshot attached`);

  // ---- staff, in Chinese, work it from the queue
  const w = await newPage({ locale: 'zh-CN' });
  await signIn(w, staff);
  await w.waitForSelector('table.tickets');
  assert((await w.textContent('nav a[data-route=desk]')).trim() === '服务台', 'the nav is in Chinese');
  const row = w.locator(`tr[data-ticket-id="${ticketId}"]`);
  await row.waitFor();
  assert(await row.getAttribute('data-priority') === 'P2', 'the queue shows the priority');
  assert(await row.locator('.chip.sla[data-level=ok]').count() === 1, 'the queue shows the SLA state');
  assert((await row.locator('.ticket-link').textContent()) === TITLE, 'the queue shows the title as text');
  assert(await w.evaluate(() => window.__pwned === undefined), 'nothing ran in the queue');
  // Filters: P1 only hides it; back to any priority shows it.
  await w.selectOption('#q-priority', 'P1');
  await w.waitForSelector(`tr[data-ticket-id="${ticketId}"]`, { state: 'detached' });
  await w.selectOption('#q-priority', '');
  await row.waitFor();
  await shot(w, 'desk-queue-zh.png');
  step('the queue (zh-CN) lists it; the priority filter works');

  await row.locator('.ticket-link').click();
  await w.waitForSelector('.ticket-page[data-state=new]');
  // The VM's context as reported and its live state with a console button.
  await w.waitForSelector('.ticket-context img.shot-ticket');
  await w.waitForSelector('.ticket-live [data-action=open]:not([disabled])');
  const take = w.locator('[data-action=take]');
  assert((await take.textContent()).trim() === '我来处理', 'the take button is in Chinese');
  await take.click();
  await w.waitForSelector('.ticket-page[data-state=assigned]');
  await w.click('[data-action=start]');
  await w.waitForSelector('.ticket-page[data-state=in_progress]');
  await w.fill('#tk-comment', 'Restarted the display service');
  await w.check('#tk-worklog');
  await w.click('[data-action=comment]');
  await w.waitForSelector('.tl-worklog');
  await w.fill('#tk-comment', 'internal: node looks overloaded');
  await w.check('#tk-internal');
  await w.click('[data-action=comment]');
  await w.waitForSelector('.tl-item.internal');
  await w.fill('#tk-resolution', 'The display froze under load; restarted it.');
  await w.click('[data-action=resolve]');
  await w.waitForSelector('.ticket-page[data-state=resolved]');
  await shot(w, 'desk-staff-zh.png');
  step('staff took it, logged work, noted internally, resolved it');

  // ---- the student confirms and rates
  // (Through "My tickets", as the student would come back to it.)
  await s.click('nav a[data-route=tickets]');
  await s.click(`tr[data-ticket-id="${ticketId}"][data-state=resolved] .ticket-link`);
  await s.waitForSelector('.ticket-page[data-state=resolved]');
  const timeline = await s.textContent('.ticket-timeline');
  assert(timeline.includes('Restarted the display service'), 'the work log is visible to the reporter');
  assert(!timeline.includes('node looks overloaded'), 'the internal note is not');
  await s.check('.rating input[value="4"]');
  await s.fill('#tk-rate-comment', 'Fixed quickly, thanks');
  await s.click('[data-action=confirm]');
  await s.waitForSelector('.ticket-page[data-state=closed]');
  const facts = await s.textContent('.ticket-facts');
  assert(facts.includes('★★★★☆'), `the rating is shown, got ${facts}`);
  await shot(s, 'desk-closed.png');
  // "My tickets" lists it, closed.
  await s.click('.ticket-head a[href="#/tickets"]');
  await s.waitForSelector(`tr[data-ticket-id="${ticketId}"][data-state=closed]`);
  step('the student confirmed and rated it; My tickets shows it closed');

  // ---- staff record the phone callback (回访) on the closed ticket
  await w.reload();
  await w.waitForSelector('.ticket-page[data-state=closed] .callback-form');
  assert(await w.locator('#tk-cb-rating').count() === 0, 'a closed ticket keeps the reporter\'s own rating');
  await w.selectOption('#tk-cb-outcome', 'reached');
  await w.fill('#tk-cb-note', '学生确认一切正常');
  await w.click('[data-action=callback]');
  await w.waitForSelector('.tl-callback');
  const cb = await w.textContent('.tl-callback');
  assert(cb.includes('已联系到') && cb.includes('学生确认一切正常'), `the callback is in the timeline, got ${cb}`);
  await shot(w, 'desk-callback-zh.png');
  step('staff recorded the callback');

  // ---- staff write a knowledge-base article from the ticket
  await w.click('[data-action=write-article]');
  await w.waitForSelector('.kb-form');
  await w.waitForFunction(() => document.querySelector('#kb-fix').value.includes('restarted'));
  await w.fill('#kb-title', '桌面卡住不动');
  await w.fill('#kb-symptom', '屏幕停止刷新，键盘没有反应。');
  await w.fill('#kb-fix', '在虚拟机卡片上点“重启”，半分钟后再打开桌面。');
  await w.selectOption('#kb-lang', 'zh-CN');
  await w.click('.kb-form button[type=submit]');
  await w.waitForSelector('.kb-article >> text=桌面卡住不动');
  step('staff published a knowledge-base article from the ticket');

  // ---- staff open a problem record from the ticket and resolve it
  await w.goto(`${base}/#/tickets/${ticketId}`);
  await w.waitForSelector('.ticket-page [data-action=new-problem]');
  await w.click('[data-action=new-problem]');
  await w.waitForSelector('details.problem[open][data-state=open]');
  assert((await w.textContent('details.problem[open] .problem-tickets')).includes(TITLE), 'the ticket is linked');
  await w.fill('details.problem[open] textarea', '显示服务已升级');
  await w.click('details.problem[open] [data-action=resolve-problem]');
  await w.waitForSelector('details.problem[data-state=resolved]');
  await shot(w, 'desk-problem-zh.png');
  step('staff opened a problem from the ticket and resolved it');

  // ---- the desk's figures
  await w.click('nav a[data-route=desk]');
  await w.click('[data-action=stats]');
  await w.waitForSelector('.stat-tiles');
  const tiles = await w.textContent('.stat-tiles');
  assert(tiles.includes('工单数') && tiles.includes('4.0 / 5'), `figures in Chinese with the rating, got ${tiles}`);
  assert((await w.textContent('.stats-staff')).includes('test-ui-staff'), 'per-staff figures');
  await shot(w, 'desk-stats-zh.png');
  step('the figures page shows the desk in numbers');

  // ---- the next student report is answered by the article (deflection)
  await s.click('nav a[data-route=courses]');
  await s.click('li.vm a[data-action=report]');
  await s.waitForSelector('.report-form');
  await s.fill('#rp-title', '我的桌面卡住了');
  await s.waitForSelector('.kb-suggestions:not([hidden]) .kb-article');
  await s.click('.kb-suggestions .kb-article summary');
  assert((await s.textContent('.kb-suggestions .kb-article')).includes('重启'), 'the suggestion shows the fix');
  await shot(s, 'desk-kb-suggestion.png');
  await s.click('.kb-suggestions [data-action=helped]');
  await s.waitForSelector('section.course');
  step('the student found the answer in the suggestion; no report sent');

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
