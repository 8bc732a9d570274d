//! Who a connection is: the handshake credential turned into a checked identity,
//! guest sign-up, token refresh, and display-name reservation.
//!
//! Three modes (`--auth`):
//! - `jwt`: the handshake carries `{token}`, a JWT from the operator's login system,
//!   verified with the configured keys (`confab-auth`).
//! - `guest`: a person picks a display name at `POST /api/guest` and gets a token
//!   signed with the cluster's guest key (the `--jwt-secret-file` secret when given,
//!   else a key every gateway shares through the backend). Operator-issued tokens
//!   (`confab token`) are accepted too when a key is configured.
//! - `open`: `{name}` is the identity (its id is the name). Development only.
//!
//! In `guest` and `jwt` modes a display name is reserved for one user id across
//! the cluster, compared by [`validate::name_key`] (NFKC, case folding, confusable
//! skeleton), while the user is connected and for `name_hold` after last seen.

use crate::ratelimit::TokenBucket;
use confab_auth::{AuthError, AuthMode, MintRequest, Signer, Verifier, VerifierConfig};
use confab_backend::{Presence, UserRef};
use confab_core::protocol::{self, SessionUser};
use confab_core::{validate, ChatError, ErrorCode};
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the gateway authenticates.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// Key files and claim checks of operator-issued tokens.
    pub jwt: VerifierConfig,
    /// How long a display name stays reserved after its holder was last seen.
    pub name_hold: Duration,
    /// Lifetime of a guest token.
    pub guest_ttl: Duration,
    /// `auth:expiring` is pushed this long before a token expires.
    pub expiry_warning: Duration,
    /// Guest sign-ups per second, across this gateway (burst 5×).
    pub guest_rate: f64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Guest,
            jwt: VerifierConfig::default(),
            name_hold: Duration::from_secs(30 * 24 * 3600),
            guest_ttl: Duration::from_secs(30 * 24 * 3600),
            expiry_warning: Duration::from_secs(60),
            guest_rate: 10.0,
        }
    }
}

/// A checked identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    /// Private rooms the token grants.
    pub rooms: Vec<String>,
    /// A guest identity (its name hold never outlives its token).
    pub guest: bool,
    /// Token expiry, ms since the epoch.
    pub expires_at: Option<u64>,
}

impl User {
    pub fn user_ref(&self) -> UserRef {
        UserRef {
            id: self.id.clone(),
            name: self.name.clone(),
        }
    }

    pub fn session_user(&self) -> SessionUser {
        SessionUser {
            id: self.id.clone(),
            name: self.name.clone(),
            roles: self.roles.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// The answer of `POST /api/guest`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuestGrant {
    pub token: String,
    pub user: SessionUser,
}

/// The key name of the guest secret in the backend.
const GUEST_SECRET: &str = "guest-hs256";

/// The gateway's authenticator (one per gateway, shared by every handshake).
pub struct Auth {
    config: AuthConfig,
    /// Verifies every token this gateway accepts (`None` in `open` mode).
    verifier: Option<Verifier>,
    /// Signs guest tokens (`guest` mode only).
    guest_signer: Option<Signer>,
    guest_bucket: Mutex<TokenBucket>,
}

fn unauthorized(msg: impl Into<String>) -> ChatError {
    ChatError::new(ErrorCode::Unauthorized, msg)
}

impl Auth {
    /// Build the authenticator. In `guest` mode without a secret file, the guest key
    /// comes from the backend (the first gateway's random proposal wins), so every
    /// gateway of a cluster accepts every guest token.
    pub async fn new(config: AuthConfig, presence: &dyn Presence) -> Result<Self, String> {
        let bucket = TokenBucket::new(config.guest_rate, config.guest_rate * 5.0, Instant::now());
        let (verifier, guest_signer) = match config.mode {
            AuthMode::Open => (None, None),
            AuthMode::Jwt => {
                let v = Verifier::new(config.jwt.clone()).map_err(|e| e.to_string())?;
                (Some(v), None)
            }
            AuthMode::Guest => {
                let mut vc = config.jwt.clone();
                let secret = match (&vc.secret_file, &vc.secret) {
                    // The key is read once: rotating the guest key needs a restart
                    // (SIGHUP reloads the public keys / JWKS).
                    (Some(path), _) => {
                        confab_auth::read_secret_file(path).map_err(|e| e.to_string())?
                    }
                    (None, Some(secret)) => secret.clone(),
                    (None, None) => presence
                        .shared_secret(GUEST_SECRET, &confab_auth::random_secret())
                        .await
                        .map_err(|e| format!("guest key: {e}"))?,
                };
                vc.secret_file = None;
                vc.secret = Some(secret.clone());
                let v = Verifier::new(vc).map_err(|e| e.to_string())?;
                (Some(v), Some(Signer::hs256(secret)))
            }
        };
        Ok(Self {
            config,
            verifier,
            guest_signer,
            guest_bucket: Mutex::new(bucket),
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.config.mode
    }

    pub fn expiry_warning(&self) -> Duration {
        self.config.expiry_warning
    }

    /// The clock leeway of token checks: a socket is disconnected this long after
    /// its token's `exp`, exactly when a handshake with that token starts being
    /// refused.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.config.jwt.leeway_s)
    }

    /// Re-read the key files (SIGHUP). On error the old keys stay.
    pub fn reload(&self) -> Result<(), AuthError> {
        match &self.verifier {
            Some(v) => v.reload(),
            None => Ok(()),
        }
    }

    /// Check a handshake's `auth` object and reserve the name. Errors are
    /// `unauthorized`, `invalid_name` (open mode) or `name_taken`.
    pub async fn identify(&self, auth: &Value, presence: &dyn Presence) -> Result<User, ChatError> {
        let Some(verifier) = &self.verifier else {
            let raw = auth.get("name").and_then(Value::as_str).unwrap_or("");
            let name = validate::name(raw)?;
            return Ok(User {
                id: name.clone(),
                name,
                roles: Vec::new(),
                rooms: Vec::new(),
                guest: false,
                expires_at: None,
            });
        };
        let token = protocol::token(auth.get("token"))?;
        let user = self.verify(verifier, token)?;
        self.claim(presence, &user).await?;
        Ok(user)
    }

    /// Check an `auth:refresh` token: valid, and for the same user.
    pub fn refresh(&self, current: &UserRef, token: &str) -> Result<User, ChatError> {
        let Some(verifier) = &self.verifier else {
            return Err(ChatError::bad_request(
                "this server does not use tokens (--auth open)",
            ));
        };
        let user = self.verify(verifier, token)?;
        if user.id != current.id {
            return Err(unauthorized("the token is for another user"));
        }
        Ok(user)
    }

    fn verify(&self, verifier: &Verifier, token: &str) -> Result<User, ChatError> {
        // The error already reads "invalid token: <why>".
        let id = verifier
            .verify(token)
            .map_err(|e| unauthorized(e.to_string()))?;
        let user_id = validate::user_id(&id.id)
            .map_err(|e| unauthorized(format!("invalid token: sub: {}", e.message)))?;
        let name = validate::name(&id.name)
            .map_err(|e| unauthorized(format!("invalid token: name: {}", e.message)))?;
        Ok(User {
            id: user_id,
            name,
            roles: id.roles,
            rooms: id.rooms,
            guest: id.guest,
            expires_at: id.expires_at.map(|s| s.saturating_mul(1000)),
        })
    }

    /// Reserve the user's display name (not in `open` mode, where names are shared).
    async fn claim(&self, presence: &dyn Presence, user: &User) -> Result<(), ChatError> {
        if self.config.mode == AuthMode::Open {
            return Ok(());
        }
        let key = validate::name_key(&user.name);
        let hold = self.hold(user.guest, user.expires_at);
        match presence.claim_name(&key, &user.id, hold).await? {
            None => Ok(()),
            Some(_) => Err(ChatError::new(
                ErrorCode::NameTaken,
                format!(
                    "the name `{}` (or one that looks like it) belongs to another user",
                    user.name
                ),
            )),
        }
    }

    /// How long a name stays held from now: the configured hold, but never past
    /// a guest token's expiry (an expired guest identity can never come back, so
    /// its name is free for a new one then).
    fn hold(&self, guest: bool, expires_at: Option<u64>) -> Duration {
        match expires_at.filter(|_| guest) {
            Some(exp) => {
                let left = Duration::from_millis(exp.saturating_sub(now_ms()).max(1));
                left.min(self.config.name_hold)
            }
            None => self.config.name_hold,
        }
    }

    /// Renew a name's hold from now (at disconnect: "last seen"), if the user
    /// still holds it (not after a sign-out released it).
    pub async fn renew_name(
        &self,
        presence: &Arc<dyn Presence>,
        user: &UserRef,
        guest: bool,
        expires_at: Option<u64>,
    ) {
        if self.config.mode == AuthMode::Open {
            return;
        }
        let key = validate::name_key(&user.name);
        let hold = self.hold(guest, expires_at);
        if let Err(e) = presence.renew_name(&key, &user.id, hold).await {
            tracing::warn!(user = %user.id, "name hold not renewed: {e}");
        }
    }

    /// `POST /api/signout` with the token: the identity gives up its display name
    /// now (instead of after the hold), so it can be picked again. Returns whether
    /// a name was released. Tokens themselves stay valid until they expire.
    pub async fn sign_out(&self, token: &str, presence: &dyn Presence) -> Result<bool, ChatError> {
        let Some(verifier) = &self.verifier else {
            return Ok(false);
        };
        let user = self.verify(verifier, token)?;
        Ok(presence
            .release_name(&validate::name_key(&user.name), &user.id)
            .await?)
    }

    /// `POST /api/guest {name}`: a new guest identity holding `name`.
    pub async fn guest(
        &self,
        name: &str,
        presence: &dyn Presence,
    ) -> Result<GuestGrant, ChatError> {
        let Some(signer) = &self.guest_signer else {
            return Err(ChatError::new(
                ErrorCode::Forbidden,
                format!(
                    "guest sign-in is disabled on this server (--auth {})",
                    self.config.mode.as_str()
                ),
            ));
        };
        if !self.guest_bucket.lock().try_take(Instant::now()) {
            return Err(ChatError::new(
                ErrorCode::RateLimited,
                "too many guest sign-ups right now, try again in a few seconds",
            ));
        }
        let name = validate::name(name)?;
        let id = confab_auth::random_id("g_");
        let ttl = self.config.guest_ttl;
        let user = User {
            id,
            name,
            roles: Vec::new(),
            rooms: Vec::new(),
            guest: true,
            expires_at: Some(now_ms().saturating_add(ttl.as_millis() as u64)),
        };
        self.claim(presence, &user).await?;
        let token = signer
            .mint(&MintRequest {
                sub: user.id.clone(),
                name: user.name.clone(),
                roles: Vec::new(),
                rooms: Vec::new(),
                ttl,
                issuer: self.config.jwt.issuer.clone(),
                audience: self.config.jwt.audience.clone(),
                guest: true,
            })
            .map_err(|e| ChatError::internal(format!("guest token: {e}")))?;
        // What the client will present: read back through the verifier, so the
        // grant shows exactly the token's identity and expiry.
        let verifier = self
            .verifier
            .as_ref()
            .ok_or_else(|| ChatError::internal("no verifier"))?;
        let user = self.verify(verifier, &token)?;
        Ok(GuestGrant {
            token,
            user: user.session_user(),
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    confab_backend::now_ms()
}
