//! A channel's history, read from the bus: its last N records, the N before a cursor, or the N
//! after a cursor or a time, in pages that neither skip nor repeat a record although the
//! partition interleaves the channel with every other channel of its account (and of other
//! accounts hashed to it).
//!
//! A page's records come oldest first. Paging forward passes the page's `cursor` as the next
//! `since`; paging backward passes its `before`. Cursors are positions in this region's log (the
//! ones `message` frames and this API return); a second copy of a record (a replicator or source
//! restart) is returned once.

use std::collections::HashSet;
use std::sync::Arc;

use herald_core::{BusError, ChannelKey, Cursor, MessageId, Record};

use crate::Engine;

/// Most records one page returns.
pub const MAX_LIMIT: usize = 1000;
/// Most records of the partition one request reads looking for the channel's.
pub const MAX_SCAN: u64 = 100_000;
/// Records read from the bus per step.
const STEP: u64 = 1000;

/// Where a page starts.
#[derive(Clone, Debug)]
pub enum From {
    /// The channel's newest records.
    Latest,
    /// The records just before this position (a page's `before`).
    Before(Cursor),
    /// The records after this position (a `message`'s cursor, a page's `cursor`).
    Since(Cursor),
    /// The records published at or after this time (milliseconds since the epoch). Publish times
    /// of different publishers interleave slightly, so the page starts after the newest record
    /// found, scanning back, that is older than the time.
    SinceTime(u64),
}

/// One page of a channel's history.
#[derive(Clone, Debug)]
pub struct Page {
    /// The records, oldest first, at most the limit asked for.
    pub records: Vec<Arc<Record>>,
    /// Continues after the page: the next forward page's `since`. After the channel's newest
    /// record it is the partition's end at the time of the read, so a subscription from it
    /// misses nothing published since.
    pub cursor: String,
    /// The previous page's `before`, when older records of the channel may exist.
    pub before: Option<String>,
    /// Whether more records follow `cursor` (forward pages) or precede `before` (backward).
    pub more: bool,
    /// False when part of the asked range is no longer retained (a `since` older than the
    /// partition's oldest record) or lies beyond the scan limit: records may be missing.
    pub complete: bool,
}

/// Why a page cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The cursor is from another region or another generation of this region's log.
    #[error("the cursor is not a position in this region's log (another region or a reset log)")]
    ForeignCursor,
    /// The bus cannot be read now.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Reads one page of `channel`'s history: at most `limit` records (1 to [`MAX_LIMIT`]).
pub async fn read(engine: &Engine, channel: &ChannelKey, from: From, limit: usize) -> Result<Page, HistoryError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let hub = &engine.hub;
    let local = |c: &Cursor| if c.issuer == *hub.region() && c.epoch == *hub.epoch() { Ok(c.next) } else { Err(HistoryError::ForeignCursor) };
    let partition = engine.bus.partition_of(&channel.account);
    let bounds = engine.bus.bounds(partition).await?;
    match from {
        From::Latest => backward(engine, channel, partition, bounds.low, bounds.next, limit, true).await,
        From::Before(c) => {
            let end = local(&c)?.min(bounds.next);
            backward(engine, channel, partition, bounds.low, end, limit, false).await
        }
        From::Since(c) => {
            let start = local(&c)?;
            forward(engine, channel, partition, start.max(bounds.low), bounds.next, limit, start >= bounds.low).await
        }
        From::SinceTime(ms) => {
            let (start, complete) = first_at_or_after(engine, partition, bounds.low, bounds.next, ms).await?;
            forward(engine, channel, partition, start, bounds.next, limit, complete).await
        }
    }
}

/// Whether `r` is one of `channel`'s records not returned yet (second copies keep their id).
fn wanted(r: &Record, channel: &ChannelKey, seen: &mut HashSet<MessageId>) -> bool {
    r.channel == channel.channel && r.account == channel.account && seen.insert(r.id.clone())
}

/// The channel's last `limit` records below `end`, scanning back at most [`MAX_SCAN`] records.
async fn backward(engine: &Engine, channel: &ChannelKey, partition: u32, low: u64, end: u64, limit: usize, at_end: bool) -> Result<Page, HistoryError> {
    let floor = end.saturating_sub(MAX_SCAN).max(low);
    let mut found: Vec<Arc<Record>> = Vec::new(); // newest first
    let mut seen = HashSet::new();
    let mut upto = end;
    while upto > floor && found.len() <= limit {
        let from = upto.saturating_sub(STEP).max(floor);
        let mut reader = engine.open_reader(partition, from).await?;
        let mut window = Vec::new();
        while let Some(batch) = reader.next_batch_before(upto, STEP as usize).await? {
            window.extend(batch);
        }
        // Newest first within the window, so that the first copy kept is the newest's twin.
        for r in window.into_iter().rev() {
            if wanted(&r, channel, &mut seen) {
                found.push(r);
            }
        }
        upto = from;
    }
    // Older records may exist: more than asked were found, or the scan stopped above the start.
    let more = found.len() > limit || upto > low;
    // Stopped by the scan limit rather than by enough records or the partition's start.
    let complete = found.len() > limit || floor == low;
    found.truncate(limit);
    found.reverse();
    let hub = &engine.hub;
    let cursor = if at_end { hub.cursor_at(end) } else { found.last().map_or_else(|| hub.cursor_at(end), |r| hub.cursor_at(r.offset + 1)) };
    let before = more.then(|| found.first().map_or_else(|| hub.cursor_at(upto), |r| hub.cursor_at(r.offset)));
    Ok(Page { records: found, cursor, before, more, complete })
}

/// The channel's first `limit` records from `start` up to `end`.
async fn forward(engine: &Engine, channel: &ChannelKey, partition: u32, start: u64, end: u64, limit: usize, complete: bool) -> Result<Page, HistoryError> {
    let hub = &engine.hub;
    let mut found: Vec<Arc<Record>> = Vec::new();
    let mut seen = HashSet::new();
    let mut more = false;
    let limit_at = start.saturating_add(MAX_SCAN).min(end);
    if start < limit_at {
        let mut reader = engine.open_reader(partition, start).await?;
        'read: while let Some(batch) = reader.next_batch_before(limit_at, STEP as usize).await? {
            for r in batch {
                if wanted(&r, channel, &mut seen) {
                    if found.len() == limit {
                        more = true;
                        break 'read;
                    }
                    found.push(r);
                }
            }
        }
    }
    // Stopped by the scan limit before the end: the rest is for the next page.
    let cut = !more && limit_at < end;
    let cursor = if more || cut { found.last().map_or_else(|| hub.cursor_at(limit_at), |r| hub.cursor_at(r.offset + 1)) } else { hub.cursor_at(end) };
    let before = found.first().map(|r| hub.cursor_at(r.offset));
    Ok(Page { records: found, cursor, before, more: more || cut, complete })
}

/// The offset of the first record published at or after `ms`: scanning back from `end`, the one
/// after the newest record older than `ms`. `false` when the scan limit or the partition's start
/// was reached first (records older than retention may be gone).
async fn first_at_or_after(engine: &Engine, partition: u32, low: u64, end: u64, ms: u64) -> Result<(u64, bool), HistoryError> {
    let floor = end.saturating_sub(MAX_SCAN).max(low);
    let mut upto = end;
    while upto > floor {
        let from = upto.saturating_sub(STEP).max(floor);
        let mut reader = engine.open_reader(partition, from).await?;
        let mut window = Vec::new();
        while let Some(batch) = reader.next_batch_before(upto, STEP as usize).await? {
            window.extend(batch);
        }
        if let Some(r) = window.iter().rev().find(|r| r.published_at_ms < ms) {
            return Ok((r.offset + 1, true));
        }
        upto = from;
    }
    Ok((floor, floor == low && low == 0))
}
