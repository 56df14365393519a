//! The credential broker: owns the [`Role`] and the current role credential, and re-assumes the
//! role before it expires. Readers (the endpoint) only look at the published [`Lease`] through a
//! [`CredentialReader`]; they never call STS, so however many processes of the child ask at
//! once, STS sees one AssumeRole per refresh.
//!
//! The shape is mini-redis's `Db`: shared state behind a cheap handle, one background task that
//! sleeps until the next deadline or a [`Notify`], and a [`Broker`] guard whose drop stops it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use crate::credential::{fmt_time, RoleCredential};
use crate::role::{AssumeError, Role};

/// The longest we sleep without looking at the wall clock: monotonic timers stop while a laptop
/// is suspended, so a long sleep could wake up after the credential has expired.
const WALL_CLOCK_CHECK: Duration = Duration::from_secs(60);

/// When to refresh a credential and when to stop handing it out.
///
/// Real SDKs re-fetch a container credential some minutes before it expires (botocore: 15 min
/// advisory, 10 min mandatory; JS and Go 5 min; Rust 10 s). The endpoint never hands out a
/// credential with less than a `guard` left (10 minutes for the container endpoint, 25 for IMDS,
/// whose clients stretch an expiring credential), and we refresh once it has
/// `max(guard + 20 min, lifetime/6)` left, at most two thirds of the lifetime: what is served
/// normally has 20 minutes more than the guard. Below 30 minutes (only tests issue such
/// credentials) the guard scales with the lifetime as if it were an hour, so a credential that
/// lives 20 s goes through the same phases as a real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub refresh_at: SystemTime,
    pub stale_at: SystemTime,
    /// First and largest pause between failed attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// botocore fails a call when its container credential has less than this left.
pub const CONTAINER_GUARD: Duration = Duration::from_secs(10 * 60);
/// botocore and the Rust SDK stretch an IMDS credential with less than ~20 minutes left.
pub const IMDS_GUARD: Duration = Duration::from_secs(25 * 60);
const REAL_LIFETIME: Duration = Duration::from_secs(30 * 60);
const HOUR: Duration = Duration::from_secs(3600);
/// How much longer than the guard a normally served credential lasts.
const MARGIN: Duration = Duration::from_secs(20 * 60);

impl Plan {
    pub fn for_credential(received: SystemTime, expiration: SystemTime, guard: Duration) -> Plan {
        let lifetime = expiration
            .duration_since(received)
            .unwrap_or(Duration::ZERO);
        let (stale_lead, refresh_lead) = if lifetime >= REAL_LIFETIME {
            let lead = (guard + MARGIN).max(lifetime / 6);
            (guard, lead)
        } else {
            let scaled_guard = lifetime.mul_f64(guard.as_secs_f64() / HOUR.as_secs_f64());
            (scaled_guard, lifetime * 2 / 3)
        };
        let refresh_lead = refresh_lead.min(lifetime * 2 / 3).max(stale_lead);
        Plan {
            refresh_at: expiration - refresh_lead,
            stale_at: expiration - stale_lead.min(lifetime),
            backoff_min: (lifetime / 1000)
                .clamp(Duration::from_millis(100), Duration::from_secs(2)),
            backoff_max: (lifetime / 60).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

/// Pauses between failed refresh attempts: capped exponential backoff with jitter for transient
/// errors, the cap straight away for errors a retry will not fix soon (AccessDenied).
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(plan: &Plan) -> Backoff {
        Backoff {
            next: plan.backoff_min,
            max: plan.backoff_max,
        }
    }

    /// The pause before the next attempt; `jitter` in [0, 1] spreads hosts apart.
    fn pause(&mut self, retryable: bool, jitter: f64) -> Duration {
        if !retryable {
            return self.max;
        }
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base / 2 + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// A credential together with the plan made for it.
#[derive(Debug)]
pub struct Lease {
    pub credential: RoleCredential,
    pub plan: Plan,
    /// The endpoint's rendering of this credential, made once on first use: the hot path then
    /// only clones a reference-counted buffer.
    pub rendered: std::sync::OnceLock<bytes::Bytes>,
}

impl Lease {
    fn new(credential: RoleCredential, guard: Duration) -> Lease {
        let plan = Plan::for_credential(credential.received, credential.expiration, guard);
        Lease {
            credential,
            plan,
            rendered: std::sync::OnceLock::new(),
        }
    }

    /// Whether the credential may still be handed to an SDK at `now`.
    pub fn servable(&self, now: SystemTime) -> bool {
        now < self.plan.stale_at
    }
}

/// The read side, handed to the endpoint.
#[derive(Clone)]
pub struct CredentialReader {
    current: watch::Receiver<Arc<Lease>>,
    wake: Arc<Notify>,
}

impl CredentialReader {
    /// The credential held now, servable or not (for metadata such as when it was issued).
    pub fn held(&self) -> Arc<Lease> {
        Arc::clone(&self.current.borrow())
    }

    /// The credential to serve now, or `None` when the one we hold is too close to expiry. In that
    /// case the broker is woken, which matters after a suspend, when its timer is behind.
    pub fn current(&self) -> Option<Arc<Lease>> {
        let lease = self.held();
        let now = SystemTime::now();
        if now >= lease.plan.refresh_at {
            self.wake.notify_one();
        }
        lease.servable(now).then_some(lease)
    }
}

/// The running broker. Dropping it stops the refresh task; so does dropping every reader.
pub struct Broker {
    reader: CredentialReader,
    shutdown: Arc<Notify>,
}

impl Broker {
    /// Starts the refresh task on the current tokio runtime with the credential from the first
    /// AssumeRole. No credential with less than `guard` left is served.
    pub fn start(role: Role, first: RoleCredential, guard: Duration) -> Broker {
        let (tx, rx) = watch::channel(Arc::new(Lease::new(first, guard)));
        let wake = Arc::new(Notify::new());
        let shutdown = Arc::new(Notify::new());
        let task = Refresher {
            role,
            tx,
            wake: Arc::clone(&wake),
            guard,
        };
        let stop = Arc::clone(&shutdown);
        tokio::spawn(async move {
            tokio::select! {
                () = task.run() => {}
                () = stop.notified() => tracing::debug!("credential broker stopped"),
            }
        });
        Broker {
            reader: CredentialReader { current: rx, wake },
            shutdown,
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
    }
}

/// The refresh task's state: it alone calls STS, so it owns the role outright.
struct Refresher {
    role: Role,
    tx: watch::Sender<Arc<Lease>>,
    wake: Arc<Notify>,
    guard: Duration,
}

impl Refresher {
    /// Refreshes before every expiry until no reader is left.
    async fn run(mut self) {
        loop {
            let plan = self.tx.borrow().plan;
            tokio::select! {
                () = wait_until(plan.refresh_at, &self.wake) => {}
                // Every reader is gone (the endpoint closed): nobody to refresh for.
                () = self.tx.closed() => return,
            }
            let lease = self.refresh(plan).await;
            let next = lease.plan;
            self.tx.send_replace(Arc::new(lease));
            if next.refresh_at <= SystemTime::now() {
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
    async fn refresh(&mut self, plan: Plan) -> Lease {
        let mut backoff = Backoff::new(&plan);
        let mut attempt: u32 = 1;
        loop {
            let started = std::time::Instant::now();
            let held = self.tx.borrow().credential.expiration;
            match self.role.reassume().await.and_then(|c| no_worse(c, held)) {
                Ok(credential) => {
                    let lease = Lease::new(credential, self.guard);
                    tracing::info!(
                        expires = %fmt_time(lease.credential.expiration),
                        took_ms = started.elapsed().as_millis() as u64,
                        attempt,
                        "refreshed role credentials"
                    );
                    return lease;
                }
                Err(e) => {
                    // A non-retryable error (the trust policy changed mid-job) may still be fixed
                    // by someone; keep trying, slowly.
                    let pause = backoff.pause(e.retryable, random_unit());
                    let serving = if SystemTime::now() < plan.stale_at {
                        format!(
                            "still serving the current credential until {}",
                            fmt_time(plan.stale_at)
                        )
                    } else {
                        "no valid credential to serve: the child gets HTTP 503".to_string()
                    };
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
async fn wait_until(when: SystemTime, wake: &Notify) {
    loop {
        let Ok(left) = when.duration_since(SystemTime::now()) else {
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
    match getrandom::fill(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;
    const HOUR: u64 = 3600;

    fn plan(lifetime_secs: u64) -> (SystemTime, Plan) {
        plan_with(lifetime_secs, CONTAINER_GUARD)
    }

    fn plan_with(lifetime_secs: u64, guard: Duration) -> (SystemTime, Plan) {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let expires = t0 + Duration::from_secs(lifetime_secs);
        (t0, Plan::for_credential(t0, expires, guard))
    }

    fn left(p_at: SystemTime, t0: SystemTime, lifetime: u64) -> Duration {
        (t0 + Duration::from_secs(lifetime))
            .duration_since(p_at)
            .unwrap()
    }

    #[test]
    fn one_hour_refreshes_half_way_and_serves_until_ten_minutes_left() {
        let (t0, p) = plan(HOUR);
        assert_eq!(p.refresh_at, t0 + Duration::from_secs(30 * MIN));
        assert_eq!(p.stale_at, t0 + Duration::from_secs(50 * MIN));
    }

    #[test]
    fn every_real_duration_serves_well_outside_every_sdk_window() {
        // From 30 min to 12 h: what is served normally has > 20 min left (botocore's advisory
        // window is 15), and nothing is served inside botocore's mandatory 10 minutes.
        for lifetime in (30 * MIN..=12 * HOUR).step_by(5 * MIN as usize) {
            let (t0, p) = plan(lifetime);
            assert!(
                left(p.refresh_at, t0, lifetime) >= Duration::from_secs(20 * MIN),
                "{lifetime}"
            );
            assert_eq!(
                left(p.stale_at, t0, lifetime),
                Duration::from_secs(10 * MIN),
                "{lifetime}"
            );
            // At least 10 minutes of retries before anything would be refused.
            assert!(
                p.stale_at.duration_since(p.refresh_at).unwrap() >= Duration::from_secs(10 * MIN)
            );
        }
        let (t0, p) = plan(12 * HOUR);
        assert_eq!(
            left(p.refresh_at, t0, 12 * HOUR),
            Duration::from_secs(2 * HOUR)
        );
    }

    #[test]
    fn imds_never_serves_inside_25_minutes_for_sessions_of_an_hour_or_more() {
        for lifetime in (HOUR..=12 * HOUR).step_by(5 * 60) {
            let (t0, p) = plan_with(lifetime, IMDS_GUARD);
            assert_eq!(left(p.stale_at, t0, lifetime), IMDS_GUARD, "{lifetime}");
            assert!(
                left(p.refresh_at, t0, lifetime) >= Duration::from_secs(40 * 60),
                "{lifetime}"
            );
        }
        let (t0, p) = plan_with(60, IMDS_GUARD);
        assert_eq!(left(p.stale_at, t0, 60), Duration::from_secs(25));
        assert_eq!(left(p.refresh_at, t0, 60), Duration::from_secs(40));
    }

    #[test]
    fn test_lifetimes_scale_down() {
        let (t0, p) = plan(30);
        assert_eq!(p.refresh_at, t0 + Duration::from_secs(10));
        assert_eq!(p.stale_at, t0 + Duration::from_secs(25));
        assert_eq!(p.backoff_min, Duration::from_millis(100));
        assert_eq!(p.backoff_max, Duration::from_secs(1));
    }

    /// Successful refreshes per lifetime, and attempts per lifetime when STS always fails,
    /// computed from the schedule for every lifetime from 20 s to 12 h.
    #[test]
    fn sts_calls_per_lifetime_are_bounded() {
        let mut lifetimes: Vec<u64> = vec![20, 30, 60, 300, 900];
        lifetimes.extend((30 * MIN..=12 * HOUR).step_by(15 * MIN as usize));
        for lifetime in lifetimes {
            let (t0, p) = plan(lifetime);
            let period = p.refresh_at.duration_since(t0).unwrap();
            let per_lifetime = lifetime as f64 / period.as_secs_f64();
            assert!(
                per_lifetime <= 3.0,
                "{lifetime}s: {per_lifetime} refreshes per lifetime"
            );

            // Worst case: every attempt fails, jitter always picks the shortest pause.
            let mut backoff = Backoff::new(&p);
            let window = Duration::from_secs(lifetime) - period;
            let (mut spent, mut attempts) = (Duration::ZERO, 0u32);
            while spent < window {
                let pause = backoff.pause(true, 0.0);
                assert!(pause >= Duration::from_millis(50), "{lifetime}s: {pause:?}");
                spent += pause;
                attempts += 1;
            }
            let bound = 10 + 2 * window.as_secs() / p.backoff_max.as_secs();
            assert!(
                u64::from(attempts) <= bound,
                "{lifetime}s: {attempts} attempts > {bound}"
            );
            assert!(attempts <= 300, "{lifetime}s: {attempts} attempts");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_and_jitters_within_half() {
        let (_, p) = plan(HOUR);
        let mut b = Backoff::new(&p);
        let pauses: Vec<Duration> = (0..10).map(|_| b.pause(true, 1.0)).collect();
        assert_eq!(pauses[0], Duration::from_secs(2));
        assert_eq!(pauses[1], Duration::from_secs(4));
        assert_eq!(*pauses.last().unwrap(), Duration::from_secs(60));
        let mut b = Backoff::new(&p);
        assert_eq!(b.pause(true, 0.0), Duration::from_secs(1));
        assert_eq!(b.pause(false, 0.0), Duration::from_secs(60));
        let r = random_unit();
        assert!((0.0..=1.0).contains(&r));
    }

    #[test]
    fn a_credential_past_its_stale_point_is_not_served_and_wakes_the_broker() {
        let now = SystemTime::now();
        let credential = RoleCredential {
            access_key_id: "ASIA".into(),
            secret_access_key: crate::secret::Secret::new("s"),
            session_token: crate::secret::Secret::new("t"),
            // Issued 100 s ago for 100 s: as after a laptop slept through its expiry.
            received: now - Duration::from_secs(100),
            expiration: now,
            account_id: "123456789012".into(),
            assumed_role_arn: String::new(),
        };
        let (_tx, rx) = watch::channel(Arc::new(Lease::new(credential, CONTAINER_GUARD)));
        let wake = Arc::new(Notify::new());
        let creds = CredentialReader {
            current: rx,
            wake: Arc::clone(&wake),
        };
        assert!(creds.current().is_none());
        // The notification is stored for the broker: it does not wait out its timer.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), wake.notified())
                .await
                .expect("broker was not woken");
        });
    }
}
