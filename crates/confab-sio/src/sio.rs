//! Socket.IO v5 packets, pure (no I/O): decoding what a client sends inside an
//! Engine.IO message, reassembling binary attachments, and encoding what the server
//! sends.
//!
//! Format: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]` with types
//! `0` CONNECT, `1` DISCONNECT, `2` EVENT, `3` ACK, `4` CONNECT_ERROR, `5` BINARY_EVENT,
//! `6` BINARY_ACK. The namespace is written only when it is not `/`. A binary packet
//! is followed by its attachments, one binary Engine.IO message each, referenced in
//! the JSON by `{"_placeholder":true,"num":N}`.

use crate::Frame;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use std::fmt::{self, Write as _};

/// Most binary attachments accepted in one packet.
pub const MAX_ATTACHMENTS: usize = 64;

/// A packet that does not follow the Socket.IO v5 format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Socket.IO packet: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl Kind {
    fn from_digit(c: u8) -> Option<Self> {
        Some(match c {
            b'0' => Kind::Connect,
            b'1' => Kind::Disconnect,
            b'2' => Kind::Event,
            b'3' => Kind::Ack,
            b'4' => Kind::ConnectError,
            b'5' => Kind::BinaryEvent,
            b'6' => Kind::BinaryAck,
            _ => return None,
        })
    }

    fn is_binary(self) -> bool {
        matches!(self, Kind::BinaryEvent | Kind::BinaryAck)
    }
}

/// A decoded packet header; `data` is the JSON text, not parsed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub kind: Kind,
    pub attachments: usize,
    pub ns: &'a str,
    pub ack: Option<u64>,
    pub data: &'a str,
}

fn take_digits(s: &str) -> (&str, &str) {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

/// Decode the header of a packet sent by a client. Only the shape is checked here;
/// [`parse_event`] and [`parse_args`] check the JSON of events and acks.
pub fn decode(s: &str) -> Result<Header<'_>, DecodeError> {
    let bytes = s.as_bytes();
    let kind = bytes
        .first()
        .and_then(|&c| Kind::from_digit(c))
        .ok_or(DecodeError("unknown packet type"))?;
    let mut rest = &s[1..];
    let mut attachments = 0;
    if kind.is_binary() {
        let (digits, after) = take_digits(rest);
        let after = after
            .strip_prefix('-')
            .ok_or(DecodeError("binary packet without attachment count"))?;
        attachments = digits
            .parse::<usize>()
            .map_err(|_| DecodeError("invalid attachment count"))?;
        if attachments > MAX_ATTACHMENTS {
            return Err(DecodeError("too many attachments"));
        }
        rest = after;
    }
    let mut ns = "/";
    if rest.starts_with('/') {
        match rest.find(',') {
            Some(i) => {
                ns = &rest[..i];
                rest = &rest[i + 1..];
            }
            None => {
                ns = rest;
                rest = "";
            }
        }
    }
    let mut ack = None;
    if matches!(
        kind,
        Kind::Event | Kind::Ack | Kind::BinaryEvent | Kind::BinaryAck
    ) {
        let (digits, after) = take_digits(rest);
        if !digits.is_empty() {
            ack = Some(
                digits
                    .parse::<u64>()
                    .map_err(|_| DecodeError("invalid ack id"))?,
            );
            rest = after;
        }
    }
    match kind {
        Kind::Disconnect if !rest.is_empty() => {
            return Err(DecodeError("disconnect carries no payload"))
        }
        Kind::Event | Kind::BinaryEvent | Kind::Ack | Kind::BinaryAck if !rest.starts_with('[') => {
            return Err(DecodeError("payload must be an array"))
        }
        Kind::Ack | Kind::BinaryAck if ack.is_none() => return Err(DecodeError("ack without id")),
        Kind::ConnectError => return Err(DecodeError("a client cannot send connect_error")),
        _ => {}
    }
    Ok(Header {
        kind,
        attachments,
        ns,
        ack,
        data: rest,
    })
}

/// The auth payload of a CONNECT (`{}` when there is none); an error when it is not
/// a JSON object (the caller decides: the server hands such a CONNECT to the
/// namespace with a `null` auth, which may refuse it).
pub fn parse_auth(data: &str) -> Result<Value, DecodeError> {
    if data.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(data) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(DecodeError("connect payload must be a JSON object")),
    }
}

/// An event's name and arguments.
pub fn parse_event(data: &str) -> Result<(String, Vec<Value>), DecodeError> {
    let mut args = parse_args(data)?;
    if args.is_empty() {
        return Err(DecodeError("event without a name"));
    }
    match args.remove(0) {
        Value::String(name) => Ok((name, args)),
        _ => Err(DecodeError("event name must be a string")),
    }
}

/// `data` with every `\uD800`–`\uDFFF` escape that is not one half of a valid pair
/// replaced by `\uFFFD`, or `None` when it has none. JavaScript strings may hold
/// a lone surrogate (half an emoji cut by `slice`), which `JSON.stringify` writes as
/// such an escape; it is not valid JSON text to serde_json (nor Unicode), so the
/// caller can tell the client precisely instead of dropping the connection.
pub fn replace_lone_surrogates(data: &str) -> Option<String> {
    fn hex4(b: &[u8]) -> Option<u32> {
        std::str::from_utf8(b.get(..4)?)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    }
    let b = data.as_bytes();
    let (mut out, mut last, mut i) = (String::new(), 0, 0);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2; // an escape of one character (`\\`, `\"`, ...)
            continue;
        }
        let Some(cp) = hex4(&b[(i + 2).min(b.len())..]) else {
            i += 2;
            continue;
        };
        let low_follows = || {
            b.get(i + 6..i + 8) == Some(b"\\u".as_slice())
                && hex4(&b[i + 8..]).is_some_and(|c| (0xDC00..0xE000).contains(&c))
        };
        if (0xD800..0xDC00).contains(&cp) && low_follows() {
            i += 12; // a valid pair
        } else if (0xD800..0xE000).contains(&cp) {
            out.push_str(&data[last..i]);
            out.push_str("\\ufffd");
            i += 6;
            last = i;
        } else {
            i += 6;
        }
    }
    (last > 0).then(|| {
        out.push_str(&data[last..]);
        out
    })
}

/// The arguments of an ack (a JSON array).
pub fn parse_args(data: &str) -> Result<Vec<Value>, DecodeError> {
    serde_json::from_str::<Vec<Value>>(data).map_err(|_| DecodeError("payload is not a JSON array"))
}

/// A binary packet waiting for its attachments.
#[derive(Debug)]
pub struct Partial {
    pub expected: usize,
    pub attachments: Vec<Bytes>,
}

impl Partial {
    pub fn new(expected: usize) -> Self {
        Self {
            expected,
            attachments: Vec::new(),
        }
    }

    /// Add one attachment; true once all have arrived.
    pub fn push(&mut self, b: Bytes) -> bool {
        self.attachments.push(b);
        self.attachments.len() >= self.expected
    }

    pub fn is_complete(&self) -> bool {
        self.attachments.len() >= self.expected
    }
}

fn prefix(out: &mut String, kind: u8, attachments: usize, ns: &str) {
    out.push('4');
    out.push(kind as char);
    if attachments > 0 {
        let _ = write!(out, "{attachments}-");
    }
    if ns != "/" {
        out.push_str(ns);
        out.push(',');
    }
}

fn finish(out: String, attachments: &[Bytes]) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::text(out));
    frames.extend(attachments.iter().cloned().map(Frame::Binary));
    frames
}

/// `EVENT` with one data argument, as one text frame (what fan-out sends).
pub fn event<T: Serialize + ?Sized>(
    ns: &str,
    event: &str,
    data: &T,
) -> Result<Frame, serde_json::Error> {
    let mut out = String::with_capacity(64);
    prefix(&mut out, b'2', 0, ns);
    out.push('[');
    out.push_str(&serde_json::to_string(event)?);
    out.push(',');
    out.push_str(&serde_json::to_string(data)?);
    out.push(']');
    Ok(Frame::text(out))
}

/// `EVENT` (or `BINARY_EVENT` when there are attachments) with any arguments; the
/// text frame comes first, then one binary frame per attachment.
pub fn event_args(ns: &str, event: &str, args: &[Value], attachments: &[Bytes]) -> Vec<Frame> {
    let kind = if attachments.is_empty() { b'2' } else { b'5' };
    let mut out = String::with_capacity(64);
    prefix(&mut out, kind, attachments.len(), ns);
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(Value::String(event.to_owned()));
    all.extend(args.iter().cloned());
    out.push_str(&Value::Array(all).to_string());
    finish(out, attachments)
}

/// `ACK` with one data argument.
pub fn ack<T: Serialize + ?Sized>(ns: &str, id: u64, data: &T) -> Result<Frame, serde_json::Error> {
    let mut out = String::with_capacity(64);
    prefix(&mut out, b'3', 0, ns);
    let _ = write!(out, "{id}[");
    out.push_str(&serde_json::to_string(data)?);
    out.push(']');
    Ok(Frame::text(out))
}

/// `ACK` (or `BINARY_ACK`) with any arguments.
pub fn ack_args(ns: &str, id: u64, args: &[Value], attachments: &[Bytes]) -> Vec<Frame> {
    let kind = if attachments.is_empty() { b'3' } else { b'6' };
    let mut out = String::with_capacity(64);
    prefix(&mut out, kind, attachments.len(), ns);
    let _ = write!(out, "{id}");
    out.push_str(&Value::Array(args.to_vec()).to_string());
    finish(out, attachments)
}

/// `CONNECT` accepted: `40{"sid":...}`.
pub fn connect_ok(ns: &str, sid: &str) -> Frame {
    let mut out = String::with_capacity(40);
    prefix(&mut out, b'0', 0, ns);
    out.push_str(&serde_json::json!({ "sid": sid }).to_string());
    Frame::text(out)
}

/// `CONNECT_ERROR`: `44{"message":...,"data":...}`.
pub fn connect_error(ns: &str, message: &str, data: Option<&Value>) -> Frame {
    let mut out = String::with_capacity(64);
    prefix(&mut out, b'4', 0, ns);
    let body = match data {
        Some(d) => serde_json::json!({ "message": message, "data": d }),
        None => serde_json::json!({ "message": message }),
    };
    out.push_str(&body.to_string());
    Frame::text(out)
}

/// `DISCONNECT` from the server.
pub fn disconnect(ns: &str) -> Frame {
    let mut out = String::with_capacity(8);
    prefix(&mut out, b'1', 0, ns);
    Frame::text(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lone_surrogates_are_replaced_and_pairs_kept() {
        let r = |s: &str| replace_lone_surrogates(s);
        assert_eq!(r(r#"["m",{"text":"ok"}]"#), None);
        // A valid pair (an emoji) is left alone.
        assert_eq!(r(r#"["m","\ud83d\ude00"]"#), None);
        // Half of it, either half, anywhere; escaped backslashes are not escapes.
        assert_eq!(
            r(r#"["m","a\ud83d"]"#).as_deref(),
            Some(r#"["m","a\ufffd"]"#)
        );
        assert_eq!(
            r(r#"["m","\ude00b\\ud800"]"#).as_deref(),
            Some(r#"["m","\ufffdb\\ud800"]"#)
        );
        assert_eq!(
            r(r#"["m","\uD800\u0041"]"#).as_deref(),
            Some(r#"["m","\ufffd\u0041"]"#)
        );
        // What serde_json refused before parses after.
        let bad = r#"["message:send",{"text":"x\ud800"}]"#;
        assert!(parse_event(bad).is_err());
        assert!(parse_event(&r(bad).unwrap()).is_ok());
        // Truncated escapes do not panic.
        for s in [r#"\u"#, r#"\ud8"#, r#"\ud800\u"#, r#"\ud800\udc"#, "\\"] {
            let _ = r(s);
        }
    }

    fn text(f: &Frame) -> &str {
        match f {
            Frame::Text(t) => t.as_str(),
            Frame::Binary(_) => panic!("binary"),
        }
    }

    #[test]
    fn headers() {
        let h = decode("0").unwrap();
        assert_eq!((h.kind, h.ns, h.data), (Kind::Connect, "/", ""));
        let h = decode(r#"0{"token":"123"}"#).unwrap();
        assert_eq!(h.data, r#"{"token":"123"}"#);
        let h = decode("0/custom,").unwrap();
        assert_eq!((h.ns, h.data), ("/custom", ""));
        let h = decode("0/custom").unwrap();
        assert_eq!((h.ns, h.data), ("/custom", ""));
        let h = decode(r#"0/custom,{"a":1}"#).unwrap();
        assert_eq!((h.ns, h.data), ("/custom", r#"{"a":1}"#));
        let h = decode("1/custom,").unwrap();
        assert_eq!((h.kind, h.ns), (Kind::Disconnect, "/custom"));
        let h = decode(r#"2456["message-with-ack",1]"#).unwrap();
        assert_eq!((h.kind, h.ack), (Kind::Event, Some(456)));
        let h = decode(r#"2/admin,12["x"]"#).unwrap();
        assert_eq!((h.ns, h.ack, h.data), ("/admin", Some(12), r#"["x"]"#));
        let h = decode(r#"52-789["m",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(
            (h.kind, h.attachments, h.ack),
            (Kind::BinaryEvent, 2, Some(789))
        );
        let h = decode(r#"313[1]"#).unwrap();
        assert_eq!((h.kind, h.ack, h.data), (Kind::Ack, Some(13), "[1]"));
    }

    #[test]
    fn malformed_headers() {
        for bad in [
            "",
            "abc",
            "7",
            "2{}",
            r#"2abc["message-with-ack",1]"#,
            "2",
            "3[1]",
            r#"4{"message":"x"}"#,
            "1x",
            r#"5["m"]"#,
            r#"5x-["m"]"#,
            r#"5999-["m"]"#,
            r#"299999999999999999999999["x"]"#,
        ] {
            assert!(decode(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn events_and_args() {
        assert_eq!(
            parse_event(r#"["message",1,"2",{"3":[true]}]"#).unwrap(),
            (
                "message".into(),
                vec![json!(1), json!("2"), json!({"3":[true]})]
            )
        );
        assert!(parse_event("[]").is_err());
        assert!(parse_event("[1]").is_err());
        assert!(parse_event("[\"a\"").is_err());
        assert_eq!(parse_args("[]").unwrap(), Vec::<Value>::new());
        assert_eq!(parse_auth("").unwrap(), json!({}));
        assert!(parse_auth("[1]").is_err());
    }

    #[test]
    fn encodes() {
        let f = event("/", "message-back", &json!({"a":1})).unwrap();
        assert_eq!(text(&f), r#"42["message-back",{"a":1}]"#);
        let f = event("/custom", "auth", &json!({})).unwrap();
        assert_eq!(text(&f), r#"42/custom,["auth",{}]"#);
        let f = ack("/", 456, &json!([1])).unwrap();
        assert_eq!(text(&f), "43456[[1]]");
        let fs = ack_args("/", 456, &[json!(1), json!("2")], &[]);
        assert_eq!(text(&fs[0]), r#"43456[1,"2"]"#);
        let ph = json!({"_placeholder":true,"num":0});
        let fs = ack_args(
            "/",
            789,
            std::slice::from_ref(&ph),
            &[Bytes::from_static(b"\x01")],
        );
        assert_eq!(text(&fs[0]), r#"461-789[{"_placeholder":true,"num":0}]"#);
        assert_eq!(fs[1], Frame::Binary(Bytes::from_static(b"\x01")));
        let fs = event_args("/", "m", &[ph], &[Bytes::from_static(b"\x01")]);
        assert_eq!(text(&fs[0]), r#"451-["m",{"_placeholder":true,"num":0}]"#);
        assert_eq!(text(&connect_ok("/", "s1")), r#"40{"sid":"s1"}"#);
        assert_eq!(
            text(&connect_error("/random", "Invalid namespace", None)),
            r#"44/random,{"message":"Invalid namespace"}"#
        );
        assert_eq!(text(&disconnect("/")), "41");
        assert_eq!(text(&disconnect("/custom")), "41/custom,");
    }

    #[test]
    fn partial_binary() {
        let mut p = Partial::new(2);
        assert!(!p.push(Bytes::from_static(b"a")));
        assert!(p.push(Bytes::from_static(b"b")));
        assert!(p.is_complete());
        assert!(Partial::new(0).is_complete());
    }
}
