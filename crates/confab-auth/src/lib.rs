//! confab-auth: who a connection is.
//!
//! confab identifies users by JSON Web Tokens. This crate verifies them ([`Verifier`]:
//! HS256 with a shared secret, RS256/ES256 with a PEM public key or a JWKS file) and
//! mints them ([`Signer`]: the guest endpoint and the `confab token` tool). It is pure
//! except for reading key files, so every rule is unit-tested here and the gateway only
//! wires it to HTTP and Socket.IO.
//!
//! The rules that matter for security live in [`Verifier::verify`]: each key allows
//! exactly one algorithm (so `alg: none` and HS/RS confusion are refused), `exp` is
//! required, `nbf`, `iss` and `aud` are checked, and `sub`/`name` must be present.

mod keys;
mod mint;
mod util;
mod verify;

pub use mint::{MintRequest, Signer};
pub use util::{parse_duration, random_id, random_secret, read_secret_file};
pub use verify::{Verifier, VerifierConfig, MAX_LEEWAY_S, MAX_TOKEN_LEN};

/// Longest accepted `sub` claim, in characters.
pub const SUB_MAX_CHARS: usize = 128;

/// Which identities a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone may connect under any free name (the name is the identity).
    Open,
    /// A token is required; the server mints guest tokens on request.
    Guest,
    /// A token from the configured issuer is required; no guest tokens.
    Jwt,
}

impl AuthMode {
    /// The configuration spelling: `open`, `guest` or `jwt`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Open => "open",
            AuthMode::Guest => "guest",
            AuthMode::Jwt => "jwt",
        }
    }
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    /// `open`, `guest` or `jwt` (ASCII case and surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Ok(AuthMode::Open),
            "guest" => Ok(AuthMode::Guest),
            "jwt" => Ok(AuthMode::Jwt),
            _ => Err(format!(
                "unknown auth mode {:?}: expected one of open, guest, jwt",
                s.chars().take(32).collect::<String>()
            )),
        }
    }
}

impl std::fmt::Display for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim: 1-128 characters (the caller applies its own user-id rules).
    pub id: String,
    /// The `name` claim, raw: the caller validates and normalises it.
    pub name: String,
    /// The `roles` claim; empty when absent.
    pub roles: Vec<String>,
    /// The `rooms` claim; empty when absent.
    pub rooms: Vec<String>,
    /// The `exp` claim, unix seconds.
    pub expires_at: Option<u64>,
    /// True when the token carries `guest: true` (minted by the guest endpoint).
    pub guest: bool,
}

/// Why a token was refused or a key could not be used.
///
/// Messages never contain the token or key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token was refused; the message says why.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The keys could not be loaded or used.
    #[error("auth configuration: {0}")]
    Config(String),
}

impl AuthError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        AuthError::Invalid(msg.into())
    }
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        AuthError::Config(msg.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_mode_parses_and_prints() {
        for m in [AuthMode::Open, AuthMode::Guest, AuthMode::Jwt] {
            assert_eq!(m.as_str().parse::<AuthMode>().unwrap(), m);
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!(" JWT ".parse::<AuthMode>().unwrap(), AuthMode::Jwt);
        let err = "oauth".parse::<AuthMode>().unwrap_err();
        assert!(
            err.contains("open") && err.contains("guest") && err.contains("jwt"),
            "{err}"
        );
    }

    #[test]
    fn errors_display_their_kind() {
        assert_eq!(
            AuthError::invalid("token expired").to_string(),
            "invalid token: token expired"
        );
        assert!(AuthError::config("x")
            .to_string()
            .starts_with("auth configuration"));
    }
}
