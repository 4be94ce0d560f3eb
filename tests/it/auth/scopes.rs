//! Scope patterns (exact, `prefix*`, `*`), the `scp` array form, and filtered listings.

use serde_json::json;

use super::support::{Server, assert_forbidden, assert_status, claims, test_token};

const TOPICS: [&str; 5] = ["web-a", "web-b", "web", "api-a", "webhooks"];

async fn server_with_topics() -> (Server, String) {
    let server = Server::start_hs().await;
    let admin = test_token(&claims("admin"));
    for topic in TOPICS {
        assert_eq!(server.create_topic(&admin, topic).await.status(), 201);
    }
    (server, admin)
}

/// Asserts which of [`TOPICS`] `token` may fetch, publish to and describe.
async fn assert_access(
    server: &Server,
    token: &str,
    what: &str,
    readable: &[&str],
    writable: &[&str],
) {
    for topic in TOPICS {
        let context = format!("{what}: fetch {topic}");
        let response = server.fetch(token, topic).await;
        if readable.contains(&topic) {
            assert_status(response, 200, &context).await;
        } else {
            assert_forbidden(response, &context).await;
        }
        let context = format!("{what}: publish to {topic}");
        let response = server.publish(token, topic).await;
        if writable.contains(&topic) {
            assert_status(response, 200, &context).await;
        } else {
            assert_forbidden(response, &context).await;
        }
        let context = format!("{what}: describe {topic}");
        let response = server.get(&format!("/v1/topics/{topic}"), token).await;
        if readable.contains(&topic) || writable.contains(&topic) {
            assert_status(response, 200, &context).await;
        } else {
            assert_forbidden(response, &context).await;
        }
    }
    let mut visible: Vec<&str> = TOPICS
        .into_iter()
        .filter(|topic| readable.contains(topic) || writable.contains(topic))
        .collect();
    visible.sort_unstable();
    assert_eq!(server.list_names(token).await, visible, "{what}: listing");
}

#[tokio::test]
async fn prefix_scopes_match_names_starting_with_the_prefix() {
    let (server, _) = server_with_topics().await;
    let token = test_token(&claims("subscribe:web-*"));
    // Not `web` (shorter than the prefix), not `webhooks`, not `api-a`; and reading only.
    assert_access(&server, &token, "subscribe:web-*", &["web-a", "web-b"], &[]).await;

    let token = test_token(&claims("publish:web* subscribe:api-a"));
    assert_access(
        &server,
        &token,
        "publish:web* subscribe:api-a",
        &["api-a"],
        &["web-a", "web-b", "web", "webhooks"],
    )
    .await;
}

#[tokio::test]
async fn star_pattern_matches_every_topic_for_its_action_only() {
    let (server, _) = server_with_topics().await;
    let token = test_token(&claims("subscribe:*"));
    assert_access(&server, &token, "subscribe:*", &TOPICS, &[]).await;
    assert_forbidden(
        server.create_topic(&token, "new").await,
        "subscribe:* creating a topic",
    )
    .await;

    let token = test_token(&claims("publish:*"));
    assert_access(&server, &token, "publish:*", &[], &TOPICS).await;

    // `group:*` covers groups, not topics.
    let token = test_token(&claims("group:*"));
    assert_access(&server, &token, "group:*", &[], &[]).await;
}

#[tokio::test]
async fn exact_scopes_match_only_that_name() {
    let (server, _) = server_with_topics().await;
    let token = test_token(&claims("subscribe:web publish:api-a"));
    assert_access(
        &server,
        &token,
        "subscribe:web publish:api-a",
        &["web"],
        &["api-a"],
    )
    .await;
}

#[tokio::test]
async fn scp_array_claim_grants_like_the_scope_string() {
    let (server, _) = server_with_topics().await;
    let mut claims = claims("");
    claims.as_object_mut().expect("object").remove("scope");
    claims["scp"] = json!(["subscribe:api-a", "publish:web-*"]);
    let token = test_token(&claims);
    assert_access(
        &server,
        &token,
        "scp [subscribe:api-a, publish:web-*]",
        &["api-a"],
        &["web-a", "web-b"],
    )
    .await;

    claims["scp"] = json!(["admin"]);
    let token = test_token(&claims);
    assert_status(
        server.create_topic(&token, "by-scp-admin").await,
        201,
        "scp [admin] creating a topic",
    )
    .await;
}

#[tokio::test]
async fn listing_shows_exactly_what_the_token_may_see() {
    let server = Server::start_hs().await;
    let admin = test_token(&claims("admin"));
    let all = ["a", "ab", "b", "b-x", "c"];
    for topic in all {
        assert_eq!(server.create_topic(&admin, topic).await.status(), 201);
    }
    for (scope, expected) in [
        ("publish:a subscribe:b", &["a", "b"][..]),
        ("subscribe:b*", &["b", "b-x"]),
        ("publish:a* group:c", &["a", "ab"]),
        ("group:*", &[]),
        ("openid", &[]),
        ("publish:* subscribe:c", &all),
        ("admin", &all),
    ] {
        let names = server.list_names(&test_token(&claims(scope))).await;
        assert_eq!(names, expected, "listing with {scope:?}");
    }
    // The listing is not just names: partition counts come along.
    let response = server.get("/v1/topics", &admin).await;
    let body = crate::harness::json_body(response).await;
    assert!(
        body["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .all(|topic| topic["partitions"] == 1),
        "{body}"
    );
}
