//! The scope grammar, black-box: `scope` splits on ASCII spaces only, `scp` elements are
//! taken whole, and a scope that does not parse grants nothing. None of the tokens below
//! may reach a foreign topic, create one or delete one.

use reqwest::Method;
use serde_json::{Value, json};

use super::support::{
    Server, assert_forbidden, assert_status, claims, now, test_token, topic_names,
};
use crate::harness::json_body;

/// Claims whose only scopes are `scope` and/or `scp` as given.
fn token(scope: Option<&str>, scp: Option<Value>) -> String {
    let mut claims = json!({"sub": "grammar", "iat": now(), "exp": now() + 3600});
    if let Some(scope) = scope {
        claims["scope"] = json!(scope);
    }
    if let Some(scp) = scp {
        claims["scp"] = scp;
    }
    test_token(&claims)
}

/// Asserts `token` can do nothing with `foreign` nor with `x`: no read, no write, no
/// admin, and it sees no topic.
async fn assert_powerless(server: &Server, token: &str, what: &str) {
    for topic in ["x", "foreign"] {
        let context = format!("{what}: publish to {topic}");
        assert_forbidden(server.publish(token, topic).await, &context).await;
        let context = format!("{what}: fetch {topic}");
        assert_forbidden(server.fetch(token, topic).await, &context).await;
        let context = format!("{what}: delete {topic}");
        let response = server
            .send(Method::DELETE, &format!("/v1/topics/{topic}"), token)
            .await;
        assert_forbidden(response, &context).await;
    }
    let response = server.create_topic(token, "created-by-forged-admin").await;
    assert_forbidden(response, &format!("{what}: create")).await;
    assert!(
        server.list_names(token).await.is_empty(),
        "{what}: lists topics"
    );
}

async fn server() -> Server {
    let server = Server::start_hs().await;
    let admin = test_token(&claims("admin"));
    for topic in ["x", "foreign"] {
        assert_eq!(server.create_topic(&admin, topic).await.status(), 201);
    }
    server
}

#[tokio::test]
async fn scope_strings_split_on_ascii_space_only() {
    let server = server().await;
    for separator in [
        "\u{a0}", "\u{2003}", "\u{3000}", "\u{85}", "\t", "\n", "\r", "\u{b}", "\u{c}", "\u{2028}",
    ] {
        let scope = format!("publish:x{separator}admin");
        let what = format!("scope {scope:?}");
        assert_powerless(&server, &token(Some(&scope), None), &what).await;
        // The same smuggling inside an `scp` array element.
        let what = format!("scp [{scope:?}]");
        assert_powerless(&server, &token(None, Some(json!([scope]))), &what).await;
    }
}

#[tokio::test]
async fn scp_elements_are_never_split() {
    let server = server().await;
    for scp in [
        json!(["publish:x admin"]),
        json!(["subscribe:x admin", "openid"]),
        json!(["admin subscribe:x"]),
    ] {
        assert_powerless(&server, &token(None, Some(scp.clone())), &scp.to_string()).await;
    }
}

#[tokio::test]
async fn malformed_scopes_grant_nothing() {
    let server = server().await;
    for scope in [
        "admin:",
        "admin:x",
        "admin:**",
        "publish:",
        "subscribe:",
        "publish:*x",
        "publish:x*y",
        "publish:x\u{0}",
        "publish:x\u{1b}[0m",
        "publish:é*",
        "Admin",
        "admin*",
    ] {
        let what = format!("scope {scope:?}");
        assert_powerless(&server, &token(Some(scope), None), &what).await;
    }
}

#[tokio::test]
async fn valid_scopes_next_to_malformed_ones_still_work() {
    let server = server().await;
    let token = token(Some("publish:x\tadmin subscribe:x  admin: openid"), None);
    assert_status(server.fetch(&token, "x").await, 200, "subscribe:x").await;
    assert_forbidden(server.publish(&token, "x").await, "publish:x\\tadmin").await;
    assert_forbidden(server.fetch(&token, "foreign").await, "foreign").await;
    assert_eq!(server.list_names(&token).await, ["x"]);
    // Plain ASCII spaces separate scopes: this token really is an admin.
    let admin = super::support::test_token(&claims("publish:x admin"));
    let response = server.get("/v1/topics", &admin).await;
    assert_eq!(
        topic_names(&json_body(response).await),
        ["foreign", "x"],
        "publish:x admin"
    );
}
