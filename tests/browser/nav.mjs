// The navigation for every role, in both languages, at 1920, 1280 and 360 px:
// each role sees exactly its entries (grouped Lab / Service / Quality), the
// active page is marked, the keyboard moves through the entries (the menu
// button on a phone opens with Enter or Space, the arrows move, Escape closes
// and gives the focus back, Enter on an entry navigates; beside a VM's
// desktop the side bar is that menu at any width), and nothing in the
// top bar or the open menu sticks out of the viewport.
// usage: node tests/browser/nav.mjs <base-url> <password> <artifact-dir> <json: {student, teacher, staff, admin}>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, password, artifactDir, json] = args('nav.mjs <base-url> <password> <artifact-dir> <json>');
const users = JSON.parse(json);
process.env.PVCE_BROWSER_TIMEOUT_MS ||= '280000';

// [group, [routes]] per role, in order.
const EXPECT = {
  student: [['lab', ['courses']], ['service', ['tickets']], ['quality', ['status']]],
  teacher: [['lab', ['teach', 'templates']], ['service', ['tickets']], ['quality', ['slo', 'reports', 'status']]],
  staff: [['lab', ['walls']], ['service', ['desk', 'tickets', 'problems', 'kb', 'alerts', 'inspections']], ['quality', ['slo', 'reports']]],
  admin: [
    ['lab', ['teach', 'templates', 'nodes', 'vms', 'users', 'walls']],
    ['service', ['desk', 'problems', 'kb', 'alerts', 'inspections', 'backups', 'retention']],
    ['quality', ['slo', 'reports', 'status', 'audit']],
  ],
};
const HOME = { student: 'courses', teacher: 'teach', staff: 'desk', admin: 'nodes' };
const GROUP_TITLES = {
  en: { lab: 'Lab', service: 'Service', quality: 'Quality' },
  zh: { lab: '实验', service: '服务', quality: '质量' },
};
const LINK_TEXT = {
  en: { desk: 'Service desk', slo: 'Service levels' },
  zh: { desk: '服务台', slo: '服务水平' },
};
const WIDTHS = [[1920, 1080], [1280, 800], [360, 740]];

await run('nav', artifactDir, async ({ newPage, step, shot, logs }) => {
  /** What the nav shows: [group, [routes]] of the visible entries, and the texts. */
  const visibleNav = (page) => page.evaluate(() => [...document.querySelectorAll('#nav .nav-group')]
    .map((g) => [g.dataset.group, g.querySelector('.nav-group-title').textContent.trim(),
      [...g.querySelectorAll('.nav-link')].filter((a) => a.getClientRects().length)
        .map((a) => [a.dataset.route, a.textContent.trim()])]));

  /** Elements of the top bar (and the open menu) not wholly inside the viewport, or cut off inside their box. */
  const clipped = (page) => page.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const bar = document.querySelector('.topbar').getBoundingClientRect();
    const bad = [];
    const name = (el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}.${[...el.classList].join('.')}`;
    const parts = [...document.querySelectorAll('.topbar a, .topbar button, .topbar .user-chip, .topbar .avatar, .topbar .user-text')];
    for (const el of parts) {
      if (!el.getClientRects().length) continue; // not shown at this width
      const r = el.getBoundingClientRect();
      if (r.width < 1) continue; // visually hidden text
      if (r.left < -0.5 || r.right > vw + 0.5) bad.push(`${name(el)} ${Math.round(r.left)}..${Math.round(r.right)} of ${vw}`);
      if (r.top < bar.top - 0.5 || r.bottom > bar.bottom + 0.5) bad.push(`${name(el)} taller than the top bar`);
      if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 && getComputedStyle(el).overflow !== 'visible') bad.push(`${name(el)} cuts its text`);
    }
    // The bar's items side by side, none over its neighbour.
    const items = [...document.querySelectorAll('.topbar > *:not(.topbar-right), .topbar-right > *')]
      .filter((el) => el.getClientRects().length).map((el) => [el, el.getBoundingClientRect()]);
    for (let i = 1; i < items.length; i++) {
      const [a, ra] = items[i - 1];
      const [b, rb] = items[i];
      if (ra.right > rb.left + 0.5) bad.push(`${name(a)} overlaps ${name(b)} by ${Math.round(ra.right - rb.left)}px`);
    }
    const nav = document.getElementById('nav');
    if (nav.getClientRects().length) {
      const n = nav.getBoundingClientRect();
      for (const a of nav.querySelectorAll('.nav-link, .nav-group-title')) {
        const r = a.getBoundingClientRect();
        if (r.left < n.left - 0.5 || r.right > n.right + 0.5 || r.right > vw + 0.5) bad.push(`${name(a)} "${a.textContent}" outside the nav`);
        if (a.scrollWidth > a.clientWidth + 1) bad.push(`${name(a)} "${a.textContent}" cuts its text`);
      }
    }
    if (document.documentElement.scrollWidth > vw + 1) bad.push(`the page scrolls sideways by ${document.documentElement.scrollWidth - vw}px`);
    return bad;
  });

  const focused = (page) => page.evaluate(() => {
    const a = document.activeElement;
    return a ? (a.dataset.route || a.id || a.tagName) : null;
  });

  function compare(role, lang, seen, tag) {
    const want = EXPECT[role];
    const got = seen.map(([g, , links]) => [g, links.map(([r]) => r)]);
    assert(JSON.stringify(got) === JSON.stringify(want), `${tag}: the ${role} sees ${JSON.stringify(got)}, not ${JSON.stringify(want)}`);
    for (const [g, title, links] of seen) {
      assert(title === GROUP_TITLES[lang][g], `${tag}: group ${g} is titled "${title}"`);
      for (const [r, text] of links) {
        if (LINK_TEXT[lang][r]) assert(text === LINK_TEXT[lang][r], `${tag}: ${r} says "${text}"`);
      }
    }
  }

  for (const [lang, locale] of [['en', 'en-US'], ['zh', 'zh-CN']]) {
    for (const [width, height] of WIDTHS) {
      for (const role of ['student', 'teacher', 'staff', 'admin']) {
        const tag = `${role}-${lang}-${width}`;
        const page = await newPage({ locale, viewport: { width, height } });
        await login(page, base, users[role], password);
        await page.waitForSelector('#view .view-inner');
        await page.waitForSelector('.loading', { state: 'detached' });
        const home = HOME[role];
        const active = await page.getAttribute(`#nav .nav-link[data-route=${home}]`, 'aria-current');
        assert(active === 'page', `${tag}: the home entry is the current page`);
        const narrow = width < 1024;
        const bad = await clipped(page);
        assert(bad.length === 0, `${tag}: clipped in the top bar:\n${bad.join('\n')}`);

        if (!narrow) {
          // A side bar: every entry shown, no menu button.
          assert(!(await page.isVisible('#nav-toggle')), `${tag}: no menu button on a wide screen`);
          compare(role, lang, await visibleNav(page), tag);
          // The arrows move through the entries; Enter opens one.
          await page.focus(`#nav .nav-link[data-route=${home}]`);
          await page.keyboard.press('End');
          const last = await focused(page);
          await page.keyboard.press('Home');
          assert(await focused(page) === EXPECT[role][0][1][0], `${tag}: Home goes to the first entry`);
          await page.keyboard.press('ArrowUp');
          assert(await focused(page) === last, `${tag}: ArrowUp from the first wraps to the last (${last})`);
          // ArrowDown wraps from the last to the first entry, then on to the
          // second (the one after, if that is the page already open).
          await page.keyboard.press('ArrowDown');
          assert(await focused(page) === EXPECT[role][0][1][0], `${tag}: ArrowDown from the last wraps to the first`);
          await page.keyboard.press('ArrowDown');
          if (await focused(page) === home) await page.keyboard.press('ArrowDown');
          const target = await focused(page);
          assert(target && target !== home, `${tag}: ArrowDown moved to another entry (${target})`);
          await page.keyboard.press('Enter');
          await page.waitForFunction((r) => location.hash === `#/${r}`, target);
          await page.waitForSelector(`#nav .nav-link[data-route=${target}][aria-current=page]`);
          assert(await page.locator('#nav [aria-current=page]').count() === 1, `${tag}: one current page`);
          if (width === 1280 && role === 'admin') await shot(page, `nav-admin-${lang}-1280.png`);
          if (role === 'student') {
            // A VM's desktop takes the whole width: the side bar becomes the menu there.
            await page.evaluate(() => { location.hash = '#/desktop/7e57a000-0000-4000-8000-000000000000'; });
            await page.waitForFunction(() => document.body.dataset.route === 'desktop');
            assert(!(await page.isVisible('#nav')), `${tag}: no side bar beside a desktop`);
            await page.focus('#nav-toggle');
            await page.keyboard.press('Enter');
            await page.waitForSelector('#nav.open');
            assert(await focused(page) === 'courses', `${tag}: the menu opens on the first entry`);
            await page.keyboard.press('Escape');
            await page.waitForSelector('#nav:not(.open)', { state: 'attached' });
            assert(await focused(page) === 'nav-toggle', `${tag}: Escape gives the focus back`);
            const onDesktop = await clipped(page);
            assert(onDesktop.length === 0, `${tag}: clipped beside a desktop:\n${onDesktop.join('\n')}`);
          }
        } else {
          // A menu behind a button in the top bar.
          assert(!(await page.isVisible('#nav')), `${tag}: the menu is closed at first`);
          assert(await page.getAttribute('#nav-toggle', 'aria-expanded') === 'false', `${tag}: aria-expanded=false`);
          await page.focus('#nav-toggle');
          await page.keyboard.press('Enter');
          await page.waitForSelector('#nav.open');
          assert(await page.getAttribute('#nav-toggle', 'aria-expanded') === 'true', `${tag}: aria-expanded=true`);
          assert(await focused(page) === home, `${tag}: Enter opens the menu on the current page (${await focused(page)})`);
          compare(role, lang, await visibleNav(page), tag);
          const open = await clipped(page);
          assert(open.length === 0, `${tag}: clipped with the menu open:\n${open.join('\n')}`);
          if (role === 'admin') await shot(page, `nav-admin-${lang}-360-open.png`);
          await page.keyboard.press('ArrowDown');
          assert(await focused(page) !== home, `${tag}: ArrowDown moves in the menu`);
          await page.keyboard.press('Escape');
          await page.waitForSelector('#nav:not(.open)', { state: 'attached' });
          assert(await focused(page) === 'nav-toggle', `${tag}: Escape gives the focus back to the button`);
          assert(await page.getAttribute('#nav-toggle', 'aria-expanded') === 'false', `${tag}: closed again`);
          // Space opens it too; the last entry, chosen with Enter, navigates and closes the menu.
          await page.keyboard.press(' ');
          await page.waitForSelector('#nav.open');
          await page.keyboard.press('End');
          const target = await focused(page);
          await page.keyboard.press('Enter');
          await page.waitForFunction((r) => location.hash === `#/${r}`, target);
          await page.waitForSelector('#nav:not(.open)', { state: 'attached' });
          assert(await page.getAttribute(`#nav .nav-link[data-route=${target}]`, 'aria-current') === 'page', `${tag}: ${target} is current`);
          // Opened with a tap (the focus stays on the button), Escape closes it too.
          await page.click('#nav-toggle');
          await page.waitForSelector('#nav.open');
          await page.keyboard.press('Escape');
          await page.waitForSelector('#nav:not(.open)', { state: 'attached' });
          // A tap outside closes it as well.
          await page.click('#nav-toggle');
          await page.waitForSelector('#nav.open');
          await page.mouse.click(width - 20, height - 20);
          await page.waitForSelector('#nav:not(.open)', { state: 'attached' });
        }
        const after = await clipped(page);
        assert(after.length === 0, `${tag}: clipped after navigating:\n${after.join('\n')}`);
        await page.context().close();
      }
      step(`${lang} ${width}px: every role's navigation checked`);
    }
  }
  const errs = unexpectedErrors(logs);
  assert(errs.length === 0, `page errors:\n${errs.join('\n')}`);
});
