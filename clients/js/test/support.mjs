// What the client's tests share: the harness of the browser tests (the server, tokens, a
// TCP proxy that a test can cut) and clients wired to Node 20 (the ws package's WebSocket).
import WebSocket from "ws";
import { Tidegate } from "../dist/index.js";

export { startProxy, startTidegate, token, sleep, waitFor } from "../../../tests/browser/harness.mjs";

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
