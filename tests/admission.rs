//! A slow or abusive local client never delays the child's fetch past a second: each attack runs
//! for 15 s from hundreds of connections while a stand-in child fetches its credential every
//! second on a new connection, as an SDK does when it refreshes.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::endpoint::EndpointChild;
use support::Sandbox;
use tokio::io::AsyncWriteExt;

const ATTACK: Duration = Duration::from_secs(15);

/// One attack at a time: two at once would measure this machine's two cores, not credwrap.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One fetch as an SDK makes it; how long until the whole 200 response was read.
fn fetch(ep: &EndpointChild) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(&ep.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        ep.path, ep.addr, ep.token
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let took = started.elapsed();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    took
}

/// Runs `attack` (one async task per connection, each reconnecting when dropped) while the
/// child fetches every second; returns the child's fetch times.
fn under_attack<F, Fut>(connections: usize, attack: F) -> Vec<Duration>
where
    F: Fn(String, Arc<AtomicBool>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Hundreds of sockets on this side too: CI's soft limit may be 1024.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let sb = Sandbox::new();
    let ep = EndpointChild::start(&sb, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..connections {
        runtime.spawn(attack(ep.addr.clone(), Arc::clone(&stop)));
    }
    // Let the attack fill the endpoint before the first fetch.
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let mut times = Vec::new();
    while started.elapsed() < ATTACK {
        let tick = Instant::now();
        times.push(fetch(&ep));
        if let Some(rest) = Duration::from_secs(1).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    stop.store(true, Ordering::Relaxed);
    runtime.shutdown_timeout(Duration::from_secs(1));
    let out = ep.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    times
}

fn report(what: &str, times: &[Duration]) -> Duration {
    let worst = times.iter().max().copied().unwrap_or_default();
    let mut sorted = times.to_vec();
    sorted.sort();
    println!(
        "{what}: {} fetches, median {:?}, p100 {:?}",
        times.len(),
        sorted[sorted.len() / 2],
        worst
    );
    worst
}

/// 600 connections that send one header byte a second, reconnecting when dropped.
#[test]
fn slow_header_senders_do_not_delay_the_child() {
    let times = under_attack(600, |addr, stop| async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .await
                .is_err()
            {
                continue;
            }
            while !stop.load(Ordering::Relaxed) && s.write_all(b"a").await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let worst = report("slow headers", &times);
    assert!(worst <= Duration::from_secs(1), "{times:?}");
}

/// 520 connections that pipeline requests and never read a response, reconnecting when dropped.
#[test]
fn pipelining_non_readers_do_not_delay_the_child() {
    let burst = "GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(64);
    let times = under_attack(520, move |addr, stop| {
        let burst = burst.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
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
    let worst = report("pipelining non-readers", &times);
    assert!(worst <= Duration::from_secs(1), "{times:?}");
}
