//! Account and channel names, and the capability patterns that tokens carry.
//!
//! A client names channels relative to its account; Herald joins the two into a [`ChannelKey`].
//! Because account names cannot contain `/` and channel names cannot either, no string a client
//! sends can produce another account's key.

use std::fmt;
use std::sync::Arc;

/// Longest accepted account name.
pub const MAX_ACCOUNT_LEN: usize = 64;
/// Longest accepted channel name.
pub const MAX_CHANNEL_LEN: usize = 128;

/// The account edges publish their probes to (a record through the bus and back, to prove the
/// node's path works). Its records are region-local: the replicator never copies them, and
/// they are not counted as published or delivered.
pub const PROBE_ACCOUNT: &str = "herald-probe";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{what} name is empty")]
    Empty {
        /// "account" or "channel".
        what: &'static str,
    },
    /// The name is longer than allowed.
    #[error("{what} name is longer than {max} characters")]
    TooLong {
        /// "account" or "channel".
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The name contains a character outside the allowed set.
    #[error("{what} name contains a character that is not allowed ({allowed})")]
    BadChar {
        /// "account" or "channel".
        what: &'static str,
        /// The allowed set, for the error message.
        allowed: &'static str,
    },
    /// The name contains `..`.
    #[error("channel name may not contain '..'")]
    DotDot,
}

/// An account: the unit of isolation. Every connection, key and channel belongs to one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(Arc<str>);

/// Read from config files as a string, checked like [`AccountId::new`]: a bad name is an error
/// naming the key, at parse time.
impl<'de> serde::Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AccountId::new(&s).map_err(|e| serde::de::Error::custom(format!("account {s:?}: {e}")))
    }
}

impl AccountId {
    /// Validates `name` (1–64 characters of `a-z 0-9 _ -`).
    pub fn new(name: &str) -> Result<Self, NameError> {
        const WHAT: &str = "account";
        if name.is_empty() {
            return Err(NameError::Empty { what: WHAT });
        }
        if name.len() > MAX_ACCOUNT_LEN {
            return Err(NameError::TooLong { what: WHAT, max: MAX_ACCOUNT_LEN });
        }
        if !name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')) {
            return Err(NameError::BadChar { what: WHAT, allowed: "a-z 0-9 _ -" });
        }
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is [`PROBE_ACCOUNT`], whose records stay in their region.
    pub fn is_probe(&self) -> bool {
        &*self.0 == PROBE_ACCOUNT
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", &self.0)
    }
}

/// A channel name as a client sees it, relative to its account (`incidents`, `chat:42`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

fn is_channel_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b':' | b'.' | b'@' | b'=' | b',')
}

impl ChannelName {
    /// Validates `name`: 1–128 characters of `A-Z a-z 0-9 _ - : . @ = ,`, no `..`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        const WHAT: &str = "channel";
        if name.is_empty() {
            return Err(NameError::Empty { what: WHAT });
        }
        if name.len() > MAX_CHANNEL_LEN {
            return Err(NameError::TooLong { what: WHAT, max: MAX_CHANNEL_LEN });
        }
        if !name.bytes().all(is_channel_byte) {
            return Err(NameError::BadChar { what: WHAT, allowed: "A-Z a-z 0-9 _ - : . @ = ," });
        }
        if name.contains("..") {
            return Err(NameError::DotDot);
        }
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The first character of a personal channel (docs/protocol.md, "Personal channels").
pub const PERSONAL_PREFIX: char = '@';

impl ChannelName {
    /// The personal channel of `user` (a token's `sub`): `@` and the id, with every byte that
    /// cannot appear in a channel name (and `=`, and a `.` right after a `.`) written `=XX` in
    /// hex, so that every id has exactly one personal channel and no two ids share one:
    /// `alice` → `@alice`, `auth0|42` → `@auth0=7C42`. An id too long for a channel name has
    /// none.
    pub fn personal(user: &str) -> Result<Self, NameError> {
        if user.is_empty() {
            return Err(NameError::Empty { what: "user" });
        }
        let mut name = String::with_capacity(user.len() + 1);
        name.push(PERSONAL_PREFIX);
        for b in user.bytes() {
            if b == b'=' || !is_channel_byte(b) || (b == b'.' && name.ends_with('.')) {
                name.push_str(&format!("={b:02X}"));
            } else {
                name.push(b as char);
            }
        }
        Self::new(&name)
    }

    /// The user whose personal channel this is (`None`: not a personal channel, or not one
    /// [`ChannelName::personal`] makes).
    pub fn personal_user(&self) -> Option<String> {
        let rest = self.0.strip_prefix(PERSONAL_PREFIX)?.as_bytes();
        let mut out = Vec::with_capacity(rest.len());
        let mut i = 0;
        while i < rest.len() {
            if rest[i] == b'=' {
                let hex = std::str::from_utf8(rest.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(rest[i]);
                i += 1;
            }
        }
        let user = String::from_utf8(out).ok()?;
        (Self::personal(&user).ok()? == *self).then_some(user)
    }

    /// Whether this is a personal channel (it starts with `@`): only its own user reads it,
    /// whatever a token's patterns say, and only backends publish to it.
    pub fn is_personal(&self) -> bool {
        self.0.starts_with(PERSONAL_PREFIX)
    }
}

/// Whether `user`, whose token (or device registration) may subscribe to `patterns`, may read
/// `channel`: a personal channel only its own user, any other channel when a pattern matches.
/// The one read check of tokens, history and push.
pub fn may_read(user: &str, patterns: &[ChannelPattern], channel: &ChannelName) -> bool {
    if channel.is_personal() {
        return ChannelName::personal(user).is_ok_and(|own| own == *channel);
    }
    patterns.iter().any(|p| p.matches(channel))
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelName({})", &self.0)
    }
}

/// A channel inside Herald: an account and a channel name (`acme/incidents`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKey {
    /// The owning account.
    pub account: AccountId,
    /// The channel name within the account.
    pub channel: ChannelName,
}

impl ChannelKey {
    /// Joins an account and a channel.
    pub fn new(account: AccountId, channel: ChannelName) -> Self {
        Self { account, channel }
    }

    /// Parses the internal form `account/channel`.
    pub fn parse(full: &str) -> Result<Self, NameError> {
        let (a, c) = full.split_once('/').ok_or(NameError::BadChar {
            what: "channel",
            allowed: "account/channel",
        })?;
        Ok(Self::new(AccountId::new(a)?, ChannelName::new(c)?))
    }
}

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.channel)
    }
}

impl fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelKey({self})")
    }
}

/// A capability pattern from a token: an exact channel name, a prefix ending in `*`, or `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelPattern {
    /// Matches exactly this name.
    Exact(String),
    /// Matches every name that starts with this prefix (the pattern without its `*`).
    Prefix(String),
}

/// Read from config files as a string, checked like [`ChannelPattern::parse`] at parse time.
impl<'de> serde::Deserialize<'de> for ChannelPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ChannelPattern::parse(&s).map_err(|e| serde::de::Error::custom(format!("channel pattern {s:?}: {e}")))
    }
}

impl ChannelPattern {
    /// Parses a pattern. A `*` is only allowed as the last character.
    pub fn parse(p: &str) -> Result<Self, NameError> {
        match p.strip_suffix('*') {
            Some(prefix) => {
                if prefix.contains('*') || !prefix.bytes().all(is_channel_byte) {
                    return Err(NameError::BadChar { what: "pattern", allowed: "channel characters, '*' last" });
                }
                Ok(Self::Prefix(prefix.to_owned()))
            }
            None => ChannelName::new(p).map(|c| Self::Exact(c.as_str().to_owned())),
        }
    }

    /// Whether `channel` matches.
    pub fn matches(&self, channel: &ChannelName) -> bool {
        match self {
            Self::Exact(e) => e == channel.as_str(),
            Self::Prefix(p) => channel.as_str().starts_with(p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_that_could_escape_the_account_are_refused() {
        for bad in ["", "../beta/x", "beta/x", "a/b", "ünï", "a b", "a..b", "x\n", &"x".repeat(129), "*"] {
            assert!(ChannelName::new(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["incidents", "chat:42", "user@x.y", "a=b,c", &"x".repeat(128)] {
            assert!(ChannelName::new(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn every_user_has_one_personal_channel_only_it_reads() {
        let name = |u: &str| ChannelName::personal(u).unwrap().as_str().to_owned();
        assert_eq!(name("alice"), "@alice");
        assert_eq!(name("alice@example.com"), "@alice@example.com");
        assert_eq!(name("auth0|42"), "@auth0=7C42");
        assert_eq!(name("a=7C"), "@a=3D7C", "an `=` is escaped too, so `a|` and `a=7C` differ");
        assert_eq!(name("a..b"), "@a.=2Eb");
        assert_eq!(name("ünï"), "@=C3=BCn=C3=AF");
        assert!(ChannelName::personal("").is_err());
        assert!(ChannelName::personal(&"|".repeat(60)).is_err(), "too long once escaped");
        let every = [ChannelPattern::parse("*").unwrap()];
        let alice = ChannelName::personal("alice").unwrap();
        assert!(alice.is_personal());
        for u in ["alice", "auth0|42", "a=7C", "a..b", "ünï"] {
            assert_eq!(ChannelName::personal(u).unwrap().personal_user().as_deref(), Some(u));
        }
        assert_eq!(ChannelName::new("@a=7c").unwrap().personal_user(), None, "not the one form personal() makes");
        assert_eq!(ChannelName::new("incidents").unwrap().personal_user(), None);
        assert!(may_read("alice", &[], &alice), "its own user, with no pattern at all");
        assert!(!may_read("bob", &every, &alice), "a `*` token does not read another user's personal channel");
        assert!(!may_read("bob", &[ChannelPattern::parse("@alice").unwrap()], &alice), "nor does a pattern naming it");
        assert!(may_read("bob", &every, &ChannelName::new("incidents").unwrap()));
        assert!(!may_read("bob", &[], &ChannelName::new("incidents").unwrap()));
    }

    #[test]
    fn account_names_are_lowercase_slugs() {
        assert!(AccountId::new("acme-1_x").is_ok());
        for bad in ["", "Acme", "a/b", "a.b", &"a".repeat(65)] {
            assert!(AccountId::new(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_probe_account_is_a_valid_account_and_recognised() {
        assert!(AccountId::new(PROBE_ACCOUNT).unwrap().is_probe());
        assert!(!AccountId::new("acme").unwrap().is_probe());
    }

    #[test]
    fn patterns_match_exact_names_and_prefixes() {
        let c = |s| ChannelName::new(s).unwrap();
        assert!(ChannelPattern::parse("chat:*").unwrap().matches(&c("chat:1")));
        assert!(!ChannelPattern::parse("chat:*").unwrap().matches(&c("chatx")));
        assert!(ChannelPattern::parse("*").unwrap().matches(&c("anything")));
        assert!(ChannelPattern::parse("incidents").unwrap().matches(&c("incidents")));
        assert!(!ChannelPattern::parse("incidents").unwrap().matches(&c("incidents2")));
        assert!(ChannelPattern::parse("a*b*").is_err());
        assert!(ChannelPattern::parse("a/*").is_err());
    }

    #[test]
    fn keys_render_and_parse_as_account_slash_channel() {
        let k = ChannelKey::parse("acme/incidents").unwrap();
        assert_eq!(k.to_string(), "acme/incidents");
        assert!(ChannelKey::parse("acme/in/cidents").is_err());
    }
}

#[cfg(test)]
mod isolation {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a client sends as a channel name, the channel it can reach belongs to its own
        /// account: the name is refused, or it joins into a key that parses back to that account.
        #[test]
        fn no_channel_name_reaches_another_account(name in "\\PC{0,40}|[a-z./:@=,_-]{0,20}|\\.\\./[a-z]{1,8}/[a-z]{1,8}") {
            let acme = AccountId::new("acme").unwrap();
            if let Ok(ch) = ChannelName::new(&name) {
                let key = ChannelKey::new(acme.clone(), ch);
                let back = ChannelKey::parse(&key.to_string()).expect("a valid key parses");
                prop_assert_eq!(back.account, acme);
                prop_assert!(!name.contains('/'));
            }
        }

    }
}

/// How urgent a channel's records are, relative to the others on one connection
/// (`[[edge.priority]]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Overtakes queued normal and low records.
    High,
    /// Ordinary channels.
    #[default]
    Normal,
    /// Sent after everything else; shed first when the queue overflows.
    Low,
}
