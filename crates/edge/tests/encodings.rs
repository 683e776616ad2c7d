//! The compact encoding next to JSON, and `permessage-deflate` against a third-party client
//! (Python's `websockets`, installed by scripts/install-test-tools.sh).

mod common;

use common::*;
use futures_util::SinkExt;
use herald_client::{Client, ClientConfig};
use herald_protocol::Encoding;
use herald_protocol::proto::encode_client_frame;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compact_client_and_a_json_client_get_the_same_records_with_the_same_cursors() {
    let e = TestEdge::start().await;
    let json = Client::connect(ClientConfig::new(e.url(), e.token("acme", "j")));
    let compact = Client::connect(client_config(e.url(), e.token("acme", "p"), Encoding::Proto));
    let mut a = json.subscribe("incidents").await.unwrap();
    let mut b = compact.subscribe("incidents").await.unwrap();
    // Generated ids, keyed ids (idempotency keys) and one of each payload shape.
    for n in 0..40u64 {
        let mut r = json!({"account":"acme","channel":"incidents","data":{"seq": n, "text": "é\n\"q\""}});
        if n % 3 == 0 {
            r["idempotency_key"] = format!("k-{n}").into();
        }
        assert_eq!(e.publish(r).await.0, 200);
    }
    assert_eq!(e.publish(json!({"account":"acme","channel":"incidents","data":[1, null, "x"]})).await.0, 200);
    let mut got = [Vec::new(), Vec::new()];
    for (i, sub) in [&mut a, &mut b].into_iter().enumerate() {
        for _ in 0..41 {
            let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("record arrives").unwrap();
            got[i].push((m.id, m.cursor, m.ts, m.data.get().to_owned()));
        }
    }
    assert_eq!(got[0], got[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_of_client_frames_is_answered_frame_by_frame_in_the_compact_encoding() {
    let e = TestEdge::start().await;
    let token = e.token("acme", "u");
    let mut c = raw_ws_speaking(e.addr, Some(&token), Encoding::Proto).await.unwrap();
    let frames = [
        json!({"type":"subscribe","id":1,"channel":"chat:1"}),
        json!({"type":"publish","id":2,"channel":"chat:1","data":{"text":"hi"}}),
        json!({"type":"ping","id":3}),
        json!({"type":"subscribe","id":4,"channel":"bad channel"}),
    ];
    let batch: Vec<u8> = frames.iter().flat_map(|f| encode_client_frame(&herald_protocol::decode_client_frame(&f.to_string()).unwrap()).to_vec()).collect();
    c.ws.send(Message::Binary(batch.into())).await.unwrap();
    let mut seen: Vec<Value> = Vec::new();
    while !seen.iter().any(|f| f["type"] == "message") || seen.len() < 5 {
        let Next::Frame(f) = c.next().await else { panic!("connection ended") };
        if f["type"] != "welcome" {
            seen.push(f);
        }
    }
    let by_id = |id: i64| seen.iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no reply to {id}: {seen:?}"));
    assert_eq!(by_id(1)["type"], "subscribed");
    assert_eq!(by_id(2)["type"], "published");
    assert_eq!(by_id(3)["type"], "pong");
    assert_eq!((by_id(4)["type"].clone(), by_id(4)["code"].clone()), (json!("error"), json!("invalid_channel")));
    let m = seen.iter().find(|f| f["type"] == "message").unwrap();
    assert_eq!((m["data"]["text"].clone(), m["cursor"].clone()), (json!("hi"), by_id(2)["cursor"].clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_client_naming_no_subprotocol_gets_text_frames_and_no_extension() {
    let e = TestEdge::start_with(|c| c.edge.compression.enabled = true).await;
    let mut c = raw_ws(e.addr, Some(&e.token("acme", "u"))).await.unwrap();
    let welcome = expect_type(&mut c, "welcome").await;
    assert_eq!(welcome["protocol"], 1);
}

/// Runs a Python `websockets` client (which offers `permessage-deflate` and compresses what it
/// sends): it subscribes with a text frame, reports the negotiated extension, then reads records.
async fn python_client(e: &TestEdge, records: u64, publish: bool) -> Value {
    let python = std::env::var("HERALD_WS_PYTHON").unwrap_or_else(|_| format!("{}/.cache/herald-tools/ws-venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let script = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect
async def main(url, token, n):
    async with connect(url, additional_headers={"Authorization": "Bearer " + token}, compression="deflate") as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "channel": "incidents"}))
        seqs, batched = [], 0
        while True:
            frames = [json.loads(l) for l in (await ws.recv()).split("\n") if l.strip()]
            if any(f["type"] == "subscribed" for f in frames):
                break
        print(json.dumps({"extensions": ws.response.headers.get("Sec-WebSocket-Extensions")}), flush=True)
        while len(seqs) < n:
            frames = [json.loads(l) for l in (await ws.recv()).split("\n") if l.strip()]
            msgs = [f["data"]["seq"] for f in frames if f["type"] == "message"]
            batched += len(msgs) > 1
            seqs += msgs
        print(json.dumps({"seqs": seqs, "batched": batched}), flush=True)
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"#;
    let url = format!("ws://{}/v1/ws", e.addr);
    let mut child = tokio::process::Command::new(&python)
        .args(["-c", script, &url, &e.token("acme", "py"), &records.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("{python} (Python with websockets; run scripts/install-test-tools.sh): {err}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    async fn next(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
        let l = tokio::time::timeout(PATIENCE, lines.next_line()).await.expect("the client reports").unwrap().expect("a line");
        serde_json::from_str(&l).unwrap()
    }
    let mut report = next(&mut lines).await;
    if publish {
        let rs: Vec<_> = (0..records).map(|n| json!({"account":"acme","channel":"incidents","data":{"seq": n, "ent":"incident","id":"PAM4FGS","type":"updated"}})).collect();
        assert_eq!(e.publish(json!({ "records": rs })).await.0, 200);
        let got = next(&mut lines).await;
        report["seqs"] = got["seqs"].clone();
        report["batched"] = got["batched"].clone();
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_negotiates_deflate_and_reads_a_compressed_batch() {
    let e = TestEdge::start_with(|c| c.edge.compression.enabled = true).await;
    let r = python_client(&e, 300, true).await;
    let ext = r["extensions"].as_str().expect("compression was agreed");
    assert!(ext.starts_with("permessage-deflate") && ext.contains("server_no_context_takeover") && ext.contains("client_no_context_takeover"), "{ext}");
    let seqs: Vec<u64> = r["seqs"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..300).collect::<Vec<_>>());
    assert!(r["batched"].as_u64().unwrap() >= 1, "at least one compressed message carried several records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_is_refused_when_off_or_above_the_session_limit_and_the_connection_works_uncompressed() {
    let off = TestEdge::start().await;
    let r = python_client(&off, 3, true).await;
    assert_eq!(r["extensions"], Value::Null);
    assert_eq!(r["seqs"], json!([0, 1, 2]));

    let loaded = TestEdge::start_with(|c| {
        c.edge.compression.enabled = true;
        c.edge.compression.refuse_above_sessions = 1;
    })
    .await;
    let busy = Client::connect(ClientConfig::new(loaded.url(), loaded.token("acme", "busy")));
    let _sub = busy.subscribe("other").await.unwrap();
    let r = python_client(&loaded, 3, true).await;
    assert_eq!(r["extensions"], Value::Null, "one session open: compression refused");
    assert_eq!(r["seqs"], json!([0, 1, 2]));
}

/// Connects a Rust SDK client asking for compression and waits until it is connected; returns
/// whether compression was agreed.
async fn sdk_client_with_compression(e: &TestEdge, encoding: Encoding) -> (Client, bool) {
    let mut config = client_config(e.url(), e.token("acme", "sdk"), encoding);
    config.compression = true;
    let c = Client::connect(config);
    c.wait_connected(PATIENCE).await.unwrap();
    let compressed = matches!(&*c.state().borrow(), herald_client::ConnState::Connected { compressed: true, .. });
    (c, compressed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_reads_compressed_batches_in_both_encodings_and_works_uncompressed_when_refused() {
    let e = TestEdge::start_with(|c| c.edge.compression.enabled = true).await;
    for encoding in [Encoding::Json, Encoding::Proto] {
        let (c, compressed) = sdk_client_with_compression(&e, encoding).await;
        assert!(compressed, "{encoding:?}: compression agreed");
        let channel = format!("incidents-{encoding:?}");
        let mut sub = c.subscribe(&channel).await.unwrap();
        // One request of 300 records: the writer sends them in a few large compressed messages.
        let rs: Vec<_> = (0..300u64).map(|n| json!({"account":"acme","channel":channel,"data":{"seq": n, "ent":"incident","id":"PAM4FGS"}})).collect();
        assert_eq!(e.publish(json!({ "records": rs })).await.0, 200);
        for n in 0..300u64 {
            let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("record arrives").unwrap();
            let v: Value = serde_json::from_str(m.data.get()).unwrap();
            assert_eq!(v["seq"], n, "{encoding:?}: every record once, in order");
        }
        // The client's own frames go uncompressed, which the server reads.
        c.publish(&channel, &json!({"seq": 300}), None).await.unwrap();
        let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("own record arrives").unwrap();
        assert_eq!(serde_json::from_str::<Value>(m.data.get()).unwrap()["seq"], 300);
    }

    let off = TestEdge::start().await;
    let (c, compressed) = sdk_client_with_compression(&off, Encoding::Json).await;
    assert!(!compressed, "compression is off on this edge");
    let mut sub = c.subscribe("incidents").await.unwrap();
    assert_eq!(off.publish(json!({"account":"acme","channel":"incidents","data":{"seq": 0}})).await.0, 200);
    let m = tokio::time::timeout(PATIENCE, sub.next_message()).await.expect("record arrives").unwrap();
    assert_eq!(serde_json::from_str::<Value>(m.data.get()).unwrap()["seq"], 0);
}
