// Static check of the translations: English and Chinese have the same keys,
// and every literal key the app's modules use exists.
// usage: node tests/browser/i18n-check.mjs

import { readFileSync, readdirSync } from 'node:fs';

const dir = new URL('../../web/app/', import.meta.url);
const src = readFileSync(new URL('i18n.js', dir), 'utf8');

function keys(name) {
  const start = src.indexOf(`\n  ${name}: {`);
  if (start < 0) throw new Error(`no ${name} block in i18n.js`);
  const end = src.indexOf('\n  },', start);
  return new Set([...src.slice(start, end).matchAll(/^ {4}'([^']+)':/gm)].map((m) => m[1]));
}

const en = keys('en');
const zh = keys("'zh-CN'");
const problems = [];
for (const k of en) if (!zh.has(k)) problems.push(`missing in zh-CN: ${k}`);
for (const k of zh) if (!en.has(k)) problems.push(`missing in en: ${k}`);
const used = /['"`]((?:app|lang|nav|role|common|login|state|student|course|vm|reset|poweroff|desktop|time|error|teach|tpl|nodes|users)\.[\w.]+)['"`]/g;
let count = 0;
for (const f of readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'i18n.js')) {
  for (const m of readFileSync(new URL(f, dir), 'utf8').matchAll(used)) {
    count++;
    if (!en.has(m[1])) problems.push(`${f} uses an unknown key: ${m[1]}`);
  }
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`i18n ok: ${en.size} keys in en and zh-CN; ${count} literal uses checked`);
