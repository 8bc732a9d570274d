//! One Engine.IO session: its outgoing queue, its transport state (polling,
//! upgrading, websocket), its heartbeat, and the Socket.IO packets of its namespaces.
//!
//! Everything a session holds sits behind one short mutex (never held across an
//! await or a handler call). The transports (`transport.rs`) move frames; this
//! module decides what they mean. Closing is one function, [`Conn::close`]: it runs
//! once, forgets the session, and tells every socket's handler.

use crate::outbox::{Full, Outbox};
use crate::server::{Inner, Mode};
use crate::socket::{DisconnectReason, Event, SendError, Socket, SocketHandler};
use crate::{eio, frame, sio, Frame};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

/// A random, unguessable id (120 bits, base64url).
pub(crate) fn random_id() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 15];
    getrandom::fill(&mut b).expect("the OS random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Polling,
    /// A websocket answered the probe; polling requests get a noop.
    Upgrading,
    WebSocket,
}

struct Entry {
    socket: Socket,
    handler: Arc<dyn SocketHandler>,
}

/// A binary packet waiting for its attachments.
struct Pending {
    kind: sio::Kind,
    ns: String,
    ack: Option<u64>,
    data: String,
    partial: sio::Partial,
}

struct State {
    outbox: Outbox,
    transport: Transport,
    /// A websocket is probing this (polling) session.
    probing: bool,
    /// A polling GET is waiting.
    polling: bool,
    /// A polling POST is being read.
    posting: bool,
    closed: Option<DisconnectReason>,
    /// A ping is out: the pong is due by then.
    pong_due: Option<Instant>,
    /// A CONNECT was accepted at least once (connect timeout).
    ever_connected: bool,
    /// CONNECTs refused so far (unknown namespace, or refused by the namespace):
    /// past [`MAX_REFUSED_CONNECTS`] the connection is closed.
    refused_connects: u8,
    sockets: Vec<Entry>,
    connecting: Vec<Box<str>>,
    pending: Option<Box<Pending>>,
}

/// Where a session came from: the TCP peer and, when a proxy forwarded it, the
/// `X-Forwarded-For` header it sent (the application decides whom to trust).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub addr: Option<std::net::SocketAddr>,
    pub forwarded_for: Option<Box<str>>,
}

impl Peer {
    /// The peer of an HTTP request (axum's `ConnectInfo`, when served with it).
    pub(crate) fn of(req: &axum::extract::Request) -> Self {
        let addr = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        let forwarded_for = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 512)
            .map(Into::into);
        Self {
            addr,
            forwarded_for,
        }
    }
}

/// CONNECTs a connection may have refused before it is closed (each costs the
/// server an answer, and a refused `/` may cost a token check).
pub(crate) const MAX_REFUSED_CONNECTS: u8 = 5;

/// Longest namespace name accepted (a refusal echoes it).
pub(crate) const MAX_NAMESPACE_LEN: usize = 128;

/// Whatever the application keeps for a session's life (see
/// `Builder::admission`); dropped when the session ends.
pub type Guard = Box<dyn std::any::Any + Send + Sync>;

pub(crate) struct Conn {
    pub(crate) sid: Box<str>,
    pub(crate) server: Arc<Inner>,
    pub(crate) peer: Peer,
    _admitted: Option<Guard>,
    state: Mutex<State>,
    /// Frames queued or state changed: wakes the one consumer (websocket writer or
    /// polling GET).
    wake: Notify,
}

/// A protocol violation: the session is closed.
#[derive(Debug)]
pub(crate) struct Violation(pub &'static str);

impl From<eio::DecodeError> for Violation {
    fn from(e: eio::DecodeError) -> Self {
        Violation(e.0)
    }
}

impl From<sio::DecodeError> for Violation {
    fn from(e: sio::DecodeError) -> Self {
        Violation(e.0)
    }
}

/// Which heartbeat: a polling session's stops once a websocket took over.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    Polling,
    WebSocket,
}

impl Conn {
    pub(crate) fn new(
        server: Arc<Inner>,
        transport: Transport,
        peer: Peer,
        admitted: Option<Guard>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sid: random_id().into_boxed_str(),
            server,
            peer,
            _admitted: admitted,
            state: Mutex::new(State {
                outbox: Outbox::default(),
                transport,
                probing: false,
                polling: false,
                posting: false,
                closed: None,
                pong_due: None,
                ever_connected: false,
                refused_connects: 0,
                sockets: Vec::new(),
                connecting: Vec::new(),
                pending: None,
            }),
            wake: Notify::new(),
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    pub(crate) fn transport(&self) -> Transport {
        self.state.lock().transport
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.state.lock().outbox.bytes()
    }

    /// Queue application frames under the byte bound.
    pub(crate) fn push(&self, group: &[Frame]) -> Result<(), SendError> {
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return Err(SendError::Closed);
            }
            st.outbox
                .try_push(group, self.server.config.max_buffer_bytes)
                .map_err(|Full| SendError::Full)?;
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Queue control frames regardless of the bound.
    pub(crate) fn push_control(&self, group: &[Frame]) {
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.outbox.push_unbounded(group);
        }
        self.wake.notify_one();
    }

    /// Close the session (once): forget it, wake its transport, and tell every
    /// socket's handler. Frames already queued may still be written.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        let sockets = {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason);
            st.pending = None;
            // A close decided by the server is announced on the websocket (polling
            // answers the pending GET with it).
            let by_server = !matches!(
                reason,
                DisconnectReason::TransportClose
                    | DisconnectReason::TransportError
                    | DisconnectReason::PingTimeout
            );
            if by_server && st.transport == Transport::WebSocket {
                st.outbox.push_unbounded(&[frame::CLOSE]);
            }
            std::mem::take(&mut st.sockets)
        };
        self.wake.notify_one();
        self.server.forget(&self.sid);
        tracing::debug!(sid = %self.sid, reason = reason.as_str(), "engine session closed");
        for e in sockets {
            e.socket.set_connected(false);
            e.handler.disconnect(&e.socket, reason);
        }
    }

    /// Wait for frames (or the close) and move them into `batch`. Returns true
    /// once the session is closed (after its last frames).
    pub(crate) async fn next_batch(&self, batch: &mut VecDeque<Frame>) -> bool {
        loop {
            let notified = self.wake.notified();
            {
                let mut st = self.state.lock();
                if !st.outbox.is_empty() {
                    st.outbox.take_into(batch);
                    return false;
                }
                if st.closed.is_some() {
                    batch.clear();
                    return true;
                }
            }
            notified.await;
        }
    }

    // ---- polling -------------------------------------------------------------

    /// Answer one polling GET: queued frames joined by `\x1e` (waiting for some),
    /// `6` while upgrading, `1` once closed. `Err` for a second concurrent GET
    /// (which closes the session) or a session taken over by a websocket.
    pub(crate) async fn poll(self: &Arc<Self>) -> Result<Vec<u8>, &'static str> {
        {
            let mut st = self.state.lock();
            if st.transport == Transport::WebSocket {
                return Err("session upgraded to websocket");
            }
            if st.polling {
                drop(st);
                self.close(DisconnectReason::TransportError);
                return Err("overlapping polling requests");
            }
            st.polling = true;
        }
        struct Done<'a>(&'a Conn);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.state.lock().polling = false;
            }
        }
        let _done = Done(self);
        let mut batch = VecDeque::new();
        loop {
            let notified = self.wake.notified();
            {
                let mut st = self.state.lock();
                let upgrading = st.transport == Transport::Upgrading;
                let closed = st.closed;
                if !st.outbox.is_empty() || upgrading || closed.is_some() {
                    st.outbox.take_into(&mut batch);
                    drop(st);
                    let mut out = Vec::new();
                    for f in &batch {
                        eio::push_part(&mut out, f);
                    }
                    if let Some(reason) = closed {
                        // The client's own close ends its poll with a noop; a close
                        // by the server is announced.
                        let last = if reason == DisconnectReason::TransportClose {
                            &frame::NOOP
                        } else {
                            &frame::CLOSE
                        };
                        eio::push_part(&mut out, last);
                    } else if upgrading {
                        eio::push_part(&mut out, &frame::NOOP);
                    }
                    return Ok(out);
                }
            }
            notified.await;
        }
    }

    /// Mark a POST as being read; false if another one is (which closes the session).
    pub(crate) fn begin_post(&self) -> bool {
        let mut st = self.state.lock();
        if st.posting {
            drop(st);
            self.close(DisconnectReason::TransportError);
            return false;
        }
        st.posting = true;
        true
    }

    pub(crate) fn end_post(&self) {
        self.state.lock().posting = false;
    }

    // ---- upgrade -------------------------------------------------------------

    /// A websocket asks to take over this polling session: at most one at a time.
    pub(crate) fn begin_probe(&self) -> bool {
        let mut st = self.state.lock();
        if st.transport != Transport::Polling || st.probing || st.closed.is_some() {
            return false;
        }
        st.probing = true;
        true
    }

    /// The probe was answered: end pending polls with a noop.
    pub(crate) fn probe_answered(&self) {
        self.state.lock().transport = Transport::Upgrading;
        self.wake.notify_one();
    }

    /// The client sent `5`: from now on frames go over the websocket only.
    pub(crate) fn upgraded(&self) -> bool {
        let mut st = self.state.lock();
        if st.transport != Transport::Upgrading {
            return false;
        }
        st.transport = Transport::WebSocket;
        true
    }

    /// The probe failed: the session stays on polling.
    pub(crate) fn abort_probe(&self) {
        let mut st = self.state.lock();
        st.probing = false;
        if st.transport == Transport::Upgrading {
            st.transport = Transport::Polling;
        }
    }

    // ---- heartbeat -----------------------------------------------------------

    /// Close the session if its pong is overdue (checked when a request arrives, so
    /// the answer does not depend on how late the heartbeat's timer fires).
    pub(crate) fn expire_if_silent(&self) -> bool {
        let overdue = self
            .state
            .lock()
            .pong_due
            .is_some_and(|due| Instant::now() >= due);
        if overdue {
            self.close(DisconnectReason::PingTimeout);
        }
        overdue
    }

    /// Ping every `ping_interval`, close when no pong comes within `ping_timeout`
    /// (and, for Socket.IO, when no namespace was joined within the connect
    /// timeout). Returns when the session closed, or (polling beat) once a
    /// websocket took over.
    pub(crate) async fn heartbeat(&self, beat: Beat) -> DisconnectReason {
        let cfg = &self.server.config;
        let socket_io = matches!(self.server.mode, Mode::SocketIo(_));
        let connect_deadline = Instant::now() + cfg.connect_timeout;
        let mut next_ping = Instant::now() + cfg.ping_interval;
        loop {
            let check_connect = socket_io && !self.state.lock().ever_connected;
            let wake = if check_connect {
                next_ping.min(connect_deadline)
            } else {
                next_ping
            };
            sleep_until(wake).await;
            if let Some(r) = self.stop_beat(beat) {
                return r;
            }
            if check_connect && Instant::now() >= connect_deadline {
                let joined = self.state.lock().ever_connected;
                if !joined {
                    self.close(DisconnectReason::ConnectTimeout);
                    return DisconnectReason::ConnectTimeout;
                }
            }
            if Instant::now() < next_ping {
                continue;
            }
            let sent = Instant::now();
            {
                let mut st = self.state.lock();
                st.pong_due = Some(sent + cfg.ping_timeout);
                st.outbox.push_unbounded(&[frame::PING]);
            }
            self.wake.notify_one();
            sleep_until(sent + cfg.ping_timeout).await;
            if let Some(r) = self.stop_beat(beat) {
                return r;
            }
            if self.state.lock().pong_due.is_some() {
                self.close(DisconnectReason::PingTimeout);
                return DisconnectReason::PingTimeout;
            }
            next_ping = sent + cfg.ping_interval.max(cfg.ping_timeout);
        }
    }

    fn stop_beat(&self, beat: Beat) -> Option<DisconnectReason> {
        let st = self.state.lock();
        if let Some(r) = st.closed {
            return Some(r);
        }
        (beat == Beat::Polling && st.transport == Transport::WebSocket)
            .then_some(DisconnectReason::TransportClose)
    }

    // ---- incoming packets ----------------------------------------------------

    /// Apply one Engine.IO packet from the client.
    pub(crate) fn on_packet(self: &Arc<Self>, p: eio::Packet<'_>) -> Result<(), Violation> {
        match p {
            eio::Packet::Close => {
                self.close(DisconnectReason::TransportClose);
                Ok(())
            }
            eio::Packet::Pong(_) => {
                self.state.lock().pong_due = None;
                Ok(())
            }
            eio::Packet::Ping(_) | eio::Packet::Noop | eio::Packet::Upgrade => Ok(()),
            eio::Packet::Message(text) => match &self.server.mode {
                Mode::Engine(h) => {
                    h.message(
                        &crate::Connection(self.clone()),
                        Frame::text(format!("4{text}")),
                    );
                    Ok(())
                }
                Mode::SocketIo(_) => self.on_sio(text),
            },
            eio::Packet::Binary(b) => match &self.server.mode {
                Mode::Engine(h) => {
                    h.message(&crate::Connection(self.clone()), Frame::Binary(b));
                    Ok(())
                }
                Mode::SocketIo(_) => self.on_attachment(b),
            },
        }
    }

    fn on_sio(self: &Arc<Self>, text: &str) -> Result<(), Violation> {
        if self.state.lock().pending.is_some() {
            return Err(Violation("text packet while binary attachments were due"));
        }
        let h = sio::decode(text)?;
        match h.kind {
            sio::Kind::Connect => self.on_connect(h.ns, h.data),
            sio::Kind::Disconnect => {
                let entry = {
                    let mut st = self.state.lock();
                    let i = st.sockets.iter().position(|e| e.socket.ns() == h.ns);
                    i.map(|i| st.sockets.swap_remove(i))
                };
                if let Some(e) = entry {
                    e.socket.set_connected(false);
                    e.handler
                        .disconnect(&e.socket, DisconnectReason::ClientNamespaceDisconnect);
                }
                Ok(())
            }
            sio::Kind::Event | sio::Kind::Ack => {
                self.dispatch(h.kind, h.ns, h.ack, h.data, Vec::new())
            }
            sio::Kind::BinaryEvent | sio::Kind::BinaryAck => {
                if h.attachments == 0 {
                    return self.dispatch(h.kind, h.ns, h.ack, h.data, Vec::new());
                }
                self.state.lock().pending = Some(Box::new(Pending {
                    kind: h.kind,
                    ns: h.ns.to_owned(),
                    ack: h.ack,
                    data: h.data.to_owned(),
                    partial: sio::Partial::new(h.attachments),
                }));
                Ok(())
            }
            sio::Kind::ConnectError => Err(Violation("a client cannot send connect_error")),
        }
    }

    fn on_attachment(self: &Arc<Self>, b: Bytes) -> Result<(), Violation> {
        let done = {
            let mut st = self.state.lock();
            let Some(p) = st.pending.as_mut() else {
                return Err(Violation("binary message without a binary packet"));
            };
            let size: usize =
                p.data.len() + p.partial.attachments.iter().map(Bytes::len).sum::<usize>();
            if size + b.len() > self.server.config.max_payload {
                return Err(Violation("binary packet larger than maxPayload"));
            }
            if p.partial.push(b) {
                st.pending.take()
            } else {
                None
            }
        };
        match done {
            Some(p) => self.dispatch(p.kind, &p.ns, p.ack, &p.data, p.partial.attachments),
            None => Ok(()),
        }
    }

    fn dispatch(
        &self,
        kind: sio::Kind,
        ns: &str,
        ack: Option<u64>,
        data: &str,
        attachments: Vec<Bytes>,
    ) -> Result<(), Violation> {
        let found = {
            let st = self.state.lock();
            if !st.ever_connected {
                // Nothing may be processed before a namespace accepted the client.
                return Err(Violation("event before namespace connect"));
            }
            // Packets for a namespace left a moment ago (e.g. the server disconnected
            // it while the client was sending) are dropped.
            st.sockets
                .iter()
                .find(|e| e.socket.ns() == ns)
                .map(|e| (e.socket.clone(), e.handler.clone()))
        };
        let size = data.len() + attachments.iter().map(Bytes::len).sum::<usize>();
        match kind {
            sio::Kind::Event | sio::Kind::BinaryEvent => {
                let ((name, args), lone_surrogates) = match sio::parse_event(data) {
                    Ok(parsed) => (parsed, false),
                    // Valid JSON to a browser, not to serde_json: let the handler
                    // say so instead of closing the connection.
                    Err(e) => match sio::replace_lone_surrogates(data)
                        .and_then(|d| sio::parse_event(&d).ok())
                    {
                        Some(parsed) => (parsed, true),
                        None => return Err(e.into()),
                    },
                };
                if let Some((socket, handler)) = found {
                    let ev = Event {
                        name,
                        args,
                        attachments,
                        ack,
                        size,
                        lone_surrogates,
                    };
                    handler.event(&socket, ev);
                }
            }
            _ => {
                let args = sio::parse_args(data)?;
                if let (Some((socket, handler)), Some(id)) = (found, ack) {
                    handler.ack(&socket, id, args);
                }
            }
        }
        Ok(())
    }

    fn on_connect(self: &Arc<Self>, ns: &str, data: &str) -> Result<(), Violation> {
        let auth = sio::parse_auth(data).unwrap_or(serde_json::Value::Null);
        let Mode::SocketIo(spaces) = &self.server.mode else {
            return Ok(());
        };
        if ns.len() > MAX_NAMESPACE_LEN {
            return Err(Violation("namespace name too long"));
        }
        let Some(space) = spaces.get(ns).cloned() else {
            if self.count_refused() {
                return Err(Violation("too many refused namespace connects"));
            }
            self.push_control(&[sio::connect_error(ns, "Invalid namespace", None)]);
            return Ok(());
        };
        {
            let mut st = self.state.lock();
            let busy = st.sockets.iter().any(|e| e.socket.ns() == ns)
                || st.connecting.iter().any(|c| &**c == ns);
            if busy || st.closed.is_some() {
                return Ok(());
            }
            st.connecting.push(ns.into());
        }
        let socket = Socket::new(self.clone(), ns);
        let conn = self.clone();
        tokio::spawn(async move {
            let result = space.connect(socket.clone(), auth).await;
            conn.state.lock().connecting.retain(|c| **c != *socket.ns());
            match result {
                Ok(handler) => conn.attach(socket, handler),
                Err(refusal) => {
                    conn.push_control(&[sio::connect_error(
                        socket.ns(),
                        &refusal.message,
                        refusal.data.as_ref(),
                    )]);
                    if conn.count_refused() {
                        conn.close(DisconnectReason::ParseError);
                    }
                }
            }
        });
        Ok(())
    }

    /// Count a refused CONNECT; true once there were too many.
    fn count_refused(&self) -> bool {
        let mut st = self.state.lock();
        st.refused_connects = st.refused_connects.saturating_add(1);
        st.refused_connects > MAX_REFUSED_CONNECTS
    }

    /// A CONNECT accepted: ack it, then let the handler speak.
    fn attach(&self, socket: Socket, handler: Arc<dyn SocketHandler>) {
        let closed = {
            let mut st = self.state.lock();
            match st.closed {
                Some(r) => Some(r),
                None => {
                    st.outbox
                        .push_unbounded(&[sio::connect_ok(socket.ns(), socket.id())]);
                    st.ever_connected = true;
                    socket.set_connected(true);
                    st.sockets.push(Entry {
                        socket: socket.clone(),
                        handler: handler.clone(),
                    });
                    None
                }
            }
        };
        match closed {
            Some(reason) => handler.disconnect(&socket, reason),
            None => {
                self.wake.notify_one();
                handler.connected(&socket);
            }
        }
    }

    /// The server disconnects one socket from its namespace.
    pub(crate) fn disconnect_socket(&self, socket: &Socket) {
        let entry = {
            let mut st = self.state.lock();
            let i = st.sockets.iter().position(|e| e.socket == *socket);
            let e = i.map(|i| st.sockets.swap_remove(i));
            if e.is_some() && st.closed.is_none() {
                st.outbox.push_unbounded(&[sio::disconnect(socket.ns())]);
            }
            e
        };
        if let Some(e) = entry {
            self.wake.notify_one();
            e.socket.set_connected(false);
            e.handler
                .disconnect(&e.socket, DisconnectReason::ServerNamespaceDisconnect);
        }
    }
}
