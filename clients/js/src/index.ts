import type { BackoffOptions } from "./backoff.js";
import { Consumer, type ConsumerOptions } from "./consumer.js";
import { TidegateError } from "./errors.js";
import { Http, type HttpRequest, type RetryOptions } from "./http.js";
import {
  Socket,
  type ConnectionState,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionHandlers,
  type WebSocketConstructor,
} from "./socket.js";
import { Tokens } from "./tokens.js";
import type {
  ClusterDetails,
  CreateTopic,
  FetchResponse,
  GroupDetails,
  GroupList,
  GroupStats,
  NewRecord,
  PublishedOffset,
  SeekResponse,
  SeekTo,
  TimestampOffset,
  TopicDetails,
  TopicList,
  TopicStats,
  UpdateTopic,
} from "./types.js";

export { TidegateError } from "./errors.js";
export type { Consumer, ConsumerBatch, ConsumerOptions } from "./consumer.js";
export type {
  ConnectionState,
  Gap,
  SubscribeOptions,
  Subscription,
  SubscriptionHandlers,
  SubscriptionState,
  WebSocketConstructor,
  WebSocketLike,
} from "./socket.js";
export type * from "./types.js";
export type { BackoffOptions } from "./backoff.js";
export type { RetryOptions } from "./http.js";

export interface TidegateOptions {
  /** The server's http(s) origin (and base path, if any); the socket's ws(s) URL is
   * derived from it. */
  url: string;
  /** A fixed token (no refresh), or omit with a server run with `--auth none`. */
  token?: string;
  /** Called for a token when there is none, before the current one expires, after a 401
   * and after a 4001 close; its token is refused for good only if a fresh one is too. */
  getToken?: () => string | Promise<string>;
  /** How long before `exp` a token is replaced (default 30 000 ms, or half its remaining
   * life if that is shorter). */
  tokenRefreshMarginMs?: number;
  /** Default: the global `WebSocket` (browsers, Node 22+); in Node 20 pass the `ws`
   * package's. */
  WebSocket?: WebSocketConstructor;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Retries of HTTP calls on network errors (those that may repeat), 429 and 503. */
  retry?: RetryOptions;
  /** Reconnect backoff of the socket; `maxAttempts` failed tries in a row end it. */
  reconnect?: BackoffOptions & { maxAttempts?: number };
  /** How long an HTTP call or socket op may take before it fails with `timeout`, on top
   * of its long-poll wait (default 30 000 ms). */
  timeoutMs?: number;
  /** The socket's state: idle (no subscriptions), connecting, open, reconnecting, closed
   * (`close()`), failed (gave up; every subscription got a terminal error). */
  onConnectionState?: (state: ConnectionState) => void;
}

/** What every call takes: a signal that cancels it (it then fails with `closed`). */
export interface CallOptions {
  signal?: AbortSignal;
}

export interface PublishOptions extends CallOptions {
  /** Makes a retry of this publish (by the client, or by you with the same key) append
   * nothing; generated when absent. */
  idempotencyKey?: string;
}

export interface StatsOptions extends CallOptions {
  /** How far back, in seconds (default: all the server keeps, `--stats-window-secs`). */
  windowS?: number;
}

export interface FetchOptions extends CallOptions {
  offset?: number;
  limit?: number;
  maxBytes?: number;
  /** Long poll: wait up to this long for a record at `offset`. */
  waitMs?: number;
  /** Only records with this key. */
  key?: string;
  /** Only records whose value's JSON text contains this. */
  contains?: string;
}

/** A tidegate client: HTTP calls with retries, one WebSocket for every subscription. */
export class Tidegate {
  private readonly http: Http;
  private readonly socket: Socket;

  constructor(options: TidegateOptions) {
    const fetchImpl = options.fetch ?? globalThis.fetch?.bind(globalThis);
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!fetchImpl) throw new TidegateError("invalid_argument", "no fetch: pass options.fetch");
    if (!WebSocketImpl) {
      throw new TidegateError("invalid_argument", "no global WebSocket (Node 20): pass options.WebSocket, e.g. the ws package's");
    }
    const tokens = new Tokens(options.token, options.getToken, options.tokenRefreshMarginMs ?? 30_000);
    const timeoutMs = options.timeoutMs ?? 30_000;
    const url = options.url.endsWith("/") ? options.url : `${options.url}/`;
    this.http = new Http(url, tokens, fetchImpl, options.retry ?? {}, timeoutMs);
    this.socket = new Socket(url, tokens, WebSocketImpl, {
      reconnect: options.reconnect ?? {},
      timeoutMs,
      onState: options.onConnectionState,
    });
  }

  get connectionState(): ConnectionState {
    return this.socket.connectionState;
  }

  async createTopic(name: string, config: Omit<CreateTopic, "name"> = {}, options: CallOptions = {}): Promise<TopicDetails> {
    return this.call("POST", "v1/topics", { body: { name, ...config }, repeatable: false, ...options });
  }

  async listTopics(options: CallOptions = {}): Promise<TopicList> {
    return this.call("GET", "v1/topics", options);
  }

  async describeTopic(topic: string, options: CallOptions = {}): Promise<TopicDetails> {
    return this.call("GET", topicPath(topic), options);
  }

  async updateTopic(topic: string, change: UpdateTopic, options: CallOptions = {}): Promise<TopicDetails> {
    return this.call("PATCH", topicPath(topic), { body: change, ...options });
  }

  async deleteTopic(topic: string, options: CallOptions = {}): Promise<void> {
    await this.call("DELETE", topicPath(topic), { repeatable: false, ...options });
  }

  /** Records and bytes in and out per sampling interval, oldest first. */
  async topicStats(topic: string, options: StatsOptions = {}): Promise<TopicStats> {
    return this.call("GET", `${topicPath(topic)}/stats`, { query: { window_s: options.windowS }, signal: options.signal });
  }

  /** The offset of the first record of a partition at or after `timestamp` (epoch ms). */
  async offsetForTimestamp(
    topic: string,
    partition: number,
    timestamp: number,
    options: CallOptions = {},
  ): Promise<TimestampOffset> {
    return this.call("GET", `${topicPath(topic)}/partitions/${partition}/offsets`, { query: { timestamp }, ...options });
  }

  /** Publishes records together (all or none); answers their offsets in order. Retries on
   * network errors, 429 and 503 reuse one `Idempotency-Key`, so nothing is appended twice. */
  async publish(topic: string, records: NewRecord[], options: PublishOptions = {}): Promise<PublishedOffset[]> {
    const key = options.idempotencyKey ?? randomKey();
    const body = await this.call<{ offsets: PublishedOffset[] }>("POST", `${topicPath(topic)}/records`, {
      body: { records },
      headers: { "Idempotency-Key": key },
      signal: options.signal,
    });
    return body.offsets;
  }

  /** A page of a partition from `offset`; with `key` or `contains`, the matches among the
   * records one call may scan (go on from `next_offset`). */
  async fetch(topic: string, partition: number, options: FetchOptions = {}): Promise<FetchResponse> {
    return this.call("GET", `${topicPath(topic)}/partitions/${partition}/records`, {
      query: {
        offset: options.offset,
        limit: options.limit,
        max_bytes: options.maxBytes,
        wait_ms: options.waitMs,
        key: options.key,
        contains: options.contains,
      },
      waitMs: options.waitMs,
      signal: options.signal,
    });
  }

  /** Records over the shared WebSocket, resumed from the cursor across reconnects. */
  subscribe(topic: string, options: SubscribeOptions, handlers: SubscriptionHandlers): Subscription {
    return this.socket.subscribe(topic, options, handlers);
  }

  /** A group member over HTTP polls. */
  consumer(group: string, options: ConsumerOptions): Consumer {
    return new Consumer(this.http, group, options);
  }

  async listGroups(options: CallOptions = {}): Promise<GroupList> {
    return this.call("GET", "v1/groups", options);
  }

  async describeGroup(group: string, options: CallOptions = {}): Promise<GroupDetails> {
    return this.call("GET", groupPath(group), options);
  }

  /** A group's total lag and each partition's, per sampling interval, oldest first. */
  async groupStats(group: string, options: StatsOptions = {}): Promise<GroupStats> {
    return this.call("GET", `${groupPath(group)}/stats`, { query: { window_s: options.windowS }, signal: options.signal });
  }

  /** Moves a group's committed offsets (for a group without live members, or they move on
   * at their next poll). */
  async seek(group: string, topic: string, to: SeekTo, options: CallOptions = {}): Promise<SeekResponse> {
    return this.call("POST", `${groupPath(group)}/seek`, { body: { topic, to }, ...options });
  }

  /** The nodes, the controller, and the partitions whose ISR is short of their replicas. */
  async cluster(options: CallOptions = {}): Promise<ClusterDetails> {
    return this.call("GET", "v1/cluster", options);
  }

  /** Ends every subscription and the socket. */
  close(): void {
    this.socket.close();
  }

  /** One HTTP call answering its body; repeatable unless told otherwise (every GET, PATCH
   * and seek may be sent again with the same effect). */
  private async call<T>(
    method: HttpRequest["method"],
    path: string,
    request: Partial<Omit<HttpRequest, "method" | "path">> = {},
  ): Promise<T> {
    return (await this.http.request<T>({ method, path, repeatable: true, ...request })).body;
  }
}

function topicPath(topic: string): string {
  return `v1/topics/${encodeURIComponent(topic)}`;
}

function groupPath(group: string): string {
  return `v1/groups/${encodeURIComponent(group)}`;
}

function randomKey(): string {
  const crypto = globalThis.crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
