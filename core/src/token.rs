//! Agent authentication: find exactly one token, run the cheap checks, verify the signature
//! with a key chosen by the issuer's key set, then check the claims chaperone requires.

use crate::config::{normalize_type, Compiled, Issuer, KeySource};
use crate::encoding::{base64url_decode, parse_json_strict};
use crate::jwks::{Algorithm, VerifyingKey};
use crate::reason::Reason;
use crate::remote::{KeyLookup, KeyStore};
use serde_json::{Map, Value};

/// A verified agent identity. Holds claims, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: String,
    pub issuer: String,
    pub owner: Option<String>,
    pub kid: Option<String>,
    pub jti: Option<String>,
    pub claims: Map<String, Value>,
}

/// Finds the agent token among the request headers. Exactly one configured header may carry
/// it, exactly once: a repeated header is ambiguous, never resolved by picking one.
pub fn extract_token<'a>(
    compiled: &Compiled,
    headers: &'a [(Vec<u8>, Vec<u8>)],
) -> Result<&'a [u8], Reason> {
    let mut found: Option<&[u8]> = None;
    for source in &compiled.token_sources {
        for (name, value) in headers {
            if !name.eq_ignore_ascii_case(source.name.as_bytes()) {
                continue;
            }
            if found.is_some() {
                return Err(Reason::TokenAmbiguous);
            }
            found = Some(strip_prefix(value, &source.value_prefix).ok_or(Reason::TokenMalformed)?);
        }
    }
    let token = found.ok_or(Reason::TokenMissing)?;
    if token.is_empty() {
        return Err(Reason::TokenMalformed);
    }
    // Hosts fold repeated headers into one comma-joined value (Envoy does for
    // `authorization`). A JWT never contains a comma, so this is several credentials.
    if token.contains(&b',') {
        return Err(Reason::TokenAmbiguous);
    }
    Ok(token)
}

/// Case-insensitive scheme prefix (RFC 7235), then the token with surrounding spaces trimmed.
fn strip_prefix<'a>(value: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    let prefix = prefix.as_bytes();
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    Some(value.get(prefix.len()..)?.trim_ascii())
}

/// Verifies a token at `now_ms` (Unix milliseconds from the host clock) with the configured
/// keys, or for remote issuers the VM's fetched ones. Returns the agent and the Unix second
/// from which the token counts as expired.
pub fn authenticate(
    compiled: &Compiled,
    fetched: &KeyStore,
    token: &[u8],
    now_ms: u64,
) -> Result<(Agent, u64), Reason> {
    let now_s = now_ms / 1000;
    if token.len() > compiled.max_token_bytes {
        return Err(Reason::TokenTooLarge);
    }
    let token = std::str::from_utf8(token).map_err(|_| Reason::TokenMalformed)?;
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::TokenMalformed);
    };
    if parts.next().is_some() {
        // Five parts is the JWE shape; anything else with extra dots is garbage.
        return Err(if token.split('.').count() == 5 {
            Reason::TokenUnsupported
        } else {
            Reason::TokenMalformed
        });
    }
    let header = decode_object(header_b64)?;
    let payload = decode_object(payload_b64)?;
    let signature = base64url_decode(signature_b64.as_bytes()).ok_or(Reason::TokenMalformed)?;

    // Header: nothing chaperone does not understand may change how the token is read.
    if header.contains_key("crit") || header.contains_key("enc") || header.contains_key("zip") {
        return Err(Reason::TokenUnsupported);
    }
    if let Some(cty) = header.get("cty") {
        let cty = cty.as_str().ok_or(Reason::TokenMalformed)?;
        if normalize_type(cty) == "JWT" {
            return Err(Reason::TokenUnsupported);
        }
    }
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Reason::TokenMalformed)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(Reason::TokenMalformed),
    };

    // The issuer picks the key set; its configuration decides everything after this.
    let iss = payload
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(Reason::IssuerUnknown)?;
    let issuer_index = compiled
        .issuers
        .iter()
        .position(|i| i.issuer == iss)
        .ok_or(Reason::IssuerUnknown)?;
    let issuer = &compiled.issuers[issuer_index];
    let algorithm = Algorithm::from_name(alg_name)
        .filter(|a| issuer.algorithms.contains(a))
        .ok_or(Reason::AlgorithmNotAllowed)?;
    if let Some(allowed) = &issuer.allowed_types {
        let typ = header
            .get("typ")
            .and_then(Value::as_str)
            .map(normalize_type);
        if !typ.is_some_and(|t| allowed.contains(&t)) {
            return Err(Reason::TypeNotAllowed);
        }
    }
    let keys = match &issuer.keys {
        KeySource::Local(keys) => keys.as_slice(),
        KeySource::Remote(_) => match fetched.lookup(issuer_index, now_ms) {
            KeyLookup::Keys(keys) => keys,
            KeyLookup::Unavailable => return Err(Reason::KeysUnavailable),
        },
    };
    let key = select_key(keys, kid, algorithm).inspect_err(|_| {
        // Perhaps the provider rotated: fetch again (at most once per cooldown).
        fetched.note_unknown_key(issuer_index);
    })?;

    // Nothing from the payload is trusted before this point but `iss`, which only chose
    // the key set. An empty signature (`header.payload.`) simply fails here.
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    if !key.verify(signing_input, &signature) {
        return Err(Reason::SignatureInvalid);
    }

    // The signature holds; now the claims chaperone itself requires.
    check_registered_claim_types(&payload)?;
    let expired_from_s = check_time_claims(issuer, &payload, now_s)?;
    check_audience(issuer, &payload)?;
    let id = match payload.get(&issuer.agent_id_claim) {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(Reason::ClaimInvalid),
    };
    let owner = match payload.get(&issuer.owner_claim) {
        None | Some(Value::Null) => None,
        Some(Value::String(owner)) if !owner.is_empty() => Some(owner.clone()),
        Some(_) => return Err(Reason::ClaimInvalid),
    };
    let jti = payload
        .get("jti")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let agent = Agent {
        id,
        issuer: issuer.issuer.clone(),
        owner,
        kid: kid.map(str::to_owned),
        jti,
        claims: payload,
    };
    Ok((agent, expired_from_s))
}

fn decode_object(part: &str) -> Result<Map<String, Value>, Reason> {
    let bytes = base64url_decode(part.as_bytes()).ok_or(Reason::TokenMalformed)?;
    match parse_json_strict(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Reason::TokenMalformed),
    }
}

/// With a `kid`, the key must carry that id and serve `alg`. Without one, exactly one key
/// may serve `alg`: trying several would multiply the crypto an attacker can make us do.
fn select_key<'a>(
    keys: &'a [VerifyingKey],
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Result<&'a VerifyingKey, Reason> {
    let mut matching = keys.iter().filter(|key| {
        key.algorithm == algorithm && kid.is_none_or(|kid| key.kid.as_deref() == Some(kid))
    });
    let key = matching.next().ok_or(Reason::KeyUnknown)?;
    if matching.next().is_some() {
        return Err(Reason::KeyUnknown);
    }
    Ok(key)
}

/// RFC 7519 section 4.1 types: string identifiers, a string-or-strings audience, numeric
/// dates. A token that gets them wrong is malformed, whatever else it says.
fn check_registered_claim_types(payload: &Map<String, Value>) -> Result<(), Reason> {
    let well_typed = |name: &str, value: &Value| match name {
        "iss" | "sub" | "jti" => value.is_string(),
        "aud" => {
            value.is_string()
                || value
                    .as_array()
                    .is_some_and(|list| list.iter().all(Value::is_string))
        }
        "exp" | "nbf" | "iat" => value.is_number(),
        _ => true,
    };
    if payload.iter().all(|(name, value)| well_typed(name, value)) {
        Ok(())
    } else {
        Err(Reason::TokenMalformed)
    }
}

/// `exp` is required; numeric dates must be numbers; the lifetime is capped. Returns the
/// first Unix second at which the token is expired (skew included).
fn check_time_claims(
    issuer: &Issuer,
    payload: &Map<String, Value>,
    now_s: u64,
) -> Result<u64, Reason> {
    let numeric = |name: &str| -> Result<Option<f64>, Reason> {
        match payload.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(Some)
                .ok_or(Reason::ClaimInvalid),
            Some(_) => Err(Reason::ClaimInvalid),
        }
    };
    let exp = numeric("exp")?.ok_or(Reason::ClaimInvalid)?;
    let iat = numeric("iat")?;
    let nbf = numeric("nbf")?;
    let now = now_s as f64;
    let skew = issuer.clock_skew_seconds as f64;
    if exp + skew <= now {
        return Err(Reason::TokenExpired);
    }
    if nbf.is_some_and(|nbf| nbf > now + skew) || iat.is_some_and(|iat| iat > now + skew) {
        return Err(Reason::TokenNotYetValid);
    }
    let start = iat.unwrap_or(now).min(now);
    if exp - start > issuer.max_lifetime_seconds as f64 + skew {
        return Err(Reason::TokenLifetimeExceeded);
    }
    // Bounded by the lifetime check above, so the conversion cannot overflow.
    Ok((exp + skew).ceil() as u64)
}

fn check_audience(issuer: &Issuer, payload: &Map<String, Value>) -> Result<(), Reason> {
    let accepted = |aud: &Value| {
        aud.as_str()
            .is_some_and(|a| issuer.audiences.iter().any(|c| c == a))
    };
    let matches = match payload.get("aud") {
        Some(Value::String(_)) => payload.get("aud").is_some_and(accepted),
        Some(Value::Array(list)) => list.iter().any(accepted),
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(Reason::AudienceMismatch)
    }
}
