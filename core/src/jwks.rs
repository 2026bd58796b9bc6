//! Key admission: turns a JWKS document into verification keys, refusing anything ambiguous
//! or weak. The key type and algorithm come from the JWK, never from a token header.

use crate::config::{config_error, ConfigError};
use crate::encoding::base64url_decode;
use crate::hash::{constant_time_eq, HashAlg};
use crate::p256_key::P256Key;
use crate::rsa::RsaPublicKey;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    ES256,
    ES384,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "EdDSA" => Algorithm::EdDSA,
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    fn rsa_padding(self) -> Option<(RsaPadding, HashAlg)> {
        Some(match self {
            Algorithm::RS256 => (RsaPadding::Pkcs1v15, HashAlg::Sha256),
            Algorithm::RS384 => (RsaPadding::Pkcs1v15, HashAlg::Sha384),
            Algorithm::RS512 => (RsaPadding::Pkcs1v15, HashAlg::Sha512),
            Algorithm::PS256 => (RsaPadding::Pss, HashAlg::Sha256),
            Algorithm::PS384 => (RsaPadding::Pss, HashAlg::Sha384),
            Algorithm::PS512 => (RsaPadding::Pss, HashAlg::Sha512),
            _ => return None,
        })
    }

    fn hmac_hash(self) -> Option<HashAlg> {
        match self {
            Algorithm::HS256 => Some(HashAlg::Sha256),
            Algorithm::HS384 => Some(HashAlg::Sha384),
            Algorithm::HS512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RsaPadding {
    Pkcs1v15,
    Pss,
}

/// P-256 keys of one key set that get a table for faster verification (`p256_key`).
const MAX_PRECOMPUTED_KEYS: usize = 8;

/// One key able to verify exactly one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    material: KeyMaterial,
}

#[derive(Clone)]
enum KeyMaterial {
    /// Shared: the table is large and key sets are cloned when installed.
    P256(Arc<P256Key>),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
    Rsa(RsaPublicKey),
    Hmac(Vec<u8>),
}

impl VerifyingKey {
    /// Whether verification uses a precomputed table (P-256 keys, see `p256_key`).
    pub fn has_precomputed_table(&self) -> bool {
        matches!(&self.material, KeyMaterial::P256(key) if key.has_table())
    }

    /// Checks a JWS signature over `signing_input` (`header.payload`, as sent). The key's own
    /// algorithm decides how; the token's `alg` only chose the key.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        match (&self.material, self.algorithm) {
            (KeyMaterial::P256(key), _) => key.verify(signing_input, signature),
            (KeyMaterial::P384(key), _) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify(signing_input, &s).is_ok()),
            (KeyMaterial::Ed25519(key), _) => ed25519_compact::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify(signing_input, &s).is_ok()),
            (KeyMaterial::Rsa(key), algorithm) => match algorithm.rsa_padding() {
                Some((RsaPadding::Pkcs1v15, hash)) => {
                    key.verify_pkcs1v15(hash, signing_input, signature)
                }
                Some((RsaPadding::Pss, hash)) => key.verify_pss(hash, signing_input, signature),
                None => false,
            },
            (KeyMaterial::Hmac(secret), algorithm) => algorithm
                .hmac_hash()
                .is_some_and(|hash| constant_time_eq(&hash.hmac(secret, signing_input), signature)),
        }
    }
}

/// Admits every usable key of a configured JWKS (`local_jwks`) for the issuer's algorithms.
/// Keys for algorithms the issuer does not accept are skipped; malformed, weak or ambiguous
/// keys are configuration errors: whoever wrote the document can fix it.
pub fn admit_key_set(
    jwks: &Value,
    algorithms: &[Algorithm],
    field: &str,
) -> Result<Vec<VerifyingKey>, ConfigError> {
    let admitted = admit_entries(jwks, algorithms, field)?;
    if let Some(error) = admitted.rejected.into_iter().next() {
        return Err(error);
    }
    if admitted.keys.is_empty() {
        return Err(no_usable_key(algorithms, field));
    }
    Ok(admitted.keys)
}

/// A key set fetched from an identity provider (`remote_jwks`). Providers publish more than
/// chaperone may use, so bad entries are dropped rather than failing the set: encryption
/// keys, weak or malformed keys, every key sharing an ambiguous `kid`, and any symmetric
/// (`oct`) key, since a secret served from a URL is no secret. The set is refused only when
/// it is not a JWKS or nothing usable is left.
pub fn admit_remote_key_set(
    jwks: &Value,
    algorithms: &[Algorithm],
) -> Result<RemoteKeySet, ConfigError> {
    let field = "jwks";
    let admitted = admit_entries(jwks, algorithms, field)?;
    let mut rejected: Vec<String> = admitted.rejected.iter().map(ToString::to_string).collect();
    let keys: Vec<VerifyingKey> = admitted
        .keys
        .into_iter()
        .filter(|key| {
            let symmetric = matches!(key.material, KeyMaterial::Hmac(_));
            if symmetric {
                rejected.push(format!(
                    "{field}: symmetric key `{}` dropped: never trusted from a URL",
                    key.kid.as_deref().unwrap_or("(no kid)")
                ));
            }
            !symmetric
        })
        .collect();
    if keys.is_empty() {
        return Err(no_usable_key(algorithms, field));
    }
    Ok(RemoteKeySet { keys, rejected })
}

/// What was admitted from a fetched key set, and what was dropped and why.
pub struct RemoteKeySet {
    pub keys: Vec<VerifyingKey>,
    pub rejected: Vec<String>,
}

struct Admitted {
    keys: Vec<VerifyingKey>,
    rejected: Vec<ConfigError>,
}

/// Admits entry by entry, collecting per-key errors. Keys sharing a `kid` are all refused.
fn admit_entries<'a>(
    jwks: &'a Value,
    algorithms: &[Algorithm],
    field: &str,
) -> Result<Admitted, ConfigError> {
    let entries = jwks
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or_else(|| config_error(field, "must be a JWKS object: {\"keys\": [...]}"))?;
    let kid_of = |entry: &'a Value| entry.get("kid").and_then(Value::as_str);
    // One pass to count each kid: a fetched set may be large.
    let mut sharing: HashMap<&str, usize> = HashMap::new();
    for kid in entries.iter().filter_map(kid_of) {
        *sharing.entry(kid).or_default() += 1;
    }
    let mut admitted = Admitted {
        keys: Vec::new(),
        rejected: Vec::new(),
    };
    for (index, entry) in entries.iter().enumerate() {
        let key_field = format!("{field}.keys[{index}]");
        if let Some(kid) = kid_of(entry) {
            if sharing.get(kid).is_some_and(|&count| count > 1) {
                admitted.rejected.push(config_error(
                    &key_field,
                    format!("duplicate kid `{kid}` is ambiguous"),
                ));
                continue;
            }
        }
        let result = entry
            .as_object()
            .ok_or_else(|| config_error(&key_field, "a key must be a JSON object"))
            .and_then(|jwk| {
                let kid = optional_string(jwk, "kid", &key_field)?;
                admit_key(jwk, kid, algorithms, &key_field)
            });
        match result {
            Ok(keys) => admitted.keys.extend(keys),
            Err(error) => admitted.rejected.push(error),
        }
    }
    // P-256 tables for the first keys only: a provider may publish many keys, and each
    // table costs about 300 KB and 10 ms in V8. Later keys verify the generic way.
    let p256_keys = admitted
        .keys
        .iter_mut()
        .filter_map(|key| match &mut key.material {
            KeyMaterial::P256(key) => Arc::get_mut(key),
            _ => None,
        });
    for key in p256_keys.take(MAX_PRECOMPUTED_KEYS) {
        key.precompute();
    }
    Ok(admitted)
}

fn no_usable_key(algorithms: &[Algorithm], field: &str) -> ConfigError {
    let names: Vec<&str> = algorithms.iter().map(|a| a.name()).collect();
    config_error(
        field,
        format!("no key usable with the accepted algorithms {names:?}"),
    )
}

fn optional_string(
    jwk: &serde_json::Map<String, Value>,
    name: &str,
    field: &str,
) -> Result<Option<String>, ConfigError> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(config_error(format!("{field}.{name}"), "must be a string")),
    }
}

fn required_bytes(
    jwk: &serde_json::Map<String, Value>,
    name: &str,
    field: &str,
) -> Result<Vec<u8>, ConfigError> {
    let text = optional_string(jwk, name, field)?
        .ok_or_else(|| config_error(format!("{field}.{name}"), "is required for this key type"))?;
    base64url_decode(text.as_bytes())
        .ok_or_else(|| config_error(format!("{field}.{name}"), "is not unpadded base64url"))
}

fn admit_key(
    jwk: &serde_json::Map<String, Value>,
    kid: Option<String>,
    accepted: &[Algorithm],
    field: &str,
) -> Result<Vec<VerifyingKey>, ConfigError> {
    let kty = optional_string(jwk, "kty", field)?
        .ok_or_else(|| config_error(format!("{field}.kty"), "is required"))?;
    if let Some(usage) = optional_string(jwk, "use", field)? {
        if usage != "sig" {
            return Err(config_error(
                format!("{field}.use"),
                "only signature keys (`sig`) are accepted",
            ));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err(config_error(
                format!("{field}.key_ops"),
                "must include `verify`",
            ));
        }
    }
    if kty != "oct"
        && ["d", "p", "q", "dp", "dq", "qi"]
            .iter()
            .any(|k| jwk.contains_key(*k))
    {
        return Err(config_error(
            field,
            "contains private key material; publish public keys only",
        ));
    }
    let declared = match optional_string(jwk, "alg", field)? {
        None => None,
        Some(name) => Some(Algorithm::from_name(&name).ok_or_else(|| {
            config_error(
                format!("{field}.alg"),
                format!("unsupported algorithm `{name}`"),
            )
        })?),
    };
    // The algorithms this key type can serve; a declared `alg` must be one of them.
    let family: Vec<Algorithm> = match kty.as_str() {
        "EC" => match optional_string(jwk, "crv", field)?.as_deref() {
            Some("P-256") => vec![Algorithm::ES256],
            Some("P-384") => vec![Algorithm::ES384],
            _ => {
                return Err(config_error(
                    format!("{field}.crv"),
                    "EC keys must be P-256 or P-384",
                ))
            }
        },
        "OKP" => match optional_string(jwk, "crv", field)?.as_deref() {
            Some("Ed25519") => vec![Algorithm::EdDSA],
            _ => {
                return Err(config_error(
                    format!("{field}.crv"),
                    "OKP keys must be Ed25519",
                ))
            }
        },
        "RSA" => [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ]
        .to_vec(),
        "oct" => vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        other => {
            return Err(config_error(
                format!("{field}.kty"),
                format!("unsupported key type `{other}`"),
            ))
        }
    };
    let candidates: Vec<Algorithm> = match declared {
        Some(alg) if !family.contains(&alg) => {
            return Err(config_error(
                format!("{field}.alg"),
                format!("`{}` does not match key type `{kty}`", alg.name()),
            ))
        }
        Some(alg) => vec![alg],
        None => family,
    };
    let usable: Vec<Algorithm> = candidates
        .into_iter()
        .filter(|a| accepted.contains(a))
        .collect();
    let mut keys = Vec::with_capacity(usable.len());
    for algorithm in usable {
        let material = build_material(jwk, algorithm, field)?;
        keys.push(VerifyingKey {
            kid: kid.clone(),
            algorithm,
            material,
        });
    }
    Ok(keys)
}

fn build_material(
    jwk: &serde_json::Map<String, Value>,
    algorithm: Algorithm,
    field: &str,
) -> Result<KeyMaterial, ConfigError> {
    let invalid = |what: &str| config_error(field, format!("invalid {what} key"));
    if algorithm.rsa_padding().is_some() {
        let n = required_bytes(jwk, "n", field)?;
        let e = required_bytes(jwk, "e", field)?;
        return RsaPublicKey::from_components(&n, &e)
            .map(KeyMaterial::Rsa)
            .map_err(|e| config_error(field, e.to_string()));
    }
    if let Some(hash) = algorithm.hmac_hash() {
        let k = required_bytes(jwk, "k", field)?;
        // At least the hash output size (RFC 7518 section 3.2).
        let minimum = hash.output_len();
        if k.len() < minimum {
            return Err(config_error(
                format!("{field}.k"),
                format!(
                    "{} secrets must be at least {minimum} bytes",
                    algorithm.name()
                ),
            ));
        }
        return Ok(KeyMaterial::Hmac(k));
    }
    match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => {
            let (x, y) = (
                required_bytes(jwk, "x", field)?,
                required_bytes(jwk, "y", field)?,
            );
            let size = if algorithm == Algorithm::ES256 {
                32
            } else {
                48
            };
            if x.len() != size || y.len() != size {
                return Err(config_error(
                    field,
                    "EC coordinates do not match the curve size",
                ));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            // Decoding checks that the point is on the curve.
            if algorithm == Algorithm::ES256 {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map(|key| KeyMaterial::P256(Arc::new(P256Key::new(key))))
                    .map_err(|_| invalid("EC"))
            } else {
                p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map(KeyMaterial::P384)
                    .map_err(|_| invalid("EC"))
            }
        }
        _ => {
            let x = required_bytes(jwk, "x", field)?;
            if x.len() != 32 {
                return Err(config_error(
                    format!("{field}.x"),
                    "Ed25519 keys are 32 bytes",
                ));
            }
            ed25519_compact::PublicKey::from_slice(&x)
                .map(KeyMaterial::Ed25519)
                .map_err(|_| invalid("Ed25519"))
        }
    }
}
