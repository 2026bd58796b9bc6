//! Kong deliverables, checked the way Kong and the plugin will read them: the
//! `chaperone.meta.json` that `chaperone kong-meta` prints (schema and metric label patterns),
//! and the filter configurations in `kong/kong.yml`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use regex::Regex;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const DRAFT_04: &str = "http://json-schema.org/draft-04/schema#";

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(workspace().join(relative)).unwrap()
}

fn kong_meta() -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .arg("kong-meta")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("kong-meta prints JSON")
}

fn meta_validator(meta: &Value) -> jsonschema::Validator {
    jsonschema::draft4::new(&meta["config_schema"]).expect("config_schema is valid draft-04")
}

// --- chaperone.meta.json -----------------------------------------------------------------

#[test]
fn meta_carries_the_checked_in_schema_as_draft_04() {
    let meta = kong_meta();
    let keys: Vec<&String> = meta.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["config_schema", "metrics"]);

    let checked_in: Value = serde_json::from_str(&read("chaperone.schema.json")).unwrap();
    assert_eq!(meta["config_schema"], checked_in);
    // Kong refuses a config_schema whose $schema is anything but draft-04.
    assert_eq!(meta["config_schema"]["$schema"], DRAFT_04);
    meta_validator(&meta);
}

#[test]
fn kong_meta_takes_no_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["kong-meta", "extra"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
}

/// `(label, pattern)` pairs of the meta document.
fn label_patterns(meta: &Value) -> Vec<(String, String)> {
    let patterns = meta["metrics"]["label_patterns"].as_array().unwrap();
    assert!(!patterns.is_empty());
    patterns
        .iter()
        .map(|entry| {
            let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["label", "pattern"], "{entry}");
            (
                entry["label"].as_str().unwrap().to_owned(),
                entry["pattern"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A metric name split the way Kong's Prometheus exporter splits it: each pattern's second
/// group is its label's value, and the name ends where the first matched label starts.
/// Returns the name and the labels in the order they appear.
fn split_metric(patterns: &[(String, String)], name: &str) -> (String, Vec<(String, String)>) {
    let mut found: Vec<(usize, String, String)> = Vec::new();
    for (label, pattern) in patterns {
        let regex = Regex::new(pattern).expect("label pattern is a valid regex");
        if let Some(captures) = regex.captures(name) {
            let whole = captures.get(1).expect("pattern has an outer group");
            let value = captures.get(2).expect("pattern has a value group");
            found.push((whole.start(), label.clone(), value.as_str().to_owned()));
        }
    }
    found.sort();
    let end = found.first().map_or(name.len(), |(start, _, _)| *start);
    let labels = found.into_iter().map(|(_, l, v)| (l, v)).collect();
    (name[..end].to_owned(), labels)
}

#[test]
fn label_patterns_turn_metric_names_into_labels() {
    let patterns = label_patterns(&kong_meta());
    let labels = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(l, v)| ((*l).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(
        split_metric(
            &patterns,
            "chaperone_decisions_total_decision=allow_reason=policy_allowed"
        ),
        (
            "chaperone_decisions_total".to_owned(),
            labels(&[("decision", "allow"), ("reason", "policy_allowed")])
        )
    );
    assert_eq!(
        split_metric(&patterns, "chaperone_jwks_fetch_total_result=failure"),
        (
            "chaperone_jwks_fetch_total".to_owned(),
            labels(&[("result", "failure")])
        )
    );
    assert_eq!(
        split_metric(&patterns, "chaperone_verified_tokens"),
        ("chaperone_verified_tokens".to_owned(), Vec::new())
    );
}

#[test]
fn label_patterns_mean_the_same_as_lua_patterns() {
    // Kong applies them with Lua's string.find: keep to literals, one bracket class of
    // lower-case ranges and `_`, `+`, and the two groups, which read alike in both.
    let shape = Regex::new(r"^\(_([a-z_]+)=\(\[(?:a-z|_)+\]\+\)\)$").unwrap();
    let prometheus_label = Regex::new(r"^[a-zA-Z_][a-zA-Z0-9_]*$").unwrap();
    for (label, pattern) in label_patterns(&kong_meta()) {
        let captures = shape
            .captures(&pattern)
            .unwrap_or_else(|| panic!("`{pattern}` may read differently as a Lua pattern"));
        assert_eq!(
            &captures[1], label,
            "pattern `{pattern}` names another label"
        );
        assert!(prometheus_label.is_match(&label), "label `{label}`");
    }
}

/// Metric names written as string literals in the plugin (`{...}` placeholders of `format!`
/// stand for one lower-case word).
fn plugin_metric_names() -> Vec<String> {
    let literal = Regex::new(r#""(chaperone_[^"\s]*=[^"\s]*)""#).unwrap();
    let placeholder = Regex::new(r"\{[^}]*\}").unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(workspace().join("plugin/src")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            for captures in literal.captures_iter(&source) {
                names.push(placeholder.replace_all(&captures[1], "x").into_owned());
            }
        }
    }
    names
}

#[test]
fn every_labelled_metric_of_the_plugin_splits_cleanly() {
    let patterns = label_patterns(&kong_meta());
    let names = plugin_metric_names();
    assert!(
        names
            .iter()
            .any(|n| n == "chaperone_jwks_fetch_total_result=success"),
        "found {names:?}"
    );
    for name in names {
        let (base, labels) = split_metric(&patterns, &name);
        // Name plus `_<label>=<value>` segments must give back the whole name: a segment no
        // pattern knows, or a value that swallowed the next segment, would not.
        let rebuilt: String = labels
            .iter()
            .fold(base.clone(), |acc, (l, v)| format!("{acc}_{l}={v}"));
        assert_eq!(rebuilt, name, "labels {labels:?}");
        assert!(!base.contains('='), "{name}");
    }
}

// --- kong/kong.yml ---------------------------------------------------------------------------

/// A chaperone filter in the declarative config: where it is, and its `config`.
struct Filter {
    at: String,
    config: Value,
}

/// Every chaperone filter under a `filter_chains` list (services and routes), and every
/// chaperone entry of a `plugins` list (Kong 3.9 configures filters as plugins too).
fn chaperone_filters(node: &Value, at: &str, out: &mut Vec<Filter>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                let here = format!("{at}.{key}");
                match (key.as_str(), value) {
                    ("filter_chains", Value::Array(chains)) => {
                        for (c, chain) in chains.iter().enumerate() {
                            let filters = chain["filters"].as_array().cloned().unwrap_or_default();
                            for (f, filter) in filters.iter().enumerate() {
                                if filter["name"] == "chaperone" {
                                    out.push(Filter {
                                        at: format!("{here}[{c}].filters[{f}]"),
                                        config: filter["config"].clone(),
                                    });
                                }
                            }
                        }
                    }
                    ("plugins", Value::Array(plugins)) => {
                        for (p, plugin) in plugins.iter().enumerate() {
                            if plugin["name"] == "chaperone" {
                                out.push(Filter {
                                    at: format!("{here}[{p}]"),
                                    config: plugin["config"].clone(),
                                });
                            }
                        }
                    }
                    _ => chaperone_filters(value, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                chaperone_filters(item, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// JSON Pointers of empty arrays: Lua tables cannot tell them from empty objects, so Kong
/// may hand chaperone `{}` where it wants a list.
fn empty_arrays(node: &Value, at: &str, out: &mut Vec<String>) {
    match node {
        Value::Array(items) if items.is_empty() => out.push(at.to_owned()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                empty_arrays(item, &format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                empty_arrays(value, &format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
}

/// What would go wrong with this declarative config on Kong: the filters found, and one line
/// per problem (Kong's schema check, the plugin's parser, Kong-only rules).
fn check_declarative(yaml: &str, validator: &jsonschema::Validator) -> (Vec<String>, Vec<String>) {
    let document: Value = match serde_norway::from_str(yaml) {
        Ok(document) => document,
        Err(error) => return (Vec::new(), vec![format!("not YAML: {error}")]),
    };
    let mut problems = Vec::new();
    if document["_format_version"] != "3.0" {
        problems.push("_format_version is not \"3.0\"".to_owned());
    }
    let mut filters = Vec::new();
    chaperone_filters(&document, "", &mut filters);
    for Filter { at, config } in &filters {
        if !config.is_object() {
            problems.push(format!("{at}: config is not an object"));
            continue;
        }
        for error in validator.iter_errors(config) {
            problems.push(format!(
                "{at}: schema: {error} at {}",
                error.instance_path()
            ));
        }
        let mut empty = Vec::new();
        empty_arrays(config, "", &mut empty);
        for pointer in empty {
            problems.push(format!("{at}: empty list at {pointer}"));
        }
        let mut remotes: Vec<&Value> = config["issuers"]
            .as_array()
            .map(|issuers| issuers.iter().map(|i| &i["remote_jwks"]).collect())
            .unwrap_or_default();
        remotes.push(&config["transaction_tokens"]["remote_jwks"]);
        for remote in remotes {
            if !remote["http_uri"]["cluster"].is_null() {
                problems.push(format!(
                    "{at}: remote_jwks names a cluster; on Kong the fetch goes to host:port of the uri"
                ));
            }
        }
        // Kong JSON-encodes an object config before on_configure reads it.
        let json_text = serde_json::to_string(config).unwrap();
        match chaperone_core::load(json_text.as_bytes()) {
            Ok(chaperone_core::Loaded::Ready(_)) => {}
            Ok(chaperone_core::Loaded::Empty) => problems.push(format!("{at}: empty config")),
            Err(error) => problems.push(format!("{at}: parser: {error}")),
        }
    }
    (filters.into_iter().map(|f| f.at).collect(), problems)
}

#[test]
fn shipped_kong_yml_configs_pass_kong_and_the_plugin() {
    let validator = meta_validator(&kong_meta());
    let (filters, problems) = check_declarative(&read("kong/kong.yml"), &validator);
    assert!(problems.is_empty(), "{problems:#?}");
    // One chain on the service, one on a route: a config that went missing would otherwise
    // pass unseen.
    assert_eq!(
        filters,
        [
            ".services[0].filter_chains[0].filters[0]",
            ".services[0].routes[1].filter_chains[0].filters[0]",
        ]
    );
}

/// `text` with `line` added after the first line containing `anchor`, at the same indentation.
fn add_sibling(text: &str, anchor: &str, line: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for current in text.split_inclusive('\n') {
        out.push_str(current);
        if !done && current.contains(anchor) {
            let indent = &current[..current.len() - current.trim_start().len()];
            out.push_str(&format!("{indent}{line}\n"));
            done = true;
        }
    }
    out
}

#[test]
fn broken_kong_yml_configs_are_caught() {
    let shipped = read("kong/kong.yml");
    let validator = meta_validator(&kong_meta());
    let replace = |from: &str, to: &str| shipped.replacen(from, to, 1);
    let breakages = [
        // Schema and parser: a value outside the enum, a misspelt key, an unknown key.
        replace("unregistered: deny", "unregistered: maybe"),
        replace("algorithms: [\"ES256\"]", "algorithm: [\"ES256\"]"),
        add_sibling(&shipped, "max_delegation_depth: 3", "mode: enforce"),
        // Parser only: the schema cannot see inside Rego, nor the registry's shape.
        replace("count(granted) > 0", "count(granted) >"),
        replace("owner: carol@example.com\n", "team: carol@example.com\n"),
        // Kong only: an Envoy cluster name; an empty list.
        add_sibling(&shipped, "timeout_ms: 3000", "cluster: idp_jwks"),
        replace("agents: [\"legacy-scraper\"]", "agents: []"),
        // Not an object: Kong would pass a string config through unchecked. (The old
        // object moves under a key nobody reads.)
        replace(
            "        config:\n",
            "        config: \"{}\"\n        unused:\n",
        ),
    ];
    for (n, broken) in breakages.iter().enumerate() {
        assert_ne!(
            *broken, shipped,
            "breakage {n} no longer applies to kong/kong.yml"
        );
        let (_, problems) = check_declarative(broken, &validator);
        assert!(!problems.is_empty(), "breakage {n} not caught");
    }
    let (_, problems) = check_declarative("_format_version: \"3.0\"\nservices: [", &validator);
    assert!(!problems.is_empty());
}
