//! A long-polling POST body (any UTF-8): `eio::decode_payload`, and each part on its
//! own through `eio::decode_text` / `eio::decode_part`. Whatever decodes must
//! re-encode (`eio::push_part`) to a payload that decodes to the same packets.

#![no_main]

use confab_sio::{eio, Frame};
use libfuzzer_sys::fuzz_target;

/// The frame a client would send for `p`.
fn frame(p: &eio::Packet<'_>) -> Frame {
    match p {
        eio::Packet::Close => Frame::text("1"),
        eio::Packet::Ping(d) => Frame::text(format!("2{d}")),
        eio::Packet::Pong(d) => Frame::text(format!("3{d}")),
        eio::Packet::Message(d) => Frame::text(format!("4{d}")),
        eio::Packet::Upgrade => Frame::text("5"),
        eio::Packet::Noop => Frame::text("6"),
        eio::Packet::Binary(b) => Frame::Binary(b.clone()),
    }
}

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);

    // The whole input as one websocket text frame.
    if let Ok(p) = eio::decode_text(&body) {
        assert!(!body.is_empty());
        let Frame::Text(t) = frame(&p) else {
            panic!("a text packet re-encoded as binary")
        };
        assert_eq!(
            t.as_str(),
            &*body,
            "text packet does not re-encode as itself"
        );
    }

    // The whole input as a polling payload.
    let parts: Vec<&str> = body.split('\x1e').collect();
    match eio::decode_payload(&body) {
        Ok(packets) => {
            assert_eq!(packets.len(), parts.len());
            for (part, p) in parts.iter().zip(&packets) {
                assert_eq!(eio::decode_part(part).as_ref(), Ok(p));
            }
            let mut out = Vec::new();
            for p in &packets {
                eio::push_part(&mut out, &frame(p));
            }
            let again = std::str::from_utf8(&out).expect("push_part wrote invalid UTF-8");
            assert_eq!(eio::decode_payload(again).as_ref(), Ok(&packets));
        }
        // Refused whole: then some part is refused on its own (or it is empty).
        Err(_) => assert!(body.is_empty() || parts.iter().any(|p| eio::decode_part(p).is_err())),
    }
});
