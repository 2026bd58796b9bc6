//! ES256 (ECDSA over P-256 with SHA-256) verification with precomputed tables.
//!
//! Verifying computes `u1·G + u2·Q`. The generic path in the `ecdsa` crate runs both
//! multiplications as one variable-base combination (about 256 doublings), and a point
//! operation costs about 2.3 us in V8, so that is where a first-seen ES256 token spent its
//! time. Keys are few and known when they are admitted, so each key `Q` gets a table of its
//! multiples, and the generator `G` one per VM: a multiplication is then one addition per
//! signed digit of the scalar (33 with a key's 8-bit windows, 26 with the generator's 10-bit
//! ones) and no doubling. The field and group
//! arithmetic is `p256`'s own; only the ECDSA equation and the tables are written here, and
//! `core/tests/signatures.rs` holds them to the Wycheproof vectors.
//!
//! Verification handles only public values, so variable time is fine.

use p256::ecdsa::Signature;
use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::point::{AffineCoordinates, BatchNormalize};
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use std::sync::OnceLock;

/// Bits per signed digit of a key's table: 33 windows of 128 multiples, about 300 KB per key.
/// 6 bits would make 100 KB tables and 10 more additions.
const KEY_WINDOW_BITS: usize = 8;
/// Bits per signed digit of the generator's table, one per VM whatever the keys: 26 windows
/// of 512 multiples, about 1 MB, built once per VM; against 8-bit windows, 650 KB and some
/// 16 ms more in V8, for 7 additions fewer on every first-seen ES256 token (145 to 134 us).
const GENERATOR_WINDOW_BITS: usize = 10;
/// Bits of a scalar. The windows cover one more, for the carry out of the top signed digit.
const SCALAR_BITS: usize = 256;

/// Multiples of one point for signed-digit multiplication with `W`-bit windows:
/// `k = Σ d_i·2^(W·i)` with every digit in `-2^(W-1)..=2^(W-1)`, and
/// `multiples[i·2^(W-1) + |d| - 1] = |d|·2^(W·i)·P`.
struct FixedBase<const W: usize> {
    multiples: Vec<AffinePoint>,
}

impl<const W: usize> FixedBase<W> {
    /// Multiples per window: the magnitudes of the non-zero digits.
    const PER_WINDOW: usize = 1 << (W - 1);

    fn new(point: ProjectivePoint) -> Self {
        let windows = (SCALAR_BITS + 1).div_ceil(W);
        let mut projective = Vec::with_capacity(windows * Self::PER_WINDOW);
        let mut window_base = point;
        for _ in 0..windows {
            let mut multiple = window_base;
            for _ in 0..Self::PER_WINDOW {
                projective.push(multiple);
                multiple += window_base;
            }
            for _ in 0..W {
                window_base = window_base.double();
            }
        }
        FixedBase {
            multiples: ProjectivePoint::batch_normalize(projective.as_slice()),
        }
    }

    /// `k·P`: one addition per non-zero signed digit. None of the table's entries is the
    /// identity (each factor is below the group order and `P` is not the identity).
    fn multiply(&self, k: &Scalar) -> ProjectivePoint {
        let big_endian = k.to_bytes();
        // Bit `index` of k, 0 the least significant; the bits above the scalar are 0.
        let bit = |index: usize| -> usize {
            let byte = (index < SCALAR_BITS)
                .then(|| big_endian.get(31 - index / 8))
                .flatten();
            byte.map_or(0, |byte| usize::from((byte >> (index % 8)) & 1))
        };
        let mut sum = ProjectivePoint::IDENTITY;
        let mut carry = 0;
        for (window, multiples) in self.multiples.chunks(Self::PER_WINDOW).enumerate() {
            let first_bit = window * W;
            let value = (0..W).fold(0, |value, b| value | (bit(first_bit + b) << b)) + carry;
            let (magnitude, negative) = if value > Self::PER_WINDOW {
                carry = 1;
                ((1 << W) - value, true)
            } else {
                carry = 0;
                (value, false)
            };
            if let Some(multiple) = magnitude.checked_sub(1).and_then(|i| multiples.get(i)) {
                sum += if negative { -*multiple } else { *multiple };
            }
        }
        sum
    }
}

/// The generator's table, built once per VM by the first key that needs it.
fn generator() -> &'static FixedBase<GENERATOR_WINDOW_BITS> {
    static TABLE: OnceLock<FixedBase<GENERATOR_WINDOW_BITS>> = OnceLock::new();
    TABLE.get_or_init(|| FixedBase::new(ProjectivePoint::GENERATOR))
}

/// A P-256 public key, with its multiples once [`P256Key::precompute`] has run.
pub struct P256Key {
    key: p256::ecdsa::VerifyingKey,
    table: Option<FixedBase<KEY_WINDOW_BITS>>,
}

impl P256Key {
    /// A key already checked to be a point on the curve; it verifies through the `ecdsa`
    /// crate until it has its table.
    pub fn new(key: p256::ecdsa::VerifyingKey) -> Self {
        P256Key { key, table: None }
    }

    /// Builds the key's table (about 300 KB, some 10 ms in V8) and, once per VM, the
    /// generator's: work for configuration time, not for a request.
    pub fn precompute(&mut self) {
        generator();
        let point = ProjectivePoint::from(*self.key.as_affine());
        self.table = Some(FixedBase::new(point));
    }

    pub fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// Checks a JWS ES256 signature (`r || s`, 64 bytes) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        // Both halves must be in 1..n: `Signature` refuses anything else.
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        let Some(table) = &self.table else {
            use p256::ecdsa::signature::Verifier;
            return self.key.verify(message, &signature).is_ok();
        };
        let (r, s) = signature.split_scalars();
        let digest = FieldBytes::from(hmac_sha256::Hash::hash(message));
        let z = <Scalar as Reduce<FieldBytes>>::reduce(&digest);
        let s_inverse = *Invert::invert_vartime(&s);
        let point = generator().multiply(&(z * s_inverse)) + table.multiply(&(*r * s_inverse));
        if bool::from(point.is_identity()) {
            return false;
        }
        let x = point.to_affine().x();
        <Scalar as Reduce<FieldBytes>>::reduce(&x) == *r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).expect("a valid scalar")
    }

    #[test]
    fn the_tables_multiply_like_the_group() {
        let q = ProjectivePoint::from(*key(7).verifying_key().as_affine());
        let key_table = FixedBase::<KEY_WINDOW_BITS>::new(q);
        let mut k = Scalar::from(0x1234_5678_9abc_def0u64);
        let mut scalars = vec![
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(31u64),
            Scalar::from(32u64),
            Scalar::from(33u64),
            Scalar::from(127u64),
            Scalar::from(128u64),
            Scalar::from(129u64),
            Scalar::from(u64::MAX),
            -Scalar::ONE,
            -Scalar::from(128u64),
        ];
        // Scalars with bits all over: repeated squaring of one that has many.
        for _ in 0..40 {
            k = k * k + Scalar::from(0x9e37_79b9_7f4a_7c15u64);
            scalars.push(k);
        }
        for k in &scalars {
            assert_eq!(key_table.multiply(k), q * k, "{k:?}");
            assert_eq!(
                generator().multiply(k),
                ProjectivePoint::GENERATOR * k,
                "{k:?}"
            );
        }
    }

    #[test]
    fn signatures_of_the_key_verify_and_others_do_not_with_or_without_the_table() {
        let signing = key(3);
        let plain = P256Key::new(*signing.verifying_key());
        let mut tabled = P256Key::new(*signing.verifying_key());
        tabled.precompute();
        assert!(tabled.has_table() && !plain.has_table());
        let other: Signature = key(4).sign(b"header.payload");
        for verifier in [&plain, &tabled] {
            for message in [&b"header.payload"[..], b"", &[0xff; 300]] {
                let signature: Signature = signing.sign(message);
                let bytes = signature.to_bytes();
                assert!(verifier.verify(message, &bytes));
                assert!(!verifier.verify(b"another message", &bytes));
                let mut flipped = bytes.to_vec();
                flipped[40] ^= 1;
                assert!(!verifier.verify(message, &flipped));
                assert!(!verifier.verify(message, &bytes[..63]));
            }
            assert!(!verifier.verify(b"header.payload", &other.to_bytes()));
        }
    }
}
