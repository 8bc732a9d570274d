//! What the application sees: a [`Socket`] (one client in one namespace) to send
//! frames to, and the two traits it implements: [`Namespace`] (accept or refuse a
//! CONNECT, asynchronously) and [`SocketHandler`] (the events of one socket, in
//! arrival order, and its disconnect).

use crate::conn::Conn;
use crate::{sio, Frame};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a socket left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the transport or sent an Engine.IO close.
    TransportClose,
    /// The transport failed (reset, write error).
    TransportError,
    /// No pong within the ping timeout.
    PingTimeout,
    /// The client sent something that is not Engine.IO / Socket.IO (or too large).
    ParseError,
    /// The client left the namespace (`DISCONNECT`).
    ClientNamespaceDisconnect,
    /// The server disconnected the socket ([`Socket::disconnect`]).
    ServerNamespaceDisconnect,
    /// The server closed the whole connection ([`Socket::close_transport`],
    /// [`crate::Server::close_all`]).
    ServerClose,
    /// No namespace was joined within the connect timeout.
    ConnectTimeout,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::ServerClose => "server shutting down",
            Self::ConnectTimeout => "connect timeout",
        }
    }
}

/// A CONNECT refused: the client's `connect_error` gets `message` (and `data`).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub message: String,
    pub data: Option<Value>,
}

impl Refusal {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }
}

/// One event from a client.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    /// The arguments after the name (binary ones as placeholders).
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
    /// Set when the client waits for an acknowledgement.
    pub ack: Option<u64>,
    /// Bytes of the packet's JSON plus its attachments.
    pub size: usize,
    /// The JSON held lone UTF-16 surrogate escapes (`"\ud800"`, half a character):
    /// they were replaced by U+FFFD to decode the event at all; refuse it rather
    /// than act on the altered text.
    pub lone_surrogates: bool,
}

/// Accepts sockets into one namespace.
pub trait Namespace: Send + Sync + 'static {
    /// Decide on a CONNECT carrying `auth` (`{}` when the client sent none). The
    /// client is told it is connected only after this resolves `Ok`.
    fn connect(
        &self,
        socket: Socket,
        auth: Value,
    ) -> BoxFuture<'static, Result<Arc<dyn SocketHandler>, Refusal>>;
}

/// Receives what happens to one connected socket.
pub trait SocketHandler: Send + Sync + 'static {
    /// The CONNECT ack is queued: whatever is sent now reaches the client after it.
    fn connected(&self, _socket: &Socket) {}
    /// One event, called synchronously in arrival order (keep it short: queue work).
    fn event(&self, socket: &Socket, event: Event);
    /// An acknowledgement of something the server sent (default: ignored).
    fn ack(&self, _socket: &Socket, _id: u64, _args: Vec<Value>) {}
    /// Called exactly once, when the socket leaves for any reason.
    fn disconnect(&self, socket: &Socket, reason: DisconnectReason);
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The connection's queue holds `max_buffer_bytes` already: a slow consumer.
    Full,
    /// The socket is disconnected.
    Closed,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Full => "outgoing queue full",
            SendError::Closed => "socket closed",
        })
    }
}

impl std::error::Error for SendError {}

/// A client connected to one namespace. Cheap to clone.
#[derive(Clone)]
pub struct Socket {
    inner: Arc<SocketInner>,
}

struct SocketInner {
    id: Box<str>,
    ns: Box<str>,
    conn: Arc<Conn>,
    connected: AtomicBool,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Socket({}{})", self.inner.ns, self.inner.id)
    }
}

impl PartialEq for Socket {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Socket {}

impl Socket {
    pub(crate) fn new(conn: Arc<Conn>, ns: &str) -> Self {
        Self {
            inner: Arc::new(SocketInner {
                id: crate::conn::random_id().into_boxed_str(),
                ns: ns.into(),
                conn,
                connected: AtomicBool::new(false),
            }),
        }
    }

    /// The socket id (distinct from the Engine.IO session id, which stays secret).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Where the connection came from.
    pub fn peer(&self) -> &crate::conn::Peer {
        &self.inner.conn.peer
    }

    pub fn ns(&self) -> &str {
        &self.inner.ns
    }

    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    pub(crate) fn set_connected(&self, on: bool) {
        self.inner.connected.store(on, Ordering::Release)
    }

    /// Queue a frame built for this namespace (e.g. by [`sio::event`]). `Full` is
    /// exact: this frame, and nothing after it, is not queued.
    pub fn send(&self, frame: &Frame) -> Result<(), SendError> {
        self.send_group(std::slice::from_ref(frame))
    }

    /// Queue a group of frames (a binary packet and its attachments) whole or not at all.
    pub fn send_group(&self, frames: &[Frame]) -> Result<(), SendError> {
        if !self.connected() {
            return Err(SendError::Closed);
        }
        self.inner.conn.push(frames)
    }

    /// Encode and queue one event with one data argument.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), SendError> {
        match sio::event(self.ns(), event, data) {
            Ok(f) => self.send(&f),
            Err(e) => {
                tracing::error!(event, "cannot encode event: {e}");
                Err(SendError::Closed)
            }
        }
    }

    /// Acknowledge event `id` with one data argument.
    pub fn ack<T: Serialize + ?Sized>(&self, id: u64, data: &T) -> Result<(), SendError> {
        match sio::ack(self.ns(), id, data) {
            Ok(f) => self.send(&f),
            Err(e) => {
                tracing::error!("cannot encode ack: {e}");
                Err(SendError::Closed)
            }
        }
    }

    /// Disconnect this socket from its namespace: the client gets a `DISCONNECT`
    /// (even when its queue is full) and sees `io server disconnect`; the handler's
    /// `disconnect` runs. The transport stays open for other namespaces.
    pub fn disconnect(&self) {
        self.inner.conn.disconnect_socket(self);
    }

    /// Close the whole connection (every namespace of this client).
    pub fn close_transport(&self) {
        self.inner.conn.close(DisconnectReason::ServerClose);
    }

    /// Bytes queued for this client and not written yet.
    pub fn queued_bytes(&self) -> usize {
        self.inner.conn.queued_bytes()
    }
}
