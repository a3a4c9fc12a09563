// The dashboard's entry point: the live connection (one EventSource for every view), the
// in-progress indicator in the top bar, and the hash router (#/live, #/history?...,
// #/page/ID, #/health).
import { h, clear, parseHash, authLost } from '/assets/util.js';
import { renderLive } from '/assets/live.js';
import { renderHistory } from '/assets/history.js';
import { renderPage } from '/assets/page.js';
import { renderHealth } from '/assets/health.js';

const ctx = {
  bus: new EventTarget(),
  lastProgress: { open: [] },
  tooltip: document.getElementById('tooltip'),
};

// --- live connection ------------------------------------------------------------------------
const connDot = document.getElementById('conn');
const progressEl = document.getElementById('progress');

function setConn(state, text) {
  connDot.className = `conn ${state}`;
  connDot.title = text;
  connDot.dataset.state = state;
}

function showProgress(p) {
  const open = p.open || [];
  progressEl.dataset.count = String(open.length);
  progressEl.classList.toggle('active', open.length > 0);
  if (!open.length) {
    progressEl.replaceChildren(h('span', { class: 'muted' }, 'idle'));
    progressEl.title = 'no page load in progress';
    return;
  }
  const names = open.map((o) => `${o.comm} [${o.tgid}]`);
  progressEl.replaceChildren(h('span', { class: 'spinner' }), ` ${open.length} in progress: `, h('span', { class: 'names' }, names.slice(0, 3).join(', ') + (names.length > 3 ? ' …' : '')));
  progressEl.title = names.join('\n');
}

let everConnected = false;
function connect() {
  const es = new EventSource('/api/live');
  es.addEventListener('open', () => {
    setConn('up', 'live: connected');
    if (everConnected) ctx.bus.dispatchEvent(new CustomEvent('reconnected'));
    everConnected = true;
  });
  es.addEventListener('error', () => {
    setConn(es.readyState === EventSource.CLOSED ? 'down' : 'retry', 'live: reconnecting…');
    // An EventSource does not tell why it failed: a 401 closes it for good.
    if (es.readyState === EventSource.CLOSED) fetch('/api/health').then((r) => r.status === 401 && authLost(), () => {});
  });
  es.addEventListener('page_load', (e) => ctx.bus.dispatchEvent(new CustomEvent('page_load', { detail: JSON.parse(e.data) })));
  es.addEventListener('progress', (e) => {
    ctx.lastProgress = JSON.parse(e.data);
    showProgress(ctx.lastProgress);
    ctx.bus.dispatchEvent(new CustomEvent('progress', { detail: ctx.lastProgress }));
  });
  es.addEventListener('lagged', () => ctx.bus.dispatchEvent(new CustomEvent('lagged')));
}

// --- router -------------------------------------------------------------------------------
const view = document.getElementById('view');
let cleanup = null;
let generation = 0;

async function route() {
  const gen = ++generation;
  if (cleanup) {
    try {
      cleanup();
    } catch (_) {}
    cleanup = null;
  }
  if (ctx.tooltip) ctx.tooltip.hidden = true;
  const { parts, params } = parseHash();
  const name = parts[0] || 'live';
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.nav === (name === 'page' ? 'history' : name));
  const root = h('div', { class: `view view-${name}` });
  clear(view).append(root);
  let done;
  if (name === 'live') done = await renderLive(root, ctx);
  else if (name === 'history') done = await renderHistory(root, params);
  else if (name === 'page' && parts[1]) done = await renderPage(root, parts[1], ctx);
  else if (name === 'health') done = await renderHealth(root);
  else root.append(h('p', {}, 'No such view. ', h('a', { href: '#/live' }, 'Go to Live')));
  if (gen !== generation) {
    if (typeof done === 'function') done();
    return;
  }
  cleanup = typeof done === 'function' ? done : null;
  document.title = `tracer · ${name === 'page' ? 'page load ' + parts[1] : name}`;
  document.body.dataset.view = name;
  document.body.dataset.ready = String(gen);
}

window.addEventListener('hashchange', route);
setConn('retry', 'live: connecting…');
showProgress(ctx.lastProgress);
connect();
route();
