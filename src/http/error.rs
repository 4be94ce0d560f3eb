//! The one place where errors become HTTP responses: each [`ErrorCode`] gets its status
//! here, and every error body is the SPEC's `{"error": {"code", "message"}}`. Server
//! faults (500) never show their details: the body says "internal error" with the request
//! id, and the log line carries the details.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::auth::AuthError;
use crate::echo::quoted;
use crate::gateway::{ErrorBody, ErrorCode, GatewayError};

/// The status of every error code.
pub fn status(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::InvalidBody
        | C::InvalidQuery
        | C::InvalidPath
        | C::InvalidTopicName
        | C::InvalidGroupName
        | C::InvalidArgument
        | C::InvalidOffset
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
        C::RateLimited | C::TooManyGroups => StatusCode::TOO_MANY_REQUESTS,
        C::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        C::TopicExists
        | C::PartitionsCannotShrink
        | C::StaleGeneration
        | C::PartitionNotAssigned
        | C::GroupNotEmpty
        | C::GroupFull
        | C::GroupInUseByKafkaConsumers => StatusCode::CONFLICT,
        C::BodyTooLarge | C::RecordTooLarge | C::TooManyRecords => StatusCode::PAYLOAD_TOO_LARGE,
        C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        C::OffsetOutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
        C::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        C::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        C::ShuttingDown
        | C::Unavailable
        | C::KafkaUnavailable
        | C::TooManyConnections
        | C::StorageFull => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Marks a 500 so the request-id middleware can name the request in its body.
pub struct InternalErrorMarker;

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        status(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        let status = status(code);
        if code == ErrorCode::InternalError {
            // Inside the request span, so the line carries the request id.
            tracing::error!(detail = ?self, "request failed");
        } else if status.is_server_error() {
            // A condition of the server (full, shutting down, overloaded), logged where it
            // arises; one line per refused request would flood the log.
            tracing::debug!(detail = ?self, "request refused");
        }
        let mut response = HttpResponse::build(status);
        response.insert_header(ContentType::json());
        if let GatewayError::Unauthorized(err) = self {
            // RFC 6750 §3: tell the client to use a bearer token, and why this one failed.
            let challenge = match err {
                AuthError::Missing => r#"Bearer realm="tidegate""#.to_owned(),
                _ => r#"Bearer realm="tidegate", error="invalid_token""#.to_owned(),
            };
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let Some(wait) = self.retry_after() {
            // Whole seconds, at least 1 (RFC 9110 §10.2.3 has no fractions).
            let seconds = wait.as_millis().div_ceil(1000).max(1);
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if code == ErrorCode::TooManyConnections {
            // The connection is past the cap: it ends with this answer.
            response.force_close();
        }
        if code == ErrorCode::InternalError {
            response.extensions_mut().insert(InternalErrorMarker);
        }
        response.json(ErrorBody { error: self.body() })
    }
}

/// Turns actix's own extractor failures (query string, path) into our error shape.
pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    GatewayError::new(
        ErrorCode::InvalidQuery,
        format!("invalid query string: {err}"),
    )
    .into()
}

pub fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    GatewayError::new(
        ErrorCode::InvalidPath,
        format!("invalid path parameter: {err}"),
    )
    .into()
}

/// The answer for any path no route serves.
pub fn route_not_found(request: &HttpRequest) -> GatewayError {
    GatewayError::new(
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
    use crate::log::LogError;

    #[test]
    fn server_faults_are_500_and_retryable_refusals_503() {
        let fault = GatewayError::from(LogError::panicked("entered unreachable code".into()));
        assert_eq!(fault.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        for retryable in [
            LogError::ShuttingDown,
            LogError::Unavailable("writer failed".into()),
            LogError::ClusterUnavailable("no broker".into()),
        ] {
            assert_eq!(
                GatewayError::from(retryable).status_code(),
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
    }
}
