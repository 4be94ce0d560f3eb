// What the client's tests share: the server harness of the browser tests, a TCP proxy
// that a test can cut, and clients wired to Node 20 (the ws package's WebSocket).
import net from "node:net";
import WebSocket from "ws";
import { Tidegate } from "../dist/index.js";

export { startTidegate, token, sleep, waitFor, apiAt } from "../../../tests/browser/harness.mjs";

/** A TCP proxy on a free loopback port in front of `target` (`http://host:port`).
 * `cut()` drops every connection open through it; `connections` counts those accepted.
 * `dropResponses(n)`: the next n connections lose the server's first answer (the request
 * reaches the server, which acts on it; the client sees the connection die). */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const open = new Set();
  let toDrop = 0;
  const proxy = {
    connections: 0,
    url: "",
    cut() {
      for (const socket of open) socket.destroy();
    },
    dropResponses(n) {
      toDrop = n;
    },
    async close() {
      proxy.cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
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
    client.on("error", forget).on("close", forget);
    upstream.on("error", forget).on("close", forget);
    client.pipe(upstream);
    if (dropping) upstream.once("data", forget);
    else upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  return proxy;
}

/** A client of `url` for Node 20, with short backoffs so tests reconnect quickly. */
export function client(url, options = {}) {
  return new Tidegate({
    url,
    WebSocket,
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
    retry: { initialDelayMs: 20, maxDelayMs: 200 },
    ...options,
  });
}

/** Records published to `topic` as `{partition, offset, value}` (each value `{n}`), read
 * back through a plain fetch of every partition. */
export async function readAll(tg, topic, partitions) {
  const all = [];
  for (let partition = 0; partition < partitions; partition++) {
    let offset = 0;
    for (;;) {
      const page = await tg.fetch(topic, partition, { offset, limit: 1000 });
      all.push(...page.records);
      if (page.next_offset >= page.high_watermark) break;
      offset = page.next_offset;
    }
  }
  return all;
}
