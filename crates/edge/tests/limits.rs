//! Limits and browser origins: a flood from one client, address or account is refused with a
//! documented code and does not affect anyone else.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn ws_status(r: Result<Conn, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Ok(_) => 101,
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_at_its_connection_limit_is_refused_while_others_connect() {
    let e = TestEdge::start_with(|c| {
        c.limits.connections_per_account = 2;
        c.limits.accounts.insert(herald_core::AccountId::new("big").unwrap(), herald_config::AccountLimits { connections: Some(3), ..Default::default() });
    })
    .await;
    let a1 = raw_ws(e.addr, Some(&e.token("acme", "1"))).await.unwrap();
    let _a2 = raw_ws(e.addr, Some(&e.token("acme", "2"))).await.unwrap();
    assert_eq!(ws_status(raw_ws(e.addr, Some(&e.token("acme", "3"))).await), 429);
    // First-frame auth gets the same answer as a frame and a close.
    let mut late = raw_ws(e.addr, None).await.unwrap();
    send(&mut late, json!({"type":"auth","token": e.token("acme", "4")})).await;
    let (frames, close) = read_until_closed(&mut late).await;
    assert_eq!(frames[0]["code"], "rate_limited");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4029));
    // Other accounts are unaffected, and an account's own limit applies.
    for i in 0..3 {
        assert_eq!(ws_status(raw_ws(e.addr, Some(&e.token("big", &i.to_string()))).await), 101);
    }
    let (s, _, _) = http_request(e.addr, "GET", &format!("/v1/poll?channels=c&timeout_ms=10&token={}", e.token("acme", "p")), None, "").await;
    assert_eq!(s, 429, "long-poll counts too");
    // A closed connection frees its place.
    drop(a1);
    let mut ok = None;
    for _ in 0..100 {
        if let Ok(c) = raw_ws(e.addr, Some(&e.token("acme", "5"))).await {
            ok = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok.is_some());
    assert!(e.edge.metrics.render().contains(r#"herald_limited_total{limit="connections_per_account"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_publishing_too_fast_is_refused_without_hurting_other_accounts() {
    let e = TestEdge::start_with(|c| {
        c.limits.publish_per_second_per_connection = 5;
        c.limits.publish_per_second_per_account = 1000;
    })
    .await;
    let mut flood = raw_ws(e.addr, Some(&e.token("acme", "f"))).await.unwrap();
    // Burst of 40 frames in one message: the bucket (10 tokens) lets ~10 through.
    let batch: String = (0..40).map(|i| json!({"type":"publish","id":i,"channel":"c","data":i}).to_string() + "\n").collect();
    flood.ws.send(Message::Text(batch.into())).await.unwrap();
    let (mut ok, mut limited) = (0, 0);
    while ok + limited < 40 {
        let Next::Frame(f) = flood.next().await else { panic!("closed") };
        match f["type"].as_str().unwrap() {
            "published" => ok += 1,
            "error" => {
                assert_eq!(f["code"], "rate_limited");
                limited += 1;
            }
            _ => {}
        }
    }
    assert!((10..=12).contains(&ok), "the burst allowance got through ({ok})");
    assert_eq!(limited, 40 - ok);
    // Another account publishes as usual.
    let mut other = raw_ws(e.addr, Some(&e.token("beta", "b"))).await.unwrap();
    send(&mut other, json!({"type":"publish","id":1,"channel":"c","data":1})).await;
    expect_type(&mut other, "published").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_over_its_publish_rate_gets_429_with_retry_after_on_the_api() {
    let e = TestEdge::start_with(|c| c.limits.publish_per_second_per_account = 10).await;
    let records: Vec<_> = (0..15).map(|i| json!({"account":"acme","channel":"c","data":i})).collect();
    // 15 + 1 records fit the burst (two seconds' worth: 20)...
    let (s, _, body) = http_request(e.addr, "POST", "/v1/publish", Some(ADMIN_KEY), &json!({ "records": records }).to_string()).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let (s, _, body) = http_request(e.addr, "POST", "/v1/publish", Some(ADMIN_KEY), &json!({"account":"acme","channel":"c","data":1}).to_string()).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    // ...ten more do not, and nothing of the refused batch is written.
    let records: Vec<_> = (0..10).map(|i| json!({"account":"acme","channel":"c","data":i})).collect();
    let (s, headers, body) = http_request(e.addr, "POST", "/v1/publish", Some(ADMIN_KEY), &json!({ "records": records }).to_string()).await;
    assert_eq!(s, 429, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["retry-after"], "1");
    assert!(String::from_utf8_lossy(&body).contains("rate_limited"));
    let (s, _) = e.publish(json!({"account":"beta","channel":"c","data":1})).await;
    assert_eq!(s, 200, "other accounts keep publishing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_browser_origins_may_connect_to_an_account() {
    let e = TestEdge::start_with(|c| {
        c.auth.allowed_origins.insert(herald_core::AccountId::new("acme").unwrap(), vec!["https://app.acme.com".into()]);
    })
    .await;
    let connect = |origin: Option<&'static str>, account: &'static str| {
        let addr = e.addr;
        let token = e.token(account, "u");
        async move {
            let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/v1/ws")).unwrap();
            req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            if let Some(o) = origin {
                req.headers_mut().insert("origin", o.parse().unwrap());
            }
            match tokio_tungstenite::connect_async(req).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(connect(Some("https://app.acme.com"), "acme").await, 101);
    assert_eq!(connect(Some("https://evil.example"), "acme").await, 403, "cross-site WebSocket hijacking is refused");
    assert_eq!(connect(None, "acme").await, 101, "non-browser clients send no Origin");
    assert_eq!(connect(Some("https://evil.example"), "beta").await, 101, "accounts without a list accept any origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_connection_is_warned_before_its_token_expires_and_a_refresh_keeps_it() {
    let e = TestEdge::start().await;
    let mut ws = raw_ws(e.addr, Some(&token_with("acme", "u", &["*"], &[], 4))).await.unwrap();
    let w = expect_type(&mut ws, "token_expiring").await;
    assert!(w["expires_at"].as_u64().is_some());
    send(&mut ws, json!({"type":"refresh","id":1,"token": token_with("acme", "u", &["*"], &[], 600)})).await;
    expect_type(&mut ws, "refreshed").await;
    // Past the first token's expiry the connection still works.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    send(&mut ws, json!({"type":"ping","id":2})).await;
    assert_eq!(expect_type(&mut ws, "pong").await["id"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_account_does_not_cost_another_account_a_single_delivery() {
    let e = TestEdge::start_with(|c| {
        c.limits.connections_per_account = 20;
        c.limits.publish_per_second_per_account = 200;
        c.limits.publish_per_second_per_connection = 100;
    })
    .await;
    let quiet = herald_client::Client::connect(herald_client::ClientConfig::new(e.url(), e.token("quiet", "q")));
    let mut sub = quiet.subscribe("news").await.unwrap();
    // The flood: connections past the account's limit, and publishes past its rate.
    let mut noisy = Vec::new();
    let mut refused = 0;
    for i in 0..30 {
        match raw_ws(e.addr, Some(&e.token("noisy", &i.to_string()))).await {
            Ok(c) => noisy.push(c),
            Err(_) => refused += 1,
        }
    }
    assert_eq!((noisy.len(), refused), (20, 10));
    let burst: String = (0..500).map(|i| json!({"type":"publish","id":i,"channel":"spam","data":i}).to_string() + "\n").collect();
    for c in noisy.iter_mut() {
        c.ws.send(Message::Text(burst.clone().into())).await.unwrap();
    }
    // Meanwhile the quiet account publishes and receives everything, and can still connect.
    for n in 0..200u64 {
        let (s, _) = e.publish(json!({"account":"quiet","channel":"news","data":{"seq":n}})).await;
        assert_eq!(s, 200);
    }
    for n in 0..200u64 {
        let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.unwrap().unwrap();
        assert_eq!(m.data.get(), format!(r#"{{"seq":{n}}}"#));
    }
    assert!(raw_ws(e.addr, Some(&e.token("quiet", "late"))).await.is_ok());
    let metrics = e.edge.metrics.render();
    assert!(metrics.contains(r#"herald_limited_total{limit="publish_per_account"}"#), "the flood was limited");
    assert!(metrics.contains("herald_lagged_disconnects_total 0"), "nobody lagged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_capable_token_with_a_jti_opens_one_session_only() {
    let e = TestEdge::start().await;
    let now = herald_core::now_ms() / 1000;
    let mint = |jti: Option<&str>, publish: Vec<String>| {
        herald_edge::TokenIssuer::hs256(SECRET.as_bytes()).issue(&herald_edge::TokenClaims {
            sub: "u".into(),
            account: "acme".into(),
            exp: now + 600,
            iat: Some(now),
            nbf: None,
            jti: jti.map(str::to_owned),
            subscribe: vec!["*".into()],
            publish,
            presence: None,
        })
    };
    let once = mint(Some("t-1"), vec!["*".into()]);
    let _first = raw_ws(e.addr, Some(&once)).await.unwrap();
    assert_eq!(ws_status(raw_ws(e.addr, Some(&once)).await), 401, "a replayed publish-capable token is refused");
    let read_only = mint(Some("t-2"), vec![]);
    for _ in 0..2 {
        assert_eq!(ws_status(raw_ws(e.addr, Some(&read_only)).await), 101, "read-only tokens may reconnect");
    }
    let no_jti = mint(None, vec!["*".into()]);
    for _ in 0..2 {
        assert_eq!(ws_status(raw_ws(e.addr, Some(&no_jti)).await), 101);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_can_have_its_own_subscription_and_message_size_limits() {
    let e = TestEdge::start_with(|c| {
        c.limits.accounts.insert(herald_core::AccountId::new("small").unwrap(), herald_config::AccountLimits { max_subscriptions: Some(1), max_message_bytes: Some(100), ..Default::default() });
    })
    .await;
    let mut small = raw_ws(e.addr, Some(&e.token("small", "s"))).await.unwrap();
    send(&mut small, json!({"type":"subscribe","id":1,"channel":"a"})).await;
    expect_type(&mut small, "subscribed").await;
    send(&mut small, json!({"type":"subscribe","id":2,"channel":"b"})).await;
    assert_eq!(expect_type(&mut small, "error").await["code"], "too_many_subscriptions");
    send(&mut small, json!({"type":"publish","id":3,"channel":"a","data":"x".repeat(200)})).await;
    assert_eq!(expect_type(&mut small, "error").await["code"], "message_too_large");
    // Everyone else keeps the node's defaults.
    let mut other = raw_ws(e.addr, Some(&e.token("acme", "o"))).await.unwrap();
    for i in 0..3 {
        send(&mut other, json!({"type":"subscribe","id":i,"channel":format!("c{i}")})).await;
        expect_type(&mut other, "subscribed").await;
    }
    send(&mut other, json!({"type":"publish","id":9,"channel":"c0","data":"x".repeat(200)})).await;
    expect_type(&mut other, "published").await;
}
