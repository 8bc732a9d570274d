//! Engine.IO v4 packets, pure (no I/O): what a websocket frame or one part of a
//! long-polling payload means, and how polling payloads are joined and split.
//!
//! A text packet is `<type digit><data>`: `0` open, `1` close, `2` ping, `3` pong,
//! `4` message, `5` upgrade, `6` noop. A binary websocket frame is a binary message.
//! In a polling payload, packets are joined by `\x1e` (record separator) and a binary
//! message is `b` followed by its base64 encoding.

use base64::Engine as _;
use bytes::Bytes;
use std::fmt;

/// The separator of packets in a long-polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// A packet that does not follow the Engine.IO v4 format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Engine.IO packet: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// One packet sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Close,
    /// `2` or `2probe` (the upgrade probe).
    Ping(&'a str),
    Pong(&'a str),
    /// A text message: the Socket.IO packet.
    Message(&'a str),
    Upgrade,
    Noop,
    /// A binary message (a Socket.IO binary attachment).
    Binary(Bytes),
}

/// Decode one text packet (a websocket text frame, or one part of a polling payload
/// that is not base64 binary).
pub fn decode_text(s: &str) -> Result<Packet<'_>, DecodeError> {
    let mut chars = s.chars();
    let kind = chars.next().ok_or(DecodeError("empty packet"))?;
    let data = &s[kind.len_utf8()..];
    Ok(match kind {
        '1' if data.is_empty() => Packet::Close,
        '2' => Packet::Ping(data),
        '3' => Packet::Pong(data),
        '4' => Packet::Message(data),
        '5' if data.is_empty() => Packet::Upgrade,
        '6' if data.is_empty() => Packet::Noop,
        '0' => return Err(DecodeError("a client cannot send open")),
        '1' | '5' | '6' => return Err(DecodeError("unexpected data after packet type")),
        _ => return Err(DecodeError("unknown packet type")),
    })
}

/// Decode one part of a polling payload: `b<base64>` or a text packet.
pub fn decode_part(part: &str) -> Result<Packet<'_>, DecodeError> {
    match part.strip_prefix('b') {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|v| Packet::Binary(Bytes::from(v)))
            .map_err(|_| DecodeError("invalid base64 in binary packet")),
        None => decode_text(part),
    }
}

/// Split a polling payload (a POST body) into packets. Any invalid part makes the
/// whole payload invalid: nothing of it is applied.
pub fn decode_payload(body: &str) -> Result<Vec<Packet<'_>>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError("empty payload"));
    }
    body.split(SEPARATOR as char).map(decode_part).collect()
}

/// Append one outgoing packet to a polling payload under construction.
pub fn push_part(out: &mut Vec<u8>, frame: &crate::Frame) {
    if !out.is_empty() {
        out.push(SEPARATOR);
    }
    match frame {
        crate::Frame::Text(t) => out.extend_from_slice(t.as_bytes()),
        crate::Frame::Binary(b) => {
            out.push(b'b');
            let mut s = String::new();
            base64::engine::general_purpose::STANDARD.encode_string(b, &mut s);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// The open packet's JSON (`0{...}`), sent first on a new session.
pub fn open_packet(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
) -> String {
    let body = serde_json::json!({
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    });
    format!("0{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;

    #[test]
    fn text_packets() {
        assert_eq!(decode_text("1"), Ok(Packet::Close));
        assert_eq!(decode_text("2probe"), Ok(Packet::Ping("probe")));
        assert_eq!(decode_text("3"), Ok(Packet::Pong("")));
        assert_eq!(decode_text("4hello"), Ok(Packet::Message("hello")));
        assert_eq!(decode_text("4"), Ok(Packet::Message("")));
        assert_eq!(decode_text("5"), Ok(Packet::Upgrade));
        assert_eq!(decode_text("6"), Ok(Packet::Noop));
        assert!(decode_text("").is_err());
        assert!(decode_text("0{}").is_err());
        assert!(decode_text("7").is_err());
        assert!(decode_text("abc").is_err());
        assert!(decode_text("1x").is_err());
        assert!(decode_text("é").is_err());
    }

    #[test]
    fn payloads() {
        let p = decode_payload("4test1\x1e4test2\x1ebAQIDBA==").unwrap();
        assert_eq!(
            p,
            vec![
                Packet::Message("test1"),
                Packet::Message("test2"),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            ]
        );
        assert!(decode_payload("").is_err());
        assert!(decode_payload("4a\x1e").is_err(), "empty trailing part");
        assert!(decode_payload("b!!").is_err());
        assert!(decode_payload("4ok\x1eabc").is_err());
    }

    #[test]
    fn encode_payload() {
        let mut out = Vec::new();
        push_part(&mut out, &Frame::text("4hello"));
        push_part(&mut out, &Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])));
        assert_eq!(out, b"4hello\x1ebAQIDBA==");
    }

    #[test]
    fn open() {
        let o = open_packet("abc", &["websocket"], 300, 200, 1_000_000);
        assert!(o.starts_with('0'));
        let v: serde_json::Value = serde_json::from_str(&o[1..]).unwrap();
        assert_eq!(v["sid"], "abc");
        assert_eq!(v["upgrades"][0], "websocket");
        assert_eq!(v["pingInterval"], 300);
        assert_eq!(v["pingTimeout"], 200);
        assert_eq!(v["maxPayload"], 1_000_000);
    }
}
