//! The one fan-out: every sink of the pipeline hangs off it.
//!
//! | what | sinks |
//! | --- | --- |
//! | a kernel event, as read | the printer (`--print`) |
//! | the stitcher's open page loads (opened, active, closed) | the live hub (`progress` of `GET /api/live`) |
//! | a finished page load | the printer, the metrics, the OTLP exporter, the history writer |
//! | a stored page load's row (from the history writer, wired in [`super::run`]) | the live hub (`page_load` of `GET /api/live`) |
//!
//! None of them waits: the history writer and the OTLP exporter take page loads through
//! bounded queues (`try_send`, drops counted), the metrics and the live hub are updated in
//! place.
use std::sync::Arc;

use super::PrintMode;
use crate::{
    history::HistorySender,
    serve::{metrics::Metrics, otlp::OtlpSender, web::LiveHub},
    stitch::{model::PageLoad, progress::PageProgress},
    stream::{events::Event, printer},
};

pub(super) struct FanOut {
    pub(super) print: PrintMode,
    pub(super) metrics: Arc<Metrics>,
    pub(super) otlp: Option<OtlpSender>,
    pub(super) history: HistorySender,
    pub(super) live: Arc<LiveHub>,
}

impl FanOut {
    /// A kernel event as read: only the printer takes raw events.
    pub(super) fn event(&self, ev: &Event) {
        match self.print {
            PrintMode::Off => {}
            PrintMode::Text => println!("{}", printer::text_line(ev)),
            PrintMode::Json => println!("{}", printer::json_line(ev)),
        }
    }

    /// What happened to the stitcher's open page loads.
    pub(super) fn progress(&self, reports: &[PageProgress]) {
        self.live.page_progress(reports);
    }

    /// A finished page load.
    pub(super) fn page_load(&self, page: PageLoad) {
        if self.otlp.as_ref().is_some_and(|o| o.is_own(&page)) {
            // The exporter's own posts to the collector: not the user's traffic, and exporting
            // them would feed the exporter with its own retries.
            return;
        }
        match self.print {
            PrintMode::Off => {}
            PrintMode::Text => println!("{}", page.line()),
            PrintMode::Json => println!("{}", serde_json::json!({ "kind": "page_load", "page_load": page })),
        }
        self.metrics.observe(&page);
        if let Some(o) = &self.otlp {
            o.offer(&page);
        }
        self.history.send(page);
    }
}
