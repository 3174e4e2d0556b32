//! `productpage`: the page people open. It calls `details` and `reviews` and renders
//! both; signing in as a user (`/login?user=jason`) sends `end-user: jason` with every
//! call, which is what routing by user matches on.

use super::{id_in, json, text};
use crate::client::Client;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

/// `GET /`, `/productpage`, `/login`, `/logout`, `/api/v1/products/{id}[/reviews|/ratings]`.
pub async fn handle(req: Request<Incoming>, client: &Client) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let user = cookie(req.headers(), "user");
    let mut headers = req.headers().clone();
    if let Some(u) = &user {
        if let Ok(v) = HeaderValue::from_str(u) {
            headers.insert("end-user", v);
        }
    }
    match path.as_str() {
        "/" | "/productpage" => page(client, &headers, user.as_deref()).await,
        "/login" => {
            let who = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("user=")))
                .unwrap_or("jason")
                .to_string();
            let mut r = text(StatusCode::FOUND, "");
            r.headers_mut()
                .insert("location", HeaderValue::from_static("/productpage"));
            if let Ok(v) = HeaderValue::from_str(&format!("user={who}; Path=/")) {
                r.headers_mut().insert("set-cookie", v);
            }
            r
        }
        "/logout" => {
            let mut r = text(StatusCode::FOUND, "");
            r.headers_mut()
                .insert("location", HeaderValue::from_static("/productpage"));
            r.headers_mut().insert(
                "set-cookie",
                HeaderValue::from_static("user=; Path=/; Max-Age=0"),
            );
            r
        }
        p if p.starts_with("/api/v1/products") => {
            let id = id_in(p.trim_end_matches("/reviews").trim_end_matches("/ratings"));
            let target = if p.ends_with("/reviews") {
                format!("http://reviews:9080/reviews/{id}")
            } else if p.ends_with("/ratings") {
                format!("http://ratings:9080/ratings/{id}")
            } else {
                format!("http://details:9080/details/{id}")
            };
            match client.get_json(&target, &headers).await {
                Ok(v) => json(v),
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn page(
    client: &Client,
    headers: &http::HeaderMap,
    user: Option<&str>,
) -> Response<Full<Bytes>> {
    let (details, reviews) = tokio::join!(
        client.get_json("http://details:9080/details/0", headers),
        client.get_json("http://reviews:9080/reviews/0", headers),
    );
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Simple Bookstore App</title>\
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}.black{color:#222}.red{color:#c00}\
.err{color:#a60}table td{padding:.2em .8em}</style></head><body>",
    );
    html.push_str("<h1>The Comedy of Errors</h1>");
    match user {
        Some(u) => html.push_str(&format!(
            "<p>Signed in as <b>{}</b> · <a href=\"/logout\">sign out</a></p>",
            escape(u)
        )),
        None => html.push_str("<p><a href=\"/login?user=jason\">Sign in as jason</a></p>"),
    }
    html.push_str("<h2>Book Details</h2>");
    match details {
        Ok(d) => {
            html.push_str("<table>");
            for key in [
                "type",
                "pages",
                "publisher",
                "language",
                "ISBN-10",
                "ISBN-13",
            ] {
                html.push_str(&format!(
                    "<tr><td>{key}</td><td>{}</td></tr>",
                    escape(&d[key].to_string().replace('"', ""))
                ));
            }
            html.push_str("</table>");
        }
        Err(e) => html.push_str(&format!(
            "<p class=\"err\">Error fetching product details: {}</p>",
            escape(&e)
        )),
    }
    html.push_str("<h2>Book Reviews</h2>");
    match reviews {
        Ok(r) => {
            html.push_str(&format!(
                "<p><small>served by {}</small></p>",
                escape(r["podname"].as_str().unwrap_or("?"))
            ));
            for review in r["reviews"].as_array().cloned().unwrap_or_default() {
                html.push_str(&format!(
                    "<blockquote><p>{}</p><small>{}</small>",
                    escape(review["text"].as_str().unwrap_or("")),
                    escape(review["reviewer"].as_str().unwrap_or(""))
                ));
                if let Some(stars) = review["rating"]["stars"].as_u64() {
                    let color = review["rating"]["color"].as_str().unwrap_or("black");
                    html.push_str(&format!(
                        "<p class=\"{color}\">{}{}</p>",
                        "★".repeat(stars as usize),
                        "☆".repeat(5usize.saturating_sub(stars as usize))
                    ));
                } else if let Some(err) = review["rating"]["error"].as_str() {
                    html.push_str(&format!("<p class=\"err\">{}</p>", escape(err)));
                }
                html.push_str("</blockquote>");
            }
        }
        Err(e) => html.push_str(&format!(
            "<p class=\"err\">Error fetching product reviews: {}</p>",
            escape(&e)
        )),
    }
    html.push_str("</body></html>");
    let mut resp = text(StatusCode::OK, html);
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers.get_all("cookie").iter().find_map(|v| {
        v.to_str().ok()?.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_string())
        })
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
