//! Both DeviceRegistry adapters pass the conformance suite; Redis's registrations survive a
//! restart of every process that uses them (they live in Redis, nowhere else).

use std::sync::Arc;

use herald_core::devices::conformance;
use herald_core::{DeviceRegistry, Platform};
use herald_presence_redis::testing::RedisServer;
use herald_push::{MemoryRegistry, RedisRegistry};

#[tokio::test]
async fn the_memory_registry_passes_the_conformance_suite() {
    conformance::run_all(Arc::new(MemoryRegistry::new())).await;
}

#[tokio::test]
async fn the_redis_registry_passes_the_conformance_suite() {
    let redis = RedisServer::start();
    let conn = herald_push::store::connect(&redis.url(), &Default::default()).unwrap();
    conformance::run_all(Arc::new(RedisRegistry::new(conn, "herald:push:"))).await;
}

#[tokio::test]
async fn redis_registrations_outlive_the_process_that_wrote_them_and_stay_under_the_prefix() {
    let redis = RedisServer::start();
    let r = conformance::registration("acme", "alice", Platform::Fcm, "phone", &["incidents"]);
    {
        let conn = herald_push::store::connect(&redis.url(), &Default::default()).unwrap();
        RedisRegistry::new(conn, "eu:push:").register(r.clone()).await.unwrap();
    }
    // A new connection, as after a restart of the process.
    let conn = herald_push::store::connect(&redis.url(), &Default::default()).unwrap();
    assert_eq!(RedisRegistry::new(conn.clone(), "eu:push:").get(Platform::Fcm, "phone").await.unwrap(), Some(r));
    assert_eq!(RedisRegistry::new(conn.clone(), "us:push:").get(Platform::Fcm, "phone").await.unwrap(), None, "another prefix is another registry");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn.clone()).await.unwrap();
    assert!(!keys.is_empty() && keys.iter().all(|k| k.starts_with("eu:push:")), "{keys:?}");
}
