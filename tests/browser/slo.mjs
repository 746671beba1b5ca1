// Service levels in the browser (issue 14): an admin reads the SLO page
// (objectives with target, actual, budget and burn rates over 1 h and 6 h;
// a pre-started class's provisioning time; the indicators by
// course and node), sets a target, and switches to Chinese; a student sees
// the status dot, opens the status page in Chinese (services green / amber
// / red, the open system incident by title, shown as text), then in English.
// usage: node tests/browser/slo.mjs <base-url> <admin> <student> <password> <artifact-dir> <incident-title>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, admin, student, password, artifactDir, incident] = args('slo.mjs <base-url> <admin> <student> <password> <artifact-dir> <incident-title>');

const signIn = (page, user) => login(page, base, user, password, '.topbar');

const text = (page, sel) => page.locator(sel).first().innerText();

await run('slo', artifactDir, async ({ newPage, step, shot, logs }) => {
  const page = await newPage({ locale: 'en-US' });
  await signIn(page, admin);
  await page.click('a.nav-link[data-route=slo]');
  await page.waitForSelector('#slo-objectives tbody tr[data-indicator=start_success]');
  assert(await page.locator('#slo-objectives tbody tr').count() === 6, 'six objectives');
  assert((await text(page, 'h1')) === 'Service levels', 'the English heading');
  const row = 'tr[data-indicator=start_success]';
  assert((await text(page, `${row} td:first-child`)) === 'VM start success', 'the indicator by name');
  assert((await text(page, `${row} .slo-actual`)) === '0.00%', 'the failed start: 0 % success');
  assert((await text(page, `${row} .slo-missed`)) === 'Missed', 'not met');
  assert(await page.locator(`${row} .budget-over`).count() === 1, 'the budget is overspent');
  // 100 % bad of the 1 % allowed: 100 times the budget.
  assert((await text(page, `${row} .slo-overspent`)) === 'Spent 100.0× the budget', 'how far overspent');
  assert((await text(page, `${row} td:nth-child(5)`)) === '100.00×', 'burning at 100×');
  // The failed start was minutes ago: the same burn over the last six hours.
  assert((await page.locator('#slo-objectives th:nth-child(6)').textContent()) === 'Burn rate (6 h)', 'the six-hour burn column');
  assert((await text(page, `${row} .slo-burn-6h`)) === '100.00×', 'burning at 100× over six hours');
  assert(await page.locator('tr[data-indicator=console_success] >> text=No data').count() === 1, 'no console yet: no data');
  const tickets = 'tr[data-indicator=ticket_response]';
  assert((await text(page, `${tickets} td:first-child`)) === 'Tickets answered within their SLA', 'the ticket-response objective by name');
  // The one incident was answered within its SLA: 100 % of the 95 % target.
  assert((await text(page, `${tickets} .slo-actual`)) === '100.00%', 'tickets answered in time');
  // Storage: the layer storage by name, the node's store full in 50 days.
  assert((await text(page, '#slo-capacity tr[data-kind=layer_storage] td:first-child')) === 'Layer storage (personal layers)', 'the layer storage by name');
  assert((await text(page, '#slo-capacity tr[data-kind=store] .slo-days-full')) === '50.0 days', 'the store full in 50 days');
  // Class provisioning: the class ready 95 s after its pre-start, before its start.
  const prov = '#slo-prov tbody tr';
  assert(await page.locator(prov).count() === 1, 'one pre-started class');
  assert((await text(page, `${prov} td:first-child`)) === 'test-ui-slo', 'the class by course code');
  assert((await text(page, `${prov} .slo-prov-vms`)) === '2 of 2', 'both VMs usable');
  assert((await text(page, `${prov} .slo-prov-time`)) === '95.0 s', 'provisioned in 95 s');
  assert((await text(page, `${prov} .slo-prov-ontime`)) === 'Ready', 'ready by the start');
  await shot(page, 'slo-en.png');
  step('SLO page in English');

  await page.fill('#slo-t-start_p95', '90');
  await page.click('#slo-save');
  await page.waitForSelector('.toast >> text=Targets saved.');
  await page.waitForSelector('tr[data-indicator=start_p95] >> text=≤ 90.0 s');
  step('target set');

  await page.click('button.lang-toggle');
  await page.waitForSelector('h1 >> text=服务水平');
  assert((await text(page, `${row} td:first-child`)) === '虚拟机启动成功率', 'the indicator in Chinese');
  assert((await text(page, `${row} .slo-missed`)) === '未达标', 'not met, in Chinese');
  assert((await page.locator('#slo-objectives th:nth-child(6)').textContent()) === '消耗速率（6 小时）', 'the six-hour burn column in Chinese');
  assert((await text(page, `${tickets} td:first-child`)) === '工单按时响应率', 'the ticket-response objective in Chinese');
  assert((await text(page, '#slo-capacity tr[data-kind=layer_storage] td:first-child')) === '层存储（个人层）', 'the layer storage in Chinese');
  assert((await text(page, '#slo-capacity tr[data-kind=store] .slo-days-full')) === '50.0 天后', 'days until full in Chinese');
  await page.waitForSelector('tr[data-indicator=start_p95] >> text=≤ 90.0 秒');
  assert((await text(page, '#slo-provisioning h2')) === '上课准备时间', 'class provisioning in Chinese');
  assert((await text(page, `${prov} .slo-prov-time`)) === '95.0 秒', 'the time in Chinese');
  assert((await text(page, `${prov} .slo-prov-ontime`)) === '已就绪', 'ready, in Chinese');
  await shot(page, 'slo-zh.png');
  step('SLO page in Chinese');

  const p2 = await newPage({ locale: 'zh-CN' });
  await signIn(p2, student);
  await p2.waitForSelector('#status-dot.level-red');
  assert(await p2.locator('a.nav-link[data-route=slo]').count() === 0, 'no SLO page for a student');
  await p2.click('a.nav-link[data-route=status]');
  await p2.waitForSelector('#status-overall >> text=部分服务中断。');
  await p2.waitForSelector('li[data-service=vm_start] >> text=启动虚拟机');
  assert((await text(p2, 'li[data-service=vm_start] .badge')) === '中断', 'starting VMs: disrupted');
  assert((await text(p2, 'li[data-service=nodes] .badge')) === '正常', 'nodes: working');
  assert((await text(p2, 'li[data-service=desk] .badge')) === '降级', 'the desk: degraded (a P2 incident)');
  assert((await text(p2, '.incident-title')) === incident, 'the incident title, as text');
  assert(await p2.locator('.status-incidents b').count() === 0, 'no markup from a title');
  await shot(p2, 'status-zh.png');
  step('status page in Chinese');

  await p2.click('button.lang-toggle');
  await p2.waitForSelector('#status-overall >> text=Some services are disrupted.');
  assert((await text(p2, 'li[data-service=vm_start] .status-service')) === 'Starting VMs', 'services in English');
  await shot(p2, 'status-en.png');
  step('status page in English');

  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
});
