//! The `confab` binary over websocket, driven by confab-client: the session event,
//! every client event with its ack shape, the pushes, room isolation and DM privacy.
//! Each test starts its own server (killed by PID when the guard drops).

mod common;

use common::*;
use confab_client::Error;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// No event named `name` (whose data satisfies `pred`) arrives within `period`.
async fn assert_no_event(
    c: &mut confab_client::Client,
    name: &str,
    pred: impl Fn(&Value) -> bool,
    period: Duration,
) {
    let got: Vec<Value> = c
        .collect_for(name, period)
        .await
        .into_iter()
        .filter(|v| pred(v))
        .collect();
    assert!(got.is_empty(), "unexpected {name} events: {got:?}");
}

#[tokio::test]
async fn session_event_and_handshake_refusals() {
    bounded(async {
        let s = Server::start(&[]);
        let mut a = s.connect("alice").await;
        assert!(!a.sid().is_empty());
        let ev = a.next_event(WAIT).await.expect("first event");
        assert_eq!(ev.name, "session", "the first push is the session");
        assert_eq!(
            ev.data,
            json!({"user": {"id": "alice", "name": "alice", "roles": []}, "rooms": ["general"], "unread": {}})
        );

        // NFC normalisation of the handshake name.
        let mut z = s.connect("Zoe\u{301}").await;
        let sess = z.wait_for("session", |_| true, WAIT).await.unwrap();
        assert_eq!(sess["user"]["name"], "Zoé");

        // Refusals arrive as connect_error "<code>: <explanation>".
        for bad in ["", "has space", "x".repeat(33).as_str(), "<b>"] {
            match s.builder(bad).connect().await {
                Err(Error::ConnectError(m)) => {
                    assert!(m.starts_with("invalid_name: "), "{bad:?} → {m}")
                }
                Err(e) => panic!("{bad:?}: expected connect_error, got {e}"),
                Ok(_) => panic!("{bad:?}: connected"),
            }
        }
        match s.builder("x").auth(None).connect().await {
            Err(Error::ConnectError(m)) => assert!(m.starts_with("invalid_name: "), "{m}"),
            other => panic!("no auth: {:?}", other.map(|_| ())),
        }
        // 32 characters is the longest valid name; letters of any script are fine.
        let long = "n".repeat(32);
        s.connect_session(&long).await;
        s.connect_session("Ünïcödé_名前.x-1").await;

        // Guest mode (the binary's default): a bare name is not an identity.
        let g = Server::start(&["--auth", "guest"]);
        match g.builder("alice").connect().await {
            Err(Error::ConnectError(m)) => assert!(m.starts_with("unauthorized: "), "{m}"),
            other => panic!("bare name in guest mode: {:?}", other.map(|_| ())),
        }
        match g
            .builder("alice")
            .auth(Some(json!({"token": "not.a.jwt"})))
            .connect()
            .await
        {
            Err(Error::ConnectError(m)) => assert!(m.starts_with("unauthorized: "), "{m}"),
            other => panic!("garbage token: {:?}", other.map(|_| ())),
        }
        a.close().await;
        assert!(a.is_closed());
    })
    .await;
}

#[tokio::test]
async fn room_join_leave_list() {
    bounded(async {
        let s = Server::start(&[]);
        let a = s.connect_session("alice").await;
        let b = s.connect_session("bob").await;
        let r = uroom("rj");

        let ack = join(&a, &r).await;
        assert_eq!(
            keys(&ack),
            [
                "hasMore",
                "memberCount",
                "memberIds",
                "members",
                "messages",
                "ok",
                "room"
            ]
        );
        assert_eq!(
            ack,
            json!({"ok": true, "room": r, "messages": [], "hasMore": false,
                   "members": ["alice"], "memberIds": ["alice"], "memberCount": 1})
        );
        let ack = join(&b, &r).await;
        assert_eq!(ack["members"], json!(["alice", "bob"]));
        assert_eq!(ack["memberCount"], 2);
        // Joining again is allowed and returns the same ack.
        assert_eq!(join(&b, &r).await, ack);
        // general is joined implicitly and can be joined explicitly.
        let g = join(&a, "general").await;
        assert_eq!(g["members"], json!(["alice", "bob"]));

        // room:list: {ok, rooms: [{room, members}]}, most members first then by name.
        let small = uroom("solo");
        join(&a, &small).await;
        let list = ok(call(&a, "room:list", json!({})).await);
        assert_eq!(keys(&list), ["ok", "rooms"]);
        let rooms = list["rooms"].as_array().unwrap();
        for e in rooms {
            assert_eq!(keys(e), ["members", "room"]);
        }
        let find = |name: &str| {
            rooms
                .iter()
                .find(|e| e["room"] == name)
                .unwrap_or_else(|| panic!("{name} missing from {list}"))
                .clone()
        };
        assert_eq!(find(&r)["members"], 2);
        assert_eq!(find("general")["members"], 2);
        assert_eq!(find(&small)["members"], 1);
        let order: Vec<(i64, String)> = rooms
            .iter()
            .map(|e| {
                (
                    -e["members"].as_i64().unwrap(),
                    e["room"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "room:list order");
        // A missing payload is accepted for room:list.
        ok(a.emit_no_data_with_ack("room:list", WAIT).await.unwrap());

        // room:leave
        let left = call(&b, "room:leave", json!({"room": r})).await;
        assert_eq!(left, json!({"ok": true, "room": r}));
        assert_err(
            &call(&b, "room:leave", json!({"room": r})).await,
            "not_member",
        );
        assert_err(
            &call(&b, "room:leave", json!({"room": "Bad Room"})).await,
            "invalid_room",
        );
        assert_err(&call(&b, "room:leave", json!({})).await, "bad_request");
        let list = ok(call(&b, "room:list", json!({})).await);
        let after = list["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["room"] == r.as_str())
            .cloned()
            .expect("room still listed (alice is in it)");
        assert_eq!(after["members"], 1);
        // A left room cannot be written to.
        assert_err(
            &call(&b, "message:send", json!({"room": r, "text": "x"})).await,
            "not_member",
        );
        // Room name rule.
        for bad in ["", "UP", "-x", "_x", "café", &"a".repeat(65)] {
            assert_err(
                &call(&a, "room:join", json!({ "room": bad })).await,
                "invalid_room",
            );
        }
        ok(call(&a, "room:join", json!({"room": "a".repeat(64)})).await);
    })
    .await;
}

#[tokio::test]
async fn message_send_fanout_and_history_paging() {
    bounded(async {
        let s = Server::start(&[]);
        let mut a = s.connect_session("alice").await;
        let mut b = s.connect_session("bob").await;
        let mut c = s.connect_session("carol").await;
        let mut d = s.connect_session("dave").await; // not in the room
        let r = uroom("msg");
        for x in [&a, &b, &c] {
            join(x, &r).await;
        }

        let before = now_ms();
        let ack = ok(call(
            &a,
            "message:send",
            json!({"room": r, "text": "hello <b>world</b>", "clientId": "c-1"}),
        )
        .await);
        assert_eq!(keys(&ack), ["message", "ok"]);
        let m = ack["message"].clone();
        assert_eq!(
            keys(&m),
            ["clientId", "from", "fromId", "id", "room", "text", "ts"]
        );
        assert_eq!(m["fromId"], "alice", "open mode: the id is the name");
        assert_eq!(m["room"], r.as_str());
        assert_eq!(m["from"], "alice");
        assert_eq!(m["text"], "hello <b>world</b>", "stored verbatim");
        assert_eq!(m["clientId"], "c-1");
        let ts = m["ts"].as_u64().unwrap();
        assert!(ts + 5_000 >= before && ts <= now_ms() + 5_000, "ts {ts}");
        id_pair(&m["id"]);
        // Every member, the sender included, gets the same object.
        for x in [&mut a, &mut b, &mut c] {
            let got = x
                .wait_for("message:new", |v| v["id"] == m["id"], WAIT)
                .await
                .expect("message:new");
            assert_eq!(got, m);
        }
        // Without clientId there is no clientId key.
        let m2 = send(&b, &r, "second").await;
        assert_eq!(keys(&m2), ["from", "fromId", "id", "room", "text", "ts"]);
        assert!(id_pair(&m2["id"]) > id_pair(&m["id"]));
        // dave is not a member: nothing for him.
        assert_no_event(
            &mut d,
            "message:new",
            |v| v["room"] == r.as_str(),
            Duration::from_millis(300),
        )
        .await;

        // History paging: 7 messages in all.
        let mut all = vec![m.clone(), m2.clone()];
        for i in 3..=7 {
            all.push(send(&c, &r, &format!("msg {i}")).await);
        }
        for w in all.windows(2) {
            assert!(id_pair(&w[0]["id"]) < id_pair(&w[1]["id"]), "ids increase");
        }
        let p1 = ok(call(&b, "message:history", json!({"room": r, "limit": 3})).await);
        assert_eq!(keys(&p1), ["hasMore", "messages", "ok", "room"]);
        assert_eq!(p1["room"], r.as_str());
        assert_eq!(p1["messages"], json!(all[4..7]));
        assert_eq!(p1["hasMore"], true);
        let p2 = ok(call(
            &b,
            "message:history",
            json!({"room": r, "limit": 3, "before": p1["messages"][0]["id"]}),
        )
        .await);
        assert_eq!(p2["messages"], json!(all[1..4]));
        assert_eq!(p2["hasMore"], true);
        let p3 = ok(call(
            &b,
            "message:history",
            json!({"room": r, "limit": 3, "before": p2["messages"][0]["id"]}),
        )
        .await);
        assert_eq!(p3["messages"], json!(all[0..1]));
        assert_eq!(p3["hasMore"], false);
        // Default page: everything (7 < 50), no more.
        let full = ok(call(&b, "message:history", json!({"room": r})).await);
        assert_eq!(full["messages"], json!(all));
        assert_eq!(full["hasMore"], false);

        // room:join returns the latest `limit` messages; `since` returns newer ones.
        let j = join(&d, &r).await;
        assert_eq!(j["messages"], json!(all));
        let j = ok(call(&d, "room:join", json!({"room": r, "limit": 2})).await);
        assert_eq!(j["messages"], json!(all[5..7]));
        assert_eq!(j["hasMore"], true);
        let j = ok(call(&d, "room:join", json!({"room": r, "since": all[3]["id"]})).await);
        assert_eq!(j["messages"], json!(all[4..7]));
        assert!(j.get("truncated").is_none() || j["truncated"] == false);
        assert_eq!(j["memberCount"], 4);

        // Errors.
        let e = uroom("other");
        assert_err(
            &call(&a, "message:history", json!({"room": e})).await,
            "not_member",
        );
        assert_err(
            &call(&a, "message:history", json!({"room": r, "limit": 0})).await,
            "bad_request",
        );
        assert_err(
            &call(&a, "message:history", json!({"room": r, "before": "1-2-3"})).await,
            "bad_request",
        );
        assert_err(
            &call(&a, "message:send", json!({"room": r, "text": "  \n "})).await,
            "invalid_text",
        );
        assert_err(
            &call(&a, "message:send", json!({"room": r, "text": "a\u{0}b"})).await,
            "invalid_text",
        );
        assert_err(
            &call(
                &a,
                "message:send",
                json!({"room": r, "text": "x".repeat(4001)}),
            )
            .await,
            "invalid_text",
        );
        assert_err(&call(&a, "message:send", json!("hi")).await, "bad_request");
        assert_err(
            &a.emit_no_data_with_ack("message:send", WAIT).await.unwrap(),
            "bad_request",
        );
        // A request without an ack that fails → `error` push naming the event.
        a.emit("message:send", &json!({"room": r, "text": ""}))
            .unwrap();
        let err = a.wait_for("error", |_| true, WAIT).await.unwrap();
        assert_eq!(keys(&err), ["error", "event", "ok"]);
        assert_eq!(err["ok"], false);
        assert_eq!(err["event"], "message:send");
        assert_eq!(err["error"]["code"], "invalid_text");
        // A request without an ack that succeeds is processed just the same.
        a.emit("message:send", &json!({"room": r, "text": "no ack"}))
            .unwrap();
        let got = b
            .wait_for("message:new", |v| v["text"] == "no ack", WAIT)
            .await
            .unwrap();
        assert_eq!(got["from"], "alice");
    })
    .await;
}

#[tokio::test]
async fn direct_messages() {
    bounded(async {
        let s = Server::start(&[]);
        let mut a = s.connect_session("alice").await;
        let mut b1 = s.connect_session("bob").await;
        let mut b2 = s.connect_session("bob").await; // second tab
        let mut c = s.connect_session("carol").await;

        let ack = ok(call(
            &a,
            "dm:send",
            json!({"to": "bob", "text": "psst", "clientId": "d1"}),
        )
        .await);
        assert_eq!(keys(&ack), ["message", "ok"]);
        let m1 = ack["message"].clone();
        assert_eq!(
            keys(&m1),
            ["clientId", "from", "fromId", "id", "text", "to", "ts"]
        );
        assert_eq!(
            (m1["from"].clone(), m1["to"].clone()),
            (json!("alice"), json!("bob"))
        );
        for x in [&mut a, &mut b1, &mut b2] {
            let got = x
                .wait_for("dm:new", |v| v["id"] == m1["id"], WAIT)
                .await
                .expect("dm:new");
            assert_eq!(got, m1);
        }
        let m2 = ok(call(&b2, "dm:send", json!({"to": "alice", "text": "hi back"})).await)
            ["message"]
            .clone();
        assert_eq!(keys(&m2), ["from", "fromId", "id", "text", "to", "ts"]);
        assert!(
            id_pair(&m2["id"]) > id_pair(&m1["id"]),
            "ids increase per conversation"
        );
        for x in [&mut a, &mut b1, &mut b2] {
            x.wait_for("dm:new", |v| v["id"] == m2["id"], WAIT)
                .await
                .expect("dm:new reply");
        }

        // dm:history, paged.
        let h = ok(call(&a, "dm:history", json!({"with": "bob"})).await);
        assert_eq!(keys(&h), ["hasMore", "messages", "ok", "with"]);
        assert_eq!(h["with"], "bob");
        assert_eq!(h["messages"], json!([m1, m2]));
        assert_eq!(h["hasMore"], false);
        let h = ok(call(&b1, "dm:history", json!({"with": "alice", "limit": 1})).await);
        assert_eq!(h["messages"], json!([m2]));
        assert_eq!(h["hasMore"], true);
        let h = ok(call(
            &b1,
            "dm:history",
            json!({"with": "alice", "limit": 1, "before": m2["id"]}),
        )
        .await);
        assert_eq!(h["messages"], json!([m1]));
        assert_eq!(h["hasMore"], false);

        // Privacy: carol sees none of it.
        let h = ok(call(&c, "dm:history", json!({"with": "alice"})).await);
        assert_eq!(h["messages"], json!([]));
        let h = ok(call(&c, "dm:history", json!({"with": "bob"})).await);
        assert_eq!(h["messages"], json!([]));
        assert_no_event(&mut c, "dm:new", |_| true, Duration::from_millis(300)).await;

        // Note to self: allowed.
        let own = ok(call(&c, "dm:send", json!({"to": "carol", "text": "note"})).await)["message"]
            .clone();
        assert_eq!(
            (own["from"].clone(), own["to"].clone()),
            (json!("carol"), json!("carol"))
        );
        let got = c.collect_for("dm:new", Duration::from_millis(400)).await;
        // One socket is both sender and recipient: one push.
        assert_eq!(got, vec![own.clone()], "note to self pushes");

        // Errors.
        assert_err(
            &call(&a, "dm:send", json!({"to": "nobody-here", "text": "x"})).await,
            "user_not_found",
        );
        assert_err(
            &call(&a, "dm:send", json!({"to": "bad name", "text": "x"})).await,
            "invalid_name",
        );
        assert_err(
            &call(&a, "dm:send", json!({"to": "bob", "text": ""})).await,
            "invalid_text",
        );
        assert_err(
            &call(&a, "dm:send", json!({"to": 5, "text": "x"})).await,
            "bad_request",
        );
        // `with` is a user id: any 1-128 visible characters (an id never seen has
        // an empty conversation); whitespace is not an id.
        assert_eq!(
            ok(call(&a, "dm:history", json!({"with": "<script>"})).await)["messages"],
            json!([])
        );
        assert_err(
            &call(&a, "dm:history", json!({"with": "a b"})).await,
            "invalid_name",
        );
        assert_err(
            &call(&a, "dm:history", json!({"with": "bob", "limit": 201})).await,
            "bad_request",
        );
        // A name that never connected is user_not_found; a known user who went
        // offline gets the DM in their inbox (unread in the next session).
        assert_err(
            &call(&a, "dm:send", json!({"to": "nobody", "text": "hi"})).await,
            "user_not_found",
        );
        drop(b1);
        b2.close().await;
        let ack = call(&a, "dm:send", json!({"to": "bob", "text": "gone?"})).await;
        assert_eq!(ack["ok"], true, "{ack}");
        let mut b3 = s.connect("bob").await;
        let sess = b3.wait_for("session", |_| true, WAIT).await.unwrap();
        // Bob never marked anything read: every DM alice sent him is unread.
        let hist = call(&b3, "dm:history", json!({"with": "alice", "limit": 200})).await;
        let from_alice = hist["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["from"] == "alice")
            .count();
        assert!(from_alice >= 1);
        assert_eq!(sess["unread"]["alice"], json!(from_alice), "{sess}");
    })
    .await;
}

#[tokio::test]
async fn typing_indicator_and_expiry() {
    bounded(async {
        let s = Server::start(&["--typing-timeout-ms", "500"]);
        let mut a = s.connect_session("alice").await;
        let mut a2 = s.connect_session("alice").await; // the typist's other tab
        let mut b = s.connect_session("bob").await;
        let mut c = s.connect_session("carol").await; // not in the room
        let r = uroom("ty");
        for x in [&a, &a2, &b] {
            join(x, &r).await;
        }
        let is = |v: &Value, on: bool| {
            v["room"] == r.as_str() && v["user"] == "alice" && v["typing"] == on
        };

        // typing true → others get it; expiry after ~500 ms without refresh.
        let ack = call(&a, "typing", json!({"room": r, "typing": true})).await;
        assert_eq!(ack, json!({"ok": true}));
        let t0 = Instant::now();
        let on = b.wait_for("typing", |v| is(v, true), WAIT).await.unwrap();
        assert_eq!(keys(&on), ["room", "typing", "user", "userId"]);
        let off = b.wait_for("typing", |v| is(v, false), WAIT).await.unwrap();
        let waited = t0.elapsed();
        assert_eq!(
            off,
            json!({"room": r, "user": "alice", "userId": "alice", "typing": false})
        );
        assert!(
            waited >= Duration::from_millis(350) && waited <= Duration::from_millis(3000),
            "expired after {waited:?} with --typing-timeout-ms 500"
        );

        // A refresh keeps it alive past the timeout.
        call(&a, "typing", json!({"room": r, "typing": true})).await;
        b.wait_for("typing", |v| is(v, true), WAIT).await.unwrap();
        let t1 = Instant::now();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ok(call(&a, "typing", json!({"room": r, "typing": true})).await);
        }
        // No expiry while refreshed (refresh pushes of `true` are allowed).
        let offs: Vec<Value> = b
            .drain_events()
            .into_iter()
            .filter(|e| e.name == "typing" && is(&e.data, false))
            .map(|e| e.data)
            .collect();
        assert!(offs.is_empty(), "expired while refreshed: {offs:?}");
        // Explicit stop.
        ok(call(&a, "typing", json!({"room": r, "typing": false})).await);
        b.wait_for("typing", |v| is(v, false), WAIT).await.unwrap();
        assert!(t1.elapsed() < Duration::from_secs(5));

        // The typist's own sockets and non-members never get typing pushes.
        let own: Vec<_> = a
            .drain_events()
            .into_iter()
            .filter(|e| e.name == "typing")
            .collect();
        assert!(own.is_empty(), "typist got its own typing: {own:?}");
        assert_no_event(&mut a2, "typing", |_| true, Duration::from_millis(10)).await;
        assert_no_event(&mut c, "typing", |_| true, Duration::from_millis(200)).await;

        // Errors.
        assert_err(
            &call(&b, "typing", json!({"room": uroom("nt"), "typing": true})).await,
            "not_member",
        );
        assert_err(
            &call(&b, "typing", json!({"room": r, "typing": "yes"})).await,
            "bad_request",
        );
        assert_err(
            &call(&b, "typing", json!({"room": "No", "typing": true})).await,
            "invalid_room",
        );
    })
    .await;
}

#[tokio::test]
async fn typing_ends_on_leave_and_disconnect() {
    bounded(async {
        // Default 5 s expiry: a stop within 3 s comes from the leave/disconnect.
        let s = Server::start(&[]);
        let a = s.connect_session("alice").await;
        let a2 = s.connect_session("alice").await;
        let mut b = s.connect_session("bob").await;
        let r = uroom("tl");
        for x in [&a, &a2, &b] {
            join(x, &r).await;
        }
        let is = |v: &Value, on: bool| {
            v["room"] == r.as_str() && v["user"] == "alice" && v["typing"] == on
        };
        let quick = Duration::from_secs(3);

        // Leaving the room ends typing.
        ok(call(&a, "typing", json!({"room": r, "typing": true})).await);
        b.wait_for("typing", |v| is(v, true), WAIT).await.unwrap();
        ok(call(&a, "room:leave", json!({"room": r})).await);
        b.wait_for("typing", |v| is(v, false), quick)
            .await
            .expect("typing false after room:leave");

        // Disconnecting ends typing (alice's first tab is still connected).
        ok(call(&a2, "typing", json!({"room": r, "typing": true})).await);
        b.wait_for("typing", |v| is(v, true), WAIT).await.unwrap();
        a2.close().await;
        b.wait_for("typing", |v| is(v, false), quick)
            .await
            .expect("typing false after disconnect");
    })
    .await;
}

#[tokio::test]
async fn users_list() {
    bounded(async {
        let s = Server::start(&[]);
        let a1 = s.connect_session("alice").await;
        let a2 = s.connect_session("alice").await;
        let b = s.connect_session("bob").await;
        let c = s.connect_session("carol").await;
        let r = uroom("ul");
        join(&a1, &r).await;
        join(&a2, &r).await;
        join(&b, &r).await;

        let l = ok(call(&c, "users:list", json!({"room": r})).await);
        assert_eq!(keys(&l), ["ok", "total", "users"]);
        assert_eq!(
            l,
            json!({"ok": true, "total": 2, "users": [
                {"id": "alice", "name": "alice", "connections": 2},
                {"id": "bob", "name": "bob", "connections": 1}
            ]})
        );
        let all = ok(call(&c, "users:list", json!({})).await);
        assert_eq!(
            all,
            json!({"ok": true, "total": 3, "users": [
                {"id": "alice", "name": "alice", "connections": 2},
                {"id": "bob", "name": "bob", "connections": 1},
                {"id": "carol", "name": "carol", "connections": 1}
            ]})
        );
        // A missing payload is accepted.
        assert_eq!(
            c.emit_no_data_with_ack("users:list", WAIT).await.unwrap(),
            all
        );
        // One tab leaves the room: the count drops, the user stays.
        ok(call(&a2, "room:leave", json!({"room": r})).await);
        let l = ok(call(&c, "users:list", json!({"room": r})).await);
        assert_eq!(
            l["users"][0],
            json!({"id": "alice", "name": "alice", "connections": 1})
        );
        // An empty room lists nobody.
        let l = ok(call(&c, "users:list", json!({"room": uroom("empty")})).await);
        assert_eq!(l, json!({"ok": true, "users": [], "total": 0}));
        assert_err(
            &call(&c, "users:list", json!({"room": 5})).await,
            "bad_request",
        );
        assert_err(
            &call(&c, "users:list", json!({"room": "Bad Room"})).await,
            "invalid_room",
        );
    })
    .await;
}

#[tokio::test]
async fn room_isolation_and_dm_privacy_three_users() {
    bounded(async {
        let s = Server::start(&[]);
        let mut a = s.connect_session("alice").await;
        let mut b = s.connect_session("bob").await;
        let mut c = s.connect_session("carol").await;
        let x = uroom("iso-x");
        let y = uroom("iso-y");
        join(&a, &x).await;
        join(&b, &x).await;
        join(&c, &y).await;

        let mx = send(&a, &x, "for x only").await;
        b.wait_for("message:new", |v| v["id"] == mx["id"], WAIT)
            .await
            .unwrap();
        let my = send(&c, &y, "for y only").await;
        c.wait_for("message:new", |v| v["id"] == my["id"], WAIT)
            .await
            .unwrap();
        let dm = ok(call(&a, "dm:send", json!({"to": "bob", "text": "secret"})).await)["message"]
            .clone();
        b.wait_for("dm:new", |v| v["id"] == dm["id"], WAIT)
            .await
            .unwrap();

        // carol: nothing from x, no DM.
        let seen = c
            .collect_for("message:new", Duration::from_millis(400))
            .await;
        assert!(seen.iter().all(|m| m["room"] != x.as_str()), "{seen:?}");
        assert_no_event(&mut c, "dm:new", |_| true, Duration::from_millis(100)).await;
        assert_err(
            &call(&c, "message:history", json!({"room": x})).await,
            "not_member",
        );
        assert_err(
            &call(&c, "message:send", json!({"room": x, "text": "intrude"})).await,
            "not_member",
        );
        assert_err(
            &call(&c, "typing", json!({"room": x, "typing": true})).await,
            "not_member",
        );
        for with in ["alice", "bob"] {
            let h = ok(call(&c, "dm:history", json!({ "with": with })).await);
            assert_eq!(h["messages"], json!([]), "carol's history with {with}");
        }
        // alice and bob: nothing from y.
        for u in [&mut a, &mut b] {
            assert_no_event(
                u,
                "message:new",
                |v| v["room"] == y.as_str(),
                Duration::from_millis(150),
            )
            .await;
        }
        // The DM is in exactly alice's and bob's conversation.
        let h = ok(call(&b, "dm:history", json!({"with": "alice"})).await);
        assert_eq!(h["messages"], json!([dm]));
        // x's history has only x's message.
        let h = ok(call(&b, "message:history", json!({"room": x})).await);
        assert_eq!(h["messages"], json!([mx]));
    })
    .await;
}
