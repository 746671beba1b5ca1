// The periodic service report in a real browser: an admin (in Chinese)
// generates a draft over a fixture week, checks the sections and charts,
// writes the analysis (a <img onerror> in it must stay text) and the plan,
// marks it reviewed and publishes it, and downloads the PDF and the CSV; a
// teacher (in English) then finds the published report read-only.
// usage: node tests/browser/reports.mjs <base-url> <admin> <teacher> <password> <artifact-dir>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, admin, teacher, password, artifactDir] = args('reports.mjs <base-url> <admin> <teacher> <password> <artifact-dir>');

const SUMMARY = '<img src=x onerror="window.__pwned=1"> 本周服务平稳,一张 P1 工单超时。';
const PLAN = '1. 高峰时段增加值班人员。\n2. 每天早上检查 P3 队列。';
const SECTIONS = ['summary', 'sla', 'incidents', 'workload', 'satisfaction', 'resources', 'service_levels', 'plan'];

const signIn = (page, username) => login(page, base, username, password, '.topbar');

await run('reports', artifactDir, async ({ newPage, step, shot, logs }) => {
  // ---- the admin, in Chinese: generate, edit, review, publish
  const a = await newPage({ locale: 'zh-CN' });
  await signIn(a, admin);
  await a.click('nav a[data-route=reports]');
  await a.waitForSelector('.report-form');
  assert((await a.textContent('h1')).includes('服务报告'), 'the list page is in Chinese');
  await a.selectOption('#rpt-period', 'custom');
  await a.fill('#rpt-from', '2026-03-02');
  await a.fill('#rpt-to', '2026-03-09');
  await a.click('.report-form button[type=submit]');
  await a.waitForSelector('.report-section[data-section=service_levels]');
  step('draft generated');
  for (const s of SECTIONS) {
    assert(await a.locator(`.report-section[data-section=${s}]`).count() === 1, `section ${s} is shown`);
  }
  assert((await a.textContent('.report-section[data-section=sla] h2')).includes('SLA 目标与实际'), 'section titles in Chinese');
  assert(await a.locator('.badge[data-state=draft]').count() === 1, 'a draft');
  // Charts with one bar per value: four priorities, the five ratings.
  assert(await a.getAttribute('.report-chart[data-chart="reports.inc.byPriority"]', 'data-bars') === '4', 'priority chart');
  assert(await a.getAttribute('.report-chart[data-chart="reports.sat.distribution"]', 'data-bars') === '5', 'ratings chart');
  assert((await a.textContent('.report-breaches')).includes('#9007'), 'the SLA breach is listed');
  await a.fill('#rpt-text-summary', SUMMARY);
  await a.fill('#rpt-text-plan', PLAN);
  await a.click('[data-action=save]');
  await a.waitForSelector('.toast');
  await shot(a, 'reports-draft-zh.png');
  step('analysis saved');
  await a.click('[data-action=review]');
  await a.waitForSelector('.badge[data-state=reviewed]');
  assert(await a.locator('textarea').count() === 0, 'a reviewed report is read-only');
  await a.click('[data-action=publish]');
  await a.click('dialog button[value=ok]');
  await a.waitForSelector('.badge[data-state=published]');
  assert(await a.locator('[data-action=publish], [data-action=save]').count() === 0, 'nothing to change once published');
  assert(await a.textContent('.report-text[data-text=summary]') === SUMMARY, 'the analysis is shown as typed');
  assert(await a.locator('.report-section img').count() === 0, 'no element was made from the text');
  assert(await a.evaluate(() => window.__pwned === undefined), 'nothing in the text ran');
  step('reviewed and published');
  // The downloads: the PDF in the page's language, the CSV.
  const pdfHref = await a.getAttribute('[data-action=pdf]', 'href');
  assert(pdfHref.endsWith('lang=zh-CN'), `PDF link in Chinese: ${pdfHref}`);
  const pdf = await a.request.get(new URL(pdfHref, base).href);
  assert(pdf.status() === 200 && pdf.headers()['content-type'] === 'application/pdf', `PDF: ${pdf.status()}`);
  assert((await pdf.body()).subarray(0, 5).toString() === '%PDF-', 'a PDF');
  const csv = await a.request.get(new URL(await a.getAttribute('[data-action=csv]', 'href'), base).href);
  assert(csv.status() === 200 && (await csv.text()).startsWith('section,figure,key,value'), 'the CSV');
  await shot(a, 'reports-published-zh.png');

  // ---- a teacher, in English: the published report, read-only
  const t = await newPage({ locale: 'en-US' });
  await signIn(t, teacher);
  await t.click('nav a[data-route=reports]');
  await t.waitForSelector('table.reports tr[data-state=published] a');
  assert(await t.locator('table.reports tbody tr').count() === 1, 'the teacher sees the published report only');
  assert(await t.locator('.report-form').count() === 0, 'teachers do not generate');
  await t.click('table.reports tr[data-state=published] a');
  await t.waitForSelector('.report-section[data-section=plan] .report-text');
  assert((await t.textContent('.report-section[data-section=sla] h2')).includes('SLA target vs actual'), 'section titles in English');
  assert(await t.textContent('.report-text[data-text=plan]') === PLAN, 'the plan, line breaks kept');
  assert(await t.locator('textarea, [data-action=review], [data-action=publish]').count() === 0, 'read-only for teachers');
  assert((await t.getAttribute('[data-action=pdf]', 'href')).endsWith('lang=en'), 'PDF link in English');
  await shot(t, 'reports-teacher-en.png');
  const errors = unexpectedErrors(logs);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
});
