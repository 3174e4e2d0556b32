//! String, header and query-parameter matchers with Envoy's semantics (regexes match
//! the whole value; a missing header matches only `present_match: false`; several values
//! of one header are matched joined by commas).

use http::{HeaderMap, HeaderName, Request};
use regex::Regex;

/// Envoy's `StringMatcher`.
#[derive(Debug, Clone)]
pub enum StringMatch {
    /// Equal.
    Exact(String, bool),
    /// Starts with.
    Prefix(String, bool),
    /// Ends with.
    Suffix(String, bool),
    /// Contains.
    Contains(String, bool),
    /// The whole value matches the regex.
    Regex(Regex),
}

impl StringMatch {
    /// Whether `v` matches.
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StringMatch::Exact(s, false) => v == s,
            StringMatch::Exact(s, true) => v.eq_ignore_ascii_case(s),
            StringMatch::Prefix(s, false) => v.starts_with(s.as_str()),
            StringMatch::Prefix(s, true) => {
                v.len() >= s.len() && v.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
            }
            StringMatch::Suffix(s, false) => v.ends_with(s.as_str()),
            StringMatch::Suffix(s, true) => {
                v.len() >= s.len()
                    && v.as_bytes()[v.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            StringMatch::Contains(s, false) => v.contains(s.as_str()),
            StringMatch::Contains(s, true) => {
                v.to_ascii_lowercase().contains(&s.to_ascii_lowercase())
            }
            StringMatch::Regex(r) => r.is_match(v),
        }
    }
}

/// Compiles a regex that must match a whole value, as RE2 full-match does in Envoy.
pub fn full_match_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// Which header a matcher reads: pseudo-headers are not in the `HeaderMap`.
#[derive(Debug, Clone)]
pub enum HeaderKey {
    /// `:method`
    Method,
    /// `:path`
    Path,
    /// `:authority`
    Authority,
    /// `:scheme`
    Scheme,
    /// A regular header.
    Named(HeaderName),
}

impl HeaderKey {
    /// Parses a header name as written in config (pseudo-headers start with `:`).
    pub fn parse(name: &str) -> Result<HeaderKey, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            ":method" => HeaderKey::Method,
            ":path" => HeaderKey::Path,
            ":authority" | "host" => HeaderKey::Authority,
            ":scheme" => HeaderKey::Scheme,
            other if other.starts_with(':') => {
                return Err(format!("unknown pseudo-header {name:?}"))
            }
            other => HeaderKey::Named(
                HeaderName::from_bytes(other.as_bytes())
                    .map_err(|_| format!("invalid header name {name:?}"))?,
            ),
        })
    }
}

/// How a header matcher tests the value.
#[derive(Debug, Clone)]
pub enum HeaderTest {
    /// `present_match`.
    Present(bool),
    /// A string matcher.
    String(StringMatch),
    /// `range_match`: the value is an integer in `[start, end)`.
    Range(i64, i64),
}

/// Envoy's `HeaderMatcher`.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// The header.
    pub key: HeaderKey,
    /// The test.
    pub test: HeaderTest,
    /// `invert_match`.
    pub invert: bool,
    /// `treat_missing_header_as_empty`.
    pub missing_as_empty: bool,
}

/// The parts of a request a route looks at.
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a http::Method,
    /// Path with query.
    pub path: &'a str,
    /// Host, lower-cased.
    pub authority: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    /// A view of `req` with the given effective path and authority.
    pub fn new<B>(req: &'a Request<B>, path: &'a str, authority: &'a str, scheme: &'a str) -> Self {
        RequestView {
            method: req.method(),
            path,
            authority,
            scheme,
            headers: req.headers(),
        }
    }
}

impl HeaderMatcher {
    /// Whether the request matches.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let mut joined = String::new();
        let value: Option<&str> = match &self.key {
            HeaderKey::Method => Some(req.method.as_str()),
            HeaderKey::Path => Some(req.path),
            HeaderKey::Authority => Some(req.authority),
            HeaderKey::Scheme => Some(req.scheme),
            HeaderKey::Named(name) => {
                let mut values = req.headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => None,
                    (Some(one), None) => Some(one.to_str().unwrap_or("")),
                    (Some(first), Some(second)) => {
                        joined.push_str(first.to_str().unwrap_or(""));
                        for v in std::iter::once(second).chain(values) {
                            joined.push(',');
                            joined.push_str(v.to_str().unwrap_or(""));
                        }
                        Some(joined.as_str())
                    }
                }
            }
        };
        let value = match value {
            Some(v) => v,
            None if self.missing_as_empty => "",
            None => {
                // Envoy: a missing header only satisfies "not present".
                return matches!(self.test, HeaderTest::Present(p) if p == self.invert);
            }
        };
        let matched = match &self.test {
            HeaderTest::Present(p) => *p,
            HeaderTest::String(s) => s.matches(value),
            HeaderTest::Range(start, end) => value
                .parse::<i64>()
                .map(|n| n >= *start && n < *end)
                .unwrap_or(false),
        };
        matched != self.invert
    }
}

/// Envoy's `QueryParameterMatcher`.
#[derive(Debug, Clone)]
pub struct QueryMatcher {
    /// Parameter name.
    pub name: String,
    /// `None` means present.
    pub value: Option<StringMatch>,
}

impl QueryMatcher {
    /// Whether the query string (without `?`) matches.
    pub fn matches(&self, query: &str) -> bool {
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == self.name {
                return match &self.value {
                    None => true,
                    Some(m) => m.matches(v),
                };
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn view<'a>(headers: &'a HeaderMap, method: &'a http::Method) -> RequestView<'a> {
        RequestView {
            method,
            path: "/p?x=1",
            authority: "svc",
            scheme: "http",
            headers,
        }
    }

    fn matcher(name: &str, test: HeaderTest, invert: bool) -> HeaderMatcher {
        HeaderMatcher {
            key: HeaderKey::parse(name).expect("name"),
            test,
            invert,
            missing_as_empty: false,
        }
    }

    #[test]
    fn string_matchers() {
        assert!(StringMatch::Exact("abc".into(), false).matches("abc"));
        assert!(!StringMatch::Exact("abc".into(), false).matches("ABC"));
        assert!(StringMatch::Exact("abc".into(), true).matches("ABC"));
        assert!(StringMatch::Prefix("/api".into(), true).matches("/API/x"));
        assert!(StringMatch::Suffix(".js".into(), false).matches("a.js"));
        assert!(StringMatch::Contains("Mobile".into(), true).matches("x mobile y"));
        let r = StringMatch::Regex(full_match_regex("v[0-9]+").expect("re"));
        assert!(r.matches("v12"));
        assert!(!r.matches("xv12"), "regex must match the whole value");
    }

    #[test]
    fn header_present_absent_and_invert() {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("jason"));
        let m = http::Method::GET;
        let v = view(&h, &m);
        assert!(matcher("x-user", HeaderTest::Present(true), false).matches(&v));
        assert!(!matcher("x-none", HeaderTest::Present(true), false).matches(&v));
        assert!(matcher("x-none", HeaderTest::Present(false), false).matches(&v));
        assert!(matcher("x-none", HeaderTest::Present(true), true).matches(&v));
        let exact = |inv| {
            matcher(
                "x-user",
                HeaderTest::String(StringMatch::Exact("jason".into(), false)),
                inv,
            )
        };
        assert!(exact(false).matches(&v));
        assert!(!exact(true).matches(&v));
        // A missing header never satisfies a value matcher, inverted or not.
        let missing = matcher(
            "x-none",
            HeaderTest::String(StringMatch::Exact("a".into(), false)),
            true,
        );
        assert!(!missing.matches(&v));
        let empty_ok = HeaderMatcher {
            missing_as_empty: true,
            ..missing
        };
        assert!(empty_ok.matches(&v));
    }

    #[test]
    fn pseudo_headers_and_multi_values() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let m = http::Method::POST;
        let v = view(&h, &m);
        assert!(matcher(
            ":method",
            HeaderTest::String(StringMatch::Exact("POST".into(), false)),
            false
        )
        .matches(&v));
        assert!(matcher(
            "x-a",
            HeaderTest::String(StringMatch::Exact("1,2".into(), false)),
            false
        )
        .matches(&v));
        assert!(matcher(
            ":authority",
            HeaderTest::String(StringMatch::Exact("svc".into(), false)),
            false
        )
        .matches(&v));
    }

    #[test]
    fn range() {
        let mut h = HeaderMap::new();
        h.insert("x-n", HeaderValue::from_static("10"));
        let m = http::Method::GET;
        let v = view(&h, &m);
        assert!(matcher("x-n", HeaderTest::Range(0, 11), false).matches(&v));
        assert!(!matcher("x-n", HeaderTest::Range(0, 10), false).matches(&v));
    }

    #[test]
    fn query_params() {
        let q = QueryMatcher {
            name: "debug".into(),
            value: None,
        };
        assert!(q.matches("a=1&debug"));
        assert!(!q.matches("a=1"));
        let q = QueryMatcher {
            name: "v".into(),
            value: Some(StringMatch::Exact("2".into(), false)),
        };
        assert!(q.matches("v=2"));
        assert!(!q.matches("v=3"));
    }
}
