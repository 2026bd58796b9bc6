//! Counters and a histogram, defined on first use. Labels are encoded in the name as
//! `_<label>=<value>` suffixes, which Envoy's `stats_tags` and Kong's `label_patterns` turn
//! back into labels with the regexes `(_decision=([a-z]+))`, `(_reason=([a-z_]+))` and
//! `(_result=([a-z]+))` (README, "Metrics").

use crate::host;
use chaperone_core::reason::Reason;
use foldhash::fast::FixedState;
use proxy_wasm::types::MetricType;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub const DECISION_DURATION: &str = "chaperone_decision_duration_us";
pub const RECORDS_DROPPED: &str = "chaperone_records_dropped_total";

/// A decision's `outcome` label, as [`crate::records::outcome`] gives it.
const OUTCOMES: [&str; 3] = ["allow", "deny", "dryrun"];

/// Policy reasons the decision counter takes as labels, per VM, besides chaperone's own codes:
/// reasons come from policies, so the number of metrics they make is bounded.
pub const MAX_POLICY_REASON_LABELS: usize = 64;
const MAX_REASON_LABEL_BYTES: usize = 64;

/// A metric's id, or `None` when the host refused the name (remembered, so it stays refused).
type MetricId = Option<u32>;

#[derive(Default)]
pub struct Metrics {
    /// Ids of the metrics named by constants. Looked up several times per request by those
    /// names, never by a name from outside: a fixed fast hash.
    ids: RefCell<HashMap<&'static str, MetricId, FixedState>>,
    /// `chaperone_decisions_total`'s ids by reason label, then by outcome ([`OUTCOMES`]); a
    /// slot is `None` until that counter is defined.
    decisions: RefCell<HashMap<String, [Option<MetricId>; 3], FixedState>>,
    /// Reason labels a policy gave that are not chaperone's codes: kept as a count, not
    /// counted from `decisions`, because a policy past the cap asks on every request.
    policy_labels: Cell<usize>,
    /// Off on hosts without proxy-wasm metrics (see `HostKind::detect`).
    disabled: Cell<bool>,
}

impl Metrics {
    pub fn enable(&self, enabled: bool) {
        self.disabled.set(!enabled);
    }

    fn id(&self, metric_type: MetricType, name: &'static str) -> MetricId {
        if self.disabled.get() {
            return None;
        }
        let mut ids = self.ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(name) {
            return *id;
        }
        // First use: define it once.
        let id = host::define_metric(metric_type, name).ok();
        ids.insert(name, id);
        id
    }

    pub fn add(&self, name: &'static str, by: u64) {
        if by == 0 {
            return;
        }
        if let Some(id) = self.id(MetricType::Counter, name) {
            increment(id, by);
        }
    }

    pub fn count(&self, name: &'static str) {
        self.add(name, 1);
    }

    /// `chaperone_decisions_total` for one decision of `outcome` (`allow`, `deny`, `dryrun`).
    /// Its `reason` label is the record's `reason` (the policy's own, when it gave one) if
    /// that can be a label (lower-case letters and `_`, at most 64 bytes) and is one of
    /// chaperone's codes or among the first [`MAX_POLICY_REASON_LABELS`] policy reasons this
    /// VM has seen; `code` (chaperone's reason code) otherwise.
    pub fn count_decision(&self, outcome: &'static str, reason: &str, code: &'static str) {
        if self.disabled.get() {
            return;
        }
        let Some(slot) = OUTCOMES.iter().position(|&o| o == outcome) else {
            return;
        };
        let Ok(mut decisions) = self.decisions.try_borrow_mut() else {
            return;
        };
        let label = if decisions.contains_key(reason) || self.admits_label(reason) {
            reason
        } else {
            code
        };
        if !decisions.contains_key(label) {
            decisions.insert(label.to_owned(), [None; 3]);
        }
        let Some(ids) = decisions.get_mut(label) else {
            return;
        };
        let id = *ids[slot].get_or_insert_with(|| {
            let name = format!("chaperone_decisions_total_decision={outcome}_reason={label}");
            host::define_metric(MetricType::Counter, &name).ok()
        });
        if let Some(id) = id {
            increment(id, 1);
        }
    }

    /// Whether `reason`, not yet a label, may become one (and counts it if it is a policy's).
    fn admits_label(&self, reason: &str) -> bool {
        let shaped = !reason.is_empty()
            && reason.len() <= MAX_REASON_LABEL_BYTES
            && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if !shaped {
            return false;
        }
        if Reason::ALL.iter().any(|r| r.code() == reason) {
            return true;
        }
        let seen = self.policy_labels.get();
        if seen >= MAX_POLICY_REASON_LABELS {
            return false;
        }
        self.policy_labels.set(seen + 1);
        true
    }

    pub fn sample(&self, name: &'static str, value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, name) {
            let _ = host::record_metric(id, value);
        }
    }
}

fn increment(id: u32, by: u64) {
    let _ = host::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
}
