//! Signals sent to credwrap reach the child; a child killed by a signal kills credwrap the same way.
//! credwrap runs in a session of its own (no controlling terminal), as in CI.

mod support;

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
