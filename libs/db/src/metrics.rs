//! Per-operation transaction latency, registered into the process registry.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
    outcome: &'static str,
}

type LatencyFamily = Family<OpLabels, Histogram, fn() -> Histogram>;

/// Latency histogram of transactions by operation and outcome. Cheap to clone
/// (the family shares its storage).
#[derive(Clone)]
pub struct DbMetrics {
    latency: LatencyFamily,
}

fn histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

impl Default for DbMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl DbMetrics {
    pub fn new() -> Self {
        Self {
            latency: Family::new_with_constructor(histogram),
        }
    }

    /// Adds the metrics to `registry` (once per process).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "manifold_db_transaction_duration_seconds",
            "Duration of database transactions by operation",
            self.latency.clone(),
        );
    }

    pub(crate) fn observe(&self, op: &'static str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.latency
            .get_or_create(&OpLabels { op, outcome })
            .observe(elapsed.as_secs_f64());
    }
}
