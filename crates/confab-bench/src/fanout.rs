//! The fan-out scenario: N clients in one room, S senders, open-loop rate R for D s.
//!
//! Message k (0 ≤ k < M = R·D) is sent by sender `k % S` as its sequence number
//! `k / S`, at the scheduled time `t0 + k / R`. Its text is
//! `"<run>:<sender>:<seq>:<scheduled µs>"` (plus optional padding), so a receiver
//! recovers (sender, seq) and the latency from one process-wide monotonic clock
//! without any lookup. Latency is measured from the *scheduled* time, so a sender
//! falling behind shows up in the figures (no coordinated omission); the sender lag
//! is reported separately.

use crate::{connect_all, hist_json, hist_line, histogram, now_us, sys, us_of, Common};
use clap::Args;
use confab_client::{Client, Error, RawHandler};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Clients (all join the room).
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Senders (the first S clients).
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Total send rate, messages per second (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Sending time, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Longest wait for outstanding deliveries after the last ack, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub grace: f64,
    /// Pause between the last join and the first send (presence pushes settle), ms.
    #[arg(long, default_value_t = 1500)]
    pub settle_ms: u64,
    /// Ack timeout of one message:send, ms.
    #[arg(long, default_value_t = 10_000)]
    pub ack_timeout_ms: u64,
    /// Extra characters appended to every message text.
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
    /// Extra connections that join the room, get the join ack and then never read
    /// their socket again until the end of the run (slow consumers). They are not
    /// counted in the delivery, loss and latency figures; afterwards each is read
    /// again to see whether the server disconnected it.
    #[arg(long, default_value_t = 0)]
    pub stalled: usize,
    /// How long each stalled connection keeps reading after its join ack (answering
    /// the server's first engine ping) before it stops, ms.
    #[arg(long, default_value_t = 1000)]
    pub stalled_read_ms: u64,
    /// After the run, longest time spent reading each stalled connection again
    /// (waiting for the server's disconnect), seconds.
    #[arg(long, default_value_t = 10.0)]
    pub stalled_probe_s: f64,
    /// The server's Prometheus endpoint (e.g. http://127.0.0.1:3000/metrics,
    /// loopback only): read before and after the run for
    /// `confab_slow_consumers_total`.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// How the non-sending clients receive: `lean` (one task per connection reading
    /// the socket directly, see lean.rs) or `client` (the general confab-client,
    /// as the senders do; costs several times more CPU per frame).
    #[arg(long, value_enum, default_value_t = Receivers::Lean)]
    pub receivers: Receivers,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receivers {
    Lean,
    Client,
}

/// Latency histograms, sharded by client so the two receiving threads rarely meet
/// on one lock; few enough that their hot buckets stay in cache.
const SHARDS: usize = 8;
const MAX_MESSAGES: usize = 5_000_000;
const MAX_STALLED: usize = 10_000;
const SLOW_CONSUMERS: &str = "confab_slow_consumers_total";
const SEND_FAILED: &str = "confab_send_failed_total";
const WATCH_POLL_MS: u64 = 250;

/// The server's counters of interest, read from `--metrics-url`.
#[derive(Debug, Clone, Copy, Default)]
struct ServerCounters {
    /// `None`: the counter has no sample yet (never incremented).
    slow_consumers: Option<f64>,
    send_failed: Option<f64>,
}

async fn read_counters(url: &str) -> Result<ServerCounters, String> {
    let text = crate::scrape::get(url, Duration::from_secs(10)).await?;
    Ok(ServerCounters {
        slow_consumers: crate::scrape::metric_sum(&text, SLOW_CONSUMERS),
        send_failed: crate::scrape::metric_sum(&text, SEND_FAILED),
    })
}

struct Shard {
    latency: Histogram<u64>,
    first_us: u64,
    last_us: u64,
}

/// State shared by every connection's receive handler.
struct Shared {
    run: u32,
    senders: usize,
    messages: usize,
    /// Unique deliveries per message.
    delivered: Vec<AtomicU32>,
    /// 0 planned, 1 sent, 2 acked ok, 3 error ack, 4 no ack.
    state: Vec<AtomicU8>,
    dupes: AtomicU64,
    foreign: AtomicU64,
    other_events: AtomicU64,
    shards: Vec<Mutex<Shard>>,
}

/// Parse `"text":"<run>:<sender>:<seq>:<us>` out of a message:new payload.
fn parse_text(payload: &str) -> Option<(u32, usize, usize, u64)> {
    const KEY: &str = "\"text\":\"";
    let start = payload.find(KEY)? + KEY.len();
    let rest = &payload[start..];
    let end = rest.find(['"', '~'])?;
    let mut it = rest[..end].split(':');
    let run = it.next()?.parse().ok()?;
    let sender = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let us = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((run, sender, seq, us))
}

fn handler(sh: Arc<Shared>, client: usize) -> RawHandler {
    let mut seen = vec![0u64; sh.messages.div_ceil(64)];
    let shard = client % SHARDS;
    Box::new(move |name: &str, payload: &str| {
        if name != "message:new" {
            sh.other_events.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = now_us();
        let Some((run, sender, seq, sched)) = parse_text(payload) else {
            sh.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let k = seq.saturating_mul(sh.senders).saturating_add(sender);
        if run != sh.run || sender >= sh.senders || k >= sh.messages {
            sh.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (w, bit) = (k / 64, 1u64 << (k % 64));
        if seen[w] & bit != 0 {
            sh.dupes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        seen[w] |= bit;
        sh.delivered[k].fetch_add(1, Ordering::Relaxed);
        let mut s = sh.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        s.latency
            .saturating_record(now.saturating_sub(sched).max(1));
        if s.first_us == 0 || now < s.first_us {
            s.first_us = now;
        }
        s.last_us = s.last_us.max(now);
    })
}

#[derive(Default)]
struct SendStats {
    sent: u64,
    max_lag: Duration,
    lag_sum: Duration,
}

/// The open-loop schedule: message k (0 ≤ k < M) goes at `t0 + k / rate` from
/// sender `k % S` as its sequence number `k / S`. The calling (OS) thread sleeps
/// between sends; `send(k, sender, seq, scheduled µs)` sends one message. Returns
/// the send statistics, when the last send went out, and what `send` returned.
fn pace<H>(
    messages: usize,
    senders: usize,
    rate: f64,
    t0: Instant,
    mut send: impl FnMut(usize, usize, usize, u64) -> H,
) -> (SendStats, Instant, Vec<H>) {
    let mut st = SendStats::default();
    let mut out = Vec::with_capacity(messages);
    for k in 0..messages {
        let at = t0 + Duration::from_secs_f64(k as f64 / rate);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let lag = Instant::now().saturating_duration_since(at);
        st.max_lag = st.max_lag.max(lag);
        st.lag_sum += lag;
        out.push(send(k, k % senders, k / senders, us_of(at)));
        st.sent += 1;
    }
    (st, Instant::now(), out)
}

pub async fn run(a: FanoutArgs) -> Result<(), String> {
    let c = &a.common;
    crate::check_loopback(&c.urls).await?;
    if a.clients == 0 || a.senders == 0 || a.senders > a.clients {
        return Err("need 1 ≤ senders ≤ clients".into());
    }
    let rate_ok = a.rate > 0.0 && a.rate.is_finite();
    let duration_ok = a.duration > 0.0 && a.duration <= 3600.0;
    if !rate_ok || !duration_ok {
        return Err("need rate > 0 and 0 < duration ≤ 3600".into());
    }
    let messages = (a.rate * a.duration).round() as usize;
    if messages == 0 || messages > MAX_MESSAGES {
        return Err(format!(
            "rate × duration = {messages} messages (1..={MAX_MESSAGES})"
        ));
    }
    if a.stalled > MAX_STALLED {
        return Err(format!("--stalled {} (at most {MAX_STALLED})", a.stalled));
    }
    if !(a.stalled_probe_s >= 0.0 && a.stalled_probe_s <= 600.0) {
        return Err("need 0 ≤ --stalled-probe-s ≤ 600".into());
    }
    let limit = sys::raise_nofile();
    if (a.clients + a.stalled) as u64 + 64 > limit {
        return Err(format!(
            "{} clients + {} stalled need more open files than the limit {limit} (ulimit -n)",
            a.clients, a.stalled
        ));
    }
    // The server's counters before the run (the delta is what this run caused).
    let counters0 = match &a.metrics_url {
        Some(url) => Some(read_counters(url).await?),
        None => None,
    };
    let run_id = crate::run_id();
    let prefix = format!("bench-{run_id:x}-");
    let sh = Arc::new(Shared {
        run: run_id,
        senders: a.senders,
        messages,
        delivered: (0..messages).map(|_| AtomicU32::new(0)).collect(),
        state: (0..messages).map(|_| AtomicU8::new(0)).collect(),
        dupes: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        other_events: AtomicU64::new(0),
        shards: (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    latency: crate::histogram(),
                    first_us: 0,
                    last_us: 0,
                })
            })
            .collect(),
    });
    let pids = &c.server_pids;
    let cpu0 = sys::own_cpu();
    let srv0 = sys::sample_all(pids);

    // ---- connect + join ----
    eprintln!(
        "fanout: connecting {} clients to {} ({} at a time)...",
        a.clients,
        c.urls.join(", "),
        c.connect_concurrency
    );
    // The senders (and, with `--receivers client`, everyone) use confab-client.
    let lean = a.receivers == Receivers::Lean;
    let n_client = if lean { a.senders } else { a.clients };
    let mut conn = connect_all(c, n_client, &prefix, true, |i| handler(sh.clone(), i)).await;
    if conn.clients.len() < a.senders {
        crate::close_all(&conn.clients).await;
        return Err(format!(
            "only {} of {} senders joined (first error: {})",
            conn.clients.len(),
            a.senders,
            conn.first_error.unwrap_or_default()
        ));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let receivers = if lean {
        let r = crate::connect_each(c, a.senders..a.clients, &prefix, |i, url, name| {
            let h = handler(sh.clone(), i);
            let room = c.room.clone();
            let stop = stop_rx.clone();
            let source = crate::source_ip(c, i);
            async move {
                crate::lean::open(&url, source, &name, &room, h, stop)
                    .await
                    .map_err(|e| format!("{name}: {e}"))
            }
        })
        .await;
        conn.failures += r.failures;
        if conn.first_error.is_none() {
            conn.first_error = r.first_error;
        }
        conn.elapsed += r.elapsed;
        conn.each.add(&r.each).map_err(|e| e.to_string())?;
        r.clients
    } else {
        Vec::new()
    };
    let joined = conn.clients.len() + receivers.len();
    eprintln!(
        "fanout: {joined} joined, {} failed in {:.2} s",
        conn.failures,
        conn.elapsed.as_secs_f64()
    );
    let srv_joined = sys::sample_all(pids);

    // ---- stalled connections: join, then never read again until the probe ----
    let stalled = if a.stalled > 0 {
        let read_for = Duration::from_millis(a.stalled_read_ms.min(60_000));
        let s = crate::stalled::open_all(c, a.stalled, &prefix, read_for).await;
        eprintln!(
            "fanout: {} stalled connections joined ({} failed); they stop reading now",
            s.conns.len(),
            s.failures
        );
        s
    } else {
        crate::stalled::Opened {
            conns: Vec::new(),
            failures: 0,
            first_error: None,
        }
    };
    let stalled_joined = stalled.conns.len();
    let (stalled_failures, stalled_first_error) = (stalled.failures, stalled.first_error);
    let stalled_conns = stalled.conns;
    tokio::time::sleep(Duration::from_millis(a.settle_ms)).await;

    // ---- send (open loop) ----
    let cpu_send0 = sys::own_cpu();
    let srv_send0 = sys::sample_all(pids);
    let t0 = Instant::now() + Duration::from_millis(50);
    let t0_us = us_of(t0);
    let ack_timeout = Duration::from_millis(a.ack_timeout_ms);
    let ack_hist = Arc::new(Mutex::new(histogram()));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let pad: String = "~".repeat(a.pad);
    // With stalled connections, watch the server's slow-consumer counter during the
    // run to learn when the cut happened (polled, so ± the poll period).
    let cut_watch = match (&a.metrics_url, counters0) {
        (Some(url), Some(c0)) if a.stalled > 0 => {
            let url = url.clone();
            let before = c0.slow_consumers.unwrap_or(0.0);
            let hard_end =
                t0 + Duration::from_secs_f64(a.duration + a.grace.clamp(0.0, 600.0) + 60.0);
            Some(tokio::spawn(async move {
                while Instant::now() < hard_end {
                    if let Ok(c) = read_counters(&url).await {
                        if c.slow_consumers.unwrap_or(0.0) > before {
                            return Some(Instant::now());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(WATCH_POLL_MS)).await;
                }
                None
            }))
        }
        _ => None,
    };
    eprintln!(
        "fanout: {} senders, {:.0} msg/s for {:.1} s ({messages} messages, {} deliveries expected)",
        a.senders,
        a.rate,
        a.duration,
        messages as u64 * joined as u64
    );
    // One pacer thread sends every message at its scheduled time, in order. It is
    // an OS thread sleeping with the kernel's timer rather than a tokio task, whose
    // timer wheel has 1 ms ticks: with tokio timers the sends lagged the schedule by
    // 0.7–1.5 ms on average, which every latency figure then included.
    let senders: Vec<Arc<Client>> = conn.clients[..a.senders]
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    let pacer = {
        let (sh, room, ack_hist, errors) =
            (sh.clone(), c.room.clone(), ack_hist.clone(), errors.clone());
        let (rate, rt) = (a.rate, tokio::runtime::Handle::current());
        tokio::task::spawn_blocking(move || {
            pace(sh.messages, senders.len(), rate, t0, |k, j, seq, sched| {
                let body = format!(
                    r#"{{"room":"{room}","text":"{}:{j}:{seq}:{sched}{pad}"}}"#,
                    sh.run
                );
                let fut = senders[j].emit_json_with_ack("message:send", &body, ack_timeout);
                sh.state[k].store(1, Ordering::Relaxed);
                let (sh, ack_hist, errors) = (sh.clone(), ack_hist.clone(), errors.clone());
                rt.spawn(async move {
                    let r = fut.await;
                    let now = now_us();
                    let code = match r {
                        Ok(v) if v["ok"] == true => {
                            sh.state[k].store(2, Ordering::Relaxed);
                            ack_hist
                                .lock()
                                .unwrap()
                                .saturating_record(now.saturating_sub(sched).max(1));
                            return;
                        }
                        Ok(v) => {
                            sh.state[k].store(3, Ordering::Relaxed);
                            v["error"]["code"].as_str().unwrap_or("bad ack").to_owned()
                        }
                        Err(Error::Timeout(_)) => {
                            sh.state[k].store(4, Ordering::Relaxed);
                            "ack timeout".to_owned()
                        }
                        Err(e) => {
                            sh.state[k].store(4, Ordering::Relaxed);
                            format!("no ack: {e}")
                        }
                    };
                    *errors.lock().unwrap().entry(code).or_default() += 1;
                })
            })
        })
    };
    let (send, last_send, acks) = pacer.await.map_err(|e| format!("pacer thread: {e}"))?;
    for h in acks {
        let _ = h.await;
    }
    let acks_done = Instant::now();

    // ---- grace: wait for outstanding deliveries (bounded) ----
    let acked: Vec<usize> = (0..messages)
        .filter(|&k| sh.state[k].load(Ordering::Relaxed) == 2)
        .collect();
    let expected = acked.len() as u64 * joined as u64;
    let delivered_acked = || -> u64 {
        acked
            .iter()
            .map(|&k| sh.delivered[k].load(Ordering::Relaxed) as u64)
            .sum()
    };
    let grace_end = Instant::now() + Duration::from_secs_f64(a.grace.clamp(0.0, 600.0));
    while delivered_acked() < expected && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_send1 = sys::own_cpu();
    let srv_send1 = sys::sample_all(pids);
    let send_window = Instant::now().saturating_duration_since(t0);

    // ---- tally ----
    let received_acked = delivered_acked();
    let received_all: u64 = sh
        .delivered
        .iter()
        .map(|d| d.load(Ordering::Relaxed) as u64)
        .sum();
    let received_unacked = received_all - received_acked;
    let lost = expected.saturating_sub(received_acked);
    let mut latency = histogram();
    let (mut first, mut last) = (u64::MAX, 0u64);
    for s in &sh.shards {
        let s = s.lock().unwrap();
        latency.add(&s.latency).map_err(|e| e.to_string())?;
        if s.first_us != 0 {
            first = first.min(s.first_us);
        }
        last = last.max(s.last_us);
    }
    let delivery_span = Duration::from_micros(last.saturating_sub(t0_us));
    let deliveries_per_s = if last > t0_us {
        received_all as f64 / delivery_span.as_secs_f64()
    } else {
        0.0
    };
    let closed_clients = conn.clients.iter().filter(|(_, c)| c.is_closed()).count()
        + receivers.iter().filter(|(_, r)| r.is_closed()).count();
    let ack_hist = ack_hist.lock().unwrap().clone();
    let errors = errors.lock().unwrap().clone();
    let acked_n = acked.len() as u64;

    // When the slow-consumer counter rose during the run (None: not during the run).
    let cut_at = match cut_watch {
        Some(h) if h.is_finished() => h.await.ok().flatten(),
        Some(h) => {
            h.abort();
            None
        }
        None => None,
    };
    let cut_s = cut_at.map(|t| t.saturating_duration_since(t0).as_secs_f64());

    // ---- stalled connections: read them again; did the server cut them? ----
    let probes =
        crate::stalled::probe(stalled_conns, Duration::from_secs_f64(a.stalled_probe_s)).await;
    let stalled_disconnected = probes.iter().filter(|p| p.outcome.disconnected()).count();
    let counters1 = match &a.metrics_url {
        Some(url) => Some(read_counters(url).await),
        None => None,
    };

    let _ = stop_tx.send(true);
    let mut receive_errors = 0usize;
    let mut first_receive_error = None;
    for (_, r) in receivers {
        if let Some(e) = r.finish(Duration::from_secs(5)).await {
            receive_errors += 1;
            first_receive_error.get_or_insert(e);
        }
    }
    crate::close_all(&conn.clients).await;
    let cpu1 = sys::own_cpu();
    let srv1 = sys::sample_all(pids);

    // ---- report ----
    let send_phase = send_window.as_secs_f64();
    let bench_cpu_send = (cpu_send1 - cpu_send0).as_secs_f64();
    let mut server = Value::Null;
    let mut server_line = String::from("server: not sampled (no --server-pid)");
    if let (Some(s0), Some(sj), Some(ss0), Some(ss1)) = (srv0, srv_joined, srv_send0, srv_send1) {
        let cpu_send = (ss1.cpu.saturating_sub(ss0.cpu)).as_secs_f64();
        server = json!({
            "pids": pids,
            "rss_kib_start": s0.rss_kib,
            "rss_kib_joined": sj.rss_kib,
            "rss_kib_after_send": ss1.rss_kib,
            "rss_kib_end": srv1.map(|s| s.rss_kib),
            "cpu_s_connect": (sj.cpu.saturating_sub(s0.cpu)).as_secs_f64(),
            "cpu_s_send_phase": cpu_send,
            "cpu_pct_send_phase": 100.0 * cpu_send / send_phase,
        });
        server_line = format!(
            "server: CPU {:.2} s in the send phase ({:.0}% of one core), {:.2} s for connect+join; RSS {} → {} (joined) → {} KiB (after sends)",
            cpu_send,
            100.0 * cpu_send / send_phase,
            (sj.cpu.saturating_sub(s0.cpu)).as_secs_f64(),
            s0.rss_kib,
            sj.rss_kib,
            ss1.rss_kib
        );
    }
    let mut metrics = Value::Null;
    let mut metrics_line = String::from("server metrics: not read (no --metrics-url)");
    if let (Some(url), Some(c0), Some(r1)) = (&a.metrics_url, counters0, counters1) {
        match r1 {
            Ok(c1) => {
                let delta = |b: Option<f64>, a: Option<f64>| a.unwrap_or(0.0) - b.unwrap_or(0.0);
                let slow = delta(c0.slow_consumers, c1.slow_consumers);
                let failed = delta(c0.send_failed, c1.send_failed);
                metrics = json!({
                    "url": url,
                    "slow_consumers_before": c0.slow_consumers.unwrap_or(0.0),
                    "slow_consumers_after": c1.slow_consumers.unwrap_or(0.0),
                    "slow_consumers": slow,
                    "send_failed_before": c0.send_failed.unwrap_or(0.0),
                    "send_failed_after": c1.send_failed.unwrap_or(0.0),
                    "send_failed": failed,
                });
                metrics_line = format!(
                    "server metrics: {SLOW_CONSUMERS} +{slow} during the run ({} → {}), {SEND_FAILED} +{failed}",
                    c0.slow_consumers.unwrap_or(0.0),
                    c1.slow_consumers.unwrap_or(0.0)
                );
            }
            Err(e) => {
                metrics = json!({"url": url, "error": e});
                metrics_line = format!("server metrics: {e}");
            }
        }
    }
    let stalled_line = if a.stalled > 0 {
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        for p in &probes {
            *outcomes.entry(p.outcome.label()).or_default() += 1;
        }
        let drained: u64 = probes.iter().map(|p| p.messages).sum();
        let cut = match (cut_s, &a.metrics_url) {
            (Some(s), _) => format!(
                "; slow-consumer counter first seen up {s:.2} s after the first send (polled every {WATCH_POLL_MS} ms)"
            ),
            (None, Some(_)) => "; slow-consumer counter did not rise during the sends".into(),
            (None, None) => String::new(),
        };
        format!(
            "stalled: {} asked, {stalled_joined} joined ({stalled_failures} failed), {stalled_disconnected} disconnected by the server; read again after the run: {outcomes:?}, {drained} message:new still buffered for them{cut}",
            a.stalled
        )
    } else {
        "stalled: none".into()
    };
    let mut value = json!({
        "scenario": "fanout",
        "urls": c.urls,
        "threads": c.threads,
        "clients": a.clients,
        "joined": joined,
        "connect_failures": conn.failures,
        "first_connect_error": conn.first_error,
        "connect_join_s": conn.elapsed.as_secs_f64(),
        "connect_join_each": hist_json(&conn.each),
        "senders": a.senders,
        "rate": a.rate,
        "duration_s": a.duration,
        "messages_planned": messages,
        "sent": send.sent,
        "acked": acked_n,
        "send_errors": errors,
        "deliveries_expected": expected,
        "deliveries_received": received_acked,
        "deliveries_of_unacked": received_unacked,
        "lost": lost,
        "duplicates": sh.dupes.load(Ordering::Relaxed),
        "foreign": sh.foreign.load(Ordering::Relaxed),
        "other_events": sh.other_events.load(Ordering::Relaxed),
        "clients_closed_during_run": closed_clients,

        "deliveries_per_s": deliveries_per_s,
        "offered_deliveries_per_s": a.rate * joined as f64,
        "delivery_span_s": delivery_span.as_secs_f64(),
        "latency": hist_json(&latency),
        "ack_latency": hist_json(&ack_hist),
        "sender_lag_max_ms": send.max_lag.as_secs_f64() * 1000.0,
        "sender_lag_mean_ms": if send.sent > 0 { send.lag_sum.as_secs_f64() * 1000.0 / send.sent as f64 } else { 0.0 },
        "sends_finished_s": last_send.saturating_duration_since(t0).as_secs_f64(),
        "acks_finished_s": acks_done.saturating_duration_since(t0).as_secs_f64(),
        "bench_cpu_s_total": (cpu1 - cpu0).as_secs_f64(),
        "bench_cpu_s_send_phase": bench_cpu_send,
        "bench_cpu_pct_send_phase": 100.0 * bench_cpu_send / send_phase,
        "send_phase_s": send_phase,
        "bench_rss_kib": sys::own_rss_kib(),
        "server": server,
    });
    // (a second object: one json! of everything exceeds the macro recursion limit)
    let slow_consumers = metrics.get("slow_consumers").cloned();
    let extra = json!({
        "receivers": format!("{:?}", a.receivers).to_lowercase(),
        "receive_errors": receive_errors,
        "first_receive_error": first_receive_error,
        "stalled": a.stalled,
        "stalled_joined": stalled_joined,
        "stalled_connect_failures": stalled_failures,
        "first_stalled_error": stalled_first_error,
        "stalled_disconnected": stalled_disconnected,
        "slow_consumer_seen_s": cut_s,
        "stalled_connections": probes.iter().map(|p| p.json()).collect::<Vec<_>>(),
        "metrics": metrics,
        "slow_consumers": slow_consumers,
    });
    if let (Some(v), Value::Object(extra)) = (value.as_object_mut(), extra) {
        v.extend(extra);
    }
    let mut h = String::new();
    let _ = writeln!(
        h,
        "== fanout: {} clients ({} joined, {} failed), {} senders, {:.0} msg/s for {:.1} s, {} threads",
        a.clients, joined, conn.failures, a.senders, a.rate, a.duration, c.threads
    );
    if let Some(e) = &conn.first_error {
        let _ = writeln!(h, "first connect error: {e}");
    }
    let _ = writeln!(
        h,
        "connect+join: all {joined} in {:.2} s; each: {}",
        conn.elapsed.as_secs_f64(),
        hist_line(&conn.each)
    );
    let _ = writeln!(
        h,
        "sent {} / planned {messages}, acked {acked_n}, errors {:?}",
        send.sent, errors
    );
    let _ = writeln!(
        h,
        "deliveries: expected {expected}, received {received_acked} (+{received_unacked} of unacked), lost {lost}, duplicates {}, foreign {}",
        sh.dupes.load(Ordering::Relaxed),
        sh.foreign.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        h,
        "throughput: {:.0} deliveries/s over {:.2} s (offered {:.0}/s); clients closed during run: {closed_clients}",
        deliveries_per_s,
        delivery_span.as_secs_f64(),
        a.rate * joined as f64
    );
    let _ = writeln!(
        h,
        "latency (scheduled send → message:new): {}",
        hist_line(&latency)
    );
    let _ = writeln!(
        h,
        "ack latency (scheduled send → ack):      {}",
        hist_line(&ack_hist)
    );
    let _ = writeln!(
        h,
        "sender lag: max {:.2} ms, mean {:.3} ms",
        send.max_lag.as_secs_f64() * 1000.0,
        if send.sent > 0 {
            send.lag_sum.as_secs_f64() * 1000.0 / send.sent as f64
        } else {
            0.0
        }
    );
    let _ = writeln!(
        h,
        "bench: CPU {:.2} s in the send phase ({:.0}% of one core over {:.2} s), {:.2} s total; RSS {} KiB",
        bench_cpu_send,
        100.0 * bench_cpu_send / send_phase,
        send_phase,
        (cpu1 - cpu0).as_secs_f64(),
        sys::own_rss_kib().unwrap_or(0)
    );
    let _ = writeln!(h, "{server_line}");
    if let Some(e) = &stalled_first_error {
        let _ = writeln!(h, "first stalled connect error: {e}");
    }
    let _ = writeln!(h, "{stalled_line}");
    let _ = write!(h, "{metrics_line}");
    crate::emit_report(c, &h, &value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_every_message_in_schedule_order_and_never_early() {
        let t0 = Instant::now();
        let mut seen = Vec::new();
        let (st, done, out) = pace(7, 3, 1000.0, t0, |k, j, seq, sched| {
            assert!(now_us() >= sched, "message {k} went before its time");
            seen.push((j, seq, sched));
            k
        });
        assert_eq!(out, (0..7).collect::<Vec<_>>());
        assert_eq!(st.sent, 7);
        let senders: Vec<_> = seen.iter().map(|&(j, seq, _)| (j, seq)).collect();
        assert_eq!(
            senders,
            [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2)]
        );
        // One message per ms from t0, on the microsecond clock the receivers use.
        for (k, &(_, _, sched)) in seen.iter().enumerate() {
            assert_eq!(sched, us_of(t0 + Duration::from_millis(k as u64)));
        }
        assert!(done >= t0 + Duration::from_millis(6));
        assert!(st.max_lag >= st.lag_sum / 7);
    }

    #[test]
    fn parses_texts() {
        let p = r#"["message:new",{"id":"1-0","room":"bench","from":"b-1","text":"77:3:12:123456","ts":1}]"#;
        assert_eq!(parse_text(p), Some((77, 3, 12, 123456)));
        let p = r#"["message:new",{"id":"1-0","room":"bench","from":"b-1","text":"77:3:12:5~~~~","ts":1}]"#;
        assert_eq!(parse_text(p), Some((77, 3, 12, 5)));
        assert_eq!(parse_text(r#"["message:new",{"text":"hello"}]"#), None);
        assert_eq!(parse_text(r#"["message:new",{"text":"1:2:3:4:5"}]"#), None);
        assert_eq!(parse_text(r#"["message:new",{}]"#), None);
    }

    #[test]
    fn handler_counts_unique_and_duplicates() {
        let sh = Arc::new(Shared {
            run: 9,
            senders: 2,
            messages: 4,
            delivered: (0..4).map(|_| AtomicU32::new(0)).collect(),
            state: (0..4).map(|_| AtomicU8::new(0)).collect(),
            dupes: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            other_events: AtomicU64::new(0),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        latency: histogram(),
                        first_us: 0,
                        last_us: 0,
                    })
                })
                .collect(),
        });
        let mut h = handler(sh.clone(), 0);
        let msg = |s: usize, q: usize| format!(r#"["message:new",{{"text":"9:{s}:{q}:1"}}]"#);
        h("message:new", &msg(1, 1)); // k = 3
        h("message:new", &msg(1, 1)); // duplicate
        h("message:new", &msg(0, 0)); // k = 0
        h("message:new", &msg(0, 5)); // out of range
        h("message:new", r#"["message:new",{"text":"8:0:0:1"}]"#); // other run
        h("room:presence", "[]");
        assert_eq!(sh.delivered[3].load(Ordering::Relaxed), 1);
        assert_eq!(sh.delivered[0].load(Ordering::Relaxed), 1);
        assert_eq!(sh.dupes.load(Ordering::Relaxed), 1);
        assert_eq!(sh.foreign.load(Ordering::Relaxed), 2);
        assert_eq!(sh.other_events.load(Ordering::Relaxed), 1);
        assert_eq!(sh.shards[0].lock().unwrap().latency.len(), 2);
    }
}
