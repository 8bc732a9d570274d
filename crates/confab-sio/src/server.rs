//! The HTTP entry point: validates Engine.IO requests (`EIO`, `transport`, `sid`,
//! method, `Origin`), opens sessions, answers long-polling GET/POST, hands websocket
//! upgrades to [`crate::ws`], and keeps the table of open sessions.
//!
//! Errors are Engine.IO's: HTTP 400 (403 for a refused origin) with
//! `{"code": N, "message": "..."}`, codes 0 unknown transport, 1 unknown session,
//! 2 bad handshake method, 3 bad request, 4 forbidden, 5 unsupported protocol version.

use crate::conn::{Beat, Conn, Transport};
use crate::socket::{DisconnectReason, Namespace};
use crate::{eio, Config, Frame};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Receives the messages of a plain Engine.IO server (no Socket.IO on top).
pub trait EngineHandler: Send + Sync + 'static {
    /// One message: `Frame::Text` holds the whole packet (`4...`).
    fn message(&self, conn: &Connection, frame: Frame);
}

/// A plain Engine.IO connection (see [`EngineHandler`]).
pub struct Connection(pub(crate) Arc<Conn>);

impl Connection {
    /// Queue frames under the byte bound.
    pub fn send(&self, frames: &[Frame]) -> Result<(), crate::SendError> {
        self.0.push(frames)
    }
}

pub(crate) enum Mode {
    SocketIo(HashMap<String, Arc<dyn Namespace>>),
    Engine(Arc<dyn EngineHandler>),
}

/// Admission of a new Engine.IO session by where it comes from: `Ok(guard)` keeps
/// `guard` for the session's life (dropped when it ends), `Err(message)` refuses
/// it (HTTP 403, Engine.IO code 4).
pub type Admission =
    dyn Fn(&crate::conn::Peer) -> Result<Option<crate::conn::Guard>, String> + Send + Sync;

/// `(origin, host)`: the request's `Origin` and `Host` headers.
type OriginCheck = dyn Fn(&str, Option<&str>) -> bool + Send + Sync;

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) mode: Mode,
    sessions: Mutex<HashMap<Box<str>, Arc<Conn>>>,
    origin_check: Option<Box<OriginCheck>>,
    admission: Option<Box<Admission>>,
    closing: AtomicBool,
}

impl Inner {
    pub(crate) fn forget(&self, sid: &str) {
        self.sessions.lock().remove(sid);
    }

    /// An open session (one whose pong is overdue is closed now, not found).
    fn find(&self, sid: &str) -> Option<Arc<Conn>> {
        let conn = self.sessions.lock().get(sid).cloned()?;
        (!conn.expire_if_silent()).then_some(conn)
    }

    /// Admit a new session from `peer` (see [`Builder::admission`]).
    pub(crate) fn admit(
        &self,
        peer: &crate::conn::Peer,
    ) -> Result<Option<crate::conn::Guard>, String> {
        match &self.admission {
            Some(a) => a(peer),
            None => Ok(None),
        }
    }

    pub(crate) fn register(&self, conn: &Arc<Conn>) {
        self.sessions.lock().insert(conn.sid.clone(), conn.clone());
    }
}

/// Builds a [`Server`].
pub struct Builder {
    config: Config,
    namespaces: HashMap<String, Arc<dyn Namespace>>,
    engine: Option<Arc<dyn EngineHandler>>,
    origin_check: Option<Box<OriginCheck>>,
    admission: Option<Box<Admission>>,
}

impl Builder {
    /// Serve Socket.IO namespace `path` (e.g. `/`).
    pub fn ns(mut self, path: &str, ns: impl Namespace) -> Self {
        self.namespaces.insert(path.to_owned(), Arc::new(ns));
        self
    }

    /// Serve plain Engine.IO to `handler` instead of Socket.IO.
    pub fn engine(mut self, handler: impl EngineHandler) -> Self {
        self.engine = Some(Arc::new(handler));
        self
    }

    /// Accept a request carrying an `Origin` header only if `check(origin, host)`
    /// says so, `host` being the request's `Host` header (requests without an
    /// `Origin`, from non-browser clients, are not checked).
    pub fn origin_check(
        mut self,
        check: impl Fn(&str, Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.origin_check = Some(Box::new(check));
        self
    }

    /// Decide, by its peer, whether a new Engine.IO session may open (e.g. a cap
    /// of sessions per client address: sessions that never join a namespace
    /// count too).
    pub fn admission(
        mut self,
        admit: impl Fn(&crate::conn::Peer) -> Result<Option<crate::conn::Guard>, String>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.admission = Some(Box::new(admit));
        self
    }

    pub fn build(self) -> Server {
        let mode = match self.engine {
            Some(h) => Mode::Engine(h),
            None => Mode::SocketIo(self.namespaces),
        };
        Server {
            inner: Arc::new(Inner {
                config: self.config,
                mode,
                sessions: Mutex::new(HashMap::new()),
                origin_check: self.origin_check,
                admission: self.admission,
                closing: AtomicBool::new(false),
            }),
        }
    }
}

/// An Engine.IO / Socket.IO server; mount it with [`Server::router`].
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            namespaces: HashMap::new(),
            engine: None,
            origin_check: None,
            admission: None,
        }
    }

    /// Routes for `path` (e.g. `/socket.io`), with and without the trailing slash.
    pub fn router<S: Clone + Send + Sync + 'static>(&self, path: &str) -> Router<S> {
        let path = path.trim_end_matches('/');
        Router::new()
            .route(path, axum::routing::any(handle))
            .route(&format!("{path}/"), axum::routing::any(handle))
            .with_state(self.inner.clone())
    }

    /// Open Engine.IO sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.lock().len()
    }

    /// Refuse new sessions and close every open one (their handlers' `disconnect`
    /// runs with [`DisconnectReason::ServerClose`] before this returns).
    pub fn close_all(&self) {
        self.inner.closing.store(true, Ordering::Release);
        let all: Vec<Arc<Conn>> = self.inner.sessions.lock().values().cloned().collect();
        for c in all {
            c.close(DisconnectReason::ServerClose);
        }
    }
}

/// An Engine.IO error response.
fn refuse(status: StatusCode, code: u8, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn bad(code: u8, message: &str) -> Response {
    refuse(StatusCode::BAD_REQUEST, code, message)
}

struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

fn parse_query(q: &str) -> Query<'_> {
    let mut out = Query {
        eio: None,
        transport: None,
        sid: None,
    };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "EIO" => out.eio = Some(v),
            "transport" => out.transport = Some(v),
            "sid" => out.sid = Some(v),
            _ => {}
        }
    }
    out
}

/// CORS headers for a request that carried `origin` (only called when CORS is on).
fn cors_headers(origin: Option<HeaderValue>, res: &mut Response) {
    let h = res.headers_mut();
    match origin {
        Some(o) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    // Only the Origin is needed afterwards, and only with CORS on.
    let origin = inner
        .config
        .cors
        .then(|| req.headers().get(header::ORIGIN).cloned());
    let mut res = route(&inner, req).await;
    if let Some(origin) = origin {
        cors_headers(origin, &mut res);
    }
    res
}

async fn route(inner: &Arc<Inner>, req: Request) -> Response {
    if let (Some(check), Some(origin)) = (&inner.origin_check, req.headers().get(header::ORIGIN)) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !origin.to_str().is_ok_and(|o| check(o, host)) {
            return refuse(StatusCode::FORBIDDEN, 4, "Forbidden: origin not allowed");
        }
    }
    if req.method() == Method::OPTIONS && inner.config.cors {
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        if let Some(v) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        return res;
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    let q = parse_query(&query);
    match q.eio {
        Some("4") => {}
        Some("3") => {
            return bad(
                5,
                "Unsupported protocol version: EIO=3 (socket.io-client 2.x) is not supported, use socket.io-client 3 or later (EIO=4)",
            )
        }
        _ => return bad(5, "Unsupported protocol version"),
    }
    let polling = match q.transport {
        Some("polling") if inner.config.allow_polling => true,
        Some("websocket") => false,
        _ => return bad(0, "Transport unknown"),
    };
    if inner.closing.load(Ordering::Acquire) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            3,
            "Server is shutting down",
        );
    }
    if !polling {
        if req.method() != Method::GET || !is_websocket_upgrade(req.headers()) {
            return bad(3, "Bad request: expected a websocket upgrade");
        }
        let conn = match q.sid {
            None => None,
            Some(sid) => match inner.find(sid) {
                Some(c) if c.begin_probe() => Some(c),
                // Already upgraded (or being probed): the websocket is accepted and
                // closed at once; the session goes on undisturbed.
                Some(_) => return crate::ws::refuse_after_upgrade(req),
                None => return bad(1, "Session ID unknown"),
            },
        };
        return crate::ws::upgrade(inner.clone(), conn, req);
    }
    match (q.sid, req.method().clone()) {
        (None, Method::GET) => open_polling(inner, crate::conn::Peer::of(&req)),
        (None, _) => bad(2, "Bad handshake method"),
        (Some(sid), method) => {
            let Some(conn) = inner.find(sid) else {
                return bad(1, "Session ID unknown");
            };
            match method {
                Method::GET => match conn.poll().await {
                    Ok(body) => text(body),
                    Err(why) => bad(3, &format!("Bad request: {why}")),
                },
                Method::POST => post(inner, conn, req.into_body()).await,
                _ => bad(2, "Bad request method"),
            }
        }
    }
}

fn is_websocket_upgrade(h: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
        })
    };
    has(header::UPGRADE, "websocket")
        && has(header::CONNECTION, "upgrade")
        && h.contains_key(header::SEC_WEBSOCKET_KEY)
}

fn text(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        )],
        body,
    )
        .into_response()
}

fn open_polling(inner: &Arc<Inner>, peer: crate::conn::Peer) -> Response {
    let guard = match inner.admit(&peer) {
        Ok(g) => g,
        Err(msg) => return refuse(StatusCode::FORBIDDEN, 4, &format!("Forbidden: {msg}")),
    };
    let conn = Conn::new(inner.clone(), Transport::Polling, peer, guard);
    inner.register(&conn);
    let c = &inner.config;
    let open = eio::open_packet(
        &conn.sid,
        &["websocket"],
        c.ping_interval.as_millis() as u64,
        c.ping_timeout.as_millis() as u64,
        c.max_payload,
    );
    let beat = conn.clone();
    tokio::spawn(async move {
        beat.heartbeat(Beat::Polling).await;
    });
    text(open.into_bytes())
}

async fn post(inner: &Arc<Inner>, conn: Arc<Conn>, body: Body) -> Response {
    if conn.transport() == Transport::WebSocket {
        return bad(3, "Bad request: session upgraded to websocket");
    }
    if !conn.begin_post() {
        return bad(3, "Bad request: overlapping POST requests");
    }
    let limited = http_body_util::Limited::new(body, inner.config.max_payload);
    let bytes = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            conn.end_post();
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            conn.close(if too_large {
                DisconnectReason::ParseError
            } else {
                DisconnectReason::TransportError
            });
            return if too_large {
                refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    3,
                    "Payload larger than maxPayload",
                )
            } else {
                bad(3, "Bad request: body not read")
            };
        }
    };
    conn.end_post();
    let result = std::str::from_utf8(&bytes)
        .map_err(|_| crate::conn::Violation("payload is not UTF-8"))
        .and_then(|s| eio::decode_payload(s).map_err(Into::into))
        .and_then(|packets| {
            for p in packets {
                conn.on_packet(p)?;
            }
            Ok(())
        });
    match result {
        Ok(()) => text(b"ok".to_vec()),
        Err(v) => {
            tracing::debug!(sid = %conn.sid, "closing session: {}", v.0);
            conn.close(DisconnectReason::ParseError);
            bad(3, &format!("Bad request: {}", v.0))
        }
    }
}
