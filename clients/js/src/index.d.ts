// Types of @framecast/client (src/index.js). The wire format itself is documented in
// docs/protocol.md of the framecast repository; these types cover the fields the client reads.

/** The gateway is shutting down: reconnect at once, another gateway will answer. */
export declare const CLOSE_GOING_AWAY: 1001;
/** A policy (token) no longer holds, or repeated malformed requests: not retried. */
export declare const CLOSE_POLICY: 1008;
/** The gateway lost Redis (or stayed unready): reconnect at once, another gateway will answer. */
export declare const CLOSE_TRY_AGAIN_LATER: 1013;
/** The client did not read fast enough. */
export declare const CLOSE_SLOW_CONSUMER: 4008;

/** A kind of stream message a subscription can choose (`kinds`). */
export type Kind = "result" | "event" | "status";
/** Every kind, in protocol order. */
export declare const KINDS: readonly Kind[];
/** The largest `maxRate` (results per second). */
export declare const MAX_RATE: 1000;

/** Where a stream was: the producer run (`epoch`) and the last `seq` seen in it. */
export interface Position {
  epoch: string;
  seq: number;
}

export interface Detection {
  label: string;
  confidence: number;
  /** Pixel box `[x1, y1, x2, y2]` in the source frame's grid. */
  box: [number, number, number, number];
  /** With tracking on: the object's id, stable from frame to frame, never reused in the epoch. */
  track?: number;
  [field: string]: unknown;
}

export interface ResultMessage {
  v?: number;
  type: "result";
  stream: string;
  epoch: string;
  seq: number;
  frame: number;
  captured_at: number;
  published_at: number;
  width: number;
  height: number;
  detections: Detection[];
  /** With zones: tracks in each zone after this frame. */
  occupancy?: Record<string, number>;
  /** With lines: crossings of each line since the epoch began. */
  crossings?: Record<string, { in: number; out: number }>;
  [field: string]: unknown;
}

interface EventBase {
  v?: number;
  type: "event";
  stream: string;
  epoch: string;
  /** The event's own sequence (apart from results'): from 1 within an epoch, without gaps. */
  seq: number;
  track: number;
  label: string;
  frame: number;
  captured_at: number;
  published_at: number;
  [field: string]: unknown;
}

/** A track entered a zone. */
export interface EnterEvent extends EventBase {
  kind: "enter";
  zone: string;
}

/** A track left a zone: seen outside it, or `lost` inside (the tracker gave it up). */
export interface LeaveEvent extends EventBase {
  kind: "leave";
  zone: string;
  lost: boolean;
  /** Seconds from its `enter`. */
  dwell: number;
}

/** A track crossed a line: `in` from the line's left to its right (first point to second). */
export interface CrossEvent extends EventBase {
  kind: "cross";
  line: string;
  direction: "in" | "out";
}

export type EventMessage = EnterEvent | LeaveEvent | CrossEvent;

export interface PreviewMessage {
  type: "preview";
  stream: string;
  epoch: string;
  seq: number;
  frame: number;
  captured_at: number;
  width: number;
  height: number;
  /** The JPEG picture. */
  jpeg: Blob;
  [field: string]: unknown;
}

export interface VideoMessage {
  type: "video";
  stream: string;
  epoch: string;
  /** Encoded frames of this epoch, from 1: a gap is a lost frame. */
  seq: number;
  /** `seq` of the keyframe this frame's group starts with. */
  group: number;
  /** Source frame index of the picture: the result with the same `epoch` and `frame` was computed on it. */
  frame: number;
  captured_at: number;
  width: number;
  height: number;
  /** A keyframe: decodable on its own; `codec` (and `description`) come with it. */
  key: boolean;
  /** The WebCodecs codec string (keyframes only, else ""). */
  codec: string;
  /** The WebCodecs `description` (empty for what framecast sends today). */
  description: Uint8Array;
  /** The encoded frame. */
  data: Uint8Array;
}

/**
 * Any other message of the gateway. A newer gateway's message types also reach `onMessage`
 * (their `type` is then none of these): handle the ones you know, ignore the rest.
 */
export interface OtherMessage {
  type: "status" | "hello" | "subscribed" | "unsubscribed" | "reset" | "gap" | "error";
  stream?: string;
  [field: string]: unknown;
}

export type Message = ResultMessage | EventMessage | PreviewMessage | VideoMessage | OtherMessage;

export type ConnectionState = "connecting" | "open" | "reconnecting" | "failed" | "closed";

export interface StateChange {
  state: ConnectionState;
  /** Why the connection ended or failed (`reconnecting`, `failed`). */
  reason?: string;
  /** Seconds until the next attempt (`reconnecting`). */
  delay?: number;
  /** HTTP status of a refused handshake (401/403, `failed`). */
  status?: number;
  /** Id of the gateway from its last `hello`. */
  gateway: string | null;
  reconnects: number;
}

/** The subset of the WebSocket API the client uses (the global one, or `ws`'s). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketClass = new (url: string) => WebSocketLike;

export interface BackoffOptions {
  /** First delay, seconds (0.25). */
  initial?: number;
  /** Longest delay, seconds (10). */
  maximum?: number;
  /** Growth per attempt (2). */
  factor?: number;
  /** Each delay is shortened by a random fraction of up to this (0.5). */
  jitter?: number;
}

export interface SubscribeOptions {
  /** WebSocket endpoint, relative to the page or absolute (`ws://`, `http://`); default `"ws"`. */
  url?: string;
  /** Access token, sent as the `token` query parameter. */
  token?: string | null;
  /** Also receive binary preview JPEGs (default false). */
  previews?: boolean;
  /** Only these kinds of stream message (default all); `["event", "status"]` suits a counter. */
  kinds?: readonly Kind[] | null;
  /** At most this many results per second per stream, the newest each time (default: all). */
  maxRate?: number | null;
  /** Also receive the encoded video, from a keyframe on (default false). */
  video?: boolean;
  /** Positions to resume from, per stream. */
  since?: Record<string, Position>;
  /** Event positions to resume from, per stream: the events after them are replayed. */
  eventSince?: Record<string, Position>;
  /** Makes the reconnect delays in seconds (default {@link backoff}). */
  delays?: () => Iterator<number>;
  /** Failed attempts in a row before giving up (default Infinity). */
  maxAttempts?: number;
  /** Called with every new message; duplicates never reach it. */
  onMessage?: (message: Message) => void;
  /** Called on each state change. */
  onState?: (change: StateChange) => void;
  /** Learns the HTTP status of a failed handshake (default {@link probeHandshake}). */
  probe?: (wsUrl: string) => Promise<number | null>;
  /** WebSocket class (default: the global one, else the `ws` package's). */
  WebSocketImpl?: WebSocketClass | null;
}

/** Capped exponential delays with jitter, endless. */
export declare function backoff(options?: BackoffOptions): Generator<number, never, unknown>;

/** An absolute ws(s):// URL for `path` (relative to the page in a browser); `token` becomes a query parameter. */
export declare function websocketUrl(path?: string, options?: { token?: string | null; base?: string }): string;

/** Decodes a binary preview frame (`FCP1` + header length + JSON + JPEG); null when it is not one. */
export declare function decodePreview(buffer: ArrayBuffer): PreviewMessage | null;

/** Decodes a binary video frame (`FCV1`, docs/protocol.md); null when it is not a well-formed one. */
export declare function decodeVideo(buffer: ArrayBuffer): VideoMessage | null;

/** The WebSocket class this runtime provides: the global one, else `ws`'s. */
export declare function defaultWebSocket(): Promise<WebSocketClass>;

/** Asks a WebSocket URL over plain HTTP; the status, or null when unreachable. */
export declare function probeHandshake(wsUrl: string): Promise<number | null>;

/** Per-stream positions and de-duplication by (epoch, seq). */
export declare class Cursor {
  constructor(since?: Record<string, Position>, eventSince?: Record<string, Position>);
  /** Last result delivered per stream. */
  readonly results: Map<string, Position>;
  /** Last event delivered per stream. */
  readonly events: Map<string, Position>;
  /** Last preview delivered per stream. */
  readonly previews: Map<string, Position>;
  /** Last video frame delivered per stream. */
  readonly video: Map<string, Position>;
  /** Messages dropped as already delivered (or older). */
  duplicates: number;
  position(stream: string): Position | undefined;
  /** Last event delivered on `stream`. */
  eventPosition(stream: string): Position | undefined;
  /** Whether `message` (a result, event, preview or video frame) is new; if so it becomes the stream's position. */
  accept(message: { type: string; stream: string; epoch: string; seq: number }): boolean;
  /** Resets received per stream (replays the gateway could not serve contiguously). */
  readonly resets: Map<string, number>;
  /**
   * Note a `reset`: the position is kept, so results already delivered are still dropped;
   * with reason `position-ahead` (a `since` beyond the stream's newest result) it is dropped.
   */
  reset(stream: string, reason?: string): void;
  /** Drop the positions of `stream`, so that subscribing again starts from its latest result. */
  forget(stream: string): void;
}

/** A live subscription, made by {@link subscribe}. */
export declare class Subscription {
  constructor(streams: Iterable<string>, options?: SubscribeOptions);
  readonly url: string;
  readonly streams: Set<string>;
  readonly previews: boolean;
  /** The kinds asked for (null: all). */
  readonly kinds: readonly Kind[] | null;
  /** The cap on results per second (null: none). */
  readonly maxRate: number | null;
  readonly video: boolean;
  readonly cursor: Cursor;
  readonly state: ConnectionState;
  /** Id of the serving gateway (from its `hello`). */
  readonly gateway: string | null;
  readonly reconnects: number;
  /** Start receiving `stream` too (now and after reconnects). */
  add(stream: string, options?: { since?: Position }): void;
  /** Stop receiving `stream`. */
  remove(stream: string): void;
  /** Close the connection for good (state `closed`). */
  close(): void;
}

/** Subscribe to streams on the gateway that served the page, or on `options.url`. */
export declare function subscribe(streams: Iterable<string>, options?: SubscribeOptions): Subscription;
