//! Strategies the fuzzing tests share (`robustness.rs`, `shipped_library.rs`).
#![allow(dead_code)] // each test file uses its own subset

use chaperone_core::encoding::base64url_encode;
use proptest::prelude::*;
use serde_json::Value;

/// A JSON value for a claim or a key field: what a careless or hostile writer would put there.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,24}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..80)
            .prop_map(|b| Value::from(base64url_encode(&b))),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One step into a JSON document: an object's member or an array's item.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Member(String),
    Item(usize),
}

/// Every path in `value`: the whole, and each member and item, outermost first.
pub fn paths(value: &Value) -> Vec<Vec<Step>> {
    let mut out = Vec::new();
    collect_paths(value, &mut Vec::new(), &mut out);
    out
}

fn collect_paths(value: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(path.clone());
    match value {
        Value::Object(fields) => {
            for (name, inner) in fields {
                path.push(Step::Member(name.clone()));
                collect_paths(inner, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                path.push(Step::Item(i));
                collect_paths(inner, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The node at `path` (from [`paths`]) replaced by `replacement`, or removed when `None`.
pub fn replace(value: &mut Value, path: &[Step], replacement: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        *value = replacement.unwrap_or(Value::Null);
        return;
    };
    let mut node = value;
    for step in parents {
        node = match step {
            Step::Member(name) => &mut node[name.as_str()],
            Step::Item(i) => &mut node[*i],
        };
    }
    match (node, last, replacement) {
        (Value::Object(fields), Step::Member(name), Some(v)) => {
            fields.insert(name.clone(), v);
        }
        (Value::Object(fields), Step::Member(name), None) => {
            fields.remove(name);
        }
        (Value::Array(items), Step::Item(i), Some(v)) => items[*i] = v,
        (Value::Array(items), Step::Item(i), None) => {
            items.remove(*i);
        }
        _ => {}
    }
}
