#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bounded fuzzing on stable Rust (security catalogue F01 to F04 and F06): tokens mutated from
//! valid ones, claims of every shape signed correctly, key sets with fields replaced, and
//! header lists of random bytes go through the public API, and each case is held to an oracle
//! besides "no panic": what may be allowed, what a key may verify, what a record may hold.
//! proptest runs 256 cases per property (set `PROPTEST_CASES` for more) and shrinks a failure
//! to a small case, which it prints.

use chaperone_core::encoding::{base64url_decode, base64url_encode};
use chaperone_core::jwks::{admit_key_set, Algorithm};
use chaperone_core::record::mask_credentials;
use chaperone_core::{decide, load, Decision, Loaded, Reason, RequestFacts, Runtime};
use jwt_simple::prelude::*;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use std::sync::LazyLock;

mod fuzz;
use fuzz::json_value;

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "agents-api";
const SUBJECT: &str = "support-bot";
/// Seconds; the default `clock_skew_seconds` and `max_lifetime_seconds`.
const NOW: u64 = 1_800_000_000;
const SKEW: i64 = 60;
const MAX_LIFETIME: i64 = 3600;
const MAX_RECORD_BYTES: usize = 2048;

const POLICY: &str = r#"package chaperone.authz

default decision := {"allowed": false, "reason": "not_permitted", "rule": "default_deny"}

decision := {"allowed": true, "reason": "ticket_read", "rule": "tickets.read"} if {
	input.attributes.request.http.method == "GET"
	input.parsed_path[0] == "tickets"
}
"#;

/// One key of each family chaperone verifies, made once for the whole file.
struct Signers {
    es256: ES256KeyPair,
    rs256: RS256KeyPair,
    eddsa: Ed25519KeyPair,
    hs256: HS256Key,
    hs256_secret: Vec<u8>,
}

static SIGNERS: LazyLock<Signers> = LazyLock::new(|| {
    let hs256_secret: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    Signers {
        es256: ES256KeyPair::generate().with_key_id("es"),
        rs256: RS256KeyPair::generate(2048).unwrap().with_key_id("rs"),
        eddsa: Ed25519KeyPair::generate().with_key_id("ed"),
        hs256: HS256Key::from_bytes(&hs256_secret).with_key_id("hs"),
        hs256_secret,
    }
});

/// The four keys' JWKs, each declaring its `alg`.
fn jwks() -> Vec<Value> {
    let s = &*SIGNERS;
    let point = s.es256.public_key().public_key().to_bytes_uncompressed();
    let rsa = s.rs256.public_key().to_components();
    vec![
        json!({"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256", "use": "sig",
               "x": base64url_encode(&point[1..33]), "y": base64url_encode(&point[33..65])}),
        json!({"kty": "RSA", "kid": "rs", "alg": "RS256",
               "n": base64url_encode(&rsa.n), "e": base64url_encode(&rsa.e)}),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
               "x": base64url_encode(&s.eddsa.public_key().to_bytes())}),
        json!({"kty": "oct", "kid": "hs", "alg": "HS256",
               "k": base64url_encode(&s.hs256_secret)}),
    ]
}

const ALGORITHMS: [&str; 4] = ["ES256", "RS256", "EdDSA", "HS256"];

thread_local! {
    /// Per test thread: a configuration's compiled policy is not shared between threads.
    static LOADED: &'static Loaded = Box::leak(Box::new(configuration()));
}

fn configuration() -> Loaded {
    let config = json!({
        "issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ALGORITHMS,
                     "local_jwks": {"keys": jwks()}}],
        "policy": {"modules": {"authz.rego": POLICY}, "decision_path": "chaperone/authz/decision",
                   "name": "fuzz", "revision": "r1"},
        "decision_log": {"max_record_bytes": MAX_RECORD_BYTES},
    });
    load(config.to_string().as_bytes()).expect("the configuration compiles")
}

/// A valid token from each key, as jwt-simple signs it.
static VALID_TOKENS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let claims = || {
        let mut claims = Claims::with_custom_claims(
            json!({"owner": "alice@example.com"}),
            Duration::from_secs(300),
        )
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_subject(SUBJECT)
        .with_jwt_id("j-1");
        claims.issued_at = Some(Duration::from_secs(NOW - 10));
        claims.invalid_before = None;
        claims.expires_at = Some(Duration::from_secs(NOW + 300));
        claims
    };
    let s = &*SIGNERS;
    vec![
        s.es256.sign(claims()).unwrap(),
        s.rs256.sign(claims()).unwrap(),
        s.eddsa.sign(claims()).unwrap(),
        s.hs256.authenticate(claims()).unwrap(),
    ]
});

fn request(headers: Vec<(Vec<u8>, Vec<u8>)>) -> RequestFacts {
    RequestFacts {
        headers,
        decision_id: "fuzz".to_owned(),
        now_ns: NOW * 1_000_000_000,
        ..RequestFacts::default()
    }
}

fn get_ticket(authorization: &[u8]) -> RequestFacts {
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = [
        (":method", "GET"),
        (":path", "/tickets/42"),
        (":authority", "gw.test"),
        (":scheme", "https"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    headers.push((b"authorization".to_vec(), authorization.to_vec()));
    request(headers)
}

fn bearer(token: &[u8]) -> Vec<u8> {
    [b"Bearer ".as_slice(), token].concat()
}

/// Decides with a fresh VM state, and checks what holds for every decision: a status and
/// reason from the README's table, and a record that is one JSON object within its bound
/// holding none of the `secrets`.
fn decide_checked(facts: &RequestFacts, secrets: &[&str]) -> Decision {
    let loaded = LOADED.with(|loaded| *loaded);
    let mut decision = decide(loaded, &mut Runtime::new(loaded, 1), facts);
    assert!(
        Reason::ALL.contains(&decision.reason) && decision.reason != Reason::InternalError,
        "{:?}",
        decision.reason
    );
    assert_eq!(decision.status, decision.reason.status());
    assert_eq!(decision.allowed, decision.status == 200);
    let line = decision.record.to_json_bounded(MAX_RECORD_BYTES);
    assert!(
        line.len() <= MAX_RECORD_BYTES,
        "{} bytes: {line}",
        line.len()
    );
    let record: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(record.is_object());
    for secret in secrets {
        assert!(
            !line.contains(secret),
            "the record holds {secret:?}: {line}"
        );
    }
    decision
}

/// A token's three parts, decoded; `None` when it is not three base64url parts.
fn decoded_parts(token: &[u8]) -> Option<Vec<Vec<u8>>> {
    let parts: Vec<&[u8]> = token.trim_ascii().split(|b| *b == b'.').collect();
    if parts.len() != 3 {
        return None;
    }
    parts.iter().map(|part| base64url_decode(part)).collect()
}

/// One edit of a token's bytes, at a position taken modulo its length.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
    /// Moves the part at the first index to the place of the second.
    SwapParts(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Edit::SetByte(at, byte)),
        (
            any::<Index>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..8),
                Just(b".".to_vec()),
                Just(b"=".to_vec()),
                Just(b" ".to_vec()),
                Just(b"eyJ".to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<Index>(), 1usize..16).prop_map(|(at, count)| Edit::Remove(at, count)),
        any::<Index>().prop_map(Edit::Truncate),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Edit::SwapParts(a, b)),
    ]
}

fn apply(token: &mut Vec<u8>, edit: &Edit) {
    let at = |index: &Index, len: usize| if len == 0 { 0 } else { index.index(len) };
    match edit {
        Edit::FlipBit(index, bit) => {
            if !token.is_empty() {
                let i = at(index, token.len());
                token[i] ^= 1 << bit;
            }
        }
        Edit::SetByte(index, byte) => {
            if !token.is_empty() {
                let i = at(index, token.len());
                token[i] = *byte;
            }
        }
        Edit::Insert(index, bytes) => {
            let i = at(index, token.len() + 1);
            token.splice(i..i, bytes.iter().copied());
        }
        Edit::Remove(index, count) => {
            if !token.is_empty() {
                let i = at(index, token.len());
                let end = (i + count).min(token.len());
                token.drain(i..end);
            }
        }
        Edit::Truncate(index) => {
            let i = at(index, token.len() + 1);
            token.truncate(i);
        }
        Edit::SwapParts(a, b) => {
            let mut parts: Vec<Vec<u8>> = token.split(|c| *c == b'.').map(<[u8]>::to_vec).collect();
            if *a < parts.len() && *b < parts.len() {
                parts.swap(*a, *b);
                *token = parts.join(&b'.');
            }
        }
    }
}

/// A registered claim: most often `valid` (so that whole claim sets pass often enough for
/// the "valid is accepted" direction to be checked), else left out, one of `interesting`
/// values, or any JSON value.
fn claim(valid: Option<Value>, interesting: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        10 => Just(valid),
        1 => Just(None),
        3 => proptest::sample::select(interesting).prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
}

fn time(offset: i64) -> Value {
    Value::from(NOW as i64 + offset)
}

/// Signs any header and claims JSON with the ES256 key, as an identity provider would.
fn sign_es256(header: &Value, claims: &Value) -> String {
    use p256::ecdsa::signature::Signer;
    let signing_input = format!(
        "{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(claims.to_string().as_bytes())
    );
    let signature: p256::ecdsa::Signature = SIGNERS
        .es256
        .key_pair()
        .as_ref()
        .sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        base64url_encode(&signature.to_bytes())
    )
}

/// Whether chaperone may accept these claims, by the README's rules for agent tokens:
/// numeric dates are non-negative numbers, `exp` is required and in the future, `nbf` and
/// `iat` not in the future, and the lifetime from `iat` (or now) at most
/// `max_lifetime_seconds`, each with `clock_skew_seconds` of tolerance; the issuer and an
/// audience match; the subject is a non-empty string.
fn claims_acceptable(claims: &serde_json::Map<String, Value>) -> bool {
    let (now, skew) = (NOW as f64, SKEW as f64);
    // Left out: Some(None); a non-negative number: Some(Some(n)); anything else: None.
    let date = |name: &str| match claims.get(name) {
        None => Some(None),
        Some(value) => value.as_f64().filter(|n| *n >= 0.0).map(Some),
    };
    let (Some(Some(exp)), Some(nbf), Some(iat)) = (date("exp"), date("nbf"), date("iat")) else {
        return false;
    };
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(auds)) => auds.iter().any(|a| a == AUDIENCE),
        _ => false,
    };
    exp + skew > now
        && nbf.is_none_or(|nbf| nbf <= now + skew)
        && iat.is_none_or(|iat| iat <= now + skew)
        && exp - iat.unwrap_or(now).min(now) <= MAX_LIFETIME as f64 + skew
        && claims.get("iss") == Some(&Value::from(ISSUER))
        && audience_ok
        && claims
            .get("sub")
            .and_then(Value::as_str)
            .is_some_and(|sub| !sub.is_empty())
}

fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::sample::select(vec![
            ":method",
            ":path",
            "authorization",
            "Authorization",
            "x-chaperone-agent-id",
            "X_Chaperone_Owner",
            "x-request-id",
            "cookie",
            "host",
            "referer",
            "",
        ])
        .prop_map(|name| name.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(bearer(VALID_TOKENS[0].as_bytes())),
        proptest::sample::select(vec![
            "GET",
            "POST",
            "get",
            "https",
            "gw.test",
            "Bearer ",
            "Bearer  x.y.z",
            "/tickets/42",
            "/tickets/42?access_token=abc",
            "/tickets/%2e%2e/admin//x?a=%ff",
            "/t?access_token=a?access_token=b",
            "*",
            "",
        ])
        .prop_map(|value| value.as_bytes().to_vec()),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..64),
        (1usize..6000).prop_map(|n| vec![b'a'; n]),
    ]
}

/// The pairs of one header name, in any case.
fn named<'p>(
    pairs: &'p [(Vec<u8>, Vec<u8>)],
    name: &'p [u8],
) -> impl Iterator<Item = &'p (Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
}

proptest! {
    /// F01: a valid token with bytes flipped, set, inserted, removed or cut, or its parts
    /// swapped, is accepted only when its parts still decode to the original's; the original
    /// itself is accepted; no record holds the token's signature.
    #[test]
    fn edited_tokens_are_accepted_only_when_unchanged(
        which in 0usize..4,
        edits in proptest::collection::vec(edit(), 0..4),
    ) {
        let original = VALID_TOKENS[which].as_bytes();
        let mut token = original.to_vec();
        for edit in &edits {
            apply(&mut token, edit);
        }
        let signature = String::from_utf8_lossy(original.rsplit(|b| *b == b'.').next().unwrap()).into_owned();
        let decision = decide_checked(&get_ticket(&bearer(&token)), &[&signature]);
        let unchanged = decoded_parts(&token) == decoded_parts(original);
        if token == original {
            prop_assert!(decision.allowed, "{:?}", decision.reason);
        }
        if decision.allowed {
            prop_assert!(unchanged, "accepted an altered token: {}", String::from_utf8_lossy(&token));
        }
    }

    /// F02: claims of any shape, correctly signed, are accepted only when every registered
    /// claim passes (expiry, not-before, issued-at, lifetime, issuer, audience, subject), and
    /// claims that all pass are accepted.
    #[test]
    fn signed_claims_are_accepted_exactly_when_valid(
        exp in claim(Some(time(300)), vec![ time(-1), time(-SKEW - 1), time(-SKEW + 5), time(MAX_LIFETIME + 100),
                          time(MAX_LIFETIME + SKEW), time(MAX_LIFETIME + SKEW + 1),
                          Value::from(0), Value::from(-1), json!(1.0e20), Value::from("1800000300"),
                          json!(NOW as f64 + 0.5)]),
        nbf in claim(None, vec![time(-10), time(SKEW + 30), time(SKEW - 5), Value::from("0")]),
        iat in claim(Some(time(-10)), vec![ time(SKEW + 30), time(-MAX_LIFETIME), Value::from(true)]),
        iss in claim(Some(Value::from(ISSUER)), vec![Value::from(format!("{ISSUER}/")),
                          Value::from("HTTPS://IDP.TEST"), Value::from(5)]),
        aud in claim(Some(Value::from(AUDIENCE)), vec![Value::from("Agents-API"), json!([AUDIENCE, "other"]),
                          json!(["other"]), json!([]), Value::from(7)]),
        sub in claim(Some(Value::from(SUBJECT)), vec![Value::from(""), Value::from(5), Value::Null]),
        extra in proptest::option::weighted(0.3, proptest::collection::btree_map("[a-z_]{1,8}", json_value(), 1..4)),
    ) {
        let mut claims: serde_json::Map<String, Value> = extra.unwrap_or_default().into_iter().collect();
        for (name, value) in [("exp", exp), ("nbf", nbf), ("iat", iat), ("iss", iss), ("aud", aud), ("sub", sub)] {
            claims.remove(name);
            if let Some(value) = value {
                claims.insert(name.to_owned(), value);
            }
        }
        let token = sign_es256(&json!({"alg": "ES256", "typ": "JWT", "kid": "es"}), &Value::Object(claims.clone()));
        let decision = decide_checked(&get_ticket(&bearer(token.as_bytes())), &[]);
        let acceptable = claims_acceptable(&claims);
        // The subject is the agent's id: the rest of chaperone's claims (act, owner, ...)
        // may still refuse a token these checks pass, so only one direction is exact.
        if decision.allowed {
            prop_assert!(acceptable, "accepted {}", Value::Object(claims));
        }
        let only_registered = claims.keys().all(|k| ["exp", "nbf", "iat", "iss", "aud", "sub"].contains(&k.as_str()));
        if acceptable && only_registered {
            prop_assert!(decision.allowed, "{:?} for {}", decision.reason, Value::Object(claims));
        }
    }

    /// F03: a JWK with fields removed or replaced by any JSON value is admitted or refused,
    /// never a panic; a key admitted from it verifies the original key's signature exactly
    /// when its key material is the original's.
    #[test]
    fn edited_keys_verify_only_with_their_own_material(
        which in 0usize..4,
        edits in proptest::collection::vec(
            (proptest::sample::select(vec!["kty", "crv", "alg", "kid", "use", "key_ops", "x", "y", "n", "e", "k", "d"]),
             proptest::option::of(json_value())),
            1..4),
    ) {
        let original = jwks()[which].clone();
        let mut jwk = original.clone();
        for (field, value) in &edits {
            let fields = jwk.as_object_mut().unwrap();
            match value {
                Some(value) => fields.insert((*field).to_owned(), value.clone()),
                None => fields.remove(*field),
            };
        }
        let accepted: Vec<Algorithm> = ALGORITHMS.iter().filter_map(|a| Algorithm::from_name(a)).collect();
        let Ok(keys) = admit_key_set(&json!({"keys": [jwk]}), &accepted, "fuzz") else {
            return Ok(());
        };
        let token = &VALID_TOKENS[which];
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        let signature = base64url_decode(signature.as_bytes()).unwrap();
        // The fields that make the key, by its type; others do not change what it verifies.
        let material = |key: &Value| {
            let fields: &[&str] = match original["kty"].as_str() {
                Some("EC") => &["kty", "crv", "x", "y"],
                Some("RSA") => &["kty", "n", "e"],
                Some("OKP") => &["kty", "crv", "x"],
                _ => &["kty", "k"],
            };
            fields.iter().map(|f| key.get(*f).cloned()).collect::<Vec<_>>()
        };
        let same_material = material(&jwk) == material(&original);
        for key in keys {
            prop_assert!(accepted.contains(&key.algorithm));
            let verified = key.verify(signing_input.as_bytes(), &signature);
            let expected = same_material && key.algorithm == Algorithm::from_name(ALGORITHMS[which]).unwrap();
            prop_assert_eq!(verified, expected, "{} as {:?}", jwk, key.algorithm);
        }
    }

    /// F04 and F06: a request line and header pairs of any kind (credentials, spoofed
    /// identity headers, bytes that are not UTF-8, long values, pseudo-headers missing or
    /// repeated) get a decision and a bounded record without the token; the request goes
    /// upstream only with one valid bearer token, as the policy allows, and then without any
    /// identity header the client sent.
    #[test]
    fn any_header_list_gets_a_decision_and_a_bounded_record(
        line in proptest::collection::vec((
            proptest::sample::select(vec![":method", ":path", ":authority", ":scheme"]),
            proptest::option::weighted(0.9, header_value()),
        ), 4..6),
        pairs in proptest::collection::vec((header_name(), header_value()), 0..10),
        well_formed in proptest::option::weighted(0.5, proptest::collection::vec((header_name(), header_value()), 0..3)),
    ) {
        // Half the cases: an allowed request with a few pairs added, so that what may go
        // upstream is checked as often as what may not.
        let headers: Vec<(Vec<u8>, Vec<u8>)> = match well_formed {
            Some(added) => {
                let mut headers = get_ticket(&bearer(VALID_TOKENS[0].as_bytes())).headers;
                headers.extend(added);
                headers
            }
            None => line
                .into_iter()
                .filter_map(|(name, value)| Some((name.as_bytes().to_vec(), value?)))
                .chain(pairs)
                .collect(),
        };
        let signature = VALID_TOKENS[0].rsplit('.').next().unwrap();
        let decision = decide_checked(&request(headers.clone()), &[signature]);
        if decision.allowed {
            let credentials: Vec<_> = named(&headers, b"authorization").collect();
            prop_assert_eq!(credentials.len(), 1);
            prop_assert_eq!(&credentials[0].1, &bearer(VALID_TOKENS[0].as_bytes()));
            prop_assert_eq!(named(&headers, b":method").next().map(|(_, v)| v.as_slice()), Some(&b"GET"[..]));
            for (name, _) in &headers {
                let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                if name.replace('_', "-").starts_with("x-chaperone-") {
                    prop_assert!(decision.strip_headers.iter().any(|s| s.eq_ignore_ascii_case(&name)),
                                 "{} reaches the upstream", name);
                }
            }
        }
    }

    /// F06: masking any text made of credential-like pieces never panics, leaves no token
    /// that could be put back together (its payload and signature, also with its dots
    /// percent-escaped, once or twice), no value of an `access_token` parameter (also behind
    /// escapes), and
    /// changes nothing when run again.
    #[test]
    fn masking_leaves_no_token_and_is_stable(
        pieces in proptest::collection::vec(prop_oneof![
            Just(VALID_TOKENS[0].clone()),
            Just(VALID_TOKENS[0].replace('.', "%2E")),
            Just(VALID_TOKENS[0].replace('.', "%252E")),
            proptest::sample::select(vec![
                "?access_token=S3CR3T", "#access_token=S3CR3T", "%3Faccess_token%3DS3CR3T",
                "&access%5Ftoken=S3CR3T", "%253Faccess_token%253DS3CR3T", "&access%255Ftoken=S3CR3T",
                "%25", "%252E", "access_token", "=", "?", "&", "#", " ", ".", ",", "/",
                "%", "%2E", "%3D", "%5F", "eyJ", "[REDACTED]", "[REDACTED-JWT]", "/tickets/1",
            ])
            .prop_map(str::to_owned),
            "\\PC{0,6}",
        ], 0..14),
    ) {
        let text = pieces.concat();
        let masked = mask_credentials(&text);
        let (_, payload_and_signature) = VALID_TOKENS[0].split_once('.').unwrap();
        let unescaped = masked.replace("%252E", ".").replace("%2E", ".");
        prop_assert!(!unescaped.contains(payload_and_signature), "{}", masked);
        prop_assert!(!masked.contains("S3CR3T"), "{}", masked);
        prop_assert_eq!(mask_credentials(&masked), masked.clone());
    }

    /// F06: text without credentials (hosts, versions, e-mail addresses, URLs with ordinary
    /// percent-escapes, words base64url would start as `{"`) comes out of masking unchanged.
    #[test]
    fn masking_leaves_ordinary_text_alone(
        pieces in proptest::collection::vec(proptest::sample::select(vec![
            "exchange", "exporter", "external-app", "ext-authz", "eyeglasses", "e30", "eyJ",
            "example.com", "alice@examples.co.uk", "v1.2", "2024", ".", "/", "?", "&", "=", "#",
            "%2F", "%3A", "%C3%A9", "%2E", "%2525", "%252F", "access", "tok_en", "-", "_", "https://", "cb",
        ]), 0..16),
    ) {
        let text = pieces.concat();
        prop_assert_eq!(mask_credentials(&text), text.clone());
    }
}
