//! The protocol state of one WebSocket connection: its grant, its subscriptions, and the
//! handling of every client frame. Transport details (framing, heartbeats, writing) live in
//! `ws`; what every transport's session shares (welcome, presence, drain) in `lifecycle`; this
//! module only reads frames and queues replies.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

use herald_core::{ChannelKey, ChannelName, Cursor, PresenceMember};
use herald_protocol::{ClientFrame, ErrorCode, FrameError, RequestId, ServerFrame, decode_client_frame, split_batch};

use crate::auth::Grant;
use crate::caller::Caller;
use crate::lifecycle;
use herald_engine::hub::Subscription;
use crate::limits::TokenBucket;
use herald_engine::outbox::{OutItem, Outbox};
use crate::state::{Edge, PublishError, PublishItem};
use herald_engine::subscribe::{self, Delivery};

/// The range of a subscription's `max_rate`, deliveries per second.
const MIN_RATE: f64 = 0.01;
const MAX_RATE: f64 = 1000.0;

/// A fatal protocol error: the connection must close with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fatal(pub ErrorCode);

/// The protocol state of one connection.
pub struct Session {
    edge: Arc<Edge>,
    /// This connection's id.
    pub connection_id: String,
    /// What the token allows.
    pub grant: Grant,
    outbox: Arc<Outbox>,
    subs: HashMap<ChannelName, Arc<Subscription>>,
    /// Paused subscriptions: where each stopped, and what delivery it asked for.
    paused: HashMap<ChannelName, (String, Delivery)>,
    publish_bucket: TokenBucket,
}

impl Session {
    /// A session for an authenticated connection.
    pub fn new(edge: Arc<Edge>, connection_id: String, grant: Grant, outbox: Arc<Outbox>) -> Self {
        let publish_bucket = edge.limits.connection_bucket();
        Self { edge, connection_id, grant, outbox, subs: HashMap::new(), paused: HashMap::new(), publish_bucket }
    }

    /// Queues a control frame.
    pub fn send(&self, frame: ServerFrame<'_>) {
        self.outbox.push(OutItem::Frame(frame.encode()));
    }

    /// Queues an error reply.
    pub fn send_error(&self, id: Option<&RequestId>, code: ErrorCode, message: &str) {
        self.edge.metrics.protocol_error(code);
        self.send(ServerFrame::Error { id, code, message });
    }

    /// A refused publish as an error frame answering request `id`.
    fn publish_refused(&self, id: &RequestId, e: PublishError) {
        self.send_error(Some(id), e.code(), &e.to_string());
    }

    /// Queues a fatal error and marks the connection closing.
    pub fn fail(&self, code: ErrorCode, message: &str) -> Fatal {
        lifecycle::fail(&self.edge, &self.outbox, code, message);
        Fatal(code)
    }

    /// Handles one text message (one or more newline-separated frames).
    pub async fn handle_text(&mut self, text: &str) -> Result<(), Fatal> {
        self.handle_decoded(split_batch(text).map(decode_client_frame)).await
    }

    /// Handles the frames of one message, decoded; errors are answered. Consecutive accepted
    /// `publish` frames are appended to the bus together (one append, one wake-up of the
    /// channel's readers, as a batch over HTTP); every frame is still answered, in order.
    pub async fn handle_decoded(&mut self, frames: impl Iterator<Item = Result<ClientFrame, FrameError>>) -> Result<(), Fatal> {
        let mut publishes = Vec::new();
        for f in frames {
            match f {
                Ok(ClientFrame::Publish { id, channel, data, idempotency_key }) => {
                    self.queue_publish(&mut publishes, id, &channel, data.get().as_bytes(), idempotency_key).await;
                    if publishes.len() >= crate::publish::MAX_BATCH {
                        self.flush_publishes(&mut publishes).await;
                    }
                }
                Ok(frame) => {
                    self.flush_publishes(&mut publishes).await;
                    self.handle(frame).await?;
                }
                Err(e) => {
                    self.flush_publishes(&mut publishes).await;
                    self.send_error(e.id.as_ref(), e.code, &e.message);
                }
            }
        }
        self.flush_publishes(&mut publishes).await;
        Ok(())
    }

    /// Checks one `publish` (rights, rate limits, the proxy, size) and queues it; a refused one
    /// is answered at once, after the publishes queued before it.
    async fn queue_publish(&mut self, queued: &mut Vec<(RequestId, PublishItem)>, id: RequestId, channel: &str, data: &[u8], idempotency_key: Option<String>) {
        let refuse = |e: PublishError, ch: &ChannelName| self.edge.publish_refused(e, &self.grant.account, Some(ch));
        let ch = match ChannelName::new(channel) {
            Ok(c) => c,
            Err(e) => {
                self.flush_publishes(queued).await;
                self.send_error(Some(&id), ErrorCode::InvalidChannel, &e.to_string());
                return;
            }
        };
        let refused: Option<(ErrorCode, String)> = if !self.grant.may_publish(&ch) {
            Some((ErrorCode::Forbidden, "token may not publish on this channel".into()))
        } else if !self.publish_bucket.take(1) {
            let e = refuse(PublishError::RateLimited(self.edge.limits.connection_publish_refused()), &ch);
            Some((e.code(), e.to_string()))
        } else if let Err(e) = self.edge.take_account_publish(&self.grant.account, 1) {
            Some((e.code(), e.to_string()))
        } else {
            None
        };
        if let Some((code, message)) = refused {
            self.flush_publishes(queued).await;
            self.send_error(Some(&id), code, &message);
            return;
        }
        let mut data = Bytes::copy_from_slice(data);
        if let Some(p) = &self.edge.proxies {
            match p.publish(&self.grant, Some(&self.connection_id), &ch, &data).await {
                Ok(Some(rewritten)) => data = rewritten,
                Ok(None) => {}
                Err((code, message)) => {
                    self.edge.publish_refused_by_proxy(&self.grant.account, &ch, code);
                    self.flush_publishes(queued).await;
                    self.send_error(Some(&id), code, &message);
                    return;
                }
            }
        }
        // What the bus append would refuse for the whole batch is refused here, for this one.
        let bad = if data.len() > self.edge.limits.max_message_bytes(&self.grant.account, self.edge.config.max_message_bytes) {
            Some(PublishError::TooLarge)
        } else if idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 128) {
            Some(PublishError::BadIdempotencyKey)
        } else {
            None
        };
        if let Some(e) = bad {
            let e = refuse(e, &ch);
            self.flush_publishes(queued).await;
            self.publish_refused(&id, e);
            return;
        }
        queued.push((id, PublishItem { account: self.grant.account.clone(), channel: ch, data, idempotency_key }));
    }

    /// Appends the queued publishes as one batch and answers each, in order.
    async fn flush_publishes(&mut self, queued: &mut Vec<(RequestId, PublishItem)>) {
        if queued.is_empty() {
            return;
        }
        let (ids, items): (Vec<RequestId>, Vec<PublishItem>) = std::mem::take(queued).into_iter().unzip();
        let channels: Vec<ChannelName> = items.iter().map(|i| i.channel.clone()).collect();
        match self.edge.publish(items).await {
            Ok(appended) => {
                for ((id, ch), a) in ids.iter().zip(&channels).zip(&appended) {
                    let cursor = self.edge.engine.hub.cursor_at(a.offset + 1);
                    self.send(ServerFrame::Published { id, channel: ch.as_str(), cursor: &cursor, message_id: a.id.as_str(), duplicate: a.duplicate });
                }
            }
            Err(e) => {
                // A batch fails as a whole (the bus did not take it): each publish is told.
                for id in &ids {
                    self.send_error(Some(id), e.code(), &e.to_string());
                }
            }
        }
    }

    fn channel(&self, id: &RequestId, name: &str) -> Option<ChannelName> {
        match ChannelName::new(name) {
            Ok(c) => Some(c),
            Err(e) => {
                self.send_error(Some(id), ErrorCode::InvalidChannel, &e.to_string());
                None
            }
        }
    }

    async fn handle(&mut self, frame: ClientFrame) -> Result<(), Fatal> {
        match frame {
            ClientFrame::Auth { .. } => {
                self.send_error(None, ErrorCode::BadRequest, "already authenticated");
            }
            ClientFrame::Subscribe { id, channel, since, presence, max_rate } => {
                let every = match max_rate {
                    None => None,
                    Some(r) if r.is_finite() && (MIN_RATE..=MAX_RATE).contains(&r) => Some(std::time::Duration::from_secs_f64(1.0 / r)),
                    Some(_) => {
                        self.send_error(Some(&id), ErrorCode::BadRequest, "max_rate must be 0.01 to 1000 deliveries per second");
                        return Ok(());
                    }
                };
                self.subscribe(id, channel, since, Delivery { presence_events: presence, every }).await
            }
            ClientFrame::Pause { id, channel } => {
                let Some(ch) = self.channel(&id, &channel) else { return Ok(()) };
                match self.subs.remove(&ch) {
                    Some(sub) => {
                        // Presence is who is looking: a paused screen is not (so push reaches
                        // this user's phone, and "who is viewing" leaves it out). `resume` joins
                        // again.
                        let cursor = subscribe::close_at(&self.edge.engine, &sub);
                        self.send(ServerFrame::Paused { id: &id, channel: ch.as_str(), cursor: &cursor });
                        self.paused.insert(ch.clone(), (cursor, sub.delivery()));
                        self.leave_presence(&ch).await;
                    }
                    None => self.send_error(Some(&id), ErrorCode::NotSubscribed, "not subscribed to this channel (or already paused)"),
                }
            }
            ClientFrame::Resume { id, channel } => {
                let Some(ch) = self.channel(&id, &channel) else { return Ok(()) };
                match self.paused.remove(&ch) {
                    Some((cursor, delivery)) => self.subscribe(id, channel, Some(cursor), delivery).await,
                    None => self.send_error(Some(&id), ErrorCode::NotSubscribed, "this channel is not paused"),
                }
            }
            ClientFrame::Unsubscribe { id, channel } => {
                let Some(ch) = self.channel(&id, &channel) else { return Ok(()) };
                if self.paused.remove(&ch).is_some() {
                    // Its presence ended with the pause.
                    self.send(ServerFrame::Unsubscribed { id: Some(&id), channel: ch.as_str(), code: None });
                } else if self.subs.contains_key(&ch) {
                    self.drop_subscription(&ch).await;
                    self.send(ServerFrame::Unsubscribed { id: Some(&id), channel: ch.as_str(), code: None });
                } else {
                    self.send_error(Some(&id), ErrorCode::NotSubscribed, "not subscribed to this channel");
                }
            }
            ClientFrame::Publish { id, channel, data, idempotency_key } => {
                let mut one = Vec::with_capacity(1);
                self.queue_publish(&mut one, id, &channel, data.get().as_bytes(), idempotency_key).await;
                self.flush_publishes(&mut one).await;
            }
            ClientFrame::Presence { id, channel } => {
                let Some(ch) = self.channel(&id, &channel) else { return Ok(()) };
                if !self.grant.may_see_presence(&ch) {
                    return {
                        self.send_error(Some(&id), ErrorCode::Forbidden, "token may not see this channel's presence");
                        Ok(())
                    };
                }
                let key = ChannelKey::new(self.grant.account.clone(), ch.clone());
                match self.edge.presence.snapshot(&key, 1000).await {
                    Ok(s) => self.send(ServerFrame::Presence { id: &id, channel: ch.as_str(), occupancy: s.occupancy, members: &s.members }),
                    Err(e) => {
                        self.edge.metrics.presence_errors.increment(1);
                        self.send_error(Some(&id), ErrorCode::Unavailable, &e.to_string())
                    }
                }
            }
            ClientFrame::Refresh { id, token } => self.refresh(id, &token).await?,
            ClientFrame::Ping { id } => self.send(ServerFrame::Pong { id: id.as_ref() }),
            ClientFrame::Pong {} => {}
            ClientFrame::RegisterDevice { id, platform, token, app } => {
                match crate::devices::register(&self.edge, &self.grant, &platform, token, Some(app)).await {
                    Ok(_) => self.send(ServerFrame::Device { id: &id, registered: true }),
                    Err((code, message)) => self.send_error(Some(&id), code, &message),
                }
            }
            ClientFrame::UnregisterDevice { id, platform, token } => {
                match crate::devices::unregister(&self.edge, &Caller::Client(self.grant.clone()), &platform, &token).await {
                    Ok(_) => self.send(ServerFrame::Device { id: &id, registered: false }),
                    Err((code, message)) => self.send_error(Some(&id), code, &message),
                }
            }
        }
        Ok(())
    }

    async fn subscribe(&mut self, id: RequestId, channel: String, since: Option<String>, delivery: Delivery) {
        let presence = delivery.presence_events;
        let Some(ch) = self.channel(&id, &channel) else { return };
        if !self.grant.may_subscribe(&ch) {
            return self.send_error(Some(&id), ErrorCode::Forbidden, "token may not subscribe to this channel");
        }
        if self.subs.contains_key(&ch) || self.paused.contains_key(&ch) {
            return self.send_error(Some(&id), ErrorCode::AlreadySubscribed, "already subscribed to this channel (resume it if paused)");
        }
        if presence && !self.grant.may_see_presence(&ch) {
            return self.send_error(Some(&id), ErrorCode::Forbidden, "token may not see this channel's presence");
        }
        if self.subs.len() + self.paused.len() >= self.edge.limits.max_subscriptions(&self.grant.account, self.edge.config.max_subscriptions) {
            return self.send_error(Some(&id), ErrorCode::TooManySubscriptions, "too many subscriptions on this connection");
        }
        let since = match since.as_deref().map(Cursor::parse).transpose() {
            Ok(c) => c,
            Err(e) => return self.send_error(Some(&id), ErrorCode::InvalidCursor, &e.to_string()),
        };
        if let Some(p) = &self.edge.proxies
            && let Err((code, message)) = p.subscribe(&self.grant, Some(&self.connection_id), &ch).await {
                return self.send_error(Some(&id), code, &message);
            }
        let key = ChannelKey::new(self.grant.account.clone(), ch.clone());
        let opened = match subscribe::open(&self.edge.engine, self.outbox.clone(), vec![key.clone()], since.as_ref(), delivery).await {
            Ok(o) => o,
            Err(code) => return self.send_error(Some(&id), code, "the bus is unavailable; retry"),
        };
        self.send(ServerFrame::Subscribed { id: Some(&id), channel: ch.as_str(), cursor: &opened.cursor, recovered: opened.recovered });
        let (sub, _) = subscribe::replay(&self.edge.engine, opened, None).await;
        self.subs.insert(ch, sub);
        let member = PresenceMember { connection_id: self.connection_id.clone(), user: self.grant.user.clone(), info: self.grant.info.clone() };
        lifecycle::join(&self.edge, &key, member).await;
    }

    async fn refresh(&mut self, id: RequestId, token: &str) -> Result<(), Fatal> {
        let grant = match self.edge.verify_for_session(token) {
            Ok(g) => g,
            Err(e) => {
                self.send_error(Some(&id), e.code, &e.message);
                return Ok(());
            }
        };
        if grant.account != self.grant.account {
            self.send_error(Some(&id), ErrorCode::Forbidden, "a refreshed token must belong to the same account");
            return Ok(());
        }
        let mut grant = grant;
        if let Some(p) = &self.edge.proxies {
            // The authorization proxy is asked about the new token as about a new connection
            // (usually a cached decision): a refresh never widens the rights it narrowed.
            if let Err((code, message)) = Box::pin(p.connect(&mut grant, Some(&self.connection_id), "websocket", None)).await {
                self.send_error(Some(&id), code, &message);
                return Ok(());
            }
        }
        // The info came with the connection's connect answer, not with its token.
        if grant.info.is_none() {
            grant.info = self.grant.info.take();
        }
        self.grant = grant;
        lifecycle::refreshed(&self.edge, &self.connection_id, &self.grant);
        // Subscriptions the new token no longer allows end now.
        let revoked: Vec<ChannelName> = self.subs.keys().chain(self.paused.keys()).filter(|c| !self.grant.may_subscribe(c)).cloned().collect();
        for ch in revoked {
            self.drop_subscription(&ch).await;
            self.send(ServerFrame::Unsubscribed { id: None, channel: ch.as_str(), code: Some(ErrorCode::Forbidden) });
        }
        self.send(ServerFrame::Refreshed { id: &id, expires_at: self.grant.expires_at });
        Ok(())
    }

    /// The queue overflowed and dropped the queued records of these low-priority channels: their
    /// subscriptions end with `lagged`, and the client resubscribes from its cursor.
    pub async fn shed(&mut self, channels: Vec<ChannelName>) {
        for ch in channels {
            if self.subs.contains_key(&ch) {
                self.drop_subscription(&ch).await;
                self.edge.metrics.shed_subscriptions.increment(1);
                self.send(ServerFrame::Unsubscribed { id: None, channel: ch.as_str(), code: Some(ErrorCode::Lagged) });
            }
            self.outbox.unshed(&ch);
        }
    }

    async fn drop_subscription(&mut self, ch: &ChannelName) {
        if let Some(sub) = self.subs.remove(ch) {
            subscribe::close(&self.edge.engine, &sub);
            self.leave_presence(ch).await;
        } else {
            // A paused subscription left presence when it paused.
            self.paused.remove(ch);
        }
    }

    async fn leave_presence(&self, ch: &ChannelName) {
        let key = ChannelKey::new(self.grant.account.clone(), ch.clone());
        lifecycle::leave(&self.edge, &key, &self.connection_id).await;
    }

    /// Ends every subscription (the connection is gone), then the connection's presence record.
    pub async fn end(mut self) {
        let chans: Vec<ChannelName> = self.subs.keys().chain(self.paused.keys()).cloned().collect();
        for ch in chans {
            self.drop_subscription(&ch).await;
        }
        lifecycle::closed(&self.edge, &self.connection_id, self.outbox.close_reason()).await;
    }
}
