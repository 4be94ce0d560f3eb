//! The one configuration, parsed from flags and `TIDEGATE_*` environment variables and
//! validated before anything starts. Nothing reads the environment after this.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::groups::GroupSettings;
use crate::log::redb::{Fsync, LogOptions};

#[derive(Debug, Parser)]
#[command(
    name = "tidegate",
    version,
    about = "HTTP/WebSocket gateway for durable event streams"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `tidegate` alone runs `tidegate serve`.
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve(Box<Config>),
    /// Print a token signed with the configured HS secret (or the data directory's).
    Token(Box<TokenArgs>),
    /// Check the embedded store's database file (the redb backend's) for damage without
    /// changing it (stop the server first).
    /// Exits 0 when intact, 1 when damaged.
    Check(CheckArgs),
    /// Copy an embedded data directory (stop the server first) into a Kafka cluster:
    /// topics, records at the same offsets, committed group offsets. Resumable: a second
    /// run finishes an interrupted one without duplicates.
    Export(Box<ExportArgs>),
}

/// Arguments of `tidegate export`.
#[derive(Clone, Debug, Args)]
pub struct ExportArgs {
    /// The cluster to copy into, `host:port[,host:port]`.
    #[arg(long = "to-kafka", value_name = "BOOTSTRAP")]
    pub to_kafka: String,
    /// The embedded data directory to copy from.
    #[arg(long, env = "TIDEGATE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Only these topics (comma-separated); default every topic.
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

impl ExportArgs {
    /// `--to-kafka` names the cluster; a `--kafka-bootstrap` beside it is a mistake.
    pub fn validate(&mut self) -> Result<(), String> {
        if self
            .kafka
            .kafka_bootstrap
            .as_ref()
            .is_some_and(|b| *b != self.to_kafka)
        {
            return Err("export takes the cluster from --to-kafka; drop --kafka-bootstrap".into());
        }
        self.kafka.kafka_bootstrap = Some(self.to_kafka.clone());
        self.kafka.validate()
    }
}

/// Arguments of `tidegate check`.
#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    /// Directory holding the database file.
    #[arg(long, env = "TIDEGATE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Arguments of `tidegate token`.
#[derive(Clone, Debug, Args)]
pub struct TokenArgs {
    /// Subject of the token (who it is for).
    #[arg(long)]
    pub sub: String,
    /// Space-separated scopes, e.g. 'publish:orders subscribe:web-*' or 'admin'.
    #[arg(long)]
    pub scope: String,
    /// Lifetime, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Directory holding the generated secret when no --jwt-secret is configured.
    #[arg(long, env = "TIDEGATE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// How tokens are verified. With none of the key options, an HS256 secret is generated in
/// the data directory on first run.
#[derive(Clone, Debug, Args)]
pub struct AuthArgs {
    /// `none` turns authentication off (local development only).
    #[arg(long, env = "TIDEGATE_AUTH", value_enum, default_value = "jwt")]
    pub auth: AuthMode,

    /// Shared secret for HS256/384/512 tokens.
    #[arg(long, env = "TIDEGATE_JWT_SECRET", hide_env_values = true,
          conflicts_with_all = ["jwt_public_key", "jwks_file"])]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA).
    #[arg(long, env = "TIDEGATE_JWT_PUBLIC_KEY", conflicts_with = "jwks_file")]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS file; the token's `kid` picks the key.
    #[arg(long, env = "TIDEGATE_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// Required `iss` claim.
    #[arg(long, env = "TIDEGATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim.
    #[arg(long, env = "TIDEGATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "TIDEGATE_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,

    /// Lifetime of the admin token printed on first run, e.g. 24h.
    #[arg(long, env = "TIDEGATE_ADMIN_TOKEN_TTL", default_value = "24h",
          value_parser = humantime::parse_duration)]
    pub admin_token_ttl: Duration,
}

/// Whether requests must carry a JWT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Every route but health, readiness and docs needs a valid token (the default).
    Jwt,
    /// No authentication at all: local development only.
    None,
}

/// Where records live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// One redb file in the data directory.
    Redb,
    /// An Apache Kafka cluster.
    Kafka,
}

/// Shortest `--cluster-secret`: it is all that stands between the internal route and
/// anyone who can reach a replica.
const MIN_CLUSTER_SECRET: usize = 16;

/// The Kafka backend's settings (`--backend kafka`).
#[derive(Clone, Debug, Args)]
pub struct KafkaArgs {
    /// Brokers to bootstrap from, `host:port[,host:port]`.
    #[arg(long, env = "TIDEGATE_KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: Option<String>,

    /// A librdkafka property for every client, `KEY=VALUE` (security.protocol, sasl.*,
    /// ssl.*, …); repeatable. The environment twin takes them comma-separated.
    #[arg(long = "kafka-property", env = "TIDEGATE_KAFKA_PROPERTIES", value_delimiter = ',',
          value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,

    /// Replication factor of the topics tidegate creates; the broker's default when unset.
    #[arg(long, env = "TIDEGATE_KAFKA_REPLICATION_FACTOR")]
    pub kafka_replication_factor: Option<i16>,

    /// Longest any call to the cluster may take, in ms; past it a request fails with 503
    /// `kafka_unavailable`.
    #[arg(long, env = "TIDEGATE_KAFKA_TIMEOUT_MS", default_value_t = 10_000)]
    pub kafka_timeout_ms: u64,

    /// Prefix of the Kafka names of tidegate's topics and groups (and of its internal
    /// topics), so several deployments can share a cluster; API names stay unprefixed.
    #[arg(long, env = "TIDEGATE_KAFKA_TOPIC_PREFIX", default_value = "")]
    pub kafka_topic_prefix: String,

    /// This replica's name, unique among the replicas sharing a cluster and kept across
    /// restarts (it makes the producer's `transactional.id`, so a restarted replica fences
    /// its own zombie). Default: an id generated once in the data directory.
    #[arg(long, env = "TIDEGATE_REPLICA_ID")]
    pub replica_id: Option<String>,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Configuration of `tidegate serve`.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, env = "TIDEGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory holding the database file (redb), the generated secret and the replica
    /// id (both backends).
    #[arg(long, env = "TIDEGATE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Where records live: `redb`, one embedded database file (the default), or `kafka`,
    /// an Apache Kafka cluster (`--kafka-bootstrap`).
    #[arg(long, env = "TIDEGATE_BACKEND", value_enum, default_value = "redb")]
    pub backend: Backend,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Runs consumer groups across every replica of this deployment (the same cluster and
    /// --kafka-topic-prefix), so that any request of a member may reach any replica. The
    /// replicas share this secret (16 characters or more), which authenticates their
    /// requests to each other. Without it a gateway runs its groups alone: one replica
    /// per deployment.
    #[arg(long, env = "TIDEGATE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// Where the other replicas reach this one (`http://host:port`, with --cluster-secret);
    /// default: the address it listens on.
    #[arg(long, env = "TIDEGATE_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// `always`: acknowledge after fsync. `never`: acknowledge before; a crash may lose
    /// about the last second of acknowledged records.
    #[arg(long, env = "TIDEGATE_FSYNC", default_value = "always",
          value_parser = PossibleValuesParser::new(Fsync::NAMES).try_map(|name| name.parse::<Fsync>()))]
    pub fsync: Fsync,

    /// How long an Idempotency-Key is remembered per topic, in milliseconds.
    #[arg(long, env = "TIDEGATE_IDEMPOTENCY_WINDOW_MS", default_value_t = 24 * 60 * 60 * 1000)]
    pub idempotency_window_ms: u64,

    /// How often retention deletes batches past their topic's `retention_ms` or
    /// `retention_bytes`, in milliseconds.
    #[arg(
        long,
        env = "TIDEGATE_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub retention_check_interval_ms: u64,

    /// Seconds in-flight requests get to finish at shutdown.
    #[arg(long, env = "TIDEGATE_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// HTTP worker threads; 0 means one per CPU core.
    #[arg(long, env = "TIDEGATE_WORKERS", default_value_t = 0)]
    pub workers: usize,

    #[arg(long, env = "TIDEGATE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub groups: GroupLimits,

    #[command(flatten)]
    pub push: PushLimits,

    #[command(flatten)]
    pub overload: OverloadLimits,

    /// Publishes are refused (507) while the data directory's file system has less free
    /// space than this, in bytes, so that deletions, retention and offset commits still
    /// have room; they resume by themselves once there is room again. 0: only a write
    /// the disk refuses is answered 507.
    #[arg(long, env = "TIDEGATE_MIN_FREE_BYTES", default_value_t = 64 << 20)]
    pub min_free_bytes: u64,

    /// Browser origins allowed to call the API (CORS) and to open WebSockets, e.g.
    /// `https://app.example.com`; comma-separated. Empty (the default): same origin only.
    /// `*` allows every origin.
    #[arg(long, env = "TIDEGATE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Serve `/metrics` to anyone; by default it needs an admin token.
    #[arg(long, env = "TIDEGATE_METRICS_PUBLIC")]
    pub metrics_public: bool,

    /// Seconds between two samples of each topic's traffic history (the console's charts,
    /// `GET /v1/topics/{topic}/stats`).
    #[arg(long, env = "TIDEGATE_STATS_INTERVAL_SECS", default_value_t = 10)]
    pub stats_interval_secs: u64,

    /// Seconds of traffic history kept in memory: the longest `window_s` of the stats
    /// routes.
    #[arg(long, env = "TIDEGATE_STATS_WINDOW_SECS", default_value_t = 3600)]
    pub stats_window_secs: u64,

    /// Distinct topics that get their own label in metrics; the rest count as `_other`.
    #[arg(long, env = "TIDEGATE_METRICS_MAX_TOPICS", default_value_t = 1000)]
    pub metrics_max_topics: usize,

    /// Consumer groups reported in metrics (members, rebalances, lag), the first by name.
    #[arg(long, env = "TIDEGATE_METRICS_MAX_GROUPS", default_value_t = 1000)]
    pub metrics_max_groups: usize,
}

impl KafkaArgs {
    fn validate(&self) -> Result<(), String> {
        let bootstrap = self.kafka_bootstrap.as_deref().unwrap_or("").trim();
        if bootstrap.is_empty() {
            return Err("--backend kafka needs --kafka-bootstrap host:port[,host:port]".into());
        }
        if self.kafka_timeout_ms < 100 {
            return Err("--kafka-timeout-ms must be at least 100".into());
        }
        if self.kafka_replication_factor.is_some_and(|rf| rf < 1) {
            return Err("--kafka-replication-factor must be at least 1".into());
        }
        let prefix = &self.kafka_topic_prefix;
        if prefix.len() > 100
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(format!(
                "--kafka-topic-prefix {prefix:?}: up to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            ));
        }
        if let Some(id) = &self.replica_id
            && (id.is_empty()
                || id.len() > 100
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
        {
            return Err(format!(
                "--replica-id {id:?}: 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            ));
        }
        for (key, _) in &self.kafka_properties {
            // tidegate sets these itself: they carry its guarantees (all-or-nothing
            // publishes, committed reads, its own partitioning).
            if OWNED_KAFKA_PROPERTIES.contains(&key.as_str()) {
                return Err(format!(
                    "--kafka-property {key}: tidegate sets it itself and it cannot be changed"
                ));
            }
        }
        Ok(())
    }
}

/// librdkafka properties tidegate sets itself, refused in `--kafka-property`.
const OWNED_KAFKA_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "transactional.id",
    "enable.idempotence",
    "acks",
    "isolation.level",
    "group.id",
    "enable.auto.commit",
    "partitioner",
];

/// Bounds on push delivery (WebSocket and Server-Sent Events).
#[derive(Clone, Copy, Debug, Args)]
pub struct PushLimits {
    /// Bytes of encoded batches kept for push delivery, shared by every subscriber.
    #[arg(long, env = "TIDEGATE_PUSH_CACHE_BYTES", default_value_t = 64 << 20)]
    pub push_cache_bytes: usize,

    /// Most records in one `records` message or SSE write.
    #[arg(long, env = "TIDEGATE_PUSH_FRAME_RECORDS", default_value_t = 500)]
    pub push_frame_records: usize,

    /// About the most bytes of records in one `records` message (at least one record).
    #[arg(long, env = "TIDEGATE_PUSH_FRAME_BYTES", default_value_t = 256 << 10)]
    pub push_frame_bytes: usize,

    /// Largest message a WebSocket client may send, in bytes (the connection closes with
    /// 1009 above).
    #[arg(long, env = "TIDEGATE_WS_MAX_MESSAGE_BYTES", default_value_t = 1 << 20)]
    pub ws_max_message_bytes: usize,

    /// Most subscriptions one WebSocket connection may hold.
    #[arg(long, env = "TIDEGATE_WS_MAX_SUBSCRIPTIONS", default_value_t = 64)]
    pub ws_max_subscriptions: usize,

    /// Time a WebSocket without a token in its request has to send `auth`, in ms.
    #[arg(long, env = "TIDEGATE_WS_AUTH_TIMEOUT_MS", default_value_t = 5_000)]
    pub ws_auth_timeout_ms: u64,

    /// Interval of the server's pings, in ms.
    #[arg(long, env = "TIDEGATE_WS_PING_INTERVAL_MS", default_value_t = 20_000)]
    pub ws_ping_interval_ms: u64,

    /// A WebSocket that sends nothing (not even a pong) this long is closed, in ms.
    #[arg(long, env = "TIDEGATE_WS_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub ws_idle_timeout_ms: u64,

    /// Bytes a WebSocket connection may have queued for its client; delivery waits beyond.
    #[arg(long, env = "TIDEGATE_WS_OUTBOUND_BYTES", default_value_t = 1 << 20)]
    pub ws_outbound_bytes: usize,

    /// A client that reads nothing while its queue is full this long is closed with 4008
    /// "slow consumer", in ms.
    #[arg(long, env = "TIDEGATE_WS_SLOW_CONSUMER_MS", default_value_t = 10_000)]
    pub ws_slow_consumer_ms: u64,

    /// Interval of the heartbeat comments on idle event streams, in ms.
    #[arg(long, env = "TIDEGATE_SSE_HEARTBEAT_MS", default_value_t = 15_000)]
    pub sse_heartbeat_ms: u64,

    /// Time a client has to take a close the server started (4008, 4001, shutdown...)
    /// before its socket is closed anyway, in milliseconds: a client that never reads
    /// again cannot hold the connection.
    #[arg(long, env = "TIDEGATE_WS_CLOSE_TIMEOUT_MS", default_value_t = 5_000)]
    pub ws_close_timeout_ms: u64,
}

/// What one client may hold or use, so that the others stay served (SPEC "Overload,
/// quotas and faults").
#[derive(Clone, Copy, Debug, Args)]
pub struct OverloadLimits {
    /// Most open client connections (HTTP, WebSocket and SSE together); one more is
    /// answered 503 `too_many_connections` and closed. The open-file limit must hold them:
    /// a cap it cannot hold is refused at start. Unset: 10 000, or what the limit holds
    /// if that is less (with a warning).
    #[arg(long, env = "TIDEGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Time a connection has to send a complete request head, in milliseconds, counted
    /// from its opening or from the end of its previous answer; then it is closed.
    #[arg(long, env = "TIDEGATE_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// HTTP requests and WebSocket ops each principal (the token's `sub`; with
    /// `--auth none`, the client's IP) may make per second, with a burst of one second's
    /// worth; 429 `rate_limited` beyond. 0: unlimited.
    #[arg(long, env = "TIDEGATE_QUOTA_REQUESTS_PER_SEC", default_value_t = 0)]
    pub quota_requests_per_sec: u32,

    /// Bytes (key + value + headers) each principal may publish per second over any
    /// transport, with a burst of one second's worth; 429 `rate_limited` beyond. 0:
    /// unlimited.
    #[arg(
        long,
        env = "TIDEGATE_QUOTA_PUBLISH_BYTES_PER_SEC",
        default_value_t = 0
    )]
    pub quota_publish_bytes_per_sec: u32,
}

/// Bounds on consumer groups.
#[derive(Clone, Copy, Debug, Args)]
pub struct GroupLimits {
    /// Shortest `session_timeout_ms` a member may ask for (400 below).
    #[arg(long, env = "TIDEGATE_MIN_SESSION_TIMEOUT_MS", default_value_t = 1_000)]
    pub min_session_timeout_ms: u64,

    /// Longest `session_timeout_ms` a member may ask for (400 above). A member that asks
    /// for none gets 30 s, kept within these bounds.
    #[arg(
        long,
        env = "TIDEGATE_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 1_800_000
    )]
    pub max_session_timeout_ms: u64,

    /// Most live members one group may have (409 for one more).
    #[arg(long, env = "TIDEGATE_MAX_GROUP_MEMBERS", default_value_t = 1_000)]
    pub max_group_members: usize,

    /// Most topics one member may subscribe to (400 above).
    #[arg(long, env = "TIDEGATE_MAX_GROUP_TOPICS", default_value_t = 100)]
    pub max_group_topics: usize,

    /// Most live consumer groups (with members or committed offsets); a poll that would
    /// create one more is answered 429 `too_many_groups`.
    #[arg(long, env = "TIDEGATE_MAX_GROUPS", default_value_t = 10_000)]
    pub max_groups: usize,
}

/// A member's session when it asks for none (Kafka's `session.timeout.ms` default is 45 s;
/// the SPEC says 30 s).
const DEFAULT_SESSION_TIMEOUT_MS: u64 = 30_000;

impl GroupLimits {
    pub fn settings(&self) -> GroupSettings {
        GroupSettings {
            default_session_timeout: Duration::from_millis(
                DEFAULT_SESSION_TIMEOUT_MS
                    .clamp(self.min_session_timeout_ms, self.max_session_timeout_ms),
            ),
            min_session_timeout: Duration::from_millis(self.min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(self.max_session_timeout_ms),
            max_members: self.max_group_members,
            max_topics: self.max_group_topics,
            max_groups: self.max_groups,
        }
    }
}

/// Request limits; each is enforced with a 4xx, never by failing later.
#[derive(Clone, Copy, Debug, Args)]
pub struct Limits {
    /// Largest request body, in bytes (413 above).
    #[arg(long, env = "TIDEGATE_MAX_BODY_BYTES", default_value_t = 8 << 20)]
    pub max_body_bytes: usize,

    /// Largest record (key + value + headers), in bytes (413 above).
    #[arg(long, env = "TIDEGATE_MAX_RECORD_BYTES", default_value_t = 1 << 20)]
    pub max_record_bytes: usize,

    /// Most records in one publish request (413 above).
    #[arg(
        long,
        env = "TIDEGATE_MAX_RECORDS_PER_REQUEST",
        default_value_t = 10_000
    )]
    pub max_records_per_request: usize,

    /// Largest `limit` a fetch may ask for (400 above).
    #[arg(long, env = "TIDEGATE_MAX_FETCH_RECORDS", default_value_t = 10_000)]
    pub max_fetch_records: usize,

    /// Largest `max_bytes` a fetch may ask for (400 above).
    #[arg(long, env = "TIDEGATE_MAX_FETCH_BYTES", default_value_t = 8 << 20)]
    pub max_fetch_bytes: usize,

    /// Most records one fetch with `key` or `contains` reads past its `offset`; its
    /// `next_offset` then says where the scan stopped, for the next call to go on from.
    #[arg(long, env = "TIDEGATE_MAX_SCAN_RECORDS", default_value_t = 100_000)]
    pub max_scan_records: usize,

    /// Longest `wait_ms` a long poll may ask for (400 above).
    #[arg(long, env = "TIDEGATE_MAX_WAIT_MS", default_value_t = 60_000)]
    pub max_wait_ms: u64,

    /// Longest Idempotency-Key, in bytes (400 above).
    #[arg(
        long,
        env = "TIDEGATE_MAX_IDEMPOTENCY_KEY_BYTES",
        default_value_t = 255
    )]
    pub max_idempotency_key_bytes: usize,

    /// Deepest nesting of arrays and objects in a record value (400 above): consumers'
    /// JSON parsers fail on deeper values (Python and serde_json stop at 100-128 levels).
    #[arg(long, env = "TIDEGATE_MAX_VALUE_DEPTH", default_value_t = 64)]
    pub max_value_depth: usize,

    /// Time a request body has to arrive in full, in milliseconds; a body still incomplete
    /// then is answered 408 and its connection closed.
    #[arg(long, env = "TIDEGATE_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,
}

/// Most points the traffic history keeps per topic (a week at 10 s).
const MAX_STATS_POINTS: u64 = 60_480;

impl Config {
    /// Parses a `serve` configuration from arguments (after the program name) and the
    /// environment, as the binary does. Tests use it to get the same defaults.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        struct ServeOnly {
            #[command(flatten)]
            config: Config,
        }
        let args = std::iter::once("tidegate".into()).chain(args.into_iter().map(Into::into));
        ServeOnly::try_parse_from(args).map(|parsed| parsed.config)
    }

    /// Checks what clap's types cannot; the message is the one line shown to the user.
    pub fn validate(&self) -> Result<(), String> {
        let limits = &self.limits;
        for (flag, value) in [
            ("--max-body-bytes", limits.max_body_bytes),
            ("--max-record-bytes", limits.max_record_bytes),
            ("--max-records-per-request", limits.max_records_per_request),
            ("--max-fetch-records", limits.max_fetch_records),
            ("--max-fetch-bytes", limits.max_fetch_bytes),
            ("--max-scan-records", limits.max_scan_records),
            (
                "--max-idempotency-key-bytes",
                limits.max_idempotency_key_bytes,
            ),
            ("--max-value-depth", limits.max_value_depth),
            (
                "--body-timeout-ms",
                usize::try_from(limits.body_timeout_ms).unwrap_or(usize::MAX),
            ),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be greater than 0"));
            }
        }
        if limits.max_record_bytes > limits.max_body_bytes {
            return Err(format!(
                "--max-record-bytes ({}) cannot exceed --max-body-bytes ({})",
                limits.max_record_bytes, limits.max_body_bytes
            ));
        }
        if self.stats_interval_secs == 0
            || self.stats_window_secs < self.stats_interval_secs
            || self.stats_window_secs / self.stats_interval_secs > MAX_STATS_POINTS
        {
            return Err(format!(
                "--stats-interval-secs ({}) must be positive and --stats-window-secs ({}) from one to {MAX_STATS_POINTS} intervals",
                self.stats_interval_secs, self.stats_window_secs
            ));
        }
        let groups = &self.groups;
        if groups.min_session_timeout_ms == 0
            || groups.min_session_timeout_ms > groups.max_session_timeout_ms
        {
            return Err(format!(
                "--min-session-timeout-ms ({}) must be positive and at most --max-session-timeout-ms ({})",
                groups.min_session_timeout_ms, groups.max_session_timeout_ms
            ));
        }
        let push = &self.push;
        for (flag, value) in [
            ("--push-cache-bytes", push.push_cache_bytes as u64),
            ("--push-frame-records", push.push_frame_records as u64),
            ("--push-frame-bytes", push.push_frame_bytes as u64),
            ("--ws-max-message-bytes", push.ws_max_message_bytes as u64),
            ("--ws-max-subscriptions", push.ws_max_subscriptions as u64),
            ("--ws-auth-timeout-ms", push.ws_auth_timeout_ms),
            ("--ws-ping-interval-ms", push.ws_ping_interval_ms),
            ("--ws-idle-timeout-ms", push.ws_idle_timeout_ms),
            ("--ws-outbound-bytes", push.ws_outbound_bytes as u64),
            ("--ws-slow-consumer-ms", push.ws_slow_consumer_ms),
            ("--sse-heartbeat-ms", push.sse_heartbeat_ms),
            ("--ws-close-timeout-ms", push.ws_close_timeout_ms),
            (
                "--max-connections",
                self.overload.max_connections.unwrap_or(1) as u64,
            ),
            ("--header-timeout-ms", self.overload.header_timeout_ms),
            ("--max-groups", groups.max_groups as u64),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be greater than 0"));
            }
        }
        if push.ws_idle_timeout_ms <= push.ws_ping_interval_ms {
            return Err("--ws-idle-timeout-ms must be longer than --ws-ping-interval-ms".into());
        }
        for origin in &self.allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(format!(
                    "--allowed-origins: {origin:?} is not an origin (scheme://host[:port]) or *"
                ));
            }
        }
        if groups.max_group_members == 0 || groups.max_group_topics == 0 {
            return Err("--max-group-members and --max-group-topics must be greater than 0".into());
        }
        if self.idempotency_window_ms == 0 {
            return Err("--idempotency-window-ms must be greater than 0".into());
        }
        if self.retention_check_interval_ms == 0 {
            return Err("--retention-check-interval-ms must be greater than 0".into());
        }
        if self.backend == Backend::Kafka {
            self.kafka.validate()?;
        }
        self.validate_cluster()?;
        if self.data_dir.exists() && !self.data_dir.is_dir() {
            return Err(format!(
                "--data-dir {} exists and is not a directory",
                self.data_dir.display()
            ));
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), String> {
        match &self.cluster_secret {
            Some(_) if self.backend != Backend::Kafka => {
                return Err(
                    "--cluster-secret needs --backend kafka: replicas share a Kafka cluster".into(),
                );
            }
            Some(secret) if secret.chars().count() < MIN_CLUSTER_SECRET => {
                return Err(format!(
                    "--cluster-secret must be at least {MIN_CLUSTER_SECRET} characters"
                ));
            }
            None if self.advertise_url.is_some() => {
                return Err("--advertise-url needs --cluster-secret".into());
            }
            _ => {}
        }
        if let Some(url) = &self.advertise_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "--advertise-url {}: must be an http:// or https:// URL",
                crate::echo::quoted(url)
            ));
        }
        Ok(())
    }

    /// The redb backend's options.
    pub fn log_options(&self) -> LogOptions {
        LogOptions {
            data_dir: self.data_dir.clone(),
            fsync: self.fsync,
            idempotency_window: Duration::from_millis(self.idempotency_window_ms),
            retention_check_interval: Duration::from_millis(self.retention_check_interval_ms),
            min_free_bytes: self.min_free_bytes,
        }
    }
}
