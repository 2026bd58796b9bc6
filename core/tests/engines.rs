#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Why chaperone evaluates with regorus's interpreter and refuses `policy.engine: "vm"`:
//! regorus 0.14.1's VM decides some policies wrongly, and some of its mistakes are allows.
//! One minimal reproducer per defect, run on the VM directly (the plugin does not ship it),
//! each failing the day upstream fixes it: then the VM is worth offering again, about twice
//! as fast (BENCHMARKS.md).

use chaperone_core::policy::Policy;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;
use regorus::{Engine, Value as RegoValue};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `data.t.allow` for this one-module policy and input: (chaperone's interpreter, regorus's VM).
fn allow_on_both(source: &str, input: Value) -> (bool, bool) {
    let modules = BTreeMap::from([("t.rego".to_owned(), source.to_owned())]);
    let interpreter = Policy::compile(&modules, json!({}), "t/allow", "t".into(), "r".into(), 50)
        .unwrap()
        .evaluate(input.clone())
        .allowed;
    let mut engine = Engine::new();
    engine.add_policy("t.rego".into(), source.into()).unwrap();
    let compiled = engine
        .compile_with_entrypoint(&"data.t.allow".into())
        .unwrap();
    let program = Compiler::compile_from_policy(&compiled, &["data.t.allow"]).unwrap();
    let mut vm = RegoVM::new_with_policy(compiled);
    vm.load_program(program);
    vm.set_input(RegoValue::from(input));
    let on_vm = vm.execute().unwrap() == RegoValue::from(true);
    (interpreter, on_vm)
}

#[test]
fn regorus_vm_lets_an_undefined_assignment_through_and_a_later_not_allows() {
    // The owner of an unknown agent is undefined, so OPA and the interpreter fail the body
    // at the assignment. The VM binds "undefined", `not owner.suspended` then holds, and an
    // agent nobody registered is allowed: a bypass in idiomatic Rego.
    let source = "package t\n\nowners := {\"known\": {\"suspended\": true}}\n\nallow if {\n\towner := owners[input.agent]\n\tnot owner.suspended\n}\n";
    let (interpreter, vm) = allow_on_both(source, json!({"agent": "unknown"}));
    assert!(!interpreter, "the interpreter denies an unknown agent");
    assert!(
        vm,
        "regorus's VM denies here now: the undefined-assignment defect is fixed upstream \
         (README, `policy.engine`)"
    );
}

#[test]
fn regorus_vm_collects_undefined_into_an_array_comprehension() {
    // `[t | t := terms(...)]` is [] when terms is undefined; the VM yields one element, so a
    // policy reading "malformed terms" as the empty list sees terms that are not there.
    let source = "package t\n\nterms(q) := n if {\n\tn := to_number(q)\n\tn >= 0\n}\n\nallow if count([t | t := terms(input.q)]) == 0\n";
    let (interpreter, vm) = allow_on_both(source, json!({"q": "-5"}));
    assert!(interpreter, "no terms: the comprehension is empty");
    assert!(
        !vm,
        "regorus's VM leaves undefined out of comprehensions now: the defect is fixed upstream"
    );
}

#[test]
fn regorus_vm_skips_an_else_after_a_body_that_iterates() {
    // The smallest policy the VM gets wrong: the first body fails inside `some ... in`, so
    // the `else` must apply.
    let source = "package t\n\nhs := [{\"g\": [\"x\"]}]\n\nf := \"first\" if {\n\tsome h in hs\n\tcount(h.g) == 0\n} else := \"second\"\n\nallow if f == \"second\"\n";
    let (interpreter, vm) = allow_on_both(source, json!({}));
    assert!(interpreter);
    assert!(
        !vm,
        "regorus's VM applies the else now: the known divergence is fixed upstream"
    );
}
