//! Verdicts remembered between requests, when the policy says they may be.
//!
//! A result carrying `cache_seconds` promises that, for that long, the same request gets the
//! same result whatever the clock. "The same request" is decided here: the policy's modules
//! are scanned once, at configure time, for every place they name `input`, and a request's
//! key is a keyed hash of the values found at those paths, `input.now_ns` left out. A path
//! the scan cannot follow (`input[x]`, `input` passed whole, `with input as ...`) stops
//! where it stops, so the key covers the whole subtree and a hit can only be too rare,
//! never wrong. The verdicts live in the VM's [`TokenCache`] structure, one per
//! configuration, so a new bundle, registry or revocation list starts from nothing.

use crate::cache::{SecretHasher, TokenCache, TokenKey};
use crate::input::{InputDocument, PeerReads};
use crate::policy::{Policy, Verdict};
use regorus::unstable::{Lexer, TokenKind};
use regorus::{Source, Value};

/// The input key left out of the cache key: the policy vouches for it with `cache_seconds`.
const CLOCK_KEY: &str = "now_ns";

/// The parts of the input a policy reads: the static paths after each `input`, shortest
/// first, none a prefix of another, the clock left out; one empty path when it reads the
/// input whole. Each path's names are kept as policy values, ready to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputReads {
    paths: Vec<Vec<Value>>,
}

impl InputReads {
    /// Scans Rego sources for their references to `input`. Sources that do not lex are
    /// taken to read everything (they never compile anyway).
    pub fn of_modules<'a>(sources: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        let mut paths = Vec::new();
        for (file, source) in sources {
            match input_paths(file, source) {
                Some(found) => paths.extend(found),
                None => paths.push(Vec::new()),
            }
        }
        paths.sort();
        paths.dedup();
        // Sorted, a path's prefixes come before it: keep a path only if no kept one is its prefix.
        let mut kept: Vec<Vec<String>> = Vec::new();
        for path in paths {
            if !kept.iter().any(|shorter| path.starts_with(shorter)) {
                kept.push(path);
            }
        }
        kept.retain(|path| *path != [CLOCK_KEY]);
        InputReads {
            paths: kept
                .into_iter()
                .map(|path| path.into_iter().map(Value::from).collect())
                .collect(),
        }
    }

    /// The cache key of `input`: its [`KeyBytes`] at every path, hashed as tokens are
    /// (SipHash-2-4, 128 bits, under the VM's secret key: [`TokenKey`]). The bytes tell any
    /// two inputs apart, so two requests share a key, and one gets the other's answer, only
    /// when the keyed hash collides, which no one without the VM's key can aim at (2^-128 per
    /// pair of requests). Not SHA-256: as safe while the key is secret (the plugin remembers
    /// no answers under any other: `Runtime::with_secret_key`), it costs about a tenth of a
    /// remembered decision in Wasm.
    pub fn key(&self, input: &impl InputDocument, hasher: &SecretHasher) -> TokenKey {
        hasher.key(&self.bytes(input).0)
    }

    /// Whether the policy may read anything at or under `path` (field names under `input`):
    /// a read path leads there, or goes through it, or reads the input whole.
    pub fn reaches(&self, path: &[&str]) -> bool {
        self.paths.iter().any(|read| {
            read.iter()
                .zip(path)
                .all(|(name, wanted)| name.as_string().is_ok_and(|name| **name == **wanted))
        })
    }

    /// Which of the connection's peers the policy reads.
    pub fn peers(&self) -> PeerReads {
        PeerReads {
            source: self.reaches(&["attributes", "source"]),
            destination: self.reaches(&["attributes", "destination"]),
        }
    }

    /// Whether the policy reads the request's body, as text or parsed.
    pub fn body(&self) -> bool {
        self.reaches(&["parsed_body"])
            || self.reaches(&["truncated_body"])
            || self.reaches(&["attributes", "request", "http", "body"])
    }

    /// What [`InputReads::key`] hashes: encoded first and hashed once.
    fn bytes(&self, input: &impl InputDocument) -> KeyBytes {
        let mut bytes = KeyBytes(Vec::with_capacity(256));
        for path in &self.paths {
            input.feed_key(path, &mut bytes);
        }
        bytes
    }
}

/// The paths as a policy author writes them, comma-separated: `input.agent.id`,
/// `input.headers["x-tenant"]`, or `input` for the whole document.
impl std::fmt::Display for InputReads {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, path) in self.paths.iter().enumerate() {
            out.write_str(if i == 0 { "input" } else { ", input" })?;
            for name in path {
                let name = name.as_string().map(|n| n.to_string()).unwrap_or_default();
                let plain = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if plain {
                    write!(out, ".{name}")?;
                } else {
                    write!(out, "[{}]", serde_json::Value::from(name))?;
                }
            }
        }
        Ok(())
    }
}

/// The static path after every `input` that is not itself a field (`x.input`), or `None`
/// when the source does not lex. `.name` and `["name"]` extend a path; anything else ends
/// it. A bracketed string with an escape ends it too (its text is not the key it names).
fn input_paths(file: &str, source: &str) -> Option<Vec<Vec<String>>> {
    let source = Source::from_contents(file.to_owned(), source.to_owned()).ok()?;
    let mut lexer = Lexer::new(&source);
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token().ok()?;
        if matches!(token.0, TokenKind::Eof) {
            break;
        }
        tokens.push(token);
    }
    let symbol = |i: usize, text: &str| {
        tokens
            .get(i)
            .is_some_and(|t| matches!(t.0, TokenKind::Symbol) && t.1.text() == text)
    };
    let mut paths = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let is_input = matches!(token.0, TokenKind::Ident) && token.1.text() == "input";
        if !is_input || (i > 0 && symbol(i - 1, ".")) {
            continue;
        }
        let mut path = Vec::new();
        let mut next = i + 1;
        loop {
            let name = tokens.get(next + 1).map(|t| (&t.0, t.1.text()));
            match name {
                Some((TokenKind::Ident, name)) if symbol(next, ".") => {
                    path.push(name.to_owned());
                    next += 2;
                }
                Some((TokenKind::String | TokenKind::RawString, name))
                    if symbol(next, "[") && symbol(next + 2, "]") && !name.contains('\\') =>
                {
                    path.push(name.to_owned());
                    next += 3;
                }
                _ => break,
            }
        }
        paths.push(path);
    }
    Some(paths)
}

/// The bytes a remembered answer's key is made from: the values at the paths a policy reads,
/// in order, each tagged with its kind and every string and collection with its length, so
/// two different inputs never give the same bytes. [`InputDocument`]s write them: from a
/// whole value, or (a request's input) straight from the request's parts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeyBytes(Vec<u8>);

impl KeyBytes {
    /// The value found at `path`, `None` when there is none; the whole input (an empty path)
    /// without the clock.
    pub fn found(&mut self, path: &[Value], value: Option<&Value>) {
        match value {
            None => self.0.push(b'-'),
            Some(value) if path.is_empty() => self.whole_without_clock(value),
            Some(value) => self.value(value),
        }
    }

    /// A string, as [`KeyBytes::found`] writes a string value.
    pub fn string(&mut self, text: &str) {
        self.prefix(b's', text.len());
        self.0.extend_from_slice(text.as_bytes());
    }

    /// The start of an array of `length` items, which follow.
    pub fn array(&mut self, length: usize) {
        self.prefix(b'a', length);
    }

    /// A kind tag and a length, in front of a string's bytes or a collection's items. The
    /// length in seven-bit groups, low first, the high bit set on all but the last (LEB128):
    /// one byte for the short strings a request is made of, and still read back one way only.
    fn prefix(&mut self, tag: u8, length: usize) {
        self.0.push(tag);
        let mut rest = length as u64;
        while rest >= 0x80 {
            self.0.push((rest & 0x7f) as u8 | 0x80);
            rest >>= 7;
        }
        self.0.push(rest as u8);
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.0.push(b'n'),
            Value::Bool(b) => self.0.push(if *b { b't' } else { b'f' }),
            Value::Undefined => self.0.push(b'u'),
            Value::String(s) => self.string(s),
            Value::Number(number) => {
                // The number's exact decimal text: two numbers that differ anywhere differ here.
                let text = serde_json::to_string(number).unwrap_or_default();
                self.prefix(b'#', text.len());
                self.0.extend_from_slice(text.as_bytes());
            }
            Value::Array(items) => {
                self.array(items.len());
                items.iter().for_each(|item| self.value(item));
            }
            Value::Set(items) => {
                self.prefix(b'e', items.len());
                items.iter().for_each(|item| self.value(item));
            }
            Value::Object(fields) => {
                self.prefix(b'o', fields.len());
                for (name, item) in fields.iter() {
                    self.value(name);
                    self.value(item);
                }
            }
        }
    }

    /// The whole input, for a policy that reads it whole, without the clock.
    fn whole_without_clock(&mut self, input: &Value) {
        match input {
            Value::Object(fields) => {
                let kept = || {
                    fields
                        .iter()
                        .filter(|(name, _)| name.as_string().map_or(true, |n| &**n != CLOCK_KEY))
                };
                self.prefix(b'o', kept().count());
                for (name, item) in kept() {
                    self.value(name);
                    self.value(item);
                }
            }
            other => self.value(other),
        }
    }
}

/// What served a request's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Evaluated; nothing was remembered, so nothing was looked up.
    Evaluated,
    /// Evaluated after looking for a remembered verdict in vain.
    Missed,
    /// A verdict remembered from an earlier request with the same key.
    Remembered,
}

/// Evaluates `input`, or answers from `cache` when an earlier verdict for the same key is
/// still valid at `now_s`. A verdict is remembered only when the policy said for how long.
/// The whole input is made only to be evaluated.
pub fn evaluate(
    policy: &Policy,
    cache: &mut TokenCache<Verdict>,
    hasher: &SecretHasher,
    input: &impl InputDocument,
    now_s: u64,
) -> (Verdict, Served) {
    // Keys are computed only once something was remembered, or to remember it: a policy
    // that never sets `cache_seconds` pays nothing for them, nor one that may not remember.
    let key = (!cache.is_empty()).then(|| policy.input_reads.key(input, hasher));
    if let Some(remembered) = key.as_ref().and_then(|key| cache.get(key, now_s)) {
        return (remembered.clone(), Served::Remembered);
    }
    let verdict = policy.evaluate_value(input.whole());
    let served = match key {
        Some(_) => Served::Missed,
        None => Served::Evaluated,
    };
    if let Some(seconds) = verdict.cache_seconds.filter(|_| cache.remembers()) {
        let key = key.unwrap_or_else(|| policy.input_reads.key(input, hasher));
        // No issuer: a verdict does not depend on which keys verified the token.
        cache.insert(key, "", verdict.clone(), now_s.saturating_add(seconds));
    }
    (verdict, served)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reads(source: &str) -> Vec<Vec<Value>> {
        let file = "p.rego".to_owned();
        let source = source.to_owned();
        InputReads::of_modules([(&file, &source)]).paths
    }

    fn path(parts: &[&str]) -> Vec<Value> {
        parts.iter().map(|p| Value::from(*p)).collect()
    }

    #[test]
    fn static_paths_are_followed_and_anything_else_ends_them() {
        let found = reads(
            r#"package p
            import rego.v1
            # input.in_a_comment is not a reference
            allow if {
                input.agent.id == "a"
                input.attributes["request"].http.method == "GET"
                input.parsed_path[0] == "tickets"
                some g in input.grants
                x.input.ignored == 1
                y := {"input": 1}
                input.attributes.request.http.headers["x-a\"b"] == "1"
                input.now_ns > 0
            }"#,
        );
        assert_eq!(
            found,
            vec![
                path(&["agent", "id"]),
                path(&["attributes", "request", "http", "headers"]),
                path(&["attributes", "request", "http", "method"]),
                path(&["grants"]),
                path(&["parsed_path"]),
            ]
        );
    }

    #[test]
    fn the_paths_read_as_rego() {
        let file = "p.rego".to_owned();
        let source = r#"package p
            allow if [input.agent.id, input.headers["x-tenant"], input.now_ns]"#
            .to_owned();
        let reads = InputReads::of_modules([(&file, &source)]);
        assert_eq!(
            reads.to_string(),
            r#"input.agent.id, input.headers["x-tenant"]"#
        );
        let whole = "package p\nallow if count(input) > 0".to_owned();
        assert_eq!(
            InputReads::of_modules([(&file, &whole)]).to_string(),
            "input"
        );
    }

    #[test]
    fn a_whole_read_covers_every_path() {
        for source in [
            "package p\nallow if walk(input, _)",
            "package p\nallow if input[k] == 1",
            "package p\nallow if data.q.r with input as {}",
            "package p\nimport input\nallow if input.a",
        ] {
            assert_eq!(reads(source), vec![Vec::<Value>::new()], "{source}");
        }
        assert_eq!(
            reads("package p\nimport input.agent as a\nallow if a.id == input.agent.id"),
            vec![path(&["agent"])]
        );
    }

    #[test]
    fn the_peers_are_asked_for_only_when_read() {
        let peers = |source: &str| {
            let file = "p.rego".to_owned();
            let source = format!("package p\nimport rego.v1\n{source}");
            InputReads::of_modules([(&file, &source)]).peers()
        };
        let both = PeerReads {
            source: true,
            destination: true,
        };
        let none = PeerReads::default();
        let source_only = PeerReads {
            source: true,
            destination: false,
        };
        for (rule, expected) in [
            ("allow if input.agent.id == \"a\"", none),
            ("allow if input.attributes.request.http.method == \"GET\"", none),
            (
                "allow if net.cidr_contains(\"10.0.0.0/8\", input.attributes.source.address.socketAddress.address)",
                source_only,
            ),
            ("allow if input.attributes[\"source\"]", source_only),
            ("allow if input.attributes.destination.address", PeerReads { source: false, destination: true }),
            ("allow if count(input.attributes) > 0", both),
            ("allow if walk(input, _)", both),
        ] {
            assert_eq!(peers(rule), expected, "{rule}");
        }
    }

    /// The scan reads tokens, so a reference to `input` hidden inside a string would escape
    /// it. regorus 0.14.1 has no string interpolation (OPA's `$"...{input.x}..."`); when an
    /// upgrade brings it, this fails, and the scan must learn to look inside such strings.
    #[test]
    fn strings_cannot_reference_the_input() {
        let mut engine = regorus::Engine::new();
        let added = engine.add_policy("p.rego".into(), "package p\n\nx := $\"{input.a}\"\n".into());
        assert!(added.is_err(), "regorus now interpolates strings");
    }

    /// What the key hashes: tells two inputs apart whatever the hash.
    fn key_of(reads: &InputReads, input: serde_json::Value) -> Vec<u8> {
        reads.bytes(&Value::from(input)).0
    }

    #[test]
    fn the_key_changes_with_what_is_read_and_not_with_the_clock_or_the_rest() {
        let file = "p.rego".to_owned();
        let source = "package p\nallow if [input.agent.id, input.now_ns, input.q]".to_owned();
        let reads = InputReads::of_modules([(&file, &source)]);
        let base =
            json!({"agent": {"id": "a", "owner": "o"}, "now_ns": 1, "q": [1, "x"], "other": 1});
        let key = key_of(&reads, base.clone());
        let mut later = base.clone();
        later["now_ns"] = json!(2);
        later["other"] = json!(2);
        later["agent"]["owner"] = json!("p");
        assert_eq!(key_of(&reads, later), key);
        for changed in [
            json!({"agent": {"id": "b"}, "now_ns": 1, "q": [1, "x"]}),
            json!({"agent": {"id": "a"}, "now_ns": 1, "q": [1, "y"]}),
            json!({"agent": {"id": "a"}, "now_ns": 1, "q": ["1", "x"]}),
            json!({"agent": {"id": "a"}, "now_ns": 1, "q": [1.5, "x"]}),
            json!({"agent": {"id": "a"}, "now_ns": 1, "q": [[1, "x"]]}),
            json!({"agent": {"id": "a"}, "now_ns": 1}),
            json!({"agent": {"id": "a"}, "now_ns": 1, "q": null}),
            json!({"agent": {}, "now_ns": 1, "q": [1, "x"]}),
        ] {
            assert_ne!(key_of(&reads, changed.clone()), key, "{changed}");
        }
    }

    #[test]
    fn lengths_keep_neighbouring_values_apart_at_every_size() {
        let file = "p.rego".to_owned();
        let source = "package p\nallow if input.q".to_owned();
        let reads = InputReads::of_modules([(&file, &source)]);
        let long = |n: usize| "x".repeat(n);
        let values = [
            json!(["ab", "c"]),
            json!(["a", "bc"]),
            json!(["abc"]),
            json!([long(127)]),
            json!([long(128)]),
            json!([long(127), "x"]),
            json!([long(16_383)]),
            json!([long(16_384)]),
            json!([long(16_383), "x"]),
            json!({ long(127): "" }),
            json!({ long(126): "x" }),
        ];
        let keys: std::collections::HashSet<Vec<u8>> = values
            .iter()
            .map(|q| key_of(&reads, json!({ "q": q })))
            .collect();
        assert_eq!(keys.len(), values.len());
    }

    #[test]
    fn a_whole_read_keys_on_everything_but_the_clock() {
        let file = "p.rego".to_owned();
        let source = "package p\nallow if count(input) > 0".to_owned();
        let reads = InputReads::of_modules([(&file, &source)]);
        let key = key_of(&reads, json!({"a": 1, "now_ns": 1}));
        assert_eq!(key_of(&reads, json!({"a": 1, "now_ns": 2})), key);
        assert_ne!(key_of(&reads, json!({"a": 2, "now_ns": 1})), key);
        assert_ne!(key_of(&reads, json!({"a": 1, "b": 1, "now_ns": 1})), key);
    }
}
