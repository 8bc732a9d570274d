//! Pure Engine.IO v4 / Socket.IO v5 packet encoding and decoding (websocket
//! transport only: one packet per text frame, binary attachments as binary frames).
//!
//! Engine.IO frame: `<type digit><data>`: `0` open (JSON), `1` close, `2` ping,
//! `3` pong, `4` message (a Socket.IO packet), `5` upgrade, `6` noop.
//!
//! Socket.IO packet (the data of an engine `4`):
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]` with types
//! `0` connect, `1` disconnect, `2` event, `3` ack, `4` connect_error,
//! `5` binary event, `6` binary ack. The namespace is present only when it is not `/`.
//!
//! Decoding borrows from the frame (no allocation); the JSON payload is handed over
//! as text so callers decide how much of it to parse.

use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt::{self, Write as _};

/// A frame that is not a valid Engine.IO / Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketError(pub String);

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad packet: {}", self.0)
    }
}

impl std::error::Error for PacketError {}

fn err<T>(msg: impl Into<String>) -> Result<T, PacketError> {
    Err(PacketError(msg.into()))
}

/// One Engine.IO packet, borrowed from a text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `0{json}`: the handshake data.
    Open(&'a str),
    /// `1`
    Close,
    /// `2[probe]`
    Ping(&'a str),
    /// `3[probe]`
    Pong(&'a str),
    /// `4...`: a Socket.IO packet.
    Message(SioPacket<'a>),
    /// `5`
    Upgrade,
    /// `6`
    Noop,
}

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SioType {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl SioType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => SioType::Connect,
            b'1' => SioType::Disconnect,
            b'2' => SioType::Event,
            b'3' => SioType::Ack,
            b'4' => SioType::ConnectError,
            b'5' => SioType::BinaryEvent,
            b'6' => SioType::BinaryAck,
            _ => return None,
        })
    }
}

/// One Socket.IO packet, borrowed from a text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SioPacket<'a> {
    pub kind: SioType,
    /// Number of binary attachments (binary packet types only).
    pub attachments: Option<u32>,
    /// The namespace, `/` when absent from the packet.
    pub nsp: &'a str,
    /// The ack id, if any.
    pub id: Option<u64>,
    /// The JSON payload as text (may be empty).
    pub payload: &'a str,
}

/// Decode one websocket text frame.
pub fn decode(frame: &str) -> Result<EnginePacket<'_>, PacketError> {
    let bytes = frame.as_bytes();
    let Some(&t) = bytes.first() else {
        return err("empty frame");
    };
    let rest = &frame[1..];
    Ok(match t {
        b'0' => EnginePacket::Open(rest),
        b'1' => EnginePacket::Close,
        b'2' => EnginePacket::Ping(rest),
        b'3' => EnginePacket::Pong(rest),
        b'4' => EnginePacket::Message(decode_sio(rest)?),
        b'5' => EnginePacket::Upgrade,
        b'6' => EnginePacket::Noop,
        _ => return err(format!("unknown engine packet type {:?}", t as char)),
    })
}

/// Decode a Socket.IO packet (the text after the engine `4`).
pub fn decode_sio(s: &str) -> Result<SioPacket<'_>, PacketError> {
    let b = s.as_bytes();
    let Some(kind) = b.first().and_then(|&c| SioType::from_byte(c)) else {
        return err("missing or unknown socket.io packet type");
    };
    let mut i = 1;
    let mut attachments = None;
    if matches!(kind, SioType::BinaryEvent | SioType::BinaryAck) {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i >= b.len() || b[i] != b'-' {
            return err("binary packet without attachment count");
        }
        attachments = Some(
            s[start..i]
                .parse()
                .map_err(|_| PacketError("attachment count overflows".into()))?,
        );
        i += 1;
    }
    let mut nsp = "/";
    if i < b.len() && b[i] == b'/' {
        let start = i;
        while i < b.len() && b[i] != b',' {
            i += 1;
        }
        nsp = &s[start..i];
        if i < b.len() {
            i += 1; // the comma
        }
    }
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let id = if i > start {
        Some(
            s[start..i]
                .parse()
                .map_err(|_| PacketError("ack id overflows".into()))?,
        )
    } else {
        None
    };
    Ok(SioPacket {
        kind,
        attachments,
        nsp,
        id,
        payload: &s[i..],
    })
}

/// The engine handshake (`0{...}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    pub sid: String,
    #[serde(default)]
    pub upgrades: Vec<String>,
    pub ping_interval: u64,
    pub ping_timeout: u64,
    #[serde(default)]
    pub max_payload: Option<u64>,
}

pub fn parse_open(json: &str) -> Result<OpenInfo, PacketError> {
    serde_json::from_str(json).map_err(|e| PacketError(format!("engine open: {e}")))
}

// ---- encoding ----

/// `40` or `40{auth}` (connect to the default namespace).
pub fn connect_frame(auth: Option<&Value>) -> String {
    match auth {
        Some(a) => {
            let mut s = String::from("40");
            s.push_str(&a.to_string());
            s
        }
        None => "40".to_owned(),
    }
}

/// `41`: leave the default namespace.
pub const DISCONNECT_FRAME: &str = "41";

/// The engine pong answering a ping with `payload` (`3` + payload).
pub fn pong_frame(ping_payload: &str) -> String {
    let mut s = String::with_capacity(1 + ping_payload.len());
    s.push('3');
    s.push_str(ping_payload);
    s
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's string escaping, written straight into `out`.
    let quoted = serde_json::to_string(s).expect("a string always serialises");
    out.push_str(&quoted);
}

fn event_head(event: &str, ack: Option<u64>, extra: usize) -> String {
    let mut s = String::with_capacity(8 + event.len() + extra);
    s.push_str("42");
    if let Some(id) = ack {
        let _ = write!(s, "{id}");
    }
    s.push('[');
    if event.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        s.push('"');
        s.push_str(event);
        s.push('"');
    } else {
        push_json_str(&mut s, event);
    }
    s
}

/// `42[event,data]` or, with an ack id, `42<id>[event,data]`.
pub fn event_frame(event: &str, data: &Value, ack: Option<u64>) -> String {
    let mut s = event_head(event, ack, 64);
    s.push(',');
    // Writing a Value into a String cannot fail.
    let _ = write!(s, "{data}");
    s.push(']');
    s
}

/// Like [`event_frame`] with the data already serialised as JSON text (no parse,
/// no `Value`: what a load generator uses).
pub fn event_frame_json(event: &str, data_json: &str, ack: Option<u64>) -> String {
    let mut s = event_head(event, ack, data_json.len() + 2);
    s.push(',');
    s.push_str(data_json);
    s.push(']');
    s
}

/// An event without any argument: `42["event"]`.
pub fn event_frame_no_data(event: &str, ack: Option<u64>) -> String {
    let mut s = event_head(event, ack, 1);
    s.push(']');
    s
}

// ---- payload decoding ----

/// A server → client event: its name and its first argument (`Null` when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEvent {
    pub name: String,
    pub data: Value,
}

/// The event name of an event payload `["name",...]`, without parsing the rest.
/// Returns `None` when the name needs unescaping (then use [`parse_event`]).
pub fn event_name(payload: &str) -> Option<&str> {
    let rest = payload.strip_prefix("[\"")?;
    let end = rest.find(['"', '\\'])?;
    if rest.as_bytes()[end] != b'"' {
        return None;
    }
    Some(&rest[..end])
}

/// Parse an event payload `["name", data, ...]` (extra arguments are ignored).
pub fn parse_event(payload: &str) -> Result<ServerEvent, PacketError> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = ServerEvent;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array [event name, ...arguments]")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ServerEvent, A::Error> {
            let name: String = seq
                .next_element()?
                .ok_or_else(|| de::Error::custom("empty event array"))?;
            let data: Value = seq.next_element()?.unwrap_or(Value::Null);
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(ServerEvent { name, data })
        }
    }
    let mut d = serde_json::Deserializer::from_str(payload);
    let ev = d
        .deserialize_seq(V)
        .map_err(|e| PacketError(format!("event payload: {e}")))?;
    d.end()
        .map_err(|e| PacketError(format!("event payload: {e}")))?;
    Ok(ev)
}

/// Parse an ack payload `[arg, ...]` and return its first argument (`Null` if none).
pub fn parse_ack(payload: &str) -> Result<Value, PacketError> {
    struct First;
    impl<'de> DeserializeSeed<'de> for First {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for First {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of ack arguments")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let first: Value = seq.next_element()?.unwrap_or(Value::Null);
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    let mut d = serde_json::Deserializer::from_str(payload);
    let v = First
        .deserialize(&mut d)
        .map_err(|e| PacketError(format!("ack payload: {e}")))?;
    d.end()
        .map_err(|e| PacketError(format!("ack payload: {e}")))?;
    Ok(v)
}

/// The message of a connect_error payload: `{"message": "..."}` (or a bare string).
pub fn connect_error_message(payload: &str) -> String {
    match serde_json::from_str::<Value>(payload) {
        Ok(Value::Object(o)) => match o.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => Value::Object(o).to_string(),
        },
        Ok(Value::String(s)) => s,
        _ => payload.to_owned(),
    }
}

/// The value of a top-level-looking string field `"key":"value"` in JSON text,
/// found by a plain substring search: only for values the caller wrote itself
/// without characters that need escaping (returns `None` on a backslash).
pub fn find_str_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let mut pat = String::with_capacity(key.len() + 4);
    pat.push('"');
    pat.push_str(key);
    pat.push_str("\":\"");
    let start = json.find(&pat)? + pat.len();
    let rest = &json[start..];
    let end = rest.find(['"', '\\'])?;
    if rest.as_bytes()[end] != b'"' {
        return None;
    }
    Some(&rest[..end])
}

// ---- URLs ----

/// Where to connect: the `host:port` for TCP and the full websocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub ws_url: String,
}

impl Endpoint {
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Turn `http://h:p`, `ws://h:p`, `h:p` (optionally with a path) into the Engine.IO
/// websocket endpoint `ws://h:p/socket.io/?EIO=4&transport=websocket`. A path other
/// than `/` is kept as the Socket.IO path. TLS schemes are refused.
pub fn endpoint(url: &str) -> Result<Endpoint, PacketError> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if let Some(r) = url.strip_prefix("ws://") {
        r
    } else if url.starts_with("https://") || url.starts_with("wss://") {
        return err("TLS is not supported (use http:// or ws://)");
    } else if url.contains("://") {
        return err(format!("unsupported scheme in {url:?}"));
    } else {
        url
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let Some(end) = r.find(']') else {
            return err("unterminated [ipv6] host");
        };
        let host = &r[..end];
        let port = match &r[end + 1..] {
            "" => 80,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| PacketError(format!("bad port in {url:?}")))?,
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse()
                    .map_err(|_| PacketError(format!("bad port in {url:?}")))?,
            ),
            None => (authority.to_owned(), 80),
        }
    };
    if host.is_empty() {
        return err(format!("no host in {url:?}"));
    }
    let path = path.split('?').next().unwrap_or("");
    let path = if path.is_empty() || path == "/" {
        "/socket.io/".to_owned()
    } else if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    };
    let mut ep = Endpoint {
        host,
        port,
        ws_url: String::new(),
    };
    ep.ws_url = format!("ws://{}{}?EIO=4&transport=websocket", ep.authority(), path);
    Ok(ep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_packets() {
        assert_eq!(decode("2").unwrap(), EnginePacket::Ping(""));
        assert_eq!(decode("2probe").unwrap(), EnginePacket::Ping("probe"));
        assert_eq!(decode("3").unwrap(), EnginePacket::Pong(""));
        assert_eq!(decode("1").unwrap(), EnginePacket::Close);
        assert_eq!(decode("6").unwrap(), EnginePacket::Noop);
        assert_eq!(decode("5").unwrap(), EnginePacket::Upgrade);
        assert_eq!(
            decode("0{\"a\":1}").unwrap(),
            EnginePacket::Open("{\"a\":1}")
        );
        assert!(decode("").is_err());
        assert!(decode("9").is_err());
        assert!(decode("4").is_err());
        assert!(decode("4x").is_err());
    }

    #[test]
    fn open_info() {
        let o = parse_open(
            r#"{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        )
        .unwrap();
        assert_eq!(o.sid, "abc");
        assert_eq!(o.ping_interval, 25000);
        assert_eq!(o.ping_timeout, 20000);
        assert_eq!(o.max_payload, Some(1_000_000));
        assert!(parse_open("{}").is_err());
    }

    #[test]
    fn socketio_packets() {
        let p = match decode(r#"42["message:new",{"a":1}]"#).unwrap() {
            EnginePacket::Message(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            p,
            SioPacket {
                kind: SioType::Event,
                attachments: None,
                nsp: "/",
                id: None,
                payload: r#"["message:new",{"a":1}]"#
            }
        );
        let p = decode_sio(r#"3123[{"ok":true}]"#).unwrap();
        assert_eq!(
            (p.kind, p.id, p.payload),
            (SioType::Ack, Some(123), r#"[{"ok":true}]"#)
        );
        let p = decode_sio(r#"0{"sid":"x"}"#).unwrap();
        assert_eq!(
            (p.kind, p.nsp, p.payload),
            (SioType::Connect, "/", r#"{"sid":"x"}"#)
        );
        let p = decode_sio(r#"4/admin,{"message":"Invalid namespace"}"#).unwrap();
        assert_eq!(p.kind, SioType::ConnectError);
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.payload, r#"{"message":"Invalid namespace"}"#);
        let p = decode_sio("0/admin,").unwrap();
        assert_eq!((p.nsp, p.payload), ("/admin", ""));
        let p = decode_sio("1").unwrap();
        assert_eq!(
            (p.kind, p.nsp, p.id, p.payload),
            (SioType::Disconnect, "/", None, "")
        );
        let p = decode_sio(r#"51-7["x",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(p.kind, SioType::BinaryEvent);
        assert_eq!(p.attachments, Some(1));
        assert_eq!(p.id, Some(7));
        let p = decode_sio(r#"62-/chat,9[{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.nsp, p.id),
            (SioType::BinaryAck, Some(2), "/chat", Some(9))
        );
        assert!(decode_sio("5[]").is_err());
        assert!(decode_sio("7").is_err());
        assert!(decode_sio("399999999999999999999999[]").is_err());
    }

    #[test]
    fn encode_frames() {
        assert_eq!(connect_frame(None), "40");
        assert_eq!(
            connect_frame(Some(&json!({"name": "alice"}))),
            r#"40{"name":"alice"}"#
        );
        assert_eq!(pong_frame(""), "3");
        assert_eq!(pong_frame("probe"), "3probe");
        assert_eq!(
            event_frame("room:join", &json!({"room": "a"}), None),
            r#"42["room:join",{"room":"a"}]"#
        );
        assert_eq!(
            event_frame("room:join", &json!({"room": "a"}), Some(12)),
            r#"4212["room:join",{"room":"a"}]"#
        );
        assert_eq!(
            event_frame_json("message:send", r#"{"room":"b","text":"t"}"#, Some(0)),
            r#"420["message:send",{"room":"b","text":"t"}]"#
        );
        assert_eq!(
            event_frame_no_data("room:list", Some(3)),
            r#"423["room:list"]"#
        );
        // names needing escapes are escaped
        assert_eq!(
            event_frame("a\"b", &Value::Null, None),
            r#"42["a\"b",null]"#
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let data = json!({"room": "r", "text": "héllo \"quoted\" \n", "n": [1, 2.5, null]});
        let f = event_frame("message:send", &data, Some(42));
        let p = match decode(&f).unwrap() {
            EnginePacket::Message(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(p.kind, SioType::Event);
        assert_eq!(p.id, Some(42));
        let ev = parse_event(p.payload).unwrap();
        assert_eq!(ev.name, "message:send");
        assert_eq!(ev.data, data);
    }

    #[test]
    fn event_payloads() {
        let ev = parse_event(r#"["session",{"user":{"name":"a"},"rooms":["general"]}]"#).unwrap();
        assert_eq!(ev.name, "session");
        assert_eq!(ev.data["rooms"][0], "general");
        let ev = parse_event(r#"["ping"]"#).unwrap();
        assert_eq!(ev.data, Value::Null);
        let ev = parse_event(r#"["x",1,2,3]"#).unwrap();
        assert_eq!(ev.data, json!(1));
        assert!(parse_event("[]").is_err());
        assert!(parse_event("{}").is_err());
        assert!(parse_event("[1]").is_err());
        assert!(parse_event(r#"["x"] trailing"#).is_err());
        assert_eq!(event_name(r#"["message:new",{}]"#), Some("message:new"));
        assert_eq!(event_name(r#"["a\"b",{}]"#), None);
        assert_eq!(event_name("[1]"), None);
    }

    #[test]
    fn ack_payloads() {
        assert_eq!(parse_ack(r#"[{"ok":true}]"#).unwrap(), json!({"ok": true}));
        assert_eq!(parse_ack("[]").unwrap(), Value::Null);
        assert_eq!(parse_ack("[1,2]").unwrap(), json!(1));
        assert!(parse_ack("{}").is_err());
        assert!(parse_ack("[").is_err());
    }

    #[test]
    fn connect_errors() {
        assert_eq!(
            connect_error_message(r#"{"message":"invalid_name: bad"}"#),
            "invalid_name: bad"
        );
        assert_eq!(connect_error_message(r#""plain""#), "plain");
        assert_eq!(connect_error_message("garbage"), "garbage");
    }

    #[test]
    fn str_fields() {
        let j = r#"{"id":"1-0","room":"bench","from":"u1","text":"3:17:99","ts":5}"#;
        assert_eq!(find_str_field(j, "text"), Some("3:17:99"));
        assert_eq!(find_str_field(j, "from"), Some("u1"));
        assert_eq!(find_str_field(j, "nope"), None);
        assert_eq!(find_str_field(r#"{"text":"a\"b"}"#, "text"), None);
    }

    #[test]
    fn endpoints() {
        let e = endpoint("http://127.0.0.1:3000").unwrap();
        assert_eq!(e.host, "127.0.0.1");
        assert_eq!(e.port, 3000);
        assert_eq!(
            e.ws_url,
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            endpoint("ws://localhost:8/").unwrap().ws_url,
            "ws://localhost:8/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(endpoint("127.0.0.1:9").unwrap().port, 9);
        assert_eq!(endpoint("http://h").unwrap().port, 80);
        let e = endpoint("ws://[::1]:7/custom").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.authority(), "[::1]:7");
        assert_eq!(e.ws_url, "ws://[::1]:7/custom/?EIO=4&transport=websocket");
        assert!(endpoint("https://x:1").is_err());
        assert!(endpoint("ftp://x:1").is_err());
        assert!(endpoint("http://:1").is_err());
        assert!(endpoint("http://h:notaport").is_err());
    }
}
