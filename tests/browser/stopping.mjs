// A student's VM details and a shutdown that is waiting for the guest: the
// course list shows the VM's node, template and disk use; while the VM is
// `stopping` the list and the desktop page say when it will be forced off,
// in English and in Chinese, with the time in the page's language.
// usage: node tests/browser/stopping.mjs <base-url> <username> <password> <artifact-dir> <node> <template> <deadline-iso>

import { run, assert, unexpectedErrors, args, login } from './lib.mjs';

const [base, username, password, artifactDir, node, template, deadline] = args('stopping.mjs <base-url> <username> <password> <artifact-dir> <node> <template> <deadline-iso>');

await run('stopping', artifactDir, async ({ newPage, step, shot, logs }) => {
  for (const [locale, lang, words] of [
    ['en-US', 'en', { node: 'Node: ', tpl: 'Template: ', disk: 'Your data: ', forced: 'Forced off at ' }],
    ['zh-CN', 'zh-CN', { node: '节点：', tpl: '模板：', disk: '个人数据：', forced: '强制断电' }],
  ]) {
    const page = await newPage({ locale });
    await login(page, base, username, password);
    const vm = page.locator('li.vm[data-state=stopping]');
    await vm.waitFor({ timeout: 15000 });
    // The time of day as this language writes it (12 h with AM/PM in English).
    const time = new Date(deadline).toLocaleTimeString(lang, { hour: 'numeric', minute: '2-digit' });
    if (lang === 'en') assert(/^\d{1,2}:\d{2}\s?[AP]M$/.test(time), `English time of day, got "${time}"`);
    assert(await vm.locator('.vm-node').textContent() === `${words.node}${node}`, 'the node is named');
    assert(await vm.locator('.vm-template').textContent() === `${words.tpl}${template}`, 'the template is named');
    assert((await vm.locator('.vm-meta').textContent()).includes(words.disk), 'the disk use is shown');
    const forced = (await vm.locator('.vm-forced').textContent()).trim();
    assert(await vm.locator('.vm-forced').isVisible(), 'the forced-off time is visible');
    assert(forced.includes(words.forced) && forced.includes(time), `the list says when it is forced off (${time}), got "${forced}"`);
    await shot(page, `student-stopping-${lang}.png`);
    step(`${lang}: course list shows node, template, disk, "${forced}"`);

    // "Open desktop" waits for a running VM: go to the desktop page by its address.
    await page.goto(`${base}#/desktop/${await vm.getAttribute('data-vm-id')}`);
    await page.waitForSelector('.desktop-forced:not([hidden])', { timeout: 15000 });
    const onDesktop = (await page.textContent('.desktop-forced')).trim();
    assert(onDesktop === forced, `the desktop says the same, got "${onDesktop}"`);
    await shot(page, `student-stopping-desktop-${lang}.png`);
    step(`${lang}: desktop page says "${onDesktop}"`);
    const bad = unexpectedErrors(logs);
    assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
    await page.context().close();
  }
});
