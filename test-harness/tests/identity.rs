//! End-to-end: the agent identity model through a real Envoy. Token shapes (plain agent,
//! user-plus-actor, SPIFFE JWT-SVID), RFC 8693 delegation chains and `may_act`, transaction
//! tokens for task and purpose, the agent registry, revocation lists, identity headers, and a
//! revocation applied by an ECDS configuration update with no restart.

use chaperone_test_harness::tokens::now;
use chaperone_test_harness::{jwks, AgentKey, Gateway, GatewayOptions, Response};
use serde_json::{json, Value};

mod support;
use support::*;

const USER_ISSUER: &str = "https://login.e2e.test";
const SPIFFE_ISSUER: &str = "https://spire.e2e.test";
const TTS: &str = "https://tts.e2e.test";
const TRUST_DOMAIN: &str = "trust-domain.e2e";
const SPIFFE_AGENT: &str = "spiffe://prod.example.org/agents/coder";

/// Tickets for any agent unless an untrusted agent is in its delegation chain; work on a
/// task only inside its transaction, for the support purpose.
const IDENTITY_POLICY: &str = r#"package chaperone.authz

default decision := {"allowed": false, "reason": "not_permitted", "rule": "default_deny"}

decision := {"allowed": true, "reason": "ticket_read", "rule": "tickets.read"} if {
	input.attributes.request.http.method == "GET"
	input.parsed_path[0] == "tickets"
	not untrusted_delegate
}

decision := {"allowed": false, "reason": "untrusted_delegate", "rule": "delegation"} if untrusted_delegate

decision := {"allowed": true, "reason": "task_work", "rule": "tasks.work"} if {
	input.parsed_path == ["tasks", input.agent.task]
	input.agent.purpose == "support"
	input.agent.task_context.ticket == 42
}

untrusted_delegate if {
	some actor in input.agent.delegation
	actor.sub == "untrusted-bot"
}
"#;

struct Keys {
    agent: AgentKey,
    user: AgentKey,
    spiffe: AgentKey,
    tts: AgentKey,
}

fn keys() -> Keys {
    Keys {
        agent: AgentKey::es256("agent-1"),
        user: AgentKey::es256("user-1"),
        spiffe: AgentKey::es256("spire-1"),
        tts: AgentKey::es256("tts-1"),
    }
}

fn registry() -> Value {
    json!({"chaperone": {"registry": {
        "agents": {
            AGENT: {"owner": OWNER, "purposes": ["support"]},
            "coder": {"owner": "carol@example.com"},
            SPIFFE_AGENT: {"owner": "carol@example.com"},
            "retired-bot": {"owner": OWNER, "status": "decommissioned"},
            "paused-bot": {"owner": OWNER, "status": "suspended"},
            "orphan-bot": {"owner": "bob@example.com"},
            "rogue-bot": {"owner": OWNER},
        },
        "owners": {"bob@example.com": {"status": "offboarded"}},
    }}})
}

fn identity_config(keys: &Keys, registry_mode: &str) -> Value {
    json!({
        "issuers": [
            {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks(&[&keys.agent])},
            {"issuer": USER_ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks(&[&keys.user]),
             "claims": {"preset": "user_actor"}},
            {"issuer": SPIFFE_ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks(&[&keys.spiffe]),
             "claims": {"preset": "spiffe", "trust_domains": ["prod.example.org"]}},
        ],
        "transaction_tokens": {"issuer": TTS, "audiences": [TRUST_DOMAIN],
                               "local_jwks": jwks(&[&keys.tts])},
        "limits": {"max_delegation_depth": 3},
        "registry": {"unregistered": registry_mode},
        "revocations": {"jti": ["revoked-jti"], "agents": ["rogue-bot"],
                        "owners": ["mallory@example.com"],
                        "keys": [{"issuer": ISSUER, "kid": "leaked-1"}]},
        "policy": {"decision_path": DECISION_PATH, "name": POLICY_NAME, "revision": REVISION,
                   "modules": {"identity.rego": IDENTITY_POLICY}, "data": registry()},
    })
}

fn gateway(keys: &Keys, registry_mode: &str) -> Gateway {
    Gateway::start(&identity_config(keys, registry_mode).to_string())
}

/// Claims from `issuer` for subject `sub`, with `changes` applied (`null` removes).
fn token_claims(issuer: &str, sub: &str, changes: Value) -> Value {
    let mut claims = claims_with(json!({"iss": issuer, "sub": sub}));
    for (name, value) in changes.as_object().expect("an object") {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// A transaction token from the TTS for `sub`, task `txn`, purpose `scope`.
fn txn_token(keys: &Keys, sub: &str, txn: &str, scope: &str, changes: Value) -> String {
    let now = now();
    let mut claims = json!({"iss": TTS, "aud": TRUST_DOMAIN, "sub": sub, "txn": txn,
                            "scope": scope, "tctx": {"ticket": 42}, "iat": now, "exp": now + 60});
    for (name, value) in changes.as_object().expect("an object") {
        claims[name] = value.clone();
    }
    let header = json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": keys.tts.kid()});
    keys.tts.mint_with_header(&header, &claims)
}

fn get(gateway: &Gateway, path: &str, token: &str, extra: &[(&str, &[u8])]) -> Response {
    let bearer = format!("Bearer {token}");
    let mut headers: Vec<(&str, &[u8])> = vec![("authorization", bearer.as_bytes())];
    headers.extend_from_slice(extra);
    gateway.request("GET", path, &headers)
}

/// The identity headers of the last request the upstream received.
fn upstream_identity(gateway: &Gateway) -> Vec<(String, String)> {
    let seen = gateway.upstream.requests();
    let last = seen.last().expect("the upstream received the request");
    last.headers
        .iter()
        .filter(|(name, _)| name.starts_with("x-chaperone-") && name != "x-chaperone-decision-id")
        .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
        .collect()
}

fn record_of(gateway: &Gateway, response: &Response) -> Value {
    let id = response
        .header_str("x-chaperone-decision-id")
        .expect("a decision id on every response");
    gateway.record(&id)
}

/// What the upstream hears about the plain support agent: id, issuer, registered owner.
fn plain_agent_identity() -> Vec<(String, String)> {
    pairs(&[
        ("x-chaperone-agent-id", AGENT),
        ("x-chaperone-issuer", ISSUER),
        ("x-chaperone-owner", OWNER),
    ])
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn each_preset_token_shape_is_attributed() {
    let keys = keys();
    let gateway = gateway(&keys, "deny");

    // A plain agent token: `sub` is the agent; the registry names the owner.
    let plain = keys
        .agent
        .mint(&token_claims(ISSUER, AGENT, json!({"owner": null})));
    let response = get(&gateway, "/tickets/1", &plain, &[]);
    assert_eq!(response.status, 200, "{}", response.body_text());
    let record = record_of(&gateway, &response);
    assert_eq!(record["agent"]["id"], AGENT);
    assert_eq!(
        record["agent"]["owner"], OWNER,
        "the registry's owner: {record}"
    );
    assert_eq!(record["agent"]["registered"], true);
    assert_eq!(record["agent"]["delegation"], json!([]));
    assert_eq!(record["agent"]["on_behalf_of"], Value::Null);
    assert_eq!(upstream_identity(&gateway), plain_agent_identity());

    // The user-plus-actor shape: `sub` is the human, `act.sub` the agent.
    let delegated = keys.user.mint(&token_claims(
        USER_ISSUER,
        "alice@example.com",
        json!({"owner": null, "act": {"sub": "coder", "client_id": "coder-app"}}),
    ));
    let response = get(&gateway, "/tickets/1", &delegated, &[]);
    assert_eq!(response.status, 200, "{}", response.body_text());
    let record = record_of(&gateway, &response);
    assert_eq!(record["agent"]["id"], "coder");
    assert_eq!(record["agent"]["subject"], "alice@example.com");
    assert_eq!(record["agent"]["on_behalf_of"], "alice@example.com");
    assert_eq!(record["agent"]["owner"], "carol@example.com");
    assert_eq!(
        record["agent"]["delegation"],
        json!([{"sub": "coder", "client_id": "coder-app"}])
    );
    assert_eq!(
        upstream_identity(&gateway),
        pairs(&[
            ("x-chaperone-agent-id", "coder"),
            ("x-chaperone-issuer", USER_ISSUER),
            ("x-chaperone-owner", "carol@example.com"),
            ("x-chaperone-on-behalf-of", "alice@example.com"),
            ("x-chaperone-delegation", "coder"),
        ])
    );
    // The same issuer without an actor is a user's own token: not an agent.
    let users_own = keys
        .user
        .mint(&token_claims(USER_ISSUER, "alice@example.com", json!({})));
    let response = get(&gateway, "/tickets/1", &users_own, &[]);
    assert_token_rejected(&gateway, &response, "claim_invalid", &users_own);

    // A SPIFFE JWT-SVID: `sub` is the SPIFFE ID, from an allowed trust domain only.
    let svid = keys.spiffe.mint(&token_claims(
        SPIFFE_ISSUER,
        SPIFFE_AGENT,
        json!({"owner": null}),
    ));
    let response = get(&gateway, "/tickets/1", &svid, &[]);
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert_eq!(record_of(&gateway, &response)["agent"]["id"], SPIFFE_AGENT);
    let foreign = keys.spiffe.mint(&token_claims(
        SPIFFE_ISSUER,
        "spiffe://dev.example.org/agents/coder",
        json!({}),
    ));
    let response = get(&gateway, "/tickets/1", &foreign, &[]);
    assert_token_rejected(&gateway, &response, "claim_invalid", &foreign);
}

#[test]
fn delegation_chains_reach_the_policy_the_record_and_the_upstream() {
    let keys = keys();
    let gateway = gateway(&keys, "deny");
    let chain = |actors: &[&str], extra: Value| {
        // Nest `act` claims, current actor outermost.
        let mut act = Value::Null;
        for actor in actors.iter().rev() {
            act = if act.is_null() {
                json!({"sub": actor})
            } else {
                json!({"sub": actor, "act": act})
            };
        }
        let mut changes = json!({"act": act});
        for (name, value) in extra.as_object().expect("an object") {
            changes[name] = value.clone();
        }
        keys.user
            .mint(&token_claims(USER_ISSUER, "alice@example.com", changes))
    };

    // Three hops: coder acts for planner, which acts for router, all for alice.
    let three = chain(&["coder", "planner", "router"], json!({}));
    let response = get(&gateway, "/tickets/1", &three, &[]);
    assert_eq!(response.status, 200, "{}", response.body_text());
    let record = record_of(&gateway, &response);
    let actors: Vec<&str> = record["agent"]["delegation"]
        .as_array()
        .expect("a chain")
        .iter()
        .map(|a| a["sub"].as_str().expect("sub"))
        .collect();
    assert_eq!(actors, ["coder", "planner", "router"]);
    assert!(upstream_identity(&gateway).contains(&(
        "x-chaperone-delegation".to_owned(),
        "coder,planner,router".to_owned()
    )));

    // The policy sees the chain: an untrusted agent anywhere in it is refused.
    let tainted = chain(&["coder", "untrusted-bot", "router"], json!({}));
    let response = get(&gateway, "/tickets/1", &tainted, &[]);
    let record = assert_denied(&gateway, &response, 403, "untrusted_delegate");
    assert_eq!(record["agent"]["id"], "coder");

    // One hop deeper than limits.max_delegation_depth (3).
    let deep = chain(&["coder", "a", "b", "c"], json!({}));
    let response = get(&gateway, "/tickets/1", &deep, &[]);
    assert_denied(&gateway, &response, 403, "delegation_too_deep");

    // may_act names who may act for the subject; coder is not it.
    let refused = chain(&["coder"], json!({"may_act": {"sub": "planner"}}));
    let response = get(&gateway, "/tickets/1", &refused, &[]);
    assert_token_rejected(&gateway, &response, "delegation_not_allowed", &refused);
    let allowed = chain(&["coder"], json!({"may_act": {"sub": "coder"}}));
    assert_eq!(get(&gateway, "/tickets/1", &allowed, &[]).status, 200);
    assert_eq!(
        gateway.upstream.request_count(),
        2,
        "only the two allowed requests reached the upstream"
    );
}

#[test]
fn transaction_tokens_bind_task_and_purpose_to_the_agent() {
    let keys = keys();
    let gateway = gateway(&keys, "deny");
    let agent = keys.agent.mint(&claims());
    let txn = txn_token(&keys, AGENT, "T-42", "support", json!({}));

    let response = get(
        &gateway,
        "/tasks/T-42",
        &agent,
        &[("txn-token", txn.as_bytes())],
    );
    assert_eq!(response.status, 200, "{}", response.body_text());
    let record = record_of(&gateway, &response);
    assert_eq!(
        record["reason"], "task_work",
        "the policy saw task, purpose, context"
    );
    assert_eq!(record["agent"]["task"], "T-42");
    assert_eq!(record["agent"]["purpose"], "support");
    let identity = upstream_identity(&gateway);
    assert!(
        identity.contains(&("x-chaperone-task".into(), "T-42".into())),
        "{identity:?}"
    );
    assert!(
        identity.contains(&("x-chaperone-purpose".into(), "support".into())),
        "{identity:?}"
    );
    let seen = gateway.upstream.requests();
    assert_eq!(
        seen.last().expect("seen").header_strings("txn-token"),
        std::slice::from_ref(&txn),
        "the transaction token travels on within the trust domain"
    );
    assert_token_not_logged(&gateway, &txn);

    // Without a transaction, there is no task to work on.
    let response = get(&gateway, "/tasks/T-42", &agent, &[]);
    assert_denied(&gateway, &response, 403, "not_permitted");

    let stale = now() - 600;
    let wrong_typ = keys
        .tts
        .mint(&json!({"iss": TTS, "aud": TRUST_DOMAIN, "sub": AGENT,
                                          "txn": "T-42", "iat": now(), "exp": now() + 60}));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "for another subject",
            txn_token(&keys, "other-bot", "T-42", "support", json!({})),
            401,
            "txn_token_mismatch",
        ),
        (
            "typ JWT instead of txntoken+jwt",
            wrong_typ,
            401,
            "txn_token_invalid",
        ),
        (
            "expired",
            txn_token(
                &keys,
                AGENT,
                "T-42",
                "support",
                json!({"iat": stale, "exp": stale + 60}),
            ),
            401,
            "txn_token_invalid",
        ),
        (
            "no txn",
            txn_token(&keys, AGENT, "T-42", "support", json!({"txn": null})),
            401,
            "txn_token_invalid",
        ),
        (
            "signed by the agent's key",
            keys.agent.mint_with_header(
                &json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": keys.tts.kid()}),
                &json!({"iss": TTS, "aud": TRUST_DOMAIN, "sub": AGENT, "txn": "T-42",
                        "iat": now(), "exp": now() + 60}),
            ),
            401,
            "txn_token_invalid",
        ),
        (
            "a purpose the registry does not allow this agent",
            txn_token(&keys, AGENT, "T-42", "payments", json!({})),
            403,
            "purpose_not_allowed",
        ),
    ];
    for (case, txn, status, reason) in cases {
        let response = get(
            &gateway,
            "/tasks/T-42",
            &agent,
            &[("txn-token", txn.as_bytes())],
        );
        let record = assert_denied(&gateway, &response, status, reason);
        assert_eq!(record["agent"]["id"], AGENT, "{case}: attributed: {record}");
    }
    // Two transaction tokens are never resolved by picking one.
    let response = get(
        &gateway,
        "/tasks/T-42",
        &agent,
        &[("txn-token", txn.as_bytes()), ("txn-token", txn.as_bytes())],
    );
    assert_denied(&gateway, &response, 401, "txn_token_invalid");
}

#[test]
fn the_registry_decides_who_may_act_at_all() {
    let keys = keys();
    let gateway = gateway(&keys, "deny");
    for (agent, reason) in [
        ("retired-bot", "agent_decommissioned"),
        ("paused-bot", "agent_suspended"),
        ("orphan-bot", "owner_offboarded"),
        ("shadow-bot", "agent_unregistered"),
    ] {
        let token = keys.agent.mint(&token_claims(ISSUER, agent, json!({})));
        let response = get(&gateway, "/tickets/1", &token, &[]);
        let record = assert_denied(&gateway, &response, 403, reason);
        assert_eq!(record["agent"]["id"], agent, "attributed: {record}");
    }
    assert_upstream_not_reached(&gateway);
}

#[test]
fn unregistered_agents_are_flagged_during_rollout() {
    let keys = keys();
    let gateway = gateway(&keys, "flag");
    let token = keys.agent.mint(&token_claims(
        ISSUER,
        "shadow-bot",
        json!({"owner": "eve@example.com"}),
    ));
    let response = get(&gateway, "/tickets/1", &token, &[]);
    assert_eq!(response.status, 200, "{}", response.body_text());
    let record = record_of(&gateway, &response);
    assert_eq!(record["flags"], json!(["unregistered_agent"]));
    assert_eq!(record["agent"]["registered"], false);
    assert_eq!(
        record["agent"]["owner"], "eve@example.com",
        "the token's claim"
    );
    // Registered agents carry no flag, and the registry still refuses the decommissioned.
    let response = get(&gateway, "/tickets/1", &keys.agent.mint(&claims()), &[]);
    assert!(record_of(&gateway, &response).get("flags").is_none());
    let retired = keys
        .agent
        .mint(&token_claims(ISSUER, "retired-bot", json!({})));
    let response = get(&gateway, "/tickets/1", &retired, &[]);
    assert_denied(&gateway, &response, 403, "agent_decommissioned");
}

#[test]
fn revocation_lists_void_tokens_keys_agents_and_owners() {
    let keys = keys();
    let gateway = gateway(&keys, "deny");
    let leaked = AgentKey::es256("leaked-1");
    let mut config = identity_config(&keys, "deny");
    config["issuers"][0]["local_jwks"] = jwks(&[&keys.agent, &leaked]);
    drop(gateway);
    let gateway = Gateway::start(&config.to_string());
    let cases = [
        (
            keys.agent.mint(&claims_with(json!({"jti": "revoked-jti"}))),
            401,
            "jti",
            "revoked-jti",
        ),
        (leaked.mint(&claims()), 401, "keys", "leaked-1"),
        (
            keys.agent
                .mint(&token_claims(ISSUER, "rogue-bot", json!({}))),
            403,
            "agents",
            "rogue-bot",
        ),
        (
            keys.user.mint(&token_claims(
                USER_ISSUER,
                "alice@example.com",
                json!({"act": {"sub": "coder", "act": {"sub": "rogue-bot"}}}),
            )),
            403,
            "agents",
            "rogue-bot",
        ),
    ];
    for (token, status, list, value) in cases {
        let response = get(&gateway, "/tickets/1", &token, &[]);
        let record = assert_denied(&gateway, &response, status, "revoked");
        assert_eq!(
            record["revoked"],
            json!({"list": list, "value": value}),
            "{record}"
        );
    }
    assert_upstream_not_reached(&gateway);
}

#[test]
fn client_supplied_identity_headers_never_pass_even_with_delegation_and_tasks() {
    let keys = keys();
    let gateway = gateway(&keys, "deny");
    let token = keys.agent.mint(&claims());
    let spoofs: [(&str, &[u8]); 5] = [
        ("x-chaperone-delegation", b"root-bot"),
        ("x-chaperone-task", b"T-admin"),
        ("x-chaperone-on-behalf-of", b"ceo@example.com"),
        ("X-Chaperone-Purpose", b"payments"),
        ("x-chaperone-owner", b"mallory@example.com"),
    ];
    let response = get(&gateway, "/tickets/1", &token, &spoofs);
    assert_eq!(response.status, 200);
    assert_eq!(
        upstream_identity(&gateway),
        plain_agent_identity(),
        "only chaperone's own values"
    );
}

#[test]
fn a_revocation_takes_effect_on_the_next_request_after_a_config_update() {
    let keys = keys();
    let mut config = identity_config(&keys, "deny");
    config["revocations"] = json!({});
    let gateway = Gateway::start_with(&GatewayOptions::ecds(), &config.to_string());
    let pid = gateway.envoy.pid();
    let token = keys
        .agent
        .mint(&claims_with(json!({"jti": "jti-to-revoke"})));
    let other = keys.agent.mint(&claims());
    assert_eq!(get(&gateway, "/tickets/1", &token, &[]).status, 200);

    config["revocations"] = json!({"jti": ["jti-to-revoke"]});
    assert!(gateway.reconfigure(&config.to_string()), "update accepted");
    let response = get(&gateway, "/tickets/1", &token, &[]);
    let record = assert_denied(&gateway, &response, 401, "revoked");
    assert_eq!(record["revoked"]["list"], "jti");
    assert_eq!(get(&gateway, "/tickets/1", &other, &[]).status, 200);

    // A configuration chaperone rejects is NACKed; the previous one keeps serving.
    let mut broken = config.clone();
    broken["revocations"]["jti"] = json!([""]);
    assert!(!gateway.reconfigure(&broken.to_string()), "update rejected");
    assert_eq!(get(&gateway, "/tickets/1", &token, &[]).status, 401);
    assert_eq!(get(&gateway, "/tickets/1", &other, &[]).status, 200);
    assert_eq!(gateway.envoy.pid(), pid, "no restart");
    assert!(
        gateway
            .envoy
            .log_text()
            .contains("revocations.jti: entries must not be empty"),
        "the rejection names the field"
    );
}
