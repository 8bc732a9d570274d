//! A minimal, fast Socket.IO v5 / Engine.IO v4 client over websocket (no polling,
//! no TLS, default namespace only), for confab's integration tests and its load
//! generator.
//!
//! ```no_run
//! # async fn demo() -> Result<(), confab_client::Error> {
//! use confab_client::ClientBuilder;
//! use serde_json::json;
//! use std::time::Duration;
//! let mut c = ClientBuilder::new("http://127.0.0.1:3000").name("alice").connect().await?;
//! let ack = c.emit_with_ack("room:join", &json!({"room": "general"}), Duration::from_secs(5)).await?;
//! let ev = c.wait_for("session", |_| true, Duration::from_secs(5)).await?;
//! c.close().await;
//! # Ok(()) }
//! ```
//!
//! One tokio task per connection owns the websocket: it answers engine pings,
//! resolves acks, delivers events and writes whatever the [`Client`] handle queues
//! (batched: every queued frame is fed, then one flush).
//!
//! Events are delivered either parsed ([`ServerEvent`], the default: read them with
//! [`Client::next_event`] / [`Client::wait_for`]) or, for load generation, raw: a
//! callback given to [`ClientBuilder::on_raw_event`] runs on the connection task with
//! the event name and the payload text borrowed from the frame (nothing is parsed or
//! allocated per event).

pub mod net;
pub mod packet;

pub use packet::{OpenInfo, ServerEvent};

use futures_util::{SinkExt, StreamExt};
use packet::{EnginePacket, SioType};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

/// The raw event callback: `(event name, payload)` where the payload is the whole
/// JSON array text `["name", data]` of the frame.
pub type RawHandler = Box<dyn FnMut(&str, &str) + Send + 'static>;

/// An ack being awaited: the first argument of the ack, [`Error::Timeout`] or
/// [`Error::Closed`].
pub type AckFuture = Pin<Box<dyn Future<Output = Result<Value, Error>> + Send + 'static>>;

/// Everything that can go wrong.
#[derive(Debug)]
pub enum Error {
    /// The URL cannot be used.
    Url(String),
    Io(std::io::Error),
    Ws(tungstenite::Error),
    /// The server sent something that is not Engine.IO / Socket.IO.
    Protocol(String),
    /// The server refused the namespace connect (`44{"message": ...}`).
    ConnectError(String),
    /// No answer in time; the text says what was awaited.
    Timeout(&'static str),
    /// The connection is closed.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url(m) => write!(f, "bad url: {m}"),
            Error::Io(e) => write!(f, "io: {e}"),
            Error::Ws(e) => write!(f, "websocket: {e}"),
            Error::Protocol(m) => write!(f, "protocol: {m}"),
            Error::ConnectError(m) => write!(f, "connect_error: {m}"),
            Error::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Error::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<tungstenite::Error> for Error {
    fn from(e: tungstenite::Error) -> Self {
        Error::Ws(e)
    }
}

impl From<packet::PacketError> for Error {
    fn from(e: packet::PacketError) -> Self {
        Error::Protocol(e.0)
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// [`Client::close`] or the handle was dropped.
    Client,
    /// The server sent a websocket close frame (code and reason text).
    ServerClose(Option<(u16, String)>),
    /// The server sent an Engine.IO close packet (`1`).
    EngineClose,
    /// The server disconnected the socket from the namespace (`41`).
    NamespaceDisconnect,
    /// The TCP stream ended without a close frame.
    Eof,
    /// No ping from the server within pingInterval + pingTimeout.
    PingTimeout,
    /// A read or write error.
    Error(String),
}

/// Connection options.
pub struct ClientBuilder {
    url: String,
    auth: Option<Value>,
    connect_timeout: Duration,
    read_buffer: usize,
    raw: Option<RawHandler>,
    source: Option<IpAddr>,
}

impl ClientBuilder {
    /// `url`: `http://host:port`, `ws://host:port` or `host:port` (optionally with a
    /// Socket.IO path; default `/socket.io/`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: Some(Value::Object(Default::default())),
            connect_timeout: Duration::from_secs(10),
            read_buffer: 16 * 1024,
            raw: None,
            source: None,
        }
    }

    /// The handshake auth object (sent as `40<auth>`); `None` sends a bare `40`.
    pub fn auth(mut self, auth: Option<Value>) -> Self {
        self.auth = auth;
        self
    }

    /// Shorthand for `auth({"name": name})`.
    pub fn name(self, name: &str) -> Self {
        self.auth(Some(serde_json::json!({ "name": name })))
    }

    /// Local address to connect from (see [`net::connect`]); default: the system's.
    pub fn source_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.source = ip;
        self
    }

    /// Bound on TCP connect + websocket upgrade + engine and namespace handshakes.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Websocket read buffer (eagerly allocated per connection; default 16 KiB).
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes.max(1024);
        self
    }

    /// Deliver events raw to `f(name, payload)` on the connection task instead of
    /// parsing them into [`ServerEvent`]s.
    pub fn on_raw_event(mut self, f: impl FnMut(&str, &str) + Send + 'static) -> Self {
        self.raw = Some(Box::new(f));
        self
    }

    /// Open the websocket and complete the Engine.IO handshake only (no namespace
    /// connect): a raw connection for malformed-input tests.
    pub async fn connect_engine(&self) -> Result<EngineConn, Error> {
        timeout(
            self.connect_timeout,
            EngineConn::open(&self.url, self.read_buffer, self.source),
        )
        .await
        .map_err(|_| Error::Timeout("websocket and engine handshake"))?
    }

    /// Connect: websocket, engine open, namespace connect with the auth object.
    pub async fn connect(self) -> Result<Client, Error> {
        // Taken apart first: the future holds no borrow of the builder (whose raw
        // handler is not `Sync`), so it is `Send`.
        let ClientBuilder {
            url,
            auth,
            connect_timeout,
            read_buffer,
            raw,
            source,
        } = self;
        let deadline = Instant::now() + connect_timeout;
        let engine = timeout(connect_timeout, EngineConn::open(&url, read_buffer, source))
            .await
            .map_err(|_| Error::Timeout("websocket and engine handshake"))??;
        let left = deadline.saturating_duration_since(Instant::now());
        engine
            .namespace_connect_inner(auth.as_ref(), left, raw)
            .await
    }
}

/// A websocket with a completed Engine.IO handshake, driven by hand.
pub struct EngineConn {
    ws: Ws,
    /// The engine handshake data.
    pub open: OpenInfo,
}

impl EngineConn {
    async fn open(
        url: &str,
        read_buffer: usize,
        source: Option<IpAddr>,
    ) -> Result<EngineConn, Error> {
        let ep = packet::endpoint(url).map_err(|e| Error::Url(e.0))?;
        let tcp = net::connect(&ep.host, ep.port, source).await?;
        tcp.set_nodelay(true)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .max_message_size(Some(64 << 20));
        let (mut ws, _resp) =
            tokio_tungstenite::client_async_with_config(ep.ws_url.as_str(), tcp, Some(config))
                .await?;
        let open = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match packet::decode(t.as_str())? {
                    EnginePacket::Open(json) => break packet::parse_open(json)?,
                    other => {
                        return Err(Error::Protocol(format!(
                            "expected engine open, got {other:?}"
                        )))
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => {
                    return Err(Error::Protocol(format!(
                        "expected engine open, got {other:?}"
                    )))
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(Error::Closed),
            }
        };
        Ok(EngineConn { ws, open })
    }

    /// Send one text frame as is.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), Error> {
        self.ws.send(Message::text(text.into())).await?;
        Ok(())
    }

    /// Send one binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        self.ws.send(Message::binary(bytes)).await?;
        Ok(())
    }

    /// The next text frame that is not an engine ping (pings are answered).
    /// `Ok(None)` when the connection ended; [`Error::Timeout`] after `wait`.
    pub async fn recv_text(&mut self, wait: Duration) -> Result<Option<String>, Error> {
        let deadline = Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| Error::Timeout("a frame"))?;
            match next {
                Some(Ok(Message::Text(t))) => {
                    if let Some(p) = t.as_str().strip_prefix('2') {
                        self.ws.send(Message::text(packet::pong_frame(p))).await?;
                        continue;
                    }
                    return Ok(Some(t.as_str().to_owned()));
                }
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => continue,
                Some(Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(_)
                    | tungstenite::Error::Io(_),
                )) => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Wait until the server ends the connection: `true` if it did within `wait`
    /// (frames received meanwhile are discarded, pings answered).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_text(left).await {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(Error::Timeout(_)) => return false,
                Err(_) => return true,
            }
        }
    }

    /// Connect to the default namespace with `auth` and hand the connection to a task.
    pub async fn namespace_connect(
        self,
        auth: Option<&Value>,
        wait: Duration,
    ) -> Result<Client, Error> {
        self.namespace_connect_inner(auth, wait, None).await
    }

    async fn namespace_connect_inner(
        mut self,
        auth: Option<&Value>,
        wait: Duration,
        raw: Option<RawHandler>,
    ) -> Result<Client, Error> {
        let deadline = Instant::now() + wait;
        self.ws
            .send(Message::text(packet::connect_frame(auth)))
            .await?;
        let sid = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(text) = self.recv_text(left).await.map_err(|e| match e {
                Error::Timeout(_) => Error::Timeout("namespace connect"),
                e => e,
            })?
            else {
                return Err(Error::Closed);
            };
            match packet::decode(&text)? {
                EnginePacket::Message(p) if p.nsp == "/" => match p.kind {
                    SioType::Connect => {
                        let v: Value = serde_json::from_str(p.payload).map_err(|e| {
                            Error::Protocol(format!("connect payload {:?}: {e}", p.payload))
                        })?;
                        break v
                            .get("sid")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                    }
                    SioType::ConnectError => {
                        return Err(Error::ConnectError(packet::connect_error_message(
                            p.payload,
                        )))
                    }
                    _ => return Err(Error::Protocol(format!("expected connect, got {text:?}"))),
                },
                EnginePacket::Close => return Err(Error::Closed),
                EnginePacket::Noop | EnginePacket::Pong(_) => continue,
                _ => return Err(Error::Protocol(format!("expected connect, got {text:?}"))),
            }
        };
        Ok(Client::spawn(self, sid, raw))
    }
}

enum Cmd {
    Frame(Message),
    Ack {
        id: u64,
        frame: String,
        reply: oneshot::Sender<Value>,
    },
    Close,
}

/// A connected Socket.IO client (default namespace).
pub struct Client {
    cmd: mpsc::UnboundedSender<Cmd>,
    next_ack: AtomicU64,
    sid: String,
    engine_sid: String,
    events: mpsc::UnboundedReceiver<ServerEvent>,
    backlog: VecDeque<ServerEvent>,
    closed: watch::Receiver<Option<CloseReason>>,
    counters: Arc<Counters>,
}

/// Frames seen by a connection (cheap atomics, for load generation).
#[derive(Debug, Default)]
pub struct Counters {
    pub events: AtomicU64,
    pub acks: AtomicU64,
    pub pings: AtomicU64,
    pub other: AtomicU64,
}

impl Client {
    fn spawn(engine: EngineConn, sid: String, raw: Option<RawHandler>) -> Client {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = watch::channel(None);
        let counters = Arc::new(Counters::default());
        let engine_sid = engine.open.sid.clone();
        let idle = Duration::from_millis(engine.open.ping_interval + engine.open.ping_timeout)
            + Duration::from_secs(2);
        let conn = Conn {
            ws: engine.ws,
            cmd: cmd_rx,
            events: ev_tx,
            raw,
            pending: HashMap::new(),
            inserts: 0,
            counters: counters.clone(),
            idle,
        };
        tokio::spawn(async move {
            let reason = conn.run().await;
            let _ = closed_tx.send(Some(reason));
        });
        Client {
            cmd: cmd_tx,
            next_ack: AtomicU64::new(0),
            sid,
            engine_sid,
            events: ev_rx,
            backlog: VecDeque::new(),
            closed: closed_rx,
            counters,
        }
    }

    /// The Socket.IO socket id (from `40{"sid":...}`).
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The Engine.IO session id.
    pub fn engine_sid(&self) -> &str {
        &self.engine_sid
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    fn queue(&self, cmd: Cmd) -> Result<(), Error> {
        self.cmd.send(cmd).map_err(|_| Error::Closed)
    }

    /// Send an event without an ack callback.
    pub fn emit(&self, event: &str, data: &Value) -> Result<(), Error> {
        self.send_raw(packet::event_frame(event, data, None))
    }

    /// Send an event whose data is already JSON text, without an ack callback.
    pub fn emit_json(&self, event: &str, data_json: &str) -> Result<(), Error> {
        self.send_raw(packet::event_frame_json(event, data_json, None))
    }

    /// Send an event with an ack callback and wait (at most `wait`) for the ack's
    /// first argument.
    ///
    /// The frame is queued when this is called (not when the future is first
    /// polled), so calls are sent in call order; the returned future does not borrow
    /// the client and can be spawned.
    pub fn emit_with_ack(&self, event: &str, data: &Value, wait: Duration) -> AckFuture {
        let id = self.next_ack_id();
        self.ack_frame(id, packet::event_frame(event, data, Some(id)), wait)
    }

    /// [`Client::emit_with_ack`] with the data already JSON text.
    pub fn emit_json_with_ack(&self, event: &str, data_json: &str, wait: Duration) -> AckFuture {
        let id = self.next_ack_id();
        self.ack_frame(
            id,
            packet::event_frame_json(event, data_json, Some(id)),
            wait,
        )
    }

    /// An event with an ack callback and no argument at all: `42<id>["event"]`.
    pub fn emit_no_data_with_ack(&self, event: &str, wait: Duration) -> AckFuture {
        let id = self.next_ack_id();
        self.ack_frame(id, packet::event_frame_no_data(event, Some(id)), wait)
    }

    /// Reserve an ack id for a hand-made frame sent with [`Client::send_raw_with_ack`].
    pub fn next_ack_id(&self) -> u64 {
        self.next_ack.fetch_add(1, Ordering::Relaxed)
    }

    /// Queue a hand-made frame that carries ack id `id` now, and wait for that ack.
    pub fn send_raw_with_ack(
        &self,
        id: u64,
        frame: impl Into<String>,
        wait: Duration,
    ) -> AckFuture {
        self.ack_frame(id, frame.into(), wait)
    }

    fn ack_frame(&self, id: u64, frame: String, wait: Duration) -> AckFuture {
        let (tx, rx) = oneshot::channel();
        let queued = self.queue(Cmd::Ack {
            id,
            frame,
            reply: tx,
        });
        Box::pin(async move {
            queued?;
            match timeout(wait, rx).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(_)) => Err(Error::Closed),
                Err(_) => Err(Error::Timeout("ack")),
            }
        })
    }

    /// Send any text frame as is (for malformed-input tests).
    pub fn send_raw(&self, text: impl Into<String>) -> Result<(), Error> {
        self.queue(Cmd::Frame(Message::text(text.into())))
    }

    /// Send a binary frame (an attachment).
    pub fn send_binary(&self, bytes: Vec<u8>) -> Result<(), Error> {
        self.queue(Cmd::Frame(Message::binary(bytes)))
    }

    /// The next server event (backlog first), or `Err(Closed)` / `Err(Timeout)`.
    pub async fn next_event(&mut self, wait: Duration) -> Result<ServerEvent, Error> {
        if let Some(ev) = self.backlog.pop_front() {
            return Ok(ev);
        }
        match timeout(wait, self.events.recv()).await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout("an event")),
        }
    }

    /// The first event named `name` whose data satisfies `pred`, within `wait`.
    /// Other events are kept (in order) for later calls.
    pub async fn wait_for(
        &mut self,
        name: &str,
        mut pred: impl FnMut(&Value) -> bool,
        wait: Duration,
    ) -> Result<Value, Error> {
        if let Some(i) = self
            .backlog
            .iter()
            .position(|e| e.name == name && pred(&e.data))
        {
            return Ok(self.backlog.remove(i).expect("index in range").data);
        }
        let deadline = Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if ev.name == name && pred(&ev.data) => return Ok(ev.data),
                Ok(Some(ev)) => self.backlog.push_back(ev),
                Ok(None) => return Err(Error::Closed),
                Err(_) => return Err(Error::Timeout("a matching event")),
            }
        }
    }

    /// Every event received so far (backlog and queue), without waiting.
    pub fn drain_events(&mut self) -> Vec<ServerEvent> {
        let mut out: Vec<ServerEvent> = self.backlog.drain(..).collect();
        while let Ok(ev) = self.events.try_recv() {
            out.push(ev);
        }
        out
    }

    /// Collect events named `name` for `period` (others stay in the backlog).
    pub async fn collect_for(&mut self, name: &str, period: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let mut keep = VecDeque::new();
        for ev in self.backlog.drain(..) {
            if ev.name == name {
                out.push(ev.data);
            } else {
                keep.push_back(ev);
            }
        }
        self.backlog = keep;
        let deadline = Instant::now() + period;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            if ev.name == name {
                out.push(ev.data);
            } else {
                self.backlog.push_back(ev);
            }
        }
        out
    }

    /// True once the connection task has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.closed.borrow().clone()
    }

    /// Wait (at most `wait`) for the connection to end; its reason, or `None`.
    pub async fn closed(&self, wait: Duration) -> Option<CloseReason> {
        let mut rx = self.closed.clone();
        let got = match timeout(wait, rx.wait_for(Option::is_some)).await {
            Ok(Ok(r)) => r.clone(),
            _ => None,
        };
        got.or_else(|| self.close_reason())
    }

    /// Leave the namespace (`41`), close the websocket and wait (bounded) for the
    /// connection task to end.
    pub async fn close(&self) {
        if self.queue(Cmd::Close).is_ok() {
            self.closed(Duration::from_secs(3)).await;
        }
    }
}

/// The connection task's state.
struct Conn {
    ws: Ws,
    cmd: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<ServerEvent>,
    raw: Option<RawHandler>,
    pending: HashMap<u64, oneshot::Sender<Value>>,
    inserts: u64,
    counters: Arc<Counters>,
    idle: Duration,
}

enum Step {
    Continue,
    Stop(CloseReason),
}

impl Conn {
    async fn run(mut self) -> CloseReason {
        let mut idle_deadline = Instant::now() + self.idle;
        let reason = loop {
            let step = tokio::select! {
                msg = self.ws.next() => {
                    idle_deadline = Instant::now() + self.idle;
                    self.on_frame(msg).await
                }
                cmd = self.cmd.recv() => self.on_cmd(cmd).await,
                _ = tokio::time::sleep_until(idle_deadline) => Step::Stop(CloseReason::PingTimeout),
            };
            if let Step::Stop(r) = step {
                break r;
            }
        };
        // Fail pending acks now (their receivers see the sender dropped).
        self.pending.clear();
        if !matches!(reason, CloseReason::Eof | CloseReason::Error(_)) {
            // Bounded close handshake.
            let ws = &mut self.ws;
            let _ = timeout(Duration::from_secs(1), async {
                let _ = ws.close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
        reason
    }

    async fn on_cmd(&mut self, cmd: Option<Cmd>) -> Step {
        let Some(cmd) = cmd else {
            return self.client_close().await;
        };
        // Feed this command and whatever else is already queued, then flush once.
        let mut next = Some(cmd);
        let mut budget = 256;
        while let Some(cmd) = next.take() {
            let msg = match cmd {
                Cmd::Frame(m) => m,
                Cmd::Ack { id, frame, reply } => {
                    self.pending.insert(id, reply);
                    self.inserts += 1;
                    if self.inserts & 1023 == 0 {
                        self.pending.retain(|_, tx| !tx.is_closed());
                    }
                    Message::text(frame)
                }
                Cmd::Close => {
                    if let Err(e) = self.ws.flush().await {
                        return Step::Stop(CloseReason::Error(e.to_string()));
                    }
                    return self.client_close().await;
                }
            };
            if let Err(e) = self.ws.feed(msg).await {
                return Step::Stop(CloseReason::Error(e.to_string()));
            }
            budget -= 1;
            if budget > 0 {
                next = self.cmd.try_recv().ok();
            }
        }
        match self.ws.flush().await {
            Ok(()) => Step::Continue,
            Err(e) => Step::Stop(CloseReason::Error(e.to_string())),
        }
    }

    async fn client_close(&mut self) -> Step {
        let _ = timeout(
            Duration::from_secs(1),
            self.ws.send(Message::text(packet::DISCONNECT_FRAME)),
        )
        .await;
        Step::Stop(CloseReason::Client)
    }

    async fn on_frame(&mut self, msg: Option<Result<Message, tungstenite::Error>>) -> Step {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return Step::Stop(CloseReason::ServerClose(
                    frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                ))
            }
            Some(Ok(_)) => {
                self.counters.other.fetch_add(1, Ordering::Relaxed);
                return Step::Continue;
            }
            Some(Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ),
            ))
            | None => return Step::Stop(CloseReason::Eof),
            Some(Err(e)) => return Step::Stop(CloseReason::Error(e.to_string())),
        };
        let frame = text.as_str();
        let packet = match packet::decode(frame) {
            Ok(p) => p,
            Err(_) => {
                self.counters.other.fetch_add(1, Ordering::Relaxed);
                return Step::Continue;
            }
        };
        match packet {
            EnginePacket::Ping(p) => {
                self.counters.pings.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = self.ws.send(Message::text(packet::pong_frame(p))).await {
                    return Step::Stop(CloseReason::Error(e.to_string()));
                }
            }
            EnginePacket::Close => return Step::Stop(CloseReason::EngineClose),
            EnginePacket::Message(p) if p.nsp == "/" => match p.kind {
                SioType::Event => {
                    self.counters.events.fetch_add(1, Ordering::Relaxed);
                    self.on_event(p.payload);
                }
                SioType::Ack => {
                    self.counters.acks.fetch_add(1, Ordering::Relaxed);
                    if let Some(tx) = p.id.and_then(|id| self.pending.remove(&id)) {
                        let v = packet::parse_ack(p.payload).unwrap_or(Value::Null);
                        let _ = tx.send(v);
                    }
                }
                SioType::Disconnect => return Step::Stop(CloseReason::NamespaceDisconnect),
                _ => {
                    self.counters.other.fetch_add(1, Ordering::Relaxed);
                }
            },
            _ => {
                self.counters.other.fetch_add(1, Ordering::Relaxed);
            }
        }
        Step::Continue
    }

    fn on_event(&mut self, payload: &str) {
        if let Some(raw) = self.raw.as_mut() {
            match packet::event_name(payload) {
                Some(name) => raw(name, payload),
                None => {
                    if let Ok(ev) = packet::parse_event(payload) {
                        raw(&ev.name, payload)
                    }
                }
            }
            return;
        }
        match packet::parse_event(payload) {
            Ok(ev) => {
                let _ = self.events.send(ev);
            }
            Err(_) => {
                self.counters.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
