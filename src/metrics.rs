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

use std::collections::HashSet;
use std::sync::Mutex;
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
    pub http: HttpMetrics,
    pub traffic: TrafficMetrics,
    pub log: LogMetrics,
    pub push: PushMetrics,
    groups: GroupMetrics,
}

/// Requests by route pattern, method and status; latency by route and method.
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

/// Records and their bytes (key, value and headers) in and out, per topic.
pub struct TrafficMetrics {
    records_in: IntCounterVec,
    bytes_in: IntCounterVec,
    records_out: IntCounterVec,
    bytes_out: IntCounterVec,
    topics: CappedLabels,
}

/// The log writer's group commits and retention.
#[derive(Clone)]
pub struct LogMetrics {
    pub commit_requests: Histogram,
    pub commit_duration: Histogram,
    pub fsyncs: IntCounter,
    pub retention_batches: IntCounter,
    pub retention_records: IntCounter,
    pub retention_bytes: IntCounter,
}

/// Long-lived connections.
pub struct PushMetrics {
    pub ws_connections: IntGauge,
    pub ws_subscriptions: IntGauge,
    pub ws_slow_consumer_closes: IntCounter,
    pub sse_streams: IntGauge,
}

/// Counts one open thing (a connection, a subscription) in a gauge while it lives.
pub struct Open(IntGauge);

impl Open {
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

/// A label whose distinct values stop at a cap.
struct CappedLabels {
    seen: Mutex<HashSet<String>>,
    cap: usize,
}

impl CappedLabels {
    fn new(cap: usize) -> CappedLabels {
        CappedLabels {
            seen: Mutex::default(),
            cap,
        }
    }

    /// `value` itself while fewer than `cap` values were seen (or it is one of them).
    fn label<'a>(&self, value: &'a str) -> &'a str {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.cap {
            seen.insert(value.to_owned());
            return value;
        }
        OTHER
    }
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
            traffic: TrafficMetrics {
                records_in: r.counter_vec(
                    "records_in_total",
                    "Records published, by topic.",
                    &["topic"],
                )?,
                bytes_in: r.counter_vec(
                    "record_bytes_in_total",
                    "Bytes of published records (key, value and headers), by topic.",
                    &["topic"],
                )?,
                records_out: r.counter_vec(
                    "records_out_total",
                    "Records delivered by fetch, group poll, WebSocket and SSE, by topic.",
                    &["topic"],
                )?,
                bytes_out: r.counter_vec(
                    "record_bytes_out_total",
                    "Bytes of delivered records (key, value and headers), by topic.",
                    &["topic"],
                )?,
                topics: CappedLabels::new(caps.topics),
            },
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
        };
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    /// The text exposition of every metric, with the groups as `groups` describes them.
    pub fn render(&self, groups: Vec<GroupSample>) -> String {
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
    pub fn published(&self, topic: &str, records: usize, bytes: usize) {
        let topic = self.topics.label(topic);
        self.records_in
            .with_label_values(&[topic])
            .inc_by(records as u64);
        self.bytes_in
            .with_label_values(&[topic])
            .inc_by(bytes as u64);
    }

    pub fn delivered(&self, topic: &str, records: usize, bytes: usize) {
        if records == 0 {
            return;
        }
        let topic = self.topics.label(topic);
        self.records_out
            .with_label_values(&[topic])
            .inc_by(records as u64);
        self.bytes_out
            .with_label_values(&[topic])
            .inc_by(bytes as u64);
    }
}

impl GroupMetrics {
    /// Replaces every group series with `groups` (the first `cap` by name).
    fn set(&self, mut groups: Vec<GroupSample>) {
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups.truncate(self.cap);
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
