//! chaperone's own Rego builtins: path-template matching, which every least-privilege policy
//! does on every request and which costs far more in regorus's interpreter than in Rust.
//! Every engine chaperone builds registers them (the plugin, `chaperone test`, `check`,
//! `eval`, `replay`), so a policy decides the same everywhere.
//!
//! Templates are paths whose segments are literals or placeholders: `/tickets/{id}` matches
//! `["tickets", "42"]`, and a last `{name...}` takes one or more segments
//! (`/repos/{owner}/{repo}/{rest...}`). `/` matches the root alone. Segments are
//! `input.parsed_path` (percent-decoded, empty ones dropped); a path with a `.` or `..`
//! segment matches nothing. Placeholders are not validated here: a part starting with `{` is
//! one (the library's `paths.valid` checks templates in data).
//!
//! - `chaperone.path_matches(template, segments)`: a boolean.
//! - `chaperone.entries_matching(entries, method, segments)`: the entries (objects with
//!   `methods` and `path`, such as permissions or guarded endpoints), in order, whose
//!   `methods` hold `method` and whose `path` matches. An entry without `methods` or `path`
//!   matches nothing.
//!
//! Arguments of the wrong type are evaluation errors, so the decision denies
//! (`policy_error`) rather than matching less.

use anyhow::{anyhow, bail};
use regorus::{Engine, Value};

pub const PATH_MATCHES: &str = "chaperone.path_matches";
pub const ENTRIES_MATCHING: &str = "chaperone.entries_matching";

/// A regorus engine with chaperone's builtins registered.
pub fn engine() -> Engine {
    let mut engine = Engine::new();
    crate::opa_builtins::register(&mut engine);
    // Registration fails only for a name registered twice; the policy would then fail to
    // compile, naming the unknown function.
    let _ = engine.add_extension(
        PATH_MATCHES.to_owned(),
        2,
        Box::new(|args: Vec<Value>| -> anyhow::Result<Value> {
            let [template, segments] = arguments::<2>(PATH_MATCHES, args)?;
            let template = text(PATH_MATCHES, "template", &template)?;
            let segments = strings(PATH_MATCHES, &segments)?;
            Ok(Value::from(path_matches(template, &segments)))
        }),
    );
    let methods_key = Value::from("methods");
    let path_key = Value::from("path");
    let _ = engine.add_extension(
        ENTRIES_MATCHING.to_owned(),
        3,
        Box::new(move |args: Vec<Value>| -> anyhow::Result<Value> {
            let [entries, method, segments] = arguments::<3>(ENTRIES_MATCHING, args)?;
            let method = text(ENTRIES_MATCHING, "method", &method)?;
            let segments = strings(ENTRIES_MATCHING, &segments)?;
            let entries = entries
                .as_array()
                .map_err(|_| anyhow!("{ENTRIES_MATCHING}: entries must be an array"))?;
            let mut matching = Vec::new();
            for entry in entries.iter() {
                let (methods, path) = (&entry[&methods_key], &entry[&path_key]);
                if *methods == Value::Undefined || *path == Value::Undefined {
                    continue;
                }
                if holds(ENTRIES_MATCHING, methods, method)?
                    && path_matches(text(ENTRIES_MATCHING, "path", path)?, &segments)
                {
                    matching.push(entry.clone());
                }
            }
            Ok(Value::from(matching))
        }),
    );
    engine
}

/// Whether `template` matches the path `segments`.
pub fn path_matches(template: &str, segments: &[&str]) -> bool {
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return false;
    }
    if template == "/" && segments.is_empty() {
        return true;
    }
    let Some(relative) = template.strip_prefix('/') else {
        return false; // not absolute
    };
    // Parts after the leading "/", counted then compared, without collecting them.
    let parts = relative.split('/').count();
    let takes_rest = template.ends_with("...}");
    let (fixed, count_fits) = if takes_rest {
        (parts - 1, segments.len() >= parts)
    } else {
        (parts, segments.len() == parts)
    };
    count_fits
        && relative
            .split('/')
            .take(fixed)
            .zip(segments)
            .all(|(part, segment)| part.starts_with('{') || part == *segment)
}

/// The `N` arguments of the builtin `name`, or an error naming it.
pub(crate) fn arguments<const N: usize>(
    name: &str,
    args: Vec<Value>,
) -> anyhow::Result<[Value; N]> {
    args.try_into()
        .map_err(|_| anyhow!("{name} takes {N} arguments"))
}

/// The string argument `what` of the builtin `name`, or an error naming both.
pub(crate) fn text<'a>(name: &str, what: &str, value: &'a Value) -> anyhow::Result<&'a str> {
    match value {
        Value::String(s) => Ok(s),
        _ => bail!("{name}: {what} must be a string"),
    }
}

fn strings<'a>(name: &str, segments: &'a Value) -> anyhow::Result<Vec<&'a str>> {
    let segments = segments
        .as_array()
        .map_err(|_| anyhow!("{name}: segments must be an array of strings"))?;
    segments
        .iter()
        .map(|segment| text(name, "each segment", segment))
        .collect()
}

/// Whether the array or set `methods` holds `method`.
fn holds(name: &str, methods: &Value, method: &str) -> anyhow::Result<bool> {
    let is_method = |m: &Value| matches!(m, Value::String(s) if s.as_ref() == method);
    match methods {
        Value::Array(list) => Ok(list.iter().any(is_method)),
        Value::Set(set) => Ok(set.iter().any(is_method)),
        _ => bail!("{name}: methods must be an array or a set"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn templates_match_segment_by_segment() {
        let cases: [(&str, &[&str], bool); 16] = [
            ("/", &[], true),
            ("/", &["tickets"], false),
            ("/tickets", &["tickets"], true),
            ("/tickets", &["Tickets"], false),
            ("/tickets/{id}", &["tickets", "42"], true),
            ("/tickets/{id}", &["tickets"], false),
            ("/tickets/{id}", &["tickets", "42", "comments"], false),
            (
                "/tickets/{id}/comments",
                &["tickets", "42", "comments"],
                true,
            ),
            ("/tickets/{id}/comments", &["tickets", "42", "notes"], false),
            (
                "/repos/{owner}/{repo}/{rest...}",
                &["repos", "acme", "app"],
                false,
            ),
            (
                "/repos/{owner}/{repo}/{rest...}",
                &["repos", "acme", "app", "src"],
                true,
            ),
            (
                "/repos/{owner}/{repo}/{rest...}",
                &["repos", "acme", "app", "src", "lib.rs"],
                true,
            ),
            ("/files/{path...}", &["files", "..", "etc"], false),
            ("/tickets/{id}", &["tickets", "."], false),
            ("tickets/{id}", &["tickets", "42"], false),
            ("", &[], false),
        ];
        for (template, segments, expected) in cases {
            assert_eq!(
                path_matches(template, segments),
                expected,
                "{template} against {segments:?}"
            );
        }
    }

    /// `expression` evaluated by a fresh engine with chaperone's builtins.
    pub(crate) fn evaluate(expression: &str) -> anyhow::Result<Value> {
        let mut engine = engine();
        engine.add_policy("t.rego".into(), format!("package t\n\nx := {expression}\n"))?;
        engine.eval_rule("data.t.x".into())
    }

    #[test]
    fn entries_matching_keeps_the_order_and_skips_incomplete_entries() {
        let entries = r#"[
            {"name": "b", "methods": ["GET", "POST"], "path": "/tickets/{id}"},
            {"name": "no-path", "methods": ["GET"]},
            {"name": "c", "methods": ["POST"], "path": "/tickets/{id}"},
            {"name": "a", "methods": {"GET"}, "path": "/tickets/{n}"},
            "not an object"
        ]"#;
        let names = |method: &str| {
            let found = evaluate(&format!(
                r#"[e.name | some e in chaperone.entries_matching({entries}, "{method}", ["tickets", "7"])]"#
            ))
            .unwrap();
            serde_json::to_string(&found).unwrap()
        };
        assert_eq!(names("GET"), r#"["b","a"]"#);
        assert_eq!(names("POST"), r#"["b","c"]"#);
        assert_eq!(names("DELETE"), "[]");
        assert_eq!(
            evaluate(r#"chaperone.path_matches("/tickets/{id}", ["tickets", "7"])"#).unwrap(),
            Value::from(true)
        );
    }

    /// They parse URLs, and the module's `url` has no Unicode host support (core/Cargo.toml).
    #[test]
    fn urlquery_builtins_work_without_unicode_hosts() {
        assert_eq!(
            evaluate(r#"urlquery.encode_object({"q": "a b&c", "lang": "\u00e9"})"#).unwrap(),
            Value::from("lang=%C3%A9&q=a+b%26c")
        );
        assert_eq!(
            evaluate(r#"urlquery.decode_object("a=1&a=2&b=%C3%A9")"#).unwrap(),
            Value::from_json_str(r#"{"a": ["1", "2"], "b": ["\u00e9"]}"#).unwrap()
        );
    }

    #[test]
    fn arguments_of_the_wrong_type_are_errors() {
        for expression in [
            r#"chaperone.path_matches(1, ["a"])"#,
            r#"chaperone.path_matches("/a", "a")"#,
            r#"chaperone.path_matches("/a", [1])"#,
            r#"chaperone.entries_matching({}, "GET", ["a"])"#,
            r#"chaperone.entries_matching([], 1, ["a"])"#,
            r#"chaperone.entries_matching([{"methods": "GET", "path": "/a"}], "GET", ["a"])"#,
            r#"chaperone.entries_matching([{"methods": ["GET"], "path": 7}], "GET", ["a"])"#,
        ] {
            assert!(evaluate(expression).is_err(), "{expression}");
        }
    }
}
