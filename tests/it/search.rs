//! Finding records (SPEC "Fetch", "Finding records"): `key=` and `contains=` on fetch,
//! a scan bounded by `--max-scan-records` per call, continued from `next_offset`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::harness::{TestApp, dense_offsets, expect_error, offsets_of, records};

const SCAN: u64 = 100;

/// 250 records in one partition; record `i` has key `k{i % 10}`, and every 37th one's
/// value holds the word "needle". Returns each record's offset.
async fn haystack(app: &TestApp) -> Vec<u64> {
    app.create_topic("hay", 1).await;
    let mut offsets = Vec::new();
    for chunk in (0..250u64).collect::<Vec<_>>().chunks(50) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let word = if i % 37 == 0 {
                    "a needle here"
                } else {
                    "just hay"
                };
                json!({"key": format!("k{}", i % 10), "value": {"n": i, "text": word}})
            })
            .collect();
        let published = offsets_of(app.publish("hay", json!(batch)).await).await;
        offsets.extend(published.into_iter().map(|(_, offset)| offset));
    }
    offsets
}

/// Calls the search again and again from `next_offset` until the high watermark; returns
/// the `n` of every record found and how many calls it took. Checks each call's window.
async fn search_all(app: &TestApp, filter: &str, limit: u64) -> (Vec<u64>, usize) {
    let mut found = Vec::new();
    let mut offset = 0;
    let mut calls = 0;
    loop {
        let page = app
            .fetch_ok("hay", 0, &format!("offset={offset}&limit={limit}&{filter}"))
            .await;
        calls += 1;
        let next = page["next_offset"].as_u64().expect("next_offset");
        assert!(next > offset, "a search call moves on: {page}");
        if dense_offsets() {
            assert!(
                next - offset <= SCAN,
                "one call scans at most {SCAN}: {offset} → {next}"
            );
        }
        let got = records(&page);
        assert!(got.len() as u64 <= limit);
        for record in got {
            let at = record["offset"].as_u64().unwrap();
            assert!(at >= offset && at < next, "{at} within [{offset}, {next})");
            found.push(record["value"]["n"].as_u64().unwrap());
        }
        if next >= page["high_watermark"].as_u64().unwrap() {
            return (found, calls);
        }
        offset = next;
    }
}

#[tokio::test]
async fn key_and_substring_searches_span_scan_windows_and_find_every_match() {
    let app = TestApp::spawn_with(&["--max-scan-records", &SCAN.to_string()]).await;
    let offsets = haystack(&app).await;
    assert_eq!(offsets.len(), 250);

    let (by_key, calls) = search_all(&app, "key=k3", 1000).await;
    let expected: Vec<u64> = (0..250).filter(|i| i % 10 == 3).collect();
    assert_eq!(by_key, expected);
    assert!(
        calls >= 3,
        "250 records in windows of {SCAN}: {calls} calls"
    );

    let (by_text, _) = search_all(&app, "contains=needle", 1000).await;
    assert_eq!(by_text, vec![0, 37, 74, 111, 148, 185, 222]);

    // Both: key k4 and the needle (of 0, 37, 74 … only 74 ends in 4).
    let (both, _) = search_all(&app, "key=k4&contains=needle", 1000).await;
    assert_eq!(both, vec![74]);

    // JSON text, not just words: `"n":111` is in exactly one value.
    let (exact, _) = search_all(&app, "contains=%22n%22%3A111", 1000).await;
    assert_eq!(exact, vec![111]);

    // `limit` stops a call at the match that did not fit: the next call returns it.
    let (paged, calls) = search_all(&app, "key=k7", 2).await;
    assert_eq!(paged, (0..250).filter(|i| i % 10 == 7).collect::<Vec<_>>());
    assert!(calls >= 13, "25 matches, two per call: {calls} calls");

    // Nothing matches: every window is read once, none returns a record.
    let (none, calls) = search_all(&app, "key=nobody", 1000).await;
    assert!(none.is_empty());
    assert!(calls >= 3);
    let distinct: BTreeSet<u64> = by_key.iter().copied().collect();
    assert_eq!(distinct.len(), by_key.len(), "no record found twice");
}

#[tokio::test]
async fn bad_searches_are_refused_with_the_reason() {
    let app = TestApp::spawn().await;
    app.create_topic("hay", 1).await;
    let error = expect_error(app.fetch("hay", 0, "contains=").await, 400, "invalid_query").await;
    assert!(error["message"].as_str().unwrap().contains("contains"));
    let long = "x".repeat(4097);
    expect_error(
        app.fetch("hay", 0, &format!("key={long}")).await,
        400,
        "invalid_query",
    )
    .await;
    expect_error(
        app.fetch("hay", 0, "key=a&offset=5").await,
        416,
        "offset_out_of_range",
    )
    .await;
    expect_error(
        app.fetch("hay", 9, "key=a").await,
        404,
        "partition_not_found",
    )
    .await;
}

/// A search with `wait_ms` at the end of the log waits for a matching record, skipping
/// ones that do not match, like a long poll.
#[tokio::test]
async fn a_search_with_wait_ms_waits_for_a_match() {
    let app = TestApp::spawn().await;
    app.create_topic("hay", 1).await;
    let (page, _) = tokio::join!(
        app.fetch_ok("hay", 0, "offset=0&key=late&wait_ms=10000"),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            app.publish_ok(
                "hay",
                json!([{"key": "other", "value": 1}, {"key": "late", "value": 2}]),
            )
            .await
        },
    );
    let found = records(&page);
    assert_eq!(found.len(), 1, "{page}");
    assert_eq!(found[0]["key"], "late");
    // Nothing matching arrives: the call returns empty once the wait is up.
    let next = page["next_offset"].as_u64().unwrap();
    let started = std::time::Instant::now();
    let empty = app
        .fetch_ok("hay", 0, &format!("offset={next}&key=late&wait_ms=300"))
        .await;
    assert!(records(&empty).is_empty());
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
}
