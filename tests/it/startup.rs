//! Start-up reads each input once and can always be stopped.
//!
//! `AWS_CONFIG_FILE=<(sops -d config)` and FIFOs yield their contents to the first reader only;
//! a FIFO with no writer blocks whoever opens it. credwrap reads each AWS file once and derives
//! everything (its own profile lookups, aws-config's, the child's copy) from that copy, and no
//! blocked read keeps a TERM, INT or HUP from ending it at once, with nothing left behind.

use crate::support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::fake_sts::{SOURCE_KEY_ID, SOURCE_SECRET};
use support::{eventually, Sandbox};

/// credwrap's usual environment without the variables this file's tests give another way.
fn without(sb: &Sandbox, keys: &[&str]) -> Command {
    let base = sb.credwrap();
    let mut cmd = Command::new("bash");
    cmd.env_clear();
    for (k, v) in base.get_envs() {
        if let (Some(v), false) = (v, keys.iter().any(|r| k == *r)) {
            cmd.env(k, v);
        }
    }
    cmd.env("CREDWRAP", base.get_program());
    cmd
}

#[test]
fn files_from_process_substitution_reach_sts_and_the_child() {
    let sb = Sandbox::new();
    let mut cmd = without(
        &sb,
        &[
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
        ],
    );
    let config = "[profile base]\nregion = eu-west-3\ns3 =\n  addressing_style = path\n";
    let credentials = format!(
        "[base]\naws_access_key_id = {SOURCE_KEY_ID}\naws_secret_access_key = {SOURCE_SECRET}\n"
    );
    cmd.env("CONFIG", config)
        .env("CREDENTIALS", credentials)
        .args([
            "-c",
            "AWS_CONFIG_FILE=<(printf %s \"$CONFIG\") \
         AWS_SHARED_CREDENTIALS_FILE=<(printf %s \"$CREDENTIALS\") \
         exec \"$CREDWRAP\" --profile base -- sh -c \
         'echo region=$AWS_REGION/$AWS_DEFAULT_REGION; cat \"$AWS_CONFIG_FILE\"'",
        ]);
    let out = support::run(&mut cmd);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("region=eu-west-3/eu-west-3"),
        "{}",
        out.stdout
    );
    // The child's stand-in config is a copy of what was read, settings and all.
    assert!(out.stdout.contains("region = eu-west-3"), "{}", out.stdout);
    assert!(
        out.stdout.contains("addressing_style = path"),
        "{}",
        out.stdout
    );
    let calls = sb.sts.calls();
    let assume = calls
        .iter()
        .find(|c| c.action == "AssumeRole")
        .expect("an AssumeRole");
    // The profile's keys signed, in the profile's region: both came from the pipes.
    assert_eq!(assume.access_key_id.as_deref(), Some(SOURCE_KEY_ID));
    assert_eq!(assume.region.as_deref(), Some("eu-west-3"));
}

/// Makes a FIFO at `path`.
fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Whether some thread of `pid` is blocked opening a FIFO that has no writer yet.
fn blocked_on_a_fifo(pid: nix::unistd::Pid) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w == "wait_for_partner")
    })
}

#[test]
fn a_fifo_config_is_read_once_and_start_up_goes_on() {
    let sb = Sandbox::new();
    let path = sb.path("config.fifo");
    fifo(&path);
    let writer = {
        let path = path.clone();
        // A FIFO gives its contents to the first reader; a second open would wait for a writer
        // that never comes again.
        std::thread::spawn(move || std::fs::write(path, "[default]\nregion = ap-south-2\n"))
    };
    let mut cmd = sb.credwrap();
    cmd.env_remove("AWS_REGION")
        .env("AWS_CONFIG_FILE", &path)
        .args([
            "--",
            "sh",
            "-c",
            "echo region=$AWS_REGION; cat \"$AWS_CONFIG_FILE\"",
        ]);
    let run = support::start(&mut cmd);
    let started = Instant::now();
    let region = run.line("the child's region");
    assert_eq!(region, "region=ap-south-2");
    assert_eq!(run.line("the child's config copy"), "[default]");
    let out = run.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    writer.join().unwrap().unwrap();
}

/// A start-up blocked on a FIFO, in each place one can be named: the config file (read before
/// any handler is installed) and the web identity token (read for the first AssumeRole). Each
/// of TERM, INT and HUP ends it at once, as by that signal, leaving nothing in TMPDIR.
#[test]
fn a_signal_ends_a_start_up_blocked_on_a_fifo() {
    let sb = Sandbox::new();
    for input in ["AWS_CONFIG_FILE", "--web-identity-token-file"] {
        for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("input.fifo");
            fifo(&path);
            let private_tmp = tmp.path().join("tmp");
            std::fs::create_dir(&private_tmp).unwrap();
            let mut cmd = sb.credwrap();
            cmd.env("TMPDIR", &private_tmp).arg("--token-file");
            if input == "AWS_CONFIG_FILE" {
                cmd.env("AWS_CONFIG_FILE", &path);
            } else {
                cmd.arg("--web-identity-token-file").arg(&path);
            }
            let run = support::start(cmd.args(["--", "sleep", "30"]));
            eventually(&format!("credwrap to block on the {input} FIFO"), || {
                blocked_on_a_fifo(run.pid()).then_some(())
            });
            let sent = Instant::now();
            run.signal(sig);
            let out = run.finish();
            let took = sent.elapsed();
            assert_eq!(
                out.status.signal(),
                Some(sig as i32),
                "{input}, {sig}: {:?} {}",
                out.status,
                out.stderr
            );
            assert!(
                took < Duration::from_secs(5),
                "{input}, {sig}: took {took:?}"
            );
            let left: Vec<_> = std::fs::read_dir(&private_tmp).unwrap().collect();
            assert!(left.is_empty(), "{input}, {sig}: left {left:?}");
        }
    }
}
