//! Serving what the pipeline produced: the dashboard and its JSON API ([`web`]), Prometheus
//! metrics ([`metrics`]) and the OpenTelemetry export ([`otlp`]). The last stage: these read
//! page loads (finished, in progress, stored) and the history; nothing earlier imports them.
pub mod metrics;
pub mod otlp;
pub mod web;
