// The /docs page in a real browser: headless Chromium (Debian's `chromium`, driven by
// playwright-core) opens the page the binary serves with every request to another origin
// blocked and counted, as on a machine without network. Both renderers must show the
// documents the server serves (every OpenAPI operation; every AsyncAPI operation and
// message), Swagger UI's "Try it out" must reach this server with the bearer token from
// "Authorize", and the page must not even try to load anything from elsewhere.
// Saves docs/api-docs.png, a screenshot of the HTTP API tab.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { ROOT, apiAt, launchChromium, startTidegate, token } from "./harness.mjs";

const SCREENSHOT = join(ROOT, "docs", "api-docs.png");
const TOPIC = "docs-demo";
const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

let tidegate;
let serverUrl;
let browser;

/** A document the server serves to anyone. */
async function openDocument(path) {
  const response = await fetch(serverUrl + path);
  assert.ok(response.ok, `GET ${path}: ${response.status}`);
  return response.json();
}

/** A browser context whose requests to any origin but the server's are refused and
 * recorded in `foreign`, WebSockets included; `sent` keeps the requests that went out. */
async function offlineContext() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const foreign = [];
  const sent = [];
  await context.route("**/*", (route) => {
    const request = route.request();
    if (new URL(request.url()).origin !== serverUrl) {
      foreign.push(request.url());
      return route.abort("blockedbyclient");
    }
    sent.push(request);
    return route.continue();
  });
  await context.routeWebSocket(/.*/, (socket) => {
    if (new URL(socket.url()).host === new URL(serverUrl).host) {
      socket.connectToServer();
    } else {
      foreign.push(socket.url());
      socket.close();
    }
  });
  return { context, foreign, sent };
}

before(async () => {
  tidegate = await startTidegate();
  serverUrl = tidegate.url;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tidegate?.stop();
});

test("/docs shows the OpenAPI and AsyncAPI documents offline, and Try it out calls this server with the token", async () => {
  const admin = token("admin", { sub: "docs-test" });
  await apiAt(serverUrl)("POST", "/v1/topics", { name: TOPIC, partitions: 2 }, admin);
  const openapi = await openDocument("/openapi.json");
  const asyncapi = await openDocument("/asyncapi.json");

  const { context, foreign, sent } = await offlineContext();
  const page = await context.newPage();
  const pageErrors = [];
  const consoleErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });

  // HTTP API, the default tab: every operation of the document, as METHOD path.
  const served = await page.goto(`${serverUrl}/docs`);
  assert.equal(served.status(), 200, "GET /docs");
  const http = page.locator("#panel-http");
  await http.locator(".opblock").first().waitFor({ timeout: 30_000 });
  const shown = await http
    .locator(".opblock")
    .evaluateAll((blocks) =>
      blocks.map(
        (block) =>
          `${block.querySelector(".opblock-summary-method").textContent} ${block.querySelector(".opblock-summary-path").dataset.path}`,
      ),
    );
  const documented = Object.entries(openapi.paths).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((key) => HTTP_METHODS.includes(key))
      .map((method) => `${method.toUpperCase()} ${path}`),
  );
  assert.deepEqual([...shown].sort(), [...documented].sort(), "every operation, nothing else");
  for (const operation of ["GET /v1/topics", "POST /v1/topics", "POST /v1/topics/{topic}/records", "GET /v1/ws"]) {
    assert.ok(shown.includes(operation), `${operation} in ${shown}`);
  }
  assert.equal(await page.locator("#panel-websocket").isHidden(), true);
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT });

  // Authorize with the token, then Try it out on GET /v1/topics: same origin, bearer sent.
  await http.locator(".auth-wrapper .authorize").click();
  const dialog = page.locator(".dialog-ux");
  await dialog.locator("input").fill(admin);
  await dialog.locator("button.authorize").click();
  await dialog.locator("button.btn-done").click();
  const listTopics = http.locator("#operations-topics-list_topics");
  await listTopics.locator(".opblock-summary-control").click();
  await listTopics.locator("button.try-out__btn").click();
  await listTopics.locator("button.execute").click();
  const status = listTopics.locator(".live-responses-table tr.response .response-col_status");
  await status.waitFor({ timeout: 30_000 });
  assert.equal((await status.textContent()).trim(), "200");
  assert.match(await listTopics.locator(".live-responses-table tr.response .response-col_description").textContent(), new RegExp(`"${TOPIC}"`));
  const call = sent.find((request) => request.url() === `${serverUrl}/v1/topics`);
  assert.ok(call, "Try it out requested /v1/topics on the server itself");
  assert.equal(call.headers().authorization, `Bearer ${admin}`);

  // WebSocket tab: every operation and every message of the AsyncAPI document.
  await page.locator("#tab-websocket").click();
  assert.equal(new URL(page.url()).hash, "#websocket");
  const websocket = page.locator("#panel-websocket");
  await websocket.locator(".aui-root").waitFor({ timeout: 30_000 });
  assert.equal(await http.isHidden(), true);
  for (const [id, operation] of Object.entries(asyncapi.operations)) {
    assert.ok(await websocket.locator(`[id="operation-${operation.action}-${id}"]`).isVisible(), `operation ${id}`);
  }
  const messages = Object.keys(asyncapi.components.messages);
  for (const name of ["subscribe", "records", "publish", "assignment", "error", "event"]) {
    assert.ok(messages.includes(name), `the document has message ${name}`);
  }
  for (const name of messages) {
    const message = websocket.locator(`[id="message-${name}"]`);
    assert.ok(await message.isVisible(), `message ${name}`);
    assert.match(await message.textContent(), new RegExp(`Message ID\\s*${name}`));
  }
  // The generated examples show what to send.
  assert.match(await websocket.textContent(), /"op":\s*"subscribe"/);

  // The links between the tabs and back to the console.
  await websocket.locator(".intro a[href='#http']").click();
  assert.equal(await http.isVisible(), true);
  assert.equal(await page.locator("header a.console").evaluate((link) => link.href), `${serverUrl}/`);

  assert.deepEqual(foreign, [], "requests to other origins");
  assert.deepEqual(pageErrors, [], "uncaught errors in the page");
  assert.deepEqual(consoleErrors, [], "errors on the console");
  await context.close();
});

test("/docs#websocket opens the WebSocket tab and loads only its renderer", async () => {
  const { context, foreign, sent } = await offlineContext();
  const page = await context.newPage();
  assert.equal((await page.goto(`${serverUrl}/docs#websocket`)).status(), 200, "GET /docs");
  await page.locator("#panel-websocket [id='message-records']").waitFor({ timeout: 30_000 });
  assert.equal(await page.locator("#panel-http").isHidden(), true);
  const paths = sent.map((request) => new URL(request.url()).pathname);
  assert.ok(paths.includes("/docs/asyncapi-react.js"), `${paths}`);
  assert.ok(!paths.includes("/docs/swagger-ui-bundle.js"), `${paths}`);
  assert.deepEqual(foreign, [], "requests to other origins");
  await context.close();
});
