//! Liveness and readiness probes.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::gateway::{ErrorBody, ErrorCode, Gateway, GatewayError};
use crate::log::LogError;

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
        (status = 503, description = "Shutting down, the log cannot take writes, the data directory's disk is short of room (`storage_full`, below --min-free-bytes or full), or (on Kafka) the cluster cannot be reached (`kafka_unavailable`); the message says why", body = ErrorBody),
    )
)]
#[get("/readyz")]
pub async fn readyz(gateway: web::Data<Gateway>) -> Result<HttpResponse, GatewayError> {
    match gateway.readiness() {
        Ok(()) => Ok(HttpResponse::Ok().json(Status { status: "ready" })),
        // Not ready for publishes, and no fault of the request: 503, not 507.
        Err(err @ LogError::StorageFull(_)) => {
            Err(GatewayError::new(ErrorCode::StorageFull, err.to_string()))
        }
        Err(err) => Err(err.into()),
    }
}
