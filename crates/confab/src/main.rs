//! The `confab` binary: parse configuration (flags or `CONFAB_*` environment
//! variables), pick the backend, run one gateway until SIGTERM/SIGINT.
//!
//! `confab` with no arguments serves the embedded (in-memory) backend and the web UI
//! at http://127.0.0.1:3000/.

use clap::{Args, Parser, Subcommand};
use confab_auth::{AuthMode, MintRequest, Signer, VerifierConfig};
use confab_backend::memory::MemoryHub;
use confab_backend::redis_backend::{RedisConfig, RedisNode};
use confab_backend::BackendConfig;
use confab_core::Limits;
use confab_gateway::state::Backend;
use confab_gateway::{Auth, AuthConfig, Gateway, GatewayConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// mimalloc unless built with `--no-default-features` (crates/confab/Cargo.toml,
/// docs/performance.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Every default comes from the config types (one place each); the flags only
// name them.
fn gw() -> GatewayConfig {
    GatewayConfig::default()
}

fn lim() -> Limits {
    Limits::default()
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[derive(Parser)]
#[command(
    name = "confab",
    version,
    about = "confab: a real-time chat server (Socket.IO v5)"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a gateway (the default).
    Serve(Box<ServeArgs>),
    /// Mint a token with the configured key (for an existing login system, and
    /// tests): prints it on stdout.
    Token(TokenArgs),
    /// Grant or revoke a role (`admin`, `moderator`) stored in the cluster's Redis;
    /// it applies from the user's next connection. (Embedded mode: put roles in
    /// tokens instead, `confab token --role`.)
    Role(RoleArgs),
}

#[derive(Args, Clone, Debug)]
struct RoleArgs {
    /// The Redis of the cluster.
    #[arg(long = "redis", env = "CONFAB_REDIS_URL")]
    redis_url: String,
    /// The user id.
    #[arg(long)]
    user: String,
    /// Role to grant.
    #[arg(long, required_unless_present = "revoke", conflicts_with = "revoke",
          value_parser = ["admin", "moderator"])]
    grant: Option<String>,
    /// Role to revoke.
    #[arg(long, value_parser = ["admin", "moderator"])]
    revoke: Option<String>,
}

#[derive(Args, Clone, Debug)]
struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    sub: String,
    /// The display name (`name`).
    #[arg(long)]
    name: String,
    /// A role to grant (`admin`, `moderator`); repeatable.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// A private room the token grants membership of; repeatable.
    #[arg(long = "room")]
    rooms: Vec<String>,
    /// Lifetime: `90s`, `15m`, `1h`, `30d`.
    #[arg(long, default_value = "1h", value_parser = confab_auth::parse_duration)]
    ttl: Duration,
    /// HS256 secret file (or env `CONFAB_JWT_SECRET`).
    #[arg(long, env = "CONFAB_JWT_SECRET_FILE")]
    jwt_secret_file: Option<PathBuf>,
    /// RS256/ES256 private key (PEM) to sign with instead of a secret.
    #[arg(long, env = "CONFAB_JWT_PRIVATE_KEY_FILE")]
    jwt_private_key_file: Option<PathBuf>,
    /// `iss` claim.
    #[arg(long, env = "CONFAB_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// `aud` claim.
    #[arg(long, env = "CONFAB_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
}

#[derive(Args, Clone, Debug)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CONFAB_BIND", default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// Directory of the web UI.
    #[arg(long, env = "CONFAB_UI_DIR", default_value = "ui")]
    ui_dir: PathBuf,
    /// Directory of socket.io-client's dist/ files (served at /vendor/socket.io/).
    #[arg(
        long,
        env = "CONFAB_VENDOR_DIR",
        default_value = "node_modules/socket.io-client/dist"
    )]
    vendor_dir: PathBuf,
    /// Who may connect: `guest` (pick a name, get a server-signed identity), `jwt`
    /// (tokens from your login system), `open` (anyone is whoever they say:
    /// development and tests only).
    #[arg(long, env = "CONFAB_AUTH", default_value = "guest")]
    auth: confab_auth::AuthMode,
    /// HS256 secret file for tokens (the secret may also come from env
    /// `CONFAB_JWT_SECRET`, never from a flag). In `guest` mode it also signs guest
    /// tokens.
    #[arg(long, env = "CONFAB_JWT_SECRET_FILE")]
    jwt_secret_file: Option<PathBuf>,
    /// RS256/ES256 public key (PEM) for tokens (reloaded on SIGHUP).
    #[arg(long, env = "CONFAB_JWT_PUBLIC_KEY_FILE")]
    jwt_public_key_file: Option<PathBuf>,
    /// JWKS file of RS256/ES256 public keys, selected by `kid` (reloaded on SIGHUP).
    #[arg(long, env = "CONFAB_JWT_JWKS_FILE")]
    jwt_jwks_file: Option<PathBuf>,
    /// Required `iss` claim.
    #[arg(long, env = "CONFAB_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "CONFAB_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Lifetime of a guest identity's token.
    #[arg(long, env = "CONFAB_GUEST_TTL", default_value = "30d", value_parser = confab_auth::parse_duration)]
    guest_ttl: Duration,
    /// How long a display name stays reserved after its holder was last seen.
    #[arg(long, env = "CONFAB_NAME_HOLD", default_value = "30d", value_parser = confab_auth::parse_duration)]
    name_hold: Duration,
    /// `auth:expiring` is pushed this long before a token expires.
    #[arg(long, env = "CONFAB_AUTH_EXPIRY_WARNING", default_value = "60s", value_parser = confab_auth::parse_duration)]
    auth_expiry_warning: Duration,
    /// Largest event payload in bytes.
    #[arg(long, env = "CONFAB_MAX_PAYLOAD", default_value_t = lim().max_payload)]
    max_payload: usize,
    /// Longest message text in characters.
    #[arg(long, env = "CONFAB_MAX_TEXT", default_value_t = lim().max_text_chars)]
    max_text: usize,
    /// Rooms one connection may be in.
    #[arg(long, env = "CONFAB_MAX_ROOMS", default_value_t = lim().max_rooms_per_socket)]
    max_rooms: usize,
    /// Largest history page.
    #[arg(long, env = "CONFAB_HISTORY_PAGE_MAX", default_value_t = lim().history_page_max)]
    history_page_max: usize,
    /// Most messages a `since` join returns.
    #[arg(long, env = "CONFAB_RESUME_MAX", default_value_t = lim().resume_max)]
    resume_max: usize,
    /// Messages kept per room and per DM conversation.
    #[arg(long, env = "CONFAB_HISTORY_RETENTION", default_value_t = BackendConfig::default().history_retention)]
    history_retention: usize,
    /// Messages older than this leave history (`30d`, `12h`; `off`: kept until
    /// --history-retention drops them); an idle room's history goes entirely.
    #[arg(long, env = "CONFAB_HISTORY_MAX_AGE", default_value = "off", value_parser = parse_max_age)]
    history_max_age: MaxAge,
    /// A message resent with the same clientId by the same user within this many
    /// seconds returns the original instead of being stored again.
    #[arg(long, env = "CONFAB_IDEMPOTENCY_WINDOW_S", default_value_t = BackendConfig::default().idempotency_window.as_secs())]
    idempotency_window_s: u64,
    /// Sustained events per second per connection.
    #[arg(long, env = "CONFAB_RATE_LIMIT", default_value_t = gw().rate_per_sec)]
    rate_limit: f64,
    /// Burst of events per connection.
    #[arg(long, env = "CONFAB_RATE_BURST", default_value_t = gw().rate_burst)]
    rate_burst: f64,
    /// Requests of one connection waiting for earlier ones.
    #[arg(long, env = "CONFAB_MAX_QUEUED", default_value_t = gw().max_queued_requests)]
    max_queued: usize,
    /// Outgoing bytes queued per connection; a connection whose queue cannot take
    /// the next push is cut as a slow consumer (4 KiB..=1 GiB).
    #[arg(long, env = "CONFAB_SOCKET_BUFFER_BYTES", default_value_t = gw().socket_buffer_bytes,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(4096..=1 << 30))]
    socket_buffer_bytes: usize,
    /// Websocket read buffer per connection, bytes (256..=1 MiB; grows for a bigger
    /// frame). Each idle connection holds one.
    #[arg(long, env = "CONFAB_WS_READ_BUFFER", default_value_t = gw().ws_read_buffer,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(256..=1 << 20))]
    ws_read_buffer: usize,
    /// Coalescing interval of room:presence pushes, in ms.
    #[arg(long, env = "CONFAB_PRESENCE_INTERVAL_MS", default_value_t = ms(gw().presence_interval))]
    presence_interval_ms: u64,
    /// Expiry of a typing indicator without refresh, in ms.
    #[arg(long, env = "CONFAB_TYPING_TIMEOUT_MS", default_value_t = ms(gw().typing_timeout))]
    typing_timeout_ms: u64,
    /// Engine.IO ping interval, in ms.
    #[arg(long, env = "CONFAB_PING_INTERVAL_MS", default_value_t = ms(gw().ping_interval))]
    ping_interval_ms: u64,
    /// Engine.IO ping timeout, in ms.
    #[arg(long, env = "CONFAB_PING_TIMEOUT_MS", default_value_t = ms(gw().ping_timeout))]
    ping_timeout_ms: u64,
    /// Longest graceful shutdown, in ms.
    #[arg(long, env = "CONFAB_SHUTDOWN_DEADLINE_MS", default_value_t = ms(gw().shutdown_deadline))]
    shutdown_deadline_ms: u64,
    /// Redis URL: run as one gateway of a cluster sharing this Redis (cluster mode).
    /// Without it, the embedded in-memory backend is used.
    #[arg(long = "redis", env = "CONFAB_REDIS_URL")]
    redis_url: Option<String>,
    /// This gateway's id in the cluster (default: random).
    #[arg(long, env = "CONFAB_GATEWAY_ID")]
    gateway_id: Option<String>,
    /// A gateway that stops heartbeating for this long is considered dead and its
    /// users are removed from presence by the others, in ms.
    #[arg(long, env = "CONFAB_GATEWAY_TTL_MS", default_value_t = ms(RedisConfig::default().heartbeat_ttl))]
    gateway_ttl_ms: u64,
    /// Timeout of each Redis command, in ms (then `unavailable`).
    #[arg(long, env = "CONFAB_REDIS_TIMEOUT_MS", default_value_t = ms(RedisConfig::default().command_timeout))]
    redis_timeout_ms: u64,
    /// Worker threads (0: one per CPU core). Several gateways on one small machine
    /// do better with fewer each.
    #[arg(long, env = "CONFAB_THREADS", default_value_t = 0)]
    threads: usize,
    /// Most member names in a `room:join` ack (the ack's `memberCount` has the total).
    #[arg(long, env = "CONFAB_JOIN_MEMBERS_MAX", default_value_t = lim().join_members_max)]
    join_members_max: usize,
    /// Most names per list in one `room:presence` push (the rest are counted in
    /// `joinedMore`/`leftMore`).
    #[arg(long, env = "CONFAB_PRESENCE_NAMES_MAX", default_value_t = lim().presence_names_max)]
    presence_names_max: usize,
    /// Refuse new messages with `overloaded` while deliveries lag by more than this,
    /// in ms (0: never refuse).
    #[arg(long, env = "CONFAB_OVERLOAD_LAG_MS", default_value_t = gw().overload_lag.map_or(0, ms))]
    overload_lag_ms: u64,
    /// Largest sum of message text in one history or join ack, bytes (the oldest
    /// of a page over it are left out; hasMore/truncated say so).
    #[arg(long, env = "CONFAB_ACK_TEXT_MAX_BYTES", default_value_t = lim().ack_text_max_bytes)]
    ack_text_max_bytes: usize,
    /// Protocol errors (unknown, oversized, binary or undecodable events) a socket
    /// may make at once, then 1 per second, before it is disconnected.
    #[arg(long, env = "CONFAB_PROTOCOL_ERRORS_BURST", default_value_t = gw().protocol_errors_burst)]
    protocol_errors_burst: f64,
    /// Web origins allowed to connect, comma-separated (e.g.
    /// `https://chat.example.com`); default: only the server's own origin; `*`: any.
    #[arg(long, env = "CONFAB_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Serve /metrics and /readyz (and /healthz) on this address only, not on the
    /// public listener (e.g. 127.0.0.1:9101).
    #[arg(long, env = "CONFAB_INTERNAL_BIND")]
    internal_bind: Option<SocketAddr>,
    /// Proxies whose X-Forwarded-For names the client, comma-separated.
    #[arg(long, env = "CONFAB_TRUSTED_PROXIES", value_delimiter = ',',
          default_values_t = gw().trusted_proxies)]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Connections one client IP may hold on this gateway (0: no cap).
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS_PER_IP", default_value_t = gw().max_connections_per_ip)]
    max_connections_per_ip: u32,
    /// Connections one user may hold across the cluster (0: no cap).
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS_PER_USER", default_value_t = gw().max_connections_per_user)]
    max_connections_per_user: u64,
    /// Close a connection that has not sent a complete request head this long after
    /// connecting or after its last response (slow or idle clients; also bounds the
    /// TLS handshake), in ms (0: never).
    #[arg(long, env = "CONFAB_HEADER_READ_TIMEOUT_MS", default_value_t = gw().header_read_timeout.map_or(0, ms))]
    header_read_timeout_ms: u64,
    /// TCP connections open at once on the public listener, websockets included (0:
    /// no cap); over it, new connections are closed at once.
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS", default_value_t = gw().max_connections)]
    max_connections: usize,
    /// Serve HTTPS/WSS with this PEM certificate chain (with --tls-key; both are
    /// reloaded on SIGHUP).
    #[arg(long, env = "CONFAB_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key, PEM (PKCS#8, RSA or SEC1).
    #[arg(long, env = "CONFAB_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Messages (message:send, dm:send, announce) per user across the cluster:
    /// RATE/BURST per second, or `off`.
    #[arg(long, env = "CONFAB_QUOTA_MESSAGES_PER_USER", default_value_t = gw().quotas.messages_per_user)]
    quota_messages_per_user: confab_gateway::quota::Rate,
    /// Messages per client IP across the cluster: RATE/BURST, or `off`.
    #[arg(long, env = "CONFAB_QUOTA_MESSAGES_PER_IP", default_value_t = gw().quotas.messages_per_ip)]
    quota_messages_per_ip: confab_gateway::quota::Rate,
    /// DMs (dm:send) per user across the cluster, on top of the message quota:
    /// RATE/BURST per second, or `off`.
    #[arg(long, env = "CONFAB_QUOTA_DMS_PER_USER", default_value_t = gw().quotas.dms_per_user)]
    quota_dms_per_user: confab_gateway::quota::Rate,
    /// DMs per client IP across the cluster: RATE/BURST, or `off`.
    #[arg(long, env = "CONFAB_QUOTA_DMS_PER_IP", default_value_t = gw().quotas.dms_per_ip)]
    quota_dms_per_ip: confab_gateway::quota::Rate,
    /// Joins of rooms not joined yet per user across the cluster: RATE/BURST, or `off`.
    #[arg(long, env = "CONFAB_QUOTA_JOINS_PER_USER", default_value_t = gw().quotas.joins_per_user)]
    quota_joins_per_user: confab_gateway::quota::Rate,
    /// Rooms started (room:create, or the first message of a room without history)
    /// per user across the cluster: RATE/BURST per second (0.02/10 = 72 an hour,
    /// 10 at once), or `off`.
    #[arg(long, env = "CONFAB_QUOTA_ROOMS_PER_USER", default_value_t = gw().quotas.rooms_per_user)]
    quota_rooms_per_user: confab_gateway::quota::Rate,
    /// Rooms started per client IP across the cluster: RATE/BURST, or `off`.
    #[arg(long, env = "CONFAB_QUOTA_ROOMS_PER_IP", default_value_t = gw().quotas.rooms_per_ip)]
    quota_rooms_per_ip: confab_gateway::quota::Rate,
    /// Forget users offline and unseen this long (they leave the user directory
    /// with their unread DMs; roles, sanctions and history stay), e.g. `90d`, or `off`.
    #[arg(long, env = "CONFAB_IDLE_USER_TTL", default_value = "90d", value_parser = parse_max_age)]
    idle_user_ttl: MaxAge,
    /// How often the janitor looks for idle users, in ms.
    #[arg(long, env = "CONFAB_JANITOR_INTERVAL_MS", default_value_t = ms(gw().janitor_interval))]
    janitor_interval_ms: u64,
    /// Every this many ms the gateway's probe client sends a DM to itself through
    /// the public listener and times its delivery (confab_probe_delivery_seconds);
    /// 0 = off. Default: 5000 with --redis, off without.
    #[arg(long, env = "CONFAB_PROBE_INTERVAL_MS")]
    probe_interval_ms: Option<u64>,
    /// Log lines as `pretty` text (for people) or `json` (one object per line, for
    /// log shippers). The level is set by `RUST_LOG` (default `info`).
    #[arg(long, env = "CONFAB_LOG_FORMAT", default_value = "pretty")]
    log_format: LogFormat,
    /// Who may start rooms: `any` user, or only holders of a role (`moderator`,
    /// which admins also satisfy, or `admin`).
    #[arg(long, env = "CONFAB_ROOM_CREATE_ROLE", default_value = "any",
          value_parser = ["any", "moderator", "admin"])]
    room_create_role: String,
    /// Handshakes per user across the cluster: RATE/BURST, or `off`.
    #[arg(long, env = "CONFAB_QUOTA_CONNECTS_PER_USER", default_value_t = gw().quotas.connects_per_user)]
    quota_connects_per_user: confab_gateway::quota::Rate,
    /// Handshakes per client IP across the cluster: RATE/BURST, or `off`.
    #[arg(long, env = "CONFAB_QUOTA_CONNECTS_PER_IP", default_value_t = gw().quotas.connects_per_ip)]
    quota_connects_per_ip: confab_gateway::quota::Rate,
    /// Redis connections in the command pool.
    #[arg(long, env = "CONFAB_REDIS_POOL", default_value_t = RedisConfig::default().pool_size)]
    redis_pool: usize,
}

/// `--history-max-age`: a duration or `off`.
#[derive(Debug, Clone, Copy)]
struct MaxAge(Option<Duration>);

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

fn parse_max_age(s: &str) -> Result<MaxAge, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(MaxAge(None));
    }
    let d = confab_auth::parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err("at least 1s (or off)".into());
    }
    Ok(MaxAge(Some(d)))
}

/// An HS256 secret given in the environment (never a flag: flags show in `ps`).
fn env_secret() -> Option<Vec<u8>> {
    std::env::var("CONFAB_JWT_SECRET")
        .ok()
        .map(|s| s.trim_end().as_bytes().to_vec())
        .filter(|s| !s.is_empty())
}

impl ServeArgs {
    fn auth_config(&self) -> AuthConfig {
        AuthConfig {
            mode: self.auth,
            jwt: VerifierConfig {
                secret_file: self.jwt_secret_file.clone(),
                secret: env_secret(),
                public_key_file: self.jwt_public_key_file.clone(),
                jwks_file: self.jwt_jwks_file.clone(),
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
                leeway_s: 5,
            },
            name_hold: self.name_hold,
            guest_ttl: self.guest_ttl,
            expiry_warning: self.auth_expiry_warning,
            ..AuthConfig::default()
        }
    }

    fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            limits: Limits {
                max_payload: self.max_payload,
                max_text_chars: self.max_text,
                max_rooms_per_socket: self.max_rooms,
                history_page_max: self.history_page_max,
                history_page_default: lim().history_page_default.min(self.history_page_max),
                resume_max: self.resume_max,
                list_max: lim().list_max,
                join_members_max: self.join_members_max,
                presence_names_max: self.presence_names_max,
                ack_text_max_bytes: self.ack_text_max_bytes.max(1),
            },
            ui_dir: self.ui_dir.clone(),
            vendor_dir: self.vendor_dir.clone(),
            rate_per_sec: self.rate_limit,
            rate_burst: self.rate_burst,
            max_queued_requests: self.max_queued,
            socket_buffer_bytes: self.socket_buffer_bytes,
            ws_read_buffer: self.ws_read_buffer,
            presence_interval: Duration::from_millis(self.presence_interval_ms.max(10)),
            typing_timeout: Duration::from_millis(self.typing_timeout_ms.max(100)),
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            ping_timeout: Duration::from_millis(self.ping_timeout_ms),
            shutdown_deadline: Duration::from_millis(self.shutdown_deadline_ms),
            allowed_origins: self
                .allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            internal_bind: self.internal_bind,
            protocol_errors_burst: self.protocol_errors_burst.max(1.0),
            quotas: confab_gateway::quota::Quotas {
                messages_per_user: self.quota_messages_per_user,
                messages_per_ip: self.quota_messages_per_ip,
                dms_per_user: self.quota_dms_per_user,
                dms_per_ip: self.quota_dms_per_ip,
                joins_per_user: self.quota_joins_per_user,
                rooms_per_user: self.quota_rooms_per_user,
                rooms_per_ip: self.quota_rooms_per_ip,
                connects_per_user: self.quota_connects_per_user,
                connects_per_ip: self.quota_connects_per_ip,
            },
            idle_user_ttl: self.idle_user_ttl.0,
            janitor_interval: Duration::from_millis(self.janitor_interval_ms.max(10)),
            gateway_id: self
                .gateway_id
                .clone()
                .unwrap_or_else(|| "embedded".to_owned()),
            probe_interval: match self.probe_interval_ms {
                None if self.redis_url.is_some() => Some(Duration::from_secs(5)),
                None | Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms.max(100))),
            },
            room_create_role: (self.room_create_role != "any")
                .then(|| self.room_create_role.clone()),
            trusted_proxies: self.trusted_proxies.clone(),
            max_connections_per_ip: self.max_connections_per_ip,
            max_connections_per_user: self.max_connections_per_user,
            header_read_timeout: (self.header_read_timeout_ms > 0)
                .then(|| Duration::from_millis(self.header_read_timeout_ms)),
            max_connections: self.max_connections,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            overload_lag: (self.overload_lag_ms > 0)
                .then(|| Duration::from_millis(self.overload_lag_ms)),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let args = match cli.cmd {
        Some(Cmd::Serve(a)) => *a,
        Some(Cmd::Token(t)) => return mint(t),
        Some(Cmd::Role(r)) => return role(r),
        None => cli.serve,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    match rt.enable_all().build() {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            eprintln!("confab: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `confab token`: print a signed token.
fn mint(t: TokenArgs) -> std::process::ExitCode {
    let signer = match (&t.jwt_private_key_file, &t.jwt_secret_file, env_secret()) {
        (Some(p), _, _) => std::fs::read(p)
            .map_err(|e| format!("{}: {e}", p.display()))
            .and_then(|pem| Signer::from_private_key_pem(&pem).map_err(|e| e.to_string())),
        (None, Some(p), _) => Signer::from_secret_file(p).map_err(|e| e.to_string()),
        (None, None, Some(secret)) => Ok(Signer::hs256(secret)),
        (None, None, None) => Err(
            "no key: give --jwt-secret-file, --jwt-private-key-file or env CONFAB_JWT_SECRET"
                .to_owned(),
        ),
    };
    let token = signer.and_then(|s| {
        s.mint(&MintRequest {
            sub: t.sub,
            name: t.name,
            roles: t.roles,
            rooms: t.rooms,
            ttl: t.ttl,
            issuer: t.jwt_issuer,
            audience: t.jwt_audience,
            guest: false,
        })
        .map_err(|e| e.to_string())
    });
    match token {
        Ok(tok) => {
            println!("{tok}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("confab token: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `confab role`: change a role stored in Redis.
fn role(r: RoleArgs) -> std::process::ExitCode {
    use confab_backend::Access;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confab role: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: Result<String, String> = rt.block_on(async {
        let (node, _events) = RedisNode::connect(&r.redis_url, RedisConfig::default())
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let (role, on) = match (&r.grant, &r.revoke) {
            (Some(g), _) => (g.clone(), true),
            (None, Some(v)) => (v.clone(), false),
            (None, None) => return Err("give --grant ROLE or --revoke ROLE".into()),
        };
        let done = node.set_role(&r.user, &role, on).await;
        let roles = node.roles(&r.user).await;
        let _ = node.shutdown().await;
        done.map_err(|e| e.to_string())?;
        let roles = roles.map_err(|e| e.to_string())?;
        Ok(format!("{}: roles [{}]", r.user, roles.join(", ")))
    });
    match result {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("confab role: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Re-read the token key files and the TLS certificate on every SIGHUP (rotation
/// without a restart).
fn reload_on_sighup(auth: Arc<Auth>, tls: Option<Arc<confab_gateway::listener::Tls>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: keys will not be reloaded");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match auth.reload() {
                Ok(()) => tracing::info!("SIGHUP: token keys reloaded"),
                Err(e) => tracing::error!("SIGHUP: token keys not reloaded (old keys kept): {e}"),
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => {
                        tracing::error!("SIGHUP: TLS certificate not reloaded (old one kept): {e}")
                    }
                }
            }
        }
    });
}

/// Logs to stderr (`--log-format`), and to Sentry when `CONFAB_SENTRY_DSN` is set:
/// error logs (and caught or uncaught panics) become Sentry events, lower levels
/// breadcrumbs. The returned guard flushes what is queued when dropped.
fn init_logs(format: LogFormat) -> Option<sentry::ClientInitGuard> {
    use tracing_subscriber::prelude::*;
    let sentry = std::env::var("CONFAB_SENTRY_DSN")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .map(|dsn| {
            let mut options = sentry::ClientOptions::default();
            options.release = sentry::release_name!();
            options.environment = std::env::var("CONFAB_SENTRY_ENVIRONMENT")
                .ok()
                .map(Into::into);
            sentry::init((dsn.trim(), options))
        });
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = match format {
        LogFormat::Json => stderr.json().with_current_span(true).boxed(),
        LogFormat::Pretty => stderr.boxed(),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with(stderr)
        // Error logs become Sentry events; info and warn lines the breadcrumbs sent
        // with the next one.
        .with(sentry.as_ref().map(|_| {
            sentry::integrations::tracing::ErrorLayer::new()
                .with_filter(tracing_subscriber::filter::LevelFilter::ERROR)
        }))
        .with(sentry.as_ref().map(|_| {
            sentry::integrations::tracing::BreadcrumbLayer::new()
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
        }))
        .init();
    if let Some(g) = &sentry {
        // Never the DSN itself: it holds the project's key.
        tracing::info!(enabled = g.is_enabled(), "error tracking: Sentry");
    }
    sentry
}

async fn run(args: ServeArgs) -> std::process::ExitCode {
    let _sentry = init_logs(args.log_format);
    match serve(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn make_auth(
    args: &ServeArgs,
    presence: &dyn confab_backend::Presence,
) -> Result<Arc<Auth>, String> {
    let auth = Arc::new(
        Auth::new(args.auth_config(), presence)
            .await
            .map_err(|e| format!("auth: {e}"))?,
    );
    match args.auth {
        AuthMode::Open => tracing::warn!(
            "AUTH IS OPEN (--auth open): anyone can connect as any name and read that \
             name's direct messages. Use it for development and tests only."
        ),
        mode => tracing::info!(mode = mode.as_str(), "auth"),
    }
    Ok(auth)
}

async fn serve(mut args: ServeArgs) -> Result<(), String> {
    // Every series carries the gateway's id (chosen here when not given, so the
    // Redis backend uses the same one).
    let gateway_label = match (&args.redis_url, &args.gateway_id) {
        (_, Some(id)) => id.clone(),
        (Some(_), None) => {
            let id = confab_auth::random_id("gw-");
            args.gateway_id = Some(id.clone());
            id
        }
        (None, None) => "embedded".to_owned(),
    };
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .add_global_label("gateway", gateway_label.clone())
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ])
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("metrics: {e}"))?;
    confab_gateway::metrics::describe();
    confab_gateway::metrics::build_info();
    let config = confab_gateway::config::GatewayConfig {
        gateway_id: gateway_label.clone(),
        ..args.gateway_config()
    };
    if !config.ui_dir.join("index.html").exists() {
        tracing::warn!(dir = %config.ui_dir.display(), "no index.html in the UI directory: the web UI will 404");
    }
    if !config.vendor_dir.exists() {
        tracing::warn!(dir = %config.vendor_dir.display(), "socket.io-client not found (run `npm ci`): the web UI will not connect");
    }
    let (mut gateway, redis, auth) = match &args.redis_url {
        None => {
            let hub = MemoryHub::new(BackendConfig {
                history_retention: args.history_retention,
                history_max_age: args.history_max_age.0,
                idempotency_window: Duration::from_secs(args.idempotency_window_s.max(1)),
            });
            let (node, events) = hub.node();
            tracing::info!("backend: embedded (in-memory)");
            let auth = make_auth(&args, node.as_ref()).await?;
            let gw = Gateway::new(
                config,
                auth.clone(),
                Backend::of(node),
                events,
                Some(metrics),
            );
            (gw, None, auth)
        }
        Some(url) => {
            let ttl = Duration::from_millis(args.gateway_ttl_ms.max(600));
            let rc = RedisConfig {
                history_retention: args.history_retention,
                history_max_age: args.history_max_age.0,
                command_timeout: Duration::from_millis(args.redis_timeout_ms.max(50)),
                heartbeat_interval: ttl / 3,
                heartbeat_ttl: ttl,
                reap_interval: ttl / 3,
                gateway_id: args.gateway_id.clone(),
                pool_size: args.redis_pool.max(1),
                idempotency_window: Duration::from_secs(args.idempotency_window_s.max(1)),
                ..RedisConfig::default()
            };
            let (node, events) = RedisNode::connect(url, rc)
                .await
                .map_err(|e| format!("redis: {e}"))?;
            tracing::info!(gateway = node.gateway_id(), "backend: redis");
            let auth = make_auth(&args, node.as_ref()).await?;
            let gw = Gateway::new(
                config,
                auth.clone(),
                Backend::of(node.clone()),
                events,
                Some(metrics),
            );
            (gw, Some(node), auth)
        }
    };
    let tls = gateway.load_tls().map_err(|e| format!("tls: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    reload_on_sighup(auth, tls);
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The one line scripts and tests wait for.
    println!("confab: listening on {scheme}://{addr}");
    let gateway = match redis {
        // Presence of the sockets was removed by their clean-up; this removes the
        // gateway's heartbeat and bookkeeping so no one has to reap it (inside the
        // shutdown deadline).
        Some(node) => gateway.on_backend_shutdown(async move {
            if let Err(e) = node.shutdown().await {
                tracing::warn!("redis shutdown: {e}");
            }
        }),
        None => gateway,
    };
    gateway
        .run(listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}
