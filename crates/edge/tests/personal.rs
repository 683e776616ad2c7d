//! Personal channels (docs/protocol.md): a backend publishes to a user without knowing which
//! channels its connections use; every connection of that user that subscribed to its own
//! personal channel gets the record, on every device; nobody else can read it, whatever the
//! token's patterns, and no client publishes to one.

mod common;

use common::*;
use serde_json::json;

async fn subscribe(c: &mut Conn, id: i64, channel: &str) -> serde_json::Value {
    send(c, json!({"type": "subscribe", "id": id, "channel": channel})).await;
    loop {
        let f = match c.next().await {
            Next::Frame(f) => f,
            Next::Closed(f) => panic!("closed: {f:?}"),
        };
        if f["id"] == id && (f["type"] == "subscribed" || f["type"] == "error") {
            return f;
        }
    }
}

async fn a_record_to_a_user_reaches_each_of_its_connections_and_nobody_else(encoding: herald_protocol::Encoding) {
    let edge = TestEdge::start().await;
    // Alice's token names no channel at all; her own personal channel is hers anyway.
    let alice = token_with("acme", "auth0|alice", &[], &[], 3600);
    let own = herald_core::ChannelName::personal("auth0|alice").unwrap();
    assert_eq!(own.as_str(), "@auth0=7Calice");
    let mut phone = raw_ws_speaking(edge.addr, Some(&alice), encoding).await.unwrap();
    let mut laptop = raw_ws_speaking(edge.addr, Some(&alice), encoding).await.unwrap();
    for c in [&mut phone, &mut laptop] {
        assert_eq!(subscribe(c, 1, own.as_str()).await["type"], "subscribed");
    }
    // Bob reads everything else, but not alice's personal channel, not even by naming it.
    let bob = token_with("acme", "bob", &["*", "@auth0=7Calice"], &["*"], 3600);
    let mut b = raw_ws_speaking(edge.addr, Some(&bob), encoding).await.unwrap();
    let e = subscribe(&mut b, 1, own.as_str()).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("forbidden")), "{e}");
    // No client publishes to a personal channel, its own user included.
    send(&mut b, json!({"type": "publish", "id": 2, "channel": own.as_str(), "data": {"spoof": true}})).await;
    assert_eq!(expect_type(&mut b, "error").await["code"], "forbidden");

    let (s, v) = edge.publish(json!({"account": "acme", "user": "auth0|alice", "data": {"text": "your export is ready"}})).await;
    assert_eq!(s, 200, "{v}");
    for c in [&mut phone, &mut laptop] {
        let m = expect_type(c, "message").await;
        assert_eq!((m["channel"].as_str(), m["data"]["text"].as_str()), (Some(own.as_str()), Some("your export is ready")));
    }
    // Bad targets are refused and publish nothing.
    for (body, code) in [
        (json!({"account": "acme", "user": "alice", "channel": "x", "data": 1}), "bad_request"),
        (json!({"account": "acme", "user": "", "data": 1}), "invalid_channel"),
        (json!({"account": "acme", "user": "|".repeat(100), "data": 1}), "invalid_channel"),
        (json!({"account": "acme", "data": 1}), "bad_request"),
    ] {
        let (s, v) = edge.publish(body.clone()).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{body}: {v}");
    }
    // The Rust client names the same channel.
    let client = herald_client::Client::connect(herald_client::ClientConfig::new(edge.url(), alice.clone()));
    let mut sub = client.subscribe(&herald_client::personal_channel("auth0|alice").unwrap()).await.unwrap();
    edge.publish(json!({"account": "acme", "user": "auth0|alice", "data": {"text": "second"}})).await;
    let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.unwrap().unwrap();
    assert_eq!(m.data.get(), r#"{"text":"second"}"#);
    client.close().await;
    // Alice's history of her channel is hers alone.
    let path = format!("/v1/history?channel={}", own.as_str());
    let (s, _, body) = http_request(edge.addr, "GET", &path, Some(&alice), "").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((s, v["messages"].as_array().map(Vec::len)), (200, Some(2)), "{v}");
    let (s, _, _) = http_request(edge.addr, "GET", &path, Some(&bob), "").await;
    assert_eq!(s, 403);
}

over_both_encodings!(a_record_to_a_user_reaches_each_of_its_connections_and_nobody_else);
