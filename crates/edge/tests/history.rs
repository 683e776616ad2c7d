//! `GET /v1/history` against a running edge: pages of one channel among others, who may read
//! them, the cursor to go live from, and bad requests answered without reading anything.

mod common;

use common::*;
use serde_json::{Value, json};

async fn get(edge: &TestEdge, path: &str, bearer: &str) -> (u16, Value) {
    let (s, _, b) = http_request(edge.addr, "GET", path, Some(bearer), "").await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn seqs(page: &Value) -> Vec<u64> {
    page["messages"].as_array().unwrap().iter().map(|m| m["data"]["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn history_pages_forward_and_backward_over_a_shared_partition_and_hands_over_to_live() {
    let edge = TestEdge::start().await;
    // One account's channels share a partition: the incident's records interleave with chat's.
    let records: Vec<Value> = (0..150).map(|i| json!({"account": "acme", "channel": if i % 3 == 0 { "incident-7" } else { "chat" }, "data": {"seq": i}})).collect();
    let (status, v) = edge.publish(json!({ "records": records })).await;
    assert_eq!(status, 200, "{v}");
    let want: Vec<u64> = (0..150).filter(|i| i % 3 == 0).collect();

    // The latest page, with the account's key; then backward pages with `before`.
    let (status, latest) = get(&edge, "/v1/history?channel=incident-7&limit=20", ACME_KEY).await;
    assert_eq!(status, 200, "{latest}");
    assert_eq!(seqs(&latest), want[30..].to_vec());
    assert_eq!(latest["messages"][0]["type"], "message");
    assert!(latest["more"].as_bool().unwrap() && latest["complete"].as_bool().unwrap());
    let mut pages = vec![seqs(&latest)];
    let mut before = latest["before"].as_str().map(str::to_owned);
    while let Some(b) = before {
        let (status, page) = get(&edge, &format!("/v1/history?channel=incident-7&limit=20&before={b}"), ACME_KEY).await;
        assert_eq!(status, 200, "{page}");
        pages.push(seqs(&page));
        before = if page["more"].as_bool().unwrap() { page["before"].as_str().map(str::to_owned) } else { None };
    }
    assert_eq!(pages.into_iter().rev().flatten().collect::<Vec<_>>(), want);

    // Forward pages from a message's cursor, with a client token that may read the channel.
    let token = token_with("acme", "u1", &["incident-*"], &[], 3600);
    let first_cursor = latest["messages"][0]["cursor"].as_str().unwrap().to_owned();
    let (status, fwd) = get(&edge, &format!("/v1/history?channel=incident-7&limit=7&since={first_cursor}"), &token).await;
    assert_eq!(status, 200, "{fwd}");
    assert_eq!(seqs(&fwd), want[31..38].to_vec());

    // The last page's cursor is where live delivery continues: nothing between is missed.
    let (_, end) = get(&edge, &format!("/v1/history?channel=incident-7&limit=100&since={first_cursor}"), &token).await;
    assert!(!end["more"].as_bool().unwrap());
    edge.publish_seq("acme", "incident-7", 1000).await;
    let (_, after) = get(&edge, &format!("/v1/history?channel=incident-7&since={}", end["cursor"].as_str().unwrap()), &token).await;
    assert_eq!(seqs(&after), vec![1000]);
}

#[tokio::test]
async fn history_is_refused_to_who_may_not_read_and_to_bad_requests() {
    let edge = TestEdge::start().await;
    edge.publish_seq("acme", "incident-7", 1).await;
    let other_channel = token_with("acme", "u1", &["chat"], &[], 3600);
    let other_account = token_with("globex", "u2", &["*"], &[], 3600);
    for (path, bearer, status, code) in [
        ("/v1/history?channel=incident-7", "nonsense", 401, "unauthorized"),
        ("/v1/history?channel=incident-7", other_channel.as_str(), 403, "forbidden"),
        ("/v1/history?channel=incident-7&account=globex", ACME_KEY, 403, "forbidden"),
        ("/v1/history?channel=incident-7", ADMIN_KEY, 400, "bad_request"),
        ("/v1/history", ACME_KEY, 400, "bad_request"),
        ("/v1/history?channel=incident-7&limit=0", ACME_KEY, 400, "bad_request"),
        ("/v1/history?channel=incident-7&limit=5000", ACME_KEY, 400, "bad_request"),
        ("/v1/history?channel=incident-7&since=c1.zz.nowhere.3", ACME_KEY, 400, "invalid_cursor"),
        ("/v1/history?channel=incident-7&since=garbage", ACME_KEY, 400, "invalid_cursor"),
        ("/v1/history?channel=incident-7&since_ms=1&before=c1.zz.nowhere.3", ACME_KEY, 400, "bad_request"),
    ] {
        let (s, v) = get(&edge, path, bearer).await;
        assert_eq!((s, v["error"]["code"].as_str().unwrap_or_default()), (status, code), "{path}: {v}");
    }
    // Another account's token reads its own account: nothing of acme's.
    let (s, v) = get(&edge, "/v1/history?channel=incident-7", &other_account).await;
    assert_eq!(s, 200, "{v}");
    assert!(seqs(&v).is_empty());
    // The admin key reads any account it names.
    let (s, v) = get(&edge, "/v1/history?channel=incident-7&account=acme", ADMIN_KEY).await;
    assert_eq!((s, seqs(&v)), (200, vec![1]));
}

#[tokio::test]
async fn channel_info_says_who_is_on_a_channel_and_where_it_ends() {
    let edge = TestEdge::start().await;
    let (_, v) = get(&edge, "/v1/channels/info?channel=incident-7", ACME_KEY).await;
    assert_eq!((v["occupancy"].as_u64(), v["last_message"].is_null()), (Some(0), true), "{v}");

    let token = token_with("acme", "u1", &["incident-*"], &[], 3600);
    let mut ws = raw_ws(edge.addr, Some(&token)).await.unwrap();
    expect_type(&mut ws, "welcome").await;
    send(&mut ws, json!({"type": "subscribe", "id": 1, "channel": "incident-7"})).await;
    expect_type(&mut ws, "subscribed").await;
    let published = edge.publish_seq("acme", "incident-7", 5).await;
    edge.publish_seq("acme", "chat", 6).await;

    // The presence join follows the `subscribed` reply: wait for it (bounded).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let v = loop {
        let (s, v) = get(&edge, "/v1/channels/info?channel=incident-7", &token).await;
        assert_eq!(s, 200, "{v}");
        if v["occupancy"].as_u64() == Some(1) || tokio::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!((v["occupancy"].as_u64(), v["users"].clone()), (Some(1), json!(["u1"])), "{v}");
    assert_eq!(v["last_message"]["id"], published["message_id"], "{v}");
    assert_eq!(v["last_message"]["cursor"], published["cursor"], "{v}");
    let (s, v) = get(&edge, "/v1/channels/info?channel=incident-7", &token_with("acme", "u2", &["chat"], &[], 3600)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
}

/// The Rust client's `history`: the newest page, older pages back to the start without a gap
/// or an overlap, then a subscription from the newest page's cursor continues exactly.
#[tokio::test]
async fn the_rust_client_reads_history_then_continues_live() {
    let edge = TestEdge::start().await;
    for n in 0..25 {
        edge.publish_seq("acme", "incident-7", n).await;
        edge.publish_seq("acme", "other", n).await;
    }
    let client = herald_client::Client::connect(herald_client::ClientConfig::new(edge.url(), token_with("acme", "alice", &["incident-*"], &[], 3600)));
    let seq = |m: &herald_client::Message| serde_json::from_str::<Value>(m.data.get()).unwrap()["seq"].as_u64().unwrap();
    let newest = client.history("incident-7", &herald_client::HistoryOptions { limit: Some(10), ..Default::default() }).await.unwrap();
    assert_eq!(newest.messages.iter().map(seq).collect::<Vec<_>>(), (15..25).collect::<Vec<_>>());
    let mut all: Vec<u64> = newest.messages.iter().map(seq).collect();
    let mut before = newest.before.clone();
    while let Some(b) = before {
        let page = client.history("incident-7", &herald_client::HistoryOptions { limit: Some(10), before: Some(b), ..Default::default() }).await.unwrap();
        all.splice(0..0, page.messages.iter().map(seq));
        before = if page.more { page.before } else { None };
    }
    assert_eq!(all, (0..25).collect::<Vec<_>>(), "every record once, in order");
    let mut sub = client.subscribe_with("incident-7", Some(newest.cursor.clone()), false).await.unwrap();
    edge.publish_seq("acme", "incident-7", 25).await;
    assert_eq!(seq(&tokio::time::timeout(PATIENCE, sub.next_message()).await.unwrap().unwrap()), 25, "live from the page's cursor: nothing missed or repeated");
    let e = client.history("billing", &Default::default()).await.unwrap_err();
    assert!(matches!(&e, herald_client::ClientError::Refused { code, .. } if code == "forbidden"), "{e}");
    client.close().await;
}
