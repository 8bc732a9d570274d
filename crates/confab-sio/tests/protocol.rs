//! Engine.IO v4 and Socket.IO v5 as a client sees them: the servers run in-process
//! on 127.0.0.1 and every test drives them over real sockets (raw HTTP/1.1 for
//! long-polling, a websocket client for the rest). Written from the protocol
//! documents; every network wait is bounded (see `support::within`).

mod support;

use base64::Engine as _;
use confab_sio::{Config, DisconnectReason, Frame, SendError, Socket};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;

const EIO: &str = "/engine.io/";

fn polling(sid: &str) -> String {
    format!("{EIO}?EIO=4&transport=polling&sid={sid}")
}

// ---- Engine.IO: handshake and HTTP errors ---------------------------------------

#[tokio::test]
async fn polling_handshake_fields() {
    let config = Config {
        ping_interval: Duration::from_millis(25_000),
        ping_timeout: Duration::from_millis(20_000),
        max_payload: 123_456,
        ..quiet()
    };
    let srv = TestServer::start(config).await;
    let res = get(srv.addr, &format!("{EIO}?EIO=4&transport=polling")).await;
    assert_eq!(res.status, 200);
    assert!(res
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/plain")));
    let open: Value = serde_json::from_str(res.text().strip_prefix('0').unwrap()).unwrap();
    let sid = sid_of(&open);
    assert!(sid.len() >= 16, "sid {sid:?} too short to be unguessable");
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], 25_000);
    assert_eq!(open["pingTimeout"], 20_000);
    assert_eq!(open["maxPayload"], 123_456);
    // Sessions are distinct.
    let other = polling_open(srv.addr, EIO).await;
    assert_ne!(sid_of(&other), sid);
    // The trailing slash is optional.
    let res = get(srv.addr, "/engine.io?EIO=4&transport=polling").await;
    assert_eq!(res.status, 200);
    assert!(res.text().starts_with("0{"));
}

fn assert_error(res: &HttpResponse, status: u16, code: u64) -> String {
    assert_eq!(res.status, status, "body: {}", res.text());
    let v = res.json();
    assert_eq!(v["code"], code, "body: {v}");
    v["message"].as_str().expect("message").to_owned()
}

#[tokio::test]
async fn missing_or_unsupported_eio_is_refused_with_code_5() {
    let srv = TestServer::start(quiet()).await;
    for target in [
        "/engine.io/?transport=polling",
        "/engine.io/?EIO=5&transport=polling",
        "/engine.io/?EIO=abc&transport=polling",
        "/engine.io/?EIO=&transport=polling",
        "/socket.io/?transport=websocket",
    ] {
        let res = get(srv.addr, target).await;
        assert_error(&res, 400, 5);
    }
    // EIO=3 (socket.io-client 2.x) gets a message that says what to do.
    let res = get(srv.addr, "/socket.io/?EIO=3&transport=polling").await;
    let message = assert_error(&res, 400, 5);
    assert!(message.contains("EIO=3"), "{message}");
    assert!(message.contains("socket.io-client 3"), "{message}");
    assert_eq!(
        srv.engine.session_count() + srv.socket_io.session_count(),
        0
    );
}

#[tokio::test]
async fn unknown_transport_is_code_0() {
    let srv = TestServer::start(quiet()).await;
    for target in [
        "/engine.io/?EIO=4&transport=flash",
        "/engine.io/?EIO=4",
        "/engine.io/?EIO=4&transport=",
    ] {
        assert_error(&get(srv.addr, target).await, 400, 0);
    }
    // Polling switched off: the polling transport is unknown, websocket still works.
    let srv = TestServer::start(Config {
        allow_polling: false,
        ..quiet()
    })
    .await;
    assert_error(
        &get(srv.addr, "/engine.io/?EIO=4&transport=polling").await,
        400,
        0,
    );
    let (_ws, open) = ws_open(srv.addr, EIO).await;
    assert_eq!(open["upgrades"], json!([]));
}

#[tokio::test]
async fn unknown_sid_is_code_1() {
    let srv = TestServer::start(quiet()).await;
    assert_error(&get(srv.addr, &polling("nope")).await, 400, 1);
    assert_error(&post(srv.addr, &polling("nope"), b"4hello").await, 400, 1);
    // A websocket upgrade for an unknown session is refused before the upgrade.
    let url = format!("ws://{}{EIO}?EIO=4&transport=websocket&sid=nope", srv.addr);
    match within("ws connect", tokio_tungstenite::connect_async(url.as_str())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 400);
            let v: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
            assert_eq!(v["code"], 1);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("websocket for an unknown sid was accepted"),
    }
}

#[tokio::test]
async fn handshake_by_post_or_put_is_code_2() {
    let srv = TestServer::start(quiet()).await;
    for method in ["POST", "PUT"] {
        let res = http(srv.addr, method, "/engine.io/?EIO=4&transport=polling", b"").await;
        assert_error(&res, 400, 2);
    }
    assert_eq!(srv.engine.session_count(), 0);
}

#[tokio::test]
async fn origin_check_and_cors() {
    let server = confab_sio::Server::builder(Config {
        cors: true,
        ..quiet()
    })
    .origin_check(|o, _host| o == "https://ok.example")
    .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app: axum::Router = server.router("/socket.io");
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let open = "/socket.io/?EIO=4&transport=polling";

    let res = http_with(
        addr,
        "GET",
        open,
        &[("Origin", "https://evil.example")],
        b"",
    )
    .await;
    assert_error(&res, 403, 4);
    assert_eq!(server.session_count(), 0);

    let res = http_with(addr, "GET", open, &[("Origin", "https://ok.example")], b"").await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://ok.example")
    );
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));

    let preflight = [
        ("Origin", "https://ok.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let res = http_with(addr, "OPTIONS", open, &preflight, b"").await;
    assert_eq!(res.status, 204);
    assert!(res
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("POST")));
    assert_eq!(
        res.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://ok.example")
    );

    // A client without an Origin (not a browser) is not checked.
    assert_eq!(get(addr, open).await.status, 200);
    server.close_all();
    serving.abort();
}

// ---- Engine.IO: long-polling ----------------------------------------------------

#[tokio::test]
async fn polling_post_and_get_round_trip() {
    let srv = TestServer::start(quiet()).await;
    let sid = sid_of(&polling_open(srv.addr, EIO).await);
    // Three packets in one payload, the last one binary (base64).
    let res = post(
        srv.addr,
        &polling(&sid),
        b"4hello\x1e4w\xc3\xb6rld \xe2\x82\xac\x1ebAQIDBA==",
    )
    .await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    // The echo queued all three before the POST was answered; one GET takes them.
    let res = get(srv.addr, &polling(&sid)).await;
    assert_eq!(res.status, 200);
    let parts: Vec<&str> = res.text().split('\x1e').collect();
    assert_eq!(parts, ["4hello", "4wörld €", "bAQIDBA=="]);
    let binary = base64::engine::general_purpose::STANDARD
        .decode(&parts[2][1..])
        .unwrap();
    assert_eq!(binary, [1, 2, 3, 4]);
    // A GET with nothing queued waits until something is.
    let sid2 = sid.clone();
    let addr = srv.addr;
    let pending = tokio::spawn(async move { get(addr, &polling(&sid2)).await });
    let res = post(srv.addr, &polling(&sid), b"4later").await;
    assert_eq!(res.status, 200);
    let res = within("pending GET", pending).await.unwrap();
    assert_eq!((res.status, res.text()), (200, "4later"));
    // The client's close: the session is gone.
    assert_eq!(post(srv.addr, &polling(&sid), b"1").await.status, 200);
    assert_error(&get(srv.addr, &polling(&sid)).await, 400, 1);
}

#[tokio::test]
async fn invalid_post_closes_the_session() {
    let srv = TestServer::start(quiet()).await;
    for bad in [
        &b"4ok\x1eabc"[..],
        b"",
        b"4a\x1e",
        b"bnot base64!",
        b"0{}",
        b"4\xff\xfe",
    ] {
        let sid = sid_of(&polling_open(srv.addr, EIO).await);
        let res = post(srv.addr, &polling(&sid), bad).await;
        assert_error(&res, 400, 3);
        assert_error(&get(srv.addr, &polling(&sid)).await, 400, 1);
    }
    assert_eq!(srv.engine.session_count(), 0);
}

#[tokio::test]
async fn a_second_concurrent_get_closes_the_session() {
    let srv = TestServer::start(quiet()).await;
    let sid = sid_of(&polling_open(srv.addr, EIO).await);
    let addr = srv.addr;
    let (s1, s2) = (sid.clone(), sid.clone());
    let first = tokio::spawn(async move { get(addr, &polling(&s1)).await });
    // Nothing is queued, so the first GET stays parked at the server: give it the
    // head start it needs to arrive first. (The assertions below hold in either
    // arrival order; only which response is which depends on it.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = tokio::spawn(async move { get(addr, &polling(&s2)).await });
    let first = within("first GET", first).await.unwrap();
    let second = within("second GET", second).await.unwrap();
    let (parked, refused) = if first.status == 200 {
        (first, second)
    } else {
        (second, first)
    };
    // The parked GET learns the session closed; the overlapping one is refused.
    assert_eq!((parked.status, parked.text()), (200, "1"));
    assert_error(&refused, 400, 3);
    assert_error(&get(srv.addr, &polling(&sid)).await, 400, 1);
}

#[tokio::test]
async fn a_second_concurrent_post_closes_the_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start(quiet()).await;
    let sid = sid_of(&polling_open(srv.addr, EIO).await);
    // The first POST announces its body but holds it back. With `Expect:
    // 100-continue` the server says when it starts reading the body: from then on
    // this POST is active.
    let mut first = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n",
        polling(&sid),
        srv.addr
    );
    first.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 25];
    within("100 Continue", first.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    // A second POST meanwhile: refused, and the session is closed.
    assert_error(&post(srv.addr, &polling(&sid), b"4second").await, 400, 3);
    assert_error(&get(srv.addr, &polling(&sid)).await, 400, 1);
    // The first one still gets an answer once its body is in.
    first.write_all(b"4first").await.unwrap();
    let mut rest = Vec::new();
    within("first POST", first.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(
        rest.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(srv.engine.session_count(), 0);
}

#[tokio::test]
async fn a_post_over_max_payload_is_413_and_closes_the_session() {
    let srv = TestServer::start(Config {
        max_payload: 1000,
        ..quiet()
    })
    .await;
    let open = polling_open(srv.addr, EIO).await;
    assert_eq!(open["maxPayload"], 1000);
    let sid = sid_of(&open);
    // Exactly maxPayload is accepted.
    let body = format!("4{}", "a".repeat(999));
    assert_eq!(
        post(srv.addr, &polling(&sid), body.as_bytes()).await.status,
        200
    );
    assert_eq!(get(srv.addr, &polling(&sid)).await.text(), body);
    // One byte more is not.
    let body = format!("4{}", "a".repeat(1000));
    let res = post(srv.addr, &polling(&sid), body.as_bytes()).await;
    assert_eq!(res.status, 413, "{}", res.text());
    assert_error(&get(srv.addr, &polling(&sid)).await, 400, 1);
}

#[tokio::test]
async fn polling_heartbeat_and_ping_timeout() {
    let srv = TestServer::start(Config {
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(400),
        ..quiet()
    })
    .await;
    let sid = sid_of(&polling_open(srv.addr, EIO).await);
    // Three pings answered: the session outlives several ping timeouts.
    for _ in 0..3 {
        let res = get(srv.addr, &polling(&sid)).await;
        assert_eq!((res.status, res.text()), (200, "2"));
        assert_eq!(post(srv.addr, &polling(&sid), b"3").await.status, 200);
    }
    // The next ping goes unanswered: the parked GET ends with a close.
    let started = Instant::now();
    assert_eq!(get(srv.addr, &polling(&sid)).await.text(), "2");
    let res = get(srv.addr, &polling(&sid)).await;
    assert_eq!((res.status, res.text()), (200, "1"));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_error(&get(srv.addr, &polling(&sid)).await, 400, 1);
}

// ---- Engine.IO: websocket -------------------------------------------------------

#[tokio::test]
async fn websocket_open_and_echo() {
    let srv = TestServer::start(Config {
        max_payload: 4321,
        ..quiet()
    })
    .await;
    let (mut ws, open) = ws_open(srv.addr, EIO).await;
    assert!(sid_of(&open).len() >= 16);
    assert_eq!(open["upgrades"], json!([]));
    assert_eq!(open["pingInterval"], 60_000);
    assert_eq!(open["pingTimeout"], 60_000);
    assert_eq!(open["maxPayload"], 4321);
    // One packet per frame; binary as is.
    send_text(&mut ws, "4hello €").await;
    send_binary(&mut ws, &[1, 2, 3, 4]).await;
    assert_eq!(next_text(&mut ws).await, "4hello €");
    assert_eq!(next_binary(&mut ws).await, [1, 2, 3, 4]);
    // Not an Engine.IO packet: closed.
    send_text(&mut ws, "7").await;
    expect_closed(&mut ws).await;
}

#[tokio::test]
async fn websocket_heartbeat_and_ping_timeout() {
    let srv = TestServer::start(Config {
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(400),
        ..quiet()
    })
    .await;
    let (mut ws, open) = ws_open(srv.addr, EIO).await;
    assert_eq!(open["pingInterval"], 100);
    assert_eq!(open["pingTimeout"], 400);
    for _ in 0..5 {
        assert_eq!(next_text(&mut ws).await, "2");
        send_text(&mut ws, "3").await;
    }
    // Still open after five pings: a message is echoed.
    send_text(&mut ws, "4alive").await;
    let mut got = next_text(&mut ws).await;
    if got == "2" {
        send_text(&mut ws, "3").await;
        got = next_text(&mut ws).await;
    }
    assert_eq!(got, "4alive");
    // Stop answering: the server closes after pingTimeout.
    let started = Instant::now();
    expect_closed(&mut ws).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(srv.engine.session_count(), 0);
}

#[tokio::test]
async fn websocket_message_over_max_payload_closes_the_session() {
    let srv = TestServer::start(Config {
        max_payload: 1000,
        ..quiet()
    })
    .await;
    let (mut ws, _) = ws_open(srv.addr, EIO).await;
    let fits = format!("4{}", "a".repeat(999));
    send_text(&mut ws, &fits).await;
    assert_eq!(next_text(&mut ws).await, fits);
    send_text(&mut ws, &format!("4{}", "a".repeat(1000))).await;
    expect_closed(&mut ws).await;
    assert_eq!(srv.engine.session_count(), 0);
}

#[tokio::test]
async fn websocket_client_close_packet_ends_the_session() {
    let srv = TestServer::start(quiet()).await;
    let (mut ws, _) = ws_open(srv.addr, EIO).await;
    let (_other, _) = ws_open(srv.addr, EIO).await;
    assert_eq!(srv.engine.session_count(), 2);
    send_text(&mut ws, "1").await;
    expect_closed(&mut ws).await;
    assert_eq!(srv.engine.session_count(), 1);
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let srv = TestServer::start(quiet()).await;
    let sid = sid_of(&polling_open(srv.addr, EIO).await);
    // Something sent over polling before the upgrade arrives over polling.
    assert_eq!(post(srv.addr, &polling(&sid), b"4before").await.status, 200);
    assert_eq!(get(srv.addr, &polling(&sid)).await.text(), "4before");
    // A GET is parked when the websocket probes.
    let addr = srv.addr;
    let s = sid.clone();
    let parked = tokio::spawn(async move { get(addr, &polling(&s)).await });
    let mut ws = ws_connect(
        srv.addr,
        &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    send_text(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await, "3probe");
    // The parked GET is ended with a noop.
    let res = within("parked GET", parked).await.unwrap();
    assert_eq!((res.status, res.text()), (200, "6"));
    send_text(&mut ws, "5").await;
    // The websocket carries the session now (the echo also proves `5` was applied).
    send_text(&mut ws, "4after").await;
    assert_eq!(next_text(&mut ws).await, "4after");
    // Polling with the old sid is refused.
    assert_error(&get(srv.addr, &polling(&sid)).await, 400, 3);
    assert_error(&post(srv.addr, &polling(&sid), b"4x").await, 400, 3);
    // A second websocket for the same session is closed at once...
    let mut second = ws_connect(
        srv.addr,
        &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    expect_closed(&mut second).await;
    // ...and the first goes on undisturbed.
    send_text(&mut ws, "4still").await;
    assert_eq!(next_text(&mut ws).await, "4still");
    assert_eq!(srv.engine.session_count(), 1);
}

#[tokio::test]
async fn a_failed_probe_leaves_the_session_on_polling() {
    let srv = TestServer::start(quiet()).await;
    let sid = sid_of(&polling_open(srv.addr, EIO).await);
    let mut ws = ws_connect(
        srv.addr,
        &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
    )
    .await;
    // Not a probe: the websocket is dropped, the session stays on polling.
    send_text(&mut ws, "4hello").await;
    expect_closed(&mut ws).await;
    assert_eq!(post(srv.addr, &polling(&sid), b"4still").await.status, 200);
    assert_eq!(get(srv.addr, &polling(&sid)).await.text(), "4still");
}

// ---- Socket.IO: namespaces ------------------------------------------------------

#[tokio::test]
async fn connect_to_main_and_custom_namespaces_with_auth() {
    let mut srv = TestServer::start(quiet()).await;
    let (mut ws, open) = ws_open(srv.addr, "/socket.io/").await;
    let engine_sid = sid_of(&open);
    send_text(&mut ws, "40").await;
    let (head, body) = split_json(&next_text(&mut ws).await);
    assert_eq!(head, "40");
    let main_sid = body["sid"].as_str().unwrap().to_owned();
    assert_ne!(main_sid, engine_sid, "the socket id is not the session id");
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);

    send_text(&mut ws, r#"40/custom,{"token":"123"}"#).await;
    let (head, body) = split_json(&next_text(&mut ws).await);
    assert_eq!(head, "40/custom,");
    let custom_sid = body["sid"].as_str().unwrap();
    assert_ne!(custom_sid, main_sid);
    let (head, auth) = split_json(&next_text(&mut ws).await);
    assert_eq!(head, "42/custom,");
    assert_eq!(auth, json!(["auth", {"token": "123"}]));

    // Both sockets share the one engine session.
    assert_eq!(srv.socket_io.session_count(), 1);
    for ns in ["/", "/custom"] {
        match srv.next_seen().await {
            Seen::Connected(s) => assert_eq!(s.ns(), ns),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn connect_over_polling() {
    let srv = TestServer::start(quiet()).await;
    let target = |sid: &str| format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let sid = sid_of(&polling_open(srv.addr, "/socket.io/").await);
    assert_eq!(
        post(srv.addr, &target(&sid), br#"40{"k":"v"}"#)
            .await
            .text(),
        "ok"
    );
    // The ack and the `auth` event may come in one payload or two.
    let mut parts = Vec::new();
    for _ in 0..2 {
        let res = get(srv.addr, &target(&sid)).await;
        assert_eq!(res.status, 200);
        parts.extend(res.text().split('\x1e').map(str::to_owned));
        if parts.len() >= 2 {
            break;
        }
    }
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert!(parts[0].starts_with(r#"40{"sid":""#), "{parts:?}");
    assert_eq!(parts[1], r#"42["auth",{"k":"v"}]"#);
    // Two events in one POST, echoed in order.
    let body = b"42[\"message\",1]\x1e42[\"message\",2]";
    assert_eq!(post(srv.addr, &target(&sid), body).await.text(), "ok");
    assert_eq!(
        get(srv.addr, &target(&sid)).await.text(),
        "42[\"message-back\",1]\x1e42[\"message-back\",2]"
    );
}

#[tokio::test]
async fn unknown_namespace_is_a_connect_error() {
    let srv = TestServer::start(quiet()).await;
    let (mut ws, _) = ws_open(srv.addr, "/socket.io/").await;
    send_text(&mut ws, "40/random,").await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    // The session stays open: `/` can still be joined.
    send_text(&mut ws, "40").await;
    assert!(next_text(&mut ws).await.starts_with("40{"));
}

#[tokio::test]
async fn a_refusing_namespace_sends_message_and_data() {
    let mut srv = TestServer::start(quiet()).await;
    let (mut ws, _) = ws_open(srv.addr, "/socket.io/").await;
    send_text(&mut ws, r#"40/private,{"token":"wrong"}"#).await;
    let (head, body) = split_json(&next_text(&mut ws).await);
    assert_eq!(head, "44/private,");
    assert_eq!(
        body,
        json!({"message": "Not authorized", "data": {"reason": "token required"}})
    );
    // With the right token the same session is let in.
    send_text(&mut ws, r#"40/private,{"token":"secret"}"#).await;
    assert!(next_text(&mut ws).await.starts_with("40/private,{\"sid\":"));
    match srv.next_seen().await {
        Seen::Connected(s) => assert_eq!(s.ns(), "/private"),
        other => panic!("{other:?}"),
    }
}

// ---- Socket.IO: events and acks -------------------------------------------------

#[tokio::test]
async fn event_and_ack_echo() {
    let srv = TestServer::start(quiet()).await;
    let mut ws = sio_client(srv.addr).await;
    send_text(&mut ws, r#"42["message",1,"2",{"3":[4,null,true]}]"#).await;
    let (head, body) = split_json(&next_text(&mut ws).await);
    assert_eq!(head, "42");
    assert_eq!(
        body,
        json!(["message-back", 1, "2", {"3": [4, null, true]}])
    );
    send_text(&mut ws, r#"42456["message-with-ack",1,"2",{"3":[]}]"#).await;
    let (head, body) = split_json(&next_text(&mut ws).await);
    assert_eq!(head, "43456");
    assert_eq!(body, json!([1, "2", {"3": []}]));
    // An ack with no arguments.
    send_text(&mut ws, r#"427["message-with-ack"]"#).await;
    assert_eq!(next_text(&mut ws).await, "437[]");
}

#[tokio::test]
async fn binary_event_and_binary_ack_with_two_attachments() {
    let srv = TestServer::start(quiet()).await;
    let mut ws = sio_client(srv.addr).await;
    let ph = |n: u64| json!({"_placeholder": true, "num": n});

    send_text(
        &mut ws,
        r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    send_binary(&mut ws, &[1, 2]).await;
    send_binary(&mut ws, &[3, 4, 5]).await;
    let (head, body) = split_json(&next_text(&mut ws).await);
    assert_eq!(head, "452-");
    assert_eq!(body, json!(["message-back", ph(0), ph(1)]));
    assert_eq!(next_binary(&mut ws).await, [1, 2]);
    assert_eq!(next_binary(&mut ws).await, [3, 4, 5]);

    send_text(
        &mut ws,
        r#"452-15["message-with-ack","x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    send_binary(&mut ws, &[6]).await;
    send_binary(&mut ws, &[]).await;
    let (head, body) = split_json(&next_text(&mut ws).await);
    assert_eq!(head, "462-15");
    assert_eq!(body, json!(["x", ph(0), ph(1)]));
    assert_eq!(next_binary(&mut ws).await, [6]);
    assert_eq!(next_binary(&mut ws).await, Vec::<u8>::new());

    // Still in step after the binary packets.
    send_text(&mut ws, r#"42["message","done"]"#).await;
    assert_eq!(next_text(&mut ws).await, r#"42["message-back","done"]"#);
}

#[tokio::test]
async fn binary_attachments_over_polling() {
    let srv = TestServer::start(quiet()).await;
    let target = |sid: &str| format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let sid = sid_of(&polling_open(srv.addr, "/socket.io/").await);
    post(srv.addr, &target(&sid), b"40").await;
    let mut parts = Vec::new();
    for _ in 0..2 {
        let res = get(srv.addr, &target(&sid)).await;
        parts.extend(res.text().split('\x1e').map(str::to_owned));
        if parts.len() >= 2 {
            break;
        }
    }
    assert_eq!(parts.len(), 2, "connect ack and auth event: {parts:?}");
    let body = b"451-[\"message\",{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA==";
    assert_eq!(post(srv.addr, &target(&sid), body).await.text(), "ok");
    let res = get(srv.addr, &target(&sid)).await;
    let parts: Vec<&str> = res.text().split('\x1e').collect();
    assert_eq!(parts.len(), 2, "{parts:?}");
    let (head, json) = split_json(parts[0]);
    assert_eq!(head, "451-");
    assert_eq!(
        json,
        json!(["message-back", {"_placeholder": true, "num": 0}])
    );
    assert_eq!(parts[1], "bAQIDBA==");
}

#[tokio::test]
async fn malformed_packets_close_only_their_connection() {
    let srv = TestServer::start(quiet()).await;
    let mut healthy = sio_client(srv.addr).await;
    for bad in [
        "4abc",
        "42{}",
        r#"42abc["message",1]"#,
        "42",
        r#"42["message""#,
        "42[1]",
        r#"43["no id"]"#,
        r#"44{"message":"x"}"#,
        r#"45-["message"]"#,
        r#"451-["message",{"_placeholder":true,"num":0}]"#, // then text, not binary
    ] {
        let mut ws = sio_client(srv.addr).await;
        send_text(&mut ws, bad).await;
        if bad.starts_with("451-") {
            send_text(&mut ws, r#"42["message"]"#).await;
        }
        expect_closed(&mut ws).await;
        send_text(&mut healthy, &format!(r#"42["message",{}]"#, json!(bad))).await;
        let (_, body) = split_json(&next_text(&mut healthy).await);
        assert_eq!(body, json!(["message-back", bad]));
    }
    // A binary message nobody announced is as bad.
    let mut ws = sio_client(srv.addr).await;
    send_binary(&mut ws, &[1]).await;
    expect_closed(&mut ws).await;
    assert_eq!(srv.socket_io.session_count(), 1);
}

#[tokio::test]
async fn packets_before_connect_close_the_connection() {
    let srv = TestServer::start(quiet()).await;
    // "If the server does not receive a CONNECT packet first, then it MUST close
    // the connection immediately."
    for first in [r#"42["message",1]"#, r#"431[]"#] {
        let (mut ws, _) = ws_open(srv.addr, "/socket.io/").await;
        send_text(&mut ws, first).await;
        expect_closed(&mut ws).await;
    }
    assert_eq!(srv.socket_io.session_count(), 0);
}

#[tokio::test]
async fn a_connect_payload_that_is_not_an_object_reaches_the_namespace_as_null() {
    let srv = TestServer::start(quiet()).await;
    let (mut ws, _) = ws_open(srv.addr, "/socket.io/").await;
    // The guarded namespace sees no token in a `null` auth and refuses.
    send_text(&mut ws, "40/private,[1]").await;
    let (head, body) = split_json(&next_text(&mut ws).await);
    assert_eq!(head, "44/private,");
    assert_eq!(body["message"], "Not authorized");
    // `/` takes anyone; its handler echoes the auth it was given.
    send_text(&mut ws, r#"40"text""#).await;
    assert!(next_text(&mut ws).await.starts_with("40{"));
    assert_eq!(next_text(&mut ws).await, r#"42["auth",null]"#);
}

#[tokio::test]
async fn server_side_closes_are_announced_with_a_close_packet() {
    let srv = TestServer::start(quiet()).await;
    // A protocol violation.
    let mut ws = sio_client(srv.addr).await;
    send_text(&mut ws, "42{}").await;
    assert_eq!(next(&mut ws).await, Got::Text("1".into()));
    assert_eq!(next(&mut ws).await, Got::Closed);
    // The server shutting down.
    let mut ws = sio_client(srv.addr).await;
    srv.socket_io.close_all();
    assert_eq!(srv.socket_io.session_count(), 0);
    assert_eq!(next(&mut ws).await, Got::Text("1".into()));
    assert_eq!(next(&mut ws).await, Got::Closed);
    // New sessions are refused from then on.
    let res = get(srv.addr, "/socket.io/?EIO=4&transport=polling").await;
    assert_error(&res, 503, 3);
}

#[tokio::test]
async fn connect_timeout_closes_a_connection_that_never_connects() {
    let connect_timeout = Duration::from_millis(300);
    let srv = TestServer::start(Config {
        connect_timeout,
        // A ping after the connect deadline shows the connected client survived it.
        ping_interval: Duration::from_millis(600),
        ping_timeout: Duration::from_secs(5),
        ..quiet()
    })
    .await;
    let started = Instant::now();
    let (mut idle, _) = ws_open(srv.addr, "/socket.io/").await;
    let mut joined = sio_client(srv.addr).await;
    expect_closed(&mut idle).await;
    assert!(started.elapsed() >= connect_timeout);
    assert_eq!(next_text(&mut joined).await, "2");
    assert!(started.elapsed() >= Duration::from_millis(600));
    send_text(&mut joined, r#"42["message",1]"#).await;
    assert_eq!(next_text(&mut joined).await, r#"42["message-back",1]"#);
    // The same over polling: the next GET ends with a close.
    let sid = sid_of(&polling_open(srv.addr, "/socket.io/").await);
    let res = get(
        srv.addr,
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
    )
    .await;
    assert_eq!((res.status, res.text()), (200, "1"));
}

#[tokio::test]
async fn disconnect_from_a_namespace_keeps_the_engine_open() {
    let mut srv = TestServer::start(Config {
        ping_interval: Duration::from_millis(500),
        ping_timeout: Duration::from_secs(5),
        ..quiet()
    })
    .await;
    let (mut ws, _) = ws_open(srv.addr, "/socket.io/").await;
    send_text(&mut ws, "40").await;
    assert!(next_text(&mut ws).await.starts_with("40{"));
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);
    let socket = match srv.next_seen().await {
        Seen::Connected(s) => s,
        other => panic!("{other:?}"),
    };
    send_text(&mut ws, "41").await;
    match srv.next_seen().await {
        Seen::Disconnected(ns, reason) => {
            assert_eq!(ns, "/");
            assert_eq!(reason, DisconnectReason::ClientNamespaceDisconnect);
        }
        other => panic!("{other:?}"),
    }
    assert!(!socket.connected());
    assert_eq!(
        socket.send(&Frame::text("42[\"x\"]")),
        Err(SendError::Closed)
    );
    // The engine session is still there: the next thing the client gets is a ping.
    assert_eq!(next_text(&mut ws).await, "2");
    send_text(&mut ws, "3").await;
    // And the namespace can be joined again.
    send_text(&mut ws, "40").await;
    assert!(next_text(&mut ws).await.starts_with("40{"));
}

#[tokio::test]
async fn server_disconnect_of_a_socket() {
    let mut srv = TestServer::start(quiet()).await;
    let mut ws = sio_client(srv.addr).await;
    let socket = match srv.next_seen().await {
        Seen::Connected(s) => s,
        other => panic!("{other:?}"),
    };
    socket.disconnect();
    assert_eq!(next_text(&mut ws).await, "41");
    match srv.next_seen().await {
        Seen::Disconnected(_, reason) => {
            assert_eq!(reason, DisconnectReason::ServerNamespaceDisconnect)
        }
        other => panic!("{other:?}"),
    }
    // The transport stays: `/custom` can be joined on it.
    send_text(&mut ws, "40/custom,").await;
    assert!(next_text(&mut ws).await.starts_with("40/custom,{"));
}

// ---- the byte-bounded queue -----------------------------------------------------

/// The socket the handlers saw connect next.
async fn connected_socket(srv: &mut TestServer) -> Socket {
    match srv.next_seen().await {
        Seen::Connected(s) => s,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_gets_full_while_others_flow() {
    const LIMIT: usize = 4096;
    const MAX_SENDS: usize = 100_000;
    let mut srv = TestServer::start(Config {
        max_buffer_bytes: LIMIT,
        ..quiet()
    })
    .await;
    // The slow client completes the handshake, then never reads again.
    let _slow_ws = sio_client(srv.addr).await;
    let slow = connected_socket(&mut srv).await;
    let mut healthy_ws = sio_client(srv.addr).await;
    let healthy = connected_socket(&mut srv).await;

    let pad = "x".repeat(1024);
    let frame = |i: usize| Frame::text(format!(r#"42["tick",{i},"{pad}"]"#));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused_at = None;
    for i in 0..MAX_SENDS {
        assert!(Instant::now() < deadline, "no Full within 60 s ({i} sends)");
        let f = frame(i);
        assert!(f.len() >= 1024);
        match slow.send(&f) {
            Ok(()) => {}
            Err(SendError::Full) => {
                refused_at = Some(i);
                break;
            }
            Err(SendError::Closed) => panic!("slow socket closed at {i}"),
        }
        // The healthy socket takes every frame, and its client gets them in order.
        healthy
            .send(&f)
            .unwrap_or_else(|e| panic!("healthy send {i}: {e}"));
        let got = next_text(&mut healthy_ws).await;
        let (_, body) = split_json(&got);
        assert_eq!(body[1], i, "healthy client got frame {} for {i}", body[1]);
    }
    let refused_at = refused_at.expect("the slow socket never reported Full");
    eprintln!("the slow socket was full after {refused_at} frames");
    assert!(refused_at > 0);
    // The bound held, and a refusal is not a close: the slow socket is still there.
    assert!(
        slow.queued_bytes() <= LIMIT,
        "{} bytes queued over a {LIMIT}-byte bound",
        slow.queued_bytes()
    );
    assert!(slow.connected());
    assert_eq!(slow.send(&frame(0)), Err(SendError::Full));
    // The healthy one goes on.
    healthy.send(&frame(refused_at)).unwrap();
    let got = next_text(&mut healthy_ws).await;
    assert!(got.starts_with(&format!(r#"42["tick",{refused_at},"#)));
}
