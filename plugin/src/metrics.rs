//! Counters and a histogram, defined on first use. Labels are encoded in the name as
//! `_<label>=<value>` suffixes, which Envoy's `stats_tags` and Kong's `label_patterns` turn
//! back into labels with the regexes `(_decision=([a-z]+))`, `(_reason=([a-z_]+))` and
//! `(_result=([a-z]+))` (README, "Metrics").

use crate::host;
use foldhash::fast::FixedState;
use proxy_wasm::types::MetricType;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub const DECISION_DURATION: &str = "chaperone_decision_duration_us";
pub const RECORDS_DROPPED: &str = "chaperone_records_dropped_total";

/// A metric as the plugin names it: every name is a constant, and the decision counter's
/// labels are two constants, so looking a metric up never formats its name; that happens once,
/// when the metric is defined.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum MetricKey {
    Named(&'static str),
    Decision {
        outcome: &'static str,
        reason: &'static str,
    },
}

impl MetricKey {
    fn name(self) -> String {
        match self {
            MetricKey::Named(name) => name.to_owned(),
            MetricKey::Decision { outcome, reason } => {
                format!("chaperone_decisions_total_decision={outcome}_reason={reason}")
            }
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    /// Metric ids; one the host refused is remembered as `None`. Looked up several times
    /// per request by constant names, never by a name from outside: a fixed fast hash.
    ids: RefCell<HashMap<MetricKey, Option<u32>, FixedState>>,
    /// Off on hosts without proxy-wasm metrics (see `HostKind::detect`).
    disabled: Cell<bool>,
}

impl Metrics {
    pub fn enable(&self, enabled: bool) {
        self.disabled.set(!enabled);
    }

    fn id(&self, metric_type: MetricType, key: MetricKey) -> Option<u32> {
        if self.disabled.get() {
            return None;
        }
        let mut ids = self.ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(&key) {
            return *id;
        }
        // First use: define it once (a name the host refuses stays refused).
        let id = host::define_metric(metric_type, &key.name()).ok();
        ids.insert(key, id);
        id
    }

    fn increment(&self, key: MetricKey, by: u64) {
        if by == 0 {
            return;
        }
        if let Some(id) = self.id(MetricType::Counter, key) {
            let _ = host::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    pub fn add(&self, name: &'static str, by: u64) {
        self.increment(MetricKey::Named(name), by);
    }

    pub fn count(&self, name: &'static str) {
        self.add(name, 1);
    }

    /// `chaperone_decisions_total` for one decision of `outcome` (`allow`, `deny`, `dryrun`)
    /// and reason code.
    pub fn count_decision(&self, outcome: &'static str, reason: &'static str) {
        self.increment(MetricKey::Decision { outcome, reason }, 1);
    }

    pub fn sample(&self, name: &'static str, value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, MetricKey::Named(name)) {
            let _ = host::record_metric(id, value);
        }
    }
}
