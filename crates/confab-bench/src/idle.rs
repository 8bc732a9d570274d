//! The idle scenario: open N connections (joined to a room), hold them, and report
//! the server's resident memory per connection.

use crate::{connect_all, hist_json, hist_line, sys, Common};
use clap::Args;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// Seconds to hold the connections before measuring (presence pushes settle).
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Do not join the room (stay in `general` only).
    #[arg(long)]
    pub no_join: bool,
}

pub async fn run(a: IdleArgs) -> Result<(), String> {
    let c = &a.common;
    crate::check_loopback(&c.urls).await?;
    if c.server_pids.is_empty() {
        return Err("the idle scenario needs --server-pid to measure the server's RSS".into());
    }
    if a.connections == 0 {
        return Err("need --connections ≥ 1".into());
    }
    let limit = sys::raise_nofile();
    if a.connections as u64 + 64 > limit {
        return Err(format!(
            "{} connections need more open files than the limit {limit}",
            a.connections
        ));
    }
    let pids = &c.server_pids;
    // Let the server settle, then take the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s0 = sys::sample_all(pids).ok_or("cannot read /proc/<server-pid>")?;
    let own0 = sys::own_rss_kib().unwrap_or(0);
    let cpu0 = sys::own_cpu();
    let events = Arc::new(AtomicU64::new(0));
    let prefix = format!("idle-{:x}-", crate::run_id());
    eprintln!(
        "idle: opening {} connections to {} ...",
        a.connections,
        c.urls.join(", ")
    );
    let conn = connect_all(c, a.connections, &prefix, !a.no_join, |_| {
        let events = events.clone();
        Box::new(move |_: &str, _: &str| {
            events.fetch_add(1, Ordering::Relaxed);
        })
    })
    .await;
    let open = conn.clients.len();
    eprintln!(
        "idle: {open} open, {} failed in {:.2} s; holding {:.1} s",
        conn.failures,
        conn.elapsed.as_secs_f64(),
        a.hold
    );
    let s_open = sys::sample_all(pids);
    let hold_start = Instant::now();
    let hold = Duration::from_secs_f64(a.hold.clamp(0.0, 3600.0));
    let mut peak_rss = s_open.map(|s| s.rss_kib).unwrap_or(0);
    while hold_start.elapsed() < hold {
        tokio::time::sleep(Duration::from_millis(500).min(hold)).await;
        if let Some(s) = sys::sample_all(pids) {
            peak_rss = peak_rss.max(s.rss_kib);
        }
    }
    let s1 = sys::sample_all(pids).ok_or("server gone during hold")?;
    let own1 = sys::own_rss_kib().unwrap_or(0);
    let still_open = conn.clients.iter().filter(|(_, c)| !c.is_closed()).count();
    let hold_cpu = s1
        .cpu
        .saturating_sub(s_open.map(|s| s.cpu).unwrap_or(s1.cpu))
        .as_secs_f64();

    crate::close_all(&conn.clients).await;
    drop(conn.clients);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s2 = sys::sample_all(pids);
    let cpu1 = sys::own_cpu();

    let delta = s1.rss_kib.saturating_sub(s0.rss_kib);
    let per_conn_kib = if open > 0 {
        delta as f64 / open as f64
    } else {
        0.0
    };
    let own_per_conn = if open > 0 {
        own1.saturating_sub(own0) as f64 / open as f64
    } else {
        0.0
    };
    let value = json!({
        "scenario": "idle",
        "urls": c.urls,
        "connections": a.connections,
        "open": open,
        "still_open_after_hold": still_open,
        "connect_failures": conn.failures,
        "first_connect_error": conn.first_error,
        "joined_room": !a.no_join,
        "connect_s": conn.elapsed.as_secs_f64(),
        "connect_each": hist_json(&conn.each),
        "hold_s": a.hold,
        "server_rss_kib_before": s0.rss_kib,
        "server_rss_kib_open": s_open.map(|s| s.rss_kib),
        "server_rss_kib_after_hold": s1.rss_kib,
        "server_rss_kib_peak": peak_rss,
        "server_rss_kib_after_close": s2.map(|s| s.rss_kib),
        "server_rss_delta_kib": delta,
        "server_rss_per_connection_kib": per_conn_kib,
        "server_cpu_s_connect": s_open.map(|s| s.cpu.saturating_sub(s0.cpu).as_secs_f64()),
        "server_cpu_s_hold": hold_cpu,
        "bench_rss_per_connection_kib": own_per_conn,
        "bench_cpu_s": (cpu1 - cpu0).as_secs_f64(),
        "events_received": events.load(Ordering::Relaxed),
    });
    let mut h = String::new();
    let _ = writeln!(
        h,
        "== idle: {open} of {} connections open ({} failed){}, held {:.1} s",
        a.connections,
        conn.failures,
        if a.no_join {
            ""
        } else {
            ", each joined to the room"
        },
        a.hold
    );
    if let Some(e) = &conn.first_error {
        let _ = writeln!(h, "first connect error: {e}");
    }
    let _ = writeln!(
        h,
        "connect{}: all in {:.2} s; each: {}",
        if a.no_join { "" } else { "+join" },
        conn.elapsed.as_secs_f64(),
        hist_line(&conn.each)
    );
    let _ = writeln!(
        h,
        "server RSS: {} KiB before → {} KiB after hold (peak {peak_rss}, after close {}): +{delta} KiB = {:.1} KiB per connection",
        s0.rss_kib,
        s1.rss_kib,
        s2.map(|s| s.rss_kib.to_string()).unwrap_or_else(|| "?".into()),
        per_conn_kib
    );
    let _ = writeln!(
        h,
        "server CPU: {:.2} s while connecting, {:.2} s during the hold; still open after hold: {still_open}",
        s_open.map(|s| s.cpu.saturating_sub(s0.cpu).as_secs_f64()).unwrap_or(0.0),
        hold_cpu
    );
    let _ = write!(
        h,
        "bench: RSS +{:.1} KiB per connection, CPU {:.2} s; {} events received",
        own_per_conn,
        (cpu1 - cpu0).as_secs_f64(),
        events.load(Ordering::Relaxed)
    );
    crate::emit_report(c, &h, &value);
    Ok(())
}
