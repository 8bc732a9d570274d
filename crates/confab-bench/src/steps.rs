//! The Socket.IO steps every raw bench connection takes after the engine
//! handshake (the lean receivers and the stalled connections): connect to the
//! namespace with a name, then join the room. Pure: frames to send and the
//! recognition of the server's answers; each caller does its own I/O.

use confab_client::packet::{self, SioPacket, SioType};
use serde_json::json;

/// Ack id of the `room:join` a raw bench connection sends.
const JOIN_ACK_ID: u64 = 1;

/// The namespace connect frame carrying `name`.
pub fn connect_frame(name: &str) -> String {
    packet::connect_frame(Some(&json!({ "name": name })))
}

/// The server's answer to [`connect_frame`], if `p` is it.
pub fn connect_answer(p: &SioPacket<'_>) -> Option<Result<(), String>> {
    match p.kind {
        SioType::Connect => Some(Ok(())),
        SioType::ConnectError => Some(Err(format!(
            "connect refused: {}",
            packet::connect_error_message(p.payload)
        ))),
        _ => None,
    }
}

/// The `room:join` request (one message of history).
pub fn join_frame(room: &str) -> String {
    packet::event_frame(
        "room:join",
        &json!({"room": room, "limit": 1}),
        Some(JOIN_ACK_ID),
    )
}

/// The server's answer to [`join_frame`], if `p` is it.
pub fn join_answer(p: &SioPacket<'_>) -> Option<Result<(), String>> {
    (p.kind == SioType::Ack && p.id == Some(JOIN_ACK_ID)).then(|| {
        let ack = packet::parse_ack(p.payload).map_err(|e| e.to_string())?;
        if ack["ok"] == true {
            Ok(())
        } else {
            Err(format!("room:join refused: {ack}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sio(frame: &str) -> SioPacket<'_> {
        packet::decode_sio(frame).unwrap()
    }

    #[test]
    fn recognises_the_answers() {
        assert_eq!(connect_answer(&sio(r#"0{"sid":"x"}"#)), Some(Ok(())));
        assert!(matches!(
            connect_answer(&sio(r#"4{"message":"bad name"}"#)),
            Some(Err(e)) if e.contains("bad name")
        ));
        assert_eq!(connect_answer(&sio(r#"2["session",{}]"#)), None);
        assert_eq!(join_answer(&sio(r#"31[{"ok":true}]"#)), Some(Ok(())));
        assert!(matches!(
            join_answer(&sio(r#"31[{"ok":false}]"#)),
            Some(Err(_))
        ));
        assert_eq!(join_answer(&sio(r#"32[{"ok":true}]"#)), None);
        assert!(join_frame("r").starts_with(r#"421["room:join""#));
    }
}
