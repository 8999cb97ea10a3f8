// The client against real processes: valkey-server, `python -m gateway`, `python -m producer`.
//
// What a user relies on: results arrive in order with no duplicate; a killed gateway is replaced
// and the subscription resumes where it stopped (the gateway replays the missed results from its
// Redis history), with no gap and no duplicate; a replay of results already delivered is dropped.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { subscribe } from "../src/index.js";
import { allLogs, freePort, publishedSeq, startGateway, startProducer, startValkey, stopAll, waitFor } from "./support/stack.js";

let valkey;

before(async () => {
  valkey = await startValkey();
});

after(async () => {
  await stopAll();
});

/** A subscription that records every message it delivers; `results` are the delivered results. */
function recorder(url, streams, options = {}) {
  const rec = { results: [], states: [], messages: [] };
  rec.sub = subscribe(streams, {
    url,
    delays: function* fast() {
      for (;;) yield 0.1;
    },
    onMessage(msg) {
      rec.messages.push(msg);
      if (msg.type === "result") rec.results.push(msg);
    },
    onState(change) {
      rec.states.push(change);
    },
    ...options,
  });
  return rec;
}

/** Every result of one epoch, in delivery order, must be seq, seq+1, seq+2, ... */
function assertContiguous(results) {
  assert.ok(results.length > 0, "no result delivered");
  const epochs = new Set(results.map((r) => r.epoch));
  assert.equal(epochs.size, 1, `one producer run expected, got epochs ${[...epochs]}`);
  const seqs = results.map((r) => r.seq);
  const expected = seqs.map((_, i) => seqs[0] + i);
  assert.deepEqual(seqs, expected, "results out of order, missing or repeated");
}

async function withContext(run) {
  try {
    await run();
  } catch (error) {
    error.message += `\n${allLogs()}`;
    throw error;
  }
}

test("results arrive in order, each once, and the state reports the serving gateway", async () => {
  const producer = startProducer({ redisUrl: valkey.url, stream: "order" });
  const gateway = await startGateway({ redisUrl: valkey.url });
  const rec = recorder(gateway.wsUrl, ["order"]);
  try {
    await withContext(async () => {
      await waitFor(() => rec.results.length >= 10, { what: "10 results" });
      assert.equal(rec.sub.state, "open");
      assert.equal(rec.sub.gateway, gateway.id);
      assert.equal(rec.states[0].state, "open");
      assertContiguous(rec.results);
      assert.equal(rec.sub.cursor.duplicates, 0);
    });
  } finally {
    rec.sub.close();
    await Promise.all([gateway.stop(), producer.stop()]);
  }
});

test("after a gateway is killed, the subscription resumes on its replacement with no gap and no duplicate", async () => {
  const producer = startProducer({ redisUrl: valkey.url, stream: "resume" });
  const first = await startGateway({ redisUrl: valkey.url });
  const rec = recorder(first.wsUrl, ["resume"]);
  let second;
  try {
    await withContext(async () => {
      await waitFor(() => rec.results.length >= 5, { what: "5 results from the first gateway" });
      await first.stop("SIGKILL");
      await waitFor(() => rec.sub.state === "reconnecting", { what: "the client to notice the kill" });
      const atKill = rec.results.length;
      const lastSeq = rec.results.at(-1).seq;
      // The producer keeps publishing while no gateway runs: those results exist only in the
      // Redis history until the replacement replays them. Wait for some to be published.
      await waitFor(
        async () => {
          const status = publishedSeq(valkey.url, "resume");
          return status !== null && status >= lastSeq + 5;
        },
        { what: "results published while no gateway runs" },
      );
      second = await startGateway({ redisUrl: valkey.url, port: first.port });
      await waitFor(() => rec.results.length >= atKill + 15, { what: "15 results after the replacement" });
      assert.equal(rec.sub.gateway, second.id);
      assert.equal(rec.sub.reconnects, 1);
      assertContiguous(rec.results);
      assert.equal(rec.sub.cursor.duplicates, 0);
      const reconnecting = rec.states.filter((s) => s.state === "reconnecting");
      assert.ok(reconnecting.length >= 1 && reconnecting.every((s) => /connection closed|cannot connect/.test(s.reason)));
    });
  } finally {
    rec.sub.close();
    await Promise.all([first.stop(), second?.stop(), producer.stop()]);
  }
});

test("a replay of results already delivered is dropped, and live results go on", async () => {
  const producer = startProducer({ redisUrl: valkey.url, stream: "dedupe" });
  const gateway = await startGateway({ redisUrl: valkey.url });
  const rec = recorder(gateway.wsUrl, ["dedupe"]);
  try {
    await withContext(async () => {
      await waitFor(() => rec.results.length >= 8, { what: "8 results" });
      const { epoch, seq } = rec.results[0];
      const replayed = rec.results.at(-1).seq - seq; // at least these are replayed and already seen
      // Ask the gateway, on the open connection, to replay from the first result: what a
      // resubscription racing a live delivery (a `gap`, a reconnect) makes it do.
      rec.sub._ws.send(JSON.stringify({ op: "subscribe", stream: "dedupe", since: seq, epoch }));
      await waitFor(() => rec.sub.cursor.duplicates >= replayed, { what: `${replayed} duplicates dropped` });
      const count = rec.results.length;
      await waitFor(() => rec.results.length >= count + 3, { what: "live results after the replay" });
      assertContiguous(rec.results);
    });
  } finally {
    rec.sub.close();
    await Promise.all([gateway.stop(), producer.stop()]);
  }
});

test("a position beyond the stream's newest result is reset, and results arrive again", async () => {
  // Known defect (issue 20): no reset came, and the cursor dropped every result up to the
  // (corrupt) position as already seen.
  const producer = startProducer({ redisUrl: valkey.url, stream: "ahead" });
  const gateway = await startGateway({ redisUrl: valkey.url });
  const probe = recorder(gateway.wsUrl, ["ahead"]);
  let rec;
  try {
    await withContext(async () => {
      await waitFor(() => probe.results.length >= 1, { what: "a first result" });
      const { epoch, seq } = probe.results[0];
      probe.sub.close();
      rec = recorder(gateway.wsUrl, ["ahead"], { since: { ahead: { epoch, seq: seq + 1_000_000 } } });
      await waitFor(() => rec.results.length >= 3, { what: "results after the reset" });
      const resets = rec.messages.filter((m) => m.type === "reset").map((m) => m.reason);
      assert.deepEqual(resets, ["position-ahead"]);
      assertContiguous(rec.results);
    });
  } finally {
    probe.sub.close();
    rec?.sub.close();
    await Promise.all([gateway.stop(), producer.stop()]);
  }
});

test("a gateway that is down at first is reached once it starts", async () => {
  const producer = startProducer({ redisUrl: valkey.url, stream: "late" });
  const port = await freePort();
  const rec = recorder(`ws://127.0.0.1:${port}/ws`, ["late"]);
  let gateway;
  try {
    await withContext(async () => {
      await waitFor(() => rec.states.filter((s) => s.state === "reconnecting").length >= 2, {
        what: "two failed attempts",
      });
      assert.ok(rec.states.every((s) => s.state !== "open"));
      assert.match(rec.states.find((s) => s.state === "reconnecting").reason, /cannot connect/);
      gateway = await startGateway({ redisUrl: valkey.url, port });
      await waitFor(() => rec.results.length >= 3, { what: "results once the gateway runs" });
      assert.equal(rec.sub.gateway, gateway.id);
      assertContiguous(rec.results);
    });
  } finally {
    rec.sub.close();
    await Promise.all([gateway?.stop(), producer.stop()]);
  }
});

test("a handshake refused with 404 fails at once instead of retrying", async () => {
  const gateway = await startGateway({ redisUrl: valkey.url });
  const rec = recorder(`ws://127.0.0.1:${gateway.port}/nowhere`, ["cam"]);
  try {
    await withContext(async () => {
      await waitFor(() => rec.sub.state === "failed", { what: "the subscription to fail" });
      const failed = rec.states.at(-1);
      assert.equal(failed.status, 404);
      assert.match(failed.reason, /HTTP 404/);
      // Terminal: `failed` is never left, so no attempt follows the first.
      assert.deepEqual(rec.states.map((s) => s.state), ["failed"]);
    });
  } finally {
    rec.sub.close();
    await gateway.stop();
  }
});

test("when the gateway refuses every stream, the subscription fails, closes, and add() revives it", async () => {
  const producer = startProducer({ redisUrl: valkey.url, stream: "revived" });
  const gateway = await startGateway({ redisUrl: valkey.url });
  const rec = recorder(gateway.wsUrl, ["no such/stream", "../etc"]);
  const connections = async () => {
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    return Number(/^framecast_gateway_connections (\S+)$/m.exec(text)?.[1]);
  };
  try {
    await withContext(async () => {
      await waitFor(() => rec.sub.state === "failed", { what: "the subscription to fail" });
      const failed = rec.states.at(-1);
      assert.match(failed.reason, /refused every stream \(no such\/stream: bad-stream: .*; \.\.\/etc: bad-stream: /);
      assert.deepEqual(rec.states.map((s) => s.state), ["open", "failed"]);
      assert.equal(rec.messages.filter((m) => m.type === "error").length, 2);
      await waitFor(async () => (await connections()) === 0, { what: "the gateway to see the connection closed" });
      // A stream the gateway takes (the viewer's picker does this): connected again, results flow.
      rec.sub.add("revived");
      await waitFor(() => rec.results.length >= 3, { what: "results on the added stream" });
      assert.equal(rec.sub.state, "open");
      assert.deepEqual(rec.states.map((s) => s.state), ["open", "failed", "connecting", "open"]);
      assertContiguous(rec.results);
    });
  } finally {
    rec.sub.close();
    await Promise.all([gateway.stop(), producer.stop()]);
  }
});
