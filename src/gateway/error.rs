//! The errors every transport answers with: one [`ErrorCode`] per kind of failure (the
//! SPEC's `{"error": {"code", "message"}}`), decided here for every domain error, so HTTP,
//! WebSocket and SSE name the same failure the same way. Statuses and close codes are each
//! transport's (`http::error` maps codes to statuses in one place).
//!
//! Every message passes through [`crate::echo::sanitize`] on its way out (response body and
//! log lines alike), so client text echoed in it can neither forge a log line nor grow the
//! answer without bound. Server faults never show their details: the message says
//! "internal error", and the log line carries the details.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::echo::{MAX_MESSAGE_CHARS, sanitize};
use crate::groups::GroupError;
use crate::log::LogError;
use crate::records::PublishError;

/// Every error code the API answers with, on every transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidBody,
    InvalidQuery,
    InvalidPath,
    InvalidTopicName,
    InvalidGroupName,
    InvalidArgument,
    InvalidOffset,
    InvalidIdempotencyKey,
    InvalidMemberId,
    MissingToken,
    InvalidToken,
    Forbidden,
    NotFound,
    TopicNotFound,
    PartitionNotFound,
    GroupNotFound,
    MemberNotFound,
    MethodNotAllowed,
    RequestTimeout,
    TopicExists,
    PartitionsCannotShrink,
    StaleGeneration,
    PartitionNotAssigned,
    GroupNotEmpty,
    GroupFull,
    GroupInUseByKafkaConsumers,
    RateLimited,
    TooManyGroups,
    TooManyConnections,
    InsufficientStorage,
    StorageFull,
    BodyTooLarge,
    RecordTooLarge,
    TooManyRecords,
    UnsupportedMediaType,
    OffsetOutOfRange,
    IdempotencyKeyReused,
    InternalError,
    ShuttingDown,
    Unavailable,
    KafkaUnavailable,
}

impl ErrorCode {
    /// The code as it appears in error bodies and messages.
    pub fn as_str(self) -> &'static str {
        use ErrorCode as C;
        match self {
            C::InvalidBody => "invalid_body",
            C::InvalidQuery => "invalid_query",
            C::InvalidPath => "invalid_path",
            C::InvalidTopicName => "invalid_topic_name",
            C::InvalidGroupName => "invalid_group_name",
            C::InvalidArgument => "invalid_argument",
            C::InvalidOffset => "invalid_offset",
            C::InvalidIdempotencyKey => "invalid_idempotency_key",
            C::InvalidMemberId => "invalid_member_id",
            C::MissingToken => "missing_token",
            C::InvalidToken => "invalid_token",
            C::Forbidden => "forbidden",
            C::NotFound => "not_found",
            C::TopicNotFound => "topic_not_found",
            C::PartitionNotFound => "partition_not_found",
            C::GroupNotFound => "group_not_found",
            C::MemberNotFound => "member_not_found",
            C::MethodNotAllowed => "method_not_allowed",
            C::RequestTimeout => "request_timeout",
            C::TopicExists => "topic_exists",
            C::PartitionsCannotShrink => "partitions_cannot_shrink",
            C::StaleGeneration => "stale_generation",
            C::PartitionNotAssigned => "partition_not_assigned",
            C::GroupNotEmpty => "group_not_empty",
            C::GroupFull => "group_full",
            C::GroupInUseByKafkaConsumers => "group_in_use_by_kafka_consumers",
            C::RateLimited => "rate_limited",
            C::TooManyGroups => "too_many_groups",
            C::TooManyConnections => "too_many_connections",
            C::InsufficientStorage => "insufficient_storage",
            C::StorageFull => "storage_full",
            C::BodyTooLarge => "body_too_large",
            C::RecordTooLarge => "record_too_large",
            C::TooManyRecords => "too_many_records",
            C::UnsupportedMediaType => "unsupported_media_type",
            C::OffsetOutOfRange => "offset_out_of_range",
            C::IdempotencyKeyReused => "idempotency_key_reused",
            C::InternalError => "internal_error",
            C::ShuttingDown => "shutting_down",
            C::Unavailable => "unavailable",
            C::KafkaUnavailable => "kafka_unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error the gateway hands a transport.
pub enum GatewayError {
    Log(LogError),
    Group(GroupError),
    /// No usable token.
    Unauthorized(AuthError),
    /// A request refused before the domain saw it: bad input, limits, scopes, routes.
    Request {
        code: ErrorCode,
        message: String,
    },
    /// Refused for now: a quota or a cap; the same request may pass after `retry_after`.
    Throttled {
        code: ErrorCode,
        message: String,
        retry_after: Duration,
    },
    /// A bug on our side; the message is logged, never shown.
    Internal(String),
}

impl GatewayError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> GatewayError {
        GatewayError::Request {
            code,
            message: message.into(),
        }
    }

    pub fn throttled(
        code: ErrorCode,
        message: impl Into<String>,
        retry_after: Duration,
    ) -> GatewayError {
        GatewayError::Throttled {
            code,
            message: message.into(),
            retry_after,
        }
    }

    /// When the same request may pass, for a refusal that is only for now.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            GatewayError::Log(err) => log_code(err),
            GatewayError::Group(err) => match err {
                GroupError::Log(err) => log_code(err),
                GroupError::InvalidMemberId { .. } => ErrorCode::InvalidMemberId,
                GroupError::UnknownMember { .. } => ErrorCode::MemberNotFound,
                GroupError::GroupNotFound(_) => ErrorCode::GroupNotFound,
                GroupError::StaleGeneration { .. } => ErrorCode::StaleGeneration,
                GroupError::NotAssigned { .. } => ErrorCode::PartitionNotAssigned,
                GroupError::GroupNotEmpty { .. } => ErrorCode::GroupNotEmpty,
                GroupError::GroupFull { .. } => ErrorCode::GroupFull,
                GroupError::TooManyGroups { .. } => ErrorCode::TooManyGroups,
                GroupError::Invalid(_) => ErrorCode::InvalidArgument,
            },
            GatewayError::Unauthorized(AuthError::Missing) => ErrorCode::MissingToken,
            GatewayError::Unauthorized(_) => ErrorCode::InvalidToken,
            GatewayError::Request { code, .. } | GatewayError::Throttled { code, .. } => *code,
            GatewayError::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The offset error inside, if this is one: its bounds go into error bodies.
    pub fn out_of_range(&self) -> Option<&LogError> {
        match self {
            GatewayError::Log(err @ LogError::OffsetOutOfRange { .. })
            | GatewayError::Group(GroupError::Log(err @ LogError::OffsetOutOfRange { .. })) => {
                Some(err)
            }
            _ => None,
        }
    }

    /// What the client reads. Server faults say nothing about their cause.
    fn public_message(&self) -> String {
        match self {
            _ if self.code() == ErrorCode::InternalError => "internal error".to_owned(),
            GatewayError::Log(err) => err.to_string(),
            GatewayError::Group(err) => err.to_string(),
            GatewayError::Unauthorized(err) => err.to_string(),
            GatewayError::Request { message, .. }
            | GatewayError::Throttled { message, .. }
            | GatewayError::Internal(message) => message.clone(),
        }
    }

    /// What the log gets: the whole story.
    pub fn detail(&self) -> String {
        match self {
            GatewayError::Internal(message) => message.clone(),
            GatewayError::Log(err) => err.to_string(),
            GatewayError::Group(err) => err.to_string(),
            _ => self.public_message(),
        }
    }

    /// The error body every transport sends (HTTP's body, a WebSocket `error`'s `error`,
    /// an SSE `error` event's data).
    pub fn body(&self) -> ErrorDetail {
        let (log_start_offset, high_watermark) = match self.out_of_range() {
            Some(LogError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            }) => (Some(log_start_offset.get()), Some(high_watermark.get())),
            _ => (None, None),
        };
        ErrorDetail {
            code: self.code(),
            message: self.to_string(),
            log_start_offset,
            high_watermark,
            retry_after_ms: self
                .retry_after()
                .map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

fn log_code(err: &LogError) -> ErrorCode {
    match err {
        LogError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        LogError::InvalidGroupId { .. } => ErrorCode::InvalidGroupName,
        LogError::InvalidOffset { .. } => ErrorCode::InvalidOffset,
        LogError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        LogError::TopicExists(_) => ErrorCode::TopicExists,
        LogError::PartitionsCannotShrink { .. } => ErrorCode::PartitionsCannotShrink,
        LogError::TopicNotFound(_) => ErrorCode::TopicNotFound,
        LogError::PartitionNotFound { .. } => ErrorCode::PartitionNotFound,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
        LogError::GroupInUseByKafkaConsumers(_) => ErrorCode::GroupInUseByKafkaConsumers,
        LogError::ShuttingDown => ErrorCode::ShuttingDown,
        LogError::Unavailable(_) => ErrorCode::Unavailable,
        LogError::ClusterUnavailable(_) => ErrorCode::KafkaUnavailable,
        LogError::StorageFull(_) => ErrorCode::InsufficientStorage,
        LogError::Storage(_) => ErrorCode::InternalError,
    }
}

/// The code (and so the status) of a refused publish, for every transport.
pub fn publish_error_code(err: &PublishError) -> ErrorCode {
    match err {
        PublishError::NoRecords
        | PublishError::ValueTooDeep { .. }
        | PublishError::LoneSurrogate { .. } => ErrorCode::InvalidBody,
        PublishError::TooManyRecords { .. } => ErrorCode::TooManyRecords,
        PublishError::RecordTooLarge { .. } => ErrorCode::RecordTooLarge,
    }
}

impl From<LogError> for GatewayError {
    fn from(err: LogError) -> Self {
        GatewayError::Log(err)
    }
}

impl From<GroupError> for GatewayError {
    fn from(err: GroupError) -> Self {
        GatewayError::Group(err)
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GatewayError::Log(err) => Some(err),
            GatewayError::Group(err) => Some(err),
            GatewayError::Unauthorized(err) => Some(err),
            GatewayError::Request { .. }
            | GatewayError::Throttled { .. }
            | GatewayError::Internal(_) => None,
        }
    }
}

// Both go into log lines (tracing-actix-web records the error with `%` and `?`), so both
// are sanitized and capped.
impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sanitize(&self.public_message(), MAX_MESSAGE_CHARS))
    }
}

impl fmt::Debug for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {}",
            self.code(),
            sanitize(&self.detail(), MAX_MESSAGE_CHARS)
        )
    }
}

/// The error body of every non-2xx response.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// With `offset_out_of_range`: the first offset still stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<u64>,
    /// With `offset_out_of_range`: the offset the next record will get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<u64>,
    /// With `rate_limited` and `too_many_connections`: how long to wait before the same
    /// request may pass, in milliseconds (HTTP also says it in `Retry-After`, in seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_the_same_as_text_and_as_json() {
        let code = serde_json::to_value(ErrorCode::IdempotencyKeyReused).unwrap();
        assert_eq!(code, "idempotency_key_reused");
        // Every variant: serde's name and `as_str` agree (the schema lists serde's).
        let schema = serde_json::to_value(<ErrorCode as utoipa::PartialSchema>::schema()).unwrap();
        let names = schema["enum"].as_array().expect("enum of codes");
        assert_eq!(names.len(), 41);
        for name in names {
            let code: ErrorCode = serde_json::from_value(name.clone()).unwrap();
            assert_eq!(code.as_str(), name.as_str().unwrap());
        }
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let err = GatewayError::from(LogError::panicked("entered unreachable code".into()));
        assert_eq!(err.to_string(), "internal error");
        assert!(format!("{err:?}").contains("unreachable"));
        assert_eq!(err.code(), ErrorCode::InternalError);
    }

    #[test]
    fn echoed_text_is_sanitized() {
        let err = GatewayError::new(ErrorCode::InvalidBody, "unknown field `a\n2026 INFO x`");
        assert_eq!(err.to_string(), "unknown field `a\\n2026 INFO x`");
        let long = GatewayError::new(ErrorCode::InvalidBody, "y".repeat(100_000));
        assert!(long.to_string().len() < 600);
    }
}
