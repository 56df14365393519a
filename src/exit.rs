//! The exit-code contract, in one place (the same as env(1), timeout(1) and docker run), and the
//! one failure type every step of a run returns, so that `main` prints errors in one place.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// Bad or missing option, invalid value, no COMMAND. Nothing was called or spawned.
pub const USAGE: i32 = 2;
/// credwrap lost the command's exit status after starting it (something else in the process
/// reaped it). The command ran; how it ended is unknown. Should never happen.
pub const LOST_CHILD: i32 = 124;
/// credwrap failed before COMMAND ran: no source credentials, AssumeRole refused, no endpoint.
pub const FAILED: i32 = 125;
/// COMMAND was found but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// COMMAND was not found.
pub const NOT_FOUND: i32 = 127;

/// Why a run ended without the command's own status: an exit code and what to tell the user.
pub enum Failure {
    /// clap's own errors (and `--help`/`--version`), printed as clap formats them.
    Usage(clap::Error),
    /// Everything else: one line of what went wrong, one of what to do about it.
    Message {
        code: i32,
        message: String,
        hint: Option<String>,
    },
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>, hint: impl Into<Option<String>>) -> Failure {
        Failure::Message {
            code,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// credwrap itself failed before the command ran (exit 125).
    pub fn setup(message: impl fmt::Display, hint: &str) -> Failure {
        Failure::new(FAILED, message.to_string(), Some(hint.to_string()))
    }

    /// The same failure, its message prefixed with what it concerns (`role prod`).
    pub fn about(self, what: &str) -> Failure {
        match self {
            Failure::Message {
                code,
                message,
                hint,
            } => Failure::Message {
                code,
                message: format!("{what}: {message}"),
                hint,
            },
            usage => usage,
        }
    }

    pub fn code(&self) -> i32 {
        match self {
            // --help and --version print to stdout and succeed; every other clap error is usage.
            Failure::Usage(e) if !e.use_stderr() => 0,
            Failure::Usage(_) => USAGE,
            Failure::Message { code, .. } => *code,
        }
    }

    /// Prints the failure on stderr (or, for `--help`, stdout) and exits with its code.
    pub fn print_and_exit(self) -> ! {
        let code = self.code();
        match self {
            Failure::Usage(e) => {
                let _ = e.print();
            }
            Failure::Message { message, hint, .. } => {
                eprintln!("credwrap: error: {message}");
                if let Some(hint) = hint {
                    eprintln!("credwrap: hint: {hint}");
                }
            }
        }
        std::process::exit(code)
    }
}

impl From<clap::Error> for Failure {
    fn from(e: clap::Error) -> Failure {
        Failure::Usage(e)
    }
}

/// Leaves the process the way the child left it: the same exit code, or, if the child was killed
/// by signal N, killed by N ourselves so that a calling shell reacts exactly as it would have
/// without credwrap (bash stops a script after a Ctrl-C only when the job died of SIGINT).
pub fn mirror(status: ExitStatus) -> ! {
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    let sig = status.signal().unwrap_or(libc::SIGKILL);
    // As PID 1 the kernel ignores signals we have no handler for, so the re-raise would not
    // kill us; the shell convention 128+N carries the same meaning.
    if std::process::id() != 1 {
        reraise(sig);
    }
    std::process::exit(128 + sig);
}

fn reraise(sig: i32) {
    // SAFETY: plain libc calls on our own process; nothing here touches Rust-managed memory.
    unsafe {
        // A core dump of credwrap would hold the role's keys, and it is not what crashed.
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        // raise() targets this thread, so the signal is delivered before it returns.
        libc::raise(sig);
    }
}

/// Writes `text` to stdout. A reader that closed early (`credwrap --man | head -1`) took what
/// it wanted: that is success, quietly, as in ripgrep; any other write error is a failure.
pub fn print_or_exit(text: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Failure::setup(format!("could not write to stdout: {e}"), "check stdout")
            .print_and_exit(),
    }
}
