//! The credential broker: owns the role and the current role credential, and re-assumes the
//! role before it expires. Readers (the endpoint's listeners) only look at the published
//! [`Lease`] through a [`CredentialReader`]; they never call STS, so however many processes of
//! the child ask at once, STS sees one AssumeRole per refresh.
//!
//! The broker knows nothing of who reads: each reader says how much life a credential must
//! have left for its clients ([`CredentialReader::current`]), and the broker refreshes early
//! enough for the most demanding one, the minimum it is started with.
//!
//! The shape is mini-redis's `Db`: shared state behind a cheap handle, one background task that
//! sleeps until the next deadline or a [`Notify`], and a [`Broker`] guard whose drop stops it.
//! Wall-clock time and the STS call come in through [`Clock`] and [`Reassume`], so that the
//! refresh logic runs in tests under tokio's paused time.

pub mod activity;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use crate::role::credential::{fmt_time, RoleCredential};
use crate::role::{AssumeError, Role};
use activity::{About, Activity, Horizon, Tracker};

/// The longest we sleep without looking at the wall clock: monotonic timers stop while a laptop
/// is suspended, so a long sleep could wake up after the credential has expired.
const WALL_CLOCK_CHECK: Duration = Duration::from_secs(60);
/// Below this lifetime (only tests issue such credentials) every point scales with the lifetime
/// as if it were an hour, so a credential that lives 20 s goes through the same phases.
const REAL_LIFETIME: Duration = Duration::from_secs(30 * 60);
const HOUR: Duration = Duration::from_secs(3600);
/// How much longer than the minimum remaining lifetime a normally served credential lasts.
const MARGIN: Duration = Duration::from_secs(20 * 60);

/// When to refresh a credential, and how to pace the attempts if STS fails.
///
/// Real SDKs re-fetch a container credential some minutes before it expires (botocore: 15 min
/// advisory, 10 min mandatory; JS and Go 5 min; Rust 10 s). A reader never hands out a
/// credential with less than its minimum remaining lifetime left ([`stale_at`]), and we refresh
/// once the credential has `max(min + 20 min, lifetime/6)` left, at most two thirds of the
/// lifetime: what is served normally has 20 minutes more than the minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub refresh_at: SystemTime,
    /// First and largest pause between failed attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Schedule {
    pub fn for_credential(
        received: SystemTime,
        expiration: SystemTime,
        min_remaining: Duration,
    ) -> Schedule {
        let lifetime = expiration
            .duration_since(received)
            .unwrap_or(Duration::ZERO);
        let stale_lead = stale_lead(lifetime, min_remaining);
        let lead = if lifetime >= REAL_LIFETIME {
            (min_remaining + MARGIN).max(lifetime / 6)
        } else {
            lifetime * 2 / 3
        };
        Schedule {
            refresh_at: expiration - lead.min(lifetime * 2 / 3).max(stale_lead),
            backoff_min: (lifetime / 1000)
                .clamp(Duration::from_millis(100), Duration::from_secs(2)),
            backoff_max: (lifetime / 60).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

/// How long before expiry a credential stops being served to clients that need
/// `min_remaining`: that minimum, scaled like the rest below [`REAL_LIFETIME`].
fn stale_lead(lifetime: Duration, min_remaining: Duration) -> Duration {
    let lead = if lifetime >= REAL_LIFETIME {
        min_remaining
    } else {
        lifetime.mul_f64(min_remaining.as_secs_f64() / HOUR.as_secs_f64())
    };
    lead.min(lifetime)
}

/// When a credential stops being served to clients that need `min_remaining` left.
pub fn stale_at(credential: &RoleCredential, min_remaining: Duration) -> SystemTime {
    let lifetime = credential
        .expiration
        .duration_since(credential.received)
        .unwrap_or(Duration::ZERO);
    credential.expiration - stale_lead(lifetime, min_remaining)
}

/// Pauses between failed refresh attempts: exponential from the schedule's first pause to its
/// largest, each drawn in [half, all] of the step ("equal jitter") so that hosts spread apart;
/// an error a retry will not fix soon (AccessDenied) waits the largest pause at once.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(schedule: &Schedule) -> Backoff {
        Backoff {
            next: schedule.backoff_min,
            max: schedule.backoff_max,
        }
    }

    /// The pause before the next attempt; `jitter` in [0, 1].
    fn pause(&mut self, retryable: bool, jitter: f64) -> Duration {
        if !retryable {
            return self.max;
        }
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base / 2 + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// A credential together with its refresh schedule.
#[derive(Debug)]
pub struct Lease {
    pub credential: RoleCredential,
    pub schedule: Schedule,
    /// Counts up with every credential the broker publishes: what readers key a rendering by.
    pub generation: u64,
}

impl Lease {
    /// Whether the credential may still go to clients that need `min_remaining` left.
    pub fn servable(&self, min_remaining: Duration, now: SystemTime) -> bool {
        now < stale_at(&self.credential, min_remaining)
    }
}

/// The wall clock, as the broker and its readers see it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// One refresh attempt: what the broker calls, and nothing else.
pub trait Reassume: Send + 'static {
    fn reassume(&mut self) -> impl Future<Output = Result<RoleCredential, AssumeError>> + Send;

    /// When refreshing will stop working, as far as is known now; asked after every attempt.
    fn horizon(&self) -> Option<Horizon> {
        None
    }

    /// What is refreshed, for those who watch.
    fn about(&self) -> About {
        About::default()
    }
}

impl Reassume for Role {
    fn reassume(&mut self) -> impl Future<Output = Result<RoleCredential, AssumeError>> + Send {
        Role::reassume(self)
    }

    fn horizon(&self) -> Option<Horizon> {
        Role::horizon(self)
    }

    fn about(&self) -> About {
        Role::about(self)
    }
}

impl Reassume for crate::role::profile::ProfileCredentials {
    fn reassume(&mut self) -> impl Future<Output = Result<RoleCredential, AssumeError>> + Send {
        self.fetch()
    }

    fn horizon(&self) -> Option<Horizon> {
        crate::role::profile::ProfileCredentials::horizon(self)
    }

    fn about(&self) -> About {
        crate::role::profile::ProfileCredentials::about(self)
    }
}

/// The read side, handed to the endpoint.
#[derive(Clone)]
pub struct CredentialReader {
    current: watch::Receiver<Arc<Lease>>,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
    tracker: Tracker,
}

impl CredentialReader {
    /// What the broker has done so far, and its renewal horizon.
    pub fn activity(&self) -> Activity {
        self.tracker.snapshot()
    }

    /// The wall clock the broker plans with.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The credential held now, servable or not (for metadata such as when it was issued).
    pub fn held(&self) -> Arc<Lease> {
        Arc::clone(&self.current.borrow())
    }

    /// The credential to hand to clients that need `min_remaining` left, or `None` when the one
    /// held has less. Whenever the held one is due for refresh the broker is woken: after a
    /// suspend its timer is behind the wall clock, and the first request notices.
    pub fn current(&self, min_remaining: Duration) -> Option<Arc<Lease>> {
        let lease = self.held();
        let now = self.clock.now();
        if now >= lease.schedule.refresh_at {
            self.wake.notify_one();
        }
        lease.servable(min_remaining, now).then_some(lease)
    }
}

/// The running broker. Dropping it stops the refresh task.
pub struct Broker {
    reader: CredentialReader,
    shutdown: Arc<Notify>,
    /// The refresh task's span, for what is said when it is stopped.
    span: tracing::Span,
}

impl Broker {
    /// Starts the refresh task on the current tokio runtime with the credential from the first
    /// AssumeRole, refreshing in time for readers that need up to `min_remaining` left.
    pub fn start(
        role: impl Reassume,
        first: RoleCredential,
        min_remaining: Duration,
        clock: Arc<dyn Clock>,
    ) -> Broker {
        Broker::start_in(tracing::Span::current(), role, first, min_remaining, clock)
    }

    /// [`Broker::start`], with the refresh task's log lines in `span` (a named role's).
    pub fn start_in(
        span: tracing::Span,
        role: impl Reassume,
        first: RoleCredential,
        min_remaining: Duration,
        clock: Arc<dyn Clock>,
    ) -> Broker {
        let first = Lease {
            schedule: Schedule::for_credential(first.received, first.expiration, min_remaining),
            credential: first,
            generation: 0,
        };
        let (tx, rx) = watch::channel(Arc::new(first));
        let wake = Arc::new(Notify::new());
        let shutdown = Arc::new(Notify::new());
        let tracker = Tracker::new(role.about(), role.horizon());
        let task = Refresher {
            role,
            tx,
            wake: Arc::clone(&wake),
            clock: Arc::clone(&clock),
            min_remaining,
            tracker: tracker.clone(),
            said: Said::default(),
        };
        let stop = Arc::clone(&shutdown);
        let refreshing = async move {
            tokio::select! {
                () = task.refresh_forever() => {}
                () = stop.notified() => tracing::debug!("credential broker stopped"),
            }
        };
        tokio::spawn(tracing::Instrument::instrument(refreshing, span.clone()));
        Broker {
            reader: CredentialReader {
                current: rx,
                wake,
                clock,
                tracker,
            },
            shutdown,
            span,
        }
    }

    pub fn reader(&self) -> CredentialReader {
        self.reader.clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // notify_one stores a permit, so the task stops even if it is not waiting right now.
        self.shutdown.notify_one();
        // The task may never run again (the runtime is shut down next), so this is said here:
        // an attempt cut short may have run a credential_process helper or called STS.
        if self.reader.tracker.snapshot().attempting {
            let _in = self.span.enter();
            tracing::info!("stopped while a refresh attempt was under way; it was abandoned");
        }
    }
}

/// The refresh task's state: it alone calls STS, so it owns the role outright.
struct Refresher<R> {
    role: R,
    tx: watch::Sender<Arc<Lease>>,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
    min_remaining: Duration,
    tracker: Tracker,
    said: Said,
}

/// What has been said about the horizon, once each (again if it moves later: a new SSO login).
#[derive(Default)]
struct Said {
    horizon: Option<SystemTime>,
    near: bool,
    reached: bool,
}

impl<R: Reassume> Refresher<R> {
    /// Refreshes before every expiry until the broker is dropped.
    async fn refresh_forever(mut self) {
        loop {
            let schedule = self.tx.borrow().schedule;
            wait_until(&*self.clock, schedule.refresh_at, &self.wake).await;
            let lease = self.refresh(schedule).await;
            let next = lease.schedule;
            self.tx.send_replace(Arc::new(lease));
            if next.refresh_at <= self.clock.now() {
                // A credential due for refresh the moment it arrives means our clock is far off
                // STS's (or the role's session is very short): never turn that into a tight loop.
                tracing::warn!(
                    "the new credential is already due for refresh; is the system clock right? \
                     next attempt in {}s",
                    next.backoff_max.as_secs()
                );
                tokio::time::sleep(next.backoff_max).await;
            }
        }
    }

    /// Assumes the role until it works, pausing with jittered exponential backoff between
    /// attempts.
    async fn refresh(&mut self, schedule: Schedule) -> Lease {
        let mut backoff = Backoff::new(&schedule);
        let mut attempt: u32 = 1;
        loop {
            let started = tokio::time::Instant::now();
            let (held, generation) = {
                let lease = self.tx.borrow();
                (lease.credential.expiration, lease.generation)
            };
            self.tracker.attempting();
            match self.role.reassume().await.and_then(|c| no_worse(c, held)) {
                Ok(credential) => {
                    // Counted before it is said: a broker stopped now says nothing was under way
                    // only once this line is certain to follow.
                    let horizon = self.role.horizon();
                    self.tracker.succeeded(horizon.clone());
                    tracing::info!(
                        expires = %fmt_time(credential.expiration),
                        took_ms = started.elapsed().as_millis() as u64,
                        attempt,
                        "refreshed role credentials"
                    );
                    self.warn_if_near(horizon.as_ref(), &credential);
                    return Lease {
                        schedule: Schedule::for_credential(
                            credential.received,
                            credential.expiration,
                            self.min_remaining,
                        ),
                        credential,
                        generation: generation + 1,
                    };
                }
                Err(e) => {
                    // A non-retryable error (the trust policy changed mid-job) may still be fixed
                    // by someone; keep trying, slowly.
                    let pause = backoff.pause(e.retryable, random_unit());
                    let stale = stale_at(&self.tx.borrow().credential, self.min_remaining);
                    let serving = if self.clock.now() < stale {
                        format!(
                            "still serving the current credential until {}",
                            fmt_time(stale)
                        )
                    } else {
                        "no valid credential to serve: the child gets HTTP 503".to_string()
                    };
                    let horizon = self.role.horizon();
                    self.tracker
                        .failed(self.clock.now(), e.to_string(), horizon.clone());
                    self.say_if_reached(horizon.as_ref(), &serving);
                    if !e.is_serious() {
                        tracing::warn!(
                            attempt,
                            retry_in_ms = pause.as_millis() as u64,
                            "refreshing role credentials failed: {e}; {serving}"
                        );
                    } else {
                        tracing::error!(
                            attempt,
                            retry_in_ms = pause.as_millis() as u64,
                            "refreshing role credentials failed: {e} ({}); {serving}",
                            e.hint()
                        );
                    }
                    tokio::time::sleep(pause).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}

impl<R> Refresher<R> {
    /// Forgets what was said when the horizon moved later (a new `aws sso login`).
    fn moved(&mut self, horizon: &Horizon) {
        if self.said.horizon.is_some_and(|at| horizon.at > at) {
            self.said = Said::default();
        }
        self.said.horizon = Some(horizon.at);
    }

    /// Once, when the horizon comes before the credential just received would be refreshed
    /// again: this may be the last refresh.
    fn warn_if_near(&mut self, horizon: Option<&Horizon>, fresh: &RoleCredential) {
        let Some(horizon) = horizon else { return };
        self.moved(horizon);
        if self.said.near || horizon.at >= fresh.expiration {
            return;
        }
        self.said.near = true;
        let left = horizon
            .at
            .duration_since(self.clock.now())
            .unwrap_or_default();
        tracing::warn!(
            "refreshing will stop at {} (in {}m), when {}: the credentials served then run out \
             at {}; to go on: {}",
            fmt_time(horizon.at),
            left.as_secs() / 60,
            horizon.what,
            fmt_time(fresh.expiration),
            horizon.fix
        );
    }

    /// Once, when an attempt fails past the horizon: that is why.
    fn say_if_reached(&mut self, horizon: Option<&Horizon>, serving: &str) {
        let Some(horizon) = horizon else { return };
        self.moved(horizon);
        if self.said.reached || self.clock.now() < horizon.at {
            return;
        }
        self.said.reached = true;
        tracing::error!(
            "refreshing has stopped: {} at {}; {serving}; to go on: {}",
            horizon.what,
            fmt_time(horizon.at),
            horizon.fix
        );
    }
}

/// A new credential must last at least as long as the one held: one that expires sooner (a
/// clock or proxy gone wrong) would only bring the 503s, or the ExpiredToken, closer.
fn no_worse(new: RoleCredential, held: SystemTime) -> Result<RoleCredential, AssumeError> {
    if new.expiration >= held {
        return Ok(new);
    }
    Err(AssumeError::suspicious(format!(
        "STS answered with a credential that expires at {}, sooner than the one held \
             (until {}); keeping the current one",
        fmt_time(new.expiration),
        fmt_time(held)
    ))
    .doing("refresh the role"))
}

/// Sleeps until the wall clock reaches `when`, waking early to re-check it after a suspend.
async fn wait_until(clock: &dyn Clock, when: SystemTime, wake: &Notify) {
    loop {
        let Ok(left) = when.duration_since(clock.now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(left.min(WALL_CLOCK_CHECK)) => {}
            _ = wake.notified() => {}
        }
    }
}

/// A random number in [0, 1] from the OS; the middle if it has none to give.
fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    match crate::sys::random::fill(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests;
