// Collecting a directory from the whole class (GET /api/courses/{id}/collect):
// the archive streams while the server reads one stopped VM after another,
// so the page reads it chunk by chunk (bytes so far, students done so far,
// read from the tar headers as they pass), then offers the tar as a download
// and shows REPORT.txt's verdict per student — who had files, who had
// nothing, whose VM was skipped because it was running.

import { t, bind } from './i18n.js';
import { h, icon, button, replace, formatBytes, formatNumber, toastError } from './ui.js';
import { toError, ApiError } from './api.js';

/**
 * The collection card of a course. `courseId` is the course's id.
 * Returns { el }.
 */
export function collectCard(courseId) {
  const path = h('input', { id: 'collect-path', value: '/root/lab1', required: true, spellcheck: 'false', autocomplete: 'off', maxlength: 255 });
  const go = h('button', { type: 'submit', class: 'btn primary' }, icon('download'), h('span', { i18n: 'collect.submit' }));
  const progress = h('p', { class: 'muted collect-progress', role: 'status', 'aria-live': 'polite' });
  const result = h('div', { class: 'collect-result' });
  const form = h('form', { class: 'section-body collect-form', novalidate: true },
    h('p', { class: 'muted small', i18n: 'collect.help' }),
    h('div', { class: 'form-actions' },
      h('div', { class: 'field grow' }, h('label', { for: 'collect-path', i18n: 'collect.path' }), path),
      go),
    progress, result);
  let abort = null;

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (abort) { abort.abort(); return; }
    const dir = path.value.trim();
    if (!dir) { path.focus(); return; }
    abort = new AbortController();
    bind(go.querySelector('span'), 'collect.stop');
    replace(result);
    bind(progress, 'collect.starting');
    try {
      const { blob, name, entries } = await fetchArchive(courseId, dir, abort.signal, (bytes, students) => {
        bind(progress, 'collect.progress', { size: formatBytes(bytes), n: formatNumber(students) });
      });
      showResult(blob, name, entries);
    } catch (err) {
      if (err.name === 'AbortError') bind(progress, 'collect.stopped');
      else { progress.textContent = ''; toastError(err); }
    } finally {
      abort = null;
      bind(go.querySelector('span'), 'collect.submit');
    }
  });

  function showResult(blob, name, entries) {
    const report = entries.find((x) => x.name.endsWith('/REPORT.txt'));
    const files = entries.filter((x) => x !== report);
    bind(progress, 'collect.done', { files: formatNumber(files.length), size: formatBytes(blob.size) });
    const url = URL.createObjectURL(blob);
    const link = h('a', { class: 'btn primary', id: 'collect-download', href: url, download: name }, icon('download'), h('span', { i18n: ['collect.download', { name }] }));
    const lines = report ? parseReport(report.text) : [];
    // The server's detail (English, e.g. "/root/lab1 not found") stays in a
    // tooltip; the line itself is in the page's language.
    const rows = lines.map((l) => h('li', { class: `collect-line collect-${l.kind}`, dataset: { kind: l.kind, who: l.who }, title: l.detail || null },
      h('strong', {}, l.who), ' ', h('span', { i18n: [`collect.kind.${l.kind}`, { n: formatNumber(l.files) }] })));
    const nothing = lines.filter((l) => l.kind !== 'files').length;
    replace(result,
      h('div', { class: 'form-actions' }, link),
      lines.length ? h('p', { i18n: ['collect.summary', { ok: lines.length - nothing, nothing }] }) : null,
      h('ul', { class: 'collect-lines' }, rows));
  }

  return { el: form };
}

async function fetchArchive(courseId, dir, signal, onProgress) {
  let res;
  try {
    res = await fetch(`/api/courses/${encodeURIComponent(courseId)}/collect?path=${encodeURIComponent(dir)}`,
      { credentials: 'same-origin', headers: { Accept: 'application/x-tar, application/json' }, signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', t('error.network'));
  }
  if (!res.ok) {
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    throw toError(res.status, data);
  }
  const disposition = res.headers.get('content-disposition') || '';
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || 'collection.tar';
  const reader = res.body.getReader();
  const chunks = [];
  const tar = new TarScanner();
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    bytes += value.length;
    tar.push(value);
    onProgress(bytes, tar.students.size);
  }
  return { blob: new Blob(chunks, { type: 'application/x-tar' }), name, entries: tar.entries };
}

/**
 * Reads ustar headers as the bytes pass (512-byte blocks): every member's
 * name and size, and the text of REPORT.txt. Names are `<code>/<user>/<vm>/…`.
 */
export class TarScanner {
  constructor() {
    this.entries = [];
    this.students = new Set();
    this.buf = new Uint8Array(0);
    this.skip = 0; // bytes of member data (and padding) still to pass
    this.capture = null; // the member whose data is kept (REPORT.txt)
  }

  push(chunk) {
    let data = chunk;
    while (data.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, data.length);
        if (this.capture && this.capture.left > 0) {
          const take = Math.min(this.capture.left, n);
          this.capture.parts.push(data.slice(0, take));
          this.capture.left -= take;
          if (this.capture.left === 0) {
            this.capture.entry.text = new TextDecoder().decode(concat(this.capture.parts));
            this.capture = null;
          }
        }
        this.skip -= n;
        data = data.slice(n);
        continue;
      }
      const need = 512 - this.buf.length;
      const take = Math.min(need, data.length);
      this.buf = concat([this.buf, data.slice(0, take)]);
      data = data.slice(take);
      if (this.buf.length < 512) return;
      const block = this.buf;
      this.buf = new Uint8Array(0);
      this.header(block);
    }
  }

  header(block) {
    if (block.every((b) => b === 0)) return; // end-of-archive blocks
    const str = (from, len) => new TextDecoder().decode(block.slice(from, from + len)).replace(/\0.*$/s, '');
    const prefix = str(345, 155);
    let name = str(0, 100);
    if (prefix) name = `${prefix}/${name}`;
    const size = parseInt(str(124, 12).trim() || '0', 8) || 0;
    const type = String.fromCharCode(block[156] || 48);
    const entry = { name, size, type };
    if (type === 'L' || type === 'x' || type === 'g') {
      // GNU long name / pax headers: skipped (their data is not a member).
    } else {
      this.entries.push(entry);
      const parts = name.split('/');
      if (parts.length >= 3) this.students.add(parts[1]);
    }
    const padded = Math.ceil(size / 512) * 512;
    this.skip = padded;
    if (name.endsWith('/REPORT.txt') && size > 0) this.capture = { entry, left: size, parts: [] };
  }
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * REPORT.txt's lines (`<user>/<vm>: N files…`, `…: nothing collected: …`,
 * `…: skipped, …`) as { who, kind: files|nothing|running|skipped, files, detail }.
 */
export function parseReport(text) {
  const out = [];
  for (const line of text.split('\n').slice(1)) {
    const m = line.match(/^([^:\s][^:]*): (.*)$/);
    if (!m) continue;
    const [, who, rest] = m;
    const files = rest.match(/^(\d+) files/);
    if (files && Number(files[1]) > 0) out.push({ who, kind: 'files', files: Number(files[1]), detail: '' });
    else if (files) out.push({ who, kind: 'nothing', files: 0, detail: '' });
    else if (/the VM is (running|starting|stopping)/.test(rest)) out.push({ who, kind: 'running', files: 0, detail: rest });
    else if (/^skipped/.test(rest) || /^stopped/.test(rest)) out.push({ who, kind: 'skipped', files: 0, detail: rest });
    else out.push({ who, kind: 'nothing', files: 0, detail: rest });
  }
  return out;
}
