//! The serving loop: accepts TCP connections, holds each within the connection caps, runs TLS
//! when configured, and serves HTTP/1.1 and HTTP/2 through hyper under two deadlines.
//!
//! `axum::serve` kept a connection for as long as the peer kept it open (no deadline for a
//! request head, none for an idle keep-alive connection or a stalled body) and accepted without
//! limit, so one host holding idle sockets could use up the process's file descriptors. Here:
//!
//! - **Caps**: at most [`Caps::total`] connections at once, and at most [`Caps::per_ip`] from
//!   one client address: the socket peer, an IPv6 /64 counting as one address. Peers in
//!   `TRUSTED_PROXIES` are exempt from the per-address cap (a proxy carries many clients), never
//!   from the total. A socket over a cap is closed as soon as it is accepted. The total follows
//!   the descriptor limit, which start-up raises to the hard limit ([`raise_descriptor_limit`]).
//! - **Head deadline**: a connection must deliver its first complete request head within
//!   `HEADER_READ_TIMEOUT` of being accepted, TLS handshake included; an HTTP/1 connection
//!   likewise its next head within `HEADER_READ_TIMEOUT` of the previous response, so that bound
//!   also closes an HTTP/1 keep-alive connection idle that long.
//! - **Idle deadline**: a connection on which no byte has moved in either direction for
//!   `IDLE_TIMEOUT` is closed: a request body that stalls, a client that stops reading the
//!   response, an idle HTTP/2 connection. An HTTP/2 connection with no request in flight is also
//!   closed `IDLE_TIMEOUT` after its last response, however often the client sends PING frames
//!   (traffic, but not requests). HTTP/2 keep-alive pings stay off: the server's own
//!   pings would count as traffic and keep every idle connection open.
//! - **Accept errors** (`EMFILE` and the like) never end the loop: it logs at most once a
//!   second and waits briefly before accepting again, so it neither dies nor spins.
//!
//! Both deadlines are kept by one watchdog per connection, fed by an IO wrapper (last byte
//! moved) and by the service (request heads arrived, responses finished). hyper's own HTTP/1
//! header timer would do the head part too, but it allocates and registers a timer and makes an
//! extra read on every request; the watchdog's work is per connection, and per request only a
//! few atomic stores.
//!
//! Every request reaches the router with `ConnectInfo<SocketAddr>` (the guard takes the client
//! address from it). The router is the single stack `porteiro_web::app` built; each connection
//! clones it (a reference count) and only adds that extension, so nothing is wrapped twice.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, Version};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use porteiro_web::guard::TrustedProxies;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// Concurrent HTTP/2 streams (requests) per connection.
const MAX_H2_STREAMS: u32 = 16;

use crate::config::ConnectionLimits;

/// How long the loop waits after an accept error other than a peer giving up (which is retried
/// at once). The error is usually a full descriptor table, which frees up only as connections
/// end: retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Descriptors kept back from connections for everything else the process opens: the database
/// pool (SQLite opens the file, its WAL and its shared memory per connection), SMTP, the mail
/// outbox, logs and the runtime itself.
fn reserved_descriptors(database_connections: u32) -> u64 {
    32 + 4 * u64::from(database_connections)
}

/// The connection caps in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Most connections open at once.
    pub total: usize,
    /// Most connections open at once from one client address.
    pub per_ip: usize,
}

impl Caps {
    /// The caps for the configured limits under a descriptor limit:
    /// `total = min(MAX_CONNECTIONS, limit − reserve)`, where the reserve is
    /// `32 + 4 × DATABASE_MAX_CONNECTIONS` descriptors but at most half the limit; and
    /// `per_ip = min(MAX_CONNECTIONS_PER_IP, total / 4)`, at least 1, so that one address can
    /// never hold every slot.
    #[must_use]
    pub fn effective(
        limits: &ConnectionLimits,
        descriptor_limit: Option<u64>,
        database_connections: u32,
    ) -> Self {
        let mut total = limits.max_connections;
        if let Some(limit) = descriptor_limit {
            let reserve = reserved_descriptors(database_connections).min(limit / 2);
            let room = usize::try_from(limit - reserve).unwrap_or(usize::MAX);
            total = total.min(room).max(1);
        }
        let per_ip = limits.max_connections_per_ip.min(total / 4).max(1);
        Self { total, per_ip }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and returns the soft limit now in force
/// (`None` where there is no such limit or it cannot be read).
pub fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rlimit::Resource;
        let (before, _) = Resource::NOFILE.get().ok()?;
        if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
            tracing::warn!(error = %e, soft = before, "cannot raise the open-file limit");
        }
        let (soft, _) = Resource::NOFILE.get().ok()?;
        if soft > before {
            tracing::info!(from = before, to = soft, "open-file limit raised");
        }
        Some(soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The descriptor limit the server would run with (the hard limit, which start-up raises the
/// soft one to), without changing anything. For `porteiro config check`.
#[must_use]
pub fn descriptor_limit_when_serving() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::Resource::NOFILE.get().ok().map(|(_, hard)| hard)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// How [`run`] serves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// See [`ConnectionLimits::header_read_timeout`].
    pub header_read_timeout: Duration,
    /// See [`ConnectionLimits::idle_timeout`].
    pub idle_timeout: Duration,
    /// The caps in force.
    pub caps: Caps,
    /// Peers exempt from the per-address cap.
    pub trusted_proxies: TrustedProxies,
    /// How long shutdown waits for open connections to finish their requests.
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` (through TLS when `tls` is set) until `shutdown` resolves, then
/// stops accepting and gives open connections up to [`Settings::shutdown_grace`] to finish.
///
/// # Errors
/// None today: accept errors are logged and retried. The `Result` keeps room for fatal ones.
pub async fn run(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The watchdog keeps the head deadline (see the module documentation), so hyper's per-request
    // header timer stays off.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    // An identity API needs few parallel requests per connection; hyper's default of 200 streams
    // would let one connection hold 200 request bodies (see porteiro_web::body_budget).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS);
    let shared = Arc::new(Shared {
        router,
        builder,
        head: settings.header_read_timeout,
        idle: settings.idle_timeout,
    });
    let tally = Arc::new(Tally {
        caps: settings.caps,
        exempt: settings.trusted_proxies,
        open: Mutex::default(),
    });
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let (mut refusals, mut failures) = (Throttle::default(), Throttle::default());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if let Some(skipped) = failures.admit() {
                    tracing::error!(error = %e, skipped, "cannot accept a connection; retrying");
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let slot = match tally.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                drop(stream);
                if let Some(skipped) = refusals.admit() {
                    tracing::warn!(
                        peer = %peer.ip(),
                        cap = cap.name(),
                        skipped,
                        "connection refused: too many open connections"
                    );
                }
                continue;
            }
        };
        let accepted_at = Instant::now();
        // One write per response either way; this only keeps TLS records from waiting on ACKs.
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let shared = Arc::clone(&shared);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                return serve_connection(stream, peer, accepted_at, &shared, watcher).await;
            };
            let handshake =
                tokio::time::timeout_at(accepted_at + shared.head, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, peer, accepted_at, &shared, watcher).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open when the shutdown grace period ended");
    }
    Ok(())
}

/// Errors that concern only the one connection being accepted (the peer gave up), not the
/// listener: the next accept can follow at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What every connection task shares.
struct Shared {
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    head: Duration,
    idle: Duration,
}

/// Serves one connection until it ends, a deadline passes, or shutdown finishes it.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    accepted: Instant,
    shared: &Shared,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(accepted));
    let io = TokioIo::new(Tracked {
        io,
        activity: Arc::clone(&activity),
    });
    let (requests, responses) = (Arc::clone(&activity), Arc::clone(&activity));
    let service = shared
        .router
        .clone()
        .map_request(move |req: Request<Incoming>| {
            requests.request_started(req.version());
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        })
        .map_response(move |response: Response<Body>| {
            let activity = Arc::clone(&responses);
            response.map(|body| Finishing { body, activity })
        });
    let connection = watcher.watch(
        shared
            .builder
            .serve_connection(io, TowerToHyperService::new(service)),
    );
    tokio::pin!(connection);
    loop {
        let deadline = activity.deadline(shared.head, shared.idle);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                // Bytes may have moved while the timer ran; only a deadline still passed counts.
                if activity.deadline(shared.head, shared.idle) <= Instant::now() {
                    tracing::debug!(%peer, "connection closed: no request head or no traffic in time");
                    // Dropping the connection closes the socket.
                    return;
                }
            }
        }
    }
}

/// A connection's progress, as its watchdog sees it.
struct Activity {
    accepted: Instant,
    /// Milliseconds after `accepted` at which a byte last moved, either way.
    last_ms: AtomicU64,
    /// Whether a complete request head has arrived.
    requested: AtomicBool,
    /// Whether the requests are HTTP/1 (one at a time, each head awaited afresh).
    http1: AtomicBool,
    /// Requests whose response has not finished.
    in_flight: AtomicUsize,
    /// Milliseconds after `accepted` at which the last response finished.
    finished_ms: AtomicU64,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            accepted,
            last_ms: AtomicU64::new(0),
            requested: AtomicBool::new(false),
            http1: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            finished_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn request_started(&self, version: Version) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if !self.requested.load(Ordering::Relaxed) {
            self.http1
                .store(version < Version::HTTP_2, Ordering::Relaxed);
            self.requested.store(true, Ordering::Relaxed);
        }
    }

    fn response_finished(&self) {
        self.finished_ms.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the connection is to be closed unless something happens: `idle` after the last
    /// byte; and at the latest `head` after the accept until the first request head has
    /// arrived, or, with no request in flight, `head` (HTTP/1: the next head) or `idle`
    /// (HTTP/2, whose PING frames are traffic but not requests) after the last response.
    fn deadline(&self, head: Duration, idle: Duration) -> Instant {
        let millis = |at: &AtomicU64| Duration::from_millis(at.load(Ordering::Relaxed));
        let quiet = self.accepted + millis(&self.last_ms) + idle;
        if !self.requested.load(Ordering::Relaxed) {
            return quiet.min(self.accepted + head);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let since = self.accepted + millis(&self.finished_ms);
            let wait = if self.http1.load(Ordering::Relaxed) {
                head
            } else {
                idle
            };
            return quiet.min(since + wait);
        }
        quiet
    }
}

/// A response body that tells [`Activity`] when the response is done with (hyper drops the body
/// once it has sent it, or when the connection ends).
struct Finishing {
    body: Body,
    activity: Arc<Activity>,
}

impl Drop for Finishing {
    fn drop(&mut self) {
        self.activity.response_finished();
    }
}

impl hyper::body::Body for Finishing {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's byte stream, noting in [`Activity`] whenever a byte moves.
struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> Tracked<I> {
    fn note(&self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.note(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.note(&result);
        result
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

/// Open connections, in total and per client address.
struct Tally {
    caps: Caps,
    exempt: TrustedProxies,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Total,
    PerClient,
}

impl Full {
    fn name(self) -> &'static str {
        match self {
            Self::Total => "MAX_CONNECTIONS",
            Self::PerClient => "MAX_CONNECTIONS_PER_IP",
        }
    }
}

impl Tally {
    /// A slot for a connection from `peer`, or the cap it would exceed.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Full> {
        let client = (!self.exempt.trusts(peer)).then(|| client_key(peer));
        let mut guard = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let open = &mut *guard;
        if open.total >= self.caps.total {
            return Err(Full::Total);
        }
        if let Some(client) = client {
            let count = open.by_client.entry(client).or_insert(0);
            // A full address already had an entry, so a refusal leaves no empty one behind.
            if *count >= self.caps.per_ip {
                return Err(Full::PerClient);
            }
            *count += 1;
        }
        open.total += 1;
        Ok(Slot {
            tally: Arc::clone(self),
            client,
        })
    }
}

/// A connection's place under the caps, given back when the connection's task ends.
struct Slot {
    tally: Arc<Tally>,
    client: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self
            .tally
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open = &mut *guard;
        open.total = open.total.saturating_sub(1);
        if let Some(client) = self.client
            && let Entry::Occupied(mut entry) = open.by_client.entry(client)
        {
            *entry.get_mut() = entry.get().saturating_sub(1);
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

/// The address a connection counts against: IPv4 (also when mapped into IPv6), or the IPv6 /64,
/// since one host or customer usually holds a whole /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64))),
        },
    }
}

/// At most one log line a second for an event a client can repeat at will.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    skipped: u64,
}

impl Throttle {
    /// `Some(skipped)` when a line may be written now, with the number of events left out since
    /// the previous line; `None` when this one is to be left out.
    fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.skipped += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_connections_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections,
            max_connections_per_ip,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn caps_follow_the_descriptor_limit() {
        // Plenty of descriptors: the configured values.
        assert_eq!(
            Caps::effective(&limits(4096, 128), Some(1 << 20), 16),
            Caps {
                total: 4096,
                per_ip: 128
            }
        );
        // The common 1024: 96 kept back for 16 database connections and the rest.
        assert_eq!(
            Caps::effective(&limits(4096, 128), Some(1024), 16),
            Caps {
                total: 928,
                per_ip: 128
            }
        );
        // A tiny limit: at most half is kept back, and one address gets at most a quarter.
        assert_eq!(
            Caps::effective(&limits(4096, 128), Some(128), 16),
            Caps {
                total: 64,
                per_ip: 16
            }
        );
        // No limit known, and a total too small to divide: one connection per address.
        assert_eq!(
            Caps::effective(&limits(3, 128), None, 16),
            Caps {
                total: 3,
                per_ip: 1
            }
        );
        assert_eq!(Caps::effective(&limits(10, 10), Some(0), 16).total, 1);
    }

    #[test]
    fn client_keys_group_an_ipv6_64_and_unmap_ipv4() {
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(client_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn the_tally_enforces_both_caps_and_frees_slots() {
        let tally = Arc::new(Tally {
            caps: Caps {
                total: 4,
                per_ip: 2,
            },
            exempt: TrustedProxies::parse("10.0.0.1").expect("valid"),
            open: Mutex::default(),
        });
        let a1 = tally.admit(ip("192.0.2.1")).expect("first");
        let _a2 = tally
            .admit(ip("::ffff:192.0.2.1"))
            .expect("second, same address");
        assert_eq!(
            tally.admit(ip("192.0.2.1")).err(),
            Some(Full::PerClient),
            "third from one address"
        );
        // A trusted proxy passes the per-address cap, not the total.
        let _p1 = tally.admit(ip("10.0.0.1")).expect("proxy");
        let _p2 = tally.admit(ip("10.0.0.1")).expect("proxy again");
        assert_eq!(tally.admit(ip("10.0.0.1")).err(), Some(Full::Total));
        assert_eq!(tally.admit(ip("198.51.100.1")).err(), Some(Full::Total));
        drop(a1);
        let _b = tally.admit(ip("198.51.100.1")).expect("a freed slot");
        let open = tally.open.lock().expect("not poisoned");
        assert_eq!(open.total, 4);
        assert_eq!(open.by_client.get(&ip("192.0.2.1")), Some(&1));
        assert!(!open.by_client.contains_key(&ip("10.0.0.1")));
    }

    #[test]
    fn the_throttle_lets_one_line_a_second_through() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        throttle.last = throttle
            .last
            .map(|t| t.checked_sub(Duration::from_secs(2)).unwrap_or(t));
        assert_eq!(throttle.admit(), Some(2));
    }
}
