//! Fixtures and assertions shared by the end-to-end test files: the issuer and policy every
//! test starts from, valid claims, and the README contract for allowed and denied requests.
#![allow(dead_code)] // each test file uses its own subset

use chaperone_test_harness::tokens::now;
use chaperone_test_harness::{jwks, AgentKey, Gateway, Response};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const ISSUER: &str = "https://idp.e2e.test";
pub const AUDIENCE: &str = "agents-api";
pub const AGENT: &str = "support-bot";
pub const OWNER: &str = "alice@example.com";
pub const DECISION_PATH: &str = "chaperone/authz/decision";
pub const POLICY_NAME: &str = "e2e-authz";
pub const REVISION: &str = "e2e-rev-7";

/// GET under /tickets is allowed for any verified agent; everything else is denied.
pub const TICKETS_POLICY: &str = r#"package chaperone.authz

default decision := {"allowed": false, "reason": "not_permitted", "rule": "default_deny"}

decision := {"allowed": true, "reason": "ticket_read", "rule": "tickets.read"} if {
	input.attributes.request.http.method == "GET"
	input.parsed_path[0] == "tickets"
	input.agent.id != ""
}
"#;

// ---------------------------------------------------------------------------------------------
// Configuration, claims, fixtures

/// A test's scratch directory, removed when the test passes (kept for inspection when not).
pub struct Work(pub PathBuf);

impl Drop for Work {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn issuer(keys: &[&AgentKey]) -> Value {
    json!({"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks(keys)})
}

pub fn tickets_policy() -> Value {
    json!({"decision_path": DECISION_PATH, "name": POLICY_NAME, "revision": REVISION,
           "modules": {"tickets.rego": TICKETS_POLICY}})
}

pub fn config(keys: &[&AgentKey]) -> Value {
    json!({"issuers": [issuer(keys)], "policy": tickets_policy()})
}

/// An ES256 key (`kid` "es-1") and a gateway trusting it with the tickets policy.
pub fn es256_gateway() -> (AgentKey, Gateway) {
    let key = AgentKey::es256("es-1");
    let gateway = Gateway::start(&config(&[&key]).to_string());
    (key, gateway)
}

/// Valid agent claims: five minutes of life, an owner, a unique `jti`.
pub fn claims() -> Value {
    static NEXT_JTI: AtomicUsize = AtomicUsize::new(0);
    let now = now();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": AGENT, "owner": OWNER,
           "iat": now, "exp": now + 300,
           "jti": format!("jti-{}-{}", std::process::id(), NEXT_JTI.fetch_add(1, Ordering::Relaxed))})
}

/// [`claims`] with `changes` applied; a `null` removes the claim.
pub fn claims_with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().expect("changes are an object") {
        let object = claims.as_object_mut().expect("claims are an object");
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.clone(), value.clone());
        }
    }
    claims
}

// ---------------------------------------------------------------------------------------------
// Assertions

pub fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

pub fn decision_id_of(response: &Response) -> String {
    response
        .header_str("x-chaperone-decision-id")
        .unwrap_or_else(|| {
            panic!(
                "no x-chaperone-decision-id on a {} response: {}",
                response.status,
                response.body_text()
            )
        })
}

/// A local reply per the README: status, JSON body `{decision_id, reason, status}` (plus
/// `message`), the decision id also in `x-chaperone-decision-id`, and a matching decision
/// record. Returns the record.
pub fn assert_denied(gateway: &Gateway, response: &Response, status: u16, reason: &str) -> Value {
    assert_eq!(
        response.status,
        status,
        "expected {status} {reason}, got body {}",
        response.body_text()
    );
    let body = response.json();
    assert_eq!(body["reason"], reason, "reply body: {body}");
    assert_eq!(body["status"], status, "reply body: {body}");
    let decision_id = body["decision_id"].as_str().unwrap_or_default().to_owned();
    assert!(
        !decision_id.is_empty(),
        "reply body without decision_id: {body}"
    );
    assert_eq!(decision_id_of(response), decision_id);
    let unexpected: Vec<&String> = body
        .as_object()
        .expect("reply body is an object")
        .keys()
        .filter(|key| !["decision_id", "reason", "status", "message"].contains(&key.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "internals in the reply body: {body}");

    let record = gateway.record(&decision_id);
    assert_eq!(record["result"]["allowed"], false, "record: {record}");
    assert_eq!(record["result"]["http_status"], status, "record: {record}");
    assert_eq!(record["reason"], reason, "record: {record}");
    assert!(
        record["metrics"]["timer_total_ns"].is_u64(),
        "record: {record}"
    );
    record
}

/// A token rejection: 401 with the reason, `WWW-Authenticate` carrying `invalid_token` and the
/// reason, a record attributed to nobody, and no trace of the token in any log.
pub fn assert_token_rejected(gateway: &Gateway, response: &Response, reason: &str, token: &str) {
    let record = assert_denied(gateway, response, 401, reason);
    assert_eq!(
        response.header_str("www-authenticate").as_deref(),
        Some(
            format!(
                "Bearer realm=\"chaperone\", error=\"invalid_token\", error_description=\"{reason}\""
            )
            .as_str()
        ),
    );
    assert_eq!(
        record["agent"],
        Value::Null,
        "unverified, so unattributed: {record}"
    );
    assert_token_not_logged(gateway, token);
}

/// Sends `token` as a bearer token to an allowed route and checks it is rejected for `reason`.
pub fn assert_rejects(gateway: &Gateway, token: &str, reason: &str) {
    let response = gateway.with_token("GET", "/tickets/42", token);
    assert_token_rejected(gateway, &response, reason, token);
}

pub fn assert_upstream_not_reached(gateway: &Gateway) {
    let seen = gateway.upstream.requests();
    assert!(
        seen.is_empty(),
        "the upstream was reached: {:?}",
        seen.iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    );
}

/// Neither the claims nor the signature part of `token` appear in Envoy's log or access log.
pub fn assert_token_not_logged(gateway: &Gateway, token: &str) {
    let logs = gateway.all_logs();
    for part in token.split('.').skip(1).filter(|part| part.len() >= 16) {
        assert!(
            !logs.contains(part),
            "a raw token part is in Envoy's logs: {part}"
        );
    }
}

/// The checks every allowed request gets: 200, the decision id on the response and upstream,
/// verified identity headers upstream (each exactly once), and a complete decision record.
pub fn assert_allowed(
    gateway: &Gateway,
    response: &Response,
    key: &AgentKey,
    claims: &Value,
    method: &str,
    path: &str,
) -> Value {
    assert_eq!(response.status, 200, "body: {}", response.body_text());
    let decision_id = decision_id_of(response);
    let seen = gateway.upstream.requests();
    let upstream = seen.last().expect("the upstream received the request");
    assert_eq!(
        (upstream.method.as_str(), upstream.path.as_str()),
        (method, path)
    );
    assert!(
        upstream.header_strings("authorization").is_empty(),
        "the agent token's header stays at the gateway"
    );
    assert_eq!(upstream.header_strings("x-chaperone-agent-id"), [AGENT]);
    assert_eq!(upstream.header_strings("x-chaperone-issuer"), [ISSUER]);
    assert_eq!(
        upstream.header_strings("x-chaperone-decision-id"),
        [decision_id.as_str()]
    );
    let expected_owner: Vec<&str> = claims["owner"].as_str().into_iter().collect();
    assert_eq!(upstream.header_strings("x-chaperone-owner"), expected_owner);

    let record = gateway.record(&decision_id);
    assert_eq!(record["decision_id"], decision_id.as_str());
    assert_eq!(record["result"]["allowed"], true, "record: {record}");
    assert_eq!(record["result"]["http_status"], 200, "record: {record}");
    assert_eq!(record["agent"]["id"], AGENT, "record: {record}");
    assert_eq!(record["agent"]["issuer"], ISSUER, "record: {record}");
    assert_eq!(
        record["agent"]["owner"], claims["owner"],
        "record: {record}"
    );
    assert_eq!(record["agent"]["kid"], key.kid(), "record: {record}");
    assert_eq!(record["agent"]["jti"], claims["jti"], "record: {record}");
    assert_eq!(record["request"]["method"], method, "record: {record}");
    assert_eq!(record["request"]["path"], path, "record: {record}");
    assert!(
        record["metrics"]["timer_total_ns"].is_u64(),
        "record: {record}"
    );
    assert!(record["seq"].is_u64(), "record: {record}");
    assert!(
        record["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "record: {record}"
    );
    record
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
