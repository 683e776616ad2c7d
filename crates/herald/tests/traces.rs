//! Traces end to end: `herald dev` with `[tracing]` pointed at an OTLP receiver started here
//! (OTLP/HTTP decoding the protobuf bodies, and OTLP/gRPC as a tonic `TraceService`), a
//! WebSocket subscriber, and a publish carrying a `traceparent`. The receiver gets the publish span as a child of that traceparent and, with
//! sampling at 1.0, the record's delivery span (with its recipient count) and the socket write,
//! all in the publisher's trace.

mod support;

use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use std::io::{Read, Write};
use std::time::Duration;
use support::http;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A span as the receiver saw it.
#[derive(Debug, Clone)]
struct Got {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: Vec<(String, String)>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every span of an export, into the channel.
fn collect(export: &ExportTraceServiceRequest, tx: &mpsc::UnboundedSender<Got>) {
    for span in export.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
        let attributes = span
            .attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    Some(Value::IntValue(i)) => i.to_string(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect();
        let _ = tx.send(Got { name: span.name.clone(), trace_id: hex(&span.trace_id), span_id: hex(&span.span_id), parent: hex(&span.parent_span_id), attributes });
    }
}

/// An OTLP/gRPC receiver: the collector's `TraceService`.
struct GrpcReceiver(mpsc::UnboundedSender<Got>);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(&self, req: tonic::Request<ExportTraceServiceRequest>) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        collect(req.get_ref(), &self.0);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a free port.
async fn grpc_receiver() -> (String, mpsc::UnboundedReceiver<Got>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(GrpcReceiver(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), rx)
}

/// An OTLP/HTTP receiver on a free port: every span of every export goes to the channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Got>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                hyper_util::rt::TokioIo::new(tcp),
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        collect(&ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body"), &tx);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
                    }
                }),
            ));
        }
    });
    (format!("http://{addr}/v1/traces"), rx)
}

fn attr<'a>(s: &'a Got, key: &str) -> Option<&'a str> {
    s.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_otlp_http_a_publish_and_its_delivery_join_the_publishers_trace() {
    let (endpoint, spans) = receiver().await;
    publish_and_check_spans(&endpoint, "http", spans).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_otlp_grpc_a_publish_and_its_delivery_join_the_publishers_trace() {
    let (endpoint, spans) = grpc_receiver().await;
    publish_and_check_spans(&endpoint, "grpc", spans).await;
}

/// `herald dev` exporting to `endpoint`: a traced publish to a subscribed channel, then the
/// three spans, joined.
async fn publish_and_check_spans(endpoint: &str, protocol: &str, mut spans: mpsc::UnboundedReceiver<Got>) {
    let dir = std::env::temp_dir().join(format!("herald-traces-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("herald.toml");
    std::fs::write(&config, format!("[tracing]\nendpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\nsampling_ratio = 1.0\n")).unwrap();
    let key = "traces-key-0123456789abcdef";
    // Its log at debug level, in a file: the lines about the publish must carry the trace id.
    let log = dir.join("herald.log");
    let mut cmd = std::process::Command::new(support::BIN);
    cmd.args(["dev", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap(), "--dev-api-key", key]);
    cmd.env("RUST_LOG", "herald_edge=debug,herald_engine=debug").stdout(std::process::Stdio::piped()).stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let herald = support::Herald { child, url: line.trim().strip_prefix("herald listening on ").unwrap().to_owned() };

    // A subscriber, so the record has a recipient.
    let answer = http(herald.addr(), "GET", "/dev/token?account=demo", None, "");
    let token = serde_json::from_str::<serde_json::Value>(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap()["token"].as_str().unwrap().to_owned();
    let mut req = format!("ws://{}/v1/ws", herald.addr()).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(r#"{"type":"subscribe","id":1,"channel":"incidents"}"#.into()).await.unwrap();
    loop {
        let m = ws.next().await.unwrap().unwrap();
        if m.to_text().unwrap().contains("\"subscribed\"") {
            break;
        }
    }

    // The backend's own trace: its span is the publish's parent.
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let parent = format!("{:016x}", rand::random::<u64>() | 1);
    let body = r#"{"account":"demo","channel":"incidents","data":{"ent":"incident","id":"PAM4FGS","type":"updated"}}"#;
    let mut s = std::net::TcpStream::connect(herald.addr()).unwrap();
    write!(s, "POST /v1/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ntraceparent: 00-{trace_id}-{parent}-01\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    loop {
        let m = ws.next().await.unwrap().unwrap();
        if m.to_text().unwrap().contains("PAM4FGS") {
            break;
        }
    }

    // The spans arrive in the exporter's next batch.
    let mut got: Vec<Got> = Vec::new();
    let wanted = |got: &[Got]| ["herald.publish", "herald.deliver", "herald.socket_write"].iter().all(|n| got.iter().any(|s| s.name == *n && s.trace_id == trace_id));
    tokio::time::timeout(Duration::from_secs(60), async {
        while !wanted(&got) {
            got.push(spans.recv().await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("spans of trace {trace_id} missing; got {got:#?}"));
    let find = |name: &str| got.iter().find(|s| s.name == name && s.trace_id == trace_id).unwrap().clone();
    let publish = find("herald.publish");
    assert_eq!(publish.parent, parent, "the publish continues the backend's span");
    assert_eq!(attr(&publish, "herald.channel"), Some("incidents"));
    let deliver = find("herald.deliver");
    assert_eq!(deliver.parent, publish.span_id, "the delivery is a child of the publish");
    assert_eq!(attr(&deliver, "herald.recipients"), Some("1"));
    let write = find("herald.socket_write");
    assert_eq!(write.parent, deliver.span_id, "the socket write is a child of the delivery");
    drop(herald);
    let log = std::fs::read_to_string(&log).unwrap();
    for message in ["published", "traced record fanned out"] {
        let line = log.lines().find(|l| l.contains(message)).unwrap_or_else(|| panic!("no {message:?} line in the log:\n{log}"));
        assert!(line.contains(&trace_id), "the log line carries the trace id: {line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
