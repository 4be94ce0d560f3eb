//! `tidegate-bench`: a load generator for tidegate's publish and fetch paths over loopback.
//!
//! # What it measures
//!
//! For each `--fsync` mode (default `always` and `never`) it starts a fresh `tidegate`
//! server (`--auth none`, listening on `127.0.0.1:0`, data in a new directory under the
//! system temp dir that is removed afterwards) and runs every scenario against it:
//!
//! - `publish:N` — N concurrent clients, each publishing one keyless record per request;
//! - `batch:N` — N clients, each publishing `--batch-records` (100) records per request;
//! - `fetch:N` — N clients, each reading `--fetch-records` (100) record pages from a
//!   partition pre-filled with `--fetch-prefill` records, cycling through it;
//! - `group:N` — N members of one consumer group polling (`POST /v1/groups/G/poll`, up to
//!   `--fetch-records` records, `auto_commit`) a topic of `--group-partitions` (4)
//!   partitions pre-filled with `--fetch-prefill` records. A member that finds nothing left
//!   seeks its own partitions back to offset 0 (unmeasured) and polls on; the others read
//!   on undisturbed, as fetch clients each cycle through their own partition.
//!
//! Publish scenarios each get a new topic of `--partitions` (8) partitions.
//!
//! Each client owns one HTTP/1.1 keep-alive connection and sends requests back to back
//! (closed loop: the next request leaves when the previous answer arrived). Every client runs
//! for `--warmup-secs` unmeasured, then `--duration-secs` measured; a request counts when it
//! *started* inside the measured window. For each scenario the bench reports successful
//! requests/s and records/s (over the time from the window's start to the last measured
//! answer), exact p50/p99/max latency (every request's latency is kept and sorted), and
//! errors: any non-200 answer, malformed answer, I/O error or time-out is counted and shown,
//! never dropped. Answers are checked: a publish must return one offset per record (and a
//! keyless batch consecutive offsets in one partition); a fetch page must advance
//! `next_offset` by at least the page size (exactly on redb; Kafka's transaction markers
//! take offsets too), and is fully parsed on each connection's first request and every
//! 64th.
//!
//! To explain the numbers it also reports, per scenario, the server's group commits (read
//! from the writer's `group commit` debug event, which carries the requests per commit and
//! the commit's duration), and CPU use over the measured window of the server process, of its
//! `log-writer` thread and of this bench process (from `/proc`, in % of one core). The server
//! runs with `RUST_LOG=warn,tidegate::log::redb::writer=debug` (`--server-log`), so per-request
//! access logs are off and one JSON line per commit is on.
//!
//! `--server-log-dir DIR` keeps each server's log lines for later analysis.
//!
//! The report (Markdown tables, plus the group-commit ratio: records/s of the publish
//! scenario with the most clients over the one with one client, under `--fsync always`) goes
//! to stdout; progress goes to stderr. The exit code is non-zero when any request failed.
//!
//! # The HTTP client
//!
//! A deliberately minimal HTTP/1.1 client over `tokio::net::TcpStream`: one request at a
//! time per connection, requests written in one piece with `Content-Length`, responses read
//! as status line + headers + a `Content-Length` body (tidegate always sends one; chunked
//! answers are reported as errors). `Connection: close` or any I/O error drops the
//! connection and the client reconnects. Loads go to the loopback address the server
//! printed, nowhere else.
//!
//! # Bounds
//!
//! Every request has a 10 s time-out, server start a 30 s one, so a run ends. The server
//! child is stopped with SIGTERM (then SIGKILL after 20 s) at the end; a drop guard kills it
//! and removes its data directory on any early return or panic, and Ctrl-C is handled the
//! same way.
//!
//! Usage: `cargo run --release --bin tidegate-bench -- [--server-bin target/release/tidegate]
//! [--duration-secs 5] [--scenarios publish:1,publish:64,...] [--fsync always,never]`.
//!
//! `tidegate-bench push` measures push delivery over WebSocket against `nats-server`
//! instead (see the `push` module).

mod nats;
mod push;
mod round;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for one answer; a slower one is an error and the connection is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the server's `tidegate listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a graceful exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Records per request when pre-filling the fetch partition.
const PREFILL_BATCH: u64 = 1000;
/// Fetch answers fully parsed: each connection's first, then one in this many.
const DEEP_CHECK_EVERY: u64 = 64;
/// Largest response header accepted.
const MAX_HEAD: usize = 64 << 10;
/// `/proc` CPU times are in USER_HZ ticks, 100 per second on Linux.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
const LISTENING: &str = "tidegate listening on http://";
/// The writer's debug event, one per commit.
const COMMIT_EVENT: &str = "group commit";

#[derive(Debug, Parser)]
#[command(
    name = "tidegate-bench",
    about = "Load benchmark of tidegate publish and fetch over loopback"
)]
struct Args {
    /// The tidegate executable (default: `tidegate` next to this executable).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,

    /// One more argument for every server this bench starts (repeatable), e.g.
    /// `--server-arg=--backend --server-arg=kafka --server-arg=--kafka-bootstrap
    /// --server-arg=127.0.0.1:9092` to measure the Kafka backend.
    #[arg(long = "server-arg", global = true, allow_hyphen_values = true)]
    server_args: Vec<String>,

    #[command(subcommand)]
    suite: Option<Suite>,

    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,

    /// Unmeasured seconds of load before each scenario's measurement.
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,

    /// Scenarios as KIND:CLIENTS; KIND is publish (one record per request), batch
    /// (--batch-records per request) or fetch (pages of --fetch-records).
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_scenario,
        default_values = ["publish:1", "publish:64", "batch:1", "batch:16", "fetch:1", "fetch:4", "fetch:16", "group:4"]
    )]
    scenarios: Vec<Scenario>,

    /// Server fsync modes; each gets its own server and data directory.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["always", "never"])]
    fsync: Vec<FsyncMode>,

    /// Partitions of each publish topic.
    #[arg(long, default_value_t = 8)]
    partitions: u32,

    /// Records per request in batch scenarios.
    #[arg(long, default_value_t = 100)]
    batch_records: u64,

    /// Records per page in fetch scenarios.
    #[arg(long, default_value_t = 100)]
    fetch_records: u64,

    /// Records written to the fetch partition (and the group topic) before those scenarios.
    #[arg(long, default_value_t = 100_000)]
    fetch_prefill: u64,

    /// Partitions of the topic group scenarios consume.
    #[arg(long, default_value_t = 4)]
    group_partitions: u32,

    /// Bytes of each record's JSON value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,

    /// RUST_LOG of the server; commit statistics need `tidegate::log::redb::writer=debug`.
    #[arg(long, default_value = "warn,tidegate::log::redb::writer=debug")]
    server_log: String,

    /// Also copy each server's log lines to DIR/tidegate-FSYNC.log (for later analysis).
    #[arg(long, value_name = "DIR")]
    server_log_dir: Option<PathBuf>,

    /// Tokio worker threads driving the clients (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    client_threads: usize,
}

#[derive(Debug, clap::Subcommand)]
enum Suite {
    /// Push delivery over WebSocket (fan-out, latency, catch-up, idle memory), with
    /// nats-server as the peer in the same run.
    Push(push::PushArgs),
    /// The performance round: every figure as a ratio to a reference measured in the same
    /// run (a bare actix endpoint, fio's fsync rate, nats-server), several runs in a row.
    Round(round::RoundArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FsyncMode {
    Always,
    Never,
}

impl FsyncMode {
    fn as_str(self) -> &'static str {
        match self {
            FsyncMode::Always => "always",
            FsyncMode::Never => "never",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Publish,
    Batch,
    Fetch,
    Group,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    kind: Kind,
    clients: usize,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Publish => "publish",
            Kind::Batch => "batch",
            Kind::Fetch => "fetch",
            Kind::Group => "group",
        };
        write!(f, "{kind}:{}", self.clients)
    }
}

fn parse_scenario(text: &str) -> Result<Scenario, String> {
    let (kind, clients) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not KIND:CLIENTS"))?;
    let kind = match kind {
        "publish" => Kind::Publish,
        "batch" => Kind::Batch,
        "fetch" => Kind::Fetch,
        "group" => Kind::Group,
        other => {
            return Err(format!(
                "unknown scenario kind '{other}' (publish, batch, fetch, group)"
            ));
        }
    };
    let clients = clients
        .parse::<usize>()
        .ok()
        .filter(|c| (1..=10_000).contains(c))
        .ok_or_else(|| format!("clients in '{text}' must be 1..=10000"))?;
    Ok(Scenario { kind, clients })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tidegate-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let server_bin = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|err| format!("cannot find this executable: {err}"))?
            .with_file_name(format!("tidegate{}", std::env::consts::EXE_SUFFIX)),
    };
    if !server_bin.is_file() {
        return Err(format!(
            "server binary {} not found (build it with `cargo build --release --bins` or pass --server-bin)",
            server_bin.display()
        ));
    }
    warn_if_stale(&server_bin);
    match &args.suite {
        Some(Suite::Push(push)) => push::run(&server_bin, &args.server_args, push),
        Some(Suite::Round(round)) => round::run(&server_bin, &args.server_args, round),
        None => run_http(args, &server_bin),
    }
}

/// The runtime that drives the clients; `threads` 0 means one per CPU.
fn client_runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder
        .build()
        .map_err(|err| format!("starting the runtime: {err}"))
}

/// The HTTP scenarios (`--scenarios`), for each `--fsync` mode.
fn run_http(args: &Args, server_bin: &Path) -> Result<(), String> {
    validate(args)?;
    let runtime = client_runtime(args.client_threads)?;

    let load_before = load_average();
    let mut rows = Vec::new();
    let mut exits = Vec::new();
    for &fsync in &args.fsync {
        let copy = match &args.server_log_dir {
            Some(dir) => {
                let path = dir.join(format!("tidegate-{}.log", fsync.as_str()));
                let file = std::fs::File::create(&path)
                    .map_err(|err| format!("creating {}: {err}", path.display()))?;
                Some(file)
            }
            None => None,
        };
        let server = Server::start(server_bin, &args.server_args, fsync, &args.server_log, copy)?;
        eprintln!(
            "server --fsync {} on {} (pid {}, data {})",
            fsync.as_str(),
            server.addr,
            server.child.id(),
            server.data_dir.display()
        );
        let result = runtime.block_on(async {
            tokio::select! {
                result = run_scenarios(args, &server, fsync) => result,
                _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
            }
        });
        let tail = server.log_tail();
        let exit = server.stop();
        eprintln!("server --fsync {}: {exit}", fsync.as_str());
        match result {
            Ok(mut new_rows) => rows.append(&mut new_rows),
            Err(err) => return Err(format!("{err}\nlast server log lines:\n{tail}")),
        }
        exits.push((fsync, exit));
    }
    let load = (load_before, load_average());
    print_report(args, server_bin, &rows, &exits, &load);
    let failed: u64 = rows.iter().map(Row::error_count).sum();
    if failed > 0 {
        return Err(format!("{failed} requests failed (see Errors above)"));
    }
    Ok(())
}

/// `cargo run --bin tidegate-bench` does not rebuild `tidegate`: say so when it looks stale.
fn warn_if_stale(server_bin: &Path) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let bench = std::env::current_exe()
        .ok()
        .and_then(|path| modified(&path));
    if let (Some(server), Some(bench)) = (modified(server_bin), bench)
        && server < bench
    {
        eprintln!(
            "note: {} is older than this bench binary; if the library changed, rebuild both with \
             `cargo build --release --bins`",
            server_bin.display()
        );
    }
}

/// The first three fields of `/proc/loadavg`, to show how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn validate(args: &Args) -> Result<(), String> {
    if args.duration_secs == 0 {
        return Err("--duration-secs must be at least 1".into());
    }
    if args.fsync.is_empty() || args.scenarios.is_empty() {
        return Err("nothing to run".into());
    }
    if !(1..=1024).contains(&args.partitions) || !(1..=1024).contains(&args.group_partitions) {
        return Err("--partitions and --group-partitions must be 1..=1024".into());
    }
    if !(1..=10_000).contains(&args.batch_records) {
        return Err("--batch-records must be 1..=10000 (the server's default limit)".into());
    }
    if !(1..=10_000).contains(&args.fetch_records) {
        return Err("--fetch-records must be 1..=10000".into());
    }
    if args.fetch_prefill < args.fetch_records
        || !args.fetch_prefill.is_multiple_of(args.fetch_records)
    {
        return Err("--fetch-prefill must be a multiple of --fetch-records".into());
    }
    if args.value_bytes < 16 || args.value_bytes > 512 << 10 {
        return Err("--value-bytes must be 16..=524288".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Scenarios

/// One measured scenario, as reported.
struct Row {
    fsync: FsyncMode,
    scenario: Scenario,
    records_per_request: u64,
    /// Successful requests and records in the window.
    ok: u64,
    records: u64,
    /// From the window's start to the last measured answer.
    elapsed: Duration,
    /// Every measured answer's latency (any status), sorted, in nanoseconds.
    latencies: Vec<u64>,
    errors: BTreeMap<String, (u64, String)>,
    commits: Option<CommitStats>,
    cpu: CpuStats,
}

impl Row {
    fn error_count(&self) -> u64 {
        self.errors.values().map(|(count, _)| count).sum()
    }

    fn per_sec(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct CommitStats {
    commits: u64,
    mean_requests: f64,
    p50_requests: u64,
    max_requests: u64,
    single: u64,
    mean_commit: Duration,
    max_commit: Duration,
}

#[derive(Default)]
struct CpuStats {
    server: Option<f64>,
    writer: Option<f64>,
    bench: Option<f64>,
}

async fn run_scenarios(args: &Args, server: &Server, fsync: FsyncMode) -> Result<Vec<Row>, String> {
    let value = record_value(args.value_bytes);
    let mut rows = Vec::new();
    let mut fetch_topic: Option<String> = None;
    let mut group_topic: Option<String> = None;
    for (index, &scenario) in args.scenarios.iter().enumerate() {
        let (topic, request, per_request) = match scenario.kind {
            Kind::Group => {
                let topic = match &group_topic {
                    Some(topic) => topic.clone(),
                    None => {
                        let topic = "bench-group".to_owned();
                        create_topic(server.addr, &topic, args.group_partitions).await?;
                        eprintln!("  pre-filling {topic} with {} records", args.fetch_prefill);
                        prefill(server.addr, &topic, &value, args.fetch_prefill).await?;
                        group_topic = Some(topic.clone());
                        topic
                    }
                };
                (topic, Vec::new(), args.fetch_records)
            }
            Kind::Fetch => {
                let topic = match &fetch_topic {
                    Some(topic) => topic.clone(),
                    None => {
                        let topic = "bench-fetch".to_owned();
                        create_topic(server.addr, &topic, 1).await?;
                        eprintln!("  pre-filling {topic} with {} records", args.fetch_prefill);
                        prefill(server.addr, &topic, &value, args.fetch_prefill).await?;
                        fetch_topic = Some(topic.clone());
                        topic
                    }
                };
                (topic, Vec::new(), args.fetch_records)
            }
            Kind::Publish | Kind::Batch => {
                let per_request = if scenario.kind == Kind::Publish {
                    1
                } else {
                    args.batch_records
                };
                let topic = format!("bench-{index}-{}", scenario.to_string().replace(':', "-"));
                create_topic(server.addr, &topic, args.partitions).await?;
                let request = publish_request(server.addr, &topic, &value, per_request);
                (topic, request, per_request)
            }
        };
        let plan = Plan {
            kind: scenario.kind,
            addr: server.addr,
            group: format!("bench-{index}"),
            topic,
            publish_request: request,
            per_request,
            fetch_pages: args.fetch_prefill / args.fetch_records,
            clients: scenario.clients,
            warm_end: Instant::now(),
            end: Instant::now(),
        };
        let row = run_scenario(args, server, fsync, scenario, plan).await?;
        eprintln!(
            "  --fsync {} {:<11} {:>9.0} req/s {:>10.0} rec/s  p50 {:.3} ms  p99 {:.3} ms  errors {}",
            fsync.as_str(),
            scenario.to_string(),
            row.per_sec(row.ok),
            row.per_sec(row.records),
            percentile(&row.latencies, 0.50) as f64 / 1e6,
            percentile(&row.latencies, 0.99) as f64 / 1e6,
            row.error_count()
        );
        rows.push(row);
    }
    Ok(rows)
}

/// What every client of a scenario shares.
struct Plan {
    kind: Kind,
    addr: SocketAddr,
    /// The consumer group of a group scenario.
    group: String,
    topic: String,
    /// The whole publish request, written as is each time.
    publish_request: Vec<u8>,
    /// Records per request (publish) or per page (fetch).
    per_request: u64,
    fetch_pages: u64,
    clients: usize,
    warm_end: Instant,
    end: Instant,
}

async fn run_scenario(
    args: &Args,
    server: &Server,
    fsync: FsyncMode,
    scenario: Scenario,
    mut plan: Plan,
) -> Result<Row, String> {
    // A little slack so every client is connected and ready when the clock starts.
    let start = Instant::now() + Duration::from_millis(100);
    plan.warm_end = start + Duration::from_secs(args.warmup_secs);
    plan.end = plan.warm_end + Duration::from_secs(args.duration_secs);
    let plan = Arc::new(plan);
    let tasks: Vec<_> = (0..scenario.clients)
        .map(|index| tokio::spawn(client(plan.clone(), index)))
        .collect();

    tokio::time::sleep_until(plan.warm_end.into()).await;
    let commits_before = server.log.commit_count();
    let cpu_before = server.cpu_ticks();

    let mut latencies = Vec::new();
    let mut ok = 0;
    let mut records = 0;
    let mut errors: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut last_done = plan.warm_end;
    for task in tasks {
        let stats = task
            .await
            .map_err(|err| format!("a client task failed: {err}"))?;
        latencies.extend(stats.latencies);
        ok += stats.ok;
        records += stats.records;
        for (kind, (count, sample)) in stats.errors {
            errors.entry(kind).or_insert((0, sample)).0 += count;
        }
        last_done = last_done.max(stats.last_done.unwrap_or(plan.warm_end));
    }
    let cpu_after = server.cpu_ticks();
    let elapsed = last_done.saturating_duration_since(plan.warm_end);
    // Let the server's last commit events of the window reach the log reader.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let commits = server
        .log
        .commit_stats(commits_before, server.log.commit_count());
    latencies.sort_unstable();
    let cpu_percent = |before: Option<u64>, after: Option<u64>| {
        let ticks = after?.checked_sub(before?)?;
        Some(ticks as f64 / CLOCK_TICKS_PER_SEC / elapsed.as_secs_f64().max(1e-9) * 100.0)
    };
    Ok(Row {
        fsync,
        scenario,
        records_per_request: plan.per_request,
        ok,
        records,
        elapsed,
        latencies,
        errors,
        commits,
        cpu: CpuStats {
            server: cpu_percent(cpu_before.server, cpu_after.server),
            writer: cpu_percent(cpu_before.writer, cpu_after.writer),
            bench: cpu_percent(cpu_before.bench, cpu_after.bench),
        },
    })
}

#[derive(Default)]
struct ClientStats {
    latencies: Vec<u64>,
    ok: u64,
    records: u64,
    /// Error kind → (count, first example).
    errors: BTreeMap<String, (u64, String)>,
    last_done: Option<Instant>,
}

impl ClientStats {
    fn error(&mut self, kind: String, sample: String) {
        self.errors.entry(kind).or_insert((0, sample)).0 += 1;
    }
}

/// One client: one keep-alive connection, requests back to back until the plan's end.
async fn client(plan: Arc<Plan>, index: usize) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut conn: Option<Conn> = None;
    let mut fetch_request = Vec::new();
    // Fetch clients start spread over the partition and walk it page by page.
    let mut page = plan.fetch_pages * index as u64 / plan.clients as u64;
    let mut answers = 0u64;
    let mut member: Option<String> = None;
    let mut assigned: Vec<u32> = Vec::new();
    // Whether the last answer had no records, warm-up or not.
    let mut caught_up = false;
    let mut request_buf = Vec::new();
    loop {
        let now = Instant::now();
        if now >= plan.end {
            break;
        }
        let measured = now >= plan.warm_end;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::connect(plan.addr).await {
                Ok(c) => conn.insert(c),
                Err(err) => {
                    if measured {
                        stats.error(format!("connect: {}", err.kind()), err.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (request, offset) = match plan.kind {
            Kind::Fetch => {
                let offset = page * plan.per_request;
                page = (page + 1) % plan.fetch_pages;
                fetch_request.clear();
                let _ = write!(
                    fetch_request,
                    "GET /v1/topics/{}/partitions/0/records?offset={offset}&limit={} HTTP/1.1\r\nHost: {}\r\n\r\n",
                    plan.topic, plan.per_request, plan.addr
                );
                (fetch_request.as_slice(), offset)
            }
            Kind::Publish | Kind::Batch => (plan.publish_request.as_slice(), 0),
            Kind::Group => {
                let body = serde_json::json!({
                    "topics": [plan.topic],
                    "member_id": member,
                    "limit": plan.per_request,
                    "auto_commit": true,
                    "auto_offset_reset": "earliest",
                });
                request_buf.clear();
                request_buf.extend_from_slice(&post_request(
                    plan.addr,
                    &format!("/v1/groups/{}/poll", plan.group),
                    body.to_string().as_bytes(),
                ));
                (request_buf.as_slice(), 0)
            }
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, c.send(request)).await;
        let latency = started.elapsed();
        let keep = match outcome {
            Ok(Ok(response)) => {
                let deep = answers.is_multiple_of(DEEP_CHECK_EVERY);
                answers += 1;
                let checked = if response.status != 200 {
                    Err((
                        format!("HTTP {}", response.status),
                        String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
                            .into_owned(),
                    ))
                } else {
                    let checked = match plan.kind {
                        Kind::Fetch => check_fetch(response.body, offset, plan.per_request, deep),
                        Kind::Publish | Kind::Batch => {
                            check_publish(response.body, plan.per_request)
                        }
                        Kind::Group => check_group_poll(response.body, plan.per_request).map(
                            |(id, records, partitions)| {
                                member = Some(id);
                                assigned = partitions;
                                records
                            },
                        ),
                    };
                    checked.map_err(|err| ("invalid answer".to_owned(), err))
                };
                caught_up = matches!(checked, Ok(0));
                if measured {
                    stats
                        .latencies
                        .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
                    stats.last_done = Some(Instant::now());
                    match checked {
                        Ok(records) => {
                            stats.ok += 1;
                            stats.records += records;
                        }
                        Err((kind, sample)) => stats.error(kind, sample),
                    }
                }
                !response.close
            }
            Ok(Err(err)) => {
                if measured {
                    stats.error(format!("I/O: {}", err.kind()), err.to_string());
                    stats.last_done = Some(Instant::now());
                }
                false
            }
            Err(_) => {
                if measured {
                    stats.error(
                        "time-out".to_owned(),
                        format!("no answer within {REQUEST_TIMEOUT:?}"),
                    );
                    stats.last_done = Some(Instant::now());
                }
                false
            }
        };
        if !keep {
            conn = None;
        }
        // A member that caught up rewinds its partitions, so the load goes on (unmeasured).
        if plan.kind == Kind::Group
            && caught_up
            && !assigned.is_empty()
            && let Some(c) = conn.as_mut()
        {
            let offsets: Vec<serde_json::Value> = assigned
                .iter()
                .map(|partition| serde_json::json!({"partition": partition, "offset": 0}))
                .collect();
            let body =
                serde_json::json!({"topic": plan.topic, "to": {"offsets": offsets}}).to_string();
            let seek = post_request(
                plan.addr,
                &format!("/v1/groups/{}/seek", plan.group),
                body.as_bytes(),
            );
            if !matches!(tokio::time::timeout(REQUEST_TIMEOUT, c.send(&seek)).await, Ok(Ok(r)) if r.status == 200)
            {
                conn = None;
            }
        }
    }
    stats
}

/// A JSON value of exactly `bytes` bytes: `{"pad":"xxx…"}`.
fn record_value(bytes: usize) -> String {
    let overhead = r#"{"pad":""}"#.len();
    format!(
        r#"{{"pad":"{}"}}"#,
        "x".repeat(bytes.saturating_sub(overhead))
    )
}

fn publish_body(value: &str, records: u64) -> Vec<u8> {
    let record = format!(r#"{{"value":{value}}}"#);
    let mut body = br#"{"records":["#.to_vec();
    for i in 0..records {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(record.as_bytes());
    }
    body.extend_from_slice(b"]}");
    body
}

fn post_request(addr: SocketAddr, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn publish_request(addr: SocketAddr, topic: &str, value: &str, records: u64) -> Vec<u8> {
    post_request(
        addr,
        &format!("/v1/topics/{topic}/records"),
        &publish_body(value, records),
    )
}

#[derive(Deserialize)]
struct Published {
    offsets: Vec<Position>,
}

#[derive(Deserialize)]
struct Position {
    partition: u32,
    offset: u64,
}

/// One offset per record; a keyless request lands in one partition, consecutively.
fn check_publish(body: &[u8], records: u64) -> Result<u64, String> {
    let published: Published =
        serde_json::from_slice(body).map_err(|err| format!("malformed publish answer: {err}"))?;
    if published.offsets.len() as u64 != records {
        return Err(format!(
            "publish of {records} records answered {} offsets",
            published.offsets.len()
        ));
    }
    let consecutive = published
        .offsets
        .windows(2)
        .all(|w| w[1].partition == w[0].partition && w[1].offset == w[0].offset + 1);
    if !consecutive {
        return Err("keyless batch not consecutive in one partition".to_owned());
    }
    Ok(records)
}

#[derive(Deserialize)]
struct Page {
    records: Vec<PageRecord>,
    next_offset: u64,
}

#[derive(Deserialize)]
struct PageRecord {
    offset: u64,
}

#[derive(Deserialize)]
struct GroupPoll {
    member_id: String,
    assignment: Vec<Assigned>,
    records: Vec<GroupRecord>,
}

#[derive(Deserialize)]
struct Assigned {
    partition: u32,
}

#[derive(Deserialize)]
struct GroupRecord {
    partition: u32,
    offset: u64,
}

/// A poll answer: the member id, at most `limit` records, in offset order per partition;
/// returns the id, the records' count and the member's partitions.
fn check_group_poll(body: &[u8], limit: u64) -> Result<(String, u64, Vec<u32>), String> {
    let poll: GroupPoll =
        serde_json::from_slice(body).map_err(|err| format!("malformed poll answer: {err}"))?;
    if poll.records.len() as u64 > limit {
        return Err(format!(
            "{} records for a limit of {limit}",
            poll.records.len()
        ));
    }
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for record in &poll.records {
        if let Some(previous) = last.insert(record.partition, record.offset)
            && record.offset != previous + 1
        {
            return Err(format!(
                "partition {}: offset {} after {previous}",
                record.partition, record.offset
            ));
        }
    }
    let partitions = poll.assignment.iter().map(|a| a.partition).collect();
    Ok((poll.member_id, poll.records.len() as u64, partitions))
}

/// A full page: `next_offset` at least `offset + page` (exactly on redb; Kafka's
/// transaction markers take offsets too); deeply, the records themselves, in increasing
/// offsets from `offset` on.
fn check_fetch(body: &[u8], offset: u64, page: u64, deep: bool) -> Result<u64, String> {
    let next = next_offset(body).ok_or("fetch answer without next_offset")?;
    if next < offset + page {
        return Err(format!(
            "fetch at {offset} returned next_offset {next}, expected at least {}",
            offset + page
        ));
    }
    if deep {
        let parsed: Page =
            serde_json::from_slice(body).map_err(|err| format!("malformed fetch answer: {err}"))?;
        let mut floor = offset;
        let in_order = parsed.records.iter().all(|record| {
            let fits = record.offset >= floor && record.offset < next;
            floor = record.offset + 1;
            fits
        });
        if parsed.records.len() as u64 != page || !in_order || parsed.next_offset != next {
            return Err(format!("fetch at {offset}: records do not match the page"));
        }
    }
    Ok(page)
}

/// `next_offset` of a fetch answer, found from the end (it follows the records).
fn next_offset(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = br#""next_offset":"#;
    let at = body.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let digits: String = body[at..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| char::from(b))
        .collect();
    digits.parse().ok()
}

/// One request on a fresh connection, for setup steps.
async fn call(addr: SocketAddr, request: &[u8]) -> Result<(u16, String), String> {
    let mut conn = Conn::connect(addr)
        .await
        .map_err(|err| format!("connecting to {addr}: {err}"))?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, conn.send(request))
        .await
        .map_err(|_| "setup request timed out".to_owned())?
        .map_err(|err| format!("setup request: {err}"))?;
    Ok((
        response.status,
        String::from_utf8_lossy(response.body).into_owned(),
    ))
}

async fn create_topic(addr: SocketAddr, topic: &str, partitions: u32) -> Result<(), String> {
    let body = format!(r#"{{"name":"{topic}","partitions":{partitions},"retention_ms":-1}}"#);
    let (status, answer) = call(addr, &post_request(addr, "/v1/topics", body.as_bytes())).await?;
    if status != 201 {
        return Err(format!("creating topic {topic}: HTTP {status}: {answer}"));
    }
    Ok(())
}

async fn prefill(addr: SocketAddr, topic: &str, value: &str, records: u64) -> Result<(), String> {
    let mut conn = Conn::connect(addr)
        .await
        .map_err(|err| format!("connecting to {addr}: {err}"))?;
    let mut written = 0;
    while written < records {
        let count = PREFILL_BATCH.min(records - written);
        let request = publish_request(addr, topic, value, count);
        let response = tokio::time::timeout(REQUEST_TIMEOUT, conn.send(&request))
            .await
            .map_err(|_| "pre-fill request timed out".to_owned())?
            .map_err(|err| format!("pre-fill request: {err}"))?;
        if response.status != 200 {
            return Err(format!(
                "pre-fill: HTTP {}: {}",
                response.status,
                String::from_utf8_lossy(response.body)
            ));
        }
        check_publish(response.body, count).map_err(|err| format!("pre-fill: {err}"))?;
        if response.close {
            conn = Conn::connect(addr)
                .await
                .map_err(|err| format!("reconnecting to {addr}: {err}"))?;
        }
        written += count;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Minimal HTTP/1.1 client

struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet handed out; the previous answer occupies `..consumed`.
    buf: Vec<u8>,
    consumed: usize,
}

struct Response<'a> {
    status: u16,
    body: &'a [u8],
    /// The server will close the connection after this answer.
    close: bool,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(64 << 10),
            consumed: 0,
        })
    }

    /// Writes one complete request and reads its answer.
    async fn send(&mut self, request: &[u8]) -> io::Result<Response<'_>> {
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        self.stream.write_all(request).await?;

        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response head too large"));
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| invalid("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(&format!("bad status line '{status_line}'")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(&format!("bad status line '{status_line}'")))?;
        let mut close = version == "HTTP/1.0";
        let mut content_length = None;
        for line in lines.filter(|line| !line.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(&format!("bad header line '{line}'")))?;
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| invalid("bad Content-Length"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && !value.eq_ignore_ascii_case("identity")
            {
                return Err(invalid(&format!("unsupported Transfer-Encoding '{value}'")));
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.to_ascii_lowercase().contains("close");
            }
        }
        let body_len = match (status, content_length) {
            (100..=199 | 204 | 304, _) => 0,
            (_, Some(len)) => len,
            (_, None) => return Err(invalid("answer without Content-Length")),
        };
        let end = head_end + body_len;
        while self.buf.len() < end {
            self.fill().await?;
        }
        self.consumed = end;
        Ok(Response {
            status,
            body: &self.buf[head_end..end],
            close,
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(32 << 10);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(())
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

// ---------------------------------------------------------------------------------------
// The server child

/// A running tidegate child process. Dropping it kills the process and removes its data.
struct Server {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: Arc<ServerLog>,
}

struct CpuTicks {
    server: Option<u64>,
    writer: Option<u64>,
    bench: Option<u64>,
}

impl Server {
    fn start(
        bin: &Path,
        extra_args: &[String],
        fsync: FsyncMode,
        log_filter: &str,
        copy: Option<std::fs::File>,
    ) -> Result<Server, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let data_dir = std::env::temp_dir().join(format!(
            "tidegate-bench-{}-{}-{nanos}",
            std::process::id(),
            fsync.as_str()
        ));
        std::fs::create_dir_all(&data_dir)
            .map_err(|err| format!("creating {}: {err}", data_dir.display()))?;
        Server::start_with_log(bin, extra_args, fsync, log_filter, data_dir, copy)
    }

    /// Starts a server on the data of an earlier one (`kill_keeping_data`).
    fn start_on(
        bin: &Path,
        extra_args: &[String],
        fsync: FsyncMode,
        log_filter: &str,
        data_dir: PathBuf,
    ) -> Result<Server, String> {
        Server::start_with_log(bin, extra_args, fsync, log_filter, data_dir, None)
    }

    /// SIGKILL; the data directory is left for `start_on`.
    fn kill_keeping_data(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::take(&mut self.data_dir)
    }

    fn start_with_log(
        bin: &Path,
        extra_args: &[String],
        fsync: FsyncMode,
        log_filter: &str,
        data_dir: PathBuf,
        copy: Option<std::fs::File>,
    ) -> Result<Server, String> {
        let spawned = Command::new(bin)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--auth", "none"])
            .args(["--fsync", fsync.as_str(), "--log-format", "json"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra_args)
            .env("RUST_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                return Err(format!("starting {}: {err}", bin.display()));
            }
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let log = Arc::new(ServerLog::default());
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            log: log.clone(),
        };

        let (listening, address) = mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.strip_prefix(LISTENING) {
                        let _ = listening.send(addr.trim().to_owned());
                    }
                }
            });
        }
        if let Some(stderr) = stderr {
            std::thread::spawn(move || log.read(stderr, copy));
        }
        let addr = match address.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                return Err(format!(
                    "the server did not print '{LISTENING}…' (exit: {:?}); its log:\n{}",
                    server.child.try_wait().ok().flatten(),
                    server.log_tail()
                ));
            }
        };
        server.addr = addr
            .parse::<SocketAddr>()
            .map_err(|err| format!("server printed a bad address '{addr}': {err}"))?;
        if !server.addr.ip().is_loopback() {
            return Err(format!("server listens on {}, not loopback", server.addr));
        }
        Ok(server)
    }

    fn log_tail(&self) -> String {
        let tail = self.log.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter().map(|line| format!("  {line}\n")).collect()
    }

    fn cpu_ticks(&self) -> CpuTicks {
        let pid = self.child.id();
        CpuTicks {
            server: proc_cpu_ticks(&format!("/proc/{pid}/stat")),
            // Looked up each time: the thread names itself only once it runs.
            writer: find_thread(pid, "log-writer")
                .and_then(|tid| proc_cpu_ticks(&format!("/proc/{pid}/task/{tid}/stat"))),
            bench: proc_cpu_ticks("/proc/self/stat"),
        }
    }

    /// SIGTERM, wait for the graceful exit (SIGKILL after a while); describes the exit.
    fn stop(mut self) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return format!("had exited on its own before the end, with {status}");
        }
        let started = Instant::now();
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if signalled {
            while started.elapsed() < STOP_TIMEOUT {
                match self.child.try_wait() {
                    Ok(Some(status)) => {
                        return format!(
                            "exited after SIGTERM in {:.2} s with {status}",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => break,
                }
            }
        }
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => format!("did not exit after SIGTERM; killed ({status})"),
            Err(err) => format!("did not exit after SIGTERM; kill failed: {err}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // Empty once `kill_keeping_data` handed the directory on.
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// What the bench learns from the server's stderr (JSON log lines).
#[derive(Default)]
struct ServerLog {
    /// Per group commit: (requests, duration in µs), in order.
    commits: Mutex<Vec<(u64, u64)>>,
    /// The last other lines, for diagnostics.
    tail: Mutex<VecDeque<String>>,
}

impl ServerLog {
    fn read(&self, stderr: impl io::Read, copy: Option<std::fs::File>) {
        let mut copy = copy.map(io::BufWriter::new);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = copy.as_mut()
                && writeln!(file, "{line}").is_err()
            {
                copy = None;
            }
            if line.contains(COMMIT_EVENT)
                && let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["fields"]["message"] == COMMIT_EVENT
            {
                let fields = &event["fields"];
                let requests = fields["requests"].as_u64().unwrap_or(0);
                let micros = fields["elapsed_us"].as_u64().unwrap_or(0);
                self.commits
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((requests, micros));
                continue;
            }
            if line.contains(r#""level":"ERROR""#) {
                eprintln!("[server] {line}");
            }
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.len() == 30 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }

    fn commit_count(&self) -> usize {
        self.commits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn commit_stats(&self, from: usize, to: usize) -> Option<CommitStats> {
        let commits = self.commits.lock().unwrap_or_else(PoisonError::into_inner);
        let window = commits.get(from..to)?;
        if window.is_empty() {
            return None;
        }
        let mut sizes: Vec<u64> = window.iter().map(|&(requests, _)| requests).collect();
        sizes.sort_unstable();
        let n = window.len() as u64;
        let total_requests: u64 = sizes.iter().sum();
        let total_micros: u64 = window.iter().map(|&(_, micros)| micros).sum();
        Some(CommitStats {
            commits: n,
            mean_requests: total_requests as f64 / n as f64,
            p50_requests: percentile(&sizes, 0.5),
            max_requests: sizes.last().copied().unwrap_or(0),
            single: sizes.iter().filter(|&&s| s == 1).count() as u64,
            mean_commit: Duration::from_micros(total_micros / n),
            max_commit: Duration::from_micros(
                window.iter().map(|&(_, micros)| micros).max().unwrap_or(0),
            ),
        })
    }
}

/// utime + stime of a `/proc/…/stat` file, in clock ticks.
fn proc_cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn find_thread(pid: u32, name: &str) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|entry| {
            std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .and_then(|entry| entry.file_name().to_str()?.parse().ok())
}

// ---------------------------------------------------------------------------------------
// Report

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(nanos: u64) -> String {
    format!("{:.3}", nanos as f64 / 1e6)
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn print_report(
    args: &Args,
    server_bin: &Path,
    rows: &[Row],
    exits: &[(FsyncMode, String)],
    load: &(String, String),
) {
    println!("## Results\n");
    let command: Vec<String> = std::env::args().collect();
    println!(
        "`{}` against `{}`.\n",
        command.join(" "),
        server_bin.display()
    );
    println!(
        "{} s measured per scenario after {} s warm-up; closed loop, one keep-alive connection per client; \
         record values of {} bytes; publish topics have {} partitions, keyless records \
         (each request goes to one partition, round-robin); fetch pages of {} records from a \
         partition pre-filled with {} records.\n",
        args.duration_secs,
        args.warmup_secs,
        args.value_bytes,
        args.partitions,
        args.fetch_records,
        args.fetch_prefill
    );
    println!(
        "| fsync | scenario | clients | records/req | requests/s | records/s | p50 ms | p99 ms | max ms | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
            row.fsync.as_str(),
            kind_name(row.scenario.kind),
            row.scenario.clients,
            row.records_per_request,
            row.per_sec(row.ok),
            row.per_sec(row.records),
            ms(percentile(&row.latencies, 0.50)),
            ms(percentile(&row.latencies, 0.99)),
            ms(row.latencies.last().copied().unwrap_or(0)),
            row.error_count()
        );
    }

    println!("\n### Group commits and CPU (measured window)\n");
    println!(
        "CPU is in % of one core (this machine has {} logical CPUs).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| fsync | scenario | clients | commits/s | requests/commit mean | p50 | max | commits of 1 request | mean commit ms | max commit ms | server CPU % | log-writer CPU % | bench CPU % |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let commits = row.commits.as_ref();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.fsync.as_str(),
            kind_name(row.scenario.kind),
            row.scenario.clients,
            optional(commits.map(|c| row.per_sec(c.commits)), 0),
            optional(commits.map(|c| c.mean_requests), 1),
            commits.map_or("–".to_owned(), |c| c.p50_requests.to_string()),
            commits.map_or("–".to_owned(), |c| c.max_requests.to_string()),
            commits.map_or("–".to_owned(), |c| format!(
                "{:.0}%",
                c.single as f64 * 100.0 / c.commits as f64
            )),
            optional(commits.map(|c| c.mean_commit.as_secs_f64() * 1e3), 3),
            optional(commits.map(|c| c.max_commit.as_secs_f64() * 1e3), 1),
            optional(row.cpu.server, 0),
            optional(row.cpu.writer, 0),
            optional(row.cpu.bench, 0),
        );
    }

    let errors: Vec<_> = rows
        .iter()
        .flat_map(|row| {
            row.errors
                .iter()
                .map(move |(kind, (count, sample))| (row, kind, count, sample))
        })
        .collect();
    if !errors.is_empty() {
        println!("\n### Errors\n");
        for (row, kind, count, sample) in errors {
            println!(
                "- `--fsync {}` {}: {count} × {kind}: `{}`",
                row.fsync.as_str(),
                row.scenario,
                sample.replace('`', "'")
            );
        }
    }

    println!("\n### Scaling with clients\n");
    for &fsync in &args.fsync {
        for kind in [Kind::Publish, Kind::Batch, Kind::Fetch, Kind::Group] {
            let of = |pick: fn(usize, usize) -> bool| {
                rows.iter()
                    .filter(|r| r.fsync == fsync && r.scenario.kind == kind)
                    .reduce(|a, b| {
                        if pick(b.scenario.clients, a.scenario.clients) {
                            b
                        } else {
                            a
                        }
                    })
            };
            let (Some(one), Some(many)) = (of(|a, b| a < b), of(|a, b| a > b)) else {
                continue;
            };
            if one.scenario.clients != 1 || many.scenario.clients == 1 {
                continue;
            }
            let (a, b) = (one.per_sec(one.records), many.per_sec(many.records));
            println!(
                "- `--fsync {}` {}: {} clients / 1 client records/s = **{:.1}×** ({:.0} / {:.0})",
                fsync.as_str(),
                kind_name(kind),
                many.scenario.clients,
                b / a.max(1e-9),
                b,
                a
            );
        }
    }

    println!(
        "\nLoad average (1, 5, 15 min) before the run: {}; after: {}.",
        load.0, load.1
    );
    println!("\n### Server exits\n");
    for (fsync, exit) in exits {
        println!("- `--fsync {}`: {exit}", fsync.as_str());
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Publish => "publish 1 record",
        Kind::Batch => "publish batch",
        Kind::Fetch => "fetch page",
        Kind::Group => "group poll",
    }
}
