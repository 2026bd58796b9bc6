//! Development keys and tokens: enough to try chaperone without an identity provider.
//! Production tokens come from your identity provider, never from this command.

use crate::args::Args;
use chaperone_core::encoding::base64url_encode;
use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::ExitCode;

pub fn command(args: &mut Args) -> Result<ExitCode, String> {
    match args.next_positional().as_deref() {
        Some("keygen") => keygen(args),
        Some("mint") => mint(args),
        _ => Err("usage: chaperone token keygen|mint ...".to_owned()),
    }
}

fn keygen(args: &mut Args) -> Result<ExitCode, String> {
    let alg = args.required("alg")?;
    let kid = args.required("kid")?;
    let out = args.required("out")?;
    args.finish()?;
    let (pem, jwk) = match alg.as_str() {
        "ES256" => {
            let key = ES256KeyPair::generate();
            let point = key.public_key().public_key().to_bytes_uncompressed();
            let (x, y) = (
                point.get(1..33).unwrap_or_default(),
                point.get(33..65).unwrap_or_default(),
            );
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": base64url_encode(x), "y": base64url_encode(y)});
            (key.to_pem().map_err(|e| e.to_string())?, jwk)
        }
        "RS256" => {
            let key = RS256KeyPair::generate(2048).map_err(|e| e.to_string())?;
            let components = key.public_key().to_components();
            let jwk = json!({"kty": "RSA", "n": base64url_encode(&components.n), "e": base64url_encode(&components.e)});
            (key.to_pem().map_err(|e| e.to_string())?, jwk)
        }
        "EdDSA" => {
            let key = Ed25519KeyPair::generate();
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": base64url_encode(&key.public_key().to_bytes())});
            (key.to_pem(), jwk)
        }
        other => return Err(format!("unsupported --alg `{other}` (ES256, RS256, EdDSA)")),
    };
    let mut jwk = jwk;
    if let Some(object) = jwk.as_object_mut() {
        object.insert("kid".to_owned(), json!(kid));
        object.insert("alg".to_owned(), json!(alg));
        object.insert("use".to_owned(), json!("sig"));
    }
    let out = Path::new(&out);
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let key_path = out.join(format!("{kid}.key.pem"));
    std::fs::write(&key_path, pem).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let jwks_path = out.join("jwks.json");
    let mut jwks: Value = std::fs::read_to_string(&jwks_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| json!({"keys": []}));
    let keys = jwks
        .get_mut("keys")
        .and_then(Value::as_array_mut)
        .ok_or("jwks.json has no keys array")?;
    keys.retain(|k| k.get("kid").and_then(Value::as_str) != Some(kid.as_str()));
    keys.push(jwk);
    let text = serde_json::to_string_pretty(&jwks).map_err(|e| e.to_string())?;
    std::fs::write(&jwks_path, text).map_err(|e| format!("{}: {e}", jwks_path.display()))?;
    eprintln!(
        "wrote {} and added kid `{kid}` to {}",
        key_path.display(),
        jwks_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn mint(args: &mut Args) -> Result<ExitCode, String> {
    let key_path = args.required("key")?;
    let alg = args.required("alg")?;
    let kid = args.required("kid")?;
    let issuer = args.required("iss")?;
    let audience = args.required("aud")?;
    let subject = args.required("sub")?;
    let owner = args.optional("owner")?;
    // Negative: a token that expired that long ago, for trying `token_expired`.
    let ttl: i64 = args
        .optional("ttl")?
        .map_or(Ok(600), |t| t.parse())
        .map_err(|_| "--ttl must be whole seconds (negative: already expired)")?;
    let typ = args.optional("typ")?;
    let extra = args.values("claim")?;
    args.finish()?;

    let now = Clock::now_since_epoch().as_secs();
    let mut custom = Map::new();
    if let Some(owner) = owner {
        custom.insert("owner".to_owned(), json!(owner));
    }
    for pair in extra {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--claim `{pair}` is not NAME=VALUE"))?;
        // JSON values (numbers, arrays, objects, null) stay typed; anything else is a string.
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        custom.insert(name.to_owned(), value);
    }
    let mut claims = Claims::with_custom_claims(Map::new(), Duration::from_secs(0))
        .with_issuer(issuer)
        .with_audience(audience)
        .with_subject(subject)
        .with_jwt_id(random_id());
    claims.issued_at = Some(Duration::from_secs(now));
    claims.invalid_before = None;
    claims.expires_at = Some(Duration::from_secs(now.saturating_add_signed(ttl)));
    registered_claims(&mut claims, &mut custom)?;
    claims.custom = custom;
    let options = HeaderOptions {
        signature_type: typ,
        ..HeaderOptions::default()
    };
    let pem = std::fs::read_to_string(&key_path).map_err(|e| format!("{key_path}: {e}"))?;
    let token = match alg.as_str() {
        "ES256" => ES256KeyPair::from_pem(&pem)
            .map(|k| k.with_key_id(&kid))
            .and_then(|k| k.sign_with_options(claims, &options)),
        "RS256" => RS256KeyPair::from_pem(&pem)
            .map(|k| k.with_key_id(&kid))
            .and_then(|k| k.sign_with_options(claims, &options)),
        "EdDSA" => Ed25519KeyPair::from_pem(&pem)
            .map(|k| k.with_key_id(&kid))
            .and_then(|k| k.sign_with_options(claims, &options)),
        other => return Err(format!("unsupported --alg `{other}`")),
    }
    .map_err(|e| format!("cannot sign with {key_path}: {e}"))?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Moves `--claim name=` out of `custom` into `slot`, read by `read`; `null` empties it.
fn replace_claim<T>(
    custom: &mut Map<String, Value>,
    name: &str,
    slot: &mut Option<T>,
    read: impl FnOnce(Value) -> Result<T, String>,
) -> Result<(), String> {
    if let Some(value) = custom.remove(name) {
        *slot = match value {
            Value::Null => None,
            value => Some(read(value)?),
        };
    }
    Ok(())
}

const AUD_USAGE: &str = "--claim aud= must be a string, an array of them, or null";

/// `--claim`s that name registered claims replace the token's own, once each (`null`
/// leaves the claim out): `exp`, `iat`, `nbf` in Unix seconds, `iss`, `sub`, `jti` as
/// strings (whatever they look like), `aud` as a string or an array of them.
fn registered_claims(
    claims: &mut JWTClaims<Map<String, Value>>,
    custom: &mut Map<String, Value>,
) -> Result<(), String> {
    for (name, slot) in [
        ("exp", &mut claims.expires_at),
        ("iat", &mut claims.issued_at),
        ("nbf", &mut claims.invalid_before),
    ] {
        replace_claim(custom, name, slot, |value| {
            value
                .as_u64()
                .map(Duration::from_secs)
                .ok_or_else(|| format!("--claim {name}= must be Unix seconds or null"))
        })?;
    }
    // What the command line said, as text (`sub=42` is the subject "42").
    for (name, slot) in [
        ("iss", &mut claims.issuer),
        ("sub", &mut claims.subject),
        ("jti", &mut claims.jwt_id),
    ] {
        replace_claim(custom, name, slot, |value| {
            Ok(match value {
                Value::String(text) => text,
                other => other.to_string(),
            })
        })?;
    }
    replace_claim(custom, "aud", &mut claims.audiences, |value| {
        let strings = |many: Vec<Value>| -> Option<HashSet<String>> {
            many.into_iter()
                .map(|a| match a {
                    Value::String(a) => Some(a),
                    _ => None,
                })
                .collect()
        };
        match value {
            Value::String(one) => Ok(Audiences::AsString(one)),
            Value::Array(many) => Ok(Audiences::AsSet(strings(many).ok_or(AUD_USAGE)?)),
            _ => Err(AUD_USAGE.to_owned()),
        }
    })
}

/// A random `jti`. jwt-simple's key generator is the CSPRNG already in the build.
fn random_id() -> String {
    let random = HS256Key::generate().to_bytes();
    base64url_encode(random.get(..12).unwrap_or_default())
}
