//! `confab-bench`: a native Socket.IO load generator for confab.
//!
//! * `fanout`: N clients join one room; S of them send `message:send` on an open-loop
//!   schedule at a total rate R for D seconds; every client counts every
//!   `message:new` by (sender, seq) (lost, duplicates) and measures its latency from
//!   the scheduled send time (one process-wide monotonic clock). `--stalled K` adds K
//!   connections that join the room and then never read their socket again (slow
//!   consumers, outside the delivery figures): afterwards it reports whether the
//!   server disconnected them, and `--metrics-url` reads the server's
//!   `confab_slow_consumers_total`.
//! * `idle`: N idle connections joined to a room; reports the server's RSS per
//!   connection (needs `--server-pid`).
//!
//! Only loopback targets are accepted, and every loop is bounded in count and time.

mod ceiling;
mod fanout;
mod idle;
mod lean;
mod scrape;
mod stalled;
mod steps;
mod sys;

use clap::{Args, Parser, Subcommand};
use confab_client::{Client, ClientBuilder, RawHandler};
use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "confab-bench",
    version,
    about = "Socket.IO load generator for confab (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N clients in one room, S senders at R msg/s for D s; deliveries, loss, latency.
    Fanout(fanout::FanoutArgs),
    /// N idle connections joined to a room; server RSS per connection.
    Idle(idle::IdleArgs),
    /// Reference server: a minimal websocket broadcaster, the box's ceiling for `fanout`.
    CeilingServer(ceiling::CeilingArgs),
}

/// Options shared by every scenario.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server URL (http://host:port or ws://host:port). Repeat to spread clients over
    /// several gateways (round robin). Loopback addresses only.
    #[arg(long = "url", default_value = "http://127.0.0.1:3000")]
    pub urls: Vec<String>,
    /// Worker threads of the (multi-threaded) tokio runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Connections being opened at the same time.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Loopback source addresses to spread IPv4 connections over (127.0.0.1 ..
    /// 127.0.0.N): one address runs out of fast ephemeral ports at ~14,000
    /// connections to one server port (see confab_client::net). 1 = the default.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=250))]
    pub source_ips: u8,
    /// Bound on one connection's handshake + room:join, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Bound on the whole connect phase, in seconds.
    #[arg(long, default_value_t = 300)]
    pub connect_phase_timeout_s: u64,
    /// Room every client joins.
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// PID of a server process to sample (/proc/PID: CPU and RSS). Repeatable.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Websocket read buffer per connection, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub read_buffer: usize,
    /// Print the report as one JSON object on stdout (the human report goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Microseconds since the process-wide monotonic base.
pub fn now_us() -> u64 {
    base().elapsed().as_micros() as u64
}

pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

pub fn us_of(t: Instant) -> u64 {
    t.saturating_duration_since(base()).as_micros() as u64
}

/// Refuse any URL that is not a loopback address (after name resolution).
pub async fn check_loopback(urls: &[String]) -> Result<(), String> {
    if urls.is_empty() {
        return Err("no --url".into());
    }
    for url in urls {
        let ep = confab_client::packet::endpoint(url).map_err(|e| format!("{url}: {e}"))?;
        let addrs: Vec<_> = tokio::net::lookup_host((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| format!("{url}: cannot resolve: {e}"))?
            .collect();
        if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(format!(
                "{url}: refusing a non-loopback target ({addrs:?}); confab-bench only drives servers on this machine"
            ));
        }
    }
    Ok(())
}

/// A latency histogram in microseconds (1 µs .. 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// `{p50, p90, p99, p999, max, mean, count}` in milliseconds.
pub fn hist_json(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |v: u64| (v as f64) / 1000.0;
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "mean_ms": h.mean() / 1000.0,
    })
}

pub fn hist_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    let ms = |v: u64| (v as f64) / 1000.0;
    format!(
        "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (n={})",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

/// Result of opening many connections.
pub struct Connected<T = Arc<Client>> {
    /// (connection index, connection), in index order.
    pub clients: Vec<(usize, T)>,
    pub failures: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Per-connection connect + join time, µs.
    pub each: Histogram<u64>,
}

/// Open connections `ids` with bounded concurrency: `open(i, url, name)` opens
/// connection i (name `{prefix}{i}`, URLs round robin), within the per-connection
/// and the whole-phase timeouts.
pub async fn connect_each<T, F, Fut>(
    c: &Common,
    ids: std::ops::Range<usize>,
    prefix: &str,
    open: F,
) -> Connected<T>
where
    F: Fn(usize, String, String) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let per_conn = Duration::from_millis(c.connect_timeout_ms);
    let phase = Duration::from_secs(c.connect_phase_timeout_s);
    let deadline = tokio::time::Instant::now() + phase;
    let conc = c.connect_concurrency.clamp(1, 4096);
    let jobs = ids.map(|i| {
        let url = c.urls[i % c.urls.len()].clone();
        let name = format!("{prefix}{i}");
        let fut = open(i, url, name.clone());
        async move {
            let t = Instant::now();
            let r = match tokio::time::timeout_at(deadline, tokio::time::timeout(per_conn, fut))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(format!("{name}: connect + join timed out")),
                Err(_) => Err(format!("{name}: connect phase timed out")),
            };
            (i, t.elapsed(), r)
        }
    });
    let mut out = Connected {
        clients: Vec::new(),
        failures: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        each: histogram(),
    };
    let mut results = stream::iter(jobs).buffer_unordered(conc);
    while let Some((i, took, r)) = results.next().await {
        match r {
            Ok(client) => {
                out.each.saturating_record(took.as_micros().max(1) as u64);
                out.clients.push((i, client));
            }
            Err(e) => {
                out.failures += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out.clients.sort_by_key(|(i, _)| *i);
    out.elapsed = started.elapsed();
    out
}

/// The local address connection `i` connects from (`--source-ips`).
pub fn source_ip(c: &Common, i: usize) -> Option<std::net::IpAddr> {
    (c.source_ips > 1)
        .then(|| std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % c.source_ips as usize) as u8).into())
}

/// Open `n` `confab-client` connections named `{prefix}{i}`, each joining `room`
/// (unless `join` is false). `handler(i)` gives connection i's raw event sink.
pub async fn connect_all(
    c: &Common,
    n: usize,
    prefix: &str,
    join: bool,
    handler: impl Fn(usize) -> RawHandler,
) -> Connected {
    let per_conn = Duration::from_millis(c.connect_timeout_ms);
    connect_each(c, 0..n, prefix, |i, url, name| {
        let room = c.room.clone();
        let builder = ClientBuilder::new(url)
            .name(&name)
            .connect_timeout(per_conn)
            .read_buffer_size(c.read_buffer)
            .source_ip(source_ip(c, i));
        let h = handler(i);
        async move {
            let client = builder
                .on_raw_event(h)
                .connect()
                .await
                .map_err(|e| format!("connect {name}: {e}"))?;
            if join {
                let ack = client
                    .emit_with_ack("room:join", &json!({"room": room, "limit": 1}), per_conn)
                    .await
                    .map_err(|e| format!("room:join {name}: {e}"))?;
                if ack["ok"] != true {
                    return Err(format!("room:join {name}: {ack}"));
                }
            }
            Ok(Arc::new(client))
        }
    })
    .await
}

/// Close every client (concurrently, bounded).
pub async fn close_all(clients: &[(usize, Arc<Client>)]) {
    let _ = tokio::time::timeout(
        Duration::from_secs(20),
        stream::iter(clients.iter()).for_each_concurrent(256, |(_, c)| c.close()),
    )
    .await;
}

/// A short id for this run (names and message texts carry it).
pub fn run_id() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    (t ^ std::process::id().rotate_left(16)) & 0x00ff_ffff
}

/// Print the report: human text, and JSON when asked.
pub fn emit_report(c: &Common, human: &str, value: &serde_json::Value) {
    if c.json {
        eprintln!("{human}");
        println!("{value}");
    } else {
        println!("{human}");
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let common = match &cli.cmd {
        Cmd::Fanout(a) => &a.common,
        Cmd::Idle(a) => &a.common,
        // A server, not a scenario: no Common, its own runtime.
        Cmd::CeilingServer(a) => return ceiling::main(a),
    };
    let threads = common.threads.clamp(1, 64);
    base();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confab-bench: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Fanout(a) => fanout::run(a).await,
            Cmd::Idle(a) => idle::run(a).await,
            Cmd::CeilingServer(_) => Err("ceiling-server runs on its own runtime".into()),
        }
    });
    // Do not wait for stray connection tasks.
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab-bench: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
