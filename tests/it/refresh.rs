//! A long job never sees ExpiredToken, even when STS misbehaves: end to end, with real SDKs,
//! real seconds and the strict fake STS (credentials that live seconds; any call signed with an
//! expired one is rejected). The refresh logic itself (schedule, backoff, a worse credential,
//! a suspend, concurrent readers, shutdown) is unit-tested in milliseconds in `src/broker`.

use crate::support;

use std::time::{Duration, Instant, SystemTime};

use support::endpoint::EndpointChild;
use support::{eventually, python, rust_child, script, Fault, Output, Running, Sandbox};

/// Runs a real-SDK child calling STS for `seconds` under credentials living `lifetime` seconds.
fn soak(sb: &Sandbox, lifetime: u64, seconds: u64, rust: bool) -> Output {
    sb.sts.set_lifetime(Duration::from_secs(lifetime));
    let mut cmd = sb.credwrap();
    cmd.arg("-v")
        .env("SOAK_LIFETIME", lifetime.to_string())
        .env("SOAK_SECONDS", seconds.to_string())
        .arg("--");
    if rust {
        cmd.arg(rust_child());
    } else {
        cmd.arg(python()).arg(script("soak.py"));
    }
    support::run(&mut cmd)
}

fn assert_soaked(sb: &Sandbox, out: &Output, lifetime: u64, seconds: u64) {
    assert_eq!(
        out.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("errors=0"), "{}", out.stdout);
    let keys = sb.sts.keys_used_for("GetCallerIdentity");
    assert!(
        keys.len() >= 3,
        "only {} distinct keys: {keys:?}",
        keys.len()
    );
    assert!(
        keys.iter().all(|k| k.starts_with("ASIAFAKEROLE")),
        "{keys:?}"
    );
    // Three refreshes a lifetime at most for such short lifetimes; no loop.
    let assumes = sb.sts.count("AssumeRole") as u64;
    assert!(
        assumes <= 2 + 3 * seconds / lifetime,
        "{assumes} AssumeRole calls"
    );
    support::assert_stderr_has(out, "refreshed role credentials");
}

#[test]
fn soak_boto3_for_four_lifetimes() {
    let sb = Sandbox::new();
    let out = soak(&sb, 8, 32, false);
    assert_soaked(&sb, &out, 8, 32);
}

/// 12 s lifetimes: the Rust SDK fetches again whenever its credential is within 10 s of expiry,
/// so it signs with what credwrap serves as late as credwrap serves it, a sixth of the lifetime
/// before expiry (2 s at 12 s; 1.3 s at 8 s was once too little on a loaded 2-core machine).
#[test]
fn soak_rust_sdk_for_four_lifetimes() {
    let sb = Sandbox::new();
    let out = soak(&sb, 12, 48, true);
    assert_soaked(&sb, &out, 12, 48);
}

/// A boto3 child that runs until it has used `keys` distinct credentials; returns it once it
/// made its first successful call (so the first AssumeRole is done).
fn start_soak_until_keys(sb: &Sandbox, lifetime: u64, keys: u32) -> Running {
    sb.sts.set_lifetime(Duration::from_secs(lifetime));
    let run = support::start(
        sb.credwrap()
            .arg("-v")
            .env("SOAK_LIFETIME", lifetime.to_string())
            .env("SOAK_KEYS", keys.to_string())
            .env("SOAK_SECONDS", (4 * lifetime).to_string())
            .arg("--")
            // The child's own STS calls go to a port the faults leave alone.
            .arg("env")
            .arg(format!("AWS_ENDPOINT_URL_STS={}", sb.sts.client_url()))
            .arg(python())
            .arg(script("soak.py")),
    );
    run.line_until("ready", |l| l == "ready");
    run
}

/// Each fault in turn, while a boto3 child calls STS: credwrap logs the failed refreshes (with
/// the STS error and what it still serves), STS heals, credwrap refreshes, and the child has
/// seen no error and moved on to a fresh credential after each fault.
#[test]
fn survives_sts_faults_during_refresh() {
    let sb = Sandbox::new();
    let run = start_soak_until_keys(&sb, 12, 4);
    for (fault, says) in [
        (Fault::ServerError, "ServiceUnavailable"),
        (Fault::Throttling, "Throttling"),
        (Fault::Refuse, "dispatch failure"),
    ] {
        sb.sts.set_fault(fault);
        for _ in 0..3 {
            let failed = run.log_until("a failed refresh", |l| {
                l.contains("refreshing role credentials failed")
            });
            assert!(
                failed.contains(says)
                    || (fault == Fault::Refuse && failed.contains("could not reach")),
                "{fault:?}: {failed}"
            );
            assert!(
                failed.contains("still serving the current credential"),
                "{failed}"
            );
        }
        sb.sts.set_fault(Fault::None);
        run.log_until("the refresh after the fault", |l| {
            l.contains("refreshed role credentials")
        });
    }
    let summary = run.line_until("the summary", |l| l.starts_with("keys="));
    let out = run.finish();
    assert_eq!(out.code(), Some(0), "{summary}\nstderr: {}", out.stderr);
    assert!(
        summary.starts_with("keys=4") && summary.ends_with("errors=0"),
        "{summary}"
    );
}

/// One refresh that takes ten seconds: the child keeps calling STS with the credential held.
#[test]
fn survives_a_ten_second_slow_sts() {
    let sb = Sandbox::new();
    let run = start_soak_until_keys(&sb, 30, 2);
    // Slow from the first refresh's request on: heal as soon as it is in flight, so only that
    // one call takes ten seconds.
    sb.sts.set_fault(Fault::Slow(Duration::from_secs(10)));
    eventually("the refresh to reach STS", || {
        (sb.sts.count("AssumeRole") >= 2).then_some(())
    });
    sb.sts.set_fault(Fault::None);
    let slow = run.log_until("the slow refresh", |l| {
        l.contains("refreshed role credentials")
    });
    let took: u64 = slow
        .split("took_ms=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(took >= 9_000, "the slow refresh took {took} ms: {slow}");
    let summary = run.line_until("the summary", |l| l.starts_with("keys="));
    let out = run.finish();
    assert_eq!(out.code(), Some(0), "{summary}\nstderr: {}", out.stderr);
    assert!(
        summary.starts_with("keys=2") && summary.ends_with("errors=0"),
        "{summary}"
    );
}

fn expiration(body: &str) -> (String, SystemTime) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let exp = humantime::parse_rfc3339(v["Expiration"].as_str().unwrap()).unwrap();
    (v["AccessKeyId"].as_str().unwrap().to_string(), exp)
}

/// Polls the endpoint like an SDK would until `done` says so; checks every answer on the way:
/// a 200 always carries a credential that has not expired, anything else is a 503 with JSON.
fn poll(ep: &EndpointChild, limit: Duration, mut done: impl FnMut(u16, &str) -> bool) {
    let start = Instant::now();
    loop {
        let (status, body) = ep.get();
        match status {
            200 => {
                let (_, exp) = expiration(&body);
                assert!(
                    exp > SystemTime::now(),
                    "served an expired credential: {body}"
                );
            }
            503 => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["code"], "CredentialsUnavailable", "{body}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
        if done(status, &body) {
            return;
        }
        assert!(start.elapsed() < limit, "gave up after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn outage_longer_than_the_credential_gives_503_then_recovers() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(6));
    let ep = EndpointChild::start(&sb, &["-v"]);
    let (_, first) = ep.get();
    let (first_key, first_exp) = expiration(&first);
    sb.sts.set_fault(Fault::ServerError);

    // The old credential is served while it has real time left, then refused.
    poll(&ep, Duration::from_secs(20), |status, _| status == 503);
    // Outlast the credential itself, checking every answer on the way.
    poll(&ep, Duration::from_secs(20), |_, _| {
        SystemTime::now() >= first_exp + Duration::from_secs(1)
    });
    sb.sts.set_fault(Fault::None);
    let mut recovered = String::new();
    poll(&ep, Duration::from_secs(20), |status, body| {
        if status == 200 {
            recovered = expiration(body).0;
        }
        status == 200
    });
    assert_ne!(recovered, first_key);
    let out = ep.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    support::assert_stderr_has(&out, "ServiceUnavailable");
    support::assert_stderr_has(&out, "the child gets HTTP 503");
}

/// An `Expiration` far beyond what was asked (the year 3000) is planned from the duration asked
/// for, counted from when credwrap asked: the child is told that, and refresh comes in time.
#[test]
fn an_expiration_later_than_asked_is_planned_from_the_duration() {
    let sb = Sandbox::new();
    sb.sts.set_expiry(Some(support::Expiry::FarFuture));
    let asked = SystemTime::now();
    let ep = EndpointChild::start(&sb, &["--duration", "1h"]);
    let (status, body) = ep.get();
    assert_eq!(status, 200, "{body}");
    let (_, served) = expiration(&body);
    let hour = Duration::from_secs(3600);
    assert!(
        served >= asked + hour - Duration::from_secs(2) && served <= SystemTime::now() + hour,
        "served {body}"
    );
    let out = ep.finish();
    support::assert_stderr_has(&out, "later than the 3600s asked for");
}

/// STS (or what stands in its way) answering garbage or nothing: one line that says so.
#[test]
fn garbage_and_empty_sts_answers_are_named() {
    for (fault, says) in [
        (Fault::Garbage, "not STS's XML"),
        (Fault::Empty, "HTTP 502 with an empty body"),
    ] {
        let sb = Sandbox::new();
        sb.sts.set_fault(fault);
        let out = support::run(sb.credwrap().args(["--", "true"]));
        assert_eq!(out.code(), Some(125), "{}", out.stderr);
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(first.contains(says), "{fault:?}: {}", out.stderr);
        assert!(!out.stderr.contains("no message"), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 2, "{}", out.stderr);
    }
}
