//! Decision records to an HTTP collector, in batches (OTLP/HTTP logs, JSON encoding: an
//! OpenTelemetry collector's `/v1/logs` takes them as they are).
//!
//! Each VM buffers its own records, bounded. A batch goes out when it is full or the flush
//! interval has passed, one batch in flight at a time; a failed batch stays at the front and
//! is retried after 1 s, doubling to 30 s. When the buffer is full, the oldest record not in
//! flight is dropped and counted, unless `when_full: deny`, in which case the host asks
//! [`Exporter::has_room`] first and denies requests whose record could not be kept.
//! Records always go to the host log as well; the collector is in addition.

use crate::decision_log::Collector;
use serde_json::{json, Value};
use std::collections::VecDeque;

const MAX_RETRY_MS: u64 = 30_000;

/// One record waiting for the collector.
struct Buffered {
    json: String,
    time_ns: u64,
    decision_id: String,
}

/// A batch the host must send.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
    /// How many records the batch holds.
    pub records: usize,
}

/// What became of a batch, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportOutcome {
    Delivered {
        records: usize,
    },
    Failed {
        records: usize,
        error: String,
        retry_in_ms: u64,
    },
    /// Not a call of this exporter.
    Unknown,
}

pub struct Exporter {
    config: Collector,
    buffer: VecDeque<Buffered>,
    /// The call in flight and how many records from the front of the buffer it carries.
    in_flight: Option<(u32, usize)>,
    /// Batch built, not yet handed to the host.
    pending: usize,
    last_flush_ms: u64,
    retry_at_ms: u64,
    failures: u32,
    /// Records dropped since this exporter started.
    pub dropped: u64,
    /// The buffered records' JSON, in bytes.
    buffered_bytes: usize,
}

impl Exporter {
    pub fn new(config: Collector, now_ms: u64) -> Self {
        Exporter {
            config,
            buffer: VecDeque::new(),
            in_flight: None,
            pending: 0,
            last_flush_ms: now_ms,
            retry_at_ms: 0,
            failures: 0,
            dropped: 0,
            buffered_bytes: 0,
        }
    }

    /// Takes over the records another exporter (of the configuration this one replaces) still
    /// holds, in order, so a reconfiguration loses none. Its batch in flight is sent again:
    /// delivery is at least once.
    pub fn adopt(&mut self, previous: Exporter) {
        for record in previous.buffer {
            // Counted in `self.dropped` if it does not fit.
            self.push(record.json, record.time_ns, &record.decision_id);
        }
        self.dropped += previous.dropped;
    }

    pub fn deny_when_full(&self) -> bool {
        self.config.deny_when_full
    }

    /// Whether one more record, however long, fits without dropping another.
    pub fn has_room(&self) -> bool {
        self.fits(self.config.max_record_bytes)
    }

    fn fits(&self, bytes: usize) -> bool {
        self.buffer.len() < self.config.max_buffered_records
            && self.buffered_bytes.saturating_add(bytes) <= self.config.max_buffered_bytes
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Buffers a record; returns how many records were dropped to make room for it: the
    /// oldest ones not on their way already, or this one, when even without those it would
    /// not fit.
    pub fn push(&mut self, json: String, time_ns: u64, decision_id: &str) -> u64 {
        let in_flight = self.in_flight.map_or(self.pending, |(_, n)| n);
        if !self.fits(json.len()) {
            let sending: usize = self
                .buffer
                .iter()
                .take(in_flight)
                .map(|r| r.json.len())
                .sum();
            if in_flight >= self.config.max_buffered_records
                || sending.saturating_add(json.len()) > self.config.max_buffered_bytes
            {
                self.dropped += 1;
                return 1;
            }
        }
        let mut dropped = 0;
        while !self.fits(json.len()) {
            let Some(oldest) = self.buffer.remove(in_flight) else {
                break;
            };
            self.buffered_bytes = self.buffered_bytes.saturating_sub(oldest.json.len());
            dropped += 1;
        }
        self.buffered_bytes += json.len();
        self.buffer.push_back(Buffered {
            json,
            time_ns,
            decision_id: decision_id.to_owned(),
        });
        self.dropped += dropped;
        dropped
    }

    /// The next batch, when one is due and none is in flight.
    pub fn next_batch(&mut self, now_ms: u64) -> Option<ExportRequest> {
        if self.in_flight.is_some() || self.pending > 0 || self.buffer.is_empty() {
            return None;
        }
        if now_ms < self.retry_at_ms {
            return None;
        }
        let full = self.buffer.len() >= self.config.max_batch_records;
        let due = now_ms
            >= self
                .last_flush_ms
                .saturating_add(self.config.flush_interval_ms);
        if !full && !due && self.failures == 0 {
            return None;
        }
        let records = self.buffer.len().min(self.config.max_batch_records);
        self.pending = records;
        self.last_flush_ms = now_ms;
        Some(ExportRequest {
            upstream: self.config.upstream.clone(),
            headers: vec![
                (":method".to_owned(), "POST".to_owned()),
                (":path".to_owned(), self.config.target.path.clone()),
                (
                    ":authority".to_owned(),
                    self.config.target.authority.clone(),
                ),
                (":scheme".to_owned(), self.config.target.scheme.clone()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            body: otlp_logs(self.buffer.iter().take(records)).into_bytes(),
            timeout_ms: self.config.timeout_ms,
            records,
        })
    }

    /// The host dispatched the last batch as call `token`.
    pub fn sent(&mut self, token: u32) {
        self.in_flight = Some((token, self.pending));
        self.pending = 0;
    }

    pub fn owns_call(&self, token: u32) -> bool {
        self.in_flight.is_some_and(|(t, _)| t == token)
    }

    /// The host could not dispatch the last batch.
    pub fn dispatch_failed(&mut self, error: String, now_ms: u64) -> ExportOutcome {
        let records = std::mem::take(&mut self.pending);
        self.fail(records, error, now_ms)
    }

    /// The collector's answer to call `token` (`None`: no answer).
    pub fn on_response(&mut self, token: u32, status: Option<u16>, now_ms: u64) -> ExportOutcome {
        let Some((_, records)) = self.in_flight.filter(|(t, _)| *t == token) else {
            return ExportOutcome::Unknown;
        };
        self.in_flight = None;
        match status {
            Some(status) if (200..300).contains(&status) => {
                let delivered = records.min(self.buffer.len());
                let bytes: usize = self.buffer.drain(..delivered).map(|r| r.json.len()).sum();
                self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
                self.failures = 0;
                self.retry_at_ms = 0;
                ExportOutcome::Delivered { records: delivered }
            }
            Some(status) => self.fail(records, format!("status {status}"), now_ms),
            None => self.fail(records, "no response".to_owned(), now_ms),
        }
    }

    fn fail(&mut self, records: usize, error: String, now_ms: u64) -> ExportOutcome {
        self.failures = self.failures.saturating_add(1);
        let retry_in_ms = (1_000u64 << (self.failures - 1).min(5)).min(MAX_RETRY_MS);
        self.retry_at_ms = now_ms + retry_in_ms;
        ExportOutcome::Failed {
            records,
            error,
            retry_in_ms,
        }
    }
}

/// An OTLP `ExportLogsServiceRequest` in its JSON encoding: one log record per decision, the
/// decision record as its body.
fn otlp_logs<'a>(records: impl Iterator<Item = &'a Buffered>) -> String {
    let string = |value: &str| json!({"stringValue": value});
    let log_records: Vec<Value> = records
        .map(|record| {
            json!({
                "timeUnixNano": record.time_ns.to_string(),
                "severityNumber": 9,
                "severityText": "INFO",
                "body": string(&record.json),
                "attributes": [
                    {"key": "event.name", "value": string("chaperone.decision")},
                    {"key": "decision_id", "value": string(&record.decision_id)},
                ],
            })
        })
        .collect();
    json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": string("chaperone")}]},
        "scopeLogs": [{
            "scope": {"name": "chaperone", "version": env!("CARGO_PKG_VERSION")},
            "logRecords": log_records,
        }],
    }]})
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::HttpTarget;

    fn exporter(batch: usize, buffer: usize, deny: bool) -> Exporter {
        exporter_of_bytes(batch, buffer, 1 << 20, deny)
    }

    /// Records of at most 10 bytes, `bytes` of them at most in the buffer.
    fn exporter_of_bytes(batch: usize, buffer: usize, bytes: usize, deny: bool) -> Exporter {
        let collector = Collector {
            target: HttpTarget::parse("http://otel:4318/v1/logs").unwrap(),
            upstream: "otel".to_owned(),
            timeout_ms: 1000,
            max_batch_records: batch,
            flush_interval_ms: 1000,
            max_buffered_records: buffer,
            max_buffered_bytes: bytes,
            max_record_bytes: 10,
            deny_when_full: deny,
        };
        Exporter::new(collector, 0)
    }

    fn push(e: &mut Exporter, n: usize) -> u64 {
        (0..n)
            .map(|i| e.push(format!("{{\"n\":{i}}}"), 1, &format!("d{i}")))
            .sum()
    }

    #[test]
    fn batches_go_when_full_or_due_and_are_removed_when_delivered() {
        let mut e = exporter(3, 10, false);
        push(&mut e, 2);
        assert!(e.next_batch(500).is_none(), "neither full nor due");
        let batch = e.next_batch(1000).expect("due");
        assert_eq!(batch.records, 2);
        let body: Value = serde_json::from_slice(&batch.body).unwrap();
        let records = &body["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
        assert_eq!(records[1]["body"]["stringValue"], "{\"n\":1}");
        assert_eq!(records[1]["attributes"][1]["value"]["stringValue"], "d1");
        assert!(batch.headers.contains(&(":path".into(), "/v1/logs".into())));
        e.sent(7);
        push(&mut e, 3);
        assert!(
            e.next_batch(5000).is_none(),
            "one batch in flight at a time"
        );
        assert_eq!(
            e.on_response(7, Some(200), 1100),
            ExportOutcome::Delivered { records: 2 }
        );
        assert_eq!(e.buffered(), 3);
        assert_eq!(e.next_batch(1100).map(|b| b.records), Some(3), "full");
    }

    #[test]
    fn failures_keep_the_batch_and_back_off() {
        let mut e = exporter(2, 10, false);
        push(&mut e, 2);
        let _ = e.next_batch(0).unwrap();
        e.sent(1);
        assert!(matches!(
            e.on_response(1, None, 100),
            ExportOutcome::Failed {
                retry_in_ms: 1000,
                ..
            }
        ));
        assert!(e.next_batch(1099).is_none());
        let _ = e.next_batch(1100).unwrap();
        e.sent(2);
        assert!(matches!(
            e.on_response(2, Some(503), 1200),
            ExportOutcome::Failed {
                retry_in_ms: 2000,
                ..
            }
        ));
        let _ = e.next_batch(3200).unwrap();
        e.sent(3);
        assert_eq!(
            e.on_response(3, Some(204), 3300),
            ExportOutcome::Delivered { records: 2 }
        );
        assert_eq!(e.buffered(), 0);
        assert_eq!(e.on_response(3, Some(200), 3300), ExportOutcome::Unknown);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_waiting_record_never_one_in_flight() {
        let mut e = exporter(2, 4, false);
        assert_eq!(push(&mut e, 4), 0);
        let _ = e.next_batch(1000).unwrap();
        e.sent(1); // records 0 and 1 in flight
        assert_eq!(e.push("{\"n\":4}".into(), 1, "d4"), 1);
        assert_eq!(e.dropped, 1);
        assert_eq!(
            e.on_response(1, Some(200), 1000),
            ExportOutcome::Delivered { records: 2 }
        );
        // 2 was dropped; 3 and 4 remain.
        let batch = e.next_batch(3000).unwrap();
        let body = String::from_utf8(batch.body).unwrap();
        assert!(
            body.contains("d3") && body.contains("d4") && !body.contains("d2"),
            "{body}"
        );
    }

    #[test]
    fn the_buffer_holds_its_bytes_dropping_as_many_of_the_oldest_as_a_long_record_needs() {
        let record = |n: usize| "x".repeat(n);
        let mut e = exporter_of_bytes(2, 100, 30, true);
        for id in ["a", "b", "c"] {
            assert_eq!(e.push(record(10), 1, id), 0);
        }
        assert!(
            !e.has_room(),
            "30 bytes held: no room for a record of up to 10"
        );
        let _ = e.next_batch(1000).unwrap();
        e.sent(1); // a and b in flight
        assert_eq!(e.push(record(5), 1, "d"), 1, "c goes");
        assert_eq!(
            e.push(record(10), 1, "e"),
            1,
            "d goes, though 5 bytes would do"
        );
        assert_eq!(
            e.push(record(11), 1, "f"),
            1,
            "beside the 20 in flight, 11 bytes never fit: the new record goes"
        );
        assert_eq!(e.buffered(), 3);
        assert_eq!(e.dropped, 3);
        assert_eq!(
            e.on_response(1, Some(200), 1000),
            ExportOutcome::Delivered { records: 2 }
        );
        assert!(e.has_room(), "delivered records give their bytes back");
        assert_eq!(e.push(record(20), 1, "g"), 0);
        let body = String::from_utf8(e.next_batch(3000).unwrap().body).unwrap();
        assert!(body.contains("\"e\"") && body.contains("\"g\""), "{body}");
        // One record as long as the whole buffer drops every record waiting.
        let mut e = exporter_of_bytes(10, 100, 30, false);
        push(&mut e, 3);
        assert_eq!(e.push(record(30), 1, "long"), 3);
        assert_eq!(e.buffered(), 1);
    }
}
