// Every page of the three UIs, in English and Chinese, at 1366 px and at a
// phone's 390 px: a screenshot of each (target/screens/<page>-<lang>-<width>.png,
// so anyone can look at them) and axe-core's accessibility check, which fails
// the run on any serious or critical violation. At 390 px no page may scroll
// sideways. On a phone each role's navigation menu is checked open as well.
// usage: node tests/browser/pages.mjs <base-url> <password> <out-dir> <json: {admin, teacher, student, reset, courseId, vmId, nodeId}>

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, password, outDir, json] = args('pages.mjs <base-url> <password> <out-dir> <json>');
const ids = JSON.parse(json);
process.env.PVCE_BROWSER_TIMEOUT_MS ||= '285000';
const require = createRequire(new URL('../../web/package.json', import.meta.url));
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const LANGS = [['en', 'en-US'], ['zh', 'zh-CN']];
const WIDTHS = [[1366, 900], [390, 844]];

// [name, role, hash, selector that says the page is ready]
const PAGES = [
  ['student-courses', 'student', '#/courses', 'li.vm[data-vm-id]'],
  ['student-desktop', 'student', `#/desktop/${ids.vmId}`, '.desktop[data-conn=stopped] .screen-overlay:not([hidden])'],
  ['teacher-courses', 'teacher', '#/teach', '.course-tile'],
  ['teacher-new-course', 'teacher', '#/teach/new', '#spec-tpl-0'],
  ['teacher-class', 'teacher', `#/teach/${ids.courseId}`, 'table.data tbody tr[data-vm-id]'],
  ['teacher-templates', 'teacher', '#/templates', '.tree-name'],
  ['admin-nodes', 'admin', '#/nodes', '.node-card[data-node-id]'],
  ['admin-node', 'admin', `#/nodes/${ids.nodeId}`, '#cluster-vms'],
  ['admin-vms', 'admin', '#/vms', '#cluster-vms tr[data-vm-id]'],
  ['admin-users', 'admin', '#/users', 'tbody tr[data-username]'],
  ['student-notifications', 'student', '#/notifications', '.notices-body:not([aria-busy])'],
  ['student-notification-settings', 'student', '#/notification-settings', '#ns-save'],
  ['student-status', 'student', '#/status', '#status-overall'],
  ['admin-slo', 'admin', '#/slo', '#slo-objectives'],
  ['admin-alerts', 'admin', '#/alerts', '.alerts-body:not([aria-busy])'],
  ['admin-alert-rules', 'admin', '#/alert-rules', 'section.alert-rule[data-rule=node_memory]'],
  ['admin-inspections', 'admin', '#/inspections', '#insp-history:not([aria-busy])'],
  ['admin-backups', 'admin', '#/backups', '#bk-summary:not([aria-busy])'],
  ['admin-reports', 'admin', '#/reports', '.report-form + .report-list:not([aria-busy])'],
  ['teacher-reports', 'teacher', '#/reports', '.report-list:not([aria-busy])'],
  ['student-mydata', 'student', '#/me', '#my-erasures:not([aria-busy])'],
  ['admin-retention', 'admin', '#/retention', '#erasures:not([aria-busy])'],
  ['teacher-wall', 'teacher', `#/wall/${ids.courseId}`, '.wall-tile[data-vm] .badge'],
  ['admin-walls', 'admin', '#/walls', '#walls-table tr[data-course]'],
];

await run('pages', outDir, async ({ newPage, step, logs }) => {
  const failures = [];
  const minor = new Set();
  let shots = 0;

  async function check(page, name) {
    // No sideways scrolling at phone width (a wide table scrolls inside its own box).
    const overflow = await page.evaluate(() => {
      const over = document.documentElement.scrollWidth - window.innerWidth;
      if (over <= 1) return null;
      // The innermost elements sticking out, to say what to fix.
      const out = [...document.body.querySelectorAll('*')]
        .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1 && ![...el.children].some((c) => c.getBoundingClientRect().right > window.innerWidth + 1))
        .slice(0, 4).map((el) => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')}`);
      return `${over}px (${out.join(', ')})`;
    });
    if (overflow) failures.push(`${name}: the page scrolls sideways by ${overflow}`);
    await page.evaluate(AXE);
    const violations = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const r = await axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({
        severe: v.impact === 'serious' || v.impact === 'critical',
        text: `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(' | ')}`,
      }));
    });
    for (const v of violations) {
      if (v.severe) failures.push(`${name}: ${v.text}`);
      else minor.add(v.text); // reported, not failed on
    }
    await page.evaluate(() => window.scrollTo(0, 0)); // the sticky top bar at the top of the shot
    await page.screenshot({ path: join(outDir, `${name}.png`), fullPage: true });
    shots += 1;
  }

  const signIn = (page, username) => login(page, base, username, password);

  for (const [lang, locale] of LANGS) {
    for (const [width, height] of WIDTHS) {
      const tag = `${lang}-${width}`;
      // The sign-in page, and the forced password change after a reset.
      const anon = await newPage({ locale, viewport: { width, height } });
      await anon.goto(base);
      await anon.waitForSelector('#login-username');
      await check(anon, `login-${tag}`);
      await signIn(anon, ids.reset);
      await anon.waitForSelector('#pw-form');
      await check(anon, `password-change-${tag}`);
      await anon.context().close();

      for (const role of ['student', 'teacher', 'admin']) {
        const page = await newPage({ locale, viewport: { width, height } });
        await signIn(page, ids[role]);
        await page.waitForSelector('#view .view-inner');
        // After sign-in the focus is on the page, not the body.
        const focused = await page.waitForFunction(() => document.activeElement && document.activeElement !== document.body, null, { timeout: 3000 })
          .then(() => true, () => false);
        if (!focused) failures.push(`${role}-${tag}: the focus is on the body after sign-in`);
        if (width < 1024) {
          // On a phone the navigation is a menu: it is checked open.
          await page.click('#nav-toggle');
          await page.waitForSelector('#nav.open');
          await check(page, `${role}-menu-${tag}`);
          await page.keyboard.press('Escape');
          await page.waitForSelector('#nav:not(.open)', { state: 'attached' });
        }
        for (const [name, who, hash, ready] of PAGES.filter((p) => p[1] === role)) {
          await page.goto(`${base}/${hash}`);
          await page.waitForSelector(ready, { timeout: 20000 });
          await page.waitForSelector('.loading', { state: 'detached' });
          await check(page, `${name}-${tag}`);
          // Dialogs are pages too: the password reset and a confirmation.
          const dialog = { 'admin-users': '.reset-pw', 'teacher-class': '#delete-course' }[name];
          if (dialog) {
            await page.click(dialog);
            await page.waitForSelector('dialog[open]');
            await check(page, `${name}-dialog-${tag}`);
            await page.keyboard.press('Escape');
            await page.waitForSelector('dialog', { state: 'detached' });
          }
          if (name === 'admin-nodes') {
            // Chart legends speak the page's language too.
            const legend = (await page.locator('.chart .u-legend .u-label').first().textContent()).trim();
            const want = lang === 'zh' ? '时间' : 'Time';
            if (legend !== want) failures.push(`${name}-${tag}: the chart legend says "${legend}", not "${want}"`);
          }
        }
        await page.context().close();
      }
      step(`${tag}: every page checked`);
    }
  }
  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
  assert(failures.length === 0, `${failures.length} problems:\n${failures.join('\n')}`);
  for (const m of minor) step(`axe (moderate or minor, not failed on): ${m}`);
  step(`${shots} screenshots in ${outDir}`);
});
