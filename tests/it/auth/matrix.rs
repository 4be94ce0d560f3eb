//! Every HTTP route × every kind of token, with the exact status each must get, and a check
//! that refused requests changed nothing.

use reqwest::Method;
use serde_json::{Value, json};

use super::support::{
    ISSUER, Server, alg_none, check_error_shape, check_unauthorized, claims_iss_aud, hs256, now,
    test_token, topic_names,
};
use crate::harness::json_body;

/// The topic the per-topic routes act on.
const TOPIC: &str = "m-topic";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    NoToken,
    Expired,
    BadSignature,
    AlgNone,
    WrongAudience,
    WrongIssuer,
    WithoutScope,
    ExactScope,
    Admin,
}

const CASES: [Case; 9] = [
    Case::NoToken,
    Case::Expired,
    Case::BadSignature,
    Case::AlgNone,
    Case::WrongAudience,
    Case::WrongIssuer,
    Case::WithoutScope,
    Case::ExactScope,
    Case::Admin,
];

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// No token at all.
    Open,
    /// Any valid token; the answer is filtered by scope.
    AnyToken,
    /// Any scope on the topic (publish or subscribe).
    Viewer,
    Publish,
    Subscribe,
    Admin,
    /// `group:G` and `subscribe:T` for the topic the request names.
    GroupAndTopic,
    /// `group:G` alone.
    Group,
    /// A WebSocket: a request without a token may authenticate with its first message,
    /// a request with a bad one is refused; scopes are checked per subscription.
    Upgrade,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    CreateTopic,
    ListTopics,
    DescribeTopic,
    TopicStats,
    Cluster,
    PatchTopic,
    DeleteTopic,
    Publish,
    Fetch,
    Offsets,
    GroupPoll,
    GroupCommit,
    GroupSeek,
    ListGroups,
    DescribeGroup,
    GroupStats,
    LeaveGroup,
    DeleteGroup,
    Events,
    WebSocket,
}

const ROUTES: [Route; 24] = [
    Route::Healthz,
    Route::Readyz,
    Route::Metrics,
    Route::OpenApi,
    Route::CreateTopic,
    Route::ListTopics,
    Route::DescribeTopic,
    Route::TopicStats,
    Route::Cluster,
    Route::PatchTopic,
    Route::DeleteTopic,
    Route::Publish,
    Route::Fetch,
    Route::Offsets,
    // Polls first: they make the group the describe row reads.
    Route::GroupPoll,
    Route::GroupCommit,
    Route::GroupSeek,
    Route::ListGroups,
    Route::DescribeGroup,
    Route::GroupStats,
    Route::LeaveGroup,
    Route::DeleteGroup,
    Route::Events,
    Route::WebSocket,
];

/// The member id placeholder in [`Route::LeaveGroup`]'s path; each cell makes a member.
const MEMBER: &str = "{member}";

impl Route {
    fn method(self) -> Method {
        match self {
            Route::CreateTopic
            | Route::Publish
            | Route::GroupPoll
            | Route::GroupCommit
            | Route::GroupSeek => Method::POST,
            Route::PatchTopic => Method::PATCH,
            Route::DeleteTopic | Route::LeaveGroup | Route::DeleteGroup => Method::DELETE,
            _ => Method::GET,
        }
    }

    /// The path for case number `n` (create and delete use a topic of their own per case).
    fn path(self, n: usize) -> String {
        match self {
            Route::Healthz => "/healthz".into(),
            Route::Readyz => "/readyz".into(),
            Route::Metrics => "/metrics".into(),
            Route::OpenApi => "/openapi.json".into(),
            Route::CreateTopic | Route::ListTopics => "/v1/topics".into(),
            Route::DescribeTopic | Route::PatchTopic => format!("/v1/topics/{TOPIC}"),
            Route::DeleteTopic => format!("/v1/topics/{}", throwaway(n)),
            Route::TopicStats => format!("/v1/topics/{TOPIC}/stats"),
            Route::Cluster => "/v1/cluster".into(),
            Route::GroupStats => "/v1/groups/m-group/stats".into(),
            Route::Publish => format!("/v1/topics/{TOPIC}/records"),
            Route::Fetch => format!("/v1/topics/{TOPIC}/partitions/0/records?offset=0"),
            Route::Offsets => format!("/v1/topics/{TOPIC}/partitions/0/offsets?timestamp=0"),
            Route::GroupPoll => "/v1/groups/m-group/poll".into(),
            Route::GroupCommit => "/v1/groups/m-commit/commit".into(),
            Route::GroupSeek => "/v1/groups/m-seek/seek".into(),
            Route::ListGroups => "/v1/groups".into(),
            Route::DescribeGroup => "/v1/groups/m-group".into(),
            Route::LeaveGroup => format!("/v1/groups/m-leave/members/{MEMBER}"),
            Route::DeleteGroup => format!("/v1/groups/{}", doomed_group(n)),
            Route::Events => format!("/v1/topics/{TOPIC}/events?from=earliest"),
            Route::WebSocket => "/v1/ws".into(),
        }
    }

    /// The path as the OpenAPI document writes it.
    fn template(self) -> &'static str {
        match self {
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::CreateTopic | Route::ListTopics => "/v1/topics",
            Route::DescribeTopic | Route::PatchTopic | Route::DeleteTopic => "/v1/topics/{topic}",
            Route::Publish => "/v1/topics/{topic}/records",
            Route::TopicStats => "/v1/topics/{topic}/stats",
            Route::Cluster => "/v1/cluster",
            Route::GroupStats => "/v1/groups/{group}/stats",
            Route::Fetch => "/v1/topics/{topic}/partitions/{partition}/records",
            Route::Offsets => "/v1/topics/{topic}/partitions/{partition}/offsets",
            Route::GroupPoll => "/v1/groups/{group}/poll",
            Route::GroupCommit => "/v1/groups/{group}/commit",
            Route::GroupSeek => "/v1/groups/{group}/seek",
            Route::ListGroups => "/v1/groups",
            Route::DescribeGroup | Route::DeleteGroup => "/v1/groups/{group}",
            Route::LeaveGroup => "/v1/groups/{group}/members/{member}",
            Route::Events => "/v1/topics/{topic}/events",
            Route::WebSocket => "/v1/ws",
        }
    }

    fn body(self, n: usize) -> Option<Value> {
        match self {
            Route::CreateTopic => Some(json!({"name": created(n), "partitions": 1})),
            Route::PatchTopic => Some(json!({"retention_ms": patched_retention(n)})),
            Route::Publish => Some(json!({"records": [{"value": {"case": n}}]})),
            Route::GroupPoll => Some(json!({"topics": [TOPIC]})),
            Route::GroupCommit => {
                Some(json!({"offsets": [{"topic": TOPIC, "partition": 0, "offset": 0}]}))
            }
            Route::GroupSeek => Some(json!({"topic": TOPIC, "to": "earliest"})),
            _ => None,
        }
    }

    fn access(self) -> Access {
        match self {
            Route::Healthz | Route::Readyz | Route::OpenApi => Access::Open,
            Route::ListTopics | Route::Cluster => Access::AnyToken,
            Route::DescribeTopic | Route::TopicStats => Access::Viewer,
            Route::Publish => Access::Publish,
            Route::Fetch | Route::Offsets => Access::Subscribe,
            Route::CreateTopic | Route::PatchTopic | Route::DeleteTopic | Route::Metrics => {
                Access::Admin
            }
            Route::GroupPoll | Route::GroupCommit | Route::GroupSeek => Access::GroupAndTopic,
            Route::ListGroups => Access::AnyToken,
            Route::DescribeGroup | Route::GroupStats | Route::LeaveGroup | Route::DeleteGroup => {
                Access::Group
            }
            Route::Events => Access::Subscribe,
            Route::WebSocket => Access::Upgrade,
        }
    }

    fn success(self) -> u16 {
        match self {
            Route::CreateTopic => 201,
            Route::DeleteTopic | Route::GroupCommit | Route::LeaveGroup | Route::DeleteGroup => 204,
            Route::WebSocket => 101,
            _ => 200,
        }
    }
}

fn created(n: usize) -> String {
    format!("mx-created-{n}")
}

fn throwaway(n: usize) -> String {
    format!("mx-delete-{n}")
}

fn doomed_group(n: usize) -> String {
    format!("m-delete-{n}")
}

fn patched_retention(n: usize) -> i64 {
    3_600_000 * (n as i64 + 1)
}

/// Scopes that are valid but do not grant what the route needs: other actions on the same
/// topic, the same action on other topics, everything but admin.
fn scope_without(access: Access) -> &'static str {
    match access {
        Access::Open | Access::AnyToken => "group:m-topic openid",
        Access::Viewer => "group:m-topic publish:other subscribe:other",
        Access::Publish => "subscribe:m-topic group:m-topic publish:other",
        Access::Subscribe => "publish:m-topic group:m-topic subscribe:other",
        Access::Admin => "publish:* subscribe:* group:*",
        // The group without the topic, and the topic without the group.
        Access::GroupAndTopic => "group:m-* publish:m-topic subscribe:other",
        Access::Group => "subscribe:m-topic publish:m-topic group:other",
        Access::Upgrade => "openid",
    }
}

/// Exactly the one scope the route needs.
fn scope_exact(access: Access) -> &'static str {
    match access {
        Access::Open | Access::AnyToken | Access::Viewer | Access::Subscribe => "subscribe:m-topic",
        Access::Publish => "publish:m-topic",
        Access::Admin => "admin",
        Access::GroupAndTopic => "group:m-* subscribe:m-topic",
        Access::Group => "group:m-*",
        Access::Upgrade => "subscribe:m-topic",
    }
}

/// The token for `case` (`None`: no Authorization header). Apart from the one flaw each bad
/// case has, its claims are an admin's, so only the flaw can explain a 401.
fn token(case: Case, access: Access) -> Option<String> {
    let admin = claims_iss_aud("admin");
    Some(match case {
        Case::NoToken => return None,
        Case::Expired => {
            let mut claims = admin;
            claims["iat"] = json!(now() - 7200);
            claims["exp"] = json!(now() - 3600);
            test_token(&claims)
        }
        Case::BadSignature => hs256(b"another-secret-of-the-same-length-0123", &admin),
        Case::AlgNone => alg_none(&admin),
        Case::WrongAudience => {
            let mut claims = admin;
            claims["aud"] = json!("some-other-service");
            test_token(&claims)
        }
        Case::WrongIssuer => {
            let mut claims = admin;
            claims["iss"] = json!("https://evil.example");
            test_token(&claims)
        }
        Case::WithoutScope => test_token(&claims_iss_aud(scope_without(access))),
        Case::ExactScope => test_token(&claims_iss_aud(scope_exact(access))),
        Case::Admin => test_token(&admin),
    })
}

fn expected_status(route: Route, case: Case) -> u16 {
    let access = route.access();
    match case {
        _ if access == Access::Open => 200,
        Case::NoToken if access == Access::Upgrade => 101,
        Case::NoToken
        | Case::Expired
        | Case::BadSignature
        | Case::AlgNone
        | Case::WrongAudience
        | Case::WrongIssuer => 401,
        Case::WithoutScope if access == Access::AnyToken => 200,
        Case::WithoutScope if access == Access::Upgrade => 101,
        Case::WithoutScope => 403,
        Case::ExactScope | Case::Admin => route.success(),
    }
}

struct Matrix {
    server: Server,
    admin: String,
}

impl Matrix {
    async fn admin_json(&self, path: &str) -> (u16, Value) {
        let response = self.server.get(path, &self.admin).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A new member of `group`, by an admin poll.
    async fn join(&self, group: &str) -> String {
        let response = self
            .server
            .req(
                Method::POST,
                &format!("/v1/groups/{group}/poll"),
                Some(&self.admin),
            )
            .json(&json!({"topics": [TOPIC]}))
            .send()
            .await
            .expect("poll");
        assert_eq!(response.status(), 200, "joining {group}");
        json_body(response).await["member_id"]
            .as_str()
            .expect("member_id")
            .to_owned()
    }

    async fn topic_status(&self, name: &str) -> u16 {
        self.admin_json(&format!("/v1/topics/{name}")).await.0
    }

    async fn high_watermark(&self) -> u64 {
        let (_, body) = self.admin_json(&format!("/v1/topics/{TOPIC}")).await;
        body["partition_offsets"][0]["high_watermark"]
            .as_u64()
            .unwrap_or_else(|| panic!("high watermark in {body}"))
    }

    async fn retention_ms(&self) -> i64 {
        let (_, body) = self.admin_json(&format!("/v1/topics/{TOPIC}")).await;
        body["retention_ms"]
            .as_i64()
            .unwrap_or_else(|| panic!("retention_ms in {body}"))
    }

    /// Runs one cell; `Err` describes every way it went wrong.
    async fn cell(&self, route: Route, case: Case, n: usize) -> Result<(), String> {
        let expected = expected_status(route, case);
        let succeeds = (200..300).contains(&expected);

        // State before, to prove refused requests changed nothing.
        if route == Route::DeleteTopic {
            let response = self.server.create_topic(&self.admin, &throwaway(n)).await;
            assert_eq!(response.status(), 201, "creating {}", throwaway(n));
        }
        let mut path = route.path(n);
        if route == Route::LeaveGroup {
            path = path.replace(MEMBER, &self.join("m-leave").await);
        }
        if route == Route::DeleteGroup {
            // An empty group: committed offsets, no member.
            let body = json!({"offsets": [{"topic": TOPIC, "partition": 0, "offset": 0}]});
            let response = self
                .server
                .req(
                    Method::POST,
                    &format!("/v1/groups/{}/commit", doomed_group(n)),
                    Some(&self.admin),
                )
                .json(&body)
                .send()
                .await
                .expect("commit");
            assert_eq!(response.status(), 204, "committing for {}", doomed_group(n));
        }
        let watermark = match route {
            Route::Publish => self.high_watermark().await,
            _ => 0,
        };
        let retention = match route {
            Route::PatchTopic => self.retention_ms().await,
            _ => 0,
        };

        let token = token(case, route.access());
        let mut request = self.server.req(route.method(), &path, token.as_deref());
        if let Some(body) = route.body(n) {
            request = request.json(&body);
        }
        if route == Route::WebSocket {
            request = request
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        }
        let response = request.send().await.map_err(|err| err.to_string())?;
        let status = response.status().as_u16();
        if status != expected {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("status {status}, expected {expected}; body {body}"));
        }
        match expected {
            401 => check_unauthorized(response, token.as_deref()).await?,
            403 => check_error_shape(&response.text().await.unwrap_or_default())?,
            _ if route == Route::ListTopics => {
                let names = topic_names(&json_body(response).await);
                let visible_ok = match case {
                    Case::WithoutScope => names.is_empty(),
                    Case::ExactScope => names == [TOPIC],
                    // Admin sees everything, including the topics the create row made.
                    _ => [TOPIC.to_owned(), created(7), created(8)]
                        .iter()
                        .all(|name| names.contains(name)),
                };
                if !visible_ok {
                    return Err(format!("listing shows {names:?}"));
                }
            }
            _ => {}
        }

        // State after.
        match route {
            Route::CreateTopic => {
                let status = self.topic_status(&created(n)).await;
                let want = if succeeds { 200 } else { 404 };
                if status != want {
                    return Err(format!("describing the created topic gave {status}"));
                }
            }
            Route::DeleteTopic => {
                let status = self.topic_status(&throwaway(n)).await;
                let want = if succeeds { 404 } else { 200 };
                if status != want {
                    return Err(format!("describing the deleted topic gave {status}"));
                }
            }
            Route::Publish => {
                let after = self.high_watermark().await;
                let want = watermark + u64::from(succeeds);
                if after != want {
                    return Err(format!("high watermark {watermark} → {after}"));
                }
            }
            Route::DeleteGroup => {
                let status = self
                    .admin_json(&format!("/v1/groups/{}", doomed_group(n)))
                    .await
                    .0;
                let want = if succeeds { 404 } else { 200 };
                if status != want {
                    return Err(format!("describing the deleted group gave {status}"));
                }
            }
            Route::PatchTopic => {
                let after = self.retention_ms().await;
                let want = if succeeds {
                    patched_retention(n)
                } else {
                    retention
                };
                if after != want {
                    return Err(format!("retention_ms {retention} → {after}, want {want}"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[tokio::test]
async fn every_route_answers_every_kind_of_token_with_the_exact_status() {
    let server = Server::start_with_iss_aud().await;
    let admin = test_token(&claims_iss_aud("admin"));
    let response = server.create_topic(&admin, TOPIC).await;
    assert_eq!(response.status(), 201, "creating {TOPIC}");
    // The harness's own admin token has no `iss`/`aud`, so this server must refuse it: the
    // issuer and audience checks are really on.
    let no_iss_aud = crate::harness::token("admin", "admin");
    let response = server.get("/v1/topics", &no_iss_aud).await;
    assert_eq!(
        response.status(),
        401,
        "token without iss/aud, issuer {ISSUER}"
    );

    let matrix = Matrix { server, admin };
    let mut failures = Vec::new();
    let mut cells = 0;
    for route in ROUTES {
        for (n, case) in CASES.into_iter().enumerate() {
            cells += 1;
            if let Err(problem) = matrix.cell(route, case, n).await {
                failures.push(format!(
                    "{} {} with {case:?}: {problem}",
                    route.method(),
                    route.path(n)
                ));
            }
        }
    }
    assert_eq!(cells, ROUTES.len() * CASES.len());
    assert!(
        failures.is_empty(),
        "{} of {cells} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The matrix must cover every operation the server documents, so a new route cannot
/// slip in without its auth being tested here.
#[tokio::test]
async fn the_matrix_covers_every_documented_operation() {
    let server = Server::start_with_iss_aud().await;
    let response = server
        .req(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("openapi");
    assert_eq!(response.status(), 200);
    let document = json_body(response).await;
    let paths = document["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("paths in {document}"));
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("path item");
            ["get", "post", "put", "patch", "delete", "head", "options"]
                .into_iter()
                .filter(|method| item.contains_key(*method))
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    documented.sort();
    let mut tested: Vec<(String, String)> = ROUTES
        .into_iter()
        .filter(|route| *route != Route::OpenApi)
        .map(|route| (route.method().to_string(), route.template().to_owned()))
        .collect();
    tested.sort();
    assert_eq!(documented, tested);
}
