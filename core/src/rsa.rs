//! RSA signature verification (RFC 8017 RSASSA-PKCS1-v1_5 and RSASSA-PSS) for JWS RS* and PS*.
//!
//! Verification only touches public data, so no constant-time care is needed; what matters is
//! speed inside a wasm VM and strictness. The public operation `s^e mod n` uses Montgomery
//! multiplication over 32-bit limbs (wasm has a native 32x32->64 multiply, but no 64x64->128
//! one). PKCS#1 v1.5 is checked by building the one valid encoding and comparing bytes, never
//! by parsing the padding, which rules out the whole family of padding/ASN.1 tampering bugs.

use crate::hash::HashAlg;

pub const MIN_MODULUS_BITS: usize = 2048;
pub const MAX_MODULUS_BITS: usize = 8192;

/// Infineon's RSA library (ROCA, CVE-2017-15361) made primes `k * M + (65537^a mod M)`, `M` the
/// product of the first few primes, so that for every small prime `r` dividing `M`, `n mod r`
/// lies in the subgroup of `Z_r^*` that 65537 generates. Even its smallest `M` holds the primes
/// up to 167: a modulus in that subgroup for all of the odd ones came from the library. A
/// modulus from honest random primes does so with probability about 4e-9.
const ROCA_PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];
/// The base whose powers Infineon's primes were, modulo `M` (see `ROCA_PRIMES`).
const ROCA_GENERATOR: u32 = 65537;

/// A public key prepared for repeated verification: modulus limbs plus the Montgomery
/// constants, computed once at key admission.
#[derive(Clone)]
pub struct RsaPublicKey {
    /// Modulus, little-endian 32-bit limbs, no leading zero limb.
    n: Vec<u32>,
    /// Modulus length in bytes (`k` in RFC 8017).
    k: usize,
    modulus_bits: usize,
    /// `-n^-1 mod 2^32`.
    n0_inv: u32,
    /// `R^2 mod n` with `R = 2^(32 * limbs)`: converts into Montgomery form.
    r_squared: Vec<u32>,
    e: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    ModulusSize(usize),
    EvenModulus,
    Exponent,
    RocaFingerprint,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::ModulusSize(bits) => write!(
                f,
                "RSA modulus has {bits} bits; {MIN_MODULUS_BITS} to {MAX_MODULUS_BITS} are accepted"
            ),
            KeyError::EvenModulus => write!(f, "RSA modulus is even"),
            KeyError::Exponent => write!(
                f,
                "RSA public exponent must be odd, at least 3 and below 2^32"
            ),
            KeyError::RocaFingerprint => write!(
                f,
                "RSA modulus has the ROCA fingerprint (CVE-2017-15361): it was made by Infineon's \
                 flawed key generation and its private key can be computed from it; the key pair \
                 must be regenerated"
            ),
        }
    }
}

impl RsaPublicKey {
    /// From big-endian modulus and exponent bytes (a JWK's `n` and `e`).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let n = trim_leading_zeros(n);
        let modulus_bits = bit_length(n);
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&modulus_bits) {
            return Err(KeyError::ModulusSize(modulus_bits));
        }
        if n.last().is_none_or(|low| low & 1 == 0) {
            return Err(KeyError::EvenModulus);
        }
        if has_roca_fingerprint(n) {
            return Err(KeyError::RocaFingerprint);
        }
        let e_bytes = trim_leading_zeros(e);
        if e_bytes.is_empty() || e_bytes.len() > 4 {
            return Err(KeyError::Exponent);
        }
        let e = e_bytes
            .iter()
            .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        if e < 3 || e & 1 == 0 {
            return Err(KeyError::Exponent);
        }
        let limbs = limbs_from_be(n, n.len().div_ceil(4));
        let n0_inv = inverse_mod_2_32(limbs[0]).wrapping_neg();
        let r_squared = r_squared_mod(&limbs, modulus_bits);
        Ok(Self {
            k: n.len(),
            modulus_bits,
            n: limbs,
            n0_inv,
            r_squared,
            e,
        })
    }

    pub fn modulus_bits(&self) -> usize {
        self.modulus_bits
    }

    /// RSASSA-PKCS1-v1_5 verification (RFC 8017 section 8.2.2).
    pub fn verify_pkcs1v15(&self, hash: HashAlg, message: &[u8], signature: &[u8]) -> bool {
        let Some(encoded) = self.public_operation(signature) else {
            return false;
        };
        let digest_info = hash.digest_info_prefix();
        let digest = hash.digest(message);
        let t_len = digest_info.len() + digest.len();
        // At least 8 bytes of 0xFF padding (section 9.2, step 3).
        if self.k < t_len + 11 {
            return false;
        }
        let mut expected = Vec::with_capacity(self.k);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(self.k - t_len - 1, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(digest_info);
        expected.extend_from_slice(&digest);
        encoded == expected
    }

    /// RSASSA-PSS verification (RFC 8017 section 8.1.2) with MGF1 over the same hash and a
    /// salt as long as the hash output, as JWA requires (RFC 7518 section 3.5).
    pub fn verify_pss(&self, hash: HashAlg, message: &[u8], signature: &[u8]) -> bool {
        let Some(encoded) = self.public_operation(signature) else {
            return false;
        };
        let em_bits = self.modulus_bits - 1;
        let em_len = em_bits.div_ceil(8);
        // EM is the integer as em_len bytes; a k-byte representation may only have a zero
        // byte in front when em_len is one shorter.
        let (leading, em) = encoded.split_at(self.k - em_len);
        if leading.iter().any(|b| *b != 0) {
            return false;
        }
        let h_len = hash.output_len();
        let salt_len = h_len;
        if em_len < h_len + salt_len + 2 || em.last() != Some(&0xbc) {
            return false;
        }
        let (masked_db, rest) = em.split_at(em_len - h_len - 1);
        let h = &rest[..h_len];
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8 >> unused_bits;
        if masked_db.first().is_some_and(|b| b & !top_mask != 0) {
            return false;
        }
        let mut db = mgf1(hash, h, masked_db.len());
        for (d, m) in db.iter_mut().zip(masked_db) {
            *d ^= m;
        }
        if let Some(first) = db.first_mut() {
            *first &= top_mask;
        }
        let padding_len = em_len - h_len - salt_len - 2;
        if db[..padding_len].iter().any(|b| *b != 0) || db[padding_len] != 0x01 {
            return false;
        }
        let salt = &db[padding_len + 1..];
        let mut m_prime = Vec::with_capacity(8 + 2 * h_len);
        m_prime.extend_from_slice(&[0u8; 8]);
        m_prime.extend_from_slice(&hash.digest(message));
        m_prime.extend_from_slice(salt);
        hash.digest(&m_prime) == h
    }

    /// RSAVP1 then I2OSP: `s^e mod n` as `k` big-endian bytes. `None` when the signature is
    /// not exactly `k` bytes or not below the modulus (section 5.2.2).
    fn public_operation(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.k {
            return None;
        }
        let s = limbs_from_be(signature, self.n.len());
        if compare(&s, &self.n) != std::cmp::Ordering::Less {
            return None;
        }
        let limbs = self.n.len();
        let mut scratch = vec![0u32; limbs + 2];
        let mut base = vec![0u32; limbs];
        montgomery_multiply(
            &s,
            &self.r_squared,
            &self.n,
            self.n0_inv,
            &mut scratch,
            &mut base,
        );
        // Left-to-right square and multiply over the bits of e, starting at its top bit.
        let mut acc = base.clone();
        let mut next = vec![0u32; limbs];
        let top_bit = 31 - self.e.leading_zeros();
        for bit in (0..top_bit).rev() {
            montgomery_multiply(&acc, &acc, &self.n, self.n0_inv, &mut scratch, &mut next);
            std::mem::swap(&mut acc, &mut next);
            if self.e >> bit & 1 == 1 {
                montgomery_multiply(&acc, &base, &self.n, self.n0_inv, &mut scratch, &mut next);
                std::mem::swap(&mut acc, &mut next);
            }
        }
        let mut one = vec![0u32; limbs];
        one[0] = 1;
        montgomery_multiply(&acc, &one, &self.n, self.n0_inv, &mut scratch, &mut next);
        Some(limbs_to_be(&next, self.k))
    }
}

/// MGF1 (RFC 8017 appendix B.2.1).
fn mgf1(hash: HashAlg, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.output_len());
    let mut counter: u32 = 0;
    let mut input = Vec::with_capacity(seed.len() + 4);
    while out.len() < len {
        input.clear();
        input.extend_from_slice(seed);
        input.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&hash.digest(&input));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// Whether the big-endian modulus `n` has the ROCA fingerprint (see `ROCA_PRIMES`). This does
/// not factor anything: it only looks at `n mod r` for each listed prime.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    ROCA_PRIMES.iter().all(|&prime| {
        let residue = remainder_be(n, prime);
        is_power_of(ROCA_GENERATOR % prime, residue, prime)
    })
}

/// `value mod divisor` for big-endian bytes and a divisor below 2^24 (so `acc * 256` fits).
fn remainder_be(value: &[u8], divisor: u32) -> u32 {
    value
        .iter()
        .fold(0, |acc, byte| (acc * 256 + u32::from(*byte)) % divisor)
}

/// Whether `residue` is `base^i mod prime` for some `i`. The powers of `base` repeat with a
/// period dividing `prime - 1`, so that many of them are all there are. Zero is never a power
/// of a non-zero base: a modulus divisible by `prime` has no fingerprint.
fn is_power_of(base: u32, residue: u32, prime: u32) -> bool {
    let mut power = 1;
    for _ in 1..prime {
        if power == residue {
            return true;
        }
        power = power * base % prime;
    }
    false
}

fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(top) => big_endian.len() * 8 - top.leading_zeros() as usize,
    }
}

/// Big-endian bytes to `limbs` little-endian 32-bit limbs (the bytes must fit).
fn limbs_from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, byte) in bytes.iter().rev().enumerate() {
        if let Some(limb) = out.get_mut(i / 4) {
            *limb |= u32::from(*byte) << (8 * (i % 4));
        }
    }
    out
}

fn limbs_to_be(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, byte) in out.iter_mut().rev().enumerate() {
        if let Some(limb) = limbs.get(i / 4) {
            *byte = (limb >> (8 * (i % 4))) as u8;
        }
    }
    out
}

fn compare(a: &[u32], b: &[u32]) -> std::cmp::Ordering {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        match x.cmp(y) {
            std::cmp::Ordering::Equal => {}
            other => return other,
        }
    }
    std::cmp::Ordering::Equal
}

/// `a -= b`, returning the borrow.
fn subtract_in_place(a: &mut [u32], b: &[u32]) -> u32 {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let difference = u64::from(*x)
            .wrapping_sub(u64::from(*y))
            .wrapping_sub(borrow);
        *x = difference as u32;
        borrow = (difference >> 63) & 1;
    }
    borrow as u32
}

/// Inverse of an odd number modulo 2^32 by Newton iteration: 1 is its inverse modulo 2, and
/// each step doubles the number of correct low bits (2, 4, 8, 16, 32).
fn inverse_mod_2_32(odd: u32) -> u32 {
    let mut inverse: u32 = 1;
    for _ in 0..5 {
        inverse = inverse.wrapping_mul(2u32.wrapping_sub(odd.wrapping_mul(inverse)));
    }
    inverse
}

/// `2^(2 * 32 * limbs) mod n` by doubling: slow, but only run once per key.
fn r_squared_mod(n: &[u32], modulus_bits: usize) -> Vec<u32> {
    let limbs = n.len();
    // Start from 2^(modulus_bits - 1), which is below n, and double up to 2^(64 * limbs).
    let mut x = vec![0u32; limbs];
    let start = modulus_bits - 1;
    x[start / 32] = 1 << (start % 32);
    for _ in start..(64 * limbs) {
        let mut carry = 0u32;
        for limb in x.iter_mut() {
            let next_carry = *limb >> 31;
            *limb = (*limb << 1) | carry;
            carry = next_carry;
        }
        if carry == 1 || compare(&x, n) != std::cmp::Ordering::Less {
            subtract_in_place(&mut x, n);
        }
    }
    x
}

/// `out = a * b * R^-1 mod n` (coarsely integrated operand scanning). `a` and `b` must be
/// below `n`; `scratch` has `limbs + 2` entries.
fn montgomery_multiply(
    a: &[u32],
    b: &[u32],
    n: &[u32],
    n0_inv: u32,
    scratch: &mut [u32],
    out: &mut [u32],
) {
    let s = n.len();
    let t = scratch;
    t.fill(0);
    for &b_i in b.iter().take(s) {
        let b_i = u64::from(b_i);
        let mut carry = 0u64;
        for j in 0..s {
            let sum = u64::from(t[j]) + u64::from(a[j]) * b_i + carry;
            t[j] = sum as u32;
            carry = sum >> 32;
        }
        let sum = u64::from(t[s]) + carry;
        t[s] = sum as u32;
        t[s + 1] = (sum >> 32) as u32;

        let m = u64::from(t[0].wrapping_mul(n0_inv));
        let sum = u64::from(t[0]) + m * u64::from(n[0]);
        let mut carry = sum >> 32;
        for j in 1..s {
            let sum = u64::from(t[j]) + m * u64::from(n[j]) + carry;
            t[j - 1] = sum as u32;
            carry = sum >> 32;
        }
        let sum = u64::from(t[s]) + carry;
        t[s - 1] = sum as u32;
        t[s] = t[s + 1].wrapping_add((sum >> 32) as u32);
    }
    out.copy_from_slice(&t[..s]);
    if t[s] != 0 || compare(out, n) != std::cmp::Ordering::Less {
        subtract_in_place(out, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_u128(value: u128, limbs: usize) -> Vec<u32> {
        (0..limbs).map(|i| (value >> (32 * i)) as u32).collect()
    }

    #[test]
    fn montgomery_multiplication_matches_plain_arithmetic() {
        // A small odd modulus over three limbs, checked against u128 arithmetic.
        let n_value: u128 = 0xC3A5_C85C_97CB_3127_B1F4_A2D7;
        let n = from_u128(n_value, 3);
        let n0_inv = inverse_mod_2_32(n[0]).wrapping_neg();
        assert_eq!(
            n[0].wrapping_mul(n0_inv),
            u32::MAX,
            "n * n0_inv = -1 mod 2^32"
        );
        let r_squared = r_squared_mod(&n, 96);
        let mut scratch = vec![0u32; 5];
        let mut out = vec![0u32; 3];
        let (a, b): (u128, u128) = (0x1234_5678_9ABC_DEF0_1111, 0xBEEF_0000_FFFF_1234_5555);
        // to Montgomery form, multiply, back: must equal a*b mod n.
        let mut a_m = vec![0u32; 3];
        let mut b_m = vec![0u32; 3];
        montgomery_multiply(
            &from_u128(a, 3),
            &r_squared,
            &n,
            n0_inv,
            &mut scratch,
            &mut a_m,
        );
        montgomery_multiply(
            &from_u128(b, 3),
            &r_squared,
            &n,
            n0_inv,
            &mut scratch,
            &mut b_m,
        );
        let mut product = vec![0u32; 3];
        montgomery_multiply(&a_m, &b_m, &n, n0_inv, &mut scratch, &mut product);
        montgomery_multiply(
            &product,
            &from_u128(1, 3),
            &n,
            n0_inv,
            &mut scratch,
            &mut out,
        );
        let expected = mul_mod(a, b, n_value);
        assert_eq!(out, from_u128(expected, 3));
    }

    fn mul_mod(a: u128, b: u128, n: u128) -> u128 {
        // Double-and-add keeps every intermediate below 2n < 2^128.
        let (mut result, mut addend, mut b) = (0u128, a % n, b);
        while b > 0 {
            if b & 1 == 1 {
                result = (result + addend) % n;
            }
            addend = (addend * 2) % n;
            b >>= 1;
        }
        result
    }

    #[test]
    fn keys_outside_the_accepted_shape_are_refused() {
        let mut n = vec![0xffu8; 256];
        assert!(RsaPublicKey::from_components(&n, &[1, 0, 1]).is_ok());
        assert_eq!(
            RsaPublicKey::from_components(&n[..128], &[1, 0, 1]).err(),
            Some(KeyError::ModulusSize(1024))
        );
        assert_eq!(
            RsaPublicKey::from_components(&n, &[1]).err(),
            Some(KeyError::Exponent)
        );
        assert_eq!(
            RsaPublicKey::from_components(&n, &[1, 0, 0]).err(),
            Some(KeyError::Exponent)
        );
        assert_eq!(
            RsaPublicKey::from_components(&n, &[1, 0, 0, 0, 1]).err(),
            Some(KeyError::Exponent)
        );
        n[255] = 0xfe;
        assert_eq!(
            RsaPublicKey::from_components(&n, &[1, 0, 1]).err(),
            Some(KeyError::EvenModulus)
        );
    }

    fn pow_mod(base: u32, mut exponent: u32, modulus: u32) -> u32 {
        let (mut result, mut base) = (1 % modulus, base % modulus);
        while exponent > 0 {
            if exponent & 1 == 1 {
                result = result * base % modulus;
            }
            base = base * base % modulus;
            exponent >>= 1;
        }
        result
    }

    /// `a += b` for equal-length big-endian byte strings; the sum must fit.
    fn add_be(a: &mut [u8], b: &[u8]) {
        let mut carry = 0u32;
        for (x, y) in a.iter_mut().zip(b).rev() {
            let sum = u32::from(*x) + u32::from(*y) + carry;
            *x = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "sum overflowed");
    }

    /// `a *= factor` for a big-endian byte string; the product must fit.
    fn multiply_be(a: &mut [u8], factor: u32) {
        let mut carry = 0u32;
        for x in a.iter_mut().rev() {
            let product = u32::from(*x) * factor + carry;
            *x = product as u8;
            carry = product >> 8;
        }
        assert_eq!(carry, 0, "product overflowed");
    }

    /// A 2048-bit odd modulus with `n mod r == target(r)` for every prime in `ROCA_PRIMES`,
    /// set one prime at a time (Chinese remaindering): `step` is twice the primes already set,
    /// so adding it keeps `n` odd and the residues already set. The admission check does not
    /// factor, so `n` need not be a product of two primes.
    fn modulus_with_residues(target: impl Fn(u32) -> u32) -> Vec<u8> {
        let mut n: Vec<u8> = (0..256u32).map(|i| (i * 151 + 77) as u8).collect();
        n[0] |= 0x80;
        n[255] |= 1;
        let mut step = vec![0u8; 256];
        step[255] = 2;
        for prime in ROCA_PRIMES {
            let wanted = target(prime);
            let mut additions = 0;
            while remainder_be(&n, prime) != wanted {
                add_be(&mut n, &step);
                additions += 1;
                assert!(
                    additions < prime,
                    "residue {wanted} mod {prime} unreachable"
                );
            }
            multiply_be(&mut step, prime);
        }
        assert!(n[0] & 0x80 != 0 && n[255] & 1 == 1, "2048 bits and odd");
        n
    }

    /// As Infineon's keys are: `n = p * q` with `p` and `q` both `65537^(a or b) mod M`
    /// modulo every prime of `M`, so `n mod r = 65537^(a + b) mod r`.
    fn roca_fingerprinted_modulus() -> Vec<u8> {
        let exponent_sum = 0x2f1d_9a47;
        modulus_with_residues(|prime| pow_mod(ROCA_GENERATOR, exponent_sum, prime))
    }

    #[test]
    fn remainders_match_plain_arithmetic() {
        let value: u128 = 0xC3A5_C85C_97CB_3127_B1F4_A2D7_0F0E_0D0B;
        for prime in ROCA_PRIMES {
            assert_eq!(
                u128::from(remainder_be(&value.to_be_bytes(), prime)),
                value % u128::from(prime)
            );
        }
    }

    #[test]
    fn a_roca_fingerprinted_modulus_is_refused() {
        let n = roca_fingerprinted_modulus();
        let refused = RsaPublicKey::from_components(&n, &[1, 0, 1]).err();
        assert_eq!(refused, Some(KeyError::RocaFingerprint));
        assert_eq!(
            refused.map(|error| error.to_string()).unwrap_or_default(),
            "RSA modulus has the ROCA fingerprint (CVE-2017-15361): it was made by Infineon's \
             flawed key generation and its private key can be computed from it; the key pair \
             must be regenerated"
        );
        // The fingerprint is the modulus's, whatever the exponent.
        assert_eq!(
            RsaPublicKey::from_components(&n, &[3]).err(),
            Some(KeyError::RocaFingerprint)
        );
    }

    #[test]
    fn a_roca_key_in_a_jwks_is_refused_naming_the_key() {
        use crate::encoding::base64url_encode;
        use crate::jwks::{admit_key_set, admit_remote_key_set, Algorithm};
        let roca = serde_json::json!({"kty": "RSA", "kid": "roca", "e": "AQAB",
            "n": base64url_encode(&roca_fingerprinted_modulus())});
        let other = serde_json::json!({"kty": "RSA", "kid": "other", "e": "AQAB",
            "n": base64url_encode(&[0xffu8; 256])});
        let jwks = serde_json::json!({"keys": [other, roca]});
        let error = admit_key_set(&jwks, &[Algorithm::RS256], "issuers[0].local_jwks").err();
        assert_eq!(
            error.map(|e| (e.field, e.message)),
            Some((
                "issuers[0].local_jwks.keys[1]".to_string(),
                KeyError::RocaFingerprint.to_string()
            ))
        );
        // A fetched set drops the key and keeps the rest.
        let remote = admit_remote_key_set(&jwks, &[Algorithm::RS256]);
        let (kids, rejected) = remote
            .map(|set| {
                let kids: Vec<_> = set.keys.iter().map(|key| key.kid.clone()).collect();
                (kids, set.rejected)
            })
            .unwrap_or_default();
        assert_eq!(kids, [Some("other".to_string())]);
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].contains("CVE-2017-15361"), "{rejected:?}");
    }

    #[test]
    fn a_modulus_outside_the_subgroup_for_one_prime_is_admitted() {
        // 65537 = -1 mod 11, so its powers mod 11 are only 1 and 10: a residue of 2 there is
        // no Infineon key, however well the other 37 primes match.
        let exponent_sum = 0x2f1d_9a47;
        let n = modulus_with_residues(|prime| match prime {
            11 => 2,
            _ => pow_mod(ROCA_GENERATOR, exponent_sum, prime),
        });
        assert!(RsaPublicKey::from_components(&n, &[1, 0, 1]).is_ok());
    }
}
