//! The Rego policy: compiled once per configuration, evaluated per request with a time limit,
//! its result read strictly. Anything but a well-formed answer is a denial.

use crate::config::{config_error, ConfigError};
use crate::decision_cache::InputReads;
use crate::input::PeerReads;
use crate::reason::Reason;
use regorus::utils::limits::{set_fallback_execution_timer_config, ExecutionTimerConfig};
use regorus::{Engine, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::num::NonZeroU32;

/// How many interpreter steps pass between two looks at the clock (every step is too often:
/// a clock read costs more than a step).
const TIMER_CHECK_INTERVAL: u32 = 64;

/// Longest `cache_seconds` a result may carry: a day. A verdict meant to hold longer than
/// that belongs in the configuration.
pub const MAX_CACHE_SECONDS: u64 = 86_400;

pub struct Policy {
    /// The engine the modules were compiled in, prepared (analysed and scheduled) once.
    prepared: Engine,
    /// The copy of `prepared` that evaluations run on, kept between them: an engine built
    /// for each evaluation (as regorus's `CompiledPolicy` does) sizes, fills and drops a
    /// table of every expression of the bundle each time, about a tenth of an allowed
    /// request (BENCHMARKS.md, 2026-11-25 (sixth)). regorus resets its evaluation state on
    /// each call; a failed evaluation may still leave some behind (a loop variable, a `with`
    /// override it never got to undo), so the copy is dropped after any error and the next
    /// evaluation starts from a fresh one.
    engine: RefCell<Option<Engine>>,
    /// `data.`-form reference of the decision rule.
    rule: String,
    /// Slash form, as in OPA-Envoy's `path` option and OPA decision logs.
    pub decision_path: String,
    pub name: String,
    pub revision: String,
    /// Denials are recorded, not enforced.
    pub dry_run: bool,
    timer: ExecutionTimerConfig,
    /// What the modules read of the input: the key of remembered verdicts.
    pub input_reads: InputReads,
    /// Of those, the connection's peers: what the plugin asks the host for.
    pub peer_reads: PeerReads,
    /// Whether it reads the request's body (`input.parsed_body`, `input.truncated_body`,
    /// `input.attributes.request.http.body`): only then is a body read.
    pub body_reads: bool,
}

/// What the policy said, before chaperone turns it into a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    pub reason: Reason,
    /// The policy's own reason string, when it gave one.
    pub policy_reason: Option<String>,
    pub rule: Option<String>,
    /// Deny status chosen by the policy (400..=599).
    pub http_status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// `jti`s of the grants the decision relied on.
    pub grants_used: Vec<String>,
    /// How long the same request may get this verdict without evaluating (the policy's
    /// `cache_seconds`; see `decision_cache`).
    pub cache_seconds: Option<u64>,
    /// Why the policy gave no usable answer (`policy_error`, `policy_result_invalid`), for
    /// the record: the evaluation's error, or what is wrong with the result. Never in the
    /// response.
    pub error: Option<String>,
}

/// The longest error a record keeps, in bytes.
const MAX_ERROR_BYTES: usize = 1024;

impl Verdict {
    fn failed(reason: Reason) -> Self {
        Verdict {
            allowed: false,
            reason,
            policy_reason: None,
            rule: None,
            http_status: None,
            headers: Vec::new(),
            body: None,
            grants_used: Vec::new(),
            cache_seconds: None,
            error: None,
        }
    }

    fn failed_because(reason: Reason, error: &str) -> Self {
        let mut error = crate::record::mask_credentials(error).into_owned();
        crate::record::truncate_at_char(&mut error, MAX_ERROR_BYTES);
        Verdict {
            error: Some(error),
            ..Verdict::failed(reason)
        }
    }
}

impl Policy {
    pub fn compile(
        modules: &BTreeMap<String, String>,
        data: serde_json::Value,
        decision_path: &str,
        name: String,
        revision: String,
        max_eval_ms: u64,
    ) -> Result<Policy, ConfigError> {
        let rule = rule_reference(decision_path).ok_or_else(|| {
            config_error("policy.decision_path", "must look like `package/path/rule`")
        })?;
        let mut engine = crate::builtins::engine();
        for (file, source) in modules {
            engine
                .add_policy(file.clone(), source.clone())
                .map_err(|e| config_error(format!("policy.modules[{file}]"), e.to_string()))?;
        }
        engine
            .add_data(Value::from(data))
            .map_err(|e| config_error("policy.data", e.to_string()))?;
        // An entrypoint that no module declares is a typo, not a policy that is always undefined.
        let (package, rule_name) = rule.rsplit_once('.').unwrap_or(("data", rule.as_str()));
        let declared = engine
            .get_packages()
            .map_err(|e| config_error("policy.modules", e.to_string()))?;
        let package_declared = declared.iter().any(|p| p == package);
        let rule_declared = package_declared
            && modules
                .values()
                .any(|source| declares_rule(source, rule_name));
        if !rule_declared {
            return Err(config_error(
                "policy.decision_path",
                format!(
                    "`{decision_path}` names no rule declared by the modules (looked for `{rule}`)"
                ),
            ));
        }
        // Also checks the entrypoint, and leaves the engine prepared.
        engine
            .compile_with_entrypoint(&rule.as_str().into())
            .map_err(|e| config_error("policy.modules", e.to_string()))?;
        let timer = ExecutionTimerConfig {
            limit: std::time::Duration::from_millis(max_eval_ms),
            check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
        };
        let input_reads = InputReads::of_modules(modules);
        Ok(Policy {
            peer_reads: input_reads.peers(),
            body_reads: input_reads.body(),
            input_reads,
            engine: RefCell::new(None),
            prepared: engine,
            rule,
            decision_path: decision_path.trim_matches('/').to_owned(),
            name,
            revision,
            dry_run: false,
            timer,
        })
    }

    /// Evaluates the decision rule. Never fails: errors are denials with a reason.
    pub fn evaluate(&self, input: serde_json::Value) -> Verdict {
        self.evaluate_value(Value::from(input))
    }

    /// [`Policy::evaluate`] for an input already in regorus's representation.
    pub fn evaluate_value(&self, input: Value) -> Verdict {
        let outcome = match self.engine.try_borrow_mut() {
            Ok(mut kept) => {
                let engine = kept.get_or_insert_with(|| self.prepared.clone());
                let outcome = self.run(engine, input);
                if outcome.is_err() {
                    *kept = None;
                }
                outcome
            }
            // Evaluations never nest; if one somehow did, it gets an engine of its own.
            Err(_) => self.run(&mut self.prepared.clone(), input),
        };
        verdict_of(outcome)
    }

    /// [`Policy::evaluate`] on a copy of the prepared engine made for this evaluation alone, as
    /// regorus's `CompiledPolicy` evaluates: the reference the kept engine must always agree
    /// with (`core/tests/shipped_library.rs` compares them over the shipped library).
    pub fn evaluate_on_fresh_engine(&self, input: serde_json::Value) -> Verdict {
        verdict_of(self.run(&mut self.prepared.clone(), Value::from(input)))
    }

    fn run(&self, engine: &mut Engine, input: Value) -> anyhow::Result<Value> {
        // The interpreter's limit is process-wide in regorus; set it before every evaluation
        // so two configurations sharing a VM each get their own.
        set_fallback_execution_timer_config(Some(self.timer));
        engine.set_input(input);
        engine.eval_rule(self.rule.clone())
    }
}

fn verdict_of(outcome: anyhow::Result<Value>) -> Verdict {
    match outcome {
        Err(error) => {
            Verdict::failed_because(Reason::PolicyError, &one_line(&format!("{error:#}")))
        }
        Ok(Value::Undefined) => Verdict::failed(Reason::PolicyUndefined),
        Ok(result) => read_result(&result),
    }
}

/// regorus's error report (a location line, the source line with a caret, the message) as
/// one line for a record: `p.rego:2:25: could not parse string as number`. regorus quotes
/// the values it failed on between backticks (`` Got `{"cookie": ...}` ``): those are the
/// request's, erased or not, so anything quoted that is not a plain name (`max`) becomes
/// `` `...` ``.
fn one_line(report: &str) -> String {
    let lines = || report.lines().map(str::trim);
    let location = lines().find_map(|line| line.strip_prefix("--> "));
    let message = lines().find_map(|line| line.strip_prefix("error: "));
    let text = match (location, message) {
        (Some(location), Some(message)) => format!("{location}: {message}"),
        _ => lines()
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let plain_name = |quoted: &str| {
        !quoted.is_empty()
            && quoted.len() <= 64
            && quoted
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
    };
    // Odd pieces of a split on backticks are the quoted ones.
    let mut elided = String::with_capacity(text.len());
    for (index, piece) in text.split('`').enumerate() {
        if index > 0 {
            elided.push('`');
        }
        if index % 2 == 1 && !plain_name(piece) {
            elided.push_str("...");
        } else {
            elided.push_str(piece);
        }
    }
    elided
}

/// `a/b/c` (OPA-Envoy style) or `data.a.b.c` to regorus's `data.a.b.c`.
fn rule_reference(decision_path: &str) -> Option<String> {
    let path = decision_path.trim().trim_matches('/');
    let dotted = path
        .strip_prefix("data.")
        .map_or_else(|| path.replace('/', "."), str::to_owned);
    let valid = !dotted.is_empty()
        && dotted.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !segment.as_bytes()[0].is_ascii_digit()
        });
    valid.then(|| format!("data.{dotted}"))
}

/// True when `source` defines `name` at the start of a line (`name if`, `name :=`, `default name`, ...).
fn declares_rule(source: &str, name: &str) -> bool {
    source.lines().any(|line| {
        let line = line.trim_start();
        let line = line.strip_prefix("default ").unwrap_or(line).trim_start();
        line.strip_prefix(name).is_some_and(|rest| {
            rest.chars()
                .next()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
        })
    })
}

/// Reads the rule's value by matching variants: no error values are built on the way (in
/// regorus an `as_*` mismatch allocates an error).
fn read_result(result: &Value) -> Verdict {
    match result {
        Value::Bool(allowed) => {
            let reason = if *allowed {
                Reason::PolicyAllowed
            } else {
                Reason::PolicyDenied
            };
            Verdict {
                allowed: *allowed,
                ..Verdict::failed(reason)
            }
        }
        Value::Object(object) => read_result_object(object)
            .unwrap_or_else(|error| Verdict::failed_because(Reason::PolicyResultInvalid, &error)),
        _ => Verdict::failed_because(
            Reason::PolicyResultInvalid,
            "the result is neither a boolean nor an object",
        ),
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::String(text) => Some(text),
        _ => None,
    }
}

/// The result object's fields, or what is wrong with them.
fn read_result_object(object: &regorus::value::Object) -> Result<Verdict, String> {
    const KNOWN: [&str; 8] = [
        "allowed",
        "http_status",
        "headers",
        "body",
        "reason",
        "rule",
        "grants_used",
        "cache_seconds",
    ];
    if let Some(unknown) = object
        .keys()
        .find(|k| text(k).is_none_or(|k| !KNOWN.contains(&k)))
    {
        return Err(format!(
            "the result has the key {unknown}; the keys are {}",
            KNOWN.join(", ")
        ));
    }
    let field = |name: &str| object.get(&Value::from(name));
    let allowed = match field("allowed") {
        Some(Value::Bool(allowed)) => *allowed,
        _ => return Err("`allowed` must be a boolean".to_owned()),
    };
    // Absent is fine; present must be a string.
    let optional_string = |name: &str| -> Result<Option<String>, String> {
        match field(name) {
            None => Ok(None),
            Some(value) => text(value)
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| format!("`{name}` must be a string")),
        }
    };
    let policy_reason = optional_string("reason")?;
    let rule = optional_string("rule")?;
    let body = optional_string("body")?;
    // Absent is fine; present must be a whole number in `range`.
    let whole_number = |name: &str, range: std::ops::RangeInclusive<u64>| {
        field(name)
            .map(|value| match value {
                Value::Number(number) => number.as_u64().filter(|n| range.contains(n)),
                _ => None,
            })
            .map(|number| {
                number.ok_or_else(|| {
                    format!(
                        "`{name}` must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    )
                })
            })
            .transpose()
    };
    // Within 400..=599, so it fits.
    let http_status = whole_number("http_status", 400..=599)?.map(|s| s as u16);
    let mut headers = Vec::new();
    match field("headers") {
        None => {}
        Some(Value::Object(pairs)) => {
            for (name, value) in pairs.iter() {
                let name = text(name)
                    .ok_or("`headers` names must be strings")?
                    .to_ascii_lowercase();
                let value =
                    text(value).ok_or_else(|| format!("`headers.{name}` must be a string"))?;
                let valid_name = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid_name {
                    return Err(format!("`headers`: `{name}` is not a header name"));
                }
                if crate::decision::is_identity_header(&name) {
                    return Err(format!(
                        "`headers`: `{name}` is one of chaperone's own identity headers"
                    ));
                }
                headers.push((name, crate::encoding::header_safe(value)));
            }
        }
        Some(_) => return Err("`headers` must be an object of strings".to_owned()),
    }
    let grants_used = match field("grants_used") {
        None => Some(Vec::new()),
        Some(Value::Array(jtis)) => jtis
            .iter()
            .map(|jti| text(jti).map(str::to_owned))
            .collect::<Option<Vec<_>>>(),
        Some(_) => None,
    }
    .ok_or("`grants_used` must be an array of strings")?;
    let cache_seconds = whole_number("cache_seconds", 1..=MAX_CACHE_SECONDS)?;
    let reason = if allowed {
        Reason::PolicyAllowed
    } else {
        Reason::PolicyDenied
    };
    Ok(Verdict {
        allowed,
        reason,
        policy_reason,
        rule,
        http_status,
        headers,
        body,
        grants_used,
        cache_seconds,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(source: &str, path: &str) -> Result<Policy, ConfigError> {
        let modules = BTreeMap::from([("p.rego".to_owned(), source.to_owned())]);
        Policy::compile(
            &modules,
            serde_json::json!({}),
            path,
            "p".into(),
            "r1".into(),
            50,
        )
    }

    #[test]
    fn decision_paths_accept_slash_and_data_forms() {
        assert_eq!(
            rule_reference("envoy/authz/allow").as_deref(),
            Some("data.envoy.authz.allow")
        );
        assert_eq!(rule_reference("/a/b/").as_deref(), Some("data.a.b"));
        assert_eq!(rule_reference("data.a.b").as_deref(), Some("data.a.b"));
        for bad in ["", "a//b", "a/b-c", "a/1b", "a/b c"] {
            assert_eq!(rule_reference(bad), None, "{bad}");
        }
    }

    #[test]
    fn boolean_and_object_results() {
        let p = policy("package t\nallow if input.x == 1\n", "t/allow").unwrap();
        assert!(p.evaluate(serde_json::json!({"x": 1})).allowed);
        assert_eq!(
            p.evaluate(serde_json::json!({"x": 2})).reason,
            Reason::PolicyUndefined
        );

        let p = policy(
            "package t\ndecision := {\"allowed\": false, \"reason\": \"nope\", \"rule\": \"r\", \"http_status\": 429, \"headers\": {\"Retry-After\": \"5\"}}\n",
            "t/decision",
        )
        .unwrap();
        let verdict = p.evaluate(serde_json::json!({}));
        assert!(!verdict.allowed);
        assert_eq!(verdict.policy_reason.as_deref(), Some("nope"));
        assert_eq!(verdict.rule.as_deref(), Some("r"));
        assert_eq!(verdict.http_status, Some(429));
        assert_eq!(
            verdict.headers,
            vec![("retry-after".to_owned(), "5".to_owned())]
        );
        assert_eq!(verdict.cache_seconds, None);

        let p = policy(
            "package t\ndecision := {\"allowed\": true, \"cache_seconds\": 86400}\n",
            "t/decision",
        )
        .unwrap();
        assert_eq!(
            p.evaluate(serde_json::json!({})).cache_seconds,
            Some(86_400)
        );
    }

    #[test]
    fn malformed_results_are_denials_that_say_what_is_wrong() {
        for (result, error) in [
            ("\"yes\"", "the result is neither a boolean nor an object"),
            ("{\"allowed\": \"true\"}", "`allowed` must be a boolean"),
            ("{\"allow\": true}", "the result has the key \"allow\"; the keys are allowed, http_status, headers, body, reason, rule, grants_used, cache_seconds"),
            ("{\"allowed\": false, \"reason\": 7}", "`reason` must be a string"),
            ("{\"allowed\": true, \"http_status\": 200}", "`http_status` must be a whole number from 400 to 599"),
            ("{\"allowed\": true, \"headers\": {\"x-chaperone-agent-id\": \"root\"}}", "`headers`: `x-chaperone-agent-id` is one of chaperone's own identity headers"),
            ("{\"allowed\": true, \"headers\": {\"bad name\": \"v\"}}", "`headers`: `bad name` is not a header name"),
            ("{\"allowed\": true, \"headers\": {\"a\": 1}}", "`headers.a` must be a string"),
            ("{\"allowed\": true, \"headers\": [\"a\"]}", "`headers` must be an object of strings"),
            ("{\"allowed\": true, \"grants_used\": [1]}", "`grants_used` must be an array of strings"),
            ("{\"allowed\": true, \"cache_seconds\": 0}", "`cache_seconds` must be a whole number from 1 to 86400"),
            ("{\"allowed\": true, \"cache_seconds\": -5}", "`cache_seconds` must be a whole number from 1 to 86400"),
            ("{\"allowed\": true, \"cache_seconds\": 1.5}", "`cache_seconds` must be a whole number from 1 to 86400"),
            ("{\"allowed\": true, \"cache_seconds\": \"60\"}", "`cache_seconds` must be a whole number from 1 to 86400"),
            ("{\"allowed\": true, \"cache_seconds\": 86401}", "`cache_seconds` must be a whole number from 1 to 86400"),
        ] {
            let p = policy(&format!("package t\nd := {result}\n"), "t/d").unwrap();
            let verdict = p.evaluate(serde_json::json!({}));
            assert!(!verdict.allowed, "{result}");
            assert_eq!(verdict.reason, Reason::PolicyResultInvalid, "{result}");
            assert_eq!(verdict.error.as_deref(), Some(error), "{result}");
        }
        let valid = policy("package t\nd := {\"allowed\": false}\n", "t/d").unwrap();
        assert_eq!(valid.evaluate(serde_json::json!({})).error, None);
    }

    #[test]
    fn evaluation_errors_and_timeouts_deny_and_say_why() {
        let p = policy("package t\nallow if to_number(input.n) > 3\n", "t/allow").unwrap();
        let verdict = p.evaluate(serde_json::json!({"n": "abc"}));
        assert_eq!(verdict.reason, Reason::PolicyError);
        assert_eq!(
            verdict.error.as_deref(),
            Some("p.rego:2:25: could not parse string as number")
        );
        // Values regorus quotes are the request's: they never reach the record.
        let p = policy("package t\nallow if max(input.h) > 0\n", "t/allow").unwrap();
        let verdict = p.evaluate(serde_json::json!({"h": {"cookie": "session=s3cr3t"}}));
        let error = verdict.error.unwrap_or_default();
        assert!(
            error.contains("`max`") && error.contains("`...`"),
            "{error}"
        );
        assert!(!error.contains("s3cr3t"), "{error}");
        // The error text is bounded and never carries a token.
        let header = crate::encoding::base64url_encode(b"{\"alg\":\"ES256\"}");
        let token = format!("{header}.{}.c2ln", "eA".repeat(2_000));
        let verdict = Verdict::failed_because(Reason::PolicyError, &format!("bad {token}"));
        assert_eq!(verdict.error.as_deref(), Some("bad [REDACTED-JWT]"));
        let long = "é".repeat(MAX_ERROR_BYTES);
        let verdict = Verdict::failed_because(Reason::PolicyError, &long);
        assert_eq!(verdict.error.map(|e| e.len()), Some(MAX_ERROR_BYTES));

        let slow = "package t\nallow if count([1 | some x in numbers.range(1, 3000); some y in numbers.range(1, 3000)]) > 0\n";
        let modules = BTreeMap::from([("p.rego".to_owned(), slow.to_owned())]);
        let p = Policy::compile(
            &modules,
            serde_json::json!({}),
            "t/allow",
            "p".into(),
            "".into(),
            5,
        )
        .unwrap();
        let verdict = p.evaluate(serde_json::json!({}));
        assert_eq!(verdict.reason, Reason::PolicyError);
        assert!(verdict.error.is_some());
    }

    /// Loops, comprehensions, a function, a `with` override, and an error halfway through for
    /// some inputs: the state an evaluation leaves in the engine it runs on.
    const STATEFUL: &str = "package t\nimport rego.v1\n\nflag := false\n\ndouble(x) := 2 * x\n\nflagged if flag\n\nhits contains \"flag\" if flag\n\nhits contains sprintf(\"item:%v\", [x]) if {\n\tsome x in input.items\n\tdouble(x) > 4\n}\n\nhits contains \"overridden\" if flagged with data.t.flag as true\n\nhits contains \"bad\" if to_number(input.bad) > 0\n\nhits contains sprintf(\"mode:%v\", [input.mode])\n\nbig := [x | some x in input.items; x > 2]\n\ndecision := {\"allowed\": count(hits) > 2, \"reason\": concat(\",\", hits), \"rule\": sprintf(\"%d\", [count(big)])}\n";

    #[test]
    fn a_kept_engine_answers_as_a_fresh_one() {
        use serde_json::json;
        let kept = policy(STATEFUL, "t/decision").unwrap();
        let inputs = [
            json!({"mode": "a", "items": [1, 3, 5]}),
            json!({"mode": "b", "items": [9], "bad": "x"}),
            json!({"mode": "c", "items": [9, 2], "bad": "5"}),
            json!({"mode": "d"}),
            json!({"mode": "e", "items": [7, 8], "bad": "?"}),
            json!({"mode": "f", "items": "not a list"}),
        ];
        for _round in 0..3 {
            for input in &inputs {
                let fresh = policy(STATEFUL, "t/decision").unwrap();
                assert_eq!(
                    kept.evaluate(input.clone()),
                    fresh.evaluate(input.clone()),
                    "{input}"
                );
            }
        }
        let answer = kept.evaluate(json!({"mode": "a", "items": [1, 3, 5]}));
        assert_eq!(
            answer.policy_reason.as_deref(),
            Some("item:3,item:5,mode:a,overridden")
        );
        assert_eq!(answer.rule.as_deref(), Some("2"));
    }

    /// The constructs whose state regorus keeps in its engine between statements: loops over
    /// arrays, objects and non-collections, an index shared by two collections, a function
    /// indexing by its argument, nested loops, partial sets and objects, `every`, an object
    /// comprehension, an `else` chain, and `with` on data, on input and on functions. The
    /// last `swallowed` body replaces a function by a rule that fails halfway through its loop:
    /// regorus 0.14.1 treats that failure as undefined rather than as an error, so the
    /// evaluation succeeds, the engine is kept, and the rule's loop variable stays set.
    const CONSTRUCTS: &str = r#"package t
import rego.v1

double(x) := 2 * x
triple(x) := 3 * x

kind(x) := "number" if is_number(x)
else := "string" if is_string(x)
else := "other"

admins contains n if {
	some n in input.users
	startswith(n, "admin")
}

roles[n] := r if {
	some n, r in input.roles
	r != "none"
}

paired contains i if {
	some i
	input.a[i] == input.b[i]
}

at(k) := input.b[k]

hits contains k if {
	some k in input.keys
	at(k) == 1
}

deep contains x if x := input.nested[_].items[_]

within if every k, v in input.limits {
	input.usage[k] <= v
}

doubled := {k: double(v) | some k, v in input.limits; is_number(v)}

first_big := [x | some x in input.nums; x > 3][0]

flag := false

flagged if flag

numbers contains n if {
	some i
	x := input.xs[i]
	n := to_number(x)
}

overrides contains "data" if flagged with data.t.flag as true
overrides contains "input" if input.mode == "x" with input.mode as "x"
overrides contains "value" if double(1) == 7 with double as 7
overrides contains "function" if double(2) == 6 with double as triple
overrides contains "undefined" if input.none.deep == 1 with input.none as {"deep": 2}

swallowed if double(1) with double as numbers

default kind_of := "absent"

kind_of := kind(input.k)

default mode := "none"

mode := input.mode

default parts := []

parts := [within, first_big, swallowed]

decision := {
	"allowed": count(admins) > 0,
	"reason": json.marshal([admins, roles, paired, hits, deep, doubled, kind_of, overrides, mode]),
	"rule": json.marshal(parts),
}
"#;

    fn construct_inputs() -> Vec<serde_json::Value> {
        use serde_json::json;
        vec![
            json!({"users": ["admin-a", "bob"], "roles": {"a": "r1", "b": "none"}, "a": [1, 2, 3],
                   "b": [1, 0, 3], "keys": [0, 2, 9], "nested": [{"items": [1, 2]}, {"items": [3]}],
                   "limits": {"cpu": 4, "mem": 8}, "usage": {"cpu": 1, "mem": 2}, "nums": [1, 5, 9],
                   "xs": ["1", "2"], "k": 1, "mode": "x"}),
            json!({"users": ["carol"], "roles": {"b": "none"}, "a": [7], "b": [8], "keys": [0],
                   "nested": [{"items": "no"}], "limits": {"cpu": 9}, "usage": {"cpu": 5},
                   "nums": [5], "xs": ["1", "x"], "k": "s", "mode": "y"}),
            json!({"users": "admin-root", "a": {"k": 1}, "b": {"k": 1}, "keys": ["k"],
                   "nested": [], "limits": {}, "usage": {}, "nums": [4], "xs": [], "k": []}),
            json!({"users": ["admin-z"], "roles": {"x": "y"}, "limits": {"cpu": "two"},
                   "usage": {"cpu": 1}, "nums": [2, 3], "xs": ["z"], "mode": "x"}),
            json!({"users": ["admin-q"], "a": [1, 1], "b": [1], "keys": [1, 0], "k": null,
                   "nested": [{"items": [9]}, {"other": 1}], "xs": ["3", "4", "y"]}),
            json!({}),
        ]
    }

    #[test]
    fn a_kept_engine_answers_as_a_fresh_one_whatever_came_before() {
        let kept = policy(CONSTRUCTS, "t/decision").unwrap();
        let inputs = construct_inputs();
        let check = |input: &serde_json::Value| {
            let answer = kept.evaluate(input.clone());
            assert_eq!(
                answer,
                kept.evaluate_on_fresh_engine(input.clone()),
                "{input}"
            );
            answer
        };
        let mut answers = Vec::new();
        for _round in 0..3 {
            answers.extend(inputs.iter().map(check));
        }
        // Every input right after every other, and again after that one.
        for first in &inputs {
            for second in &inputs {
                for input in [first, second, first] {
                    answers.push(check(input));
                }
            }
        }
        // The inputs reach allowed answers, denials and undefined parts, not only errors.
        assert!(answers.iter().any(|a| a.allowed));
        assert!(answers
            .iter()
            .any(|a| !a.allowed && a.reason == Reason::PolicyDenied));
        let reasons: Vec<_> = answers
            .iter()
            .filter_map(|a| a.policy_reason.as_deref())
            .collect();
        for part in ["\"data\"", "\"function\"", "\"input\""] {
            assert!(
                reasons.iter().any(|r| r.contains(part)),
                "no override {part}"
            );
        }
        let rules: Vec<_> = answers.iter().filter_map(|a| a.rule.as_deref()).collect();
        assert!(
            rules.iter().any(|r| r.ends_with(",true]")),
            "a swallowed value"
        );
        // The second input defines `within` and `first_big`; `parts` is left undefined only
        // because the rule standing in for `double` failed: the swallowed error.
        assert_eq!(kept.evaluate(inputs[1].clone()).rule.as_deref(), Some("[]"));
        // And an input the interpreter refuses (a loop over a string), which drops the engine.
        assert!(answers.iter().any(|a| a.reason == Reason::PolicyError));
    }

    #[test]
    fn a_failed_evaluation_drops_the_kept_engine() {
        let p = policy(STATEFUL, "t/decision").unwrap();
        assert!(p.engine.borrow().is_none(), "made on first use");
        p.evaluate(serde_json::json!({"mode": "a"}));
        assert!(p.engine.borrow().is_some(), "kept after an answer");
        let failed = p.evaluate(serde_json::json!({"mode": "b", "bad": "x"}));
        assert_eq!(failed.reason, Reason::PolicyError);
        assert!(p.engine.borrow().is_none(), "dropped after an error");
        assert!(
            p.evaluate(serde_json::json!({"mode": "a", "items": [3]}))
                .allowed
        );
    }

    #[test]
    fn configuration_errors_name_the_problem() {
        let err = policy("package t\nallow if {\n", "t/allow").err().unwrap();
        assert!(err.field.starts_with("policy.modules[p.rego]"), "{err}");
        let err = policy("package t\nallow := true\n", "t/allwo")
            .err()
            .unwrap();
        assert_eq!(err.field, "policy.decision_path");
        let err = policy("package t\nallow := true\n", "u/allow")
            .err()
            .unwrap();
        assert_eq!(err.field, "policy.decision_path");
    }
}
