//! The web console (`/`, `/console/{file}`) and the API documentation page (`/docs`,
//! `/docs/{file}`): files embedded in the binary at compile time, so both work with no
//! network. The pages call the API like any client; they carry no token of their own.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use super::connection;
use crate::gateway::{ErrorCode, GatewayError};

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// The console talks to its own origin only (HTTP and WebSocket) and runs no inline code.
const CONSOLE_POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// The AsyncAPI renderer compiles its schema validators at run time, hence `unsafe-eval`.
const DOCS_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-eval'; \
     img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// A strong ETag, computed on first use.
    etag: OnceLock<String>,
}

macro_rules! asset {
    ($name:literal, $path:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!($path),
            etag: OnceLock::new(),
        }
    };
}

impl Asset {
    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.bytes);
            format!("\"{}\"", hex::encode(&digest[..12]))
        })
    }
}

/// A set of embedded files served under one prefix; the page itself is `index.html`.
struct Site {
    files: &'static [Asset],
    policy: &'static str,
}

static CONSOLE_FILES: [Asset; 7] = [
    asset!("index.html", "../console/index.html", HTML),
    asset!("console.js", "../console/console.js", JS),
    asset!("console.css", "../console/console.css", CSS),
    // The TypeScript client's browser bundle (clients/js), which the browser example loads too.
    asset!("tidegate.js", "../../examples/browser/tidegate.js", JS),
    // The charts: uPlot, vendored from npm by scripts/vendor-pages.
    asset!("uPlot.esm.js", "../console/uPlot.esm.js", JS),
    asset!("uPlot.min.css", "../console/uPlot.min.css", CSS),
    asset!("uPlot.LICENSE.txt", "../console/uPlot.LICENSE.txt", TEXT),
];

static DOCS_FILES: [Asset; 12] = [
    asset!("index.html", "../docs/index.html", HTML),
    asset!("docs.js", "../docs/docs.js", JS),
    asset!("docs.css", "../docs/docs.css", CSS),
    asset!("swagger-ui-bundle.js", "../docs/swagger-ui-bundle.js", JS),
    asset!("swagger-ui.css", "../docs/swagger-ui.css", CSS),
    asset!(
        "swagger-ui.LICENSE.txt",
        "../docs/swagger-ui.LICENSE.txt",
        TEXT
    ),
    asset!(
        "swagger-ui.NOTICE.txt",
        "../docs/swagger-ui.NOTICE.txt",
        TEXT
    ),
    asset!(
        "swagger-ui-bundle.js.LICENSE.txt",
        "../docs/swagger-ui-bundle.js.LICENSE.txt",
        TEXT
    ),
    asset!("asyncapi-react.js", "../docs/asyncapi-react.js", JS),
    asset!("asyncapi-react.css", "../docs/asyncapi-react.css", CSS),
    asset!(
        "asyncapi-react.LICENSE.txt",
        "../docs/asyncapi-react.LICENSE.txt",
        TEXT
    ),
    asset!(
        "asyncapi-react.js.LICENSE.txt",
        "../docs/asyncapi-react.js.LICENSE.txt",
        TEXT
    ),
];

static CONSOLE: Site = Site {
    files: &CONSOLE_FILES,
    policy: CONSOLE_POLICY,
};

static DOCS: Site = Site {
    files: &DOCS_FILES,
    policy: DOCS_POLICY,
};

/// The routes of both pages, registered outside the OpenAPI document: they are pages for
/// people, not API.
pub fn configure(config: &mut web::ServiceConfig) {
    for (page, prefix, site) in [("/", "/console", &CONSOLE), ("/docs", "/docs", &DOCS)] {
        config
            .service(get_only(page, move |request| {
                serve(&request, site, "index.html")
            }))
            .service(get_only(&format!("{prefix}/{{file}}"), move |request| {
                let file = request.match_info().get("file").unwrap_or("").to_owned();
                serve(&request, site, &file)
            }));
    }
}

fn get_only(
    path: &str,
    handler: impl Fn(HttpRequest) -> HttpResponse + Clone + 'static,
) -> actix_web::Resource {
    web::resource(path)
        .route(web::get().to(move |request: HttpRequest| std::future::ready(handler(request))))
        .default_service(web::to(|request: HttpRequest| {
            std::future::ready(connection::method_not_allowed(&request, &["GET"]))
        }))
}

/// One file of a site, revalidated by ETag on every visit so an upgraded binary never
/// leaves a stale page behind.
fn serve(request: &HttpRequest, site: &'static Site, name: &str) -> HttpResponse {
    let Some(asset) = site.files.iter().find(|asset| asset.name == name) else {
        let missing = GatewayError::new(ErrorCode::NotFound, format!("no such file: {name}"));
        return actix_web::ResponseError::error_response(&missing);
    };
    let etag = asset.etag();
    // A list of tags, weak or strong (RFC 9110 compares them weakly for If-None-Match).
    let fresh = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|tags| tags.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, site.policy));
    if fresh {
        response.finish()
    } else {
        response.content_type(asset.content_type).body(asset.bytes)
    }
}
