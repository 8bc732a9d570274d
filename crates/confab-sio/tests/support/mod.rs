//! Shared by the integration tests: the echo servers of `examples/protocol-echo.rs`
//! (plus a namespace that refuses connections), started in-process on an ephemeral
//! port, and tiny real-socket clients: raw HTTP/1.1 over a `TcpStream` and a
//! `tokio-tungstenite` websocket. Every network wait is bounded by [`WAIT`].

#![allow(dead_code)]

use confab_sio::{
    sio, Config, Connection, DisconnectReason, EngineHandler, Event, Frame, Namespace, Refusal,
    Server, Socket, SocketHandler,
};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single network wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// Await `f`, failing the test (instead of hanging) after [`WAIT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// A configuration whose timers never fire during a test (no pings, no connect
/// timeout), for tests that are not about them.
pub fn quiet() -> Config {
    Config {
        ping_interval: Duration::from_secs(60),
        ping_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(60),
        max_payload: 1_000_000,
        ..Config::default()
    }
}

/// What the Socket.IO handlers saw, in order.
#[derive(Debug)]
pub enum Seen {
    Connected(Socket),
    Disconnected(String, DisconnectReason),
}

/// Plain Engine.IO: every message goes back as it came.
struct Echo;

impl EngineHandler for Echo {
    fn message(&self, conn: &Connection, frame: Frame) {
        let _ = conn.send(&[frame]);
    }
}

struct Space {
    /// `message` → `message-back`, `message-with-ack` → ack (as the compliance
    /// suites expect of `/`).
    echo: bool,
    /// Refuse any CONNECT whose auth lacks `{"token":"secret"}`.
    guarded: bool,
    seen: mpsc::UnboundedSender<Seen>,
}

struct Client {
    auth: Value,
    echo: bool,
    seen: mpsc::UnboundedSender<Seen>,
}

impl Namespace for Space {
    fn connect(
        &self,
        _socket: Socket,
        auth: Value,
    ) -> BoxFuture<'static, Result<Arc<dyn SocketHandler>, Refusal>> {
        let client = Client {
            auth,
            echo: self.echo,
            seen: self.seen.clone(),
        };
        let guarded = self.guarded;
        Box::pin(async move {
            if guarded && client.auth.get("token") != Some(&json!("secret")) {
                return Err(Refusal {
                    message: "Not authorized".into(),
                    data: Some(json!({ "reason": "token required" })),
                });
            }
            Ok(Arc::new(client) as Arc<dyn SocketHandler>)
        })
    }
}

impl SocketHandler for Client {
    fn connected(&self, socket: &Socket) {
        let _ = socket.emit("auth", &self.auth);
        let _ = self.seen.send(Seen::Connected(socket.clone()));
    }

    fn event(&self, socket: &Socket, ev: Event) {
        if !self.echo {
            return;
        }
        let frames = match (ev.name.as_str(), ev.ack) {
            ("message", _) => {
                sio::event_args(socket.ns(), "message-back", &ev.args, &ev.attachments)
            }
            ("message-with-ack", Some(id)) => {
                sio::ack_args(socket.ns(), id, &ev.args, &ev.attachments)
            }
            _ => return,
        };
        let _ = socket.send_group(&frames);
    }

    fn disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        let _ = self
            .seen
            .send(Seen::Disconnected(socket.ns().to_owned(), reason));
    }
}

/// An Engine.IO server at `/engine.io/` and a Socket.IO server at `/socket.io/`
/// (namespaces `/` with echo, `/custom` without, `/private` guarded), served on
/// 127.0.0.1 on an ephemeral port until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub engine: Server,
    pub socket_io: Server,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        let (tx, seen) = mpsc::unbounded_channel();
        let space = |echo, guarded| Space {
            echo,
            guarded,
            seen: tx.clone(),
        };
        let engine = Server::builder(config.clone()).engine(Echo).build();
        let socket_io = Server::builder(config)
            .ns("/", space(true, false))
            .ns("/custom", space(false, false))
            .ns("/private", space(true, true))
            .build();
        let app = axum::Router::new()
            .merge(engine.router("/engine.io"))
            .merge(socket_io.router("/socket.io"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            addr,
            engine,
            socket_io,
            seen,
            task,
        }
    }

    /// The next thing the Socket.IO handlers saw.
    pub async fn next_seen(&mut self) -> Seen {
        within("a Socket.IO handler call", self.seen.recv())
            .await
            .expect("handlers gone")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.engine.close_all();
        self.socket_io.close_all();
        self.task.abort();
    }
}

// ---- HTTP ----------------------------------------------------------------------

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`Connection: close`) on a fresh TCP connection.
pub async fn http(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> HttpResponse {
    http_with(addr, method, target, &[], body).await
}

/// [`http`] with extra request headers.
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    within(&format!("{method} {target}"), async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let mut req =
            format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" || !body.is_empty() {
            req.push_str(&format!(
                "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.expect("write head");
        tcp.write_all(body).await.expect("write body");
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A server that answered before reading everything may reset the
                // connection once it has written the response: keep what came.
                Err(e) if !raw.is_empty() => {
                    eprintln!("read after response: {e}");
                    break;
                }
                Err(e) => panic!("{method} {target}: read: {e}"),
            }
        }
        parse_response(&raw)
    })
    .await
}

pub async fn get(addr: SocketAddr, target: &str) -> HttpResponse {
    http(addr, "GET", target, b"").await
}

pub async fn post(addr: SocketAddr, target: &str, body: &[u8]) -> HttpResponse {
    http(addr, "POST", target, body).await
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let has = |name: &str, value: &str| {
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && v.eq_ignore_ascii_case(value))
    };
    let body = if has("transfer-encoding", "chunked") {
        dechunk(rest)
    } else if let Some((_, len)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let len: usize = len.parse().expect("content-length");
        assert!(rest.len() >= len, "body cut short: {} of {len}", rest.len());
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A polling handshake: the open packet's JSON.
pub async fn polling_open(addr: SocketAddr, path: &str) -> Value {
    let res = get(addr, &format!("{path}?EIO=4&transport=polling")).await;
    assert_eq!(res.status, 200, "handshake: {}", res.text());
    let text = res.text();
    assert!(text.starts_with('0'), "not an open packet: {text:?}");
    serde_json::from_str(&text[1..]).expect("open packet JSON")
}

pub fn sid_of(open: &Value) -> String {
    open["sid"].as_str().expect("sid").to_owned()
}

// ---- websocket -----------------------------------------------------------------

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a websocket client read next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame, the end of the stream, or a reset.
    Closed,
}

pub async fn ws_connect(addr: SocketAddr, target: &str) -> Ws {
    let url = format!("ws://{addr}{target}");
    let (ws, res) = within(&url, tokio_tungstenite::connect_async(url.as_str()))
        .await
        .unwrap_or_else(|e| panic!("websocket {url}: {e}"));
    assert_eq!(res.status().as_u16(), 101);
    ws
}

/// The next data message (websocket-level pings are skipped).
pub async fn next(ws: &mut Ws) -> Got {
    within("a websocket message", async {
        loop {
            return match ws.next().await {
                Some(Ok(Message::Text(t))) => Got::Text(t.as_str().to_owned()),
                Some(Ok(Message::Binary(b))) => Got::Binary(b.to_vec()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Got::Closed,
                Some(Ok(_)) => continue,
            };
        }
    })
    .await
}

/// The next message, which must be text.
pub async fn next_text(ws: &mut Ws) -> String {
    match next(ws).await {
        Got::Text(t) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

pub async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    match next(ws).await {
        Got::Binary(b) => b,
        other => panic!("expected a binary message, got {other:?}"),
    }
}

/// The connection must close (close frame, end of stream or reset). An Engine.IO
/// close packet (`1`) or a ping queued before the close may come first.
pub async fn expect_closed(ws: &mut Ws) {
    for _ in 0..8 {
        match next(ws).await {
            Got::Closed => return,
            Got::Text(t) if t == "1" || t == "2" => continue,
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }
    panic!("the connection did not close");
}

pub async fn send_text(ws: &mut Ws, s: &str) {
    within("websocket send", ws.send(Message::text(s)))
        .await
        .expect("websocket send");
}

pub async fn send_binary(ws: &mut Ws, b: &[u8]) {
    within("websocket send", ws.send(Message::binary(b.to_vec())))
        .await
        .expect("websocket send");
}

/// A websocket-only Engine.IO session: the socket and its open packet's JSON.
pub async fn ws_open(addr: SocketAddr, path: &str) -> (Ws, Value) {
    let mut ws = ws_connect(addr, &format!("{path}?EIO=4&transport=websocket")).await;
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "not an open packet: {open:?}");
    let v = serde_json::from_str(&open[1..]).expect("open packet JSON");
    (ws, v)
}

/// A Socket.IO client over a websocket, connected to namespace `/`.
pub async fn sio_client(addr: SocketAddr) -> Ws {
    let (mut ws, _) = ws_open(addr, "/socket.io/").await;
    send_text(&mut ws, "40").await;
    let ok = next_text(&mut ws).await;
    assert!(ok.starts_with("40{"), "connect ack: {ok:?}");
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);
    ws
}

/// Split a Socket.IO packet (without the Engine.IO `4`) after its JSON start: the
/// header text and the parsed JSON.
pub fn split_json(packet: &str) -> (String, Value) {
    let at = packet
        .find(['{', '['])
        .unwrap_or_else(|| panic!("no JSON in {packet:?}"));
    let json = serde_json::from_str(&packet[at..])
        .unwrap_or_else(|e| panic!("bad JSON in {packet:?}: {e}"));
    (packet[..at].to_owned(), json)
}
