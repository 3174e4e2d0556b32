//! One JWT provider (`JwtProvider`): where its tokens are, the issuer and audiences it
//! accepts, its clock skew, its keys, and what a token it verified leaves behind.
//!
//! A token is checked in Envoy's order, cheapest first: issuer, time (`exp`, `nbf`,
//! with the skew), audiences, and only then the keys (which may mean a fetch) and the
//! signature.

use super::extract::Location;
use super::jwks::Jwks;
use super::remote::RemoteJwks;
use super::status::JwtError;
use super::token::Jwt;
use crate::stream_info::Downstream;
use http::HeaderName;
use std::sync::Arc;

/// Envoy's default `clock_skew_seconds`.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;

/// Where a provider's keys come from.
#[derive(Debug)]
pub enum Keys {
    /// `local_jwks`, read when the configuration was compiled.
    Local(Arc<Jwks>),
    /// `remote_jwks`, fetched through a cluster.
    Remote(RemoteJwks),
}

/// A compiled `JwtProvider`.
#[derive(Debug)]
pub struct Provider {
    /// Its name in `providers`.
    pub name: String,
    /// `issuer`; empty: any issuer.
    pub issuer: String,
    /// `audiences`; empty: any audience.
    pub audiences: Vec<String>,
    /// `require_expiration`: a token without `exp` is refused.
    pub require_expiration: bool,
    /// `clock_skew_seconds`.
    pub clock_skew: u64,
    /// Where its tokens are looked for.
    pub locations: Vec<Location>,
    /// `forward`: keep the token in the request sent upstream.
    pub forward: bool,
    /// `forward_payload_header`: the verified payload (base64url) is sent upstream here.
    pub forward_payload_header: Option<HeaderName>,
    /// `pad_forward_payload_header`: that payload with base64 padding.
    pub pad_forward_payload_header: bool,
    /// `payload_in_metadata`: the key of the verified payload in the filter's metadata.
    pub payload_in_metadata: Option<String>,
    /// Its keys.
    pub keys: Keys,
}

impl Provider {
    /// Whether a token issued by `iss` may be this provider's.
    pub fn accepts_issuer(&self, iss: Option<&str>) -> bool {
        self.issuer.is_empty() || iss == Some(self.issuer.as_str())
    }

    /// Checks what the payload says, in Envoy's order: issuer, time, then audiences
    /// (`audiences`, from a `provider_and_audiences` requirement, replaces the
    /// provider's own). `now` is in seconds since the epoch.
    pub fn check_claims(
        &self,
        jwt: &Jwt,
        audiences: Option<&[String]>,
        now: u64,
    ) -> Result<(), JwtError> {
        if !self.accepts_issuer(jwt.iss.as_deref()) {
            return Err(JwtError::UnknownIssuer);
        }
        if jwt
            .nbf
            .is_some_and(|nbf| now.saturating_add(self.clock_skew) < nbf)
        {
            return Err(JwtError::NotYetValid);
        }
        match jwt.exp {
            Some(exp) if now > exp.saturating_add(self.clock_skew) => {
                return Err(JwtError::Expired)
            }
            None if self.require_expiration => return Err(JwtError::Expired),
            _ => {}
        }
        if !audience_allowed(audiences.unwrap_or(&self.audiences), &jwt.audiences) {
            return Err(JwtError::AudienceNotAllowed);
        }
        Ok(())
    }

    /// Verifies the signature with the provider's keys, fetching them if they are
    /// remote and not at hand (for the request on `downstream`).
    pub async fn verify_signature(
        &self,
        jwt: &Jwt,
        downstream: &Arc<Downstream>,
    ) -> Result<(), JwtError> {
        match &self.keys {
            Keys::Local(jwks) => jwks.verify(jwt),
            Keys::Remote(remote) => remote.keys(downstream).await?.verify(jwt),
        }
    }
}

/// Whether one of the token's audiences is allowed (all are when none is configured).
/// As Envoy compares them: without an `http://` or `https://` scheme and without a
/// trailing slash.
fn audience_allowed(allowed: &[String], token: &[String]) -> bool {
    fn bare(aud: &str) -> &str {
        let aud = aud
            .strip_prefix("https://")
            .or_else(|| aud.strip_prefix("http://"))
            .unwrap_or(aud);
        aud.strip_suffix('/').unwrap_or(aud)
    }
    allowed.is_empty()
        || token
            .iter()
            .any(|t| allowed.iter().any(|a| bare(a) == bare(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::token::BASE64URL;
    use base64::Engine;

    fn provider(issuer: &str, audiences: &[&str]) -> Provider {
        Provider {
            name: "p".into(),
            issuer: issuer.into(),
            audiences: audiences.iter().map(|s| s.to_string()).collect(),
            require_expiration: false,
            clock_skew: DEFAULT_CLOCK_SKEW_SECONDS,
            locations: Location::defaults(),
            forward: false,
            forward_payload_header: None,
            pad_forward_payload_header: false,
            payload_in_metadata: None,
            keys: Keys::Local(Arc::new(
                Jwks::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).expect("jwks"),
            )),
        }
    }

    fn jwt(payload: &str) -> Jwt {
        let part = |s: &str| BASE64URL.encode(s);
        Jwt::parse(&format!(
            "{}.{}.{}",
            part(r#"{"alg":"HS256"}"#),
            part(payload),
            part("s")
        ))
        .expect("parses")
    }

    #[test]
    fn issuer_time_and_audience_in_order() {
        let now = 1_000_000;
        let p = provider("iss", &["https://api.example.com/"]);
        let check = |payload: &str| p.check_claims(&jwt(payload), None, now);
        assert_eq!(check(r#"{"iss":"iss","aud":"api.example.com"}"#), Ok(()));
        assert_eq!(
            check(r#"{"iss":"iss","aud":["x","http://api.example.com"]}"#),
            Ok(())
        );
        assert_eq!(
            check(r#"{"iss":"other","exp":1}"#),
            Err(JwtError::UnknownIssuer)
        );
        assert_eq!(
            check(r#"{"aud":"api.example.com"}"#),
            Err(JwtError::UnknownIssuer)
        );
        assert_eq!(
            check(r#"{"iss":"iss","exp":1,"aud":"x"}"#),
            Err(JwtError::Expired)
        );
        assert_eq!(
            check(r#"{"iss":"iss","exp":999941,"aud":"api.example.com"}"#),
            Ok(()),
            "within the skew"
        );
        assert_eq!(
            check(r#"{"iss":"iss","nbf":1000061}"#),
            Err(JwtError::NotYetValid)
        );
        assert_eq!(
            check(r#"{"iss":"iss","aud":"api.example.com","nbf":1000060}"#),
            Ok(())
        );
        assert_eq!(
            check(r#"{"iss":"iss","aud":"x"}"#),
            Err(JwtError::AudienceNotAllowed)
        );
        assert_eq!(check(r#"{"iss":"iss"}"#), Err(JwtError::AudienceNotAllowed));
        // A requirement's audiences replace the provider's.
        let only_x = ["x".to_string()];
        assert_eq!(
            p.check_claims(&jwt(r#"{"iss":"iss","aud":"x"}"#), Some(&only_x), now),
            Ok(())
        );
        // No issuer, no audiences: anything goes, and exp is optional unless required.
        let mut any = provider("", &[]);
        assert_eq!(any.check_claims(&jwt("{}"), None, now), Ok(()));
        any.require_expiration = true;
        assert_eq!(
            any.check_claims(&jwt("{}"), None, now),
            Err(JwtError::Expired)
        );
        assert_eq!(
            any.check_claims(&jwt(&format!(r#"{{"exp":{}}}"#, u64::MAX)), None, u64::MAX),
            Ok(())
        );
    }
}
