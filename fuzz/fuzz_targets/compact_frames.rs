//! Any bytes as a compact (`herald.v1.proto`) binary message: the server's decoder of client
//! frames, the client's reader of server frames, and the inflater of compressed client frames
//! yield frames or errors (with a code from the closed set); never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for f in herald_protocol::proto::decode_client_message(data) {
        if let Err(e) = f {
            assert!(!e.code.as_str().is_empty());
        }
    }
    let mut reader = herald_protocol::proto::ProtoReader::new();
    for frame in reader.read(data) {
        // What the reader produces is JSON v1 text.
        if let Ok(json) = frame {
            assert_eq!(json.last(), Some(&b'\n'));
        }
    }
    let mut out = Vec::new();
    let _ = herald_protocol::deflate::inbound::InboundInflater::new(1 << 16).feed(data, &mut out);
    let _ = herald_protocol::deflate::inflate_message(data, 1 << 16, &mut out);
});
