//! room:presence coalescing against the real binary (`--presence-interval-ms 300`).

mod common;

use common::*;
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 300;

/// Collect `room:presence` pushes for `room` until `done(pushes)` or `max`, then
/// keep listening for `tail` more (to catch late extra pushes).
async fn presence_for(
    c: &mut confab_client::Client,
    room: &str,
    done: impl Fn(&[Value]) -> bool,
    max: Duration,
    tail: Duration,
) -> Vec<(Instant, Value)> {
    let mut got: Vec<(Instant, Value)> = Vec::new();
    let deadline = Instant::now() + max;
    let mut end: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = end.unwrap_or(deadline);
        if now >= until {
            break;
        }
        match c.next_event(until - now).await {
            Ok(ev) if ev.name == "room:presence" && ev.data["room"] == room => {
                got.push((Instant::now(), ev.data));
                let vals: Vec<Value> = got.iter().map(|(_, v)| v.clone()).collect();
                if end.is_none() && done(&vals) {
                    end = Some(Instant::now() + tail);
                }
            }
            Ok(_) => {}
            Err(_) => {
                if end.is_none() {
                    break;
                }
            }
        }
    }
    got
}

fn names(pushes: &[(Instant, Value)], field: &str) -> Vec<String> {
    let mut out: Vec<String> = pushes
        .iter()
        .flat_map(|(_, p)| p[field].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn presence_is_coalesced_for_30_joins_and_leaves() {
    bounded(async {
        let s = Server::start(&["--presence-interval-ms", &INTERVAL_MS.to_string()]);
        let room = uroom("pres");
        let mut obs = s.connect_session("observer").await;
        join(&obs, &room).await;
        // Let the observer's own join flush, then forget what came so far.
        tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 2 + 100)).await;
        obs.drain_events();

        let mut expected: Vec<String> = (0..30).map(|i| format!("pj{i:02}")).collect();
        expected.sort();
        let clients = join_all(expected.iter().map(|n| s.connect(n))).await;
        let payload = json!({ "room": room });
        let acks = join_all(
            clients
                .iter()
                .map(|c| c.emit_with_ack("room:join", &payload, WAIT)),
        )
        .await;
        for a in acks {
            ok(a.expect("join ack"));
        }
        let pushes = presence_for(
            &mut obs,
            &room,
            |ps| {
                let n: usize = ps
                    .iter()
                    .map(|p| p["joined"].as_array().unwrap().len())
                    .sum();
                n >= 30
            },
            Duration::from_secs(5),
            Duration::from_millis(INTERVAL_MS * 3),
        )
        .await;
        for (_, p) in &pushes {
            assert_eq!(
                keys(p),
                ["joined", "joinedIds", "left", "leftIds", "room"],
                "{p}"
            );
            // In open mode a user id is the name.
            assert_eq!(p["joined"], p["joinedIds"], "{p}");
        }
        assert!(
            !pushes.is_empty() && pushes.len() <= 3,
            "expected 1..=3 coalesced pushes, got {}: {:?}",
            pushes.len(),
            pushes.iter().map(|(_, p)| p).collect::<Vec<_>>()
        );
        assert_eq!(
            names(&pushes, "joined"),
            expected,
            "joined union, each once"
        );
        assert!(names(&pushes, "left").is_empty());
        for w in pushes.windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!(
                gap >= Duration::from_millis(INTERVAL_MS * 6 / 10),
                "two pushes {gap:?} apart"
            );
        }
        // The member list agrees.
        let j = join(&obs, &room).await;
        assert_eq!(j["memberCount"], 31);

        // All 30 disconnect: coalesced `left` pushes.
        obs.drain_events();
        join_all(clients.iter().map(|c| c.close())).await;
        let pushes = presence_for(
            &mut obs,
            &room,
            |ps| {
                let n: usize = ps.iter().map(|p| p["left"].as_array().unwrap().len()).sum();
                n >= 30
            },
            Duration::from_secs(5),
            Duration::from_millis(INTERVAL_MS * 3),
        )
        .await;
        assert!(
            !pushes.is_empty() && pushes.len() <= 3,
            "expected 1..=3 coalesced left pushes, got {}",
            pushes.len()
        );
        assert_eq!(names(&pushes, "left"), expected, "left union, each once");
        assert!(names(&pushes, "joined").is_empty());
    })
    .await;
}

#[tokio::test]
async fn presence_counts_users_not_connections() {
    bounded(async {
        let s = Server::start(&["--presence-interval-ms", &INTERVAL_MS.to_string()]);
        let room = uroom("tabs");
        let mut obs = s.connect_session("observer").await;
        join(&obs, &room).await;
        tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 2 + 100)).await;
        obs.drain_events();
        let t1 = s.connect_session("tabby").await;
        let t2 = s.connect_session("tabby").await;
        join(&t1, &room).await;
        let p = presence_for(&mut obs, &room, |ps| !ps.is_empty(), WAIT, Duration::ZERO).await;
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].1,
            json!({"room": room, "joined": ["tabby"], "left": [], "joinedIds": ["tabby"], "leftIds": []})
        );
        // Second tab joins, then leaves: no presence change.
        join(&t2, &room).await;
        ok(call(&t2, "room:leave", json!({ "room": room })).await);
        let quiet = obs
            .collect_for("room:presence", Duration::from_millis(INTERVAL_MS * 3))
            .await;
        assert!(
            quiet.iter().all(|p| p["room"] != room.as_str()),
            "second tab changed presence: {quiet:?}"
        );
        // Last tab leaves: one `left`.
        ok(call(&t1, "room:leave", json!({ "room": room })).await);
        let p = presence_for(&mut obs, &room, |ps| !ps.is_empty(), WAIT, Duration::ZERO).await;
        assert_eq!(
            p[0].1,
            json!({"room": room, "joined": [], "left": ["tabby"], "joinedIds": [], "leftIds": ["tabby"]})
        );
    })
    .await;
}
