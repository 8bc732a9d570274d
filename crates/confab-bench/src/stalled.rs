//! Stalled connections: they connect (websocket, Engine.IO and Socket.IO handshakes
//! with a name), join the room, wait for the join ack, keep reading for a short
//! while (`read_for`: frames are discarded, engine pings answered), and then never
//! read their socket again: the [`EngineConn`] (which owns the websocket and its TCP
//! stream) is kept open and not polled until the end of the run, so the kernel
//! buffers and then the server's per-socket buffer fill up, like a client that
//! worked normally and then stopped reading.
//!
//! Why the short read: engineioxide sends its first ping about a millisecond after
//! the handshake, which is usually *after* the join ack. A connection that stops
//! reading right at the ack never answers that ping, and the Engine.IO heartbeat
//! closes it `pingTimeout` (20 s) later whatever its buffer holds: that would test
//! the heartbeat, not the slow-consumer cut.
//!
//! After the run, [`probe`] reads each one again (answering engine pings) until the
//! server's Socket.IO disconnect (`41`), an Engine.IO close, the end of the transport,
//! or a bounded wait: that tells whether the server cut it.

use crate::{steps, Common};
use confab_client::packet::{self, EnginePacket, SioType};
use confab_client::{ClientBuilder, EngineConn, Error};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One stalled connection.
pub struct Stalled {
    pub name: String,
    conn: EngineConn,
}

/// Result of opening the stalled connections.
pub struct Opened {
    pub conns: Vec<Stalled>,
    pub failures: usize,
    pub first_error: Option<String>,
}

fn sio_err(what: &str, name: &str, e: impl std::fmt::Display) -> String {
    format!("stalled {name}: {what}: {e}")
}

/// Read frames until `want` picks one (returns `Some`), the connection ends, or the
/// deadline passes.
async fn until<T>(
    conn: &mut EngineConn,
    name: &str,
    what: &str,
    deadline: Instant,
    mut want: impl FnMut(&packet::SioPacket<'_>) -> Option<Result<T, String>>,
) -> Result<T, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let text = match conn.recv_text(left).await {
            Ok(Some(t)) => t,
            Ok(None) => return Err(sio_err(what, name, "connection closed")),
            Err(Error::Timeout(_)) => return Err(sio_err(what, name, "timed out")),
            Err(e) => return Err(sio_err(what, name, e)),
        };
        match packet::decode(&text).map_err(|e| sio_err(what, name, e))? {
            EnginePacket::Message(p) if p.nsp == "/" => {
                if p.kind == SioType::Disconnect {
                    return Err(sio_err(what, name, "disconnected by the server"));
                }
                if let Some(r) = want(&p) {
                    return r;
                }
            }
            EnginePacket::Close => return Err(sio_err(what, name, "engine close")),
            _ => {}
        }
    }
}

/// Open one connection, join `room` and return once the join ack said ok.
async fn open_one(
    url: String,
    name: String,
    room: String,
    per_conn: Duration,
    read_buffer: usize,
    read_for: Duration,
) -> Result<Stalled, String> {
    let deadline = Instant::now() + per_conn;
    let mut conn = ClientBuilder::new(url)
        .connect_timeout(per_conn)
        .read_buffer_size(read_buffer)
        .connect_engine()
        .await
        .map_err(|e| sio_err("connect", &name, e))?;
    conn.send_text(steps::connect_frame(&name))
        .await
        .map_err(|e| sio_err("namespace connect", &name, e))?;
    until(&mut conn, &name, "namespace connect", deadline, |p| {
        steps::connect_answer(p).map(|r| r.map_err(|e| sio_err("namespace connect", &name, e)))
    })
    .await?;
    conn.send_text(steps::join_frame(&room))
        .await
        .map_err(|e| sio_err("room:join", &name, e))?;
    until(&mut conn, &name, "room:join", deadline, |p| {
        steps::join_answer(p).map(|r| r.map_err(|e| sio_err("room:join", &name, e)))
    })
    .await?;
    // Read (and answer pings) for `read_for`, then stop for good.
    let stop = Instant::now() + read_for;
    loop {
        let left = stop.saturating_duration_since(Instant::now());
        match conn.recv_text(left).await {
            Ok(Some(_)) => {}
            Err(Error::Timeout(_)) => break,
            Ok(None) => return Err(sio_err("reading before the stall", &name, "closed")),
            Err(e) => return Err(sio_err("reading before the stall", &name, e)),
        }
    }
    Ok(Stalled { name, conn })
}

/// Open `n` stalled connections named `{prefix}stalled-{i}` (round robin over the
/// URLs, like the normal clients), each joined to the room and read for `read_for`
/// after its join ack.
pub async fn open_all(c: &Common, n: usize, prefix: &str, read_for: Duration) -> Opened {
    let per_conn = Duration::from_millis(c.connect_timeout_ms);
    let jobs = (0..n).map(|i| {
        open_one(
            c.urls[i % c.urls.len()].clone(),
            format!("{prefix}stalled-{i}"),
            c.room.clone(),
            per_conn,
            c.read_buffer,
            read_for,
        )
    });
    let mut out = Opened {
        conns: Vec::with_capacity(n),
        failures: 0,
        first_error: None,
    };
    let mut results = stream::iter(jobs).buffer_unordered(c.connect_concurrency.clamp(1, 4096));
    while let Some(r) = results.next().await {
        match r {
            Ok(s) => out.conns.push(s),
            Err(e) => {
                out.failures += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out.conns.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// How a stalled connection ended when it was read again after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server's Socket.IO disconnect packet (`41`): the slow-consumer cut.
    SioDisconnect,
    /// An Engine.IO close packet (`1`) without a `41` before it.
    EngineClose,
    /// Websocket close frame, EOF or reset without a `41` before it.
    TransportClosed,
    /// Still open (nothing ended it within the probe wait).
    Open,
    /// A websocket error that is none of the above.
    Error(String),
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Outcome::SioDisconnect => "socket.io disconnect (41)".into(),
            Outcome::EngineClose => "engine.io close".into(),
            Outcome::TransportClosed => "transport closed (close frame / EOF / reset)".into(),
            Outcome::Open => "still open".into(),
            Outcome::Error(e) => format!("error: {e}"),
        }
    }

    /// Did the server end this connection?
    pub fn disconnected(&self) -> bool {
        matches!(
            self,
            Outcome::SioDisconnect | Outcome::EngineClose | Outcome::TransportClosed
        )
    }
}

/// What reading a stalled connection again found.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub outcome: Outcome,
    /// Frames read before the outcome (pings excluded), their bytes, and how many
    /// of them were `message:new`.
    pub frames: u64,
    pub bytes: u64,
    pub messages: u64,
    pub took: Duration,
}

impl Probe {
    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "outcome": self.outcome.label(),
            "disconnected": self.outcome.disconnected(),
            "frames_drained": self.frames,
            "bytes_drained": self.bytes,
            "messages_drained": self.messages,
            "probe_s": self.took.as_secs_f64(),
        })
    }
}

/// Classify one frame read from a stalled connection: `Some` when it ends it.
fn terminal(text: &str) -> Option<Outcome> {
    match packet::decode(text) {
        Ok(EnginePacket::Message(p)) if p.nsp == "/" && p.kind == SioType::Disconnect => {
            Some(Outcome::SioDisconnect)
        }
        Ok(EnginePacket::Close) => Some(Outcome::EngineClose),
        _ => None,
    }
}

/// Read one stalled connection again until the server ends it or `wait` passes.
async fn probe_one(mut s: Stalled, wait: Duration) -> Probe {
    let started = Instant::now();
    let deadline = started + wait;
    let (mut frames, mut bytes, mut messages) = (0u64, 0u64, 0u64);
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.conn.recv_text(left).await {
            Ok(Some(t)) => {
                if let Some(o) = terminal(&t) {
                    break o;
                }
                frames += 1;
                bytes += t.len() as u64;
                if t.starts_with("42[\"message:new\"") {
                    messages += 1;
                }
            }
            Ok(None) => break Outcome::TransportClosed,
            Err(Error::Timeout(_)) => break Outcome::Open,
            Err(e) => break Outcome::Error(e.to_string()),
        }
    };
    Probe {
        name: s.name,
        outcome,
        frames,
        bytes,
        messages,
        took: started.elapsed(),
    }
}

/// Probe every stalled connection (concurrently, bounded), in name order.
pub async fn probe(conns: Vec<Stalled>, wait: Duration) -> Vec<Probe> {
    let mut out: Vec<Probe> = stream::iter(conns)
        .map(|s| probe_one(s, wait))
        .buffer_unordered(256)
        .collect()
        .await;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_frames() {
        assert_eq!(terminal("41"), Some(Outcome::SioDisconnect));
        assert_eq!(terminal("1"), Some(Outcome::EngineClose));
        assert_eq!(terminal("41/other,"), None);
        assert_eq!(terminal(r#"42["message:new",{}]"#), None);
        assert_eq!(terminal("6"), None);
        assert_eq!(terminal(""), None);
        assert!(Outcome::TransportClosed.disconnected());
        assert!(!Outcome::Open.disconnected());
        assert!(!Outcome::Error("x".into()).disconnected());
    }
}
