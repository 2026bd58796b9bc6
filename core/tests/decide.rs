#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Decision tests through the public API: real keys generated here, real signatures,
//! every token defect with its reason code.

use chaperone_core::encoding::base64url_encode;
use chaperone_core::{
    decide, decide_timed, load, rewrite_before_body, Decision, Loaded, Reason, RequestBody,
    RequestFacts, Runtime,
};
use jwt_simple::prelude::*;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "agents-api";
const NOW: u64 = 1_800_000_000;

const POLICY: &str = r#"package chaperone.authz

default decision := {"allowed": false, "reason": "not_permitted"}

decision := {"allowed": true, "reason": "ticket_read", "rule": "tickets.read"} if {
	input.attributes.request.http.method == "GET"
	input.parsed_path[0] == "tickets"
	input.agent.id != ""
}
"#;

struct Fixture {
    key: ES256KeyPair,
    loaded: Loaded,
}

fn es256_jwk(key: &ES256KeyPair, kid: &str) -> Value {
    let point = key.public_key().public_key().to_bytes_uncompressed();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
           "x": base64url_encode(&point[1..33]), "y": base64url_encode(&point[33..65])})
}

fn config_with(issuer_extra: Value, jwks: Value) -> Value {
    let mut issuer = json!({"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks});
    if let (Some(target), Some(extra)) = (issuer.as_object_mut(), issuer_extra.as_object()) {
        target.extend(extra.clone());
    }
    json!({
        "issuers": [issuer],
        "policy": {"modules": {"authz.rego": POLICY}, "decision_path": "chaperone/authz/decision",
                   "name": "test-bundle", "revision": "r7"},
    })
}

fn fixture() -> Fixture {
    let key = ES256KeyPair::generate().with_key_id("k1");
    let config = config_with(json!({}), json!({"keys": [es256_jwk(&key, "k1")]}));
    let loaded = load(config.to_string().as_bytes()).expect("config compiles");
    Fixture { key, loaded }
}

fn claims(extra: Value) -> Value {
    let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "support-bot",
                            "owner": "alice@example.com", "iat": NOW - 10, "exp": NOW + 300, "jti": "j-1"});
    if let (Some(target), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                target.remove(k);
            } else {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    claims
}

/// Signs arbitrary header and claims JSON with the fixture key (ES256, raw r||s).
fn sign(f: &Fixture, header: Value, claims: Value) -> String {
    let signing_input = format!(
        "{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(claims.to_string().as_bytes())
    );
    // jwt-simple signs only claims it can type; sign raw bytes to reach every defect.
    use p256::ecdsa::signature::Signer;
    let signature: p256::ecdsa::Signature =
        f.key.key_pair().as_ref().sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        base64url_encode(&signature.to_bytes())
    )
}

fn token(f: &Fixture, extra: Value) -> String {
    sign(
        f,
        json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}),
        claims(extra),
    )
}

fn facts(method: &str, path: &str, headers: &[(&str, &[u8])]) -> RequestFacts {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), method.as_bytes().to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), b"gw.test".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    pairs.extend(
        headers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec())),
    );
    RequestFacts {
        headers: pairs,
        decision_id: "d-1".into(),
        now_ns: NOW * 1_000_000_000,
        ..RequestFacts::default()
    }
}

/// The facts of a request carrying `token` as its bearer token.
fn with_bearer(method: &str, path: &str, token: &str) -> RequestFacts {
    let bearer = format!("Bearer {token}");
    facts(method, path, &[("authorization", bearer.as_bytes())])
}

fn with_token(f: &Fixture, method: &str, path: &str, token: &str) -> Decision {
    decide(
        &f.loaded,
        &mut Runtime::new(&f.loaded, 1),
        &with_bearer(method, path, token),
    )
}

fn body(decision: &Decision) -> Value {
    serde_json::from_slice(&decision.response_body).expect("json body")
}

#[test]
fn allowed_request_carries_verified_identity() {
    let f = fixture();
    let d = with_token(&f, "GET", "/tickets/42?x=1", &token(&f, json!({})));
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.record.reason, "ticket_read");
    assert_eq!(d.record.rule.as_deref(), Some("tickets.read"));
    let headers: Vec<(&str, &str)> = d
        .upstream_headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert!(headers.contains(&("x-chaperone-agent-id", "support-bot")));
    assert!(headers.contains(&("x-chaperone-owner", "alice@example.com")));
    assert!(headers.contains(&("x-chaperone-issuer", ISSUER)));
    assert!(headers.contains(&("x-chaperone-decision-id", "d-1")));
    let agent = d.record.agent.as_ref().expect("agent recorded");
    assert_eq!(
        (
            agent.id.as_str(),
            agent.kid.as_deref(),
            agent.jti.as_deref()
        ),
        ("support-bot", Some("k1"), Some("j-1"))
    );
    assert_eq!(d.record.bundles["test-bundle"].revision, "r7");
    assert_eq!(d.record.path, "chaperone/authz/decision");
    assert_eq!(d.record.request.path.as_deref(), Some("/tickets/42?x=1"));
}

/// Each reading of the clock is a host call in the plugin: the decision reads it twice,
/// where the token stage ends and where the policy's ends, and the caller's readings start
/// and finish the total.
#[test]
fn the_decision_reads_the_clock_twice_between_the_callers_start_and_finish() {
    let f = fixture();
    let readings = std::cell::Cell::new(0_u64);
    // 1000 ns later at every reading.
    let clock = || {
        readings.set(readings.get() + 1);
        100 + 1000 * readings.get()
    };
    let facts = with_bearer("GET", "/tickets/42", &token(&f, json!({})));
    let mut runtime = Runtime::new(&f.loaded, 1);
    let mut d = decide_timed(&f.loaded, &mut runtime, &facts, 100, &clock);
    assert!(d.allowed, "{d:?}");
    assert_eq!(readings.get(), 2);
    let metrics = &d.record.metrics;
    assert_eq!(
        (metrics.timer_token_ns, metrics.timer_rego_query_eval_ns),
        (1000, 1000)
    );
    assert_eq!(metrics.timer_total_ns, 0, "the caller's to set");
    d.record.metrics.finish(100, clock());
    assert_eq!(d.record.metrics.timer_total_ns, 3000);
}

#[test]
fn policy_denial_is_403_with_policy_reason() {
    let f = fixture();
    let d = with_token(&f, "DELETE", "/tickets/42", &token(&f, json!({})));
    assert!(!d.allowed);
    assert_eq!(d.status, 403);
    assert_eq!(body(&d)["reason"], "not_permitted");
    assert_eq!(body(&d)["decision_id"], "d-1");
    assert!(d.record.agent.is_some(), "denials are attributed too");
}

#[test]
fn token_defects_map_to_stable_reasons() {
    let f = fixture();
    let other_key = ES256KeyPair::generate();
    let good = token(&f, json!({}));
    let (head, rest) = good.split_once('.').unwrap();
    let payload = rest.split_once('.').unwrap().0;
    let signed_by_other = {
        let g = Fixture {
            key: other_key,
            loaded: Loaded::Empty,
        };
        token(&g, json!({}))
    };
    let cases: Vec<(&str, String, Reason)> = vec![
        (
            "expired",
            token(&f, json!({"exp": NOW - 61, "iat": NOW - 400})),
            Reason::TokenExpired,
        ),
        (
            "expired within skew is fine? no: exactly at skew",
            token(&f, json!({"exp": NOW - 60})),
            Reason::TokenExpired,
        ),
        (
            "no exp",
            token(&f, json!({"exp": null})),
            Reason::ClaimInvalid,
        ),
        (
            "lifetime",
            token(&f, json!({"iat": NOW, "exp": NOW + 7200})),
            Reason::TokenLifetimeExceeded,
        ),
        (
            "far future exp without iat",
            token(&f, json!({"iat": null, "exp": 1e300})),
            Reason::TokenLifetimeExceeded,
        ),
        (
            "nbf future",
            token(&f, json!({"nbf": NOW + 120})),
            Reason::TokenNotYetValid,
        ),
        (
            "iat future",
            token(&f, json!({"iat": NOW + 120})),
            Reason::TokenNotYetValid,
        ),
        (
            "audience",
            token(&f, json!({"aud": "other-api"})),
            Reason::AudienceMismatch,
        ),
        (
            "audience case",
            token(&f, json!({"aud": "AGENTS-API"})),
            Reason::AudienceMismatch,
        ),
        (
            "no audience",
            token(&f, json!({"aud": null})),
            Reason::AudienceMismatch,
        ),
        (
            "issuer",
            token(&f, json!({"iss": "https://evil.test"})),
            Reason::IssuerUnknown,
        ),
        (
            "issuer trailing slash",
            token(&f, json!({"iss": "https://idp.test/"})),
            Reason::IssuerUnknown,
        ),
        (
            "no sub",
            token(&f, json!({"sub": null})),
            Reason::ClaimInvalid,
        ),
        (
            "sub not string",
            token(&f, json!({"sub": 7})),
            Reason::TokenMalformed,
        ),
        (
            "bad signature",
            format!(
                "{head}.{payload}.{}",
                signed_by_other.rsplit('.').next().unwrap()
            ),
            Reason::SignatureInvalid,
        ),
        (
            "other key",
            signed_by_other.clone(),
            Reason::SignatureInvalid,
        ),
        (
            "alg none",
            format!(
                "{}.{payload}.",
                base64url_encode(br#"{"alg":"none","kid":"k1"}"#)
            ),
            Reason::AlgorithmNotAllowed,
        ),
        (
            "alg none with sig",
            format!(
                "{}.{payload}.AAAA",
                base64url_encode(br#"{"alg":"none","kid":"k1"}"#)
            ),
            Reason::AlgorithmNotAllowed,
        ),
        (
            "unknown kid",
            sign(&f, json!({"alg": "ES256", "kid": "k2"}), claims(json!({}))),
            Reason::KeyUnknown,
        ),
        (
            "crit",
            sign(
                &f,
                json!({"alg": "ES256", "kid": "k1", "crit": ["exp"], "exp": 1}),
                claims(json!({})),
            ),
            Reason::TokenUnsupported,
        ),
        (
            "nested",
            sign(
                &f,
                json!({"alg": "ES256", "kid": "k1", "cty": "JWT"}),
                claims(json!({})),
            ),
            Reason::TokenUnsupported,
        ),
        (
            "jwe shape",
            "a.b.c.d.e".to_owned(),
            Reason::TokenUnsupported,
        ),
        (
            "two parts",
            format!("{head}.{payload}"),
            Reason::TokenMalformed,
        ),
        ("many dots", ".".repeat(10_000), Reason::TokenTooLarge),
        (
            "padding",
            format!("{head}=.{payload}.AAAA"),
            Reason::TokenMalformed,
        ),
        (
            "duplicate claim",
            sign(&f, json!({"alg": "ES256", "kid": "k1"}), json!("x")).replace(
                &base64url_encode(b"\"x\""),
                &base64url_encode(
                    format!("{{\"iss\":\"{ISSUER}\",\"sub\":\"a\",\"sub\":\"admin\"}}").as_bytes(),
                ),
            ),
            Reason::TokenMalformed,
        ),
        (
            "payload not object",
            sign(&f, json!({"alg": "ES256", "kid": "k1"}), json!([1])),
            Reason::TokenMalformed,
        ),
    ];
    for (name, token, want) in cases {
        let d = with_token(&f, "GET", "/tickets/1", &token);
        assert!(!d.allowed, "{name}");
        assert_eq!(d.reason, want, "{name}");
        assert_eq!(d.status, want.status(), "{name}");
        assert_eq!(body(&d)["reason"], want.code(), "{name}");
        assert!(
            !String::from_utf8_lossy(&d.response_body).contains(&token[..token.len().min(20)])
                || token.len() < 20,
            "{name}: body echoes token"
        );
    }
}

#[test]
fn key_confusion_hs256_with_public_key_is_rejected() {
    let f = fixture();
    let public_bytes = f.key.public_key().public_key().to_bytes_uncompressed();
    let confused = HS256Key::from_bytes(&public_bytes).with_key_id("k1");
    let claims = Claims::create(Duration::from_secs(300))
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_subject("support-bot");
    let token = confused.authenticate(claims).unwrap();
    let d = with_token(&f, "GET", "/tickets/1", &token);
    assert_eq!(d.reason, Reason::AlgorithmNotAllowed);
}

#[test]
fn missing_and_ambiguous_credentials() {
    let f = fixture();
    let d = decide(
        &f.loaded,
        &mut Runtime::new(&f.loaded, 1),
        &facts("GET", "/tickets/1", &[]),
    );
    assert_eq!((d.status, d.reason), (401, Reason::TokenMissing));
    let www: Vec<&str> = d
        .response_headers
        .iter()
        .filter(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(www, ["Bearer realm=\"chaperone\""]);

    let good = format!("Bearer {}", token(&f, json!({})));
    let d = decide(
        &f.loaded,
        &mut Runtime::new(&f.loaded, 1),
        &facts(
            "GET",
            "/tickets/1",
            &[
                ("authorization", good.as_bytes()),
                ("Authorization", b"Bearer junk"),
            ],
        ),
    );
    assert_eq!(d.reason, Reason::TokenAmbiguous);
    let d = decide(
        &f.loaded,
        &mut Runtime::new(&f.loaded, 1),
        &facts(
            "GET",
            "/tickets/1",
            &[
                ("authorization", good.as_bytes()),
                ("authorization", good.as_bytes()),
            ],
        ),
    );
    assert_eq!(d.reason, Reason::TokenAmbiguous);

    let folded = format!("{good}, Bearer junk");
    let d = decide(
        &f.loaded,
        &mut Runtime::new(&f.loaded, 1),
        &facts("GET", "/tickets/1", &[("authorization", folded.as_bytes())]),
    );
    assert_eq!(
        d.reason,
        Reason::TokenAmbiguous,
        "a host-folded repeat is still two credentials"
    );
    let d = decide(
        &f.loaded,
        &mut Runtime::new(&f.loaded, 1),
        &facts(
            "GET",
            "/tickets/1",
            &[("authorization", b"Basic dXNlcjpwYXNz")],
        ),
    );
    assert_eq!(d.reason, Reason::TokenMalformed);
    let d = decide(
        &f.loaded,
        &mut Runtime::new(&f.loaded, 1),
        &facts(
            "GET",
            "/tickets/1",
            &[("authorization", b"Bearer \xc0\xa7\xff")],
        ),
    );
    assert_eq!(d.reason, Reason::TokenMalformed);
    let lower = format!("bearer   {}", token(&f, json!({})));
    assert!(
        decide(
            &f.loaded,
            &mut Runtime::new(&f.loaded, 1),
            &facts("GET", "/tickets/1", &[("authorization", lower.as_bytes())])
        )
        .allowed
    );
    let www = d
        .response_headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(www.contains("error=\"invalid_token\""), "{www}");
}

#[test]
fn spoofed_identity_headers_are_stripped_and_hidden_from_policy() {
    let f = fixture();
    let bearer = format!("Bearer {}", token(&f, json!({})));
    let d = decide(
        &f.loaded,
        &mut Runtime::new(&f.loaded, 1),
        &facts(
            "GET",
            "/tickets/1",
            &[
                ("authorization", bearer.as_bytes()),
                ("x-chaperone-agent-id", b"root"),
                ("X-Chaperone-Owner", b"ceo"),
                ("x_chaperone_issuer", b"evil"),
                ("x-other", b"kept"),
            ],
        ),
    );
    assert!(d.allowed);
    assert_eq!(
        d.strip_headers,
        [
            "x-chaperone-agent-id",
            "X-Chaperone-Owner",
            "x_chaperone_issuer",
            "authorization"
        ],
        "the spoofs, and the agent token's header (not forwarded)"
    );
    // Denied requests strip too, so a logged-and-denied request never forwards a spoof.
    let d = decide(
        &f.loaded,
        &mut Runtime::new(&f.loaded, 1),
        &facts("GET", "/tickets/1", &[("x-chaperone-agent-id", b"root")]),
    );
    assert_eq!(d.strip_headers, ["x-chaperone-agent-id"]);
}

#[test]
fn empty_configuration_fails_closed() {
    let d = decide(
        &Loaded::Empty,
        &mut Runtime::new(&Loaded::Empty, 1),
        &facts("GET", "/", &[]),
    );
    assert_eq!((d.status, d.reason), (503, Reason::PolicyUnavailable));
}

#[test]
fn configuration_errors_are_precise() {
    let key = ES256KeyPair::generate();
    let jwks = json!({"keys": [es256_jwk(&key, "k1")]});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"issuers": [], "policy": {"modules": {"a.rego": POLICY}}}),
            "issuers",
        ),
        (
            {
                let mut c = config_with(json!({}), jwks.clone());
                c["surprise"] = json!(1);
                c
            },
            "unknown field `surprise`",
        ),
        (
            config_with(json!({"audience": ["x"]}), jwks.clone()),
            "unknown field `audience`",
        ),
        (
            config_with(json!({"algorithms": ["none"]}), jwks.clone()),
            "issuers[0].algorithms[0]",
        ),
        (
            config_with(json!({"clock_skew_seconds": 900}), jwks.clone()),
            "clock_skew_seconds",
        ),
        (
            {
                let mut c = config_with(json!({}), jwks.clone());
                c["limits"] = json!({"max_cached_decisions": 1_000_001});
                c
            },
            "limits.max_cached_decisions",
        ),
        (
            config_with(
                json!({}),
                json!({"keys": [es256_jwk(&key, "k1"), es256_jwk(&key, "k1")]}),
            ),
            "duplicate kid",
        ),
        (
            config_with(
                json!({}),
                json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "enc", "x": "AA", "y": "AA"}]}),
            ),
            "issuers[0].local_jwks.keys[0].use",
        ),
        (
            config_with(
                json!({}),
                json!({"keys": [{"kty": "EC", "crv": "P-384", "alg": "ES256", "x": "AA", "y": "AA"}]}),
            ),
            "does not match",
        ),
        (
            config_with(
                json!({"algorithms": ["HS256"]}),
                json!({"keys": [{"kty": "oct", "k": base64url_encode(&[7u8; 31])}]}),
            ),
            "at least 32 bytes",
        ),
        (config_with(json!({}), json!({"keys": []})), "no key usable"),
        (
            {
                let mut c = config_with(json!({}), jwks.clone());
                c["policy"]["modules"]["authz.rego"] = json!("package x\nallow if {");
                c
            },
            "policy.modules[authz.rego]",
        ),
        (
            {
                let mut c = config_with(json!({}), jwks.clone());
                c["policy"]["decision_path"] = json!("chaperone/authz/decison");
                c
            },
            "policy.decision_path",
        ),
        (
            {
                let mut c = config_with(json!({}), jwks.clone());
                c["policy"]["engine"] = json!("vm");
                c
            },
            "policy.engine: `vm` is not offered: regorus 0.14.1's VM allows requests",
        ),
    ];
    for (config, want) in cases {
        let err = load(config.to_string().as_bytes())
            .err()
            .unwrap_or_else(|| panic!("accepted: {want}"));
        assert!(err.to_string().contains(want), "want `{want}` in `{err}`");
    }
    let err = load(b"\x0a\x05hello").err().unwrap();
    assert!(err.to_string().contains("StringValue"), "{err}");
    assert!(matches!(load(b"  \n"), Ok(Loaded::Empty)));
    let mut interpreter = config_with(json!({}), jwks);
    interpreter["policy"]["engine"] = json!("interpreter");
    assert!(load(interpreter.to_string().as_bytes()).is_ok());
}

#[test]
fn hs256_requires_explicit_listing_and_works_when_listed() {
    let secret = [9u8; 32];
    let jwks = json!({"keys": [{"kty": "oct", "kid": "h1", "k": base64url_encode(&secret)}]});
    assert!(
        load(config_with(json!({}), jwks.clone()).to_string().as_bytes()).is_err(),
        "oct key unusable by default"
    );
    let loaded = load(
        config_with(json!({"algorithms": ["HS256"]}), jwks)
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let claims = Claims::create(Duration::from_secs(300))
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_subject("bot");
    let token = HS256Key::from_bytes(&secret)
        .with_key_id("h1")
        .authenticate(claims)
        .unwrap();
    let now_ns = jwt_simple::prelude::Clock::now_since_epoch().as_secs() * 1_000_000_000;
    let mut request = facts("GET", "/tickets/1", &[]);
    request.now_ns = now_ns;
    request.headers.push((
        b"authorization".to_vec(),
        format!("Bearer {token}").into_bytes(),
    ));
    assert!(decide(&loaded, &mut Runtime::new(&loaded, 1), &request).allowed);
}

#[test]
fn cached_tokens_still_expire_and_decide_the_same() {
    let f = fixture();
    let mut runtime = Runtime::new(&f.loaded, 1);
    let token = token(&f, json!({"iat": NOW - 10, "exp": NOW + 30}));
    let mut request = with_bearer("GET", "/tickets/1", &token);
    let first = decide(&f.loaded, &mut runtime, &request);
    assert!(first.allowed);
    assert_eq!(runtime.cache.len(), 1);
    let second = decide(&f.loaded, &mut runtime, &request);
    assert_eq!(
        second.record, first.record,
        "a cache hit decides exactly like a verification"
    );
    // Past exp + skew the cached entry no longer counts, and verification rejects the token.
    request.now_ns = (NOW + 30 + 60) * 1_000_000_000;
    let late = decide(&f.loaded, &mut runtime, &request);
    assert_eq!(late.reason, Reason::TokenExpired);
    // Expired stays expired: refused again from memory, with the same record.
    let again = decide(&f.loaded, &mut runtime, &request);
    assert_eq!(again.record, late.record);
    assert_eq!(runtime.cache_stats.rejected, 1);
    // Not yet valid changes with time: checked every time, and accepted once it is due.
    let early = self::token(
        &f,
        json!({"iat": NOW + 100, "nbf": NOW + 100, "exp": NOW + 400, "jti": "j-2"}),
    );
    let mut soon = with_bearer("GET", "/tickets/1", &early);
    assert_eq!(
        decide(&f.loaded, &mut runtime, &soon).reason,
        Reason::TokenNotYetValid
    );
    soon.now_ns = (NOW + 100) * 1_000_000_000;
    assert!(decide(&f.loaded, &mut runtime, &soon).allowed);
    assert_eq!(runtime.cache_stats.rejected, 1);
    // A token naming an issuer nobody configured is cheap to refuse, and the sender chose that
    // name: it is not remembered.
    let remembered = runtime.rejected.len();
    let stranger = self::token(
        &f,
        json!({"iss": format!("https://{}.test", "x".repeat(4000))}),
    );
    let unknown = with_bearer("GET", "/tickets/1", &stranger);
    assert_eq!(
        decide(&f.loaded, &mut runtime, &unknown).reason,
        Reason::IssuerUnknown
    );
    assert_eq!(runtime.rejected.len(), remembered);
    // Failures never enter the token cache: it holds the two tokens that verified.
    let mut bad = request.clone();
    bad.now_ns = NOW * 1_000_000_000;
    bad.headers.retain(|(n, _)| n != b"authorization");
    bad.headers
        .push((b"authorization".to_vec(), b"Bearer a.b.c".to_vec()));
    let _ = decide(&f.loaded, &mut runtime, &bad);
    assert_eq!(runtime.cache.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Decision records

fn record_schema() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../decision-record.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft7::new(&schema).expect("a valid draft-07 schema")
}

/// The record as the host writes it: with its sequence number and instance label.
fn written(decision: &Decision) -> Value {
    let mut record = decision.record.clone();
    record.seq = 1;
    record
        .labels
        .insert("instance".to_owned(), "0123456789abcdef".to_owned());
    serde_json::from_str(&record.to_json()).unwrap()
}

fn assert_valid_record(decision: &Decision, what: &str) -> Value {
    let record = written(decision);
    let errors: Vec<String> = record_schema()
        .iter_errors(&record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}\n{record}");
    record
}

fn load_with(f: &Fixture, changes: Value) -> Loaded {
    let mut config = config_with(json!({}), json!({"keys": [es256_jwk(&f.key, "k1")]}));
    for (name, value) in changes.as_object().unwrap() {
        config[name] = value.clone();
    }
    load(config.to_string().as_bytes()).unwrap()
}

fn decide_with(loaded: &Loaded, method: &str, path: &str, headers: &[(&str, &[u8])]) -> Decision {
    decide(
        loaded,
        &mut Runtime::new(loaded, 1),
        &facts(method, path, headers),
    )
}

#[test]
fn every_kind_of_record_follows_the_published_schema() {
    let f = fixture();
    let good = format!("Bearer {}", token(&f, json!({})));
    let decisions = [
        (
            "allow",
            with_token(&f, "GET", "/tickets/1", &token(&f, json!({}))),
        ),
        (
            "policy deny",
            with_token(&f, "DELETE", "/tickets/1", &token(&f, json!({}))),
        ),
        (
            "401 missing",
            decide_with(&f.loaded, "GET", "/tickets/1", &[]),
        ),
        (
            "401 bad token",
            with_token(&f, "GET", "/tickets/1", "a.b.c"),
        ),
        (
            "503 empty",
            decide_with(&Loaded::Empty, "GET", "/tickets/1", &[]),
        ),
        (
            "dry run",
            decide_with(
                &load_with(&f, json!({"dry_run": true})),
                "DELETE",
                "/tickets/1",
                &[("authorization", good.as_bytes())],
            ),
        ),
    ];
    for (what, decision) in &decisions {
        assert_valid_record(decision, what);
    }
    // A policy that fails says why in the record, never in the response.
    let failing = load_with(
        &f,
        json!({"policy": {"modules": {"p.rego": "package t\ndecision := {\"allowed\": true, \"headers\": {\"x-chaperone-owner\": \"root\"}} if to_number(input.parsed_query.n[0]) > 3\n"},
                          "decision_path": "t/decision"}}),
    );
    for (path, reason, message) in [
        ("/t?n=abc", "policy_error", "p.rego:2:"),
        (
            "/t?n=5",
            "policy_result_invalid",
            "`headers`: `x-chaperone-owner` is one of chaperone's own identity headers",
        ),
    ] {
        let d = decide_with(&failing, "GET", path, &[("authorization", good.as_bytes())]);
        let record = assert_valid_record(&d, reason);
        assert_eq!(record["reason"], reason);
        let logged = record["error"]["message"].as_str().unwrap_or_default();
        assert!(logged.contains(message), "{logged}");
        assert!(!String::from_utf8_lossy(&d.response_body).contains(message));
    }
    // The schema is strict enough to notice drift.
    let mut drifted = written(&decisions[0].1);
    drifted["latency_us"] = json!(3);
    assert!(!record_schema().is_valid(&drifted));
}

#[test]
fn dry_run_records_the_denial_and_lets_the_request_through() {
    let f = fixture();
    let bearer = format!("Bearer {}", token(&f, json!({})));
    let auth = [("authorization", bearer.as_bytes())];

    // Per policy: the policy's denials are shadowed, authentication is still enforced.
    let policy_dry = json!({"policy": {"modules": {"authz.rego": POLICY}, "decision_path": "chaperone/authz/decision", "dry_run": true}});
    let loaded = load_with(&f, policy_dry);
    let d = decide_with(&loaded, "DELETE", "/tickets/1", &auth);
    assert!(d.allowed && d.record.dry_run);
    assert_eq!(
        (d.record.result.allowed, d.record.result.http_status),
        (false, 403)
    );
    assert_eq!(d.record.reason, "not_permitted");
    assert!(d.response_body.is_empty());
    assert!(d
        .upstream_headers
        .iter()
        .any(|(n, v)| n == "x-chaperone-agent-id" && v == "support-bot"));
    let missing = decide_with(&loaded, "GET", "/tickets/1", &[]);
    assert!(
        !missing.allowed && !missing.record.dry_run,
        "authentication stays enforced"
    );

    // Globally: every denial is shadowed; nothing unverified is claimed upstream.
    let loaded = load_with(&f, json!({"dry_run": true}));
    let d = decide_with(&loaded, "GET", "/tickets/1", &[]);
    assert!(d.allowed && d.record.dry_run);
    assert_eq!(d.record.reason, "token_missing");
    let names: Vec<&str> = d.upstream_headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-chaperone-decision-id"]);
    // Allowed requests are not marked.
    let d = decide_with(&loaded, "GET", "/tickets/1", &auth);
    assert!(d.allowed && !d.record.dry_run);
}

#[test]
fn records_carry_the_input_minus_erased_fields_and_stay_bounded() {
    let f = fixture();
    let bearer = format!("Bearer {}", token(&f, json!({})));
    let headers = [
        ("authorization", bearer.as_bytes()),
        ("cookie", b"session=secret".as_slice()),
        ("x-trace", b"t-1".as_slice()),
    ];
    let d = decide_with(&f.loaded, "GET", "/tickets/1", &headers);
    let record = assert_valid_record(&d, "with input");
    let logged_headers = &record["input"]["attributes"]["request"]["http"]["headers"];
    assert_eq!(logged_headers["x-trace"], "t-1");
    assert!(logged_headers.get("cookie").is_none(), "{record}");
    assert!(
        logged_headers.get("authorization").is_none(),
        "credentials never enter the input"
    );
    assert_eq!(
        record["erased"],
        json!(["/input/attributes/request/http/headers/cookie"])
    );
    assert_eq!(record["input"]["agent"]["id"], "support-bot");

    let custom = load_with(
        &f,
        json!({"decision_log": {"erase": ["/input/agent/claims/owner"], "labels": {"gateway": "edge-1"}}}),
    );
    let record = written(&decide_with(&custom, "GET", "/tickets/1", &headers));
    assert!(record["input"]["agent"]["claims"].get("owner").is_none());
    assert_eq!(record["labels"]["gateway"], "edge-1");
    // Not asked for, or no record written anywhere: the input is not assembled.
    for decision_log in [json!({"input": false}), json!({"host_log": false})] {
        let without = load_with(&f, json!({ "decision_log": decision_log }));
        assert!(
            written(&decide_with(&without, "GET", "/tickets/1", &headers))
                .get("input")
                .is_none(),
            "{decision_log}"
        );
    }

    // Too large: the input goes, the rest stays.
    let mut decision = decide_with(&f.loaded, "GET", "/tickets/1", &headers);
    let line = decision.record.to_json_bounded(1024);
    let bounded: Value = serde_json::from_str(&line).unwrap();
    assert!(bounded.get("input").is_none());
    assert_eq!(bounded["erased"], json!(["/input"]));
    assert_eq!(bounded["flags"], json!(["input_too_large"]));

    // Still too long without its input (a client's long path, here without a token, so
    // without an input): the request's strings are cut, at a character's boundary.
    let long_path = format!("/tickets/{}", "é".repeat(5_000));
    let mut decision = decide_with(&f.loaded, "GET", &long_path, &[]);
    let line = decision.record.to_json_bounded(1024);
    assert!(line.len() <= 1024, "{} bytes", line.len());
    let bounded: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(bounded["flags"], json!(["fields_truncated"]));
    let kept = bounded["request"]["path"].as_str().unwrap();
    assert!(long_path.starts_with(kept) && kept.len() == 255, "{kept}");
}

#[test]
fn records_never_carry_a_jwt_the_client_put_elsewhere_in_the_request() {
    let f = fixture();
    let agent_token = token(&f, json!({}));
    let bearer = format!("Bearer {agent_token}");
    // The same token again where chaperone does not read it from, and a user's token.
    let user_token = sign(
        &f,
        json!({"alg": "ES256", "kid": "user"}),
        claims(json!({"sub": "alice"})),
    );
    let forwarded = format!("Bearer {user_token}");
    let path = format!("/tickets/1?access_token={agent_token}&{user_token}&page=2");
    let headers = [
        ("authorization", bearer.as_bytes()),
        ("x-forwarded-authorization", forwarded.as_bytes()),
        ("x-request-id", user_token.as_bytes()),
        ("x-trace", b"t.1.2".as_slice()),
    ];
    let d = decide_with(&f.loaded, "GET", &path, &headers);
    assert!(
        d.allowed,
        "the policy saw the request as it came: {:?}",
        d.reason
    );
    let record = assert_valid_record(&d, "masked");
    let line = record.to_string();
    for secret in [&agent_token, &user_token] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!line.contains(signature), "a token's signature in {line}");
    }
    assert_eq!(record["flags"], json!(["credentials_masked"]));
    let masked_path = "/tickets/1?access_token=[REDACTED-JWT]&[REDACTED-JWT]&page=2";
    assert_eq!(record["request"]["path"], masked_path);
    assert_eq!(record["request"]["id"], "[REDACTED-JWT]");
    let http = &record["input"]["attributes"]["request"]["http"];
    assert_eq!(http["path"], masked_path);
    assert_eq!(
        http["headers"]["x-forwarded-authorization"],
        "Bearer [REDACTED-JWT]"
    );
    assert_eq!(http["headers"]["x-trace"], "t.1.2");
    assert_eq!(
        record["input"]["parsed_query"],
        json!({"access_token": ["[REDACTED]"], "[REDACTED-JWT]": [""], "page": ["2"]})
    );
    // An opaque bearer token in `access_token` (RFC 6750) is masked whatever its shape.
    let opaque = written(&decide_with(
        &f.loaded,
        "GET",
        "/tickets/1?page=2&access_token=opaque-s3cr3t#top",
        &headers[..1],
    ));
    assert!(!opaque.to_string().contains("s3cr3t"), "{opaque}");
    assert_eq!(
        opaque["request"]["path"],
        "/tickets/1?page=2&access_token=[REDACTED]#top"
    );
    assert_eq!(
        opaque["input"]["parsed_query"]["access_token"],
        json!(["[REDACTED]"])
    );
    assert_eq!(opaque["flags"], json!(["credentials_masked"]));

    // Nothing to mask: no flag.
    let plain = written(&decide_with(
        &f.loaded,
        "GET",
        "/tickets/1?page=2",
        &headers[..1],
    ));
    assert!(plain.get("flags").is_none(), "{plain}");

    // Agent tokens from another header: the request's `authorization` (here a password) is
    // erased by default, like cookies.
    let elsewhere = load_with(&f, json!({"from_headers": [{"name": "x-agent-token"}]}));
    let basic = [
        ("x-agent-token", agent_token.as_bytes()),
        ("authorization", b"Basic YWxpY2U6czNjcjN0".as_slice()),
    ];
    let record = written(&decide_with(&elsewhere, "GET", "/tickets/1", &basic));
    assert!(!record.to_string().contains("YWxpY2U6czNjcjN0"), "{record}");
    assert_eq!(
        record["erased"],
        json!(["/input/attributes/request/http/headers/authorization"])
    );

    // Found by review: a token the issuer signed into the agent's strings (an actor named by
    // a JWT) was masked in the input but not in the record's `agent`. The upstream still gets
    // the agent as verified.
    let actor = format!("{{\"sub\": \"{user_token}\"}}");
    let delegated = token(
        &f,
        json!({"act": serde_json::from_str::<Value>(&actor).unwrap()}),
    );
    let bearer = format!("Bearer {delegated}");
    let d = decide_with(
        &f.loaded,
        "GET",
        "/tickets/1",
        &[("authorization", bearer.as_bytes())],
    );
    let record = written(&d);
    let signature = user_token.rsplit('.').next().unwrap();
    assert!(!record.to_string().contains(signature), "{record}");
    assert_eq!(record["agent"]["delegation"][0]["sub"], "[REDACTED-JWT]");
    assert_eq!(record["flags"], json!(["credentials_masked"]));
    assert!(d.allowed, "{:?}", d.reason);
    assert!(d
        .upstream_headers
        .iter()
        .any(|(_, value)| value == &user_token));
}

#[test]
fn a_decision_the_host_cannot_carry_out_becomes_a_recorded_500() {
    let f = fixture();
    let token = token(&f, json!({}));
    let mut d = with_token(&f, "GET", "/tickets/1", &token);
    assert!(d.allowed && !d.upstream_headers.is_empty());
    d.fail_internally();
    assert!(!d.allowed && d.upstream_headers.is_empty());
    assert_eq!((d.status, d.reason), (500, Reason::InternalError));
    assert_eq!(
        body(&d),
        json!({"decision_id": "d-1", "reason": "internal_error", "status": 500})
    );
    let record = assert_valid_record(&d, "internal error");
    assert_eq!(
        record["result"],
        json!({"allowed": false, "http_status": 500})
    );
    assert_eq!(record["reason"], "internal_error");
    assert_eq!(record["rule"], Value::Null);
    assert_eq!(record["agent"]["id"], "support-bot", "still attributed");
}

#[test]
fn the_agent_token_goes_upstream_only_where_its_issuer_forwards_it() {
    let f = fixture();
    let token = token(&f, json!({}));
    let allowed = with_token(&f, "GET", "/tickets/1", &token);
    assert!(allowed.allowed);
    assert_eq!(
        allowed.strip_headers,
        ["authorization"],
        "removed by default"
    );
    let denied = with_token(&f, "DELETE", "/tickets/1", &token);
    assert!(
        !denied.allowed && denied.strip_headers.is_empty(),
        "a local reply"
    );

    let forwarding = load(
        config_with(
            json!({"forward": true}),
            json!({"keys": [es256_jwk(&f.key, "k1")]}),
        )
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let d = decide_with(
        &forwarding,
        "GET",
        "/tickets/1",
        &[("authorization", format!("Bearer {token}").as_bytes())],
    );
    assert!(
        d.allowed && d.strip_headers.is_empty(),
        "{:?}",
        d.strip_headers
    );

    let elsewhere = load_with(&f, json!({"from_headers": [{"name": "x-agent-token"}]}));
    let d = decide_with(
        &elsewhere,
        "GET",
        "/tickets/1",
        &[
            ("X-Agent-Token", token.as_bytes()),
            ("authorization", b"Basic YTpi".as_slice()),
        ],
    );
    assert!(d.allowed);
    assert_eq!(
        d.strip_headers,
        ["x-agent-token"],
        "only the header the token came in"
    );
}

#[test]
fn every_reason_code_is_documented() {
    let readme = include_str!("../../README.md");
    for reason in Reason::ALL {
        assert!(
            readme.contains(&format!("`{}`", reason.code())),
            "README does not document reason `{}`",
            reason.code()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Remembered verdicts (`cache_seconds`)

/// Allows only before NOW + 1 s, yet says its answer holds for 10 s: a policy breaking its
/// promise on purpose, so a remembered verdict shows by being stale.
const REMEMBERING_POLICY: &str = r#"package chaperone.authz

decision := {"allowed": input.now_ns < 1800000001000000000, "reason": "window", "rule": "w", "cache_seconds": 10} if {
	input.attributes.request.http.method == "GET"
	input.agent.id != ""
}

decision := {"allowed": false, "reason": "not_get"} if input.attributes.request.http.method != "GET"
"#;

/// With `host_log` off no record keeps the input, so a remembered verdict is found without
/// making the input whole.
fn remembering(f: &Fixture, max_cached_decisions: u64, host_log: bool) -> Loaded {
    load_with(
        f,
        json!({
            "policy": {"modules": {"authz.rego": REMEMBERING_POLICY},
                       "decision_path": "chaperone/authz/decision"},
            "limits": {"max_cached_decisions": max_cached_decisions},
            "decision_log": {"host_log": host_log},
        }),
    )
}

fn at(seconds_after_now: u64, mut request: RequestFacts) -> RequestFacts {
    request.now_ns = (NOW + seconds_after_now) * 1_000_000_000;
    request
}

/// What the plugin draws from the host's randomness once per VM.
const SECRET_KEY: [u8; 16] = [7; 16];

fn remembered(decision: &Decision) -> bool {
    decision.record.flags.iter().any(|f| f == "decision_cached")
}

#[test]
fn a_verdict_with_cache_seconds_answers_the_same_request_until_it_expires() {
    let f = fixture();
    let bearer = format!("Bearer {}", token(&f, json!({})));
    let get = |path: &str, noise: &[u8]| {
        facts(
            "GET",
            path,
            &[("authorization", bearer.as_bytes()), ("x-noise", noise)],
        )
    };
    for host_log in [true, false] {
        let loaded = remembering(&f, 16, host_log);
        let mut runtime = Runtime::new(&loaded, 1).with_secret_key(SECRET_KEY);

        let first = decide(&loaded, &mut runtime, &at(0, get("/tickets/1", b"a")));
        assert!(first.allowed && !remembered(&first));
        assert_eq!(runtime.decisions.len(), 1);

        // Later, another path and another header: the policy reads neither, nor (by its promise)
        // the clock, so the verdict of the first request stands, stale as this policy makes it.
        let second = decide(&loaded, &mut runtime, &at(2, get("/tickets/2", b"b")));
        assert!(second.allowed && remembered(&second), "{:?}", second.record);
        assert_eq!(second.record.reason, first.record.reason);
        assert_eq!(second.record.rule, first.record.rule);
        assert_valid_record(&second, "remembered verdict");
        assert_eq!(runtime.cache_stats.decision_hits, 1);

        // A method the policy reads: evaluated.
        let mut post = at(2, get("/tickets/1", b"a"));
        post.headers[0].1 = b"POST".to_vec();
        let posted = decide(&loaded, &mut runtime, &post);
        assert!(!posted.allowed && !remembered(&posted));
        assert_eq!(posted.record.reason, "not_get");
        assert_eq!(runtime.cache_stats.decision_misses, 1);

        // Another agent: its id is read, so evaluated (and denied: its clock is past the window).
        let other = format!("Bearer {}", token(&f, json!({"sub": "other-bot"})));
        let other = decide(
            &loaded,
            &mut runtime,
            &at(
                2,
                facts("GET", "/tickets/1", &[("authorization", other.as_bytes())]),
            ),
        );
        assert!(!other.allowed && !remembered(&other));

        // Ten seconds after the first: the promise has run out, the policy runs again.
        let late = decide(&loaded, &mut runtime, &at(10, get("/tickets/1", b"a")));
        assert!(!late.allowed && !remembered(&late));
    }

    // With no room for verdicts, every request is evaluated.
    let loaded = remembering(&f, 0, false);
    let mut runtime = Runtime::new(&loaded, 1).with_secret_key(SECRET_KEY);
    assert!(decide(&loaded, &mut runtime, &at(0, get("/tickets/1", b"a"))).allowed);
    let again = decide(&loaded, &mut runtime, &at(2, get("/tickets/1", b"a")));
    assert!(!again.allowed && !remembered(&again));

    // Without a secret key from the host, nothing is remembered: the key of an answer must
    // be one no client can compute. With one, the same requests are.
    let loaded = remembering(&f, 16, false);
    for (key, remembers) in [(None, false), (Some(SECRET_KEY), true)] {
        let runtime = Runtime::new(&loaded, 1);
        let mut runtime = match key {
            Some(key) => runtime.with_secret_key(key),
            None => runtime,
        };
        assert!(decide(&loaded, &mut runtime, &at(0, get("/tickets/1", b"a"))).allowed);
        let again = decide(&loaded, &mut runtime, &at(2, get("/tickets/1", b"a")));
        assert_eq!(remembered(&again), remembers, "{key:?}");
        assert_eq!(again.allowed, remembers, "{key:?}");
    }

    // A policy that never sets cache_seconds has nothing remembered.
    let mut runtime = Runtime::new(&f.loaded, 1).with_secret_key(SECRET_KEY);
    for _ in 0..3 {
        assert!(!remembered(&decide(
            &f.loaded,
            &mut runtime,
            &get("/tickets/1", b"a")
        )));
    }
    assert!(runtime.decisions.is_empty());
}

/// A request whose body the policy reads is rewritten at its headers for the verified agent
/// (spoofs and the token go, identity comes) whatever the policy says without the body, and
/// is refused there when the headers alone refuse it; the policy then sees the body.
#[test]
fn a_request_held_for_its_body_is_rewritten_for_its_agent_first() {
    let f = fixture();
    let reads_body = r#"package chaperone.authz

default decision := false

decision if input.parsed_body.method == "tools/list"
"#;
    let loaded = load_with(
        &f,
        json!({"policy": {"modules": {"authz.rego": reads_body},
                          "decision_path": "chaperone/authz/decision"},
               "limits": {"max_request_body_bytes": 64}}),
    );
    assert_eq!(loaded.body_limit(), Some(64));
    assert_eq!(
        load_with(&f, json!({})).body_limit(),
        None,
        "the policy reads no body"
    );

    let bearer = format!("Bearer {}", token(&f, json!({})));
    let headers: [(&str, &[u8]); 3] = [
        ("authorization", bearer.as_bytes()),
        ("content-type", b"application/json"),
        ("x-chaperone-agent-id", b"spoofed"),
    ];
    let mut runtime = Runtime::new(&loaded, 1);
    let mut request = facts("POST", "/mcp", &headers);
    let first = decide(&loaded, &mut runtime, &request);
    assert!(!first.allowed, "no body yet");
    let rewrite = rewrite_before_body(&loaded, &first, &request).expect("an agent was verified");
    assert_eq!(rewrite.strip, ["x-chaperone-agent-id", "authorization"]);
    assert!(rewrite
        .add
        .contains(&("x-chaperone-agent-id".to_owned(), "support-bot".to_owned())));

    request.body = Some(RequestBody::read(
        br#"{"method": "tools/list"}"#.to_vec(),
        64,
    ));
    assert!(decide(&loaded, &mut runtime, &request).allowed);
    request.body = Some(RequestBody::read(
        br#"{"method": "tools/list", "x": 1}"#.repeat(3),
        64,
    ));
    assert!(
        !decide(&loaded, &mut runtime, &request).allowed,
        "cut: not parsed"
    );

    request.body = Some(RequestBody::read(
        br#"{"method": "tools/list"}{}"#.to_vec(),
        64,
    ));
    let invalid = decide(&loaded, &mut runtime, &request);
    assert_eq!(
        (invalid.status, invalid.reason),
        (400, Reason::RequestBodyInvalid)
    );

    // Refused on its headers: final, nothing to rewrite.
    let no_token = facts("POST", "/mcp", &[("content-type", b"application/json")]);
    let refused = decide(&loaded, &mut runtime, &no_token);
    assert_eq!(refused.status, 401);
    assert_eq!(rewrite_before_body(&loaded, &refused, &no_token), None);
}
