//! The endpoint under local abuse and under a big honest load.
//!
//! - Attacks: hundreds to thousands of local connections that never finish a request, or that
//!   pipeline requests and never read, reconnecting the moment they are dropped. Meanwhile the
//!   child fetches its credential on a fresh connection, both as a raw client (one try, no
//!   retries) and as botocore (its own timeout and retries): every fetch must succeed on the
//!   first try within a second.
//! - An honest burst: a big process tree's worth of keep-alive clients, each making hundreds of
//!   requests, must all be answered; none may be cut in the middle of a request.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{python, script, Running, Sandbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ATTACK: Duration = Duration::from_secs(10);

/// One attack at a time: two at once would measure this machine's two cores, not credwrap.
/// (nextest also runs these tests with nothing else beside them: `.config/nextest.toml`.)
const ATTACKS: &str = "admission-attacks";

/// Thousands of sockets on this side too: CI's soft limit may be 1024.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// A credwrap whose child is botocore fetching in a loop once told to start.
struct Target {
    run: Running,
    addr: String,
    path: String,
    token: String,
}

impl Target {
    /// The child fetches for `fetch_for` once told to start; credwrap runs with at most
    /// `open_files` descriptors, if given (a hard limit it cannot raise).
    fn start(sb: &Sandbox, fetch_for: Duration, open_files: Option<u64>) -> Target {
        let mut cmd = sb.credwrap();
        if let Some(n) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit between fork and exec, async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.env("FETCH_SECONDS", fetch_for.as_secs().to_string())
            .args(["--"])
            .arg(python())
            .arg(script("fetch_loop.py"));
        let run = support::start(&mut cmd);
        let (addr, path, token) = support::endpoint::endpoint_line(&run.line("the endpoint"));
        Target {
            addr,
            path,
            token,
            run,
        }
    }

    fn request(&self, keep_alive: bool) -> String {
        let connection = if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        };
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n{connection}\r\n",
            self.path, self.addr, self.token
        )
    }
}

/// One fetch on a fresh connection, no retry: how long until the whole response was read, or
/// what went wrong.
fn raw_fetch(t: &Target) -> Result<Duration, String> {
    let started = Instant::now();
    let mut s = TcpStream::connect(&t.addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(t.request(false).as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    let read = s.read_to_end(&mut reply);
    let took = started.elapsed();
    let reply = String::from_utf8_lossy(&reply);
    match read {
        Ok(_) if reply.starts_with("HTTP/1.1 200") && reply.contains("AccessKeyId") => Ok(took),
        Ok(_) if reply.is_empty() => Err(format!("closed without a response after {took:?}")),
        Ok(_) => Err(reply.lines().next().unwrap_or_default().to_string()),
        Err(e) => Err(format!("read after {took:?}: {e}")),
    }
}

/// What the child saw during an attack: raw fetches and botocore's; and how many connections
/// the attackers opened per second.
struct Seen {
    raw: Vec<Result<Duration, String>>,
    sdk: Vec<(Duration, u32, bool)>,
    connects_per_second: u64,
}

/// Counted by the attackers: how many of them connected at least once, connections in all.
#[derive(Default)]
struct Attackers {
    started: AtomicU64,
    connects: AtomicU64,
}

impl Attackers {
    fn connected(&self, first: &mut bool) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        if std::mem::take(first) {
            self.started.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A new connection to `addr`, tried again every 10 ms until it is made; `None` once `stop` is set.
async fn connect_until_stopped(addr: &str, stop: &AtomicBool) -> Option<tokio::net::TcpStream> {
    while !stop.load(Ordering::Relaxed) {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => return Some(s),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    None
}

impl Seen {
    fn report(&self, what: &str) {
        let ok: Vec<Duration> = self.raw.iter().filter_map(|r| r.clone().ok()).collect();
        let worst = ok.iter().max().copied().unwrap_or_default();
        let sdk_worst = self.sdk.iter().map(|s| s.0).max().unwrap_or_default();
        let retried = self.sdk.iter().filter(|s| s.1 > 1).count();
        let sdk_failed = self.sdk.iter().filter(|s| !s.2).count();
        println!(
            "{what} ({} new connections a second): raw client {} of {} first-try successes, \
             p100 {worst:?}; botocore {} fetches, {retried} retried, {sdk_failed} failed, p100 \
             {sdk_worst:?}",
            self.connects_per_second,
            ok.len(),
            self.raw.len(),
            self.sdk.len(),
        );
        for e in self.raw.iter().filter_map(|r| r.clone().err()).take(3) {
            println!("  raw client: {e}");
        }
    }

    /// Every fetch, raw or botocore's, succeeded on the first try within a second.
    fn assert_all_first_try_within_a_second(&self) {
        assert!(self.raw.len() >= 5 && self.sdk.len() >= 5);
        for r in &self.raw {
            match r {
                Ok(took) => assert!(*took <= Duration::from_secs(1), "raw fetch took {took:?}"),
                Err(e) => panic!("a raw fetch failed: {e}"),
            }
        }
        for (took, attempts, ok) in &self.sdk {
            assert!(
                *ok && *attempts == 1 && *took <= Duration::from_secs(1),
                "botocore: ok={ok} after {attempts} attempts in {took:?}"
            );
        }
    }
}

/// Runs `attack` (one async task per connection, each reconnecting when dropped) until
/// `connections` of them have connected at least once, then lets the child's botocore fetch
/// while the test fetches raw, every half second, for [`ATTACK`]; credwrap may open at most
/// `open_files` descriptors, if given.
fn under_attack<F, Fut>(connections: usize, open_files: Option<u64>, attack: F) -> Seen
where
    F: Fn(String, Arc<AtomicBool>, Arc<Attackers>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let _turn = support::exclusive(ATTACKS);
    raise_fd_limit();
    let sb = Sandbox::new();
    let mut target = Target::start(&sb, ATTACK, open_files);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = Arc::new(Attackers::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..connections {
        runtime.spawn(attack(
            target.addr.clone(),
            Arc::clone(&stop),
            Arc::clone(&attackers),
        ));
    }
    // The attack is in place once every attacker has connected and sent something.
    support::eventually("every attacker to connect", || {
        (attackers.started.load(Ordering::Relaxed) >= connections as u64).then_some(())
    });
    writeln!(target.run.stdin(), "go").unwrap();
    let started = Instant::now();
    let connects_before = attackers.connects.load(Ordering::Relaxed);
    let mut raw = Vec::new();
    while started.elapsed() < ATTACK {
        let tick = Instant::now();
        raw.push(raw_fetch(&target));
        if let Some(rest) = Duration::from_millis(500).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let mut sdk = Vec::new();
    loop {
        let line = target.run.line("botocore's fetches");
        if line == "done" {
            break;
        }
        let field = |name: &str| -> f64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        sdk.push((
            Duration::from_secs_f64(field("ms") / 1000.0),
            field("attempts") as u32,
            field("ok") == 1.0,
        ));
    }
    let connects = attackers.connects.load(Ordering::Relaxed) - connects_before;
    let connects_per_second = connects / started.elapsed().as_secs().max(1);
    stop.store(true, Ordering::Relaxed);
    runtime.shutdown_timeout(Duration::from_secs(1));
    let out = target.run.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    Seen {
        raw,
        sdk,
        connects_per_second,
    }
}

/// Sends a partial request, then a header byte a second; reconnects the moment it is dropped.
async fn slow_reconnecting(addr: String, stop: Arc<AtomicBool>, attackers: Arc<Attackers>) {
    let mut first = true;
    while let Some(s) = connect_until_stopped(&addr, &stop).await {
        let (mut r, mut w) = s.into_split();
        if w.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .is_err()
        {
            continue;
        }
        attackers.connected(&mut first);
        let mut buf = [0u8; 512];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                read = r.read(&mut buf) => if !matches!(read, Ok(n) if n > 0) { break },
                _ = tick.tick() => if w.write_all(b"a").await.is_err() { break },
            }
        }
    }
}

#[test]
fn six_hundred_reconnecting_slow_senders_do_not_delay_the_child() {
    let seen = under_attack(600, None, slow_reconnecting);
    seen.report("600 reconnecting slow senders");
    seen.assert_all_first_try_within_a_second();
}

#[test]
fn two_thousand_reconnecting_slow_senders_do_not_delay_the_child() {
    let seen = under_attack(2000, None, slow_reconnecting);
    seen.report("2000 reconnecting slow senders");
    seen.assert_all_first_try_within_a_second();
}

/// The usual soft limit of 1024 descriptors, as a hard limit credwrap cannot raise: fewer slots
/// than attackers, so connections are closed to make room all the time (thousands a second).
#[test]
fn two_thousand_reconnecting_slow_senders_with_1024_files_do_not_delay_the_child() {
    let seen = under_attack(2000, Some(1024), slow_reconnecting);
    seen.report("2000 reconnecting slow senders, 1024 open files");
    assert!(seen.connects_per_second >= 1000, "the attack did not churn");
    seen.assert_all_first_try_within_a_second();
}

/// 520 connections that pipeline requests and never read a response, reconnecting when dropped.
#[test]
fn pipelining_non_readers_do_not_delay_the_child() {
    let burst = "GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(64);
    let seen = under_attack(520, None, move |addr, stop, attackers| {
        let burst = burst.clone();
        async move {
            let mut first = true;
            while let Some(mut s) = connect_until_stopped(&addr, &stop).await {
                attackers.connected(&mut first);
                while !stop.load(Ordering::Relaxed) {
                    let write = s.write_all(burst.as_bytes());
                    match tokio::time::timeout(Duration::from_millis(200), write).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break,
                        // The server stopped reading (our unread responses filled the socket):
                        // hold the connection open, as a stuck client would.
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        }
    });
    seen.report("520 pipelining non-readers");
    seen.assert_all_first_try_within_a_second();
}

/// 520 connections asking `/healthz` as fast as they are answered (a health-check storm: a
/// probe per container, gone wrong): health checks are ordinary requests for admission, and
/// the child still gets its credentials on the first try.
#[test]
fn a_flood_of_health_checks_does_not_delay_the_child() {
    let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let seen = under_attack(520, None, move |addr, stop, attackers| async move {
        let mut first = true;
        let mut buf = [0u8; 4096];
        while let Some(mut s) = connect_until_stopped(&addr, &stop).await {
            attackers.connected(&mut first);
            while !stop.load(Ordering::Relaxed) {
                if s.write_all(request.as_bytes()).await.is_err() {
                    break;
                }
                // One read holds the whole small answer; 0 is the server's close.
                if !matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    break;
                }
            }
        }
    });
    seen.report("520 health-check loops");
    seen.assert_all_first_try_within_a_second();
}

/// How one keep-alive client fared: requests answered, and whether its connection was cut with
/// a request outstanding (a raw client gives up then, as a program without retries would).
#[derive(Default)]
struct Burst {
    answered: AtomicU64,
    cut: AtomicU64,
    reconnects: AtomicU64,
}

/// Reads one response (status line, headers, Content-Length body) from `s`; None if the
/// connection ended first. Returns whether the server asked to close.
async fn read_response(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<bool> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Content-Length");
            let total = end + 4 + length;
            while buf.len() < total {
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return None,
                }
            }
            buf.drain(..total);
            return Some(head.contains("\r\nconnection: close"));
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// 1,000 keep-alive clients (a large process tree), each making 200 requests one after the
/// other: every request is answered; a client told `Connection: close` opens a new connection,
/// and none is cut while a request is outstanding.
#[test]
fn a_thousand_keep_alive_clients_get_every_answer() {
    const CLIENTS: usize = 1000;
    const REQUESTS: u64 = 200;
    let _turn = support::exclusive(ATTACKS);
    raise_fd_limit();
    let sb = Sandbox::new();
    let mut target = Target::start(&sb, Duration::ZERO, None);
    let request = Arc::new(target.request(true).into_bytes());
    let burst = Arc::new(Burst::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let (addr, request, burst) = (target.addr.clone(), request.clone(), burst.clone());
            clients.push(tokio::spawn(async move {
                let mut conn: Option<tokio::net::TcpStream> = None;
                let mut buf = Vec::new();
                for _ in 0..REQUESTS {
                    let s = match conn.as_mut() {
                        Some(s) => s,
                        None => {
                            buf.clear();
                            conn.insert(tokio::net::TcpStream::connect(&addr).await.unwrap())
                        }
                    };
                    if s.write_all(&request).await.is_err() {
                        burst.cut.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    match read_response(s, &mut buf).await {
                        Some(close) => {
                            burst.answered.fetch_add(1, Ordering::Relaxed);
                            if close {
                                burst.reconnects.fetch_add(1, Ordering::Relaxed);
                                conn = None;
                            }
                        }
                        None => {
                            burst.cut.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
    });
    let took = started.elapsed();
    let (answered, cut) = (
        burst.answered.load(Ordering::Relaxed),
        burst.cut.load(Ordering::Relaxed),
    );
    println!(
        "{CLIENTS} keep-alive clients x {REQUESTS} requests: {answered} answered, {} never \
         answered, {cut} connections cut mid-request, {} reconnects after Connection: close, \
         in {took:?}",
        CLIENTS as u64 * REQUESTS - answered,
        burst.reconnects.load(Ordering::Relaxed)
    );
    assert_eq!(cut, 0, "connections were cut in the middle of a request");
    assert_eq!(answered, CLIENTS as u64 * REQUESTS);
    writeln!(target.run.stdin(), "go").unwrap();
    assert_eq!(target.run.line("the child's end"), "done");
    let out = target.run.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}
