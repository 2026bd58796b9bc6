//! `decision_log`: what each decision record carries beyond the decision (the masked policy
//! input, labels), how large it may get, and where else it goes (an HTTP collector).

use crate::config::{config_error, ConfigError};
use crate::input::{PolicyValue, RequestInput, MAX_ERASED_PATHS};
use crate::record::DecisionRecord;
use crate::remote::{upstream_for, HttpTarget, RawHttpUri};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Erased from every record's input unless `decision_log.erase` says otherwise: headers that
/// commonly carry secrets (`authorization` when the agent token comes from another header).
/// Credential headers (`from_headers`, transaction and grant tokens) never reach the input at
/// all, and credentials elsewhere in the request are masked ([`crate::record::mask_credentials`]).
pub const DEFAULT_ERASE: [&str; 4] = [
    "/input/attributes/request/http/headers/authorization",
    "/input/attributes/request/http/headers/cookie",
    "/input/attributes/request/http/headers/proxy-authorization",
    "/input/attributes/request/http/headers/x-api-key",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecisionLog {
    #[serde(default)]
    pub input: Option<bool>,
    #[serde(default)]
    pub erase: Option<Vec<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub max_record_bytes: Option<usize>,
    #[serde(default)]
    pub host_log: Option<bool>,
    /// `true`, `false` or a list of [`KeyField`] names; read by [`DecisionLog::compile`].
    #[serde(default)]
    pub key_fields: Option<serde_json::Value>,
    #[serde(default)]
    pub collector: Option<RawCollector>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollector {
    pub http_uri: RawHttpUri,
    #[serde(default = "default_batch")]
    pub max_batch_records: usize,
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_buffer")]
    pub max_buffered_records: usize,
    #[serde(default = "default_buffer_bytes")]
    pub max_buffered_bytes: usize,
    #[serde(default)]
    pub when_full: Option<String>,
}

fn default_batch() -> usize {
    100
}
fn default_flush_ms() -> u64 {
    1000
}
fn default_buffer() -> usize {
    10_000
}
/// About 20,000 records of the usual 1.5 KB: the record count is what bounds them, the bytes
/// bound records made large on purpose (a long path).
fn default_buffer_bytes() -> usize {
    32 << 20
}

/// A field of the record that the host gets apart, for its access log: one host call each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    DecisionId,
    Decision,
    Reason,
    Rule,
    AgentId,
    Issuer,
    Owner,
    Delegation,
    Task,
    PolicyRevision,
    Seq,
}

impl KeyField {
    pub const ALL: [KeyField; 11] = [
        KeyField::DecisionId,
        KeyField::Decision,
        KeyField::Reason,
        KeyField::Rule,
        KeyField::AgentId,
        KeyField::Issuer,
        KeyField::Owner,
        KeyField::Delegation,
        KeyField::Task,
        KeyField::PolicyRevision,
        KeyField::Seq,
    ];

    /// As configurations and access-log formats name it.
    pub fn name(self) -> &'static str {
        match self {
            KeyField::DecisionId => "decision_id",
            KeyField::Decision => "decision",
            KeyField::Reason => "reason",
            KeyField::Rule => "rule",
            KeyField::AgentId => "agent_id",
            KeyField::Issuer => "issuer",
            KeyField::Owner => "owner",
            KeyField::Delegation => "delegation",
            KeyField::Task => "task",
            KeyField::PolicyRevision => "policy_revision",
            KeyField::Seq => "seq",
        }
    }
}

/// `decision_log.key_fields`: `true` for all, `false` for `decision_id` alone, or the names of
/// those wanted besides `decision_id` (which joins an access-log line to its record, so it is
/// always set), each once.
fn key_fields(named: &serde_json::Value) -> Result<Vec<KeyField>, ConfigError> {
    let mistake = || {
        let names: Vec<&str> = KeyField::ALL.iter().map(|f| f.name()).collect();
        config_error(
            "decision_log.key_fields",
            format!(
                "must be true, false, or a list of distinct field names from: {}",
                names.join(", ")
            ),
        )
    };
    let wanted: Vec<&str> = match named {
        serde_json::Value::Bool(true) => return Ok(KeyField::ALL.to_vec()),
        serde_json::Value::Bool(false) => Vec::new(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(mistake))
            .collect::<Result<_, _>>()?,
        _ => return Err(mistake()),
    };
    for (i, name) in wanted.iter().enumerate() {
        let known = KeyField::ALL.iter().any(|f| f.name() == *name);
        if !known || wanted[..i].contains(name) {
            return Err(mistake());
        }
    }
    Ok(KeyField::ALL
        .into_iter()
        .filter(|f| *f == KeyField::DecisionId || wanted.contains(&f.name()))
        .collect())
}

pub struct DecisionLog {
    /// Records carry the (erased) policy input.
    pub input: bool,
    /// JSON Pointers under `/input`, as configured, and each split into its unescaped
    /// reference tokens after `input`, kept as policy values (the paths a record's input is
    /// written without).
    erase_pointers: Vec<String>,
    erase_paths: Vec<Vec<PolicyValue>>,
    pub labels: BTreeMap<String, String>,
    pub max_record_bytes: usize,
    /// Each record is a line of the host's own log (Envoy's log, Kong's error log).
    pub host_log: bool,
    /// The record's key fields that go to the host for its access log (Envoy filter state,
    /// Kong `kong.ctx.shared`), in [`KeyField::ALL`]'s order; `decision_id` always.
    pub key_fields: Vec<KeyField>,
    pub collector: Option<Collector>,
}

/// Batches of records to an HTTP collector (OTLP/HTTP logs, JSON encoding).
#[derive(Debug, Clone)]
pub struct Collector {
    pub target: HttpTarget,
    pub upstream: String,
    pub timeout_ms: u64,
    pub max_batch_records: usize,
    pub flush_interval_ms: u64,
    pub max_buffered_records: usize,
    /// The buffered records' JSON, in bytes, at most; at least `max_record_bytes`.
    pub max_buffered_bytes: usize,
    /// The longest record ([`DecisionLog::max_record_bytes`]): with `deny_when_full`, the
    /// room a request's record must find before the request is decided.
    pub max_record_bytes: usize,
    /// Deny requests whose record cannot be buffered, instead of dropping the oldest.
    pub deny_when_full: bool,
}

impl Default for DecisionLog {
    fn default() -> Self {
        // Unzipped from pairs, so each pointer stays beside its path.
        let (erase_pointers, erase_paths) = DEFAULT_ERASE
            .iter()
            .filter_map(|&pointer| Some((pointer.to_owned(), input_path(pointer)?)))
            .unzip();
        DecisionLog {
            input: true,
            erase_pointers,
            erase_paths,
            labels: BTreeMap::new(),
            max_record_bytes: 65_536,
            host_log: true,
            key_fields: KeyField::ALL.to_vec(),
            collector: None,
        }
    }
}

impl DecisionLog {
    pub fn compile(raw: RawDecisionLog) -> Result<DecisionLog, ConfigError> {
        let defaults = DecisionLog::default();
        let (erase_pointers, erase_paths) = match raw.erase {
            None => (defaults.erase_pointers, defaults.erase_paths),
            Some(pointers) if pointers.len() > MAX_ERASED_PATHS => {
                return Err(config_error(
                    "decision_log.erase",
                    format!("at most {MAX_ERASED_PATHS} pointers"),
                ))
            }
            Some(pointers) => {
                let mut paths = Vec::with_capacity(pointers.len());
                for (i, pointer) in pointers.iter().enumerate() {
                    paths.push(input_path(pointer).ok_or_else(|| {
                        config_error(
                            format!("decision_log.erase[{i}]"),
                            "must be a JSON Pointer into the input, like /input/agent/claims/email",
                        )
                    })?);
                }
                (pointers, paths)
            }
        };
        for (name, value) in &raw.labels {
            if name.is_empty() || name == "instance" || value.is_empty() {
                return Err(config_error(
                    format!("decision_log.labels.{name}"),
                    "labels need a name and a value; `instance` is set by chaperone",
                ));
            }
        }
        let max_record_bytes = raw.max_record_bytes.unwrap_or(defaults.max_record_bytes);
        if !(1_024..=1_048_576).contains(&max_record_bytes) {
            return Err(config_error(
                "decision_log.max_record_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        let collector = raw
            .collector
            .map(|raw| compile_collector(raw, max_record_bytes))
            .transpose()?;
        Ok(DecisionLog {
            input: raw.input.unwrap_or(true),
            erase_pointers,
            erase_paths,
            labels: raw.labels,
            max_record_bytes,
            host_log: raw.host_log.unwrap_or(defaults.host_log),
            key_fields: match raw.key_fields {
                None => defaults.key_fields,
                Some(named) => key_fields(&named)?,
            },
            collector,
        })
    }

    /// Whether records carry the input: asked for, and records are written somewhere (the
    /// host log or a collector). With neither, no record is serialised, so its input is
    /// never assembled either.
    pub fn keeps_input(&self) -> bool {
        self.input && (self.host_log || self.collector.is_some())
    }

    /// Gives `record` its copy of `input`: without the members at the configured pointers,
    /// which it lists as `erased` where they were there (OPA's `erased`, in configuration
    /// order), and with the credentials in the request's strings masked (flag
    /// `credentials_masked`).
    /// Should the input fail to be written, the record goes without it (`erased`: `/input`).
    pub fn record_input(&self, input: &RequestInput, record: &mut DecisionRecord) {
        let Some(logged) = input.logged(&self.erase_paths) else {
            record.input = None;
            record.erased = vec!["/input".to_owned()];
            return;
        };
        record.erased = self
            .erase_pointers
            .iter()
            .enumerate()
            .filter(|(i, _)| logged.erased >> i & 1 == 1)
            .map(|(_, pointer)| pointer.clone())
            .collect();
        record.input = Some(logged.input);
        if logged.credentials_masked {
            record.flag_credentials_masked();
        }
    }
}

fn compile_collector(raw: RawCollector, max_record_bytes: usize) -> Result<Collector, ConfigError> {
    let field = "decision_log.collector";
    let target = HttpTarget::parse(&raw.http_uri.uri)
        .map_err(|message| config_error(format!("{field}.http_uri.uri"), message))?;
    let upstream = upstream_for(raw.http_uri.cluster, &target, field)?;
    let in_range = |name: &str, value: u64, low: u64, high: u64| {
        if (low..=high).contains(&value) {
            Ok(value)
        } else {
            Err(config_error(
                format!("{field}.{name}"),
                format!("must be between {low} and {high}"),
            ))
        }
    };
    let timeout_ms = in_range("http_uri.timeout_ms", raw.http_uri.timeout_ms, 100, 60_000)?;
    let batch = in_range("max_batch_records", raw.max_batch_records as u64, 1, 10_000)?;
    let flush_interval_ms = in_range("flush_interval_ms", raw.flush_interval_ms, 10, 60_000)?;
    let buffered = in_range(
        "max_buffered_records",
        raw.max_buffered_records as u64,
        batch,
        1_000_000,
    )?;
    let buffered_bytes = in_range(
        "max_buffered_bytes",
        raw.max_buffered_bytes as u64,
        max_record_bytes.max(1 << 20) as u64,
        1 << 30,
    )?;
    let deny_when_full = match raw.when_full.as_deref() {
        None | Some("drop_oldest") => false,
        Some("deny") => true,
        Some(other) => {
            return Err(config_error(
                format!("{field}.when_full"),
                format!("`{other}` is neither `drop_oldest` nor `deny`"),
            ))
        }
    };
    Ok(Collector {
        target,
        upstream,
        timeout_ms,
        max_batch_records: batch as usize,
        flush_interval_ms,
        max_buffered_records: buffered as usize,
        max_buffered_bytes: buffered_bytes as usize,
        max_record_bytes,
        deny_when_full,
    })
}

/// `/input/a/b` to `["a", "b"]`; `None` for pointers outside the input.
fn input_path(pointer: &str) -> Option<Vec<PolicyValue>> {
    let tokens: Vec<String> = pointer
        .strip_prefix("/input/")?
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    if tokens.iter().any(String::is_empty) {
        return None;
    }
    Some(tokens.into_iter().map(PolicyValue::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn log(raw: Value) -> Result<DecisionLog, ConfigError> {
        DecisionLog::compile(serde_json::from_value(raw).unwrap())
    }

    #[test]
    fn records_keep_the_input_only_where_a_record_is_written() {
        let collector = json!({"http_uri": {"uri": "http://otel:4318/v1/logs"}});
        for (raw, keeps) in [
            (json!({}), true),
            (json!({"input": false}), false),
            (json!({"host_log": false}), false),
            (json!({"host_log": false, "collector": collector}), true),
            (
                json!({"host_log": false, "input": false, "collector": collector}),
                false,
            ),
        ] {
            assert_eq!(log(raw.clone()).unwrap().keeps_input(), keeps, "{raw}");
        }
    }

    #[test]
    fn key_fields_are_all_none_or_those_named_with_the_decision_id_always() {
        let names = |raw: Value| {
            log(json!({ "key_fields": raw }))
                .map(|log| log.key_fields.iter().map(|f| f.name()).collect::<Vec<_>>())
        };
        let all: Vec<&str> = KeyField::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(log(json!({})).unwrap().key_fields, KeyField::ALL);
        assert_eq!(names(json!(true)).unwrap(), all);
        assert_eq!(names(json!(false)).unwrap(), ["decision_id"]);
        assert_eq!(names(json!([])).unwrap(), ["decision_id"]);
        assert_eq!(
            names(json!(["seq", "agent_id", "decision_id", "reason"])).unwrap(),
            ["decision_id", "reason", "agent_id", "seq"]
        );
        for wrong in [
            json!(["agent"]),
            json!(["reason", "reason"]),
            json!([1]),
            json!("agent_id"),
        ] {
            let error = names(wrong.clone()).unwrap_err();
            assert_eq!(error.field, "decision_log.key_fields", "{wrong}");
            assert!(
                error.message.contains("policy_revision"),
                "{wrong}: {error:?}"
            );
        }
    }

    #[test]
    fn configuration_mistakes_name_the_field() {
        let field = |raw: Value| log(raw).err().map(|e| e.field);
        assert_eq!(
            field(json!({"erase": ["/result/x"]})).as_deref(),
            Some("decision_log.erase[0]")
        );
        assert_eq!(
            field(json!({"erase": ["/input//x"]})).as_deref(),
            Some("decision_log.erase[0]")
        );
        let many: Vec<String> = (0..=MAX_ERASED_PATHS)
            .map(|i| format!("/input/x{i}"))
            .collect();
        assert_eq!(
            field(json!({"erase": many})).as_deref(),
            Some("decision_log.erase")
        );
        assert!(log(json!({"erase": &many[1..]})).is_ok());
        assert_eq!(
            field(json!({"labels": {"instance": "x"}})).as_deref(),
            Some("decision_log.labels.instance")
        );
        assert_eq!(
            field(json!({"max_record_bytes": 10})).as_deref(),
            Some("decision_log.max_record_bytes")
        );
        assert_eq!(
            field(json!({"collector": {"http_uri": {"uri": "http://otel:4318/v1/logs"}, "when_full": "block"}})).as_deref(),
            Some("decision_log.collector.when_full")
        );
        assert_eq!(
            field(json!({"collector": {"http_uri": {"uri": "http://otel:4318/v1/logs"}, "max_batch_records": 500, "max_buffered_records": 100}})).as_deref(),
            Some("decision_log.collector.max_buffered_records")
        );
        // The buffer's bytes hold at least one record of the longest kind.
        let uri = json!({"uri": "http://otel:4318/v1/logs"});
        assert_eq!(
            field(json!({"max_record_bytes": 2_000_000, "collector": {"http_uri": uri, "max_buffered_bytes": 1_500_000}})).as_deref(),
            Some("decision_log.max_record_bytes"),
        );
        assert_eq!(
            field(json!({"max_record_bytes": 1_048_576, "collector": {"http_uri": uri, "max_buffered_bytes": 1_048_575}})).as_deref(),
            Some("decision_log.collector.max_buffered_bytes")
        );
        assert!(log(json!({"max_record_bytes": 1_048_576, "collector": {"http_uri": uri, "max_buffered_bytes": 1_048_576}})).is_ok());
        let collector =
            log(json!({"collector": {"http_uri": {"uri": "http://otel:4318/v1/logs"}}}))
                .unwrap()
                .collector
                .unwrap();
        assert_eq!(
            (collector.upstream.as_str(), collector.deny_when_full),
            ("otel:4318", false)
        );
    }
}
