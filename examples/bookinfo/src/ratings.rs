//! `ratings`: stars given by two reviewers.

use super::{id_in, json};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

/// `GET /ratings/{id}`.
pub fn handle(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let id = id_in(req.uri().path());
    json(serde_json::json!({ "id": id, "ratings": { "Reviewer1": 5, "Reviewer2": 4 } }))
}
