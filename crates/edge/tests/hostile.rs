//! Hostile input: other accounts' channels, malformed frames, bad tokens. Each gets a documented
//! error, changes nothing, and the node keeps serving everyone else.

mod common;

use common::*;
use futures_util::SinkExt;
use herald_client::{Client, ClientConfig};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_never_sees_or_reaches_another_accounts_channels() {
    let e = TestEdge::start().await;
    let acme = Client::connect(ClientConfig::new(e.url(), e.token("acme", "a")));
    let mut acme_sub = acme.subscribe("incidents").await.unwrap();
    let mut beta = raw_ws(e.addr, Some(&e.token("beta", "b"))).await.unwrap();
    let long = "x".repeat(129);
    let attempts = ["../acme/incidents", "acme/incidents", "acme%2Fincidents", "/incidents", "ünïcode", "", &long, "inc idents", "a..b", "*"];
    for (i, name) in attempts.iter().enumerate() {
        send(&mut beta, json!({"type":"subscribe","id": i,"channel": name})).await;
        let err = expect_type(&mut beta, "error").await;
        assert_eq!((err["id"].clone(), err["code"].clone()), (json!(i), json!("invalid_channel")), "{name:?}");
        send(&mut beta, json!({"type":"publish","id": 100 + i,"channel": name, "data": {"evil": true}})).await;
        let err = expect_type(&mut beta, "error").await;
        assert_eq!(err["code"], "invalid_channel", "{name:?}");
    }
    // Beta's own "incidents" is beta/incidents.
    send(&mut beta, json!({"type":"subscribe","id":"own","channel":"incidents"})).await;
    assert_eq!(expect_type(&mut beta, "subscribed").await["id"], "own");
    send(&mut beta, json!({"type":"publish","id":"p","channel":"incidents","data":{"from":"beta"}})).await;
    expect_type(&mut beta, "published").await;
    let beta_own = expect_type(&mut beta, "message").await;
    assert_eq!(beta_own["data"]["from"], "beta");
    e.publish(json!({"account":"acme","channel":"incidents","data":{"from":"acme"}})).await;
    let m = acme_sub.next_message().await.unwrap();
    assert_eq!(m.data.get(), r#"{"from":"acme"}"#, "acme sees only acme's record, not beta's");
    // Beta must not get acme's record: publish a marker to beta and make sure it comes next.
    e.publish(json!({"account":"beta","channel":"incidents","data":{"marker":1}})).await;
    let next = expect_type(&mut beta, "message").await;
    assert_eq!(next["data"]["marker"], 1);
    // An account key cannot publish to another account.
    let (status, v) = http_post(e.addr, "/v1/publish", ACME_KEY, &json!({"account":"beta","channel":"x","data":1}).to_string()).await;
    assert_eq!((status, v["error"]["code"].clone()), (403, json!("forbidden")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_documented_errors_and_change_nothing() {
    let e = TestEdge::start().await;
    let mut ws = raw_ws(e.addr, Some(&e.token("acme", "u"))).await.unwrap();
    expect_type(&mut ws, "welcome").await;
    let cases: [(&str, &str); 7] = [
        ("not json", "bad_request"),
        (r#"{"type":"subscribe","id":1,"channel":5}"#, "bad_request"),
        (r#"{"type":"subscribe","id":1}"#, "bad_request"),
        (r#"{"type":"explode","id":2}"#, "unknown_type"),
        (r#"{"id":3}"#, "bad_request"),
        (r#"[1,2,3]"#, "bad_request"),
        (r#"{"type":"subscribe","id":4,"channel":"c","since":"c1.nope"}"#, "invalid_cursor"),
    ];
    for (text, code) in cases {
        ws.ws.send(Message::Text(text.into())).await.unwrap();
        let err = expect_type(&mut ws, "error").await;
        assert_eq!(err["code"], code, "{text}");
    }
    ws.ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(expect_type(&mut ws, "error").await["code"], "bad_request");
    // A batch with one bad line: the good lines still work.
    ws.ws.send(Message::Text("{\"type\":\"ping\",\"id\":7}\n{oops\n{\"type\":\"subscribe\",\"id\":8,\"channel\":\"c\"}\n".into())).await.unwrap();
    assert_eq!(expect_type(&mut ws, "pong").await["id"], 7);
    assert_eq!(expect_type(&mut ws, "error").await["code"], "bad_request");
    assert_eq!(expect_type(&mut ws, "subscribed").await["id"], 8);
    send(&mut ws, json!({"type":"subscribe","id":9,"channel":"c"})).await;
    assert_eq!(expect_type(&mut ws, "error").await["code"], "already_subscribed");
    send(&mut ws, json!({"type":"unsubscribe","id":10,"channel":"never"})).await;
    assert_eq!(expect_type(&mut ws, "error").await["code"], "not_subscribed");
    send(&mut ws, json!({"type":"publish","id":11,"channel":"c","data":"x".repeat(20_000)})).await;
    assert_eq!(expect_type(&mut ws, "error").await["code"], "message_too_large");
    // State is intact: the subscription works, and nothing was published by the bad frames.
    e.publish_seq("acme", "c", 1).await;
    let m = expect_type(&mut ws, "message").await;
    assert_eq!(m["data"]["seq"], 1);
    assert!(e.edge.metrics.render().contains("herald_records_published_total 1\n"), "the record published above is the only one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_only_that_connection() {
    let e = TestEdge::start().await;
    let bystander = Client::connect(ClientConfig::new(e.url(), e.token("acme", "b")));
    let mut sub = bystander.subscribe("c").await.unwrap();
    let mut ws = raw_ws(e.addr, Some(&e.token("acme", "u"))).await.unwrap();
    expect_type(&mut ws, "welcome").await;
    let _ = ws.ws.send(Message::Text("x".repeat(70_000).into())).await;
    let (frames, close) = read_until_closed(&mut ws).await;
    assert!(frames.iter().any(|f| f["code"] == "frame_too_large"), "{frames:?}");
    assert_eq!(close.map(|c| c.code), Some(CloseCode::Size));
    e.publish_seq("acme", "c", 5).await;
    assert_eq!(sub.next_message().await.unwrap().data.get(), r#"{"seq":5}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_forged_and_missing_tokens_are_refused() {
    let e = TestEdge::start().await;
    // In the handshake header: HTTP 401 with the code.
    let expired = token_with("acme", "u", &["*"], &[], -600);
    match raw_ws(e.addr, Some(&expired)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 401);
            let body: serde_json::Value = serde_json::from_slice(r.body().as_ref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "token_expired");
        }
        other => panic!("expired token accepted: {:?}", other.map(|_| ())),
    }
    let forged = herald_edge::TokenIssuer::hs256(b"some-other-secret-123").issue(&herald_edge::TokenClaims {
        sub: "u".into(),
        account: "acme".into(),
        exp: herald_core::now_ms() / 1000 + 600,
        iat: None,
        nbf: None,
        jti: None,
        subscribe: vec!["*".into()],
        publish: vec![],
        presence: None,
    });
    assert!(matches!(raw_ws(e.addr, Some(&forged)).await, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401));
    // In the first frame (browsers): an error frame and close 4001.
    let mut ws = raw_ws(e.addr, None).await.unwrap();
    send(&mut ws, json!({"type":"auth","token": forged})).await;
    let (frames, close) = read_until_closed(&mut ws).await;
    assert_eq!(frames[0]["code"], "unauthorized");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4001));
    // A request before auth is refused the same way.
    let mut ws = raw_ws(e.addr, None).await.unwrap();
    send(&mut ws, json!({"type":"subscribe","id":1,"channel":"c"})).await;
    let (_, close) = read_until_closed(&mut ws).await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4001));
    // A valid auth frame works.
    let mut ws = raw_ws(e.addr, None).await.unwrap();
    send(&mut ws, json!({"type":"auth","token": e.token("acme","u")})).await;
    expect_type(&mut ws, "welcome").await;
    // Publish API: missing or unknown keys.
    let (s, _, _) = http_request(e.addr, "POST", "/v1/publish", None, "{}").await;
    assert_eq!(s, 401);
    let (s, v) = http_post(e.addr, "/v1/publish", "wrong-key-0000000000", "{}").await;
    assert_eq!((s, v["error"]["code"].clone()), (401, json!("unauthorized")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_on_a_live_connection_closes_it_with_4002() {
    let e = TestEdge::start().await;
    let short = token_with("acme", "u", &["*"], &[], 2);
    let mut ws = raw_ws(e.addr, Some(&short)).await.unwrap();
    expect_type(&mut ws, "welcome").await;
    let (frames, close) = read_until_closed(&mut ws).await;
    assert!(frames.iter().any(|f| f["code"] == "token_expired"), "{frames:?}");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4002));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshing_to_a_narrower_token_ends_the_subscriptions_it_no_longer_allows() {
    let e = TestEdge::start().await;
    let mut ws = raw_ws(e.addr, Some(&token_with("acme", "u", &["a", "b"], &[], 600))).await.unwrap();
    send(&mut ws, json!({"type":"subscribe","id":1,"channel":"a"})).await;
    send(&mut ws, json!({"type":"subscribe","id":2,"channel":"b"})).await;
    expect_type(&mut ws, "subscribed").await;
    expect_type(&mut ws, "subscribed").await;
    send(&mut ws, json!({"type":"refresh","id":3,"token": token_with("acme", "u", &["a"], &[], 600)})).await;
    let ended = expect_type(&mut ws, "unsubscribed").await;
    assert_eq!((ended["channel"].clone(), ended["code"].clone()), (json!("b"), json!("forbidden")));
    assert_eq!(expect_type(&mut ws, "refreshed").await["id"], 3);
    send(&mut ws, json!({"type":"refresh","id":4,"token": token_with("beta", "u", &["*"], &[], 600)})).await;
    assert_eq!(expect_type(&mut ws, "error").await["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_presence_patterns_sees_presence_only_there() {
    let e = TestEdge::start().await;
    let now = herald_core::now_ms() / 1000;
    let token = herald_edge::TokenIssuer::hs256(SECRET.as_bytes()).issue(&herald_edge::TokenClaims {
        sub: "u".into(),
        account: "acme".into(),
        exp: now + 600,
        iat: None,
        nbf: None,
        jti: None,
        subscribe: vec!["*".into()],
        publish: vec![],
        presence: Some(vec!["lobby".into()]),
    });
    let mut ws = raw_ws(e.addr, Some(&token)).await.unwrap();
    send(&mut ws, json!({"type":"presence","id":1,"channel":"room"})).await;
    assert_eq!(expect_type(&mut ws, "error").await["code"], "forbidden");
    send(&mut ws, json!({"type":"subscribe","id":2,"channel":"room","presence":true})).await;
    assert_eq!(expect_type(&mut ws, "error").await["code"], "forbidden");
    send(&mut ws, json!({"type":"subscribe","id":3,"channel":"room"})).await;
    assert_eq!(expect_type(&mut ws, "subscribed").await["id"], 3, "subscribing without presence is fine");
    send(&mut ws, json!({"type":"presence","id":4,"channel":"lobby"})).await;
    assert_eq!(expect_type(&mut ws, "presence").await["id"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_keeps_a_connection_alive_across_short_lived_tokens() {
    let e = TestEdge::start().await;
    let mint = || token_with("acme", "short", &["*"], &[], 3);
    let mut cfg = ClientConfig::new(e.url(), mint());
    let minted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = minted.clone();
    cfg.token_source = Some(std::sync::Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::pin(async { Ok(token_with("acme", "short", &["*"], &[], 3)) })
    }));
    let c = Client::connect(cfg);
    let mut sub = c.subscribe("c").await.unwrap();
    let connection = match &*c.state().borrow() {
        herald_client::ConnState::Connected { connection_id, .. } => connection_id.clone(),
        s => panic!("not connected: {s:?}"),
    };
    // Three token lifetimes pass; records keep arriving on the same connection.
    for n in 0..8u64 {
        e.publish_seq("acme", "c", n).await;
        let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.unwrap().unwrap();
        assert_eq!(m.data.get(), format!(r#"{{"seq":{n}}}"#));
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    }
    assert!(matches!(&*c.state().borrow(), herald_client::ConnState::Connected { connection_id, .. } if *connection_id == connection), "never reconnected");
    assert!(minted.load(std::sync::atomic::Ordering::Relaxed) >= 2, "tokens were refreshed");
    // A reconnect after the first token expired uses a fresh one.
    c.drop_connection().await;
    e.publish_seq("acme", "c", 8).await;
    let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.unwrap().unwrap();
    assert_eq!(m.data.get(), r#"{"seq":8}"#);
}
