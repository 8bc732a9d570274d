mod common;
use common::*;
use std::time::Duration;

async fn show(e: &mut confab_client::EngineConn, label: &str) {
    for _ in 0..5 {
        match e.recv_text(Duration::from_millis(1500)).await {
            Ok(Some(t)) => println!("{label}: got {}", &t[..t.len().min(300)]),
            Ok(None) => {
                println!("{label}: CLOSED");
                return;
            }
            Err(err) => {
                println!("{label}: {err}");
                return;
            }
        }
    }
}

#[tokio::test]
async fn probe() {
    let s = Server::start(&[]);
    // event before 40
    let mut e = s.engine().await;
    println!("open {:?}", e.open);
    e.send_text(r#"420["room:list",{}]"#).await.unwrap();
    show(&mut e, "event-before-40").await;
    // then connect
    e.send_text(r#"40{"name":"zed"}"#).await.unwrap();
    show(&mut e, "connect-after").await;

    let cases: &[(&str, &str)] = &[
        ("bad json", r#"420["room:list",{"#),
        ("non-array", r#"421{"a":1}"#),
        ("non-array str", r#"422"room:list""#),
        ("number", r#"4235"#),
        ("unknown event", r#"424["nope",{}]"#),
        ("empty array", r#"425[]"#),
        ("name number", r#"426[5,{}]"#),
        ("no payload", r#"427["room:list"]"#),
    ];
    for (label, frame) in cases {
        let mut e = s.engine().await;
        e.send_text(r#"40{"name":"pp"}"#).await.unwrap();
        let _ = e.recv_text(Duration::from_secs(2)).await;
        let _ = e.recv_text(Duration::from_secs(2)).await;
        e.send_text(*frame).await.unwrap();
        show(&mut e, label).await;
    }
    for (label, frame) in [
        ("auth string", r#"40"alice""#),
        ("auth array", r#"40[1]"#),
        ("auth num", "405"),
        ("auth bad json", "40{"),
        ("no auth", "40"),
        ("admin", "40/admin,"),
        ("admin auth", r#"40/admin,{"name":"a"}"#),
    ] {
        let mut e = s.engine().await;
        e.send_text(frame).await.unwrap();
        show(&mut e, label).await;
    }
    // binary
    let mut e = s.engine().await;
    e.send_text(r#"40{"name":"bb"}"#).await.unwrap();
    let _ = e.recv_text(Duration::from_secs(2)).await;
    let _ = e.recv_text(Duration::from_secs(2)).await;
    e.send_text(r#"451-["message:send",{"_placeholder":true,"num":0}]"#)
        .await
        .unwrap();
    e.send_binary(vec![1, 2, 3]).await.unwrap();
    show(&mut e, "binary noack").await;
    e.send_text(r#"451-9["message:send",{"_placeholder":true,"num":0}]"#)
        .await
        .unwrap();
    e.send_binary(vec![1, 2, 3]).await.unwrap();
    show(&mut e, "binary ack").await;
    // big
    let mut e = s.engine().await;
    e.send_text(r#"40{"name":"big"}"#).await.unwrap();
    let _ = e.recv_text(Duration::from_secs(2)).await;
    let _ = e.recv_text(Duration::from_secs(2)).await;
    let big = format!(
        r#"42["message:send",{{"room":"general","text":"{}"}}]"#,
        "a".repeat(4 * 65536 + 10)
    );
    let r = e.send_text(big).await;
    println!("big send: {r:?}");
    show(&mut e, "big").await;
    println!("LOGS:\n{}", s.logs());
}
