//! Frames a client sends, and their decoder.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::codes::ErrorCode;

/// A request id chosen by the client and echoed in the reply: a number or a short string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A JSON number (integer).
    Num(i64),
    /// A JSON string of at most 64 characters.
    Str(String),
}

/// A frame from a client.
///
/// Serializes as the documented JSON (clients use this); decoding goes through
/// [`decode_client_frame`], which reports errors with protocol codes.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authentication, as the first frame (browsers cannot set headers on a WebSocket).
    Auth {
        /// The JWT.
        token: String,
    },
    /// Subscribe to a channel, optionally resuming after a cursor.
    Subscribe {
        /// Request id.
        id: RequestId,
        /// Channel name relative to the account.
        channel: String,
        /// Resume after this cursor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
        /// Also receive join/leave events.
        #[serde(default)]
        presence: bool,
        /// Deliver at most this many times per second (records in between are sent together).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_rate: Option<f64>,
    },
    /// End a subscription.
    Unsubscribe {
        /// Request id.
        id: RequestId,
        /// Channel name.
        channel: String,
    },
    /// Publish a record.
    Publish {
        /// Request id.
        id: RequestId,
        /// Channel name.
        channel: String,
        /// The payload, any JSON value.
        data: Box<RawValue>,
        /// Deduplicates retries within the idempotency window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// Stop a subscription's deliveries for now (its screen is not showing), keeping its place.
    Pause {
        /// Request id.
        id: RequestId,
        /// Channel name.
        channel: String,
    },
    /// Restart a paused subscription exactly where it stopped.
    Resume {
        /// Request id.
        id: RequestId,
        /// Channel name.
        channel: String,
    },
    /// Who is subscribed to a channel.
    Presence {
        /// Request id.
        id: RequestId,
        /// Channel name.
        channel: String,
    },
    /// Replace the connection's token before it expires.
    Refresh {
        /// Request id.
        id: RequestId,
        /// The new JWT.
        token: String,
    },
    /// Liveness check; answered with `pong`.
    Ping {
        /// Request id, echoed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    /// Answer to the server's heartbeat `ping`.
    Pong {},
    /// Register this device for mobile push (docs/push.md) under the token's user.
    RegisterDevice {
        /// Request id.
        id: RequestId,
        /// `apns` or `fcm`.
        platform: String,
        /// The device token APNs or FCM gave the app.
        token: String,
        /// The app's bundle id (APNs) or Firebase project id (FCM).
        app: String,
    },
    /// Remove this device's registration.
    UnregisterDevice {
        /// Request id.
        id: RequestId,
        /// `apns` or `fcm`.
        platform: String,
        /// The device token.
        token: String,
    },
}

/// Why a frame could not be decoded: the code to answer with, and the request id if one could be
/// read, so the error can be matched to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// The frame's `id`, when it was readable.
    pub id: Option<RequestId>,
    /// A human-readable explanation.
    pub message: String,
}

const KNOWN_TYPES: &[&str] =
    &["auth", "subscribe", "unsubscribe", "publish", "presence", "refresh", "ping", "pong", "pause", "resume", "register_device", "unregister_device"];

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    ty: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// Decodes one frame. Any input yields either a frame or a [`FrameError`] with a documented code.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| FrameError {
        code: ErrorCode::BadRequest,
        id: None,
        message: format!("frame is not a JSON object: {e}"),
    })?;
    let id = match env.id {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match serde_json::from_value::<RequestId>(v) {
            Ok(RequestId::Str(s)) if s.len() > 64 => {
                return Err(FrameError { code: ErrorCode::BadRequest, id: None, message: "id is longer than 64 characters".into() });
            }
            Ok(id) => Some(id),
            Err(_) => {
                return Err(FrameError { code: ErrorCode::BadRequest, id: None, message: "id must be an integer or a string".into() });
            }
        },
    };
    let ty = match env.ty {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(FrameError { code: ErrorCode::BadRequest, id, message: "type must be a string".into() }),
        None => return Err(FrameError { code: ErrorCode::BadRequest, id, message: "frame has no type".into() }),
    };
    if !KNOWN_TYPES.contains(&ty.as_str()) {
        let shown: String = ty.chars().take(32).collect();
        return Err(FrameError { code: ErrorCode::UnknownType, id, message: format!("unknown frame type {shown:?}") });
    }
    let bad = |e: serde_json::Error| FrameError { code: ErrorCode::BadRequest, id: id.clone(), message: format!("bad {ty} frame: {e}") };
    // `RawValue` cannot sit inside an internally tagged enum, so each type has its own body.
    Ok(match ty.as_str() {
        "auth" => {
            let b: AuthBody = serde_json::from_str(text).map_err(bad)?;
            ClientFrame::Auth { token: b.token }
        }
        "subscribe" => {
            let b: SubscribeBody = serde_json::from_str(text).map_err(bad)?;
            ClientFrame::Subscribe { id: b.id, channel: b.channel, since: b.since, presence: b.presence, max_rate: b.max_rate }
        }
        "unsubscribe" | "presence" | "pause" | "resume" => {
            let ChannelBody { id, channel } = serde_json::from_str(text).map_err(bad)?;
            match ty.as_str() {
                "unsubscribe" => ClientFrame::Unsubscribe { id, channel },
                "presence" => ClientFrame::Presence { id, channel },
                "pause" => ClientFrame::Pause { id, channel },
                _ => ClientFrame::Resume { id, channel },
            }
        }
        "publish" => {
            let b: PublishBody = serde_json::from_str(text).map_err(bad)?;
            ClientFrame::Publish { id: b.id, channel: b.channel, data: b.data, idempotency_key: b.idempotency_key }
        }
        "refresh" => {
            let b: RefreshBody = serde_json::from_str(text).map_err(bad)?;
            ClientFrame::Refresh { id: b.id, token: b.token }
        }
        "register_device" => {
            let b: DeviceBody = serde_json::from_str(text).map_err(bad)?;
            let app = b.app.ok_or_else(|| FrameError { code: ErrorCode::BadRequest, id: Some(b.id.clone()), message: "bad register_device frame: missing field `app`".into() })?;
            ClientFrame::RegisterDevice { id: b.id, platform: b.platform, token: b.token, app }
        }
        "unregister_device" => {
            let b: DeviceBody = serde_json::from_str(text).map_err(bad)?;
            ClientFrame::UnregisterDevice { id: b.id, platform: b.platform, token: b.token }
        }
        "ping" => ClientFrame::Ping { id },
        _ => ClientFrame::Pong {},
    })
}

#[derive(Deserialize)]
struct AuthBody {
    token: String,
}

#[derive(Deserialize)]
struct SubscribeBody {
    id: RequestId,
    channel: String,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    presence: bool,
    #[serde(default)]
    max_rate: Option<f64>,
}

#[derive(Deserialize)]
struct ChannelBody {
    id: RequestId,
    channel: String,
}

#[derive(Deserialize)]
struct PublishBody {
    id: RequestId,
    channel: String,
    data: Box<RawValue>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
struct DeviceBody {
    id: RequestId,
    platform: String,
    token: String,
    #[serde(default)]
    app: Option<String>,
}

#[derive(Deserialize)]
struct RefreshBody {
    id: RequestId,
    token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_frames_decode() {
        match decode_client_frame(r#"{"type":"subscribe","id":1,"channel":"incidents","since":"c1.a.b.1"}"#).unwrap() {
            ClientFrame::Subscribe { id, channel, since, presence, .. } => {
                assert_eq!(id, RequestId::Num(1));
                assert_eq!(channel, "incidents");
                assert_eq!(since.as_deref(), Some("c1.a.b.1"));
                assert!(!presence);
            }
            f => panic!("wrong frame {f:?}"),
        }
        match decode_client_frame(r#"{"type":"publish","id":"p","channel":"c","data":{"a":[1,2]},"extra":true}"#).unwrap() {
            ClientFrame::Publish { data, .. } => assert_eq!(data.get(), r#"{"a":[1,2]}"#),
            f => panic!("wrong frame {f:?}"),
        }
        assert!(matches!(decode_client_frame(r#"{"type":"pong"}"#).unwrap(), ClientFrame::Pong {}));
        match decode_client_frame(r#"{"type":"register_device","id":9,"platform":"apns","token":"ab12","app":"com.example"}"#).unwrap() {
            ClientFrame::RegisterDevice { id, platform, token, app } => assert_eq!((id, platform.as_str(), token.as_str(), app.as_str()), (RequestId::Num(9), "apns", "ab12", "com.example")),
            f => panic!("wrong frame {f:?}"),
        }
        let e = decode_client_frame(r#"{"type":"register_device","id":9,"platform":"apns","token":"ab12"}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, Some(RequestId::Num(9))));
        assert!(matches!(decode_client_frame(r#"{"type":"unregister_device","id":10,"platform":"fcm","token":"t"}"#).unwrap(), ClientFrame::UnregisterDevice { .. }));
    }

    #[test]
    fn malformed_frames_get_precise_codes_and_keep_the_request_id() {
        let e = decode_client_frame("not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = decode_client_frame(r#"{"type":"explode","id":7}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::UnknownType, Some(RequestId::Num(7))));
        let e = decode_client_frame(r#"{"type":"subscribe","id":8,"channel":5}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, Some(RequestId::Num(8))));
        let e = decode_client_frame(r#"{"type":"subscribe","id":9}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(decode_client_frame(r#"{"type":1}"#).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(decode_client_frame("[1,2]").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(decode_client_frame(r#"{"id":{"x":1},"type":"ping"}"#).unwrap_err().code, ErrorCode::BadRequest);
        let long = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(65));
        assert_eq!(decode_client_frame(&long).unwrap_err().code, ErrorCode::BadRequest);
    }
}
