//! Gateway configuration: every limit and interval an operator can change.
//! The `confab` binary fills it from flags and `CONFAB_*` environment variables.

use confab_core::Limits;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Protocol limits (payload, text, rooms per socket, pages).
    pub limits: Limits,
    /// Directory of the web UI (index.html, app.js, style.css).
    pub ui_dir: PathBuf,
    /// Directory of socket.io-client's `dist/` (served at `/vendor/socket.io/`).
    pub vendor_dir: PathBuf,
    /// Sustained events per second per socket.
    pub rate_per_sec: f64,
    /// Burst of events per socket.
    pub rate_burst: f64,
    /// Requests of one socket queued while it waits for earlier ones (beyond this
    /// the socket is answered `rate_limited`).
    pub max_queued_requests: usize,
    /// Outgoing bytes queued per connection before it counts as too slow.
    pub socket_buffer_bytes: usize,
    /// Websocket read buffer per connection, bytes (grows for a bigger frame). Every
    /// idle connection holds one, so it is small by default.
    pub ws_read_buffer: usize,
    /// Coalescing interval of `room:presence` pushes.
    pub presence_interval: Duration,
    /// A `typing: true` not refreshed within this is expired by the server.
    pub typing_timeout: Duration,
    /// Engine.IO ping interval and timeout.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// How long a graceful shutdown may take before the process exits anyway.
    pub shutdown_deadline: Duration,
    /// Refuse new messages (`overloaded`) while the dispatcher is further behind than
    /// this (see [`crate::overload`]); `None`: never.
    pub overload_lag: Option<Duration>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            ui_dir: PathBuf::from("ui"),
            vendor_dir: PathBuf::from("node_modules/socket.io-client/dist"),
            rate_per_sec: 20.0,
            rate_burst: 60.0,
            max_queued_requests: 64,
            socket_buffer_bytes: 1 << 20,
            ws_read_buffer: 1024,
            presence_interval: Duration::from_millis(500),
            typing_timeout: Duration::from_millis(5000),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            shutdown_deadline: Duration::from_secs(10),
            overload_lag: Some(Duration::from_secs(2)),
        }
    }
}
