// Health: probes attached and their variant, events per second, lost events, DB size, uptime.
// Refreshed every 2 s while shown.
import { h, api, clear, fmtBytes, fmtDuration, section, errorBox, kv } from '/assets/util.js';

function stat(label, value, key, warn = false) {
  return h('div', { class: `stat${warn ? ' warn' : ''}`, dataset: { stat: key } }, h('div', { class: 'stat-value' }, value), h('div', { class: 'stat-label' }, label));
}

function families(probes) {
  const by = new Map();
  for (const p of probes) {
    const k = `${p.family}\u0000${p.target || ''}`;
    if (!by.has(k)) by.set(k, { family: p.family, target: p.target, list: [] });
    by.get(k).list.push(p);
  }
  return [...by.values()].sort((a, b) => a.family.localeCompare(b.family) || String(a.target).localeCompare(String(b.target)));
}

// The stitcher's caps (README, "Bounded state"): what it holds, and how often a cap bit.
function capsHeld(held) {
  return `${held.open_pages ?? 0} open page loads (${held.open_page_requests ?? 0} requests, largest ${held.largest_open_page ?? 0}), ${held.connections ?? 0} connections, ${held.lookups ?? 0} lookups, ${fmtBytes(held.captured_bytes || 0)} captured, ${fmtBytes(held.in_flight_body_bytes || 0)} of bodies in flight`;
}

function capsHit(hit) {
  const bit = Object.entries(hit).filter(([, n]) => n > 0);
  if (!bit.length) return 'none';
  return h('span', { class: 'err', id: 'caps-hit' }, bit.map(([cap, n]) => `${cap} ${n}`).join(', '));
}

function draw(root, v) {
  const ev = v.events || {};
  const pipeline = v.pipeline || {};
  const hist = pipeline.history || {};
  const stitch = pipeline.stitcher || {};
  const probes = v.probes || [];
  const fams = families(probes);
  clear(root).append(
    h('div', { class: 'toolbar' }, h('h1', {}, 'Health'), h('span', { class: 'spacer' }), h('span', { class: 'muted' }, `tracer ${v.version || ''} · refreshed every 2 s`)),
    h(
      'div',
      { class: 'stats', id: 'health-stats' },
      stat('uptime', fmtDuration(v.uptime_s || 0), 'uptime'),
      stat('events / s', (v.events_per_s ?? 0).toFixed(1), 'events_per_s'),
      stat('events received', String(ev.received ?? 0), 'received'),
      stat('lost in kernel (ring buffer full)', String(v.lost_events ?? 0), 'lost', (v.lost_events || 0) > 0),
      stat('dropped in user space', String(v.dropped_events ?? 0), 'dropped', (v.dropped_events || 0) > 0),
      stat('malformed records', String(ev.malformed ?? 0), 'malformed', (ev.malformed || 0) > 0),
      stat('probes attached', `${v.probes_attached}/${v.probes_total}`, 'probes', v.probes_attached < v.probes_total),
      stat('database', fmtBytes(v.db_bytes || 0), 'db'),
      stat('page loads stored', String(hist.written ?? 0), 'stored'),
      stat('page loads dropped', String(hist.dropped ?? 0), 'pl_dropped', (hist.dropped || 0) > 0),
      stat('in progress', String((v.live || {}).in_progress ?? 0), 'in_progress'),
      stat('live viewers', String((v.live || {}).clients ?? 0), 'clients'),
    ),
    section(
      'Kernel and variant',
      kv([
        ['kprobes', v.kernel && v.kernel.kprobes ? 'available' : 'not available'],
        ['Variant chosen', v.kernel ? v.kernel.reason : '?'],
        ['Database', v.db_path],
        ['Stitcher', `${stitch.page_loads ?? 0} page loads, ${stitch.requests ?? 0} requests, ${stitch.unattributed_data ?? 0} unattributed data events`],
        ['Held now', capsHeld(stitch.held || {})],
        ['Caps hit', capsHit(stitch.caps_hit || {})],
        ['History writer', hist.last_error ? h('span', { class: 'err' }, hist.last_error) : `${hist.batches ?? 0} batches, ${hist.write_errors ?? 0} write errors`],
      ]),
    ),
    section(
      'Probes',
      h(
        'table',
        { class: 'grid', id: 'probe-table' },
        h('thead', {}, h('tr', {}, ['', 'Family', 'Attached', 'Variant', 'Target', 'Not attached'].map((t) => h('th', {}, t)))),
        h(
          'tbody',
          {},
          fams.map((f) => {
            const ok = f.list.filter((p) => p.attached).length;
            const variants = [...new Set(f.list.map((p) => p.variant))].join(' + ');
            const failed = f.list.filter((p) => !p.attached);
            return h(
              'tr',
              { class: ok === f.list.length ? '' : ok === 0 ? 'fail' : 'partial' },
              h('td', {}, h('span', { class: `dot ${ok === f.list.length ? 'ok' : ok === 0 ? 'bad' : 'part'}` })),
              h('td', {}, f.family),
              h('td', { class: 'num' }, `${ok}/${f.list.length}`),
              h('td', {}, variants),
              h('td', { class: 'mono' }, f.target || '–'),
              h('td', { class: 'small' }, failed.length ? failed.map((p) => h('div', {}, h('b', {}, p.point), ': ', p.error || '?')) : h('span', { class: 'muted' }, '–')),
            );
          }),
        ),
      ),
    ),
    section(
      'Events by kind',
      h(
        'div',
        { class: 'kinds' },
        Object.entries(ev.by_kind || {})
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => h('span', { class: 'kind' }, h('b', {}, String(n)), ' ', k)),
      ),
    ),
  );
}

export async function renderHealth(root) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try {
      const v = await api('/api/health');
      if (!stopped) draw(root, v);
    } catch (e) {
      if (!stopped) clear(root).append(errorBox(e));
    }
    if (!stopped) timer = setTimeout(tick, 2000);
  };
  await tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
