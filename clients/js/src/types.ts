// The shapes the client sends and receives: HTTP ones from the server's OpenAPI document
// (src/generated/openapi.ts, checked against openapi/openapi.json by a test), socket ones
// from its AsyncAPI document (src/generated/asyncapi.ts, likewise).
import type { components as socketComponents } from "./generated/asyncapi.js";
import type { components } from "./generated/openapi.js";

type Schemas = components["schemas"];
type Socket = socketComponents["schemas"];

/** A record as the server serves it (fetch, subscriptions). */
export type StoredRecord = Schemas["RecordJson"];
/** A record of a group poll: a stored record with its topic. */
export type GroupRecord = Schemas["GroupRecordJson"];
/** A record to publish. */
export type NewRecord = Schemas["PublishRecord"];
export type PublishedOffset = Schemas["PublishedOffset"];
export type FetchResponse = Schemas["FetchResponse"];
export type PollResponse = Schemas["PollResponse"];
export type TopicDetails = Schemas["TopicDetails"];
export type TopicList = Schemas["TopicList"];
export type GroupDetails = Schemas["GroupDetails"];
export type CreateTopic = Schemas["CreateTopic"];
export type UpdateTopic = Schemas["UpdateTopic"];
export type SeekTo = Schemas["SeekTo"];
export type SeekResponse = Schemas["SeekResponse"];
export type GroupList = Schemas["GroupList"];
export type TimestampOffset = Schemas["TimestampOffsetResponse"];
export type TopicStats = Schemas["TopicStats"];
export type GroupStats = Schemas["GroupStats"];
export type ClusterDetails = Schemas["ClusterDetails"];

/** Where a subscription starts: the newest end, the oldest, offsets per partition, or a
 * cursor from an earlier `records` (resume right after it). */
export type StartFrom = Socket["StartFrom"];

/** What the socket's server side sends; `records` is documented apart from the others
 * because the server writes it without re-encoding the stored values. */
export type ServerMessage = Socket["ServerMessage"] | (Socket["RecordsMessage"] & { type: "records" });
export type ClientMessage = Socket["ClientMessage"];
export type SocketErrorDetail = Socket["ErrorDetail"];
