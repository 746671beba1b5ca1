// The pvce HTTP API, seen from the browser. The session is the HttpOnly cookie
// set by POST /api/auth/login: no token is ever stored by this code.

import { t } from './i18n.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Called with no arguments when a request answers 401 (the session ended). */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

/** Called when a request answers 403 password_change_required (an admin's reset). */
let onPasswordChange = () => {};
export function setPasswordChangeHandler(f) { onPasswordChange = f; }

/**
 * Whether the server answered the last request: false after a network
 * failure or a gateway error (502-504), true again after any answer.
 */
let online = true;
const connListeners = new Set();
export function onConnectionChange(f) { connListeners.add(f); return () => connListeners.delete(f); }
export function isOnline() { return online; }
function setOnline(v) {
  if (v === online) return;
  online = v;
  for (const f of connListeners) f(v);
}

/**
 * Sends a request and returns the parsed JSON body (null for 204).
 * Throws ApiError with the server's `{error, message}` on failure.
 */
export async function api(method, path, body, { raw = false, contentType, quiet401 = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined && body !== null) {
    if (raw) {
      init.body = body;
      if (contentType) init.headers['Content-Type'] = contentType;
    } else {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    setOnline(false);
    throw new ApiError(0, 'network', t('error.network'));
  }
  setOnline(res.status < 502 || res.status > 504);
  return handle(res, quiet401);
}

async function handle(res, quiet401) {
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (res.ok) return data;
  if (res.status === 401 && !quiet401) onUnauthorized();
  const err = toError(res.status, data);
  if (err.code === 'password_change_required') onPasswordChange();
  throw err;
}

export function toError(status, data) {
  if (data && typeof data === 'object' && typeof data.message === 'string' && data.message) {
    return new ApiError(status, data.error || 'error', data.message);
  }
  if (status === 401) return new ApiError(401, 'unauthorized', t('error.session'));
  if (status === 404) return new ApiError(404, 'not_found', t('error.notFound'));
  return new ApiError(status, 'error', t('error.generic', { status }));
}

export const get = (p, o) => api('GET', p, undefined, o);
export const post = (p, b, o) => api('POST', p, b, o);
export const del = (p, o) => api('DELETE', p, undefined, o);

/**
 * Uploads `file` as the raw request body with progress reports
 * (fetch has no upload progress, XMLHttpRequest does).
 */
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.withCredentials = true;
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.upload.addEventListener('load', () => onProgress(file.size, file.size, true));
    xhr.addEventListener('load', () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else {
        if (xhr.status === 401) onUnauthorized();
        reject(toError(xhr.status, data));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network', t('error.network'))));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'aborted', 'aborted')));
    xhr.send(file);
  });
}
