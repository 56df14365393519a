//! Children credwrap runs for itself (the token command), while it also reaps every exited
//! child as a subreaper or PID 1 (`child::reap_all`, with `waitpid(-1)`). Whichever of the two
//! waits first, the status reaches the code that ran the command: without this, the reaper
//! takes it, the command's own wait fails with ECHILD, and so does the refresh that ran it.

use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The own children not yet waited for, by pid. Held by the reaper across each `waitpid`, and
/// by [`spawn`] across fork and registration, so that no child can be reaped unregistered.
static WAITING: Mutex<Vec<(i32, oneshot::Sender<ExitStatus>)>> = Mutex::new(Vec::new());

fn waiting() -> MutexGuard<'static, Vec<(i32, oneshot::Sender<ExitStatus>)>> {
    WAITING.lock().unwrap_or_else(|e| e.into_inner())
}

/// An own child, registered: [`Own::reaped_status`] has its status if the reaper took it.
pub struct Own {
    pid: i32,
    status: Option<oneshot::Receiver<ExitStatus>>,
}

/// Runs `spawn` (which starts the child) while no reaper can run, and registers the child.
pub fn spawn<T>(
    spawn: impl FnOnce() -> std::io::Result<T>,
    pid: impl FnOnce(&T) -> Option<u32>,
) -> std::io::Result<(T, Own)> {
    let mut waiting = waiting();
    let child = spawn()?;
    let (tx, rx) = oneshot::channel();
    let pid = pid(&child).and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    waiting.push((pid, tx));
    Ok((
        child,
        Own {
            pid,
            status: Some(rx),
        },
    ))
}

impl Own {
    /// The status the reaper took, for when the child's own wait failed with ECHILD; `None` if
    /// nobody has it (then the wait's error stands).
    pub async fn reaped_status(&mut self) -> Option<ExitStatus> {
        self.status.take()?.await.ok()
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        waiting().retain(|(pid, _)| *pid != self.pid);
    }
}

/// The reaper's side: holds the registry while it reaps.
pub struct Reaper(MutexGuard<'static, Vec<(i32, oneshot::Sender<ExitStatus>)>>);

/// Held across one `waitpid(-1)` and the [`Reaper::reaped`] that follows it.
pub fn reaper() -> Reaper {
    Reaper(waiting())
}

impl Reaper {
    /// Hands `status` to the own child `pid`, if it is one; false for an orphan.
    pub fn reaped(&mut self, pid: i32, status: ExitStatus) -> bool {
        match self.0.iter().position(|(p, _)| *p == pid) {
            Some(i) => {
                let (_, tx) = self.0.swap_remove(i);
                let _ = tx.send(status);
                true
            }
            None => false,
        }
    }
}
