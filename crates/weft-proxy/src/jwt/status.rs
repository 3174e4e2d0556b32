//! Why a request failed JWT authentication, worded as Envoy words it (the local reply's
//! body, and `jwt_authn_access_denied{...}` in the response code details), with the
//! status it answers and the label it is counted under.

use http::StatusCode;

/// Why JWT authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// No token where the provider looks.
    Missing,
    /// Not three base64url parts joined by dots.
    BadFormat,
    /// The header is not base64url or not a JSON object.
    HeaderParse,
    /// `alg` is missing or not a string.
    HeaderBadAlg,
    /// `alg` names an algorithm Weft does not verify (`none` among them).
    HeaderUnsupportedAlg,
    /// `kid` is not a string.
    HeaderBadKid,
    /// The header lists critical extensions (`crit`), none of which Weft understands
    /// (RFC 7515 §4.1.11 requires refusing the token).
    HeaderCrit,
    /// The payload is not base64url or not a JSON object.
    PayloadParse,
    /// A registered claim has the wrong type: `iss`, `sub`, `jti` must be strings.
    ClaimNotString,
    /// `aud` is neither a string nor a list of strings.
    AudienceNotString,
    /// `exp`, `nbf` or `iat` is not a non-negative number.
    TimeNotNumber,
    /// The signature is not base64url.
    SignatureParse,
    /// The token's issuer is not the provider's.
    UnknownIssuer,
    /// None of the token's audiences is allowed (a 403, as in Envoy).
    AudienceNotAllowed,
    /// `exp` is past (beyond the clock skew), or missing when required.
    Expired,
    /// `nbf` is ahead (beyond the clock skew).
    NotYetValid,
    /// No key of the JWKS fits the token's `kid` and `alg`.
    NoMatchingKey,
    /// The signature does not verify with any fitting key.
    VerificationFail,
    /// The provider's remote JWKS could not be fetched (or was not a JWKS).
    JwksFetchFail,
}

impl JwtError {
    /// Every failure, in the order of [`JwtError::index`].
    pub const ALL: [JwtError; 19] = [
        JwtError::Missing,
        JwtError::BadFormat,
        JwtError::HeaderParse,
        JwtError::HeaderBadAlg,
        JwtError::HeaderUnsupportedAlg,
        JwtError::HeaderBadKid,
        JwtError::HeaderCrit,
        JwtError::PayloadParse,
        JwtError::ClaimNotString,
        JwtError::AudienceNotString,
        JwtError::TimeNotNumber,
        JwtError::SignatureParse,
        JwtError::UnknownIssuer,
        JwtError::AudienceNotAllowed,
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::NoMatchingKey,
        JwtError::VerificationFail,
        JwtError::JwksFetchFail,
    ];

    /// Its position in [`JwtError::ALL`] (metric handles are kept in that order).
    pub fn index(self) -> usize {
        JwtError::ALL
            .iter()
            .position(|e| *e == self)
            .expect("ALL lists every variant")
    }

    /// Envoy's status text: the body of the local reply.
    pub fn message(self) -> &'static str {
        match self {
            JwtError::Missing => "Jwt is missing",
            JwtError::BadFormat => "Jwt is not in the form of Header.Payload.Signature",
            JwtError::HeaderParse => "Jwt header is an invalid Base64url input or an invalid JSON",
            JwtError::HeaderBadAlg => "Jwt header [alg] field is not a string",
            JwtError::HeaderUnsupportedAlg => "Jwt header [alg] field value is invalid",
            JwtError::HeaderBadKid => "Jwt header [kid] field is not a string",
            JwtError::HeaderCrit => {
                "Jwt header [crit] field lists extensions that are not supported"
            }
            JwtError::PayloadParse => "Jwt payload is an invalid Base64 or an invalid JSON",
            JwtError::ClaimNotString => "Jwt payload [iss], [sub] or [jti] field is not a string",
            JwtError::AudienceNotString => "Jwt payload [aud] field is not a string or string list",
            JwtError::TimeNotNumber => {
                "Jwt payload [exp], [nbf] or [iat] field is not a positive number"
            }
            JwtError::SignatureParse => "Jwt signature is an invalid Base64",
            JwtError::UnknownIssuer => "Jwt issuer is not configured",
            JwtError::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            JwtError::Expired => "Jwt is expired",
            JwtError::NotYetValid => "Jwt not yet valid",
            JwtError::NoMatchingKey => "Jwks doesn't have key to match kid or alg from Jwt",
            JwtError::VerificationFail => "Jwt verification fails",
            JwtError::JwksFetchFail => "Jwks remote fetch is failed",
        }
    }

    /// The status Envoy answers: 403 for a disallowed audience, else 401.
    pub fn status(self) -> StatusCode {
        if self == JwtError::AudienceNotAllowed {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        }
    }

    /// The `reason` label of `weft_jwt_authn_denied_total`.
    pub fn reason(self) -> &'static str {
        match self {
            JwtError::Missing => "missing",
            JwtError::BadFormat
            | JwtError::HeaderParse
            | JwtError::HeaderBadAlg
            | JwtError::HeaderBadKid
            | JwtError::HeaderCrit
            | JwtError::PayloadParse
            | JwtError::ClaimNotString
            | JwtError::AudienceNotString
            | JwtError::TimeNotNumber
            | JwtError::SignatureParse => "malformed",
            JwtError::HeaderUnsupportedAlg => "unsupported_alg",
            JwtError::UnknownIssuer => "issuer",
            JwtError::AudienceNotAllowed => "audience",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::NoMatchingKey => "no_key",
            JwtError::VerificationFail => "signature",
            JwtError::JwksFetchFail => "jwks_fetch",
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%`: the text with spaces as underscores.
    pub fn details(self) -> String {
        format!(
            "jwt_authn_access_denied{{{}}}",
            self.message().replace(' ', "_")
        )
    }
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for JwtError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_indices_and_details() {
        for (i, e) in JwtError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        assert_eq!(
            JwtError::Missing.details(),
            "jwt_authn_access_denied{Jwt_is_missing}"
        );
        assert_eq!(JwtError::AudienceNotAllowed.status(), 403);
        assert_eq!(JwtError::Expired.status(), 401);
    }
}
