//! `/v1/devices`: a client registers its device with its token (and the channels that token may
//! read), a backend lists a user's devices, and nobody removes or lists what is not theirs.

mod common;

use common::*;
use serde_json::{Value, json};

async fn call(edge: &TestEdge, method: &str, path: &str, bearer: &str, body: Value) -> (u16, Value) {
    let (s, _, b) = http_request(edge.addr, method, path, Some(bearer), &body.to_string()).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

const APNS_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

#[tokio::test]
async fn a_device_registers_with_its_token_and_the_backend_lists_and_removes_it() {
    let edge = TestEdge::start().await;
    let alice = token_with("acme", "alice", &["incident-*", "user-alice"], &[], 3600);
    let (s, v) = call(&edge, "POST", "/v1/devices", &alice, json!({"platform": "apns", "token": APNS_TOKEN, "app": "com.example.oncall"})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["device"]["readable"], json!(["incident-*", "user-alice"]), "the token's read rights at registration");

    let (s, v) = call(&edge, "GET", "/v1/devices?user=alice", ACME_KEY, json!({})).await;
    assert_eq!(s, 200, "{v}");
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!((devices[0]["platform"].as_str(), devices[0]["token_tail"].as_str()), (Some("apns"), Some("7e8f90")), "only the token's tail is shown");

    // Another user of the account cannot remove alice's device; alice can.
    let bob = token_with("acme", "bob", &["*"], &[], 3600);
    let (s, v) = call(&edge, "DELETE", "/v1/devices", &bob, json!({"platform": "apns", "token": APNS_TOKEN})).await;
    assert_eq!((s, v["removed"].as_bool()), (200, Some(false)));
    let (s, v) = call(&edge, "DELETE", "/v1/devices", &alice, json!({"platform": "apns", "token": APNS_TOKEN})).await;
    assert_eq!((s, v["removed"].as_bool()), (200, Some(true)));
    let (_, v) = call(&edge, "GET", "/v1/devices?user=alice", ACME_KEY, json!({})).await;
    assert!(v["devices"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bad_registrations_and_foreign_callers_are_refused_and_store_nothing() {
    let edge = TestEdge::start().await;
    let alice = token_with("acme", "alice", &["*"], &[], 3600);
    for (body, code) in [
        (json!({"platform": "blackberry", "token": APNS_TOKEN, "app": "a"}), "bad_request"),
        (json!({"platform": "apns", "token": "not hex", "app": "com.example"}), "bad_request"),
        (json!({"platform": "apns", "token": APNS_TOKEN}), "bad_request"),
        (json!({"platform": "apns", "token": APNS_TOKEN, "app": "a", "extra": 1}), "bad_request"),
    ] {
        let (s, v) = call(&edge, "POST", "/v1/devices", &alice, body.clone()).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{body}: {v}");
    }
    let (s, v) = call(&edge, "POST", "/v1/devices", ACME_KEY, json!({"platform": "apns", "token": APNS_TOKEN, "app": "a"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "a backend key does not register devices: {v}");
    let (s, v) = call(&edge, "GET", "/v1/devices?user=alice", &alice, json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "a client token does not list: {v}");
    let (s, v) = call(&edge, "GET", "/v1/devices?user=alice&account=globex", ACME_KEY, json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, v) = call(&edge, "POST", "/v1/devices", "nonsense", json!({})).await;
    assert_eq!(s, 401, "{v}");
    let (_, v) = call(&edge, "GET", "/v1/devices?user=alice", ACME_KEY, json!({})).await;
    assert!(v["devices"].as_array().unwrap().is_empty(), "nothing was stored: {v}");
}

/// A connected app registers and removes its device with frames, in either encoding; a bad
/// registration is answered with an error carrying its id and stores nothing.
async fn a_connected_app_registers_its_device_with_a_frame(encoding: herald_protocol::Encoding) {
    let edge = TestEdge::start().await;
    let alice = token_with("acme", "alice", &["incident-*"], &[], 3600);
    let mut c = raw_ws_speaking(edge.addr, Some(&alice), encoding).await.unwrap();
    expect_type(&mut c, "welcome").await;
    send(&mut c, json!({"type": "register_device", "id": 1, "platform": "apns", "token": "not hex", "app": "com.example.oncall"})).await;
    let e = expect_type(&mut c, "error").await;
    assert_eq!((e["id"].as_i64(), e["code"].as_str()), (Some(1), Some("bad_request")), "{e}");
    send(&mut c, json!({"type": "register_device", "id": 2, "platform": "apns", "token": APNS_TOKEN, "app": "com.example.oncall"})).await;
    assert_eq!(expect_type(&mut c, "device").await, json!({"type": "device", "id": 2, "registered": true}));

    let (_, v) = call(&edge, "GET", "/v1/devices?user=alice", ACME_KEY, json!({})).await;
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "only the good registration is stored: {v}");
    assert_eq!((devices[0]["app"].as_str(), devices[0]["readable"].clone()), (Some("com.example.oncall"), json!(["incident-*"])));

    // Bob's connection cannot remove alice's device; alice's can.
    let bob = token_with("acme", "bob", &["*"], &[], 3600);
    let mut b = raw_ws_speaking(edge.addr, Some(&bob), encoding).await.unwrap();
    expect_type(&mut b, "welcome").await;
    send(&mut b, json!({"type": "unregister_device", "id": "x", "platform": "apns", "token": APNS_TOKEN})).await;
    assert_eq!(expect_type(&mut b, "device").await, json!({"type": "device", "id": "x", "registered": false}));
    let (_, v) = call(&edge, "GET", "/v1/devices?user=alice", ACME_KEY, json!({})).await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 1, "bob removed nothing: {v}");
    send(&mut c, json!({"type": "unregister_device", "id": 3, "platform": "apns", "token": APNS_TOKEN})).await;
    assert_eq!(expect_type(&mut c, "device").await, json!({"type": "device", "id": 3, "registered": false}));
    let (_, v) = call(&edge, "GET", "/v1/devices?user=alice", ACME_KEY, json!({})).await;
    assert!(v["devices"].as_array().unwrap().is_empty(), "{v}");
}

/// The Rust client's `register_device` goes through the frame.
#[tokio::test]
async fn the_rust_client_registers_a_device() {
    let edge = TestEdge::start().await;
    let alice = token_with("acme", "alice", &["incident-*"], &[], 3600);
    let client = herald_client::Client::connect(herald_client::ClientConfig::new(edge.url(), alice));
    client.register_device("fcm", "fcm-token:abc", "oncall-prod").await.unwrap();
    let (_, v) = call(&edge, "GET", "/v1/devices?user=alice", ACME_KEY, json!({})).await;
    assert_eq!(v["devices"][0]["platform"], "fcm", "{v}");
    let e = client.register_device("blackberry", "t", "a").await.unwrap_err();
    assert!(matches!(&e, herald_client::ClientError::Refused { code, .. } if code == "bad_request"), "{e}");
    client.unregister_device("fcm", "fcm-token:abc").await.unwrap();
    let (_, v) = call(&edge, "GET", "/v1/devices?user=alice", ACME_KEY, json!({})).await;
    assert!(v["devices"].as_array().unwrap().is_empty(), "{v}");
    client.close().await;
}

over_both_encodings!(a_connected_app_registers_its_device_with_a_frame);
