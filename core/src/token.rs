//! Agent authentication: find exactly one token, run the cheap checks, verify the signature
//! with a key chosen by the issuer's key set, then check the claims chaperone requires.

use crate::config::{normalize_type, Compiled, Issuer, KeySource};
use crate::encoding::{base64url_decode, parse_json_strict};
use crate::identity::{identify, Actor};
use crate::input::PolicyValue;
use crate::jwks::{Algorithm, VerifyingKey};
use crate::reason::Reason;
use crate::remote::{KeyLookup, KeyStore};
use serde_json::{Map, Value};

/// A verified agent identity. Holds claims, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: String,
    pub issuer: String,
    /// The accountable human: the registry's owner when a registry is configured, else the
    /// token's owner claim.
    pub owner: Option<String>,
    pub kid: Option<String>,
    pub jti: Option<String>,
    /// The token's `sub` (the agent itself, or the principal of a delegated token).
    pub subject: String,
    pub on_behalf_of: Option<String>,
    /// Actors of the `act` claims, current actor first.
    pub delegation: Vec<Actor>,
    pub task: Option<String>,
    pub purpose: Option<String>,
    /// The transaction token's context (`tctx`), when one was presented.
    pub task_context: Option<PolicyValue>,
    /// `Some(false)` for an unregistered agent let through by `registry.unregistered: flag`;
    /// `None` without a registry.
    pub registered: Option<bool>,
    /// Every verified claim, converted once for the policy input.
    pub claims: PolicyValue,
}

/// A verified transaction token (draft-ietf-oauth-transaction-tokens), reduced to what the
/// request needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub issuer: String,
    /// `txn`: the task id.
    pub id: String,
    /// `sub`: must be the agent token's subject.
    pub subject: String,
    /// `scope`: the purpose.
    pub purpose: Option<String>,
    /// `tctx`.
    pub context: Option<PolicyValue>,
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

/// A token whose signature and registered claims hold.
struct Verified {
    issuer_index: usize,
    kid: Option<String>,
    claims: Map<String, Value>,
    /// The first Unix second at which the token counts as expired.
    expired_from_s: u64,
}

/// Verifies an agent token at `now_ms` (Unix milliseconds from the host clock) with the
/// configured keys, or for remote issuers the VM's fetched ones, and reads its identity.
/// Returns the agent (registry and revocations not yet applied) and the Unix second from
/// which the token counts as expired.
pub fn authenticate(
    compiled: &Compiled,
    fetched: &KeyStore,
    token: &[u8],
    now_ms: u64,
) -> Result<(Agent, u64), Reason> {
    let verified = verify(compiled, &compiled.issuers, 0, fetched, token, now_ms)?;
    let issuer = &compiled.issuers[verified.issuer_index];
    let identity = identify(
        &issuer.claim_mapping,
        &verified.claims,
        compiled.max_delegation_depth,
    )?;
    let jti = verified
        .claims
        .get("jti")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let agent = Agent {
        id: identity.agent_id,
        issuer: issuer.issuer.clone(),
        owner: identity.owner,
        kid: verified.kid,
        jti,
        subject: identity.subject,
        on_behalf_of: identity.on_behalf_of,
        delegation: identity.delegation,
        task: identity.task,
        purpose: identity.purpose,
        task_context: None,
        registered: None,
        claims: PolicyValue::from(Value::Object(verified.claims)),
    };
    Ok((agent, verified.expired_from_s))
}

/// Verifies a transaction token: its own issuer and keys, `typ: txntoken+jwt`, a `txn` and a
/// `sub`. Any defect is `txn_token_invalid`, except that missing keys stay
/// `keys_unavailable` (the token may be fine).
pub fn verify_transaction(
    compiled: &Compiled,
    fetched: &KeyStore,
    token: &[u8],
    now_ms: u64,
) -> Result<(Transaction, u64), Reason> {
    let Some(config) = &compiled.transaction_tokens else {
        return Err(Reason::TxnTokenInvalid);
    };
    let verified = verify(
        compiled,
        std::slice::from_ref(&config.issuer),
        compiled.transaction_key_index(),
        fetched,
        token,
        now_ms,
    )
    .map_err(|reason| match reason {
        Reason::KeysUnavailable => reason,
        _ => Reason::TxnTokenInvalid,
    })?;
    let text = |name: &str| match verified.claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) if !value.is_empty() => Ok(Some(value.clone())),
        Some(_) => Err(Reason::TxnTokenInvalid),
    };
    let transaction = Transaction {
        issuer: config.issuer.issuer.clone(),
        id: text("txn")?.ok_or(Reason::TxnTokenInvalid)?,
        subject: text("sub")?.ok_or(Reason::TxnTokenInvalid)?,
        purpose: text("scope")?,
        context: match verified.claims.get("tctx") {
            None => None,
            Some(context @ Value::Object(_)) => Some(PolicyValue::from(context.clone())),
            Some(_) => return Err(Reason::TxnTokenInvalid),
        },
    };
    Ok((transaction, verified.expired_from_s))
}

/// A verified just-in-time grant. Whether it applies to a request (its agent, its task,
/// revocation, time left) is checked per request by attribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub jti: String,
    pub issuer: String,
    /// `sub`: the agent the grant is for.
    pub agent: String,
    pub approver: String,
    /// `txn`: the task the grant is bound to, if any.
    pub task: Option<String>,
    pub reason: Option<String>,
    /// RFC 9396 `authorization_details`: what the grant permits, read by the policy.
    pub authorization_details: PolicyValue,
    pub not_before_ns: u64,
    pub expires_at_ns: u64,
}

/// Verifies a grant against the grant issuer: signature, validity window (at most
/// `max_validity_seconds`), and the claims a grant needs: `jti`, `sub`, `approver` (a string,
/// or an object with a string `sub`), and `authorization_details` (objects with a `type`).
pub fn verify_grant(
    compiled: &Compiled,
    fetched: &KeyStore,
    token: &[u8],
    now_ms: u64,
) -> Result<(Grant, u64), Reason> {
    let Some(config) = &compiled.grants else {
        return Err(Reason::ClaimInvalid);
    };
    let verified = verify(
        compiled,
        std::slice::from_ref(&config.issuer),
        compiled.grant_key_index(),
        fetched,
        token,
        now_ms,
    )?;
    let claims = &verified.claims;
    let text = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) if !value.is_empty() => Ok(Some(value.clone())),
        Some(_) => Err(Reason::ClaimInvalid),
    };
    let approver = match claims.get("approver") {
        Some(Value::String(approver)) if !approver.is_empty() => approver.clone(),
        Some(Value::Object(approver)) => match approver.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(Reason::ClaimInvalid),
        },
        _ => return Err(Reason::ClaimInvalid),
    };
    let details = match claims.get("authorization_details") {
        Some(Value::Array(entries))
            if !entries.is_empty()
                && entries.iter().all(|e| {
                    e.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| !t.is_empty())
                }) =>
        {
            PolicyValue::from(Value::Array(entries.clone()))
        }
        _ => return Err(Reason::ClaimInvalid),
    };
    let seconds = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_f64)
            .map(|s| s.max(0.0) as u64)
    };
    let start_s = seconds("nbf")
        .or_else(|| seconds("iat"))
        .unwrap_or(now_ms / 1000);
    let grant = Grant {
        jti: text("jti")?.ok_or(Reason::ClaimInvalid)?,
        issuer: config.issuer.issuer.clone(),
        agent: text("sub")?.ok_or(Reason::ClaimInvalid)?,
        approver,
        task: text("txn")?,
        reason: text("reason")?,
        authorization_details: details,
        not_before_ns: start_s.saturating_mul(1_000_000_000),
        expires_at_ns: seconds("exp").unwrap_or(0).saturating_mul(1_000_000_000),
    };
    Ok((grant, verified.expired_from_s))
}

/// The JWS checks every token gets: shape and size, header, issuer among `issuers` (whose
/// key sets are numbered from `first_index` in the VM's key store), algorithm, type, key,
/// signature, then the registered claims.
fn verify(
    compiled: &Compiled,
    issuers: &[Issuer],
    first_index: usize,
    fetched: &KeyStore,
    token: &[u8],
    now_ms: u64,
) -> Result<Verified, Reason> {
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
    let position = issuers
        .iter()
        .position(|i| i.issuer == iss)
        .ok_or(Reason::IssuerUnknown)?;
    let issuer = &issuers[position];
    let key_set_index = first_index + position;
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
        KeySource::Remote(_) => match fetched.lookup(key_set_index, now_ms) {
            KeyLookup::Keys(keys) => keys,
            KeyLookup::Unavailable => return Err(Reason::KeysUnavailable),
        },
    };
    let key = select_key(keys, kid, algorithm).inspect_err(|_| {
        // Perhaps the provider rotated: fetch again (at most once per cooldown).
        fetched.note_unknown_key(key_set_index);
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
    Ok(Verified {
        issuer_index: position,
        kid: kid.map(str::to_owned),
        claims: payload,
        expired_from_s,
    })
}

/// The string claim `name` of a token's payload, read without any verification. Only for
/// a token whose signature already held, such as one that failed just its time checks
/// (`verify` checks the signature before the times).
pub fn unverified_text_claim(token: &[u8], name: &str) -> Option<String> {
    let payload = std::str::from_utf8(token).ok()?.split('.').nth(1)?;
    match decode_object(payload).ok()?.remove(name)? {
        Value::String(text) => Some(text),
        _ => None,
    }
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
