// Pure logic of the client: delays, URLs, preview decoding, de-duplication. No network.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Cursor,
  KINDS,
  Subscription,
  backoff,
  decodePreview,
  decodeVideo,
  defaultWebSocket,
  websocketUrl,
} from "../src/index.js";

test("backoff doubles up to its maximum, each delay shortened by at most the jitter", () => {
  const delays = backoff({ initial: 1, maximum: 8, factor: 2, jitter: 0.5 });
  const nominal = [1, 2, 4, 8, 8, 8];
  for (const expected of nominal) {
    const delay = delays.next().value;
    assert.ok(delay <= expected && delay >= expected * 0.5, `${delay} outside [${expected / 2}, ${expected}]`);
  }
  assert.deepEqual([...Array(3)].map(() => backoff({ initial: 3, jitter: 0 }).next().value), [3, 3, 3]);
});

test("websocketUrl maps http(s) to ws(s), adds the token, and refuses a relative URL outside a page", () => {
  assert.equal(websocketUrl("http://127.0.0.1:8080/ws"), "ws://127.0.0.1:8080/ws");
  assert.equal(websocketUrl("https://example.test/ws", { token: "a b" }), "wss://example.test/ws?token=a+b");
  assert.equal(websocketUrl("ws", { base: "http://h:1/view/" }), "ws://h:1/view/ws");
  assert.throws(() => websocketUrl("ws"), /relative.*absolute/);
});

test("decodePreview reads FCP1 frames and rejects anything else", async () => {
  const header = new TextEncoder().encode(JSON.stringify({ stream: "s", epoch: "e", seq: 7, width: 4, height: 3 }));
  const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xd9]);
  const buffer = new Uint8Array(8 + header.length + jpeg.length);
  buffer.set(new TextEncoder().encode("FCP1"), 0);
  new DataView(buffer.buffer).setUint32(4, header.length, false);
  buffer.set(header, 8);
  buffer.set(jpeg, 8 + header.length);
  const preview = decodePreview(buffer.buffer);
  assert.equal(preview.type, "preview");
  assert.equal(preview.seq, 7);
  assert.deepEqual(new Uint8Array(await preview.jpeg.arrayBuffer()), jpeg);
  assert.equal(decodePreview(new TextEncoder().encode("NOPE1234").buffer), null);
  assert.equal(decodePreview(buffer.buffer.slice(0, 10)), null);
});

test("a position-ahead reset drops the position, so the stream's latest is accepted", () => {
  const cursor = new Cursor({ s: { epoch: "a", seq: 1000000 } });
  const r = (seq) => ({ type: "result", stream: "s", epoch: "a", seq });
  assert.equal(cursor.accept(r(5)), false); // below the (corrupt) position: taken as seen
  cursor.reset("s", "position-ahead");
  assert.equal(cursor.position("s"), undefined);
  assert.equal(cursor.accept(r(5)), true);
  assert.equal(cursor.accept(r(6)), true);
  cursor.reset("s", "history-expired"); // any other reason keeps it
  assert.deepEqual(cursor.position("s"), { epoch: "a", seq: 6 });
});

test("Cursor drops repeats and older seqs, and results of a replaced epoch", () => {
  const cursor = new Cursor();
  const r = (epoch, seq) => ({ type: "result", stream: "s", epoch, seq });
  assert.equal(cursor.accept(r("a", 1)), true);
  assert.equal(cursor.accept(r("a", 2)), true);
  assert.equal(cursor.accept(r("a", 2)), false);
  assert.equal(cursor.accept(r("a", 1)), false);
  assert.equal(cursor.accept(r("b", 1)), true); // a restarted producer
  assert.equal(cursor.accept(r("a", 3)), false); // a straggler of the replaced epoch
  assert.equal(cursor.duplicates, 3);
  cursor.reset("s");
  // A reset keeps the position: what was delivered stays delivered, the latest that follows
  // may be a result this client already got live while its resubscription was in flight.
  assert.deepEqual(cursor.position("s"), { epoch: "b", seq: 1 });
  assert.equal(cursor.accept(r("b", 1)), false);
  assert.equal(cursor.accept(r("b", 40)), true); // history-expired: the latest is far ahead
  assert.equal(cursor.resets.get("s"), 1);
  cursor.forget("s"); // the viewer, coming back to a stream: start from its latest result
  assert.equal(cursor.position("s"), undefined);
  assert.equal(cursor.accept(r("b", 7)), true);
});

test("defaultWebSocket falls back to the ws package when the runtime has no global WebSocket", async () => {
  const impl = await defaultWebSocket();
  if (typeof globalThis.WebSocket === "function") {
    assert.equal(impl, globalThis.WebSocket);
  } else {
    assert.equal(impl, (await import("ws")).WebSocket);
  }
});

test("the package name resolves, through package.json's exports, to this module", async () => {
  const byName = await import("@framecast/client");
  const byPath = await import("../src/index.js");
  assert.equal(byName.subscribe, byPath.subscribe);
  assert.deepEqual(Object.keys(byName).sort(), [
    "CLOSE_GOING_AWAY", "CLOSE_POLICY", "CLOSE_SLOW_CONSUMER", "CLOSE_TRY_AGAIN_LATER", "Cursor", "KINDS", "MAX_RATE",
    "Subscription", "backoff",
    "decodePreview", "decodeVideo", "defaultWebSocket", "probeHandshake", "subscribe", "websocketUrl",
  ]);
});

test("Cursor keeps events apart: their own positions and replaced epochs", () => {
  const cursor = new Cursor({}, { door: { epoch: "e1", seq: 2 } });
  const event = (epoch, seq) => ({ type: "event", stream: "door", epoch, seq });
  assert.equal(cursor.accept(event("e1", 2)), false, "at the starting position: already seen");
  assert.equal(cursor.accept(event("e1", 3)), true);
  assert.equal(cursor.accept({ type: "result", stream: "door", epoch: "e2", seq: 1 }), true);
  // A result of a new epoch does not retire the old epoch's events still to come in a replay.
  assert.equal(cursor.accept(event("e1", 4)), true);
  assert.equal(cursor.accept(event("e2", 1)), true);
  assert.equal(cursor.accept(event("e1", 5)), false, "events of a replaced epoch are stragglers");
  assert.deepEqual(cursor.eventPosition("door"), { epoch: "e2", seq: 1 });
  assert.deepEqual(cursor.position("door"), { epoch: "e2", seq: 1 });
  cursor.forget("door");
  assert.equal(cursor.eventPosition("door"), undefined);
});

test("kinds and maxRate are checked when the subscription is made", () => {
  const options = { url: "ws://127.0.0.1:1/ws", WebSocketImpl: class { close() {} } };
  assert.throws(() => new Subscription(["s"], { ...options, kinds: ["video"] }), /kinds must be/);
  assert.throws(() => new Subscription(["s"], { ...options, kinds: [] }), /kinds must be/);
  assert.throws(() => new Subscription(["s"], { ...options, maxRate: 0 }), /maxRate must be/);
  assert.throws(() => new Subscription(["s"], { ...options, maxRate: "2" }), /maxRate must be/);
  const sub = new Subscription(["s"], { ...options, kinds: ["status", "event"], maxRate: 2 });
  assert.deepEqual(sub.kinds, ["event", "status"], "in protocol order");
  assert.deepEqual(KINDS, ["result", "event", "status"]);
  sub.close();
});

// An FCV1 frame laid out by hand from docs/protocol.md's table (not by the code under test).
function videoFrame({ key = true, seq = 7, group = 7, codec = "vp8", data = [1, 2, 3] } = {}) {
  const text = new TextEncoder();
  const [stream, epoch, codecBytes] = [text.encode("cam1"), text.encode("9f3a1c2e"), text.encode(key ? codec : "")];
  const buffer = new Uint8Array(48 + stream.length + epoch.length + codecBytes.length + data.length);
  const view = new DataView(buffer.buffer);
  buffer.set(text.encode("FCV1"), 0);
  buffer.set([key ? 1 : 0, stream.length, epoch.length, codecBytes.length], 4);
  view.setBigUint64(8, BigInt(seq));
  view.setBigUint64(16, BigInt(group));
  view.setBigUint64(24, 3127n);
  view.setFloat64(32, 1764258000.512);
  view.setUint16(40, 640);
  view.setUint16(42, 480);
  view.setUint32(44, 0);
  buffer.set(stream, 48);
  buffer.set(epoch, 52);
  buffer.set(codecBytes, 60);
  buffer.set(data, 60 + codecBytes.length);
  return buffer.buffer;
}

test("decodeVideo reads FCV1 frames as docs/protocol.md lays them out, and rejects broken ones", () => {
  const key = decodeVideo(videoFrame());
  assert.deepEqual(
    { ...key, description: [...key.description], data: [...key.data] },
    {
      type: "video", stream: "cam1", epoch: "9f3a1c2e", seq: 7, group: 7, frame: 3127, captured_at: 1764258000.512,
      width: 640, height: 480, key: true, codec: "vp8", description: [], data: [1, 2, 3],
    },
  );
  const delta = decodeVideo(videoFrame({ key: false, seq: 9, group: 7 }));
  assert.equal(delta.key, false);
  assert.equal(delta.codec, "");
  assert.equal(delta.group, 7);
  assert.equal(decodeVideo(videoFrame({ seq: 9, group: 7 })), null, "a keyframe must start its own group");
  assert.equal(decodeVideo(videoFrame({ key: false, seq: 3, group: 7 })), null, "group after seq");
  assert.equal(decodeVideo(videoFrame().slice(0, 40)), null);
  assert.equal(decodeVideo(videoFrame().slice(0, 55)), null, "lengths past the end");
  assert.equal(decodePreview(videoFrame()), null);
});

test("Cursor drops a video frame already delivered, apart from results", () => {
  const cursor = new Cursor();
  const frame = { type: "video", stream: "s", epoch: "e", seq: 4 };
  assert.equal(cursor.accept({ type: "result", stream: "s", epoch: "e", seq: 9 }), true);
  assert.equal(cursor.accept(frame), true);
  assert.equal(cursor.accept(frame), false);
  assert.equal(cursor.accept({ ...frame, seq: 5 }), true);
  assert.deepEqual(cursor.video.get("s"), { epoch: "e", seq: 5 });
});
