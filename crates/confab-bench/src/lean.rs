//! Lean receiving connections: the fan-out scenario's receivers without a general
//! client library in the way.
//!
//! A receiver only has to connect, join one room and then take frames as fast as
//! the kernel hands them over. `confab-client` (tokio-tungstenite, a task and a
//! channel per connection, an owned `String` per frame) costs about as much CPU per
//! received frame as the server spends sending it, and on a 2-core box the
//! generator then measures itself. A lean connection is one task that owns its TCP
//! stream: it reads whatever the kernel has into one reused buffer (no zeroing, no
//! per-frame allocation), walks the websocket frames in place and hands each
//! Socket.IO event straight to the scenario's handler. It answers engine pings and
//! websocket pings, and stops at a close, an end of stream, a protocol error or
//! the shared stop signal (then it sends a websocket close).
//!
//! Only what the server sends is supported: unmasked, unfragmented text frames
//! (binary frames are skipped). Anything else ends the connection with an error in
//! the report: the generator never guesses.

use crate::steps;
use confab_client::packet::{self, EnginePacket, SioType};
use confab_client::RawHandler;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Initial receive buffer; grows only for a frame larger than it.
const BUF: usize = 16 * 1024;
/// Largest frame accepted (a join ack with history can be big).
const MAX_FRAME: usize = 16 << 20;

/// One open, joined connection whose receive loop runs in its own task.
pub struct LeanConn {
    closed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl LeanConn {
    /// Whether the connection ended before the stop signal.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Wait (bounded) for the receive loop to end after the stop signal.
    pub async fn finish(self, wait: Duration) -> Option<String> {
        match tokio::time::timeout(wait, self.task).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(e),
            Ok(Err(e)) => Some(format!("receive task: {e}")),
            Err(_) => Some("receive task did not stop".into()),
        }
    }
}

/// One websocket frame found in a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub fin: bool,
    /// Payload range within the buffer.
    pub start: usize,
    pub end: usize,
}

/// Parse the frame at the start of `b` (server → client: unmasked). `Ok(None)`:
/// more bytes are needed.
pub fn parse_frame(b: &[u8]) -> Result<Option<Frame>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0f;
    if b[1] & 0x80 != 0 {
        return Err("masked frame from the server".into());
    }
    let (len, head) = match b[1] & 0x7f {
        126 if b.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() < 10 => return Ok(None),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            let n = u64::from_be_bytes(n);
            if n > MAX_FRAME as u64 {
                return Err(format!("frame of {n} bytes (max {MAX_FRAME})"));
            }
            (n as usize, 10)
        }
        n => (n as usize, 2),
    };
    if len > MAX_FRAME {
        return Err(format!("frame of {len} bytes (max {MAX_FRAME})"));
    }
    if b.len() < head + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        opcode,
        fin,
        start: head,
        end: head + len,
    }))
}

/// A client → server frame (masked with an all-zero key, which leaves the payload
/// as it is: any key is valid, and this one costs nothing).
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The upgrade request for `path` (path and query) on `authority`.
fn upgrade_request(path: &str, authority: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: Y29uZmFiLWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The request target of a websocket URL (`ws://host:port/path?query` → `/path?query`).
fn request_target(ws_url: &str) -> &str {
    let rest = ws_url.split_once("://").map_or(ws_url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// A connection during its handshake: the stream and the bytes read but not used.
struct Wire {
    tcp: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Wire {
    /// Read more bytes; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, String> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = (self.buf.len() * 2).min(MAX_FRAME + 16);
                if n == self.buf.len() {
                    return Err("frame larger than the receive buffer".into());
                }
                self.buf.resize(n, 0);
            }
        }
        let n = self
            .tcp
            .read(&mut self.buf[self.end..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        self.end += n;
        Ok(n > 0)
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        self.tcp
            .write_all(&client_frame(opcode, payload))
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Next complete frame (text payload as an owned string: handshake only).
    async fn next_text(&mut self) -> Result<String, String> {
        loop {
            if let Some(f) = parse_frame(&self.buf[self.start..self.end])? {
                let payload = &self.buf[self.start + f.start..self.start + f.end];
                let text = std::str::from_utf8(payload)
                    .map_err(|_| "non-UTF-8 text frame".to_string())?
                    .to_owned();
                self.start += f.end;
                match (f.opcode, f.fin) {
                    (_, false) => return Err("fragmented frame".into()),
                    (1, _) => return Ok(text),
                    (8, _) => return Err("websocket closed".into()),
                    (9, _) => self.send(0xA, text.as_bytes()).await?,
                    _ => {}
                }
                continue;
            }
            if !self.fill().await? {
                return Err("connection closed".into());
            }
        }
    }

    /// Read Socket.IO packets until `want` picks one; answers engine pings.
    async fn until<T>(
        &mut self,
        mut want: impl FnMut(&packet::SioPacket<'_>) -> Option<Result<T, String>>,
    ) -> Result<T, String> {
        loop {
            let text = self.next_text().await?;
            match packet::decode(&text).map_err(|e| e.to_string())? {
                EnginePacket::Message(p) if p.nsp == "/" => {
                    if p.kind == SioType::Disconnect {
                        return Err("disconnected by the server".into());
                    }
                    if let Some(r) = want(&p) {
                        return r;
                    }
                }
                EnginePacket::Ping(_) => self.send(1, b"3").await?,
                EnginePacket::Close => return Err("engine close".into()),
                _ => {}
            }
        }
    }
}

/// Connect to `url` (from `source`, if given) as `name`, join `room`, and start the
/// receive loop, which gives every Socket.IO event to `handler` until `stop` turns true.
pub async fn open(
    url: &str,
    source: Option<std::net::IpAddr>,
    name: &str,
    room: &str,
    handler: RawHandler,
    stop: watch::Receiver<bool>,
) -> Result<LeanConn, String> {
    let ep = packet::endpoint(url).map_err(|e| e.0)?;
    let tcp = confab_client::net::connect(&ep.host, ep.port, source)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut w = Wire {
        tcp,
        buf: vec![0; BUF],
        start: 0,
        end: 0,
    };
    let req = upgrade_request(request_target(&ep.ws_url), &ep.authority());
    w.tcp
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    // The 101 response, up to the blank line (anything after it is frames).
    let head_end = loop {
        if let Some(i) = w.buf[..w.end].windows(4).position(|x| x == b"\r\n\r\n") {
            break i + 4;
        }
        if w.end >= 8192 || !w.fill().await? {
            return Err("no upgrade response".into());
        }
    };
    if !w.buf.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&w.buf[..head_end.min(80)]).into_owned();
        return Err(format!(
            "upgrade refused: {}",
            line.lines().next().unwrap_or("")
        ));
    }
    w.start = head_end;
    let open = w.next_text().await?;
    if !open.starts_with('0') {
        return Err(format!("expected the engine open packet, got {open:.40}"));
    }
    w.send(1, steps::connect_frame(name).as_bytes()).await?;
    w.until(steps::connect_answer).await?;
    w.send(1, steps::join_frame(room).as_bytes()).await?;
    w.until(steps::join_answer).await?;
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let task = tokio::spawn(async move {
        let r = receive(&mut w, handler, stop).await;
        if r.is_err() || !r.as_ref().is_ok_and(|stopped| *stopped) {
            flag.store(true, Ordering::Relaxed);
        }
        r.map(|_| ())
    });
    Ok(LeanConn { closed, task })
}

/// The receive loop. Ok(true): stopped by the signal; Ok(false): the server ended
/// the connection.
async fn receive(
    w: &mut Wire,
    mut handler: RawHandler,
    mut stop: watch::Receiver<bool>,
) -> Result<bool, String> {
    loop {
        // Every complete frame in the buffer.
        while let Some(f) = parse_frame(&w.buf[w.start..w.end])? {
            let (s, e) = (w.start + f.start, w.start + f.end);
            w.start += f.end;
            if !f.fin {
                return Err("fragmented frame".into());
            }
            match f.opcode {
                1 => {
                    let text = std::str::from_utf8(&w.buf[s..e])
                        .map_err(|_| "non-UTF-8 text frame".to_string())?;
                    match text.as_bytes().first() {
                        Some(b'4') => {
                            let sio = &text[1..];
                            if let Some(data) = sio.strip_prefix('2') {
                                handler(event_name(data), data);
                            } else if sio.starts_with('1') {
                                return Ok(false);
                            }
                        }
                        Some(b'2') => {
                            let pong = client_frame(1, b"3");
                            w.tcp.write_all(&pong).await.map_err(|e| e.to_string())?;
                        }
                        Some(b'1') => return Ok(false),
                        _ => {}
                    }
                }
                8 => return Ok(false),
                9 => {
                    let pong = client_frame(0xA, &w.buf[s..e]);
                    w.tcp.write_all(&pong).await.map_err(|e| e.to_string())?;
                }
                _ => {}
            }
        }
        tokio::select! {
            r = w.fill() => if !r? { return Ok(false) },
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    w.tcp.write_all(&client_frame(8, &[])),
                )
                .await;
                return Ok(true);
            }
        }
    }
}

/// The event name of a Socket.IO event payload (`["name",...]`), cheaply.
pub fn event_name(data: &str) -> &str {
    data.strip_prefix("[\"")
        .and_then(|r| r.find('"').map(|i| &r[..i]))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_each_length_form() {
        for n in [0usize, 5, 125, 126, 300, 65_535, 65_536, 200_000] {
            let payload = vec![b'x'; n];
            // A server frame is a client frame without mask bit and key.
            let mut f = client_frame(1, &payload);
            f[1] &= 0x7f;
            let key_at = f.len() - n - 4;
            f.drain(key_at..key_at + 4);
            let parsed = parse_frame(&f).unwrap().unwrap();
            assert_eq!((parsed.opcode, parsed.fin), (1, true));
            assert_eq!(parsed.end - parsed.start, n);
            assert_eq!(parsed.end, f.len());
            // Any prefix is incomplete, not an error.
            assert_eq!(parse_frame(&f[..f.len() - 1]).unwrap(), None);
        }
    }

    #[test]
    fn rejects_masked_and_huge_frames() {
        assert!(parse_frame(&[0x81, 0x85, 0, 0, 0, 0, b'h']).is_err());
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert!(parse_frame(&huge).is_err());
    }

    #[test]
    fn client_frames_are_masked_with_a_zero_key() {
        let f = client_frame(1, b"40");
        assert_eq!(f, vec![0x81, 0x82, 0, 0, 0, 0, b'4', b'0']);
    }

    #[test]
    fn event_names_and_targets() {
        assert_eq!(event_name(r#"["message:new",{"a":1}]"#), "message:new");
        assert_eq!(event_name(r#"{"no":"array"}"#), "");
        assert_eq!(
            request_target("ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"),
            "/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(request_target("ws://127.0.0.1:3000"), "/");
    }
}
