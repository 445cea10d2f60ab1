//! RSA signature verification (RFC 8017: RSASSA-PKCS1-v1_5, section 8.2.2, and RSASSA-PSS,
//! section 8.1.2) with the public exponent walked bit by bit.
//!
//! rsa 0.10's `verify` raises the signature to `e` with crypto-bigint's constant-time windowed
//! exponentiation: a table of 15 powers, then a product per 4-bit window, about 36 Montgomery
//! products for e = 65537 where left-to-right square-and-multiply needs 17 (16 squarings, one
//! product). Everything here is public (the key, the signature, the message), so a
//! variable-time walk is safe; the arithmetic is still crypto-bigint's, with the Montgomery
//! parameters the rsa crate precomputed for the key. In V8 that halves an RS256 check.
//!
//! The encoding checks are the rsa crate's, step for step:
//! - PKCS#1 v1.5: `EM = 0x00 || 0x01 || PS || 0x00 || T`, `PS` all `0xff` (at least 8 bytes), `T`
//!   the DigestInfo prefix and the hash. The expected `EM` is built and compared whole.
//! - PSS: MGF1 with the message's hash function and a salt exactly as long as the hash (RFC 7518
//!   section 3.5), `emBits = modBits - 1`.

use crypto_bigint::modular::BoxedMontyForm;
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PublicKey};
use sha2::Digest;

/// Whether `signature` is `key`'s PKCS#1 v1.5 signature of `hashed` under the DigestInfo
/// `prefix` (from [`rsa::Pkcs1v15Sign`]).
pub(crate) fn pkcs1v15(key: &PublicKey, prefix: &[u8], hashed: &[u8], signature: &[u8]) -> bool {
    let k = key.size();
    let t_len = prefix.len() + hashed.len();
    // Room for the 8 bytes of padding the format requires.
    let Some(padding) = k.checked_sub(t_len + 3).filter(|&p| p >= 8) else {
        return false;
    };
    let Some(em) = public_op(key, signature, k) else {
        return false;
    };
    let mut expected = Vec::with_capacity(k);
    expected.extend_from_slice(&[0x00, 0x01]);
    expected.resize(2 + padding, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(prefix);
    expected.extend_from_slice(hashed);
    em == expected
}

/// Whether `signature` is `key`'s PSS signature of `hashed` (hashed with `D`), with MGF1 over `D`
/// and a salt as long as `D`'s output.
pub(crate) fn pss<D: Digest>(key: &PublicKey, hashed: &[u8], signature: &[u8]) -> bool {
    let h_len = <D as Digest>::output_size();
    let s_len = h_len;
    let em_bits = usize::try_from(key.n().as_ref().bit_width_vartime())
        .unwrap_or(usize::MAX)
        .saturating_sub(1);
    let em_len = em_bits.div_ceil(8);
    // Step 3.
    if hashed.len() != h_len || em_len < h_len + s_len + 2 {
        return false;
    }
    let Some(mut em) = public_op(key, signature, em_len) else {
        return false;
    };
    // Step 4: the trailer.
    if em.last() != Some(&0xbc) {
        return false;
    }
    // Step 5: maskedDB, then H.
    let (db, rest) = em.split_at_mut(em_len - h_len - 1);
    let Some(h) = rest.get(..h_len) else {
        return false;
    };
    // Step 6: the bits above emBits are zero (8 * emLen - emBits is 0 to 7).
    let unused_bits = 8 * em_len - em_bits;
    let unused_mask = 0xffu8.checked_shl(8 - unused_bits as u32).unwrap_or(0);
    let Some(first) = db.first_mut() else {
        return false;
    };
    if *first & unused_mask != 0 {
        return false;
    }
    // Steps 7 to 9: unmask DB and clear the unused bits again.
    mgf1_xor::<D>(db, h);
    if let Some(first) = db.first_mut() {
        *first &= 0xff >> unused_bits;
    }
    // Step 10: zeros, then 0x01, then the salt.
    let zeros = em_len - h_len - s_len - 2;
    let (Some(padding), Some(&separator)) = (db.get(..zeros), db.get(zeros)) else {
        return false;
    };
    if padding.iter().any(|&b| b != 0) || separator != 0x01 {
        return false;
    }
    let Some(salt) = db.get(db.len() - s_len..) else {
        return false;
    };
    // Steps 12 to 14.
    let expected = D::new()
        .chain_update([0u8; 8])
        .chain_update(hashed)
        .chain_update(salt)
        .finalize();
    expected.as_slice() == h
}

/// MGF1 (RFC 8017 appendix B.2.1) over `D`, XORed into `out`.
fn mgf1_xor<D: Digest>(out: &mut [u8], seed: &[u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(<D as Digest>::output_size())) {
        let mask = D::new()
            .chain_update(seed)
            .chain_update(counter.to_be_bytes())
            .finalize();
        for (o, m) in chunk.iter_mut().zip(mask.iter()) {
            *o ^= m;
        }
    }
}

/// RSAVP1 and I2OSP: `s^e mod n` as `len` big-endian bytes, or `None` when the signature is not
/// exactly k bytes, `s >= n`, or the result does not fit in `len` bytes.
fn public_op(key: &PublicKey, signature: &[u8], len: usize) -> Option<Vec<u8>> {
    if signature.len() != key.size() {
        return None;
    }
    let s = BoxedUint::from_be_slice(signature, key.n_bits_precision()).ok()?;
    if s >= *key.n().as_ref() {
        return None;
    }
    let e = key.e();
    let base = BoxedMontyForm::new(s, key.n_params());
    let mut acc = base.clone();
    // The top bit of e is `acc = base`; every lower bit squares, and a set bit multiplies.
    for bit in (0..e.bit_width_vartime().saturating_sub(1)).rev() {
        acc = acc.square();
        if e.bit_vartime(bit) {
            acc = acc.mul(&base);
        }
    }
    let bytes = acc.retrieve().to_be_bytes();
    // The integer's storage is limb-aligned, so wider than `len`: what lies in front must be 0.
    let start = bytes.len().checked_sub(len)?;
    let (front, em) = bytes.split_at(start);
    front.iter().all(|&b| b == 0).then(|| em.to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rsa::sha2::Sha256 as OidSha256;
    use rsa::Pkcs1v15Sign;
    use sha2::{Digest, Sha256};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jsonwebtoken::{crypto, Algorithm as J, EncodingKey};

    use crate::jwt::test_keys::{RSA_A_N, RSA_A_PEM};

    fn public_key() -> PublicKey {
        let n = BoxedUint::from_be_slice_vartime(&URL_SAFE_NO_PAD.decode(RSA_A_N).unwrap());
        PublicKey::new(n, BoxedUint::from(65_537u32)).unwrap()
    }

    fn sign(message: &[u8]) -> Vec<u8> {
        sign_with(message, J::RS256)
    }

    fn sign_with(message: &[u8], alg: J) -> Vec<u8> {
        let key = EncodingKey::from_rsa_pem(RSA_A_PEM.as_bytes()).unwrap();
        let signature = crypto::sign(message, &key, alg).unwrap();
        URL_SAFE_NO_PAD.decode(signature).unwrap()
    }

    /// The good signature, each of a few bits flipped, one byte short and long, all 0xff, all 0.
    fn corruptions(good: &[u8], n: u8) -> Vec<Vec<u8>> {
        let mut cases = vec![good.to_vec()];
        for i in [0, 1, good.len() / 2, good.len() - 2, good.len() - 1] {
            let mut bad = good.to_vec();
            bad[i] ^= 1 << (n % 8);
            cases.push(bad);
        }
        cases.push(good[1..].to_vec());
        cases.push([good, &[0]].concat());
        cases.push(vec![0xff; good.len()]);
        cases.push(vec![0; good.len()]);
        cases
    }

    #[test]
    fn pss_agrees_with_the_rsa_crate_on_good_and_corrupted_signatures() {
        use rsa::sha2::{Sha256 as OidSha256, Sha512 as OidSha512};
        use rsa::Pss;
        use sha2::Sha512;
        let key = public_key();
        for n in 0..16u8 {
            let message = [n; 40];
            let good = sign_with(&message, J::PS256);
            let hashed = Sha256::digest(message);
            for sig in corruptions(&good, n) {
                let theirs = key.verify(Pss::<OidSha256>::new(), &hashed, &sig).is_ok();
                assert_eq!(pss::<Sha256>(&key, &hashed, &sig), theirs, "case {n}");
            }
            assert!(pss::<Sha256>(&key, &hashed, &good));
            assert!(!pss::<Sha256>(&key, &Sha256::digest(b"other"), &good));
            // The same signature read with another hash (and so another salt length) fails.
            assert!(!pss::<Sha512>(&key, &Sha512::digest(message), &good));

            let good = sign_with(&message, J::PS512);
            let hashed = Sha512::digest(message);
            for sig in corruptions(&good, n) {
                let theirs = key.verify(Pss::<OidSha512>::new(), &hashed, &sig).is_ok();
                assert_eq!(pss::<Sha512>(&key, &hashed, &sig), theirs, "case {n}");
            }
            assert!(pss::<Sha512>(&key, &hashed, &good));
        }
    }

    #[test]
    fn agrees_with_the_rsa_crate_on_good_and_corrupted_signatures() {
        let key = public_key();
        let scheme = Pkcs1v15Sign::new::<OidSha256>();
        for n in 0..24u8 {
            let message = [n; 40];
            let hashed = Sha256::digest(message);
            let good = sign(&message);
            let cases = corruptions(&good, n);
            for sig in &cases {
                let theirs = key.verify(scheme.clone(), &hashed, sig).is_ok();
                assert_eq!(
                    pkcs1v15(&key, &scheme.prefix, &hashed, sig),
                    theirs,
                    "case {n}"
                );
            }
            assert!(pkcs1v15(&key, &scheme.prefix, &hashed, &good));
            // The right signature for another message, or under another prefix, is refused.
            assert!(!pkcs1v15(
                &key,
                &scheme.prefix,
                &Sha256::digest(b"other"),
                &good
            ));
            assert!(!pkcs1v15(&key, &[], &hashed, &good));
        }
    }

    #[test]
    fn a_signature_at_or_above_the_modulus_is_refused() {
        let key = public_key();
        let n = key.n().as_ref().to_be_bytes();
        let k = key.size();
        let n = n[n.len() - k..].to_vec();
        let scheme = Pkcs1v15Sign::new::<OidSha256>();
        assert!(!pkcs1v15(&key, &scheme.prefix, &[0; 32], &n));
        assert!(public_op(&key, &n, k).is_none());
    }

    /// Step 6's check: the bit above emBits set in an otherwise valid encoding is refused. Only
    /// the private key can make such a signature, so this signs one with it.
    #[test]
    fn pss_refuses_an_encoding_with_the_bit_above_em_bits_set() {
        use base64::engine::general_purpose::STANDARD;
        use rsa::pkcs8::DecodePrivateKey as _;
        use rsa::sha2::Sha256 as OidSha256;
        use rsa::traits::PrivateKeyParts as _;
        use rsa::Pss;

        let pem: String = RSA_A_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let private = rsa::PrivateKey::from_pkcs8_der(&STANDARD.decode(pem).unwrap()).unwrap();
        let key = public_key();
        let k = key.size();
        let n_top = key.n().as_ref().to_be_bytes()[0];
        // PSS salts are random: sign until the doctored encoding is still below n.
        let (hashed, em) = (0u8..64)
            .find_map(|i| {
                let message = [i; 16];
                let em = public_op(&key, &sign_with(&message, J::PS256), k).unwrap();
                ((em[0] | 0x80) < n_top).then(|| (Sha256::digest(message), em))
            })
            .unwrap();
        assert_eq!(em[0] & 0x80, 0, "a valid encoding leaves the bit clear");
        let mut doctored = em.clone();
        doctored[0] |= 0x80;
        let m = BoxedUint::from_be_slice(&doctored, key.n_bits_precision()).unwrap();
        let s = BoxedMontyForm::new(m, key.n_params())
            .pow(private.d())
            .retrieve()
            .to_be_bytes();
        let signature = s[s.len() - k..].to_vec();
        assert_eq!(public_op(&key, &signature, k).unwrap(), doctored);

        assert!(!pss::<Sha256>(&key, &hashed, &signature));
        let theirs = key.verify(Pss::<OidSha256>::new(), &hashed, &signature);
        assert!(theirs.is_err());
    }
}
