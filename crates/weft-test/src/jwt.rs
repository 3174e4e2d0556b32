//! Token issuers for tests: key pairs made here (RSA 2048 for RS256, P-256 for ES256),
//! the JWKS that publishes them, and tokens they sign; and a small HTTP server that
//! serves a JWKS, for `remote_jwks`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

enum Signer {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

/// An issuer with one signing key.
pub struct Issuer {
    /// Its `iss`.
    pub iss: String,
    kid: String,
    signer: Signer,
}

impl Issuer {
    /// An RS256 issuer.
    pub fn rsa(iss: &str, kid: &str) -> Issuer {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        Issuer {
            iss: iss.into(),
            kid: kid.into(),
            signer: Signer::Rs256(pair),
        }
    }

    /// An ES256 issuer.
    pub fn ec(iss: &str, kid: &str) -> Issuer {
        let pair =
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key");
        Issuer {
            iss: iss.into(),
            kid: kid.into(),
            signer: Signer::Es256(pair),
        }
    }

    /// Its public key as a JWK.
    pub fn jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match &self.signer {
            Signer::Rs256(pair) => {
                let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
                       "n": b64(&public.n), "e": b64(&public.e)})
            }
            Signer::Es256(pair) => {
                // The uncompressed point: 04 || x || y.
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "kid": self.kid, "crv": "P-256",
                       "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
        }
    }

    /// A token with `claims` (`iss` added unless present).
    pub fn sign(&self, claims: Value) -> String {
        let mut claims = claims;
        if let Some(map) = claims.as_object_mut() {
            map.entry("iss").or_insert(json!(self.iss));
        }
        let alg = match self.signer {
            Signer::Rs256(_) => "RS256",
            Signer::Es256(_) => "ES256",
        };
        let header = json!({"alg": alg, "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match &self.signer {
            Signer::Rs256(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("RSA signature");
                sig
            }
            Signer::Es256(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("EC signature")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A token for `sub` and `aud`, valid for an hour.
    pub fn token(&self, sub: &str, aud: &str) -> String {
        self.sign(json!({"sub": sub, "aud": aud, "iat": now(), "exp": now() + 3600}))
    }
}

/// The JWKS publishing the issuers' keys.
pub fn jwks(issuers: &[&Issuer]) -> String {
    json!({"keys": issuers.iter().map(|i| i.jwk()).collect::<Vec<_>>()}).to_string()
}

/// An HTTP/1.1 server answering every request with its current status and body (a
/// JWKS), counting the requests.
pub struct JwksServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests served.
    pub hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<(u16, String)>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Starts serving `body` with 200 (call inside a runtime).
    pub async fn start(body: String) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(Mutex::new((200, body)));
        let (h, a) = (hits.clone(), answer.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h, a) = (h.clone(), a.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = a.lock().expect("answer").clone();
                        let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        JwksServer {
            addr,
            hits,
            answer,
            task,
        }
    }

    /// Answers with `status` and `body` from now on.
    pub fn set(&self, status: u16, body: &str) {
        *self.answer.lock().expect("answer") = (status, body.to_string());
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
