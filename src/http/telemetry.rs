//! The per-request tracing span. It records the path but never the query string, because
//! the query may carry `access_token`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};

/// Longest path written into a log line; request targets can be kilobytes long.
const MAX_LOGGED_PATH_CHARS: usize = 256;

/// Root span with method, path and a request id; logs one line when the request ends.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %crate::echo::sanitize(request.path(), MAX_LOGGED_PATH_CHARS),
            request_id = %request_id,
            http.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => response.status().as_u16(),
            Err(err) => err.as_response_error().status_code().as_u16(),
        };
        // Debug, not info: a line per request costs about 40% of throughput (BENCHMARKS.md).
        span.in_scope(|| tracing::debug!(status, "request finished"));
        // Refusals under load (quotas, caps, a full disk) are logged once where they
        // arise; a line for each refused request would let one client flood the log.
        if !matches!(status, 429 | 503 | 507) {
            DefaultRootSpanBuilder::on_request_end(span, outcome);
        }
    }
}
