//! Who gets a connection slot when the endpoint is full, so that neither a local attacker nor a
//! big honest process tree can make the child's SDK wait, and no honest request is lost.
//!
//! What tells an SDK from an attacker: an SDK sends its whole request the moment it connects
//! (one write, so it is usually in the socket before the connection is even accepted), reads
//! its response, and either sends the next request or goes away. So:
//! - a connection that has not yet completed a request is *pending*. When the endpoint is full,
//!   the pending connection that has waited longest makes room: that is the slowest sender,
//!   never the connection that just arrived (a reconnecting attacker's newest connection and
//!   the child's look alike; the oldest one does not);
//! - a connection whose responses have gone unread for a second (a client that pipelines and
//!   never reads) makes room next;
//! - every other connection has completed a request and is never cut: not in the middle of a
//!   request, and not between requests either, where a client may already be sending the next.
//!   Past three quarters full, such a connection is closed the honest way, with
//!   `Connection: close` on a response, once it has had its share of requests, and new
//!   connections get one second instead of five to send their headers;
//! - when every slot is held by such connections, new ones wait in the kernel's listen queue
//!   until a slot frees, instead of pushing anyone out.
//!
//! The slot count comes from the open-file limit (raised at start, see `lockdown`), at most
//! [`MAX_CONNECTIONS`] per listener.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// A big process tree (a thousand SDK clients, each with a connection or two) fits, and so do
/// two thousand slow local connections, without running credwrap out of file descriptors.
pub const MAX_CONNECTIONS: usize = 4096;
/// The fewest slots a listener gets, whatever the file limit says.
const MIN_CONNECTIONS: usize = 64;
/// A request's headers must arrive within this; SDKs send theirs in one write.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const HEADER_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_secs(1);
/// An SDK makes a handful of requests on a connection; past this many, while the endpoint is
/// under pressure, the response says `Connection: close`.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 100;
/// An SDK gets a refusal (a wrong token, a wrong path) a few times at most before it gives up;
/// a connection that has had this many is closed (`Connection: close`) after the next one, so
/// that a client without the secrets cannot keep a slot and a core busy with refusals.
pub const MAX_REFUSALS_PER_CONNECTION: u32 = 8;
/// How long a response may wait for its client to read before the connection counts as stuck.
const STUCK_AFTER_MS: u64 = 1000;
/// While full of connections none of which may be closed, how often to look again for one
/// that became stuck since (the only change that comes without an event).
const RECHECK: Duration = Duration::from_secs(1);
/// A connection closed to make room holds its descriptor until its task has dropped it; this
/// many such sockets may be on their way out while new ones are already accepted, so that a
/// storm of reconnections is not slowed to one task switch per connection.
const CLOSING_SLACK: usize = 32;

/// The listen queue's length: connections waiting for a slot (and a storm of reconnecting
/// attackers) wait there, not in SYN retransmits a second apart; the kernel caps it at
/// `net.core.somaxconn` (4096 on current kernels).
const LISTEN_QUEUE: u32 = 4096;

/// A listening socket on `addr` with a listen queue of [`LISTEN_QUEUE`].
pub fn listen(addr: std::net::SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's and tokio's own bind do: a port whose last connections linger in TIME_WAIT can
    // be listened on again.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_QUEUE)
}

/// How many connections one listener may hold, from the open-file limit shared by `listeners`.
pub fn capacity(open_files: u64, listeners: usize) -> usize {
    // Room for the runtime, the STS client's connections, the files credwrap keeps, and each
    // listener's sockets on their way out.
    let listeners = listeners.max(1) as u64;
    let budget = open_files.saturating_sub(128 + CLOSING_SLACK as u64 * listeners) / listeners;
    usize::try_from(budget)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// The connections of one listener.
pub struct Admission {
    epoch: Instant,
    next_id: AtomicU64,
    capacity: usize,
    pressure: usize,
    state: Mutex<Slots>,
    /// How many are open, readable without the lock on every request.
    open: AtomicUsize,
    /// A slot was freed.
    room: Notify,
}

#[derive(Default)]
struct Slots {
    /// Sockets open: admitted and not yet dropped by their task (closed ones included until
    /// then). What the descriptor budget counts.
    live: usize,
    /// Admitted connections not asked to close.
    conns: HashMap<u64, Arc<Conn>>,
    /// Of those, the ones that have not completed a request yet, oldest first (ids only grow).
    pending: BTreeSet<u64>,
}

/// One connection's standing, updated by its I/O without a lock.
pub struct Conn {
    id: u64,
    /// Requests that reached the service.
    requests: AtomicU32,
    /// Of those, the ones refused (4xx, 5xx).
    refused: AtomicU32,
    /// When a response write started waiting on a full socket (0: not waiting).
    write_blocked_ms: AtomicU64,
    evicted: Notify,
}

impl Admission {
    pub fn new(capacity: usize) -> Admission {
        Admission {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            capacity,
            pressure: capacity * 3 / 4,
            state: Mutex::new(Slots::default()),
            open: AtomicUsize::new(0),
            room: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which stands for "not blocked".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once a new connection can have a slot: one is free, or one was closed to make
    /// room (its socket is on its way out). Until then new connections wait in the listen
    /// queue.
    pub async fn room(&self) {
        loop {
            let freed = self.room.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = self.state();
                if state.live < self.capacity {
                    return;
                }
                if state.live < self.capacity + CLOSING_SLACK {
                    if let Some(victim) = self.victim(&state) {
                        state.pending.remove(&victim);
                        if let Some(victim) = state.conns.remove(&victim) {
                            // notify_one keeps a permit: the task sees it even if not waiting.
                            victim.evicted.notify_one();
                        }
                        return;
                    }
                }
            }
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// A slot for a new connection (after [`Admission::room`]), and its header timeout.
    pub fn admit(&self) -> (Arc<Conn>, Duration) {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            requests: AtomicU32::new(0),
            refused: AtomicU32::new(0),
            write_blocked_ms: AtomicU64::new(0),
            evicted: Notify::new(),
        });
        let mut state = self.state();
        let timeout = if state.live >= self.pressure {
            HEADER_TIMEOUT_UNDER_PRESSURE
        } else {
            HEADER_TIMEOUT
        };
        state.live += 1;
        state.conns.insert(conn.id, Arc::clone(&conn));
        state.pending.insert(conn.id);
        self.open.store(state.live, Ordering::Relaxed);
        (conn, timeout)
    }

    /// The connection ended; its slot is free.
    pub fn leave(&self, conn: &Conn) {
        let mut state = self.state();
        state.live = state.live.saturating_sub(1);
        state.conns.remove(&conn.id);
        state.pending.remove(&conn.id);
        self.open.store(state.live, Ordering::Relaxed);
        drop(state);
        self.room.notify_one();
    }

    /// Counts a request on `conn` (whose headers have all arrived: from now on it is never cut),
    /// answered with a refusal or not; false when it should be the connection's last, said with
    /// `Connection: close`.
    pub fn request(&self, conn: &Conn, refused: bool) -> bool {
        let served = conn.requests.fetch_add(1, Ordering::Relaxed);
        if served == 0 {
            self.state().pending.remove(&conn.id);
        }
        if refused && conn.refused.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSALS_PER_CONNECTION {
            return false;
        }
        served < MAX_REQUESTS_PER_CONNECTION || self.open.load(Ordering::Relaxed) < self.pressure
    }

    /// The connection to close to make room, in the order the module comment gives: the oldest
    /// pending one, else the one whose responses have waited longest, if a second or more.
    fn victim(&self, state: &Slots) -> Option<u64> {
        if let Some(oldest) = state.pending.first() {
            return Some(*oldest);
        }
        let now = self.now_ms();
        state
            .conns
            .values()
            .filter_map(|c| {
                let blocked = c.write_blocked_ms.load(Ordering::Relaxed);
                (blocked != 0 && now.saturating_sub(blocked) >= STUCK_AFTER_MS)
                    .then_some((blocked, c.id))
            })
            .min()
            .map(|(_, id)| id)
    }

    /// Wraps the connection's stream so that a write stuck on an unread socket is noticed.
    pub fn track<S>(self: &Arc<Self>, stream: S, conn: &Arc<Conn>) -> Tracked<S> {
        Tracked {
            inner: stream,
            conn: Arc::clone(conn),
            admission: Arc::clone(self),
        }
    }
}

impl Conn {
    /// Resolves when another connection took this one's slot.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

/// A stream whose writes mark its connection as stuck while the client does not read.
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
    admission: Arc<Admission>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        match polled {
            Poll::Pending => {
                let now = self.admission.now_ms();
                let _ = self.conn.write_blocked_ms.compare_exchange(
                    0,
                    now,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(Ok(n)) if n > 0 => self.conn.write_blocked_ms.store(0, Ordering::Relaxed),
            Poll::Ready(_) => {}
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 100;

    #[test]
    fn capacity_follows_the_open_file_limit() {
        assert_eq!(capacity(20_000, 1), MAX_CONNECTIONS);
        assert_eq!(capacity(1024, 1), 864);
        assert_eq!(capacity(1024, 2), 416);
        assert_eq!(capacity(100, 1), MIN_CONNECTIONS);
    }

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// Makes room as the accept loop does, then admits.
    fn arrive(a: &Admission) -> Arc<Conn> {
        paused_runtime().block_on(a.room());
        a.admit().0
    }

    /// The connection ended (its task dropped the socket), evicted or not.
    fn gone(a: &Admission, c: &Conn) -> bool {
        !a.state().conns.contains_key(&c.id)
    }

    #[test]
    fn when_full_the_oldest_pending_connection_makes_room_never_the_newest() {
        let a = Admission::new(CAP);
        let conns: Vec<_> = (0..CAP).map(|_| arrive(&a)).collect();
        // The first half completed a request: protected from now on.
        for c in &conns[..CAP / 2] {
            a.request(c, false);
        }
        let newest = arrive(&a);
        let evicted: Vec<usize> = (0..CAP).filter(|&i| gone(&a, &conns[i])).collect();
        assert_eq!(evicted, [CAP / 2], "the oldest pending one");
        // The evicted socket closes: its slot is free again for the next arrival.
        a.leave(&conns[CAP / 2]);
        // The newest arrival is never the next to go, however many follow it.
        for i in 1..CAP / 2 {
            arrive(&a);
            a.leave(&conns[CAP / 2 + i]);
        }
        assert!(!gone(&a, &newest));
        arrive(&a);
        assert!(gone(&a, &newest), "now it is the oldest pending");
        for c in &conns[..CAP / 2] {
            assert!(!gone(&a, c), "a served connection was cut");
        }
    }

    #[test]
    fn sockets_on_their_way_out_count_against_the_budget() {
        let a = Admission::new(CAP);
        let conns: Vec<_> = (0..CAP).map(|_| arrive(&a)).collect();
        // Evicted, but none of their tasks has dropped its socket yet.
        for _ in 0..CLOSING_SLACK {
            arrive(&a);
        }
        assert_eq!(a.state().live, CAP + CLOSING_SLACK);
        paused_runtime().block_on(async {
            let wait = tokio::time::timeout(Duration::from_secs(5), a.room()).await;
            assert!(wait.is_err(), "let in past the descriptor budget");
            a.leave(&conns[0]);
            tokio::time::timeout(Duration::from_millis(1), a.room())
                .await
                .expect("a closed socket frees a slot");
        });
    }

    #[test]
    fn connections_that_completed_a_request_are_never_cut() {
        let a = Admission::new(CAP);
        let conns: Vec<_> = (0..CAP).map(|_| arrive(&a)).collect();
        for c in &conns {
            a.request(c, false);
        }
        assert!(a.victim(&a.state()).is_none());
        // A writer stuck for less than a second is still an honest client.
        conns[3]
            .write_blocked_ms
            .store(a.now_ms(), Ordering::Relaxed);
        assert!(a.victim(&a.state()).is_none());
        conns[3].write_blocked_ms.store(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(a.victim(&a.state()), Some(conns[3].id));
    }

    #[test]
    fn a_full_endpoint_of_served_connections_makes_new_ones_wait() {
        paused_runtime().block_on(async {
            let a = Arc::new(Admission::new(CAP));
            let conns: Vec<_> = (0..CAP).map(|_| a.admit().0).collect();
            assert!(a.state().live == CAP);
            for c in &conns {
                a.request(c, false);
            }
            let waiting = tokio::spawn({
                let a = Arc::clone(&a);
                async move { a.room().await }
            });
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert!(!waiting.is_finished(), "let in while full");
            a.leave(&conns[0]);
            tokio::time::timeout(Duration::from_millis(1), waiting)
                .await
                .expect("not let in once a slot was freed")
                .unwrap();
        });
    }

    #[test]
    fn a_connections_share_of_requests_is_capped_only_under_pressure() {
        let a = Admission::new(CAP);
        let (conn, _) = a.admit();
        for _ in 0..MAX_REQUESTS_PER_CONNECTION * 2 {
            assert!(a.request(&conn, false), "capped without pressure");
        }
        let others: Vec<_> = (0..a.pressure).map(|_| a.admit().0).collect();
        assert!(!a.request(&conn, false), "not capped under pressure");
        for other in &others {
            a.leave(other);
        }
        assert!(a.request(&conn, false));
    }

    #[test]
    fn a_connection_that_only_gets_refusals_is_closed_soon() {
        let a = Admission::new(CAP);
        let (conn, _) = a.admit();
        for i in 0..MAX_REFUSALS_PER_CONNECTION {
            assert!(a.request(&conn, true), "closed after {i} refusals");
        }
        assert!(!a.request(&conn, true));
    }

    #[test]
    fn past_three_quarters_new_connections_hurry() {
        let a = Admission::new(CAP);
        for i in 0..CAP {
            let (_, timeout) = a.admit();
            let want = if i < a.pressure {
                HEADER_TIMEOUT
            } else {
                HEADER_TIMEOUT_UNDER_PRESSURE
            };
            assert_eq!(timeout, want, "{i}");
        }
    }
}
