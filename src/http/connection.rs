//! Per-request plumbing around every route: connections whose body was left unread are
//! closed, every response names its request id, and paths we serve with other methods
//! answer 405.
//!
//! # Why unread bodies close the connection
//! A refused request (401, 403, 413, 415, 408) is answered before its body is read, and
//! some routes never read one. actix-http then drains what is left of a chunked body to
//! keep the connection alive, however slowly it trickles in; a client could hold the
//! connection (and a file descriptor) for as long as it likes. actix closes instead when
//! the request's payload is still alive when the response has been sent, after a linger of
//! `client_disconnect_timeout` (1 s). So the payload is shared here, and a response whose
//! request body was not read to the end carries it in its body until the last byte is out.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::Stream;
use tracing_actix_web::RequestId;

use super::error::{InternalErrorMarker, route_not_found};
use super::server::InFlight;
use crate::gateway::{ErrorBody, ErrorCode, ErrorDetail, GatewayError};

/// The request's payload, shared between the handler and the response.
pub struct SharedPayload {
    payload: Payload,
    finished: bool,
}

/// The handler's view of the shared payload.
struct TrackedPayload(Rc<RefCell<SharedPayload>>);

impl Stream for TrackedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut shared = self.0.borrow_mut();
        let next = Pin::new(&mut shared.payload).poll_next(cx);
        if matches!(next, Poll::Ready(None)) {
            shared.finished = true;
        }
        next
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds the request's unread payload until the body has been
    /// sent, so that actix closes the connection instead of draining the payload.
    pub struct HoldingBody<B> {
        #[pin]
        body: B,
        unread: Option<Rc<RefCell<SharedPayload>>>,
        // Until the body is sent, the connection's head deadline waits.
        in_flight: Option<InFlight>,
    }
}

impl<B: MessageBody> MessageBody for HoldingBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.project().body.poll_next(cx)
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        // Handing out the bytes would drop the payload before the response is sent.
        if self.unread.is_some() {
            return Err(self);
        }
        // The answer is handed over whole: it is no longer in flight (the socket's writes
        // keep the head deadline back while it goes out).
        let in_flight = self.in_flight;
        self.body.try_into_bytes().map_err(|body| HoldingBody {
            body,
            unread: None,
            in_flight,
        })
    }
}

/// Before the handler: shares the payload so that it can outlive the handler.
pub fn track_body(request: &mut ServiceRequest) -> Option<Rc<RefCell<SharedPayload>>> {
    match request.take_payload() {
        Payload::None => None,
        payload => {
            let shared = Rc::new(RefCell::new(SharedPayload {
                payload,
                finished: false,
            }));
            request.set_payload(Payload::Stream {
                payload: Box::pin(TrackedPayload(shared.clone())),
            });
            Some(shared)
        }
    }
}

/// After the handler: the finishing touches every response gets. A body left unread
/// rides along with the response, so actix closes the connection once it is sent; a 500
/// names the request id in its body, and every response carries it in `X-Request-Id`.
pub fn finish_response<B: MessageBody>(
    mut response: ServiceResponse<B>,
    body: Option<Rc<RefCell<SharedPayload>>>,
    in_flight: Option<InFlight>,
) -> ServiceResponse<HoldingBody<EitherBody<B>>> {
    let unread = body.filter(|shared| !shared.borrow().finished);
    let request_id = response
        .request()
        .extensions()
        .get::<RequestId>()
        .map(ToString::to_string);
    if let Some(id) = &request_id
        && let Ok(value) = HeaderValue::from_str(id)
    {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), value);
    }
    let internal = response
        .response()
        .extensions()
        .contains::<InternalErrorMarker>();
    let response = if internal {
        let id = request_id.unwrap_or_else(|| "unknown".to_owned());
        let error = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::InternalError,
                message: format!(
                    "internal error (request id {id}); the server log has the details"
                ),
                log_start_offset: None,
                high_watermark: None,
                retry_after_ms: None,
            },
        };
        response.map_body(|head, _| {
            head.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let json = serde_json::to_vec(&error).unwrap_or_default();
            EitherBody::right(BoxBody::new(json))
        })
    } else {
        response.map_into_left_body()
    };
    response.map_body(|_, body| HoldingBody {
        body,
        unread,
        in_flight,
    })
}

/// Every path template we serve, with its methods, to tell 404 from 405.
pub struct RouteTable(Vec<(ResourceDef, Vec<&'static str>)>);

impl RouteTable {
    /// Read from the OpenAPI document, which lists exactly the routes registered.
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> RouteTable {
        RouteTable(
            api.paths
                .paths
                .iter()
                .map(|(path, item)| {
                    let methods = [
                        ("GET", &item.get),
                        ("POST", &item.post),
                        ("PUT", &item.put),
                        ("PATCH", &item.patch),
                        ("DELETE", &item.delete),
                    ]
                    .into_iter()
                    .filter(|(_, operation)| operation.is_some())
                    .map(|(method, _)| method)
                    .collect();
                    (ResourceDef::new(path.as_str()), methods)
                })
                .collect(),
        )
    }

    fn allowed(&self, path: &str) -> Option<&[&'static str]> {
        self.0
            .iter()
            .find(|(route, _)| route.is_match(path))
            .map(|(_, methods)| methods.as_slice())
    }
}

/// The answer when no route took the request: 405 with `Allow` when the path is served
/// with other methods (HEAD and OPTIONS included, which we do not serve), else 404.
pub fn fallback(request: &HttpRequest, routes: Option<&RouteTable>) -> HttpResponse {
    match routes.and_then(|routes| routes.allowed(request.path())) {
        Some(methods) => method_not_allowed(request, methods),
        None => route_not_found(request).error_response(),
    }
}

/// 405 in the SPEC's error shape, with `Allow`.
pub fn method_not_allowed(request: &HttpRequest, allowed: &[&str]) -> HttpResponse {
    let allow = allowed.join(", ");
    let mut response = GatewayError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} is not allowed here; allowed: {allow}",
            crate::echo::sanitize(request.method().as_str(), 16)
        ),
    )
    .error_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
