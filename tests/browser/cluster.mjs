// The admin overview of a multi-node cluster: one card per node, all up, and
// the load charts with a line per node.
// usage: node tests/browser/cluster.mjs <base-url> <username> <password> <artifact-dir> <nodes>

import { run, assert, unexpectedErrors, login } from './lib.mjs';

const [base, username, password, artifactDir, nodesArg] = process.argv.slice(2);
const nodes = Number(nodesArg);
if (!nodes) {
  console.error('usage: cluster.mjs <base-url> <username> <password> <artifact-dir> <nodes>');
  process.exit(2);
}

await run('cluster', artifactDir, async ({ newPage, step, logs }) => {
  const page = await newPage({ locale: 'zh-CN', viewport: { width: 1400, height: 1000 } });
  await login(page, base, username, password);
  await page.waitForFunction((n) => {
    const cards = [...document.querySelectorAll('.node-card[data-node-id]')];
    return cards.length === n && cards.every((c) => c.classList.contains('node-up'));
  }, nodes, { timeout: 30000 });
  step(`${nodes} node cards, all up`);

  // Every chart has one series per node and at least two points for each.
  const counts = await page.waitForFunction((n) => {
    const charts = [...document.querySelectorAll('.chart[data-points]')];
    if (charts.length !== 3) return false;
    const series = charts.map((c) => c.querySelectorAll('.u-legend .u-series').length - 1);
    const points = charts.map((c) => Number(c.dataset.points));
    return series.every((s) => s === n) && points.every((p) => p >= 2 * n) ? { series, points } : false;
  }, nodes, { timeout: 60000, polling: 250 }).then((r) => r.jsonValue());
  assert(counts.series.every((s) => s === nodes), `series per chart ${JSON.stringify(counts)}`);
  await page.screenshot({ path: `${artifactDir}/admin-cluster.png`, fullPage: true });
  step(`charts: ${JSON.stringify(counts)}`);

  const bad = unexpectedErrors(logs);
  assert(bad.length === 0, `page errors:\n${bad.join('\n')}`);
});
