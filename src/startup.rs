//! Building and running the server; `main` and the tests both go through [`Application`].

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use tokio_util::sync::CancellationToken;

use crate::auth::AuthError;
use crate::auth_setup;
use crate::cluster::{ClusterCoordinator, ClusterLog, ClusterSettings};
use crate::config::Backend;
use crate::config::Config;
use crate::gateway::{Gateway, GatewayParts, Quotas};
use crate::groups::{Coordinator, GroupCoordinator};
use crate::history::History;
use crate::http;
use crate::log::kafka::{KafkaLog, KafkaOptions, join_replicas};
use crate::log::redb::RedbLog;
use crate::log::{EventLog, OffsetStore};
use crate::metrics::{LabelCaps, Metrics};

/// Why the server could not start; shown to the user as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Storage(#[from] crate::log::redb::OpenError),
    #[error("{0}")]
    Kafka(#[from] crate::log::kafka::OpenError),
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet running server and the log behind it.
pub struct Application {
    local_addr: SocketAddr,
    server: Server,
    log: Arc<dyn EventLog>,
    groups: Arc<dyn GroupCoordinator>,
    shutdown: CancellationToken,
    first_run_token: Option<String>,
}

impl Application {
    /// Opens the log, starts the backend's and the coordinator's background tasks, and
    /// binds the listener; requests are served once `run` is awaited. Call within a Tokio
    /// runtime.
    pub fn build(config: &Config) -> Result<Application, StartupError> {
        config.validate().map_err(StartupError::Config)?;
        let max_connections = raise_open_file_limit(config.overload.max_connections)?;
        let auth = auth_setup::setup(&config.auth, &config.data_dir)?;
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(
            Metrics::new(LabelCaps {
                topics: config.metrics_max_topics,
                groups: config.metrics_max_groups,
            })
            .map_err(|err| StartupError::Config(format!("metrics: {err}")))?,
        );
        // Bound first: the replicas of a cluster are told this address.
        let listener = bind(config.listen)?;
        let local_addr = listener.local_addr().unwrap_or(config.listen);
        let built = match config.backend {
            Backend::Redb => {
                let redb =
                    RedbLog::open(&config.log_options(), metrics.log.clone(), shutdown.clone())?;
                local_groups(config, redb.clone(), redb, &shutdown)
            }
            Backend::Kafka => {
                let options = kafka_options(config)?;
                let kafka = KafkaLog::open(options.clone(), metrics.log.clone(), shutdown.clone())?;
                match &config.cluster_secret {
                    None => local_groups(config, kafka.clone(), kafka, &shutdown),
                    Some(secret) => {
                        let url = config
                            .advertise_url
                            .clone()
                            .unwrap_or_else(|| format!("http://{local_addr}"));
                        let replicas = join_replicas(&options, url, shutdown.clone())
                            .map_err(|err| StartupError::Config(err.to_string()))?;
                        let settings = ClusterSettings {
                            replica: options.replica_id.clone(),
                            secret: secret.clone(),
                            timeout: options.timeout,
                        };
                        let cluster = ClusterCoordinator::start(
                            replicas,
                            kafka.clone(),
                            kafka.clone(),
                            config.groups.settings(),
                            settings,
                            metrics.cluster.clone(),
                            shutdown.clone(),
                        );
                        Built {
                            log: Arc::new(ClusterLog::new(kafka, cluster.clone())),
                            groups: cluster.clone(),
                            cluster: Some(web::Data::from(cluster)),
                        }
                    }
                }
            }
        };
        let Built {
            log,
            groups,
            cluster,
        } = built;
        let auth_off = auth.verifier.is_none();
        let quotas = Arc::new(Quotas::new(
            config.overload.quota_requests_per_sec,
            config.overload.quota_publish_bytes_per_sec,
            metrics.overload.clone(),
        ));
        quotas.start_housekeeping(shutdown.clone());
        let history = Arc::new(History::new(
            Duration::from_secs(config.stats_interval_secs),
            Duration::from_secs(config.stats_window_secs),
        ));

        let gateway = web::Data::new(Gateway::new(GatewayParts {
            log: log.clone(),
            groups: groups.clone(),
            verifier: auth.verifier,
            limits: config.limits,
            push_limits: config.push,
            allowed_origins: config.allowed_origins.clone(),
            metrics,
            metrics_public: config.metrics_public,
            shutdown: shutdown.clone(),
            quotas,
            local_address: local_addr.to_string(),
            history,
        }));
        gateway.clone().into_inner().start_history();
        let settings = http::ServerSettings {
            workers: config.workers,
            shutdown_timeout_secs: config.shutdown_timeout_secs,
            max_connections,
            header_timeout: Duration::from_millis(config.overload.header_timeout_ms),
            close_timeout: Duration::from_millis(config.push.ws_close_timeout_ms),
        };
        let server = http::serve(listener, &settings, gateway, cluster, shutdown.clone()).map_err(
            |source| StartupError::Bind {
                addr: config.listen,
                source,
            },
        )?;
        // Only once the start can no longer fail, so a failed start prints one line.
        if auth_off {
            tracing::warn!(
                "AUTHENTICATION IS OFF (--auth none): anyone who can reach {local_addr} can read, write and delete every topic"
            );
        }
        Ok(Application {
            local_addr,
            server,
            log,
            groups,
            shutdown,
            first_run_token: auth.first_run_token,
        })
    }

    /// The admin token minted when this start generated the HS secret, to show once.
    pub fn first_run_token(&self) -> Option<&str> {
        self.first_run_token.as_deref()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Cancelling this token shuts the server down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting, lets in-flight
    /// requests finish, commits what the log accepted and syncs it to disk.
    pub async fn run(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let served = tokio::select! {
            result = &mut server => result,
            _ = self.shutdown.cancelled() => {
                tracing::info!("shutting down: draining requests");
                handle.stop(true).await;
                server.await
            }
        };
        // Releases long polls if the server stopped on its own.
        self.shutdown.cancel();
        self.groups.shutdown().await;
        self.log.shutdown().await;
        tracing::info!("log closed");
        served.map_err(std::io::Error::other)?
    }
}

/// The log and groups a server is built from; `cluster` serves the replicas' internal
/// route.
struct Built {
    log: Arc<dyn EventLog>,
    groups: Arc<dyn GroupCoordinator>,
    cluster: Option<web::Data<ClusterCoordinator>>,
}

/// A gateway that runs its groups alone, in memory.
fn local_groups(
    config: &Config,
    log: Arc<dyn EventLog>,
    offsets: Arc<dyn OffsetStore>,
    shutdown: &CancellationToken,
) -> Built {
    let groups = Coordinator::start(
        log.clone(),
        offsets,
        config.groups.settings(),
        shutdown.clone(),
    );
    Built {
        log,
        groups,
        cluster: None,
    }
}

/// The listener, as actix would bind it (address reuse, its backlog), but before the
/// server exists, so that the address can be handed to what the server is built from.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, StartupError> {
    let bound = (|| {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)?.into_std()
    })();
    bound.map_err(|source| StartupError::Bind { addr, source })
}

/// Descriptors the server needs besides its client connections: the database, log
/// output, the Kafka client's sockets, the replicas' calls to each other, epoll, timers.
const RESERVED_FILES: u64 = 256;

/// Connections when `--max-connections` is not given, if the open-file limit holds them.
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

/// Raises the soft open-file limit as far as the hard limit allows, and returns the
/// connection cap: the one asked for, refused when the limit cannot hold it (the accept
/// loop would fail instead); unasked, the default, or what the limit holds if less.
fn raise_open_file_limit(asked: Option<usize>) -> Result<usize, StartupError> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).map_err(|err| {
        StartupError::Config(format!("cannot read or raise the open-file limit: {err}"))
    })?;
    let holds = limit.saturating_sub(RESERVED_FILES);
    match asked {
        Some(max) if max as u64 > holds => Err(StartupError::Config(format!(
            "--max-connections {max} needs an open-file limit of {} ({RESERVED_FILES} kept for the server), and the hard limit allows {limit}: lower --max-connections or raise the limit (ulimit -n, LimitNOFILE=)",
            (max as u64).saturating_add(RESERVED_FILES)
        ))),
        Some(max) => Ok(max),
        None if holds < DEFAULT_MAX_CONNECTIONS => {
            tracing::warn!(
                "the open-file limit ({limit}) holds {holds} connections, fewer than the default {DEFAULT_MAX_CONNECTIONS}: at most {holds} (raise the limit, or set --max-connections)"
            );
            Ok(usize::try_from(holds).unwrap_or(usize::MAX))
        }
        None => Ok(DEFAULT_MAX_CONNECTIONS as usize),
    }
}

/// actix-web's own default backlog.
const LISTEN_BACKLOG: u32 = 1024;

/// Where a replica's generated name is kept, when `--replica-id` names none.
const REPLICA_ID_FILE: &str = "replica-id";

/// The Kafka backend's options; the replica's name is generated once in the data directory
/// unless `--replica-id` gives it.
fn kafka_options(config: &Config) -> Result<KafkaOptions, StartupError> {
    let kafka = &config.kafka;
    let replica_id = match &kafka.replica_id {
        Some(id) => id.clone(),
        None => crate::private_fs::read_or_create(&config.data_dir, REPLICA_ID_FILE, || {
            format!("r-{:016x}", rand::random::<u64>())
        })
        .map_err(|err| {
            StartupError::Config(format!(
                "cannot keep the replica id in {}: {err}",
                config.data_dir.display()
            ))
        })?,
    };
    Ok(KafkaOptions {
        bootstrap: kafka.kafka_bootstrap.clone().unwrap_or_default(),
        properties: kafka.kafka_properties.clone(),
        replication_factor: kafka.kafka_replication_factor,
        timeout: std::time::Duration::from_millis(kafka.kafka_timeout_ms),
        prefix: kafka.kafka_topic_prefix.clone(),
        replica_id,
        idempotency_window: std::time::Duration::from_millis(config.idempotency_window_ms),
        max_value_depth: config.limits.max_value_depth,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn termination_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
