//! Access-token signing keys: generating them, storing them (PKCS#8 DER), publishing them (JWK,
//! RFC 7517) and signing compact JWS tokens with them (RFC 7515).
//!
//! Three algorithms (RFC 7518, RFC 8037): `EdDSA` over Ed25519 (the default: small, fast,
//! deterministic), `ES256` (ECDSA P-256, deterministic per RFC 6979) and `RS256` (RSA 2048
//! PKCS#1 v1.5, signed with blinding). Key ids are RFC 7638 JWK thumbprints, so a kid names its
//! public key and nothing else.
//!
//! Private key material never appears in `Debug` output or logs.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
// One pkcs8 and one signature crate serve all three key types.
use rsa::pkcs8::{self, DecodePrivateKey as _, EncodePrivateKey as _};
use rsa::signature::{self, RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::entropy::{self, EntropyError};

/// RSA modulus size of generated keys.
pub const RSA_BITS: usize = 2048;

/// A JWS algorithm the service signs access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum SigningAlg {
    /// Ed25519 (RFC 8037).
    #[value(name = "EdDSA")]
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    #[value(name = "ES256")]
    Es256,
    /// RSA 2048 PKCS#1 v1.5 with SHA-256. Key generation takes a while.
    #[value(name = "RS256")]
    Rs256,
}

impl SigningAlg {
    pub const ALL: [Self; 3] = [Self::EdDsa, Self::Es256, Self::Rs256];

    /// The JOSE name, e.g. `ES256`.
    pub fn name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// The algorithm with this JOSE name (case-sensitive, as stored).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    #[error("cannot generate an RSA key")]
    RsaGenerate(#[source] rsa::Error),
    #[error("cannot encode the private key as PKCS#8")]
    Encode(#[source] pkcs8::Error),
    /// Carries no detail: the input is private key material.
    #[error("stored {0} private key is not valid PKCS#8 for that algorithm")]
    Decode(SigningAlg),
    #[error("cannot serialize the token")]
    Json(#[source] serde_json::Error),
    #[error("signing failed")]
    Sign(#[source] signature::Error),
}

/// A public key as the JWKS publishes it. Members a key type does not have are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PublicJwk {
    pub kty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub kid: String,
}

/// The RFC 7638 thumbprint input: the required members of the key type, in lexicographic order,
/// without whitespace. Only base64url text goes in, so no JSON escaping is needed.
#[derive(Serialize)]
struct ThumbprintInput<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<&'a str>,
    kty: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<&'a str>,
}

enum Material {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
}

/// A private signing key with its public JWK. `Debug` shows the kid and algorithm only.
pub struct SigningKey {
    alg: SigningAlg,
    material: Material,
    jwk: PublicJwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.jwk.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the OS CSPRNG. For RS256 this takes a while (prime search); call it off
    /// the async runtime.
    pub fn generate(alg: SigningAlg) -> Result<Self, SigningError> {
        let material = match alg {
            SigningAlg::EdDsa => {
                Material::Ed25519(ed25519_dalek::SigningKey::from_bytes(&entropy::bytes()?))
            }
            SigningAlg::Es256 => Material::P256(loop {
                // Fails only for zero or a value not below the group order: about 2^-32.
                let candidate: [u8; 32] = entropy::bytes()?;
                if let Ok(key) = p256::ecdsa::SigningKey::from_bytes(&candidate.into()) {
                    break key;
                }
            }),
            SigningAlg::Rs256 => {
                let key = rsa::RsaPrivateKey::new(&mut entropy::rng(), RSA_BITS)
                    .map_err(SigningError::RsaGenerate)?;
                Material::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
            }
        };
        Ok(Self::with_material(alg, material))
    }

    /// A key stored earlier with [`SigningKey::to_pkcs8_der`].
    pub fn from_pkcs8_der(alg: SigningAlg, der: &[u8]) -> Result<Self, SigningError> {
        let material = match alg {
            SigningAlg::EdDsa => ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map(Material::Ed25519)
                .ok(),
            SigningAlg::Es256 => p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map(Material::P256)
                .ok(),
            SigningAlg::Rs256 => rsa::pkcs1v15::SigningKey::<Sha256>::from_pkcs8_der(der)
                .ok()
                .filter(|key| {
                    let key: &rsa::RsaPrivateKey = key.as_ref();
                    key.size() * 8 >= RSA_BITS && key.validate().is_ok()
                })
                .map(|key| Material::Rsa(Box::new(key))),
        };
        material
            .map(|m| Self::with_material(alg, m))
            .ok_or(SigningError::Decode(alg))
    }

    /// The private key as PKCS#8 DER, for the store. The buffer is wiped when dropped.
    pub fn to_pkcs8_der(&self) -> Result<pkcs8::SecretDocument, SigningError> {
        match &self.material {
            Material::Ed25519(key) => key.to_pkcs8_der(),
            Material::P256(key) => p256::SecretKey::from(key).to_pkcs8_der(),
            Material::Rsa(key) => key.to_pkcs8_der(),
        }
        .map_err(SigningError::Encode)
    }

    fn with_material(alg: SigningAlg, material: Material) -> Self {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let (kty, crv, x, y, n, e) = match &material {
            Material::Ed25519(key) => (
                "OKP",
                Some("Ed25519"),
                Some(b64(key.verifying_key().as_bytes())),
                None,
                None,
                None,
            ),
            Material::P256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                (
                    "EC",
                    Some("P-256"),
                    point.x().map(|x| b64(x)),
                    point.y().map(|y| b64(y)),
                    None,
                    None,
                )
            }
            Material::Rsa(key) => {
                let key: &rsa::RsaPrivateKey = (**key).as_ref();
                (
                    "RSA",
                    None,
                    None,
                    None,
                    Some(b64(&key.n().to_bytes_be())),
                    Some(b64(&key.e().to_bytes_be())),
                )
            }
        };
        let thumbprint = serde_json::to_vec(&ThumbprintInput {
            crv,
            e: e.as_deref(),
            kty,
            n: n.as_deref(),
            x: x.as_deref(),
            y: y.as_deref(),
        })
        .unwrap_or_default();
        let kid = b64(&Sha256::digest(&thumbprint));
        Self {
            alg,
            material,
            jwk: PublicJwk {
                kty,
                crv,
                x,
                y,
                n,
                e,
                alg: alg.name(),
                use_: "sig",
                kid,
            },
        }
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint of the public key, base64url.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    /// A compact JWS of `claims` with header `{"alg", "typ", "kid"}`.
    pub fn sign_jwt<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SigningError> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'a str,
            typ: &'a str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&Header {
            alg: self.alg.name(),
            typ,
            kid: self.kid(),
        })
        .map_err(SigningError::Json)?;
        let payload = serde_json::to_vec(claims).map_err(SigningError::Json)?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// The raw JWS signature of `message` (RFC 7518: R || S for ECDSA).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        match &self.material {
            Material::Ed25519(key) => key
                .try_sign(message)
                .map(|s| s.to_bytes().to_vec())
                .map_err(SigningError::Sign),
            Material::P256(key) => {
                let signature: p256::ecdsa::Signature =
                    key.try_sign(message).map_err(SigningError::Sign)?;
                Ok(signature.to_bytes().to_vec())
            }
            // Blinded with the OS RNG, so signing time does not depend on the private key.
            Material::Rsa(key) => key
                .try_sign_with_rng(&mut entropy::rng(), message)
                .map(|s| s.to_vec())
                .map_err(SigningError::Sign),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use keygate_core::jwt::{verify, Jwks, PermissionsClaim, ProviderPolicy};

    use super::*;

    /// RFC 8037 appendix A.1: an Ed25519 private key, and (A.3) its thumbprint.
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    fn policy() -> ProviderPolicy {
        ProviderPolicy::new("keygate", "https://issuer.test", vec!["api".into()])
            .unwrap()
            .with_permissions_claim(PermissionsClaim::Array("permissions".into()))
    }

    fn jwks_of(key: &SigningKey) -> Jwks {
        let doc = serde_json::json!({"keys": [key.public_jwk()]});
        Jwks::parse(doc.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn kid_is_the_rfc_7638_thumbprint() {
        let d: [u8; 32] = URL_SAFE_NO_PAD
            .decode(RFC8037_D)
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::with_material(
            SigningAlg::EdDsa,
            Material::Ed25519(ed25519_dalek::SigningKey::from_bytes(&d)),
        );
        assert_eq!(key.public_jwk().x.as_deref(), Some(RFC8037_X));
        assert_eq!(key.kid(), RFC8037_THUMBPRINT);
    }

    #[test]
    fn jwk_has_the_members_of_its_key_type() {
        let ed = SigningKey::generate(SigningAlg::EdDsa).unwrap();
        let jwk = serde_json::to_value(ed.public_jwk()).unwrap();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none() && jwk.get("y").is_none() && jwk.get("n").is_none());

        let ec = SigningKey::generate(SigningAlg::Es256).unwrap();
        let jwk = serde_json::to_value(ec.public_jwk()).unwrap();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["y"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn each_algorithm_signs_tokens_the_core_verifier_accepts() {
        for alg in [SigningAlg::EdDsa, SigningAlg::Es256] {
            let key = SigningKey::generate(alg).unwrap();
            let claims = serde_json::json!({
                "iss": "https://issuer.test", "aud": "api", "sub": "kgc_1", "exp": 2_000, "iat": 1_000,
                "permissions": ["a"],
            });
            let token = key.sign_jwt("at+jwt", &claims).unwrap();
            let verified = verify(&token, &jwks_of(&key), &policy(), 1_500).unwrap();
            assert_eq!(verified.subject, "kgc_1");
            assert_eq!(verified.kid.as_deref(), Some(key.kid()));
            assert_eq!(verified.permissions, ["a"]);
        }
    }

    #[test]
    fn keys_round_trip_through_pkcs8_with_the_same_kid() {
        for alg in [SigningAlg::EdDsa, SigningAlg::Es256] {
            let key = SigningKey::generate(alg).unwrap();
            let der = key.to_pkcs8_der().unwrap();
            let again = SigningKey::from_pkcs8_der(alg, der.as_bytes()).unwrap();
            assert_eq!(again.kid(), key.kid());
            assert_eq!(again.public_jwk(), key.public_jwk());
        }
        let ed = SigningKey::generate(SigningAlg::EdDsa).unwrap();
        let der = ed.to_pkcs8_der().unwrap();
        assert!(matches!(
            SigningKey::from_pkcs8_der(SigningAlg::Es256, der.as_bytes()),
            Err(SigningError::Decode(SigningAlg::Es256))
        ));
        assert!(SigningKey::from_pkcs8_der(SigningAlg::Rs256, b"junk").is_err());
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = SigningKey::generate(SigningAlg::EdDsa).unwrap();
        let debug = format!("{key:?}");
        assert!(
            debug.contains(key.kid()) && debug.contains("EdDsa"),
            "{debug}"
        );
        let der = key.to_pkcs8_der().unwrap();
        let d = URL_SAFE_NO_PAD.encode(&der.as_bytes()[der.as_bytes().len() - 32..]);
        assert!(!debug.contains(&d));
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in SigningAlg::ALL {
            assert_eq!(SigningAlg::from_name(alg.name()), Some(alg));
        }
        assert_eq!(SigningAlg::from_name("eddsa"), None);
    }
}
