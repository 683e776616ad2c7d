//! No accepted channel name can name another account's channel.
#![no_main]
use herald_core::{AccountId, ChannelKey, ChannelName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(ch) = ChannelName::new(s) {
            let acme = AccountId::new("acme").unwrap();
            let key = ChannelKey::parse(&ChannelKey::new(acme.clone(), ch).to_string()).unwrap();
            assert_eq!(key.account, acme);
        }
    }
});
