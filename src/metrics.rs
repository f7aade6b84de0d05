//! Prometheus metrics (SPEC §9), served as text at `GET /metrics`.
//!
//! Labels come from enums and configured source names, never from request data, so their number
//! stays bounded. Gauges that describe the store (`offboard_actions_waiting`,
//! `offboard_brake_engaged`, `offboard_reconcile_gaps`) are read from it at scrape time, so every replica reports the shared
//! truth.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::{ActionKind, Reason, Status};
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub source: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: String,
    pub status: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub op: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitingLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    wf_requests: Family<RequestLabels, Counter>,
    wf_seconds: Family<OpLabels, Histogram>,
    waiting: Family<WaitingLabels, Gauge>,
    lag: Histogram,
    brake: Gauge,
    last_delivery: Family<SourceLabels, Gauge>,
    concurrency_limit: Gauge<f64, std::sync::atomic::AtomicU64>,
    reconcile_gaps: Gauge,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let actions = Family::<ActionLabels, Counter>::default();
        let wf_requests = Family::<RequestLabels, Counter>::default();
        let wf_seconds = Family::<OpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds_buckets())
        });
        let waiting = Family::<WaitingLabels, Gauge>::default();
        let lag = Histogram::new([
            1.0,
            5.0,
            15.0,
            60.0,
            300.0,
            900.0,
            3600.0,
            4.0 * 3600.0,
            24.0 * 3600.0,
        ]);
        let brake = Gauge::default();
        let concurrency_limit = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "offboard_workfront_concurrency_limit",
            "The fleet's current limit of concurrent Workfront calls (adaptive)",
            concurrency_limit.clone(),
        );
        let last_delivery = Family::<SourceLabels, Gauge>::default();
        let reconcile_gaps = Gauge::default();
        registry.register(
            "offboard_reconcile_gaps",
            "Leavers still active in Workfront, in the last finished reconciliation of each origin (a request, or each source's schedule)",
            reconcile_gaps.clone(),
        );
        registry.register(
            "offboard_deliveries",
            "Deliveries received, by source and result",
            deliveries.clone(),
        );
        registry.register(
            "offboard_actions",
            "Actions that reached a terminal or held status",
            actions.clone(),
        );
        registry.register(
            "offboard_workfront_requests",
            "Workfront requests by operation and outcome",
            wf_requests.clone(),
        );
        registry.register(
            "offboard_workfront_request_seconds",
            "Workfront request duration",
            wf_seconds.clone(),
        );
        registry.register(
            "offboard_actions_waiting",
            "Actions not yet finished, by status",
            waiting.clone(),
        );
        registry.register(
            "offboard_effective_to_done_seconds",
            "Lag from the effective time to the write",
            lag.clone(),
        );
        registry.register(
            "offboard_brake_engaged",
            "1 while the mass-deactivation brake holds actions",
            brake.clone(),
        );
        registry.register(
            "offboard_last_delivery_timestamp_seconds",
            "Unix time of the last accepted delivery, by source",
            last_delivery.clone(),
        );
        Metrics {
            registry,
            deliveries,
            actions,
            wf_requests,
            wf_seconds,
            waiting,
            lag,
            brake,
            last_delivery,
            concurrency_limit,
            reconcile_gaps,
        }
    }

    pub fn concurrency_limit(&self, limit: f64) {
        self.concurrency_limit.set(limit);
    }

    pub fn delivery(&self, source: &str, result: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                source: source.into(),
                result: result.into(),
            })
            .inc();
        if result == "accepted" {
            let now = jiff::Timestamp::now().as_second();
            self.last_delivery
                .get_or_create(&SourceLabels {
                    source: source.into(),
                })
                .set(now);
        }
    }

    pub fn action(&self, kind: ActionKind, status: Status, reason: Reason) {
        let labels = ActionLabels {
            kind: kind.as_str().into(),
            status: status.as_str().into(),
            reason: reason.as_str().into(),
        };
        self.actions.get_or_create(&labels).inc();
    }

    pub fn workfront_request(&self, op: &str, outcome: &str, seconds: f64) {
        self.wf_requests
            .get_or_create(&RequestLabels {
                op: op.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.wf_seconds
            .get_or_create(&OpLabels { op: op.into() })
            .observe(seconds);
    }

    /// Seconds from the action's due time (its effective time, or receipt) to the write.
    pub fn effective_to_done(&self, seconds: f64) {
        self.lag.observe(seconds.max(0.0));
    }

    /// Refreshes the store gauges and renders the text exposition.
    pub async fn render(&self, store: &Store) -> String {
        if let Ok(counts) = store.waiting_counts().await {
            self.waiting.clear();
            for status in [
                Status::Scheduled,
                Status::Pending,
                Status::InProgress,
                Status::Held,
            ] {
                let n: i64 = counts
                    .iter()
                    .filter(|(s, _, _)| *s == status)
                    .map(|(_, _, n)| n)
                    .sum();
                self.waiting
                    .get_or_create(&WaitingLabels {
                        status: status.as_str().into(),
                    })
                    .set(n);
            }
        }
        if let Ok(engaged) = store.brake_engaged().await {
            self.brake.set(i64::from(engaged));
        }
        if let Ok(gaps) = store.reconcile_gaps().await {
            self.reconcile_gaps.set(gaps);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
