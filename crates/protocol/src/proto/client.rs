//! Client frames in the compact encoding: decoding (the server's side) and encoding (clients').

use bytes::Bytes;
use prost::Message as _;
use serde_json::value::RawValue;

use super::{pb, split_batch};
use crate::client::{ClientFrame, FrameError, RequestId};
use crate::codes::ErrorCode;

fn bad(id: Option<RequestId>, message: impl Into<String>) -> FrameError {
    FrameError { code: ErrorCode::BadRequest, id, message: message.into() }
}

/// Decodes every frame of a binary message (length-prefixed `ClientFrame`s). Each item is a frame
/// or a [`FrameError`] with a documented code; a broken length ends the message with one error.
pub fn decode_client_message(message: &[u8]) -> impl Iterator<Item = Result<ClientFrame, FrameError>> + '_ {
    split_batch(message).map(|f| match f {
        Ok(frame) => decode_client_frame(frame),
        Err(e) => Err(bad(None, format!("bad batch: {e}"))),
    })
}

/// Decodes one `ClientFrame` (without its length prefix). Never panics.
pub fn decode_client_frame(frame: &[u8]) -> Result<ClientFrame, FrameError> {
    use pb::client_frame::Kind;
    let f = pb::ClientFrame::decode(frame).map_err(|e| bad(None, format!("frame is not a herald.v1.ClientFrame: {e}")))?;
    let Some(kind) = f.kind else {
        return Err(FrameError { code: ErrorCode::UnknownType, id: None, message: "frame has no known type".into() });
    };
    Ok(match kind {
        Kind::Auth(a) => ClientFrame::Auth { token: a.token },
        Kind::Subscribe(s) => {
            let id = required_id(s.id, "subscribe")?;
            ClientFrame::Subscribe { id, channel: s.channel, since: s.since, presence: s.presence, max_rate: s.max_rate }
        }
        Kind::Unsubscribe(c) => {
            let id = required_id(c.id, "unsubscribe")?;
            ClientFrame::Unsubscribe { id, channel: c.channel }
        }
        Kind::Presence(c) => {
            let id = required_id(c.id, "presence")?;
            ClientFrame::Presence { id, channel: c.channel }
        }
        Kind::Pause(c) => {
            let id = required_id(c.id, "pause")?;
            ClientFrame::Pause { id, channel: c.channel }
        }
        Kind::Resume(c) => {
            let id = required_id(c.id, "resume")?;
            ClientFrame::Resume { id, channel: c.channel }
        }
        Kind::Publish(p) => {
            let id = required_id(p.id, "publish")?;
            let data = String::from_utf8(p.data.to_vec())
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
                .ok_or_else(|| bad(Some(id.clone()), "bad publish frame: data is not one JSON value"))?;
            ClientFrame::Publish { id, channel: p.channel, data, idempotency_key: p.idempotency_key }
        }
        Kind::Refresh(r) => {
            let id = required_id(r.id, "refresh")?;
            ClientFrame::Refresh { id, token: r.token }
        }
        Kind::Ping(p) => ClientFrame::Ping { id: request_id(p.id)? },
        Kind::Pong(_) => ClientFrame::Pong {},
        Kind::RegisterDevice(d) => {
            let id = required_id(d.id, "register_device")?;
            if d.app.is_empty() {
                return Err(bad(Some(id), "bad register_device frame: missing field `app`"));
            }
            ClientFrame::RegisterDevice { id, platform: d.platform, token: d.token, app: d.app }
        }
        Kind::UnregisterDevice(d) => {
            let id = required_id(d.id, "unregister_device")?;
            ClientFrame::UnregisterDevice { id, platform: d.platform, token: d.token }
        }
    })
}

/// A request id, checked as JSON's is (a string of at most 64 characters).
fn request_id(id: Option<pb::RequestId>) -> Result<Option<RequestId>, FrameError> {
    match id.and_then(|i| i.value) {
        None => Ok(None),
        Some(pb::request_id::Value::Num(n)) => Ok(Some(RequestId::Num(n))),
        Some(pb::request_id::Value::Text(s)) if s.len() > 64 => Err(bad(None, "id is longer than 64 characters")),
        Some(pb::request_id::Value::Text(s)) => Ok(Some(RequestId::Str(s))),
    }
}

fn required_id(id: Option<pb::RequestId>, ty: &str) -> Result<RequestId, FrameError> {
    request_id(id)?.ok_or_else(|| bad(None, format!("bad {ty} frame: missing field `id`")))
}

/// A client frame in the compact encoding, length-prefixed (a one-frame batch).
pub fn encode_client_frame(frame: &ClientFrame) -> Bytes {
    use pb::client_frame::Kind;
    let id = |i: &RequestId| Some(pb::RequestId::from(i));
    let channel = |i: &RequestId, c: &str| pb::ChannelRequest { id: id(i), channel: c.into() };
    let kind = match frame {
        ClientFrame::Auth { token } => Kind::Auth(pb::Auth { token: token.clone() }),
        ClientFrame::Subscribe { id: i, channel, since, presence, max_rate } => {
            Kind::Subscribe(pb::Subscribe { id: id(i), channel: channel.clone(), since: since.clone(), presence: *presence, max_rate: *max_rate })
        }
        ClientFrame::Unsubscribe { id: i, channel: c } => Kind::Unsubscribe(channel(i, c)),
        ClientFrame::Presence { id: i, channel: c } => Kind::Presence(channel(i, c)),
        ClientFrame::Pause { id: i, channel: c } => Kind::Pause(channel(i, c)),
        ClientFrame::Resume { id: i, channel: c } => Kind::Resume(channel(i, c)),
        ClientFrame::Publish { id: i, channel, data, idempotency_key } => Kind::Publish(pb::Publish {
            id: id(i),
            channel: channel.clone(),
            data: Bytes::copy_from_slice(data.get().as_bytes()),
            idempotency_key: idempotency_key.clone(),
        }),
        ClientFrame::Refresh { id: i, token } => Kind::Refresh(pb::Refresh { id: id(i), token: token.clone() }),
        ClientFrame::Ping { id: i } => Kind::Ping(pb::ClientPing { id: i.as_ref().map(pb::RequestId::from) }),
        ClientFrame::Pong {} => Kind::Pong(pb::ClientPong {}),
        ClientFrame::RegisterDevice { id: i, platform, token, app } => {
            Kind::RegisterDevice(pb::DeviceRequest { id: id(i), platform: platform.clone(), token: token.clone(), app: app.clone() })
        }
        ClientFrame::UnregisterDevice { id: i, platform, token } => {
            Kind::UnregisterDevice(pb::DeviceRequest { id: id(i), platform: platform.clone(), token: token.clone(), app: String::new() })
        }
    };
    super::delimited(&pb::ClientFrame { kind: Some(kind) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::decode_client_frame as decode_json;

    /// Every client frame type, as JSON v1 text.
    const FRAMES: &[&str] = &[
        r#"{"type":"auth","token":"eyJ.x.y"}"#,
        r#"{"type":"subscribe","id":1,"channel":"incidents","since":"c1.8f2a.local.41","presence":true,"max_rate":2.5}"#,
        r#"{"type":"subscribe","id":"s","channel":"incidents"}"#,
        r#"{"type":"unsubscribe","id":2,"channel":"incidents"}"#,
        r#"{"type":"publish","id":3,"channel":"chat:1","data":{"text":"hi","n":[1,2]},"idempotency_key":"m-77"}"#,
        r#"{"type":"publish","id":-4,"channel":"chat:1","data":"just a string"}"#,
        r#"{"type":"presence","id":4,"channel":"incidents"}"#,
        r#"{"type":"pause","id":7,"channel":"incidents"}"#,
        r#"{"type":"resume","id":8,"channel":"incidents"}"#,
        r#"{"type":"refresh","id":5,"token":"eyJ.a.b"}"#,
        r#"{"type":"ping","id":6}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"pong"}"#,
        r#"{"type":"register_device","id":9,"platform":"apns","token":"ab12","app":"com.example"}"#,
        r#"{"type":"unregister_device","id":"u","platform":"fcm","token":"t:1"}"#,
    ];

    #[test]
    fn every_client_frame_round_trips_through_the_compact_encoding() {
        for text in FRAMES {
            let frame = decode_json(text).unwrap();
            let bytes = encode_client_frame(&frame);
            let back: Vec<_> = decode_client_message(&bytes).collect();
            assert_eq!(back.len(), 1);
            let back = back.into_iter().next().unwrap().unwrap();
            // Same frame: the JSON of both is identical.
            assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&frame).unwrap(), "{text}");
        }
    }

    #[test]
    fn a_batch_of_client_frames_decodes_in_order() {
        let mut m = Vec::new();
        for text in FRAMES {
            m.extend_from_slice(&encode_client_frame(&decode_json(text).unwrap()));
        }
        let n = decode_client_message(&m).filter(Result::is_ok).count();
        assert_eq!(n, FRAMES.len());
    }

    #[test]
    fn malformed_compact_frames_get_precise_codes_and_keep_the_request_id() {
        let e = decode_client_frame(&[0xff, 0xff]).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        // No type (an empty frame) or a type this server does not know (an unknown field).
        assert_eq!(decode_client_frame(&[]).unwrap_err().code, ErrorCode::UnknownType);
        assert_eq!(decode_client_frame(&[0xf8, 0x01, 0x01]).unwrap_err().code, ErrorCode::UnknownType);
        let sub = |id| pb::ClientFrame { kind: Some(pb::client_frame::Kind::Subscribe(pb::Subscribe { id, channel: "c".into(), ..Default::default() })) };
        assert_eq!(decode_client_frame(&sub(None).encode_to_vec()).unwrap_err().code, ErrorCode::BadRequest);
        let long = Some(pb::RequestId { value: Some(pb::request_id::Value::Text("x".repeat(65))) });
        assert_eq!(decode_client_frame(&sub(long).encode_to_vec()).unwrap_err().code, ErrorCode::BadRequest);
        let publish = pb::ClientFrame {
            kind: Some(pb::client_frame::Kind::Publish(pb::Publish {
                id: Some(pb::RequestId { value: Some(pb::request_id::Value::Num(9)) }),
                channel: "c".into(),
                data: Bytes::from_static(b"{not json"),
                idempotency_key: None,
            })),
        };
        let e = decode_client_frame(&publish.encode_to_vec()).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, Some(RequestId::Num(9))));
    }
}
