// Live: page loads of every process as they complete (Server-Sent Events from /api/live),
// newest first, with the ones still in progress on top.
import { h, api, clear, fmtMs, fmtBytes, fmtTime, statusBadge, clientLabel, errorBox } from '/assets/util.js';

const MAX_ROWS = 500;

/** One row of a page-load list (shared with the history view). */
export function summaryRow(s, { fresh = false, maxMs = 0 } = {}) {
  const bar = maxMs > 0 ? h('span', { class: 'total-bar', style: { width: `${Math.max(1, Math.min(60, (s.total_ms / maxMs) * 60)).toFixed(1)}px` } }) : null;
  return h(
    'tr',
    {
      class: `row-link${fresh ? ' fresh' : ''}`,
      dataset: { id: s.id, process: s.process, tgid: s.tgid },
      tabIndex: 0,
      onclick: () => (location.hash = `#/page/${s.id}`),
      onkeydown: (e) => {
        if (e.key === 'Enter') location.hash = `#/page/${s.id}`;
      },
    },
    h('td', { class: 'num muted time' }, fmtTime(s.started_at_ms)),
    h('td', {}, clientLabel(s.process, s.tgid)),
    h('td', { class: 'url', title: s.url || '' }, h('a', { href: `#/page/${s.id}` }, s.url || '(no URL)')),
    h('td', { dataset: { col: 'status' } }, statusBadge(s.status, s.error)),
    h('td', { class: 'num', dataset: { col: 'total' } }, h('div', { class: 'total-cell' }, bar, h('span', {}, fmtMs(s.total_ms)))),
    h('td', { class: 'num', dataset: { col: 'requests' } }, String(s.request_count)),
    h('td', { class: 'num', dataset: { col: 'bytes' } }, fmtBytes(s.bytes)),
  );
}

export const LIST_HEADERS = ['Started', 'Client', 'URL', 'Status', 'Total', 'Requests', 'Transferred'];

export async function renderLive(root, ctx) {
  const tbody = h('tbody', { id: 'live-rows' });
  const openBody = h('tbody', { id: 'live-open', class: 'open-rows' });
  const count = h('span', { class: 'muted', id: 'live-count' });
  const items = [];
  let maxMs = 0;
  let paused = false;
  const pauseBtn = h('button', { type: 'button', id: 'live-pause' }, 'Pause');
  const clearBtn = h('button', { type: 'button', id: 'live-clear' }, 'Clear');
  const filter = h('input', { type: 'search', id: 'live-filter', placeholder: 'Filter: URL or client', size: 30 });

  const matches = (s) => {
    const f = filter.value.trim().toLowerCase();
    return !f || (s.url || '').toLowerCase().includes(f) || (s.process || '').toLowerCase().includes(f) || String(s.tgid) === f;
  };
  const redraw = () => {
    const shown = items.filter(matches);
    maxMs = Math.max(0, ...shown.map((s) => s.total_ms));
    tbody.replaceChildren(...shown.map((s) => summaryRow(s, { maxMs })));
    if (!shown.length) tbody.append(h('tr', { class: 'empty' }, h('td', { colSpan: 7 }, items.length ? 'Nothing matches the filter.' : 'Waiting for page loads… (load a page with any client on this machine)')));
    count.textContent = `${items.length} page load${items.length === 1 ? '' : 's'}`;
  };
  const add = (s) => {
    if (items.some((x) => x.id === s.id)) return;
    items.unshift(s);
    if (items.length > MAX_ROWS) items.length = MAX_ROWS;
    if (paused) return;
    if (!matches(s)) return;
    const empty = tbody.querySelector('tr.empty');
    if (empty) empty.remove();
    if (s.total_ms > maxMs) {
      redraw();
      const row = tbody.querySelector(`tr[data-id="${s.id}"]`);
      if (row) row.classList.add('fresh');
      return;
    }
    tbody.prepend(summaryRow(s, { fresh: true, maxMs }));
    while (tbody.children.length > MAX_ROWS) tbody.lastChild.remove();
    count.textContent = `${items.length} page load${items.length === 1 ? '' : 's'}`;
  };
  const showOpen = (progress) => {
    openBody.replaceChildren(
      ...progress.open.map((o) =>
        h(
          'tr',
          { class: 'open-row', dataset: { tgid: o.tgid } },
          h('td', { class: 'num muted time' }, fmtTime(o.since_ms)),
          h('td', {}, clientLabel(o.comm, o.tgid)),
          h('td', { colSpan: 5 }, h('span', { class: 'spinner' }), ' page load in progress…'),
        ),
      ),
    );
  };

  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    pauseBtn.classList.toggle('active', paused);
    if (!paused) redraw();
  });
  clearBtn.addEventListener('click', () => {
    items.length = 0;
    redraw();
  });
  filter.addEventListener('input', redraw);

  clear(root).append(
    h(
      'div',
      { class: 'toolbar' },
      h('h1', {}, 'Live'),
      filter,
      pauseBtn,
      clearBtn,
      count,
      h('span', { class: 'spacer' }),
      h('span', { class: 'muted' }, 'Every process on this machine; click a row for its waterfall.'),
    ),
    h('table', { class: 'grid list', id: 'live-table' }, h('thead', {}, h('tr', {}, LIST_HEADERS.map((t) => h('th', { class: ['Total', 'Requests', 'Transferred'].includes(t) ? 'num' : '' }, t)))), openBody, tbody),
  );

  const onPage = (e) => add(e.detail);
  const onProgress = (e) => showOpen(e.detail);
  const onLagged = () => load();
  ctx.bus.addEventListener('page_load', onPage);
  ctx.bus.addEventListener('progress', onProgress);
  ctx.bus.addEventListener('lagged', onLagged);
  ctx.bus.addEventListener('reconnected', onLagged);
  showOpen(ctx.lastProgress || { open: [] });

  async function load() {
    try {
      const page = await api('/api/page-loads?limit=100');
      for (const s of page.items.slice().reverse()) if (!items.some((x) => x.id === s.id)) items.unshift(s);
      items.sort((a, b) => b.id - a.id);
      redraw();
    } catch (e) {
      root.append(errorBox(e));
    }
  }
  await load();

  return () => {
    ctx.bus.removeEventListener('page_load', onPage);
    ctx.bus.removeEventListener('progress', onProgress);
    ctx.bus.removeEventListener('lagged', onLagged);
    ctx.bus.removeEventListener('reconnected', onLagged);
  };
}
