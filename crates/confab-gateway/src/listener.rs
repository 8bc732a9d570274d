//! The public listener: our own accept loop on hyper-util (in place of
//! `axum::serve`) for what that cannot do: a deadline for request heads (slow
//! clients, idle keep-alive connections), a cap on open TCP connections, and TLS
//! (rustls, certificate reloadable without a restart).
//!
//! - **Cap**: each accepted connection takes a slot of a semaphore; over the cap,
//!   a new connection is accepted and closed at once (counted in
//!   `confab_connections_refused_total{reason="max_connections"}`). The slot
//!   travels inside the connection's I/O object, so a websocket, which hyper hands
//!   over after the upgrade, keeps its slot until the socket closes.
//! - **Deadline**: hyper's HTTP/1 header-read timeout closes a client that does not
//!   finish its request head in time, also the next one on a keep-alive
//!   connection. Around it, every connection is watched: one with nothing in
//!   flight (no request being handled, no response being sent) for the same time
//!   is asked to close, and dropped a second later if it has not. That covers what
//!   hyper's timer does not see: the TLS handshake, a connection that never sends a
//!   byte, and idle HTTP/2 connections.
//! - **TLS**: PEM certificate chain and key, ALPN `h2` and `http/1.1`; plain
//!   HTTP/1.1 and HTTP/2 (prior knowledge) without it. [`Tls::reload`] swaps the
//!   certificate for new connections and keeps the old one when the files are bad.
//! - **Shutdown**: when the token is cancelled the listener is dropped (new
//!   connections are refused), every connection is asked to close (in-flight
//!   requests, e.g. a long-polling GET, finish first) and [`serve`] returns once
//!   they have all ended.
//!
//! Each request carries `ConnectInfo<SocketAddr>` of its TCP peer, as with axum's
//! `into_make_service_with_connect_info`.

use crate::config::GatewayConfig;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::{Mutex, RwLock};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a connection asked to close, with nothing in flight, may take to go.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How the public listener serves.
#[derive(Clone, Default)]
pub struct Options {
    /// See [`GatewayConfig::header_read_timeout`] (`None`: no deadline).
    pub header_read_timeout: Option<Duration>,
    /// Open TCP connections at most (0: no cap).
    pub max_connections: usize,
    /// Serve TLS with this certificate.
    pub tls: Option<Arc<Tls>>,
}

/// Accept connections on `listener` and serve `app` on them until `shutdown` is
/// cancelled; then stop accepting, ask every connection to close, and return once
/// all have ended (upgraded websockets are no longer HTTP connections: their
/// sessions are closed by the wire layer).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    opts: Options,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let slots = (opts.max_connections > 0).then(|| Arc::new(Semaphore::new(opts.max_connections)));
    let builder = Arc::new(http_builder(opts.header_read_timeout));
    let conns = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(e, &shutdown).await;
                    continue;
                }
            },
        };
        let slot = match &slots {
            None => None,
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    metrics::counter!(crate::metrics::CONNECTIONS_REFUSED, "reason" => "max_connections")
                        .increment(1);
                    tracing::debug!(%peer, "connection refused: --max-connections reached");
                    drop(tcp);
                    continue;
                }
            },
        };
        // Small frames (acks, pushes) must leave at once: no Nagle delay.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        let io = Held {
            io: tcp,
            _slot: slot,
        };
        conns.spawn(connection(
            io,
            peer,
            app.clone(),
            builder.clone(),
            opts.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    conns.close();
    conns.wait().await;
    Ok(())
}

/// An accept error: a connection that failed before we got it is skipped; anything
/// else (e.g. out of file descriptors) is logged and retried after a pause.
async fn accept_failed(e: io::Error, shutdown: &CancellationToken) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept failed (retrying in 1 s): {e}");
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// HTTP/1.1 (with upgrades) and HTTP/2, chosen by what the client sends first.
fn http_builder(header_read_timeout: Option<Duration>) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    b.http2().timer(TokioTimer::new());
    b
}

/// One connection: the TLS handshake (bounded by the deadline), then HTTP.
async fn connection(
    io: Held,
    peer: SocketAddr,
    app: axum::Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    opts: Options,
    shutdown: CancellationToken,
) {
    let accepted = Instant::now();
    let timeout = opts.header_read_timeout;
    match opts.tls {
        None => {
            serve_http(
                TokioIo::new(io),
                peer,
                app,
                &builder,
                timeout,
                accepted,
                shutdown,
            )
            .await
        }
        Some(tls) => {
            let handshake = tls.acceptor().accept(io);
            let stream = tokio::select! {
                r = handshake => match r {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                },
                _ = sleep_until(timeout.map(|t| accepted + t)) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
                _ = shutdown.cancelled() => return,
            };
            serve_http(
                TokioIo::new(stream),
                peer,
                app,
                &builder,
                timeout,
                accepted,
                shutdown,
            )
            .await
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    app: axum::Router,
    builder: &auto::Builder<TokioExecutor>,
    timeout: Option<Duration>,
    accepted: Instant,
    shutdown: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(accepted));
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let busy = activity.begin();
            req.extensions_mut().insert(ConnectInfo(peer));
            let call = tower::ServiceExt::oneshot(app.clone(), req);
            async move {
                let res = call.await?;
                Ok::<_, Infallible>(res.map(|body| Tracked { body, _busy: busy }))
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    // When this connection was asked to close (idle too long, or shutting down).
    let mut closing: Option<Instant> = None;
    loop {
        // Nothing in flight since `since`: too long → ask it to close; asked and
        // still idle after the grace → drop it.
        let wake = activity.idle_since().and_then(|since| match closing {
            None => timeout.map(|t| since + t),
            Some(asked) => Some(since.max(asked) + CLOSE_GRACE),
        });
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = sleep_until(wake) => {
                // Re-checked: a request may have started meanwhile.
                if activity.idle_since().is_none() {
                    continue;
                }
                if closing.is_some() {
                    tracing::debug!(%peer, "connection dropped: did not close in time");
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = shutdown.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
        }
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    state: Mutex<(usize, Instant)>,
    /// Woken whenever a request starts or a response ends (one waiter: the
    /// connection's task).
    changed: Notify,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new((0, now)),
            changed: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.state.lock().0 += 1;
        self.changed.notify_one();
        Busy(self.clone())
    }

    fn idle_since(&self) -> Option<Instant> {
        let (busy, since) = *self.state.lock();
        (busy == 0).then_some(since)
    }
}

/// One request in flight, until its response has been sent (or dropped).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut s = self.0.state.lock();
            s.0 -= 1;
            s.1 = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request counted as in flight until it is sent.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A TCP connection with its slot of the connection cap, given back when the
/// socket is closed (dropped), whoever holds it then.
struct Held {
    io: TcpStream,
    _slot: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The TLS certificate of the public listener: loaded from PEM files, reloaded
/// from the same files by [`Tls::reload`] (new connections get the new one).
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl Tls {
    /// Load the certificate chain and private key (PKCS#8, RSA or SEC1) PEM files.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> io::Result<Arc<Self>> {
        let (cert, key) = (cert.into(), key.into());
        let config = server_config(&cert, &key)?;
        Ok(Arc::new(Self {
            cert,
            key,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// The TLS of a gateway's configuration: `None` without `tls_cert`/`tls_key`;
    /// an error when only one is given or the files are bad.
    pub fn from_config(config: &GatewayConfig) -> io::Result<Option<Arc<Self>>> {
        match (&config.tls_cert, &config.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Self::load(cert, key).map(Some),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS needs both a certificate and a key",
            )),
        }
    }

    /// Read the files again; on any error the current certificate is kept (and the
    /// error returned).
    pub fn reload(&self) -> io::Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }
}

fn server_config(cert: &Path, key: &Path) -> io::Result<rustls::ServerConfig> {
    let bad = |path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no CERTIFICATE in the file"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} with {}: {e}", cert.display(), key.display()),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering `/` with the peer address it saw; stopped by the token.
    async fn start(opts: Options) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let app = axum::Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move {
            serve(listener, app, opts, t).await.unwrap();
        });
        (addr, token, task)
    }

    /// Read until the peer closes (bounded): the bytes read.
    async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        tokio::time::timeout(within, s.read_to_end(&mut out))
            .await
            .ok()
            .map(|r| r.map(|_| out).unwrap_or_default())
    }

    #[tokio::test]
    async fn peer_address_reaches_the_handler() {
        let (addr, token, task) = start(Options::default()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let local = s.local_addr().unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with(&local.to_string()), "{text}");
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn over_the_cap_closed_at_once_and_slot_comes_back() {
        let (addr, token, task) = start(Options {
            max_connections: 2,
            ..Options::default()
        })
        .await;
        let a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        // Let the server accept both before the third arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(
            read_to_close(&mut c, Duration::from_secs(2))
                .await
                .is_some(),
            "third not closed"
        );
        drop(a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut d = TcpStream::connect(addr).await.unwrap();
        d.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_to_close(&mut d, Duration::from_secs(5)).await.unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200"));
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn silent_and_idle_connections_are_closed() {
        let (addr, token, task) = start(Options {
            header_read_timeout: Some(Duration::from_millis(300)),
            ..Options::default()
        })
        .await;
        let t0 = Instant::now();
        // Never sends a byte.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(read_to_close(&mut silent, Duration::from_secs(3))
            .await
            .is_some());
        assert!(
            t0.elapsed() < Duration::from_millis(2000),
            "{:?}",
            t0.elapsed()
        );
        // Keep-alive: one request answered, then idle.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = read_to_close(&mut idle, Duration::from_secs(3))
            .await
            .unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200"));
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn shutdown_ends_idle_and_half_sent_connections() {
        let (addr, token, task) = start(Options {
            header_read_timeout: Some(Duration::from_secs(30)),
            ..Options::default()
        })
        .await;
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        token.cancel();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }

    #[test]
    fn tls_needs_both_files() {
        let config = GatewayConfig {
            tls_cert: Some("c.pem".into()),
            ..GatewayConfig::default()
        };
        assert!(Tls::from_config(&config).is_err());
        assert!(Tls::from_config(&GatewayConfig::default())
            .unwrap()
            .is_none());
        let missing = Tls::load("/nonexistent/c.pem", "/nonexistent/k.pem")
            .err()
            .unwrap();
        assert!(
            missing.to_string().contains("/nonexistent/c.pem"),
            "{missing}"
        );
    }
}
