//! Keys and tokens made by the test itself: ES256, RS256 and EdDSA key pairs (jwt-simple),
//! their public JWKS, and compact JWS tokens assembled here byte by byte, so a test can put any
//! header and any claims in them, and build hostile ones (`alg: none`, HS256 keyed with a public
//! key, foreign signatures, tampered payloads). Signatures come from the key libraries; the token
//! layout is ours, and the unit tests check that jwt-simple verifies what is minted here.

use jwt_simple::prelude::*;
use serde_json::{json, Value};

const BASE64URL_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (RFC 7515, section 2).
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let padded = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let bits = u32::from_be_bytes([0, padded[0], padded[1], padded[2]]);
        // 3 bytes give 4 sextets; 2 bytes give 3; 1 byte gives 2.
        for index in 0..=group.len() {
            let sextet = (bits >> (18 - 6 * index)) & 0x3f;
            out.push(char::from(BASE64URL_ALPHABET[sextet as usize]));
        }
    }
    out
}

/// Decodes unpadded base64url; `None` on any other character.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut accumulator, mut bit_count) = (0u32, 0u32);
    for byte in text.bytes() {
        let sextet = BASE64URL_ALPHABET.iter().position(|&c| c == byte)?;
        accumulator = (accumulator << 6) | sextet as u32;
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            out.push((accumulator >> bit_count) as u8);
            accumulator &= (1 << bit_count) - 1;
        }
    }
    Some(out)
}

/// Seconds since the Unix epoch, the unit of `exp`, `iat` and `nbf`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// `unix_seconds` as an RFC 3339 UTC timestamp (`2026-11-25T10:15:00Z`), for data that
/// carries windows.
pub fn rfc3339_utc(unix_seconds: u64) -> String {
    let (days, rest) = (unix_seconds / 86_400, unix_seconds % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian, 400-year eras).
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

enum KeyPair {
    Es256(ES256KeyPair),
    // Boxed: an RSA key pair is twice the size of the others.
    Rs256(Box<RS256KeyPair>),
    EdDsa(Ed25519KeyPair),
}

/// A signing key with its `kid`.
pub struct AgentKey {
    kid: String,
    pair: KeyPair,
}

impl AgentKey {
    /// A fresh P-256 key for ES256.
    pub fn es256(kid: &str) -> AgentKey {
        Self::new(kid, KeyPair::Es256(ES256KeyPair::generate()))
    }

    /// A fresh 2048-bit RSA key for RS256.
    pub fn rs256(kid: &str) -> AgentKey {
        let pair = RS256KeyPair::generate(2048)
            .unwrap_or_else(|error| panic!("RSA key generation failed: {error}"));
        Self::new(kid, KeyPair::Rs256(Box::new(pair)))
    }

    /// A fresh Ed25519 key for EdDSA.
    pub fn ed25519(kid: &str) -> AgentKey {
        Self::new(kid, KeyPair::EdDsa(Ed25519KeyPair::generate()))
    }

    fn new(kid: &str, pair: KeyPair) -> AgentKey {
        AgentKey {
            kid: kid.to_owned(),
            pair,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            KeyPair::Es256(_) => "ES256",
            KeyPair::Rs256(_) => "RS256",
            KeyPair::EdDsa(_) => "EdDSA",
        }
    }

    /// The public half as a JWK (`use: sig`, with `kid` and `alg`).
    pub fn public_jwk(&self) -> Value {
        let (kid, alg) = (self.kid.as_str(), self.alg());
        match &self.pair {
            KeyPair::Es256(pair) => {
                // SEC1 uncompressed: 0x04 || x (32 bytes) || y (32 bytes).
                let point = pair.public_key().public_key().to_bytes_uncompressed();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": alg, "use": "sig",
                       "x": base64url(&point[1..33]), "y": base64url(&point[33..65])})
            }
            KeyPair::Rs256(pair) => {
                let components = pair.public_key().to_components();
                json!({"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
                       "n": base64url(&components.n), "e": base64url(&components.e)})
            }
            KeyPair::EdDsa(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": alg, "use": "sig",
                       "x": base64url(&pair.public_key().to_bytes())})
            }
        }
    }

    /// The public key as SubjectPublicKeyInfo PEM, the usual text an attacker would try as an
    /// HMAC secret.
    pub fn public_key_pem(&self) -> String {
        let pem = match &self.pair {
            KeyPair::Es256(pair) => pair.public_key().to_pem(),
            KeyPair::Rs256(pair) => pair.public_key().to_pem(),
            KeyPair::EdDsa(pair) => Ok(pair.public_key().to_pem()),
        };
        pem.unwrap_or_else(|error| panic!("public key PEM: {error}"))
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn public_key_der(&self) -> Vec<u8> {
        let der = match &self.pair {
            KeyPair::Es256(pair) => pair.public_key().to_der(),
            KeyPair::Rs256(pair) => pair.public_key().to_der(),
            KeyPair::EdDsa(pair) => Ok(pair.public_key().to_der()),
        };
        der.unwrap_or_else(|error| panic!("public key DER: {error}"))
    }

    /// The raw public key bytes (EC: uncompressed point; RSA: modulus; Ed25519: 32 bytes).
    pub fn public_key_raw(&self) -> Vec<u8> {
        match &self.pair {
            KeyPair::Es256(pair) => pair.public_key().public_key().to_bytes_uncompressed(),
            KeyPair::Rs256(pair) => pair.public_key().to_components().n,
            KeyPair::EdDsa(pair) => pair.public_key().to_bytes(),
        }
    }

    /// The JWS signature of `signing_input` (ES256: r || s, 64 bytes; RS256: PKCS#1 v1.5 with
    /// SHA-256; EdDSA: Ed25519).
    pub fn sign_raw(&self, signing_input: &[u8]) -> Vec<u8> {
        match &self.pair {
            KeyPair::Es256(pair) => {
                use p256::ecdsa::signature::Signer as _;
                let signing_key: &p256::ecdsa::SigningKey = pair.key_pair().as_ref();
                let signature: p256::ecdsa::Signature = signing_key.sign(signing_input);
                signature.to_bytes().to_vec()
            }
            KeyPair::Rs256(pair) => rsa_pkcs1_sha256(pair, signing_input)
                .unwrap_or_else(|error| panic!("RSA signing failed: {error}")),
            KeyPair::EdDsa(pair) => pair
                .key_pair()
                .as_ref()
                .sk
                .sign(signing_input, None)
                .to_vec(),
        }
    }

    /// The header this key normally signs with: `{"alg", "typ": "JWT", "kid"}`.
    pub fn header(&self) -> Value {
        json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid})
    }

    /// A token with the usual header and exactly these claims.
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_with_header(&self.header(), claims)
    }

    /// A token with exactly this header and these claims, signed by this key (whatever `alg`
    /// the header claims).
    pub fn mint_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input =
            signing_input(header.to_string().as_bytes(), claims.to_string().as_bytes());
        let signature = self.sign_raw(signing_input.as_bytes());
        format!("{signing_input}.{}", base64url(&signature))
    }
}

fn rsa_pkcs1_sha256(pair: &RS256KeyPair, input: &[u8]) -> Result<Vec<u8>, String> {
    use superboring::{hash::MessageDigest, pkey::PKey, rsa::Padding, sign::Signer};
    let private = PKey::from_rsa(pair.key_pair().as_ref().clone()).map_err(|e| e.to_string())?;
    let mut signer = Signer::new(MessageDigest::sha256(), &private).map_err(|e| e.to_string())?;
    signer
        .set_rsa_padding(Padding::PKCS1)
        .map_err(|e| e.to_string())?;
    signer.update(input).map_err(|e| e.to_string())?;
    signer.sign_to_vec().map_err(|e| e.to_string())
}

/// `{"keys": [...]}` with the public JWK of each key.
pub fn jwks(keys: &[&AgentKey]) -> Value {
    json!({"keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>()})
}

/// `base64url(header) "." base64url(claims)`: the bytes a JWS signature covers.
pub fn signing_input(header_json: &[u8], claims_json: &[u8]) -> String {
    format!("{}.{}", base64url(header_json), base64url(claims_json))
}

/// A compact token from raw parts: for JSON no serializer would write (duplicate keys, bad
/// UTF-8) and for signatures of any length.
pub fn compact(header_json: &[u8], claims_json: &[u8], signature: &[u8]) -> String {
    format!(
        "{}.{}",
        signing_input(header_json, claims_json),
        base64url(signature)
    )
}

/// An unsecured token (`alg: none`, RFC 7519 section 6): header and claims, empty signature.
pub fn unsigned_token(header: &Value, claims: &Value) -> String {
    compact(
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
        b"",
    )
}

/// A token MACed with HMAC-SHA256 under `secret` (for key confusion: a public key used as the
/// HMAC secret).
pub fn hs256_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = signing_input(header.to_string().as_bytes(), claims.to_string().as_bytes());
    let mac = hmac_sha256::HMAC::mac(input.as_bytes(), secret);
    format!("{input}.{}", base64url(&mac))
}

/// `token` with its claims replaced and its original signature kept.
pub fn with_claims_replaced(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().unwrap_or_default();
    let signature = token.rsplit('.').next().unwrap_or_default();
    format!(
        "{header}.{}.{signature}",
        base64url(claims.to_string().as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn claims() -> Value {
        let now = now();
        json!({"iss": "https://idp.test", "aud": "api", "sub": "bot", "owner": "o@example.com",
               "iat": now, "exp": now + 300, "jti": "j-1"})
    }

    fn verification() -> VerificationOptions {
        VerificationOptions {
            allowed_issuers: Some(HashSet::from(["https://idp.test".to_owned()])),
            allowed_audiences: Some(HashSet::from(["api".to_owned()])),
            ..Default::default()
        }
    }

    fn decoded_json(part: &str) -> Value {
        serde_json::from_slice(&base64url_decode(part).unwrap()).unwrap()
    }

    #[test]
    fn base64url_matches_rfc_4648_vectors_without_padding() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (bytes, text) in vectors {
            assert_eq!(base64url(bytes), text);
            assert_eq!(base64url_decode(text).unwrap(), bytes);
        }
        // The URL-safe alphabet, never '+' or '/'.
        assert_eq!(base64url(&[0xfb, 0xff, 0xbf]), "-_-_");
        assert_eq!(base64url_decode("-_-_").unwrap(), [0xfb, 0xff, 0xbf]);
        assert!(base64url_decode("a+b").is_none());
    }

    #[test]
    fn es256_tokens_verify_with_jwt_simple_through_the_published_jwk() {
        let key = AgentKey::es256("es-1");
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(
            base64url_decode(jwk["x"].as_str().unwrap()).unwrap().len(),
            32
        );
        assert_eq!(
            base64url_decode(jwk["y"].as_str().unwrap()).unwrap().len(),
            32
        );
        let public = ES256PublicKey::from_jwk(&jwk.to_string()).unwrap();
        let token = key.mint(&claims());
        let verified = public
            .verify_token::<Value>(&token, Some(verification()))
            .unwrap();
        assert_eq!(verified.subject.as_deref(), Some("bot"));
        assert_eq!(verified.custom["owner"], "o@example.com");
        let header = decoded_json(token.split('.').next().unwrap());
        assert_eq!(header, json!({"alg": "ES256", "typ": "JWT", "kid": "es-1"}));
    }

    #[test]
    fn rs256_tokens_verify_with_jwt_simple_through_the_published_jwk() {
        let key = AgentKey::rs256("rs-1");
        let jwk = key.public_jwk();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["alg"].as_str()),
            (Some("RSA"), Some("RS256"))
        );
        assert_eq!(
            base64url_decode(jwk["n"].as_str().unwrap()).unwrap().len(),
            256
        );
        let public = RS256PublicKey::from_jwk(&jwk.to_string()).unwrap();
        public
            .verify_token::<Value>(&key.mint(&claims()), Some(verification()))
            .unwrap();
    }

    #[test]
    fn eddsa_tokens_verify_with_jwt_simple_through_the_published_jwk() {
        let key = AgentKey::ed25519("ed-1");
        let jwk = key.public_jwk();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        let public = Ed25519PublicKey::from_jwk(&jwk.to_string()).unwrap();
        public
            .verify_token::<Value>(&key.mint(&claims()), Some(verification()))
            .unwrap();
    }

    #[test]
    fn jwks_lists_every_public_key_and_no_private_part() {
        let (a, b) = (AgentKey::es256("a"), AgentKey::ed25519("b"));
        let set = jwks(&[&a, &b]);
        let kids: Vec<&str> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["a", "b"]);
        assert!(!set.to_string().contains("\"d\""));
    }

    #[test]
    fn a_foreign_signature_and_a_tampered_payload_do_not_verify() {
        let key = AgentKey::es256("k");
        let stranger = AgentKey::es256("k");
        let public = ES256PublicKey::from_jwk(&key.public_jwk().to_string()).unwrap();
        let foreign = stranger.mint(&claims());
        assert!(public.verify_token::<Value>(&foreign, None).is_err());
        let mut elevated = claims();
        elevated["sub"] = json!("admin");
        let tampered = with_claims_replaced(&key.mint(&claims()), &elevated);
        assert!(public.verify_token::<Value>(&tampered, None).is_err());
        assert_eq!(
            decoded_json(tampered.split('.').nth(1).unwrap())["sub"],
            "admin"
        );
    }

    #[test]
    fn key_confusion_tokens_are_valid_hmacs_under_the_public_key() {
        let key = AgentKey::es256("k");
        let pem = key.public_key_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": "k"});
        let token = hs256_token(&header, &claims(), pem.as_bytes());
        // A verifier that took HS256 from the header and the PEM as secret would accept it.
        HS256Key::from_bytes(pem.as_bytes())
            .verify_token::<Value>(&token, Some(verification()))
            .unwrap();
        assert!(!key.public_key_der().is_empty());
        assert_eq!(key.public_key_raw().len(), 65);
    }

    #[test]
    fn unsigned_tokens_have_an_empty_signature() {
        let token = unsigned_token(&json!({"alg": "none"}), &claims());
        assert!(token.ends_with('.'));
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(
            decoded_json(token.split('.').next().unwrap()),
            json!({"alg": "none"})
        );
    }

    #[test]
    fn custom_headers_are_signed_as_given() {
        let key = AgentKey::ed25519("e");
        let header = json!({"alg": "EdDSA", "kid": "e", "typ": "at+jwt", "x-note": 1});
        let token = key.mint_with_header(&header, &claims());
        assert_eq!(decoded_json(token.split('.').next().unwrap()), header);
        // The signature covers exactly the two encoded parts, whatever the header says.
        Ed25519PublicKey::from_jwk(&key.public_jwk().to_string())
            .unwrap()
            .verify_token::<Value>(&token, Some(verification()))
            .unwrap();
    }

    #[test]
    fn rfc3339_utc_formats_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_647_599), "2026-11-25T22:59:59Z");
    }
}
