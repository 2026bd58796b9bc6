//! End-to-end: just-in-time access with the shipped policy library (`policies/agent-authz`)
//! through a real Envoy. A push to a protected branch is held until an approval service's grant
//! names it, the grant ends by itself, a grant for another agent, task or window (or a revoked
//! one) is dropped with its reason in the record, and a break-glass entry goes live through ECDS
//! without a restart, refused while its reason is missing.

use chaperone_test_harness::tokens::{now, rfc3339_utc};
use chaperone_test_harness::{cli_path, jwks, workspace_root, AgentKey, Gateway, GatewayOptions};
use chaperone_test_harness::{envoy::scratch_dir, Response};
use serde_json::{json, Value};
use std::process::Command;

mod support;
use support::{assert_denied, decision_id_of, AUDIENCE, DECISION_PATH, ISSUER};

const APPROVALS: &str = "https://approvals.e2e.test";
const TTS: &str = "https://tts.e2e.test";
const TRUST_DOMAIN: &str = "trust-domain.e2e";
const CODER: &str = "coding-agent";
const CODER_OWNER: &str = "carol@example.com";
const APPROVER: &str = "erin@example.com";
const PUSH_TO_MAIN: &str = "/repos/acme/app/branches/main/commits";
const PUSH_TO_FEATURE: &str = "/repos/acme/app/branches/feature-1/commits";

struct Keys {
    agent: AgentKey,
    approvals: AgentKey,
    tts: AgentKey,
}

fn keys() -> Keys {
    Keys {
        agent: AgentKey::es256("agent-1"),
        approvals: AgentKey::es256("approvals-1"),
        tts: AgentKey::es256("tts-1"),
    }
}

/// The shipped library packed by `chaperone bundle --into` around this test's issuers, grants
/// (no clock skew, windows up to 10 minutes) and revocations.
fn config(keys: &Keys) -> Value {
    let base = json!({
        "issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks(&[&keys.agent])}],
        "transaction_tokens": {"issuer": TTS, "audiences": [TRUST_DOMAIN],
                               "local_jwks": jwks(&[&keys.tts])},
        "grants": {"issuer": APPROVALS, "audiences": [AUDIENCE],
                   "local_jwks": jwks(&[&keys.approvals]),
                   "clock_skew_seconds": 0, "max_validity_seconds": 600},
        "registry": {},
        "revocations": {"jti": ["g-revoked"]},
        "policy": {"decision_path": DECISION_PATH},
    });
    let work = scratch_dir("grants-config").expect("a scratch directory");
    let base_path = work.join("base.json");
    std::fs::write(&base_path, base.to_string()).expect("base config written");
    let library = workspace_root().join("policies/agent-authz");
    let out = Command::new(cli_path())
        .arg("bundle")
        .arg(&library)
        .arg("--into")
        .arg(&base_path)
        .output()
        .expect("the chaperone CLI runs");
    assert!(
        out.status.success(),
        "bundle --into: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&work).ok();
    serde_json::from_slice(&out.stdout).expect("a JSON configuration")
}

/// `config` with these `break_glass` entries in the library's data.
fn with_break_glass(config: &Value, entries: Value) -> String {
    let mut config = config.clone();
    config["policy"]["data"]["chaperone"]["break_glass"] = entries;
    config.to_string()
}

/// Who sends a request: the agent, and the task and purpose its transaction token names.
struct Caller<'a> {
    agent: &'a str,
    owner: &'a str,
    txn: Option<(&'a str, &'a str)>,
}

const CODING_AGENT: Caller = Caller {
    agent: CODER,
    owner: CODER_OWNER,
    txn: None,
};

/// A request from `caller` with these grant headers.
fn send(
    gateway: &Gateway,
    keys: &Keys,
    caller: &Caller,
    method: &str,
    path: &str,
    grants: &[&str],
) -> Response {
    let now = now();
    let agent_token = keys.agent.mint(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": caller.agent, "owner": caller.owner,
        "iat": now, "exp": now + 300}));
    let bearer = format!("Bearer {agent_token}");
    let mut headers: Vec<(&str, &[u8])> = vec![("authorization", bearer.as_bytes())];
    headers.extend(grants.iter().map(|grant| ("agent-grant", grant.as_bytes())));
    let txn_token = caller.txn.map(|(txn, purpose)| {
        let header = json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": keys.tts.kid()});
        keys.tts.mint_with_header(
            &header,
            &json!({"iss": TTS, "aud": TRUST_DOMAIN, "sub": caller.agent, "txn": txn,
                    "scope": purpose, "iat": now, "exp": now + 60}),
        )
    });
    if let Some(txn_token) = &txn_token {
        headers.push(("txn-token", txn_token.as_bytes()));
    }
    gateway.request(method, path, &headers)
}

/// A push as `coding-agent` with these grant headers, on task `txn` if any.
fn push(
    gateway: &Gateway,
    keys: &Keys,
    path: &str,
    grants: &[&str],
    txn: Option<&str>,
) -> Response {
    let caller = Caller {
        txn: txn.map(|txn| (txn, "development")),
        ..CODING_AGENT
    };
    send(gateway, keys, &caller, "POST", path, grants)
}

/// A grant from the approval service for `coding-agent` to push to main, valid from now for
/// two minutes, with `changes` applied.
fn grant(keys: &Keys, jti: &str, changes: Value) -> String {
    let now = now();
    let mut claims = json!({
        "iss": APPROVALS, "aud": AUDIENCE, "sub": CODER, "jti": jti, "approver": APPROVER,
        "reason": "release 1.4 hotfix", "iat": now, "nbf": now, "exp": now + 120,
        "authorization_details": [{"type": "agent_http", "actions": ["POST"],
                                   "locations": [PUSH_TO_MAIN]}],
    });
    for (name, value) in changes.as_object().expect("changes are an object") {
        claims[name] = value.clone();
    }
    keys.approvals.mint(&claims)
}

fn assert_pushed(gateway: &Gateway, response: &Response, path: &str) -> Value {
    assert_eq!(response.status, 200, "body: {}", response.body_text());
    let seen = gateway.upstream.requests();
    let upstream = seen.last().expect("the upstream received the push");
    assert_eq!(
        (upstream.method.as_str(), upstream.path.as_str()),
        ("POST", path)
    );
    let record = gateway.record(&decision_id_of(response));
    assert_eq!(record["agent"]["id"], CODER, "record: {record}");
    assert_eq!(record["agent"]["owner"], CODER_OWNER, "record: {record}");
    record
}

/// The `jti`s of the grants the policy relied on, per the record.
fn used_grants(record: &Value) -> Vec<&str> {
    record["grants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|grant| grant["used"] == true)
        .filter_map(|grant| grant["jti"].as_str())
        .collect()
}

fn dropped(record: &Value) -> Vec<(String, String)> {
    record["grants_dropped"]
        .as_array()
        .map(|dropped| {
            dropped
                .iter()
                .map(|d| {
                    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
                    (text(&d["jti"]), text(&d["reason"]))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_push_to_main_waits_for_a_grant_naming_it_and_the_grant_ends_by_itself() {
    let keys = keys();
    let gateway = Gateway::start(&config(&keys).to_string());

    // Standing permission covers ordinary branches.
    let response = push(&gateway, &keys, PUSH_TO_FEATURE, &[], None);
    let record = assert_pushed(&gateway, &response, PUSH_TO_FEATURE);
    assert_eq!(record["reason"], "permitted", "record: {record}");
    assert_eq!(record["rule"], "permission:repos.push", "record: {record}");

    // Main is held without a grant.
    let response = push(&gateway, &keys, PUSH_TO_MAIN, &[], None);
    let record = assert_denied(&gateway, &response, 403, "protected_branch_requires_grant");
    assert_eq!(record["rule"], "guard.protected_branch", "record: {record}");

    // A grant naming exactly this push lifts the hold; the record says which grant, who
    // approved it and how long it had left.
    let short = grant(&keys, "g-main", json!({"exp": now() + 3}));
    let response = push(&gateway, &keys, PUSH_TO_MAIN, &[&short], None);
    let record = assert_pushed(&gateway, &response, PUSH_TO_MAIN);
    assert_eq!(
        record["reason"], "protected_branch_granted",
        "record: {record}"
    );
    assert_eq!(used_grants(&record), ["g-main"], "record: {record}");
    let used = &record["grants"][0];
    assert_eq!(used["approver"], APPROVER, "record: {record}");
    assert!(
        used["remaining_seconds"].as_u64().is_some_and(|s| s <= 3),
        "record: {record}"
    );

    // The same grant does not reach another branch's protected push.
    let response = push(
        &gateway,
        &keys,
        "/repos/acme/app/branches/production/commits",
        &[&short],
        None,
    );
    assert_denied(&gateway, &response, 403, "protected_branch_requires_grant");

    // Once its window closes (no clock skew allowed), the grant is dropped as expired.
    let deadline = now() + 5;
    let expired = loop {
        let response = push(&gateway, &keys, PUSH_TO_MAIN, &[&short], None);
        if response.status == 403 || now() > deadline {
            break response;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let record = assert_denied(&gateway, &expired, 403, "protected_branch_requires_grant");
    assert_eq!(
        dropped(&record),
        [("g-main".to_owned(), "expired".to_owned())]
    );
    assert_eq!(record["grants"], Value::Null, "record: {record}");
}

#[test]
fn grants_for_another_agent_task_or_window_and_revoked_grants_are_dropped_with_their_reason() {
    let keys = keys();
    let gateway = Gateway::start(&config(&keys).to_string());
    let forged = AgentKey::es256(keys.approvals.kid());

    let cases: Vec<(String, &str)> = vec![
        (
            grant(&keys, "g-other-agent", json!({"sub": "support-bot"})),
            "other_agent",
        ),
        (grant(&keys, "g-revoked", json!({})), "revoked"),
        (
            grant(&keys, "g-too-long", json!({"exp": now() + 3600})),
            "too_long",
        ),
        (
            grant(&keys, "g-later", json!({"nbf": now() + 60})),
            "not_yet_valid",
        ),
        (
            grant(&keys, "g-task", json!({"txn": "TASK-2"})),
            "other_task",
        ),
        (
            forged.mint(
                &json!({"iss": APPROVALS, "aud": AUDIENCE, "sub": CODER, "jti": "g-forged",
                             "approver": APPROVER, "exp": now() + 60,
                             "authorization_details": []}),
            ),
            "invalid",
        ),
    ];
    for (token, reason) in &cases {
        let response = push(&gateway, &keys, PUSH_TO_MAIN, &[token], Some("TASK-1"));
        let record = assert_denied(&gateway, &response, 403, "protected_branch_requires_grant");
        let dropped = dropped(&record);
        assert_eq!(dropped.len(), 1, "{reason}: {record}");
        assert_eq!(dropped[0].1, *reason, "record: {record}");
    }

    // A grant bound to the task the transaction token names does apply; the bad ones beside it
    // change nothing.
    let bound = grant(&keys, "g-bound", json!({"txn": "TASK-1"}));
    let bad = &cases[0].0;
    let response = push(
        &gateway,
        &keys,
        PUSH_TO_MAIN,
        &[bad, &bound],
        Some("TASK-1"),
    );
    let record = assert_pushed(&gateway, &response, PUSH_TO_MAIN);
    assert_eq!(used_grants(&record), ["g-bound"], "record: {record}");
    assert_eq!(record["agent"]["task"], "TASK-1", "record: {record}");
    assert_eq!(
        dropped(&record),
        [("g-other-agent".to_owned(), "other_agent".to_owned())]
    );
    assert!(
        gateway
            .all_logs()
            .find(&bound[bound.len() - 20..])
            .is_none(),
        "a grant was logged"
    );
}

#[test]
fn break_glass_goes_live_through_ecds_and_is_refused_without_a_reason() {
    let keys = keys();
    let now = now();
    let entry = |reason: &str, start: u64, end: u64| {
        json!({"INC-2041": {
            "agent": CODER, "reason": reason, "approver": APPROVER,
            "start": rfc3339_utc(start), "end": rfc3339_utc(end),
            "permissions": [{"name": "hotfix.push", "methods": ["POST"], "path": PUSH_TO_MAIN}],
        }})
    };
    let config = config(&keys);
    let gateway = Gateway::start_with(&GatewayOptions::ecds(), &config.to_string());
    let response = push(&gateway, &keys, PUSH_TO_MAIN, &[], None);
    assert_denied(&gateway, &response, 403, "protected_branch_requires_grant");

    // An entry without a reason lifts nothing and says why.
    assert!(
        gateway.reconfigure(&with_break_glass(&config, entry("", now - 60, now + 600))),
        "update accepted"
    );
    let response = push(&gateway, &keys, PUSH_TO_MAIN, &[], None);
    let record = assert_denied(&gateway, &response, 403, "break_glass_without_reason");
    assert_eq!(record["rule"], "break_glass:INC-2041", "record: {record}");

    // With its reason it opens the push at once, attributed to the entry.
    let reason = "INC-2041: checkout down, approval service unreachable";
    assert!(
        gateway.reconfigure(&with_break_glass(
            &config,
            entry(reason, now - 60, now + 600)
        )),
        "update accepted"
    );
    let response = push(&gateway, &keys, PUSH_TO_MAIN, &[], None);
    let record = assert_pushed(&gateway, &response, PUSH_TO_MAIN);
    assert_eq!(record["reason"], "break_glass", "record: {record}");
    assert_eq!(record["rule"], "break_glass:INC-2041", "record: {record}");

    // An entry whose window is over grants nothing.
    let closed = entry(reason, now - 900, now - 300);
    assert!(
        gateway.reconfigure(&with_break_glass(&config, closed)),
        "update accepted"
    );
    let response = push(&gateway, &keys, PUSH_TO_MAIN, &[], None);
    assert_denied(&gateway, &response, 403, "break_glass_outside_window");
}

#[test]
fn a_payment_above_the_threshold_needs_a_human_approval_for_exactly_its_terms() {
    let keys = keys();
    let gateway = Gateway::start(&config(&keys).to_string());
    let finance = Caller {
        agent: "finance-agent",
        owner: "dave@example.com",
        txn: Some(("INV-88", "accounts_payable")),
    };
    let payment = "/payments?amount=1500.00&currency=EUR&payee=ACME-42";
    let approval = |jti: &str, approver: &str, amount: &str| {
        let now = now();
        keys.approvals.mint(&json!({
            "iss": APPROVALS, "aud": AUDIENCE, "sub": "finance-agent", "jti": jti,
            "approver": approver, "iat": now, "exp": now + 300,
            "authorization_details": [{"type": "payment_initiation", "payee": "ACME-42",
                                       "instructedAmount": {"amount": amount, "currency": "EUR"}}]}))
    };

    // Within the threshold the standing permission is enough, for its purpose only.
    let small = "/payments?amount=1000.00&currency=EUR&payee=ACME-42";
    let response = send(&gateway, &keys, &finance, "POST", small, &[]);
    assert_eq!(response.status, 200, "body: {}", response.body_text());
    let reporting = Caller {
        txn: Some(("INV-88", "reporting")),
        ..finance
    };
    let response = send(&gateway, &keys, &reporting, "POST", small, &[]);
    assert_denied(&gateway, &response, 403, "purpose_not_permitted");

    // Above it: held; a service's approval or one for another amount changes nothing.
    let response = send(&gateway, &keys, &finance, "POST", payment, &[]);
    assert_denied(&gateway, &response, 403, "payment_requires_approval");
    let by_service = approval("pay-svc", "release-bot", "1500.00");
    let other_amount = approval("pay-other", APPROVER, "1499.99");
    let response = send(
        &gateway,
        &keys,
        &finance,
        "POST",
        payment,
        &[&by_service, &other_amount],
    );
    assert_denied(&gateway, &response, 403, "payment_requires_approval");

    // A human's approval of exactly these terms (written differently) releases it.
    let approved = approval("pay-1", APPROVER, "1500");
    let response = send(&gateway, &keys, &finance, "POST", payment, &[&approved]);
    assert_eq!(response.status, 200, "body: {}", response.body_text());
    let record = gateway.record(&decision_id_of(&response));
    assert_eq!(record["reason"], "payment_approved", "record: {record}");
    assert_eq!(used_grants(&record), ["pay-1"], "record: {record}");
    assert_eq!(
        record["agent"]["purpose"], "accounts_payable",
        "record: {record}"
    );

    // Repeated terms could be read differently upstream: refused.
    let repeated = "/payments?amount=1500.00&amount=1.00&currency=EUR&payee=ACME-42";
    let response = send(&gateway, &keys, &finance, "POST", repeated, &[&approved]);
    assert_denied(&gateway, &response, 403, "payment_invalid");
}
