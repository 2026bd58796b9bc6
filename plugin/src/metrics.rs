//! Counters and a histogram, defined on first use. Labels are encoded in the name as
//! `_<label>=<value>` suffixes, which Envoy's `stats_tags` and Kong's `label_patterns` turn
//! back into labels with the regexes `(_decision=([a-z]+))`, `(_reason=([a-z_]+))` and
//! `(_result=([a-z]+))` (README, "Metrics").

use crate::host;
use proxy_wasm::types::MetricType;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub const DECISION_DURATION: &str = "chaperone_decision_duration_us";
pub const RECORDS_DROPPED: &str = "chaperone_records_dropped_total";

#[derive(Default)]
pub struct Metrics {
    /// Metric ids by name; a name the host refused is remembered as `None`.
    ids: RefCell<HashMap<String, Option<u32>>>,
    /// The decision counter's ids by outcome and reason code, so that counting a decision
    /// formats its name only the first time.
    decision_ids: RefCell<HashMap<(&'static str, &'static str), Option<u32>>>,
    /// Off on hosts without proxy-wasm metrics (see `HostKind::detect`).
    disabled: Cell<bool>,
}

impl Metrics {
    pub fn enable(&self, enabled: bool) {
        self.disabled.set(!enabled);
    }

    fn id(&self, metric_type: MetricType, name: &str) -> Option<u32> {
        if self.disabled.get() {
            return None;
        }
        let mut ids = self.ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(name) {
            return *id;
        }
        // First use: define it once (a name the host refuses stays refused).
        let id = host::define_metric(metric_type, name).ok();
        ids.insert(name.to_owned(), id);
        id
    }

    pub fn add(&self, name: &str, by: u64) {
        if by == 0 {
            return;
        }
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = host::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    pub fn count(&self, name: &str) {
        self.add(name, 1);
    }

    /// `chaperone_decisions_total` for one decision of `outcome` (`allow`, `deny`, `dryrun`)
    /// and reason code.
    pub fn count_decision(&self, outcome: &'static str, reason: &'static str) {
        if self.disabled.get() {
            return;
        }
        let Ok(mut known) = self.decision_ids.try_borrow_mut() else {
            return;
        };
        let id = *known.entry((outcome, reason)).or_insert_with(|| {
            self.id(
                MetricType::Counter,
                &format!("chaperone_decisions_total_decision={outcome}_reason={reason}"),
            )
        });
        if let Some(id) = id {
            let _ = host::increment_metric(id, 1);
        }
    }

    pub fn sample(&self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, name) {
            let _ = host::record_metric(id, value);
        }
    }
}
