//! The crash test: the real binary is killed with SIGKILL while clients publish, then
//! restarted on the same data directory, three times over. Every acknowledged record
//! must survive with its content at its offset, offsets stay dense, and no record
//! (acknowledged or in flight) is ever stored twice.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOPIC: &str = "crashy";
const PARTITIONS: u32 = 4;
const CLIENTS: usize = 8;
const CYCLES: usize = 3;
/// Bounds every wait so a broken server fails the test instead of stalling the suite.
const DEADLINE: Duration = Duration::from_secs(60);

/// The release binary, running on a data directory; SIGKILLed when dropped.
struct Server {
    child: Child,
    base_url: String,
    /// The last lines the server wrote to stderr, for failure messages.
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Whether the server said it had to rebuild the log's allocator state by reading the
    /// whole file, which would make restart time grow with the log.
    full_repair: Arc<AtomicBool>,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, "always")
    }

    fn start_with(data_dir: &Path, fsync: &str) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidegate"));
        command
            .args([
                "--auth",
                "none",
                "--listen",
                "127.0.0.1:0",
                "--fsync",
                fsync,
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TIDEGATE_") {
                command.env_remove(name);
            }
        }
        let mut child = command.spawn().expect("start the tidegate binary");

        // Both pipes are drained for the server's whole life so it never blocks writing.
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr.clone();
        let full_repair = Arc::new(AtomicBool::new(false));
        let repaired = full_repair.clone();
        let err_pipe = child.stderr.take().expect("stderr pipe");
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                if line.contains("full repair") {
                    repaired.store(true, Ordering::SeqCst);
                }
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == 40 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let (found, address) = mpsc::channel();
        let out_pipe = child.stdout.take().expect("stdout pipe");
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("tidegate listening on ") {
                    let _ = found.send(url.to_owned());
                }
            }
        });
        let mut server = Server {
            child,
            base_url: String::new(),
            stderr,
            full_repair,
        };
        match address.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => server.base_url = url,
            Err(_) => panic!(
                "tidegate did not print its address; stderr:\n{}",
                server.stderr_tail()
            ),
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Checks the open after a kill loaded redb's recorded allocator state instead of
    /// reading the whole file (restart time does not grow with the log: SPEC, Storage).
    /// The open logs before the address is printed, but its line may still be in the pipe.
    fn assert_no_full_repair(&self) {
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !self.full_repair.load(Ordering::SeqCst),
            "the restart repaired the whole log; stderr:\n{}",
            self.stderr_tail()
        );
    }

    /// SIGKILL, then checks the process died of it (and not of something else first).
    fn kill9(&mut self) {
        self.child.kill().expect("send SIGKILL");
        let status = self.child.wait().expect("reap tidegate");
        assert_eq!(
            status.signal(),
            Some(9),
            "tidegate exited on its own ({status}) before the kill; stderr:\n{}",
            self.stderr_tail()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One record as a client sent it; `id` is unique across the whole test.
#[derive(Clone, Debug, PartialEq)]
struct Sent {
    id: String,
    key: Option<String>,
    value: Value,
    headers: Value,
}

impl Sent {
    fn to_json(&self, partition: Option<u32>) -> Value {
        let mut record = json!({"value": self.value, "headers": self.headers});
        if let Some(key) = &self.key {
            record["key"] = json!(key);
        }
        if let Some(partition) = partition {
            record["partition"] = json!(partition);
        }
        record
    }
}

/// One publish request, kept so it can be checked and retried.
#[derive(Clone, Debug)]
struct Request {
    /// Sent as `Idempotency-Key`; unique across the test.
    key: String,
    body: Value,
    /// The partition the request named, if any.
    partition: Option<u32>,
    records: Vec<Sent>,
}

/// Everything the clients sent, and what the server acknowledged.
#[derive(Default)]
struct Ledger {
    /// Every request ever sent, acknowledged or not.
    attempted: Vec<Request>,
    /// Acknowledged records: id → (partition, offset, record).
    acked: HashMap<String, (u32, u64, Sent)>,
    /// What went wrong before the kill (must stay empty).
    unexpected: Vec<String>,
}

impl Ledger {
    /// Records an acknowledgement, noting anything the server got wrong in it.
    fn ack(&mut self, request: &Request, text: &str) {
        let positions: Option<Vec<(u32, u64)>> =
            serde_json::from_str::<Value>(text).ok().and_then(|body| {
                body["offsets"]
                    .as_array()?
                    .iter()
                    .map(|o| Some((o["partition"].as_u64()? as u32, o["offset"].as_u64()?)))
                    .collect()
            });
        let Some(positions) = positions.filter(|p| p.len() == request.records.len()) else {
            self.unexpected.push(format!(
                "{}: ack does not match the request: {text}",
                request.key
            ));
            return;
        };
        for ((partition, offset), record) in positions.into_iter().zip(&request.records) {
            if request.partition.is_some_and(|p| p != partition) {
                self.unexpected.push(format!(
                    "{}: record for partition {:?} acked in {partition}",
                    request.key, request.partition
                ));
            }
            self.acked
                .insert(record.id.clone(), (partition, offset, record.clone()));
        }
    }

    fn is_acked(&self, request: &Request) -> bool {
        self.acked.contains_key(&request.records[0].id)
    }
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

/// Request `n` of client `name`: 1–5 records, keyless, keyed or with an explicit
/// partition, each value carrying the record's unique id.
fn request(name: &str, n: usize) -> Request {
    let records: Vec<Sent> = (0..1 + n % 5)
        .map(|i| {
            let id = format!("{name}-n{n}-r{i}");
            Sent {
                key: (n % 3 == 1).then(|| format!("key-{}", (n + i) % 17)),
                value: json!({"id": id, "n": n, "i": i, "data": "d".repeat((n * 7 + i) % 200)}),
                headers: if i % 2 == 0 {
                    json!({"id": id})
                } else {
                    json!({})
                },
                id,
            }
        })
        .collect();
    let partition = (n % 3 == 2).then_some((n as u32) % PARTITIONS);
    let body = json!({"records": records.iter().map(|r| r.to_json(partition)).collect::<Vec<_>>()});
    Request {
        key: format!("{name}-n{n}"),
        body,
        partition,
        records,
    }
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    request: &Request,
) -> Result<(u16, bool, String), String> {
    let response = http
        .post(url)
        .header("Idempotency-Key", &request.key)
        .json(&request.body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("Idempotency-Replayed")
        .is_some_and(|v| v == "true");
    let text = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, replayed, text))
}

/// Publishes small batches in a loop until the server goes away.
async fn client(
    http: reqwest::Client,
    url: String,
    name: String,
    ledger: Arc<Mutex<Ledger>>,
    acked_records: Arc<AtomicUsize>,
    killed: Arc<AtomicBool>,
) {
    for n in 0..1_000_000usize {
        let request = request(&name, n);
        lock(&ledger).attempted.push(request.clone());
        let outcome = send(&http, &url, &request).await;
        // Read after the answer: a failure seen after the kill is the kill's doing.
        let was_killed = killed.load(Ordering::SeqCst);
        let mut ledger = lock(&ledger);
        match outcome {
            Ok((200, false, text)) => ledger.ack(&request, &text),
            // The connection died with the server: this request is in flight, unknown.
            Err(_) if was_killed => return,
            Ok((status, replayed, text)) => {
                ledger.unexpected.push(format!(
                    "{name}: publish answered {status} (replayed: {replayed}): {text}"
                ));
                return;
            }
            Err(err) => {
                ledger
                    .unexpected
                    .push(format!("{name}: request failed before the kill: {err}"));
                return;
            }
        }
        drop(ledger);
        acked_records.fetch_add(request.records.len(), Ordering::SeqCst);
    }
}

/// Retries every request whose answer the kill swallowed, with its Idempotency-Key, as a
/// careful client would: one that was committed must be replayed with the offsets its
/// records have (`known`, just verified), one that was not must be appended now.
/// Returns how many requests were retried.
async fn retry_in_flight(
    http: &reqwest::Client,
    server: &Server,
    ledger: &Mutex<Ledger>,
    known: &HashMap<String, (u32, u64)>,
) -> usize {
    let in_flight: Vec<Request> = {
        let ledger = lock(ledger);
        ledger
            .attempted
            .iter()
            .filter(|r| !ledger.is_acked(r))
            .cloned()
            .collect()
    };
    let url = server.url(&format!("/v1/topics/{TOPIC}/records"));
    for request in &in_flight {
        let (status, replayed, text) = send(http, &url, request)
            .await
            .unwrap_or_else(|err| panic!("retry of {} failed: {err}", request.key));
        assert_eq!(status, 200, "retry of {}: {text}", request.key);
        let committed: Option<Vec<(u32, u64)>> = request
            .records
            .iter()
            .map(|r| known.get(&r.id).copied())
            .collect();
        let body: Value = serde_json::from_str(&text).expect("retry answer");
        match committed {
            Some(positions) => {
                assert!(
                    replayed,
                    "retry of committed {} appended again: {text}",
                    request.key
                );
                let expected: Vec<Value> = positions
                    .iter()
                    .map(|(p, o)| json!({"partition": p, "offset": o}))
                    .collect();
                assert_eq!(
                    body["offsets"],
                    json!(expected),
                    "replay of {}",
                    request.key
                );
            }
            None => assert!(
                !replayed,
                "retry of lost {} claims a replay: {text}",
                request.key
            ),
        }
        let mut ledger = lock(ledger);
        ledger.ack(request, &text);
        assert!(ledger.unexpected.is_empty(), "{:?}", ledger.unexpected);
    }
    in_flight.len()
}

fn assert_no_surprises(ledger: &Mutex<Ledger>) {
    let unexpected = &lock(ledger).unexpected;
    assert!(unexpected.is_empty(), "before the kill: {unexpected:#?}");
}

/// Reads the whole topic and checks it against the ledger and against what earlier
/// restarts found committed (`known`, updated here). Returns the total record count.
async fn verify(
    http: &reqwest::Client,
    server: &Server,
    ledger: &Mutex<Ledger>,
    known: &mut HashMap<String, (u32, u64)>,
) -> usize {
    let response = http
        .get(server.url(&format!("/v1/topics/{TOPIC}")))
        .send()
        .await
        .expect("describe");
    assert_eq!(response.status(), 200, "topic missing after restart");
    let description: Value = response.json().await.expect("describe body");
    assert_eq!(description["partitions"], PARTITIONS);

    // id → (partition, offset, stored record)
    let mut stored: HashMap<String, (u32, u64, Value)> = HashMap::new();
    for partition in 0..PARTITIONS {
        let bounds = &description["partition_offsets"][partition as usize];
        assert_eq!(
            bounds["log_start_offset"], 0,
            "partition {partition}: {description}"
        );
        let high_watermark = bounds["high_watermark"].as_u64().expect("high_watermark");
        let mut next = 0u64;
        while next < high_watermark {
            let url = server.url(&format!(
                "/v1/topics/{TOPIC}/partitions/{partition}/records?offset={next}&limit=1000"
            ));
            let response = http.get(url).send().await.expect("fetch");
            assert_eq!(response.status(), 200, "fetch {partition}@{next}");
            let body: Value = response.json().await.expect("fetch body");
            let page = body["records"].as_array().expect("records");
            assert!(
                !page.is_empty(),
                "no records below the high watermark at {partition}@{next}"
            );
            for record in page {
                assert_eq!(record["offset"], next, "gap in partition {partition}");
                let id = record["value"]["id"]
                    .as_str()
                    .expect("record id")
                    .to_owned();
                if let Some((p, o, _)) =
                    stored.insert(id.clone(), (partition, next, record.clone()))
                {
                    panic!("record {id} stored twice: at {p}/{o} and at {partition}/{next}");
                }
                next += 1;
            }
        }
    }

    let ledger = lock(ledger);
    let attempted: HashMap<&str, &Sent> = ledger
        .attempted
        .iter()
        .flat_map(|request| &request.records)
        .map(|sent| (sent.id.as_str(), sent))
        .collect();
    for (id, (partition, offset, record)) in &stored {
        let sent = attempted
            .get(id.as_str())
            .unwrap_or_else(|| panic!("record {id} at {partition}/{offset} was never sent"));
        assert_eq!(record["value"], sent.value, "value of {id}");
        assert_eq!(record["key"], json!(sent.key), "key of {id}");
        assert_eq!(record["headers"], sent.headers, "headers of {id}");
    }
    for (id, (partition, offset, _)) in &ledger.acked {
        let found = stored.get(id).map(|(p, o, _)| (*p, *o));
        assert_eq!(
            found,
            Some((*partition, *offset)),
            "acknowledged record {id} lost or moved"
        );
    }
    for (id, position) in known.iter() {
        let found = stored.get(id).map(|(p, o, _)| (*p, *o));
        assert_eq!(
            found,
            Some(*position),
            "record {id} seen after an earlier restart is gone"
        );
    }
    // A request commits whole or not at all, with its records contiguous per partition.
    for request in &ledger.attempted {
        let present: Vec<(u32, u64)> = request
            .records
            .iter()
            .filter_map(|sent| stored.get(&sent.id).map(|(p, o, _)| (*p, *o)))
            .collect();
        assert!(
            present.is_empty() || present.len() == request.records.len(),
            "request {} partly committed: {present:?}",
            request.key
        );
        let mut last: HashMap<u32, u64> = HashMap::new();
        for (partition, offset) in present {
            if let Some(before) = last.insert(partition, offset) {
                assert_eq!(offset, before + 1, "request {} not contiguous", request.key);
            }
        }
    }
    known.clear();
    known.extend(stored.iter().map(|(id, (p, o, _))| (id.clone(), (*p, *o))));
    stored.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_publishing_loses_no_acknowledged_record() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // Records found committed by the last verification: id → (partition, offset).
    let mut known = HashMap::new();
    let mut retried = 0;

    let mut server = Server::start(data_dir.path());
    let response = http
        .post(server.url("/v1/topics"))
        .json(&json!({"name": TOPIC, "partitions": PARTITIONS}))
        .send()
        .await
        .expect("create topic");
    assert_eq!(response.status(), 201);

    let mut total_target = 0;
    for cycle in 0..CYCLES {
        if cycle > 0 {
            server = Server::start(data_dir.path());
            server.assert_no_full_repair();
            verify(&http, &server, &ledger, &mut known).await;
            retried += retry_in_flight(&http, &server, &ledger, &known).await;
        }
        let acked_records = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(client(
                    http.clone(),
                    server.url(&format!("/v1/topics/{TOPIC}/records")),
                    format!("c{cycle}w{c}"),
                    ledger.clone(),
                    acked_records.clone(),
                    killed.clone(),
                ))
            })
            .collect();

        // Kill at a different point each cycle, hundreds of acks in.
        let target = 300 + 250 * cycle;
        total_target += target;
        let started = Instant::now();
        while acked_records.load(Ordering::SeqCst) < target {
            assert_no_surprises(&ledger);
            assert!(
                started.elapsed() < DEADLINE,
                "only {} records acknowledged in {DEADLINE:?}; stderr:\n{}",
                acked_records.load(Ordering::SeqCst),
                server.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        killed.store(true, Ordering::SeqCst);
        server.kill9();

        for handle in clients {
            match tokio::time::timeout(DEADLINE, handle).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Ok(Err(err)) => panic!("client task failed: {err}"),
                Err(_) => panic!("a client still runs {DEADLINE:?} after the kill"),
            }
        }
        assert_no_surprises(&ledger);
    }

    let server = Server::start(data_dir.path());
    verify(&http, &server, &ledger, &mut known).await;
    retried += retry_in_flight(&http, &server, &ledger, &known).await;
    // The retries themselves must have landed exactly once.
    let found = verify(&http, &server, &ledger, &mut known).await;
    let ledger = lock(&ledger);
    assert_eq!(
        found,
        ledger.acked.len(),
        "stored records vs acknowledged (after retries)"
    );
    assert!(
        ledger.acked.len() >= total_target,
        "only {} records acknowledged",
        ledger.acked.len()
    );
    assert!(
        retried <= CYCLES * CLIENTS,
        "{retried} requests in flight at {CYCLES} kills"
    );
}

/// `--fsync never` syncs every megabyte of records or once a second, behind the writer:
/// after a kill -9 the log is a prefix of what was acknowledged, whole requests only, and
/// holds at least everything acknowledged before the last idle second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_fsync_never_keeps_a_whole_prefix_with_everything_synced() {
    const BATCHES: usize = 40;
    const RECORDS: usize = 100;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    let mut server = Server::start_with(data_dir.path(), "never");
    let response = http
        .post(server.url("/v1/topics"))
        .json(&json!({"name": TOPIC, "partitions": 1}))
        .send()
        .await
        .expect("create topic");
    assert_eq!(response.status(), 201);
    // 1 KiB values: 4 MiB in all, so syncs start on the size as well as on time.
    let padding = "x".repeat(1000);
    let publish = |batch: usize| {
        let records: Vec<Value> = (0..RECORDS)
            .map(|i| json!({"value": {"n": batch * RECORDS + i, "pad": padding}}))
            .collect();
        http.post(server.url(&format!("/v1/topics/{TOPIC}/records")))
            .json(&json!({"records": records}))
            .send()
    };
    let mut acked = 0;
    for batch in 0..BATCHES {
        let response = publish(batch).await.expect("publish");
        assert_eq!(response.status(), 200, "batch {batch}");
        acked += RECORDS;
    }
    // An idle second makes everything so far durable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let synced = acked;
    for batch in BATCHES..BATCHES + 5 {
        let response = publish(batch).await.expect("publish");
        assert_eq!(response.status(), 200, "batch {batch}");
        acked += RECORDS;
    }
    server.kill9();

    let server = Server::start_with(data_dir.path(), "never");
    server.assert_no_full_repair();
    let mut next = 0u64;
    loop {
        let url = server.url(&format!(
            "/v1/topics/{TOPIC}/partitions/0/records?offset={next}&limit=1000"
        ));
        let body: Value = http
            .get(url)
            .send()
            .await
            .expect("fetch")
            .json()
            .await
            .expect("fetch body");
        let page = body["records"].as_array().expect("records");
        if page.is_empty() {
            break;
        }
        for record in page {
            assert_eq!(record["offset"], next, "offsets are dense");
            assert_eq!(record["value"]["n"], next, "records in the order sent");
            assert_eq!(record["value"]["pad"], padding.as_str(), "value of {next}");
            next += 1;
        }
    }
    let stored = next as usize;
    assert!(
        stored.is_multiple_of(RECORDS),
        "{stored} records: a request was stored in part"
    );
    assert!(
        (synced..=acked).contains(&stored),
        "{stored} records after the kill; {synced} were acknowledged before the idle second, {acked} in all"
    );
}
