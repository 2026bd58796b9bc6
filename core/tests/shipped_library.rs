#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shipped library (`policies/agent-authz`) over a corpus of requests: every example
//! agent, standing permissions, grants, guards, windows, junk paths, with the shipped data
//! and with data that exercises the registry and break-glass. Its quick path (`decision`)
//! must answer exactly as the full steps (`complete_decision`) on every one of them, and the
//! engine a configuration keeps between evaluations exactly as one made for each.

use chaperone_core::policy::{Policy, Verdict};
use chaperone_core::reason::Reason;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod fuzz;

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

/// The library compiled with `rule` of `chaperone.authz` as its decision.
fn compile(modules: &BTreeMap<String, String>, data: Value, rule: &str) -> Policy {
    Policy::compile(
        modules,
        data,
        &format!("chaperone/authz/{rule}"),
        "agent-authz".into(),
        "r".into(),
        1000,
    )
    .unwrap()
}

/// The shipped data with a suspended agent, an offboarded owner and break-glass entries
/// (one active, one without a reason, one whose window is closed).
fn eventful(mut data: Value) -> Value {
    let root = &mut data["chaperone"];
    root["registry"]["agents"]["support-bot"]["status"] = json!("suspended");
    root["registry"]["owners"]["dave@example.com"] = json!({"status": "offboarded"});
    let push = json!([{"name": "push", "methods": ["POST"], "path": "/repos/{owner}/{repo}/branches/{branch}/commits"}]);
    let delete = json!([{"name": "delete", "methods": ["DELETE"], "path": "/repos/{owner}/{repo}/branches/{branch}"}]);
    root["break_glass"] = json!({
        "bg-1": {"agent": "coding-agent", "reason": "INC-1", "approver": "erin@example.com",
                 "start": "2026-12-05T22:00:00Z", "end": "2026-12-05T22:20:00Z", "permissions": push},
        "bg-2": {"agent": "coding-agent", "approver": "erin@example.com",
                 "start": "2026-12-05T22:00:00Z", "end": "2026-12-05T22:20:00Z", "permissions": delete},
        "bg-3": {"agent": "finance-agent", "reason": "INC-2", "approver": "erin@example.com",
                 "start": "2023-11-14T22:00:00Z", "end": "2023-11-14T22:10:00Z",
                 "permissions": [{"name": "read", "methods": ["GET"], "path": "/tickets/{id}"}]},
    });
    data
}

/// Every request of the corpus.
fn corpus() -> Vec<Value> {
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
    let mut requests_out = Vec::new();
    for agent in agents {
        for (method, path) in requests {
            for grants in &grant_sets {
                for purpose in [None, Some("support"), Some("accounts_payable")] {
                    for now in times {
                        requests_out.push(request(
                            agent,
                            method,
                            path,
                            purpose,
                            grants.clone(),
                            now,
                        ));
                    }
                }
            }
        }
    }
    requests_out
}

#[test]
fn the_quick_path_decides_like_the_full_steps_over_the_corpus() {
    let (modules, shipped) = shipped_bundle();
    let corpus = corpus();
    assert!(corpus.len() > 4000, "{}", corpus.len());
    let mut reasons = BTreeSet::new();
    for data in [shipped.clone(), eventful(shipped)] {
        let quick = compile(&modules, data.clone(), "decision");
        let full = compile(&modules, data, "complete_decision");
        for input in &corpus {
            let answer: Verdict = quick.evaluate(input.clone());
            // The quick path may add how long its answer holds; the answer is the same.
            let without_promise = Verdict {
                cache_seconds: None,
                ..answer.clone()
            };
            assert_eq!(without_promise, full.evaluate(input.clone()), "{input}");
            reasons.insert(answer.policy_reason.unwrap_or_default());
        }
    }
    // The corpus reaches the interesting outcomes, not just default denials.
    for reason in [
        "permitted",
        "protected_branch_granted",
        "payment_approved",
        "maintenance_window",
        "no_permission",
        "payment_requires_approval",
        "protected_branch_requires_grant",
        "payment_invalid",
        "break_glass",
        "break_glass_without_reason",
        "break_glass_outside_window",
        "agent_suspended",
        "owner_offboarded",
        "purpose_not_permitted",
        "no_matching_grant",
    ] {
        assert!(
            reasons.contains(reason),
            "never reached `{reason}`: {reasons:?}"
        );
    }
}

/// The kept engine (one per configuration, reused by every request) answers as an engine made
/// for each evaluation, whatever came before: the corpus in a stride that changes agent,
/// request, grants and time at every step, with inputs the library cannot read (a rule body
/// left undefined halfway, or an error, which drops the kept engine) mixed in.
#[test]
fn the_kept_engine_answers_as_a_fresh_one_in_any_order() {
    let (modules, shipped) = shipped_bundle();
    let corpus = corpus();
    let unreadable = [
        json!({}),
        json!({"agent": {"id": "coding-agent"}}),
        json!({"agent": null, "parsed_path": ["tickets", "42"]}),
        json!({"parsed_path": "tickets/42", "agent": {"id": "support-bot"}}),
    ];
    // A stride coprime with the corpus size visits every request once.
    let stride = 7919;
    assert_ne!(corpus.len() % stride, 0);
    let mut sequence = Vec::new();
    for step in 0..corpus.len() / 3 {
        sequence.push(&corpus[(step * stride) % corpus.len()]);
        if step % 40 == 0 {
            sequence.push(&unreadable[(step / 40) % unreadable.len()]);
        }
    }
    for data in [shipped.clone(), eventful(shipped)] {
        for rule in ["decision", "complete_decision"] {
            let policy = compile(&modules, data.clone(), rule);
            let mut allowed = 0;
            for input in &sequence {
                let answer = policy.evaluate((*input).clone());
                let fresh = policy.evaluate_on_fresh_engine((*input).clone());
                assert_eq!(answer, fresh, "{rule}: {input}");
                allowed += usize::from(answer.allowed);
            }
            assert!(allowed > 0 && allowed < sequence.len(), "{rule}: {allowed}");
        }
    }
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

/// The quick and full paths compiled once per test thread (a policy is not shared between
/// threads), with the corpus they are fuzzed from.
struct Compiled {
    quick: Policy,
    full: Policy,
    corpus: Vec<Value>,
}

thread_local! {
    static COMPILED: &'static Compiled = {
        let (modules, shipped) = shipped_bundle();
        let data = eventful(shipped);
        Box::leak(Box::new(Compiled {
            quick: compile(&modules, data.clone(), "decision"),
            full: compile(&modules, data, "complete_decision"),
            corpus: corpus(),
        }))
    };
}

/// Whether chaperone leaves the value at `path` of an input to the token's issuer, who may
/// put any JSON there: the agent's claims and task context, and a grant's details.
fn from_a_token(path: &[fuzz::Step]) -> bool {
    use fuzz::Step::{Item, Member};
    let member =
        |step: Option<&fuzz::Step>, name: &str| matches!(step, Some(Member(m)) if m == name);
    (member(path.first(), "agent")
        && (member(path.get(1), "claims") || member(path.get(1), "task_context")))
        || (member(path.first(), "grants")
            && matches!(path.get(1), Some(Item(_)))
            && member(path.get(2), "authorization_details"))
}

proptest! {
    /// F05: an input of the corpus with its values changed as a client or an issuer could
    /// change them (any string where chaperone puts a string, any JSON where a token's
    /// issuer decides, an item or member removed there) is answered the same by the quick
    /// path and the full steps, never with a panic, and with one of the policy's outcomes.
    #[test]
    fn the_quick_path_decides_like_the_full_steps_on_any_input(
        pick in any::<Index>(),
        edits in proptest::collection::vec(
            (any::<Index>(), "\\PC{0,12}", proptest::option::weighted(0.8, fuzz::json_value())),
            1..4,
        ),
    ) {
        let compiled = COMPILED.with(|compiled| *compiled);
        let mut input = pick.get(&compiled.corpus).clone();
        for (at, text, value) in edits {
            let paths = fuzz::paths(&input);
            let path = at.get(&paths);
            if from_a_token(path) {
                fuzz::replace(&mut input, path, value);
            } else if input.pointer(&pointer(path)).is_some_and(Value::is_string) {
                fuzz::replace(&mut input, path, Some(Value::from(text)));
            }
        }
        let answer = compiled.quick.evaluate(input.clone());
        prop_assert!(matches!(
            answer.reason,
            Reason::PolicyAllowed | Reason::PolicyDenied | Reason::PolicyUndefined | Reason::PolicyError
        ), "{:?} for {}", answer.reason, input);
        let without_promise = Verdict { cache_seconds: None, ..answer };
        prop_assert_eq!(without_promise, compiled.full.evaluate(input.clone()), "{}", input);
    }
}

/// A path as a JSON pointer.
fn pointer(path: &[fuzz::Step]) -> String {
    path.iter()
        .map(|step| match step {
            fuzz::Step::Member(name) => format!("/{}", name.replace('~', "~0").replace('/', "~1")),
            fuzz::Step::Item(i) => format!("/{i}"),
        })
        .collect()
}
