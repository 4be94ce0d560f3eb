//! The HTTP adapter: actix handlers that parse, call the gateway, and map the result.
//! Every route is registered in [`app`] (the WebSocket upgrade and the event stream too,
//! from `push`), which also builds the OpenAPI document, and every route that touches data
//! takes a [`Caller`](crate::gateway::Caller) (`extract`).

mod body;
mod cluster;
mod connection;
mod error;
mod extract;
mod groups;
mod health;
mod internal;
mod metrics;
mod openapi;
mod pages;
mod push;
mod records;
mod server;
mod telemetry;
mod topics;

use std::cell::OnceCell;
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpRequest, HttpResponse, web};
use tracing_actix_web::TracingLogger;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use openapi::{ApiDoc, BearerAuth, BodyErrors, Constraints, OverloadAnswers};
pub use server::{ServerSettings, serve};
// What `crate::fuzz` drives without a server.
pub(crate) use body::{BodyDecoder, BodyFormat};
pub(crate) use records::parse_records;

use crate::cluster::ClusterCoordinator;
use crate::gateway::{Gateway, GatewayError};
use crate::log::TopicName;
use telemetry::RequestSpan;

fn topic_name(raw: &str) -> Result<TopicName, GatewayError> {
    Ok(TopicName::parse(raw)?)
}

/// The whole HTTP application. Every route goes through `UtoipaApp::service`, so the
/// OpenAPI document served at `/openapi.json` lists exactly what is served.
pub fn app(
    gateway: web::Data<Gateway>,
    cluster: Option<web::Data<ClusterCoordinator>>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // Filled once the routes are registered, from the OpenAPI document that lists them.
    let routes: Rc<OnceCell<connection::RouteTable>> = Rc::default();
    let fill_routes = routes.clone();
    let cors = cors(gateway.allowed_origins.clone());
    let bearer = BearerAuth {
        metrics_public: gateway.metrics_public(),
    };
    let overload = OverloadAnswers {
        metrics_public: gateway.metrics_public(),
    };
    let request_metrics = gateway.metrics.clone();
    let constraints = Constraints {
        limits: gateway.limits,
        groups: gateway.group_settings(),
        stats_window_secs: gateway.history.window().as_secs(),
    };
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .app_data(gateway)
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .service(health::healthz)
        .service(health::readyz)
        .service(metrics::metrics)
        .service(cluster::cluster)
        .service(topics::create_topic)
        .service(topics::list_topics)
        .service(topics::describe_topic)
        .service(topics::topic_stats)
        .service(topics::update_topic)
        .service(topics::delete_topic)
        .service(records::publish)
        .service(records::fetch)
        .service(records::offset_for_timestamp)
        .service(groups::poll)
        .service(groups::commit)
        .service(groups::seek)
        .service(groups::list_groups)
        .service(groups::describe_group)
        .service(groups::group_stats)
        .service(groups::leave_group)
        .service(groups::delete_group)
        .service(push::websocket)
        .service(push::events)
        .openapi_service(|mut api| {
            // After every route is registered: modifiers in `#[openapi]` run before
            // utoipa-actix-web adds the paths.
            bearer.modify(&mut api);
            BodyErrors.modify(&mut api);
            overload.modify(&mut api);
            constraints.modify(&mut api);
            let _ = fill_routes.set(connection::RouteTable::from_openapi(&api));
            json_document("/openapi.json", api)
        })
        .into_app()
        .service(json_document(
            "/asyncapi.json",
            crate::ws::asyncapi::document(),
        ))
        .configure(pages::configure)
        .configure(internal::configure(cluster))
        .default_service(web::to(move |request: HttpRequest| {
            std::future::ready(connection::fallback(&request, routes.get()))
        }))
        .wrap_fn(|mut request, service| {
            let admitted = server::admission(&request);
            let body = connection::track_body(&mut request);
            let call = admitted.map(|in_flight| (service.call(request), in_flight));
            async move {
                let (response, in_flight) = call?;
                Ok(connection::finish_response(
                    response.await?,
                    body,
                    in_flight,
                ))
            }
        })
        .wrap_fn(move |request, service| {
            let started = Instant::now();
            let metrics = request_metrics.clone();
            let response = service.call(request);
            async move {
                let response = response.await?;
                let request = response.request();
                metrics.http.observe(
                    request.match_pattern().as_deref().unwrap_or("unmatched"),
                    request.method().as_str(),
                    response.status().as_u16(),
                    started.elapsed(),
                );
                Ok(response)
            }
        })
        .wrap(TracingLogger::<RequestSpan>::new())
        .wrap(cors)
}

/// A machine-readable description served as JSON to anyone, GET only.
fn json_document(
    path: &str,
    document: impl serde::Serialize + Clone + 'static,
) -> actix_web::Resource {
    web::resource(path)
        .route(web::get().to(move || std::future::ready(HttpResponse::Ok().json(document.clone()))))
        .default_service(web::to(|request: HttpRequest| {
            std::future::ready(connection::method_not_allowed(&request, &["GET"]))
        }))
}

/// CORS for browser apps on the `--allowed-origins` (none by default: same origin only).
/// Bearer tokens travel in a header, so no credentials mode is needed.
fn cors(allowed: Vec<String>) -> actix_cors::Cors {
    use actix_web::http::header;
    actix_cors::Cors::default()
        .allowed_origin_fn(move |origin, _| {
            let origin = origin.to_str().unwrap_or("");
            allowed
                .iter()
                .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
        })
        .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::HeaderName::from_static("idempotency-replayed"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(3600)
}
