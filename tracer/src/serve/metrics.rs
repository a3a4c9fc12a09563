//! Prometheus metrics of the page loads this machine made, for a fleet's Prometheus (the
//! OpenMetrics text format of the official `prometheus-client` crate). [`Metrics::encode`]
//! gives the text; the dashboard's router serves it as `GET /metrics`.
//!
//! Page loads are folded in as the stitcher delivers them ([`Metrics::observe`]: a few
//! histogram and counter updates, no I/O); the event, probe and pipeline counters are read
//! from the daemon's own atomics when Prometheus scrapes ([`RuntimeCounters`]).
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `tracer_{dns,connect,tls,wait,receive}_duration_seconds` | `host`, `client` | histograms of each request's HAR phase (`connect` is HAR's: TCP + TLS; `tls` is the `ssl` phase), observed when the phase happened |
//! | `tracer_page_load_duration_seconds` | `host`, `client` | histogram of page-load totals |
//! | `tracer_page_loads_total` | `host`, `client` | page loads |
//! | `tracer_requests_total` | `host`, `client`, `status_class` | requests: `1xx`..`5xx`, `failed` (an error, no status), `unknown` (no status seen, e.g. TLS seen only on the wire) |
//! | `tracer_requests_by_protocol_total` | `client`, `protocol` | requests by HTTP version: `http/1.1`, `h2`, `h3` (QUIC), `unknown` |
//! | `tracer_failures_total` | `client`, `phase`, `reason` | failed requests: phase `dns`, `connect`, `tls`, `wait`, `receive`; reason `ERR_NAME_NOT_RESOLVED` ... |
//! | `tracer_events_received_total`, `tracer_events_lost_total` | `kind` | ring-buffer records read, and lost in the kernel (ring buffer full), per probe kind |
//! | `tracer_events_malformed_total`, `tracer_events_dropped_total` | | records that did not decode; events dropped at the user-space queue |
//! | `tracer_probes_attached`, `tracer_probes_failed` | `family`, `variant` | attach points |
//! | `tracer_history_page_loads_{written,dropped}_total` | | the SQLite writer |
//! | `tracer_caps_hit_total` | `cap` | times a cap on the stitcher's state bit (`stitch/caps.rs`): `page_requests`, `page_age`, `open_pages`, `connections`, `lookups`, `captured_bytes` |
//! | `tracer_stitch_held` | `item` | what the stitcher holds now: `open_pages`, `open_page_requests`, `connections`, `lookups`, `captured_bytes`, `in_flight_body_bytes` |
//! | `tracer_otlp_*` | | the OpenTelemetry exporter (with `--otlp-endpoint`) |
//!
//! Label cardinality is bounded: `host` (the request's host; the page's first host for page
//! loads) and `client` get at most `max_hosts` / `max_clients` values. The slots go first to
//! the hosts and clients with the most requests in the stored history (read once at start-up,
//! [`top_labels`]), then to new ones as they are seen; everything else is `other`. A slot is
//! never given back during a run, because a series that stopped and restarted would read as
//! a counter reset.
use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::Histogram,
    },
    registry::{Registry, Unit},
};
use sqlx::SqlitePool;
use tracer_common::EventKind;

use crate::{
    history::{HistoryCounters, counts, store::request_host},
    serve::otlp::OtlpStats,
    probes::ProbeStatus,
    stitch::{
        StitchStats,
        model::{Cap, PageLoad, Request},
    },
    stream::StreamStats,
};

/// Content type of the OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bucket bounds in seconds: 0.5 ms to 60 s, for DNS on a LAN up to a slow page load.
pub const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The label given to hosts and clients beyond the bound.
pub const OTHER: &str = "other";
/// The label of a request or page load without a host.
pub const UNKNOWN: &str = "unknown";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Most distinct `host` label values.
    pub max_hosts: usize,
    /// Most distinct `client` label values.
    pub max_clients: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { max_hosts: 50, max_clients: 20 }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostClient {
    host: String,
    client: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    host: String,
    client: String,
    status_class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    client: String,
    protocol: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    client: String,
    phase: String,
    reason: String,
}

type Histograms = Family<HostClient, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// A bounded set of label values: the first `max` distinct values (after any preloaded ones)
/// keep their name, the rest are [`OTHER`].
#[derive(Debug)]
struct LabelSlots {
    max: usize,
    admitted: HashSet<String>,
}

impl LabelSlots {
    fn new(max: usize) -> Self {
        Self { max, admitted: HashSet::new() }
    }

    fn label(&mut self, value: Option<&str>) -> String {
        let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return UNKNOWN.into() };
        // Values are printed into the exposition (escaped by the encoder); bound their length
        // so that one odd Host header cannot make every scrape large.
        let v: String = v.chars().take(128).collect();
        if v == OTHER || v == UNKNOWN {
            return v;
        }
        if self.admitted.contains(&v) {
            return v;
        }
        if self.admitted.len() < self.max {
            self.admitted.insert(v.clone());
            return v;
        }
        OTHER.into()
    }
}

/// Everything `/metrics` shows. Cheap to update: the daemon calls [`observe`](Self::observe)
/// for every page load on its event loop.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    hosts: Mutex<LabelSlots>,
    clients: Mutex<LabelSlots>,
    reasons: Mutex<LabelSlots>,
    dns: Histograms,
    connect: Histograms,
    tls: Histograms,
    wait: Histograms,
    receive: Histograms,
    page_load: Histograms,
    page_loads: Family<HostClient, Counter>,
    requests: Family<RequestLabels, Counter>,
    by_protocol: Family<ProtocolLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    /// Counters read at scrape time.
    pub runtime: Arc<RuntimeCounters>,
}

impl Metrics {
    pub fn new(config: MetricsConfig, stats: Arc<StreamStats>) -> Self {
        let mut registry = Registry::default();
        let hist = || Histograms::new_with_constructor(histogram as fn() -> Histogram);
        let m = Self {
            registry: Registry::default(),
            hosts: Mutex::new(LabelSlots::new(config.max_hosts)),
            clients: Mutex::new(LabelSlots::new(config.max_clients)),
            // Reasons come from a fixed vocabulary (ERR_*); the bound only guards against a new one per errno.
            reasons: Mutex::new(LabelSlots::new(32)),
            dns: hist(),
            connect: hist(),
            tls: hist(),
            wait: hist(),
            receive: hist(),
            page_load: hist(),
            page_loads: Family::default(),
            requests: Family::default(),
            by_protocol: Family::default(),
            failures: Family::default(),
            runtime: Arc::new(RuntimeCounters::new(stats)),
        };
        let secs = || Unit::Seconds;
        registry.register_with_unit("tracer_dns_duration", "DNS lookup of requests that opened a connection (HAR dns)", secs(), m.dns.clone());
        registry.register_with_unit(
            "tracer_connect_duration",
            "Connection set-up of requests that opened a connection: TCP handshake plus TLS handshake (HAR connect)",
            secs(),
            m.connect.clone(),
        );
        registry.register_with_unit("tracer_tls_duration", "TLS handshake of requests that opened a TLS connection (HAR ssl)", secs(), m.tls.clone());
        registry.register_with_unit("tracer_wait_duration", "Request sent to the first response byte (HAR wait, TTFB)", secs(), m.wait.clone());
        registry.register_with_unit("tracer_receive_duration", "First to last response byte (HAR receive)", secs(), m.receive.clone());
        registry.register_with_unit("tracer_page_load_duration", "Page loads, first to last activity", secs(), m.page_load.clone());
        registry.register("tracer_page_loads", "Page loads", m.page_loads.clone());
        registry.register("tracer_requests", "Requests by status class (1xx-5xx, failed, unknown)", m.requests.clone());
        registry.register("tracer_requests_by_protocol", "Requests by HTTP version (http/1.1, h2, h3, unknown)", m.by_protocol.clone());
        registry.register("tracer_failures", "Failed requests by phase and reason", m.failures.clone());
        registry.register_collector(Box::new(m.runtime.clone()));
        Self { registry, ..m }
    }

    /// Gives label slots to these hosts and clients first (the busiest in the history).
    pub fn preload_labels(&self, hosts: &[String], clients: &[String]) {
        if let Ok(mut slots) = self.hosts.lock() {
            for h in hosts {
                slots.label(Some(h));
            }
        }
        if let Ok(mut slots) = self.clients.lock() {
            for c in clients {
                slots.label(Some(c));
            }
        }
    }

    fn host_label(&self, host: Option<&str>) -> String {
        let host = host.map(str::to_ascii_lowercase);
        self.hosts.lock().map(|mut s| s.label(host.as_deref())).unwrap_or_else(|_| OTHER.into())
    }

    fn client_label(&self, name: &str) -> String {
        self.clients.lock().map(|mut s| s.label(Some(name))).unwrap_or_else(|_| OTHER.into())
    }

    /// Folds in one finished page load.
    pub fn observe(&self, page: &PageLoad) {
        let client = self.client_label(&page.client.name);
        let page_labels = HostClient { host: self.host_label(crate::history::store::page_host(page).as_deref()), client: client.clone() };
        self.page_loads.get_or_create(&page_labels).inc();
        self.page_load.get_or_create(&page_labels).observe(page.total_ms() / 1000.0);
        for r in &page.requests {
            let labels = HostClient { host: self.host_label(request_host(r).as_deref()), client: client.clone() };
            let t = &r.timings;
            for (family, ms) in
                [(&self.dns, t.dns), (&self.connect, t.connect), (&self.tls, t.ssl), (&self.wait, t.wait), (&self.receive, t.receive)]
            {
                if ms >= 0.0 {
                    family.get_or_create(&labels).observe(ms / 1000.0);
                }
            }
            let status_class = status_class(r).to_string();
            self.requests
                .get_or_create(&RequestLabels { host: labels.host.clone(), client: client.clone(), status_class })
                .inc();
            let protocol = protocol_label(r.protocol.as_deref()).to_string();
            self.by_protocol.get_or_create(&ProtocolLabels { client: client.clone(), protocol }).inc();
            if let Some(err) = &r.error {
                let reason = self.reasons.lock().map(|mut s| s.label(Some(err.code.name()))).unwrap_or_else(|_| OTHER.into());
                let phase = err.phase.name().to_string();
                self.failures.get_or_create(&FailureLabels { client: client.clone(), phase, reason }).inc();
            }
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding the metrics: {e}");
        }
        out
    }
}

/// `1xx` .. `5xx`, `failed` (an error and no status) or `unknown`.
pub fn status_class(r: &Request) -> &'static str {
    match r.status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "unknown",
        None if r.error.is_some() => "failed",
        None => "unknown",
    }
}

/// A request's HTTP version as a label from a fixed set (ALPN's names).
pub fn protocol_label(protocol: Option<&str>) -> &'static str {
    match protocol {
        Some("HTTP/1.1" | "HTTP/1.0") => "http/1.1",
        Some("HTTP/2") => "h2",
        Some("HTTP/3") => "h3",
        _ => "unknown",
    }
}

/// Counters owned by other parts of the daemon, read when Prometheus scrapes.
#[derive(Debug)]
pub struct RuntimeCounters {
    stats: Arc<StreamStats>,
    /// Per kind: records the kernel could not write (the LOST map, read every second).
    kernel_lost: [AtomicU64; tracer_common::KIND_SLOTS as usize],
    /// (family, variant, attached, failed).
    probes: Mutex<Vec<(String, String, u64, u64)>>,
    history: Mutex<HistoryCounters>,
    /// The stitcher's counters (caps hit, what it holds), refreshed every second.
    stitch: Mutex<StitchStats>,
    otlp: OnceLock<Arc<OtlpStats>>,
}

impl RuntimeCounters {
    fn new(stats: Arc<StreamStats>) -> Self {
        Self {
            stats,
            kernel_lost: Default::default(),
            probes: Mutex::new(Vec::new()),
            history: Mutex::new(HistoryCounters::default()),
            stitch: Mutex::new(StitchStats::default()),
            otlp: OnceLock::new(),
        }
    }

    /// The LOST map, as [`crate::probes::Probes::lost_counts`] reads it.
    pub fn set_kernel_lost(&self, counts: &[(EventKind, u64)]) {
        for (k, n) in counts {
            if let Some(slot) = self.kernel_lost.get(*k as usize) {
                slot.store(*n, Relaxed);
            }
        }
    }

    /// The attach report (at start-up and after each library rescan).
    pub fn set_probes(&self, status: &[ProbeStatus]) {
        let mut by: std::collections::BTreeMap<(String, String), (u64, u64)> = Default::default();
        for s in status {
            let e = by.entry((s.family.clone(), s.variant.to_string())).or_default();
            if s.attached {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        if let Ok(mut p) = self.probes.lock() {
            *p = by.into_iter().map(|((f, v), (a, x))| (f, v, a, x)).collect();
        }
    }

    pub fn set_history(&self, counters: HistoryCounters) {
        if let Ok(mut h) = self.history.lock() {
            *h = counters;
        }
    }

    pub fn set_stitch(&self, stats: StitchStats) {
        if let Ok(mut s) = self.stitch.lock() {
            *s = stats;
        }
    }

    /// The exporter's counters, shown once it runs.
    pub fn set_otlp(&self, stats: Arc<OtlpStats>) {
        let _ = self.otlp.set(stats);
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    let m = enc.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

impl Collector for RuntimeCounters {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut m = enc.encode_descriptor("tracer_events_received", "Ring-buffer records read, per probe kind", None, MetricType::Counter)?;
            for k in EventKind::ALL {
                let v = self.stats.by_kind[k as usize].load(Relaxed);
                ConstCounter::new(v).encode(m.encode_family(&[("kind", k.name())])?)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "tracer_events_lost",
                "Records the kernel could not write because the ring buffer was full, per probe kind",
                None,
                MetricType::Counter,
            )?;
            for k in EventKind::ALL {
                let v = self.kernel_lost[k as usize].load(Relaxed);
                ConstCounter::new(v).encode(m.encode_family(&[("kind", k.name())])?)?;
            }
        }
        counter(&mut enc, "tracer_events_malformed", "Records that could not be decoded", self.stats.malformed.load(Relaxed))?;
        counter(&mut enc, "tracer_events_dropped", "Decoded events dropped at the user-space queue", self.stats.queue_dropped.load(Relaxed))?;
        let probes = self.probes.lock().map(|p| p.clone()).unwrap_or_default();
        for (name, help, pick) in [
            ("tracer_probes_attached", "Attach points attached, per probe family and variant", 2usize),
            ("tracer_probes_failed", "Attach points that could not be attached, per probe family and variant", 3),
        ] {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (family, variant, attached, failed) in &probes {
                let v = if pick == 2 { *attached } else { *failed } as i64;
                ConstGauge::new(v).encode(m.encode_family(&[("family", family.as_str()), ("variant", variant.as_str())])?)?;
            }
        }
        let h = self.history.lock().map(|h| h.clone()).unwrap_or_default();
        counter(&mut enc, "tracer_history_page_loads_written", "Page loads stored in the SQLite history", h.written)?;
        counter(&mut enc, "tracer_history_page_loads_dropped", "Page loads the history writer dropped (queue full or write failed)", h.dropped)?;
        let st = self.stitch.lock().map(|s| s.clone()).unwrap_or_default();
        {
            let mut m = enc.encode_descriptor(
                "tracer_caps_hit",
                "Times a cap on the stitcher's state bit: a page load closed as cut, or a connection or lookup forgotten",
                None,
                MetricType::Counter,
            )?;
            for cap in Cap::ALL {
                ConstCounter::new(st.caps_hit.get(cap)).encode(m.encode_family(&[("cap", cap.name())])?)?;
            }
        }
        {
            let mut m = enc.encode_descriptor("tracer_stitch_held", "What the stitcher holds in memory now", None, MetricType::Gauge)?;
            let held = &st.held;
            for (item, v) in [
                ("open_pages", held.open_pages),
                ("open_page_requests", held.open_page_requests),
                ("connections", held.connections),
                ("lookups", held.lookups),
                ("captured_bytes", held.captured_bytes),
                ("in_flight_body_bytes", held.in_flight_body_bytes),
            ] {
                ConstGauge::new(v as i64).encode(m.encode_family(&[("item", item)])?)?;
            }
        }
        if let Some(o) = self.otlp.get() {
            let s = o.snapshot();
            counter(&mut enc, "tracer_otlp_page_loads_exported", "Page loads the OTLP collector accepted", s.exported_page_loads)?;
            counter(&mut enc, "tracer_otlp_spans_exported", "Spans the OTLP collector accepted", s.exported_spans)?;
            {
                let mut m = enc.encode_descriptor(
                    "tracer_otlp_page_loads_dropped",
                    "Page loads not exported: queue_full (collector too slow or down), export_failed (retries exhausted or rejected)",
                    None,
                    MetricType::Counter,
                )?;
                ConstCounter::new(s.dropped_queue_full).encode(m.encode_family(&[("reason", "queue_full")])?)?;
                ConstCounter::new(s.dropped_export_failed).encode(m.encode_family(&[("reason", "export_failed")])?)?;
            }
            counter(&mut enc, "tracer_otlp_spans_rejected", "Spans the collector reported as rejected (partial success)", s.rejected_spans)?;
            counter(&mut enc, "tracer_otlp_export_attempts_failed", "Export requests that failed (each retry counts)", s.failed_attempts)?;
            counter(&mut enc, "tracer_otlp_own_page_loads_ignored", "The exporter's own connections to the collector, not reported", s.own_ignored)?;
            let g = ConstGauge::new(s.queued as i64);
            g.encode(enc.encode_descriptor("tracer_otlp_queue_length", "Page loads waiting for export", None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// The hosts (of requests) and clients with the most stored requests / page loads: they get
/// label slots first.
pub async fn top_labels(pool: &SqlitePool, config: MetricsConfig) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    use anyhow::Context as _;
    let hosts = counts::busiest_hosts(pool, config.max_hosts as i64).await.context("reading the busiest hosts from the history")?;
    let clients =
        counts::busiest_clients(pool, config.max_clients as i64).await.context("reading the busiest clients from the history")?;
    // Stored hosts may carry a port and capitals; the labels do not.
    let mut seen = HashSet::new();
    let hosts = hosts
        .into_iter()
        .map(|h| crate::history::store::strip_port(&h).to_ascii_lowercase())
        .filter(|h| seen.insert(h.clone()))
        .collect();
    Ok((hosts, clients))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{Code, Failure, Phase};
    use crate::stitch::sample::{MS, failed_dns_page, redirect_page};

    /// The value of the sample `name{labels}` (labels in the exposition's order), if present.
    fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
        let key = if labels.is_empty() { name.to_string() } else { format!("{name}{{{labels}}}") };
        text.lines().find_map(|l| l.strip_prefix(&key).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap()))
    }

    fn metrics(max_hosts: usize, max_clients: usize) -> Metrics {
        Metrics::new(MetricsConfig { max_hosts, max_clients }, Arc::new(StreamStats::default()))
    }

    #[test]
    fn histograms_hold_each_phase_that_happened() {
        let m = metrics(10, 10);
        let page = redirect_page(1000 * MS);
        m.observe(&page);
        m.observe(&page);
        let text = m.encode();
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with EOF");
        for (family, phase) in [("dns", 0), ("connect", 1), ("tls", 2), ("wait", 3), ("receive", 4)] {
            for host in ["shop.test", "www.shop.test"] {
                let values: Vec<f64> = page
                    .requests
                    .iter()
                    .filter(|r| r.host.as_deref() == Some(host))
                    .map(|r| [r.timings.dns, r.timings.connect, r.timings.ssl, r.timings.wait, r.timings.receive][phase])
                    .filter(|v| *v >= 0.0)
                    .collect();
                let labels = format!("host=\"{host}\",client=\"curl\"");
                let name = format!("tracer_{family}_duration_seconds");
                let count = sample(&text, &format!("{name}_count"), &labels);
                if values.is_empty() {
                    assert_eq!(count, None, "{family} {host}: no series without an observation");
                    continue;
                }
                assert_eq!(count, Some(2.0 * values.len() as f64), "{family} {host}\n{text}");
                let sum = sample(&text, &format!("{name}_sum"), &labels).unwrap();
                let want: f64 = 2.0 * values.iter().sum::<f64>() / 1000.0;
                assert!((sum - want).abs() < 1e-9, "{family} {host}: sum {sum} != {want}");
                // Cumulative buckets: +Inf holds every observation.
                let inf = sample(&text, &format!("{name}_bucket"), &format!("le=\"+Inf\",{labels}"))
                    .or_else(|| sample(&text, &format!("{name}_bucket"), &format!("{labels},le=\"+Inf\"")));
                assert_eq!(inf, count, "{family} {host}: +Inf bucket\n{text}");
            }
        }
        // The www host has no dns on its reused connection: 1 of 2 requests.
        assert_eq!(sample(&text, "tracer_dns_duration_seconds_count", "host=\"www.shop.test\",client=\"curl\""), Some(2.0));
        assert_eq!(sample(&text, "tracer_wait_duration_seconds_count", "host=\"www.shop.test\",client=\"curl\""), Some(4.0));
        let total = sample(&text, "tracer_page_load_duration_seconds_sum", "host=\"shop.test\",client=\"curl\"").unwrap();
        assert!((total - 2.0 * page.total_ms() / 1000.0).abs() < 1e-9);
        assert_eq!(sample(&text, "tracer_page_loads_total", "host=\"shop.test\",client=\"curl\""), Some(2.0));
        assert_eq!(sample(&text, "tracer_requests_total", "host=\"shop.test\",client=\"curl\",status_class=\"3xx\""), Some(2.0));
        assert_eq!(sample(&text, "tracer_requests_total", "host=\"www.shop.test\",client=\"curl\",status_class=\"2xx\""), Some(4.0));
    }

    #[test]
    fn requests_are_counted_by_protocol() {
        let m = metrics(10, 10);
        let mut page = redirect_page(0);
        let protocols: Vec<Option<String>> = page.requests.iter().map(|r| r.protocol.clone()).collect();
        page.requests[0].protocol = Some("HTTP/3".into());
        m.observe(&page);
        let text = m.encode();
        let count = |p: &str| sample(&text, "tracer_requests_by_protocol_total", &format!("client=\"curl\",protocol=\"{p}\""));
        assert_eq!(count("h3"), Some(1.0), "{text}");
        let h2 = protocols[1..].iter().filter(|p| p.as_deref() == Some("HTTP/2")).count() as f64;
        let h1 = protocols[1..].iter().filter(|p| p.as_deref() == Some("HTTP/1.1")).count() as f64;
        assert_eq!(count("h2").unwrap_or(0.0), h2);
        assert_eq!(count("http/1.1").unwrap_or(0.0), h1);
        assert_eq!(protocol_label(Some("HTTP/3")), "h3");
        assert_eq!(protocol_label(None), "unknown");
    }

    #[test]
    fn failures_are_counted_by_phase_and_reason() {
        let m = metrics(10, 10);
        m.observe(&failed_dns_page(0, "nope.shop.test"));
        let mut refused = failed_dns_page(0, "refused.shop.test");
        refused.requests[0].error = Some(Failure::new(Phase::Connect, Code::ConnectionFailed, "EPERM"));
        m.observe(&refused);
        let text = m.encode();
        assert_eq!(sample(&text, "tracer_failures_total", "client=\"curl\",phase=\"dns\",reason=\"ERR_NAME_NOT_RESOLVED\""), Some(1.0), "{text}");
        assert_eq!(sample(&text, "tracer_failures_total", "client=\"curl\",phase=\"connect\",reason=\"ERR_CONNECTION_FAILED\""), Some(1.0), "{text}");
        assert_eq!(sample(&text, "tracer_requests_total", "host=\"nope.shop.test\",client=\"curl\",status_class=\"failed\""), Some(1.0));
        assert_eq!(sample(&text, "tracer_wait_duration_seconds_count", "host=\"nope.shop.test\",client=\"curl\""), None);
    }

    #[test]
    fn host_and_client_labels_are_bounded() {
        let m = metrics(2, 1);
        m.preload_labels(&["busy.test".into()], &["firefox-esr".into()]);
        for host in ["a.test", "b.test", "c.test"] {
            m.observe(&failed_dns_page(0, host));
        }
        let text = m.encode();
        let hosts: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("tracer_page_loads_total{"))
            .filter_map(|l| l.split("host=\"").nth(1)?.split('"').next())
            .collect();
        // busy.test holds a slot from the history; a.test got the last one.
        assert_eq!(hosts, ["a.test", "other"].into_iter().collect(), "{text}");
        assert_eq!(sample(&text, "tracer_page_loads_total", "host=\"other\",client=\"other\""), Some(2.0), "{text}");
        assert_eq!(sample(&text, "tracer_page_loads_total", "host=\"a.test\",client=\"other\""), Some(1.0));
        // The counts add up whatever the labels.
        let all: f64 = text.lines().filter(|l| l.starts_with("tracer_page_loads_total{")).map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum();
        assert_eq!(all, 3.0);

        let mut slots = LabelSlots::new(1);
        assert_eq!(slots.label(None), UNKNOWN);
        assert_eq!(slots.label(Some("  ")), UNKNOWN);
        assert_eq!(slots.label(Some(&"x".repeat(500))).len(), 128);
        assert_eq!(slots.label(Some("y")), OTHER);
    }

    #[test]
    fn runtime_counters_are_read_at_scrape_time() {
        let stats = Arc::new(StreamStats::default());
        let m = Metrics::new(MetricsConfig::default(), stats.clone());
        stats.by_kind[EventKind::Dns as usize].store(7, Relaxed);
        stats.queue_dropped.store(3, Relaxed);
        m.runtime.set_kernel_lost(&[(EventKind::TlsData, 11)]);
        let probe = |family: &str, variant: &'static str, attached: bool| ProbeStatus {
            family: family.into(),
            point: "p".into(),
            target: None,
            variant,
            attached,
            error: None,
            scope: None,
        };
        m.runtime.set_probes(&[probe("dns", "tracepoint", true), probe("dns", "tracepoint", true), probe("tls_openssl", "uprobe", false)]);
        m.runtime.set_history(HistoryCounters { written: 5, dropped: 1, ..Default::default() });
        let text = m.encode();
        assert_eq!(sample(&text, "tracer_events_received_total", "kind=\"dns\""), Some(7.0), "{text}");
        assert_eq!(sample(&text, "tracer_events_lost_total", "kind=\"tls_data\""), Some(11.0), "{text}");
        assert_eq!(sample(&text, "tracer_events_dropped_total", ""), Some(3.0));
        assert_eq!(sample(&text, "tracer_probes_attached", "family=\"dns\",variant=\"tracepoint\""), Some(2.0));
        assert_eq!(sample(&text, "tracer_probes_failed", "family=\"tls_openssl\",variant=\"uprobe\""), Some(1.0));
        assert_eq!(sample(&text, "tracer_history_page_loads_written_total", ""), Some(5.0));
        assert!(!text.contains("tracer_otlp_"), "no exporter, no OTLP metrics");
        assert_eq!(sample(&text, "tracer_caps_hit_total", "cap=\"page_age\""), Some(0.0), "every cap, hit or not: {text}");
        let mut st = crate::stitch::StitchStats::default();
        st.caps_hit.page_requests = 4;
        st.held.open_pages = 2;
        m.runtime.set_stitch(st);
        let text = m.encode();
        assert_eq!(sample(&text, "tracer_caps_hit_total", "cap=\"page_requests\""), Some(4.0), "{text}");
        assert_eq!(sample(&text, "tracer_stitch_held", "item=\"open_pages\""), Some(2.0), "{text}");
        stats.by_kind[EventKind::Dns as usize].store(8, Relaxed);
        assert_eq!(sample(&m.encode(), "tracer_events_received_total", "kind=\"dns\""), Some(8.0));
    }

    #[tokio::test]
    async fn busiest_history_hosts_and_clients_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::history::db::open(&dir.path().join("t.db")).await.unwrap();
        let wall = crate::clock::WallOffset(0);
        let mut pages = vec![failed_dns_page(0, "rare.test")];
        for _ in 0..3 {
            pages.push(redirect_page(0));
        }
        let mut wget = failed_dns_page(0, "Busy.Test:8443");
        wget.client.name = "wget".into();
        pages.extend(std::iter::repeat_n(wget, 4));
        crate::history::insert_page_loads(&pool, &pages, wall).await.unwrap();
        let (hosts, clients) = top_labels(&pool, MetricsConfig { max_hosts: 2, max_clients: 1 }).await.unwrap();
        // www.shop.test: 2 requests a page load x 3; busy.test 4 (port and case folded).
        assert_eq!(hosts, vec!["www.shop.test".to_string(), "busy.test".to_string()]);
        assert_eq!(clients, vec!["wget".to_string()]);
    }
}
