// Shared helpers for the browser tests: headless Debian Chromium driven by
// playwright-core (resolved from web/node_modules, installed by build.rs).

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

export const CHROMIUM = process.env.PVCE_CHROMIUM || '/usr/bin/chromium';

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives every launch a fresh temporary profile (user-data-dir).
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/**
 * Serves `127.0.0.1:port` inside the test's own network namespace
 * (tests/it/browser.rs) and relays each connection to the Unix socket `sock`
 * that the test harness bridges to the real service on the host's loopback
 * (the pvce server, a sign-in provider). Returns { close, cut }: cut() tears
 * down every open connection at once without a word (no WebSocket close
 * frame, no FIN before the data stops) — a network drop as the browser sees
 * one — while new connections keep working.
 */
export async function relayLoopback(port, sock) {
  const open = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(sock);
    open.add(client);
    open.add(upstream);
    const end = () => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream); };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), '127.0.0.1', resolve);
  });
  const cut = () => {
    const n = open.size;
    // The browser's side gets a TCP reset; the bridge's Unix socket just goes.
    for (const s of [...open]) {
      try { s.resetAndDestroy(); } catch { s.destroy(); }
    }
    return n;
  };
  return { close: () => { server.close(); cut(); }, cut };
}

/** The pvce server's relay, when the harness gave one. */
async function bridgeLoopback() {
  const sock = process.env.PVCE_BROWSER_BRIDGE;
  const port = Number(process.env.PVCE_BROWSER_PORT);
  if (!sock || !port) return { close: () => {}, cut: () => 0 };
  return relayLoopback(port, sock);
}

/**
 * Runs `body(ctx)` with a browser; on failure saves `<name>-failure.png`,
 * prints the page's console, and exits 1 with the message.
 */
export async function run(name, artifactDir, body) {
  mkdirSync(artifactDir, { recursive: true });
  const started = Date.now();
  const logs = [];
  let browser;
  let page;
  const watchdog = setTimeout(() => {
    console.error(`FAIL ${name}: overall time limit reached`);
    process.exit(1);
  }, Number(process.env.PVCE_BROWSER_TIMEOUT_MS || 240000));
  const step = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
  const { close: closeBridge, cut: cutNetwork } = await bridgeLoopback();
  try {
    browser = await launch();
    const newPage = async (opts = {}) => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...opts });
      const p = await context.newPage();
      p.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
      p.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
      page = p;
      return p;
    };
    await body({ newPage, step, shot: (p, file) => p.screenshot({ path: join(artifactDir, file) }), logs, cutNetwork });
    step('ok');
    clearTimeout(watchdog);
    await browser.close();
    closeBridge();
  } catch (err) {
    console.error(`FAIL ${name}: ${err && err.message ? err.message : err}`);
    if (page) {
      try { await page.screenshot({ path: join(artifactDir, `${name}-failure.png`) }); } catch { /* page gone */ }
    }
    if (logs.length) console.error(`page log:\n${logs.slice(-60).join('\n')}`);
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }
}

/**
 * The script's arguments, named by `usage` ("x.mjs <base-url> <user> …"):
 * too few → the usage line and exit 2.
 */
export function args(usage) {
  const argv = process.argv.slice(2);
  if (argv.length < (usage.match(/<[^>]+>/g) || []).length) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  return argv;
}

/** Signs in on the login page; waits for `ready` (a selector) when given. */
export async function login(page, base, username, password, ready) {
  await page.goto(base);
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('form.login-form button[type=submit]');
  if (ready) await page.waitForSelector(ready);
}

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** Page errors and console errors other than failed resource loads (expected 401s). */
export function unexpectedErrors(logs) {
  return logs.filter((l) => l.startsWith('[pageerror]')
    || (l.startsWith('[console.error]') && !l.includes('Failed to load resource')));
}
