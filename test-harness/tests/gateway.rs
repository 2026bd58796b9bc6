//! End-to-end: the built `dist/chaperone.wasm` in a real Envoy (rendered from the shipped
//! `envoy-config/quickstart.yaml`), real HTTP over loopback, real signatures from keys each
//! test generates. Every test starts its own Envoy and echo upstream on free ports and stops
//! them when it ends. Expectations come from the README contract (reason codes, statuses,
//! headers, decision records), not from the implementation.
//!
//! Run with `make e2e` / `make test`, or `cargo nextest run -p chaperone-test-harness` with
//! `CHAPERONE_WASM` and `ENVOY_BIN` pointing at a built module and an Envoy 1.40.

use chaperone_test_harness::envoy::scratch_dir;
use chaperone_test_harness::template::QuickstartPorts;
use chaperone_test_harness::tokens::{
    base64url, compact, hs256_token, now, signing_input, unsigned_token, with_claims_replaced,
};
use chaperone_test_harness::{
    free_ports, render_quickstart, wasm_path, workspace_root, AgentKey, EchoUpstream, Envoy,
    Gateway,
};
use serde_json::{json, Value};

mod support;
use support::*;

// ---------------------------------------------------------------------------------------------
// Allow and deny

#[test]
fn allowed_request_reaches_the_upstream_with_verified_identity_and_a_full_record() {
    let (key, gateway) = es256_gateway();
    let sent = claims();
    let token = key.mint(&sent);
    let response = gateway.with_token("GET", "/tickets/42?expand=1", &token);
    let record = assert_allowed(
        &gateway,
        &response,
        &key,
        &sent,
        "GET",
        "/tickets/42?expand=1",
    );

    assert_eq!(record["reason"], "ticket_read");
    assert_eq!(record["rule"], "tickets.read");
    assert_eq!(record["path"], DECISION_PATH);
    assert_eq!(record["bundles"][POLICY_NAME]["revision"], REVISION);
    // The credential stays at the gateway (as with jwt_authn's default `forward: false`).
    let seen = gateway.upstream.requests();
    assert!(
        seen[0].header_values("authorization").is_empty(),
        "the agent token reached the upstream"
    );
    // The echo that came back through Envoy shows the same identity headers.
    let echoed = response.json();
    assert!(
        echoed["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["x-chaperone-agent-id", AGENT])),
        "echo: {echoed}"
    );
    assert_token_not_logged(&gateway, &token);

    let access = gateway.access_log_entry(record["decision_id"].as_str().unwrap());
    assert_eq!(access["status"], 200);
    assert_eq!(access["decision"], "allow");
    assert_eq!(access["agent_id"], AGENT);
    assert_eq!(access["reason"], "ticket_read");

    // An issuer with `forward: true` lets it through unchanged.
    let mut forwarding = config(&[&key]);
    forwarding["issuers"][0]["forward"] = json!(true);
    let gateway = Gateway::start(&forwarding.to_string());
    let response = gateway.with_token("GET", "/tickets/42", &token);
    assert_eq!(response.status, 200);
    assert_eq!(
        gateway.upstream.requests()[0].header_values("authorization"),
        [bearer(&token).as_slice()]
    );
}

#[test]
fn policy_denial_is_403_with_the_policy_reason_and_never_reaches_the_upstream() {
    let (key, gateway) = es256_gateway();
    let token = key.mint(&claims());
    for (method, path) in [("DELETE", "/tickets/42"), ("GET", "/admin/users")] {
        let response = gateway.with_token(method, path, &token);
        let record = assert_denied(&gateway, &response, 403, "not_permitted");
        assert_eq!(record["rule"], "default_deny", "record: {record}");
        assert_eq!(
            record["agent"]["id"], AGENT,
            "denials are attributed: {record}"
        );
        assert_eq!(record["agent"]["owner"], OWNER, "record: {record}");
        assert_eq!(record["request"]["method"], method, "record: {record}");
        assert_eq!(record["request"]["path"], path, "record: {record}");
        assert_eq!(record["bundles"][POLICY_NAME]["revision"], REVISION);

        let access = gateway.access_log_entry(record["decision_id"].as_str().unwrap());
        assert_eq!(access["status"], 403);
        assert_eq!(access["decision"], "deny");
        assert_eq!(access["reason"], "not_permitted");
        // README: "chaperone_<reason>"; whether <reason> is the policy's or `policy_denied`
        // is not pinned down, so only the prefix is checked here.
        assert!(
            access["details"]
                .as_str()
                .is_some_and(|d| d.starts_with("chaperone_")),
            "access log: {access}"
        );
    }
    assert_upstream_not_reached(&gateway);
    assert_token_not_logged(&gateway, &token);
}

#[test]
fn missing_token_is_401_with_a_bare_bearer_challenge() {
    let (_key, gateway) = es256_gateway();
    let response = gateway.request("GET", "/tickets/42", &[]);
    let record = assert_denied(&gateway, &response, 401, "token_missing");
    // RFC 6750 section 3.1: no error code when the request carried no credentials.
    assert_eq!(
        response.header_str("www-authenticate").as_deref(),
        Some("Bearer realm=\"chaperone\"")
    );
    assert_eq!(record["agent"], Value::Null);
    assert_upstream_not_reached(&gateway);

    let access = gateway.access_log_entry(record["decision_id"].as_str().unwrap());
    assert_eq!(access["status"], 401);
    assert_eq!(access["decision"], "deny");
    assert_eq!(access["reason"], "token_missing");
    assert_eq!(access["details"], "chaperone_token_missing");

    // The quickstart's probe route has chaperone off: no token needed, no decision made.
    let probe = gateway.request("GET", "/healthz", &[]);
    assert_eq!((probe.status, probe.body_text().as_str()), (200, "ok\n"));
    assert!(probe.header_str("x-chaperone-decision-id").is_none());
    assert_eq!(
        gateway.request("GET", "/healthz/x", &[]).status,
        401,
        "only that path"
    );
}

// ---------------------------------------------------------------------------------------------
// Token validity

#[test]
fn expired_token_is_rejected_beyond_the_clock_skew_only() {
    let (key, gateway) = es256_gateway();
    let now = now();
    let expired = key.mint(&claims_with(json!({"iat": now - 900, "exp": now - 600})));
    assert_rejects(&gateway, &expired, "token_expired");
    assert_upstream_not_reached(&gateway);

    // Expired 5 s ago, inside the default 60 s skew: still accepted.
    let sent = claims_with(json!({"iat": now - 300, "exp": now - 5}));
    let response = gateway.with_token("GET", "/tickets/1", &key.mint(&sent));
    assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/1");
}

#[test]
fn token_lifetime_beyond_the_maximum_is_rejected() {
    let (key, gateway) = es256_gateway();
    let now = now();
    let two_hours = key.mint(&claims_with(json!({"iat": now, "exp": now + 7200})));
    assert_rejects(&gateway, &two_hours, "token_lifetime_exceeded");
    // Without iat the lifetime is counted from now.
    let no_iat = key.mint(&claims_with(json!({"iat": null, "exp": now + 7200})));
    assert_rejects(&gateway, &no_iat, "token_lifetime_exceeded");
    assert_upstream_not_reached(&gateway);

    // Exactly the default maximum (3600 s) is allowed.
    let sent = claims_with(json!({"iat": now, "exp": now + 3600}));
    let response = gateway.with_token("GET", "/tickets/1", &key.mint(&sent));
    assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/1");
}

#[test]
fn wrong_audience_is_rejected() {
    let (key, gateway) = es256_gateway();
    assert_rejects(
        &gateway,
        &key.mint(&claims_with(json!({"aud": "billing-api"}))),
        "audience_mismatch",
    );
    assert_rejects(
        &gateway,
        &key.mint(&claims_with(json!({"aud": ["billing-api", "crm"]}))),
        "audience_mismatch",
    );
    assert_upstream_not_reached(&gateway);

    // An array containing the configured audience is fine.
    let sent = claims_with(json!({"aud": ["billing-api", AUDIENCE]}));
    let response = gateway.with_token("GET", "/tickets/1", &key.mint(&sent));
    assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/1");
}

#[test]
fn wrong_or_missing_issuer_is_rejected() {
    let (key, gateway) = es256_gateway();
    assert_rejects(
        &gateway,
        &key.mint(&claims_with(json!({"iss": "https://idp.attacker.test"}))),
        "issuer_unknown",
    );
    // Exact match: a trailing slash is another issuer.
    assert_rejects(
        &gateway,
        &key.mint(&claims_with(json!({"iss": format!("{ISSUER}/")}))),
        "issuer_unknown",
    );
    assert_rejects(
        &gateway,
        &key.mint(&claims_with(json!({"iss": null}))),
        "issuer_unknown",
    );
    assert_upstream_not_reached(&gateway);
}

#[test]
fn bad_signature_is_rejected() {
    let (key, gateway) = es256_gateway();
    // Another key claiming the trusted key's kid.
    let impostor = AgentKey::es256(key.kid());
    assert_rejects(&gateway, &impostor.mint(&claims()), "signature_invalid");
    // A genuine token whose claims were edited afterwards.
    let genuine = key.mint(&claims());
    let elevated = with_claims_replaced(&genuine, &claims_with(json!({"sub": "admin-bot"})));
    assert_rejects(&gateway, &elevated, "signature_invalid");
    // A signature of the right length that is all zeros.
    let (signing_input, _) = genuine.rsplit_once('.').unwrap();
    let zeros = format!("{signing_input}.{}", base64url(&[0u8; 64]));
    assert_rejects(&gateway, &zeros, "signature_invalid");
    assert_upstream_not_reached(&gateway);
}

#[test]
fn alg_none_is_rejected() {
    let (key, gateway) = es256_gateway();
    let mut tokens = vec![unsigned_token(
        &json!({"alg": "none", "typ": "JWT"}),
        &claims(),
    )];
    for alg in ["none", "None", "NONE"] {
        tokens.push(unsigned_token(
            &json!({"alg": alg, "typ": "JWT", "kid": key.kid()}),
            &claims(),
        ));
    }
    // The same with some signature bytes attached.
    let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid()});
    tokens.insert(
        0,
        compact(
            header.to_string().as_bytes(),
            claims().to_string().as_bytes(),
            b"sig",
        ),
    );
    // README: `algorithm_not_allowed` covers `none`; the classic `header.claims.` form (empty
    // signature) is the one that matters most.
    for token in tokens {
        let response = gateway.with_token("GET", "/tickets/42", &token);
        assert_eq!(response.status, 401, "alg none accepted: {token}");
        assert_eq!(
            response.json()["reason"],
            "algorithm_not_allowed",
            "alg none token {token}"
        );
        assert_token_rejected(&gateway, &response, "algorithm_not_allowed", &token);
    }
    assert_upstream_not_reached(&gateway);
}

#[test]
fn hs256_keyed_with_the_public_key_is_rejected() {
    let (key, gateway) = es256_gateway();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()});
    // Every form an attacker might guess the verifier would use as the HMAC secret.
    let secrets: [(&str, Vec<u8>); 4] = [
        ("PEM", key.public_key_pem().into_bytes()),
        ("DER", key.public_key_der()),
        ("raw point", key.public_key_raw()),
        ("JWK JSON", key.public_jwk().to_string().into_bytes()),
    ];
    for (form, secret) in secrets {
        let token = hs256_token(&header, &claims(), &secret);
        let response = gateway.with_token("GET", "/tickets/42", &token);
        assert_eq!(response.status, 401, "public key as {form}");
        assert_token_rejected(&gateway, &response, "algorithm_not_allowed", &token);
    }
    assert_upstream_not_reached(&gateway);
}

#[test]
fn hs256_keyed_with_the_public_key_is_rejected_even_where_hs256_is_allowed() {
    // The issuer allows HS256 but has only an EC key: no key serves HS256, so the algorithm in
    // the token header must never turn the EC public key into an HMAC secret.
    let key = AgentKey::es256("es-1");
    let mut config = config(&[&key]);
    config["issuers"][0]["algorithms"] = json!(["ES256", "HS256"]);
    let gateway = Gateway::start(&config.to_string());
    let pem = key.public_key_pem();
    let with_kid = hs256_token(
        &json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()}),
        &claims(),
        pem.as_bytes(),
    );
    assert_rejects(&gateway, &with_kid, "key_unknown");
    let without_kid = hs256_token(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims(),
        pem.as_bytes(),
    );
    assert_rejects(&gateway, &without_kid, "key_unknown");
    assert_upstream_not_reached(&gateway);

    // The EC key still works for ES256.
    let sent = claims();
    let response = gateway.with_token("GET", "/tickets/1", &key.mint(&sent));
    assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/1");
}

#[test]
fn other_token_defects_have_their_reason_codes() {
    let (key, gateway) = es256_gateway();
    let now = now();
    let mut padded = claims();
    padded["padding"] = json!("x".repeat(9000));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown kid",
            AgentKey::es256("es-unknown").mint(&claims()),
            "key_unknown",
        ),
        (
            "not yet valid",
            key.mint(&claims_with(json!({"nbf": now + 600}))),
            "token_not_yet_valid",
        ),
        (
            "issued in the future",
            key.mint(&claims_with(json!({"iat": now + 600, "exp": now + 900}))),
            "token_not_yet_valid",
        ),
        (
            "no exp",
            key.mint(&claims_with(json!({"exp": null}))),
            "claim_invalid",
        ),
        (
            "no sub",
            key.mint(&claims_with(json!({"sub": null}))),
            "claim_invalid",
        ),
        (
            "empty sub",
            key.mint(&claims_with(json!({"sub": ""}))),
            "claim_invalid",
        ),
        (
            "owner not a string",
            key.mint(&claims_with(json!({"owner": 42}))),
            "claim_invalid",
        ),
        (
            "larger than max_token_bytes",
            key.mint(&padded),
            "token_too_large",
        ),
        (
            "crit header",
            key.mint_with_header(
                &json!({"alg": "ES256", "kid": key.kid(), "crit": ["exp"]}),
                &claims(),
            ),
            "token_unsupported",
        ),
        (
            "nested JWT",
            key.mint_with_header(
                &json!({"alg": "ES256", "kid": key.kid(), "cty": "JWT"}),
                &claims(),
            ),
            "token_unsupported",
        ),
        (
            "two parts",
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0".to_owned(),
            "token_malformed",
        ),
        ("not base64url", "a+b.c/d.e=f".to_owned(), "token_malformed"),
    ];
    for (case, token, reason) in cases {
        let response = gateway.with_token("GET", "/tickets/42", &token);
        assert_eq!(
            response.json()["reason"],
            reason,
            "{case}: got {} {}",
            response.status,
            response.body_text()
        );
        assert_token_rejected(&gateway, &response, reason, &token);
    }
    // A scheme other than the configured prefix is malformed, not missing.
    let response = gateway.request(
        "GET",
        "/tickets/42",
        &[("authorization", b"Basic YWxpY2U6c2VjcmV0")],
    );
    assert_denied(&gateway, &response, 401, "token_malformed");
    assert_upstream_not_reached(&gateway);
}

/// The JOSE-layer and claim cases of the security catalogue (sections A and B) that the tests
/// above do not already cover, each with the reason the README promises.
#[test]
fn catalogue_token_attacks_get_their_reason_codes() {
    let (key, gateway) = es256_gateway();
    let now = now();
    let signed = |header: &str, claims: &str| -> String {
        let input = signing_input(header.as_bytes(), claims.as_bytes());
        format!("{input}.{}", base64url(&key.sign_raw(input.as_bytes())))
    };
    let claims_text = claims().to_string();
    let with_kid = |kid: Value| json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string();
    let good = key.mint(&claims());
    let (good_input, _) = good.rsplit_once('.').unwrap();
    let header = key.header().to_string();
    let mut cases: Vec<(&str, String, &str)> = vec![
        (
            "A01 alg nOnE",
            unsigned_token(&json!({"alg": "nOnE", "kid": key.kid()}), &claims()),
            "algorithm_not_allowed",
        ),
        (
            "A02 signature stripped",
            format!("{good_input}."),
            "signature_invalid",
        ),
        (
            "A04 RS256 header naming an ES256 key",
            key.mint_with_header(&json!({"alg": "RS256", "kid": key.kid()}), &claims()),
            "key_unknown",
        ),
        (
            "A07 kid number",
            signed(&with_kid(json!(5)), &claims_text),
            "token_malformed",
        ),
        (
            "A07 kid 10 KB",
            signed(&with_kid(json!("k".repeat(10_000))), &claims_text),
            "token_too_large",
        ),
        (
            "A08 empty crit",
            signed(
                &json!({"alg": "ES256", "kid": key.kid(), "crit": []}).to_string(),
                &claims_text,
            ),
            "token_unsupported",
        ),
        (
            "A08 unencoded payload",
            signed(
                &json!({"alg": "ES256", "kid": key.kid(), "b64": false, "crit": ["b64"]})
                    .to_string(),
                &claims_text,
            ),
            "token_unsupported",
        ),
        (
            "A09 duplicate alg",
            signed(
                &format!(r#"{{"alg":"none","alg":"ES256","kid":"{}"}}"#, key.kid()),
                &claims_text,
            ),
            "token_malformed",
        ),
        (
            "A10 padded signature",
            format!("{good}="),
            "token_malformed",
        ),
        ("A11 four parts", format!("{good}.AAAA"), "token_malformed"),
        ("A11 dots only", ".".repeat(5_000), "token_malformed"),
        (
            "A12 JSON serialization",
            r#"{"payload":"eyJzdWIiOiJ4In0"}"#.to_owned(),
            "token_malformed",
        ),
        (
            "A13 JWE",
            "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d".to_owned(),
            "token_unsupported",
        ),
        (
            "A13 enc header on a JWS",
            signed(
                &json!({"alg": "ES256", "kid": key.kid(), "enc": "A256GCM"}).to_string(),
                &claims_text,
            ),
            "token_unsupported",
        ),
        (
            "A20 expired and badly signed: the signature is judged first",
            with_claims_replaced(
                &good,
                &claims_with(json!({"iat": now - 4000, "exp": now - 3600})),
            ),
            "signature_invalid",
        ),
        (
            "B05 exp as a string",
            key.mint(&claims_with(json!({"exp": (now + 300).to_string()}))),
            "token_malformed",
        ),
        (
            "B05 exp negative",
            key.mint(&claims_with(json!({"exp": -1}))),
            "claim_invalid",
        ),
        (
            "B06 duplicate sub",
            signed(
                &header,
                &format!(
                    r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"{AGENT}","sub":"admin","exp":{}}}"#,
                    now + 300
                ),
            ),
            "token_malformed",
        ),
        (
            "B07 aud a number",
            key.mint(&claims_with(json!({"aud": 7}))),
            "token_malformed",
        ),
        (
            "B10 sub a number",
            key.mint(&claims_with(json!({"sub": 7}))),
            "token_malformed",
        ),
        (
            "B11 claims an array",
            signed(&header, "[]"),
            "token_malformed",
        ),
    ];
    // A07: a `kid` is only ever a lookup key, whatever it contains.
    for kid in [
        "../../../../dev/null",
        "|sleep 10",
        "x' UNION SELECT '1';--",
        "",
        "es-1\u{0}",
    ] {
        cases.push((
            "A07 hostile kid",
            signed(&with_kid(json!(kid)), &claims_text),
            "key_unknown",
        ));
    }
    for (case, token, reason) in cases {
        let response = gateway.with_token("GET", "/tickets/42", &token);
        assert_eq!(
            response.json()["reason"],
            reason,
            "{case}: got {} {}",
            response.status,
            response.body_text()
        );
        assert_token_rejected(&gateway, &response, reason, &token);
    }
    assert_upstream_not_reached(&gateway);
    // None of it poisoned the VM.
    assert_eq!(gateway.with_token("GET", "/tickets/42", &good).status, 200);
}

#[test]
fn key_location_headers_in_a_token_are_ignored_and_never_fetched() {
    // README: jku, x5u, x5c and jwk never select a key and never cause a network call. Here they
    // point at (or embed) an attacker's key; the attacker's server counts every connection.
    let (key, gateway) = es256_gateway();
    let attacker_host = EchoUpstream::start().unwrap();
    let attacker = AgentKey::es256(key.kid());
    let url = format!("http://127.0.0.1:{}/jwks.json", attacker_host.port());
    let extra_headers = [
        ("jku", json!(url)),
        ("x5u", json!(url)),
        ("x5c", json!([base64url(&attacker.public_key_der())])),
        ("jwk", attacker.public_jwk()),
    ];
    for (name, value) in extra_headers {
        let mut header = key.header();
        header[name] = value;

        // Signed by the real key: the header is ignored, the token is fine.
        let sent = claims();
        let genuine = key.mint_with_header(&header, &sent);
        let response = gateway.with_token("GET", "/tickets/1", &genuine);
        assert_eq!(
            response.status,
            200,
            "genuine token with a `{name}` header: {}",
            response.body_text()
        );
        assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/1");

        // Signed by the attacker: the configured key is used, so the signature fails.
        let forged = attacker.mint_with_header(&header, &claims());
        let response = gateway.with_token("GET", "/tickets/1", &forged);
        assert_eq!(
            response.json()["reason"],
            "signature_invalid",
            "attacker token with a `{name}` header: {} {}",
            response.status,
            response.body_text()
        );
        assert_token_rejected(&gateway, &response, "signature_invalid", &forged);
    }
    assert_eq!(
        attacker_host.request_count(),
        0,
        "a key URL from a token was fetched"
    );
}

#[test]
fn allowed_types_restrict_the_typ_header() {
    let key = AgentKey::es256("es-1");
    let mut config = config(&[&key]);
    config["issuers"][0]["allowed_types"] = json!(["at+jwt"]);
    let gateway = Gateway::start(&config.to_string());
    let plain = key.mint(&claims());
    assert_rejects(&gateway, &plain, "type_not_allowed");
    assert_upstream_not_reached(&gateway);

    // Case-insensitive, `application/` prefix ignored.
    let sent = claims();
    let header = json!({"alg": "ES256", "kid": key.kid(), "typ": "application/AT+JWT"});
    let response = gateway.with_token("GET", "/tickets/7", &key.mint_with_header(&header, &sent));
    assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/7");
}

// ---------------------------------------------------------------------------------------------
// Hostile requests

#[test]
fn duplicate_authorization_headers_are_ambiguous_even_when_one_is_valid() {
    let (key, gateway) = es256_gateway();
    let valid = bearer(&key.mint(&claims()));
    let other_valid = bearer(&key.mint(&claims()));
    let junk = b"Bearer attacker".to_vec();
    let pairs: [(&str, &[u8], &str, &[u8]); 4] = [
        ("authorization", &valid, "authorization", &junk),
        ("authorization", &junk, "Authorization", &valid),
        ("Authorization", &valid, "AUTHORIZATION", &valid),
        ("authorization", &valid, "authorization", &other_valid),
    ];
    for (first_name, first, second_name, second) in pairs {
        let response = gateway.request(
            "GET",
            "/tickets/42",
            &[(first_name, first), (second_name, second)],
        );
        let record = assert_denied(&gateway, &response, 401, "token_ambiguous");
        assert_eq!(
            response.header_str("www-authenticate").as_deref(),
            Some("Bearer realm=\"chaperone\", error=\"invalid_token\", error_description=\"token_ambiguous\"")
        );
        assert_eq!(record["agent"], Value::Null, "record: {record}");
    }
    assert_upstream_not_reached(&gateway);

    // The same valid token alone is accepted: the rejections above were about the duplicate.
    let response = gateway.request("GET", "/tickets/42", &[("authorization", &valid)]);
    assert_eq!(response.status, 200, "{}", response.body_text());
}

#[test]
fn tokens_in_two_configured_headers_are_ambiguous() {
    let key = AgentKey::es256("es-1");
    let mut config = config(&[&key]);
    config["from_headers"] = json!([
        {"name": "authorization", "value_prefix": "Bearer "},
        {"name": "x-agent-token", "value_prefix": ""}
    ]);
    let gateway = Gateway::start(&config.to_string());
    let token = key.mint(&claims());
    let response = gateway.request(
        "GET",
        "/tickets/42",
        &[
            ("authorization", &bearer(&token)),
            ("x-agent-token", token.as_bytes()),
        ],
    );
    assert_denied(&gateway, &response, 401, "token_ambiguous");
    assert_upstream_not_reached(&gateway);

    // Either header alone works.
    let response = gateway.request("GET", "/tickets/42", &[("x-agent-token", token.as_bytes())]);
    assert_eq!(response.status, 200, "{}", response.body_text());
}

#[test]
fn non_utf8_header_bytes_neither_crash_nor_confuse_the_filter() {
    let (key, mut gateway) = es256_gateway();
    let sent = claims();
    let token = key.mint(&sent);
    let invalid_utf8: &[u8] = b"caf\xe9 \xc0\xaf \xff\xfe";

    // In an ordinary header: judged normally.
    let response = gateway.request(
        "GET",
        "/tickets/1",
        &[
            ("authorization", &bearer(&token)),
            ("x-notes", invalid_utf8),
        ],
    );
    assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/1");

    // As the credential: malformed, with or without the scheme prefix.
    let mut prefixed = b"Bearer ".to_vec();
    prefixed.extend_from_slice(invalid_utf8);
    let mut inside_token = bearer(&token);
    inside_token.insert(20, 0xff);
    for credential in [prefixed, inside_token, invalid_utf8.to_vec()] {
        let response = gateway.request("GET", "/tickets/1", &[("authorization", &credential)]);
        assert_denied(&gateway, &response, 401, "token_malformed");
    }
    assert_eq!(gateway.upstream.request_count(), 1);

    // The same Envoy, and the same VM, keep serving.
    for _ in 0..3 {
        let sent = claims();
        let response = gateway.with_token("GET", "/tickets/2", &key.mint(&sent));
        assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/2");
    }
    assert!(
        gateway.envoy.is_running(),
        "Envoy exited:\n{}",
        gateway.envoy.log_tail(50)
    );
    assert!(
        !gateway.envoy.log_text().contains("panic"),
        "the VM panicked:\n{}",
        gateway.envoy.log_tail(50)
    );
}

#[test]
fn client_supplied_identity_headers_never_reach_the_upstream() {
    let (key, gateway) = es256_gateway();
    let spoofed: [(&str, &[u8]); 5] = [
        ("x-chaperone-agent-id", b"root"),
        ("X-Chaperone-Owner", b"ceo@example.com"),
        ("x-chaperone-issuer", b"https://idp.attacker.test"),
        ("x-chaperone-decision-id", b"forged"),
        ("x-chaperone-role", b"admin"),
    ];

    // With an owner in the token: upstream sees exactly the verified values.
    let sent = claims();
    let token = bearer(&key.mint(&sent));
    let mut headers = vec![("authorization", token.as_slice())];
    headers.extend_from_slice(&spoofed);
    let response = gateway.request("GET", "/tickets/9", &headers);
    assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/9");
    let seen = gateway.upstream.requests();
    assert!(
        seen[0].header_values("x-chaperone-role").is_empty(),
        "{:?}",
        seen[0].headers
    );

    // Without an owner in the token: no owner header at all, not the spoofed one.
    let ownerless = claims_with(json!({"owner": null}));
    let token = bearer(&key.mint(&ownerless));
    let mut headers = vec![("authorization", token.as_slice())];
    headers.extend_from_slice(&spoofed);
    let response = gateway.request("GET", "/tickets/10", &headers);
    let record = assert_allowed(&gateway, &response, &key, &ownerless, "GET", "/tickets/10");
    assert_eq!(record["agent"]["owner"], Value::Null);

    // Underscore spellings: Envoy may refuse the request, or chaperone strips them; either way
    // the upstream never sees a client-chosen identity.
    let token = bearer(&key.mint(&sent));
    let response = gateway.request(
        "GET",
        "/tickets/11",
        &[("authorization", &token), ("x_chaperone_agent_id", b"root")],
    );
    assert!(
        matches!(response.status, 200 | 400),
        "status {}",
        response.status
    );
    for request in gateway.upstream.requests() {
        let identity: Vec<_> = request
            .headers
            .iter()
            .filter(|(name, _)| name.replace('_', "-").starts_with("x-chaperone-"))
            .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
            .collect();
        for (name, value) in &identity {
            assert!(
                ![
                    "root",
                    "ceo@example.com",
                    "https://idp.attacker.test",
                    "forged",
                    "admin"
                ]
                .contains(&value.as_str()),
                "client-supplied {name}: {value} reached the upstream"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// `envoy --mode validate` on the quickstart config with this plugin configuration.
fn validate(plugin_config: &str) -> (bool, String) {
    let dir = scratch_dir("validate").unwrap();
    let ports = free_ports(3).unwrap();
    let yaml = render_quickstart(
        &workspace_root(),
        QuickstartPorts {
            listen: ports[0],
            admin: ports[1],
            upstream: ports[2],
        },
        &wasm_path(),
        plugin_config,
    )
    .unwrap();
    let config_path = dir.join("envoy.yaml");
    std::fs::write(&config_path, yaml).unwrap();
    let result = Envoy::validate(&config_path);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[test]
fn envoy_validate_accepts_a_good_config_and_rejects_bad_ones_naming_the_field() {
    let key = AgentKey::es256("es-1");
    let good = config(&[&key]);
    let (ok, output) = validate(&good.to_string());
    assert!(ok, "the good configuration was rejected:\n{output}");

    let mut unknown_top_level = good.clone();
    unknown_top_level["polciy"] = good["policy"].clone();
    let mut unknown_nested = good.clone();
    unknown_nested["issuers"][0]["audence"] = json!([AUDIENCE]);
    let mut bad_rego = good.clone();
    bad_rego["policy"]["modules"]["tickets.rego"] =
        json!("package chaperone.authz\n\ndecision := {\n");
    let mut encryption_key = good.clone();
    encryption_key["issuers"][0]["local_jwks"]["keys"][0]["use"] = json!("enc");
    let cases = [
        ("unknown top-level key", unknown_top_level, "polciy"),
        ("unknown issuer key", unknown_nested, "audence"),
        ("Rego that does not compile", bad_rego, "tickets.rego"),
        ("encryption key in the JWKS", encryption_key, "local_jwks"),
    ];
    for (case, config, field) in cases {
        let (ok, output) = validate(&config.to_string());
        assert!(!ok, "{case}: accepted by envoy --mode validate:\n{output}");
        let chaperone_lines: String = output
            .lines()
            .filter(|line| line.contains("chaperone"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            chaperone_lines.contains(field),
            "{case}: chaperone's message does not name `{field}`:\n{output}"
        );
    }
}

#[test]
fn empty_configuration_fails_closed_with_503() {
    let gateway = Gateway::start("");
    let key = AgentKey::es256("es-1");
    let token = bearer(&key.mint(&claims()));
    for headers in [vec![], vec![("authorization", token.as_slice())]] {
        let response = gateway.request("GET", "/tickets/1", &headers);
        assert_denied(&gateway, &response, 503, "policy_unavailable");
    }
    assert_upstream_not_reached(&gateway);
}

#[test]
fn rs256_and_eddsa_tokens_are_accepted() {
    let rsa = AgentKey::rs256("rs-1");
    let ed = AgentKey::ed25519("ed-1");
    let es = AgentKey::es256("es-1");
    let gateway = Gateway::start(&config(&[&rsa, &ed, &es]).to_string());
    for key in [&rsa, &ed] {
        let sent = claims();
        let response = gateway.with_token("GET", "/tickets/5", &key.mint(&sent));
        assert_allowed(&gateway, &response, key, &sent, "GET", "/tickets/5");
    }
    // A key only verifies its own algorithm: an RS256 header naming the Ed25519 key fails.
    let crossed = ed.mint_with_header(&json!({"alg": "RS256", "kid": ed.kid()}), &claims());
    assert_rejects(&gateway, &crossed, "key_unknown");
    assert_eq!(gateway.upstream.request_count(), 2);
}

#[test]
fn opa_envoy_style_boolean_policy_at_the_default_decision_path() {
    let key = AgentKey::es256("es-1");
    let policy = "package envoy.authz\n\ndefault allow := false\n\nallow if {\n\tinput.attributes.request.http.method == \"GET\"\n\tinput.parsed_path[0] == \"tickets\"\n}\n";
    let config =
        json!({"issuers": [issuer(&[&key])], "policy": {"modules": {"authz.rego": policy}}});
    let gateway = Gateway::start(&config.to_string());

    let sent = claims();
    let response = gateway.with_token("GET", "/tickets/3", &key.mint(&sent));
    let record = assert_allowed(&gateway, &response, &key, &sent, "GET", "/tickets/3");
    assert_eq!(record["path"], "envoy/authz/allow");
    assert_eq!(
        record["bundles"]["policy"]["revision"], "",
        "default name and revision"
    );

    let response = gateway.with_token("DELETE", "/tickets/3", &key.mint(&claims()));
    let record = assert_denied(&gateway, &response, 403, "policy_denied");
    assert_eq!(record["path"], "envoy/authz/allow");
    assert_eq!(gateway.upstream.request_count(), 1);
}

#[test]
fn policy_shapes_the_denial_reply() {
    let key = AgentKey::es256("es-1");
    let policy = r#"package chaperone.authz

decision := {"allowed": false, "http_status": 429, "reason": "rate_limited", "rule": "quota",
             "body": "slow down", "headers": {"retry-after": "30"}}
"#;
    let mut config = config(&[&key]);
    config["policy"]["modules"] = json!({"quota.rego": policy});
    let gateway = Gateway::start(&config.to_string());
    let response = gateway.with_token("GET", "/tickets/1", &key.mint(&claims()));
    let record = assert_denied(&gateway, &response, 429, "rate_limited");
    assert_eq!(response.json()["message"], "slow down");
    assert_eq!(response.header_str("retry-after").as_deref(), Some("30"));
    assert_eq!(record["rule"], "quota");
    assert_upstream_not_reached(&gateway);
}

// ---------------------------------------------------------------------------------------------
// A VM that aborts

/// A panic inside the VM (here regorus 0.14.1's `sprintf`, handed a format from the request
/// with a non-ASCII digit after `%`) fails that request closed; with the shipped
/// `FAIL_RELOAD`, Envoy starts a new VM after its backoff and the gateway serves again, where
/// `FAIL_CLOSED` refused every later request.
#[test]
fn a_vm_that_aborts_is_replaced_and_the_gateway_serves_again() {
    let key = AgentKey::es256("es-1");
    let mut plugin_config = config(&[&key]);
    plugin_config["policy"]["modules"] = json!({"format.rego": r#"package chaperone.authz

decision := {"allowed": true, "reason": "formatted", "rule": sprintf(input.parsed_query.format[0], [1])}
"#});
    let mut gateway = Gateway::start(&plugin_config.to_string());
    let formatted = |format: &str| {
        let path = format!("/tickets/1?format={format}");
        gateway.with_token("GET", &path, &key.mint(&claims()))
    };
    assert_eq!(formatted("rule-%25d").status, 200);

    let aborted = formatted("%25%C2%BDd"); // "%½d"
    assert_eq!(aborted.status, 503, "{}", aborted.body_text());
    assert!(
        gateway.envoy.log_text().contains("panic"),
        "the VM did not abort:\n{}",
        gateway.envoy.log_tail(30)
    );

    wait_until(
        std::time::Duration::from_secs(15),
        "a new VM serves the request",
        || formatted("rule-%25d").status == 200,
    );
    assert!(gateway.envoy.is_running());
}
