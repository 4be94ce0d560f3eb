// What the browser tests share: the tidegate binary started on port 0, tokens minted with
// it, Debian's Chromium, and waiting.
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, openSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SECRET = "tidegate-browser-test-secret-0123456789";

const binary =
  process.env.TIDEGATE_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "release", "tidegate");

// Debian's /usr/bin/chromium is a wrapper script; the browser itself is beside it.
const browserPath =
  process.env.CHROMIUM ??
  ["/usr/lib/chromium/chromium", "/usr/bin/chromium"].find((path) => existsSync(path));

export function token(scope, { sub = "browser-test", ttl = "1h" } = {}) {
  return execFileSync(
    binary,
    ["token", "--sub", sub, "--scope", scope, "--ttl", ttl, "--jwt-secret", SECRET],
    { encoding: "utf8" },
  ).trim();
}

/** Starts `tidegate serve` on port 0 with a fresh data directory and reads its address
 * from stdout (a file, not a pipe, so an undrained pipe never blocks its logging).
 * Answers `{url, stop}`; `stop` ends it with SIGTERM and removes the directory. */
export async function startTidegate(args = []) {
  assert.ok(existsSync(binary), `no tidegate binary at ${binary}: run cargo build --release`);
  const dataDir = mkdtempSync(join(tmpdir(), "tidegate-browser-"));
  const stdout = join(dataDir, "stdout.log");
  const stderr = join(dataDir, "stderr.log");
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("TIDEGATE_")),
  );
  const child = spawn(
    binary,
    ["--listen", "127.0.0.1:0", "--data-dir", join(dataDir, "data"), "--jwt-secret", SECRET, ...args],
    { env: { ...env, RUST_LOG: "warn" }, stdio: ["ignore", openSync(stdout, "w"), openSync(stderr, "w")] },
  );
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const stuck = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(stuck);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const prefix = "tidegate listening on ";
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const line = readFileSync(stdout, "utf8").split("\n").find((l) => l.startsWith(prefix));
    if (line) return { url: line.slice(prefix.length).trim(), stop };
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  const errors = readFileSync(stderr, "utf8");
  await stop();
  throw new Error(`tidegate did not start: ${errors}`);
}

export function launchChromium() {
  assert.ok(browserPath, "no Chromium: apt-get install chromium (or set CHROMIUM)");
  return chromium.launch({
    executablePath: browserPath,
    headless: true,
    args: [
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** `api(method, path, body, bearer)` against `url`: the parsed answer; fails the test on
 * an error status. */
export function apiAt(url) {
  return async (method, path, body, bearer) => {
    const response = await fetch(url + path, {
      method,
      headers: { Authorization: `Bearer ${bearer}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitFor(what, predicate, describe, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}: ${describe()}`);
}

/** A TCP proxy on a free loopback port in front of `target` (`http://host:port`), for
 * tests that cut connections. `cut()` drops every connection open through it;
 * `connections` counts those accepted and `requests` keeps each one's first bytes (the
 * request line and headers); `dropResponses(n)` makes the next n connections lose the
 * server's first answer (the request reaches the server, which acts on it; the client sees
 * the connection die). */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const open = new Set();
  let toDrop = 0;
  const server = net.createServer((client) => {
    proxy.connections += 1;
    const dropping = toDrop > 0;
    if (dropping) toDrop -= 1;
    const upstream = net.connect(Number(port), hostname);
    open.add(client);
    open.add(upstream);
    const forget = () => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) socket.on("error", forget).on("close", forget);
    client.once("data", (chunk) => proxy.requests.push(chunk.toString("latin1")));
    client.pipe(upstream);
    if (dropping) upstream.once("data", forget);
    else upstream.pipe(client);
  });
  const proxy = {
    url: await listen(server),
    connections: 0,
    requests: [],
    cut: () => open.forEach((socket) => socket.destroy()),
    dropResponses: (n) => {
      toDrop = n;
    },
    close: async () => {
      proxy.cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  return proxy;
}

/** Listens on a free loopback port; answers the server's `http://` origin. */
export function listen(server) {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${server.address().port}`));
  });
}
