// One page load: summary, waterfall with a detail panel, redirect chain, comparison with the
// reference fetch (and "fetch baseline now"), DNS lookups and connections with TLS.
import { h, api, clear, fmtMs, fmtMsExact, fmtBytes, fmtTime, statusBadge, clientLabel, section, errorBox, kv } from '/assets/util.js';
import { waterfall, timingTable, requestTotal } from '/assets/waterfall.js';

const NS = 1e6;

export async function renderPage(root, id, ctx) {
  clear(root).append(h('p', { class: 'muted' }, 'Loading page load ', String(id), '…'));
  let stored;
  try {
    stored = await api(`/api/page-loads/${encodeURIComponent(id)}`);
  } catch (e) {
    clear(root).append(h('a', { href: '#/history', class: 'back' }, '← History'), errorBox(e));
    return;
  }
  const page = stored.page;
  const state = { selected: page.redirect_chain.length ? page.redirect_chain[page.redirect_chain.length - 1] : 0 };

  const wfHolder = h('div', { id: 'waterfall-holder' });
  const detailHolder = h('div', { id: 'request-detail', class: 'request-detail' });
  const compareHolder = h('div', { id: 'compare' });

  const select = (i) => {
    state.selected = i;
    drawWaterfall();
    drawDetail();
  };
  const drawWaterfall = () => wfHolder.replaceChildren(waterfall(page, { onSelect: select, tooltip: ctx.tooltip, selected: state.selected }));
  const drawDetail = () => detailHolder.replaceChildren(requestDetail(page, state.selected));

  clear(root).append(
    header(stored),
    section('Waterfall', wfHolder, detailHolder),
    h('div', { class: 'two-col' }, section('Redirect chain', redirectChain(page)), section('Compared with the reference fetch', compareHolder)),
    section('DNS lookups', dnsTable(page)),
    section('Connections and TLS', connectionsTable(page), h('div', { id: 'certificates' })),
  );
  drawWaterfall();
  drawDetail();
  loadComparison(stored, compareHolder, root);
}

function header(stored) {
  const p = stored.page;
  const bytes = p.requests.reduce((s, r) => s + r.response_bytes, 0);
  const total = (p.ended_ns - p.started_ns) / NS;
  return h(
    'div',
    { class: 'page-header' },
    h('div', { class: 'crumbs' }, h('a', { href: '#/history', class: 'back' }, '← History'), h('span', { class: 'muted' }, ` · page load #${stored.id}`)),
    h('h1', { class: 'page-url', title: p.url || '' }, statusBadge(p.status, p.error), ' ', p.url || '(no URL)'),
    h(
      'div',
      { class: 'facts', id: 'page-facts' },
      fact('Client', clientLabel(p.client.name, p.client.tgid), p.client.exe || ''),
      fact('Started', fmtTime(stored.started_at_ms)),
      fact('Total', fmtMsExact(total), '', 'total'),
      fact('Requests', String(p.requests.length), '', 'requests'),
      fact('Connections', String(p.connections.length)),
      fact('Transferred', fmtBytes(bytes), `${bytes} bytes`, 'bytes'),
      p.error ? fact('Error', h('span', { class: 'err' }, p.error)) : null,
      p.cut ? fact('Cut', h('span', { class: 'cut' }, cutText(p.cut)), 'A cap closed this page load while its client was still busy: its next work is in the next page load', 'cut') : null,
      h('a', { class: 'button', href: `/api/page-loads/${stored.id}/har`, download: `page-load-${stored.id}.har` }, 'Download HAR'),
    ),
  );
}

// What stitch::model::PageCut::text says, for a page load a cap closed (stitch/caps.rs).
const CUTS = {
  page_requests: (n) => [`at ${n} requests, connections or lookups`, '--page-max-requests'],
  page_age: (n) => [`at ${n / 1000} s of age`, '--page-max-age'],
  open_pages: (n) => [`as the oldest of ${n} open page loads`, '--max-open-pages'],
  connections: (n) => [`as holder of the oldest of ${n} connections`, '--max-connections'],
  lookups: (n) => [`as holder of the oldest of ${n} DNS lookups`, '--max-lookups'],
  captured_bytes: (n) => [`as the oldest holder of captured bytes beyond ${n}`, '--max-captured-bytes'],
};

export function cutText(cut) {
  const [what, flag] = (CUTS[cut.cap] || ((n) => [`by ${cut.cap} (${n})`, '?']))(cut.limit);
  return `cut ${what} (${flag})`;
}

function fact(label, value, title = '', key = '') {
  return h('div', { class: 'fact', title, dataset: key ? { fact: key } : {} }, h('div', { class: 'fact-label' }, label), h('div', { class: 'fact-value' }, value));
}

function requestDetail(page, i) {
  const r = page.requests[i];
  if (!r) return h('p', { class: 'muted' }, 'Select a request.');
  const c = r.connection !== null && r.connection !== undefined ? page.connections[r.connection] : null;
  const d = r.dns !== null && r.dns !== undefined ? page.dns[r.dns] : null;
  const general = kv([
    ['URL', h('span', { class: 'mono wrap' }, r.url || '–')],
    ['Method', r.method || '–'],
    ['Status', statusBadge(r.status, r.error)],
    ['Protocol', r.protocol || '–'],
    ['Stream', r.stream_id !== null && r.stream_id !== undefined ? String(r.stream_id) : null],
    ['Redirects to', r.redirect_to ? h('span', { class: 'mono wrap' }, r.redirect_to) : null],
    ['Content type', r.content_type],
    ['Request bytes', `${r.request_bytes} B`],
    ['Response bytes', `${r.response_bytes} B (head ${r.response_header_bytes} B, body ${Math.max(0, r.response_bytes - r.response_header_bytes)} B)`],
    ['Process', `${r.comm} [${r.tgid}/${r.pid}]`],
    ['Connection', c ? `#${r.connection} ${c.src || '?'} → ${c.dst || '?'} (${r.new_connection ? 'new' : 'reused'}, ${c.requests} request${c.requests === 1 ? '' : 's'} on it)` : '–'],
    ['TLS', c && c.tls ? tlsSummary(c.tls) : null],
    ['QUIC', c && c.quic ? quicSummary(c.quic) : null],
    ['DNS', d ? `${d.name} → ${d.addresses.join(', ') || d.error || 'no address'}` : null],
    ['Error', r.error ? h('span', { class: 'err' }, r.error) : null],
  ]);
  return h(
    'div',
    { class: 'detail-grid', dataset: { index: i } },
    h('div', {}, h('h3', {}, `Request #${i}`), general),
    h('div', {}, h('h3', {}, 'Timing'), timingTable(page, r)),
  );
}

/** A QUIC connection's facts (HTTP/3): version, 0-RTT, Retry, datagrams, a fall back to TCP. */
function quicSummary(q) {
  return [q.version, q.zero_rtt && '0-RTT', q.retry && 'Retry', `${q.datagrams_sent} datagrams out, ${q.datagrams_received} in`,
    q.fell_back_to !== undefined && q.fell_back_to !== null && `fell back to TCP #${q.fell_back_to}`].filter(Boolean).join(' · ');
}

/** What the trace knows of a TLS session (the library, and version/cipher/ALPN/SNI when decoded). */
function tlsSummary(t) {
  return [t.version, t.cipher, t.alpn && `ALPN ${t.alpn}`, t.sni && `SNI ${t.sni}`, `via ${t.library}`].filter(Boolean).join(' · ');
}

function redirectChain(page) {
  const chain = page.redirect_chain.map((i) => ({ i, r: page.requests[i] })).filter((x) => x.r);
  if (!chain.length) return h('p', { class: 'muted' }, 'No document request.');
  if (chain.length === 1) {
    return h('div', { class: 'chain' }, h('p', { class: 'muted' }, 'No redirects.'), hop(chain[0]));
  }
  return h('ol', { class: 'chain', id: 'redirect-chain' }, chain.map((x) => h('li', {}, hop(x))));
}

function hop({ i, r }) {
  return h(
    'div',
    { class: 'hop' },
    statusBadge(r.status, r.error),
    ' ',
    h('span', { class: 'mono' }, `${r.method || 'GET'} ${r.url || ''}`),
    h('span', { class: 'muted' }, ` · request #${i} · ${fmtMs(requestTotal(r))}`),
    r.redirect_to ? h('div', { class: 'muted hop-to' }, '↳ Location: ', h('span', { class: 'mono' }, r.redirect_to)) : null,
  );
}

function dnsTable(page) {
  if (!page.dns.length) return h('p', { class: 'muted' }, 'No DNS lookup (addresses were cached or given).');
  return h(
    'table',
    { class: 'grid', id: 'dns-table' },
    h('thead', {}, h('tr', {}, ['Name', 'Types', 'Answer (CNAME chain)', 'Addresses', 'TTL', 'Server', 'Result', 'Time', 'Process'].map((t) => h('th', {}, t)))),
    h(
      'tbody',
      {},
      page.dns.map((d) => {
        const chain = d.cname_chain.length ? d.cname_chain : [d.name];
        const full = chain[0] && chain[0].toLowerCase() === d.name.toLowerCase() ? chain : [d.name, ...chain];
        return h(
          'tr',
          {},
          h('td', { class: 'mono' }, d.name),
          h('td', {}, d.qtypes.join(', ')),
          h('td', { class: 'mono cname' }, full.map((n, k) => [k ? h('span', { class: 'arrow' }, ' → ') : null, h('span', { class: k ? 'cname-target' : '' }, n)])),
          h('td', { class: 'mono' }, d.addresses.join(', ') || '–'),
          h('td', { class: 'num' }, d.min_ttl !== null && d.min_ttl !== undefined ? `${d.min_ttl} s` : '–'),
          h('td', { class: 'mono' }, d.server || '–'),
          h('td', {}, d.error ? h('span', { class: 'err' }, d.error) : d.rcode || '–'),
          h('td', { class: 'num' }, d.ended_ns ? fmtMsExact((d.ended_ns - d.started_ns) / NS) : '–'),
          h('td', {}, `${d.comm} [${d.tgid}]`),
        );
      }),
    ),
  );
}

function connectionsTable(page) {
  if (!page.connections.length) return h('p', { class: 'muted' }, 'No connection.');
  return h(
    'table',
    { class: 'grid', id: 'connections-table' },
    h('thead', {}, h('tr', {}, ['#', 'From → to', 'TCP', 'TLS', 'Cipher', 'ALPN', 'SNI', 'Handshake', 'Requests', 'Process', 'Result'].map((t) => h('th', {}, t)))),
    h(
      'tbody',
      {},
      page.connections.map((c, i) => {
        const tls = c.tls;
        const hs = tls && tls.handshake_start_ns && tls.handshake_end_ns ? (tls.handshake_end_ns - tls.handshake_start_ns) / NS : null;
        return h(
          'tr',
          {},
          h('td', {}, h('span', { class: `conn-chip conn-c${i % 8}` }, `#${i}`)),
          h('td', { class: 'mono' }, `${c.src || '?'} → ${c.dst || '?'}`),
          h('td', { class: 'num' }, c.established_ns ? fmtMsExact((c.established_ns - c.connect_start_ns) / NS) : '–'),
          h('td', {}, tls ? [tls.version || '', h('span', { class: 'muted' }, `${tls.version ? ' ' : ''}${tls.library}`)] : h('span', { class: 'muted' }, 'none')),
          h('td', { class: 'mono' }, tls ? tls.cipher || '–' : '–'),
          h('td', {}, tls ? tls.alpn || '–' : '–'),
          h('td', { class: 'mono' }, tls ? tls.sni || '–' : '–'),
          h('td', { class: 'num', title: tls && tls.estimated ? 'handshake end estimated from the first write' : '' }, hs !== null ? fmtMsExact(hs) + (tls.estimated ? ' ~' : '') : '–'),
          h('td', { class: 'num' }, c.requests > 1 ? h('span', { class: 'reuse' }, `${c.requests} (reused)`) : String(c.requests)),
          h('td', {}, `${c.comm} [${c.tgid}/${c.pid}]`),
          h('td', {}, c.error ? h('span', { class: 'err' }, c.error) : 'ok'),
        );
      }),
    ),
  );
}

async function loadComparison(stored, holder, root) {
  holder.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let cmp;
  try {
    cmp = await api(`/api/page-loads/${stored.id}/compare`);
  } catch (e) {
    holder.replaceChildren(errorBox(e));
    return;
  }
  const url = stored.page.url;
  const status = h('span', { class: 'muted', id: 'fetch-status' });
  const insecure = h('input', { type: 'checkbox', id: 'fetch-insecure' });
  const button = h('button', { type: 'button', id: 'fetch-baseline', disabled: !url }, 'Fetch baseline now');
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.textContent = `fetching ${url} …`;
    status.className = 'muted busy';
    try {
      const res = await api('/api/fetch', { json: { url, insecure: insecure.checked } });
      status.textContent = `baseline #${res.baseline_id} stored (${fmtMs(res.load.total_ms)}${res.baseline.error ? ', ' + res.baseline.error : ''})`;
      status.className = 'ok';
      await loadComparison(stored, holder, root);
    } catch (e) {
      status.textContent = e.message;
      status.className = 'err';
      button.disabled = false;
    }
  });
  const actions = h('div', { class: 'actions' }, button, h('label', { class: 'check' }, insecure, ' ignore certificate errors'), status);

  const certs = root.querySelector('#certificates');
  if (certs) certs.replaceChildren(certificates(cmp.baseline_tls || [], stored.page));

  if (!cmp.comparison) {
    holder.replaceChildren(h('p', { class: 'muted', id: 'no-baseline' }, url ? `No reference fetch of ${url} yet.` : 'This page load has no URL to fetch.'), actions);
    return;
  }
  holder.replaceChildren(comparisonTable(cmp.comparison), actions);
}

function comparisonTable(c) {
  const b = c.baseline;
  const rows = c.rows;
  const max = Math.max(0.001, ...rows.filter((r) => r.phase !== 'total' && r.phase !== 'document').flatMap((r) => [r.traced_ms || 0, r.baseline_ms || 0]));
  const label = { tcp: 'connect', tls: 'ssl', document: 'document (sum)', total: 'page total' };
  const colour = { tcp: 'tcp', tls: 'ssl' };
  return h(
    'div',
    { class: 'compare' },
    h(
      'p',
      { class: 'muted' },
      `Baseline #${b.id}, fetched ${b.fetched_at_ms ? fmtTime(b.fetched_at_ms) : '?'} · status ${b.status || b.error || '–'} · redirects: traced ${c.traced_redirects}, baseline ${c.baseline_redirects}. Phases summed over the document's redirect chain.`,
    ),
    h(
      'table',
      { class: 'grid compare-table', id: 'compare-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Phase'), h('th', { class: 'num' }, 'Traced'), h('th', { class: 'num' }, 'Baseline'), h('th', { class: 'num' }, 'Difference'), h('th', { class: 'bars-col' }, 'traced / baseline'))),
      h(
        'tbody',
        {},
        rows.map((r) => {
          const d = r.diff_ms;
          const base = r.baseline_ms;
          // Highlighted: at least 1 ms and 25 % apart.
          const big = d !== null && Math.abs(d) >= 1 && base !== null && Math.abs(d) >= 0.25 * Math.max(base, 0.001);
          const cls = d === null ? '' : big ? (d > 0 ? 'slower' : 'faster') : '';
          const bars = r.phase === 'total' || r.phase === 'document'
            ? null
            : h(
                'div',
                { class: 'cmp-bars' },
                h('span', { class: `cmp-bar seg-${colour[r.phase] || r.phase}`, style: { width: `${((r.traced_ms || 0) / max) * 100}%` } }),
                h('span', { class: `cmp-bar base seg-${colour[r.phase] || r.phase}`, style: { width: `${((r.baseline_ms || 0) / max) * 100}%` } }),
              );
          return h(
            'tr',
            { class: `${cls} ${r.phase === 'total' || r.phase === 'document' ? 'sum' : ''}`, dataset: { phase: r.phase } },
            h('th', {}, label[r.phase] || r.phase),
            h('td', { class: 'num' }, fmtMsExact(r.traced_ms ?? -1)),
            h('td', { class: 'num' }, fmtMsExact(r.baseline_ms ?? -1)),
            h('td', { class: 'num diff' }, d === null ? '–' : `${d > 0 ? '+' : ''}${d.toFixed(2)} ms`),
            h('td', { class: 'bars-col' }, bars),
          );
        }),
      ),
    ),
  );
}

function certificates(tls, page) {
  if (!tls.length) {
    const anyTls = page.connections.some((c) => c.tls);
    return anyTls ? h('p', { class: 'muted' }, 'Certificates: the kernel-side trace sees the handshake, not the certificate; fetch a baseline to see the chain the server presents.') : null;
  }
  return h(
    'div',
    { class: 'certs' },
    h('h3', {}, 'Certificates (from the reference fetch)'),
    tls.map((t) =>
      h(
        'div',
        { class: 'cert-block' },
        h('div', { class: 'cert-head' }, h('b', {}, t.host), ` · ${t.version || '?'} · ${t.cipher || '?'} · ALPN ${t.alpn || '–'} · SNI ${t.sni || '–'} · handshake ${fmtMsExact(t.handshake_ms)} · ${t.verified ? 'verified' : 'not verified'}`),
        (t.certificates || []).map((c, k) =>
          kv(
            [
              [k === 0 ? 'Leaf' : `Chain ${k}`, h('span', { class: 'mono' }, c.subject)],
              ['Issuer', h('span', { class: 'mono' }, c.issuer)],
              ['Valid', `${c.not_before} → ${c.not_after}`],
              ['Names', c.subject_alt_names.join(', ')],
              ['Serial', h('span', { class: 'mono' }, c.serial)],
            ],
            'cert',
          ),
        ),
      ),
    ),
  );
}
