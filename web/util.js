// Small helpers shared by the views. Every piece of text from the API reaches the page through
// textContent (never innerHTML): URLs and host names come from traffic on the machine.

/** Creates an element: h('a', {href: '#', class: 'x', dataset: {id: 1}, style: {left: '3%'}, onclick: f}, 'text', child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** An API error: the server's message, the HTTP status and (for 400s) the parameter. */
export class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

/**
 * The daemon answered 401: this browser's token cookie is missing or no longer the daemon's
 * (it was restarted with another token file). Says so once, on top of the page: the cookie is
 * HttpOnly, so only opening the URL with ?token= again can fix it.
 */
export function authLost() {
  document.body.dataset.auth = 'lost';
  if (document.getElementById('auth-banner')) return;
  document.body.prepend(
    h('div', { id: 'auth-banner', class: 'auth-banner', role: 'alert' },
      'The dashboard no longer accepts this browser: its token changed. Open the dashboard URL with ?token=TOKEN again ',
      '(the daemon prints it at start on a terminal; the token is in the file its start-up report names).'),
  );
}

export async function api(path, opts = {}) {
  const init = { headers: { Accept: 'application/json' }, ...opts };
  if (opts.json !== undefined) {
    init.method = init.method || 'POST';
    init.headers = { ...init.headers, 'Content-Type': 'application/json' };
    init.body = JSON.stringify(opts.json);
    delete init.json;
  }
  const res = await fetch(path, init);
  let body = null;
  try {
    body = await res.json();
  } catch (_) {
    body = null;
  }
  if (res.status === 401) authLost();
  if (!res.ok) {
    throw new ApiError(res.status, (body && body.error) || `${res.status} ${res.statusText}`, body && body.param);
  }
  return body;
}

/** 12.3 ms, 1.25 s; '–' for a phase that did not happen (-1 / null). */
export function fmtMs(v) {
  if (v === null || v === undefined || v < 0 || Number.isNaN(v)) return '–';
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  if (v >= 100) return `${v.toFixed(0)} ms`;
  return `${v.toFixed(2)} ms`;
}

/** Exact: always ms with two decimals (tooltips, timing tables). */
export function fmtMsExact(v) {
  if (v === null || v === undefined || v < 0 || Number.isNaN(v)) return '–';
  return `${v.toFixed(2)} ms`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(2)} MB`;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Local time of a unix-ms instant: 14:03:22.123 (with the date when it is not today). */
export function fmtTime(ms) {
  const d = new Date(ms);
  const now = new Date();
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  if (d.toDateString() === now.toDateString()) return t;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}`;
}

export function fmtDuration(s) {
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  if (d) return `${d}d ${hh}h ${mm}m`;
  if (hh) return `${hh}h ${mm}m ${ss}s`;
  if (mm) return `${mm}m ${ss}s`;
  return `${ss}s`;
}

/** CSS class of a status: s2xx, s3xx, s4xx, s5xx, serr. */
export function statusClass(status, error) {
  if (error || !status) return 'serr';
  return `s${Math.floor(status / 100)}xx`;
}

/** A status badge: "200", "301", or the error name. */
export function statusBadge(status, error) {
  return h('span', { class: `status ${statusClass(status, error)}`, title: error || '' }, status ? String(status) : error || 'no response');
}

/** The client as shown everywhere: "curl [1234]". */
export function clientLabel(name, tgid) {
  return h('span', { class: 'client' }, h('span', { class: 'client-name' }, name || '?'), h('span', { class: 'pid' }, ` [${tgid}]`));
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

export function errorBox(err) {
  return h('div', { class: 'error-box', role: 'alert' }, err instanceof Error ? err.message : String(err));
}

/** Key/value table. rows: [[label, value], ...]; a null value leaves the row out. */
export function kv(rows, cls = '') {
  return h(
    'table',
    { class: `kv ${cls}` },
    h('tbody', {}, rows.filter((r) => r && r[1] !== null && r[1] !== undefined && r[1] !== '').map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))),
  );
}

/** Parses "#/view/a/b?x=1" into {parts: ['view','a','b'], params: URLSearchParams}. */
export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean), params: new URLSearchParams(query || '') };
}
