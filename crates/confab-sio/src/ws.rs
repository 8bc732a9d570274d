//! The websocket transport: the HTTP upgrade, the optional probe that moves a
//! polling session over, then one task per connection in which reading, writing
//! and the heartbeat run side by side in one `select!`.
//!
//! The writer takes everything queued at once and feeds it to the socket before a
//! single flush, so frames that queued up while a write was in flight go out
//! together.

use crate::conn::{Beat, Conn, Transport};
use crate::server::Inner;
use crate::socket::DisconnectReason;
use crate::{eio, frame};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// How long a closed connection may take to write its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Answer the upgrade (101) and run the connection once hyper hands the socket
/// over. `probing` is the polling session this websocket wants to take over.
pub(crate) fn upgrade(inner: Arc<Inner>, probing: Option<Arc<Conn>>, mut req: Request) -> Response {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        if let Some(c) = &probing {
            c.abort_probe();
        }
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "connection cannot be upgraded",
        )
            .into_response();
    };
    drop(req);
    let cfg = &inner.config;
    let mut ws_config = WebSocketConfig::default();
    ws_config.read_buffer_size = cfg.ws_read_buffer;
    ws_config.write_buffer_size = cfg.ws_write_buffer;
    ws_config.max_message_size = Some(cfg.max_payload);
    ws_config.max_frame_size = Some(cfg.max_payload);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("websocket upgrade failed: {e}");
                if let Some(c) = &probing {
                    c.abort_probe();
                }
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .await;
        match probing {
            Some(conn) => run_probe(conn, ws).await,
            None => {
                let conn = Conn::new(inner.clone(), Transport::WebSocket);
                inner.register(&conn);
                let c = &inner.config;
                let open = eio::open_packet(
                    &conn.sid,
                    &[],
                    c.ping_interval.as_millis() as u64,
                    c.ping_timeout.as_millis() as u64,
                    c.max_payload,
                );
                conn.push_control(&[crate::Frame::text(open)]);
                run(conn, ws).await
            }
        }
    });
    switching(&key)
}

/// Accept a websocket only to close it (a second websocket for a session).
pub(crate) fn refuse_after_upgrade(mut req: Request) -> Response {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    tokio::spawn(async move {
        if let Ok(u) = on_upgrade.await {
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(u), Role::Server, None).await;
            let _ = ws.close(None).await;
        }
    });
    switching(&key)
}

fn switching(key: &HeaderValue) -> Response {
    let accept = derive_accept_key(key.as_bytes());
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

/// The upgrade of a polling session: `2probe` → `3probe`, pending polls get `6`,
/// then `5` moves the session to this websocket.
async fn run_probe(conn: Arc<Conn>, mut ws: Ws) {
    let cfg = &conn.server.config;
    let limit = cfg.ping_interval + cfg.ping_timeout;
    let probe = async {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            match eio::decode_text(&t) {
                Ok(eio::Packet::Ping("probe")) => {
                    if ws.send(frame::PONG_PROBE.to_message()).await.is_err() {
                        return false;
                    }
                    conn.probe_answered();
                }
                Ok(eio::Packet::Upgrade) => return conn.upgraded(),
                Ok(eio::Packet::Noop) => {}
                _ => return false,
            }
        }
        false
    };
    match tokio::time::timeout(limit, probe).await {
        Ok(true) => run(conn, ws).await,
        _ => {
            conn.abort_probe();
            let _ = ws.close(None).await;
        }
    }
}

/// Read, write and beat until the session closes.
async fn run(conn: Arc<Conn>, ws: Ws) {
    let (mut sink, mut stream) = ws.split();
    let reader = async {
        let reason = loop {
            let Some(msg) = stream.next().await else {
                break DisconnectReason::TransportClose;
            };
            let applied = match msg {
                Ok(Message::Text(t)) => eio::decode_text(&t)
                    .map_err(Into::into)
                    .and_then(|p| conn.on_packet(p)),
                Ok(Message::Binary(b)) => conn.on_packet(eio::Packet::Binary(b)),
                Ok(Message::Close(_)) => break DisconnectReason::TransportClose,
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::debug!(sid = %conn.sid, "websocket read: {e}");
                    // E.g. a message over maxPayload: answered like a bad packet.
                    break DisconnectReason::ParseError;
                }
            };
            if let Err(v) = applied {
                tracing::debug!(sid = %conn.sid, "closing session: {}", v.0);
                break DisconnectReason::ParseError;
            }
            if conn.is_closed() {
                // E.g. the client sent an Engine.IO close.
                break DisconnectReason::TransportClose;
            }
        };
        conn.close(reason);
        // The writer sends what is left (the close packet) and ends the connection.
        std::future::pending::<DisconnectReason>().await
    };
    let writer = async {
        let mut batch = VecDeque::new();
        loop {
            let closed = conn.next_batch(&mut batch).await;
            for f in batch.drain(..) {
                if sink.feed(f.to_message()).await.is_err() {
                    return DisconnectReason::TransportError;
                }
            }
            if sink.flush().await.is_err() {
                return DisconnectReason::TransportError;
            }
            if closed {
                let _ = sink.send(Message::Close(None)).await;
                return DisconnectReason::ServerClose;
            }
        }
    };
    let heartbeat = async {
        let r = conn.heartbeat(Beat::WebSocket).await;
        // Closed: give the writer a moment to send the last frames.
        tokio::time::sleep(CLOSE_GRACE).await;
        r
    };
    let reason = tokio::select! {
        r = reader => r,
        r = writer => r,
        r = heartbeat => r,
    };
    conn.close(reason);
}
