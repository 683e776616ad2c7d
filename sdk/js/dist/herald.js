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
  constructor(link, events, dedupeWindow = 1e3) {
    this.link = link;
    this.events = events;
    this.dedupeWindow = dedupeWindow;
    this.cursors = new CursorStore();
    this.channels = /* @__PURE__ */ new Map();
  }
  /** Adds `channel`; see `HeraldClient.subscribe`. */
  subscribe(channel, handler, opts = {}) {
    if (!validChannel(channel)) throw new HeraldError("invalid_channel", `"${channel}" is not a channel name (1 to 128 of A-Z a-z 0-9 _ - : . @ = ,)`, channel);
    if (this.channels.has(channel)) throw new HeraldError("already_subscribed", `already subscribed to ${channel}`, channel);
    const mode = this.link.mode;
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
    this.link.settle("connected");
  }
  /**
   * A channel was added, removed, paused or resumed. On the WebSocket, its frames say so; SSE and
   * long-poll carry a fixed channel set, so the stream reopens with the cursors. With nothing open
   * yet, the next connection takes the change into account by itself.
   */
  channelChanged(ch) {
    if (this.link.onWebSocket) {
      if (this.link.welcomed) this.syncWire(ch);
    } else {
      this.link.reopenStream("the channels changed");
    }
  }
  /** Brings the server's view of `ch` on the WebSocket in line with the app's. */
  syncWire(ch) {
    const wanted = this.channels.get(ch.name) === ch;
    if (!wanted) {
      if (ch.wire !== "none") this.link.send({ type: "unsubscribe", id: this.link.nextId(), channel: ch.name });
      ch.wire = "none";
    } else if (ch.paused) {
      if (ch.wire === "subscribing" || ch.wire === "live") {
        this.link.send({ type: "pause", id: this.link.nextId(), channel: ch.name });
        ch.wire = "pausing";
      }
    } else if (ch.wire === "pausing" || ch.wire === "paused") {
      ch.wire = "subscribing";
      ch.since = true;
      this.track(ch, this.link.request({ type: "resume", channel: ch.name }, `resume of ${ch.name}`));
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
    this.track(ch, this.link.request(frame, `subscribe to ${ch.name}`));
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
      this.link.settle("connected");
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
    this.link.settle("every channel resumed");
  }
  onMessage(f) {
    const ch = this.channelOf(f);
    if (!ch || ch.stale) return;
    if (typeof f.id !== "string" || typeof f.cursor !== "string") {
      this.events.emit("error", new HeraldError("bad_request", "the server sent a message without a string id and cursor", ch.name));
      return;
    }
    if (!this.link.onWebSocket) {
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
    this.link.settle("connected");
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
  const g = globalThis;
  return {
    WebSocket: g.WebSocket,
    EventSource: g.EventSource,
    fetch: typeof g.fetch === "function" ? g.fetch.bind(globalThis) : void 0
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

// src/websocket.ts
var SUBPROTOCOL = "herald.v1.json";
function openWebSocket(env, req, ev, tokenInQuery = false) {
  const Ctor = env.WebSocket;
  if (!Ctor) throw new Error("no WebSocket in this environment");
  let url = req.baseUrl.replace(/^http/, "ws") + "/v1/ws";
  if (tokenInQuery) url += "?token=" + encodeURIComponent(req.token);
  const ws = new Ctor(url, SUBPROTOCOL);
  let done = false;
  const detach = () => {
    done = true;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  };
  ws.onopen = () => {
    if (!tokenInQuery) ws.send(encodeFrame({ type: "auth", token: req.token }));
  };
  ws.onmessage = (m) => {
    if (typeof m.data !== "string") return ev.garbage("a binary message");
    const parsed = parseFrames(m.data);
    for (const e of parsed.errors) ev.garbage(e);
    if (parsed.frames.length > 0) ev.frames(parsed.frames);
  };
  ws.onerror = () => void 0;
  ws.onclose = (c) => {
    detach();
    ev.closed(c.code, c.reason || `closed (${c.code})`);
  };
  return {
    kind: "websocket",
    send(frame) {
      if (done || ws.readyState !== 1) return false;
      ws.send(encodeFrame(frame));
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

// src/connection.ts
var NO_CHANNELS = {
  streamRequest: () => ({ channels: [], cursors: [] }),
  welcomed: () => void 0,
  disconnected: () => void 0,
  onFrame: () => false,
  replaying: false
};
var SERVER_CLOSE_CODES = /* @__PURE__ */ new Set([1001, 1008, 1009, 4001, 4002, 4008, 4029]);
var Connection = class {
  constructor(opts, events) {
    this.events = events;
    this.timers = /* @__PURE__ */ new Map();
    this.channels = NO_CHANNELS;
    this.modeNow = "running";
    this.stateNow = "connecting";
    this.announced = false;
    this.kindIndex = 0;
    /** On SSE or long-poll with no channel to stream: nothing is open, and a subscribe opens it. */
    this.idleStream = false;
    /** The token the current transport was opened with. */
    this.token = "";
    this.welcomedNow = false;
    this.everWelcomed = false;
    /** Bumped by every teardown: async work of an older connection stops when it sees a newer one. */
    this.epoch = 0;
    /** Consecutive failures to open the current transport (toward the fallback). */
    this.failures = 0;
    /** Token refusals (4001/4002) since the last `welcome`. */
    this.refusals = 0;
    this.heartbeatMs = 25e3;
    this.lastHeard = 0;
    this.baseUrl = opts.url.replace(/^ws/, "http").replace(/\/+$/, "");
    if (!/^https?:\/\/[^/]/.test(this.baseUrl)) throw new TypeError(`url must be http(s):// or ws(s)://, not ${opts.url}`);
    this.env = opts.environment ?? defaultEnvironment();
    this.kinds = (opts.transports ?? ["websocket", "sse", "poll"]).filter((k) => (k === "websocket" ? this.env.WebSocket : k === "sse" ? this.env.EventSource : this.env.fetch) !== void 0);
    if (this.kinds.length === 0) throw new TypeError("none of the transports is available in this environment");
    this.backoff = new Backoff(opts.backoff);
    this.tokens = new TokenSource(opts.token);
    this.o = {
      stableAfterMs: opts.stableAfterMs ?? 1e4,
      fallbackAfter: opts.fallbackAfter ?? 2,
      upgradeEveryMs: opts.upgradeEveryMs ?? 6e4,
      connectTimeoutMs: opts.connectTimeoutMs ?? 15e3,
      requestTimeoutMs: opts.requestTimeoutMs ?? 1e4,
      pollTimeoutMs: Math.min(opts.pollTimeoutMs ?? 25e3, 6e4),
      tokenInQuery: opts.tokenInQuery ?? false
    };
    this.requests = new Requests(this.o.requestTimeoutMs);
  }
  /** Sets what the connection carries (before `start`). */
  carry(channels) {
    this.channels = channels;
  }
  /** Opens the first connection. */
  start() {
    return this.open("starting");
  }
  /** The connection state. */
  get state() {
    return this.stateNow;
  }
  /** The transport in use (or about to be tried). */
  get transportKind() {
    return this.transport?.kind ?? this.kinds[this.kindIndex];
  }
  /** `running`, or paused by the app, or closed by it, or failed for good. */
  get mode() {
    return this.modeNow;
  }
  /** The transport's `welcome` came. */
  get welcomed() {
    return this.welcomedNow;
  }
  /** The transport is a WebSocket. */
  get onWebSocket() {
    return this.transport?.kind === "websocket";
  }
  /** A transport is open, or SSE or long-poll waits for a channel to stream. */
  get active() {
    return this.transport !== void 0 || this.idleStream;
  }
  // ---- the app's controls -------------------------------------------------------------------
  /** Closes and stays disconnected until `resume()`; see `HeraldClient.pause`. */
  pause(reason = "paused by the app") {
    if (this.modeNow !== "running") return;
    this.modeNow = "paused";
    this.teardown();
    this.setState("disconnected", reason);
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
  /** Cuts the connection as a network fault would, and reconnects at once. */
  dropConnection() {
    if (this.modeNow !== "running" || !this.active) return;
    this.teardown();
    this.reconnect("the connection was dropped", 0);
  }
  // ---- what the channels and the client use -------------------------------------------------
  /** Sends a frame on the transport; false when none is open or it sends nothing (SSE, long-poll). */
  send(frame) {
    return this.transport?.send(frame) ?? false;
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
    if (this.transport?.kind !== "websocket" && this.active) this.reopen(reason);
  }
  /** `connected` once every channel resumed after a reconnect is subscribed again; until then `recovering`. */
  settle(reason) {
    if (!this.welcomedNow) return;
    const replaying = this.channels.replaying;
    this.setState(replaying ? "recovering" : "connected", replaying ? "resuming channels from their cursors" : reason);
  }
  /** `POST /v1/publish` with the client token (SSE, long-poll, or between connections); a refused token is renewed once. */
  async publishOverHttp(body, channel, retryRefused = true) {
    const f = this.env.fetch;
    if (!f) throw new HeraldError("not_supported", "not connected over a WebSocket, and no fetch to publish over HTTP", channel);
    const token = await this.tokens.get();
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.o.requestTimeoutMs);
    let status;
    let text;
    try {
      const r = await f(this.baseUrl + "/v1/publish", { method: "POST", headers: { authorization: "Bearer " + token, "content-type": "application/json" }, body, signal: abort.signal });
      status = r.status;
      text = await r.text();
    } catch (e) {
      if (abort.signal.aborted) throw new HeraldError("timeout", `no answer to publish on ${channel} within ${this.o.requestTimeoutMs} ms`, channel);
      throw new HeraldError("disconnected", `publish on ${channel} over HTTP failed: ${message(e)}`, channel);
    } finally {
      clearTimeout(timer);
    }
    let answer;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new HeraldError("unavailable", `publish on ${channel} answered HTTP ${status} without JSON`, channel);
    }
    if (status === 401 && retryRefused && this.tokens.renewable) {
      this.tokens.invalidate();
      return this.publishOverHttp(body, channel, false);
    }
    if (status !== 200) throw new HeraldError(answer.error?.code ?? "internal", answer.error?.message ?? `HTTP ${status}`, channel);
    return { cursor: String(answer.cursor), messageId: String(answer.message_id), duplicate: answer.duplicate === true };
  }
  // ---- connecting ---------------------------------------------------------------------------
  async open(reason) {
    if (this.modeNow !== "running") return;
    this.teardown();
    const epoch = this.epoch;
    const kind = this.kinds[this.kindIndex];
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
    this.token = token;
    const { channels, cursors } = this.channels.streamRequest();
    if (kind !== "websocket" && channels.length === 0) {
      this.idleStream = true;
      this.setState("connected", `${kind}: nothing to stream until a channel is subscribed`);
      return;
    }
    const req = { baseUrl: this.baseUrl, token, channels, cursors };
    let t;
    const events = this.eventsOf(() => t);
    try {
      t = kind === "websocket" ? openWebSocket(this.env, req, events, this.o.tokenInQuery) : kind === "sse" ? openSse(this.env, req, events) : openPoll(this.env, req, events, this.o.pollTimeoutMs);
    } catch (e) {
      this.failures += 1;
      return this.reconnect(`${kind} could not be opened: ${message(e)}`);
    }
    this.transport = t;
    this.lastHeard = Date.now();
    this.watch();
  }
  /** Closes whatever is open and forgets the connection's state (not the channels or cursors). */
  teardown() {
    this.epoch += 1;
    this.welcomedNow = false;
    this.idleStream = false;
    this.closeHint = void 0;
    for (const t2 of this.timers.values()) clearTimeout(t2);
    this.timers.clear();
    const t = this.transport;
    const p = this.probe;
    this.transport = this.probe = void 0;
    t?.close();
    p?.close();
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
    let why = reason;
    if (this.failures >= this.o.fallbackAfter && this.kinds.length > 1) {
      this.kindIndex = (this.kindIndex + 1) % this.kinds.length;
      this.failures = 0;
      why += `; trying ${this.kinds[this.kindIndex]} next`;
    }
    const delay = delayMs ?? this.backoff.next();
    this.setState("disconnected", why);
    this.timer("reconnect", delay, () => void this.open("reconnecting"));
  }
  onClosed(code, reason) {
    const welcomed = this.welcomedNow;
    const effective = code ?? this.closeHint;
    this.teardown();
    if (this.modeNow !== "running") return;
    switch (effective) {
      case 1008:
        return this.fail(`refused: ${reason}`);
      case 4001:
      case 4002: {
        const what = effective === 4001 ? "the token was refused" : "the token expired";
        if (!this.tokens.renewable || this.refusals >= 1) return this.fail(what);
        this.refusals += 1;
        this.tokens.invalidate();
        return this.reconnect(`${what}: fetching a new one`, 0);
      }
      case 4008:
        return this.reconnect("fell behind (lagged): resuming", Math.min(this.backoff.next(), 1e3));
      default:
        if (!welcomed && (effective === void 0 || !SERVER_CLOSE_CODES.has(effective))) this.failures += 1;
        return this.reconnect(reason);
    }
  }
  fail(reason) {
    this.modeNow = "failed";
    this.teardown();
    this.setState("failed", reason);
  }
  /** Declares the connection dead when nothing was heard for two heartbeats (or no `welcome` came in time). */
  watch() {
    const limit = this.welcomedNow ? 2 * this.heartbeatMs : this.o.connectTimeoutMs;
    const idle = Date.now() - this.lastHeard;
    if (idle < limit) return this.timer("watchdog", limit - idle, () => this.watch());
    const welcomed = this.welcomedNow;
    this.teardown();
    if (!welcomed) this.failures += 1;
    this.reconnect(welcomed ? `nothing heard for ${limit} ms: the connection is dead` : `no welcome within ${limit} ms`);
  }
  timer(name, ms, f) {
    const old = this.timers.get(name);
    if (old) clearTimeout(old);
    this.timers.set(
      name,
      setTimeout(() => {
        this.timers.delete(name);
        f();
      }, ms)
    );
  }
  // ---- back to the WebSocket ----------------------------------------------------------------
  /** On a fallback, tries the WebSocket again now and then, in the background. */
  scheduleUpgrade() {
    if (this.kinds[0] !== "websocket" || this.transportKind === "websocket") return;
    this.timer("upgrade", this.o.upgradeEveryMs, () => void this.startProbe());
  }
  async startProbe() {
    const epoch = this.epoch;
    let token;
    try {
      token = await this.tokens.get();
    } catch {
      return this.scheduleUpgrade();
    }
    if (epoch !== this.epoch || !this.welcomedNow) return;
    let p;
    const events = this.eventsOf(() => p);
    try {
      p = openWebSocket(this.env, { baseUrl: this.baseUrl, token, channels: [], cursors: [] }, events, this.o.tokenInQuery);
    } catch {
      return this.scheduleUpgrade();
    }
    const probe = p;
    this.probe = probe;
    this.timer("probe", this.o.connectTimeoutMs, () => this.dropProbe(probe));
  }
  dropProbe(p) {
    if (this.probe !== p) return;
    this.probe = void 0;
    p.close();
    this.scheduleUpgrade();
  }
  /** The probe's first frames: a `welcome` moves the client to it; anything else (an error) ends it. */
  onProbeFrames(p, frames) {
    if (frames[0]?.type !== "welcome") return this.dropProbe(p);
    this.probe = void 0;
    this.teardown();
    this.kindIndex = 0;
    this.failures = 0;
    this.setState("recovering", "the WebSocket works again");
    this.transport = p;
    this.onFrames(p, frames);
  }
  // ---- frames -------------------------------------------------------------------------------
  /** A transport's events, routed by which it is when they come: the connection, the probe, or a stale one (ignored). */
  eventsOf(transport) {
    return {
      frames: (frames) => {
        const t = transport();
        if (t) this.onFrames(t, frames);
      },
      garbage: (d) => {
        if (transport() === this.transport) this.events.emit("error", new HeraldError("bad_request", `the server sent ${d}`));
      },
      closed: (code, why) => {
        const t = transport();
        if (t && t === this.transport) this.onClosed(code, why);
        else if (t && t === this.probe) this.dropProbe(t);
      }
    };
  }
  onFrames(t, frames) {
    if (t === this.probe) return this.onProbeFrames(t, frames);
    if (t !== this.transport) return;
    this.lastHeard = Date.now();
    for (const f of frames) {
      this.onFrame(f);
      if (t !== this.transport) return;
    }
  }
  onFrame(f) {
    switch (f.type) {
      case "welcome":
        return this.onWelcome(f);
      case "ping":
        this.send({ type: "pong" });
        return;
      case "token_expiring":
        void this.refreshToken(Number(f.expires_at ?? 0));
        return;
      case "reconnect": {
        const delay = this.backoff.hinted(Number(f.after_ms ?? 0));
        this.teardown();
        return this.reconnect(`the server asked to reconnect in ${delay} ms (${f.reason ?? "no reason given"})`, delay);
      }
      case "error":
        return this.onError(f);
      default:
        if (!this.channels.onFrame(f)) this.requests.settle(f);
    }
  }
  onWelcome(f) {
    if (this.welcomedNow) return;
    this.welcomedNow = true;
    this.failures = 0;
    this.refusals = 0;
    if (typeof f.heartbeat_ms === "number" && f.heartbeat_ms > 0) this.heartbeatMs = f.heartbeat_ms;
    this.watch();
    this.timer("stable", this.o.stableAfterMs, () => this.backoff.reset());
    const replaying = this.everWelcomed;
    this.everWelcomed = true;
    const onWebSocket = this.transport?.kind === "websocket";
    this.channels.welcomed(onWebSocket, replaying);
    if (!onWebSocket) {
      this.scheduleUpgrade();
      this.scheduleTokenRefresh(f.expires_at ?? jwtExpiry(this.token));
    }
    this.settle(`connected over ${this.transportKind}`);
  }
  onError(f) {
    if (this.requests.settle(f)) return;
    if (f.id === void 0) this.closeHint = closeCodeOf(f.code) ?? this.closeHint;
    this.events.emit("error", new HeraldError(f.code ?? "internal", f.message ?? "the server reported an error", f.channel));
  }
  // ---- tokens -------------------------------------------------------------------------------
  /** SSE and long-poll: refresh the token ahead of `expiresAt` as the server would warn (a minute, or half a short token's life). */
  scheduleTokenRefresh(expiresAt) {
    if (expiresAt === void 0) return;
    const remaining = expiresAt * 1e3 - Date.now();
    const lead = Math.min(Math.max(remaining, 0), 12e4) / 2;
    this.timer("token", Math.max(0, remaining - lead), () => void this.refreshToken(expiresAt));
  }
  /** The token expires soon: fetch a new one and hand it to the connection. */
  async refreshToken(expiresAt) {
    this.events.emit("token_expiring", { expiresAt });
    if (!this.tokens.renewable) return;
    const epoch = this.epoch;
    let token;
    try {
      token = await this.tokens.refresh();
    } catch (e) {
      this.events.emit("error", new HeraldError("unauthorized", `the token function failed: ${message(e)}`));
      return;
    }
    const t = this.transport;
    if (epoch !== this.epoch || !t) return;
    this.token = token;
    if (t.kind === "websocket") {
      try {
        await this.request({ type: "refresh", token }, "refresh");
      } catch (e) {
        if (e instanceof HeraldError && e.code !== "disconnected") this.events.emit("error", e);
      }
    } else if (t.setToken) {
      t.setToken(token);
      this.scheduleTokenRefresh(jwtExpiry(token));
    } else {
      this.reopen("reopening the stream with a new token");
    }
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
    if (c.mode === "closed" || c.mode === "failed") throw new HeraldError("disconnected", `the client is ${c.mode}`, channel);
    const key = opts.idempotencyKey !== void 0 ? { idempotency_key: opts.idempotencyKey } : {};
    if (c.onWebSocket && c.welcomed) {
      const f = await c.request({ type: "publish", channel, data, ...key }, `publish on ${channel}`);
      return { cursor: String(f.cursor), messageId: String(f.message_id), duplicate: f.duplicate === true };
    }
    return c.publishOverHttp(JSON.stringify({ channel, data, ...key }), channel);
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
  /** Closes for good. */
  close() {
    this.connection.close();
  }
  /** Cuts the connection as a network fault would, and reconnects at once (tests, "retry now" buttons). */
  dropConnection() {
    this.connection.dropConnection();
  }
};

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
  Connection,
  CursorStore,
  Dedupe,
  HeraldClient,
  HeraldError,
  attachBrowserLifecycle,
  parseFrames
};
