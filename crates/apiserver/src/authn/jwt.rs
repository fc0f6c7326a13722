//! Compact JWS tokens signed with ES256 (ECDSA P-256, SHA-256) over `ring`: PEM keys, signing,
//! signature checks and the time checks of upstream's ServiceAccount tokens. Sans-IO: the
//! caller passes keys, tokens and `now`. Start at [`SigningKey::sign`] and [`verify`].

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::{Deserialize, Serialize};

/// Upstream's `jwt.DefaultLeeway`: expiry and not-before are checked with one minute of slack.
pub const LEEWAY_SECONDS: i64 = 60;

/// The DER SubjectPublicKeyInfo header of a P-256 public key (id-ecPublicKey, prime256v1),
/// followed by the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a key could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no PEM block found")]
    NoPem,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("not a PKCS#8 ECDSA P-256 private key (only ES256 keys are supported): {0}")]
    Private(String),
    #[error("not an ECDSA P-256 public key (only ES256 keys are supported)")]
    Public,
    #[error("PEM block {0:?} is neither a PUBLIC KEY nor a PRIVATE KEY")]
    Kind(String),
}

/// Why a token was refused (texts as upstream's go-jose and serviceaccount validator word them).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("compact JWS format must have three parts")]
    Format,
    #[error("illegal base64 data in token")]
    Base64,
    #[error("malformed token: {0}")]
    Json(String),
    #[error("unexpected signature algorithm {0:?}; expected [\"ES256\"]")]
    Algorithm(String),
    #[error("error in cryptographic primitive")]
    Signature,
    #[error("service account token has expired")]
    Expired,
    #[error("service account token is not valid yet")]
    NotValidYet,
    #[error("service account token is issued in the future")]
    IssuedInFuture,
    #[error("signing failed")]
    Sign,
}

/// A `ref` of upstream's private claims: a name and a uid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// The `kubernetes.io` private claim of a ServiceAccount token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default)]
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
}

/// The claims of a ServiceAccount token (RFC 7519 registered claims + `kubernetes.io`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    #[serde(
        rename = "kubernetes.io",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kubernetes: Option<KubernetesClaims>,
}

/// `aud` may be a single string or an array (RFC 7519 §4.1.3).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Aud::deserialize(d)? {
        Aud::One(s) => vec![s],
        Aud::Many(v) => v,
    })
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    kid: String,
}

/// A private key tokens are signed with (`--service-account-signing-key-file`).
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: VerifyingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(kid {})", self.public.kid)
    }
}

impl SigningKey {
    /// Read a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) ECDSA P-256 key.
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let blocks = pem_blocks(pem)?;
        match blocks
            .into_iter()
            .find(|(kind, _)| *kind == SectionKind::PrivateKey)
        {
            Some((_, der)) => SigningKey::from_pkcs8(&der),
            None => Err(KeyError::Private("no PRIVATE KEY block".into())),
        }
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| KeyError::Private(e.to_string()))?;
        let public = VerifyingKey::from_point(pair.public_key().as_ref())?;
        Ok(SigningKey { pair, public })
    }

    /// A fresh key and its PKCS#8 PEM (for tests and tools that write key files).
    pub fn generate() -> Result<(SigningKey, String), KeyError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|e| KeyError::Private(e.to_string()))?;
        let key = SigningKey::from_pkcs8(doc.as_ref())?;
        Ok((key, to_pem("PRIVATE KEY", doc.as_ref())))
    }

    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    /// The compact JWS of `claims`, with the key id in the header.
    pub fn sign(&self, claims: &Claims) -> Result<String, JwtError> {
        let header = Header {
            alg: "ES256".into(),
            kid: self.public.kid.clone(),
        };
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(|_| JwtError::Sign)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|_| JwtError::Sign)?)
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| JwtError::Sign)?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

/// A public key tokens are verified with (`--service-account-key-file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey {
    /// The uncompressed P-256 point (65 bytes).
    point: Vec<u8>,
    /// Upstream's key id: base64url(SHA-256(DER SubjectPublicKeyInfo)).
    pub kid: String,
}

impl VerifyingKey {
    fn from_point(point: &[u8]) -> Result<VerifyingKey, KeyError> {
        if point.len() != 65 || point[0] != 4 {
            return Err(KeyError::Public);
        }
        let spki = [&P256_SPKI_PREFIX[..], point].concat();
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(VerifyingKey {
            point: point.to_vec(),
            kid,
        })
    }

    /// A DER SubjectPublicKeyInfo of a P-256 key.
    pub fn from_spki(der: &[u8]) -> Result<VerifyingKey, KeyError> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) => VerifyingKey::from_point(point),
            None => Err(KeyError::Public),
        }
    }

    /// Every key in a PEM file: `PUBLIC KEY` blocks, and the public half of `PRIVATE KEY`
    /// blocks (upstream accepts both in `--service-account-key-file`).
    pub fn all_from_pem(pem: &str) -> Result<Vec<VerifyingKey>, KeyError> {
        pem_blocks(pem)?
            .into_iter()
            .map(|(kind, der)| match kind {
                SectionKind::PublicKey => VerifyingKey::from_spki(&der),
                SectionKind::PrivateKey => SigningKey::from_pkcs8(&der).map(|k| k.public),
                other => Err(KeyError::Kind(label_of(other))),
            })
            .collect()
    }

    /// The key as a `PUBLIC KEY` PEM block.
    pub fn to_pem(&self) -> String {
        to_pem("PUBLIC KEY", &[&P256_SPKI_PREFIX[..], &self.point].concat())
    }
}

/// The `(kind, DER)` of every PEM block in `text` rustls knows the label of (others skipped).
fn pem_blocks(text: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, KeyError> {
    let blocks = <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KeyError::Pem(e.to_string()))?;
    if blocks.is_empty() {
        return Err(KeyError::NoPem);
    }
    Ok(blocks)
}

/// The label a PEM block of `kind` carries (for the error naming a block of the wrong kind).
fn label_of(kind: SectionKind) -> String {
    match kind {
        SectionKind::Certificate => "CERTIFICATE".into(),
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY".into(),
        SectionKind::EcPrivateKey => "EC PRIVATE KEY".into(),
        SectionKind::Crl => "X509 CRL".into(),
        SectionKind::Csr => "CERTIFICATE REQUEST".into(),
        other => format!("{other:?}"),
    }
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The claims of a token, decoded without checking the signature (to read `iss` before
/// choosing whether the token is this issuer's, as upstream's `hasCorrectIssuer`).
pub fn peek_claims(token: &str) -> Result<Claims, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [_, payload, _] = parts[..] else {
        return Err(JwtError::Format);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Base64)?;
    serde_json::from_slice(&bytes).map_err(|e| JwtError::Json(e.to_string()))
}

/// The claims of `token` if one of `keys` signed it (the key named by `kid` first; upstream
/// tries every key).
pub fn verify(token: &str, keys: &[VerifyingKey]) -> Result<Claims, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, sig] = parts[..] else {
        return Err(JwtError::Format);
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Base64);
    let (header_bytes, sig) = (decode(header)?, decode(sig)?);
    let h: Header =
        serde_json::from_slice(&header_bytes).map_err(|e| JwtError::Json(e.to_string()))?;
    if h.alg != "ES256" {
        return Err(JwtError::Algorithm(h.alg));
    }
    let input = &token.as_bytes()[..header.len() + 1 + payload.len()];
    let signed = keys.iter().any(|k| {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &k.point)
            .verify(input, &sig)
            .is_ok()
    });
    if !signed {
        return Err(JwtError::Signature);
    }
    let claims = decode(payload)?;
    serde_json::from_slice(&claims).map_err(|e| JwtError::Json(e.to_string()))
}

/// Upstream's `jwt.Claims.Validate` with [`LEEWAY_SECONDS`]: `now` (Unix seconds) must be
/// before expiry and not before `nbf`, and `iat` not in the future.
pub fn check_times(claims: &Claims, now: i64) -> Result<(), JwtError> {
    if claims.nbf.is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err(JwtError::NotValidYet);
    }
    if claims.exp.is_some_and(|exp| now - LEEWAY_SECONDS > exp) {
        return Err(JwtError::Expired);
    }
    if claims.iat.is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
        return Err(JwtError::IssuedInFuture);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: "https://kubernetes.default.svc.cluster.local".into(),
            sub: "system:serviceaccount:team:app".into(),
            aud: vec!["https://kubernetes.default.svc.cluster.local".into()],
            exp: Some(2_000),
            iat: Some(1_000),
            nbf: Some(1_000),
            jti: "j1".into(),
            kubernetes: Some(KubernetesClaims {
                namespace: "team".into(),
                serviceaccount: Ref {
                    name: "app".into(),
                    uid: "u1".into(),
                },
                pod: None,
                node: None,
            }),
        }
    }

    #[test]
    fn signs_and_verifies_and_round_trips_the_pem() {
        let (key, pem) = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(again.public(), key.public());
        let public = VerifyingKey::all_from_pem(&key.public().to_pem()).unwrap();
        assert_eq!(public, vec![key.public().clone()]);
        // The private key file also serves as a public key file.
        assert_eq!(VerifyingKey::all_from_pem(&pem).unwrap(), public);
        let token = key.sign(&claims()).unwrap();
        assert_eq!(verify(&token, &public).unwrap(), claims());
        assert_eq!(peek_claims(&token).unwrap(), claims());
        let header = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.public().kid.as_str());
        assert_eq!(key.public().kid.len(), 43, "base64url of a SHA-256");
    }

    #[test]
    fn a_tampered_payload_or_another_key_is_refused() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let token = key.sign(&claims()).unwrap();
        let mut forged = claims();
        forged.sub = "system:serviceaccount:kube-system:admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        let keys = [key.public().clone()];
        assert_eq!(verify(&tampered, &keys), Err(JwtError::Signature));
        assert_eq!(
            verify(&token, &[other.public().clone()]),
            Err(JwtError::Signature)
        );
        assert_eq!(verify(&token, &[]), Err(JwtError::Signature));
    }

    #[test]
    fn malformed_tokens_are_errors_not_panics() {
        let (key, _) = SigningKey::generate().unwrap();
        let keys = [key.public().clone()];
        for bad in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!.??.**",
            "e30.e30.e30",
            "..",
            "é.é.é",
        ] {
            assert!(verify(bad, &keys).is_err(), "{bad:?}");
            let _ = peek_claims(bad);
        }
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap())
        );
        assert_eq!(
            verify(&none_alg, &keys),
            Err(JwtError::Algorithm("none".into()))
        );
        assert!(SigningKey::from_pem("not a key").is_err());
        assert_eq!(
            VerifyingKey::all_from_pem(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            ),
            Err(KeyError::Kind("CERTIFICATE".into()))
        );
    }

    #[test]
    fn expiry_and_not_before_use_upstreams_leeway() {
        let c = claims();
        assert_eq!(check_times(&c, 1_500), Ok(()));
        assert_eq!(check_times(&c, 2_000 + LEEWAY_SECONDS), Ok(()));
        assert_eq!(
            check_times(&c, 2_001 + LEEWAY_SECONDS),
            Err(JwtError::Expired)
        );
        assert_eq!(check_times(&c, 1_000 - LEEWAY_SECONDS), Ok(()));
        assert_eq!(
            check_times(
                &Claims {
                    iat: None,
                    ..claims()
                },
                999 - LEEWAY_SECONDS
            ),
            Err(JwtError::NotValidYet)
        );
        assert_eq!(
            check_times(
                &Claims {
                    nbf: None,
                    ..claims()
                },
                999 - LEEWAY_SECONDS
            ),
            Err(JwtError::IssuedInFuture)
        );
    }

    #[test]
    fn audience_may_be_a_single_string() {
        let c: Claims = serde_json::from_str(r#"{"iss":"i","aud":"api"}"#).unwrap();
        assert_eq!(c.aud, vec!["api".to_string()]);
    }
}
