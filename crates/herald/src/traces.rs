//! OpenTelemetry traces from `[tracing]`: an OTLP exporter (gRPC over the tonic the control
//! plane uses, or HTTP/protobuf over a small blocking client), a parent-based ratio sampler,
//! and the global tracer provider the edge's spans go to (`herald_engine::trace`).

use anyhow::Context;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::io::{Read, Write};
use std::time::Duration;

use herald_config::{OtlpProtocol, TracingConfig};

/// The installed provider; dropping it without [`Traces::shutdown`] loses the last batch.
pub struct Traces(SdkTracerProvider);

impl Traces {
    /// Sends the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!(error = %e, "traces: the last spans could not be sent");
        }
    }
}

/// Installs the exporter when `[tracing] endpoint` is set (call it inside the runtime: the gRPC
/// exporter's channel lives on it). `None` when tracing is off.
pub fn install(config: &TracingConfig) -> anyhow::Result<Option<Traces>> {
    let Some(endpoint) = &config.endpoint else { return Ok(None) };
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder().with_tonic().with_endpoint(endpoint.clone()).with_timeout(Duration::from_secs(5)).build(),
        OtlpProtocol::Http => {
            // The signal's path when the endpoint names none, as OTEL_EXPORTER_OTLP_ENDPOINT does.
            let url = if endpoint.trim_start_matches("http://").contains('/') { endpoint.clone() } else { format!("{endpoint}/v1/traces") };
            SpanExporter::builder().with_http().with_http_client(BlockingHttp).with_protocol(Protocol::HttpBinary).with_endpoint(url).with_timeout(Duration::from_secs(5)).build()
        }
    }
    .context("tracing.endpoint")?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling_ratio))))
        .with_resource(Resource::builder().with_service_name(config.service_name.clone()).build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    herald_engine::trace::enable();
    tracing::info!(endpoint, protocol = ?config.protocol, sampling_ratio = config.sampling_ratio, "traces: exporting over OTLP");
    Ok(Some(Traces(provider)))
}

/// POSTs an OTLP/HTTP body over plain HTTP/1.1 and reads the status. Blocking on purpose: the
/// SDK's batch processor exports from its own thread, outside any runtime.
#[derive(Debug)]
struct BlockingHttp;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for BlockingHttp {
    async fn send_bytes(&self, request: http::Request<bytes::Bytes>) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let uri = request.uri();
        let authority = uri.authority().ok_or("the OTLP endpoint has no host")?.as_str().to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut tcp = std::net::TcpStream::connect(&authority)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n", request.body().len());
        for (k, v) in request.headers() {
            if k != http::header::CONTENT_LENGTH && k != http::header::HOST && k != http::header::CONNECTION {
                head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
            }
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes())?;
        tcp.write_all(request.body())?;
        let mut answer = Vec::new();
        tcp.take(1 << 20).read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("the collector's answer is not HTTP")?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| bytes::Bytes::copy_from_slice(b.as_bytes())).unwrap_or_default();
        Ok(http::Response::builder().status(status).body(body)?)
    }
}
