//! Credentials are re-assumed before they expire, and the child's SDK picks them up by itself.
//! Time is compressed: the fake STS issues credentials that live seconds.

mod support;

use std::time::Duration;

use support::{python, run, script, Sandbox};

#[test]
fn boto3_sees_fresh_keys_and_never_an_expired_one() {
    let sb = Sandbox::new();
    let lifetime = 6;
    sb.sts.set_lifetime(Duration::from_secs(lifetime));
    let out = run(sb
        .credwrap()
        .arg("-v")
        .env("SOAK_LIFETIME", lifetime.to_string())
        .env("SOAK_KEYS", "3")
        .env("SOAK_SECONDS", "60")
        .arg("--")
        .arg(python())
        .arg(script("soak.py")));
    assert_eq!(
        out.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("errors=0"), "{}", out.stdout);
    assert!(
        out.stderr.contains("refreshed role credentials"),
        "{}",
        out.stderr
    );
    // Three keys need two refreshes; the schedule must not have called STS in a loop.
    let assumes = sb.sts.count("AssumeRole");
    assert!((3..=5).contains(&assumes), "{assumes} AssumeRole calls");
}
