//! Baselines: the reference fetches `tracer fetch --db DB URL` stores in the `baselines` table
//! ([`super::baselines`], migration 0002), and the comparison of a traced page load with the
//! latest one of the same URL.
//!
//! Both sides are compared over the document's redirect chain (the hops and the document, no
//! sub-resources), phase by phase, each phase summed over the chain. The fetcher's `connect`
//! is TCP alone and its `tls` separate; the traced side's HAR `connect` holds `ssl`, so its
//! `tcp` (or `connect - ssl`) is used.
use anyhow::Context as _;
use serde::Serialize;
use sqlx::SqlitePool;

use super::{StoredPageLoad, baselines::{self, StoredBaseline}};
use crate::{
    failure::{Failure, Phase},
    stitch::model::{PageLoad, Request},
};

/// The parts of a stored reference fetch the comparison needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    /// `baselines` rowid.
    pub id: i64,
    pub url: String,
    pub fetched_at_ms: Option<i64>,
    /// Page total (whole fetch).
    pub total_ms: Option<f64>,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The document's redirect chain, first request first.
    pub chain: Vec<ChainEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainEntry {
    pub method: Option<String>,
    pub url: Option<String>,
    pub status: Option<u16>,
    pub protocol: Option<String>,
    pub phases: Phases,
}

/// Phase durations in ms, None when the phase did not happen. `tcp` is the TCP handshake
/// alone and `tls` the TLS handshake alone (HAR's `connect` = tcp + tls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Phases {
    pub blocked: Option<f64>,
    pub dns: Option<f64>,
    pub tcp: Option<f64>,
    pub tls: Option<f64>,
    pub send: Option<f64>,
    pub wait: Option<f64>,
    pub receive: Option<f64>,
}

impl Phases {
    pub const NAMES: [&'static str; 7] = ["blocked", "dns", "tcp", "tls", "send", "wait", "receive"];

    fn values(&self) -> [Option<f64>; 7] {
        [self.blocked, self.dns, self.tcp, self.tls, self.send, self.wait, self.receive]
    }

    fn from_values(v: [Option<f64>; 7]) -> Self {
        Phases { blocked: v[0], dns: v[1], tcp: v[2], tls: v[3], send: v[4], wait: v[5], receive: v[6] }
    }

    /// Per phase, the sum over entries that had it (None when none had it).
    fn sum<'a>(all: impl Iterator<Item = &'a Phases>) -> Phases {
        let mut acc = [None::<f64>; 7];
        for p in all {
            for (a, v) in acc.iter_mut().zip(p.values()) {
                if let Some(v) = v {
                    *a = Some(a.unwrap_or(0.0) + v);
                }
            }
        }
        Phases::from_values(acc)
    }

    fn total(&self) -> Option<f64> {
        let v: Vec<f64> = self.values().into_iter().flatten().collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }

    /// From a traced request's HAR timings (-1 = did not happen; connect holds ssl).
    pub fn from_traced(r: &Request) -> Phases {
        let t = &r.timings;
        let opt = |v: f64| (v >= 0.0).then_some(v);
        let tcp = opt(t.tcp).or_else(|| match (opt(t.connect), opt(t.ssl)) {
            (Some(c), Some(s)) => Some((c - s).max(0.0)),
            (Some(c), None) => Some(c),
            _ => None,
        });
        Phases {
            blocked: opt(t.blocked),
            dns: opt(t.dns),
            tcp,
            tls: opt(t.ssl),
            send: opt(t.send),
            wait: opt(t.wait),
            receive: opt(t.receive),
        }
    }
}

impl Baseline {
    /// From a stored reference fetch: its document chain (redirect hops + document).
    pub fn from_fetch(b: &StoredBaseline) -> Baseline {
        let load = &b.load;
        let chain: Vec<ChainEntry> = load
            .document_chain()
            .into_iter()
            .map(|e| ChainEntry {
                method: Some(e.method.clone()),
                url: Some(e.url.clone()),
                status: e.status,
                protocol: e.http_version.clone(),
                phases: Phases {
                    blocked: e.timings.ms(Phase::Blocked),
                    dns: e.timings.ms(Phase::Dns),
                    tcp: e.timings.ms(Phase::Connect),
                    tls: e.timings.ms(Phase::Tls),
                    send: e.timings.ms(Phase::Send),
                    wait: e.timings.ms(Phase::Wait),
                    receive: e.timings.ms(Phase::Receive),
                },
            })
            .collect();
        Baseline {
            id: b.id,
            url: b.url.clone(),
            fetched_at_ms: Some(b.fetched_at_ms),
            total_ms: Some(b.total_ms),
            status: chain.last().and_then(|e| e.status),
            error: b.error.clone(),
            chain,
        }
    }
}

/// URLs that name the same page: as given, and with/without the root path's `/`.
fn url_variants(url: &str) -> Vec<String> {
    let mut v = vec![url.to_string()];
    if let Some((scheme, rest)) = url.split_once("://") {
        if !rest.contains('/') {
            v.push(format!("{scheme}://{rest}/"));
        } else if rest.ends_with('/') && rest.matches('/').count() == 1 {
            v.push(url.trim_end_matches('/').to_string());
        }
    }
    v
}

/// The newest baseline of `url` (table `baselines`), or None.
pub async fn latest_baseline(pool: &SqlitePool, url: &str) -> anyhow::Result<Option<Baseline>> {
    for candidate in url_variants(url) {
        let found = baselines::baselines_for(pool, &candidate, 1)
            .await
            .with_context(|| format!("reading the baselines of {candidate}"))?;
        if let Some(b) = found.first() {
            return Ok(Some(Baseline::from_fetch(b)));
        }
    }
    Ok(None)
}

/// One row of the comparison: a phase (or a total) traced vs baseline, in ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseDiff {
    pub phase: String,
    pub traced_ms: Option<f64>,
    pub baseline_ms: Option<f64>,
    /// traced - baseline, when both happened.
    pub diff_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub page_load_id: i64,
    pub url: String,
    pub baseline: Baseline,
    pub traced_status: Option<u16>,
    pub traced_error: Option<String>,
    pub traced_redirects: usize,
    pub baseline_redirects: usize,
    /// Phases summed over the document's redirect chain, then the chain's total and the
    /// page's total.
    pub rows: Vec<PhaseDiff>,
}

/// The document chain of a traced page load: `redirect_chain`, else the first request.
pub(crate) fn traced_chain(page: &PageLoad) -> Vec<&Request> {
    let chain: Vec<&Request> = page.redirect_chain.iter().filter_map(|&i| page.requests.get(i)).collect();
    if chain.is_empty() { page.requests.first().into_iter().collect() } else { chain }
}

/// Puts a traced page load next to a baseline.
pub fn compare(stored: &StoredPageLoad, baseline: Baseline) -> Comparison {
    let page = &stored.page;
    let chain = traced_chain(page);
    let traced_phases: Vec<Phases> = chain.iter().map(|r| Phases::from_traced(r)).collect();
    let traced = Phases::sum(traced_phases.iter());
    let base = Phases::sum(baseline.chain.iter().map(|e| &e.phases));
    let diff = |phase: &str, t: Option<f64>, b: Option<f64>| PhaseDiff {
        phase: phase.to_string(),
        traced_ms: t,
        baseline_ms: b,
        diff_ms: t.zip(b).map(|(t, b)| crate::clock::round_stored_ms(t - b)),
    };
    let mut rows: Vec<PhaseDiff> = Phases::NAMES
        .iter()
        .zip(traced.values().into_iter().zip(base.values()))
        .map(|(name, (t, b))| diff(name, t, b))
        .collect();
    rows.push(diff("document", traced.total(), base.total()));
    rows.push(diff("total", Some(page.total_ms()), baseline.total_ms));
    Comparison {
        page_load_id: stored.id,
        url: page.url.clone().unwrap_or_default(),
        traced_status: page.status,
        traced_error: page.error.as_ref().map(Failure::text),
        traced_redirects: chain.len().saturating_sub(1),
        baseline_redirects: baseline.chain.len().saturating_sub(1),
        baseline,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(url_variants("https://a.test"), ["https://a.test", "https://a.test/"]);
        assert_eq!(url_variants("https://a.test/"), ["https://a.test/", "https://a.test"]);
        assert_eq!(url_variants("https://a.test/x/"), ["https://a.test/x/"]);
    }

    #[test]
    fn phase_sums() {
        let a = Phases { dns: Some(1.0), tcp: Some(2.0), ..Default::default() };
        let b = Phases { dns: Some(0.5), wait: Some(3.0), ..Default::default() };
        let s = Phases::sum([a, b].iter());
        assert_eq!(s.dns, Some(1.5));
        assert_eq!(s.tcp, Some(2.0));
        assert_eq!(s.wait, Some(3.0));
        assert_eq!(s.tls, None);
        assert_eq!(s.total(), Some(6.5));
        assert_eq!(Phases::default().total(), None);
    }
}
