//! The OpenAPI document: the served one must match the committed `openapi/openapi.json`,
//! and it must describe what the server actually serves.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestApp, json_body};

const UPDATE_VAR: &str = "TIDEGATE_UPDATE_OPENAPI";
const REGENERATE: &str = "TIDEGATE_UPDATE_OPENAPI=1 cargo test --release --test it openapi";

/// Paths that answer without a token (and are documented without a security requirement).
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// Every SPEC route that exists today, with its methods.
const SPEC_ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/v1/topics", &["get", "post"]),
    ("/v1/topics/{topic}", &["get", "patch", "delete"]),
    ("/v1/topics/{topic}/records", &["post"]),
    (
        "/v1/topics/{topic}/partitions/{partition}/records",
        &["get"],
    ),
    (
        "/v1/topics/{topic}/partitions/{partition}/offsets",
        &["get"],
    ),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn committed_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("openapi")
        .join(file)
}

async fn served_document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").send().await.expect("openapi.json");
    assert_eq!(response.status(), 200);
    json_body(response).await
}

/// JSON pointers where two documents differ (at most `limit` of them).
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(&child, x, y, out, limit),
                    (Some(_), None) => out.push(format!("{child}: only in the committed file")),
                    (None, Some(_)) => out.push(format!("{child}: only in the served document")),
                    (None, None) => {}
                }
                if out.len() >= limit {
                    return;
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}/{i}"), x, y, out, limit);
            }
        }
        _ => out.push(format!("{path}: committed {a} but served {b}")),
    }
}

/// The document served at `/{file}` must equal the committed `openapi/{file}`; with
/// `TIDEGATE_UPDATE_OPENAPI=1` the served one is written there instead.
async fn check_committed(app: &TestApp, file: &str) -> Value {
    let response = app.get(&format!("/{file}")).send().await.expect(file);
    assert_eq!(response.status(), 200, "/{file}");
    let served: Value = json_body(response).await;
    let path = committed_path(file);

    if std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1") {
        let mut text = serde_json::to_string_pretty(&served).expect("serialize");
        text.push('\n');
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create openapi/");
        std::fs::write(&path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        eprintln!("wrote {}", path.display());
        return served;
    }

    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read {}: {err}\nGenerate it with: {REGENERATE}",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&text).unwrap_or_else(|err| {
        panic!(
            "{} is not valid JSON: {err}\nRegenerate it with: {REGENERATE}",
            path.display()
        )
    });
    if committed != served {
        let mut diffs = Vec::new();
        differences("", &committed, &served, &mut diffs, 20);
        panic!(
            "openapi/{file} differs from the document the server serves at /{file}.\n\
             If the API change is intended, regenerate the file with:\n    {REGENERATE}\n\
             and commit it. First differences:\n  {}",
            diffs.join("\n  ")
        );
    }
    served
}

#[tokio::test]
async fn committed_document_matches_the_served_one() {
    check_committed(&TestApp::spawn().await, "openapi.json").await;
}

/// The push protocols' AsyncAPI document: committed, and it names every message the
/// WebSocket speaks, with schemas that resolve.
#[tokio::test]
async fn committed_asyncapi_document_matches_the_served_one() {
    let doc = check_committed(&TestApp::spawn().await, "asyncapi.json").await;
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["channels"]["ws"]["address"], "/v1/ws");
    assert_eq!(
        doc["channels"]["events"]["address"],
        "/v1/topics/{topic}/events"
    );
    let messages = doc["channels"]["ws"]["messages"]
        .as_object()
        .expect("messages");
    for name in [
        "subscribe",
        "unsubscribe",
        "publish",
        "commit",
        "auth",
        "subscribed",
        "records",
        "assignment",
        "published",
        "committed",
        "authenticated",
        "error",
    ] {
        assert!(
            messages.contains_key(name),
            "message {name} in {messages:?}"
        );
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(
        refs.len() > 20,
        "the document refers to its schemas: {refs:?}"
    );
    for reference in refs {
        assert!(
            resolve(&doc, &reference).is_some(),
            "{reference} does not resolve"
        );
    }
    // The `op` of each client message is pinned by its schema, so generated code can
    // dispatch on it.
    let subscribe = resolve(&doc, "#/components/schemas/SubscribeOp").expect("SubscribeOp");
    let op = &subscribe["properties"]["op"];
    let op = op["$ref"]
        .as_str()
        .and_then(|reference| resolve(&doc, reference))
        .unwrap_or(op);
    assert_eq!(
        op["enum"],
        json!(["subscribe"]),
        "SubscribeOp pins op: {op}"
    );
}

#[tokio::test]
async fn document_lists_every_spec_route_that_exists() {
    let app = TestApp::spawn().await;
    let doc = served_document(&app).await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document"
    );
    assert_eq!(doc["info"]["title"], "tidegate");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in SPEC_ROUTES {
        let item = paths.get(*path).unwrap_or_else(|| {
            panic!(
                "{path} missing from the document; it has {:?}",
                paths.keys()
            )
        });
        for method in *methods {
            let operation = &item[*method];
            assert!(operation.is_object(), "{method} {path} missing");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path} documents a success response"
            );
        }
    }
}

#[tokio::test]
async fn protected_operations_document_bearer_auth_and_error_bodies() {
    let app = TestApp::spawn().await;
    let doc = served_document(&app).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let error_schema = &doc["components"]["schemas"]["ErrorBody"];
    assert!(error_schema.is_object(), "ErrorBody schema");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(operation) = item.get(*method) else {
                continue;
            };
            let open = OPEN_PATHS.contains(&path.as_str());
            let security = operation.get("security");
            if open {
                assert!(security.is_none(), "{method} {path} is open: {security:?}");
                continue;
            }
            assert_eq!(
                security,
                Some(&json!([{"bearer": []}])),
                "{method} {path} needs a bearer token"
            );
            let responses = &operation["responses"];
            for status in ["401", "403"] {
                assert!(
                    responses[status].is_object(),
                    "{method} {path} documents {status}"
                );
            }
            // Every error response uses the one error shape.
            for (status, response) in responses.as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

/// Follows a local `$ref` such as `#/components/schemas/ErrorBody`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref"
                    && let Some(reference) = child.as_str()
                {
                    out.push(reference.to_owned());
                }
                collect_refs(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|child| collect_refs(child, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_reference_resolves() {
    let app = TestApp::spawn().await;
    let doc = served_document(&app).await;
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty(), "the document uses component schemas");
    for reference in refs {
        assert!(
            resolve(&doc, &reference).is_some(),
            "{reference} does not resolve"
        );
    }
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = TestApp::spawn().await;
    let doc = served_document(&app).await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(!paths.is_empty());
    for (template, item) in paths {
        let path = template
            .replace("{topic}", "openapi-probe")
            .replace("{group}", "openapi-probe")
            .replace("{member}", "m-probe")
            .replace("{partition}", "0");
        assert!(!path.contains('{'), "unexpected parameter in {template}");
        for method in METHODS {
            if item.get(*method).is_none() {
                continue;
            }
            let method_upper = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = app.request(method_upper, &path);
            if matches!(*method, "post" | "patch" | "put") {
                // Invalid on purpose: nothing is created or changed.
                request = request.json(&json!({}));
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let code = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|body| body["error"]["code"].as_str().map(str::to_owned));
            assert!(
                !(status == 404 && code.as_deref() == Some("not_found")),
                "{method} {template} is documented but not routed: {text}"
            );
            assert_ne!(
                status, 405,
                "{method} {template} is documented but not allowed"
            );
            assert!(status < 500, "{method} {template} failed: {status} {text}");
            // What it answered is among the answers the document lists.
            let documented = item[*method]["responses"].as_object().expect("responses");
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {template} answered {status} ({text}), which the document does not list: {:?}",
                documented.keys()
            );
        }
    }
    // The probes changed nothing.
    let listed = json_body(app.get("/v1/topics").send().await.unwrap()).await;
    assert_eq!(listed["topics"], json!([]));
}

#[tokio::test]
async fn document_and_probes_answer_without_a_token() {
    let app = TestApp::spawn().await;
    for path in ["/openapi.json", "/asyncapi.json", "/healthz", "/readyz"] {
        let response = app.anonymous(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} without a token");
        json_body(response).await;
    }
}
