//! `--kill-after`: SIGKILL the command if it is still running a while after the first
//! TERM/INT, and never once it has been reaped (its pid could by then be another process's).
//!
//! The timer thread kills while holding the lock that the main thread holds while it reaps, so
//! a kill lands either on the unreaped child (running or a zombie: its pid is still its own) or
//! not at all.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, PartialEq, Eq)]
enum TimerState {
    Armed,
    /// The child was reaped (or the timer cancelled): never kill.
    Disarmed,
    Fired,
}

pub struct KillTimer {
    shared: Arc<(Mutex<TimerState>, Condvar)>,
}

/// Held while reaping: the timer cannot fire meanwhile.
pub struct Hold<'a> {
    state: MutexGuard<'a, TimerState>,
    wake: &'a Condvar,
}

impl KillTimer {
    /// Calls `kill` after `after`, unless disarmed first.
    pub fn start(
        after: Duration,
        kill: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<KillTimer> {
        let shared = Arc::new((Mutex::new(TimerState::Armed), Condvar::new()));
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("credwrap-kill-after".into())
            .spawn(move || {
                let (lock, wake) = &*theirs;
                let state = lock.lock().unwrap_or_else(|e| e.into_inner());
                let (mut state, _) = wake
                    .wait_timeout_while(state, after, |s| *s == TimerState::Armed)
                    .unwrap_or_else(|e| e.into_inner());
                if *state == TimerState::Armed {
                    *state = TimerState::Fired;
                    kill();
                }
            })?;
        Ok(KillTimer { shared })
    }

    /// Keeps the timer from firing until the hold is dropped.
    pub fn hold(&self) -> Hold<'_> {
        let (lock, wake) = &*self.shared;
        Hold {
            state: lock.lock().unwrap_or_else(|e| e.into_inner()),
            wake,
        }
    }
}

impl Hold<'_> {
    /// The child is gone: the timer must never fire.
    pub fn disarm(mut self) {
        if *self.state == TimerState::Armed {
            *self.state = TimerState::Disarmed;
        }
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn fires_once_after_the_delay() {
        let (tx, rx) = mpsc::channel();
        let _timer =
            KillTimer::start(Duration::from_millis(20), move || tx.send(()).unwrap()).unwrap();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("did not fire");
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "fired twice"
        );
    }

    #[test]
    fn never_fires_once_disarmed_even_while_held_past_its_time() {
        let (tx, rx) = mpsc::channel();
        let timer =
            KillTimer::start(Duration::from_millis(20), move || tx.send(()).unwrap()).unwrap();
        let hold = timer.hold();
        // Past the deadline while the main thread "reaps": the timer waits for the lock.
        std::thread::sleep(Duration::from_millis(60));
        hold.disarm();
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "fired after the reap"
        );
    }
}
