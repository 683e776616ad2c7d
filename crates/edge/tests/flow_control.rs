//! Slow consumers, heartbeats, drains and presence: the connection lifecycle.

mod common;

use common::*;
use herald_client::{Client, ClientConfig, Event};
use serde_json::json;
use std::time::Duration;

fn metric(e: &TestEdge, name: &str) -> f64 {
    e.edge.metrics.render().lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_with_lagged_while_others_get_everything_and_it_resumes_losslessly() {
    let e = TestEdge::start_with(|c| {
        c.edge.max_queued_bytes = 256 << 10;
        c.edge.lag_close_grace_ms = 60_000;
    })
    .await;
    let fast = Client::connect(ClientConfig::new(e.url(), e.token("acme", "fast")));
    let mut fast_sub = fast.subscribe("c").await.unwrap();
    let mut slow = raw_ws(e.addr, Some(&e.token("acme", "slow"))).await.unwrap();
    send(&mut slow, json!({"type":"subscribe","id":1,"channel":"c"})).await;
    let subscribed_at = expect_type(&mut slow, "subscribed").await["cursor"].as_str().unwrap().to_owned();
    // From here on the slow client reads nothing, so its socket buffers and then its queue fill.
    let pad = "p".repeat(15_000);
    let mut published = 0u64;
    while metric(&e, "herald_lagged_disconnects_total") < 1.0 {
        assert!(published < 20_000, "the slow client was never cut");
        let records: Vec<_> = (0..5).map(|i| json!({"account":"acme","channel":"c","data":{"seq": published + i, "pad": pad}})).collect();
        let (s, _) = e.publish(json!({ "records": records })).await;
        assert_eq!(s, 200);
        published += 5;
        // The fast client keeps up, and gets every record.
        for n in published - 5..published {
            let m = tokio::time::timeout(PATIENCE, fast_sub.next_message()).await.unwrap().unwrap();
            assert_eq!(serde_json::from_str::<serde_json::Value>(m.data.get()).unwrap()["seq"], n);
        }
    }
    for i in 0..5 {
        e.publish_seq("acme", "c", published + i).await;
    }
    published += 5;
    for _ in 0..5 {
        tokio::time::timeout(PATIENCE, fast_sub.next_message()).await.unwrap().unwrap();
    }
    // The slow client now reads: what was already in flight, then `lagged` and close 4008.
    let (frames, close) = read_until_closed(&mut slow).await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4008));
    assert_eq!(frames.last().unwrap()["code"], "lagged");
    let msgs: Vec<_> = frames.iter().filter(|f| f["type"] == "message").collect();
    let seen: Vec<u64> = msgs.iter().map(|m| m["data"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>(), "what it got before the cut is in order");
    // It resumes from its last cursor and gets exactly the rest.
    // (A burst larger than the queue can cut it before anything was written: then the cursor
    // from `subscribed` is where it resumes.)
    let cursor = msgs.last().map(|m| m["cursor"].as_str().unwrap().to_owned()).unwrap_or(subscribed_at);
    let mut again = raw_ws(e.addr, Some(&e.token("acme", "slow"))).await.unwrap();
    send(&mut again, json!({"type":"subscribe","id":2,"channel":"c","since": cursor})).await;
    assert_eq!(expect_type(&mut again, "subscribed").await["recovered"], true);
    let mut next = seen.len() as u64;
    while next < published {
        let m = expect_type(&mut again, "message").await;
        assert_eq!(m["data"]["seq"], next);
        next += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_heartbeats_is_closed_and_one_that_answers_stays() {
    let e = TestEdge::start_with(|c| c.edge.heartbeat_ms = 1000).await;
    let mut silent = raw_ws(e.addr, Some(&e.token("acme", "s"))).await.unwrap();
    let mut alive = Client::connect(ClientConfig::new(e.url(), e.token("acme", "a")));
    let mut sub = alive.subscribe("c").await.unwrap();
    let (frames, close) = read_until_closed(&mut silent).await;
    assert!(frames.iter().any(|f| f["type"] == "ping"));
    assert_eq!(close.map(|c| c.reason.to_string()), Some("heartbeat timeout".into()));
    assert_eq!(metric(&e, "herald_heartbeat_timeouts_total"), 1.0);
    // The SDK answers pings: still connected, still receiving.
    e.publish_seq("acme", "c", 1).await;
    assert!(tokio::time::timeout(PATIENCE, sub.next_message()).await.unwrap().is_some());
    assert!(matches!(*alive.state().borrow(), herald_client::ConnState::Connected { .. }));
    alive.close().await;
    alive = Client::connect(ClientConfig::new(e.url(), e.token("acme", "a")));
    drop(alive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_tells_every_client_to_reconnect_with_spread_delays_and_readyz_turns_503() {
    let e = TestEdge::start_with(|c| c.edge.drain_grace_ms = 10_000).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut c = raw_ws(e.addr, Some(&e.token("acme", &format!("u{i}")))).await.unwrap();
        expect_type(&mut c, "welcome").await;
        clients.push(c);
    }
    let token = e.token("acme", "sse");
    let sse = tokio::spawn({
        let addr = e.addr;
        async move { http_request(addr, "GET", &format!("/v1/sse?channels=c&token={token}"), None, "").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(http_get_json(e.addr, "/readyz").await.0, 200);
    e.edge.drain.cancel();
    let mut delays = Vec::new();
    for c in &mut clients {
        let (frames, close) = read_until_closed(c).await;
        let r = frames.iter().find(|f| f["type"] == "reconnect").expect("a reconnect frame");
        assert_eq!(r["reason"], "drain");
        let after = r["after_ms"].as_u64().unwrap();
        assert!(after <= 5_000, "spread over half the grace period");
        delays.push(after);
        assert_eq!(close.map(|c| u16::from(c.code)), Some(1001));
    }
    delays.dedup();
    assert!(delays.len() > 1, "delays are jittered, not identical");
    let (_, _, body) = sse.await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains(r#""type":"reconnect""#));
    // New work is refused while the drain finishes; the server stops once everyone is gone.
    let _ = raw_ws(e.addr, Some(&e.token("acme", "late"))).await.map(|_| panic!("a draining node accepted a WebSocket")).ok();
    tokio::time::timeout(PATIENCE, e.served).await.expect("serve returns after the drain").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_members_and_sends_join_and_leave_to_those_who_asked() {
    let e = TestEdge::start().await;
    let watcher = Client::connect(ClientConfig::new(e.url(), e.token("acme", "watcher")));
    let mut w = watcher.subscribe_with("room", None, true).await.unwrap();
    let mut joins = 0;
    let guest = Client::connect(ClientConfig::new(e.url(), e.token("acme", "guest")));
    let _g = guest.subscribe("room").await.unwrap();
    let mut guest_conn = None;
    while guest_conn.is_none() {
        if let Event::Join { user, connection_id, .. } = tokio::time::timeout(PATIENCE, w.next()).await.unwrap().unwrap() {
            joins += 1;
            if user == "guest" {
                guest_conn = Some(connection_id);
            }
        }
    }
    assert!(joins >= 1);
    let p = watcher.presence("room").await.unwrap();
    assert_eq!(p["occupancy"], 2);
    let mut users: Vec<_> = p["members"].as_array().unwrap().iter().map(|m| m["user"].as_str().unwrap().to_owned()).collect();
    users.sort();
    assert_eq!(users, vec!["guest", "watcher"]);
    guest.close().await;
    loop {
        if let Event::Leave { connection_id, .. } = tokio::time::timeout(PATIENCE, w.next()).await.unwrap().unwrap() {
            assert_eq!(Some(connection_id), guest_conn);
            break;
        }
    }
    // Another account's presence is not visible.
    let beta = Client::connect(ClientConfig::new(e.url(), e.token("beta", "b")));
    assert_eq!(beta.presence("room").await.unwrap()["occupancy"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_is_read_only_while_it_has_subscribers_and_resumes_work_after_it_restarts() {
    let e = TestEdge::start_with(|c| c.edge.consumer_linger_ms = 100).await;
    // The node's probe always reads its own partition; pick an account elsewhere.
    let p = |a: &str| herald_core::partition_for(&herald_core::AccountId::new(a).unwrap(), 16);
    let account = (0..100).map(|i| format!("acct{i}")).find(|a| p(a) != p("herald-probe")).unwrap();
    let account = account.as_str();
    assert_eq!(metric(&e, "herald_partitions_consumed"), 1.0);
    let mut ws = raw_ws(e.addr, Some(&e.token(account, "u"))).await.unwrap();
    send(&mut ws, json!({"type":"subscribe","id":1,"channel":"c"})).await;
    expect_type(&mut ws, "subscribed").await;
    assert_eq!(metric(&e, "herald_partitions_consumed"), 2.0);
    let first = e.publish_seq(account, "c", 0).await;
    expect_type(&mut ws, "message").await;
    send(&mut ws, json!({"type":"unsubscribe","id":2,"channel":"c"})).await;
    expect_type(&mut ws, "unsubscribed").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(&e, "herald_partitions_consumed") != 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "the idle partition's consumer stops after the linger");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Published while nobody on this node reads the partition; a resume still gets it.
    e.publish_seq(account, "c", 1).await;
    send(&mut ws, json!({"type":"subscribe","id":3,"channel":"c","since": first["cursor"]})).await;
    assert_eq!(expect_type(&mut ws, "subscribed").await["recovered"], true);
    assert_eq!(expect_type(&mut ws, "message").await["data"]["seq"], 1);
    e.publish_seq(account, "c", 2).await;
    assert_eq!(expect_type(&mut ws, "message").await["data"]["seq"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_of_a_latest_value_channel_gets_the_newest_per_key_while_a_fast_one_gets_everything() {
    let e = TestEdge::start_with(|c| {
        c.edge.latest_value = vec![herald_config::LatestValueConfig { channels: herald_core::ChannelPattern::parse("loc:*").unwrap(), key: "/v".into() }];
        // Raw test clients do not answer the server's pings.
        c.edge.heartbeat_ms = 600_000;
        // Conflation starts at 2 MiB queued: the fast reader never gets there.
        c.edge.max_queued_bytes = 8 << 20;
        c.edge.conflate_above_bytes = 2 << 20;
    })
    .await;
    let token = e.token("acme", "u");
    let (mut fast, mut slow) = (raw_ws(e.addr, Some(&token)).await.unwrap(), raw_ws(e.addr, Some(&token)).await.unwrap());
    for c in [&mut fast, &mut slow] {
        send(c, json!({"type":"subscribe","id":1,"channel":"loc:bus"})).await;
        expect_type(c, "subscribed").await;
    }
    const TOTAL: u64 = 5000;
    const KEYS: u64 = 4;
    // The fast subscriber reads as records come.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while (got.len() as u64) < TOTAL {
            let m = expect_type(&mut fast, "message").await;
            got.push((m["data"]["v"].as_u64().unwrap(), m["data"]["seq"].as_u64().unwrap(), m["cursor"].as_str().unwrap().to_owned()));
        }
        got
    });
    // 5000 records of 8 KB (40 MB): far more than a socket's kernel buffers plus the 2 MiB
    // threshold, so the slow one's queue backs up.
    let pad = "x".repeat(8000);
    for batch in 0..TOTAL / 50 {
        let records: Vec<_> = (batch * 50..batch * 50 + 50).map(|seq| json!({"account":"acme","channel":"loc:bus","data":{"v": seq % KEYS, "seq": seq, "pad": pad}})).collect();
        let (status, v) = e.publish(json!({ "records": records })).await;
        assert_eq!(status, 200, "{v}");
    }
    let fast_got = reader.await.unwrap();
    assert_eq!(fast_got.iter().map(|(_, s, _)| *s).collect::<Vec<_>>(), (0..TOTAL).collect::<Vec<_>>(), "the fast subscriber gets every record");

    // The slow one now reads: per key, values only move forward, and it ends on the newest.
    let mut newest: std::collections::HashMap<u64, u64> = Default::default();
    let mut received = 0u64;
    while (0..KEYS).any(|k| newest.get(&k) != Some(&(TOTAL - KEYS + k))) {
        let m = expect_type(&mut slow, "message").await;
        let (v, seq) = (m["data"]["v"].as_u64().unwrap(), m["data"]["seq"].as_u64().unwrap());
        assert!(newest.get(&v).is_none_or(|&prev| prev < seq), "key {v}: {seq} after a newer value");
        newest.insert(v, seq);
        received += 1;
    }
    assert!(received < TOTAL, "the backed-up queue conflated ({received} of {TOTAL} delivered)");

    // A resume on the channel sends the newest record per key after the cursor, not the history.
    let mut late = raw_ws(e.addr, Some(&token)).await.unwrap();
    send(&mut late, json!({"type":"subscribe","id":1,"channel":"loc:bus","since": fast_got[0].2})).await;
    expect_type(&mut late, "subscribed").await;
    let mut replayed = Vec::new();
    for _ in 0..KEYS {
        let m = expect_type(&mut late, "message").await;
        replayed.push(m["data"]["seq"].as_u64().unwrap());
    }
    assert_eq!(replayed, (TOTAL - KEYS..TOTAL).collect::<Vec<_>>());
    e.publish_seq("acme", "loc:bus", 0).await;
    let next = expect_type(&mut late, "message").await;
    assert_eq!(next["data"]["seq"], 0, "then live records, nothing older");
}

/// A raw client subscribed to a low-priority (`telemetry:truck`) and a high-priority
/// (`incidents`) channel.
async fn telemetry_and_incidents(e: &TestEdge) -> Conn {
    let mut ws = raw_ws(e.addr, Some(&e.token("acme", "u"))).await.unwrap();
    for (id, ch) in [(1, "telemetry:truck"), (2, "incidents")] {
        send(&mut ws, json!({"type":"subscribe","id":id,"channel":ch})).await;
        expect_type(&mut ws, "subscribed").await;
    }
    ws
}

fn priorities(c: &mut herald_config::Config) {
    use herald_config::{Priority, PriorityConfig};
    c.edge.priority = vec![
        PriorityConfig { channels: herald_core::ChannelPattern::parse("incidents").unwrap(), priority: Priority::High },
        PriorityConfig { channels: herald_core::ChannelPattern::parse("telemetry:*").unwrap(), priority: Priority::Low },
    ];
    // Raw test clients do not answer the server's pings.
    c.edge.heartbeat_ms = 600_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_record_overtakes_a_backlog_of_low_priority_ones_on_one_connection() {
    let e = TestEdge::start_with(|c| {
        priorities(c);
        // Room for the whole flood: this test is about order, not overflow.
        c.edge.max_queued_bytes = 64 << 20;
    })
    .await;
    let mut ws = telemetry_and_incidents(&e).await;
    // 5000 records of 8 KB (40 MB) on the low-priority channel, which the client does not read
    // yet: a few MB fit the sockets' kernel buffers, the rest waits in the connection's queue.
    const FLOOD: u64 = 5000;
    let pad = "x".repeat(8000);
    for batch in 0..FLOOD / 50 {
        let records: Vec<_> = (batch * 50..batch * 50 + 50).map(|seq| json!({"account":"acme","channel":"telemetry:truck","data":{"seq": seq, "pad": pad}})).collect();
        assert_eq!(e.publish(json!({ "records": records })).await.0, 200);
    }
    e.publish(json!({"account":"acme","channel":"incidents","data":{"id":"P1"}})).await;
    // The incident arrives after what was already in flight, ahead of the queued backlog; then
    // the backlog, complete and in order.
    let mut low = Vec::new();
    let mut incident_after = None;
    while (low.len() as u64) < FLOOD || incident_after.is_none() {
        let m = expect_type(&mut ws, "message").await;
        match m["channel"].as_str().unwrap() {
            "incidents" => incident_after = Some(low.len() as u64),
            _ => low.push(m["data"]["seq"].as_u64().unwrap()),
        }
    }
    let overtook = FLOOD - incident_after.unwrap();
    assert!(overtook > FLOOD / 2, "the incident waited behind {} of {FLOOD} low-priority records", incident_after.unwrap());
    assert_eq!(low, (0..FLOOD).collect::<Vec<_>>(), "every low-priority record, once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_queue_sheds_the_low_priority_subscription_and_keeps_the_connection() {
    let e = TestEdge::start_with(|c| {
        priorities(c);
        c.edge.max_queued_bytes = 1 << 20;
    })
    .await;
    let mut ws = telemetry_and_incidents(&e).await;
    // Flood the low-priority channel until the stalled connection's queue overflows.
    let pad = "x".repeat(8000);
    let mut published = 0u64;
    while metric(&e, "herald_shed_subscriptions_total") < 1.0 {
        assert!(published < 20_000, "nothing was shed");
        let records: Vec<_> = (published..published + 50).map(|seq| json!({"account":"acme","channel":"telemetry:truck","data":{"seq": seq, "pad": pad}})).collect();
        assert_eq!(e.publish(json!({ "records": records })).await.0, 200);
        published += 50;
    }
    assert_eq!(metric(&e, "herald_lagged_disconnects_total"), 0.0, "the connection itself survives");
    e.publish(json!({"account":"acme","channel":"incidents","data":{"id":"P1"}})).await;
    // The client reads: low-priority records up to where they were shed, the shed notice, and
    // the incident; it resubscribes from its last telemetry cursor and gets the rest.
    let (mut low, mut cursor, mut ended, mut incident) = (Vec::new(), None::<String>, false, false);
    while !(ended && incident) {
        let Next::Frame(v) = ws.next().await else { panic!("the connection ended") };
        match (v["type"].as_str().unwrap(), v["channel"].as_str()) {
            ("message", Some("incidents")) => incident = true,
            ("message", _) => {
                assert!(!ended, "no telemetry record after the subscription ended");
                low.push(v["data"]["seq"].as_u64().unwrap());
                cursor = Some(v["cursor"].as_str().unwrap().to_owned());
            }
            ("unsubscribed", Some("telemetry:truck")) => {
                assert_eq!(v["code"], "lagged");
                ended = true;
            }
            _ => {}
        }
    }
    let Some(cursor) = cursor else { panic!("no telemetry record arrived before the shed") };
    send(&mut ws, json!({"type":"subscribe","id":3,"channel":"telemetry:truck","since":cursor})).await;
    assert_eq!(expect_type(&mut ws, "subscribed").await["recovered"], true);
    while (low.len() as u64) < published {
        let m = expect_type(&mut ws, "message").await;
        low.push(m["data"]["seq"].as_u64().unwrap());
    }
    assert_eq!(low, (0..published).collect::<Vec<_>>(), "nothing lost, nothing twice");
}
