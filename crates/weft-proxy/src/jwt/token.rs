//! A JWT (RFC 7519) in JWS compact serialization (RFC 7515 §7.1): three base64url parts,
//! header, payload and signature, joined by dots. Parsing checks the shape and the types
//! of the registered claims; nothing here is trusted until a key verifies the signature
//! ([`super::jwks`]).

use super::status::JwtError;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};

/// Base64url (RFC 4648 §5); padding is not written, and tolerated when read.
pub const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A JWS signature algorithm (RFC 7518 §3; EdDSA with Ed25519, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// ECDSA on P-521 with SHA-512.
    Es512,
    /// Ed25519.
    EdDsa,
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
}

impl Algorithm {
    const NAMES: [(&'static str, Algorithm); 13] = [
        ("RS256", Algorithm::Rs256),
        ("RS384", Algorithm::Rs384),
        ("RS512", Algorithm::Rs512),
        ("PS256", Algorithm::Ps256),
        ("PS384", Algorithm::Ps384),
        ("PS512", Algorithm::Ps512),
        ("ES256", Algorithm::Es256),
        ("ES384", Algorithm::Es384),
        ("ES512", Algorithm::Es512),
        ("EdDSA", Algorithm::EdDsa),
        ("HS256", Algorithm::Hs256),
        ("HS384", Algorithm::Hs384),
        ("HS512", Algorithm::Hs512),
    ];

    /// The algorithm a JOSE `alg` names, if Weft verifies it (`none` it does not).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
    }

    /// Its JOSE name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("", |(n, _)| n)
    }
}

/// A parsed, unverified token.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// `alg` of the header.
    pub alg: Algorithm,
    /// `kid` of the header.
    pub kid: Option<String>,
    /// The payload, every claim as sent.
    pub payload: Map<String, Value>,
    /// `iss`.
    pub iss: Option<String>,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud`, a single string read as a list of one.
    pub audiences: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub exp: Option<u64>,
    /// `nbf`, seconds since the epoch.
    pub nbf: Option<u64>,
    /// The decoded signature.
    pub signature: Vec<u8>,
    /// The token as received.
    token: String,
    /// Where the signature part starts (after the second dot).
    signature_at: usize,
}

impl Jwt {
    /// Parses a compact JWS; any malformation is an error, never a panic.
    pub fn parse(token: &str) -> Result<Jwt, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::BadFormat);
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(JwtError::BadFormat);
        }
        let header = json_object(header).ok_or(JwtError::HeaderParse)?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => {
                Algorithm::from_name(name).ok_or(JwtError::HeaderUnsupportedAlg)?
            }
            _ => return Err(JwtError::HeaderBadAlg),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(JwtError::HeaderBadKid),
        };
        if header.contains_key("crit") {
            return Err(JwtError::HeaderCrit);
        }
        let signature_bytes = BASE64URL
            .decode(signature)
            .map_err(|_| JwtError::SignatureParse)?;
        let claims = json_object(payload).ok_or(JwtError::PayloadParse)?;
        let string = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(JwtError::ClaimNotString),
        };
        let (iss, sub) = (string("iss")?, string("sub")?);
        string("jti")?;
        let audiences = match claims.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| a.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(JwtError::AudienceNotString)?,
            Some(_) => return Err(JwtError::AudienceNotString),
        };
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(secs), _) => Ok(Some(secs)),
                // NumericDate may have a fraction (RFC 7519 §2); whole seconds suffice.
                (None, Some(f)) if f >= 0.0 && f.is_finite() => Ok(Some(f as u64)),
                _ => Err(JwtError::TimeNotNumber),
            },
            Some(_) => Err(JwtError::TimeNotNumber),
        };
        let (exp, nbf) = (time("exp")?, time("nbf")?);
        time("iat")?;
        Ok(Jwt {
            alg,
            kid,
            payload: claims,
            iss,
            sub,
            audiences,
            exp,
            nbf,
            signature: signature_bytes,
            signature_at: token.len() - signature.len(),
            token: token.to_string(),
        })
    }

    /// What the signature covers: `header.payload`, as received.
    pub fn signing_input(&self) -> &[u8] {
        &self.token.as_bytes()[..self.signature_at - 1]
    }

    /// The payload part as received (base64url), for `forward_payload_header`.
    pub fn payload_base64url(&self) -> &str {
        let signed = &self.token[..self.signature_at - 1];
        signed.split_once('.').map_or("", |(_, p)| p)
    }
}

/// A base64url part holding a JSON object.
fn json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = BASE64URL.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        BASE64URL.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    #[test]
    fn parses_claims_and_keeps_the_signed_part() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"https://issuer","sub":"alice","aud":["a","b"],"exp":2000000000,"nbf":1.5,"x":{"y":1}}"#,
        );
        let jwt = Jwt::parse(&t).expect("parses");
        assert_eq!(jwt.alg, Algorithm::Rs256);
        assert_eq!(jwt.kid.as_deref(), Some("k1"));
        assert_eq!(jwt.iss.as_deref(), Some("https://issuer"));
        assert_eq!(jwt.sub.as_deref(), Some("alice"));
        assert_eq!(jwt.audiences, ["a", "b"]);
        assert_eq!((jwt.exp, jwt.nbf), (Some(2000000000), Some(1)));
        assert_eq!(jwt.signature, b"sig");
        let dot = t.rfind('.').expect("dot");
        assert_eq!(jwt.signing_input(), &t.as_bytes()[..dot]);
        assert_eq!(
            jwt.payload_base64url(),
            t.split('.').nth(1).expect("payload")
        );
        assert_eq!(jwt.payload["x"]["y"], 1);
        let single = Jwt::parse(&token(r#"{"alg":"ES256"}"#, r#"{"aud":"only"}"#)).expect("ok");
        assert_eq!(single.audiences, ["only"]);
        for (name, alg) in Algorithm::NAMES {
            assert_eq!(Algorithm::from_name(name), Some(alg));
            assert_eq!(alg.name(), name);
        }
    }

    #[test]
    fn malformed_tokens_are_errors() {
        use JwtError::*;
        let ok_header = r#"{"alg":"RS256"}"#;
        let cases: Vec<(String, JwtError)> = vec![
            (String::new(), BadFormat),
            ("a.b".into(), BadFormat),
            ("a.b.c.d".into(), BadFormat),
            ("..".into(), BadFormat),
            (format!("{}..{}", b64(ok_header), b64("s")), BadFormat),
            ("!!!.e30.c2ln".into(), HeaderParse),
            (token("[1]", "{}"), HeaderParse),
            (token("{", "{}"), HeaderParse),
            (token("{}", "{}"), HeaderBadAlg),
            (token(r#"{"alg":7}"#, "{}"), HeaderBadAlg),
            (token(r#"{"alg":"none"}"#, "{}"), HeaderUnsupportedAlg),
            (token(r#"{"alg":"rs256"}"#, "{}"), HeaderUnsupportedAlg),
            (token(r#"{"alg":"RS256","kid":1}"#, "{}"), HeaderBadKid),
            (token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}"), HeaderCrit),
            (
                format!("{}.{}.@@", b64(ok_header), b64("{}")),
                SignatureParse,
            ),
            (token(ok_header, "not json"), PayloadParse),
            (token(ok_header, "\"string\""), PayloadParse),
            (format!("{}.%%.{}", b64(ok_header), b64("s")), PayloadParse),
            (token(ok_header, r#"{"iss":1}"#), ClaimNotString),
            (token(ok_header, r#"{"sub":{}}"#), ClaimNotString),
            (token(ok_header, r#"{"jti":[]}"#), ClaimNotString),
            (token(ok_header, r#"{"aud":1}"#), AudienceNotString),
            (token(ok_header, r#"{"aud":["a",2]}"#), AudienceNotString),
            (token(ok_header, r#"{"exp":"soon"}"#), TimeNotNumber),
            (token(ok_header, r#"{"nbf":-1}"#), TimeNotNumber),
            (token(ok_header, r#"{"iat":null}"#), TimeNotNumber),
        ];
        for (t, want) in cases {
            assert_eq!(Jwt::parse(&t).err(), Some(want), "{t:?}");
        }
        // Deeply nested JSON is refused by the parser's depth limit, not the stack.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            Jwt::parse(&token(ok_header, &deep)).err(),
            Some(PayloadParse)
        );
        // Any bytes at all: an error or a token, never a panic.
        for i in 0..2000u32 {
            let junk: String = (0..(i % 97))
                .map(|j| (b"a.-_=Zz09{}\"\xff"[((i * 31 + j * 7) % 13) as usize]) as char)
                .collect();
            let _ = Jwt::parse(&junk);
        }
    }
}
