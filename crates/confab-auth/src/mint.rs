//! Token minting: the guest endpoint and the `confab token` tool sign identities here,
//! with the same key rules the verifier applies, so whatever this mints that verifier
//! accepts.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::keys;
use crate::util::{check_secret_len, read_key_file, read_secret_file};
use crate::{AuthError, SUB_MAX_CHARS};

/// The identity and lifetime of a token to mint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MintRequest {
    /// The `sub` claim: 1-128 characters.
    pub sub: String,
    /// The `name` claim.
    pub name: String,
    /// The `roles` claim (left out when empty).
    pub roles: Vec<String>,
    /// The `rooms` claim (left out when empty).
    pub rooms: Vec<String>,
    /// `exp` = now + `ttl` (whole seconds).
    pub ttl: Duration,
    /// The `iss` claim, if any.
    pub issuer: Option<String>,
    /// The `aud` claim, if any.
    pub audience: Option<String>,
    /// Sets `guest: true` (left out when false).
    pub guest: bool,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    rooms: &'a [String],
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    guest: bool,
}

/// Signs tokens with one key: an HS256 secret, or an RSA (RS256) / EC P-256 (ES256)
/// private key.
#[derive(Clone)]
pub struct Signer {
    /// `Err` holds why the key cannot sign (an HS256 secret that is too short).
    key: Result<EncodingKey, String>,
    alg: Algorithm,
    kid: Option<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// An HS256 signer. A secret shorter than 32 bytes makes [`Signer::mint`] fail with
    /// [`AuthError::Config`] (the verifier refuses such secrets too).
    pub fn hs256(secret: Vec<u8>) -> Self {
        let key = check_secret_len(&secret, "the HS256 secret")
            .map_err(|e| e.to_string())
            .and_then(|()| EncodingKey::from_secret(&secret).map_err(|e| e.to_string()));
        Signer {
            key,
            alg: Algorithm::HS256,
            kid: None,
        }
    }

    /// A signer from a PEM private key: RSA (PKCS#8 or PKCS#1, >= 2048 bits) → RS256,
    /// EC P-256 (PKCS#8 or SEC1) → ES256. Encrypted keys are refused.
    pub fn from_private_key_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let (key, alg) = keys::signing_key_from_pem(pem)?;
        Ok(Signer {
            key: Ok(key),
            alg,
            kid: None,
        })
    }

    /// An HS256 signer from a secret file (trailing whitespace trimmed, >= 32 bytes).
    pub fn from_secret_file(path: &Path) -> Result<Self, AuthError> {
        Ok(Signer::hs256(read_secret_file(path)?))
    }

    /// A signer from a PEM private key file (see [`Signer::from_private_key_pem`]).
    pub fn from_private_key_file(path: &Path) -> Result<Self, AuthError> {
        let pem = read_key_file(path, "private key file")?;
        Signer::from_private_key_pem(&pem).map_err(|e| match e {
            AuthError::Config(m) => AuthError::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Puts `kid` in the header of every token minted (to match a JWKS entry).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The JWS algorithm name: `HS256`, `RS256` or `ES256`.
    pub fn algorithm(&self) -> &'static str {
        match self.alg {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            _ => "ES256",
        }
    }

    /// Signs a token for `req`: `iat` = now, `exp` = now + `req.ttl`.
    pub fn mint(&self, req: &MintRequest) -> Result<String, AuthError> {
        let key = self
            .key
            .as_ref()
            .map_err(|m| AuthError::Config(m.clone()))?;
        let n = req.sub.chars().count();
        if n == 0 || n > SUB_MAX_CHARS {
            return Err(AuthError::Invalid(format!(
                "sub must be 1-{SUB_MAX_CHARS} characters"
            )));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            sub: &req.sub,
            name: &req.name,
            roles: &req.roles,
            rooms: &req.rooms,
            iat: now,
            exp: now.saturating_add(req.ttl.as_secs()),
            iss: req.issuer.as_deref(),
            aud: req.audience.as_deref(),
            guest: req.guest,
        };
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| AuthError::Config(format!("signing failed: {e}")))
    }
}
