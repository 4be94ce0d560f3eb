//! The one place where errors become HTTP responses:
//! `{"error": {"code": "snake_case", "message": "human text"}}` with the SPEC's statuses.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::log::LogError;

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Log(#[from] LogError),
    /// Malformed or invalid input (400).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// A configured size limit was exceeded (413).
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RouteNotFound(String),
    /// No usable token (401).
    #[error(transparent)]
    Unauthorized(AuthError),
    /// A valid token without the needed scope (403).
    #[error("{0}")]
    Forbidden(String),
    /// A bug on our side (500); the message is logged and shown.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::TooLarge {
            code,
            message: message.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Log(err) => match err {
                LogError::InvalidTopicName(_) => "invalid_topic_name",
                LogError::InvalidArgument(_) => "invalid_argument",
                LogError::TopicExists(_) => "topic_exists",
                LogError::TopicNotFound(_) => "topic_not_found",
                LogError::PartitionNotFound { .. } => "partition_not_found",
                LogError::OffsetOutOfRange { .. } => "offset_out_of_range",
                LogError::ShuttingDown => "shutting_down",
                LogError::Storage(_) => "storage_error",
            },
            ApiError::BadRequest { code, .. } | ApiError::TooLarge { code, .. } => code,
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RouteNotFound(_) => "not_found",
            ApiError::Unauthorized(AuthError::Missing) => "missing_token",
            ApiError::Unauthorized(_) => "invalid_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

/// The error body of every non-2xx response.
#[derive(Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable snake_case code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// With `offset_out_of_range`: the first offset still stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<u64>,
    /// With `offset_out_of_range`: the offset the next record will get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<u64>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Log(err) => match err {
                LogError::InvalidTopicName(_) | LogError::InvalidArgument(_) => {
                    StatusCode::BAD_REQUEST
                }
                LogError::TopicExists(_) => StatusCode::CONFLICT,
                LogError::TopicNotFound(_) | LogError::PartitionNotFound { .. } => {
                    StatusCode::NOT_FOUND
                }
                LogError::OffsetOutOfRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
                LogError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                LogError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let (log_start_offset, high_watermark) = match self {
            ApiError::Log(LogError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            }) => (Some(*log_start_offset), Some(*high_watermark)),
            _ => (None, None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
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
        response.json(body)
    }
}

/// Turns actix's own extractor failures (query string, path) into our error shape.
pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_query", format!("invalid query string: {err}")).into()
}

pub fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_path", format!("invalid path parameter: {err}")).into()
}

/// The answer for any path or method no route serves.
pub async fn route_not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound(format!(
        "no route for {} {}",
        request.method(),
        request.path()
    )))
}
