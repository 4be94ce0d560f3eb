//! The HTTP adapter: actix handlers that parse, call the log, and map the result.
//! Every route is registered in [`app`], which also builds the OpenAPI document, and every
//! route that touches data goes through the `guard::Caller` extractor.

mod body;
mod error;
mod guard;
mod health;
mod records;
mod telemetry;
mod topics;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpResponse, web};
use tracing_actix_web::TracingLogger;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

pub use guard::AppState;

use crate::log::TopicName;
use error::ApiError;
use telemetry::RequestSpan;

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

/// Paths that answer without a token.
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/openapi.json"];

/// Declares the bearer scheme, and on every operation outside [`OPEN_PATHS`] the
/// requirement and its 401/403 answers, mirroring what the [`Caller`] guard enforces.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT in `Authorization: Bearer`, or in `?access_token=` where headers cannot be set.",
                    ))
                    .build(),
            ),
        );
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if OPEN_PATHS.contains(&path.as_str()) {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                let responses = &mut operation.responses.responses;
                responses.insert("401".into(), error("Missing, invalid or expired token"));
                responses.insert("403".into(), error("The token lacks the scope this needs"));
            }
        }
    }
}

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
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .app_data(state)
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
        .openapi_service(|mut api| {
            // After every route is registered: modifiers in `#[openapi]` run before
            // utoipa-actix-web adds the paths.
            BearerAuth.modify(&mut api);
            web::resource("/openapi.json").route(
                web::get().to(move || std::future::ready(HttpResponse::Ok().json(api.clone()))),
            )
        })
        .into_app()
        .default_service(web::to(error::route_not_found))
        .wrap(TracingLogger::<RequestSpan>::new())
}
