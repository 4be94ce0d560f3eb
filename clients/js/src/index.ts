import type { BackoffOptions } from "./backoff.js";
import { Consumer, type ConsumerOptions } from "./consumer.js";
import { TidegateError } from "./errors.js";
import { Http, type RetryOptions } from "./http.js";
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
  CreateTopic,
  FetchResponse,
  GroupDetails,
  NewRecord,
  PublishedOffset,
  SeekTo,
  TopicDetails,
  TopicList,
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

export interface PublishOptions {
  /** Makes a retry of this publish (by the client, or by you with the same key) append
   * nothing; generated when absent. */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export interface FetchOptions {
  offset?: number;
  limit?: number;
  maxBytes?: number;
  /** Long poll: wait up to this long for a record at `offset`. */
  waitMs?: number;
  /** Only records with this key. */
  key?: string;
  /** Only records whose value's JSON text contains this. */
  contains?: string;
  signal?: AbortSignal;
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

  async createTopic(name: string, config: Omit<CreateTopic, "name"> = {}): Promise<TopicDetails> {
    const { body } = await this.http.request<TopicDetails>({
      method: "POST",
      path: "v1/topics",
      body: { name, ...config },
      repeatable: false,
    });
    return body;
  }

  async listTopics(): Promise<TopicList> {
    return (await this.http.request<TopicList>({ method: "GET", path: "v1/topics", repeatable: true })).body;
  }

  async describeTopic(topic: string): Promise<TopicDetails> {
    return (await this.http.request<TopicDetails>({ method: "GET", path: topicPath(topic), repeatable: true })).body;
  }

  async updateTopic(topic: string, change: UpdateTopic): Promise<TopicDetails> {
    return (await this.http.request<TopicDetails>({ method: "PATCH", path: topicPath(topic), body: change, repeatable: true }))
      .body;
  }

  async deleteTopic(topic: string): Promise<void> {
    await this.http.request({ method: "DELETE", path: topicPath(topic), repeatable: false });
  }

  /** Publishes records together (all or none); answers their offsets in order. Retries on
   * network errors, 429 and 503 reuse one `Idempotency-Key`, so nothing is appended twice. */
  async publish(topic: string, records: NewRecord[], options: PublishOptions = {}): Promise<PublishedOffset[]> {
    const key = options.idempotencyKey ?? randomKey();
    const { body } = await this.http.request<{ offsets: PublishedOffset[] }>({
      method: "POST",
      path: `${topicPath(topic)}/records`,
      body: { records },
      headers: { "Idempotency-Key": key },
      repeatable: true,
      signal: options.signal,
    });
    return body.offsets;
  }

  async fetch(topic: string, partition: number, options: FetchOptions = {}): Promise<FetchResponse> {
    const { body } = await this.http.request<FetchResponse>({
      method: "GET",
      path: `${topicPath(topic)}/partitions/${partition}/records`,
      query: {
        offset: options.offset,
        limit: options.limit,
        max_bytes: options.maxBytes,
        wait_ms: options.waitMs,
        key: options.key,
        contains: options.contains,
      },
      repeatable: true,
      waitMs: options.waitMs,
      signal: options.signal,
    });
    return body;
  }

  /** Records over the shared WebSocket, resumed from the cursor across reconnects. */
  subscribe(topic: string, options: SubscribeOptions, handlers: SubscriptionHandlers): Subscription {
    return this.socket.subscribe(topic, options, handlers);
  }

  /** A group member over HTTP polls. */
  consumer(group: string, options: ConsumerOptions): Consumer {
    return new Consumer(this.http, group, options);
  }

  async describeGroup(group: string): Promise<GroupDetails> {
    return (await this.http.request<GroupDetails>({ method: "GET", path: groupPath(group), repeatable: true })).body;
  }

  /** Moves a group's committed offsets (for a group without live members, or they move on
   * at their next poll). */
  async seek(group: string, topic: string, to: SeekTo): Promise<void> {
    await this.http.request({ method: "POST", path: `${groupPath(group)}/seek`, body: { topic, to }, repeatable: true });
  }

  /** Ends every subscription and the socket. */
  close(): void {
    this.socket.close();
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
