//! `GET /metrics`: the Prometheus text exposition (see `crate::metrics`).

use actix_web::{FromRequest, HttpRequest, HttpResponse, get, web};

use crate::gateway::{Caller, Gateway, GatewayError};

/// The content type of the Prometheus text format, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics in the text format: requests, records and bytes per topic, group
/// commits, connections, consumer groups (members, rebalances, lag) and the process. Needs
/// an admin token unless the server runs with `--metrics-public`.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "The metrics, in the Prometheus text format 0.0.4",
         content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
    )
)]
#[get("/metrics")]
pub async fn metrics(
    gateway: web::Data<Gateway>,
    request: HttpRequest,
) -> Result<HttpResponse, GatewayError> {
    let text = match gateway.public_scraper() {
        Some(scraper) => scraper.render().await?,
        None => {
            let caller = Caller::extract(&request).await?;
            caller.admin()?.scraper().render().await?
        }
    };
    Ok(HttpResponse::Ok().content_type(TEXT_FORMAT).body(text))
}
