//! Where decision records go besides the host log: filter state for access logs (Envoy), the
//! `kong.ctx.shared` table for Lua log plugins (Kong), and batches to an HTTP collector.

use crate::host;
use crate::metrics::{Metrics, RECORDS_DROPPED};
use chaperone_core::export::{ExportOutcome, Exporter};
use chaperone_core::Decision;
use proxy_wasm::types::LogLevel;

/// Which proxy the module runs in: they expose per-request data differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Envoy,
    Kong,
}

impl HostKind {
    /// Kong answers for `kong.version`; Envoy does not know it. Also whether the host has
    /// proxy-wasm metrics: Envoy does; ngx_wasm_module gained them in the module shipped with
    /// Kong 3.8, and older ones may trap when a metric is defined.
    pub fn detect() -> (HostKind, bool) {
        match host::property(&["kong", "version"]) {
            Ok(Some(version)) => (HostKind::Kong, kong_has_metrics(&version)),
            _ => (HostKind::Envoy, true),
        }
    }
}

/// `3.8.0`, `3.9.1.2-enterprise`, ...: metrics from 3.8 on; unreadable versions get none.
fn kong_has_metrics(version: &[u8]) -> bool {
    let text = String::from_utf8_lossy(version);
    let mut parts = text.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((major, minor), (Some(major), Some(minor)) if (major, minor) >= (3, 8))
}

/// The decision as access logs show it: `allow`, `deny`, or `dryrun` (denied, not enforced).
pub fn outcome(decision: &Decision) -> &'static str {
    match (decision.allowed, decision.record.dry_run) {
        (_, true) => "dryrun",
        (true, false) => "allow",
        (false, false) => "deny",
    }
}

/// A key field's property name on each host, spelled out once rather than formatted for every
/// request: Envoy filter state `chaperone.<field>`, Kong `kong.ctx.shared.chaperone_<field>`.
#[derive(Clone, Copy)]
struct KeyField {
    envoy: &'static str,
    kong: &'static str,
}

macro_rules! key_field {
    ($field:literal) => {
        KeyField {
            envoy: concat!("chaperone.", $field),
            kong: concat!("kong.ctx.shared.chaperone_", $field),
        }
    };
}

const DECISION_ID: KeyField = key_field!("decision_id");

/// The record's key fields for the host's own logs: Envoy filter state
/// (`%FILTER_STATE(wasm.chaperone.<field>:PLAIN)%`), Kong `kong.ctx.shared.chaperone_<field>`.
/// Without `key_fields` only `decision_id`, which still joins an access-log line to its record:
/// each field is a host call (BENCHMARKS.md, 2026-11-25 (fourth)).
pub fn publish(kind: HostKind, decision: &Decision, key_fields: bool) {
    let record = &decision.record;
    if !key_fields {
        set_field(kind, DECISION_ID, &record.decision_id);
        return;
    }
    let agent = record.agent.as_ref();
    let delegation = agent.map(|a| {
        a.delegation
            .iter()
            .map(|actor| actor.sub.as_str())
            .collect::<Vec<_>>()
            .join(",")
    });
    let revision = record.bundles.values().next().map(|b| b.revision.as_str());
    let seq = record.seq.to_string();
    let fields: [(KeyField, Option<&str>); 11] = [
        (DECISION_ID, Some(record.decision_id.as_str())),
        (key_field!("decision"), Some(outcome(decision))),
        (key_field!("reason"), Some(record.reason.as_str())),
        (key_field!("rule"), record.rule.as_deref()),
        (key_field!("agent_id"), agent.map(|a| a.id.as_str())),
        (key_field!("issuer"), agent.map(|a| a.issuer.as_str())),
        (key_field!("owner"), agent.and_then(|a| a.owner.as_deref())),
        (
            key_field!("delegation"),
            delegation.as_deref().filter(|d| !d.is_empty()),
        ),
        (key_field!("task"), agent.and_then(|a| a.task.as_deref())),
        (key_field!("policy_revision"), revision),
        (key_field!("seq"), Some(seq.as_str())),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            set_field(kind, field, value);
        }
    }
}

fn set_field(kind: HostKind, field: KeyField, value: &str) {
    let name = match kind {
        HostKind::Envoy => field.envoy,
        HostKind::Kong => field.kong,
    };
    // Hosts without the notion answer with an error status; the record still has it all.
    let _ = host::set_property(name, value.as_bytes());
}

/// Sends the next batch of records if one is due.
pub fn flush(exporter: &mut Exporter, metrics: &Metrics) {
    let now_ms = host::now_ms();
    let Some(batch) = exporter.next_batch(now_ms) else {
        return;
    };
    match host::dispatch_http_call(
        &batch.upstream,
        &batch.headers,
        Some(&batch.body),
        batch.timeout_ms,
    ) {
        Ok(token) => exporter.sent(token),
        Err(status) => {
            let outcome = exporter.dispatch_failed(
                format!(
                    "dispatch_http_call to `{}` refused ({status}); on Envoy name a configured \
                     cluster in decision_log.collector.http_uri.cluster",
                    batch.upstream
                ),
                now_ms,
            );
            report(&outcome, metrics);
        }
    }
}

/// The collector's answer to call `token`, if it is one of the exporter's.
pub fn on_response(exporter: &mut Exporter, metrics: &Metrics, token: u32) -> bool {
    if !exporter.owns_call(token) {
        return false;
    }
    let status = host::http_call_response_headers()
        .ok()
        .and_then(|headers| host::status_of(&headers));
    let outcome = exporter.on_response(token, status, host::now_ms());
    report(&outcome, metrics);
    true
}

fn report(outcome: &ExportOutcome, metrics: &Metrics) {
    match outcome {
        ExportOutcome::Delivered { records } => metrics.add(
            "chaperone_records_exported_total_result=success",
            *records as u64,
        ),
        ExportOutcome::Failed {
            records,
            error,
            retry_in_ms,
        } => {
            metrics.add(
                "chaperone_records_exported_total_result=failure",
                *records as u64,
            );
            host::log(
                LogLevel::Warn,
                &format!(
                    "chaperone: decision records: batch of {records} not delivered ({error}); \
                     retrying in {retry_in_ms} ms"
                ),
            );
        }
        ExportOutcome::Unknown => {}
    }
}

/// Counts records dropped from a full collector buffer.
pub fn count_dropped(metrics: &Metrics, dropped: u64) {
    metrics.add(RECORDS_DROPPED, dropped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_fields_are_named_as_the_readme_says() {
        let field = key_field!("agent_id");
        assert_eq!(field.envoy, "chaperone.agent_id");
        assert_eq!(field.kong, "kong.ctx.shared.chaperone_agent_id");
        assert_eq!(DECISION_ID.envoy, "chaperone.decision_id");
    }

    #[test]
    fn kong_versions_with_metrics() {
        for (version, expected) in [
            ("3.8.0", true),
            ("3.9.1", true),
            ("3.10.0.0-enterprise-edition", true),
            ("4.0", true),
            ("3.7.1", false),
            ("3.4.2", false),
            ("", false),
            ("next", false),
        ] {
            assert_eq!(kong_has_metrics(version.as_bytes()), expected, "{version}");
        }
    }
}
