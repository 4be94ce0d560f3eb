//! The console and docs pages are served from the binary: content types, revalidation,
//! the content security policy, and clear errors for what is not there.

use reqwest::Method;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

use crate::harness::{TestApp, expect_error};

#[tokio::test]
async fn pages_and_their_files_are_served_and_revalidated() {
    let app = TestApp::spawn().await;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/tidegate.js", "text/javascript; charset=utf-8"),
        ("/docs", "text/html; charset=utf-8"),
        (
            "/docs/swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
        ),
        ("/docs/asyncapi-react.js", "text/javascript; charset=utf-8"),
    ] {
        let page = app.anonymous(Method::GET, path).send().await.expect("page");
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(page.headers()[CONTENT_TYPE], content_type, "{path}");
        let policy = page.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        // Scripts only from this server; the docs' AsyncAPI renderer also needs eval.
        let scripts = if path.starts_with("/docs") {
            "script-src 'self' 'unsafe-eval'"
        } else {
            "default-src 'self'"
        };
        assert!(
            policy.starts_with("default-src 'self';"),
            "{path}: {policy}"
        );
        assert!(policy.contains(scripts), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(
            !policy.contains("unsafe-inline"),
            "{path}: no inline code: {policy}"
        );
        assert_eq!(page.headers()["x-content-type-options"], "nosniff");
        let etag = page.headers()[ETAG].to_str().expect("ascii").to_owned();
        assert!(!page.bytes().await.expect("body").is_empty(), "{path}");

        // The tag alone, and in a list with a weak prefix (compared weakly): unchanged.
        for tags in [etag.clone(), format!("\"other\", W/{etag}")] {
            let again = app
                .anonymous(Method::GET, path)
                .header(IF_NONE_MATCH, &tags)
                .send()
                .await
                .expect("revalidation");
            assert_eq!(again.status(), 304, "{path} with If-None-Match: {tags}");
        }
    }
}

#[tokio::test]
async fn unknown_files_and_other_methods_are_refused() {
    let app = TestApp::spawn().await;
    for path in ["/console/secrets.txt", "/docs/..%2Fconsole.js"] {
        let missing = app.anonymous(Method::GET, path).send().await;
        expect_error(missing.expect("missing"), 404, "not_found").await;
    }
    let posted = app.anonymous(Method::POST, "/").send().await.expect("post");
    assert_eq!(posted.headers()["allow"], "GET");
    expect_error(posted, 405, "method_not_allowed").await;
}
