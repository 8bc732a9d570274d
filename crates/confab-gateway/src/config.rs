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
    /// Web origins allowed to open a connection (`Origin` header, both transports);
    /// empty: only the server's own origin (`Origin` matching the `Host` header);
    /// `*`: any.
    pub allowed_origins: Vec<String>,
    /// Where `/metrics` and `/readyz` are served (`None`: on the public listener).
    pub internal_bind: Option<std::net::SocketAddr>,
    /// Protocol errors a socket may make at once (then 1/s) before it is
    /// disconnected.
    pub protocol_errors_burst: f64,
    /// Cluster-wide rate limits per user and per client IP.
    pub quotas: crate::quota::Quotas,
    /// Users offline and unseen this long are forgotten (see [`crate::janitor`]);
    /// `None`: never.
    pub idle_user_ttl: Option<Duration>,
    /// How often the janitor runs.
    pub janitor_interval: Duration,
    /// How often the delivery probe runs (see [`crate::probe`]); `None`: off.
    pub probe_interval: Option<Duration>,
    /// This gateway's id in logs and metrics (`--gateway-id`; `embedded` without
    /// Redis).
    pub gateway_id: String,
    /// Who may start a room (`room:create`, or the first message of a room
    /// without history): `None` anyone, else holders of this role (`moderator`
    /// includes admins).
    pub room_create_role: Option<String>,
    /// Proxies whose `X-Forwarded-For` names the client (default: loopback, where
    /// the shipped nginx runs).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Connections one client IP may hold on this gateway (0: no cap).
    pub max_connections_per_ip: u32,
    /// Connections one user may hold across the cluster (0: no cap).
    pub max_connections_per_user: u64,
    /// A connection that has not sent a complete request head this long after it
    /// was accepted or after its last response (an idle keep-alive connection) is
    /// closed; it also bounds the TLS handshake. `None`: no limit.
    pub header_read_timeout: Option<Duration>,
    /// TCP connections open at once on the public listener, websockets included
    /// (0: no cap); over it, new connections are accepted and closed at once.
    pub max_connections: usize,
    /// TLS on the public listener: PEM certificate chain and private key (both or
    /// neither; reloaded by [`crate::listener::Tls::reload`]).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
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
            allowed_origins: Vec::new(),
            internal_bind: None,
            quotas: Default::default(),
            room_create_role: None,
            gateway_id: "embedded".to_owned(),
            probe_interval: None,
            idle_user_ttl: Some(crate::janitor::DEFAULT_IDLE_USER_TTL),
            janitor_interval: Duration::from_secs(60),
            protocol_errors_burst: 20.0,
            trusted_proxies: vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
            max_connections_per_ip: 256,
            max_connections_per_user: 32,
            header_read_timeout: Some(Duration::from_secs(10)),
            max_connections: 20_000,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Whether a handshake from web page `origin` (an `Origin` header) may connect:
/// listed, or `*` listed, or (nothing listed) the page's own server: the origin's
/// authority equals the request's `Host` header.
pub fn origin_allowed(allowed: &[String], origin: &str, host: Option<&str>) -> bool {
    if !allowed.is_empty() {
        return allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin.trim_end_matches('/')));
    }
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .map(|rest| rest.trim_end_matches('/'));
    match (authority, host) {
        (Some(a), Some(h)) => a.eq_ignore_ascii_case(h),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn same_origin_by_default() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed(
            &none,
            "http://127.0.0.1:3000",
            Some("127.0.0.1:3000")
        ));
        assert!(origin_allowed(
            &none,
            "https://chat.example",
            Some("chat.example")
        ));
        assert!(!origin_allowed(
            &none,
            "https://evil.example",
            Some("chat.example")
        ));
        assert!(!origin_allowed(
            &none,
            "http://127.0.0.1:9999",
            Some("127.0.0.1:3000")
        ));
        assert!(!origin_allowed(&none, "null", Some("chat.example")));
        assert!(!origin_allowed(&none, "http://chat.example", None));
        let list = vec!["https://app.example".to_owned()];
        assert!(origin_allowed(
            &list,
            "https://app.example",
            Some("api.example")
        ));
        assert!(!origin_allowed(
            &list,
            "https://chat.example",
            Some("chat.example")
        ));
        assert!(origin_allowed(&["*".to_owned()], "https://x.example", None));
    }
}
