//! `tidegate-bench push`: push delivery over WebSocket, with `nats-server` as the peer in
//! the same run (same machine, same message size, same subscriber counts, same client code
//! apart from the protocol).
//!
//! # Parts
//! - **fanout**: S subscribers of one single-partition topic (NATS: one subject), one
//!   publisher. The publisher publishes `--deliveries / S` records (at most
//!   `--max-fanout-records`) in batches of `--publish-batch`, never more than `--window`
//!   records ahead of the slowest subscriber (so neither system is pushed into dropping or
//!   queueing without bound; NATS core would cut slow consumers). Measured: deliveries
//!   (records × S) over the time from the first publish to the last subscriber's last
//!   record. tidegate's publisher uses HTTP (`POST …/records`, one batch per request), NATS's
//!   its TCP protocol (a batch of `PUB`s, then `PING`, waiting for `PONG`).
//! - **latency**: `--latency-subscribers` subscribers; the publisher sends one record every
//!   1/`--latency-rate` s for `--latency-secs`, each carrying the time it was sent; each
//!   subscriber notes receive time − send time for every record (the first second is
//!   warm-up). tidegate's publisher spreads requests over 16 connections, so a slow fsync
//!   delays only its own record.
//! - **catchup**: `--catchup-records` stored records, one subscriber from the earliest;
//!   records/s until it has them all. The peer is a JetStream stream (file storage) read by
//!   a push consumer (`ack_policy: none`, flow control on, as NATS's ordered consumers do).
//! - **idle**: `--idle-connections` WebSockets, each with one subscription to a silent
//!   topic; the server's RSS growth per connection, on a fresh server.
//!
//! # Counting
//! tidegate subscribers count records by the cursor each `records` message carries (the
//! next offset, so records = cursor − start), and fully parse every 64th message to check
//! that offsets are consecutive and agree with the cursor; in the latency part every message
//! is parsed. NATS subscribers parse every `MSG`. Any protocol error, close, gap or time-out
//! fails the run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::nats::{self, NatsServer};
use super::{
    CONNECT_TIMEOUT, Conn, FsyncMode, REQUEST_TIMEOUT, Server, check_publish, create_topic,
    load_average, ms, percentile, prefill, proc_cpu_ticks, publish_request, record_value,
};

/// tidegate messages fully parsed in count mode: one in this many.
const DEEP_CHECK_EVERY: u64 = 64;
/// Connections opened at once while setting up many subscribers.
const CONNECT_CONCURRENCY: usize = 128;
/// Longest wait for a scenario's last delivery.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);
/// tidegate publisher connections in the latency part.
const LATENCY_CONNECTIONS: usize = 16;
/// Seconds of latency samples dropped at the start.
const LATENCY_WARMUP_SECS: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Fanout,
    Latency,
    Catchup,
    Idle,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Subscriber counts of the fan-out part.
    #[arg(long, value_delimiter = ',', default_values = ["1", "100", "1000"])]
    subscribers: Vec<usize>,

    /// Deliveries (records × subscribers) per fan-out scenario.
    #[arg(long, default_value_t = 10_000_000)]
    deliveries: u64,

    /// Most records one fan-out scenario publishes.
    #[arg(long, default_value_t = 1_000_000)]
    max_fanout_records: u64,

    /// Records per publish (one HTTP request; NATS: PUBs between PINGs).
    #[arg(long, default_value_t = 100)]
    publish_batch: u64,

    /// Most records the publisher may be ahead of the slowest subscriber.
    #[arg(long, default_value_t = 20_000)]
    window: u64,

    /// Subscribers of the latency part.
    #[arg(long, default_value_t = 100)]
    latency_subscribers: usize,

    /// Records per second in the latency part.
    #[arg(long, default_value_t = 1000)]
    latency_rate: u64,

    /// Seconds of publishing in the latency part (the first is warm-up).
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,

    /// Stored records the catch-up subscriber reads.
    #[arg(long, default_value_t = 1_000_000)]
    catchup_records: u64,

    /// Idle WebSocket connections whose memory is measured.
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,

    /// Bytes of each record's value (the NATS payload has the same size).
    #[arg(long, default_value_t = 128)]
    value_bytes: usize,

    /// tidegate fsync modes for fan-out and latency (catch-up and idle use the first).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["never", "always"])]
    fsync: Vec<FsyncMode>,

    /// Parts to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["fanout", "latency", "catchup", "idle"])]
    parts: Vec<Part>,

    /// The nats-server executable; `none` runs tidegate alone.
    #[arg(long, default_value = "nats-server")]
    nats_bin: String,

    /// Tokio worker threads driving the clients (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    client_threads: usize,
}

impl PushArgs {
    fn validate(&self) -> Result<(), String> {
        if self.fsync.is_empty() || self.parts.is_empty() {
            return Err("nothing to run".into());
        }
        if self.subscribers.iter().any(|&s| !(1..=10_000).contains(&s))
            || !(1..=10_000).contains(&self.latency_subscribers)
        {
            return Err("subscriber counts must be 1..=10000".into());
        }
        if !(1..=10_000).contains(&self.publish_batch) || self.window < self.publish_batch {
            return Err("--publish-batch must be 1..=10000 and at most --window".into());
        }
        if !(1..=100_000).contains(&self.latency_rate) || self.latency_secs <= LATENCY_WARMUP_SECS {
            return Err(format!(
                "--latency-rate must be 1..=100000 and --latency-secs over {LATENCY_WARMUP_SECS}"
            ));
        }
        if !(32..=512 << 10).contains(&self.value_bytes) {
            return Err("--value-bytes must be 32..=524288".into());
        }
        if self.catchup_records == 0 || self.idle_connections == 0 || self.deliveries == 0 {
            return Err(
                "--catchup-records, --idle-connections and --deliveries must be positive".into(),
            );
        }
        Ok(())
    }

    fn peer(&self) -> Option<&str> {
        (self.nats_bin != "none").then_some(self.nats_bin.as_str())
    }

    fn runs(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// Which system a row measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum System {
    Tidegate(FsyncMode),
    Nats,
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            System::Tidegate(fsync) => write!(f, "tidegate (fsync {})", fsync.as_str()),
            System::Nats => write!(f, "NATS"),
        }
    }
}

/// A server under test.
#[derive(Clone, Copy)]
enum Target<'a> {
    Tidegate(&'a Server, FsyncMode),
    Nats(&'a NatsServer),
}

impl Target<'_> {
    fn system(self) -> System {
        match self {
            Target::Tidegate(_, fsync) => System::Tidegate(fsync),
            Target::Nats(_) => System::Nats,
        }
    }

    fn pid(self) -> u32 {
        match self {
            Target::Tidegate(server, _) => server.child.id(),
            Target::Nats(server) => server.pid(),
        }
    }
}

pub fn run(
    server_bin: &std::path::Path,
    server_args: &[String],
    args: &PushArgs,
) -> Result<(), String> {
    args.validate()?;
    let runtime = super::client_runtime(args.client_threads)?;
    let load_before = load_average();
    let mut report = Report::default();
    runtime.block_on(async {
        tokio::select! {
            result = run_parts((server_bin, server_args), args, &mut report) => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        }
    })?;
    report.print(server_bin, args, &load_before);
    Ok(())
}

/// The tidegate executable and the extra arguments of every server.
pub type ServerCommand<'a> = (&'a std::path::Path, &'a [String]);

/// What `tidegate-bench round` takes from push delivery, for one system.
pub struct StreamFigures {
    /// Fan-out to one subscriber, deliveries/s.
    pub fanout_one: f64,
    /// Publish → delivery latency at `--latency-rate` to `--latency-subscribers`.
    pub latency_p50: Duration,
    pub latency_p99: Duration,
}

/// Fan-out to one subscriber and the latency part with the defaults, for tidegate under
/// `--fsync never` and for NATS core, one after the other.
pub async fn round_figures(
    server_bin: ServerCommand<'_>,
    nats_bin: &str,
) -> Result<(StreamFigures, StreamFigures), String> {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        push: PushArgs,
    }
    let args = <Defaults as clap::Parser>::try_parse_from([
        "round",
        "--parts=fanout,latency",
        "--subscribers=1",
        "--fsync=never",
        &format!("--nats-bin={nats_bin}"),
    ])
    .map_err(|err| err.to_string())?
    .push;
    let value = record_value(args.value_bytes);
    let mut report = Report::default();
    let server = start_tidegate(server_bin, FsyncMode::Never)?;
    measure_streams(
        Target::Tidegate(&server, FsyncMode::Never),
        &args,
        &value,
        &mut report,
    )
    .await?;
    server.stop();
    let nats = NatsServer::start(nats_bin)?;
    measure_streams(Target::Nats(&nats), &args, &value, &mut report).await?;
    let figures = |system: System| -> Result<StreamFigures, String> {
        let fanout = report.fanout.iter().find(|row| row.system == system);
        let latency = report.latency.iter().find(|row| row.system == system);
        let (Some(fanout), Some(latency)) = (fanout, latency) else {
            return Err(format!("{system}: a push part produced no figure"));
        };
        Ok(StreamFigures {
            fanout_one: fanout.deliveries_per_sec(),
            latency_p50: Duration::from_nanos(percentile(&latency.latencies, 0.50)),
            latency_p99: Duration::from_nanos(percentile(&latency.latencies, 0.99)),
        })
    };
    Ok((
        figures(System::Tidegate(FsyncMode::Never))?,
        figures(System::Nats)?,
    ))
}

async fn run_parts(
    server_bin: ServerCommand<'_>,
    args: &PushArgs,
    report: &mut Report,
) -> Result<(), String> {
    let value = record_value(args.value_bytes);
    if args.runs(Part::Fanout) || args.runs(Part::Latency) {
        for &fsync in &args.fsync {
            let server = start_tidegate(server_bin, fsync)?;
            measure_streams(Target::Tidegate(&server, fsync), args, &value, report).await?;
            server.stop();
        }
        if let Some(bin) = args.peer() {
            let nats = NatsServer::start(bin)?;
            measure_streams(Target::Nats(&nats), args, &value, report).await?;
        }
    }
    let fsync = args.fsync[0];
    if args.runs(Part::Catchup) {
        let server = start_tidegate(server_bin, fsync)?;
        report
            .catchup
            .push(catchup(Target::Tidegate(&server, fsync), args, &value).await?);
        server.stop();
        if let Some(bin) = args.peer() {
            let nats = NatsServer::start(bin)?;
            report
                .catchup
                .push(catchup(Target::Nats(&nats), args, &value).await?);
        }
    }
    if args.runs(Part::Idle) {
        let server = start_tidegate(server_bin, fsync)?;
        report
            .idle
            .push(idle(Target::Tidegate(&server, fsync), args).await?);
        server.stop();
        if let Some(bin) = args.peer() {
            let nats = NatsServer::start(bin)?;
            report.idle.push(idle(Target::Nats(&nats), args).await?);
        }
    }
    Ok(())
}

fn start_tidegate(
    (server_bin, server_args): ServerCommand<'_>,
    fsync: FsyncMode,
) -> Result<Server, String> {
    let server = Server::start(server_bin, server_args, fsync, "warn", None)?;
    eprintln!(
        "tidegate --fsync {} on {} (pid {})",
        fsync.as_str(),
        server.addr,
        server.child.id()
    );
    Ok(server)
}

async fn measure_streams(
    target: Target<'_>,
    args: &PushArgs,
    value: &str,
    report: &mut Report,
) -> Result<(), String> {
    if args.runs(Part::Fanout) {
        for &subscribers in &args.subscribers {
            let records = (args.deliveries / subscribers as u64)
                .clamp(args.publish_batch, args.max_fanout_records);
            eprintln!(
                "{}: fan-out to {subscribers} subscribers, {records} records",
                target.system()
            );
            let row = fanout(target, args, value, subscribers, records).await?;
            report.fanout.push(row);
        }
    }
    if args.runs(Part::Latency) {
        eprintln!(
            "{}: latency, {} subscribers, {} records/s",
            target.system(),
            args.latency_subscribers,
            args.latency_rate
        );
        report.latency.push(latency(target, args).await?);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Subscribers

type Socket = WebSocketStream<TcpStream>;

/// One WebSocket subscription, of either system.
struct Subscriber {
    socket: Socket,
    protocol: SubscriberProtocol,
}

enum SubscriberProtocol {
    /// tidegate: the subscription's positions (next offset per partition) so far.
    Tidegate {
        positions: Vec<(u32, u64)>,
    },
    Nats {
        decoder: nats::Decoder,
    },
}

#[derive(Clone, Copy)]
enum Start {
    Latest,
    Earliest,
}

async fn open_socket(addr: SocketAddr, path: &str, small: bool) -> Result<Socket, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|err| format!("connecting to {addr}: {err}"))?;
    stream.set_nodelay(true).map_err(|err| err.to_string())?;
    // Thousands of idle client sockets need small buffers (the bench's memory, not the
    // server's, but it shares the machine).
    let config = if small {
        WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
    } else {
        WebSocketConfig::default()
    };
    let url = format!("ws://{addr}{path}");
    let (socket, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config)),
    )
    .await
    .map_err(|_| format!("WebSocket handshake with {addr} timed out"))?
    .map_err(|err| format!("WebSocket handshake with {addr}: {err}"))?;
    Ok(socket)
}

impl Subscriber {
    /// Connects and subscribes; returns once the subscription is in place.
    async fn open(
        target: Target<'_>,
        topic: &str,
        from: Start,
        small: bool,
    ) -> Result<Self, String> {
        match target {
            Target::Tidegate(server, _) => {
                let mut socket = open_socket(server.addr, "/v1/ws", small).await?;
                let from = match from {
                    Start::Latest => "latest",
                    Start::Earliest => "earliest",
                };
                let subscribe =
                    format!(r#"{{"op":"subscribe","req":1,"topic":"{topic}","from":"{from}"}}"#);
                send(&mut socket, Message::Text(subscribe.into())).await?;
                let reply = receive(&mut socket).await?;
                #[derive(Deserialize)]
                struct Subscribed<'a> {
                    #[serde(rename = "type")]
                    kind: &'a str,
                    cursor: Option<&'a str>,
                }
                let subscribed: Subscribed<'_> = serde_json::from_slice(&reply)
                    .map_err(|err| format!("subscribe answer: {err}"))?;
                let cursor = subscribed
                    .cursor
                    .filter(|_| subscribed.kind == "subscribed")
                    .ok_or_else(|| {
                        format!("subscribe refused: {}", String::from_utf8_lossy(&reply))
                    })?;
                Ok(Subscriber {
                    socket,
                    protocol: SubscriberProtocol::Tidegate {
                        positions: parse_cursor(cursor)?,
                    },
                })
            }
            Target::Nats(server) => {
                let mut socket = open_socket(server.ws_addr, "/", small).await?;
                let mut hello = nats::CONNECT.to_vec();
                hello.extend_from_slice(format!("SUB {topic} 1\r\nPING\r\n").as_bytes());
                send(&mut socket, Message::Binary(hello.into())).await?;
                let mut decoder = nats::Decoder::default();
                // The PONG says the SUB is in place.
                loop {
                    let data = receive(&mut socket).await?;
                    if decoder.feed(&data, |_| {})?.pongs > 0 {
                        break;
                    }
                }
                Ok(Subscriber {
                    socket,
                    protocol: SubscriberProtocol::Nats { decoder },
                })
            }
        }
    }

    /// Receives until `goal` records arrived, publishing the count to `progress`; returns
    /// when the last one arrived.
    async fn count(mut self, goal: u64, progress: Arc<AtomicU64>) -> Result<Instant, String> {
        let mut received = 0u64;
        let mut messages = 0u64;
        while received < goal {
            let data = receive_within(&mut self.socket, SCENARIO_TIMEOUT).await?;
            messages += 1;
            let got = match &mut self.protocol {
                SubscriberProtocol::Tidegate { positions } => {
                    count_tidegate(&data, positions, messages % DEEP_CHECK_EVERY == 1, |_| {})?
                }
                SubscriberProtocol::Nats { decoder } => {
                    let mut got = 0;
                    let control = decoder.feed(&data, |_| got += 1)?;
                    answer_pings(&mut self.socket, control.pings).await?;
                    got
                }
            };
            received += got;
            progress.store(received, Ordering::Relaxed);
        }
        if received != goal {
            return Err(format!("received {received} records, expected {goal}"));
        }
        Ok(Instant::now())
    }

    /// Receives `goal` records, noting each one's latency (receive time − the send time it
    /// carries, in ns since `epoch`).
    async fn latencies(mut self, goal: u64, epoch: Instant) -> Result<Vec<u64>, String> {
        let mut latencies = Vec::with_capacity(goal as usize);
        let mut sent_at = Vec::new();
        while (latencies.len() as u64) < goal {
            let data = receive_within(&mut self.socket, SCENARIO_TIMEOUT).await?;
            sent_at.clear();
            match &mut self.protocol {
                SubscriberProtocol::Tidegate { positions } => {
                    count_tidegate(&data, positions, true, |value| {
                        sent_at.push(leading_number(value))
                    })?;
                }
                SubscriberProtocol::Nats { decoder } => {
                    let control = decoder.feed(&data, |delivery| {
                        sent_at.push(leading_number(delivery.payload))
                    })?;
                    answer_pings(&mut self.socket, control.pings).await?;
                }
            }
            let now = epoch.elapsed().as_nanos() as u64;
            for sent in &sent_at {
                let sent = sent.ok_or("a record without its send time")?;
                latencies.push(now.saturating_sub(sent));
            }
        }
        Ok(latencies)
    }
}

async fn send(socket: &mut Socket, message: Message) -> Result<(), String> {
    tokio::time::timeout(REQUEST_TIMEOUT, socket.send(message))
        .await
        .map_err(|_| "WebSocket send timed out".to_owned())?
        .map_err(|err| format!("WebSocket send: {err}"))
}

async fn receive(socket: &mut Socket) -> Result<Bytes, String> {
    receive_within(socket, REQUEST_TIMEOUT).await
}

/// The next data message (text or binary); pings are answered by tungstenite.
async fn receive_within(socket: &mut Socket, wait: Duration) -> Result<Bytes, String> {
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .map_err(|_| format!("no message within {wait:?}"))?;
        match message {
            Some(Ok(Message::Text(text))) => return Ok(Bytes::from(text)),
            Some(Ok(Message::Binary(data))) => return Ok(data),
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed by the server: {frame:?}"));
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(format!("WebSocket: {err}")),
            None => return Err("the server closed the WebSocket".into()),
        }
    }
}

async fn answer_pings(socket: &mut Socket, pings: usize) -> Result<(), String> {
    for _ in 0..pings {
        send(socket, Message::Binary(Bytes::from_static(b"PONG\r\n"))).await?;
    }
    Ok(())
}

/// `0-42.1-17` → [(0, 42), (1, 17)].
fn parse_cursor(cursor: &str) -> Result<Vec<(u32, u64)>, String> {
    cursor
        .split('.')
        .map(|pair| {
            let (partition, offset) = pair.split_once('-')?;
            Some((partition.parse().ok()?, offset.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("bad cursor {cursor:?}"))
}

/// Records in one tidegate message: the cursor's advance over `positions` (which it
/// updates). With `deep`, parses the whole message, checks each record's offset against the
/// positions, and hands each value to `on_value`.
fn count_tidegate(
    data: &[u8],
    positions: &mut Vec<(u32, u64)>,
    deep: bool,
    mut on_value: impl FnMut(&[u8]),
) -> Result<u64, String> {
    const CURSOR: &[u8] = br#""cursor":""#;
    let text = || String::from_utf8_lossy(&data[..data.len().min(300)]).into_owned();
    if !data.starts_with(br#"{"type":"records""#) {
        return Err(format!("unexpected message {}", text()));
    }
    let at =
        memchr::memmem::rfind(data, CURSOR).ok_or_else(|| format!("no cursor in {}", text()))?;
    let cursor = &data[at + CURSOR.len()..];
    let end = memchr::memchr(b'"', cursor).ok_or_else(|| format!("bad cursor in {}", text()))?;
    let cursor = std::str::from_utf8(&cursor[..end]).map_err(|_| "cursor not UTF-8")?;
    let next = parse_cursor(cursor)?;
    let mut advance = 0;
    for &(partition, offset) in &next {
        let before = positions
            .iter()
            .find(|(p, _)| *p == partition)
            .map_or(0, |&(_, o)| o);
        advance += offset
            .checked_sub(before)
            .ok_or_else(|| format!("cursor went back: {cursor}"))?;
    }
    // Records, counted without parsing (every record starts so, and the bench's values
    // never hold that text); on redb exactly the cursor's advance, on Kafka up to it.
    let records = memchr::memmem::find_iter(data, br#"{"partition":"#).count() as u64;
    if records > advance {
        return Err(format!(
            "{records} records but the cursor moved by {advance}"
        ));
    }
    if deep {
        #[derive(Deserialize)]
        struct Frame<'a> {
            #[serde(borrow)]
            records: Vec<FrameRecord<'a>>,
        }
        #[derive(Deserialize)]
        struct FrameRecord<'a> {
            partition: u32,
            offset: u64,
            #[serde(borrow)]
            value: &'a RawValue,
        }
        let frame: Frame<'_> =
            serde_json::from_slice(data).map_err(|err| format!("records message: {err}"))?;
        let mut expected = positions.clone();
        for record in &frame.records {
            let slot = match expected.iter_mut().find(|(p, _)| *p == record.partition) {
                Some(slot) => slot,
                None => {
                    expected.push((record.partition, record.offset));
                    expected.last_mut().expect("pushed")
                }
            };
            // At or past the next offset: Kafka's transaction markers take offsets.
            if record.offset < slot.1 {
                return Err(format!(
                    "partition {}: offset {} where {} was next",
                    record.partition, record.offset, slot.1
                ));
            }
            slot.1 = record.offset + 1;
            on_value(record.value.get().as_bytes());
        }
        if frame.records.len() as u64 != records {
            return Err(format!(
                "{} records parsed, {records} counted",
                frame.records.len()
            ));
        }
    }
    *positions = next;
    Ok(records)
}

/// The first run of digits in `bytes` (the send time the latency part writes first).
fn leading_number(bytes: &[u8]) -> Option<u64> {
    let start = bytes.iter().position(u8::is_ascii_digit)?;
    let digits = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, &d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
    Some(digits)
}

async fn open_subscribers(
    target: Target<'_>,
    topic: &str,
    count: usize,
    from: Start,
    small: bool,
) -> Result<Vec<Subscriber>, String> {
    let opened: Vec<Result<Subscriber, String>> = futures_util::stream::iter(0..count)
        .map(|_| Subscriber::open(target, topic, from, small))
        .buffered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    opened.into_iter().collect()
}

// ---------------------------------------------------------------------------------------
// Publishers

enum Publisher {
    Tidegate {
        conn: Conn,
        addr: SocketAddr,
        topic: String,
    },
    Nats {
        client: nats::TcpClient,
        subject: String,
        frame: Vec<u8>,
    },
}

impl Publisher {
    async fn open(target: Target<'_>, topic: &str) -> Result<Publisher, String> {
        Ok(match target {
            Target::Tidegate(server, _) => Publisher::Tidegate {
                conn: Conn::connect(server.addr)
                    .await
                    .map_err(|err| format!("connecting to {}: {err}", server.addr))?,
                addr: server.addr,
                topic: topic.to_owned(),
            },
            Target::Nats(server) => Publisher::Nats {
                client: nats::TcpClient::connect(server.addr).await?,
                subject: topic.to_owned(),
                frame: Vec::new(),
            },
        })
    }

    /// Publishes `count` copies of `value` and waits until the server has them.
    async fn publish(&mut self, value: &str, count: u64) -> Result<(), String> {
        match self {
            Publisher::Tidegate { conn, addr, topic } => {
                let request = publish_request(*addr, topic, value, count);
                let response = tokio::time::timeout(REQUEST_TIMEOUT, conn.send(&request))
                    .await
                    .map_err(|_| "publish timed out".to_owned())?
                    .map_err(|err| format!("publish: {err}"))?;
                if response.status != 200 {
                    return Err(format!(
                        "publish: HTTP {}: {}",
                        response.status,
                        String::from_utf8_lossy(response.body)
                    ));
                }
                check_publish(response.body, count)?;
                Ok(())
            }
            Publisher::Nats {
                client,
                subject,
                frame,
            } => publish_nats(client, frame, subject, value, count).await,
        }
    }
}

/// `count` `PUB`s of `value`, then `PING`: returns once the server has processed them.
async fn publish_nats(
    client: &mut nats::TcpClient,
    frame: &mut Vec<u8>,
    subject: &str,
    value: &str,
    count: u64,
) -> Result<(), String> {
    frame.clear();
    for _ in 0..count {
        nats::publish_frame(frame, subject, None, value.as_bytes());
    }
    client.write(frame).await?;
    client.flush().await
}

// ---------------------------------------------------------------------------------------
// Fan-out

struct FanoutRow {
    system: System,
    subscribers: usize,
    records: u64,
    elapsed: Duration,
    cpu: Cpu,
}

impl FanoutRow {
    fn deliveries_per_sec(&self) -> f64 {
        (self.records * self.subscribers as u64) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn fanout(
    target: Target<'_>,
    args: &PushArgs,
    value: &str,
    subscribers: usize,
    records: u64,
) -> Result<FanoutRow, String> {
    let topic = format!("fanout-{subscribers}");
    if let Target::Tidegate(server, _) = target {
        create_topic(server.addr, &topic, 1).await?;
    }
    let subs = open_subscribers(target, &topic, subscribers, Start::Latest, false).await?;
    let mut publisher = Publisher::open(target, &topic).await?;
    let progress: Vec<Arc<AtomicU64>> = (0..subscribers).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = subs
        .into_iter()
        .zip(&progress)
        .map(|(sub, progress)| tokio::spawn(sub.count(records, progress.clone())))
        .collect();

    let cpu = CpuMeter::start(target.pid());
    let started = Instant::now();
    let mut published = 0;
    while published < records {
        // A subscriber that ended before everything was published failed: its error is
        // the answer (the window would otherwise wait for it forever).
        if tasks.iter().any(tokio::task::JoinHandle::is_finished) {
            break;
        }
        let slowest = progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        if published - slowest + args.publish_batch > args.window {
            tokio::time::sleep(Duration::from_micros(100)).await;
            continue;
        }
        let batch = args.publish_batch.min(records - published);
        publisher.publish(value, batch).await?;
        published += batch;
    }
    let mut last = started;
    for task in tasks {
        let done = task
            .await
            .map_err(|err| format!("subscriber task: {err}"))??;
        last = last.max(done);
    }
    Ok(FanoutRow {
        system: target.system(),
        subscribers,
        records,
        elapsed: last - started,
        cpu: cpu.stop(),
    })
}

// ---------------------------------------------------------------------------------------
// Latency

struct LatencyRow {
    system: System,
    subscribers: usize,
    /// Sorted, in ns.
    latencies: Vec<u64>,
    cpu: Cpu,
}

async fn latency(target: Target<'_>, args: &PushArgs) -> Result<LatencyRow, String> {
    let topic = "latency";
    if let Target::Tidegate(server, _) = target {
        create_topic(server.addr, topic, 1).await?;
    }
    let total = args.latency_rate * args.latency_secs;
    let subs = open_subscribers(
        target,
        topic,
        args.latency_subscribers,
        Start::Latest,
        false,
    )
    .await?;
    let epoch = Instant::now();
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|sub| tokio::spawn(sub.latencies(total, epoch)))
        .collect();
    let cpu = CpuMeter::start(target.pid());
    let interval = Duration::from_nanos(1_000_000_000 / args.latency_rate);
    // Record i leaves at epoch + i × interval; publisher k of n sends i ≡ k (mod n).
    let publishers = match target {
        Target::Tidegate(..) => LATENCY_CONNECTIONS,
        Target::Nats(_) => 1,
    };
    let value_bytes = args.value_bytes;
    let mut sends = Vec::new();
    for k in 0..publishers {
        let mut publisher = Publisher::open(target, topic).await?;
        sends.push(async move {
            let mut i = k as u64;
            while i < total {
                tokio::time::sleep_until((epoch + interval * i as u32).into()).await;
                let sent = epoch.elapsed().as_nanos() as u64;
                let value = timed_value(sent, value_bytes);
                if let Publisher::Nats {
                    client,
                    subject,
                    frame,
                } = &mut publisher
                {
                    // Fire and forget, as NATS publishers do; the TCP stream keeps order.
                    frame.clear();
                    nats::publish_frame(frame, subject, None, value.as_bytes());
                    client.write(frame).await?;
                } else {
                    publisher.publish(&value, 1).await?;
                }
                i += publishers as u64;
            }
            Ok::<(), String>(())
        });
    }
    futures_util::future::try_join_all(sends).await?;
    // Each subscriber's latencies are in send order: drop the warm-up's from each.
    let warmup = (LATENCY_WARMUP_SECS * args.latency_rate) as usize;
    let mut latencies = Vec::new();
    for task in tasks {
        let got = task
            .await
            .map_err(|err| format!("subscriber task: {err}"))??;
        latencies.extend(got.into_iter().skip(warmup));
    }
    let cpu = cpu.stop();
    latencies.sort_unstable();
    Ok(LatencyRow {
        system: target.system(),
        subscribers: args.latency_subscribers,
        latencies,
        cpu,
    })
}

/// A value of `bytes` bytes that starts with its send time: `{"t":"123…","pad":"xx…"}` for
/// tidegate's JSON, and the same text as the NATS payload.
fn timed_value(sent: u64, bytes: usize) -> String {
    let head = format!(r#"{{"t":"{sent}","pad":""#);
    let pad = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

// ---------------------------------------------------------------------------------------
// Catch-up

struct CatchupRow {
    system: System,
    records: u64,
    elapsed: Duration,
    cpu: Cpu,
}

async fn catchup(target: Target<'_>, args: &PushArgs, value: &str) -> Result<CatchupRow, String> {
    let topic = "catchup";
    eprintln!(
        "{}: catch-up over {} stored records (filling)",
        target.system(),
        args.catchup_records
    );
    let records = args.catchup_records;
    match target {
        Target::Tidegate(server, _) => {
            create_topic(server.addr, topic, 1).await?;
            prefill(server.addr, topic, value, records).await?;
        }
        Target::Nats(server) => jetstream_fill(server, topic, value, records).await?,
    }
    eprintln!("{}: catch-up reading", target.system());
    let cpu = CpuMeter::start(target.pid());
    let started = Instant::now();
    match target {
        Target::Tidegate(..) => {
            let sub = Subscriber::open(target, topic, Start::Earliest, false).await?;
            sub.count(records, Arc::default()).await?;
        }
        Target::Nats(server) => jetstream_read(server, topic, records).await?,
    }
    Ok(CatchupRow {
        system: target.system(),
        records,
        elapsed: started.elapsed(),
        cpu: cpu.stop(),
    })
}

/// A JetStream request from a TCP client: the answer's payload, refused if it reports an error.
async fn jetstream_request(
    client: &mut nats::TcpClient,
    subject: &str,
    body: &str,
) -> Result<String, String> {
    let mut frame = Vec::new();
    nats::publish_frame(&mut frame, subject, Some("_INBOX.bench"), body.as_bytes());
    client.write(&frame).await?;
    let answer = client.read_until(|d| d.sid == b"99", false).await?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if answer.contains(r#""error""#) {
        return Err(format!("{subject}: {answer}"));
    }
    Ok(answer)
}

/// Creates a file-backed stream on `subject` and stores `records` messages in it.
async fn jetstream_fill(
    server: &NatsServer,
    subject: &str,
    value: &str,
    records: u64,
) -> Result<(), String> {
    let mut client = nats::TcpClient::connect(server.addr).await?;
    client.write(b"SUB _INBOX.bench 99\r\n").await?;
    jetstream_request(
        &mut client,
        &format!("$JS.API.STREAM.CREATE.{subject}"),
        &format!(r#"{{"name":"{subject}","subjects":["{subject}"],"storage":"file"}}"#),
    )
    .await?;
    let mut frame = Vec::new();
    let mut written = 0;
    while written < records {
        let batch = 1000.min(records - written);
        publish_nats(&mut client, &mut frame, subject, value, batch).await?;
        written += batch;
    }
    // Stored asynchronously: wait until the stream holds them all.
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    loop {
        let info =
            jetstream_request(&mut client, &format!("$JS.API.STREAM.INFO.{subject}"), "").await?;
        if info.contains(&format!(r#""messages":{records},"#)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the stream never held {records} messages: {info}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the whole stream over WebSocket with a push consumer; answers flow control.
async fn jetstream_read(server: &NatsServer, subject: &str, records: u64) -> Result<(), String> {
    let mut socket = open_socket(server.ws_addr, "/", false).await?;
    let deliver = format!("{subject}.deliver");
    let mut hello = nats::CONNECT.to_vec();
    hello.extend_from_slice(format!("SUB {deliver} 1\r\nSUB _INBOX.consumer 2\r\n").as_bytes());
    let config = format!(
        r#"{{"stream_name":"{subject}","config":{{"deliver_subject":"{deliver}","deliver_policy":"all","ack_policy":"none","flow_control":true,"idle_heartbeat":5000000000}}}}"#
    );
    nats::publish_frame(
        &mut hello,
        &format!("$JS.API.CONSUMER.CREATE.{subject}"),
        Some("_INBOX.consumer"),
        config.as_bytes(),
    );
    send(&mut socket, Message::Binary(hello.into())).await?;
    let mut decoder = nats::Decoder::default();
    let mut received = 0u64;
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let mut refused = None;
    while received < records {
        let data = receive_within(&mut socket, SCENARIO_TIMEOUT).await?;
        let control = decoder.feed(&data, |delivery| match delivery.sid {
            b"1" if delivery.headers.is_empty() => received += 1,
            b"1" => {
                if let Some(reply) = delivery.reply
                    && memchr::memmem::find(delivery.headers, b"FlowControl").is_some()
                {
                    replies.push(reply.to_vec());
                }
            }
            _ => {
                if memchr::memmem::find(delivery.payload, br#""error""#).is_some() {
                    refused = Some(String::from_utf8_lossy(delivery.payload).into_owned());
                }
            }
        })?;
        if let Some(refused) = refused.take() {
            return Err(format!("consumer refused: {refused}"));
        }
        answer_pings(&mut socket, control.pings).await?;
        for reply in replies.drain(..) {
            let mut frame = Vec::new();
            nats::publish_frame(&mut frame, &String::from_utf8_lossy(&reply), None, b"");
            send(&mut socket, Message::Binary(frame.into())).await?;
        }
    }
    if received != records {
        return Err(format!("read {received} of {records} messages"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Idle connections

struct IdleRow {
    system: System,
    connections: usize,
    rss_before: u64,
    rss_after: u64,
}

async fn idle(target: Target<'_>, args: &PushArgs) -> Result<IdleRow, String> {
    let topic = "idle";
    if let Target::Tidegate(server, _) = target {
        create_topic(server.addr, topic, 1).await?;
    }
    // One connection first, so one-time allocations (the first socket, the topic's watch
    // channels) land in the baseline.
    let first = open_subscribers(target, topic, 1, Start::Latest, true).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_bytes(target.pid())?;
    eprintln!(
        "{}: opening {} idle WebSockets",
        target.system(),
        args.idle_connections
    );
    let subs = open_subscribers(target, topic, args.idle_connections, Start::Latest, true).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_bytes(target.pid())?;
    drop(subs);
    drop(first);
    Ok(IdleRow {
        system: target.system(),
        connections: args.idle_connections,
        rss_before,
        rss_after,
    })
}

fn rss_bytes(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|err| format!("reading /proc/{pid}/status: {err}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}

// ---------------------------------------------------------------------------------------
// CPU and report

/// CPU use of the server and of this bench, in % of one core.
#[derive(Clone, Copy)]
struct Cpu {
    server: f64,
    bench: f64,
}

struct CpuMeter {
    pid: u32,
    started: Instant,
    server: u64,
    bench: u64,
}

impl CpuMeter {
    fn start(pid: u32) -> CpuMeter {
        CpuMeter {
            pid,
            started: Instant::now(),
            server: proc_cpu_ticks(&format!("/proc/{pid}/stat")).unwrap_or(0),
            bench: proc_cpu_ticks("/proc/self/stat").unwrap_or(0),
        }
    }

    fn stop(self) -> Cpu {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let percent = |now: Option<u64>, then: u64| {
            now.unwrap_or(then).saturating_sub(then) as f64 / super::CLOCK_TICKS_PER_SEC / seconds
                * 100.0
        };
        Cpu {
            server: percent(
                proc_cpu_ticks(&format!("/proc/{}/stat", self.pid)),
                self.server,
            ),
            bench: percent(proc_cpu_ticks("/proc/self/stat"), self.bench),
        }
    }
}

#[derive(Default)]
struct Report {
    fanout: Vec<FanoutRow>,
    latency: Vec<LatencyRow>,
    catchup: Vec<CatchupRow>,
    idle: Vec<IdleRow>,
}

/// `a / b` as `1.23×`, or `–` without a peer figure.
fn ratio(a: f64, b: Option<f64>) -> String {
    b.filter(|b| *b > 0.0)
        .map_or_else(|| "–".to_owned(), |b| format!("{:.2}×", a / b))
}

impl Report {
    fn print(&self, server_bin: &std::path::Path, args: &PushArgs, load_before: &str) {
        println!("## Push results\n");
        let command: Vec<String> = std::env::args().collect();
        println!("`{}` against `{}`", command.join(" "), server_bin.display());
        if let Some(bin) = args.peer() {
            println!("and `{bin}` ({}).", NatsServer::version(bin));
        }
        println!(
            "\nValues of {} bytes; CPU in % of one core ({} logical CPUs, shared by servers and bench).\n",
            args.value_bytes,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        if !self.fanout.is_empty() {
            println!("### Fan-out (deliveries/s)\n");
            println!(
                "| system | subscribers | records | deliveries | seconds | deliveries/s | vs NATS | server CPU % | bench CPU % |"
            );
            println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            for row in &self.fanout {
                let peer = self
                    .fanout
                    .iter()
                    .find(|r| r.system == System::Nats && r.subscribers == row.subscribers)
                    .map(FanoutRow::deliveries_per_sec);
                println!(
                    "| {} | {} | {} | {} | {:.2} | {:.0} | {} | {:.0} | {:.0} |",
                    row.system,
                    row.subscribers,
                    row.records,
                    row.records * row.subscribers as u64,
                    row.elapsed.as_secs_f64(),
                    row.deliveries_per_sec(),
                    ratio(row.deliveries_per_sec(), peer),
                    row.cpu.server,
                    row.cpu.bench
                );
            }
            println!();
        }
        if !self.latency.is_empty() {
            println!(
                "### Latency, publish → WebSocket delivery ({} records/s for {} s, first {} s dropped)\n",
                args.latency_rate, args.latency_secs, LATENCY_WARMUP_SECS
            );
            println!(
                "| system | subscribers | deliveries | p50 ms | p99 ms | max ms | p99 vs NATS | server CPU % | bench CPU % |"
            );
            println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            let p99 = |row: &LatencyRow| percentile(&row.latencies, 0.99) as f64;
            for row in &self.latency {
                let peer = self
                    .latency
                    .iter()
                    .find(|r| r.system == System::Nats)
                    .map(p99);
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |",
                    row.system,
                    row.subscribers,
                    row.latencies.len(),
                    ms(percentile(&row.latencies, 0.5)),
                    ms(percentile(&row.latencies, 0.99)),
                    ms(row.latencies.last().copied().unwrap_or(0)),
                    ratio(p99(row), peer),
                    row.cpu.server,
                    row.cpu.bench
                );
            }
            println!();
        }
        if !self.catchup.is_empty() {
            println!("### Catch-up: one subscriber from the earliest of the stored records\n");
            println!(
                "| system | records | seconds | records/s | vs NATS JetStream | server CPU % | bench CPU % |"
            );
            println!("|---|---:|---:|---:|---:|---:|---:|");
            let rate = |row: &CatchupRow| row.records as f64 / row.elapsed.as_secs_f64().max(1e-9);
            let peer = self
                .catchup
                .iter()
                .find(|r| r.system == System::Nats)
                .map(rate);
            for row in &self.catchup {
                let system = match row.system {
                    System::Nats => "NATS JetStream (push consumer, flow control)".to_owned(),
                    other => other.to_string(),
                };
                println!(
                    "| {system} | {} | {:.2} | {:.0} | {} | {:.0} | {:.0} |",
                    row.records,
                    row.elapsed.as_secs_f64(),
                    rate(row),
                    ratio(rate(row), peer),
                    row.cpu.server,
                    row.cpu.bench
                );
            }
            println!();
        }
        if !self.idle.is_empty() {
            println!("### Idle WebSockets (one subscription each), server RSS\n");
            println!(
                "| system | connections | RSS before MiB | RSS after MiB | KiB per connection | vs NATS |"
            );
            println!("|---|---:|---:|---:|---:|---:|");
            let per = |row: &IdleRow| {
                row.rss_after.saturating_sub(row.rss_before) as f64
                    / row.connections as f64
                    / 1024.0
            };
            let peer = self.idle.iter().find(|r| r.system == System::Nats).map(per);
            for row in &self.idle {
                println!(
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
                    row.system,
                    row.connections,
                    row.rss_before as f64 / 1048576.0,
                    row.rss_after as f64 / 1048576.0,
                    per(row),
                    ratio(per(row), peer)
                );
            }
            println!();
        }
        println!(
            "Load average (1, 5, 15 min) before the run: {load_before}; after: {}.",
            load_average()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_records_by_cursor_and_checks_them_deeply() {
        let mut positions = vec![(0, 5)];
        let frame = br#"{"type":"records","sub":"s1","topic":"t","records":[{"partition":0,"offset":5,"timestamp":1,"key":null,"value":{"t":"42","pad":""},"headers":{}},{"partition":0,"offset":6,"timestamp":1,"key":null,"value":{"t":"43","pad":""},"headers":{}}],"cursor":"0-7"}"#;
        let mut seen = Vec::new();
        let count = count_tidegate(frame, &mut positions, true, |v| {
            seen.push(leading_number(v))
        })
        .expect("counts");
        assert_eq!(count, 2);
        assert_eq!(positions, vec![(0, 7)]);
        assert_eq!(seen, vec![Some(42), Some(43)]);
        // The same frame again: offsets do not match the positions.
        let mut stale = vec![(0, 6)];
        assert!(count_tidegate(frame, &mut stale, true, |_| {}).is_err());
    }

    #[test]
    fn timed_values_have_the_asked_size_and_carry_the_time() {
        let value = timed_value(123_456_789, 128);
        assert_eq!(value.len(), 128);
        assert_eq!(leading_number(value.as_bytes()), Some(123_456_789));
        serde_json::from_str::<serde_json::Value>(&value).expect("JSON");
    }
}
