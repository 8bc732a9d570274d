//! The websocket transport: the HTTP upgrade, the optional probe that moves a
//! polling session over, then one task per connection in which reading, writing
//! and the heartbeat run side by side in one `select!`.
//!
//! The writer takes everything queued at once and feeds it to the socket before a
//! single flush, so frames that queued up while a write was in flight go out
//! together.

use crate::conn::{Beat, Conn, Transport};
use crate::eio;
use crate::server::Inner;
use crate::socket::DisconnectReason;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Io = TokioIo<hyper::upgrade::Upgraded>;
/// What tungstenite reads from.
type Reader = WebSocketStream<ReadOnly<tokio::io::ReadHalf<Io>>>;
/// What the writer writes to.
type Writer = tokio::io::WriteHalf<Io>;

/// How long a closed connection may take to write its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A `Sec-WebSocket-Key`: base64 of exactly 16 bytes.
fn valid_key(k: &[u8]) -> bool {
    use base64::Engine as _;
    k.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(k)
            .is_ok_and(|b| b.len() == 16)
}

/// Answer the upgrade (101) and run the connection once hyper hands the socket
/// over. `probing` is the polling session this websocket wants to take over.
pub(crate) fn upgrade(inner: Arc<Inner>, probing: Option<Arc<Conn>>, mut req: Request) -> Response {
    // RFC 6455 §4.2.1-2: version 13 only (426 names it), and a key that is 16
    // random bytes in base64.
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        if let Some(c) = &probing {
            c.abort_probe();
        }
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
        )
            .into_response();
    }
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| valid_key(k.as_bytes()))
        .cloned()
    else {
        if let Some(c) = &probing {
            c.abort_probe();
        }
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
    let peer = crate::conn::Peer::of(&req);
    // A new session (not an upgrade of one) must be admitted, before the 101.
    let guard = if probing.is_none() {
        match inner.admit(&peer) {
            Ok(g) => g,
            Err(msg) => {
                let body = serde_json::json!({"code": 4, "message": format!("Forbidden: {msg}")});
                return (StatusCode::FORBIDDEN, body.to_string()).into_response();
            }
        }
    } else {
        None
    };
    drop(req);
    let cfg = &inner.config;
    let mut ws_config = WebSocketConfig::default();
    ws_config.read_buffer_size = cfg.ws_read_buffer;
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
        let (rd, wr) = tokio::io::split(TokioIo::new(upgraded));
        let stream =
            WebSocketStream::from_raw_socket(ReadOnly(rd), Role::Server, Some(ws_config)).await;
        match probing {
            Some(conn) => run_probe(conn, stream, wr).await,
            None => {
                let conn = Conn::new(inner.clone(), Transport::WebSocket, peer, guard);
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
                run(conn, stream, wr).await
            }
        }
    });
    switching(&key)
}

/// Accept a websocket only to close it (a second websocket for a session).
pub(crate) fn refuse_after_upgrade(mut req: Request) -> Response {
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| valid_key(k.as_bytes()))
        .cloned()
    else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    tokio::spawn(async move {
        if let Ok(u) = on_upgrade.await {
            let mut io = TokioIo::new(u);
            let _ = write_frames(&mut io, &mut Vec::new(), [(OP_CLOSE, &CLOSE_NORMAL[..])]).await;
            let _ = io.shutdown().await;
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
async fn run_probe(conn: Arc<Conn>, mut stream: Reader, mut wr: Writer) {
    let cfg = &conn.server.config;
    let limit = cfg.ping_interval + cfg.ping_timeout;
    let probe = async {
        let mut heads = Vec::new();
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(t) = msg else { continue };
            match eio::decode_text(&t) {
                Ok(eio::Packet::Ping("probe")) => {
                    let sent = write_frames(&mut wr, &mut heads, [(OP_TEXT, &b"3probe"[..])]).await;
                    if sent.is_err() {
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
        Ok(true) => run(conn, stream, wr).await,
        _ => {
            conn.abort_probe();
            let _ = write_frames(&mut wr, &mut Vec::new(), [(OP_CLOSE, &CLOSE_NORMAL[..])]).await;
            let _ = wr.shutdown().await;
        }
    }
}

/// Read, write and beat until the session closes.
///
/// tungstenite reads (unmasking, fragments, UTF-8, control frames) over the read half
/// of the socket; writes bypass it: server frames are unmasked and trivial to frame,
/// so the writer sends each batch with vectored writes straight from the shared
/// frames (no copy into a write buffer, no buffer kept after a burst).
async fn run(conn: Arc<Conn>, mut stream: Reader, mut wr: Writer) {
    // A websocket ping's payload, answered by the writer.
    let pong: parking_lot::Mutex<Option<bytes::Bytes>> = parking_lot::Mutex::new(None);
    let pong_wake = tokio::sync::Notify::new();
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
                Ok(Message::Ping(p)) => {
                    *pong.lock() = Some(p);
                    pong_wake.notify_one();
                    Ok(())
                }
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
        let mut heads = Vec::new();
        loop {
            let closed = tokio::select! {
                biased;
                c = conn.next_batch(&mut batch) => c,
                _ = pong_wake.notified() => false,
            };
            let ponged = pong.lock().take();
            if let Some(p) = ponged {
                if write_frames(&mut wr, &mut heads, [(OP_PONG, &p[..])])
                    .await
                    .is_err()
                {
                    return DisconnectReason::TransportError;
                }
            }
            if write_frames(&mut wr, &mut heads, batch.iter().map(parts))
                .await
                .is_err()
            {
                return DisconnectReason::TransportError;
            }
            batch.clear();
            if closed {
                let _ = write_frames(&mut wr, &mut heads, [(OP_CLOSE, &CLOSE_NORMAL[..])]).await;
                let _ = wr.shutdown().await;
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

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;
/// Close code 1000 (normal closure).
const CLOSE_NORMAL: [u8; 2] = [0x03, 0xE8];
/// iovecs per write call (Linux accepts 1024).
const MAX_SLICES: usize = 512;

/// A frame's opcode and payload.
fn parts(f: &crate::Frame) -> (u8, &[u8]) {
    match f {
        crate::Frame::Text(t) => (OP_TEXT, t.as_bytes()),
        crate::Frame::Binary(b) => (OP_BINARY, &b[..]),
    }
}

/// The header of an unmasked, final server frame.
fn frame_head(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Write frames with as few vectored writes as possible (header and payload
/// slices side by side). `heads` is scratch space kept by the caller.
async fn write_frames<'a, W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    heads: &mut Vec<u8>,
    frames: impl IntoIterator<Item = (u8, &'a [u8])>,
) -> std::io::Result<()> {
    let mut frames = frames.into_iter().peekable();
    while frames.peek().is_some() {
        heads.clear();
        let mut parts: Vec<(usize, usize, &[u8])> = Vec::new();
        for (op, payload) in frames.by_ref().take(MAX_SLICES / 2) {
            let start = heads.len();
            frame_head(heads, op, payload.len());
            parts.push((start, heads.len(), payload));
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() * 2);
        for (a, b, payload) in &parts {
            slices.push(IoSlice::new(&heads[*a..*b]));
            if !payload.is_empty() {
                slices.push(IoSlice::new(payload));
            }
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = wr.write_vectored(rest).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
    }
    if heads.capacity() > 4096 {
        *heads = Vec::new();
    }
    wr.flush().await
}

/// The read half of the socket as tungstenite's stream. tungstenite's own writes
/// (automatic pong and close replies) are dropped: the writer above answers pings
/// and closes itself.
struct ReadOnly<R>(R);

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ReadOnly<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<R: Unpin> tokio::io::AsyncWrite for ReadOnly<R> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_heads() {
        let mut h = Vec::new();
        frame_head(&mut h, OP_TEXT, 5);
        assert_eq!(h, [0x81, 5]);
        h.clear();
        frame_head(&mut h, OP_BINARY, 126);
        assert_eq!(h, [0x82, 126, 0, 126]);
        h.clear();
        frame_head(&mut h, OP_TEXT, 70_000);
        assert_eq!(h, [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    /// Frames written by the writer read back with tungstenite as a client would.
    #[tokio::test]
    async fn written_frames_read_back() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let mut heads = Vec::new();
        let big = "y".repeat(70_000);
        let frames: Vec<(u8, &[u8])> = (0..600)
            .map(|i| {
                (
                    OP_TEXT,
                    if i == 7 {
                        big.as_bytes()
                    } else {
                        &b"4hello"[..]
                    },
                )
            })
            .chain([(OP_BINARY, &[1u8, 2, 3][..])])
            .collect();
        write_frames(&mut a, &mut heads, frames).await.unwrap();
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        for i in 0..600 {
            let m = client.next().await.unwrap().unwrap();
            let want = if i == 7 { big.as_str() } else { "4hello" };
            assert_eq!(m, Message::Text(want.into()));
        }
        let m = client.next().await.unwrap().unwrap();
        assert_eq!(m, Message::Binary(vec![1, 2, 3].into()));
    }
}
