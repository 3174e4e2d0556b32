//! `details`: facts about the book.

use super::{id_in, json};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

/// `GET /details/{id}`.
pub fn handle(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let id = id_in(req.uri().path());
    json(serde_json::json!({
        "id": id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }))
}
