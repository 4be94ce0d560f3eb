// The client against a real server on port 0 (the release binary), in Node 20.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TidegateError } from "../dist/index.js";
import { client, readAll, sleep, startProxy, startTidegate, token, waitFor } from "./support.mjs";

const ADMIN = token("admin", { sub: "js-admin" });

describe("the client against a server", () => {
  let server;
  before(async () => {
    server = await startTidegate(["--retention-check-interval-ms", "100"]);
  });
  after(async () => {
    await server?.stop();
  });

  test("publishes and fetches; a repeated idempotency key appends nothing", async () => {
    const tg = client(server.url, { token: ADMIN });
    await tg.createTopic("basics", { partitions: 2 });
    const offsets = await tg.publish("basics", [
      { key: "u1", value: { total: 42 } },
      { partition: 1, value: "plain" },
    ]);
    assert.equal(offsets.length, 2);
    assert.deepEqual(offsets[1], { partition: 1, offset: 0 });
    const again = await tg.publish("basics", [{ partition: 1, value: "once" }], { idempotencyKey: "k-1" });
    const repeat = await tg.publish("basics", [{ partition: 1, value: "once" }], { idempotencyKey: "k-1" });
    assert.deepEqual(repeat, again);
    const page = await tg.fetch("basics", 1, { offset: 0, limit: 10 });
    assert.deepEqual(
      page.records.map((r) => r.value),
      ["plain", "once"],
    );
    assert.equal(page.next_offset, 2);
    const waited = Date.now();
    const empty = await tg.fetch("basics", 1, { offset: 2, waitMs: 300 });
    assert.equal(empty.records.length, 0);
    assert.ok(Date.now() - waited >= 250, "the long poll waited");
  });

  test("errors are typed with the server's code and status", async () => {
    const tg = client(server.url, { token: ADMIN });
    await assert.rejects(tg.fetch("no-such-topic", 0), (error) => {
      assert.ok(error instanceof TidegateError);
      assert.equal(error.code, "topic_not_found");
      assert.equal(error.status, 404);
      return true;
    });
    await tg.createTopic("typed");
    await assert.rejects(tg.createTopic("typed"), (error) => error.status === 409 && error.code === "topic_exists");
    await assert.rejects(tg.fetch("typed", 0, { offset: 5 }), (error) => {
      assert.equal(error.status, 416);
      assert.equal(error.details.high_watermark, 0);
      return true;
    });
  });

  test("subscriptions on several partitions get every record once, in order, through a proxy cut again and again", async () => {
    const admin = client(server.url, { token: ADMIN });
    await admin.createTopic("cuts", { partitions: 3 });
    const proxy = await startProxy(server.url);
    const states = [];
    const tg = client(proxy.url, { token: ADMIN, onConnectionState: (s) => states.push(s) });
    const received = [];
    const sub = tg.subscribe(
      "cuts",
      { from: "earliest" },
      {
        records(records) {
          received.push(...records);
        },
      },
    );
    const total = 3000;
    const cutter = setInterval(() => proxy.cut(), 120);
    try {
      for (let n = 0; n < total; n += 50) {
        await admin.publish(
          "cuts",
          Array.from({ length: 50 }, (_, i) => ({ key: `k${(n + i) % 17}`, value: { n: n + i } })),
        );
        await sleep(5);
      }
      await waitFor("every record", () => received.length >= total, () => `${received.length} of ${total}`, 30_000);
    } finally {
      clearInterval(cutter);
    }
    await sleep(300);
    const seen = new Set(received.map((r) => `${r.partition}/${r.offset}`));
    assert.equal(seen.size, received.length, "no record twice");
    assert.equal(received.length, total, "no record lost");
    for (let partition = 0; partition < 3; partition++) {
      const offsets = received.filter((r) => r.partition === partition).map((r) => r.offset);
      assert.deepEqual(offsets, offsets.map((_, i) => i), `partition ${partition} in order from 0`);
    }
    const values = received.map((r) => r.value.n).sort((a, b) => a - b);
    assert.deepEqual(values, Array.from({ length: total }, (_, i) => i));
    assert.ok(proxy.connections >= 4, `the proxy was cut and the client came back (${proxy.connections} connections)`);
    assert.ok(states.includes("reconnecting"));
    assert.ok(sub.cursor, "the subscription knows where it stands");
    tg.close();
    await proxy.close();
  });

  test("a refreshed token goes over the open socket before the old one expires", async () => {
    const admin = client(server.url, { token: ADMIN });
    await admin.createTopic("refresh");
    const proxy = await startProxy(server.url);
    let minted = 0;
    const tg = client(proxy.url, {
      getToken: () => {
        minted += 1;
        return token("subscribe:refresh", { sub: "refresher", ttl: "3s" });
      },
    });
    const received = [];
    const errors = [];
    tg.subscribe("refresh", { from: "earliest" }, { records: (r) => received.push(...r), error: (e) => errors.push(e) });
    for (let n = 0; n < 8; n++) {
      await admin.publish("refresh", [{ value: n }]);
      await sleep(700);
    }
    await waitFor("8 records", () => received.length === 8, () => `${received.length}`);
    assert.ok(minted >= 3, `the token was refreshed (${minted} minted in 5.6 s of 3 s tokens)`);
    assert.equal(proxy.connections, 1, "one socket the whole time: no 4001 close");
    assert.deepEqual(errors, []);
    tg.close();
    await proxy.close();
  });

  test("a 4001 close gets a fresh token and resumes; a refused fresh token is terminal", async () => {
    const admin = client(server.url, { token: ADMIN });
    await admin.createTopic("unauthorized");
    await admin.publish("unauthorized", [{ value: "first" }]);
    const proxy = await startProxy(server.url);
    const tokens = ["not-a-jwt", token("subscribe:unauthorized", { sub: "second-try" })];
    const received = [];
    const tg = client(proxy.url, { getToken: () => tokens.shift() ?? "still-not-a-jwt" });
    tg.subscribe("unauthorized", { from: "earliest" }, { records: (r) => received.push(...r) });
    await waitFor("the record after the refresh", () => received.length === 1, () => `${received.length}`);
    assert.equal(proxy.connections, 2, "refused once (4001), then one socket with the fresh token");
    tg.close();

    const refused = client(proxy.url, { getToken: () => "never-a-jwt" });
    const errors = [];
    refused.subscribe("unauthorized", { from: "earliest" }, { error: (e) => errors.push(e) });
    await waitFor("a terminal error", () => errors.some((e) => e.terminal), () => JSON.stringify(errors));
    const connections = proxy.connections;
    await sleep(1000);
    assert.equal(proxy.connections, connections, "no reconnect after the terminal refusal");
    assert.equal(refused.connectionState, "failed");
    assert.equal(errors.find((e) => e.terminal).code, "unauthorized");
    await proxy.close();
  });

  test("a subscription refused with 403 ends and the socket does not reconnect", async () => {
    const admin = client(server.url, { token: ADMIN });
    await admin.createTopic("forbidden");
    const proxy = await startProxy(server.url);
    const tg = client(proxy.url, { token: token("subscribe:other", { sub: "outsider" }) });
    const errors = [];
    const states = [];
    const sub = tg.subscribe("forbidden", {}, { error: (e) => errors.push(e), state: (s) => states.push(s) });
    await waitFor("the refusal", () => errors.length > 0, () => "none");
    assert.equal(errors[0].code, "forbidden");
    assert.equal(errors[0].terminal, true);
    assert.equal(sub.state, "closed");
    await sleep(800);
    assert.equal(proxy.connections, 1, "no reconnect storm");
    assert.equal(tg.connectionState, "idle");
    await assert.rejects(
      client(server.url, { token: token("subscribe:other", { sub: "outsider" }) }).publish("forbidden", [{ value: 1 }]),
      (error) => error.status === 403 && error.terminal,
    );
    await proxy.close();
  });

  test("a retention gap is reported, never skipped silently", async () => {
    const admin = client(server.url, { token: ADMIN });
    await admin.createTopic("gaps");
    await admin.publish("gaps", [{ value: 0 }, { value: 1 }, { value: 2 }]);
    // A cursor at offset 0 of partition 0; retention then deletes it (retention_ms 1).
    await admin.updateTopic("gaps", { retention_ms: 1 });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const details = await admin.describeTopic("gaps");
      if (details.partition_offsets[0].log_start_offset > 0) break;
      assert.ok(Date.now() < deadline, "retention deleted the records");
      await admin.publish("gaps", [{ value: "nudge" }]);
      await sleep(200);
    }
    const gaps = [];
    const tg = client(server.url, { token: ADMIN });
    tg.subscribe("gaps", { from: { offsets: { 0: 0 } } }, { gap: (g) => gaps.push(g) });
    await waitFor("the gap", () => gaps.length > 0, () => "none");
    assert.equal(gaps[0].partition, 0);
    assert.ok(gaps[0].logStartOffset > 0);
    tg.close();
  });
});

describe("publish retries", () => {
  test("through cut connections, with no duplicate", async () => {
    const server = await startTidegate();
    try {
      const admin = client(server.url, { token: ADMIN });
      await admin.createTopic("retries");
      const proxy = await startProxy(server.url);
      const tg = client(proxy.url, { token: ADMIN });
      for (let n = 0; n < 5; n++) {
        proxy.cut(); // no kept-alive connection: the next one is new, and loses its answer
        proxy.dropResponses(1);
        const offsets = await tg.publish("retries", [{ value: n }]);
        assert.deepEqual(offsets, [{ partition: 0, offset: n }], "the retry answered the first append");
      }
      assert.ok(proxy.connections >= 10, `each publish lost its first answer (${proxy.connections} connections)`);
      const stored = await readAll(admin, "retries", 1);
      assert.deepEqual(
        stored.map((r) => r.value),
        [0, 1, 2, 3, 4],
      );
      await proxy.close();
    } finally {
      await server.stop();
    }
  });

  test("a 429 with Retry-After is waited out, with no duplicate", async () => {
    const server = await startTidegate(["--quota-requests-per-sec", "2"]);
    try {
      const statuses = [];
      const observed = async (...args) => {
        const response = await fetch(...args);
        statuses.push(response.status);
        return response;
      };
      const tg = client(server.url, { token: ADMIN, fetch: observed });
      await tg.createTopic("quota");
      const started = Date.now();
      const published = await Promise.all(Array.from({ length: 6 }, (_, n) => tg.publish("quota", [{ value: n }])));
      assert.equal(published.length, 6);
      assert.ok(statuses.includes(429), `the quota refused some (${statuses})`);
      assert.ok(Date.now() - started >= 900, "the client waited for Retry-After");
      const stored = await readAll(tg, "quota", 1);
      assert.deepEqual(
        stored.map((r) => r.value).sort(),
        [0, 1, 2, 3, 4, 5],
      );
    } finally {
      await server.stop();
    }
  });
});

describe("groups", () => {
  let server;
  before(async () => {
    server = await startTidegate();
  });
  after(async () => {
    await server?.stop();
  });

  test("two HTTP consumers of one group split the partitions and commit", async () => {
    const tg = client(server.url, { token: ADMIN });
    await tg.createTopic("split", { partitions: 4 });
    await tg.publish(
      "split",
      Array.from({ length: 40 }, (_, n) => ({ partition: n % 4, value: n })),
    );
    const options = { topics: ["split"], autoOffsetReset: "earliest", waitMs: 200, sessionTimeoutMs: 5000 };
    const first = tg.consumer("splitters", options);
    const second = tg.consumer("splitters", options);
    const seen = new Map();
    let assignments;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const batches = await Promise.all([first.poll(), second.poll()]);
      for (const [i, batch] of batches.entries()) {
        for (const record of batch?.records ?? []) seen.set(`${record.partition}/${record.offset}`, i);
      }
      assignments = batches.map((b) => (b?.assignment ?? []).map((p) => p.partition).sort());
      const split = assignments[0].length === 2 && assignments[1].length === 2;
      if (split && seen.size === 40 && first.generation === second.generation) break;
      assert.ok(Date.now() < deadline, `no split: ${JSON.stringify(assignments)}, ${seen.size} records`);
    }
    assert.deepEqual([...assignments[0], ...assignments[1]].sort(), [0, 1, 2, 3]);
    await first.commit();
    await second.commit();
    const group = await tg.describeGroup("splitters");
    const committed = Object.fromEntries(
      group.partitions.map((o) => [o.partition, o.committed_offset]),
    );
    assert.deepEqual(committed, { 0: 10, 1: 10, 2: 10, 3: 10 });
    await first.close();
    await second.close();
    assert.equal((await tg.describeGroup("splitters")).members.length, 0, "close() left the group");
  });

  test("an auto-committing consumer iterates until closed", async () => {
    const tg = client(server.url, { token: ADMIN });
    await tg.createTopic("iterate", { partitions: 2 });
    await tg.publish("iterate", Array.from({ length: 10 }, (_, n) => ({ partition: n % 2, value: n })));
    const consumer = tg.consumer("iterators", { topics: ["iterate"], autoCommit: true, autoOffsetReset: "earliest", waitMs: 100 });
    const values = [];
    for await (const batch of consumer) {
      values.push(...batch.records.map((r) => r.value));
      if (values.length >= 10) await consumer.close();
    }
    assert.deepEqual(values.sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const group = await tg.describeGroup("iterators");
    assert.deepEqual(
      group.partitions.map((o) => o.committed_offset),
      [5, 5],
    );
  });

  test("a WebSocket group member and an HTTP consumer share a group", async () => {
    const tg = client(server.url, { token: ADMIN });
    await tg.createTopic("shared", { partitions: 4 });
    const socketAssignments = [];
    const wsRecords = [];
    const member = tg.subscribe(
      "shared",
      { group: "sharers", from: "earliest" },
      {
        assignment: (partitions, generation) => socketAssignments.push({ partitions, generation }),
        records: (records) => wsRecords.push(...records),
      },
    );
    await waitFor("the socket member's assignment", () => socketAssignments.length > 0, () => "none");
    const consumer = tg.consumer("sharers", { topics: ["shared"], autoOffsetReset: "earliest", waitMs: 200 });
    let httpPartitions = [];
    const deadline = Date.now() + 20_000;
    while (httpPartitions.length !== 2 || socketAssignments.at(-1).partitions.length !== 2) {
      const batch = await consumer.poll();
      httpPartitions = (batch?.assignment ?? []).map((p) => p.partition);
      assert.ok(Date.now() < deadline, `no split: ${JSON.stringify(socketAssignments)} / ${httpPartitions}`);
    }
    const socketPartitions = socketAssignments.at(-1).partitions;
    assert.deepEqual([...socketPartitions, ...httpPartitions].sort(), [0, 1, 2, 3]);
    await tg.publish("shared", [0, 1, 2, 3].map((partition) => ({ partition, value: partition })));
    const httpRecords = [];
    while (httpRecords.length < 2) httpRecords.push(...((await consumer.poll())?.records ?? []));
    await waitFor("the socket member's records", () => wsRecords.length >= 2, () => `${wsRecords.length}`);
    assert.deepEqual(httpRecords.map((r) => r.partition).sort(), [...httpPartitions].sort());
    assert.deepEqual(wsRecords.map((r) => r.partition).sort(), [...socketPartitions].sort());
    await member.commit();
    const group = await tg.describeGroup("sharers");
    for (const partition of socketPartitions) {
      assert.equal(group.partitions.find((o) => o.partition === partition).committed_offset, 1);
    }
    await consumer.close();
    tg.close();
  });
});

/** Asks `check` every 200 ms until it answers true, for at most 20 s. */
async function until(what, check) {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe("what the console reads", () => {
  let server;
  before(async () => {
    server = await startTidegate(["--stats-interval-secs", "1"]);
  });
  after(async () => {
    await server?.stop();
  });

  test("offsets by time, search, stats, the cluster, groups and seek; a signal cancels a call", async () => {
    const tg = client(server.url, { token: ADMIN });
    await tg.createTopic("watched");
    const before = Date.now();
    await tg.publish("watched", [{ key: "a", value: { n: 1 } }, { key: "b", value: { n: 2 } }]);
    const at = await tg.offsetForTimestamp("watched", 0, before - 60_000);
    assert.equal(at.offset, 0);
    const found = await tg.fetch("watched", 0, { key: "b" });
    assert.deepEqual(found.records.map((r) => r.value), [{ n: 2 }]);
    assert.equal((await tg.fetch("watched", 0, { contains: '"n":1' })).records[0].key, "a");

    await until("the traffic in the stats", async () => {
      const stats = await tg.topicStats("watched", { windowS: 30 });
      return stats.interval_s === 1 && stats.points.reduce((sum, p) => sum + p.records_in, 0) === 2;
    });
    const cluster = await tg.cluster();
    assert.deepEqual(cluster.nodes.map((n) => n.id), [0]);
    assert.equal(cluster.controller, 0);
    assert.deepEqual(cluster.under_replicated, []);

    const consumer = tg.consumer("watchers", { topics: ["watched"], autoOffsetReset: "earliest", autoCommit: false });
    let polled = 0;
    await until("both records polled", async () => (polled += (await consumer.poll())?.records.length ?? 0) === 2);
    await consumer.commit();
    await consumer.close();
    assert.deepEqual((await tg.listGroups()).groups.map((g) => g.group), ["watchers"]);
    const moved = await tg.seek("watchers", "watched", "earliest");
    assert.deepEqual(moved.offsets, [{ partition: 0, offset: 0 }]);
    await until("the lag in the group's stats", async () => {
      const stats = await tg.groupStats("watchers", { windowS: 30 });
      return stats.points.at(-1)?.lag === 2 && stats.partitions[0]?.lag.at(-1) === 2;
    });

    const cancel = new AbortController();
    const waiting = tg.fetch("watched", 0, { offset: 2, waitMs: 10_000, signal: cancel.signal });
    setTimeout(() => cancel.abort(), 100);
    const started = Date.now();
    await assert.rejects(waiting, (error) => error instanceof TidegateError && error.code === "closed");
    assert.ok(Date.now() - started < 5000, "cancelled, not waited out");
  });
});
