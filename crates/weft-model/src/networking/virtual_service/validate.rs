//! Istio's VirtualService validation: hosts and gateways, route conflicts, matches
//! and weights (the route's policies are checked in `policies.rs`, TLS and TCP routes
//! in `l4.rs`).

use super::policies::is_authority_header;
use super::*;
use crate::rules;
use crate::validate::{Validate, Validator};

/// Header-name prefix for routing on JWT claims (gateways only).
const CLAIM_PREFIX: &str = "@request.auth.claims.";

impl Validate for VirtualService {
    fn validate(&self, v: &mut Validator<'_>) {
        let delegate = self.hosts.is_empty();
        if delegate {
            // A VirtualService without hosts is a delegate, reached only through another.
            if !self.gateways.is_empty() {
                v.error_at(
                    "gateways",
                    "a delegate VirtualService (one without hosts) must not name gateways",
                );
            }
            if !self.tls.is_empty() {
                v.error_at(
                    "tls",
                    "a delegate VirtualService (one without hosts) cannot have tls routes",
                );
            }
            if !self.tcp.is_empty() {
                v.error_at(
                    "tcp",
                    "a delegate VirtualService (one without hosts) cannot have tcp routes",
                );
            }
        }
        let to_gateway = !self.gateways.is_empty() && !self.gateways.iter().any(|g| g == "mesh");
        let to_mesh = !to_gateway;
        v.each("gateways", &self.gateways, |v, g| {
            rules::check_gateway_name(v, g)
        });

        let mut all_valid = true;
        v.each("hosts", &self.hosts, |v, host| {
            if rules::is_ip(host) {
                return;
            }
            if let Err(e) = rules::check_wildcard_domain(host) {
                v.error(e);
                all_valid = false;
            } else if to_mesh && host == "*" {
                v.error("wildcard host \"*\" is not allowed for virtual services bound to the mesh (name gateways to use it)");
                all_valid = false;
            }
        });
        if all_valid {
            for (i, a) in self.hosts.iter().enumerate() {
                for b in &self.hosts[i + 1..] {
                    if rules::hosts_overlap(a, b) {
                        v.at("hosts", |v| {
                            v.index(i, |v| {
                                v.error(format!("duplicate hosts in virtual service: {a} & {b}"))
                            })
                        });
                    }
                }
            }
        }

        if self.http.is_empty() && self.tcp.is_empty() && self.tls.is_empty() {
            v.error("http, tcp or tls must be provided in a virtual service");
        }
        let ctx = RouteContext {
            delegate,
            to_gateway,
        };
        v.each("http", &self.http, |v, r| r.check(v, ctx));
        v.each("tls", &self.tls, |v, r| r.check(v, &self.hosts));
        v.list("tcp", &self.tcp);
        rules::check_export_to(v, &self.export_to, false);
        warn_unreachable(v, &self.http);
    }
}

/// What an HTTP route's rules depend on.
#[derive(Clone, Copy)]
struct RouteContext {
    /// The route belongs to a delegate VirtualService.
    delegate: bool,
    /// The VirtualService applies only to gateways.
    to_gateway: bool,
}

/// Routes after one that matches everything can never be used.
fn warn_unreachable(v: &mut Validator<'_>, routes: &[HttpRoute]) {
    if let Some(first) = routes.iter().position(|r| r.matches.is_empty()) {
        for i in first + 1..routes.len() {
            v.at("http", |v| {
                v.index(i, |v| {
                    v.warn(format!(
                        "this route is never used: http[{first}] has no match and takes every request"
                    ))
                })
            });
        }
    }
}

impl HttpRoute {
    fn check(&self, v: &mut Validator<'_>, ctx: RouteContext) {
        self.check_conflicts(v, ctx);
        v.each("match", &self.matches, |v, m| m.check(v, ctx));
        v.field("headers", &self.headers);
        if let Some(cors) = &self.cors_policy {
            v.at("corsPolicy", |v| cors.validate(v));
        }
        v.field("fault", &self.fault);
        if let Some(p) = self.mirror_percent {
            v.at("mirrorPercent", |v| {
                if p > 100 {
                    v.error(format!("mirrorPercent must be at most 100 (it is {p})"));
                }
                v.warn("mirrorPercent is deprecated; use mirrorPercentage");
            });
        }
        if let Some(p) = &self.mirror_percentage {
            if !(0.0..=100.0).contains(&p.value) {
                v.error_at(
                    "mirrorPercentage",
                    format!(
                        "mirrorPercentage must be between 0 and 100 (it is {})",
                        p.value
                    ),
                );
            }
        }
        if self.mirror.is_some() && !self.mirrors.is_empty() {
            v.error_at("mirrors", "cannot set both mirror and mirrors");
        }
        v.field("mirror", &self.mirror);
        v.list("mirrors", &self.mirrors);
        v.field("redirect", &self.redirect);
        v.field("directResponse", &self.direct_response);
        v.field("retries", &self.retries);
        v.field("rewrite", &self.rewrite);
        self.check_authority_rewrite(v);
        check_route_destinations(v, &self.route);
        v.field("delegate", &self.delegate);
    }

    fn check_conflicts(&self, v: &mut Validator<'_>, ctx: RouteContext) {
        if self.delegate.is_some() {
            if ctx.delegate {
                v.error_at(
                    "delegate",
                    "a delegate VirtualService's route cannot delegate again",
                );
            }
            if self.redirect.is_some() {
                v.error_at(
                    "redirect",
                    "a route with delegate must not specify redirect",
                );
            }
            if !self.route.is_empty() {
                v.error_at("route", "a route with delegate must not specify route");
            }
            return;
        }
        if self.direct_response.is_some() {
            if !self.route.is_empty() {
                v.error_at(
                    "directResponse",
                    "an HTTP route cannot contain both route and directResponse",
                );
            }
            if self.redirect.is_some() {
                v.error_at(
                    "directResponse",
                    "an HTTP route cannot contain both redirect and directResponse",
                );
            }
            if self.fault.is_some() {
                v.error_at(
                    "fault",
                    "an HTTP route cannot contain both fault and directResponse",
                );
            }
            if self.rewrite.is_some() {
                v.error_at(
                    "rewrite",
                    "an HTTP route cannot contain both rewrite and directResponse",
                );
            }
            return;
        }
        if self.redirect.is_some() {
            if !self.route.is_empty() {
                v.error_at(
                    "redirect",
                    "an HTTP route cannot contain both route and redirect",
                );
            }
            if self.fault.is_some() {
                v.error_at(
                    "fault",
                    "an HTTP route cannot contain both fault and redirect",
                );
            }
            if self.rewrite.is_some() {
                v.error_at(
                    "rewrite",
                    "an HTTP route cannot contain both rewrite and redirect",
                );
            }
        } else if self.route.is_empty() {
            v.error("an HTTP route needs route, redirect, directResponse or delegate");
        }
    }

    /// The authority may be rewritten in one place only.
    fn check_authority_rewrite(&self, v: &mut Validator<'_>) {
        let mut current = self.rewrite.as_ref().and_then(|r| r.authority.clone());
        let Some(request) = self.headers.as_ref().and_then(|h| h.request.as_ref()) else {
            return;
        };
        for (name, value) in request.set.iter().chain(request.add.iter()) {
            if !is_authority_header(name) {
                continue;
            }
            if let Some(have) = &current {
                v.error_at(
                    "headers",
                    format!("the authority header cannot be set twice: have {have:?}, also setting {value:?}"),
                );
                return;
            }
            current = Some(value.clone());
        }
    }
}

fn check_route_destinations(v: &mut Validator<'_>, route: &[HttpRouteDestination]) {
    let mut total: i64 = 0;
    v.each("route", route, |v, d| {
        v.field("destination", &d.destination);
        if let Some(w) = d.weight {
            if w < 0 {
                v.error_at("weight", format!("weight {w} must not be negative"));
            }
            total += i64::from(w);
        }
        v.field("headers", &d.headers);
    });
    if route.len() > 1 && total == 0 {
        v.error_at(
            "route",
            "total destination weight is 0: give at least one destination a weight",
        );
    }
}

impl HttpMatchRequest {
    fn check(&self, v: &mut Validator<'_>, ctx: RouteContext) {
        for (key, m) in [
            ("uri", &self.uri),
            ("scheme", &self.scheme),
            ("method", &self.method),
            ("authority", &self.authority),
        ] {
            if let Some(m) = m {
                v.at(key, |v| check_match(v, m, ctx));
            }
        }
        for (key, map) in [
            ("headers", &self.headers),
            ("withoutHeaders", &self.without_headers),
        ] {
            v.at(key, |v| {
                for (name, m) in map {
                    v.at(name, |v| {
                        if name.starts_with(CLAIM_PREFIX) {
                            if !ctx.to_gateway {
                                v.error("routing on JWT claims is only supported for gateways");
                            }
                        } else {
                            v.check(rules::check_header_name(name));
                        }
                        check_match(v, m, ctx);
                    });
                }
            });
        }
        v.at("queryParams", |v| {
            for (name, m) in &self.query_params {
                v.at(name, |v| check_match(v, m, ctx));
            }
        });
        if let Some(port) = self.port {
            v.check_at("port", rules::check_port(port));
        }
        v.at("sourceLabels", |v| {
            rules::check_labels(v, &self.source_labels)
        });
        v.each("gateways", &self.gateways, |v, g| {
            rules::check_gateway_name(v, g)
        });
        if let Some(ns) = &self.source_namespace {
            if !rules::is_dns1123_label(ns) {
                v.error_at(
                    "sourceNamespace",
                    format!("sourceNamespace {ns:?} is not a valid namespace"),
                );
            }
        }
    }
}

fn check_match(v: &mut Validator<'_>, m: &StringMatch, ctx: RouteContext) {
    m.validate(v);
    if ctx.delegate && matches!(m, StringMatch::Regex(_)) {
        v.error("regex matches are not supported in a delegate VirtualService");
    }
}
