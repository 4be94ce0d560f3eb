//! Claim checks beyond the matrix (required claims, `nbf`, leeway, HS384/512, tampering) and
//! how the token is carried (malformed `Authorization` headers, `?access_token=`).

use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::json;

use super::support::{
    AUDIENCE, Server, alg_none_with_header, assert_forbidden, assert_status, assert_unauthorized,
    claims, claims_iss_aud, now, sign, test_token,
};
use crate::harness::TEST_SECRET;

#[tokio::test]
async fn required_and_time_claims_are_enforced() {
    let server = Server::start_with_iss_aud().await;
    let good = claims_iss_aud("admin");

    let without = |claim: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().expect("object").remove(claim);
        test_token(&claims)
    };
    let with = |claim: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[claim] = value;
        test_token(&claims)
    };
    for (what, token) in [
        ("no exp", without("exp")),
        ("no iss (issuer configured)", without("iss")),
        ("no aud (audience configured)", without("aud")),
        ("aud array without ours", with("aud", json!(["a", "b"]))),
        ("nbf an hour ahead", with("nbf", json!(now() + 3600))),
        ("expired two minutes ago", with("exp", json!(now() - 120))),
        ("exp not a number", with("exp", json!("tomorrow"))),
    ] {
        let response = server.get("/v1/topics", &token).await;
        assert_unauthorized(response, Some(&token), what).await;
    }

    for (what, token) in [
        ("all claims", test_token(&good)),
        (
            "aud array with ours",
            with("aud", json!(["other", AUDIENCE])),
        ),
        ("nbf in the past", with("nbf", json!(now() - 60))),
        // Within the default 30 s leeway.
        ("expired 5 s ago", with("exp", json!(now() - 5))),
    ] {
        let response = server.get("/v1/topics", &token).await;
        assert_status(response, 200, what).await;
    }
}

#[tokio::test]
async fn leeway_is_configurable() {
    let server = Server::start(&["--jwt-secret", TEST_SECRET, "--jwt-leeway-secs", "0"]).await;
    let mut expired = claims("admin");
    expired["exp"] = json!(now() - 5);
    let token = test_token(&expired);
    let response = server.get("/v1/topics", &token).await;
    assert_unauthorized(response, Some(&token), "expired 5 s ago, no leeway").await;

    let server = Server::start(&["--jwt-secret", TEST_SECRET, "--jwt-leeway-secs", "600"]).await;
    expired["exp"] = json!(now() - 120);
    let response = server.get("/v1/topics", &test_token(&expired)).await;
    assert_status(response, 200, "expired 2 min ago, 10 min leeway").await;
}

#[tokio::test]
async fn hmac_variants_tampering_and_unsigned_tokens() {
    let server = Server::start_hs().await;
    let key = EncodingKey::from_secret(TEST_SECRET.as_bytes());
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign(alg, &key, None, &claims("admin"));
        let response = server.get("/v1/topics", &token).await;
        assert_status(response, 200, &format!("{alg:?} with the secret")).await;
    }

    // A genuine token for `subscribe:x` whose payload is swapped for an admin one.
    let genuine = test_token(&claims("subscribe:x"));
    let admin_payload = test_token(&claims("admin"))
        .split('.')
        .nth(1)
        .expect("payload")
        .to_owned();
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!("{}.{admin_payload}.{}", parts[0], parts[2]);
    let response = server
        .req(Method::POST, "/v1/topics", Some(&tampered))
        .json(&json!({"name": "tampered", "partitions": 1}))
        .send()
        .await
        .expect("request");
    assert_unauthorized(response, Some(&tampered), "tampered payload").await;

    // A valid token with its signature stripped.
    let admin = test_token(&claims("admin"));
    let stripped = format!("{}.", &admin[..admin.rfind('.').expect("dot")]);
    let response = server.get("/v1/topics", &stripped).await;
    assert_unauthorized(response, Some(&stripped), "signature stripped").await;

    // `alg: none` in its spellings, and `alg: none` carrying the real signature.
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None","typ":"JWT"}"#,
        r#"{"alg":"NONE"}"#,
        r#"{"alg":"nOnE","typ":"JWT"}"#,
    ] {
        let token = alg_none_with_header(header, &claims("admin"));
        let response = server.get("/v1/topics", &token).await;
        assert_unauthorized(response, Some(&token), header).await;
        let signed = format!("{token}{}", admin.rsplit('.').next().expect("signature"));
        let response = server.get("/v1/topics", &signed).await;
        assert_unauthorized(response, Some(&signed), &format!("{header} + signature")).await;
    }
}

#[tokio::test]
async fn token_without_tidegate_scopes_is_valid_but_grants_nothing() {
    let server = Server::start_hs().await;
    let admin = test_token(&claims("admin"));
    assert_eq!(server.create_topic(&admin, "t").await.status(), 201);

    let token = test_token(&claims("openid email profile"));
    assert!(server.list_names(&token).await.is_empty());
    assert_forbidden(server.fetch(&token, "t").await, "fetch").await;
    assert_forbidden(server.publish(&token, "t").await, "publish").await;
    assert_forbidden(server.create_topic(&token, "u").await, "create").await;

    let mut no_scope = claims("admin");
    no_scope.as_object_mut().expect("object").remove("scope");
    let token = test_token(&no_scope);
    assert!(server.list_names(&token).await.is_empty());
    assert_forbidden(server.get("/v1/topics/t", &token).await, "describe").await;
}

#[tokio::test]
async fn malformed_authorization_headers_are_401_with_the_error_shape() {
    let server = Server::start_hs().await;
    let valid = test_token(&claims("admin"));
    for header in [
        "Basic abc".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer    ".to_owned(),
        "Bearer abc".to_owned(),
        "Bearer a.b.c".to_owned(),
        "Bearer ..".to_owned(),
        format!("Token {valid}"),
        format!("Basic {valid}"),
        format!("Bearer{valid}"),
        valid.clone(),
        String::new(),
    ] {
        for (method, path) in [
            (Method::GET, "/v1/topics"),
            (Method::GET, "/v1/topics/t/partitions/0/records"),
            (Method::POST, "/v1/topics"),
        ] {
            let response = server
                .client
                .request(method.clone(), server.url(path))
                .header("Authorization", &header)
                .json(&json!({"name": "x"}))
                .send()
                .await
                .expect("request");
            assert_unauthorized(
                response,
                Some(&valid),
                &format!("{method} {path} with Authorization: {header:?}"),
            )
            .await;
        }
    }
    // The scheme is case-insensitive (RFC 7235 §2.1).
    for scheme in ["bearer", "BEARER"] {
        let response = server
            .client
            .get(server.url("/v1/topics"))
            .header("Authorization", format!("{scheme} {valid}"))
            .send()
            .await
            .expect("request");
        assert_status(response, 200, scheme).await;
    }
}

#[tokio::test]
async fn missing_token_401_has_bearer_challenge_and_error_shape() {
    let server = Server::start_with_iss_aud().await;
    for (method, path) in [
        (Method::GET, "/v1/topics"),
        (Method::POST, "/v1/topics"),
        (Method::GET, "/v1/topics/nope"),
        (Method::PATCH, "/v1/topics/nope"),
        (Method::DELETE, "/v1/topics/nope"),
        (Method::POST, "/v1/topics/nope/records"),
        (Method::GET, "/v1/topics/nope/partitions/0/records"),
        (
            Method::GET,
            "/v1/topics/nope/partitions/0/offsets?timestamp=0",
        ),
    ] {
        let response = server
            .req(method.clone(), path, None)
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..]),
            "{method} {path} content type"
        );
        // Authentication comes before the 404 for a missing topic, so names do not leak.
        assert_unauthorized(response, None, &format!("{method} {path}")).await;
    }
}

#[tokio::test]
async fn access_token_query_parameter_is_accepted() {
    let server = Server::start_hs().await;
    let admin = test_token(&claims("admin"));
    assert_eq!(server.create_topic(&admin, "q").await.status(), 201);
    let reader = test_token(&claims("subscribe:q"));
    let writer = test_token(&claims("publish:q"));

    let response = server
        .client
        .post(server.url(&format!("/v1/topics/q/records?access_token={writer}")))
        .json(&json!({"records": [{"value": 1}]}))
        .send()
        .await
        .expect("publish");
    assert_status(response, 200, "publish with ?access_token=").await;
    let url = server.url(&format!(
        "/v1/topics/q/partitions/0/records?offset=0&access_token={reader}"
    ));
    let response = server.client.get(url).send().await.expect("fetch");
    assert_eq!(response.status(), 200);
    let body = crate::harness::json_body(response).await;
    assert_eq!(body["records"].as_array().map(Vec::len), Some(1), "{body}");

    // The scope still applies, and bad or empty query tokens are 401.
    let url = server.url(&format!("/v1/topics/q/records?access_token={reader}"));
    let response = server
        .client
        .post(url)
        .json(&json!({"records": [{"value": 1}]}))
        .send()
        .await
        .expect("publish");
    assert_forbidden(response, "publish with a subscribe token in the query").await;
    let forged = super::support::hs256(b"not-the-secret", &claims("admin"));
    for query in [
        format!("access_token={forged}"),
        "access_token=".to_owned(),
        "access_token=garbage".to_owned(),
        format!("token={admin}"),
    ] {
        let response = server
            .client
            .get(server.url(&format!("/v1/topics?{query}")))
            .send()
            .await
            .expect("list");
        assert_unauthorized(response, Some(&forged), &query).await;
    }
}
