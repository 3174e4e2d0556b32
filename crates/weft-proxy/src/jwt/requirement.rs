//! Requirements (`JwtRequirement`) as a tree, and how a request meets one, with Envoy's
//! semantics:
//!
//! - `provider_name` (or `provider_and_audiences`): the provider's locations must hold
//!   a token, and every token there must verify.
//! - `requires_any`: one child must pass, tried in order. When all fail, the error
//!   reported is the last that is neither "missing" nor "unknown issuer" (a token for
//!   another provider), else "unknown issuer", else "missing". An `allow_missing` among
//!   the children passes a request whose failure is "missing" (Istio's
//!   `[provider, allow_missing]`: no token passes, a bad one does not);
//!   `allow_missing_or_failed` passes any.
//! - `requires_all`: every child must pass.
//! - `allow_missing` / `allow_missing_or_failed` alone: tokens are looked for in every
//!   provider's locations and each is verified by the provider of its issuer; none
//!   found passes, and with `allow_missing_or_failed` so does a bad one (its payload is
//!   simply not recorded).
//!
//! Verified tokens are collected while the tree is walked; a child of `requires_any`
//! that fails gives back what it collected, so only the tokens of the branches that
//! passed leave anything behind.

use super::extract::Location;
use super::provider::Provider;
use super::status::JwtError;
use super::token::Jwt;
use crate::stream_info::Downstream;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::HeaderMap;
use std::sync::Arc;

/// A compiled `JwtRequirement`.
#[derive(Debug)]
pub enum Requirement {
    /// `provider_name`, or `provider_and_audiences` with the audiences that replace the
    /// provider's.
    Provider {
        /// The provider.
        provider: Arc<Provider>,
        /// Audiences of `provider_and_audiences`.
        audiences: Option<Vec<String>>,
    },
    /// `requires_any`: the children other than `allow_missing*`, and the most lenient
    /// of those.
    Any {
        /// Children, tried in order.
        of: Vec<Requirement>,
        /// `allow_missing` or `allow_missing_or_failed` among the children.
        allow: Option<Allow>,
    },
    /// `requires_all`.
    All(Vec<Requirement>),
    /// `allow_missing` or `allow_missing_or_failed` on their own: any provider's token.
    Allow(Allow),
    /// No requirement set: every request passes.
    Pass,
}

/// What an `allow_*` requirement lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Allow {
    /// `allow_missing`: no token.
    Missing,
    /// `allow_missing_or_failed`: no token, or one that does not verify.
    MissingOrFailed,
}

/// A token that verified, with where it was found and the provider that verified it.
#[derive(Debug)]
pub struct Verified {
    /// The provider.
    pub provider: Arc<Provider>,
    /// Where the token was.
    pub location: Location,
    /// The token.
    pub jwt: Jwt,
}

/// One request being checked.
#[derive(Debug)]
pub struct Check<'a> {
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Its query string.
    pub query: Option<&'a str>,
    /// Every provider of the filter (for `allow_*` on their own).
    pub providers: &'a [Arc<Provider>],
    /// Its connection (remote keys are fetched on its behalf).
    pub downstream: &'a Arc<Downstream>,
    /// Seconds since the epoch.
    pub now: u64,
    /// Tokens verified so far.
    pub verified: Vec<Verified>,
}

impl Requirement {
    /// Whether the request meets the requirement; boxed, as the tree is recursive.
    pub fn check<'s>(&'s self, cx: &'s mut Check<'_>) -> BoxFuture<'s, Result<(), JwtError>> {
        async move {
            match self {
                Requirement::Provider {
                    provider,
                    audiences,
                } => {
                    let tokens = cx.tokens(provider.locations.iter());
                    if tokens.is_empty() {
                        return Err(JwtError::Missing);
                    }
                    for (location, token) in tokens {
                        let jwt = Jwt::parse(&token)?;
                        provider.check_claims(&jwt, audiences.as_deref(), cx.now)?;
                        provider.verify_signature(&jwt, cx.downstream).await?;
                        cx.verified.push(Verified {
                            provider: provider.clone(),
                            location,
                            jwt,
                        });
                    }
                    Ok(())
                }
                Requirement::Any { of, allow } => {
                    let mut reported = JwtError::Missing;
                    for child in of {
                        let kept = cx.verified.len();
                        match child.check(cx).await {
                            Ok(()) => return Ok(()),
                            Err(e) => {
                                cx.verified.truncate(kept);
                                let incidental =
                                    matches!(e, JwtError::Missing | JwtError::UnknownIssuer);
                                if !incidental || reported == JwtError::Missing {
                                    reported = e;
                                }
                            }
                        }
                    }
                    match allow {
                        Some(Allow::MissingOrFailed) => Ok(()),
                        Some(Allow::Missing) if reported == JwtError::Missing => Ok(()),
                        _ => Err(reported),
                    }
                }
                Requirement::All(of) => {
                    for child in of {
                        child.check(cx).await?;
                    }
                    Ok(())
                }
                Requirement::Allow(allow) => {
                    let mut locations: Vec<&Location> = Vec::new();
                    for l in cx.providers.iter().flat_map(|p| &p.locations) {
                        if !locations.contains(&l) {
                            locations.push(l);
                        }
                    }
                    for (location, token) in cx.tokens(locations.into_iter()) {
                        match cx.verify_by_issuer(&location, &token).await {
                            Ok((provider, jwt)) => cx.verified.push(Verified {
                                provider,
                                location,
                                jwt,
                            }),
                            Err(e) if *allow == Allow::Missing => return Err(e),
                            Err(e) => tracing::debug!("token allowed to fail did: {e}"),
                        }
                    }
                    Ok(())
                }
                Requirement::Pass => Ok(()),
            }
        }
        .boxed()
    }
}

impl Check<'_> {
    /// The tokens at `locations`, each with where it was found.
    fn tokens<'l>(&self, locations: impl Iterator<Item = &'l Location>) -> Vec<(Location, String)> {
        let mut out = Vec::new();
        let mut found = Vec::new();
        for l in locations {
            l.find(self.headers, self.query, &mut found);
            out.extend(found.drain(..).map(|t| (l.clone(), t)));
        }
        out
    }

    /// Verifies a token with the provider of its issuer among those that look where it
    /// was found (one naming that issuer exactly before one taking any).
    async fn verify_by_issuer(
        &self,
        location: &Location,
        token: &str,
    ) -> Result<(Arc<Provider>, Jwt), JwtError> {
        let jwt = Jwt::parse(token)?;
        let here = || {
            self.providers
                .iter()
                .filter(|p| p.locations.contains(location))
        };
        let provider = here()
            .find(|p| !p.issuer.is_empty() && p.accepts_issuer(jwt.iss.as_deref()))
            .or_else(|| here().find(|p| p.issuer.is_empty()))
            .ok_or(JwtError::UnknownIssuer)?;
        provider.check_claims(&jwt, None, self.now)?;
        provider.verify_signature(&jwt, self.downstream).await?;
        Ok((provider.clone(), jwt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::jwks::Jwks;
    use crate::jwt::provider::{Keys, DEFAULT_CLOCK_SKEW_SECONDS};
    use crate::jwt::token::BASE64URL;
    use aws_lc_rs::hmac;
    use base64::Engine;
    use http::header::{HeaderName, AUTHORIZATION};
    use http::HeaderValue;

    const NOW: u64 = 1_700_000_000;

    /// A provider for `issuer`, keyed by the secret `issuer`, reading `header` (bearer).
    fn provider(issuer: &str, header: &'static str) -> Arc<Provider> {
        let jwks = format!(
            r#"{{"keys":[{{"kty":"oct","k":"{}"}}]}}"#,
            BASE64URL.encode(issuer)
        );
        Arc::new(Provider {
            name: issuer.into(),
            issuer: issuer.into(),
            audiences: Vec::new(),
            require_expiration: false,
            clock_skew: DEFAULT_CLOCK_SKEW_SECONDS,
            locations: vec![Location::Header {
                name: HeaderName::from_static(header),
                prefix: "Bearer ".into(),
            }],
            forward: false,
            forward_payload_header: None,
            pad_forward_payload_header: false,
            payload_in_metadata: None,
            keys: Keys::Local(Arc::new(Jwks::parse(jwks.as_bytes()).expect("jwks"))),
        })
    }

    /// A token from `iss` signed with the secret `key`, expiring at `exp`.
    fn token(iss: &str, key: &str, exp: u64) -> String {
        let part = |s: String| BASE64URL.encode(s);
        let input = format!(
            "{}.{}",
            part(r#"{"alg":"HS256"}"#.into()),
            part(format!(r#"{{"iss":"{iss}","sub":"s","exp":{exp}}}"#))
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()),
            input.as_bytes(),
        );
        format!("{input}.{}", BASE64URL.encode(tag.as_ref()))
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                *k,
                HeaderValue::from_str(&format!("Bearer {v}")).expect("value"),
            );
        }
        h
    }

    /// Runs `r` over `headers`; the outcome and the issuers of the tokens kept.
    fn run(
        r: &Requirement,
        providers: &[Arc<Provider>],
        headers: &HeaderMap,
    ) -> (Result<(), JwtError>, Vec<String>) {
        let downstream = Arc::new(Downstream {
            id: 1,
            remote: "127.0.0.1:1".parse().expect("addr"),
            local: "127.0.0.1:2".parse().expect("addr"),
            server_name: None,
            listener: "l".into(),
            tls: None,
        });
        let mut cx = Check {
            headers,
            query: None,
            providers,
            downstream: &downstream,
            now: NOW,
            verified: Vec::new(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let result = rt.block_on(r.check(&mut cx));
        let kept = cx
            .verified
            .iter()
            .filter_map(|v| v.jwt.iss.clone())
            .collect();
        (result, kept)
    }

    fn one(p: &Arc<Provider>) -> Requirement {
        Requirement::Provider {
            provider: p.clone(),
            audiences: None,
        }
    }

    #[test]
    fn provider_and_any_with_allow_missing() {
        let a = provider("a", "authorization");
        let all = [a.clone()];
        let good = headers(&[("authorization", token("a", "a", NOW + 60))]);
        let forged = headers(&[("authorization", token("a", "b", NOW + 60))]);
        let expired = headers(&[("authorization", token("a", "a", NOW - 61))]);
        let none = HeaderMap::new();
        assert_eq!(run(&one(&a), &all, &good), (Ok(()), vec!["a".into()]));
        assert_eq!(run(&one(&a), &all, &none).0, Err(JwtError::Missing));
        assert_eq!(
            run(&one(&a), &all, &forged).0,
            Err(JwtError::VerificationFail)
        );
        // Every token at the provider's locations must verify.
        let mut two = good.clone();
        two.append(AUTHORIZATION, HeaderValue::from_static("Bearer x.y.z"));
        assert_eq!(run(&one(&a), &all, &two).0, Err(JwtError::HeaderParse));
        // Istio's shape: no token passes, a bad one does not.
        let istio = Requirement::Any {
            of: vec![one(&a)],
            allow: Some(Allow::Missing),
        };
        assert_eq!(run(&istio, &all, &none), (Ok(()), vec![]));
        assert_eq!(run(&istio, &all, &good), (Ok(()), vec!["a".into()]));
        assert_eq!(run(&istio, &all, &expired).0, Err(JwtError::Expired));
        let lenient = Requirement::Any {
            of: vec![one(&a)],
            allow: Some(Allow::MissingOrFailed),
        };
        assert_eq!(run(&lenient, &all, &forged), (Ok(()), vec![]));
    }

    #[test]
    fn any_reports_the_telling_failure() {
        let (a, b) = (
            provider("a", "authorization"),
            provider("b", "authorization"),
        );
        let all = [a.clone(), b.clone()];
        let either = Requirement::Any {
            of: vec![one(&a), one(&b)],
            allow: None,
        };
        let from_b = headers(&[("authorization", token("b", "b", NOW + 60))]);
        assert_eq!(run(&either, &all, &from_b), (Ok(()), vec!["b".into()]));
        let from_c = headers(&[("authorization", token("c", "c", NOW + 60))]);
        assert_eq!(run(&either, &all, &from_c).0, Err(JwtError::UnknownIssuer));
        // "a" says expired, "b" says unknown issuer: expired is what the client needs.
        let stale_a = headers(&[("authorization", token("a", "a", NOW - 100))]);
        assert_eq!(run(&either, &all, &stale_a).0, Err(JwtError::Expired));
        assert_eq!(
            run(&either, &all, &HeaderMap::new()).0,
            Err(JwtError::Missing)
        );
    }

    #[test]
    fn all_and_allow_on_their_own() {
        let (a, b) = (provider("a", "authorization"), provider("b", "x-b"));
        let all = [a.clone(), b.clone()];
        let both = Requirement::All(vec![one(&a), one(&b)]);
        let h = headers(&[
            ("authorization", token("a", "a", NOW + 60)),
            ("x-b", token("b", "b", NOW + 60)),
        ]);
        assert_eq!(run(&both, &all, &h), (Ok(()), vec!["a".into(), "b".into()]));
        let only_a = headers(&[("authorization", token("a", "a", NOW + 60))]);
        assert_eq!(run(&both, &all, &only_a).0, Err(JwtError::Missing));
        // On their own, allow_* read every provider's locations and pick by issuer.
        let missing = Requirement::Allow(Allow::Missing);
        let failed = Requirement::Allow(Allow::MissingOrFailed);
        assert_eq!(run(&missing, &all, &HeaderMap::new()), (Ok(()), vec![]));
        assert_eq!(
            run(&missing, &all, &h),
            (Ok(()), vec!["a".into(), "b".into()])
        );
        // A token for "b" where only "a" looks has no provider.
        let misplaced = headers(&[("authorization", token("b", "b", NOW + 60))]);
        assert_eq!(
            run(&missing, &all, &misplaced).0,
            Err(JwtError::UnknownIssuer)
        );
        assert_eq!(run(&failed, &all, &misplaced), (Ok(()), vec![]));
        let mixed = headers(&[
            ("authorization", token("a", "wrong", NOW + 60)),
            ("x-b", token("b", "b", NOW + 60)),
        ]);
        assert_eq!(run(&failed, &all, &mixed), (Ok(()), vec!["b".into()]));
        assert_eq!(run(&Requirement::Pass, &all, &mixed), (Ok(()), vec![]));
    }
}
