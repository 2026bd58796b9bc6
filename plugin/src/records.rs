//! Where decision records go besides the host log: filter state for access logs (Envoy), the
//! `kong.ctx.shared` table for Lua log plugins (Kong), and batches to an HTTP collector.

use crate::host;
use crate::metrics::{Metrics, RECORDS_DROPPED};
use chaperone_core::decision_log::KeyField;
use chaperone_core::export::{ExportOutcome, Exporter};
use chaperone_core::Decision;
use proxy_wasm::types::LogLevel;
use std::borrow::Cow;

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
struct Property {
    envoy: &'static str,
    kong: &'static str,
}

macro_rules! property {
    ($field:literal) => {
        Property {
            envoy: concat!("chaperone.", $field),
            kong: concat!("kong.ctx.shared.chaperone_", $field),
        }
    };
}

fn property(field: KeyField) -> Property {
    match field {
        KeyField::DecisionId => property!("decision_id"),
        KeyField::Decision => property!("decision"),
        KeyField::Reason => property!("reason"),
        KeyField::Rule => property!("rule"),
        KeyField::AgentId => property!("agent_id"),
        KeyField::Issuer => property!("issuer"),
        KeyField::Owner => property!("owner"),
        KeyField::Delegation => property!("delegation"),
        KeyField::Task => property!("task"),
        KeyField::PolicyRevision => property!("policy_revision"),
        KeyField::Seq => property!("seq"),
    }
}

/// The record's key fields for the host's own logs: Envoy filter state
/// (`%FILTER_STATE(wasm.chaperone.<field>:PLAIN)%`), Kong `kong.ctx.shared.chaperone_<field>`.
/// Only the `fields` configured (`decision_log.key_fields`), and of those only the ones this
/// record has: each is a host call (BENCHMARKS.md, 2026-11-25 (fourth)).
pub fn publish(kind: HostKind, decision: &Decision, fields: &[KeyField]) {
    let record = &decision.record;
    let agent = record.agent.as_ref();
    for &field in fields {
        let value: Option<Cow<str>> = match field {
            KeyField::DecisionId => Some(record.decision_id.as_str().into()),
            KeyField::Decision => Some(outcome(decision).into()),
            KeyField::Reason => Some(record.reason.as_str().into()),
            KeyField::Rule => record.rule.as_deref().map(Cow::from),
            KeyField::AgentId => agent.map(|a| a.id.as_str().into()),
            KeyField::Issuer => agent.map(|a| a.issuer.as_str().into()),
            KeyField::Owner => agent.and_then(|a| a.owner.as_deref()).map(Cow::from),
            KeyField::Delegation => agent.filter(|a| !a.delegation.is_empty()).map(|a| {
                let actors: Vec<&str> = a.delegation.iter().map(|d| d.sub.as_str()).collect();
                actors.join(",").into()
            }),
            KeyField::Task => agent.and_then(|a| a.task.as_deref()).map(Cow::from),
            KeyField::PolicyRevision => record
                .bundles
                .values()
                .next()
                .map(|b| b.revision.as_str().into()),
            KeyField::Seq => Some(record.seq.to_string().into()),
        };
        if let Some(value) = value {
            let property = property(field);
            let name = match kind {
                HostKind::Envoy => property.envoy,
                HostKind::Kong => property.kong,
            };
            // Hosts without the notion answer with an error status; the record has it all.
            let _ = host::set_property(name, value.as_bytes());
        }
    }
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
        for field in KeyField::ALL {
            let property = property(field);
            assert_eq!(property.envoy, format!("chaperone.{}", field.name()));
            assert_eq!(
                property.kong,
                format!("kong.ctx.shared.chaperone_{}", field.name())
            );
        }
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
