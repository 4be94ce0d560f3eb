//! Liveness and readiness probes.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::guard::AppState;
use crate::log::{LogError, Readiness};

#[derive(Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Alive", body = Status)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Readiness: storage is open and takes writes, and the server is not shutting down.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "Shutting down, or the log cannot take writes (the message says why)", body = ErrorBody),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.readiness() {
        Readiness::Ready => Ok(HttpResponse::Ok().json(Status { status: "ready" })),
        Readiness::ShuttingDown => Err(LogError::ShuttingDown.into()),
        Readiness::Failed(reason) => Err(LogError::Unavailable(reason).into()),
    }
}
