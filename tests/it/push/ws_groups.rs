//! Consumer groups over WebSocket: members receive assignments, split the partitions,
//! commit with their generation, and share a group with HTTP pollers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::Ws;
use crate::harness::{TestApp, json_body, offsets_of};

async fn publish_n(app: &TestApp, topic: &str, from: u64, count: u64) {
    let records: Vec<Value> = (from..from + count)
        .map(|n| json!({"key": format!("k{n}"), "value": n}))
        .collect();
    offsets_of(app.publish(topic, json!(records)).await).await;
}

/// A group member over WebSocket, tracking its assignment and generation.
struct Member {
    ws: Ws,
    sub: String,
    generation: u64,
    partitions: Vec<u64>,
}

impl Member {
    async fn join(app: &TestApp, group: &str) -> Member {
        let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
        let subscribed = ws
            .subscribe(json!({"topic": "t", "group": group, "from": "earliest"}))
            .await;
        let sub = subscribed["sub"].as_str().unwrap().to_owned();
        let assignment = ws.expect("assignment").await;
        let mut member = Member {
            ws,
            sub,
            generation: 0,
            partitions: Vec::new(),
        };
        member.apply(&assignment);
        member
    }

    fn apply(&mut self, assignment: &Value) {
        assert_eq!(assignment["sub"], self.sub.as_str());
        self.generation = assignment["generation"].as_u64().unwrap();
        self.partitions = assignment["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect();
    }

    /// Reads messages for `wait`: records (committed as they arrive) and assignments.
    async fn consume(
        &mut self,
        wait: Duration,
        seen: &mut BTreeMap<(u64, u64), String>,
        name: &str,
    ) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let Some(message) = self.ws.try_next(Duration::from_millis(20)).await else {
                continue;
            };
            let message = message.expect("open");
            match message["type"].as_str() {
                Some("assignment") => self.apply(&message),
                Some("records") => {
                    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
                    for record in message["records"].as_array().unwrap() {
                        let key = (
                            record["partition"].as_u64().unwrap(),
                            record["offset"].as_u64().unwrap(),
                        );
                        assert!(
                            self.partitions.contains(&key.0),
                            "{name} got {key:?} outside {:?}",
                            self.partitions
                        );
                        let earlier = seen.insert(key, name.to_owned());
                        assert!(
                            earlier.is_none(),
                            "{key:?} delivered to {earlier:?} and {name}"
                        );
                        next.insert(key.0, key.1 + 1);
                    }
                    let offsets: Vec<Value> = next
                        .iter()
                        .map(|(p, o)| json!({"partition": p, "offset": o}))
                        .collect();
                    self.ws
                        .send(json!({"op": "commit", "req": "c", "sub": self.sub, "offsets": offsets}))
                        .await;
                }
                Some("committed") => {}
                _ => panic!("{name}: unexpected {message}"),
            }
        }
    }
}

#[tokio::test]
async fn two_websocket_members_split_a_topic_and_the_survivor_takes_over() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 4).await;
    let mut a = Member::join(&app, "g").await;
    let mut b = Member::join(&app, "g").await;
    let mut seen = BTreeMap::new();
    // a learns of the rebalance b's join caused.
    a.consume(Duration::from_millis(300), &mut seen, "a").await;
    assert_eq!(a.partitions.len(), 2, "{:?}", a.partitions);
    assert_eq!(b.partitions.len(), 2, "{:?}", b.partitions);
    assert!(a.partitions.iter().all(|p| !b.partitions.contains(p)));
    assert_eq!(a.generation, b.generation);

    publish_n(&app, "t", 0, 100).await;
    let started = Instant::now();
    while seen.len() < 100 && started.elapsed() < Duration::from_secs(20) {
        a.consume(Duration::from_millis(100), &mut seen, "a").await;
        b.consume(Duration::from_millis(100), &mut seen, "b").await;
    }
    assert_eq!(seen.len(), 100, "every record reached exactly one member");
    // Let the last commits land, then b leaves by closing its socket.
    a.consume(Duration::from_millis(200), &mut seen, "a").await;
    b.consume(Duration::from_millis(200), &mut seen, "b").await;
    let generation = a.generation;
    b.ws.close().await;
    publish_n(&app, "t", 100, 40).await;
    let started = Instant::now();
    while seen.len() < 140 && started.elapsed() < Duration::from_secs(20) {
        a.consume(Duration::from_millis(100), &mut seen, "a").await;
    }
    assert_eq!(a.partitions, vec![0, 1, 2, 3], "the survivor owns all four");
    assert!(a.generation > generation);
    assert_eq!(
        seen.len(),
        140,
        "continued from the committed offsets, nothing twice"
    );
}

#[tokio::test]
async fn a_websocket_member_and_an_http_poller_share_a_group() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 4).await;
    let mut ws = Member::join(&app, "mixed").await;
    let poll_body = |member: Option<String>| {
        let mut body = json!({"topics": ["t"], "auto_offset_reset": "earliest", "limit": 100});
        if let Some(member) = member {
            body["member_id"] = member.into();
        }
        body
    };
    let first = app.poll_group("mixed", poll_body(None)).await;
    let member_id = first["member_id"].as_str().unwrap().to_owned();
    let mut seen = BTreeMap::new();
    ws.consume(Duration::from_millis(300), &mut seen, "ws")
        .await;
    let http_partitions: Vec<u64> = first["assignment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(ws.partitions.len(), 2);
    assert_eq!(http_partitions.len(), 2);
    assert!(ws.partitions.iter().all(|p| !http_partitions.contains(p)));

    publish_n(&app, "t", 0, 60).await;
    let started = Instant::now();
    while seen.len() < 60 && started.elapsed() < Duration::from_secs(20) {
        ws.consume(Duration::from_millis(100), &mut seen, "ws")
            .await;
        let answer = app
            .poll_group("mixed", poll_body(Some(member_id.clone())))
            .await;
        for record in answer["records"].as_array().unwrap() {
            let key = (
                record["partition"].as_u64().unwrap(),
                record["offset"].as_u64().unwrap(),
            );
            assert!(http_partitions.contains(&key.0));
            assert!(seen.insert(key, "http".into()).is_none(), "{key:?} twice");
        }
    }
    assert_eq!(seen.len(), 60);
    let description = json_body(app.get("/v1/groups/mixed").send().await.unwrap()).await;
    assert_eq!(
        description["members"].as_array().unwrap().len(),
        2,
        "{description}"
    );
}

#[tokio::test]
async fn commits_over_websocket_are_fenced_by_the_assignment() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    let mut a = Member::join(&app, "g").await;
    let old = a.generation;
    let partition = a.partitions[0];
    // An HTTP member joins: a's generation is stale until it reads its new assignment.
    app.poll_group("g", json!({"topics": ["t"]})).await;
    let assignment = a.ws.expect("assignment").await;
    assert!(assignment["generation"].as_u64().unwrap() > old);
    a.apply(&assignment);
    let foreign = (0..2)
        .find(|p| !a.partitions.contains(p))
        .unwrap_or(partition);
    a.ws.send(json!({"op": "commit", "req": 1, "sub": a.sub, "offsets": [{"partition": foreign, "offset": 0}]})).await;
    let error = a.ws.expect("error").await;
    assert_eq!(error["error"]["code"], "partition_not_assigned", "{error}");
    a.ws.send(json!({"op": "commit", "sub": "s42", "offsets": [{"partition": 0, "offset": 0}]}))
        .await;
    assert_eq!(a.ws.expect("error").await["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_member_removed_from_its_group_ends_its_subscription_with_an_error() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    let mut a = Member::join(&app, "g").await;
    let description = json_body(app.get("/v1/groups/g").send().await.unwrap()).await;
    let member = description["members"][0]["member_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/groups/g/members/{member}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // The rebalance reaches the socket; its member is gone, so the subscription ends,
    // saying why, and the socket stays open.
    let ended = a.ws.expect("error").await;
    assert_eq!(ended["sub"], a.sub.as_str(), "{ended}");
    assert_eq!(ended["error"]["code"], "member_not_found", "{ended}");
    publish_n(&app, "t", 0, 4).await;
    assert!(
        a.ws.silent_for(Duration::from_millis(300)).await,
        "no records after the end"
    );
    a.ws.send(
        json!({"op": "commit", "req": 9, "sub": a.sub, "offsets": [{"partition": 0, "offset": 0}]}),
    )
    .await;
    let refused = a.ws.expect("error").await;
    assert_eq!(
        (refused["req"].clone(), refused["error"]["code"].clone()),
        (json!(9), json!("not_found"))
    );
}
