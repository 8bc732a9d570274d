//! `ceiling-server`: the practical limit of this box for the fan-out scenario.
//!
//! Figures from `confab-bench fanout` against confab measure the server, the load
//! generator and the machine at once (2 cores, everything on loopback). This is the
//! reference point to read them against: a minimal hand-written websocket
//! broadcaster that speaks just enough Engine.IO v4 / Socket.IO v5 for `fanout` to
//! run against it unchanged (engine open and pings, namespace connect, `room:join`,
//! `message:send` → `message:new` to the room + ack), with no Socket.IO machinery,
//! no storage, no validation beyond what keeps it safe, and every broadcast frame
//! serialised ONCE and shared (reference-counted [`Utf8Bytes`]) by all recipients.
//! Whatever `fanout` reaches against it is (a) the ceiling of this box for the
//! scenario and (b) a lower bound of what the generator itself can receive.
//!
//! Per socket: one reader task (parses frames, joins rooms, broadcasts) and one
//! writer task that owns the websocket sink and takes frames from a bounded queue:
//! it feeds everything already queued and flushes once per batch. Broadcasts use
//! `try_send` and never wait: a socket whose queue is full is cut (disconnected and
//! counted, as confab does with slow consumers). A room's member list is locked for
//! the whole broadcast of one message, so every socket sees a room's messages in
//! the same (id) order.
//!
//! It serves loopback only, runs until SIGTERM / SIGINT and then prints a one-line
//! summary on stderr.

use clap::Args;
use confab_client::packet::{self, EnginePacket, SioType};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

#[derive(Args, Debug, Clone)]
pub struct CeilingArgs {
    /// Listen address, loopback only (port 0: any free port; the server prints
    /// `ceiling: listening on http://ADDR` on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Worker threads of the (multi-threaded) tokio runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Outgoing frames queued per socket; a socket whose queue is full is
    /// disconnected (cut) and counted.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,
}

const PING_INTERVAL_MS: u64 = 25_000;
const PING_TIMEOUT_MS: u64 = 20_000;
const MAX_PAYLOAD: usize = 1_000_000;
/// Websocket read buffer per socket (eagerly allocated).
const READ_BUFFER: usize = 4 * 1024;
/// Bytes the websocket writer gathers before a write; `flush` writes the rest. Small,
/// so an idle socket keeps little memory, but a batch still goes out in few writes.
const WRITE_BUFFER: usize = 4 * 1024;
/// Most frames fed before one flush.
const BATCH: usize = 1024;
const MAX_QUEUE: usize = 1 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

type Ws = WebSocketStream<TcpStream>;

pub fn main(a: &CeilingArgs) -> ExitCode {
    match run(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab-bench ceiling-server: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(a: &CeilingArgs) -> Result<(), String> {
    if !a.bind.ip().is_loopback() {
        return Err(format!(
            "--bind {}: refusing a non-loopback address; the ceiling server only serves this machine",
            a.bind
        ));
    }
    if a.queue == 0 || a.queue > MAX_QUEUE {
        return Err(format!("--queue {} (1..={MAX_QUEUE})", a.queue));
    }
    crate::sys::raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.clamp(1, 64))
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let result = rt.block_on(serve_until_signal(a));
    // Do not wait for the connection tasks.
    rt.shutdown_timeout(CLOSE_TIMEOUT);
    result
}

async fn serve_until_signal(a: &CeilingArgs) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let listener = TcpListener::bind(a.bind)
        .await
        .map_err(|e| format!("bind {}: {e}", a.bind))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ceiling: listening on http://{addr}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    let server = Arc::new(Server::new(a.queue));
    let accept = async {
        let mut warned = false;
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    tokio::spawn(connection(server.clone(), tcp));
                }
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    if !warned {
                        eprintln!("ceiling: accept: {e} (retrying)");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("{}", server.summary());
    Ok(())
}

// ---- shared state ----

/// One socket as the rooms see it: its outgoing queue and its close signal.
struct Peer {
    id: u64,
    tx: mpsc::Sender<Message>,
    cut: AtomicBool,
    /// `true`: the connection is ending (cut, read end, write error); both tasks stop.
    closed: watch::Sender<bool>,
}

impl Peer {
    /// Queue a frame without waiting. A full queue cuts the socket. `true` if queued.
    fn push(&self, msg: Message, server: &Server) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.cut.swap(true, Ordering::Relaxed) {
                    server.cut.fetch_add(1, Ordering::Relaxed);
                    self.close();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn push_text(&self, frame: String, server: &Server) -> bool {
        self.push(Message::Text(frame.into()), server)
    }

    fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// A room's members, in a vector for a fast broadcast loop.
#[derive(Default)]
struct Room {
    members: Vec<Arc<Peer>>,
    /// peer id → index in `members`
    index: HashMap<u64, usize>,
}

impl Room {
    fn insert(&mut self, peer: &Arc<Peer>) {
        if !self.index.contains_key(&peer.id) {
            self.index.insert(peer.id, self.members.len());
            self.members.push(peer.clone());
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.index.remove(&id) {
            self.members.swap_remove(i);
            if let Some(moved) = self.members.get(i) {
                self.index.insert(moved.id, i);
            }
        }
    }
}

type RoomRef = Arc<Mutex<Room>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Server {
    queue: usize,
    /// Lock order: `rooms`, then a room.
    rooms: Mutex<HashMap<String, RoomRef>>,
    next_peer: AtomicU64,
    next_message: AtomicU64,
    connections: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    messages: AtomicU64,
    queued: AtomicU64,
    cut: AtomicU64,
    malformed: AtomicU64,
}

impl Server {
    fn new(queue: usize) -> Self {
        Server {
            queue,
            rooms: Mutex::default(),
            next_peer: AtomicU64::new(1),
            next_message: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            peak_open: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
        }
    }

    fn join(&self, name: &str, peer: &Arc<Peer>) -> RoomRef {
        let mut rooms = lock(&self.rooms);
        let room = rooms.entry(name.to_owned()).or_default().clone();
        lock(&room).insert(peer);
        room
    }

    fn leave(&self, name: &str, id: u64) {
        let mut rooms = lock(&self.rooms);
        let empty = match rooms.get(name) {
            Some(room) => {
                let mut r = lock(room);
                r.remove(id);
                r.members.is_empty()
            }
            None => false,
        };
        if empty {
            rooms.remove(name);
        }
    }

    /// Serialise `message:new` once and queue it to every member of `room` (the
    /// sender included) while holding the member list, so a room's messages reach
    /// everyone in id order. Returns the message id.
    fn broadcast(
        &self,
        room: &Mutex<Room>,
        room_name: &str,
        user: &str,
        text: &str,
    ) -> Result<String, String> {
        let members = lock(room);
        let seq = self.next_message.fetch_add(1, Ordering::Relaxed);
        let ts = now_ms();
        let id = format!("{ts}-{seq}");
        let frame = message_frame(&id, room_name, user, text, ts)
            .map_err(|e| format!("serialising message:new: {e}"))?;
        let frame = Utf8Bytes::from(frame);
        let mut queued = 0u64;
        for p in &members.members {
            if p.push(Message::Text(frame.clone()), self) {
                queued += 1;
            }
        }
        drop(members);
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.queued.fetch_add(queued, Ordering::Relaxed);
        Ok(id)
    }

    fn summary(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "ceiling: {} connections (peak {} open), {} messages, {} frames queued, {} sockets cut (queue of {} full), {} closed on malformed frames",
            n(&self.connections),
            n(&self.peak_open),
            n(&self.messages),
            n(&self.queued),
            n(&self.cut),
            self.queue,
            n(&self.malformed)
        )
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---- one connection ----

/// Accept only `GET /socket.io/?EIO=4&transport=websocket` (any other parameters).
fn is_engine_io_ws(path: &str, query: Option<&str>) -> bool {
    let q = query.unwrap_or("");
    let has = |k: &str, v: &str| q.split('&').any(|kv| kv.split_once('=') == Some((k, v)));
    (path == "/socket.io/" || path == "/socket.io")
        && has("EIO", "4")
        && has("transport", "websocket")
}

// The signature is tungstenite's handshake `Callback`.
#[allow(clippy::result_large_err)]
fn check_request(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if is_engine_io_ws(req.uri().path(), req.uri().query()) {
        Ok(resp)
    } else {
        let mut r = ErrorResponse::new(Some(
            "only GET /socket.io/?EIO=4&transport=websocket\n".to_owned(),
        ));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        Err(r)
    }
}

async fn connection(server: Arc<Server>, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(MAX_PAYLOAD))
        .max_frame_size(Some(MAX_PAYLOAD));
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(tcp, check_request, Some(config)),
    )
    .await;
    let Ok(Ok(ws)) = accepted else {
        return;
    };
    server.connections.fetch_add(1, Ordering::Relaxed);
    let open = server.open.fetch_add(1, Ordering::Relaxed) + 1;
    server.peak_open.fetch_max(open, Ordering::Relaxed);

    let id = server.next_peer.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(server.queue);
    let (closed, _) = watch::channel(false);
    let peer = Arc::new(Peer {
        id,
        tx,
        cut: AtomicBool::new(false),
        closed,
    });
    let (sink, mut stream) = ws.split();
    tokio::spawn(writer(sink, rx, peer.clone()));
    peer.push_text(open_frame(&format!("E{id:012x}")), &server);

    let mut conn = Conn {
        server: server.clone(),
        peer: peer.clone(),
        user: None,
        rooms: HashMap::new(),
    };
    let mut closed = peer.closed.subscribe();
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = wait_closed(&mut closed) => break,
        };
        let ok = match msg {
            Some(Ok(Message::Text(t))) => match conn.on_frame(t.as_str()) {
                Ok(go_on) => go_on,
                Err(_) => {
                    server.malformed.fetch_add(1, Ordering::Relaxed);
                    false
                }
            },
            Some(Ok(Message::Binary(_))) => {
                // No binary attachments here.
                server.malformed.fetch_add(1, Ordering::Relaxed);
                false
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => true,
            Some(Ok(Message::Close(_)) | Err(_)) | None => false,
        };
        if !ok {
            break;
        }
    }
    for name in conn.rooms.keys() {
        server.leave(name, id);
    }
    peer.close();
    server.open.fetch_sub(1, Ordering::Relaxed);
}

async fn wait_closed(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The writer task: owns the sink until the connection ends.
async fn writer(
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Message>,
    peer: Arc<Peer>,
) {
    let mut closed = peer.closed.subscribe();
    tokio::select! {
        _ = write_frames(&mut sink, &mut rx) => {}
        _ = wait_closed(&mut closed) => {}
    }
    // A write error or the end of the queue also ends the reader.
    peer.close();
    drop(rx);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}

/// Feed every queued frame (up to [`BATCH`]), flush once; engine ping every interval.
async fn write_frames(
    sink: &mut SplitSink<Ws, Message>,
    rx: &mut mpsc::Receiver<Message>,
) -> Result<(), tungstenite::Error> {
    let period = Duration::from_millis(PING_INTERVAL_MS);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else {
                    return Ok(());
                };
                sink.feed(m).await?;
                let mut n = 1;
                while n < BATCH {
                    match rx.try_recv() {
                        Ok(m) => {
                            sink.feed(m).await?;
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
                sink.flush().await?;
            }
            _ = ping.tick() => sink.send(Message::text("2")).await?,
        }
    }
}

/// The reader side of one connection.
struct Conn {
    server: Arc<Server>,
    peer: Arc<Peer>,
    /// Set by the namespace connect (the auth `name`).
    user: Option<String>,
    rooms: HashMap<String, RoomRef>,
}

impl Conn {
    /// Handle one text frame: `Ok(false)` ends the connection normally, `Err` on a
    /// malformed or unsupported frame.
    fn on_frame(&mut self, frame: &str) -> Result<bool, String> {
        let server = &*self.server;
        match parse_frame(frame)? {
            Incoming::Ping(p) => {
                self.peer.push_text(packet::pong_frame(p), server);
            }
            Incoming::Ignore => {}
            Incoming::Close => return Ok(false),
            Incoming::Connect { name } => {
                if self.user.is_some() {
                    return Err("second namespace connect".into());
                }
                self.user = Some(name.unwrap_or_else(|| "anonymous".to_owned()));
                let sid = format!("S{:012x}", self.peer.id);
                self.peer.push_text(connect_ack_frame(&sid), server);
            }
            Incoming::Event { ack, name, data } => {
                let Some(user) = self.user.as_deref() else {
                    return Err("event before the namespace connect".into());
                };
                let reply = match name.as_str() {
                    "room:join" => match data.get("room").and_then(Value::as_str) {
                        Some(room) if !room.is_empty() => {
                            if !self.rooms.contains_key(room) {
                                let r = server.join(room, &self.peer);
                                self.rooms.insert(room.to_owned(), r);
                            }
                            ack.map(|id| join_ack_frame(id, room))
                        }
                        _ => ack.map(|id| {
                            error_ack_frame(
                                id,
                                "invalid_payload",
                                "room must be a non-empty string",
                            )
                        }),
                    },
                    "message:send" => {
                        let room = data.get("room").and_then(Value::as_str);
                        let text = data.get("text").and_then(Value::as_str);
                        match (room, text) {
                            (Some(room), Some(text)) => match self.rooms.get(room) {
                                Some(r) => match server.broadcast(r, room, user, text) {
                                    Ok(msg_id) => ack.map(|id| send_ack_frame(id, &msg_id)),
                                    Err(e) => ack.map(|id| error_ack_frame(id, "internal", &e)),
                                },
                                None => ack.map(|id| {
                                    error_ack_frame(id, "not_member", "join the room first")
                                }),
                            },
                            _ => ack.map(|id| {
                                error_ack_frame(
                                    id,
                                    "invalid_payload",
                                    "room and text must be strings",
                                )
                            }),
                        }
                    }
                    other => ack.map(|id| {
                        error_ack_frame(
                            id,
                            "unsupported",
                            &format!("the ceiling server does not handle {other:?}"),
                        )
                    }),
                };
                if let Some(frame) = reply {
                    self.peer.push_text(frame, server);
                }
            }
        }
        Ok(true)
    }
}

// ---- pure protocol parts ----

/// What a client frame asks for.
#[derive(Debug, PartialEq)]
enum Incoming<'a> {
    /// Engine ping `2[payload]`: answer `3[payload]`.
    Ping(&'a str),
    /// Engine pong, noop, upgrade, client acks: nothing to do.
    Ignore,
    /// Engine close `1` or Socket.IO disconnect `41`.
    Close,
    /// `40` or `40{auth}`: the auth `name`, if a string.
    Connect { name: Option<String> },
    /// `42[<ack id>]["name", data]`.
    Event {
        ack: Option<u64>,
        name: String,
        data: Value,
    },
}

/// Parse one client text frame; `Err` for anything malformed or not served here
/// (other namespaces, binary events, an engine open from a client).
fn parse_frame(frame: &str) -> Result<Incoming<'_>, String> {
    let p = match packet::decode(frame).map_err(|e| e.to_string())? {
        EnginePacket::Ping(p) => return Ok(Incoming::Ping(p)),
        EnginePacket::Pong(_) | EnginePacket::Noop | EnginePacket::Upgrade => {
            return Ok(Incoming::Ignore)
        }
        EnginePacket::Close => return Ok(Incoming::Close),
        EnginePacket::Open(_) => return Err("engine open from a client".into()),
        EnginePacket::Message(p) => p,
    };
    if p.nsp != "/" {
        return Err(format!("namespace {:?} is not served", p.nsp));
    }
    match p.kind {
        SioType::Connect => {
            let name = if p.payload.is_empty() {
                None
            } else {
                let auth: Value =
                    serde_json::from_str(p.payload).map_err(|e| format!("connect payload: {e}"))?;
                if !auth.is_object() {
                    return Err("connect payload is not an object".into());
                }
                auth.get("name").and_then(Value::as_str).map(str::to_owned)
            };
            Ok(Incoming::Connect { name })
        }
        SioType::Disconnect => Ok(Incoming::Close),
        SioType::Event => {
            let ev = packet::parse_event(p.payload).map_err(|e| e.to_string())?;
            Ok(Incoming::Event {
                ack: p.id,
                name: ev.name,
                data: ev.data,
            })
        }
        SioType::Ack => Ok(Incoming::Ignore),
        SioType::ConnectError | SioType::BinaryEvent | SioType::BinaryAck => {
            Err(format!("unsupported packet {:?}", p.kind))
        }
    }
}

/// Engine.IO open: `0{"sid":...,"upgrades":[],...}` (`sid` is ours: no escaping).
fn open_frame(sid: &str) -> String {
    format!(
        r#"0{{"sid":"{sid}","upgrades":[],"pingInterval":{PING_INTERVAL_MS},"pingTimeout":{PING_TIMEOUT_MS},"maxPayload":{MAX_PAYLOAD}}}"#
    )
}

/// `40{"sid":...}` (`sid` is ours: no escaping).
fn connect_ack_frame(sid: &str) -> String {
    format!(r#"40{{"sid":"{sid}"}}"#)
}

/// `43<id>[{"ok":true,"room":R,"messages":[],"members":[]}]`
fn join_ack_frame(ack: u64, room: &str) -> String {
    #[derive(Serialize)]
    struct JoinAck<'a> {
        ok: bool,
        room: &'a str,
        messages: [(); 0],
        members: [(); 0],
    }
    let body = JoinAck {
        ok: true,
        room,
        messages: [],
        members: [],
    };
    // Serialising a struct of a bool, a str and empty arrays cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_default();
    format!("43{ack}[{body}]")
}

/// `43<id>[{"ok":true,"id":"<message id>"}]` (the id is ours: digits and `-`).
fn send_ack_frame(ack: u64, msg_id: &str) -> String {
    format!(r#"43{ack}[{{"ok":true,"id":"{msg_id}"}}]"#)
}

/// `43<id>[{"ok":false,"error":{"code":...,"message":...}}]`
fn error_ack_frame(ack: u64, code: &str, message: &str) -> String {
    #[derive(Serialize)]
    struct ErrorAck<'a> {
        ok: bool,
        error: Detail<'a>,
    }
    #[derive(Serialize)]
    struct Detail<'a> {
        code: &'a str,
        message: &'a str,
    }
    let body = ErrorAck {
        ok: false,
        error: Detail { code, message },
    };
    // Serialising a bool and two strs cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_default();
    format!("43{ack}[{body}]")
}

/// `42["message:new",{"id":...,"room":...,"user":...,"text":...,"ts":...}]`
fn message_frame(
    id: &str,
    room: &str,
    user: &str,
    text: &str,
    ts: u64,
) -> Result<String, serde_json::Error> {
    #[derive(Serialize)]
    struct NewMessage<'a> {
        id: &'a str,
        room: &'a str,
        user: &'a str,
        text: &'a str,
        ts: u64,
    }
    const HEAD: &str = "42[\"message:new\",";
    let mut out = Vec::with_capacity(HEAD.len() + 64 + room.len() + user.len() + text.len());
    out.extend_from_slice(HEAD.as_bytes());
    serde_json::to_writer(
        &mut out,
        &NewMessage {
            id,
            room,
            user,
            text,
            ts,
        },
    )?;
    out.push(b']');
    // serde_json writes UTF-8 only; the check keeps this free of `unsafe`.
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_client_frames() {
        assert_eq!(
            parse_frame(r#"4212["room:join",{"room":"bench","limit":1}]"#),
            Ok(Incoming::Event {
                ack: Some(12),
                name: "room:join".into(),
                data: json!({"room": "bench", "limit": 1}),
            })
        );
        assert_eq!(
            parse_frame(r#"420["message:send",{"room":"r","text":"1:2:3:4"}]"#),
            Ok(Incoming::Event {
                ack: Some(0),
                name: "message:send".into(),
                data: json!({"room": "r", "text": "1:2:3:4"}),
            })
        );
        assert_eq!(
            parse_frame(r#"42["typing"]"#),
            Ok(Incoming::Event {
                ack: None,
                name: "typing".into(),
                data: Value::Null,
            })
        );
        assert_eq!(parse_frame("40"), Ok(Incoming::Connect { name: None }));
        assert_eq!(
            parse_frame(r#"40{"name":"bench-1-0"}"#),
            Ok(Incoming::Connect {
                name: Some("bench-1-0".into())
            })
        );
        assert_eq!(parse_frame("40{}"), Ok(Incoming::Connect { name: None }));
        assert_eq!(parse_frame("2"), Ok(Incoming::Ping("")));
        assert_eq!(parse_frame("2probe"), Ok(Incoming::Ping("probe")));
        assert_eq!(parse_frame("3"), Ok(Incoming::Ignore));
        assert_eq!(parse_frame("6"), Ok(Incoming::Ignore));
        assert_eq!(parse_frame(r#"431[{"ok":true}]"#), Ok(Incoming::Ignore));
        assert_eq!(parse_frame("1"), Ok(Incoming::Close));
        assert_eq!(parse_frame("41"), Ok(Incoming::Close));
        for bad in [
            "",
            "9",
            "4",
            "4x",
            "42",
            "42[",
            "42{}",
            "42[1]",
            r#"42["x"] trailing"#,
            "40[1]",
            "40{",
            "40/admin,",
            r#"42/admin,["x"]"#,
            r#"451-["x",{"_placeholder":true,"num":0}]"#,
            r#"44{"message":"no"}"#,
            r#"0{"sid":"x"}"#,
            "4299999999999999999999999[\"x\"]",
        ] {
            assert!(parse_frame(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn accepts_only_engine_io_websocket() {
        assert!(is_engine_io_ws(
            "/socket.io/",
            Some("EIO=4&transport=websocket")
        ));
        assert!(is_engine_io_ws(
            "/socket.io/",
            Some("transport=websocket&EIO=4&t=x")
        ));
        assert!(!is_engine_io_ws(
            "/socket.io/",
            Some("EIO=3&transport=websocket")
        ));
        assert!(!is_engine_io_ws(
            "/socket.io/",
            Some("EIO=4&transport=polling")
        ));
        assert!(!is_engine_io_ws("/socket.io/", None));
        assert!(!is_engine_io_ws("/", Some("EIO=4&transport=websocket")));
    }

    #[test]
    fn builds_message_frame() {
        let f = message_frame("17-3", "bench", "bench-a-1", "9:1:2:345", 17).unwrap();
        assert_eq!(
            f,
            r#"42["message:new",{"id":"17-3","room":"bench","user":"bench-a-1","text":"9:1:2:345","ts":17}]"#
        );
        // What a client sees: a decodable event whose text fanout can read.
        let p = match packet::decode(&f).unwrap() {
            EnginePacket::Message(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!((p.kind, p.id), (SioType::Event, None));
        assert_eq!(packet::event_name(p.payload), Some("message:new"));
        assert_eq!(packet::find_str_field(p.payload, "text"), Some("9:1:2:345"));
        // Escaping is serde_json's.
        let f = message_frame("1-0", "r\"1", "a\\b", "line\n\"q\"", 1).unwrap();
        let ev = packet::parse_event(&f[2..]).unwrap();
        assert_eq!(
            ev.data,
            json!({"id": "1-0", "room": "r\"1", "user": "a\\b", "text": "line\n\"q\"", "ts": 1})
        );
    }

    #[test]
    fn builds_replies() {
        assert_eq!(send_ack_frame(7, "5-1"), r#"437[{"ok":true,"id":"5-1"}]"#);
        let ack = packet::parse_ack(&send_ack_frame(7, "5-1")[3..]).unwrap();
        assert_eq!(ack, json!({"ok": true, "id": "5-1"}));
        assert_eq!(
            join_ack_frame(0, "bench"),
            r#"430[{"ok":true,"room":"bench","messages":[],"members":[]}]"#
        );
        let ack = packet::parse_ack(&join_ack_frame(12, "a\"b")[4..]).unwrap();
        assert_eq!(ack["ok"], true);
        assert_eq!(ack["room"], "a\"b");
        let e = error_ack_frame(3, "unsupported", "no \"x\"");
        assert_eq!(
            e,
            r#"433[{"ok":false,"error":{"code":"unsupported","message":"no \"x\""}}]"#
        );
        let ack = packet::parse_ack(&e[3..]).unwrap();
        assert_eq!(
            ack,
            json!({"ok": false, "error": {"code": "unsupported", "message": "no \"x\""}})
        );
        assert_eq!(connect_ack_frame("S1"), r#"40{"sid":"S1"}"#);
        let open = open_frame("E1");
        assert_eq!(
            open,
            r#"0{"sid":"E1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        let info = packet::parse_open(&open[1..]).unwrap();
        assert_eq!(info.sid, "E1");
        assert!(info.upgrades.is_empty());
        assert_eq!((info.ping_interval, info.ping_timeout), (25_000, 20_000));
        assert_eq!(info.max_payload, Some(1_000_000));
    }

    #[test]
    fn rooms_keep_an_index() {
        let (tx, _rx) = mpsc::channel(1);
        let peer = |id| {
            Arc::new(Peer {
                id,
                tx: tx.clone(),
                cut: AtomicBool::new(false),
                closed: watch::channel(false).0,
            })
        };
        let (a, b, c) = (peer(1), peer(2), peer(3));
        let mut r = Room::default();
        r.insert(&a);
        r.insert(&b);
        r.insert(&c);
        r.insert(&b);
        assert_eq!(r.members.len(), 3);
        r.remove(1);
        r.remove(1);
        assert_eq!(r.members.len(), 2);
        for (id, &i) in &r.index {
            assert_eq!(r.members[i].id, *id);
        }
        r.remove(3);
        r.remove(2);
        assert!(r.members.is_empty() && r.index.is_empty());
    }

    #[test]
    fn a_full_queue_cuts_once() {
        let server = Server::new(1);
        let (tx, mut rx) = mpsc::channel(1);
        let p = Peer {
            id: 1,
            tx,
            cut: AtomicBool::new(false),
            closed: watch::channel(false).0,
        };
        let closed = p.closed.subscribe();
        assert!(p.push_text("a".into(), &server));
        assert!(!p.push_text("b".into(), &server));
        assert!(!p.push_text("c".into(), &server));
        assert_eq!(server.cut.load(Ordering::Relaxed), 1);
        assert!(*closed.borrow());
        assert_eq!(rx.try_recv().ok(), Some(Message::text("a")));
    }
}
