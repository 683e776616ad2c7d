//! Cursor parsing never panics, and whatever parses prints back to a string that parses to the
//! same cursor.
#![no_main]
use herald_core::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = Cursor::parse(s) {
            assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
        }
    }
});
