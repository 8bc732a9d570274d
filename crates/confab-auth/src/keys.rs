//! Turning key files into keys, each bound to the one algorithm its type implies.
//!
//! A secret only ever verifies HS256, an RSA key RS256 and an EC P-256 key ES256. That
//! binding is what refuses `alg: none` and the HS/RS confusion attack (an HS256 token
//! whose HMAC secret is the server's public RSA key): the verifier only tries a key for
//! a token whose `alg` is that key's algorithm. Every key is parsed and checked here,
//! at load time, so a bad file is a configuration error at start-up or reload rather
//! than a server that silently refuses every token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use serde_json::Value;

use crate::AuthError;

/// Smallest accepted RSA modulus, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// A verification key and the only algorithm it accepts.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    /// The JWKS `kid`; `None` for the secret and the PEM key.
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

pub(crate) fn hs256_key(secret: &[u8]) -> Result<VerifyKey, AuthError> {
    let key = DecodingKey::from_secret(secret)
        .map_err(|_| AuthError::config("the HS256 secret is empty"))?;
    Ok(VerifyKey {
        kid: None,
        alg: Algorithm::HS256,
        key,
    })
}

/// The label of the first PEM block (`PUBLIC KEY`, `RSA PRIVATE KEY`, ...).
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let len = text[start..].find("-----")?;
    Some(&text[start..start + len])
}

fn rsa_size_ok(bytes: usize, what: &str) -> Result<(), AuthError> {
    if bytes < MIN_RSA_BYTES {
        return Err(AuthError::config(format!(
            "{what} is a {}-bit RSA key; at least 2048 bits are required",
            bytes * 8
        )));
    }
    Ok(())
}

/// An RSA (→ RS256) or EC P-256 (→ ES256) public key in PEM (`PUBLIC KEY`, or
/// `RSA PUBLIC KEY` for PKCS#1). `what` names the source in error messages.
pub(crate) fn public_key_from_pem(pem: &[u8], what: &str) -> Result<VerifyKey, AuthError> {
    match pem_label(pem) {
        Some("PUBLIC KEY") | Some("RSA PUBLIC KEY") => {}
        Some(l) if l.contains("PRIVATE KEY") => {
            return Err(AuthError::config(format!(
                "{what} holds a private key; give the verifier the public key \
                 (openssl pkey -in KEY -pubout)"
            )))
        }
        Some("CERTIFICATE") => {
            return Err(AuthError::config(format!(
                "{what} holds a certificate; extract its public key \
                 (openssl x509 -in CERT -pubkey -noout)"
            )))
        }
        _ => {
            return Err(AuthError::config(format!(
                "{what} is not a PEM public key (expected -----BEGIN PUBLIC KEY-----)"
            )))
        }
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        let der = key
            .try_get_as_bytes()
            .map_err(|_| AuthError::config(format!("{what}: unreadable RSA public key")))?;
        let parsed = rsa::PublicKey::from_pkcs1_der(der)
            .map_err(|_| AuthError::config(format!("{what}: unreadable RSA public key")))?;
        rsa_size_ok(parsed.size(), what)?;
        return Ok(VerifyKey {
            kid: None,
            alg: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        let point = key
            .try_get_as_bytes()
            .map_err(|_| AuthError::config(format!("{what}: unreadable EC public key")))?;
        if point.len() != 65 || p256::PublicKey::from_sec1_bytes(point).is_err() {
            return Err(AuthError::config(format!(
                "{what} is an EC key but not on P-256 (only ES256 is supported)"
            )));
        }
        return Ok(VerifyKey {
            kid: None,
            alg: Algorithm::ES256,
            key,
        });
    }
    Err(AuthError::config(format!(
        "{what} is neither an RSA nor an EC P-256 public key"
    )))
}

fn b64_field(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    what: &str,
) -> Result<Vec<u8>, AuthError> {
    let s = obj
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| AuthError::config(format!("{what} has no string field `{field}`")))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| AuthError::config(format!("{what}: `{field}` is not base64url")))
}

/// Every usable signing key of a JWKS document: RSA keys (→ RS256) and EC P-256 keys
/// (→ ES256). Keys of other types, curves or algorithms, and keys whose `use` is not
/// `sig`, are skipped; a malformed RSA/EC key is an error; so is a set with no usable key.
pub(crate) fn jwks_keys(json: &[u8], what: &str) -> Result<Vec<VerifyKey>, AuthError> {
    let doc: Value = serde_json::from_slice(json)
        .map_err(|e| AuthError::config(format!("{what} is not valid JSON: {e}")))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| AuthError::config(format!("{what} has no `keys` array")))?;
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let obj = entry
            .as_object()
            .ok_or_else(|| AuthError::config(format!("{what}: key #{i} is not an object")))?;
        let kid = match obj.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(AuthError::config(format!(
                    "{what}: key #{i} has a non-string `kid`"
                )))
            }
        };
        let name = match &kid {
            Some(k) => format!("{what}: key #{i} (kid {k:?})"),
            None => format!("{what}: key #{i}"),
        };
        if obj.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        if let Some(ops) = obj.get("key_ops").and_then(Value::as_array) {
            if !ops.iter().any(|o| o == "verify") {
                continue;
            }
        }
        let alg = obj.get("alg").and_then(Value::as_str);
        let key = match obj.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                if alg.is_some_and(|a| a != "RS256") {
                    continue;
                }
                let n = b64_field(obj, "n", &name)?;
                let e = b64_field(obj, "e", &name)?;
                let parsed = rsa::PublicKey::new(
                    rsa::BoxedUint::from_be_slice_vartime(&n),
                    rsa::BoxedUint::from_be_slice_vartime(&e),
                )
                .map_err(|_| AuthError::config(format!("{name} is not a valid RSA public key")))?;
                rsa_size_ok(parsed.size(), &name)?;
                VerifyKey {
                    kid,
                    alg: Algorithm::RS256,
                    key: DecodingKey::from_rsa_raw_components(&n, &e),
                }
            }
            Some("EC") => {
                if obj.get("crv").and_then(Value::as_str) != Some("P-256")
                    || alg.is_some_and(|a| a != "ES256")
                {
                    continue;
                }
                let x = b64_field(obj, "x", &name)?;
                let y = b64_field(obj, "y", &name)?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(AuthError::config(format!(
                        "{name}: P-256 coordinates must be 32 bytes each"
                    )));
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                if p256::PublicKey::from_sec1_bytes(&point).is_err() {
                    return Err(AuthError::config(format!("{name} is not a point on P-256")));
                }
                VerifyKey {
                    kid,
                    alg: Algorithm::ES256,
                    key: DecodingKey::from_ec_der(&point),
                }
            }
            _ => continue,
        };
        out.push(key);
    }
    if out.is_empty() {
        return Err(AuthError::config(format!(
            "{what} has no RS256 or ES256 (P-256) signing key"
        )));
    }
    Ok(out)
}

/// A private key in PEM: RSA (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) → RS256,
/// EC P-256 (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`) → ES256.
pub(crate) fn signing_key_from_pem(pem: &[u8]) -> Result<(EncodingKey, Algorithm), AuthError> {
    let what = "the private key";
    let (key, alg) = match pem_label(pem) {
        Some("PRIVATE KEY") | Some("RSA PRIVATE KEY") => {
            if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
                let parsed = rsa::PrivateKey::from_pkcs1_der(key.as_bytes())
                    .map_err(|_| AuthError::config(format!("{what}: unreadable RSA key")))?;
                rsa_size_ok(parsed.size(), what)?;
                (key, Algorithm::RS256)
            } else if let Ok(key) = EncodingKey::from_ec_pem(pem) {
                if p256::SecretKey::from_pkcs8_der(key.as_bytes()).is_err() {
                    return Err(AuthError::config(format!(
                        "{what} is an EC key but not on P-256 (only ES256 is supported)"
                    )));
                }
                (key, Algorithm::ES256)
            } else {
                return Err(AuthError::config(format!(
                    "{what} is neither an RSA nor an EC P-256 key"
                )));
            }
        }
        Some("EC PRIVATE KEY") => {
            let text = std::str::from_utf8(pem)
                .map_err(|_| AuthError::config(format!("{what} is not PEM text")))?;
            let secret = p256::SecretKey::from_sec1_pem(text).map_err(|_| {
                AuthError::config(format!(
                    "{what} is not a P-256 EC key (only ES256 is supported)"
                ))
            })?;
            let der = secret
                .to_pkcs8_der()
                .map_err(|_| AuthError::config(format!("{what}: cannot re-encode the EC key")))?;
            (EncodingKey::from_ec_der(der.as_bytes()), Algorithm::ES256)
        }
        Some("ENCRYPTED PRIVATE KEY") => {
            return Err(AuthError::config(format!(
                "{what} is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)"
            )))
        }
        Some(l) if l.contains("PUBLIC KEY") => {
            return Err(AuthError::config(format!(
                "{what} file holds a public key; signing needs the private key"
            )))
        }
        _ => {
            return Err(AuthError::config(format!(
                "{what} is not a PEM private key"
            )))
        }
    };
    // A trial signature proves the backend accepts the key before any token is minted.
    jsonwebtoken::crypto::sign(b"confab-auth key check", &key, alg)
        .map_err(|_| AuthError::config(format!("{what} cannot sign {alg:?} tokens")))?;
    Ok((key, alg))
}
