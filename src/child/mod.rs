//! The child, which is the command credwrap runs and nothing else: spawned directly (no shell), signals forwarded, its exit status collected.
//!
//! All of this runs on the main thread. That thread forks, so `PR_SET_PDEATHSIG` (which fires
//! when the *thread* that forked exits) lasts exactly as long as credwrap; and it is the only
//! place that waits for the child, so no other waiter can take the status from us.

mod exec;
mod kill_timer;
pub mod signals;

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};

use nix::unistd::Pid;
use signal_hook::consts::signal::*;
use signal_hook::iterator::exfiltrator::origin::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::{Cause, Origin};

use crate::exit::{self, Failure};

/// Why the command could not be started.
#[derive(Debug)]
pub struct SpawnError {
    pub code: i32,
    pub message: String,
}

impl From<SpawnError> for Failure {
    fn from(e: SpawnError) -> Failure {
        Failure::new(e.code, e.message, None)
    }
}

/// The command ran, but its exit status was taken by something else in this process.
#[derive(Debug)]
pub struct LostChild(String);

impl From<LostChild> for Failure {
    fn from(e: LostChild) -> Failure {
        Failure::new(
            exit::LOST_CHILD,
            format!("lost track of the command's exit status: {}", e.0),
            Some("this is a bug in credwrap or a library it uses; please report it".to_string()),
        )
    }
}

/// How signals reach the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// With a controlling terminal the child stays in our process group, so job control (Ctrl-Z,
    /// `fg`, reading the terminal) just works. The terminal already sends its INT/QUIT/WINCH to
    /// the whole group; we forward only signals a process sent to us.
    Shared,
    /// Without one (CI, `docker run` without -t) the child leads its own group and we forward to
    /// that group, so a signal sent to credwrap's group reaches the child once, not twice.
    Own,
}

/// How the child is supervised beyond the defaults.
#[derive(Clone, Copy)]
pub struct Supervision {
    /// SIGKILL the child this long after the first TERM/INT.
    pub kill_after: Option<std::time::Duration>,
    /// Adopt orphaned descendants and reap them (also done as PID 1).
    pub subreaper: bool,
    /// The process limits credwrap was started with (its own differ), for the child.
    pub limits: crate::sys::lockdown::ChildLimits,
    /// credwrap may have been given `CAP_NET_BIND_SERVICE` as an ambient capability to bind
    /// port 80 for containers (`--container-host`): it was for credwrap, not the command.
    pub drop_bind_capability: bool,
    /// `--serve`: no child; the signals only stop credwrap.
    pub server: bool,
}

impl Supervision {
    /// For the command of `plan`. `binds_gateways`: credwrap serves `--container-host`s.
    pub fn of_child(
        plan: &crate::settings::ChildPlan,
        limits: crate::sys::lockdown::ChildLimits,
        binds_gateways: bool,
    ) -> Supervision {
        Supervision {
            kill_after: plan.kill_after,
            subreaper: plan.subreaper,
            limits,
            drop_bind_capability: binds_gateways,
            server: false,
        }
    }

    /// For `--serve`, which runs no command.
    pub fn of_server(
        limits: crate::sys::lockdown::ChildLimits,
        binds_gateways: bool,
    ) -> Supervision {
        Supervision {
            kill_after: None,
            subreaper: false,
            limits,
            drop_bind_capability: binds_gateways,
            server: true,
        }
    }
}

/// From `<linux/prctl.h>` and `<linux/capability.h>` (the libc crate names them for Fuchsia only).
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_LOWER: libc::c_ulong = 3;
const CAP_NET_BIND_SERVICE: libc::c_ulong = 10;

/// Fails, as bash would, when `command` is not to be found on the `PATH` it will run with.
pub fn find(command: &[OsString]) -> Result<(), SpawnError> {
    let Some(program) = command.first() else {
        return Ok(());
    };
    let path = std::env::var_os("PATH");
    exec::find_on(program, path.as_deref())
}

/// Signal handling installed before the child exists, so no signal or exit can slip by.
pub struct Supervisor {
    signals: SignalsInfo<WithOrigin>,
    /// The forwarded signals that were not ignored when credwrap started.
    handled: Vec<i32>,
    /// The process group of whoever started credwrap (an interactive shell, at a terminal).
    parent_group: Option<Pid>,
    group: Group,
    supervision: Supervision,
    reap_orphans: bool,
}

impl Supervisor {
    /// Installs the handlers for a run with a child, or, for `--serve`, for one that serves
    /// until stopped.
    pub fn install(supervision: Supervision) -> io::Result<Supervisor> {
        let reap_orphans = supervision.subreaper || std::process::id() == 1;
        if supervision.subreaper {
            // SAFETY: plain prctl on our own process.
            if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let group = if has_controlling_terminal() {
            Group::Shared
        } else {
            Group::Own
        };
        // A signal ignored when we started (nohup, `&` in a script) stays ignored: we install
        // no handler for it, so the child inherits SIG_IGN across exec.
        let candidates = if supervision.server {
            signals::stops_a_server()
        } else {
            signals::forwarded(group == Group::Shared)
        };
        let handled: Vec<i32> = candidates
            .into_iter()
            .filter(|&s| !ignored_at_start(s))
            .collect();
        let mut wanted = handled.clone();
        wanted.push(SIGCHLD);
        let signals = SignalsInfo::<WithOrigin>::new(&wanted)?;
        let parent_group = nix::unistd::getpgid(Some(nix::unistd::getppid())).ok();
        Ok(Supervisor {
            signals,
            handled,
            parent_group,
            group,
            supervision,
            reap_orphans,
        })
    }

    /// The signals that end credwrap while it is still starting (TERM, INT, HUP, QUIT, unless
    /// ignored at start), as they arrive; on the current tokio runtime. Any other forwarded
    /// signal waits, queued, for the child.
    pub fn stop_signals(&self) -> io::Result<tokio::sync::mpsc::UnboundedReceiver<i32>> {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT] {
            if !self.handled.contains(&sig) {
                continue;
            }
            let mut stream = signal(SignalKind::from_raw(sig))?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(sig).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(rx)
    }

    /// What can end [`Supervisor::wait_for_stop`] early from another thread (`--watch`,
    /// `--max-lifetime`).
    pub fn stopper(&self) -> signal_hook::iterator::Handle {
        self.signals.handle()
    }

    /// `--serve`: blocks until a signal that stops a server arrives and returns it, or until
    /// [`Supervisor::stopper`] is closed (`None`).
    pub fn wait_for_stop(mut self) -> Option<i32> {
        if !self.handled.contains(&SIGINT) {
            // A non-interactive shell starts `credwrap --serve &` with SIGINT ignored.
            tracing::info!(
                "SIGINT was ignored when credwrap started (a shell's `&` does that): stop it \
                 with SIGTERM"
            );
        }
        tracing::info!(
            "serving until a signal stops it: {}",
            self.handled
                .iter()
                .map(|s| signals::name(*s))
                .collect::<Vec<_>>()
                .join(" ")
        );
        loop {
            for info in self.signals.wait() {
                if info.signal != SIGCHLD {
                    return Some(info.signal);
                }
                // As PID 1 (the image's entrypoint), what a token command left behind is ours
                // to reap, or it stays a zombie for as long as credwrap serves.
                if self.reap_orphans {
                    reap_orphans();
                }
            }
            if self.signals.is_closed() {
                return None;
            }
        }
    }

    /// Starts `command` with exactly `env` as its environment.
    pub fn spawn(
        self,
        command: &[OsString],
        env: Vec<(OsString, OsString)>,
    ) -> Result<Running, SpawnError> {
        let exec = exec::Exec::new(command, &env)?;
        let program = &command[0];
        let mut cmd = Command::new(program);
        if self.group == Group::Own {
            cmd.process_group(0);
        }
        let parent = std::process::id() as libc::pid_t;
        let limits = self.supervision.limits;
        let drop_bind_capability = self.supervision.drop_bind_capability;
        // SAFETY: only async-signal-safe calls (prctl, getppid, raise, execve) between fork and
        // exec; everything exec needs was allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::raise(libc::SIGKILL);
                }
                limits.restore()?;
                if drop_bind_capability {
                    // Fails (EINVAL) only on kernels without ambient capabilities (before 4.3),
                    // where there is none to drop.
                    libc::prctl(
                        PR_CAP_AMBIENT,
                        PR_CAP_AMBIENT_LOWER,
                        CAP_NET_BIND_SERVICE,
                        0,
                        0,
                    );
                }
                // Our own execve: std's would be glibc's execvp, which hands a file the kernel
                // refused (ENOEXEC) to /bin/sh. Returning is failing; std reports the error.
                Err(exec.execve())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            let path = env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_os_str());
            exec::failure(program, path, &e)
        })?;
        tracing::debug!(pid = child.id(), group = ?self.group, "command started");
        Ok(Running {
            signals: self.signals,
            parent_group: self.parent_group,
            group: self.group,
            supervision: self.supervision,
            reap_orphans: self.reap_orphans,
            kill_timer: None,
            child,
        })
    }
}

/// A started child.
pub struct Running {
    signals: SignalsInfo<WithOrigin>,
    parent_group: Option<Pid>,
    group: Group,
    supervision: Supervision,
    reap_orphans: bool,
    kill_timer: Option<kill_timer::KillTimer>,
    child: Child,
}

impl Running {
    /// Forwards signals until the child exits, then returns its status.
    pub fn wait(mut self) -> Result<ExitStatus, LostChild> {
        let pid = Pid::from_raw(self.child.id() as i32);
        loop {
            // Checked before every block: SIGCHLD may have come before we got here.
            if let Some(status) = self.reap(pid)? {
                return Ok(status);
            }
            for info in self.signals.wait() {
                if info.signal == SIGCHLD {
                    continue;
                }
                if matches!(info.signal, SIGTERM | SIGINT) && self.kill_timer.is_none() {
                    self.start_kill_timer(pid);
                }
                if self.group == Group::Shared && self.child_has_it_already(&info, pid) {
                    continue;
                }
                let name = signals::name(info.signal);
                match send(self.group, pid, info.signal) {
                    Ok(()) => tracing::debug!(signal = %name, "forwarded"),
                    Err(e) => tracing::debug!(signal = %name, "could not forward: {e}"),
                }
            }
        }
    }

    /// Collects the child's status if it has exited; the kill timer cannot fire meanwhile,
    /// and never after.
    fn reap(&mut self, pid: Pid) -> Result<Option<ExitStatus>, LostChild> {
        let hold = self.kill_timer.as_ref().map(kill_timer::KillTimer::hold);
        let exited = if self.reap_orphans {
            reap_all(pid)?
        } else {
            try_wait(&mut self.child)?
        };
        if let (Some(_), Some(hold)) = (&exited, hold) {
            hold.disarm();
        }
        Ok(exited)
    }

    /// In a shared process group, a signal the group got as a whole already reached the child:
    /// one from the terminal (not process-sent), or, as sudo reasons, one sent by a process in
    /// our group (the child signalling its group) or in our parent's (`kill %1` from the
    /// interactive shell that started us).
    fn child_has_it_already(&self, info: &Origin, child: Pid) -> bool {
        if !matches!(info.cause, Cause::Sent(_)) {
            return true;
        }
        let Some(sender) = info.process.as_ref().map(|p| Pid::from_raw(p.pid)) else {
            return false;
        };
        if sender == child {
            return true;
        }
        let Ok(sender_group) = nix::unistd::getpgid(Some(sender)) else {
            return false;
        };
        sender_group == nix::unistd::getpgrp() || Some(sender_group) == self.parent_group
    }

    fn start_kill_timer(&mut self, pid: Pid) {
        let Some(after) = self.supervision.kill_after else {
            return;
        };
        let group = self.group;
        let timer = kill_timer::KillTimer::start(after, move || {
            tracing::warn!(
                "the command is still running {}s after SIGTERM/SIGINT: sending SIGKILL",
                after.as_secs()
            );
            let _ = send(group, pid, libc::SIGKILL);
        });
        match timer {
            Ok(timer) => self.kill_timer = Some(timer),
            Err(e) => tracing::warn!("--kill-after could not start its timer: {e}"),
        }
    }
}

/// Sends `sig` (any number: nix names no real-time signal) to the child's group, or to the
/// child alone when it shares ours.
fn send(group: Group, child: Pid, sig: libc::c_int) -> nix::Result<()> {
    let target = match group {
        Group::Own => -child.as_raw(),
        Group::Shared => child.as_raw(),
    };
    // SAFETY: kill(2) with plain integers.
    nix::errno::Errno::result(unsafe { libc::kill(target, sig) }).map(drop)
}

/// As a subreaper or PID 1, orphaned descendants become our children: reap every one that has
/// exited, and return the command's own status when it is among them. credwrap's own children
/// (the token command) get theirs handed over ([`crate::sys::reaping`]).
fn reap_all(child: Pid) -> Result<Option<ExitStatus>, LostChild> {
    loop {
        let mut reaper = crate::sys::reaping::reaper();
        match next_exited() {
            Ok(Some((pid, status))) if pid == child => return Ok(Some(status)),
            Ok(Some((pid, status))) => {
                if !reaper.reaped(pid.as_raw(), status) {
                    tracing::debug!("reaped an orphan: {pid} {status}");
                }
            }
            Ok(None) => return Ok(None),
            // No child at all, not even the command: someone else reaped it.
            Err(nix::errno::Errno::ECHILD) => {
                return Err(LostChild("no child left to wait for".into()))
            }
            Err(e) => return Err(LostChild(format!("waitpid: {e}"))),
        }
    }
}

/// With no command (`--serve`), as PID 1: reaps every child that has exited, handing credwrap's
/// own theirs.
fn reap_orphans() {
    loop {
        let mut reaper = crate::sys::reaping::reaper();
        match next_exited() {
            Ok(Some((pid, status))) => {
                if !reaper.reaped(pid.as_raw(), status) {
                    tracing::debug!("reaped an orphan: {pid} {status}");
                }
            }
            Ok(None) | Err(nix::errno::Errno::ECHILD) => return,
            Err(e) => {
                tracing::debug!("waitpid: {e}");
                return;
            }
        }
    }
}

/// One exited child, reaped (`waitpid(-1, WNOHANG)`), if any has exited.
fn next_exited() -> Result<Option<(Pid, ExitStatus)>, nix::errno::Errno> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use std::os::unix::process::ExitStatusExt;
    loop {
        return match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) => {
                Ok(Some((p, ExitStatus::from_raw((code & 0xff) << 8))))
            }
            Ok(WaitStatus::Signaled(p, sig, core)) => Ok(Some((
                p,
                ExitStatus::from_raw(sig as i32 | if core { 0x80 } else { 0 }),
            ))),
            Ok(WaitStatus::StillAlive) => Ok(None),
            Ok(other) => {
                tracing::debug!("waitpid: {other:?}");
                continue;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => Err(e),
        };
    }
}

/// ECHILD cannot happen while we are the only waiter; if it does, say so rather than invent a
/// status or wait forever.
fn try_wait(child: &mut Child) -> Result<Option<ExitStatus>, LostChild> {
    child.try_wait().map_err(|e| LostChild(e.to_string()))
}

fn ignored_at_start(sig: i32) -> bool {
    // SAFETY: a query only (null new action); `old` is plain data the kernel fills in.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

fn has_controlling_terminal() -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/tty")
        .is_ok()
}
