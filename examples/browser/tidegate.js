// A small browser client for tidegate's WebSocket protocol (openapi/asyncapi.json).
//
// `subscribe` keeps one subscription alive across dropped connections: it reconnects with
// exponential backoff and jitter, and resumes from the cursor of the last `records`
// message it handled, so each record arrives once, in offset order per partition.
//
//   import { subscribe } from "./tidegate.js";
//   const orders = subscribe({
//     url: location.origin,                    // the tidegate server's origin
//     token: () => getTokenFromYourBackend(), // called on every (re)connect; or a string
//     topic: "orders",
//     from: "earliest",                        // or "latest", or {offsets: {"0": 42}}
//     onRecords: (records) => records.forEach(render),
//   });
//   ...
//   orders.close();
//
// Pass `token` as a function if tokens expire: the server closes the socket with 4001 at
// expiry, and the reconnect then asks for a fresh token. An empty token connects without
// one (a server run with `--auth none`).
//
// `onState` hears "connecting", "open" (the socket), "subscribed" (records flow from
// here on), "reconnecting (CLOSE CODE)" and, once the subscription has ended (`close()`,
// or a subscribe the server refused), "closed".

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
    onState("connecting");
    const address = new URL("/v1/ws", url);
    address.protocol = address.protocol === "https:" ? "wss:" : "ws:";
    if (accessToken) address.searchParams.set("access_token", accessToken);
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
        onState("subscribed");
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
      if (closed) {
        onState("closed");
      } else {
        onState(`reconnecting (${event.code})`);
        retry();
      }
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
    if (socket) socket.close(1000);
    else onState("closed"); // between attempts: no socket left to report it
  }

  connect();
  return {
    get cursor() {
      return cursor;
    },
    close,
  };
}
