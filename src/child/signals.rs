//! What credwrap does with every signal, and why: one table, which docs/reference.md copies.
//!
//! As tini does, everything that can be caught is forwarded to the child, except the signals
//! that are credwrap's own business and the faults that mean credwrap itself is broken. A
//! signal that was ignored when credwrap started (`nohup`, `&` in a script) is left ignored, for
//! the child too, whatever the table says.

use std::ops::RangeInclusive;

use libc::c_int;

/// What becomes of one signal sent to credwrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Passed on to the child: to its process group without a terminal, to it alone at one.
    Forward,
    /// TSTP TTIN TTOU. At a terminal they are not caught: credwrap stops with its job, as the
    /// terminal stopped the child too (the shell's job control needs the whole job stopped).
    /// Without a terminal only a process can send them: forwarded, and credwrap keeps
    /// refreshing while the child is stopped.
    JobControl,
    /// credwrap's own business: never forwarded.
    Own,
    /// A fault in credwrap itself: the default action. credwrap dies (its core limit is 0, so
    /// no core file holds the keys), and the child dies with it by `PR_SET_PDEATHSIG`.
    Fault,
    /// Cannot be caught, so cannot be forwarded.
    Uncatchable,
}

impl Handling {
    /// What the docs' table says for it.
    #[cfg_attr(not(test), expect(dead_code, reason = "the docs test reads the table"))]
    pub fn words(self) -> &'static str {
        match self {
            Forward => "forwarded",
            JobControl => "at a terminal, stops credwrap with its job; otherwise forwarded",
            Own => "not forwarded",
            Fault => "default action: credwrap dies, and the child with it",
            Uncatchable => "cannot be caught",
        }
    }
}

/// One row of the table.
pub struct Entry {
    pub signal: c_int,
    pub name: &'static str,
    pub handling: Handling,
    /// The reason, written here once; docs/reference.md copies it (a test checks).
    #[cfg_attr(not(test), expect(dead_code, reason = "the docs test reads the table"))]
    pub why: &'static str,
}

const fn entry(signal: c_int, name: &'static str, handling: Handling, why: &'static str) -> Entry {
    Entry {
        signal,
        name,
        handling,
        why,
    }
}

use Handling::*;

/// Every signal Linux numbers below the real-time range; those from `SIGRTMIN()` up are all
/// forwarded (see [`realtime`]).
pub const TABLE: &[Entry] = &[
    entry(
        libc::SIGHUP,
        "HUP",
        Forward,
        "the terminal hung up, or a reload: the child's to handle",
    ),
    entry(libc::SIGINT, "INT", Forward, "Ctrl-C, or a CI cancel"),
    entry(libc::SIGQUIT, "QUIT", Forward, "Ctrl-\\"),
    entry(
        libc::SIGTERM,
        "TERM",
        Forward,
        "docker stop, kill, a CI cancel",
    ),
    entry(libc::SIGUSR1, "USR1", Forward, "the child's own meaning"),
    entry(libc::SIGUSR2, "USR2", Forward, "the child's own meaning"),
    entry(
        libc::SIGALRM,
        "ALRM",
        Forward,
        "a timer someone else set for the child",
    ),
    entry(libc::SIGWINCH, "WINCH", Forward, "the terminal was resized"),
    entry(libc::SIGCONT, "CONT", Forward, "resume a stopped child"),
    entry(
        libc::SIGPWR,
        "PWR",
        Forward,
        "power failure: an init system's shutdown request",
    ),
    entry(
        libc::SIGXCPU,
        "XCPU",
        Forward,
        "a CPU-time limit someone enforces on the job",
    ),
    entry(
        libc::SIGXFSZ,
        "XFSZ",
        Forward,
        "a file-size limit someone enforces on the job",
    ),
    entry(
        libc::SIGVTALRM,
        "VTALRM",
        Forward,
        "a profiling timer meant for the child",
    ),
    entry(
        libc::SIGPROF,
        "PROF",
        Forward,
        "a profiler's timer meant for the child",
    ),
    entry(
        libc::SIGIO,
        "IO",
        Forward,
        "asynchronous I/O: the child's, credwrap uses none",
    ),
    entry(
        libc::SIGSTKFLT,
        "STKFLT",
        Forward,
        "unused by the kernel; a process's own meaning",
    ),
    entry(libc::SIGTSTP, "TSTP", JobControl, "Ctrl-Z"),
    entry(
        libc::SIGTTIN,
        "TTIN",
        JobControl,
        "a background read from the terminal",
    ),
    entry(
        libc::SIGTTOU,
        "TTOU",
        JobControl,
        "a background write to the terminal",
    ),
    entry(
        libc::SIGCHLD,
        "CHLD",
        Own,
        "a child of credwrap's changed state: credwrap reaps it (the child gets its own CHLDs)",
    ),
    entry(
        libc::SIGPIPE,
        "PIPE",
        Own,
        "credwrap wrote to a closed pipe (its own stderr); it is ignored, so the write just fails",
    ),
    entry(
        libc::SIGURG,
        "URG",
        Own,
        "out-of-band data on credwrap's own sockets; the Go runtime preempts its threads with it, \
         so a Go child would only get noise",
    ),
    entry(libc::SIGSEGV, "SEGV", Fault, "credwrap itself is broken"),
    entry(libc::SIGBUS, "BUS", Fault, "credwrap itself is broken"),
    entry(libc::SIGILL, "ILL", Fault, "credwrap itself is broken"),
    entry(libc::SIGFPE, "FPE", Fault, "credwrap itself is broken"),
    entry(
        libc::SIGTRAP,
        "TRAP",
        Fault,
        "a debugger's breakpoint in credwrap",
    ),
    entry(
        libc::SIGSYS,
        "SYS",
        Fault,
        "credwrap made a system call a seccomp filter forbids",
    ),
    entry(libc::SIGABRT, "ABRT", Fault, "credwrap aborted"),
    entry(
        libc::SIGKILL,
        "KILL",
        Uncatchable,
        "the child dies with credwrap (PR_SET_PDEATHSIG)",
    ),
    entry(
        libc::SIGSTOP,
        "STOP",
        Uncatchable,
        "stops credwrap alone; CONT resumes it",
    ),
];

/// The real-time signals a program may use, all forwarded (`SIGRTMIN+3` is what `docker stop`
/// sends a systemd-style container). The C library keeps the two or three below `SIGRTMIN()`
/// for its threads; they are never touched.
pub fn realtime() -> RangeInclusive<c_int> {
    libc::SIGRTMIN()..=libc::SIGRTMAX()
}

/// The signals to catch and pass on to a child: with a terminal, job control is left to the
/// kernel and the shell.
pub fn forwarded(at_a_terminal: bool) -> Vec<c_int> {
    TABLE
        .iter()
        .filter(|e| match e.handling {
            Forward => true,
            JobControl => !at_a_terminal,
            Own | Fault | Uncatchable => false,
        })
        .map(|e| e.signal)
        .chain(realtime())
        .collect()
}

/// With no child to pass them to (`--serve`), the forwarded signals whose default action would
/// end a process end credwrap, cleanly; WINCH and CONT mean nothing to it.
pub fn stops_a_server() -> Vec<c_int> {
    forwarded(true)
        .into_iter()
        .filter(|s| ![libc::SIGWINCH, libc::SIGCONT].contains(s))
        .collect()
}

/// The table's name for `signal`, or `RTMIN+N`.
pub fn name(signal: c_int) -> String {
    if let Some(e) = TABLE.iter().find(|e| e.signal == signal) {
        return e.name.to_string();
    }
    match signal - libc::SIGRTMIN() {
        0 => "RTMIN".to_string(),
        n if realtime().contains(&signal) => format!("RTMIN+{n}"),
        _ => signal.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_below_the_real_time_range_is_in_the_table_once() {
        // glibc reserves 32 and 33 (NPTL); SIGRTMIN() is the first a program may use.
        for signal in 1..libc::SIGRTMIN() {
            let rows = TABLE.iter().filter(|e| e.signal == signal).count();
            if signal < 32 {
                assert_eq!(rows, 1, "signal {signal}");
            } else {
                assert_eq!(rows, 0, "signal {signal} belongs to the C library");
            }
        }
    }

    /// docs/reference.md carries the same table, row for row.
    #[test]
    fn the_readme_has_this_table() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md"));
        for e in TABLE {
            let row = format!("| {} | {} | {} |", e.name, e.handling.words(), e.why);
            assert!(
                readme.contains(&row),
                "docs/reference.md lacks the row\n{row}"
            );
        }
        assert!(readme.contains(&format!("| RTMIN to RTMAX | {} |", Forward.words())));
    }

    #[test]
    fn terminal_job_control_is_the_kernels() {
        assert!(!forwarded(true).contains(&libc::SIGTSTP));
        assert!(forwarded(false).contains(&libc::SIGTSTP));
        for never in [
            libc::SIGCHLD,
            libc::SIGPIPE,
            libc::SIGURG,
            libc::SIGSEGV,
            libc::SIGKILL,
        ] {
            assert!(!forwarded(false).contains(&never), "{}", name(never));
        }
        assert!(forwarded(true).contains(&(libc::SIGRTMIN() + 3)));
        assert_eq!(name(libc::SIGRTMIN() + 3), "RTMIN+3");
        assert!(!stops_a_server().contains(&libc::SIGWINCH));
        assert!(stops_a_server().contains(&libc::SIGPWR));
    }
}
