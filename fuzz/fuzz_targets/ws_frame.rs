//! A websocket text frame, read the way the server reads one: `eio::decode_text`,
//! then for a message `sio::decode` and the JSON of its kind (`parse_auth`,
//! `parse_event`, `parse_args`). A packet that decodes must re-encode (`event_args`,
//! `ack_args`) to one that decodes to the same namespace, ack id, name and
//! arguments.

#![no_main]

use confab_sio::{eio, sio, Frame};
use libfuzzer_sys::fuzz_target;

fn packet(frames: &[Frame]) -> &str {
    match &frames[0] {
        Frame::Text(t) => t.as_str().strip_prefix('4').expect("a message packet"),
        Frame::Binary(_) => panic!("the packet must come first, as text"),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(eio::Packet::Message(msg)) = eio::decode_text(&text) else {
        return;
    };
    let Ok(h) = sio::decode(msg) else {
        return;
    };
    assert!(h.ns.starts_with('/'), "namespace {:?}", h.ns);
    assert!(!h.ns.contains(','), "namespace {:?}", h.ns);
    assert!(h.attachments <= sio::MAX_ATTACHMENTS);
    assert!(msg.ends_with(h.data), "data is not the packet's tail");
    match h.kind {
        sio::Kind::Connect => {
            if let Ok(auth) = sio::parse_auth(h.data) {
                assert!(auth.is_object());
            }
        }
        sio::Kind::Disconnect => assert!(h.data.is_empty()),
        sio::Kind::ConnectError => panic!("a client's connect_error was accepted"),
        sio::Kind::Event | sio::Kind::BinaryEvent => {
            let Ok((name, args)) = sio::parse_event(h.data) else {
                return;
            };
            let frames = sio::event_args(h.ns, &name, &args, &[]);
            let again = sio::decode(packet(&frames)).expect("re-encoded event");
            assert_eq!(again.kind, sio::Kind::Event);
            assert_eq!(again.ns, h.ns);
            assert_eq!(again.ack, None, "event_args never asks for an ack");
            assert_eq!(sio::parse_event(again.data), Ok((name, args)));
        }
        sio::Kind::Ack | sio::Kind::BinaryAck => {
            let id = h.ack.expect("an ack without an id was accepted");
            let Ok(args) = sio::parse_args(h.data) else {
                return;
            };
            let frames = sio::ack_args(h.ns, id, &args, &[]);
            let again = sio::decode(packet(&frames)).expect("re-encoded ack");
            assert_eq!(again.kind, sio::Kind::Ack);
            assert_eq!((again.ns, again.ack), (h.ns, Some(id)));
            assert_eq!(sio::parse_args(again.data), Ok(args));
        }
    }
});
