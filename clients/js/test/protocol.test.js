// The client's protocol handling against a scripted in-process server (ws), for orderings a real
// gateway cannot be made to produce on demand; test/gateway.test.js runs against real gateways.

import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";

import { WebSocketServer } from "ws";

import { Subscription } from "../src/index.js";

const result = (seq, epoch = "e1") =>
  JSON.stringify({ v: 1, type: "result", stream: "cam", epoch, seq, frame: seq, captured_at: 1, published_at: 1,
    width: 64, height: 48, detections: [] });
const text = (message) => JSON.stringify({ v: 1, ...message });

test("live results ahead of a resubscription do not make the client drop the replay", async (t) => {
  // What the 500-client fault run lost: after a `gap`, results sent live before the gateway took
  // the resubscription moved the position past the hole, and the replay that filled it was then
  // dropped as old. A gateway answers `subscribed` first, then the replay.
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  t.after(() => server.close());
  await once(server, "listening");
  const ops = [];
  server.on("connection", (ws) => {
    ws.send(text({ type: "hello", gateway: "gw" }));
    ws.on("message", (data) => {
      const op = JSON.parse(data.toString());
      ops.push(op);
      if (ops.length === 1) {
        ws.send(text({ type: "subscribed", stream: "cam", previews: false }));
        ws.send(result(3));
        ws.send(text({ type: "gap", stream: "cam", reason: "stale" })); // 4 and 5 were dropped
        ws.send(result(6)); // live, already on the wire when the resubscription is read
        ws.send(result(7));
      } else {
        ws.send(text({ type: "subscribed", stream: "cam", previews: false }));
        for (const seq of [4, 5, 6, 7, 8]) ws.send(result(seq)); // the replay after since=3, then live
      }
    });
  });
  const seqs = [];
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const sub = new Subscription(["cam"], {
    url: `ws://127.0.0.1:${server.address().port}/ws`,
    onMessage: (msg) => {
      if (msg.type !== "result") return;
      seqs.push(msg.seq);
      if (msg.seq === 8) done();
    },
  });
  t.after(() => sub.close());
  await Promise.race([finished, new Promise((_, reject) => setTimeout(() => reject(new Error(`got ${seqs}`)), 5000))]);
  assert.deepEqual(seqs, [3, 4, 5, 6, 7, 8]);
  assert.deepEqual(ops[1], { op: "subscribe", stream: "cam", previews: false, since: 3, epoch: "e1" });
  assert.equal(sub.cursor.duplicates, 0);
});

test("a gateway that says hello and drops every connection is given up after maxAttempts", async (t) => {
  // A hello alone does not reset the backoff (as in the Python client): only stream traffic does.
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  t.after(() => server.close());
  await once(server, "listening");
  let connections = 0;
  server.on("connection", (ws) => {
    connections += 1;
    ws.send(text({ type: "hello", gateway: "gw" }));
    ws.close(1011, "internal error");
  });
  const failed = new Promise((resolve) => {
    const sub = new Subscription(["cam"], {
      url: `ws://127.0.0.1:${server.address().port}/ws`,
      maxAttempts: 3,
      delays: function* () {
        for (;;) yield 0.01;
      },
      onState: (state) => {
        if (state.state === "failed") resolve(state);
      },
    });
    t.after(() => sub.close());
  });
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`${connections} connections`)), 5000));
  const state = await Promise.race([failed, timeout]);
  assert.match(state.reason, /gave up after 3 attempts/);
  assert.equal(connections, 3);
});

test("events resume from their own position, once each, across a producer restart", async (t) => {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  t.after(() => server.close());
  await once(server, "listening");
  const event = (seq, epoch = "e1") =>
    JSON.stringify({ v: 1, type: "event", stream: "cam", epoch, seq, kind: "cross", line: "door", direction: "in",
      track: seq, label: "person", frame: seq, captured_at: 1, published_at: 1 });
  const ops = [];
  let connection = 0;
  server.on("connection", (ws) => {
    const index = connection++;
    ws.send(text({ type: "hello", gateway: "gw" }));
    ws.on("message", (data) => {
      ops.push(JSON.parse(data.toString()));
      ws.send(text({ type: "subscribed", stream: "cam", previews: false, kinds: ["event", "status"] }));
      if (index === 0) {
        ws.send(event(1));
        ws.send(event(2));
        ws.close(1001, "going away");
      } else {
        // The replay after (e1, 2): one repeat, the rest of e1, then the new epoch from its start.
        for (const [seq, epoch] of [[2, "e1"], [3, "e1"], [1, "e2"], [2, "e2"]]) ws.send(event(seq, epoch));
      }
    });
  });
  const got = [];
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const sub = new Subscription(["cam"], {
    url: `ws://127.0.0.1:${server.address().port}/ws`,
    kinds: ["event", "status"],
    maxRate: 2,
    delays: () => [0.01, 0.01, 0.01][Symbol.iterator](),
    onMessage: (msg) => {
      if (msg.type !== "event") return;
      got.push(`${msg.epoch}:${msg.seq}`);
      if (msg.epoch === "e2" && msg.seq === 2) done();
    },
  });
  t.after(() => sub.close());
  await Promise.race([finished, new Promise((_, reject) => setTimeout(() => reject(new Error(`got ${got}`)), 5000))]);
  assert.deepEqual(got, ["e1:1", "e1:2", "e1:3", "e2:1", "e2:2"]);
  assert.deepEqual(ops[0], { op: "subscribe", stream: "cam", previews: false, kinds: ["event", "status"], max_rate: 2 });
  assert.deepEqual(ops[1], {
    op: "subscribe", stream: "cam", previews: false, kinds: ["event", "status"], max_rate: 2,
    event_since: 2, event_epoch: "e1",
  });
  assert.equal(sub.cursor.duplicates, 1);
});
