//! The replicas' internal route (`--cluster-secret` only): another replica's call for a
//! group this one runs. It is not part of the API (absent from the OpenAPI document); the
//! caller's token and scopes were checked where the request entered, so this route takes
//! the replicas' shared secret instead.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::cluster::wire::Call;
use crate::cluster::{ClusterCoordinator, INTERNAL_PATH};
use crate::gateway::{ErrorCode, GatewayError};

/// Largest internal call: a commit of every partition a member may hold, with room.
const MAX_CALL_BYTES: usize = 4 << 20;

pub fn configure(
    cluster: Option<web::Data<ClusterCoordinator>>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        if let Some(cluster) = cluster {
            config.service(
                web::resource(INTERNAL_PATH)
                    .app_data(cluster)
                    .app_data(web::PayloadConfig::new(MAX_CALL_BYTES))
                    .route(web::post().to(call)),
            );
        }
    }
}

async fn call(
    request: HttpRequest,
    cluster: web::Data<ClusterCoordinator>,
    body: web::Bytes,
) -> Result<HttpResponse, GatewayError> {
    // The header only: a secret in a URL would end up in access logs.
    let presented = super::extract::header_token(&request).ok().flatten();
    if !presented.is_some_and(|secret| cluster.authorized(secret)) {
        return Err(GatewayError::new(
            ErrorCode::InvalidToken,
            "this route is for the replicas of a cluster and needs their --cluster-secret",
        ));
    }
    let call: Call = serde_json::from_slice(&body).map_err(|err| {
        GatewayError::new(
            ErrorCode::InvalidBody,
            format!("not an internal call: {err}"),
        )
    })?;
    Ok(HttpResponse::Ok().json(cluster.serve(call).await))
}
