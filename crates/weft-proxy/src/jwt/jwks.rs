//! A JSON Web Key Set (RFC 7517 §5) of public keys, and signature verification with it
//! (aws-lc-rs). Keys are RSA (`n`, `e`), EC on P-256, P-384 and P-521 (`x`, `y`), OKP
//! Ed25519 (`x`) and symmetric `oct` (`k`, for HS*); a key that is malformed or of
//! another type is skipped, as Envoy does, and a set without one usable key is an
//! error.
//!
//! A token is checked against the keys that fit it: same `kid` when both name one, same
//! `alg` when the key names one, a key type the algorithm uses (so an RSA key is never
//! taken as an HMAC secret), and `use` absent or `sig`. The first that verifies wins.

use super::status::JwtError;
use super::token::{Algorithm, Jwt, BASE64URL};
use aws_lc_rs::{hmac, signature};
use base64::Engine;
use serde_json::Value;

/// Why a key set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON.
    #[error("the JWKS is not JSON: {0}")]
    Json(String),
    /// No `keys` array.
    #[error("the JWKS has no \"keys\" array")]
    NoKeys,
    /// No key could be used; why the first one could not.
    #[error("the JWKS has no usable key ({0})")]
    NoUsableKey(String),
}

/// A parsed key set.
#[derive(Debug, Clone)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

/// One usable public key.
#[derive(Debug, Clone)]
struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: Key,
}

#[derive(Debug, Clone)]
enum Key {
    /// Big-endian modulus and exponent, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `04 || x || y`.
    Ec { curve: Curve, point: Vec<u8> },
    /// The 32-byte public key.
    Ed25519(Vec<u8>),
    /// An HMAC secret.
    Oct(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn from_name(crv: &str) -> Option<Curve> {
        match crv {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            "P-521" => Some(Curve::P521),
            _ => None,
        }
    }

    /// Its ECDSA verification, with the hash its JWS algorithm uses.
    fn algorithm(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }

    /// Bytes of one coordinate.
    fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

impl Jwks {
    /// Parses a JWKS document.
    pub fn parse(text: &[u8]) -> Result<Jwks, JwksError> {
        let doc: Value =
            serde_json::from_slice(text).map_err(|e| JwksError::Json(e.to_string()))?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwksError::NoKeys);
        };
        let mut keys = Vec::new();
        let mut first_problem = None;
        for (i, entry) in entries.iter().enumerate() {
            match jwk(entry) {
                Ok(k) => keys.push(k),
                Err(why) => {
                    tracing::debug!(key = i, why, "skipping a JWKS key");
                    first_problem.get_or_insert_with(|| format!("keys[{i}]: {why}"));
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey(
                first_problem.unwrap_or_else(|| "it is empty".into()),
            ));
        }
        Ok(Jwks { keys })
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds no key (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies the token's signature with the keys that fit it.
    pub fn verify(&self, jwt: &Jwt) -> Result<(), JwtError> {
        let mut tried = false;
        for k in self.keys.iter().filter(|k| k.fits(jwt)) {
            tried = true;
            if k.key.verifies(jwt.alg, jwt.signing_input(), &jwt.signature) {
                return Ok(());
            }
        }
        Err(if tried {
            JwtError::VerificationFail
        } else {
            JwtError::NoMatchingKey
        })
    }
}

impl Jwk {
    fn fits(&self, jwt: &Jwt) -> bool {
        let kid_ok = match (&self.kid, &jwt.kid) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let alg_ok = self.alg.as_deref().is_none_or(|a| a == jwt.alg.name());
        kid_ok && alg_ok && self.key.used_by(jwt.alg)
    }
}

impl Key {
    fn used_by(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match (self, alg) {
            (Key::Rsa { .. }, Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512) => true,
            (Key::Ec { curve, .. }, _) => {
                matches!(
                    (curve, alg),
                    (Curve::P256, Es256) | (Curve::P384, Es384) | (Curve::P521, Es512)
                )
            }
            (Key::Ed25519(_), EdDsa) => true,
            (Key::Oct(_), Hs256 | Hs384 | Hs512) => true,
            _ => false,
        }
    }

    /// Whether `sig` signs `msg` under `alg` with this key (which [`Key::used_by`] it).
    fn verifies(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
        use Algorithm::*;
        match self {
            Key::Rsa { n, e } => {
                let params = match alg {
                    Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                let components = signature::RsaPublicKeyComponents { n, e };
                components.verify(params, msg, sig).is_ok()
            }
            Key::Ec { curve, point } => signature::UnparsedPublicKey::new(curve.algorithm(), point)
                .verify(msg, sig)
                .is_ok(),
            Key::Ed25519(x) => signature::UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(msg, sig)
                .is_ok(),
            Key::Oct(k) => {
                let algorithm = match alg {
                    Hs256 => hmac::HMAC_SHA256,
                    Hs384 => hmac::HMAC_SHA384,
                    Hs512 => hmac::HMAC_SHA512,
                    _ => return false,
                };
                hmac::verify(&hmac::Key::new(algorithm, k), msg, sig).is_ok()
            }
        }
    }
}

/// One key of the set, or why it cannot be used.
fn jwk(entry: &Value) -> Result<Jwk, &'static str> {
    let field = |name: &str| -> Result<Option<&str>, &'static str> {
        match entry.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err("a field that must be a string is not"),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, &'static str> {
        let text = field(name)?.ok_or("a key parameter is missing")?;
        BASE64URL
            .decode(text)
            .map_err(|_| "a key parameter is not base64url")
    };
    if !entry.is_object() {
        return Err("not a JSON object");
    }
    if field("use")?.is_some_and(|u| u != "sig") {
        return Err("not a signing key (use is not \"sig\")");
    }
    let key = match field("kty")?.ok_or("kty is missing")? {
        "RSA" => {
            let (n, e) = (bytes("n")?, bytes("e")?);
            let (n, e) = (without_leading_zeros(&n), without_leading_zeros(&e));
            if n.is_empty() || e.is_empty() {
                return Err("an RSA key needs n and e");
            }
            Key::Rsa {
                n: n.to_vec(),
                e: e.to_vec(),
            }
        }
        "EC" => {
            let curve = Curve::from_name(field("crv")?.unwrap_or(""))
                .ok_or("an EC key's crv must be P-256, P-384 or P-521")?;
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != curve.size() || y.len() != curve.size() {
                return Err("an EC key's x or y has the wrong length for its curve");
            }
            let mut point = Vec::with_capacity(1 + 2 * curve.size());
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            // Refused now rather than at each verification: a point off the curve.
            signature::UnparsedPublicKey::new(curve.algorithm(), &point)
                .parse()
                .map_err(|_| "an EC key's point is not on its curve")?;
            Key::Ec { curve, point }
        }
        "OKP" => {
            if field("crv")? != Some("Ed25519") {
                return Err("an OKP key's crv must be Ed25519");
            }
            let x = bytes("x")?;
            if x.len() != signature::ED25519_PUBLIC_KEY_LEN {
                return Err("an Ed25519 key's x must be 32 bytes");
            }
            Key::Ed25519(x)
        }
        "oct" => {
            let k = bytes("k")?;
            if k.is_empty() {
                return Err("an oct key's k is empty");
            }
            Key::Oct(k)
        }
        _ => return Err("kty is not RSA, EC, OKP or oct"),
    };
    Ok(Jwk {
        kid: field("kid")?.map(str::to_string),
        alg: field("alg")?.map(str::to_string),
        key,
    })
}

fn without_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    fn b64(b: &[u8]) -> String {
        BASE64URL.encode(b)
    }

    /// A token signed by `sign` over `header.payload`.
    fn signed(header: Value, payload: Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> Jwt {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let sig = sign(input.as_bytes());
        Jwt::parse(&format!("{input}.{}", b64(&sig))).expect("parses")
    }

    fn es256() -> (EcdsaKeyPair, Value) {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec");
        let public = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec1",
            "x": b64(&public[1..33]), "y": b64(&public[33..])});
        (pair, jwk)
    }

    fn es_sign(pair: &EcdsaKeyPair) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
        move |m| {
            pair.sign(&SystemRandom::new(), m)
                .expect("sign")
                .as_ref()
                .to_vec()
        }
    }

    #[test]
    fn ec_ed25519_and_hmac_keys_verify_what_they_signed() {
        let (pair, ec) = es256();
        let ed = Ed25519KeyPair::generate().expect("ed25519");
        let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())});
        let secret = b"a shared secret of enough length";
        let oct = json!({"kty": "oct", "k": b64(secret), "alg": "HS256"});
        let jwks =
            Jwks::parse(json!({"keys": [ec, ed_jwk, oct]}).to_string().as_bytes()).expect("jwks");
        assert_eq!(jwks.len(), 3);
        let es = signed(
            json!({"alg": "ES256", "kid": "ec1"}),
            json!({}),
            es_sign(&pair),
        );
        assert_eq!(jwks.verify(&es), Ok(()));
        let eddsa = signed(json!({"alg": "EdDSA"}), json!({"sub": "x"}), |m| {
            ed.sign(m).as_ref().to_vec()
        });
        assert_eq!(jwks.verify(&eddsa), Ok(()));
        let hs = signed(json!({"alg": "HS256"}), json!({}), |m| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), m)
                .as_ref()
                .to_vec()
        });
        assert_eq!(jwks.verify(&hs), Ok(()));
        // Another kid, or an algorithm no key serves: no key fits.
        let other_kid = signed(
            json!({"alg": "ES256", "kid": "ec2"}),
            json!({}),
            es_sign(&pair),
        );
        assert_eq!(jwks.verify(&other_kid), Err(JwtError::NoMatchingKey));
        let rs = signed(json!({"alg": "RS256"}), json!({}), |_| vec![1; 256]);
        assert_eq!(jwks.verify(&rs), Err(JwtError::NoMatchingKey));
        // The right key, the wrong signature.
        let mut forged = es.clone();
        forged.signature[3] ^= 1;
        assert_eq!(jwks.verify(&forged), Err(JwtError::VerificationFail));
        let mut truncated = es;
        truncated.signature.clear();
        assert_eq!(jwks.verify(&truncated), Err(JwtError::VerificationFail));
    }

    #[test]
    fn rsa_keys_verify_rs_and_ps() {
        let pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
        let public =
            aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let jwk = json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e), "use": "sig"});
        let jwks = Jwks::parse(json!({"keys": [jwk]}).to_string().as_bytes()).expect("jwks");
        for (alg, encoding) in [
            (
                "RS256",
                &signature::RSA_PKCS1_SHA256 as &'static dyn signature::RsaEncoding,
            ),
            ("RS512", &signature::RSA_PKCS1_SHA512),
            ("PS256", &signature::RSA_PSS_SHA256),
            ("PS384", &signature::RSA_PSS_SHA384),
        ] {
            let jwt = signed(json!({"alg": alg}), json!({}), |m| {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &SystemRandom::new(), m, &mut sig)
                    .expect("sign");
                sig
            });
            assert_eq!(jwks.verify(&jwt), Ok(()), "{alg}");
        }
        // An RSA key is never an HMAC secret.
        let hs = signed(json!({"alg": "HS256"}), json!({}), |_| vec![0; 32]);
        assert_eq!(jwks.verify(&hs), Err(JwtError::NoMatchingKey));
    }

    #[test]
    fn malformed_key_sets_and_keys() {
        assert!(matches!(Jwks::parse(b"not json"), Err(JwksError::Json(_))));
        assert_eq!(Jwks::parse(b"{}").err(), Some(JwksError::NoKeys));
        assert_eq!(
            Jwks::parse(br#"{"keys": {}}"#).err(),
            Some(JwksError::NoKeys)
        );
        assert!(matches!(
            Jwks::parse(br#"{"keys": []}"#),
            Err(JwksError::NoUsableKey(_))
        ));
        let (_, good) = es256();
        let bad_keys = [
            json!(1),
            json!({}),
            json!({"kty": 1}),
            json!({"kty": "XYZ"}),
            json!({"kty": "RSA", "n": "AQAB"}),
            json!({"kty": "RSA", "n": "AAAA", "e": "AQAB"}),
            json!({"kty": "RSA", "n": "!!", "e": "AQAB"}),
            json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}),
            json!({"kty": "EC", "crv": "secp256k1", "x": good["x"], "y": good["y"]}),
            json!({"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["x"]}),
            json!({"kty": "OKP", "crv": "X25519", "x": b64(&[0; 32])}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[0; 31])}),
            json!({"kty": "oct", "k": ""}),
            json!({"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["y"], "use": "enc"}),
            json!({"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["y"], "kid": 5}),
        ];
        for bad in &bad_keys {
            let doc = json!({"keys": [bad]}).to_string();
            assert!(
                matches!(Jwks::parse(doc.as_bytes()), Err(JwksError::NoUsableKey(_))),
                "{bad}"
            );
        }
        // Bad keys beside a good one are skipped.
        let mut all = bad_keys.to_vec();
        all.push(good);
        let jwks = Jwks::parse(json!({"keys": all}).to_string().as_bytes()).expect("one good");
        assert_eq!(jwks.len(), 1);
    }
}
