//! `--serve --detach`: return to the caller once serving, and go on in the background.
//!
//! credwrap forks right after the plan is made: the MFA prompt (at a terminal) and every input
//! were read in the foreground, and the process still has one thread, so the fork is safe. The
//! daemon starts a session of its own (a terminal's Ctrl-C and the step's process group no
//! longer reach it), starts serving, and sends what the caller must print through a pipe; only
//! then does the caller print it and exit 0. If the daemon fails first, its message is already
//! on the caller's stderr, and the caller exits with the daemon's status: a CI step fails
//! before anything relies on it.
//!
//! A CI step (and `eval "$(...)"`) waits until every process holding its stdout or stderr has
//! let go: the daemon never writes to the caller's stdout, and once serving it sends its log to
//! a file instead of the caller's stderr.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use crate::exit::Failure;

/// The daemon's end of the pipe to the caller that waits.
pub struct Readiness {
    pipe: File,
}

/// Forks. In the caller this never returns: it waits for the daemon to serve (or fail) and
/// exits. In the daemon it returns the means to say it serves.
pub fn detach() -> Result<Readiness, Failure> {
    let failed = |what: &str, e: nix::Error| {
        Failure::setup(
            format!("could not go to the background ({what}: {e})"),
            "run without --detach and put credwrap in the background yourself",
        )
    };
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| failed("pipe", e))?;
    // SAFETY: the process has one thread here (the plan was made on a runtime that is gone;
    // nothing else has started one), so the child may do anything.
    match unsafe { fork() }.map_err(|e| failed("fork", e))? {
        ForkResult::Parent { child } => {
            drop(write);
            wait_for_the_daemon(read, child)
        }
        ForkResult::Child => {
            drop(read);
            nix::unistd::setsid().map_err(|e| failed("setsid", e))?;
            let_go_of_stdin_and_stdout().map_err(|e| failed("stdio", e))?;
            Ok(Readiness {
                pipe: File::from(write),
            })
        }
    }
}

/// stdin reads nothing, and what goes to stdout goes nowhere, without needing `/dev/null` (an
/// empty root has none): the ends of pipes whose other ends are closed.
fn let_go_of_stdin_and_stdout() -> nix::Result<()> {
    let (empty, writer) = nix::unistd::pipe()?;
    drop(writer);
    onto(&empty, 0)?;
    let_go_of_stdout()
}

/// Whoever reads credwrap's stdout sees its end: `--serve` in the foreground has said all it
/// will say there once the exports are written.
pub fn let_go_of_stdout() -> nix::Result<()> {
    let (reader, nowhere) = nix::unistd::pipe()?;
    drop(reader);
    onto(&nowhere, 1)
}

/// Makes descriptor `target` (0, 1, 2) a copy of `fd`.
fn onto(fd: &impl AsRawFd, target: i32) -> nix::Result<()> {
    // SAFETY: dup2 of a descriptor we hold onto a standard one.
    nix::errno::Errno::result(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// The caller's side: print what the daemon sends once it serves, or end as it ended.
fn wait_for_the_daemon(read: OwnedFd, daemon: nix::unistd::Pid) -> ! {
    let mut said = Vec::new();
    let _ = File::from(read).read_to_end(&mut said);
    if let Some(text) = said.strip_prefix(b"R") {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text).and_then(|()| out.flush());
        std::process::exit(0);
    }
    // It failed before serving; it said why on stderr.
    let code = match waitpid(daemon, None) {
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        _ => crate::exit::FAILED,
    };
    std::process::exit(if code == 0 { crate::exit::FAILED } else { code });
}

impl Readiness {
    /// Serving: the caller prints `stdout` and returns; from now on the log goes to `log`
    /// (0600, appended).
    pub fn serving(mut self, stdout: &str, log: &Path) -> std::io::Result<()> {
        let file = open_log(log)?;
        self.pipe.write_all(b"R")?;
        self.pipe.write_all(stdout.as_bytes())?;
        drop(self.pipe);
        onto(&file, 2).map_err(std::io::Error::from)?;
        Ok(())
    }
}

/// The log file, appended to, 0600: not through a symbolic link (whoever planted one would
/// choose where credwrap writes), only a regular file of this user's, and one that others
/// could read is made 0600 first, since the log names roles and sessions.
fn open_log(log: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let refuse = |why: &str| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("--log-file {}: {why}", log.display()),
        )
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(log)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refuse("is a symbolic link; give the file itself")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(refuse("is not a regular file"));
    }
    // SAFETY: a plain getter.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err(refuse("belongs to another user"));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}
