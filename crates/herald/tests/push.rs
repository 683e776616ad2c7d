//! `herald push` as an operator meets it: `--check` reads the config and the credentials and
//! names what is wrong, connecting to nothing.

mod support;

use std::process::Command;
use support::BIN;

fn config(fake_apns: &herald_push::testing::Fake, fake_fcm: &herald_push::testing::Fake, edit: impl Fn(String) -> String) -> String {
    let a = fake_apns.apns_config();
    let f = fake_fcm.fcm_config();
    edit(format!(
        r#"
[edge]
region = "eu"
[bus]
url = "kafka://127.0.0.1:9"
[presence]
url = "redis://127.0.0.1:9"
[push.apns]
key_file = "{}"
key_id = "KEY1234567"
team_id = "TEAM765432"
[push.fcm]
service_account_file = "{}"
[[push.channels]]
pattern = "incidents"
title = "Incident {{/id}}"
body = "{{/summary}}"
collapse_key = "incident-{{/id}}"
"#,
        a.key_file.display(),
        f.service_account_file.display()
    ))
}

fn check(text: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("herald-push-check-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("herald.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN).args(["push", "--config", path.to_str().unwrap(), "--check"]).env_remove("HERALD_REGION").output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn check_reads_the_credentials_and_names_what_is_wrong() {
    let (apns, fcm) = (herald_push::testing::Fake::apns().await, herald_push::testing::Fake::fcm().await);
    let (code, out) = check(&config(&apns, &fcm, |c| c));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration ok"), "{out}");
    let key = apns.keys.apns_key_file.to_str().unwrap().to_owned();
    let garbage = apns.keys.apns_key_file.with_file_name("garbage.p8").to_str().unwrap().to_owned();
    std::fs::write(&garbage, "not a key").unwrap();
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|c: String| c.replace("AuthKey_", "NoSuchKey_")), "push.apns.key_file"),
        (Box::new(move |c: String| c.replace(&key, &garbage)), "push.apns.key_file"),
        (Box::new(|c: String| c.replace("service-account.json", "missing.json")), "push.fcm.service_account_file"),
        (Box::new(|c: String| c.replace("{/summary}", "{summary}")), "body"),
        (Box::new(|c: String| c.replace("kafka://127.0.0.1:9", "memory")), "bus.url"),
        (Box::new(|c: String| c.replace("redis://127.0.0.1:9", "memory")), "presence.url"),
        (Box::new(|c: String| c.replace("pattern = \"incidents\"", "pattern = \"in*ci*\"")), "pattern"),
    ];
    for (edit, named) in cases {
        let (code, out) = check(&config(&apns, &fcm, &edit));
        assert_eq!(code, 64, "{named}: {out}");
        assert!(out.contains(named), "the error names {named}: {out}");
    }
}
