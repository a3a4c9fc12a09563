// The request waterfall of one page load, drawn like a browser's network panel.
//
// Times come from the stitched page load (CLOCK_MONOTONIC ns, HAR-style phase durations in
// ms, -1 when a phase did not happen). A request's bar starts at its start: the first request
// on a connection starts with its DNS lookup (then blocked = lookup end -> connect, TCP, TLS),
// and its send/wait/receive end at its last byte. Any time between the two groups (the
// client busy between handshake and request) is drawn as a thin "idle" line.
import { h, fmtMsExact, fmtBytes, statusBadge } from '/assets/util.js';

/** The phases in legend order, with the field of `timings` that holds them. */
export const PHASES = [
  { key: 'blocked', label: 'Blocked', long: 'Blocked (lookup done, connect not started)' },
  { key: 'dns', label: 'DNS', long: 'DNS lookup' },
  { key: 'tcp', label: 'Connect', long: 'Initial connection (TCP)' },
  { key: 'ssl', label: 'SSL/TLS', long: 'SSL/TLS handshake' },
  { key: 'send', label: 'Send', long: 'Request sent' },
  { key: 'wait', label: 'Wait (TTFB)', long: 'Waiting for server response (TTFB)' },
  { key: 'receive', label: 'Receive', long: 'Content download' },
];

/** A phase's duration in ms, or -1. `tcp` falls back to connect - ssl (HAR's connect holds ssl). */
export function phaseMs(t, key) {
  if (key === 'tcp') {
    if (t.tcp >= 0) return t.tcp;
    if (t.connect >= 0) return Math.max(0, t.connect - Math.max(0, t.ssl));
    return -1;
  }
  const v = t[key];
  return v === undefined || v === null ? -1 : v;
}

const NS = 1e6;

/** A request's total: the sum of its phases (HAR's `time`). */
export function requestTotal(r) {
  return PHASES.reduce((s, p) => s + Math.max(0, phaseMs(r.timings, p.key)), 0);
}

/** Bar segments of one request: [{key, start, ms}] in ms from the page's start. */
export function segments(page, r) {
  const t = r.timings;
  const out = [];
  let at = (r.started_ns - page.started_ns) / NS;
  for (const key of ['dns', 'blocked', 'tcp', 'ssl']) {
    const ms = phaseMs(t, key);
    if (ms >= 0) {
      out.push({ key, start: at, ms });
      at += ms;
    }
  }
  const back = ['send', 'wait', 'receive'].map((key) => ({ key, ms: phaseMs(t, key) })).filter((p) => p.ms >= 0);
  const backMs = back.reduce((s, p) => s + p.ms, 0);
  let backStart = (r.ended_ns - page.started_ns) / NS - backMs;
  if (backStart < at) backStart = at;
  if (backStart - at > 0.01) out.push({ key: 'idle', start: at, ms: backStart - at });
  at = backStart;
  for (const p of back) {
    out.push({ key: p.key, start: at, ms: p.ms });
    at += p.ms;
  }
  return out;
}

/** Tick spacing of about `target` ticks over `total` ms: 1, 2 or 5 x 10^k. */
function tickStep(total, target = 8) {
  const raw = Math.max(total, 0.001) / target;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

function tickLabel(v, step) {
  if (v >= 1000) return `${(v / 1000).toFixed(step >= 1000 ? 0 : step >= 100 ? 1 : 2)} s`;
  return `${v.toFixed(step >= 1 ? 0 : step >= 0.1 ? 1 : 2)} ms`;
}

export function legend() {
  return h(
    'div',
    { class: 'legend', 'aria-label': 'legend' },
    PHASES.map((p) => h('span', { class: 'legend-item', title: p.long }, h('span', { class: `swatch seg-${p.key}` }), p.label)),
    h('span', { class: 'legend-item', title: 'client busy between connection set-up and request' }, h('span', { class: 'swatch seg-idle' }), 'Idle'),
  );
}

/** The connection label of a request: "#2" plus "new"/"reused". */
function connCell(r) {
  if (r.connection === null || r.connection === undefined) return h('span', { class: 'muted' }, '–');
  return h(
    'span',
    { class: `conn-chip conn-c${r.connection % 8} ${r.new_connection ? 'conn-new' : 'conn-reused'}`, title: r.new_connection ? 'new connection' : 'connection reused' },
    `#${r.connection}`,
    h('span', { class: 'conn-kind' }, r.new_connection ? ' new' : ' reused'),
  );
}

function shortName(r) {
  const path = r.path || (r.url ? r.url.replace(/^[a-z]+:\/\/[^/]+/i, '') : '') || '/';
  const last = path.split('?')[0].split('/').filter(Boolean).pop();
  return last ? last + (path.includes('?') ? '?' + path.split('?')[1] : '') : path;
}

/** Timing rows for the tooltip and the detail panel. */
export function timingTable(page, r) {
  const t = r.timings;
  const startMs = (r.started_ns - page.started_ns) / NS;
  const total = requestTotal(r);
  return h(
    'table',
    { class: 'timing' },
    h(
      'tbody',
      {},
      h('tr', {}, h('th', {}, 'Started at'), h('td', { class: 'num', dataset: { field: 'start' } }, fmtMsExact(startMs))),
      PHASES.map((p) =>
        h(
          'tr',
          { class: phaseMs(t, p.key) < 0 ? 'absent' : '' },
          h('th', {}, h('span', { class: `swatch seg-${p.key}` }), p.long),
          h('td', { class: 'num', dataset: { phase: p.key } }, fmtMsExact(phaseMs(t, p.key))),
        ),
      ),
      h('tr', { class: 'total' }, h('th', {}, 'Total'), h('td', { class: 'num', dataset: { field: 'total' } }, fmtMsExact(total))),
    ),
  );
}

/**
 * Renders the waterfall table. `onSelect(index)` is called when a row is clicked; `tooltip` is
 * the shared floating element.
 */
export function waterfall(page, { onSelect, tooltip, selected } = {}) {
  const totalMs = Math.max((page.ended_ns - page.started_ns) / NS, 0.001);
  const pct = (ms) => `${Math.min(100, Math.max(0, (ms / totalMs) * 100)).toFixed(4)}%`;
  const step = tickStep(totalMs);
  const ticks = [];
  for (let v = 0; v <= totalMs + 1e-9; v += step) ticks.push(v);

  const axis = h(
    'div',
    { class: 'wf-axis' },
    ticks.map((v) => h('span', { class: `wf-tick${v / totalMs > 0.9 ? ' end' : ''}`, style: { left: pct(v) } }, h('span', { class: 'wf-tick-label' }, tickLabel(v, step)))),
  );
  const grid = () => h('div', { class: 'wf-grid' }, ticks.map((v) => h('span', { class: 'wf-gridline', style: { left: pct(v) } })));

  const rows = page.requests.map((r, i) => {
    const segs = segments(page, r);
    const track = h(
      'div',
      { class: 'wf-track' },
      grid(),
      segs.map((s) =>
        h('span', {
          class: `seg seg-${s.key}`,
          style: { left: pct(s.start), width: pct(s.ms) },
          dataset: { phase: s.key, ms: s.ms.toFixed(2), startMs: s.start.toFixed(2) },
        }),
      ),
      barLabel(segs, totalMs, pct, fmtMsExact(requestTotal(r))),
    );
    const tr = h(
      'tr',
      {
        class: `wf-row${r.error ? ' has-error' : ''}${selected === i ? ' selected' : ''}`,
        dataset: { index: i },
        tabIndex: 0,
        onclick: () => onSelect && onSelect(i),
        onkeydown: (e) => {
          if (e.key === 'Enter' && onSelect) onSelect(i);
        },
        onmousemove: (e) => showTip(tooltip, e, page, r),
        onmouseleave: () => hideTip(tooltip),
      },
      h('td', { class: 'num muted' }, String(i)),
      h('td', { class: 'name', title: r.url || '' }, h('div', { class: 'name-main' }, shortName(r)), h('div', { class: 'name-host muted' }, r.host || '')),
      h('td', {}, r.method || '–'),
      h('td', {}, statusBadge(r.status, r.error)),
      h('td', { class: 'muted' }, r.protocol || '–'),
      h('td', { class: 'muted type', title: r.content_type || '' }, (r.content_type || '–').split(';')[0]),
      h('td', { class: 'num' }, fmtBytes(r.response_bytes)),
      h('td', {}, connCell(r)),
      h('td', { class: 'num' }, fmtMsExact(requestTotal(r))),
      h('td', { class: 'wf-cell' }, track),
    );
    return tr;
  });

  return h(
    'div',
    { class: 'waterfall' },
    legend(),
    h(
      'table',
      { class: 'grid wf-table', id: 'waterfall' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { class: 'num' }, '#'),
          h('th', {}, 'Name'),
          h('th', {}, 'Method'),
          h('th', {}, 'Status'),
          h('th', {}, 'Protocol'),
          h('th', {}, 'Type'),
          h('th', { class: 'num' }, 'Size'),
          h('th', {}, 'Connection'),
          h('th', { class: 'num' }, 'Time'),
          h('th', { class: 'wf-cell' }, axis),
        ),
      ),
      h('tbody', {}, rows),
    ),
  );
}

/** The request's time next to its bar: after its end, or before its start when the bar ends near the right edge. */
function barLabel(segs, totalMs, pct, text) {
  const start = segs.length ? segs[0].start : 0;
  const end = segs.length ? segs[segs.length - 1].start + segs[segs.length - 1].ms : 0;
  if (end / totalMs > 0.8) return h('span', { class: 'wf-label before', style: { right: `calc(100% - ${pct(start)})` } }, text);
  return h('span', { class: 'wf-label', style: { left: pct(end) } }, text);
}

function showTip(tip, e, page, r) {
  if (!tip) return;
  tip.replaceChildren(
    h('div', { class: 'tip-title' }, r.url || r.host || 'request'),
    h('div', { class: 'tip-sub muted' }, `${r.method || ''} ${r.status || r.error || ''} · ${fmtBytes(r.response_bytes)} · ${r.new_connection ? 'new connection' : 'reused connection'}`),
    timingTable(page, r),
  );
  tip.hidden = false;
  const pad = 14;
  const w = tip.offsetWidth, ht = tip.offsetHeight;
  let x = e.clientX + pad, y = e.clientY + pad;
  if (x + w > window.innerWidth - 4) x = Math.max(4, e.clientX - w - pad);
  if (y + ht > window.innerHeight - 4) y = Math.max(4, e.clientY - ht - pad);
  tip.style.left = `${x}px`;
  tip.style.top = `${y}px`;
}

function hideTip(tip) {
  if (tip) tip.hidden = true;
}
