//! Compact JWS with HMAC-SHA256 (RFC 7515, RFC 7519): the form of Weft's tokens, so
//! that clients that expect a JWT (gRPC's JWT call credentials read `exp`) accept them.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Signs `claims`.
pub fn sign(key: &hmac::Key, claims: &impl Serialize) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialize");
    let mut token = URL_SAFE_NO_PAD.encode(HEADER);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let tag = hmac::sign(key, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    token
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("not a token")]
    Malformed,
    /// Another algorithm than HS256.
    #[error("unsupported token algorithm")]
    Algorithm,
    /// The signature does not verify.
    #[error("bad token signature")]
    Signature,
}

/// The claims of `token` if its signature verifies.
pub fn verify<C: DeserializeOwned>(key: &hmac::Key, token: &str) -> Result<C, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed);
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| JwtError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(JwtError::Algorithm);
    }
    let signed = &token[..token.len() - signature.len() - 1];
    hmac::verify(key, signed.as_bytes(), &decode(signature)?).map_err(|_| JwtError::Signature)?;
    serde_json::from_slice(&decode(payload)?).map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct C {
        sub: String,
        exp: u64,
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let claims = C {
            sub: "a".into(),
            exp: 9,
        };
        let token = sign(&key, &claims);
        assert_eq!(verify::<C>(&key, &token), Ok(claims));
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        assert_eq!(verify::<C>(&other, &token), Err(JwtError::Signature));
        let forged_payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","exp":9}"#);
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(
            verify::<C>(&key, &parts.join(".")),
            Err(JwtError::Signature)
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(verify::<C>(&key, &none), Err(JwtError::Algorithm));
        assert_eq!(verify::<C>(&key, "abc"), Err(JwtError::Malformed));
    }
}
