// Static check of the translations: English and Chinese have the same keys,
// every literal key the app's modules use exists, every API error code the
// server can answer (found in src/**/*.rs and src/http/openapi.json) has an
// `apierr.<code>` text and every event kind (src/events.rs) an
// `events.kind.<kind>` text in both languages, and the Chinese texts address
// the user one way only (你, never 您).
// usage: node tests/browser/i18n-check.mjs

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

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
const used = /['"`]((?:app|lang|nav|role|common|login|state|student|course|vm|reset|poweroff|desktop|time|error|teach|tpl|nodes|users|panel|desk|ticket)\.[\w.]+)['"`]/g;
let count = 0;
for (const f of readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'i18n.js')) {
  for (const m of readFileSync(new URL(f, dir), 'utf8').matchAll(used)) {
    count++;
    if (!en.has(m[1])) problems.push(`${f} uses an unknown key: ${m[1]}`);
  }
}
// ---- API error codes and event kinds
const root = new URL('../../', import.meta.url).pathname;
function rustFiles(d) {
  return readdirSync(d).flatMap((f) => {
    const p = join(d, f);
    return statSync(p).isDirectory() ? rustFiles(p) : p.endsWith('.rs') ? [p] : [];
  });
}
const codes = new Map(); // code → where it was found
for (const f of rustFiles(join(root, 'src'))) {
  const text = readFileSync(f, 'utf8');
  // `ApiError::new(StatusCode::X, "code", …)` and domain errors that carry
  // their code first (`Conflict("vm_running", …)`, `Rejected("corrupt_export", …)`).
  for (const m of text.matchAll(/(?:StatusCode::[A-Z_]+,|\b[A-Z]\w*\()\s*"([a-z]+(?:_[a-z]+)*)",/g)) {
    if (!codes.has(m[1])) codes.set(m[1], f.slice(root.length));
  }
}
// The contract names codes after their status ("409 vm_running; 422 template_mismatch").
for (const m of readFileSync(join(root, 'src/http/openapi.json'), 'utf8').matchAll(/\b[45]\d\d ([a-z]+_[a-z_]+)/g)) {
  if (!codes.has(m[1])) codes.set(m[1], 'src/http/openapi.json');
}
const kinds = [...readFileSync(join(root, 'src/events.rs'), 'utf8').matchAll(/Self::\w+ => "([a-z_]+)"/g)].map((m) => m[1]);
if (codes.size < 20) problems.push(`only ${codes.size} API error codes found: is the scan still right?`);
if (kinds.length < 5) problems.push(`only ${kinds.length} event kinds found in src/events.rs: is the scan still right?`);
for (const [code, where] of codes) {
  for (const [name, set] of [['en', en], ['zh-CN', zh]]) {
    if (!set.has(`apierr.${code}`)) problems.push(`error code ${code} (${where}) has no ${name} text: add 'apierr.${code}'`);
  }
}
for (const k of kinds) {
  for (const [name, set] of [['en', en], ['zh-CN', zh]]) {
    if (!set.has(`events.kind.${k}`)) problems.push(`event kind ${k} has no ${name} text: add 'events.kind.${k}'`);
  }
}
// One form of address: 你 (as most of the UI), never the formal 您.
const zhStart = src.indexOf("\n  'zh-CN': {");
for (const m of src.slice(zhStart).matchAll(/^ {4}'([^']+)': '([^']*您[^']*)'/gm)) {
  problems.push(`zh-CN ${m[1]} says 您; the UI says 你`);
}

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`i18n ok: ${en.size} keys in en and zh-CN; ${count} literal uses checked; ${codes.size} error codes and ${kinds.length} event kinds translated`);
