//! Prometheus metrics, served at `/metrics` in the text format by the `prometheus` crate.
//!
//! One [`Metrics`] per server (its own registry, so servers in one process never mix
//! their numbers). The parts are handed to whoever observes the event: the HTTP layer
//! (requests), the guard (records in and out, for every transport), the log writer
//! (commits, fsyncs, retention), the WebSocket and SSE sessions (connections). What is a
//! state rather than an event (group members, rebalances, lag) is read from the group
//! coordinator when scraped, so a deleted group leaves no stale series behind.
//!
//! Label cardinality is bounded: routes are the registered patterns, methods a fixed set,
//! and topic and group labels stop at `--metrics-max-topics` / `--metrics-max-groups`
//! distinct values; the rest are counted under [`OTHER`].

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of ours starts `tidegate_`; the process collector's keep their standard
/// `process_` names.
const NAMESPACE: &str = "tidegate";

/// The label value that stands for every topic or group past the cap.
pub const OTHER: &str = "_other";

/// How many distinct topic and group label values are kept.
#[derive(Clone, Copy, Debug)]
pub struct LabelCaps {
    pub topics: usize,
    pub groups: usize,
}

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    /// Scrapes one at a time: each resets and refills the group series before gathering.
    scraping: Mutex<()>,
    pub http: HttpMetrics,
    pub traffic: TrafficMetrics,
    pub log: LogMetrics,
    pub push: PushMetrics,
    pub cluster: ClusterMetrics,
    pub overload: OverloadMetrics,
    groups: GroupMetrics,
}

/// Client connections and what the overload limits refused.
#[derive(Clone)]
pub struct OverloadMetrics {
    /// Open client connections (HTTP, WebSocket and SSE).
    pub connections: IntGauge,
    /// Connections answered 503 `too_many_connections` (`--max-connections`).
    pub connections_refused: IntCounter,
    /// Connections cut by a deadline: `header` (no complete request head within
    /// `--header-timeout-ms`) or `close` (a close the server started that the client did
    /// not take within `--ws-close-timeout-ms`).
    pub connections_cut: IntCounterVec,
    /// Requests, WebSocket ops and publishes refused by a quota, by quota.
    pub rate_limited: IntCounterVec,
}

/// What this replica does for the others (`--cluster-secret`; zero without it).
#[derive(Clone)]
pub struct ClusterMetrics {
    /// Partitions of `__tidegate_groups` this replica runs.
    pub shares_owned: IntGauge,
    /// Groups in those shares, as of the last listing (every scrape lists).
    pub groups_owned: IntGauge,
    /// Group calls sent to the replica that runs the group, by outcome.
    pub forwarded: IntCounterVec,
}

/// Requests by route pattern, method and status; latency by route and method.
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

/// Records and their bytes (key, value and headers) in and out, per topic.
pub struct TrafficMetrics {
    families: [IntCounterVec; 4],
    /// Each topic's series, resolved once: a delivery then costs a map lookup under a read
    /// lock and two atomic adds, not two label hashes and lookups (fan-out calls this for
    /// every frame of every subscriber).
    topics: RwLock<HashMap<String, TopicCounters>>,
    /// The series past the cap, under [`OTHER`].
    other: TopicCounters,
    cap: usize,
}

/// One topic's series, in the order of `TrafficMetrics::families`.
struct TopicCounters {
    records_in: IntCounter,
    bytes_in: IntCounter,
    records_out: IntCounter,
    bytes_out: IntCounter,
}

impl TopicCounters {
    fn new(families: &[IntCounterVec; 4], topic: &str) -> TopicCounters {
        let [records_in, bytes_in, records_out, bytes_out] = families
            .each_ref()
            .map(|family| family.with_label_values(&[topic]));
        TopicCounters {
            records_in,
            bytes_in,
            records_out,
            bytes_out,
        }
    }
}

/// The log writer's group commits and retention (see `Metrics::new` for each family).
#[derive(Clone)]
pub struct LogMetrics {
    /// Requests per group commit that was committed.
    pub commit_requests: Histogram,
    /// Staging and committing one group commit, fsync included.
    pub commit_duration: Histogram,
    /// Durable commits.
    pub fsyncs: IntCounter,
    /// Kafka transactions that failed and appended nothing (aborted, or abandoned with
    /// their producer); the embedded store has none.
    pub transaction_aborts: IntCounter,
    /// What retention deleted.
    pub retention_batches: IntCounter,
    pub retention_records: IntCounter,
    pub retention_bytes: IntCounter,
}

/// Long-lived connections; the gauges are held by [`Open`] guards.
pub struct PushMetrics {
    pub ws_connections: IntGauge,
    pub ws_subscriptions: IntGauge,
    /// Closes with 4008.
    pub ws_slow_consumer_closes: IntCounter,
    pub sse_streams: IntGauge,
}

/// Counts one open thing (a connection, a subscription) in a gauge while it lives.
pub struct Open(IntGauge);

impl Open {
    /// Raises `gauge` now and lowers it when dropped.
    pub fn new(gauge: &IntGauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Set from the coordinator at each scrape.
struct GroupMetrics {
    members: IntGaugeVec,
    rebalances: IntCounterVec,
    lag: IntGaugeVec,
    cap: usize,
}

/// One group as a scrape sees it.
pub struct GroupSample {
    pub group: String,
    pub members: usize,
    /// Rebalances since the group formed in this server's life (its generation).
    pub rebalances: u64,
    /// `(topic, partition, lag)` of every partition with a committed offset.
    pub lag: Vec<(String, u32, u64)>,
}

/// Bucket bounds (seconds) for request latency: 1 ms to 10 s.
const REQUEST_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Bucket bounds (seconds) for a group commit, fsync included: 50 µs to 1 s.
const COMMIT_SECONDS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];
/// Bucket bounds for requests per group commit: 1 to the writer's bound of 4096.
const COMMIT_REQUESTS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

impl Metrics {
    pub fn new(caps: LabelCaps) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let metrics = Metrics {
            http: HttpMetrics {
                requests: r.counter_vec(
                    "http_requests_total",
                    "HTTP requests answered, by route pattern, method and status.",
                    &["route", "method", "status"],
                )?,
                duration: r.histogram_vec(
                    HistogramOpts::new(
                        "http_request_duration_seconds",
                        "Time to answer an HTTP request (until the response starts).",
                    )
                    .buckets(REQUEST_SECONDS.to_vec()),
                    &["route", "method"],
                )?,
            },
            traffic: TrafficMetrics::new(
                [
                    r.counter_vec(
                        "records_in_total",
                        "Records published, by topic.",
                        &["topic"],
                    )?,
                    r.counter_vec(
                        "record_bytes_in_total",
                        "Bytes of published records (key, value and headers), by topic.",
                        &["topic"],
                    )?,
                    r.counter_vec(
                        "records_out_total",
                        "Records delivered by fetch, group poll, WebSocket and SSE, by topic.",
                        &["topic"],
                    )?,
                    r.counter_vec(
                        "record_bytes_out_total",
                        "Bytes of delivered records (key, value and headers), by topic.",
                        &["topic"],
                    )?,
                ],
                caps.topics,
            ),
            log: LogMetrics {
                commit_requests: r.histogram(
                    HistogramOpts::new(
                        "commit_batch_requests",
                        "Requests (publishes, topic and offset changes) per group commit.",
                    )
                    .buckets(COMMIT_REQUESTS.to_vec()),
                )?,
                commit_duration: r.histogram(
                    HistogramOpts::new(
                        "commit_duration_seconds",
                        "Time to stage and commit one group commit, fsync included.",
                    )
                    .buckets(COMMIT_SECONDS.to_vec()),
                )?,
                fsyncs: r.counter(
                    "fsyncs_total",
                    "Durable commits: each syncs the database file to disk.",
                )?,
                transaction_aborts: r.counter(
                    "kafka_transaction_aborts_total",
                    "Kafka transactions (group commits) that failed and appended nothing; 0 on the embedded store.",
                )?,
                retention_batches: r.counter(
                    "retention_deleted_batches_total",
                    "Batches deleted by retention.",
                )?,
                retention_records: r.counter(
                    "retention_deleted_records_total",
                    "Records deleted by retention.",
                )?,
                retention_bytes: r.counter(
                    "retention_deleted_bytes_total",
                    "Bytes of batches deleted by retention.",
                )?,
            },
            push: PushMetrics {
                ws_connections: r.gauge("websocket_connections", "Open WebSocket connections.")?,
                ws_subscriptions: r.gauge(
                    "websocket_subscriptions",
                    "Subscriptions of open WebSocket connections.",
                )?,
                ws_slow_consumer_closes: r.counter(
                    "websocket_slow_consumer_closes_total",
                    "WebSocket connections closed with 4008 because they stopped reading.",
                )?,
                sse_streams: r.gauge("sse_streams", "Open Server-Sent Events streams.")?,
            },
            cluster: ClusterMetrics {
                shares_owned: r.gauge(
                    "cluster_shares_owned",
                    "Shares (partitions of __tidegate_groups) of the consumer groups this replica runs.",
                )?,
                groups_owned: r.gauge(
                    "cluster_groups_owned",
                    "Consumer groups this replica runs for the cluster, as of the last listing.",
                )?,
                forwarded: r.counter_vec(
                    "cluster_forwarded_total",
                    "Group calls sent to the replica that runs the group: answered, not_owner (it had moved on), unreachable.",
                    &["outcome"],
                )?,
            },
            overload: OverloadMetrics {
                connections: r.gauge(
                    "connections",
                    "Open client connections (HTTP, WebSocket and SSE).",
                )?,
                connections_refused: r.counter(
                    "connections_refused_total",
                    "Connections answered 503 too_many_connections (--max-connections).",
                )?,
                connections_cut: r.counter_vec(
                    "connections_cut_total",
                    "Connections closed by a deadline: header (--header-timeout-ms) or close (--ws-close-timeout-ms).",
                    &["reason"],
                )?,
                rate_limited: r.counter_vec(
                    "rate_limited_total",
                    "Requests, WebSocket ops and publishes refused 429 rate_limited, by quota: requests or publish_bytes.",
                    &["quota"],
                )?,
            },
            groups: GroupMetrics {
                members: r.gauge_vec(
                    "group_members",
                    "Live members of a consumer group.",
                    &["group"],
                )?,
                rebalances: r.counter_vec(
                    "group_rebalances_total",
                    "Rebalances of a consumer group since it formed on this server.",
                    &["group"],
                )?,
                lag: r.gauge_vec(
                    "group_lag",
                    "Records between a group's committed offset and the high watermark.",
                    &["group", "topic", "partition"],
                )?,
                cap: caps.groups,
            },
            registry,
            scraping: Mutex::default(),
        };
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    /// How many groups a scrape reports: the first ones by name.
    pub fn group_cap(&self) -> usize {
        self.groups.cap
    }

    /// The text exposition of every metric, with the groups as `groups` describes them.
    pub fn render(&self, groups: Vec<GroupSample>) -> String {
        let _one_at_a_time = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        self.groups.set(groups);
        let mut text = Vec::new();
        // Encoding into memory fails only on invalid metric names, which are constants.
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::error!(%err, "encoding metrics failed");
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

impl HttpMetrics {
    /// One answered request; `route` is the matched pattern.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let method = match method {
            "GET" | "POST" | "PATCH" | "DELETE" | "PUT" | "HEAD" | "OPTIONS" => method,
            _ => "other",
        };
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }
}

impl TrafficMetrics {
    fn new(families: [IntCounterVec; 4], cap: usize) -> TrafficMetrics {
        TrafficMetrics {
            other: TopicCounters::new(&families, OTHER),
            families,
            topics: RwLock::default(),
            cap,
        }
    }

    /// Records appended (replays excluded) and their payload bytes.
    pub fn published(&self, topic: &str, records: usize, bytes: usize) {
        self.with_topic(topic, |counters| {
            counters.records_in.inc_by(records as u64);
            counters.bytes_in.inc_by(bytes as u64);
        });
    }

    /// Drops a deleted topic's series and frees its place under the cap.
    pub fn forget(&self, topic: &str) {
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if topics.remove(topic).is_some() {
            for family in &self.families {
                // Absent only if never created, which the map rules out.
                let _ = family.remove_label_values(&[topic]);
            }
        }
    }

    /// Records handed to one consumer (a fetch page, a poll, a pushed frame).
    pub fn delivered(&self, topic: &str, records: usize, bytes: usize) {
        if records == 0 {
            return;
        }
        self.with_topic(topic, |counters| {
            counters.records_out.inc_by(records as u64);
            counters.bytes_out.inc_by(bytes as u64);
        });
    }

    /// Every tracked topic's counters since the server started: records in, bytes in,
    /// records out, bytes out. Topics past the cap (counted under `_other`) are not listed.
    pub fn totals(&self) -> Vec<(String, [u64; 4])> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics
            .iter()
            .map(|(topic, c)| {
                let totals = [&c.records_in, &c.bytes_in, &c.records_out, &c.bytes_out]
                    .map(|counter| counter.get());
                (topic.clone(), totals)
            })
            .collect()
    }

    /// Runs `count` on the topic's series: its own while fewer topics than the cap were
    /// seen, else the shared [`OTHER`] ones.
    fn with_topic(&self, topic: &str, count: impl FnOnce(&TopicCounters)) {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        if let Some(counters) = topics.get(topic) {
            return count(counters);
        }
        if topics.len() >= self.cap {
            return count(&self.other);
        }
        drop(topics);
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if topics.len() >= self.cap && !topics.contains_key(topic) {
            return count(&self.other);
        }
        let counters = topics
            .entry(topic.to_owned())
            .or_insert_with(|| TopicCounters::new(&self.families, topic));
        count(counters);
    }
}

impl GroupMetrics {
    /// Replaces every group series with `groups`.
    fn set(&self, groups: Vec<GroupSample>) {
        self.members.reset();
        self.rebalances.reset();
        self.lag.reset();
        for sample in groups {
            let group = sample.group.as_str();
            self.members
                .with_label_values(&[group])
                .set(sample.members as i64);
            self.rebalances
                .with_label_values(&[group])
                .inc_by(sample.rebalances);
            for (topic, partition, lag) in &sample.lag {
                self.lag
                    .with_label_values(&[group, topic, &partition.to_string()])
                    .set(i64::try_from(*lag).unwrap_or(i64::MAX));
            }
        }
    }
}

/// Creates metrics and registers them in one step.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn register<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: M,
    ) -> Result<M, prometheus::Error> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.register(IntCounter::with_opts(opts(name, help))?)
    }

    fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.register(IntCounterVec::new(opts(name, help), labels)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.register(IntGauge::with_opts(opts(name, help))?)
    }

    fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.register(IntGaugeVec::new(opts(name, help), labels)?)
    }

    fn histogram(&self, opts: HistogramOpts) -> Result<Histogram, prometheus::Error> {
        self.register(Histogram::with_opts(opts.namespace(NAMESPACE))?)
    }

    fn histogram_vec(
        &self,
        opts: HistogramOpts,
        labels: &[&str],
    ) -> Result<HistogramVec, prometheus::Error> {
        self.register(HistogramVec::new(opts.namespace(NAMESPACE), labels)?)
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}
