//! Small helpers shared by the verifier, the signer and their callers: token lifetimes
//! from configuration strings, random secrets and ids, and the one rule for reading an
//! HS256 secret file (so the verifier and the signer cannot disagree about it).

use std::path::Path;
use std::time::Duration;

use crate::AuthError;

/// Shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: at least the hash size).
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// Reads an HS256 secret: the file's bytes with trailing whitespace removed, at least
/// [`MIN_SECRET_LEN`] bytes long.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, AuthError> {
    let mut bytes = std::fs::read(path).map_err(|e| {
        AuthError::config(format!("cannot read secret file {}: {e}", path.display()))
    })?;
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    check_secret_len(&bytes, &format!("secret file {}", path.display()))?;
    Ok(bytes)
}

pub(crate) fn check_secret_len(secret: &[u8], what: &str) -> Result<(), AuthError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(AuthError::config(format!(
            "{what} holds {} bytes; an HS256 secret needs at least {MIN_SECRET_LEN}",
            secret.len()
        )));
    }
    Ok(())
}

/// Reads a key file for the error-reporting callers (never echoes the content).
pub(crate) fn read_key_file(path: &Path, what: &str) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path)
        .map_err(|e| AuthError::config(format!("cannot read {what} {}: {e}", path.display())))
}

/// A duration from configuration: `90s`, `15m`, `1h`, `30d`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!("invalid duration {t:?}: expected a number with an optional unit s, m, h or d (e.g. 90s, 15m, 1h, 30d)")
    };
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {t:?} is too large"))
}

fn fill_random(buf: &mut [u8]) {
    // The OS random source failing is not something a server can recover from.
    getrandom::fill(buf).expect("the operating system's random source failed");
}

/// 32 random bytes from the operating system: a fresh HS256 secret.
pub fn random_secret() -> Vec<u8> {
    let mut buf = vec![0u8; MIN_SECRET_LEN];
    fill_random(&mut buf);
    buf
}

/// `prefix` followed by 20 random characters of `[a-z2-7]` (100 bits), e.g. `g_3k9...`.
pub fn random_id(prefix: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut buf = [0u8; 20];
    fill_random(&mut buf);
    let mut out = String::with_capacity(prefix.len() + buf.len());
    out.push_str(prefix);
    // 256 is a multiple of 32, so masking keeps every character equally likely.
    out.extend(buf.iter().map(|b| ALPHABET[(b & 31) as usize] as char));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3_600));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(2_592_000)
        );
        assert_eq!(parse_duration("42").unwrap(), Duration::from_secs(42));
        assert_eq!(parse_duration(" 5m ").unwrap(), Duration::from_secs(300));
        for bad in [
            "",
            "s",
            "1w",
            "-1s",
            "1.5h",
            "1 h",
            "h1",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn random_values() {
        assert_eq!(random_secret().len(), 32);
        assert_ne!(random_secret(), random_secret());
        let id = random_id("g_");
        assert_eq!(id.len(), 22);
        assert!(id.starts_with("g_"));
        assert!(id[2..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        assert_ne!(random_id("g_"), random_id("g_"));
    }

    #[test]
    fn secret_files_are_trimmed_and_length_checked() {
        let dir = std::env::temp_dir().join(format!("confab-auth-util-{}", random_id("")));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        std::fs::write(&p, format!("{}\n\n", "k".repeat(32))).unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), b"k".repeat(32));
        std::fs::write(&p, format!("{} \n", "k".repeat(31))).unwrap();
        assert!(matches!(read_secret_file(&p), Err(AuthError::Config(_))));
        assert!(matches!(
            read_secret_file(&dir.join("missing")),
            Err(AuthError::Config(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
