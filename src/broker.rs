//! The credential broker: owns the current role credential and re-assumes the role before it
//! expires. Readers (the endpoint) only look at the published [`Lease`]; they never call STS, so
//! however many processes of the child ask at once, STS sees one AssumeRole per refresh.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use crate::role::{Credential, Role};

/// The longest we sleep without looking at the wall clock: monotonic timers stop while a laptop
/// is suspended, so a long sleep could wake up after the credential has expired.
const WALL_CLOCK_CHECK: Duration = Duration::from_secs(60);

/// When to refresh a credential and when to stop handing it out.
///
/// Real SDKs re-fetch a container credential some minutes before it expires (botocore: 15 min
/// advisory, 10 min mandatory; JS and Go 5 min; Rust 10 s). We start refreshing half-way through
/// a one-hour session (earlier for longer ones), so the credential served normally has more than
/// 30 minutes left, and stop serving once less than botocore's mandatory window remains. Both
/// points scale with the lifetime, so a test credential that lives 20 s behaves like a 1-hour one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub refresh_at: SystemTime,
    pub stale_at: SystemTime,
    /// First and largest pause between failed attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Plan {
    pub fn for_credential(received: SystemTime, expiration: SystemTime) -> Plan {
        let lifetime = expiration
            .duration_since(received)
            .unwrap_or(Duration::ZERO);
        let refresh_lead = (lifetime / 2).min((lifetime / 6).max(Duration::from_secs(30 * 60)));
        let stale_lead = (lifetime / 6).min(Duration::from_secs(10 * 60));
        Plan {
            refresh_at: expiration - refresh_lead,
            stale_at: expiration - stale_lead,
            backoff_min: (lifetime / 1000)
                .clamp(Duration::from_millis(100), Duration::from_secs(2)),
            backoff_max: (lifetime / 60).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

/// A credential together with the plan made for it.
#[derive(Debug)]
pub struct Lease {
    pub credential: Credential,
    pub plan: Plan,
}

impl Lease {
    fn new(credential: Credential) -> Lease {
        let plan = Plan::for_credential(credential.received, credential.expiration);
        Lease { credential, plan }
    }

    /// Whether the credential may still be handed to an SDK at `now`.
    pub fn servable(&self, now: SystemTime) -> bool {
        now < self.plan.stale_at
    }
}

/// The read side, handed to the endpoint.
#[derive(Clone)]
pub struct Credentials {
    current: watch::Receiver<Arc<Lease>>,
    wake: Arc<Notify>,
}

impl Credentials {
    /// The credential to serve now, or `None` when the one we hold is too close to expiry. In that
    /// case the broker is woken, which matters after a suspend, when its timer is behind.
    pub fn current(&self) -> Option<Arc<Lease>> {
        let lease = Arc::clone(&self.current.borrow());
        let now = SystemTime::now();
        if now >= lease.plan.refresh_at {
            self.wake.notify_one();
        }
        lease.servable(now).then_some(lease)
    }
}

/// Starts the refresh task on the current tokio runtime with the credential from the first
/// AssumeRole, and returns the read side.
pub fn start(role: Role, first: Credential) -> Credentials {
    let (tx, rx) = watch::channel(Arc::new(Lease::new(first)));
    let wake = Arc::new(Notify::new());
    tokio::spawn(refresh_forever(role, tx, Arc::clone(&wake)));
    Credentials { current: rx, wake }
}

async fn refresh_forever(role: Role, tx: watch::Sender<Arc<Lease>>, wake: Arc<Notify>) {
    loop {
        let plan = tx.borrow().plan;
        wait_until(plan.refresh_at, &wake).await;
        let lease = refresh(&role, plan).await;
        tx.send_replace(Arc::new(lease));
    }
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

/// Assumes the role until it works, pausing with jittered exponential backoff between attempts.
async fn refresh(role: &Role, plan: Plan) -> Lease {
    let mut backoff = plan.backoff_min;
    let mut attempt: u32 = 1;
    loop {
        let started = std::time::Instant::now();
        match role.assume().await {
            Ok(credential) => {
                let lease = Lease::new(credential);
                tracing::info!(
                    expires = %fmt_time(lease.credential.expiration),
                    took_ms = started.elapsed().as_millis() as u64,
                    attempt,
                    "refreshed role credentials"
                );
                return lease;
            }
            Err(e) => {
                let pause = if e.retryable {
                    let p = jitter(backoff);
                    backoff = (backoff * 2).min(plan.backoff_max);
                    p
                } else {
                    // The trust policy may be fixed mid-job; keep trying, but slowly.
                    plan.backoff_max
                };
                let serving = if SystemTime::now() < plan.stale_at {
                    format!(
                        "still serving the current credential until {}",
                        fmt_time(plan.stale_at)
                    )
                } else {
                    "no valid credential to serve: the child gets HTTP 503".to_string()
                };
                if e.retryable {
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

/// "Equal jitter": between half and all of `d`, so retries from many hosts spread out but never
/// collapse to zero.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 4];
    let r = match getrandom::fill(&mut b) {
        Ok(()) => u32::from_le_bytes(b) as f64 / u32::MAX as f64,
        Err(_) => 0.5,
    };
    d / 2 + d.mul_f64(r / 2.0)
}

pub fn fmt_time(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| "?".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(lifetime_secs: u64) -> (SystemTime, Plan) {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        (
            t0,
            Plan::for_credential(t0, t0 + Duration::from_secs(lifetime_secs)),
        )
    }

    #[test]
    fn one_hour_refreshes_half_way_and_serves_until_ten_minutes_left() {
        let (t0, p) = plan(3600);
        assert_eq!(p.refresh_at, t0 + Duration::from_secs(1800));
        assert_eq!(p.stale_at, t0 + Duration::from_secs(3000));
    }

    #[test]
    fn twelve_hours_starts_two_hours_early() {
        let (t0, p) = plan(12 * 3600);
        assert_eq!(p.refresh_at, t0 + Duration::from_secs(10 * 3600));
        assert_eq!(p.stale_at, t0 + Duration::from_secs(12 * 3600 - 600));
        assert_eq!(p.backoff_max, Duration::from_secs(60));
    }

    #[test]
    fn short_lifetimes_scale_down() {
        let (t0, p) = plan(30);
        assert_eq!(p.refresh_at, t0 + Duration::from_secs(15));
        assert_eq!(p.stale_at, t0 + Duration::from_secs(25));
        assert_eq!(p.backoff_min, Duration::from_millis(100));
        assert_eq!(p.backoff_max, Duration::from_secs(1));
    }

    #[test]
    fn refresh_always_comes_before_stale() {
        for secs in [20, 60, 1800, 3600, 7200, 43200] {
            let (t0, p) = plan(secs);
            assert!(t0 < p.refresh_at && p.refresh_at < p.stale_at, "{secs}");
        }
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(j >= Duration::from_secs(5) && j <= Duration::from_secs(10));
        }
    }
}
