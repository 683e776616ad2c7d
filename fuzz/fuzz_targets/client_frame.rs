//! Any bytes a client sends as a (batched) text message decode into frames or documented errors;
//! never a panic, and an error always carries a code from the closed set.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for line in herald_protocol::split_batch(text) {
            match herald_protocol::decode_client_frame(line) {
                Ok(_) => {}
                Err(e) => assert!(!e.code.as_str().is_empty()),
            }
        }
    }
});
