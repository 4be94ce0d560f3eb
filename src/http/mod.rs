//! The HTTP adapter: actix handlers that parse, call the log, and map the result.
//! Every route is registered through [`routes`], which also builds the OpenAPI document.

mod error;
mod health;
mod records;
mod telemetry;
mod topics;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpResponse, web};
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

pub use error::{ApiError, ErrorBody};
pub use records::IDEMPOTENCY_REPLAYED;
pub use telemetry::RequestSpan;

use crate::config::Limits;
use crate::log::{EventLog, TopicName};

/// What every handler shares.
pub struct AppState {
    pub log: Arc<dyn EventLog>,
    pub limits: Limits,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tidegate",
        description = "HTTP/WebSocket gateway for durable, partitioned event streams with Kafka's model."
    ),
    tags(
        (name = "topics", description = "Create, inspect, change and delete topics"),
        (name = "records", description = "Publish and fetch records"),
        (name = "operations", description = "Health and readiness"),
    )
)]
struct ApiDoc;

fn topic_name(raw: &str) -> Result<TopicName, ApiError> {
    Ok(TopicName::parse(raw)?)
}

/// The whole HTTP application. Every route goes through `UtoipaApp::service`, so the
/// OpenAPI document served at `/openapi.json` lists exactly what is served.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let max_body_bytes = state.limits.max_body_bytes;
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(max_body_bytes)
                .error_handler(error::json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .service(health::healthz)
        .service(health::readyz)
        .service(topics::create_topic)
        .service(topics::list_topics)
        .service(topics::describe_topic)
        .service(topics::update_topic)
        .service(topics::delete_topic)
        .service(records::publish)
        .service(records::fetch)
        .service(records::offset_for_timestamp)
        .openapi_service(|api| {
            web::resource("/openapi.json")
                .route(web::get().to(move || std::future::ready(HttpResponse::Ok().json(api.clone()))))
        })
        .into_app()
        .default_service(web::to(error::route_not_found))
        .wrap(TracingLogger::<RequestSpan>::new())
}
