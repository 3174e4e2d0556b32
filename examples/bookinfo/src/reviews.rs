//! `reviews`: two reviews; v2 and v3 add the reviewer's stars from `ratings` (black in
//! v2, red in v3), v1 shows none.

use super::{id_in, json};
use crate::client::Client;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

/// `GET /reviews/{id}`.
pub async fn handle(req: Request<Incoming>, version: u8, client: &Client) -> Response<Full<Bytes>> {
    let id = id_in(req.uri().path());
    let mut reviews = vec![
        serde_json::json!({"reviewer": "Reviewer1", "text": "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"}),
        serde_json::json!({"reviewer": "Reviewer2", "text": "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."}),
    ];
    if version >= 2 {
        let color = if version == 2 { "black" } else { "red" };
        match client
            .get_json(&format!("http://ratings:9080/ratings/{id}"), req.headers())
            .await
        {
            Ok(r) => {
                for review in &mut reviews {
                    let who = review["reviewer"].as_str().unwrap_or("").to_string();
                    review["rating"] =
                        serde_json::json!({"stars": r["ratings"][&who], "color": color});
                }
            }
            Err(e) => {
                for review in &mut reviews {
                    review["rating"] = serde_json::json!({"error": format!("Ratings service is currently unavailable: {e}")});
                }
            }
        }
    }
    json(
        serde_json::json!({"id": id, "podname": format!("reviews-v{version}"), "clustername": "null", "reviews": reviews}),
    )
}
