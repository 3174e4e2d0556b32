//! A compiled route configuration: virtual hosts chosen by domain, routes matched in
//! order, and what each route does. Built once by `compile::route`, read-only after.

use super::headers::HeaderMutation;
use super::matcher::{HeaderMatcher, QueryMatcher, RequestView};
use super::rbac::RbacOverrides;
use super::retry::RetryPolicy;
use crate::cluster::hash::HashPolicy;
use crate::metrics::RouteStats;
use bytes::Bytes;
use http::{HeaderName, StatusCode};
use regex::Regex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A compiled `RouteConfiguration`.
#[derive(Debug)]
pub struct RouteTable {
    /// Its name.
    pub name: Arc<str>,
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `.example.com`, longest first.
    suffixes: Vec<(String, usize)>,
    /// `example.*` stored as `example.`, longest first.
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
    /// The virtual hosts, in configuration order.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Headers added to every request.
    pub request_headers: HeaderMutation,
    /// Headers added to every response.
    pub response_headers: HeaderMutation,
}

/// A domain pattern is already used by another virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateDomain(pub String);

impl RouteTable {
    /// A table with no virtual host: every request gets 404 until routes arrive.
    pub fn empty(name: &str) -> RouteTable {
        RouteTable {
            name: name.into(),
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            any: None,
            virtual_hosts: Vec::new(),
            request_headers: HeaderMutation::default(),
            response_headers: HeaderMutation::default(),
        }
    }

    /// Indexes the virtual hosts by their domains.
    pub fn new(
        name: Arc<str>,
        virtual_hosts: Vec<VirtualHost>,
        domains: &[Vec<String>],
        request_headers: HeaderMutation,
        response_headers: HeaderMutation,
    ) -> Result<RouteTable, DuplicateDomain> {
        let mut table = RouteTable {
            name,
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            any: None,
            virtual_hosts,
            request_headers,
            response_headers,
        };
        for (i, list) in domains.iter().enumerate() {
            for domain in list {
                let d = domain.to_ascii_lowercase();
                let fresh = if d == "*" {
                    table.any.replace(i).is_none()
                } else if let Some(suffix) = d.strip_prefix('*') {
                    insert_unique(&mut table.suffixes, suffix, i)
                } else if let Some(prefix) = d.strip_suffix('*') {
                    insert_unique(&mut table.prefixes, prefix, i)
                } else {
                    table.exact.insert(d.clone(), i).is_none()
                };
                if !fresh {
                    return Err(DuplicateDomain(domain.clone()));
                }
            }
        }
        table.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        table.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(table)
    }

    /// The virtual host for a (lower-case) host: exact, then the longest `*suffix`, then
    /// the longest `prefix*`, first with the host as sent and then without its port,
    /// then `*`.
    pub fn find_virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        self.virtual_host_index(host)
            .map(|i| &self.virtual_hosts[i])
    }

    /// The index of the virtual host [`find_virtual_host`](Self::find_virtual_host) returns.
    pub fn virtual_host_index(&self, host: &str) -> Option<usize> {
        let index = self.lookup(host).or_else(|| {
            let stripped = strip_port(host);
            (stripped.len() != host.len())
                .then(|| self.lookup(stripped))
                .flatten()
        });
        index.or(self.any)
    }

    fn lookup(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        // A wildcard stands for at least one character.
        for (suffix, i) in &self.suffixes {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return Some(*i);
            }
        }
        for (prefix, i) in &self.prefixes {
            if host.len() > prefix.len() && host.starts_with(prefix.as_str()) {
                return Some(*i);
            }
        }
        None
    }
}

fn insert_unique(list: &mut Vec<(String, usize)>, key: &str, i: usize) -> bool {
    if list.iter().any(|(k, _)| k == key) {
        return false;
    }
    list.push((key.to_string(), i));
    true
}

/// `host:port` → `host`, aware of bracketed IPv6 literals.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i)
            if host[i + 1..].bytes().all(|b| b.is_ascii_digit())
                && host.matches(':').count() == 1 =>
        {
            &host[..i]
        }
        _ => host,
    }
}

/// A compiled `VirtualHost`.
#[derive(Debug)]
pub struct VirtualHost {
    /// Its name.
    pub name: Arc<str>,
    /// Routes, tried in order.
    pub routes: Vec<Route>,
    /// Headers added to requests.
    pub request_headers: HeaderMutation,
    /// Headers added to responses.
    pub response_headers: HeaderMutation,
    /// RBAC filter overrides (`RBACPerRoute`) for its routes that have none.
    pub rbac: RbacOverrides,
}

impl VirtualHost {
    /// The first route that matches.
    pub fn find_route(&self, req: &RequestView<'_>) -> Option<&Route> {
        self.routes.iter().find(|r| r.matcher.matches(req))
    }
}

/// A compiled `Route`.
#[derive(Debug)]
pub struct Route {
    /// Its name (configured, or `virtual_host/index`).
    pub name: Arc<str>,
    /// When it applies.
    pub matcher: RouteMatch,
    /// What it does.
    pub action: RouteAction,
    /// Headers added to requests.
    pub request_headers: HeaderMutation,
    /// Headers added to responses.
    pub response_headers: HeaderMutation,
    /// RBAC filter overrides (`RBACPerRoute`).
    pub rbac: RbacOverrides,
    /// Its metrics.
    pub stats: Arc<RouteStats>,
}

/// How the path is tested.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The path (with its query) starts with this.
    Prefix(String),
    /// The path (without query) is this.
    Exact(String),
    /// The path (without query) matches this whole.
    Regex(Regex),
    /// The path (without query) is this, or continues with `/`.
    SeparatedPrefix(String),
    /// A CONNECT request.
    Connect,
}

/// A compiled `RouteMatch`.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Path test.
    pub path: PathMatch,
    /// `case_sensitive` (default true), for prefix and exact paths.
    pub case_sensitive: bool,
    /// Every header matcher must match.
    pub headers: Vec<HeaderMatcher>,
    /// Every query matcher must match.
    pub query: Vec<QueryMatcher>,
    /// Only gRPC requests.
    pub grpc: bool,
    /// A sampled fraction of requests: (numerator, denominator).
    pub fraction: Option<(u64, u64)>,
}

impl RouteMatch {
    /// Whether the request matches.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let connect = req.method == http::Method::CONNECT;
        let path_ok = match &self.path {
            PathMatch::Connect => connect,
            _ if connect => false,
            PathMatch::Prefix(p) => starts_with(req.path, p, self.case_sensitive),
            PathMatch::Exact(p) => {
                let path = without_query(req.path);
                if self.case_sensitive {
                    path == p
                } else {
                    path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(r) => r.is_match(without_query(req.path)),
            PathMatch::SeparatedPrefix(p) => {
                let path = without_query(req.path);
                starts_with(path, p, self.case_sensitive)
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
        };
        if !path_ok {
            return false;
        }
        if self.grpc && !is_grpc(req.headers) {
            return false;
        }
        if !self.headers.iter().all(|h| h.matches(req)) {
            return false;
        }
        if !self.query.is_empty() {
            let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
            if !self.query.iter().all(|q| q.matches(query)) {
                return false;
            }
        }
        match self.fraction {
            Some((num, den)) => fastrand::u64(0..den) < num,
            None => true,
        }
    }
}

fn starts_with(s: &str, prefix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        s.starts_with(prefix)
    } else {
        s.len() >= prefix.len()
            && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    }
}

/// The path without its query string or fragment.
pub fn without_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(i) => &path[..i],
        None => path,
    }
}

/// Whether the request is gRPC (content-type `application/grpc...`).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes().starts_with(b"application/grpc"))
        .unwrap_or(false)
}

/// What a route does.
#[derive(Debug)]
pub enum RouteAction {
    /// Forward to a cluster.
    Forward(Box<Forward>),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    Direct(DirectResponse),
}

/// How the route picks its cluster.
#[derive(Debug)]
pub enum ClusterChoice {
    /// One cluster.
    Named(Arc<str>),
    /// A weighted split.
    Weighted(Vec<WeightedCluster>, u64),
    /// The cluster named by a request header.
    Header(HeaderName),
}

/// One arm of a weighted split.
#[derive(Debug)]
pub struct WeightedCluster {
    /// Cluster name.
    pub name: Arc<str>,
    /// Weight.
    pub weight: u64,
    /// Headers added to requests going this way.
    pub request_headers: HeaderMutation,
    /// Headers added to responses coming this way.
    pub response_headers: HeaderMutation,
}

impl ClusterChoice {
    /// Picks the cluster (and the weighted arm, if any) for one request.
    pub fn pick<'a>(
        &'a self,
        headers: &http::HeaderMap,
    ) -> Option<(std::borrow::Cow<'a, str>, Option<&'a WeightedCluster>)> {
        use std::borrow::Cow;
        match self {
            ClusterChoice::Named(n) => Some((Cow::Borrowed(n), None)),
            ClusterChoice::Weighted(arms, total) => {
                if *total == 0 {
                    return None;
                }
                let mut point = fastrand::u64(0..*total);
                for arm in arms {
                    if point < arm.weight {
                        return Some((Cow::Borrowed(&arm.name), Some(arm)));
                    }
                    point -= arm.weight;
                }
                None
            }
            ClusterChoice::Header(h) => headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(|n| (Cow::Owned(n.to_string()), None)),
        }
    }
}

/// How the `Host` header is rewritten on the way upstream.
#[derive(Debug, Clone)]
pub enum HostRewrite {
    /// Kept.
    None,
    /// Replaced by this.
    Literal(http::HeaderValue),
    /// Replaced by the chosen endpoint's hostname (DNS clusters) or address.
    Auto,
    /// Replaced by the value of this request header.
    Header(HeaderName),
}

/// How the deadline in `grpc-timeout` is honoured.
#[derive(Debug, Clone, Copy)]
pub struct GrpcTimeout {
    /// Upper bound on the header's value (`None`: no bound).
    pub max: Option<Duration>,
    /// Subtracted from the header's value, to leave time for the reply to travel back.
    pub offset: Duration,
}

/// A compiled `RouteAction`.
#[derive(Debug)]
pub struct Forward {
    /// Which cluster.
    pub cluster: ClusterChoice,
    /// Status when the cluster does not exist.
    pub cluster_not_found: StatusCode,
    /// `prefix_rewrite`: replaces the matched prefix.
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite`: pattern and substitution over the path.
    pub regex_rewrite: Option<(Regex, String)>,
    /// Host rewrite.
    pub host_rewrite: HostRewrite,
    /// Overall timeout (`None`: disabled).
    pub timeout: Option<Duration>,
    /// Stream idle timeout override.
    pub idle_timeout: Option<Duration>,
    /// Retries.
    pub retry: Option<Arc<RetryPolicy>>,
    /// Hash policies for ring hash and Maglev.
    pub hash_policy: Vec<HashPolicy>,
    /// Per-route upgrade overrides: (type, enabled).
    pub upgrades: Vec<(String, bool)>,
    /// CONNECT requests are terminated here and their payload sent over TCP
    /// (`connect_config`), rather than forwarded as CONNECT.
    pub connect_terminate: bool,
    /// `grpc-timeout` handling.
    pub grpc_timeout: GrpcTimeout,
    /// `max_stream_duration`.
    pub max_stream_duration: Option<Duration>,
    /// Send `x-envoy-attempt-count` upstream.
    pub include_attempt_count: bool,
}

/// How the redirect builds its path.
#[derive(Debug, Clone)]
pub enum RedirectPath {
    /// Keep the request's path.
    Keep,
    /// Replace the whole path (may carry a query).
    Path(String),
    /// Replace the matched prefix.
    Prefix(String),
    /// Regex substitution.
    Regex(Regex, String),
}

/// A compiled `RedirectAction`.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// New scheme.
    pub scheme: Option<String>,
    /// New host.
    pub host: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New path.
    pub path: RedirectPath,
    /// Status (301, 302, 303, 307, 308).
    pub status: StatusCode,
    /// Drop the query.
    pub strip_query: bool,
}

impl Redirect {
    /// The `Location` for a request to `scheme://authority` + `path`, which matched a
    /// route whose prefix (if any) was `matched_prefix`.
    pub fn location(
        &self,
        scheme: &str,
        authority: &str,
        path: &str,
        matched_prefix: Option<&str>,
    ) -> String {
        let new_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let host = match &self.host {
            Some(h) => h.as_str(),
            None if self.scheme.is_some() && self.port.is_none() => strip_port(authority),
            None => authority,
        };
        let host = match self.port {
            Some(p) => format!("{}:{p}", strip_port(host)),
            None => host.to_string(),
        };
        let (orig_path, orig_query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let (new_path, explicit_query) = match &self.path {
            RedirectPath::Keep => (orig_path.to_string(), None),
            RedirectPath::Path(p) => match p.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (p.clone(), None),
            },
            RedirectPath::Prefix(new_prefix) => {
                let rest = matched_prefix
                    .and_then(|m| orig_path.get(m.len()..))
                    .unwrap_or(orig_path);
                (format!("{new_prefix}{rest}"), None)
            }
            RedirectPath::Regex(re, sub) => {
                (re.replace_all(orig_path, sub.as_str()).into_owned(), None)
            }
        };
        let query = if self.strip_query {
            explicit_query
        } else {
            explicit_query.or_else(|| orig_query.map(str::to_string))
        };
        match query {
            Some(q) if !q.is_empty() => format!("{new_scheme}://{host}{new_path}?{q}"),
            _ => format!("{new_scheme}://{host}{new_path}"),
        }
    }
}

/// A compiled `DirectResponseAction`.
#[derive(Debug, Clone)]
pub struct DirectResponse {
    /// Status.
    pub status: StatusCode,
    /// Body, if any.
    pub body: Option<Bytes>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::matcher::{HeaderKey, HeaderTest, StringMatch};
    use http::{HeaderMap, Method};

    fn vh(name: &str) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            routes: Vec::new(),
            request_headers: HeaderMutation::default(),
            response_headers: HeaderMutation::default(),
            rbac: RbacOverrides::default(),
        }
    }

    fn table(domains: &[&[&str]]) -> RouteTable {
        let vhs = (0..domains.len()).map(|i| vh(&format!("vh{i}"))).collect();
        let d: Vec<Vec<String>> = domains
            .iter()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .collect();
        RouteTable::new(
            "rt".into(),
            vhs,
            &d,
            HeaderMutation::default(),
            HeaderMutation::default(),
        )
        .expect("table")
    }

    fn pick<'a>(t: &'a RouteTable, host: &str) -> Option<&'a str> {
        t.find_virtual_host(host).map(|v| &*v.name)
    }

    #[test]
    fn domain_precedence() {
        let t = table(&[
            &["*"],
            &["api.example.com"],
            &["*.example.com"],
            &["*.b.example.com"],
            &["api.*"],
        ]);
        assert_eq!(pick(&t, "api.example.com"), Some("vh1"));
        assert_eq!(pick(&t, "x.example.com"), Some("vh2"));
        assert_eq!(
            pick(&t, "x.b.example.com"),
            Some("vh3"),
            "longest suffix wins"
        );
        assert_eq!(pick(&t, "api.other.org"), Some("vh4"));
        assert_eq!(pick(&t, "unknown"), Some("vh0"));
        assert_eq!(
            pick(&t, "example.com"),
            Some("vh0"),
            "wildcard needs a character"
        );
    }

    #[test]
    fn domains_with_and_without_port() {
        let t = table(&[&["svc"], &["svc:8080"]]);
        assert_eq!(pick(&t, "svc:8080"), Some("vh1"));
        assert_eq!(
            pick(&t, "svc:9090"),
            Some("vh0"),
            "falls back to the host without port"
        );
        assert_eq!(pick(&t, "svc"), Some("vh0"));
        assert_eq!(pick(&t, "other"), None);
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn duplicate_domain_is_refused() {
        let vhs = vec![vh("a"), vh("b")];
        let d = vec![vec!["x".to_string()], vec!["X".to_string()]];
        let err = RouteTable::new(
            "rt".into(),
            vhs,
            &d,
            HeaderMutation::default(),
            HeaderMutation::default(),
        )
        .expect_err("dup");
        assert_eq!(err, DuplicateDomain("X".into()));
    }

    fn rm(path: PathMatch) -> RouteMatch {
        RouteMatch {
            path,
            case_sensitive: true,
            headers: vec![],
            query: vec![],
            grpc: false,
            fraction: None,
        }
    }

    fn matches(m: &RouteMatch, method: Method, path: &str, headers: &HeaderMap) -> bool {
        m.matches(&RequestView {
            method: &method,
            path,
            authority: "h",
            scheme: "http",
            headers,
        })
    }

    #[test]
    fn path_matchers() {
        let h = HeaderMap::new();
        assert!(matches(
            &rm(PathMatch::Prefix("/api".into())),
            Method::GET,
            "/api/v1?x",
            &h
        ));
        assert!(!matches(
            &rm(PathMatch::Prefix("/API".into())),
            Method::GET,
            "/api",
            &h
        ));
        let mut ci = rm(PathMatch::Prefix("/API".into()));
        ci.case_sensitive = false;
        assert!(matches(&ci, Method::GET, "/api", &h));
        assert!(matches(
            &rm(PathMatch::Exact("/a".into())),
            Method::GET,
            "/a?q=1",
            &h
        ));
        assert!(!matches(
            &rm(PathMatch::Exact("/a".into())),
            Method::GET,
            "/ab",
            &h
        ));
        let re = crate::http::matcher::full_match_regex("/v[0-9]+/.*").expect("re");
        assert!(matches(
            &rm(PathMatch::Regex(re.clone())),
            Method::GET,
            "/v2/x?y",
            &h
        ));
        assert!(!matches(
            &rm(PathMatch::Regex(re)),
            Method::GET,
            "/x/v2/x",
            &h
        ));
        let sp = rm(PathMatch::SeparatedPrefix("/api".into()));
        assert!(matches(&sp, Method::GET, "/api", &h));
        assert!(matches(&sp, Method::GET, "/api/x", &h));
        assert!(!matches(&sp, Method::GET, "/apix", &h));
        assert!(matches(&rm(PathMatch::Connect), Method::CONNECT, "", &h));
        assert!(!matches(
            &rm(PathMatch::Prefix("/".into())),
            Method::CONNECT,
            "/",
            &h
        ));
    }

    #[test]
    fn headers_grpc_and_query_all_must_match() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/grpc+proto".parse().expect("v"));
        let mut m = rm(PathMatch::Prefix("/".into()));
        m.grpc = true;
        assert!(matches(&m, Method::POST, "/svc/M", &h));
        assert!(!matches(&m, Method::POST, "/svc/M", &HeaderMap::new()));
        m.headers.push(HeaderMatcher {
            key: HeaderKey::parse("x-env").expect("k"),
            test: HeaderTest::String(StringMatch::Exact("canary".into(), false)),
            invert: false,
            missing_as_empty: false,
        });
        assert!(!matches(&m, Method::POST, "/svc/M", &h));
        h.insert("x-env", "canary".parse().expect("v"));
        assert!(matches(&m, Method::POST, "/svc/M", &h));
        m.query.push(QueryMatcher {
            name: "a".into(),
            value: None,
        });
        assert!(!matches(&m, Method::POST, "/svc/M", &h));
        assert!(matches(&m, Method::POST, "/svc/M?a=1", &h));
    }

    #[test]
    fn weighted_split_follows_weights() {
        let arm = |n: &str, w| WeightedCluster {
            name: n.into(),
            weight: w,
            request_headers: HeaderMutation::default(),
            response_headers: HeaderMutation::default(),
        };
        let choice = ClusterChoice::Weighted(vec![arm("a", 90), arm("b", 10), arm("c", 0)], 100);
        let h = HeaderMap::new();
        let mut counts = HashMap::new();
        for _ in 0..10_000 {
            let (name, _) = choice.pick(&h).expect("pick");
            *counts.entry(name.to_string()).or_insert(0) += 1;
        }
        let a = counts["a"];
        assert!((8_500..9_500).contains(&a), "a got {a}");
        assert!(!counts.contains_key("c"));
    }

    #[test]
    fn redirects() {
        let r = |scheme: Option<&str>, host: Option<&str>, port, path, strip| Redirect {
            scheme: scheme.map(str::to_string),
            host: host.map(str::to_string),
            port,
            path,
            status: StatusCode::MOVED_PERMANENTLY,
            strip_query: strip,
        };
        assert_eq!(
            r(Some("https"), None, None, RedirectPath::Keep, false)
                .location("http", "a.com:80", "/x?y=1", None),
            "https://a.com/x?y=1"
        );
        assert_eq!(
            r(
                None,
                Some("b.com"),
                Some(8443),
                RedirectPath::Path("/new".into()),
                true
            )
            .location("http", "a.com", "/x?y=1", None),
            "http://b.com:8443/new"
        );
        assert_eq!(
            r(None, None, None, RedirectPath::Prefix("/v2".into()), false).location(
                "http",
                "a.com",
                "/v1/users?q",
                Some("/v1")
            ),
            "http://a.com/v2/users?q"
        );
    }
}
