//! Who may talk to the control plane. Every caller of the REST API, of xDS and of
//! certificate signing presents a token (`Authorization: Bearer ...`):
//!
//! - the **admin token**, created at the first start of the first replica, printed
//!   once and written to `<data-dir>/admin-token` (mode 0600): everything;
//! - **join tokens** (`weft token create --service NAME`), each bound to one workload
//!   identity: xDS for that identity, certificates for that identity, health reports
//!   for that identity's workloads.
//!
//! Tokens are JWTs signed with a key kept in the store (sealed on etcd, see
//! [`crate::sealing`]), so any replica verifies any token. Each token has a record in
//! the store; deleting it revokes the token on every replica at once, because
//! verification reads the record.

pub mod jwt;

use crate::identity::Identity;
use crate::proxies::unix_now;
use crate::sealing::{random_bytes, SealError, Sealer};
use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use weft_store::{Store, StoreError};

/// The store key of the token-signing key.
pub const SIGNING_KEY: &str = "/weft/auth/signing-key";
/// The store prefix of token records.
pub const TOKENS: &str = "/weft/auth/tokens/";

/// How long a join token lasts unless told otherwise.
pub const DEFAULT_JOIN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The admin token's lifetime (it is revoked, not expired).
const ADMIN_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Act as one workload identity.
    Workload {
        /// The identity.
        #[serde(flatten)]
        identity: Identity,
    },
}

/// A token's record in the store (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's id (its `jti`).
    pub id: String,
    /// What it allows.
    #[serde(flatten)]
    pub role: Role,
    /// When it was issued (seconds since the Unix epoch).
    pub issued: u64,
    /// When it expires (seconds since the Unix epoch).
    pub expires: u64,
}

/// A token's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    jti: String,
    iat: u64,
    exp: u64,
}

/// Who a caller proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The holder of an admin token.
    Admin,
    /// A workload.
    Workload(Identity),
}

impl Principal {
    /// Whether this principal may act as `identity`.
    pub fn may_act_as(&self, identity: &Identity) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Workload(own) => own == identity,
        }
    }
}

/// Why a caller was refused or the tokens are unavailable.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential, or one that does not prove anything.
    #[error("{0}")]
    Unauthenticated(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored secret is unreadable.
    #[error(transparent)]
    Seal(#[from] SealError),
}

fn new_token_id() -> String {
    random_bytes(12)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Issues, verifies and revokes tokens.
pub struct Tokens {
    store: Arc<dyn Store>,
    key: hmac::Key,
    trust_domain: String,
}

impl Tokens {
    /// Loads the signing key, or creates it (and the admin token, returned) when this
    /// is the first start of the mesh.
    pub async fn open(
        store: Arc<dyn Store>,
        sealer: &Sealer,
        trust_domain: &str,
    ) -> Result<(Tokens, Option<String>), AuthError> {
        let (secret, created) = match store.get(SIGNING_KEY).await? {
            Some(v) => (sealer.open(SIGNING_KEY, &v.value)?, false),
            None => {
                let secret = random_bytes(32);
                match store
                    .put_if(SIGNING_KEY, sealer.seal(SIGNING_KEY, &secret), 0)
                    .await
                {
                    Ok(_) => (secret, true),
                    // Another replica created it first: use theirs.
                    Err(StoreError::Conflict { .. }) => {
                        let v = store.get(SIGNING_KEY).await?.ok_or_else(|| {
                            AuthError::Unauthenticated("the signing key vanished".into())
                        })?;
                        (sealer.open(SIGNING_KEY, &v.value)?, false)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let tokens = Tokens {
            store,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            trust_domain: trust_domain.to_string(),
        };
        let admin = if created {
            Some(tokens.create(Role::Admin, ADMIN_TTL).await?.0)
        } else {
            None
        };
        Ok((tokens, admin))
    }

    /// The trust domain workload identities belong to.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// A new token for `role`, valid for `ttl`, and its record.
    pub async fn create(
        &self,
        role: Role,
        ttl: Duration,
    ) -> Result<(String, TokenRecord), AuthError> {
        let issued = unix_now();
        let record = TokenRecord {
            id: new_token_id(),
            role,
            issued,
            expires: issued.saturating_add(ttl.as_secs()),
        };
        let sub = match &record.role {
            Role::Admin => "admin".to_string(),
            Role::Workload { identity } => identity.spiffe_id(&self.trust_domain),
        };
        let claims = Claims {
            iss: "weft".into(),
            sub,
            jti: record.id.clone(),
            iat: record.issued,
            exp: record.expires,
        };
        let value = serde_json::to_vec(&record).expect("records serialize");
        self.store
            .put(&format!("{TOKENS}{}", record.id), value)
            .await?;
        Ok((jwt::sign(&self.key, &claims), record))
    }

    /// Who `token` proves to be: its signature verifies, it has not expired, and its
    /// record still exists (it was not revoked).
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let refused = |why: &str| AuthError::Unauthenticated(why.to_string());
        let claims: Claims =
            jwt::verify(&self.key, token).map_err(|e| AuthError::Unauthenticated(e.to_string()))?;
        if claims.exp <= unix_now() {
            return Err(refused("the token has expired"));
        }
        let Some(stored) = self.store.get(&format!("{TOKENS}{}", claims.jti)).await? else {
            return Err(refused("the token has been revoked"));
        };
        let record: TokenRecord = serde_json::from_slice(&stored.value)
            .map_err(|_| refused("unreadable token record"))?;
        Ok(match record.role {
            Role::Admin => Principal::Admin,
            Role::Workload { identity } => Principal::Workload(identity),
        })
    }

    /// Verifies the bearer token of an `Authorization` header value.
    pub async fn verify_bearer(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let Some(value) = header else {
            return Err(AuthError::Unauthenticated(
                "a credential is required (Authorization: Bearer TOKEN; see `weft token`)".into(),
            ));
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(AuthError::Unauthenticated(
                "the Authorization header must be `Bearer TOKEN`".into(),
            ));
        };
        self.verify(token.trim()).await
    }

    /// Revokes a token by id; `false` when there was none.
    pub async fn revoke(&self, id: &str) -> Result<bool, AuthError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        Ok(self.store.delete(&format!("{TOKENS}{id}")).await?.is_some())
    }

    /// Every token's record.
    pub async fn list(&self) -> Result<Vec<TokenRecord>, AuthError> {
        let listing = self.store.list(TOKENS).await?;
        Ok(listing
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }
}
