//! RequestAuthentication: which JWTs workloads accept — issuers, audiences, keys and
//! where the token is read from.

use crate::duration::Duration;
use crate::rules;
use crate::security::{check_targets, PolicyTargetReference, WorkloadSelector};
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};

/// `security.istio.io` RequestAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthentication {
    /// The workloads this applies to; the namespace (or mesh) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Attach to a Service, ServiceEntry or Gateway instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Attach to several targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Accepted token issuers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_rules: Vec<JwtRule>,
}

/// How tokens of one issuer are checked.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// The `iss` the token must carry.
    pub issuer: String,
    /// Accepted `aud` values (any); all when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where the public keys are fetched (http or https).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The public keys inline, as a JWKS JSON document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Headers the token is read from (default `Authorization: Bearer`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters the token is read from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Forward the verified payload, base64, in this header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// Cookies the token is read from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Keep the token in the forwarded request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_original_token: Option<bool>,
    /// Copy claims into request headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Timeout for fetching the keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// A header carrying a token, and the prefix before it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    /// Header name.
    pub name: String,
    /// Prefix to strip (`Bearer `).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A claim copied into a header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    /// The header to set.
    pub header: String,
    /// The claim to copy.
    pub claim: String,
}

impl Validate for RequestAuthentication {
    fn validate(&self, v: &mut Validator<'_>) {
        check_targets(
            v,
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
        );
        v.list("jwtRules", &self.jwt_rules);
    }
}

impl Validate for JwtRule {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.issuer.is_empty() {
            v.required("issuer");
        }
        v.each("audiences", &self.audiences, |v, a| {
            if a.is_empty() {
                v.error("audience must not be empty");
            }
        });
        if let Some(uri) = &self.jwks_uri {
            v.check_at("jwksUri", check_jwks_uri(uri));
        }
        if let Some(jwks) = &self.jwks {
            v.check_at("jwks", check_jwks(jwks));
        }
        v.each("fromHeaders", &self.from_headers, |v, h| {
            if h.name.is_empty() {
                v.required("name");
            }
        });
        v.each("fromParams", &self.from_params, |v, p| {
            if p.is_empty() {
                v.error("query parameter name must not be empty");
            }
        });
        v.each("fromCookies", &self.from_cookies, |v, c| {
            if c.is_empty() {
                v.error("cookie name must not be empty");
            }
        });
        v.each(
            "outputClaimToHeaders",
            &self.output_claim_to_headers,
            |v, c| {
                if c.header.is_empty() {
                    v.required("header");
                } else {
                    v.check_at("header", rules::check_header_name(&c.header));
                }
                if c.claim.is_empty() {
                    v.required("claim");
                }
            },
        );
    }
}

/// `http://` or `https://` with a host.
fn check_jwks_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| format!("jwksUri {uri:?} must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8443`.
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => match authority.split_once(':') {
            Some((host, port)) => {
                if port.parse::<u16>().is_err() {
                    return Err(format!("jwksUri {uri:?} has an invalid port"));
                }
                host
            }
            None => authority,
        },
    };
    if host.is_empty() {
        return Err(format!("jwksUri {uri:?} has no host"));
    }
    Ok(())
}

/// A JWKS document: a JSON object with a `keys` list.
fn check_jwks(jwks: &str) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| format!("jwks is not valid JSON: {e}"))?;
    match value.get("keys") {
        // Proxies refuse a key set they cannot verify anything with.
        Some(serde_json::Value::Array(keys)) if keys.is_empty() => {
            Err("jwks has no key: its \"keys\" list is empty".into())
        }
        Some(serde_json::Value::Array(_)) => Ok(()),
        _ => Err("jwks must be a JSON object with a \"keys\" list".into()),
    }
}

#[cfg(test)]
mod tests {
    use crate::resource::{Kind, Spec};
    use crate::testing::{err, ok};

    const K: Kind = Kind::RequestAuthentication;

    #[test]
    fn reads_jwt_rules() {
        let r = match ok(
            K,
            r#"
selector: {matchLabels: {app: httpbin}}
jwtRules:
- issuer: "issuer-foo"
  audiences: [bookstore]
  jwksUri: https://example.com/.well-known/jwks.json
  fromHeaders: [{name: x-jwt-assertion, prefix: "Bearer "}]
  fromParams: [my_token]
  fromCookies: [session]
  forwardOriginalToken: true
  outputPayloadToHeader: x-jwt-payload
  outputClaimToHeaders: [{header: x-sub, claim: sub}]
  timeout: 5s
- issuer: inline
  jwks: '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'
"#,
        )
        .spec
        {
            Spec::RequestAuthentication(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            r.jwt_rules[0].from_headers[0].prefix.as_deref(),
            Some("Bearer ")
        );
        assert_eq!(r.jwt_rules[0].timeout.map(|t| t.as_millis()), Some(5000));
    }

    #[test]
    fn rules() {
        err(K, "jwtRules: [{audiences: [a]}]\n", ".jwtRules[0].issuer");
        err(
            K,
            "jwtRules: [{issuer: a, jwks: '{\"keys\": []}'}]\n",
            ".jwtRules[0].jwks",
        );
        err(
            K,
            "jwtRules: [{issuer: a, jwksUri: ftp://x/keys}]\n",
            ".jwtRules[0].jwksUri",
        );
        err(
            K,
            "jwtRules: [{issuer: a, jwksUri: \"https://:99/keys\"}]\n",
            ".jwtRules[0].jwksUri",
        );
        err(
            K,
            "jwtRules: [{issuer: a, jwks: \"not json\"}]\n",
            ".jwtRules[0].jwks",
        );
        err(
            K,
            "jwtRules: [{issuer: a, fromHeaders: [{prefix: x}]}]\n",
            ".jwtRules[0].fromHeaders[0].name",
        );
        err(
            K,
            "jwtRules: [{issuer: a, audiences: [\"\"]}]\n",
            ".jwtRules[0].audiences[0]",
        );
        err(
            K,
            "jwtRules: [{issuer: a, outputClaimToHeaders: [{header: \"bad header\", claim: c}]}]\n",
            ".jwtRules[0].outputClaimToHeaders[0].header",
        );
        err(
            K,
            "jwtRules: [{issuer: a, timeout: 0.1ms}]\n",
            ".jwtRules[0].timeout",
        );
    }
}
