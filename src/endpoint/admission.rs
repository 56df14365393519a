//! Who keeps a connection when the endpoint is full, so that a slow or abusive local client can
//! never make the child's SDK wait.
//!
//! Every connection is accepted at once. When all slots are taken, the new one takes the slot of
//! the connection least likely to be a working SDK: first one that has spent a second without
//! finishing a request (slow headers), oldest first; then one whose responses have stopped being
//! read (a client that pipelines and never reads), stuck longest first; then the idle one quiet
//! longest; a connection just opened goes last (newest first): it may be the child's.
//! Past three quarters full, new connections get one second, not five, to send their headers,
//! and a connection that has had its share of requests is closed, so that no client keeps a
//! slot busy forever while others wait (below that, keep-alive clients keep their connection).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// SDKs open one or two connections each; this leaves room for a big process tree while keeping
/// a misbehaving local client from exhausting file descriptors.
pub const MAX_CONNECTIONS: usize = 512;
/// From here on, new connections get the short header timeout.
const PRESSURE: usize = MAX_CONNECTIONS * 3 / 4;
/// A request's headers must arrive within this; SDKs send theirs in one write.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const HEADER_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_secs(1);
/// An SDK makes a handful of requests on a connection; past this many, while the endpoint is
/// under pressure, the response says `Connection: close`.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 100;

/// The connections being served.
pub struct Admission {
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// How many are open, readable without the lock on every request.
    open: AtomicUsize,
}

/// One connection's standing, updated by its I/O without a lock.
pub struct Conn {
    id: u64,
    opened_ms: u64,
    /// Requests that reached the service.
    requests: AtomicU32,
    last_activity_ms: AtomicU64,
    /// When a response write started waiting on a full socket (0: not waiting).
    write_blocked_ms: AtomicU64,
    evicted: Notify,
}

impl Admission {
    pub fn new() -> Admission {
        Admission {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which stands for "not blocked".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// A slot for a new connection (evicting another if full), and its header timeout.
    pub fn admit(&self) -> (Arc<Conn>, Duration) {
        let now = self.now_ms();
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            opened_ms: now,
            requests: AtomicU32::new(0),
            last_activity_ms: AtomicU64::new(now),
            write_blocked_ms: AtomicU64::new(0),
            evicted: Notify::new(),
        });
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= MAX_CONNECTIONS {
            if let Some(victim) = victim(conns.values(), now).map(|c| c.id) {
                if let Some(victim) = conns.remove(&victim) {
                    // notify_one keeps a permit: the task sees it even if not waiting yet.
                    victim.evicted.notify_one();
                }
            }
        }
        let timeout = if conns.len() >= PRESSURE {
            HEADER_TIMEOUT_UNDER_PRESSURE
        } else {
            HEADER_TIMEOUT
        };
        conns.insert(conn.id, Arc::clone(&conn));
        self.open.store(conns.len(), Ordering::Relaxed);
        (conn, timeout)
    }

    /// The connection ended; its slot is free.
    pub fn leave(&self, conn: &Conn) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.remove(&conn.id);
        self.open.store(conns.len(), Ordering::Relaxed);
    }

    /// Counts a request on `conn`; false when it should be the connection's last: it has had
    /// its share and others may be waiting for a slot.
    pub fn request(&self, conn: &Conn) -> bool {
        let served = conn.requests.fetch_add(1, Ordering::Relaxed);
        served < MAX_REQUESTS_PER_CONNECTION || self.open.load(Ordering::Relaxed) < PRESSURE
    }

    /// Wraps the connection's stream so that its progress is recorded.
    pub fn track<S>(self: &Arc<Self>, stream: S, conn: &Arc<Conn>) -> Tracked<S> {
        Tracked {
            inner: stream,
            conn: Arc::clone(conn),
            admission: Arc::clone(self),
        }
    }
}

/// How long a connection may take to send its first request before it counts as slow.
const SLOW_AFTER_MS: u64 = 1000;

/// The connection to close to make room at `now`, in the order the module comment gives.
fn victim<'a>(conns: impl Iterator<Item = &'a Arc<Conn>>, now: u64) -> Option<&'a Arc<Conn>> {
    conns.min_by_key(|c| {
        let blocked = c.write_blocked_ms.load(Ordering::Relaxed);
        let silent = c.requests.load(Ordering::Relaxed) == 0;
        if silent && now.saturating_sub(c.opened_ms) >= SLOW_AFTER_MS {
            (0, c.opened_ms)
        } else if blocked != 0 {
            (1, blocked)
        } else if !silent {
            (2, c.last_activity_ms.load(Ordering::Relaxed))
        } else {
            (3, u64::MAX - c.opened_ms)
        }
    })
}

impl Conn {
    /// Resolves when another connection took this one's slot.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

/// A stream whose reads and writes mark its connection as making progress, or as stuck.
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
    admission: Arc<Admission>,
}

impl<S> Tracked<S> {
    fn progressed(&self) {
        let now = self.admission.now_ms();
        self.conn.last_activity_ms.store(now, Ordering::Relaxed);
        self.conn.write_blocked_ms.store(0, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn
                .last_activity_ms
                .store(self.admission.now_ms(), Ordering::Relaxed);
        }
        polled
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
            Poll::Ready(Ok(n)) if n > 0 => self.progressed(),
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

    fn conn(id: u64, opened: u64, requests: u32, active: u64, blocked: u64) -> Arc<Conn> {
        Arc::new(Conn {
            id,
            opened_ms: opened,
            requests: AtomicU32::new(requests),
            last_activity_ms: AtomicU64::new(active),
            write_blocked_ms: AtomicU64::new(blocked),
            evicted: Notify::new(),
        })
    }

    #[test]
    fn the_victim_is_the_least_likely_to_be_an_sdk() {
        let now = 5000;
        let idle = conn(1, 10, 3, 50, 0);
        let stuck_late = conn(2, 20, 9, 80, 90);
        let stuck_early = conn(3, 30, 9, 40, 45);
        let slow_old = conn(4, 5, 0, 5, 0);
        let slow_new = conn(5, 60, 0, 60, 0);
        let just_opened = conn(6, 4900, 0, 4900, 0);
        let newest = conn(7, 4950, 0, 4950, 0);
        let all = [
            &idle,
            &stuck_late,
            &stuck_early,
            &slow_old,
            &slow_new,
            &just_opened,
        ];
        let pick = |c: &[&Arc<Conn>]| victim(c.iter().copied(), now).map(|v| v.id);
        assert_eq!(pick(&all), Some(4), "silent for a second, oldest first");
        assert_eq!(
            pick(&all[..3]),
            Some(3),
            "then stuck writers, longest first"
        );
        let quiet = [&idle, &conn(8, 1, 1, 70, 0), &just_opened];
        assert_eq!(pick(&quiet), Some(1), "then the quietest");
        assert_eq!(
            pick(&[&just_opened, &newest]),
            Some(7),
            "just opened: newest first"
        );
    }

    #[test]
    fn a_connections_share_of_requests_is_capped_only_under_pressure() {
        let admission = Admission::new();
        let (conn, _) = admission.admit();
        for _ in 0..MAX_REQUESTS_PER_CONNECTION * 2 {
            assert!(admission.request(&conn), "capped without pressure");
        }
        let others: Vec<_> = (0..PRESSURE).map(|_| admission.admit().0).collect();
        assert!(!admission.request(&conn), "not capped under pressure");
        for other in &others {
            admission.leave(other);
        }
        assert!(admission.request(&conn));
    }

    #[test]
    fn full_means_evict_and_hurry() {
        let admission = Admission::new();
        let mut first = None;
        for i in 0..MAX_CONNECTIONS {
            let (c, timeout) = admission.admit();
            let want = if i < PRESSURE {
                HEADER_TIMEOUT
            } else {
                HEADER_TIMEOUT_UNDER_PRESSURE
            };
            assert_eq!(timeout, want, "{i}");
            first.get_or_insert(c);
        }
        // The first has served a request and gone idle; the rest were just opened.
        let first = first.unwrap();
        assert!(admission.request(&first));
        let (_, timeout) = admission.admit();
        assert_eq!(timeout, HEADER_TIMEOUT_UNDER_PRESSURE);
        assert_eq!(admission.conns.lock().unwrap().len(), MAX_CONNECTIONS);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), first.evicted())
                .await
                .expect("the first connection was not evicted");
        });
    }
}
