//! The schedule as arithmetic, and the refresh task under tokio's paused time: an hour-long
//! credential's whole life runs in milliseconds, with the STS call and the wall clock scripted.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;

const MIN: u64 = 60;
const HOUR_SECS: u64 = 3600;
/// What the container endpoint's clients need left (botocore's mandatory window).
const CONTAINER_MIN: Duration = Duration::from_secs(10 * 60);
/// What IMDS clients need left (they stretch an expiring credential).
const IMDS_MIN: Duration = Duration::from_secs(25 * 60);

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn schedule(lifetime_secs: u64, min_remaining: Duration) -> (SystemTime, Schedule, SystemTime) {
    let expires = t0() + Duration::from_secs(lifetime_secs);
    let c = credential(t0(), expires);
    (
        t0(),
        Schedule::for_credential(t0(), expires, min_remaining),
        stale_at(&c, min_remaining),
    )
}

fn left(at: SystemTime, t0: SystemTime, lifetime: u64) -> Duration {
    (t0 + Duration::from_secs(lifetime))
        .duration_since(at)
        .unwrap()
}

fn credential(received: SystemTime, expiration: SystemTime) -> RoleCredential {
    RoleCredential {
        access_key_id: "ASIA".into(),
        secret_access_key: crate::sys::secret::Secret::new("s"),
        session_token: crate::sys::secret::Secret::new("t"),
        received,
        expiration,
        account_id: "123456789012".into(),
        assumed_role_arn: String::new(),
    }
}

#[test]
fn one_hour_refreshes_half_way_and_serves_until_ten_minutes_left() {
    let (t0, s, stale) = schedule(HOUR_SECS, CONTAINER_MIN);
    assert_eq!(s.refresh_at, t0 + Duration::from_secs(30 * MIN));
    assert_eq!(stale, t0 + Duration::from_secs(50 * MIN));
}

#[test]
fn every_real_duration_serves_well_outside_every_sdk_window() {
    // From 30 min to 12 h: what is served normally has > 20 min left (botocore's advisory
    // window is 15), and nothing is served inside botocore's mandatory 10 minutes.
    for lifetime in (30 * MIN..=12 * HOUR_SECS).step_by(5 * MIN as usize) {
        let (t0, s, stale) = schedule(lifetime, CONTAINER_MIN);
        assert!(
            left(s.refresh_at, t0, lifetime) >= Duration::from_secs(20 * MIN),
            "{lifetime}"
        );
        assert_eq!(left(stale, t0, lifetime), CONTAINER_MIN, "{lifetime}");
        // At least 10 minutes of retries before anything would be refused.
        assert!(stale.duration_since(s.refresh_at).unwrap() >= Duration::from_secs(10 * MIN));
    }
    let (t0, s, _) = schedule(12 * HOUR_SECS, CONTAINER_MIN);
    assert_eq!(
        left(s.refresh_at, t0, 12 * HOUR_SECS),
        Duration::from_secs(2 * HOUR_SECS)
    );
}

#[test]
fn imds_never_serves_inside_25_minutes_for_sessions_of_an_hour_or_more() {
    for lifetime in (HOUR_SECS..=12 * HOUR_SECS).step_by(5 * 60) {
        let (t0, s, stale) = schedule(lifetime, IMDS_MIN);
        assert_eq!(left(stale, t0, lifetime), IMDS_MIN, "{lifetime}");
        assert!(
            left(s.refresh_at, t0, lifetime) >= Duration::from_secs(40 * 60),
            "{lifetime}"
        );
    }
    let (t0, s, stale) = schedule(60, IMDS_MIN);
    assert_eq!(left(stale, t0, 60), Duration::from_secs(25));
    assert_eq!(left(s.refresh_at, t0, 60), Duration::from_secs(40));
}

#[test]
fn each_reader_has_its_own_stale_point_and_the_schedule_serves_the_most_demanding() {
    let expires = t0() + Duration::from_secs(HOUR_SECS);
    let lease = Lease {
        credential: credential(t0(), expires),
        schedule: Schedule::for_credential(t0(), expires, IMDS_MIN),
        generation: 0,
    };
    let at = expires - Duration::from_secs(20 * MIN);
    assert!(lease.servable(CONTAINER_MIN, at));
    assert!(!lease.servable(IMDS_MIN, at));
    assert!(lease.schedule.refresh_at < expires - IMDS_MIN);
}

#[test]
fn test_lifetimes_scale_down() {
    let (t0, s, stale) = schedule(30, CONTAINER_MIN);
    assert_eq!(s.refresh_at, t0 + Duration::from_secs(10));
    assert_eq!(stale, t0 + Duration::from_secs(25));
    assert_eq!(s.backoff_min, Duration::from_millis(100));
    assert_eq!(s.backoff_max, Duration::from_secs(1));
}

/// Successful refreshes per lifetime, and attempts per lifetime when STS always fails,
/// computed from the schedule for every lifetime from 20 s to 12 h.
#[test]
fn sts_calls_per_lifetime_are_bounded() {
    let mut lifetimes: Vec<u64> = vec![20, 30, 60, 300, 900];
    lifetimes.extend((30 * MIN..=12 * HOUR_SECS).step_by(15 * MIN as usize));
    for lifetime in lifetimes {
        let (t0, s, _) = schedule(lifetime, CONTAINER_MIN);
        let period = s.refresh_at.duration_since(t0).unwrap();
        let per_lifetime = lifetime as f64 / period.as_secs_f64();
        assert!(
            per_lifetime <= 3.0,
            "{lifetime}s: {per_lifetime} refreshes per lifetime"
        );

        // Worst case: every attempt fails, jitter always picks the shortest pause.
        let mut backoff = Backoff::new(&s);
        let window = Duration::from_secs(lifetime) - period;
        let (mut spent, mut attempts) = (Duration::ZERO, 0u32);
        while spent < window {
            let pause = backoff.pause(true, 0.0);
            assert!(pause >= Duration::from_millis(50), "{lifetime}s: {pause:?}");
            spent += pause;
            attempts += 1;
        }
        let bound = 10 + 2 * window.as_secs() / s.backoff_max.as_secs();
        assert!(
            u64::from(attempts) <= bound,
            "{lifetime}s: {attempts} attempts > {bound}"
        );
        assert!(attempts <= 300, "{lifetime}s: {attempts} attempts");
    }
}

#[test]
fn backoff_grows_to_its_cap_and_jitters_within_half() {
    let (_, s, _) = schedule(HOUR_SECS, CONTAINER_MIN);
    let mut b = Backoff::new(&s);
    let pauses: Vec<Duration> = (0..10).map(|_| b.pause(true, 1.0)).collect();
    assert_eq!(pauses[0], Duration::from_secs(2));
    assert_eq!(pauses[1], Duration::from_secs(4));
    assert_eq!(*pauses.last().unwrap(), Duration::from_secs(60));
    let mut b = Backoff::new(&s);
    assert_eq!(b.pause(true, 0.0), Duration::from_secs(1));
    assert_eq!(b.pause(false, 0.0), Duration::from_secs(60));
    let r = random_unit();
    assert!((0.0..=1.0).contains(&r));
}

/// The wall clock under tokio's paused time: it moves with tokio's clock, and can jump ahead
/// without it, as it does when a laptop wakes from suspend.
struct TestClock {
    start: tokio::time::Instant,
    jumped: Mutex<Duration>,
}

impl TestClock {
    fn new() -> Arc<TestClock> {
        Arc::new(TestClock {
            start: tokio::time::Instant::now(),
            jumped: Mutex::new(Duration::ZERO),
        })
    }

    fn suspend(&self, for_: Duration) {
        *self.jumped.lock().unwrap() += for_;
    }

    /// How long since the start, by tokio's clock (which a suspend does not move).
    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        t0() + self.start.elapsed() + *self.jumped.lock().unwrap()
    }
}

/// What the scripted STS answers to one call.
#[derive(Clone, Copy)]
enum Answer {
    /// A credential living `lifetime`, issued now.
    Issue,
    Fail {
        retryable: bool,
    },
    /// A credential that expires this long from now, however long the held one has.
    ExpiringIn(Duration),
    /// Issued long ago by the clock's reckoning (a clock far off STS's): due on arrival.
    IssuedLongAgo,
}

/// STS as a script: answers in order (then `Issue` for ever), each call recorded with the time
/// it was made, by the wall clock and by tokio's.
struct ScriptedSts {
    clock: Arc<TestClock>,
    lifetime: Duration,
    answers: VecDeque<Answer>,
    /// How long a call takes.
    latency: Duration,
    calls: Arc<Mutex<Vec<Duration>>>,
}

impl Reassume for ScriptedSts {
    async fn reassume(&mut self) -> Result<RoleCredential, AssumeError> {
        self.calls.lock().unwrap().push(self.clock.monotonic());
        tokio::time::sleep(self.latency).await;
        let now = self.clock.now();
        match self.answers.pop_front().unwrap_or(Answer::Issue) {
            Answer::Issue => Ok(credential(now, now + self.lifetime)),
            Answer::Fail { retryable } => Err(AssumeError::local("scripted failure", retryable)),
            Answer::ExpiringIn(d) => Ok(credential(now, now + d)),
            Answer::IssuedLongAgo => Ok(credential(
                now - Duration::from_secs(10 * HOUR_SECS),
                now + Duration::from_secs(40 * MIN),
            )),
        }
    }
}

/// A broker over a scripted STS, with its first credential of `lifetime` issued at start.
struct Harness {
    clock: Arc<TestClock>,
    calls: Arc<Mutex<Vec<Duration>>>,
    broker: Broker,
}

impl Harness {
    fn start(lifetime: Duration, answers: &[Answer], latency: Duration) -> Harness {
        let clock = TestClock::new();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let sts = ScriptedSts {
            clock: Arc::clone(&clock),
            lifetime,
            answers: answers.iter().copied().collect(),
            latency,
            calls: Arc::clone(&calls),
        };
        let first = credential(clock.now(), clock.now() + lifetime);
        let broker = Broker::start(sts, first, CONTAINER_MIN, clock.clone());
        Harness {
            clock,
            calls,
            broker,
        }
    }

    fn calls(&self) -> Vec<Duration> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits (in paused time) until the broker publishes generation `n`.
    async fn generation(&self, n: u64) -> Arc<Lease> {
        let mut rx = self.broker.reader.current.clone();
        let lease = rx.wait_for(|l| l.generation >= n).await.unwrap();
        Arc::clone(&lease)
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const AN_HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn refreshes_at_the_scheduled_point_and_not_before() {
    let h = Harness::start(AN_HOUR, &[], Duration::ZERO);
    let second = h.generation(1).await;
    assert_eq!(h.calls(), [30 * MINUTE]);
    assert_eq!(second.credential.received, t0() + 30 * MINUTE);
    h.generation(2).await;
    assert_eq!(h.calls(), [30 * MINUTE, 60 * MINUTE]);
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_while_the_held_credential_is_served() {
    let fail = Answer::Fail { retryable: true };
    let h = Harness::start(AN_HOUR, &[fail; 5], Duration::ZERO);
    let reader = h.broker.reader();
    let watch = tokio::spawn(async move {
        // Polled through the outage: the first credential, until the new one comes.
        loop {
            let lease = reader
                .current(CONTAINER_MIN)
                .expect("the held one is still served");
            if lease.generation > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    h.generation(1).await;
    watch.await.unwrap();
    let calls = h.calls();
    assert_eq!(calls.len(), 6);
    // Steps of 2, 4, 8, 16 and 32 s, each drawn in [half, all].
    for (i, gap) in calls.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let step = Duration::from_secs(2 << i);
        assert!(gap >= step / 2 && gap <= step, "pause {i}: {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_a_retry_will_not_fix_soon_is_logged_at_error_and_waits_the_largest_pause() {
    let log = Captured::start();
    let denied = Answer::Fail { retryable: false };
    let h = Harness::start(AN_HOUR, &[denied, denied], Duration::ZERO);
    h.generation(1).await;
    let calls = h.calls();
    assert_eq!(calls.len(), 3);
    for gap in calls.windows(2).map(|w| w[1] - w[0]) {
        assert_eq!(gap, MINUTE);
    }
    let failures: Vec<String> = log
        .text()
        .lines()
        .filter(|l| l.contains("refreshing role credentials failed"))
        .map(str::to_string)
        .collect();
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|l| l.contains("ERROR")), "{failures:?}");
}

#[tokio::test(start_paused = true)]
async fn a_transient_error_is_a_warning_that_says_what_is_still_served() {
    let log = Captured::start();
    let h = Harness::start(AN_HOUR, &[Answer::Fail { retryable: true }], Duration::ZERO);
    h.generation(1).await;
    let text = log.text();
    let failure = text
        .lines()
        .find(|l| l.contains("refreshing role credentials failed"))
        .unwrap_or_else(|| panic!("not logged: {text}"));
    assert!(failure.contains("WARN"), "{failure}");
    let stale = fmt_time(t0() + AN_HOUR - CONTAINER_MIN);
    assert!(
        failure.contains(&format!(
            "still serving the current credential until {stale}"
        )),
        "{failure}"
    );
}

/// What the broker logged on the test's thread (a `tokio::test` runtime runs the broker's task
/// there too). One process-wide subscriber writes each event to the buffer of the thread that
/// logged it, if that thread is capturing: tracing caches per call site whether anyone listens,
/// and a per-test subscriber would race with the tests running beside it.
struct Captured(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

struct ToThisThread;

impl std::io::Write for ToThisThread {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buffer) = c.borrow().as_ref() {
                buffer.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start() -> Captured {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ToThisThread)
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        });
        let buffer = Arc::new(Mutex::new(Vec::new()));
        CAPTURE.with(|c| *c.borrow_mut() = Some(Arc::clone(&buffer)));
        Captured(buffer)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

#[tokio::test(start_paused = true)]
async fn a_worse_credential_is_refused_at_error_and_the_held_one_kept() {
    let log = Captured::start();
    let h = Harness::start(AN_HOUR, &[Answer::ExpiringIn(5 * MINUTE)], Duration::ZERO);
    let second = h.generation(1).await;
    let calls = h.calls();
    assert_eq!(calls.len(), 2, "refused, then retried");
    assert_eq!(second.credential.expiration, t0() + calls[1] + AN_HOUR);
    assert!(calls[1] - calls[0] <= Duration::from_secs(2));
    let refused = log
        .text()
        .lines()
        .find(|l| l.contains("sooner than the one held"))
        .map(str::to_string)
        .expect("the refusal was logged");
    assert!(refused.contains("ERROR"), "{refused}");
    // Both expiry times: the refused one's and the held one's.
    let offered = fmt_time(t0() + calls[0] + 5 * MINUTE);
    let held = fmt_time(t0() + AN_HOUR);
    assert!(
        refused.contains(&offered) && refused.contains(&held),
        "{refused}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_credential_due_on_arrival_never_turns_into_a_loop() {
    let h = Harness::start(AN_HOUR, &[Answer::IssuedLongAgo; 20], Duration::ZERO);
    tokio::time::sleep(AN_HOUR).await;
    let calls = h.calls();
    // From the first refresh at 30 min, one attempt a backoff_max (60 s for this lifetime).
    assert!(calls.len() <= 32, "{} calls in an hour", calls.len());
    for gap in calls.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap >= MINUTE, "{gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_suspend_the_next_request_wakes_the_broker() {
    let h = Harness::start(AN_HOUR, &[], Duration::ZERO);
    // Half way to the broker's next look at the wall clock.
    tokio::time::sleep(MINUTE / 2).await;
    // The laptop sleeps for 40 minutes: tokio's clock does not move, the wall clock does.
    h.clock.suspend(40 * MINUTE);
    let reader = h.broker.reader();
    let before = h.clock.monotonic();
    assert!(reader.current(CONTAINER_MIN).is_some(), "still 19 min left");
    h.generation(1).await;
    assert_eq!(
        h.calls(),
        [before],
        "refreshed at once, not at the next wall-clock check"
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_suspend_without_requests_the_wall_clock_check_notices() {
    let h = Harness::start(AN_HOUR, &[], Duration::ZERO);
    tokio::time::sleep(MINUTE / 2).await;
    h.clock.suspend(40 * MINUTE);
    h.generation(1).await;
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0] <= MINUTE + MINUTE / 2, "{:?}", calls[0]);
}

#[tokio::test(start_paused = true)]
async fn concurrent_readers_during_a_refresh_cause_one_call() {
    let h = Harness::start(AN_HOUR, &[], 5 * MINUTE);
    tokio::time::sleep(31 * MINUTE).await;
    assert_eq!(h.calls().len(), 1, "the refresh is in flight");
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let reader = h.broker.reader();
            tokio::spawn(async move { reader.current(CONTAINER_MIN).map(|l| l.generation) })
        })
        .collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), Some(0), "answered from memory");
    }
    h.generation(1).await;
    assert_eq!(h.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_broker_stops_refreshing() {
    let h = Harness::start(AN_HOUR, &[], Duration::ZERO);
    let calls = Arc::clone(&h.calls);
    drop(h);
    tokio::time::sleep(3 * AN_HOUR).await;
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_credential_past_its_stale_point_is_not_served_and_wakes_the_broker() {
    let h = Harness::start(
        AN_HOUR,
        &[Answer::Fail { retryable: true }; 200],
        Duration::ZERO,
    );
    // Failing since 30 min; at 55 min less than 10 min are left.
    tokio::time::sleep(55 * MINUTE).await;
    assert!(h.broker.reader().current(CONTAINER_MIN).is_none());
}
