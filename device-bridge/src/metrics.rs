//! Operational metrics at `GET /metrics`, unauthenticated like `/healthz`, in the
//! OpenMetrics text format (Prometheus' own scrape format, which it negotiates).
//!
//! Counters are bumped where things happen; gauges that mirror stored state
//! (devices by status, outbox depth, pending sends) are read at scrape time, so
//! they cannot drift from what is on disk.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use crate::db::Db;
use crate::engine::{DeviceStatus, Engine};
use crate::error::ApiError;
use crate::inbound::Refusal;
use crate::journal;
use crate::outbox::Outbox;

const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

pub struct Metrics {
    registry: Registry,
    sends: Counter,
    send_failures: Family<CodeLabels, Counter>,
    events_posted: Counter,
    event_post_failures: Counter,
    reconnects: Counter,
    inbound_refusals: Family<ReasonLabels, Counter>,
    dead_lettered: Family<StatusLabels, Counter>,
    devices: Family<StateLabels, Gauge>,
    outbox_depth: Gauge,
    dead_letters: Gauge,
    journal_pending: Gauge,
}

/// Stored state, read at scrape time.
pub struct Snapshot {
    pub devices: HashMap<DeviceStatus, u64>,
    pub outbox_depth: u64,
    pub dead_letters: u64,
    pub journal_pending: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wagate_bridge");
        Self {
            sends: registered(&mut registry, "sends", "Messages accepted from the worker and handed to the engine"),
            send_failures: registered(&mut registry, "send_failures", "Messages that failed, by error code"),
            events_posted: registered(&mut registry, "events_posted", "Events the worker acknowledged"),
            event_post_failures: registered(
                &mut registry,
                "event_post_failures",
                "Attempts to post an event to the worker that failed (each is retried)",
            ),
            reconnects: registered(
                &mut registry,
                "reconnects",
                "Linked devices that connected again without a new pairing (restart, network recovery)",
            ),
            inbound_refusals: registered(
                &mut registry,
                "inbound_refusals",
                "Inbound messages dropped at the bridge boundary, by the rule they broke",
            ),
            dead_lettered: registered(
                &mut registry,
                "events_dead_lettered",
                "Events the worker refused for good, by its HTTP status; kept as dead letters",
            ),
            devices: registered(&mut registry, "devices", "Devices by session state"),
            outbox_depth: registered(
                &mut registry,
                "outbox_depth",
                "Events stored and not yet acknowledged by the worker",
            ),
            dead_letters: registered(
                &mut registry,
                "dead_letters",
                "Events the worker refused for good, stored for the operator to list and replay",
            ),
            journal_pending: registered(
                &mut registry,
                "journal_pending",
                "Sends journaled whose outcome is not known yet",
            ),
            registry,
        }
    }
}

fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub fn sent(&self) {
        self.sends.inc();
    }

    pub fn send_failed(&self, code: &str) {
        self.send_failures.get_or_create(&CodeLabels { code: code.to_owned() }).inc();
    }

    pub fn event_posted(&self) {
        self.events_posted.inc();
    }

    pub fn event_post_failed(&self) {
        self.event_post_failures.inc();
    }

    pub fn reconnected(&self) {
        self.reconnects.inc();
    }

    pub fn inbound_refused(&self, refusal: Refusal) {
        self.inbound_refusals.get_or_create(&ReasonLabels { reason: refusal.as_str() }).inc();
    }

    pub fn dead_lettered(&self, status: u16) {
        self.dead_lettered.get_or_create(&StatusLabels { status }).inc();
    }

    pub fn render(&self, snapshot: &Snapshot) -> String {
        for status in DeviceStatus::ALL {
            let count = snapshot.devices.get(&status).copied().unwrap_or(0);
            self.devices.get_or_create(&StateLabels { state: status.as_str() }).set(gauge_value(count));
        }
        self.outbox_depth.set(gauge_value(snapshot.outbox_depth));
        self.dead_letters.set(gauge_value(snapshot.dead_letters));
        self.journal_pending.set(gauge_value(snapshot.journal_pending));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[derive(Clone)]
pub struct MetricsState {
    pub metrics: Arc<Metrics>,
    pub engine: Arc<dyn Engine>,
    pub outbox: Outbox,
    pub journal: Db,
}

pub fn router(state: MetricsState) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(state)
}

async fn scrape(State(state): State<MetricsState>) -> Result<impl IntoResponse, ApiError> {
    let snapshot = Snapshot {
        devices: state.engine.count_by_status().await.map_err(ApiError::internal)?,
        outbox_depth: state.outbox.depth().map_err(ApiError::internal)?,
        dead_letters: state.outbox.dead_letter_count().map_err(ApiError::internal)?,
        journal_pending: journal::pending_count(&state.journal.lock()).map_err(ApiError::internal)?,
    };
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], state.metrics.render(&snapshot)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_its_labels() {
        let metrics = Metrics::default();
        metrics.sent();
        metrics.sent();
        metrics.send_failed("not_on_whatsapp");
        metrics.event_posted();
        metrics.event_post_failed();
        metrics.reconnected();
        metrics.inbound_refused(Refusal::Coordinates);
        metrics.dead_lettered(422);
        let snapshot = Snapshot {
            devices: HashMap::from([(DeviceStatus::Connected, 3), (DeviceStatus::Pairing, 1)]),
            outbox_depth: 7,
            dead_letters: 1,
            journal_pending: 2,
        };
        let text = metrics.render(&snapshot);
        for line in [
            "wagate_bridge_sends_total 2",
            "wagate_bridge_send_failures_total{code=\"not_on_whatsapp\"} 1",
            "wagate_bridge_events_posted_total 1",
            "wagate_bridge_event_post_failures_total 1",
            "wagate_bridge_reconnects_total 1",
            "wagate_bridge_devices{state=\"connected\"} 3",
            "wagate_bridge_devices{state=\"pairing\"} 1",
            "wagate_bridge_devices{state=\"disconnected\"} 0",
            "wagate_bridge_outbox_depth 7",
            "wagate_bridge_dead_letters 1",
            "wagate_bridge_inbound_refusals_total{reason=\"coordinates\"} 1",
            "wagate_bridge_events_dead_lettered_total{status=\"422\"} 1",
            "wagate_bridge_journal_pending 2",
            "# TYPE wagate_bridge_sends counter",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
