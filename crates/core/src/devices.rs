//! Device registrations for mobile push: which phone (an APNs or FCM device token) belongs to
//! which user of which account, and which channels that user could read when it registered.
//!
//! The push worker (`herald-push`) reads registrations to decide who gets a notification; the
//! edge writes them when a client registers its device. Two adapters implement
//! [`DeviceRegistry`]: in memory and Redis (both in `herald-push`). Both pass
//! [`conformance::run_all`] (feature `testing`).
//!
//! A device token identifies one app install on one phone, so it has one owner: registering a
//! token that another user holds moves it to the new user (the phone changed hands, or another
//! account logged in on it).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::names::{AccountId, ChannelName, ChannelPattern};

#[cfg(feature = "testing")]
pub mod conformance;

/// Longest accepted device token (FCM tokens are about 160 characters today; APNs 64 hex digits).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest accepted app id (bundle id or FCM project id).
pub const MAX_APP_LEN: usize = 255;
/// Longest accepted user (a token's `sub`).
pub const MAX_USER_LEN: usize = 256;
/// Most channel patterns one registration may carry.
pub const MAX_READABLE: usize = 256;

/// The push service a device token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Apple Push Notification service (iOS, iPadOS, macOS).
    Apns,
    /// Firebase Cloud Messaging (Android, and iOS apps that use Firebase).
    Fcm,
}

impl Platform {
    /// `apns` or `fcm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apns => "apns",
            Self::Fcm => "fcm",
        }
    }

    /// Parses `apns` or `fcm`.
    pub fn parse(s: &str) -> Result<Self, DeviceError> {
        match s {
            "apns" => Ok(Self::Apns),
            "fcm" => Ok(Self::Fcm),
            _ => Err(DeviceError::Invalid(format!("platform must be apns or fcm, not {s:?}"))),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can go wrong with a registration or its storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    /// A field is malformed; the message names it. Nothing was stored.
    #[error("invalid device registration: {0}")]
    Invalid(String),
    /// Storage cannot be reached now; the caller may retry.
    #[error("device registry unavailable: {0}")]
    Unavailable(String),
}

/// One device of one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The account the user belongs to.
    pub account: AccountId,
    /// The user (the client token's `sub`).
    pub user: String,
    /// APNs or FCM.
    pub platform: Platform,
    /// The token the push service gave the app on this device.
    pub device_token: String,
    /// APNs: the app's bundle id (the `apns-topic`); FCM: the Firebase project id.
    pub app: String,
    /// The channel patterns the client token could subscribe to when the device registered: a
    /// notification is only ever sent for a channel one of them matches.
    pub readable: Vec<ChannelPattern>,
    /// When it was registered (milliseconds since the Unix epoch). A provider's "token gone"
    /// answer older than this does not remove it ([`DeviceRegistry::remove_invalid`]).
    pub registered_at_ms: u64,
}

impl Registration {
    /// Checks every field (token charset per platform, lengths, the app id); the error names the
    /// field.
    pub fn validate(&self) -> Result<(), DeviceError> {
        let bad = |m: String| Err(DeviceError::Invalid(m));
        if self.user.is_empty() || self.user.len() > MAX_USER_LEN || self.user.chars().any(char::is_control) {
            return bad(format!("user must be 1-{MAX_USER_LEN} characters without control characters"));
        }
        validate_token(self.platform, &self.device_token)?;
        if self.app.is_empty() || self.app.len() > MAX_APP_LEN || !self.app.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
            return bad(format!("app must be 1-{MAX_APP_LEN} characters of A-Z a-z 0-9 . - _ (a bundle id or a Firebase project id)"));
        }
        if self.readable.len() > MAX_READABLE {
            return bad(format!("readable: at most {MAX_READABLE} channel patterns"));
        }
        Ok(())
    }

    /// Whether this device's user may read `channel`: its own personal channel, or a channel
    /// one of its patterns matches ([`crate::may_read`]).
    pub fn may_read(&self, channel: &ChannelName) -> bool {
        crate::may_read(&self.user, &self.readable, channel)
    }

    /// The device token's last 6 characters: how APIs and logs show a device.
    pub fn token_tail(&self) -> &str {
        let cut = self.device_token.char_indices().rev().nth(5).map_or(0, |(i, _)| i);
        &self.device_token[cut..]
    }

    /// The registry's key for this device: `platform:token`.
    pub fn device_key(&self) -> String {
        device_key(self.platform, &self.device_token)
    }
}

/// `platform:token`, how a device is named in storage and logs' counters.
pub fn device_key(platform: Platform, token: &str) -> String {
    format!("{platform}:{token}")
}

/// Checks a device token's shape: APNs tokens are hex digits (64 today; up to 200 accepted, as
/// Apple says they may grow), FCM tokens 1-4096 characters of `A-Z a-z 0-9 - _ :`.
pub fn validate_token(platform: Platform, token: &str) -> Result<(), DeviceError> {
    let ok = match platform {
        Platform::Apns => (32..=200).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_hexdigit()),
        Platform::Fcm => (1..=MAX_TOKEN_LEN).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':')),
    };
    if ok {
        Ok(())
    } else {
        Err(DeviceError::Invalid(match platform {
            Platform::Apns => "device_token: an APNs token is 32-200 hex digits".into(),
            Platform::Fcm => format!("device_token: an FCM token is 1-{MAX_TOKEN_LEN} characters of A-Z a-z 0-9 - _ :"),
        }))
    }
}

/// A channel pattern as written in a token (`incidents`, `chat:*`, `*`).
pub fn pattern_text(p: &ChannelPattern) -> String {
    match p {
        ChannelPattern::Exact(e) => e.clone(),
        ChannelPattern::Prefix(prefix) => format!("{prefix}*"),
    }
}

/// A page of an account's registrations, in device-key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistrationPage {
    /// The registrations.
    pub items: Vec<Registration>,
    /// Pass as [`PageRequest::after`] for the next page; `None` when this was the last.
    pub next: Option<String>,
}

/// Which page of an account's registrations to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Start after this device key (`None`: from the start).
    pub after: Option<String>,
    /// At most this many (at least 1).
    pub limit: usize,
}

impl PageRequest {
    /// The first page of `limit` registrations.
    pub fn first(limit: usize) -> Self {
        Self { after: None, limit }
    }
}

/// Where device registrations live.
#[async_trait]
pub trait DeviceRegistry: Send + Sync + 'static {
    /// Stores `r` (validated first). The same device registered again replaces the earlier
    /// registration, whichever user held it: the token moves to `r.user`.
    async fn register(&self, r: Registration) -> Result<(), DeviceError>;

    /// The registration of one device, if any.
    async fn get(&self, platform: Platform, token: &str) -> Result<Option<Registration>, DeviceError>;

    /// Removes a device (the user logged out, or an operator removed it). True if it existed.
    async fn remove(&self, platform: Platform, token: &str) -> Result<bool, DeviceError>;

    /// Removes a device the push service says is gone (APNs 410, FCM `UNREGISTERED`), unless it
    /// was registered again after `invalid_since_ms` (the app got the same token back and
    /// registered it while the answer was on its way). True if it was removed.
    async fn remove_invalid(&self, platform: Platform, token: &str, invalid_since_ms: u64) -> Result<bool, DeviceError>;

    /// Every device of one user, in device-key order.
    async fn list_user(&self, account: &AccountId, user: &str) -> Result<Vec<Registration>, DeviceError>;

    /// One page of an account's devices, in device-key order.
    async fn list_account(&self, account: &AccountId, page: PageRequest) -> Result<RegistrationPage, DeviceError>;

    /// Every device of `account` whose user may read `channel` (reads every page).
    async fn readers(&self, account: &AccountId, channel: &ChannelName) -> Result<Vec<Registration>, DeviceError> {
        if channel.is_personal() {
            // Only its own user reads a personal channel: that user's devices, not the account's.
            let Some(user) = channel.personal_user() else { return Ok(Vec::new()) };
            return Ok(self.list_user(account, &user).await?.into_iter().filter(|r| r.may_read(channel)).collect());
        }
        let mut out = Vec::new();
        let mut page = PageRequest::first(500);
        loop {
            let p = self.list_account(account, page.clone()).await?;
            out.extend(p.items.into_iter().filter(|r| r.may_read(channel)));
            match p.next {
                Some(after) => page.after = Some(after),
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(platform: Platform, token: &str) -> Registration {
        Registration {
            account: AccountId::new("acme").unwrap(),
            user: "u1".into(),
            platform,
            device_token: token.into(),
            app: "com.example.app".into(),
            readable: vec![ChannelPattern::parse("incidents").unwrap(), ChannelPattern::parse("chat:*").unwrap()],
            registered_at_ms: 1,
        }
    }

    #[test]
    fn tokens_are_checked_per_platform() {
        assert!(reg(Platform::Apns, &"ab".repeat(32)).validate().is_ok());
        assert!(reg(Platform::Apns, "not-hex").validate().is_err());
        assert!(reg(Platform::Fcm, "dGVzd:APA91b-x_y").validate().is_ok());
        assert!(reg(Platform::Fcm, "has space").validate().is_err());
        assert!(reg(Platform::Fcm, "").validate().is_err());
        let mut r = reg(Platform::Fcm, "t");
        r.app = "bad/app".into();
        assert!(r.validate().unwrap_err().to_string().contains("app"));
    }

    #[test]
    fn a_device_may_read_only_what_its_patterns_match() {
        let r = reg(Platform::Fcm, "t");
        assert!(r.may_read(&ChannelName::new("incidents").unwrap()));
        assert!(r.may_read(&ChannelName::new("chat:9").unwrap()));
        assert!(!r.may_read(&ChannelName::new("billing").unwrap()));
        assert_eq!(r.readable.iter().map(pattern_text).collect::<Vec<_>>(), ["incidents", "chat:*"]);
    }

    #[test]
    fn platforms_parse_and_print() {
        assert_eq!(Platform::parse("apns").unwrap(), Platform::Apns);
        assert_eq!(Platform::Fcm.to_string(), "fcm");
        assert!(Platform::parse("gcm").is_err());
    }
}
