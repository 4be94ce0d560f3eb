//! The one place where errors become HTTP responses:
//! `{"error": {"code": "snake_case", "message": "human text"}}` with the SPEC's statuses.
//!
//! Every message passes through [`crate::echo::sanitize`] on its way out (response body and
//! log lines alike), so client text echoed in it can neither forge a log line nor grow the
//! answer without bound. Server faults (500) never show their details: the body says
//! "internal error" with the request id, and the log line carries the details.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::echo::{MAX_MESSAGE_CHARS, quoted, sanitize};
use crate::groups::GroupError;
use crate::log::LogError;

/// Every error code the API answers with; the code decides the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidBody,
    InvalidQuery,
    InvalidPath,
    InvalidTopicName,
    InvalidGroupName,
    InvalidArgument,
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
    BodyTooLarge,
    RecordTooLarge,
    TooManyRecords,
    UnsupportedMediaType,
    OffsetOutOfRange,
    IdempotencyKeyReused,
    InternalError,
    ShuttingDown,
    Unavailable,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode as C;
        match self {
            C::InvalidBody
            | C::InvalidQuery
            | C::InvalidPath
            | C::InvalidTopicName
            | C::InvalidGroupName
            | C::InvalidArgument
            | C::InvalidIdempotencyKey
            | C::InvalidMemberId => StatusCode::BAD_REQUEST,
            C::MissingToken | C::InvalidToken => StatusCode::UNAUTHORIZED,
            C::Forbidden => StatusCode::FORBIDDEN,
            C::NotFound
            | C::TopicNotFound
            | C::PartitionNotFound
            | C::GroupNotFound
            | C::MemberNotFound => StatusCode::NOT_FOUND,
            C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            C::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            C::TopicExists
            | C::PartitionsCannotShrink
            | C::StaleGeneration
            | C::PartitionNotAssigned
            | C::GroupNotEmpty
            | C::GroupFull => StatusCode::CONFLICT,
            C::BodyTooLarge | C::RecordTooLarge | C::TooManyRecords => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            C::OffsetOutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
            C::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            C::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            C::ShuttingDown | C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Every error a handler can return.
pub enum ApiError {
    Log(LogError),
    Group(GroupError),
    /// No usable token (401).
    Unauthorized(AuthError),
    /// A request the adapter itself refuses: bad input, limits, scopes, routes.
    Request {
        code: ErrorCode,
        message: String,
    },
    /// A bug on our side (500); the message is logged, never shown.
    Internal(String),
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::Request {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Log(err) => log_code(err),
            ApiError::Group(err) => match err {
                GroupError::Log(err) => log_code(err),
                GroupError::InvalidMemberId { .. } => ErrorCode::InvalidMemberId,
                GroupError::UnknownMember { .. } => ErrorCode::MemberNotFound,
                GroupError::GroupNotFound(_) => ErrorCode::GroupNotFound,
                GroupError::StaleGeneration { .. } => ErrorCode::StaleGeneration,
                GroupError::NotAssigned { .. } => ErrorCode::PartitionNotAssigned,
                GroupError::GroupNotEmpty { .. } => ErrorCode::GroupNotEmpty,
                GroupError::GroupFull { .. } => ErrorCode::GroupFull,
                GroupError::Invalid(_) => ErrorCode::InvalidArgument,
            },
            ApiError::Unauthorized(AuthError::Missing) => ErrorCode::MissingToken,
            ApiError::Unauthorized(_) => ErrorCode::InvalidToken,
            ApiError::Request { code, .. } => *code,
            ApiError::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// What the client reads. Server faults say nothing about their cause.
    fn public_message(&self) -> String {
        match self {
            _ if self.code() == ErrorCode::InternalError => "internal error".to_owned(),
            ApiError::Log(err) => err.to_string(),
            ApiError::Group(err) => err.to_string(),
            ApiError::Unauthorized(err) => err.to_string(),
            ApiError::Request { message, .. } | ApiError::Internal(message) => message.clone(),
        }
    }

    /// What the log gets: the whole story.
    fn detail(&self) -> String {
        match self {
            ApiError::Internal(message) => message.clone(),
            ApiError::Log(err) => err.to_string(),
            ApiError::Group(err) => err.to_string(),
            _ => self.public_message(),
        }
    }
}

fn log_code(err: &LogError) -> ErrorCode {
    match err {
        LogError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        LogError::InvalidGroupId { .. } => ErrorCode::InvalidGroupName,
        LogError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        LogError::TopicExists(_) => ErrorCode::TopicExists,
        LogError::PartitionsCannotShrink { .. } => ErrorCode::PartitionsCannotShrink,
        LogError::TopicNotFound(_) => ErrorCode::TopicNotFound,
        LogError::PartitionNotFound { .. } => ErrorCode::PartitionNotFound,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
        LogError::ShuttingDown => ErrorCode::ShuttingDown,
        LogError::Unavailable(_) => ErrorCode::Unavailable,
        LogError::Storage(_) => ErrorCode::InternalError,
    }
}

impl From<LogError> for ApiError {
    fn from(err: LogError) -> Self {
        ApiError::Log(err)
    }
}

impl From<GroupError> for ApiError {
    fn from(err: GroupError) -> Self {
        ApiError::Group(err)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiError::Log(err) => Some(err),
            ApiError::Group(err) => Some(err),
            ApiError::Unauthorized(err) => Some(err),
            ApiError::Request { .. } | ApiError::Internal(_) => None,
        }
    }
}

// Both go into log lines (tracing-actix-web records the error with `%` and `?`), so both
// are sanitized and capped.
impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sanitize(&self.public_message(), MAX_MESSAGE_CHARS))
    }
}

impl fmt::Debug for ApiError {
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
}

/// Marks a 500 so the request-id middleware can name the request in its body.
pub struct InternalErrorMarker;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        let status = code.status();
        if status.is_server_error() {
            // Inside the request span, so the line carries the request id.
            tracing::error!(detail = ?self, "request failed");
        }
        let (log_start_offset, high_watermark) = match self {
            ApiError::Log(LogError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            })
            | ApiError::Group(GroupError::Log(LogError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            })) => (Some(*log_start_offset), Some(*high_watermark)),
            _ => (None, None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
                log_start_offset,
                high_watermark,
            },
        };
        let mut response = HttpResponse::build(status);
        response.insert_header(ContentType::json());
        if let ApiError::Unauthorized(err) = self {
            // RFC 6750 §3: tell the client to use a bearer token, and why this one failed.
            let challenge = match err {
                AuthError::Missing => r#"Bearer realm="tidegate""#.to_owned(),
                _ => r#"Bearer realm="tidegate", error="invalid_token""#.to_owned(),
            };
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if code == ErrorCode::InternalError {
            response.extensions_mut().insert(InternalErrorMarker);
        }
        response.json(body)
    }
}

/// Turns actix's own extractor failures (query string, path) into our error shape.
pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::new(
        ErrorCode::InvalidQuery,
        format!("invalid query string: {err}"),
    )
    .into()
}

pub fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::new(
        ErrorCode::InvalidPath,
        format!("invalid path parameter: {err}"),
    )
    .into()
}

/// The answer for any path no route serves.
pub fn route_not_found(request: &HttpRequest) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!(
            "no route for {} {}",
            request.method(),
            quoted(request.path())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_in_snake_case() {
        let code = serde_json::to_value(ErrorCode::IdempotencyKeyReused).unwrap();
        assert_eq!(code, "idempotency_key_reused");
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let err = ApiError::from(LogError::panicked("entered unreachable code".into()));
        assert_eq!(err.to_string(), "internal error");
        assert!(format!("{err:?}").contains("unreachable"));
        assert_eq!(err.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn echoed_text_is_sanitized() {
        let err = ApiError::new(ErrorCode::InvalidBody, "unknown field `a\n2026 INFO x`");
        assert_eq!(err.to_string(), "unknown field `a\\n2026 INFO x`");
        let long = ApiError::new(ErrorCode::InvalidBody, "y".repeat(100_000));
        assert!(long.to_string().len() < 600);
    }
}
