// The web console (src/console/, served by the binary at / and /console/*) in a real
// browser: headless Chromium against `tidegate serve`, used as a person would. Paste a
// token, create a topic, publish from the console and see the record arrive in the live
// tail (WebSocket); a consumer group made over HTTP shows its members and lag, and keeps
// it current; charts draw a topic's traffic and a group's lag; the cluster page shows the
// node and every partition's replicas; a search by key or text goes on across bounded
// scans; a memberless group's offsets reset, and its next poll starts there; 401 and 403
// are explained; a phone-width screen never scrolls sideways.
// The console must work offline: any request to another origin is blocked and fails the
// test, and its files name no http(s) URL at all. The screenshots in docs/ come from here.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, apiAt, launchChromium, startTidegate, token } from "./harness.mjs";

const TOPIC = "orders";
const GROUP = "billing";
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const FILES = {
  "/": "text/html",
  "/console/console.css": "text/css",
  "/console/console.js": "text/javascript",
  "/console/tidegate.js": "text/javascript",
  "/console/uPlot.esm.js": "text/javascript",
  "/console/uPlot.min.css": "text/css",
};
// Third-party files (scripts/vendor-pages): their comments cite URLs, which the page never
// fetches (every request to another origin fails the last test).
const VENDORED = new Set(["/console/uPlot.esm.js", "/console/uPlot.min.css"]);
// Each search call scans this many records at most, so that a search takes several calls.
const SCAN = 10;

let tidegate;
let api;
let admin;
let browser;
let page;
const foreign = []; // requests the page tried to make to other origins (all blocked)
const pageErrors = [];
// What the served Content-Security-Policy blocked (401/403 answers are logged as errors
// too, on purpose, so only policy violations are kept).
const blockedByPolicy = [];

before(async () => {
  // Sampled every second, so that the charts have points within the test's time.
  tidegate = await startTidegate(["--stats-interval-secs", "1", "--max-scan-records", String(SCAN)]);
  api = apiAt(tidegate.url);
  admin = token("admin");
  browser = await launchChromium();
  const context = await browser.newContext({
    viewport: DESKTOP,
    locale: "en-US",
    timezoneId: "UTC",
    colorScheme: "light",
    reducedMotion: "reduce",
  });
  context.setDefaultTimeout(10_000);
  const origin = new URL(tidegate.url).origin;
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    foreign.push(url);
    return route.abort("blockedbyclient");
  });
  page = await context.newPage();
  // Routes see HTTP only; sockets are checked as they open.
  page.on("websocket", (socket) => {
    if (new URL(socket.url()).host !== new URL(origin).host) foreign.push(socket.url());
  });
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error" && message.text().includes("Content Security Policy")) {
      blockedByPolicy.push(message.text());
    }
  });
});

after(async () => {
  await browser?.close();
  await tidegate?.stop();
});

const show = (hash) => page.goto(`${tidegate.url}/${hash}`);
const button = (name) => page.getByRole("button", { name, exact: true });
const heading = (name) => page.getByRole("heading", { level: 1, name, exact: true });
const alert = (title) => page.getByRole("alert").filter({ hasText: title });
const statValue = (label) =>
  page.locator(".stat").filter({ has: page.getByText(label, { exact: true }) }).locator(".stat-value");
const cardTitled = (title) =>
  page.locator(".card").filter({ has: page.getByRole("heading", { level: 2, name: title, exact: true }) });

async function setToken(jwt) {
  await page.locator("#identity").getByRole("button", { name: /Set token|Change/ }).click();
  await page.getByLabel("Token", { exact: true }).fill(jwt);
  await button("Save token").click();
}

/** A screenshot for docs/, stable from run to run: times and member ids (which differ on
 * every run) are masked; the top of the page, no toasts, nothing focused or hovered. (The
 * screenshot `style` option would be refused by a Content-Security-Policy.) */
async function screenshot(name, of = page) {
  await page.evaluate(() => {
    document.activeElement?.blur();
    document.getElementById("toasts").replaceChildren();
    scrollTo(0, 0);
  });
  await page.mouse.move(0, 0);
  await of.screenshot({
    path: join(ROOT, "docs", name),
    animations: "disabled",
    mask: [page.locator("time"), page.locator("code.member")],
    maskColor: "#d9dee6",
  });
}

test("the console's files come from the binary and name no other origin", async () => {
  const referenced = new Set();
  for (const [path, type] of Object.entries(FILES)) {
    const response = await fetch(tidegate.url + path);
    assert.equal(response.status, 200, path);
    const contentType = response.headers.get("content-type");
    assert.ok(contentType?.startsWith(type), `${path}: ${contentType}`);
    const text = await response.text();
    if (!VENDORED.has(path)) assert.doesNotMatch(text, /https?:\/\//i, `${path} names a URL`);
    for (const [file] of text.matchAll(/\/console\/[\w.-]+/g)) referenced.add(file);
  }
  // Every file the console loads is one of those checked here.
  assert.deepEqual([...referenced].sort(), Object.keys(FILES).filter((path) => path !== "/").sort());
});

test("with an admin token: create a topic, publish from the console, see the record in the live tail", async () => {
  await show("");
  await alert("Token missing, invalid or expired").waitFor();
  await setToken(admin);
  await page.locator("#identity").getByText("browser-test").waitFor();
  await page.getByText("No topics yet").waitFor();

  await button("New topic").click();
  await page.getByLabel("Name", { exact: true }).fill(TOPIC);
  await page.getByLabel("Partitions", { exact: true }).fill("3");
  await button("Create topic").click();
  await heading(TOPIC).waitFor();
  assert.equal(new URL(page.url()).hash, `#/topics/${TOPIC}`);
  await cardTitled("Partitions").locator("tbody tr").nth(2).waitFor();

  await page.getByRole("link", { name: "Live tail" }).click();
  await page.locator(".badge", { hasText: "live" }).waitFor();

  const value = page.getByLabel("Value", { exact: true });
  await value.fill('{"id": 1001,');
  await page.getByText("Not valid JSON").waitFor();
  await button("Publish").click(); // refused by the form: nothing is sent
  await value.fill('{"id": 1001, "item": "kettle", "qty": 1, "total": 39.90}');
  await page.getByLabel("Key", { exact: true }).fill("customer-17");
  await page.getByLabel("Headers", { exact: true }).fill("source: console");
  await button("Publish").click();
  const published = await page.getByRole("status").filter({ hasText: "Published" }).textContent();
  const [, partition, offset] = published.match(/partition (\d+).*offset (\d+)/).map(Number);
  assert.equal(offset, 0, "the first record of its partition: the invalid value was never sent");

  const newest = cardTitled("Records").locator("tbody tr").first();
  await newest.filter({ hasText: "kettle" }).waitFor();
  assert.match(await newest.textContent(), new RegExp(`^${partition}0.*customer-17.*source: console`));
  const log = await api("GET", `/v1/topics/${TOPIC}/partitions/${partition}/records?offset=0`, undefined, admin);
  assert.deepEqual(
    log.records.map(({ key, value, headers }) => ({ key, value, headers })),
    [{ key: "customer-17", value: { id: 1001, item: "kettle", qty: 1, total: 39.9 }, headers: { source: "console" } }],
  );

  // Records from any producer arrive, newest first (one request each: the records of one
  // request are committed together, in no order across partitions).
  for (const record of [
    { key: "customer-4", value: { id: 1002, item: "teapot", qty: 2, total: 54 } },
    { key: "customer-9", value: { id: 1003, item: "mug", qty: 6, total: 47.4 } },
    { key: "customer-17", value: { id: 1004, item: "filter", qty: 1, total: 12.5 }, headers: { source: "shop" } },
  ]) {
    await api("POST", `/v1/topics/${TOPIC}/records`, { records: [record] }, admin);
  }
  await page.locator(".badge", { hasText: "4 received" }).waitFor();
  assert.match(await newest.textContent(), /filter/);
  await screenshot("console-tail.png");
});

test("topics show partitions, offsets, records and sizes; a partition reads from an offset or a time", async () => {
  await api("POST", "/v1/topics", { name: "payments", partitions: 6, retention_ms: 3 * 86_400_000 }, admin);
  await api("POST", "/v1/topics", {
    name: "audit.events", partitions: 1, retention_ms: -1, retention_bytes: 1 << 30,
  }, admin);
  // Enough in one partition for more than one page.
  await api("POST", `/v1/topics/${TOPIC}/records`, {
    records: Array.from({ length: 25 }, (_, i) => ({ partition: 0, key: `sku-${i}`, value: { restock: i } })),
  }, admin);
  await api("POST", "/v1/topics/payments/records", {
    records: Array.from({ length: 24 }, (_, i) => ({
      key: `account-${i % 7}`,
      value: { payment: i, cents: 1000 + i * 37 },
    })),
  }, admin);

  await show("#/topics");
  const rows = page.locator("tbody tr");
  await rows.nth(2).waitFor();
  const paymentsRow = await rows.filter({ hasText: "payments" }).textContent();
  assert.match(paymentsRow, /^payments624/, "name, partitions, records");
  await screenshot("console-topics.png");

  // Sizes are shown in units, per partition and in total.
  const size = /^\d+(\.\d)? (B|KiB|MiB)$/;
  const sizeColumn = await rows.evaluateAll((trs) => trs.map((tr) => tr.cells[3].textContent));
  assert.ok(sizeColumn.every((text) => size.test(text)), `sizes: ${sizeColumn}`);

  await page.getByRole("link", { name: TOPIC, exact: true }).click();
  await heading(TOPIC).waitFor();
  await statValue("Records").getByText("29", { exact: true }).waitFor();
  const partitionSizes = await cardTitled("Partitions").locator("tr").evaluateAll((trs) =>
    trs.slice(1).map((tr) => tr.cells[4].textContent),
  );
  assert.equal(partitionSizes.length, 4, "three partitions and the total");
  assert.ok(partitionSizes.every((text) => size.test(text)), `sizes: ${partitionSizes}`);
  assert.match(await statValue("Size").textContent(), size);

  // From a time long past: each partition from its first record, a page of 20 at most.
  const browse = cardTitled("Browse records");
  const shown = browse.locator("tbody tr");
  await browse.getByLabel("From", { exact: true }).selectOption("time");
  await browse.getByLabel("Time", { exact: true }).fill("2000-01-01T00:00:00");
  const { partition_offsets: bounds } = await api("GET", `/v1/topics/${TOPIC}`, undefined, admin);
  for (const { partition, high_watermark: stored } of bounds) {
    await browse.getByLabel("Partition", { exact: true }).selectOption(String(partition));
    await button("Read").click();
    if (stored === 0) {
      await browse.getByText("No records from offset 0").waitFor();
    } else {
      await browse.getByText(`Offsets 0–${Math.min(stored, 20) - 1}.`).waitFor();
      assert.equal(await shown.count(), Math.min(stored, 20));
    }
  }
  // From an offset, paging forward.
  await browse.getByLabel("Partition", { exact: true }).selectOption("0");
  await browse.getByLabel("From", { exact: true }).selectOption("offset");
  await browse.getByLabel("Offset", { exact: true }).fill("3");
  await button("Read").click();
  await browse.getByText("Offsets 3–22.").waitFor();
  await button("Next page").click();
  await browse.getByText("Offsets 23–24.").waitFor();
  assert.equal(await shown.count(), 2);
  assert.equal(await button("Next page").count(), 0, "the last page");
  await screenshot("console-topic.png");
});

test("a consumer group made over HTTP shows its members, assignment and lag, and keeps them current", async () => {
  const poll = (memberId) =>
    api("POST", `/v1/groups/${GROUP}/poll`, {
      topics: [TOPIC], member_id: memberId, auto_offset_reset: "earliest",
    }, admin);
  const first = await poll();
  const second = await poll(); // joins: a rebalance to generation 2
  const members = [await poll(first.member_id), second];
  const { partition_offsets: bounds } = await api("GET", `/v1/topics/${TOPIC}`, undefined, admin);
  // Each member has processed everything of its partitions so far.
  for (const member of members) {
    await api("POST", `/v1/groups/${GROUP}/commit`, {
      member_id: member.member_id,
      generation: member.generation,
      offsets: member.assignment.map(({ partition }) => ({
        topic: TOPIC,
        partition,
        offset: bounds[partition].high_watermark,
      })),
    }, admin);
  }
  const publishTo = (partitions) =>
    api("POST", `/v1/topics/${TOPIC}/records`, {
      records: partitions.map((partition, i) => ({ partition, value: { id: 2000 + i, item: "refill" } })),
    }, admin);
  await publishTo([0, 0, 1, 2, 2]);

  await show("#/groups");
  const row = page.locator("tbody tr", { hasText: GROUP });
  await row.locator(".badge", { hasText: /^5$/ }).waitFor();
  await row.getByRole("link", { name: GROUP }).click();
  await heading(GROUP).waitFor();
  const totalLag = statValue("Total lag");
  await totalLag.getByText("5", { exact: true }).waitFor();
  await statValue("Members").getByText("2", { exact: true }).waitFor();
  const lags = await cardTitled("Partitions").locator("tbody tr").evaluateAll((trs) =>
    trs.map((tr) => tr.lastElementChild.textContent),
  );
  assert.deepEqual(lags, ["2", "1", "2"]);
  await screenshot("console-groups.png");

  // The page refreshes by itself.
  await publishTo([1]);
  await totalLag.getByText("6", { exact: true }).waitFor();
});

test("a topic's partitions and retention change, and a topic goes once its name is typed", async () => {
  await show("#/topics/payments");
  await statValue("Partitions").getByText("6", { exact: true }).waitFor();
  await button("Edit").click();
  await page.getByLabel("Partitions", { exact: true }).fill("8");
  await page.getByLabel("Retention time (ms)", { exact: true }).fill("3600000");
  await page.getByText("= 1 h").waitFor();
  await button("Save changes").click();
  await statValue("Partitions").getByText("8", { exact: true }).waitFor();
  await statValue("Retention").getByText("1 h", { exact: true }).waitFor();
  const changed = await api("GET", "/v1/topics/payments", undefined, admin);
  assert.deepEqual([changed.partitions, changed.retention_ms, changed.retention_bytes], [8, 3_600_000, -1]);

  await show("#/topics/audit.events");
  await button("Delete").click();
  const confirm = page.getByLabel("Type the topic's name to confirm", { exact: true });
  await confirm.fill("audit");
  await button("Delete topic").click(); // refused by the form: not the name
  await page.getByText("Not the topic's name").waitFor();
  await confirm.fill("audit.events");
  await button("Delete topic").click();
  await heading("Topics").waitFor();
  await page.locator("tbody tr").nth(1).waitFor();
  assert.equal(await page.locator("tbody tr", { hasText: "audit.events" }).count(), 0);
  const { topics } = await api("GET", "/v1/topics", undefined, admin);
  assert.deepEqual(topics.map((topic) => topic.name).sort(), [TOPIC, "payments"]);
});

/** Pixels of a chart's canvas drawn in the colour of one of its lines: lines, not just
 * axes (where two lines coincide, the later one covers the first). */
async function linePixels(chart) {
  return chart.evaluate((figure) => {
    const canvas = figure.querySelector("canvas");
    const colours = ["--chart-1", "--chart-2"].map((name) =>
      getComputedStyle(document.documentElement)
        .getPropertyValue(name)
        .trim()
        .match(/[0-9a-f]{2}/gi)
        .map((hex) => parseInt(hex, 16)),
    );
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    let hits = 0;
    for (let i = 0; i < data.length; i += 4) {
      const near = ([r, g, b]) => Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 30;
      if (data[i + 3] > 200 && colours.some(near)) hits += 1;
    }
    return hits;
  });
}

const chartTitled = (title) => page.locator("figure.chart", { has: page.getByRole("heading", { name: title }) });

test("a topic's charts draw its records and bytes in and out; its partitions show leader, replicas and ISR", async () => {
  await api("POST", "/v1/topics", { name: "clicks", partitions: 1 }, admin);
  // 7 records of 5 bytes each (the value's JSON text), then all 7 read back.
  await api("POST", "/v1/topics/clicks/records", {
    records: Array.from({ length: 7 }, (_, i) => ({ value: 10_000 + i })),
  }, admin);
  const read = await api("GET", "/v1/topics/clicks/partitions/0/records?offset=0", undefined, admin);
  assert.equal(read.records.length, 7);

  await show("#/topics/clicks");
  const records = chartTitled("Records per second");
  const volume = chartTitled("Bytes per second");
  await records.getByText(/: 7 records in, 7 out\.$/).waitFor();
  await volume.getByText(/: 35 B in, 35 B out\.$/).waitFor();
  for (const chart of [records, volume]) {
    await chart.locator("canvas").waitFor();
    assert.ok((await linePixels(chart)) > 20, "the lines are drawn");
    // The axes are drawn on the canvas; the legend shows the same units and times as text
    // for the point under the pointer.
    const plot = await chart.locator(".u-over").boundingBox();
    await page.mouse.move(plot.x + plot.width - 2, plot.y + plot.height / 2);
    const legend = await chart.locator(".u-legend").textContent();
    assert.match(legend, /^Time\d\d:\d\d:\d\din[\d.]+( B)?\/sout[\d.]+( B)?\/s$/, legend);
  }
  // The charts keep up: more traffic shows without a reload.
  await api("POST", "/v1/topics/clicks/records", { records: [{ value: 10_007 }] }, admin);
  await records.getByText(/: 8 records in, 7 out\.$/).waitFor();

  const partition = cardTitled("Partitions").locator("tbody tr").first();
  const cells = await partition.evaluate((tr) => [...tr.cells].map((td) => td.textContent));
  assert.deepEqual(cells.slice(-3), ["0", "0", "0"], "leader, replicas and ISR: the one node");
  assert.equal(await page.locator("tr.flagged").count(), 0);
  await screenshot("console-charts.png", cardTitled("Traffic"));
});

test("the cluster page shows the node, the controller and every partition's replicas", async () => {
  await show("#/cluster");
  await heading("Cluster").waitFor();
  await statValue("Nodes").getByText("1", { exact: true }).waitFor();
  assert.equal(await statValue("Controller").textContent(), "0");
  assert.equal(await statValue("Under-replicated").textContent(), "0");
  const node = await cardTitled("Nodes").locator("tbody tr").evaluate((tr) => [...tr.cells].map((td) => td.textContent));
  const { topics } = await api("GET", "/v1/topics", undefined, admin);
  const partitions = topics.reduce((total, topic) => total + topic.partitions, 0);
  assert.deepEqual(node, ["0", new URL(tidegate.url).host, "controller", String(partitions), String(partitions)]);
  await cardTitled("Under-replicated partitions").getByText("None").waitFor();
  const all = cardTitled("All partitions").locator("tbody tr");
  assert.equal(await all.count(), partitions);
  assert.equal(await page.locator("tr.flagged").count(), 0);
  assert.ok(await page.locator("#under-replicated").isHidden(), "no count in the navigation");
  await screenshot("console-cluster.png");
});

test("a search by key or by text in the value goes on from where each bounded scan stopped", async () => {
  const { records } = await api("GET", `/v1/topics/${TOPIC}/partitions/0/records?offset=0&limit=100`, undefined, admin);
  const keyed = (key) => records.filter((record) => record.key === key).map((record) => record.offset);
  await show(`#/topics/${TOPIC}`);
  const browse = cardTitled("Browse records");
  await browse.getByLabel("Partition", { exact: true }).selectOption("0");
  await browse.getByLabel("Key is", { exact: true }).fill("sku-17");

  /** Reads, then goes on until the end; answers the offsets of what was found, and how
   * many calls it took. */
  const searchAll = async () => {
    const found = [];
    let calls = 0;
    await browse.getByLabel("Offset", { exact: true }).fill("");
    await button("Read").click();
    for (;;) {
      calls += 1;
      const foot = browse.locator(".card-foot");
      await foot.getByText(/found\./).waitFor();
      const text = await foot.textContent();
      const [, from, to] = text.match(/Searched offsets ([\d,]+)–([\d,]+)/).map((n) => n.replace(/,/g, ""));
      assert.ok(Number(to) - Number(from) < SCAN, `one call scans at most ${SCAN}: ${text}`);
      const shown = await browse.locator("tbody tr").evaluateAll((trs) => trs.map((tr) => Number(tr.cells[1].textContent)));
      found.push(...shown);
      if (/end of the partition/.test(text)) return { found, calls };
      await button("Search on").click();
      await foot.getByText(`Searched offsets ${Number(to) + 1}`, { exact: false }).waitFor();
    }
  };
  const byKey = await searchAll();
  assert.deepEqual(byKey.found, keyed("sku-17"));
  assert.ok(byKey.calls >= 3, `${byKey.calls} calls`);

  await browse.getByLabel("Key is", { exact: true }).fill("");
  await browse.getByLabel("Value contains", { exact: true }).fill('"restock":2');
  const byText = await searchAll();
  const expected = records.filter((record) => JSON.stringify(record.value).includes('"restock":2'));
  assert.deepEqual(byText.found, expected.map((record) => record.offset));
  assert.equal(expected.length, 6, "restock 2 and 20 to 24");
});

test("a group's lag is charted, and a memberless group's offsets reset to where its next poll starts", async () => {
  const group = "reports";
  const joined = await api("POST", `/v1/groups/${group}/poll`, {
    topics: ["payments"], auto_offset_reset: "latest", limit: 1,
  }, admin);
  const { partition_offsets: bounds } = await api("GET", "/v1/topics/payments", undefined, admin);
  await api("POST", `/v1/groups/${group}/commit`, {
    member_id: joined.member_id,
    generation: joined.generation,
    offsets: bounds.map(({ partition, high_watermark }) => ({ topic: "payments", partition, offset: high_watermark })),
  }, admin);

  await show(`#/groups/${group}`);
  await statValue("Members").getByText("1", { exact: true }).waitFor();
  assert.ok(await button("Reset offsets").isDisabled(), "not while a member is live");
  await api("DELETE", `/v1/groups/${group}/members/${joined.member_id}`, undefined, admin);
  await statValue("Members").getByText("0", { exact: true }).waitFor();
  await chartTitled("Total lag").getByText(/^Now 0 records behind/).waitFor();

  await button("Reset offsets").click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("To", { exact: true }).selectOption("earliest");
  await dialog.getByRole("button", { name: "Reset offsets" }).click(); // refused: not ticked
  assert.ok(await dialog.isVisible());
  await dialog.getByLabel("I mean it", { exact: true }).check();
  await dialog.getByRole("button", { name: "Reset offsets" }).click();
  await dialog.waitFor({ state: "detached" });
  const stored = bounds.reduce((total, p) => total + p.high_watermark - p.log_start_offset, 0);
  await statValue("Total lag").getByText(String(stored), { exact: true }).waitFor();
  const lag = chartTitled("Total lag");
  await lag.getByText(new RegExp(`^Now ${stored} records behind`)).waitFor();
  assert.ok((await linePixels(lag)) > 20, "the lag line is drawn");
  await screenshot("console-lag.png", cardTitled("Lag"));

  // The next member starts from the earliest offsets: every stored record, once.
  const seen = [];
  let member;
  for (let round = 0; round < 20 && seen.length < stored; round++) {
    const batch = await api("POST", `/v1/groups/${group}/poll`, {
      topics: ["payments"], member_id: member?.member_id, limit: 100,
    }, admin);
    member = batch;
    seen.push(...batch.records.map((record) => `${record.partition}/${record.offset}`));
  }
  const expected = bounds.flatMap(({ partition, log_start_offset, high_watermark }) =>
    Array.from({ length: high_watermark - log_start_offset }, (_, i) => `${partition}/${log_start_offset + i}`),
  );
  assert.deepEqual(seen.sort(), expected.sort());
  await api("DELETE", `/v1/groups/${group}/members/${member.member_id}`, undefined, admin);

  // To a time after every record: the high watermarks; to offset 0: the start again.
  const resetTo = async (target, fill) => {
    await button("Reset offsets").click();
    await dialog.getByLabel("To", { exact: true }).selectOption(target);
    await fill?.();
    await dialog.getByLabel("I mean it", { exact: true }).check();
    await dialog.getByRole("button", { name: "Reset offsets" }).click();
    await dialog.waitFor({ state: "detached" });
  };
  await statValue("Members").getByText("0", { exact: true }).waitFor();
  await resetTo("time", () => dialog.getByLabel("Time", { exact: true }).fill("2100-01-01T00:00:00"));
  await statValue("Total lag").getByText("0", { exact: true }).waitFor();
  await resetTo("offset", () => dialog.getByLabel("Offset", { exact: true }).fill("0"));
  await statValue("Total lag").getByText(String(stored), { exact: true }).waitFor();
  const { partitions } = await api("GET", `/v1/groups/${group}`, undefined, admin);
  assert.deepEqual(partitions.map((p) => p.committed_offset), bounds.map(() => 0));
});

test("a token without the scope and a bad token are explained", async () => {
  await setToken(token("subscribe:other-*"));
  await show(`#/topics/${TOPIC}`);
  await alert("This token lacks the scope for this").getByText(TOPIC).waitFor();
  await show(`#/tail/${TOPIC}`);
  await alert("This token lacks the scope for this").waitFor();

  await setToken("not-a-jwt");
  await show("#/topics");
  await alert("Token missing, invalid or expired").getByText("invalid_token").waitFor();

  await page.locator("#identity").getByRole("button", { name: "Sign out" }).click();
  await alert("Token missing, invalid or expired").getByText("missing_token").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the token is forgotten");
});

test("at phone width no page scrolls sideways", async () => {
  await page.setViewportSize(PHONE);
  await setToken(admin);
  for (const [hash, ready] of [
    ["#/topics", page.locator("tbody tr").first()],
    [`#/topics/${TOPIC}`, page.locator(".stat").first()],
    [`#/tail/${TOPIC}`, page.locator(".badge", { hasText: "live" })],
    ["#/groups", page.locator("tbody tr").first()],
    [`#/groups/${GROUP}`, page.locator("figure.chart canvas").first()],
    ["#/cluster", page.locator("tbody tr").first()],
    ["#/topics/clicks", page.locator("figure.chart canvas").first()],
  ]) {
    await show(hash);
    await ready.waitFor();
    const widths = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
    assert.ok(widths[0] <= widths[1], `${hash}: ${widths[0]} px wide in a ${widths[1]} px window`);
  }
  await show(`#/topics/${TOPIC}`);
  await page.locator(".stat").first().waitFor();
  await screenshot("console-phone.png");
});

test("the console asked nothing of any other origin, threw nothing, and broke no policy", () => {
  assert.deepEqual(foreign, []);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(blockedByPolicy, []);
});
