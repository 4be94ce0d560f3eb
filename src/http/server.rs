//! The accept path of every client connection: actix-http's HTTP/1 service over a socket
//! of ours, so that the limits a client cannot escape live below HTTP.
//!
//! # Why a socket of ours
//! actix gives a handler no way to drop its connection, and its own timers leave gaps an
//! attacker can use: the request-head deadline covers only a connection's first request,
//! and nothing bounds a write the client never reads (a WebSocket closed with 4008 keeps
//! its socket as long as the client keeps its receive window shut). [`GuardedStream`]
//! wraps the TCP stream and fails its own reads and writes past a deadline, which makes
//! the dispatcher drop the connection at once:
//! - **head**: while no request of the connection is in flight, a complete request head
//!   must arrive within `--header-timeout-ms` of the connection's opening or of the last
//!   byte of its previous answer that the client took (an idle keep-alive connection ends
//!   the same way, and so does one that stops reading an answer);
//! - **close**: once the server has started a close (`Connection::start_closing`), a
//!   write the client does not take within `--ws-close-timeout-ms` ends the connection.
//!
//! It also counts the connection for `--max-connections` while the socket is open: past
//! the cap the connection is admitted only to be answered 503 `too_many_connections` and
//! closed (`admission`), which an HTTP client can read, unlike a reset.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_http::HttpService;
use actix_http::error::DispatchError;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::{AppConfig, Server, ServiceRequest};
use actix_web::web;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterCoordinator;
use crate::gateway::{ErrorCode, Gateway, GatewayError};
use crate::metrics::OverloadMetrics;

/// How the server runs: its threads and its connection limits.
pub struct ServerSettings {
    /// 0: one per CPU core.
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub close_timeout: Duration,
}

/// The HTTP server over `listener`, not yet running; `shutdown` also tells idle
/// keep-alive connections to close.
pub fn serve(
    listener: TcpListener,
    settings: &ServerSettings,
    gateway: web::Data<Gateway>,
    cluster: Option<web::Data<ClusterCoordinator>>,
    shutdown: CancellationToken,
) -> io::Result<Server> {
    let connections = Arc::new(Connections {
        open: AtomicUsize::new(0),
        max: settings.max_connections,
        header_timeout: settings.header_timeout,
        close_timeout: settings.close_timeout,
        metrics: gateway.metrics.overload.clone(),
    });
    let mut builder = Server::build()
        // We handle signals ourselves so long polls are released before draining.
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_secs)
        // The cap is ours, answered with a 503; actix's own (25 000 per worker) would
        // stop accepting instead.
        .max_concurrent_connections(usize::MAX);
    if settings.workers > 0 {
        builder = builder.workers(settings.workers);
    }
    builder = builder.listen("tidegate", listener, move || {
        let connections = connections.clone();
        let shutdown = shutdown.clone();
        let app = crate::http::app(gateway.clone(), cluster.clone())
            .into_factory()
            .map_err(|err: actix_web::Error| err.error_response());
        let http = HttpService::<GuardedStream, _, _>::build()
            // Ours instead (the head deadline of GuardedStream covers every request).
            .client_request_timeout(Duration::ZERO)
            .keep_alive(KEEP_ALIVE)
            // How long an answered connection lingers to read what the client still
            // sends before it is closed (see `connection`: unread bodies).
            .client_disconnect_timeout(LINGER)
            // A client that closes its side is gone: drop its request at once (a long
            // poll would otherwise hold the socket until its wait ran out). HTTP/1.1
            // allows a client to half-close and still read the answer, but no client of
            // this API needs to; curl, browsers and HTTP libraries keep both sides open.
            .h1_allow_half_closed(false)
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.cancelled().await }
            })
            .on_connect_ext(|stream: &GuardedStream, extensions| {
                extensions.insert(stream.connection.clone());
            })
            .h1(map_config(app, |_| AppConfig::default()));
        fn_service(move |io: TcpStream| {
            // Push frames are small and written as records commit; with Nagle's algorithm
            // a frame waits for the ACK of the previous one, which the client's delayed
            // ACK holds up to 40 ms (measured: p50 10 ms at 1000 records/s, BENCHMARKS.md).
            let _ = io.set_nodelay(true);
            let peer = io.peer_addr().ok();
            let stream = connections.admit(io);
            std::future::ready(Ok::<_, DispatchError>((stream, peer)))
        })
        .and_then(http)
    })?;
    Ok(builder.run())
}

/// Idle time after an answer before a keep-alive connection is closed (actix's default).
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// actix-web's default `client_disconnect_timeout`.
const LINGER: Duration = Duration::from_secs(1);

/// Every connection of the server.
struct Connections {
    open: AtomicUsize,
    max: usize,
    header_timeout: Duration,
    close_timeout: Duration,
    metrics: OverloadMetrics,
}

impl Connections {
    fn admit(self: &Arc<Self>, io: TcpStream) -> GuardedStream {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics.connections.inc();
        GuardedStream {
            io,
            connection: Rc::new(Connection {
                over_limit: open > self.max,
                in_flight: Cell::new(0),
                idle_since: Cell::new(Instant::now()),
                closing_since: Cell::new(None),
                blocked_writer: RefCell::new(None),
                shared: self.clone(),
            }),
            read_timer: None,
            write_timer: None,
        }
    }
}

/// One connection's state, shared by its socket and its requests (actix's connection
/// data). Everything of a connection runs on its worker's thread.
pub struct Connection {
    /// Opened past `--max-connections`: its requests are answered 503.
    over_limit: bool,
    /// Requests whose answer is not yet sent in full.
    in_flight: Cell<usize>,
    /// When the last answer ended (or the connection opened).
    idle_since: Cell<Instant>,
    /// When the server started closing the connection.
    closing_since: Cell<Option<Instant>>,
    /// Who waits for the socket to take a write, to be woken when a close starts.
    blocked_writer: RefCell<Option<Waker>>,
    shared: Arc<Connections>,
}

impl Connection {
    /// The connection a request came on (every request has one: `serve` sets it).
    pub fn of(request: &actix_web::HttpRequest) -> Option<Rc<Connection>> {
        request.conn_data::<Rc<Connection>>().cloned()
    }

    /// The server has begun to close the connection: the client has
    /// `--ws-close-timeout-ms` to take what is still to be written.
    pub fn start_closing(&self) {
        if self.closing_since.get().is_none() {
            self.closing_since.set(Some(Instant::now()));
            if let Some(waker) = self.blocked_writer.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Until the returned guard is dropped (with the answer's body), no head deadline runs.
    fn request_started(self: &Rc<Self>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight(self.clone())
    }

    fn head_deadline(&self) -> Option<Instant> {
        (self.in_flight.get() == 0).then(|| self.idle_since.get() + self.shared.header_timeout)
    }

    fn close_deadline(&self) -> Option<Instant> {
        self.closing_since
            .get()
            .map(|since| since + self.shared.close_timeout)
    }
}

/// A request in flight on its connection; dropped when its answer has been sent.
pub struct InFlight(Rc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let connection = &self.0;
        connection.in_flight.set(connection.in_flight.get() - 1);
        connection.idle_since.set(Instant::now());
    }
}

/// A connection past the cap gets its 503 (and is closed); every other request is
/// counted in flight until its answer is sent.
pub fn admission(request: &ServiceRequest) -> Result<Option<InFlight>, GatewayError> {
    let Some(connection) = Connection::of(request.request()) else {
        return Ok(None);
    };
    if connection.over_limit {
        connection.shared.metrics.connections_refused.inc();
        return Err(GatewayError::throttled(
            ErrorCode::TooManyConnections,
            format!(
                "the server holds its maximum of {} connections (--max-connections); retry later",
                connection.shared.max
            ),
            Duration::from_secs(1),
        ));
    }
    Ok(Some(connection.request_started()))
}

/// The TCP stream of one client connection, with the connection's deadlines (module docs).
pub struct GuardedStream {
    io: TcpStream,
    connection: Rc<Connection>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

/// Whether `deadline` has passed; if not, `timer` wakes the connection's task when it does.
fn passed(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    if Instant::now() >= deadline {
        return true;
    }
    let timer = match timer {
        Some(timer) => {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            timer
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    timer.as_mut().poll(cx).is_ready()
}

impl GuardedStream {
    fn cut(&self, reason: &str) -> io::Error {
        self.connection
            .shared
            .metrics
            .connections_cut
            .with_label_values(&[reason])
            .inc();
        io::Error::new(io::ErrorKind::TimedOut, format!("{reason} deadline passed"))
    }

    /// A write's outcome, failed once a close the client does not take has run out of time.
    fn guard_write(
        &mut self,
        polled: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if polled.is_ready() {
            self.write_timer = None;
            if self.connection.in_flight.get() == 0 {
                // The tail of an answer still going out: the client is reading.
                self.connection.idle_since.set(Instant::now());
            }
            return polled;
        }
        if let Some(deadline) = self.connection.close_deadline()
            && passed(&mut self.write_timer, deadline, cx)
        {
            return Poll::Ready(Err(self.cut("close")));
        }
        *self.connection.blocked_writer.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        let shared = &self.connection.shared;
        shared.open.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.connections.dec();
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        match this.connection.head_deadline() {
            Some(deadline) if passed(&mut this.read_timer, deadline, cx) => {
                Poll::Ready(Err(this.cut("header")))
            }
            Some(_) => polled,
            None => {
                this.read_timer = None;
                polled
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard_write(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard_write(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
