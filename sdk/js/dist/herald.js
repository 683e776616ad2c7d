// @herald/client: built from sdk/js/src by npm run build (esbuild); do not edit.

// src/cursors.ts
var CursorStore = class {
  constructor() {
    this.byChannel = /* @__PURE__ */ new Map();
  }
  /** The cursor to resume `channel` from, if any. */
  get(channel) {
    return this.byChannel.get(channel);
  }
  /**
   * A `subscribed` reply. A fresh subscription starts at the reply's cursor. A resume keeps the
   * stored cursor: the records after it are still on their way, and a cut before they are
   * processed must resume from it again. `historyLost` (a resume answered `recovered:false`: that
   * history is gone) takes the reply's cursor, so the next resume does not ask for it again.
   */
  subscribed(channel, cursor, historyLost = false) {
    if (cursor !== void 0 && (historyLost || !this.byChannel.has(channel))) this.byChannel.set(channel, cursor);
  }
  /** A record of `channel` was processed (or, on SSE and long-poll, the shared stream moved past `cursor`). */
  processed(channel, cursor) {
    this.byChannel.set(channel, cursor);
  }
  /** Forgets a channel (unsubscribed). */
  forget(channel) {
    this.byChannel.delete(channel);
  }
  /**
   * The distinct cursors of `channels`, for a stream that carries them all (SSE, long-poll): the
   * server starts at the oldest, so no channel misses a record.
   */
  list(channels) {
    const out = [];
    for (const c of channels) {
      const v = this.byChannel.get(c);
      if (v !== void 0 && !out.includes(v)) out.push(v);
    }
    return out;
  }
};

// src/dedupe.ts
var Dedupe = class {
  constructor(window = 1e3) {
    this.window = window;
    /** Insertion-ordered, so the first entry is the oldest. */
    this.seen = /* @__PURE__ */ new Set();
  }
  /** True the first time `id` is offered (and remembers it); false for a repeat. */
  first(id) {
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    if (this.seen.size > this.window) {
      const oldest = this.seen.values().next();
      if (!oldest.done) this.seen.delete(oldest.value);
    }
    return true;
  }
  /** Ids remembered. */
  get size() {
    return this.seen.size;
  }
};

// src/events.ts
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  /** Adds a listener; returns a function that removes it. */
  on(event, listener) {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, set = /* @__PURE__ */ new Set());
    const l = listener;
    set.add(l);
    return () => {
      set.delete(l);
    };
  }
  /** Calls every listener of `event` with `value`. */
  emit(event, value) {
    for (const l of this.listeners.get(event) ?? []) guarded(l, value);
  }
};
function guarded(f, value) {
  try {
    f(value);
  } catch (e) {
    setTimeout(() => {
      throw e;
    });
  }
}

// src/frames.ts
function parseFrames(text) {
  const frames = [];
  const errors = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let value;
    try {
      value = JSON.parse(line);
    } catch {
      errors.push(`not JSON: ${line.slice(0, 80)}`);
      continue;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value) || typeof value.type !== "string") {
      errors.push(`not a frame: ${line.slice(0, 80)}`);
      continue;
    }
    frames.push(value);
  }
  return { frames, errors };
}
function encodeFrame(frame) {
  return JSON.stringify(frame) + "\n";
}
var CHANNEL = /^[A-Za-z0-9_\-:.@=,]{1,128}$/;
function validChannel(name) {
  return CHANNEL.test(name);
}

// src/requests.ts
var HeraldError = class extends Error {
  constructor(code, message2, channel) {
    super(`${code}: ${message2}`);
    this.code = code;
    this.channel = channel;
    this.name = "HeraldError";
  }
};
var Requests = class {
  constructor(timeoutMs) {
    this.timeoutMs = timeoutMs;
    this.nextId = 1;
    this.pending = /* @__PURE__ */ new Map();
  }
  /** A fresh request id. */
  id() {
    return this.nextId++;
  }
  /** Waits for the reply to request `id` (`what` names it in a timeout's message). */
  wait(id, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HeraldError("timeout", `no reply to ${what} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { what, resolve, reject, timer });
    });
  }
  /** Settles the request a reply (or `error` frame) answers; false when it answers none. */
  settle(frame) {
    if (typeof frame.id !== "number") return false;
    const p = this.pending.get(frame.id);
    if (!p) return false;
    this.pending.delete(frame.id);
    clearTimeout(p.timer);
    if (frame.type === "error") p.reject(new HeraldError(frame.code ?? "internal", frame.message ?? `${p.what} failed`, frame.channel));
    else p.resolve(frame);
    return true;
  }
  /** The connection ended: every waiting request fails. */
  abandon() {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new HeraldError("disconnected", `the connection ended before the reply to ${p.what}`));
    }
    this.pending.clear();
  }
};

// src/channels.ts
var ChannelTable = class {
  constructor(carrier, events, dedupeWindow = 1e3) {
    this.carrier = carrier;
    this.events = events;
    this.dedupeWindow = dedupeWindow;
    this.cursors = new CursorStore();
    this.channels = /* @__PURE__ */ new Map();
  }
  /** Adds `channel`; see `HeraldClient.subscribe`. */
  subscribe(channel, handler, opts = {}) {
    if (!validChannel(channel)) throw new HeraldError("invalid_channel", `"${channel}" is not a channel name (1 to 128 of A-Z a-z 0-9 _ - : . @ = ,)`, channel);
    if (this.channels.has(channel)) throw new HeraldError("already_subscribed", `already subscribed to ${channel}`, channel);
    const mode = this.carrier.mode;
    if (mode === "closed" || mode === "failed") throw new HeraldError("disconnected", `the client is ${mode}`, channel);
    const ch = {
      name: channel,
      handler,
      opts,
      dedupe: new Dedupe(this.dedupeWindow),
      paused: false,
      wire: "none",
      since: false,
      replaying: false,
      stale: false
    };
    if (opts.since !== void 0) this.cursors.processed(channel, opts.since);
    this.channels.set(channel, ch);
    this.channelChanged(ch);
    const cursors = this.cursors;
    return {
      channel,
      get cursor() {
        return cursors.get(channel);
      },
      pause: () => this.setPaused(ch, true),
      resume: () => this.setPaused(ch, false),
      unsubscribe: () => this.unsubscribe(ch)
    };
  }
  /** Some channel's (re)subscribe after a reconnect still waits for its reply. */
  get replaying() {
    return [...this.channels.values()].some((c) => c.replaying);
  }
  /** What a stream (SSE, long-poll) carries: every channel not paused by the app, and their cursors. */
  streamRequest() {
    const channels = this.streamChannels();
    return { channels, cursors: this.cursors.list(channels) };
  }
  /**
   * A connection was welcomed (`replaying`: after an earlier one). On a WebSocket every channel
   * not paused is subscribed, from its cursor; a stream subscribed them all by opening.
   */
  welcomed(onWebSocket, replaying) {
    if (onWebSocket) {
      for (const ch of this.channels.values()) if (!ch.paused) this.sendSubscribe(ch, replaying);
      return;
    }
    for (const ch of this.channels.values()) {
      if (ch.paused) continue;
      ch.wire = "subscribing";
      ch.since = this.cursors.get(ch.name) !== void 0;
      ch.replaying = replaying && ch.since;
    }
  }
  /** The connection ended: no channel is on the wire any more (each keeps its cursor). */
  disconnected() {
    for (const ch of this.channels.values()) {
      ch.wire = "none";
      ch.replaying = ch.stale = false;
    }
  }
  /**
   * A frame from the server. True when it was the channel table's alone; false for other frames
   * and for `subscribed`, which also answers a request.
   */
  onFrame(f) {
    switch (f.type) {
      case "subscribed":
        this.onSubscribed(f);
        return false;
      case "message":
        this.onMessage(f);
        return true;
      case "position":
        if (f.cursor !== void 0) for (const c of this.streamChannels()) this.cursors.processed(c, f.cursor);
        return true;
      case "paused": {
        const ch = this.channelOf(f);
        if (ch?.wire !== "pausing") return true;
        ch.wire = "paused";
        this.cursors.subscribed(ch.name, f.cursor);
        return true;
      }
      case "unsubscribed":
        if (f.id === void 0) this.onEnded(f);
        return true;
      case "join":
      case "leave": {
        const ch = this.channelOf(f);
        if (ch?.opts.onPresence && f.member) guarded(ch.opts.onPresence, { type: f.type, channel: ch.name, member: f.member });
        return true;
      }
      default:
        return false;
    }
  }
  // ---- the app's changes --------------------------------------------------------------------
  setPaused(ch, paused) {
    if (this.channels.get(ch.name) !== ch || ch.paused === paused) return;
    ch.paused = paused;
    this.channelChanged(ch);
  }
  unsubscribe(ch) {
    if (this.channels.get(ch.name) !== ch) return;
    this.channels.delete(ch.name);
    this.cursors.forget(ch.name);
    this.channelChanged(ch);
    this.carrier.settle("connected");
  }
  /**
   * A channel was added, removed, paused or resumed. On the WebSocket, its frames say so; SSE and
   * long-poll carry a fixed channel set, so the stream reopens with the cursors. With nothing open
   * yet, the next connection takes the change into account by itself.
   */
  channelChanged(ch) {
    if (this.carrier.onWebSocket) {
      if (this.carrier.welcomed) this.syncWire(ch);
    } else {
      this.carrier.reopenStream("the channels changed");
    }
  }
  /** Brings the server's view of `ch` on the WebSocket in line with the app's. */
  syncWire(ch) {
    const wanted = this.channels.get(ch.name) === ch;
    if (!wanted) {
      if (ch.wire !== "none") this.carrier.send({ type: "unsubscribe", id: this.carrier.nextId(), channel: ch.name });
      ch.wire = "none";
    } else if (ch.paused) {
      if (ch.wire === "subscribing" || ch.wire === "live") {
        this.carrier.send({ type: "pause", id: this.carrier.nextId(), channel: ch.name });
        ch.wire = "pausing";
      }
    } else if (ch.wire === "pausing" || ch.wire === "paused") {
      ch.wire = "subscribing";
      ch.since = true;
      this.track(ch, this.carrier.request({ type: "resume", channel: ch.name }, `resume of ${ch.name}`));
    } else if (ch.wire === "none") {
      this.sendSubscribe(ch, false);
    }
  }
  sendSubscribe(ch, replaying) {
    const since = this.cursors.get(ch.name);
    const frame = { type: "subscribe", channel: ch.name };
    if (since !== void 0) frame.since = since;
    if (ch.opts.presence) frame.presence = true;
    if (ch.opts.maxRate !== void 0) frame.max_rate = ch.opts.maxRate;
    ch.wire = "subscribing";
    ch.since = since !== void 0;
    ch.replaying = replaying && ch.since;
    ch.stale = true;
    this.track(ch, this.carrier.request(frame, `subscribe to ${ch.name}`));
  }
  /** A (re)subscribe the server refused ends the channel; one cut short by a reconnect is redone by it. */
  track(ch, reply) {
    reply.catch((e) => {
      if (e.code === "disconnected") return;
      this.events.emit("error", new HeraldError(e.code, e.message, ch.name));
      if (e.code === "timeout" || this.channels.get(ch.name) !== ch) return;
      this.channels.delete(ch.name);
      this.cursors.forget(ch.name);
      ch.wire = "none";
      ch.replaying = false;
      if (ch.opts.onEnd) guarded(ch.opts.onEnd, e.code);
      this.carrier.settle("connected");
    });
  }
  /** The channels a stream carries (SSE, long-poll): every one not paused by the app. */
  streamChannels() {
    return [...this.channels.values()].filter((c) => !c.paused).map((c) => c.name);
  }
  // ---- the server's frames ------------------------------------------------------------------
  channelOf(f) {
    return f.channel === void 0 ? void 0 : this.channels.get(f.channel);
  }
  onSubscribed(f) {
    const ch = this.channelOf(f);
    if (!ch || ch.wire !== "subscribing" && ch.wire !== "pausing") return;
    const lost = ch.since && f.recovered === false;
    this.cursors.subscribed(ch.name, f.cursor, lost);
    if (ch.wire === "subscribing") ch.wire = "live";
    ch.since = ch.replaying = ch.stale = false;
    if (lost) this.events.emit("recovery_failed", { channel: ch.name });
    this.carrier.settle("every channel resumed");
  }
  onMessage(f) {
    const ch = this.channelOf(f);
    if (!ch || ch.stale) return;
    if (typeof f.id !== "string" || typeof f.cursor !== "string") {
      this.events.emit("error", new HeraldError("bad_request", "the server sent a message without a string id and cursor", ch.name));
      return;
    }
    if (!this.carrier.onWebSocket) {
      for (const c of this.streamChannels()) this.cursors.processed(c, f.cursor);
    }
    if (!ch.dedupe.first(f.id)) return;
    this.cursors.processed(ch.name, f.cursor);
    guarded(ch.handler, { channel: ch.name, id: f.id, cursor: f.cursor, ts: Number(f.ts ?? 0), data: f.data });
  }
  /** `unsubscribed` without an id: the server ended the subscription. */
  onEnded(f) {
    const ch = this.channelOf(f);
    if (!ch) return;
    ch.wire = "none";
    if (f.code === "lagged") {
      if (!ch.paused) this.sendSubscribe(ch, false);
      return;
    }
    const code = f.code ?? "internal";
    this.channels.delete(ch.name);
    this.cursors.forget(ch.name);
    ch.replaying = false;
    this.events.emit("error", new HeraldError(code, `the server ended the subscription to ${ch.name}`, ch.name));
    if (ch.opts.onEnd) guarded(ch.opts.onEnd, code);
    this.carrier.settle("connected");
  }
};

// src/backoff.ts
var MAX_HINT_MS = 3e5;
var Backoff = class {
  constructor(opts = {}) {
    this.attempt = 0;
    this.baseMs = opts.baseMs ?? 500;
    this.capMs = opts.capMs ?? 3e4;
    this.random = opts.random ?? Math.random;
  }
  /** The delay before the next attempt; counts the attempt. */
  next() {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.floor(this.random() * ceiling);
  }
  /**
   * The server said when to come back (`reconnect.after_ms`, already spread over its clients):
   * that wins (up to 5 minutes), and counts as an attempt.
   */
  hinted(afterMs) {
    this.attempt += 1;
    return Number.isFinite(afterMs) ? Math.max(0, Math.min(afterMs, MAX_HINT_MS)) : 0;
  }
  /** A connection stayed up: the next attempt starts from the base again. */
  reset() {
    this.attempt = 0;
  }
  /** Attempts since the last reset. */
  get attempts() {
    return this.attempt;
  }
};

// src/transport.ts
function defaultEnvironment() {
  const g2 = globalThis;
  return {
    WebSocket: g2.WebSocket,
    EventSource: g2.EventSource,
    fetch: typeof g2.fetch === "function" ? g2.fetch.bind(globalThis) : void 0
  };
}
function streamQuery(req) {
  const q = new URLSearchParams({ channels: req.channels.join(","), token: req.token });
  if (req.cursors.length > 0) q.set("since", req.cursors.join(","));
  return q;
}
function closeCodeOf(code) {
  switch (code) {
    case "unauthorized":
      return 4001;
    case "token_expired":
      return 4002;
    case "lagged":
      return 4008;
    case "rate_limited":
      return 4029;
    case "forbidden":
      return 1008;
    case "shutting_down":
      return 1001;
    case "frame_too_large":
      return 1009;
    default:
      return void 0;
  }
}

// src/poll.ts
function openPoll(env, req, ev, timeoutMs) {
  const f = env.fetch;
  if (!f) throw new Error("no fetch in this environment");
  const abort = new AbortController();
  let done = false;
  let token = req.token;
  let cursors = req.cursors;
  const end = (code, reason) => {
    if (done) return;
    done = true;
    ev.closed(code, reason);
  };
  const loop = async () => {
    let first = true;
    while (!done) {
      const q = streamQuery({ ...req, token, cursors });
      q.set("timeout_ms", String(first ? 0 : timeoutMs));
      let status;
      let text;
      try {
        const r = await f(`${req.baseUrl}/v1/poll?${q.toString()}`, { signal: abort.signal, cache: "no-store" });
        status = r.status;
        text = await r.text();
      } catch (e) {
        return end(void 0, `poll failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (done) return;
      let answer;
      try {
        answer = JSON.parse(text);
      } catch {
        return end(void 0, `poll answered HTTP ${status} without JSON`);
      }
      if (status !== 200) {
        const code = answer.error?.code;
        ev.frames([{ type: "error", code: code ?? "unavailable", message: answer.error?.message ?? `HTTP ${status}` }]);
        const close = status === 401 || status === 429 ? closeCodeOf(code) : status >= 400 && status < 500 ? 1008 : void 0;
        return end(close, `poll refused: HTTP ${status}${code ? ` ${code}` : ""}`);
      }
      const frames = [];
      if (first) {
        first = false;
        frames.push({ type: "welcome", heartbeat_ms: timeoutMs + 5e3 });
        for (const channel of req.channels) frames.push({ type: "subscribed", channel, cursor: answer.cursor, recovered: answer.recovered });
      }
      frames.push(...answer.messages ?? []);
      if (answer.cursor) {
        cursors = [answer.cursor];
        frames.push({ type: "position", cursor: answer.cursor });
      }
      ev.frames(frames);
    }
  };
  void loop();
  return {
    kind: "poll",
    send: () => false,
    setToken(t) {
      token = t;
    },
    close() {
      done = true;
      abort.abort();
    }
  };
}

// src/sse.ts
function openSse(env, req, ev) {
  const Ctor = env.EventSource;
  if (!Ctor) throw new Error("no EventSource in this environment");
  const es = new Ctor(req.baseUrl + "/v1/sse?" + streamQuery(req).toString());
  let done = false;
  es.onmessage = (m) => {
    const parsed = parseFrames(String(m.data));
    for (const e of parsed.errors) ev.garbage(e);
    if (parsed.frames.length > 0) ev.frames(parsed.frames);
  };
  es.addEventListener?.("disconnect", (m) => {
    if (done) return;
    let f;
    try {
      f = JSON.parse(String(m.data));
    } catch {
      return ev.garbage(`a disconnect event that is not JSON: ${String(m.data).slice(0, 80)}`);
    }
    ev.frames([{ ...typeof f === "object" && f !== null ? f : {}, type: "disconnect" }]);
  });
  es.onerror = () => {
    if (done) return;
    done = true;
    es.close();
    ev.closed(void 0, "the event stream failed");
  };
  return {
    kind: "sse",
    send: () => false,
    close() {
      done = true;
      es.onmessage = es.onerror = null;
      es.close();
    }
  };
}

// src/timers.ts
var Timers = class {
  constructor() {
    this.byName = /* @__PURE__ */ new Map();
  }
  /** Calls `f` in `ms` (instead of what was pending under `name`). */
  set(name, ms, f) {
    const old = this.byName.get(name);
    if (old) clearTimeout(old);
    this.byName.set(
      name,
      setTimeout(() => {
        this.byName.delete(name);
        f();
      }, ms)
    );
  }
  /** Whether a timer of `name` is pending. */
  has(name) {
    return this.byName.has(name);
  }
  /** Cancels every pending timer. */
  clear() {
    for (const t of this.byName.values()) clearTimeout(t);
    this.byName.clear();
  }
};

// src/protobuf.ts
var WireError = class extends Error {
  constructor(message2) {
    super(message2);
    this.name = "WireError";
  }
};
var VARINT = 0;
var FIXED64 = 1;
var LEN = 2;
var FIXED32 = 5;
var WireReader = class _WireReader {
  constructor(buf, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }
  /** Whether bytes remain. */
  get more() {
    return this.pos < this.end;
  }
  /** An unsigned varint of up to 64 bits. */
  varint() {
    const start = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError("truncated varint");
      const b = this.buf[this.pos++];
      if (i === 9 && b > 1) throw new WireError("varint above 64 bits");
      value += (b & 127) * scale;
      if (b < 128) return value <= Number.MAX_SAFE_INTEGER ? value : this.bigVarint(start);
      scale *= 128;
    }
    throw new WireError("varint longer than 10 bytes");
  }
  /** A varint that must fit a number (lengths, field keys, 32-bit fields). */
  smallVarint(what) {
    const v = this.varint();
    if (typeof v !== "number" || v > 4294967295) throw new WireError(`${what} out of range`);
    return v;
  }
  /** A zigzag-encoded `sint64`. */
  sint64() {
    const v = this.varint();
    if (typeof v === "number") return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
    const n = BigInt(v);
    return exact(n >> 1n ^ -(n & 1n));
  }
  bool() {
    return this.varint() !== 0;
  }
  /** A little-endian IEEE 754 `double`. */
  double() {
    const b = this.take(8);
    return new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, true);
  }
  /** A length-delimited field's bytes (a view, not a copy). */
  bytes() {
    return this.take(this.smallVarint("length"));
  }
  /** A length-delimited field as UTF-8 text (invalid UTF-8 is an error, as in protobuf). */
  string() {
    return utf8Decode(this.bytes());
  }
  /** A field's key: its number and wire type. */
  key() {
    const k = this.smallVarint("field key");
    const field = Math.floor(k / 8);
    if (field === 0) throw new WireError("field number 0");
    return { field, wire: k & 7 };
  }
  /** Skips a field of wire type `wire` (a field this reader does not know). */
  skip(wire) {
    if (wire === VARINT) this.varint();
    else if (wire === FIXED64) this.take(8);
    else if (wire === LEN) this.bytes();
    else if (wire === FIXED32) this.take(4);
    else throw new WireError(`unsupported wire type ${wire}`);
  }
  /** A reader over the next length-delimited field (an embedded message). */
  message() {
    const b = this.bytes();
    return new _WireReader(b);
  }
  take(n) {
    if (n > this.end - this.pos) throw new WireError("field runs past the end of its frame");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  bigVarint(start) {
    let v = 0n;
    for (let i = this.pos - 1; i >= start; i--) v = v << 7n | BigInt(this.buf[i] & 127);
    return exact(v);
  }
};
function exact(v) {
  return v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}
var WireWriter = class {
  constructor() {
    this.buf = new Uint8Array(64);
    this.len = 0;
  }
  /** The bytes written. */
  finish() {
    return this.buf.subarray(0, this.len);
  }
  /** A varint: a non-negative integer, or the decimal digits of one up to 2^64 - 1. */
  varint(v) {
    if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) {
      this.room(8);
      while (v >= 128) {
        this.buf[this.len++] = v % 128 | 128;
        v = Math.floor(v / 128);
      }
      this.buf[this.len++] = v;
      return;
    }
    let n = BigInt(v);
    if (n < 0n || n >= 1n << 64n) throw new RangeError(`${v} is not a 64-bit unsigned integer`);
    this.room(10);
    while (n >= 0x80n) {
      this.buf[this.len++] = Number(n & 0x7fn) | 128;
      n >>= 7n;
    }
    this.buf[this.len++] = Number(n);
  }
  key(field, wire) {
    this.varint(field * 8 + wire);
  }
  /** Field `field` as a varint. */
  uint(field, v) {
    this.key(field, VARINT);
    this.varint(v);
  }
  /** Field `field` as a zigzag `sint64`. */
  sint64(field, v) {
    const small = typeof v === "number" && Number.isSafeInteger(v) && Math.abs(v) < 2 ** 52;
    this.uint(field, small ? v >= 0 ? 2 * v : -2 * v - 1 : zigzag(BigInt(v)));
  }
  bool(field, v) {
    this.uint(field, v ? 1 : 0);
  }
  double(field, v) {
    this.key(field, FIXED64);
    this.room(8);
    new DataView(this.buf.buffer, this.len, 8).setFloat64(0, v, true);
    this.len += 8;
  }
  /** Field `field` as length-delimited bytes. */
  bytes(field, b) {
    this.key(field, LEN);
    this.varint(b.length);
    this.raw(b);
  }
  string(field, s) {
    this.bytes(field, utf8Encode(s));
  }
  /** Field `field` as an embedded message. */
  message(field, m) {
    this.bytes(field, m.finish());
  }
  /** Bytes as they are (a frame's length prefix is written with `varint`). */
  raw(b) {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  room(n) {
    if (this.len + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
  }
};
function zigzag(n) {
  if (n < -(1n << 63n) || n >= 1n << 63n) throw new RangeError(`${n} is not a 64-bit signed integer`);
  return exact(n >= 0n ? n << 1n : (-n << 1n) - 1n);
}
function delimited(frame) {
  const body = frame.finish();
  const w = new WireWriter();
  w.varint(body.length);
  w.raw(body);
  return w.finish();
}
var g = globalThis;
var encoder = g.TextEncoder ? new g.TextEncoder() : void 0;
var decoder = g.TextDecoder ? new g.TextDecoder("utf-8", { fatal: true }) : void 0;
function utf8Encode(s) {
  if (encoder) return encoder.encode(s);
  const out = [];
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 65533;
    if (c < 128) out.push(c);
    else if (c < 2048) out.push(192 | c >> 6, 128 | c & 63);
    else if (c < 65536) out.push(224 | c >> 12, 128 | c >> 6 & 63, 128 | c & 63);
    else out.push(240 | c >> 18, 128 | c >> 12 & 63, 128 | c >> 6 & 63, 128 | c & 63);
  }
  return Uint8Array.from(out);
}
function utf8Decode(b) {
  if (decoder) {
    try {
      return decoder.decode(b);
    } catch {
      throw new WireError("text that is not UTF-8");
    }
  }
  let s = "";
  for (let i = 0; i < b.length; ) {
    const c = b[i++];
    const n = c < 128 ? 0 : c >= 194 && c < 224 ? 1 : c >= 224 && c < 240 ? 2 : c >= 240 && c < 245 ? 3 : -1;
    if (n < 0 || i + n > b.length) throw new WireError("text that is not UTF-8");
    let cp = n === 0 ? c : c & 63 >> n;
    for (let k = 0; k < n; k++) {
      const d = b[i++];
      if ((d & 192) !== 128) throw new WireError("text that is not UTF-8");
      cp = cp << 6 | d & 63;
    }
    if (n === 2 && (cp < 2048 || cp >= 55296 && cp < 57344) || n === 3 && (cp < 65536 || cp > 1114111)) throw new WireError("text that is not UTF-8");
    s += String.fromCodePoint(cp);
  }
  return s;
}

// src/compact.ts
var PROTO_SUBPROTOCOL = "herald.v1.proto";
var REQUEST_ID = { 1: ["value", "z", "o"], 2: ["value", "s", "o"] };
var ID = ["id", REQUEST_ID, "o"];
var MEMBER = { 1: ["connection_id", "s"], 2: ["user", "s"], 3: ["info", "j", "o"] };
var ORIGIN = { 1: ["region", "s"], 2: ["next", "u"] };
var CHANNEL_REQUEST = { 1: ID, 2: ["channel", "s"] };
var DEVICE_REQUEST = { 1: ID, 2: ["platform", "s"], 3: ["token", "s"], 4: ["app", "s"] };
var PRESENCE_EVENT = { 1: ["channel", "s"], 2: ["member", MEMBER, "o"] };
var SERVER = {
  1: ["message", { 1: ["sub", "u"], 2: ["offset", "u"], 3: ["id", "ulid", "o"], 4: ["id", "keyed", "o"], 5: ["id", "s", "o"], 6: ["ts", "u"], 7: ["data", "j", "o"], 8: ["origins", ORIGIN, "r"] }],
  2: ["welcome", { 1: ["connection_id", "s"], 2: ["node", "s"], 3: ["region", "s"], 4: ["heartbeat_ms", "u"], 5: ["protocol", "u"], 6: ["expires_at", "u", "o"] }],
  3: ["subscribed", { 1: ID, 2: ["channel", "s"], 3: ["cursor", "s"], 4: ["recovered", "b"], 5: ["sub", "u"], 6: ["cursor_epoch", "s"], 7: ["cursor_region", "s"] }],
  4: ["unsubscribed", { 1: ID, 2: ["channel", "s"], 3: ["code", "s", "o"] }],
  5: ["paused", { 1: ID, 2: ["channel", "s"], 3: ["cursor", "s"] }],
  6: ["published", { 1: ID, 2: ["channel", "s"], 3: ["cursor", "s"], 4: ["message_id", "s"], 5: ["duplicate", "b"] }],
  7: ["presence", { 1: ID, 2: ["channel", "s"], 3: ["occupancy", "u"], 4: ["members", MEMBER, "r"] }],
  8: ["join", PRESENCE_EVENT],
  9: ["leave", PRESENCE_EVENT],
  10: ["token_expiring", { 1: ["expires_at", "u"] }],
  11: ["refreshed", { 1: ID, 2: ["expires_at", "u"] }],
  12: ["pong", { 1: ID }],
  13: ["ping", {}],
  14: ["error", { 1: ID, 2: ["code", "s"], 3: ["message", "s"] }],
  15: ["reconnect", { 1: ["after_ms", "u"], 2: ["reason", "s"] }],
  16: ["disconnect", { 1: ["code", "s"], 2: ["reason", "s"], 3: ["reconnect", "b"] }],
  17: ["device", { 1: ID, 2: ["registered", "b"] }]
};
var CLIENT = {
  auth: [1, { 1: ["token", "s"] }],
  subscribe: [2, { 1: ID, 2: ["channel", "s"], 3: ["since", "s", "o"], 4: ["presence", "b"], 5: ["max_rate", "d", "o"] }],
  unsubscribe: [3, CHANNEL_REQUEST],
  publish: [4, { 1: ID, 2: ["channel", "s"], 3: ["data", "j", "o"], 4: ["idempotency_key", "s", "o"] }],
  presence: [5, CHANNEL_REQUEST],
  pause: [6, CHANNEL_REQUEST],
  resume: [7, CHANNEL_REQUEST],
  refresh: [8, { 1: ID, 2: ["token", "s"] }],
  ping: [9, { 1: ID }],
  pong: [10, {}],
  register_device: [11, DEVICE_REQUEST],
  unregister_device: [12, DEVICE_REQUEST]
};
var WIRE = { u: VARINT, z: VARINT, b: VARINT, d: FIXED64 };
function decode(r, schema) {
  const out = {};
  while (r.more) {
    const { field, wire } = r.key();
    const spec = schema[field];
    if (!spec) {
      r.skip(wire);
      continue;
    }
    const [name, kind, flags] = spec;
    if (wire !== (typeof kind === "string" ? WIRE[kind] ?? LEN : LEN)) throw new WireError(`field ${name} has wire type ${wire}`);
    const v = readValue(r, kind);
    if (flags === "r") (out[name] ?? (out[name] = [])).push(v);
    else out[name] = v;
  }
  for (const [name, kind, flags] of Object.values(schema)) {
    if (flags === "o" || name in out) continue;
    out[name] = flags === "r" ? [] : kind === "b" ? false : kind === "s" ? "" : 0;
  }
  return out;
}
function readValue(r, kind) {
  switch (kind) {
    case "u":
      return r.varint();
    case "z":
      return r.sint64();
    case "b":
      return r.bool();
    case "d":
      return r.double();
    case "s":
      return r.string();
    case "j": {
      const text = utf8Decode(r.bytes());
      try {
        return JSON.parse(text);
      } catch {
        throw new WireError("data that is not JSON");
      }
    }
    case "ulid":
      return crockford(r.bytes(), 26);
    case "keyed":
      return "K" + crockford(r.bytes(), 25);
    default:
      return decode(r.message(), kind);
  }
}
var CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
function crockford(b, n) {
  if (b.length !== 16) throw new WireError("a compact message id is 16 bytes");
  const bit = (i) => i < 128 ? b[15 - (i >> 3)] >> (i & 7) & 1 : 0;
  for (let i = 5 * n; i < 128; i++) if (bit(i)) throw new WireError(`a ${n === 26 ? "ULID" : "keyed id"} has more than ${5 * n} bits`);
  let s = "";
  for (let c = n - 1; c >= 0; c--) {
    let v = 0;
    for (let k = 4; k >= 0; k--) v = v << 1 | bit(5 * c + k);
    s += CROCKFORD[v];
  }
  return s;
}
var EPOCH = /^[0-9a-z]{1,32}$/;
var REGION = /^(?![0-9]+$)[a-z0-9-]{1,32}$/;
var CompactReader = class {
  constructor() {
    this.subs = /* @__PURE__ */ new Map();
  }
  /** Every frame of a binary message, as JSON v1 frames; a message of an unknown subscription (one the client left) is left out. */
  read(message2) {
    const frames = [];
    try {
      const batch = new WireReader(message2);
      while (batch.more) {
        const f = this.frame(batch.bytes());
        if (f) frames.push(f);
      }
      return { frames };
    } catch (e) {
      return { frames, error: e instanceof Error ? e.message : String(e) };
    }
  }
  /** One frame; undefined for a frame of a type this SDK does not know (ignored, as in JSON) or a message nobody reads. */
  frame(bytes) {
    const r = new WireReader(bytes);
    let kind;
    while (r.more) {
      const { field, wire } = r.key();
      const spec = SERVER[field];
      if (!spec) {
        r.skip(wire);
        continue;
      }
      if (wire !== LEN) throw new WireError(`frame field ${field} has wire type ${wire}`);
      kind = [spec[0], decode(r.message(), spec[1])];
    }
    if (!kind) return void 0;
    const [type, f] = kind;
    if (type === "message") return this.message(f);
    if (f.id !== void 0) f.id = f.id.value;
    if (f.id === void 0) delete f.id;
    if (type === "subscribed") {
      const epoch = String(f.cursor_epoch);
      const region = String(f.cursor_region);
      if (!EPOCH.test(epoch) || !REGION.test(region)) throw new WireError(`subscribed: bad cursor epoch or region in ${JSON.stringify(f.cursor)}`);
      for (const [n, s] of this.subs) if (s.channel === f.channel) this.subs.delete(n);
      this.subs.set(f.sub, { channel: String(f.channel), prefix: `${epoch}.${region}.`, region });
      delete f.sub;
      delete f.cursor_epoch;
      delete f.cursor_region;
    } else if (type === "unsubscribed") {
      for (const [n, s] of this.subs) if (s.channel === f.channel) this.subs.delete(n);
      if (f.code === "") delete f.code;
    } else if ((type === "join" || type === "leave") && f.member === void 0) {
      f.member = { connection_id: "", user: "" };
    }
    return { type, ...f };
  }
  message(m) {
    const sub = this.subs.get(m.sub);
    if (!sub) return void 0;
    if (m.id === void 0) throw new WireError("message without an id");
    const offset = m.offset;
    const next = typeof offset === "number" ? offset + 1 : BigInt(offset) + 1n;
    if (next >= 2n ** 64n) throw new WireError("message offset out of range");
    let cursor = sub.prefix + String(next);
    const seen = /* @__PURE__ */ new Set([sub.region]);
    for (const o of m.origins) {
      const region = String(o.region);
      if (!REGION.test(region) || seen.has(region)) throw new WireError(`message names region ${JSON.stringify(region)} twice or badly`);
      seen.add(region);
      cursor += `.${region}.${String(o.next)}`;
    }
    cursor = (seen.size > 1 ? "c2." : "c1.") + cursor;
    return { type: "message", channel: sub.channel, id: m.id, cursor, ts: m.ts, data: m.data };
  }
};
function encode(w, schema, v) {
  for (const [n, [name, kind, flags]] of Object.entries(schema)) {
    const field = Number(n);
    const x = v[name];
    if (x === void 0 || flags !== "o" && (x === 0 || x === "" || x === false)) continue;
    if (schema === REQUEST_ID && field === 1 !== (typeof x === "number" && Number.isInteger(x))) continue;
    if (kind === "z") w.sint64(field, x);
    else if (kind === "u") w.uint(field, x);
    else if (kind === "b") w.bool(field, Boolean(x));
    else if (kind === "d") w.double(field, Number(x));
    else if (kind === "s") w.string(field, String(x));
    else if (kind === "j") {
      const json = JSON.stringify(x);
      if (json !== void 0) w.bytes(field, utf8Encode(json));
    } else if (typeof kind === "object") {
      const m = new WireWriter();
      encode(m, kind, kind === REQUEST_ID ? { value: x } : x);
      w.message(field, m);
    }
  }
}
function encodeCompact(frame) {
  const spec = CLIENT[frame.type];
  if (!spec) throw new TypeError(`no compact form for a ${frame.type} frame`);
  const body = new WireWriter();
  encode(body, spec[1], frame);
  const w = new WireWriter();
  w.message(spec[0], body);
  return delimited(w);
}

// src/websocket.ts
var JSON_SUBPROTOCOL = "herald.v1.json";
function openWebSocket(env, req, ev, tokenInQuery = false, encoding = "json") {
  const Ctor = env.WebSocket;
  if (!Ctor) throw new Error("no WebSocket in this environment");
  let url = req.baseUrl.replace(/^http/, "ws") + "/v1/ws";
  if (tokenInQuery) url += "?token=" + encodeURIComponent(req.token);
  const ws = encoding === "proto" ? new Ctor(url, [PROTO_SUBPROTOCOL]) : new Ctor(url, JSON_SUBPROTOCOL);
  if (encoding === "proto") ws.binaryType = "arraybuffer";
  let reader;
  let done = false;
  const detach = () => {
    done = true;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  };
  const write = (frame) => ws.send(reader ? encodeCompact(frame) : encodeFrame(frame));
  const unreadable = (why) => {
    ev.garbage(why);
    if (done) return;
    detach();
    try {
      ws.close(1e3, "unreadable frame");
    } catch {
    }
    ev.closed(void 0, `the server sent an unreadable frame (${why})`);
  };
  ws.onopen = () => {
    if (encoding === "proto" && ws.protocol === PROTO_SUBPROTOCOL) reader = new CompactReader();
    if (!tokenInQuery) write({ type: "auth", token: req.token });
  };
  ws.onmessage = (m) => {
    if (typeof m.data === "string") {
      const parsed = parseFrames(m.data);
      for (const e of parsed.errors) ev.garbage(e);
      if (parsed.frames.length > 0) ev.frames(parsed.frames);
      return;
    }
    if (!reader) return ev.garbage("a binary message");
    const bytes = m.data instanceof ArrayBuffer ? new Uint8Array(m.data) : ArrayBuffer.isView(m.data) ? new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength) : void 0;
    if (!bytes) return unreadable("a binary message that is not an ArrayBuffer");
    const { frames, error } = reader.read(bytes);
    if (frames.length > 0) ev.frames(frames);
    if (error !== void 0) unreadable(`a compact frame that cannot be read: ${error}`);
  };
  ws.onerror = () => void 0;
  ws.onclose = (c) => {
    detach();
    ev.closed(c.code, c.reason || `closed (${c.code})`);
  };
  return {
    kind: "websocket",
    get encoding() {
      return reader ? "proto" : "json";
    },
    send(frame) {
      if (done || ws.readyState !== 1) return false;
      write(frame);
      return true;
    },
    close() {
      if (done) return;
      detach();
      try {
        ws.close(1e3, "client closed");
      } catch {
      }
    }
  };
}

// src/fallback.ts
var Fallback = class {
  constructor(o, host) {
    this.o = o;
    this.host = host;
    this.timers = new Timers();
    this.index = 0;
    /** Consecutive failures to open the current transport. */
    this.failures = 0;
    this.probeToken = "";
    /** Bumped by `cancel`: a probe started before it does not go on. */
    this.generation = 0;
  }
  /** The transport to open next. */
  get kind() {
    return this.o.kinds[this.index];
  }
  /** Opens a transport of the current kind. */
  open(req, events) {
    const kind = this.kind;
    return kind === "websocket" ? openWebSocket(this.o.env, req, events, this.o.tokenInQuery, this.o.encoding) : kind === "sse" ? openSse(this.o.env, req, events) : openPoll(this.o.env, req, events, this.o.pollTimeoutMs);
  }
  /** Opening the current transport failed (it threw, ended before its `welcome`, or none came in time). */
  failed() {
    this.failures += 1;
  }
  /** A `welcome` came on the current transport. */
  welcomed() {
    this.failures = 0;
  }
  /** Before the next attempt: after repeated failures, the next transport (returned); else undefined. */
  advance() {
    const kinds = this.o.kinds;
    if (this.failures >= this.o.fallbackAfter && kinds.length > 1) {
      this.index = (this.index + 1) % kinds.length;
      this.failures = 0;
      return kinds[this.index];
    }
    return void 0;
  }
  // ---- back to the WebSocket ----------------------------------------------------------------
  /** On a fallback, tries the WebSocket again in `upgradeEveryMs`, in the background. */
  scheduleProbe() {
    if (this.o.kinds[0] !== "websocket" || this.host.transportKind() === "websocket") return;
    this.timers.set("upgrade", this.o.upgradeEveryMs, () => void this.startProbe());
  }
  /** Whether `t` is the probe. */
  isProbe(t) {
    return t === this.probe;
  }
  /** The probe's first frames: a `welcome` moves the connection to it; anything else (an error) ends it. */
  onProbeFrames(p, frames) {
    if (frames[0]?.type !== "welcome") return this.dropProbe(p);
    this.probe = void 0;
    this.host.promote(p, this.probeToken, frames);
  }
  /** Closes the probe `p` (it failed, or took too long) and tries again later. */
  dropProbe(p) {
    if (this.probe !== p) return;
    this.probe = void 0;
    p.close();
    this.scheduleProbe();
  }
  /** The connection's link ended: no probe, none scheduled. */
  cancel() {
    this.generation += 1;
    this.timers.clear();
    const p = this.probe;
    this.probe = void 0;
    p?.close();
  }
  /** The connection moved to the WebSocket: the ladder starts again from the top. */
  backToFirst() {
    this.index = 0;
    this.failures = 0;
  }
  async startProbe() {
    const generation = this.generation;
    let token;
    try {
      token = await this.host.tokens.get();
    } catch {
      return this.scheduleProbe();
    }
    if (generation !== this.generation || !this.host.welcomed()) return;
    let p;
    const events = this.host.eventsOf(() => p);
    try {
      p = openWebSocket(this.o.env, { baseUrl: this.o.baseUrl, token, channels: [], cursors: [] }, events, this.o.tokenInQuery, this.o.encoding);
    } catch {
      return this.scheduleProbe();
    }
    const probe = p;
    this.probe = probe;
    this.probeToken = token;
    this.timers.set("probe", this.o.connectTimeoutMs, () => this.dropProbe(probe));
  }
};

// src/token.ts
var TokenSource = class {
  constructor(provider) {
    this.provider = provider;
    if (typeof provider === "string") this.current = provider;
  }
  /** Whether a new token can be had (the provider is a function). */
  get renewable() {
    return typeof this.provider !== "string";
  }
  /** The current token, fetched first if there is none. */
  get() {
    return this.current !== void 0 ? Promise.resolve(this.current) : this.fetch();
  }
  /** A fresh token from the provider (a fixed string stays what it is). Concurrent calls share one fetch. */
  refresh() {
    return typeof this.provider === "string" ? Promise.resolve(this.provider) : this.fetch();
  }
  /** The server refused the current token: the next `get` fetches a new one. */
  invalidate() {
    if (this.renewable) this.current = void 0;
  }
  fetch() {
    const provider = this.provider;
    if (typeof provider === "string") return Promise.resolve(provider);
    this.inflight ?? (this.inflight = provider().then(
      (t) => {
        this.inflight = void 0;
        if (typeof t !== "string" || t === "") throw new Error("the token function returned no token");
        this.current = t;
        return t;
      },
      (e) => {
        this.inflight = void 0;
        throw e;
      }
    ));
    return this.inflight;
  }
};
function jwtExpiry(token) {
  const payload = token.split(".")[1];
  if (payload === void 0 || typeof atob !== "function") return void 0;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : void 0;
  } catch {
    return void 0;
  }
}

// src/link.ts
var Link = class {
  constructor(host, transport, token, heartbeatMs) {
    this.host = host;
    this.transport = transport;
    this.token = token;
    this.heartbeatMs = heartbeatMs;
    this.timers = new Timers();
    this.welcomedNow = false;
    this.ended = false;
    this.lastHeard = Date.now();
  }
  /** The `welcome` came. */
  get welcomed() {
    return this.welcomedNow;
  }
  /** Sends a frame; false when it could not (a closed link, SSE, long-poll). */
  send(frame) {
    return this.transport.send(frame);
  }
  /** Ends the link: its timers stop, the transport closes, and nothing it started carries on. */
  close() {
    this.ended = true;
    this.timers.clear();
    this.transport.close();
  }
  /** The `welcome` came: the link is watched on heartbeats from now on. */
  markWelcomed(f) {
    this.welcomedNow = true;
    if (typeof f.heartbeat_ms === "number" && f.heartbeat_ms > 0) this.heartbeatMs = f.heartbeat_ms;
    this.watch();
  }
  /** Declares the link dead when nothing was heard for two heartbeats (or no `welcome` came in time). */
  watch() {
    const limit = this.welcomedNow ? 2 * this.heartbeatMs : this.host.connectTimeoutMs;
    const idle = Date.now() - this.lastHeard;
    if (idle < limit) return this.timers.set("watchdog", limit - idle, () => this.watch());
    this.host.dead(this.welcomedNow, limit);
  }
  /** SSE and long-poll: the token's expiry, from the `welcome` or else from the token itself. */
  streamTokenExpiry(f) {
    return f.expires_at ?? jwtExpiry(this.token);
  }
  // ---- the transport's events ---------------------------------------------------------------
  /** Frames, in order. */
  onFrames(frames) {
    this.lastHeard = Date.now();
    for (const f of frames) {
      this.onFrame(f);
      if (this.ended) return;
    }
  }
  /** The transport ended by itself. */
  onClosed(code, reason) {
    this.host.closed(code ?? this.closeHint, reason, this.welcomedNow);
  }
  onFrame(f) {
    switch (f.type) {
      case "welcome":
        if (!this.welcomedNow) this.host.welcomed(f);
        return;
      case "ping":
        this.send({ type: "pong" });
        return;
      case "token_expiring":
        void this.refreshToken(Number(f.expires_at ?? 0));
        return;
      case "reconnect":
        return this.host.reconnectAsked(f);
      case "disconnect":
        return this.host.disconnectAsked(f);
      case "error":
        return this.onError(f);
      default:
        if (!this.host.channelFrame(f)) this.host.requests.settle(f);
    }
  }
  onError(f) {
    if (this.host.requests.settle(f)) return;
    if (f.id === void 0) this.closeHint = closeCodeOf(f.code) ?? this.closeHint;
    this.host.events.emit("error", new HeraldError(f.code ?? "internal", f.message ?? "the server reported an error", f.channel));
  }
  // ---- tokens -------------------------------------------------------------------------------
  /** SSE and long-poll: refresh the token ahead of `expiresAt` as the server would warn (a minute, or half a short token's life). */
  scheduleTokenRefresh(expiresAt) {
    if (expiresAt === void 0) return;
    const remaining = expiresAt * 1e3 - Date.now();
    const lead = Math.min(Math.max(remaining, 0), 12e4) / 2;
    this.timers.set("token", Math.max(0, remaining - lead), () => void this.refreshToken(expiresAt));
  }
  /** The token expires soon: fetch a new one and hand it to the transport. */
  async refreshToken(expiresAt) {
    this.host.events.emit("token_expiring", { expiresAt });
    const tokens = this.host.tokens;
    if (!tokens.renewable) return;
    let token;
    try {
      token = await tokens.refresh();
    } catch (e) {
      this.host.events.emit("error", new HeraldError("unauthorized", `the token function failed: ${e instanceof Error ? e.message : String(e)}`));
      return;
    }
    if (this.ended) return;
    this.token = token;
    const t = this.transport;
    if (t.kind === "websocket") {
      try {
        await this.host.request({ type: "refresh", token }, "refresh");
      } catch (e) {
        if (e instanceof HeraldError && e.code !== "disconnected") this.host.events.emit("error", e);
      }
    } else if (t.setToken) {
      t.setToken(token);
      this.scheduleTokenRefresh(jwtExpiry(token));
    } else {
      this.host.reopen("reopening the stream with a new token");
    }
  }
};

// src/options.ts
function connectionSettings(opts) {
  const baseUrl = opts.url.replace(/^ws/, "http").replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/.test(baseUrl)) throw new TypeError(`url must be http(s):// or ws(s)://, not ${opts.url}`);
  const env = opts.environment ?? defaultEnvironment();
  const kinds = (opts.transports ?? ["websocket", "sse", "poll"]).filter((k) => (k === "websocket" ? env.WebSocket : k === "sse" ? env.EventSource : env.fetch) !== void 0);
  if (kinds.length === 0) throw new TypeError("none of the transports is available in this environment");
  const encoding = opts.encoding ?? "json";
  if (encoding !== "json" && encoding !== "proto") throw new TypeError(`encoding must be 'json' or 'proto', not ${String(encoding)}`);
  return {
    baseUrl,
    env,
    kinds,
    stableAfterMs: opts.stableAfterMs ?? 1e4,
    fallbackAfter: opts.fallbackAfter ?? 2,
    upgradeEveryMs: opts.upgradeEveryMs ?? 6e4,
    connectTimeoutMs: opts.connectTimeoutMs ?? 15e3,
    requestTimeoutMs: opts.requestTimeoutMs ?? 1e4,
    pollTimeoutMs: Math.min(opts.pollTimeoutMs ?? 25e3, 6e4),
    tokenInQuery: opts.tokenInQuery ?? false,
    encoding
  };
}

// src/connection.ts
var NO_CHANNELS = {
  streamRequest: () => ({ channels: [], cursors: [] }),
  welcomed: () => void 0,
  disconnected: () => void 0,
  onFrame: () => false,
  replaying: false
};
var SERVER_CLOSE_CODES = /* @__PURE__ */ new Set([1001, 1008, 1009, 4001, 4002, 4008, 4010, 4011, 4029]);
var Connection = class {
  constructor(opts, events) {
    this.events = events;
    this.timers = new Timers();
    this.channels = NO_CHANNELS;
    this.modeNow = "running";
    this.stateNow = "connecting";
    this.announced = false;
    /** On SSE or long-poll with no channel to stream: nothing is open, and a subscribe opens it. */
    this.idleStream = false;
    this.everWelcomed = false;
    /** Bumped by every teardown: async work of an older link stops when it sees a newer one. */
    this.epoch = 0;
    /** Token refusals (4001/4002) since the last `welcome`. */
    this.refusals = 0;
    /** The last heartbeat interval a `welcome` gave, ms. */
    this.heartbeatMs = 25e3;
    this.o = connectionSettings(opts);
    this.backoff = new Backoff(opts.backoff);
    this.tokens = new TokenSource(opts.token);
    this.requests = new Requests(this.o.requestTimeoutMs);
    this.host = {
      events,
      requests: this.requests,
      tokens: this.tokens,
      connectTimeoutMs: this.o.connectTimeoutMs,
      welcomed: (f) => this.onWelcome(f),
      channelFrame: (f) => this.channels.onFrame(f),
      reconnectAsked: (f) => this.onReconnectFrame(f),
      disconnectAsked: (f) => this.onServerDisconnect(String(f.code ?? "disconnected"), String(f.reason ?? ""), f.reconnect === true),
      closed: (code, reason, welcomed) => this.onClosed(code, reason, welcomed),
      dead: (welcomed, limitMs) => this.onDead(welcomed, limitMs),
      request: (frame, what) => this.request(frame, what),
      reopen: (reason) => this.reopen(reason)
    };
    this.fallback = new Fallback(this.o, {
      tokens: this.tokens,
      welcomed: () => this.welcomed,
      transportKind: () => this.transportKind,
      eventsOf: (transport) => this.eventsOf(transport),
      promote: (p, token, frames) => this.promote(p, token, frames)
    });
  }
  /** Sets what the connection carries (before `start`). */
  carry(channels) {
    this.channels = channels;
  }
  /** Opens the first link. */
  start() {
    return this.open("starting");
  }
  /** The connection state. */
  get state() {
    return this.stateNow;
  }
  /** The transport in use (or about to be tried). */
  get transportKind() {
    return this.link?.transport.kind ?? this.fallback.kind;
  }
  /** `running`, or paused by the app, or stopped by the server, or closed by the app, or failed for good. */
  get mode() {
    return this.modeNow;
  }
  /** The WebSocket's frame encoding (`json` on SSE, long-poll, and before a WebSocket is open). */
  get encoding() {
    return this.link?.transport.encoding ?? "json";
  }
  /** The HTTP API with the client token. */
  get http() {
    return { fetch: this.o.env.fetch, baseUrl: this.o.baseUrl, tokens: this.tokens, timeoutMs: this.o.requestTimeoutMs };
  }
  /** The link's `welcome` came. */
  get welcomed() {
    return this.link?.welcomed ?? false;
  }
  /** The link is a WebSocket. */
  get onWebSocket() {
    return this.link?.transport.kind === "websocket";
  }
  /** A link is open, or SSE or long-poll waits for a channel to stream. */
  get active() {
    return this.link !== void 0 || this.idleStream;
  }
  // ---- the app's controls -------------------------------------------------------------------
  /** Closes and stays disconnected until `resume()`; see `HeraldClient.pause`. */
  pause(reason = "paused by the app") {
    if (this.modeNow !== "running") return;
    this.modeNow = "paused";
    this.teardown();
    this.setState("disconnected", reason);
  }
  /** Connects again after the server said not to reconnect, or after `pause()`. */
  connect() {
    if (this.modeNow !== "paused" && this.modeNow !== "stopped") return;
    this.modeNow = "running";
    this.backoff.reset();
    void this.open("connecting again");
  }
  /** Reconnects after `pause()`, or now while waiting out a backoff. */
  resume() {
    if (this.modeNow === "running" && this.timers.has("reconnect")) return void this.open("resuming");
    if (this.modeNow !== "paused") return;
    this.modeNow = "running";
    this.backoff.reset();
    void this.open("resuming");
  }
  /** Closes for good. */
  close() {
    if (this.modeNow === "closed") return;
    this.modeNow = "closed";
    this.teardown();
    this.setState("disconnected", "closed by the app");
  }
  /** Cuts the link as a network fault would, and reconnects at once. */
  dropConnection() {
    if (this.modeNow !== "running" || !this.active) return;
    this.teardown();
    this.reconnect("the connection was dropped", 0);
  }
  // ---- what the channels and the client use -------------------------------------------------
  /** Sends a frame on the link; false when none is open or it sends nothing (SSE, long-poll). */
  send(frame) {
    return this.link?.send(frame) ?? false;
  }
  /** A fresh request id. */
  nextId() {
    return this.requests.id();
  }
  /** Sends a request frame with a fresh id and waits for its reply. */
  request(frame, what) {
    const id = this.requests.id();
    if (!this.send({ ...frame, id })) return Promise.reject(new HeraldError("disconnected", `not connected: ${what} was not sent`));
    return this.requests.wait(id, what);
  }
  /** SSE and long-poll: opens the stream again (another channel set), if one is open or idle. */
  reopenStream(reason) {
    if (!this.onWebSocket && this.active) this.reopen(reason);
  }
  /** `connected` once every channel resumed after a reconnect is subscribed again; until then `recovering`. */
  settle(reason) {
    if (!this.welcomed) return;
    const replaying = this.channels.replaying;
    this.setState(replaying ? "recovering" : "connected", replaying ? "resuming channels from their cursors" : reason);
  }
  // ---- opening and ending links -------------------------------------------------------------
  async open(reason) {
    if (this.modeNow !== "running") return;
    this.teardown();
    const epoch = this.epoch;
    const kind = this.fallback.kind;
    this.setState(this.everWelcomed ? "recovering" : "connecting", `${reason}: opening ${kind}`);
    let token;
    try {
      token = await this.tokens.get();
    } catch (e) {
      if (epoch !== this.epoch) return;
      this.events.emit("error", new HeraldError("unauthorized", `the token function failed: ${message(e)}`));
      return this.reconnect("no token");
    }
    if (epoch !== this.epoch || this.modeNow !== "running") return;
    const { channels, cursors } = this.channels.streamRequest();
    if (kind !== "websocket" && channels.length === 0) {
      this.idleStream = true;
      this.setState("connected", `${kind}: nothing to stream until a channel is subscribed`);
      return;
    }
    const req = { baseUrl: this.o.baseUrl, token, channels, cursors };
    let t;
    const events = this.eventsOf(() => t);
    try {
      t = this.fallback.open(req, events);
    } catch (e) {
      this.fallback.failed();
      return this.reconnect(`${kind} could not be opened: ${message(e)}`);
    }
    this.link = new Link(this.host, t, token, this.heartbeatMs);
    this.link.watch();
  }
  /** Closes whatever is open and forgets the link (not the channels or cursors). */
  teardown() {
    this.epoch += 1;
    this.idleStream = false;
    this.timers.clear();
    const l = this.link;
    this.link = void 0;
    l?.close();
    this.fallback.cancel();
    this.requests.abandon();
    this.channels.disconnected();
  }
  /** SSE and long-poll: opens the stream again (another channel set, a new token). */
  reopen(reason) {
    this.teardown();
    void this.open(reason);
  }
  /** Schedules the next attempt, falling back to the next transport after repeated failures to open this one. */
  reconnect(reason, delayMs) {
    if (this.modeNow !== "running") return;
    const next = this.fallback.advance();
    const why = next === void 0 ? reason : `${reason}; trying ${next} next`;
    const delay = delayMs ?? this.backoff.next();
    this.setState("disconnected", why);
    this.timers.set("reconnect", delay, () => void this.open("reconnecting"));
  }
  /** The link's transport ended by itself. */
  onClosed(code, reason, welcomed) {
    this.teardown();
    if (this.modeNow !== "running") return;
    switch (code) {
      case 1008:
        return this.fail(`refused: ${reason}`);
      case 4001:
      case 4002: {
        const what = code === 4001 ? "the token was refused" : "the token expired";
        if (!this.tokens.renewable || this.refusals >= 1) return this.fail(what);
        this.refusals += 1;
        this.tokens.invalidate();
        return this.reconnect(`${what}: fetching a new one`, 0);
      }
      case 4008:
        return this.reconnect("fell behind (lagged): resuming", Math.min(this.backoff.next(), 1e3));
      // A close without the `disconnect` frame before it (which would have ended the link).
      case 4010:
        return this.onServerDisconnect("disconnected", reason, true);
      case 4011:
        return this.onServerDisconnect("revoked", reason, false);
      default:
        if (!welcomed && (code === void 0 || !SERVER_CLOSE_CODES.has(code))) this.fallback.failed();
        return this.reconnect(reason);
    }
  }
  /** Nothing was heard on the link in time. */
  onDead(welcomed, limitMs) {
    this.teardown();
    if (!welcomed) this.fallback.failed();
    this.reconnect(welcomed ? `nothing heard for ${limitMs} ms: the connection is dead` : `no welcome within ${limitMs} ms`);
  }
  /** The server asked to reconnect, maybe saying when. */
  onReconnectFrame(f) {
    const delay = this.backoff.hinted(Number(f.after_ms ?? 0));
    this.teardown();
    this.reconnect(`the server asked to reconnect in ${delay} ms (${f.reason ?? "no reason given"})`, delay);
  }
  /**
   * The server ended the connection on purpose. With `reconnect` (never after `revoked`) it
   * reconnects with the usual backoff; otherwise it stays `disconnected` until `connect()`, which
   * after `revoked` fetches a new token first.
   */
  onServerDisconnect(code, reason, reconnect) {
    this.teardown();
    if (this.modeNow !== "running") return;
    const why = `disconnected by the server (${code}${reason ? `: ${reason}` : ""})`;
    reconnect && (reconnect = code !== "revoked");
    if (reconnect) {
      this.reconnect(why);
    } else {
      if (code === "revoked") this.tokens.invalidate();
      this.modeNow = "stopped";
      this.setState("disconnected", `${why}; connect() to reconnect`);
    }
    this.events.emit("disconnected", { code, reason, reconnect });
  }
  fail(reason) {
    this.modeNow = "failed";
    this.teardown();
    this.setState("failed", reason);
  }
  /** The link's `welcome` came: it is connected (and, after a reconnect, recovering its channels). */
  onWelcome(f) {
    const link = this.link;
    if (!link) return;
    link.markWelcomed(f);
    this.heartbeatMs = link.heartbeatMs;
    this.fallback.welcomed();
    this.refusals = 0;
    this.timers.set("stable", this.o.stableAfterMs, () => this.backoff.reset());
    const replaying = this.everWelcomed;
    this.everWelcomed = true;
    const onWebSocket = link.transport.kind === "websocket";
    this.channels.welcomed(onWebSocket, replaying);
    if (!onWebSocket) {
      this.fallback.scheduleProbe();
      link.scheduleTokenRefresh(link.streamTokenExpiry(f));
    }
    this.settle(`connected over ${this.transportKind}`);
  }
  // ---- frames -------------------------------------------------------------------------------
  /** A transport's events, routed by which it is when they come: the link's, the probe, or a stale one (ignored). */
  eventsOf(transport) {
    return {
      frames: (frames) => {
        const t = transport();
        if (!t) return;
        if (this.fallback.isProbe(t)) return this.fallback.onProbeFrames(t, frames);
        if (t === this.link?.transport) this.link.onFrames(frames);
      },
      garbage: (d) => {
        if (transport() === this.link?.transport) this.events.emit("error", new HeraldError("bad_request", `the server sent ${d}`));
      },
      closed: (code, why) => {
        const t = transport();
        if (t && t === this.link?.transport) this.link.onClosed(code, why);
        else if (t && this.fallback.isProbe(t)) this.fallback.dropProbe(t);
      }
    };
  }
  /** The background WebSocket was welcomed: the connection moves to it. */
  promote(p, token, frames) {
    this.teardown();
    this.fallback.backToFirst();
    this.setState("recovering", "the WebSocket works again");
    this.link = new Link(this.host, p, token, this.heartbeatMs);
    this.link.onFrames(frames);
  }
  // ---- state --------------------------------------------------------------------------------
  setState(state, reason) {
    if (state === this.stateNow && this.announced) return;
    this.announced = true;
    this.stateNow = state;
    this.events.emit("state", { state, reason, transport: this.transportKind });
  }
};
function message(e) {
  return e instanceof Error ? e.message : String(e);
}

// src/devices.ts
function deviceFields(d, withApp) {
  if (d.platform !== "apns" && d.platform !== "fcm") throw new HeraldError("bad_request", `platform must be 'apns' or 'fcm', not ${String(d.platform)}`);
  if (typeof d.token !== "string" || d.token === "") throw new HeraldError("bad_request", "the device token is missing");
  const fields = { platform: d.platform, token: d.token };
  if (!withApp) return fields;
  if (typeof d.app !== "string" || d.app === "") throw new HeraldError("bad_request", "the app's bundle or project id is missing");
  return { ...fields, app: d.app };
}

// src/http.ts
async function callHttp(http, call, retryRefused = true) {
  const { what, channel } = call;
  const f = http.fetch;
  if (!f) throw new HeraldError("not_supported", `no fetch in this environment for ${what} over HTTP`, channel);
  const token = await http.tokens.get();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), http.timeoutMs);
  const headers = { authorization: "Bearer " + token };
  if (call.body !== void 0) headers["content-type"] = "application/json";
  let status;
  let text;
  try {
    const r = await f(http.baseUrl + call.path, { method: call.method, headers, body: call.body, signal: abort.signal, cache: "no-store" });
    status = r.status;
    text = await r.text();
  } catch (e) {
    if (abort.signal.aborted) throw new HeraldError("timeout", `no answer to ${what} within ${http.timeoutMs} ms`, channel);
    throw new HeraldError("disconnected", `${what} over HTTP failed: ${e instanceof Error ? e.message : String(e)}`, channel);
  } finally {
    clearTimeout(timer);
  }
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new HeraldError("unavailable", `${what} answered HTTP ${status} without JSON`, channel);
  }
  if (status === 401 && retryRefused && http.tokens.renewable) {
    http.tokens.invalidate();
    return callHttp(http, call, false);
  }
  if (status < 200 || status > 299 || typeof answer !== "object" || answer === null) throw new HeraldError(answer?.error?.code ?? "internal", answer?.error?.message ?? `HTTP ${status}`, channel);
  return answer;
}

// src/history.ts
function query(channel, opts) {
  if (!validChannel(channel)) throw new HeraldError("invalid_channel", `"${channel}" is not a channel name`, channel);
  const { limit, since, before, sinceMs } = opts;
  if (limit !== void 0 && !(Number.isInteger(limit) && limit >= 1 && limit <= 1e3)) throw new HeraldError("bad_request", `limit must be an integer from 1 to 1000, not ${limit}`, channel);
  if ([since, before, sinceMs].filter((x) => x !== void 0).length > 1) throw new HeraldError("bad_request", "give at most one of since, before and sinceMs", channel);
  if (sinceMs !== void 0 && !(Number.isInteger(sinceMs) && sinceMs >= 0)) throw new HeraldError("bad_request", `sinceMs must be a time in ms, not ${sinceMs}`, channel);
  const q = new URLSearchParams({ channel });
  if (limit !== void 0) q.set("limit", String(limit));
  if (since !== void 0) q.set("since", since);
  if (before !== void 0) q.set("before", before);
  if (sinceMs !== void 0) q.set("since_ms", String(sinceMs));
  return q;
}
async function fetchHistory(http, channel, opts = {}) {
  const q = query(channel, opts);
  const a = await callHttp(http, { method: "GET", path: `/v1/history?${q.toString()}`, what: `history of ${channel}`, channel });
  const frames = Array.isArray(a.messages) ? a.messages : [];
  const messages = frames.map((f) => ({ channel, id: String(f.id), cursor: String(f.cursor), ts: Number(f.ts ?? 0), data: f.data }));
  const cursor = String(a.cursor);
  const before = typeof a.before === "string" ? a.before : void 0;
  const more = a.more === true;
  const forward = opts.since !== void 0 || opts.sinceMs !== void 0;
  const limit = opts.limit !== void 0 ? { limit: opts.limit } : {};
  const next = !more ? void 0 : forward ? { ...limit, since: cursor } : before !== void 0 ? { ...limit, before } : void 0;
  return { channel, messages, cursor, before, more, complete: a.complete !== false, next };
}
async function* historyPages(http, channel, opts = {}) {
  let next = opts;
  while (next) {
    const page = await fetchHistory(http, channel, next);
    yield page;
    next = page.next;
  }
}

// src/publish.ts
async function publishOverHttp(http, body, channel) {
  const answer = await callHttp(http, { method: "POST", path: "/v1/publish", body, what: `publish on ${channel}`, channel });
  return { cursor: String(answer.cursor), messageId: String(answer.message_id), duplicate: answer.duplicate === true };
}

// src/client.ts
var HeraldClient = class {
  constructor(opts) {
    this.events = new Emitter();
    this.connection = new Connection(opts, this.events);
    this.channels = new ChannelTable(this.connection, this.events, opts.dedupeWindow ?? 1e3);
    this.connection.carry(this.channels);
    void Promise.resolve().then(() => this.connection.start());
  }
  /** The connection state. */
  get state() {
    return this.connection.state;
  }
  /** The transport in use (or about to be tried). */
  get transportKind() {
    return this.connection.transportKind;
  }
  /** The WebSocket's frame encoding on this connection: `proto` once the server accepted it, else `json`. */
  get encoding() {
    return this.connection.encoding;
  }
  /** Listens for an event; returns a function that stops listening. */
  on(event, listener) {
    return this.events.on(event, listener);
  }
  /**
   * Subscribes `handler` to `channel`. Each record reaches it once, in publish order, across
   * reconnects and transport changes. One handler per channel.
   */
  subscribe(channel, handler, opts = {}) {
    return this.channels.subscribe(channel, handler, opts);
  }
  /**
   * Publishes `data` on `channel`: over the WebSocket when connected on one, else over
   * `POST /v1/publish` with the client token. Not retried by itself: a publish that failed with
   * `disconnected` or `timeout` may or may not have been written; retry with the same
   * `idempotencyKey` to be sure of one record.
   */
  async publish(channel, data, opts = {}) {
    const c = this.connection;
    if (!validChannel(channel)) throw new HeraldError("invalid_channel", `"${channel}" is not a channel name`, channel);
    if (c.mode === "closed" || c.mode === "failed" || c.mode === "stopped") throw new HeraldError("disconnected", `the client is ${c.mode}`, channel);
    const key = opts.idempotencyKey !== void 0 ? { idempotency_key: opts.idempotencyKey } : {};
    if (c.onWebSocket && c.welcomed) {
      const f = await c.request({ type: "publish", channel, data, ...key }, `publish on ${channel}`);
      return { cursor: String(f.cursor), messageId: String(f.message_id), duplicate: f.duplicate === true };
    }
    return publishOverHttp(c.http, JSON.stringify({ channel, data, ...key }), channel);
  }
  /**
   * A page of `channel`'s history over `GET /v1/history` with the client token: the newest
   * `limit` records, or those `before` a page, or `since` a cursor or `sinceMs` a time; oldest
   * first. `page.next` asks for the next page; subscribing with `since: page.cursor` after the
   * newest page continues live with nothing missed or repeated.
   */
  history(channel, opts = {}) {
    return fetchHistory(this.connection.http, channel, opts);
  }
  /** Every page of `channel`'s history from `opts` on: backward from the newest (or `before`), forward from `since`/`sinceMs`. */
  historyPages(channel, opts = {}) {
    return historyPages(this.connection.http, channel, opts);
  }
  /**
   * Registers this device for push notifications to its user (docs/push.md): over the WebSocket
   * when connected on one, else over `POST /v1/devices`. Register again on every app start.
   */
  async registerDevice(device) {
    return this.device({ type: "register_device", ...deviceFields(device, true) }, "POST", "register the device");
  }
  /** Removes this device's registration: over the WebSocket when connected on one, else over `DELETE /v1/devices`. */
  async unregisterDevice(device) {
    return this.device({ type: "unregister_device", ...deviceFields(device, false) }, "DELETE", "unregister the device");
  }
  async device(frame, method, what) {
    const c = this.connection;
    if (c.onWebSocket && c.welcomed) {
      try {
        const f = await c.request(frame, what);
        return { registered: f.registered === true };
      } catch (e) {
        if (!(e instanceof HeraldError) || e.code !== "unknown_type") throw e;
      }
    }
    const { type: _type, ...body } = frame;
    await callHttp(c.http, { method, path: "/v1/devices", body: JSON.stringify(body), what });
    return { registered: method === "POST" };
  }
  /** Who is on `channel` now. Needs the WebSocket: on SSE or long-poll it rejects with `not_supported`. */
  async presence(channel) {
    const c = this.connection;
    if (!c.onWebSocket || !c.welcomed) {
      if (c.active) throw new HeraldError("not_supported", `presence needs the WebSocket transport; the client is on ${c.transportKind} (WebSockets are blocked here)`, channel);
      throw new HeraldError("disconnected", "not connected", channel);
    }
    const f = await c.request({ type: "presence", channel }, `presence of ${channel}`);
    return { channel, occupancy: Number(f.occupancy ?? 0), members: f.members ?? [] };
  }
  /**
   * Closes the connection and stays disconnected (the app went to the background, or offline),
   * keeping every channel and its cursor; `resume()` reconnects and continues each channel exactly.
   */
  pause(reason = "paused by the app") {
    this.connection.pause(reason);
  }
  /**
   * Reconnects after `pause()` (foreground, back online) and resumes every channel from its
   * cursor. While waiting to reconnect after a cut, it reconnects now instead of after the backoff.
   */
  resume() {
    this.connection.resume();
  }
  /**
   * Connects again after the server ended the connection and said not to reconnect (the
   * `disconnected` event; after `revoked` with a new token from the token function), or after
   * `pause()`. Every channel resumes from its cursor.
   */
  connect() {
    this.connection.connect();
  }
  /** Closes for good. */
  close() {
    this.connection.close();
  }
  /** Cuts the connection as a network fault would, and reconnects at once (tests, "retry now" buttons). */
  dropConnection() {
    this.connection.dropConnection();
  }
};

// src/personal.ts
var PLAIN = /^[A-Za-z0-9_\-:.@,]$/;
function personalChannel(user) {
  if (typeof user !== "string" || user === "") throw new HeraldError("invalid_channel", "the user id is empty");
  let name = "@";
  for (const b of new TextEncoder().encode(user)) {
    const c = String.fromCharCode(b);
    name += PLAIN.test(c) && !(c === "." && name.endsWith(".")) ? c : `=${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  if (name.length > 128) throw new HeraldError("invalid_channel", `the personal channel of this user id would be longer than 128 characters`);
  return name;
}

// src/lifecycle.ts
function attachBrowserLifecycle(client, opts = {}) {
  const w = globalThis;
  const doc = w.document;
  let hiddenTimer;
  let offline = w.navigator?.onLine === false;
  let hidden = false;
  let gone = false;
  const update = () => {
    if (gone) client.pause("the page was hidden (pagehide)");
    else if (offline) client.pause("offline");
    else if (hidden && opts.background !== "keep") client.pause("in the background");
    else client.resume();
  };
  const onVisibility = () => {
    if (hiddenTimer) clearTimeout(hiddenTimer);
    hiddenTimer = void 0;
    if (doc?.visibilityState === "hidden") {
      hiddenTimer = setTimeout(() => {
        hidden = true;
        update();
      }, opts.backgroundDelayMs ?? 1e4);
    } else {
      hidden = false;
      update();
    }
  };
  const onOnline = () => {
    offline = false;
    update();
  };
  const onOffline = () => {
    offline = true;
    update();
  };
  const onPageHide = () => {
    gone = true;
    update();
  };
  const onPageShow = () => {
    gone = false;
    update();
  };
  doc?.addEventListener("visibilitychange", onVisibility);
  w.addEventListener?.("online", onOnline);
  w.addEventListener?.("offline", onOffline);
  w.addEventListener?.("pagehide", onPageHide);
  w.addEventListener?.("pageshow", onPageShow);
  if (offline) update();
  return () => {
    if (hiddenTimer) clearTimeout(hiddenTimer);
    doc?.removeEventListener("visibilitychange", onVisibility);
    w.removeEventListener?.("online", onOnline);
    w.removeEventListener?.("offline", onOffline);
    w.removeEventListener?.("pagehide", onPageHide);
    w.removeEventListener?.("pageshow", onPageShow);
  };
}
export {
  Backoff,
  ChannelTable,
  CompactReader,
  Connection,
  CursorStore,
  Dedupe,
  HeraldClient,
  HeraldError,
  attachBrowserLifecycle,
  encodeCompact,
  parseFrames,
  personalChannel
};
