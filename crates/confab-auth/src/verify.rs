//! Token verification: from a bearer string to an [`Identity`], or a reason to refuse it.
//!
//! The keys sit behind a lock so that [`Verifier::reload`] (on SIGHUP, or when an
//! identity provider rotates its JWKS) can swap them without a restart; a reload that
//! fails keeps the keys in use.

use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use parking_lot::RwLock;
use serde_json::Value;

use crate::keys::{self, VerifyKey};
use crate::util::{check_secret_len, read_key_file, read_secret_file};
use crate::{AuthError, Identity, SUB_MAX_CHARS};

/// Longest token accepted, in bytes: bounds the work an anonymous client can cause.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest accepted clock leeway, in seconds.
pub const MAX_LEEWAY_S: u64 = 86_400;

/// Where the verification keys come from, plus the claims checks.
///
/// At least one of `secret_file`, `secret`, `public_key_file` and `jwks_file` must be
/// set; several may be (a token is then accepted by any key of its algorithm).
#[derive(Clone, Default)]
pub struct VerifierConfig {
    /// HS256 shared secret: the file's content, trailing whitespace trimmed, >= 32 bytes.
    pub secret_file: Option<PathBuf>,
    /// An HS256 secret given directly (>= 32 bytes); used if `secret_file` is `None`.
    pub secret: Option<Vec<u8>>,
    /// PEM public key: RSA (→ RS256) or EC P-256 (→ ES256), detected.
    pub public_key_file: Option<PathBuf>,
    /// JWKS JSON: every RSA (RS256) and EC P-256 (ES256) key in it; a token's `kid`
    /// selects among them, a token without `kid` is tried against each.
    pub jwks_file: Option<PathBuf>,
    /// When set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` is required and must contain it.
    pub audience: Option<String>,
    /// Clock leeway for `exp` and `nbf`, in seconds (at most [`MAX_LEEWAY_S`]).
    pub leeway_s: u64,
}

impl std::fmt::Debug for VerifierConfig {
    // Hand-written so that the in-memory secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierConfig")
            .field("secret_file", &self.secret_file)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("public_key_file", &self.public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_s", &self.leeway_s)
            .finish()
    }
}

/// Verifies tokens against the configured keys and claim rules.
pub struct Verifier {
    cfg: VerifierConfig,
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    hs256: Validation,
    rs256: Validation,
    es256: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("cfg", &self.cfg)
            .field("keys", &self.keys.read().len())
            .finish()
    }
}

fn validation(alg: Algorithm, cfg: &VerifierConfig) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = cfg.leeway_s;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    match &cfg.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        // Without a configured audience, a token's `aud` is not ours to judge.
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

fn load_keys(cfg: &VerifierConfig) -> Result<Vec<VerifyKey>, AuthError> {
    let mut out = Vec::new();
    if let Some(path) = &cfg.secret_file {
        out.push(keys::hs256_key(&read_secret_file(path)?)?);
    } else if let Some(secret) = &cfg.secret {
        check_secret_len(secret, "the configured secret")?;
        out.push(keys::hs256_key(secret)?);
    }
    if let Some(path) = &cfg.public_key_file {
        let what = format!("public key file {}", path.display());
        let pem = read_key_file(path, "public key file")?;
        out.push(keys::public_key_from_pem(&pem, &what)?);
    }
    if let Some(path) = &cfg.jwks_file {
        let what = format!("JWKS file {}", path.display());
        let json = read_key_file(path, "JWKS file")?;
        out.extend(keys::jwks_keys(&json, &what)?);
    }
    if out.is_empty() {
        return Err(AuthError::config(
            "no verification key configured: set a secret file, a secret, a public key file or a JWKS file",
        ));
    }
    Ok(out)
}

/// An algorithm name from a token header, safe to echo in an error message.
fn shown_alg(alg: &str) -> String {
    if !alg.is_empty() && alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) {
        format!("`{alg}`")
    } else {
        "(unprintable)".to_owned()
    }
}

fn jwt_error(e: &jsonwebtoken::errors::Error) -> AuthError {
    let msg = match e.kind() {
        ErrorKind::ExpiredSignature => "token expired".to_owned(),
        ErrorKind::ImmatureSignature => "token not yet valid (nbf is in the future)".to_owned(),
        ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
        ErrorKind::InvalidAudience => "wrong audience".to_owned(),
        ErrorKind::InvalidSignature => "bad signature".to_owned(),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "algorithm not allowed".to_owned()
        }
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim `{c}`"),
        ErrorKind::InvalidClaimFormat(c) => format!("claim `{c}` has the wrong type"),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "malformed token".to_owned(),
        _ => "token refused".to_owned(),
    };
    AuthError::Invalid(msg)
}

/// A failure that a different key of the same algorithm might not have.
fn try_next_key(e: &jsonwebtoken::errors::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
    )
}

struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn parse_header(token: &str) -> Result<TokenHeader, AuthError> {
    let malformed = |why: &str| AuthError::Invalid(format!("malformed token ({why})"));
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| malformed("header is not base64url"))?;
    let header: Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("header is not JSON"))?;
    let obj = header
        .as_object()
        .ok_or_else(|| malformed("header is not a JSON object"))?;
    let alg = obj
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("header has no alg"))?;
    let alg = match alg {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        other => {
            return Err(AuthError::Invalid(format!(
                "algorithm {} not allowed",
                shown_alg(other)
            )))
        }
    };
    let kid = match obj.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(malformed("kid is not a string")),
    };
    Ok(TokenHeader { alg, kid })
}

fn string_list(
    claims: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Vec<String>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    AuthError::Invalid(format!("claim `{name}` must be an array of strings"))
                })
            })
            .collect(),
        Some(_) => Err(AuthError::Invalid(format!(
            "claim `{name}` must be an array of strings"
        ))),
    }
}

fn identity(claims: Value) -> Result<Identity, AuthError> {
    let Value::Object(claims) = claims else {
        return Err(AuthError::invalid(
            "malformed token (claims are not an object)",
        ));
    };
    let id = match claims.get("sub") {
        None | Some(Value::Null) => return Err(AuthError::invalid("missing claim `sub`")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(AuthError::invalid("claim `sub` must be a string")),
    };
    let n = id.chars().count();
    if n == 0 || n > SUB_MAX_CHARS {
        return Err(AuthError::Invalid(format!(
            "claim `sub` must be 1-{SUB_MAX_CHARS} characters"
        )));
    }
    let name = match claims.get("name") {
        None | Some(Value::Null) => return Err(AuthError::invalid("missing claim `name`")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(AuthError::invalid("claim `name` must be a string")),
    };
    let guest = match claims.get("guest") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(AuthError::invalid("claim `guest` must be a boolean")),
    };
    // The library has already checked `exp` (present, numeric, not past).
    let expires_at = claims.get("exp").and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    });
    Ok(Identity {
        id: id.clone(),
        name: name.clone(),
        roles: string_list(&claims, "roles")?,
        rooms: string_list(&claims, "rooms")?,
        expires_at,
        guest,
    })
}

impl Verifier {
    /// Loads the keys; at least one key source is required.
    pub fn new(cfg: VerifierConfig) -> Result<Self, AuthError> {
        if cfg.leeway_s > MAX_LEEWAY_S {
            return Err(AuthError::Config(format!(
                "clock leeway {} s is more than the {MAX_LEEWAY_S} s allowed",
                cfg.leeway_s
            )));
        }
        let keys = load_keys(&cfg)?;
        Ok(Verifier {
            hs256: validation(Algorithm::HS256, &cfg),
            rs256: validation(Algorithm::RS256, &cfg),
            es256: validation(Algorithm::ES256, &cfg),
            keys: RwLock::new(Arc::new(keys)),
            cfg,
        })
    }

    /// Re-reads the key files. On error the keys in use are kept and the error returned.
    pub fn reload(&self) -> Result<(), AuthError> {
        let keys = load_keys(&self.cfg)?;
        *self.keys.write() = Arc::new(keys);
        Ok(())
    }

    /// How many keys are loaded (for start-up logs).
    pub fn key_count(&self) -> usize {
        self.keys.read().len()
    }

    /// Checks the token's signature and claims and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::invalid("empty token"));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid(format!(
                "token longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let header = parse_header(token)?;
        let keys = Arc::clone(&self.keys.read());
        let mut of_alg = keys.iter().filter(|k| k.alg == header.alg).peekable();
        if of_alg.peek().is_none() {
            return Err(AuthError::Invalid(format!(
                "algorithm {} not allowed (no key of that type is configured)",
                shown_alg(&format!("{:?}", header.alg))
            )));
        }
        let candidates: Vec<&VerifyKey> = of_alg
            .filter(|k| match (&k.kid, &header.kid) {
                (Some(key_kid), Some(token_kid)) => key_kid == token_kid,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::invalid("no key matches the token's kid"));
        }
        let validation = match header.alg {
            Algorithm::HS256 => &self.hs256,
            Algorithm::RS256 => &self.rs256,
            _ => &self.es256,
        };
        let mut last = None;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.key, validation) {
                Ok(data) => return identity(data.claims),
                Err(e) if try_next_key(&e) => last = Some(e),
                Err(e) => return Err(jwt_error(&e)),
            }
        }
        Err(last.map_or_else(|| AuthError::invalid("bad signature"), |e| jwt_error(&e)))
    }
}
