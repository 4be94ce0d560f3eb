// tidegate in a real browser: headless Chromium (Debian's `chromium`, driven by
// playwright-core) opens the example page examples/browser/index.html from another
// origin. The page subscribes over WebSocket (the TypeScript client's bundle,
// examples/browser/tidegate.js) and over EventSource, and publishes through the client
// with a cross-origin fetch. Midway every connection
// is cut (the page reaches the server through a TCP proxy the test controls): the
// WebSocket client resumes from its cursor, EventSource from `Last-Event-ID`, and each
// list must end up equal to the log, every record exactly once, in offset order per
// partition.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { ROOT, apiAt, launchChromium, listen, sleep, startProxy, startTidegate, token, waitFor } from "./harness.mjs";

const EXAMPLE = join(ROOT, "examples", "browser");
const TOPIC = "browser";
const PARTITIONS = 3;

let tidegate;
let serverUrl;
let api;
let pageServer;
let proxy;
let browser;

/** Serves examples/browser on its own port: another origin than the API's. */
function servePage() {
  const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };
  const server = createServer((request, response) => {
    const name = new URL(request.url, "http://page").pathname.slice(1) || "index.html";
    const path = join(EXAMPLE, name);
    if (!/^[a-z]+\.(html|js)$/.test(name) || !existsSync(path)) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "Content-Type": types[extname(name)] }).end(readFileSync(path));
  });
  pageServer = server;
  return listen(server);
}

const pageUrl = (origin, settings) => `${origin}/index.html#${new URLSearchParams(settings)}`;

let pageOrigin;

before(async () => {
  pageOrigin = await servePage();
  tidegate = await startTidegate(["--allowed-origins", pageOrigin]);
  serverUrl = tidegate.url;
  api = apiAt(serverUrl);
  proxy = await startProxy(serverUrl);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  pageServer?.close();
  await tidegate?.stop();
});

test("a page on another origin receives records over WebSocket and EventSource, across dropped connections, exactly once", async () => {
  const admin = token("admin");
  await api("POST", "/v1/topics", { name: TOPIC, partitions: PARTITIONS }, admin);
  const publish = (from, count) =>
    api(
      "POST",
      `/v1/topics/${TOPIC}/records`,
      {
        records: Array.from({ length: count }, (_, i) => ({
          key: `key-${from + i}`,
          value: { n: from + i, text: `record ${from + i}` },
        })),
      },
      admin,
    );
  await publish(0, 30);

  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = { ws: [], sse: [] };
  const notices = [];
  const pageErrors = [];
  const consoleErrors = []; // for diagnostics: the cut connections log some on purpose
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  await page.exposeFunction("tidegateSeen", (via, record) => seen[via].push(record));
  await page.exposeFunction("tidegateNotice", (detail) => notices.push(detail));
  await page.addInitScript(() => {
    addEventListener("tidegate:record", (e) => window.tidegateSeen(e.detail.via, e.detail.record));
    addEventListener("tidegate:notice", (e) => window.tidegateNotice(e.detail));
  });
  const describe = () =>
    JSON.stringify({ ws: seen.ws.length, sse: seen.sse.length, notices, pageErrors, consoleErrors, requests: proxy.requests.map((r) => r.split("\r\n")[0]) });

  await page.goto(
    pageUrl(pageOrigin, {
      server: proxy.url,
      token: token(`publish:${TOPIC} subscribe:${TOPIC}`),
      topic: TOPIC,
      from: "earliest",
    }),
  );
  await waitFor("the 30 stored records on both", () => seen.ws.length >= 30 && seen.sse.length >= 30, describe);

  // Live records, published by the page itself (cross-origin fetch with a preflight).
  for (const value of ["from the page 1", "from the page 2"]) {
    await page.fill("input[name=value]", value);
    await page.click("button");
    await page.waitForFunction(() => document.querySelector("input[name=value]").value === "");
  }
  await waitFor("the page's records on both", () => seen.ws.length >= 32 && seen.sse.length >= 32, describe);

  // Cut every connection, publish while the page is away, then more once it is back.
  proxy.cut();
  await publish(30, 20);
  await waitFor(
    "both to reconnect",
    () =>
      proxy.requests.filter((r) => r.startsWith("GET /v1/ws")).length >= 2 &&
      proxy.requests.filter((r) => r.startsWith(`GET /v1/topics/${TOPIC}/events`)).length >= 2,
    describe,
  );
  await publish(50, 10);
  await waitFor("every record on both", () => seen.ws.length >= 62 && seen.sse.length >= 62, describe);
  // Anything duplicated would arrive right behind; give it a moment to show.
  await sleep(500);

  const log = [];
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const fetched = await api("GET", `/v1/topics/${TOPIC}/partitions/${partition}/records?offset=0&limit=1000`, undefined, admin);
    log.push(...fetched.records);
  }
  assert.equal(log.length, 62);
  const key = (r) => `${r.partition}:${r.offset}:${JSON.stringify(r.value)}`;
  const expected = log.map(key).sort();
  for (const via of ["ws", "sse"]) {
    assert.deepEqual(seen[via].map(key).sort(), expected, `${via}: exactly the log, once each`);
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const offsets = seen[via].filter((r) => r.partition === partition).map((r) => r.offset);
      assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), `${via}: partition ${partition} in order`);
    }
  }
  // The EventSource came back by itself, naming where it was.
  const resumed = proxy.requests.filter((r) => r.startsWith(`GET /v1/topics/${TOPIC}/events`))[1];
  assert.match(resumed, /\r\nlast-event-id: \S+/i, "the reconnect sends Last-Event-ID");
  assert.deepEqual(notices, [], "no notices");
  assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
  await context.close();
});

test("a page whose origin is not allowed cannot open a WebSocket", async () => {
  // Same page, served by a second server: another origin, not in --allowed-origins.
  const stranger = createServer((request, response) => {
    response.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><title>stranger</title>");
  });
  await new Promise((resolve) => stranger.listen(0, "127.0.0.1", resolve));
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${stranger.address().port}/`);
    const outcome = await page.evaluate(
      ([url, accessToken]) =>
        new Promise((resolve) => {
          const socket = new WebSocket(`${url.replace("http", "ws")}/v1/ws?access_token=${accessToken}`);
          socket.onopen = () => resolve("open");
          socket.onclose = (event) => resolve(`closed ${event.code}`);
        }),
      [serverUrl, token(`subscribe:${TOPIC}`)],
    );
    // The upgrade is answered 403, which a browser reports as an abnormal close.
    assert.equal(outcome, "closed 1006");
  } finally {
    await context.close();
    stranger.close();
  }
});

test("the client's bundle in a page on another origin refreshes its token over the open socket and resumes across cuts", async () => {
  const admin = token("admin");
  await api("POST", "/v1/topics", { name: "refreshing", partitions: 2 }, admin);
  const context = await browser.newContext();
  let minted = 0;
  try {
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    // Tokens that live 3 s: the socket stays open only if each is replaced in time.
    await page.exposeFunction("mintToken", () => {
      minted += 1;
      return token("publish:refreshing subscribe:refreshing", { sub: "page", ttl: "3s" });
    });
    await page.goto(`${pageOrigin}/tidegate.js`);
    const sockets = () => proxy.requests.filter((r) => r.startsWith("GET /v1/ws")).length;
    const before = sockets();
    await page.evaluate(async ([origin, url]) => {
      const { Tidegate } = await import(`${origin}/tidegate.js`);
      window.received = [];
      window.tg = new Tidegate({ url, getToken: () => window.mintToken() });
      window.tg.subscribe("refreshing", { from: "earliest" }, { records: (r) => window.received.push(...r) });
      // Published by the page, through the client (CORS preflight with Idempotency-Key).
      await window.tg.publish("refreshing", [{ partition: 0, value: "from the page" }]);
    }, [pageOrigin, proxy.url]);
    const received = () => page.evaluate(() => window.received.length);
    for (let n = 0; n < 6; n++) {
      await api("POST", "/v1/topics/refreshing/records", { records: [{ partition: n % 2, value: n }] }, admin);
      await sleep(800);
    }
    const describe = async () => `${await received()} received, ${minted} tokens, ${sockets() - before} sockets`;
    let count = 0;
    const deadline = Date.now() + 10_000;
    while ((count = await received()) < 7 && Date.now() < deadline) await sleep(50);
    assert.equal(count, 7, await describe());
    assert.equal(sockets() - before, 1, `one socket for 4.8 s of 3 s tokens: ${await describe()}`);
    assert.ok(minted >= 3, await describe());

    // Cut, publish while away: the resumed subscription gets exactly the missing ones.
    proxy.cut();
    await api("POST", "/v1/topics/refreshing/records", { records: [{ partition: 0, value: "away" }, { partition: 1, value: "away" }] }, admin);
    while ((count = await received()) < 9 && Date.now() < deadline + 10_000) await sleep(50);
    await sleep(300);
    const records = await page.evaluate(() => window.received.map((r) => `${r.partition}:${r.offset}`));
    assert.equal(records.length, 9, await describe());
    assert.equal(new Set(records).size, 9, "each record once");
    assert.ok(sockets() - before >= 2, "the cut socket was replaced");
    assert.deepEqual(pageErrors, []);
  } finally {
    await context.close();
  }
});
