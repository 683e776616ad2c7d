//! The push worker against fake APNs and FCM servers (HTTP/2 + TLS, checking every request as
//! the real services do), with a real Redis for registrations, the lease and positions.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::{DeviceRegistry, Platform};
use herald_push::testing::{Reply, eventually};
use support::{Region, counts, metric};

fn each_once(n: std::ops::RangeInclusive<u32>) -> BTreeMap<String, usize> {
    n.map(|i| (i.to_string(), 1)).collect()
}

#[tokio::test]
async fn a_backgrounded_user_gets_one_push_per_record_and_a_looking_user_none() {
    let region = Region::new().await;
    let alice = region.register("alice", Platform::Apns, "alice-phone", &["incidents"]).await;
    let bob = region.register("bob", Platform::Fcm, "bob-phone", &["*"]).await;
    let carol = region.register("carol", Platform::Fcm, "carol-phone", &["incidents"]).await;
    region.looking("carol", "incidents").await;
    let w = region.worker("push-a");
    region.until_pushing(&w).await;
    for n in 1..=5 {
        region.incident(n).await;
    }
    region.until_settled().await;
    assert_eq!(counts(&region.apns, &alice.device_token), each_once(1..=5));
    assert_eq!(counts(&region.fcm, &bob.device_token), each_once(1..=5));
    assert!(counts(&region.fcm, &carol.device_token).is_empty(), "carol is looking at the channel: the socket delivers, no notification");
    for s in region.apns.seen().iter().chain(region.fcm.seen().iter()) {
        let n = &s.data["n"];
        assert_eq!(s.collapse.as_deref(), Some(format!("incident-INC{n}").as_str()), "a collapse key is set");
        assert_eq!((s.title.as_deref(), s.body.as_str()), (Some(format!("Incident INC{n}").as_str()), format!("incident {n}").as_str()));
    }
    assert!(region.apns.seen().iter().all(|s| s.id.is_some()), "every APNs request carries an apns-id");
    assert_eq!(region.fcm.tokens_requested(), 1, "the access token is cached");
    assert_eq!((region.apns.violations(), region.fcm.violations()), (vec![], vec![]));
    assert_eq!(metric(&w.metrics, "herald_push_sent_total{platform=\"apns\"}"), 5.0);
    assert_eq!(metric(&w.metrics, "herald_push_sent_total{platform=\"fcm\"}"), 5.0);
    assert!(w.metrics.render().contains("herald_push_latency_seconds_count 10"), "{}", w.metrics.render());
}

#[tokio::test]
async fn a_device_whose_user_may_not_read_the_channel_never_gets_a_push() {
    let region = Region::new().await;
    let chat = region.register("dave", Platform::Fcm, "dave-phone", &["chat:*"]).await;
    let erin = region.register("erin", Platform::Apns, "erin-phone", &["personal:erin"]).await;
    let frank = region.register("frank", Platform::Fcm, "frank-phone", &["personal:frank", "incidents"]).await;
    let w = region.worker("push-a");
    region.until_pushing(&w).await;
    region.incident(1).await;
    region.publish("personal:erin", serde_json::json!({ "text": "for erin", "n": "2" })).await;
    region.publish("personal:frank", serde_json::json!({ "text": "for frank", "n": "3" })).await;
    region.publish("billing", serde_json::json!({ "text": "not pushable", "n": "4" })).await;
    region.until_settled().await;
    assert!(counts(&region.fcm, &chat.device_token).is_empty());
    assert_eq!(counts(&region.apns, &erin.device_token), each_once(2..=2), "only erin's own channel");
    let mut want = each_once(1..=1);
    want.extend(each_once(3..=3));
    assert_eq!(counts(&region.fcm, &frank.device_token), want);
    assert_eq!((region.apns.violations(), region.fcm.violations()), (vec![], vec![]));
}

/// A record to a user (its personal channel, `POST /v1/publish {"user": …}`) reaches that
/// user's devices only, although other users' registrations read `*`.
#[tokio::test]
async fn a_record_to_a_user_reaches_only_that_users_devices() {
    let region = Region::new().await;
    let phone = region.register("auth0|alice", Platform::Apns, "alice-phone", &["incidents"]).await;
    let tablet = region.register("auth0|alice", Platform::Fcm, "alice-tablet", &[]).await;
    let bob = region.register("bob", Platform::Fcm, "bob-phone", &["*"]).await;
    let w = region.worker("push-a");
    region.until_pushing(&w).await;
    let personal = herald_core::ChannelName::personal("auth0|alice").unwrap();
    region.publish(personal.as_str(), serde_json::json!({ "text": "for alice", "n": "1" })).await;
    region.until_settled().await;
    assert_eq!(counts(&region.apns, &phone.device_token), each_once(1..=1));
    assert_eq!(counts(&region.fcm, &tablet.device_token), each_once(1..=1), "every device of the user");
    assert!(counts(&region.fcm, &bob.device_token).is_empty(), "a `*` registration does not read another user's personal channel");
    assert_eq!((region.apns.violations(), region.fcm.violations()), (vec![], vec![]));
}

#[tokio::test]
async fn a_token_the_service_says_is_gone_removes_the_registration() {
    let region = Region::new().await;
    let alice = region.register("alice", Platform::Apns, "alice-phone", &["incidents"]).await;
    let bob = region.register("bob", Platform::Fcm, "bob-phone", &["incidents"]).await;
    region.apns.script(&alice.device_token, &[Reply::Gone]);
    region.fcm.script(&bob.device_token, &[Reply::Gone]);
    let w = region.worker("push-a");
    region.until_pushing(&w).await;
    region.incident(1).await;
    region.until_settled().await;
    assert_eq!(region.registry.get(Platform::Apns, &alice.device_token).await.unwrap(), None, "APNs 410 removes it");
    assert_eq!(region.registry.get(Platform::Fcm, &bob.device_token).await.unwrap(), None, "FCM UNREGISTERED removes it");
    assert_eq!(metric(&w.metrics, "herald_push_invalid_tokens_removed_total{platform=\"apns\"}"), 1.0);
    assert_eq!(metric(&w.metrics, "herald_push_invalid_tokens_removed_total{platform=\"fcm\"}"), 1.0);
    region.incident(2).await;
    region.until_settled().await;
    assert_eq!(region.apns.seen().len() + region.fcm.seen().len(), 2, "nothing more is sent to removed devices");
}

#[tokio::test]
async fn a_429_is_retried_no_earlier_than_its_retry_after() {
    let region = Region::new().await;
    let bob = region.register("bob", Platform::Fcm, "bob-phone", &["incidents"]).await;
    let alice = region.register("alice", Platform::Apns, "alice-phone", &["incidents"]).await;
    region.fcm.script(&bob.device_token, &[Reply::TooMany { secs: 1 }]);
    region.apns.script(&alice.device_token, &[Reply::TooMany { secs: 1 }, Reply::TooMany { secs: 1 }]);
    let w = region.worker("push-a");
    region.until_pushing(&w).await;
    region.incident(1).await;
    region.until_settled().await;
    for (fake, device, tries) in [(&region.fcm, &bob.device_token, 2), (&region.apns, &alice.device_token, 3)] {
        let seen: Vec<_> = fake.seen().into_iter().filter(|s| &s.device == device).collect();
        assert_eq!(seen.iter().map(|s| s.status).collect::<Vec<_>>(), [vec![429; tries - 1], vec![200]].concat());
        for pair in seen.windows(2) {
            assert!(pair[1].at.duration_since(pair[0].at) >= Duration::from_secs(1), "a retry came before its Retry-After");
        }
    }
    assert_eq!(metric(&w.metrics, "herald_push_retries_total{platform=\"apns\",reason=\"too_many_requests\"}"), 2.0);
}

#[tokio::test]
async fn what_finally_fails_is_dead_lettered_and_a_device_gets_at_most_its_rate() {
    let region = Region::with(|c| {
        c.max_attempts = 2;
        c.per_device_per_minute = 2;
    })
    .await;
    let bob = region.register("bob", Platform::Fcm, "bob-phone", &["incidents"]).await;
    let alice = region.register("alice", Platform::Apns, "alice-phone", &["incidents"]).await;
    // Bob's two allowed notifications get two 429s each: both run out of attempts.
    region.fcm.script(&bob.device_token, &[Reply::TooMany { secs: 0 }; 4]);
    let w = region.worker("push-a");
    region.until_pushing(&w).await;
    for n in 1..=4 {
        region.incident(n).await;
    }
    region.until_settled().await;
    let letters = region.store().dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    for l in &letters {
        assert_eq!((l["reason"].as_str(), l["attempts"].as_str()), ("retries_exhausted", "2"));
        assert_eq!(l["device"], format!("fcm:{}", bob.device_token));
        assert_eq!(l["channel"], "acme/incidents");
    }
    assert_eq!(region.fcm.seen().iter().filter(|s| s.device == bob.device_token).count(), 4);
    assert_eq!(region.apns.seen().iter().filter(|s| s.device == alice.device_token).count(), 2, "two a minute");
    assert_eq!(metric(&w.metrics, "herald_push_failed_total{platform=\"apns\",reason=\"rate_limited\"}"), 2.0);
}

#[tokio::test]
async fn a_crash_mid_stream_resends_only_what_was_in_flight_and_skips_nothing() {
    let region = Region::new().await;
    let devices = [
        region.register("alice", Platform::Apns, "alice-phone", &["incidents"]).await,
        region.register("bob", Platform::Fcm, "bob-phone", &["incidents"]).await,
        region.register("carol", Platform::Fcm, "carol-phone", &["incidents"]).await,
    ];
    let fake = |p: Platform| if p == Platform::Apns { &region.apns } else { &region.fcm };
    let first = region.worker("push-a");
    region.until_pushing(&first).await;
    let mut ids = Vec::new();
    for n in 1..=10 {
        ids.push(region.incident(n).await);
    }
    eventually("the first ten records' notifications", || devices.iter().all(|d| counts(fake(d.platform), &d.device_token).len() == 10)).await;
    // From now on the services take requests but do not answer: these are in flight.
    region.apns.hold();
    region.fcm.hold();
    for n in 11..=20 {
        ids.push(region.incident(n).await);
    }
    eventually("requests in flight", || region.apns.seen().iter().chain(region.fcm.seen().iter()).any(|s| s.held)).await;
    // The answered ones are marked sent (the worker writes the marker right after the answer).
    let store = region.store();
    'marked: loop {
        for (i, id) in ids.iter().enumerate() {
            let keys: Vec<String> = devices.iter().map(|d| d.device_key()).collect();
            let answered: Vec<bool> = devices.iter().map(|d| fake(d.platform).seen().iter().any(|s| s.device == d.device_token && !s.held && s.data["n"] == (i + 1).to_string())).collect();
            let marked = store.sent(id, &keys).await.unwrap();
            if answered.iter().zip(&marked).any(|(a, m)| *a && !m) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue 'marked;
            }
        }
        break;
    }
    first.task.abort();
    let _ = first.task.await;
    region.apns.release();
    region.fcm.release();
    // Another replica takes over when the dead one's lease expires.
    let second = region.worker("push-b");
    region.until_pushing(&second).await;
    for n in 21..=30 {
        region.incident(n).await;
    }
    region.until_settled().await;
    for d in &devices {
        let seen: Vec<_> = fake(d.platform).seen().into_iter().filter(|s| s.device == d.device_token).collect();
        for n in 1..=30 {
            let of_n: Vec<_> = seen.iter().filter(|s| s.data["n"] == n.to_string()).collect();
            assert!(!of_n.is_empty(), "{} never got record {n}", d.user);
            if of_n[0].held {
                assert_eq!(of_n.len(), 2, "{} got record {n} while it was in flight at the crash: it is sent once more", d.user);
            }
            if of_n.len() > 1 {
                assert_eq!(of_n.len(), 2, "{} got record {n} {} times", d.user, of_n.len());
                assert!(of_n[0].held, "{} got record {n} twice, and the first was not in flight at the crash", d.user);
                assert_eq!(of_n[0].id, of_n[1].id, "a resend carries the same apns-id");
            }
        }
    }
    assert_eq!((region.apns.violations(), region.fcm.violations()), (vec![], vec![]));
}

#[tokio::test]
async fn a_second_worker_does_nothing_while_the_first_holds_the_lease_then_takes_over() {
    let region = Region::new().await;
    let alice = region.register("alice", Platform::Apns, "alice-phone", &["incidents"]).await;
    let first = region.worker("push-a");
    region.until_pushing(&first).await;
    let second = region.worker("push-b");
    for n in 1..=3 {
        region.incident(n).await;
    }
    region.until_settled().await;
    // Several lease renewals later, the standby has still done nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metric(&second.metrics, "herald_push_active"), 0.0);
    assert_eq!(metric(&second.metrics, "herald_push_sent_total{platform=\"apns\"}"), 0.0);
    assert_eq!(metric(&first.metrics, "herald_push_sent_total{platform=\"apns\"}"), 3.0);
    first.task.abort();
    region.until_pushing(&second).await;
    for n in 4..=6 {
        region.incident(n).await;
    }
    region.until_settled().await;
    assert_eq!(counts(&region.apns, &alice.device_token), each_once(1..=6));
    assert_eq!(metric(&second.metrics, "herald_push_sent_total{platform=\"apns\"}"), 3.0);
}

#[tokio::test]
async fn a_stopped_worker_gives_the_lease_up_at_once() {
    let region = Region::new().await;
    let first = region.worker("push-a");
    region.until_pushing(&first).await;
    let second = region.worker("push-b");
    first.stop.cancel();
    first.task.await.unwrap();
    region.until_pushing(&second).await;
    assert_eq!(metric(&first.metrics, "herald_push_active"), 0.0);
}
