//! The `confab` binary: parse configuration (flags or `CONFAB_*` environment
//! variables), pick the backend, run one gateway until SIGTERM/SIGINT.
//!
//! `confab` with no arguments serves the embedded (in-memory) backend and the web UI
//! at http://127.0.0.1:3000/.

use clap::{Args, Parser, Subcommand};
use confab_backend::memory::MemoryHub;
use confab_backend::redis_backend::{RedisConfig, RedisNode};
use confab_backend::BackendConfig;
use confab_core::Limits;
use confab_gateway::{Gateway, GatewayConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    Serve(ServeArgs),
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
    /// Require this key in the handshake (`auth.key`).
    #[arg(long, env = "CONFAB_ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
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
    /// Redis connections in the command pool.
    #[arg(long, env = "CONFAB_REDIS_POOL", default_value_t = RedisConfig::default().pool_size)]
    redis_pool: usize,
}

impl ServeArgs {
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
            },
            ui_dir: self.ui_dir.clone(),
            vendor_dir: self.vendor_dir.clone(),
            access_key: self.access_key.clone(),
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
        Some(Cmd::Serve(a)) => a,
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

async fn run(args: ServeArgs) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match serve(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ])
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("metrics: {e}"))?;
    confab_gateway::metrics::describe();
    let config = args.gateway_config();
    if !config.ui_dir.join("index.html").exists() {
        tracing::warn!(dir = %config.ui_dir.display(), "no index.html in the UI directory: the web UI will 404");
    }
    if !config.vendor_dir.exists() {
        tracing::warn!(dir = %config.vendor_dir.display(), "socket.io-client not found (run `npm ci`): the web UI will not connect");
    }
    let (gateway, redis) = match &args.redis_url {
        None => {
            let hub = MemoryHub::new(BackendConfig {
                history_retention: args.history_retention,
                idempotency_window: Duration::from_secs(args.idempotency_window_s.max(1)),
            });
            let (node, events) = hub.node();
            tracing::info!("backend: embedded (in-memory)");
            let gw = Gateway::new(config, node.clone(), node, events, Some(metrics));
            (gw, None)
        }
        Some(url) => {
            let ttl = Duration::from_millis(args.gateway_ttl_ms.max(600));
            let rc = RedisConfig {
                history_retention: args.history_retention,
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
            let gw = Gateway::new(config, node.clone(), node.clone(), events, Some(metrics));
            (gw, Some(node))
        }
    };
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The one line scripts and tests wait for.
    println!("confab: listening on http://{addr}");
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
