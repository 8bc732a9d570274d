//! Validation rules for user names, room names, message text and client ids.
//!
//! Pure functions from raw input to a checked value or a [`ChatError`] with the
//! documented code. The gateway calls them before anything touches a backend.
//! [`name_key`] is the reservation key that keeps two users from holding names that
//! look alike.

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
/// Longest user id, in characters (after NFC).
pub const USER_ID_MAX_CHARS: usize = 128;

/// True for characters that render as nothing or reorder text: Unicode's
/// default-ignorable code points (zero-width characters, soft hyphen, combining grapheme
/// joiner, Hangul fillers, variation selectors, tags, ...) and the bidi controls
/// (embeddings, overrides, isolates, marks). Names and ids containing them could look
/// identical to another user's.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD            // soft hyphen
        | 0x034F          // combining grapheme joiner
        | 0x061C          // Arabic letter mark (bidi)
        | 0x115F..=0x1160 // Hangul choseong/jungseong fillers
        | 0x17B4..=0x17B5 // Khmer inherent vowels
        | 0x180B..=0x180F // Mongolian variation selectors, vowel separator
        | 0x200B..=0x200F // zero-width space/non-joiner/joiner, LRM, RLM
        | 0x202A..=0x202E // bidi embeddings and overrides
        | 0x2060..=0x206F // word joiner, invisible operators, bidi isolates, deprecated formats
        | 0x3164          // Hangul filler
        | 0xFE00..=0xFE0F // variation selectors
        | 0xFEFF          // zero-width no-break space (BOM)
        | 0xFFA0          // halfwidth Hangul filler
        | 0xFFF0..=0xFFF8 // unassigned, default-ignorable
        | 0x1BCA0..=0x1BCA3 // shorthand format controls
        | 0x1D173..=0x1D17A // musical symbol format controls
        | 0xE0000..=0xE0FFF // tags, variation selectors supplement
    )
}

/// A user name: NFC-normalised, 1–32 characters, each a Unicode letter or digit, or
/// one of `_ . -`, and none invisible ([`is_invisible`]: Hangul fillers are letters to
/// Unicode but render as blanks). Returns the normalised name.
pub fn name(raw: &str) -> Result<String, ChatError> {
    let nfc: String = raw.nfc().collect();
    let count = nfc.chars().count();
    let ok_char =
        |c: char| (c.is_alphanumeric() || matches!(c, '_' | '.' | '-')) && !is_invisible(c);
    if count == 0 || count > NAME_MAX_CHARS || !nfc.chars().all(ok_char) {
        return Err(ChatError::new(
            ErrorCode::InvalidName,
            format!("name must be 1-{NAME_MAX_CHARS} letters, digits, '_', '.' or '-'"),
        ));
    }
    Ok(nfc)
}

/// The key under which a display name is reserved: two names with the same key cannot be
/// held by two different users.
///
/// NFKC (fullwidth and compatibility forms fold to their plain letters), then full
/// Unicode case folding, then the UTS #39 confusables skeleton (Cyrillic `а` → Latin `a`,
/// `m` → `rn`, ...), repeated until it no longer changes (a skeleton prototype can be an
/// upper-case or compatibility character that the first two steps would fold again),
/// and finally NFC so the key is one canonical string. Call it on a name that
/// [`name`] accepted.
pub fn name_key(name: &str) -> String {
    let round = |s: &str| -> String {
        let nfkc: String = s.nfkc().collect();
        let folded = caseless::default_case_fold_str(&nfkc);
        unicode_security::skeleton(&folded).nfc().collect()
    };
    let mut key = round(name);
    // Converges in one or two rounds for real names; the bound keeps it total.
    for _ in 0..4 {
        let next = round(&key);
        if next == key {
            break;
        }
        key = next;
    }
    key
}

/// A user id (a JWT `sub`, a guest id, or in open mode the name itself): NFC, 1–128
/// characters, none of them a control, whitespace or invisible ([`is_invisible`])
/// character. Returns the normalised id.
pub fn user_id(raw: &str) -> Result<String, ChatError> {
    let nfc: String = raw.nfc().collect();
    let count = nfc.chars().count();
    let ok_char = |c: char| !c.is_control() && !c.is_whitespace() && !is_invisible(c);
    if count == 0 || count > USER_ID_MAX_CHARS || !nfc.chars().all(ok_char) {
        return Err(ChatError::new(
            ErrorCode::InvalidName,
            "user id must be 1-128 visible characters",
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

/// Message text: 1..=`max_chars` characters, at least one visible (not whitespace,
/// not [`is_invisible`], not the blank braille pattern U+2800), and no control
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
        if !c.is_whitespace() && !is_invisible(c) && c != '\u{2800}' {
            visible = true;
        }
    }
    if count > max_chars {
        return err(format!(
            "text is {count} characters, the limit is {max_chars}"
        ));
    }
    if !visible {
        return err(
            "text must have a visible character (not only whitespace or invisible characters)"
                .into(),
        );
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
    fn names_reject_invisible_and_bidi_characters() {
        for bad in [
            "al\u{200B}ice",
            "\u{3164}",
            "a\u{3164}",
            "\u{FFA0}",
            "\u{115F}\u{1160}",
            "a\u{202E}b",
            "a\u{2066}b\u{2069}",
            "a\u{200E}",
            "a\u{061C}b",
            "a\u{00AD}b",
            "a\u{034F}b",
            "a\u{FEFF}",
            "a\u{FE0F}",
            "a\u{E0061}",
            "a\u{2060}b",
        ] {
            assert_eq!(code(name(bad)), ErrorCode::InvalidName, "{bad:?}");
        }
    }

    #[test]
    fn name_keys_fold_case_width_and_confusables() {
        let alice = name_key("alice");
        assert_eq!(name_key("ALICE"), alice);
        assert_eq!(name_key("Alice"), alice);
        assert_eq!(name_key("\u{0430}lice"), alice, "Cyrillic a");
        assert_eq!(name_key("ａｌｉｃｅ"), alice, "fullwidth");
        assert_eq!(name_key("ＡＬＩＣＥ"), alice, "fullwidth capitals");
        assert_ne!(name_key("alice"), name_key("bob"));
        assert_ne!(name_key("alice"), name_key("alice2"));
        // UTS #39: `m` and `rn` share a skeleton, so do `l` and `1`, and `0` and `O`.
        assert_eq!(name_key("rn"), name_key("m"));
        assert_eq!(name_key("bill"), name_key("bi1l"));
        assert_eq!(name_key("b0b"), name_key("BOB"));
        // Case folding comes first, so capital `I` keys as `i`, not as `l` (its UTS #39
        // prototype): `alice` and `ALICE` must share a key, and `i` does not look like `l`.
        assert_eq!(name_key("I"), name_key("i"));
        assert_ne!(name_key("I"), name_key("l"));
        // Full case folding: ß and ss are one key; NFC input and decomposed input too.
        assert_eq!(name_key("straße"), name_key("STRASSE"));
        assert_eq!(name_key("Zoë"), name_key("Zoe\u{0308}"));
        // Different scripts that do not look alike stay apart.
        assert_ne!(name_key("李雷"), name_key("alice"));
        assert_ne!(name_key("李雷"), name_key("李"));
        // The key is stable: keying a key changes nothing.
        for n in [
            "alice",
            "ALICE",
            "ａｌｉｃｅ",
            "m",
            "Zoë",
            "李雷",
            "straße",
            "١٢٣",
            "j.doe",
        ] {
            let k = name_key(n);
            assert_eq!(name_key(&k), k, "{n:?}");
            assert!(!k.is_empty(), "{n:?}");
        }
    }

    #[test]
    fn user_ids() {
        for ok in [
            "auth0|12345",
            "g_abc",
            "Zoë",
            "a",
            &"x".repeat(128),
            "user@example.com",
        ] {
            assert_eq!(user_id(ok).unwrap(), ok, "{ok:?}");
        }
        assert_eq!(user_id("Zoe\u{0301}").unwrap(), "Zoé");
        assert_eq!(user_id(&"é".repeat(128)).unwrap().chars().count(), 128);
        for bad in [
            "",
            " a",
            "a ",
            "a b",
            "a\u{200B}",
            "a\u{202E}b",
            "\u{3164}",
            "a\nb",
            "a\u{0}",
            "a\u{85}",
            "a\u{3000}b",
            &"x".repeat(129),
        ] {
            let e = user_id(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidName, "{bad:?}");
            assert_eq!(e.message, "user id must be 1-128 visible characters");
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
            "\u{200B}\u{200B}",
            " \u{2060}\u{FEFF} ",
            "\u{202E}\u{2066}",
            "\u{3164}",
            "\u{2800}\u{2800}",
            "\u{E0041}",
        ] {
            assert_eq!(code(text(bad, 4000)), ErrorCode::InvalidText, "{bad:?}");
        }
        // Invisible characters beside visible ones are kept (emoji sequences use ZWJ).
        assert!(text("👩\u{200D}💻 ok", 4000).is_ok());
        assert!(text("a\u{202E}b", 4000).is_ok());
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
