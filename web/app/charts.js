// Time-series charts for the admin views, drawn with uPlot (from npm, served
// by the server under /vendor/uplot/). One chart = one metric, one line per
// node. Charts follow their container's width and redraw on language change
// by being rebuilt by their owner.

import uPlot from '/vendor/uplot/uPlot.esm.js';
import { h, formatNumber } from './ui.js';
import { t, lang } from './i18n.js';

/** A sample's time in the page's language (the legend). */
function when(ts) {
  return ts === null || ts === undefined ? '–'
    : new Date(ts * 1000).toLocaleString(lang(), { month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** Time-axis ticks in the page's language: clock times, or dates when the ticks are days apart. */
function ticksText(ticks) {
  const days = ticks.length > 1 && ticks[ticks.length - 1] - ticks[0] > 2 * 86400;
  return ticks.map((ts) => (days
    ? new Date(ts * 1000).toLocaleDateString(lang(), { month: 'numeric', day: 'numeric' })
    : new Date(ts * 1000).toLocaleTimeString(lang(), { hour: '2-digit', minute: '2-digit' })));
}

// uPlot's stylesheet, once per page (CSP allows our own stylesheets only).
if (!document.querySelector('link[data-uplot]')) {
  document.head.append(h('link', { rel: 'stylesheet', href: '/vendor/uplot/uPlot.min.css', dataset: { uplot: '1' } }));
}

// Distinguishable on white and for common colour-vision deficiencies.
const PALETTE = ['#2457d6', '#d35400', '#17803a', '#8e44ad', '#c62828', '#0097a7', '#a86400', '#5c6779'];

export function color(i) { return PALETTE[i % PALETTE.length]; }

/**
 * Aligns per-node samples (bucket-aligned timestamps) into uPlot's columnar
 * data: [times, series1, series2, …], with null where a node has no point.
 * `pick(sample)` extracts the plotted value.
 */
export function align(nodes, pick) {
  const times = [...new Set(nodes.flatMap((n) => n.samples.map((s) => Date.parse(s.at) / 1000)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = nodes.map((n) => {
    const col = new Array(times.length).fill(null);
    for (const s of n.samples) {
      const v = pick(s);
      col[index.get(Date.parse(s.at) / 1000)] = v === undefined ? null : v;
    }
    return col;
  });
  return [times, ...columns];
}

/**
 * A line chart in `container`. `names`: one label per series; `data` from
 * align(); `unit` appended to values; `max` fixes the y-axis top (e.g. 100 %);
 * `spanSeconds()` (optional) pins the x-axis to the last N seconds, so a young
 * history is drawn at its true place instead of stretched over the chart.
 * The container's data-points attribute counts plotted values (tests read it).
 * Returns { update(data), destroy() }.
 */
export function lineChart(container, { title, names, data, unit = '', max = null, decimals = 0, spanSeconds = null }) {
  const fmt = (v) => (v === null || v === undefined ? '–' : `${formatNumber(Number(v), decimals)}${unit}`);
  const width = () => Math.max(240, container.clientWidth || 320);
  const opts = {
    title,
    width: width(),
    height: 200,
    cursor: { points: { size: 6 } },
    legend: { live: true },
    scales: { x: spanSeconds ? { time: true, range: () => { const now = Date.now() / 1000; return [now - spanSeconds(), now]; } } : { time: true }, y: max === null ? { range: (_u, lo, hi) => [0, Math.max(1, hi * 1.1)] } : { range: [0, max] } },
    axes: [
      { stroke: '#5c6779', grid: { stroke: '#eef0f3' }, values: (_u, ticks) => ticksText(ticks) },
      { stroke: '#5c6779', grid: { stroke: '#eef0f3' }, values: (_u, ticks) => ticks.map((v) => `${formatNumber(v, 2, 0)}${unit}`), size: 56 },
    ],
    series: [
      // The time column: its legend label and values in the page's language.
      { label: t('chart.time'), value: (_u, ts) => when(ts) },
      ...names.map((name, i) => ({
        label: name,
        stroke: color(i),
        width: 2,
        spanGaps: false,
        value: (_u, v) => fmt(v),
      })),
    ],
  };
  const countPoints = (d) => {
    container.dataset.points = String(d.slice(1).reduce((a, col) => a + col.filter((v) => v !== null).length, 0));
  };
  countPoints(data);
  const plot = new uPlot(opts, data, container);
  const ro = new ResizeObserver(() => plot.setSize({ width: width(), height: 200 }));
  ro.observe(container);
  return {
    update(next) { countPoints(next); plot.setData(next); },
    destroy() { ro.disconnect(); plot.destroy(); },
  };
}

/**
 * A horizontal bar chart (SVG) of `items` = [[label, value], …]: one bar per
 * item, its value printed after it. Labels are text nodes (never markup).
 * The container's data-bars attribute counts the bars (tests read it).
 */
export function barChart(container, { title, items, unit = '', decimals = 0 }) {
  const NS = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const rowH = 22;
  const labelW = 130;
  const width = 480;
  const max = Math.max(0, ...items.map(([, v]) => Number(v) || 0));
  const svg = el('svg', { viewBox: `0 0 ${width} ${Math.max(1, items.length) * rowH + 4}`, class: 'bar-chart', role: 'img' });
  if (title) svg.setAttribute('aria-label', title);
  items.forEach(([label, v], i) => {
    const y = i * rowH + 4;
    const w = max > 0 ? ((Number(v) || 0) / max) * (width - labelW - 70) : 0;
    svg.append(el('text', { x: 0, y: y + 12, class: 'bar-chart-label' }, String(label).slice(0, 24)));
    svg.append(el('rect', { x: labelW, y, width: Math.max(1, w), height: 14, rx: 3, fill: color(i) }));
    svg.append(el('text', { x: labelW + w + 6, y: y + 12, class: 'bar-chart-value' }, `${formatNumber(Number(v) || 0, decimals)}${unit}`));
  });
  container.dataset.bars = String(items.length);
  container.replaceChildren(svg);
}

/**
 * A row of line charts, one per box, redrawn with new data: kept (uPlot's
 * update) while `key` — what they show, and the language — stays the same;
 * rebuilt from `specs()` (null: nothing to draw) when it changes.
 */
export function chartRow(boxes) {
  let charts = [];
  let lastKey = '';
  const destroy = () => { charts.forEach((c) => c.destroy()); charts = []; };
  return {
    draw(key, data, specs) {
      if (key === lastKey && charts.length) {
        charts.forEach((c, i) => c.update(data[i]));
        return;
      }
      destroy();
      lastKey = key;
      const list = specs();
      if (!list) return;
      charts = list.map((spec, i) => {
        boxes[i].replaceChildren();
        return lineChart(boxes[i], { ...spec, data: data[i] });
      });
    },
    /** Forgets the key, so the next draw rebuilds (a language change). */
    reset() { lastKey = ''; },
    destroy,
  };
}
