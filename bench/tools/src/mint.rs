//! `mint-jwts`: one key pair per algorithm (EdDSA, ES256, ES384, RS256, RS512, PS256), their
//! public JWKS, and many distinct tokens each (`rsa_count` for the RSA ones, `count` for the rest).
//!
//! Every token differs (`jti`, `sub`), so a verifier that caches by token sees each one as new.
//! Signing runs on every core; RSA signing dominates.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, KeyPair as _};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

pub struct Mint {
    pub dir: PathBuf,
    pub count: usize,
    pub rsa_count: usize,
    pub issuer: String,
    pub audience: String,
    pub lifetime_secs: u64,
}

/// A signing key, its public JWK, and how many tokens to mint with it.
struct Signer {
    name: &'static str,
    algorithm: Algorithm,
    kid: &'static str,
    key: EncodingKey,
    jwk: Value,
    count: usize,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn eddsa(count: usize) -> Result<Signer> {
    let rng = SystemRandom::new();
    let pkcs8 = ring_sig::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| anyhow!("{e}"))?;
    let pair = ring_sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| anyhow!("{e}"))?;
    Ok(Signer {
        name: "EdDSA",
        algorithm: Algorithm::EdDSA,
        kid: "bench-eddsa",
        key: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}),
        count,
    })
}

/// An ECDSA signer for `algorithm`: ES256 (P-256) or ES384 (P-384).
fn ecdsa(algorithm: Algorithm, count: usize) -> Result<Signer> {
    let (name, kid, signing, curve, size) = match algorithm {
        Algorithm::ES256 => (
            "ES256",
            "bench-es256",
            &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            "P-256",
            32,
        ),
        Algorithm::ES384 => (
            "ES384",
            "bench-es384",
            &ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            "P-384",
            48,
        ),
        other => return Err(anyhow!("{other:?} is not an ECDSA algorithm")),
    };
    let rng = SystemRandom::new();
    let pkcs8 =
        ring_sig::EcdsaKeyPair::generate_pkcs8(signing, &rng).map_err(|e| anyhow!("{e}"))?;
    let pair = ring_sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng)
        .map_err(|e| anyhow!("{e}"))?;
    // Uncompressed point: 0x04, then X and Y, `size` bytes each.
    let point = pair.public_key().as_ref();
    let (x, y) = point
        .get(1..1 + size)
        .zip(point.get(1 + size..1 + 2 * size))
        .with_context(|| format!("unexpected {curve} public key encoding"))?;
    Ok(Signer {
        name,
        algorithm,
        kid,
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": curve, "x": b64(x), "y": b64(y)}),
        count,
    })
}

/// A 2048-bit RSA signer for `algorithm` (RS256, RS512 or PS256), each with its own key.
fn rsa(
    name: &'static str,
    algorithm: Algorithm,
    kid: &'static str,
    count: usize,
) -> Result<Signer> {
    let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)?;
    let der = private.to_pkcs1_der()?;
    Ok(Signer {
        name,
        algorithm,
        kid,
        key: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA",
            "n": b64(&private.n().to_bytes_be()),
            "e": b64(&private.e().to_bytes_be()),
        }),
        count,
    })
}

pub fn run(args: &Mint) -> Result<()> {
    fs::create_dir_all(&args.dir)?;
    let signers = [
        eddsa(args.count)?,
        ecdsa(Algorithm::ES256, args.count)?,
        ecdsa(Algorithm::ES384, args.count)?,
        rsa("RS256", Algorithm::RS256, "bench-rs256", args.rsa_count)?,
        rsa("RS512", Algorithm::RS512, "bench-rs512", args.rsa_count)?,
        rsa("PS256", Algorithm::PS256, "bench-ps256", args.rsa_count)?,
    ];
    let keys: Vec<Value> = signers
        .iter()
        .map(|s| {
            let mut jwk = s.jwk.clone();
            jwk["kid"] = json!(s.kid);
            jwk["alg"] = json!(s.name);
            jwk["use"] = json!("sig");
            jwk
        })
        .collect();
    fs::write(
        args.dir.join("jwks.json"),
        json!({ "keys": keys }).to_string(),
    )?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let threads = thread::available_parallelism().map_or(1, usize::from);
    for signer in &signers {
        let tokens = mint_all(signer, args, now, threads)?;
        let path = args.dir.join(format!("tokens-{}.txt", signer.name));
        fs::write(&path, tokens.join("\n") + "\n")?;
    }
    Ok(())
}

fn mint_all(signer: &Signer, args: &Mint, now: u64, threads: usize) -> Result<Vec<String>> {
    let per_thread = signer.count.div_ceil(threads).max(1);
    let chunks: Vec<Result<Vec<String>>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..signer.count)
            .step_by(per_thread)
            .map(|start| {
                let end = (start + per_thread).min(signer.count);
                scope.spawn(move || (start..end).map(|i| mint(signer, args, now, i)).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("minting thread panicked"))?)
            .collect()
    });
    let mut tokens = Vec::with_capacity(signer.count);
    for chunk in chunks {
        tokens.extend(chunk?);
    }
    Ok(tokens)
}

fn mint(signer: &Signer, args: &Mint, now: u64, i: usize) -> Result<String> {
    let mut header = Header::new(signer.algorithm);
    header.kid = Some(signer.kid.to_owned());
    let claims = json!({
        "iss": args.issuer,
        "aud": args.audience,
        "sub": format!("client-{}", i % 1000),
        "iat": now,
        "exp": now + args.lifetime_secs,
        "jti": format!("{}-{i}", signer.name),
        "permissions": ["orders:read"],
    });
    Ok(jsonwebtoken::encode(&header, &claims, &signer.key)?)
}
