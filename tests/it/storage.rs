//! The data directory under trouble: file modes, an empty database file, a file damaged in
//! the middle, and `tidegate check`, which reports damage without changing a byte.

use crate::harness::redb_only;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::harness::TestApp;
use crate::process::{Process, command, open_server_args};

const DATABASE: &str = "tidegate.redb";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn digest(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("read database")).to_vec()
}

/// `tidegate check --data-dir DIR`: exit code and output.
fn check(data_dir: &Path) -> (i32, String) {
    let output = command(&["check", "--data-dir", data_dir.to_str().expect("utf-8")])
        .output()
        .expect("run tidegate check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn the_data_directory_and_its_files_are_private() {
    redb_only!("the embedded store's database file and `tidegate check`");
    let dir = TempDir::new().expect("temp dir");
    let data_dir = dir.path().join("nested").join("data");
    let data = data_dir.to_str().expect("utf-8");
    // No key flags: the first start generates the signing secret too.
    let mut server = Process::spawn(&["--listen", "127.0.0.1:0", "--data-dir", data], "warn");
    server.stop();
    assert_eq!(mode(&data_dir), 0o700, "data directory");
    assert_eq!(mode(&data_dir.join(DATABASE)), 0o600, "database");
    assert_eq!(mode(&data_dir.join("jwt-secret")), 0o600, "secret");
    let leftovers: Vec<_> = std::fs::read_dir(&data_dir)
        .expect("list")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "only the database and the secret: {leftovers:?}"
    );
}

#[test]
fn an_empty_database_file_is_refused_not_replaced() {
    redb_only!("the embedded store's database file and `tidegate check`");
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join(DATABASE);
    std::fs::write(&path, b"").expect("create empty file");
    let data = dir.path().to_str().expect("utf-8");
    let output = command(&open_server_args(data, &[]))
        .output()
        .expect("run tidegate");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert!(!output.status.success(), "started on an empty file");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("empty") && stderr.contains(DATABASE),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&path).expect("still there").len(), 0);
    let (code, report) = check(dir.path());
    assert_eq!(code, 1, "{report}");
}

/// A database with a few thousand records over four partitions, cleanly shut down.
async fn populated_database() -> TempDir {
    let app = TestApp::spawn().await;
    app.create_topic("t", 4).await;
    for round in 0..150 {
        let records: Vec<_> = (0..20)
            .map(|i| json!({"key": format!("k{i}"), "value": {"round": round, "pad": "x".repeat(200)}}))
            .collect();
        app.publish_ok("t", json!(records)).await;
    }
    app.stop().await
}

#[tokio::test]
async fn check_passes_an_intact_database_and_leaves_it_unchanged() {
    redb_only!("the embedded store's database file and `tidegate check`");
    let dir = populated_database().await;
    let path = dir.path().join(DATABASE);
    let before = digest(&path);
    let (code, report) = check(dir.path());
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("3000 records") && report.contains("intact"),
        "{report}"
    );
    assert_eq!(digest(&path), before, "check wrote to the file");

    // A running server holds the file: check refuses instead of reading a moving target.
    let data = dir.path().to_str().expect("utf-8");
    let mut server = Process::spawn(&open_server_args(data, &[]), "warn");
    let (code, report) = check(dir.path());
    assert_ne!(code, 0, "{report}");
    assert!(report.contains("in use"), "{report}");
    server.stop();
}

/// What a client must never read in a body, whatever broke.
fn assert_nothing_internal(body: &str, context: &str) {
    for leak in ["panick", "unreachable", "redb", "corrupt", ".rs:"] {
        assert!(!body.contains(leak), "{context}: `{leak}` in {body}");
    }
}

#[tokio::test]
async fn a_damaged_database_is_refused_or_served_read_only_never_with_panic_text() {
    redb_only!("the embedded store's database file and `tidegate check`");
    let dir = populated_database().await;
    let path = dir.path().join(DATABASE);
    let (code, report) = check(dir.path());
    assert_eq!(code, 0, "{report}");
    // 64 KiB of noise in the middle of the file, where the record batches are.
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() / 2 / 4096 * 4096;
    let mut noise = 0x9E37_79B9_7F4A_7C15u64;
    for byte in &mut bytes[middle..middle + 65536] {
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        *byte = noise as u8;
    }
    std::fs::write(&path, &bytes).expect("damage");

    let damaged = digest(&path);
    let (code, report) = check(dir.path());
    assert_eq!(code, 1, "check must report the damage:\n{report}");
    assert!(report.contains("DAMAGED"), "{report}");
    assert_eq!(digest(&path), damaged, "check changed the damaged file");

    let data = dir.path().to_str().expect("utf-8");
    let first = serve_or_refuse(data).await;
    if first {
        // It served once: a restart on the same file must behave no worse.
        assert!(
            serve_or_refuse(data).await,
            "the file stopped opening after a clean stop"
        );
    }
}

/// Starts the binary on `data`. Either it refuses with one line (false), or it serves:
/// then every partition is read and a few records published; any failure must show in
/// `/readyz` as 503, and no body may carry internal text (true).
async fn serve_or_refuse(data: &str) -> bool {
    let mut child = command(&open_server_args(data, &[]))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tidegate");
    let stdout = child.stdout.take().expect("stdout");
    let first_line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        line
    })
    .await
    .expect("read stdout");
    let Some(url) = first_line.trim().strip_prefix("tidegate listening on ") else {
        let output = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        assert!(!output.status.success());
        assert_eq!(stderr.lines().count(), 1, "refusal in one line:\n{stderr}");
        assert!(stderr.contains("tidegate check"), "{stderr}");
        return false;
    };
    let url = url.to_owned();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut failures = 0;
    for partition in 0..4 {
        let response = client
            .get(format!(
                "{url}/v1/topics/t/partitions/{partition}/records?offset=0&limit=10000&max_bytes=8388608"
            ))
            .send()
            .await
            .expect("fetch");
        let status = response.status().as_u16();
        let id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.expect("body");
        assert_nothing_internal(&body, &format!("fetch {partition}"));
        if status >= 500 {
            failures += 1;
            assert_eq!(status, 500, "{body}");
            let id = id.expect("request id header");
            assert!(body.contains(&id), "the 500 names its request id: {body}");
            assert!(body.contains("internal error"), "{body}");
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    for n in 0..3 {
        let response = client
            .post(format!("{url}/v1/topics/t/records"))
            .json(&json!({"records": [{"value": n, "partition": n}]}))
            .send()
            .await
            .expect("publish");
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        assert_nothing_internal(&body, "publish");
        if status != 200 {
            failures += 1;
            assert!(matches!(status, 500 | 503), "publish {status}: {body}");
        }
    }
    let ready = client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .expect("readyz");
    let ready_status = ready.status().as_u16();
    let body = ready.text().await.expect("body");
    assert_nothing_internal(&body, "readyz");
    if failures > 0 {
        assert_eq!(
            ready_status, 503,
            "failures happened but /readyz says {body}"
        );
        assert!(body.contains("damaged"), "{body}");
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert!(output.status.success(), "stopped with {}", output.status);
    true
}

/// A record batch as format version 1 wrote it (no newest timestamp in the header): one
/// record per value, all at `timestamp`, null keys, no headers.
fn version_1_batch(timestamp: i64, values: &[&str]) -> Vec<u8> {
    let mut batch = vec![1];
    batch.extend_from_slice(&(values.len() as u32).to_le_bytes());
    batch.extend_from_slice(&timestamp.to_le_bytes());
    for value in values {
        // Timestamp delta 0, null key, the value's length (under 128: one varint byte),
        // the value, no headers.
        batch.extend_from_slice(&[0, 0, value.len() as u8]);
        batch.extend_from_slice(value.as_bytes());
        batch.push(0);
    }
    batch
}

/// A database as the server wrote it before retention: version 1 batches and no
/// `partition_bytes` table.
fn database_before_retention(dir: &Path) -> u64 {
    use redb::TableDefinition;
    let db = redb::Database::create(dir.join(DATABASE)).expect("create database");
    let txn = db.begin_write().expect("write");
    let batches = [
        version_1_batch(1_700_000_000_000, &[r#"{"n":0}"#, r#"{"n":1}"#]),
        version_1_batch(1_700_000_000_500, &[r#"{"n":2}"#]),
    ];
    {
        let mut topics = txn
            .open_table(TableDefinition::<&str, &[u8]>::new("topics"))
            .expect("topics");
        let config = json!({"partitions": 1, "retention_ms": -1, "retention_bytes": -1});
        topics
            .insert("old", config.to_string().as_bytes())
            .expect("topic");
        let mut starts = txn
            .open_table(TableDefinition::<(&str, u32), u64>::new("partitions"))
            .expect("partitions");
        starts.insert(("old", 0), 0).expect("start");
        let mut table = txn
            .open_table(TableDefinition::<(&str, u32, u64), &[u8]>::new("batches"))
            .expect("batches");
        table
            .insert(("old", 0, 0), batches[0].as_slice())
            .expect("batch");
        table
            .insert(("old", 0, 2), batches[1].as_slice())
            .expect("batch");
        txn.open_table(TableDefinition::<(&str, &str), &[u8]>::new("idempotency"))
            .expect("idempotency");
        txn.open_table(TableDefinition::<(i64, &str, &str), ()>::new(
            "idempotency_expiry",
        ))
        .expect("idempotency expiry");
        txn.open_table(TableDefinition::<(&str, &str, u32), (u64, i64)>::new(
            "offsets",
        ))
        .expect("offsets");
    }
    txn.commit().expect("commit");
    batches.iter().map(|b| b.len() as u64).sum()
}

#[tokio::test]
async fn a_database_from_before_retention_is_checked_read_and_trimmed() {
    redb_only!("the embedded store's database file and `tidegate check`");
    let dir = TempDir::new().expect("temp dir");
    let size = database_before_retention(dir.path());
    let (code, report) = check(dir.path());
    assert_eq!(code, 0, "{report}");

    let app = TestApp::spawn_in(dir, &["--retention-check-interval-ms", "50"]).await;
    let details = app.describe("old").await;
    assert_eq!(
        details["partition_offsets"][0]["size_bytes"], size,
        "{details}"
    );
    let fetched = app.fetch_ok("old", 0, "offset=0").await;
    let values: Vec<_> = crate::harness::records(&fetched)
        .iter()
        .map(|r| r["value"]["n"].clone())
        .collect();
    assert_eq!(values, vec![json!(0), json!(1), json!(2)]);
    assert_eq!(
        app.publish_ok("old", json!([{"value": {"n": 3}}])).await,
        vec![(0, 3)]
    );

    // Retention weighs the old batches too: keeping 1 byte leaves only the newest batch.
    let patched = app.patch_topic("old", json!({"retention_bytes": 1})).await;
    assert_eq!(patched.status(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app.describe("old").await["partition_offsets"][0]["log_start_offset"] != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old batches stayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = app.stop().await;
    let (code, report) = check(dir.path());
    assert_eq!(code, 0, "sizes recorded and consistent: {report}");
}
