//! Property tests of the pure codecs: what the server encodes, the decoder (the
//! same format in the other direction) reads back unchanged.
//!
//! - Socket.IO: `event_args` / `ack_args` (and the one-argument `event` / `ack`)
//!   for any namespace, event name, JSON arguments, ack id and 0..=3 binary
//!   attachments, then `decode` + `parse_event` / `parse_args` + `Partial`.
//! - Engine.IO: `push_part` of client packets, then `decode_payload`.

use bytes::Bytes;
use confab_sio::{eio, sio, Frame};
use proptest::prelude::*;
use serde_json::{json, Value};

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-z]{1,8}"]
}

/// Any text, control characters and non-ASCII included.
fn any_text() -> impl Strategy<Value = String> {
    "(?s).{0,12}"
}

/// JSON values of bounded depth and size. Numbers are integers or dyadic
/// fractions (exact in binary, so their decimal text reads back to the same f64).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (any::<i32>(), 0u32..10)
            .prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(1u32 << e))),
        any_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any_text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn attachments() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from),
        0..=3,
    )
}

/// The arguments as a client would send them with binary data: one placeholder per
/// attachment, after the plain arguments.
fn with_placeholders(mut args: Vec<Value>, n: usize) -> Vec<Value> {
    args.extend((0..n).map(|i| json!({"_placeholder": true, "num": i})));
    args
}

/// The Socket.IO packet inside an Engine.IO message frame.
fn message_text(f: &Frame) -> &str {
    match f {
        Frame::Text(t) => t
            .as_str()
            .strip_prefix('4')
            .expect("an Engine.IO message packet"),
        Frame::Binary(_) => panic!("the packet must come first, as text"),
    }
}

/// The attachments after the packet, reassembled as the server does.
fn reassemble(expected: usize, frames: &[Frame]) -> Vec<Bytes> {
    let mut partial = sio::Partial::new(expected);
    assert_eq!(partial.is_complete(), expected == 0);
    for (i, f) in frames.iter().enumerate() {
        let Frame::Binary(b) = f else {
            panic!("attachment {i} is not binary")
        };
        assert_eq!(partial.push(b.clone()), i + 1 == expected);
    }
    assert!(partial.is_complete());
    partial.attachments
}

proptest! {
    #[test]
    fn event_round_trips(
        ns in namespace(),
        name in any_text(),
        args in prop::collection::vec(json_value(), 0..4),
        atts in attachments(),
    ) {
        let args = with_placeholders(args, atts.len());
        let frames = sio::event_args(&ns, &name, &args, &atts);
        prop_assert_eq!(frames.len(), 1 + atts.len());
        let h = sio::decode(message_text(&frames[0])).unwrap();
        let kind = if atts.is_empty() { sio::Kind::Event } else { sio::Kind::BinaryEvent };
        prop_assert_eq!(h.kind, kind);
        prop_assert_eq!(h.ns, ns.as_str());
        prop_assert_eq!(h.ack, None);
        prop_assert_eq!(h.attachments, atts.len());
        let (got_name, got_args) = sio::parse_event(h.data).unwrap();
        prop_assert_eq!(got_name, name);
        prop_assert_eq!(got_args, args);
        prop_assert_eq!(reassemble(h.attachments, &frames[1..]), atts);
    }

    #[test]
    fn ack_round_trips(
        ns in namespace(),
        id in any::<u64>(),
        args in prop::collection::vec(json_value(), 0..4),
        atts in attachments(),
    ) {
        let args = with_placeholders(args, atts.len());
        let frames = sio::ack_args(&ns, id, &args, &atts);
        prop_assert_eq!(frames.len(), 1 + atts.len());
        let h = sio::decode(message_text(&frames[0])).unwrap();
        let kind = if atts.is_empty() { sio::Kind::Ack } else { sio::Kind::BinaryAck };
        prop_assert_eq!(h.kind, kind);
        prop_assert_eq!(h.ns, ns.as_str());
        prop_assert_eq!(h.ack, Some(id));
        prop_assert_eq!(h.attachments, atts.len());
        prop_assert_eq!(sio::parse_args(h.data).unwrap(), args);
        prop_assert_eq!(reassemble(h.attachments, &frames[1..]), atts);
    }

    #[test]
    fn one_argument_event_and_ack_round_trip(
        ns in namespace(),
        name in any_text(),
        id in any::<u64>(),
        data in json_value(),
    ) {
        let f = sio::event(&ns, &name, &data).unwrap();
        let h = sio::decode(message_text(&f)).unwrap();
        prop_assert_eq!((h.kind, h.ns, h.ack), (sio::Kind::Event, ns.as_str(), None));
        prop_assert_eq!(sio::parse_event(h.data).unwrap(), (name, vec![data.clone()]));

        let f = sio::ack(&ns, id, &data).unwrap();
        let h = sio::decode(message_text(&f)).unwrap();
        prop_assert_eq!((h.kind, h.ns, h.ack), (sio::Kind::Ack, ns.as_str(), Some(id)));
        prop_assert_eq!(sio::parse_args(h.data).unwrap(), vec![data]);
    }
}

// ---- Engine.IO polling payloads ----------------------------------------------------

/// A packet a client may send, owned.
#[derive(Debug, Clone)]
enum Client {
    Close,
    Ping(String),
    Pong(String),
    Message(String),
    Upgrade,
    Noop,
    Binary(Vec<u8>),
}

impl Client {
    fn frame(&self) -> Frame {
        match self {
            Client::Close => Frame::text("1"),
            Client::Ping(d) => Frame::text(format!("2{d}")),
            Client::Pong(d) => Frame::text(format!("3{d}")),
            Client::Message(d) => Frame::text(format!("4{d}")),
            Client::Upgrade => Frame::text("5"),
            Client::Noop => Frame::text("6"),
            Client::Binary(b) => Frame::Binary(Bytes::from(b.clone())),
        }
    }

    fn packet(&self) -> eio::Packet<'_> {
        match self {
            Client::Close => eio::Packet::Close,
            Client::Ping(d) => eio::Packet::Ping(d),
            Client::Pong(d) => eio::Packet::Pong(d),
            Client::Message(d) => eio::Packet::Message(d),
            Client::Upgrade => eio::Packet::Upgrade,
            Client::Noop => eio::Packet::Noop,
            Client::Binary(b) => eio::Packet::Binary(Bytes::from(b.clone())),
        }
    }
}

/// Packet data: anything but the record separator ("this assumes the record
/// separator is not used in the data").
fn data() -> impl Strategy<Value = String> {
    "(?s)[^\x1e]{0,12}"
}

fn client_packet() -> impl Strategy<Value = Client> {
    prop_oneof![
        Just(Client::Close),
        prop_oneof![Just(String::new()), Just("probe".to_owned()), data()].prop_map(Client::Ping),
        prop_oneof![Just(String::new()), Just("probe".to_owned()), data()].prop_map(Client::Pong),
        data().prop_map(Client::Message),
        Just(Client::Upgrade),
        Just(Client::Noop),
        prop::collection::vec(any::<u8>(), 0..48).prop_map(Client::Binary),
    ]
}

proptest! {
    #[test]
    fn polling_payload_round_trips(packets in prop::collection::vec(client_packet(), 1..8)) {
        let mut body = Vec::new();
        for p in &packets {
            eio::push_part(&mut body, &p.frame());
        }
        let text = std::str::from_utf8(&body).unwrap();
        let want: Vec<eio::Packet<'_>> = packets.iter().map(Client::packet).collect();
        prop_assert_eq!(eio::decode_payload(text).unwrap(), want);
        // A websocket carries each packet in its own frame: same packets.
        for p in &packets {
            if let Frame::Text(t) = p.frame() {
                prop_assert_eq!(eio::decode_text(t.as_str()).unwrap(), p.packet());
            }
        }
    }
}
