import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { asTerminal, fromDetail, TidegateError } from "./errors.js";
import type { Tokens } from "./tokens.js";
import type { ClientMessage, ServerMessage, StartFrom, StoredRecord } from "./types.js";

/** What the client needs of a WebSocket: the browser's, Node 22's global, or the `ws`
 * package's constructor. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed" | "failed";
export type SubscriptionState = "connecting" | "subscribed" | "reconnecting" | "closed";

export interface SubscribeOptions {
  /** Where to start (default `latest`); with `group`, where partitions without a committed
   * offset start. A resume after a reconnect starts from the subscription's cursor. */
  from?: StartFrom;
  /** Join this consumer group: only the partitions it assigns are delivered. */
  group?: string;
  /** Without `group`: only these partitions (default all). */
  partitions?: number[];
}

export interface Gap {
  partition: number;
  /** The first offset still stored: delivery goes on from here. */
  logStartOffset: number;
  highWatermark: number;
  message: string;
}

export interface SubscriptionHandlers {
  /** Records in offset order per partition; the next one waits until a returned promise
   * settles. `cursor` is the position right after them. */
  records?(records: StoredRecord[], info: { cursor: string; topic: string }): void | Promise<void>;
  /** Retention deleted records the subscription had not read yet. */
  gap?(gap: Gap): void;
  /** A group subscription's partitions, after joining and after every rebalance. */
  assignment?(partitions: number[], generation: number): void;
  state?(state: SubscriptionState): void;
  /** Problems; with `error.terminal` the subscription has ended. */
  error?(error: TidegateError): void;
}

export interface SocketOptions {
  reconnect: BackoffOptions & { maxAttempts?: number };
  timeoutMs: number;
  onState?: (state: ConnectionState) => void;
}

interface Pending {
  resolve(message: ServerMessage): void;
  reject(error: TidegateError): void;
  timer: ReturnType<typeof setTimeout>;
}

/** A client message as `call` takes it: `req` is added there. */
type Call = ClientMessage extends infer M ? (M extends { req?: unknown } ? Omit<M, "req"> : never) : never;

/** One subscription of the shared socket; it outlives reconnects. */
export class Subscription {
  /** The position after the last records handled: where a resume starts. */
  cursor: string | undefined;
  /** With a group: the generation of the last assignment, which commits must name. */
  generation: number | undefined;
  /** The partitions delivered (with a group, those assigned now). */
  partitions: number[] = [];
  state: SubscriptionState = "connecting";
  /** The server's id for it on the current socket. */
  sid: string | undefined;
  /** Per partition, the offset after the last record handled (what `commit` commits). */
  readonly delivered = new Map<number, number>();

  constructor(
    private readonly socket: Socket,
    readonly topic: string,
    readonly options: SubscribeOptions,
    readonly handlers: SubscriptionHandlers,
  ) {
    this.cursor = typeof options.from === "object" && "cursor" in options.from ? options.from.cursor : undefined;
  }

  /** Commits what was handled on each assigned partition (or `offsets`): group only. */
  commit(offsets?: { partition: number; offset: number }[]): Promise<void> {
    return this.socket.commit(this, offsets);
  }

  close(): void {
    this.socket.unsubscribe(this);
  }

  /** Where to (re)start: the cursor for a plain subscription; a group member starts from
   * the group's committed offsets. */
  startFrom(): StartFrom | undefined {
    if (this.options.group === undefined && this.cursor !== undefined) return { cursor: this.cursor };
    return this.options.from;
  }

  setState(state: SubscriptionState) {
    if (this.state === state || this.state === "closed") return;
    this.state = state;
    this.handlers.state?.(state);
  }
}

/** The client's one WebSocket: opened with the first subscription, closed after the last,
 * reconnected with backoff in between, every subscription resumed from its cursor. */
export class Socket {
  private ws: WebSocketLike | undefined;
  private authenticated = false;
  private state: ConnectionState = "idle";
  private readonly subscriptions = new Set<Subscription>();
  private readonly bySid = new Map<string, Subscription>();
  private readonly subscribing = new Map<string, Subscription>();
  private readonly pending = new Map<string, Pending>();
  private nextReq = 0;
  private failures = 0;
  private tokenJustRefreshed = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  // Messages are handled one at a time, so an async `records` handler keeps the order.
  private handling: Promise<void> = Promise.resolve();

  constructor(
    private readonly url: string,
    private readonly tokens: Tokens,
    private readonly WebSocketImpl: WebSocketConstructor,
    private readonly options: SocketOptions,
  ) {}

  get connectionState(): ConnectionState {
    return this.state;
  }

  /** Closed or failed: for good. */
  private get ended(): boolean {
    return this.state === "closed" || this.state === "failed";
  }

  subscribe(topic: string, options: SubscribeOptions, handlers: SubscriptionHandlers): Subscription {
    if (this.ended) {
      throw new TidegateError("closed", `the client is ${this.state}`, { terminal: true });
    }
    const sub = new Subscription(this, topic, options, handlers);
    this.subscriptions.add(sub);
    if (this.ws && this.authenticated) this.sendSubscribe(sub);
    else if (!this.ws && this.retryTimer === undefined) void this.connect();
    return sub;
  }

  unsubscribe(sub: Subscription) {
    if (!this.subscriptions.delete(sub)) return;
    if (sub.sid !== undefined) {
      this.bySid.delete(sub.sid);
      this.trySend({ op: "unsubscribe", sub: sub.sid });
    }
    sub.setState("closed");
    if (this.subscriptions.size === 0) this.shutDown("idle");
  }

  /** Ends every subscription and the socket for good. */
  close() {
    for (const sub of [...this.subscriptions]) this.end(sub, undefined);
    this.shutDown("closed");
  }

  async commit(sub: Subscription, offsets?: { partition: number; offset: number }[]): Promise<void> {
    if (sub.options.group === undefined) {
      throw new TidegateError("invalid_argument", "only group subscriptions commit offsets");
    }
    const assigned = new Set(sub.partitions);
    const chosen =
      offsets ??
      [...sub.delivered].filter(([partition]) => assigned.has(partition)).map(([partition, offset]) => ({ partition, offset }));
    if (chosen.length === 0) return;
    if (!this.ws || sub.sid === undefined) {
      throw new TidegateError("not_connected", "the socket is down; the group will redeliver from its last commit");
    }
    await this.call({ op: "commit", sub: sub.sid, offsets: chosen });
  }

  private async connect() {
    this.retryTimer = undefined;
    if (this.ws || this.subscriptions.size === 0 || this.ended) return;
    this.setState(this.failures === 0 ? "connecting" : "reconnecting");
    let token: string | undefined;
    try {
      token = await this.tokens.current();
    } catch (error) {
      this.report(error as TidegateError);
      return this.retryLater();
    }
    if (this.ws || this.subscriptions.size === 0 || this.ended) return;
    const address = new URL("v1/ws", this.url);
    address.protocol = address.protocol === "https:" ? "wss:" : "ws:";
    let ws: WebSocketLike;
    try {
      ws = new this.WebSocketImpl(address.toString());
    } catch (cause) {
      this.report(new TidegateError("network_error", `cannot open ${address}: ${String(cause)}`, { cause }));
      return this.retryLater();
    }
    this.ws = ws;
    this.authenticated = false;
    // The token goes in the first message rather than the URL: a refused token then gets
    // an answer (and close code 4001) instead of a failed upgrade that looks like any other.
    ws.onopen = () => {
      if (token) this.send({ op: "auth", req: "auth", token });
      else this.onAuthenticated(undefined);
    };
    ws.onmessage = (event) => {
      const text = typeof event.data === "string" ? event.data : String(event.data);
      this.handling = this.handling.then(() => this.onMessage(ws, text));
    };
    ws.onerror = () => {
      // A close event follows with the code; nothing to add here.
    };
    ws.onclose = (event) => {
      this.handling = this.handling.then(() => this.onClose(ws, event.code, event.reason));
    };
  }

  private onAuthenticated(exp: number | undefined) {
    this.authenticated = true;
    this.tokenJustRefreshed = false;
    this.setState("open");
    for (const sub of this.subscriptions) if (sub.sid === undefined) this.sendSubscribe(sub);
    this.scheduleRefresh(exp);
  }

  private scheduleRefresh(exp: number | undefined) {
    clearTimeout(this.refreshTimer);
    const due = this.tokens.dueAt;
    if (!Number.isFinite(due) || exp === undefined || exp >= Number.MAX_SAFE_INTEGER / 1000) return;
    const ws = this.ws;
    this.refreshTimer = setTimeout(
      () => void this.refreshOverSocket(ws),
      Math.min(2 ** 31 - 1, Math.max(0, due - Date.now())),
    );
  }

  private async refreshOverSocket(ws: WebSocketLike | undefined) {
    try {
      const token = await this.tokens.refresh();
      if (ws !== this.ws || token === undefined) return;
      const reply = await this.call({ op: "auth", token });
      if (reply.type === "authenticated") this.scheduleRefresh(reply.exp);
    } catch (error) {
      if (ws !== this.ws) return;
      // The socket keeps its old token until it expires; the close (4001) then decides.
      this.report(error as TidegateError);
      this.refreshTimer = setTimeout(() => void this.refreshOverSocket(ws), 1000);
    }
  }

  private sendSubscribe(sub: Subscription) {
    const req = `s${this.nextReq++}`;
    this.subscribing.set(req, sub);
    this.send({
      op: "subscribe",
      req,
      topic: sub.topic,
      from: sub.startFrom(),
      group: sub.options.group,
      partitions: sub.options.partitions,
    });
  }

  private async onMessage(ws: WebSocketLike, text: string) {
    if (ws !== this.ws) return;
    let message: ServerMessage;
    try {
      message = JSON.parse(text) as ServerMessage;
    } catch {
      return this.report(new TidegateError("invalid_message", `the server sent what is not JSON: ${text.slice(0, 100)}`));
    }
    const req = "req" in message && typeof message.req === "string" ? message.req : undefined;
    switch (message.type) {
      case "authenticated":
        if (req === "auth") this.onAuthenticated(message.exp);
        else this.settle(req, message);
        return;
      case "subscribed":
        return this.onSubscribed(req, message);
      case "records":
        return this.onRecords(message);
      case "assignment": {
        const sub = this.bySid.get(message.sub);
        if (!sub) return;
        sub.generation = message.generation;
        sub.partitions = message.partitions;
        for (const partition of sub.delivered.keys()) {
          if (!sub.partitions.includes(partition)) sub.delivered.delete(partition);
        }
        sub.handlers.assignment?.(sub.partitions, sub.generation);
        return;
      }
      case "error":
        return this.onError(req, message);
      default:
        this.settle(req, message);
    }
  }

  private onSubscribed(req: string | undefined, message: Extract<ServerMessage, { type: "subscribed" }>) {
    const sub = req === undefined ? undefined : this.subscribing.get(req);
    if (req !== undefined) this.subscribing.delete(req);
    const sid = message.sub;
    if (!sub || !this.subscriptions.has(sub)) {
      // Closed while the subscribe was on its way.
      this.trySend({ op: "unsubscribe", sub: sid });
      return;
    }
    sub.sid = sid;
    this.bySid.set(sid, sub);
    sub.partitions = message.assignment;
    // From here a resume starts where this subscription stands, even before any records.
    if (sub.options.group === undefined) sub.cursor = message.cursor;
    this.failures = 0;
    sub.setState("subscribed");
  }

  private async onRecords(message: Extract<ServerMessage, { type: "records" }>) {
    const sub = this.bySid.get(message.sub);
    if (!sub) return;
    const { records, cursor } = message;
    try {
      await sub.handlers.records?.(records, { cursor, topic: message.topic });
    } catch (cause) {
      sub.handlers.error?.(new TidegateError("handler_failed", `the records handler threw: ${String(cause)}`, { cause }));
    }
    for (const record of records) sub.delivered.set(record.partition, record.offset + 1);
    sub.cursor = cursor;
  }

  private onError(req: string | undefined, message: Extract<ServerMessage, { type: "error" }>) {
    const detail = message.error;
    const error = fromDetail(detail);
    const subscribing = req === undefined ? undefined : this.subscribing.get(req);
    if (subscribing) {
      this.subscribing.delete(req as string);
      if (error.code === "unauthorized") return; // the close (4001) that follows decides
      if (error.code === "rate_limited" || error.code === "unavailable") {
        const ws = this.ws;
        setTimeout(() => {
          if (ws === this.ws && this.subscriptions.has(subscribing)) this.sendSubscribe(subscribing);
        }, error.retryAfterMs ?? 1000);
        return this.report(error, subscribing);
      }
      // Refused (no scope, no such topic, bad start): a retry would be refused again.
      return this.end(subscribing, asTerminal(error));
    }
    if (req !== undefined && this.pending.has(req)) return this.settle(req, message, error);
    const sub = message.sub == null ? undefined : this.bySid.get(message.sub);
    if (sub && error.code === "offset_out_of_range") {
      sub.handlers.gap?.({
        partition: detail.partition ?? 0,
        logStartOffset: detail.log_start_offset ?? 0,
        highWatermark: detail.high_watermark ?? 0,
        message: detail.message,
      });
      return;
    }
    if (sub && error.code === "forbidden") return this.end(sub, asTerminal(error));
    this.report(error, sub);
  }

  private onClose(ws: WebSocketLike, code: number, reason: string) {
    if (ws !== this.ws) return;
    this.ws = undefined;
    this.authenticated = false;
    clearTimeout(this.refreshTimer);
    this.bySid.clear();
    this.subscribing.clear();
    for (const [req, pending] of this.pending) {
      this.pending.delete(req);
      clearTimeout(pending.timer);
      pending.reject(new TidegateError("not_connected", `the socket closed (${code}) before the answer`));
    }
    for (const sub of this.subscriptions) {
      sub.sid = undefined;
      sub.setState("reconnecting");
    }
    if (this.ended) return;
    if (this.subscriptions.size === 0) return this.setState("idle");
    if (code === 4001) {
      if (!this.tokens.refreshable || this.tokenJustRefreshed) {
        return this.fail(
          new TidegateError("unauthorized", `the server refused the token (4001 ${reason})${this.tokens.refreshable ? " even freshly refreshed" : ""}`, {
            terminal: true,
          }),
        );
      }
      this.tokenJustRefreshed = true;
      this.setState("reconnecting");
      void this.tokens.refresh().then(
        () => this.connect(),
        (error: TidegateError) => {
          this.report(error);
          this.retryLater();
        },
      );
      return;
    }
    this.retryLater();
  }

  private retryLater() {
    if (this.ended || this.subscriptions.size === 0) return;
    const max = this.options.reconnect.maxAttempts ?? Infinity;
    if (this.failures >= max) {
      return this.fail(new TidegateError("network_error", `gave up after ${this.failures} reconnect attempts`, { terminal: true }));
    }
    this.setState("reconnecting");
    const delay = backoffDelay(this.failures, this.options.reconnect);
    this.failures += 1;
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private call(message: Call): Promise<ServerMessage> {
    const ws = this.ws;
    if (!ws) return Promise.reject(new TidegateError("not_connected", "the socket is down"));
    const req = `r${this.nextReq++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(req);
        reject(new TidegateError("timeout", `no answer to ${String(message.op)} within ${this.options.timeoutMs} ms`));
      }, this.options.timeoutMs);
      this.pending.set(req, { resolve, reject, timer });
      this.send({ ...message, req } as ClientMessage);
    });
  }

  private settle(req: string | undefined, message: ServerMessage, error?: TidegateError) {
    const pending = req === undefined ? undefined : this.pending.get(req);
    if (!pending || req === undefined) return;
    this.pending.delete(req);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve(message);
  }

  private send(message: ClientMessage) {
    this.ws?.send(JSON.stringify(message));
  }

  private trySend(message: ClientMessage) {
    try {
      if (this.ws && this.authenticated) this.send(message);
    } catch {
      // The socket is closing; the server drops its subscriptions with it.
    }
  }

  private end(sub: Subscription, error: TidegateError | undefined) {
    if (error) sub.handlers.error?.(error);
    this.unsubscribe(sub);
  }

  private report(error: TidegateError, sub?: Subscription) {
    for (const target of sub ? [sub] : this.subscriptions) target.handlers.error?.(error);
  }

  private fail(error: TidegateError) {
    for (const sub of [...this.subscriptions]) this.end(sub, error);
    this.shutDown("failed");
  }

  private shutDown(state: ConnectionState) {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    clearTimeout(this.refreshTimer);
    this.failures = 0;
    const ws = this.ws;
    this.ws = undefined;
    this.authenticated = false;
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        // Already closing.
      }
    }
    this.setState(state);
  }

  private setState(state: ConnectionState) {
    if (this.state === state) return;
    if (this.ended) return;
    this.state = state;
    this.options.onState?.(state);
  }
}
