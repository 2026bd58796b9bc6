//! `chaperone kong-meta`: the `chaperone.meta.json` that Kong reads beside `chaperone.wasm`.
//! Kong validates every filter `config` against `config_schema` (and only then accepts an
//! object rather than a string), and turns metric names into Prometheus labels with
//! `metrics.label_patterns`. The schema is the checked-in file, embedded when the CLI is built,
//! so the copy Kong enforces cannot drift from the one `chaperone check` and the tests use.

use crate::args::Args;
use serde_json::{json, Value};
use std::process::ExitCode;

pub const SCHEMA: &str = include_str!("../../chaperone.schema.json");

/// One entry per `_<label>=<value>` segment of chaperone's metric names (Envoy `stats_tags`
/// use the same regexes). Kong's exporter applies them as Lua patterns, not regexes, so they
/// keep to what both read alike: literals, one character class with a range, `+`, groups.
/// The second group is the label's value; the name ends where the first label starts.
pub const LABEL_PATTERNS: [(&str, &str); 3] = [
    ("decision", "(_decision=([a-z]+))"),
    ("reason", "(_reason=([a-z_]+))"),
    ("result", "(_result=([a-z]+))"),
];

pub fn command(args: &mut Args) -> Result<ExitCode, String> {
    args.finish()?;
    println!("{}", meta_json()?);
    Ok(ExitCode::SUCCESS)
}

/// The document, with the schema spliced in as written (its key order kept for readers).
fn meta_json() -> Result<String, String> {
    // Parsed only to refuse shipping a broken schema; Kong would reject the filter at start.
    let schema: Value = serde_json::from_str(SCHEMA)
        .map_err(|e| format!("embedded chaperone.schema.json is not JSON: {e}"))?;
    if !schema.is_object() {
        return Err("embedded chaperone.schema.json is not a JSON object".to_owned());
    }
    let patterns: Vec<Value> = LABEL_PATTERNS
        .iter()
        .map(|(label, pattern)| json!({"label": label, "pattern": pattern}))
        .collect();
    let metrics = serde_json::to_string_pretty(&json!({ "label_patterns": patterns }))
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{{\n  \"config_schema\": {},\n  \"metrics\": {}\n}}",
        indent(SCHEMA.trim_end()),
        indent(&metrics)
    ))
}

/// Nests a pretty-printed JSON value one level deeper. Only whitespace changes: a JSON string
/// cannot hold a raw line break.
fn indent(text: &str) -> String {
    text.replace('\n', "\n  ")
}
