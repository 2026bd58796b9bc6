#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Just-in-time grants through the public API: real keys, real signatures, every way a grant
//! can fail to apply, and what the policy and the record see.

use chaperone_core::encoding::base64url_encode;
use chaperone_core::{decide, load, Decision, Loaded, RequestFacts, Runtime};
use jwt_simple::prelude::*;
use serde_json::{json, Value};

const AGENT_ISSUER: &str = "https://idp.test";
const GRANT_ISSUER: &str = "https://approvals.test";
const NOW: u64 = 1_800_000_000;

/// Pushing to `main` needs a grant for exactly that push; the policy says which it used.
const POLICY: &str = r#"package chaperone.authz

default decision := {"allowed": false, "reason": "needs_grant", "rule": "default_deny"}

decision := {"allowed": true, "reason": "granted", "rule": "jit", "grants_used": [g.jti]} if {
	some g in input.grants
	some detail in g.authorization_details
	detail.type == "agent_http"
	input.attributes.request.http.method in detail.actions
	input.attributes.request.http.path in detail.locations
}
"#;

struct Keys {
    agent: ES256KeyPair,
    approvals: ES256KeyPair,
}

fn jwk(key: &ES256KeyPair, kid: &str) -> Value {
    let point = key.public_key().public_key().to_bytes_uncompressed();
    json!({"kty": "EC", "crv": "P-256", "kid": kid,
           "x": base64url_encode(&point[1..33]), "y": base64url_encode(&point[33..65])})
}

fn setup(grants_extra: Value) -> (Keys, Loaded) {
    let keys = Keys {
        agent: ES256KeyPair::generate(),
        approvals: ES256KeyPair::generate(),
    };
    let mut grants = json!({"issuer": GRANT_ISSUER, "audiences": ["agents-api"],
                            "local_jwks": {"keys": [jwk(&keys.approvals, "a1")]},
                            "clock_skew_seconds": 0, "max_validity_seconds": 900});
    for (name, value) in grants_extra.as_object().unwrap() {
        grants[name] = value.clone();
    }
    let config = json!({
        "issuers": [{"issuer": AGENT_ISSUER, "audiences": ["agents-api"],
                     "local_jwks": {"keys": [jwk(&keys.agent, "k1")]}}],
        "grants": grants,
        "revocations": {"jti": ["g-revoked"]},
        "policy": {"modules": {"p.rego": POLICY}, "decision_path": "chaperone/authz/decision"},
    });
    let loaded = load(config.to_string().as_bytes()).unwrap();
    (keys, loaded)
}

/// Signs `claims` (any JSON) with `key`.
fn sign(key: &ES256KeyPair, kid: &str, claims: &Value) -> String {
    sign_typed(key, kid, "JWT", claims)
}

fn sign_typed(key: &ES256KeyPair, kid: &str, typ: &str, claims: &Value) -> String {
    use p256::ecdsa::signature::Signer;
    let header = json!({"alg": "ES256", "kid": kid, "typ": typ});
    let input = format!(
        "{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(claims.to_string().as_bytes())
    );
    let signature: p256::ecdsa::Signature = key.key_pair().as_ref().sign(input.as_bytes());
    format!("{input}.{}", base64url_encode(&signature.to_bytes()))
}

fn agent_token(keys: &Keys) -> String {
    sign(
        &keys.agent,
        "k1",
        &json!({"iss": AGENT_ISSUER, "aud": "agents-api", "sub": "coding-agent",
                "iat": NOW - 10, "exp": NOW + 600}),
    )
}

/// A grant for `coding-agent` to push to main, valid from 10 s ago for 300 s, with changes.
fn grant(keys: &Keys, changes: Value) -> String {
    grant_signed_by(&keys.approvals, changes)
}

fn grant_signed_by(key: &ES256KeyPair, changes: Value) -> String {
    let mut claims = json!({
        "iss": GRANT_ISSUER, "aud": "agents-api", "sub": "coding-agent", "jti": "g-1",
        "approver": {"sub": "bob@example.com", "type": "human"}, "reason": "release 1.2",
        "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 290,
        "authorization_details": [{"type": "agent_http", "actions": ["POST"],
                                   "locations": ["/repos/app/branches/main/commits"]}],
    });
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    sign(key, "a1", &claims)
}

fn push(loaded: &Loaded, keys: &Keys, grants: &[String], at: u64) -> Decision {
    decide(
        loaded,
        &mut Runtime::new(loaded, 1),
        &grant_facts(keys, grants, at),
    )
}

/// A request carrying the agent's token and these grants, at Unix second `at`.
fn grant_facts(keys: &Keys, grants: &[String], at: u64) -> RequestFacts {
    let bearer = format!("Bearer {}", agent_token(keys));
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), b"POST".to_vec()),
        (
            b":path".to_vec(),
            b"/repos/app/branches/main/commits".to_vec(),
        ),
        (b":authority".to_vec(), b"gw".to_vec()),
        (b"authorization".to_vec(), bearer.into_bytes()),
    ];
    for grant in grants {
        headers.push((b"agent-grant".to_vec(), grant.clone().into_bytes()));
    }
    RequestFacts {
        headers,
        decision_id: "d-1".into(),
        now_ns: at * 1_000_000_000,
        ..RequestFacts::default()
    }
}

#[test]
fn a_refused_transaction_token_is_refused_again_from_memory() {
    let (keys, _) = setup(json!({}));
    let config = json!({
        "issuers": [{"issuer": AGENT_ISSUER, "audiences": ["agents-api"],
                     "local_jwks": {"keys": [jwk(&keys.agent, "k1")]}}],
        "transaction_tokens": {"issuer": "https://txn.test", "audiences": ["agents-api"],
                               "local_jwks": {"keys": [jwk(&keys.approvals, "t1")]}},
        "policy": {"modules": {"p.rego": POLICY}, "decision_path": "chaperone/authz/decision"},
    });
    let loaded = load(config.to_string().as_bytes()).unwrap();
    // Names the transaction service's key, signed by another.
    let forged = sign_typed(
        &ES256KeyPair::generate(),
        "t1",
        "txntoken+jwt",
        &json!({"iss": "https://txn.test", "aud": "agents-api", "sub": "coding-agent",
                "txn": "T-1", "iat": NOW - 10, "exp": NOW + 60}),
    );
    let mut facts = grant_facts(&keys, &[], NOW);
    facts
        .headers
        .push((b"txn-token".to_vec(), forged.into_bytes()));
    let mut runtime = Runtime::new(&loaded, 1);
    for from_memory in [0, 1, 2] {
        let d = decide(&loaded, &mut runtime, &facts);
        assert_eq!(d.reason.code(), "txn_token_invalid");
        assert_eq!(runtime.cache_stats.rejected, from_memory);
    }
}

#[test]
fn a_refused_grant_is_refused_again_from_memory() {
    let (keys, loaded) = setup(json!({}));
    let mut runtime = Runtime::new(&loaded, 1);
    // Names the approval service's key, signed by another.
    let forged = grant_signed_by(&ES256KeyPair::generate(), json!({}));
    let expired = grant(
        &keys,
        json!({"jti": "g-old", "iat": NOW - 600, "nbf": NOW - 600, "exp": NOW - 300}),
    );
    let early = grant(
        &keys,
        json!({"jti": "g-early", "iat": NOW + 60, "nbf": NOW + 60, "exp": NOW + 300}),
    );
    let grants = [forged, expired, early];
    let expected = [
        (None, "invalid"),
        (Some("g-old".to_owned()), "expired"),
        (Some("g-early".to_owned()), "not_yet_valid"),
    ];
    for (round, from_memory) in [(1, 0), (2, 2), (3, 4)] {
        let d = decide(&loaded, &mut runtime, &grant_facts(&keys, &grants, NOW));
        assert_eq!(dropped(&d), expected, "round {round}");
        // The forged and the expired grant stand refused; one not yet valid may become
        // valid, so it is checked every time.
        assert_eq!(runtime.cache_stats.rejected, from_memory, "round {round}");
    }
}

fn dropped(decision: &Decision) -> Vec<(Option<String>, &'static str)> {
    decision
        .record
        .grants_dropped
        .iter()
        .map(|d| (d.jti.clone(), d.reason))
        .collect()
}

#[test]
fn a_grant_elevates_the_exact_request_inside_its_window() {
    let (keys, loaded) = setup(json!({}));
    assert_eq!(push(&loaded, &keys, &[], NOW).record.reason, "needs_grant");

    let d = push(&loaded, &keys, &[grant(&keys, json!({}))], NOW);
    assert!(d.allowed, "{:?}", d.record);
    assert_eq!(d.record.rule.as_deref(), Some("jit"));
    let used = &d.record.grants[0];
    assert_eq!(
        (
            used.jti.as_str(),
            used.approver.as_str(),
            used.remaining_seconds,
            used.used
        ),
        ("g-1", "bob@example.com", 290, true)
    );
    // The policy saw the grant's claims, never the grant token.
    let input = serde_json::to_value(d.record.input.as_ref().unwrap()).unwrap();
    assert_eq!(input["grants"][0]["remaining_seconds"], 290);
    assert_eq!(input["grants"][0]["reason"], "release 1.2");
    assert!(input["attributes"]["request"]["http"]["headers"]
        .get("agent-grant")
        .is_none());

    // At the end of the window the same request is refused, the grant dropped as expired.
    let d = push(&loaded, &keys, &[grant(&keys, json!({}))], NOW + 290);
    assert!(!d.allowed);
    assert_eq!(dropped(&d), [(Some("g-1".to_owned()), "expired")]);
    // A grant for another location does not apply; unused grants are recorded as such.
    let elsewhere = grant(
        &keys,
        json!({"jti": "g-2", "authorization_details": [{"type": "agent_http", "actions": ["POST"], "locations": ["/repos/app/branches/dev/commits"]}]}),
    );
    let d = push(&loaded, &keys, &[elsewhere], NOW);
    assert!(!d.allowed);
    assert_eq!(
        (d.record.grants[0].jti.as_str(), d.record.grants[0].used),
        ("g-2", false)
    );
}

#[test]
fn grants_that_do_not_apply_are_dropped_with_their_reason() {
    let (keys, loaded) = setup(json!({}));
    let other_key = ES256KeyPair::generate();
    let cases: Vec<(&str, String, Option<&str>, &str)> = vec![
        (
            "another agent",
            grant(&keys, json!({"sub": "finance-agent"})),
            Some("g-1"),
            "other_agent",
        ),
        (
            "another task",
            grant(&keys, json!({"txn": "T-9"})),
            Some("g-1"),
            "other_task",
        ),
        (
            "revoked",
            grant(&keys, json!({"jti": "g-revoked"})),
            Some("g-revoked"),
            "revoked",
        ),
        (
            "longer than max_validity_seconds",
            grant(&keys, json!({"iat": NOW - 10, "exp": NOW + 1000})),
            Some("g-1"),
            "too_long",
        ),
        (
            "not yet valid",
            grant(&keys, json!({"nbf": NOW + 60})),
            Some("g-1"),
            "not_yet_valid",
        ),
        (
            "expired",
            grant(&keys, json!({"exp": NOW - 1})),
            Some("g-1"),
            "expired",
        ),
        (
            "signed by another key",
            sign(
                &other_key,
                "a1",
                &json!({"iss": GRANT_ISSUER, "aud": "agents-api", "sub": "coding-agent", "jti": "g-1", "approver": "bob", "iat": NOW, "exp": NOW + 60, "authorization_details": [{"type": "agent_http"}]}),
            ),
            None,
            "invalid",
        ),
        (
            "no approver",
            grant(&keys, json!({"approver": null})),
            None,
            "invalid",
        ),
        (
            "no jti",
            grant(&keys, json!({"jti": null})),
            None,
            "invalid",
        ),
        (
            "details without a type",
            grant(
                &keys,
                json!({"authorization_details": [{"actions": ["POST"]}]}),
            ),
            None,
            "invalid",
        ),
        ("an agent token", agent_token(&keys), None, "invalid"),
    ];
    for (what, token, jti, reason) in cases {
        let d = push(&loaded, &keys, &[token], NOW);
        assert!(!d.allowed, "{what}");
        assert_eq!(dropped(&d), [(jti.map(str::to_owned), reason)], "{what}");
        assert!(d.record.grants.is_empty(), "{what}");
    }
}

#[test]
fn several_grants_are_read_up_to_the_limit() {
    let (keys, loaded) = setup(json!({"max_per_request": 2}));
    let bad = grant(&keys, json!({"sub": "someone-else", "jti": "g-0"}));
    let good = grant(&keys, json!({}));
    // Two headers, or one header with comma-separated grants: both count.
    let d = push(&loaded, &keys, &[bad.clone(), good.clone()], NOW);
    assert!(d.allowed);
    assert_eq!(dropped(&d), [(Some("g-0".to_owned()), "other_agent")]);
    let d = push(&loaded, &keys, &[format!("{bad}, {good}")], NOW);
    assert!(d.allowed);
    let d = push(&loaded, &keys, &[bad.clone(), bad.clone(), good], NOW);
    assert!(!d.allowed, "the third grant is beyond max_per_request");
    assert_eq!(
        d.record.grants_dropped.last().map(|g| g.reason),
        Some("too_many")
    );
    // However many more come, one entry says so.
    let flood = vec![bad; 2_000].join(",");
    let d = push(&loaded, &keys, &[flood], NOW);
    let reasons: Vec<&str> = d.record.grants_dropped.iter().map(|g| g.reason).collect();
    assert_eq!(reasons, ["other_agent", "other_agent", "too_many"]);
}

#[test]
fn grant_configuration_mistakes_name_the_field() {
    let field = |grants: Value| {
        let config = json!({
            "issuers": [{"issuer": AGENT_ISSUER, "audiences": ["a"], "local_jwks": {"keys": [jwk(&ES256KeyPair::generate(), "k")]}}],
            "grants": grants,
            "policy": {"modules": {"p.rego": POLICY}, "decision_path": "chaperone/authz/decision"},
        });
        load(config.to_string().as_bytes()).err().map(|e| e.field)
    };
    let keys = json!({"keys": [jwk(&ES256KeyPair::generate(), "a")]});
    let base = |extra: Value| {
        let mut grants =
            json!({"issuer": GRANT_ISSUER, "audiences": ["a"], "local_jwks": keys.clone()});
        for (k, v) in extra.as_object().unwrap() {
            grants[k] = v.clone();
        }
        grants
    };
    assert_eq!(
        field(base(json!({"issuer": AGENT_ISSUER}))).as_deref(),
        Some("grants.issuer")
    );
    assert_eq!(
        field(base(json!({"header": "authorization"}))).as_deref(),
        Some("grants.header")
    );
    assert_eq!(
        field(base(json!({"header": "x-chaperone-grant"}))).as_deref(),
        Some("grants.header")
    );
    assert_eq!(
        field(base(json!({"max_per_request": 0}))).as_deref(),
        Some("grants.max_per_request")
    );
    assert_eq!(
        field(base(json!({"max_validity_seconds": 0}))).as_deref(),
        Some("grants.max_validity_seconds")
    );
    assert_eq!(field(base(json!({}))), None);
}
