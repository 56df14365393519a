//! What a broker has done, for those who watch it (`/healthz`, `credwrap status`, metrics):
//! how often it assumed the role and failed, its last error, and the renewal horizon, the time
//! after which refreshing cannot work any more because what it refreshes from ends.
//!
//! The refresh task writes it; readers copy it out. Nothing in it is a secret: error messages
//! are the ones credwrap logs, which never hold one.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What bounds refreshing: the earliest end of whatever the role is refreshed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizon {
    /// When refreshing stops working.
    pub at: SystemTime,
    /// What ends then, for a sentence: "the MFA session ends".
    pub what: String,
    /// What to do to go on past it.
    pub fix: String,
}

impl Horizon {
    /// The earliest of `bounds`.
    pub fn earliest(bounds: impl IntoIterator<Item = Horizon>) -> Option<Horizon> {
        bounds.into_iter().min_by_key(|h| h.at)
    }
}

/// The last failed refresh attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub at: SystemTime,
    pub message: String,
}

/// What the broker refreshes, in words for a person: the role, and what it is assumed with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct About {
    pub role: String,
    pub source: String,
}

/// Counts since start; the first AssumeRole (before the broker started) counts as one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    pub about: About,
    /// Attempts to get a credential, the first included.
    pub calls: u64,
    /// Of those, the ones that failed.
    pub failures: u64,
    /// Credentials published after the first.
    pub refreshes: u64,
    pub last_error: Option<LastError>,
    pub horizon: Option<Horizon>,
    /// A refresh attempt is under way (a helper may be running).
    pub attempting: bool,
}

/// The broker's activity, shared by its refresh task and its readers.
#[derive(Debug, Clone, Default)]
pub struct Tracker(Arc<Mutex<Activity>>);

impl Tracker {
    pub fn new(about: About, horizon: Option<Horizon>) -> Tracker {
        Tracker(Arc::new(Mutex::new(Activity {
            about,
            calls: 1,
            horizon,
            ..Activity::default()
        })))
    }

    pub fn snapshot(&self) -> Activity {
        self.lock().clone()
    }

    /// An attempt starts; [`Tracker::succeeded`] or [`Tracker::failed`] ends it.
    pub fn attempting(&self) {
        self.lock().attempting = true;
    }

    pub fn succeeded(&self, horizon: Option<Horizon>) {
        let mut a = self.lock();
        a.attempting = false;
        a.calls += 1;
        a.refreshes += 1;
        a.horizon = horizon;
    }

    pub fn failed(&self, at: SystemTime, message: String, horizon: Option<Horizon>) {
        let mut a = self.lock();
        a.attempting = false;
        a.calls += 1;
        a.failures += 1;
        a.last_error = Some(LastError { at, message });
        a.horizon = horizon;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Activity> {
        // A panic elsewhere while holding it leaves counts that are still worth reading.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
