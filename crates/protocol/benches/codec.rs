//! Codec micro-benchmark and bytes per delivery: `cargo bench -p herald-protocol`.
//!
//! For a typical record (100-byte JSON payload, a ULID, a single-region and a three-region
//! cursor) it prints the bytes one delivery puts on the wire in each encoding (WebSocket header
//! of a one-record message included, and per record in a batch of 100), the bytes
//! `permessage-deflate` makes of a batch of realistic incident JSON, and the time to encode a
//! record, frame it for one connection, read it back (client side) and compress a batch. Plain
//! timing loops over a fixed number of iterations: it stops by itself in a few seconds, and
//! numbers are only meaningful on a quiet machine.

use std::hint::black_box;
use std::time::Instant;

use herald_core::{Cursor, Epoch, MessageId, RegionName, VersionVector};
use herald_protocol::deflate::{DeflateConfig, negotiate};
use herald_protocol::proto::{ProtoReader, encode_record, encode_server_frame, record_prefix};
use herald_protocol::{RequestId, ServerFrame, encode_message};

const ITERATIONS: u32 = 200_000;

fn time(name: &str, iterations: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{name:<52} {ns:>10.0} ns");
}

/// A WebSocket header's length for a server message of `len` bytes.
fn ws_header(len: usize) -> usize {
    if len < 126 { 2 } else if len <= 65535 { 4 } else { 10 }
}

fn main() {
    let region = |s: &str| RegionName::new(s).unwrap();
    let epoch = Epoch::new("8f2a0c").unwrap();
    let payload = br#"{"ent":"incident","id":"PAM4FGS","type":"updated","status":"triggered","urgency":"high","svc":"P7X1"}"#;
    assert!((95..=105).contains(&payload.len()));
    let id = MessageId::generate(1_763_996_400_123);
    let offset = 48_213_907u64;
    let cases = [("single region", vec![]), ("three regions", vec![(region("us-east"), 9_112_003u64), (region("ap-south"), 5_004_211)])];

    println!("bytes per delivery of a {}-byte payload (one-record message / per record in a batch of 100)", payload.len());
    for (name, origins) in &cases {
        let cursor = Cursor::with_origins(epoch.clone(), region("eu-west"), offset + 1, &origins.iter().cloned().collect());
        let json = encode_message("incidents", id.as_str(), &cursor.to_string(), 1_763_996_400_123, payload);
        let body = encode_record(offset, id.as_str(), 1_763_996_400_123, payload, cursor.origins());
        let compact = record_prefix(3, body.len()).as_bytes().len() + body.len();
        let (j, c) = (json.len() - 1, compact);
        println!("  {name:<14} JSON {:>4} / {:>4}   compact {:>4} / {:>4}", j + ws_header(j), json.len(), c + ws_header(c), c);
    }

    // A batch of 100 realistic records, compressed as one message.
    let batch: Vec<u8> = (0..100u64)
        .flat_map(|n| {
            let cursor = Cursor::single(epoch.clone(), region("eu-west"), offset + n + 1).to_string();
            let data = format!(r#"{{"ent":"incident","id":"PAM{n:04}","type":"updated","status":"acknowledged","urgency":"high","svc":"P7X1"}}"#);
            encode_message("incidents", MessageId::generate(1_763_996_400_123 + n).as_str(), &cursor, 1_763_996_400_123 + n, data.as_bytes()).to_vec()
        })
        .collect();
    for level in [1, 6] {
        let agreement = negotiate(["permessage-deflate"], &DeflateConfig { level, ..DeflateConfig::default() }).unwrap();
        let mut z = Vec::new();
        agreement.compress(&batch, &mut z);
        println!("permessage-deflate level {level}: a JSON batch of 100 records, {} bytes -> {} ({:.0} per record)", batch.len(), z.len(), z.len() as f64 / 100.0);
        time(&format!("compress that batch (level {level}), per batch"), ITERATIONS / 200, || {
            let mut z = Vec::with_capacity(batch.len() / 2);
            agreement.compress(black_box(&batch), &mut z);
            black_box(z);
        });
    }

    println!("time per operation");
    let cursor = Cursor::single(epoch.clone(), region("eu-west"), offset + 1).to_string();
    time("JSON: encode a message frame (once per record)", ITERATIONS, || {
        black_box(encode_message("incidents", black_box(id.as_str()), &cursor, 1_763_996_400_123, payload));
    });
    time("compact: encode the shared body (once per record)", ITERATIONS, || {
        black_box(encode_record(black_box(offset), id.as_str(), 1_763_996_400_123, payload, &VersionVector::new()));
    });
    let body = encode_record(offset, id.as_str(), 1_763_996_400_123, payload, &VersionVector::new());
    time("compact: the per-connection prefix (per delivery)", ITERATIONS, || {
        black_box(record_prefix(black_box(3), body.len()));
    });
    let mut reader = ProtoReader::new();
    let rid = RequestId::Num(1);
    reader.read(&encode_server_frame(&ServerFrame::Subscribed { id: Some(&rid), channel: "incidents", cursor: &cursor, recovered: true }, 3));
    let wire = [record_prefix(3, body.len()).as_bytes(), &body].concat();
    time("compact: client reads a record back to JSON v1", ITERATIONS, || {
        black_box(reader.read(black_box(&wire)));
    });
}
