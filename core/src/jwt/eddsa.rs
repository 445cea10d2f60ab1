//! EdDSA (Ed25519) verification with precomputed tables, exactly as strict as ed25519-dalek's
//! `VerifyingKey::verify_strict`.
//!
//! `verify_strict` computes `R' = [s]B − [k]A` with a double-scalar multiplication that does
//! about 253 doublings per call. A JWKS key lives for days and only public data is involved, so
//! here each key gets a comb table of multiples of −A the first time it verifies, and the base
//! point B one per VM: `[s]B + [k](−A)` is then one addition per nonzero radix-16 digit of s and
//! k and four doublings: 1.4x to 1.9x faster than `verify_strict` in V8 (bench/hotpath). A table
//! costs about two of these verifications to build and holds 256 points in extended coordinates
//! (160 bytes each): 40 KiB per key, and 40 KiB per VM for B.
//!
//! Measured and not taken: `[s]B` by curve25519-dalek's `mul_base` over its static affine Niels
//! table (feature `precomputed-tables`, 37 KB more .wasm) took `jwt::verify` from 76 to 67 µs in
//! Node's V8, but made a new EdDSA token cost 9.8 µs more Envoy CPU in Envoy's V8
//! (`bench/compare.py --rounds 14 --new-tokens EdDSA`, median of paired rounds). Judge a change
//! here in Envoy, not only in bench/hotpath.
//!
//! Every check of `verify_strict` is kept, and refuses what it refuses:
//! - the signature is exactly 64 bytes (`Signature::from_slice`);
//! - s is canonical, s < l (`Scalar::from_canonical_bytes`, ed25519-dalek's `check_scalar`
//!   without `legacy_compatibility`, which nothing in the workspace turns on);
//! - R is not of small order (see [`SMALL_ORDER_ENCODINGS`] for why R is not decompressed);
//! - A is not of small order ([`Key::new`], once per key);
//! - k = SHA-512(R || A || M) mod l with A as the key's compressed bytes, and the compressed R'
//!   equals R's bytes, which also refuses R encodings that are non-canonical or not on the curve.
//!
//! The tests check agreement with `verify_strict`.

use std::sync::OnceLock;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

/// The canonical encodings of the eight points of small order (the 8-torsion subgroup: the
/// identity, the point of order 2, two of order 4, four of order 8).
///
/// `verify_strict` decompresses R and refuses it when it is of small order. Here R's bytes are
/// compared with this list instead, which saves a square root per verification and gives the same
/// answer for every R:
/// - R canonical and of small order: in the list, refused by both.
/// - R a non-canonical encoding (y ≥ p, or x = 0 with the sign bit set), of small order or not:
///   `verify_strict` refuses it either for its order or because the compressed R' it compares
///   with is always canonical, so never equal to these bytes; here the same comparison refuses it.
/// - R not on the curve: `verify_strict` fails to decompress it; here no R' compresses to it.
/// - R canonical, on the curve, not of small order: both accept exactly when R' compresses to R.
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
    // The identity (0, 1).
    [
        0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0,
    ],
    // Order 2: (0, −1), y = p − 1.
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // Order 4: (±√−1, 0).
    [0; 32],
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0x80,
    ],
    // Order 8: the four points with y = ±y₈.
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x85,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0xfa,
    ],
];

/// Rows of the comb: digit `2i` and `2i + 1` of a scalar both pick from row `i`.
const ROWS: usize = 32;

/// Multiples of one point for a comb: row `i` holds `j · 256^i · P` for `j` in 1..=8. Digit `2i`
/// of a scalar picks from row `i`, digit `2i + 1` from row `i` too, into a second sum multiplied
/// by 16 at the end (the layout of curve25519-dalek's `EdwardsBasepointTable`, whose lookups are
/// constant time and whose construction inverts once per point; public data needs neither).
#[derive(Clone)]
struct Table {
    points: Vec<EdwardsPoint>,
}

impl Table {
    fn new(point: &EdwardsPoint) -> Self {
        let mut points = Vec::with_capacity(ROWS * 8);
        let mut base = *point;
        for _ in 0..ROWS {
            let b2 = base + base;
            let b3 = b2 + base;
            let b4 = b2 + b2;
            let b6 = b3 + b3;
            let b8 = b4 + b4;
            points.extend([base, b2, b3, b4, b4 + base, b6, b6 + base, b8]);
            // 256 · base = 4 · 8 · (8 · base); `mul_by_cofactor` is the public way to double
            // three times.
            let b64 = b8.mul_by_cofactor();
            let b128 = b64 + b64;
            base = b128 + b128;
        }
        Self { points }
    }

    /// `acc += digit · 256^row · P`, for `digit` in [−8, 8].
    fn add_multiple(&self, acc: &mut EdwardsPoint, row: usize, digit: i8) {
        let Some(j) = usize::from(digit.unsigned_abs()).checked_sub(1) else {
            return;
        };
        // Always present: `row < ROWS` and `j < 8` by construction.
        if let Some(p) = self.points.get(row * 8 + j) {
            if digit > 0 {
                *acc += p;
            } else {
                *acc -= p;
            }
        }
    }
}

/// The base point's table, built once per VM.
fn base_table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::new(&ED25519_BASEPOINT_POINT))
}

/// `[a]B + [b]P`, variable time: both scalars' even digits into one sum, odd digits into another
/// multiplied by 16 at the end.
fn lincomb(a: &Scalar, p: &Table, b: &Scalar) -> EdwardsPoint {
    let mut even = EdwardsPoint::identity();
    let mut odd = EdwardsPoint::identity();
    for (table, k) in [(base_table(), a), (p, b)] {
        for (i, &digit) in radix_16(k).iter().enumerate() {
            let acc = if i % 2 == 0 { &mut even } else { &mut odd };
            table.add_multiple(acc, i / 2, digit);
        }
    }
    // 16 · odd = 2 · 8 · odd.
    let odd8 = odd.mul_by_cofactor();
    even + odd8 + odd8
}

/// The signed radix-16 digits of a reduced scalar (k < l < 2^253): 64 digits in [−8, 8] with
/// `k = Σ digits[i] · 16^i` (curve25519-dalek's `as_radix_16`, which is not public).
fn radix_16(k: &Scalar) -> [i8; 64] {
    let bytes = k.to_bytes();
    let mut digits = [0i8; 64];
    for (pair, byte) in digits.chunks_exact_mut(2).zip(bytes) {
        // Nibbles are below 16, so they fit in an i8.
        if let [lo, hi] = pair {
            *lo = (byte & 15) as i8;
            *hi = (byte >> 4) as i8;
        }
    }
    // Recentre each digit into [−8, 8) and carry into the next. The top nibble of a value below
    // 2^253 is at most 1, so the last digit, plus a carry, stays in [−8, 8].
    for i in 0..63 {
        let carry = (digits[i] + 8) >> 4;
        digits[i] -= carry << 4;
        digits[i + 1] += carry;
    }
    digits
}

/// A JWK's Ed25519 public key A, never of small order, and the comb table of −A, built on the
/// key's first verification: a JWKS may hold keys that are never used (rotation), and
/// `Jwks::parse` also runs where keys are only checked.
#[derive(Clone)]
pub(crate) struct Key {
    key: VerifyingKey,
    table: OnceLock<Table>,
}

impl Key {
    /// `None` when A is of small order (`is_weak`): `verify_strict` refuses every signature under
    /// such a key, and this check, made once here, stands for the one it makes on each call.
    pub(crate) fn new(key: VerifyingKey) -> Option<Self> {
        (!key.is_weak()).then(|| Self {
            key,
            table: OnceLock::new(),
        })
    }

    fn table(&self) -> &Table {
        self.table
            .get_or_init(|| Table::new(&-self.key.to_edwards()))
    }
}

/// EdDSA (RFC 8032 Ed25519, RFC 8037 for JOSE): `signature` is R || s, 64 bytes.
pub(crate) fn verify(key: &Key, message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    let r = sig.r_bytes();
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes())) else {
        return false;
    };
    if SMALL_ORDER_ENCODINGS.contains(r) {
        return false;
    }
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r)
            .chain_update(key.key.as_bytes())
            .chain_update(message),
    );
    let expected = lincomb(&s, key.table(), &k);
    expected.compress() == CompressedEdwardsY(*r)
}

/// Agreement with ed25519-dalek's `verify_strict` on random keys, messages and signatures, valid
/// and corrupted. Deterministic: the randomness is a SHA-256 counter, so a failure names a
/// reproducible case.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer, SigningKey};

    use crate::jwt::test_bytes::Bytes;

    /// `a + b` as 256-bit little-endian integers (wrapping).
    fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
            out[i] = sum as u8;
            carry = sum >> 8;
        }
        out
    }

    struct Tally {
        checked: usize,
        accepted: usize,
    }

    impl Tally {
        fn check(&mut self, ours: &Key, theirs: &VerifyingKey, msg: &[u8], sig: &[u8]) {
            let expected = ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|sig| theirs.verify_strict(msg, &sig).is_ok());
            assert_eq!(
                verify(ours, msg, sig),
                expected,
                "key {:02x?} msg {msg:02x?} sig {sig:02x?}",
                theirs.as_bytes()
            );
            self.checked += 1;
            self.accepted += usize::from(expected);
        }
    }

    #[test]
    fn a_table_is_40_kib() {
        let table = Table::new(&ED25519_BASEPOINT_POINT);
        assert_eq!(
            table.points.len() * std::mem::size_of::<EdwardsPoint>(),
            40 * 1024
        );
    }

    #[test]
    fn small_order_encodings_are_the_eight_torsion_points() {
        let mut ours = SMALL_ORDER_ENCODINGS.to_vec();
        let mut theirs: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|p| p.compress().0).collect();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(ours, theirs);
        for p in EIGHT_TORSION {
            assert!(p.is_small_order());
        }
    }

    #[test]
    fn radix_16_digits_and_lincomb_are_right() {
        let mut rng = Bytes::new("eddsa", 0);
        let minus_one = Scalar::ZERO - Scalar::ONE;
        let edges = [Scalar::ZERO, Scalar::ONE, minus_one];
        for (i, k) in edges
            .into_iter()
            .chain((0..50).map(|_| Scalar::from_bytes_mod_order(rng.array())))
            .collect::<Vec<_>>()
            .into_iter()
            .enumerate()
        {
            let digits = radix_16(&k);
            assert!(digits.iter().all(|d| (-8..=8).contains(d)));
            let sixteen = Scalar::from(16u8);
            let sum = digits.iter().rev().fold(Scalar::ZERO, |acc, &d| {
                let d = if d < 0 {
                    -Scalar::from(d.unsigned_abs())
                } else {
                    Scalar::from(d.unsigned_abs())
                };
                acc * sixteen + d
            });
            assert_eq!(sum, k);
            let p = ED25519_BASEPOINT_POINT * Scalar::from(3u8);
            // The base point's scalar at the edges too, against every k's.
            let a = match edges.get(i % 5) {
                Some(&edge) => edge,
                None => Scalar::from_bytes_mod_order(rng.array()),
            };
            assert_eq!(
                lincomb(&a, &Table::new(&p), &k),
                ED25519_BASEPOINT_POINT * a + p * k
            );
        }
    }

    #[test]
    fn ed25519_agrees_with_verify_strict() {
        const CASES: u32 = 32;
        let mut tally = Tally {
            checked: 0,
            accepted: 0,
        };
        let mut one = [0; 32];
        one[0] = 1;
        let l = add_le(&(-Scalar::ONE).to_bytes(), &one);
        for case in 0..CASES {
            let mut rng = Bytes::new("eddsa", case);
            let signer = SigningKey::from_bytes(&rng.array());
            let theirs = signer.verifying_key();
            let ours = Key::new(theirs).unwrap();
            let len = usize::from(rng.next(1)[0]);
            let msg = rng.next(len);
            let good = signer.sign(&msg).to_bytes();
            let t = &mut tally;
            t.check(&ours, &theirs, &msg, &good);
            // One flipped bit in R, in s, in the message.
            let bit = usize::from(rng.next(1)[0]);
            for half in [0, 32] {
                let mut flipped = good;
                flipped[half + bit / 8] ^= 1 << (bit % 8);
                t.check(&ours, &theirs, &msg, &flipped);
            }
            let mut other = msg.clone();
            other.push(0);
            t.check(&ours, &theirs, &other, &good);
            // s + l: the same s mod l, non-canonical. s = 0, s = l − 1, s = l.
            let (r, s) = good.split_at(32);
            let with_s = |s: &[u8; 32]| [r, s].concat();
            t.check(
                &ours,
                &theirs,
                &msg,
                &with_s(&add_le(s.try_into().unwrap(), &l)),
            );
            t.check(&ours, &theirs, &msg, &with_s(&[0; 32]));
            t.check(&ours, &theirs, &msg, &with_s(&(-Scalar::ONE).to_bytes()));
            t.check(&ours, &theirs, &msg, &with_s(&l));
            // R of small order (canonical, and y + p non-canonical where it fits, and the x = 0
            // encodings with the sign bit set), with the good s and with s = 0.
            for torsion in &EIGHT_TORSION {
                let enc = torsion.compress().0;
                let mut variants = vec![enc];
                let mut signed = enc;
                signed[31] |= 0x80;
                variants.push(signed);
                let p = [
                    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                ];
                let mut y = enc;
                y[31] &= 0x7f;
                let y_plus_p = add_le(&y, &p);
                if y_plus_p[31] & 0x80 == 0 {
                    variants.push(y_plus_p);
                    let mut signed = y_plus_p;
                    signed[31] |= enc[31] & 0x80;
                    variants.push(signed);
                }
                for r in variants {
                    t.check(&ours, &theirs, &msg, &[&r[..], s].concat());
                    t.check(&ours, &theirs, &msg, &[&r[..], &[0; 32]].concat());
                }
            }
            // A signature whose R is a small-order point T added to a good R (k then differs).
            let r_point = CompressedEdwardsY(r.try_into().unwrap())
                .decompress()
                .unwrap();
            for torsion in &EIGHT_TORSION {
                let mixed = (r_point + torsion).compress().0;
                t.check(&ours, &theirs, &msg, &[&mixed[..], s].concat());
            }
            // R = the identity with s = k·a for a key A = [a]B: the equation holds
            // ([s]B − [k]A = identity = R), so only the small-order check refuses it (and plain
            // `verify` accepts it).
            let a = Scalar::from_bytes_mod_order(rng.array());
            let crafted =
                VerifyingKey::from_bytes(&(ED25519_BASEPOINT_POINT * a).compress().0).unwrap();
            let identity = EdwardsPoint::identity().compress().0;
            let k = Scalar::from_hash(
                Sha512::new()
                    .chain_update(identity)
                    .chain_update(crafted.as_bytes())
                    .chain_update(&msg),
            );
            let forged = [identity, (k * a).to_bytes()].concat();
            let forged_sig = ed25519_dalek::Signature::from_slice(&forged).unwrap();
            assert!(ed25519_dalek::Verifier::verify(&crafted, &msg, &forged_sig).is_ok());
            t.check(&Key::new(crafted).unwrap(), &crafted, &msg, &forged);
            // Halves swapped; random bytes; wrong lengths.
            let swapped = [s, r].concat();
            t.check(&ours, &theirs, &msg, &swapped);
            t.check(&ours, &theirs, &msg, &rng.next(64));
            t.check(&ours, &theirs, &msg, &good[..63]);
            t.check(&ours, &theirs, &msg, &[&good[..], &[0]].concat());
            t.check(&ours, &theirs, &msg, &[]);
            // Another key.
            let other_signer = SigningKey::from_bytes(&rng.array());
            let other_key = Key::new(other_signer.verifying_key()).unwrap();
            assert!(!verify(&other_key, &msg, &good));
        }
        // Accepted: each good signature twice (as is, and with R + the identity, the first
        // 8-torsion point); everything else is refused by both.
        assert_eq!(tally.accepted, 2 * CASES as usize);
        assert!(tally.checked > 40 * CASES as usize, "{}", tally.checked);
    }

    /// `verify_strict` refuses every signature under a small-order A, even one that satisfies
    /// the equation (A = identity, R = B, s = 1: [1]B − [k]A = B), and `Key::new` refuses A.
    #[test]
    fn small_order_keys_are_refused() {
        use ed25519_dalek::Verifier;
        let b = ED25519_BASEPOINT_POINT.compress().0;
        let mut one = [0; 32];
        one[0] = 1;
        let sig = ed25519_dalek::Signature::from_slice(&[b, one].concat()).unwrap();
        let mut keys = 0;
        for torsion in EIGHT_TORSION {
            let Ok(key) = VerifyingKey::from_bytes(&torsion.compress().0) else {
                continue;
            };
            keys += 1;
            assert!(Key::new(key).is_none());
            assert!(key.verify_strict(b"m", &sig).is_err());
            if torsion == EdwardsPoint::identity() {
                assert!(key.verify(b"m", &sig).is_ok());
            }
        }
        assert_eq!(keys, 8);
    }

    /// R with a non-canonical y (y + p for y < 19) that decodes to a point of large order: the
    /// one case where skipping R's decompression could matter. Both refuse it.
    #[test]
    fn non_canonical_r_of_large_order_is_refused() {
        let signer = SigningKey::from_bytes(&[9; 32]);
        let theirs = signer.verifying_key();
        let ours = Key::new(theirs).unwrap();
        let good = signer.sign(b"m").to_bytes();
        let mut tally = Tally {
            checked: 0,
            accepted: 0,
        };
        let mut decodable = 0;
        for y in 0u8..19 {
            let mut r = [0xff; 32];
            r[0] = 0xed + y;
            r[31] = 0x7f;
            for sign in [0, 0x80] {
                r[31] = 0x7f | sign;
                if let Some(p) = CompressedEdwardsY(r).decompress() {
                    decodable += usize::from(!p.is_small_order());
                }
                let sig = [&r[..], &good[32..]].concat();
                tally.check(&ours, &theirs, b"m", &sig);
            }
        }
        assert!(decodable > 0);
        assert_eq!(tally.accepted, 0);
    }
}
