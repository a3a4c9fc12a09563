// History: stored page loads with filters (host, URL text, process, status class, time range),
// sorting and paging. The state lives in the URL (#/history?host=...&offset=50), so views can
// be bookmarked and the back button works.
import { h, api, clear, errorBox } from '/assets/util.js';
import { summaryRow, LIST_HEADERS } from '/assets/live.js';

const SORTS = { Started: 'started', Total: 'total_ms', Requests: 'request_count', Transferred: 'bytes' };
const FIELDS = ['host', 'url', 'process', 'status', 'since', 'until', 'sort', 'limit', 'offset'];

/** datetime-local value <-> unix ms (local time). */
function toLocalInput(ms) {
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export async function renderHistory(root, params) {
  const q = {};
  for (const f of FIELDS) if (params.get(f)) q[f] = params.get(f);
  const limit = Number(q.limit || 50);
  const offset = Number(q.offset || 0);
  const sort = q.sort || 'started';

  const go = (changes) => {
    const next = { ...q, ...changes };
    const sp = new URLSearchParams();
    for (const f of FIELDS) if (next[f] !== undefined && next[f] !== null && next[f] !== '') sp.set(f, next[f]);
    location.hash = `#/history?${sp.toString()}`;
  };

  const host = h('input', { type: 'text', name: 'host', placeholder: 'shop.test', value: q.host || '', size: 16 });
  const url = h('input', { type: 'search', name: 'url', placeholder: 'text in URL', value: q.url || '', size: 22 });
  const process = h('select', { name: 'process' }, h('option', { value: '' }, 'any process'));
  const status = h(
    'select',
    { name: 'status' },
    [['', 'any status'], ['2xx', '2xx'], ['3xx', '3xx'], ['4xx', '4xx'], ['5xx', '5xx'], ['error', 'failed']].map(([v, t]) => h('option', { value: v, selected: (q.status || '') === v }, t)),
  );
  const presets = [['', 'any time'], ['15m', 'last 15 min'], ['1h', 'last hour'], ['24h', 'last 24 h'], ['7d', 'last 7 days']];
  const isPreset = !q.since || presets.some(([v]) => v === q.since);
  const range = h('select', { name: 'range' }, presets.map(([v, t]) => h('option', { value: v, selected: isPreset && (q.since || '') === v }, t)), h('option', { value: 'custom', selected: !isPreset }, 'custom…'));
  const since = h('input', { type: 'datetime-local', name: 'since', value: !isPreset && /^\d+$/.test(q.since) ? toLocalInput(q.since) : '' });
  const until = h('input', { type: 'datetime-local', name: 'until', value: q.until && /^\d+$/.test(q.until) ? toLocalInput(q.until) : '' });
  const custom = h('span', { class: `custom-range${isPreset ? ' hidden' : ''}` }, since, ' – ', until);
  range.addEventListener('change', () => custom.classList.toggle('hidden', range.value !== 'custom'));

  const form = h(
    'form',
    { class: 'filters', id: 'history-filters' },
    h('label', {}, 'Host ', host),
    h('label', {}, 'URL ', url),
    h('label', {}, 'Process ', process),
    h('label', {}, 'Status ', status),
    h('label', {}, 'Time ', range),
    custom,
    h('button', { type: 'submit', class: 'primary' }, 'Apply'),
    h('button', { type: 'button', id: 'filters-reset' }, 'Reset'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const ms = (input) => (input.value ? String(new Date(input.value).getTime()) : '');
    go({
      host: host.value.trim(),
      url: url.value.trim(),
      process: process.value,
      status: status.value,
      since: range.value === 'custom' ? ms(since) : range.value,
      until: range.value === 'custom' ? ms(until) : '',
      offset: 0,
    });
  });
  form.querySelector('#filters-reset').addEventListener('click', () => (location.hash = '#/history'));

  const tbody = h('tbody', {}, h('tr', { class: 'empty' }, h('td', { colSpan: 7 }, 'Loading…')));
  const pager = h('div', { class: 'pager' });
  const headRow = h(
    'tr',
    {},
    LIST_HEADERS.map((t) => {
      const key = SORTS[t];
      const num = ['Total', 'Requests', 'Transferred'].includes(t);
      if (!key) return h('th', { class: num ? 'num' : '' }, t);
      const active = sort === key;
      return h(
        'th',
        { class: `${num ? 'num ' : ''}sortable${active ? ' sorted' : ''}`, title: `sort by ${t.toLowerCase()}, largest/newest first`, dataset: { sort: key }, onclick: () => go({ sort: key, offset: 0 }) },
        t,
        active ? ' ▼' : '',
      );
    }),
  );
  const status_ = h('div', { class: 'history-status' });
  clear(root).append(
    h('div', { class: 'toolbar' }, h('h1', {}, 'History'), h('span', { class: 'spacer' }), pager),
    form,
    status_,
    h('table', { class: 'grid list', id: 'history-table' }, h('thead', {}, headRow), tbody),
  );

  api('/api/processes')
    .then((list) => {
      for (const p of list) process.append(h('option', { value: p.name, selected: q.process === p.name }, `${p.name} (${p.page_loads})`));
      if (q.process && !list.some((p) => p.name === q.process)) process.append(h('option', { value: q.process, selected: true }, q.process));
    })
    .catch(() => {});

  const sp = new URLSearchParams();
  for (const f of FIELDS) if (q[f]) sp.set(f, q[f]);
  sp.set('limit', String(limit));
  sp.set('offset', String(offset));
  const t0 = performance.now();
  let res;
  try {
    res = await api(`/api/page-loads?${sp.toString()}`);
  } catch (e) {
    tbody.replaceChildren();
    status_.replaceChildren(errorBox(e));
    if (e.param) {
      const field = form.querySelector(`[name="${e.param}"]`) || (e.param === 'since' || e.param === 'until' ? range : null);
      if (field) field.classList.add('invalid');
    }
    return;
  }
  const took = performance.now() - t0;
  const maxMs = Math.max(0, ...res.items.map((s) => s.total_ms));
  tbody.replaceChildren(...res.items.map((s) => summaryRow(s, { maxMs })));
  if (!res.items.length) tbody.append(h('tr', { class: 'empty' }, h('td', { colSpan: 7 }, 'No page load matches.')));

  const first = res.total ? res.offset + 1 : 0;
  const last = res.offset + res.items.length;
  const sizes = h('select', { id: 'page-size', title: 'rows per page' }, [25, 50, 100, 200].map((n) => h('option', { value: n, selected: n === limit }, `${n} / page`)));
  sizes.addEventListener('change', () => go({ limit: sizes.value, offset: 0 }));
  pager.replaceChildren(
    h('span', { class: 'muted', id: 'history-range' }, `${first}–${last} of ${res.total}${res.total_capped ? '+' : ''} (${took.toFixed(0)} ms)`),
    h('button', { type: 'button', id: 'prev-page', disabled: offset === 0, onclick: () => go({ offset: Math.max(0, offset - limit) }) }, '‹ Previous'),
    h('button', { type: 'button', id: 'next-page', disabled: last >= res.total && !res.total_capped, onclick: () => go({ offset: offset + limit }) }, 'Next ›'),
    sizes,
  );
}
