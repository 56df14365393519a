//! Signals sent to credwrap reach the child; a child killed by a signal kills credwrap the same way.
//! credwrap runs in a session of its own (no controlling terminal), as in CI.

use crate::support;

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};

use nix::sys::signal::Signal;
use support::{Running, Sandbox};

const LOOP: &str = "echo ready; while :; do sleep 1 & wait $!; done";

fn start(sb: &Sandbox, script: &str) -> Running {
    let run = support::start(sb.credwrap().args(["--", "sh", "-c", script]));
    run.line_until("ready", |l| l == "ready");
    run
}

#[test]
fn sigterm_and_sigint_reach_the_childs_trap() {
    let sb = Sandbox::new();
    for (sig, name, code) in [(Signal::SIGTERM, "TERM", 42), (Signal::SIGINT, "INT", 43)] {
        let script = format!("trap 'echo got-{name}; exit {code}' {name}; {LOOP}");
        let run = start(&sb, &script);
        run.signal(sig);
        assert_eq!(run.line("the trap's output"), format!("got-{name}"));
        let out = run.finish();
        assert_eq!(out.code(), Some(code), "{}", out.stderr);
    }
}

#[test]
fn every_forwarded_signal_arrives() {
    let sb = Sandbox::new();
    let script =
        format!("for s in HUP QUIT USR1 USR2 ALRM WINCH; do trap \"echo got-$s\" $s; done; {LOOP}");
    let run = start(&sb, &script);
    for (sig, name) in [
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGQUIT, "QUIT"),
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGALRM, "ALRM"),
        (Signal::SIGWINCH, "WINCH"),
    ] {
        run.signal(sig);
        assert_eq!(run.line(name), format!("got-{name}"));
    }
    run.signal(Signal::SIGKILL);
    let _ = run.finish();
}

#[test]
fn repeated_interrupts_are_forwarded_not_escalated() {
    let sb = Sandbox::new();
    let script =
        format!("n=0; trap 'n=$((n+1)); echo int-$n; [ $n -ge 3 ] && exit 44' INT; {LOOP}");
    let run = start(&sb, &script);
    for i in 1..=3 {
        run.signal(Signal::SIGINT);
        assert_eq!(run.line("the INT trap"), format!("int-{i}"));
    }
    let out = run.finish();
    assert_eq!(out.code(), Some(44), "{}", out.stderr);
}

#[test]
fn a_child_killed_by_a_signal_kills_credwrap_by_the_same_signal() {
    let sb = Sandbox::new();
    let run = start(&sb, LOOP);
    run.signal(Signal::SIGTERM);
    let out = run.finish();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGTERM),
        "{:?} {}",
        out.status,
        out.stderr
    );

    let out = support::run(sb.credwrap().args(["--", "sh", "-c", "kill -INT $$"]));
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
}

#[test]
fn signals_ignored_at_start_stay_ignored_for_the_child() {
    let sb = Sandbox::new();
    let mut cmd = sb.credwrap();
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGUSR1, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = support::run(cmd.args(["--", "grep", "SigIgn", "/proc/self/status"]));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let mask = u64::from_str_radix(out.stdout.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_ne!(
        mask & (1 << (libc::SIGUSR1 - 1)),
        0,
        "USR1 not ignored: {mask:x}"
    );
    assert_eq!(
        mask & (1 << (libc::SIGUSR2 - 1)),
        0,
        "USR2 ignored: {mask:x}"
    );
}

/// At a terminal the child shares credwrap's process group, so the terminal's Ctrl-C reaches it
/// directly; credwrap must not forward a second one. A later SIGUSR1 from a process is forwarded,
/// and by then any duplicate SIGINT would have arrived before it.
#[test]
fn ctrl_c_at_a_terminal_reaches_the_child_once() {
    let sb = Sandbox::new();
    let cmd = sb.credwrap();
    let args: Vec<std::ffi::OsString> = std::iter::once(cmd.get_program().to_owned())
        .chain(
            [
                "--",
                "sh",
                "-c",
                "n=0; trap 'n=$((n+1)); echo int-$n' INT; trap 'echo usr1-after-$n; exit 0' USR1; \
                 echo ready; while :; do sleep 1 & wait $!; done",
            ]
            .map(Into::into),
        )
        .collect();
    let mut py = std::process::Command::new(support::python());
    py.arg(support::script("pty_run.py"))
        .args(&args)
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let out = support::run(&mut py);
    assert!(
        out.stdout.contains("usr1-after-1"),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("exit=0"), "{}", out.stdout);
}

/// `kill -INT %1` from the interactive shell that started credwrap: the job's process group, the
/// command included, gets it from the kernel; credwrap must not forward a second one (as sudo
/// does, a signal from a process in our parent's group is not forwarded in a shared group).
#[test]
fn kill_of_the_whole_job_reaches_the_child_once() {
    let sb = Sandbox::new();
    let cmd = sb.credwrap();
    let mut py = std::process::Command::new(support::python());
    py.arg(support::script("pty_kill_job.py"))
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("CREDWRAP", cmd.get_program())
        .env(
            "CHILD_SCRIPT",
            "n=0; trap 'n=$((n+1)); echo int-$n' INT; trap 'echo usr1-after-$n; exit 0' USR1; \
             echo ready; while :; do sleep 1 & wait $!; done",
        );
    let out = support::run(&mut py);
    assert!(
        out.stdout.lines().any(|l| l.ends_with("usr1-after-1")),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

/// A TERM, INT or HUP that comes while credwrap is still starting (assuming the role, writing
/// its private directory, starting the endpoint) or just after, 200 times at random moments:
/// credwrap always ends as by that signal, and never leaves its directory or token file behind.
#[test]
fn an_early_signal_leaves_nothing_behind() {
    let sb = Sandbox::new();
    // A slow STS keeps credwrap in its start-up for a while.
    sb.sts
        .set_fault(support::Fault::Slow(std::time::Duration::from_millis(40)));
    let signals = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];
    let mut seed: u64 = 0x5eed_1234;
    let mut plan = Vec::new();
    for i in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        plan.push((i, signals[i % 3], seed % 150));
    }
    let while_starting = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for chunk in plan.chunks(50) {
            let (sb, while_starting) = (&sb, &while_starting);
            s.spawn(move || {
                for &(i, sig, delay_ms) in chunk {
                    let tmp = tempfile::tempdir().unwrap();
                    let mut cmd = sb.credwrap();
                    cmd.env("TMPDIR", tmp.path())
                        .args(["-v", "--token-file", "--", "sleep", "30"]);
                    let run = support::start(&mut cmd);
                    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
                    run.signal(sig);
                    let out = run.finish();
                    assert_eq!(
                        out.status.signal(),
                        Some(sig as i32),
                        "#{i}: {sig} after {delay_ms} ms: {:?} {}",
                        out.status,
                        out.stderr
                    );
                    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
                    assert!(
                        left.is_empty(),
                        "#{i}: {sig} after {delay_ms} ms left {left:?}"
                    );
                    if out.stderr.contains("stopped while starting") {
                        while_starting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // The random moments did land inside the start-up, not only after it.
    let n = while_starting.into_inner();
    assert!(n >= 20, "only {n} of 200 signals came while starting");
    println!("{n} of 200 signals came while credwrap was starting");
}

/// Every catchable signal but credwrap's own (CHLD, PIPE, URG) and the faults reaches the child,
/// the real-time ones included (`docker stop` sends SIGRTMIN+3 to systemd-style containers):
/// none takes its default action on credwrap, which would kill it, SIGKILL the child through
/// PDEATHSIG and leave its private directory behind. Without a terminal, as here, job control
/// signals are forwarded too.
#[test]
fn every_catchable_signal_is_forwarded_or_kept_on_purpose() {
    let sb = Sandbox::new();
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = sb.credwrap();
    cmd.env("TMPDIR", tmp.path())
        .args(["--token-file", "--"])
        .arg(support::python())
        .arg(support::script("signal_recorder.py"));
    let mut run = support::start(&mut cmd);
    run.line_until("ready", |l| l == "ready");
    let kept = [libc::SIGCHLD, libc::SIGPIPE, libc::SIGURG];
    let not_sent = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGTRAP,
        libc::SIGSYS,
        libc::SIGABRT,
        32,
        33,
    ];
    let forwarded: Vec<i32> = (1..=libc::SIGRTMAX())
        .filter(|s| !kept.contains(s) && !not_sent.contains(s))
        .collect();
    assert!(forwarded.contains(&libc::SIGPWR) && forwarded.contains(&(libc::SIGRTMIN() + 3)));
    let raw_kill = |sig: i32| {
        // SAFETY: kill(2) with plain integers; nix names no real-time signal.
        assert_eq!(
            unsafe { libc::kill(run.pid().as_raw(), sig) },
            0,
            "kill {sig}"
        );
    };
    for &sig in &forwarded {
        raw_kill(sig);
        let want = format!("got {sig}");
        let got = run.next_line();
        if got.as_deref() != Some(want.as_str()) {
            let out = run.finish();
            panic!(
                "after signal {sig}: {got:?}; credwrap {:?}\nstdout: {}\nstderr: {}",
                out.status, out.stdout, out.stderr
            );
        }
    }
    // The kept ones, then a marker numbered above them all: anything forwarded before the
    // marker would be printed before it, however credwrap and the child order pending signals.
    for sig in kept {
        raw_kill(sig);
    }
    raw_kill(libc::SIGRTMAX());
    let marker = format!("got {}", libc::SIGRTMAX());
    assert_eq!(run.line("the marker"), marker);
    // credwrap is alive and its private directory still there.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    writeln!(run.stdin(), "report").unwrap();
    let report = run.line_until("the report", |l| l.starts_with("report "));
    for sig in kept {
        assert!(
            !report["report ".len()..]
                .split(',')
                .any(|s| s == sig.to_string()),
            "signal {sig} was forwarded: {report}"
        );
    }
    let out = run.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
