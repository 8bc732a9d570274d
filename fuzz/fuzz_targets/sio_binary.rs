//! A binary Socket.IO packet and the attachments that follow it: `sio::decode` of
//! the header, reassembly with `sio::Partial` as the server does it (stop once
//! complete), then re-encoding the whole with `event_args` / `ack_args` must decode
//! back to the same packet and attachments.

#![no_main]

use bytes::Bytes;
use confab_sio::{sio, Frame};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    header: String,
    attachments: Vec<Vec<u8>>,
}

fn packet(frames: &[Frame]) -> &str {
    match &frames[0] {
        Frame::Text(t) => t.as_str().strip_prefix('4').expect("a message packet"),
        Frame::Binary(_) => panic!("the packet must come first, as text"),
    }
}

fn binaries(frames: &[Frame]) -> Vec<Bytes> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Binary(b) => b.clone(),
            Frame::Text(_) => panic!("an attachment went out as text"),
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let Ok(h) = sio::decode(&input.header) else {
        return;
    };
    if !matches!(h.kind, sio::Kind::BinaryEvent | sio::Kind::BinaryAck) {
        assert_eq!(h.attachments, 0, "attachments on a non-binary packet");
        return;
    }
    assert!(h.attachments <= sio::MAX_ATTACHMENTS);

    // Reassemble as the server does: one attachment per binary message, done once
    // the announced count has arrived.
    let mut partial = sio::Partial::new(h.attachments);
    let mut fed = 0;
    for a in &input.attachments {
        if partial.is_complete() {
            break;
        }
        fed += 1;
        let done = partial.push(Bytes::from(a.clone()));
        assert_eq!(done, fed == h.attachments);
    }
    assert_eq!(fed, h.attachments.min(input.attachments.len()));
    assert_eq!(partial.attachments.len(), fed);
    if !partial.is_complete() {
        return;
    }
    let atts = partial.attachments;
    let binary_kind = !atts.is_empty();

    match h.kind {
        sio::Kind::BinaryEvent => {
            let Ok((name, args)) = sio::parse_event(h.data) else {
                return;
            };
            let frames = sio::event_args(h.ns, &name, &args, &atts);
            assert_eq!(frames.len(), 1 + atts.len());
            let again = sio::decode(packet(&frames)).expect("re-encoded binary event");
            let kind = if binary_kind {
                sio::Kind::BinaryEvent
            } else {
                sio::Kind::Event
            };
            assert_eq!((again.kind, again.ns, again.ack), (kind, h.ns, None));
            assert_eq!(again.attachments, atts.len());
            assert_eq!(sio::parse_event(again.data), Ok((name, args)));
            assert_eq!(binaries(&frames[1..]), atts);
        }
        _ => {
            let id = h.ack.expect("a binary ack without an id was accepted");
            let Ok(args) = sio::parse_args(h.data) else {
                return;
            };
            let frames = sio::ack_args(h.ns, id, &args, &atts);
            assert_eq!(frames.len(), 1 + atts.len());
            let again = sio::decode(packet(&frames)).expect("re-encoded binary ack");
            let kind = if binary_kind {
                sio::Kind::BinaryAck
            } else {
                sio::Kind::Ack
            };
            assert_eq!((again.kind, again.ns, again.ack), (kind, h.ns, Some(id)));
            assert_eq!(again.attachments, atts.len());
            assert_eq!(sio::parse_args(again.data), Ok(args));
            assert_eq!(binaries(&frames[1..]), atts);
        }
    }
});
