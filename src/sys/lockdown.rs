//! credwrap's own process limits, set once at start, and the command's, given back before exec.
//!
//! - Keys out of core files and out of other processes' view of our memory: credwrap is made
//!   non-dumpable (`PR_SET_DUMPABLE` 0, as ssh-agent does): no core file, and processes of the
//!   same user can no longer ptrace it or read `/proc/PID/mem`, `environ` and friends, which
//!   become root's. Its soft core limit is 0 as well.
//! - Room for connections: the soft open-file limit is raised to the hard one (as Go's runtime
//!   does), so that the endpoint can hold thousands of connections under attack.
//!
//! The command inherits neither: `execve` makes it dumpable again, and [`ChildLimits::restore`]
//! gives it back the limits credwrap was started with (a program using `select` breaks with
//! descriptors past 1024).

use std::io;

/// The limits credwrap was started with, for the command.
#[derive(Clone, Copy)]
pub struct ChildLimits {
    core: libc::rlimit,
    open_files: libc::rlimit,
}

/// At most this many open files for credwrap itself: far more than the endpoint uses.
const OPEN_FILES_WANTED: libc::rlim_t = 65_536;

fn read_limit(resource: libc::__rlimit_resource_t) -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the plain-data struct we pass.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

fn write_limit(resource: libc::__rlimit_resource_t, limit: &libc::rlimit) -> io::Result<()> {
    // SAFETY: setrlimit with a plain-data struct; async-signal-safe (used before exec).
    if unsafe { libc::setrlimit(resource, limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Locks credwrap down before it holds any secret and gives it room for connections; returns
/// the limits to give the command.
pub fn lock_down() -> io::Result<ChildLimits> {
    let core = read_limit(libc::RLIMIT_CORE)?;
    // Only the soft limit: the hard one stays, so the command can have its limit back.
    write_limit(
        libc::RLIMIT_CORE,
        &libc::rlimit {
            rlim_cur: 0,
            rlim_max: core.rlim_max,
        },
    )?;
    // SAFETY: plain prctl on our own process.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let open_files = read_limit(libc::RLIMIT_NOFILE)?;
    let wanted = OPEN_FILES_WANTED.min(open_files.rlim_max);
    if wanted > open_files.rlim_cur {
        if let Err(e) = write_limit(
            libc::RLIMIT_NOFILE,
            &libc::rlimit {
                rlim_cur: wanted,
                rlim_max: open_files.rlim_max,
            },
        ) {
            // Fewer connection slots, nothing worse.
            tracing::debug!("could not raise the open-file limit: {e}");
        }
    }
    Ok(ChildLimits { core, open_files })
}

/// credwrap's soft open-file limit now, for sizing the endpoint.
pub fn open_file_limit() -> u64 {
    read_limit(libc::RLIMIT_NOFILE).map_or(1024, |l| l.rlim_cur)
}

impl ChildLimits {
    /// In the forked child, before exec: async-signal-safe.
    pub fn restore(&self) -> io::Result<()> {
        write_limit(libc::RLIMIT_CORE, &self.core)?;
        write_limit(libc::RLIMIT_NOFILE, &self.open_files)
    }
}
