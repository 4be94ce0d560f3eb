//! The OpenAPI document: what utoipa derives from the handlers, plus what only the running
//! configuration knows. Every constraint the server enforces is stated here, so a request
//! that is valid by the schema is one the server accepts.

use utoipa::openapi::schema::{ArrayItems, Object, Schema, Type};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

use crate::config::Limits;
use crate::groups::{GroupSettings, MemberId};
use crate::log::{MAX_PARTITIONS, MAX_TOPIC_NAME_LEN, Offset};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tidegate",
        description = "HTTP/WebSocket gateway for durable, partitioned event streams with Kafka's model."
    ),
    tags(
        (name = "topics", description = "Create, inspect, change and delete topics"),
        (name = "records", description = "Publish and fetch records"),
        (name = "groups", description = "Consume as a group: poll, commit, seek, inspect"),
        (name = "push", description = "Records pushed as they are committed: WebSocket and Server-Sent Events"),
        (name = "operations", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

/// Paths that answer without a token.
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/openapi.json"];

/// Declares the bearer scheme, and on every operation outside [`OPEN_PATHS`] the
/// requirement and its 401/403 answers, mirroring what the `Caller` guard enforces.
pub struct BearerAuth {
    /// `--metrics-public`: `/metrics` needs no token.
    pub metrics_public: bool,
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT in `Authorization: Bearer`, or in `?access_token=` where headers cannot be set.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            if OPEN_PATHS.contains(&path.as_str()) || (self.metrics_public && path == "/metrics") {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                let responses = &mut operation.responses.responses;
                responses.insert(
                    "401".into(),
                    error_response("Missing, invalid or expired token"),
                );
                responses.insert(
                    "403".into(),
                    error_response("The token lacks the scope this needs"),
                );
            }
        }
    }
}

/// On every operation that takes a body, the answers `http/body.rs` gives for any body:
/// 408, 413 and 415. An operation that words one of them itself keeps its wording.
pub struct BodyErrors;

impl Modify for BodyErrors {
    fn modify(&self, api: &mut Document) {
        for item in api.paths.paths.values_mut() {
            let operations = [&mut item.post, &mut item.put, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                if operation.request_body.is_none() {
                    continue;
                }
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    ("408", "The body did not arrive within --body-timeout-ms"),
                    ("413", "Body over --max-body-bytes"),
                    ("415", "Body is not JSON, or Content-Encoding is not gzip"),
                ] {
                    responses
                        .entry(status.into())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
    }
}

/// The answers of the overload limits (SPEC "Overload, quotas and faults"), each where it
/// can come: 503 `too_many_connections` on every operation, 429 `rate_limited` on every
/// one behind a token, `too_many_groups` where a group can be created, and 507 on publish.
/// An answer an operation words already gets these appended.
pub struct OverloadAnswers {
    pub metrics_public: bool,
}

impl Modify for OverloadAnswers {
    fn modify(&self, api: &mut Document) {
        for (path, item) in api.paths.paths.iter_mut() {
            let guarded = !(OPEN_PATHS.contains(&path.as_str())
                || (self.metrics_public && path == "/metrics"));
            let creates_groups = path.starts_with("/v1/groups/{group}/");
            let publishes = path == "/v1/topics/{topic}/records";
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, false),
                (&mut item.patch, false),
                (&mut item.delete, false),
            ];
            for (operation, is_post) in operations {
                let Some(operation) = operation else { continue };
                let responses = &mut operation.responses.responses;
                add_answer(
                    responses,
                    "503",
                    "past --max-connections: `too_many_connections`, retry after `Retry-After` seconds",
                    true,
                );
                if guarded {
                    add_answer(
                        responses,
                        "429",
                        "over --quota-requests-per-sec (on publishes also --quota-publish-bytes-per-sec) for the token's subject: `rate_limited`, retry after `Retry-After` seconds (`retry_after_ms` in the error); nothing was applied",
                        true,
                    );
                }
                if creates_groups && is_post {
                    add_answer(
                        responses,
                        "429",
                        "a group that would be one more than --max-groups: `too_many_groups`",
                        false,
                    );
                }
                if publishes && is_post {
                    add_answer(
                        responses,
                        "507",
                        "no room to store the records (the data directory's disk is below --min-free-bytes or full; a broker out of room on Kafka): `insufficient_storage`; nothing was appended",
                        false,
                    );
                }
            }
        }
    }
}

/// Adds `text` to the answer for `status`, creating it (with a `Retry-After` header when
/// `retry_after`) if the operation has none.
fn add_answer(
    responses: &mut std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>>,
    status: &str,
    text: &str,
    retry_after: bool,
) {
    use utoipa::openapi::HeaderBuilder;
    use utoipa::openapi::schema::ObjectBuilder;
    let entry = responses
        .entry(status.into())
        .or_insert_with(|| error_response(""));
    let RefOr::T(response) = entry else {
        return;
    };
    response.description = match response.description.trim_end_matches('.') {
        "" => capitalized(text),
        existing => format!("{existing}; or {text}"),
    };
    if retry_after && !response.headers.contains_key("Retry-After") {
        response.headers.insert(
            "Retry-After".into(),
            RefOr::T(
                HeaderBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    ))
                    .description(Some("Whole seconds to wait before retrying"))
                    .build(),
            ),
        );
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An answer with the SPEC's error body.
fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build(),
    )
}

/// The constraints only the running configuration knows (fetch, publish and group limits),
/// and the grammar of topic and group names wherever one is sent.
pub struct Constraints {
    pub limits: Limits,
    pub groups: GroupSettings,
    /// The traffic history kept (`--stats-window-secs`): the longest `window_s`.
    pub stats_window_secs: u64,
}

impl Modify for Constraints {
    fn modify(&self, api: &mut Document) {
        let limits = &self.limits;
        for item in api.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    let RefOr::T(parameter) = parameter else {
                        continue;
                    };
                    let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema else {
                        continue;
                    };
                    match parameter.name.as_str() {
                        // Group names follow the topic-name rules.
                        "topic" | "group" => topic_name(schema),
                        "partition" => range(schema, 0, MAX_PARTITIONS as u64 - 1),
                        "offset" => range(schema, 0, Offset::MAX.get()),
                        "limit" => range(schema, 1, limits.max_fetch_records as u64),
                        "max_bytes" => range(schema, 1, limits.max_fetch_bytes as u64),
                        "wait_ms" => range(schema, 0, limits.max_wait_ms),
                        "window_s" => range(schema, 1, self.stats_window_secs),
                        "member" => {
                            schema.min_length = Some(1);
                            schema.max_length = Some(MemberId::MAX_LEN);
                            schema.pattern = Some("^[A-Za-z0-9._-]+$".into());
                        }
                        "Idempotency-Key" => {
                            // A header is a string or absent, never null.
                            schema.schema_type = Type::String.into();
                            schema.min_length = Some(1);
                            schema.max_length = Some(limits.max_idempotency_key_bytes);
                            schema.pattern = Some("^[ -~]+$".into());
                        }
                        _ => {}
                    }
                }
            }
        }
        let Some(components) = api.components.as_mut() else {
            return;
        };
        let schemas = &mut components.schemas;
        for (schema, field) in [
            ("CreateTopic", "name"),
            ("SeekBody", "topic"),
            ("CommitOffsetJson", "topic"),
        ] {
            if let Some(name) = property(schemas, schema, field) {
                topic_name(name);
            }
        }
        if let Some(RefOr::T(Schema::Object(poll))) = schemas.get_mut("PollBody") {
            if let Some(RefOr::T(Schema::Array(topics))) = poll.properties.get_mut("topics") {
                topics.max_items = Some(self.groups.max_topics);
                if let ArrayItems::RefOrSchema(item) = &mut topics.items
                    && let RefOr::T(Schema::Object(item)) = item.as_mut()
                {
                    topic_name(item);
                }
            }
            let ranges = [
                ("limit", 1, limits.max_fetch_records as u64),
                ("max_bytes", 1, limits.max_fetch_bytes as u64),
                ("wait_ms", 0, limits.max_wait_ms),
                (
                    "session_timeout_ms",
                    millis(self.groups.min_session_timeout),
                    millis(self.groups.max_session_timeout),
                ),
            ];
            for (field, minimum, maximum) in ranges {
                if let Some(RefOr::T(Schema::Object(schema))) = poll.properties.get_mut(field) {
                    range(schema, minimum, maximum);
                }
            }
        }
        if let Some(RefOr::T(Schema::Object(publish))) = schemas.get_mut("PublishRequest")
            && let Some(RefOr::T(Schema::Array(records))) = publish.properties.get_mut("records")
        {
            records.min_items = Some(1);
            records.max_items = Some(limits.max_records_per_request);
        }
    }
}

/// The object schema of `schema.field`, when it is one.
fn property<'a>(
    schemas: &'a mut std::collections::BTreeMap<String, RefOr<Schema>>,
    schema: &str,
    field: &str,
) -> Option<&'a mut Object> {
    let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(schema) else {
        return None;
    };
    match object.properties.get_mut(field) {
        Some(RefOr::T(Schema::Object(property))) => Some(property),
        _ => None,
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// 1–249 characters of `[A-Za-z0-9._-]`, not `.` or `..`, without look-ahead (which not
/// every schema tool supports): a name starts with a non-dot, or with one dot and a
/// non-dot, or with two dots and at least one more character.
fn topic_name(schema: &mut Object) {
    let max = MAX_TOPIC_NAME_LEN;
    schema.min_length = Some(1);
    schema.max_length = Some(max);
    schema.pattern = Some(format!(
        "^(?:[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{}}}|\\.[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{}}}|\\.\\.[A-Za-z0-9._-]{{1,{}}})$",
        max - 1,
        max - 2,
        max - 2
    ));
}

fn range(schema: &mut Object, minimum: u64, maximum: u64) {
    schema.minimum = Some(utoipa::Number::UInt(minimum as usize));
    schema.maximum = Some(utoipa::Number::UInt(maximum as usize));
}

/// `retention_ms` / `retention_bytes`: -1 for unlimited or a positive number; null or
/// absent keeps the default (on create) or the current value (on change).
pub fn retention() -> Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([-1]))
                    .description(Some("unlimited")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .minimum(Some(1)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}
