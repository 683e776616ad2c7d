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
    return kind === "websocket" ? openWebSocket(this.o.env, req, events, this.o.tokenInQuery) : kind === "sse" ? openSse(this.o.env, req, events) : openPoll(this.o.env, req, events, this.o.pollTimeoutMs);
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
      p = openWebSocket(this.o.env, { baseUrl: this.o.baseUrl, token, channels: [], cursors: [] }, events, this.o.tokenInQuery);
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
    tokenInQuery: opts.tokenInQuery ?? false
  };
}

// src/publish.ts
async function publishOverHttp(http, body, channel, retryRefused = true) {
  const f = http.fetch;
  if (!f) throw new HeraldError("not_supported", "not connected over a WebSocket, and no fetch to publish over HTTP", channel);
  const token = await http.tokens.get();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), http.timeoutMs);
  let status;
  let text;
  try {
    const r = await f(http.baseUrl + "/v1/publish", { method: "POST", headers: { authorization: "Bearer " + token, "content-type": "application/json" }, body, signal: abort.signal });
    status = r.status;
    text = await r.text();
  } catch (e) {
    if (abort.signal.aborted) throw new HeraldError("timeout", `no answer to publish on ${channel} within ${http.timeoutMs} ms`, channel);
    throw new HeraldError("disconnected", `publish on ${channel} over HTTP failed: ${e instanceof Error ? e.message : String(e)}`, channel);
  } finally {
    clearTimeout(timer);
  }
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new HeraldError("unavailable", `publish on ${channel} answered HTTP ${status} without JSON`, channel);
  }
  if (status === 401 && retryRefused && http.tokens.renewable) {
    http.tokens.invalidate();
    return publishOverHttp(http, body, channel, false);
  }
  if (status !== 200) throw new HeraldError(answer.error?.code ?? "internal", answer.error?.message ?? `HTTP ${status}`, channel);
  return { cursor: String(answer.cursor), messageId: String(answer.message_id), duplicate: answer.duplicate === true };
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
  /** `running`, or paused by the app, or closed by it, or failed for good. */
  get mode() {
    return this.modeNow;
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
  /** `POST /v1/publish` with the client token (SSE, long-poll, or between links). */
  publishOverHttp(body, channel) {
    return publishOverHttp({ fetch: this.o.env.fetch, baseUrl: this.o.baseUrl, tokens: this.tokens, timeoutMs: this.o.requestTimeoutMs }, body, channel);
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
