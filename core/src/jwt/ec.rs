//! ECDSA verification (ES256, ES384) with per-key precomputed tables.
//!
//! The crates' own `VerifyingKey::verify` computes `u1·G + u2·Q` by building w-NAF tables for
//! both G and Q on every call, then about 256 (P-256) or 384 (P-384) doublings. A JWKS key lives
//! for days and only public data is involved, so here each key gets a fixed-base comb table when
//! the JWKS is parsed (the generator's once per VM): `u1·G + u2·Q` is then one mixed addition per
//! nonzero radix-16 digit of u1 and u2 and four doublings. Memory: (bytes + 1) · 8 affine points
//! per key, about 17 KiB for P-256 and 38 KiB for P-384.
//!
//! Everything else is the `ecdsa` crate's `hazmat::verify_prehashed`, step for step: `r` and `s`
//! come from `Signature::from_slice` (each in [1, n-1]), no low-s rule (neither curve sets
//! `NORMALIZE_S`, asserted below), the digest and the x-coordinate reduced mod n as its
//! `bytes2scalar` does. The tests check agreement with `VerifyingKey::verify`.

use std::sync::OnceLock;

use ecdsa::EcdsaCurve;
use p256::NistP256;
use p384::NistP384;
use primeorder::elliptic_curve::ops::{Invert, Reduce};
use primeorder::elliptic_curve::point::AffineCoordinates;
use primeorder::elliptic_curve::subtle::CtOption;
use primeorder::elliptic_curve::{BatchNormalize, FieldBytes, Group, NonZeroScalar, Scalar};
use primeorder::{
    AffinePoint, PrimeCurveParams, ProjectivePoint, Radix16Decomposition, Radix16Digits,
};

// `verify` has no low-s check: JOSE has none, and the crates' own verification skips it for
// these curves.
const _: () =
    assert!(!<NistP256 as EcdsaCurve>::NORMALIZE_S && !<NistP384 as EcdsaCurve>::NORMALIZE_S);

/// Signed radix-16 digits per scalar: two per byte, plus a carry digit.
fn digit_count<C: PrimeCurveParams>() -> usize {
    <Radix16Digits<C> as primeorder::elliptic_curve::array::typenum::Unsigned>::USIZE
}

/// Multiples of one point for a comb: row `i` holds `j · 256^i · P` for `j` in 1..=8, affine.
/// Digit `2i` of a scalar picks from row `i`, digit `2i + 1` from row `i` too, into a second sum
/// multiplied by 16 at the end (the layout of primeorder's `BasepointTable`).
pub(crate) struct Table<C: PrimeCurveParams> {
    points: Vec<AffinePoint<C>>,
}

impl<C: PrimeCurveParams> Clone for Table<C> {
    fn clone(&self) -> Self {
        Self {
            points: self.points.clone(),
        }
    }
}

const ROW: usize = 8;

impl<C: PrimeCurveParams> Table<C> {
    pub(crate) fn new(point: &ProjectivePoint<C>) -> Self {
        let rows = digit_count::<C>() / 2 + 1;
        let mut multiples = Vec::with_capacity(rows * ROW);
        let mut base = *point;
        for _ in 0..rows {
            let mut multiple = base;
            for _ in 0..ROW {
                multiples.push(multiple);
                multiple += base;
            }
            for _ in 0..8 {
                base = base.double();
            }
        }
        Self {
            points: <ProjectivePoint<C> as BatchNormalize<[ProjectivePoint<C>]>>::batch_normalize(
                &multiples,
            ),
        }
    }

    /// `acc += digit · 256^row · P`, for `digit` in [-8, 8].
    fn add_multiple(&self, acc: &mut ProjectivePoint<C>, row: usize, digit: i8) {
        let Some(j) = usize::from(digit.unsigned_abs()).checked_sub(1) else {
            return;
        };
        // Always present: `row` and `j` are in range by construction.
        if let Some(p) = self.points.get(row * ROW + j) {
            if digit > 0 {
                *acc += p;
            } else {
                *acc -= p;
            }
        }
    }
}

/// A curve whose generator table is built once per VM.
pub(crate) trait Curve: PrimeCurveParams {
    fn generator_table() -> &'static Table<Self>;
}

impl Curve for NistP256 {
    fn generator_table() -> &'static Table<Self> {
        static TABLE: OnceLock<Table<NistP256>> = OnceLock::new();
        TABLE.get_or_init(|| Table::new(&ProjectivePoint::GENERATOR))
    }
}

impl Curve for NistP384 {
    fn generator_table() -> &'static Table<Self> {
        static TABLE: OnceLock<Table<NistP384>> = OnceLock::new();
        TABLE.get_or_init(|| Table::new(&ProjectivePoint::GENERATOR))
    }
}

/// `a·G + b·Q`, variable time.
fn lincomb<C: Curve>(a: &Scalar<C>, q: &Table<C>, b: &Scalar<C>) -> ProjectivePoint<C> {
    let mut even = ProjectivePoint::<C>::IDENTITY;
    let mut odd = ProjectivePoint::<C>::IDENTITY;
    for (table, k) in [(C::generator_table(), a), (q, b)] {
        let digits = Radix16Decomposition::<Radix16Digits<C>>::new(k);
        for i in 0..digit_count::<C>() {
            let acc = if i % 2 == 0 { &mut even } else { &mut odd };
            table.add_multiple(acc, i / 2, digits[i]);
        }
    }
    for _ in 0..4 {
        odd = odd.double();
    }
    even + odd
}

/// ECDSA verification of a prehashed message: `digest` is exactly as long as the field elements
/// (SHA-256 for P-256, SHA-384 for P-384), so reducing it mod n is `bytes2scalar`.
pub(crate) fn verify<C: Curve>(
    q: &Table<C>,
    digest: &FieldBytes<C>,
    r: &NonZeroScalar<C>,
    s: &NonZeroScalar<C>,
) -> bool
where
    Scalar<C>: Reduce<FieldBytes<C>> + Invert<Output = CtOption<Scalar<C>>>,
{
    let z = <Scalar<C> as Reduce<FieldBytes<C>>>::reduce(digest);
    let s_inv = *s.invert_vartime();
    let u1 = z * s_inv;
    let u2 = **r * s_inv;
    let point = lincomb(&u1, q, &u2);
    if bool::from(point.is_identity()) {
        return false;
    }
    let x = point.to_affine().x();
    **r == <Scalar<C> as Reduce<FieldBytes<C>>>::reduce(&x)
}
