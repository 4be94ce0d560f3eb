// A small browser client for tidegate's WebSocket protocol (openapi/asyncapi.json).
//
// `subscribe` keeps one subscription alive across dropped connections: it reconnects with
// exponential backoff and jitter, and resumes from the cursor of the last `records`
// message it handled, so each record arrives once, in offset order per partition.
//
//   import { subscribe } from "./tidegate.js";
//   const orders = subscribe({
//     url: "https://events.example.com",
//     token: () => getTokenFromYourBackend(), // called on every (re)connect; or a string
//     topic: "orders",
//     from: "earliest",                        // or "latest", or {offsets: {"0": 42}}
//     onRecords: (records) => records.forEach(render),
//   });
//   ...
//   orders.close();
//
// Pass `token` as a function if tokens expire: the server closes the socket with 4001 at
// expiry, and the reconnect then asks for a fresh token.

export function subscribe({
  url,
  token,
  topic,
  from = "latest",
  onRecords,
  onNotice = (notice) => console.warn("tidegate:", notice),
  onState = () => {},
}) {
  let cursor = null; // the position after the last records handled
  let socket = null;
  let closed = false;
  let failures = 0;
  let timer = null;

  async function connect() {
    timer = null;
    let accessToken;
    try {
      accessToken = typeof token === "function" ? await token() : token;
    } catch (error) {
      onNotice({ code: "token_unavailable", message: String(error) });
      return retry();
    }
    if (closed) return;
    const address = new URL("/v1/ws", url);
    address.protocol = address.protocol === "https:" ? "wss:" : "ws:";
    address.searchParams.set("access_token", accessToken);
    socket = new WebSocket(address);
    socket.onopen = () => {
      onState("open");
      const start = cursor ? { cursor } : from;
      socket.send(JSON.stringify({ op: "subscribe", req: "subscribe", topic, from: start }));
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "subscribed") {
        failures = 0;
        // Resume from here even if the socket drops before the first records.
        cursor = message.cursor;
      } else if (message.type === "records") {
        onRecords(message.records, message);
        cursor = message.cursor;
      } else if (message.type === "error") {
        onNotice(message.error);
        // A refused subscribe (no scope, no such topic) will not succeed on a retry.
        if (message.req === "subscribe") close();
      }
    };
    socket.onclose = (event) => {
      socket = null;
      onState(`closed ${event.code}`);
      if (!closed) retry();
    };
  }

  function retry() {
    const delay = Math.min(30_000, 250 * 2 ** failures) * (0.5 + Math.random() / 2);
    failures += 1;
    timer = setTimeout(connect, delay);
  }

  function close() {
    closed = true;
    clearTimeout(timer);
    socket?.close(1000);
  }

  connect();
  return {
    get cursor() {
      return cursor;
    },
    close,
  };
}
