/**
 * framecast client: live results from a framecast gateway, for web pages and Node.
 *
 * One ES module, no build step. Every gateway serves this very file at
 * `/client.js` (the viewer imports it from there); the npm package
 * `@framecast/client` ships it for bundlers and Node. It uses the global
 * `WebSocket` where there is one (browsers, Node >= 22) and the `ws` package
 * otherwise (Node 18/20, loaded only then). It connects to a gateway's
 * multiplexed `/ws` endpoint and keeps the subscription alive:
 *
 * - reconnects with capped exponential backoff and jitter when the connection
 *   drops or the gateway goes away (close 1001; behind a load balancer the
 *   next connection lands on another gateway);
 * - resumes: every (re)subscription sends `since`/`epoch` of the last result
 *   seen, so the gateway replays what was missed within its history window
 *   (or sends `reset` when it cannot); a `gap` triggers the same;
 * - de-duplicates results, previews and video frames by (epoch, seq);
 * - delivers events (zone enter/leave, line crossings) once each, resumed from
 *   their own position (`event_since`), so a counter misses none;
 * - lets each subscription choose `kinds` (e.g. events and status only) and a
 *   `maxRate` of results per second (the newest each time);
 * - decodes binary preview frames (`FCP1` + header length + JSON + JPEG) and video frames
 *   (`FCV1`, see {@link decodeVideo}).
 *
 * Usage:
 *
 *     import { subscribe } from "/client.js";   // or "@framecast/client"
 *
 *     const sub = subscribe(["cam1"], {
 *       token: new URLSearchParams(location.search).get("token"),
 *       previews: true,
 *       onMessage(msg) {
 *         if (msg.type === "result") console.log(msg.seq, msg.detections, msg.occupancy);
 *         if (msg.type === "event") console.log(msg.kind, msg.zone ?? msg.line, msg.track);
 *         if (msg.type === "preview") img.src = URL.createObjectURL(msg.jpeg);
 *       },
 *       onState(s) { console.log(s.state, s.reason ?? "", s.gateway ?? ""); },
 *     });
 *     // later: sub.close();
 *
 * Messages are the gateway's JSON objects as received (see docs/protocol.md),
 * except previews, which arrive as `{type: "preview", stream, epoch, seq,
 * frame, captured_at, width, height, jpeg: Blob}`, and video frames (with
 * `video: true`), which arrive as {@link decodeVideo} returns them.
 *
 * @module framecast/client
 */

/** The gateway is shutting down: reconnect at once, another gateway will answer. */
export const CLOSE_GOING_AWAY = 1001;
/** The gateway rejected repeated malformed requests, or a policy (token) no longer holds. */
export const CLOSE_POLICY = 1008;
/** The gateway lost Redis (or stayed unready): reconnect at once, another gateway will answer. */
export const CLOSE_TRY_AGAIN_LATER = 1013;
/** The client did not read fast enough. */
export const CLOSE_SLOW_CONSUMER = 4008;

// Per-stream errors after which the gateway will never serve the stream: do not ask again.
const REFUSALS = new Set(["bad-stream", "forbidden", "too-many-streams"]);
/** The kinds of stream message a subscription can choose (`kinds`). */
export const KINDS = Object.freeze(["result", "event", "status"]);
/** The largest `maxRate` (results per second). */
export const MAX_RATE = 1000;
const PREVIEW_MAGIC = "FCP1";
const VIDEO_MAGIC = "FCV1";
const VIDEO_HEADER = 48; // bytes of the fixed FCV1 header

/**
 * Delays (seconds) between reconnection attempts: capped exponential with jitter.
 *
 * @param {{initial?: number, maximum?: number, factor?: number, jitter?: number}} [options]
 * @returns {Generator<number>} Endless delays; the n-th is min(maximum, initial * factor^n)
 *   scaled down by a random fraction of up to `jitter`.
 */
export function* backoff({ initial = 0.25, maximum = 10, factor = 2, jitter = 0.5 } = {}) {
  let delay = initial;
  for (;;) {
    yield delay * (1 - jitter * Math.random());
    delay = Math.min(maximum, delay * factor);
  }
}

/**
 * The gateway's WebSocket URL for a page served by a gateway (or by nginx in front of several).
 *
 * @param {string} [path] `/ws` relative to the page, or an absolute ws(s):// or http(s):// URL.
 * @param {{token?: string|null, base?: string}} [options] `token` is added as a query parameter.
 * @returns {string} An absolute ws:// or wss:// URL.
 */
export function websocketUrl(path = "ws", { token = null, base = globalThis.location?.href } = {}) {
  if (base === undefined && !/^[a-z][a-z0-9+.-]*:/i.test(path)) {
    throw new TypeError(
      `framecast: url ${JSON.stringify(path)} is relative and there is no page to resolve it against; ` +
        "pass an absolute one, e.g. ws://127.0.0.1:8080/ws",
    );
  }
  const url = new URL(path, base);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (token) url.searchParams.set("token", token);
  return url.href;
}

/**
 * Decode a binary preview frame.
 *
 * @param {ArrayBuffer} buffer `FCP1` + uint32 BE header length + JSON header + JPEG bytes.
 * @returns {object|null} The header fields plus `jpeg` (a Blob of type image/jpeg), or null
 *   when the buffer is not a framecast preview.
 */
export function decodePreview(buffer) {
  if (buffer.byteLength < 8) return null;
  const view = new DataView(buffer);
  const magic = String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2), view.getUint8(3));
  if (magic !== PREVIEW_MAGIC) return null;
  const size = view.getUint32(4, false);
  if (8 + size > buffer.byteLength) return null;
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, size)));
  } catch {
    return null;
  }
  if (typeof header !== "object" || header === null || typeof header.seq !== "number") return null;
  const jpeg = new Blob([new Uint8Array(buffer, 8 + size)], { type: "image/jpeg" });
  return { ...header, type: "preview", jpeg };
}

/**
 * Decode a binary video frame (`FCV1`, docs/protocol.md): one encoded frame with its identity.
 *
 * @param {ArrayBuffer} buffer The message.
 * @returns {object|null} `{type: "video", stream, epoch, seq, group, frame, captured_at, width,
 *   height, key, codec, description, data}` (`description` and `data` are Uint8Array views of
 *   `buffer`; `codec` is the WebCodecs codec string, on keyframes only), or null when the buffer
 *   is not a well-formed video frame.
 */
export function decodeVideo(buffer) {
  if (buffer.byteLength < VIDEO_HEADER) return null;
  const view = new DataView(buffer);
  const bytes = new Uint8Array(buffer);
  if (String.fromCharCode(...bytes.subarray(0, 4)) !== VIDEO_MAGIC) return null;
  const [flags, s, e, c] = bytes.subarray(4, 8);
  const d = view.getUint32(44, false);
  if (VIDEO_HEADER + s + e + c + d > buffer.byteLength) return null;
  // seq, group and frame are u64: exact as Numbers up to 2**53, far beyond any real stream.
  const u64 = (at) => view.getUint32(at, false) * 2 ** 32 + view.getUint32(at + 4, false);
  const text = new TextDecoder();
  let at = VIDEO_HEADER;
  const take = (n) => bytes.subarray(at, (at += n));
  const stream = text.decode(take(s));
  const epoch = text.decode(take(e));
  const codec = text.decode(take(c));
  const description = take(d);
  const msg = {
    type: "video",
    stream,
    epoch,
    seq: u64(8),
    group: u64(16),
    frame: u64(24),
    captured_at: view.getFloat64(32, false),
    width: view.getUint16(40, false),
    height: view.getUint16(42, false),
    key: (flags & 1) === 1,
    codec,
    description,
    data: bytes.subarray(at),
  };
  if (msg.group < 1 || msg.group > msg.seq || (msg.key && (msg.group !== msg.seq || !codec))) return null;
  return msg;
}

/**
 * The WebSocket class to use: the global one, else the `ws` package's (Node without a global).
 *
 * @returns {Promise<typeof WebSocket>}
 */
export async function defaultWebSocket() {
  if (typeof globalThis.WebSocket === "function") return globalThis.WebSocket;
  // Bundlers for browsers never reach this line (they have a global); package.json maps `ws` to
  // nothing for them ("browser" field) so it is not bundled.
  const { WebSocket } = await import("ws");
  return WebSocket;
}

/**
 * Per-stream positions and de-duplication by (epoch, seq).
 *
 * A result is new when its epoch differs from the last one seen (and is not an
 * epoch already replaced) or its seq is higher within the same epoch.
 * Previews and events are tracked apart from results, by the same rule (events
 * with their own replaced epochs).
 */
export class Cursor {
  /**
   * @param {Record<string, {epoch: string, seq: number}>} [since] Starting result positions.
   * @param {Record<string, {epoch: string, seq: number}>} [eventSince] Starting event positions.
   */
  constructor(since = {}, eventSince = {}) {
    /** @type {Map<string, {epoch: string, seq: number}>} */
    this.results = new Map(Object.entries(since));
    /** @type {Map<string, {epoch: string, seq: number}>} */
    this.events = new Map(Object.entries(eventSince));
    this.previews = new Map();
    this.video = new Map();
    this.retired = new Map();
    this.eventsRetired = new Map();
    /** Resets received per stream: replays the gateway could not serve contiguously. */
    this.resets = new Map();
    /** Messages dropped as already delivered (or older). */
    this.duplicates = 0;
  }

  /** @returns {{epoch: string, seq: number}|undefined} Last result delivered on `stream`. */
  position(stream) {
    return this.results.get(stream);
  }

  /** @returns {{epoch: string, seq: number}|undefined} Last event delivered on `stream`. */
  eventPosition(stream) {
    return this.events.get(stream);
  }

  /**
   * Whether `msg` (a result, an event, a preview or a video frame) is new; if so it becomes
   * the stream's position of its kind.
   * @returns {boolean}
   */
  accept(msg) {
    const isEvent = msg.type === "event";
    const table =
      msg.type === "result"
        ? this.results
        : isEvent
          ? this.events
          : msg.type === "video"
            ? this.video
            : this.previews;
    const retiredBy = isEvent ? this.eventsRetired : this.retired;
    const retired = retiredBy.get(msg.stream) ?? [];
    const last = table.get(msg.stream);
    if (retired.includes(msg.epoch) || (last && last.epoch === msg.epoch && msg.seq <= last.seq)) {
      this.duplicates += 1;
      return false;
    }
    if (msg.type === "result" || isEvent) {
      if (last && last.epoch !== msg.epoch) {
        retired.push(last.epoch);
        retiredBy.set(msg.stream, retired.slice(-8));
      }
    }
    table.set(msg.stream, { epoch: msg.epoch, seq: msg.seq });
    return true;
  }

  /**
   * Note a `reset` on `stream`. The position is kept: `(epoch, seq)` names one result for
   * good, so a result already delivered is still dropped (the latest that follows a reset may
   * be one this client got live while its resubscription was in flight), and a new epoch
   * still retires the old one. Except for `position-ahead`: the position is beyond anything
   * the stream numbered, so it is dropped, or every result up to it would be dropped as seen.
   */
  reset(stream, reason = "") {
    this.resets.set(stream, (this.resets.get(stream) ?? 0) + 1);
    if (reason === "position-ahead") this.forget(stream);
  }

  /** Drop the positions of `stream`, so that subscribing again starts from its latest result. */
  forget(stream) {
    this.results.delete(stream);
    this.events.delete(stream);
    this.previews.delete(stream);
    this.video.delete(stream);
  }
}

/**
 * A live subscription. Made by {@link subscribe}.
 *
 * Read-only fields, current at any time: `state` ("connecting", "open",
 * "reconnecting", "closed" or "failed"), `gateway` (id from the hello),
 * `reconnects`, `streams`, `cursor`.
 */
export class Subscription {
  constructor(streams, options = {}) {
    const {
      url = "ws",
      token = null,
      since = {},
      previews = false,
      kinds = null,
      maxRate = null,
      eventSince = {},
      video = false,
      delays = backoff,
      probe = probeHandshake,
      maxAttempts = Infinity,
      onMessage = () => {},
      onState = () => {},
      WebSocketImpl = null,
    } = options;
    this.url = websocketUrl(url, { token });
    this.streams = new Set(streams);
    this.previews = previews;
    this.video = video;
    this.kinds = checkKinds(kinds);
    this.maxRate = checkMaxRate(maxRate);
    this.cursor = new Cursor(since, eventSince);
    this.state = "connecting";
    this.gateway = null;
    this.reconnects = 0;
    this._delays = delays;
    this._delayIter = delays();
    this._probe = probe;
    this._maxAttempts = maxAttempts;
    this._failures = 0;
    this._onMessage = onMessage;
    this._onState = onState;
    this._WebSocket = WebSocketImpl;
    this._ws = null;
    this._timer = null;
    this._connected = false;
    // Subscribe ops sent per stream and not yet answered (`subscribed` or `error`), each noted
    // with whether it asked for an events replay (event_since).
    this._unanswered = new Map();
    // Streams the gateway refused (bad-stream, forbidden, too-many-streams), with why.
    this._refused = new Map();
    this._connect();
  }

  /**
   * Start receiving `stream` too (now and after reconnects). On a subscription that failed
   * because every stream was refused (or any other failure), this connects again, fresh.
   */
  add(stream, { since } = {}) {
    this._refused.delete(stream);
    if (since && !this.cursor.position(stream)) this.cursor.results.set(stream, since);
    this.streams.add(stream);
    if (this.state === "failed" && !this._ws) {
      this._failures = 0;
      this._delayIter = this._delays();
      this._setState("connecting");
      this._connect(); // its open sends a subscribe for every stream, this one included
      return;
    }
    this._send(this._subscribeOp(stream));
  }

  /** Stop receiving `stream`. */
  remove(stream) {
    this.streams.delete(stream);
    this._send({ op: "unsubscribe", stream });
  }

  /** Close the connection for good. */
  close() {
    clearTimeout(this._timer);
    this._setState("closed");
    if (this._ws) this._ws.close(1000, "client closed");
    this._ws = null;
  }

  _wants(kind) {
    return this.kinds === null || this.kinds.includes(kind);
  }

  _subscribeOp(stream) {
    const op = { op: "subscribe", stream, previews: this.previews };
    if (this.video) op.video = true;
    const position = this._wants("result") ? this.cursor.position(stream) : undefined;
    if (position) Object.assign(op, { since: position.seq, epoch: position.epoch });
    if (this.kinds !== null) op.kinds = [...this.kinds];
    if (this.maxRate !== null) op.max_rate = this.maxRate;
    const events = this._wants("event") ? this.cursor.eventPosition(stream) : undefined;
    if (events) Object.assign(op, { event_since: events.seq, event_epoch: events.epoch });
    return op;
  }

  _send(op) {
    if (!this._ws || this._ws.readyState !== 1) return;
    this._ws.send(JSON.stringify(op));
    if (op.op === "subscribe") {
      const pending = this._unanswered.get(op.stream) ?? [];
      pending.push(op.event_since !== undefined);
      this._unanswered.set(op.stream, pending);
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._onState({ state, gateway: this.gateway, reconnects: this.reconnects, ...extra });
  }

  _connect() {
    if (this.state === "closed" || this.state === "failed") return;
    if (!this._WebSocket) {
      defaultWebSocket().then(
        (impl) => {
          this._WebSocket = impl;
          this._connect();
        },
        (error) =>
          this._setState("failed", {
            reason: `no WebSocket in this runtime and the ws package cannot be loaded (npm install ws): ${error}`,
          }),
      );
      return;
    }
    const ws = new this._WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    let opened = false;
    // The close event that follows carries what matters; ws (Node) throws on an unhandled "error".
    ws.onerror = () => {};
    ws.onopen = () => {
      opened = true;
      if (this._connected) this.reconnects += 1;
      this._connected = true;
      this._unanswered.clear();
      for (const stream of this.streams) this._send(this._subscribeOp(stream));
    };
    ws.onmessage = (event) => this._receive(ws, event.data);
    ws.onclose = (event) => {
      if (this._ws !== ws || this.state === "closed" || this.state === "failed") return;
      this._ws = null;
      this._closed(event, opened);
    };
  }

  async _closed(event, opened) {
    let reason = opened ? `connection closed (${event.code}${event.reason ? ": " + event.reason : ""})` : "cannot connect";
    if (event.code === CLOSE_POLICY) {
      this._setState("failed", { reason });
      return;
    }
    if (!opened) {
      // Browsers hide the HTTP status of a refused handshake: ask the same URL over plain HTTP.
      const status = await this._probe(this.url);
      if (this.state === "closed") return;
      if (status === 401 || status === 403) {
        const why = this.url.includes("token=") ? "refused the token" : "requires a token";
        this._setState("failed", { reason: `HTTP ${status}: the gateway ${why}`, status });
        return;
      }
      if (status >= 400 && status < 500 && ![408, 426, 429].includes(status)) {
        // A wrong path or a bad query is answered the same way every time: retrying cannot help.
        // (426 is the probe's own answer, a plain GET where the handshake would be taken.)
        this._setState("failed", { reason: `HTTP ${status}: the gateway refused the request`, status });
        return;
      }
      if (status) reason = `cannot connect (HTTP ${status})`;
    }
    this._failures += 1;
    if (this._failures >= this._maxAttempts) {
      this._setState("failed", { reason: `${reason}; gave up after ${this._failures} attempts` });
      return;
    }
    const moved = event.code === CLOSE_GOING_AWAY || event.code === CLOSE_TRY_AGAIN_LATER;
    const immediate = opened && moved && this._failures === 1;
    const delay = immediate ? 0 : this._delayIter.next().value;
    this._setState("reconnecting", { reason, delay });
    this._timer = setTimeout(() => this._connect(), delay * 1000);
  }

  _receive(ws, data) {
    if (this._ws !== ws) return;
    let msg;
    if (typeof data === "string") {
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
    } else {
      msg = decodePreview(data) ?? decodeVideo(data);
      if (!msg) {
        // Tolerate a gateway that frames a JSON message as binary.
        try {
          msg = JSON.parse(new TextDecoder().decode(data));
        } catch {
          return;
        }
      }
    }
    if (!msg || typeof msg.type !== "string") return;
    // The gateway refused one of this subscription's streams: retrying would be refused again.
    const refusal =
      msg.type === "error" && msg.stream && REFUSALS.has(msg.code) && this.streams.has(msg.stream);
    if (msg.type === "video") {
      // Never replayed, so not held back while a resubscription is answered: the decoding
      // chain goes on (a gateway never sends a broken one).
      if (!this.streams.has(msg.stream) || !this.cursor.accept(msg)) return;
    } else if (msg.type === "result" || msg.type === "preview" || msg.type === "event") {
      if (!this.streams.has(msg.stream)) return;
      // Sent before the gateway took the (re)subscription: the replay that follows `subscribed`
      // holds it again, in order. Taken now, it would move the position past the hole the
      // replay is about to fill, and the replay would be dropped. (Events are replayed only
      // when the subscribe asked, with event_since.)
      const pending = this._unanswered.get(msg.stream);
      if (pending && pending.length && (msg.type !== "event" || pending.includes(true))) return;
      if (!this.cursor.accept(msg)) return;
    } else if (msg.type === "hello") {
      this.gateway = msg.gateway;
      this._setState("open");
    } else if (msg.type === "reset") {
      this.cursor.reset(msg.stream, msg.reason);
    } else if (msg.type === "gap" && this.streams.has(msg.stream)) {
      // Messages may have been lost between Redis and the gateway: ask for a replay.
      this._send(this._subscribeOp(msg.stream));
    } else if (refusal) {
      this.streams.delete(msg.stream);
      this._refused.set(msg.stream, `${msg.code}: ${msg.message}`);
    }
    if ((msg.type === "subscribed" || msg.type === "error") && msg.stream) {
      // The gateway answers each subscribe with one `subscribed` or one `error` naming it.
      const pending = this._unanswered.get(msg.stream);
      if (pending) pending.shift();
      if (!pending || !pending.length) this._unanswered.delete(msg.stream);
    }
    const traffic = ["result", "event", "preview", "video", "status"];
    if (this._failures && traffic.includes(msg.type)) {
      // Stream traffic flows again: the next outage starts a fresh backoff. (A hello alone does
      // not count, or a gateway that accepts and then drops every connection would be retried
      // at the shortest delay forever, and maxAttempts would never be reached.)
      this._failures = 0;
      this._delayIter = this._delays();
    }
    this._onMessage(msg);
    if (refusal && !this.streams.size) {
      // Nothing left to receive, and a reconnect would be refused the same way.
      const refused = [...this._refused].map(([stream, why]) => `${stream}: ${why}`).join("; ");
      this._setState("failed", { reason: `the gateway refused every stream (${refused})` });
      clearTimeout(this._timer);
      ws.close(1000, "every stream refused");
      this._ws = null;
    }
  }
}

function checkKinds(kinds) {
  if (kinds === null || kinds === undefined) return null;
  const list = [...kinds];
  if (!list.length || list.some((k) => !KINDS.includes(k))) {
    throw new TypeError(`framecast: kinds must be a non-empty list of ${KINDS.join(", ")}, got ${JSON.stringify(list)}`);
  }
  return KINDS.filter((k) => list.includes(k));
}

function checkMaxRate(rate) {
  if (rate === null || rate === undefined) return null;
  if (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0 || rate > MAX_RATE) {
    throw new TypeError(`framecast: maxRate must be a number above 0 and at most ${MAX_RATE}, got ${rate}`);
  }
  return rate;
}

/**
 * Ask a WebSocket URL over plain HTTP, to learn why a handshake failed.
 *
 * @param {string} wsUrl The ws(s):// URL that could not be opened.
 * @returns {Promise<number|null>} The HTTP status, or null when unreachable.
 */
export async function probeHandshake(wsUrl) {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  try {
    const response = await fetch(url.href, { cache: "no-store" });
    return response.status;
  } catch {
    return null;
  }
}

/**
 * Subscribe to streams on the gateway that served the page (or on `options.url`).
 *
 * @param {Iterable<string>} streams Stream names.
 * @param {object} [options]
 * @param {string} [options.url="ws"] WebSocket endpoint, relative to the page or absolute.
 * @param {string|null} [options.token] Access token (sent as the `token` query parameter).
 * @param {boolean} [options.previews=false] Also receive binary preview JPEGs.
 * @param {Array<"result"|"event"|"status">|null} [options.kinds] Only these kinds (default all).
 * @param {number|null} [options.maxRate] At most this many results per second per stream.
 * @param {boolean} [options.video=false] Also receive the encoded video ({@link decodeVideo}),
 *   from a keyframe on.
 * @param {Record<string, {epoch: string, seq: number}>} [options.since] Resume positions per stream.
 * @param {Record<string, {epoch: string, seq: number}>} [options.eventSince] Event resume positions.
 * @param {() => Iterator<number>} [options.delays=backoff] Makes the reconnect delays (seconds).
 * @param {number} [options.maxAttempts=Infinity] Failed attempts in a row before giving up.
 * @param {(msg: object) => void} [options.onMessage] Called with every new message.
 * @param {typeof WebSocket} [options.WebSocketImpl] WebSocket class (default: {@link defaultWebSocket}).
 * @param {(s: {state: string, reason?: string, delay?: number, gateway: string|null,
 *   reconnects: number, status?: number}) => void} [options.onState] Called on each state change.
 * @returns {Subscription}
 */
export function subscribe(streams, options = {}) {
  return new Subscription(streams, options);
}
