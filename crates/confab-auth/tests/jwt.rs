//! End-to-end checks of confab-auth against the test-only key fixtures in `tests/keys/`:
//! every accepted form of key round-trips, and every kind of bad token is refused for
//! the right reason.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use confab_auth::{random_id, AuthError, Identity, MintRequest, Signer, Verifier, VerifierConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-only";

fn key_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn key_bytes(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("confab-auth-test-{}", random_id("")));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn request(sub: &str) -> MintRequest {
    MintRequest {
        sub: sub.into(),
        name: "Alice".into(),
        roles: vec!["admin".into()],
        rooms: vec!["general".into(), "ops".into()],
        ttl: Duration::from_secs(600),
        issuer: None,
        audience: None,
        guest: false,
    }
}

fn hs_verifier() -> Verifier {
    Verifier::new(VerifierConfig {
        secret: Some(SECRET.to_vec()),
        ..Default::default()
    })
    .unwrap()
}

/// A token with arbitrary claims, signed by jsonwebtoken directly.
fn hs_token(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn good_claims() -> Value {
    json!({ "sub": "u1", "name": "Alice", "exp": now() + 600 })
}

#[track_caller]
fn refused(r: Result<Identity, AuthError>, needle: &str) {
    match r {
        Err(AuthError::Invalid(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected Invalid containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn hs256_round_trip() {
    let signer = Signer::hs256(SECRET.to_vec());
    assert_eq!(signer.algorithm(), "HS256");
    let token = signer.mint(&request("u1")).unwrap();
    let id = hs_verifier().verify(&token).unwrap();
    assert_eq!(id.id, "u1");
    assert_eq!(id.name, "Alice");
    assert_eq!(id.roles, vec!["admin"]);
    assert_eq!(id.rooms, vec!["general", "ops"]);
    assert!(!id.guest);
    let exp = id.expires_at.unwrap();
    assert!(exp >= now() + 590 && exp <= now() + 610, "{exp}");
}

#[test]
fn guest_claim_and_defaults() {
    let mut req = request("g_abc");
    req.guest = true;
    req.roles.clear();
    req.rooms.clear();
    let token = Signer::hs256(SECRET.to_vec()).mint(&req).unwrap();
    let id = hs_verifier().verify(&token).unwrap();
    assert!(id.guest);
    assert!(id.roles.is_empty() && id.rooms.is_empty());
}

#[test]
fn secret_file_round_trip_and_short_secret_refused() {
    let dir = TempDir::new();
    let path = dir.file("secret", &[SECRET, b"\n"].concat());
    let signer = Signer::from_secret_file(&path).unwrap();
    let v = Verifier::new(VerifierConfig {
        secret_file: Some(path),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        v.verify(&signer.mint(&request("u1")).unwrap()).unwrap().id,
        "u1"
    );

    let short = dir.file("short", b"too-short-secret\n");
    for r in [
        Verifier::new(VerifierConfig {
            secret_file: Some(short.clone()),
            ..Default::default()
        })
        .map(|_| ()),
        Verifier::new(VerifierConfig {
            secret: Some(b"short".to_vec()),
            ..Default::default()
        })
        .map(|_| ()),
        Signer::from_secret_file(&short).map(|_| ()),
        Signer::hs256(b"short".to_vec())
            .mint(&request("u1"))
            .map(|_| ()),
    ] {
        assert!(matches!(r, Err(AuthError::Config(_))), "{r:?}");
    }
}

#[test]
fn no_key_is_a_config_error() {
    let r = Verifier::new(VerifierConfig::default());
    assert!(matches!(r, Err(AuthError::Config(_))));
    let r = Verifier::new(VerifierConfig {
        public_key_file: Some(key_path("missing.pem")),
        ..Default::default()
    });
    assert!(matches!(r, Err(AuthError::Config(_))));
}

#[test]
fn rs256_round_trip_pkcs8_and_pkcs1() {
    let v = Verifier::new(VerifierConfig {
        public_key_file: Some(key_path("rsa_public.pem")),
        ..Default::default()
    })
    .unwrap();
    for file in ["rsa_private.pem", "rsa_private_pkcs1.pem"] {
        let signer = Signer::from_private_key_pem(&key_bytes(file)).unwrap();
        assert_eq!(signer.algorithm(), "RS256", "{file}");
        let token = signer.mint(&request("u1")).unwrap();
        assert_eq!(v.verify(&token).unwrap().id, "u1", "{file}");
    }
    // A different RSA key's token is refused.
    let other = Signer::from_private_key_pem(&key_bytes("rsa2_private.pem")).unwrap();
    refused(
        v.verify(&other.mint(&request("u1")).unwrap()),
        "bad signature",
    );
}

#[test]
fn es256_round_trip_pkcs8_and_sec1() {
    let v = Verifier::new(VerifierConfig {
        public_key_file: Some(key_path("ec_public.pem")),
        ..Default::default()
    })
    .unwrap();
    for file in ["ec_private.pem", "ec_private_sec1.pem"] {
        let signer = Signer::from_private_key_pem(&key_bytes(file)).unwrap();
        assert_eq!(signer.algorithm(), "ES256", "{file}");
        let token = signer.mint(&request("u1")).unwrap();
        assert_eq!(v.verify(&token).unwrap().id, "u1", "{file}");
    }
}

#[test]
fn unusable_keys_are_config_errors() {
    for file in [
        "ec384_private.pem",
        "rsa1024_private.pem",
        "rsa_public.pem",
        "jwks.json",
    ] {
        let r = Signer::from_private_key_pem(&key_bytes(file));
        assert!(matches!(r, Err(AuthError::Config(_))), "{file}: {r:?}");
    }
    // A private key, a P-384 key or a non-PEM file is not a usable public key.
    for file in [
        "rsa_private.pem",
        "ec_private.pem",
        "ec384_public.pem",
        "jwks.json",
    ] {
        let r = Verifier::new(VerifierConfig {
            public_key_file: Some(key_path(file)),
            ..Default::default()
        });
        assert!(matches!(r, Err(AuthError::Config(_))), "{file}: {r:?}");
    }
    let dir = TempDir::new();
    let bad_jwks = [
        &b"not json"[..],
        br#"{"keys": []}"#,
        br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
        br#"{"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB"}]}"#,
        br#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}"#,
    ];
    for (i, content) in bad_jwks.iter().enumerate() {
        let r = Verifier::new(VerifierConfig {
            jwks_file: Some(dir.file(&format!("jwks{i}.json"), content)),
            ..Default::default()
        });
        assert!(matches!(r, Err(AuthError::Config(_))), "jwks #{i}: {r:?}");
    }
}

fn jwks_verifier() -> Verifier {
    Verifier::new(VerifierConfig {
        jwks_file: Some(key_path("jwks.json")),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn jwks_with_kid_selects_the_key() {
    let v = jwks_verifier();
    assert_eq!(
        v.key_count(),
        3,
        "two RSA keys and one EC key; the oct key is ignored"
    );
    let rsa1 = Signer::from_private_key_pem(&key_bytes("rsa_private.pem")).unwrap();
    let rsa2 = Signer::from_private_key_pem(&key_bytes("rsa2_private.pem")).unwrap();
    let ec1 = Signer::from_private_key_pem(&key_bytes("ec_private.pem")).unwrap();
    for (signer, kid) in [(&rsa1, "rsa-1"), (&rsa2, "rsa-2"), (&ec1, "ec-1")] {
        let token = signer.clone().with_kid(kid).mint(&request("u1")).unwrap();
        assert_eq!(v.verify(&token).unwrap().id, "u1", "{kid}");
    }
    // The right key under the wrong kid is refused; so is an unknown kid.
    let token = rsa1.clone().with_kid("rsa-2").mint(&request("u1")).unwrap();
    refused(v.verify(&token), "bad signature");
    let token = rsa1.clone().with_kid("nope").mint(&request("u1")).unwrap();
    refused(v.verify(&token), "kid");
}

#[test]
fn jwks_without_kid_tries_each_key() {
    let v = jwks_verifier();
    for file in ["rsa_private.pem", "rsa2_private.pem", "ec_private.pem"] {
        let signer = Signer::from_private_key_pem(&key_bytes(file)).unwrap();
        assert_eq!(
            v.verify(&signer.mint(&request("u1")).unwrap()).unwrap().id,
            "u1"
        );
    }
    // The JWKS oct key must not make HS256 tokens acceptable.
    let token = jsonwebtoken::encode(
        &Header {
            kid: Some("ignored-oct".into()),
            ..Header::new(Algorithm::HS256)
        },
        &good_claims(),
        &EncodingKey::from_secret(b"secret").unwrap(),
    )
    .unwrap();
    refused(v.verify(&token), "not allowed");
}

#[test]
fn several_key_sources_together() {
    let v = Verifier::new(VerifierConfig {
        secret: Some(SECRET.to_vec()),
        public_key_file: Some(key_path("ec_public.pem")),
        jwks_file: Some(key_path("jwks.json")),
        ..Default::default()
    })
    .unwrap();
    let hs = Signer::hs256(SECRET.to_vec());
    let ec = Signer::from_private_key_pem(&key_bytes("ec_private.pem")).unwrap();
    let rsa = Signer::from_private_key_pem(&key_bytes("rsa2_private.pem")).unwrap();
    for s in [hs, ec, rsa.with_kid("rsa-2")] {
        assert!(v.verify(&s.mint(&request("u1")).unwrap()).is_ok());
    }
}

#[test]
fn forged_signature_refused() {
    let token = Signer::hs256(SECRET.to_vec()).mint(&request("u1")).unwrap();
    let v = hs_verifier();
    // Flip one signature character.
    let mut bytes = token.clone().into_bytes();
    let last = bytes.len() - 5;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    refused(
        v.verify(&String::from_utf8(bytes).unwrap()),
        "bad signature",
    );
    // Keep the signature, change the claims (an admin role for someone else).
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(
        json!({ "sub": "root", "name": "root", "roles": ["admin"], "exp": now() + 600 })
            .to_string(),
    );
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    refused(v.verify(&forged), "bad signature");
}

#[test]
fn wrong_secret_refused() {
    let token = hs_token(b"another-secret-that-is-long-enough-32b", &good_claims());
    refused(hs_verifier().verify(&token), "bad signature");
}

#[test]
fn expiry_and_not_before() {
    let v = hs_verifier();
    let t = now();
    let expired = hs_token(SECRET, &json!({ "sub": "u1", "name": "A", "exp": t - 10 }));
    refused(v.verify(&expired), "expired");
    let future = hs_token(
        SECRET,
        &json!({ "sub": "u1", "name": "A", "exp": t + 600, "nbf": t + 300 }),
    );
    refused(v.verify(&future), "not yet valid");
    let started = hs_token(
        SECRET,
        &json!({ "sub": "u1", "name": "A", "exp": t + 600, "nbf": t - 5 }),
    );
    assert!(v.verify(&started).is_ok());
    let no_exp = hs_token(SECRET, &json!({ "sub": "u1", "name": "A" }));
    refused(v.verify(&no_exp), "missing claim `exp`");
    let bad_exp = hs_token(SECRET, &json!({ "sub": "u1", "name": "A", "exp": "soon" }));
    assert!(v.verify(&bad_exp).is_err());

    // Leeway admits a token that expired a moment ago and one that starts in a moment.
    let lenient = Verifier::new(VerifierConfig {
        secret: Some(SECRET.to_vec()),
        leeway_s: 30,
        ..Default::default()
    })
    .unwrap();
    assert!(lenient.verify(&expired).is_ok());
    let soon = hs_token(
        SECRET,
        &json!({ "sub": "u1", "name": "A", "exp": t + 600, "nbf": t + 10 }),
    );
    assert!(lenient.verify(&soon).is_ok());
    refused(lenient.verify(&future), "not yet valid");
}

#[test]
fn issuer_and_audience() {
    let v = Verifier::new(VerifierConfig {
        secret: Some(SECRET.to_vec()),
        issuer: Some("https://id.example".into()),
        audience: Some("confab".into()),
        ..Default::default()
    })
    .unwrap();
    let signer = Signer::hs256(SECRET.to_vec());
    let mint = |iss: Option<&str>, aud: Option<&str>| {
        let mut r = request("u1");
        r.issuer = iss.map(Into::into);
        r.audience = aud.map(Into::into);
        signer.mint(&r).unwrap()
    };
    assert!(v
        .verify(&mint(Some("https://id.example"), Some("confab")))
        .is_ok());
    refused(
        v.verify(&mint(Some("https://evil.example"), Some("confab"))),
        "wrong issuer",
    );
    refused(v.verify(&mint(None, Some("confab"))), "missing claim `iss`");
    refused(
        v.verify(&mint(Some("https://id.example"), Some("other"))),
        "wrong audience",
    );
    refused(
        v.verify(&mint(Some("https://id.example"), None)),
        "missing claim `aud`",
    );
    // `aud` may be an array that contains ours.
    let token = hs_token(
        SECRET,
        &json!({ "sub": "u1", "name": "A", "exp": now() + 60,
                 "iss": "https://id.example", "aud": ["other", "confab"] }),
    );
    assert!(v.verify(&token).is_ok());
    // Without a configured audience, a token's aud is not checked.
    assert!(hs_verifier()
        .verify(&mint(Some("whoever"), Some("other")))
        .is_ok());
}

#[test]
fn required_and_typed_claims() {
    let v = hs_verifier();
    let exp = now() + 600;
    refused(
        v.verify(&hs_token(SECRET, &json!({ "name": "A", "exp": exp }))),
        "missing claim `sub`",
    );
    refused(
        v.verify(&hs_token(
            SECRET,
            &json!({ "sub": "", "name": "A", "exp": exp }),
        )),
        "`sub`",
    );
    refused(
        v.verify(&hs_token(
            SECRET,
            &json!({ "sub": 7, "name": "A", "exp": exp }),
        )),
        "`sub`",
    );
    let long = "x".repeat(129);
    refused(
        v.verify(&hs_token(
            SECRET,
            &json!({ "sub": long, "name": "A", "exp": exp }),
        )),
        "`sub`",
    );
    let max = "é".repeat(128);
    assert!(v
        .verify(&hs_token(
            SECRET,
            &json!({ "sub": max, "name": "A", "exp": exp })
        ))
        .is_ok());
    refused(
        v.verify(&hs_token(SECRET, &json!({ "sub": "u1", "exp": exp }))),
        "missing claim `name`",
    );
    refused(
        v.verify(&hs_token(
            SECRET,
            &json!({ "sub": "u1", "name": ["A"], "exp": exp }),
        )),
        "`name`",
    );
    for bad in [json!("admin"), json!([1]), json!({"a": 1})] {
        let c = json!({ "sub": "u1", "name": "A", "exp": exp, "roles": bad });
        refused(v.verify(&hs_token(SECRET, &c)), "`roles`");
        let c = json!({ "sub": "u1", "name": "A", "exp": exp, "rooms": bad });
        refused(v.verify(&hs_token(SECRET, &c)), "`rooms`");
    }
    let c = json!({ "sub": "u1", "name": "A", "exp": exp, "guest": "yes" });
    refused(v.verify(&hs_token(SECRET, &c)), "`guest`");
    // Minting refuses a sub the verifier would refuse.
    assert!(Signer::hs256(SECRET.to_vec()).mint(&request("")).is_err());
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn alg_none_refused() {
    let header = b64(&json!({ "alg": "none", "typ": "JWT" }));
    let payload = b64(&good_claims());
    let token = format!("{header}.{payload}.");
    for v in [hs_verifier(), jwks_verifier()] {
        refused(v.verify(&token), "algorithm `none` not allowed");
    }
    // Other spellings and algorithms outside the three.
    for alg in ["None", "NONE", "HS512", "PS256", "EdDSA"] {
        let token = format!("{}.{payload}.", b64(&json!({ "alg": alg })));
        refused(hs_verifier().verify(&token), "not allowed");
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // The classic confusion: an attacker signs HS256 with the server's public key bytes.
    let public_pem = key_bytes("rsa_public.pem");
    let token = hs_token(&public_pem, &good_claims());
    let v = Verifier::new(VerifierConfig {
        public_key_file: Some(key_path("rsa_public.pem")),
        ..Default::default()
    })
    .unwrap();
    refused(v.verify(&token), "algorithm `HS256` not allowed");
    // Also refused when the verifier has a (different) HS secret besides the RSA key.
    let v = Verifier::new(VerifierConfig {
        secret: Some(SECRET.to_vec()),
        public_key_file: Some(key_path("rsa_public.pem")),
        ..Default::default()
    })
    .unwrap();
    refused(v.verify(&token), "bad signature");
}

#[test]
fn rs256_token_refused_by_hs_only_verifier() {
    let signer = Signer::from_private_key_pem(&key_bytes("rsa_private.pem")).unwrap();
    let token = signer.mint(&request("u1")).unwrap();
    refused(
        hs_verifier().verify(&token),
        "algorithm `RS256` not allowed",
    );
    // And an ES256 token presented to an RSA-only verifier.
    let ec = Signer::from_private_key_pem(&key_bytes("ec_private.pem")).unwrap();
    let v = Verifier::new(VerifierConfig {
        public_key_file: Some(key_path("rsa_public.pem")),
        ..Default::default()
    })
    .unwrap();
    refused(v.verify(&ec.mint(&request("u1")).unwrap()), "not allowed");
}

#[test]
fn garbage_refused() {
    let v = hs_verifier();
    let big = "a".repeat(20_000);
    let garbage = [
        "",
        "   ",
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "...",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.AAAA",
        "bm90IGpzb24.e30.AAAA",
        "W10.e30.AAAA",
        "eyJhbGciOjF9.e30.AAAA",
        "ë.ë.ë",
        &big,
    ];
    for g in garbage {
        let r = v.verify(g);
        assert!(matches!(r, Err(AuthError::Invalid(_))), "{g:?}: {r:?}");
    }
}

#[test]
fn error_messages_never_echo_the_token_or_key() {
    let token = hs_token(b"another-secret-that-is-long-enough-32b", &good_claims());
    let msg = hs_verifier().verify(&token).unwrap_err().to_string();
    for part in token.split('.') {
        assert!(!msg.contains(part), "{msg}");
    }
    let msg = Verifier::new(VerifierConfig {
        public_key_file: Some(key_path("rsa_private.pem")),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(!msg.contains("MII"), "{msg}");
    let cfg = VerifierConfig {
        secret: Some(SECRET.to_vec()),
        ..Default::default()
    };
    assert!(!format!("{cfg:?}").contains("0123456789"));
}

#[test]
fn reload_picks_up_a_new_secret_and_keeps_old_keys_on_error() {
    let dir = TempDir::new();
    let old = b"old-secret-old-secret-old-secret-0".to_vec();
    let new = b"new-secret-new-secret-new-secret-1".to_vec();
    let path = dir.file("secret", &old);
    let v = Verifier::new(VerifierConfig {
        secret_file: Some(path.clone()),
        ..Default::default()
    })
    .unwrap();
    let old_token = Signer::hs256(old.clone()).mint(&request("u1")).unwrap();
    let new_token = Signer::hs256(new.clone()).mint(&request("u1")).unwrap();
    assert!(v.verify(&old_token).is_ok());
    refused(v.verify(&new_token), "bad signature");

    std::fs::write(&path, [&new[..], b"\n"].concat()).unwrap();
    v.reload().unwrap();
    assert!(v.verify(&new_token).is_ok());
    refused(v.verify(&old_token), "bad signature");

    // A bad file (too short, then missing) fails the reload and keeps the new keys.
    std::fs::write(&path, b"short\n").unwrap();
    assert!(matches!(v.reload(), Err(AuthError::Config(_))));
    assert!(v.verify(&new_token).is_ok());
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(v.reload(), Err(AuthError::Config(_))));
    assert!(v.verify(&new_token).is_ok());
}

#[test]
fn reload_swaps_a_jwks_file() {
    let dir = TempDir::new();
    let jwks: Value = serde_json::from_slice(&key_bytes("jwks.json")).unwrap();
    let only = |kid: &str| {
        let keys: Vec<Value> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kid"] == kid)
            .cloned()
            .collect();
        json!({ "keys": keys }).to_string().into_bytes()
    };
    let path = dir.file("jwks.json", &only("rsa-1"));
    let v = Verifier::new(VerifierConfig {
        jwks_file: Some(path.clone()),
        ..Default::default()
    })
    .unwrap();
    let rsa2 = Signer::from_private_key_pem(&key_bytes("rsa2_private.pem"))
        .unwrap()
        .with_kid("rsa-2");
    let token = rsa2.mint(&request("u1")).unwrap();
    refused(v.verify(&token), "kid");
    std::fs::write(&path, only("rsa-2")).unwrap();
    v.reload().unwrap();
    assert!(v.verify(&token).is_ok());
    std::fs::write(&path, b"{\"keys\": [").unwrap();
    assert!(v.reload().is_err());
    assert!(v.verify(&token).is_ok());
}
