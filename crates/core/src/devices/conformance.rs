//! The behaviour every [`DeviceRegistry`] adapter must show. Call [`run_all`] with a fresh
//! adapter; each check uses its own accounts.

use std::sync::Arc;

use super::{DeviceRegistry, PageRequest, Platform, Registration};
use crate::names::{AccountId, ChannelName, ChannelPattern};

fn account(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

/// A registration of `token` (an FCM token, or 64 hex digits made from it for APNs).
pub fn registration(acct: &str, user: &str, platform: Platform, token: &str, readable: &[&str]) -> Registration {
    let device_token = match platform {
        Platform::Fcm => token.to_owned(),
        Platform::Apns => format!("{:0>64}", token.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
    };
    Registration {
        account: account(acct),
        user: user.into(),
        platform,
        device_token,
        app: "com.example.app".into(),
        readable: readable.iter().map(|p| ChannelPattern::parse(p).unwrap()).collect(),
        registered_at_ms: 1_000,
    }
}

fn tokens(rs: &[Registration]) -> Vec<String> {
    rs.iter().map(|r| r.device_token.clone()).collect()
}

/// Runs every check.
pub async fn run_all(r: Arc<dyn DeviceRegistry>) {
    a_registration_reads_back_everywhere(r.clone()).await;
    a_token_registered_by_another_user_moves_to_that_user(r.clone()).await;
    removing_a_device_removes_it_everywhere(r.clone()).await;
    a_stale_invalid_token_answer_spares_a_newer_registration(r.clone()).await;
    accounts_page_in_key_order_and_do_not_mix(r.clone()).await;
    an_invalid_registration_is_refused_and_changes_nothing(r.clone()).await;
    readers_are_the_devices_whose_patterns_match(r.clone()).await;
}

/// What was registered is what `get`, `list_user` and `list_account` return.
pub async fn a_registration_reads_back_everywhere(r: Arc<dyn DeviceRegistry>) {
    let a = registration("dconf-a", "alice", Platform::Apns, "phone1", &["incidents", "chat:*"]);
    r.register(a.clone()).await.unwrap();
    assert_eq!(r.get(Platform::Apns, &a.device_token).await.unwrap(), Some(a.clone()));
    assert_eq!(r.get(Platform::Fcm, &a.device_token).await.unwrap(), None, "the platform is part of the device");
    assert_eq!(r.list_user(&a.account, "alice").await.unwrap(), vec![a.clone()]);
    let page = r.list_account(&a.account, PageRequest::first(10)).await.unwrap();
    assert_eq!((page.items, page.next), (vec![a.clone()], None));
    // Registering the same device again replaces it (no second entry).
    let mut again = a.clone();
    again.registered_at_ms = 2_000;
    again.readable = vec![ChannelPattern::parse("incidents").unwrap()];
    r.register(again.clone()).await.unwrap();
    assert_eq!(r.list_user(&a.account, "alice").await.unwrap(), vec![again]);
}

/// A phone that changes hands: the token belongs to the user who registered it last.
pub async fn a_token_registered_by_another_user_moves_to_that_user(r: Arc<dyn DeviceRegistry>) {
    let a = registration("dconf-b", "alice", Platform::Fcm, "shared-phone", &["incidents"]);
    r.register(a.clone()).await.unwrap();
    let b = Registration { user: "bob".into(), ..a.clone() };
    r.register(b.clone()).await.unwrap();
    assert!(r.list_user(&a.account, "alice").await.unwrap().is_empty());
    assert_eq!(r.list_user(&a.account, "bob").await.unwrap(), vec![b.clone()]);
    // Even into another account.
    let c = Registration { account: account("dconf-b2"), user: "carol".into(), ..a.clone() };
    r.register(c.clone()).await.unwrap();
    assert!(r.list_user(&a.account, "bob").await.unwrap().is_empty());
    assert!(r.list_account(&a.account, PageRequest::first(10)).await.unwrap().items.is_empty());
    assert_eq!(r.get(Platform::Fcm, "shared-phone").await.unwrap(), Some(c));
}

/// `remove` says whether the device existed, and it is gone from every listing.
pub async fn removing_a_device_removes_it_everywhere(r: Arc<dyn DeviceRegistry>) {
    let a = registration("dconf-c", "alice", Platform::Fcm, "gone-phone", &["*"]);
    let keep = registration("dconf-c", "alice", Platform::Fcm, "kept-phone", &["*"]);
    r.register(a.clone()).await.unwrap();
    r.register(keep.clone()).await.unwrap();
    assert!(r.remove(Platform::Fcm, "gone-phone").await.unwrap());
    assert!(!r.remove(Platform::Fcm, "gone-phone").await.unwrap());
    assert_eq!(r.get(Platform::Fcm, "gone-phone").await.unwrap(), None);
    assert_eq!(r.list_user(&a.account, "alice").await.unwrap(), vec![keep.clone()]);
    assert_eq!(r.list_account(&a.account, PageRequest::first(10)).await.unwrap().items, vec![keep]);
}

/// A "token gone" answer removes the device, unless it was registered again after that answer.
pub async fn a_stale_invalid_token_answer_spares_a_newer_registration(r: Arc<dyn DeviceRegistry>) {
    let a = registration("dconf-d", "alice", Platform::Apns, "reinstalled", &["*"]);
    r.register(a.clone()).await.unwrap();
    assert!(!r.remove_invalid(Platform::Apns, &a.device_token, 999).await.unwrap(), "registered at 1000, after the answer's 999");
    assert!(r.get(Platform::Apns, &a.device_token).await.unwrap().is_some());
    assert!(r.remove_invalid(Platform::Apns, &a.device_token, 1_000).await.unwrap());
    assert_eq!(r.get(Platform::Apns, &a.device_token).await.unwrap(), None);
    assert!(r.list_user(&a.account, "alice").await.unwrap().is_empty());
    assert!(!r.remove_invalid(Platform::Apns, &a.device_token, 5_000).await.unwrap(), "already gone");
}

/// Pages follow device-key order, `next` leads to the following page, and accounts are apart.
pub async fn accounts_page_in_key_order_and_do_not_mix(r: Arc<dyn DeviceRegistry>) {
    let mut all = Vec::new();
    for i in 0..7 {
        let reg = registration("dconf-e", &format!("u{}", i % 3), Platform::Fcm, &format!("tok-{i}"), &["*"]);
        r.register(reg.clone()).await.unwrap();
        all.push(reg);
    }
    r.register(registration("dconf-e2", "u0", Platform::Fcm, "other-account", &["*"])).await.unwrap();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    let mut pages = 0;
    loop {
        let p = r.list_account(&account("dconf-e"), page.clone()).await.unwrap();
        assert!(p.items.len() <= 3);
        pages += 1;
        seen.extend(p.items);
        match p.next {
            Some(after) => page.after = Some(after),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    all.sort_by_key(Registration::device_key);
    assert_eq!(tokens(&seen), tokens(&all));
    assert_eq!(r.list_user(&account("dconf-e"), "u0").await.unwrap().len(), 3);
    assert_eq!(tokens(&r.list_user(&account("dconf-e2"), "u0").await.unwrap()), ["other-account"]);
}

/// A malformed registration is an `Invalid` error and is not stored.
pub async fn an_invalid_registration_is_refused_and_changes_nothing(r: Arc<dyn DeviceRegistry>) {
    let mut bad = registration("dconf-f", "alice", Platform::Apns, "x", &["*"]);
    bad.device_token = "not hex".into();
    let err = r.register(bad.clone()).await.expect_err("a bad APNs token");
    assert!(matches!(err, super::DeviceError::Invalid(_)), "{err}");
    assert!(r.list_user(&bad.account, "alice").await.unwrap().is_empty());
}

/// `readers` returns the devices whose patterns match the channel, and no others.
pub async fn readers_are_the_devices_whose_patterns_match(r: Arc<dyn DeviceRegistry>) {
    let ch = |s| ChannelName::new(s).unwrap();
    r.register(registration("dconf-g", "ops", Platform::Fcm, "ops-phone", &["incidents"])).await.unwrap();
    r.register(registration("dconf-g", "chat", Platform::Fcm, "chat-phone", &["chat:*"])).await.unwrap();
    r.register(registration("dconf-g", "admin", Platform::Fcm, "admin-phone", &["*"])).await.unwrap();
    let mut got = tokens(&r.readers(&account("dconf-g"), &ch("incidents")).await.unwrap());
    got.sort();
    assert_eq!(got, ["admin-phone", "ops-phone"]);
    let mut got = tokens(&r.readers(&account("dconf-g"), &ch("chat:7")).await.unwrap());
    got.sort();
    assert_eq!(got, ["admin-phone", "chat-phone"]);
    assert!(r.readers(&account("dconf-g2"), &ch("incidents")).await.unwrap().is_empty());
}
