#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The evaluation engines. Policies run on regorus's interpreter by default; its VM
//! (`policy.engine: "vm"`) is faster but regorus 0.14.1's VM decides some policies wrongly,
//! and some of its mistakes are allows. These tests pin both facts down: the corpus comparison
//! over the shipped bundle is how the divergence was found, and one minimal reproducer per
//! defect fails the day upstream fixes it.

use chaperone_core::policy::{EvaluationEngine, Policy};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The shipped bundle as `chaperone bundle` packs it: modules (tests left out) and data.
fn shipped_bundle() -> (BTreeMap<String, String>, Value) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/agent-authz");
    let mut modules = BTreeMap::new();
    let mut data = json!({});
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".rego") && !name.ends_with("_test.rego") {
                let relative = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                modules.insert(relative, std::fs::read_to_string(&path).unwrap());
            } else if name == "data.json" {
                assert_eq!(dir, root, "the shipped bundle keeps its data at the root");
                data = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            }
        }
    }
    (modules, data)
}

fn compile(engine: EvaluationEngine) -> Policy {
    let (modules, data) = shipped_bundle();
    Policy::compile_for(
        &modules,
        data,
        "chaperone/authz/decision",
        "agent-authz".into(),
        "r".into(),
        1000,
        engine,
    )
    .unwrap()
}

fn request(
    agent: &str,
    method: &str,
    path: &str,
    purpose: Option<&str>,
    grants: Value,
    now_s: u64,
) -> Value {
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    let parsed_query: serde_json::Map<String, Value> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), json!([v]))
        })
        .collect();
    json!({
        "attributes": {"request": {"http": {"method": method, "path": path, "host": "gw", "scheme": "http", "headers": {}}}},
        "parsed_path": path_only.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "parsed_query": parsed_query,
        "agent": {"id": agent, "issuer": "https://idp", "owner": null, "subject": agent, "on_behalf_of": null,
                  "delegation": [], "task": null, "purpose": purpose, "task_context": null, "registered": true,
                  "claims": {"sub": agent}},
        "grants": grants,
        "now_ns": now_s * 1_000_000_000,
    })
}

fn grant(details: Value, approver: &str) -> Value {
    json!([{"jti": "g-1", "issuer": "https://approvals", "approver": approver, "task": null, "reason": "r",
            "authorization_details": details, "not_before_ns": 0, "expires_at_ns": u64::MAX, "remaining_seconds": 60}])
}

/// Compares the engines over a corpus of requests (every example agent, standing permissions,
/// grants, guards, windows, junk): how many were compared, the inputs on which they disagree,
/// and the reasons the interpreter gave.
fn divergences() -> (usize, Vec<Value>, std::collections::BTreeSet<String>) {
    let vm = compile(EvaluationEngine::Vm);
    assert_eq!(
        vm.engine(),
        EvaluationEngine::Vm,
        "the shipped bundle compiles for the VM"
    );
    let interpreter = compile(EvaluationEngine::Interpreter);

    let push = json!([{"type": "agent_http", "actions": ["POST"], "locations": ["/repos/acme/app/branches/main/commits"]}]);
    let payment = json!([{"type": "payment_initiation", "instructedAmount": {"amount": "1500.00", "currency": "EUR"}, "payee": "ACME-42"}]);
    let times = [
        1_700_000_000u64,
        1_796_508_000,
        1_796_515_200,
        1_900_000_000,
    ];
    let agents = [
        "support-bot",
        "coding-agent",
        "finance-agent",
        "shadow-agent",
        "",
    ];
    let requests = [
        ("GET", "/tickets"),
        ("GET", "/tickets/42"),
        ("GET", "/tickets/42/attachments"),
        ("POST", "/tickets/42/comments"),
        ("DELETE", "/tickets/42"),
        ("GET", "/tickets/../admin"),
        ("POST", "/repos/acme/app/branches/feature-1/commits"),
        ("POST", "/repos/acme/app/branches/main/commits"),
        ("POST", "/repos/acme/app/branches/release-1.2/commits"),
        ("GET", "/repos/acme/app/src/lib.rs"),
        ("DELETE", "/repos/acme/app/branches/main"),
        ("POST", "/payments?amount=200.00&currency=EUR&payee=ACME-42"),
        (
            "POST",
            "/payments?amount=1500.00&currency=EUR&payee=ACME-42",
        ),
        (
            "POST",
            "/payments?amount=1500.001&currency=EUR&payee=ACME-42",
        ),
        ("POST", "/payments?amount=abc&currency=EUR&payee=ACME-42"),
        ("GET", "/"),
        ("PUT", "/admin/users/1"),
        ("POST", "/admin/search/reindex"),
    ];
    let grant_sets = [
        json!([]),
        grant(push.clone(), "bob@example.com"),
        grant(payment.clone(), "erin@example.com"),
        grant(payment, "release-bot"),
        grant(json!([{"type": "unknown"}]), "bob@example.com"),
        json!("not a list"),
    ];
    let mut compared = 0;
    let mut reasons = std::collections::BTreeSet::new();
    let mut differing = Vec::new();
    for agent in agents {
        for (method, path) in requests {
            for grants in &grant_sets {
                for purpose in [None, Some("support"), Some("accounts_payable")] {
                    for now in times {
                        let input = request(agent, method, path, purpose, grants.clone(), now);
                        let (a, b) = (
                            vm.evaluate(input.clone()),
                            interpreter.evaluate(input.clone()),
                        );
                        if a != b {
                            differing.push(input);
                        }
                        reasons.insert(b.policy_reason.unwrap_or_default());
                        compared += 1;
                    }
                }
            }
        }
    }
    (compared, differing, reasons)
}

#[test]
fn the_shipped_bundle_runs_on_the_interpreter_and_the_vm_still_diverges_on_it() {
    let (modules, data) = shipped_bundle();
    let default = Policy::compile(
        &modules,
        data,
        "chaperone/authz/decision",
        "b".into(),
        "r".into(),
        50,
    )
    .unwrap();
    assert_eq!(
        default.engine(),
        EvaluationEngine::Interpreter,
        "the default engine"
    );
    let (compared, differing, reasons) = divergences();
    assert!(compared > 4000, "{compared}");
    // The corpus reaches the interesting outcomes, not just default denials.
    for reason in [
        "permitted",
        "protected_branch_granted",
        "payment_approved",
        "maintenance_window",
        "no_permission",
        "payment_requires_approval",
        "protected_branch_requires_grant",
    ] {
        assert!(
            reasons.contains(reason),
            "never reached `{reason}`: {reasons:?}"
        );
    }
    assert!(
        !differing.is_empty(),
        "regorus's VM now decides the shipped bundle like the interpreter on all {compared} \
         requests: consider making it the default (README, `policy.engine`)"
    );
}

/// `allow` for this one-module policy and input, on each engine: (interpreter, VM).
fn allow_on_both(source: &str, input: Value) -> (bool, bool) {
    let modules = BTreeMap::from([("t.rego".to_owned(), source.to_owned())]);
    let decide = |engine| {
        Policy::compile_for(
            &modules,
            json!({}),
            "t/allow",
            "t".into(),
            "r".into(),
            50,
            engine,
        )
        .unwrap()
        .evaluate(input.clone())
        .allowed
    };
    (
        decide(EvaluationEngine::Interpreter),
        decide(EvaluationEngine::Vm),
    )
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
