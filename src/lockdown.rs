//! Keeping the role's keys out of core files and out of other processes' view of our memory.
//!
//! credwrap is made non-dumpable (`PR_SET_DUMPABLE` 0, as ssh-agent does): no core file, and
//! processes of the same user can no longer ptrace it or read `/proc/PID/mem`, `environ` and
//! friends, which become root's. Its soft core limit is 0 as well. The command must not inherit
//! either: `execve` makes it dumpable again, and [`CoreLimit::restore`] gives it back the core
//! limit credwrap was started with.

use std::io;

/// The core-file limit credwrap was started with, for the command.
#[derive(Clone, Copy)]
pub struct CoreLimit(libc::rlimit);

/// Locks credwrap down before it holds any secret; returns the core limit to give the command.
pub fn lock_down() -> io::Result<CoreLimit> {
    // SAFETY: plain syscalls on our own process with plain-data arguments.
    unsafe {
        let mut original: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_CORE, &mut original) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Only the soft limit: the hard one stays, so the command can have its limit back.
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: original.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_CORE, &none) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(CoreLimit(original))
    }
}

impl CoreLimit {
    /// In the forked child, before exec: async-signal-safe.
    pub fn restore(&self) -> io::Result<()> {
        // SAFETY: setrlimit with a value we read from the kernel.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &self.0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
