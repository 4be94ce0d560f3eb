//! Consumer groups over HTTP, black-box: assignment, exactly-once delivery between
//! committing members, rebalances and fencing, session expiry, several groups, seek, lag,
//! durability of commits across restarts and kill -9, scopes, bad input.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::harness::{TestApp, expect_error, json_body, offsets_of, token};

/// Bounds every loop, so a broken server fails instead of stalling the suite.
const DEADLINE: Duration = Duration::from_secs(30);

type Partition = (String, u64);

/// A group member as a client sees it.
struct Member {
    id: String,
    generation: u64,
    assignment: BTreeSet<Partition>,
    /// Where it stands in each partition after its last poll: what it commits.
    positions: BTreeMap<Partition, u64>,
}

/// Polls with `body` (plus `member_id` when known); asserts 200 and returns the records as
/// (topic, partition, offset, value).
async fn poll(
    app: &TestApp,
    group: &str,
    member: &mut Option<Member>,
    body: Value,
) -> Vec<(String, u64, u64, Value)> {
    let mut body = body;
    if let Some(member) = member {
        body["member_id"] = json!(member.id);
    }
    let response = app.post_group(group, "poll", &body).await;
    let status = response.status();
    let answer = json_body(response).await;
    assert_eq!(status, 200, "poll {body}: {answer}");
    let assigned = answer["assignment"].as_array().expect("assignment");
    let partition = |p: &Value| {
        (
            p["topic"].as_str().unwrap().to_owned(),
            p["partition"].as_u64().unwrap(),
        )
    };
    *member = Some(Member {
        id: answer["member_id"].as_str().expect("member_id").to_owned(),
        generation: answer["generation"].as_u64().expect("generation"),
        assignment: assigned.iter().map(partition).collect(),
        positions: assigned
            .iter()
            .filter_map(|p| Some((partition(p), p["position"].as_u64()?)))
            .collect(),
    });
    answer["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["topic"].as_str().unwrap().to_owned(),
                r["partition"].as_u64().unwrap(),
                r["offset"].as_u64().unwrap(),
                r["value"].clone(),
            )
        })
        .collect()
}

/// Commits, for each partition in `records`, the member's position after the poll that
/// read them (past them, and past offsets holding no record); asserts 204.
async fn commit(
    app: &TestApp,
    group: &str,
    member: &Member,
    records: &[(String, u64, u64, Value)],
) {
    let mut next: BTreeMap<Partition, u64> = BTreeMap::new();
    for (topic, partition, offset, _) in records {
        let partition = (topic.clone(), *partition);
        let position = member.positions.get(&partition).copied();
        assert!(
            position.is_some_and(|p| p > *offset),
            "position past {offset}"
        );
        next.insert(partition, position.unwrap_or(offset + 1));
    }
    commit_offsets(app, group, member, &next).await;
}

/// Commits the member's positions on every partition it has one on.
async fn commit_positions(app: &TestApp, group: &str, member: &Member) {
    commit_offsets(app, group, member, &member.positions).await;
}

async fn commit_offsets(
    app: &TestApp,
    group: &str,
    member: &Member,
    next: &BTreeMap<Partition, u64>,
) {
    if next.is_empty() {
        return;
    }
    let offsets: Vec<Value> = next
        .iter()
        .map(|((topic, partition), offset)| {
            json!({"topic": topic, "partition": partition, "offset": offset})
        })
        .collect();
    let body = json!({"member_id": member.id, "generation": member.generation, "offsets": offsets});
    let response = app.post_group(group, "commit", &body).await;
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 204, "commit {body}: {text}");
}

/// Publishes `count` keyed records to `topic`, values 0..count.
async fn publish_numbers(app: &TestApp, topic: &str, from: u64, count: u64) {
    let records: Vec<Value> = (from..from + count)
        .map(|n| json!({"key": format!("k{n}"), "value": n}))
        .collect();
    offsets_of(app.publish(topic, json!(records)).await).await;
}

async fn describe(app: &TestApp, group: &str) -> Value {
    let response = app
        .get(&format!("/v1/groups/{group}"))
        .send()
        .await
        .expect("describe");
    assert_eq!(response.status(), 200, "describe {group}");
    json_body(response).await
}

/// Committed offset per partition of `topic` in a group description.
fn committed(description: &Value, topic: &str) -> BTreeMap<u64, Option<u64>> {
    description["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["topic"] == topic)
        .map(|p| {
            (
                p["partition"].as_u64().unwrap(),
                p["committed_offset"].as_u64(),
            )
        })
        .collect()
}

const EARLIEST: &str = "earliest";

fn poll_body(topic: &str, limit: u64) -> Value {
    json!({"topics": [topic], "auto_offset_reset": EARLIEST, "limit": limit})
}

#[tokio::test]
async fn two_committing_members_split_partitions_and_see_every_record_once() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 4).await;
    let (mut a, mut b) = (None, None);
    poll(&app, "billing", &mut a, poll_body("orders", 10)).await;
    assert_eq!(
        a.as_ref().unwrap().assignment.len(),
        4,
        "a lone member owns everything"
    );
    poll(&app, "billing", &mut b, poll_body("orders", 10)).await;
    poll(&app, "billing", &mut a, poll_body("orders", 10)).await;
    let (a_parts, b_parts) = (
        a.as_ref().unwrap().assignment.clone(),
        b.as_ref().unwrap().assignment.clone(),
    );
    assert_eq!(a_parts.len(), 2, "{a_parts:?}");
    assert_eq!(b_parts.len(), 2, "{b_parts:?}");
    assert!(a_parts.is_disjoint(&b_parts));
    assert_eq!(a_parts.union(&b_parts).count(), 4);
    assert_eq!(
        a.as_ref().unwrap().generation,
        b.as_ref().unwrap().generation
    );

    publish_numbers(&app, "orders", 0, 300).await;
    let mut seen: BTreeMap<(u64, u64), &str> = BTreeMap::new();
    let started = Instant::now();
    while seen.len() < 300 && started.elapsed() < DEADLINE {
        for (name, member, owned) in [("a", &mut a, &a_parts), ("b", &mut b, &b_parts)] {
            let records = poll(&app, "billing", member, poll_body("orders", 17)).await;
            for (topic, partition, offset, _) in &records {
                assert!(
                    owned.contains(&(topic.clone(), *partition)),
                    "{name} read {partition}"
                );
                let earlier = seen.insert((*partition, *offset), name);
                assert!(earlier.is_none(), "{partition}@{offset} delivered twice");
            }
            commit(&app, "billing", member.as_ref().unwrap(), &records).await;
        }
    }
    assert_eq!(seen.len(), 300, "every record reached one member");
    if !crate::harness::dense_offsets() {
        // Kafka: a position may rest on the transaction marker after the last record
        // until an empty poll steps over it; committing that position ends the lag.
        for member in [&mut a, &mut b] {
            let body = json!({"topics": ["orders"]});
            assert!(poll(&app, "billing", member, body).await.is_empty());
            commit_positions(&app, "billing", member.as_ref().unwrap()).await;
        }
    }
    let description = describe(&app, "billing").await;
    assert_eq!(description["state"], "stable");
    assert_eq!(description["members"].as_array().unwrap().len(), 2);
    let hwms = app.high_watermarks("orders").await;
    for (partition, offset) in committed(&description, "orders") {
        assert_eq!(
            offset,
            Some(hwms[partition as usize]),
            "partition {partition}"
        );
    }
    for p in description["partitions"].as_array().unwrap() {
        assert_eq!(p["lag"], 0, "{p}");
    }
}

#[tokio::test]
async fn a_join_raises_the_generation_and_fences_stale_commits() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 4).await;
    publish_numbers(&app, "t", 0, 40).await;
    let (mut a, mut b, mut c) = (None, None, None);
    poll(&app, "g", &mut a, poll_body("t", 1)).await;
    let records = poll(&app, "g", &mut b, poll_body("t", 100)).await;
    let old = b.as_ref().unwrap().generation;
    poll(&app, "g", &mut c, poll_body("t", 1)).await;
    let new = c.as_ref().unwrap().generation;
    assert!(new > old, "generation {old} → {new}");

    // b commits with the generation it knew: fenced.
    let stale = json!({"member_id": b.as_ref().unwrap().id, "generation": old,
        "offsets": [{"topic": "t", "partition": records[0].1, "offset": records[0].2 + 1}]});
    let error = expect_error(
        app.post_group("g", "commit", &stale).await,
        409,
        "stale_generation",
    )
    .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&new.to_string()),
        "{error}"
    );
    // Without a generation at all: fenced as well.
    let none = json!({"member_id": b.as_ref().unwrap().id,
        "offsets": [{"topic": "t", "partition": 0, "offset": 0}]});
    expect_error(
        app.post_group("g", "commit", &none).await,
        409,
        "stale_generation",
    )
    .await;

    // After polling, b knows the new generation; a partition it does not own is refused.
    poll(&app, "g", &mut b, poll_body("t", 1)).await;
    let b_now = b.as_ref().unwrap();
    assert_eq!(b_now.generation, new);
    let foreign = (0..4)
        .find(|p| !b_now.assignment.contains(&("t".into(), *p)))
        .expect("b does not own all four");
    let body = json!({"member_id": b_now.id, "generation": new,
        "offsets": [{"topic": "t", "partition": foreign, "offset": 0}]});
    expect_error(
        app.post_group("g", "commit", &body).await,
        409,
        "partition_not_assigned",
    )
    .await;
    // While members live, nobody else may commit for the group.
    let anonymous = json!({"offsets": [{"topic": "t", "partition": 0, "offset": 0}]});
    expect_error(
        app.post_group("g", "commit", &anonymous).await,
        409,
        "group_not_empty",
    )
    .await;
}

#[tokio::test]
async fn an_expired_members_partitions_move_to_the_survivor_at_the_committed_offsets() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 4).await;
    let session = json!(1000);
    let body = |limit: u64| {
        json!({"topics": ["t"], "auto_offset_reset": EARLIEST, "limit": limit,
               "session_timeout_ms": session})
    };
    let (mut x, mut y) = (None, None);
    poll(&app, "g", &mut x, body(1)).await;
    poll(&app, "g", &mut y, body(1)).await;
    poll(&app, "g", &mut x, body(1)).await;
    publish_numbers(&app, "t", 0, 100).await;

    // y reads and commits part of its partitions, then goes silent.
    let mut delivered = BTreeSet::new();
    let y_read = poll(&app, "g", &mut y, body(20)).await;
    assert!(!y_read.is_empty());
    commit(&app, "g", y.as_ref().unwrap(), &y_read).await;
    delivered.extend(y_read.iter().map(|r| (r.1, r.2)));
    let y_parts = y.as_ref().unwrap().assignment.clone();
    let generation = y.as_ref().unwrap().generation;

    // x keeps polling and committing; within a few seconds y expires and x owns all four.
    let started = Instant::now();
    loop {
        let read = poll(&app, "g", &mut x, body(50)).await;
        for record in &read {
            assert!(
                delivered.insert((record.1, record.2)),
                "{record:?} delivered twice"
            );
        }
        commit(&app, "g", x.as_ref().unwrap(), &read).await;
        if delivered.len() == 100 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {} of 100 delivered",
            delivered.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let x_now = x.as_ref().unwrap();
    assert_eq!(x_now.assignment.len(), 4);
    assert!(x_now.assignment.is_superset(&y_parts));
    assert!(x_now.generation > generation);
    // y is gone: its next poll learns it.
    let body_y = json!({"topics": ["t"], "member_id": y.as_ref().unwrap().id});
    expect_error(
        app.post_group("g", "poll", &body_y).await,
        404,
        "member_not_found",
    )
    .await;
}

#[tokio::test]
async fn an_explicit_leave_rebalances_at_once() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    let (mut a, mut b) = (None, None);
    poll(&app, "g", &mut a, poll_body("t", 1)).await;
    poll(&app, "g", &mut b, poll_body("t", 1)).await;
    let path = format!("/v1/groups/g/members/{}", b.as_ref().unwrap().id);
    let response = app
        .request(Method::DELETE, &path)
        .send()
        .await
        .expect("leave");
    assert_eq!(response.status(), 204);
    poll(&app, "g", &mut a, poll_body("t", 1)).await;
    assert_eq!(a.as_ref().unwrap().assignment.len(), 2);
    let response = app
        .request(Method::DELETE, &path)
        .send()
        .await
        .expect("leave");
    expect_error(response, 404, "member_not_found").await;
    // Deleting a group with a live member is refused; once it leaves, allowed, once.
    let response = app
        .request(Method::DELETE, "/v1/groups/g")
        .send()
        .await
        .expect("delete");
    expect_error(response, 409, "group_not_empty").await;
    let path = format!("/v1/groups/g/members/{}", a.as_ref().unwrap().id);
    app.request(Method::DELETE, &path)
        .send()
        .await
        .expect("leave");
    let response = app
        .request(Method::DELETE, "/v1/groups/g")
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204);
    let response = app
        .request(Method::DELETE, "/v1/groups/g")
        .send()
        .await
        .expect("delete");
    expect_error(response, 404, "group_not_found").await;
}

#[tokio::test]
async fn new_partitions_of_a_subscribed_topic_rebalance_the_group() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    let (mut a, mut b) = (None, None);
    poll(&app, "g", &mut a, poll_body("t", 1)).await;
    poll(&app, "g", &mut b, poll_body("t", 1)).await;
    let before = b.as_ref().unwrap().generation;
    let response = app.patch_topic("t", json!({"partitions": 6})).await;
    assert_eq!(response.status(), 200);
    poll(&app, "g", &mut a, poll_body("t", 1)).await;
    poll(&app, "g", &mut b, poll_body("t", 1)).await;
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        b.generation > before,
        "generation {before} → {}",
        b.generation
    );
    assert_eq!(a.assignment.len() + b.assignment.len(), 6);
    assert_eq!((a.assignment.len(), b.assignment.len()), (3, 3));
    assert!(a.assignment.is_disjoint(&b.assignment));
}

#[tokio::test]
async fn a_waiting_poll_wakes_on_a_publish_to_its_partitions() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 3).await;
    let mut member = None;
    poll(&app, "g", &mut member, poll_body("t", 10)).await;
    let started = Instant::now();
    let body = json!({"topics": ["t"], "wait_ms": 10_000});
    let (records, _) = tokio::join!(poll(&app, "g", &mut member, body), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publish_numbers(&app, "t", 0, 1).await;
    });
    assert_eq!(records.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // With nothing published, it waits out its time and answers empty.
    let started = Instant::now();
    let records = poll(
        &app,
        "g",
        &mut member,
        json!({"topics": ["t"], "wait_ms": 300}),
    )
    .await;
    assert!(records.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn two_groups_each_get_every_record_and_auto_commit_tracks_lag() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    publish_numbers(&app, "t", 0, 30).await;
    for group in ["one", "two"] {
        let mut member = None;
        let mut got = BTreeSet::new();
        let started = Instant::now();
        while got.len() < 30 && started.elapsed() < DEADLINE {
            let body = json!({"topics": ["t"], "auto_offset_reset": EARLIEST, "limit": 7,
                              "auto_commit": true});
            for record in poll(&app, group, &mut member, body).await {
                assert!(
                    got.insert((record.1, record.2)),
                    "{group}: {record:?} twice"
                );
            }
        }
        assert_eq!(got.len(), 30, "{group}");
        // The last poll's deliveries are committed by the next poll. On Kafka the position
        // may first rest on the transaction marker after the last record: one more poll
        // steps over it, and the poll after that commits it.
        let polls = if crate::harness::dense_offsets() {
            1
        } else {
            3
        };
        for _ in 0..polls {
            let body = json!({"topics": ["t"], "auto_commit": true});
            assert!(poll(&app, group, &mut member, body).await.is_empty());
        }
        let description = describe(&app, group).await;
        for p in description["partitions"].as_array().unwrap() {
            assert_eq!(p["lag"], 0, "{group}: {p}");
        }
    }
    publish_numbers(&app, "t", 30, 10).await;
    let description = describe(&app, "one").await;
    let lag: u64 = description["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let hwm = p["high_watermark"].as_u64().unwrap();
            let committed = p["committed_offset"].as_u64().unwrap();
            assert_eq!(p["lag"].as_u64().unwrap(), hwm - committed, "{p}");
            p["lag"].as_u64().unwrap()
        })
        .sum();
    if crate::harness::dense_offsets() {
        assert_eq!(lag, 10, "lag follows new publishes");
    } else {
        // Kafka: a transaction marker follows the records.
        assert!((10..=12).contains(&lag), "lag follows new publishes: {lag}");
    }
    let listed = json_body(app.get("/v1/groups").send().await.expect("list")).await;
    let names: Vec<&str> = listed["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "two"]);
}

async fn seek(app: &TestApp, group: &str, to: Value) -> Response {
    app.post_group(group, "seek", &json!({"topic": "t", "to": to}))
        .await
}

#[tokio::test]
async fn seek_moves_committed_offsets_and_members_follow() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    publish_numbers(&app, "t", 0, 10).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish_numbers(&app, "t", 10, 10).await;
    let hwms = app.high_watermarks("t").await;

    let response = seek(&app, "g", json!("latest")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        committed(&describe(&app, "g").await, "t"),
        [(0, Some(hwms[0])), (1, Some(hwms[1]))].into()
    );

    let response = seek(&app, "g", json!("earliest")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        committed(&describe(&app, "g").await, "t"),
        [(0, Some(0)), (1, Some(0))].into()
    );

    let response = seek(&app, "g", json!({"timestamp": between})).await;
    let moved = json_body(response).await;
    let mut older = 0;
    for moved in moved["offsets"].as_array().unwrap() {
        let (partition, offset) = (
            moved["partition"].as_u64().unwrap(),
            moved["offset"].as_u64().unwrap(),
        );
        let before = app
            .fetch_ok("t", partition as u32, "offset=0&limit=1000")
            .await;
        older += crate::harness::records(&before)
            .iter()
            .filter(|r| r["offset"].as_u64().unwrap() < offset)
            .count();
    }
    assert_eq!(
        older, 10,
        "the first ten records are older than the timestamp: {moved}"
    );

    let response = seek(
        &app,
        "g",
        json!({"offsets": [{"partition": 1, "offset": 1}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let offsets = committed(&describe(&app, "g").await, "t");
    assert_eq!(offsets[&1], Some(1));

    // A member reads from the committed offsets; a later seek applies after its next poll.
    let mut member = None;
    let first = poll(&app, "g", &mut member, poll_body("t", 1000)).await;
    let mut expected = 0;
    for (partition, from) in [(0u32, offsets[&0].unwrap()), (1, 1)] {
        let stored = app
            .fetch_ok("t", partition, &format!("offset={from}&limit=1000"))
            .await;
        expected += crate::harness::records(&stored).len();
    }
    assert_eq!(first.len(), expected);
    assert_eq!(seek(&app, "g", json!("earliest")).await.status(), 200);
    let again = poll(&app, "g", &mut member, poll_body("t", 1000)).await;
    assert_eq!(again.len(), 20, "after the seek, everything again");

    for bad in [
        json!("middle"),
        json!({"timestamp": "x"}),
        json!(5),
        json!({"offsets": [{"partition": 0}]}),
    ] {
        expect_error(seek(&app, "g", bad).await, 400, "invalid_body").await;
    }
    expect_error(
        seek(&app, "g", json!({"offsets": []})).await,
        400,
        "invalid_argument",
    )
    .await;
    let response = seek(
        &app,
        "g",
        json!({"offsets": [{"partition": 0, "offset": 999}]}),
    )
    .await;
    expect_error(response, 416, "offset_out_of_range").await;
    let response = seek(
        &app,
        "g",
        json!({"offsets": [{"partition": 7, "offset": 0}]}),
    )
    .await;
    expect_error(response, 404, "partition_not_found").await;
}

#[tokio::test]
async fn committed_offsets_survive_a_graceful_restart() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    publish_numbers(&app, "t", 0, 20).await;
    let mut member = None;
    let records = poll(&app, "g", &mut member, poll_body("t", 5)).await;
    commit(&app, "g", member.as_ref().unwrap(), &records).await;
    let mut before = committed(&describe(&app, "g").await, "t");
    before.retain(|_, offset| offset.is_some());
    assert_eq!(before.len(), 1, "one partition committed: {before:?}");
    let data = app.stop().await;
    let app = TestApp::spawn_in(data, &[]).await;
    let after = describe(&app, "g").await;
    assert_eq!(after["state"], "empty", "members do not survive a restart");
    assert_eq!(committed(&after, "t"), before);
    // A new member continues from there.
    let mut member = None;
    let next = poll(&app, "g", &mut member, poll_body("t", 100)).await;
    assert_eq!(next.len(), 15);
    assert!(
        next.iter()
            .all(|r| !records.iter().any(|old| old.1 == r.1 && old.2 == r.2))
    );
}

#[tokio::test]
async fn a_commit_acknowledged_just_before_kill_9_survives() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    let args = crate::process::open_server_args(&data, &["--fsync", "always"]);
    let client = reqwest::Client::new();
    let server = crate::process::Process::spawn(&args, "warn");
    let post = |path: &str, body: Value| client.post(server.url(path)).json(&body).send();
    assert_eq!(
        post("/v1/topics", json!({"name": "t", "partitions": 1}))
            .await
            .unwrap()
            .status(),
        201
    );
    let records: Vec<Value> = (0..10).map(|n| json!({"value": n})).collect();
    assert_eq!(
        post("/v1/topics/t/records", json!({"records": records}))
            .await
            .unwrap()
            .status(),
        200
    );
    let commit = json!({"offsets": [{"topic": "t", "partition": 0, "offset": 7}]});
    let response = post("/v1/groups/g/commit", commit).await.unwrap();
    assert_eq!(response.status(), 204);
    drop(server); // SIGKILL
    let server = crate::process::Process::spawn(&args, "warn");
    let described: Value = client
        .get(server.url("/v1/groups/g"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        described["partitions"][0]["committed_offset"], 7,
        "{described}"
    );
    let high_watermark = described["partitions"][0]["high_watermark"]
        .as_u64()
        .unwrap();
    assert!(high_watermark >= 10, "{described}");
    assert_eq!(described["partitions"][0]["lag"], high_watermark - 7);
}

/// An auto-commit is visible when the poll that makes it answers, and durable within a
/// second even with nothing else to commit (`--fsync always` syncs it lazily).
#[tokio::test]
async fn an_auto_commit_is_visible_at_once_and_survives_kill_9_a_second_later() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    let args = crate::process::open_server_args(&data, &["--fsync", "always"]);
    let client = reqwest::Client::new();
    let server = crate::process::Process::spawn(&args, "warn");
    let post = |path: &str, body: Value| client.post(server.url(path)).json(&body).send();
    let created = post("/v1/topics", json!({"name": "t", "partitions": 1}));
    assert_eq!(created.await.unwrap().status(), 201);
    let records: Vec<Value> = (0..10).map(|n| json!({"value": n})).collect();
    let published = post("/v1/topics/t/records", json!({"records": records}));
    assert_eq!(published.await.unwrap().status(), 200);
    let committed_offset =
        |described: &Value| described["partitions"][0]["committed_offset"].clone();
    let mut body =
        json!({"topics": ["t"], "auto_offset_reset": EARLIEST, "limit": 4, "auto_commit": true});
    let first: Value = post("/v1/groups/g/poll", body.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["records"].as_array().map(Vec::len),
        Some(4),
        "{first}"
    );
    body["member_id"] = first["member_id"].clone();
    let second = post("/v1/groups/g/poll", body).await.unwrap();
    assert_eq!(second.status(), 200);
    let described: Value = client
        .get(server.url("/v1/groups/g"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(committed_offset(&described), 4, "{described}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(server); // SIGKILL
    let server = crate::process::Process::spawn(&args, "warn");
    let described: Value = client
        .get(server.url("/v1/groups/g"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(committed_offset(&described), 4, "{described}");
}

#[tokio::test]
async fn deleting_a_topic_removes_its_committed_offsets() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    app.create_topic("u", 1).await;
    publish_numbers(&app, "t", 0, 3).await;
    publish_numbers(&app, "u", 0, 3).await;
    let body = json!({"offsets": [{"topic": "t", "partition": 0, "offset": 2},
                                  {"topic": "u", "partition": 0, "offset": 1}]});
    assert_eq!(app.post_group("g", "commit", &body).await.status(), 204);
    assert_eq!(app.delete_topic("t").await.status(), 204);
    let description = describe(&app, "g").await;
    assert!(committed(&description, "t").is_empty(), "{description}");
    assert_eq!(committed(&description, "u")[&0], Some(1));
    app.create_topic("t", 1).await;
    assert!(
        committed(&describe(&app, "g").await, "t").is_empty(),
        "not resurrected"
    );
}

#[tokio::test]
async fn bad_input_gets_the_error_body_never_a_500() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    publish_numbers(&app, "t", 0, 4).await;
    let cases = [
        ("poll", json!({"topics": ["nope"]}), 404, "topic_not_found"),
        ("poll", json!({"topics": []}), 400, "invalid_argument"),
        (
            "poll",
            json!({"topics": ["bad name"]}),
            400,
            "invalid_topic_name",
        ),
        (
            "poll",
            json!({"topics": ["t"], "member_id": "not an id"}),
            400,
            "invalid_member_id",
        ),
        (
            "poll",
            json!({"topics": ["t"], "member_id": "m-unknown"}),
            404,
            "member_not_found",
        ),
        (
            "poll",
            json!({"topics": ["t"], "limit": 0}),
            400,
            "invalid_body",
        ),
        (
            "poll",
            json!({"topics": ["t"], "wait_ms": 999_999_999}),
            400,
            "invalid_body",
        ),
        (
            "poll",
            json!({"topics": ["t"], "session_timeout_ms": 1}),
            400,
            "invalid_argument",
        ),
        (
            "poll",
            json!({"topics": ["t"], "auto_offset_reset": "middle"}),
            400,
            "invalid_body",
        ),
        ("poll", json!({"topic": "t"}), 400, "invalid_body"),
        (
            "commit",
            json!({"offsets": [{"topic": "t", "partition": 0, "offset": -1}]}),
            400,
            "invalid_body",
        ),
        (
            "commit",
            json!({"offsets": [{"topic": "t", "partition": 0, "offset": 5}]}),
            416,
            "offset_out_of_range",
        ),
        (
            "commit",
            json!({"offsets": [{"topic": "t", "partition": 9, "offset": 0}]}),
            404,
            "partition_not_found",
        ),
        (
            "commit",
            json!({"offsets": [{"topic": "nope", "partition": 0, "offset": 0}]}),
            404,
            "topic_not_found",
        ),
        ("commit", json!({"offsets": []}), 400, "invalid_argument"),
        (
            "commit",
            json!({"member_id": "m-x", "generation": 1, "offsets": [{"topic": "t", "partition": 0, "offset": 0}]}),
            404,
            "member_not_found",
        ),
        (
            "seek",
            json!({"topic": "nope", "to": "earliest"}),
            404,
            "topic_not_found",
        ),
    ];
    for (route, body, status, code) in cases {
        expect_error(app.post_group("g", route, &body).await, status, code).await;
    }
    for path in [
        "/v1/groups/bad%20name",
        "/v1/groups/a%2Fb",
        "/v1/groups/g/members/bad%20id",
    ] {
        let response = app
            .request(Method::DELETE, path)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{path}");
    }
    let response = app.get("/v1/groups/never-used").send().await.expect("send");
    expect_error(response, 404, "group_not_found").await;
}

#[tokio::test]
async fn every_group_route_checks_its_scopes_in_order() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    app.create_topic("secret", 1).await;
    let routes: Vec<(Method, &str, Value)> = vec![
        (Method::POST, "/v1/groups/g/poll", json!({"topics": ["t"]})),
        (
            Method::POST,
            "/v1/groups/g/commit",
            json!({"offsets": [{"topic": "t", "partition": 0, "offset": 0}]}),
        ),
        (
            Method::POST,
            "/v1/groups/g/seek",
            json!({"topic": "t", "to": "earliest"}),
        ),
        (Method::GET, "/v1/groups/g", json!(null)),
        (Method::DELETE, "/v1/groups/g/members/m-1", json!(null)),
        (Method::DELETE, "/v1/groups/g", json!(null)),
    ];
    let send = |method: Method, path: &str, body: &Value, bearer: Option<String>| {
        let mut request = app.anonymous(method, path);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if !body.is_null() {
            request = request.json(body);
        }
        request.send()
    };
    for (method, path, body) in &routes {
        let response = send(method.clone(), path, body, None).await.expect("send");
        expect_error(response, 401, "missing_token").await;
        // Without the group scope, even the topic scope does not help; an unknown group
        // is forbidden before it is found missing.
        for scopes in ["subscribe:t", "group:other subscribe:t", "publish:t"] {
            let response = send(method.clone(), path, body, Some(token("x", scopes)))
                .await
                .expect("send");
            expect_error(response, 403, "forbidden").await;
        }
    }
    // The group scope alone: inspecting works (404: no such group yet), reading a topic
    // without subscribe:T does not.
    let group_only = Some(token("x", "group:g"));
    for (method, path, body) in &routes[..3] {
        let response = send(method.clone(), path, body, group_only.clone())
            .await
            .expect("send");
        expect_error(response, 403, "forbidden").await;
    }
    let response = send(
        Method::GET,
        "/v1/groups/g",
        &json!(null),
        group_only.clone(),
    )
    .await
    .unwrap();
    expect_error(response, 404, "group_not_found").await;
    // Both scopes: allowed; a topic outside the subscribe scope is still refused.
    let both = Some(token("x", "group:g* subscribe:t"));
    let response = send(
        Method::POST,
        "/v1/groups/g/poll",
        &json!({"topics": ["t"]}),
        both.clone(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let response = send(
        Method::POST,
        "/v1/groups/g/poll",
        &json!({"topics": ["t", "secret"]}),
        both.clone(),
    )
    .await
    .unwrap();
    expect_error(response, 403, "forbidden").await;
    let response = send(
        Method::POST,
        "/v1/groups/g/poll",
        &json!({"topics": ["nope"]}),
        Some(token("x", "group:g subscribe:*")),
    )
    .await
    .unwrap();
    expect_error(response, 404, "topic_not_found").await;
    // Listings show only the groups a token may see.
    let response = app
        .post_group("other", "poll", &json!({"topics": ["t"]}))
        .await;
    assert_eq!(response.status(), 200);
    let listed = json_body(
        send(Method::GET, "/v1/groups", &json!(null), both)
            .await
            .unwrap(),
    )
    .await;
    let names: Vec<&str> = listed["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["g"]);
    let listed = json_body(app.get("/v1/groups").send().await.unwrap()).await;
    assert_eq!(
        listed["groups"].as_array().unwrap().len(),
        2,
        "admin sees all: {listed}"
    );
}
