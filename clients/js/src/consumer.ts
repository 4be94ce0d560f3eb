import { backoffDelay, sleep, type BackoffOptions } from "./backoff.js";
import { TidegateError } from "./errors.js";
import type { Http } from "./http.js";
import type { GroupRecord, PollResponse } from "./types.js";

export interface ConsumerOptions {
  topics: string[];
  /** Each poll commits what the previous polls delivered (at-least-once); `close()`
   * commits the last batch. Default false: call `commit()`. */
  autoCommit?: boolean;
  /** Where partitions without a committed offset start (default `latest`). */
  autoOffsetReset?: "latest" | "earliest";
  /** Most records per poll (default the server's, 100). */
  limit?: number;
  /** How long one poll waits for records (default 5 000 ms). */
  waitMs?: number;
  /** How long the member lives between polls (default the server's, 30 000 ms). */
  sessionTimeoutMs?: number;
  /** Backoff between polls that failed on the network. */
  backoff?: BackoffOptions;
}

export interface ConsumerBatch {
  records: GroupRecord[];
  memberId: string;
  generation: number;
  assignment: PollResponse["assignment"];
}

/** A consumer group member over HTTP polls, for scripts and serverless functions:
 * `for await (const batch of consumer)` polls until `close()`. */
export class Consumer implements AsyncIterable<ConsumerBatch> {
  memberId: string | undefined;
  generation: number | undefined;
  private delivered = new Map<string, { topic: string; partition: number; offset: number }>();
  private readonly stop = new AbortController();
  private failures = 0;

  constructor(
    private readonly http: Http,
    readonly group: string,
    private readonly options: ConsumerOptions,
  ) {}

  get closed(): boolean {
    return this.stop.signal.aborted;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ConsumerBatch> {
    while (!this.closed) {
      const batch = await this.poll();
      if (batch) yield batch;
    }
  }

  /** One poll; undefined when it failed on the network (the member then rejoins, from the
   * group's committed offsets) or the consumer was closed meanwhile. */
  async poll(): Promise<ConsumerBatch | undefined> {
    if (this.closed) return undefined;
    const body: Record<string, unknown> = { topics: this.options.topics };
    if (this.memberId !== undefined) body.member_id = this.memberId;
    if (this.options.autoCommit) body.auto_commit = true;
    if (this.options.autoOffsetReset) body.auto_offset_reset = this.options.autoOffsetReset;
    if (this.options.limit !== undefined) body.limit = this.options.limit;
    if (this.options.sessionTimeoutMs !== undefined) body.session_timeout_ms = this.options.sessionTimeoutMs;
    const waitMs = this.options.waitMs ?? 5000;
    body.wait_ms = waitMs;
    let response: PollResponse;
    try {
      ({ body: response } = await this.http.request<PollResponse>({
        method: "POST",
        path: `v1/groups/${encodeURIComponent(this.group)}/poll`,
        body,
        // A poll whose answer was lost has moved this member's positions past records it
        // never saw; sending it again would skip them.
        repeatable: false,
        waitMs,
        signal: this.stop.signal,
      }));
    } catch (error) {
      if (this.closed) return undefined;
      const code = (error as TidegateError).code;
      if (code !== "network_error" && code !== "timeout") throw error;
      // Rejoin as a new member: it starts from the committed offsets, so the lost answer's
      // records come again (at-least-once) instead of being skipped.
      await this.leave().catch(() => {});
      await sleep(backoffDelay(this.failures++, this.options.backoff), this.stop.signal);
      return undefined;
    }
    this.failures = 0;
    if (this.memberId !== response.member_id || this.generation !== response.generation) {
      // A new member or a rebalance: what this member delivered on other partitions is no
      // longer its to commit.
      const assigned = new Set(response.assignment.map((p) => `${p.topic}\u0000${p.partition}`));
      for (const key of this.delivered.keys()) if (!assigned.has(key)) this.delivered.delete(key);
    }
    this.memberId = response.member_id;
    this.generation = response.generation;
    for (const record of response.records) {
      this.delivered.set(`${record.topic}\u0000${record.partition}`, {
        topic: record.topic,
        partition: record.partition,
        offset: record.offset + 1,
      });
    }
    return {
      records: response.records,
      memberId: response.member_id,
      generation: response.generation,
      assignment: response.assignment,
    };
  }

  /** Commits the positions after every record delivered so far (fenced by the generation:
   * a rebalance in between answers 409 `stale_generation`-style errors). */
  async commit(): Promise<void> {
    if (this.memberId === undefined || this.delivered.size === 0) return;
    await this.http.request({
      method: "POST",
      path: `v1/groups/${encodeURIComponent(this.group)}/commit`,
      body: { member_id: this.memberId, generation: this.generation, offsets: [...this.delivered.values()] },
      repeatable: true,
    });
  }

  /** Stops polling (a poll in flight ends at once), commits with `autoCommit`, and leaves
   * the group so that it rebalances now rather than after the session timeout. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.stop.abort();
    try {
      if (this.options.autoCommit) await this.commit();
    } finally {
      await this.leave();
    }
  }

  private async leave() {
    const member = this.memberId;
    if (member === undefined) return;
    this.memberId = undefined;
    this.generation = undefined;
    this.delivered.clear();
    try {
      await this.http.request({
        method: "DELETE",
        path: `v1/groups/${encodeURIComponent(this.group)}/members/${encodeURIComponent(member)}`,
        repeatable: true,
      });
    } catch (error) {
      // Already expired or removed: leaving is done either way.
      if ((error as TidegateError).status !== 404) throw error;
    }
  }
}
