//! Ordered delivery and exact resume, end to end over real sockets.

mod common;

use common::*;
use herald_client::{Client, Event};
use herald_protocol::Encoding;
use serde_json::json;
use std::time::Duration;

// Every WebSocket test here runs over JSON v1 and over the compact encoding.
over_both_encodings!(
    a_subscriber_receives_1000_published_records_in_order,
    a_client_dropped_at_random_points_while_publishing_continues_sees_every_record_once_in_order,
    resuming_with_a_cursor_during_concurrent_publishing_has_no_gap_and_no_duplicate_at_the_seam,
    a_cursor_past_retention_or_from_another_epoch_answers_recovered_false,
    a_paused_channel_delivers_nothing_and_resumes_exactly_where_it_stopped,
    max_rate_delivers_everything_in_order_but_at_most_that_often,
    max_rate_on_a_latest_value_channel_sends_the_newest_per_key_and_a_pause_flushes_what_it_held,
    publish_frames_of_one_message_are_answered_in_order_and_the_refused_ones_change_nothing
);

/// Several `publish` frames in one WebSocket message (the edge appends the accepted ones as one
/// batch): every frame is answered, in order; a forbidden channel, a bad channel name and an
/// oversized payload are refused one by one and publish nothing; the others are delivered in
/// order, with the cursors their replies named.
async fn publish_frames_of_one_message_are_answered_in_order_and_the_refused_ones_change_nothing(encoding: Encoding) {
    use futures_util::SinkExt;
    let e = TestEdge::start().await;
    let token = token_with("acme", "u", &["*"], &["chat:*"], 3600);
    let mut c = raw_ws_speaking(e.addr, Some(&token), encoding).await.unwrap();
    send(&mut c, json!({"type":"subscribe","id":"s","channel":"chat:1"})).await;
    expect_type(&mut c, "subscribed").await;
    let big = "x".repeat(17 << 10);
    let frames = [
        json!({"type":"publish","id":1,"channel":"chat:1","data":{"n":1}}),
        json!({"type":"publish","id":2,"channel":"chat:1","data":{"n":2}}),
        json!({"type":"publish","id":3,"channel":"billing","data":{"n":3}}),
        json!({"type":"publish","id":4,"channel":"chat:1","data":{"n":4}}),
        json!({"type":"publish","id":5,"channel":"bad channel","data":{"n":5}}),
        json!({"type":"publish","id":6,"channel":"chat:1","data":{"big":big}}),
        json!({"type":"ping","id":7}),
        json!({"type":"publish","id":8,"channel":"chat:1","data":{"n":8}}),
    ];
    c.ws.send(batch_message(encoding, &frames)).await.unwrap();
    let (mut replies, mut records) = (Vec::new(), Vec::new());
    while replies.len() < frames.len() || records.len() < 4 {
        let Next::Frame(f) = c.next().await else { panic!("connection ended") };
        match f["type"].as_str().unwrap() {
            "message" => records.push(f),
            "ping" => {}
            _ => replies.push(f),
        }
    }
    let kinds: Vec<(i64, String, String)> =
        replies.iter().map(|r| (r["id"].as_i64().unwrap(), r["type"].as_str().unwrap().to_owned(), r["code"].as_str().unwrap_or("").to_owned())).collect();
    let want = [(1, "published", ""), (2, "published", ""), (3, "error", "forbidden"), (4, "published", ""), (5, "error", "invalid_channel"), (6, "error", "message_too_large"), (7, "pong", ""), (8, "published", "")];
    assert_eq!(kinds, want.map(|(i, t, c)| (i, t.to_owned(), c.to_owned())), "{replies:?}");
    let ns: Vec<u64> = records.iter().map(|m| m["data"]["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, [1, 2, 4, 8], "accepted records, in order, once");
    let published: Vec<&serde_json::Value> = replies.iter().filter(|r| r["type"] == "published").map(|r| &r["cursor"]).collect();
    let delivered: Vec<&serde_json::Value> = records.iter().map(|m| &m["cursor"]).collect();
    assert_eq!(published, delivered, "each reply names its record's cursor");
}

fn seq(m: &herald_client::Message) -> u64 {
    serde_json::from_str::<serde_json::Value>(m.data.get()).unwrap()["seq"].as_u64().unwrap()
}

async fn a_subscriber_receives_1000_published_records_in_order(encoding: Encoding) {
    let e = TestEdge::start().await;
    let c = Client::connect(client_config(e.url(), e.token("acme", "u1"), encoding));
    let mut sub = c.subscribe("incidents").await.unwrap();
    for batch in 0..10u64 {
        let records: Vec<_> = (0..100u64).map(|i| json!({"account":"acme","channel":"incidents","data":{"seq": batch * 100 + i}})).collect();
        let (status, v) = e.publish(json!({ "records": records })).await;
        assert_eq!(status, 200, "{v}");
    }
    for n in 0..1000 {
        let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("record arrives").unwrap();
        assert_eq!(seq(&m), n);
    }
}

async fn a_client_dropped_at_random_points_while_publishing_continues_sees_every_record_once_in_order(encoding: Encoding) {
    const N: u64 = 2000;
    let e = TestEdge::start().await;
    let mut cfg = client_config(e.url(), e.token("acme", "u1"), encoding);
    cfg.backoff_initial = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(50);
    let c = Client::connect(cfg);
    let mut sub = c.subscribe("incidents").await.unwrap();
    let publisher = tokio::spawn({
        let addr = e.addr;
        async move {
            for n in 0..N {
                let body = json!({"account":"acme","channel":"incidents","data":{"seq": n}}).to_string();
                let (status, _) = http_post(addr, "/v1/publish", ADMIN_KEY, &body).await;
                assert_eq!(status, 200);
                if n % 97 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    });
    let chaos = tokio::spawn({
        let c = c.clone();
        async move {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 150 + 20)).await;
                c.drop_connection().await;
            }
        }
    });
    let mut got = Vec::new();
    let mut resumes = 0;
    while got.len() < N as usize {
        match tokio::time::timeout(PATIENCE, sub.next()).await.expect("events keep coming").unwrap() {
            Event::Message(m) => got.push(seq(&m)),
            Event::Subscribed { resumed: true, recovered } => {
                assert!(recovered, "history is retained, so every resume recovers");
                resumes += 1;
            }
            _ => {}
        }
    }
    publisher.await.unwrap();
    chaos.await.unwrap();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every record exactly once, in order");
    assert!(resumes >= 1, "the connection was actually dropped and resumed");
}

/// Without the SDK's dedupe: the raw stream itself must have no gap and no duplicate at the
/// seam between replayed and live records, while publishing goes on.
async fn resuming_with_a_cursor_during_concurrent_publishing_has_no_gap_and_no_duplicate_at_the_seam(encoding: Encoding) {
    const N: u64 = 3000;
    let e = TestEdge::start().await;
    let token = e.token("acme", "u1");
    let publisher = tokio::spawn({
        let addr = e.addr;
        async move {
            for chunk in 0..N / 5 {
                let records: Vec<_> = (0..5).map(|i| json!({"account":"acme","channel":"c","data":{"seq": chunk * 5 + i}})).collect();
                let (status, _) = http_post(addr, "/v1/publish", ADMIN_KEY, &json!({ "records": records }).to_string()).await;
                assert_eq!(status, 200);
            }
        }
    });
    let mut next_seq = 0u64;
    let mut cursor: Option<String> = None;
    let mut rounds = 0;
    while next_seq < N {
        rounds += 1;
        let mut ws = raw_ws_speaking(e.addr, Some(&token), encoding).await.unwrap();
        let mut sub = json!({"type":"subscribe","id":1,"channel":"c"});
        if let Some(c) = &cursor {
            sub["since"] = c.clone().into();
        }
        send(&mut ws, sub).await;
        let mut take = rand::random::<u64>() % 400 + 1;
        'conn: loop {
            let Next::Frame(f) = ws.next().await else { panic!("connection ended") };
            {
                match f["type"].as_str().unwrap() {
                    "subscribed" => {
                        if cursor.is_some() {
                            assert_eq!(f["recovered"], true);
                        } else {
                            // First subscription: start from whatever is live now.
                            cursor = Some(f["cursor"].as_str().unwrap().to_owned());
                        }
                    }
                    "message" => {
                        let s = f["data"]["seq"].as_u64().unwrap();
                        if rounds == 1 && next_seq == 0 {
                            next_seq = s; // the first live record may be any
                        }
                        assert_eq!(s, next_seq, "gap or duplicate at round {rounds}");
                        next_seq += 1;
                        cursor = Some(f["cursor"].as_str().unwrap().to_owned());
                        take -= 1;
                        if take == 0 || next_seq == N {
                            break 'conn;
                        }
                    }
                    _ => {}
                }
            }
        }
        drop(ws); // abrupt: no close handshake
    }
    publisher.await.unwrap();
    assert!(rounds > 3, "the test resumed several times ({rounds})");
}

async fn a_cursor_past_retention_or_from_another_epoch_answers_recovered_false(encoding: Encoding) {
    let e = TestEdge::start_with(|c| {
        c.bus.partitions = 1;
        c.bus.retention_records = 20;
        // The node's own history cache would still hold them (and rightly recover): off here.
        c.edge.history_cache_records = 0;
    })
    .await;
    let first = e.publish_seq("acme", "c", 0).await;
    let first_cursor = first["cursor"].as_str().unwrap().to_owned();
    for n in 1..100 {
        e.publish_seq("acme", "c", n).await;
    }
    let mut ws = raw_ws_speaking(e.addr, Some(&e.token("acme", "u")), encoding).await.unwrap();
    send(&mut ws, json!({"type":"subscribe","id":1,"channel":"c","since": first_cursor})).await;
    let s = expect_type(&mut ws, "subscribed").await;
    assert_eq!(s["recovered"], false, "records after the cursor are gone");
    let other_epoch = format!("c1.zzz.{}", first_cursor.splitn(3, '.').nth(2).unwrap());
    send(&mut ws, json!({"type":"subscribe","id":2,"channel":"d","since": other_epoch})).await;
    let s = expect_type(&mut ws, "subscribed").await;
    assert_eq!((s["id"].clone(), s["recovered"].clone()), (json!(2), json!(false)));
    // A cursor from a region this stream never saw: nothing it could have seen is known, the
    // bounded scan finds no proof, and the history is reported incomplete.
    send(&mut ws, json!({"type":"subscribe","id":3,"channel":"e","since": "c2.abc.nowhere.5.elsewhere.9"})).await;
    let s = expect_type(&mut ws, "subscribed").await;
    assert_eq!((s["id"].clone(), s["recovered"].clone()), (json!(3), json!(false)));
    // Live records still flow after recovered:false.
    e.publish_seq("acme", "c", 100).await;
    let m = expect_type(&mut ws, "message").await;
    assert_eq!(m["data"]["seq"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_publishes_once() {
    let e = TestEdge::start().await;
    let body = json!({"account":"acme","channel":"c","data":{"x":1},"idempotency_key":"evt-1"});
    let (_, a) = e.publish(body.clone()).await;
    let (_, b) = e.publish(body).await;
    assert_eq!(a["duplicate"], false);
    assert_eq!(b["duplicate"], true);
    assert_eq!(a["cursor"], b["cursor"]);
    assert_eq!(a["message_id"], b["message_id"]);
    // An account key implies its account.
    let (status, v) = http_post(e.addr, "/v1/publish", ACME_KEY, &json!({"channel":"c","data":1}).to_string()).await;
    assert_eq!(status, 200, "{v}");
}

async fn a_paused_channel_delivers_nothing_and_resumes_exactly_where_it_stopped(encoding: Encoding) {
    let e = TestEdge::start().await;
    let mut ws = raw_ws_speaking(e.addr, Some(&e.token("acme", "u")), encoding).await.unwrap();
    send(&mut ws, json!({"type":"subscribe","id":1,"channel":"c"})).await;
    expect_type(&mut ws, "subscribed").await;
    e.publish_seq("acme", "c", 0).await;
    assert_eq!(expect_type(&mut ws, "message").await["data"]["seq"], 0);
    send(&mut ws, json!({"type":"pause","id":2,"channel":"c"})).await;
    let paused = expect_type(&mut ws, "paused").await;
    assert!(paused["cursor"].as_str().unwrap().starts_with("c1."));
    for n in 1..4 {
        e.publish_seq("acme", "c", n).await;
    }
    // A paused screen is not someone looking: presence (what push and "who is viewing" read)
    // leaves it out until it resumes.
    let mut watcher = raw_ws_speaking(e.addr, Some(&e.token("acme", "w")), encoding).await.unwrap();
    send(&mut watcher, json!({"type":"presence","id":1,"channel":"c"})).await;
    assert_eq!(expect_type(&mut watcher, "presence").await["occupancy"], 0, "a paused subscription is not present");
    // Nothing arrives while paused: the pong comes back before any message.
    send(&mut ws, json!({"type":"ping","id":3})).await;
    loop {
        let Next::Frame(f) = ws.next().await else { panic!("closed") };
        assert_ne!(f["type"], "message", "a paused channel delivered {f}");
        if f["type"] == "pong" {
            break;
        }
    }
    send(&mut ws, json!({"type":"resume","id":4,"channel":"c"})).await;
    let s = expect_type(&mut ws, "subscribed").await;
    assert_eq!((s["id"].clone(), s["recovered"].clone()), (json!(4), json!(true)));
    for n in 1..4 {
        assert_eq!(expect_type(&mut ws, "message").await["data"]["seq"], n, "what was published while paused, in order");
    }
    e.publish_seq("acme", "c", 4).await;
    assert_eq!(expect_type(&mut ws, "message").await["data"]["seq"], 4);
    send(&mut watcher, json!({"type":"presence","id":2,"channel":"c"})).await;
    let p = expect_type(&mut watcher, "presence").await;
    assert_eq!((p["occupancy"].clone(), p["members"][0]["user"].clone()), (json!(1), json!("u")), "present again after resume: {p}");
    send(&mut ws, json!({"type":"resume","id":5,"channel":"c"})).await;
    assert_eq!(expect_type(&mut ws, "error").await["code"], "not_subscribed");
}

/// Reads WebSocket messages until `n` records of `channel` have arrived; returns their `seq`s
/// (or `v`s with `field`) and how many WebSocket messages carried them.
async fn read_records(ws: &mut Conn, n: usize, field: &str) -> (Vec<u64>, usize) {
    let (mut got, mut carriers) = (Vec::new(), 0);
    while got.len() < n {
        let frames = ws.next_message().await.expect("records arrive");
        let before = got.len();
        for v in frames {
            if v["type"] == "message" {
                got.push(v["data"][field].as_u64().unwrap());
            }
        }
        carriers += usize::from(got.len() > before);
    }
    (got, carriers)
}

async fn max_rate_delivers_everything_in_order_but_at_most_that_often(encoding: Encoding) {
    let e = TestEdge::start().await;
    let mut ws = raw_ws_speaking(e.addr, Some(&e.token("acme", "u")), encoding).await.unwrap();
    send(&mut ws, json!({"type":"subscribe","id":1,"channel":"c","max_rate":2})).await;
    expect_type(&mut ws, "subscribed").await;
    let started = std::time::Instant::now();
    for n in 0..30 {
        e.publish_seq("acme", "c", n).await;
    }
    let publishing = started.elapsed();
    let (got, carriers) = read_records(&mut ws, 30, "seq").await;
    assert_eq!(got, (0..30).collect::<Vec<_>>(), "nothing lost, nothing twice, in order");
    // One delivery at once, then at most one per half second of publishing (plus the last).
    let allowed = 2 + (publishing.as_secs_f64() * 2.0).ceil() as usize;
    assert!(carriers <= allowed, "{carriers} deliveries for 30 records published over {publishing:?}");
    // Out of range: refused, nothing subscribed.
    for bad in [json!(0), json!(-1), json!(5000), json!("fast")] {
        send(&mut ws, json!({"type":"subscribe","id":2,"channel":"d","max_rate":bad})).await;
        assert_eq!(expect_type(&mut ws, "error").await["code"], "bad_request", "max_rate {bad}");
    }
}

async fn max_rate_on_a_latest_value_channel_sends_the_newest_per_key_and_a_pause_flushes_what_it_held(encoding: Encoding) {
    let e = TestEdge::start_with(|c| {
        c.edge.latest_value = vec![herald_config::LatestValueConfig { channels: herald_core::ChannelPattern::parse("loc:*").unwrap(), key: "/v".into() }];
    })
    .await;
    let mut ws = raw_ws_speaking(e.addr, Some(&e.token("acme", "u")), encoding).await.unwrap();
    // One delivery every 20 s: everything after the first delivery is held.
    send(&mut ws, json!({"type":"subscribe","id":1,"channel":"loc:bus","max_rate":0.05})).await;
    expect_type(&mut ws, "subscribed").await;
    // A subscriber without a rate shows when the node has dispatched every record.
    let mut watcher = raw_ws_speaking(e.addr, Some(&e.token("acme", "w")), encoding).await.unwrap();
    send(&mut watcher, json!({"type":"subscribe","id":1,"channel":"loc:bus"})).await;
    expect_type(&mut watcher, "subscribed").await;
    let records: Vec<_> = (0..40u64).map(|seq| json!({"account":"acme","channel":"loc:bus","data":{"v": seq % 4, "seq": seq}})).collect();
    for r in records {
        assert_eq!(e.publish(r).await.0, 200);
    }
    assert_eq!(read_records(&mut watcher, 40, "seq").await.0, (0..40).collect::<Vec<_>>());
    // The first delivery goes at once, with whatever had arrived by then (one frame: record 0
    // and perhaps a few after it, in order); the rest is held.
    let (first, _) = read_records(&mut ws, 1, "seq").await;
    assert_eq!(first, (0..first.len() as u64).collect::<Vec<_>>(), "the first delivery");
    let delivered = first.len() as u64;
    // A pause queues what is held, newest per key only, before its reply; resume continues
    // exactly after it.
    send(&mut ws, json!({"type":"pause","id":2,"channel":"loc:bus"})).await;
    let mut held = Vec::new();
    loop {
        let Next::Frame(f) = ws.next().await else { panic!("closed") };
        match f["type"].as_str().unwrap() {
            "message" => held.push(f["data"]["seq"].as_u64().unwrap()),
            "paused" => break,
            _ => {}
        }
    }
    let newest: Vec<u64> = (36..40).filter(|&s| s >= delivered).collect();
    assert_eq!(held, newest, "the newest value of each key not yet delivered, in order");
    e.publish_seq("acme", "loc:bus", 40).await;
    send(&mut ws, json!({"type":"resume","id":3,"channel":"loc:bus"})).await;
    assert_eq!(expect_type(&mut ws, "subscribed").await["recovered"], true);
    assert_eq!(expect_type(&mut ws, "message").await["data"]["seq"], 40);
}
