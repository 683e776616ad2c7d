//! SSE and long-poll: the same records, the same cursors, the same exact resume.

mod common;

use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// An open SSE stream and a parser for its events.
struct Sse {
    body: hyper::body::Incoming,
    buf: String,
    _send: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
}

/// One SSE event: its `id:` (if any) and its data frame.
struct SseEvent {
    id: Option<String>,
    data: Value,
}

async fn open_sse(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> (u16, Option<Sse>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().uri(path).header("host", "t");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = send.send_request(req.body(http_body_util::Empty::new()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    (status, Some(Sse { body: resp.into_body(), buf: String::new(), _send: send }))
}

impl Sse {
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is one JSON frame"));
                    }
                }
                if let Some(data) = data {
                    return SseEvent { id, data };
                }
                continue;
            }
            let frame = tokio::time::timeout(PATIENCE, self.body.frame()).await.expect("stream moves").expect("stream open").unwrap();
            if let Ok(d) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&d).unwrap());
            }
        }
    }

    async fn next_message(&mut self) -> SseEvent {
        loop {
            let e = self.next().await;
            if e.data["type"] == "message" {
                return e;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_exactly_from_last_event_id() {
    let e = TestEdge::start().await;
    let token = e.token("acme", "u1");
    let path = format!("/v1/sse?channels=incidents,other&token={token}");
    let (_, sse) = open_sse(e.addr, &path, None).await;
    let mut sse = sse.unwrap();
    assert_eq!(sse.next().await.data["type"], "welcome");
    for n in 0..6 {
        e.publish_seq("acme", if n % 2 == 0 { "incidents" } else { "other" }, n).await;
    }
    e.publish_seq("acme", "not-subscribed", 99).await;
    let mut last_id = None;
    for n in 0..3 {
        let ev = sse.next_message().await;
        assert_eq!(ev.data["data"]["seq"], n);
        assert_eq!(ev.id.as_deref(), ev.data["cursor"].as_str(), "the event id is the cursor");
        last_id = ev.id;
    }
    drop(sse);
    for n in 6..8 {
        e.publish_seq("acme", "incidents", n).await;
    }
    let (_, sse) = open_sse(e.addr, &path, last_id.as_deref()).await;
    let mut sse = sse.unwrap();
    for n in 3..8 {
        let ev = sse.next_message().await;
        assert_eq!(ev.data["data"]["seq"], n, "records of both channels, in order, from the cursor on");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_refuses_bad_requests_with_documented_codes() {
    let e = TestEdge::start().await;
    let token = e.token("acme", "u1");
    let cases = [
        ("/v1/sse?channels=incidents".to_string(), 401),
        (format!("/v1/sse?channels=../beta/x&token={token}"), 400),
        (format!("/v1/sse?token={token}"), 400),
        (format!("/v1/sse?channels=a&since=garbage&token={token}"), 400),
        ("/v1/sse?channels=a&token=not-a-token".to_string(), 401),
    ];
    for (path, want) in cases {
        let (status, _) = open_sse(e.addr, &path, None).await;
        assert_eq!(status, want, "{path}");
    }
    let narrow = token_with("acme", "u", &["public:*"], &[], 60);
    let (status, _) = open_sse(e.addr, &format!("/v1/sse?channels=secret&token={narrow}"), None).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_pages_through_history_and_then_waits_for_live_records() {
    let e = TestEdge::start().await;
    let token = e.token("acme", "u1");
    // Position before anything is published.
    let (_, first) = http_get_json(e.addr, &format!("/v1/poll?channels=c&token={token}&timeout_ms=50")).await;
    assert_eq!(first["messages"], json!([]));
    let mut cursor = first["cursor"].as_str().unwrap().to_owned();
    for n in 0..10 {
        e.publish_seq("acme", "c", n).await;
    }
    let mut got = Vec::new();
    while got.len() < 10 {
        let (status, page) = http_get_json(e.addr, &format!("/v1/poll?channels=c&token={token}&since={cursor}&limit=4")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["recovered"], true);
        let msgs = page["messages"].as_array().unwrap();
        assert!(!msgs.is_empty() && msgs.len() <= 4);
        got.extend(msgs.iter().map(|m| m["data"]["seq"].as_u64().unwrap()));
        cursor = page["cursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    // Nothing new: the poll waits until a record is published.
    let waiter = tokio::spawn({
        let (addr, path) = (e.addr, format!("/v1/poll?channels=c&token={token}&since={cursor}&timeout_ms=20000"));
        async move { http_get_json(addr, &path).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    e.publish_seq("acme", "c", 10).await;
    let (_, page) = waiter.await.unwrap();
    assert_eq!(page["messages"][0]["data"]["seq"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_cursors_resumes_every_channel_from_the_oldest_of_them() {
    let e = TestEdge::start().await;
    let token = e.token("acme", "u1");
    // Channel a's last cursor is after a:0; channel b's after b:1, which came later: resuming
    // both from one position must start at a's, or b's records in between would be missed.
    let a0 = e.publish_seq("acme", "a", 0).await["cursor"].as_str().unwrap().to_owned();
    e.publish_seq("acme", "b", 1).await;
    let b1 = e.publish_seq("acme", "b", 2).await["cursor"].as_str().unwrap().to_owned();
    e.publish_seq("acme", "a", 3).await;
    let (status, page) = http_get_json(e.addr, &format!("/v1/poll?channels=a,b&token={token}&since={b1},{a0}")).await;
    assert_eq!(status, 200, "{page}");
    let seqs: Vec<u64> = page["messages"].as_array().unwrap().iter().map(|m| m["data"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3], "from the oldest cursor on, in order: {page}");
    let (status, page) = http_get_json(e.addr, &format!("/v1/poll?channels=a,b&token={token}&since={a0},nonsense")).await;
    assert_eq!((status, page["error"]["code"].as_str()), (400, Some("invalid_cursor")), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_publishes_over_http_within_its_publish_rights() {
    let e = TestEdge::start().await;
    let token = token_with("acme", "u1", &["*"], &["chat:*"], 3600);
    let (status, v) = http_post(e.addr, "/v1/publish", &token, &json!({"channel": "chat:1", "data": {"seq": 0}}).to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["cursor"].as_str().unwrap().starts_with("c1."), "{v}");
    // Outside its publish patterns, another account, a bad signature: refused, nothing written.
    let (status, v) = http_post(e.addr, "/v1/publish", &token, &json!({"channel": "incidents", "data": {}}).to_string()).await;
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (status, v) = http_post(e.addr, "/v1/publish", &token, &json!({"account": "other", "channel": "chat:1", "data": {}}).to_string()).await;
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let forged = format!("{}x", token);
    let (status, v) = http_post(e.addr, "/v1/publish", &forged, &json!({"channel": "chat:1", "data": {}}).to_string()).await;
    assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    let read_only = token_with("acme", "u2", &["*"], &[], 3600);
    let (status, _) = http_post(e.addr, "/v1/publish", &read_only, &json!({"channel": "chat:1", "data": {}}).to_string()).await;
    assert_eq!(status, 403);
    let (_, page) = http_get_json(e.addr, &format!("/v1/poll?channels=chat:1,incidents&token={token}&since=c1.{}", &v_epoch(&e).await)).await;
    let seqs: Vec<u64> = page["messages"].as_array().unwrap().iter().map(|m| m["data"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![0], "only the allowed publish was written: {page}");
}

/// `<epoch>.<region>.0`: the start of the edge's stream, for reading everything back.
async fn v_epoch(e: &TestEdge) -> String {
    let (_, page) = http_get_json(e.addr, &format!("/v1/poll?channels=x&token={}&timeout_ms=1", e.token("acme", "u0"))).await;
    let c = page["cursor"].as_str().unwrap();
    let mut parts = c.split('.').skip(1);
    format!("{}.{}.0", parts.next().unwrap(), parts.next().unwrap())
}
