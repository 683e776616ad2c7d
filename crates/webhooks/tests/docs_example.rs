//! The worked signature example of docs/backends.md is right: its headers are what Herald sends
//! for its body, secrets and `t`, and they verify with each secret and not with another.

use herald_webhooks::signature::{SignatureError, sign, verify};

/// The text in the first pair of backticks on the line starting with `prefix`.
fn ticked<'a>(doc: &'a str, prefix: &str) -> &'a str {
    let line = doc.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("docs/backends.md has no line starting with {prefix:?}"));
    line.split('`').nth(1).unwrap_or_else(|| panic!("no `…` on {line:?}"))
}

/// The first line of the first fenced block after the line starting with `prefix`.
fn block_after<'a>(doc: &'a str, prefix: &str) -> &'a str {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(prefix));
    lines.next().unwrap_or_else(|| panic!("docs/backends.md has no line starting with {prefix:?}"));
    let mut lines = lines.skip_while(|l| !l.starts_with("```"));
    lines.next();
    lines.next().expect("a fenced block with one line")
}

#[test]
fn the_worked_example_in_docs_backends_md_signs_and_verifies() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/backends.md")).unwrap();
    let old = ticked(&doc, "- secret:").as_bytes().to_vec();
    let new = ticked(&doc, "- second secret").as_bytes().to_vec();
    let t: u64 = ticked(&doc, "- t:").parse().unwrap();
    let body = block_after(&doc, "- body").as_bytes();
    let one = block_after(&doc, "- the header with the first secret only").strip_prefix("Herald-Signature: ").unwrap();
    let both = block_after(&doc, "- the header with both secrets").strip_prefix("Herald-Signature: ").unwrap();

    assert_eq!(sign(std::slice::from_ref(&old), t, body), one);
    assert_eq!(sign(&[old.clone(), new.clone()], t, body), both);
    assert_eq!(verify(one, body, &old, t + 10, 300), Ok(()));
    assert_eq!(verify(one, body, &new, t + 10, 300), Err(SignatureError::Mismatch), "the new secret does not verify the old header");
    assert_eq!(verify(both, body, &old, t, 300), Ok(()));
    assert_eq!(verify(both, body, &new, t, 300), Ok(()));
    assert_eq!(verify(both, body, b"whsec-wrong-0123456789abcd", t, 300), Err(SignatureError::Mismatch));
    let body: serde_json::Value = serde_json::from_slice(body).unwrap();
    let events: Vec<herald_webhooks::Event> = serde_json::from_value(body["events"].clone()).expect("the example is an events body");
    assert_eq!(events[0].kind, herald_webhooks::EventType::ConnectionClosed);
}
