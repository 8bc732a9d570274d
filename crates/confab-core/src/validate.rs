//! Validation rules for user names, room names, message text and client ids.
//!
//! Pure functions from raw input to a checked value or a [`ChatError`] with the
//! documented code. The gateway calls them before anything touches a backend.

use crate::error::{ChatError, ErrorCode};
use unicode_normalization::UnicodeNormalization;

/// Longest user name, in characters (after NFC).
pub const NAME_MAX_CHARS: usize = 32;
/// Longest room name, in bytes (rooms are ASCII).
pub const ROOM_MAX_LEN: usize = 64;
/// Longest client id, in bytes (client ids are ASCII).
pub const CLIENT_ID_MAX_LEN: usize = 64;
/// The room every socket is in after connecting.
pub const DEFAULT_ROOM: &str = "general";

/// A user name: NFC-normalised, 1–32 characters, each a Unicode letter or digit, or
/// one of `_ . -`. Returns the normalised name.
pub fn name(raw: &str) -> Result<String, ChatError> {
    let nfc: String = raw.nfc().collect();
    let count = nfc.chars().count();
    let ok_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '.' | '-');
    if count == 0 || count > NAME_MAX_CHARS || !nfc.chars().all(ok_char) {
        return Err(ChatError::new(
            ErrorCode::InvalidName,
            format!("name must be 1-{NAME_MAX_CHARS} letters, digits, '_', '.' or '-'"),
        ));
    }
    Ok(nfc)
}

/// A room name: `^[a-z0-9][a-z0-9_-]{0,63}$`.
pub fn room(raw: &str) -> Result<&str, ChatError> {
    let b = raw.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = b
        .iter()
        .skip(1)
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-');
    if !first_ok || !rest_ok || b.len() > ROOM_MAX_LEN {
        return Err(ChatError::new(
            ErrorCode::InvalidRoom,
            "room must match ^[a-z0-9][a-z0-9_-]{0,63}$",
        ));
    }
    Ok(raw)
}

/// Message text: 1..=`max_chars` characters, not only whitespace, and no control
/// characters other than `\n` and `\t`. The text is kept verbatim (no trimming, no
/// escaping).
pub fn text(raw: &str, max_chars: usize) -> Result<&str, ChatError> {
    let err = |m: String| Err(ChatError::new(ErrorCode::InvalidText, m));
    if raw.is_empty() {
        return err("text must not be empty".into());
    }
    let mut count = 0usize;
    let mut visible = false;
    for c in raw.chars() {
        count += 1;
        if c.is_control() && c != '\n' && c != '\t' {
            return err(format!(
                "text must not contain control characters (found U+{:04X})",
                c as u32
            ));
        }
        if !c.is_whitespace() {
            visible = true;
        }
    }
    if count > max_chars {
        return err(format!(
            "text is {count} characters, the limit is {max_chars}"
        ));
    }
    if !visible {
        return err("text must not be only whitespace".into());
    }
    Ok(raw)
}

/// A client-chosen message id for idempotent sends: 1–64 of `[A-Za-z0-9_.:-]`.
pub fn client_id(raw: &str) -> Result<&str, ChatError> {
    let ok = !raw.is_empty()
        && raw.len() <= CLIENT_ID_MAX_LEN
        && raw
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'));
    if !ok {
        return Err(ChatError::bad_request(
            "clientId must be 1-64 characters of [A-Za-z0-9_.:-]",
        ));
    }
    Ok(raw)
}

/// A page size: `None` → `default`; otherwise 1..=`max`.
pub fn limit(raw: Option<u64>, default: usize, max: usize) -> Result<usize, ChatError> {
    match raw {
        None => Ok(default),
        Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
        Some(_) => Err(ChatError::bad_request(format!(
            "limit must be an integer between 1 and {max}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: std::fmt::Debug>(r: Result<T, ChatError>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[test]
    fn names_accept_unicode_letters_digits_and_punctuation() {
        for ok in [
            "alice",
            "Zoë",
            "李雷",
            "a",
            "bob_2",
            "j.doe",
            "x-y",
            "١٢٣",
            &"a".repeat(32),
        ] {
            assert!(name(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn names_are_nfc_normalised_before_counting() {
        let decomposed = "Zoe\u{0301}";
        assert_eq!(name(decomposed).unwrap(), "Zoé");
        // 32 decomposed é are 64 chars raw but 32 after NFC.
        let long = "e\u{0301}".repeat(32);
        assert_eq!(name(&long).unwrap().chars().count(), 32);
    }

    #[test]
    fn names_reject_bad_input() {
        for bad in [
            "",
            " ",
            "a b",
            "<script>",
            "a\u{0}",
            "x\ny",
            "emoji😀",
            "semi;",
            &"a".repeat(33),
            "tab\t",
        ] {
            assert_eq!(code(name(bad)), ErrorCode::InvalidName, "{bad:?}");
        }
    }

    #[test]
    fn rooms() {
        for ok in ["general", "a", "0", "room-1", "r_2", &"a".repeat(64)] {
            assert!(room(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "Room",
            "a b",
            "é",
            &"a".repeat(65),
            "a/b",
            "a.b",
        ] {
            assert_eq!(code(room(bad)), ErrorCode::InvalidRoom, "{bad:?}");
        }
    }

    #[test]
    fn text_rules() {
        assert!(text("hi", 4000).is_ok());
        assert!(text("line1\nline2\tx", 4000).is_ok());
        assert!(text(" padded ", 4000).is_ok());
        assert!(text(&"é".repeat(4000), 4000).is_ok());
        assert!(text("<img src=x onerror=alert(1)>", 4000).is_ok());
        for bad in [
            "",
            "   ",
            "\n\t",
            "a\u{0}",
            "bell\u{7}",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            assert_eq!(code(text(bad, 4000)), ErrorCode::InvalidText, "{bad:?}");
        }
        assert_eq!(code(text(&"x".repeat(4001), 4000)), ErrorCode::InvalidText);
    }

    #[test]
    fn client_ids() {
        assert!(client_id("3f2a-uuid:1.x_y").is_ok());
        assert!(client_id(&"a".repeat(64)).is_ok());
        for bad in ["", " ", "a b", &"a".repeat(65), "é"] {
            assert_eq!(code(client_id(bad)), ErrorCode::BadRequest, "{bad:?}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None, 50, 200).unwrap(), 50);
        assert_eq!(limit(Some(1), 50, 200).unwrap(), 1);
        assert_eq!(limit(Some(200), 50, 200).unwrap(), 200);
        assert_eq!(code(limit(Some(0), 50, 200)), ErrorCode::BadRequest);
        assert_eq!(code(limit(Some(201), 50, 200)), ErrorCode::BadRequest);
    }
}
