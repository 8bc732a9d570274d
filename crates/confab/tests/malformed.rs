//! Raw malformed frames against the real binary. Every case must leave the server
//! running and either answer with the documented error code or close only the
//! offending connection; a bystander connection checks the "only".
//!
//! For frames that cannot be parsed, the server sends the Engine.IO close packet `1`
//! and closes that websocket (documented in docs/protocol.md).

mod common;

use common::*;
use confab_client::{packet, Client, CloseReason, Error};
use serde_json::json;
use std::time::Duration;

const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A bystander in `room` that must keep working through every case.
struct Bystander {
    c: Client,
    room: String,
}

impl Bystander {
    async fn new(s: &Server) -> Bystander {
        let c = s.connect_session(&uname("by")).await;
        let room = uroom("by");
        join(&c, &room).await;
        Bystander { c, room }
    }

    /// Still connected, still served, and the server process is alive.
    async fn check(&mut self, s: &mut Server, case: &str) {
        assert!(s.alive(), "server died after {case}\n{}", s.logs());
        assert!(!self.c.is_closed(), "bystander closed after {case}");
        let m = send(&self.c, &self.room, &format!("after {case}")).await;
        self.c
            .wait_for("message:new", |v| v["id"] == m["id"], WAIT)
            .await
            .unwrap_or_else(|e| panic!("bystander push after {case}: {e}"));
    }
}

/// Connect a victim, send `frame` raw, and assert only the victim is closed.
async fn assert_closes(s: &mut Server, by: &mut Bystander, case: &str, frame: &str) {
    let victim = s.connect_session(&uname("v")).await;
    victim.send_raw(frame.to_owned()).expect("queued");
    let reason = victim.closed(CLOSE_WAIT).await;
    assert!(
        matches!(
            reason,
            Some(CloseReason::EngineClose | CloseReason::ServerClose(_) | CloseReason::Eof)
        ),
        "{case}: expected the server to close the connection, got {reason:?}"
    );
    by.check(s, case).await;
}

#[tokio::test]
async fn unparseable_event_packets_close_only_that_connection() {
    bounded(async {
        let mut s = Server::start(&[]);
        let mut by = Bystander::new(&s).await;
        let cases = [
            ("invalid JSON after 42", r#"42["message:send",{"room":"#),
            ("invalid JSON with ack id", r#"427["room:list",{]"#),
            ("42 with an object", r#"42{"room":"general"}"#),
            ("42 with a string", r#"42"room:list""#),
            ("42 with a number", "4217"),
            ("42 with an empty array", "42[]"),
            ("42 with a non-string event name", r#"42[5,{}]"#),
        ];
        for (case, frame) in cases {
            assert_closes(&mut s, &mut by, case, frame).await;
        }
    })
    .await;
}

#[tokio::test]
async fn event_before_namespace_connect_closes_the_connection() {
    bounded(async {
        let mut s = Server::start(&[]);
        let mut by = Bystander::new(&s).await;
        // Documented here: an event packet before the `40` handshake (so before any
        // auth) is not processed; the server answers with the Engine.IO close packet
        // `1` and closes the websocket.
        let mut e = s.engine().await;
        e.send_text(r#"420["room:join",{"room":"sneaky"}]"#)
            .await
            .unwrap();
        let first = e.recv_text(CLOSE_WAIT).await.expect("an answer or close");
        if let Some(f) = &first {
            assert_eq!(f, "1", "only an engine close may come back, got {f:?}");
        }
        assert!(e.closed_within(CLOSE_WAIT).await, "connection not closed");
        by.check(&mut s, "event before 40").await;
        // Nothing happened on the server's side: no room `sneaky` exists.
        let list = ok(call(&by.c, "room:list", json!({})).await);
        assert!(
            list["rooms"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["room"] != "sneaky"),
            "{list}"
        );
        // Same without an ack id.
        let mut e = s.engine().await;
        e.send_text(r#"42["message:send",{"room":"general","text":"x"}]"#)
            .await
            .unwrap();
        assert!(e.closed_within(CLOSE_WAIT).await, "connection not closed");
        by.check(&mut s, "event before 40 (no ack)").await;
    })
    .await;
}

#[tokio::test]
async fn handshake_auth_not_an_object_is_refused() {
    bounded(async {
        let mut s = Server::start(&[]);
        let mut by = Bystander::new(&s).await;
        for (case, frame) in [
            ("auth a string", r#"40"alice""#),
            ("auth an array", r#"40["alice"]"#),
            ("auth a number", "4042"),
            ("auth null", "40null"),
            ("auth invalid JSON", r#"40{"name":"#),
            ("auth name not a string", r#"40{"name":7}"#),
        ] {
            let mut e = s.engine().await;
            e.send_text(frame).await.unwrap();
            let reply = e
                .recv_text(WAIT)
                .await
                .unwrap_or_else(|err| panic!("{case}: {err}"))
                .unwrap_or_else(|| panic!("{case}: closed without connect_error"));
            let p = match packet::decode(&reply) {
                Ok(packet::EnginePacket::Message(p)) => p,
                other => panic!("{case}: expected a socket.io packet, got {other:?}"),
            };
            assert_eq!(p.kind, packet::SioType::ConnectError, "{case}: {reply}");
            assert_eq!(p.nsp, "/");
            let msg = packet::connect_error_message(p.payload);
            assert!(msg.starts_with("invalid_name: "), "{case}: {msg}");
            by.check(&mut s, case).await;
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_namespace_gets_connect_error() {
    bounded(async {
        let mut s = Server::start(&[]);
        let mut by = Bystander::new(&s).await;
        for frame in ["40/admin,", r#"40/admin,{"name":"alice"}"#] {
            let mut e = s.engine().await;
            e.send_text(frame).await.unwrap();
            let reply = e.recv_text(WAIT).await.unwrap().expect("connect_error");
            let p = match packet::decode(&reply) {
                Ok(packet::EnginePacket::Message(p)) => p,
                other => panic!("expected a socket.io packet, got {other:?}"),
            };
            assert_eq!(p.kind, packet::SioType::ConnectError, "{reply}");
            assert_eq!(p.nsp, "/admin");
            assert!(!packet::connect_error_message(p.payload).is_empty());
            by.check(&mut s, frame).await;
        }
    })
    .await;
}

#[tokio::test]
async fn binary_attachments_are_bad_request() {
    bounded(async {
        let mut s = Server::start(&[]);
        let mut by = Bystander::new(&s).await;
        let mut v = s.connect_session(&uname("bin")).await;
        let room = uroom("bin");
        join(&v, &room).await;
        // With an ack id.
        let id = v.next_ack_id();
        let frame = format!(r#"451-{id}["message:send",{{"_placeholder":true,"num":0}}]"#);
        let ack = {
            let wait = v.send_raw_with_ack(id, frame, WAIT);
            v.send_binary(vec![1, 2, 3]).unwrap();
            wait.await.expect("ack for the binary event")
        };
        assert_err(&ack, "bad_request");
        // Without an ack id: an `error` push.
        v.send_raw(r#"451-["message:send",{"_placeholder":true,"num":0}]"#)
            .unwrap();
        v.send_binary(b"hello".to_vec()).unwrap();
        let err = v.wait_for("error", |_| true, WAIT).await.unwrap();
        assert_eq!(err["event"], "message:send");
        assert_eq!(err["error"]["code"], "bad_request");
        // The attachment inside a valid-looking payload.
        let id = v.next_ack_id();
        let frame = format!(
            r#"451-{id}["message:send",{{"room":"{room}","text":"hi","file":{{"_placeholder":true,"num":0}}}}]"#
        );
        let ack = {
            let wait = v.send_raw_with_ack(id, frame, WAIT);
            v.send_binary(vec![0xff; 16]).unwrap();
            wait.await.expect("ack")
        };
        assert_err(&ack, "bad_request");
        // Nothing was stored; the socket still works.
        let h = ok(call(&v, "message:history", json!({ "room": room })).await);
        assert_eq!(h["messages"], json!([]));
        assert_usable(&v).await;
        by.check(&mut s, "binary attachment").await;
    })
    .await;
}

#[tokio::test]
async fn unknown_event_is_bad_request() {
    bounded(async {
        let mut s = Server::start(&[]);
        let mut by = Bystander::new(&s).await;
        let mut v = s.connect_session(&uname("ue")).await;
        let ack = call(&v, "no:such-event", json!({"room": "general"})).await;
        assert_err(&ack, "bad_request");
        v.emit("admin:shutdown", &json!({})).unwrap();
        let err = v.wait_for("error", |_| true, WAIT).await.unwrap();
        assert_eq!(err["ok"], false);
        assert_eq!(err["event"], "admin:shutdown");
        assert_eq!(err["error"]["code"], "bad_request");
        assert_usable(&v).await;
        by.check(&mut s, "unknown event").await;
    })
    .await;
}

#[tokio::test]
async fn oversized_frames() {
    bounded(async {
        let mut s = Server::start(&[]);
        let mut by = Bystander::new(&s).await;
        // Above --max-payload (64 KiB) but within the transport limit: payload_too_large.
        let v = s.connect_session(&uname("big")).await;
        let ack = call(
            &v,
            "message:send",
            json!({"room": "general", "text": "ok", "pad": "x".repeat(70_000)}),
        )
        .await;
        assert_err(&ack, "payload_too_large");
        assert_usable(&v).await;

        // Above 4 × 64 KiB: the transport closes that connection.
        let big = format!(
            r#"42["message:send",{{"room":"general","text":"{}"}}]"#,
            "a".repeat(4 * 65_536 + 1)
        );
        assert_closes(&mut s, &mut by, "frame > 4 x 64 KiB", &big).await;
        // The same with an ack id: no ack, closed.
        let victim = s.connect_session(&uname("big")).await;
        let id = victim.next_ack_id();
        let r = victim
            .send_raw_with_ack(
                id,
                format!(
                    r#"42{id}["room:join",{{"room":"r","pad":"{}"}}]"#,
                    "p".repeat(300_000)
                ),
                CLOSE_WAIT,
            )
            .await;
        assert!(matches!(r, Err(Error::Closed)), "expected close, got {r:?}");
        by.check(&mut s, "frame > 4 x 64 KiB with ack").await;
        // The first victim's neighbour kept its connection.
        assert_usable(&v).await;
    })
    .await;
}
